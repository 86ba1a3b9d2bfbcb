/* SPDX-License-Identifier: MIT */
/*
 * pool_state.c — forkpool_pool_state(): a pool's load, read straight from the
 * supervisor's shared segment (mapped read-only, once per process and
 * segment; remapped when the supervisor replaced it, marked it obsolete on its
 * way out, or was killed and its name now names another file).
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "internal.h"
#include "segment.h"
#include "selfpid.h"

/* The size of forkpool_pool_stats in its first version (0.1): the least a caller may pass. */
#define FP_POOL_STATS_V1_SIZE                                                                      \
        (offsetof(forkpool_pool_stats, paused) + sizeof(((forkpool_pool_stats *)0)->paused))
_Static_assert(FP_POOL_STATS_V1_SIZE <= sizeof(forkpool_pool_stats), "stats shrank");

static pthread_mutex_t map_lock = PTHREAD_MUTEX_INITIALIZER;

void fp_pool_state_atfork_child(void)
{
        pthread_mutex_init(&map_lock, NULL);
}

/* How often, at most, a mapped segment's name is looked up again. */
#define SEGMENT_RECHECK_MS 100

/*
 * Whether the segment's name now names another file than the one mapped (a
 * new supervisor replaced it, or it is gone): a supervisor killed before it
 * could mark its segment obsolete is noticed this way. Looks at most every
 * SEGMENT_RECHECK_MS; one stat() when it does.
 */
static bool segment_replaced(forkpool *fp)
{
        struct fp_segment *seg = &fp->segment;
        uint64_t now = (uint64_t)fp_monotonic_ms();
        char path[sizeof("/dev/shm") + FP_SHM_NAME_MAX];
        struct stat st;

        if (now - fp->segment_checked_ms < SEGMENT_RECHECK_MS)
                return false;
        fp->segment_checked_ms = now;
        snprintf(path, sizeof(path), "/dev/shm%s", seg->name);
        if (stat(path, &st) < 0)
                return true;
        return (uint64_t)st.st_dev != seg->dev || (uint64_t)st.st_ino != seg->ino;
}

/* The handle's mapping of its supervisor's segment, (re)opened when needed. */
static int segment_for(forkpool *fp, struct fp_segment **ret)
{
        struct fp_segment *seg = &fp->segment;

        if (seg->hdr &&
            (fp->segment_pid != fp_self_pid() ||
             __atomic_load_n(&seg->hdr->obsolete, __ATOMIC_ACQUIRE) || segment_replaced(fp)))
                fp_segment_close(seg);
        if (!seg->hdr) {
                /* Only a segment of the socket's owner (or root): segment.c says why.
                 * No complete segment (or one still being made) is no supervisor;
                 * another layout version is a version mismatch, said as such. */
                int r = fp_segment_find(seg, fp->socket_path);
                if (r < 0)
                        return r == -EBADMSG ? -ENOENT : r;
                fp->segment_pid = fp_self_pid();
                fp->segment_checked_ms = (uint64_t)fp_monotonic_ms();
        }
        *ret = seg;
        return 0;
}

/* A snapshot of pool's record in fp's segment: 0, or a negative errno (-ENOENT: no such pool). */
static int pool_snapshot(forkpool *fp, const char *pool, struct fp_shm_pool *ret)
{
        struct fp_segment *seg;
        pthread_mutex_lock(&map_lock);
        int r = segment_for(fp, &seg);
        for (uint32_t i = 0; r >= 0 && i < seg->hdr->pool_count; i++) {
                r = fp_segment_snapshot(seg, i, ret, NULL, 0);
                if (r >= 0 && strcmp(ret->name, pool) == 0) {
                        pthread_mutex_unlock(&map_lock);
                        return 0;
                }
        }
        pthread_mutex_unlock(&map_lock);
        return r < 0 ? r : -ENOENT;
}

FORKPOOL_EXPORT int forkpool_pool_state(forkpool *fp, const char *pool, forkpool_pool_stats *ret)
{
        struct fp_shm_pool p;

        if (!fp || !pool || !ret || ret->struct_size < FP_POOL_STATS_V1_SIZE)
                return -EINVAL;
        int r = pool_snapshot(fp, pool, &p);
        if (r < 0)
                return r;
        forkpool_pool_stats st = {
                .pool_size = p.pool_size,
                .max_overflow = p.max_overflow,
                .checked_out = p.checked_out,
                .idle = p.checked_in,
                .waiting = p.waiting,
                .oldest_wait_s = p.oldest_wait_start_usec ? (double)fp_monotonic_usec() / 1e6 -
                                                                    p.oldest_wait_start_usec / 1e6
                                                          : 0.0,
                .paused = (p.flags & FP_SHM_POOL_PAUSED) != 0,
                .overflow = p.pool_size != 0 ? (int)p.overflow : 0,
        };
        snprintf(st.poolclass, sizeof(st.poolclass), "%s", fp_pool_class_name(p.pool_class));
        if (st.oldest_wait_s < 0)
                st.oldest_wait_s = 0;
        /* Only what fits in the caller's structure (an older header's is smaller). */
        size_t n = ret->struct_size < sizeof(st) ? ret->struct_size : sizeof(st);
        st.struct_size = n;
        memcpy(ret, &st, n);
        return 0;
}

int fp_pool_mode(forkpool *fp, const char *pool)
{
        struct fp_shm_pool p;
        if (!fp || !pool)
                return -EINVAL;
        int r = pool_snapshot(fp, pool, &p);
        if (r < 0)
                return r;
        return p.pool_mode < FP_POOL_MODE_MAX ? (int)p.pool_mode : FP_POOL_MODE_SESSION;
}

int fp_pool_timeout_ms(forkpool *fp, const char *pool)
{
        struct fp_shm_pool p;
        if (!fp || !pool)
                return -EINVAL;
        int r = pool_snapshot(fp, pool, &p);
        return r < 0 ? r : p.timeout_ms;
}
