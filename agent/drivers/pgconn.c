/* SPDX-License-Identifier: MIT */
/*
 * pgconn.c — the supervisor's PostgreSQL connections (pgconn.h).
 */
#include "pgconn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "driver.h"
#include "fdutil.h"
#include "log.h"
#include "pgadopt.h"
#include "pgcancel.h"
#include "pgtrace.h"
#include "sockwatch.h"
#include "text.h"

enum pgconn_phase {
        PGCONN_CONNECTING,
        PGCONN_READY,
        PGCONN_RUNNING, /* statements of a reset, a ping or an exec */
};

#define PG_MAX_STEPS 4
#define PG_SQL_MAX   2048

struct fp_pgconn;

/* What to do when the statements being run are done (error 0: all succeeded). */
typedef void (*run_done_fn)(struct fp_pgconn *pc, int error, const char *text);

struct fp_pgconn {
        PGconn *conn;
        sd_event *event;
        struct fp_sockwatch io; /* the socket; enabled only while connecting or resetting */
        sd_event_source *timer; /* connect or reset deadline */
        sd_event_source *defer; /* reports a connect that failed at once */
        enum pgconn_phase phase;

        fp_db_connect_cb connect_cb;
        fp_db_reset_cb reset_cb;
        fp_db_exec_cb exec_cb;
        void *userdata;

        /* The statements being run, one round trip each. */
        char steps[PG_MAX_STEPS][PG_SQL_MAX];
        int n_steps, step;
        int run_error;
        char run_text[FP_ERRTEXT_MAX];
        run_done_fn run_done;
        int run_timeout_ms; /* the run's limit, from its start (or its read-back's) */
        bool readback_sent;

        /* libpq's protocol trace of the handshake, for the cancel key (pgtrace.h). */
        FILE *trace;
        char *trace_buf;
        size_t trace_len;

        int backend_pid;
        int cancel_key;
        bool has_cancel_key;
        struct sockaddr_storage server_addr;
        socklen_t server_addr_len;

        uint32_t txn; /* enum fp_txn at the next hand-over */
        /* The session's current reported values (NULL: not reported); set with param_set(). */
        char *params[FP_PG_N_REPORTED];
        /*
         * The same, packed as a lease hands them over ("name\0value\0" in
         * fp_pg_reported_params' order): copied into each lease, and compared
         * with each release's report, which is these very bytes when the
         * worker changed nothing.
         */
        char packed[FP_PARAMS_MAX];
        uint32_t packed_len;
        /* What the supervisor's libpq showed before the reset (to spot new reports). */
        char *before_reset[FP_PG_N_REPORTED];
        /* What the worker reported, before the reset (to spot ambiguous values). */
        char *reported[FP_PG_N_REPORTED];
        /* Indexes of parameters whose value the reset reads back. */
        int readback[FP_PG_N_REPORTED];
        int n_readback;

        /*
         * The named statements the drop-in prepared on the session (a pool in
         * transaction mode), as the last release reported them; unknown for a
         * session a previous supervisor left (the fd store) until a reset
         * deallocates them.
         */
        struct fp_stmt_set statements;
        bool statements_unknown;
};

static void notice_ignore(void *arg, const char *message)
{
        (void)arg;
        log_debug("server notice on a supervisor connection: %s", message);
}

/*
 * Ends the handshake's trace and wipes its text: with password
 * authentication it holds what the client sent.
 */
static void trace_stop(struct fp_pgconn *pc)
{
        if (!pc->trace)
                return;
        if (pc->conn)
                PQuntrace(pc->conn);
        fclose(pc->trace);
        pc->trace = NULL;
        if (pc->trace_buf) {
                explicit_bzero(pc->trace_buf, pc->trace_len);
                free(pc->trace_buf);
        }
        pc->trace_buf = NULL;
        pc->trace_len = 0;
}

static void pgconn_free(struct fp_pgconn *pc)
{
        trace_stop(pc);
        fp_sockwatch_free(&pc->io);
        sd_event_source_disable_unref(pc->timer);
        sd_event_source_disable_unref(pc->defer);
        if (pc->conn)
                PQfinish(pc->conn);
        for (size_t i = 0; i < FP_PG_N_REPORTED; i++) {
                free(pc->params[i]);
                free(pc->before_reset[i]);
                free(pc->reported[i]);
        }
        free(pc);
}

static void pgconn_fail_connect(struct fp_pgconn *pc, int error, const char *why)
{
        char text[FP_ERRTEXT_MAX];
        fp_one_line(why, text, sizeof(text));
        fp_db_connect_cb cb = pc->connect_cb;
        void *userdata = pc->userdata;
        pgconn_free(pc);
        cb(NULL, error, text, userdata);
}

static char *param_dup(const char *value)
{
        return value ? strdup(value) : NULL;
}

/* Makes value (owned from here on, NULL: not reported) parameter i's, and packs them again. */
static void param_set(struct fp_pgconn *pc, size_t i, char *value)
{
        free(pc->params[i]);
        pc->params[i] = value;
        pc->packed_len = 0;
        for (size_t k = 0; k < FP_PG_N_REPORTED; k++)
                if (pc->params[k])
                        (void)fp_params_add(pc->packed, sizeof(pc->packed), &pc->packed_len,
                                            fp_pg_reported_params[k], pc->params[k]);
}

static void capture_session(struct fp_pgconn *pc)
{
        pc->backend_pid = PQbackendPID(pc->conn);
        pc->txn = FP_TXN_IDLE;
        for (size_t i = 0; i < FP_PG_N_REPORTED; i++)
                param_set(pc, i, param_dup(PQparameterStatus(pc->conn, fp_pg_reported_params[i])));

        /*
         * The cancel key as the server sent it, from libpq's trace of the
         * handshake; the address is the socket's peer (the real server, the
         * one a CancelRequest must reach).
         */
        int r = -ENOENT, pid = 0, key = 0;
        if (pc->trace && fflush(pc->trace) == 0)
                r = fp_pgtrace_backend_key(pc->trace_buf, pc->trace_len, &pid, &key);
        trace_stop(pc);
        pc->server_addr_len = sizeof(pc->server_addr);
        if (r >= 0 && pid == pc->backend_pid &&
            getpeername(PQsocket(pc->conn), (struct sockaddr *)&pc->server_addr,
                        &pc->server_addr_len) == 0 &&
            pc->server_addr_len > 0 && pc->server_addr_len <= sizeof(pc->server_addr)) {
                pc->cancel_key = key;
                pc->has_cancel_key = true;
        } else {
                pc->server_addr_len = 0;
                log_warning("backend %d: no cancel key in libpq's trace of the handshake (%s): "
                            "forkpool_cancel() will refuse on this connection",
                            pc->backend_pid,
                            r == -EPROTO ? "a key format this build does not know"
                                         : "no BackendKeyData seen");
        }
}

static int pgconn_watch(struct fp_pgconn *pc, uint32_t events);
static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata);

static int on_connect_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct fp_pgconn *pc = userdata;
        (void)s, (void)fd, (void)revents;

        switch (PQconnectPoll(pc->conn)) {
        case PGRES_POLLING_READING:
                if (pgconn_watch(pc, EPOLLIN) < 0)
                        pgconn_fail_connect(pc, -ENOMEM, "cannot watch the connection");
                return 0;
        case PGRES_POLLING_WRITING:
                if (pgconn_watch(pc, EPOLLOUT) < 0)
                        pgconn_fail_connect(pc, -ENOMEM, "cannot watch the connection");
                return 0;
        case PGRES_POLLING_FAILED:
                pgconn_fail_connect(pc, -EHOSTUNREACH, PQerrorMessage(pc->conn));
                return 0;
        default:
                break;
        }

        /* Connected. A TLS session cannot move between processes. */
        if (PQsslInUse(pc->conn)) {
                pgconn_fail_connect(pc, -EPROTO,
                                    "the server negotiated TLS, which forkpool "
                                    "cannot lease; set sslmode=disable");
                return 0;
        }
        fp_sockwatch_free(&pc->io); /* idle: no duplicate kept */
        sd_event_source_set_enabled(pc->timer, SD_EVENT_OFF);
        PQsetNoticeProcessor(pc->conn, notice_ignore, NULL);
        int sock = PQsocket(pc->conn);
        (void)fcntl(sock, F_SETFD, FD_CLOEXEC);
        capture_session(pc);
        pc->phase = PGCONN_READY;
        pc->connect_cb(pc, 0, NULL, pc->userdata);
        return 0;
}

static int on_timeout(sd_event_source *s, uint64_t usec, void *userdata);

/*
 * Points the io source at the connection's current socket (libpq may switch
 * sockets while connecting, to another address), waiting for events.
 */
static int pgconn_watch(struct fp_pgconn *pc, uint32_t events)
{
        return fp_sockwatch_set(&pc->io, pc->event, PQsocket(pc->conn), events, true, on_io, pc);
}

static int arm_timer(struct fp_pgconn *pc, int timeout_ms)
{
        uint64_t when = fp_monotonic_usec() + (uint64_t)timeout_ms * 1000u;
        if (!pc->timer)
                return sd_event_add_time(pc->event, &pc->timer, CLOCK_MONOTONIC, when, 1000,
                                         on_timeout, pc);
        int r = sd_event_source_set_time(pc->timer, when);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(pc->timer, SD_EVENT_ONESHOT);
}

static int on_connect_failed_at_once(sd_event_source *s, void *userdata)
{
        struct fp_pgconn *pc = userdata;
        (void)s;
        pgconn_fail_connect(pc, -EHOSTUNREACH,
                            pc->conn ? PQerrorMessage(pc->conn) : "out of memory in libpq");
        return 0;
}

int fp_pgconn_connect(sd_event *event, const char *const *keys, const char *const *values,
                      int timeout_ms, fp_db_connect_cb cb, void *userdata, struct fp_pgconn **ret)
{
        struct fp_pgconn *pc = calloc(1, sizeof(*pc));
        int r;

        if (!pc)
                return -ENOMEM;
        pc->event = event;
        pc->connect_cb = cb;
        pc->userdata = userdata;
        pc->phase = PGCONN_CONNECTING;
        pc->conn = PQconnectStartParams(keys, values, 0);

        if (pc->conn && PQstatus(pc->conn) != CONNECTION_BAD) {
                /*
                 * Trace the handshake: BackendKeyData arrives after the first
                 * poll, which only starts the connect and sends the startup
                 * packet. Without a trace the connection works, with no cancel.
                 */
                pc->trace = open_memstream(&pc->trace_buf, &pc->trace_len);
                if (pc->trace) {
                        PQtrace(pc->conn, pc->trace);
                        PQsetTraceFlags(pc->conn, PQTRACE_SUPPRESS_TIMESTAMPS);
                }
        }
        if (!pc->conn || PQstatus(pc->conn) == CONNECTION_BAD)
                r = sd_event_add_defer(event, &pc->defer, on_connect_failed_at_once, pc);
        else {
                /* libpq's documented first step: poll as if it had returned WRITING. */
                r = pgconn_watch(pc, EPOLLOUT);
                if (r >= 0)
                        r = arm_timer(pc, timeout_ms);
        }
        if (r < 0) {
                pgconn_free(pc);
                return r;
        }
        *ret = pc;
        return 0;
}

/* --- reset --- */

/* --- running statements: resets, pings, on_connect hooks --- */

static void run_stop_watching(struct fp_pgconn *pc)
{
        fp_sockwatch_free(&pc->io); /* idle: no duplicate kept */
        if (pc->timer)
                sd_event_source_set_enabled(pc->timer, SD_EVENT_OFF);
        pc->phase = PGCONN_READY;
}

static void run_finish(struct fp_pgconn *pc, int error, const char *text)
{
        run_stop_watching(pc);
        pc->run_done(pc, error, text ? text : "");
}

/* The connection is broken (not merely an SQL error). */
static void run_fail_connection(struct fp_pgconn *pc)
{
        char text[FP_ERRTEXT_MAX];
        fp_one_line(PQerrorMessage(pc->conn), text, sizeof(text));
        run_finish(pc, -ECONNRESET, text);
}

/* Sends the current step and watches the socket for its results. */
static int run_send(struct fp_pgconn *pc)
{
        if (!PQsendQuery(pc->conn, pc->steps[pc->step]))
                return -ECONNRESET;
        int flushed = PQflush(pc->conn);
        if (flushed < 0)
                return -ECONNRESET;
        return pgconn_watch(pc, flushed == 1 ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

/* A result of the current step. Read-back values are taken here. */
static void run_take_result(struct fp_pgconn *pc, PGresult *res)
{
        ExecStatusType st = PQresultStatus(res);

        if (pc->readback_sent && pc->step == pc->n_steps - 1 && st == PGRES_TUPLES_OK &&
            PQntuples(res) == 1 && PQnfields(res) == pc->n_readback) {
                for (int f = 0; f < pc->n_readback; f++) {
                        int i = pc->readback[f];
                        param_set(pc, (size_t)i,
                                  PQgetisnull(res, 0, f) ? NULL : strdup(PQgetvalue(res, 0, f)));
                }
        } else if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY &&
                   pc->run_error == 0) {
                pc->run_error = -EIO;
                fp_one_line(PQresultErrorMessage(res), pc->run_text, sizeof(pc->run_text));
        }
}

/*
 * Takes what the server has sent for the run so far, without waiting.
 * Returns true while the run goes on; false when it ended (its done callback
 * ran, and pc may be gone).
 */
static bool run_progress(struct fp_pgconn *pc)
{
        if (PQflush(pc->conn) < 0 || !PQconsumeInput(pc->conn)) {
                run_fail_connection(pc);
                return false;
        }
        while (!PQisBusy(pc->conn)) {
                PGresult *res = PQgetResult(pc->conn);
                if (res) {
                        run_take_result(pc, res);
                        PQclear(res);
                        continue;
                }
                /* This step is done. */
                if (PQstatus(pc->conn) == CONNECTION_BAD) {
                        run_fail_connection(pc);
                        return false;
                }
                if (pc->run_error < 0 || ++pc->step == pc->n_steps) {
                        run_finish(pc, pc->run_error, pc->run_text);
                        return false;
                }
                if (run_send(pc) < 0) {
                        run_fail_connection(pc);
                        return false;
                }
                return true;
        }
        return true;
}

static int on_run_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        (void)s, (void)fd, (void)revents;
        (void)run_progress(userdata);
        return 0;
}

/*
 * Runs pc->steps[0..n_steps) one after the other on the supervisor's handle,
 * then calls done. A failed statement ends the run with -EIO; a broken
 * connection with -ECONNRESET.
 */
static void run_start(struct fp_pgconn *pc, int timeout_ms, run_done_fn done)
{
        pc->run_done = done;
        pc->run_timeout_ms = timeout_ms;
        pc->run_error = 0;
        pc->run_text[0] = '\0';
        pc->step = 0;
        pc->phase = PGCONN_RUNNING;
        int r = run_send(pc);
        if (r >= 0)
                r = arm_timer(pc, timeout_ms);
        if (r < 0)
                run_fail_connection(pc);
}

/* One io source per connection serves both phases that watch the socket. */
static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct fp_pgconn *pc = userdata;
        if (pc->phase == PGCONN_CONNECTING)
                return on_connect_io(s, fd, revents, userdata);
        if (pc->phase == PGCONN_RUNNING)
                return on_run_io(s, fd, revents, userdata);
        /* Idle or leased: the source is off; a stray wakeup is ignored. */
        return 0;
}

static int on_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct fp_pgconn *pc = userdata;
        (void)s, (void)usec;

        if (pc->phase == PGCONN_CONNECTING)
                pgconn_fail_connect(pc, -ETIMEDOUT, "connecting to the database timed out");
        else if (pc->phase == PGCONN_RUNNING && run_progress(pc))
                /*
                 * Only what has not come by now: after a long iteration (or a
                 * stop) the deadline can fire before the socket's answer is read.
                 */
                run_finish(pc, -ETIMEDOUT, "the server did not answer in time");
        return 0;
}

int fp_pgconn_restore(sd_event *event, PGconn *conn, const struct fp_lease_pg *info, uint32_t txn,
                      struct fp_pgconn **ret)
{
        struct fp_pgconn *pc = calloc(1, sizeof(*pc));
        if (!pc)
                return -ENOMEM;
        pc->event = event;
        pc->phase = PGCONN_READY; /* idle: its socket is watched once a statement runs */
        pc->conn = conn;
        PQsetNoticeProcessor(conn, notice_ignore, NULL);
        pc->backend_pid = info->backend_pid;
        pc->cancel_key = info->cancel_key;
        pc->has_cancel_key = info->has_cancel_key;
        if (info->server_addr_len > 0 && info->server_addr_len <= sizeof(pc->server_addr)) {
                memcpy(&pc->server_addr, &info->server_addr, info->server_addr_len);
                pc->server_addr_len = info->server_addr_len;
        }
        pc->txn = txn;
        pc->statements_unknown = true;
        bool valid = fp_params_check(info->params, info->params_len) >= 0;
        for (size_t i = 0; i < FP_PG_N_REPORTED; i++)
                param_set(pc, i,
                          param_dup(valid ? fp_params_get(info->params, info->params_len,
                                                          fp_pg_reported_params[i])
                                          : NULL));
        *ret = pc;
        return 0;
}

/* --- reset --- */

static void free_param_array(char **values)
{
        for (size_t i = 0; i < FP_PG_N_REPORTED; i++) {
                free(values[i]);
                values[i] = NULL;
        }
}

/*
 * After the reset statements: a value the server reported meanwhile is the
 * truth. A value the worker had changed but that looks unchanged here may have
 * been reverted to what this handle already showed (a report we cannot see):
 * those are read back with one more statement. Returns true if it was sent.
 */
static bool reset_read_back_ambiguous(struct fp_pgconn *pc)
{
        size_t n = (size_t)snprintf(pc->steps[pc->n_steps], PG_SQL_MAX, "SELECT ");
        pc->n_readback = 0;
        for (size_t i = 0; i < FP_PG_N_REPORTED; i++) {
                const char *now = PQparameterStatus(pc->conn, fp_pg_reported_params[i]);
                const char *before = pc->before_reset[i], *worker = pc->reported[i];
                bool reported_now = now && (!before || strcmp(now, before) != 0);
                if (reported_now) {
                        param_set(pc, i, strdup(now));
                        continue;
                }
                if (!worker || !before || strcmp(worker, before) == 0 || n >= PG_SQL_MAX)
                        continue;
                n += (size_t)snprintf(pc->steps[pc->n_steps] + n, PG_SQL_MAX - n,
                                      "%scurrent_setting('%s')", pc->n_readback ? ", " : "",
                                      fp_pg_reported_params[i]);
                pc->readback[pc->n_readback++] = (int)i;
        }
        return pc->n_readback > 0 && n < PG_SQL_MAX;
}

static void reset_done(struct fp_pgconn *pc, int error, const char *text)
{
        if (error == 0 && !pc->readback_sent && reset_read_back_ambiguous(pc)) {
                pc->readback_sent = true;
                pc->step = pc->n_steps++;
                /* The run's end stopped its timer: the read-back gets a deadline of its own. */
                if (run_send(pc) >= 0 && arm_timer(pc, pc->run_timeout_ms) >= 0) {
                        pc->phase = PGCONN_RUNNING;
                        return;
                }
                error = -ECONNRESET;
                text = "cannot read the session's settings back";
        }
        if (error < 0)
                log_warning("reset of backend %d failed, closing it: %s", pc->backend_pid, text);
        else
                pc->txn = FP_TXN_IDLE;
        free_param_array(pc->before_reset);
        free_param_array(pc->reported);
        pc->reset_cb(pc, error == 0, pc->userdata);
}

/*
 * Takes the worker's reported values as the session's current ones; with
 * keep_reported (a reset is about to run) also remembers them in
 * pc->reported. A report of exactly the values the lease was handed (the
 * common release) changes nothing and is not parsed.
 */
static void apply_report(struct fp_pgconn *pc, const struct fp_release_info *info,
                         bool keep_reported)
{
        if (info->params_len == 0)
                return;
        if (!keep_reported && info->params_len == pc->packed_len &&
            memcmp(info->params, pc->packed, pc->packed_len) == 0)
                return;
        if (fp_params_check(info->params, info->params_len) < 0)
                return;
        for (size_t i = 0; i < FP_PG_N_REPORTED; i++) {
                const char *v =
                        fp_params_get(info->params, info->params_len, fp_pg_reported_params[i]);
                if (!v)
                        continue;
                if (!pc->params[i] || strcmp(pc->params[i], v) != 0)
                        param_set(pc, i, strdup(v));
                if (keep_reported) {
                        free(pc->reported[i]);
                        pc->reported[i] = strdup(v);
                }
        }
}

/*
 * The statements a reset needs: none when the session is already clean. A
 * release that asks for it (FP_RELEASE_CLEAN_DIRTY: the libpq drop-in, whose
 * clients leave prepared statements, cursors and SETs behind) also gets
 * DISCARD ALL when it reports a changed session, whatever the pool's mode.
 * In a pool that keeps statement sets (transaction mode), a release that
 * reports the session's set makes it pc's; one that does not (a holder that
 * does not keep it) gets DEALLOCATE ALL when the set may hold anything. Each
 * statement that drops them all empties the set.
 */
static int reset_plan(struct fp_pgconn *pc, enum fp_reset_mode mode,
                      const struct fp_release_info *info, char steps[][PG_SQL_MAX])
{
        bool in_txn = info->txn != FP_TXN_IDLE;
        bool discard =
                info->dirty && (mode == FP_RESET_AUTO || (info->flags & FP_RELEASE_CLEAN_DIRTY));
        bool deallocate = false;
        int n = 0;

        if (info->keep_statements && info->statements) {
                pc->statements = *info->statements;
                pc->statements_unknown = false;
        } else if (info->keep_statements) {
                deallocate = pc->statements_unknown || pc->statements.count > 0;
        } else {
                /* Not kept (session mode): unknown, should a reload make it transaction mode. */
                pc->statements_unknown = true;
        }
        switch (mode) {
        case FP_RESET_NONE:
                if (discard && in_txn)
                        snprintf(steps[n++], PG_SQL_MAX, "ROLLBACK");
                break;
        case FP_RESET_COMMIT:
                if (in_txn)
                        snprintf(steps[n++], PG_SQL_MAX, "COMMIT");
                break;
        case FP_RESET_DISCARD:
                discard = true;
                /* DISCARD ALL refuses to run inside a transaction block. */
                __attribute__((fallthrough));
        default:
                if (in_txn)
                        snprintf(steps[n++], PG_SQL_MAX, "ROLLBACK");
        }
        if (discard)
                snprintf(steps[n++], PG_SQL_MAX, "DISCARD ALL");
        else if (deallocate)
                snprintf(steps[n++], PG_SQL_MAX, "DEALLOCATE ALL");
        if (discard || deallocate) {
                /* A failed reset closes the connection: the set goes with it. */
                pc->statements.count = 0;
                pc->statements_unknown = false;
        }
        return n;
}

void fp_pgconn_reset(struct fp_pgconn *pc, enum fp_reset_mode mode,
                     const struct fp_release_info *info, int timeout_ms, fp_db_reset_cb cb,
                     void *userdata)
{
        pc->reset_cb = cb;
        pc->userdata = userdata;
        pc->readback_sent = false;

        /*
         * ROLLBACK or COMMIT outside a transaction changes nothing: when the
         * worker saw the session idle (and, for auto, unchanged), the round
         * trip is skipped and the session is handed on as it is (reset none:
         * open transaction included). Only statements about to run need the
         * values from before them (the common release, with none, copies
         * nothing).
         */
        pc->n_steps = reset_plan(pc, mode, info, pc->steps);
        if (pc->n_steps == 0) {
                apply_report(pc, info, false);
                pc->txn = info->txn == FP_TXN_UNKNOWN ? FP_TXN_IDLE : info->txn;
                free_param_array(pc->reported);
                cb(pc, true, userdata);
                return;
        }
        for (size_t i = 0; i < FP_PG_N_REPORTED; i++)
                pc->before_reset[i] =
                        param_dup(PQparameterStatus(pc->conn, fp_pg_reported_params[i]));
        apply_report(pc, info, true);
        run_start(pc, timeout_ms, reset_done);
}

/* --- exec: pings and on_connect hooks --- */

/*
 * Takes every value that the supervisor's libpq saw reported since
 * before_reset was filled (a hook's SET, a reset's DISCARD ALL) as the
 * session's current one, so that the next lease's libpq agrees with the
 * server. Frees before_reset.
 */
static void take_reported(struct fp_pgconn *pc)
{
        for (size_t i = 0; i < FP_PG_N_REPORTED; i++) {
                const char *now = PQparameterStatus(pc->conn, fp_pg_reported_params[i]);
                const char *before = pc->before_reset[i];
                if (now && (!before || strcmp(now, before) != 0)) {
                        char *copy = strdup(now);
                        if (copy)
                                param_set(pc, i, copy);
                }
        }
        free_param_array(pc->before_reset);
}

static void exec_done(struct fp_pgconn *pc, int error, const char *text)
{
        /* A hook's statement may have changed reported settings (SET application_name). */
        take_reported(pc);
        pc->exec_cb(pc, error, text, pc->userdata);
}

void fp_pgconn_exec(struct fp_pgconn *pc, const char *sql, int timeout_ms, fp_db_exec_cb cb,
                    void *userdata)
{
        pc->exec_cb = cb;
        pc->userdata = userdata;
        pc->readback_sent = false;
        for (size_t i = 0; i < FP_PG_N_REPORTED; i++) {
                free(pc->before_reset[i]);
                pc->before_reset[i] =
                        param_dup(PQparameterStatus(pc->conn, fp_pg_reported_params[i]));
        }
        /* The empty query is PostgreSQL's cheapest round trip: the ping. */
        snprintf(pc->steps[0], PG_SQL_MAX, "%s", sql ? sql : "");
        pc->n_steps = 1;
        run_start(pc, timeout_ms, exec_done);
}

/* A CancelRequest on its way to the server; frees itself. */
struct pending_cancel {
        sd_event_source *io;
        int fd;
        uint32_t packet[4];
};

/* The source's destroy callback: also when the loop ends first (shutdown). */
static void pending_cancel_free(void *userdata)
{
        struct pending_cancel *pcx = userdata;
        if (pcx->fd >= 0)
                close(pcx->fd);
        free(pcx);
}

static int on_cancel_writable(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct pending_cancel *pcx = userdata;
        (void)revents;
        /* One small write; the server acts on it and closes. Errors change nothing. */
        (void)send(fd, pcx->packet, sizeof(pcx->packet), MSG_NOSIGNAL | MSG_DONTWAIT);
        sd_event_source_disable_unref(s); /* frees pcx (pending_cancel_free) */
        return 0;
}

/*
 * Asks the server to cancel whatever the backend is running, without waiting:
 * a backend busy in a query does not notice that its socket was shut down
 * until it next writes, which could be minutes away.
 */
static void send_cancel(const struct fp_pgconn *pc)
{
        if (!pc->has_cancel_key)
                return;
        struct pending_cancel *pcx = calloc(1, sizeof(*pcx));
        if (!pcx)
                return;
        fp_pg_cancel_packet(pcx->packet, pc->backend_pid, pc->cancel_key);
        pcx->fd = socket(pc->server_addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (pcx->fd < 0 ||
            (connect(pcx->fd, (const struct sockaddr *)&pc->server_addr, pc->server_addr_len) < 0 &&
             errno != EINPROGRESS) ||
            sd_event_add_io(pc->event, &pcx->io, pcx->fd, EPOLLOUT, on_cancel_writable, pcx) < 0) {
                log_debug("cannot send a cancel request for backend %d", pc->backend_pid);
                if (pcx->fd >= 0)
                        close(pcx->fd);
                free(pcx);
                return;
        }
        /* Not tied to the connection's life: it finishes on its own. */
        sd_event_source_set_destroy_callback(pcx->io, pending_cancel_free);
        sd_event_source_set_floating(pcx->io, true);
        sd_event_source_unref(pcx->io);
}

void fp_pgconn_close(struct fp_pgconn *pc, bool hard)
{
        if (!pc)
                return;
        if (hard && pc->conn && PQsocket(pc->conn) >= 0) {
                (void)shutdown(PQsocket(pc->conn), SHUT_RDWR);
                send_cancel(pc);
        }
        pgconn_free(pc);
}

int fp_pgconn_socket(const struct fp_pgconn *pc)
{
        return PQsocket(pc->conn);
}

int fp_pgconn_backend_pid(const struct fp_pgconn *pc)
{
        return pc->backend_pid;
}

void fp_pgconn_describe(const struct fp_pgconn *pc, struct fp_lease_pg *ret, uint32_t *ret_txn)
{
        memset(ret, 0, sizeof(*ret));
        ret->backend_pid = pc->backend_pid;
        ret->cancel_key = pc->cancel_key;
        ret->has_cancel_key = pc->has_cancel_key;
        if (pc->server_addr_len > 0) {
                memcpy(&ret->server_addr, &pc->server_addr, pc->server_addr_len);
                ret->server_addr_len = pc->server_addr_len;
        }
        snprintf(ret->user, sizeof(ret->user), "%s", PQuser(pc->conn) ? PQuser(pc->conn) : "");
        snprintf(ret->dbname, sizeof(ret->dbname), "%s", PQdb(pc->conn) ? PQdb(pc->conn) : "");
        memcpy(ret->params, pc->packed, pc->packed_len);
        ret->params_len = pc->packed_len;
        *ret_txn = pc->txn;
}

/* --- the driver interface (driver.h) --- */

#define PG_MAX_KEYWORDS 48

struct pg_prepared {
        const char *keys[PG_MAX_KEYWORDS];
        const char *values[PG_MAX_KEYWORDS];
};

static int pg_prepare(const struct fp_url *url, void **ret)
{
        struct pg_prepared *p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        int r = fp_url_pg_keywords(url, p->keys, p->values, PG_MAX_KEYWORDS);
        if (r < 0) {
                free(p);
                return r;
        }
        *ret = p;
        return 0;
}

static int pg_connect(sd_event *event, const void *prepared, int timeout_ms, fp_db_connect_cb cb,
                      void *userdata)
{
        const struct pg_prepared *p = prepared;
        struct fp_pgconn *pc;
        return fp_pgconn_connect(event, p->keys, p->values, timeout_ms, cb, userdata, &pc);
}

static void pg_reset(void *conn, enum fp_reset_mode mode, const struct fp_release_info *info,
                     int timeout_ms, fp_db_reset_cb cb, void *userdata)
{
        fp_pgconn_reset(conn, mode, info, timeout_ms, cb, userdata);
}

static void pg_close(void *conn, bool hard)
{
        fp_pgconn_close(conn, hard);
}

static void pg_forget(void *conn)
{
        struct fp_pgconn *pc = conn;
        /* The worker owns the session now: PQfinish's Terminate must not reach it. */
        if (pc->conn && PQsocket(pc->conn) >= 0) {
                (void)fp_neutralize_fd(PQsocket(pc->conn));
        }
        pgconn_free(pc);
}

static void pg_exec(void *conn, const char *sql, int timeout_ms, fp_db_exec_cb cb, void *userdata)
{
        fp_pgconn_exec(conn, sql, timeout_ms, cb, userdata);
}

static int pg_socket(const void *conn)
{
        return fp_pgconn_socket(conn);
}

static int pg_backend_id(const void *conn)
{
        return fp_pgconn_backend_pid(conn);
}

static void pg_describe(const void *conn, struct fp_msg_lease *msg)
{
        const struct fp_pgconn *pc = conn;
        msg->db_kind = FP_DB_POSTGRES;
        fp_pgconn_describe(conn, &msg->pg, &msg->txn);
        if (!pc->statements_unknown) {
                msg->flags |= FP_LEASE_STATEMENTS;
                msg->statements = pc->statements;
        }
}

static void pg_save(const void *conn, struct fp_saved_slot *s)
{
        fp_pgconn_describe(conn, &s->pg, &s->txn);
}

static int pg_restore(sd_event *event, void *prepared, int fd, const struct fp_saved_slot *s,
                      void **ret)
{
        PGconn *conn;
        struct fp_pgconn *pc;
        (void)prepared;

        int r = fp_pg_adopt(fd, &s->pg, s->txn, &conn);
        if (r < 0) {
                close(fd);
                return r;
        }
        r = fp_pgconn_restore(event, conn, &s->pg, s->txn, &pc);
        if (r < 0) {
                PQfinish(conn);
                return r;
        }
        *ret = pc;
        return 0;
}

const struct fp_db_driver fp_pg_driver = {
        .name = "postgresql",
        .kind = FP_DB_POSTGRES,
        .tls_off = "sslmode=disable gssencmode=disable",
        .prepare = pg_prepare,
        .unprepare = free,
        .connect = pg_connect,
        .reset = pg_reset,
        .close = pg_close,
        .forget = pg_forget,
        .exec = pg_exec,
        .socket = pg_socket,
        .backend_id = pg_backend_id,
        .describe = pg_describe,
        .save = pg_save,
        .restore = pg_restore,
        .restore_done = fp_pg_adopt_close_listener,
};
