/* SPDX-License-Identifier: MIT */
/*
 * it_both.c — the core guarantees, once per database: every scenario here
 * runs against the real PostgreSQL and the real MariaDB that tests/run.sh
 * starts, through a small description of each database (its URL, how to ask
 * for the session's id, how to sleep, how to count a test's sessions, and
 * the client library's calls).
 *
 * Scenarios: acquire/query/release; the cap across processes; -ETIMEDOUT
 * timing and FIFO order; reset on return hides an uncommitted row; fork
 * after acquire (-ECHILD, the parent's lease keeps working); a holder killed
 * mid-transaction or mid-query is reclaimed within a second with nothing
 * committed; a killed supervisor, then a restarted one.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itest.h"

/* One database, as the scenarios see it. */
struct db {
        const char *name;
        const char *session_id_sql;   /* the session's id, as forkpool_lease_backend_pid() */
        const char *sleep_sql_fmt;    /* sleeps %s seconds */
        const char *backends_sql_fmt; /* sessions of test %s */
        /* Prepares app's namespace and returns the pool URL for it (static buffer). */
        const char *(*url)(const char *app);
        void *(*admin)(const char *app);
        void (*admin_close)(void *admin);
        /* Runs sql; fails the test unless it succeeds; returns row 0 column 0. */
        char *(*query)(void *conn, const char *sql);
        /* Runs sql; returns whether it succeeded. */
        bool (*try_query)(void *conn, const char *sql);
        /* Sends sql without waiting for its result. */
        bool (*send)(void *conn, const char *sql);
        bool (*in_transaction)(void *conn);
        void *(*adopt)(forkpool_lease *lease);
};

/* --- PostgreSQL --- */

static const char *pg_url(const char *app)
{
        return itest_url(app);
}

static void *pg_admin(const char *app)
{
        (void)app;
        PGconn *admin = itest_admin();
        itest_query(admin, "SET client_min_messages = warning"); /* no "does not exist" notices */
        return admin;
}

static void pg_admin_close(void *admin)
{
        PQfinish(admin);
}

static char *pg_query(void *conn, const char *sql)
{
        return itest_query(conn, sql);
}

static bool pg_try_query(void *conn, const char *sql)
{
        PGresult *res = PQexec(conn, sql);
        ExecStatusType st = PQresultStatus(res);
        PQclear(res);
        return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

static bool pg_send(void *conn, const char *sql)
{
        return PQsendQuery(conn, sql) && PQflush(conn) == 0;
}

static bool pg_in_transaction(void *conn)
{
        return PQtransactionStatus(conn) == PQTRANS_INTRANS;
}

static void *pg_adopt(forkpool_lease *lease)
{
        return forkpool_lease_pg(lease);
}

static const struct db pg_db = {
        .name = "postgresql",
        .session_id_sql = "SELECT pg_backend_pid()",
        .sleep_sql_fmt = "SELECT pg_sleep(%s)",
        .backends_sql_fmt = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = "
                            "'client backend' AND application_name = '%s'",
        .url = pg_url,
        .admin = pg_admin,
        .admin_close = pg_admin_close,
        .query = pg_query,
        .try_query = pg_try_query,
        .send = pg_send,
        .in_transaction = pg_in_transaction,
        .adopt = pg_adopt,
};

/* --- MariaDB: each test has its own database, which names its sessions --- */

static const char *my_url(const char *app)
{
        itest_my_create_db(app);
        return itest_my_url(app, NULL);
}

static void *my_admin(const char *app)
{
        return itest_my_admin(app);
}

static void my_admin_close(void *admin)
{
        mysql_close(admin);
}

static char *my_query(void *conn, const char *sql)
{
        return itest_my_query(conn, sql);
}

static bool my_try_query(void *conn, const char *sql)
{
        MYSQL *m = conn;
        if (mysql_query(m, sql) != 0)
                return false;
        MYSQL_RES *res = mysql_store_result(m);
        if (res)
                mysql_free_result(res);
        return mysql_errno(m) == 0;
}

static bool my_send(void *conn, const char *sql)
{
        return mysql_send_query(conn, sql, (unsigned long)strlen(sql)) == 0;
}

static bool my_in_transaction(void *conn)
{
        MYSQL *m = conn;
        return (m->server_status & SERVER_STATUS_IN_TRANS) != 0;
}

static void *my_adopt(forkpool_lease *lease)
{
        return forkpool_lease_mysql(lease);
}

static const struct db my_db = {
        .name = "mariadb",
        .session_id_sql = "SELECT CONNECTION_ID()",
        .sleep_sql_fmt = "SELECT SLEEP(%s)",
        .backends_sql_fmt = "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = '%s' "
                            "AND ID <> CONNECTION_ID()",
        .url = my_url,
        .admin = my_admin,
        .admin_close = my_admin_close,
        .query = my_query,
        .try_query = my_try_query,
        .send = my_send,
        .in_transaction = my_in_transaction,
        .adopt = my_adopt,
};

/* --- helpers over a description --- */

static int backends(const struct db *db, void *admin, const char *app)
{
        char sql[512];
        snprintf(sql, sizeof(sql), db->backends_sql_fmt, app);
        return atoi(db->query(admin, sql));
}

static int wait_backends(const struct db *db, void *admin, const char *app, int n, int timeout_ms)
{
        int64_t end = itest_now_ms() + timeout_ms;
        int count;
        while ((count = backends(db, admin, app)) != n && itest_now_ms() < end)
                usleep(20000);
        return count;
}

static void sleep_query(const struct db *db, void *conn, const char *seconds)
{
        char sql[128];
        snprintf(sql, sizeof(sql), db->sleep_sql_fmt, seconds);
        db->query(conn, sql);
}

static void *adopt(const struct db *db, forkpool_lease *lease)
{
        void *conn = db->adopt(lease);
        CHECK_MSG(conn, "%s: adoption failed: %s (%s)", db->name, strerror(errno),
                  forkpool_last_error());
        return conn;
}

static void start(const struct db *db, struct itest_sup *s, const char *app, const char *lines)
{
        itest_sup_start_url(s, db->url(app), lines, NULL);
}

/* --- the scenarios --- */

static void acquire_query_release(const struct db *db)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;
        const char *app = "itb_basic";

        start(db, &s, app, "pool_size = 2\nmax_overflow = 0\n");
        void *admin = db->admin(app);
        CHECK(backends(db, admin, app) == 0); /* lazy: nothing before an acquire */
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        void *c = adopt(db, lease);
        int session = atoi(db->query(c, db->session_id_sql));
        CHECK_MSG(session == forkpool_lease_backend_pid(lease), "session %d, lease says %d",
                  session, forkpool_lease_backend_pid(lease));
        CHECK(strcmp(db->query(c, "SELECT 40 + 2"), "42") == 0);
        struct fp_shm_pool st = itest_pool(&s);
        CHECK(st.checked_out == 1 && st.checked_in == 0);
        CHECK_OK(forkpool_release(lease));

        /* The same session comes back. */
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        c = adopt(db, lease);
        CHECK(atoi(db->query(c, db->session_id_sql)) == session);
        CHECK_OK(forkpool_release(lease));

        usleep(100000);
        st = itest_pool(&s);
        CHECK(st.checked_out == 0 && st.checked_in == 1);
        CHECK(st.counters.acquires == 2 && st.counters.releases == 2 && st.counters.connects == 1);
        CHECK(backends(db, admin, app) == 1);
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
        CHECK(wait_backends(db, admin, app, 0, 5000) == 0);
        db->admin_close(admin);
}

/* 20 processes on a 3+2 pool: never more than 5 sessions, all work done. */
static void cap_across_processes(const struct db *db)
{
        enum {
                PROCS = 20,
                ROUNDS = 15
        };
        struct itest_sup s;
        const char *app = "itb_cap";
        int *done = mmap(NULL, sizeof(int) * PROCS, PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        pid_t pids[PROCS];

        start(db, &s, app, "pool_size = 3\nmax_overflow = 2\npool_timeout = 30\n");
        void *admin = db->admin(app);
        for (int i = 0; i < PROCS; i++) {
                pids[i] = fork();
                CHECK(pids[i] >= 0);
                if (pids[i] == 0) {
                        forkpool *fp;
                        CHECK_OK(forkpool_open(s.socket, &fp));
                        for (int round = 0; round < ROUNDS; round++) {
                                forkpool_lease *lease;
                                CHECK_OK(forkpool_acquire(fp, "main", -1, &lease));
                                void *c = adopt(db, lease);
                                sleep_query(db, c, "0.01");
                                CHECK(atoi(db->query(c, db->session_id_sql)) ==
                                      forkpool_lease_backend_pid(lease));
                                CHECK_OK(forkpool_release(lease));
                                done[i]++;
                        }
                        forkpool_close(fp);
                        _exit(0);
                }
        }

        int max_seen = 0, max_out = 0;
        int64_t end = itest_now_ms() + 90000;
        for (;;) {
                int n = backends(db, admin, app);
                struct fp_shm_pool st = itest_pool(&s);
                max_seen = n > max_seen ? n : max_seen;
                max_out = st.checked_out > max_out ? st.checked_out : max_out;
                int total = 0;
                for (int i = 0; i < PROCS; i++)
                        total += done[i];
                if (total == PROCS * ROUNDS || itest_now_ms() > end)
                        break;
                usleep(5000);
        }
        for (int i = 0; i < PROCS; i++) {
                int status = itest_wait_child(pids[i], 30000);
                CHECK(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
        CHECK_MSG(max_seen <= 5, "saw %d sessions for a 3+2 pool", max_seen);
        CHECK_MSG(max_seen >= 3, "saw only %d sessions: no concurrency?", max_seen);
        CHECK(max_out <= 5);
        usleep(200000);
        struct fp_shm_pool st = itest_pool(&s);
        CHECK(st.checked_out == 0);
        CHECK(st.counters.acquires == PROCS * ROUNDS);
        CHECK_MSG(st.checked_in == 3, "checked_in %d", st.checked_in);
        CHECK(wait_backends(db, admin, app, 3, 5000) == 3);
        CHECK(itest_sup_stop(&s) == 0);
        db->admin_close(admin);
}

/* A waiter gives up at its own timeout; waiters are served first come, first served. */
static void timeout_and_fifo(const struct db *db)
{
        enum {
                WAITERS = 4
        };
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *held, *other;
        int order[2];
        pid_t pids[WAITERS];

        start(db, &s, "itb_fifo", "pool_size = 1\nmax_overflow = 0\npool_timeout = 0.4\n");
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", -1, &held));
        adopt(db, held); /* its release then reports an idle session: no reset */

        int64_t t0 = itest_now_ms();
        CHECK(forkpool_acquire(fp, "main", 300, &other) == -ETIMEDOUT);
        int64_t waited = itest_now_ms() - t0;
        CHECK_MSG(waited >= 250 && waited < 2000, "waited %lld ms for a 300 ms timeout",
                  (long long)waited);
        CHECK(strstr(forkpool_last_error(), "QueuePool limit of size 1 overflow 0 reached"));
        t0 = itest_now_ms();
        CHECK(forkpool_acquire(fp, "main", -1, &other) == -ETIMEDOUT);
        waited = itest_now_ms() - t0;
        CHECK_MSG(waited >= 350 && waited < 2000, "waited %lld ms for 0.4 s", (long long)waited);

        CHECK(pipe(order) == 0);
        for (int i = 0; i < WAITERS; i++) {
                pids[i] = fork();
                if (pids[i] == 0) {
                        forkpool *mine;
                        forkpool_lease *lease;
                        CHECK_OK(forkpool_open(s.socket, &mine));
                        CHECK_OK(forkpool_acquire(mine, "main", 20000, &lease));
                        adopt(db, lease);
                        char c = (char)('0' + i);
                        CHECK(write(order[1], &c, 1) == 1);
                        usleep(50000);
                        CHECK_OK(forkpool_release(lease));
                        _exit(0);
                }
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
static void reset_on_return(const struct db *db)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;
        const char *app = "itb_reset";

        start(db, &s, app, "pool_size = 1\nmax_overflow = 0\n");
        void *admin = db->admin(app);
        db->query(admin, "DROP TABLE IF EXISTS itb_reset");
        db->query(admin, "CREATE TABLE itb_reset (v int)");
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", -1, &lease));
        void *c = adopt(db, lease);
        int session = atoi(db->query(c, db->session_id_sql));
        db->query(c, "BEGIN");
        db->query(c, "INSERT INTO itb_reset VALUES (1)");
        CHECK(db->in_transaction(c));
        CHECK_OK(forkpool_release(lease));

        CHECK_OK(forkpool_acquire(fp, "main", -1, &lease));
        c = adopt(db, lease);
        CHECK(atoi(db->query(c, db->session_id_sql)) == session); /* reused, not replaced */
        CHECK(!db->in_transaction(c));
        CHECK(strcmp(db->query(c, "SELECT count(*) FROM itb_reset"), "0") == 0);
        CHECK_OK(forkpool_release(lease));
        CHECK(atoi(db->query(admin, "SELECT count(*) FROM itb_reset")) == 0);
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
        db->admin_close(admin);
}

static void fork_after_acquire(const struct db *db)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;
        const char *app = "itb_fork";

        start(db, &s, app, "pool_size = 2\nmax_overflow = 0\n");
        void *admin = db->admin(app);
        db->query(admin, "DROP TABLE IF EXISTS itb_fork");
        db->query(admin, "CREATE TABLE itb_fork (v int)");
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", -1, &lease));
        void *c = adopt(db, lease);
        db->query(c, "BEGIN");
        db->query(c, "INSERT INTO itb_fork VALUES (1)");
        int session = atoi(db->query(c, db->session_id_sql));

        pid_t pid = fork();
        if (pid == 0) {
                /* Every call on the parent's lease: -ECHILD, nothing touched. */
                CHECK(forkpool_release(lease) == -ECHILD);
                CHECK(forkpool_invalidate(lease) == -ECHILD);
                CHECK(forkpool_cancel(lease) == -ECHILD);
                CHECK(forkpool_lease_fd(lease) == -ECHILD);
                errno = 0;
                CHECK(db->adopt(lease) == NULL && errno == ECHILD);
                /* Even misuse of the inherited handle cannot reach the parent's session. */
                CHECK(!db->try_query(c, "COMMIT"));
                /* The child gets its own lease through its own control connection. */
                forkpool_lease *mine;
                CHECK_OK(forkpool_acquire(fp, "main", 5000, &mine));
                void *mc = adopt(db, mine);
                CHECK(atoi(db->query(mc, db->session_id_sql)) != session);
                CHECK_OK(forkpool_release(mine));
                forkpool_close(fp);
                _exit(0);
        }
        int status = itest_wait_child(pid, 20000);
        CHECK_MSG(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "child failed (status %d)", status);

        /* The parent's lease and its transaction are untouched. */
        CHECK(db->in_transaction(c));
        CHECK(atoi(db->query(c, db->session_id_sql)) == session);
        CHECK(atoi(db->query(admin, "SELECT count(*) FROM itb_fork")) == 0);
        db->query(c, "INSERT INTO itb_fork VALUES (2)");
        db->query(c, "COMMIT");
        CHECK_OK(forkpool_release(lease));
        CHECK(atoi(db->query(admin, "SELECT count(*) FROM itb_fork")) == 2);

        usleep(100000);
        struct fp_shm_pool st = itest_pool(&s);
        CHECK(st.checked_out == 0 && st.counters.reclaims == 0);
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
        db->admin_close(admin);
}

static void holder_killed(const struct db *db, bool mid_query)
{
        struct itest_sup s;
        int ready[2];
        const char *app = mid_query ? "itb_death_q" : "itb_death_t";

        start(db, &s, app, "pool_size = 1\nmax_overflow = 0\n");
        void *admin = db->admin(app);
        db->query(admin, "DROP TABLE IF EXISTS itb_death");
        db->query(admin, "CREATE TABLE itb_death (v int)");
        CHECK(pipe(ready) == 0);
        pid_t pid = fork();
        if (pid == 0) {
                forkpool *fp;
                forkpool_lease *lease;
                CHECK_OK(forkpool_open(s.socket, &fp));
                CHECK_OK(forkpool_acquire(fp, "main", -1, &lease));
                void *c = adopt(db, lease);
                db->query(c, "BEGIN");
                db->query(c, "INSERT INTO itb_death VALUES (1)");
                if (mid_query) {
                        char sql[64];
                        snprintf(sql, sizeof(sql), db->sleep_sql_fmt, "60");
                        CHECK(db->send(c, sql));
                }
                CHECK(write(ready[1], "x", 1) == 1);
                pause();
                _exit(0);
        }
        char x;
        close(ready[1]); /* a child that fails before it is ready: EOF, not a hang */
        CHECK(read(ready[0], &x, 1) == 1);
        usleep(100000);
        CHECK(itest_pool(&s).checked_out == 1);
        int64_t t0 = itest_now_ms();
        kill(pid, SIGKILL);
        while (itest_pool(&s).checked_out != 0 && itest_now_ms() - t0 < 5000)
                usleep(2000);
        int64_t took = itest_now_ms() - t0;
        CHECK_MSG(took < 1000, "reclaimed after %lld ms", (long long)took);
        waitpid(pid, NULL, 0);

        struct fp_shm_pool st = itest_pool(&s);
        CHECK(st.counters.reclaims == 1 && st.checked_out == 0);
        /* Its session is gone (never reused) and nothing was committed. */
        CHECK(wait_backends(db, admin, app, 0, 5000) == 0);
        CHECK(atoi(db->query(admin, "SELECT count(*) FROM itb_death")) == 0);

        /* The pool serves the next worker with a new session. */
        forkpool *fp;
        forkpool_lease *lease;
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        CHECK(strcmp(db->query(adopt(db, lease), "SELECT count(*) FROM itb_death"), "0") == 0);
        CHECK_OK(forkpool_release(lease));
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
        db->admin_close(admin);
}

static void holder_killed_mid_transaction(const struct db *db)
{
        holder_killed(db, false);
}

static void holder_killed_mid_query(const struct db *db)
{
        holder_killed(db, true);
}

static void supervisor_killed(const struct db *db)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease, *other;
        const char *app = "itb_supkill";

        start(db, &s, app, "pool_size = 2\nmax_overflow = 0\n");
        void *admin = db->admin(app);
        db->query(admin, "DROP TABLE IF EXISTS itb_supkill");
        db->query(admin, "CREATE TABLE itb_supkill (v int)");
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", -1, &lease));
        void *c = adopt(db, lease);
        db->query(c, "BEGIN");
        db->query(c, "INSERT INTO itb_supkill VALUES (1)");

        itest_sup_kill(&s);
        /* The lease keeps working: the socket is ours. */
        db->query(c, "INSERT INTO itb_supkill VALUES (2)");
        db->query(c, "COMMIT");
        CHECK(atoi(db->query(admin, "SELECT count(*) FROM itb_supkill")) == 2);

        /* New acquires fail fast and say why. */
        int64_t t0 = itest_now_ms();
        int r = forkpool_acquire(fp, "main", 5000, &other);
        CHECK_MSG(r == -ECONNREFUSED || r == -ECONNRESET, "acquire gave %d", r);
        CHECK(itest_now_ms() - t0 < 1000);
        CHECK_OK(forkpool_release(lease));

        /* A restarted supervisor replaces the stale socket and segment and serves again. */
        itest_sup_restart(&s);
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &other));
        CHECK(strcmp(db->query(adopt(db, other), "SELECT count(*) FROM itb_supkill"), "2") == 0);
        CHECK_OK(forkpool_release(other));
        CHECK(itest_pool(&s).counters.acquires == 1);
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
        db->admin_close(admin);
}

/* One test function per scenario and database. */
#define BOTH(scenario)                                                                             \
        static void pg_##scenario(void)                                                            \
        {                                                                                          \
                scenario(&pg_db);                                                                  \
        }                                                                                          \
        static void my_##scenario(void)                                                            \
        {                                                                                          \
                scenario(&my_db);                                                                  \
        }

BOTH(acquire_query_release)
BOTH(cap_across_processes)
BOTH(timeout_and_fifo)
BOTH(reset_on_return)
BOTH(fork_after_acquire)
BOTH(holder_killed_mid_transaction)
BOTH(holder_killed_mid_query)
BOTH(supervisor_killed)

/* clang-format off */
#define CASES(scenario, timeout_s)                                                         \
        {"postgresql/" #scenario, pg_##scenario, timeout_s},                               \
        {"mariadb/" #scenario, my_##scenario, timeout_s}
/* clang-format on */

ITEST_MAIN(CASES(acquire_query_release, 60), CASES(cap_across_processes, 150),
           CASES(timeout_and_fifo, 60), CASES(reset_on_return, 60), CASES(fork_after_acquire, 60),
           CASES(holder_killed_mid_transaction, 60), CASES(holder_killed_mid_query, 60),
           CASES(supervisor_killed, 60))
