/* SPDX-License-Identifier: MIT */
/*
 * cancelconn.c — libpq 17's cancel connections (PQcancelCreate() and the
 * PQcancel*() functions on its PGcancelConn) for forkpool connections.
 *
 * libpq's own PGcancelConn copies the PGconn's address, which for a leased
 * connection is the private adoption listener, not the server. The drop-in
 * hands out its own objects for forkpool connections instead: they send the
 * CancelRequest to the real server for the session that the connection's
 * PGcancel object (dropin_get_cancel(): in transaction mode, the session
 * running its transaction) names at PQcancelStart(), blocking
 * (PQcancelBlocking) or not (PQcancelStart + PQcancelPoll, on
 * PQcancelSocket). libpq's objects go to libpq untouched.
 *
 * An object walks ALLOCATED → STARTED (connecting) → MADE (sending the 16
 * bytes of CancelRequest) → AWAITING_RESPONSE (until the server closes the
 * connection, which it does once it has handled the request) → OK, or BAD
 * with a one-line reason at any step. PQcancelReset() takes it back to
 * ALLOCATED for another cancel.
 *
 * Defined only when the libpq built against has the API (libpq-fe.h defines
 * LIBPQ_HAS_ASYNC_CANCEL); the export table, made from the real library,
 * lists these functions only then.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cancel.h"
#include "clock.h"
#include "dropin.h"
#include "pgcancel.h"
#include "realpq.h"
#include "selfpid.h"

#ifdef LIBPQ_HAS_ASYNC_CANCEL

/* The objects handed out, so that each call tells ours from libpq's. */
static pthread_mutex_t objects_lock = PTHREAD_MUTEX_INITIALIZER;

static void atfork_child(void)
{
        /* A thread of the parent may have held it at fork; it is not here. */
        pthread_mutex_init(&objects_lock, NULL);
}

__attribute__((constructor(103))) static void cancelconn_init(void)
{
        (void)pthread_atfork(NULL, NULL, atfork_child);
}

struct dropin_cancel_conn {
        struct dropin_cancel_conn *next; /* in the list of objects */
        PGcancel *target;                /* what to cancel (cancel.h), NULL: none */
        ConnStatusType status;
        int fd; /* the connection to the server while started, -1: none */
        uint32_t packet[4];
        size_t sent;     /* bytes of packet sent */
        char error[256]; /* PQcancelErrorMessage(): "" or "…\n" */
};

static struct dropin_cancel_conn *objects;
static size_t object_count; /* lets the common case (none of ours) skip the lock */

static struct dropin_cancel_conn *ours(const PGcancelConn *cancel_conn)
{
        struct dropin_cancel_conn *c = NULL;
        if (!cancel_conn || __atomic_load_n(&object_count, __ATOMIC_ACQUIRE) == 0)
                return NULL;
        pthread_mutex_lock(&objects_lock);
        for (c = objects; c && (const void *)c != (const void *)cancel_conn; c = c->next)
                ;
        pthread_mutex_unlock(&objects_lock);
        return c;
}

/* Records why c failed (one line, libpq's style: ending in a newline). */
static void failed(struct dropin_cancel_conn *c, const char *why, int err)
{
        if (err)
                snprintf(c->error, sizeof(c->error), "forkpool: %s: %s\n", why, strerror(err));
        else
                snprintf(c->error, sizeof(c->error), "forkpool: %s\n", why);
        c->status = CONNECTION_BAD;
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
}

static void done(struct dropin_cancel_conn *c)
{
        c->status = CONNECTION_OK;
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
}

DROPIN_EXPORT PGcancelConn *PQcancelCreate(PGconn *conn)
{
        struct dropin_conn *d = dropin_find(conn);
        if (!d)
                return FP_REAL(PQcancelCreate)(conn);
        struct dropin_cancel_conn *c = calloc(1, sizeof(*c));
        if (!c)
                return NULL;
        c->fd = -1;
        c->status = CONNECTION_ALLOCATED;
        c->target = dropin_get_cancel(d);
        if (!c->target)
                failed(c,
                       d->pid == fp_self_pid() ? "this connection has no session to cancel"
                                               : "this connection belongs to another process",
                       0);
        pthread_mutex_lock(&objects_lock);
        c->next = objects;
        objects = c;
        __atomic_add_fetch(&object_count, 1, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&objects_lock);
        return (PGcancelConn *)c;
}

DROPIN_EXPORT int PQcancelStart(PGcancelConn *cancel_conn)
{
        struct dropin_cancel_conn *c = ours(cancel_conn);
        if (!c)
                return FP_REAL(PQcancelStart)(cancel_conn);
        if (c->status == CONNECTION_BAD)
                return 0;
        if (c->status != CONNECTION_ALLOCATED) {
                snprintf(c->error, sizeof(c->error),
                         "forkpool: a cancel request is already being sent on this "
                         "connection\n");
                return 0;
        }
        const struct sockaddr *addr;
        socklen_t addr_len;
        int32_t pid, key;
        if (!dropin_cancel_target(c->target, &addr, &addr_len, &pid, &key)) {
                done(c); /* nothing runs: nothing to cancel */
                return 1;
        }
        fp_pg_cancel_packet(c->packet, pid, key);
        c->sent = 0;
        c->fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (c->fd < 0) {
                failed(c, "could not create a socket to cancel", errno);
                return 0;
        }
        if (connect(c->fd, addr, addr_len) < 0 && errno != EINPROGRESS && errno != EINTR) {
                failed(c, "could not connect to the server to cancel", errno);
                return 0;
        }
        c->status = CONNECTION_STARTED;
        return 1;
}

DROPIN_EXPORT PostgresPollingStatusType PQcancelPoll(PGcancelConn *cancel_conn)
{
        struct dropin_cancel_conn *c = ours(cancel_conn);
        if (!c)
                return FP_REAL(PQcancelPoll)(cancel_conn);
        if (c->status == CONNECTION_STARTED) {
                /* Connected once the socket is writable; then SO_ERROR says how. */
                struct pollfd p = {.fd = c->fd, .events = POLLOUT};
                int err = 0;
                socklen_t len = sizeof(err);
                if (poll(&p, 1, 0) == 0)
                        return PGRES_POLLING_WRITING;
                if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                        err = errno;
                if (err) {
                        failed(c, "could not connect to the server to cancel", err);
                        return PGRES_POLLING_FAILED;
                }
                c->status = CONNECTION_MADE;
        }
        while (c->status == CONNECTION_MADE && c->sent < sizeof(c->packet)) {
                ssize_t n = send(c->fd, (const char *)c->packet + c->sent,
                                 sizeof(c->packet) - c->sent, MSG_NOSIGNAL);
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                        return PGRES_POLLING_WRITING;
                if (n < 0 && errno != EINTR) {
                        failed(c, "could not send the cancel request to the server", errno);
                        return PGRES_POLLING_FAILED;
                }
                if (n > 0)
                        c->sent += (size_t)n;
        }
        if (c->status == CONNECTION_MADE)
                c->status = CONNECTION_AWAITING_RESPONSE;
        if (c->status == CONNECTION_AWAITING_RESPONSE) {
                /* The server answers nothing: it closes the connection when done. */
                char byte;
                ssize_t n = recv(c->fd, &byte, 1, MSG_DONTWAIT);
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
                        return PGRES_POLLING_READING;
                done(c); /* closed (or reset): the request has been handled */
        }
        if (c->status == CONNECTION_OK)
                return PGRES_POLLING_OK;
        if (c->status == CONNECTION_ALLOCATED)
                snprintf(c->error, sizeof(c->error),
                         "forkpool: the cancel request has not been started\n");
        return PGRES_POLLING_FAILED;
}

DROPIN_EXPORT int PQcancelBlocking(PGcancelConn *cancel_conn)
{
        struct dropin_cancel_conn *c = ours(cancel_conn);
        if (!c)
                return FP_REAL(PQcancelBlocking)(cancel_conn);
        if (!PQcancelStart(cancel_conn))
                return 0;
        int64_t deadline = fp_monotonic_ms() + DROPIN_CANCEL_TIMEOUT_MS;
        for (;;) {
                PostgresPollingStatusType r = PQcancelPoll(cancel_conn);
                if (r == PGRES_POLLING_OK)
                        return 1;
                if (r == PGRES_POLLING_FAILED)
                        return 0;
                int64_t left = deadline - fp_monotonic_ms();
                if (left <= 0) {
                        if (c->status == CONNECTION_AWAITING_RESPONSE) {
                                done(c); /* delivered; the server is slow to close */
                                return 1;
                        }
                        failed(c, "connecting to the server to cancel timed out", 0);
                        return 0;
                }
                struct pollfd p = {.fd = c->fd,
                                   .events = r == PGRES_POLLING_READING ? POLLIN : POLLOUT};
                (void)poll(&p, 1, (int)left);
        }
}

DROPIN_EXPORT ConnStatusType PQcancelStatus(const PGcancelConn *cancel_conn)
{
        const struct dropin_cancel_conn *c = ours(cancel_conn);
        if (!c)
                return FP_REAL(PQcancelStatus)(cancel_conn);
        return c->status;
}

DROPIN_EXPORT int PQcancelSocket(const PGcancelConn *cancel_conn)
{
        const struct dropin_cancel_conn *c = ours(cancel_conn);
        if (!c)
                return FP_REAL(PQcancelSocket)(cancel_conn);
        return c->fd;
}

DROPIN_EXPORT char *PQcancelErrorMessage(const PGcancelConn *cancel_conn)
{
        struct dropin_cancel_conn *c = ours(cancel_conn);
        if (!c)
                return FP_REAL(PQcancelErrorMessage)(cancel_conn);
        return c->error;
}

DROPIN_EXPORT void PQcancelReset(PGcancelConn *cancel_conn)
{
        struct dropin_cancel_conn *c = ours(cancel_conn);
        if (!c) {
                FP_REAL(PQcancelReset)(cancel_conn);
                return;
        }
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        if (c->target) {
                /* One made without a session stays BAD, with its reason. */
                c->status = CONNECTION_ALLOCATED;
                c->error[0] = '\0';
        }
}

DROPIN_EXPORT void PQcancelFinish(PGcancelConn *cancel_conn)
{
        struct dropin_cancel_conn *c = ours(cancel_conn);
        if (!c) {
                FP_REAL(PQcancelFinish)(cancel_conn);
                return;
        }
        pthread_mutex_lock(&objects_lock);
        for (struct dropin_cancel_conn **p = &objects; *p; p = &(*p)->next)
                if (*p == c) {
                        *p = c->next;
                        break;
                }
        __atomic_sub_fetch(&object_count, 1, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&objects_lock);
        if (c->fd >= 0)
                close(c->fd);
        if (c->target)
                dropin_cancel_free(c->target);
        free(c);
}

#endif /* LIBPQ_HAS_ASYNC_CANCEL */
