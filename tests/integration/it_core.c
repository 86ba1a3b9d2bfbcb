/* SPDX-License-Identifier: MIT */
/*
 * it_core.c — the lease path's PostgreSQL-specific parts against a real
 * PostgreSQL (it_both.c runs the scenarios shared with MariaDB: the cap,
 * FIFO and timeouts, reset on return): lazy connects and the counters, the
 * session's application_name, one handle shared by threads, and
 * forkpool_pool_state().
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

ITEST_MAIN({"acquire_query_release", test_acquire_query_release, 60}, {"threads", test_threads, 60},
           {"pool_state", test_pool_state, 60})
