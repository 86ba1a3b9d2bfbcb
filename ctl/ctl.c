/* SPDX-License-Identifier: MIT */
/*
 * ctl.c — what forkpoolctl's commands share (ctl.h): usage errors, time, and
 * a consistent snapshot of a running forkpoold's shared segment.
 */
#include "ctl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <getopt.h>
#include <signal.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "forkpool.h"
#include "proto.h"

/*
 * How often and how far apart to try again when the segment is replaced under
 * us (obsolete) or is being created right now (header not complete yet).
 */
#define CTL_OPEN_TRIES      50
#define CTL_OPEN_DELAY_USEC 2000

/*
 * How long to wait for a pool the supervisor is writing. A write section
 * lasts microseconds, but the supervisor may be descheduled inside one.
 */
#define CTL_SNAPSHOT_TRIES      1000
#define CTL_SNAPSHOT_DELAY_USEC 1000

/* Which supervisor a command talks about, and what is known of it so far (for messages). */
struct ctl_target {
        const char *socket_path;
        char shm_name[FP_SHM_NAME_MAX];
        pid_t supervisor_pid; /* 0 until a header has been read */
};

const char ctl_usage_hint[] = "Try 'forkpoolctl --help' for more information.\n";

void ctl_usage(FILE *f)
{
        fprintf(f,
                "Usage: forkpoolctl [--socket PATH] [--help] [--version] COMMAND [ARGS]\n"
                "\n"
                "Shows the state of a running forkpoold, read from its shared segment.\n"
                "\n"
                "Options (before the command):\n"
                "  --socket PATH   forkpoold's control socket (default: $FORKPOOL_SOCKET,\n"
                "                  else %s)\n"
                "  -h, --help      show this help and exit\n"
                "  --version       show the version and exit\n"
                "\n"
                "Commands:\n"
                "  status [--json] [POOL]   pools, their accounting, counters and connections\n"
                "  metrics [POOL]           gauges and counters in the Prometheus text format\n"
                "  top [--interval SEC] [--count N] [POOL]\n"
                "                           a refreshing view of the pools and their slots\n"
                "  events [--follow] [--json] [--last N]\n"
                "                           the pool events (connect, checkout, reclaim, …)\n"
                "  url-check URL            how a database URL is understood (password masked)\n"
                "Admin commands (sent to forkpoold; root, its user or admin_users/groups):\n"
                "  dispose POOL             close idle connections, leased ones on return\n"
                "  pause POOL, resume POOL  stop and restart handing out connections\n"
                "  reload                   re-read the configuration file\n"
                "  kill-lease POOL SLOT     revoke one lease (its holder's next query fails)\n",
                FORKPOOL_DEFAULT_SOCKET);
}

/* Prints "forkpoolctl: <what>" and the usage hint on stderr. Returns CTL_EXIT_USAGE. */
int ctl_usage_error(const char *what, const char *arg)
{
        fprintf(stderr, "forkpoolctl: %s '%s'\n%s", what, arg, ctl_usage_hint);
        return CTL_EXIT_USAGE;
}

/*
 * Reports the option getopt_long() just rejected (it returned '?' or ':', with
 * opterr 0). Returns CTL_EXIT_USAGE.
 */
int ctl_option_error(int c, char *const argv[])
{
        const char *arg = argv[optind - 1];
        char opt[3] = {'-', (char)optopt, '\0'};
        const char *name = strncmp(arg, "--", 2) == 0 || !optopt ? arg : opt;

        if (c == ':')
                return ctl_usage_error("missing argument to option", name);
        return ctl_usage_error("unknown option", name);
}

static uint64_t ctl_now_usec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void ctl_sleep_usec(long usec)
{
        struct timespec ts = {.tv_sec = usec / 1000000, .tv_nsec = (usec % 1000000) * 1000};

        nanosleep(&ts, NULL);
}

/* Microseconds from since_usec to now_usec, 0 if the clock went backwards. */
uint64_t ctl_elapsed_usec(uint64_t since_usec, uint64_t now_usec)
{
        return now_usec > since_usec ? now_usec - since_usec : 0;
}

/* True unless the kernel says no process has that pid (EPERM means someone else's, alive). */
static bool ctl_pid_alive(pid_t pid)
{
        if (pid <= 0)
                return false;
        return kill(pid, 0) == 0 || errno != ESRCH;
}

const char *ctl_db_kind_name(uint32_t kind)
{
        return kind == FP_DB_POSTGRES ? "postgresql" : kind == FP_DB_MYSQL ? "mysql" : "unknown";
}

const char *ctl_reset_mode_name(uint32_t mode)
{
        return mode <= FP_RESET_AUTO ? fp_reset_mode_name((enum fp_reset_mode)mode) : "unknown";
}

void ctl_status_free(struct ctl_status *st)
{
        for (uint32_t i = 0; i < st->n_pools; i++)
                free(st->pools[i].slots);
        free(st->pools);
        *st = (struct ctl_status){0};
}

/*
 * Copies pool i of seg and its slots into *view (view->slots allocated here,
 * owned by the caller), waiting up to about a second for the supervisor to
 * finish a write. Returns 0, -EAGAIN (still mid-write), -EBADMSG (the pool's
 * slots lie outside the segment) or -ENOMEM; *view is untouched on failure.
 */
static int ctl_pool_read(const struct fp_segment *seg, uint32_t i, struct ctl_pool_view *view)
{
        uint32_t max_slots = seg->hdr->slot_count;
        struct fp_shm_slot *slots = calloc(max_slots ? max_slots : 1, sizeof(*slots));
        struct fp_shm_pool pool;
        int r = -EAGAIN;

        if (!slots)
                return -ENOMEM;
        for (int attempt = 0; attempt < CTL_SNAPSHOT_TRIES; attempt++) {
                if (attempt > 0)
                        ctl_sleep_usec(CTL_SNAPSHOT_DELAY_USEC);
                r = fp_segment_snapshot(seg, i, &pool, slots, max_slots);
                if (r != -EAGAIN)
                        break;
        }
        if (r < 0) {
                free(slots);
                return r;
        }
        *view = (struct ctl_pool_view){.pool = pool, .slots = slots, .n_slots = (uint32_t)r};
        return 0;
}

/*
 * Copies every pool of seg into *ret (owned by the caller: ctl_status_free()).
 * Returns 0 or an error of ctl_pool_read(); *ret is untouched on failure.
 */
static int ctl_status_read(const struct fp_segment *seg, struct ctl_status *ret)
{
        struct ctl_status st = {0};
        uint32_t n = seg->hdr->pool_count;
        int r;

        st.pools = calloc(n ? n : 1, sizeof(*st.pools));
        if (!st.pools)
                return -ENOMEM;
        for (uint32_t i = 0; i < n; i++) {
                r = ctl_pool_read(seg, i, &st.pools[i]);
                if (r < 0) {
                        ctl_status_free(&st);
                        return r;
                }
                st.n_pools = i + 1;
        }
        st.now_usec = ctl_now_usec();
        *ret = st;
        return 0;
}

static bool ctl_segment_obsolete(const struct fp_segment *seg)
{
        return __atomic_load_n(&seg->hdr->obsolete, __ATOMIC_ACQUIRE) != 0;
}

/*
 * One attempt to read the status from target's segment: open it, check that
 * it is current and its supervisor alive, copy every pool, unmap. Records the
 * supervisor's pid in target. Returns 0 with *ret filled (owned by the
 * caller), or -ESTALE (the segment was replaced: try again), -ESRCH (its
 * supervisor is gone), or an error of fp_segment_find() / ctl_status_read().
 */
static int ctl_status_load_once(struct ctl_target *target, struct ctl_status *ret)
{
        struct fp_segment seg = {0};
        struct ctl_status st;
        int r;

        r = fp_segment_find(&seg, target->socket_path);
        if (r < 0)
                return r;
        snprintf(target->shm_name, sizeof(target->shm_name), "%s", seg.name);
        target->supervisor_pid = seg.hdr->supervisor_pid;
        if (ctl_segment_obsolete(&seg))
                r = -ESTALE;
        else if (!ctl_pid_alive(target->supervisor_pid))
                r = -ESRCH;
        else
                r = ctl_status_read(&seg, &st);
        /* Replaced while we read: what we copied may be the old supervisor's last words. */
        if (r == 0 && ctl_segment_obsolete(&seg)) {
                ctl_status_free(&st);
                r = -ESTALE;
        }
        if (r == 0) {
                st.supervisor_pid = target->supervisor_pid;
                st.started_usec = seg.hdr->started_usec;
        }
        fp_segment_close(&seg);
        if (r < 0)
                return r;
        *ret = st;
        return 0;
}

/* Prints on stderr why the status of target could not be read (r from ctl_status_load_once()). */
static void ctl_report_load_error(const struct ctl_target *t, int r)
{
        switch (r) {
        case -ENOENT:
                fprintf(stderr, "forkpoolctl: no forkpoold is running for %s (no segment %s)\n",
                        t->socket_path, t->shm_name);
                break;
        case -ESRCH:
                fprintf(stderr,
                        "forkpoolctl: forkpoold (pid %d) for %s is gone; the segment is stale\n",
                        (int)t->supervisor_pid, t->socket_path);
                break;
        case -ESTALE:
                fprintf(stderr, "forkpoolctl: segment %s for %s keeps being replaced; try again\n",
                        t->shm_name, t->socket_path);
                break;
        case -EPROTO:
                fprintf(stderr,
                        "forkpoolctl: segment %s for %s has another layout than version %u; "
                        "use the forkpoolctl that came with this forkpoold\n",
                        t->shm_name, t->socket_path, FP_SHM_LAYOUT_VERSION);
                break;
        case -EBADMSG:
                fprintf(stderr, "forkpoolctl: segment %s for %s is damaged or not forkpool's\n",
                        t->shm_name, t->socket_path);
                break;
        case -EAGAIN:
                fprintf(stderr,
                        "forkpoolctl: forkpoold (pid %d) kept a pool locked for over a second; "
                        "try again\n",
                        (int)t->supervisor_pid);
                break;
        case -EACCES:
                fprintf(stderr,
                        "forkpoolctl: cannot read segment %s for %s: %s "
                        "(run as forkpoold's user or a member of its group)\n",
                        t->shm_name, t->socket_path, strerror(-r));
                break;
        default:
                fprintf(stderr, "forkpoolctl: cannot read segment %s for %s: %s\n", t->shm_name,
                        t->socket_path, strerror(-r));
                break;
        }
}

/*
 * Reads every pool of the supervisor listening on socket_path into *ret
 * (owned by the caller: ctl_status_free()). Retries for a moment while the
 * segment is being replaced or created. On failure prints the reason on
 * stderr and returns a negative errno (see ctl_status_load_once()).
 * Blocks for at most about a second per pool.
 */
int ctl_status_load(const char *socket_path, struct ctl_status *ret)
{
        struct ctl_target target = {.socket_path = socket_path};
        int r = 0;

        /* For messages until a segment is found: the names it may have. */
        fp_segment_name(socket_path, target.shm_name);
        strncat(target.shm_name, ".*", sizeof(target.shm_name) - strlen(target.shm_name) - 1);
        for (int attempt = 0; attempt < CTL_OPEN_TRIES; attempt++) {
                if (attempt > 0)
                        ctl_sleep_usec(CTL_OPEN_DELAY_USEC);
                r = ctl_status_load_once(&target, ret);
                /* -EBADMSG too: a header caught between creation and its magic. */
                if (r != -ESTALE && r != -EBADMSG)
                        break;
        }
        if (r < 0)
                ctl_report_load_error(&target, r);
        return r;
}

/* Writes "-" for 0 (no such process), else the pid, into buf. Returns buf. */
const char *ctl_fmt_pid(char *buf, size_t len, int32_t pid)
{
        if (pid > 0)
                snprintf(buf, len, "%" PRId32, pid);
        else
                snprintf(buf, len, "-");
        return buf;
}

/* Writes the seconds from since_usec to now_usec with one decimal ("-" if since is 0). */
const char *ctl_fmt_age(char *buf, size_t len, uint64_t since_usec, uint64_t now_usec)
{
        if (since_usec == 0)
                snprintf(buf, len, "-");
        else
                snprintf(buf, len, "%.1f", ctl_elapsed_usec(since_usec, now_usec) / 1e6);
        return buf;
}

bool ctl_status_has_pool(const struct ctl_status *st, const char *name)
{
        for (uint32_t i = 0; i < st->n_pools; i++)
                if (strcmp(st->pools[i].pool.name, name) == 0)
                        return true;
        return false;
}

/*
 * Flushes stdout and reports a failed write (a full disk, a closed pipe).
 * Returns the exit status: CTL_EXIT_OK or CTL_EXIT_FAILURE.
 */
int ctl_finish_output(void)
{
        if (fflush(stdout) != 0 || ferror(stdout)) {
                fprintf(stderr, "forkpoolctl: cannot write the output: %s\n", strerror(errno));
                return CTL_EXIT_FAILURE;
        }
        return CTL_EXIT_OK;
}

/* True if pool v is shown: every pool, or only the one named only_pool. */
bool ctl_pool_selected(const struct ctl_pool_view *v, const char *only_pool)
{
        return !only_pool || strcmp(v->pool.name, only_pool) == 0;
}

int ctl_status_load_pool(const char *socket_path, const char *only_pool, struct ctl_status *ret)
{
        int r = ctl_status_load(socket_path, ret);
        if (r < 0)
                return r;
        if (only_pool && !ctl_status_has_pool(ret, only_pool)) {
                fprintf(stderr, "forkpoolctl: no pool '%s'\n", only_pool);
                ctl_status_free(ret);
                return -ENOENT;
        }
        return 0;
}
