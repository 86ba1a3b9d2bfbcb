/* SPDX-License-Identifier: MIT */
/*
 * access.h — who may use forkpoold: the allow and admin lists of the
 * configuration (uids and gids), matched against a peer's credentials.
 */
#ifndef FORKPOOL_ACCESS_H
#define FORKPOOL_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Root and forkpoold's own uid, which every list lets in. */
bool fp_access_privileged(uid_t uid);

/*
 * Whether uid is in uids[0..n_uids), or gid or one of groups[0..n_groups)
 * (groups may be NULL when n_groups is 0) in gids[0..n_gids). Empty lists
 * let nobody in. O(lengths of the lists × n_groups).
 */
bool fp_access_listed(const uint32_t *uids, size_t n_uids, const uint32_t *gids, size_t n_gids,
                      uid_t uid, gid_t gid, const gid_t *groups, size_t n_groups);

#endif /* FORKPOOL_ACCESS_H */
