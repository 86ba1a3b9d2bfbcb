/* SPDX-License-Identifier: MIT */
/*
 * it_harden.c — what one peer can make forkpoold hold, and how it recovers:
 * a reload takes admin rights away; connections are capped per uid and per
 * pid with a reason; a silent connection is closed; descriptor exhaustion
 * does not spin; queued acquires are capped per connection; many connections
 * ready at once are all answered, in order per connection; tens of
 * thousands of waiters neither crash forkpoold nor slow it down, and time out
 * in deadline order; a long-lived handle's forkpool_pool_state() follows a
 * restarted supervisor; acquires read late (forkpoold stopped) get their
 * whole timeout, and a reset that times out makes room for a waiter; a
 * release channel is taken only if it is one,
 * carries only releases (anything else closes it, the connection stays), and
 * what it carried counts even when its worker exits right after.
 */
#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itest.h"
#include "proto.h"
#include "sockio.h"

static void write_text(const char *path, const char *text)
{
        FILE *f = fopen(path, "w");
        CHECK(f);
        fputs(text, f);
        fclose(f);
}

/* Runs fn as uid `nobody` (gid 0 kept, so the 0660 socket is reachable) in a child. */
static int as_nobody(const struct itest_sup *s, int (*fn)(const struct itest_sup *))
{
        pid_t pid = itest_fork_as("nobody");
        if (pid == 0)
                _exit(fn(s));
        return itest_child_exit(pid, 30000);
}

static int raw_connect(const char *path)
{
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        CHECK(strlen(path) < sizeof(addr.sun_path));
        memcpy(addr.sun_path, path, strlen(path) + 1);
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        CHECK(fd >= 0);
        CHECK(connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0);
        return fd;
}

union reply {
        struct fp_msg_hdr hdr;
        struct fp_msg_error error;
        char bytes[FP_MSG_MAX];
};

/* Receives one message within timeout_ms; returns its length, 0 at EOF, or a negative errno. */
static ssize_t recv_within(int fd, union reply *r, int timeout_ms)
{
        int w = fp_wait_fd(fd, POLLIN, timeout_ms);
        if (w < 0)
                return w;
        int pass_fd = -1;
        ssize_t n = fp_recv_msg(fd, r->bytes, sizeof(*r), &pass_fd, 0);
        if (pass_fd >= 0)
                close(pass_fd);
        return n;
}

/* A raw control connection that has said hello (and been answered). */
static int raw_hello(const char *path)
{
        int fd = raw_connect(path);
        struct fp_msg_hello hello;
        union reply r;
        fp_msg_init(&hello.hdr, FP_OP_HELLO, sizeof(hello), 0);
        hello.pid = getpid();
        CHECK(fp_send_msg(fd, &hello, sizeof(hello), -1, 0) == 0);
        CHECK(recv_within(fd, &r, 10000) > 0 && r.hdr.op == FP_OP_HELLO_OK);
        return fd;
}

static void send_acquire(int fd, uint32_t id, int timeout_ms)
{
        struct fp_msg_acquire acq;
        fp_msg_init(&acq.hdr, FP_OP_ACQUIRE, sizeof(acq), id);
        acq.timeout_ms = timeout_ms;
        snprintf(acq.pool, sizeof(acq.pool), "main");
        CHECK(fp_send_msg(fd, &acq, sizeof(acq), -1, 0) == 0);
}

/*
 * A raw control connection whose hello offered channel_fd as its release
 * channel (closed here). Returns the connection; *ret_taken says whether the
 * answer took the channel.
 */
static int raw_hello_channel(const char *path, int channel_fd, bool *ret_taken)
{
        int fd = raw_connect(path);
        struct fp_msg_hello hello;
        union reply r;
        fp_msg_init(&hello.hdr, FP_OP_HELLO, sizeof(hello), 0);
        hello.pid = getpid();
        hello.flags = FP_HELLO_RELEASE_CHANNEL;
        CHECK(fp_send_msg(fd, &hello, sizeof(hello), channel_fd, 0) == 0);
        close(channel_fd);
        CHECK(recv_within(fd, &r, 10000) == sizeof(struct fp_msg_hello_ok) &&
              r.hdr.op == FP_OP_HELLO_OK);
        *ret_taken = ((struct fp_msg_hello_ok *)r.bytes)->flags & FP_HELLO_RELEASE_CHANNEL;
        return fd;
}

/* Acquires on a raw connection; returns the lease id (its descriptor is closed). */
static uint64_t raw_lease(int fd, uint32_t id)
{
        union reply r;
        send_acquire(fd, id, 10000);
        CHECK(recv_within(fd, &r, 10000) > 0 && r.hdr.op == FP_OP_LEASE && r.hdr.request_id == id);
        return ((struct fp_msg_lease *)r.bytes)->lease_id;
}

static void send_release(int fd, uint64_t lease_id)
{
        struct fp_msg_release rel;
        memset(&rel, 0, sizeof(rel));
        fp_msg_init(&rel.hdr, FP_OP_RELEASE, sizeof(rel), 0);
        rel.lease_id = lease_id;
        rel.txn = FP_TXN_IDLE;
        CHECK(fp_send_msg(fd, &rel, sizeof(rel), -1, 0) == 0);
}

static int count_in_log(const struct itest_sup *s, const char *needle)
{
        char out[64];
        itest_sh(out, sizeof(out), "grep -c -- '%s' %s", needle, s->log);
        return atoi(out);
}

/* `forkpoolctl dispose main` as uid 65534 with the gid and groups given (setpriv's options). */
static int ctl_dispose_as(const struct itest_sup *s, const char *groups)
{
        char out[4096];
        return itest_sh(out, sizeof(out),
                        "setpriv --reuid=65534 %s %s --socket %s dispose main 2>&1", groups,
                        FP_FORKPOOLCTL_PATH, s->socket);
}

static int ctl_dispose(const struct itest_sup *s)
{
        return ctl_dispose_as(s, "--regid=0 --clear-groups");
}

/* Item 3: admin_users is re-read on reload, so a removed admin loses its rights. */
static void test_reload_applies_admin_users(void)
{
        struct itest_sup s;
        char cfg[4096];

        itest_sup_start(&s, "it_h_admin", NULL,
                        "allow_users = root, nobody\nadmin_users = nobody\n");
        CHECK_MSG(ctl_dispose(&s) == 0, "nobody, an admin, could not dispose");

        itest_sh(cfg, sizeof(cfg), "grep -v '^admin_users' %s", s.config);
        write_text(s.config, cfg);
        CHECK(kill(s.pid, SIGHUP) == 0);
        int64_t end = itest_now_ms() + 10000;
        int status;
        while ((status = ctl_dispose(&s)) == 0 && itest_now_ms() < end)
                usleep(50000);
        CHECK_MSG(status == 1, "nobody still runs admin commands after the reload");
        CHECK(count_in_log(&s, "may not\\|not in admin_users") >= 1);
        CHECK(itest_sup_stop(&s) == 0);
}

/*
 * admin_groups: a peer runs admin commands when one of its groups is listed,
 * its primary or a supplementary one; not otherwise, even when it may lease.
 */
static void test_admin_groups(void)
{
        struct itest_sup s;

        itest_sup_start(&s, "it_h_admin_groups", NULL,
                        "allow_users = root, nobody\nadmin_groups = 65534\n");
        /* gid 0 (for the 0660 socket), no other group: not an admin. */
        CHECK_MSG(ctl_dispose(&s) == 1, "a peer outside admin_groups ran an admin command");
        /* The listed group as a supplementary group. */
        CHECK_MSG(ctl_dispose_as(&s, "--regid=0 --groups=65534") == 0,
                  "a peer with admin group 65534 among its groups could not dispose");
        /* Its primary group listed (the socket is reached through group 0 among its groups). */
        CHECK_MSG(ctl_dispose_as(&s, "--regid=65534 --groups=0") == 0,
                  "a peer whose primary group is admin group 65534 could not dispose");
        CHECK(count_in_log(&s, "may not\\|not in admin_users") >= 1);
        CHECK(itest_sup_stop(&s) == 0);
}

static int go_pipe[2], done_pipe[2];

/* As nobody: leases, says so, waits for the reload, then tries again on the same handle. */
static int lease_before_and_after(const struct itest_sup *s)
{
        forkpool *fp;
        forkpool_lease *lease;
        char c = 'x';

        if (forkpool_open(s->socket, &fp) < 0 || forkpool_acquire(fp, "main", 5000, &lease) < 0 ||
            forkpool_release(lease) < 0)
                c = 'F';
        (void)!write(done_pipe[1], &c, 1);
        if (c == 'F' || read(go_pipe[0], &c, 1) != 1)
                return 2;
        int r = forkpool_acquire(fp, "main", 5000, &lease);
        forkpool_close(fp);
        return r == -EACCES ? 0 : 1;
}

static int run_lease_before_and_after(const struct itest_sup *s)
{
        return as_nobody(s, lease_before_and_after);
}

/*
 * In the same spirit: a uid removed from allow_users by a reload can no
 * longer lease over the connection it already had.
 */
static void test_reload_applies_allow_users(void)
{
        struct itest_sup s;
        char cfg[4096], c;

        itest_sup_start(&s, "it_h_allow", NULL, "allow_users = root, nobody\n");
        CHECK(pipe(go_pipe) == 0 && pipe(done_pipe) == 0);
        pid_t kid = fork();
        if (kid == 0)
                _exit(run_lease_before_and_after(&s));
        CHECK(read(done_pipe[0], &c, 1) == 1 && c == 'x');
        itest_sh(cfg, sizeof(cfg), "sed 's/^allow_users = root, nobody$/allow_users = root/' %s",
                 s.config);
        write_text(s.config, cfg);
        int before = count_in_log(&s, "configuration reloaded");
        CHECK(kill(s.pid, SIGHUP) == 0);
        int64_t end = itest_now_ms() + 10000;
        while (count_in_log(&s, "configuration reloaded") == before && itest_now_ms() < end)
                usleep(20000);
        CHECK(count_in_log(&s, "configuration reloaded") > before);
        CHECK(write(go_pipe[1], "g", 1) == 1);
        int status = itest_wait_child(kid, 30000);
        CHECK_MSG(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "nobody still leased after its removal from allow_users (%d)", status);
        CHECK(itest_sup_stop(&s) == 0);
}

/* Opens handles until one fails; returns 100 + that many opened, or 200 + -error. */
static int open_many(int n, int *ret_error)
{
        forkpool *fp[64];
        int i, r = 0;
        for (i = 0; i < n && i < 64; i++) {
                r = forkpool_open(getenv("IT_HARDEN_SOCKET"), &fp[i]);
                if (r < 0)
                        break;
        }
        *ret_error = r;
        int opened = i;
        /* The error text names the limit. */
        if (r < 0 && !strstr(forkpool_last_error(), "max_connections_per_"))
                opened = 99;
        for (int j = 0; j < i; j++)
                forkpool_close(fp[j]);
        return opened;
}

static int open_as_pid_limited(const struct itest_sup *s)
{
        int error;
        (void)s;
        int opened = open_many(10, &error);
        return opened == 2 && error == -EMFILE ? 0 : 1;
}

/*
 * Two children of one uid hold two handles each; this process opens a fifth,
 * and the sixth is refused by max_connections_per_uid = 5.
 */
static int open_as_uid_limited(const struct itest_sup *s)
{
        const char *path = getenv("IT_HARDEN_SOCKET");
        int hold[2], ready[2];
        pid_t kids[2];
        (void)s;

        CHECK(pipe(hold) == 0 && pipe(ready) == 0);
        for (int k = 0; k < 2; k++) {
                kids[k] = fork();
                if (kids[k] == 0) {
                        forkpool *a, *b;
                        char c = 'x';
                        close(hold[1]);
                        if (forkpool_open(path, &a) < 0 || forkpool_open(path, &b) < 0)
                                c = 'F';
                        (void)!write(ready[1], &c, 1);
                        (void)!read(hold[0], &c, 1); /* until the parent is done */
                        _exit(0);
                }
        }
        close(hold[0]);
        bool ok = true;
        for (int k = 0; k < 2; k++) {
                char c = 0;
                ok = ok && read(ready[0], &c, 1) == 1 && c == 'x';
        }
        forkpool *fifth = NULL, *sixth = NULL;
        int r5 = ok ? forkpool_open(path, &fifth) : -1;
        int r6 = ok ? forkpool_open(path, &sixth) : -1;
        bool named = r6 < 0 && strstr(forkpool_last_error(), "max_connections_per_uid");
        forkpool_close(fifth);
        forkpool_close(sixth);
        close(hold[1]);
        for (int k = 0; k < 2; k++)
                itest_wait_child(kids[k], 10000);
        if (!ok)
                return 2;
        return r5 == 0 && r6 == -EUSERS && named ? 0 : 1;
}

/* Item 4: per-pid and per-uid connection limits, with the reason and one log line each. */
static void test_connection_limits(void)
{
        struct itest_sup s;
        itest_sup_start(&s, "it_h_limits", NULL,
                        "allow_users = root, nobody\nmax_connections_per_pid = 2\n"
                        "max_connections_per_uid = 5\n");
        setenv("IT_HARDEN_SOCKET", s.socket, 1);
        CHECK_MSG(as_nobody(&s, open_as_pid_limited) == 0, "the per-pid limit did not hold");
        CHECK(count_in_log(&s, "max_connections_per_pid = 2") >= 1);
        CHECK_MSG(as_nobody(&s, open_as_uid_limited) == 0, "the per-uid limit did not hold");
        CHECK(count_in_log(&s, "max_connections_per_uid = 5") >= 1);
        /* Another uid is not affected; the refused ones are gone. */
        forkpool *fp;
        forkpool_lease *lease;
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        CHECK_OK(forkpool_release(lease));
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

/* Item 4: a connection that says nothing is told why and closed; a talking one stays. */
static void test_hello_timeout(void)
{
        struct itest_sup s;
        union reply r;

        itest_sup_start(&s, "it_h_hello", NULL, "hello_timeout = 0.5\n");
        int talker = raw_hello(s.socket);
        int silent = raw_connect(s.socket);
        int64_t t0 = itest_now_ms();
        ssize_t n = recv_within(silent, &r, 10000);
        CHECK_MSG(n > 0 && r.hdr.op == FP_OP_ERROR && r.error.error == -ETIMEDOUT,
                  "a silent connection was not told (%zd)", n);
        CHECK(strstr(r.error.text, "hello_timeout"));
        n = recv_within(silent, &r, 10000);
        CHECK_MSG(n == 0 || n == -ECONNRESET, "a silent connection was not closed (%zd)", n);
        CHECK(itest_now_ms() - t0 < 5000);
        close(silent);

        /* The one that said hello is still served, well after the timeout. */
        send_acquire(talker, 5, 5000);
        n = recv_within(talker, &r, 10000);
        CHECK_MSG(n > 0 && r.hdr.op == FP_OP_LEASE, "the talking connection was dropped (%zd)", n);
        close(talker);
        CHECK(count_in_log(&s, "no message within") >= 1);
        CHECK(itest_sup_stop(&s) == 0);
}

/* utime + stime of a process, in clock ticks. */
static long cpu_ticks(pid_t pid)
{
        char path[64], buf[1024];
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        FILE *f = fopen(path, "r");
        CHECK(f);
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *p = strrchr(buf, ')');
        CHECK(p);
        long utime = 0, stime = 0;
        /* Fields after the command: state (3) … utime (14), stime (15). */
        CHECK(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &utime,
                     &stime) == 2);
        return utime + stime;
}

/*
 * Item 4 (seen): with 40 descriptors and 60 connections that never say hello,
 * forkpoold neither spins nor floods its log, and serves again once they go.
 */
static void test_fd_exhaustion_no_spin(void)
{
        struct itest_sup s;
        enum {
                N = 60
        };
        int fds[N];

        itest_sup_start(&s, "it_h_emfile", NULL, "hello_timeout = 30\n");
        struct rlimit lim = {.rlim_cur = 40, .rlim_max = 40};
        CHECK(prlimit(s.pid, RLIMIT_NOFILE, &lim, NULL) == 0);
        int lines_before = count_in_log(&s, "accept");
        for (int i = 0; i < N; i++)
                fds[i] = raw_connect(s.socket);
        /* Wait until it has (nearly) all its 40 descriptors open. */
        char out[64];
        int64_t end = itest_now_ms() + 10000;
        int open_fds = 0;
        while (itest_now_ms() < end) {
                itest_sh(out, sizeof(out), "ls /proc/%d/fd | wc -l", (int)s.pid);
                if ((open_fds = atoi(out)) >= 38)
                        break;
                usleep(20000);
        }
        CHECK_MSG(open_fds >= 38, "forkpoold has only %d descriptors open", open_fds);
        long t0 = cpu_ticks(s.pid);
        int64_t m0 = itest_now_ms();
        sleep(2);
        long used = cpu_ticks(s.pid) - t0;
        long hz = sysconf(_SC_CLK_TCK);
        int64_t wall = itest_now_ms() - m0;
        CHECK_MSG(used * 1000 / hz < wall / 4, "forkpoold used %ld ms of CPU in %lld ms",
                  used * 1000 / hz, (long long)wall);
        int lines = count_in_log(&s, "accept") - lines_before;
        CHECK_MSG(lines < 100, "%d log lines about accept", lines);
        CHECK(count_in_log(&s, "pausing accepts") >= 1);

        for (int i = 0; i < N; i++)
                close(fds[i]);
        /* Serving again: descriptors come back as the silent peers go. */
        forkpool *fp = NULL;
        forkpool_lease *lease;
        end = itest_now_ms() + 20000;
        int r;
        while ((r = forkpool_open(s.socket, &fp)) < 0 && itest_now_ms() < end)
                usleep(50000);
        CHECK_OK(r);
        CHECK_OK(forkpool_acquire(fp, "main", 10000, &lease));
        CHECK(forkpool_lease_pg(lease));
        CHECK_OK(forkpool_release(lease));
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

/* Item 5: one connection cannot queue more than max_waiting_per_connection acquires. */
static void test_waiting_cap(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;
        union reply r;

        itest_sup_start(&s, "it_h_cap", "pool_size = 1\nmax_overflow = 0\n",
                        "max_waiting_per_connection = 4\n");
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        int fd = raw_hello(s.socket);
        for (uint32_t i = 0; i < 5; i++)
                send_acquire(fd, 10 + i, 20000);
        ssize_t n = recv_within(fd, &r, 10000);
        CHECK_MSG(n > 0 && r.hdr.op == FP_OP_ERROR && r.hdr.request_id == 14,
                  "the fifth acquire was not refused at once");
        CHECK(r.error.error == -EAGAIN && strstr(r.error.text, "max_waiting_per_connection"));
        CHECK(itest_pool(&s).waiting == 4);
        /* Answered ones no longer count: the lease goes to the first, a new one queues. */
        CHECK_OK(forkpool_release(lease));
        n = recv_within(fd, &r, 10000);
        CHECK(n > 0 && r.hdr.op == FP_OP_LEASE && r.hdr.request_id == 10);
        send_acquire(fd, 20, 20000);
        int64_t end = itest_now_ms() + 5000;
        while (itest_pool(&s).waiting != 4 && itest_now_ms() < end)
                usleep(10000);
        CHECK(itest_pool(&s).waiting == 4);
        close(fd);
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

/* Waits until process pid is stopped by a signal (state T in /proc). */
static bool wait_stopped(pid_t pid, int timeout_ms)
{
        char path[64], stat[512];
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        int64_t end = itest_now_ms() + timeout_ms;
        do {
                FILE *f = fopen(path, "r");
                CHECK(f);
                size_t n = fread(stat, 1, sizeof(stat) - 1, f);
                fclose(f);
                stat[n] = '\0';
                const char *paren = strrchr(stat, ')');
                if (paren && paren[1] == ' ' && paren[2] == 'T')
                        return true;
                usleep(5000);
        } while (itest_now_ms() < end);
        return false;
}

/*
 * More connections with messages queued than forkpoold takes in one wakeup,
 * each with several: every message is answered, in order per connection, and
 * one that closed behind its messages is simply gone. forkpoold is stopped
 * while they queue, so that all of them are ready at once.
 */
static void test_ready_together(void)
{
        enum {
                CONNS = 200,
                PER = 3
        };
        struct itest_sup s;
        int fds[CONNS];
        union reply r;

        itest_sup_start(&s, "it_h_ready", "pool_size = 1\nmax_overflow = 0\n",
                        "max_connections_per_pid = 256\n");
        for (int c = 0; c < CONNS; c++)
                fds[c] = raw_hello(s.socket);
        CHECK(kill(s.pid, SIGSTOP) == 0);
        CHECK_MSG(wait_stopped(s.pid, 5000), "forkpoold did not stop");
        for (int c = 0; c < CONNS; c++)
                for (uint32_t i = 1; i <= PER; i++) {
                        struct fp_msg_hello hello;
                        fp_msg_init(&hello.hdr, FP_OP_HELLO, sizeof(hello), i);
                        hello.pid = getpid();
                        CHECK(fp_send_msg(fds[c], &hello, sizeof(hello), -1, 0) == 0);
                }
        close(fds[CONNS - 1]);
        CHECK(kill(s.pid, SIGCONT) == 0);

        for (int c = 0; c < CONNS - 1; c++)
                for (uint32_t i = 1; i <= PER; i++) {
                        ssize_t n = recv_within(fds[c], &r, 10000);
                        CHECK_MSG(n > 0 && r.hdr.op == FP_OP_HELLO_OK && r.hdr.request_id == i,
                                  "connection %d: reply %u missing or out of order (%zd, op %u, "
                                  "request %u)",
                                  c, i, n, n > 0 ? r.hdr.op : 0, n > 0 ? r.hdr.request_id : 0);
                }
        for (int c = 0; c < CONNS - 1; c++)
                close(fds[c]);

        forkpool *fp;
        forkpool_lease *lease;
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        CHECK(forkpool_lease_pg(lease));
        CHECK_OK(forkpool_release(lease));
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

/*
 * Item 5: 20000 waiters over 100 connections. forkpoold keeps answering
 * while they wait; they time out in deadline order (each connection queued
 * its acquires with two interleaved timeouts). Then 80000 waiters whose
 * sockets are shut for reading, in front of a released lease: every send fails, and
 * forkpoold (whose recursion used to overflow its stack here; it runs with
 * 2 MiB) lives on with the connection idle.
 */
/*
 * An acquire whose supervisor does not answer (stopped) gives up after its
 * timeout plus the library's reply slack (10 s) with -ETIMEDOUT; the lease
 * that answers it late goes back unused, so the pool's one connection serves
 * the next acquire, and one without a time limit after it. With
 * release_taken false, forkpoold is stopped right after a release, in the
 * middle of whatever it was doing (reading it, resetting its session): the
 * acquires it then reads late have their whole timeout from when they are
 * read, not from the stale time of the loop iteration it was stopped in.
 */
static void acquire_timeout_unanswered(bool release_taken)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;

        itest_sup_start(&s, "it_h_unanswered", "pool_size = 1\nmax_overflow = 0\n", NULL);
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease)); /* connected, then idle */
        CHECK_OK(forkpool_release(lease));
        /* Idle in forkpoold's eyes too (the release may come on the release channel). */
        if (release_taken)
                CHECK_SOON(itest_pool(&s).checked_in == 1 && itest_pool(&s).checked_out == 0, 5000,
                           "the release was not taken");

        CHECK(kill(s.pid, SIGSTOP) == 0);
        CHECK_MSG(wait_stopped(s.pid, 5000), "forkpoold did not stop");
        int64_t start = itest_now_ms();
        int r = forkpool_acquire(fp, "main", 100, &lease);
        int64_t waited = itest_now_ms() - start;
        CHECK(kill(s.pid, SIGCONT) == 0);
        CHECK_MSG(r == -ETIMEDOUT, "acquire from a stopped forkpoold: %d (%s)", r,
                  forkpool_strerror(r));
        CHECK_MSG(waited >= 100 && waited < 60000, "gave up after %lld ms", (long long)waited);

        CHECK_OK(forkpool_acquire(fp, "main", 10000, &lease));
        CHECK(forkpool_lease_pg(lease));
        CHECK_OK(forkpool_release(lease));
        CHECK_OK(forkpool_acquire(fp, "main", -1, &lease));
        CHECK_OK(forkpool_release(lease));
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

static void test_acquire_timeout_unanswered(void)
{
        acquire_timeout_unanswered(true);
}

static void test_acquire_timeout_unanswered_mid_release(void)
{
        acquire_timeout_unanswered(false);
}

/*
 * A reset that never gets an answer (its backend is stopped) fails at its
 * deadline (connect_timeout) and closes the connection; an acquire queued
 * behind it is given a new connection then, not left to its own timeout.
 */
static void test_reset_timeout_serves_waiter(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;

        itest_sup_start(&s, "it_h_reset_wait",
                        "pool_size = 1\nmax_overflow = 0\nconnect_timeout = 2\n"
                        "reset_on_return = auto\n",
                        NULL);
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        PGconn *pg = forkpool_lease_pg(lease);
        CHECK(pg);
        PQclear(PQexec(pg, "SET application_name = 'reset_wait'")); /* to be reset */
        pid_t backend = PQbackendPID(pg);
        CHECK(backend > 0);
        CHECK(kill(backend, SIGSTOP) == 0);
        CHECK_OK(forkpool_release(lease)); /* its reset is never answered */

        int64_t start = itest_now_ms();
        int r = forkpool_acquire(fp, "main", 15000, &lease);
        int64_t waited = itest_now_ms() - start;
        CHECK(kill(backend, SIGCONT) == 0);
        CHECK_MSG(r == 0, "acquire behind a reset that timed out: %d (%s)", r,
                  forkpool_strerror(r));
        CHECK_MSG(waited >= 1000 && waited < 12000, "waited %lld ms", (long long)waited);
        pg = forkpool_lease_pg(lease);
        CHECK(pg);
        CHECK_MSG(PQbackendPID(pg) != backend, "the stopped backend was leased again");
        PGresult *res = PQexec(pg, "SHOW application_name");
        CHECK(PQresultStatus(res) == PGRES_TUPLES_OK);
        CHECK_MSG(strcmp(PQgetvalue(res, 0, 0), "reset_wait") != 0, "a setting leaked");
        PQclear(res);
        CHECK_OK(forkpool_release(lease));
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

static void test_many_waiters(void)
{
        /*
         * At most 100 answers fall due at once per connection: forkpoold's
         * send buffer holds about 200, and an answer that does not fit is
         * dropped (a worker never has more than one acquire queued).
         */
        enum {
                CONNS = 100,
                PER = 200,
                DEAF_PER = 800
        };
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;
        int fds[CONNS];
        uint32_t replies[CONNS];
        union reply r;

        itest_sup_start(&s, "it_h_many", "pool_size = 1\nmax_overflow = 0\n",
                        "max_waiting_per_connection = 1000\nmax_connections_per_pid = 128\n");
        /*
         * 2 MiB of stack (the kernel checks the limit as the stack grows): far
         * more than a loop needs, far less than a recursion per waiter.
         */
        struct rlimit stack = {.rlim_cur = 2 << 20, .rlim_max = 2 << 20};
        CHECK(prlimit(s.pid, RLIMIT_STACK, &stack, NULL) == 0);
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));

        /*
         * Requests 1, 3, 5, … of a connection wait 8 s, requests 2, 4, … 14 s:
         * per connection, every 8 s one must time out first, in the order sent,
         * then every 14 s one. Within a class the order is the arrival order
         * whatever the scheduling, and queueing all of them takes far less than
         * the 6 s between the classes: the check does not depend on timing.
         */
        int64_t q0 = itest_now_ms();
        for (int c = 0; c < CONNS; c++) {
                fds[c] = raw_hello(s.socket);
                for (uint32_t i = 0; i < PER; i++)
                        send_acquire(fds[c], 1 + i, i % 2 == 0 ? 8000 : 14000);
                replies[c] = 0;
        }
        int64_t end = itest_now_ms() + 10000;
        while (itest_pool(&s).waiting != CONNS * PER && itest_now_ms() < end)
                usleep(10000);
        CHECK_MSG(itest_pool(&s).waiting == CONNS * PER, "%d waiting", itest_pool(&s).waiting);
        CHECK_MSG(itest_now_ms() - q0 < 5000, "queueing took %lld ms",
                  (long long)(itest_now_ms() - q0));

        /* Still answering: a try-once acquire fails at once, status works. */
        forkpool *other;
        forkpool_lease *none;
        CHECK_OK(forkpool_open(s.socket, &other));
        int64_t t0 = itest_now_ms();
        CHECK(forkpool_acquire(other, "main", 0, &none) == -ETIMEDOUT);
        CHECK(itest_now_ms() - t0 < 1000);
        char json[8192];
        CHECK(itest_status_json(&s, json, sizeof(json)) == 0);

        /* Every reply is a timeout, in deadline order per connection. */
        int got = 0;
        end = itest_now_ms() + 60000;
        while (got < CONNS * PER && itest_now_ms() < end) {
                struct pollfd pfd[CONNS];
                for (int c = 0; c < CONNS; c++)
                        pfd[c] = (struct pollfd){.fd = fds[c], .events = POLLIN};
                CHECK(poll(pfd, CONNS, 1000) >= 0);
                for (int c = 0; c < CONNS; c++) {
                        /* Everything this connection has, before the next one. */
                        ssize_t n;
                        while ((pfd[c].revents & POLLIN) &&
                               (n = fp_recv_msg(fds[c], r.bytes, sizeof(r), NULL, MSG_DONTWAIT)) !=
                                       -EAGAIN) {
                                CHECK_MSG(n > 0, "connection %d lost (%zd) after %d replies", c, n,
                                          got);
                                CHECK_MSG(r.hdr.op == FP_OP_ERROR && r.error.error == -ETIMEDOUT,
                                          "reply op %u error %d", r.hdr.op, r.error.error);
                                uint32_t k = replies[c]++;
                                uint32_t want = k < PER / 2 ? 1 + 2 * k : 2 + 2 * (k - PER / 2);
                                CHECK_MSG(r.hdr.request_id == want,
                                          "connection %d: request %u timed out, %u expected", c,
                                          r.hdr.request_id, want);
                                got++;
                        }
                }
        }
        CHECK_MSG(got == CONNS * PER, "%d of %d timeouts arrived", got, CONNS * PER);
        CHECK(itest_pool(&s).waiting == 0);
        CHECK(itest_pool(&s).counters.timeouts >= (uint64_t)CONNS * PER);

        /* Waiters that cannot be told: their sockets are shut for reading. */
        for (int c = 0; c < CONNS; c++) {
                for (uint32_t i = 0; i < DEAF_PER; i++)
                        send_acquire(fds[c], 5000 + i, 60000);
                CHECK(shutdown(fds[c], SHUT_RD) == 0);
        }
        end = itest_now_ms() + 20000;
        while (itest_pool(&s).waiting != CONNS * DEAF_PER && itest_now_ms() < end)
                usleep(10000);
        CHECK(itest_pool(&s).waiting == CONNS * DEAF_PER);
        CHECK_OK(forkpool_release(lease));
        end = itest_now_ms() + 20000;
        while (itest_pool(&s).waiting != 0 && itest_now_ms() < end)
                usleep(10000);
        CHECK_MSG(kill(s.pid, 0) == 0 && waitpid(s.pid, NULL, WNOHANG) == 0, "forkpoold died");
        CHECK(itest_pool(&s).waiting == 0);
        CHECK_OK(forkpool_acquire(other, "main", 5000, &lease));
        CHECK(forkpool_lease_pg(lease));
        CHECK_OK(forkpool_release(lease));
        for (int c = 0; c < CONNS; c++)
                close(fds[c]);
        forkpool_close(other);
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

/* Removes the name of the segment the supervisor at socket made (as RemoveIPC= would). */
static void unlink_segment(const char *socket)
{
        struct fp_segment seg;
        CHECK_OK(fp_segment_find(&seg, socket));
        CHECK_OK(fp_segment_unlink(seg.name));
        fp_segment_close(&seg);
}

/* Waits until the handle's forkpool_pool_state() shows checked_out == n. */
static bool wait_state_checked_out(forkpool *fp, int n, int timeout_ms)
{
        forkpool_pool_stats st = FORKPOOL_POOL_STATS_INIT;
        int64_t end = itest_now_ms() + timeout_ms;
        do {
                if (forkpool_pool_state(fp, "main", &st) == 0 && st.checked_out == n)
                        return true;
                usleep(20000);
        } while (itest_now_ms() < end);
        return false;
}

/*
 * Item 11: a long-lived handle's pool_state follows the supervisor across
 * restarts: graceful, SIGKILL, and SIGKILL with the old name removed.
 */
static void test_pool_state_after_restart(void)
{
        struct itest_sup s;
        forkpool *watcher, *fp;
        forkpool_lease *lease;

        itest_sup_start(&s, "it_h_state", "pool_size = 2\n", NULL);
        CHECK_OK(forkpool_open(s.socket, &watcher));
        CHECK(wait_state_checked_out(watcher, 0, 5000));

        for (int round = 0; round < 3; round++) {
                if (round == 0) {
                        /* Graceful: SIGTERM, the directory stays for the restart. */
                        CHECK(kill(s.pid, SIGTERM) == 0);
                        int status = itest_wait_child(s.pid, 15000);
                        CHECK(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
                        s.pid = 0;
                } else {
                        itest_sup_kill(&s);
                }
                if (round == 2) {
                        /*
                         * Killed, and its segment's name removed before the next
                         * start (as RemoveIPC= would): nobody marks the old one
                         * obsolete, only the name's new inode tells.
                         */
                        unlink_segment(s.socket);
                }
                itest_sup_restart(&s);
                CHECK_OK(forkpool_open(s.socket, &fp));
                CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
                CHECK_MSG(wait_state_checked_out(watcher, 1, 5000),
                          "round %d: pool_state still reads the old segment", round);
                CHECK_OK(forkpool_release(lease));
                CHECK(wait_state_checked_out(watcher, 0, 5000));
                forkpool_close(fp);
        }
        forkpool_close(watcher);
        CHECK(itest_sup_stop(&s) == 0);
}

/* Starts `forkpoolctl events --follow` on s in a child (output discarded). */
static pid_t spawn_follow(const struct itest_sup *s)
{
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
                if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
                        _exit(126);
                execl(FP_FORKPOOLCTL_PATH, "forkpoolctl", "--socket", s->socket, "events",
                      "--follow", (char *)NULL);
                _exit(127);
        }
        /* Until it has the segment mapped. */
        char name[FP_SHM_NAME_MAX], out[64];
        fp_segment_name(s->socket, name);
        int64_t end = itest_now_ms() + 10000;
        while (itest_sh(out, sizeof(out), "grep -q '/dev/shm%s' /proc/%d/maps", name, (int)pid) !=
                       0 &&
               itest_now_ms() < end)
                usleep(20000);
        CHECK_MSG(waitpid(pid, NULL, WNOHANG) == 0, "events --follow exited at once");
        CHECK(itest_sh(out, sizeof(out), "grep -q '/dev/shm%s' /proc/%d/maps", name, (int)pid) ==
              0);
        return pid;
}

/*
 * Item 11, forkpoolctl's side: `events --follow` ends when its supervisor
 * stops gracefully, and when one killed with SIGKILL has its segment's name
 * removed, instead of following a dead segment forever.
 */
/*
 * The release channel: a descriptor that is not a SOCK_SEQPACKET socket is
 * not taken (and closed); one that is carries a release that counts with no
 * other message after it; a second one is not taken; an acquire that
 * overstates the channel's count is answered all the same; anything else on
 * it closes it, and the connection goes on; a worker that exits right after a release on it has
 * released, not lost, its lease.
 */
static void test_release_channel(void)
{
        struct itest_sup s;
        int pipe_fds[2], pair[2];
        bool taken;
        char byte = 0;

        signal(SIGPIPE, SIG_IGN);
        itest_sup_start(&s, "it_h_channel", "pool_size = 1\nmax_overflow = 0\n", NULL);

        CHECK(pipe(pipe_fds) == 0);
        int fd = raw_hello_channel(s.socket, pipe_fds[0], &taken);
        CHECK_MSG(!taken, "a pipe was taken as a release channel");
        CHECK_MSG(write(pipe_fds[1], &byte, 1) < 0 && errno == EPIPE,
                  "forkpoold kept the pipe it did not take");
        close(pipe_fds[1]);
        close(fd);

        CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) == 0);
        fd = raw_hello_channel(s.socket, pair[1], &taken);
        CHECK(taken);
        uint64_t id = raw_lease(fd, 1);
        send_release(pair[0], id);
        CHECK_SOON(itest_pool(&s).checked_in == 1 && itest_pool(&s).counters.releases == 1, 5000,
                   "a release on the channel was not taken");

        /* A second channel on the same connection is not taken (and closed). */
        int extra[2];
        CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, extra) == 0);
        struct fp_msg_hello hello;
        union reply r;
        fp_msg_init(&hello.hdr, FP_OP_HELLO, sizeof(hello), 0);
        hello.flags = FP_HELLO_RELEASE_CHANNEL;
        CHECK(fp_send_msg(fd, &hello, sizeof(hello), extra[1], 0) == 0);
        close(extra[1]);
        CHECK(recv_within(fd, &r, 10000) == sizeof(struct fp_msg_hello_ok) &&
              r.hdr.op == FP_OP_HELLO_OK);
        CHECK_MSG(!(((struct fp_msg_hello_ok *)r.bytes)->flags & FP_HELLO_RELEASE_CHANNEL),
                  "a second release channel was taken");
        CHECK_MSG(fp_wait_fd(extra[0], POLLIN, 5000) >= 0 && recv(extra[0], &byte, 1, 0) == 0,
                  "forkpoold kept a second channel it did not take");
        close(extra[0]);

        /* An acquire that claims more channel releases than were sent is still answered. */
        struct fp_msg_acquire acq;
        fp_msg_init(&acq.hdr, FP_OP_ACQUIRE, sizeof(acq), 9);
        acq.timeout_ms = 10000;
        acq.channel_releases = 1000;
        snprintf(acq.pool, sizeof(acq.pool), "main");
        CHECK(fp_send_msg(fd, &acq, sizeof(acq), -1, 0) == 0);
        CHECK(recv_within(fd, &r, 10000) > 0 && r.hdr.op == FP_OP_LEASE);
        send_release(pair[0], ((struct fp_msg_lease *)r.bytes)->lease_id);
        CHECK_SOON(itest_pool(&s).checked_in == 1 && itest_pool(&s).counters.releases == 2, 5000,
                   "a release on the channel after an overstated count was not taken");

        /* Not a release: the channel is closed, the connection serves on. */
        id = raw_lease(fd, 2);
        send_acquire(pair[0], 3, 1000);
        CHECK_MSG(fp_wait_fd(pair[0], POLLIN, 5000) >= 0 && recv(pair[0], &byte, 1, 0) == 0,
                  "forkpoold kept a channel that carried an acquire");
        close(pair[0]);
        CHECK(count_in_log(&s, "other than a release on its release channel") == 1);
        send_release(fd, id);
        CHECK_SOON(itest_pool(&s).checked_in == 1 && itest_pool(&s).counters.releases == 3, 5000,
                   "the release on the connection after the channel closed was not taken");
        close(fd);

        /* Released on the channel, then gone at once: a release, not a reclaim. */
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
                int c[2];
                bool t;
                if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, c) < 0)
                        _exit(2);
                int cfd = raw_hello_channel(s.socket, c[1], &t);
                send_release(c[0], raw_lease(cfd, 4));
                _exit(t ? 0 : 3);
        }
        CHECK(itest_child_exit(pid, 10000) == 0);
        CHECK_SOON(itest_pool(&s).checked_in == 1 && itest_pool(&s).counters.releases == 4, 5000,
                   "the exited worker's release on its channel was lost");
        struct fp_shm_pool p = itest_pool(&s);
        CHECK_MSG(p.counters.reclaims == 0 && p.counters.invalidations == 0,
                  "a lease released on the channel was reclaimed (%llu) or closed (%llu)",
                  (unsigned long long)p.counters.reclaims,
                  (unsigned long long)p.counters.invalidations);
        CHECK(itest_sup_stop(&s) == 0);
}

/*
 * A release that waits unread in one worker's channel is taken before
 * another worker's acquire opens a connection: the pool does not grow for a
 * session that is already back.
 */
static void test_release_channel_before_connect(void)
{
        struct itest_sup s;
        int pair[2];
        bool taken;

        itest_sup_start(&s, "it_h_chconn", "pool_size = 2\nmax_overflow = 2\n", NULL);
        CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) == 0);
        int a = raw_hello_channel(s.socket, pair[1], &taken);
        CHECK(taken);
        int b = raw_hello(s.socket);
        for (uint32_t i = 1; i <= 20; i++) {
                send_release(pair[0], raw_lease(a, i));
                send_release(b, raw_lease(b, i));
        }
        struct fp_shm_pool p = itest_pool(&s);
        CHECK_MSG(p.counters.connects == 1,
                  "%llu connections opened for leases that never overlapped",
                  (unsigned long long)p.counters.connects);
        close(a);
        close(b);
        close(pair[0]);
        CHECK(itest_sup_stop(&s) == 0);
}

static void test_events_follow_ends(void)
{
        struct itest_sup s;

        itest_sup_start(&s, "it_h_follow", NULL, NULL);
        pid_t follower = spawn_follow(&s);
        CHECK(kill(s.pid, SIGTERM) == 0);
        int status = itest_wait_child(s.pid, 15000);
        CHECK(status >= 0 && WIFEXITED(status));
        s.pid = 0;
        status = itest_wait_child(follower, 5000);
        CHECK_MSG(status >= 0, "events --follow kept following a stopped supervisor");

        itest_sup_restart(&s);
        follower = spawn_follow(&s);
        itest_sup_kill(&s);
        unlink_segment(s.socket);
        status = itest_wait_child(follower, 5000);
        CHECK_MSG(status >= 0, "events --follow kept following a killed supervisor");
        itest_sup_restart(&s);
        CHECK(itest_sup_stop(&s) == 0);
}

ITEST_MAIN({"reload_applies_admin_users", test_reload_applies_admin_users, 60},
           {"admin_groups", test_admin_groups, 60},
           {"reload_applies_allow_users", test_reload_applies_allow_users, 60},
           {"connection_limits", test_connection_limits, 90},
           {"hello_timeout", test_hello_timeout, 60},
           {"fd_exhaustion_no_spin", test_fd_exhaustion_no_spin, 90},
           {"waiting_cap", test_waiting_cap, 60}, {"ready_together", test_ready_together, 60},
           {"acquire_timeout_unanswered", test_acquire_timeout_unanswered, 90},
           {"acquire_timeout_unanswered_mid_release", test_acquire_timeout_unanswered_mid_release,
            90},
           {"reset_timeout_serves_waiter", test_reset_timeout_serves_waiter, 60},
           {"many_waiters", test_many_waiters, 180},
           {"pool_state_after_restart", test_pool_state_after_restart, 90},
           {"events_follow_ends", test_events_follow_ends, 60},
           {"release_channel", test_release_channel, 60},
           {"release_channel_before_connect", test_release_channel_before_connect, 60})
