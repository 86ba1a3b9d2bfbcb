/* SPDX-License-Identifier: MIT */
/*
 * pg_cache.h — released PGconns kept for the next lease of the same session
 * in the same process, for the C API (forkpool_lease_pg) and the libpq
 * drop-in alike.
 *
 * A full adoption makes a new PGconn and runs libpq's startup against the
 * private listener (about twenty system calls and libpq's conninfo work);
 * PQfinish tears it down again. When a process gets back a session it held
 * before — always the case for a process with a small pool, and for a
 * multi-threaded program such as pgbench through the drop-in — the PGconn it
 * had is still exactly right: the cache keeps it (on an unconnected socket,
 * so no byte can reach the session while it is not leased) and the next
 * lease of that session only puts its descriptor under it.
 *
 * A PGconn is kept only when it is provably clean for its next holder: no
 * transaction open, nothing in flight, its last command did not fail (libpq
 * keeps that error's text), no event procedure but forkpool's own,
 * notifications drained; on reuse everything an application can set on a
 * PGconn goes back to libpq's defaults (notice hooks, non-blocking mode,
 * error verbosity and context, tracing) and the session's reported
 * parameters must still be the ones the PGconn knows (a reset that changed
 * one makes it a full adoption instead). A child after fork never sees its
 * parent's kept PGconns.
 */
#ifndef FORKPOOL_PG_CACHE_H
#define FORKPOOL_PG_CACHE_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "internal.h"

/*
 * Records libpq's default notice hooks, and what an event-free PGconn looks
 * like, from a PGconn just made by an adoption, before anyone registered
 * anything on it (once per process; later calls do nothing). Nothing is kept
 * before this has happened.
 */
void fp_pg_cache_learn_defaults(PGconn *conn);

/*
 * Records what a PGconn with only forkpool's session tracker looks like,
 * from conn, on which fp_track_pg_session() has just registered it (once per
 * process, and only from a PGconn that had no event procedure before).
 */
void fp_pg_cache_learn_tracked(PGconn *conn, bool had_events_before);

/*
 * Whether an event procedure other than forkpool's own tracker is
 * registered on conn (tracked: the tracker is). libpq cannot list them; the
 * size of an empty result made from conn counts them (each adds its name and
 * record). Unknown (nothing learnt yet) counts as yes.
 */
bool fp_pg_cache_foreign_events(PGconn *conn, bool tracked);

/*
 * Releases lease keeping its PGconn (fp_release_keep_pg) into the cache, if
 * conn may be kept (see above; foreign_events: the caller knows of an event
 * procedure that is not ours). Returns true if it did (the lease is given
 * back and freed, conn is the cache's, or finished if what the release read
 * left it busy); false: nothing was done, the caller releases as usual.
 */
bool fp_pg_cache_put(forkpool_lease *lease, PGconn *conn, bool foreign_events);

/*
 * The cached PGconn of lease's session with lease's descriptor now under it
 * (lease->fd is closed; the caller attaches it with fp_attach_pg()), or NULL
 * (no such PGconn, or its parameters differ: it is finished). Never blocks.
 */
PGconn *fp_pg_cache_take(forkpool_lease *lease);

/*
 * The lease id of the newest PGconn kept for pool, to ask forkpoold for that
 * session (fp_prefer_lease), or 0.
 */
uint64_t fp_pg_cache_preferred(const char *pool);

/*
 * In a child after fork (a pthread_atfork child handler, before anything else
 * runs): the parent's cached PGconns are finished, sending nothing. A child
 * that ran no handler (a raw clone) never uses them either.
 */
void fp_pg_cache_atfork_child(void);

#endif /* FORKPOOL_PG_CACHE_H */
