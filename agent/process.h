/* SPDX-License-Identifier: MIT */
/*
 * process.h — forkpoold's process, set up before anything is created: the
 * configured user (user = NAME) and a descriptor limit large enough for its
 * clients.
 */
#ifndef FORKPOOL_PROCESS_H
#define FORKPOOL_PROCESS_H

#include "config.h"

/*
 * user = NAME, started as root: becomes NAME (its groups included), so that
 * the socket, the segment and every connection belong to it; the socket's
 * directory is created for it if missing. Without user =, or not started as
 * root (a warning unless already NAME), nothing changes. Returns 0 or a
 * negative errno (logged).
 */
int fp_process_drop_privileges(const struct fp_config *cfg);

/*
 * Raises the soft descriptor limit towards 65536, as far as the hard limit
 * allows: every control connection costs two descriptors. Failures are
 * logged at debug level and change nothing.
 */
void fp_process_raise_fd_limit(void);

#endif /* FORKPOOL_PROCESS_H */
