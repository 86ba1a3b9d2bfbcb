/* SPDX-License-Identifier: MIT */
/*
 * ctl.h — what forkpoolctl's commands share: the exit statuses, usage
 * errors, time, and a consistent snapshot of a running forkpoold's shared
 * segment (struct ctl_status), read without asking the supervisor anything.
 * forkpoolctl uses base/ and shm/ only.
 */
#ifndef FORKPOOL_CTL_H
#define FORKPOOL_CTL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "segment.h"

#define CTL_EXIT_OK      0
#define CTL_EXIT_FAILURE 1
#define CTL_EXIT_USAGE   2

/* One pool as read from the segment: a consistent copy of its record and slots. */
struct ctl_pool_view {
        struct fp_shm_pool pool;
        struct fp_shm_slot *slots; /* owned; n_slots records, unused ones included */
        uint32_t n_slots;
};

/* Every pool of one segment, read at now_usec (CLOCK_REALTIME). */
struct ctl_status {
        struct ctl_pool_view *pools; /* owned; n_pools records */
        uint32_t n_pools;
        uint64_t now_usec;
        pid_t supervisor_pid;  /* from the segment's header */
        uint64_t started_usec; /* CLOCK_REALTIME when the supervisor started, 0 if unknown */
};

/* "Try 'forkpoolctl --help' …", for usage errors. */
extern const char ctl_usage_hint[];

/* Prints forkpoolctl's --help text on f. */
void ctl_usage(FILE *f);

/* Prints "forkpoolctl: <what>" and the usage hint on stderr. Returns CTL_EXIT_USAGE. */
int ctl_usage_error(const char *what, const char *arg);

/*
 * Reports the option getopt_long() just rejected (it returned '?' or ':', with
 * opterr 0). Returns CTL_EXIT_USAGE.
 */
int ctl_option_error(int c, char *const argv[]);

/* Sleeps usec microseconds (a signal may end it sooner). */
void ctl_sleep_usec(long usec);

/* Microseconds from since_usec to now_usec, 0 if the clock went backwards. */
uint64_t ctl_elapsed_usec(uint64_t since_usec, uint64_t now_usec);

/* "postgresql", "mysql" or "unknown" for a segment's enum fp_db_kind. */
const char *ctl_db_kind_name(uint32_t kind);

/* The configuration name of a segment's reset mode, or "unknown". */
const char *ctl_reset_mode_name(uint32_t mode);

/* Frees what ctl_status_load() put in *st and zeroes it; safe on a zeroed one. */
void ctl_status_free(struct ctl_status *st);

/*
 * Reads every pool of the supervisor listening on socket_path into *ret
 * (owned by the caller: ctl_status_free()). Retries for a moment while the
 * segment is being replaced or created. On failure prints the reason on
 * stderr and returns a negative errno (see ctl_status_load_once()).
 * Blocks for at most about a second per pool.
 */
int ctl_status_load(const char *socket_path, struct ctl_status *ret);

/* Writes "-" for 0 (no such process), else the pid, into buf. Returns buf. */
const char *ctl_fmt_pid(char *buf, size_t len, int32_t pid);

/* Writes the seconds from since_usec to now_usec with one decimal ("-" if since is 0). */
const char *ctl_fmt_age(char *buf, size_t len, uint64_t since_usec, uint64_t now_usec);

/*
 * ctl_status_load(), and then, if only_pool is not NULL, the check that st
 * holds that pool ("no pool" on stderr, *ret freed, -ENOENT if not).
 * Returns 0 or a negative errno (said on stderr).
 */
int ctl_status_load_pool(const char *socket_path, const char *only_pool, struct ctl_status *ret);

/* True if st holds a pool named name. */
bool ctl_status_has_pool(const struct ctl_status *st, const char *name);

/*
 * Flushes stdout and reports a failed write (a full disk, a closed pipe).
 * Returns the exit status: CTL_EXIT_OK or CTL_EXIT_FAILURE.
 */
int ctl_finish_output(void);

/* True if pool v is shown: every pool, or only the one named only_pool. */
bool ctl_pool_selected(const struct ctl_pool_view *v, const char *only_pool);

/* The commands of ctl.h's own (status.c, metrics.c, top.c): argv[0] is the command. */

/*
 * `status [--json] [POOL]`: every pool's accounting, counters and slots in
 * use, as text or JSON. argv[0] is "status". Returns the exit status.
 */
int ctl_cmd_status(int argc, char *argv[], const char *socket_path);

/*
 * `metrics [POOL]`: every pool's gauges and counters in the Prometheus text
 * format (for node_exporter's textfile collector or any scraper that runs a
 * command). argv[0] is "metrics". Returns the exit status.
 */
int ctl_cmd_metrics(int argc, char *argv[], const char *socket_path);

/*
 * `top [--interval SEC] [--count N] [POOL]`: a refreshing view of the pools
 * and their slots, until interrupted or after N frames. A supervisor that is
 * gone or restarting after the first frame is reported and waited for.
 * argv[0] is "top". Returns the exit status (1 if the last frame could not be
 * read).
 */
int ctl_cmd_top(int argc, char *argv[], const char *socket_path);

#endif /* FORKPOOL_CTL_H */
