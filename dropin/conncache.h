/* SPDX-License-Identifier: MIT */
/*
 * conncache.h — the drop-in's released PGconns, kept for the next lease of
 * the same session in the same process.
 *
 * A full adoption makes a new PGconn and runs libpq's startup against the
 * private listener (about twenty system calls and libpq's conninfo work);
 * PQfinish tears it down again. When a process gets back a session it held
 * before — always the case for a multi-threaded program such as pgbench, and
 * often for a worker whose pool has few connections — the PGconn it had is
 * still exactly right: this cache keeps it (on an unconnected socket, so no
 * byte can reach the session while it is not leased) and the next lease of
 * that session only puts its descriptor under it.
 *
 * A PGconn is kept only when it is provably clean for its next holder: no
 * transaction open, nothing in flight, no event procedure the application
 * registered, notifications drained; on reuse everything an application can
 * set on a PGconn goes back to libpq's defaults (notice hooks, non-blocking
 * mode, error verbosity and context, tracing) and the session's reported
 * parameters must still be the ones the PGconn knows (a reset that changed
 * one makes it a full adoption instead).
 */
#ifndef FORKPOOL_DROPIN_CONNCACHE_H
#define FORKPOOL_DROPIN_CONNCACHE_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "internal.h"

/*
 * Records libpq's default notice hooks from a PGconn the drop-in has just
 * made (once per process; later calls do nothing).
 */
void conncache_learn_defaults(PGconn *conn);

/*
 * Releases lease keeping its PGconn (fp_release_keep_pg) into the cache, if
 * conn may be kept (see above; foreign_events: the application registered an
 * event procedure on it). Returns true if it did (lease and conn are the
 * cache's now); false: nothing was done, the caller releases as usual.
 */
bool conncache_put(forkpool_lease *lease, PGconn *conn, bool foreign_events);

/*
 * The cached PGconn of lease's session with lease's descriptor now under it
 * (the lease then owns it as if adopted), or NULL (no such PGconn, or its
 * parameters differ: it is finished). Never blocks.
 */
PGconn *conncache_take(forkpool_lease *lease);

/*
 * The lease id of the newest PGconn kept for pool, to ask forkpoold for that
 * session (fp_prefer_lease), or 0.
 */
uint64_t conncache_preferred(const char *pool);

/* In a child after fork: the parent's cached PGconns are forgotten. */
void conncache_atfork_child(void);

#endif /* FORKPOOL_DROPIN_CONNCACHE_H */
