/* SPDX-License-Identifier: MIT */
/*
 * it_restart.c — a restart drops nothing. This test plays systemd's part of
 * the protocols forkpoold uses for that, without PID 1 (fake_systemd.h).
 * Across a restart (SIGTERM) and a crash (SIGKILL) the sessions on the server
 * stay the same, an idle connection goes back to its pool, a transaction open
 * across the restart commits, and a holder that died meanwhile is reclaimed;
 * a reset or ping still running at SIGTERM finishes or costs its connection,
 * a session the server ends while the store holds its socket costs only
 * that connection, and the socket of a socket unit stays forkpoold's. Most scenarios run once per
 * database (the real PostgreSQL and the real MariaDB that tests/run.sh starts), through a small
 * description of each, as in it_both.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itest.h"
#include "fake_systemd.h"
#include "savedstate.h"

/* One database, as the scenarios see it. */
struct db {
        const char *name;
        const char *session_id_sql; /* the session's id, as forkpool_lease_backend_pid() */
        const char *alive_sql_fmt;  /* 1 if session %d exists, else 0 */
        const char *end_sql_fmt;    /* ends session %d from the admin connection */
        /* Prepares app's namespace and returns the pool URL for it (static buffer). */
        const char *(*url)(const char *app);
        void *(*admin)(const char *app);
        void (*admin_close)(void *admin);
        /* Runs sql; fails the test unless it succeeds; returns row 0 column 0. */
        char *(*query)(void *conn, const char *sql);
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

static void *pg_adopt(forkpool_lease *lease)
{
        return forkpool_lease_pg(lease);
}

static const struct db pg_db = {
        .name = "postgresql",
        .session_id_sql = "SELECT pg_backend_pid()",
        .alive_sql_fmt = "SELECT count(*) FROM pg_stat_activity WHERE pid = %d",
        .end_sql_fmt = "SELECT pg_terminate_backend(%d)",
        .url = pg_url,
        .admin = pg_admin,
        .admin_close = pg_admin_close,
        .query = pg_query,
        .adopt = pg_adopt,
};

/* --- MariaDB: each test has its own database --- */

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

static void *my_adopt(forkpool_lease *lease)
{
        return forkpool_lease_mysql(lease);
}

static const struct db my_db = {
        .name = "mariadb",
        .session_id_sql = "SELECT CONNECTION_ID()",
        .alive_sql_fmt = "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %d",
        .end_sql_fmt = "KILL %d",
        .url = my_url,
        .admin = my_admin,
        .admin_close = my_admin_close,
        .query = my_query,
        .adopt = my_adopt,
};

/* --- helpers over a description --- */

static long query_long(const struct db *db, void *conn, const char *sql)
{
        return atol(db->query(conn, sql));
}

static bool backend_alive(const struct db *db, void *admin, int id)
{
        char sql[160];
        snprintf(sql, sizeof(sql), db->alive_sql_fmt, id);
        return query_long(db, admin, sql) == 1;
}

static void *adopt(const struct db *db, forkpool_lease *lease)
{
        void *conn = db->adopt(lease);
        CHECK_MSG(conn, "%s: adoption failed: %s (%s)", db->name, strerror(errno),
                  forkpool_last_error());
        return conn;
}

/* The session's id as the server says, checked against the lease's. */
static int session_id(const struct db *db, forkpool_lease *lease)
{
        int id = (int)query_long(db, adopt(db, lease), db->session_id_sql);
        CHECK_MSG(id == forkpool_lease_backend_pid(lease), "%s: session %d, lease says %d",
                  db->name, id, forkpool_lease_backend_pid(lease));
        return id;
}

static void create_table(const struct db *db, void *admin, const char *table)
{
        char sql[128];
        snprintf(sql, sizeof(sql), "DROP TABLE IF EXISTS %s", table);
        db->query(admin, sql);
        snprintf(sql, sizeof(sql), "CREATE TABLE %s (v int)", table);
        db->query(admin, sql);
}

/* --- the scenarios --- */

/* SIGTERM (systemctl restart) or SIGKILL (a crash, then Restart=on-failure). */
static void restart_keeps_sessions(const struct db *db, int sig)
{
        struct fake_systemd sd;
        int go[2], ready[2];
        forkpool *fp;
        forkpool_lease *l;
        char app[32];

        snprintf(app, sizeof(app), "it_restart_%d", sig);
        const char *url = db->url(app);
        void *admin = db->admin(app);
        create_table(db, admin, "it_restart");
        /* Restored connections are reset and pinged like any other. */
        fake_systemd_init(&sd, url,
                          "pool_size = 2\nmax_overflow = 0\nreset_on_return = discard\n"
                          "pool_pre_ping = true\n");
        fake_systemd_start(&sd);

        /* An idle connection in the pool. */
        CHECK_OK(forkpool_open(sd.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &l));
        int idle_backend = session_id(db, l);

        /* A worker holding the other one, in the middle of a transaction. */
        CHECK(pipe(go) == 0 && pipe(ready) == 0);
        pid_t worker = fork();
        if (worker == 0) {
                forkpool *mine;
                forkpool_lease *held;
                char x;
                CHECK_OK(forkpool_open(sd.socket, &mine));
                CHECK_OK(forkpool_acquire(mine, "main", 5000, &held));
                int backend = session_id(db, held);
                void *c = adopt(db, held);
                db->query(c, "BEGIN");
                db->query(c, "INSERT INTO it_restart VALUES (1)");
                CHECK(write(ready[1], &backend, sizeof(backend)) == sizeof(backend));
                CHECK(read(go[0], &x, 1) == 1); /* the supervisor restarts meanwhile */
                db->query(c, "INSERT INTO it_restart VALUES (2)");
                db->query(c, "COMMIT");
                CHECK_OK(forkpool_release(held)); /* to the new supervisor */
                _exit(0);
        }
        int leased_backend;
        CHECK(read(ready[0], &leased_backend, sizeof(leased_backend)) == sizeof(leased_backend));
        CHECK_OK(forkpool_release(l));
        usleep(100000);
        CHECK_MSG(fake_systemd_stored_connections(&sd) == 2, "%d connections in the store",
                  fake_systemd_stored_connections(&sd));

        fake_systemd_stop(&sd, sig);
        /* The sessions outlive the supervisor: systemd holds them. */
        CHECK(backend_alive(db, admin, idle_backend) && backend_alive(db, admin, leased_backend));

        fake_systemd_start(&sd);
        struct fp_segment seg;
        struct fp_shm_pool pool;
        CHECK(fp_segment_find(&seg, sd.socket) == 0);
        CHECK(fp_segment_snapshot(&seg, 0, &pool, NULL, 0) == 0);
        fp_segment_close(&seg);
        CHECK_MSG(pool.checked_out == 1 && pool.checked_in == 1 && pool.live == 2,
                  "after the restart: out %d in %d live %d", pool.checked_out, pool.checked_in,
                  pool.live);

        /* The idle one is handed out again: the same session, and it works. */
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &l));
        CHECK(session_id(db, l) == idle_backend);
        CHECK(query_long(db, adopt(db, l), "SELECT 40 + 2") == 42);
        db->query(adopt(db, l), "CREATE TEMPORARY TABLE it_restart_tmp (v int)");
        CHECK_OK(forkpool_release(l));

        /* The transaction open across the restart commits; its release reaches the new one. */
        CHECK(write(go[1], "x", 1) == 1);
        CHECK(itest_wait_child(worker, 10000) == 0);
        CHECK(query_long(db, admin, "SELECT count(*) FROM it_restart") == 2);
        int64_t end = itest_now_ms() + 3000;
        do {
                CHECK(fp_segment_find(&seg, sd.socket) == 0);
                CHECK(fp_segment_snapshot(&seg, 0, &pool, NULL, 0) == 0);
                fp_segment_close(&seg);
        } while (pool.checked_out != 0 && itest_now_ms() < end && usleep(10000) == 0);
        CHECK_MSG(pool.checked_out == 0 && pool.live == 2 && pool.counters.reclaims == 0,
                  "out %d live %d reclaims %llu", pool.checked_out, pool.live,
                  (unsigned long long)pool.counters.reclaims);
        CHECK(backend_alive(db, admin, idle_backend) && backend_alive(db, admin, leased_backend));

        /* Both restored sessions were reset (discard: no temporary table left) and work. */
        forkpool_lease *a, *b;
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &a));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &b));
        CHECK(query_long(db, adopt(db, a), "SELECT count(*) FROM it_restart") == 2);
        CHECK(query_long(db, adopt(db, b), "SELECT count(*) FROM it_restart") == 2);
        db->query(adopt(db, a), "CREATE TEMPORARY TABLE it_restart_tmp (v int)");
        db->query(adopt(db, b), "CREATE TEMPORARY TABLE it_restart_tmp (v int)");
        CHECK_OK(forkpool_release(a));
        CHECK_OK(forkpool_release(b));

        forkpool_close(fp);
        fake_systemd_done(&sd);
        db->admin_close(admin);
}

/* A holder that dies while no supervisor runs is reclaimed by the next one. */
static void holder_died_meanwhile(const struct db *db)
{
        struct fake_systemd sd;
        int ready[2];

        const char *url = db->url("it_restart_dead");
        void *admin = db->admin("it_restart_dead");
        create_table(db, admin, "it_restart2");
        fake_systemd_init(&sd, url, "pool_size = 1\nmax_overflow = 0\n");
        fake_systemd_start(&sd);
        CHECK(pipe(ready) == 0);
        pid_t worker = fork();
        if (worker == 0) {
                forkpool *mine;
                forkpool_lease *held;
                CHECK_OK(forkpool_open(sd.socket, &mine));
                CHECK_OK(forkpool_acquire(mine, "main", 5000, &held));
                int backend = session_id(db, held);
                void *c = adopt(db, held);
                db->query(c, "BEGIN");
                db->query(c, "INSERT INTO it_restart2 VALUES (1)");
                CHECK(write(ready[1], &backend, sizeof(backend)) == sizeof(backend));
                pause();
                _exit(0);
        }
        int backend;
        CHECK(read(ready[0], &backend, sizeof(backend)) == sizeof(backend));
        fake_systemd_stop(&sd, SIGKILL);
        kill(worker, SIGKILL);
        waitpid(worker, NULL, 0);

        fake_systemd_start(&sd);
        /* Reclaimed: shut down, never reused; nothing it left uncommitted is visible. */
        int64_t end = itest_now_ms() + 5000;
        while (backend_alive(db, admin, backend) && itest_now_ms() < end)
                usleep(20000);
        CHECK(!backend_alive(db, admin, backend));
        CHECK(query_long(db, admin, "SELECT count(*) FROM it_restart2") == 0);
        forkpool *fp;
        forkpool_lease *l;
        CHECK_OK(forkpool_open(sd.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &l));
        CHECK(session_id(db, l) != backend);
        CHECK_OK(forkpool_release(l));
        forkpool_close(fp);
        fake_systemd_done(&sd);
        db->admin_close(admin);
}

/*
 * Starts a supervisor for app (its pool "main" with pool_lines) under sd, opens
 * a handle on it and leases one connection. Returns app's admin connection.
 */
static void *start_with_lease(const struct db *db, struct fake_systemd *sd, const char *app,
                              const char *pool_lines, forkpool **ret_fp, forkpool_lease **ret_lease)
{
        const char *url = db->url(app);
        void *admin = db->admin(app);
        fake_systemd_init(sd, url, pool_lines);
        fake_systemd_start(sd);
        CHECK_OK(forkpool_open(sd->socket, ret_fp));
        CHECK_OK(forkpool_acquire(*ret_fp, "main", 5000, ret_lease));
        return admin;
}

/* How a test damages the state memfd that the store keeps between two forkpoolds. */
enum damage {
        DAMAGE_TRUNCATE,  /* shorter than its header says (SIGBUS for a reader that maps it) */
        DAMAGE_VERSION,   /* another layout version: an older or newer forkpoold wrote it */
        DAMAGE_PG_RECORD, /* one PostgreSQL record with unterminated strings, a wild length */
};

static void damage_state(struct fake_systemd *sd, enum damage how, char *ret_name, size_t len)
{
        int state = fake_systemd_stored_fd(sd, "state", 0);
        CHECK(state >= 0);
        if (how == DAMAGE_TRUNCATE) {
                CHECK(ftruncate(state, 1000) == 0);
        } else if (how == DAMAGE_VERSION) {
                uint32_t version = 1;
                CHECK(pwrite(state, &version, sizeof(version),
                             offsetof(struct fp_saved_header, version)) == sizeof(version));
        } else {
                uint64_t epoch;
                uint32_t pool, index;
                struct fp_saved_slot rec;
                pthread_mutex_lock(&sd->lock);
                for (int i = 0; i < sd->n_stored && !ret_name[0]; i++)
                        if (sd->names[i][0] == 'c')
                                snprintf(ret_name, len, "%s", sd->names[i]);
                pthread_mutex_unlock(&sd->lock);
                CHECK(fp_saved_name_parse(ret_name, &epoch, &pool, &index));
                off_t at = (off_t)fp_saved_record_offset(pool, index);
                CHECK(pread(state, &rec, sizeof(rec), at) == sizeof(rec));
                CHECK(rec.magic == FP_SAVED_SLOT_MAGIC && rec.db_kind == FP_DB_POSTGRES);
                memset(rec.pg.user, 'u', sizeof(rec.pg.user));
                memset(rec.pg.dbname, 'd', sizeof(rec.pg.dbname));
                memset(rec.pool, 'p', sizeof(rec.pool));
                rec.pg.params_len = 0x7ffffff0u;
                CHECK(pwrite(state, &rec, sizeof(rec), at) == sizeof(rec));
        }
}

/*
 * A state memfd that cannot be trusted costs the connections it describes,
 * never the supervisor: the next forkpoold starts, closes them, and serves.
 */
static void damaged_state(enum damage how)
{
        const struct db *db = &pg_db;
        struct fake_systemd sd;
        forkpool *fp;
        forkpool_lease *a, *b;
        char name[64] = "";

        void *admin = start_with_lease(db, &sd, "it_restart_state",
                                       "pool_size = 2\nmax_overflow = 0\n", &fp, &a);
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &b));
        int ids[2] = {session_id(db, a), session_id(db, b)};
        CHECK_OK(forkpool_release(a));
        CHECK_OK(forkpool_release(b));
        int64_t end = itest_now_ms() + 3000;
        while (fake_systemd_stored_connections(&sd) != 2 && itest_now_ms() < end)
                usleep(10000);
        CHECK(fake_systemd_stored_connections(&sd) == 2);
        fake_systemd_stop(&sd, SIGTERM);

        damage_state(&sd, how, name, sizeof(name));
        fake_systemd_start(&sd);
        int kept = how == DAMAGE_PG_RECORD ? 1 : 0;
        struct fp_segment seg;
        struct fp_shm_pool pool;
        CHECK(fp_segment_find(&seg, sd.socket) == 0);
        CHECK(fp_segment_snapshot(&seg, 0, &pool, NULL, 0) == 0);
        fp_segment_close(&seg);
        CHECK_MSG(pool.live == kept, "live %d, want %d", pool.live, kept);
        CHECK_MSG(fake_systemd_stored_connections(&sd) == kept, "%d stored, want %d",
                  fake_systemd_stored_connections(&sd), kept);
        /* The connections it could not trust are closed: their sessions end. */
        end = itest_now_ms() + 5000;
        while ((int)backend_alive(db, admin, ids[0]) + (int)backend_alive(db, admin, ids[1]) !=
                       kept &&
               itest_now_ms() < end)
                usleep(20000);
        CHECK((int)backend_alive(db, admin, ids[0]) + (int)backend_alive(db, admin, ids[1]) ==
              kept);

        /* And it serves. */
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &a));
        CHECK(query_long(db, adopt(db, a), "SELECT 40 + 2") == 42);
        CHECK_OK(forkpool_release(a));
        forkpool_close(fp);
        fake_systemd_done(&sd);
        db->admin_close(admin);
}

static void state_truncated(void)
{
        damaged_state(DAMAGE_TRUNCATE);
}

static void state_other_version(void)
{
        damaged_state(DAMAGE_VERSION);
}

static void state_bad_pg_record(void)
{
        damaged_state(DAMAGE_PG_RECORD);
}

/* Pool name's snapshot from the supervisor's segment. */
static struct fp_shm_pool pool_named(struct fake_systemd *sd, const char *name)
{
        struct fp_segment seg;
        struct fp_shm_pool pool;
        CHECK(fp_segment_find(&seg, sd->socket) == 0);
        for (uint32_t i = 0; i < FP_SHM_MAX_POOLS; i++) {
                if (fp_segment_snapshot(&seg, i, &pool, NULL, 0) == 0 &&
                    strcmp(pool.name, name) == 0) {
                        fp_segment_close(&seg);
                        return pool;
                }
        }
        fp_segment_close(&seg);
        itest_fail(__FILE__, __LINE__, "no pool %s in the segment", name);
}

static void write_config(struct fake_systemd *sd, const char *url, const char *first,
                         const char *second)
{
        FILE *f = fopen(sd->config, "w");
        CHECK(f);
        fprintf(f, "[forkpool]\nsocket = %s\n", sd->socket);
        fprintf(f, "[pool %s]\nurl = %s\npool_size = 1\nmax_overflow = 0\n", first, url);
        fprintf(f, "[pool %s]\nurl = %s\npool_size = 1\nmax_overflow = 0\n", second, url);
        fclose(f);
}

/*
 * Pools reordered across a restart: a lease of the previous supervisor and
 * one of the current, held by the same process in two pools, are told apart
 * (the current supervisor's lease ids cannot equal the previous one's): the
 * release of the old lease frees its connection, never the new one's.
 */
static void pools_reordered(void)
{
        const struct db *db = &pg_db;
        struct fake_systemd sd;
        forkpool *fp;
        forkpool_lease *old_lease, *new_lease;

        const char *url = db->url("it_restart_order");
        fake_systemd_init(&sd, url, "");
        write_config(&sd, url, "main", "other");
        fake_systemd_start(&sd);
        CHECK_OK(forkpool_open(sd.socket, &fp));
        /* main's slot 0 leased for the second time; other's idle after its first. */
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &old_lease));
        CHECK_OK(forkpool_release(old_lease));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &old_lease));
        int old_backend = session_id(db, old_lease);
        CHECK_OK(forkpool_acquire(fp, "other", 5000, &new_lease));
        CHECK_OK(forkpool_release(new_lease));
        int64_t end = itest_now_ms() + 3000;
        while ((fake_systemd_stored_connections(&sd) != 2 ||
                pool_named(&sd, "other").checked_out != 0) &&
               itest_now_ms() < end)
                usleep(10000);
        fake_systemd_stop(&sd, SIGTERM);

        write_config(&sd, url, "other", "main");
        fake_systemd_start(&sd);
        CHECK_MSG(pool_named(&sd, "main").checked_out == 1, "the lease is back");
        /* Both stay in the store: restoring one did not remove the other by its old name. */
        CHECK_MSG(fake_systemd_stored_connections(&sd) == 2, "%d connections in the store",
                  fake_systemd_stored_connections(&sd));
        CHECK_OK(forkpool_acquire(fp, "other", 5000, &new_lease));
        int new_backend = session_id(db, new_lease);
        CHECK(new_backend != old_backend);
        CHECK(pool_named(&sd, "other").checked_out == 1);

        CHECK_OK(forkpool_release(old_lease));
        end = itest_now_ms() + 3000;
        while (pool_named(&sd, "main").checked_out != 0 && itest_now_ms() < end)
                usleep(10000);
        struct fp_shm_pool main_pool = pool_named(&sd, "main");
        struct fp_shm_pool other_pool = pool_named(&sd, "other");
        CHECK_MSG(main_pool.checked_out == 0 && other_pool.checked_out == 1,
                  "after the old lease's release: main %d out, other %d out", main_pool.checked_out,
                  other_pool.checked_out);
        CHECK(query_long(db, adopt(db, new_lease), "SELECT 40 + 2") == 42);
        CHECK_OK(forkpool_release(new_lease));
        end = itest_now_ms() + 3000;
        while (pool_named(&sd, "other").checked_out != 0 && itest_now_ms() < end)
                usleep(10000);
        CHECK(pool_named(&sd, "other").checked_out == 0);
        forkpool_close(fp);
        fake_systemd_done(&sd);
}

/*
 * A release still unread in the control socket when SIGTERM arrives is
 * handled before the connections are left to the store: the slot comes back
 * idle (reset: the transaction the worker left open is rolled back), not
 * leased to a live process that already let it go.
 */
static void release_unread_at_sigterm(void)
{
        const struct db *db = &pg_db;
        struct fake_systemd sd;
        forkpool *fp;
        forkpool_lease *l;

        const char *url = db->url("it_restart_unread");
        void *admin = db->admin("it_restart_unread");
        create_table(db, admin, "it_restart3");
        fake_systemd_init(&sd, url, "pool_size = 1\nmax_overflow = 0\n");
        fake_systemd_start(&sd);
        CHECK_OK(forkpool_open(sd.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &l));
        int backend = session_id(db, l);
        void *c = adopt(db, l);
        db->query(c, "BEGIN");
        db->query(c, "INSERT INTO it_restart3 VALUES (1)");

        /* The release and SIGTERM reach a stopped supervisor: it sees both at once. */
        CHECK(kill(sd.pid, SIGSTOP) == 0);
        CHECK_OK(forkpool_release(l));
        CHECK(kill(sd.pid, SIGTERM) == 0);
        CHECK(kill(sd.pid, SIGCONT) == 0);
        int status = itest_wait_child(sd.pid, 10000);
        CHECK_MSG(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit %d", status);
        sd.pid = 0;

        fake_systemd_start(&sd);
        struct fp_shm_pool pool = pool_named(&sd, "main");
        CHECK_MSG(pool.checked_out == 0 && pool.live == 1,
                  "after the restart: %d out, %d live (the release was lost)", pool.checked_out,
                  pool.live);
        CHECK(query_long(db, admin, "SELECT count(*) FROM it_restart3") == 0);
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &l));
        CHECK(session_id(db, l) == backend);
        CHECK(query_long(db, adopt(db, l), "SELECT 40 + 2") == 42);
        CHECK_OK(forkpool_release(l));
        forkpool_close(fp);
        fake_systemd_done(&sd);
        db->admin_close(admin);
}

/* A query's result on conn as text, or "<status name>" when it returned no row. */
static void check_answer(PGconn *conn, const char *sql, const char *want)
{
        PGresult *res = PQexec(conn, sql);
        ExecStatusType st = PQresultStatus(res);
        char got[128];
        if (st == PGRES_TUPLES_OK && PQntuples(res) == 1)
                snprintf(got, sizeof(got), "%s", PQgetvalue(res, 0, 0));
        else
                snprintf(got, sizeof(got), "<%s>", PQresStatus(st));
        PQclear(res);
        CHECK_MSG(strcmp(got, want) == 0, "%s answered %s, want %s", sql, got, want);
}

/* Two queries on the lease get their own answers; then it is released. */
static void answers_right(const struct db *db, forkpool_lease *l)
{
        PGconn *c = adopt(db, l);
        check_answer(c, "SELECT 40 + 2", "42");
        check_answer(c, "SELECT 'second'", "second");
        CHECK_OK(forkpool_release(l));
}

/*
 * A pre-ping still waiting for its reply at SIGTERM (the backend is stopped)
 * either finishes or costs its connection: a connection stored with the
 * ping's reply unread would give the next holder that reply for its query.
 */
static void ping_in_flight_at_sigterm(void)
{
        const struct db *db = &pg_db;
        struct fake_systemd sd;
        forkpool *fp;
        forkpool_lease *l;

        const char *url = db->url("it_restart_ping");
        void *admin = db->admin("it_restart_ping");
        fake_systemd_init(&sd, url,
                          "pool_size = 1\nmax_overflow = 0\npool_pre_ping = true\n"
                          "connect_timeout = 30\n");
        fake_systemd_start(&sd);
        CHECK_OK(forkpool_open(sd.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &l));
        int backend = session_id(db, l);
        CHECK_OK(forkpool_release(l));
        int64_t end = itest_now_ms() + 3000;
        while (pool_named(&sd, "main").checked_out != 0 && itest_now_ms() < end)
                usleep(10000);

        /* The next acquire's pre-ping waits on a stopped backend. */
        CHECK(kill(backend, SIGSTOP) == 0);
        pid_t child = fork();
        if (child == 0) {
                forkpool *mine;
                forkpool_lease *held;
                CHECK_OK(forkpool_open(sd.socket, &mine));
                if (forkpool_acquire(mine, "main", 10000, &held) == 0)
                        forkpool_release(held);
                forkpool_close(mine);
                _exit(0);
        }
        usleep(300000); /* the child's acquire reaches it, its ping goes out */
        CHECK(kill(sd.pid, SIGTERM) == 0);
        usleep(300000);
        CHECK(kill(backend, SIGCONT) == 0);
        int status = itest_wait_child(sd.pid, 10000);
        CHECK(status >= 0);
        sd.pid = 0;
        CHECK(itest_wait_child(child, 15000) >= 0);

        fake_systemd_start(&sd);
        for (int i = 0; i < 3; i++) {
                CHECK_OK(forkpool_acquire(fp, "main", 5000, &l));
                answers_right(db, l);
        }
        forkpool_close(fp);
        fake_systemd_done(&sd);
        db->admin_close(admin);
}

/*
 * A reset that cannot finish by the quiesce bound (5 s: its backend is
 * stopped) at SIGTERM costs its connection: it leaves the store and is closed,
 * never handed to the next supervisor with the ROLLBACK's reply unread.
 */
static void reset_stuck_at_sigterm(void)
{
        const struct db *db = &pg_db;
        struct fake_systemd sd;
        forkpool *fp;
        forkpool_lease *l;
        char log[4096] = "";

        void *admin = start_with_lease(db, &sd, "it_restart_stuck",
                                       "pool_size = 1\nmax_overflow = 0\nconnect_timeout = 30\n",
                                       &fp, &l);
        int backend = session_id(db, l);
        db->query(adopt(db, l), "BEGIN");
        int64_t end = itest_now_ms() + 3000;
        while (fake_systemd_stored_connections(&sd) != 1 && itest_now_ms() < end)
                usleep(10000);
        CHECK(fake_systemd_stored_connections(&sd) == 1);

        /* The release's ROLLBACK waits on a stopped backend; SIGTERM comes meanwhile. */
        CHECK(kill(backend, SIGSTOP) == 0);
        CHECK_OK(forkpool_release(l));
        end = itest_now_ms() + 5000;
        while (pool_named(&sd, "main").checked_out != 0 && itest_now_ms() < end)
                usleep(10000);
        CHECK(kill(sd.pid, SIGTERM) == 0);
        int status = itest_wait_child(sd.pid, 30000);
        kill(backend, SIGCONT);
        CHECK_MSG(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit %d", status);
        sd.pid = 0;
        itest_sh(log, sizeof(log), "grep -c 'still resetting at the restart: closed' %s", sd.log);
        CHECK_MSG(atoi(log) == 1, "the stuck reset was not abandoned (log: %s)", sd.log);
        CHECK_MSG(fake_systemd_stored_connections(&sd) == 0, "%d connections left in the store",
                  fake_systemd_stored_connections(&sd));

        /* The next supervisor starts without it; its session ends; a new one serves. */
        fake_systemd_start(&sd);
        CHECK(pool_named(&sd, "main").live == 0);
        end = itest_now_ms() + 10000;
        while (backend_alive(db, admin, backend) && itest_now_ms() < end)
                usleep(20000);
        CHECK_MSG(!backend_alive(db, admin, backend), "backend %d outlived its close", backend);
        CHECK_OK(forkpool_acquire(fp, "main", 10000, &l));
        CHECK(session_id(db, l) != backend);
        answers_right(db, l);
        forkpool_close(fp);
        fake_systemd_done(&sd);
        db->admin_close(admin);
}

/*
 * An idle session that the server ended while its socket is also in the fd
 * store: the pre-ping finds it dead, and the client library closes its
 * socket on the spot. forkpoold must not keep watching that socket (the
 * store's copy keeps it open, hung up): it replaces the connection and goes
 * on serving, alive.
 */
static void session_ended_under_store(const struct db *db)
{
        struct fake_systemd sd;
        forkpool *fp;
        forkpool_lease *l;
        char sql[160];

        void *admin = start_with_lease(db, &sd, "it_restart_ended",
                                       "pool_size = 1\nmax_overflow = 0\npool_pre_ping = true\n",
                                       &fp, &l);
        int backend = session_id(db, l);
        CHECK_OK(forkpool_release(l));
        int64_t end = itest_now_ms() + 3000;
        while ((fake_systemd_stored_connections(&sd) != 1 ||
                pool_named(&sd, "main").checked_out != 0) &&
               itest_now_ms() < end)
                usleep(10000);
        snprintf(sql, sizeof(sql), db->end_sql_fmt, backend);
        db->query(admin, sql);
        end = itest_now_ms() + 5000;
        while (backend_alive(db, admin, backend) && itest_now_ms() < end)
                usleep(20000);
        CHECK(!backend_alive(db, admin, backend));

        for (int i = 0; i < 3; i++) {
                CHECK_OK(forkpool_acquire(fp, "main", 10000, &l));
                CHECK(session_id(db, l) != backend);
                CHECK(query_long(db, adopt(db, l), "SELECT 40 + 2") == 42);
                CHECK_OK(forkpool_release(l));
                usleep(200000);
                CHECK_MSG(waitpid(sd.pid, NULL, WNOHANG) == 0, "forkpoold died (log: %s)", sd.log);
        }
        forkpool_close(fp);
        fake_systemd_done(&sd);
        db->admin_close(admin);
}

/*
 * A reset whose session the server ends while the ROLLBACK waits (the
 * backend is stopped, terminated, resumed), its socket also in the fd store:
 * libpq closes its socket when the connection drops. forkpoold must not keep
 * watching it: it closes the connection and goes on serving, alive.
 */
static void reset_session_ended_under_store(void)
{
        const struct db *db = &pg_db;
        struct fake_systemd sd;
        forkpool *fp;
        forkpool_lease *l;
        char sql[160];

        void *admin = start_with_lease(db, &sd, "it_restart_reset_ended",
                                       "pool_size = 1\nmax_overflow = 0\n", &fp, &l);
        int backend = session_id(db, l);
        db->query(adopt(db, l), "BEGIN");
        int64_t end = itest_now_ms() + 3000;
        while (fake_systemd_stored_connections(&sd) != 1 && itest_now_ms() < end)
                usleep(10000);
        CHECK(kill(backend, SIGSTOP) == 0);
        CHECK_OK(forkpool_release(l));
        usleep(300000); /* the ROLLBACK is on its way */
        snprintf(sql, sizeof(sql), db->end_sql_fmt, backend);
        db->query(admin, sql);
        CHECK(kill(backend, SIGCONT) == 0);
        end = itest_now_ms() + 5000;
        while (backend_alive(db, admin, backend) && itest_now_ms() < end)
                usleep(20000);
        CHECK(!backend_alive(db, admin, backend));
        for (int i = 0; i < 3; i++) {
                usleep(200000);
                CHECK_MSG(waitpid(sd.pid, NULL, WNOHANG) == 0, "forkpoold died (log: %s)", sd.log);
                CHECK_OK(forkpool_acquire(fp, "main", 10000, &l));
                CHECK(session_id(db, l) != backend);
                CHECK(query_long(db, adopt(db, l), "SELECT 40 + 2") == 42);
                CHECK_OK(forkpool_release(l));
        }
        forkpool_close(fp);
        fake_systemd_done(&sd);
        db->admin_close(admin);
}

/*
 * forkpoold started with its socket unit's socket keeps that socket across a
 * restart with a connection in the store (systemd passes the socket first,
 * the stored descriptors after it, and the restore consumes some of those):
 * the socket file stays the one the unit bound, and with forkpoold stopped a
 * worker's connect still reaches it (it waits in the backlog for the next
 * start).
 */
static void restart_keeps_activated_socket(void)
{
        const struct db *db = &pg_db;
        struct fake_systemd sd;
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        struct stat bound, after;
        forkpool *fp;
        forkpool_lease *l;

        fake_systemd_init(&sd, db->url("it_restart_socket"), "pool_size = 1\nmax_overflow = 0\n");
        fake_systemd_socket_unit(&sd);
        CHECK(stat(sd.socket, &bound) == 0);
        fake_systemd_start(&sd);
        CHECK_OK(forkpool_open(sd.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &l));
        int backend = session_id(db, l);
        CHECK_OK(forkpool_release(l));
        forkpool_close(fp);
        int64_t end = itest_now_ms() + 3000;
        while (fake_systemd_stored_connections(&sd) != 1 && itest_now_ms() < end)
                usleep(10000);
        CHECK_MSG(fake_systemd_stored_connections(&sd) == 1, "%d connections in the store",
                  fake_systemd_stored_connections(&sd));

        fake_systemd_stop(&sd, SIGTERM);
        fake_systemd_start(&sd);
        CHECK(stat(sd.socket, &after) == 0);
        CHECK_MSG(after.st_ino == bound.st_ino,
                  "the restarted forkpoold bound a socket of its own (log: %s)", sd.log);
        CHECK_OK(forkpool_open(sd.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &l));
        CHECK(session_id(db, l) == backend); /* the stored connection, restored */
        CHECK_OK(forkpool_release(l));
        forkpool_close(fp);

        fake_systemd_stop(&sd, SIGTERM);
        int c = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        CHECK(c >= 0);
        memcpy(addr.sun_path, sd.socket, strlen(sd.socket) + 1);
        CHECK_MSG(connect(c, (struct sockaddr *)&addr, sizeof(addr)) == 0,
                  "connect with forkpoold stopped: %s", strerror(errno));
        close(c);
        fake_systemd_done(&sd);
}

static void pg_session_ended_under_store(void)
{
        session_ended_under_store(&pg_db);
}

static void my_session_ended_under_store(void)
{
        session_ended_under_store(&my_db);
}

static void pg_restart_keeps_sessions(void)
{
        restart_keeps_sessions(&pg_db, SIGTERM);
}

static void pg_crash_keeps_sessions(void)
{
        restart_keeps_sessions(&pg_db, SIGKILL);
}

static void pg_holder_died_meanwhile(void)
{
        holder_died_meanwhile(&pg_db);
}

static void my_restart_keeps_sessions(void)
{
        restart_keeps_sessions(&my_db, SIGTERM);
}

static void my_crash_keeps_sessions(void)
{
        restart_keeps_sessions(&my_db, SIGKILL);
}

static void my_holder_died_meanwhile(void)
{
        holder_died_meanwhile(&my_db);
}

ITEST_MAIN({"postgresql/restart_keeps_sessions", pg_restart_keeps_sessions, 60},
           {"postgresql/crash_keeps_sessions", pg_crash_keeps_sessions, 60},
           {"postgresql/holder_died_meanwhile", pg_holder_died_meanwhile, 60},
           {"mariadb/restart_keeps_sessions", my_restart_keeps_sessions, 60},
           {"mariadb/crash_keeps_sessions", my_crash_keeps_sessions, 60},
           {"mariadb/holder_died_meanwhile", my_holder_died_meanwhile, 60},
           {"state/truncated", state_truncated, 60},
           {"state/other_version", state_other_version, 60},
           {"state/bad_pg_record", state_bad_pg_record, 60},
           {"postgresql/pools_reordered", pools_reordered, 60},
           {"postgresql/release_unread_at_sigterm", release_unread_at_sigterm, 60},
           {"postgresql/ping_in_flight_at_sigterm", ping_in_flight_at_sigterm, 60},
           {"postgresql/reset_stuck_at_sigterm", reset_stuck_at_sigterm, 90},
           {"postgresql/session_ended_under_store", pg_session_ended_under_store, 60},
           {"postgresql/reset_session_ended_under_store", reset_session_ended_under_store, 60},
           {"postgresql/restart_keeps_activated_socket", restart_keeps_activated_socket, 60},
           {"mariadb/session_ended_under_store", my_session_ended_under_store, 60})
