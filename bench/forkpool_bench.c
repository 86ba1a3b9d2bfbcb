/* SPDX-License-Identifier: MIT */
/*
 * forkpool_bench.c — forkpool-bench: what a lease costs next to what it saves.
 *
 *   forkpool-bench [--mode all|lease|connect|throughput] [--socket PATH] [--pool NAME]
 *                  [--iterations N] [--connect-iterations N] [--procs N] [--seconds T]
 *                  [--direct CONNINFO] [--db postgresql|mysql] [--alternate]
 *
 * lease       median and p99 of forkpool_acquire + forkpool_lease_pg + forkpool_release;
 *             with --alternate each lease is taken while the previous one is still
 *             held (then released), so that consecutive leases alternate between
 *             two connections of the pool (which needs a pool_size of at least 2)
 * connect     median and p99 of PQconnectdb + PQfinish against the same server, and
 *             the ratio connect / lease (the goal is at least 20)
 * throughput  N processes doing acquire -> SELECT 1 -> release for T seconds, next to
 *             N processes each holding a persistent PGconn doing SELECT 1
 *
 * The direct conninfo comes from --direct, else libpq's PG* environment. The
 * results are a markdown table on stdout; progress and errors go to stderr.
 *
 * --db mysql measures a MySQL/MariaDB pool the same way: forkpool_lease_mysql,
 * mysql_real_connect + mysql_close (the goal is at least 5: a MariaDB connect
 * is cheap), persistent MYSQL handles. --direct is then a Connector/C
 * connection string, e.g. "socket=/run/mysqld/mysqld.sock;user=app;
 * password=secret;database=appdb".
 * Compare ratios taken in one run: on a small VM the absolute numbers move
 * with CPU placement (bench/results/perf.md).
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
#include <sys/mman.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <forkpool.h>
#include <libpq-fe.h>
#include <mysql.h>

#define WARMUP_ITERATIONS 200
#define CONNECT_WARMUP    5
#define MAX_PROCS         1024
#define ERRMSG_MAX        256

struct options {
        const char *mode;
        const char *socket_path;
        const char *pool;
        const char *direct;
        bool mysql;     /* --db mysql */
        bool alternate; /* --alternate */
        int iterations;
        int connect_iterations;
        int procs;
        int seconds;
};

struct stats {
        int n;
        double median_us;
        double p99_us;
};

/* One per throughput process, in a shared anonymous mapping. */
struct proc_result {
        uint64_t transactions;
        uint64_t errors;
        char first_error[ERRMSG_MAX];
};

/* The shared part of a throughput run: the start time and every process's result. */
struct run_shared {
        uint64_t deadline_ns;
        struct proc_result procs[MAX_PROCS];
};

static uint64_t now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

        return x < y ? -1 : x > y;
}

/* Sorts samples (ns) and fills *ret with the nearest-rank median and p99 in µs. */
static void compute_stats(uint64_t *samples, int n, struct stats *ret)
{
        qsort(samples, (size_t)n, sizeof(*samples), cmp_u64);
        ret->n = n;
        ret->median_us = (double)samples[(n + 1) / 2 - 1] / 1e3;
        ret->p99_us = (double)samples[(99 * n + 99) / 100 - 1] / 1e3;
}

/* Formats a duration given in µs with a readable unit. */
static const char *fmt_us(char *buf, size_t len, double us)
{
        if (us >= 1000)
                snprintf(buf, len, "%.2f ms", us / 1e3);
        else
                snprintf(buf, len, "%.1f µs", us);
        return buf;
}

/* Runs sql on a MySQL handle and frees its result. Returns 0 or -EIO. */
static int mysql_run(MYSQL *m, const char *sql)
{
        if (mysql_query(m, sql) != 0)
                return -EIO;
        MYSQL_RES *res = mysql_store_result(m);
        if (!res)
                return -EIO;
        mysql_free_result(res);
        return 0;
}

/* The --db mysql half of lease_once(). */
static int lease_once_mysql(forkpool_lease *lease, const char *sql)
{
        MYSQL *m = forkpool_lease_mysql(lease);
        if (!m) {
                int r = errno > 0 ? -errno : -EIO;
                forkpool_invalidate(lease);
                return r;
        }
        if (sql && mysql_run(m, sql) < 0) {
                forkpool_invalidate(lease);
                return -EIO;
        }
        return forkpool_release(lease);
}

/*
 * One acquire + lease_pg (lease_mysql), the lease kept in *ret. Returns 0 or
 * a negative errno (nothing is held then).
 */
static int lease_take(const struct options *opt, forkpool *fp, const char *pool,
                      forkpool_lease **ret)
{
        forkpool_lease *lease;
        int r = forkpool_acquire(fp, pool, -1, &lease);
        if (r < 0)
                return r;
        if (!(opt->mysql ? (void *)forkpool_lease_mysql(lease)
                         : (void *)forkpool_lease_pg(lease))) {
                r = errno > 0 ? -errno : -EIO;
                forkpool_invalidate(lease);
                return r;
        }
        *ret = lease;
        return 0;
}

/*
 * --alternate's step: a new lease while *held is still held, then *held
 * given back and replaced by it. Returns 0 or a negative errno.
 */
static int lease_alternate(const struct options *opt, forkpool *fp, forkpool_lease **held)
{
        forkpool_lease *next;
        int r = lease_take(opt, fp, opt->pool, &next);
        if (r < 0)
                return r;
        r = forkpool_release(*held);
        *held = next;
        return r;
}

/* One acquire + lease_pg (lease_mysql) + release. Returns 0 or a negative errno. */
static int lease_once(const struct options *opt, forkpool *fp, const char *pool, const char *sql)
{
        forkpool_lease *lease;
        PGresult *res;
        PGconn *conn;
        int r;

        r = forkpool_acquire(fp, pool, -1, &lease);
        if (r < 0)
                return r;
        if (opt->mysql)
                return lease_once_mysql(lease, sql);
        conn = forkpool_lease_pg(lease);
        if (!conn) {
                r = errno > 0 ? -errno : -EIO;
                forkpool_invalidate(lease);
                return r;
        }
        if (sql) {
                res = PQexec(conn, sql);
                if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                        PQclear(res);
                        forkpool_invalidate(lease);
                        return -EIO;
                }
                PQclear(res);
        }
        return forkpool_release(lease);
}

static int bench_lease(const struct options *opt, struct stats *ret)
{
        uint64_t *samples;
        forkpool *fp;
        int r;

        r = forkpool_open(opt->socket_path, &fp);
        if (r < 0) {
                fprintf(stderr, "forkpool_open: %s\n", forkpool_strerror(r));
                return r;
        }
        samples = calloc((size_t)opt->iterations, sizeof(*samples));
        if (!samples) {
                forkpool_close(fp);
                return -ENOMEM;
        }
        fprintf(stderr, "lease: %d warm-up + %d timed iterations%s\n", WARMUP_ITERATIONS,
                opt->iterations, opt->alternate ? ", alternating connections" : "");
        forkpool_lease *held = NULL;
        if (opt->alternate) {
                r = lease_take(opt, fp, opt->pool, &held);
                if (r < 0) {
                        fprintf(stderr, "lease: %s %s\n", forkpool_strerror(r),
                                forkpool_last_error());
                        goto out;
                }
        }
        for (int i = -WARMUP_ITERATIONS; i < opt->iterations; i++) {
                uint64_t t0 = now_ns();

                r = held ? lease_alternate(opt, fp, &held) : lease_once(opt, fp, opt->pool, NULL);
                if (r < 0) {
                        fprintf(stderr, "lease: iteration %d: %s %s\n", i, forkpool_strerror(r),
                                forkpool_last_error());
                        goto out;
                }
                if (i >= 0)
                        samples[i] = now_ns() - t0;
        }
        compute_stats(samples, opt->iterations, ret);
out:
        if (held)
                (void)forkpool_release(held);
        free(samples);
        forkpool_close(fp);
        return r;
}

static int bench_connect(const struct options *opt, struct stats *ret)
{
        uint64_t *samples;
        int r = 0;

        samples = calloc((size_t)opt->connect_iterations, sizeof(*samples));
        if (!samples)
                return -ENOMEM;
        fprintf(stderr, "connect: %d warm-up + %d timed iterations\n", CONNECT_WARMUP,
                opt->connect_iterations);
        for (int i = -CONNECT_WARMUP; i < opt->connect_iterations; i++) {
                uint64_t t0 = now_ns();
                if (opt->mysql) {
                        MYSQL *m = mysql_init(NULL);
                        if (!m ||
                            !mysql_real_connect(m, opt->direct, NULL, NULL, NULL, 0, NULL, 0)) {
                                fprintf(stderr, "mysql_real_connect: %s\n",
                                        m ? mysql_error(m) : "out of memory");
                                mysql_close(m);
                                r = -ECONNREFUSED;
                                goto out;
                        }
                        mysql_close(m);
                        if (i >= 0)
                                samples[i] = now_ns() - t0;
                        continue;
                }
                PGconn *conn = PQconnectdb(opt->direct);

                if (PQstatus(conn) != CONNECTION_OK) {
                        fprintf(stderr, "PQconnectdb: %s", PQerrorMessage(conn));
                        PQfinish(conn);
                        r = -ECONNREFUSED;
                        goto out;
                }
                PQfinish(conn);
                if (i >= 0)
                        samples[i] = now_ns() - t0;
        }
        compute_stats(samples, opt->connect_iterations, ret);
out:
        free(samples);
        return r;
}

static void record_error(struct proc_result *res, const char *what, const char *detail)
{
        if (res->errors++ == 0)
                snprintf(res->first_error, sizeof(res->first_error), "%s: %s", what, detail);
}

/*
 * One throughput process: gets ready (opens its handle or its connection and
 * runs one transaction), says so on ready_fd, waits for go_fd to close, then
 * counts transactions until the shared deadline.
 */
static int throughput_child(const struct options *opt, bool pooled, struct run_shared *shared,
                            int idx, int ready_fd, int go_fd)
{
        struct proc_result *res = &shared->procs[idx];
        forkpool *fp = NULL;
        PGconn *conn = NULL;
        MYSQL *my = NULL;
        uint64_t deadline;
        char byte = 'r';
        int r;

        if (pooled) {
                r = forkpool_open(opt->socket_path, &fp);
                if (r < 0) {
                        record_error(res, "forkpool_open", forkpool_strerror(r));
                        return 1;
                }
        } else if (opt->mysql) {
                my = mysql_init(NULL);
                if (!my || !mysql_real_connect(my, opt->direct, NULL, NULL, NULL, 0, NULL, 0)) {
                        record_error(res, "mysql_real_connect",
                                     my ? mysql_error(my) : "out of memory");
                        mysql_close(my);
                        return 1;
                }
        } else {
                conn = PQconnectdb(opt->direct);
                if (PQstatus(conn) != CONNECTION_OK) {
                        record_error(res, "PQconnectdb", PQerrorMessage(conn));
                        PQfinish(conn);
                        return 1;
                }
        }
        /* One transaction first, so that the pool has grown and caches are warm. */
        if (pooled) {
                r = lease_once(opt, fp, opt->pool, "SELECT 1");
                if (r < 0) {
                        record_error(res, forkpool_strerror(r), forkpool_last_error());
                        return 1;
                }
        } else if (my) {
                (void)mysql_run(my, "SELECT 1");
        } else {
                PQclear(PQexec(conn, "SELECT 1"));
        }
        /* Closing ready_fd lets the parent see EOF if some other process fails. */
        r = write(ready_fd, &byte, 1);
        close(ready_fd);
        if (r != 1 || read(go_fd, &byte, 1) != 0)
                return 1;
        deadline = shared->deadline_ns;
        while (now_ns() < deadline) {
                if (pooled) {
                        r = lease_once(opt, fp, opt->pool, "SELECT 1");
                        if (r < 0) {
                                record_error(res, forkpool_strerror(r), forkpool_last_error());
                                continue;
                        }
                } else if (my) {
                        if (mysql_run(my, "SELECT 1") < 0) {
                                record_error(res, "SELECT 1", mysql_error(my));
                                if (mysql_errno(my) >= 2000)
                                        break;
                                continue;
                        }
                } else {
                        PGresult *pr = PQexec(conn, "SELECT 1");

                        if (PQresultStatus(pr) != PGRES_TUPLES_OK) {
                                record_error(res, "SELECT 1", PQerrorMessage(conn));
                                PQclear(pr);
                                if (PQstatus(conn) != CONNECTION_OK)
                                        break;
                                continue;
                        }
                        PQclear(pr);
                }
                res->transactions++;
        }
        forkpool_close(fp);
        PQfinish(conn);
        mysql_close(my);
        return 0;
}

/*
 * Runs opt->procs processes of one kind for opt->seconds and returns the
 * transactions per second of all of them together, or a negative errno.
 */
static double run_throughput(const struct options *opt, bool pooled)
{
        struct run_shared *shared;
        int ready[2], go[2], n_ready = 0;
        uint64_t total = 0, errors = 0;
        pid_t pids[MAX_PROCS];
        double tps = -EIO;
        char byte;

        shared = mmap(NULL, sizeof(*shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
                      0);
        if (shared == MAP_FAILED)
                return -errno;
        if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0) {
                munmap(shared, sizeof(*shared));
                return -errno;
        }
        fprintf(stderr, "throughput: %d %s processes for %d s\n", opt->procs,
                pooled ? "forkpool" : "direct", opt->seconds);
        fflush(NULL);
        for (int i = 0; i < opt->procs; i++) {
                pids[i] = fork();
                if (pids[i] < 0)
                        fprintf(stderr, "throughput: fork: %m\n");
                if (pids[i] == 0) {
                        close(ready[0]);
                        close(go[1]);
                        _exit(throughput_child(opt, pooled, shared, i, ready[1], go[0]));
                }
        }
        close(ready[1]);
        close(go[0]);
        while (n_ready < opt->procs && read(ready[0], &byte, 1) == 1)
                n_ready++;
        /* Everyone is connected: set the deadline, then start them all at once. */
        shared->deadline_ns = now_ns() + (uint64_t)opt->seconds * 1000000000u;
        close(go[1]);
        for (int i = 0; i < opt->procs; i++)
                if (pids[i] > 0)
                        waitpid(pids[i], NULL, 0);
        close(ready[0]);
        for (int i = 0; i < opt->procs; i++) {
                total += shared->procs[i].transactions;
                errors += shared->procs[i].errors;
                if (shared->procs[i].errors)
                        fprintf(stderr, "throughput: process %d: %" PRIu64 " errors, first: %s\n",
                                i, shared->procs[i].errors, shared->procs[i].first_error);
        }
        if (n_ready == opt->procs && errors == 0)
                tps = (double)total / opt->seconds;
        munmap(shared, sizeof(*shared));
        return tps;
}

static void print_machine(void)
{
        char line[512], model[256] = "unknown";
        struct utsname u;
        FILE *f;

        f = fopen("/proc/cpuinfo", "re");
        while (f && fgets(line, sizeof(line), f)) {
                char *colon = strchr(line, ':');

                if (strncmp(line, "model name", 10) == 0 && colon) {
                        snprintf(model, sizeof(model), "%s", colon + 2);
                        model[strcspn(model, "\n")] = '\0';
                        break;
                }
        }
        if (f)
                fclose(f);
        uname(&u);
        printf("| machine | |\n|---|---|\n");
        printf("| nproc | %ld |\n", sysconf(_SC_NPROCESSORS_ONLN));
        printf("| cpu | %s |\n", model);
        printf("| kernel | %s %s %s |\n", u.sysname, u.release, u.machine);
        printf("| forkpool / libpq / Connector/C | %s / %d / %s |\n\n", forkpool_version(),
               PQlibVersion(), mysql_get_client_info());
}

static void usage(FILE *f)
{
        fprintf(f, "usage: forkpool-bench [--mode all|lease|connect|throughput] [--socket PATH]\n"
                   "         [--pool NAME] [--iterations N] [--connect-iterations N]\n"
                   "         [--procs N] [--seconds T] [--direct CONNINFO]\n"
                   "         [--db postgresql|mysql] [--alternate]\n"
                   "defaults: --mode all --pool default --iterations 5000\n"
                   "          --connect-iterations 500 --procs 8 --seconds 5\n"
                   "          --direct '' (libpq's PG* environment) --db postgresql\n"
                   "--db mysql: --direct is a Connector/C connection string\n"
                   "          (\"socket=PATH;user=U;password=P;database=D\")\n");
}

static int parse_options(int argc, char **argv, struct options *opt)
{
        static const struct option longopts[] = {
                {"mode", required_argument, NULL, 'm'},
                {"socket", required_argument, NULL, 's'},
                {"pool", required_argument, NULL, 'p'},
                {"iterations", required_argument, NULL, 'n'},
                {"connect-iterations", required_argument, NULL, 'c'},
                {"procs", required_argument, NULL, 'P'},
                {"seconds", required_argument, NULL, 't'},
                {"direct", required_argument, NULL, 'd'},
                {"db", required_argument, NULL, 'D'},
                {"alternate", no_argument, NULL, 'a'},
                {"help", no_argument, NULL, 'h'},
                {}};
        int c;

        *opt = (struct options){"all", NULL, "default", "", false, false, 5000, 500, 8, 5};
        while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
                switch (c) {
                case 'm':
                        opt->mode = optarg;
                        break;
                case 's':
                        opt->socket_path = optarg;
                        break;
                case 'p':
                        opt->pool = optarg;
                        break;
                case 'n':
                        opt->iterations = atoi(optarg);
                        break;
                case 'c':
                        opt->connect_iterations = atoi(optarg);
                        break;
                case 'P':
                        opt->procs = atoi(optarg);
                        break;
                case 't':
                        opt->seconds = atoi(optarg);
                        break;
                case 'd':
                        opt->direct = optarg;
                        break;
                case 'D':
                        if (strcmp(optarg, "mysql") != 0 && strcmp(optarg, "mariadb") != 0 &&
                            strcmp(optarg, "postgresql") != 0)
                                return -EINVAL;
                        opt->mysql = strcmp(optarg, "postgresql") != 0;
                        break;
                case 'a':
                        opt->alternate = true;
                        break;
                case 'h':
                        usage(stdout);
                        exit(0);
                default:
                        return -EINVAL;
                }
        }
        if (optind != argc || opt->iterations < 1 || opt->connect_iterations < 1 ||
            opt->procs < 1 || opt->procs > MAX_PROCS || opt->seconds < 1)
                return -EINVAL;
        if (strcmp(opt->mode, "all") != 0 && strcmp(opt->mode, "lease") != 0 &&
            strcmp(opt->mode, "connect") != 0 && strcmp(opt->mode, "throughput") != 0)
                return -EINVAL;
        return 0;
}

int main(int argc, char **argv)
{
        struct stats lease = {0}, connect = {0};
        double tps_pool = 0, tps_direct = 0;
        bool all, failed = false;
        struct options opt;
        char b1[32], b2[32];

        if (parse_options(argc, argv, &opt) < 0) {
                usage(stderr);
                return 2;
        }
        all = strcmp(opt.mode, "all") == 0;
        signal(SIGPIPE, SIG_IGN);

        if (all || strcmp(opt.mode, "lease") == 0)
                failed |= bench_lease(&opt, &lease) < 0;
        if (all || strcmp(opt.mode, "connect") == 0)
                failed |= bench_connect(&opt, &connect) < 0;
        if (all || strcmp(opt.mode, "throughput") == 0) {
                tps_pool = run_throughput(&opt, true);
                tps_direct = run_throughput(&opt, false);
                failed |= tps_pool < 0 || tps_direct < 0;
        }

        printf("# forkpool-bench\n\n");
        print_machine();
        if (lease.n || connect.n) {
                printf("| latency | n | median | p99 |\n|---|---|---|---|\n");
                if (lease.n)
                        printf("| forkpool_acquire + forkpool_lease_%s + forkpool_release%s | %d | "
                               "%s | %s |\n",
                               opt.mysql ? "mysql" : "pg",
                               opt.alternate ? " (alternating connections)" : "", lease.n,
                               fmt_us(b1, sizeof(b1), lease.median_us),
                               fmt_us(b2, sizeof(b2), lease.p99_us));
                if (connect.n)
                        printf("| %s (direct) | %d | %s | %s |\n",
                               opt.mysql ? "mysql_real_connect + mysql_close"
                                         : "PQconnectdb + PQfinish",
                               connect.n, fmt_us(b1, sizeof(b1), connect.median_us),
                               fmt_us(b2, sizeof(b2), connect.p99_us));
                if (lease.n && connect.n)
                        printf("| **connect / lease** | | **%.1f×** | %.1f× |\n",
                               connect.median_us / lease.median_us, connect.p99_us / lease.p99_us);
                printf("\n");
                if (lease.n && connect.n) {
                        double goal = opt.mysql ? 5 : 20;
                        bool met = connect.median_us / lease.median_us >= goal;
                        printf("Goal: a lease is at least %.0f× cheaper than a new connection "
                               "(median): %s.\n\n",
                               goal, met ? "met" : "NOT met");
                }
        }
        if (tps_pool > 0 || tps_direct > 0) {
                printf("| throughput, %d processes, %d s, SELECT 1 | transactions/s |\n"
                       "|---|---|\n",
                       opt.procs, opt.seconds);
                printf("| forkpool: acquire → SELECT 1 → release | %.0f |\n", tps_pool);
                printf("| direct: persistent %s per process | %.0f |\n",
                       opt.mysql ? "MYSQL" : "PGconn", tps_direct);
                if (tps_pool > 0 && tps_direct > 0)
                        printf("| **forkpool / direct** | **%.2f×** |\n", tps_pool / tps_direct);
                printf("\n");
        }
        if (failed)
                fprintf(stderr, "forkpool-bench: some measurements failed (see above)\n");
        return failed ? 1 : 0;
}
