/* SPDX-License-Identifier: MIT */
/*
 * demo_server.c — forkpool-demo-server, a small prefork HTTP/1.0 server.
 *
 *   forkpool-demo-server [--listen 127.0.0.1:8080] [--workers N] [--pool NAME]
 *                        [--socket PATH] [--query SQL]
 *
 * The parent binds one listening socket, forks N workers and supervises them:
 * a worker that dies is restarted, SIGTERM or SIGINT stops every worker and
 * the parent exits 0. Each worker opens its own forkpool handle after fork and
 * serves one request per TCP connection:
 *
 *   GET /health  200 without touching the database
 *   GET /        lease a connection, run the query, give it back, answer 200
 *                (503 with Retry-After when no connection was free in time,
 *                500 with the reason on any other error)
 *
 * This is the shape of Apache prefork or PHP-FPM, with forkpool in place of a
 * per-process connection: N workers share pool_size + max_overflow database
 * connections, and queries go straight from the worker to the database.
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <forkpool.h>
#include <libpq-fe.h>

#define MAX_WORKERS 1024
#define REQUEST_MAX 4096
#define BODY_MAX    8192

struct options {
        const char *listen;
        int workers;
        const char *pool;
        const char *socket_path;
        const char *query;
        double max_wait_s; /* shed load when the oldest waiter has waited this long */
};

static volatile sig_atomic_t worker_stop;

static void worker_on_signal(int sig)
{
        (void)sig;
        worker_stop = 1;
}

static void parent_on_sigchld(int sig)
{
        /* Only here so that a blocked SIGCHLD stays pending for sigwaitinfo(). */
        (void)sig;
}

/* Binds and listens on "host:port" ("[::1]:8080" for IPv6). Returns the fd or -errno. */
static int listen_on(const char *spec)
{
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                                 .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV};
        struct addrinfo *ai;
        char host[256];
        const char *colon = strrchr(spec, ':');
        int fd, one = 1, r;
        size_t len;

        if (!colon || (size_t)(colon - spec) >= sizeof(host))
                return -EINVAL;
        len = (size_t)(colon - spec);
        if (len >= 2 && spec[0] == '[' && spec[len - 1] == ']') {
                spec++; /* "[::1]:8080" */
                len -= 2;
        }
        memcpy(host, spec, len);
        host[len] = '\0';
        r = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &ai);
        if (r != 0)
                return r == EAI_SYSTEM ? -errno : -EINVAL;
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                r = -errno;
                goto out;
        }
        r = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (r == 0)
                r = bind(fd, ai->ai_addr, ai->ai_addrlen);
        if (r == 0)
                r = listen(fd, SOMAXCONN);
        if (r < 0) {
                r = -errno;
                close(fd);
                goto out;
        }
        r = fd;
out:
        freeaddrinfo(ai);
        return r;
}

/* Writes all of buf to a socket, retrying after EINTR. Returns 0 or -errno. */
static int send_all(int fd, const char *buf, size_t len)
{
        while (len > 0) {
                ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                buf += n;
                len -= (size_t)n;
        }
        return 0;
}

static void respond(int fd, int status, const char *reason, bool retry_after, const char *body)
{
        char head[256];
        int n;

        n = snprintf(head, sizeof(head),
                     "HTTP/1.0 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %zu\r\n%sConnection: close\r\n\r\n",
                     status, reason, strlen(body), retry_after ? "Retry-After: 1\r\n" : "");
        if (send_all(fd, head, (size_t)n) == 0)
                send_all(fd, body, strlen(body));
}

/* Appends the rows of res to body as tab-separated lines; marks a cut with "...". */
static void append_result(char *body, size_t cap, const PGresult *res)
{
        size_t len = strlen(body);

        for (int row = 0; row < PQntuples(res) && len < cap; row++) {
                for (int col = 0; col < PQnfields(res) && len < cap; col++)
                        len += (size_t)snprintf(
                                body + len, cap - len, "%s%s", col ? "\t" : "",
                                PQgetisnull(res, row, col) ? "NULL" : PQgetvalue(res, row, col));
                if (len < cap)
                        len += (size_t)snprintf(body + len, cap - len, "\n");
        }
        if (len >= cap)
                strcpy(body + cap - 5, "...\n");
}

/*
 * Runs the query on a leased connection and answers. The lease is held only
 * around PQexec(): it goes back before the response is written. *fpp is the
 * worker's handle, opened here if forkpoold was not there at the start.
 */
static void serve_query(int fd, forkpool **fpp, const struct options *opt)
{
        static char body[BODY_MAX];
        forkpool_lease *lease;
        PGresult *res;
        PGconn *conn;
        int r;

        r = *fpp ? 0 : forkpool_open(opt->socket_path, fpp);
        if (r < 0) {
                snprintf(body, sizeof(body), "forkpool_open: %s\n", forkpool_strerror(r));
                respond(fd, 503, "Service Unavailable", true, body);
                return;
        }
        /* Backpressure: if acquires already queue for too long, answer 503 before queueing. */
        forkpool_pool_stats st = FORKPOOL_POOL_STATS_INIT;
        if (forkpool_pool_state(*fpp, opt->pool, &st) == 0 && st.waiting > 0 &&
            st.oldest_wait_s > opt->max_wait_s) {
                respond(fd, 503, "Service Unavailable", true, "the database pool is saturated\n");
                return;
        }
        r = forkpool_acquire(*fpp, opt->pool, -1, &lease);
        if (r == -ETIMEDOUT) {
                respond(fd, 503, "Service Unavailable", true, "no database connection free\n");
                return;
        }
        if (r < 0) {
                snprintf(body, sizeof(body), "forkpool_acquire: %s: %s\n", forkpool_strerror(r),
                         forkpool_last_error());
                respond(fd, 500, "Internal Server Error", false, body);
                return;
        }
        conn = forkpool_lease_pg(lease);
        if (!conn) {
                snprintf(body, sizeof(body), "forkpool_lease_pg: %s\n", strerror(errno));
                forkpool_invalidate(lease);
                respond(fd, 500, "Internal Server Error", false, body);
                return;
        }
        snprintf(body, sizeof(body), "worker pid: %d\nbackend pid: %d\nresult:\n", (int)getpid(),
                 forkpool_lease_backend_pid(lease));
        res = PQexec(conn, opt->query);
        r = PQresultStatus(res);
        if (r == PGRES_TUPLES_OK || r == PGRES_COMMAND_OK)
                append_result(body, sizeof(body), res);
        else
                snprintf(body, sizeof(body), "query failed: %s", PQerrorMessage(conn));
        PQclear(res);
        /* PQexec() has read every result, so the connection is at a protocol boundary. */
        if (PQstatus(conn) == CONNECTION_OK)
                forkpool_release(lease);
        else
                forkpool_invalidate(lease);
        if (r == PGRES_TUPLES_OK || r == PGRES_COMMAND_OK)
                respond(fd, 200, "OK", false, body);
        else
                respond(fd, 500, "Internal Server Error", false, body);
}

/* Reads one request head, routes it and answers. */
static void serve_client(int fd, forkpool **fpp, const struct options *opt)
{
        char req[REQUEST_MAX], path[256];
        struct timeval tv = {.tv_sec = 5};
        size_t len = 0;

        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        while (len < sizeof(req) - 1) {
                ssize_t n = recv(fd, req + len, sizeof(req) - 1 - len, 0);

                if (n < 0 && errno == EINTR && !worker_stop)
                        continue;
                if (n <= 0)
                        return; /* Closed, timed out or stopping: nothing to answer. */
                len += (size_t)n;
                req[len] = '\0';
                if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
                        break;
        }
        req[len] = '\0';
        if (strncmp(req, "GET ", 4) != 0) {
                respond(fd, 405, "Method Not Allowed", false, "only GET is served\n");
                return;
        }
        if (sscanf(req + 4, "%255s", path) != 1)
                path[0] = '\0';
        path[strcspn(path, "?")] = '\0';
        if (strcmp(path, "/health") == 0)
                respond(fd, 200, "OK", false, "ok\n");
        else if (strcmp(path, "/") == 0)
                serve_query(fd, fpp, opt);
        else
                respond(fd, 404, "Not Found", false, "try / or /health\n");
}

static int worker_main(int listen_fd, const struct options *opt)
{
        struct sigaction sa = {.sa_handler = worker_on_signal}; /* no SA_RESTART */
        sigset_t all;
        forkpool *fp = NULL;
        int r;

        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
        signal(SIGCHLD, SIG_DFL);
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);

        /* One control connection per worker; without forkpoold, / answers 503 until it is back. */
        r = forkpool_open(opt->socket_path, &fp);
        if (r < 0)
                fprintf(stderr, "worker %d: forkpool_open: %s (will retry per request)\n",
                        (int)getpid(), forkpool_strerror(r));
        while (!worker_stop) {
                int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);

                if (fd < 0) {
                        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                            errno == ENOMEM)
                                usleep(10000);
                        continue; /* EINTR, ECONNABORTED, ...: try again. */
                }
                serve_client(fd, &fp, opt);
                close(fd);
        }
        forkpool_close(fp);
        return 0;
}

struct worker {
        pid_t pid;      /* 0 when not running */
        double started; /* CLOCK_MONOTONIC seconds */
};

static double now_sec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void spawn_worker(struct worker *w, int listen_fd, const struct options *opt)
{
        w->pid = fork();
        if (w->pid == 0)
                _exit(worker_main(listen_fd, opt));
        if (w->pid < 0) {
                fprintf(stderr, "forkpool-demo-server: fork: %m\n");
                w->pid = 0;
        }
        w->started = now_sec();
}

/* Sends SIGTERM to every worker, then reaps them all (SIGKILL after 5 s). */
static void stop_workers(struct worker *workers, int n)
{
        struct timespec tick = {.tv_nsec = 100 * 1000 * 1000};
        double deadline = now_sec() + 5;
        sigset_t chld;
        pid_t pid;

        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        for (int i = 0; i < n; i++)
                if (workers[i].pid > 0)
                        kill(workers[i].pid, SIGTERM);
        for (;;) {
                pid = waitpid(-1, NULL, WNOHANG);
                for (int i = 0; pid > 0 && i < n; i++)
                        if (workers[i].pid == pid)
                                workers[i].pid = 0;
                if (pid > 0)
                        continue;
                if (pid < 0 && errno != EINTR)
                        break; /* ECHILD: all reaped. */
                if (now_sec() > deadline)
                        for (int i = 0; i < n; i++)
                                if (workers[i].pid > 0)
                                        kill(workers[i].pid, SIGKILL);
                sigtimedwait(&chld, NULL, &tick);
        }
}

/*
 * Forks the workers and keeps them running until SIGTERM or SIGINT. Signals
 * are taken synchronously with sigwaitinfo(), so none is lost between a check
 * and a wait.
 */
static void supervise(int listen_fd, const struct options *opt)
{
        static struct worker workers[MAX_WORKERS];
        struct sigaction sa = {.sa_handler = parent_on_sigchld};
        struct timespec one_sec = {.tv_sec = 1};
        sigset_t all, stop;
        siginfo_t si;
        int status;
        pid_t pid;

        sigaction(SIGCHLD, &sa, NULL);
        sigemptyset(&stop);
        sigaddset(&stop, SIGTERM);
        sigaddset(&stop, SIGINT);
        all = stop;
        sigaddset(&all, SIGCHLD);
        sigprocmask(SIG_BLOCK, &all, NULL);

        for (int i = 0; i < opt->workers; i++)
                spawn_worker(&workers[i], listen_fd, opt);
        while (sigwaitinfo(&all, &si) < 0 || si.si_signo == SIGCHLD) {
                while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
                        for (int i = 0; i < opt->workers; i++) {
                                if (workers[i].pid != pid)
                                        continue;
                                fprintf(stderr,
                                        "forkpool-demo-server: worker %d %s %d, restarting\n",
                                        (int)pid,
                                        WIFSIGNALED(status) ? "killed by signal" : "exited",
                                        WIFSIGNALED(status) ? WTERMSIG(status)
                                                            : WEXITSTATUS(status));
                                /* One that dies at once (no forkpoold?) must not be respawned in a
                                 * tight loop: wait a second, or for the stop signal. */
                                if (now_sec() - workers[i].started < 1 &&
                                    sigtimedwait(&stop, &si, &one_sec) > 0)
                                        goto out;
                                spawn_worker(&workers[i], listen_fd, opt);
                        }
                }
        }
out:
        fprintf(stderr, "forkpool-demo-server: %s, stopping %d workers\n", strsignal(si.si_signo),
                opt->workers);
        stop_workers(workers, opt->workers);
}

static void usage(FILE *f)
{
        fprintf(f, "usage: forkpool-demo-server [--listen HOST:PORT] [--workers N] [--pool NAME]\n"
                   "                            [--socket PATH] [--query SQL] [--max-wait SEC]\n"
                   "defaults: --listen 127.0.0.1:8080 --workers 4 --pool default\n"
                   "          --query 'SELECT pg_backend_pid(), now()' --max-wait 1\n"
                   "--max-wait: answer 503 at once while the pool's oldest waiter has waited\n"
                   "longer than this (read from forkpoold's segment, no round trip)\n");
}

int main(int argc, char **argv)
{
        static const struct option longopts[] = {{"listen", required_argument, NULL, 'l'},
                                                 {"workers", required_argument, NULL, 'w'},
                                                 {"pool", required_argument, NULL, 'p'},
                                                 {"socket", required_argument, NULL, 's'},
                                                 {"query", required_argument, NULL, 'q'},
                                                 {"max-wait", required_argument, NULL, 'm'},
                                                 {"help", no_argument, NULL, 'h'},
                                                 {}};
        struct options opt = {
                "127.0.0.1:8080", 4, "default", NULL, "SELECT pg_backend_pid(), now()", 1.0};
        struct sockaddr_storage addr;
        socklen_t addrlen = sizeof(addr);
        char host[NI_MAXHOST], port[NI_MAXSERV];
        int c, listen_fd;

        while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
                if (c == 'l')
                        opt.listen = optarg;
                else if (c == 'w')
                        opt.workers = atoi(optarg);
                else if (c == 'p')
                        opt.pool = optarg;
                else if (c == 's')
                        opt.socket_path = optarg;
                else if (c == 'q')
                        opt.query = optarg;
                else if (c == 'm')
                        opt.max_wait_s = atof(optarg);
                else {
                        usage(c == 'h' ? stdout : stderr);
                        return c == 'h' ? 0 : 2;
                }
        }
        if (optind != argc || opt.workers < 1 || opt.workers > MAX_WORKERS) {
                usage(stderr);
                return 2;
        }
        listen_fd = listen_on(opt.listen);
        if (listen_fd < 0) {
                fprintf(stderr, "forkpool-demo-server: cannot listen on %s: %s\n", opt.listen,
                        strerror(-listen_fd));
                return 1;
        }
        getsockname(listen_fd, (struct sockaddr *)&addr, &addrlen);
        getnameinfo((struct sockaddr *)&addr, addrlen, host, sizeof(host), port, sizeof(port),
                    NI_NUMERICHOST | NI_NUMERICSERV);
        fprintf(stderr, "forkpool-demo-server: listening on %s:%s, %d workers, pool '%s'\n", host,
                port, opt.workers, opt.pool);
        supervise(listen_fd, &opt);
        close(listen_fd);
        return 0;
}
