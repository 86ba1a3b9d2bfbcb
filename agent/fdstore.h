/* SPDX-License-Identifier: MIT */
/*
 * fdstore.h — restarts that drop nothing: every connection's socket
 * (PostgreSQL and MySQL/MariaDB) is kept in systemd's file-descriptor store
 * (FDSTORE=1, one FDNAME per slot), and what the next supervisor needs to
 * adopt it — the session's BackendKeyData and ParameterStatus values
 * (PostgreSQL) or its handshake values and scramble (MySQL), the slot's state
 * and holder — in a memfd kept there too ("state"). A crash or a restart
 * leaves both with systemd; the next forkpoold gets them back ($LISTEN_FDS,
 * $LISTEN_FDNAMES) and adopts the connections: idle ones return to their
 * pools, leased ones wait for their holders' releases, holders that died
 * meanwhile are reclaimed.
 *
 * Active when $FDSTORE (the unit's FileDescriptorStoreMax=, which systemd 254+
 * sets by itself) is more than 0 and $NOTIFY_SOCKET is set. The state memfd
 * holds session secrets (cancel keys, scrambles): it never leaves forkpoold
 * and systemd.
 */
#ifndef FORKPOOL_FDSTORE_H
#define FORKPOOL_FDSTORE_H

#include <stdbool.h>
#include <stdint.h>

#include "pool.h"
#include "proto.h"
#include "savedstate.h"

struct fp_supervisor;

/* Sets up the store (a new state memfd, given to systemd). Returns 0 or a negative errno. */
int fp_fdstore_init(struct fp_supervisor *sup);

/* True when connections are kept in systemd's store. */
bool fp_fdstore_active(const struct fp_supervisor *sup);

/*
 * Adopts the connections a previous forkpoold left in the store into the
 * pools of the current configuration; the rest are closed (never shut down:
 * a worker may still hold one). Call once, after the pools exist. Returns the
 * number of connections restored.
 */
int fp_fdstore_restore(struct fp_supervisor *sup);

/* Records rec's connection (new, leased, returned): its fd is stored on first call. */
void fp_fdstore_save(struct fp_supervisor *sup, struct fp_pool *pool, const struct fp_record *rec);

/* rec's connection is being closed: it leaves the store. */
void fp_fdstore_forget(struct fp_supervisor *sup, struct fp_pool *pool,
                       const struct fp_record *rec);

/* Frees the store's memory (the memfd and the fds stay with systemd). */
void fp_fdstore_done(struct fp_supervisor *sup);

#endif /* FORKPOOL_FDSTORE_H */
