/* SPDX-License-Identifier: MIT */
/*
 * it_fork.c — fork safety and death, the PostgreSQL-specific parts (it_both.c
 * runs the scenarios shared with MariaDB: holders and supervisors killed): a
 * child never reuses its parent's lease, even through a stray PQexec or a
 * raw clone; a waiter that dies leaves the queue; a release sent just before
 * exit is a release.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itest.h"

static void test_fork_after_acquire(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;

        itest_sup_start(&s, "it_fork", "pool_size = 2\nmax_overflow = 0\n", NULL);
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", -1, &lease));
        PGconn *c = forkpool_lease_pg(lease);
        CHECK(c);
        itest_query(c, "BEGIN");
        itest_query(c, "CREATE TEMP TABLE mine (v int)");
        int backend = PQbackendPID(c);

        pid_t pid = fork();
        if (pid == 0) {
                /* Every call on the parent's lease: -ECHILD, nothing touched. */
                CHECK(forkpool_release(lease) == -ECHILD);
                CHECK(forkpool_invalidate(lease) == -ECHILD);
                CHECK(forkpool_cancel(lease) == -ECHILD);
                CHECK(forkpool_lease_fd(lease) == -ECHILD);
                errno = 0;
                CHECK(forkpool_lease_pg(lease) == NULL && errno == ECHILD);
                /* Even misuse of the inherited PGconn cannot reach the parent's session. */
                PGresult *res = PQexec(c, "COMMIT");
                CHECK(PQresultStatus(res) != PGRES_COMMAND_OK);
                PQclear(res);
                /* The child gets its own lease through its own control connection. */
                forkpool_lease *mine;
                CHECK_OK(forkpool_acquire(fp, "main", 5000, &mine));
                PGconn *mc = forkpool_lease_pg(mine);
                CHECK(mc && PQbackendPID(mc) != backend);
                itest_query(mc, "SELECT 1");
                CHECK_OK(forkpool_release(mine));
                forkpool_close(fp);
                _exit(0);
        }
        int status = itest_wait_child(pid, 20000);
        CHECK_MSG(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "child failed (status %d)", status);

        /* The parent's lease and its transaction are untouched. */
        CHECK(PQstatus(c) == CONNECTION_OK);
        CHECK(PQtransactionStatus(c) == PQTRANS_INTRANS);
        CHECK(atoi(itest_query(c, "SELECT pg_backend_pid()")) == backend);
        itest_query(c, "INSERT INTO mine VALUES (1)");
        itest_query(c, "COMMIT");
        CHECK_OK(forkpool_release(lease));

        /* And the child's exit did not disturb the pool. */
        struct fp_shm_pool st;
        CHECK_SOON((st = itest_pool(&s)).checked_out == 0, 5000, "the release was not handled");
        CHECK(st.counters.reclaims == 0);
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

/* A child made with a raw clone (no pthread_atfork handlers) is caught by the pid check. */
static void test_raw_fork(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;

        itest_sup_start(&s, "it_rawfork", "pool_size = 2\nmax_overflow = 0\n", NULL);
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", -1, &lease));
        CHECK(forkpool_lease_pg(lease));
        pid_t pid = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
        if (pid == 0) {
                CHECK(forkpool_release(lease) == -ECHILD);
                forkpool_lease *mine;
                CHECK_OK(forkpool_acquire(fp, "main", 5000, &mine));
                CHECK(forkpool_lease_pg(mine));
                CHECK_OK(forkpool_release(mine));
                _exit(0);
        }
        int status = itest_wait_child(pid, 20000);
        CHECK(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
        itest_query(forkpool_lease_pg(lease), "SELECT 1");
        CHECK_OK(forkpool_release(lease));
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

/* A waiter that dies leaves the queue; the next one is served. */
static void test_waiter_killed(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *held, *next;

        itest_sup_start(&s, "it_waiter", "pool_size = 1\nmax_overflow = 0\n", NULL);
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", -1, &held));
        CHECK(forkpool_lease_pg(held)); /* its release then needs no reset */
        pid_t pid = fork();
        if (pid == 0) {
                forkpool *mine;
                forkpool_lease *lease;
                CHECK_OK(forkpool_open(s.socket, &mine));
                (void)forkpool_acquire(mine, "main", 30000, &lease);
                _exit(0);
        }
        int64_t end = itest_now_ms() + 5000;
        while (itest_pool(&s).waiting != 1 && itest_now_ms() < end)
                usleep(2000);
        CHECK(itest_pool(&s).waiting == 1);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        end = itest_now_ms() + 2000;
        while (itest_pool(&s).waiting != 0 && itest_now_ms() < end)
                usleep(2000);
        CHECK(itest_pool(&s).waiting == 0);
        CHECK_OK(forkpool_release(held));
        CHECK_OK(forkpool_acquire(fp, "main", 0, &next));
        CHECK_OK(forkpool_release(next));
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

/* A release sent just before the process exits is a release, not a lease to reclaim. */
static void test_release_then_exit(void)
{
        struct itest_sup s;
        itest_sup_start(&s, "it_relexit", "pool_size = 1\nmax_overflow = 0\n", NULL);
        for (int i = 0; i < 30; i++) {
                pid_t pid = fork();
                if (pid == 0) {
                        forkpool *fp;
                        forkpool_lease *lease;
                        CHECK_OK(forkpool_open(s.socket, &fp));
                        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
                        CHECK(forkpool_lease_pg(lease));
                        CHECK_OK(forkpool_release(lease));
                        _exit(0); /* no forkpool_close: the exit races the release */
                }
                CHECK(itest_wait_child(pid, 10000) == 0);
        }
        /* Every release reaches the supervisor although the process exited right after it. */
        struct fp_shm_pool st;
        CHECK_SOON((st = itest_pool(&s), st.counters.releases + st.counters.reclaims >= 30), 5000,
                   "releases %llu, reclaims %llu", (unsigned long long)st.counters.releases,
                   (unsigned long long)st.counters.reclaims);
        CHECK_MSG(st.counters.reclaims == 0 && st.counters.connects == 1,
                  "reclaims %llu, connects %llu", (unsigned long long)st.counters.reclaims,
                  (unsigned long long)st.counters.connects);
        CHECK(st.counters.releases == 30);
        CHECK(itest_sup_stop(&s) == 0);
}

ITEST_MAIN({"fork_after_acquire", test_fork_after_acquire, 60}, {"raw_clone", test_raw_fork, 60},
           {"waiter_killed", test_waiter_killed, 60},
           {"release_then_exit", test_release_then_exit, 60})
