/* SPDX-License-Identifier: MIT */
/*
 * status.c — `forkpoolctl status`: every pool's accounting, counters and
 * slots in use, as text or JSON (json-c).
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
#include <json-c/json.h>

#include "proto.h"

/* SQLAlchemy's status() line for the pool's class (QueuePool's character for character). */
static void ctl_print_status_line(const struct fp_shm_pool *p)
{
        char line[256];
        fp_pool_status_line(line, sizeof(line), p->pool_class, (int)p->pool_size,
                            (int)p->checked_in, p->pool_size != 0 ? (int)p->overflow : 0,
                            (int)p->checked_out);
        printf("%s\n", line);
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

/*
 * `status [--json] [POOL]`: every pool's accounting, counters and slots in
 * use, as text or JSON. argv[0] is "status". Returns the exit status.
 */
int ctl_cmd_status(int argc, char *argv[], const char *socket_path)
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

        if (ctl_status_load_pool(socket_path, only_pool, &st) < 0)
                return CTL_EXIT_FAILURE;
        r = 0;
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
