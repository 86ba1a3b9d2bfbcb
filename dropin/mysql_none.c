/* SPDX-License-Identifier: MIT */
/*
 * mysql_none.c — libforkpool's MySQL adoption, absent: the drop-in is loaded
 * into processes that may never load a MySQL client library, so its copy of
 * the worker code is linked with these instead of worker/adopt_mysql.c. A
 * lease of a MySQL pool is refused (-EOPNOTSUPP) before anything is adopted.
 */
#include <errno.h>
#include <unistd.h>

#include "internal.h"

void fp_adopt_mysql_atfork_child(void)
{
}

int fp_adopt_mysql(struct forkpool_lease *lease)
{
        (void)lease;
        return -EOPNOTSUPP;
}

void fp_abandon_mysql(struct forkpool_lease *lease)
{
        /* Never adopted here: only the raw socket, if any, is ours to close. */
        if (lease->fd >= 0)
                close(lease->fd);
        lease->fd = -1;
}

void fp_release_mysql_cached(struct forkpool_lease *lease)
{
        fp_abandon_mysql(lease);
}

void fp_my_cache_close(forkpool *fp)
{
        (void)fp;
}

void fp_adopt_mysql_atfork_prepare(void)
{
}

void fp_adopt_mysql_atfork_parent(void)
{
}

void fp_forget_mysql(struct forkpool_lease *lease)
{
        (void)lease;
}

void fp_describe_release_mysql(const struct forkpool_lease *lease, struct fp_msg_release *rel)
{
        (void)lease;
        rel->txn = FP_TXN_UNKNOWN;
        rel->dirty = FP_DIRTY_UNKNOWN;
}

bool fp_sticky_keep_mysql(struct forkpool_lease *lease)
{
        (void)lease;
        return false;
}
