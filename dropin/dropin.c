/* SPDX-License-Identifier: MIT */
/*
 * dropin.c — the libpq functions the drop-in replaces: a connection addressed
 * to forkpool (target.h) is a lease, everything else goes to the real libpq
 * untouched.
 *
 * A leased connection is a real PGconn of the real libpq, adopted on the
 * leased socket (adopt/pgadopt.c), so every function the drop-in does not
 * replace works on it as on any other. The drop-in keeps, per such PGconn,
 * an entry (struct dropin_conn) in a hash table: what the application asked
 * for (PQhost, PQport, PQconninfo report it), the lease, and the state of a
 * connect in progress.
 *
 * A non-blocking connect (PQconnectStart) whose pool has a connection idle
 * is leased at once, in about one local round trip. Otherwise the acquire is
 * sent on a control connection of its own and the PGconn handed out at once,
 * connected to the private adoption listener with its startup unanswered;
 * its socket number shows the control connection meanwhile (dup3), so the
 * application's event loop wakes when the lease arrives, and PQconnectPoll
 * then puts libpq's own socket back and completes the adoption.
 *
 * Failures (refused parameters, timeouts, no supervisor, no such pool, a
 * database that is down) are ordinary CONNECTION_BAD connections: libpq's
 * startup is answered with a FATAL error carrying the reason, and
 * PQerrorMessage() returns that reason as one line.
 */
#include <errno.h>
#include <fcntl.h>
#include <libpq-events.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "cancel.h"
#include "clock.h"
#include "dropin.h"
#include "pg_cache.h"
#include "internal.h"
#include "pgadopt.h"
#include "realpq.h"
#include "target.h"
#include "selfpid.h"

/* --- the table of the drop-in's connections --- */

#define BUCKETS 1024

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct dropin_conn *table[BUCKETS];
static atomic_size_t table_count; /* lets the common case (no forkpool connection) skip the lock */

/*
 * Moves at every change of the table. Each thread remembers its last
 * look-up (a PGconn is used by one thread at a time, and transaction mode
 * looks its connection up at every call): valid while this has not moved.
 */
static atomic_uint_least64_t table_generation;
static __thread const PGconn *last_conn;
static __thread struct dropin_conn *last_found;
static __thread uint64_t last_generation;

static size_t bucket_of(const PGconn *conn)
{
        uintptr_t p = (uintptr_t)conn;
        return (size_t)((p >> 4) ^ (p >> 14)) % BUCKETS;
}

static void table_add(struct dropin_conn *d)
{
        pthread_mutex_lock(&table_lock);
        size_t b = bucket_of(d->conn);
        d->next = table[b];
        table[b] = d;
        atomic_fetch_add(&table_count, 1);
        atomic_fetch_add(&table_generation, 1);
        pthread_mutex_unlock(&table_lock);
}

struct dropin_conn *dropin_find(const PGconn *conn)
{
        struct dropin_conn *d;
        if (!conn || atomic_load_explicit(&table_count, memory_order_relaxed) == 0)
                return NULL;
        uint64_t generation = atomic_load_explicit(&table_generation, memory_order_acquire);
        if (conn == last_conn && generation == last_generation)
                return last_found;
        pthread_mutex_lock(&table_lock);
        for (d = table[bucket_of(conn)]; d && d->conn != conn; d = d->next)
                ;
        pthread_mutex_unlock(&table_lock);
        last_conn = conn;
        last_found = d;
        last_generation = generation;
        return d;
}

static struct dropin_conn *table_remove(const PGconn *conn)
{
        struct dropin_conn *d = NULL;
        if (!conn || atomic_load_explicit(&table_count, memory_order_relaxed) == 0)
                return NULL;
        pthread_mutex_lock(&table_lock);
        for (struct dropin_conn **p = &table[bucket_of(conn)]; *p; p = &(*p)->next)
                if ((*p)->conn == conn) {
                        d = *p;
                        *p = d->next;
                        atomic_fetch_sub(&table_count, 1);
                        atomic_fetch_add(&table_generation, 1);
                        break;
                }
        pthread_mutex_unlock(&table_lock);
        return d;
}

/* --- control connections --- */

/*
 * The process's control connection to the forkpoold at socket (one per
 * supervisor; blocking acquires share it, one after another). NULL with the
 * error in *ret_error if there is none.
 */
struct main_handle {
        struct main_handle *next;
        char socket[sizeof(((struct dropin_target *)0)->socket)];
        forkpool *fp;
};
static pthread_mutex_t handles_lock = PTHREAD_MUTEX_INITIALIZER;
static struct main_handle *handles;

forkpool *dropin_main_handle(const char *socket, int *ret_error)
{
        struct main_handle *h;
        int r = 0;

        pthread_mutex_lock(&handles_lock);
        for (h = handles; h && strcmp(h->socket, socket) != 0; h = h->next)
                ;
        if (!h) {
                forkpool *fp;
                r = forkpool_open(socket, &fp);
                if (r >= 0) {
                        h = calloc(1, sizeof(*h));
                        if (h) {
                                snprintf(h->socket, sizeof(h->socket), "%s", socket);
                                h->fp = fp;
                                h->next = handles;
                                handles = h;
                        } else {
                                forkpool_close(fp);
                                r = -ENOMEM;
                        }
                }
        }
        pthread_mutex_unlock(&handles_lock);
        *ret_error = r;
        return h ? h->fp : NULL;
}

/*
 * The control connections acquires go out on: each carries at most one
 * acquire at a time (for a non-blocking connect that must wait, its
 * descriptor is what PQsocket() shows meanwhile), so the threads of a
 * process acquire in parallel, and keeps the leases that came on it, since a
 * lease goes back on the connection it came on. One is reused once its
 * acquire is answered: a process needs as many as it has acquires under way
 * at once, not one per lease. A few with nothing on them stay open for the
 * next acquires; beyond that they are closed.
 */
struct wait_handle {
        struct wait_handle *next;
        char socket[sizeof(((struct dropin_target *)0)->socket)];
        forkpool *fp;
        pid_t pid;
        unsigned leases;       /* leases that came on it, still held */
        bool waiting;          /* an acquire is pending on it */
        uint32_t abandoned_id; /* the request of a connect given up while it waited; 0: none */
};
static struct wait_handle *wait_handles; /* under handles_lock */

/* Control connections kept open with nothing on them, per process, for the next acquires. */
#define IDLE_HANDLES_MAX 8

/* Closes h (forkpoold drops an acquire still queued on it). Called with handles_lock held. */
/*
 * When forkpoold last refused this process a control connection
 * (max_connections_per_pid, _per_uid), CLOCK_MONOTONIC ms, 0: not lately.
 * Until one of the process's own closes, or OPEN_RETRY_MS pass, no new one
 * is tried (each try is a connect and a refusal on forkpoold's loop): the
 * acquire shares one or waits in the process. Under handles_lock.
 */
static int64_t open_refused_ms;
#define OPEN_RETRY_MS 100

/* Whether forkpoold refused a connection for the number of them (not for another reason). */
static bool open_refused_for_count(int r)
{
        return r == -EMFILE || r == -ENFILE || r == -EAGAIN || r == -EUSERS;
}

static void wait_handle_close(struct wait_handle *h)
{
        open_refused_ms = 0; /* one fewer: a new one may be accepted */
        for (struct wait_handle **p = &wait_handles; *p; p = &(*p)->next)
                if (*p == h) {
                        *p = h->next;
                        break;
                }
        forkpool_close(h->fp);
        free(h);
}

/* Closes h if nothing needs it and enough others are idle. Called with handles_lock held. */
static void wait_handle_maybe_close(struct wait_handle *h)
{
        if (h->leases || h->waiting || h->abandoned_id)
                return;
        unsigned idle = 0;
        for (const struct wait_handle *o = wait_handles; o; o = o->next)
                idle += o != h && o->pid == h->pid && !o->leases && !o->waiting && !o->abandoned_id;
        if (h->pid != fp_self_pid() || idle >= IDLE_HANDLES_MAX)
                wait_handle_close(h);
}

/*
 * Answers that came for connects given up are collected: a lease goes back
 * unused. Never blocks. Called with handles_lock held.
 */
static void wait_handles_reap(void)
{
        struct wait_handle *next;
        for (struct wait_handle *h = wait_handles; h; h = next) {
                next = h->next;
                if (!h->abandoned_id || h->pid != fp_self_pid())
                        continue;
                forkpool_lease *lease;
                int r = fp_acquire_recv(h->fp, h->abandoned_id, "", &lease);
                if (r == -EAGAIN)
                        continue;
                if (r == 0)
                        (void)fp_release_unused(lease);
                h->abandoned_id = 0;
                wait_handle_maybe_close(h);
        }
}

/* Whether h is free for a new acquire (of this process, to socket). */
static bool wait_handle_free(const struct wait_handle *h, const char *socket)
{
        return h->pid == fp_self_pid() && !h->waiting && !h->abandoned_id &&
               strcmp(h->socket, socket) == 0;
}

/*
 * A control connection to socket with no acquire pending, marked waiting;
 * NULL on error. An acquire that may be given up (a non-blocking connect:
 * may_abandon) prefers one that carries no lease, opened if need be, so
 * that giving it up can close it and forkpoold drops the acquire with it;
 * only when forkpoold allows no more connections does it share one.
 */
static struct wait_handle *wait_handle_get(const char *socket, bool may_abandon, int *ret_error)
{
        struct wait_handle *h, *shared = NULL;
        int r = 0;

        pthread_mutex_lock(&handles_lock);
        wait_handles_reap();
        for (h = wait_handles; h; h = h->next) {
                if (!wait_handle_free(h, socket))
                        continue;
                if (!may_abandon || !h->leases)
                        break;
                if (!shared)
                        shared = h;
        }
        bool refused_lately =
                open_refused_ms && fp_monotonic_ms() - open_refused_ms < OPEN_RETRY_MS;
        if (!h && refused_lately) {
                h = shared;
                r = h ? 0 : -EMFILE;
        } else if (!h) {
                h = calloc(1, sizeof(*h));
                r = h ? forkpool_open(socket, &h->fp) : -ENOMEM;
                if (open_refused_for_count(r))
                        open_refused_ms = fp_monotonic_ms();
                if (r < 0) {
                        free(h);
                        h = shared;
                        if (h)
                                r = 0;
                } else {
                        snprintf(h->socket, sizeof(h->socket), "%s", socket);
                        h->pid = fp_self_pid();
                        h->next = wait_handles;
                        wait_handles = h;
                }
        }
        if (h)
                h->waiting = true;
        pthread_mutex_unlock(&handles_lock);
        *ret_error = r;
        return h;
}

/* h's acquire was answered: with a lease (now counted on h) or not. */
static void wait_handle_answered(struct wait_handle *h, bool leased)
{
        pthread_mutex_lock(&handles_lock);
        h->waiting = false;
        if (leased)
                h->leases++;
        wait_handle_maybe_close(h);
        pthread_mutex_unlock(&handles_lock);
}

/* A lease that came on h has gone back (on h). */
static void wait_handle_lease_done(struct wait_handle *h)
{
        pthread_mutex_lock(&handles_lock);
        if (h->leases)
                h->leases--;
        wait_handle_maybe_close(h);
        wait_handles_reap();
        pthread_mutex_unlock(&handles_lock);
}

/*
 * The connect waiting on h (request id) is given up. With no lease on h the
 * connection is closed (forkpoold drops the acquire with it); otherwise its
 * answer is collected later and a lease in it goes back unused.
 */
static void wait_handle_abandon(struct wait_handle *h, uint32_t id)
{
        pthread_mutex_lock(&handles_lock);
        h->waiting = false;
        if (h->leases)
                h->abandoned_id = id;
        else
                wait_handle_close(h);
        pthread_mutex_unlock(&handles_lock);
}

static void atfork_child(void)
{
        /* Threads of the parent may have held these at fork; they are not here. */
        pthread_mutex_init(&table_lock, NULL);
        pthread_mutex_init(&handles_lock, NULL);
        open_refused_ms = 0; /* the parent's count is not the child's */
        dropin_cancel_atfork_child();
        fp_pg_cache_atfork_child();
}

__attribute__((constructor(102))) static void dropin_init(void)
{
        (void)pthread_atfork(NULL, NULL, atfork_child);
}

/* --- errors --- */

/* One line saying why an acquire failed, for PQerrorMessage(). */
void dropin_acquire_error(const struct dropin_target *t, forkpool *fp, int err, char *buf,
                          size_t cap)
{
        const char *detail = forkpool_last_error();
        forkpool_pool_stats st = FORKPOOL_POOL_STATS_INIT;

        switch (err) {
        case -ETIMEDOUT:
                if (fp && forkpool_pool_state(fp, t->pool, &st) == 0) {
                        int base = st.checked_out < st.pool_size ? st.checked_out : st.pool_size;
                        char within[32] = "its pool_timeout";
                        if (t->timeout_ms > 0)
                                snprintf(within, sizeof(within), "%g s", t->timeout_ms / 1000.0);
                        snprintf(buf, cap,
                                 "forkpool: pool \"%s\": no connection free within %s (%d + %d in "
                                 "use, %d waiting)",
                                 t->pool, within, base, st.checked_out - base, st.waiting);
                } else {
                        snprintf(buf, cap, "forkpool: pool \"%s\": no connection free in time",
                                 t->pool);
                }
                return;
        case -ENOENT:
                snprintf(buf, cap, "forkpool: no pool \"%s\" in the forkpoold at %s", t->pool,
                         t->socket);
                return;
        case -ECONNREFUSED:
                snprintf(buf, cap, "forkpool: no forkpoold is running at %s", t->socket);
                return;
        case -EACCES:
                snprintf(buf, cap,
                         "forkpool: uid %u may not use the forkpoold at %s (allow_users, "
                         "allow_groups)%s%s",
                         (unsigned)geteuid(), t->socket, *detail ? ": " : "", detail);
                return;
        case -EHOSTUNREACH:
                snprintf(buf, cap, "forkpool: pool \"%s\": the database cannot be reached%s%s",
                         t->pool, *detail ? ": " : "", detail);
                return;
        default:
                snprintf(buf, cap, "forkpool: pool \"%s\": %s%s%s", t->pool, forkpool_strerror(err),
                         *detail ? ": " : "", detail);
                return;
        }
}

/*
 * Makes d's PGconn a failed connection saying text: libpq's startup (begun
 * on the listener, or begun here) is answered with a FATAL error.
 */
static void fail_conn(struct dropin_conn *d, const char *text)
{
        snprintf(d->error, sizeof(d->error), "%s\n", text);
        d->state = DROPIN_FAILED;
        if (!d->conn) {
                if (fp_pg_adopt_begin(d->target.user, d->target.pool, &d->adoption) < 0)
                        return;
                d->conn = d->adoption.conn;
        }
        if (d->adoption.srv >= 0)
                (void)fp_pg_adopt_refuse(&d->adoption, text);
        d->adoption.srv = -1;
}

/* --- leasing --- */

int dropin_queue_timer(const struct dropin_conn *d, forkpool *main, int64_t *ret_deadline_ms)
{
        int t = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        struct itimerspec every = {.it_interval = {0, DROPIN_QUEUE_RETRY_MS * 1000000L},
                                   .it_value = {0, DROPIN_QUEUE_RETRY_MS * 1000000L}};
        if (t < 0 || timerfd_settime(t, 0, &every, NULL) < 0) {
                int r = -errno;
                if (t >= 0)
                        close(t);
                return r;
        }
        int timeout = d->target.timeout_ms > 0 ? d->target.timeout_ms
                                               : fp_pool_timeout_ms(main, d->target.pool);
        /*
         * The segment may not be readable this moment (forkpoold descheduled in
         * the middle of publishing: -EAGAIN; or restarting): forkpoold's default
         * then, never "no time at all", which failed the wait at once.
         */
        if (timeout < 0)
                timeout = DROPIN_FALLBACK_POOL_TIMEOUT_MS;
        *ret_deadline_ms = fp_monotonic_ms() + timeout;
        return t;
}

/* Stops d's queued connect's timer, if any (its descriptor under PQsocket() stays until replaced).
 */
static void connect_unqueue(struct dropin_conn *d)
{
        if (d->queue_timer >= 0)
                close(d->queue_timer);
        d->queue_timer = -1;
}

/*
 * Queues d's non-blocking connect in the process (struct dropin_conn):
 * returns a descriptor to put under PQsocket() at once and close (an
 * eventfd: writable, as an application waits for before its first
 * PQconnectPoll(); that call puts the timer there), or a negative errno.
 */
static int connect_queue(struct dropin_conn *d, forkpool *main)
{
        int64_t deadline;
        int t = dropin_queue_timer(d, main, &deadline);
        if (t < 0)
                return t;
        int writable = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (writable < 0) {
                int r = -errno;
                close(t);
                return r;
        }
        d->queue_timer = t;
        d->queue_deadline_ms = deadline;
        return writable;
}

/* Gives up what d's acquire or lease holds, leaving its PGconn as it is. */
static void drop_lease(struct dropin_conn *d)
{
        if (d->libpq_fd >= 0 && d->conn) {
                /* libpq's own socket goes back under the PGconn. */
                (void)dup3(d->libpq_fd, FP_REAL(PQsocket)(d->conn), O_CLOEXEC);
                close(d->libpq_fd);
        }
        d->libpq_fd = -1;
        connect_unqueue(d);
        if (d->lease)
                (void)forkpool_release(d->lease);
        d->lease = NULL;
        if (d->wait && d->wait_leased)
                wait_handle_lease_done(d->wait);
        else if (d->wait)
                wait_handle_abandon(d->wait, d->request_id);
        d->wait = NULL;
        d->wait_leased = false;
}

/*
 * Checks a lease against what the application asked for and adopts it into
 * d's PGconn (begun on the listener). Returns 0 (READY) or fails d.
 */
static int adopt_lease(struct dropin_conn *d, forkpool_lease *lease)
{
        char text[512];
        int r;

        if (lease->db_kind != FP_DB_POSTGRES) {
                (void)fp_release_unused(lease);
                snprintf(text, sizeof(text), "forkpool: pool \"%s\" is not a PostgreSQL pool",
                         d->target.pool);
                fail_conn(d, text);
                return -EPROTO;
        }
        if (*d->target.user && strcmp(d->target.user, lease->info.user) != 0) {
                snprintf(text, sizeof(text),
                         "forkpool: pool \"%s\" connects as user \"%s\", not \"%s\"",
                         d->target.pool, lease->info.user, d->target.user);
                (void)fp_release_unused(lease);
                fail_conn(d, text);
                return -EACCES;
        }
        if (lease->pg) {
                /* A process pool's connection this process kept: it is adopted already. */
                if (d->conn) {
                        (void)forkpool_release(lease);
                        fail_conn(d, "forkpool: a process pool (poolclass = process) serves "
                                     "only blocking connects");
                        return -EOPNOTSUPP;
                }
                d->conn = lease->pg;
                d->lease = lease;
                d->state = DROPIN_READY;
                return 0;
        }
        PGconn *cached = d->conn ? NULL : fp_pg_cache_take(lease);
        if (cached) {
                /* This process's PGconn of that very session: its descriptor is under it. */
                d->conn = cached;
        } else {
                if (!d->conn) {
                        /* A blocking connect: the PGconn is made for the session we now have. */
                        r = fp_pg_adopt_begin(lease->info.user, d->target.pool, &d->adoption);
                        if (r < 0) {
                                (void)fp_release_unused(lease);
                                snprintf(text, sizeof(text),
                                         "forkpool: pool \"%s\": adoption failed: %s",
                                         d->target.pool, strerror(-r));
                                snprintf(d->error, sizeof(d->error), "%s\n", text);
                                d->state = DROPIN_FAILED;
                                return r;
                        }
                        d->conn = d->adoption.conn;
                }
                r = fp_pg_adopt_complete(&d->adoption, lease->fd, &lease->info, lease->txn);
                if (r < 0) {
                        (void)fp_release_unused(lease);
                        snprintf(text, sizeof(text), "forkpool: pool \"%s\": adoption failed: %s",
                                 d->target.pool, strerror(-r));
                        fail_conn(d, text);
                        return r;
                }
                fp_pg_cache_learn_defaults(d->conn);
        }
        /* Whatever the pool's reset mode, the next client gets a clean session. */
        lease->flags |= FP_LEASE_TRACK_DIRTY | FP_LEASE_LOCAL_CLEAN_DIRTY;
        (void)fp_attach_pg(lease, d->conn);
        d->lease = lease;
        d->state = DROPIN_READY;
        const char *enc = d->target.client_encoding;
        const char *now = FP_REAL(PQparameterStatus)(d->conn, "client_encoding");
        if (*enc && (!now || strcasecmp(now, enc) != 0) &&
            FP_REAL(PQsetClientEncoding)(d->conn, enc) != 0) {
                drop_lease(d);
                snprintf(text, sizeof(text),
                         "forkpool: pool \"%s\": invalid client_encoding \"%s\"", d->target.pool,
                         enc);
                snprintf(d->error, sizeof(d->error), "%s\n", text);
                d->state = DROPIN_FAILED;
                return -EINVAL;
        }
        /* A pool in transaction mode: the session goes back until the first command. */
        (void)txmode_connected(d);
        return 0;
}

int dropin_acquire(struct dropin_conn *d, forkpool *main, int timeout_ms, uint64_t prefer,
                   forkpool_lease **ret)
{
        int r;
        struct wait_handle *h = wait_handle_get(d->target.socket, false, &r);
        if (!h)
                return main ? forkpool_acquire(main, d->target.pool, timeout_ms, ret) : r;
        /* A session whose PGconn this process still has, if forkpoold can give it. */
        fp_prefer_lease(h->fp, d->target.pool, prefer);
        r = forkpool_acquire(h->fp, d->target.pool, timeout_ms, ret);
        wait_handle_answered(h, r >= 0);
        if (r >= 0) {
                d->wait = h;
                d->wait_leased = true;
        }
        return r;
}

void dropin_lease_gone(struct dropin_conn *d)
{
        if (d->wait && d->wait_leased)
                wait_handle_lease_done(d->wait);
        d->wait = NULL;
        d->wait_leased = false;
}

int dropin_acquire_send(struct dropin_conn *d, int timeout_ms, uint64_t prefer)
{
        int r;
        d->wait = wait_handle_get(d->target.socket, true, &r);
        if (!d->wait)
                return r;
        fp_prefer_lease(d->wait->fp, d->target.pool, prefer);
        int fd = fp_acquire_send(d->wait->fp, d->target.pool, timeout_ms, &d->request_id);
        if (fd < 0) {
                wait_handle_answered(d->wait, false);
                d->wait = NULL;
        }
        d->wait_leased = false;
        return fd;
}

int dropin_acquire_recv(struct dropin_conn *d, forkpool_lease **ret, char *error, size_t cap)
{
        int r = fp_acquire_recv(d->wait->fp, d->request_id, d->target.pool, ret);
        if (r == -EAGAIN)
                return r;
        if (r < 0)
                dropin_acquire_error(&d->target, d->wait->fp, r, error, cap);
        wait_handle_answered(d->wait, r >= 0);
        if (r >= 0)
                d->wait_leased = true;
        else
                d->wait = NULL;
        return r;
}

void dropin_acquire_abandon(struct dropin_conn *d)
{
        if (d->wait && !d->wait_leased)
                wait_handle_abandon(d->wait, d->request_id);
        d->wait = NULL;
}

/* A blocking acquire for d, asking for a session whose PGconn this process keeps. */
static int acquire_parallel(struct dropin_conn *d, forkpool *main, int timeout_ms,
                            forkpool_lease **ret)
{
        return dropin_acquire(d, main, timeout_ms, fp_pg_cache_preferred(d->target.pool), ret);
}

static void lease_blocking(struct dropin_conn *d)
{
        char text[512];
        forkpool_lease *lease;
        int r;

        forkpool *fp = dropin_main_handle(d->target.socket, &r);
        if (fp)
                r = acquire_parallel(d, fp, d->target.timeout_ms, &lease);
        if (r < 0) {
                dropin_acquire_error(&d->target, fp, r, text, sizeof(text));
                fail_conn(d, text);
                return;
        }
        (void)adopt_lease(d, lease);
}

/*
 * A non-blocking lease into d: at once if the pool has a connection idle,
 * else d is left PENDING on an acquire of its own control connection.
 */
static void lease_nonblocking(struct dropin_conn *d)
{
        char text[512];
        forkpool_pool_stats st = FORKPOOL_POOL_STATS_INIT;
        forkpool_lease *lease;
        int r;

        forkpool *fp = dropin_main_handle(d->target.socket, &r);
        if (!fp) {
                dropin_acquire_error(&d->target, fp, r, text, sizeof(text));
                fail_conn(d, text);
                return;
        }
        r = forkpool_pool_state(fp, d->target.pool, &st);
        if (r >= 0 && st.idle > 0 && !st.paused) {
                r = acquire_parallel(d, fp, 0, &lease);
                if (r >= 0) {
                        (void)adopt_lease(d, lease);
                        return;
                }
        }
        if (r < 0 && r != -ETIMEDOUT && r != -EAGAIN) {
                dropin_acquire_error(&d->target, fp, r, text, sizeof(text));
                fail_conn(d, text);
                return;
        }

        /*
         * It must wait: on a control connection of its own, watched through
         * PQsocket(); when the process may open no more, in the process (a timer
         * under PQsocket(), pending_poll() tries again).
         */
        d->wait = wait_handle_get(d->target.socket, true, &r);
        int control = d->wait ? fp_acquire_send(d->wait->fp, d->target.pool, d->target.timeout_ms,
                                                &d->request_id)
                      : open_refused_for_count(r) ? connect_queue(d, fp)
                                                  : r;
        if (control < 0) {
                if (d->wait)
                        wait_handle_answered(d->wait, false);
                d->wait = NULL;
                dropin_acquire_error(&d->target, fp, control, text, sizeof(text));
                fail_conn(d, text);
                return;
        }
        if (!d->conn) {
                r = fp_pg_adopt_begin(d->target.user, d->target.pool, &d->adoption);
                if (r < 0) {
                        snprintf(text, sizeof(text), "forkpool: pool \"%s\": %s", d->target.pool,
                                 strerror(-r));
                        fail_conn(d, text);
                        return;
                }
                d->conn = d->adoption.conn;
        }
        int sock = FP_REAL(PQsocket)(d->conn);
        d->libpq_fd = fcntl(sock, F_DUPFD_CLOEXEC, 3);
        bool ok = d->libpq_fd >= 0 && dup3(control, sock, O_CLOEXEC) >= 0;
        if (d->queue_timer >= 0)
                close(control); /* connect_queue()'s: its copy under sock is what counts */
        if (!ok) {
                if (d->libpq_fd >= 0)
                        close(d->libpq_fd);
                d->libpq_fd = -1;
                connect_unqueue(d);
                snprintf(text, sizeof(text), "forkpool: pool \"%s\": %s", d->target.pool,
                         strerror(errno));
                fail_conn(d, text);
                return;
        }
        d->state = DROPIN_PENDING;
}

/*
 * A queued connect: tries again to start its acquire. Returns 0 (started:
 * its control connection under PQsocket()), -EAGAIN (still queued) or a
 * negative errno with the reason in text.
 */
static int connect_queue_retry(struct dropin_conn *d, char *text, size_t cap)
{
        uint64_t ticks;
        int r;
        ssize_t n = read(d->queue_timer, &ticks, sizeof(ticks));
        (void)n;
        d->wait = wait_handle_get(d->target.socket, true, &r);
        int control = d->wait ? fp_acquire_send(d->wait->fp, d->target.pool, d->target.timeout_ms,
                                                &d->request_id)
                              : r;
        bool sent = control >= 0;
        if (sent && dup3(control, FP_REAL(PQsocket)(d->conn), O_CLOEXEC) < 0)
                control = -errno;
        if (control >= 0) {
                connect_unqueue(d);
                return 0;
        }
        if (d->wait && sent)
                wait_handle_abandon(d->wait, d->request_id); /* its answer goes back unused */
        else if (d->wait)
                wait_handle_answered(d->wait, false);
        d->wait = NULL;
        if (open_refused_for_count(control) && fp_monotonic_ms() < d->queue_deadline_ms) {
                /* Still queued: the timer under PQsocket() (at first an eventfd is). */
                if (dup3(d->queue_timer, FP_REAL(PQsocket)(d->conn), O_CLOEXEC) >= 0)
                        return -EAGAIN;
                control = -errno;
        }
        if (open_refused_for_count(control)) {
                snprintf(text, cap,
                         "forkpool: pool \"%s\": no control connection free for this process "
                         "within its pool_timeout (as many as max_connections_per_pid allows "
                         "carry acquires)",
                         d->target.pool);
                return -ETIMEDOUT;
        }
        forkpool *fp = dropin_main_handle(d->target.socket, &r);
        dropin_acquire_error(&d->target, fp, control, text, cap);
        return control;
}

/* PQconnectPoll() of a PENDING connection: has the lease arrived? */
static PostgresPollingStatusType pending_poll(struct dropin_conn *d)
{
        char text[512];
        forkpool_lease *lease;

        if (d->pid != fp_self_pid())
                return PGRES_POLLING_FAILED;
        if (d->queue_timer >= 0) {
                int q = connect_queue_retry(d, text, sizeof(text));
                if (q == 0 || q == -EAGAIN)
                        return PGRES_POLLING_READING;
                (void)dup3(d->libpq_fd, FP_REAL(PQsocket)(d->conn), O_CLOEXEC);
                close(d->libpq_fd);
                d->libpq_fd = -1;
                connect_unqueue(d);
                fail_conn(d, text);
                return PGRES_POLLING_FAILED;
        }
        int r = fp_acquire_recv(d->wait->fp, d->request_id, d->target.pool, &lease);
        if (r == -EAGAIN)
                return PGRES_POLLING_READING;
        /* libpq's socket goes back under the PGconn before anything else. */
        (void)dup3(d->libpq_fd, FP_REAL(PQsocket)(d->conn), O_CLOEXEC);
        close(d->libpq_fd);
        d->libpq_fd = -1;
        if (r < 0) {
                dropin_acquire_error(&d->target, d->wait->fp, r, text, sizeof(text));
                wait_handle_answered(d->wait, false);
                d->wait = NULL;
                fail_conn(d, text);
                return PGRES_POLLING_FAILED;
        }
        wait_handle_answered(d->wait, true);
        d->wait_leased = true;
        return adopt_lease(d, lease) == 0 ? PGRES_POLLING_OK : PGRES_POLLING_FAILED;
}

/* A new entry for target; NULL if out of memory. */
static struct dropin_conn *dropin_new(const struct dropin_target *target)
{
        struct dropin_conn *d = calloc(1, sizeof(*d));
        if (!d)
                return NULL;
        d->pid = fp_self_pid();
        d->target = *target;
        d->libpq_fd = -1;
        d->queue_timer = -1;
        d->adoption.srv = -1;
        return d;
}

/*
 * Connects d as asked (blocking or not) and returns its PGconn, registered;
 * NULL only when not even a failed PGconn could be made.
 */
static PGconn *dropin_connect(struct dropin_conn *d, bool blocking)
{
        if (*d->target.refusal)
                fail_conn(d, d->target.refusal);
        else if (blocking)
                lease_blocking(d);
        else
                lease_nonblocking(d);
        if (!d->conn) {
                free(d);
                return NULL;
        }
        table_add(d);
        return d->conn;
}

/*
 * Whether parameters read with result r (1: they address forkpool) lease:
 * the drop-in is on in this process and no other libpq copy is loaded (it
 * would see half of the calls; then everything passes through, said once).
 */
static bool wants_lease(int r)
{
        if (r != 1 || !fp_dropin_enabled())
                return false;
        const char *other = fp_realpq_other_copy();
        if (other) {
                static atomic_flag warned = ATOMIC_FLAG_INIT;
                if (!atomic_flag_test_and_set(&warned))
                        fprintf(stderr,
                                "forkpool: another libpq is loaded in this process (%s); the "
                                "drop-in passes every connection through to the real libpq\n",
                                other);
                return false;
        }
        return true;
}

/* --- opening --- */

DROPIN_EXPORT PGconn *PQconnectdb(const char *conninfo)
{
        struct dropin_target t;
        struct dropin_conn *d;
        if (!wants_lease(dropin_target_from_conninfo(conninfo, &t)) || !(d = dropin_new(&t)))
                return FP_REAL(PQconnectdb)(conninfo);
        return dropin_connect(d, true);
}

DROPIN_EXPORT PGconn *PQconnectdbParams(const char *const *keywords, const char *const *values,
                                        int expand_dbname)
{
        struct dropin_target t;
        struct dropin_conn *d;
        if (!wants_lease(dropin_target_from_params(keywords, values, expand_dbname, &t)) ||
            !(d = dropin_new(&t)))
                return FP_REAL(PQconnectdbParams)(keywords, values, expand_dbname);
        return dropin_connect(d, true);
}

DROPIN_EXPORT PGconn *PQconnectStart(const char *conninfo)
{
        struct dropin_target t;
        struct dropin_conn *d;
        if (!wants_lease(dropin_target_from_conninfo(conninfo, &t)) || !(d = dropin_new(&t)))
                return FP_REAL(PQconnectStart)(conninfo);
        return dropin_connect(d, false);
}

DROPIN_EXPORT PGconn *PQconnectStartParams(const char *const *keywords, const char *const *values,
                                           int expand_dbname)
{
        struct dropin_target t;
        struct dropin_conn *d;
        if (!wants_lease(dropin_target_from_params(keywords, values, expand_dbname, &t)) ||
            !(d = dropin_new(&t)))
                return FP_REAL(PQconnectStartParams)(keywords, values, expand_dbname);
        return dropin_connect(d, false);
}

DROPIN_EXPORT PGconn *PQsetdbLogin(const char *pghost, const char *pgport, const char *pgoptions,
                                   const char *pgtty, const char *dbName, const char *login,
                                   const char *pwd)
{
        /* As libpq does: dbName may be a whole conninfo string or URI. */
        const char *keys[] = {"host", "port", "options", "dbname", "user", "password", NULL};
        const char *vals[] = {pghost, pgport, pgoptions, dbName, login, pwd, NULL};
        struct dropin_target t;
        struct dropin_conn *d;
        if (!wants_lease(dropin_target_from_params(keys, vals, 1, &t)) || !(d = dropin_new(&t)))
                return FP_REAL(PQsetdbLogin)(pghost, pgport, pgoptions, pgtty, dbName, login, pwd);
        return dropin_connect(d, true);
}

DROPIN_EXPORT PostgresPollingStatusType PQconnectPoll(PGconn *conn)
{
        struct dropin_conn *d = dropin_find(conn);
        if (!d || d->state == DROPIN_ADOPTING)
                return FP_REAL(PQconnectPoll)(conn);
        switch (d->state) {
        case DROPIN_READY:
                return PGRES_POLLING_OK;
        case DROPIN_PENDING:
                return pending_poll(d);
        default:
                return PGRES_POLLING_FAILED;
        }
}

/* --- closing and resetting --- */

/*
 * In a process that did not make the connection (a child after fork): the
 * session is the parent's. Its socket is replaced by an unconnected one, so
 * nothing libpq does here can reach the parent's session or control
 * connection; only memory is freed.
 */
static void disown_in_child(struct dropin_conn *d)
{
        if (d->conn)
                (void)fp_neutralize_fd(FP_REAL(PQsocket)(d->conn));
        if (d->libpq_fd >= 0)
                close(d->libpq_fd); /* our copy of libpq's socket */
        if (d->adoption.srv >= 0)
                close(d->adoption.srv);
        d->libpq_fd = d->adoption.srv = -1;
        connect_unqueue(d); /* the child's copy of the timer */
        d->lease = NULL;    /* the parent's; libforkpool made our copy inert at fork */
        d->wait = NULL;     /* likewise */
}

DROPIN_EXPORT void PQfinish(PGconn *conn)
{
        struct dropin_conn *d = table_remove(conn);
        if (!d) {
                FP_REAL(PQfinish)(conn);
                return;
        }
        if (d->pid != fp_self_pid()) {
                disown_in_child(d);
                txmode_forget(d);
                FP_REAL(PQfinish)(conn);
        } else if (d->tx) {
                txmode_finish(d);
                drop_lease(d);
                FP_REAL(PQfinish)(conn); /* its Terminate goes to an unconnected socket */
        } else if (d->state == DROPIN_READY && d->lease) {
                /* Kept for its session's next lease here, or finished without a Terminate
                 * by forkpool_release(). */
                if (fp_pg_cache_put(d->lease, conn, d->foreign_events))
                        d->lease = NULL;
                drop_lease(d);
        } else {
                drop_lease(d);
                if (d->adoption.srv >= 0)
                        close(d->adoption.srv);
                FP_REAL(PQfinish)(conn); /* it talks to our listener, never to a server */
        }
        free(d);
}

/*
 * A fresh lease into the same PGconn: what it holds goes back first (the
 * session is released as at PQfinish, the PGconn kept), then libpq's
 * PQresetStart() reconnects it to the adoption listener and the new session
 * is adopted into it.
 */
static void reset_lease(struct dropin_conn *d)
{
        char text[512];

        if (d->pid != fp_self_pid()) {
                /* An inherited connection: the child gets a session of its own. */
                disown_in_child(d);
                d->pid = fp_self_pid();
        }
        txmode_before_reset(d);
        if (d->state == DROPIN_READY && d->lease && d->lease->pg == d->conn) {
                forkpool_lease *lease = d->lease;
                d->lease = NULL;
                (void)fp_release_keep_pg(lease);
        } else {
                (void)fp_neutralize_fd(FP_REAL(PQsocket)(d->conn));
        }
        drop_lease(d);
        if (d->adoption.srv >= 0)
                close(d->adoption.srv);
        d->adoption.srv = -1;
        d->error[0] = '\0';

        d->state = DROPIN_ADOPTING; /* libpq's PQresetStart() calls PQconnectPoll() */
        int r = fp_pg_readopt_begin(d->conn, &d->adoption);
        if (r < 0) {
                snprintf(text, sizeof(text), "forkpool: pool \"%s\": reset failed: %s",
                         d->target.pool, strerror(-r));
                fail_conn(d, text);
                return;
        }
        lease_blocking(d);
}

void dropin_reset(struct dropin_conn *d)
{
        /* What libpq and the adoption call on the way (PQexec for client_encoding) is ours. */
        txmode_suspend(true);
        reset_lease(d);
        txmode_suspend(false);
}

DROPIN_EXPORT void PQreset(PGconn *conn)
{
        struct dropin_conn *d = dropin_find(conn);
        if (!d) {
                FP_REAL(PQreset)(conn);
                return;
        }
        dropin_reset(d);
}

DROPIN_EXPORT int PQresetStart(PGconn *conn)
{
        struct dropin_conn *d = dropin_find(conn);
        if (!d)
                return FP_REAL(PQresetStart)(conn);
        /* The lease is taken at once (a reset is rare); PQresetPoll() reports the outcome. */
        dropin_reset(d);
        return d->state == DROPIN_READY;
}

DROPIN_EXPORT PostgresPollingStatusType PQresetPoll(PGconn *conn)
{
        struct dropin_conn *d = dropin_find(conn);
        if (!d)
                return FP_REAL(PQresetPoll)(conn);
        /*
         * A connect still waiting for its lease, polled as a reset (ruby-pg
         * 1.5's PG::Connection#reset starts a new connection and polls it with
         * PQresetPoll(), as libpq allows): as PQconnectPoll().
         */
        if (d->state == DROPIN_PENDING)
                return pending_poll(d);
        return d->state == DROPIN_READY ? PGRES_POLLING_OK : PGRES_POLLING_FAILED;
}

/* --- what the application asked for --- */

DROPIN_EXPORT char *PQerrorMessage(const PGconn *conn)
{
        struct dropin_conn *d = conn ? dropin_find(conn) : NULL;
        if (d && d->error[0] && FP_REAL(PQstatus)(conn) == CONNECTION_BAD)
                return d->error;
        const char *tx_error = d ? txmode_error(d) : NULL;
        if (tx_error)
                return (char *)tx_error;
        return FP_REAL(PQerrorMessage)(conn);
}

DROPIN_EXPORT char *PQhost(const PGconn *conn)
{
        struct dropin_conn *d = dropin_find(conn);
        return d ? d->target.host : FP_REAL(PQhost)(conn);
}

DROPIN_EXPORT char *PQhostaddr(const PGconn *conn)
{
        struct dropin_conn *d = dropin_find(conn);
        return d ? d->target.hostaddr : FP_REAL(PQhostaddr)(conn);
}

DROPIN_EXPORT char *PQport(const PGconn *conn)
{
        struct dropin_conn *d = dropin_find(conn);
        return d ? d->target.port : FP_REAL(PQport)(conn);
}

DROPIN_EXPORT char *PQpass(const PGconn *conn)
{
        struct dropin_conn *d = dropin_find(conn);
        return d ? d->target.password : FP_REAL(PQpass)(conn);
}

/* Replaces opt->val (allocated by libpq with malloc) with a copy of value, or NULL for "". */
static void option_set(PQconninfoOption *opt, const char *value)
{
        char *copy = value && *value ? strdup(value) : NULL;
        if (value && *value && !copy)
                return;
        free(opt->val);
        opt->val = copy;
}

DROPIN_EXPORT PQconninfoOption *PQconninfo(PGconn *conn)
{
        PQconninfoOption *opts = FP_REAL(PQconninfo)(conn);
        struct dropin_conn *d = dropin_find(conn);
        if (!d || !opts)
                return opts;
        /* The adoption listener's values never show: what the application asked for does. */
        for (PQconninfoOption *o = opts; o->keyword; o++) {
                if (strcmp(o->keyword, "host") == 0)
                        option_set(o, d->target.host);
                else if (strcmp(o->keyword, "port") == 0)
                        option_set(o, d->target.port);
                else if (strcmp(o->keyword, "hostaddr") == 0)
                        option_set(o, d->target.hostaddr);
                else if (strcmp(o->keyword, "dbname") == 0)
                        option_set(o, d->target.pool);
                else if (strcmp(o->keyword, "password") == 0)
                        option_set(o, d->target.password);
                else if (strcmp(o->keyword, "user") == 0 && *d->target.user)
                        option_set(o, d->target.user);
                else if (strcmp(o->keyword, "client_encoding") == 0)
                        option_set(o, d->target.client_encoding);
        }
        return opts;
}

/* --- event procedures --- */

DROPIN_EXPORT int PQregisterEventProc(PGconn *conn, PGEventProc proc, const char *name,
                                      void *passThrough)
{
        /* A PGconn with the application's event procedure is never kept for reuse. */
        struct dropin_conn *d = dropin_find(conn);
        if (d)
                d->foreign_events = true;
        return FP_REAL(PQregisterEventProc)(conn, proc, name, passThrough);
}

/* --- ping --- */

static PGPing dropin_ping(const struct dropin_target *t)
{
        forkpool_pool_stats st = FORKPOOL_POOL_STATS_INIT;
        int r;
        if (*t->refusal)
                return PQPING_NO_ATTEMPT;
        forkpool *fp = dropin_main_handle(t->socket, &r);
        if (!fp)
                return r == -EACCES ? PQPING_REJECT : PQPING_NO_RESPONSE;
        r = forkpool_pool_state(fp, t->pool, &st);
        if (r == -ENOENT)
                return PQPING_REJECT;
        return r < 0 ? PQPING_NO_RESPONSE : PQPING_OK;
}

DROPIN_EXPORT PGPing PQping(const char *conninfo)
{
        struct dropin_target t;
        if (!wants_lease(dropin_target_from_conninfo(conninfo, &t)))
                return FP_REAL(PQping)(conninfo);
        return dropin_ping(&t);
}

DROPIN_EXPORT PGPing PQpingParams(const char *const *keywords, const char *const *values,
                                  int expand_dbname)
{
        struct dropin_target t;
        if (!wants_lease(dropin_target_from_params(keywords, values, expand_dbname, &t)))
                return FP_REAL(PQpingParams)(keywords, values, expand_dbname);
        return dropin_ping(&t);
}

/* --- cancel --- */

PGcancel *dropin_get_cancel(struct dropin_conn *d)
{
        if (d->tx && d->pid == fp_self_pid())
                return txmode_get_cancel(d);
        if (d->state != DROPIN_READY || !d->lease || d->pid != fp_self_pid())
                return NULL;
        return dropin_cancel_new(&d->lease->info);
}

DROPIN_EXPORT PGcancel *PQgetCancel(PGconn *conn)
{
        struct dropin_conn *d = dropin_find(conn);
        if (!d)
                return FP_REAL(PQgetCancel)(conn);
        return dropin_get_cancel(d);
}

DROPIN_EXPORT void PQfreeCancel(PGcancel *cancel)
{
        if (dropin_cancel_is_ours(cancel))
                dropin_cancel_free(cancel);
        else
                FP_REAL(PQfreeCancel)(cancel);
}

DROPIN_EXPORT int PQcancel(PGcancel *cancel, char *errbuf, int errbufsize)
{
        if (dropin_cancel_is_ours(cancel))
                return dropin_cancel_send(cancel, errbuf, errbufsize);
        return FP_REAL(PQcancel)(cancel, errbuf, errbufsize);
}

DROPIN_EXPORT int PQrequestCancel(PGconn *conn)
{
        struct dropin_conn *d = dropin_find(conn);
        if (!d)
                return FP_REAL(PQrequestCancel)(conn);
        return d->state == DROPIN_READY && d->lease && d->pid == fp_self_pid() &&
               forkpool_cancel(d->lease) == 0;
}
