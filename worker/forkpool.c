/* SPDX-License-Identifier: MIT */
/*
 * forkpool.c — libforkpool's handle, acquire, release and fork safety.
 *
 * Ownership: a handle belongs to the process that opened its control
 * connection, a lease to the process that acquired it (the supervisor knows
 * that process as the SO_PEERCRED pid of the control connection). After a
 * fork the child's copies of the parent's leases are made inert: their socket
 * descriptors are replaced by unconnected sockets, so nothing the child does
 * can reach the parent's database session, and every call on them returns
 * -ECHILD. The child's next acquire opens its own control connection.
 */
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "internal.h"
#include "pg_cache.h"
#include "pgparams.h"
#include "sockio.h"
#include "selfpid.h"

#define HELLO_TIMEOUT_MS 10000
/* How long past its own timeout an acquire waits for the supervisor's answer. */
#define REPLY_SLACK_MS 10000

static __thread char last_error[FP_ERRTEXT_MAX];

/* Every open handle of this process, for the fork handlers. */
static pthread_mutex_t handles_lock = PTHREAD_MUTEX_INITIALIZER;
static forkpool *handles;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

FORKPOOL_EXPORT const char *forkpool_version(void)
{
        return FORKPOOL_VERSION_STRING;
}

FORKPOOL_EXPORT const char *forkpool_last_error(void)
{
        return last_error;
}

static void set_last_error(const char *text)
{
        snprintf(last_error, sizeof(last_error), "%s", text ? text : "");
}

void fp_set_last_error(const char *text)
{
        set_last_error(text);
}

/* Gives up the adopted connection (or the raw fd) so that no byte reaches the server. */
static void lease_abandon(struct forkpool_lease *lease)
{
        if (lease->db_kind == FP_DB_MYSQL)
                fp_abandon_mysql(lease);
        else
                fp_abandon_pg(lease);
}

/* --- the control connection's descriptor --- */

#define CONTROL_RETIRED 1u
#define CONTROL_USER    2u

/* Closes a control connection nobody uses any more. */
static void control_free(struct fp_control *ctl)
{
        close(ctl->fd);
        if (ctl->release_fd >= 0)
                close(ctl->release_fd);
        free(ctl);
}

/* Makes ctl (from control_open()) fp's control connection. Called with io_lock held, fp->ctl NULL.
 */
static void control_set(forkpool *fp, struct fp_control *ctl)
{
        fp->ctl = ctl;
        fp->fd = ctl->fd;
        fp->fd_generation++;
        fp->released_on_control = false;
}

/*
 * fp's control connection is no longer its own (dead, or being replaced): it
 * is closed now, or by its last user's control_put(). Called with io_lock
 * held.
 */
static void control_retire(forkpool *fp)
{
        struct fp_control *ctl = fp->ctl;
        fp->ctl = NULL;
        fp->fd = -1;
        if (ctl && __atomic_fetch_or(&ctl->state, CONTROL_RETIRED, __ATOMIC_ACQ_REL) == 0)
                control_free(ctl);
}

/* The current control connection, counted as used (control_put()). Called with io_lock held. */
static struct fp_control *control_get(forkpool *fp)
{
        __atomic_fetch_add(&fp->ctl->state, CONTROL_USER, __ATOMIC_RELAXED);
        return fp->ctl;
}

/* Done with a control_get() connection: a retired one is closed by its last user. */
static void control_put(struct fp_control *ctl)
{
        if (__atomic_fetch_sub(&ctl->state, CONTROL_USER, __ATOMIC_ACQ_REL) ==
            (CONTROL_USER | CONTROL_RETIRED))
                control_free(ctl);
}

/* --- fork handling --- */

/*
 * In a child (or any process that is not fp->pid): forget the parent's
 * control connection and make the parent's leases inert. Writes nothing to
 * any socket. Called with fp->io_lock held or from the atfork child handler.
 */
static void handle_forget_parent(forkpool *fp)
{
        for (struct forkpool_lease *l = fp->leases; l; l = l->next)
                if (l->fd >= 0 && l->pid != fp_self_pid())
                        (void)fp_neutralize_fd(l->fd);
        /* Our copy only: closing sends nothing; no thread of the parent's uses it here. */
        if (fp->ctl)
                control_free(fp->ctl);
        fp->ctl = NULL;
        fp->fd = -1;
        fp->pid = fp_self_pid();
}

static void atfork_prepare(void)
{
        pthread_mutex_lock(&handles_lock);
        for (forkpool *fp = handles; fp; fp = fp->next_handle)
                pthread_mutex_lock(&fp->io_lock);
        fp_adopt_mysql_atfork_prepare();
}

static void atfork_parent(void)
{
        fp_adopt_mysql_atfork_parent();
        for (forkpool *fp = handles; fp; fp = fp->next_handle)
                pthread_mutex_unlock(&fp->io_lock);
        pthread_mutex_unlock(&handles_lock);
}

static void atfork_child(void)
{
        fp_adopt_pg_atfork_child();
        fp_pg_cache_atfork_child();
        fp_adopt_mysql_atfork_child();
        fp_pool_state_atfork_child();
        for (forkpool *fp = handles; fp; fp = fp->next_handle) {
                handle_forget_parent(fp);
                /* Another thread may have held it mid-acquire; that thread is not here. */
                pthread_mutex_init(&fp->acquire_lock, NULL);
                pthread_cond_init(&fp->side_cond, NULL);
                fp->side = NULL;
                pthread_mutex_unlock(&fp->io_lock);
        }
        pthread_mutex_unlock(&handles_lock);
}

static void atfork_register(void)
{
        (void)pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* For forks that bypassed pthread_atfork (a raw clone): same effect, lazily. */
static void handle_check_fork(forkpool *fp)
{
        if (fp->pid != fp_self_pid())
                handle_forget_parent(fp);
}

/* --- the control connection --- */

/* Turns an error reply into its negative errno (bounded) and remembers its text. */
static int error_reply(const struct fp_msg_error *msg)
{
        char text[FP_ERRTEXT_MAX];
        memcpy(text, msg->text, sizeof(text));
        text[sizeof(text) - 1] = '\0';
        set_last_error(text);
        return msg->error < 0 && msg->error > -4096 ? msg->error : -EPROTO;
}

/*
 * Receives one message and checks it; fds are accepted only with a lease.
 * flags: MSG_DONTWAIT, or 0 to wait (up to the socket's SO_RCVTIMEO).
 */
static ssize_t recv_reply(int fd, void *buf, size_t cap, int *ret_fd, int flags)
{
        ssize_t n = fp_recv_msg(fd, buf, cap, ret_fd, flags);
        if (n == 0)
                return -ECONNRESET;
        if (n < 0)
                return n;
        int r = fp_msg_check(buf, (size_t)n);
        if (r < 0 || (*ret_fd >= 0 && ((struct fp_msg_hdr *)buf)->op != FP_OP_LEASE)) {
                if (*ret_fd >= 0)
                        close(*ret_fd);
                *ret_fd = -1;
                return r < 0 ? r : -EPROTO;
        }
        return n;
}

/*
 * Says hello on a new control connection fd, handing over *release_fd, the
 * supervisor's end of the release channel (closed here whatever happens).
 * Waits up to HELLO_TIMEOUT_MS for the answer. Returns the answer's flags
 * (FP_HELLO_RELEASE_CHANNEL: the channel was taken) or a negative errno.
 */
static int control_hello(int fd, int *release_fd)
{
        union {
                struct fp_msg_hdr hdr;
                struct fp_msg_error error;
                struct fp_msg_hello_ok ok;
                char bytes[FP_MSG_MAX];
        } reply;
        struct fp_msg_hello hello;

        fp_msg_init(&hello.hdr, FP_OP_HELLO, sizeof(hello), 0);
        hello.pid = fp_self_pid();
        hello.flags = *release_fd >= 0 ? FP_HELLO_RELEASE_CHANNEL : 0;
        /* A refusal may already be waiting even if this send fails: read it anyway. */
        int sent = fp_send_msg(fd, &hello, sizeof(hello), *release_fd, 0);
        if (*release_fd >= 0)
                close(*release_fd);
        *release_fd = -1;
        int r = fp_wait_fd(fd, POLLIN, HELLO_TIMEOUT_MS);
        if (r < 0)
                return r;
        int rfd = -1;
        ssize_t n = recv_reply(fd, reply.bytes, sizeof(reply), &rfd, MSG_DONTWAIT);
        if (n < 0)
                return sent < 0 ? -ECONNREFUSED : (int)n;
        if (reply.hdr.op == FP_OP_ERROR)
                return error_reply(&reply.error);
        if (reply.hdr.op != FP_OP_HELLO_OK)
                return -EPROTO;
        return (int)(reply.ok.flags & FP_HELLO_RELEASE_CHANNEL);
}

/*
 * Opens a control connection to socket_path, with its release channel
 * (proto.h; none if the socket pair cannot be made), and says hello. Takes
 * no lock (it may wait up to HELLO_TIMEOUT_MS for a restarting supervisor:
 * fork() and the other threads' releases must not wait with it). Returns 0
 * and the connection in *ret (control_free() frees it), or a negative errno.
 */
static int control_open(const char *socket_path, struct fp_control **ret)
{
        struct fp_control *ctl = malloc(sizeof(*ctl));
        if (!ctl)
                return -ENOMEM;
        *ctl = (struct fp_control){.fd = -1, .release_fd = -1, .recv_timeout_ms = -1};

        ctl->fd = fp_connect_seqpacket(socket_path);
        if (ctl->fd < 0) {
                int r = ctl->fd == -ENOENT ? -ECONNREFUSED : ctl->fd;
                set_last_error(r == -ECONNREFUSED ? "no forkpoold is listening on that socket"
                                                  : NULL);
                free(ctl);
                return r;
        }
        int pair[2] = {-1, -1};
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) == 0)
                ctl->release_fd = pair[0];
        int r = control_hello(ctl->fd, &pair[1]);
        if (r < 0) {
                control_free(ctl);
                return r;
        }
        if (!(r & FP_HELLO_RELEASE_CHANNEL) && ctl->release_fd >= 0) {
                close(ctl->release_fd);
                ctl->release_fd = -1;
        }
        *ret = ctl;
        return 0;
}

/*
 * Makes ctl (from control_open()) fp's control connection, unless another
 * thread installed one meanwhile (then ctl is freed), and sends the releases
 * that waited for a supervisor. Called with io_lock held.
 */
static void control_install(forkpool *fp, struct fp_control *ctl)
{
        if (fp->fd >= 0 || fp->pid != fp_self_pid()) {
                control_free(ctl);
                return;
        }
        control_set(fp, ctl);
        /* Releases that found no supervisor go to this one (a restart kept their leases). */
        while (fp->n_pending > 0 && fp_send_msg(ctl->fd, &fp->pending[fp->n_pending - 1],
                                                sizeof(fp->pending[0]), -1, 0) == 0)
                fp->n_pending--;
}

/*
 * Sends a release: on the release channel unless on_control (or the channel
 * is full or gone), else on the control connection. If the supervisor went
 * away (a restart), the release waits
 * in fp->pending for the next control connection (control_reopen_for_pending()
 * right after, or the next one this process makes). Called with io_lock held;
 * never blocks on a connect.
 */
static void send_release(forkpool *fp, struct fp_msg_release *rel, bool on_control)
{
        struct fp_control *ctl = fp->ctl;
        if (ctl) {
                /* The channel first: a full or dead one leaves it to the control connection. */
                if (!on_control && !fp->released_on_control && ctl->release_fd >= 0 &&
                    fp_send_msg(ctl->release_fd, rel, sizeof(*rel), -1, MSG_DONTWAIT) == 0) {
                        __atomic_store_n(&ctl->channel_releases, ctl->channel_releases + 1,
                                         __ATOMIC_RELEASE);
                        return;
                }
                rel->channel_releases = ctl->channel_releases;
                if (fp_send_msg(ctl->fd, rel, sizeof(*rel), -1, 0) == 0) {
                        fp->released_on_control = true;
                        return;
                }
        }
        control_retire(fp);
        rel->channel_releases = 0; /* counted on a connection that is gone */
        if (!fp->pending)
                fp->pending = calloc(FP_PENDING_RELEASES_MAX, sizeof(*fp->pending));
        if (fp->pending && fp->n_pending < FP_PENDING_RELEASES_MAX)
                fp->pending[fp->n_pending++] = *rel;
}

/*
 * If releases wait for a supervisor and no control connection is open, opens
 * one (outside io_lock) and sends them. Called without io_lock.
 */
static void control_reopen_for_pending(forkpool *fp)
{
        struct fp_control *ctl;
        pthread_mutex_lock(&fp->io_lock);
        bool needed = fp->n_pending > 0 && fp->fd < 0 && fp->pid == fp_self_pid();
        pthread_mutex_unlock(&fp->io_lock);
        if (!needed || control_open(fp->socket_path, &ctl) < 0)
                return;
        pthread_mutex_lock(&fp->io_lock);
        control_install(fp, ctl);
        pthread_mutex_unlock(&fp->io_lock);
}

FORKPOOL_EXPORT int forkpool_open(const char *socket_path, forkpool **ret)
{
        int r;

        if (!ret)
                return -EINVAL;
        if (!socket_path)
                socket_path = getenv("FORKPOOL_SOCKET");
        if (!socket_path || !*socket_path)
                socket_path = FORKPOOL_DEFAULT_SOCKET;

        forkpool *fp = calloc(1, sizeof(*fp));
        if (!fp)
                return -ENOMEM;
        if (strlen(socket_path) >= sizeof(fp->socket_path)) {
                free(fp);
                return -ENAMETOOLONG;
        }
        strcpy(fp->socket_path, socket_path);
        fp->fd = -1;
        fp->pid = fp_self_pid();
        pthread_mutex_init(&fp->acquire_lock, NULL);
        pthread_mutex_init(&fp->io_lock, NULL);
        pthread_cond_init(&fp->side_cond, NULL);

        struct fp_control *ctl;
        r = control_open(fp->socket_path, &ctl);
        if (r >= 0)
                control_set(fp, ctl);
        if (r < 0) {
                pthread_cond_destroy(&fp->side_cond);
                free(fp);
                return r;
        }

        pthread_once(&atfork_once, atfork_register);
        pthread_mutex_lock(&handles_lock);
        fp->next_handle = handles;
        handles = fp;
        pthread_mutex_unlock(&handles_lock);
        *ret = fp;
        return 0;
}

static void describe_release(const forkpool_lease *lease, struct fp_msg_release *rel);

FORKPOOL_EXPORT void forkpool_close(forkpool *fp)
{
        if (!fp)
                return;
        pthread_mutex_lock(&handles_lock);
        for (forkpool **p = &handles; *p; p = &(*p)->next_handle)
                if (*p == fp) {
                        *p = fp->next_handle;
                        break;
                }
        pthread_mutex_unlock(&handles_lock);

        pthread_mutex_lock(&fp->io_lock);
        handle_check_fork(fp);
        /* Leases of this process are given up (the supervisor closes them); a child's
         * inherited ones are only forgotten: they are someone else's. */
        struct forkpool_lease *l = fp->leases;
        while (l) {
                struct forkpool_lease *next = l->next;
                if (l->pid == fp_self_pid() && (l->flags & FP_LEASE_STICKY) && !l->in_use &&
                    fp->fd >= 0) {
                        /* A process pool's idle connection goes back for reuse. */
                        struct fp_msg_release rel;
                        fp_msg_init(&rel.hdr, FP_OP_RELEASE, sizeof(rel), 0);
                        rel.lease_id = l->lease_id;
                        rel.channel_releases = fp->ctl->channel_releases;
                        describe_release(l, &rel);
                        lease_abandon(l);
                        (void)fp_send_msg(fp->fd, &rel, sizeof(rel), -1, 0);
                        free(l);
                } else if (l->pid == fp_self_pid()) {
                        lease_abandon(l);
                        free(l);
                } else {
                        l->fp = NULL;
                        l->prev = l->next = NULL;
                }
                l = next;
        }
        control_retire(fp);
        pthread_mutex_unlock(&fp->io_lock);
        fp_my_cache_close(fp);
        pthread_mutex_destroy(&fp->io_lock);
        pthread_mutex_destroy(&fp->acquire_lock);
        pthread_cond_destroy(&fp->side_cond);
        fp_segment_close(&fp->segment);
        free(fp->pending);
        free(fp);
}

/* --- acquire --- */

/* Gives back a lease that arrived for a request we no longer wait for. */
static void return_unused(int control_fd, const struct fp_msg_lease *msg, int lease_fd)
{
        struct fp_msg_release rel;
        if (lease_fd >= 0)
                close(lease_fd);
        fp_msg_init(&rel.hdr, FP_OP_RELEASE, sizeof(rel), msg->hdr.request_id);
        rel.lease_id = msg->lease_id;
        rel.flags = FP_RELEASE_UNUSED;
        rel.txn = msg->txn;
        (void)fp_send_msg(control_fd, &rel, sizeof(rel), -1, MSG_DONTWAIT);
}

static int lease_new(forkpool *fp, const struct fp_msg_lease *msg, int fd, const char *pool,
                     forkpool_lease **ret)
{
        forkpool_lease *lease = calloc(1, sizeof(*lease));
        if (!lease)
                return -ENOMEM;
        *lease = (forkpool_lease){
                .fp = fp,
                .pid = fp_self_pid(),
                .lease_id = msg->lease_id,
                .fd = fd,
                .txn = msg->txn,
                .flags = msg->flags,
                .in_use = true,
                .db_kind = msg->db_kind,
                .leased_ms = fp_monotonic_ms(),
        };
        snprintf(lease->pool, sizeof(lease->pool), "%s", pool);
        if ((msg->flags & FP_LEASE_STATEMENTS) && msg->statements.count <= FP_STMTS_MAX) {
                lease->statements = msg->statements;
                lease->statements_known = true;
        }
        if (msg->db_kind == FP_DB_MYSQL) {
                struct fp_lease_mysql *my = &lease->my_info;
                *my = msg->my;
                my->server_version[sizeof(my->server_version) - 1] = '\0';
                my->charset[sizeof(my->charset) - 1] = '\0';
                my->user[sizeof(my->user) - 1] = '\0';
                my->db[sizeof(my->db) - 1] = '\0';
                lease->info.backend_pid = (int32_t)my->thread_id;
        } else {
                lease->info = msg->pg;
        }
        lease->info.user[sizeof(lease->info.user) - 1] = '\0';
        lease->info.dbname[sizeof(lease->info.dbname) - 1] = '\0';
        if (lease->info.params_len > sizeof(lease->info.params) ||
            fp_params_check(lease->info.params, lease->info.params_len) < 0)
                lease->info.params_len = 0;

        pthread_mutex_lock(&fp->io_lock);
        lease->next = fp->leases;
        if (fp->leases)
                fp->leases->prev = lease;
        fp->leases = lease;
        /* forkpoold answered: it has read what this process sent on the connection before. */
        fp->released_on_control = false;
        pthread_mutex_unlock(&fp->io_lock);
        *ret = lease;
        return 0;
}

void fp_prefer_lease(forkpool *fp, const char *pool, uint64_t lease_id)
{
        pthread_mutex_lock(&fp->io_lock);
        fp->prefer_lease_id = lease_id;
        snprintf(fp->prefer_pool, sizeof(fp->prefer_pool), "%s", pool);
        pthread_mutex_unlock(&fp->io_lock);
}

/* The lease id to ask back with an acquire of pool on fp, or 0. */
static uint64_t preferred_lease(forkpool *fp, const char *pool)
{
        pthread_mutex_lock(&fp->io_lock);
        uint64_t id = strcmp(fp->prefer_pool, pool) == 0 ? fp->prefer_lease_id : 0;
        pthread_mutex_unlock(&fp->io_lock);
        return id;
}

/*
 * The answer to this thread's own acquire (reply, with lease_fd, owned from
 * here on): 0 with a new lease in *ret, or the supervisor's negative errno.
 * A lease that cannot be taken goes back unused on fd.
 */
static int own_reply(forkpool *fp, int fd, const struct fp_side_wait *reply_of, int lease_fd,
                     const char *pool, forkpool_lease **ret)
{
        if (reply_of->reply.hdr.op == FP_OP_ERROR) {
                if (lease_fd >= 0)
                        close(lease_fd);
                return error_reply(&reply_of->reply.error);
        }
        if (reply_of->reply.hdr.op != FP_OP_LEASE || lease_fd < 0) {
                if (lease_fd >= 0)
                        close(lease_fd);
                return -EPROTO;
        }
        int r = lease_new(fp, &reply_of->reply.lease, lease_fd, pool, ret);
        if (r < 0)
                return_unused(fd, &reply_of->reply.lease, lease_fd);
        return r;
}

/*
 * Hands a reply for another request to the timeout-0 acquire waiting for it
 * (fp->side). Returns false if nobody waits for it.
 */
static bool side_deliver(forkpool *fp, const struct fp_side_wait *got, size_t len, int lease_fd)
{
        bool taken = false;
        pthread_mutex_lock(&fp->io_lock);
        for (struct fp_side_wait *w = fp->side; w; w = w->next) {
                if (w->request_id != got->reply.hdr.request_id || w->done)
                        continue;
                memcpy(w->reply.bytes, got->reply.bytes, len);
                w->lease_fd = lease_fd;
                w->done = true;
                taken = true;
                pthread_cond_broadcast(&fp->side_cond);
                break;
        }
        pthread_mutex_unlock(&fp->io_lock);
        return taken;
}

/*
 * Reads the replies on fd until the one for request id: returns 0 with a new
 * lease in *ret, -EAGAIN if it has not arrived yet (with wait: within the
 * socket's SO_RCVTIMEO), the supervisor's negative errno, or
 * -ECONNRESET/-EPIPE when the connection is dead. Replies to other threads'
 * timeout-0 acquires are handed to them; leases for requests nobody waits for
 * any more go back unused. Blocks only with wait (for one reader at a time:
 * the holder of acquire_lock).
 */
static int acquire_reply(forkpool *fp, int fd, uint32_t id, const char *pool, bool wait,
                         forkpool_lease **ret)
{
        struct fp_side_wait got;

        for (;;) {
                int lease_fd = -1;
                ssize_t n = recv_reply(fd, got.reply.bytes, sizeof(got.reply), &lease_fd,
                                       wait ? 0 : MSG_DONTWAIT);
                if (n < 0)
                        return (int)n;
                if (got.reply.hdr.request_id == id)
                        return own_reply(fp, fd, &got, lease_fd, pool, ret);
                if (side_deliver(fp, &got, (size_t)n, lease_fd))
                        continue;
                /* An answer to an earlier request that gave up waiting. */
                if (got.reply.hdr.op == FP_OP_LEASE)
                        return_unused(fd, &got.reply.lease, lease_fd);
        }
}

/* Sends acquire request id for pool on control connection fd (send flags as fp_send_msg()). */
static int acquire_send(forkpool *fp, struct fp_control *ctl, uint32_t id, const char *pool,
                        int timeout_ms, const char *label, int flags)
{
        struct fp_msg_acquire req;

        fp_msg_init(&req.hdr, FP_OP_ACQUIRE, sizeof(req), id);
        req.channel_releases = __atomic_load_n(&ctl->channel_releases, __ATOMIC_ACQUIRE);
        req.timeout_ms = timeout_ms;
        snprintf(req.pool, sizeof(req.pool), "%s", pool);
        if (label)
                snprintf(req.label, sizeof(req.label), "%s", label);
        req.prefer_lease_id = preferred_lease(fp, pool);
        return fp_send_msg(ctl->fd, &req, sizeof(req), -1, flags);
}

/*
 * Makes a blocking receive on ctl wait at most timeout_ms (< 0: without
 * limit); a system call only when that differs from the last one's. Called
 * by acquire_lock's holder. Returns 0 or a negative errno.
 */
static int control_recv_timeout(struct fp_control *ctl, int timeout_ms)
{
        if (ctl->recv_timeout_ms == timeout_ms)
                return 0;
        struct timeval tv = {0, 0}; /* zero: no limit */
        if (timeout_ms >= 0) {
                tv.tv_sec = timeout_ms / 1000;
                tv.tv_usec = timeout_ms % 1000 * 1000 + (timeout_ms == 0);
        }
        if (setsockopt(ctl->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0)
                return -errno;
        ctl->recv_timeout_ms = timeout_ms;
        return 0;
}

/*
 * One acquire round trip on control connection ctl: the request, then one
 * blocking receive (no poll first) for its answer. Returns 0 with a lease, a
 * negative errno from the supervisor, -ETIMEDOUT when no answer came in time,
 * or -EPIPE/-ECONNRESET when the control connection is dead.
 */
static int acquire_once(forkpool *fp, struct fp_control *ctl, const char *pool, int timeout_ms,
                        const char *label, forkpool_lease **ret)
{
        uint32_t id = __atomic_add_fetch(&fp->next_request_id, 1, __ATOMIC_RELAXED);
        int r = acquire_send(fp, ctl, id, pool, timeout_ms, label, 0);
        if (r < 0)
                return r;

        /* The supervisor's own timeout plus a slack for the reply, without overflow. */
        int wait_ms = timeout_ms < 0                          ? -1
                      : timeout_ms > INT_MAX - REPLY_SLACK_MS ? INT_MAX
                                                              : timeout_ms + REPLY_SLACK_MS;
        r = control_recv_timeout(ctl, wait_ms);
        if (r < 0)
                return r;
        r = acquire_reply(fp, ctl->fd, id, pool, true, ret);
        return r == -EAGAIN ? -ETIMEDOUT : r;
}

/*
 * The current control connection, (re)opened if needed, for one acquire:
 * counted as used until the caller's control_put(), so that another thread's
 * release that replaces a dead connection cannot make its number refer to
 * another socket meanwhile (it is closed by its last user). With stale (the
 * *ret_generation of an earlier call whose connection died), that connection
 * is replaced first. The connect runs outside io_lock. Returns 0 with the
 * connection in *ret, or a negative errno.
 */
static int control_fd(forkpool *fp, bool reconnect, uint64_t stale, uint64_t *ret_generation,
                      struct fp_control **ret)
{
        int r = 0;

        pthread_mutex_lock(&fp->io_lock);
        handle_check_fork(fp);
        if (reconnect && fp->fd >= 0 && fp->fd_generation == stale)
                control_retire(fp);
        if (fp->fd < 0) {
                pthread_mutex_unlock(&fp->io_lock);
                struct fp_control *fresh;
                r = control_open(fp->socket_path, &fresh);
                pthread_mutex_lock(&fp->io_lock);
                if (r >= 0)
                        control_install(fp, fresh);
        }
        if (fp->fd >= 0) {
                *ret = control_get(fp);
                *ret_generation = fp->fd_generation;
                r = 0;
        } else if (r >= 0) {
                r = -ECONNRESET;
        }
        pthread_mutex_unlock(&fp->io_lock);
        return r;
}

/* Milliseconds of CLOCK_REALTIME since *start (never negative). */
static int64_t elapsed_ms(const struct timespec *start)
{
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        int64_t ms = (int64_t)(now.tv_sec - start->tv_sec) * 1000 +
                     (now.tv_nsec - start->tv_nsec) / 1000000;
        return ms < 0 ? 0 : ms;
}

/*
 * A process pool's connection this process already holds and is not using,
 * or NULL (handed out again without asking the supervisor).
 */
static forkpool_lease *sticky_take(forkpool *fp, const char *pool)
{
        forkpool_lease *found = NULL;
        pthread_mutex_lock(&fp->io_lock);
        handle_check_fork(fp);
        for (forkpool_lease *l = fp->leases; l; l = l->next)
                if ((l->flags & FP_LEASE_STICKY) && !l->in_use && l->pid == fp_self_pid() &&
                    strcmp(l->pool, pool) == 0) {
                        l->in_use = true;
                        found = l;
                        break;
                }
        pthread_mutex_unlock(&fp->io_lock);
        return found;
}

/* Lets acquire_lock go and wakes the timeout-0 acquires that may now read the connection. */
static void acquire_unlock(forkpool *fp)
{
        pthread_mutex_unlock(&fp->acquire_lock);
        pthread_mutex_lock(&fp->io_lock);
        pthread_cond_broadcast(&fp->side_cond);
        pthread_mutex_unlock(&fp->io_lock);
}

/*
 * Waits (up to 50 ms) for w's reply to be handed over. Returns true once it
 * has been, or once the control connection of generation is gone.
 */
static bool side_wait_slice(forkpool *fp, struct fp_side_wait *w, uint64_t generation)
{
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 50 * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&fp->io_lock);
        if (!w->done && fp->fd_generation == generation)
                (void)pthread_cond_timedwait(&fp->side_cond, &fp->io_lock, &until);
        bool over = w->done || fp->fd_generation != generation;
        pthread_mutex_unlock(&fp->io_lock);
        return over;
}

/*
 * A timeout-0 acquire while another thread's acquire holds acquire_lock (it
 * may be waiting for a connection of another pool, for seconds): the request
 * goes out at once on the same control connection, and its reply is handed
 * over by the thread that reads the connection — the other acquire, or this
 * one when acquire_lock is free meanwhile. Never connects (without a control
 * connection: -ETIMEDOUT, nothing can be had at once). Returns as
 * forkpool_acquire(); blocks for one round trip to the supervisor.
 */
static int acquire_side(forkpool *fp, const char *pool, const char *label, forkpool_lease **ret)
{
        struct fp_side_wait w = {.lease_fd = -1};
        struct fp_control *ctl = NULL;
        uint64_t generation = 0;
        int r;

        pthread_mutex_lock(&fp->io_lock);
        handle_check_fork(fp);
        if (fp->fd >= 0) {
                ctl = control_get(fp);
                generation = fp->fd_generation;
                w.request_id = __atomic_add_fetch(&fp->next_request_id, 1, __ATOMIC_RELAXED);
                w.next = fp->side;
                fp->side = &w;
        }
        pthread_mutex_unlock(&fp->io_lock);
        if (!ctl)
                return -ETIMEDOUT;
        int fd = ctl->fd;

        r = acquire_send(fp, ctl, w.request_id, pool, 0, label, 0);
        int64_t give_up = fp_monotonic_ms() + REPLY_SLACK_MS;
        bool handed_over = false;
        while (r >= 0) {
                if (side_wait_slice(fp, &w, generation)) {
                        handed_over = true;
                        break;
                }
                if (fp_monotonic_ms() > give_up) {
                        r = -ETIMEDOUT;
                        break;
                }
                if (pthread_mutex_trylock(&fp->acquire_lock) != 0)
                        continue;
                /* Nobody else reads the connection now: this thread does. */
                do {
                        r = fp_wait_fd(fd, POLLIN, 50);
                        if (r == 0 || r == -ETIMEDOUT)
                                r = acquire_reply(fp, fd, w.request_id, pool, false, ret);
                } while ((r == -EAGAIN || r == -ETIMEDOUT) && !w.done &&
                         fp_monotonic_ms() <= give_up);
                acquire_unlock(fp);
                if (r != -EAGAIN && r != -ETIMEDOUT)
                        break; /* this thread read its own reply, or the connection died */
        }

        /* Out of the list; a reply that came meanwhile is used, or a lease in it given back. */
        pthread_mutex_lock(&fp->io_lock);
        for (struct fp_side_wait **p = &fp->side; *p; p = &(*p)->next)
                if (*p == &w) {
                        *p = w.next;
                        break;
                }
        bool done = w.done;
        pthread_mutex_unlock(&fp->io_lock);
        if (r == -EAGAIN)
                r = -ETIMEDOUT;
        if (done)
                r = own_reply(fp, fd, &w, w.lease_fd, pool, ret);
        else if (handed_over)
                r = -ECONNRESET; /* the connection was replaced before the reply came */
        control_put(ctl);
        return r == -EPIPE || r == -ENOTCONN ? -ECONNRESET : r;
}

FORKPOOL_EXPORT int forkpool_acquire_labeled(forkpool *fp, const char *pool, int timeout_ms,
                                             const char *label, forkpool_lease **ret)
{
        int r;

        if (!fp || !pool || !ret)
                return -EINVAL;
        if (strlen(pool) >= FP_NAME_MAX)
                return -ENOENT;
        set_last_error(NULL);

        forkpool_lease *sticky = sticky_take(fp, pool);
        if (sticky) {
                *ret = sticky;
                return 0;
        }

        /* Another thread's acquire may be waiting: that wait counts against ours; an
         * acquire that must not wait asks alongside it. */
        if (timeout_ms == 0) {
                r = pthread_mutex_trylock(&fp->acquire_lock);
                if (r == EBUSY)
                        return acquire_side(fp, pool, label, ret);
                if (r != 0)
                        return -r;
        } else if (timeout_ms > 0) {
                struct timespec start, deadline;
                clock_gettime(CLOCK_REALTIME, &start);
                deadline = start;
                deadline.tv_sec += timeout_ms / 1000;
                deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
                if (deadline.tv_nsec >= 1000000000L) {
                        deadline.tv_sec++;
                        deadline.tv_nsec -= 1000000000L;
                }
                r = pthread_mutex_timedlock(&fp->acquire_lock, &deadline);
                if (r != 0)
                        return r == ETIMEDOUT ? -ETIMEDOUT : -r;
                timeout_ms -= (int)elapsed_ms(&start);
                if (timeout_ms < 0)
                        timeout_ms = 0;
        } else {
                pthread_mutex_lock(&fp->acquire_lock);
        }
        uint64_t generation = 0;
        struct fp_control *ctl;
        r = control_fd(fp, false, 0, &generation, &ctl);
        if (r >= 0) {
                r = acquire_once(fp, ctl, pool, timeout_ms, label, ret);
                control_put(ctl);
        }
        if (r == -EPIPE || r == -ECONNRESET || r == -ENOTCONN) {
                /* The supervisor went away (a restart?): one fresh connection, one retry. */
                r = control_fd(fp, true, generation, &generation, &ctl);
                if (r >= 0) {
                        r = acquire_once(fp, ctl, pool, timeout_ms, label, ret);
                        control_put(ctl);
                }
                if (r == -EPIPE || r == -ENOTCONN)
                        r = -ECONNRESET;
        }
        acquire_unlock(fp);
        return r;
}

FORKPOOL_EXPORT int forkpool_acquire(forkpool *fp, const char *pool, int timeout_ms,
                                     forkpool_lease **ret)
{
        return forkpool_acquire_labeled(fp, pool, timeout_ms, NULL, ret);
}

int fp_acquire_send(forkpool *fp, const char *pool, int timeout_ms, uint32_t *ret_request_id)
{
        if (!fp || !pool || !ret_request_id)
                return -EINVAL;
        if (strlen(pool) >= FP_NAME_MAX)
                return -ENOENT;
        uint64_t generation;
        struct fp_control *ctl;
        int r = control_fd(fp, false, 0, &generation, &ctl);
        if (r < 0)
                return r;
        uint32_t id = __atomic_add_fetch(&fp->next_request_id, 1, __ATOMIC_RELAXED);
        r = acquire_send(fp, ctl, id, pool, timeout_ms, NULL, MSG_DONTWAIT);
        control_put(ctl);
        if (r == -EPIPE || r == -ENOTCONN)
                r = -ECONNRESET;
        if (r < 0)
                return r;
        /* The connection itself, to poll: the caller does not close it. */
        pthread_mutex_lock(&fp->io_lock);
        int fd = fp->fd;
        pthread_mutex_unlock(&fp->io_lock);
        if (fd < 0)
                return -ECONNRESET;
        *ret_request_id = id;
        return fd;
}

int fp_acquire_recv(forkpool *fp, uint32_t request_id, const char *pool, forkpool_lease **ret)
{
        if (!fp || !pool || !ret)
                return -EINVAL;
        if (fp->pid != fp_self_pid() || fp->fd < 0)
                return -ECHILD;
        set_last_error(NULL);
        int r = acquire_reply(fp, fp->fd, request_id, pool, false, ret);
        return r == -EPIPE || r == -ENOTCONN ? -ECONNRESET : r;
}

/* --- using and returning a lease --- */

static bool lease_is_ours(const forkpool_lease *lease)
{
        return lease && lease->pid == fp_self_pid();
}

FORKPOOL_EXPORT PGconn *forkpool_lease_pg(forkpool_lease *lease)
{
        if (!lease || !lease_is_ours(lease)) {
                errno = ECHILD;
                return NULL;
        }
        if (lease->db_kind == FP_DB_MYSQL) {
                set_last_error("forkpool_lease_pg() on a lease of a MySQL pool: use "
                               "forkpool_lease_mysql()");
                errno = EOPNOTSUPP;
                return NULL;
        }
        if (lease->pg)
                return lease->pg;
        /* This process's PGconn of that very session, if it kept one: no adoption. */
        PGconn *kept = fp_pg_cache_take(lease);
        if (kept) {
                /* Without its tracker nothing the session did would be reported. */
                if (fp_attach_pg(lease, kept) < 0)
                        lease->dirty |= FP_DIRTY_UNKNOWN;
        } else {
                int r = fp_adopt_pg(lease);
                if (r >= 0 && (lease->flags & FP_LEASE_TRACK_DIRTY)) {
                        r = fp_track_pg_session(lease);
                        if (r >= 0)
                                fp_pg_cache_learn_tracked(lease->pg, false);
                }
                if (r < 0) {
                        errno = -r;
                        return NULL;
                }
        }
        lease->own_pg = true;
        return lease->pg;
}

FORKPOOL_EXPORT struct st_mysql *forkpool_lease_mysql(forkpool_lease *lease)
{
        if (!lease || !lease_is_ours(lease)) {
                errno = ECHILD;
                return NULL;
        }
        if (lease->db_kind != FP_DB_MYSQL) {
                set_last_error("forkpool_lease_mysql() on a lease of a PostgreSQL pool: use "
                               "forkpool_lease_pg()");
                errno = EOPNOTSUPP;
                return NULL;
        }
        if (!lease->my) {
                int r = fp_adopt_mysql(lease);
                if (r < 0) {
                        errno = -r;
                        return NULL;
                }
        }
        return lease->my;
}

FORKPOOL_EXPORT int forkpool_lease_fd(const forkpool_lease *lease)
{
        if (!lease)
                return -EINVAL;
        return lease_is_ours(lease) ? lease->fd : -ECHILD;
}

FORKPOOL_EXPORT int forkpool_lease_backend_pid(const forkpool_lease *lease)
{
        if (!lease)
                return -EINVAL;
        return lease_is_ours(lease) ? lease->info.backend_pid : -ECHILD;
}

/*
 * Asks the supervisor to cancel the lease's query (MySQL: it sends KILL QUERY
 * from its own connection). No reply is awaited.
 */
static int lease_send_cancel(forkpool_lease *lease)
{
        struct fp_msg_cancel msg;
        forkpool *fp = lease->fp;
        int r = -ECONNRESET;

        if (!fp)
                return r;
        fp_msg_init(&msg.hdr, FP_OP_CANCEL, sizeof(msg), 0);
        msg.lease_id = lease->lease_id;
        __atomic_store_n(&lease->spoke_on_control, true, __ATOMIC_RELEASE);
        pthread_mutex_lock(&fp->io_lock);
        if (fp->fd >= 0 && fp->pid == fp_self_pid())
                r = fp_send_msg(fp->fd, &msg, sizeof(msg), -1, 0);
        pthread_mutex_unlock(&fp->io_lock);
        return r == -EPIPE || r == -ENOTCONN ? -ECONNRESET : r;
}

int fp_pin_report(forkpool_lease *lease, uint32_t reasons)
{
        struct fp_msg_pin msg = {0};
        forkpool *fp = lease->fp;
        int r = -ECONNRESET;

        if (!fp)
                return r;
        fp_msg_init(&msg.hdr, FP_OP_PIN, sizeof(msg), 0);
        msg.lease_id = lease->lease_id;
        msg.reasons = reasons;
        __atomic_store_n(&lease->spoke_on_control, true, __ATOMIC_RELEASE);
        pthread_mutex_lock(&fp->io_lock);
        if (fp->fd >= 0 && fp->pid == getpid())
                r = fp_send_msg(fp->fd, &msg, sizeof(msg), -1, 0);
        pthread_mutex_unlock(&fp->io_lock);
        return r;
}

FORKPOOL_EXPORT int forkpool_cancel(forkpool_lease *lease)
{
        if (!lease)
                return -EINVAL;
        if (!lease_is_ours(lease))
                return -ECHILD;
        if (lease->db_kind == FP_DB_MYSQL)
                return lease_send_cancel(lease);
        return fp_cancel_pg(lease);
}

/* Fills the release report from the adopted connection's state. */
static void describe_release(const forkpool_lease *lease, struct fp_msg_release *rel)
{
        PGconn *c = lease->pg;
        if (lease->db_kind == FP_DB_MYSQL) {
                fp_describe_release_mysql(lease, rel);
                return;
        }
        if (lease->flags & FP_LEASE_LOCAL_CLEAN_DIRTY)
                rel->flags |= FP_RELEASE_CLEAN_DIRTY;
        if (!c) {
                /* Used through the raw fd (or not at all): state unknown to us. */
                rel->txn = FP_TXN_UNKNOWN;
                rel->dirty = FP_DIRTY_UNKNOWN;
                return;
        }
        PGTransactionStatusType ts = PQtransactionStatus(c);
        rel->txn = ts == PQTRANS_IDLE      ? FP_TXN_IDLE
                   : ts == PQTRANS_INTRANS ? FP_TXN_INTRANS
                   : ts == PQTRANS_INERROR ? FP_TXN_INERROR
                   : ts == PQTRANS_ACTIVE  ? FP_TXN_ACTIVE
                                           : FP_TXN_UNKNOWN;
        /* Read what has arrived, so that whole notifications leave the socket with us. */
        (void)PQconsumeInput(c);
        bool boundary = (ts == PQTRANS_IDLE || ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR) &&
                        !PQisBusy(c) && PQpipelineStatus(c) == PQ_PIPELINE_OFF && PQflush(c) == 0;
        if (PQstatus(c) == CONNECTION_BAD)
                rel->flags |= FP_RELEASE_DISCONNECTED;
        else if (!boundary)
                rel->flags |= FP_RELEASE_NOT_AT_BOUNDARY;
        rel->dirty = lease->dirty;
        if ((lease->flags & FP_LEASE_LOCAL_STATEMENTS) && lease->statements_known) {
                rel->flags |= FP_RELEASE_STATEMENTS;
                rel->statements = lease->statements;
        }
        for (size_t i = 0; i < FP_PG_N_REPORTED; i++) {
                const char *v = PQparameterStatus(c, fp_pg_reported_params[i]);
                if (v)
                        (void)fp_params_add(rel->params, sizeof(rel->params), &rel->params_len,
                                            fp_pg_reported_params[i], v);
        }
        /* The same bytes as the hand-over (the common case): nothing changed. */
        if (rel->params_len == lease->info.params_len &&
            memcmp(rel->params, lease->info.params, rel->params_len) == 0)
                return;
        for (size_t i = 0; i < FP_PG_N_REPORTED; i++) {
                const char *v = PQparameterStatus(c, fp_pg_reported_params[i]);
                const char *was = fp_params_get(lease->info.params, lease->info.params_len,
                                                fp_pg_reported_params[i]);
                if (v && (!was || strcmp(was, v) != 0))
                        rel->dirty |= FP_DIRTY_PARAMS;
        }
}

/*
 * A process pool's release: the connection stays with this process, cleaned
 * here (an open transaction rolled back) instead of by the supervisor.
 * Returns true if the lease was kept.
 */
static bool sticky_keep(forkpool_lease *lease, uint32_t flags)
{
        PGconn *c = lease->pg;
        if (!(lease->flags & FP_LEASE_STICKY) || flags || lease->soft_invalidated)
                return false;
        if (!c && !lease->my) {
                /* Never adopted (or used raw): it stays this process's as it is. */
                lease->in_use = false;
                return true;
        }
        if (lease->db_kind == FP_DB_MYSQL) {
                if (!fp_sticky_keep_mysql(lease))
                        return false;
                lease->in_use = false;
                return true;
        }
        if (PQstatus(c) != CONNECTION_OK || PQisBusy(c) || PQpipelineStatus(c) != PQ_PIPELINE_OFF)
                return false;
        if (PQtransactionStatus(c) == PQTRANS_INTRANS ||
            PQtransactionStatus(c) == PQTRANS_INERROR) {
                PGresult *res = PQexec(c, "ROLLBACK");
                bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
                PQclear(res);
                if (!ok)
                        return false;
        }
        if (PQtransactionStatus(c) != PQTRANS_IDLE)
                return false;
        lease->in_use = false;
        return true;
}

/*
 * Whether the lease's release may go on the release channel (proto.h): held
 * briefly, not wanted at once by others, and nothing else of it went on the
 * control connection.
 */
static bool release_on_channel(const forkpool_lease *lease)
{
        return !(lease->flags & FP_LEASE_CONTENDED) &&
               !__atomic_load_n(&lease->spoke_on_control, __ATOMIC_ACQUIRE) &&
               fp_monotonic_ms() - lease->leased_ms < FP_RELEASE_CHANNEL_HOLD_MS;
}

/* Sends the release (rel) and forgets the lease. */
static void lease_send_and_free(forkpool_lease *lease, struct fp_msg_release *rel)
{
        forkpool *fp = lease->fp;
        if (fp) {
                pthread_mutex_lock(&fp->io_lock);
                if (fp->pid == fp_self_pid())
                        send_release(fp, rel, !release_on_channel(lease));
                if (lease->prev)
                        lease->prev->next = lease->next;
                else
                        fp->leases = lease->next;
                if (lease->next)
                        lease->next->prev = lease->prev;
                pthread_mutex_unlock(&fp->io_lock);
                /* A supervisor restarted: the release goes to the next one, now if it is up. */
                control_reopen_for_pending(fp);
        }
        free(lease);
}

static int lease_give_back(forkpool_lease *lease, uint32_t flags)
{
        struct fp_msg_release rel;

        if (!lease)
                return -EINVAL;
        if (!lease_is_ours(lease))
                return -ECHILD;
        if (!(flags & FP_RELEASE_DETACH) && sticky_keep(lease, flags))
                return 0;
        /* Our own PGconn, clean: kept for this session's next lease here. */
        PGconn *c = lease->pg;
        if (!flags && c && lease->own_pg &&
            fp_pg_cache_put(lease, c, fp_pg_cache_foreign_events(c, fp_pg_tracked(c))))
                return 0;

        fp_msg_init(&rel.hdr, FP_OP_RELEASE, sizeof(rel), 0);
        rel.lease_id = lease->lease_id;
        rel.flags = flags;
        describe_release(lease, &rel);
        if (lease->soft_invalidated)
                rel.flags |= FP_RELEASE_SOFT_INVALIDATE;
        if (flags & FP_RELEASE_DETACH) {
                /* The session is the caller's now: the PGconn or MYSQL (or the fd) stays open. */
                fp_untrack_pg(lease);
                fp_forget_mysql(lease);
                lease->pg = NULL;
                lease->fd = -1;
        } else if (lease->db_kind == FP_DB_MYSQL && !flags && !lease->soft_invalidated &&
                   !(rel.flags & (FP_RELEASE_NOT_AT_BOUNDARY | FP_RELEASE_DISCONNECTED))) {
                /* The same, keeping the handle for this session's next lease here. */
                fp_release_mysql_cached(lease);
        } else {
                /* First make sure no byte of ours can reach the server any more. */
                lease_abandon(lease);
        }

        lease_send_and_free(lease, &rel);
        return 0;
}

int fp_release_unused(forkpool_lease *lease)
{
        struct fp_msg_release rel;

        if (!lease_is_ours(lease))
                return -ECHILD;
        fp_msg_init(&rel.hdr, FP_OP_RELEASE, sizeof(rel), 0);
        rel.lease_id = lease->lease_id;
        rel.flags = FP_RELEASE_UNUSED;
        rel.txn = lease->txn;
        lease_abandon(lease);
        lease_send_and_free(lease, &rel);
        return 0;
}

PGconn *fp_release_keep_pg(forkpool_lease *lease)
{
        return fp_release_keep_pg_reporting(lease, -1, NULL, NULL);
}

PGconn *fp_release_keep_pg_on(forkpool_lease *lease, int placeholder)
{
        return fp_release_keep_pg_reporting(lease, placeholder, NULL, NULL);
}

PGconn *fp_release_keep_pg_reporting(forkpool_lease *lease, int placeholder, char **ret_params,
                                     uint32_t *ret_params_len)
{
        struct fp_msg_release rel;

        if (!lease_is_ours(lease) || lease->db_kind == FP_DB_MYSQL)
                return NULL;
        fp_msg_init(&rel.hdr, FP_OP_RELEASE, sizeof(rel), 0);
        rel.lease_id = lease->lease_id;
        describe_release(lease, &rel);
        if (lease->soft_invalidated)
                rel.flags |= FP_RELEASE_SOFT_INVALIDATE;
        PGconn *conn = lease->pg;
        if (conn && ret_params) {
                *ret_params = rel.params_len > 0 ? malloc(rel.params_len) : NULL;
                *ret_params_len = *ret_params ? rel.params_len : 0;
                if (*ret_params)
                        memcpy(*ret_params, rel.params, rel.params_len);
        }
        if (conn) {
                /* No byte of ours reaches the session once it is given back. */
                if (placeholder < 0 || dup3(placeholder, PQsocket(conn), O_CLOEXEC) < 0)
                        (void)fp_release_socket(PQsocket(conn));
                fp_untrack_pg(lease);
                lease->pg = NULL;
                lease->fd = -1;
        } else {
                lease_abandon(lease);
        }
        lease_send_and_free(lease, &rel);
        return conn;
}

FORKPOOL_EXPORT int forkpool_release(forkpool_lease *lease)
{
        return lease_give_back(lease, 0);
}

FORKPOOL_EXPORT int forkpool_invalidate(forkpool_lease *lease)
{
        return lease_give_back(lease, FP_RELEASE_INVALIDATE);
}

FORKPOOL_EXPORT int forkpool_soft_invalidate(forkpool_lease *lease)
{
        if (!lease)
                return -EINVAL;
        if (!lease_is_ours(lease))
                return -ECHILD;
        lease->soft_invalidated = true;
        return 0;
}

FORKPOOL_EXPORT int forkpool_detach(forkpool_lease *lease)
{
        if (!lease)
                return -EINVAL;
        if (!lease_is_ours(lease))
                return -ECHILD;
        return lease_give_back(lease, FP_RELEASE_DETACH);
}

/*
 * The C library's static description of a positive errno, or NULL:
 * strerrordesc_np() (glibc 2.32+) is thread-safe and needs no buffer, unlike
 * strerror() (which may use one per thread or be overwritten) and
 * strerror_r() (whose buffer would have to be ours, and static).
 */
static const char *errno_description(int errnum)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
        return strerrordesc_np(errnum);
#else
        (void)errnum;
        return NULL;
#endif
}

FORKPOOL_EXPORT const char *forkpool_strerror(int err)
{
        if (err > 0)
                err = -err;
        switch (err) {
        case 0:
                return "success";
        case -ETIMEDOUT:
                return "no connection became free within the timeout";
        case -ECHILD:
                return "the lease or handle belongs to another process";
        case -ENOENT:
                return "no such pool";
        case -ECONNREFUSED:
                return "no forkpoold is running on that socket";
        case -ECONNRESET:
                return "forkpoold went away during the call";
        case -EACCES:
                return "this user is not allowed to lease from forkpoold";
        case -EPERM:
                return "this user may not run forkpoold's admin commands";
        case -EPROTO:
                return "protocol mismatch: another version of forkpoold, or a session "
                       "forkpool cannot lease (see forkpool_last_error())";
        case -ESHUTDOWN:
                return "forkpoold is shutting down";
        case -EHOSTUNREACH:
                return "the database could not be reached (see forkpool_last_error())";
        case -ECONNABORTED:
                return "the pool's on_connect hook failed on a new connection (see "
                       "forkpool_last_error())";
        case -EBUSY:
                return "the pool's connection is already leased (assertion pool; see "
                       "forkpool_last_error())";
        case -EAGAIN:
                return "forkpoold kept updating the pool's state; try again";
        case -EOPNOTSUPP:
                return "not supported for this connection";
        case -EINVAL:
                return "invalid argument";
        case -ENOMEM:
                return "out of memory";
        case -ENAMETOOLONG:
                return "socket path too long";
        case -EBADMSG:
                return "malformed message";
        default:
                break;
        }
        const char *text = err > INT_MIN ? errno_description(-err) : NULL;
        return text ? text : "unknown error";
}
