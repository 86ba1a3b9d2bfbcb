/* SPDX-License-Identifier: MIT */
/*
 * pool_state.c — forkpool_pool_state(): a pool's load, read straight from the
 * supervisor's shared segment (mapped read-only, once per process and
 * segment; remapped when the supervisor replaced it).
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "segment.h"

static pthread_mutex_t map_lock = PTHREAD_MUTEX_INITIALIZER;

void fp_pool_state_atfork_child(void)
{
        pthread_mutex_init(&map_lock, NULL);
}

/* The handle's mapping of its supervisor's segment, (re)opened when needed. */
static int segment_for(forkpool *fp, struct fp_segment **ret)
{
        struct fp_segment *seg = &fp->segment;

        if (seg->hdr &&
            (fp->segment_pid != getpid() || __atomic_load_n(&seg->hdr->obsolete, __ATOMIC_ACQUIRE)))
                fp_segment_close(seg);
        if (!seg->hdr) {
                /* Only a segment of the socket's owner (or root): segment.c says why. */
                int r = fp_segment_find(seg, fp->socket_path);
                if (r < 0)
                        return r == -EBADMSG || r == -EPROTO ? -ENOENT : r;
                fp->segment_pid = getpid();
        }
        *ret = seg;
        return 0;
}

static double monotonic_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

FORKPOOL_EXPORT int forkpool_pool_state(forkpool *fp, const char *pool, forkpool_pool_stats *ret)
{
        struct fp_segment *seg;
        struct fp_shm_pool p;
        int r;

        if (!fp || !pool || !ret)
                return -EINVAL;
        pthread_mutex_lock(&map_lock);
        r = segment_for(fp, &seg);
        for (uint32_t i = 0; r >= 0 && i < seg->hdr->pool_count; i++) {
                r = fp_segment_snapshot(seg, i, &p, NULL, 0);
                if (r < 0 || strcmp(p.name, pool) != 0)
                        continue;
                *ret = (forkpool_pool_stats){
                        .pool_size = p.pool_size,
                        .max_overflow = p.max_overflow,
                        .checked_out = p.checked_out,
                        .idle = p.checked_in,
                        .waiting = p.waiting,
                        .oldest_wait_s = p.oldest_wait_start_usec
                                                 ? monotonic_s() - p.oldest_wait_start_usec / 1e6
                                                 : 0.0,
                        .paused = (p.flags & FP_SHM_POOL_PAUSED) != 0,
                };
                if (ret->oldest_wait_s < 0)
                        ret->oldest_wait_s = 0;
                pthread_mutex_unlock(&map_lock);
                return 0;
        }
        pthread_mutex_unlock(&map_lock);
        return r < 0 ? r : -ENOENT;
}
