/* SPDX-License-Identifier: MIT */
/*
 * it_txmode.c — transaction pooling through the libpq drop-in (pool_mode =
 * transaction), seen from a program that only knows libpq (ctest puts the
 * drop-in's directory on LD_LIBRARY_PATH). It checks that an idle
 * connection holds no lease; that PQsocket() keeps its number and
 * PQbackendPID() follows the session; the release points (PQexec, an
 * asynchronous command's last PQgetResult, a failed transaction kept until
 * ROLLBACK, pipeline mode, COPY); that each kind of session state pins the
 * session and the next transaction sees it, and that a connection without
 * such state is never pinned; protocol-level prepared statements across
 * sessions, prepared once per session under a name of their content, their
 * bookkeeping right when a synchronous call discards unread results and when
 * the server refuses a DEALLOCATE ALL; a lease that fails is a query
 * error and the connection stays usable; several connections on a one-connection pool; fork;
 * cancel; and a non-blocking command.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itest.h"
#include "proto.h"

static struct itest_sup sup;
static char conninfo[512];

static void start_global(const char *app, const char *lines, const char *global_lines)
{
        char all[512];
        snprintf(all, sizeof(all), "pool_mode = transaction\n%s", lines ? lines : "");
        itest_sup_start(&sup, app, all, global_lines);
        snprintf(conninfo, sizeof(conninfo), "host=%s dbname=main", sup.dir);
}

static void start(const char *app, const char *lines)
{
        char all[512];
        snprintf(all, sizeof(all), "pool_mode = transaction\n%s", lines ? lines : "");
        itest_sup_start(&sup, app, all, NULL);
        snprintf(conninfo, sizeof(conninfo), "host=%s dbname=main", sup.dir);
}

static void stop(void)
{
        CHECK(itest_sup_stop(&sup) == 0);
}

static PGconn *connect_ok(void)
{
        PGconn *c = PQconnectdb(conninfo);
        CHECK_MSG(PQstatus(c) == CONNECTION_OK, "%s: %s", conninfo, PQerrorMessage(c));
        return c;
}

static int checked_out(void)
{
        return (int)itest_pool(&sup).checked_out;
}

static int wait_checked_out(int n)
{
        return itest_wait_checked_out(&sup, n);
}

/* Runs sql, expecting status; clears the result. */
static void exec_expect(PGconn *c, const char *sql, ExecStatusType status)
{
        PGresult *res = PQexec(c, sql);
        CHECK_MSG(PQresultStatus(res) == status, "%s: %s (%s)", sql,
                  PQresStatus(PQresultStatus(res)), PQresultErrorMessage(res));
        PQclear(res);
}

static void test_idle_connection_holds_no_lease(void)
{
        start("it_txmode_idle", "pool_size = 2\nmax_overflow = 0\n");
        PGconn *c = connect_ok();
        CHECK_MSG(wait_checked_out(0) == 0, "an idle connection holds a lease");
        int sock = PQsocket(c);
        CHECK(sock >= 0);
        /* Idle, its descriptor is neither readable nor at end of file. */
        struct pollfd p = {.fd = sock, .events = POLLIN};
        CHECK(poll(&p, 1, 50) == 0);
        CHECK(PQtransactionStatus(c) == PQTRANS_IDLE);
        for (int i = 0; i < 20; i++) {
                char *pid = itest_query(c, "SELECT pg_backend_pid()");
                CHECK_MSG(atoi(pid) == PQbackendPID(c), "PQbackendPID %d, session %s",
                          PQbackendPID(c), pid);
                CHECK(PQsocket(c) == sock);
                CHECK(wait_checked_out(0) == 0);
        }
        CHECK(PQparameterStatus(c, "server_version") != NULL);
        CHECK(strcmp(PQparameterStatus(c, "application_name"), "it_txmode_idle") == 0);
        struct fp_shm_pool pool = itest_pool(&sup);
        CHECK_MSG(pool.counters.acquires >= 21, "%llu acquires",
                  (unsigned long long)pool.counters.acquires);
        PQfinish(c);
        CHECK(wait_checked_out(0) == 0);
        stop();
}

static void test_release_points(void)
{
        start("it_txmode_release", "pool_size = 2\nmax_overflow = 0\n");
        PGconn *c = connect_ok();
        exec_expect(c, "CREATE TABLE IF NOT EXISTS it_txmode_t (v int)", PGRES_COMMAND_OK);
        CHECK(wait_checked_out(0) == 0); /* a permanent table is no session state */

        /* A transaction keeps its session until it ends. */
        exec_expect(c, "BEGIN", PGRES_COMMAND_OK);
        CHECK(checked_out() == 1);
        int pid = PQbackendPID(c);
        for (int i = 0; i < 5; i++)
                CHECK(atoi(itest_query(c, "SELECT pg_backend_pid()")) == pid);
        exec_expect(c, "COMMIT", PGRES_COMMAND_OK);
        CHECK(wait_checked_out(0) == 0);

        /* A failed transaction keeps it until ROLLBACK. */
        exec_expect(c, "BEGIN", PGRES_COMMAND_OK);
        exec_expect(c, "SELECT 1/0", PGRES_FATAL_ERROR);
        CHECK(PQtransactionStatus(c) == PQTRANS_INERROR);
        usleep(50000);
        CHECK(checked_out() == 1);
        exec_expect(c, "SELECT 1", PGRES_FATAL_ERROR); /* still that aborted transaction */
        exec_expect(c, "ROLLBACK", PGRES_COMMAND_OK);
        CHECK(wait_checked_out(0) == 0);

        /* Asynchronous: released when PQgetResult() returns NULL. */
        CHECK(PQsendQuery(c, "SELECT 42"));
        CHECK(checked_out() == 1);
        PGresult *res = PQgetResult(c);
        CHECK(PQresultStatus(res) == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 0), "42") == 0);
        PQclear(res);
        CHECK(checked_out() == 1);
        CHECK(PQgetResult(c) == NULL);
        CHECK(wait_checked_out(0) == 0);

        /* Pipeline mode: held until it is left. */
        CHECK(PQenterPipelineMode(c));
        CHECK(checked_out() == 1);
        CHECK(PQsendQueryParams(c, "SELECT 1", 0, NULL, NULL, NULL, NULL, 0));
        CHECK(PQsendQueryParams(c, "SELECT 2", 0, NULL, NULL, NULL, NULL, 0));
        CHECK(PQpipelineSync(c));
        int got = 0;
        for (int i = 0; i < 2; i++) {
                res = PQgetResult(c);
                got += PQresultStatus(res) == PGRES_TUPLES_OK;
                PQclear(res);
                CHECK(PQgetResult(c) == NULL);
                CHECK(checked_out() == 1);
        }
        res = PQgetResult(c);
        CHECK(PQresultStatus(res) == PGRES_PIPELINE_SYNC);
        PQclear(res);
        CHECK(got == 2);
        CHECK(PQexitPipelineMode(c));
        CHECK(wait_checked_out(0) == 0);

        /* COPY: held until its end is read. */
        res = PQexec(c, "COPY it_txmode_t FROM STDIN");
        CHECK(PQresultStatus(res) == PGRES_COPY_IN);
        PQclear(res);
        CHECK(checked_out() == 1);
        CHECK(PQputCopyData(c, "1\n2\n", 4) == 1);
        CHECK(PQputCopyEnd(c, NULL) == 1);
        res = PQgetResult(c);
        CHECK_MSG(PQresultStatus(res) == PGRES_COMMAND_OK, "%s", PQresultErrorMessage(res));
        PQclear(res);
        CHECK(PQgetResult(c) == NULL);
        CHECK(wait_checked_out(0) == 0);
        CHECK(atoi(itest_query(c, "SELECT count(*) FROM it_txmode_t")) >= 2);
        exec_expect(c, "DROP TABLE it_txmode_t", PGRES_COMMAND_OK);
        CHECK(wait_checked_out(0) == 0);
        PQfinish(c);
        stop();
}

/* Each kind of session state pins; the next transaction sees the state. */
static void test_pins(void)
{
        static const struct {
                const char *setup; /* ';'-separated is fine: one PQexec */
                const char *check; /* its first value must be want */
                const char *want;
                const char *reason; /* as forkpoolctl shows it */
        } pins[] = {
                {"SET statement_timeout = '1234ms'", "SHOW statement_timeout", "1234ms", "SET"},
                {"SELECT set_config('work_mem', '7MB', false)", "SHOW work_mem", "7MB", "SET"},
                {"LISTEN it_txmode_channel",
                 "SELECT count(*) FROM pg_listening_channels() WHERE pg_listening_channels = "
                 "'it_txmode_channel'",
                 "1", "LISTEN"},
                {"PREPARE it_txmode_p AS SELECT 5", "EXECUTE it_txmode_p", "5", "PREPARE"},
                {"SELECT pg_advisory_lock(4242)",
                 "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242 AND "
                 "pid = pg_backend_pid()",
                 "1", "advisory lock"},
                {"CREATE TEMP TABLE it_txmode_tmp AS SELECT 9 AS v", "SELECT v FROM it_txmode_tmp",
                 "9", "temporary table"},
                {"BEGIN; DECLARE it_txmode_c CURSOR WITH HOLD FOR SELECT 11; COMMIT",
                 "FETCH it_txmode_c", "11", "WITH HOLD cursor"},
                {"LOAD 'plpgsql'", "SELECT 'loaded'", "loaded", "LOAD"},
                {"/* a comment */ SET work_mem = '3MB'", "SHOW work_mem", "3MB", "SET"},
        };
        char *json = malloc(1 << 16);
        CHECK(json);
        start("it_txmode_pins", "pool_size = 3\nmax_overflow = 0\n");
        PGconn *other = connect_ok(); /* runs transactions between, on the other sessions */
        for (size_t i = 0; i < sizeof(pins) / sizeof(pins[0]); i++) {
                PGconn *c = connect_ok();
                CHECK(wait_checked_out(0) == 0);
                PGresult *res = PQexec(c, pins[i].setup);
                CHECK_MSG(PQresultStatus(res) == PGRES_COMMAND_OK ||
                                  PQresultStatus(res) == PGRES_TUPLES_OK,
                          "%s: %s", pins[i].setup, PQresultErrorMessage(res));
                PQclear(res);
                CHECK_MSG(checked_out() == 1, "'%s' did not pin", pins[i].setup);
                /* forkpoolctl shows the pin and why. */
                char want[128];
                snprintf(want, sizeof(want), "\"pin_reason\":\"%s\"", pins[i].reason);
                int64_t end = itest_now_ms() + 5000;
                do
                        CHECK(itest_status_json(&sup, json, 1 << 16) == 0);
                while (!strstr(json, want) && itest_now_ms() < end && usleep(10000) == 0);
                CHECK_MSG(strstr(json, want), "'%s': no %s in\n%s", pins[i].setup, want, json);
                CHECK(itest_sh(json, 1 << 16, "%s --socket %s status", FP_FORKPOOLCTL_PATH,
                               sup.socket) == 0);
                snprintf(want, sizeof(want), "pinned: %s\n", pins[i].reason);
                CHECK_MSG(strstr(json, want), "'%s': no '%s' in\n%s", pins[i].setup, want, json);
                int pid = PQbackendPID(c);
                for (int k = 0; k < 3; k++)
                        (void)itest_query(other, "SELECT 1");
                char *v = itest_query(c, pins[i].check);
                CHECK_MSG(strcmp(v, pins[i].want) == 0, "after '%s': %s gave %s", pins[i].setup,
                          pins[i].check, v);
                CHECK(PQbackendPID(c) == pid);
                CHECK(atoi(itest_query(c, "SELECT pg_backend_pid()")) == pid);
                PQfinish(c);
                CHECK_MSG(wait_checked_out(0) == 0, "'%s': the pin outlived PQfinish",
                          pins[i].setup);
                /* The next holder of that session sees none of it. */
                CHECK(strcmp(itest_query(other, "SHOW statement_timeout"), "0") == 0);
        }

        /* Transaction-scoped state does not pin. */
        static const char *const clean[] = {
                "BEGIN; SET LOCAL statement_timeout = '5s'; COMMIT",
                "SELECT set_config('work_mem', '9MB', true)",
                "BEGIN; DECLARE it_txmode_c2 CURSOR FOR SELECT 1; COMMIT",
                "SELECT pg_advisory_xact_lock(77)",
                "RESET ALL", /* PHP's pg_pconnect() sends it on every reuse */
                "RESET search_path",
                "SELECT 'SET x = 1', 'LISTEN y'",
                "-- SET x = 1\nSELECT 1",
                "/* LISTEN y */ SELECT 2",
                "CREATE TABLE IF NOT EXISTS it_txmode_perm (v int); DROP TABLE it_txmode_perm",
        };
        PGconn *c = connect_ok();
        for (size_t i = 0; i < sizeof(clean) / sizeof(clean[0]); i++) {
                PGresult *res = PQexec(c, clean[i]);
                CHECK_MSG(PQresultStatus(res) == PGRES_COMMAND_OK ||
                                  PQresultStatus(res) == PGRES_TUPLES_OK,
                          "%s: %s", clean[i], PQresultErrorMessage(res));
                PQclear(res);
                CHECK_MSG(wait_checked_out(0) == 0, "'%s' pinned", clean[i]);
        }
        CHECK(itest_status_json(&sup, json, 1 << 16) == 0);
        CHECK_MSG(!strstr(json, "\"pin_reason\":\""), "a pin left:\n%s", json);
        PQfinish(c);
        PQfinish(other);
        free(json);
        stop();
}

static void test_prepared_statements_across_sessions(void)
{
        start("it_txmode_prepared", "pool_size = 2\nmax_overflow = 0\n");
        PGconn *a = connect_ok(), *b = connect_ok();
        PGresult *res = PQprepare(a, "plus_one", "SELECT $1::int + 1", 1, NULL);
        CHECK_MSG(PQresultStatus(res) == PGRES_COMMAND_OK, "%s", PQresultErrorMessage(res));
        PQclear(res);
        CHECK_MSG(wait_checked_out(0) == 0, "PQprepare pinned");
        /* The same name on another connection, another text: each its own. */
        res = PQprepare(b, "plus_one", "SELECT $1::int + 100", 1, NULL);
        CHECK(PQresultStatus(res) == PGRES_COMMAND_OK);
        PQclear(res);
        res = PQprepare(a, "bad", "SELECT FROM nowhere_at_all", 0, NULL);
        CHECK(PQresultStatus(res) == PGRES_FATAL_ERROR);
        PQclear(res);
        /* a's transaction holds one session: b's statements run on the other. */
        exec_expect(a, "BEGIN", PGRES_COMMAND_OK);
        for (int i = 0; i < 10; i++) {
                const char *v[] = {"1"};
                PGconn *c = i % 2 ? a : b;
                res = PQexecPrepared(c, "plus_one", 1, v, NULL, NULL, 0);
                CHECK_MSG(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
                CHECK(strcmp(PQgetvalue(res, 0, 0), c == a ? "2" : "101") == 0);
                PQclear(res);
        }
        exec_expect(a, "COMMIT", PGRES_COMMAND_OK);
        res = PQdescribePrepared(a, "plus_one");
        CHECK(PQresultStatus(res) == PGRES_COMMAND_OK && PQnparams(res) == 1);
        PQclear(res);
        /* Asynchronous, as psycopg 3 and PDO do it. */
        CHECK(PQsendPrepare(b, "async_s", "SELECT $1::text || 'x'", 1, NULL));
        while ((res = PQgetResult(b)))
                PQclear(res);
        const char *v[] = {"y"};
        CHECK(PQsendQueryPrepared(b, "async_s", 1, v, NULL, NULL, 0));
        res = PQgetResult(b);
        CHECK(PQresultStatus(res) == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 0), "yx") == 0);
        PQclear(res);
        CHECK(PQgetResult(b) == NULL);
        CHECK(wait_checked_out(0) == 0);
        /* No session holds a statement under an application's name. */
        CHECK(strcmp(itest_query(a, "SELECT count(*) FROM pg_prepared_statements "
                                    "WHERE name NOT LIKE 'fp\\_%'"),
                     "0") == 0);
        exec_expect(a, "DEALLOCATE plus_one", PGRES_COMMAND_OK);
        res = PQexecPrepared(a, "plus_one", 1, v, NULL, NULL, 0);
        CHECK(PQresultStatus(res) == PGRES_FATAL_ERROR);
        PQclear(res);
        CHECK(wait_checked_out(0) == 0);
        PQfinish(a);
        PQfinish(b);
        stop();
}

/* The drop-in's named statements on the session that runs c's next command. */
static int named_statements(PGconn *c)
{
        return atoi(itest_query(c, "SELECT count(*) FROM pg_prepared_statements "
                                   "WHERE name LIKE 'fp\\_%'"));
}

/* When the session that runs c's next command prepared its statement of text, "" if it has none. */
static char *prepared_at(PGconn *c, const char *text, char *buf, size_t len)
{
        char sql[512];
        snprintf(sql, sizeof(sql),
                 "SELECT prepare_time FROM pg_prepared_statements WHERE name LIKE 'fp\\_%%' "
                 "AND statement = '%s'",
                 text);
        snprintf(buf, len, "%s", itest_query(c, sql));
        return buf;
}

/* Runs the prepared statement name with one parameter, expecting the value want. */
static void exec_prepared_expect(PGconn *c, const char *name, const char *param, const char *want)
{
        const char *v[] = {param};
        PGresult *res = PQexecPrepared(c, name, 1, v, NULL, NULL, 0);
        CHECK_MSG(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", name,
                  PQresultErrorMessage(res));
        CHECK_MSG(strcmp(PQgetvalue(res, 0, 0), want) == 0, "%s(%s) = %s, not %s", name, param,
                  PQgetvalue(res, 0, 0), want);
        PQclear(res);
}

/* Collects an asynchronous command's results: one of status (value want, if not NULL), then NULL.
 */
static void async_expect(PGconn *c, ExecStatusType status, const char *want)
{
        PGresult *res = PQgetResult(c);
        CHECK_MSG(PQresultStatus(res) == status, "%s (%s)", PQresStatus(PQresultStatus(res)),
                  PQresultErrorMessage(res));
        if (want)
                CHECK(strcmp(PQgetvalue(res, 0, 0), want) == 0);
        PQclear(res);
        CHECK(PQgetResult(c) == NULL);
}

/*
 * Protocol-level statements become named statements of the sessions, named
 * by their content, prepared once per session: by any connection, in any
 * process, kept from one transaction to the next (reset_on_return = auto
 * does not discard them); DEALLOCATE forgets a name, DEALLOCATE ALL, DISCARD
 * ALL and a session's death take the session's statements, and each comes
 * back at its next use; a session's full set runs the rest unnamed.
 */
static void test_prepared_once_per_session(void)
{
        char t0[64], t1[64];
        const char *twice = "SELECT $1::int * 2";
        start("it_txmode_named", "pool_size = 1\nmax_overflow = 0\nreset_on_return = auto\n");
        PGconn *a = connect_ok(), *b = connect_ok();
        PGresult *res = PQprepare(a, "double", twice, 1, NULL);
        CHECK_MSG(PQresultStatus(res) == PGRES_COMMAND_OK, "%s", PQresultErrorMessage(res));
        PQclear(res);
        CHECK(wait_checked_out(0) == 0);
        CHECK_MSG(named_statements(a) == 1, "%d named statements", named_statements(a));
        CHECK(strlen(itest_query(a, "SELECT name FROM pg_prepared_statements")) == 35);
        CHECK(prepared_at(a, twice, t0, sizeof(t0))[0]);
        /* Another connection, the same text under another name: nothing new on the session. */
        res = PQprepare(b, "twice", twice, 1, NULL);
        CHECK(PQresultStatus(res) == PGRES_COMMAND_OK);
        PQclear(res);
        CHECK(named_statements(b) == 1);
        /* Types are part of a statement: the same text with a declared type is another. */
        Oid int4 = 23;
        res = PQprepare(b, "twice_typed", "SELECT $1 * 2", 1, &int4);
        CHECK(PQresultStatus(res) == PGRES_COMMAND_OK);
        PQclear(res);
        CHECK(named_statements(b) == 2);
        for (int i = 0; i < 6; i++) {
                /* One session: b's statements run between a's transactions. */
                if (i == 3)
                        exec_expect(a, "BEGIN", PGRES_COMMAND_OK);
                exec_prepared_expect(a, "double", "3", "6");
                if (i == 3)
                        continue;
                if (i == 4)
                        exec_expect(a, "COMMIT", PGRES_COMMAND_OK);
                exec_prepared_expect(b, i % 2 ? "twice" : "twice_typed", "4", "8");
        }
        exec_prepared_expect(b, "twice", "4", "8");
        CHECK(wait_checked_out(0) == 0);
        CHECK(named_statements(a) == 2);
        CHECK_MSG(strcmp(prepared_at(a, twice, t1, sizeof(t1)), t0) == 0,
                  "prepared again: %s, then %s", t0, t1);
        CHECK(atoi(itest_query(a, "SELECT sum(generic_plans + custom_plans) FROM "
                                  "pg_prepared_statements WHERE name LIKE 'fp\\_%'")) >= 12);

        /* Asynchronous, as psycopg 3 and PDO do it; a statement the session has costs no Parse. */
        const char *suffix = "SELECT repeat($1::text, 2)";
        CHECK(PQsendPrepare(b, "async_s", suffix, 1, NULL));
        async_expect(b, PGRES_COMMAND_OK, NULL);
        CHECK(named_statements(b) == 3);
        CHECK(prepared_at(b, suffix, t0, sizeof(t0))[0]);
        const char *y[] = {"y"};
        CHECK(PQsendQueryPrepared(b, "async_s", 1, y, NULL, NULL, 0));
        async_expect(b, PGRES_TUPLES_OK, "yy");
        CHECK(PQsendPrepare(a, "suffix", suffix, 1, NULL));
        async_expect(a, PGRES_COMMAND_OK, NULL);
        CHECK(PQsendQueryPrepared(a, "suffix", 1, y, NULL, NULL, 0));
        async_expect(a, PGRES_TUPLES_OK, "yy");
        CHECK(named_statements(a) == 3);
        CHECK(strcmp(prepared_at(a, suffix, t1, sizeof(t1)), t0) == 0);
        res = PQdescribePrepared(a, "double");
        CHECK(PQresultStatus(res) == PGRES_COMMAND_OK && PQnparams(res) == 1 &&
              PQparamtype(res, 0) == 23);
        PQclear(res);
        CHECK(PQsendDescribePrepared(b, "async_s"));
        res = PQgetResult(b);
        CHECK(PQresultStatus(res) == PGRES_COMMAND_OK && PQnparams(res) == 1);
        PQclear(res);
        CHECK(PQgetResult(b) == NULL);
        /* A text that does not prepare: the server's error, nothing new on the session. */
        res = PQprepare(a, "bad", "SELECT FROM nowhere_at_all", 0, NULL);
        CHECK(PQresultStatus(res) == PGRES_FATAL_ERROR);
        PQclear(res);
        CHECK(PQsendPrepare(b, "bad", "SELECT FROM nowhere_at_all", 0, NULL));
        async_expect(b, PGRES_FATAL_ERROR, NULL);
        CHECK(named_statements(a) == 3);
        /* In a pipeline: by its name where the session has it. */
        CHECK(PQenterPipelineMode(b));
        const char *five[] = {"5"};
        CHECK(PQsendQueryPrepared(b, "twice", 1, five, NULL, NULL, 0));
        CHECK(PQsendQueryPrepared(b, "async_s", 1, five, NULL, NULL, 0));
        CHECK(PQpipelineSync(b));
        res = PQgetResult(b);
        CHECK(PQresultStatus(res) == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 0), "10") == 0);
        PQclear(res);
        CHECK(PQgetResult(b) == NULL);
        res = PQgetResult(b);
        CHECK(PQresultStatus(res) == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 0), "55") == 0);
        PQclear(res);
        CHECK(PQgetResult(b) == NULL);
        res = PQgetResult(b);
        CHECK(PQresultStatus(res) == PGRES_PIPELINE_SYNC);
        PQclear(res);
        CHECK(PQexitPipelineMode(b));
        CHECK(wait_checked_out(0) == 0);

        /* Another process, the same session: what it prepares is the parent's too. */
        pid_t pid = fork();
        if (pid == 0) {
                PGconn *c = PQconnectdb(conninfo);
                PGresult *r = PQprepare(c, "thrice", "SELECT $1::int * 3", 1, NULL);
                const char *two[] = {"2"};
                int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
                PQclear(r);
                r = PQprepare(c, "mine", twice, 1, NULL);
                ok = ok && PQresultStatus(r) == PGRES_COMMAND_OK;
                PQclear(r);
                r = PQexecPrepared(c, "mine", 1, two, NULL, NULL, 0);
                ok = ok && PQresultStatus(r) == PGRES_TUPLES_OK &&
                     strcmp(PQgetvalue(r, 0, 0), "4") == 0;
                PQclear(r);
                r = PQexec(c, "SELECT count(*) FROM pg_prepared_statements");
                ok = ok && PQresultStatus(r) == PGRES_TUPLES_OK &&
                     strcmp(PQgetvalue(r, 0, 0), "4") == 0;
                PQclear(r);
                PQfinish(c);
                _exit(ok ? 0 : 1);
        }
        int status = itest_wait_child(pid, 20000);
        CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child's statements");
        prepared_at(a, "SELECT $1::int * 3", t0, sizeof(t0));
        CHECK(t0[0]);
        res = PQprepare(a, "thrice", "SELECT $1::int * 3", 1, NULL);
        CHECK(PQresultStatus(res) == PGRES_COMMAND_OK);
        PQclear(res);
        exec_prepared_expect(a, "thrice", "3", "9");
        CHECK(named_statements(a) == 4);
        CHECK(strcmp(prepared_at(a, "SELECT $1::int * 3", t1, sizeof(t1)), t0) == 0);

        /* DEALLOCATE forgets the connection's name; the session keeps the statement for others. */
        exec_expect(a, "DEALLOCATE double", PGRES_COMMAND_OK);
        res = PQexecPrepared(a, "double", 1, five, NULL, NULL, 0);
        CHECK(PQresultStatus(res) == PGRES_FATAL_ERROR);
        PQclear(res);
        exec_prepared_expect(b, "twice", "5", "10");
        CHECK(named_statements(a) == 4);
        /* DEALLOCATE ALL and DISCARD ALL take the session's statements: they come back at use. */
        exec_expect(a, "DEALLOCATE ALL", PGRES_COMMAND_OK);
        CHECK(named_statements(a) == 0);
        res = PQexecPrepared(a, "thrice", 1, five, NULL, NULL, 0);
        CHECK(PQresultStatus(res) == PGRES_FATAL_ERROR); /* a's names went with it */
        PQclear(res);
        exec_prepared_expect(b, "twice", "6", "12");
        CHECK(PQsendQueryPrepared(b, "async_s", 1, y, NULL, NULL, 0));
        async_expect(b, PGRES_TUPLES_OK, "yy");
        CHECK(named_statements(b) == 2);
        exec_expect(b, "DISCARD ALL", PGRES_COMMAND_OK);
        CHECK(named_statements(a) == 0);
        res = PQprepare(a, "double", twice, 1, NULL);
        CHECK(PQresultStatus(res) == PGRES_COMMAND_OK);
        PQclear(res);
        exec_prepared_expect(a, "double", "7", "14");
        CHECK(named_statements(a) == 1);
        /* The session dies: the new one gets its statements at their next use. */
        PGconn *admin = itest_admin();
        CHECK(itest_admin_long(admin, "SELECT count(pg_terminate_backend(pid)) FROM "
                                      "pg_stat_activity WHERE application_name = "
                                      "'it_txmode_named'") == 1);
        usleep(300000);
        res = PQexec(a, "SELECT 1");
        PQclear(res);
        exec_prepared_expect(a, "double", "8", "16");
        CHECK(named_statements(a) == 1);

        /* A full set: the statements beyond it run unnamed, and right. */
        for (int i = 0; i < FP_STMTS_MAX + 6; i++) {
                char name[32], text[64], want[16];
                snprintf(name, sizeof(name), "many_%d", i);
                snprintf(text, sizeof(text), "SELECT $1::int + %d", i);
                snprintf(want, sizeof(want), "%d", i + 1);
                res = PQprepare(b, name, text, 1, NULL);
                CHECK(PQresultStatus(res) == PGRES_COMMAND_OK);
                PQclear(res);
                exec_prepared_expect(b, name, "1", want);
        }
        CHECK_MSG(named_statements(b) == FP_STMTS_MAX, "%d", named_statements(b));
        CHECK(wait_checked_out(0) == 0);
        PQfinish(admin);
        PQfinish(a);
        PQfinish(b);
        stop();
}

/*
 * A statement prepared without types, executed asynchronously with its
 * parameters (the count is the call's, not the types'); and a statement whose
 * plan a schema change broke: the error comes once, as on a direct
 * connection, and the next transaction prepares it afresh.
 */
static void test_prepared_untyped_and_stale(void)
{
        start("it_txmode_stale", "pool_size = 1\nmax_overflow = 0\n");
        PGconn *c = connect_ok();
        PGresult *res = PQprepare(c, "plus", "SELECT $1::int + 1", 0, NULL);
        CHECK_MSG(PQresultStatus(res) == PGRES_COMMAND_OK, "%s", PQresultErrorMessage(res));
        PQclear(res);
        for (int i = 0; i < 2; i++) {
                const char *v[] = {"41"};
                CHECK_MSG(PQsendQueryPrepared(c, "plus", 1, v, NULL, NULL, 0) == 1, "%s",
                          PQerrorMessage(c));
                res = PQgetResult(c);
                CHECK_MSG(PQresultStatus(res) == PGRES_TUPLES_OK &&
                                  strcmp(PQgetvalue(res, 0, 0), "42") == 0,
                          "run %d: %s", i, PQresultErrorMessage(res));
                PQclear(res);
                while ((res = PQgetResult(c)))
                        PQclear(res);
        }

        exec_expect(c, "DROP TABLE IF EXISTS it_txmode_stale", PGRES_COMMAND_OK);
        exec_expect(c, "CREATE TABLE it_txmode_stale (a int)", PGRES_COMMAND_OK);
        exec_expect(c, "INSERT INTO it_txmode_stale VALUES (1)", PGRES_COMMAND_OK);
        res = PQprepare(c, "all_of_it", "SELECT * FROM it_txmode_stale", 0, NULL);
        CHECK(PQresultStatus(res) == PGRES_COMMAND_OK);
        PQclear(res);
        res = PQexecPrepared(c, "all_of_it", 0, NULL, NULL, NULL, 0);
        CHECK(PQresultStatus(res) == PGRES_TUPLES_OK && PQnfields(res) == 1);
        PQclear(res);
        PGconn *admin = itest_admin();
        itest_query(admin, "ALTER TABLE it_txmode_stale ADD COLUMN b int");
        res = PQexecPrepared(c, "all_of_it", 0, NULL, NULL, NULL, 0);
        bool stale = PQresultStatus(res) == PGRES_FATAL_ERROR;
        CHECK_MSG(stale || PQnfields(res) == 2, "%s", PQresultErrorMessage(res));
        PQclear(res);
        /* The next transaction runs it with the table as it is now. */
        res = PQexecPrepared(c, "all_of_it", 0, NULL, NULL, NULL, 0);
        CHECK_MSG(PQresultStatus(res) == PGRES_TUPLES_OK && PQnfields(res) == 2, "%s",
                  PQresultErrorMessage(res));
        PQclear(res);
        exec_expect(c, "DROP TABLE it_txmode_stale", PGRES_COMMAND_OK);
        PQfinish(admin);
        PQfinish(c);
        stop();
}

/*
 * An asynchronous command whose results the application leaves unread, then
 * a synchronous call, which discards them (as libpq allows): what the
 * drop-in keeps for those results (its Parse of a statement the session
 * lacked, a result it made for one the session has) follows them, not the
 * call's result. The session's set stays what the session has: a statement
 * it prepared is not prepared again (42P05), one that failed is not claimed.
 */
static void test_unread_results_then_exec(void)
{
        const char *plus = "SELECT $1::int + 100";
        start("it_txmode_unread", "pool_size = 1\nmax_overflow = 0\n");
        PGconn *c = connect_ok();
        /* Our Parse goes out, its result unread: PQexec discards it (the lease goes on). */
        exec_expect(c, "BEGIN", PGRES_COMMAND_OK);
        CHECK(PQsendPrepare(c, "plus", plus, 1, NULL));
        exec_expect(c, "SELECT 1", PGRES_TUPLES_OK);
        CHECK(PQsendQuery(c, "SELECT 2"));
        async_expect(c, PGRES_TUPLES_OK, "2");
        exec_prepared_expect(c, "plus", "1", "101");
        exec_expect(c, "COMMIT", PGRES_COMMAND_OK);
        CHECK(named_statements(c) == 1);
        /* The session has it: the made result is unread when PQexec comes. */
        CHECK(PQsendPrepare(c, "plus_again", plus, 1, NULL));
        exec_expect(c, "SELECT 3", PGRES_TUPLES_OK);
        CHECK(PQsendQuery(c, "SELECT 4"));
        async_expect(c, PGRES_TUPLES_OK, "4");
        exec_prepared_expect(c, "plus_again", "2", "102");
        /* A text that does not prepare, its error unread: the set does not claim it. */
        CHECK(PQsendPrepare(c, "bad", "SELECT FROM nowhere_at_all", 0, NULL));
        exec_expect(c, "SELECT 5", PGRES_TUPLES_OK);
        PGresult *res = PQprepare(c, "bad_again", "SELECT FROM nowhere_at_all", 0, NULL);
        CHECK_MSG(PQresultStatus(res) == PGRES_FATAL_ERROR, "%s", PQresStatus(PQresultStatus(res)));
        PQclear(res);
        /* The other synchronous calls discard them too. */
        CHECK(PQsendPrepare(c, "twice", "SELECT $1::int * 2", 1, NULL));
        const char *three[] = {"3"};
        res = PQexecParams(c, "SELECT $1::int", 1, NULL, three, NULL, NULL, 0);
        CHECK(PQresultStatus(res) == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 0), "3") == 0);
        PQclear(res);
        CHECK(PQsendPrepare(c, "twice_again", "SELECT $1::int * 2", 1, NULL));
        exec_prepared_expect(c, "twice", "4", "8");
        CHECK(PQgetResult(c) == NULL);
        exec_prepared_expect(c, "twice_again", "5", "10");
        CHECK(named_statements(c) == 2);
        CHECK(wait_checked_out(0) == 0);
        PQfinish(c);
        stop();
}

/*
 * DEALLOCATE ALL, DISCARD ALL and DEALLOCATE of a name that the server
 * refuses (in an aborted transaction) forget nothing: after ROLLBACK the
 * statements run, and the session's set still has them. One that the
 * server completes forgets them, and a ROLLBACK after it does not bring them
 * back (as on a direct connection); so does one inside a multi-statement text.
 */
static void test_deallocate_refused(void)
{
        const char *keep = "SELECT $1::int + 1000";
        const char *one[] = {"1"};
        start("it_txmode_dealloc", "pool_size = 1\nmax_overflow = 0\n");
        PGconn *c = connect_ok(), *other = connect_ok();
        PGresult *res = PQprepare(c, "keep", keep, 1, NULL);
        CHECK(PQresultStatus(res) == PGRES_COMMAND_OK);
        PQclear(res);
        exec_expect(c, "BEGIN", PGRES_COMMAND_OK);
        exec_expect(c, "SELECT 1/0", PGRES_FATAL_ERROR);
        exec_expect(c, "DEALLOCATE ALL", PGRES_FATAL_ERROR);
        exec_expect(c, "DISCARD ALL", PGRES_FATAL_ERROR);
        exec_expect(c, "DEALLOCATE keep", PGRES_FATAL_ERROR);
        CHECK(PQsendQuery(c, "DEALLOCATE PREPARE ALL"));
        async_expect(c, PGRES_FATAL_ERROR, NULL);
        CHECK(PQsendQuery(c, "DEALLOCATE keep"));
        async_expect(c, PGRES_FATAL_ERROR, NULL);
        exec_expect(c, "ROLLBACK", PGRES_COMMAND_OK);
        exec_prepared_expect(c, "keep", "1", "1001");
        CHECK(named_statements(c) == 1);
        /* The same text from another connection: the set has it, no second Parse. */
        res = PQprepare(other, "mine", keep, 1, NULL);
        CHECK_MSG(PQresultStatus(res) == PGRES_COMMAND_OK, "%s", PQresultErrorMessage(res));
        PQclear(res);
        exec_prepared_expect(other, "mine", "2", "1002");

        exec_expect(c, "BEGIN", PGRES_COMMAND_OK);
        exec_expect(c, "DEALLOCATE ALL", PGRES_COMMAND_OK);
        exec_expect(c, "ROLLBACK", PGRES_COMMAND_OK);
        res = PQexecPrepared(c, "keep", 1, one, NULL, NULL, 0);
        CHECK(PQresultStatus(res) == PGRES_FATAL_ERROR);
        PQclear(res);
        CHECK(named_statements(c) == 0);
        res = PQprepare(c, "keep", keep, 1, NULL);
        CHECK(PQresultStatus(res) == PGRES_COMMAND_OK);
        PQclear(res);
        exec_prepared_expect(c, "keep", "3", "1003");
        exec_expect(c, "SELECT 1; DEALLOCATE ALL", PGRES_COMMAND_OK);
        res = PQexecPrepared(c, "keep", 1, one, NULL, NULL, 0);
        CHECK(PQresultStatus(res) == PGRES_FATAL_ERROR);
        PQclear(res);
        exec_prepared_expect(other, "mine", "4", "1004");
        CHECK(wait_checked_out(0) == 0);
        PQfinish(other);
        PQfinish(c);
        stop();
}

/* A PQsend* just refused: libpq's message for a command while another is in progress. */
static void expect_busy_refusal(PGconn *c)
{
        CHECK_MSG(strstr(PQerrorMessage(c), "another command is already in progress"), "%s",
                  PQerrorMessage(c));
}

/* The command's one result: its lease failed (no session free in time); then NULL. */
static void expect_lease_failure(PGconn *c)
{
        PGresult *res = PQgetResult(c);
        CHECK(PQresultStatus(res) == PGRES_FATAL_ERROR);
        CHECK_MSG(strstr(PQresultErrorMessage(res), "no connection free"), "%s",
                  PQresultErrorMessage(res));
        PQclear(res);
        CHECK(PQgetResult(c) == NULL);
}

static void test_lease_failure_is_a_query_error(void)
{
        start("it_txmode_fail", "pool_size = 1\nmax_overflow = 0\npool_timeout = 0.5\n");
        PGconn *holder = connect_ok(), *c = connect_ok();
        exec_expect(holder, "BEGIN", PGRES_COMMAND_OK);
        int64_t t0 = itest_now_ms();
        PGresult *res = PQexec(c, "SELECT 1");
        int64_t took = itest_now_ms() - t0;
        CHECK(PQresultStatus(res) == PGRES_FATAL_ERROR);
        CHECK_MSG(strstr(PQresultErrorMessage(res), "forkpool: pool \"main\": no connection free"),
                  "%s", PQresultErrorMessage(res));
        CHECK(strstr(PQerrorMessage(c), "no connection free"));
        CHECK(PQresultErrorField(res, PG_DIAG_SQLSTATE) &&
              strcmp(PQresultErrorField(res, PG_DIAG_SQLSTATE), "57P03") == 0);
        PQclear(res);
        CHECK_MSG(took >= 300 && took < 8000, "took %lld ms", (long long)took);
        CHECK(PQstatus(c) == CONNECTION_OK);
        /* Asynchronous: PQsendQuery returns at once, the failure is its result. */
        t0 = itest_now_ms();
        CHECK(PQsendQuery(c, "SELECT 1") == 1);
        CHECK(itest_now_ms() - t0 < 300);
        CHECK(PQtransactionStatus(c) == PQTRANS_ACTIVE);
        /* A second command while the first waits for its session: refused at once. */
        t0 = itest_now_ms();
        CHECK(PQsendQuery(c, "SELECT 6") == 0);
        CHECK_MSG(itest_now_ms() - t0 < 300, "the refusal waited %lld ms",
                  (long long)(itest_now_ms() - t0));
        expect_busy_refusal(c);
        expect_lease_failure(c);
        CHECK(strstr(PQerrorMessage(c), "no connection free"));
        CHECK(PQtransactionStatus(c) == PQTRANS_IDLE);
        /*
         * Its error ready but unread, then another PQsendQuery: refused as libpq
         * refuses a command while results are unread; the error stays the next result.
         */
        CHECK(PQsendQuery(c, "SELECT 1") == 1);
        struct pollfd p = {.fd = PQsocket(c), .events = POLLIN};
        int64_t end = itest_now_ms() + 8000;
        while (PQisBusy(c) && itest_now_ms() < end) {
                (void)poll(&p, 1, 100);
                CHECK(PQconsumeInput(c) == 1);
        }
        CHECK_MSG(!PQisBusy(c), "the lease's failure did not come");
        CHECK(PQsendQuery(c, "SELECT 5") == 0);
        expect_busy_refusal(c);
        expect_lease_failure(c);
        /* Its error left unread, then PQexec: discarded, not the next command's result. */
        CHECK(PQsendQuery(c, "SELECT 1") == 1);
        exec_expect(c, "SELECT 2", PGRES_FATAL_ERROR); /* no session free for it either */
        exec_expect(holder, "COMMIT", PGRES_COMMAND_OK);
        CHECK(PQsendQuery(c, "SELECT 4") == 1);
        async_expect(c, PGRES_TUPLES_OK, "4");
        CHECK(strcmp(itest_query(c, "SELECT 3"), "3") == 0);
        CHECK(!strstr(PQerrorMessage(c), "no connection free"));
        PQfinish(holder);
        PQfinish(c);
        stop();
}

static void test_many_connections_on_one_session(void)
{
        enum {
                N = 6
        };
        start("it_txmode_many", "pool_size = 1\nmax_overflow = 0\n");
        PGconn *c[N];
        for (int i = 0; i < N; i++)
                c[i] = connect_ok();
        for (int round = 0; round < 5; round++)
                for (int i = 0; i < N; i++) {
                        char sql[64], want[16];
                        snprintf(sql, sizeof(sql), "SELECT %d", round * N + i);
                        snprintf(want, sizeof(want), "%d", round * N + i);
                        CHECK(strcmp(itest_query(c[i], sql), want) == 0);
                }
        CHECK(itest_pool(&sup).live <= 1);
        for (int i = 0; i < N; i++)
                PQfinish(c[i]);
        stop();
}

static void test_fork(void)
{
        start("it_txmode_fork", "pool_size = 2\nmax_overflow = 0\n");
        PGconn *c = connect_ok();
        CHECK(strcmp(itest_query(c, "SELECT 1"), "1") == 0);
        pid_t pid = fork();
        if (pid == 0) {
                /* An idle inherited connection: the child leases a session of its own. */
                PGresult *res = PQexec(c, "SELECT pg_backend_pid()");
                int ok = PQresultStatus(res) == PGRES_TUPLES_OK &&
                         atoi(PQgetvalue(res, 0, 0)) == PQbackendPID(c);
                PQclear(res);
                PQfinish(c);
                _exit(ok ? 0 : 1);
        }
        int status = itest_wait_child(pid, 10000);
        CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child could not lease");
        CHECK(strcmp(itest_query(c, "SELECT 7"), "7") == 0);

        /* Inside the parent's transaction: the child never touches that session. */
        exec_expect(c, "BEGIN", PGRES_COMMAND_OK);
        int parent_pid = PQbackendPID(c);
        pid = fork();
        if (pid == 0) {
                PGresult *res = PQexec(c, "SELECT 1");
                int refused = PQresultStatus(res) == PGRES_FATAL_ERROR &&
                              strstr(PQresultErrorMessage(res), "parent process");
                PQclear(res);
                PQfinish(c);
                _exit(refused ? 0 : 1);
        }
        status = itest_wait_child(pid, 10000);
        CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "the child used the parent's transaction");
        CHECK(atoi(itest_query(c, "SELECT pg_backend_pid()")) == parent_pid);
        exec_expect(c, "COMMIT", PGRES_COMMAND_OK);
        CHECK(wait_checked_out(0) == 0);
        PQfinish(c);
        stop();
}

static void test_cancel(void)
{
        start("it_txmode_cancel", "pool_size = 2\nmax_overflow = 0\n");
        PGconn *c = connect_ok();
        PGcancel *cancel = PQgetCancel(c); /* taken while idle, as psycopg2 does */
        CHECK(cancel);
        char err[256] = "";
        CHECK(PQcancel(cancel, err, sizeof(err)) == 1); /* nothing runs: nothing is sent */
        CHECK(PQsendQuery(c, "SELECT pg_sleep(20)"));
        /* As an event loop does: the query goes out once its session has come. */
        int64_t until = itest_now_ms() + 300;
        while (itest_now_ms() < until) {
                struct pollfd p = {.fd = PQsocket(c), .events = POLLIN};
                (void)poll(&p, 1, 20);
                CHECK(PQconsumeInput(c));
        }
        CHECK(checked_out() == 1);
        int64_t t0 = itest_now_ms();
        CHECK_MSG(PQcancel(cancel, err, sizeof(err)) == 1, "%s", err);
        PGresult *res = PQgetResult(c);
        itest_check_cancelled(c, res, itest_now_ms() - t0, 5000, "PQcancel");
        CHECK(wait_checked_out(0) == 0);
        PQfreeCancel(cancel);
        CHECK(strcmp(itest_query(c, "SELECT 8"), "8") == 0);
        PQfinish(c);
        stop();
}

#ifdef LIBPQ_HAS_ASYNC_CANCEL
/*
 * libpq 17's cancel connections stop the session running the connection's
 * transaction at PQcancelStart() (made while idle, as a program keeps one):
 * nothing is sent while none runs; blocking and polled, from another thread.
 */
static void test_cancel_connection_api(void)
{
        start("it_txmode_cancelconn", "pool_size = 2\nmax_overflow = 0\n");
        PGconn *c = connect_ok();
        CHECK(wait_checked_out(0) == 0); /* idle: no session is this connection's */
        PGcancelConn *cancel = PQcancelCreate(c);
        CHECK(cancel && PQcancelStatus(cancel) == CONNECTION_ALLOCATED);
        CHECK_MSG(PQcancelBlocking(cancel) == 1, "%s", PQcancelErrorMessage(cancel));
        CHECK(PQcancelStatus(cancel) == CONNECTION_OK && checked_out() == 0);
        PQcancelReset(cancel);
        itest_cancel_sleep(c, cancel, false, "txmode-blocking");
        CHECK(wait_checked_out(0) == 0);
        PQcancelReset(cancel);
        itest_cancel_sleep(c, cancel, true, "txmode-polled");
        CHECK(wait_checked_out(0) == 0);
        PQcancelFinish(cancel);
        PQfinish(c);
        stop();
}
#endif

/*
 * Waits up to 20 s for the result of each c[i]'s command, "SELECT first + i",
 * checking its value. Returns how many never completed.
 */
static int collect_numbers(PGconn *const *c, int n, int first)
{
        bool done[64] = {false};
        int left = n;
        CHECK(n <= 64);
        int64_t end = itest_now_ms() + 20000;
        while (left > 0 && itest_now_ms() < end) {
                struct pollfd p[64];
                for (int i = 0; i < n; i++)
                        p[i] = (struct pollfd){.fd = done[i] ? -1 : PQsocket(c[i]),
                                               .events = POLLIN};
                (void)poll(p, (nfds_t)n, 50);
                for (int i = 0; i < n; i++) {
                        if (done[i])
                                continue;
                        CHECK(PQconsumeInput(c[i]) == 1);
                        if (PQisBusy(c[i]))
                                continue;
                        PGresult *res = PQgetResult(c[i]);
                        char want[16];
                        snprintf(want, sizeof(want), "%d", first + i);
                        CHECK_MSG(PQresultStatus(res) == PGRES_TUPLES_OK &&
                                          strcmp(PQgetvalue(res, 0, 0), want) == 0,
                                  "%d: %s", i, PQresultErrorMessage(res));
                        PQclear(res);
                        CHECK(PQgetResult(c[i]) == NULL);
                        done[i] = true;
                        left--;
                }
        }
        return left;
}

/*
 * More commands waiting at once in one process than forkpoold lets it open
 * control connections (an asyncio program with many connections): they wait
 * in the process and all complete, driven by one thread's event loop.
 */
static void test_more_waiting_than_control_connections(void)
{
        enum {
                N = 10
        };
        start_global("it_txmode_queue", "pool_size = 1\nmax_overflow = 0\n",
                     "max_connections_per_pid = 4\n");
        PGconn *c[N];
        for (int i = 0; i < N; i++)
                c[i] = connect_ok();
        for (int round = 0; round < 3; round++) {
                for (int i = 0; i < N; i++) {
                        char sql[64];
                        snprintf(sql, sizeof(sql), "SELECT %d", round * N + i);
                        CHECK_MSG(PQsendQuery(c[i], sql) == 1, "%d: %s", i, PQerrorMessage(c[i]));
                }
                int left = collect_numbers(c, N, round * N);
                CHECK_MSG(left == 0, "%d commands never completed", left);
        }
        CHECK(wait_checked_out(0) == 0);
        for (int i = 0; i < N; i++)
                PQfinish(c[i]);
        stop();
}

/*
 * Commands waiting in the process for a control connection while the pool's
 * segment cannot be read (here it is gone, as while forkpoold restarts; a
 * forkpoold descheduled in the middle of publishing makes it unreadable for
 * a moment): they wait for their session, they do not fail at once for want
 * of the pool's pool_timeout.
 */
static void test_queued_while_segment_unreadable(void)
{
        enum {
                N = 6
        };
        start_global("it_txmode_noseg", "pool_size = 1\nmax_overflow = 0\n",
                     "max_connections_per_pid = 2\n");
        PGconn *holder = connect_ok(), *c[N];
        for (int i = 0; i < N; i++)
                c[i] = connect_ok();
        exec_expect(holder, "BEGIN", PGRES_COMMAND_OK); /* the only session, held */
        char path[256];
        itest_segment_path(sup.socket, path, sizeof(path));
        CHECK(unlink(path) == 0);
        usleep(300000); /* past the readers' next look at the segment */
        for (int i = 0; i < N; i++) {
                char sql[32];
                snprintf(sql, sizeof(sql), "SELECT %d", i);
                CHECK_MSG(PQsendQuery(c[i], sql) == 1, "%d: %s", i, PQerrorMessage(c[i]));
        }
        usleep(300000);
        for (int i = 0; i < N; i++) {
                CHECK(PQconsumeInput(c[i]) == 1);
                CHECK_MSG(PQisBusy(c[i]), "command %d gave up waiting: %s", i,
                          PQerrorMessage(c[i]));
        }
        exec_expect(holder, "COMMIT", PGRES_COMMAND_OK);
        int left = collect_numbers(c, N, 0);
        CHECK_MSG(left == 0, "%d commands never completed", left);
        for (int i = 0; i < N; i++)
                PQfinish(c[i]);
        PQfinish(holder);
        stop();
}

/*
 * Non-blocking connects that must wait for a session, more of them than the
 * process may open control connections: the rest wait in the process (a
 * timer under PQsocket()) and every one connects once the session is free.
 */
static void test_more_connects_than_control_connections(void)
{
        enum {
                N = 8
        };
        start_global("it_txmode_cqueue", "pool_size = 1\nmax_overflow = 0\n",
                     "max_connections_per_pid = 4\n");
        PGconn *holder = connect_ok();
        exec_expect(holder, "BEGIN", PGRES_COMMAND_OK); /* no session free: the connects wait */
        PGconn *c[N];
        PostgresPollingStatusType st[N];
        for (int i = 0; i < N; i++) {
                c[i] = PQconnectStart(conninfo);
                CHECK(c[i] && PQstatus(c[i]) != CONNECTION_BAD);
                st[i] = PGRES_POLLING_WRITING;
        }
        int64_t release_at = itest_now_ms() + 300, end = itest_now_ms() + 20000;
        int left = N;
        while (left > 0 && itest_now_ms() < end) {
                if (holder && itest_now_ms() >= release_at) {
                        exec_expect(holder, "COMMIT", PGRES_COMMAND_OK);
                        PQfinish(holder);
                        holder = NULL;
                }
                struct pollfd p[N];
                for (int i = 0; i < N; i++) {
                        bool busy = st[i] != PGRES_POLLING_OK && st[i] != PGRES_POLLING_FAILED;
                        p[i] = (struct pollfd){.fd = busy ? PQsocket(c[i]) : -1,
                                               .events = st[i] == PGRES_POLLING_WRITING ? POLLOUT
                                                                                        : POLLIN};
                }
                (void)poll(p, N, 50);
                for (int i = 0; i < N; i++) {
                        if (st[i] == PGRES_POLLING_OK || st[i] == PGRES_POLLING_FAILED ||
                            !p[i].revents)
                                continue;
                        st[i] = PQconnectPoll(c[i]);
                        CHECK_MSG(st[i] != PGRES_POLLING_FAILED, "connect %d: %s", i,
                                  PQerrorMessage(c[i]));
                        left -= st[i] == PGRES_POLLING_OK;
                }
        }
        CHECK_MSG(left == 0, "%d connects never completed", left);
        for (int i = 0; i < N; i++) {
                char want[16];
                snprintf(want, sizeof(want), "%d", i);
                char sql[32];
                snprintf(sql, sizeof(sql), "SELECT %d", i);
                CHECK(strcmp(itest_query(c[i], sql), want) == 0);
        }
        CHECK(wait_checked_out(0) == 0);
        for (int i = 0; i < N; i++)
                PQfinish(c[i]);
        if (holder)
                PQfinish(holder);
        stop();
}

/* Sessions that died while the connection was idle (a server restart): one error, then it works. */
static void test_dead_session(void)
{
        start("it_txmode_dead", "pool_size = 2\nmax_overflow = 0\n");
        PGconn *admin = itest_admin();
        PGconn *c = connect_ok();
        int before = atoi(itest_query(c, "SELECT pg_backend_pid()"));
        CHECK(itest_admin_long(admin, "SELECT count(pg_terminate_backend(pid)) FROM "
                                      "pg_stat_activity WHERE application_name = "
                                      "'it_txmode_dead'") >= 1);
        usleep(300000); /* whether forkpoold notices first or the next lease finds it dead */
        PGresult *res = PQexec(c, "SELECT 1");
        ExecStatusType st = PQresultStatus(res);
        PQclear(res);
        if (st == PGRES_FATAL_ERROR)
                CHECK_MSG(PQstatus(c) == CONNECTION_OK, "the PGconn broke with its session: %s",
                          PQerrorMessage(c));
        int after = atoi(itest_query(c, "SELECT pg_backend_pid()"));
        CHECK(after != before && after == PQbackendPID(c));
        CHECK(wait_checked_out(0) == 0);
        PQfinish(c);
        PQfinish(admin);
        stop();
}

/* A PQsend* that must wait for a session does not block: PQsocket() wakes when it comes. */
static void test_send_waits_without_blocking(void)
{
        start("it_txmode_pending", "pool_size = 1\nmax_overflow = 0\n");
        PGconn *holder = connect_ok(), *c = connect_ok();
        exec_expect(holder, "BEGIN", PGRES_COMMAND_OK);
        int sock = PQsocket(c);
        int64_t t0 = itest_now_ms();
        const char *v[] = {"21"};
        CHECK(PQsendQueryParams(c, "SELECT $1::int * 2", 1, NULL, v, NULL, NULL, 0) == 1);
        CHECK_MSG(itest_now_ms() - t0 < 300, "PQsendQueryParams blocked %lld ms",
                  (long long)(itest_now_ms() - t0));
        CHECK(PQsocket(c) == sock);
        CHECK(PQisBusy(c) == 1);
        CHECK(PQconsumeInput(c) == 1);
        CHECK(PQflush(c) == 0);
        struct pollfd p = {.fd = sock, .events = POLLIN};
        CHECK(poll(&p, 1, 100) == 0); /* nothing yet */
        exec_expect(holder, "COMMIT", PGRES_COMMAND_OK);
        CHECK_MSG(poll(&p, 1, 5000) == 1, "PQsocket() did not wake when the session came");
        int64_t end = itest_now_ms() + 5000;
        while (itest_now_ms() < end) {
                CHECK(PQconsumeInput(c) == 1);
                if (!PQisBusy(c))
                        break;
                (void)poll(&p, 1, 100);
        }
        PGresult *res = PQgetResult(c);
        CHECK_MSG(PQresultStatus(res) == PGRES_TUPLES_OK &&
                          strcmp(PQgetvalue(res, 0, 0), "42") == 0,
                  "%s", PQresultErrorMessage(res));
        PQclear(res);
        CHECK(PQgetResult(c) == NULL);
        CHECK(PQsocket(c) == sock);
        CHECK(wait_checked_out(0) == 0);
        /* Single-row mode right after a command that waits for its session. */
        exec_expect(holder, "BEGIN", PGRES_COMMAND_OK);
        CHECK(PQsendQuery(c, "SELECT generate_series(1, 3)") == 1);
        int64_t t1 = itest_now_ms();
        exec_expect(holder, "COMMIT", PGRES_COMMAND_OK);
        CHECK(PQsetSingleRowMode(c) == 1);
        int rows = 0;
        while ((res = PQgetResult(c))) {
                rows += PQresultStatus(res) == PGRES_SINGLE_TUPLE;
                PQclear(res);
        }
        CHECK_MSG(rows == 3, "%d single rows", rows);
        CHECK(itest_now_ms() - t1 < 5000);
        /* A prepared statement sent while waiting, then run. */
        exec_expect(holder, "BEGIN", PGRES_COMMAND_OK);
        CHECK(PQsendPrepare(c, "twice", "SELECT $1::int * 2", 1, NULL) == 1);
        exec_expect(holder, "COMMIT", PGRES_COMMAND_OK);
        res = PQgetResult(c); /* blocks until the session comes */
        CHECK(PQresultStatus(res) == PGRES_COMMAND_OK);
        PQclear(res);
        CHECK(PQgetResult(c) == NULL);
        res = PQexecPrepared(c, "twice", 1, v, NULL, NULL, 0);
        CHECK(PQresultStatus(res) == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 0), "42") == 0);
        PQclear(res);
        PQfinish(holder);
        /* PQfinish while a command waits gives its acquire up. */
        PGconn *h2 = connect_ok();
        exec_expect(h2, "BEGIN", PGRES_COMMAND_OK);
        CHECK(PQsendQuery(c, "SELECT 1") == 1);
        PQfinish(c);
        exec_expect(h2, "COMMIT", PGRES_COMMAND_OK);
        CHECK(wait_checked_out(0) == 0);
        CHECK(strcmp(itest_query(h2, "SELECT 2"), "2") == 0);
        PQfinish(h2);
        stop();
}

static void test_nonblocking(void)
{
        start("it_txmode_nonblock", "pool_size = 1\nmax_overflow = 0\n");
        PGconn *c = PQconnectStart(conninfo);
        CHECK(c);
        PostgresPollingStatusType st = PGRES_POLLING_WRITING;
        int64_t end = itest_now_ms() + 5000;
        while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED && itest_now_ms() < end) {
                struct pollfd p = {.fd = PQsocket(c),
                                   .events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT};
                (void)poll(&p, 1, 100);
                st = PQconnectPoll(c);
        }
        CHECK_MSG(st == PGRES_POLLING_OK, "%s", PQerrorMessage(c));
        CHECK(wait_checked_out(0) == 0);
        CHECK(PQsetnonblocking(c, 1) == 0);
        CHECK(PQsendQuery(c, "SELECT pg_sleep(0.2), 5"));
        while (PQflush(c) > 0)
                ;
        end = itest_now_ms() + 5000;
        while (PQisBusy(c) && itest_now_ms() < end) {
                struct pollfd p = {.fd = PQsocket(c), .events = POLLIN};
                (void)poll(&p, 1, 100);
                CHECK(PQconsumeInput(c));
        }
        PGresult *res = PQgetResult(c);
        CHECK(PQresultStatus(res) == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 1), "5") == 0);
        PQclear(res);
        CHECK(PQgetResult(c) == NULL);
        CHECK(wait_checked_out(0) == 0);
        PQfinish(c);
        stop();
}

int main(void)
{
        test_idle_connection_holds_no_lease();
        test_release_points();
        test_pins();
        test_prepared_statements_across_sessions();
        test_prepared_once_per_session();
        test_prepared_untyped_and_stale();
        test_unread_results_then_exec();
        test_deallocate_refused();
        test_lease_failure_is_a_query_error();
        test_many_connections_on_one_session();
        test_fork();
        test_cancel();
#ifdef LIBPQ_HAS_ASYNC_CANCEL
        test_cancel_connection_api();
#endif
        test_nonblocking();
        test_send_waits_without_blocking();
        test_dead_session();
        test_more_waiting_than_control_connections();
        test_queued_while_segment_unreadable();
        test_more_connects_than_control_connections();
        printf("it_txmode: all passed\n");
        return 0;
}
