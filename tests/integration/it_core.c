/* SPDX-License-Identifier: MIT */
/*
 * it_core.c — the basic lease path and the cap, with real processes against
 * a real PostgreSQL: acquire → adopt → query → release; many processes never
 * hold more than pool_size + max_overflow backends; FIFO order of waiters and
 * -ETIMEDOUT timing; reset on return.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

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

        usleep(100000);
        st = itest_pool(&s);
        CHECK(st.checked_out == 0 && st.checked_in == 1);
        CHECK(st.counters.acquires == 2 && st.counters.releases == 2 && st.counters.connects == 1);
        CHECK(itest_backends(admin, "it_basic") == 1);
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
        CHECK(itest_wait_backends(admin, "it_basic", 0, 5000) == 0);
        PQfinish(admin);
}

/* 20 processes on a 3+2 pool: never more than 5 backends, all work done. */
static void test_cap_across_processes(void)
{
        enum {
                PROCS = 20,
                ROUNDS = 15
        };
        struct itest_sup s;
        PGconn *admin = itest_admin();
        int *done = mmap(NULL, sizeof(int) * PROCS, PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        pid_t pids[PROCS];

        itest_sup_start(&s, "it_cap", "pool_size = 3\nmax_overflow = 2\npool_timeout = 30\n", NULL);
        for (int i = 0; i < PROCS; i++) {
                pids[i] = fork();
                CHECK(pids[i] >= 0);
                if (pids[i] == 0) {
                        forkpool *fp;
                        CHECK_OK(forkpool_open(s.socket, &fp));
                        for (int round = 0; round < ROUNDS; round++) {
                                forkpool_lease *lease;
                                CHECK_OK(forkpool_acquire(fp, "main", -1, &lease));
                                PGconn *c = forkpool_lease_pg(lease);
                                CHECK(c);
                                itest_query(c, "SELECT pg_sleep(0.01)");
                                CHECK_OK(forkpool_release(lease));
                                done[i]++;
                        }
                        forkpool_close(fp);
                        _exit(0);
                }
        }

        int max_seen = 0, max_out = 0;
        for (;;) {
                int n = itest_backends(admin, "it_cap");
                struct fp_shm_pool st = itest_pool(&s);
                max_seen = n > max_seen ? n : max_seen;
                max_out = st.checked_out > max_out ? st.checked_out : max_out;
                int total = 0;
                for (int i = 0; i < PROCS; i++)
                        total += done[i];
                if (total == PROCS * ROUNDS)
                        break;
                usleep(5000);
        }
        for (int i = 0; i < PROCS; i++) {
                int status = itest_wait_child(pids[i], 30000);
                CHECK(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
        CHECK_MSG(max_seen <= 5, "saw %d backends for a 3+2 pool", max_seen);
        CHECK_MSG(max_seen >= 3, "saw only %d backends: no concurrency?", max_seen);
        CHECK(max_out <= 5);
        usleep(100000);
        struct fp_shm_pool st = itest_pool(&s);
        CHECK(st.checked_out == 0);
        CHECK(st.counters.acquires == PROCS * ROUNDS);
        /* Only pool_size connections stay: overflow ones closed when the queue was full. */
        CHECK_MSG(st.checked_in == 3, "checked_in %d", st.checked_in);
        CHECK(itest_wait_backends(admin, "it_cap", 3, 5000) == 3);
        CHECK(itest_sup_stop(&s) == 0);
        PQfinish(admin);
}

/* A waiter gives up at its own timeout, with SQLAlchemy's message. */
static void test_timeout(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *held, *other;

        itest_sup_start(&s, "it_timeout", "pool_size = 1\nmax_overflow = 0\npool_timeout = 0.4\n",
                        NULL);
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", -1, &held));
        /* Adopted, so that its release reports an idle session and needs no reset. */
        CHECK(forkpool_lease_pg(held));

        int64_t t0 = itest_now_ms();
        CHECK(forkpool_acquire(fp, "main", 300, &other) == -ETIMEDOUT);
        int64_t waited = itest_now_ms() - t0;
        CHECK_MSG(waited >= 250 && waited < 2000, "waited %lld ms for a 300 ms timeout",
                  (long long)waited);
        CHECK(strstr(forkpool_last_error(), "QueuePool limit of size 1 overflow 0 reached"));

        /* The pool's own pool_timeout (0.4 s) applies when the caller passes -1. */
        t0 = itest_now_ms();
        CHECK(forkpool_acquire(fp, "main", -1, &other) == -ETIMEDOUT);
        waited = itest_now_ms() - t0;
        CHECK_MSG(waited >= 350 && waited < 2000, "waited %lld ms for 0.4 s", (long long)waited);

        /* Timeout 0: try once, no wait. */
        t0 = itest_now_ms();
        CHECK(forkpool_acquire(fp, "main", 0, &other) == -ETIMEDOUT);
        CHECK(itest_now_ms() - t0 < 200);

        CHECK(itest_pool(&s).counters.timeouts == 3);
        CHECK_OK(forkpool_release(held));
        /* Now it is free: timeout 0 succeeds. */
        CHECK_OK(forkpool_acquire(fp, "main", 0, &other));
        CHECK_OK(forkpool_release(other));
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

/* Waiters are served first come, first served. */
static void test_fifo(void)
{
        enum {
                WAITERS = 4
        };
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *held;
        int order[2];
        pid_t pids[WAITERS];

        itest_sup_start(&s, "it_fifo", "pool_size = 1\nmax_overflow = 0\n", NULL);
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", -1, &held));
        CHECK(pipe(order) == 0);

        for (int i = 0; i < WAITERS; i++) {
                pids[i] = fork();
                if (pids[i] == 0) {
                        forkpool *mine;
                        forkpool_lease *lease;
                        CHECK_OK(forkpool_open(s.socket, &mine));
                        CHECK_OK(forkpool_acquire(mine, "main", 20000, &lease));
                        char c = (char)('0' + i);
                        CHECK(write(order[1], &c, 1) == 1);
                        usleep(50000);
                        CHECK_OK(forkpool_release(lease));
                        _exit(0);
                }
                /* Let each one queue before the next starts. */
                int64_t end = itest_now_ms() + 5000;
                while (itest_pool(&s).waiting < i + 1 && itest_now_ms() < end)
                        usleep(2000);
                CHECK(itest_pool(&s).waiting == i + 1);
        }
        CHECK_OK(forkpool_release(held));
        char got[WAITERS + 1] = {0};
        for (int i = 0; i < WAITERS; i++)
                CHECK(read(order[0], &got[i], 1) == 1);
        CHECK_MSG(strcmp(got, "0123") == 0, "served in order %s", got);
        for (int i = 0; i < WAITERS; i++)
                CHECK(itest_wait_child(pids[i], 10000) == 0);
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

/* An open transaction's row never becomes visible; the next holder starts clean. */
static void test_reset_on_return(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;
        PGconn *admin = itest_admin();

        itest_query(admin, "DROP TABLE IF EXISTS it_reset; CREATE TABLE it_reset (v int)");
        itest_sup_start(&s, "it_reset", "pool_size = 1\nmax_overflow = 0\n", NULL);
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", -1, &lease));
        PGconn *c = forkpool_lease_pg(lease);
        itest_query(c, "BEGIN");
        itest_query(c, "INSERT INTO it_reset VALUES (1)");
        CHECK(PQtransactionStatus(c) == PQTRANS_INTRANS);
        CHECK_OK(forkpool_release(lease));

        CHECK_OK(forkpool_acquire(fp, "main", -1, &lease));
        c = forkpool_lease_pg(lease);
        CHECK(PQtransactionStatus(c) == PQTRANS_IDLE);
        CHECK(strcmp(itest_query(c, "SELECT count(*) FROM it_reset"), "0") == 0);
        CHECK(strcmp(itest_query(c, "SELECT now() = statement_timestamp()"), "t") == 0);
        CHECK_OK(forkpool_release(lease));
        CHECK(itest_admin_long(admin, "SELECT count(*) FROM it_reset") == 0);
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
        PQfinish(admin);
}

/* forkpool_pool_state(): the load straight from the segment, for 503-before-queueing. */
static void test_pool_state(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *held;
        forkpool_pool_stats st;

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
        CHECK_OK(forkpool_release(held));
        CHECK(itest_wait_child(pid, 10000) == 0);
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

static forkpool *shared_fp;

static void *thread_loop(void *arg)
{
        (void)arg;
        for (int round = 0; round < 20; round++) {
                forkpool_lease *lease;
                CHECK_OK(forkpool_acquire(shared_fp, "main", 10000, &lease));
                PGconn *c = forkpool_lease_pg(lease);
                CHECK(c);
                PGresult *res = PQexec(c, "SELECT pg_backend_pid()");
                CHECK(PQresultStatus(res) == PGRES_TUPLES_OK &&
                      atoi(PQgetvalue(res, 0, 0)) == PQbackendPID(c));
                PQclear(res);
                CHECK_OK(forkpool_release(lease));
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
        usleep(100000);
        struct fp_shm_pool st = itest_pool(&s);
        CHECK(st.counters.acquires == THREADS * 20 && st.checked_out == 0);
        forkpool_close(shared_fp);
        CHECK(itest_sup_stop(&s) == 0);
}

ITEST_MAIN({"acquire_query_release", test_acquire_query_release, 60},
           {"cap_across_processes", test_cap_across_processes, 120}, {"timeout", test_timeout, 60},
           {"fifo", test_fifo, 60}, {"reset_on_return", test_reset_on_return, 60},
           {"threads", test_threads, 60}, {"pool_state", test_pool_state, 60})
