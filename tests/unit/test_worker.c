/* SPDX-License-Identifier: MIT */
/*
 * test_worker.c — libforkpool's own logic that needs no supervisor, linked
 * from its sources (the shared library exports only forkpool_*): a released
 * socket becomes the process's cached unconnected socket, and that cache is
 * never trusted once the application has put something else at its number
 * (a daemon that closes every descriptor, then opens files); and the
 * acquire's side of the protocol against a stand-in supervisor (a thread on
 * a real SEQPACKET socket): an error reply is the acquire's error and text,
 * a lease for a request nobody waits for is given back and its descriptor
 * closed, a malformed reply is -EPROTO, a supervisor that hangs up is
 * -ECONNRESET after one reconnect; a short lease's release goes on the
 * release channel the supervisor took (and on the control connection if it
 * took none), a lease held longer or that sent a pin there releases there.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pthread.h>
#include <sys/un.h>

#include <cmocka.h>

#include "internal.h"
#include "proto.h"
#include "sockio.h"

/* Whether fd is an open socket with no peer, and close-on-exec. */
static bool unconnected_socket(int fd)
{
        struct stat st;
        struct sockaddr_storage peer;
        socklen_t len = sizeof(peer);
        return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) &&
               getpeername(fd, (struct sockaddr *)&peer, &len) < 0 && errno == ENOTCONN &&
               (fcntl(fd, F_GETFD) & FD_CLOEXEC);
}

/* The lowest descriptor number that is open now and was not in before[0..n). */
static int new_fd(const bool *before, int n)
{
        for (int fd = 0; fd < n; fd++)
                if (!before[fd] && fcntl(fd, F_GETFD) >= 0)
                        return fd;
        return -1;
}

static void test_release_socket(void **state)
{
        enum {
                N = 256
        };
        bool open_before[N];
        int sv[2];
        char byte;
        (void)state;

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        for (int fd = 0; fd < N; fd++)
                open_before[fd] = fcntl(fd, F_GETFD) >= 0;

        /* The leased socket's number now holds an unconnected socket; the session's end sees EOF.
         */
        assert_int_equal(fp_release_socket(sv[0]), 0);
        assert_true(unconnected_socket(sv[0]));
        assert_int_equal(recv(sv[1], &byte, 1, MSG_DONTWAIT), 0);
        close(sv[1]);
        int cached = new_fd(open_before, N);
        assert_true(cached >= 0);
        assert_true(unconnected_socket(cached));

        /* The application closes the cached socket and opens a file at its number. */
        int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
        assert_true(null >= 0);
        assert_int_equal(dup2(null, cached), cached);
        close(null);

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        assert_int_equal(fp_release_socket(sv[0]), 0);
        /* The file was neither put under the released number nor closed. */
        assert_true(unconnected_socket(sv[0]));
        struct stat st;
        assert_int_equal(fstat(cached, &st), 0);
        assert_true(S_ISCHR(st.st_mode));
        assert_int_equal(recv(sv[1], &byte, 1, MSG_DONTWAIT), 0);
        close(sv[0]);
        close(sv[1]);
        close(cached);
}

/* What the stand-in supervisor does with each acquire. */
enum script {
        SCRIPT_ERROR,     /* answers FP_OP_ERROR -ENOENT "no pool named 'x'" */
        SCRIPT_STRAY,     /* a lease for another request first, then the lease asked for */
        SCRIPT_MALFORMED, /* an answer with a bad magic */
        SCRIPT_HANG_UP,   /* closes the connection (every connection) */
        SCRIPT_LEASE,     /* the lease asked for (id 8 + the acquires before; 11 contended) */
};

struct fake {
        char dir[64];
        char path[96];
        int listen_fd;
        enum script script;
        bool take_channel; /* takes the release channel a hello offers */
        pthread_t thread;
        /* What it saw, for the test (read after the thread ended): */
        int accepted;
        uint64_t released[4];
        int n_released;
        int stray_peer; /* its end of the stray lease's socketpair */
        int channel;    /* the release channel it took, -1: none */
        int n_acquires;
        int n_pins;
        int released_at_pin; /* n_released when the last pin came */
};

/* The lease ids released on the stand-in's channel (read after it ended), at most max. */
static int channel_releases(struct fake *f, uint64_t *ids, int max)
{
        union {
                struct fp_msg_hdr hdr;
                struct fp_msg_release release;
                char bytes[FP_MSG_MAX];
        } in;
        int n = 0;
        if (f->channel < 0)
                return 0;
        while (fp_recv_msg(f->channel, in.bytes, sizeof(in), NULL, MSG_DONTWAIT) > 0) {
                assert_int_equal(in.hdr.op, FP_OP_RELEASE);
                if (n < max)
                        ids[n] = in.release.lease_id;
                n++;
        }
        close(f->channel);
        f->channel = -1;
        return n;
}

static void fake_lease(int cfd, uint32_t request_id, uint64_t lease_id, int fd, uint32_t flags)
{
        struct fp_msg_lease lease;
        memset(&lease, 0, sizeof(lease));
        fp_msg_init(&lease.hdr, FP_OP_LEASE, sizeof(lease), request_id);
        lease.lease_id = lease_id;
        lease.db_kind = FP_DB_POSTGRES;
        lease.txn = FP_TXN_IDLE;
        lease.flags = flags;
        snprintf(lease.pg.user, sizeof(lease.pg.user), "u");
        snprintf(lease.pg.dbname, sizeof(lease.pg.dbname), "d");
        assert_int_equal(fp_send_msg(cfd, &lease, sizeof(lease), fd, 0), 0);
}

/* Serves connections until the listener is shut down. */
static void *fake_main(void *arg)
{
        struct fake *f = arg;
        union {
                struct fp_msg_hdr hdr;
                struct fp_msg_release release;
                char bytes[FP_MSG_MAX];
        } in;
        int cfd;
        while ((cfd = accept4(f->listen_fd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
                f->accepted++;
                ssize_t n;
                int rfd = -1;
                while ((n = fp_recv_msg(cfd, in.bytes, sizeof(in), &rfd, 0)) > 0) {
                        if (in.hdr.op == FP_OP_HELLO) {
                                struct fp_msg_hello_ok ok;
                                memset(&ok, 0, sizeof(ok));
                                fp_msg_init(&ok.hdr, FP_OP_HELLO_OK, sizeof(ok), in.hdr.request_id);
                                ok.supervisor_pid = getpid();
                                if (rfd >= 0 && f->take_channel && f->channel < 0) {
                                        f->channel = rfd;
                                        ok.flags = FP_HELLO_RELEASE_CHANNEL;
                                } else if (rfd >= 0) {
                                        close(rfd);
                                }
                                rfd = -1;
                                assert_int_equal(fp_send_msg(cfd, &ok, sizeof(ok), -1, 0), 0);
                                continue;
                        }
                        assert_int_equal(rfd, -1); /* only a hello carries a descriptor */
                        if (in.hdr.op == FP_OP_PIN) {
                                f->released_at_pin = f->n_released;
                                f->n_pins++;
                        } else if (in.hdr.op == FP_OP_ACQUIRE && f->script == SCRIPT_LEASE) {
                                int sv[2];
                                assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
                                /* The fourth as if others waited for the pool meanwhile. */
                                fake_lease(cfd, in.hdr.request_id, 8 + (uint64_t)f->n_acquires,
                                           sv[0], f->n_acquires == 3 ? FP_LEASE_CONTENDED : 0);
                                f->n_acquires++;
                                close(sv[0]);
                                close(sv[1]);
                        } else if (in.hdr.op == FP_OP_RELEASE) {
                                if (f->n_released < 4)
                                        f->released[f->n_released++] = in.release.lease_id;
                        } else if (in.hdr.op == FP_OP_ACQUIRE && f->script == SCRIPT_ERROR) {
                                struct fp_msg_error e;
                                memset(&e, 0, sizeof(e));
                                fp_msg_init(&e.hdr, FP_OP_ERROR, sizeof(e), in.hdr.request_id);
                                e.error = -ENOENT;
                                snprintf(e.text, sizeof(e.text), "no pool named 'x'");
                                assert_int_equal(fp_send_msg(cfd, &e, sizeof(e), -1, 0), 0);
                        } else if (in.hdr.op == FP_OP_ACQUIRE && f->script == SCRIPT_STRAY) {
                                int sv[2], mine[2];
                                assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
                                assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, mine), 0);
                                fake_lease(cfd, in.hdr.request_id + 1000, 7, sv[0], 0);
                                fake_lease(cfd, in.hdr.request_id, 8, mine[0], 0);
                                close(sv[0]);
                                close(mine[0]);
                                close(mine[1]);
                                f->stray_peer = sv[1];
                        } else if (in.hdr.op == FP_OP_ACQUIRE && f->script == SCRIPT_MALFORMED) {
                                struct fp_msg_error e;
                                memset(&e, 0, sizeof(e));
                                fp_msg_init(&e.hdr, FP_OP_ERROR, sizeof(e), in.hdr.request_id);
                                e.hdr.magic ^= 1;
                                assert_int_equal(fp_send_msg(cfd, &e, sizeof(e), -1, 0), 0);
                        } else if (in.hdr.op == FP_OP_ACQUIRE) {
                                break; /* SCRIPT_HANG_UP */
                        }
                }
                close(cfd);
        }
        return NULL;
}

static void fake_start(struct fake *f, enum script script)
{
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        memset(f, 0, sizeof(*f));
        f->script = script;
        f->stray_peer = -1;
        f->channel = -1;
        snprintf(f->dir, sizeof(f->dir), "/tmp/fp-test-worker.XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->path, sizeof(f->path), "%s/forkpool.sock", f->dir);
        snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", f->path);
        f->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        assert_true(f->listen_fd >= 0);
        assert_int_equal(bind(f->listen_fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
        assert_int_equal(listen(f->listen_fd, 8), 0);
        assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

/* Ends the stand-in once every connection of fp is closed (forkpool_close() first). */
static void fake_stop(struct fake *f)
{
        shutdown(f->listen_fd, SHUT_RDWR);
        assert_int_equal(pthread_join(f->thread, NULL), 0);
        close(f->listen_fd);
        unlink(f->path);
        rmdir(f->dir);
}

static void test_acquire_error_reply(void **state)
{
        struct fake f;
        forkpool *fp;
        forkpool_lease *lease = NULL;
        (void)state;

        fake_start(&f, SCRIPT_ERROR);
        assert_int_equal(forkpool_open(f.path, &fp), 0);
        assert_int_equal(forkpool_acquire(fp, "x", 1000, &lease), -ENOENT);
        assert_null(lease);
        assert_non_null(strstr(forkpool_last_error(), "no pool named 'x'"));
        forkpool_close(fp);
        fake_stop(&f);
}

static void test_acquire_stray_lease_given_back(void **state)
{
        struct fake f;
        forkpool *fp;
        forkpool_lease *lease = NULL;
        char byte;
        (void)state;

        fake_start(&f, SCRIPT_STRAY);
        assert_int_equal(forkpool_open(f.path, &fp), 0);
        assert_int_equal(forkpool_acquire(fp, "main", 1000, &lease), 0);
        assert_non_null(lease);
        assert_int_equal(forkpool_release(lease), 0);
        forkpool_close(fp);
        fake_stop(&f);
        /* The stray lease went back unused, then the one asked for; its descriptor is closed. */
        assert_int_equal(f.n_released, 2);
        assert_true(f.released[0] == 7 && f.released[1] == 8);
        assert_true(f.stray_peer >= 0);
        assert_int_equal(recv(f.stray_peer, &byte, 1, MSG_DONTWAIT), 0);
        close(f.stray_peer);
}

static void test_acquire_malformed_reply(void **state)
{
        struct fake f;
        forkpool *fp;
        forkpool_lease *lease = NULL;
        (void)state;

        fake_start(&f, SCRIPT_MALFORMED);
        assert_int_equal(forkpool_open(f.path, &fp), 0);
        assert_int_equal(forkpool_acquire(fp, "main", 1000, &lease), -EPROTO);
        assert_null(lease);
        forkpool_close(fp);
        fake_stop(&f);
}

static void test_acquire_supervisor_hangs_up(void **state)
{
        struct fake f;
        forkpool *fp;
        forkpool_lease *lease = NULL;
        (void)state;

        fake_start(&f, SCRIPT_HANG_UP);
        assert_int_equal(forkpool_open(f.path, &fp), 0);
        assert_int_equal(forkpool_acquire(fp, "main", 1000, &lease), -ECONNRESET);
        assert_null(lease);
        forkpool_close(fp);
        fake_stop(&f);
        /* The first connection, then the one retry on a fresh one. */
        assert_int_equal(f.accepted, 2);
}

/* Without a channel taken, releases go on the control connection, as they always did. */
static void test_release_without_channel(void **state)
{
        struct fake f;
        forkpool *fp;
        forkpool_lease *lease = NULL;
        uint64_t ids[4];
        (void)state;

        fake_start(&f, SCRIPT_LEASE);
        assert_int_equal(forkpool_open(f.path, &fp), 0);
        assert_int_equal(forkpool_acquire(fp, "main", 1000, &lease), 0);
        assert_int_equal(forkpool_release(lease), 0);
        forkpool_close(fp);
        fake_stop(&f);
        assert_int_equal(f.n_released, 1);
        assert_true(f.released[0] == 8);
        assert_int_equal(channel_releases(&f, ids, 4), 0);
}

/*
 * A short lease's release goes on the channel; one held for longer than
 * FP_RELEASE_CHANNEL_HOLD_MS, one that sent a pin on the control connection
 * (after the pin, there) and one handed out while others waited go on the
 * control connection.
 */
static void test_release_channel(void **state)
{
        struct fake f;
        forkpool *fp;
        forkpool_lease *lease = NULL;
        uint64_t ids[4];
        (void)state;

        fake_start(&f, SCRIPT_LEASE);
        f.take_channel = true;
        assert_int_equal(forkpool_open(f.path, &fp), 0);
        assert_int_equal(forkpool_acquire(fp, "main", 1000, &lease), 0);
        assert_int_equal(forkpool_release(lease), 0);

        assert_int_equal(forkpool_acquire(fp, "main", 1000, &lease), 0);
        usleep(4 * FP_RELEASE_CHANNEL_HOLD_MS * 1000);
        assert_int_equal(forkpool_release(lease), 0);

        assert_int_equal(forkpool_acquire(fp, "main", 1000, &lease), 0);
        assert_int_equal(fp_pin_report(lease, FP_PIN_SET), 0);
        assert_int_equal(forkpool_release(lease), 0);

        /* Handed out while others waited: wanted at once, on the connection. */
        assert_int_equal(forkpool_acquire(fp, "main", 1000, &lease), 0);
        assert_int_equal(forkpool_release(lease), 0);
        forkpool_close(fp);
        fake_stop(&f);

        assert_int_equal(channel_releases(&f, ids, 4), 1);
        assert_true(ids[0] == 8);
        assert_int_equal(f.n_released, 3);
        assert_true(f.released[0] == 9 && f.released[1] == 10 && f.released[2] == 11);
        assert_int_equal(f.n_pins, 1);
        assert_int_equal(f.released_at_pin, 1); /* lease 10's pin came before its release */
}

/*
 * After a release on the control connection, the next one goes there too
 * until a lease arrives, short as its lease was: forkpoold takes releases in
 * the order given (LIFO and FIFO pools depend on it).
 */
static void test_release_order(void **state)
{
        struct fake f;
        forkpool *fp;
        forkpool_lease *held, *brief;
        uint64_t ids[4];
        (void)state;

        fake_start(&f, SCRIPT_LEASE);
        f.take_channel = true;
        assert_int_equal(forkpool_open(f.path, &fp), 0);
        assert_int_equal(forkpool_acquire(fp, "main", 1000, &held), 0);
        usleep(4 * FP_RELEASE_CHANNEL_HOLD_MS * 1000);
        assert_int_equal(forkpool_acquire(fp, "main", 1000, &brief), 0);
        assert_int_equal(forkpool_release(held), 0);
        assert_int_equal(forkpool_release(brief), 0);
        /* A lease arrived since: the channel again. */
        assert_int_equal(forkpool_acquire(fp, "main", 1000, &brief), 0);
        assert_int_equal(forkpool_release(brief), 0);
        forkpool_close(fp);
        fake_stop(&f);

        assert_int_equal(f.n_released, 2);
        assert_true(f.released[0] == 8 && f.released[1] == 9);
        assert_int_equal(channel_releases(&f, ids, 4), 1);
        assert_true(ids[0] == 10);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_release_socket),
                cmocka_unit_test(test_acquire_error_reply),
                cmocka_unit_test(test_acquire_stray_lease_given_back),
                cmocka_unit_test(test_acquire_malformed_reply),
                cmocka_unit_test(test_acquire_supervisor_hangs_up),
                cmocka_unit_test(test_release_without_channel),
                cmocka_unit_test(test_release_channel),
                cmocka_unit_test(test_release_order),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
