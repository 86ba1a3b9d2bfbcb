/* SPDX-License-Identifier: MIT */
/*
 * pgadopt.h — a real PGconn on an already-authenticated PostgreSQL socket,
 * made by playing the server's part of the startup with the session's own
 * values (pgadopt.c says how). Used by libforkpool for every lease and by
 * forkpoold for the connections it gets back from systemd's fd store.
 */
#ifndef FORKPOOL_PGADOPT_H
#define FORKPOOL_PGADOPT_H

#include <libpq-fe.h>
#include <stdint.h>

#include "proto.h"

/*
 * Makes a PGconn whose socket is real_fd: its ParameterStatus values,
 * BackendKeyData and transaction status (enum fp_txn) are info's and txn.
 * On success real_fd is taken (closed; the PGconn's socket is a duplicate)
 * and *ret owns the connection; on failure real_fd is untouched. Blocks for a
 * few local round trips (at most ~2 s if something is badly wrong). Returns 0
 * or a negative errno. Serialised process-wide.
 */
int fp_pg_adopt(int real_fd, const struct fp_lease_pg *info, uint32_t txn, PGconn **ret);

/*
 * An adoption in two steps, for callers that must hand out the PGconn before
 * the session arrives (a non-blocking connect) or that adopt into a PGconn
 * they already have (a reset): libpq's side is connected to this process's
 * private listener, its StartupMessage not yet answered.
 */
struct fp_pg_adoption {
        PGconn *conn; /* libpq's side; CONNECTION_MADE until completed or refused */
        int srv;      /* our side of its connection, -1 once answered */
};

/*
 * Starts a PGconn on the private listener (user NULL or "": libpq's default
 * user; dbname as PQdb() will report it). Never waits for anything but the
 * local connect. Returns 0 with *ret filled (the caller owns ret->conn and
 * ret->srv until fp_pg_adopt_complete/refuse or fp_pg_adoption_abort), or a
 * negative errno.
 */
int fp_pg_adopt_begin(const char *user, const char *dbname, struct fp_pg_adoption *ret);

/*
 * The same on an existing PGconn made by fp_pg_adopt_begin() or fp_pg_adopt()
 * in this process: libpq's PQresetStart() reconnects it to the listener. The
 * caller has put an unconnected socket under PQsocket(conn) first, so the
 * Terminate that PQresetStart() sends reaches nobody. On failure the PGconn
 * is still the caller's (its state unknown: finish it or refuse it).
 */
int fp_pg_readopt_begin(PGconn *conn, struct fp_pg_adoption *ret);

/*
 * Answers libpq's startup with the session's values and puts real_fd under
 * the PGconn. Returns 0 (real_fd taken; a->conn is CONNECTION_OK on the real
 * session, a->srv closed) or a negative errno (real_fd untouched; the caller
 * still owns a). Blocks only on local round trips.
 */
int fp_pg_adopt_complete(struct fp_pg_adoption *a, int real_fd, const struct fp_lease_pg *info,
                         uint32_t txn);

/*
 * Answers libpq's startup with a FATAL ErrorResponse carrying message, so
 * that the PGconn fails as a refused connection does (CONNECTION_BAD, the
 * message in PQerrorMessage()). a->conn stays the caller's; a->srv is closed.
 * Returns 0 or a negative errno.
 */
int fp_pg_adopt_refuse(struct fp_pg_adoption *a, const char *message);

/* Closes both sides of an adoption that is not going ahead. */
void fp_pg_adoption_abort(struct fp_pg_adoption *a);

/* In a child after fork: the module's lock starts unlocked. */
void fp_pg_adopt_atfork_child(void);

/*
 * Closes this process's private adoption listener and removes its directory;
 * the next adoption opens a new one. For a process that adopts only now and
 * then (forkpoold, once it has restored its connections from the fd store).
 */
void fp_pg_adopt_close_listener(void);

#endif /* FORKPOOL_PGADOPT_H */
