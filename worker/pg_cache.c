/* SPDX-License-Identifier: MIT */
/*
 * pg_cache.c — released PGconns kept for their session's next lease
 * (pg_cache.h).
 */
#include "pg_cache.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "selfpid.h"

#define CACHE_MAX 16

struct cached {
        PGconn *conn;
        uint64_t lease_id;      /* the lease it was released from: what to ask back */
        char pool[FP_NAME_MAX]; /* that lease's pool */
        uint64_t slot;          /* lease_id >> 32: the pool and slot of its session */
        int32_t backend_pid;
        int32_t cancel_key; /* with backend_pid: that very session, not a reconnect */
        char *params;       /* what the PGconn knows, as its release reported it (malloc'ed) */
        uint32_t params_len;
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cached cache[CACHE_MAX]; /* oldest first */
static size_t n_cached;
static pid_t cache_pid;

static PQnoticeReceiver default_receiver;
static PQnoticeProcessor default_processor;
/* PQresultMemorySize() of an empty result of a PGconn with no event procedure / only ours. */
static size_t plain_size, tracked_size;

/* The size of an empty result made from conn: fixed, plus each event procedure's copy. */
static size_t empty_result_size(PGconn *conn)
{
        PGresult *res = PQmakeEmptyPGresult(conn, PGRES_EMPTY_QUERY);
        if (!res)
                return 0;
        size_t size = PQresultMemorySize(res);
        PQclear(res);
        return size;
}

void fp_pg_cache_learn_defaults(PGconn *conn)
{
        if (__atomic_load_n(&default_receiver, __ATOMIC_ACQUIRE))
                return;
        /* With a NULL hook libpq returns the current one and changes nothing. */
        PQnoticeProcessor p = PQsetNoticeProcessor(conn, NULL, NULL);
        PQnoticeReceiver r = PQsetNoticeReceiver(conn, NULL, NULL);
        size_t size = empty_result_size(conn);
        pthread_mutex_lock(&cache_lock);
        if (!default_receiver && size > 0) {
                default_processor = p;
                plain_size = size;
                __atomic_store_n(&default_receiver, r, __ATOMIC_RELEASE);
        }
        pthread_mutex_unlock(&cache_lock);
}

void fp_pg_cache_learn_tracked(PGconn *conn, bool had_events_before)
{
        if (had_events_before || __atomic_load_n(&tracked_size, __ATOMIC_ACQUIRE))
                return;
        __atomic_store_n(&tracked_size, empty_result_size(conn), __ATOMIC_RELEASE);
}

bool fp_pg_cache_foreign_events(PGconn *conn, bool tracked)
{
        size_t want = tracked ? __atomic_load_n(&tracked_size, __ATOMIC_ACQUIRE) : plain_size;
        return want == 0 || empty_result_size(conn) != want;
}

void fp_pg_cache_atfork_child(void)
{
        /*
         * The parent's PGconns are the child's copies, on the child's copies of
         * the unconnected dummies (nothing in the child has run yet, so those
         * numbers are still the dummies): finished here, they send nothing and
         * free only the child's memory.
         */
        pthread_mutex_init(&cache_lock, NULL);
        if (cache_pid != fp_self_pid())
                for (size_t i = 0; i < n_cached; i++) {
                        PQfinish(cache[i].conn);
                        free(cache[i].params);
                }
        n_cached = 0;
        cache_pid = fp_self_pid();
}

/* Whether conn is at rest: nothing in flight, no transaction, nothing unread, no error. */
static bool at_rest(PGconn *conn)
{
        const char *error = PQerrorMessage(conn);
        return PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) == PQTRANS_IDLE &&
               !PQisBusy(conn) && PQpipelineStatus(conn) == PQ_PIPELINE_OFF && (!error || !*error);
}

bool fp_pg_cache_put(forkpool_lease *lease, PGconn *conn, bool foreign_events)
{
        if (foreign_events || !__atomic_load_n(&default_receiver, __ATOMIC_ACQUIRE) ||
            (lease->flags & FP_LEASE_STICKY) || lease->soft_invalidated || !at_rest(conn))
                return false;

        struct cached c = {.lease_id = lease->lease_id,
                           .slot = lease->lease_id >> 32,
                           .backend_pid = lease->info.backend_pid,
                           .cancel_key = lease->info.cancel_key};
        snprintf(c.pool, sizeof(c.pool), "%s", lease->pool);
        /* The release reads what has arrived, last, before the socket is swapped out. */
        if (fp_release_keep_pg_reporting(lease, -1, &c.params, &c.params_len) != conn) {
                free(c.params);
                return false; /* not adopted by us after all: released as it was */
        }
        /* Whatever arrived goes with this holder, never to the next one. */
        PGnotify *n;
        while ((n = PQnotifies(conn)))
                PQfreemem(n);
        if (!at_rest(conn)) {
                PQfinish(conn); /* given back, but not clean: on its dummy socket */
                free(c.params);
                return true;
        }
        c.conn = conn;

        struct cached evicted = {.conn = NULL};
        pthread_mutex_lock(&cache_lock);
        if (cache_pid != fp_self_pid()) {
                n_cached = 0;
                cache_pid = fp_self_pid();
        }
        if (n_cached == CACHE_MAX) {
                evicted = cache[0];
                memmove(&cache[0], &cache[1], (CACHE_MAX - 1) * sizeof(cache[0]));
                n_cached--;
        }
        cache[n_cached++] = c;
        pthread_mutex_unlock(&cache_lock);
        if (evicted.conn)
                PQfinish(evicted.conn); /* its Terminate goes to the dummy socket */
        free(evicted.params);
        return true;
}

/*
 * Whether conn (kept as c) knows every parameter of the session as the lease
 * reports it: at once when the hand-over is the very report conn was kept
 * with, else parameter by parameter.
 */
static bool params_match(PGconn *conn, const struct cached *c, const struct fp_lease_pg *info)
{
        if (c->params && c->params_len == info->params_len &&
            memcmp(c->params, info->params, c->params_len) == 0)
                return true;
        size_t pos = 0;
        while (pos < info->params_len) {
                const char *name = info->params + pos;
                const char *value = name + strlen(name) + 1;
                const char *known = PQparameterStatus(conn, name);
                if (!known || strcmp(known, value) != 0)
                        return false;
                pos = (size_t)(value - info->params) + strlen(value) + 1;
        }
        return true;
}

/* Everything an application may have set on the PGconn, back to libpq's defaults. */
static void reset_hooks(PGconn *conn)
{
        PQsetNoticeReceiver(conn, default_receiver, NULL);
        PQsetNoticeProcessor(conn, default_processor, NULL);
        (void)PQsetnonblocking(conn, 0);
        PQsetErrorVerbosity(conn, PQERRORS_DEFAULT);
        PQsetErrorContextVisibility(conn, PQSHOW_CONTEXT_ERRORS);
        PQuntrace(conn);
}

PGconn *fp_pg_cache_take(forkpool_lease *lease)
{
        uint64_t slot = lease->lease_id >> 32;
        struct cached found = {.conn = NULL};

        if (lease->txn != FP_TXN_IDLE || lease->pg || lease->fd < 0)
                return NULL;
        pthread_mutex_lock(&cache_lock);
        if (cache_pid == fp_self_pid())
                for (size_t i = n_cached; i-- > 0;)
                        if (cache[i].slot == slot &&
                            cache[i].backend_pid == lease->info.backend_pid &&
                            cache[i].cancel_key == lease->info.cancel_key) {
                                found = cache[i];
                                memmove(&cache[i], &cache[i + 1],
                                        (n_cached - i - 1) * sizeof(cache[0]));
                                n_cached--;
                                break;
                        }
        pthread_mutex_unlock(&cache_lock);
        PGconn *conn = found.conn;
        if (!conn)
                return NULL;
        bool match = params_match(conn, &found, &lease->info);
        free(found.params);
        if (!match || dup3(lease->fd, PQsocket(conn), O_CLOEXEC) < 0) {
                PQfinish(conn); /* on its dummy socket: nothing is sent */
                return NULL;
        }
        close(lease->fd);
        lease->fd = -1;
        reset_hooks(conn);
        return conn;
}

uint64_t fp_pg_cache_preferred(const char *pool)
{
        uint64_t id = 0;
        pthread_mutex_lock(&cache_lock);
        if (cache_pid == fp_self_pid())
                for (size_t i = n_cached; i-- > 0 && !id;)
                        if (strcmp(cache[i].pool, pool) == 0)
                                id = cache[i].lease_id;
        pthread_mutex_unlock(&cache_lock);
        return id;
}
