/* SPDX-License-Identifier: MIT */
/*
 * forkpoolctl.c — looks into a running forkpoold.
 *
 *   forkpoolctl [--socket PATH] [--help] [--version] COMMAND [ARGS]
 *
 * Commands read the supervisor's shared segment directly instead of asking it
 * over the control socket, so they answer even while the supervisor is busy,
 * and each pool they show is one consistent snapshot (the segment's seqlock).
 * Everything is copied out of the segment before anything is printed.
 *
 * Exit status: 0 on success, 1 when the answer is "no" (no supervisor, a stale
 * segment, no such pool) or output failed, 2 on a usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "ctl_commands.h"
#include "forkpool.h"
#include "proto.h"
#include "segment.h"

#define CTL_EXIT_OK      0
#define CTL_EXIT_FAILURE 1
#define CTL_EXIT_USAGE   2

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

static const char ctl_usage_hint[] = "Try 'forkpoolctl --help' for more information.\n";

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

/* Which supervisor a command talks about, and what is known of it so far (for messages). */
struct ctl_target {
        const char *socket_path;
        char shm_name[FP_SHM_NAME_MAX];
        pid_t supervisor_pid; /* 0 until a header has been read */
};

static void ctl_usage(FILE *f)
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
static int ctl_usage_error(const char *what, const char *arg)
{
        fprintf(stderr, "forkpoolctl: %s '%s'\n%s", what, arg, ctl_usage_hint);
        return CTL_EXIT_USAGE;
}

/*
 * Reports the option getopt_long() just rejected (it returned '?' or ':', with
 * opterr 0). Returns CTL_EXIT_USAGE.
 */
static int ctl_option_error(int c, char *const argv[])
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

static void ctl_sleep_usec(long usec)
{
        struct timespec ts = {.tv_sec = usec / 1000000, .tv_nsec = (usec % 1000000) * 1000};

        nanosleep(&ts, NULL);
}

/* Microseconds from since_usec to now_usec, 0 if the clock went backwards. */
static uint64_t ctl_elapsed_usec(uint64_t since_usec, uint64_t now_usec)
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

static const char *ctl_db_kind_name(uint32_t kind)
{
        return kind == FP_DB_POSTGRES ? "postgresql" : kind == FP_DB_MYSQL ? "mysql" : "unknown";
}

static const char *ctl_reset_mode_name(uint32_t mode)
{
        return mode <= FP_RESET_AUTO ? fp_reset_mode_name((enum fp_reset_mode)mode) : "unknown";
}

/* SQLAlchemy's status() line for the pool's class (QueuePool's character for character). */
static void ctl_print_status_line(const struct fp_shm_pool *p)
{
        switch (p->pool_class) {
        case FP_POOL_NULL:
                printf("NullPool\n");
                break;
        case FP_POOL_STATIC:
                printf("StaticPool\n");
                break;
        case FP_POOL_ASSERTION:
                printf("AssertionPool\n");
                break;
        case FP_POOL_PROCESS:
                printf("ProcessPool size: %d\n", (int)p->checked_out);
                break;
        default:
                printf("Pool size: %d  Connections in pool: %d Current Overflow: %d "
                       "Current Checked out connections: %d\n",
                       (int)p->pool_size, (int)p->checked_in,
                       p->pool_size != 0 ? (int)p->overflow : 0, (int)p->checked_out);
        }
}

static void ctl_status_free(struct ctl_status *st)
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
static int ctl_status_load(const char *socket_path, struct ctl_status *ret)
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
static const char *ctl_fmt_pid(char *buf, size_t len, int32_t pid)
{
        if (pid > 0)
                snprintf(buf, len, "%" PRId32, pid);
        else
                snprintf(buf, len, "-");
        return buf;
}

/* Writes the seconds from since_usec to now_usec with one decimal ("-" if since is 0). */
static const char *ctl_fmt_age(char *buf, size_t len, uint64_t since_usec, uint64_t now_usec)
{
        if (since_usec == 0)
                snprintf(buf, len, "-");
        else
                snprintf(buf, len, "%.1f", ctl_elapsed_usec(since_usec, now_usec) / 1e6);
        return buf;
}

static void ctl_print_slot_text(uint32_t index, const struct fp_shm_slot *s, uint64_t now_usec)
{
        char holder[16], held[32], backend[16], age[32], why[160];
        uint64_t checkout = s->state == FP_SLOT_LEASED ? s->last_checkout_usec : 0;
        bool pinned = s->state == FP_SLOT_LEASED && s->pin_reasons;

        printf("%4" PRIu32 "  %-10s  %7s  %8s  %7s  %8s%s%s\n", index, fp_slot_state_name(s->state),
               ctl_fmt_pid(holder, sizeof(holder), s->holder_pid),
               ctl_fmt_age(held, sizeof(held), checkout, now_usec),
               ctl_fmt_pid(backend, sizeof(backend), s->backend_pid),
               ctl_fmt_age(age, sizeof(age), s->connect_usec, now_usec), pinned ? "  pinned: " : "",
               pinned ? fp_pin_reasons_text(s->pin_reasons, why, sizeof(why)) : "");
}

static void ctl_print_pool_text(const struct ctl_pool_view *v, uint64_t now_usec)
{
        const struct fp_shm_pool *p = &v->pool;
        const struct fp_shm_counters *c = &p->counters;

        printf("pool %s (%s, %s, max_overflow %" PRId32 ", timeout %g s, reset %s, pool_mode %s)\n",
               p->name, ctl_db_kind_name(p->db_kind), fp_pool_class_name(p->pool_class),
               p->max_overflow, p->timeout_ms / 1000.0, ctl_reset_mode_name(p->reset_mode),
               fp_pool_mode_name(p->pool_mode));
        ctl_print_status_line(p);
        printf("acquires=%" PRIu64 " releases=%" PRIu64 " timeouts=%" PRIu64 " connects=%" PRIu64
               " connect_failures=%" PRIu64 " invalidations=%" PRIu64 " reclaims=%" PRIu64
               " closes=%" PRIu64 " waiting=%" PRId32 "\n",
               c->acquires, c->releases, c->timeouts, c->connects, c->connect_failures,
               c->invalidations, c->reclaims, c->closes, p->waiting);
        printf("SLOT  STATE        HOLDER      HELD  BACKEND       AGE\n");
        for (uint32_t i = 0; i < v->n_slots; i++)
                if (v->slots[i].state != FP_SLOT_UNUSED)
                        ctl_print_slot_text(i, &v->slots[i], now_usec);
}

/*
 * A JSON number of seconds for a count of microseconds, serialised with at
 * most six decimals and at least one ("30.0", "1.25"). NULL on ENOMEM.
 */
static struct json_object *ctl_json_seconds(int64_t usec)
{
        uint64_t abs_usec = usec < 0 ? -(uint64_t)usec : (uint64_t)usec;
        char text[48];
        int len;

        len = snprintf(text, sizeof(text), "%s%" PRIu64 ".%06" PRIu64, usec < 0 ? "-" : "",
                       abs_usec / 1000000u, abs_usec % 1000000u);
        /* Trailing zeros go, down to one after the point ("1.0", never "1."). */
        while (len > 2 && text[len - 1] == '0' && text[len - 2] != '.')
                text[--len] = '\0';
        return json_object_new_double_s((double)usec / 1e6, text);
}

/* Adds key: val to obj, taking val. Returns false (and frees val) if val is NULL or on ENOMEM. */
static bool ctl_json_add(struct json_object *obj, const char *key, struct json_object *val)
{
        if (!val)
                return false;
        if (json_object_object_add(obj, key, val) < 0) {
                json_object_put(val);
                return false;
        }
        return true;
}

/* Adds key: null. Returns false on ENOMEM. */
static bool ctl_json_add_null(struct json_object *obj, const char *key)
{
        return json_object_object_add(obj, key, NULL) == 0;
}

/* Adds key: pid, or null when there is no process (pid 0). Returns false on ENOMEM. */
static bool ctl_json_add_pid(struct json_object *obj, const char *key, int32_t pid)
{
        if (pid <= 0)
                return ctl_json_add_null(obj, key);
        return ctl_json_add(obj, key, json_object_new_int(pid));
}

/* A new JSON object for slot index of a pool (owned by the caller), or NULL on ENOMEM. */
static struct json_object *ctl_slot_json(uint32_t index, const struct fp_shm_slot *s,
                                         uint64_t now_usec)
{
        struct json_object *obj = json_object_new_object();
        bool ok = obj != NULL;

        ok = ok && ctl_json_add(obj, "slot", json_object_new_int64(index));
        ok = ok && ctl_json_add(obj, "state", json_object_new_string(fp_slot_state_name(s->state)));
        ok = ok && ctl_json_add_pid(obj, "holder_pid", s->holder_pid);
        ok = ok && ctl_json_add_pid(obj, "backend_pid", s->backend_pid);
        if (s->state == FP_SLOT_LEASED && s->last_checkout_usec != 0)
                ok = ok && ctl_json_add(obj, "held_for",
                                        ctl_json_seconds((int64_t)ctl_elapsed_usec(
                                                s->last_checkout_usec, now_usec)));
        else
                ok = ok && ctl_json_add_null(obj, "held_for");
        if (s->state == FP_SLOT_LEASED && s->pin_reasons) {
                char why[160];
                ok = ok && ctl_json_add(obj, "pin_reason",
                                        json_object_new_string(fp_pin_reasons_text(
                                                s->pin_reasons, why, sizeof(why))));
        } else {
                ok = ok && ctl_json_add_null(obj, "pin_reason");
        }
        if (!ok) {
                json_object_put(obj);
                return NULL;
        }
        return obj;
}

/* A new JSON object for a pool's counters (owned by the caller), or NULL on ENOMEM. */
static struct json_object *ctl_counters_json(const struct fp_shm_counters *c)
{
        struct json_object *obj = json_object_new_object();
        bool ok = obj != NULL;

        ok = ok && ctl_json_add(obj, "acquires", json_object_new_uint64(c->acquires));
        ok = ok && ctl_json_add(obj, "releases", json_object_new_uint64(c->releases));
        ok = ok && ctl_json_add(obj, "timeouts", json_object_new_uint64(c->timeouts));
        ok = ok && ctl_json_add(obj, "connects", json_object_new_uint64(c->connects));
        ok = ok &&
             ctl_json_add(obj, "connect_failures", json_object_new_uint64(c->connect_failures));
        ok = ok && ctl_json_add(obj, "invalidations", json_object_new_uint64(c->invalidations));
        ok = ok && ctl_json_add(obj, "reclaims", json_object_new_uint64(c->reclaims));
        ok = ok && ctl_json_add(obj, "closes", json_object_new_uint64(c->closes));
        if (!ok) {
                json_object_put(obj);
                return NULL;
        }
        return obj;
}

/* A new JSON array of a pool's slots in use (owned by the caller), or NULL on ENOMEM. */
static struct json_object *ctl_slots_json(const struct ctl_pool_view *v, uint64_t now_usec)
{
        struct json_object *arr = json_object_new_array();

        for (uint32_t i = 0; arr && i < v->n_slots; i++) {
                if (v->slots[i].state == FP_SLOT_UNUSED)
                        continue;
                struct json_object *slot = ctl_slot_json(i, &v->slots[i], now_usec);
                if (!slot || json_object_array_add(arr, slot) < 0) {
                        json_object_put(slot);
                        json_object_put(arr);
                        return NULL;
                }
        }
        return arr;
}

/* A new JSON object for one pool (owned by the caller), or NULL on ENOMEM. */
static struct json_object *ctl_pool_json(const struct ctl_pool_view *v, uint64_t now_usec)
{
        const struct fp_shm_pool *p = &v->pool;
        struct json_object *obj = json_object_new_object();
        bool ok = obj != NULL;

        ok = ok && ctl_json_add(obj, "name", json_object_new_string(p->name));
        ok = ok && ctl_json_add(obj, "poolclass",
                                json_object_new_string(fp_pool_class_name(p->pool_class)));
        ok = ok && ctl_json_add(obj, "pool_size", json_object_new_int(p->pool_size));
        ok = ok && ctl_json_add(obj, "max_overflow", json_object_new_int(p->max_overflow));
        ok = ok && ctl_json_add(obj, "timeout", ctl_json_seconds((int64_t)p->timeout_ms * 1000));
        ok = ok && ctl_json_add(obj, "reset_on_return",
                                json_object_new_string(ctl_reset_mode_name(p->reset_mode)));
        ok = ok && ctl_json_add(obj, "pool_mode",
                                json_object_new_string(fp_pool_mode_name(p->pool_mode)));
        ok = ok && ctl_json_add(obj, "checked_in", json_object_new_int(p->checked_in));
        ok = ok && ctl_json_add(obj, "checked_out", json_object_new_int(p->checked_out));
        ok = ok && ctl_json_add(obj, "overflow", json_object_new_int(p->overflow));
        ok = ok && ctl_json_add(obj, "waiting", json_object_new_int(p->waiting));
        ok = ok && ctl_json_add(obj, "counters", ctl_counters_json(&p->counters));
        ok = ok && ctl_json_add(obj, "slots", ctl_slots_json(v, now_usec));
        if (!ok) {
                json_object_put(obj);
                return NULL;
        }
        return obj;
}

/*
 * Prints {"pools": [...]} for the pools of st (only the one named only_pool
 * if that is not NULL) on stdout. Returns 0 or -ENOMEM.
 */
static int ctl_print_status_json(const struct ctl_status *st, const char *only_pool)
{
        struct json_object *root = json_object_new_object();
        struct json_object *pools = json_object_new_array();
        int r = -ENOMEM;

        if (!root || !ctl_json_add(root, "pools", pools))
                goto out;
        for (uint32_t i = 0; i < st->n_pools; i++) {
                const struct ctl_pool_view *v = &st->pools[i];
                if (only_pool && strcmp(v->pool.name, only_pool) != 0)
                        continue;
                struct json_object *pool = ctl_pool_json(v, st->now_usec);
                if (!pool || json_object_array_add(pools, pool) < 0) {
                        json_object_put(pool);
                        goto out;
                }
        }
        const char *text = json_object_to_json_string_ext(
                root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (text) {
                puts(text);
                r = 0;
        }
out:
        json_object_put(root);
        return r;
}

static void ctl_print_status_text(const struct ctl_status *st, const char *only_pool)
{
        bool first = true;

        for (uint32_t i = 0; i < st->n_pools; i++) {
                const struct ctl_pool_view *v = &st->pools[i];
                if (only_pool && strcmp(v->pool.name, only_pool) != 0)
                        continue;
                if (!first)
                        putchar('\n');
                ctl_print_pool_text(v, st->now_usec);
                first = false;
        }
}

static bool ctl_status_has_pool(const struct ctl_status *st, const char *name)
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
static int ctl_finish_output(void)
{
        if (fflush(stdout) != 0 || ferror(stdout)) {
                fprintf(stderr, "forkpoolctl: cannot write the output: %s\n", strerror(errno));
                return CTL_EXIT_FAILURE;
        }
        return CTL_EXIT_OK;
}

/*
 * `status [--json] [POOL]`: every pool's accounting, counters and slots in
 * use, as text or JSON. argv[0] is "status". Returns the exit status.
 */
static int ctl_cmd_status(int argc, char *argv[], const char *socket_path)
{
        static const struct option options[] = {
                {"json", no_argument, NULL, 'j'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        const char *only_pool = NULL;
        struct ctl_status st;
        bool json = false;
        int c, r;

        optind = 0; /* GNU getopt: start over on the command's own arguments */
        while ((c = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
                switch (c) {
                case 'j':
                        json = true;
                        break;
                case 'h':
                        ctl_usage(stdout);
                        return ctl_finish_output();
                default:
                        return ctl_option_error(c, argv);
                }
        }
        if (argc - optind > 1)
                return ctl_usage_error("status takes one POOL at most; unexpected",
                                       argv[optind + 1]);
        if (optind < argc)
                only_pool = argv[optind];

        r = ctl_status_load(socket_path, &st);
        if (r < 0)
                return CTL_EXIT_FAILURE;
        if (only_pool && !ctl_status_has_pool(&st, only_pool)) {
                fprintf(stderr, "forkpoolctl: no pool '%s'\n", only_pool);
                ctl_status_free(&st);
                return CTL_EXIT_FAILURE;
        }
        if (json)
                r = ctl_print_status_json(&st, only_pool);
        else
                ctl_print_status_text(&st, only_pool);
        ctl_status_free(&st);
        if (r < 0) {
                fprintf(stderr, "forkpoolctl: cannot build the JSON output: %s\n", strerror(-r));
                return CTL_EXIT_FAILURE;
        }
        return ctl_finish_output();
}

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

/* True if pool v is shown: every pool, or only the one named only_pool. */
static bool ctl_pool_selected(const struct ctl_pool_view *v, const char *only_pool)
{
        return !only_pool || strcmp(v->pool.name, only_pool) == 0;
}

static uint64_t ctl_monotonic_usec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
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
        uint64_t mono_usec = ctl_monotonic_usec();

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
static int ctl_cmd_metrics(int argc, char *argv[], const char *socket_path)
{
        const char *only_pool = NULL;
        struct ctl_status st;
        int r;

        r = ctl_parse_pool_arg(argc, argv, "metrics", &only_pool);
        if (r >= 0)
                return r;
        r = ctl_status_load(socket_path, &st);
        if (r < 0)
                return CTL_EXIT_FAILURE;
        if (only_pool && !ctl_status_has_pool(&st, only_pool)) {
                fprintf(stderr, "forkpoolctl: no pool '%s'\n", only_pool);
                ctl_status_free(&st);
                return CTL_EXIT_FAILURE;
        }
        ctl_print_metrics(&st, only_pool);
        ctl_status_free(&st);
        return ctl_finish_output();
}

/*
 * top: the pools and their slots in use, redrawn every interval. On a
 * terminal each frame clears the screen (ANSI) and the slot list is cut to
 * the window's height; otherwise frames are plain blocks one after another,
 * separated by a blank line. Rates are per second since the previous frame
 * of the same supervisor.
 */

#define CTL_TOP_DEFAULT_INTERVAL_USEC 1000000L
#define CTL_TOP_MIN_INTERVAL_USEC     10000L       /* 0.01 s */
#define CTL_TOP_MAX_INTERVAL_USEC     86400000000L /* a day */

/* The pool named name in st, or NULL. */
static const struct fp_shm_pool *ctl_find_pool(const struct ctl_status *st, const char *name)
{
        for (uint32_t i = 0; i < st->n_pools; i++)
                if (strcmp(st->pools[i].pool.name, name) == 0)
                        return &st->pools[i].pool;
        return NULL;
}

/* Writes the rate of a counter from before to now over seconds, or "-" if unknown. */
static const char *ctl_fmt_rate(char *buf, size_t len, const uint64_t *before, uint64_t now,
                                double seconds)
{
        if (!before || now < *before || seconds <= 0)
                snprintf(buf, len, "-");
        else
                snprintf(buf, len, "%.1f", (double)(now - *before) / seconds);
        return buf;
}

/* Writes a duration in seconds as "45s", "12m05s", "3h02m" or "4d07h". */
static const char *ctl_fmt_uptime(char *buf, size_t len, uint64_t usec)
{
        uint64_t s = usec / 1000000u;

        if (s < 60)
                snprintf(buf, len, "%" PRIu64 "s", s);
        else if (s < 3600)
                snprintf(buf, len, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
        else if (s < 86400)
                snprintf(buf, len, "%" PRIu64 "h%02" PRIu64 "m", s / 3600, s / 60 % 60);
        else
                snprintf(buf, len, "%" PRIu64 "d%02" PRIu64 "h", s / 86400, s / 3600 % 24);
        return buf;
}

/*
 * Writes s into buf (len bytes), each control character replaced by '?': a
 * label is the worker's text, and must not drive the terminal. Returns buf.
 */
static const char *ctl_fmt_printable(char *buf, size_t len, const char *s)
{
        size_t i = 0;

        for (; len > 0 && s[i] && i < len - 1; i++)
                buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
        if (len > 0)
                buf[i] = '\0';
        return buf;
}

/*
 * Prints one frame of top for st (prev: the previous frame of the same
 * supervisor, or NULL), at most max_lines lines of slots (0: no limit).
 */
static void ctl_top_frame(const struct ctl_status *st, const struct ctl_status *prev,
                          const char *socket_path, const char *only_pool, long interval_usec,
                          unsigned max_lines)
{
        double seconds = prev ? (double)ctl_elapsed_usec(prev->now_usec, st->now_usec) / 1e6 : 0;
        char hms[16] = "", up[32], rate[4][16], name[FP_SHM_POOL_NAME_MAX];
        time_t now_s = (time_t)(st->now_usec / 1000000u);
        struct tm tm;
        unsigned shown = 0, hidden = 0;

        if (localtime_r(&now_s, &tm))
                strftime(hms, sizeof(hms), "%H:%M:%S", &tm);
        printf("forkpoold pid %d on %s, up %s, %s, every %g s\n\n", (int)st->supervisor_pid,
               socket_path,
               st->started_usec ? ctl_fmt_uptime(up, sizeof(up),
                                                 ctl_elapsed_usec(st->started_usec, st->now_usec))
                                : "?",
               hms, interval_usec / 1e6);
        printf("%-12s %-6s %4s %5s %4s %4s %4s %4s %7s %6s %6s %6s\n", "POOL", "CLASS", "SIZE",
               "MAXOV", "IDLE", "USED", "WAIT", "LIVE", "ACQ/s", "TMO/s", "CONN/s", "FAIL/s");
        for (uint32_t i = 0; i < st->n_pools; i++) {
                const struct fp_shm_pool *p = &st->pools[i].pool;
                const struct fp_shm_counters *c = &p->counters;
                const struct fp_shm_pool *b = prev ? ctl_find_pool(prev, p->name) : NULL;
                if (!ctl_pool_selected(&st->pools[i], only_pool))
                        continue;
                printf("%-12s %-6s %4" PRId32 " %5" PRId32 " %4" PRId32 " %4" PRId32 " %4" PRId32
                       " %4" PRId32 " %7s %6s %6s %6s\n",
                       ctl_fmt_printable(name, sizeof(name), p->name),
                       fp_pool_class_name(p->pool_class), p->pool_size, p->max_overflow,
                       p->checked_in, p->checked_out, p->waiting, p->live,
                       ctl_fmt_rate(rate[0], sizeof(rate[0]), b ? &b->counters.acquires : NULL,
                                    c->acquires, seconds),
                       ctl_fmt_rate(rate[1], sizeof(rate[1]), b ? &b->counters.timeouts : NULL,
                                    c->timeouts, seconds),
                       ctl_fmt_rate(rate[2], sizeof(rate[2]), b ? &b->counters.connects : NULL,
                                    c->connects, seconds),
                       ctl_fmt_rate(rate[3], sizeof(rate[3]),
                                    b ? &b->counters.connect_failures : NULL, c->connect_failures,
                                    seconds));
        }

        for (uint32_t i = 0; i < st->n_pools; i++)
                if (ctl_pool_selected(&st->pools[i], only_pool) &&
                    (st->pools[i].pool.flags & FP_SHM_POOL_PAUSED))
                        printf("pool %s is paused: no new leases (forkpoolctl resume POOL)\n",
                               ctl_fmt_printable(name, sizeof(name), st->pools[i].pool.name));
        printf("\n%-12s %4s  %-10s  %7s  %6s  %7s  %8s  %s\n", "POOL", "SLOT", "STATE", "HOLDER",
               "HELD", "BACKEND", "AGE", "LABEL");
        for (uint32_t i = 0; i < st->n_pools; i++) {
                const struct ctl_pool_view *v = &st->pools[i];
                if (!ctl_pool_selected(v, only_pool))
                        continue;
                for (uint32_t k = 0; k < v->n_slots; k++) {
                        const struct fp_shm_slot *s = &v->slots[k];
                        char holder[16], held[32], backend[16], age[32];
                        char label[FP_SHM_LABEL_MAX];
                        bool leased = s->state == FP_SLOT_LEASED;
                        if (s->state == FP_SLOT_UNUSED)
                                continue;
                        if (max_lines && shown >= max_lines) {
                                hidden++;
                                continue;
                        }
                        printf("%-12s %4" PRIu32 "  %-10s  %7s  %6s  %7s  %8s  %s\n",
                               ctl_fmt_printable(name, sizeof(name), v->pool.name), k,
                               fp_slot_state_name(s->state),
                               ctl_fmt_pid(holder, sizeof(holder), s->holder_pid),
                               ctl_fmt_age(held, sizeof(held), leased ? s->last_checkout_usec : 0,
                                           st->now_usec),
                               ctl_fmt_pid(backend, sizeof(backend), s->backend_pid),
                               ctl_fmt_age(age, sizeof(age), s->connect_usec, st->now_usec),
                               ctl_fmt_printable(label, sizeof(label), leased ? s->label : ""));
                        shown++;
                }
        }
        if (hidden)
                printf("… %u more slots (a taller window shows them)\n", hidden);
}

/* The terminal's height in lines, or 0 if stdout is not a terminal. */
static unsigned ctl_terminal_lines(void)
{
        struct winsize ws;

        if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) < 0 || ws.ws_row == 0)
                return 0;
        return ws.ws_row;
}

/* Parses SEC (decimals allowed) for --interval into *ret_usec. Returns false if invalid. */
static bool ctl_parse_interval(const char *text, long *ret_usec)
{
        char *end;
        double sec;

        errno = 0;
        sec = strtod(text, &end);
        if (errno || end == text || *end || !(sec * 1e6 >= CTL_TOP_MIN_INTERVAL_USEC) ||
            sec * 1e6 > CTL_TOP_MAX_INTERVAL_USEC)
                return false;
        *ret_usec = (long)(sec * 1e6 + 0.5);
        return true;
}

/* Parses N >= 1 for --count into *ret. Returns false if invalid. */
static bool ctl_parse_count(const char *text, long *ret)
{
        char *end;
        long n;

        errno = 0;
        n = strtol(text, &end, 10);
        if (errno || end == text || *end || n < 1)
                return false;
        *ret = n;
        return true;
}

/*
 * `top [--interval SEC] [--count N] [POOL]`: a refreshing view of the pools
 * and their slots, until interrupted or after N frames. A supervisor that is
 * gone or restarting after the first frame is reported and waited for.
 * argv[0] is "top". Returns the exit status (1 if the last frame could not be
 * read).
 */
static int ctl_cmd_top(int argc, char *argv[], const char *socket_path)
{
        static const struct option options[] = {
                {"interval", required_argument, NULL, 'i'},
                {"count", required_argument, NULL, 'n'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        long interval_usec = CTL_TOP_DEFAULT_INTERVAL_USEC, count = 0;
        const char *only_pool = NULL;
        struct ctl_status prev = {0};
        bool have_prev = false, tty = isatty(STDOUT_FILENO);
        int c, r = 0;

        optind = 0; /* GNU getopt: start over on the command's own arguments */
        while ((c = getopt_long(argc, argv, ":i:n:h", options, NULL)) != -1) {
                switch (c) {
                case 'i':
                        if (!ctl_parse_interval(optarg, &interval_usec))
                                return ctl_usage_error(
                                        "--interval takes seconds from 0.01 to 86400, not", optarg);
                        break;
                case 'n':
                        if (!ctl_parse_count(optarg, &count))
                                return ctl_usage_error("--count takes a whole number >= 1, not",
                                                       optarg);
                        break;
                case 'h':
                        ctl_usage(stdout);
                        return ctl_finish_output();
                default:
                        return ctl_option_error(c, argv);
                }
        }
        if (argc - optind > 1)
                return ctl_usage_error("top takes one POOL at most; unexpected", argv[optind + 1]);
        if (optind < argc)
                only_pool = argv[optind];

        for (long frame = 0; count == 0 || frame < count; frame++) {
                struct ctl_status st;

                if (frame > 0)
                        ctl_sleep_usec(interval_usec);
                if (tty)
                        fputs("\033[H\033[2J", stdout); /* cursor home, clear the screen */
                else if (frame > 0)
                        putchar('\n');
                fflush(stdout); /* before any error on stderr, so that it shows below */

                r = ctl_status_load(socket_path, &st);
                if (r < 0) {
                        if (frame == 0)
                                return CTL_EXIT_FAILURE;
                        printf("(waiting for forkpoold on %s)\n", socket_path);
                        ctl_status_free(&prev);
                        have_prev = false;
                } else {
                        if (frame == 0 && only_pool && !ctl_status_has_pool(&st, only_pool)) {
                                fprintf(stderr, "forkpoolctl: no pool '%s'\n", only_pool);
                                ctl_status_free(&st);
                                return CTL_EXIT_FAILURE;
                        }
                        /* Rates only across frames of one supervisor. */
                        bool same = have_prev && prev.supervisor_pid == st.supervisor_pid &&
                                    prev.started_usec == st.started_usec;
                        /* On a terminal, as many slots as fit under the header (2 lines),
                         * the pool table (1 + pools), a blank, the slot header and a
                         * "more" line; everything otherwise. */
                        unsigned lines = tty ? ctl_terminal_lines() : 0;
                        unsigned used = 6 + st.n_pools, max_slot_lines = 0;
                        if (lines > 0)
                                max_slot_lines = lines > used + 1 ? lines - used : 1;
                        ctl_top_frame(&st, same ? &prev : NULL, socket_path, only_pool,
                                      interval_usec, max_slot_lines);
                        ctl_status_free(&prev);
                        prev = st;
                        have_prev = true;
                }
                if (fflush(stdout) != 0 || ferror(stdout))
                        break;
        }
        ctl_status_free(&prev);
        int out = ctl_finish_output();
        return out != CTL_EXIT_OK ? out : r < 0 ? CTL_EXIT_FAILURE : CTL_EXIT_OK;
}

/* The control socket, as libforkpool finds it: the option, $FORKPOOL_SOCKET, the default. */
static const char *ctl_socket_path(const char *option)
{
        const char *env;

        if (option)
                return option;
        env = getenv("FORKPOOL_SOCKET");
        return env && *env ? env : FORKPOOL_DEFAULT_SOCKET;
}

int main(int argc, char *argv[])
{
        static const struct option options[] = {
                {"socket", required_argument, NULL, 's'},
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, 'V'},
                {0},
        };
        const char *socket_option = NULL;
        int c;

        opterr = 0; /* we say it in one line, with the hint */
        /* "+": stop at the command; its options are its own. */
        while ((c = getopt_long(argc, argv, "+:h", options, NULL)) != -1) {
                switch (c) {
                case 's':
                        if (!*optarg)
                                return ctl_usage_error("empty path given to option", "--socket");
                        socket_option = optarg;
                        break;
                case 'h':
                        ctl_usage(stdout);
                        return ctl_finish_output();
                case 'V':
                        printf("forkpoolctl %s\n", FORKPOOL_VERSION_STRING);
                        return ctl_finish_output();
                default:
                        return ctl_option_error(c, argv);
                }
        }
        if (optind >= argc) {
                fprintf(stderr, "forkpoolctl: missing command\n%s", ctl_usage_hint);
                return CTL_EXIT_USAGE;
        }
        const char *cmd = argv[optind];
        if (strcmp(cmd, "status") == 0)
                return ctl_cmd_status(argc - optind, argv + optind, ctl_socket_path(socket_option));
        if (strcmp(cmd, "metrics") == 0)
                return ctl_cmd_metrics(argc - optind, argv + optind,
                                       ctl_socket_path(socket_option));
        if (strcmp(cmd, "top") == 0)
                return ctl_cmd_top(argc - optind, argv + optind, ctl_socket_path(socket_option));
        if (strcmp(cmd, "events") == 0)
                return ctl_cmd_events(argc - optind, argv + optind, ctl_socket_path(socket_option));
        if (strcmp(cmd, "url-check") == 0)
                return ctl_cmd_url_check(argc - optind, argv + optind);
        if (ctl_is_extra_command(cmd))
                return ctl_cmd_admin(argc - optind, argv + optind, ctl_socket_path(socket_option));
        return ctl_usage_error("unknown command", cmd);
}
