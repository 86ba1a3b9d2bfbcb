/* SPDX-License-Identifier: MIT */
/*
 * itest.h — helpers for forkpool's integration tests: a real forkpoold
 * started per test against the real PostgreSQL that tests/run.sh starts, a
 * direct admin connection to look at the server side, and a tiny runner that
 * runs each test in its own child process with a time limit.
 *
 * Environment (set by tests/run.sh from contrib/scratch-pg.sh):
 *   FORKPOOL_TEST_PG_URL  postgresql:// URL of the test database (Unix socket)
 *   PGHOST, PGPORT, PGUSER, PGDATABASE for direct libpq connections
 * and from contrib/scratch-mariadb.sh:
 *   FORKPOOL_TEST_MY_URL  mysql:// URL of the test database (Unix socket)
 *   FORKPOOL_TEST_MY_SOCKET, _USER, _PASSWORD, _DATABASE for direct connections
 */
#ifndef FORKPOOL_ITEST_H
#define FORKPOOL_ITEST_H

#include <libpq-fe.h>
#include <mysql.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

#include "forkpool.h"
#include "segment.h"

/* Fails the current test with a message naming the place. */
#define CHECK(cond)                                                                                \
        do {                                                                                       \
                if (!(cond))                                                                       \
                        itest_fail(__FILE__, __LINE__, "check failed: %s", #cond);                 \
        } while (0)

#define CHECK_MSG(cond, ...)                                                                       \
        do {                                                                                       \
                if (!(cond))                                                                       \
                        itest_fail(__FILE__, __LINE__, __VA_ARGS__);                               \
        } while (0)

/* Checks that a forkpool call returned 0, printing forkpool_strerror() otherwise. */
#define CHECK_OK(expr)                                                                             \
        do {                                                                                       \
                int _r = (expr);                                                                   \
                if (_r < 0)                                                                        \
                        itest_fail(__FILE__, __LINE__, "%s = %d (%s; %s)", #expr, _r,              \
                                   forkpool_strerror(_r), forkpool_last_error());                  \
        } while (0)

/*
 * Re-evaluates cond (an expression, which may assign what it looks at) every
 * 5 ms until it is true or timeout_ms have passed; then checks it, failing
 * the test with msg (printf arguments) if it never became true. For what
 * happens asynchronously (a release, a reclaim, a restart): the test waits
 * for the state it asserts, not for a time.
 */
#define CHECK_SOON(cond, timeout_ms, ...)                                                          \
        do {                                                                                       \
                int64_t _end = itest_now_ms() + (timeout_ms);                                      \
                while (!(cond) && itest_now_ms() < _end)                                           \
                        usleep(5000);                                                              \
                if (!(cond))                                                                       \
                        itest_fail(__FILE__, __LINE__, __VA_ARGS__);                               \
        } while (0)

_Noreturn void itest_fail(const char *file, int line, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* A forkpoold started for one test in its own temporary directory. */
struct itest_sup {
        pid_t pid;
        char dir[128];
        char socket[192];
        char config[192];
        char log[192];
};

/*
 * Writes a configuration with one pool "main" on $FORKPOOL_TEST_PG_URL (with
 * application_name=app appended, so tests can count their own backends), the
 * extra pool lines given (e.g. "pool_size = 3\nmax_overflow = 2\n"), and
 * extra global lines; starts forkpoold on it and waits until it listens.
 * Fails the test if it does not come up.
 */
void itest_sup_start(struct itest_sup *s, const char *app, const char *pool_lines,
                     const char *global_lines);

/* Starts forkpoold again on the same directory and configuration. */
void itest_sup_restart(struct itest_sup *s);

/* SIGTERM, waits for exit; returns the exit status (or -1). Removes the directory. */
int itest_sup_stop(struct itest_sup *s);

/* SIGKILL, waits for the process. Leaves the directory (for a restart). */
void itest_sup_kill(struct itest_sup *s);

/* The URL of the test database with application_name=app appended (static buffer). */
const char *itest_url(const char *app);

/* A direct connection to the test database (not through forkpool). */
PGconn *itest_admin(void);

/* Runs a query on the admin connection and returns the first value as a number. */
long itest_admin_long(PGconn *admin, const char *sql);

/* Number of client backends with application_name = app. */
int itest_backends(PGconn *admin, const char *app);

/* Waits up to timeout_ms for itest_backends() to equal n; returns the last count. */
int itest_wait_backends(PGconn *admin, const char *app, int n, int timeout_ms);

/* Runs SQL on a leased PGconn, failing the test unless it succeeds; returns row 0 col 0. */
char *itest_query(PGconn *c, const char *sql);

/* Milliseconds on CLOCK_MONOTONIC. */
int64_t itest_now_ms(void);

#ifdef LIBPQ_HAS_ASYNC_CANCEL
/*
 * The libpq 17 cancel API from another thread: runs "SELECT pg_sleep(30)"
 * (tagged with tag) on c and, once the server shows it running, cancels it
 * through cancel (made by PQcancelCreate(c), ALLOCATED: new or reset) with
 * PQcancelBlocking() (polled false) or PQcancelStart() and PQcancelPoll() on
 * PQcancelSocket() (polled true). Fails the test unless the cancel succeeds
 * (CONNECTION_OK), the statement ends with SQLSTATE 57014 within 10 s of it,
 * and c then answers a query.
 */
void itest_cancel_sleep(PGconn *c, PGcancelConn *cancel, bool polled, const char *tag);
#endif

/* Runs a shell command, returns its exit status; output captured to buf if not NULL. */
int itest_sh(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/*
 * Checks res, c's first result after a cancel, which came elapsed_ms after
 * it: the statement ended as cancelled ("canceling statement", SQLSTATE
 * 57014) within max_ms. Frees res and drains c's other results. tag names
 * the case in a failure.
 */
void itest_check_cancelled(PGconn *c, PGresult *res, int64_t elapsed_ms, int max_ms,
                           const char *tag);

/* Waits for a child with a time limit; returns its wait status or -1 on timeout (killed). */
int itest_wait_child(pid_t pid, int timeout_ms);

/*
 * Forks a child that runs as user: its uid, gid 0 (so the 0660 control
 * socket stays reachable), no supplementary groups. Returns 0 in the child
 * (already switched; it should _exit()) and the child's pid in the parent.
 */
pid_t itest_fork_as(const char *user);

/* Waits for a child of itest_fork_as() and returns its exit status (fails the test otherwise). */
int itest_child_exit(pid_t pid, int timeout_ms);

/*
 * Waits up to 5 s for pool "main" (itest_pool()) to have n connections
 * checked out; returns the last count.
 */
int itest_wait_checked_out(const struct itest_sup *s, int n);

/* Reads forkpoolctl status --json for the supervisor into buf. Returns the exit status. */
int itest_status_json(const struct itest_sup *s, char *buf, size_t len);

/*
 * A consistent snapshot of pool "main" (index 0) read straight from the
 * supervisor's shared segment, as forkpoolctl reads it. Fails the test if the
 * segment cannot be read.
 */
struct fp_shm_pool itest_pool(const struct itest_sup *s);

/*
 * The file of the segment the supervisor on socket_path published
 * ("/dev/shm/forkpool.<hash>.<random>"), found as readers find it. Fails the
 * test if there is none.
 */
void itest_segment_path(const char *socket_path, char *buf, size_t len);

/* --- MySQL/MariaDB --- */

/*
 * Like itest_sup_start(), with pool "main" on url as given (e.g. from
 * itest_my_url()).
 */
void itest_sup_start_url(struct itest_sup *s, const char *url, const char *pool_lines,
                         const char *global_lines);

/*
 * The MariaDB test URL with its database replaced by db and the query
 * parameters extra (e.g. "multi_statements=true", or NULL) appended (static
 * buffer).
 */
const char *itest_my_url(const char *db, const char *extra);

/* A direct connection to the test MariaDB, in database db (NULL: none). */
MYSQL *itest_my_admin(const char *db);

/*
 * Runs sql on m (every result consumed), failing the test unless it succeeds;
 * returns row 0 column 0 of the first result set ("" if none, "NULL" for NULL).
 */
char *itest_my_query(MYSQL *m, const char *sql);

/* itest_my_query() as a number. */
long itest_my_long(MYSQL *m, const char *sql);

/* Drops and creates database db (tests count their sessions by database). */
void itest_my_create_db(const char *db);

/* Number of sessions whose current database is db (the KILL sender has none). */
int itest_my_backends(MYSQL *admin, const char *db);

/* Waits up to timeout_ms for itest_my_backends() to equal n; returns the last count. */
int itest_my_wait_backends(MYSQL *admin, const char *db, int n, int timeout_ms);

/*
 * Restarts the test PostgreSQL or MariaDB (contrib/scratch-*.sh restart) in
 * mode "fast" or "immediate" (a crash); fails the test unless it is up again.
 * Every session of the old server is gone afterwards.
 */
void itest_pg_restart(const char *mode);
void itest_my_restart(const char *mode);

struct itest_case {
        const char *name;
        void (*fn)(void);
        int timeout_s;
};

/*
 * Runs every case in its own child process (a failure or crash fails only
 * that case), prints "ok"/"FAIL" per case and "N passed, N failed" at the end.
 * Returns the process exit status (0 if all passed).
 */
int itest_run(const struct itest_case *cases, size_t n);

#define ITEST_MAIN(...)                                                                            \
        int main(void)                                                                             \
        {                                                                                          \
                static const struct itest_case cases[] = {__VA_ARGS__};                            \
                return itest_run(cases, sizeof(cases) / sizeof(cases[0]));                         \
        }

#endif /* FORKPOOL_ITEST_H */
