/* SPDX-License-Identifier: MIT */
/*
 * it_ctl.c — forkpoolctl's read-only views against a real forkpoold:
 * `metrics` (the Prometheus text format, checked line by line, and the values
 * of a known pool state), `top` (plain repeated frames when piped, an ANSI
 * redraw on a terminal cut to the window, rates, a supervisor restarted under
 * it), and their errors (no supervisor, no such pool, bad arguments).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "itest.h"

#define OUT_MAX 65536

/*
 * Runs forkpoolctl with args (a shell fragment) on s's socket, its stdout and
 * stderr into out (OUT_MAX bytes). Returns its exit status.
 */
static int ctl(char *out, const struct itest_sup *s, const char *args)
{
        return itest_sh(out, OUT_MAX, "%s --socket %s %s 2>&1", FP_FORKPOOLCTL_PATH, s->socket,
                        args);
}

static int count_substr(const char *text, const char *what)
{
        int n = 0;
        for (const char *p = strstr(text, what); p; p = strstr(p + strlen(what), what))
                n++;
        return n;
}

/* ------------------------------------------------------------------ metrics */

static bool prom_name_char(char c, bool first)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
               (!first && c >= '0' && c <= '9');
}

/* Parses a metric or label name at *p; returns its length (0 if none) and advances *p. */
static size_t prom_name(const char **p)
{
        const char *start = *p;
        while (prom_name_char(**p, *p == start))
                (*p)++;
        return (size_t)(*p - start);
}

/*
 * Checks text against the Prometheus text exposition format (0.0.4) as
 * forkpoolctl writes it: each family has # HELP then # TYPE (gauge or
 * counter) before its samples, no family appears twice, counters end in
 * _total, every sample belongs to the family above it, label values are
 * quoted with \\ \" \n escapes only, values are numbers, the text ends with a
 * newline. Returns the number of families; fails the test naming the line.
 */
static int check_prom_format(const char *text)
{
        char families[128][96], family[96] = "", type[16] = "";
        int n_families = 0, lineno = 0;
        bool want_type = false;

        CHECK_MSG(*text && text[strlen(text) - 1] == '\n', "output does not end in a newline");
        for (const char *line = text; *line; line = strchr(line, '\n') + 1) {
                const char *end = strchr(line, '\n'), *p = line;
                int len = (int)(end - line);
                lineno++;
                if (strncmp(line, "# HELP ", 7) == 0) {
                        CHECK_MSG(!want_type, "line %d: HELP without TYPE before it", lineno);
                        p += 7;
                        size_t n = prom_name(&p);
                        CHECK_MSG(n > 0 && n < sizeof(family) && *p == ' ' && p + 1 < end,
                                  "line %d: bad HELP: %.*s", lineno, len, line);
                        snprintf(family, sizeof(family), "%.*s", (int)n, p - n);
                        for (int i = 0; i < n_families; i++)
                                CHECK_MSG(strcmp(families[i], family) != 0,
                                          "line %d: family %s twice", lineno, family);
                        CHECK(n_families < 128);
                        snprintf(families[n_families++], sizeof(families[0]), "%s", family);
                        want_type = true;
                        continue;
                }
                if (strncmp(line, "# TYPE ", 7) == 0) {
                        CHECK_MSG(want_type, "line %d: TYPE without HELP", lineno);
                        p += 7;
                        size_t n = prom_name(&p);
                        CHECK_MSG(n == strlen(family) && strncmp(p - n, family, n) == 0 &&
                                          *p == ' ',
                                  "line %d: TYPE of another family: %.*s", lineno, len, line);
                        snprintf(type, sizeof(type), "%.*s", (int)(end - p - 1), p + 1);
                        CHECK_MSG(strcmp(type, "gauge") == 0 || strcmp(type, "counter") == 0 ||
                                          strcmp(type, "histogram") == 0,
                                  "line %d: type %s", lineno, type);
                        size_t fl = strlen(family);
                        CHECK_MSG(strcmp(type, "counter") != 0 ||
                                          (fl > 6 && strcmp(family + fl - 6, "_total") == 0),
                                  "line %d: counter %s does not end in _total", lineno, family);
                        want_type = false;
                        continue;
                }
                CHECK_MSG(line[0] != '#', "line %d: unknown comment: %.*s", lineno, len, line);
                CHECK_MSG(!want_type && family[0], "line %d: sample before HELP/TYPE", lineno);
                size_t n = prom_name(&p);
                size_t fl = strlen(family);
                bool same = n == fl && strncmp(line, family, n) == 0;
                if (strcmp(type, "histogram") == 0) {
                        /* A histogram's samples are FAMILY_bucket, FAMILY_sum, FAMILY_count. */
                        const char *suffix = line + fl;
                        same = n > fl && strncmp(line, family, fl) == 0 &&
                               ((n - fl == 7 && strncmp(suffix, "_bucket", 7) == 0) ||
                                (n - fl == 4 && strncmp(suffix, "_sum", 4) == 0) ||
                                (n - fl == 6 && strncmp(suffix, "_count", 6) == 0));
                }
                CHECK_MSG(same, "line %d: sample of another family than %s: %.*s", lineno, family,
                          len, line);
                if (*p == '{') {
                        p++;
                        for (;;) {
                                CHECK_MSG(prom_name(&p) > 0 && *p == '=' && p[1] == '"',
                                          "line %d: bad label: %.*s", lineno, len, line);
                                for (p += 2; *p != '"'; p++) {
                                        CHECK_MSG(p < end, "line %d: unterminated label value",
                                                  lineno);
                                        if (*p == '\\') {
                                                p++;
                                                CHECK_MSG(*p == '\\' || *p == '"' || *p == 'n',
                                                          "line %d: bad escape", lineno);
                                        }
                                }
                                p++;
                                if (*p == ',') {
                                        p++;
                                        continue;
                                }
                                CHECK_MSG(*p == '}', "line %d: bad label list", lineno);
                                p++;
                                break;
                        }
                }
                CHECK_MSG(*p == ' ', "line %d: no value: %.*s", lineno, len, line);
                char *num_end;
                errno = 0;
                (void)strtod(p + 1, &num_end);
                CHECK_MSG(errno == 0 && num_end == end && num_end > p + 1,
                          "line %d: bad value: %.*s", lineno, len, line);
        }
        CHECK_MSG(!want_type, "the last family has no TYPE");
        return n_families;
}

/* The value of the sample `series` (name with its labels, exactly as printed). */
static double prom_value(const char *text, const char *series)
{
        size_t n = strlen(series);
        for (const char *line = text; *line; line = strchr(line, '\n') + 1)
                if (strncmp(line, series, n) == 0 && line[n] == ' ')
                        return strtod(line + n + 1, NULL);
        itest_fail(__FILE__, __LINE__, "no sample %s in:\n%s", series, text);
}

/* Checks that family name is present with the given TYPE. */
static void check_family(const char *text, const char *name, const char *type)
{
        char want[160];
        snprintf(want, sizeof(want), "# TYPE forkpool_%s %s\n", name, type);
        CHECK_MSG(strstr(text, want), "missing %s", want);
}

#define CHECK_SAMPLE(text, series, value)                                                          \
        do {                                                                                       \
                double _v = prom_value(text, series);                                              \
                CHECK_MSG(_v == (double)(value), "%s = %g, expected %g", series, _v,               \
                          (double)(value));                                                        \
        } while (0)

static void test_metrics(void)
{
        struct itest_sup s;
        char pool_lines[2048], *out = malloc(OUT_MAX);
        forkpool *fp;
        forkpool_lease *a, *b, *o, *o2;

        CHECK(out);
        snprintf(pool_lines, sizeof(pool_lines),
                 "pool_size = 3\nmax_overflow = 2\n\n[pool other]\nurl = %s\npool_size = 1\n"
                 "max_overflow = 0\npool_mode = transaction\n",
                 itest_url("it_ctl_metrics"));
        itest_sup_start(&s, "it_ctl_metrics", pool_lines, NULL);
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire_labeled(fp, "main", 2000, "GET /a", &a));
        CHECK_OK(forkpool_acquire(fp, "main", 2000, &b));
        CHECK(forkpool_lease_pg(a));
        CHECK_OK(forkpool_release(b));
        CHECK_OK(forkpool_acquire(fp, "other", 2000, &o));
        CHECK(forkpool_acquire(fp, "other", 0, &o2) == -ETIMEDOUT);
        /* The release is not answered: wait until the supervisor has handled it (reset too). */
        CHECK_SOON(itest_pool(&s).counters.releases == 1 && itest_pool(&s).checked_in == 1, 5000,
                   "the release was not handled");

        time_t now = time(NULL);
        CHECK_MSG(ctl(out, &s, "metrics") == 0, "metrics:\n%s", out);
        int families = check_prom_format(out);
        CHECK_MSG(families >= 20, "%d families", families);

        static const char *const gauges[] = {"checked_in", "checked_out", "overflow",    "waiting",
                                             "live",       "pool_size",   "max_overflow"};
        static const char *const counters[] = {
                "acquires_total",         "releases_total",      "timeouts_total", "connects_total",
                "connect_failures_total", "invalidations_total", "reclaims_total", "closes_total"};
        for (size_t i = 0; i < sizeof(gauges) / sizeof(gauges[0]); i++)
                check_family(out, gauges[i], "gauge");
        for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++)
                check_family(out, counters[i], "counter");

        CHECK_SAMPLE(out, "forkpool_pool_size{pool=\"main\"}", 3);
        CHECK_SAMPLE(out, "forkpool_max_overflow{pool=\"main\"}", 2);
        CHECK_SAMPLE(out, "forkpool_checked_out{pool=\"main\"}", 1);
        CHECK_SAMPLE(out, "forkpool_checked_in{pool=\"main\"}", 1);
        CHECK_SAMPLE(out, "forkpool_live{pool=\"main\"}", 2);
        CHECK_SAMPLE(out, "forkpool_overflow{pool=\"main\"}", -1);
        CHECK_SAMPLE(out, "forkpool_waiting{pool=\"main\"}", 0);
        CHECK_SAMPLE(out, "forkpool_acquires_total{pool=\"main\"}", 2);
        CHECK_SAMPLE(out, "forkpool_releases_total{pool=\"main\"}", 1);
        CHECK_SAMPLE(out, "forkpool_connects_total{pool=\"main\"}", 2);
        CHECK_SAMPLE(out, "forkpool_timeouts_total{pool=\"main\"}", 0);
        CHECK_SAMPLE(out, "forkpool_closes_total{pool=\"main\"}", 0);
        CHECK_SAMPLE(out, "forkpool_slots{pool=\"main\",state=\"leased\"}", 1);
        CHECK_SAMPLE(out, "forkpool_slots{pool=\"main\",state=\"idle\"}", 1);
        CHECK_SAMPLE(out, "forkpool_paused{pool=\"main\"}", 0);
        /* Two acquires waited, one lease came back: the histograms count them. */
        CHECK_SAMPLE(out, "forkpool_acquire_wait_seconds_count{pool=\"main\"}", 2);
        CHECK_SAMPLE(out, "forkpool_acquire_wait_seconds_bucket{pool=\"main\",le=\"+Inf\"}", 2);
        CHECK_SAMPLE(out, "forkpool_lease_hold_seconds_count{pool=\"main\"}", 1);
        CHECK_SAMPLE(out, "forkpool_pool_size{pool=\"other\"}", 1);
        CHECK_SAMPLE(out, "forkpool_checked_out{pool=\"other\"}", 1);
        CHECK_SAMPLE(out, "forkpool_timeouts_total{pool=\"other\"}", 1);
        CHECK_SAMPLE(out, "forkpool_acquires_total{pool=\"other\"}", 1);
        CHECK(strstr(out,
                     "forkpool_pool_info{pool=\"main\",class=\"queue\",database=\"postgresql\","
                     "reset_on_return=\"rollback\",pool_mode=\"session\"} 1\n"));
        CHECK(strstr(out,
                     "forkpool_pool_info{pool=\"other\",class=\"queue\",database=\"postgresql\","
                     "reset_on_return=\"rollback\",pool_mode=\"transaction\"} 1\n"));
        double started = prom_value(out, "forkpool_start_time_seconds");
        CHECK_MSG(started > (double)now - 600 && started <= (double)now + 1, "started %f, now %ld",
                  started, (long)now);

        /* One pool only. */
        CHECK(ctl(out, &s, "metrics other") == 0);
        check_prom_format(out);
        CHECK(strstr(out, "pool=\"other\"") && !strstr(out, "pool=\"main\""));

        /* pool_mode in status, text and JSON. */
        CHECK(ctl(out, &s, "status other") == 0);
        CHECK_MSG(strstr(out, "reset rollback, pool_mode transaction)"), "%s", out);
        CHECK(ctl(out, &s, "status main") == 0);
        CHECK_MSG(strstr(out, "reset rollback, pool_mode session)"), "%s", out);
        CHECK(ctl(out, &s, "status --json other") == 0);
        CHECK_MSG(strstr(out, "\"pool_mode\":\"transaction\"") ||
                          strstr(out, "\"pool_mode\": \"transaction\""),
                  "%s", out);

        CHECK(ctl(out, &s, "metrics nosuch") == 1 && strstr(out, "no pool 'nosuch'"));
        CHECK(ctl(out, &s, "metrics main other") == 2 && strstr(out, "one POOL at most"));
        CHECK(ctl(out, &s, "metrics --bogus") == 2 && strstr(out, "unknown option"));

        CHECK_OK(forkpool_release(a));
        CHECK_OK(forkpool_release(o));
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
        CHECK(ctl(out, &s, "metrics") == 1 && strstr(out, "no forkpoold"));
        free(out);
}

/* ---------------------------------------------------------------------- top */

static void test_top_plain(void)
{
        struct itest_sup s;
        char *out = malloc(OUT_MAX), want[320];
        forkpool *fp;
        forkpool_lease *lease;

        CHECK(out);
        itest_sup_start(&s, "it_ctl_top", "pool_size = 2\nmax_overflow = 1\n", NULL);
        CHECK_OK(forkpool_open(s.socket, &fp));
        CHECK_OK(forkpool_acquire_labeled(fp, "main", 2000, "GET /orders\033[2J", &lease));

        int64_t t0 = itest_now_ms();
        CHECK_MSG(ctl(out, &s, "top --count 3 --interval 0.1") == 0, "top:\n%s", out);
        int64_t took = itest_now_ms() - t0;
        CHECK_MSG(took >= 150 && took < 3000, "3 frames 0.1 s apart took %lld ms", (long long)took);

        snprintf(want, sizeof(want), "forkpoold pid %d on %s", (int)s.pid, s.socket);
        CHECK_MSG(count_substr(out, want) == 3, "three frames expected:\n%s", out);
        CHECK_MSG(!strchr(out, '\033'), "escape sequences in plain output:\n%s", out);
        /* The label is shown, its control characters made harmless. */
        CHECK_MSG(strstr(out, "GET /orders?[2J"), "label:\n%s", out);
        snprintf(want, sizeof(want), " leased ");
        CHECK(strstr(out, want));
        snprintf(want, sizeof(want), " %d ", (int)getpid());
        CHECK_MSG(strstr(out, want), "holder pid %d:\n%s", (int)getpid(), out);
        /* Frames are separated by a blank line; rates appear from the second frame on. */
        const char *second = strstr(strstr(out, "forkpoold pid") + 1, "forkpoold pid");
        CHECK(second && second[-1] == '\n' && second[-2] == '\n');
        CHECK_MSG(strstr(out, " -      -      -      -\n"), "no rate in frame 1:\n%s", out);
        CHECK_MSG(strstr(second, "0.0    0.0    0.0\n"), "rates in frame 2:\n%s", second);

        CHECK(ctl(out, &s, "top --count 1 main") == 0 && strstr(out, "main "));
        CHECK(ctl(out, &s, "top --count 1 nosuch") == 1 && strstr(out, "no pool 'nosuch'"));

        CHECK_OK(forkpool_release(lease));
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
        free(out);
}

/* On a terminal: each frame clears the screen, and the slot list fits the window. */
static void test_top_tty(void)
{
        struct itest_sup s;
        char *out = malloc(OUT_MAX);
        forkpool *fp;
        forkpool_lease *leases[8];

        CHECK(out);
        itest_sup_start(&s, "it_ctl_tty", "pool_size = 8\nmax_overflow = 0\n", NULL);
        CHECK_OK(forkpool_open(s.socket, &fp));
        for (int i = 0; i < 8; i++)
                CHECK_OK(forkpool_acquire(fp, "main", 5000, &leases[i]));

        /* 12 rows: 7 lines of headers and pool table leave room for 5 slots. */
        int status = itest_sh(out, OUT_MAX,
                              "script -qec 'stty rows 12 cols 100; %s --socket %s top --count 2 "
                              "--interval 0.1' /dev/null 2>&1",
                              FP_FORKPOOLCTL_PATH, s.socket);
        CHECK_MSG(status == 0, "script exit %d:\n%s", status, out);
        CHECK_MSG(count_substr(out, "\033[H\033[2J") == 2, "two redraws expected:\n%s", out);
        CHECK_MSG(count_substr(out, " leased ") == 2 * 5, "5 slots per frame:\n%s", out);
        CHECK_MSG(count_substr(out, "3 more slots") == 2, "cut list:\n%s", out);

        for (int i = 0; i < 8; i++)
                CHECK_OK(forkpool_release(leases[i]));
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
        free(out);
}

static void test_top_bad_arguments(void)
{
        struct itest_sup s;
        char *out = malloc(OUT_MAX);

        CHECK(out);
        itest_sup_start(&s, "it_ctl_args", NULL, NULL);
        static const char *const bad[] = {
                "top --interval 0",   "top --interval abc", "top --interval 1e9",
                "top --interval nan", "top --count 0",      "top --count -1",
                "top --count 2x",     "top --bogus",        "top main other",
                "top --interval",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                int status = ctl(out, &s, bad[i]);
                CHECK_MSG(status == 2, "'%s' exited %d: %s", bad[i], status, out);
                CHECK_MSG(strstr(out, "forkpoolctl: ") && count_substr(out, "\n") == 2,
                          "'%s': one line and the hint expected: %s", bad[i], out);
        }
        CHECK(itest_sup_stop(&s) == 0);
        int status = ctl(out, &s, "top --count 1");
        CHECK_MSG(status == 1 && strstr(out, "no forkpoold"), "exit %d: %s", status, out);
        free(out);
}

/* top keeps going while the supervisor is killed and started again, and says so. */
static void test_top_follows_restart(void)
{
        struct itest_sup s;
        char *out = malloc(OUT_MAX), path[256], want[64];

        CHECK(out);
        itest_sup_start(&s, "it_ctl_restart", NULL, NULL);
        snprintf(path, sizeof(path), "%s/top.out", s.dir);
        pid_t first = s.pid;

        pid_t top = fork();
        CHECK(top >= 0);
        if (top == 0) {
                int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0)
                        _exit(127);
                execl(FP_FORKPOOLCTL_PATH, "forkpoolctl", "--socket", s.socket, "top", "--interval",
                      "0.1", "--count", "25", (char *)NULL);
                _exit(127);
        }
        usleep(500000);
        itest_sup_kill(&s);
        usleep(500000);
        itest_sup_restart(&s);
        CHECK(s.pid != first);

        int status = itest_wait_child(top, 15000);
        CHECK_MSG(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "top: status %d",
                  status);
        CHECK(itest_sh(out, OUT_MAX, "cat %s", path) == 0);
        snprintf(want, sizeof(want), "forkpoold pid %d ", (int)first);
        CHECK_MSG(strstr(out, want), "frames of the first supervisor:\n%s", out);
        CHECK_MSG(strstr(out, "(waiting for forkpoold on ") && strstr(out, "is gone"),
                  "the gap:\n%s", out);
        snprintf(want, sizeof(want), "forkpoold pid %d ", (int)s.pid);
        CHECK_MSG(strstr(out, want), "frames of the second supervisor:\n%s", out);
        CHECK(itest_sup_stop(&s) == 0);
        free(out);
}

ITEST_MAIN({"metrics", test_metrics, 60}, {"top_plain", test_top_plain, 60},
           {"top_tty", test_top_tty, 60}, {"top_bad_arguments", test_top_bad_arguments, 60},
           {"top_follows_restart", test_top_follows_restart, 60})
