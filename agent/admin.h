/* SPDX-License-Identifier: MIT */
/*
 * admin.h — forkpoold's admin commands (forkpoolctl dispose, pause, resume,
 * reload, kill-lease; FP_OP_ADMIN on the control socket): who may run them
 * and what they do to the supervisor's pools.
 */
#ifndef FORKPOOL_ADMIN_H
#define FORKPOOL_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "supervisor.h"

/*
 * Whether a peer may run admin commands: root, forkpoold's own uid, or a
 * listed admin uid/gid (admin_users, admin_groups), its supplementary groups
 * included.
 */
bool fp_admin_allowed(const struct fp_supervisor *sup, uid_t uid, gid_t gid, const gid_t *groups,
                      size_t n_groups);

/*
 * Runs an admin command (enum fp_admin_command) on pool (ignored by reload)
 * with arg. Returns 0 with a one-line account in text, or a negative errno
 * with the reason in text (-ENOENT no such pool, -ESRCH no such lease,
 * -EINVAL bad command or a rejected reload).
 */
int fp_admin_run(struct fp_supervisor *sup, uint32_t command, const char *pool, uint32_t arg,
                 char *text, size_t len);

#endif /* FORKPOOL_ADMIN_H */
