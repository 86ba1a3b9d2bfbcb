/* SPDX-License-Identifier: MIT */
/*
 * pool.h — one pool's accounting and its records' state machine, with
 * SQLAlchemy's pool semantics (README: Pool semantics, and where forkpool
 * decides otherwise and why) held for every process that leases from it.
 *
 * The pool knows nothing of sockets, databases or event loops: connecting,
 * pinging, resetting, closing, answering a request and reading the clock go
 * through struct fp_pool_ops. That keeps the accounting testable on its own
 * and the I/O in one place (supervisor.c and the drivers).
 *
 * Accounting (QueuePool): a record ("slot") exists while it is counted;
 * the idle queue Q holds records that are not in use, with or without a live
 * connection; the overflow counter O starts at -pool_size and counts records
 * beyond pool_size, so O + pool_size = records that exist. A returned record
 * is closed only if Q already holds pool_size records. Waiters are served in
 * FIFO order, each until its own deadline; a record entering Q, or capacity
 * freed by a failed connect, serves the first waiter.
 *
 * Checkout: an idle record is replaced before it is handed out if
 * it is older than pool_recycle, older than the pool's generation (a dispose,
 * or a disconnect seen on a connection as new as the pool), or was soft
 * invalidated; otherwise, with pre_ping, a connection that has been used
 * before is pinged, and a failed ping invalidates the pool and reconnects once.
 */
#ifndef FORKPOOL_POOL_H
#define FORKPOOL_POOL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "heap.h"
#include "proto.h"
#include "segment.h"

struct fp_pool;

/* How a connection is closed. */
enum fp_close_mode {
        FP_CLOSE_CLEAN,  /* a normal goodbye (Terminate / COM_QUIT) */
        FP_CLOSE_HARD,   /* shutdown() first: cuts every copy a worker may hold */
        FP_CLOSE_FORGET, /* drop our copy without a byte: the session lives on elsewhere */
};

struct fp_record {
        struct fp_pool *pool; /* the pool this record belongs to */
        uint32_t index;       /* slot index within the pool */
        enum fp_slot_state state;
        void *conn;                       /* the driver's connection object, NULL when empty */
        struct fp_waiter *connecting_for; /* the waiter a connect or ping serves, if any */
        void *holder;                     /* the control connection holding the lease */
        pid_t holder_pid;
        uint64_t lease_generation;    /* incremented for every lease */
        int backend_pid;              /* set by the driver when a connect succeeds */
        uint64_t connect_usec;        /* CLOCK_REALTIME, for display */
        uint64_t last_checkout_usec;  /* CLOCK_REALTIME, for display */
        uint64_t connected_at;        /* CLOCK_MONOTONIC of the connect */
        uint64_t recycle_at;          /* CLOCK_MONOTONIC; UINT64_MAX: never */
        uint64_t leased_at;           /* CLOCK_MONOTONIC of the current lease */
        uint64_t generation;          /* the pool's generation when it connected */
        char label[FP_SHM_LABEL_MAX]; /* the holder's label */
        uint32_t pin_reasons;         /* enum fp_pin_reason the holder reported for this lease */
        bool new_record;              /* created for this connect: a failure un-counts it */
        bool fresh;                   /* connected and not yet handed out: never pinged */
        bool leak_reported;
        bool in_fdstore; /* its socket is in systemd's fd store (fdstore.c) */
        bool restored;   /* a lease restored from the fd store, not yet returned */
        bool dirty;      /* to be published */
        bool in_queue;
        TAILQ_ENTRY(fp_record) queue_link; /* in Q, while in_queue */
        /* A restored lease's id, as the previous supervisor gave it (fdstore.c). */
        uint64_t restored_lease_id;
};

struct fp_waiter_list;

struct fp_waiter {
        TAILQ_ENTRY(fp_waiter) link;        /* in its pool's queue, while queued */
        TAILQ_ENTRY(fp_waiter) client_link; /* in its client's list (ops->client_waiters) */
        struct fp_waiter_list *client_list; /* that list, or NULL */
        struct fp_pool *pool;
        void *client; /* the control connection that asked */
        pid_t pid;
        uint32_t request_id;
        uint64_t deadline_usec; /* CLOCK_MONOTONIC; UINT64_MAX: wait forever */
        uint64_t start_usec;
        uint64_t seq;      /* arrival order in its pool: breaks deadline ties */
        size_t heap_index; /* position in the pool's deadline heap; FP_HEAP_NONE: not queued */
        uint64_t prefer_lease_id; /* the lease it held last and would like back, 0: none */
        char label[FP_SHM_LABEL_MAX];
};

TAILQ_HEAD(fp_waiter_list, fp_waiter);

/* What a worker said when it gave a connection back. */
struct fp_release_info {
        uint32_t flags; /* enum fp_release_flags */
        uint32_t txn;   /* enum fp_txn */
        uint32_t dirty; /* enum fp_session_dirty: what the worker saw change */
        const char *params;
        uint32_t params_len;
        /* The session's statement set as the worker left it (FP_RELEASE_STATEMENTS), or NULL. */
        const struct fp_stmt_set *statements;
        /* The pool keeps its connections' statement sets (transaction mode); set by op_reset. */
        bool keep_statements;
};

struct fp_pool_ops {
        /*
         * Starts connecting rec (rec->conn is NULL). The driver reports the end
         * with fp_pool_connect_done(), never from inside this call.
         */
        void (*connect)(struct fp_pool *pool, struct fp_record *rec);
        /* Starts a liveness check of rec; ends with fp_pool_ping_done(), never inside. */
        void (*ping)(struct fp_pool *pool, struct fp_record *rec);
        /*
         * Starts resetting rec after a clean release. The driver reports the end
         * with fp_pool_reset_done(); it may do so from inside this call.
         */
        void (*reset)(struct fp_pool *pool, struct fp_record *rec,
                      const struct fp_release_info *info);
        /* Closes rec->conn. */
        void (*close)(struct fp_pool *pool, struct fp_record *rec, enum fp_close_mode mode);
        /* Sends the lease of rec to waiter w. Returns 0 or a negative errno. */
        int (*send_lease)(struct fp_pool *pool, struct fp_record *rec, struct fp_waiter *w);
        /* Answers waiter w with an error. */
        void (*send_error)(struct fp_pool *pool, struct fp_waiter *w, int error, const char *text);
        /* The earliest waiter deadline changed (UINT64_MAX: none). May be NULL. */
        void (*deadline_changed)(struct fp_pool *pool, uint64_t deadline_usec);
        /* CLOCK_MONOTONIC now, in microseconds. */
        uint64_t (*now)(struct fp_pool *pool);
        /*
         * Something happened (rec may be NULL): for the event ring and the log.
         * duration_usec is what the event measured (wait, hold, connect time).
         * May be NULL.
         */
        void (*event)(struct fp_pool *pool, enum fp_event_type type, const struct fp_record *rec,
                      pid_t pid, uint64_t duration_usec, int error);
        /* Random bits for recycle jitter. May be NULL (no jitter). */
        uint32_t (*random)(struct fp_pool *pool);
        /*
         * Waiter w is about to be freed: it was answered (lease or error) or
         * dropped with its client. Called once per waiter that
         * fp_pool_acquire() accepted, never from fp_pool_done(). May be NULL.
         */
        void (*waiter_done)(struct fp_pool *pool, struct fp_waiter *w);
        /*
         * The list, owned by the caller, that holds every waiter of client in
         * every pool, from acquire to waiter_done, so that
         * fp_pool_client_gone() costs the client's waiters, not all of them.
         * Initialised (TAILQ_INIT) by the caller; must outlive the waiters,
         * except that fp_pool_done() does not touch it. May be NULL.
         */
        struct fp_waiter_list *(*client_waiters)(struct fp_pool *pool, void *client);
};

struct fp_pool_params {
        char name[FP_SHM_POOL_NAME_MAX];
        enum fp_pool_class pool_class;
        enum fp_pool_mode pool_mode; /* published for the drop-in; the pool itself ignores it */
        int pool_size;
        int max_overflow;
        int timeout_ms;
        int connect_timeout_ms;
        enum fp_reset_mode reset_mode;
        int recycle_ms; /* -1: off */
        bool pre_ping;
        bool use_lifo;
        bool affinity;         /* a process may get back the idle connection it held last */
        int leak_timeout_ms;   /* 0: off */
        int max_lease_time_ms; /* 0: off */
};

struct fp_pool {
        struct fp_pool_params params; /* as configured */
        const struct fp_pool_ops *ops;
        void *userdata;

        int pool_size;     /* effective: the pool class may force it */
        int overflow;      /* O */
        int max_overflow;  /* M: -1 when unlimited (pool_size == 0 too) */
        uint32_t capacity; /* records this pool can ever hold: FP_SHM_MAX_SLOTS_PER_POOL */
        uint32_t id;       /* index among the supervisor's pools (segment, fd store) */
        int n_live;        /* records with a live connection */
        uint32_t *dirty;   /* records changed since the last publish */
        uint32_t n_dirty;
        /* In this supervisor's lease ids: never one a previous supervisor gave. */
        uint16_t lease_tag;
        struct fp_record *records;
        uint64_t *unused;     /* bit i set: records[i] is FP_SLOT_UNUSED (record_alloc's lowest) */
        uint32_t records_end; /* 1 + the highest index ever not FP_SLOT_UNUSED: scans stop there */
        /* Q: taken from the head (FIFO) or tail (LIFO). */
        TAILQ_HEAD(fp_record_queue, fp_record) queue;
        uint32_t queue_len;
        struct fp_waiter_list waiters; /* FIFO: the order they are served in */
        struct fp_heap deadlines;      /* the same waiters, earliest deadline first */
        uint64_t waiter_seq;           /* the last waiter's seq */
        int n_waiting;
        bool dispatching;    /* dispatch() is running: a nested call only asks for a rerun */
        bool dispatch_again; /* something changed under a running dispatch() */
        bool closing;        /* removed or shutting down: nothing is reused */
        bool paused;         /* an admin paused it: nothing is handed out */
        bool connected_once; /* first_connect has fired */
        uint64_t generation; /* records connected before it are replaced */

        struct fp_shm_counters counters;
        struct fp_shm_histogram wait_hist; /* acquire waits */
        struct fp_shm_histogram hold_hist; /* lease hold times */
        struct fp_shm_pool *shm;           /* NULL: not published */
        struct fp_shm_slot *shm_slots;     /* capacity entries */
};

/*
 * Initialises *pool. Returns 0 or -ENOMEM. max_overflow < -1 must have been
 * rejected by the configuration.
 */
int fp_pool_init(struct fp_pool *pool, const struct fp_pool_params *params,
                 const struct fp_pool_ops *ops, void *userdata);

/*
 * Whether the next acquire would be handed an idle connection now (the
 * record it would take from Q has one), not a connect. O(1).
 */
bool fp_pool_has_idle_connection(const struct fp_pool *pool);

/* Frees the pool's memory (waiters included). Connections must have been closed. */
void fp_pool_done(struct fp_pool *pool);

/* Attaches the shared-segment records the pool publishes into (may be NULL). */
void fp_pool_attach_shm(struct fp_pool *pool, struct fp_shm_pool *shm, struct fp_shm_slot *slots);

/* Applies new parameters (a reload; the class stays). Waiters are re-dispatched. */
void fp_pool_update_params(struct fp_pool *pool, const struct fp_pool_params *params);

/*
 * Queues an acquire from client (pid) and serves it if it can. timeout_ms < 0
 * means the pool's timeout; 0 means try once. label (may be NULL) is what the
 * holder called the lease. prefer_lease_id (0: none) names the lease the
 * client held last: with affinity on, that connection is handed out when it is
 * idle and nobody has leased it since, whatever its place in Q (waiters are
 * still served in their order). Answers through ops (possibly before
 * returning). Returns 0 or -ENOMEM (nothing queued, nothing answered).
 */
int fp_pool_acquire(struct fp_pool *pool, void *client, pid_t pid, uint32_t request_id,
                    int timeout_ms, const char *label, uint64_t prefer_lease_id);

/*
 * Takes back the record leased to client (process pid) with lease_id. A lease
 * restored from systemd's fd store matches by slot and generation only (its
 * pool may have another id now) and is released by its holder's process from
 * any new control connection. Returns 0, or -ESRCH if no such lease is held
 * by that client (nothing changes).
 */
int fp_pool_release(struct fp_pool *pool, void *client, pid_t pid, uint64_t lease_id,
                    const struct fp_release_info *info);

/* The driver finished connecting rec: error 0 (rec->conn set) or a negative errno. */
void fp_pool_connect_done(struct fp_pool *pool, struct fp_record *rec, int error, const char *text);

/* The driver finished pinging rec: error 0 (alive) or a negative errno. */
void fp_pool_ping_done(struct fp_pool *pool, struct fp_record *rec, int error, const char *text);

/* The driver finished resetting rec: ok false closes the connection. */
void fp_pool_reset_done(struct fp_pool *pool, struct fp_record *rec, bool ok);

/*
 * The control connection client is gone (its process died or closed it): its
 * waiters are dropped, its leases reclaimed (hard close, never reused).
 * Returns the number of leases reclaimed. O(records in use + the client's
 * waiters) with ops->client_waiters, O(records in use + all waiters) without
 * (records in use: up to the highest slot index the pool has used, not its
 * capacity).
 */
int fp_pool_client_gone(struct fp_pool *pool, void *client);

/*
 * Fails every waiter whose deadline is <= now with -ETIMEDOUT, earliest
 * deadline first (ties in arrival order). O(log n) per expired waiter.
 */
void fp_pool_expire(struct fp_pool *pool, uint64_t now_usec);

/* The earliest waiter deadline, or UINT64_MAX. O(1). */
uint64_t fp_pool_next_deadline(const struct fp_pool *pool);

/*
 * Leak control: reports leases held longer than leak_timeout (once each) and
 * revokes those held longer than max_lease_time (hard close: the holder's next
 * query fails). Call periodically.
 */
void fp_pool_check_leases(struct fp_pool *pool);

/*
 * Stops reuse: fails every waiter with error/text, closes idle connections;
 * leased ones are closed when they come back. Connects in progress finish and
 * are then closed.
 */
void fp_pool_drain(struct fp_pool *pool, int error, const char *text);

/*
 * Moves the pool's generation on: idle connections close now (their records
 * stay, empty), leased ones close when they come back, and everything after
 * is new. Counters stay truthful. This is dispose, and what a disconnect does.
 */
void fp_pool_invalidate_all(struct fp_pool *pool);

/*
 * Pauses (nothing handed out; waiters wait, leases drain as they come back)
 * or resumes the pool.
 */
void fp_pool_set_paused(struct fp_pool *pool, bool paused);

/*
 * Revokes the lease in slot (hard close: the holder's next query fails).
 * Returns 0, or -ESRCH if that slot holds no lease.
 */
int fp_pool_revoke(struct fp_pool *pool, uint32_t slot);

/*
 * Puts a connection a previous supervisor left (systemd's fd store) back in
 * slot index: idle (into Q), or leased to holder_pid with the lease
 * generation its holder knows. A restored lease has no control connection
 * until its holder's process reconnects (fp_pool_attach_orphans()). Returns 0
 * or -EBUSY (the slot is in use).
 */
int fp_pool_restore(struct fp_pool *pool, uint32_t index, void *conn, int backend_pid, bool leased,
                    pid_t holder_pid, uint64_t lease_generation);

/* A process reconnected: its restored leases are held by client from now on. */
void fp_pool_attach_orphans(struct fp_pool *pool, void *client, pid_t pid);

/*
 * The holder (pid) of a restored lease died: reclaims it if it is still that
 * process's restored lease. Returns true if it did.
 */
bool fp_pool_reclaim_orphan(struct fp_pool *pool, uint32_t index, pid_t pid);

/* Records that are leased, resetting, being checked or connecting. */
int fp_pool_busy(const struct fp_pool *pool);

/* Hard-closes every leased record (end of a shutdown grace period). */
void fp_pool_revoke_all(struct fp_pool *pool);

/* SQLAlchemy's accessors (size(), checkedin(), overflow(), checkedout()). */
int fp_pool_checkedin(const struct fp_pool *pool);
int fp_pool_checkedout(const struct fp_pool *pool);
int fp_pool_overflow(const struct fp_pool *pool);

/*
 * SQLAlchemy's status() line for the pool's class, e.g. "Pool size: 5
 * Connections in pool: 1 Current Overflow: -4 Current Checked out
 * connections: 0", "NullPool", "StaticPool", "AssertionPool".
 */
int fp_pool_status(const struct fp_pool *pool, char *buf, size_t len);

/* Records the holder's pin reasons (enum fp_pin_reason) for rec's lease, for forkpoolctl. */
void fp_pool_set_pin(struct fp_pool *pool, struct fp_record *rec, uint32_t reasons);

/* Record with the given lease id, or NULL. */
struct fp_record *fp_pool_find_lease(struct fp_pool *pool, uint64_t lease_id);

/*
 * The lease id of rec's current lease, as this supervisor gives it: the pool's
 * lease tag, slot index, lease generation (a restored lease keeps the id it
 * was given: rec->restored_lease_id).
 */
static inline uint64_t fp_record_lease_id(const struct fp_pool *pool, const struct fp_record *rec)
{
        return (uint64_t)pool->lease_tag << 48 | (uint64_t)rec->index << 32 |
               (uint32_t)rec->lease_generation;
}

/* The pool's lease tag inside a lease id. */
static inline uint32_t fp_lease_id_pool(uint64_t lease_id)
{
        return (uint32_t)(lease_id >> 48);
}

/* Publishes counters and changed records to the segment (no-op when unattached). */
void fp_pool_publish(struct fp_pool *pool);

#endif /* FORKPOOL_POOL_H */
