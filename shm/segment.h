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

#define FP_SHM_MAGIC              0x4c4f4f504b524f46ull /* "FORKPOOL" little-endian */
#define FP_SHM_LAYOUT_VERSION     3u
#define FP_SHM_NAME_MAX           64
#define FP_SHM_POOL_NAME_MAX      64
#define FP_SHM_MAX_POOLS          64
#define FP_SHM_MAX_SLOTS_PER_POOL 1024
#define FP_SHM_EVENTS             4096 /* ring entries, a power of two */
#define FP_SHM_LABEL_MAX          64

enum fp_slot_state {
        FP_SLOT_UNUSED = 0, /* no record in this slot */
        FP_SLOT_EMPTY,      /* a record without a live connection (in the idle queue) */
        FP_SLOT_CONNECTING, /* the supervisor is connecting */
        FP_SLOT_IDLE,       /* live, in the idle queue */
        FP_SLOT_LEASED,     /* in a worker's hands */
        FP_SLOT_RESETTING,  /* returned, reset running on the supervisor's handle */
        FP_SLOT_CHECKING,   /* being pinged before a checkout (pool_pre_ping) */
        FP_SLOT_STATE_MAX,
};

enum fp_pool_class {
        FP_POOL_QUEUE = 0, /* SQLAlchemy's QueuePool */
        FP_POOL_NULL,      /* no pooling: connect per acquire, close per release */
        FP_POOL_STATIC,    /* exactly one connection, leased exclusively */
        FP_POOL_ASSERTION, /* at most one lease at a time; a second acquire fails at once */
        FP_POOL_PROCESS,   /* one sticky connection per process (SingletonThreadPool) */
        FP_POOL_CLASS_MAX,
};

/* pool_mode: how the libpq drop-in leases for a connection of the pool. */
enum fp_pool_mode {
        FP_POOL_MODE_SESSION = 0, /* a lease per PQconnectdb, kept until PQfinish */
        FP_POOL_MODE_TRANSACTION, /* a lease per transaction, the PGconn kept in between */
        FP_POOL_MODE_MAX,
};

enum fp_event_type {
        FP_EV_CONNECT = 1,
        FP_EV_FIRST_CONNECT,
        FP_EV_CHECKOUT,
        FP_EV_CHECKIN,
        FP_EV_RESET,
        FP_EV_INVALIDATE,
        FP_EV_SOFT_INVALIDATE,
        FP_EV_CLOSE,
        FP_EV_DETACH,
        FP_EV_RECLAIM,
        FP_EV_TIMEOUT,
        FP_EV_CONNECT_FAILED,
        FP_EV_PING_FAILED,
        FP_EV_RECYCLE,
        FP_EV_LEAK,
        FP_EV_REVOKE,
        FP_EV_POOL_INVALIDATE,
        FP_EV_TYPE_MAX,
};

enum fp_reset_mode {
        FP_RESET_ROLLBACK = 0,
        FP_RESET_COMMIT,
        FP_RESET_NONE,
        FP_RESET_DISCARD, /* PostgreSQL: ROLLBACK then DISCARD ALL */
        FP_RESET_AUTO,    /* the least reset that makes the reported session clean */
};

struct fp_shm_counters {
        uint64_t acquires;           /* leases handed out */
        uint64_t releases;           /* leases given back */
        uint64_t timeouts;           /* acquires that ended in -ETIMEDOUT */
        uint64_t connects;           /* successful connects */
        uint64_t connect_failures;   /* failed connects */
        uint64_t invalidations;      /* connections closed instead of reused */
        uint64_t reclaims;           /* leases taken back from dead holders */
        uint64_t closes;             /* connections closed, for any reason */
        uint64_t soft_invalidations; /* connections marked to close on return */
        uint64_t detaches;           /* connections that left the pool with their worker */
        uint64_t recycles;           /* connections replaced at checkout (age, invalidation) */
        uint64_t pings;              /* pre-pings run */
        uint64_t ping_failures;      /* pre-pings that found a dead connection */
        uint64_t pool_invalidations; /* generation moves (disconnects, dispose) */
        uint64_t leaks;              /* leases held past leak_timeout */
        uint64_t revokes;            /* leases taken back at max_lease_time */
};

/*
 * A histogram of durations: count[i] counts durations <= fp_shm_hist_bounds_usec[i]
 * (not cumulative); the last bucket counts the rest.
 */
#define FP_SHM_HIST_BOUNDS 16
struct fp_shm_histogram {
        uint64_t count[FP_SHM_HIST_BOUNDS + 1];
        uint64_t sum_usec;
};

/* The histograms' upper bounds in microseconds: 100 µs … 10 s. */
static const uint64_t fp_shm_hist_bounds_usec[FP_SHM_HIST_BOUNDS] = {
        100,   250,    500,    1000,   2500,    5000,    10000,   25000,
        50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
};

struct fp_shm_header {
        uint64_t magic;
        uint32_t layout_version;
        uint32_t header_size;
        uint64_t total_size;
        uint32_t pool_count;
        uint32_t slot_count;
        uint32_t pools_offset;
        uint32_t pool_size; /* sizeof(struct fp_shm_pool) */
        uint32_t slots_offset;
        uint32_t slot_size; /* sizeof(struct fp_shm_slot) */
        int32_t supervisor_pid;
        uint32_t obsolete;     /* 1: replaced, or its supervisor exited: reopen the name */
        uint64_t started_usec; /* CLOCK_REALTIME when the supervisor started */
        uint32_t events_offset;
        uint32_t event_count; /* FP_SHM_EVENTS */
        uint32_t event_size;  /* sizeof(struct fp_shm_event) */
        uint32_t reserved0;
        uint64_t event_seq; /* events written so far; the next one gets this number + 1 */
        uint8_t reserved[168];
};

struct fp_shm_pool {
        uint64_t seq; /* odd while the supervisor writes this pool or its slots */
        char name[FP_SHM_POOL_NAME_MAX];
        uint32_t db_kind;
        uint32_t reset_mode; /* enum fp_reset_mode */
        int32_t pool_size;
        int32_t max_overflow;
        int32_t timeout_ms; /* pool_timeout */
        int32_t connect_timeout_ms;
        uint32_t slot_base;  /* index of this pool's first slot */
        uint32_t slot_count; /* slots reserved for this pool */
        /* SQLAlchemy's accounting (README: Pool semantics). */
        int32_t checked_in; /* len(Q) */
        int32_t checked_out;
        int32_t overflow; /* the raw counter O */
        int32_t waiting;  /* acquirers queued */
        int32_t connecting;
        int32_t live;                    /* live connections */
        uint64_t oldest_wait_start_usec; /* CLOCK_MONOTONIC; 0 when nobody waits */
        struct fp_shm_counters counters;
        uint32_t pool_class; /* enum fp_pool_class */
        uint32_t flags;      /* FP_SHM_POOL_PRE_PING | FP_SHM_POOL_LIFO */
        int32_t recycle_ms;  /* -1: off */
        int32_t leak_timeout_ms;
        int32_t max_lease_time_ms;
        uint32_t generation;
        uint32_t pool_mode; /* enum fp_pool_mode; 0 (session) in older segments' reserved bytes */
        uint8_t reserved[28];
        struct fp_shm_histogram wait_hist; /* how long acquires waited for their lease */
        struct fp_shm_histogram hold_hist; /* how long leases were held */
        uint8_t reserved2[32];
};

#define FP_SHM_POOL_PRE_PING 1u
#define FP_SHM_POOL_LIFO     2u
#define FP_SHM_POOL_PAUSED   4u

struct fp_shm_slot {
        uint32_t state; /* enum fp_slot_state */
        int32_t holder_pid;
        uint64_t lease_generation;
        int32_t backend_pid;
        uint32_t pin_reasons;         /* enum fp_pin_reason: a drop-in connection keeps it */
        uint64_t connect_usec;        /* CLOCK_REALTIME of the connect */
        uint64_t last_checkout_usec;  /* CLOCK_REALTIME of the last lease */
        char label[FP_SHM_LABEL_MAX]; /* the holder's label for the lease, "" if none */
        uint8_t reserved[24];
};

/* One entry of the event ring. seq is written last: a reader checks it twice. */
struct fp_shm_event {
        uint64_t seq;           /* 1, 2, … ; entry i holds seq ≡ i (mod FP_SHM_EVENTS) */
        uint64_t time_usec;     /* CLOCK_REALTIME */
        uint64_t duration_usec; /* what the event measured (wait, hold, connect), or 0 */
        uint16_t type;          /* enum fp_event_type */
        uint16_t pool;          /* pool index */
        uint32_t slot;
        int32_t pid; /* the worker concerned, or 0 */
        int32_t backend_pid;
        int32_t error; /* negative errno, or 0 */
        uint8_t reserved[20];
};

_Static_assert(sizeof(struct fp_shm_header) == 256, "header ABI");
_Static_assert(sizeof(struct fp_shm_pool) % 64 == 0, "pool on its own cache lines");
_Static_assert(sizeof(struct fp_shm_pool) == 640, "pool ABI");
_Static_assert(sizeof(struct fp_shm_histogram) == 144, "histogram ABI");
_Static_assert(sizeof(struct fp_shm_slot) == 128, "slot ABI");
_Static_assert(sizeof(struct fp_shm_event) == 64, "event ABI");
_Static_assert((FP_SHM_EVENTS & (FP_SHM_EVENTS - 1)) == 0, "event ring size a power of two");
_Static_assert(offsetof(struct fp_shm_pool, seq) == 0, "seq first");
_Static_assert(offsetof(struct fp_shm_pool, counters) == 136, "counters ABI");

/* A mapped segment. */
struct fp_segment {
        struct fp_shm_header *hdr;
        size_t size;
        bool writable;
        char name[FP_SHM_NAME_MAX];
        uint64_t dev, ino; /* the shm file mapped (fp_segment_open()), to notice a new one */
};

/*
 * The POSIX shm name prefix ("/forkpool.<16 hex>") of the instance listening
 * on socket_path, as both the supervisor and readers derive it; its segments
 * are named prefix + "." + 16 random hex digits (segment.c says why). Writes
 * at most FP_SHM_NAME_MAX bytes into ret_name.
 */
void fp_segment_name(const char *socket_path, char ret_name[FP_SHM_NAME_MAX]);

/*
 * Creates the segment `name` ("/…", no other '/') with room for pool_count
 * pools and slot_count slots, mode `mode` (e.g. 0640), group gid (or -1 to
 * keep), and maps it writable into seg. An existing segment of that name
 * that belongs to our uid is marked obsolete and unlinked first; one of
 * another user's is left alone and the call fails with -EEXIST. Symlinks are
 * never followed. Returns 0 or a negative errno.
 */
int fp_segment_create(struct fp_segment *seg, const char *name, uint32_t pool_count,
                      uint32_t slot_count, unsigned mode, int gid);

/*
 * The supervisor's way to create its segment: fp_segment_create() under a
 * fresh random name with the prefix of socket_path (fp_segment_name), drawn
 * again if taken, so that nothing another user created can stop it; then
 * every other segment of that prefix that belongs to our uid (a stale one, the
 * one replaced) is marked obsolete and unlinked. seg->name is the name used.
 * Returns 0 or a negative errno.
 */
int fp_segment_publish(struct fp_segment *seg, const char *socket_path, uint32_t pool_count,
                       uint32_t slot_count, unsigned mode, int gid);

/*
 * Maps an existing segment read-only and checks it: a regular file (never a
 * symlink; a FIFO is not even opened) that nobody but its owner can write,
 * and a header that adds up (magic, version, sizes). Returns 0, -ENOENT (no
 * such segment), -EPERM (writable by others), -EPROTO (another layout
 * version), -EBADMSG (not a segment, or a header that does not add up) or
 * another negative errno.
 */
int fp_segment_open(struct fp_segment *seg, const char *name);

/*
 * The readers' way to map the segment of the supervisor listening on
 * socket_path: among the segments with its prefix, those that pass
 * fp_segment_open()'s checks and belong to the owner of socket_path (the
 * supervisor's uid) or to root, the newest one that is not obsolete (an
 * obsolete one if there is nothing else). Files of anybody else are ignored.
 * Returns 0, -ENOENT (no socket, or no such segment), or the most telling
 * error of a trusted candidate (-EACCES, -EPROTO, -EBADMSG, …). Never blocks.
 */
int fp_segment_find(struct fp_segment *seg, const char *socket_path);

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
 * into *ret_pool and ret_slots (room for max_slots). The strings in the copies
 * (the pool's name, the slots' labels) are NUL-terminated whatever the
 * segment holds. Returns the number of slots copied, or -ERANGE (no such
 * pool), -EAGAIN (the writer kept writing for too long; try later), -EBADMSG
 * (the pool's slots lie outside the segment). On failure *ret_pool is
 * untouched but ret_slots may have been written. Never blocks.
 */
int fp_segment_snapshot(const struct fp_segment *seg, uint32_t i, struct fp_shm_pool *ret_pool,
                        struct fp_shm_slot *ret_slots, uint32_t max_slots);

/* A short lowercase name of a slot state ("idle"), or "unknown". */
const char *fp_slot_state_name(uint32_t state);

/* The configuration name of a pool class ("queue"), or "unknown". */
const char *fp_pool_class_name(uint32_t pool_class);

/* The configuration name of a pool_mode ("session", "transaction"), or "unknown". */
const char *fp_pool_mode_name(uint32_t pool_mode);

/*
 * Parses a reset_on_return value: "rollback" | "commit" | "none" | "discard"
 * | "auto". Returns 0 (*ret set) or -EINVAL (*ret untouched).
 */
int fp_reset_mode_parse(const char *text, enum fp_reset_mode *ret);

/* The config-file name of a reset mode ("rollback"). */
const char *fp_reset_mode_name(enum fp_reset_mode mode);

/*
 * Writes SQLAlchemy's status() line for a pool of class pool_class (enum
 * fp_pool_class) with these counts into buf, QueuePool's character for
 * character: "Pool size: 5  Connections in pool: 1 Current Overflow: -4
 * Current Checked out connections: 0"; "NullPool", "StaticPool",
 * "AssertionPool", "ProcessPool size: N" (N checked out). Returns what
 * snprintf() returns.
 */
int fp_pool_status_line(char *buf, size_t len, uint32_t pool_class, int pool_size, int checked_in,
                        int overflow, int checked_out);

/* The name of an event type ("checkout"), or "unknown". */
const char *fp_event_type_name(uint32_t type);

/*
 * Writer side: appends ev (its seq is ignored) to the event ring, overwriting
 * the oldest entry. Never blocks.
 */
void fp_segment_event_write(struct fp_segment *seg, const struct fp_shm_event *ev);

/* The sequence number of the newest event (0: none yet). */
uint64_t fp_segment_event_last(const struct fp_segment *seg);

/*
 * Reader side: copies event number seq into *ret. Returns 0, -EAGAIN (not
 * written yet) or -ESTALE (already overwritten, or being overwritten).
 */
int fp_segment_event_read(const struct fp_segment *seg, uint64_t seq, struct fp_shm_event *ret);

#endif /* FORKPOOL_SEGMENT_H */
