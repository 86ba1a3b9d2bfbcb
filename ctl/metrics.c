/* SPDX-License-Identifier: MIT */
/*
 * metrics.c — `forkpoolctl metrics`: the pools in Prometheus's text format.
 */
#include "ctl.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"

/*
 * metrics: the Prometheus text exposition format (version 0.0.4), one metric
 * family after another, each with its HELP and TYPE lines and one sample per
 * pool labelled pool="NAME". Counters end in _total.
 */

/* Where a per-pool value of `metrics` lives in a pool snapshot. */
enum ctl_metric_kind {
        CTL_METRIC_GAUGE_I32,   /* an int32_t member of struct fp_shm_pool */
        CTL_METRIC_COUNTER_U64, /* a uint64_t member of struct fp_shm_counters */
};

struct ctl_metric {
        const char *name; /* after "forkpool_" */
        const char *help;
        enum ctl_metric_kind kind;
        size_t offset; /* in struct fp_shm_pool */
};

/* clang-format off */
/* Zero, or a compile error if the member is not of the given size. */
#define CTL_SIZE_CHECK(member, size)                                                               \
        (0 * sizeof(char[sizeof(((struct fp_shm_pool *)0)->member) == (size) ? 1 : -1]))
#define CTL_GAUGE(member, help)                                                                    \
        {#member, help, CTL_METRIC_GAUGE_I32,                                                      \
         offsetof(struct fp_shm_pool, member) + CTL_SIZE_CHECK(member, sizeof(int32_t))}
#define CTL_COUNTER(member, help)                                                                  \
        {#member "_total", help, CTL_METRIC_COUNTER_U64,                                           \
         offsetof(struct fp_shm_pool, counters.member) +                                           \
             CTL_SIZE_CHECK(counters.member, sizeof(uint64_t))}
/* clang-format on */

static const struct ctl_metric ctl_metrics[] = {
        CTL_GAUGE(pool_size, "Connections the pool keeps open (pool_size; 0 means no limit)."),
        CTL_GAUGE(max_overflow, "Connections allowed beyond pool_size (-1 means no limit)."),
        CTL_GAUGE(checked_in, "Idle connections in the pool's queue."),
        CTL_GAUGE(checked_out, "Connections leased to worker processes."),
        CTL_GAUGE(
                overflow,
                "SQLAlchemy's overflow counter: connections beyond pool_size, negative below it."),
        CTL_GAUGE(waiting, "Acquires queued for a connection."),
        CTL_GAUGE(connecting, "Database connects in progress."),
        CTL_GAUGE(live, "Live database connections."),
        CTL_COUNTER(acquires, "Leases handed out."),
        CTL_COUNTER(releases, "Leases given back."),
        CTL_COUNTER(timeouts, "Acquires that timed out waiting for a connection."),
        CTL_COUNTER(connects, "Successful database connects."),
        CTL_COUNTER(connect_failures, "Failed database connects."),
        CTL_COUNTER(invalidations, "Connections closed instead of reused."),
        CTL_COUNTER(reclaims, "Leases taken back from worker processes that died."),
        CTL_COUNTER(closes, "Database connections closed, for any reason."),
        CTL_COUNTER(soft_invalidations, "Connections marked to be closed when they return."),
        CTL_COUNTER(detaches, "Connections that left the pool with their worker."),
        CTL_COUNTER(recycles, "Connections replaced at checkout (age or invalidation)."),
        CTL_COUNTER(pings, "Pre-pings run before a checkout."),
        CTL_COUNTER(ping_failures, "Pre-pings that found a dead connection."),
        CTL_COUNTER(pool_invalidations, "Pool-wide invalidations (disconnects, dispose)."),
        CTL_COUNTER(leaks, "Leases held past leak_timeout."),
        CTL_COUNTER(revokes, "Leases taken back at max_lease_time."),
};

/* Prints s as the value of a label: backslash, double quote and newline escaped. */
static void ctl_prom_label_value(const char *s)
{
        for (; *s; s++) {
                if (*s == '\\' || *s == '"')
                        printf("\\%c", *s);
                else if (*s == '\n')
                        fputs("\\n", stdout);
                else
                        putchar(*s);
        }
}

/* Prints `forkpool_NAME{pool="P"` (the caller adds more labels or the closing brace). */
static void ctl_prom_sample_start(const char *name, const struct fp_shm_pool *p)
{
        printf("forkpool_%s{pool=\"", name);
        ctl_prom_label_value(p->name);
        putchar('"');
}

static void ctl_prom_family(const char *name, const char *type, const char *help)
{
        printf("# HELP forkpool_%s %s\n# TYPE forkpool_%s %s\n", name, help, name, type);
}

/* One histogram family (Prometheus: cumulative _bucket, _sum in seconds, _count). */
static void ctl_print_histogram(const struct ctl_status *st, const char *only_pool,
                                const char *name, const char *help, size_t offset)
{
        char sample[64];

        ctl_prom_family(name, "histogram", help);
        for (uint32_t i = 0; i < st->n_pools; i++) {
                const struct fp_shm_pool *p = &st->pools[i].pool;
                struct fp_shm_histogram h;
                uint64_t cumulative = 0;
                if (!ctl_pool_selected(&st->pools[i], only_pool))
                        continue;
                memcpy(&h, (const char *)p + offset, sizeof(h));
                snprintf(sample, sizeof(sample), "%s_bucket", name);
                for (int b = 0; b <= FP_SHM_HIST_BOUNDS; b++) {
                        cumulative += h.count[b];
                        ctl_prom_sample_start(sample, p);
                        if (b < FP_SHM_HIST_BOUNDS)
                                printf(",le=\"%g\"} %" PRIu64 "\n",
                                       fp_shm_hist_bounds_usec[b] / 1e6, cumulative);
                        else
                                printf(",le=\"+Inf\"} %" PRIu64 "\n", cumulative);
                }
                snprintf(sample, sizeof(sample), "%s_sum", name);
                ctl_prom_sample_start(sample, p);
                printf("} %.6f\n", h.sum_usec / 1e6);
                snprintf(sample, sizeof(sample), "%s_count", name);
                ctl_prom_sample_start(sample, p);
                printf("} %" PRIu64 "\n", cumulative);
        }
}

/* Prints every metric family for the pools of st (only only_pool if not NULL) on stdout. */
static void ctl_print_metrics(const struct ctl_status *st, const char *only_pool)
{
        uint64_t mono_usec = fp_monotonic_usec();

        ctl_prom_family("start_time_seconds", "gauge",
                        "When forkpoold started, in seconds since the Unix epoch.");
        printf("forkpool_start_time_seconds %.6f\n", st->started_usec / 1e6);

        ctl_prom_family("pool_info", "gauge", "Pool settings as labels; the value is always 1.");
        for (uint32_t i = 0; i < st->n_pools; i++) {
                const struct fp_shm_pool *p = &st->pools[i].pool;
                if (!ctl_pool_selected(&st->pools[i], only_pool))
                        continue;
                ctl_prom_sample_start("pool_info", p);
                printf(",class=\"%s\",database=\"%s\",reset_on_return=\"%s\",pool_mode=\"%s\"} 1\n",
                       fp_pool_class_name(p->pool_class), ctl_db_kind_name(p->db_kind),
                       ctl_reset_mode_name(p->reset_mode), fp_pool_mode_name(p->pool_mode));
        }

        for (size_t m = 0; m < sizeof(ctl_metrics) / sizeof(ctl_metrics[0]); m++) {
                const struct ctl_metric *metric = &ctl_metrics[m];
                bool counter = metric->kind == CTL_METRIC_COUNTER_U64;

                ctl_prom_family(metric->name, counter ? "counter" : "gauge", metric->help);
                for (uint32_t i = 0; i < st->n_pools; i++) {
                        const struct fp_shm_pool *p = &st->pools[i].pool;
                        const char *field = (const char *)p + metric->offset;
                        if (!ctl_pool_selected(&st->pools[i], only_pool))
                                continue;
                        ctl_prom_sample_start(metric->name, p);
                        if (counter) {
                                uint64_t v;
                                memcpy(&v, field, sizeof(v));
                                printf("} %" PRIu64 "\n", v);
                        } else {
                                int32_t v;
                                memcpy(&v, field, sizeof(v));
                                printf("} %" PRId32 "\n", v);
                        }
                }
        }

        ctl_prom_family("oldest_wait_seconds", "gauge",
                        "How long the longest-waiting acquire has waited (0 when none waits).");
        for (uint32_t i = 0; i < st->n_pools; i++) {
                const struct fp_shm_pool *p = &st->pools[i].pool;
                if (!ctl_pool_selected(&st->pools[i], only_pool))
                        continue;
                uint64_t since = p->oldest_wait_start_usec;
                ctl_prom_sample_start("oldest_wait_seconds", p);
                printf("} %.6f\n", since ? ctl_elapsed_usec(since, mono_usec) / 1e6 : 0.0);
        }

        ctl_prom_family("paused", "gauge",
                        "1 while the pool is paused (forkpoolctl pause): no new leases.");
        for (uint32_t i = 0; i < st->n_pools; i++) {
                const struct fp_shm_pool *p = &st->pools[i].pool;
                if (!ctl_pool_selected(&st->pools[i], only_pool))
                        continue;
                ctl_prom_sample_start("paused", p);
                printf("} %d\n", (p->flags & FP_SHM_POOL_PAUSED) ? 1 : 0);
        }

        ctl_print_histogram(st, only_pool, "acquire_wait_seconds",
                            "How long acquires waited for their lease.",
                            offsetof(struct fp_shm_pool, wait_hist));
        ctl_print_histogram(st, only_pool, "lease_hold_seconds", "How long leases were held.",
                            offsetof(struct fp_shm_pool, hold_hist));

        ctl_prom_family("slots", "gauge", "The pool's connection slots by state.");
        for (uint32_t i = 0; i < st->n_pools; i++) {
                const struct ctl_pool_view *v = &st->pools[i];
                uint32_t by_state[FP_SLOT_STATE_MAX] = {0};
                if (!ctl_pool_selected(v, only_pool))
                        continue;
                for (uint32_t k = 0; k < v->n_slots; k++)
                        if (v->slots[k].state < FP_SLOT_STATE_MAX)
                                by_state[v->slots[k].state]++;
                for (uint32_t state = FP_SLOT_UNUSED + 1; state < FP_SLOT_STATE_MAX; state++) {
                        ctl_prom_sample_start("slots", &v->pool);
                        printf(",state=\"%s\"} %" PRIu32 "\n", fp_slot_state_name(state),
                               by_state[state]);
                }
        }
}

/*
 * Parses the command's own options (only --help here) and at most one POOL;
 * argv[0] is the command. Returns -1 to go on (with *ret_pool set or NULL),
 * else the exit status to return now.
 */
static int ctl_parse_pool_arg(int argc, char *argv[], const char *cmd, const char **ret_pool)
{
        static const struct option options[] = {
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        int c;

        optind = 0; /* GNU getopt: start over on the command's own arguments */
        while ((c = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
                if (c == 'h') {
                        ctl_usage(stdout);
                        return ctl_finish_output();
                }
                return ctl_option_error(c, argv);
        }
        if (argc - optind > 1) {
                fprintf(stderr, "forkpoolctl: %s takes one POOL at most; unexpected '%s'\n%s", cmd,
                        argv[optind + 1], ctl_usage_hint);
                return CTL_EXIT_USAGE;
        }
        *ret_pool = optind < argc ? argv[optind] : NULL;
        return -1;
}

/*
 * `metrics [POOL]`: every pool's gauges and counters in the Prometheus text
 * format (for node_exporter's textfile collector or any scraper that runs a
 * command). argv[0] is "metrics". Returns the exit status.
 */
int ctl_cmd_metrics(int argc, char *argv[], const char *socket_path)
{
        const char *only_pool = NULL;
        struct ctl_status st;
        int r;

        r = ctl_parse_pool_arg(argc, argv, "metrics", &only_pool);
        if (r >= 0)
                return r;
        if (ctl_status_load_pool(socket_path, only_pool, &st) < 0)
                return CTL_EXIT_FAILURE;
        ctl_print_metrics(&st, only_pool);
        ctl_status_free(&st);
        return ctl_finish_output();
}
