/* SPDX-License-Identifier: MIT */
/*
 * orphan.c — the holders of restored leases, watched (orphan.h).
 */
#include "orphan.h"

#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"

/* One holder, watched until it reconnects or dies. */
struct fp_orphan {
        LIST_ENTRY(fp_orphan) link;
        struct fp_pool *pool;
        uint32_t index;
        pid_t pid;
        int pidfd;
        sd_event_source *src;
};

static void orphan_free(struct fp_orphan *o)
{
        LIST_REMOVE(o, link);
        sd_event_source_disable_unref(o->src);
        if (o->pidfd >= 0)
                close(o->pidfd);
        free(o);
}

static int on_orphan_exit(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct fp_orphan *o = userdata;
        (void)s, (void)fd, (void)revents;
        if (fp_pool_reclaim_orphan(o->pool, o->index, o->pid))
                log_info("pool %s: pid %d, holder of slot %u before the restart, died: "
                         "reclaimed",
                         o->pool->params.name, (int)o->pid, o->index);
        orphan_free(o);
        return 0;
}

void fp_orphans_init(struct fp_orphans *orphans)
{
        LIST_INIT(&orphans->list);
}

void fp_orphans_watch(struct fp_orphans *orphans, sd_event *event, struct fp_pool *pool,
                      uint32_t index, pid_t pid)
{
        struct fp_orphan *o = calloc(1, sizeof(*o));
        if (!o) {
                fp_pool_reclaim_orphan(pool, index, pid);
                return;
        }
        *o = (struct fp_orphan){.pool = pool, .index = index, .pid = pid};
        LIST_INSERT_HEAD(&orphans->list, o, link);
        o->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (o->pidfd < 0 ||
            sd_event_add_io(event, &o->src, o->pidfd, EPOLLIN, on_orphan_exit, o) < 0) {
                /* Already gone (or unwatchable): take it back now. */
                log_info("pool %s: pid %d, holder of slot %u before the restart, is gone: "
                         "reclaimed",
                         pool->params.name, (int)pid, index);
                fp_pool_reclaim_orphan(pool, index, pid);
                orphan_free(o);
        }
}

bool fp_orphans_any(const struct fp_orphans *orphans)
{
        return !LIST_EMPTY(&orphans->list);
}

void fp_orphans_done(struct fp_orphans *orphans)
{
        while (!LIST_EMPTY(&orphans->list))
                orphan_free(LIST_FIRST(&orphans->list));
}
