/* SPDX-License-Identifier: MIT */
/*
 * fake_systemd.c — systemd's notify socket and fd store for the tests
 * (fake_systemd.h).
 */
#include "fake_systemd.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itest.h"

/* Handles one notify datagram: stores or removes descriptors, counts READY=1. Under sd->lock. */
static void handle_notify(struct fake_systemd *sd, const char *text, const int *fds, int n_fds)
{
        char name[64] = "stored";
        const char *p = strstr(text, "FDNAME=");
        if (p)
                sscanf(p + 7, "%63[^\n]", name);
        if (strstr(text, "READY=1"))
                sd->ready++;
        if (strstr(text, "FDSTOREREMOVE=1")) {
                for (int i = 0; i < sd->n_stored;) {
                        if (strcmp(sd->names[i], name) != 0) {
                                i++;
                                continue;
                        }
                        close(sd->fds[i]);
                        sd->n_stored--;
                        sd->fds[i] = sd->fds[sd->n_stored];
                        memcpy(sd->names[i], sd->names[sd->n_stored], sizeof(sd->names[i]));
                }
        }
        for (int i = 0; i < n_fds; i++) {
                if (!strstr(text, "FDSTORE=1") || sd->n_stored == FAKE_SYSTEMD_MAX_STORED) {
                        close(fds[i]);
                        continue;
                }
                sd->fds[sd->n_stored] = fds[i];
                snprintf(sd->names[sd->n_stored], sizeof(sd->names[0]), "%s", name);
                sd->n_stored++;
        }
}

/*
 * Reads and handles one queued notify datagram, without waiting. Returns
 * false when none is queued. Under sd->lock, so that whoever holds the lock
 * knows no datagram is half handled.
 */
static bool notify_read_one(struct fake_systemd *sd)
{
        char text[4096];
        union {
                char buf[CMSG_SPACE(16 * sizeof(int))];
                struct cmsghdr align;
        } control;
        struct iovec iov = {.iov_base = text, .iov_len = sizeof(text) - 1};
        struct msghdr msg = {.msg_iov = &iov,
                             .msg_iovlen = 1,
                             .msg_control = control.buf,
                             .msg_controllen = sizeof(control.buf)};
        ssize_t n = recvmsg(sd->sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        if (n < 0)
                return false;
        text[n] = '\0';
        int fds[16] = {0}, n_fds = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
                        for (size_t i = 0;
                             i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int) && n_fds < 16; i++)
                                memcpy(&fds[n_fds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        handle_notify(sd, text, fds, n_fds);
        return true;
}

/* Reads the notify socket all the time, as systemd does (its queue is short). */
static void *notify_loop(void *arg)
{
        struct fake_systemd *sd = arg;
        while (!sd->stop) {
                struct pollfd p = {.fd = sd->sock, .events = POLLIN};
                if (poll(&p, 1, 50) != 1)
                        continue;
                pthread_mutex_lock(&sd->lock);
                while (notify_read_one(sd))
                        ;
                pthread_mutex_unlock(&sd->lock);
        }
        return NULL;
}

void fake_systemd_init_config(struct fake_systemd *sd, const char *global_lines, const char *pools)
{
        struct sockaddr_un addr = {.sun_family = AF_UNIX};

        memset(sd, 0, sizeof(*sd));
        sd->listen_fd = -1;
        pthread_mutex_init(&sd->lock, NULL);
        snprintf(sd->dir, sizeof(sd->dir), "/tmp/fp-it-restart.XXXXXX");
        CHECK(mkdtemp(sd->dir));
        chmod(sd->dir, 0755);
        snprintf(sd->config, sizeof(sd->config), "%s/forkpool.conf", sd->dir);
        snprintf(sd->socket, sizeof(sd->socket), "%s/forkpool.sock", sd->dir);
        snprintf(sd->notify, sizeof(sd->notify), "%s/notify", sd->dir);
        snprintf(sd->log, sizeof(sd->log), "%s/log", sd->dir);
        FILE *f = fopen(sd->config, "w");
        CHECK(f);
        fprintf(f, "[forkpool]\nsocket = %s\n%s%s", sd->socket, global_lines ? global_lines : "",
                pools);
        fclose(f);
        chmod(sd->config, 0600); /* a URL with a password must not be readable by everyone */
        sd->sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        CHECK(sd->sock >= 0);
        memcpy(addr.sun_path, sd->notify, strlen(sd->notify) + 1);
        CHECK(bind(sd->sock, (struct sockaddr *)&addr, sizeof(addr)) == 0);
        CHECK(pthread_create(&sd->thread, NULL, notify_loop, sd) == 0);
}

void fake_systemd_init(struct fake_systemd *sd, const char *url, const char *pool_lines)
{
        char pools[2048];
        snprintf(pools, sizeof(pools), "[pool main]\nurl = %s\n%s", url, pool_lines);
        fake_systemd_init_config(sd, NULL, pools);
}

void fake_systemd_socket_unit(struct fake_systemd *sd)
{
        struct sockaddr_un addr = {.sun_family = AF_UNIX};

        sd->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        CHECK(sd->listen_fd >= 0);
        memcpy(addr.sun_path, sd->socket, strlen(sd->socket) + 1);
        CHECK(bind(sd->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) == 0);
        CHECK(listen(sd->listen_fd, 64) == 0);
}

void fake_systemd_start(struct fake_systemd *sd)
{
        pthread_mutex_lock(&sd->lock);
        /* What the previous forkpoold sent before it ended counts, read or not: systemd, too,
         * reads the notify socket before it handles the exit. */
        while (notify_read_one(sd))
                ;
        int ready = sd->ready, n = 0, fds[FAKE_SYSTEMD_MAX_STORED + 1];
        char names[(FAKE_SYSTEMD_MAX_STORED + 1) * 65] = "";
        /* As systemd: the sockets of the service's socket units first, then the store. */
        if (sd->listen_fd >= 0) {
                fds[n++] = sd->listen_fd;
                strcat(names, "control");
        }
        for (int i = 0; i < sd->n_stored; i++) {
                strcat(names, n ? ":" : "");
                strcat(names, sd->names[i]);
                fds[n++] = sd->fds[i];
        }
        pthread_mutex_unlock(&sd->lock);

        sd->pid = fork();
        CHECK(sd->pid >= 0);
        if (sd->pid == 0) {
                char pid[16], count[16];
                CHECK(freopen(sd->log, "a", stderr));
                /* Out of the way first, then in place from 3 on (dup2 clears close-on-exec). */
                int high[FAKE_SYSTEMD_MAX_STORED + 1];
                for (int i = 0; i < n; i++)
                        high[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 200);
                for (int i = 0; i < n; i++)
                        CHECK(dup2(high[i], 3 + i) == 3 + i);
                /* As systemd: the service gets the passed descriptors and nothing else. */
                CHECK(close_range(3 + (unsigned)n, ~0u, 0) == 0);
                snprintf(pid, sizeof(pid), "%d", getpid());
                snprintf(count, sizeof(count), "%d", n);
                setenv("NOTIFY_SOCKET", sd->notify, 1);
                setenv("FDSTORE", "64", 1);
                if (n > 0) {
                        setenv("LISTEN_FDS", count, 1);
                        setenv("LISTEN_PID", pid, 1);
                        setenv("LISTEN_FDNAMES", names, 1);
                }
                execl(FP_FORKPOOLD_PATH, "forkpoold", "--config", sd->config, "--log-level",
                      "debug", (char *)NULL);
                _exit(127);
        }
        int64_t end = itest_now_ms() + 30000;
        for (;;) {
                pthread_mutex_lock(&sd->lock);
                bool up = sd->ready > ready;
                pthread_mutex_unlock(&sd->lock);
                if (up)
                        break;
                CHECK_MSG(itest_now_ms() < end, "forkpoold did not send READY=1");
                usleep(10000);
        }
}

int fake_systemd_stored_connections(struct fake_systemd *sd)
{
        int n = 0;
        pthread_mutex_lock(&sd->lock);
        for (int i = 0; i < sd->n_stored; i++)
                n += sd->names[i][0] == 'c';
        pthread_mutex_unlock(&sd->lock);
        return n;
}

int fake_systemd_stored_fd(struct fake_systemd *sd, const char *name, int nth)
{
        int fd = -1;
        pthread_mutex_lock(&sd->lock);
        for (int i = 0; i < sd->n_stored && fd < 0; i++)
                if (strncmp(sd->names[i], name, strlen(name)) == 0 && nth-- == 0)
                        fd = sd->fds[i];
        pthread_mutex_unlock(&sd->lock);
        return fd;
}

void fake_systemd_stop(struct fake_systemd *sd, int sig)
{
        kill(sd->pid, sig);
        int status = itest_wait_child(sd->pid, 20000);
        CHECK_MSG(status >= 0, "forkpoold did not exit within 20 s of signal %d", sig);
        if (sig == SIGTERM)
                CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status %d", status);
        sd->pid = 0;
}

void fake_systemd_done(struct fake_systemd *sd)
{
        if (sd->pid > 0) {
                kill(sd->pid, SIGTERM);
                itest_wait_child(sd->pid, 10000);
        }
        sd->stop = true;
        pthread_join(sd->thread, NULL);
        for (int i = 0; i < sd->n_stored; i++)
                close(sd->fds[i]);
        if (sd->listen_fd >= 0)
                close(sd->listen_fd);
        close(sd->sock);
        if (!getenv("ITEST_KEEP_LOGS"))
                itest_sh(NULL, 0, "rm -rf %s", sd->dir);
}
