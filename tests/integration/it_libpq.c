/* SPDX-License-Identifier: MIT */
/*
 * it_libpq.c — an adopted PGconn is a real libpq connection: PQexec,
 * PQexecParams (binary), prepared statements, pipeline mode, COPY in and out,
 * LISTEN/NOTIFY, cancel through the real server; and its ParameterStatus
 * values agree with the server across leases.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "itest.h"

static struct itest_sup sup;
static forkpool *fp;

static PGconn *lease_pg(forkpool_lease **ret)
{
        CHECK_OK(forkpool_acquire(fp, "main", 5000, ret));
        PGconn *c = forkpool_lease_pg(*ret);
        CHECK_MSG(c, "adoption failed: %s", strerror(errno));
        return c;
}

static void start(const char *app, const char *lines)
{
        itest_sup_start(&sup, app, lines ? lines : "pool_size = 1\nmax_overflow = 0\n", NULL);
        CHECK_OK(forkpool_open(sup.socket, &fp));
}

static void stop(void)
{
        forkpool_close(fp);
        CHECK(itest_sup_stop(&sup) == 0);
}

static void test_exec_params_prepared(void)
{
        forkpool_lease *lease;
        start("it_features", NULL);
        PGconn *c = lease_pg(&lease);

        const char *values[1] = {"21"};
        PGresult *res = PQexecParams(c, "SELECT $1::int4 * 2", 1, NULL, values, NULL, NULL, 1);
        CHECK(PQresultStatus(res) == PGRES_TUPLES_OK && PQgetlength(res, 0, 0) == 4);
        const unsigned char *b = (const unsigned char *)PQgetvalue(res, 0, 0);
        CHECK(((uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]) == 42);
        PQclear(res);

        res = PQprepare(c, "twice", "SELECT $1::int * 2", 1, NULL);
        CHECK(PQresultStatus(res) == PGRES_COMMAND_OK);
        PQclear(res);
        for (int i = 0; i < 3; i++) {
                res = PQexecPrepared(c, "twice", 1, values, NULL, NULL, 0);
                CHECK(PQresultStatus(res) == PGRES_TUPLES_OK &&
                      strcmp(PQgetvalue(res, 0, 0), "42") == 0);
                PQclear(res);
        }

        /* Escaping follows the mirrored client_encoding and standard_conforming_strings. */
        char *lit = PQescapeLiteral(c, "it's", 4);
        CHECK(lit && strcmp(lit, "'it''s'") == 0);
        PQfreemem(lit);
        CHECK(strcmp(PQparameterStatus(c, "client_encoding"),
                     itest_query(c, "SHOW client_encoding")) == 0);
        CHECK_OK(forkpool_release(lease));
        stop();
}

static void test_pipeline(void)
{
        forkpool_lease *lease;
        start("it_pipeline", NULL);
        PGconn *c = lease_pg(&lease);

        CHECK(PQenterPipelineMode(c));
        for (int i = 0; i < 5; i++) {
                char v[8];
                const char *values[1] = {v};
                snprintf(v, sizeof(v), "%d", i);
                CHECK(PQsendQueryParams(c, "SELECT $1::int + 100", 1, NULL, values, NULL, NULL, 0));
        }
        CHECK(PQpipelineSync(c));
        for (int i = 0; i < 5; i++) {
                PGresult *res = PQgetResult(c);
                CHECK(PQresultStatus(res) == PGRES_TUPLES_OK);
                CHECK(atoi(PQgetvalue(res, 0, 0)) == 100 + i);
                PQclear(res);
                CHECK(PQgetResult(c) == NULL);
        }
        PGresult *res = PQgetResult(c);
        CHECK(PQresultStatus(res) == PGRES_PIPELINE_SYNC);
        PQclear(res);
        CHECK(PQexitPipelineMode(c));
        CHECK_OK(forkpool_release(lease));
        stop();
}

static void test_copy(void)
{
        forkpool_lease *lease;
        start("it_copy", NULL);
        PGconn *c = lease_pg(&lease);

        itest_query(c, "CREATE TEMP TABLE t (n int, s text)");
        PGresult *res = PQexec(c, "COPY t FROM STDIN");
        CHECK(PQresultStatus(res) == PGRES_COPY_IN);
        PQclear(res);
        for (int i = 0; i < 1000; i++) {
                char line[64];
                int n = snprintf(line, sizeof(line), "%d\trow %d\n", i, i);
                CHECK(PQputCopyData(c, line, n) == 1);
        }
        CHECK(PQputCopyEnd(c, NULL) == 1);
        res = PQgetResult(c);
        CHECK(PQresultStatus(res) == PGRES_COMMAND_OK);
        PQclear(res);
        CHECK(PQgetResult(c) == NULL);
        CHECK(strcmp(itest_query(c, "SELECT sum(n) FROM t"), "499500") == 0);

        res = PQexec(c, "COPY (SELECT n FROM t WHERE n < 3 ORDER BY n) TO STDOUT");
        CHECK(PQresultStatus(res) == PGRES_COPY_OUT);
        PQclear(res);
        char *buf, got[64] = "";
        int n;
        while ((n = PQgetCopyData(c, &buf, 0)) > 0) {
                strncat(got, buf, (size_t)n);
                PQfreemem(buf);
        }
        CHECK(n == -1);
        res = PQgetResult(c);
        CHECK(PQresultStatus(res) == PGRES_COMMAND_OK);
        PQclear(res);
        CHECK(PQgetResult(c) == NULL);
        CHECK(strcmp(got, "0\n1\n2\n") == 0);
        CHECK_OK(forkpool_release(lease));
        stop();
}

static void test_listen_notify(void)
{
        forkpool_lease *lease;
        start("it_notify", NULL);
        PGconn *c = lease_pg(&lease);
        PGconn *admin = itest_admin();

        itest_query(c, "LISTEN it_channel");
        itest_query(admin, "NOTIFY it_channel, 'hello'");
        /* Wait on the adopted socket itself, as an event loop would. */
        PGnotify *note = NULL;
        int64_t end = itest_now_ms() + 5000;
        while (!note && itest_now_ms() < end) {
                struct pollfd p = {.fd = PQsocket(c), .events = POLLIN};
                CHECK(poll(&p, 1, 5000) >= 0);
                CHECK(PQconsumeInput(c));
                note = PQnotifies(c);
        }
        CHECK(note && strcmp(note->relname, "it_channel") == 0 &&
              strcmp(note->extra, "hello") == 0);
        CHECK(note->be_pid == PQbackendPID(admin));
        PQfreemem(note);
        itest_query(c, "UNLISTEN *");
        CHECK_OK(forkpool_release(lease));
        PQfinish(admin);
        stop();
}

static void *cancel_later(void *arg)
{
        usleep(300000);
        return (void *)(intptr_t)forkpool_cancel(arg);
}

static void test_cancel(void)
{
        forkpool_lease *lease;
        pthread_t thread;
        start("it_cancel", NULL);
        PGconn *c = lease_pg(&lease);

        int64_t t0 = itest_now_ms();
        CHECK(pthread_create(&thread, NULL, cancel_later, lease) == 0);
        PGresult *res = PQexec(c, "SELECT pg_sleep(30)");
        void *ret;
        pthread_join(thread, &ret);
        CHECK_MSG((intptr_t)ret == 0, "forkpool_cancel: %d", (int)(intptr_t)ret);
        CHECK(PQresultStatus(res) == PGRES_FATAL_ERROR);
        CHECK(strcmp(PQresultErrorField(res, PG_DIAG_SQLSTATE), "57014") == 0);
        PQclear(res);
        CHECK(itest_now_ms() - t0 < 10000);
        /* The connection is still good and goes back to the pool. */
        CHECK(strcmp(itest_query(c, "SELECT 1"), "1") == 0);
        CHECK_OK(forkpool_release(lease));
        usleep(100000);
        CHECK(itest_pool(&sup).checked_in == 1 && itest_pool(&sup).counters.invalidations == 0);
        stop();
}

/* One worker sets TimeZone; the next lease's PQparameterStatus agrees with the server. */
static void test_parameter_status_across_leases(void)
{
        forkpool_lease *lease;
        start("it_params", NULL);

        PGconn *c = lease_pg(&lease);
        int backend = PQbackendPID(c);
        itest_query(c, "SET TimeZone = 'Asia/Tokyo'");
        CHECK(strcmp(PQparameterStatus(c, "TimeZone"), "Asia/Tokyo") == 0);
        CHECK_OK(forkpool_release(lease));

        pid_t pid = fork();
        if (pid == 0) {
                forkpool *mine;
                forkpool_lease *l;
                CHECK_OK(forkpool_open(sup.socket, &mine));
                CHECK_OK(forkpool_acquire(mine, "main", 5000, &l));
                PGconn *mc = forkpool_lease_pg(l);
                CHECK(PQbackendPID(mc) == backend);
                CHECK(strcmp(PQparameterStatus(mc, "TimeZone"), itest_query(mc, "SHOW TimeZone")) ==
                      0);
                CHECK(strcmp(PQparameterStatus(mc, "TimeZone"), "Asia/Tokyo") == 0);
                CHECK_OK(forkpool_release(l));
                _exit(0);
        }
        CHECK(itest_wait_child(pid, 20000) == 0);

        /* A SET inside a transaction that the reset rolls back: the value reverts. */
        c = lease_pg(&lease);
        itest_query(c, "BEGIN");
        itest_query(c, "SET TimeZone = 'America/New_York'");
        itest_query(c, "SET application_name = 'changed'");
        CHECK(strcmp(PQparameterStatus(c, "TimeZone"), "America/New_York") == 0);
        CHECK_OK(forkpool_release(lease));

        c = lease_pg(&lease);
        CHECK(PQbackendPID(c) == backend);
        CHECK(strcmp(PQparameterStatus(c, "TimeZone"), itest_query(c, "SHOW TimeZone")) == 0);
        CHECK(strcmp(PQparameterStatus(c, "TimeZone"), "Asia/Tokyo") == 0);
        CHECK(strcmp(PQparameterStatus(c, "application_name"),
                     itest_query(c, "SHOW application_name")) == 0);
        CHECK_OK(forkpool_release(lease));
        stop();
}

/* Released in the middle of a query: the connection is closed, never reused. */
static void test_release_mid_protocol(void)
{
        forkpool_lease *lease;
        start("it_midproto", NULL);
        PGconn *admin = itest_admin();
        PGconn *c = lease_pg(&lease);
        int backend = PQbackendPID(c);
        CHECK(PQsendQuery(c, "SELECT pg_sleep(30)"));
        CHECK(PQflush(c) == 0);
        /* Released while the query runs (not merely sent): the cancel must stop it. */
        char active[160];
        snprintf(active, sizeof(active),
                 "SELECT count(*) FROM pg_stat_activity WHERE pid = %d AND state = 'active'",
                 backend);
        int64_t until = itest_now_ms() + 5000;
        while (itest_admin_long(admin, active) != 1 && itest_now_ms() < until)
                usleep(5000);
        CHECK_OK(forkpool_release(lease));

        c = lease_pg(&lease);
        CHECK(PQbackendPID(c) != backend);
        CHECK(strcmp(itest_query(c, "SELECT 1"), "1") == 0);
        CHECK_OK(forkpool_release(lease));
        usleep(100000);
        CHECK(itest_pool(&sup).counters.invalidations == 1);
        char sql[128];
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM pg_stat_activity WHERE pid = %d", backend);
        int64_t end = itest_now_ms() + 5000;
        while (itest_admin_long(admin, sql) != 0 && itest_now_ms() < end)
                usleep(20000);
        CHECK(itest_admin_long(admin, sql) == 0);
        PQfinish(admin);
        stop();
}

/* forkpool_invalidate closes the connection instead of reusing it. */
static void test_invalidate(void)
{
        forkpool_lease *lease;
        start("it_invalidate", NULL);
        PGconn *c = lease_pg(&lease);
        int backend = PQbackendPID(c);
        CHECK_OK(forkpool_invalidate(lease));
        c = lease_pg(&lease);
        CHECK(PQbackendPID(c) != backend);
        CHECK_OK(forkpool_release(lease));
        usleep(100000);
        struct fp_shm_pool st = itest_pool(&sup);
        CHECK(st.counters.invalidations == 1 && st.checked_out == 0 && st.checked_in == 1);
        stop();
}

ITEST_MAIN({"exec_params_prepared", test_exec_params_prepared, 60}, {"pipeline", test_pipeline, 60},
           {"copy_in_out", test_copy, 60}, {"listen_notify", test_listen_notify, 60},
           {"cancel", test_cancel, 60},
           {"parameter_status_across_leases", test_parameter_status_across_leases, 60},
           {"release_mid_protocol", test_release_mid_protocol, 60},
           {"invalidate", test_invalidate, 60})
