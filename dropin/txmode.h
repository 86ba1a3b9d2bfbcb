/* SPDX-License-Identifier: MIT */
/*
 * txmode.h — transaction pooling in the drop-in (pool_mode = transaction).
 *
 * A connection to a pool in transaction mode is connected as in session
 * mode (a lease, adopted into a real PGconn); then its session goes back at
 * once and the PGconn is kept on a placeholder descriptor under the same
 * PQsocket() number (one end of a socketpair whose other end the drop-in
 * keeps open: the idle PGconn neither reads EOF nor becomes readable).
 *
 * The first command on an idle connection leases a session (the one the
 * connection held last, if forkpoold can give it) and dup3()s its socket
 * under the PGconn; the connection gives it back when it is idle again:
 * PQTRANS_IDLE, every result consumed, no pipeline and no COPY in progress,
 * not pinned. libpq's per-connection state is the same for every session of
 * a pool, but for what the drop-in answers itself: PQbackendPID(),
 * PQparameterStatus(), PQgetCancel() describe the session that runs the
 * current transaction (while idle, the last one).
 *
 * State that outlives a transaction pins the session to the connection
 * until PQfinish(): what the session tracker (worker/adopt_pg.c) sees change,
 * less what the statement's text shows to end with the transaction (SET
 * LOCAL, CREATE of a permanent object, DECLARE without WITH HOLD, …).
 *
 * Protocol-level prepared statements do not pin: the drop-in remembers each
 * named statement (name, text, parameter types) and runs it as an unnamed
 * statement on whatever session the transaction has, so no session ever
 * holds one and none is ever prepared twice.
 *
 * A lease that fails (timeout, no supervisor, the database down) makes the
 * command fail as a query does (PGRES_FATAL_ERROR, forkpool's reason in
 * PQresultErrorMessage() and PQerrorMessage(); PQsend* return 0); the
 * PGconn stays CONNECTION_OK for the next try.
 */
#ifndef FORKPOOL_DROPIN_TXMODE_H
#define FORKPOOL_DROPIN_TXMODE_H

#include <stdbool.h>

#include "dropin.h"

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

#endif /* FORKPOOL_DROPIN_TXMODE_H */
