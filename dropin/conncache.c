/* SPDX-License-Identifier: MIT */
/*
 * conncache.c — released PGconns kept for their session's next lease
 * (conncache.h).
 */
#include "conncache.h"

#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "realpq.h"

FP_REALPQ_DECLARE(PQsetNoticeReceiver);
FP_REALPQ_DECLARE(PQsetNoticeProcessor);
FP_REALPQ_DECLARE(PQsetnonblocking);
FP_REALPQ_DECLARE(PQsetErrorVerbosity);
FP_REALPQ_DECLARE(PQsetErrorContextVisibility);
FP_REALPQ_DECLARE(PQuntrace);
FP_REALPQ_DECLARE(PQnotifies);
FP_REALPQ_DECLARE(PQfreemem);
FP_REALPQ_DECLARE(PQisBusy);
FP_REALPQ_DECLARE(PQpipelineStatus);
FP_REALPQ_DECLARE(PQtransactionStatus);
FP_REALPQ_DECLARE(PQconsumeInput);

#define CACHE_MAX 16

struct cached {
        PGconn *conn;
        uint64_t lease_id;      /* the lease it was released from: what to ask back */
        char pool[FP_NAME_MAX]; /* that lease's pool */
        uint64_t slot;          /* lease_id >> 32: the pool and slot of its session */
        int32_t backend_pid;
        int32_t cancel_key; /* with backend_pid: that very session, not a reconnect */
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cached cache[CACHE_MAX]; /* oldest first */
static size_t n_cached;
static pid_t cache_pid;

static PQnoticeReceiver default_receiver;
static PQnoticeProcessor default_processor;

void conncache_learn_defaults(PGconn *conn)
{
        if (default_receiver)
                return;
        /* With a NULL hook libpq returns the current one and changes nothing. */
        PQnoticeProcessor p = FP_REAL(PQsetNoticeProcessor)(conn, NULL, NULL);
        PQnoticeReceiver r = FP_REAL(PQsetNoticeReceiver)(conn, NULL, NULL);
        pthread_mutex_lock(&cache_lock);
        if (!default_receiver) {
                default_processor = p;
                default_receiver = r;
        }
        pthread_mutex_unlock(&cache_lock);
}

void conncache_atfork_child(void)
{
        /* Their memory is the child's copy; their sockets are unconnected dummies. */
        pthread_mutex_init(&cache_lock, NULL);
        n_cached = 0;
}

/* Whether conn is at rest: nothing in flight, no transaction, nothing unread. */
static bool at_rest(PGconn *conn)
{
        return FP_REAL(PQstatus)(conn) == CONNECTION_OK &&
               FP_REAL(PQtransactionStatus)(conn) == PQTRANS_IDLE && !FP_REAL(PQisBusy)(conn) &&
               FP_REAL(PQpipelineStatus)(conn) == PQ_PIPELINE_OFF;
}

bool conncache_put(forkpool_lease *lease, PGconn *conn, bool foreign_events)
{
        if (foreign_events || !default_receiver || (lease->flags & FP_LEASE_STICKY) ||
            lease->soft_invalidated || !at_rest(conn))
                return false;
        /* Whatever arrived goes with this holder, never to the next one. */
        (void)FP_REAL(PQconsumeInput)(conn);
        PGnotify *n;
        while ((n = FP_REAL(PQnotifies)(conn)))
                FP_REAL(PQfreemem)(n);
        if (!at_rest(conn))
                return false;

        struct cached c = {.lease_id = lease->lease_id,
                           .slot = lease->lease_id >> 32,
                           .backend_pid = lease->info.backend_pid,
                           .cancel_key = lease->info.cancel_key};
        snprintf(c.pool, sizeof(c.pool), "%s", lease->pool);
        if (fp_release_keep_pg(lease) != conn)
                return false; /* not adopted by us after all: released as it was */
        c.conn = conn;

        PGconn *evicted = NULL;
        pthread_mutex_lock(&cache_lock);
        if (cache_pid != getpid()) {
                n_cached = 0;
                cache_pid = getpid();
        }
        if (n_cached == CACHE_MAX) {
                evicted = cache[0].conn;
                memmove(&cache[0], &cache[1], (CACHE_MAX - 1) * sizeof(cache[0]));
                n_cached--;
        }
        cache[n_cached++] = c;
        pthread_mutex_unlock(&cache_lock);
        if (evicted)
                FP_REAL(PQfinish)(evicted); /* its Terminate goes to the dummy socket */
        return true;
}

/* Whether conn knows every parameter of the session as the lease reports it. */
static bool params_match(PGconn *conn, const struct fp_lease_pg *info)
{
        size_t pos = 0;
        while (pos < info->params_len) {
                const char *name = info->params + pos;
                const char *value = name + strlen(name) + 1;
                const char *known = FP_REAL(PQparameterStatus)(conn, name);
                if (!known || strcmp(known, value) != 0)
                        return false;
                pos = (size_t)(value - info->params) + strlen(value) + 1;
        }
        return true;
}

/* Everything an application may have set on the PGconn, back to libpq's defaults. */
static void reset_hooks(PGconn *conn)
{
        FP_REAL(PQsetNoticeReceiver)(conn, default_receiver, NULL);
        FP_REAL(PQsetNoticeProcessor)(conn, default_processor, NULL);
        (void)FP_REAL(PQsetnonblocking)(conn, 0);
        FP_REAL(PQsetErrorVerbosity)(conn, PQERRORS_DEFAULT);
        FP_REAL(PQsetErrorContextVisibility)(conn, PQSHOW_CONTEXT_ERRORS);
        FP_REAL(PQuntrace)(conn);
}

PGconn *conncache_take(forkpool_lease *lease)
{
        uint64_t slot = lease->lease_id >> 32;
        PGconn *conn = NULL;

        if (lease->txn != FP_TXN_IDLE || lease->pg || lease->fd < 0)
                return NULL;
        pthread_mutex_lock(&cache_lock);
        if (cache_pid == getpid())
                for (size_t i = n_cached; i-- > 0;)
                        if (cache[i].slot == slot &&
                            cache[i].backend_pid == lease->info.backend_pid &&
                            cache[i].cancel_key == lease->info.cancel_key) {
                                conn = cache[i].conn;
                                memmove(&cache[i], &cache[i + 1],
                                        (n_cached - i - 1) * sizeof(cache[0]));
                                n_cached--;
                                break;
                        }
        pthread_mutex_unlock(&cache_lock);
        if (!conn)
                return NULL;
        if (!params_match(conn, &lease->info) ||
            dup3(lease->fd, FP_REAL(PQsocket)(conn), O_CLOEXEC) < 0) {
                FP_REAL(PQfinish)(conn); /* on its dummy socket: nothing is sent */
                return NULL;
        }
        close(lease->fd);
        reset_hooks(conn);
        return conn;
}

uint64_t conncache_preferred(const char *pool)
{
        uint64_t id = 0;
        pthread_mutex_lock(&cache_lock);
        if (cache_pid == getpid())
                for (size_t i = n_cached; i-- > 0 && !id;)
                        if (strcmp(cache[i].pool, pool) == 0)
                                id = cache[i].lease_id;
        pthread_mutex_unlock(&cache_lock);
        return id;
}
