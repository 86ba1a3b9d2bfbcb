/* SPDX-License-Identifier: MIT */
/*
 * config_values.c — parsing the configuration's values (config_values.h).
 */
#include "config_values.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "segment.h"

/* Longest user or group name we look up. */
#define CONFIG_ID_NAME_MAX 256

void config_err(char *err, size_t errlen, const char *fmt, ...)
{
        va_list ap;

        if (!err || errlen == 0)
                return;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
}

/*
 * A printable copy of s for a reason (non-printable bytes become '?', long
 * text is cut), in buf of CONFIG_QUOTE_MAX + 4 bytes.
 */
const char *config_quote(const char *s, char *buf)
{
        size_t i;

        for (i = 0; i < CONFIG_QUOTE_MAX && s[i]; i++) {
                unsigned char c = (unsigned char)s[i];
                buf[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
        }
        if (s[i]) {
                memcpy(buf + i, "...", 3);
                i += 3;
        }
        buf[i] = '\0';
        return buf;
}

bool config_is_blank(char c)
{
        return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

void config_free_secret(char *s)
{
        if (!s)
                return;
        explicit_bzero(s, strlen(s));
        free(s);
}

/* Parses a whole decimal int (no blanks, no '+'). */
int config_parse_int(const char *v, int *ret, char *reason, size_t len)
{
        char q[CONFIG_QUOTE_MAX + 4];
        char *end;
        long n;

        if (!((v[0] >= '0' && v[0] <= '9') || (v[0] == '-' && v[1] >= '0' && v[1] <= '9'))) {
                config_err(reason, len, "not an integer: '%s'", config_quote(v, q));
                return -EINVAL;
        }
        errno = 0;
        n = strtol(v, &end, 10);
        if (*end) {
                config_err(reason, len, "not an integer: '%s'", config_quote(v, q));
                return -EINVAL;
        }
        if (errno == ERANGE || n < INT_MIN || n > INT_MAX) {
                config_err(reason, len, "out of range: '%s'", config_quote(v, q));
                return -ERANGE;
        }
        *ret = (int)n;
        return 0;
}

/*
 * Parses seconds, with up to 3 decimals ("30", "0.25", ".5"), into
 * milliseconds. Negative values are refused.
 */
int config_parse_seconds(const char *v, int *ret_ms, char *reason, size_t len)
{
        char q[CONFIG_QUOTE_MAX + 4];
        long long ms = 0;
        int int_digits = 0, frac_digits = 0;
        const char *s = v;

        if (*s == '-') {
                config_err(reason, len, "must not be negative: '%s'", config_quote(v, q));
                return -EINVAL;
        }
        for (; *s >= '0' && *s <= '9'; s++, int_digits++) {
                ms = ms * 10 + (*s - '0');
                if (ms > INT_MAX / 1000) {
                        config_err(reason, len, "too large (at most %d seconds): '%s'",
                                   INT_MAX / 1000, config_quote(v, q));
                        return -ERANGE;
                }
        }
        ms *= 1000;
        if (*s == '.') {
                int scale = 100;
                for (s++; *s >= '0' && *s <= '9'; s++, frac_digits++) {
                        if (frac_digits == 3) {
                                config_err(reason, len,
                                           "more than 3 decimals (the resolution is a "
                                           "millisecond): '%s'",
                                           config_quote(v, q));
                                return -EINVAL;
                        }
                        ms += (*s - '0') * scale;
                        scale /= 10;
                }
                if (frac_digits == 0)
                        int_digits = 0; /* "5." is refused below */
        }
        if (*s || int_digits + frac_digits == 0) {
                config_err(reason, len, "not a number of seconds: '%s'", config_quote(v, q));
                return -EINVAL;
        }
        if (ms > INT_MAX) {
                config_err(reason, len, "too large (at most %d.%03d seconds): '%s'", INT_MAX / 1000,
                           INT_MAX % 1000, config_quote(v, q));
                return -ERANGE;
        }
        *ret_ms = (int)ms;
        return 0;
}

/* Parses a whole int of at least min; below it, the reason says it "must be <allowed>". */
static int parse_int_at_least(const char *v, int min, const char *allowed, int *ret, char *reason,
                              size_t len)
{
        char q[CONFIG_QUOTE_MAX + 4];
        int n;

        int r = config_parse_int(v, &n, reason, len);
        if (r < 0)
                return r;
        if (n < min) {
                config_err(reason, len, "must be %s: '%s'", allowed, config_quote(v, q));
                return -EINVAL;
        }
        *ret = n;
        return 0;
}

int config_parse_pool_size(const char *v, int *ret, char *reason, size_t len)
{
        char q[CONFIG_QUOTE_MAX + 4];
        int n;

        int r = config_parse_limit(v, &n, reason, len);
        if (r < 0)
                return r;
        if (n > FP_SHM_MAX_SLOTS_PER_POOL) {
                config_err(reason, len, "more than the %d connections a pool can hold: '%s'",
                           FP_SHM_MAX_SLOTS_PER_POOL, config_quote(v, q));
                return -EINVAL;
        }
        *ret = n;
        return 0;
}

int config_parse_max_overflow(const char *v, int *ret, char *reason, size_t len)
{
        return parse_int_at_least(v, -1, "-1 (no limit) or 0 or more", ret, reason, len);
}

int config_parse_connect_timeout(const char *v, int *ret_ms, char *reason, size_t len)
{
        char q[CONFIG_QUOTE_MAX + 4];
        int ms;
        int r;

        r = config_parse_seconds(v, &ms, reason, len);
        if (r < 0)
                return r;
        if (ms == 0) {
                config_err(reason, len, "must be more than 0 seconds: '%s'", config_quote(v, q));
                return -EINVAL;
        }
        *ret_ms = ms;
        return 0;
}

/* Parses a URL into *ret and a copy of its text into *ret_text. */
int config_parse_url(const char *v, struct fp_url *ret, char **ret_text, char *reason, size_t len)
{
        char *text;
        int r;

        r = fp_url_parse(v, ret, reason, len);
        if (r < 0)
                return r;
        text = strdup(v);
        if (!text) {
                fp_url_free(ret);
                config_err(reason, len, "out of memory");
                return -ENOMEM;
        }
        *ret_text = text;
        return 0;
}

bool config_pool_name_valid(const char *name)
{
        size_t n = strlen(name);

        if (n == 0 || n >= FP_SHM_POOL_NAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = name[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '.' || c == '-'))
                        return false;
        }
        return true;
}

/*
 * Resolves one user or group: a number, or a name looked up with
 * getpwnam_r()/getgrnam_r(). May block (NSS).
 */
static int config_resolve_id(const char *name, bool group, unsigned long *ret, char *reason,
                             size_t len)
{
        const char *what = group ? "group" : "user";
        char q[CONFIG_QUOTE_MAX + 4];
        size_t buf_len = 1024;
        char *buf = NULL;
        bool numeric = true;
        int r;

        for (const char *c = name; *c; c++)
                numeric = numeric && *c >= '0' && *c <= '9';
        if (numeric) {
                char *end;
                unsigned long long v;
                errno = 0;
                v = strtoull(name, &end, 10);
                /* (uid_t)-1 and (gid_t)-1 mean "no id" to the kernel. */
                if (errno == ERANGE || *end || v >= UINT32_MAX) {
                        config_err(reason, len, "%s id out of range: '%s'", what,
                                   config_quote(name, q));
                        return -ERANGE;
                }
                *ret = (unsigned long)v;
                return 0;
        }

        for (;;) {
                struct passwd pw, *pw_res = NULL;
                struct group gr, *gr_res = NULL;
                char *nbuf = realloc(buf, buf_len);

                if (!nbuf) {
                        free(buf);
                        config_err(reason, len, "out of memory");
                        return -ENOMEM;
                }
                buf = nbuf;
                if (group)
                        r = getgrnam_r(name, &gr, buf, buf_len, &gr_res);
                else
                        r = getpwnam_r(name, &pw, buf, buf_len, &pw_res);
                if (r == ERANGE && buf_len < (1u << 20)) {
                        buf_len *= 2;
                        continue;
                }
                if (r == 0 && (pw_res || gr_res)) {
                        if (group)
                                *ret = (unsigned long)gr_res->gr_gid;
                        else
                                *ret = (unsigned long)pw_res->pw_uid;
                        free(buf);
                        return 0;
                }
                free(buf);
                if (r == 0 || r == ENOENT || r == ESRCH) {
                        config_err(reason, len, "unknown %s '%s'", what, config_quote(name, q));
                        return -ENOENT;
                }
                config_err(reason, len, "cannot look up %s '%s': %s", what, config_quote(name, q),
                           strerror(r));
                return -r;
        }
}

/* Parses a list of users or groups separated by commas and/or blanks. */
int config_parse_ids(const char *v, bool group, unsigned long *ids, size_t *ret_n, char *reason,
                     size_t len)
{
        char q[CONFIG_QUOTE_MAX + 4];
        size_t n = 0;
        int r;

        while (*v) {
                char name[CONFIG_ID_NAME_MAX];
                size_t tok_len = strcspn(v, ", \t");
                unsigned long id = 0;
                bool dup = false;

                if (tok_len == 0) {
                        v++;
                        continue;
                }
                if (tok_len >= sizeof(name)) {
                        config_err(reason, len, "%s name too long: '%s'", group ? "group" : "user",
                                   config_quote(v, q));
                        return -EINVAL;
                }
                memcpy(name, v, tok_len);
                name[tok_len] = '\0';
                v += tok_len;

                r = config_resolve_id(name, group, &id, reason, len);
                if (r < 0)
                        return r;
                for (size_t i = 0; i < n; i++)
                        dup = dup || ids[i] == id;
                if (dup)
                        continue;
                if (n == FP_CONFIG_MAX_IDS) {
                        config_err(reason, len, "more than %d %ss", FP_CONFIG_MAX_IDS,
                                   group ? "group" : "user");
                        return -E2BIG;
                }
                ids[n++] = id;
        }
        *ret_n = n;
        return 0;
}

int config_parse_log_level(const char *v, enum fp_log_level *ret, char *reason, size_t len)
{
        static const char *const names[] = {
                [FP_LOG_ERROR] = "error",
                [FP_LOG_WARNING] = "warning",
                [FP_LOG_INFO] = "info",
                [FP_LOG_DEBUG] = "debug",
        };
        char q[CONFIG_QUOTE_MAX + 4];

        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                if (strcmp(v, names[i]) == 0) {
                        *ret = (enum fp_log_level)i;
                        return 0;
                }
        config_err(reason, len, "expected error, warning, info or debug, not '%s'",
                   config_quote(v, q));
        return -EINVAL;
}

int config_check_socket_path(const char *v, char *reason, size_t len)
{
        if (!v) {
                config_err(reason, len, "no path (out of memory)");
                return -ENOMEM;
        }
        if (!*v) {
                config_err(reason, len, "empty path");
                return -EINVAL;
        }
        if (strlen(v) >= sizeof(((struct sockaddr_un *)NULL)->sun_path)) {
                config_err(reason, len, "too long for a Unix socket (at most %zu bytes)",
                           sizeof(((struct sockaddr_un *)NULL)->sun_path) - 1);
                return -ENAMETOOLONG;
        }
        return 0;
}

/* Parses a limit: a whole number >= 0, where 0 means no limit. */
int config_parse_limit(const char *v, int *ret, char *reason, size_t len)
{
        return parse_int_at_least(v, 0, "0 (no limit) or more", ret, reason, len);
}

int config_parse_bool(const char *v, bool *ret, char *reason, size_t len)
{
        char q[CONFIG_QUOTE_MAX + 4];

        if (strcmp(v, "true") == 0 || strcmp(v, "yes") == 0 || strcmp(v, "on") == 0 ||
            strcmp(v, "1") == 0)
                *ret = true;
        else if (strcmp(v, "false") == 0 || strcmp(v, "no") == 0 || strcmp(v, "off") == 0 ||
                 strcmp(v, "0") == 0)
                *ret = false;
        else {
                config_err(reason, len, "expected true or false, not '%s'", config_quote(v, q));
                return -EINVAL;
        }
        return 0;
}

/* Seconds, or -1 for "off" (pool_recycle). */
int config_parse_seconds_or_off(const char *v, int *ret_ms, char *reason, size_t len)
{
        if (strcmp(v, "-1") == 0) {
                *ret_ms = -1;
                return 0;
        }
        return config_parse_seconds(v, ret_ms, reason, len);
}
