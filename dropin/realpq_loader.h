/* SPDX-License-Identifier: MIT */
/*
 * realpq_loader.h — loading the real libpq behind the drop-in (realpq.c).
 * Free of libpq's own headers: the loader sees every pointer as void *.
 */
#ifndef FORKPOOL_REALPQ_LOADER_H
#define FORKPOOL_REALPQ_LOADER_H

#include <stdbool.h>

/*
 * Loads the real libpq (by its path, fixed at build time; $FORKPOOL_REAL_LIBPQ
 * names another) and points every
 * forwarder at it; a function it lacks gets a stub that says so on stderr
 * and fails (returns 0 / NULL). Runs once, from the library's constructor or
 * from the first forwarded call, whichever comes first. Thread-safe.
 */
void fp_realpq_load(void);

/* The real libpq's path, and whether it was loaded. */
const char *fp_realpq_path(void);
bool fp_realpq_loaded(void);

/*
 * Whether the drop-in leases at all in this process: not inside forkpoold
 * itself (it connects to the databases with the real libpq), not when
 * FORKPOOL_DROPIN=off, not when the real libpq could not be loaded.
 */
bool fp_dropin_enabled(void);

/*
 * The path of another libpq loaded in this process (a copy shipped with an
 * extension), or NULL. The answer is computed once per call; cheap enough for
 * a connect, not for a query.
 */
const char *fp_realpq_other_copy(void);

#endif /* FORKPOOL_REALPQ_LOADER_H */
