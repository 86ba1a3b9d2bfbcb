/* SPDX-License-Identifier: MIT */
/*
 * it_restart.c — a restart drops nothing. This test plays systemd's part of
 * the protocols forkpoold uses for that, without PID 1: a notify socket that
 * keeps the descriptors forkpoold stores (FDSTORE=1, FDNAME=, FDSTOREREMOVE=1)
 * and hands them to the next forkpoold ($LISTEN_FDS, $LISTEN_PID,
 * $LISTEN_FDNAMES). Across a restart (SIGTERM) and a crash (SIGKILL) the
 * backends in pg_stat_activity stay the same, an idle connection goes back to
 * its pool, a transaction open across the restart commits, and a holder that
 * died meanwhile is reclaimed.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itest.h"

#define MAX_STORED 64

/* systemd, as far as forkpoold can tell. */
struct fake_systemd {
        char dir[64], config[128], socket[128], notify[128], log[128];
        int sock;
        pthread_t thread;
        pthread_mutex_t lock;
        bool stop;
        int n_stored;
        char names[MAX_STORED][64];
        int fds[MAX_STORED];
        int ready; /* READY=1 messages seen */
        pid_t pid;
};

/* Handles one notify datagram: stores or removes descriptors, counts READY=1. */
static void handle_notify(struct fake_systemd *sd, const char *text, const int *fds, int n_fds)
{
        char name[64] = "stored";
        const char *p = strstr(text, "FDNAME=");
        if (p)
                sscanf(p + 7, "%63[^\n]", name);
        pthread_mutex_lock(&sd->lock);
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
                if (!strstr(text, "FDSTORE=1") || sd->n_stored == MAX_STORED) {
                        close(fds[i]);
                        continue;
                }
                sd->fds[sd->n_stored] = fds[i];
                snprintf(sd->names[sd->n_stored], sizeof(sd->names[0]), "%s", name);
                sd->n_stored++;
        }
        pthread_mutex_unlock(&sd->lock);
}

/* Reads the notify socket all the time, as systemd does (its queue is short). */
static void *notify_loop(void *arg)
{
        struct fake_systemd *sd = arg;
        while (!sd->stop) {
                struct pollfd p = {.fd = sd->sock, .events = POLLIN};
                if (poll(&p, 1, 50) != 1)
                        continue;
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
                ssize_t n = recvmsg(sd->sock, &msg, MSG_CMSG_CLOEXEC);
                if (n < 0)
                        continue;
                text[n] = '\0';
                int fds[16], n_fds = 0;
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
                        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
                                for (size_t i = 0;
                                     i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int) && n_fds < 16;
                                     i++)
                                        memcpy(&fds[n_fds++], CMSG_DATA(c) + i * sizeof(int),
                                               sizeof(int));
                handle_notify(sd, text, fds, n_fds);
        }
        return NULL;
}

static void fake_systemd_init(struct fake_systemd *sd, const char *app, const char *pool_lines)
{
        struct sockaddr_un addr = {.sun_family = AF_UNIX};

        memset(sd, 0, sizeof(*sd));
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
        fprintf(f, "[forkpool]\nsocket = %s\n[pool main]\nurl = %s\n%s", sd->socket, itest_url(app),
                pool_lines);
        fclose(f);
        sd->sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        CHECK(sd->sock >= 0);
        memcpy(addr.sun_path, sd->notify, strlen(sd->notify) + 1);
        CHECK(bind(sd->sock, (struct sockaddr *)&addr, sizeof(addr)) == 0);
        CHECK(pthread_create(&sd->thread, NULL, notify_loop, sd) == 0);
}

/* Starts forkpoold the way systemd does, passing what the store holds. */
static void fake_systemd_start(struct fake_systemd *sd)
{
        pthread_mutex_lock(&sd->lock);
        int ready = sd->ready, n = sd->n_stored, fds[MAX_STORED];
        char names[MAX_STORED * 65] = "";
        for (int i = 0; i < n; i++) {
                fds[i] = sd->fds[i];
                strcat(names, i ? ":" : "");
                strcat(names, sd->names[i]);
        }
        pthread_mutex_unlock(&sd->lock);

        sd->pid = fork();
        CHECK(sd->pid >= 0);
        if (sd->pid == 0) {
                char pid[16], count[16];
                CHECK(freopen(sd->log, "a", stderr));
                /* Out of the way first, then in place from 3 on (dup2 clears close-on-exec). */
                int high[MAX_STORED];
                for (int i = 0; i < n; i++)
                        high[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 200);
                for (int i = 0; i < n; i++)
                        CHECK(dup2(high[i], 3 + i) == 3 + i);
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
        int64_t end = itest_now_ms() + 10000;
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

static int stored_connections(struct fake_systemd *sd)
{
        int n = 0;
        pthread_mutex_lock(&sd->lock);
        for (int i = 0; i < sd->n_stored; i++)
                n += sd->names[i][0] == 'c';
        pthread_mutex_unlock(&sd->lock);
        return n;
}

static void fake_systemd_stop(struct fake_systemd *sd, int sig)
{
        kill(sd->pid, sig);
        int status = itest_wait_child(sd->pid, 10000);
        CHECK(status >= 0);
        if (sig == SIGTERM)
                CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status %d", status);
        sd->pid = 0;
}

static void fake_systemd_done(struct fake_systemd *sd)
{
        if (sd->pid > 0) {
                kill(sd->pid, SIGTERM);
                itest_wait_child(sd->pid, 10000);
        }
        sd->stop = true;
        pthread_join(sd->thread, NULL);
        for (int i = 0; i < sd->n_stored; i++)
                close(sd->fds[i]);
        close(sd->sock);
        if (!getenv("ITEST_KEEP_LOGS"))
                itest_sh(NULL, 0, "rm -rf %s", sd->dir);
}

static bool backend_alive(PGconn *admin, int pid)
{
        char sql[128];
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM pg_stat_activity WHERE pid = %d", pid);
        return itest_admin_long(admin, sql) == 1;
}

/* SIGTERM (systemctl restart) or SIGKILL (a crash, then Restart=on-failure). */
static void restart_keeps_sessions(int sig)
{
        struct fake_systemd sd;
        PGconn *admin = itest_admin();
        int go[2], ready[2];
        forkpool *fp;
        forkpool_lease *l;
        char app[32];

        snprintf(app, sizeof(app), "it_restart_%d", sig);
        itest_query(admin, "DROP TABLE IF EXISTS it_restart; CREATE TABLE it_restart (v int)");
        fake_systemd_init(&sd, app, "pool_size = 2\nmax_overflow = 0\n");
        fake_systemd_start(&sd);

        /* An idle connection in the pool. */
        CHECK_OK(forkpool_open(sd.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &l));
        int idle_backend = PQbackendPID(forkpool_lease_pg(l));

        /* A worker holding the other one, in the middle of a transaction. */
        CHECK(pipe(go) == 0 && pipe(ready) == 0);
        pid_t worker = fork();
        if (worker == 0) {
                forkpool *mine;
                forkpool_lease *held;
                char x;
                CHECK_OK(forkpool_open(sd.socket, &mine));
                CHECK_OK(forkpool_acquire(mine, "main", 5000, &held));
                PGconn *c = forkpool_lease_pg(held);
                int backend = PQbackendPID(c);
                itest_query(c, "BEGIN");
                itest_query(c, "INSERT INTO it_restart VALUES (1)");
                CHECK(write(ready[1], &backend, sizeof(backend)) == sizeof(backend));
                CHECK(read(go[0], &x, 1) == 1); /* the supervisor restarts meanwhile */
                itest_query(c, "INSERT INTO it_restart VALUES (2)");
                itest_query(c, "COMMIT");
                CHECK_OK(forkpool_release(held)); /* to the new supervisor */
                _exit(0);
        }
        int leased_backend;
        CHECK(read(ready[0], &leased_backend, sizeof(leased_backend)) == sizeof(leased_backend));
        CHECK_OK(forkpool_release(l));
        usleep(100000);
        CHECK_MSG(stored_connections(&sd) == 2, "%d connections in the store",
                  stored_connections(&sd));

        fake_systemd_stop(&sd, sig);
        /* The sessions outlive the supervisor: systemd holds them. */
        CHECK(backend_alive(admin, idle_backend) && backend_alive(admin, leased_backend));

        fake_systemd_start(&sd);
        char name[FP_SHM_NAME_MAX];
        struct fp_segment seg;
        struct fp_shm_pool pool;
        fp_segment_name(sd.socket, name);
        CHECK(fp_segment_open(&seg, name) == 0);
        CHECK(fp_segment_snapshot(&seg, 0, &pool, NULL, 0) == 0);
        fp_segment_close(&seg);
        CHECK_MSG(pool.checked_out == 1 && pool.checked_in == 1 && pool.live == 2,
                  "after the restart: out %d in %d live %d", pool.checked_out, pool.checked_in,
                  pool.live);

        /* The idle one is handed out again: the same backend. */
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &l));
        CHECK(PQbackendPID(forkpool_lease_pg(l)) == idle_backend);
        CHECK_OK(forkpool_release(l));

        /* The transaction open across the restart commits; its release reaches the new one. */
        CHECK(write(go[1], "x", 1) == 1);
        CHECK(itest_wait_child(worker, 10000) == 0);
        CHECK(itest_admin_long(admin, "SELECT count(*) FROM it_restart") == 2);
        int64_t end = itest_now_ms() + 3000;
        do {
                CHECK(fp_segment_open(&seg, name) == 0);
                CHECK(fp_segment_snapshot(&seg, 0, &pool, NULL, 0) == 0);
                fp_segment_close(&seg);
        } while (pool.checked_out != 0 && itest_now_ms() < end && usleep(10000) == 0);
        CHECK_MSG(pool.checked_out == 0 && pool.live == 2 && pool.counters.reclaims == 0,
                  "out %d live %d reclaims %llu", pool.checked_out, pool.live,
                  (unsigned long long)pool.counters.reclaims);
        CHECK(backend_alive(admin, idle_backend) && backend_alive(admin, leased_backend));

        forkpool_close(fp);
        fake_systemd_done(&sd);
        PQfinish(admin);
}

static void test_restart_keeps_sessions(void)
{
        restart_keeps_sessions(SIGTERM);
}

static void test_crash_keeps_sessions(void)
{
        restart_keeps_sessions(SIGKILL);
}

/* A holder that dies while no supervisor runs is reclaimed by the next one. */
static void test_holder_died_meanwhile(void)
{
        struct fake_systemd sd;
        PGconn *admin = itest_admin();
        int ready[2];

        itest_query(admin, "DROP TABLE IF EXISTS it_restart2; CREATE TABLE it_restart2 (v int)");
        fake_systemd_init(&sd, "it_restart_dead", "pool_size = 1\nmax_overflow = 0\n");
        fake_systemd_start(&sd);
        CHECK(pipe(ready) == 0);
        pid_t worker = fork();
        if (worker == 0) {
                forkpool *mine;
                forkpool_lease *held;
                CHECK_OK(forkpool_open(sd.socket, &mine));
                CHECK_OK(forkpool_acquire(mine, "main", 5000, &held));
                PGconn *c = forkpool_lease_pg(held);
                int backend = PQbackendPID(c);
                itest_query(c, "BEGIN");
                itest_query(c, "INSERT INTO it_restart2 VALUES (1)");
                CHECK(write(ready[1], &backend, sizeof(backend)) == sizeof(backend));
                pause();
                _exit(0);
        }
        int backend;
        CHECK(read(ready[0], &backend, sizeof(backend)) == sizeof(backend));
        fake_systemd_stop(&sd, SIGKILL);
        kill(worker, SIGKILL);
        waitpid(worker, NULL, 0);

        fake_systemd_start(&sd);
        /* Reclaimed: shut down, never reused; nothing it left uncommitted is visible. */
        int64_t end = itest_now_ms() + 5000;
        while (backend_alive(admin, backend) && itest_now_ms() < end)
                usleep(20000);
        CHECK(!backend_alive(admin, backend));
        CHECK(itest_admin_long(admin, "SELECT count(*) FROM it_restart2") == 0);
        forkpool *fp;
        forkpool_lease *l;
        CHECK_OK(forkpool_open(sd.socket, &fp));
        CHECK_OK(forkpool_acquire(fp, "main", 5000, &l));
        CHECK(PQbackendPID(forkpool_lease_pg(l)) != backend);
        CHECK_OK(forkpool_release(l));
        forkpool_close(fp);
        fake_systemd_done(&sd);
        PQfinish(admin);
}

ITEST_MAIN({"restart_keeps_sessions", test_restart_keeps_sessions, 60},
           {"crash_keeps_sessions", test_crash_keeps_sessions, 60},
           {"holder_died_meanwhile", test_holder_died_meanwhile, 60})
