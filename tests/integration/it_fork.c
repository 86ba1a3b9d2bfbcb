/* SPDX-License-Identifier: MIT */
/*
 * it_fork.c — fork safety and death: a child never reuses its parent's lease;
 * a holder killed mid-transaction or mid-query has its lease reclaimed
 * within a second and nothing it left uncommitted becomes visible; a killed
 * supervisor leaves the current lease working, makes new acquires fail fast,
 * and a restarted one serves the same handle again.
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
        usleep(100000);
        struct fp_shm_pool st = itest_pool(&s);
        CHECK(st.checked_out == 0 && st.counters.reclaims == 0);
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

/* Waits until the pool has no lease out; returns the milliseconds it took. */
static int64_t wait_reclaimed(const struct itest_sup *s, int64_t start)
{
        while (itest_pool(s).checked_out != 0 && itest_now_ms() - start < 5000)
                usleep(2000);
        return itest_now_ms() - start;
}

static void holder_killed(const char *what)
{
        struct itest_sup s;
        PGconn *admin = itest_admin();
        int ready[2];

        itest_query(admin, "DROP TABLE IF EXISTS it_death; CREATE TABLE it_death (v int)");
        itest_sup_start(&s, "it_death", "pool_size = 1\nmax_overflow = 0\n", NULL);
        CHECK(pipe(ready) == 0);
        pid_t pid = fork();
        if (pid == 0) {
                forkpool *fp;
                forkpool_lease *lease;
                CHECK_OK(forkpool_open(s.socket, &fp));
                CHECK_OK(forkpool_acquire(fp, "main", -1, &lease));
                PGconn *c = forkpool_lease_pg(lease);
                itest_query(c, "BEGIN");
                itest_query(c, "INSERT INTO it_death VALUES (1)");
                if (strcmp(what, "query") == 0) {
                        CHECK(PQsendQuery(c, "SELECT pg_sleep(60)"));
                        CHECK(PQflush(c) == 0);
                }
                CHECK(write(ready[1], "x", 1) == 1);
                pause();
                _exit(0);
        }
        char x;
        CHECK(read(ready[0], &x, 1) == 1);
        usleep(100000);
        CHECK(itest_pool(&s).checked_out == 1);
        int64_t start = itest_now_ms();
        kill(pid, SIGKILL);
        int64_t took = wait_reclaimed(&s, start);
        CHECK_MSG(took < 1000, "reclaimed after %lld ms", (long long)took);
        waitpid(pid, NULL, 0);

        struct fp_shm_pool st = itest_pool(&s);
        CHECK(st.counters.reclaims == 1 && st.checked_out == 0);
        /* Its backend is gone (never reused) and nothing was committed. */
        CHECK(itest_wait_backends(admin, "it_death", 0, 5000) == 0);
        CHECK(itest_admin_long(admin, "SELECT count(*) FROM it_death") == 0);

        /* The pool serves the next worker with a new connection. */
        forkpool *fp;
        forkpool_lease *lease;
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        CHECK(strcmp(itest_query(forkpool_lease_pg(lease), "SELECT count(*) FROM it_death"), "0") ==
              0);
        CHECK_OK(forkpool_release(lease));
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
        PQfinish(admin);
}

static void test_holder_killed_mid_transaction(void)
{
        holder_killed("transaction");
}

static void test_holder_killed_mid_query(void)
{
        holder_killed("query");
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

static void test_supervisor_killed(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease, *other;
        PGconn *admin = itest_admin();

        itest_query(admin, "DROP TABLE IF EXISTS it_supkill; CREATE TABLE it_supkill (v int)");
        itest_sup_start(&s, "it_supkill", "pool_size = 2\nmax_overflow = 0\n", NULL);
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", -1, &lease));
        PGconn *c = forkpool_lease_pg(lease);
        itest_query(c, "BEGIN");
        itest_query(c, "INSERT INTO it_supkill VALUES (1)");

        itest_sup_kill(&s);
        /* The lease keeps working: the socket is ours. */
        itest_query(c, "INSERT INTO it_supkill VALUES (2)");
        itest_query(c, "COMMIT");
        CHECK(itest_admin_long(admin, "SELECT count(*) FROM it_supkill") == 2);

        /* New acquires fail fast and say why. */
        int64_t t0 = itest_now_ms();
        int r = forkpool_acquire(fp, "main", 5000, &other);
        CHECK_MSG(r == -ECONNREFUSED || r == -ECONNRESET, "acquire gave %d", r);
        CHECK(itest_now_ms() - t0 < 1000);
        CHECK_OK(forkpool_release(lease));

        /* A restarted supervisor replaces the stale socket and segment and serves again. */
        itest_sup_restart(&s);
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &other));
        itest_query(forkpool_lease_pg(other), "SELECT 1");
        CHECK_OK(forkpool_release(other));
        CHECK(itest_pool(&s).counters.acquires == 1);
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
        PQfinish(admin);
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
        usleep(100000);
        struct fp_shm_pool st = itest_pool(&s);
        CHECK_MSG(st.counters.reclaims == 0 && st.counters.connects == 1,
                  "reclaims %llu, connects %llu", (unsigned long long)st.counters.reclaims,
                  (unsigned long long)st.counters.connects);
        CHECK(st.counters.releases == 30);
        CHECK(itest_sup_stop(&s) == 0);
}

ITEST_MAIN({"fork_after_acquire", test_fork_after_acquire, 60}, {"raw_clone", test_raw_fork, 60},
           {"holder_killed_mid_transaction", test_holder_killed_mid_transaction, 60},
           {"holder_killed_mid_query", test_holder_killed_mid_query, 60},
           {"waiter_killed", test_waiter_killed, 60},
           {"supervisor_killed", test_supervisor_killed, 60},
           {"release_then_exit", test_release_then_exit, 60})
