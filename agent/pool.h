/* SPDX-License-Identifier: MIT */
/*
 * pool.h — one pool's accounting and its records' state machine, with
 * SQLAlchemy's QueuePool semantics (research/sqlalchemy_pool.md §2) held for
 * every process that leases from it.
 *
 * The pool knows nothing of sockets, databases or event loops: connecting,
 * resetting, closing and answering a request go through struct fp_pool_ops,
 * and the caller passes the current CLOCK_MONOTONIC time in. That keeps the
 * accounting testable on its own and the I/O in one place (supervisor.c).
 *
 * Accounting: a record ("slot") exists while it is counted; the idle queue Q
 * holds records that are not in use, with or without a live connection; the
 * overflow counter O starts at -pool_size and counts records that exist
 * beyond pool_size, so O + pool_size = records that exist. A returned record
 * is closed only if Q already holds pool_size records. Waiters are served in
 * FIFO order, each until its own deadline; a record entering Q or capacity
 * freed by a failed connect serves the first waiter.
 */
#ifndef FORKPOOL_POOL_H
#define FORKPOOL_POOL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "proto.h"
#include "segment.h"

struct fp_pool;

struct fp_record {
        struct fp_pool *pool; /* the pool this record belongs to */
        uint32_t index;       /* slot index within the pool */
        enum fp_slot_state state;
        void *conn;           /* the driver's connection object, NULL when empty */
        struct fp_waiter *connecting_for; /* the waiter a connect is serving, if any */
        void *holder;         /* the control connection holding the lease */
        pid_t holder_pid;
        uint64_t lease_generation; /* incremented for every lease */
        int backend_pid;      /* set by the driver when a connect succeeds */
        uint64_t connect_usec;       /* CLOCK_REALTIME, for display */
        uint64_t last_checkout_usec; /* CLOCK_REALTIME, for display */
        bool new_record;      /* created for this connect: a failure un-counts it */
        uint64_t generation;  /* the pool's generation when it connected */
        bool dirty;           /* to be published */
        bool in_queue;
};

struct fp_waiter {
        TAILQ_ENTRY(fp_waiter) link;
        void *client;         /* the control connection that asked */
        pid_t pid;
        uint32_t request_id;
        uint64_t deadline_usec; /* CLOCK_MONOTONIC; UINT64_MAX: wait forever */
        uint64_t start_usec;
};

TAILQ_HEAD(fp_waiter_list, fp_waiter);

/* What a worker said when it gave a connection back. */
struct fp_release_info {
        uint32_t flags; /* enum fp_release_flags */
        uint32_t txn;   /* enum fp_txn */
        const char *params;
        uint32_t params_len;
};

struct fp_pool_ops {
        /*
         * Starts connecting rec (rec->conn is NULL). The driver reports the end
         * with fp_pool_connect_done(), never from inside this call.
         */
        void (*connect)(struct fp_pool *pool, struct fp_record *rec);
        /*
         * Starts resetting rec after a clean release. The driver reports the end
         * with fp_pool_reset_done(); it may do so from inside this call.
         */
        void (*reset)(struct fp_pool *pool, struct fp_record *rec,
                      const struct fp_release_info *info);
        /* Closes rec->conn (hard: shutdown() first, as its socket may be shared). */
        void (*close)(struct fp_pool *pool, struct fp_record *rec, bool hard);
        /* Sends the lease of rec to waiter w. Returns 0 or a negative errno. */
        int (*send_lease)(struct fp_pool *pool, struct fp_record *rec, struct fp_waiter *w);
        /* Answers waiter w with an error. */
        void (*send_error)(struct fp_pool *pool, struct fp_waiter *w, int error,
                           const char *text);
        /* The earliest waiter deadline changed (UINT64_MAX: none). May be NULL. */
        void (*deadline_changed)(struct fp_pool *pool, uint64_t deadline_usec);
};

struct fp_pool_params {
        char name[FP_SHM_POOL_NAME_MAX];
        int pool_size;
        int max_overflow;
        int timeout_ms;
        int connect_timeout_ms;
        enum fp_reset_mode reset_mode;
};

struct fp_pool {
        struct fp_pool_params params;
        const struct fp_pool_ops *ops;
        void *userdata;

        int overflow;       /* O */
        int max_overflow;   /* M: -1 when unlimited (pool_size == 0 too) */
        uint32_t capacity;  /* records this pool can ever hold: FP_SHM_MAX_SLOTS_PER_POOL */
        uint32_t id;        /* index among the supervisor's pools (in lease ids) */
        int n_live;         /* records with a live connection */
        uint32_t *dirty;    /* records changed since the last publish */
        uint32_t n_dirty;
        struct fp_record *records;
        uint32_t *queue;    /* ring of record indexes: Q */
        uint32_t queue_head, queue_len;
        struct fp_waiter_list waiters;
        int n_waiting;
        bool closing;       /* removed or shutting down: nothing is reused */
        uint64_t generation; /* records connected before the current one are not reused */

        struct fp_shm_counters counters;
        struct fp_shm_pool *shm;       /* NULL: not published */
        struct fp_shm_slot *shm_slots; /* capacity entries */
};

/*
 * Initialises *pool. The shm pointers may be NULL. Returns 0 or -ENOMEM.
 * max_overflow < -1 must have been rejected by the configuration.
 */
int fp_pool_init(struct fp_pool *pool, const struct fp_pool_params *params,
                 const struct fp_pool_ops *ops, void *userdata);

/* Frees the pool's memory. Every record must be unused (see fp_pool_close_all()). */
void fp_pool_done(struct fp_pool *pool);

/* Attaches the shared-segment records the pool publishes into (may be NULL). */
void fp_pool_attach_shm(struct fp_pool *pool, struct fp_shm_pool *shm, struct fp_shm_slot *slots);

/* Applies new parameters (a reload). Waiters are re-dispatched. */
void fp_pool_update_params(struct fp_pool *pool, const struct fp_pool_params *params);

/*
 * Queues an acquire from client (pid) and serves it if it can. timeout_ms < 0
 * means the pool's timeout; 0 means try once. Answers through ops (possibly
 * before returning). Returns 0 or -ENOMEM (nothing queued, nothing answered).
 */
int fp_pool_acquire(struct fp_pool *pool, void *client, pid_t pid, uint32_t request_id,
                    int timeout_ms, uint64_t now_usec);

/*
 * Takes back the record leased to client with lease_id. Returns 0, or
 * -ESRCH if no such lease is held by that client (nothing changes).
 */
int fp_pool_release(struct fp_pool *pool, void *client, uint64_t lease_id,
                    const struct fp_release_info *info);

/* The driver finished connecting rec: error 0 (rec->conn set) or a negative errno. */
void fp_pool_connect_done(struct fp_pool *pool, struct fp_record *rec, int error,
                          const char *text);

/* The driver finished resetting rec: ok false closes the connection. */
void fp_pool_reset_done(struct fp_pool *pool, struct fp_record *rec, bool ok);

/*
 * The control connection client is gone (its process died or closed it): its
 * waiters are dropped, its leases reclaimed (hard close, never reused).
 * Returns the number of leases reclaimed.
 */
int fp_pool_client_gone(struct fp_pool *pool, void *client);

/* Fails every waiter whose deadline is <= now with -ETIMEDOUT. */
void fp_pool_expire(struct fp_pool *pool, uint64_t now_usec);

/* The earliest waiter deadline, or UINT64_MAX. */
uint64_t fp_pool_next_deadline(const struct fp_pool *pool);

/*
 * Stops reuse: fails every waiter with error/text, closes idle connections;
 * leased ones are closed when they come back. Connects in progress finish and
 * are then closed.
 */
void fp_pool_drain(struct fp_pool *pool, int error, const char *text);

/*
 * Closes idle connections and marks every other one to be closed when it comes
 * back (SQLAlchemy's dispose(), with truthful counters): the pool generation
 * moves on. Waiters are then served with new connections.
 */
void fp_pool_dispose(struct fp_pool *pool);

/* Records that are leased, resetting or connecting. */
int fp_pool_busy(const struct fp_pool *pool);

/* Hard-closes every leased record (end of a shutdown grace period). */
void fp_pool_revoke_all(struct fp_pool *pool);

/* SQLAlchemy's accessors (§2.1). */
int fp_pool_checkedin(const struct fp_pool *pool);
int fp_pool_checkedout(const struct fp_pool *pool);
int fp_pool_overflow(const struct fp_pool *pool);

/* SQLAlchemy's status() line, e.g. "Pool size: 5  Connections in pool: 1 …". */
int fp_pool_status(const struct fp_pool *pool, char *buf, size_t len);

/* Record with the given lease id, or NULL. */
struct fp_record *fp_pool_find_lease(struct fp_pool *pool, uint64_t lease_id);

/* The lease id of rec's current lease: pool id, slot index, lease generation. */
static inline uint64_t fp_record_lease_id(const struct fp_pool *pool, const struct fp_record *rec)
{
        return (uint64_t)pool->id << 48 | (uint64_t)rec->index << 32 |
               (uint32_t)rec->lease_generation;
}

/* The pool id inside a lease id. */
static inline uint32_t fp_lease_id_pool(uint64_t lease_id)
{
        return (uint32_t)(lease_id >> 48);
}

/* Publishes counters and changed records to the segment (no-op when unattached). */
void fp_pool_publish(struct fp_pool *pool);

#endif /* FORKPOOL_POOL_H */
