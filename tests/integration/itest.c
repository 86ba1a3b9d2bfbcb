/* SPDX-License-Identifier: MIT */
/*
 * itest.c — integration test helpers (itest.h).
 */
#include "itest.h"

#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

_Noreturn void itest_fail(const char *file, int line, const char *fmt, ...)
{
        va_list ap;
        fprintf(stderr, "%s:%d: ", file, line);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        fflush(stderr);
        _exit(1);
}

int64_t itest_now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *itest_url(const char *app)
{
        static char buf[1024];
        const char *url = getenv("FORKPOOL_TEST_PG_URL");
        CHECK_MSG(url && *url, "FORKPOOL_TEST_PG_URL is not set: run the tests with tests/run.sh");
        snprintf(buf, sizeof(buf), "%s%sapplication_name=%s", url, strchr(url, '?') ? "&" : "?",
                 app);
        return buf;
}

static void write_file(const char *path, const char *text)
{
        FILE *f = fopen(path, "w");
        CHECK_MSG(f, "cannot write %s: %s", path, strerror(errno));
        fputs(text, f);
        fclose(f);
}

/* True once something accepts connections on path (a stale file does not). */
static bool socket_accepts(const char *path)
{
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        if (strlen(path) >= sizeof(addr.sun_path))
                return false;
        memcpy(addr.sun_path, path, strlen(path) + 1);
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0;
        if (fd >= 0)
                close(fd);
        return ok;
}

static void sup_spawn(struct itest_sup *s)
{
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
                FILE *log = freopen(s->log, "a", stderr);
                (void)log;
                /* Nothing of ctest's: a failed test's supervisor must not hold its pipe. */
                (void)dup2(STDERR_FILENO, STDOUT_FILENO);
                /* And it ends with the test, however the test ended. */
                (void)prctl(PR_SET_PDEATHSIG, SIGTERM);
                execl(FP_FORKPOOLD_PATH, "forkpoold", "--config", s->config, "--log-level", "debug",
                      (char *)NULL);
                _exit(127);
        }
        s->pid = pid;
        for (int i = 0; i < 500; i++) {
                int status;
                if (socket_accepts(s->socket))
                        return;
                if (waitpid(pid, &status, WNOHANG) == pid) {
                        char buf[2048] = "";
                        itest_sh(buf, sizeof(buf), "tail -5 %s", s->log);
                        itest_fail(__FILE__, __LINE__, "forkpoold exited with %d:\n%s",
                                   WIFEXITED(status) ? WEXITSTATUS(status) : -1, buf);
                }
                usleep(10000);
        }
        itest_fail(__FILE__, __LINE__, "forkpoold did not create %s", s->socket);
}

void itest_sup_start(struct itest_sup *s, const char *app, const char *pool_lines,
                     const char *global_lines)
{
        itest_sup_start_url(s, itest_url(app), pool_lines, global_lines);
}

void itest_sup_start_url(struct itest_sup *s, const char *url, const char *pool_lines,
                         const char *global_lines)
{
        char text[4096];

        memset(s, 0, sizeof(*s));
        snprintf(s->dir, sizeof(s->dir), "/tmp/fp-it.XXXXXX");
        CHECK(mkdtemp(s->dir));
        chmod(s->dir, 0755);
        snprintf(s->socket, sizeof(s->socket), "%s/forkpool.sock", s->dir);
        snprintf(s->config, sizeof(s->config), "%s/forkpool.conf", s->dir);
        snprintf(s->log, sizeof(s->log), "%s/forkpoold.log", s->dir);
        snprintf(text, sizeof(text),
                 "[forkpool]\nsocket = %s\nshutdown_grace = 5\n%s\n[pool main]\nurl = %s\n%s",
                 s->socket, global_lines ? global_lines : "", url, pool_lines ? pool_lines : "");
        write_file(s->config, text);
        /* It may hold a password: forkpoold refuses such a file if everyone may read it. */
        chmod(s->config, 0600);
        sup_spawn(s);
}

void itest_sup_restart(struct itest_sup *s)
{
        sup_spawn(s);
}

int itest_sup_stop(struct itest_sup *s)
{
        int status = -1;
        if (s->pid > 0) {
                kill(s->pid, SIGTERM);
                status = itest_wait_child(s->pid, 15000);
                s->pid = 0;
        }
        if (getenv("ITEST_KEEP_LOGS") == NULL && s->dir[0])
                itest_sh(NULL, 0, "rm -rf %s", s->dir);
        return status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void itest_sup_kill(struct itest_sup *s)
{
        if (s->pid > 0) {
                kill(s->pid, SIGKILL);
                itest_wait_child(s->pid, 5000);
                s->pid = 0;
        }
}

PGconn *itest_admin(void)
{
        PGconn *c = PQconnectdb("application_name=itest_admin");
        CHECK_MSG(PQstatus(c) == CONNECTION_OK, "admin connection: %s", PQerrorMessage(c));
        return c;
}

long itest_admin_long(PGconn *admin, const char *sql)
{
        PGresult *res = PQexec(admin, sql);
        CHECK_MSG(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", sql, PQresultErrorMessage(res));
        long v = PQntuples(res) > 0 ? atol(PQgetvalue(res, 0, 0)) : -1;
        PQclear(res);
        return v;
}

int itest_backends(PGconn *admin, const char *app)
{
        char sql[256];
        snprintf(sql, sizeof(sql),
                 "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                 "AND application_name = '%s'",
                 app);
        return (int)itest_admin_long(admin, sql);
}

int itest_wait_backends(PGconn *admin, const char *app, int n, int timeout_ms)
{
        int64_t end = itest_now_ms() + timeout_ms;
        int count;
        while ((count = itest_backends(admin, app)) != n && itest_now_ms() < end)
                usleep(20000);
        return count;
}

char *itest_query(PGconn *c, const char *sql)
{
        static char value[1024];
        PGresult *res = PQexec(c, sql);
        ExecStatusType st = PQresultStatus(res);
        CHECK_MSG(st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK, "%s: %s", sql,
                  PQresultErrorMessage(res));
        value[0] = '\0';
        if (st == PGRES_TUPLES_OK && PQntuples(res) > 0)
                snprintf(value, sizeof(value), "%s", PQgetvalue(res, 0, 0));
        PQclear(res);
        return value;
}

#ifdef LIBPQ_HAS_ASYNC_CANCEL
struct cancel_job {
        PGcancelConn *cancel;
        bool polled;
        char sql[128];
        int64_t sent_ms; /* when the cancel was sent */
        int ok;
        char error[256];
};

/* Waits (on its own direct connection) for job's statement to run, then cancels it. */
static void *cancel_thread(void *arg)
{
        struct cancel_job *job = arg;
        PGconn *watch = itest_admin();
        char sql[512];
        snprintf(sql, sizeof(sql),
                 "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = '%s'",
                 job->sql);
        CHECK_SOON(itest_admin_long(watch, sql) == 1, 20000, "'%s' did not start running",
                   job->sql);
        PQfinish(watch);
        job->sent_ms = itest_now_ms();
        if (!job->polled) {
                job->ok = PQcancelBlocking(job->cancel);
        } else {
                PostgresPollingStatusType r = PGRES_POLLING_WRITING;
                job->ok = PQcancelStart(job->cancel);
                int64_t deadline = itest_now_ms() + 10000;
                while (job->ok && r != PGRES_POLLING_OK && r != PGRES_POLLING_FAILED &&
                       itest_now_ms() < deadline) {
                        struct pollfd p = {.fd = PQcancelSocket(job->cancel),
                                           .events = r == PGRES_POLLING_READING ? POLLIN : POLLOUT};
                        CHECK(p.fd >= 0);
                        (void)poll(&p, 1, 1000);
                        r = PQcancelPoll(job->cancel);
                }
                job->ok = job->ok && r == PGRES_POLLING_OK;
        }
        job->ok = job->ok && PQcancelStatus(job->cancel) == CONNECTION_OK;
        snprintf(job->error, sizeof(job->error), "%s", PQcancelErrorMessage(job->cancel));
        return NULL;
}

void itest_cancel_sleep(PGconn *c, PGcancelConn *cancel, bool polled, const char *tag)
{
        struct cancel_job job = {.cancel = cancel, .polled = polled};
        pthread_t thread;
        CHECK_MSG(PQcancelStatus(cancel) == CONNECTION_ALLOCATED, "cancel status %d: %s",
                  (int)PQcancelStatus(cancel), PQcancelErrorMessage(cancel));
        snprintf(job.sql, sizeof(job.sql), "SELECT pg_sleep(30) /* %s */", tag);
        CHECK(PQsendQuery(c, job.sql));
        CHECK(pthread_create(&thread, NULL, cancel_thread, &job) == 0);
        PGresult *res = PQgetResult(c);
        int64_t ended_ms = itest_now_ms();
        CHECK(pthread_join(thread, NULL) == 0);
        CHECK_MSG(job.ok, "%s: the cancel failed: %s", tag, job.error);
        itest_check_cancelled(c, res, ended_ms - job.sent_ms, 10000, tag);
        CHECK_MSG(strcmp(itest_query(c, "SELECT 57014"), "57014") == 0, "%s: not usable after",
                  tag);
}
#endif

void itest_check_cancelled(PGconn *c, PGresult *res, int64_t elapsed_ms, int max_ms,
                           const char *tag)
{
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        CHECK_MSG(PQresultStatus(res) == PGRES_FATAL_ERROR && state &&
                          strcmp(state, "57014") == 0 &&
                          strstr(PQresultErrorMessage(res), "canceling statement"),
                  "%s: the statement ended with %s: %s", tag, state ? state : "no SQLSTATE",
                  PQresultErrorMessage(res));
        CHECK_MSG(elapsed_ms < max_ms, "%s: the statement ended %lld ms after the cancel", tag,
                  (long long)elapsed_ms);
        PQclear(res);
        while ((res = PQgetResult(c)))
                PQclear(res);
}

int itest_sh(char *buf, size_t len, const char *fmt, ...)
{
        char cmd[2048];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(cmd, sizeof(cmd), fmt, ap);
        va_end(ap);

        FILE *p = popen(cmd, "r");
        if (!p)
                return -1;
        size_t used = 0;
        if (buf && len > 0) {
                size_t n;
                while (used + 1 < len && (n = fread(buf + used, 1, len - 1 - used, p)) > 0)
                        used += n;
                buf[used] = '\0';
        } else {
                char sink[512];
                while (fread(sink, 1, sizeof(sink), p) > 0)
                        ;
        }
        int status = pclose(p);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int itest_wait_child(pid_t pid, int timeout_ms)
{
        int64_t end = itest_now_ms() + timeout_ms;
        int status;
        for (;;) {
                pid_t r = waitpid(pid, &status, WNOHANG);
                if (r == pid)
                        return status;
                if (r < 0)
                        return -1;
                if (itest_now_ms() > end) {
                        kill(pid, SIGKILL);
                        waitpid(pid, &status, 0);
                        return -1;
                }
                usleep(5000);
        }
}

int itest_status_json(const struct itest_sup *s, char *buf, size_t len)
{
        return itest_sh(buf, len, "%s --socket %s status --json", FP_FORKPOOLCTL_PATH, s->socket);
}

int itest_wait_checked_out(const struct itest_sup *s, int n)
{
        int64_t end = itest_now_ms() + 5000;
        int now;
        while ((now = (int)itest_pool(s).checked_out) != n && itest_now_ms() < end)
                usleep(5000);
        return now;
}

struct fp_shm_pool itest_pool(const struct itest_sup *s)
{
        struct fp_segment seg;
        struct fp_shm_pool pool;

        int r = fp_segment_find(&seg, s->socket);
        CHECK_MSG(r >= 0, "cannot find the segment of %s: %s", s->socket, strerror(-r));
        /* A busy writer can outlast one snapshot's retries: try again a little later. */
        for (int attempt = 0; attempt < 100; attempt++) {
                r = fp_segment_snapshot(&seg, 0, &pool, NULL, 0);
                if (r != -EAGAIN)
                        break;
                usleep(1000);
        }
        fp_segment_close(&seg);
        CHECK_MSG(r >= 0, "cannot snapshot pool 0: %s", strerror(-r));
        return pool;
}

void itest_segment_path(const char *socket_path, char *buf, size_t len)
{
        struct fp_segment seg;
        int r = fp_segment_find(&seg, socket_path);
        CHECK_MSG(r >= 0, "cannot find the segment of %s: %s", socket_path, strerror(-r));
        snprintf(buf, len, "/dev/shm%s", seg.name);
        fp_segment_close(&seg);
}

int itest_run(const struct itest_case *cases, size_t n)
{
        int passed = 0, failed = 0;

        /* ITEST_ONLY=substring runs only the matching cases (by hand, while debugging). */
        const char *only = getenv("ITEST_ONLY");

        setvbuf(stdout, NULL, _IONBF, 0);
        for (size_t i = 0; i < n; i++) {
                if (only && *only && !strstr(cases[i].name, only))
                        continue;
                int64_t start = itest_now_ms();
                pid_t pid = fork();
                if (pid == 0) {
                        /* Its own process group: whatever it starts is stopped with it. */
                        setpgid(0, 0);
                        cases[i].fn();
                        _exit(0);
                }
                setpgid(pid, pid);
                int timeout_s = cases[i].timeout_s > 0 ? cases[i].timeout_s : 60;
                int status = itest_wait_child(pid, timeout_s * 1000);
                /* Leftovers of a failed case (its forkpoold, its workers): stop them. */
                if (kill(-pid, SIGTERM) == 0) {
                        usleep(300000);
                        kill(-pid, SIGKILL);
                }
                bool ok = status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
                if (status < 0)
                        fprintf(stderr, "%s: timed out after %d s\n", cases[i].name, timeout_s);
                else if (WIFSIGNALED(status))
                        fprintf(stderr, "%s: killed by signal %d\n", cases[i].name,
                                WTERMSIG(status));
                printf("%s %s (%lld ms)\n", ok ? "ok  " : "FAIL", cases[i].name,
                       (long long)(itest_now_ms() - start));
                ok ? passed++ : failed++;
        }
        printf("%d passed, %d failed\n", passed, failed);
        return failed ? 1 : 0;
}

/* --- MySQL/MariaDB --- */

static const char *required_env(const char *name)
{
        const char *v = getenv(name);
        CHECK_MSG(v && *v, "%s is not set: run the tests with tests/run.sh", name);
        return v;
}

const char *itest_my_url(const char *db, const char *extra)
{
        static char buf[1024];
        const char *url = required_env("FORKPOOL_TEST_MY_URL");
        const char *auth_end = strstr(url, "://");
        CHECK(auth_end);
        const char *path = strchr(auth_end + 3, '/');
        CHECK_MSG(path, "FORKPOOL_TEST_MY_URL has no database: %s", url);
        const char *query = strchr(path, '?');
        snprintf(buf, sizeof(buf), "%.*s/%s%s%s%s", (int)(path - url), url, db, query ? query : "",
                 extra ? (query ? "&" : "?") : "", extra ? extra : "");
        return buf;
}

MYSQL *itest_my_admin(const char *db)
{
        MYSQL *m = mysql_init(NULL);
        CHECK(m);
        if (!mysql_real_connect(m, NULL, required_env("FORKPOOL_TEST_MY_USER"),
                                required_env("FORKPOOL_TEST_MY_PASSWORD"), db, 0,
                                required_env("FORKPOOL_TEST_MY_SOCKET"), CLIENT_MULTI_STATEMENTS))
                itest_fail(__FILE__, __LINE__, "MariaDB admin connection: %s", mysql_error(m));
        return m;
}

char *itest_my_query(MYSQL *m, const char *sql)
{
        static char value[1024];
        bool first = true;

        value[0] = '\0';
        CHECK_MSG(mysql_query(m, sql) == 0, "%s: %s", sql, mysql_error(m));
        do {
                MYSQL_RES *res = mysql_store_result(m);
                CHECK_MSG(res || mysql_field_count(m) == 0, "%s: %s", sql, mysql_error(m));
                if (res && first) {
                        MYSQL_ROW row = mysql_fetch_row(res);
                        if (row && mysql_num_fields(res) > 0)
                                snprintf(value, sizeof(value), "%s", row[0] ? row[0] : "NULL");
                }
                if (res) {
                        first = false;
                        mysql_free_result(res);
                }
        } while (mysql_next_result(m) == 0);
        CHECK_MSG(mysql_errno(m) == 0, "%s: %s", sql, mysql_error(m));
        return value;
}

long itest_my_long(MYSQL *m, const char *sql)
{
        return atol(itest_my_query(m, sql));
}

void itest_my_create_db(const char *db)
{
        char sql[256];
        MYSQL *m = itest_my_admin(NULL);
        snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS `%s`", db);
        itest_my_query(m, sql);
        snprintf(sql, sizeof(sql), "CREATE DATABASE `%s`", db);
        itest_my_query(m, sql);
        mysql_close(m);
}

int itest_my_backends(MYSQL *admin, const char *db)
{
        char sql[256];
        snprintf(sql, sizeof(sql),
                 "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = '%s' "
                 "AND ID <> CONNECTION_ID()",
                 db);
        return (int)itest_my_long(admin, sql);
}

int itest_my_wait_backends(MYSQL *admin, const char *db, int n, int timeout_ms)
{
        int64_t end = itest_now_ms() + timeout_ms;
        int count;
        while ((count = itest_my_backends(admin, db)) != n && itest_now_ms() < end)
                usleep(20000);
        return count;
}

/* contrib/scratch-<kind>.sh restart DIR MODE, the test failing unless it succeeds. */
static void scratch_restart(const char *kind, const char *dir_env, const char *mode)
{
        char out[2048] = "";
        int rc = itest_sh(out, sizeof(out), "%s/scratch-%s.sh restart %s %s 2>&1", FP_CONTRIB_DIR,
                          kind, required_env(dir_env), mode);
        CHECK_MSG(rc == 0, "%s restart (%s) failed: %s", kind, mode, out);
}

void itest_pg_restart(const char *mode)
{
        scratch_restart("pg", "FORKPOOL_TEST_PG_SOCKET_DIR", mode);
}

void itest_my_restart(const char *mode)
{
        scratch_restart("mariadb", "FORKPOOL_TEST_MY_DIR", mode);
}

pid_t itest_fork_as(const char *user)
{
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
                struct passwd *pw = getpwnam(user);
                CHECK(pw);
                CHECK(setgroups(0, NULL) == 0);
                CHECK(setgid(0) == 0);
                CHECK(setuid(pw->pw_uid) == 0);
        }
        return pid;
}

int itest_child_exit(pid_t pid, int timeout_ms)
{
        int status = itest_wait_child(pid, timeout_ms);
        CHECK(status >= 0 && WIFEXITED(status));
        return WEXITSTATUS(status);
}
