/* SPDX-License-Identifier: MIT */
/*
 * segment.h — the layout of forkpool's POSIX shared-memory segment and its
 * accessors.
 *
 * The supervisor is the only writer. Workers and forkpoolctl map the segment
 * read-only and take consistent snapshots without locks: every pool has a
 * sequence counter that is odd while the supervisor writes the pool or its
 * slots (a seqlock). The segment holds no pointers (only offsets), only
 * fixed-width fields, and never a secret.
 *
 * Layout: [header][pool 0]…[pool n-1][slot 0]…[slot m-1]; every record is a
 * multiple of 64 bytes so that pools and slots sit on their own cache lines.
 */
#ifndef FORKPOOL_SEGMENT_H
#define FORKPOOL_SEGMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FP_SHM_MAGIC 0x4c4f4f504b524f46ull /* "FORKPOOL" little-endian */
#define FP_SHM_LAYOUT_VERSION 1u
#define FP_SHM_NAME_MAX 64
#define FP_SHM_POOL_NAME_MAX 64
#define FP_SHM_MAX_POOLS 64
#define FP_SHM_MAX_SLOTS_PER_POOL 1024

enum fp_slot_state {
        FP_SLOT_UNUSED = 0,  /* no record in this slot */
        FP_SLOT_EMPTY,       /* a record without a live connection (in the idle queue) */
        FP_SLOT_CONNECTING,  /* the supervisor is connecting */
        FP_SLOT_IDLE,        /* live, in the idle queue */
        FP_SLOT_LEASED,      /* in a worker's hands */
        FP_SLOT_RESETTING,   /* returned, reset running on the supervisor's handle */
        FP_SLOT_STATE_MAX,
};

enum fp_reset_mode {
        FP_RESET_ROLLBACK = 0,
        FP_RESET_COMMIT,
        FP_RESET_NONE,
};

struct fp_shm_counters {
        uint64_t acquires;         /* leases handed out */
        uint64_t releases;         /* leases given back */
        uint64_t timeouts;         /* acquires that ended in -ETIMEDOUT */
        uint64_t connects;         /* successful connects */
        uint64_t connect_failures; /* failed connects */
        uint64_t invalidations;    /* connections closed instead of reused */
        uint64_t reclaims;         /* leases taken back from dead holders */
        uint64_t closes;           /* connections closed, for any reason */
};

struct fp_shm_header {
        uint64_t magic;
        uint32_t layout_version;
        uint32_t header_size;
        uint64_t total_size;
        uint32_t pool_count;
        uint32_t slot_count;
        uint32_t pools_offset;
        uint32_t pool_size;   /* sizeof(struct fp_shm_pool) */
        uint32_t slots_offset;
        uint32_t slot_size;   /* sizeof(struct fp_shm_slot) */
        int32_t supervisor_pid;
        uint32_t obsolete;    /* 1: replaced by a newer segment, reopen it */
        uint64_t started_usec; /* CLOCK_REALTIME when the supervisor started */
        uint8_t reserved[192];
};

struct fp_shm_pool {
        uint64_t seq; /* odd while the supervisor writes this pool or its slots */
        char name[FP_SHM_POOL_NAME_MAX];
        uint32_t db_kind;
        uint32_t reset_mode; /* enum fp_reset_mode */
        int32_t pool_size;
        int32_t max_overflow;
        int32_t timeout_ms;  /* pool_timeout */
        int32_t connect_timeout_ms;
        uint32_t slot_base;  /* index of this pool's first slot */
        uint32_t slot_count; /* slots reserved for this pool */
        /* SQLAlchemy's accounting (research/sqlalchemy_pool.md §2.1). */
        int32_t checked_in;  /* len(Q) */
        int32_t checked_out;
        int32_t overflow;    /* the raw counter O */
        int32_t waiting;     /* acquirers queued */
        int32_t connecting;
        int32_t live;        /* live connections */
        uint64_t oldest_wait_start_usec; /* CLOCK_MONOTONIC; 0 when nobody waits */
        struct fp_shm_counters counters;
        uint8_t reserved[56];
};

struct fp_shm_slot {
        uint32_t state; /* enum fp_slot_state */
        int32_t holder_pid;
        uint64_t lease_generation;
        int32_t backend_pid;
        uint32_t reserved0;
        uint64_t connect_usec;       /* CLOCK_REALTIME of the connect */
        uint64_t last_checkout_usec; /* CLOCK_REALTIME of the last lease */
        uint8_t reserved[24];
};

_Static_assert(sizeof(struct fp_shm_header) == 256, "header ABI");
_Static_assert(sizeof(struct fp_shm_pool) % 64 == 0, "pool on its own cache lines");
_Static_assert(sizeof(struct fp_shm_pool) == 256, "pool ABI");
_Static_assert(sizeof(struct fp_shm_slot) == 64, "slot ABI");
_Static_assert(offsetof(struct fp_shm_pool, seq) == 0, "seq first");
_Static_assert(offsetof(struct fp_shm_pool, counters) == 136, "counters ABI");

/* A mapped segment. */
struct fp_segment {
        struct fp_shm_header *hdr;
        size_t size;
        bool writable;
        char name[FP_SHM_NAME_MAX];
};

/*
 * The POSIX shm name ("/forkpool.<16 hex>") of the instance listening on
 * socket_path, as both the supervisor and readers derive it. Writes at most
 * FP_SHM_NAME_MAX bytes into ret_name.
 */
void fp_segment_name(const char *socket_path, char ret_name[FP_SHM_NAME_MAX]);

/*
 * Creates (or replaces) the segment `name` with room for pool_count pools and
 * slot_count slots, mode `mode` (e.g. 0640), group gid (or -1 to keep), and
 * maps it writable into seg. An existing segment of that name is marked
 * obsolete and unlinked first. Returns 0 or a negative errno.
 */
int fp_segment_create(struct fp_segment *seg, const char *name, uint32_t pool_count,
                      uint32_t slot_count, unsigned mode, int gid);

/*
 * Maps an existing segment read-only and checks its header (magic, version,
 * sizes). Returns 0, -ENOENT (no such segment), -EPROTO (another layout
 * version), -EBADMSG (a header that does not add up) or another negative
 * errno.
 */
int fp_segment_open(struct fp_segment *seg, const char *name);

/* Unmaps the segment (does not unlink it). Safe on a zeroed struct. */
void fp_segment_close(struct fp_segment *seg);

/* Unlinks the segment's name. Returns 0 or a negative errno. */
int fp_segment_unlink(const char *name);

/* The pool record at index i, or NULL if out of range. */
struct fp_shm_pool *fp_segment_pool(const struct fp_segment *seg, uint32_t i);

/* The slot record at index i, or NULL if out of range. */
struct fp_shm_slot *fp_segment_slot(const struct fp_segment *seg, uint32_t i);

/* Writer side: opens a write section on a pool (seq becomes odd). */
void fp_segment_write_begin(struct fp_shm_pool *pool);

/* Writer side: closes a write section (seq becomes even again). */
void fp_segment_write_end(struct fp_shm_pool *pool);

/*
 * Reader side: copies a consistent snapshot of pool record i and its slots
 * into *ret_pool and ret_slots (room for max_slots). Returns the number of
 * slots copied, or -ERANGE (no such pool), -EAGAIN (the writer kept writing
 * for too long; try later). Never blocks.
 */
int fp_segment_snapshot(const struct fp_segment *seg, uint32_t i, struct fp_shm_pool *ret_pool,
                        struct fp_shm_slot *ret_slots, uint32_t max_slots);

/* A short lowercase name of a slot state ("idle"), or "unknown". */
const char *fp_slot_state_name(uint32_t state);

#endif /* FORKPOOL_SEGMENT_H */
