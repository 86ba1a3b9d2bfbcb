/* SPDX-License-Identifier: MIT */
/*
 * admin.c — forkpoold's admin commands (admin.h).
 */
#include "admin.h"

#include <errno.h>
#include <stdio.h>

#include "access.h"
#include "log.h"
#include "reload.h"

bool fp_admin_allowed(const struct fp_supervisor *sup, uid_t uid, gid_t gid, const gid_t *groups,
                      size_t n_groups)
{
        const struct fp_config *c = &sup->cfg;
        return fp_access_privileged(uid) ||
               fp_access_listed(c->admin_uids, c->n_admin_uids, c->admin_gids, c->n_admin_gids, uid,
                                gid, groups, n_groups);
}

int fp_admin_run(struct fp_supervisor *sup, uint32_t command, const char *pool, uint32_t arg,
                 char *text, size_t len)
{
        if (command == FP_ADMIN_RELOAD) {
                int r = fp_supervisor_reload(sup, text, len);
                fp_log(r < 0 ? FP_LOG_ERROR : FP_LOG_INFO, "admin reload: %s", text);
                return r;
        }
        struct fp_sup_pool *sp = fp_supervisor_find_pool(sup, pool);
        if (!sp) {
                snprintf(text, len, "no pool named '%s'", pool);
                return -ENOENT;
        }
        switch (command) {
        case FP_ADMIN_DISPOSE:
                fp_pool_invalidate_all(&sp->pool);
                snprintf(text, len,
                         "pool %s disposed: idle connections closed, leased ones "
                         "close when they come back",
                         pool);
                break;
        case FP_ADMIN_PAUSE:
                fp_pool_set_paused(&sp->pool, true);
                snprintf(text, len, "pool %s paused: nothing is handed out, leases drain", pool);
                break;
        case FP_ADMIN_RESUME:
                fp_pool_set_paused(&sp->pool, false);
                snprintf(text, len, "pool %s resumed", pool);
                break;
        case FP_ADMIN_KILL_LEASE:
                if (fp_pool_revoke(&sp->pool, arg) < 0) {
                        snprintf(text, len, "pool %s has no lease in slot %u", pool, arg);
                        return -ESRCH;
                }
                snprintf(text, len, "pool %s: lease in slot %u revoked", pool, arg);
                break;
        default:
                snprintf(text, len, "unknown admin command %u", command);
                return -EINVAL;
        }
        log_info("admin: %s", text);
        return 0;
}
