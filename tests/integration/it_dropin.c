/* SPDX-License-Identifier: MIT */
/*
 * it_dropin.c — the libpq drop-in, seen from a program that only knows
 * libpq: run with the drop-in in front of the real libpq (ctest puts its
 * directory on LD_LIBRARY_PATH, the way a service would), it checks that
 * the drop-in exports exactly the real library's symbols; that a connection
 * addressed to forkpool's socket directory is a lease (blocking, through
 * each open function) and PQfinish a release; that a non-blocking connect to
 * a busy pool hands out a pollable socket and finishes when a connection
 * comes back; PQreset, cancel (and libpq 17's cancel connections), ping, PQhost/PQport/PQconninfo;
 * every refusal and failure as a clean CONNECTION_BAD with its reason; that other connections pass
 * through untouched; fork safety; that a session coming back to the process comes back in the
 * PGconn it had, with nothing of the previous holder left; and the switch that turns it off.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-events.h>
#include <poll.h>
#include <pwd.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itest.h"

static struct itest_sup sup;
static char conninfo[512];
static PGconn *admin;

static void start(const char *app, const char *lines)
{
        itest_sup_start(&sup, app, lines, NULL);
        snprintf(conninfo, sizeof(conninfo), "host=%s dbname=main", sup.dir);
}

static void stop(void)
{
        CHECK(itest_sup_stop(&sup) == 0);
}

static PGconn *connect_ok(const char *extra)
{
        char info[768];
        snprintf(info, sizeof(info), "%s %s", conninfo, extra ? extra : "");
        PGconn *c = PQconnectdb(info);
        CHECK_MSG(PQstatus(c) == CONNECTION_OK, "%s: %s", info, PQerrorMessage(c));
        return c;
}

/* Connects with conninfo + extra, expects failure, returns the message (static). */
static const char *connect_fails(const char *extra)
{
        static char message[1024];
        char info[768];
        snprintf(info, sizeof(info), "%s %s", conninfo, extra ? extra : "");
        PGconn *c = PQconnectdb(info);
        CHECK_MSG(PQstatus(c) == CONNECTION_BAD, "%s connected", info);
        snprintf(message, sizeof(message), "%s", PQerrorMessage(c));
        PQfinish(c);
        CHECK_MSG(strchr(message, '\n') == message + strlen(message) - 1, "not one line: [%s]",
                  message);
        return message;
}

static int checked_out(void)
{
        return (int)itest_pool(&sup).checked_out;
}

static int wait_checked_out(int n)
{
        return itest_wait_checked_out(&sup, n);
}

static void test_exports_match_real_libpq(void)
{
        char ours[16384], real[16384];
        CHECK(itest_sh(ours, sizeof(ours),
                       "nm -D --defined-only %s | awk '{print $3}' | sort | tr '\\n' ' '",
                       FP_DROPIN_PATH) == 0);
        CHECK(itest_sh(real, sizeof(real),
                       "nm -D --defined-only %s | awk '{print $3}' | sort | tr '\\n' ' '",
                       FP_REAL_LIBPQ) == 0);
        CHECK_MSG(strcmp(ours, real) == 0, "exports differ:\n%s\n%s", ours, real);
        CHECK(strstr(ours, "PQconnectdb ") && !strstr(ours, "forkpool_") && !strstr(ours, "fp_"));
        /* It carries no MySQL client and no libpq of its own. */
        CHECK(itest_sh(ours, sizeof(ours), "readelf -d %s | grep NEEDED | tr '\\n' ' '",
                       FP_DROPIN_PATH) == 0);
        CHECK_MSG(!strstr(ours, "mariadb") && !strstr(ours, "mysql") && !strstr(ours, "libpq"),
                  "%s", ours);
}

static void test_connect_is_a_lease(void)
{
        start("it_dropin_lease", "pool_size = 2\nmax_overflow = 0\n");
        PGconn *a = connect_ok(NULL);
        CHECK(strcmp(itest_query(a, "SELECT current_setting('application_name')"),
                     "it_dropin_lease") == 0);
        CHECK(strcmp(PQhost(a), sup.dir) == 0);
        const char *port = getenv("PGPORT") ? getenv("PGPORT") : "5432"; /* as libpq's */
        CHECK_MSG(strcmp(PQport(a), port) == 0, "PQport %s", PQport(a));
        CHECK(strcmp(PQdb(a), "main") == 0);
        CHECK(PQbackendPID(a) == atoi(itest_query(a, "SELECT pg_backend_pid()")));
        PQconninfoOption *opts = PQconninfo(a);
        for (PQconninfoOption *o = opts; o->keyword; o++)
                if (strcmp(o->keyword, "host") == 0)
                        CHECK_MSG(o->val && strcmp(o->val, sup.dir) == 0, "host=%s", o->val);
        PQconninfoFree(opts);
        CHECK(checked_out() == 1);

        /* The other open functions lease too. */
        const char *keys[] = {"host", "dbname", NULL};
        const char *vals[] = {sup.dir, "main", NULL};
        PGconn *b = PQconnectdbParams(keys, vals, 0);
        CHECK_MSG(PQstatus(b) == CONNECTION_OK, "%s", PQerrorMessage(b));
        CHECK(checked_out() == 2);
        PQfinish(b);
        CHECK(wait_checked_out(1) == 1);
        b = PQsetdbLogin(sup.dir, "5432", NULL, NULL, "main", NULL, NULL);
        CHECK_MSG(PQstatus(b) == CONNECTION_OK, "%s", PQerrorMessage(b));
        PQfinish(b);
        char uri[512];
        snprintf(uri, sizeof(uri), "postgresql:///main?host=%s", sup.dir);
        const char *ukeys[] = {"dbname", NULL};
        const char *uvals[] = {uri, NULL};
        b = PQconnectdbParams(ukeys, uvals, 1);
        CHECK_MSG(PQstatus(b) == CONNECTION_OK, "%s", PQerrorMessage(b));
        PQfinish(b);

        PQfinish(a);
        CHECK(wait_checked_out(0) == 0);
        /* Never more than the pool's connections. */
        CHECK(itest_backends(admin, "it_dropin_lease") <= 2);
        stop();
}

static void test_other_connections_pass_through(void)
{
        /* The scratch server's own socket directory: no forkpool there. */
        PGconn *c = PQconnectdb("");
        CHECK_MSG(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
        CHECK(strcmp(PQhost(c), getenv("PGHOST")) == 0);
        PQfinish(c);
}

/*
 * Drives a non-blocking connect or reset with poll_fn from status st (what
 * the last poll returned) to its end; returns the final poll status.
 */
static PostgresPollingStatusType
drive_async(PGconn *c, PostgresPollingStatusType (*poll_fn)(PGconn *), PostgresPollingStatusType st)
{
        while (st == PGRES_POLLING_READING || st == PGRES_POLLING_WRITING) {
                struct pollfd p = {.fd = PQsocket(c),
                                   .events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT};
                CHECK_MSG(poll(&p, 1, 5000) == 1, "the connect did not wake its socket");
                st = poll_fn(c);
        }
        return st;
}

static void test_nonblocking_connect_waits_without_blocking(void)
{
        start("it_dropin_async", "pool_size = 1\nmax_overflow = 0\npool_timeout = 10\n");
        PGconn *holder = connect_ok(NULL);

        int64_t t0 = itest_now_ms();
        PGconn *c = PQconnectStart(conninfo);
        CHECK(c && PQstatus(c) != CONNECTION_BAD);
        CHECK_MSG(itest_now_ms() - t0 < 1000, "PQconnectStart blocked");
        CHECK(PQconnectPoll(c) == PGRES_POLLING_READING);
        struct pollfd p = {.fd = PQsocket(c), .events = POLLIN};
        CHECK(p.fd >= 0 && poll(&p, 1, 300) == 0); /* nothing yet: the pool is busy */

        PQfinish(holder); /* the lease comes to us */
        PostgresPollingStatusType st = drive_async(c, PQconnectPoll, PGRES_POLLING_READING);
        CHECK_MSG(st == PGRES_POLLING_OK, "%s", PQerrorMessage(c));
        CHECK(PQstatus(c) == CONNECTION_OK);
        CHECK(strcmp(itest_query(c, "SELECT 41 + 1"), "42") == 0);

        /* A pending connect given up: its acquire is dropped, nothing stays leased. */
        PGconn *pending = PQconnectStart(conninfo);
        CHECK(pending);
        CHECK_MSG(PQconnectPoll(pending) == PGRES_POLLING_READING, "%s", PQerrorMessage(pending));
        PQfinish(pending);

        /*
         * A pending connect polled with PQresetPoll(), as ruby-pg 1.5's
         * PG::Connection#reset polls the new connection it starts: the same
         * as PQconnectPoll().
         */
        PGconn *by_reset = PQconnectStart(conninfo);
        CHECK(by_reset);
        st = PQresetPoll(by_reset);
        CHECK_MSG(st == PGRES_POLLING_READING, "%s", PQerrorMessage(by_reset));
        PQfinish(c); /* its lease goes to by_reset */
        st = drive_async(by_reset, PQresetPoll, st);
        CHECK_MSG(st == PGRES_POLLING_OK, "%s", PQerrorMessage(by_reset));
        CHECK(strcmp(itest_query(by_reset, "SELECT 43"), "43") == 0);
        PQfinish(by_reset);
        CHECK(wait_checked_out(0) == 0);
        c = connect_ok(NULL);
        PQfinish(c);
        stop();
}

/* Drives a non-blocking connect to its end; returns the final poll status. */
static PostgresPollingStatusType finish_async(PGconn *c)
{
        return drive_async(c, PQconnectPoll, PGRES_POLLING_WRITING);
}

static void test_waiting_connects_share_control_connections(void)
{
        /*
         * 40 connects that each had to wait, all holding their leases at the end:
         * more than forkpoold lets one process have control connections
         * (max_connections_per_pid, 32), so they must share them.
         */
        enum {
                N = 40
        };
        PGconn *blocking[N], *waited[N];
        start("it_dropin_waits", "pool_size = 40\nmax_overflow = 0\npool_timeout = 10\n");
        for (int i = 0; i < N; i++)
                blocking[i] = connect_ok(NULL);
        for (int i = 0; i < N; i++) {
                waited[i] = PQconnectStart(conninfo);
                CHECK(waited[i] && PQconnectPoll(waited[i]) == PGRES_POLLING_READING);
                PQfinish(blocking[i]); /* its connection goes to the one waiting */
                CHECK_MSG(finish_async(waited[i]) == PGRES_POLLING_OK, "connect %d: %s", i,
                          PQerrorMessage(waited[i]));
        }
        CHECK(checked_out() == N);
        for (int i = 0; i < N; i++) {
                CHECK(strcmp(itest_query(waited[i], "SELECT 1"), "1") == 0);
                PQfinish(waited[i]);
        }
        CHECK(wait_checked_out(0) == 0);
        stop();
}

static void test_timeout_is_a_clean_error(void)
{
        start("it_dropin_timeout", "pool_size = 1\nmax_overflow = 0\n");
        PGconn *holder = connect_ok(NULL);
        int64_t t0 = itest_now_ms();
        const char *msg = connect_fails("connect_timeout=2");
        int64_t took = itest_now_ms() - t0;
        CHECK_MSG(strstr(msg, "forkpool: pool \"main\": no connection free within 2 s (1 + 0 in "
                              "use"),
                  "%s", msg);
        CHECK_MSG(took >= 1500 && took < 8000, "took %lld ms", (long long)took);
        PQfinish(holder);
        stop();
}

static void test_refusals_name_their_reason(void)
{
        static const struct {
                const char *extra, *expect;
        } cases[] = {
                {"sslmode=require", "sslmode=require cannot be honoured"},
                {"sslmode=verify-full", "sslmode=verify-full cannot be honoured"},
                {"gssencmode=require", "gssencmode=require cannot be honoured"},
                {"replication=database", "replication connections cannot be leased"},
                {"options=-cwork_mem=1MB", "cannot be applied to a shared session"},
                {"target_session_attrs=read-write", "target_session_attrs=read-write"},
                {"user=somebody_else", "connects as user"},
                {"dbname=nosuchpool", "no pool \"nosuchpool\""},
                {"connect_timeout=soon", "invalid connect_timeout"},
        };
        start("it_dropin_refuse", NULL);
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                const char *msg = connect_fails(cases[i].extra);
                CHECK_MSG(strncmp(msg, "forkpool: ", 10) == 0 && strstr(msg, cases[i].expect),
                          "%s: %s", cases[i].extra, msg);
        }
        /* No dbname and no user anywhere: the pool is libpq's default, the login name. */
        char pw_buf[1024];
        struct passwd pw_entry, *me = NULL;
        CHECK(getpwuid_r(geteuid(), &pw_entry, pw_buf, sizeof(pw_buf), &me) == 0 && me);
        char *saved_db = getenv("PGDATABASE") ? strdup(getenv("PGDATABASE")) : NULL;
        char *saved_user = getenv("PGUSER") ? strdup(getenv("PGUSER")) : NULL;
        unsetenv("PGDATABASE");
        unsetenv("PGUSER");
        char bare[600], want[300];
        snprintf(bare, sizeof(bare), "host=%s", sup.dir);
        snprintf(want, sizeof(want), "no pool \"%s\"", me->pw_name);
        PGconn *c = PQconnectdb(bare);
        CHECK_MSG(PQstatus(c) == CONNECTION_BAD && strstr(PQerrorMessage(c), want), "%s: %s", bare,
                  PQerrorMessage(c));
        PQfinish(c);
        if (saved_db)
                setenv("PGDATABASE", saved_db, 1);
        if (saved_user)
                setenv("PGUSER", saved_user, 1);
        free(saved_db);
        free(saved_user);
        /* Ignored, not refused: what the leased session settles already. */
        c = connect_ok("sslmode=prefer password=x keepalives=1 hostaddr=127.0.0.1 "
                       "application_name=mine target_session_attrs=any port=6000");
        CHECK(strcmp(PQport(c), "6000") == 0);
        PQfinish(c);
        /* The non-blocking path says the same. */
        char info[768];
        snprintf(info, sizeof(info), "%s sslmode=require", conninfo);
        c = PQconnectStart(info);
        while (PQstatus(c) != CONNECTION_BAD && PQconnectPoll(c) != PGRES_POLLING_FAILED)
                ;
        CHECK_MSG(strstr(PQerrorMessage(c), "sslmode=require cannot be honoured"), "%s",
                  PQerrorMessage(c));
        PQfinish(c);
        CHECK(wait_checked_out(0) == 0);
        stop();
}

static void test_no_supervisor(void)
{
        /* A socket file nobody listens on: what a crashed forkpoold leaves. */
        char dir[] = "/tmp/fp-it-dead.XXXXXX", path[64];
        CHECK(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/forkpool.sock", dir);
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
        int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
        CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0);
        close(fd);
        snprintf(conninfo, sizeof(conninfo), "host=%s dbname=main", dir);
        const char *msg = connect_fails(NULL);
        CHECK_MSG(strstr(msg, "forkpool: no forkpoold is running at"), "%s", msg);
        CHECK(PQping(conninfo) == PQPING_NO_RESPONSE);
        unlink(path);
        rmdir(dir);
}

static void test_database_down(void)
{
        /* A port where nothing listens. */
        struct itest_sup s;
        itest_sup_start_url(&s, "postgresql://nobody@127.0.0.1:9/none?connect_timeout=2",
                            "pool_size = 1\nmax_overflow = 0\npool_timeout = 3\n", NULL);
        snprintf(conninfo, sizeof(conninfo), "host=%s dbname=main", s.dir);
        const char *msg = connect_fails(NULL);
        CHECK_MSG(strstr(msg, "forkpool: pool \"main\": the database cannot be reached"), "%s",
                  msg);
        CHECK(itest_sup_stop(&s) == 0);
}

static void test_reset_gives_a_fresh_lease(void)
{
        start("it_dropin_reset", "pool_size = 2\nmax_overflow = 0\n");
        PGconn *c = connect_ok(NULL);
        itest_query(c, "CREATE TEMP TABLE mine (x int)");
        PQreset(c);
        CHECK_MSG(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
        /* Not this session's (the previous one may still be dropping it in its reset). */
        CHECK(strcmp(itest_query(c, "SELECT count(*) FROM pg_class WHERE relname = 'mine' AND "
                                    "relpersistence = 't' AND pg_table_is_visible(oid)"),
                     "0") == 0);
        CHECK(PQbackendPID(c) == atoi(itest_query(c, "SELECT pg_backend_pid()")));
        /* The old session counts as out until forkpoold's reset of it (a temp table) ends. */
        CHECK(wait_checked_out(1) == 1);
        CHECK(PQresetStart(c) == 1 && PQresetPoll(c) == PGRES_POLLING_OK);
        CHECK(strcmp(itest_query(c, "SELECT 1"), "1") == 0);
        PQfinish(c);
        CHECK(wait_checked_out(0) == 0);
        stop();
}

static void test_cancel_reaches_the_server(void)
{
        start("it_dropin_cancel", NULL);
        PGconn *c = connect_ok(NULL);
        PGcancel *cancel = PQgetCancel(c);
        CHECK(cancel);
        CHECK(PQsendQuery(c, "SELECT pg_sleep(20)"));
        usleep(200000);
        char err[256] = "";
        int64_t t0 = itest_now_ms();
        CHECK_MSG(PQcancel(cancel, err, sizeof(err)) == 1, "%s", err);
        PGresult *res = PQgetResult(c);
        itest_check_cancelled(c, res, itest_now_ms() - t0, 5000, "PQcancel");
        PQfreeCancel(cancel);

        CHECK(PQsendQuery(c, "SELECT pg_sleep(20)"));
        usleep(200000);
        t0 = itest_now_ms();
        CHECK(PQrequestCancel(c) == 1);
        res = PQgetResult(c);
        itest_check_cancelled(c, res, itest_now_ms() - t0, 20000, "PQrequestCancel");
        PQfinish(c);
        stop();
}

#ifdef LIBPQ_HAS_ASYNC_CANCEL
/*
 * libpq 17's cancel connections on a leased connection stop the statement
 * on the real server (not the private adoption listener), blocking and
 * polled, from another thread; one object serves again after
 * PQcancelReset(). A child after fork gets one that refuses with its reason;
 * a connection that is not forkpool's gets libpq's own.
 */
static void test_cancel_connection_api(void)
{
        start("it_dropin_cancelconn", NULL);
        PGconn *c = connect_ok(NULL);
        PGcancelConn *cancel = PQcancelCreate(c);
        CHECK(cancel);
        CHECK(PQcancelSocket(cancel) == -1 && PQcancelErrorMessage(cancel)[0] == '\0');
        itest_cancel_sleep(c, cancel, false, "dropin-blocking");
        CHECK(PQcancelSocket(cancel) == -1);
        CHECK(PQcancelStart(cancel) == 0 && strstr(PQcancelErrorMessage(cancel), "already"));
        PQcancelReset(cancel);
        itest_cancel_sleep(c, cancel, true, "dropin-polled");
        PQcancelFinish(cancel);

        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
                PGcancelConn *inherited = PQcancelCreate(c);
                _exit(inherited && PQcancelStatus(inherited) == CONNECTION_BAD &&
                                      PQcancelStart(inherited) == 0 &&
                                      strstr(PQcancelErrorMessage(inherited), "another process")
                              ? 0
                              : 1);
        }
        int status = itest_wait_child(pid, 30000);
        CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
        CHECK(strcmp(itest_query(c, "SELECT 1"), "1") == 0);

        PGcancelConn *other = PQcancelCreate(admin);
        CHECK(other && PQcancelStatus(other) == CONNECTION_ALLOCATED);
        CHECK_MSG(PQcancelBlocking(other) == 1, "%s", PQcancelErrorMessage(other));
        PQcancelFinish(other);
        PQfinish(c);
        CHECK(wait_checked_out(0) == 0);
        stop();
}
#endif

static void test_ping_answers_from_the_segment(void)
{
        start("it_dropin_ping", NULL);
        CHECK(PQping(conninfo) == PQPING_OK);
        char info[512];
        snprintf(info, sizeof(info), "host=%s dbname=nosuchpool", sup.dir);
        CHECK(PQping(info) == PQPING_REJECT);
        CHECK(itest_pool(&sup).counters.acquires == 0); /* no lease was taken for it */
        stop();
}

static void test_fork_child_cannot_use_parent_connection(void)
{
        start("it_dropin_fork", NULL);
        PGconn *c = connect_ok(NULL);
        pid_t pid = fork();
        if (pid == 0) {
                PGresult *res = PQexec(c, "SELECT 1");
                int ok = PQresultStatus(res) == PGRES_TUPLES_OK;
                PQclear(res);
                PQfinish(c); /* frees memory only */
                _exit(ok ? 1 : 0);
        }
        int status = itest_wait_child(pid, 10000);
        CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "the child used the parent's session");
        CHECK(strcmp(itest_query(c, "SELECT 7"), "7") == 0);
        CHECK(checked_out() == 1);
        PQfinish(c);
        CHECK(wait_checked_out(0) == 0);
        stop();
}

static int notices_seen;

static void count_notice(void *arg, const PGresult *res)
{
        (void)arg;
        (void)res;
        notices_seen++;
}

static int destroyed;

static int watch_destroy(PGEventId id, void *info, void *pass)
{
        (void)info;
        (void)pass;
        if (id == PGEVT_CONNDESTROY)
                destroyed++;
        return 1;
}

static void test_session_comes_back_in_the_same_pgconn(void)
{
        start("it_dropin_cache", "pool_size = 1\nmax_overflow = 0\n");
        PGconn *a = connect_ok(NULL);
        int pid = PQbackendPID(a);
        PQfinish(a);
        /*
         * A PGconn-sized allocation of libpq's own right after: had PQfinish freed
         * the PGconn, this one would likely take its memory.
         */
        PGconn *other = PQconnectStart("host=/nonexistent/dir port=1");
        PGconn *b = connect_ok(NULL);
        CHECK_MSG(b == a && other != a, "the session's PGconn was not kept");
        CHECK(PQbackendPID(b) == pid && PQstatus(b) == CONNECTION_OK);
        CHECK(atoi(itest_query(b, "SELECT pg_backend_pid()")) == pid);
        PQfinish(other);

        /* What a holder sets on its PGconn or in its session never reaches the next one. */
        PQsetNoticeReceiver(b, count_notice, NULL);
        CHECK(PQsetnonblocking(b, 1) == 0);
        PQsetErrorVerbosity(b, PQERRORS_VERBOSE);
        itest_query(b, "PREPARE mine AS SELECT 1");
        itest_query(b, "CREATE TEMP TABLE mine (x int)");
        itest_query(b, "SELECT pg_advisory_lock(4242)");
        itest_query(b, "LISTEN mine");
        itest_query(b, "NOTIFY mine, 'for the first holder'");
        PQfinish(b);

        PGconn *c = connect_ok(NULL);
        CHECK(atoi(itest_query(c, "SELECT pg_backend_pid()")) == pid); /* the same session */
        CHECK(!PQisnonblocking(c));
        CHECK(PQnotifies(c) == NULL);
        itest_query(c, "DO $$BEGIN RAISE NOTICE 'to the default receiver'; END$$");
        CHECK_MSG(notices_seen == 0, "the first holder's notice receiver was called");
        CHECK(strcmp(itest_query(c, "SELECT count(*) FROM pg_prepared_statements"), "0") == 0);
        /* Not this session's (the previous one may still be dropping it in its reset). */
        CHECK(strcmp(itest_query(c, "SELECT count(*) FROM pg_class WHERE relname = 'mine' AND "
                                    "relpersistence = 't' AND pg_table_is_visible(oid)"),
                     "0") == 0);
        CHECK(strcmp(itest_query(c, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"),
                     "0") == 0);
        CHECK(strcmp(itest_query(c, "SELECT count(*) FROM pg_listening_channels()"), "0") == 0);

        /* A changed reported parameter: the PGconn must learn the session's real value. */
        itest_query(c, "SET TimeZone = 'Asia/Tokyo'");
        PQfinish(c);
        PGconn *d = connect_ok(NULL);
        const char *tz = PQparameterStatus(d, "TimeZone");
        CHECK_MSG(tz && strcmp(tz, itest_query(d, "SHOW TimeZone")) == 0, "TimeZone %s", tz);

        /* A PGconn with the application's event procedure is really finished. */
        CHECK(PQregisterEventProc(d, watch_destroy, "it_dropin", NULL));
        PQfinish(d);
        CHECK_MSG(destroyed == 1, "the application's event procedure did not see PQfinish");
        CHECK(wait_checked_out(0) == 0);
        stop();
}

/*
 * it_dropin --fake-libpq: in front of a libpq with one function, a present one
 * forwards and a missing one fails cleanly, saying which.
 */
static int fake_libpq_child(void)
{
        if (PQlibVersion() != 150042)
                return 2;
        return PQserverVersion(NULL) == 0 ? 0 : 3;
}

/* it_dropin --two-copies COPY CONNINFO: another libpq in the process: pass through. */
static int two_copies_child(const char *copy, const char *info)
{
        void *wheel = dlopen(copy, RTLD_NOW | RTLD_LOCAL);
        if (!wheel)
                return 2;
        PGconn *c = PQconnectdb(info);
        int passed_through =
                PQstatus(c) == CONNECTION_BAD && !strstr(PQerrorMessage(c), "forkpool:");
        PQfinish(c);
        dlclose(wheel);
        return passed_through ? 0 : 3;
}

static void test_missing_symbol_is_a_clear_error(void)
{
        char out[2048];
        int r = itest_sh(out, sizeof(out), "FORKPOOL_REAL_LIBPQ=%s /proc/%d/exe --fake-libpq 2>&1",
                         FP_FAKE_LIBPQ, (int)getpid());
        CHECK_MSG(r == 0 && strstr(out, "has no PQserverVersion()"), "exit %d: %s", r, out);
}

static void test_second_libpq_passes_through(void)
{
        start("it_dropin_copies", NULL);
        char dir[] = "/tmp/fp-it-copy.XXXXXX", out[2048];
        CHECK(mkdtemp(dir));
        CHECK(itest_sh(NULL, 0, "cp %s %s/libpq-wheel.so.5", FP_REAL_LIBPQ, dir) == 0);
        int r = itest_sh(out, sizeof(out),
                         "/proc/%d/exe --two-copies %s/libpq-wheel.so.5 '%s' 2>&1", (int)getpid(),
                         dir, conninfo);
        CHECK_MSG(r == 0 && strstr(out, "another libpq is loaded in this process"), "exit %d: %s",
                  r, out);
        itest_sh(NULL, 0, "rm -rf %s", dir);
        stop();
}

/* it_dropin --connect CONNINFO: one connect, its outcome on stdout (for a fresh process). */
static int connect_once(const char *info)
{
        PGconn *c = PQconnectdb(info);
        if (PQstatus(c) == CONNECTION_OK)
                printf("ok %s\n", itest_query(c, "SELECT 6 * 7"));
        else
                printf("bad %s", PQerrorMessage(c));
        PQfinish(c);
        return 0;
}

static void test_switched_off(void)
{
        start("it_dropin_off", NULL);
        char out[2048];
        /* A fresh process of this program: the switch is read once per process. */
        itest_sh(out, sizeof(out), "FORKPOOL_DROPIN=off /proc/%d/exe --connect '%s' 2>&1",
                 (int)getpid(), conninfo);
        CHECK_MSG(strncmp(out, "bad ", 4) == 0 && strstr(out, "/.s.PGSQL.") &&
                          !strstr(out, "forkpool:"),
                  "%s", out);
        itest_sh(out, sizeof(out), "/proc/%d/exe --connect '%s' 2>&1", (int)getpid(), conninfo);
        CHECK_MSG(strncmp(out, "ok 42", 5) == 0, "%s", out);
        stop();
}

int main(int argc, char **argv)
{
        if (argc == 3 && strcmp(argv[1], "--connect") == 0)
                return connect_once(argv[2]);
        if (argc == 2 && strcmp(argv[1], "--fake-libpq") == 0)
                return fake_libpq_child();
        if (argc == 4 && strcmp(argv[1], "--two-copies") == 0)
                return two_copies_child(argv[2], argv[3]);
        admin = itest_admin();
        test_exports_match_real_libpq();
        test_connect_is_a_lease();
        test_other_connections_pass_through();
        test_nonblocking_connect_waits_without_blocking();
        test_waiting_connects_share_control_connections();
        test_timeout_is_a_clean_error();
        test_refusals_name_their_reason();
        test_no_supervisor();
        test_database_down();
        test_reset_gives_a_fresh_lease();
        test_cancel_reaches_the_server();
#ifdef LIBPQ_HAS_ASYNC_CANCEL
        test_cancel_connection_api();
#endif
        test_ping_answers_from_the_segment();
        test_fork_child_cannot_use_parent_connection();
        test_session_comes_back_in_the_same_pgconn();
        test_switched_off();
        test_missing_symbol_is_a_clear_error();
        test_second_libpq_passes_through();
        PQfinish(admin);
        printf("it_dropin: all passed\n");
        return 0;
}
