/* SPDX-License-Identifier: MIT */
/*
 * myconn.c — the supervisor's MySQL/MariaDB connections (fp_my_driver in
 * driver.h), with MariaDB Connector/C's non-blocking API on the event loop
 * (myasync.h): nothing here blocks the loop.
 *
 * A leased connection is never read here: its io source is off from the
 * moment it is handed out. Its cached session state (server_status, current
 * database, character set) goes stale during a lease; the worker's report at
 * release makes it true again.
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
#include "fdutil.h"
#include "log.h"
#include "myadopt.h"
#include "myasync.h"
#include "myconn.h"
#include "mykill.h"
#include "text.h"

#define MY_DEFAULT_CHARSET "utf8mb4"
/*
 * Makes the server flag every change of session state (user variables,
 * temporary tables, prepared statements, session variables) in its replies,
 * so that a worker can tell whether its session needs a reset (auto).
 */
#define MY_TRACK_STATE "SET SESSION session_track_state_change = ON"
/* Bits of a lease's status that describe one reply, not the session. */
#define MY_STATUS_TRANSIENT                                                                        \
        (SERVER_MORE_RESULTS_EXIST | SERVER_QUERY_NO_GOOD_INDEX_USED |                             \
         SERVER_QUERY_NO_INDEX_USED | SERVER_STATUS_LAST_ROW_SENT | SERVER_STATUS_DB_DROPPED |     \
         SERVER_STATUS_METADATA_CHANGED | SERVER_QUERY_WAS_SLOW | SERVER_PS_OUT_PARAMS |           \
         SERVER_SESSION_STATE_CHANGED | SERVER_STATUS_CURSOR_EXISTS)

struct my_pool;
struct my_conn;

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
        struct my_killer killer; /* the admin connection for KILL (mykill.h) */
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

/* --- a pool's parameters and its admin connection --- */

static void pool_free(struct my_pool *p)
{
        fp_my_killer_done(&p->killer);
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

/* Where the pool's connections connect (its strings live as long as the pool). */
static struct my_server pool_server(const struct my_pool *p)
{
        return (struct my_server){.host = p->host,
                                  .user = p->user,
                                  .password = p->password,
                                  .unix_socket = p->unix_socket,
                                  .port = p->port};
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

/* --- connections --- */

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
        fp_my_killer_drop(&c->pool->killer, k);
        if (c->kills_pending > 0)
                c->kills_pending--;
}

static void conn_free(struct my_conn *c)
{
        struct my_pool *p = c->pool;

        /* Queued KILLs for it go on (the thread id stays valid); nobody waits for them. */
        drop_queued_cancel(c);
        fp_my_killer_forget_target(&p->killer, c);
        fp_my_async_free(&c->a);
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
        c->client_ext_flag = (uint32_t)ext & FP_MY_CLIENT_EXT_FLAGS;
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
                /* Neither TLS nor compression state can move between processes. */
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

/*
 * A connection of pool p on event, in phase, with no handle yet; it holds a
 * reference on p (conn_free() drops it). The pool's admin connection (KILL)
 * is opened on the same loop when first needed. NULL if out of memory.
 */
static struct my_conn *conn_new(struct my_pool *p, sd_event *event, enum my_phase phase)
{
        struct my_conn *c = calloc(1, sizeof(*c));
        if (!c)
                return NULL;
        p->killer.event = event;
        p->refs++;
        c->pool = p;
        c->phase = phase;
        c->a.event = event;
        c->a.owner = c;
        c->a.connect_to = pool_server(p);
        c->a.connect_db = p->database;
        c->a.connect_flag = p->client_flag;
        return c;
}

static int my_connect(sd_event *event, const void *prepared, int timeout_ms, fp_db_connect_cb cb,
                      void *userdata)
{
        /* The pool's shared state is ours to count references on. */
        struct my_pool *p = (struct my_pool *)prepared;
        struct my_conn *c = conn_new(p, event, MY_CONNECTING);
        int r;

        if (!c)
                return -ENOMEM;
        c->connect_cb = cb;
        c->userdata = userdata;
        r = handle_new(p, &c->a.m);
        if (r >= 0 && mysql_optionsv(c->a.m, MYSQL_INIT_COMMAND, MY_TRACK_STATE) != 0)
                r = -ENOMEM;
        if (r >= 0 && p->init_command &&
            mysql_optionsv(c->a.m, MYSQL_INIT_COMMAND, p->init_command) != 0)
                r = -ENOMEM;
        if (r >= 0) {
                fp_my_async_step(&c->a, MY_OP_CONNECT, NULL);
                r = fp_my_async_run(&c->a, timeout_ms, conn_connected, true);
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
        struct my_conn *c = conn_new(prepared, event, MY_READY);

        if (!c)
                return -ENOMEM;
        c->handed_out = leased;
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
        int r = fp_my_async_run(&c->a, c->reset_timeout_ms, reset_done, false);
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
                        fp_my_async_step(a, MY_OP_COMMIT, NULL);
                break;
        case FP_RESET_DISCARD:
                /*
                 * COM_RESET_CONNECTION rolls back and clears user variables,
                 * temporary tables, prepared statements and session variables,
                 * but keeps the current database and replies with the status
                 * from before the reset: select the pool's
                 * database again, and run a statement (the session settings
                 * a new connection gets) for a fresh status.
                 */
                fp_my_async_step(a, MY_OP_RESET, NULL);
                if (c->pool->database)
                        fp_my_async_step(a, MY_OP_SELECT_DB, c->pool->database);
                fp_my_async_step(a, MY_OP_QUERY, MY_TRACK_STATE);
                if (c->pool->init_command)
                        fp_my_async_step(a, MY_OP_QUERY, c->pool->init_command);
                break;
        default:
                if (in_txn)
                        fp_my_async_step(a, MY_OP_ROLLBACK, NULL);
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
                fp_my_async_step(a, MY_OP_QUERY, sql);
        else
                fp_my_async_step(a, MY_OP_PING, NULL);
        c->phase = MY_RUNNING;
        int r = fp_my_async_run(a, timeout_ms, exec_done, true);
        if (r < 0)
                fp_my_async_fail_later(a, exec_done, -ECONNRESET, "cannot watch the connection");
}

/* --- closing, describing, cancelling --- */

static void my_close(void *conn, bool hard)
{
        struct my_conn *c = conn;

        if (!c)
                return;
        int fd = c->a.m ? mysql_get_socket(c->a.m) : -1;
        if (hard && fd >= 0) {
                /*
                 * A statement running in the session would go on until it next
                 * writes; end the session from the server's side at once. Every
                 * copy of the socket (a worker's too) stops sending now, and is
                 * cut when the KILL is done; without a KILL, at once.
                 */
                bool busy = c->handed_out || c->phase == MY_RUNNING;
                if (busy &&
                    fp_my_killer_queue(&c->pool->killer, c->thread_id, fd, false, NULL, NULL) == 0)
                        (void)shutdown(fd, SHUT_WR);
                else
                        (void)shutdown(fd, SHUT_RDWR);
        }
        conn_free(c);
}

static void my_forget(void *conn)
{
        struct my_conn *c = conn;
        int fd = mysql_get_socket(c->a.m);

        /* mysql_close()'s COM_QUIT goes to an unconnected socket and fails quietly. */
        if (fd >= 0)
                (void)fp_neutralize_fd(fd);
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
        /* Counted first: the KILL may be done before fp_my_killer_queue() returns. */
        c->kills_pending++;
        int r = fp_my_killer_queue(&c->pool->killer, c->thread_id, mysql_get_socket(c->a.m), true,
                                   c, &c->queued_cancel);
        if (r < 0)
                c->kills_pending--;
        return r;
}

/* --- the driver interface --- */

/* struct my_killer.new_handle */
static int killer_new_handle(void *owner, MYSQL **ret)
{
        return handle_new(owner, ret);
}

/* struct my_killer.done */
static void killer_done(void *owner, void *target)
{
        (void)owner;
        conn_kill_finished(target);
}

/* struct my_killer.unqueued */
static void killer_unqueued(void *owner, void *target)
{
        struct my_conn *c = target;
        (void)owner;
        c->queued_cancel = NULL;
}

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
        fp_my_killer_init(&p->killer);
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
        /* The admin connection for KILL: as a connection of the pool, without its database. */
        p->killer.server = pool_server(p);
        p->killer.connect_timeout_ms =
                p->connect_timeout_s > 0 ? p->connect_timeout_s * 1000 : 10000;
        p->killer.owner = p;
        p->killer.new_handle = killer_new_handle;
        p->killer.done = killer_done;
        p->killer.unqueued = killer_unqueued;
        *ret = p;
        return 0;
}

static void my_unprepare(void *prepared)
{
        pool_unref(prepared);
}

static void my_save(const void *conn, struct fp_saved_slot *s)
{
        fp_myconn_describe(conn, &s->my, &s->txn);
}

static int my_restore(sd_event *event, void *prepared, int fd, const struct fp_saved_slot *s,
                      void **ret)
{
        char why[FP_ERRTEXT_MAX];
        MYSQL *m;

        int r = fp_my_adopt(fd, &s->my, NULL, NULL, &m, why, sizeof(why));
        if (r < 0) {
                if (why[0])
                        log_warning("fd store: pool %s: thread %u: %s", s->pool, s->my.thread_id,
                                    why);
                close(fd);
                return r;
        }
        r = fp_myconn_restore(event, prepared, m, &s->my, s->state == FP_SLOT_LEASED, ret);
        if (r < 0)
                mysql_close(m);
        return r;
}

const struct fp_db_driver fp_my_driver = {
        .name = "mysql",
        .kind = FP_DB_MYSQL,
        .tls_off = "the client never asks for TLS; a server that requires it is refused",
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
        .save = my_save,
        .restore = my_restore,
        .restore_done = fp_my_adopt_close_listener,
};
