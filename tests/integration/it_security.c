/* SPDX-License-Identifier: MIT */
/*
 * it_security.c — who may lease, and what a misbehaving worker can do: a
 * disallowed uid is refused (and logged), an allowed one is served; malformed
 * control messages are rejected without harming other workers, and a release
 * whose statement set repeats a hash closes its connection; the socket
 * and the segment have tight modes; the password reaches neither the
 * segment, the log, nor ps.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itest.h"
#include "proto.h"
#include "sockio.h"

/* Runs fn as uid `nobody` (gid 0 kept, so the 0660 socket is reachable) in a child. */
static int as_nobody(const struct itest_sup *s, int (*fn)(const struct itest_sup *))
{
        pid_t pid = itest_fork_as("nobody");
        if (pid == 0)
                _exit(fn(s));
        return itest_child_exit(pid, 20000);
}

static int try_lease(const struct itest_sup *s)
{
        forkpool *fp;
        forkpool_lease *lease;
        int r = forkpool_open(s->socket, &fp);
        if (r < 0)
                return r == -EACCES ? 13 : 1;
        r = forkpool_acquire(fp, "main", 5000, &lease);
        if (r == 0)
                r = forkpool_lease_pg(lease) ? forkpool_release(lease) : -EIO;
        forkpool_close(fp);
        return r == 0 ? 0 : 2;
}

static void test_disallowed_uid_refused(void)
{
        struct itest_sup s;
        char log[8192];

        itest_sup_start(&s, "it_acl", NULL, "allow_users = root\n");
        CHECK_MSG(as_nobody(&s, try_lease) == 13, "nobody was not refused with -EACCES");
        itest_sh(log, sizeof(log), "cat %s", s.log);
        CHECK(strstr(log, "refused control connection") && strstr(log, "not in allow_users"));
        CHECK(itest_pool(&s).counters.acquires == 0);
        CHECK(itest_sup_stop(&s) == 0);
}

static void test_allowed_uid_served(void)
{
        struct itest_sup s;
        itest_sup_start(&s, "it_acl_ok", NULL, "allow_users = root, nobody\n");
        CHECK_MSG(as_nobody(&s, try_lease) == 0, "nobody was not served");
        CHECK(itest_pool(&s).counters.acquires == 1);
        CHECK(itest_sup_stop(&s) == 0);
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

/* Sends raw bytes (optionally with an fd) and returns the error the supervisor answers. */
static int bad_message(int fd, const void *buf, size_t len, int pass_fd)
{
        union {
                struct fp_msg_hdr hdr;
                struct fp_msg_error error;
                char bytes[FP_MSG_MAX];
        } reply;
        CHECK(fp_send_msg(fd, buf, len, pass_fd, 0) == 0);
        ssize_t n = fp_recv_msg(fd, reply.bytes, sizeof(reply), NULL, 0);
        CHECK_MSG(n > 0, "no answer to a malformed message (%zd)", n);
        CHECK(fp_msg_check(reply.bytes, (size_t)n) == 0 && reply.hdr.op == FP_OP_ERROR);
        return reply.error.error;
}

static void test_malformed_messages(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;

        itest_sup_start(&s, "it_malformed", "pool_size = 2\nmax_overflow = 0\n", NULL);
        /* A well-behaved worker holds a lease throughout. */
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        PGconn *c = forkpool_lease_pg(lease);
        CHECK(c);

        int bad = raw_connect(s.socket);
        struct fp_msg_acquire acq;

        /* Too short to hold a header. */
        CHECK(bad_message(bad, "xy", 2, -1) == -EBADMSG);
        /* Wrong size for the op. */
        fp_msg_init(&acq.hdr, FP_OP_ACQUIRE, sizeof(acq), 7);
        snprintf(acq.pool, sizeof(acq.pool), "main");
        acq.hdr.size = sizeof(acq) - 8;
        CHECK(bad_message(bad, &acq, sizeof(acq) - 8, -1) == -EBADMSG);
        /* Bad version. */
        fp_msg_init(&acq.hdr, FP_OP_ACQUIRE, sizeof(acq), 8);
        acq.hdr.version = 99;
        CHECK(bad_message(bad, &acq, sizeof(acq), -1) == -EPROTO);
        /* Unknown op. */
        fp_msg_init(&acq.hdr, FP_OP_ACQUIRE, sizeof(acq), 9);
        acq.hdr.op = 77;
        CHECK(bad_message(bad, &acq, sizeof(acq), -1) == -EOPNOTSUPP);
        /* An op only the supervisor sends. */
        struct fp_msg_error err;
        fp_msg_init(&err.hdr, FP_OP_ERROR, sizeof(err), 10);
        CHECK(bad_message(bad, &err, sizeof(err), -1) == -EOPNOTSUPP);
        /* A descriptor sent by a worker. */
        fp_msg_init(&acq.hdr, FP_OP_ACQUIRE, sizeof(acq), 11);
        snprintf(acq.pool, sizeof(acq.pool), "main");
        CHECK(bad_message(bad, &acq, sizeof(acq), STDERR_FILENO) == -EBADMSG);
        /* An unterminated pool name. */
        fp_msg_init(&acq.hdr, FP_OP_ACQUIRE, sizeof(acq), 12);
        memset(acq.pool, 'x', sizeof(acq.pool));
        CHECK(bad_message(bad, &acq, sizeof(acq), -1) == -EBADMSG);
        /* A release of a lease it does not hold is ignored (the holder keeps it). */
        struct fp_msg_release rel;
        fp_msg_init(&rel.hdr, FP_OP_RELEASE, sizeof(rel), 13);
        rel.lease_id = 0;
        CHECK(fp_send_msg(bad, &rel, sizeof(rel), -1, 0) == 0);
        /* Still a working connection for a proper request afterwards. */
        fp_msg_init(&acq.hdr, FP_OP_ACQUIRE, sizeof(acq), 14);
        snprintf(acq.pool, sizeof(acq.pool), "nope");
        CHECK(bad_message(bad, &acq, sizeof(acq), -1) == -ENOENT);
        close(bad);

        /* Nobody was harmed: the lease still works, the pool counts are right. */
        CHECK(strcmp(itest_query(c, "SELECT 1"), "1") == 0);
        struct fp_shm_pool st = itest_pool(&s);
        CHECK(st.checked_out == 1 && st.counters.reclaims == 0 && st.counters.invalidations == 0);
        CHECK_OK(forkpool_release(lease));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &lease));
        CHECK_OK(forkpool_release(lease));
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

/* A lease of pool through the supervisor at socket runs a query. */
static void lease_works(const char *socket, const char *pool)
{
        forkpool *fp;
        forkpool_lease *lease;
        CHECK_OK(forkpool_open(socket, &fp));
        CHECK_OK(forkpool_acquire(fp, pool, 5000, &lease));
        CHECK(strcmp(itest_query(forkpool_lease_pg(lease), "SELECT 1"), "1") == 0);
        CHECK_OK(forkpool_release(lease));
        forkpool_close(fp);
}

/* Leases a session of pool main over the raw control connection fd; returns its lease id. */
static uint64_t raw_lease(int fd)
{
        struct fp_msg_acquire acq;
        union {
                struct fp_msg_hdr hdr;
                struct fp_msg_lease lease;
                char bytes[FP_MSG_MAX];
        } reply;
        int session = -1;
        fp_msg_init(&acq.hdr, FP_OP_ACQUIRE, sizeof(acq), 21);
        acq.timeout_ms = 5000;
        snprintf(acq.pool, sizeof(acq.pool), "main");
        CHECK(fp_send_msg(fd, &acq, sizeof(acq), -1, 0) == 0);
        ssize_t n = fp_recv_msg(fd, reply.bytes, sizeof(reply), &session, 0);
        CHECK_MSG(n > 0 && fp_msg_check(reply.bytes, (size_t)n) == 0 &&
                          reply.hdr.op == FP_OP_LEASE && session >= 0,
                  "no lease (%zd bytes, op %u)", n, n > 0 ? reply.hdr.op : 0);
        close(session);
        return reply.lease.lease_id;
}

/* Releases lease_id over fd, idle, with a statement set of count hashes, hash i = i % distinct. */
static void raw_release_with_set(int fd, uint64_t lease_id, uint32_t count, uint32_t distinct)
{
        static struct fp_msg_release rel;
        fp_msg_init(&rel.hdr, FP_OP_RELEASE, sizeof(rel), 22);
        rel.lease_id = lease_id;
        rel.txn = FP_TXN_IDLE;
        rel.flags = FP_RELEASE_STATEMENTS;
        rel.statements.count = count;
        for (uint32_t i = 0; i < count; i++)
                rel.statements.hash[i][0] = (uint8_t)(1 + i % distinct);
        CHECK(fp_send_msg(fd, &rel, sizeof(rel), -1, 0) == 0);
}

/*
 * A release whose statement set names a hash twice is malformed: the
 * connection is closed (an invalidation), not reused with a set that cannot
 * be the session's. A set without a repeat is taken.
 */
static void test_release_repeating_statements(void)
{
        struct itest_sup s;
        itest_sup_start(&s, "it_malformed_set", "pool_size = 1\nmax_overflow = 0\n", NULL);
        int raw = raw_connect(s.socket);
        raw_release_with_set(raw, raw_lease(raw), 3, 3);
        CHECK(itest_wait_checked_out(&s, 0) == 0);
        CHECK(itest_pool(&s).counters.invalidations == 0);
        raw_release_with_set(raw, raw_lease(raw), 3, 2);
        CHECK(itest_wait_checked_out(&s, 0) == 0);
        int64_t end = itest_now_ms() + 10000;
        while (itest_pool(&s).counters.invalidations == 0 && itest_now_ms() < end)
                usleep(10000);
        CHECK_MSG(itest_pool(&s).counters.invalidations == 1, "%llu invalidations",
                  (unsigned long long)itest_pool(&s).counters.invalidations);
        close(raw);
        lease_works(s.socket, "main"); /* the pool goes on with a new connection */
        CHECK(itest_sup_stop(&s) == 0);
}

static void test_modes_and_secrets(void)
{
        const char *tcp_url = getenv("FORKPOOL_TEST_PG_TCP_URL");
        const char *password = "forkpool-test-pw";
        char dir[] = "/tmp/fp-it-secret.XXXXXX", sock[128], out[65536], logpath[160];
        struct stat st;

        CHECK_MSG(tcp_url && strstr(tcp_url, password), "FORKPOOL_TEST_PG_TCP_URL not set");
        CHECK(mkdtemp(dir));
        snprintf(sock, sizeof(sock), "%s/fp.sock", dir);
        snprintf(logpath, sizeof(logpath), "%s/log", dir);
        pid_t pid = fork();
        if (pid == 0) {
                CHECK(freopen(logpath, "w", stderr));
                execl(FP_FORKPOOLD_PATH, "forkpoold", "--url", tcp_url, "--socket", sock,
                      "--pool-size", "1", "--log-level", "debug", (char *)NULL);
                _exit(127);
        }
        int64_t end = itest_now_ms() + 5000;
        while (stat(sock, &st) != 0 && itest_now_ms() < end)
                usleep(10000);
        usleep(50000);

        lease_works(sock, "default"); /* over TCP with SCRAM */

        CHECK(stat(sock, &st) == 0 && (st.st_mode & 0777) == 0660);
        char shm_path[128];
        itest_segment_path(sock, shm_path, sizeof(shm_path));
        CHECK(stat(shm_path, &st) == 0 && (st.st_mode & 0777) == 0640);

        /* The password is in none of: the segment, the log, the command line. */
        CHECK(itest_sh(NULL, 0, "grep -aq '%s' %s", password, shm_path) != 0);
        CHECK(itest_sh(NULL, 0, "grep -aq '%s' /proc/%d/cmdline", password, pid) != 0);
        CHECK(itest_sh(NULL, 0, "grep -q forkpool /proc/%d/cmdline", pid) == 0);
        kill(pid, SIGTERM);
        CHECK(itest_wait_child(pid, 10000) == 0);
        itest_sh(out, sizeof(out), "cat %s", logpath);
        CHECK_MSG(!strstr(out, password), "password in the log:\n%s", out);
        CHECK(strstr(out, "***"));
        itest_sh(NULL, 0, "rm -rf %s", dir);
}

/* TLS cannot be leased: a URL asking for it is refused at start with the reason. */
static void test_tls_refused(void)
{
        char out[2048];
        int status = itest_sh(out, sizeof(out),
                              "%s --url 'postgresql://u@localhost/db?sslmode=require' "
                              "--socket /tmp/fp-never.sock 2>&1",
                              FP_FORKPOOLD_PATH);
        CHECK_MSG(status == 78, "exit %d: %s", status, out);
        CHECK(strstr(out, "sslmode") && strstr(out, "TLS"));
}

/* Started as root with user = nobody: it runs as nobody, and so do its socket and segment. */
static void test_drops_privileges(void)
{
        struct itest_sup s;
        struct stat st;
        char status[4096], line[64];

        memset(&s, 0, sizeof(s));
        snprintf(s.dir, sizeof(s.dir), "/tmp/fp-it-user.XXXXXX");
        CHECK(mkdtemp(s.dir));
        chmod(s.dir, 0755);
        snprintf(s.socket, sizeof(s.socket), "%s/run/forkpool.sock", s.dir);
        snprintf(s.config, sizeof(s.config), "%s/forkpool.conf", s.dir);
        snprintf(s.log, sizeof(s.log), "%s/forkpoold.log", s.dir);
        FILE *f = fopen(s.config, "w");
        CHECK(f);
        fprintf(f, "[forkpool]\nsocket = %s\nuser = nobody\n[pool main]\nurl = %s\n", s.socket,
                itest_url("it_user"));
        fclose(f);
        itest_sup_restart(&s);

        snprintf(line, sizeof(line), "grep '^Uid:' /proc/%d/status", s.pid);
        itest_sh(status, sizeof(status), "%s", line);
        CHECK_MSG(strstr(status, "65534"), "forkpoold still runs as: %s", status);
        CHECK(stat(s.socket, &st) == 0 && st.st_uid == 65534);
        char shm_path[128];
        itest_segment_path(s.socket, shm_path, sizeof(shm_path));
        CHECK(stat(shm_path, &st) == 0 && st.st_uid == 65534);

        lease_works(s.socket, "main"); /* root may always connect */
        CHECK(itest_sup_stop(&s) == 0);
}

ITEST_MAIN({"disallowed_uid_refused", test_disallowed_uid_refused, 60},
           {"allowed_uid_served", test_allowed_uid_served, 60},
           {"malformed_messages", test_malformed_messages, 60},
           {"release_repeating_statements", test_release_repeating_statements, 60},
           {"modes_and_secrets", test_modes_and_secrets, 60}, {"tls_refused", test_tls_refused, 30},
           {"drops_privileges", test_drops_privileges, 30})
