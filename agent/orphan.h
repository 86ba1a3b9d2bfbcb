/* SPDX-License-Identifier: MIT */
/*
 * orphan.h — the holders of leases restored from systemd's fd store
 * (fdstore.h): a process that held a lease when the previous forkpoold
 * stopped is watched, with a pidfd, until it connects again (its lease is
 * its own again: fp_pool_attach_orphans()) or dies (the lease is reclaimed:
 * fp_pool_reclaim_orphan()).
 */
#ifndef FORKPOOL_ORPHAN_H
#define FORKPOOL_ORPHAN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "pool.h"

struct fp_orphan;

/* The supervisor's watched holders. */
struct fp_orphans {
        LIST_HEAD(fp_orphan_list, fp_orphan) list;
};

/* No holder watched yet. */
void fp_orphans_init(struct fp_orphans *orphans);

/*
 * Watches pid, the holder of pool's restored lease in slot index, on event,
 * until it dies (the lease is reclaimed then) or fp_orphans_done(). A holder
 * already gone, or one that cannot be watched, has its lease reclaimed at
 * once.
 */
void fp_orphans_watch(struct fp_orphans *orphans, sd_event *event, struct fp_pool *pool,
                      uint32_t index, pid_t pid);

/* Whether any holder is still watched (a connecting process may be one). */
bool fp_orphans_any(const struct fp_orphans *orphans);

/* Stops every watch; the leases stay as they are. */
void fp_orphans_done(struct fp_orphans *orphans);

#endif /* FORKPOOL_ORPHAN_H */
