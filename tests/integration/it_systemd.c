/* SPDX-License-Identifier: MIT */
/*
 * it_systemd.c — forkpoold under systemd's protocols, without PID 1: this
 * test plays systemd's part. The notify socket ($NOTIFY_SOCKET) receives
 * READY=1, STATUS=, RELOADING=1, STOPPING=1 and WATCHDOG=1 ($WATCHDOG_USEC);
 * socket activation ($LISTEN_FDS, $LISTEN_PID, $LISTEN_FDNAMES) hands it a
 * listening control socket, which it uses and leaves in place at exit.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itest.h"

#define NOTIFY_MAX 1024 /* messages kept; far more than a test's forkpoold sends */

struct harness {
        char dir[64];
        char config[128];
        char socket[128];
        char notify[128];
        char log[128];
        int notify_fd;
        pid_t pid;
        /*
         * What forkpoold sent to the notify socket, read at once by a thread of
         * the harness as systemd would: a datagram socket queues only
         * net.unix.max_dgram_qlen (10) messages, then sd_notify() blocks.
         */
        pthread_t reader;
        pthread_mutex_t lock;
        char (*msgs)[1024];
        int n_msgs;   /* received */
        int next_msg; /* the first notify_wait() has not looked at */
};

static void *notify_reader(void *arg)
{
        struct harness *h = arg;
        for (;;) {
                char msg[1024];
                ssize_t n = recv(h->notify_fd, msg, sizeof(msg) - 1, 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return NULL; /* shut down by harness_done() */
                msg[n] = '\0';
                pthread_mutex_lock(&h->lock);
                if (h->n_msgs < NOTIFY_MAX)
                        memcpy(h->msgs[h->n_msgs++], msg, (size_t)n + 1);
                pthread_mutex_unlock(&h->lock);
        }
}

static int unix_socket(int type, const char *path, bool listening)
{
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        CHECK(strlen(path) < sizeof(addr.sun_path));
        memcpy(addr.sun_path, path, strlen(path) + 1);
        int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
        CHECK(fd >= 0);
        CHECK(bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0);
        if (listening)
                CHECK(listen(fd, 16) == 0);
        return fd;
}

static void harness_init(struct harness *h, const char *app)
{
        memset(h, 0, sizeof(*h));
        snprintf(h->dir, sizeof(h->dir), "/tmp/fp-it-sd.XXXXXX");
        CHECK(mkdtemp(h->dir));
        chmod(h->dir, 0755);
        snprintf(h->config, sizeof(h->config), "%s/forkpool.conf", h->dir);
        snprintf(h->socket, sizeof(h->socket), "%s/forkpool.sock", h->dir);
        snprintf(h->notify, sizeof(h->notify), "%s/notify", h->dir);
        snprintf(h->log, sizeof(h->log), "%s/log", h->dir);
        FILE *f = fopen(h->config, "w");
        CHECK(f);
        fprintf(f, "[forkpool]\nsocket = %s\n[pool main]\nurl = %s\npool_size = 2\n", h->socket,
                itest_url(app));
        fclose(f);
        h->notify_fd = unix_socket(SOCK_DGRAM, h->notify, false);
        h->msgs = calloc(NOTIFY_MAX, sizeof(*h->msgs));
        CHECK(h->msgs);
        pthread_mutex_init(&h->lock, NULL);
        CHECK(pthread_create(&h->reader, NULL, notify_reader, h) == 0);
}

/* Starts forkpoold as systemd would; listen_fd >= 0 is passed as fd 3. */
/* Starts forkpoold as systemd would, with the control socket listen_fd (or none: -1). */
static void harness_start(struct harness *h, int listen_fd)
{
        h->pid = fork();
        CHECK(h->pid >= 0);
        if (h->pid == 0) {
                char pid[16];
                CHECK(freopen(h->log, "a", stderr));
                setenv("NOTIFY_SOCKET", h->notify, 1);
                setenv("WATCHDOG_USEC", "400000", 1);
                snprintf(pid, sizeof(pid), "%d", getpid());
                setenv("WATCHDOG_PID", pid, 1);
                if (listen_fd >= 0) {
                        CHECK(dup2(listen_fd, 3) == 3); /* dup2 clears close-on-exec */
                        setenv("LISTEN_FDS", "1", 1);
                        setenv("LISTEN_PID", pid, 1);
                        setenv("LISTEN_FDNAMES", "control", 1);
                }
                execl(FP_FORKPOOLD_PATH, "forkpoold", "--config", h->config, (char *)NULL);
                _exit(127);
        }
}

/*
 * Reads notify datagrams for up to timeout_ms, appending them to buf
 * (separated by '|'), until one contains want. Returns true if it came.
 */
/*
 * Waits up to timeout_ms for a message containing want, among those not
 * looked at yet; every message looked at is appended to buf ("msg|").
 */
static bool notify_wait(struct harness *h, const char *want, char *buf, size_t len, int timeout_ms)
{
        int64_t end = itest_now_ms() + timeout_ms;
        do {
                pthread_mutex_lock(&h->lock);
                bool found = false;
                while (h->next_msg < h->n_msgs && !found) {
                        const char *msg = h->msgs[h->next_msg++];
                        size_t used = strlen(buf);
                        snprintf(buf + used, len - used, "%s|", msg);
                        found = strstr(msg, want) != NULL;
                }
                pthread_mutex_unlock(&h->lock);
                if (found)
                        return true;
                usleep(10000);
        } while (itest_now_ms() < end);
        return false;
}

static void harness_done(struct harness *h)
{
        if (h->pid > 0) {
                kill(h->pid, SIGKILL);
                waitpid(h->pid, NULL, 0);
        }
        shutdown(h->notify_fd, SHUT_RDWR);
        pthread_join(h->reader, NULL);
        close(h->notify_fd);
        free(h->msgs);
        itest_sh(NULL, 0, "rm -rf %s", h->dir);
}

static void test_notify_protocol(void)
{
        struct harness h;
        char seen[16384] = "";

        harness_init(&h, "it_sd_notify");
        harness_start(&h, -1);
        CHECK_MSG(notify_wait(&h, "READY=1", seen, sizeof(seen), 5000), "seen: %s", seen);
        /* By READY=1 the socket and the segment exist: a worker can lease at once. */
        forkpool *fp;
        forkpool_lease *l;
        CHECK_OK(forkpool_open(h.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 2000, &l));
        /* STATUS= says how the pools are. */
        CHECK_MSG(notify_wait(&h, "main: 1 out", seen, sizeof(seen), 3000), "seen: %s", seen);
        CHECK_OK(forkpool_release(l));
        forkpool_close(fp);

        /* WATCHDOG_USEC=0.4 s: sd-event pings at half of it while the loop runs. */
        seen[0] = '\0';
        CHECK(notify_wait(&h, "WATCHDOG=1", seen, sizeof(seen), 2000));
        CHECK(notify_wait(&h, "WATCHDOG=1", seen, sizeof(seen), 2000));

        /* A reload is bracketed by RELOADING=1 … READY=1. */
        seen[0] = '\0';
        kill(h.pid, SIGHUP);
        CHECK_MSG(notify_wait(&h, "RELOADING=1", seen, sizeof(seen), 3000), "seen: %s", seen);
        CHECK_MSG(notify_wait(&h, "READY=1", seen, sizeof(seen), 3000), "seen: %s", seen);

        seen[0] = '\0';
        kill(h.pid, SIGTERM);
        CHECK_MSG(notify_wait(&h, "STOPPING=1", seen, sizeof(seen), 3000), "seen: %s", seen);
        CHECK(itest_wait_child(h.pid, 10000) == 0);
        h.pid = 0;
        harness_done(&h);
}

static void test_socket_activation(void)
{
        struct harness h;
        char seen[8192] = "";
        struct stat st;

        harness_init(&h, "it_sd_socket");
        /* systemd binds and listens; forkpoold must take this socket, not bind its own. */
        int lfd = unix_socket(SOCK_SEQPACKET, h.socket, true);
        CHECK(stat(h.socket, &st) == 0);
        ino_t inode = st.st_ino;
        harness_start(&h, lfd);
        CHECK_MSG(notify_wait(&h, "READY=1", seen, sizeof(seen), 5000), "seen: %s", seen);

        forkpool *fp;
        forkpool_lease *l;
        CHECK_OK(forkpool_open(h.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 2000, &l));
        CHECK(strcmp(itest_query(forkpool_lease_pg(l), "SELECT 1"), "1") == 0);
        CHECK_OK(forkpool_release(l));
        forkpool_close(fp);
        CHECK(stat(h.socket, &st) == 0 && st.st_ino == inode); /* the very same socket */

        kill(h.pid, SIGTERM);
        CHECK(itest_wait_child(h.pid, 10000) == 0);
        h.pid = 0;
        /* systemd's socket outlives the service: still there, still the same. */
        CHECK(stat(h.socket, &st) == 0 && st.st_ino == inode);
        char log[8192];
        itest_sh(log, sizeof(log), "cat %s", h.log);
        CHECK_MSG(strstr(log, "socket activation"), "log:\n%s", log);
        close(lfd);
        harness_done(&h);
}

ITEST_MAIN({"notify_protocol", test_notify_protocol, 60},
           {"socket_activation", test_socket_activation, 60})
