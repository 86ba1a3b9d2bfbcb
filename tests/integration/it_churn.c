/* SPDX-License-Identifier: MIT */
/*
 * it_churn.c — nothing is lost under churn. Hundreds of worker processes
 * lease at random from a PostgreSQL pool and a MariaDB pool small enough that
 * most of them wait: transactions that commit, transactions that fail and roll
 * back, writes left uncommitted, long queries, cancels, forks whose child
 * leases on its own. Meanwhile the test SIGKILLs workers at any moment
 * (waiting, holding, mid-query, with writes uncommitted), restarts forkpoold
 * through the fd store (SIGTERM, and SIGKILL as a crash; fake_systemd.h) and
 * restarts both database servers (fast and immediate shutdown).
 *
 * Every query checks that its answer is its own (a random token, and the
 * session id the lease names). Afterwards, with everything quiet: no row an
 * uncommitted or failed transaction wrote is visible, every commit a worker
 * saw acknowledged is there, no slot is out, no descriptor, backend or
 * segment is left over, and the pools' counters agree with the servers'
 * session lists. The figures are printed for the README.
 *
 * Environment: FORKPOOL_CHURN_SECONDS (default 60) how long the churn runs,
 * FORKPOOL_CHURN_WORKERS (default 200) how many workers run at once. The
 * database restarts use contrib/scratch-pg.sh and contrib/scratch-mariadb.sh
 * on the servers tests/run.sh started ($FORKPOOL_TEST_PG_SOCKET_DIR,
 * $FORKPOOL_TEST_MY_DIR).
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mysqld_error.h>
#include <errmsg.h>

#include "fake_systemd.h"
#include "itest.h"

#define MAX_WORKERS   1024
#define MAX_DETAILS   8
#define APP           "it_churn"
#define MY_DB         "it_churn"
#define POOL_SIZE     4
#define POOL_OVERFLOW 2
#define ACQUIRE_MS    30000
/* Errors this long after a fault ended are still the fault's. */
#define FAULT_SLACK_MS 15000
/* At most this many workers hold a lease while their child leases too. */
#define MAX_FORKING 2
#define ERRNO_MAX   160

/* What a worker is doing, as the killer sees it. */
enum wstate {
        W_IDLE,        /* between leases */
        W_WAITING,     /* in forkpool_acquire() */
        W_HOLDING,     /* holding a lease, between queries */
        W_QUERY,       /* a query running */
        W_UNCOMMITTED, /* holding rows written by a transaction that will never commit */
        W_STATES,
};
static const char *const wstate_names[W_STATES] = {"idle", "waiting", "holding", "mid-query",
                                                   "uncommitted"};

enum stat {
        ST_LEASES_PG,
        ST_LEASES_MY,
        ST_QUERIES,     /* answers checked */
        ST_COMMITS,     /* commits acknowledged */
        ST_ROLLBACKS,   /* failed transactions rolled back */
        ST_UNCOMMITTED, /* transactions left open with a row written */
        ST_LONG,        /* pg_sleep / SLEEP queries */
        ST_CANCELS,
        ST_FORKS,
        ST_ECHILD,             /* a child's call on its parent's lease refused with -ECHILD */
        ST_FAULT_ERRORS_LEASE, /* open/acquire/adopt errors while a fault was on (or just after) */
        ST_FAULT_ERRORS_QUERY, /* query errors while a fault was on (or just after) */
        ST_UNEXPLAINED,        /* errors with no fault to explain them */
        ST_MISMATCHES,         /* answers that were not the query's own */
        ST_WORKERS,            /* worker processes started */
        ST_CLEAN_EXITS,        /* workers that ended by themselves */
        ST_MAX,
};

struct wslot {
        pid_t pid;
        uint32_t state;
        uint32_t forking; /* counted in churn_shared.forking */
};

/* Shared by the test and every worker (MAP_SHARED | MAP_ANONYMOUS). */
struct churn_shared {
        uint64_t stat[ST_MAX];
        struct wslot w[MAX_WORKERS];
        int32_t stop;
        int32_t fault_active;
        int64_t last_fault_end_ms;
        int32_t forking;
        uint32_t n_details;
        char details[MAX_DETAILS][320];
        uint64_t lease_errno[ERRNO_MAX]; /* open/acquire errors during faults, by errno */
};

static struct churn_shared *shared;
static char socket_path[128];

static void stat_add(enum stat s)
{
        __atomic_fetch_add(&shared->stat[s], 1, __ATOMIC_RELAXED);
}

static uint64_t stat_get(enum stat s)
{
        return __atomic_load_n(&shared->stat[s], __ATOMIC_RELAXED);
}

/* A small per-process generator (xorshift64*). */
static uint64_t rng_state;

static uint32_t rnd(uint32_t n)
{
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return n ? (uint32_t)((rng_state * 2685821657736338717ull) >> 33) % n : 0;
}

static void rng_seed(uint64_t seed)
{
        rng_state = seed ? seed : 88172645463325252ull;
        for (int i = 0; i < 4; i++)
                rnd(1);
}

/* Keeps the first few detailed reports for the summary (and prints each). */
static void detail(const char *kind, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void detail(const char *kind, const char *fmt, ...)
{
        char text[300];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        fprintf(stderr, "[%d] %s: %s\n", getpid(), kind, text);
        uint32_t i = __atomic_fetch_add(&shared->n_details, 1, __ATOMIC_RELAXED);
        if (i < MAX_DETAILS)
                snprintf(shared->details[i], sizeof(shared->details[i]), "%s: %s", kind, text);
}

/* --- one lease, either database --- */

enum qres {
        Q_OK,
        Q_SQL_ERROR,
        Q_BROKEN
};

struct answer {
        int nrows;
        char v[2][128]; /* row 0, columns 0 and 1 */
        char code[8];   /* SQLSTATE (PostgreSQL) or error number (MariaDB) */
        char err[200];
};

struct lease_ctx {
        bool pg;
        int slot;
        forkpool_lease *lease;
        PGconn *pgc;
        MYSQL *my;
        char token[64];
};

static int64_t now_ms(void)
{
        return itest_now_ms();
}

static void set_state(int slot, enum wstate s)
{
        if (slot >= 0)
                __atomic_store_n(&shared->w[slot].state, (uint32_t)s, __ATOMIC_RELAXED);
}

/* Whether an error now is explained by a fault (a restart running or just over). */
static bool fault_explains(void)
{
        return __atomic_load_n(&shared->fault_active, __ATOMIC_RELAXED) ||
               now_ms() - __atomic_load_n(&shared->last_fault_end_ms, __ATOMIC_RELAXED) <
                       FAULT_SLACK_MS;
}

static void error_seen(const char *what, const char *text)
{
        if (fault_explains()) {
                bool lease = strncmp(what, "acquire", 7) == 0 || strncmp(what, "forkpool_", 9) == 0;
                stat_add(lease ? ST_FAULT_ERRORS_LEASE : ST_FAULT_ERRORS_QUERY);
                return;
        }
        stat_add(ST_UNEXPLAINED);
        detail("unexplained error", "%s: %s", what, text);
}

/* An error of forkpool_open() or forkpool_acquire(): counted as error_seen(), and by errno. */
static void lease_error_seen(const char *what, int r)
{
        char text[200];
        snprintf(text, sizeof(text), "%s (%s)", forkpool_strerror(r), forkpool_last_error());
        if (fault_explains() && -r > 0 && -r < ERRNO_MAX)
                __atomic_fetch_add(&shared->lease_errno[-r], 1, __ATOMIC_RELAXED);
        error_seen(what, text);
}

static void mismatch(const struct lease_ctx *c, const char *sql, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void mismatch(const struct lease_ctx *c, const char *sql, const char *fmt, ...)
{
        char text[200];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        stat_add(ST_MISMATCHES);
        detail("MISMATCH", "%s lease (backend %d): %.80s: %s", c->pg ? "postgresql" : "mariadb",
               forkpool_lease_backend_pid(c->lease), sql, text);
}

static void answer_copy_row(struct answer *a, int ncols, const char *v0, const char *v1)
{
        a->nrows++;
        if (a->nrows == 1) {
                snprintf(a->v[0], sizeof(a->v[0]), "%s", ncols > 0 && v0 ? v0 : "");
                snprintf(a->v[1], sizeof(a->v[1]), "%s", ncols > 1 && v1 ? v1 : "");
        }
}

static enum qres pg_result(PGconn *pgc, PGresult *res, struct answer *a)
{
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
                for (int i = 0; i < PQntuples(res); i++)
                        answer_copy_row(a, PQnfields(res), PQgetvalue(res, i, 0),
                                        PQnfields(res) > 1 ? PQgetvalue(res, i, 1) : NULL);
                return Q_OK;
        }
        const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        snprintf(a->code, sizeof(a->code), "%s", code ? code : "");
        snprintf(a->err, sizeof(a->err), "%s",
                 res ? PQresultErrorMessage(res) : PQerrorMessage(pgc));
        a->err[strcspn(a->err, "\n")] = '\0';
        /* Connection failures, and the server's shutdown (57P01…57P03). */
        if (PQstatus(pgc) == CONNECTION_BAD || !code || strncmp(code, "08", 2) == 0 ||
            strncmp(code, "57P", 3) == 0)
                return Q_BROKEN;
        return Q_SQL_ERROR;
}

/* Reads every result of the query sent on a PostgreSQL lease; the first decides. */
static enum qres pg_collect(PGconn *pgc, struct answer *a)
{
        enum qres q = Q_OK;
        bool first = true;
        PGresult *res;
        while ((res = PQgetResult(pgc))) {
                enum qres r = pg_result(pgc, res, a);
                if (first)
                        q = r;
                first = false;
                PQclear(res);
        }
        if (first) {
                snprintf(a->err, sizeof(a->err), "no result: %s", PQerrorMessage(pgc));
                return Q_BROKEN;
        }
        return PQstatus(pgc) == CONNECTION_BAD ? Q_BROKEN : q;
}

static enum qres my_error(MYSQL *m, struct answer *a)
{
        unsigned int e = mysql_errno(m);
        snprintf(a->code, sizeof(a->code), "%u", e);
        snprintf(a->err, sizeof(a->err), "%s", mysql_error(m));
        if (e == CR_SERVER_GONE_ERROR || e == CR_SERVER_LOST || e == ER_CONNECTION_KILLED ||
            e == ER_SERVER_SHUTDOWN || e >= 2000)
                return Q_BROKEN;
        return Q_SQL_ERROR;
}

/* Reads the result of the query sent on a MariaDB lease. */
static enum qres my_collect(MYSQL *m, struct answer *a)
{
        MYSQL_RES *res = mysql_store_result(m);
        if (!res)
                return mysql_field_count(m) == 0 ? Q_OK : my_error(m, a);
        MYSQL_ROW row;
        unsigned int ncols = mysql_num_fields(res);
        while ((row = mysql_fetch_row(res)))
                answer_copy_row(a, (int)ncols, row[0], ncols > 1 ? row[1] : NULL);
        mysql_free_result(res);
        return Q_OK;
}

/* Runs one statement on the lease, blocking. */
static enum qres run_sql(struct lease_ctx *c, const char *sql, struct answer *a)
{
        memset(a, 0, sizeof(*a));
        if (c->pg) {
                if (!PQsendQuery(c->pgc, sql)) {
                        snprintf(a->err, sizeof(a->err), "send: %s", PQerrorMessage(c->pgc));
                        return Q_BROKEN;
                }
                return pg_collect(c->pgc, a);
        }
        if (mysql_query(c->my, sql) != 0)
                return my_error(c->my, a);
        return my_collect(c->my, a);
}

/* Outcome of one step of a lease. */
enum step {
        STEP_GO_ON,
        STEP_RELEASE,
        STEP_INVALIDATE
};

/* A statement that must succeed; an error is counted (a fault's, or unexplained). */
static bool must(struct lease_ctx *c, const char *sql, struct answer *a, enum step *ret)
{
        enum qres q = run_sql(c, sql, a);
        if (q == Q_OK)
                return true;
        char what[160];
        snprintf(what, sizeof(what), "%s %.100s", c->pg ? "postgresql" : "mariadb", sql);
        error_seen(what, a->err);
        *ret = STEP_INVALIDATE;
        return false;
}

static void new_token(struct lease_ctx *c)
{
        snprintf(c->token, sizeof(c->token), "t%d_%08x%08x", getpid(), rnd(UINT32_MAX),
                 rnd(UINT32_MAX));
}

/* SELECT '<token>', <session id>: both must be this lease's own. */
static enum step step_select(struct lease_ctx *c)
{
        char sql[160];
        struct answer a;
        enum step st = STEP_GO_ON;
        new_token(c);
        snprintf(sql, sizeof(sql), "SELECT '%s', %s", c->token,
                 c->pg ? "pg_backend_pid()" : "CONNECTION_ID()");
        if (!must(c, sql, &a, &st))
                return st;
        stat_add(ST_QUERIES);
        if (a.nrows != 1 || strcmp(a.v[0], c->token) != 0 ||
            atoi(a.v[1]) != forkpool_lease_backend_pid(c->lease)) {
                mismatch(c, sql, "got %d rows, '%s', session %s", a.nrows, a.v[0], a.v[1]);
                return STEP_INVALIDATE;
        }
        return STEP_GO_ON;
}

/* INSERT a row tagged tag under a new token, inside the open transaction. */
static bool insert_row(struct lease_ctx *c, const char *tag, enum step *ret)
{
        char sql[200];
        struct answer a;
        new_token(c);
        snprintf(sql, sizeof(sql), "INSERT INTO churn (token, tag, worker) VALUES ('%s', '%s', %d)",
                 c->token, tag, getpid());
        return must(c, sql, &a, ret);
}

/* The tag of this token's row as the lease sees it, checked against want ("" = no row). */
static bool check_row(struct lease_ctx *c, const char *want, enum step *ret)
{
        char sql[160];
        struct answer a;
        snprintf(sql, sizeof(sql), "SELECT tag, token FROM churn WHERE token = '%s'", c->token);
        if (!must(c, sql, &a, ret))
                return false;
        stat_add(ST_QUERIES);
        bool ok = *want ? a.nrows == 1 && strcmp(a.v[0], want) == 0 && strcmp(a.v[1], c->token) == 0
                        : a.nrows == 0;
        if (!ok) {
                mismatch(c, sql, "got %d rows, tag '%s', want '%s'", a.nrows, a.v[0], want);
                *ret = STEP_INVALIDATE;
        }
        return ok;
}

/* Opens a transaction and writes a row tagged tag in it (a new token). */
static bool begin_with_row(struct lease_ctx *c, const char *tag, enum step *ret)
{
        struct answer a;
        if (!must(c, c->pg ? "BEGIN" : "START TRANSACTION", &a, ret))
                return false;
        /* The scratch server runs with synchronous_commit = off; an acknowledged commit must
         * survive an immediate shutdown for the check at the end. */
        if (c->pg && !must(c, "SET LOCAL synchronous_commit = on", &a, ret))
                return false;
        return insert_row(c, tag, ret);
}

/* A transaction that commits; the commit is durable (synchronous on PostgreSQL). */
static enum step step_commit(struct lease_ctx *c)
{
        struct answer a;
        enum step st = STEP_GO_ON;
        if (!begin_with_row(c, "committed", &st) || !check_row(c, "committed", &st))
                return st;
        if (!must(c, "COMMIT", &a, &st))
                return st;
        stat_add(ST_COMMITS);
        return STEP_GO_ON;
}

/* A transaction that fails: rolled back here, or left failed for the release's reset. */
static enum step step_fail(struct lease_ctx *c)
{
        struct answer a;
        enum step st = STEP_GO_ON;
        if (!begin_with_row(c, "rolledback", &st))
                return st;
        const char *bad = c->pg ? "SELECT 1 / 0" : "SELECT v FROM churn_no_such_table";
        const char *want = c->pg ? "22012" : "1146";
        enum qres q = run_sql(c, bad, &a);
        if (q == Q_BROKEN) {
                error_seen(bad, a.err);
                return STEP_INVALIDATE;
        }
        if (q == Q_OK || strcmp(a.code, want) != 0) {
                mismatch(c, bad, "%s (code %s), want error %s", q == Q_OK ? "succeeded" : a.err,
                         a.code, want);
                return STEP_INVALIDATE;
        }
        stat_add(ST_ROLLBACKS);
        if (rnd(2))
                return STEP_RELEASE; /* the supervisor's reset rolls it back */
        if (!must(c, "ROLLBACK", &a, &st) || !check_row(c, "", &st))
                return st;
        return STEP_GO_ON;
}

/* Writes a row that is never committed, holds it a while (the killer's favourite), gives up. */
static enum step step_uncommitted(struct lease_ctx *c)
{
        struct answer a;
        enum step st = STEP_GO_ON;
        if (!begin_with_row(c, "uncommitted", &st))
                return st;
        stat_add(ST_UNCOMMITTED);
        set_state(c->slot, W_UNCOMMITTED);
        usleep(rnd(400) * 1000);
        set_state(c->slot, W_HOLDING);
        switch (rnd(4)) {
        case 0:
                return STEP_INVALIDATE; /* closed: the server rolls back */
        case 1:
                if (!must(c, "ROLLBACK", &a, &st) || !check_row(c, "", &st))
                        return st;
                return STEP_GO_ON;
        default:
                return STEP_RELEASE; /* the reset rolls back */
        }
}

/* A long query: pg_sleep / SLEEP, then its own token. */
static enum step step_long(struct lease_ctx *c)
{
        char sql[160];
        struct answer a;
        enum step st = STEP_GO_ON;
        new_token(c);
        int ms = 50 + (int)rnd(400);
        snprintf(sql, sizeof(sql), "SELECT %s(%d.%03d), '%s'", c->pg ? "pg_sleep" : "SLEEP",
                 ms / 1000, ms % 1000, c->token);
        set_state(c->slot, W_QUERY);
        bool ok = must(c, sql, &a, &st);
        set_state(c->slot, W_HOLDING);
        if (!ok)
                return st;
        stat_add(ST_LONG);
        stat_add(ST_QUERIES);
        if (a.nrows != 1 || strcmp(a.v[1], c->token) != 0) {
                mismatch(c, sql, "got %d rows, '%s'", a.nrows, a.v[1]);
                return STEP_INVALIDATE;
        }
        return STEP_GO_ON;
}

/*
 * A query of 5 s cancelled with forkpool_cancel() after a moment: it ends
 * cancelled (or, MariaDB, SLEEP() returns 1), and the next query on the lease
 * gets its own answer.
 */
static enum step step_cancel(struct lease_ctx *c)
{
        char sql[160];
        struct answer a;
        memset(&a, 0, sizeof(a));
        new_token(c);
        snprintf(sql, sizeof(sql), "SELECT %s(5), '%s'", c->pg ? "pg_sleep" : "SLEEP", c->token);
        set_state(c->slot, W_QUERY);
        bool sent = c->pg ? PQsendQuery(c->pgc, sql) == 1
                          : mysql_send_query(c->my, sql, (unsigned long)strlen(sql)) == 0;
        if (!sent) {
                set_state(c->slot, W_HOLDING);
                error_seen("send of a query to cancel", c->pg ? PQerrorMessage(c->pgc) : "");
                return STEP_INVALIDATE;
        }
        usleep((20 + rnd(200)) * 1000);
        int r = forkpool_cancel(c->lease);
        if (r < 0)
                error_seen("forkpool_cancel", forkpool_strerror(r));
        enum qres q;
        if (c->pg) {
                q = pg_collect(c->pgc, &a);
        } else {
                q = mysql_read_query_result(c->my) == 0 ? my_collect(c->my, &a)
                                                        : my_error(c->my, &a);
        }
        set_state(c->slot, W_HOLDING);
        stat_add(ST_CANCELS);
        if (q == Q_BROKEN) {
                error_seen(sql, a.err);
                return STEP_INVALIDATE;
        }
        const char *cancelled = c->pg ? "57014" : "1317";
        if (q == Q_SQL_ERROR && strcmp(a.code, cancelled) != 0) {
                mismatch(c, sql, "error %s (%s), want %s", a.code, a.err, cancelled);
                return STEP_INVALIDATE;
        }
        if (q == Q_OK && (a.nrows != 1 || strcmp(a.v[1], c->token) != 0)) {
                mismatch(c, sql, "got %d rows, '%s'", a.nrows, a.v[1]);
                return STEP_INVALIDATE;
        }
        return step_select(c);
}

static bool adopt(struct lease_ctx *c)
{
        if (c->pg)
                c->pgc = forkpool_lease_pg(c->lease);
        else
                c->my = forkpool_lease_mysql(c->lease);
        if (c->pg ? c->pgc != NULL : c->my != NULL)
                return true;
        char text[160];
        snprintf(text, sizeof(text), "%s (%s)", strerror(errno), forkpool_last_error());
        error_seen(c->pg ? "forkpool_lease_pg" : "forkpool_lease_mysql", text);
        return false;
}

/* Acquires from a random pool into *c (adopted). Returns false after an error (counted). */
static bool lease_begin(forkpool *fp, int slot, struct lease_ctx *c)
{
        memset(c, 0, sizeof(*c));
        c->pg = rnd(2);
        c->slot = slot;
        set_state(slot, W_WAITING);
        int r = forkpool_acquire(fp, c->pg ? "pg" : "my", ACQUIRE_MS, &c->lease);
        set_state(slot, W_HOLDING);
        if (r < 0) {
                lease_error_seen(c->pg ? "acquire pg" : "acquire my", r);
                return false;
        }
        stat_add(c->pg ? ST_LEASES_PG : ST_LEASES_MY);
        if (!adopt(c)) {
                forkpool_invalidate(c->lease);
                return false;
        }
        return true;
}

static void lease_end(struct lease_ctx *c, enum step how)
{
        if (how == STEP_INVALIDATE)
                forkpool_invalidate(c->lease);
        else
                forkpool_release(c->lease);
}

/* Worker slot's fork is over (it ended, or the worker did): no longer counted. */
static void forking_done(int slot)
{
        if (__atomic_exchange_n(&shared->w[slot].forking, 0, __ATOMIC_RELAXED) == 1)
                __atomic_sub_fetch(&shared->forking, 1, __ATOMIC_RELAXED);
}

/*
 * fork() while holding a lease: the child's calls on the parent's lease are
 * refused with -ECHILD, and it leases a connection of its own through the
 * same handle; the parent goes on using its lease meanwhile.
 */
static enum step step_fork(forkpool *fp, struct lease_ctx *c)
{
        if (c->slot < 0 ||
            __atomic_add_fetch(&shared->forking, 1, __ATOMIC_RELAXED) > MAX_FORKING) {
                if (c->slot >= 0)
                        __atomic_sub_fetch(&shared->forking, 1, __ATOMIC_RELAXED);
                return step_select(c);
        }
        __atomic_store_n(&shared->w[c->slot].forking, 1, __ATOMIC_RELAXED);
        pid_t parent = getpid();
        pid_t child = fork();
        if (child == 0) {
                struct lease_ctx mine;
                /*
                 * It dies with its parent (a SIGKILLed worker), as the worker with
                 * the test: nothing of the churn outlives the end's count of what
                 * forkpoold holds.
                 */
                (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != parent)
                        _exit(0);
                alarm(90);
                rng_seed(rng_state ^ (uint64_t)getpid());
                int r1 = forkpool_release(c->lease), r2 = forkpool_lease_backend_pid(c->lease);
                if (r1 != -ECHILD || r2 != -ECHILD)
                        detail("MISMATCH",
                               "a child's release / backend_pid of its parent's "
                               "lease returned %d / %d, want -ECHILD",
                               r1, r2);
                if (r1 != -ECHILD || r2 != -ECHILD)
                        stat_add(ST_MISMATCHES);
                else
                        stat_add(ST_ECHILD);
                if (lease_begin(fp, -1, &mine))
                        lease_end(&mine, step_select(&mine));
                forkpool_close(fp);
                _exit(0);
        }
        enum step st = child > 0 ? step_select(c) : STEP_GO_ON;
        if (child > 0) {
                stat_add(ST_FORKS);
                if (itest_wait_child(child, 120000) < 0)
                        detail("hang", "a forked child did not end in 120 s");
        }
        forking_done(c->slot);
        return st;
}

static enum step run_step(forkpool *fp, struct lease_ctx *c)
{
        uint32_t pick = rnd(100);
        if (pick < 35)
                return step_select(c);
        if (pick < 55)
                return step_commit(c);
        if (pick < 65)
                return step_fail(c);
        if (pick < 75)
                return step_uncommitted(c);
        if (pick < 85)
                return step_long(c);
        if (pick < 93)
                return step_cancel(c);
        return step_fork(fp, c);
}

static _Noreturn void worker_main(int slot, uint64_t seed)
{
        forkpool *fp = NULL;
        int r;

        /* A worker outlives nothing: if the test dies, so does it. */
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        rng_seed(seed);
        stat_add(ST_WORKERS);
        while ((r = forkpool_open(socket_path, &fp)) < 0) {
                if (__atomic_load_n(&shared->stop, __ATOMIC_RELAXED))
                        _exit(0);
                lease_error_seen("forkpool_open", r);
                usleep((100 + rnd(200)) * 1000);
        }
        /* Some workers end by themselves after a while, others run to the end or are killed. */
        int budget = 5 + (int)rnd(60);
        while (budget-- > 0 && !__atomic_load_n(&shared->stop, __ATOMIC_RELAXED)) {
                struct lease_ctx c;
                if (!lease_begin(fp, slot, &c)) {
                        set_state(slot, W_IDLE);
                        usleep((50 + rnd(200)) * 1000);
                        continue;
                }
                enum step st = STEP_GO_ON;
                for (int n = 1 + (int)rnd(3); n > 0 && st == STEP_GO_ON; n--)
                        st = run_step(fp, &c);
                set_state(slot, W_IDLE);
                if (st == STEP_GO_ON && rnd(20) == 0)
                        st = STEP_INVALIDATE;
                lease_end(&c, st);
                usleep(rnd(20) * 1000);
        }
        forkpool_close(fp);
        stat_add(ST_CLEAN_EXITS);
        _exit(0);
}

/* --- the test's side --- */

struct churn;
static struct fp_shm_pool pool_now(const struct churn *t, const char *name);

struct churn {
        struct fake_systemd sd;
        PGconn *pg_admin;
        MYSQL *my_admin;
        int n_workers;
        int64_t seconds;
        uint64_t kills[W_STATES];
        int restarts_sigterm, restarts_sigkill;
        int pg_fast, pg_immediate, my_fast, my_immediate;
        uint64_t next_seed;
        int max_live[2];     /* the most live connections the segment showed, per pool */
        int max_sessions[2]; /* the most sessions the servers showed for the pools */
};

static pid_t spawn_worker(struct churn *t, int slot)
{
        uint64_t seed = ++t->next_seed * 0x9e3779b97f4a7c15ull ^ (uint64_t)now_ms();
        __atomic_store_n(&shared->w[slot].state, W_IDLE, __ATOMIC_RELAXED);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0)
                worker_main(slot, seed);
        shared->w[slot].pid = pid;
        return pid;
}

/* Reaps the workers that ended; starts new ones in their place while respawn holds. */
static int reap_workers(struct churn *t, bool respawn)
{
        int alive = 0;
        for (int i = 0; i < t->n_workers; i++) {
                pid_t pid = shared->w[i].pid;
                if (pid <= 0)
                        continue;
                if (waitpid(pid, NULL, WNOHANG) == pid) {
                        shared->w[i].pid = 0;
                        forking_done(i);
                        if (respawn)
                                spawn_worker(t, i);
                }
                alive += shared->w[i].pid > 0;
        }
        return alive;
}

/* SIGKILLs one worker, preferring one in a state picked at random. */
static void kill_one(struct churn *t)
{
        enum wstate want = (enum wstate)rnd(W_STATES);
        int start = (int)rnd((uint32_t)t->n_workers), victim = -1;
        for (int k = 0; k < t->n_workers; k++) {
                int i = (start + k) % t->n_workers;
                if (shared->w[i].pid <= 0)
                        continue;
                if (victim < 0)
                        victim = i;
                if (__atomic_load_n(&shared->w[i].state, __ATOMIC_RELAXED) == (uint32_t)want) {
                        victim = i;
                        break;
                }
        }
        if (victim < 0)
                return;
        uint32_t state = __atomic_load_n(&shared->w[victim].state, __ATOMIC_RELAXED);
        if (kill(shared->w[victim].pid, SIGKILL) == 0)
                t->kills[state < W_STATES ? state : W_IDLE]++;
}

/* Notes how many connections each pool holds (forkpoold's count, and the servers'). */
static void sample_sizes(struct churn *t)
{
        int live[2] = {pool_now(t, "pg").live, pool_now(t, "my").live};
        int sessions[2] = {itest_backends(t->pg_admin, APP), itest_my_backends(t->my_admin, MY_DB)};
        for (int p = 0; p < 2; p++) {
                if (live[p] > t->max_live[p])
                        t->max_live[p] = live[p];
                if (sessions[p] > t->max_sessions[p])
                        t->max_sessions[p] = sessions[p];
        }
}

static void fault_begin(void)
{
        __atomic_store_n(&shared->fault_active, 1, __ATOMIC_RELAXED);
}

static void fault_end(void)
{
        __atomic_store_n(&shared->last_fault_end_ms, now_ms(), __ATOMIC_RELAXED);
        __atomic_store_n(&shared->fault_active, 0, __ATOMIC_RELAXED);
}

/* MariaDB's scratch server writes its redo log once a second; a commit must survive a crash. */
static void my_durable_commits(struct churn *t)
{
        itest_my_query(t->my_admin, "SET GLOBAL innodb_flush_log_at_trx_commit = 2");
}

static void restart_pg(struct churn *t, const char *mode)
{
        PQfinish(t->pg_admin);
        itest_pg_restart(mode);
        t->pg_admin = itest_admin();
        strcmp(mode, "fast") == 0 ? t->pg_fast++ : t->pg_immediate++;
}

static void restart_my(struct churn *t, const char *mode)
{
        mysql_close(t->my_admin);
        itest_my_restart(mode);
        t->my_admin = itest_my_admin(MY_DB);
        my_durable_commits(t);
        strcmp(mode, "fast") == 0 ? t->my_fast++ : t->my_immediate++;
}

static void restart_forkpoold(struct churn *t, int sig)
{
        fake_systemd_stop(&t->sd, sig);
        fake_systemd_start(&t->sd);
        sig == SIGTERM ? t->restarts_sigterm++ : t->restarts_sigkill++;
}

/* The faults of one 60 s cycle, by second. */
enum fault {
        F_SUP_TERM,
        F_SUP_KILL,
        F_PG_FAST,
        F_PG_IMMEDIATE,
        F_MY_FAST,
        F_MY_IMMEDIATE,
};
static const struct {
        int at_s;
        enum fault what;
} fault_plan[] = {
        {6, F_SUP_TERM},      {12, F_PG_FAST},      {18, F_MY_FAST},  {24, F_SUP_KILL},
        {30, F_PG_IMMEDIATE}, {36, F_MY_IMMEDIATE}, {42, F_SUP_TERM}, {48, F_SUP_TERM},
};

static void run_fault(struct churn *t, enum fault f)
{
        fault_begin();
        switch (f) {
        case F_SUP_TERM:
                restart_forkpoold(t, SIGTERM);
                break;
        case F_SUP_KILL:
                restart_forkpoold(t, SIGKILL);
                break;
        case F_PG_FAST:
                restart_pg(t, "fast");
                break;
        case F_PG_IMMEDIATE:
                restart_pg(t, "immediate");
                break;
        case F_MY_FAST:
                restart_my(t, "fast");
                break;
        case F_MY_IMMEDIATE:
                restart_my(t, "immediate");
                break;
        }
        fault_end();
}

/* Descriptors forkpoold holds (/proc/PID/fd). */
static int sup_fd_count(const struct churn *t)
{
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/fd", t->sd.pid);
        DIR *d = opendir(path);
        CHECK(d);
        int n = 0;
        struct dirent *e;
        while ((e = readdir(d)))
                n += e->d_name[0] != '.';
        closedir(d);
        return n;
}

/* forkpoold's descriptor count once it has not changed for half a second (at most 10 s). */
static int sup_fd_count_settled(const struct churn *t)
{
        int last = sup_fd_count(t), same = 0;
        for (int i = 0; i < 100 && same < 5; i++) {
                usleep(100000);
                int n = sup_fd_count(t);
                same = n == last ? same + 1 : 0;
                last = n;
        }
        return last;
}

/* Pool name's snapshot and its slots from the supervisor's segment. */
static struct fp_shm_pool pool_named(const struct churn *t, const char *name,
                                     struct fp_shm_slot *slots, int max_slots, int *ret_n)
{
        struct fp_segment seg;
        struct fp_shm_pool pool;
        CHECK(fp_segment_find(&seg, t->sd.socket) == 0);
        for (uint32_t i = 0; i < FP_SHM_MAX_POOLS; i++) {
                int n = -EAGAIN;
                for (int attempt = 0; attempt < 100 && n == -EAGAIN; attempt++)
                        if ((n = fp_segment_snapshot(&seg, i, &pool, slots, (size_t)max_slots)) ==
                            -EAGAIN)
                                usleep(1000);
                if (n >= 0 && strcmp(pool.name, name) == 0) {
                        fp_segment_close(&seg);
                        if (ret_n)
                                *ret_n = n;
                        return pool;
                }
        }
        fp_segment_close(&seg);
        itest_fail(__FILE__, __LINE__, "no pool %s in the segment", name);
}

static struct fp_shm_pool pool_now(const struct churn *t, const char *name)
{
        struct fp_shm_slot slots[64];
        return pool_named(t, name, slots, 64, NULL);
}

/* Waits (up to 60 s) until neither pool has a lease out, a waiter or a connect running. */
static bool wait_quiet(const struct churn *t)
{
        int64_t end = now_ms() + 60000;
        for (;;) {
                struct fp_shm_pool pg = pool_now(t, "pg"), my = pool_now(t, "my");
                if (pg.checked_out == 0 && my.checked_out == 0 && pg.waiting == 0 &&
                    my.waiting == 0 && pg.connecting == 0 && my.connecting == 0)
                        return true;
                if (now_ms() > end)
                        return false;
                usleep(50000);
        }
}

/* Segment files of this supervisor's socket in /dev/shm (name prefix up to the random suffix). */
static int segment_files(const struct churn *t)
{
        char path[256], prefix[256];
        itest_segment_path(t->sd.socket, path, sizeof(path));
        const char *base = strrchr(path, '/') + 1;
        snprintf(prefix, sizeof(prefix), "%s", base);
        *strrchr(prefix, '.') = '\0';
        DIR *d = opendir("/dev/shm");
        CHECK(d);
        int n = 0;
        struct dirent *e;
        size_t len = strlen(prefix);
        while ((e = readdir(d)))
                n += strncmp(e->d_name, prefix, len) == 0 && e->d_name[len] == '.';
        closedir(d);
        return n;
}

/* One lease of pool pg or my, its answer checked, and its release. */
static void lease_pool_once(forkpool *fp, bool pg)
{
        struct lease_ctx c = {.pg = pg, .slot = -1};
        CHECK_OK(forkpool_acquire(fp, pg ? "pg" : "my", 10000, &c.lease));
        CHECK(adopt(&c));
        CHECK(step_select(&c) == STEP_GO_ON);
        CHECK_OK(forkpool_release(c.lease));
}

/* What forkpoold's descriptors are, for a report (static buffer). */
static const char *sup_fd_list(const struct churn *t)
{
        static char list[16384];
        list[0] = '\0';
        itest_sh(list, sizeof(list),
                 "ls -l /proc/%d/fd | tail -n +2; ss -axtnpe | grep -F 'pid=%d,'", t->sd.pid,
                 t->sd.pid);
        return list;
}

/*
 * The descriptors one idle connection of pool pg or my costs forkpoold: one
 * lease makes the pool open one (none is open before), and a handle closed
 * after it leaves nothing else.
 */
static int fds_of_one_connection(const struct churn *t, bool pg)
{
        forkpool *fp;
        int before = sup_fd_count_settled(t);
        CHECK(pool_now(t, pg ? "pg" : "my").live == 0);
        CHECK_OK(forkpool_open(t->sd.socket, &fp));
        lease_pool_once(fp, pg);
        forkpool_close(fp);
        CHECK(wait_quiet(t));
        int cost = sup_fd_count_settled(t) - before;
        CHECK_MSG(cost >= 1 && pool_now(t, pg ? "pg" : "my").live == 1,
                  "one idle connection costs %d descriptors over %d:\n%s", cost, before,
                  sup_fd_list(t));
        return cost;
}

static void setup_tables(struct churn *t)
{
        itest_query(t->pg_admin, "SET client_min_messages = warning");
        itest_query(t->pg_admin, "DROP TABLE IF EXISTS churn");
        itest_query(t->pg_admin,
                    "CREATE TABLE churn (token text PRIMARY KEY, tag text NOT NULL, worker int)");
        itest_my_create_db(MY_DB);
        t->my_admin = itest_my_admin(MY_DB);
        itest_my_query(t->my_admin, "CREATE TABLE churn (token varchar(64) PRIMARY KEY, "
                                    "tag varchar(16) NOT NULL, worker int) ENGINE=InnoDB");
        my_durable_commits(t);
}

static long pg_rows(struct churn *t, const char *tag)
{
        char sql[128];
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM churn WHERE tag = '%s'", tag);
        return itest_admin_long(t->pg_admin, sql);
}

static long my_rows(struct churn *t, const char *tag)
{
        char sql[128];
        snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM churn WHERE tag = '%s'", tag);
        return itest_my_long(t->my_admin, sql);
}

static int env_int(const char *name, int def, int min, int max)
{
        const char *v = getenv(name);
        if (!v || !*v)
                return def;
        int n = atoi(v);
        CHECK_MSG(n >= min && n <= max, "%s=%s: want %d…%d", name, v, min, max);
        return n;
}

static void test_churn(void)
{
        static struct churn t;
        char pools[2048];
        int64_t seconds = env_int("FORKPOOL_CHURN_SECONDS", 60, 10, 24 * 3600);

        memset(&t, 0, sizeof(t));
        t.n_workers = env_int("FORKPOOL_CHURN_WORKERS", 200, 2, MAX_WORKERS);
        t.seconds = seconds;
        shared = mmap(NULL, sizeof(*shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
                      0);
        CHECK(shared != MAP_FAILED);
        memset(shared, 0, sizeof(*shared));
        rng_seed((uint64_t)now_ms() ^ (uint64_t)getpid() << 32);

        t.pg_admin = itest_admin();
        setup_tables(&t);
        char pg_url[1024];
        snprintf(pg_url, sizeof(pg_url), "%s", itest_url(APP));
        snprintf(pools, sizeof(pools),
                 "[pool pg]\nurl = %s\npool_size = %d\nmax_overflow = %d\npool_timeout = 30\n"
                 "pool_pre_ping = true\n"
                 "[pool my]\nurl = %s\npool_size = %d\nmax_overflow = %d\npool_timeout = 30\n"
                 "pool_pre_ping = true\n",
                 pg_url, POOL_SIZE, POOL_OVERFLOW, itest_my_url(MY_DB, NULL), POOL_SIZE,
                 POOL_OVERFLOW);
        fake_systemd_init_config(&t.sd, NULL, pools);
        snprintf(socket_path, sizeof(socket_path), "%s", t.sd.socket);
        fake_systemd_start(&t.sd);

        /*
         * The descriptor baseline: a supervisor started from the store with no connection and
         * no client, then what one connection of each kind adds.
         */
        fake_systemd_stop(&t.sd, SIGTERM);
        fake_systemd_start(&t.sd);
        int fds_base = sup_fd_count_settled(&t);
        char base_list[16384];
        snprintf(base_list, sizeof(base_list), "%s", sup_fd_list(&t));
        int fds_pg = fds_of_one_connection(&t, true), fds_my = fds_of_one_connection(&t, false);
        forkpool *fp;

        /* The churn. */
        printf("churn: %d workers for %lld s on pools of %d+%d per database\n", t.n_workers,
               (long long)seconds, POOL_SIZE, POOL_OVERFLOW);
        int64_t start = now_ms(), end = start + seconds * 1000;
        for (int i = 0; i < t.n_workers; i++)
                spawn_worker(&t, i);
        size_t next_fault = 0;
        int64_t cycle_start = start, next_kill = start + 500, next_sample = start;
        while (now_ms() < end) {
                int64_t now = now_ms();
                reap_workers(&t, true);
                CHECK_MSG(waitpid(t.sd.pid, NULL, WNOHANG) == 0, "forkpoold died (log: %s)",
                          t.sd.log);
                if (now >= next_sample) {
                        sample_sizes(&t);
                        next_sample = now + 500;
                }
                if (now >= next_kill) {
                        kill_one(&t);
                        next_kill = now + 50 + rnd(150);
                }
                size_t n_faults = sizeof(fault_plan) / sizeof(fault_plan[0]);
                if (next_fault == n_faults && now - cycle_start >= 60000) {
                        cycle_start = now;
                        next_fault = 0;
                }
                /* No fault in the last 10 s: the end is quiet. */
                if (next_fault < n_faults &&
                    now >= cycle_start + fault_plan[next_fault].at_s * 1000 && now < end - 10000)
                        run_fault(&t, fault_plan[next_fault++].what);
                usleep(20000);
        }

        /* Quiet: workers finish their lease and end; stragglers after 120 s are a hang. */
        __atomic_store_n(&shared->stop, 1, __ATOMIC_RELAXED);
        int64_t stop_by = now_ms() + 120000;
        int alive;
        while ((alive = reap_workers(&t, false)) > 0 && now_ms() < stop_by)
                usleep(50000);
        CHECK_MSG(alive == 0, "%d workers did not end within 120 s of the stop", alive);
        CHECK_MSG(wait_quiet(&t),
                  "the pools did not become quiet: pg %d out %d waiting, "
                  "my %d out %d waiting",
                  pool_now(&t, "pg").checked_out, pool_now(&t, "pg").waiting,
                  pool_now(&t, "my").checked_out, pool_now(&t, "my").waiting);

        /* A last round through each pool: answers right, and counters that follow it. */
        struct fp_shm_pool before[2] = {pool_now(&t, "pg"), pool_now(&t, "my")};
        CHECK_OK(forkpool_open(t.sd.socket, &fp));
        for (int i = 0; i < 5; i++) {
                lease_pool_once(fp, true);
                lease_pool_once(fp, false);
        }
        forkpool_close(fp);
        CHECK(wait_quiet(&t));
        struct fp_shm_pool after[2] = {pool_now(&t, "pg"), pool_now(&t, "my")};
        for (int p = 0; p < 2; p++) {
                uint64_t acq = after[p].counters.acquires - before[p].counters.acquires;
                uint64_t rel = after[p].counters.releases - before[p].counters.releases;
                CHECK_MSG(acq == 5 && rel == 5,
                          "pool %s counted %llu acquires and %llu releases "
                          "for 5 leases",
                          after[p].name, (unsigned long long)acq, (unsigned long long)rel);
        }

        /* No slot leaked: none out, each idle or closed, live = idle = in the pool. */
        int leaks = 0;
        for (int p = 0; p < 2; p++) {
                struct fp_shm_slot slots[64];
                int n = 0;
                struct fp_shm_pool pool = pool_named(&t, p ? "my" : "pg", slots, 64, &n);
                int idle = 0, other = 0;
                for (int i = 0; i < n; i++) {
                        if (slots[i].state == FP_SLOT_IDLE)
                                idle++;
                        else if (slots[i].state != FP_SLOT_EMPTY &&
                                 slots[i].state != FP_SLOT_UNUSED)
                                other++;
                }
                if (pool.checked_out != 0 || other != 0 || idle != pool.live ||
                    pool.checked_in != pool.live || pool.live > POOL_SIZE + POOL_OVERFLOW) {
                        leaks++;
                        printf("slot leak in %s: out %d, in %d, live %d, idle slots %d, "
                               "other %d\n",
                               pool.name, pool.checked_out, pool.checked_in, pool.live, idle,
                               other);
                }
        }

        /* No backend leaked: the servers' sessions are the pools' live connections. */
        int live_pg = pool_now(&t, "pg").live, live_my = pool_now(&t, "my").live;
        int b_pg = itest_wait_backends(t.pg_admin, APP, live_pg, 20000);
        int b_my = itest_my_wait_backends(t.my_admin, MY_DB, live_my, 20000);
        if (b_pg != live_pg || b_my != live_my) {
                leaks++;
                printf("backend leak: pg_stat_activity %d for %d live, PROCESSLIST %d for %d "
                       "live\n",
                       b_pg, live_pg, b_my, live_my);
        }

        /* No descriptor leaked: the baseline plus the open connections (the KILL sender's idle
         * connection closes after 10 s). */
        int want_fds = fds_base + fds_pg * live_pg + fds_my * live_my;
        int64_t end_wait = now_ms() + 20000;
        while (sup_fd_count(&t) != want_fds && now_ms() < end_wait)
                usleep(50000);
        int fds = sup_fd_count(&t);
        if (fds != want_fds) {
                leaks++;
                printf("descriptor leak: forkpoold holds %d, want %d + %d x %d + %d x %d:\n%s\n"
                       "the %d at the start:\n%s\n",
                       fds, fds_base, fds_pg, live_pg, fds_my, live_my, sup_fd_list(&t), fds_base,
                       base_list);
        }

        /* No segment leaked: one published, whatever the restarts. */
        int segs = segment_files(&t);
        if (segs != 1) {
                leaks++;
                printf("segment leak: %d segment files for this socket in /dev/shm\n", segs);
        }

        /* Nothing uncommitted or rolled back is visible; every acknowledged commit is. */
        long pg_unc = pg_rows(&t, "uncommitted"), my_unc = my_rows(&t, "uncommitted");
        long pg_rb = pg_rows(&t, "rolledback"), my_rb = my_rows(&t, "rolledback");
        long committed = pg_rows(&t, "committed") + my_rows(&t, "committed");

        uint64_t killed = 0;
        for (int s = 0; s < W_STATES; s++)
                killed += t.kills[s];
        printf("churn figures (%lld s, %d workers at once, %llu started):\n", (long long)seconds,
               t.n_workers, (unsigned long long)stat_get(ST_WORKERS));
        printf("  leases: %llu PostgreSQL, %llu MariaDB; answers checked: %llu\n",
               (unsigned long long)stat_get(ST_LEASES_PG),
               (unsigned long long)stat_get(ST_LEASES_MY),
               (unsigned long long)stat_get(ST_QUERIES));
        printf("  transactions: %llu committed, %llu failed and rolled back, %llu left "
               "uncommitted; %llu long queries, %llu cancels, %llu forks (%llu -ECHILD)\n",
               (unsigned long long)stat_get(ST_COMMITS), (unsigned long long)stat_get(ST_ROLLBACKS),
               (unsigned long long)stat_get(ST_UNCOMMITTED), (unsigned long long)stat_get(ST_LONG),
               (unsigned long long)stat_get(ST_CANCELS), (unsigned long long)stat_get(ST_FORKS),
               (unsigned long long)stat_get(ST_ECHILD));
        printf("  SIGKILLed workers: %llu (", (unsigned long long)killed);
        for (int s = 0; s < W_STATES; s++)
                printf("%s%llu %s", s ? ", " : "", (unsigned long long)t.kills[s], wstate_names[s]);
        printf("); %llu ended by themselves\n", (unsigned long long)stat_get(ST_CLEAN_EXITS));
        printf("  restarts: forkpoold %d (SIGTERM, fd store) + %d (SIGKILL); PostgreSQL %d fast "
               "+ %d immediate; MariaDB %d fast + %d immediate\n",
               t.restarts_sigterm, t.restarts_sigkill, t.pg_fast, t.pg_immediate, t.my_fast,
               t.my_immediate);
        printf("  errors during faults: %llu of open/acquire/adopt, %llu of queries; %llu "
               "unexplained; mismatches: %llu\n",
               (unsigned long long)stat_get(ST_FAULT_ERRORS_LEASE),
               (unsigned long long)stat_get(ST_FAULT_ERRORS_QUERY),
               (unsigned long long)stat_get(ST_UNEXPLAINED),
               (unsigned long long)stat_get(ST_MISMATCHES));
        printf("  open/acquire errors during faults, by errno:");
        for (int e = 1; e < ERRNO_MAX; e++)
                if (shared->lease_errno[e])
                        printf(" %s %llu", strerrorname_np(e),
                               (unsigned long long)shared->lease_errno[e]);
        printf("\n");
        printf("  rows visible: %ld uncommitted, %ld rolled back, %ld committed (%llu "
               "acknowledged)\n",
               pg_unc + my_unc, pg_rb + my_rb, committed, (unsigned long long)stat_get(ST_COMMITS));
        printf("  most connections at once: %d+%d in forkpoold's count, %d+%d sessions on the "
               "servers (a killed holder's session ends a moment after its slot is freed)\n",
               t.max_live[0], t.max_live[1], t.max_sessions[0], t.max_sessions[1]);
        printf("  after: %d+%d connections open = %d+%d sessions on the servers; forkpoold "
               "holds %d descriptors (%d + %d per PostgreSQL and %d per MariaDB connection); %d "
               "segment; leaks: %d\n",
               live_pg, live_my, b_pg, b_my, fds, fds_base, fds_pg, fds_my, segs, leaks);
        for (uint32_t i = 0; i < shared->n_details && i < MAX_DETAILS; i++)
                printf("  %s\n", shared->details[i]);

        CHECK_MSG(stat_get(ST_MISMATCHES) == 0, "%llu answers were not their query's own",
                  (unsigned long long)stat_get(ST_MISMATCHES));
        CHECK_MSG(pg_unc + my_unc == 0 && pg_rb + my_rb == 0,
                  "rows of transactions that never committed are visible");
        CHECK_MSG(committed >= (long)stat_get(ST_COMMITS), "acknowledged commits were lost");
        CHECK_MSG(leaks == 0, "%d leaks (above)", leaks);
        CHECK_MSG(t.max_live[0] <= POOL_SIZE + POOL_OVERFLOW &&
                          t.max_live[1] <= POOL_SIZE + POOL_OVERFLOW,
                  "a pool held more than pool_size + max_overflow connections");
        CHECK_MSG(stat_get(ST_UNEXPLAINED) == 0, "%llu errors with no fault to explain them",
                  (unsigned long long)stat_get(ST_UNEXPLAINED));
        /* The churn did churn: every kind of step and fault happened. */
        CHECK(stat_get(ST_COMMITS) > 0 && stat_get(ST_ROLLBACKS) > 0 &&
              stat_get(ST_UNCOMMITTED) > 0 && stat_get(ST_CANCELS) > 0 && stat_get(ST_FORKS) > 0 &&
              stat_get(ST_LONG) > 0);
        CHECK(t.kills[W_WAITING] > 0 && t.kills[W_HOLDING] + t.kills[W_QUERY] > 0 &&
              t.kills[W_UNCOMMITTED] > 0);
        CHECK(t.restarts_sigterm >= 2 && t.restarts_sigkill >= 1 && t.pg_fast >= 1 &&
              t.pg_immediate >= 1 && t.my_fast >= 1 && t.my_immediate >= 1);

        fake_systemd_done(&t.sd);
        PQfinish(t.pg_admin);
        mysql_close(t.my_admin);
        munmap(shared, sizeof(*shared));
}

int main(void)
{
        /* The case's time limit follows the churn's length: the churn, the quiet, the checks. */
        int seconds =
                atoi(getenv("FORKPOOL_CHURN_SECONDS") ? getenv("FORKPOOL_CHURN_SECONDS") : "60");
        struct itest_case cases[] = {
                {"churn", test_churn, (seconds > 0 ? seconds : 60) + 300},
        };
        return itest_run(cases, sizeof(cases) / sizeof(cases[0]));
}
