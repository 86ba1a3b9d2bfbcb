/* SPDX-License-Identifier: MIT */
/*
 * pgadopt.h — a real PGconn on an already-authenticated PostgreSQL socket,
 * made by playing the server's part of the startup with the session's own
 * values (research/adoption.md §A). Used by libforkpool for every lease and by
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

/* In a child after fork: the module's lock starts unlocked. */
void fp_pg_adopt_atfork_child(void);

#endif /* FORKPOOL_PGADOPT_H */
