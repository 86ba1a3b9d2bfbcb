/* SPDX-License-Identifier: MIT */
/*
 * reload.h — reloading forkpoold's configuration (SIGHUP, forkpoolctl
 * reload): a new file that loads and validates replaces the running
 * settings at once (log level, allow and admin lists, peer limits, grace);
 * a pool that is gone drains, a new one is added, a changed one takes its
 * new settings (a new URL: its connections close as they come back). A file
 * that does not load or validate changes nothing. The control socket cannot
 * move.
 */
#ifndef FORKPOOL_RELOAD_H
#define FORKPOOL_RELOAD_H

#include <stddef.h>

#include "supervisor.h"

/*
 * Reloads the configuration file forkpoold was started with. Returns 0 with
 * a one-line account in text, or -EINVAL with the reason (no file, or a file
 * that does not load or validate: nothing changed).
 */
int fp_supervisor_reload(struct fp_supervisor *sup, char *text, size_t len);

/* Makes SIGHUP reload. Returns 0 or a negative errno (logged). */
int fp_reload_watch_signal(struct fp_supervisor *sup);

#endif /* FORKPOOL_RELOAD_H */
