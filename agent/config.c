/* SPDX-License-Identifier: MIT */
/*
 * config.c — forkpoold's configuration (config.h).
 *
 * libinih splits "key = value" lines; it reads the file through
 * config_reader(), which hands it one physical line at a time. That reader is
 * where this module gets what inih does not give:
 *
 *  - the line number of every error: the handler reads the reader's count;
 *  - section headers, parsed here: inih cuts section names at 49 characters
 *    and tells nobody about a section without keys, so neither a long pool
 *    name nor a [pool NAME] without its url could be reported otherwise;
 *  - indented keys: leading blanks are stripped, so an indented line is never
 *    taken for the continuation of a multi-line value (which we do not want);
 *  - an error for a line longer than inih's buffer, which inih would split
 *    into two lines silently.
 *
 * The first error stops the reading; it becomes the one line in err.
 */
#include "config.h"

#include <errno.h>
#include <grp.h>
#include <ini.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "forkpool.h"

#define CONFIG_DEFAULT_POOL_SIZE            5
#define CONFIG_DEFAULT_MAX_OVERFLOW         10
#define CONFIG_DEFAULT_TIMEOUT_MS           30000
#define CONFIG_DEFAULT_CONNECT_TIMEOUT_MS   10000
#define CONFIG_DEFAULT_SHUTDOWN_GRACE_MS    10000
#define CONFIG_DEFAULT_MAX_CONN_PER_UID     1024
#define CONFIG_DEFAULT_MAX_CONN_PER_PID     32
#define CONFIG_DEFAULT_MAX_WAITING_PER_CONN 128
#define CONFIG_DEFAULT_HELLO_TIMEOUT_MS     5000
#define CONFIG_QUICK_POOL_NAME              "default"

/* Longest piece of a value quoted in a reason. */
#define CONFIG_QUOTE_MAX 64
/* Longest user or group name we look up. */
#define CONFIG_ID_NAME_MAX 256
/* Most keys in one section. */
#define CONFIG_MAX_KEYS 24

#define CONFIG_POOL_NAME_RULE "1 to 63 characters of A-Z, a-z, 0-9, '_', '.' and '-'"

enum config_section {
        CONFIG_SECTION_NONE = 0,
        CONFIG_SECTION_FORKPOOL,
        CONFIG_SECTION_POOL,
};

struct config_loader {
        struct fp_config *cfg;
        const char *path;
        FILE *f;
        char *line; /* getline()'s buffer; may hold a password */
        size_t line_cap;
        int lineno; /* of the line last handed to inih */
        enum config_section section;
        struct fp_pool_config *pool;    /* the current [pool NAME] */
        int forkpool_line;              /* of [forkpool], 0 if not seen */
        int key_lines[CONFIG_MAX_KEYS]; /* where the current section set each key, or 0 */
        int error;                      /* the first error (negative errno), 0 if none */
        int error_line;
        char *err;
        size_t errlen;
};

/* A key of a section: its name and what parses its value. */
struct config_key {
        const char *name;
        /* Returns 0, or a negative errno with a reason (without the key) in reason. */
        int (*set)(struct config_loader *ld, const char *value, char *reason, size_t len);
};

static void config_err(char *err, size_t errlen, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void config_err(char *err, size_t errlen, const char *fmt, ...)
{
        va_list ap;

        if (!err || errlen == 0)
                return;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
}

static void loader_fail(struct config_loader *ld, int line, int r, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/* Records the first error as "PATH:LINE: message"; later ones are dropped. */
static void loader_fail(struct config_loader *ld, int line, int r, const char *fmt, ...)
{
        va_list ap;
        int n;

        if (ld->error)
                return;
        ld->error = r;
        ld->error_line = line;
        if (!ld->err || ld->errlen == 0)
                return;
        n = snprintf(ld->err, ld->errlen, "%s:%d: ", ld->path, line);
        if (n < 0 || (size_t)n >= ld->errlen)
                return;
        va_start(ap, fmt);
        vsnprintf(ld->err + n, ld->errlen - (size_t)n, fmt, ap);
        va_end(ap);
}

/*
 * A printable copy of s for a reason (non-printable bytes become '?', long
 * text is cut), in buf of CONFIG_QUOTE_MAX + 4 bytes.
 */
static const char *config_quote(const char *s, char *buf)
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

static bool config_is_blank(char c)
{
        return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static void config_free_secret(char *s)
{
        if (!s)
                return;
        explicit_bzero(s, strlen(s));
        free(s);
}

/* --- values, shared by the file and the command line --- */

/* Parses a whole decimal int (no blanks, no '+'). */
static int config_parse_int(const char *v, int *ret, char *reason, size_t len)
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
static int config_parse_seconds(const char *v, int *ret_ms, char *reason, size_t len)
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

static int config_parse_pool_size(const char *v, int *ret, char *reason, size_t len)
{
        char q[CONFIG_QUOTE_MAX + 4];
        int n;
        int r;

        r = config_parse_int(v, &n, reason, len);
        if (r < 0)
                return r;
        if (n < 0) {
                config_err(reason, len, "must be 0 (no limit) or more: '%s'", config_quote(v, q));
                return -EINVAL;
        }
        if (n > FP_SHM_MAX_SLOTS_PER_POOL) {
                config_err(reason, len, "more than the %d connections a pool can hold: '%s'",
                           FP_SHM_MAX_SLOTS_PER_POOL, config_quote(v, q));
                return -EINVAL;
        }
        *ret = n;
        return 0;
}

static int config_parse_max_overflow(const char *v, int *ret, char *reason, size_t len)
{
        char q[CONFIG_QUOTE_MAX + 4];
        int n;
        int r;

        r = config_parse_int(v, &n, reason, len);
        if (r < 0)
                return r;
        if (n < -1) {
                config_err(reason, len, "must be -1 (no limit) or 0 or more: '%s'",
                           config_quote(v, q));
                return -EINVAL;
        }
        *ret = n;
        return 0;
}

static int config_parse_connect_timeout(const char *v, int *ret_ms, char *reason, size_t len)
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
static int config_parse_url(const char *v, struct fp_url *ret, char **ret_text, char *reason,
                            size_t len)
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

static bool config_pool_name_valid(const char *name)
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

static void config_pool_defaults(struct fp_pool_config *pc, const char *name, int line)
{
        memset(pc, 0, sizeof(*pc));
        snprintf(pc->name, sizeof(pc->name), "%s", name);
        pc->pool_size = CONFIG_DEFAULT_POOL_SIZE;
        pc->max_overflow = CONFIG_DEFAULT_MAX_OVERFLOW;
        pc->timeout_ms = CONFIG_DEFAULT_TIMEOUT_MS;
        pc->connect_timeout_ms = CONFIG_DEFAULT_CONNECT_TIMEOUT_MS;
        pc->reset_mode = FP_RESET_ROLLBACK;
        pc->pool_class = FP_POOL_QUEUE;
        pc->pool_mode = FP_POOL_MODE_SESSION;
        pc->recycle_ms = -1;
        pc->affinity = true;
        pc->line = line;
}

static void config_pool_free(struct fp_pool_config *pc)
{
        free(pc->on_connect);
        pc->on_connect = NULL;
        config_free_secret(pc->url_text);
        pc->url_text = NULL;
        fp_url_free(&pc->url);
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
static int config_parse_ids(const char *v, bool group, unsigned long *ids, size_t *ret_n,
                            char *reason, size_t len)
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

static int config_parse_log_level(const char *v, enum fp_log_level *ret, char *reason, size_t len)
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

static int config_check_socket_path(const char *v, char *reason, size_t len)
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

/* --- the keys of the file --- */

static int key_socket(struct config_loader *ld, const char *v, char *reason, size_t len)
{
        char *copy;
        int r;

        r = config_check_socket_path(v, reason, len);
        if (r < 0)
                return r;
        copy = strdup(v);
        if (!copy) {
                config_err(reason, len, "out of memory");
                return -ENOMEM;
        }
        free(ld->cfg->socket_path);
        ld->cfg->socket_path = copy;
        return 0;
}

/*
 * Parses a list of users or groups into ids (FP_CONFIG_MAX_IDS entries) and
 * its length into *ret_n; on failure neither changes.
 */
static int config_set_ids(const char *v, bool group, uint32_t *ids, size_t *ret_n, char *reason,
                          size_t len)
{
        _Static_assert(sizeof(uid_t) == sizeof(uint32_t) && sizeof(gid_t) == sizeof(uint32_t),
                       "ids are 32 bits");
        unsigned long parsed[FP_CONFIG_MAX_IDS];
        size_t n;
        int r = config_parse_ids(v, group, parsed, &n, reason, len);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                ids[i] = (uint32_t)parsed[i];
        *ret_n = n;
        return 0;
}

static int key_allow_users(struct config_loader *ld, const char *v, char *reason, size_t len)
{
        return config_set_ids(v, false, ld->cfg->allow_uids, &ld->cfg->n_allow_uids, reason, len);
}

static int key_allow_groups(struct config_loader *ld, const char *v, char *reason, size_t len)
{
        return config_set_ids(v, true, ld->cfg->allow_gids, &ld->cfg->n_allow_gids, reason, len);
}

static int key_log_level(struct config_loader *ld, const char *v, char *reason, size_t len)
{
        return config_parse_log_level(v, &ld->cfg->log_level, reason, len);
}

static int key_shutdown_grace(struct config_loader *ld, const char *v, char *reason, size_t len)
{
        return config_parse_seconds(v, &ld->cfg->shutdown_grace_ms, reason, len);
}

/* Parses a limit: a whole number >= 0, where 0 means no limit. */
static int config_parse_limit(const char *v, int *ret, char *reason, size_t len)
{
        char q[CONFIG_QUOTE_MAX + 4];
        int n, r;

        r = config_parse_int(v, &n, reason, len);
        if (r < 0)
                return r;
        if (n < 0) {
                config_err(reason, len, "must be 0 (no limit) or more: '%s'", config_quote(v, q));
                return -EINVAL;
        }
        *ret = n;
        return 0;
}

static int key_max_connections_per_uid(struct config_loader *ld, const char *v, char *reason,
                                       size_t len)
{
        return config_parse_limit(v, &ld->cfg->max_connections_per_uid, reason, len);
}

static int key_max_connections_per_pid(struct config_loader *ld, const char *v, char *reason,
                                       size_t len)
{
        return config_parse_limit(v, &ld->cfg->max_connections_per_pid, reason, len);
}

static int key_max_waiting_per_connection(struct config_loader *ld, const char *v, char *reason,
                                          size_t len)
{
        return config_parse_limit(v, &ld->cfg->max_waiting_per_connection, reason, len);
}

static int key_hello_timeout(struct config_loader *ld, const char *v, char *reason, size_t len)
{
        return config_parse_seconds(v, &ld->cfg->hello_timeout_ms, reason, len);
}

static int key_url(struct config_loader *ld, const char *v, char *reason, size_t len)
{
        return config_parse_url(v, &ld->pool->url, &ld->pool->url_text, reason, len);
}

static int key_pool_size(struct config_loader *ld, const char *v, char *reason, size_t len)
{
        return config_parse_pool_size(v, &ld->pool->pool_size, reason, len);
}

static int key_max_overflow(struct config_loader *ld, const char *v, char *reason, size_t len)
{
        return config_parse_max_overflow(v, &ld->pool->max_overflow, reason, len);
}

static int key_pool_timeout(struct config_loader *ld, const char *v, char *reason, size_t len)
{
        return config_parse_seconds(v, &ld->pool->timeout_ms, reason, len);
}

static int key_connect_timeout(struct config_loader *ld, const char *v, char *reason, size_t len)
{
        return config_parse_connect_timeout(v, &ld->pool->connect_timeout_ms, reason, len);
}

static int key_reset_on_return(struct config_loader *ld, const char *v, char *reason, size_t len)
{
        char q[CONFIG_QUOTE_MAX + 4];

        if (fp_reset_mode_parse(v, &ld->pool->reset_mode) < 0) {
                config_err(reason, len,
                           "expected rollback, commit, none, discard or auto, not '%s'",
                           config_quote(v, q));
                return -EINVAL;
        }
        return 0;
}

static int config_parse_bool(const char *v, bool *ret, char *reason, size_t len)
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
static int config_parse_seconds_or_off(const char *v, int *ret_ms, char *reason, size_t len)
{
        if (strcmp(v, "-1") == 0) {
                *ret_ms = -1;
                return 0;
        }
        return config_parse_seconds(v, ret_ms, reason, len);
}

static int key_user(struct config_loader *ld, const char *v, char *reason, size_t len)
{
        char q[CONFIG_QUOTE_MAX + 4];
        struct passwd pw, *found = NULL;
        char buf[4096];

        if (getpwnam_r(v, &pw, buf, sizeof(buf), &found) != 0 || !found) {
                config_err(reason, len, "unknown user '%s'", config_quote(v, q));
                return -ENOENT;
        }
        char *copy = strdup(v);
        if (!copy) {
                config_err(reason, len, "out of memory");
                return -ENOMEM;
        }
        free(ld->cfg->run_user);
        ld->cfg->run_user = copy;
        ld->cfg->run_uid = found->pw_uid;
        ld->cfg->run_gid = found->pw_gid;
        return 0;
}

static int key_admin_users(struct config_loader *ld, const char *v, char *reason, size_t len)
{
        return config_set_ids(v, false, ld->cfg->admin_uids, &ld->cfg->n_admin_uids, reason, len);
}

static int key_admin_groups(struct config_loader *ld, const char *v, char *reason, size_t len)
{
        return config_set_ids(v, true, ld->cfg->admin_gids, &ld->cfg->n_admin_gids, reason, len);
}

static int key_pool_allow_users(struct config_loader *ld, const char *v, char *reason, size_t len)
{
        return config_set_ids(v, false, ld->pool->allow_uids, &ld->pool->n_allow_uids, reason, len);
}

static int key_pool_allow_groups(struct config_loader *ld, const char *v, char *reason, size_t len)
{
        return config_set_ids(v, true, ld->pool->allow_gids, &ld->pool->n_allow_gids, reason, len);
}

static int key_poolclass(struct config_loader *ld, const char *v, char *reason, size_t len)
{
        char q[CONFIG_QUOTE_MAX + 4];
        for (uint32_t c = 0; c < FP_POOL_CLASS_MAX; c++)
                if (strcmp(v, fp_pool_class_name(c)) == 0) {
                        ld->pool->pool_class = (enum fp_pool_class)c;
                        return 0;
                }
        config_err(reason, len, "expected queue, null, static, assertion or process, not '%s'",
                   config_quote(v, q));
        return -EINVAL;
}

static int key_pool_mode(struct config_loader *ld, const char *v, char *reason, size_t len)
{
        char q[CONFIG_QUOTE_MAX + 4];

        for (uint32_t m = 0; m < FP_POOL_MODE_MAX; m++)
                if (strcmp(v, fp_pool_mode_name(m)) == 0) {
                        ld->pool->pool_mode = (enum fp_pool_mode)m;
                        return 0;
                }
        config_err(reason, len, "expected session or transaction, not '%s'", config_quote(v, q));
        return -EINVAL;
}

static int key_pool_recycle(struct config_loader *ld, const char *v, char *reason, size_t len)
{
        return config_parse_seconds_or_off(v, &ld->pool->recycle_ms, reason, len);
}

static int key_pool_pre_ping(struct config_loader *ld, const char *v, char *reason, size_t len)
{
        return config_parse_bool(v, &ld->pool->pre_ping, reason, len);
}

static int key_pool_affinity(struct config_loader *ld, const char *v, char *reason, size_t len)
{
        return config_parse_bool(v, &ld->pool->affinity, reason, len);
}

static int key_pool_use_lifo(struct config_loader *ld, const char *v, char *reason, size_t len)
{
        return config_parse_bool(v, &ld->pool->use_lifo, reason, len);
}

static int key_connect_rate(struct config_loader *ld, const char *v, char *reason, size_t len)
{
        char q[CONFIG_QUOTE_MAX + 4];
        int n;
        int r = config_parse_int(v, &n, reason, len);
        if (r < 0)
                return r;
        if (n < 0) {
                config_err(reason, len,
                           "must be 0 (no limit) or more connections per second: "
                           "'%s'",
                           config_quote(v, q));
                return -EINVAL;
        }
        ld->pool->connect_rate = n;
        return 0;
}

static int key_echo_pool(struct config_loader *ld, const char *v, char *reason, size_t len)
{
        bool on;
        if (strcmp(v, "debug") == 0) {
                ld->pool->echo = 2;
                return 0;
        }
        int r = config_parse_bool(v, &on, reason, len);
        if (r < 0) {
                char q[CONFIG_QUOTE_MAX + 4];
                config_err(reason, len, "expected true, false or debug, not '%s'",
                           config_quote(v, q));
                return r;
        }
        ld->pool->echo = on ? 1 : 0;
        return 0;
}

static int key_on_connect(struct config_loader *ld, const char *v, char *reason, size_t len)
{
        char *copy = strdup(v);
        if (!copy) {
                config_err(reason, len, "out of memory");
                return -ENOMEM;
        }
        free(ld->pool->on_connect);
        ld->pool->on_connect = copy;
        return 0;
}

static int key_leak_timeout(struct config_loader *ld, const char *v, char *reason, size_t len)
{
        return config_parse_seconds(v, &ld->pool->leak_timeout_ms, reason, len);
}

static int key_max_lease_time(struct config_loader *ld, const char *v, char *reason, size_t len)
{
        return config_parse_seconds(v, &ld->pool->max_lease_time_ms, reason, len);
}

static const struct config_key config_forkpool_keys[] = {
        {"socket", key_socket},
        {"allow_users", key_allow_users},
        {"allow_groups", key_allow_groups},
        {"log_level", key_log_level},
        {"shutdown_grace", key_shutdown_grace},
        {"admin_users", key_admin_users},
        {"user", key_user},
        {"admin_groups", key_admin_groups},
        {"max_connections_per_uid", key_max_connections_per_uid},
        {"max_connections_per_pid", key_max_connections_per_pid},
        {"max_waiting_per_connection", key_max_waiting_per_connection},
        {"hello_timeout", key_hello_timeout},
};

static const struct config_key config_pool_keys[] = {
        {"url", key_url},
        {"pool_size", key_pool_size},
        {"max_overflow", key_max_overflow},
        {"pool_timeout", key_pool_timeout},
        {"connect_timeout", key_connect_timeout},
        {"reset_on_return", key_reset_on_return},
        {"poolclass", key_poolclass},
        {"pool_mode", key_pool_mode},
        {"pool_recycle", key_pool_recycle},
        {"pool_pre_ping", key_pool_pre_ping},
        {"pool_use_lifo", key_pool_use_lifo},
        {"pool_affinity", key_pool_affinity},
        {"connect_rate", key_connect_rate},
        {"echo_pool", key_echo_pool},
        {"on_connect", key_on_connect},
        {"leak_timeout", key_leak_timeout},
        {"max_lease_time", key_max_lease_time},
        {"allow_users", key_pool_allow_users},
        {"allow_groups", key_pool_allow_groups},
};

_Static_assert(sizeof(config_forkpool_keys) / sizeof(config_forkpool_keys[0]) <= CONFIG_MAX_KEYS,
               "key_lines too small");
_Static_assert(sizeof(config_pool_keys) / sizeof(config_pool_keys[0]) <= CONFIG_MAX_KEYS,
               "key_lines too small");

/* --- sections and the inih callbacks --- */

/* Checks the section that ends: a pool needs its url. */
static void loader_end_section(struct config_loader *ld)
{
        if (ld->section == CONFIG_SECTION_POOL && !ld->pool->url_text)
                loader_fail(ld, ld->pool->line, -EINVAL, "url: missing in [pool %s] (required)",
                            ld->pool->name);
        ld->section = CONFIG_SECTION_NONE;
        ld->pool = NULL;
        memset(ld->key_lines, 0, sizeof(ld->key_lines));
}

/* Handles a "[...]" line s (without leading blanks). Returns 0 or a negative errno. */
static int loader_section(struct config_loader *ld, char *s)
{
        char q[CONFIG_QUOTE_MAX + 4];
        char *close = strchr(s, ']');
        char *inner = s + 1, *after, *end;
        struct fp_config *cfg = ld->cfg;

        if (!close) {
                loader_fail(ld, ld->lineno, -EINVAL, "section header without ']'");
                return ld->error;
        }
        for (after = close + 1; config_is_blank(*after); after++)
                ;
        if (*after && *after != ';' && *after != '#') {
                loader_fail(ld, ld->lineno, -EINVAL, "unexpected text after ']'");
                return ld->error;
        }

        loader_end_section(ld);
        if (ld->error)
                return ld->error;

        /* Trim the name between the brackets (the line buffer is ours, not inih's). */
        while (config_is_blank(*inner))
                inner++;
        end = close;
        while (end > inner && config_is_blank(end[-1]))
                end--;
        *end = '\0';

        if (strcmp(inner, "forkpool") == 0) {
                if (ld->forkpool_line) {
                        loader_fail(ld, ld->lineno, -EINVAL,
                                    "duplicate section [forkpool] (first on line %d)",
                                    ld->forkpool_line);
                        return ld->error;
                }
                ld->forkpool_line = ld->lineno;
                ld->section = CONFIG_SECTION_FORKPOOL;
                return 0;
        }
        if (strncmp(inner, "pool", 4) == 0 && (inner[4] == '\0' || config_is_blank(inner[4]))) {
                const char *name = inner + 4;
                const struct fp_pool_config *other;

                while (config_is_blank(*name))
                        name++;
                if (!*name) {
                        loader_fail(ld, ld->lineno, -EINVAL,
                                    "missing pool name: write [pool NAME]");
                        return ld->error;
                }
                if (!config_pool_name_valid(name)) {
                        loader_fail(ld, ld->lineno, -EINVAL,
                                    "invalid pool name '%s' (" CONFIG_POOL_NAME_RULE ")",
                                    config_quote(name, q));
                        return ld->error;
                }
                other = fp_config_find_pool(cfg, name);
                if (other && other->line > 0) {
                        loader_fail(ld, ld->lineno, -EINVAL,
                                    "duplicate pool '%s' (first defined on line %d)", name,
                                    other->line);
                        return ld->error;
                }
                if (other) {
                        loader_fail(ld, ld->lineno, -EINVAL,
                                    "duplicate pool '%s' (already defined on the command line)",
                                    name);
                        return ld->error;
                }
                if (cfg->n_pools == FP_SHM_MAX_POOLS) {
                        loader_fail(ld, ld->lineno, -E2BIG, "too many pools (at most %d)",
                                    FP_SHM_MAX_POOLS);
                        return ld->error;
                }
                ld->pool = &cfg->pools[cfg->n_pools++];
                config_pool_defaults(ld->pool, name, ld->lineno);
                ld->section = CONFIG_SECTION_POOL;
                return 0;
        }
        loader_fail(ld, ld->lineno, -EINVAL,
                    "unknown section [%s] (expected [forkpool] or [pool NAME])",
                    config_quote(inner, q));
        return ld->error;
}

/*
 * inih's reader: the next physical line, without leading blanks (and without
 * the UTF-8 byte order mark on line 1). Returns NULL at the end of the file
 * and after an error, wiping inih's line buffer then.
 */
static char *config_reader(char *str, int num, void *stream)
{
        struct config_loader *ld = stream;
        char *s;
        ssize_t n;
        size_t len;

        if (ld->error)
                goto stop;
        errno = 0;
        n = getline(&ld->line, &ld->line_cap, ld->f);
        if (n < 0) {
                if (ferror(ld->f))
                        loader_fail(ld, ld->lineno + 1, errno ? -errno : -EIO, "read error: %s",
                                    strerror(errno ? errno : EIO));
                goto stop;
        }
        ld->lineno++;
        s = ld->line;
        if (n > 0 && s[n - 1] == '\n')
                s[n - 1] = '\0';
        if (ld->lineno == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0)
                s += 3;
        while (config_is_blank(*s))
                s++;
        if (*s == ';' || *s == '#') {
                str[0] = '\0';
                return str;
        }
        if (*s == '[') {
                if (loader_section(ld, s) < 0)
                        goto stop;
                /* Parsed here; inih's idea of the section is not used. */
                str[0] = '\0';
                return str;
        }
        len = strlen(s);
        if (num <= 0 || len >= (size_t)num) {
                loader_fail(ld, ld->lineno, -EINVAL, "line too long (more than %d characters)",
                            num > 0 ? num - 1 : 0);
                goto stop;
        }
        memcpy(str, s, len + 1);
        return str;

stop:
        if (num > 0)
                explicit_bzero(str, (size_t)num);
        return NULL;
}

/* inih's handler: one key = value of the current section (inih's section is ignored). */
static int config_handler(void *user, const char *section, const char *name, const char *value)
{
        struct config_loader *ld = user;
        const struct config_key *keys;
        size_t n_keys;
        char where[FP_SHM_POOL_NAME_MAX + 16];
        char reason[FP_CONFIG_ERR_MAX];
        char q[CONFIG_QUOTE_MAX + 4];
        int r;

        (void)section;
        if (ld->error)
                return 0;
        switch (ld->section) {
        case CONFIG_SECTION_FORKPOOL:
                keys = config_forkpool_keys;
                n_keys = sizeof(config_forkpool_keys) / sizeof(config_forkpool_keys[0]);
                snprintf(where, sizeof(where), "[forkpool]");
                break;
        case CONFIG_SECTION_POOL:
                keys = config_pool_keys;
                n_keys = sizeof(config_pool_keys) / sizeof(config_pool_keys[0]);
                snprintf(where, sizeof(where), "[pool %s]", ld->pool->name);
                break;
        default:
                loader_fail(ld, ld->lineno, -EINVAL,
                            "%s: outside any section (start with [forkpool] or [pool NAME])",
                            config_quote(name, q));
                return 0;
        }

        for (size_t i = 0; i < n_keys; i++) {
                if (strcmp(name, keys[i].name) != 0)
                        continue;
                if (ld->key_lines[i]) {
                        loader_fail(ld, ld->lineno, -EINVAL,
                                    "%s: set twice in %s (first on line %d)", name, where,
                                    ld->key_lines[i]);
                        return 0;
                }
                ld->key_lines[i] = ld->lineno;
                reason[0] = '\0';
                r = keys[i].set(ld, value, reason, sizeof(reason));
                if (r < 0) {
                        loader_fail(ld, ld->lineno, r, "%s: %s", name, reason);
                        return 0;
                }
                return 1;
        }
        loader_fail(ld, ld->lineno, -EINVAL, "unknown key '%s' in %s", config_quote(name, q),
                    where);
        return 0;
}

/* --- the API --- */

/*
 * A file that holds a password must not be readable by everyone: refused
 * (not merely warned about), since anyone on the host could read it.
 */
static void config_check_secret_mode(struct config_loader *ld)
{
        struct stat st;

        if (fstat(fileno(ld->f), &st) < 0 || !(st.st_mode & S_IROTH))
                return;
        for (size_t i = 0; i < ld->cfg->n_pools; i++)
                if (ld->cfg->pools[i].url.password) {
                        loader_fail(ld, ld->cfg->pools[i].line, -EPERM,
                                    "url: holds a password, but the file is readable by everyone "
                                    "(mode %04o): chmod o-r it",
                                    (unsigned)(st.st_mode & 07777));
                        return;
                }
}

int fp_config_set_pool_key(struct fp_config *cfg, const char *pool, const char *key,
                           const char *value, char *err, size_t errlen)
{
        struct fp_pool_config *pc = (struct fp_pool_config *)fp_config_find_pool(cfg, pool);
        struct config_loader ld = {.cfg = cfg, .pool = pc};

        if (err && errlen > 0)
                err[0] = '\0';
        if (!pc) {
                config_err(err, errlen, "no pool '%s'", pool);
                return -ENOENT;
        }
        for (size_t i = 0; i < sizeof(config_pool_keys) / sizeof(config_pool_keys[0]); i++)
                if (strcmp(key, config_pool_keys[i].name) == 0)
                        return config_pool_keys[i].set(&ld, value, err, errlen);
        config_err(err, errlen, "unknown pool key '%s'", key);
        return -ENOENT;
}

static void config_set_peer_limit_defaults(struct fp_config *cfg)
{
        cfg->max_connections_per_uid = CONFIG_DEFAULT_MAX_CONN_PER_UID;
        cfg->max_connections_per_pid = CONFIG_DEFAULT_MAX_CONN_PER_PID;
        cfg->max_waiting_per_connection = CONFIG_DEFAULT_MAX_WAITING_PER_CONN;
        cfg->hello_timeout_ms = CONFIG_DEFAULT_HELLO_TIMEOUT_MS;
}

void fp_config_init(struct fp_config *cfg)
{
        memset(cfg, 0, sizeof(*cfg));
        /* NULL if out of memory: fp_config_validate() reports it. */
        cfg->socket_path = strdup(FORKPOOL_DEFAULT_SOCKET);
        cfg->log_level = FP_LOG_INFO;
        cfg->shutdown_grace_ms = CONFIG_DEFAULT_SHUTDOWN_GRACE_MS;
        config_set_peer_limit_defaults(cfg);
}

int fp_config_load(struct fp_config *cfg, const char *path, char *err, size_t errlen)
{
        struct config_loader ld = {
                .cfg = cfg,
                .path = path,
                .err = err,
                .errlen = errlen,
        };
        int r;

        if (err && errlen > 0)
                err[0] = '\0';
        if (!path) {
                config_err(err, errlen, "no configuration file given");
                fp_config_free(cfg);
                return -EINVAL;
        }
        free(cfg->path);
        cfg->path = strdup(path);
        if (!cfg->path) {
                config_err(err, errlen, "%s: out of memory", path);
                fp_config_free(cfg);
                return -ENOMEM;
        }
        ld.f = fopen(path, "re");
        if (!ld.f) {
                r = -errno;
                config_err(err, errlen, "%s: cannot open: %s", path, strerror(-r));
                fp_config_free(cfg);
                return r;
        }

        r = ini_parse_stream(config_reader, &ld, config_handler, &ld);
        if (r > 0 && (!ld.error || r < ld.error_line)) {
                /* A line inih could not split, before any error of ours. */
                ld.error = 0;
                loader_fail(&ld, r, -EINVAL,
                            "syntax error: expected 'key = value', '[section]' or a comment");
        } else if (r < 0 && !ld.error) {
                loader_fail(&ld, ld.lineno, r == -2 ? -ENOMEM : -EIO,
                            "cannot parse the file (inih error %d)", r);
        }
        if (!ld.error)
                loader_end_section(&ld);
        if (!ld.error)
                config_check_secret_mode(&ld);

        fclose(ld.f);
        if (ld.line) {
                explicit_bzero(ld.line, ld.line_cap);
                free(ld.line);
        }
        if (ld.error) {
                fp_config_free(cfg);
                return ld.error;
        }
        return 0;
}

int fp_config_quick_pool(struct fp_config *cfg, const char *url, const char *pool_size,
                         const char *max_overflow, const char *pool_timeout, char *err,
                         size_t errlen)
{
        struct fp_pool_config *existing;
        struct fp_pool_config pc;
        char reason[FP_CONFIG_ERR_MAX];
        int r;

        if (err && errlen > 0)
                err[0] = '\0';
        if (!url && !pool_size && !max_overflow && !pool_timeout)
                return 0;
        existing = (struct fp_pool_config *)fp_config_find_pool(cfg, CONFIG_QUICK_POOL_NAME);
        if (!url && !existing) {
                config_err(err, errlen, "--url: required (there is no pool '%s' to adjust)",
                           CONFIG_QUICK_POOL_NAME);
                return -EINVAL;
        }
        if (!existing && cfg->n_pools == FP_SHM_MAX_POOLS) {
                config_err(err, errlen, "--url: too many pools (at most %d)", FP_SHM_MAX_POOLS);
                return -E2BIG;
        }

        config_pool_defaults(&pc, CONFIG_QUICK_POOL_NAME, 0);
        if (existing) {
                pc.pool_size = existing->pool_size;
                pc.max_overflow = existing->max_overflow;
                pc.timeout_ms = existing->timeout_ms;
                pc.connect_timeout_ms = existing->connect_timeout_ms;
                pc.reset_mode = existing->reset_mode;
                pc.line = existing->line;
        }
        if (pool_size) {
                r = config_parse_pool_size(pool_size, &pc.pool_size, reason, sizeof(reason));
                if (r < 0) {
                        config_err(err, errlen, "--pool-size: %s", reason);
                        return r;
                }
        }
        if (max_overflow) {
                r = config_parse_max_overflow(max_overflow, &pc.max_overflow, reason,
                                              sizeof(reason));
                if (r < 0) {
                        config_err(err, errlen, "--max-overflow: %s", reason);
                        return r;
                }
        }
        if (pool_timeout) {
                r = config_parse_seconds(pool_timeout, &pc.timeout_ms, reason, sizeof(reason));
                if (r < 0) {
                        config_err(err, errlen, "--pool-timeout: %s", reason);
                        return r;
                }
        }
        if (url) {
                r = config_parse_url(url, &pc.url, &pc.url_text, reason, sizeof(reason));
                if (r < 0) {
                        config_err(err, errlen, "--url: %s", reason);
                        return r;
                }
        }

        if (!existing) {
                cfg->pools[cfg->n_pools++] = pc;
                return 0;
        }
        if (url) {
                config_pool_free(existing);
                existing->url = pc.url;
                existing->url_text = pc.url_text;
        }
        existing->pool_size = pc.pool_size;
        existing->max_overflow = pc.max_overflow;
        existing->timeout_ms = pc.timeout_ms;
        return 0;
}

int fp_config_validate(const struct fp_config *cfg, char *err, size_t errlen)
{
        char reason[FP_CONFIG_ERR_MAX];
        int r;

        if (err && errlen > 0)
                err[0] = '\0';
        r = config_check_socket_path(cfg->socket_path, reason, sizeof(reason));
        if (r < 0) {
                config_err(err, errlen, "socket: %s", reason);
                return r;
        }
        if (cfg->n_pools == 0) {
                config_err(err, errlen,
                           "no pool configured: add a [pool NAME] section or use --url");
                return -EINVAL;
        }
        if (cfg->n_pools > FP_SHM_MAX_POOLS) {
                config_err(err, errlen, "too many pools (at most %d)", FP_SHM_MAX_POOLS);
                return -E2BIG;
        }
        for (size_t i = 0; i < cfg->n_pools; i++) {
                const struct fp_pool_config *pc = &cfg->pools[i];
                char where[512];
                char q[CONFIG_QUOTE_MAX + 4];
                const char *problem = NULL;

                if (cfg->path && pc->line > 0)
                        snprintf(where, sizeof(where), "%s:%d: ", cfg->path, pc->line);
                else
                        where[0] = '\0';

                if (!config_pool_name_valid(pc->name)) {
                        config_err(err, errlen,
                                   "%sinvalid pool name '%s' (" CONFIG_POOL_NAME_RULE ")", where,
                                   config_quote(pc->name, q));
                        return -EINVAL;
                }
                for (size_t j = 0; j < i; j++)
                        if (strcmp(cfg->pools[j].name, pc->name) == 0) {
                                config_err(err, errlen, "%sduplicate pool '%s'", where, pc->name);
                                return -EINVAL;
                        }
                if (!pc->url_text || !pc->url.scheme)
                        problem = "url: missing or not parsed";
                else if (pc->pool_size < 0 || pc->pool_size > FP_SHM_MAX_SLOTS_PER_POOL)
                        problem = "pool_size: out of range";
                else if (pc->max_overflow < -1)
                        problem = "max_overflow: must be -1 (no limit) or 0 or more";
                else if (pc->pool_size > 0 && pc->max_overflow >= 0 &&
                         pc->pool_size + pc->max_overflow > FP_SHM_MAX_SLOTS_PER_POOL)
                        problem = "max_overflow: pool_size + max_overflow is more than the "
                                  "1024 connections a pool can hold";
                else if (pc->timeout_ms < 0)
                        problem = "pool_timeout: negative";
                else if (pc->connect_timeout_ms <= 0)
                        problem = "connect_timeout: must be more than 0 seconds";
                else if (pc->reset_mode > FP_RESET_AUTO)
                        problem = "reset_on_return: invalid";
                else if (pc->pool_mode == FP_POOL_MODE_TRANSACTION &&
                         strcmp(pc->url.scheme, "postgresql") != 0)
                        problem = "pool_mode: transaction needs a PostgreSQL pool (the libpq "
                                  "drop-in is what leases by transaction)";
                else if (pc->pool_mode == FP_POOL_MODE_TRANSACTION &&
                         pc->pool_class == FP_POOL_PROCESS)
                        problem = "pool_mode: transaction does not go with poolclass = process "
                                  "(one connection kept per process)";
                if (problem) {
                        config_err(err, errlen, "%s%s in [pool %s]", where, problem, pc->name);
                        return -EINVAL;
                }
        }
        return 0;
}

void fp_config_free(struct fp_config *cfg)
{
        if (!cfg)
                return;
        for (size_t i = 0; i < cfg->n_pools && i < FP_SHM_MAX_POOLS; i++)
                config_pool_free(&cfg->pools[i]);
        free(cfg->path);
        free(cfg->socket_path);
        free(cfg->run_user);
        /* Defaults again, but no allocation: socket_path stays NULL (see config.h). */
        memset(cfg, 0, sizeof(*cfg));
        cfg->log_level = FP_LOG_INFO;
        cfg->shutdown_grace_ms = CONFIG_DEFAULT_SHUTDOWN_GRACE_MS;
        config_set_peer_limit_defaults(cfg);
}

const struct fp_pool_config *fp_config_find_pool(const struct fp_config *cfg, const char *name)
{
        for (size_t i = 0; i < cfg->n_pools && i < FP_SHM_MAX_POOLS; i++)
                if (strcmp(cfg->pools[i].name, name) == 0)
                        return &cfg->pools[i];
        return NULL;
}

int fp_reset_mode_parse(const char *text, enum fp_reset_mode *ret)
{
        if (strcmp(text, "rollback") == 0)
                *ret = FP_RESET_ROLLBACK;
        else if (strcmp(text, "commit") == 0)
                *ret = FP_RESET_COMMIT;
        else if (strcmp(text, "none") == 0)
                *ret = FP_RESET_NONE;
        else if (strcmp(text, "discard") == 0)
                *ret = FP_RESET_DISCARD;
        else if (strcmp(text, "auto") == 0)
                *ret = FP_RESET_AUTO;
        else
                return -EINVAL;
        return 0;
}

const char *fp_reset_mode_name(enum fp_reset_mode mode)
{
        switch (mode) {
        case FP_RESET_ROLLBACK:
                return "rollback";
        case FP_RESET_COMMIT:
                return "commit";
        case FP_RESET_NONE:
                return "none";
        case FP_RESET_DISCARD:
                return "discard";
        case FP_RESET_AUTO:
                return "auto";
        }
        return "unknown";
}
