/* SPDX-License-Identifier: MIT */
/*
 * dropin.h — the drop-in's record of a forkpool connection and what its
 * modules share: dropin.c (connect, finish, reset, cancel, host reporting)
 * and txmode.c (transaction pooling).
 */
#ifndef FORKPOOL_DROPIN_DROPIN_H
#define FORKPOOL_DROPIN_DROPIN_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "internal.h"
#include "pgadopt.h"
#include "target.h"

struct txmode;

/* Marks a function the drop-in exports in libpq's name (all else is hidden). */
#define DROPIN_EXPORT __attribute__((visibility("default")))

enum dropin_state {
        DROPIN_ADOPTING, /* inside the drop-in's own calls into libpq: pass through */
        DROPIN_PENDING,  /* an acquire is on its way; PQsocket() shows its control connection */
        DROPIN_READY,    /* leased and adopted */
        DROPIN_FAILED,   /* refused: CONNECTION_BAD, error says why */
};

struct dropin_conn {
        struct dropin_conn *next; /* in its hash bucket */
        PGconn *conn;
        pid_t pid; /* the process that made it */
        enum dropin_state state;
        forkpool_lease *lease;    /* while READY */
        struct wait_handle *wait; /* the control connection a non-blocking connect waited on */
        bool wait_leased;         /* its lease came on it (and is counted there) */
        uint32_t request_id;      /* the pending acquire's, on wait */
        int libpq_fd;             /* libpq's own socket while PQsocket() shows wait's */
        /*
         * A non-blocking connect that found no control connection to wait on
         * (the process has as many as max_connections_per_pid allows): a
         * periodic timer under PQsocket() instead, each PQconnectPoll() tries
         * again until queue_deadline_ms. -1: not queued.
         */
        int queue_timer;
        int64_t queue_deadline_ms;
        struct fp_pg_adoption adoption; /* while PENDING */
        bool foreign_events;            /* the application registered an event procedure */
        struct txmode *tx; /* a transaction-mode connection's state (txmode.c), or NULL */
        struct dropin_target target;
        char error[600]; /* PQerrorMessage() of a FAILED connection, "…\n" */
};

/*
 * The entry of conn, or NULL (not a forkpool connection; no lock taken when
 * the process has none). The entry stays valid while conn is the caller's.
 */
struct dropin_conn *dropin_find(const PGconn *conn);

/*
 * A PGcancel object for d (PQgetCancel() of a forkpool connection): for the
 * session of d's lease, or in transaction mode for the session running its
 * transaction at the time of the cancel. NULL when d has no session it may
 * cancel (not connected, or inherited across fork) or the arena is full.
 */
PGcancel *dropin_get_cancel(struct dropin_conn *d);

/*
 * The process's control connection to the forkpoold at socket, or NULL with
 * a negative errno in *ret_error.
 */
forkpool *dropin_main_handle(const char *socket, int *ret_error);

/*
 * A blocking acquire for d from its pool (timeout_ms < 0: pool_timeout) on a
 * control connection no other acquire uses right now, asking for the
 * session prefer (a lease id this process held, 0: any); the lease is
 * counted on that connection (d->wait) until dropin_lease_gone(). Returns 0
 * with the lease in *ret or a negative errno.
 */
int dropin_acquire(struct dropin_conn *d, forkpool *main, int timeout_ms, uint64_t prefer,
                   forkpool_lease **ret);

/*
 * A non-blocking acquire for d on a control connection of its own (d->wait,
 * d->request_id): returns that connection's descriptor, readable once the
 * answer is there, or a negative errno.
 */
int dropin_acquire_send(struct dropin_conn *d, int timeout_ms, uint64_t prefer);

/*
 * Collects the answer of dropin_acquire_send() without blocking: 0 with the
 * lease in *ret (counted on d->wait), -EAGAIN while it has not come, or the
 * acquire's negative errno with its one-line reason in error.
 */
int dropin_acquire_recv(struct dropin_conn *d, forkpool_lease **ret, char *error, size_t cap);

/* How often a command or a connect waiting in the process for a control connection retries. */
#define DROPIN_QUEUE_RETRY_MS 5

/* The wait's limit when the pool's pool_timeout cannot be read (forkpoold's default). */
#define DROPIN_FALLBACK_POOL_TIMEOUT_MS 30000

/*
 * A periodic timer (every DROPIN_QUEUE_RETRY_MS, non-blocking) for what waits
 * in the process for a control connection, and that wait's deadline (d's
 * acquire timeout from now, CLOCK_MONOTONIC ms; the pool's pool_timeout, or
 * DROPIN_FALLBACK_POOL_TIMEOUT_MS when the segment cannot be read at that
 * moment) in *ret_deadline_ms. Returns the timer's descriptor or a negative
 * errno.
 */
int dropin_queue_timer(const struct dropin_conn *d, forkpool *main, int64_t *ret_deadline_ms);

/* Gives up d's pending acquire (a lease that comes for it goes back unused). */
void dropin_acquire_abandon(struct dropin_conn *d);

/* d's lease has been given back: its control connection no longer counts it. */
void dropin_lease_gone(struct dropin_conn *d);

/*
 * A fresh lease into d's PGconn (PQreset()): what it holds goes back first,
 * then the PGconn is reconnected to the adoption listener and the new
 * session adopted into it (blocking, up to the acquire's timeout). d is
 * READY, or FAILED (CONNECTION_BAD) with the reason in d->error.
 */
void dropin_reset(struct dropin_conn *d);

/* One line saying why an acquire for t failed with err (forkpool's reason), into buf. */
void dropin_acquire_error(const struct dropin_target *t, forkpool *fp, int err, char *buf,
                          size_t cap);

/* --- transaction mode (txmode.c; its header comment says how it works) --- */

/*
 * Called when d has just been connected (or reset) with its lease adopted:
 * if its pool is in transaction mode, d becomes a transaction-mode
 * connection and its session goes back (unless the connect itself left
 * state: then it is pinned). Returns 0 or a negative errno (d is then left
 * as a session-mode connection).
 */
int txmode_connected(struct dropin_conn *d);

/*
 * Before PQreset() of a transaction-mode connection: its lease (if any) goes
 * back, the placeholder stays under the PGconn.
 */
void txmode_before_reset(struct dropin_conn *d);

/*
 * PQfinish() of a transaction-mode connection in the process that made it:
 * its lease (if any) goes back, an unconnected socket is put under the
 * PGconn and d->tx is freed. The caller then finishes the PGconn.
 */
void txmode_finish(struct dropin_conn *d);

/* Frees d->tx without a word to anyone (a child after fork). */
void txmode_forget(struct dropin_conn *d);

/*
 * PQgetCancel() of a transaction-mode connection: an object that cancels
 * the session running its transaction at the time of PQcancel() (nothing
 * while it is idle), or NULL.
 */
PGcancel *txmode_get_cancel(struct dropin_conn *d);

/*
 * on: this thread's calls of the replaced command functions pass straight
 * through to libpq until the matching call with off (the drop-in's own
 * calls, while it connects or resets a connection). Nests.
 */
void txmode_suspend(bool on);

/* PQerrorMessage() of a transaction-mode connection whose last lease failed, or NULL. */
const char *txmode_error(const struct dropin_conn *d);

#endif /* FORKPOOL_DROPIN_DROPIN_H */
