/* SPDX-License-Identifier: MIT */
/*
 * savedstate.h — the layout of the fd store's state memfd (fdstore.c) and the
 * checks that make a memfd left by another forkpoold safe to read.
 *
 * The memfd is a header followed by fixed-size records, one per (pool id,
 * slot index) of the supervisor that wrote it. It is read with pread(), never
 * mapped: a memfd that is shorter than its header says (an older forkpoold, a
 * truncated one) cannot fault the reader. Every record is checked and its
 * strings and lengths bounded before use: the next forkpoold may be another
 * version, and a record may be half-written by a crash.
 *
 * Each writer has a random epoch, in the header and in the store's name of
 * every connection it kept ("c<epoch>.<pool id>.<slot>"): a name of a previous
 * supervisor never equals one the current one gives, so removing a restored
 * connection's old name from the store cannot remove another connection.
 */
#ifndef FORKPOOL_SAVEDSTATE_H
#define FORKPOOL_SAVEDSTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"
#include "segment.h"

#define FP_SAVED_STATE_MAGIC   0x54535046u /* "FPST" */
#define FP_SAVED_STATE_VERSION 2u          /* 1: records at offset 0, no header */
#define FP_SAVED_SLOT_MAGIC    0x464b5053u /* "SPKF" */
#define FP_SAVED_HEADER_SIZE   64
#define FP_SAVED_SLOT_SIZE     2432
#define FP_SAVED_RECORDS       ((uint32_t)FP_SHM_MAX_POOLS * FP_SHM_MAX_SLOTS_PER_POOL)
/* The largest store name: "c" + 16 hex digits + "." + pool id + "." + slot index. */
#define FP_SAVED_NAME_MAX 40

struct fp_saved_header {
        uint32_t magic;       /* FP_SAVED_STATE_MAGIC */
        uint32_t version;     /* FP_SAVED_STATE_VERSION */
        uint32_t header_size; /* FP_SAVED_HEADER_SIZE: where record 0 starts */
        uint32_t record_size; /* FP_SAVED_SLOT_SIZE */
        uint32_t n_records;   /* FP_SAVED_RECORDS */
        uint32_t reserved0;
        uint64_t epoch; /* the writer's, in its connections' store names */
        uint8_t reserved[32];
};

/* What was saved of one slot. */
struct fp_saved_slot {
        uint32_t magic; /* FP_SAVED_SLOT_MAGIC when the record is in use */
        uint32_t index; /* slot index in its pool */
        char pool[FP_SHM_POOL_NAME_MAX];
        uint32_t db_kind; /* enum fp_db_kind: which of pg and my is set */
        uint32_t state;   /* FP_SLOT_IDLE or FP_SLOT_LEASED; anything else is not restored */
        int32_t holder_pid;
        uint32_t txn; /* enum fp_txn at the next hand-over */
        uint64_t lease_generation;
        uint64_t lease_id; /* of the lease held (FP_SLOT_LEASED), as its holder knows it */
        union {
                struct fp_lease_pg pg;    /* FP_DB_POSTGRES */
                struct fp_lease_mysql my; /* FP_DB_MYSQL */
        };
};

/* The layout is read by the next forkpoold: a change bumps FP_SAVED_STATE_VERSION. */
_Static_assert(sizeof(struct fp_saved_header) == FP_SAVED_HEADER_SIZE, "saved header layout");
_Static_assert(sizeof(struct fp_lease_mysql) <= sizeof(struct fp_lease_pg),
               "a MySQL record does not grow the saved slot");
_Static_assert(sizeof(struct fp_saved_slot) == FP_SAVED_SLOT_SIZE, "saved slot layout");
_Static_assert(offsetof(struct fp_saved_slot, lease_id) == 96, "saved slot layout");
_Static_assert(offsetof(struct fp_saved_slot, pg) == 104, "saved slot layout");

/* The size of a state memfd: header and every record (sparse: only written records use memory). */
static inline uint64_t fp_saved_state_size(void)
{
        return FP_SAVED_HEADER_SIZE + (uint64_t)FP_SAVED_RECORDS * FP_SAVED_SLOT_SIZE;
}

/* The file offset of the record of (pool id, slot index); both must be in range. */
static inline uint64_t fp_saved_record_offset(uint32_t pool_id, uint32_t index)
{
        return FP_SAVED_HEADER_SIZE +
               ((uint64_t)pool_id * FP_SHM_MAX_SLOTS_PER_POOL + index) * FP_SAVED_SLOT_SIZE;
}

/* Fills a header for a writer with epoch. */
void fp_saved_header_init(struct fp_saved_header *hdr, uint64_t epoch);

/*
 * Checks a header read from a memfd of file_size bytes (len: how many bytes
 * of it were read): magic, version, sizes, and that the file holds every
 * record. Returns 0 and the writer's epoch in *ret_epoch, -EBADMSG if it is
 * not a state memfd or truncated, -EPROTONOSUPPORT if it is another layout
 * version. Does not block.
 */
int fp_saved_header_check(const void *buf, size_t len, uint64_t file_size, uint64_t *ret_epoch);

/*
 * Checks one record as read (len bytes) for slot index and makes a safe copy
 * in *ret: every string terminated, every length in bounds, the PostgreSQL
 * parameters well formed. Returns 0, -ENOENT if the record is not in use (or
 * is for another slot), -EBADMSG if it is malformed (the connection it
 * describes cannot be adopted). *ret is written only on success.
 */
int fp_saved_record_check(const void *buf, size_t len, uint32_t index, struct fp_saved_slot *ret);

/* The saved session's id, for messages: its backend pid or MySQL thread id. */
int fp_saved_slot_backend_id(const struct fp_saved_slot *s);

/* Writes the store name of a connection into buf (FP_SAVED_NAME_MAX bytes). */
void fp_saved_name_format(char *buf, size_t len, uint64_t epoch, uint32_t pool_id, uint32_t index);

/*
 * Parses a store name "c<16 hex digits>.<pool id>.<slot index>". Returns true
 * and the parts if it is one, with pool id and slot index in range.
 */
bool fp_saved_name_parse(const char *name, uint64_t *ret_epoch, uint32_t *ret_pool_id,
                         uint32_t *ret_index);

#endif /* FORKPOOL_SAVEDSTATE_H */
