/* SPDX-License-Identifier: MIT */
/*
 * cancel.h — PGcancel objects for leased connections.
 *
 * libpq's PGcancel of an adopted connection would target the private
 * adoption listener (research: psycopg2's cancel then hung the interpreter).
 * The drop-in hands out its own objects instead, carrying the real server's
 * address and the session's cancel key. They live in one arena, so that
 * PQcancel() — which applications call from signal handlers — can tell ours
 * from libpq's by address alone: no lock, no lookup, no allocation.
 */
#ifndef FORKPOOL_DROPIN_CANCEL_H
#define FORKPOOL_DROPIN_CANCEL_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "proto.h"

/* How long a cancel waits for the server to take the request. */
#define DROPIN_CANCEL_TIMEOUT_MS 5000

/*
 * A cancel object for the session described by info (its address and key are
 * copied). Returns NULL if the arena is full or cannot be mapped. Thread-safe.
 */
PGcancel *dropin_cancel_new(const struct fp_lease_pg *info);

/*
 * A transaction-mode connection's cell: which session runs its transaction
 * now (none while it is idle). Its cancel objects send to the session the
 * cell names at the time of PQcancel(), or nothing while it names none.
 */
struct dropin_cancel_cell;

/* A new cell naming no session, or NULL. Thread-safe. */
struct dropin_cancel_cell *dropin_cancel_cell_new(void);

/* Names the session (backend_pid 0: none) in cell (NULL: nothing done). Async-signal-safe. */
void dropin_cancel_cell_set(struct dropin_cancel_cell *cell, int32_t backend_pid,
                            int32_t cancel_key);

/* Frees cell (NULL: nothing); objects still made for it then cancel nothing. Thread-safe. */
void dropin_cancel_cell_free(struct dropin_cancel_cell *cell);

/*
 * A cancel object for the server of info that cancels what cell names at
 * the time (cell NULL: info's session, as dropin_cancel_new()).
 */
PGcancel *dropin_cancel_new_for_cell(const struct fp_lease_pg *info,
                                     struct dropin_cancel_cell *cell);

/* Whether cancel is one of ours. Async-signal-safe. */
bool dropin_cancel_is_ours(const PGcancel *cancel);

/*
 * What cancel would cancel now: the server's address (*addr, valid while
 * cancel is) and the session's pid and key. Returns false when nothing runs
 * (a transaction-mode connection between transactions). Async-signal-safe.
 */
bool dropin_cancel_target(const PGcancel *cancel, const struct sockaddr **addr, socklen_t *addr_len,
                          int32_t *backend_pid, int32_t *cancel_key);

/*
 * Sends the CancelRequest (as PQcancel() does): returns 1, or 0 with a short
 * reason in errbuf. Async-signal-safe.
 */
int dropin_cancel_send(const PGcancel *cancel, char *errbuf, int errbufsize);

/* Gives the object back to the arena. Thread-safe. */
void dropin_cancel_free(PGcancel *cancel);

/* In a child after fork: the arena's lock starts unlocked. */
void dropin_cancel_atfork_child(void);

#endif /* FORKPOOL_DROPIN_CANCEL_H */
