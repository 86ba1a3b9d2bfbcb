/* SPDX-License-Identifier: MIT */
/*
 * shutdown.h — how forkpoold stops (SIGTERM, SIGINT). Without systemd's fd
 * store, the pools drain: no new lease, the waiters are told, and the loop
 * ends once every lease has come back or shutdown_grace is over (the leases
 * still held are revoked). Under the fd store, the connections stay for the
 * next start: what the workers already sent is handled, the resets and pings
 * running finish (at most 5 s, or shutdown_grace if shorter; their
 * connections are closed after that), and the loop ends.
 */
#ifndef FORKPOOL_SHUTDOWN_H
#define FORKPOOL_SHUTDOWN_H

#include "supervisor.h"

/* Begins stopping (why: what asked, for the log); a second call does nothing. */
void fp_shutdown_begin(struct fp_supervisor *sup, const char *why);

/*
 * Makes SIGTERM and SIGINT begin stopping (the supervisor has blocked them).
 * Returns 0 or a negative errno (logged).
 */
int fp_shutdown_watch_signals(struct fp_supervisor *sup);

#endif /* FORKPOOL_SHUTDOWN_H */
