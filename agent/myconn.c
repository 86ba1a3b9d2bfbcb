/* SPDX-License-Identifier: MIT */
/*
 * myconn.c — the supervisor's MySQL/MariaDB connections (fp_my_driver in
 * driver.h), with MariaDB Connector/C's non-blocking API on the event loop.
 *
 * Every library call that may wait is a pair of _start and _cont functions: the library
 * says what it waits for (MYSQL_WAIT_READ, _WRITE, _TIMEOUT), we watch the
 * socket (and a timer) with sd-event and continue when it is ready. Nothing
 * here blocks the loop.
 *
 * A leased connection is never read here: its io source is off from the
 * moment it is handed out. Its cached session state (server_status, current
 * database, character set) goes stale during a lease; the worker's report at
 * release makes it true again (research/adoption.md §B pitfalls 5 and 6).
 *
 * Cancelling is "KILL QUERY <thread id>" from a second, supervisor-only
 * connection of the pool (the admin connection: opened when first needed,
 * closed after a while without use), never mariadb_cancel(), which shuts the
 * shared socket down. A connection taken back from a worker that may have
 * left it busy (holder death, mid-protocol release) is shut down and its
 * session ended with "KILL <thread id>" the same way, so that a running
 * statement stops and its locks go at once.
 *
 * The KILLs that end sessions go first; the cancels queue behind them, at most
 * one per lease (more cancels before it is sent change nothing), and a cancel
 * not yet sent when its lease ends is dropped: it would hit the next holder.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <errmsg.h>
#include <mysql.h>

#include "driver.h"
#include "log.h"
#include "myconn.h"
#include "sockwatch.h"

#define MY_DEFAULT_CHARSET "utf8mb4"
/*
 * Makes the server flag every change of session state (user variables,
 * temporary tables, prepared statements, session variables) in its replies,
 * so that a worker can tell whether its session needs a reset (auto).
 */
#define MY_TRACK_STATE "SET SESSION session_track_state_change = ON"
#define MY_MAX_STEPS   4
#define MY_SQL_MAX     64
/* The admin connection closes after this long without a KILL to send. */
#define MY_ADMIN_IDLE_USEC (10u * 1000 * 1000)
/* Bits of a lease's status that describe one reply, not the session. */
#define MY_STATUS_TRANSIENT                                                                        \
        (SERVER_MORE_RESULTS_EXIST | SERVER_QUERY_NO_GOOD_INDEX_USED |                             \
         SERVER_QUERY_NO_INDEX_USED | SERVER_STATUS_LAST_ROW_SENT | SERVER_STATUS_DB_DROPPED |     \
         SERVER_STATUS_METADATA_CHANGED | SERVER_QUERY_WAS_SLOW | SERVER_PS_OUT_PARAMS |           \
         SERVER_SESSION_STATE_CHANGED | SERVER_STATUS_CURSOR_EXISTS)

struct my_pool;
struct my_conn;

/* --- running library calls on the event loop --- */

enum my_op {
        MY_OP_CONNECT,
        MY_OP_QUERY, /* then its result sets are read and freed */
        MY_OP_STORE, /* internal: reading a result set */
        MY_OP_NEXT,  /* internal: moving to the next result set */
        MY_OP_ROLLBACK,
        MY_OP_COMMIT,
        MY_OP_RESET, /* COM_RESET_CONNECTION */
        MY_OP_SELECT_DB,
        MY_OP_PING,
};

struct my_step {
        enum my_op op;
        char sql[MY_SQL_MAX]; /* MY_OP_QUERY with a short statement */
        const char *text;     /* MY_OP_QUERY with a longer one, MY_OP_SELECT_DB */
};

struct my_async;

/* The steps ended: error 0, -EIO (an SQL error, text set), -ECONNRESET, -ETIMEDOUT. */
typedef void (*my_done_fn)(struct my_async *a, int error, const char *text);

/* One MYSQL handle driven by the loop through a list of steps. */
struct my_async {
        MYSQL *m;
        sd_event *event;
        struct fp_sockwatch io;      /* the socket, while a step waits for it */
        sd_event_source *wait_timer; /* the library's own timeout (MYSQL_WAIT_TIMEOUT) */
        sd_event_source *deadline;   /* our limit for all the steps */
        sd_event_source *defer;      /* reports steps that ended at once */
        bool running;
        bool starting;        /* inside async_run() */
        bool defer_immediate; /* the owner's callback must not run inside async_run() */
        struct my_step steps[MY_MAX_STEPS];
        int n_steps, step;
        enum my_op op;                    /* the library call in progress */
        const struct my_pool *connect_to; /* MY_OP_CONNECT: host, port, user, password */
        const char *connect_db;           /* MY_OP_CONNECT: NULL for none */
        unsigned long connect_flag;       /* MY_OP_CONNECT: client flags */
        MYSQL *ret_mysql;
        MYSQL_RES *ret_res;
        int ret_int;
        my_bool ret_bool;
        char *owned_sql; /* a long MY_OP_QUERY statement */
        int error;
        char text[FP_ERRTEXT_MAX];
        my_done_fn done;
        void *owner;
};

/* A KILL waiting for the admin connection. */
struct my_kill {
        TAILQ_ENTRY(my_kill) link;
        unsigned long thread_id;
        bool query_only;        /* KILL QUERY (cancel) rather than KILL (end the session) */
        struct my_conn *target; /* told when it is done; NULL once the target is gone */
};

TAILQ_HEAD(my_kill_list, my_kill);

/*
 * One pool's connect parameters (owned copies: connections outlive a reload
 * of their pool's URL) and its admin connection. Shared by the pool and every
 * connection made from it; freed with the last of them.
 */
struct my_pool {
        unsigned refs;
        char *host, *user, *password, *database, *unix_socket, *charset, *init_command;
        unsigned int port;
        unsigned long client_flag;
        int connect_timeout_s;
        sd_event *event; /* set by the first connect */

        /* The admin connection for KILL; admin.m is NULL when closed. */
        struct my_async admin;
        bool admin_ready;
        struct my_kill *admin_current;
        struct my_kill_list kills;   /* KILL: sessions to end, first */
        struct my_kill_list cancels; /* KILL QUERY: at most one per lease */
        sd_event_source *admin_idle;
};

enum my_phase {
        MY_CONNECTING,
        MY_READY, /* idle or leased: nothing runs, the socket is not watched */
        MY_RUNNING,
};

struct my_conn {
        struct my_async a;
        struct my_pool *pool;
        enum my_phase phase;
        bool handed_out; /* leased and not yet cleanly returned */

        fp_db_connect_cb connect_cb;
        fp_db_reset_cb reset_cb;
        fp_db_exec_cb exec_cb;
        void *userdata;

        /* A reset waiting for this connection's KILLs to be done. */
        int kills_pending;
        struct my_kill *queued_cancel; /* this lease's KILL QUERY, queued and not yet sent */
        bool reset_waiting;
        int reset_timeout_ms;

        /* The session as the next lease hands it over. */
        uint32_t thread_id;
        uint32_t protocol_version;
        uint32_t server_caps, server_ext_caps;
        uint32_t client_flag, client_ext_flag;
        uint32_t server_language;
        uint32_t server_status;
        uint32_t charset_nr;
        char server_version[FP_MY_VERSION_MAX];
        char charset[FP_MY_CHARSET_MAX];
        char user[FP_MY_IDENT_MAX];
        char db[FP_MY_IDENT_MAX];
        uint8_t scramble[FP_MY_SCRAMBLE_LEN];
};

/* Copies a library error into one line (the library's texts have no newline, but be sure). */
static void one_line(const char *in, char *out, size_t len)
{
        size_t j = 0;
        for (size_t i = 0; in && in[i] && j + 1 < len; i++)
                out[j++] = in[i] == '\n' || in[i] == '\r' ? ' ' : in[i];
        out[j] = '\0';
}

static void async_stop_watching(struct my_async *a)
{
        fp_sockwatch_off(&a->io);
        if (a->wait_timer)
                sd_event_source_set_enabled(a->wait_timer, SD_EVENT_OFF);
        if (a->deadline)
                sd_event_source_set_enabled(a->deadline, SD_EVENT_OFF);
}

/* Frees the event sources and the handle (mysql_close(): a COM_QUIT if it is connected). */
static void async_free(struct my_async *a)
{
        fp_sockwatch_free(&a->io);
        a->wait_timer = sd_event_source_disable_unref(a->wait_timer);
        a->deadline = sd_event_source_disable_unref(a->deadline);
        a->defer = sd_event_source_disable_unref(a->defer);
        if (a->m)
                mysql_close(a->m);
        a->m = NULL;
        free(a->owned_sql);
        a->owned_sql = NULL;
        a->running = false;
}

static void async_schedule_done(struct my_async *a);

/*
 * The run ended. The callback runs now, or from the loop if the run ended
 * inside async_run() and its owner's callbacks must not run from there.
 */
static void async_finish(struct my_async *a, int error, const char *text)
{
        async_stop_watching(a);
        if (a->starting && a->defer_immediate) {
                a->error = error;
                snprintf(a->text, sizeof(a->text), "%s", text ? text : "");
                async_schedule_done(a);
                return;
        }
        a->running = false;
        a->done(a, error, text ? text : "");
}

/* The error of the last library call: a server's SQL error or a broken connection. */
static void async_fail_from_library(struct my_async *a)
{
        char text[FP_ERRTEXT_MAX];
        unsigned int code = mysql_errno(a->m);

        one_line(mysql_error(a->m), text, sizeof(text));
        if (!text[0])
                snprintf(text, sizeof(text), "error %u", code);
        /* Client-side errors (CR_*, 2000–2999) mean the connection itself failed. */
        async_finish(a, code >= CR_MIN_ERROR && code <= CR_MAX_ERROR ? -ECONNRESET : -EIO, text);
}

static int on_async_io(sd_event_source *s, int fd, uint32_t revents, void *userdata);
static int on_async_wait_timeout(sd_event_source *s, uint64_t usec, void *userdata);
static int on_async_deadline(sd_event_source *s, uint64_t usec, void *userdata);

/* Watches what the library waits for (status: MYSQL_WAIT_* bits). */
static int async_watch(struct my_async *a, int status)
{
        int fd = mysql_get_socket(a->m), r;
        uint32_t events = 0;

        if (fd < 0)
                return -EBADF;
        if (a->op == MY_OP_CONNECT)
                /* Connector/C makes its sockets without close-on-exec (adoption.md §B.8). */
                (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
        if (status & MYSQL_WAIT_READ)
                events |= EPOLLIN;
        if (status & MYSQL_WAIT_WRITE)
                events |= EPOLLOUT;
        if (status & MYSQL_WAIT_EXCEPT)
                events |= EPOLLPRI;
        /* The library may move to another socket while connecting (another address). */
        r = fp_sockwatch_set(&a->io, a->event, fd, events, true, on_async_io, a);
        if (r < 0)
                return r;

        if (!(status & MYSQL_WAIT_TIMEOUT)) {
                if (a->wait_timer)
                        sd_event_source_set_enabled(a->wait_timer, SD_EVENT_OFF);
                return 0;
        }
        uint64_t now;
        sd_event_now(a->event, CLOCK_MONOTONIC, &now);
        uint64_t when = now + (uint64_t)mysql_get_timeout_value_ms(a->m) * 1000u;
        if (!a->wait_timer)
                return sd_event_add_time(a->event, &a->wait_timer, CLOCK_MONOTONIC, when, 1000,
                                         on_async_wait_timeout, a);
        r = sd_event_source_set_time(a->wait_timer, when);
        if (r >= 0)
                r = sd_event_source_set_enabled(a->wait_timer, SD_EVENT_ONESHOT);
        return r;
}

/* Starts the library call of op; returns its wait status (0: done at once). */
static int async_call_start(struct my_async *a, enum my_op op, const struct my_step *step)
{
        const struct my_pool *p = a->connect_to;

        a->op = op;
        switch (op) {
        case MY_OP_CONNECT:
                return mysql_real_connect_start(&a->ret_mysql, a->m, p->host, p->user, p->password,
                                                a->connect_db, p->port, p->unix_socket,
                                                a->connect_flag);
        case MY_OP_QUERY: {
                const char *sql = step->text ? step->text : step->sql;
                return mysql_real_query_start(&a->ret_int, a->m, sql, (unsigned long)strlen(sql));
        }
        case MY_OP_STORE:
                return mysql_store_result_start(&a->ret_res, a->m);
        case MY_OP_NEXT:
                return mysql_next_result_start(&a->ret_int, a->m);
        case MY_OP_ROLLBACK:
                return mysql_rollback_start(&a->ret_bool, a->m);
        case MY_OP_COMMIT:
                return mysql_commit_start(&a->ret_bool, a->m);
        case MY_OP_RESET:
                return mysql_reset_connection_start(&a->ret_int, a->m);
        case MY_OP_SELECT_DB:
                return mysql_select_db_start(&a->ret_int, a->m, step->text);
        case MY_OP_PING:
                return mysql_ping_start(&a->ret_int, a->m);
        }
        return 0;
}

static int async_call_cont(struct my_async *a, int status)
{
        switch (a->op) {
        case MY_OP_CONNECT:
                return mysql_real_connect_cont(&a->ret_mysql, a->m, status);
        case MY_OP_QUERY:
                return mysql_real_query_cont(&a->ret_int, a->m, status);
        case MY_OP_STORE:
                return mysql_store_result_cont(&a->ret_res, a->m, status);
        case MY_OP_NEXT:
                return mysql_next_result_cont(&a->ret_int, a->m, status);
        case MY_OP_ROLLBACK:
                return mysql_rollback_cont(&a->ret_bool, a->m, status);
        case MY_OP_COMMIT:
                return mysql_commit_cont(&a->ret_bool, a->m, status);
        case MY_OP_RESET:
                return mysql_reset_connection_cont(&a->ret_int, a->m, status);
        case MY_OP_SELECT_DB:
                return mysql_select_db_cont(&a->ret_int, a->m, status);
        case MY_OP_PING:
                return mysql_ping_cont(&a->ret_int, a->m, status);
        }
        return 0;
}

/*
 * The library call in progress is done. Returns the next call to make (the
 * remaining result sets of a query, or the next step), or -1 when all steps
 * are done or one failed (a->running is then false).
 */
static int async_call_done(struct my_async *a)
{
        bool failed = false;

        switch (a->op) {
        case MY_OP_CONNECT:
                failed = a->ret_mysql == NULL;
                break;
        case MY_OP_QUERY:
                if (a->ret_int != 0)
                        failed = true;
                else if (mysql_field_count(a->m) > 0)
                        return MY_OP_STORE;
                else if (mysql_more_results(a->m))
                        return MY_OP_NEXT;
                break;
        case MY_OP_STORE:
                if (!a->ret_res) {
                        failed = true;
                        break;
                }
                mysql_free_result(a->ret_res); /* stored: freeing reads nothing */
                a->ret_res = NULL;
                if (mysql_more_results(a->m))
                        return MY_OP_NEXT;
                break;
        case MY_OP_NEXT:
                if (a->ret_int > 0)
                        failed = true;
                else if (a->ret_int == 0 && mysql_field_count(a->m) > 0)
                        return MY_OP_STORE;
                else if (a->ret_int == 0 && mysql_more_results(a->m))
                        return MY_OP_NEXT;
                break;
        case MY_OP_ROLLBACK:
        case MY_OP_COMMIT:
                failed = a->ret_bool != 0;
                break;
        case MY_OP_RESET:
        case MY_OP_SELECT_DB:
        case MY_OP_PING:
                failed = a->ret_int != 0;
                break;
        }
        if (failed) {
                async_fail_from_library(a);
                return -1;
        }
        if (++a->step < a->n_steps)
                return (int)a->steps[a->step].op;
        async_finish(a, 0, NULL);
        return -1;
}

/* Makes calls until one has to wait (watched then) or all are done. */
static void async_drive(struct my_async *a, int status)
{
        for (;;) {
                if (status != 0) {
                        int r = async_watch(a, status);
                        if (r < 0) {
                                async_finish(a, -ECONNRESET, "cannot watch the connection");
                                return;
                        }
                        return;
                }
                int next = async_call_done(a);
                if (next < 0)
                        return;
                status = async_call_start(a, (enum my_op)next, &a->steps[a->step]);
        }
}

static int on_async_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct my_async *a = userdata;
        int events = 0;
        (void)s, (void)fd;

        if (!a->running)
                return 0;
        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))
                events |= MYSQL_WAIT_READ;
        if (revents & (EPOLLOUT | EPOLLHUP | EPOLLERR))
                events |= MYSQL_WAIT_WRITE;
        if (revents & EPOLLPRI)
                events |= MYSQL_WAIT_EXCEPT;
        async_drive(a, async_call_cont(a, events));
        return 0;
}

static int on_async_wait_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct my_async *a = userdata;
        (void)s, (void)usec;
        if (a->running)
                async_drive(a, async_call_cont(a, MYSQL_WAIT_TIMEOUT));
        return 0;
}

static int on_async_deadline(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct my_async *a = userdata;
        (void)s, (void)usec;
        if (a->running)
                async_finish(a, -ETIMEDOUT, "the server did not answer in time");
        return 0;
}

static int on_async_defer(sd_event_source *s, void *userdata)
{
        struct my_async *a = userdata;
        (void)s;
        sd_event_source_set_enabled(a->defer, SD_EVENT_OFF);
        a->running = false;
        a->done(a, a->error, a->text);
        return 0;
}

static void async_schedule_done(struct my_async *a)
{
        int r = a->defer ? sd_event_source_set_enabled(a->defer, SD_EVENT_ONESHOT)
                         : sd_event_add_defer(a->event, &a->defer, on_async_defer, a);
        if (r < 0) {
                /* Cannot happen short of memory exhaustion; report now rather than never. */
                log_error_errno(r, "cannot schedule a database callback");
                a->running = false;
                a->done(a, a->error, a->text);
        }
}

static int arm_deadline(struct my_async *a, int timeout_ms)
{
        uint64_t now;
        sd_event_now(a->event, CLOCK_MONOTONIC, &now);
        uint64_t when = now + (uint64_t)(timeout_ms > 0 ? timeout_ms : 1) * 1000u;
        if (!a->deadline)
                return sd_event_add_time(a->event, &a->deadline, CLOCK_MONOTONIC, when, 1000,
                                         on_async_deadline, a);
        int r = sd_event_source_set_time(a->deadline, when);
        if (r >= 0)
                r = sd_event_source_set_enabled(a->deadline, SD_EVENT_ONESHOT);
        return r;
}

/*
 * Runs a->steps[0..n_steps) within timeout_ms, then calls done (from the loop
 * if defer_immediate, else possibly from inside this call). Returns 0, or a
 * negative errno if nothing could be started (done will not run).
 */
static int async_run(struct my_async *a, int timeout_ms, my_done_fn done, bool defer_immediate)
{
        a->done = done;
        a->defer_immediate = defer_immediate;
        a->step = 0;
        a->error = 0;
        a->text[0] = '\0';
        int r = arm_deadline(a, timeout_ms);
        if (r < 0)
                return r;
        a->running = true;
        /* Without defer_immediate, done may free a: it is not touched afterwards. */
        a->starting = defer_immediate;
        async_drive(a, async_call_start(a, a->steps[0].op, &a->steps[0]));
        if (defer_immediate)
                a->starting = false;
        return 0;
}

/* Sets the run's steps (a statement of up to MY_SQL_MAX - 1 bytes, or an op). */
static void async_step(struct my_async *a, enum my_op op, const char *text)
{
        struct my_step *st = &a->steps[a->n_steps++];
        st->op = op;
        st->text = NULL;
        st->sql[0] = '\0';
        if (op == MY_OP_QUERY && strlen(text) < sizeof(st->sql)) {
                snprintf(st->sql, sizeof(st->sql), "%s", text);
        } else if (op == MY_OP_QUERY) {
                /* A hook's statement: the configuration may be reloaded meanwhile. */
                free(a->owned_sql);
                a->owned_sql = strdup(text);
                st->text = a->owned_sql ? a->owned_sql : "";
        } else {
                st->text = text;
        }
}

/* --- a pool's parameters and its admin connection --- */

static void admin_close(struct my_pool *p);
static void admin_kick(struct my_pool *p);

static void pool_free(struct my_pool *p)
{
        struct my_kill *k;

        admin_close(p);
        while ((k = TAILQ_FIRST(&p->kills))) {
                TAILQ_REMOVE(&p->kills, k, link);
                free(k);
        }
        while ((k = TAILQ_FIRST(&p->cancels))) {
                TAILQ_REMOVE(&p->cancels, k, link);
                free(k);
        }
        p->admin_idle = sd_event_source_disable_unref(p->admin_idle);
        if (p->password) {
                explicit_bzero(p->password, strlen(p->password));
                free(p->password);
        }
        free(p->host);
        free(p->user);
        free(p->database);
        free(p->unix_socket);
        free(p->charset);
        free(p->init_command);
        free(p);
}

static void pool_unref(struct my_pool *p)
{
        if (p && --p->refs == 0)
                pool_free(p);
}

static int dup_opt(const char *in, char **ret)
{
        *ret = NULL;
        if (!in)
                return 0;
        *ret = strdup(in);
        return *ret ? 0 : -ENOMEM;
}

/*
 * A new handle with the options every handle of the pool gets: the
 * non-blocking API, the pool's character set, no reconnect (that would be a
 * new session behind the pool's back), no TLS (Connector/C 3.4 turns it on
 * unless told not to), no compression (never set), no option files (never
 * read unless asked for).
 */
static int handle_new(const struct my_pool *p, MYSQL **ret)
{
        my_bool off = 0;
        MYSQL *m = mysql_init(NULL);

        if (!m)
                return -ENOMEM;
        if (mysql_optionsv(m, MYSQL_OPT_NONBLOCK, 0) ||
            mysql_optionsv(m, MYSQL_SET_CHARSET_NAME, p->charset) ||
            mysql_optionsv(m, MYSQL_OPT_RECONNECT, &off) ||
            mysql_optionsv(m, MYSQL_OPT_SSL_ENFORCE, &off) ||
            mysql_optionsv(m, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &off)) {
                mysql_close(m);
                return -ENOMEM;
        }
        if (p->connect_timeout_s > 0) {
                unsigned int t = (unsigned int)p->connect_timeout_s;
                (void)mysql_optionsv(m, MYSQL_OPT_CONNECT_TIMEOUT, &t);
        }
        *ret = m;
        return 0;
}

static void conn_kill_finished(struct my_conn *c);

/* A KILL is done (or dropped): tell its target and free it. */
static void kill_done(struct my_kill *k)
{
        if (k->target)
                conn_kill_finished(k->target);
        free(k);
}

/* Closes the admin connection; a KILL in progress counts as done. */
static void admin_close(struct my_pool *p)
{
        async_free(&p->admin);
        p->admin_ready = false;
        if (p->admin_idle)
                sd_event_source_set_enabled(p->admin_idle, SD_EVENT_OFF);
        if (p->admin_current) {
                struct my_kill *k = p->admin_current;
                p->admin_current = NULL;
                kill_done(k);
        }
}

/* Drops every queued KILL (the admin connection cannot be opened). */
static void admin_drop_kills(struct my_pool *p)
{
        struct my_kill *k;
        while ((k = TAILQ_FIRST(&p->kills))) {
                TAILQ_REMOVE(&p->kills, k, link);
                kill_done(k);
        }
        while ((k = TAILQ_FIRST(&p->cancels))) {
                TAILQ_REMOVE(&p->cancels, k, link);
                if (k->target)
                        k->target->queued_cancel = NULL;
                kill_done(k);
        }
}

/* Whether a KILL or a cancel waits to be sent. */
static bool admin_has_work(const struct my_pool *p)
{
        return !TAILQ_EMPTY(&p->kills) || !TAILQ_EMPTY(&p->cancels);
}

static int on_admin_idle(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct my_pool *p = userdata;
        (void)s, (void)usec;
        if (!p->admin.running && !admin_has_work(p)) {
                log_debug("closing the idle admin connection of a MySQL pool");
                admin_close(p);
        }
        return 0;
}

static void admin_connected(struct my_async *a, int error, const char *text)
{
        struct my_pool *p = a->owner;

        if (error < 0) {
                int n = 0;
                struct my_kill *k;
                TAILQ_FOREACH(k, &p->kills, link)
                n++;
                TAILQ_FOREACH(k, &p->cancels, link)
                n++;
                log_warning("cannot open the MySQL connection that sends KILL (%d KILL%s "
                            "dropped): %s",
                            n, n == 1 ? "" : "s", text);
                admin_close(p);
                admin_drop_kills(p);
                return;
        }
        (void)fcntl(mysql_get_socket(a->m), F_SETFD, FD_CLOEXEC);
        p->admin_ready = true;
        log_debug("admin connection for KILL open (thread %lu)", mysql_thread_id(a->m));
        admin_kick(p);
}

static void admin_kill_done(struct my_async *a, int error, const char *text)
{
        struct my_pool *p = a->owner;
        struct my_kill *k = p->admin_current;

        p->admin_current = NULL;
        if (error == -EIO && mysql_errno(a->m) == 1094 /* ER_NO_SUCH_THREAD */)
                log_debug("KILL%s %lu: the session is already gone", k->query_only ? " QUERY" : "",
                          k->thread_id);
        else if (error < 0)
                log_warning("KILL%s %lu failed: %s", k->query_only ? " QUERY" : "", k->thread_id,
                            text);
        else
                log_debug("KILL%s %lu done", k->query_only ? " QUERY" : "", k->thread_id);
        if (error < 0 && error != -EIO)
                admin_close(p); /* the admin connection itself failed: reopen if needed */
        kill_done(k);
        admin_kick(p);
}

/* Sends the next queued KILL, opening the admin connection first if needed. */
static void admin_kick(struct my_pool *p)
{
        struct my_async *a = &p->admin;
        int r;

        if (a->running || !p->event)
                return;
        if (!admin_has_work(p)) {
                if (!a->m)
                        return;
                r = p->admin_idle
                            ? sd_event_source_set_time_relative(p->admin_idle, MY_ADMIN_IDLE_USEC)
                            : sd_event_add_time_relative(p->event, &p->admin_idle, CLOCK_MONOTONIC,
                                                         MY_ADMIN_IDLE_USEC, 1000000, on_admin_idle,
                                                         p);
                if (r >= 0)
                        r = sd_event_source_set_enabled(p->admin_idle, SD_EVENT_ONESHOT);
                if (r < 0)
                        admin_close(p);
                return;
        }
        if (p->admin_idle)
                sd_event_source_set_enabled(p->admin_idle, SD_EVENT_OFF);
        a->n_steps = 0;
        if (!a->m) {
                r = handle_new(p, &a->m);
                if (r < 0) {
                        log_warning("cannot open the MySQL connection that sends KILL: out of "
                                    "memory");
                        admin_drop_kills(p);
                        return;
                }
                a->event = p->event;
                a->owner = p;
                a->connect_to = p;
                a->connect_db = NULL;
                a->connect_flag = 0;
                async_step(a, MY_OP_CONNECT, NULL);
                r = async_run(a, p->connect_timeout_s > 0 ? p->connect_timeout_s * 1000 : 10000,
                              admin_connected, false);
                if (r < 0) {
                        admin_close(p);
                        admin_drop_kills(p);
                }
                return;
        }
        if (!p->admin_ready)
                return;
        /* Sessions to end first: a flood of cancels must not delay them. */
        struct my_kill_list *list = TAILQ_EMPTY(&p->kills) ? &p->cancels : &p->kills;
        struct my_kill *k = TAILQ_FIRST(list);
        TAILQ_REMOVE(list, k, link);
        if (k->query_only && k->target)
                k->target->queued_cancel = NULL; /* sent: the reset waits for it */
        p->admin_current = k;
        char sql[MY_SQL_MAX];
        snprintf(sql, sizeof(sql), "KILL %s%lu", k->query_only ? "QUERY " : "", k->thread_id);
        async_step(a, MY_OP_QUERY, sql);
        r = async_run(a, 10000, admin_kill_done, false);
        if (r < 0) {
                admin_close(p);
                admin_drop_kills(p);
        }
}

/*
 * Queues a KILL (or, query_only, a KILL QUERY) for thread_id; target (may be
 * NULL) is told when it is done. A KILL QUERY for a target is its
 * queued_cancel until it is sent. Returns 0 or -ENOMEM.
 */
static int admin_queue_kill(struct my_pool *p, unsigned long thread_id, bool query_only,
                            struct my_conn *target)
{
        struct my_kill *k = calloc(1, sizeof(*k));
        if (!k)
                return -ENOMEM;
        k->thread_id = thread_id;
        k->query_only = query_only;
        k->target = target;
        if (query_only) {
                TAILQ_INSERT_TAIL(&p->cancels, k, link);
                if (target)
                        target->queued_cancel = k;
        } else
                TAILQ_INSERT_TAIL(&p->kills, k, link);
        admin_kick(p);
        return 0;
}

/*
 * Drops c's KILL QUERY if it is still queued: its lease ended (or a new one
 * begins), and the next holder's statement must not be the one it stops. A
 * KILL QUERY already sent is waited for by the reset (kills_pending).
 */
static void drop_queued_cancel(struct my_conn *c)
{
        struct my_kill *k = c->queued_cancel;
        if (!k)
                return;
        c->queued_cancel = NULL;
        TAILQ_REMOVE(&c->pool->cancels, k, link);
        free(k);
        if (c->kills_pending > 0)
                c->kills_pending--;
}

/* --- connections --- */

static void conn_free(struct my_conn *c)
{
        struct my_pool *p = c->pool;
        struct my_kill *k;

        /* Queued KILLs for it go on (the thread id stays valid); nobody waits for them. */
        drop_queued_cancel(c);
        TAILQ_FOREACH(k, &p->kills, link)
        if (k->target == c)
                k->target = NULL;
        if (p->admin_current && p->admin_current->target == c)
                p->admin_current->target = NULL;
        async_free(&c->a);
        free(c);
        pool_unref(p);
}

/* Takes the session's handshake values and current state from the handle. */
static void conn_capture(struct my_conn *c)
{
        MYSQL *m = c->a.m;
        unsigned long caps = 0, ext = 0, flags = 0;
        MY_CHARSET_INFO cs;

        c->thread_id = (uint32_t)mysql_thread_id(m);
        c->protocol_version = mysql_get_proto_info(m);
        (void)mariadb_get_infov(m, MARIADB_CONNECTION_SERVER_CAPABILITIES, &caps);
        (void)mariadb_get_infov(m, MARIADB_CONNECTION_CLIENT_CAPABILITIES, &flags);
        if (!(caps & CLIENT_MYSQL))
                (void)mariadb_get_infov(m, MARIADB_CONNECTION_EXTENDED_SERVER_CAPABILITIES, &ext);
        c->server_caps = (uint32_t)caps;
        c->server_ext_caps = (uint32_t)ext;
        c->client_flag = (uint32_t)flags;
        /* What Connector/C negotiates from the greeting's extended capabilities. */
        c->client_ext_flag = (uint32_t)(ext & (MARIADB_CLIENT_SUPPORTED_FLAGS >> 32));
        c->server_language = m->server_language;
        c->server_status = m->server_status & ~MY_STATUS_TRANSIENT;
        mysql_get_character_set_info(m, &cs);
        snprintf(c->charset, sizeof(c->charset), "%s", cs.csname ? cs.csname : "");
        c->charset_nr = cs.number;
        snprintf(c->server_version, sizeof(c->server_version), "%s", mysql_get_server_info(m));
        snprintf(c->user, sizeof(c->user), "%s", m->user ? m->user : "");
        snprintf(c->db, sizeof(c->db), "%s", m->db ? m->db : "");
        memcpy(c->scramble, m->scramble_buff, sizeof(c->scramble));
}

static void conn_connected(struct my_async *a, int error, const char *text)
{
        struct my_conn *c = a->owner;
        fp_db_connect_cb cb = c->connect_cb;
        void *userdata = c->userdata;
        char why[FP_ERRTEXT_MAX];

        if (error == 0) {
                MYSQL *m = a->m;
                unsigned long flags = 0;
                (void)mariadb_get_infov(m, MARIADB_CONNECTION_CLIENT_CAPABILITIES, &flags);
                /* Neither TLS nor compression state can move between processes (§0, §B.1). */
                if (mysql_get_ssl_cipher(m) || (flags & CLIENT_SSL)) {
                        error = -EPROTO;
                        text = "the server negotiated TLS, which forkpool cannot lease; "
                               "connect without TLS";
                } else if (flags & (CLIENT_COMPRESS | CLIENT_ZSTD_COMPRESSION)) {
                        error = -EPROTO;
                        text = "the connection uses compression, which forkpool cannot lease";
                }
        }
        if (error < 0) {
                snprintf(why, sizeof(why), "%s", text);
                conn_free(c);
                cb(NULL, error == -ETIMEDOUT || error == -EPROTO ? error : -EHOSTUNREACH,
                   error == -ETIMEDOUT ? "connecting to the database timed out" : why, userdata);
                return;
        }
        (void)fcntl(mysql_get_socket(a->m), F_SETFD, FD_CLOEXEC);
        conn_capture(c);
        c->phase = MY_READY;
        cb(c, 0, NULL, userdata);
}

static int my_connect(sd_event *event, const void *prepared, int timeout_ms, fp_db_connect_cb cb,
                      void *userdata)
{
        /* The pool's shared state is ours to count references on. */
        struct my_pool *p = (struct my_pool *)prepared;
        struct my_conn *c = calloc(1, sizeof(*c));
        int r;

        if (!c)
                return -ENOMEM;
        p->event = event;
        p->refs++;
        c->pool = p;
        c->connect_cb = cb;
        c->userdata = userdata;
        c->phase = MY_CONNECTING;
        c->a.event = event;
        c->a.owner = c;
        c->a.connect_to = p;
        c->a.connect_db = p->database;
        c->a.connect_flag = p->client_flag;
        r = handle_new(p, &c->a.m);
        if (r >= 0 && mysql_optionsv(c->a.m, MYSQL_INIT_COMMAND, MY_TRACK_STATE) != 0)
                r = -ENOMEM;
        if (r >= 0 && p->init_command &&
            mysql_optionsv(c->a.m, MYSQL_INIT_COMMAND, p->init_command) != 0)
                r = -ENOMEM;
        if (r >= 0) {
                async_step(&c->a, MY_OP_CONNECT, NULL);
                r = async_run(&c->a, timeout_ms, conn_connected, true);
        }
        if (r < 0) {
                conn_free(c);
                return r;
        }
        return 0;
}

int fp_myconn_restore(sd_event *event, void *prepared, MYSQL *m, const struct fp_lease_mysql *info,
                      bool leased, void **ret)
{
        struct my_pool *p = prepared;
        struct my_conn *c = calloc(1, sizeof(*c));

        if (!c)
                return -ENOMEM;
        /* The admin connection (KILL) is opened on the pool's loop when first needed. */
        p->event = event;
        p->refs++;
        c->pool = p;
        c->phase = MY_READY;
        c->handed_out = leased;
        c->a.event = event;
        c->a.owner = c;
        c->a.connect_to = p;
        c->a.connect_db = p->database;
        c->a.connect_flag = p->client_flag;
        c->a.m = m;
        (void)fcntl(mysql_get_socket(m), F_SETFD, FD_CLOEXEC);
        c->thread_id = info->thread_id;
        c->protocol_version = info->protocol_version;
        c->server_caps = info->server_capabilities;
        c->server_ext_caps = info->server_ext_capabilities;
        c->client_flag = info->client_flag;
        c->client_ext_flag = info->client_ext_flag;
        c->server_language = info->server_language;
        c->server_status = info->server_status & ~MY_STATUS_TRANSIENT;
        c->charset_nr = info->charset_nr;
        snprintf(c->server_version, sizeof(c->server_version), "%.*s",
                 (int)strnlen(info->server_version, sizeof(info->server_version)),
                 info->server_version);
        snprintf(c->charset, sizeof(c->charset), "%.*s",
                 (int)strnlen(info->charset, sizeof(info->charset)), info->charset);
        snprintf(c->user, sizeof(c->user), "%.*s", (int)strnlen(info->user, sizeof(info->user)),
                 info->user);
        snprintf(c->db, sizeof(c->db), "%.*s", (int)strnlen(info->db, sizeof(info->db)), info->db);
        memcpy(c->scramble, info->scramble, sizeof(c->scramble));
        *ret = c;
        return 0;
}

/* --- reset --- */

static uint32_t txn_of(uint32_t server_status)
{
        return server_status & SERVER_STATUS_IN_TRANS ? FP_TXN_INTRANS : FP_TXN_IDLE;
}

/* Takes the worker's report (server_status, database, charset) as the session's state. */
static void apply_report(struct my_conn *c, const struct fp_release_info *info)
{
        const char *v;

        if (info->params_len == 0 || fp_params_check(info->params, info->params_len) < 0)
                return;
        v = fp_params_get(info->params, info->params_len, FP_MY_PARAM_STATUS);
        if (v)
                c->server_status = (uint32_t)strtoul(v, NULL, 10) & ~MY_STATUS_TRANSIENT;
        v = fp_params_get(info->params, info->params_len, FP_MY_PARAM_DATABASE);
        if (v)
                snprintf(c->db, sizeof(c->db), "%s", v);
        v = fp_params_get(info->params, info->params_len, FP_MY_PARAM_CHARSET);
        if (v) {
                const MARIADB_CHARSET_INFO *cs = mariadb_get_charset_by_name(v);
                if (cs) {
                        snprintf(c->charset, sizeof(c->charset), "%s", cs->csname);
                        c->charset_nr = cs->nr;
                }
        }
}

/* After statements of our own, the handle's view of the session is the truth. */
static void conn_refresh_from_handle(struct my_conn *c)
{
        MYSQL *m = c->a.m;
        MY_CHARSET_INFO cs;

        c->server_status = m->server_status & ~MY_STATUS_TRANSIENT;
        if (m->db)
                snprintf(c->db, sizeof(c->db), "%s", m->db);
        mysql_get_character_set_info(m, &cs);
        if (cs.csname) {
                snprintf(c->charset, sizeof(c->charset), "%s", cs.csname);
                c->charset_nr = cs.number;
        }
}

static void reset_done(struct my_async *a, int error, const char *text)
{
        struct my_conn *c = a->owner;

        c->phase = MY_READY;
        if (error < 0) {
                log_warning("reset of MySQL thread %u failed, closing it: %s", c->thread_id, text);
        } else {
                bool discarded = false;
                for (int i = 0; i < a->n_steps; i++)
                        discarded |= a->steps[i].op == MY_OP_RESET;
                if (discarded) {
                        /*
                         * COM_RESET_CONNECTION went back to the handshake's
                         * character set; the handle's cached one may be a
                         * worker's, so take the pool's.
                         */
                        const MARIADB_CHARSET_INFO *cs =
                                mariadb_get_charset_by_name(c->pool->charset);
                        if (cs) {
                                snprintf(c->charset, sizeof(c->charset), "%s", cs->csname);
                                c->charset_nr = cs->nr;
                        }
                        if (c->pool->database)
                                snprintf(c->db, sizeof(c->db), "%s", c->pool->database);
                }
                /* The status of our last statement's reply is fresh. */
                c->server_status = a->m->server_status & ~MY_STATUS_TRANSIENT;
        }
        c->reset_cb(c, error == 0, c->userdata);
}

static void reset_go(struct my_conn *c)
{
        if (c->a.n_steps == 0) {
                /*
                 * ROLLBACK or COMMIT outside a transaction changes nothing: the
                 * round trip is skipped and the session handed on as the worker
                 * left it (reset none: an open transaction included).
                 */
                c->reset_cb(c, true, c->userdata);
                return;
        }
        c->phase = MY_RUNNING;
        int r = async_run(&c->a, c->reset_timeout_ms, reset_done, false);
        if (r < 0) {
                log_warning("reset of MySQL thread %u failed, closing it: cannot watch it",
                            c->thread_id);
                c->phase = MY_READY;
                c->reset_cb(c, false, c->userdata);
        }
}

/* A KILL for c is done; a reset that waited for it may go on now. */
static void conn_kill_finished(struct my_conn *c)
{
        if (c->kills_pending > 0)
                c->kills_pending--;
        if (c->kills_pending == 0 && c->reset_waiting) {
                c->reset_waiting = false;
                reset_go(c);
        }
}

/* The steps of a reset; none when the session is already clean for mode. */
static void reset_plan(struct my_conn *c, enum fp_reset_mode mode,
                       const struct fp_release_info *info)
{
        struct my_async *a = &c->a;
        bool in_txn = info->txn != FP_TXN_IDLE;

        a->n_steps = 0;
        if (mode == FP_RESET_AUTO)
                mode = info->dirty ? FP_RESET_DISCARD : FP_RESET_ROLLBACK;
        switch (mode) {
        case FP_RESET_NONE:
                break;
        case FP_RESET_COMMIT:
                if (in_txn)
                        async_step(a, MY_OP_COMMIT, NULL);
                break;
        case FP_RESET_DISCARD:
                /*
                 * COM_RESET_CONNECTION rolls back and clears user variables,
                 * temporary tables, prepared statements and session variables,
                 * but keeps the current database and replies with the status
                 * from before the reset (adoption.md §B.5): select the pool's
                 * database again, and run a statement (the session settings
                 * a new connection gets) for a fresh status.
                 */
                async_step(a, MY_OP_RESET, NULL);
                if (c->pool->database)
                        async_step(a, MY_OP_SELECT_DB, c->pool->database);
                async_step(a, MY_OP_QUERY, MY_TRACK_STATE);
                if (c->pool->init_command)
                        async_step(a, MY_OP_QUERY, c->pool->init_command);
                break;
        default:
                if (in_txn)
                        async_step(a, MY_OP_ROLLBACK, NULL);
        }
}

static void my_reset(void *conn, enum fp_reset_mode mode, const struct fp_release_info *info,
                     int timeout_ms, fp_db_reset_cb cb, void *userdata)
{
        struct my_conn *c = conn;

        c->handed_out = false;
        c->reset_cb = cb;
        c->userdata = userdata;
        c->reset_timeout_ms = timeout_ms;
        apply_report(c, info);
        reset_plan(c, mode, info);
        /* The lease is over: a cancel not yet sent has nothing left to stop. */
        drop_queued_cancel(c);
        if (c->kills_pending > 0) {
                /*
                 * A KILL QUERY still on its way must not hit the next holder's
                 * query: the connection comes back once it is done.
                 */
                c->reset_waiting = true;
                return;
        }
        reset_go(c);
}

/* --- statements on an idle connection: pre-ping, on_connect --- */

static void exec_done(struct my_async *a, int error, const char *text)
{
        struct my_conn *c = a->owner;

        c->phase = MY_READY;
        if (error == 0)
                conn_refresh_from_handle(c);
        c->exec_cb(c, error, text, c->userdata);
}

static void my_exec(void *conn, const char *sql, int timeout_ms, fp_db_exec_cb cb, void *userdata)
{
        struct my_conn *c = conn;
        struct my_async *a = &c->a;

        c->exec_cb = cb;
        c->userdata = userdata;
        a->n_steps = 0;
        if (sql)
                async_step(a, MY_OP_QUERY, sql);
        else
                async_step(a, MY_OP_PING, NULL);
        c->phase = MY_RUNNING;
        int r = async_run(a, timeout_ms, exec_done, true);
        if (r < 0) {
                a->done = exec_done;
                a->running = true;
                a->error = -ECONNRESET;
                snprintf(a->text, sizeof(a->text), "cannot watch the connection");
                async_schedule_done(a);
        }
}

/* --- closing, describing, cancelling --- */

static void my_close(void *conn, bool hard)
{
        struct my_conn *c = conn;

        if (!c)
                return;
        int fd = c->a.m ? mysql_get_socket(c->a.m) : -1;
        if (hard && fd >= 0) {
                /* Cuts every copy: a worker's too. */
                (void)shutdown(fd, SHUT_RDWR);
                /*
                 * A statement running in the session would go on until it next
                 * writes; end the session from the server's side at once.
                 */
                if (c->handed_out || c->phase == MY_RUNNING)
                        (void)admin_queue_kill(c->pool, c->thread_id, false, NULL);
        }
        conn_free(c);
}

static void my_forget(void *conn)
{
        struct my_conn *c = conn;
        int fd = mysql_get_socket(c->a.m);

        /* mysql_close()'s COM_QUIT goes to an unconnected socket and fails quietly. */
        if (fd >= 0) {
                int dummy = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (dummy >= 0) {
                        (void)dup3(dummy, fd, O_CLOEXEC);
                        close(dummy);
                }
        }
        conn_free(c);
}

static int my_sock(const void *conn)
{
        const struct my_conn *c = conn;
        return mysql_get_socket(c->a.m);
}

static int my_backend_id(const void *conn)
{
        const struct my_conn *c = conn;
        return (int)c->thread_id;
}

void fp_myconn_describe(const void *conn, struct fp_lease_mysql *ret, uint32_t *ret_txn)
{
        const struct my_conn *c = conn;

        *ret_txn = txn_of(c->server_status);
        memset(ret, 0, sizeof(*ret));
        ret->thread_id = c->thread_id;
        ret->protocol_version = c->protocol_version;
        ret->server_capabilities = c->server_caps;
        ret->server_ext_capabilities = c->server_ext_caps;
        ret->client_flag = c->client_flag;
        ret->client_ext_flag = c->client_ext_flag;
        ret->server_language = c->server_language;
        ret->server_status = c->server_status;
        ret->charset_nr = c->charset_nr;
        snprintf(ret->server_version, sizeof(ret->server_version), "%s", c->server_version);
        snprintf(ret->charset, sizeof(ret->charset), "%s", c->charset);
        snprintf(ret->user, sizeof(ret->user), "%s", c->user);
        snprintf(ret->db, sizeof(ret->db), "%s", c->db);
        memcpy(ret->scramble, c->scramble, sizeof(ret->scramble));
}

static void my_describe(const void *conn, struct fp_msg_lease *msg)
{
        /* handed_out is the driver's bookkeeping of the lease, not session state. */
        struct my_conn *c = (struct my_conn *)conn;

        /* A cancel of the previous lease (returned unused) must not reach this one's. */
        drop_queued_cancel(c);
        c->handed_out = true;
        msg->db_kind = FP_DB_MYSQL;
        fp_myconn_describe(c, &msg->my, &msg->txn);
}

static int my_cancel(void *conn)
{
        struct my_conn *c = conn;

        if (!c->handed_out)
                return -ESRCH;
        /* One KILL QUERY queued per lease: a flood of cancels queues nothing more. */
        if (c->queued_cancel)
                return 0;
        /* Counted first: the KILL may be done before admin_queue_kill() returns. */
        c->kills_pending++;
        int r = admin_queue_kill(c->pool, c->thread_id, true, c);
        if (r < 0)
                c->kills_pending--;
        return r;
}

/* --- the driver interface --- */

static int my_prepare(const struct fp_url *url, void **ret)
{
        struct fp_url_mysql o;
        int r = fp_url_mysql_options(url, &o);
        if (r < 0)
                return r;

        const char *charset = o.charset ? o.charset : MY_DEFAULT_CHARSET;
        if (!mariadb_get_charset_by_name(charset)) {
                log_error("charset=%s: not a character set the MariaDB client library knows",
                          charset);
                return -EINVAL;
        }
        struct my_pool *p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->refs = 1;
        TAILQ_INIT(&p->kills);
        TAILQ_INIT(&p->cancels);
        p->port = o.port;
        p->connect_timeout_s = o.connect_timeout_s;
        p->client_flag = (o.multi_statements ? CLIENT_MULTI_STATEMENTS : 0) |
                         (o.found_rows ? CLIENT_FOUND_ROWS : 0);
        r = dup_opt(o.host, &p->host);
        if (r >= 0)
                r = dup_opt(o.user, &p->user);
        if (r >= 0)
                r = dup_opt(o.password, &p->password);
        if (r >= 0)
                r = dup_opt(o.database, &p->database);
        if (r >= 0)
                r = dup_opt(o.unix_socket, &p->unix_socket);
        if (r >= 0)
                r = dup_opt(charset, &p->charset);
        if (r >= 0)
                r = dup_opt(o.init_command, &p->init_command);
        if (r < 0) {
                pool_free(p);
                return r;
        }
        *ret = p;
        return 0;
}

static void my_unprepare(void *prepared)
{
        pool_unref(prepared);
}

const struct fp_db_driver fp_my_driver = {
        .name = "mysql",
        .kind = FP_DB_MYSQL,
        .prepare = my_prepare,
        .unprepare = my_unprepare,
        .connect = my_connect,
        .reset = my_reset,
        .close = my_close,
        .forget = my_forget,
        .exec = my_exec,
        .socket = my_sock,
        .backend_id = my_backend_id,
        .describe = my_describe,
        .cancel = my_cancel,
};
