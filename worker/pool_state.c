/* SPDX-License-Identifier: MIT */
/*
 * pool_state.c — forkpool_pool_state(): a pool's load, read straight from the
 * supervisor's shared segment (mapped read-only, once per process and
 * segment; remapped when the supervisor replaced it or has exited).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "segment.h"

/* The size of forkpool_pool_stats in its first version (0.1): the least a caller may pass. */
#define FP_POOL_STATS_V1_SIZE                                                                      \
        (offsetof(forkpool_pool_stats, paused) + sizeof(((forkpool_pool_stats *)0)->paused))
_Static_assert(FP_POOL_STATS_V1_SIZE <= sizeof(forkpool_pool_stats), "stats shrank");

static pthread_mutex_t map_lock = PTHREAD_MUTEX_INITIALIZER;

void fp_pool_state_atfork_child(void)
{
        pthread_mutex_init(&map_lock, NULL);
}

/*
 * Whether the supervisor that made the segment has exited. A supervisor that
 * stops cleanly removes its segment without marking it obsolete, so a
 * mapping made before would otherwise go on showing its last state.
 */
static bool segment_orphaned(const struct fp_shm_header *hdr)
{
        pid_t pid = hdr->supervisor_pid;
        int saved = errno;
        bool gone = pid > 0 && kill(pid, 0) < 0 && errno == ESRCH;
        errno = saved;
        return gone;
}

/* The handle's mapping of its supervisor's segment, (re)opened when needed. */
static int segment_for(forkpool *fp, struct fp_segment **ret)
{
        struct fp_segment *seg = &fp->segment;

        if (seg->hdr &&
            (fp->segment_pid != getpid() ||
             __atomic_load_n(&seg->hdr->obsolete, __ATOMIC_ACQUIRE) || segment_orphaned(seg->hdr)))
                fp_segment_close(seg);
        if (!seg->hdr) {
                /* Only a segment of the socket's owner (or root): segment.c says why.
                 * No complete segment (or one still being made) is no supervisor;
                 * another layout version is a version mismatch, said as such. */
                int r = fp_segment_find(seg, fp->socket_path);
                if (r < 0)
                        return r == -EBADMSG ? -ENOENT : r;
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

        if (!fp || !pool || !ret || ret->struct_size < FP_POOL_STATS_V1_SIZE)
                return -EINVAL;
        pthread_mutex_lock(&map_lock);
        r = segment_for(fp, &seg);
        for (uint32_t i = 0; r >= 0 && i < seg->hdr->pool_count; i++) {
                r = fp_segment_snapshot(seg, i, &p, NULL, 0);
                if (r < 0 || strcmp(p.name, pool) != 0)
                        continue;
                forkpool_pool_stats st = {
                        .pool_size = p.pool_size,
                        .max_overflow = p.max_overflow,
                        .checked_out = p.checked_out,
                        .idle = p.checked_in,
                        .waiting = p.waiting,
                        .oldest_wait_s = p.oldest_wait_start_usec
                                                 ? monotonic_s() - p.oldest_wait_start_usec / 1e6
                                                 : 0.0,
                        .paused = (p.flags & FP_SHM_POOL_PAUSED) != 0,
                        .overflow = p.pool_size != 0 ? (int)p.overflow : 0,
                };
                snprintf(st.poolclass, sizeof(st.poolclass), "%s",
                         fp_pool_class_name(p.pool_class));
                if (st.oldest_wait_s < 0)
                        st.oldest_wait_s = 0;
                pthread_mutex_unlock(&map_lock);
                /* Only what fits in the caller's structure (an older header's is smaller). */
                size_t n = ret->struct_size < sizeof(st) ? ret->struct_size : sizeof(st);
                st.struct_size = n;
                memcpy(ret, &st, n);
                return 0;
        }
        pthread_mutex_unlock(&map_lock);
        return r < 0 ? r : -ENOENT;
}
