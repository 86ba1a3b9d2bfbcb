/* SPDX-License-Identifier: MIT */
/*
 * myasync.c — Connector/C's non-blocking calls on the event loop (myasync.h).
 */
#include "myasync.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include <errmsg.h>

#include "clock.h"
#include "log.h"
#include "text.h"

/* The steps are over: the socket's watch goes (an idle connection holds no duplicate). */
static void async_stop_watching(struct my_async *a)
{
        fp_sockwatch_free(&a->io);
        if (a->wait_timer)
                sd_event_source_set_enabled(a->wait_timer, SD_EVENT_OFF);
        if (a->deadline)
                sd_event_source_set_enabled(a->deadline, SD_EVENT_OFF);
}

/* Frees the event sources and the handle (mysql_close(): a COM_QUIT if it is connected). */
void fp_my_async_free(struct my_async *a)
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
 * inside fp_my_async_run() and its owner's callbacks must not run from there.
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

        fp_one_line(mysql_error(a->m), text, sizeof(text));
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
        a->waiting_for = status;
        if (a->op == MY_OP_CONNECT)
                /* Connector/C makes its sockets without close-on-exec. */
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
        uint64_t when = fp_monotonic_usec() + (uint64_t)mysql_get_timeout_value_ms(a->m) * 1000u;
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
        const struct my_server *p = &a->connect_to;

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

/*
 * Makes calls until one has to wait (watched then) or all are done. Returns
 * true while the run goes on; false when it ended (its done callback may
 * have run, and a may be gone).
 */
static bool async_drive(struct my_async *a, int status)
{
        for (;;) {
                if (status != 0) {
                        if (async_watch(a, status) < 0) {
                                async_finish(a, -ECONNRESET, "cannot watch the connection");
                                return false;
                        }
                        return true;
                }
                int next = async_call_done(a);
                if (next < 0)
                        return false;
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
        (void)async_drive(a, async_call_cont(a, events));
        return 0;
}

static int on_async_wait_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct my_async *a = userdata;
        (void)s, (void)usec;
        if (a->running)
                (void)async_drive(a, async_call_cont(a, MYSQL_WAIT_TIMEOUT));
        return 0;
}

static int on_async_deadline(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct my_async *a = userdata;
        (void)s, (void)usec;
        if (!a->running)
                return 0;
        /*
         * Only what has not come by now: after a long iteration (or a stop)
         * the deadline can fire before the socket's answer is read.
         */
        struct pollfd ready = {.fd = mysql_get_socket(a->m), .events = POLLIN};
        if ((a->waiting_for & MYSQL_WAIT_READ) && ready.fd >= 0 && poll(&ready, 1, 0) == 1 &&
            !async_drive(a, async_call_cont(a, MYSQL_WAIT_READ)))
                return 0;
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
        uint64_t when = fp_monotonic_usec() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 1) * 1000u;
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
int fp_my_async_run(struct my_async *a, int timeout_ms, my_done_fn done, bool defer_immediate)
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
        (void)async_drive(a, async_call_start(a, a->steps[0].op, &a->steps[0]));
        if (defer_immediate)
                a->starting = false;
        return 0;
}

/* Sets the run's steps (a statement of up to MY_SQL_MAX - 1 bytes, or an op). */
void fp_my_async_step(struct my_async *a, enum my_op op, const char *text)
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

void fp_my_async_fail_later(struct my_async *a, my_done_fn done, int error, const char *text)
{
        a->done = done;
        a->running = true;
        a->error = error;
        snprintf(a->text, sizeof(a->text), "%s", text);
        async_schedule_done(a);
}
