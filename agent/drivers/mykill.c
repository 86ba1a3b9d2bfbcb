/* SPDX-License-Identifier: MIT */
/*
 * mykill.c — a MySQL pool's admin connection for KILL (mykill.h).
 */
#include "mykill.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "sockio.h"

/* The admin connection closes after this long without a KILL to send. */
#define MY_ADMIN_IDLE_USEC (10u * 1000 * 1000)

/* A KILL waiting for the admin connection. */
struct my_kill {
        TAILQ_ENTRY(my_kill) link;
        unsigned long thread_id;
        int witness;     /* the session's socket: shows whether the server still has it */
        bool query_only; /* KILL QUERY (cancel) rather than KILL (end the session) */
        void *target;    /* told when it is done; NULL once the target is gone */
};

static void admin_kick(struct my_killer *p);

/* Frees k; a session it was to end is cut from every copy of its socket. */
static void kill_free(struct my_kill *k)
{
        if (!k->query_only)
                (void)shutdown(k->witness, SHUT_RDWR);
        close(k->witness);
        free(k);
}

/* A KILL is done (or dropped): tell its target and free it. */
static void kill_done(struct my_killer *p, struct my_kill *k)
{
        if (k->target)
                p->done(p->owner, k->target);
        kill_free(k);
}

/*
 * Whether the server has ended k's session (closed its socket). A KILL then
 * must not be sent: the server numbers its sessions anew when it restarts,
 * and the thread id may be someone else's now.
 */
static bool kill_target_gone(const struct my_kill *k)
{
        int r = fp_poll_fd(k->witness, POLLRDHUP, 0);
        return r != -ETIMEDOUT && (r < 0 || (r & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)));
}

/* Closes the admin connection; a KILL in progress counts as done. */
static void admin_close(struct my_killer *p)
{
        fp_my_async_free(&p->admin);
        p->ready = false;
        if (p->idle)
                sd_event_source_set_enabled(p->idle, SD_EVENT_OFF);
        if (p->current) {
                struct my_kill *k = p->current;
                p->current = NULL;
                kill_done(p, k);
        }
}

/* Drops k, taken off its queue without being sent. */
static void kill_drop(struct my_killer *p, struct my_kill *k)
{
        if (k->query_only && k->target)
                p->unqueued(p->owner, k->target);
        kill_done(p, k);
}

/* Drops every queued KILL (the admin connection cannot be opened). */
static void admin_drop_kills(struct my_killer *p)
{
        struct my_kill *k;
        while ((k = TAILQ_FIRST(&p->kills))) {
                TAILQ_REMOVE(&p->kills, k, link);
                kill_drop(p, k);
        }
        while ((k = TAILQ_FIRST(&p->cancels))) {
                TAILQ_REMOVE(&p->cancels, k, link);
                kill_drop(p, k);
        }
}

/* Whether a KILL or a cancel waits to be sent. */
static bool admin_has_work(const struct my_killer *p)
{
        return !TAILQ_EMPTY(&p->kills) || !TAILQ_EMPTY(&p->cancels);
}

/*
 * The KILL to send next, still queued: sessions to end first (a flood of
 * cancels must not delay them). KILLs whose session the server has ended are
 * dropped on the way. NULL if none is left.
 */
static struct my_kill *next_kill(struct my_killer *p)
{
        for (;;) {
                struct my_kill_list *list = TAILQ_EMPTY(&p->kills) ? &p->cancels : &p->kills;
                struct my_kill *k = TAILQ_FIRST(list);
                if (!k || !kill_target_gone(k))
                        return k;
                TAILQ_REMOVE(list, k, link);
                log_debug("KILL%s %lu: the server has ended the session already",
                          k->query_only ? " QUERY" : "", k->thread_id);
                kill_drop(p, k);
        }
}

static int on_admin_idle(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct my_killer *p = userdata;
        (void)s, (void)usec;
        if (!p->admin.running && !admin_has_work(p)) {
                log_debug("closing the idle admin connection of a MySQL pool");
                admin_close(p);
        }
        return 0;
}

static void admin_connected(struct my_async *a, int error, const char *text)
{
        struct my_killer *p = a->owner;

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
        p->ready = true;
        log_debug("admin connection for KILL open (thread %lu)", mysql_thread_id(a->m));
        admin_kick(p);
}

static void admin_kill_done(struct my_async *a, int error, const char *text)
{
        struct my_killer *p = a->owner;
        struct my_kill *k = p->current;

        p->current = NULL;
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
        kill_done(p, k);
        admin_kick(p);
}

/* Sends the next queued KILL, opening the admin connection first if needed. */
static void admin_kick(struct my_killer *p)
{
        struct my_async *a = &p->admin;
        int r;

        if (a->running || !p->event)
                return;
        struct my_kill *k = next_kill(p);
        if (!k) {
                if (!a->m)
                        return;
                r = p->idle ? sd_event_source_set_time_relative(p->idle, MY_ADMIN_IDLE_USEC)
                            : sd_event_add_time_relative(p->event, &p->idle, CLOCK_MONOTONIC,
                                                         MY_ADMIN_IDLE_USEC, 1000000, on_admin_idle,
                                                         p);
                if (r >= 0)
                        r = sd_event_source_set_enabled(p->idle, SD_EVENT_ONESHOT);
                if (r < 0)
                        admin_close(p);
                return;
        }
        if (p->idle)
                sd_event_source_set_enabled(p->idle, SD_EVENT_OFF);
        a->n_steps = 0;
        if (!a->m) {
                r = p->new_handle(p->owner, &a->m);
                if (r < 0) {
                        log_warning("cannot open the MySQL connection that sends KILL: out of "
                                    "memory");
                        admin_drop_kills(p);
                        return;
                }
                a->event = p->event;
                a->owner = p;
                a->connect_to = p->server;
                a->connect_db = NULL;
                a->connect_flag = 0;
                fp_my_async_step(a, MY_OP_CONNECT, NULL);
                r = fp_my_async_run(a, p->connect_timeout_ms, admin_connected, false);
                if (r < 0) {
                        admin_close(p);
                        admin_drop_kills(p);
                }
                return;
        }
        if (!p->ready)
                return;
        TAILQ_REMOVE(k->query_only ? &p->cancels : &p->kills, k, link);
        if (k->query_only && k->target)
                p->unqueued(p->owner, k->target); /* sent: the reset waits for it */
        p->current = k;
        char sql[MY_SQL_MAX];
        snprintf(sql, sizeof(sql), "KILL %s%lu", k->query_only ? "QUERY " : "", k->thread_id);
        fp_my_async_step(a, MY_OP_QUERY, sql);
        r = fp_my_async_run(a, 10000, admin_kill_done, false);
        if (r < 0) {
                admin_close(p);
                admin_drop_kills(p);
        }
}

int fp_my_killer_queue(struct my_killer *p, unsigned long thread_id, int session_fd,
                       bool query_only, void *target, struct my_kill **ret)
{
        struct my_kill *k = calloc(1, sizeof(*k));
        if (!k)
                return -ENOMEM;
        k->witness = fcntl(session_fd, F_DUPFD_CLOEXEC, 3);
        if (k->witness < 0) {
                int r = -errno;
                free(k);
                return r;
        }
        k->thread_id = thread_id;
        k->query_only = query_only;
        k->target = target;
        if (ret)
                *ret = k;
        if (query_only) {
                TAILQ_INSERT_TAIL(&p->cancels, k, link);
        } else
                TAILQ_INSERT_TAIL(&p->kills, k, link);
        admin_kick(p);
        return 0;
}

void fp_my_killer_drop(struct my_killer *p, struct my_kill *k)
{
        TAILQ_REMOVE(&p->cancels, k, link);
        kill_free(k);
}

void fp_my_killer_forget_target(struct my_killer *p, void *target)
{
        struct my_kill *k;

        TAILQ_FOREACH(k, &p->kills, link)
        if (k->target == target)
                k->target = NULL;
        TAILQ_FOREACH(k, &p->cancels, link)
        if (k->target == target)
                k->target = NULL;
        if (p->current && p->current->target == target)
                p->current->target = NULL;
}

void fp_my_killer_init(struct my_killer *p)
{
        TAILQ_INIT(&p->kills);
        TAILQ_INIT(&p->cancels);
}

void fp_my_killer_done(struct my_killer *p)
{
        struct my_kill *k;

        admin_close(p);
        while ((k = TAILQ_FIRST(&p->kills))) {
                TAILQ_REMOVE(&p->kills, k, link);
                kill_free(k);
        }
        while ((k = TAILQ_FIRST(&p->cancels))) {
                TAILQ_REMOVE(&p->cancels, k, link);
                kill_free(k);
        }
        p->idle = sd_event_source_disable_unref(p->idle);
}
