/* SPDX-License-Identifier: MIT */
/*
 * forkpool_scale.c — forkpool-scale: how leasing scales with the number of
 * worker processes and the size of the pool, next to the raw IPC it is made of.
 *
 *   forkpool-scale --mode lease --socket PATH --forkpoold-pid PID --pool-size P
 *                  [--pool NAME] [--workers N] [--seconds T] [--no-adopt]
 *                  [--gap-us G] [--header]
 *   forkpool-scale --mode raw [--workers N] [--seconds T] [--header]
 *
 * lease  N worker processes, each looping forkpool_acquire -> forkpool_lease_pg
 *        -> forkpool_release (no query) until a shared deadline. Reports leases/s,
 *        the acquire's wait (p50, p99: the time forkpool_acquire blocks, measured
 *        with CLOCK_MONOTONIC into a log-linear histogram with 64 bins per power
 *        of two), the whole lease's p50/p99, forkpoold's CPU per lease
 *        (utime + stime from /proc/PID/stat over the run / leases), forkpoold's
 *        VmRSS per pool slot (before / after this program holds P leases at once)
 *        and per connected worker (before / after the N workers opened their
 *        control connection and leased once), and what libforkpool adds to a
 *        worker (its VmRSS and RssAnon after forkpool_open + one lease + release,
 *        minus before), and forkpoold's wake-ups per lease (its voluntary context
 *        switches over the run / leases). With --gap-us G each worker pauses G µs after each
 *        release (a prefork worker answering its request after the queries):
 *        leases no longer come back to back, as they do in a tight loop.
 * raw    the floor under a lease: one server process with an epoll loop over N
 *        AF_UNIX SOCK_SEQPACKET socketpairs; each of N clients sends 16 bytes and
 *        receives 64 bytes carrying one descriptor (SCM_RIGHTS) which it closes.
 *        Reports round trips/s and p50/p99.
 *
 * Output: one CSV line (--header prints the column names first). Bounded: every
 * loop ends at the deadline; the parent kills nothing it did not fork.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <forkpool.h>
#include <libpq-fe.h>

#define MAX_WORKERS 4096
#define SUB_BITS    6
#define SUB         (1 << SUB_BITS)
#define HIST_BINS   (SUB * 40)
#define ERRMSG_MAX  160

struct hist {
        uint64_t bins[HIST_BINS];
};

struct worker_result {
        uint64_t ops;
        uint64_t errors;
        int64_t rss_added_kb;  /* VmRSS after open + one lease, minus before */
        int64_t anon_added_kb; /* RssAnon, the same */
        char first_error[ERRMSG_MAX];
};

struct shared {
        uint64_t deadline_ns;
        struct hist wait;    /* forkpool_acquire's time (raw: the round trip) */
        struct hist lease;   /* acquire + adopt + release */
        struct hist adopt;   /* forkpool_lease_pg */
        struct hist release; /* forkpool_release */
        struct worker_result w[MAX_WORKERS];
};

struct options {
        const char *mode;
        const char *socket_path;
        const char *pool;
        pid_t forkpoold_pid;
        int workers;
        int seconds;
        int pool_size;
        bool adopt;
        bool header;
        int gap_us; /* pause after each release */
};

static uint64_t now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Log-linear bin of a duration in ns: exact below 64 ns, then 64 bins per power of two. */
static unsigned bin_of(uint64_t v)
{
        if (v < SUB)
                return (unsigned)v;
        unsigned e = 63u - (unsigned)__builtin_clzll(v); /* e >= SUB_BITS */
        unsigned idx = (e - SUB_BITS + 1) * SUB + (unsigned)((v >> (e - SUB_BITS)) & (SUB - 1));
        return idx < HIST_BINS ? idx : HIST_BINS - 1;
}

/* The lower edge of a bin, in ns. */
static double bin_value(unsigned idx)
{
        if (idx < SUB)
                return idx;
        unsigned e = idx / SUB + SUB_BITS - 1, sub = idx % SUB;
        return (double)((uint64_t)(SUB + sub) << (e - SUB_BITS));
}

static void hist_add(struct hist *h, uint64_t v)
{
        h->bins[bin_of(v)]++;
}

/* Adds a worker's local histogram into the shared one. */
static void hist_merge(struct hist *dst, const struct hist *src)
{
        for (unsigned i = 0; i < HIST_BINS; i++)
                if (src->bins[i])
                        __atomic_fetch_add(&dst->bins[i], src->bins[i], __ATOMIC_RELAXED);
}

/* The q-quantile (0..1) in µs, or 0 for an empty histogram. */
static double hist_quantile_us(const struct hist *h, double q)
{
        uint64_t total = 0, seen = 0;

        for (unsigned i = 0; i < HIST_BINS; i++)
                total += h->bins[i];
        if (!total)
                return 0;
        uint64_t rank = (uint64_t)(q * (double)total + 0.5);
        if (rank < 1)
                rank = 1;
        for (unsigned i = 0; i < HIST_BINS; i++) {
                seen += h->bins[i];
                if (seen >= rank)
                        return bin_value(i) / 1e3;
        }
        return 0;
}

/* The number of a "Key:   N [kB]" line of /proc/PID/status (sizes in kB), or -1. */
static long status_value(pid_t pid, const char *key)
{
        char path[64], line[256];
        size_t klen = strlen(key);
        long v = -1;
        FILE *f;

        snprintf(path, sizeof(path), pid ? "/proc/%d/status" : "/proc/self/status", (int)pid);
        f = fopen(path, "re");
        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
                        v = strtol(line + klen + 1, NULL, 10);
                        break;
                }
        fclose(f);
        return v;
}

/* utime + stime of a process in seconds, or -1. */
static double cpu_seconds(pid_t pid)
{
        char path[64], buf[1024];
        unsigned long ut, st;
        ssize_t n;
        int fd;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -1;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return -1;
        buf[n] = '\0';
        char *p = strrchr(buf, ')');
        /* After ") ": state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
         * cmajflt utime(14) stime(15). */
        if (!p ||
            sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
                return -1;
        return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void record_error(struct worker_result *res, const char *what, const char *detail)
{
        if (res->errors++ == 0)
                snprintf(res->first_error, sizeof(res->first_error), "%s: %s", what, detail);
}

/* One acquire + (adopt) + release; the time of each step in t[0..2] (ns). */
static int lease_once(const struct options *opt, forkpool *fp, uint64_t t[3])
{
        forkpool_lease *lease;
        uint64_t t0 = now_ns(), t1, t2;
        int r = forkpool_acquire(fp, opt->pool, -1, &lease);

        t1 = now_ns();
        t[0] = t1 - t0;
        if (r < 0)
                return r;
        if (opt->adopt && !forkpool_lease_pg(lease)) {
                r = errno > 0 ? -errno : -EIO;
                forkpool_invalidate(lease);
                return r;
        }
        t2 = now_ns();
        t[1] = t2 - t1;
        r = forkpool_release(lease);
        t[2] = now_ns() - t2;
        return r;
}

/* Tells the parent this process is ready, then waits for go_fd to close. */
static bool barrier(int ready_fd, int go_fd)
{
        char byte = 'r';
        bool ok = write(ready_fd, &byte, 1) == 1;

        close(ready_fd);
        return ok && read(go_fd, &byte, 1) == 0;
}

static int lease_worker(const struct options *opt, struct shared *sh, int idx, int ready_fd,
                        int go_fd)
{
        struct worker_result *res = &sh->w[idx];
        /* Static: each forked worker has its own copy, zeroed, with nothing to free. */
        static struct hist wait_h, whole_h, adopt_h, rel_h;
        struct hist *wait = &wait_h, *whole = &whole_h, *adopt = &adopt_h, *rel = &rel_h;
        long rss0 = status_value(0, "VmRSS"), anon0 = status_value(0, "RssAnon");
        uint64_t w[3], t0, deadline;
        forkpool *fp;
        int r;

        r = forkpool_open(opt->socket_path, &fp);
        if (r < 0) {
                record_error(res, "forkpool_open", forkpool_strerror(r));
                return 1;
        }
        r = lease_once(opt, fp, w);
        if (r < 0) {
                record_error(res, forkpool_strerror(r), forkpool_last_error());
                return 1;
        }
        res->rss_added_kb = status_value(0, "VmRSS") - rss0;
        res->anon_added_kb = status_value(0, "RssAnon") - anon0;
        if (!barrier(ready_fd, go_fd))
                return 1;
        deadline = sh->deadline_ns;
        while ((t0 = now_ns()) < deadline) {
                r = lease_once(opt, fp, w);
                if (r < 0) {
                        record_error(res, forkpool_strerror(r), forkpool_last_error());
                        if (r == -ECONNREFUSED || r == -ESHUTDOWN)
                                break;
                        continue;
                }
                hist_add(wait, w[0]);
                hist_add(adopt, w[1]);
                hist_add(rel, w[2]);
                hist_add(whole, now_ns() - t0);
                res->ops++;
                if (opt->gap_us > 0)
                        usleep((useconds_t)opt->gap_us);
        }
        hist_merge(&sh->wait, wait);
        hist_merge(&sh->lease, whole);
        hist_merge(&sh->adopt, adopt);
        hist_merge(&sh->release, rel);
        forkpool_close(fp);
        return 0;
}

/* The raw client: 16 bytes out, 64 bytes and a descriptor back, close it. */
static int raw_client(struct shared *sh, int idx, int fd, int ready_fd, int go_fd)
{
        struct worker_result *res = &sh->w[idx];
        static struct hist rt_h; /* per forked client, see lease_worker() */
        struct hist *rt = &rt_h;
        char req[16] = "lease", reply[64];
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int))];
        } cm;
        uint64_t t0, deadline;

        if (!barrier(ready_fd, go_fd))
                return 1;
        deadline = sh->deadline_ns;
        while ((t0 = now_ns()) < deadline) {
                struct iovec iov = {reply, sizeof(reply)};
                struct msghdr msg = {.msg_iov = &iov,
                                     .msg_iovlen = 1,
                                     .msg_control = cm.buf,
                                     .msg_controllen = sizeof(cm.buf)};

                if (send(fd, req, sizeof(req), 0) != sizeof(req) ||
                    recvmsg(fd, &msg, MSG_CMSG_CLOEXEC) <= 0) {
                        record_error(res, "raw", strerror(errno));
                        break;
                }
                struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
                if (c && c->cmsg_type == SCM_RIGHTS) {
                        int got;
                        memcpy(&got, CMSG_DATA(c), sizeof(got));
                        close(got);
                }
                hist_add(rt, now_ns() - t0);
                res->ops++;
        }
        hist_merge(&sh->wait, rt);
        hist_merge(&sh->lease, rt);
        return 0;
}

/* The raw server: epoll (level-triggered) over every server end until the deadline + 1 s. */
static int raw_server(struct shared *sh, const int *fds, int n, int pass_fd, int ready_fd,
                      int go_fd)
{
        struct epoll_event evs[64];
        char req[16], reply[64] = "fd";
        int ep = epoll_create1(EPOLL_CLOEXEC);

        if (ep < 0)
                return 1;
        for (int i = 0; i < n; i++) {
                struct epoll_event ev = {.events = EPOLLIN, .data.fd = fds[i]};
                if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) < 0)
                        return 1;
        }
        if (!barrier(ready_fd, go_fd))
                return 1;
        uint64_t stop = sh->deadline_ns + 1000000000u;
        while (now_ns() < stop) {
                int k = epoll_wait(ep, evs, 64, 100);
                for (int i = 0; i < k; i++) {
                        int fd = evs[i].data.fd;
                        if (evs[i].events & (EPOLLHUP | EPOLLERR)) {
                                epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                                continue;
                        }
                        if (recv(fd, req, sizeof(req), MSG_DONTWAIT) <= 0)
                                continue;
                        union {
                                struct cmsghdr h;
                                char buf[CMSG_SPACE(sizeof(int))];
                        } cm = {0};
                        struct iovec iov = {reply, sizeof(reply)};
                        struct msghdr msg = {.msg_iov = &iov,
                                             .msg_iovlen = 1,
                                             .msg_control = cm.buf,
                                             .msg_controllen = sizeof(cm.buf)};
                        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
                        c->cmsg_level = SOL_SOCKET;
                        c->cmsg_type = SCM_RIGHTS;
                        c->cmsg_len = CMSG_LEN(sizeof(int));
                        memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
                        (void)sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
                }
        }
        return 0;
}

/*
 * Holds pool_size leases at once so that forkpoold opens every connection of
 * the pool, and returns forkpoold's VmRSS growth in kB (or -1).
 */
static long fill_pool(const struct options *opt, long *rss_before)
{
        forkpool_lease **leases = calloc((size_t)opt->pool_size, sizeof(*leases));
        long grown = -1;
        forkpool *fp;
        int n = 0, r;

        if (!leases)
                return -1;
        *rss_before = status_value(opt->forkpoold_pid, "VmRSS");
        r = forkpool_open(opt->socket_path, &fp);
        if (r < 0) {
                fprintf(stderr, "forkpool_open: %s\n", forkpool_strerror(r));
                free(leases);
                return -1;
        }
        for (; n < opt->pool_size; n++) {
                r = forkpool_acquire(fp, opt->pool, 60000, &leases[n]);
                if (r < 0) {
                        fprintf(stderr, "fill: acquire %d: %s %s\n", n, forkpool_strerror(r),
                                forkpool_last_error());
                        break;
                }
        }
        if (n == opt->pool_size)
                grown = status_value(opt->forkpoold_pid, "VmRSS") - *rss_before;
        for (int i = 0; i < n; i++)
                forkpool_release(leases[i]);
        forkpool_close(fp);
        free(leases);
        return grown;
}

static int run(const struct options *opt)
{
        bool raw = strcmp(opt->mode, "raw") == 0;
        int n = opt->workers, ready[2], go[2], n_ready = 0, want;
        long slot_grown = 0, rss_pool = 0, rss_workers = 0, rss_start = 0;
        uint64_t total = 0, errors = 0;
        double cpu0 = 0, cpu1 = 0;
        long sleeps0 = 0, sleeps1 = 0; /* forkpoold's voluntary context switches: its wake-ups */
        int64_t add_rss = 0, add_anon = 0;
        static pid_t pids[MAX_WORKERS + 1];
        static int srv[MAX_WORKERS];
        int pass[2] = {-1, -1};
        struct shared *sh;
        char byte;

        sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (sh == MAP_FAILED)
                return 1;
        if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0)
                goto fail;
        if (!raw) {
                slot_grown = fill_pool(opt, &rss_start);
                if (slot_grown < 0)
                        goto fail;
                rss_pool = status_value(opt->forkpoold_pid, "VmRSS");
        } else if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pass) < 0) {
                goto fail;
        }
        fflush(NULL);
        for (int i = 0; i < n; i++) {
                int sv[2];

                if (raw && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
                        fprintf(stderr, "socketpair: %m\n");
                        n = i;
                        break;
                }
                pids[i] = fork();
                if (pids[i] < 0) {
                        fprintf(stderr, "fork: %m\n");
                        n = i;
                        break;
                }
                if (pids[i] == 0) {
                        close(ready[0]);
                        close(go[1]);
                        if (!raw)
                                _exit(lease_worker(opt, sh, i, ready[1], go[0]));
                        for (int j = 0; j < i; j++)
                                close(srv[j]);
                        close(sv[0]);
                        close(pass[0]);
                        close(pass[1]);
                        _exit(raw_client(sh, i, sv[1], ready[1], go[0]));
                }
                if (raw) {
                        close(sv[1]);
                        srv[i] = sv[0];
                }
        }
        want = n;
        if (raw) {
                pids[n] = fork();
                if (pids[n] == 0) {
                        close(ready[0]);
                        close(go[1]);
                        _exit(raw_server(sh, srv, n, pass[0], ready[1], go[0]));
                }
                want = n + 1;
                for (int i = 0; i < n; i++)
                        close(srv[i]);
        }
        close(ready[1]);
        close(go[0]);
        while (n_ready < want && read(ready[0], &byte, 1) == 1)
                n_ready++;
        if (!raw) {
                rss_workers = status_value(opt->forkpoold_pid, "VmRSS");
                cpu0 = cpu_seconds(opt->forkpoold_pid);
                sleeps0 = status_value(opt->forkpoold_pid, "voluntary_ctxt_switches");
        }
        sh->deadline_ns = now_ns() + (uint64_t)opt->seconds * 1000000000u;
        close(go[1]);
        if (!raw) {
                /* Sample forkpoold's CPU right at the deadline, not after the stragglers. */
                struct timespec ts = {opt->seconds, 0};
                while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                        ;
                cpu1 = cpu_seconds(opt->forkpoold_pid);
                sleeps1 = status_value(opt->forkpoold_pid, "voluntary_ctxt_switches");
        }
        for (int i = 0; i < want; i++)
                if (pids[i] > 0)
                        waitpid(pids[i], NULL, 0);
        for (int i = 0; i < n; i++) {
                total += sh->w[i].ops;
                errors += sh->w[i].errors;
                add_rss += sh->w[i].rss_added_kb;
                add_anon += sh->w[i].anon_added_kb;
                if (sh->w[i].errors && errors == sh->w[i].errors)
                        fprintf(stderr, "worker %d: %" PRIu64 " errors, first: %s\n", i,
                                sh->w[i].errors, sh->w[i].first_error);
        }
        if (opt->header)
                printf("mode,workers,pool_size,seconds,ops,ops_per_s,wait_p50_us,wait_p99_us,"
                       "op_p50_us,op_p99_us,forkpoold_cpu_us_per_op,forkpoold_rss_start_kb,"
                       "rss_kb_per_slot,rss_kb_per_worker,worker_added_rss_kb,"
                       "worker_added_anon_kb,adopt_p50_us,release_p50_us,errors,load1,"
                       "forkpoold_wakeups_per_op\n");
        double load = 0;
        FILE *la = fopen("/proc/loadavg", "re");
        if (la) {
                if (fscanf(la, "%lf", &load) != 1)
                        load = 0;
                fclose(la);
        }
        printf("%s,%d,%d,%d,%" PRIu64 ",%.0f,%.1f,%.1f,%.1f,%.1f,", raw ? "raw" : "lease", n,
               raw ? 0 : opt->pool_size, opt->seconds, total, (double)total / opt->seconds,
               hist_quantile_us(&sh->wait, 0.50), hist_quantile_us(&sh->wait, 0.99),
               hist_quantile_us(&sh->lease, 0.50), hist_quantile_us(&sh->lease, 0.99));
        if (raw)
                printf(",,,,,,,,");
        else
                printf("%.2f,%ld,%.1f,%.2f,%.0f,%.0f,%.1f,%.1f,",
                       total ? (cpu1 - cpu0) * 1e6 / (double)total : 0.0, rss_start,
                       (double)slot_grown / opt->pool_size,
                       (double)(rss_workers - rss_pool) / (n ? n : 1),
                       n ? (double)add_rss / n : 0.0, n ? (double)add_anon / n : 0.0,
                       hist_quantile_us(&sh->adopt, 0.50), hist_quantile_us(&sh->release, 0.50));
        printf("%" PRIu64 ",%.2f,", errors, load);
        if (raw || !total)
                printf("\n");
        else
                printf("%.2f\n", (double)(sleeps1 - sleeps0) / (double)total);
        munmap(sh, sizeof(*sh));
        return errors || n_ready < want ? 1 : 0;
fail:
        munmap(sh, sizeof(*sh));
        return 1;
}

static void usage(FILE *f)
{
        fprintf(f, "usage: forkpool-scale --mode lease --socket PATH --forkpoold-pid PID\n"
                   "                      --pool-size P [--pool NAME] [--workers N]\n"
                   "                      [--seconds T] [--no-adopt] [--gap-us G] [--header]\n"
                   "       forkpool-scale --mode raw [--workers N] [--seconds T] [--header]\n"
                   "defaults: --pool default --workers 8 --seconds 5\n");
}

int main(int argc, char **argv)
{
        static const struct option longopts[] = {{"mode", required_argument, NULL, 'm'},
                                                 {"socket", required_argument, NULL, 's'},
                                                 {"pool", required_argument, NULL, 'p'},
                                                 {"forkpoold-pid", required_argument, NULL, 'f'},
                                                 {"pool-size", required_argument, NULL, 'P'},
                                                 {"workers", required_argument, NULL, 'w'},
                                                 {"seconds", required_argument, NULL, 't'},
                                                 {"no-adopt", no_argument, NULL, 'A'},
                                                 {"gap-us", required_argument, NULL, 'g'},
                                                 {"header", no_argument, NULL, 'H'},
                                                 {"help", no_argument, NULL, 'h'},
                                                 {}};
        struct options opt = {"lease", NULL, "default", 0, 8, 5, 0, true, false, 0};
        int c;

        while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
                switch (c) {
                case 'm':
                        opt.mode = optarg;
                        break;
                case 's':
                        opt.socket_path = optarg;
                        break;
                case 'p':
                        opt.pool = optarg;
                        break;
                case 'f':
                        opt.forkpoold_pid = atoi(optarg);
                        break;
                case 'P':
                        opt.pool_size = atoi(optarg);
                        break;
                case 'w':
                        opt.workers = atoi(optarg);
                        break;
                case 't':
                        opt.seconds = atoi(optarg);
                        break;
                case 'A':
                        opt.adopt = false;
                        break;
                case 'g':
                        opt.gap_us = atoi(optarg);
                        break;
                case 'H':
                        opt.header = true;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        bool raw = strcmp(opt.mode, "raw") == 0;
        if (optind != argc || (!raw && strcmp(opt.mode, "lease") != 0) || opt.workers < 1 ||
            opt.workers > MAX_WORKERS || opt.seconds < 1 || opt.gap_us < 0 ||
            (!raw && (opt.forkpoold_pid <= 0 || opt.pool_size < 1))) {
                usage(stderr);
                return 2;
        }
        signal(SIGPIPE, SIG_IGN);
        return run(&opt);
}
