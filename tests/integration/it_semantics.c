/* SPDX-License-Identifier: MIT */
/*
 * it_semantics.c — SQLAlchemy's pool behaviours held across processes, against
 * a real PostgreSQL: recycle, pre-ping and disconnect invalidation (backends
 * killed under the pool), LIFO and FIFO order, soft invalidation, reset modes
 * discard and auto, the pool classes, detach, on_connect hooks, leak control,
 * connect_rate, per-pool allow lists, echo_pool and the event ring.
 */
#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itest.h"

static struct itest_sup sup;
static forkpool *fp;

static void start(const char *app, const char *lines)
{
        itest_sup_start(&sup, app, lines, NULL);
        CHECK_OK(forkpool_open(sup.socket, &fp));
}

static void stop(void)
{
        forkpool_close(fp);
        CHECK(itest_sup_stop(&sup) == 0);
}

/* Leases a connection and returns its backend pid. */
static PGconn *lease(forkpool_lease **ret)
{
        CHECK_OK(forkpool_acquire(fp, "main", 5000, ret));
        PGconn *c = forkpool_lease_pg(*ret);
        CHECK_MSG(c, "adoption failed: %s", strerror(errno));
        return c;
}

static int lease_release(void)
{
        forkpool_lease *l;
        PGconn *c = lease(&l);
        int pid = atoi(itest_query(c, "SELECT pg_backend_pid()"));
        CHECK_OK(forkpool_release(l));
        return pid;
}

static void wait_idle(void)
{
        int64_t end = itest_now_ms() + 3000;
        while (itest_pool(&sup).checked_out != 0 && itest_now_ms() < end)
                usleep(2000);
        CHECK(itest_pool(&sup).checked_out == 0);
}

static void test_recycle(void)
{
        start("it_recycle", "pool_size = 1\nmax_overflow = 0\npool_recycle = 0.5\n");
        int a = lease_release();
        CHECK(lease_release() == a); /* young enough */
        usleep(700000);
        int b = lease_release();
        CHECK_MSG(b != a, "a connection older than pool_recycle was reused");
        CHECK(itest_pool(&sup).counters.recycles == 1);
        stop();
}

static void test_lifo_and_fifo(void)
{
        int order[2][3];
        for (int lifo = 0; lifo < 2; lifo++) {
                forkpool_lease *l[3];
                start(lifo ? "it_lifo" : "it_fifo_order",
                      lifo ? "pool_size = 3\nmax_overflow = 0\npool_use_lifo = true\n"
                           : "pool_size = 3\nmax_overflow = 0\n");
                for (int i = 0; i < 3; i++)
                        order[lifo][i] = PQbackendPID(lease(&l[i]));
                for (int i = 0; i < 3; i++)
                        CHECK_OK(forkpool_release(l[i]));
                wait_idle();
                int next = lease_release();
                /* FIFO hands out the one returned first, LIFO the one returned last. */
                CHECK_MSG(next == order[lifo][lifo ? 2 : 0], "%s gave backend %d",
                          lifo ? "LIFO" : "FIFO", next);
                stop();
        }
}

/* Kills the pool's idle backends from outside, as a database restart would. */
static void kill_backends(PGconn *admin, const char *app)
{
        char sql[256];
        snprintf(sql, sizeof(sql),
                 "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                 "WHERE application_name = '%s'",
                 app);
        itest_admin_long(admin, sql);
        CHECK(itest_wait_backends(admin, app, 0, 5000) == 0);
}

static void test_pre_ping_hides_dead_connections(void)
{
        PGconn *admin = itest_admin();
        forkpool_lease *l[3];
        start("it_preping", "pool_size = 3\nmax_overflow = 0\npool_pre_ping = true\n");
        for (int i = 0; i < 3; i++)
                lease(&l[i]);
        for (int i = 0; i < 3; i++)
                CHECK_OK(forkpool_release(l[i]));
        wait_idle();
        kill_backends(admin, "it_preping");

        /* With pre_ping, no caller is handed a dead connection. */
        for (int round = 0; round < 6; round++) {
                forkpool_lease *x;
                PGconn *c = lease(&x);
                PGresult *res = PQexec(c, "SELECT 1");
                CHECK_MSG(PQresultStatus(res) == PGRES_TUPLES_OK, "round %d: %s", round,
                          PQresultErrorMessage(res));
                PQclear(res);
                CHECK_OK(forkpool_release(x));
        }
        struct fp_shm_pool st = itest_pool(&sup);
        CHECK(st.counters.ping_failures == 1 && st.counters.pool_invalidations == 1);
        stop();
        PQfinish(admin);
}

static void test_disconnect_invalidates_pool(void)
{
        PGconn *admin = itest_admin();
        forkpool_lease *l[3];
        start("it_disconnect", "pool_size = 3\nmax_overflow = 0\n");
        for (int i = 0; i < 3; i++)
                lease(&l[i]);
        for (int i = 0; i < 3; i++)
                CHECK_OK(forkpool_release(l[i]));
        wait_idle();
        kill_backends(admin, "it_disconnect");

        /* Without pre_ping, one caller meets a dead connection, once. */
        int dead = 0;
        for (int round = 0; round < 6; round++) {
                forkpool_lease *x;
                PGconn *c = lease(&x);
                PGresult *res = PQexec(c, "SELECT 1");
                dead += PQresultStatus(res) != PGRES_TUPLES_OK;
                PQclear(res);
                CHECK_OK(forkpool_release(x));
                wait_idle();
        }
        CHECK_MSG(dead == 1, "%d callers got a dead connection", dead);
        CHECK(itest_pool(&sup).counters.pool_invalidations == 1);
        stop();
        PQfinish(admin);
}

static void test_soft_invalidate(void)
{
        forkpool_lease *l;
        start("it_soft", "pool_size = 1\nmax_overflow = 0\n");
        PGconn *c = lease(&l);
        int a = PQbackendPID(c);
        CHECK_OK(forkpool_soft_invalidate(l));
        CHECK(strcmp(itest_query(c, "SELECT 1"), "1") == 0); /* still usable */
        CHECK_OK(forkpool_release(l));
        wait_idle();
        CHECK(lease_release() != a);
        CHECK(itest_pool(&sup).counters.soft_invalidations == 1);
        stop();
}

static void dirty_the_session(PGconn *c)
{
        itest_query(c, "SET work_mem = '7MB'");
        itest_query(c, "PREPARE dirty_stmt AS SELECT 1");
        itest_query(c, "CREATE TEMP TABLE dirty_tmp (v int)");
        itest_query(c, "LISTEN dirty_channel");
}

static void check_clean(PGconn *c)
{
        CHECK(strcmp(itest_query(c, "SHOW work_mem"), "4MB") == 0);
        CHECK(strcmp(itest_query(c, "SELECT count(*) FROM pg_prepared_statements"), "0") == 0);
        CHECK(strcmp(itest_query(c, "SELECT count(*) FROM pg_listening_channels()"), "0") == 0);
        CHECK(strcmp(itest_query(c, "SELECT to_regclass('pg_temp.dirty_tmp') IS NULL"), "t") == 0);
}

static void test_reset_discard(void)
{
        forkpool_lease *l;
        start("it_discard", "pool_size = 1\nmax_overflow = 0\nreset_on_return = discard\n");
        PGconn *c = lease(&l);
        int a = PQbackendPID(c);
        itest_query(c, "BEGIN");
        dirty_the_session(c);
        CHECK_OK(forkpool_release(l));
        c = lease(&l);
        CHECK(PQbackendPID(c) == a);
        check_clean(c);
        CHECK_OK(forkpool_release(l));
        stop();
}

/* The last statement the backend ran, as the server shows it. */
static char *last_query(PGconn *admin, int pid)
{
        static char buf[256];
        char sql[160];
        snprintf(sql, sizeof(sql), "SELECT query FROM pg_stat_activity WHERE pid = %d", pid);
        PGresult *res = PQexec(admin, sql);
        CHECK(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1);
        snprintf(buf, sizeof(buf), "%s", PQgetvalue(res, 0, 0));
        PQclear(res);
        return buf;
}

static void test_reset_auto(void)
{
        PGconn *admin = itest_admin();
        forkpool_lease *l;
        start("it_auto", "pool_size = 1\nmax_overflow = 0\nreset_on_return = auto\n");

        /* A session that only read: nothing to reset, nothing run. */
        PGconn *c = lease(&l);
        int a = PQbackendPID(c);
        itest_query(c, "SELECT 'untouched'");
        CHECK_OK(forkpool_release(l));
        wait_idle();
        CHECK_MSG(strcmp(last_query(admin, a), "SELECT 'untouched'") == 0, "ran: %s",
                  last_query(admin, a));

        /* An open transaction only: a rollback is enough. */
        c = lease(&l);
        itest_query(c, "BEGIN");
        itest_query(c, "SELECT 'in a transaction'");
        CHECK_OK(forkpool_release(l));
        wait_idle();
        CHECK(strcmp(last_query(admin, a), "ROLLBACK") == 0);

        /* A changed session: discarded. */
        c = lease(&l);
        dirty_the_session(c);
        CHECK_OK(forkpool_release(l));
        wait_idle();
        CHECK(strcmp(last_query(admin, a), "DISCARD ALL") == 0);
        c = lease(&l);
        CHECK(PQbackendPID(c) == a);
        check_clean(c);
        CHECK_OK(forkpool_release(l));

        /* A protocol-level prepared statement counts too. */
        c = lease(&l);
        PGresult *res = PQprepare(c, "proto_stmt", "SELECT 1", 0, NULL);
        CHECK(PQresultStatus(res) == PGRES_COMMAND_OK);
        PQclear(res);
        CHECK_OK(forkpool_release(l));
        c = lease(&l);
        CHECK(strcmp(itest_query(c, "SELECT count(*) FROM pg_prepared_statements"), "0") == 0);
        CHECK_OK(forkpool_release(l));
        stop();
        PQfinish(admin);
}

static void test_null_pool(void)
{
        PGconn *admin = itest_admin();
        start("it_nullpool", "poolclass = null\n");
        int a = lease_release();
        CHECK(itest_wait_backends(admin, "it_nullpool", 0, 5000) == 0); /* closed on release */
        CHECK(lease_release() != a);
        CHECK(itest_pool(&sup).counters.connects == 2);
        stop();
        PQfinish(admin);
}

static void test_static_and_assertion_pools(void)
{
        forkpool_lease *l, *other;
        char out[4096];

        start("it_static", "poolclass = static\npool_timeout = 0.3\n");
        lease(&l);
        CHECK(forkpool_acquire(fp, "main", -1, &other) == -ETIMEDOUT);
        CHECK_OK(forkpool_release(l));
        CHECK(itest_sh(out, sizeof(out), "%s --socket %s status", FP_FORKPOOLCTL_PATH,
                       sup.socket) == 0);
        CHECK_MSG(strstr(out, "StaticPool"), "status: %s", out);
        stop();

        start("it_assertion", "poolclass = assertion\npool_timeout = 30\n");
        lease(&l);
        int64_t t0 = itest_now_ms();
        pid_t pid = fork();
        if (pid == 0) {
                forkpool *mine;
                forkpool_lease *x;
                CHECK_OK(forkpool_open(sup.socket, &mine));
                int r = forkpool_acquire(mine, "main", -1, &x);
                CHECK_MSG(r == -EBUSY, "second checkout: %d", r);
                char want[64];
                snprintf(want, sizeof(want), "checked out by pid %d", (int)getppid());
                CHECK_MSG(strstr(forkpool_last_error(), want), "text: %s", forkpool_last_error());
                _exit(0);
        }
        CHECK(itest_wait_child(pid, 10000) == 0);
        CHECK(itest_now_ms() - t0 < 3000); /* at once, not after pool_timeout */
        CHECK_OK(forkpool_release(l));
        stop();
}

static void test_process_pool(void)
{
        PGconn *admin = itest_admin();
        start("it_procpool", "poolclass = process\npool_size = 2\npool_timeout = 0.5\n");

        /* After the first, acquire and release cost no round trip to the supervisor. */
        forkpool_lease *first = NULL;
        int backend = 0;
        for (int i = 0; i < 20; i++) {
                forkpool_lease *l;
                PGconn *c = lease(&l);
                if (!first) {
                        first = l;
                        backend = PQbackendPID(c);
                }
                CHECK(l == first && PQbackendPID(c) == backend);
                itest_query(c, "BEGIN");
                itest_query(c, "SELECT 1");
                CHECK_OK(forkpool_release(l)); /* rolls back locally */
                CHECK(PQtransactionStatus(c) == PQTRANS_IDLE);
        }
        struct fp_shm_pool st = itest_pool(&sup);
        CHECK_MSG(st.counters.acquires == 1 && st.checked_out == 1, "acquires %llu",
                  (unsigned long long)st.counters.acquires);

        /* At most pool_size processes hold one: a third process waits, then times out. */
        int ready[2];
        CHECK(pipe(ready) == 0);
        pid_t second = fork();
        if (second == 0) {
                forkpool *mine;
                forkpool_lease *l;
                CHECK_OK(forkpool_open(sup.socket, &mine));
                CHECK_OK(forkpool_acquire(mine, "main", 2000, &l));
                CHECK_OK(forkpool_release(l));
                CHECK(write(ready[1], "x", 1) == 1);
                pause();
                _exit(0);
        }
        char x;
        CHECK(read(ready[0], &x, 1) == 1);
        pid_t third = fork();
        if (third == 0) {
                forkpool *mine;
                forkpool_lease *l;
                CHECK_OK(forkpool_open(sup.socket, &mine));
                CHECK(forkpool_acquire(mine, "main", 300, &l) == -ETIMEDOUT);
                _exit(0);
        }
        CHECK(itest_wait_child(third, 10000) == 0);
        /* When a holder exits, its connection is taken back. */
        kill(second, SIGKILL);
        waitpid(second, NULL, 0);
        int64_t end = itest_now_ms() + 2000;
        while (itest_pool(&sup).checked_out != 1 && itest_now_ms() < end)
                usleep(5000);
        CHECK(itest_pool(&sup).checked_out == 1);
        stop();
        PQfinish(admin);
}

static void test_detach(void)
{
        PGconn *admin = itest_admin();
        forkpool_lease *l;
        start("it_detach", "pool_size = 1\nmax_overflow = 0\n");
        PGconn *c = lease(&l);
        int a = PQbackendPID(c);
        CHECK_OK(forkpool_detach(l));
        usleep(100000);
        struct fp_shm_pool st = itest_pool(&sup);
        CHECK(st.counters.detaches == 1 && st.checked_out == 0);
        /* Ours now: it works, and the pool serves others with another connection. */
        CHECK(atoi(itest_query(c, "SELECT pg_backend_pid()")) == a);
        CHECK(lease_release() != a);
        CHECK(atoi(itest_query(c, "SELECT pg_backend_pid()")) == a);
        PQfinish(c); /* ends the session normally */
        char sql[128];
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM pg_stat_activity WHERE pid = %d", a);
        int64_t end = itest_now_ms() + 3000;
        while (itest_admin_long(admin, sql) != 0 && itest_now_ms() < end)
                usleep(10000);
        CHECK(itest_admin_long(admin, sql) == 0);
        stop();
        PQfinish(admin);
}

static void test_on_connect(void)
{
        forkpool_lease *l;
        start("it_hook", "on_connect = SET search_path TO pg_catalog\n");
        PGconn *c = lease(&l);
        CHECK(strcmp(itest_query(c, "SHOW search_path"), "pg_catalog") == 0);
        CHECK_OK(forkpool_release(l));
        stop();

        start("it_hook_bad", "on_connect = SELECT no_such_function()\n");
        int r = forkpool_acquire(fp, "main", 5000, &l);
        CHECK_MSG(r == -ECONNABORTED, "acquire: %d", r);
        CHECK_MSG(strstr(forkpool_last_error(), "on_connect failed") &&
                          strstr(forkpool_last_error(), "no_such_function"),
                  "text: %s", forkpool_last_error());
        struct fp_shm_pool st = itest_pool(&sup);
        CHECK(st.live == 0 && st.checked_out == 0);
        stop();
}

/* The lease's libpq and the server agree on a reported setting. */
static void check_param_agrees(PGconn *c, const char *name, const char *want)
{
        char sql[128];
        snprintf(sql, sizeof(sql), "SHOW %s", name);
        char *shown = itest_query(c, sql);
        const char *seen = PQparameterStatus(c, name);
        CHECK_MSG(strcmp(shown, want) == 0, "SHOW %s: %s, want %s", name, shown, want);
        CHECK_MSG(seen && strcmp(seen, want) == 0, "PQparameterStatus(%s): %s, want %s", name,
                  seen ? seen : "(null)", want);
}

/*
 * A hook's SET of a reported setting reaches the lease's libpq, and so do a
 * reset's DISCARD ALL and a pre-ping: PQparameterStatus() says what SHOW says.
 */
static void test_on_connect_params(void)
{
        forkpool_lease *l;
        start("it_hookp", "pool_size = 1\nmax_overflow = 0\npool_pre_ping = true\n"
                          "reset_on_return = discard\n"
                          "on_connect = SET application_name = 'hooked'\n");
        PGconn *c = lease(&l);
        check_param_agrees(c, "application_name", "hooked");
        itest_query(c, "SET application_name = 'worker'");
        CHECK_OK(forkpool_release(l));
        /* DISCARD ALL took the session back to the name it connected with. */
        c = lease(&l);
        check_param_agrees(c, "application_name", "it_hookp");
        CHECK_OK(forkpool_release(l));
        stop();
}

static void test_leak_timeout_and_revoke(void)
{
        forkpool_lease *l;
        char log[16384];
        start("it_leak", "leak_timeout = 0.3\nmax_lease_time = 1\n");
        CHECK_OK(forkpool_acquire_labeled(fp, "main", 5000, "GET /slow", &l));
        PGconn *c = forkpool_lease_pg(l);
        usleep(600000);
        itest_sh(log, sizeof(log), "cat %s", sup.log);
        char pid[32];
        snprintf(pid, sizeof(pid), "pid %d", getpid());
        CHECK_MSG(strstr(log, "leak") && strstr(log, "GET /slow") && strstr(log, pid), "log:\n%s",
                  log);
        CHECK(strcmp(itest_query(c, "SELECT 1"), "1") == 0); /* only warned so far */
        usleep(800000);
        /* Revoked: the next query fails cleanly, the slot is free and counted. */
        PGresult *res = PQexec(c, "SELECT 1");
        CHECK(PQresultStatus(res) != PGRES_TUPLES_OK);
        PQclear(res);
        struct fp_shm_pool st = itest_pool(&sup);
        CHECK(st.counters.leaks == 1 && st.counters.revokes == 1 && st.checked_out == 0);
        CHECK_OK(forkpool_release(l));
        stop();
}

static void test_connect_rate(void)
{
        forkpool_lease *l[4];
        start("it_rate", "pool_size = 4\nconnect_rate = 4\n");
        int64_t t0 = itest_now_ms();
        for (int i = 0; i < 4; i++)
                lease(&l[i]);
        int64_t took = itest_now_ms() - t0;
        /* 4 connects at 4 per second: the last starts at least 0.75 s after the first. */
        CHECK_MSG(took >= 650 && took < 5000, "4 connects took %lld ms", (long long)took);
        for (int i = 0; i < 4; i++)
                CHECK_OK(forkpool_release(l[i]));
        stop();
}

static int try_as_nobody(const char *socket_path, const char *pool)
{
        pid_t pid = fork();
        if (pid == 0) {
                CHECK(setgroups(0, NULL) == 0 && setgid(0) == 0 && setuid(65534) == 0);
                forkpool *mine;
                forkpool_lease *l;
                CHECK_OK(forkpool_open(socket_path, &mine));
                int r = forkpool_acquire(mine, pool, 3000, &l);
                _exit(r == 0 ? 0 : r == -EACCES ? 13 : 1);
        }
        int status = itest_wait_child(pid, 10000);
        return status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_pool_allow_lists(void)
{
        char text[2048];
        /* Everyone may connect; pool "main" is root's only. */
        itest_sup_start(&sup, "it_poolacl", "allow_users = root\n", "allow_users = root, nobody\n");
        CHECK(try_as_nobody(sup.socket, "main") == 13);
        CHECK(itest_sup_stop(&sup) == 0);
        snprintf(text, sizeof(text), "allow_users = nobody\n");
        itest_sup_start(&sup, "it_poolacl2", text, "allow_users = root, nobody\n");
        CHECK(try_as_nobody(sup.socket, "main") == 0);
        CHECK(itest_sup_stop(&sup) == 0);
}

static void test_echo_and_events(void)
{
        char log[16384];
        start("it_echo", "echo_pool = debug\n");
        lease_release();
        usleep(100000);
        itest_sh(log, sizeof(log), "cat %s", sup.log);
        CHECK_MSG(strstr(log, "pool main: connect") && strstr(log, "pool main: checkout") &&
                          strstr(log, "pool main: checkin"),
                  "log:\n%s", log);

        /* The same events are in the segment's ring, in order. */
        struct fp_segment seg;
        CHECK(fp_segment_find(&seg, sup.socket) == 0);
        uint64_t last = fp_segment_event_last(&seg);
        char seen[256] = "";
        for (uint64_t i = 1; i <= last; i++) {
                struct fp_shm_event ev;
                CHECK(fp_segment_event_read(&seg, i, &ev) == 0);
                strncat(seen, fp_event_type_name(ev.type), sizeof(seen) - strlen(seen) - 2);
                strcat(seen, " ");
        }
        fp_segment_close(&seg);
        CHECK_MSG(strcmp(seen, "first_connect connect checkout reset checkin ") == 0, "events: %s",
                  seen);
        stop();
}

/* Several pools in one supervisor: separate accounting, separate allow lists. */
static void test_multiple_pools(void)
{
        char lines[1024], out[8192];
        forkpool_lease *a, *b;
        PGconn *admin = itest_admin();

        snprintf(lines, sizeof(lines),
                 "pool_size = 1\nmax_overflow = 0\n\n[pool reports]\nurl = %s\n"
                 "pool_size = 2\nmax_overflow = 0\npool_use_lifo = true\n",
                 itest_url("it_multi_reports"));
        start("it_multi_main", lines);
        CHECK_OK(forkpool_acquire(fp, "main", 2000, &a));
        CHECK_OK(forkpool_acquire(fp, "reports", 2000, &b));
        CHECK(strcmp(itest_query(forkpool_lease_pg(a), "SHOW application_name"), "it_multi_main") ==
              0);
        CHECK(strcmp(itest_query(forkpool_lease_pg(b), "SHOW application_name"),
                     "it_multi_reports") == 0);
        /* main is full; reports is not. */
        forkpool_lease *c;
        CHECK(forkpool_acquire(fp, "main", 0, &c) == -ETIMEDOUT);
        CHECK_OK(forkpool_acquire(fp, "reports", 0, &c));
        CHECK_OK(forkpool_release(c));
        CHECK_OK(forkpool_release(a));
        CHECK_OK(forkpool_release(b));
        /* A release is not answered: its reset may still run when status is read. */
        int64_t end = itest_now_ms() + 5000;
        for (;;) {
                CHECK(itest_sh(out, sizeof(out), "%s --socket %s status", FP_FORKPOOLCTL_PATH,
                               sup.socket) == 0);
                if (strstr(out, "Pool size: 2  Connections in pool: 2") || itest_now_ms() >= end)
                        break;
                usleep(20000);
        }
        CHECK_MSG(strstr(out, "pool main") && strstr(out, "pool reports") &&
                          strstr(out, "Pool size: 2  Connections in pool: 2"),
                  "status:\n%s", out);
        stop();
        PQfinish(admin);
}

ITEST_MAIN({"recycle", test_recycle, 30}, {"lifo_and_fifo", test_lifo_and_fifo, 30},
           {"pre_ping_hides_dead_connections", test_pre_ping_hides_dead_connections, 30},
           {"disconnect_invalidates_pool", test_disconnect_invalidates_pool, 30},
           {"soft_invalidate", test_soft_invalidate, 30}, {"reset_discard", test_reset_discard, 30},
           {"reset_auto", test_reset_auto, 30}, {"null_pool", test_null_pool, 30},
           {"static_and_assertion_pools", test_static_and_assertion_pools, 30},
           {"process_pool", test_process_pool, 30}, {"detach", test_detach, 30},
           {"on_connect", test_on_connect, 30}, {"on_connect_params", test_on_connect_params, 30},
           {"leak_timeout_and_revoke", test_leak_timeout_and_revoke, 30},
           {"connect_rate", test_connect_rate, 30}, {"pool_allow_lists", test_pool_allow_lists, 30},
           {"echo_and_events", test_echo_and_events, 30},
           {"multiple_pools", test_multiple_pools, 30})
