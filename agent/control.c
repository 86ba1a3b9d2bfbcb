/* SPDX-License-Identifier: MIT */
/*
 * control.c — the control socket: accepting workers, checking who they are,
 * parsing their messages and answering them.
 *
 * Every worker process has one SOCK_SEQPACKET connection. Its identity is the
 * kernel's (SO_PEERCRED on the accepted socket), watched with a pidfd so that
 * its death is noticed even if a child still holds the socket. Malformed
 * messages are answered with an error and change nothing.
 *
 * The clients' sockets are watched by an epoll instance of their own, itself
 * one source of the event loop: a wakeup takes every ready client from it at
 * once and handles one message of each (level-triggered: a client with more
 * queued is ready again in the next round). The event loop dispatches one
 * source per iteration and asks the kernel again for every ready descriptor
 * each time, which with a source per client cost each message a pass over all
 * the clients that had one queued; this way a message costs O(1) however many
 * clients are waiting, no read ends in EAGAIN, and a client that floods takes
 * its turn with the others.
 *
 * A worker's releases come on its release channel (proto.h) instead, read
 * without a wake-up of their own: before the worker's next acquire or release
 * on its connection (which say how many it sent there: no system call when
 * none is missing; the acquire may want the session just given back), every
 * RELEASE_FLUSH_USEC while leases go out and twice more after the last one
 * (a worker sends there only the releases of leases it held for less than
 * that), before the lease checks, and at once while an acquire waits or
 * forkpoold stops (then the channels' epoll is watched with the clients').
 *
 * What one peer can make forkpoold hold is bounded: connections per uid and
 * per pid, acquires queued per connection, and the time a connection may stay
 * silent before its first message. A refused connection is answered with the
 * reason and closed. Out of descriptors, accepting pauses briefly instead of
 * spinning. Warnings that a peer can provoke at will are rate-limited.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "log.h"
#include "proto.h"
#include "ratelimit.h"
#include "sockio.h"
#include "access.h"
#include "admin.h"
#include "control.h"

#define MESSAGES_PER_WAKEUP 64
/* Ready clients taken from the clients' epoll per round (one message each). */
#define CLIENTS_PER_ROUND 64
/*
 * Rounds per wakeup, before the event loop's other sources (timers, exits,
 * the listener) get their turn: a worker's release and its next acquire,
 * queued together, take one wakeup.
 */
#define ROUNDS_PER_WAKEUP   16
#define MAX_PEER_GROUPS     256
#define REFUSED_LINGER_USEC (2 * 1000 * 1000)
/* Refused connections lingering for their answer at most; beyond, closed unanswered. */
#define MAX_REFUSED 64
/* Out of descriptors (or memory for a socket): accepting resumes after this. */
#define ACCEPT_PAUSE_USEC (100 * 1000)
/* While leases go out, the release channels are read this often at least. */
#define RELEASE_FLUSH_USEC (FP_RELEASE_FLUSH_MS * 1000)

/* Warnings a peer can provoke, each with its own token bucket. */
enum warn_kind {
        WARN_ACCEPT,    /* accept() failed (descriptor exhaustion) */
        WARN_REFUSED,   /* a connection refused: allow lists or per-peer limits */
        WARN_MALFORMED, /* malformed messages, releases and cancels of leases not held */
        WARN_HELLO,     /* connections closed for their silence */
        WARN_LIMIT,     /* acquires refused: too many queued */
        WARN_KIND_MAX,
};

/* A burst of 10 lines, then one per second, per kind. */
static struct fp_ratelimit warn_limits[WARN_KIND_MAX] = {
        [0 ... WARN_KIND_MAX - 1] = FP_RATELIMIT_INIT(10, 1000 * 1000),
};

struct fp_client {
        LIST_ENTRY(fp_client) link;
        struct fp_supervisor *sup;
        int fd;
        int release_fd;            /* its release channel (proto.h), -1: none */
        uint32_t channel_releases; /* messages read from it */
        int pidfd;
        pid_t pid;
        uid_t uid;
        gid_t gid;
        gid_t groups[MAX_PEER_GROUPS]; /* supplementary groups (SO_PEERGROUPS) */
        size_t n_groups;
        bool watched; /* in sup->clients_epfd */
        sd_event_source *pid_src;
        sd_event_source *refused_timer; /* set for a refused peer: closes it soon */
        sd_event_source *hello_timer;   /* until its first message: closes a silent peer */
        int refused_error;              /* why it is refused (negative errno) */
        char refused_text[FP_ERRTEXT_MAX];
        bool counted;                  /* in sup->conns_by_uid and conns_by_pid */
        uint32_t n_waiting;            /* its acquires queued in the pools */
        struct fp_waiter_list waiters; /* the same, in every pool (pool.c's) */
};

static void warn_limited(struct fp_supervisor *sup, enum warn_kind kind, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* A warning, unless its kind has used up its tokens; says how many were suppressed. */
static void warn_limited(struct fp_supervisor *sup, enum warn_kind kind, const char *fmt, ...)
{
        char line[512];
        uint64_t suppressed;
        va_list ap;

        if (!fp_ratelimit_allow(&warn_limits[kind], fp_supervisor_now(sup), &suppressed))
                return;
        va_start(ap, fmt);
        vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        if (suppressed > 0)
                log_warning("%s (%" PRIu64 " similar warning%s suppressed)", line, suppressed,
                            suppressed == 1 ? "" : "s");
        else
                log_warning("%s", line);
}

pid_t fp_client_pid(const struct fp_client *client)
{
        return client->pid;
}

struct fp_waiter_list *fp_control_client_waiters(struct fp_client *client)
{
        return &client->waiters;
}

void fp_control_acquire_done(struct fp_client *client)
{
        if (client->n_waiting > 0) {
                client->n_waiting--;
                client->sup->n_acquires_queued--;
        }
}

/* --- release channels --- */

/* Stops reading the client's release channel and closes it (the worker then sends on fd). */
static void client_channel_close(struct fp_client *client)
{
        if (client->release_fd < 0)
                return;
        (void)epoll_ctl(client->sup->releases_epfd, EPOLL_CTL_DEL, client->release_fd, NULL);
        close(client->release_fd);
        client->release_fd = -1;
}

static void handle_release(struct fp_client *client, const struct fp_msg_release *msg);

/*
 * Handles up to max releases queued in the client's release channel. A
 * channel that carries anything else, or ends, is closed. Returns the number
 * of releases handled. Frees no client.
 */
static unsigned client_read_releases(struct fp_client *client, int max)
{
        union {
                struct fp_msg_hdr hdr;
                struct fp_msg_release release;
                char bytes[FP_MSG_MAX];
        } buf;
        unsigned handled = 0;

        while (client->release_fd >= 0 && max-- > 0) {
                ssize_t n =
                        fp_recv_msg(client->release_fd, buf.bytes, sizeof(buf), NULL, MSG_DONTWAIT);
                if (n == -EAGAIN)
                        break;
                if (n > 0)
                        client->channel_releases++;
                if (n > 0 && fp_msg_check(buf.bytes, (size_t)n) == 0 &&
                    buf.hdr.op == FP_OP_RELEASE) {
                        handle_release(client, &buf.release);
                        handled++;
                        continue;
                }
                if (n != 0)
                        warn_limited(client->sup, WARN_MALFORMED,
                                     "worker pid %d sent other than a release on its release "
                                     "channel: channel closed",
                                     client->pid);
                client_channel_close(client);
        }
        return handled;
}

/*
 * Reads the client's channel until it has read sent of its messages (the
 * count an acquire or a release on the control connection carries): what
 * the worker gave back before that message is taken before it. No system
 * call when nothing is missing; a count the channel never reaches (a peer
 * that lies) stops at the channel's end.
 */
static void client_channel_catch_up(struct fp_client *client, uint32_t sent)
{
        while (client->release_fd >= 0 && (int32_t)(sent - client->channel_releases) > 0) {
                uint32_t before = client->channel_releases;
                (void)client_read_releases(client, 1);
                if (client->channel_releases == before)
                        break; /* empty: it never sent that many */
        }
}

/*
 * Handles one release of every ready channel (at most CLIENTS_PER_ROUND of
 * them per round, ROUNDS_PER_WAKEUP rounds: a channel that floods takes its
 * turn); one epoll_wait when none is. Returns how many.
 */
static unsigned releases_take(struct fp_supervisor *sup)
{
        struct epoll_event events[CLIENTS_PER_ROUND];
        unsigned handled = 0;
        int n, round = 0;

        if (sup->releases_epfd < 0)
                return 0;
        do {
                n = epoll_wait(sup->releases_epfd, events, CLIENTS_PER_ROUND, 0);
                for (int i = 0; i < n; i++)
                        /* One each (level-triggered: more is taken next time), no EAGAIN read. */
                        handled += client_read_releases(events[i].data.ptr, 1);
        } while (n == CLIENTS_PER_ROUND && ++round < ROUNDS_PER_WAKEUP);
        return handled;
}

/*
 * While an acquire waits or forkpoold stops, a release is wanted at once:
 * the channels' epoll is then one of the descriptors of the clients' epoll
 * (marked by data.ptr == sup), so that a release wakes the loop and is read
 * in the same rounds as the clients' messages. Changes the clients' epoll
 * only when that changes.
 */
static void releases_urgency_update(struct fp_supervisor *sup)
{
        bool urgent = sup->n_acquires_queued > 0 || sup->stopping;
        if (urgent == sup->releases_urgent || sup->releases_epfd < 0 || sup->clients_epfd < 0)
                return;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = sup};
        if (epoll_ctl(sup->clients_epfd, urgent ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, sup->releases_epfd,
                      &ev) == 0)
                sup->releases_urgent = urgent;
}

/*
 * A lease went to a client with a release channel: its release is read
 * RELEASE_FLUSH_USEC from now at the latest (an armed flush stays as it is).
 */
static void releases_flush_arm(struct fp_supervisor *sup)
{
        int enabled = SD_EVENT_OFF;
        if (!sup->releases_flush ||
            (sd_event_source_get_enabled(sup->releases_flush, &enabled) >= 0 &&
             enabled != SD_EVENT_OFF))
                return;
        (void)sd_event_source_set_time_relative(sup->releases_flush, RELEASE_FLUSH_USEC);
        (void)sd_event_source_set_enabled(sup->releases_flush, SD_EVENT_ONESHOT);
}

/* Leases went out: read the releases sent since; again while leases go out or releases come. */
static int on_releases_flush(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct fp_supervisor *sup = userdata;
        (void)s, (void)usec; /* a one-shot: off by now, so it can be armed again */
        if (releases_take(sup) > 0 || sup->releases_leased) {
                sup->releases_leased = false;
                releases_flush_arm(sup);
        }
        releases_urgency_update(sup);
        return 0;
}

/* The channels' epoll instance and the flush timer (off), made once. */
static int releases_open(struct fp_supervisor *sup)
{
        if (sup->releases_epfd >= 0)
                return 0;
        int fd = epoll_create1(EPOLL_CLOEXEC);
        if (fd < 0)
                return -errno;
        int r = sd_event_add_time_relative(sup->event, &sup->releases_flush, CLOCK_MONOTONIC,
                                           RELEASE_FLUSH_USEC, 1000, on_releases_flush, sup);
        if (r >= 0)
                r = sd_event_source_set_enabled(sup->releases_flush, SD_EVENT_OFF);
        if (r < 0) {
                sup->releases_flush = sd_event_source_disable_unref(sup->releases_flush);
                close(fd);
                return r;
        }
        sup->releases_epfd = fd;
        sup->releases_urgent = false;
        return 0;
}

/* Closes the channels' epoll instance and the flush timer (the clients' channels are closed). */
static void releases_close(struct fp_supervisor *sup)
{
        sup->releases_urgent = false;
        sup->releases_flush = sd_event_source_disable_unref(sup->releases_flush);
        if (sup->releases_epfd >= 0)
                close(sup->releases_epfd);
        sup->releases_epfd = -1;
}

/*
 * Takes fd, the release channel a hello offered, if it is a Unix
 * SOCK_SEQPACKET socket and the client has none yet; closes it otherwise.
 * Returns whether it was taken.
 */
static bool client_channel_take(struct fp_client *client, int fd)
{
        int type = 0, domain = 0;
        socklen_t tlen = sizeof(type), dlen = sizeof(domain);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = client};

        if (client->release_fd < 0 && client->sup->releases_epfd >= 0 &&
            getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) == 0 && type == SOCK_SEQPACKET &&
            getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &dlen) == 0 && domain == AF_UNIX &&
            epoll_ctl(client->sup->releases_epfd, EPOLL_CTL_ADD, fd, &ev) == 0) {
                client->release_fd = fd;
                return true;
        }
        close(fd);
        return false;
}

/* Stops watching the client's socket (before it is closed or the client freed). */
static void client_unwatch(struct fp_client *client)
{
        if (!client->watched)
                return;
        (void)epoll_ctl(client->sup->clients_epfd, EPOLL_CTL_DEL, client->fd, NULL);
        client->watched = false;
}

static void client_free(struct fp_client *client)
{
        LIST_REMOVE(client, link);
        client_unwatch(client);
        client_channel_close(client);
        client->sup->n_acquires_queued -= client->n_waiting;
        if (client->refused_timer)
                client->sup->n_refused--;
        if (client->counted) {
                fp_peercount_sub(&client->sup->conns_by_uid, client->uid);
                fp_peercount_sub(&client->sup->conns_by_pid, (uint32_t)client->pid);
        }
        sd_event_source_disable_unref(client->pid_src);
        sd_event_source_disable_unref(client->refused_timer);
        sd_event_source_disable_unref(client->hello_timer);
        if (client->pidfd >= 0)
                close(client->pidfd);
        if (client->fd >= 0)
                close(client->fd);
        free(client);
}

/* The client's process died or it closed its end: take everything back. */
static void client_gone(struct fp_client *client, const char *why)
{
        log_debug("worker pid %d disconnected (%s)", client->pid, why);
        struct fp_supervisor *sup = client->sup;
        /* Unhook first: reclaiming may serve other clients, never this one. */
        client_unwatch(client);
        /* Its releases count: a lease it gave back is not one to reclaim (a flood's bound). */
        (void)client_read_releases(client, 64 * MESSAGES_PER_WAKEUP);
        fp_supervisor_client_gone(sup, client);
        client_free(client);
}

/*
 * Whether the peer may use the pools: root, the supervisor's own uid, a listed
 * uid, or a listed gid among the peer's primary and supplementary groups.
 */
static bool peer_allowed(const struct fp_config *cfg, int fd, uid_t uid, gid_t gid)
{
        if (fp_access_privileged(uid) ||
            fp_access_listed(cfg->allow_uids, cfg->n_allow_uids, cfg->allow_gids, cfg->n_allow_gids,
                             uid, gid, NULL, 0))
                return true;
        if (cfg->n_allow_gids == 0)
                return false;

        /* The supplementary groups, asked for only when they can matter. */
        gid_t groups[MAX_PEER_GROUPS];
        socklen_t len = sizeof(groups);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
                return false;
        return fp_access_listed(NULL, 0, cfg->allow_gids, cfg->n_allow_gids, uid, gid, groups,
                                len / sizeof(gid_t));
}

void fp_control_send_error(struct fp_client *client, uint32_t request_id, int error,
                           const char *text)
{
        struct fp_msg_error msg;
        fp_msg_init(&msg.hdr, FP_OP_ERROR, sizeof(msg), request_id);
        msg.error = error;
        snprintf(msg.text, sizeof(msg.text), "%s", text ? text : "");
        int r = fp_send_msg(client->fd, &msg, sizeof(msg), -1, MSG_DONTWAIT);
        if (r < 0)
                log_debug("cannot answer worker pid %d: %s", client->pid, strerror(-r));
}

int fp_control_send_lease(struct fp_client *client, uint32_t request_id, const void *msg,
                          size_t len, int fd)
{
        (void)request_id;
        int r = fp_send_msg(client->fd, msg, len, fd, MSG_DONTWAIT);
        if (r == 0 && client->release_fd >= 0) {
                client->sup->releases_leased = true;
                releases_flush_arm(client->sup);
        }
        return r;
}

/* A hello, with the release channel it offers in *channel_fd (taken: -1 then). */
static void handle_hello(struct fp_client *client, const struct fp_msg_hello *msg, int *channel_fd)
{
        struct fp_msg_hello_ok reply;
        fp_msg_init(&reply.hdr, FP_OP_HELLO_OK, sizeof(reply), msg->hdr.request_id);
        reply.supervisor_pid = getpid();
        reply.flags = 0;
        if (*channel_fd >= 0 && client_channel_take(client, *channel_fd))
                reply.flags |= FP_HELLO_RELEASE_CHANNEL;
        *channel_fd = -1;
        (void)fp_send_msg(client->fd, &reply, sizeof(reply), -1, MSG_DONTWAIT);
}

static void handle_acquire(struct fp_client *client, const struct fp_msg_acquire *msg)
{
        struct fp_supervisor *sup = client->sup;
        uint32_t id = msg->hdr.request_id;
        char text[FP_ERRTEXT_MAX];

        if (!fp_str_terminated(msg->pool, sizeof(msg->pool)) ||
            !fp_str_terminated(msg->label, sizeof(msg->label))) {
                fp_control_send_error(client, id, -EBADMSG, "unterminated pool name or label");
                return;
        }
        if (sup->stopping) {
                fp_control_send_error(client, id, -ESHUTDOWN, "forkpoold is shutting down");
                return;
        }
        struct fp_sup_pool *sp = fp_supervisor_find_pool(sup, msg->pool);
        if (!sp) {
                snprintf(text, sizeof(text), "no pool named '%s'", msg->pool);
                fp_control_send_error(client, id, -ENOENT, text);
                return;
        }
        if (!fp_supervisor_pool_allows(sup, sp, client->uid, client->gid, client->groups,
                                       client->n_groups)) {
                warn_limited(sup, WARN_REFUSED,
                             "pool %s: refused pid %d (uid %u, gid %u): not in allow_users or "
                             "allow_groups (the pool's or the global ones)",
                             msg->pool, client->pid, client->uid, client->gid);
                snprintf(text, sizeof(text), "uid %u may not lease from pool '%s'", client->uid,
                         msg->pool);
                fp_control_send_error(client, id, -EACCES, text);
                return;
        }
        int max = sup->cfg.max_waiting_per_connection;
        if (max > 0 && client->n_waiting >= (uint32_t)max) {
                warn_limited(sup, WARN_LIMIT,
                             "pool %s: refused an acquire from pid %d (uid %u): %u acquires "
                             "already queued on its connection (max_waiting_per_connection = %d)",
                             msg->pool, client->pid, client->uid, client->n_waiting, max);
                snprintf(text, sizeof(text),
                         "too many acquires queued on this connection (%u; "
                         "max_waiting_per_connection = %d)",
                         client->n_waiting, max);
                fp_control_send_error(client, id, -EAGAIN, text);
                return;
        }
        /*
         * Nothing idle: a release another worker sent on its channel may be
         * waiting unread. It is taken before the pool opens a connection (or
         * an overflow one) or queues this acquire for one.
         */
        for (int round = 0; round < ROUNDS_PER_WAKEUP; round++)
                if (fp_supervisor_pool_has_idle(sp) || releases_take(sup) == 0)
                        break;
        /* Counted first: the pool may answer (and call fp_control_acquire_done()) at once. */
        client->n_waiting++;
        sup->n_acquires_queued++;
        int r = fp_supervisor_acquire(sp, client, client->pid, id, msg->timeout_ms, msg->label,
                                      msg->prefer_lease_id);
        if (r < 0) {
                fp_control_acquire_done(client);
                fp_control_send_error(client, id, r, "out of memory");
        }
}

static void handle_release(struct fp_client *client, const struct fp_msg_release *msg)
{
        struct fp_release_info info = {
                .flags = msg->flags,
                .txn = msg->txn,
                .dirty = msg->dirty,
                .params = msg->params,
                .params_len = msg->params_len,
                .statements = (msg->flags & FP_RELEASE_STATEMENTS) ? &msg->statements : NULL,
        };

        if (msg->params_len > sizeof(msg->params) ||
            fp_params_check(msg->params, msg->params_len) < 0 ||
            (info.statements && !fp_stmt_set_valid(info.statements))) {
                /* The session state is unknown: do not reuse the connection. */
                warn_limited(client->sup, WARN_MALFORMED,
                             "worker pid %d sent a malformed release: closing the connection",
                             client->pid);
                info.flags |= FP_RELEASE_INVALIDATE;
                info.params_len = 0;
                info.statements = NULL;
        }
        if (info.txn > FP_TXN_UNKNOWN)
                info.flags |= FP_RELEASE_INVALIDATE;
        if (fp_supervisor_release(client->sup, client, client->pid, msg->lease_id, &info) == 0)
                return;
        warn_limited(client->sup, WARN_MALFORMED,
                     "worker pid %d released lease %#llx, which it does not hold: ignored",
                     client->pid, (unsigned long long)msg->lease_id);
}

/*
 * Cancels the query running on a lease the client holds, from the
 * supervisor's side (MySQL: KILL QUERY from the pool's admin connection). No
 * reply: a cancel that cannot be sent is logged.
 */
static void handle_cancel(struct fp_client *client, const struct fp_msg_cancel *msg)
{
        if (fp_supervisor_cancel(client->sup, client, client->pid, msg->lease_id) == -ESRCH)
                warn_limited(client->sup, WARN_MALFORMED,
                             "worker pid %d cancelled lease %#llx, which it does not hold: ignored",
                             client->pid, (unsigned long long)msg->lease_id);
}

/* The holder's report that its session is pinned (the drop-in's transaction mode). No reply. */
static void handle_pin(struct fp_client *client, const struct fp_msg_pin *msg)
{
        if (fp_supervisor_pin(client->sup, client, client->pid, msg->lease_id, msg->reasons) ==
            -ESRCH)
                warn_limited(client->sup, WARN_MALFORMED,
                             "worker pid %d pinned lease %#llx, which it does not hold: ignored",
                             client->pid, (unsigned long long)msg->lease_id);
}

static void handle_admin(struct fp_client *client, const struct fp_msg_admin *msg)
{
        struct fp_msg_admin_ok reply;
        char text[FP_ERRTEXT_MAX];
        uint32_t id = msg->hdr.request_id;

        if (!fp_str_terminated(msg->pool, sizeof(msg->pool))) {
                fp_control_send_error(client, id, -EBADMSG, "unterminated pool name");
                return;
        }
        if (!fp_admin_allowed(client->sup, client->uid, client->gid, client->groups,
                              client->n_groups)) {
                warn_limited(client->sup, WARN_REFUSED,
                             "refused admin command %u from pid %d (uid %u): not in admin_users "
                             "or admin_groups",
                             msg->command, client->pid, client->uid);
                snprintf(text, sizeof(text), "uid %u may not run admin commands", client->uid);
                fp_control_send_error(client, id, -EPERM, text);
                return;
        }
        int r = fp_admin_run(client->sup, msg->command, msg->pool, msg->arg, text, sizeof(text));
        if (r < 0) {
                fp_control_send_error(client, id, r, text);
                return;
        }
        fp_msg_init(&reply.hdr, FP_OP_ADMIN_OK, sizeof(reply), id);
        snprintf(reply.text, sizeof(reply.text), "%s", text);
        (void)fp_send_msg(client->fd, &reply, sizeof(reply), -1, MSG_DONTWAIT);
}

/*
 * Handles one message; *channel_fd is the descriptor that came with it (a
 * hello's release channel; -1 if none), taken or left for the caller to close.
 */
static void handle_message(struct fp_client *client, const void *buf, size_t len, int *channel_fd)
{
        struct fp_msg_hdr hdr;
        int r = fp_msg_check(buf, len);

        memcpy(&hdr, buf, len < sizeof(hdr) ? len : sizeof(hdr));
        uint32_t request_id = len >= sizeof(hdr) ? hdr.request_id : 0;
        if (r < 0) {
                const char *why = r == -EPROTO       ? "protocol magic or version mismatch"
                                  : r == -EOPNOTSUPP ? "unknown operation"
                                                     : "wrong message size";
                warn_limited(client->sup, WARN_MALFORMED,
                             "worker pid %d sent a malformed message (%zu bytes, op %u): %s",
                             client->pid, len, len >= sizeof(hdr) ? hdr.op : 0, why);
                fp_control_send_error(client, request_id, r, why);
                return;
        }

        if (client->refused_timer) {
                fp_control_send_error(client, request_id, client->refused_error,
                                      client->refused_text);
                return;
        }
        /* It spoke: no longer subject to the hello timeout. */
        client->hello_timer = sd_event_source_disable_unref(client->hello_timer);
        switch (hdr.op) {
        case FP_OP_HELLO:
                handle_hello(client, buf, channel_fd);
                break;
        case FP_OP_ACQUIRE:
                client_channel_catch_up(client,
                                        ((const struct fp_msg_acquire *)buf)->channel_releases);
                handle_acquire(client, buf);
                break;
        case FP_OP_RELEASE:
                client_channel_catch_up(client,
                                        ((const struct fp_msg_release *)buf)->channel_releases);
                handle_release(client, buf);
                break;
        case FP_OP_ADMIN:
                handle_admin(client, buf);
                break;
        case FP_OP_CANCEL:
                handle_cancel(client, buf);
                break;
        case FP_OP_PIN:
                handle_pin(client, buf);
                break;
        default:
                warn_limited(client->sup, WARN_MALFORMED,
                             "worker pid %d sent a '%s' message, which only the supervisor sends",
                             client->pid, fp_op_name(hdr.op));
                fp_control_send_error(client, request_id, -EOPNOTSUPP,
                                      "operation not accepted from a worker");
        }
}

/* Whether a message with a descriptor is a well-formed hello that offers it as its release channel.
 */
static bool hello_offers_channel(const void *buf, ssize_t len)
{
        const struct fp_msg_hello *hello = buf;
        return len == (ssize_t)sizeof(*hello) && fp_msg_check(buf, (size_t)len) == 0 &&
               hello->hdr.op == FP_OP_HELLO && (hello->flags & FP_HELLO_RELEASE_CHANNEL);
}

/*
 * Handles the client's queued messages, at most max of them. Returns false if
 * the client is gone (and freed): end of stream, an error, or a refused peer
 * that has had its answer.
 */
static bool client_read_messages(struct fp_client *client, int max)
{
        union {
                struct fp_msg_hdr hdr;
                char bytes[FP_MSG_MAX];
        } buf;

        for (int i = 0; i < max; i++) {
                int channel_fd = -1;
                ssize_t n =
                        fp_recv_msg(client->fd, buf.bytes, sizeof(buf), &channel_fd, MSG_DONTWAIT);
                if (n == -EAGAIN)
                        return true;
                if (channel_fd >= 0 && !hello_offers_channel(buf.bytes, n)) {
                        close(channel_fd);
                        n = -EBADMSG;
                }
                if (n == -EBADMSG) {
                        warn_limited(client->sup, WARN_MALFORMED,
                                     "worker pid %d sent descriptors or an oversized message: "
                                     "rejected",
                                     client->pid);
                        fp_control_send_error(client, 0, -EBADMSG,
                                              "descriptors and oversized messages are not "
                                              "accepted");
                        continue;
                }
                if (n <= 0) {
                        client_gone(client, n == 0 ? "closed" : strerror((int)-n));
                        return false;
                }
                handle_message(client, buf.bytes, (size_t)n, &channel_fd);
                if (channel_fd >= 0)
                        close(channel_fd);
                if (client->refused_timer) {
                        /* Answered; closing with nothing unread lets the peer read it. */
                        client_free(client);
                        return false;
                }
        }
        return true;
}

/*
 * The clients' epoll is readable: rounds of one message from each ready
 * client (at most CLIENTS_PER_ROUND of them) until none is ready, or
 * ROUNDS_PER_WAKEUP rounds (the rest are still ready next time). Handling a
 * client frees no other client, so every pointer taken from the kernel stays
 * valid for its round.
 */
static int on_clients_ready(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct epoll_event events[CLIENTS_PER_ROUND];
        struct fp_supervisor *sup = userdata;
        (void)s, (void)revents;

        for (int round = 0; round < ROUNDS_PER_WAKEUP; round++) {
                int n = epoll_wait(fd, events, CLIENTS_PER_ROUND, 0);
                if (n < 0 && errno != EINTR)
                        log_error_errno(-errno, "cannot wait for the control connections");
                if (n <= 0)
                        break;
                for (int i = 0; i < n; i++) {
                        if (events[i].data.ptr == sup) {
                                /* The channels' epoll, while releases are urgent. */
                                (void)releases_take(sup);
                                continue;
                        }
                        struct fp_client *client = events[i].data.ptr;
                        uint32_t ev = events[i].events;
                        if ((ev & EPOLLIN) && !client_read_messages(client, 1))
                                continue;
                        if ((ev & (EPOLLHUP | EPOLLERR)) && !(ev & EPOLLIN))
                                client_gone(client, "hang-up");
                }
        }
        releases_urgency_update(sup);
        return 0;
}

/* The clients' epoll instance and its source in the event loop, made once. */
static int clients_epoll_open(struct fp_supervisor *sup)
{
        if (sup->clients_epfd >= 0)
                return 0;
        int fd = epoll_create1(EPOLL_CLOEXEC);
        if (fd < 0)
                return -errno;
        int r = sd_event_add_io(sup->event, &sup->clients_src, fd, EPOLLIN, on_clients_ready, sup);
        if (r >= 0)
                r = releases_open(sup);
        if (r < 0) {
                sup->clients_src = sd_event_source_disable_unref(sup->clients_src);
                close(fd);
                return r;
        }
        sup->clients_epfd = fd;
        releases_urgency_update(sup); /* already stopping, or acquires queued: at once */
        return 0;
}

/* Watches the client's socket for messages. Returns 0 or a negative errno. */
static int client_watch(struct fp_client *client)
{
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = client};
        if (epoll_ctl(client->sup->clients_epfd, EPOLL_CTL_ADD, client->fd, &ev) < 0)
                return -errno;
        client->watched = true;
        return 0;
}

static int on_client_exit(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct fp_client *client = userdata;
        (void)s, (void)fd, (void)revents;
        /*
         * What the process sent before it died counts: a release queued behind
         * its exit is a release, not a lease to reclaim.
         */
        struct fp_supervisor *sup = client->sup;
        if (client_read_messages(client, INT32_MAX))
                client_gone(client, "process exited");
        releases_urgency_update(sup);
        return 0;
}

static int on_refused_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
        (void)s, (void)usec;
        client_free(userdata);
        return 0;
}

/* A connection that said nothing in time: told why, then closed. */
static int on_hello_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct fp_client *client = userdata;
        struct fp_supervisor *sup = client->sup;
        (void)s, (void)usec;

        warn_limited(sup, WARN_HELLO,
                     "closed the control connection of pid %d (uid %u): no message within "
                     "%.3f s (hello_timeout)",
                     client->pid, client->uid, sup->cfg.hello_timeout_ms / 1000.0);
        fp_control_send_error(client, 0, -ETIMEDOUT,
                              "no message within hello_timeout: connection closed");
        client_gone(client, "hello timeout");
        return 0;
}

/*
 * Why a new connection from (pid, uid) is refused by the per-peer limits
 * (-EUSERS per uid, -EMFILE per pid, with the reason in text), or 0. Only
 * served connections count (O(1): sup->conns_by_uid and conns_by_pid).
 */
static int peer_over_limits(const struct fp_supervisor *sup, pid_t pid, uid_t uid, char *text,
                            size_t len)
{
        const struct fp_config *cfg = &sup->cfg;
        int by_uid = (int)fp_peercount_get(&sup->conns_by_uid, uid);
        int by_pid = (int)fp_peercount_get(&sup->conns_by_pid, (uint32_t)pid);

        if (cfg->max_connections_per_pid > 0 && by_pid >= cfg->max_connections_per_pid) {
                snprintf(text, len,
                         "too many control connections from pid %d (%d; "
                         "max_connections_per_pid = %d)",
                         pid, by_pid, cfg->max_connections_per_pid);
                return -EMFILE;
        }
        if (cfg->max_connections_per_uid > 0 && by_uid >= cfg->max_connections_per_uid) {
                snprintf(text, len,
                         "too many control connections from uid %u (%d; "
                         "max_connections_per_uid = %d)",
                         uid, by_uid, cfg->max_connections_per_uid);
                return -EUSERS;
        }
        return 0;
}

/*
 * Keeps a refused connection until its first message, answered with error
 * and text, then closes it (closing at once, with its hello unread, would
 * reset the connection and lose the answer). A peer that sends nothing is
 * closed soon; beyond MAX_REFUSED lingering ones, a refused connection is
 * closed unanswered. Takes client.
 */
static void client_refuse(struct fp_client *client, int error, const char *text)
{
        struct fp_supervisor *sup = client->sup;
        int r;

        client->pidfd = -1;
        client->refused_error = error;
        snprintf(client->refused_text, sizeof(client->refused_text), "%s", text);
        if (sup->n_refused >= MAX_REFUSED) {
                client_free(client);
                return;
        }
        r = client_watch(client);
        if (r >= 0)
                r = sd_event_add_time_relative(sup->event, &client->refused_timer, CLOCK_MONOTONIC,
                                               REFUSED_LINGER_USEC, 0, on_refused_timeout, client);
        if (r < 0) {
                client_free(client);
                return;
        }
        sup->n_refused++;
}

static int on_accept_retry(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct fp_supervisor *sup = userdata;
        (void)s, (void)usec;

        if (sup->listen_src)
                (void)sd_event_source_set_enabled(sup->listen_src, SD_EVENT_ON);
        return 0;
}

/*
 * Out of descriptors or memory: stops watching the listener for
 * ACCEPT_PAUSE_USEC (the pending connections wait in the backlog) instead of
 * being woken again at once for the same failure.
 */
static void accept_pause(struct fp_supervisor *sup, int error)
{
        int r;

        warn_limited(sup, WARN_ACCEPT,
                     "cannot accept on the control socket: %s; pausing accepts for %d ms",
                     strerror(-error), ACCEPT_PAUSE_USEC / 1000);
        r = sd_event_source_set_enabled(sup->listen_src, SD_EVENT_OFF);
        if (r < 0)
                return;
        if (!sup->accept_retry)
                r = sd_event_add_time_relative(sup->event, &sup->accept_retry, CLOCK_MONOTONIC,
                                               ACCEPT_PAUSE_USEC, 10 * 1000, on_accept_retry, sup);
        else {
                r = sd_event_source_set_time_relative(sup->accept_retry, ACCEPT_PAUSE_USEC);
                if (r >= 0)
                        r = sd_event_source_set_enabled(sup->accept_retry, SD_EVENT_ONESHOT);
        }
        if (r < 0) {
                /* Without the timer nothing would resume: keep accepting, rate-limited. */
                log_error_errno(r, "cannot arm the accept timer");
                (void)sd_event_source_set_enabled(sup->listen_src, SD_EVENT_ON);
        }
}

static void accept_one(struct fp_supervisor *sup, int fd)
{
        struct ucred cred;
        socklen_t len = sizeof(cred);
        char text[FP_ERRTEXT_MAX];
        int r;

        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
                log_warning_errno(-errno, "cannot read a worker's credentials");
                close(fd);
                return;
        }

        struct fp_client *client = calloc(1, sizeof(*client));
        if (!client) {
                close(fd);
                return;
        }
        *client = (struct fp_client){.sup = sup,
                                     .fd = fd,
                                     .release_fd = -1,
                                     .pid = cred.pid,
                                     .uid = cred.uid,
                                     .gid = cred.gid};
        TAILQ_INIT(&client->waiters);
        socklen_t glen = sizeof(client->groups);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, client->groups, &glen) == 0)
                client->n_groups = glen / sizeof(gid_t);

        if (!peer_allowed(&sup->cfg, fd, cred.uid, cred.gid)) {
                warn_limited(sup, WARN_REFUSED,
                             "refused control connection from pid %d (uid %u, gid %u): not in "
                             "allow_users or allow_groups",
                             cred.pid, cred.uid, cred.gid);
                LIST_INSERT_HEAD(&sup->clients, client, link);
                client_refuse(client, -EACCES, "this uid is not allowed by forkpoold");
                return;
        }
        r = peer_over_limits(sup, cred.pid, cred.uid, text, sizeof(text));
        LIST_INSERT_HEAD(&sup->clients, client, link);
        if (r < 0) {
                warn_limited(sup, WARN_REFUSED, "refused control connection: %s", text);
                client_refuse(client, r, text);
                return;
        }

        client->pidfd = (int)syscall(SYS_pidfd_open, cred.pid, 0);
        if (client->pidfd < 0 && (errno == EMFILE || errno == ENFILE)) {
                /* Told why; accepting pauses until descriptors come back. */
                r = -errno;
                client_refuse(client, r, "forkpoold is out of file descriptors");
                accept_pause(sup, r);
                return;
        }
        if (client->pidfd < 0) {
                /* Already gone (ESRCH): nothing to serve. */
                log_debug("worker pid %d exited before it was served", cred.pid);
                client_free(client);
                return;
        }
        r = fp_peercount_add(&sup->conns_by_uid, cred.uid);
        if (r >= 0) {
                r = fp_peercount_add(&sup->conns_by_pid, (uint32_t)cred.pid);
                if (r < 0)
                        fp_peercount_sub(&sup->conns_by_uid, cred.uid);
        }
        client->counted = r >= 0;
        if (r >= 0)
                r = client_watch(client);
        if (r >= 0)
                r = sd_event_add_io(sup->event, &client->pid_src, client->pidfd, EPOLLIN,
                                    on_client_exit, client);
        if (r >= 0 && sup->cfg.hello_timeout_ms > 0)
                r = sd_event_add_time_relative(sup->event, &client->hello_timer, CLOCK_MONOTONIC,
                                               (uint64_t)sup->cfg.hello_timeout_ms * 1000u,
                                               10 * 1000, on_hello_timeout, client);
        if (r < 0) {
                log_error_errno(r, "cannot watch worker pid %d", cred.pid);
                client_free(client);
                return;
        }
        fp_supervisor_client_arrived(sup, client, cred.pid);
        log_debug("worker pid %d (uid %u) connected", cred.pid, cred.uid);
}

static int on_listen(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct fp_supervisor *sup = userdata;
        (void)revents;

        for (int i = 0; i < MESSAGES_PER_WAKEUP; i++) {
                int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (cfd < 0) {
                        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                            errno == ENOMEM)
                                accept_pause(sup, -errno);
                        else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                                warn_limited(sup, WARN_ACCEPT, "accept on the control socket: %s",
                                             strerror(errno));
                        break;
                }
                accept_one(sup, cfd);
                int enabled;
                if (sd_event_source_get_enabled(s, &enabled) >= 0 && enabled == SD_EVENT_OFF)
                        break; /* accept_pause(): out of descriptors */
        }
        return 0;
}

/* Creates the socket's directory if it is missing (0755, like /run/forkpool). */
static void ensure_parent_dir(const char *path)
{
        char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
        snprintf(dir, sizeof(dir), "%s", path);
        char *slash = strrchr(dir, '/');
        if (!slash || slash == dir)
                return;
        *slash = '\0';
        (void)mkdir(dir, 0755);
}

/*
 * The control socket systemd passed (socket activation), or -1: a listening
 * SOCK_SEQPACKET socket bound to our path among the n descriptors systemd
 * passed. Not sd_listen_fds(): after the fd store's restore, some of them are
 * closed (or their numbers taken again), and it fails on a closed one. Takes
 * $LISTEN_FDS and the rest away from the environment.
 */
static int activated_socket(const char *path, int n)
{
        int found = -1;
        for (int fd = SD_LISTEN_FDS_START; found < 0 && fd < SD_LISTEN_FDS_START + n; fd++)
                if (sd_is_socket_unix(fd, SOCK_SEQPACKET, 1, path, 0) > 0)
                        found = fd;
        (void)unsetenv("LISTEN_PID");
        (void)unsetenv("LISTEN_FDS");
        (void)unsetenv("LISTEN_FDNAMES");
        if (found < 0 && n > 0)
                log_debug("none of the %d descriptors from systemd is a listening "
                          "SOCK_SEQPACKET socket on %s: binding our own",
                          n, path);
        return found;
}

int fp_control_listen(struct fp_supervisor *sup)
{
        const char *path = sup->cfg.socket_path;
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        int fd, r;

        r = clients_epoll_open(sup);
        if (r < 0)
                return log_error_errno(r, "cannot create the epoll instance of the control "
                                          "connections");
        fd = activated_socket(path, sup->n_listen_fds);
        if (fd >= 0) {
                (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
                (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
                r = sd_event_add_io(sup->event, &sup->listen_src, fd, EPOLLIN, on_listen, sup);
                if (r < 0)
                        return log_error_errno(r, "cannot watch the control socket");
                sup->listen_fd = fd;
                sup->socket_activated = true;
                return 0;
        }

        if (strlen(path) >= sizeof(addr.sun_path))
                return log_error_errno(-ENAMETOOLONG, "control socket path %s", path);
        memcpy(addr.sun_path, path, strlen(path) + 1);
        ensure_parent_dir(path);

        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return log_error_errno(-errno, "cannot create the control socket");

        /* A socket file left by a crashed supervisor: the caller checked nobody listens. */
        (void)unlink(path);
        mode_t old = umask(0117);
        r = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
        umask(old);
        if (r < 0) {
                r = log_error_errno(-errno, "cannot bind the control socket %s", path);
                close(fd);
                return r;
        }
        if (chmod(path, 0660) < 0 ||
            (sup->cfg.n_allow_gids > 0 && chown(path, (uid_t)-1, sup->cfg.allow_gids[0]) < 0))
                log_warning_errno(-errno, "cannot set the mode or group of %s", path);
        if (listen(fd, SOMAXCONN) < 0) {
                r = log_error_errno(-errno, "cannot listen on %s", path);
                close(fd);
                (void)unlink(path);
                return r;
        }
        r = sd_event_add_io(sup->event, &sup->listen_src, fd, EPOLLIN, on_listen, sup);
        if (r < 0) {
                close(fd);
                (void)unlink(path);
                return log_error_errno(r, "cannot watch the control socket");
        }
        sup->listen_fd = fd;
        return 0;
}

void fp_control_stop_listening(struct fp_supervisor *sup)
{
        /* Stopping: every release is wanted at once (leases drain, or go to the fd store). */
        releases_urgency_update(sup);
        sup->accept_retry = sd_event_source_disable_unref(sup->accept_retry);
        if (sup->listen_fd < 0)
                return;
        sup->listen_src = sd_event_source_disable_unref(sup->listen_src);
        close(sup->listen_fd);
        sup->listen_fd = -1;
        /* systemd's socket stays for the next start; ours goes. */
        if (!sup->socket_activated)
                (void)unlink(sup->cfg.socket_path);
}

void fp_control_close_all(struct fp_supervisor *sup)
{
        struct fp_client *client;
        while ((client = LIST_FIRST(&sup->clients)))
                client_free(client);
        sup->clients_src = sd_event_source_disable_unref(sup->clients_src);
        if (sup->clients_epfd >= 0)
                close(sup->clients_epfd);
        sup->clients_epfd = -1;
        releases_close(sup);
        fp_peercount_done(&sup->conns_by_uid);
        fp_peercount_done(&sup->conns_by_pid);
}

void fp_control_read_all(struct fp_supervisor *sup)
{
        struct fp_client *client = LIST_FIRST(&sup->clients), *next;
        for (; client; client = next) {
                next = LIST_NEXT(client, link);
                /* Releases first, as every round takes them; then the socket, until empty
                 * or a flood's bound (false: the client is gone). */
                (void)client_read_releases(client, 64 * MESSAGES_PER_WAKEUP);
                (void)client_read_messages(client, 64 * MESSAGES_PER_WAKEUP);
        }
        releases_urgency_update(sup);
}

void fp_control_take_releases(struct fp_supervisor *sup)
{
        (void)releases_take(sup);
        releases_urgency_update(sup);
}

const struct fp_transport fp_control_transport = {
        .listen = fp_control_listen,
        .stop_listening = fp_control_stop_listening,
        .close_all = fp_control_close_all,
        .read_all = fp_control_read_all,
        .take_releases = fp_control_take_releases,
        .send_lease = fp_control_send_lease,
        .send_error = fp_control_send_error,
        .acquire_done = fp_control_acquire_done,
        .client_waiters = fp_control_client_waiters,
};
