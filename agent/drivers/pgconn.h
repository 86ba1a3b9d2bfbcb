/* SPDX-License-Identifier: MIT */
/*
 * pgconn.h — the supervisor's side of one PostgreSQL connection: connecting
 * without blocking the loop (PQconnectStartParams/PQconnectPoll), resetting it
 * after a lease, closing it, and describing it for a lease.
 *
 * The supervisor's PGconn is never read while the connection is leased: its
 * event source is disabled from the moment it is handed out. Its cached
 * session state goes stale during a lease; the worker's report at release and
 * the reset's own reports make the cache true again.
 */
#ifndef FORKPOOL_PGCONN_H
#define FORKPOOL_PGCONN_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <systemd/sd-event.h>

#include "driver.h"
#include "pgparams.h"
#include "pool.h"
#include "proto.h"

struct fp_pgconn;

/*
 * Starts connecting with the NULL-terminated keyword arrays (which must
 * already force sslmode=disable, gssencmode=disable). The callback runs from
 * the event loop, never from inside this call, with the connection on success
 * (a failed one is already freed). Returns 0 and the connection in *ret, or
 * -ENOMEM.
 */
int fp_pgconn_connect(sd_event *event, const char *const *keys, const char *const *values,
                      int timeout_ms, fp_db_connect_cb cb, void *userdata, struct fp_pgconn **ret);

/*
 * Brings the cached session state up to date with the worker's report and
 * runs the reset for mode on the supervisor's handle: ROLLBACK or COMMIT if a
 * transaction is open; discard adds DISCARD ALL; auto discards only if the
 * worker reported a changed session. cb runs when it ends, possibly from
 * inside this call (nothing to do).
 */
void fp_pgconn_reset(struct fp_pgconn *pc, enum fp_reset_mode mode,
                     const struct fp_release_info *info, int timeout_ms, fp_db_reset_cb cb,
                     void *userdata);

/*
 * Wraps conn, a PGconn adopted on a session a previous supervisor opened (the
 * fd store), with that session's saved values (info, txn). Returns 0 and the
 * connection in *ret, or -ENOMEM (conn untouched).
 */
int fp_pgconn_restore(sd_event *event, PGconn *conn, const struct fp_lease_pg *info, uint32_t txn,
                      struct fp_pgconn **ret);

/*
 * Runs one statement (sql NULL: the empty query, a ping) on the idle
 * supervisor handle without blocking; cb runs from the event loop with 0,
 * -EIO (the statement failed, text says why), -ECONNRESET (the connection is
 * dead) or -ETIMEDOUT.
 */
void fp_pgconn_exec(struct fp_pgconn *pc, const char *sql, int timeout_ms, fp_db_exec_cb cb,
                    void *userdata);

/*
 * Closes the connection and frees pc. hard: shutdown() the socket first,
 * which also cuts every copy a worker may still hold (holder death,
 * invalidation); otherwise a normal Terminate.
 */
void fp_pgconn_close(struct fp_pgconn *pc, bool hard);

/* The socket to pass to a worker. */
int fp_pgconn_socket(const struct fp_pgconn *pc);

/* The backend's process id. */
int fp_pgconn_backend_pid(const struct fp_pgconn *pc);

/* Fills what a worker needs to adopt the connection, and the transaction status. */
void fp_pgconn_describe(const struct fp_pgconn *pc, struct fp_lease_pg *ret, uint32_t *ret_txn);

#endif /* FORKPOOL_PGCONN_H */
