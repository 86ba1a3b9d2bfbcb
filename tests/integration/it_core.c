/* SPDX-License-Identifier: MIT */
/*
 * it_core.c — the lease path's PostgreSQL-specific parts against a real
 * PostgreSQL (it_both.c runs the scenarios shared with MariaDB: the cap,
 * FIFO and timeouts, reset on return): lazy connects and the counters, the
 * session's application_name, one handle shared by threads, and
 * forkpool_pool_state() (with its struct_size contract and its errors).
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include "itest.h"

static void test_acquire_query_release(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;
        PGconn *admin = itest_admin();

        itest_sup_start(&s, "it_basic", "pool_size = 2\nmax_overflow = 0\n", NULL);
        CHECK(itest_backends(admin, "it_basic") == 0); /* lazy: nothing before an acquire */
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        PGconn *c = forkpool_lease_pg(lease);
        CHECK_MSG(c, "adoption failed: %s", strerror(errno));
        CHECK(PQstatus(c) == CONNECTION_OK);
        CHECK(atoi(itest_query(c, "SELECT pg_backend_pid()")) == forkpool_lease_backend_pid(lease));
        CHECK(PQbackendPID(c) == forkpool_lease_backend_pid(lease));
        CHECK(strcmp(itest_query(c, "SELECT current_setting('application_name')"), "it_basic") ==
              0);
        int backend = PQbackendPID(c);

        struct fp_shm_pool st = itest_pool(&s);
        CHECK(st.checked_out == 1 && st.checked_in == 0 && st.overflow == -1);
        CHECK_OK(forkpool_release(lease));

        /* The same connection comes back (pool_size 2, one connection made). */
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        c = forkpool_lease_pg(lease);
        CHECK(c && PQbackendPID(c) == backend);
        CHECK(strcmp(itest_query(c, "SELECT 40 + 2"), "42") == 0);
        CHECK_OK(forkpool_release(lease));

        /* An unknown pool is -ENOENT with a reason. */
        CHECK(forkpool_acquire(fp, "nope", 1000, &lease) == -ENOENT);
        CHECK(strstr(forkpool_last_error(), "nope"));

        /* Releases are not answered: wait for the supervisor to have handled both. */
        CHECK_SOON((st = itest_pool(&s)).counters.releases == 2 && st.checked_out == 0, 5000,
                   "releases %llu, checked out %d", (unsigned long long)st.counters.releases,
                   (int)st.checked_out);
        CHECK(st.checked_in == 1);
        CHECK(st.counters.acquires == 2 && st.counters.connects == 1);
        CHECK(itest_backends(admin, "it_basic") == 1);
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
        CHECK(itest_wait_backends(admin, "it_basic", 0, 5000) == 0);
        PQfinish(admin);
}

/* forkpool_pool_state(): the load straight from the segment, for 503-before-queueing. */
static void test_pool_state(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *held;
        forkpool_pool_stats st = FORKPOOL_POOL_STATS_INIT;

        itest_sup_start(&s, "it_state", "pool_size = 1\nmax_overflow = 0\n", NULL);
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_pool_state(fp, "main", &st));
        CHECK(st.pool_size == 1 && st.max_overflow == 0 && st.checked_out == 0 && st.waiting == 0 &&
              st.oldest_wait_s == 0 && !st.paused);
        CHECK_OK(forkpool_acquire(fp, "main", 2000, &held));
        pid_t pid = fork();
        if (pid == 0) {
                forkpool *mine;
                forkpool_lease *l;
                CHECK_OK(forkpool_open(s.socket, &mine));
                CHECK_OK(forkpool_acquire(mine, "main", 10000, &l));
                CHECK_OK(forkpool_release(l));
                _exit(0);
        }
        int64_t end = itest_now_ms() + 5000;
        do
                CHECK_OK(forkpool_pool_state(fp, "main", &st));
        while (st.waiting == 0 && itest_now_ms() < end);
        usleep(200000);
        CHECK_OK(forkpool_pool_state(fp, "main", &st));
        CHECK_MSG(st.waiting == 1 && st.checked_out == 1 && st.idle == 0 &&
                          st.oldest_wait_s >= 0.15 && st.oldest_wait_s < 5,
                  "waiting %d out %d idle %d oldest %.3f", st.waiting, st.checked_out, st.idle,
                  st.oldest_wait_s);
        CHECK(forkpool_pool_state(fp, "nope", &st) == -ENOENT);
        CHECK(st.struct_size == sizeof(st));

        /* A caller built with a later header passes a larger structure: only ours is filled. */
        struct {
                forkpool_pool_stats st;
                int later_field;
        } newer;
        memset(&newer, 0x5a, sizeof(newer));
        newer.st.struct_size = sizeof(newer);
        CHECK_OK(forkpool_pool_state(fp, "main", &newer.st));
        CHECK(newer.st.struct_size == sizeof(forkpool_pool_stats) && newer.st.pool_size == 1);
        CHECK(FORKPOOL_POOL_STATS_HAS(&newer.st, paused) && newer.st.paused == 0);
        int untouched;
        memset(&untouched, 0x5a, sizeof(untouched));
        CHECK(memcmp(&newer.later_field, &untouched, sizeof(untouched)) == 0);
        /* No struct_size (or one below the first version's) is refused, nothing written. */
        forkpool_pool_stats unset = {.struct_size = 0, .pool_size = -7};
        CHECK(forkpool_pool_state(fp, "main", &unset) == -EINVAL && unset.pool_size == -7);
        unset.struct_size = offsetof(forkpool_pool_stats, paused);
        CHECK(forkpool_pool_state(fp, "main", &unset) == -EINVAL && unset.pool_size == -7);

        CHECK_OK(forkpool_release(held));
        CHECK(itest_wait_child(pid, 10000) == 0);

        /*
         * A supervisor that stopped cleanly removed its segment: the handle's
         * mapping of it must not go on answering, and the next supervisor's
         * segment is found again.
         */
        kill(s.pid, SIGTERM);
        CHECK(itest_wait_child(s.pid, 15000) >= 0);
        s.pid = 0;
        CHECK(forkpool_pool_state(fp, "main", &st) == -ENOENT);
        itest_sup_restart(&s);
        CHECK_OK(forkpool_pool_state(fp, "main", &st));
        CHECK(st.pool_size == 1 && st.checked_out == 0 && st.waiting == 0);

        /* A handle that has not mapped the segment yet, for the fake ones below. */
        forkpool *unmapped;
        CHECK_OK(forkpool_open(s.socket, &unmapped));
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);

        /*
         * A segment of another layout version (a forkpoold of another version) is
         * -EPROTO, not "no such pool"; one still being made (no magic yet) is -ENOENT.
         */
        char name[FP_SHM_NAME_MAX];
        struct fp_segment fake;
        /* Readers trust only segments of the socket's owner: a socket file must be there. */
        CHECK(mkdir(s.dir, 0755) == 0);
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        CHECK(strlen(s.socket) < sizeof(addr.sun_path));
        memcpy(addr.sun_path, s.socket, strlen(s.socket) + 1);
        int sock = socket(AF_UNIX, SOCK_SEQPACKET, 0);
        CHECK(sock >= 0 && bind(sock, (struct sockaddr *)&addr, sizeof(addr)) == 0);
        close(sock);
        fp_segment_name(s.socket, name);
        CHECK_OK(fp_segment_create(&fake, name, 1, 1, 0600, -1));
        fake.hdr->layout_version++;
        CHECK(forkpool_pool_state(unmapped, "main", &st) == -EPROTO);
        fake.hdr->layout_version--;
        __atomic_store_n(&fake.hdr->magic, 0, __ATOMIC_RELEASE);
        CHECK(forkpool_pool_state(unmapped, "main", &st) == -ENOENT);
        CHECK_OK(fp_segment_unlink(name));
        fp_segment_close(&fake);
        forkpool_close(unmapped);
        unlink(s.socket);
        rmdir(s.dir);
}

static forkpool *shared_fp;

/* The lease's session is the one it names; then it goes back. */
static void use_and_release(forkpool_lease *lease)
{
        PGconn *c = forkpool_lease_pg(lease);
        CHECK(c);
        PGresult *res = PQexec(c, "SELECT pg_backend_pid()");
        CHECK(PQresultStatus(res) == PGRES_TUPLES_OK &&
              atoi(PQgetvalue(res, 0, 0)) == PQbackendPID(c) &&
              PQbackendPID(c) == forkpool_lease_backend_pid(lease));
        PQclear(res);
        CHECK_OK(forkpool_release(lease));
}

static void *thread_loop(void *arg)
{
        (void)arg;
        for (int round = 0; round < 20; round++) {
                forkpool_lease *lease;
                CHECK_OK(forkpool_acquire(shared_fp, "main", 10000, &lease));
                use_and_release(lease);
        }
        return NULL;
}

/* One handle shared by the threads of a process. */
static void test_threads(void)
{
        enum {
                THREADS = 4
        };
        struct itest_sup s;
        pthread_t threads[THREADS];

        itest_sup_start(&s, "it_threads", "pool_size = 2\nmax_overflow = 0\n", NULL);
        CHECK_OK(forkpool_open(s.socket, &shared_fp));
        for (int i = 0; i < THREADS; i++)
                CHECK(pthread_create(&threads[i], NULL, thread_loop, NULL) == 0);
        for (int i = 0; i < THREADS; i++)
                pthread_join(threads[i], NULL);
        struct fp_shm_pool st;
        CHECK_SOON((st = itest_pool(&s)).counters.releases == THREADS * 20 && st.checked_out == 0,
                   5000, "releases %llu, checked out %d", (unsigned long long)st.counters.releases,
                   (int)st.checked_out);
        CHECK(st.counters.acquires == THREADS * 20);
        forkpool_close(shared_fp);
        CHECK(itest_sup_stop(&s) == 0);
}

static atomic_bool restart_done;

/* Leases and releases until the supervisor has restarted; errors are the restart's. */
static void *restart_loop(void *arg)
{
        int *ok = arg;
        while (!restart_done) {
                forkpool_lease *lease;
                int r = forkpool_acquire(shared_fp, "main", 2000, &lease);
                if (r < 0) {
                        CHECK_MSG(r == -ECONNRESET || r == -ECONNREFUSED || r == -ETIMEDOUT ||
                                          r == -ECONNABORTED,
                                  "acquire: %d (%s)", r, forkpool_strerror(r));
                        usleep(1000);
                        continue;
                }
                PGconn *c = forkpool_lease_pg(lease);
                if (c) {
                        PGresult *res = PQexec(c, "SELECT pg_backend_pid()");
                        if (PQresultStatus(res) == PGRES_TUPLES_OK) {
                                CHECK(atoi(PQgetvalue(res, 0, 0)) == PQbackendPID(c));
                                (*ok)++;
                        }
                        PQclear(res);
                }
                (void)forkpool_release(lease);
        }
        return NULL;
}

/*
 * Threads sharing a handle lease and release while the supervisor restarts:
 * a release that reconnects must not pull the control connection from under
 * another thread's acquire, and nothing blocks for long. A huge timeout does
 * not overflow.
 */
static void test_threads_across_restart(void)
{
        enum {
                THREADS = 4
        };
        struct itest_sup s;
        pthread_t threads[THREADS];
        int ok[THREADS] = {0};
        forkpool_lease *lease;

        itest_sup_start(&s, "it_threads_restart", "pool_size = 2\nmax_overflow = 0\n", NULL);
        CHECK_OK(forkpool_open(s.socket, &shared_fp));
        CHECK_OK(forkpool_acquire(shared_fp, "main", INT_MAX, &lease));
        CHECK_OK(forkpool_release(lease));
        for (int i = 0; i < THREADS; i++)
                CHECK(pthread_create(&threads[i], NULL, restart_loop, &ok[i]) == 0);
        usleep(300000);
        itest_sup_kill(&s);
        usleep(100000);
        itest_sup_restart(&s);
        usleep(500000);
        restart_done = true;
        for (int i = 0; i < THREADS; i++)
                pthread_join(threads[i], NULL);
        for (int i = 0; i < THREADS; i++)
                CHECK_MSG(ok[i] > 0, "thread %d never got a working lease", i);
        /* After the restart every lease came back. */
        CHECK_SOON(itest_pool(&s).checked_out == 0, 3000, "leases still out after the restart");
        forkpool_close(shared_fp);
        CHECK(itest_sup_stop(&s) == 0);
}

/* An acquire that waits for pool "main" on the shared handle (the other threads try meanwhile). */
static void *wait_main(void *arg)
{
        int *result = arg;
        forkpool_lease *lease;
        *result = forkpool_acquire(shared_fp, "main", 30000, &lease);
        if (*result == 0)
                CHECK_OK(forkpool_release(lease));
        return NULL;
}

static atomic_int tries_ok, tries_busy;

/* timeout-0 acquires of pool "other" on the shared handle: each gets one at once or -ETIMEDOUT. */
static void *try_other(void *arg)
{
        (void)arg;
        for (int i = 0; i < 40; i++) {
                forkpool_lease *lease;
                int r = forkpool_acquire(shared_fp, "other", 0, &lease);
                CHECK_MSG(r == 0 || r == -ETIMEDOUT, "timeout-0 acquire: %d (%s)", r,
                          forkpool_strerror(r));
                if (r < 0) {
                        tries_busy++;
                        continue;
                }
                use_and_release(lease);
                tries_ok++;
        }
        return NULL;
}

/*
 * A timeout-0 acquire on a handle whose other thread waits for an exhausted
 * pool is answered at once: a connection of another pool if it has one, or
 * -ETIMEDOUT; the waiting acquire is served when its pool frees up, and the
 * tries go on after it ended.
 */
static void test_timeout0_beside_waiter(void)
{
        enum {
                TRIERS = 3
        };
        struct itest_sup s;
        forkpool_lease *held, *l;
        pthread_t waiter, triers[TRIERS];
        int waited = 1;
        char pools[1024];

        /* "main" of one connection, "other" of two. */
        snprintf(pools, sizeof(pools),
                 "pool_size = 1\nmax_overflow = 0\n[pool other]\nurl = %s\n%s",
                 itest_url("it_timeout0"), "pool_size = 2\nmax_overflow = 0\n");
        itest_sup_start(&s, "it_timeout0", pools, NULL);
        CHECK_OK(forkpool_open(s.socket, &shared_fp));
        CHECK_OK(forkpool_acquire(shared_fp, "main", 5000, &held));
        CHECK(pthread_create(&waiter, NULL, wait_main, &waited) == 0);
        int64_t end = itest_now_ms() + 10000;
        while (itest_pool(&s).waiting != 1 && itest_now_ms() < end)
                usleep(10000);
        CHECK_MSG(itest_pool(&s).waiting == 1, "the waiting acquire did not reach forkpoold");

        /* While it waits: the exhausted pool says so at once, the other one serves. */
        CHECK(forkpool_acquire(shared_fp, "main", 0, &l) == -ETIMEDOUT);
        for (int i = 0; i < 3; i++) {
                CHECK_OK(forkpool_acquire(shared_fp, "other", 0, &l));
                CHECK(atoi(itest_query(forkpool_lease_pg(l), "SELECT 40 + 2")) == 42);
                CHECK_OK(forkpool_release(l));
        }
        CHECK(itest_pool(&s).waiting == 1 && waited == 1);

        /* Tries from several threads, while the waiter is served and ends. */
        for (int i = 0; i < TRIERS; i++)
                CHECK(pthread_create(&triers[i], NULL, try_other, NULL) == 0);
        usleep(50000);
        CHECK_OK(forkpool_release(held));
        pthread_join(waiter, NULL);
        for (int i = 0; i < TRIERS; i++)
                pthread_join(triers[i], NULL);
        CHECK_MSG(waited == 0, "the waiting acquire: %d (%s)", waited, forkpool_strerror(waited));
        CHECK_MSG(tries_ok > 0 && tries_ok + tries_busy == TRIERS * 40, "%d ok, %d busy",
                  (int)tries_ok, (int)tries_busy);
        end = itest_now_ms() + 3000;
        while (itest_pool(&s).checked_out != 0 && itest_now_ms() < end)
                usleep(10000);
        CHECK(itest_pool(&s).checked_out == 0);
        forkpool_close(shared_fp);
        CHECK(itest_sup_stop(&s) == 0);
}

ITEST_MAIN({"acquire_query_release", test_acquire_query_release, 60}, {"threads", test_threads, 60},
           {"pool_state", test_pool_state, 60},
           {"threads_across_restart", test_threads_across_restart, 60},
           {"timeout0_beside_waiter", test_timeout0_beside_waiter, 90})
