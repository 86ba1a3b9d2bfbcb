/* SPDX-License-Identifier: MIT */
/*
 * access.c — matching credentials against the allow and admin lists (access.h).
 */
#include "access.h"

#include <unistd.h>

static bool id_in(const uint32_t *ids, size_t n, uint32_t id)
{
        for (size_t i = 0; i < n; i++)
                if (ids[i] == id)
                        return true;
        return false;
}

bool fp_access_privileged(uid_t uid)
{
        return uid == 0 || uid == geteuid();
}

bool fp_access_listed(const uint32_t *uids, size_t n_uids, const uint32_t *gids, size_t n_gids,
                      uid_t uid, gid_t gid, const gid_t *groups, size_t n_groups)
{
        if (id_in(uids, n_uids, uid) || id_in(gids, n_gids, gid))
                return true;
        for (size_t i = 0; i < n_groups && n_gids > 0; i++)
                if (id_in(gids, n_gids, groups[i]))
                        return true;
        return false;
}
