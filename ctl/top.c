/* SPDX-License-Identifier: MIT */
/*
 * top.c — `forkpoolctl top`: the pools and their slots in use, redrawn every
 * interval.
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
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

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
int ctl_cmd_top(int argc, char *argv[], const char *socket_path)
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
