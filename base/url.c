/* SPDX-License-Identifier: MIT */
/*
 * url.c — database URLs in SQLAlchemy's form (url.h).
 *
 * The text is first cut at its delimiters, without decoding: the scheme ends
 * at "://", the authority at the first '/' or '?', the path at the first '?'.
 * The userinfo ends at the last '@' of the authority, so that an unencoded '@'
 * in the password still works. Only then is each component percent-decoded
 * and checked.
 *
 * A password holding an unencoded '/' or '?' shifts the cuts, and pieces of
 * it land in the host, port, database or query. Reasons must never quote the
 * password, so: a raw '@' in the path (where such a shift always leaves one)
 * is refused without quoting anything, and when the query holds a raw '@'
 * (where such a shift also leaves one) no reason quotes any part of the URL.
 * The password itself is never quoted.
 */
#include "url.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The libpq keywords a URL's query may set. TLS and GSS are refused apart. */
static const char *const url_allowed_params[] = {
        "host",
        "port",
        "application_name",
        "options",
        "client_encoding",
        "connect_timeout",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "target_session_attrs",
        "sslmode",
        "gssencmode",
        "passfile",
};

#define URL_ALLOWED_LIST                                                                           \
        "host, port, application_name, options, client_encoding, connect_timeout, keepalives, "    \
        "keepalives_idle, keepalives_interval, keepalives_count, tcp_user_timeout, "               \
        "target_session_attrs, sslmode=disable, gssencmode=disable, passfile"

#define URL_SHAPE "postgresql://user:password@host:port/database?key=value"

/* The query keys a mysql:// URL may set. TLS and compression are refused apart. */
static const char *const url_mysql_allowed_params[] = {
        "unix_socket",  "charset",          "connect_timeout",
        "init_command", "multi_statements", "found_rows",
};

#define URL_MYSQL_ALLOWED_LIST                                                                     \
        "unix_socket, charset, connect_timeout, init_command, multi_statements, found_rows"

#define URL_MYSQL_COMPRESS_REASON                                                                  \
        "compression cannot be used on leased connections (the compressed stream's state "         \
        "cannot move between processes)"

#define URL_ENCODE_HINT                                                                            \
        "if the password contains '/', '?' or '@', percent-encode them as %2F, %3F and %40"

#define URL_TLS_REASON                                                                             \
        "TLS cannot be used on leased connections (a TLS session cannot move between processes)"

/* Longest piece of the URL quoted in a reason. */
#define URL_QUOTE_MAX 64

/* The state of one parse: where reasons go and whether they may quote the URL. */
struct url_parser {
        char *err;
        size_t errlen;
        bool quiet; /* the URL may hold pieces of an unencoded password: quote nothing */
        char quote_buf[URL_QUOTE_MAX + 4];
};

static int url_fail(struct url_parser *p, int r, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/*
 * Writes a reason into p->err and returns r. In quiet mode the reason says why
 * parts of it are elided.
 */
static int url_fail(struct url_parser *p, int r, const char *fmt, ...)
{
        va_list ap;
        int n;

        if (!p->err || p->errlen == 0)
                return r;
        va_start(ap, fmt);
        n = vsnprintf(p->err, p->errlen, fmt, ap);
        va_end(ap);
        if (p->quiet && n >= 0 && (size_t)n < p->errlen)
                snprintf(p->err + n, p->errlen - (size_t)n,
                         " (parts of the URL are not shown, as it may hold a password; %s)",
                         URL_ENCODE_HINT);
        return r;
}

/*
 * A printable copy of s[0..n) for a reason (one per reason): non-printable
 * bytes become '?', and long text is cut. In quiet mode it is "...".
 */
static const char *url_quote(struct url_parser *p, const char *s, size_t n)
{
        char *buf = p->quote_buf;
        size_t i;

        if (p->quiet)
                return "...";
        for (i = 0; i < n && i < URL_QUOTE_MAX; i++) {
                unsigned char c = (unsigned char)s[i];
                buf[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
        }
        if (i < n) {
                memcpy(buf + i, "...", 3);
                i += 3;
        }
        buf[i] = '\0';
        return buf;
}

static int url_hex(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Frees a string that may hold a secret, wiping it first. */
static void url_free_secret(char *s)
{
        if (!s)
                return;
        explicit_bzero(s, strlen(s));
        free(s);
}

/*
 * Percent-decodes s[0..n) into a new string (with '+' as a space if
 * plus_space, as in a query). what names the component in reasons; secret
 * components never have their escape quoted. Returns 0 with *ret set (NULL
 * if empty_is_null and the result is empty), or a negative errno with a reason.
 */
static int url_decode(struct url_parser *p, const char *s, size_t n, bool plus_space,
                      bool empty_is_null, bool secret, const char *what, char **ret)
{
        char *out, *o;
        size_t i;

        *ret = NULL;
        if (n == 0 && empty_is_null)
                return 0;
        out = malloc(n + 1);
        if (!out)
                return url_fail(p, -ENOMEM, "out of memory");
        o = out;
        for (i = 0; i < n; i++) {
                if (s[i] == '+' && plus_space) {
                        *o++ = ' ';
                } else if (s[i] != '%') {
                        *o++ = s[i];
                } else {
                        int hi = i + 1 < n ? url_hex(s[i + 1]) : -1;
                        int lo = i + 2 < n ? url_hex(s[i + 2]) : -1;
                        if (hi < 0 || lo < 0)
                                goto err_escape;
                        if (hi == 0 && lo == 0)
                                goto err_nul;
                        *o++ = (char)(hi << 4 | lo);
                        i += 2;
                }
        }
        *o = '\0';
        if (o == out && empty_is_null) {
                free(out);
                return 0;
        }
        *ret = out;
        return 0;

err_escape:
        explicit_bzero(out, n + 1);
        free(out);
        if (secret)
                return url_fail(p, -EINVAL,
                                "malformed percent-escape in the %s: '%%' must be followed by two "
                                "hex digits (write a literal '%%' as %%25)",
                                what);
        return url_fail(p, -EINVAL,
                        "malformed percent-escape '%s' in the %s: '%%' must be followed by two "
                        "hex digits (write a literal '%%' as %%25)",
                        url_quote(p, s + i, n - i < 3 ? n - i : 3), what);
err_nul:
        explicit_bzero(out, n + 1);
        free(out);
        return url_fail(p, -EINVAL, "%%00 in the %s: NUL bytes are not allowed", what);
}

/*
 * Checks the scheme text[0..n) and accepts postgresql, postgres, mysql and
 * mariadb, each optionally +DRIVER.
 */
static int url_parse_scheme(struct url_parser *p, const char *s, size_t n, struct fp_url *url)
{
        const char *scheme = "postgresql";
        const char *plus = memchr(s, '+', n);
        size_t base_len = plus ? (size_t)(plus - s) : n;
        bool valid = n > 0 && ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z'));

        for (size_t i = 0; i < n && valid; i++)
                valid = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.",
                               s[i]) != NULL;
        if (!valid)
                /* Not quoted: without a valid scheme, this may be anything. */
                return url_fail(p, -EINVAL, "not a URL: expected " URL_SHAPE);

        if ((base_len == 5 && strncasecmp(s, "mysql", 5) == 0) ||
            (base_len == 7 && strncasecmp(s, "mariadb", 7) == 0))
                scheme = "mysql";
        else if (!((base_len == 10 && strncasecmp(s, "postgresql", 10) == 0) ||
                   (base_len == 8 && strncasecmp(s, "postgres", 8) == 0)))
                return url_fail(p, -EINVAL,
                                "unsupported scheme '%s' (expected postgresql://, mysql:// or "
                                "mariadb://)",
                                url_quote(p, s, n));
        if (plus) {
                size_t dlen = n - base_len - 1;
                bool ok = dlen > 0;
                for (size_t i = base_len + 1; i < n && ok; i++)
                        ok = s[i] == '_' || (s[i] >= '0' && s[i] <= '9') ||
                             (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z');
                if (!ok)
                        return url_fail(p, -EINVAL,
                                        "invalid driver name in the scheme '%s' (expected "
                                        "NAME+DRIVER, e.g. postgresql+psycopg2 or "
                                        "mysql+pymysql)",
                                        url_quote(p, s, n));
        }
        url->scheme = strdup(scheme);
        if (!url->scheme)
                return url_fail(p, -ENOMEM, "out of memory");
        return 0;
}

/* Decodes and checks a port: 1 to 65535, digits only. Stores it normalised. */
static int url_parse_port(struct url_parser *p, const char *s, size_t n, char **ret)
{
        char *text;
        unsigned long v = 0;
        size_t i;
        int r;

        if (n == 0)
                return url_fail(p, -EINVAL,
                                "empty port after ':' (leave the ':' out to use the "
                                "default port)");
        r = url_decode(p, s, n, false, false, false, "port", &text);
        if (r < 0)
                return r;
        for (i = 0; text[i]; i++) {
                if (text[i] < '0' || text[i] > '9' || v > 65535)
                        break;
                v = v * 10 + (unsigned long)(text[i] - '0');
        }
        if (i == 0 || text[i] || v < 1 || v > 65535) {
                r = url_fail(p, -EINVAL, "invalid port '%s': expected a number from 1 to 65535",
                             url_quote(p, text, strlen(text)));
                free(text);
                return r;
        }
        free(text);
        *ret = malloc(6);
        if (!*ret)
                return url_fail(p, -ENOMEM, "out of memory");
        snprintf(*ret, 6, "%lu", v);
        return 0;
}

/* Splits host[:port] or [v6]:port (s[0..n), after the userinfo). */
static int url_parse_hostport(struct url_parser *p, const char *s, size_t n, struct fp_url *url)
{
        const char *host = s, *port = NULL;
        size_t host_len = n, port_len = 0;
        int r;

        if (n > 0 && s[0] == '[') {
                const char *close = memchr(s, ']', n);
                if (!close)
                        return url_fail(p, -EINVAL,
                                        "unterminated '[' in the host (an IPv6 "
                                        "address is written [::1] or [::1]:5432)");
                host = s + 1;
                host_len = (size_t)(close - host);
                if (host_len == 0)
                        return url_fail(p, -EINVAL, "empty IPv6 address between '[' and ']'");
                if (memchr(host, '[', host_len))
                        return url_fail(p, -EINVAL, "unexpected '[' in the IPv6 address");
                if (close + 1 < s + n) {
                        if (close[1] != ':')
                                return url_fail(p, -EINVAL,
                                                "unexpected text after ']' in the "
                                                "host (expected ':PORT')");
                        port = close + 2;
                        port_len = (size_t)(s + n - port);
                }
        } else {
                const char *colon = memchr(s, ':', n);
                if (colon) {
                        host_len = (size_t)(colon - s);
                        port = colon + 1;
                        port_len = (size_t)(s + n - port);
                        if (memchr(port, ':', port_len))
                                return url_fail(p, -EINVAL,
                                                "more than one ':' after the host: an IPv6 "
                                                "address is written in brackets, e.g. "
                                                "[::1]:5432");
                }
                if (memchr(host, '[', host_len) || memchr(host, ']', host_len))
                        return url_fail(p, -EINVAL,
                                        "unexpected '[' or ']' in the host (an IPv6 "
                                        "address is written [::1] or [::1]:5432)");
        }

        r = url_decode(p, host, host_len, false, true, false, "host", &url->host);
        if (r < 0)
                return r;
        if (port)
                return url_parse_port(p, port, port_len, &url->port);
        return 0;
}

static bool url_param_allowed(const char *key)
{
        for (size_t i = 0; i < sizeof(url_allowed_params) / sizeof(url_allowed_params[0]); i++)
                if (strcmp(key, url_allowed_params[i]) == 0)
                        return true;
        return false;
}

/* The value of query parameter key, or NULL. */
static const char *url_param(const struct fp_url *url, const char *key)
{
        for (size_t i = 0; i < url->n_params; i++)
                if (strcmp(url->param_keys[i], key) == 0)
                        return url->param_values[i];
        return NULL;
}

static bool url_is_mysql(const struct fp_url *url)
{
        return url->scheme && strcmp(url->scheme, "mysql") == 0;
}

/* Parses a boolean query value: 1/0, true/false, yes/no, on/off. */
static int url_parse_bool(const char *value, int *ret)
{
        static const char *const yes[] = {"1", "true", "yes", "on"};
        static const char *const no[] = {"0", "false", "no", "off"};

        for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
                if (strcasecmp(value, yes[i]) == 0) {
                        *ret = 1;
                        return 0;
                }
                if (strcasecmp(value, no[i]) == 0) {
                        *ret = 0;
                        return 0;
                }
        }
        return -EINVAL;
}

/* Checks the value of an allowed mysql:// query key. */
static int url_check_mysql_value(struct url_parser *p, const char *key, const char *value)
{
        int b;

        if (strcmp(key, "unix_socket") == 0) {
                if (value[0] != '/' || strlen(value) >= 108)
                        return url_fail(p, -EINVAL,
                                        "unix_socket=%s: expected an absolute path to the "
                                        "server's socket file (at most 107 bytes)",
                                        url_quote(p, value, strlen(value)));
        } else if (strcmp(key, "charset") == 0) {
                size_t len = strlen(value);
                bool ok = len > 0 && len < 32;
                for (size_t i = 0; i < len && ok; i++)
                        ok = value[i] == '_' || (value[i] >= '0' && value[i] <= '9') ||
                             (value[i] >= 'a' && value[i] <= 'z') ||
                             (value[i] >= 'A' && value[i] <= 'Z');
                if (!ok)
                        return url_fail(p, -EINVAL,
                                        "charset=%s: expected a character set name such as "
                                        "utf8mb4",
                                        url_quote(p, value, strlen(value)));
        } else if (strcmp(key, "connect_timeout") == 0) {
                char *end;
                long v = strtol(value, &end, 10);
                if (end == value || *end || v < 1 || v > 3600)
                        return url_fail(p, -EINVAL,
                                        "connect_timeout=%s: expected whole seconds from 1 to "
                                        "3600",
                                        url_quote(p, value, strlen(value)));
        } else if (strcmp(key, "multi_statements") == 0 || strcmp(key, "found_rows") == 0) {
                if (url_parse_bool(value, &b) < 0)
                        return url_fail(p, -EINVAL, "%s=%s: expected true or false", key,
                                        url_quote(p, value, strlen(value)));
        }
        return 0;
}

/* Checks one decoded query parameter of a mysql:// URL: whitelisted, no TLS. */
static int url_check_mysql_param(struct url_parser *p, const char *key, const char *value)
{
        if (strncasecmp(key, "ssl", 3) == 0 || strncasecmp(key, "tls", 3) == 0)
                return url_fail(p, -EINVAL,
                                "%s: " URL_TLS_REASON "; remove it (forkpoold connects to "
                                "MySQL/MariaDB without TLS)",
                                url_quote(p, key, strlen(key)));
        if (strncasecmp(key, "compress", 8) == 0)
                return url_fail(p, -EINVAL, "%s: " URL_MYSQL_COMPRESS_REASON "; remove it",
                                url_quote(p, key, strlen(key)));
        size_t n = sizeof(url_mysql_allowed_params) / sizeof(url_mysql_allowed_params[0]);
        for (size_t i = 0; i < n; i++)
                if (strcmp(key, url_mysql_allowed_params[i]) == 0)
                        return url_check_mysql_value(p, key, value);
        return url_fail(p, -EINVAL, "unknown query parameter '%s' (allowed: %s)",
                        url_quote(p, key, strlen(key)), URL_MYSQL_ALLOWED_LIST);
}

/* Checks one decoded query parameter: whitelisted, no TLS, given once. */
static int url_check_param(struct url_parser *p, const struct fp_url *url, const char *key,
                           const char *value)
{
        if (url_is_mysql(url)) {
                int r = url_check_mysql_param(p, key, value);
                if (r < 0)
                        return r;
        } else if (strcmp(key, "sslmode") == 0) {
                if (strcmp(value, "disable") != 0)
                        return url_fail(p, -EINVAL,
                                        "sslmode=%s: " URL_TLS_REASON
                                        "; use sslmode=disable or leave it out",
                                        url_quote(p, value, strlen(value)));
        } else if (strcmp(key, "gssencmode") == 0) {
                if (strcmp(value, "disable") != 0)
                        return url_fail(p, -EINVAL,
                                        "gssencmode=%s: GSSAPI encryption cannot be used on "
                                        "leased connections (an encrypted session cannot move "
                                        "between processes); use gssencmode=disable or leave "
                                        "it out",
                                        url_quote(p, value, strlen(value)));
        } else if (strncmp(key, "ssl", 3) == 0) {
                return url_fail(p, -EINVAL,
                                "%s: " URL_TLS_REASON "; remove it (the only TLS setting "
                                "allowed is sslmode=disable)",
                                url_quote(p, key, strlen(key)));
        } else if (!url_param_allowed(key)) {
                return url_fail(p, -EINVAL, "unknown query parameter '%s' (allowed: %s)",
                                url_quote(p, key, strlen(key)), URL_ALLOWED_LIST);
        }
        if (url_param(url, key))
                return url_fail(p, -EINVAL, "query parameter '%s' is given twice",
                                url_quote(p, key, strlen(key)));
        if (url->n_params >= FP_URL_MAX_PARAMS)
                return url_fail(p, -EINVAL, "too many query parameters (at most %d)",
                                FP_URL_MAX_PARAMS);
        return 0;
}

/* Parses the query s[0..n): key=value pairs separated by '&'. */
static int url_parse_query(struct url_parser *p, const char *s, size_t n, struct fp_url *url)
{
        const char *end = s + n;
        int r;

        while (s < end) {
                const char *amp = memchr(s, '&', (size_t)(end - s));
                const char *seg_end = amp ? amp : end;
                size_t seg_len = (size_t)(seg_end - s);
                const char *eq = memchr(s, '=', seg_len);
                size_t key_len = eq ? (size_t)(eq - s) : seg_len;
                char *key = NULL, *value = NULL;

                if (seg_len == 0) {
                        s = seg_end + (amp ? 1 : 0);
                        continue;
                }
                if (memchr(s, '@', key_len)) {
                        /* Never a keyword: the tail of a password with a raw '?'. */
                        p->quiet = false; /* quotes nothing, already gives the hint */
                        return url_fail(p, -EINVAL, "malformed query parameter name; %s",
                                        URL_ENCODE_HINT);
                }
                if (!eq)
                        return url_fail(p, -EINVAL,
                                        "query parameter '%s' has no value (expected key=value)",
                                        url_quote(p, s, seg_len));
                if (key_len == 0)
                        return url_fail(p, -EINVAL, "query parameter without a name ('=%s')",
                                        url_quote(p, eq + 1, (size_t)(seg_end - eq - 1)));

                r = url_decode(p, s, key_len, true, false, false, "query parameter name", &key);
                if (r < 0)
                        return r;
                r = url_decode(p, eq + 1, (size_t)(seg_end - eq - 1), true, false, false,
                               "query parameter value", &value);
                if (r >= 0)
                        r = url_check_param(p, url, key, value);
                if (r < 0) {
                        free(key);
                        free(value);
                        return r;
                }
                url->param_keys[url->n_params] = key;
                url->param_values[url->n_params] = value;
                url->n_params++;
                s = seg_end + (amp ? 1 : 0);
        }
        return 0;
}

static int url_parse_all(struct url_parser *p, const char *text, struct fp_url *url)
{
        const char *sep, *rest, *authority, *path = NULL, *query = NULL, *at;
        size_t authority_len, path_len = 0, query_len = 0;
        int r;

        for (const char *c = text; *c; c++)
                if ((unsigned char)*c < 0x20 || *c == 0x7f)
                        return url_fail(p, -EINVAL,
                                        "the URL contains a control character (at offset %zu)",
                                        (size_t)(c - text));

        sep = strstr(text, "://");
        if (!sep)
                return url_fail(p, -EINVAL, "not a URL: expected " URL_SHAPE);
        rest = sep + 3;

        /* Cut before decoding anything. */
        authority = rest;
        authority_len = strcspn(rest, "/?");
        if (rest[authority_len] == '/') {
                path = rest + authority_len + 1;
                path_len = strcspn(path, "?");
                if (path[path_len] == '?') {
                        query = path + path_len + 1;
                        query_len = strlen(query);
                }
        } else if (rest[authority_len] == '?') {
                query = rest + authority_len + 1;
                query_len = strlen(query);
        }
        if (query && memchr(query, '@', query_len))
                p->quiet = true;

        r = url_parse_scheme(p, text, (size_t)(sep - text), url);
        if (r < 0)
                return r;

        if (path && memchr(path, '@', path_len)) {
                p->quiet = false; /* quotes nothing, already gives the hint */
                return url_fail(p, -EINVAL,
                                "'@' after the host, in the database name: write it as %%40 "
                                "there; %s",
                                URL_ENCODE_HINT);
        }

        at = NULL;
        for (size_t i = authority_len; i > 0; i--)
                if (authority[i - 1] == '@') {
                        at = authority + i - 1;
                        break;
                }
        if (at) {
                size_t ui_len = (size_t)(at - authority);
                const char *colon = memchr(authority, ':', ui_len);
                size_t user_len = colon ? (size_t)(colon - authority) : ui_len;

                r = url_decode(p, authority, user_len, false, true, false, "user name", &url->user);
                if (r < 0)
                        return r;
                if (colon) {
                        r = url_decode(p, colon + 1, ui_len - user_len - 1, false, true, true,
                                       "password", &url->password);
                        if (r < 0)
                                return r;
                }
                authority_len -= ui_len + 1;
                authority = at + 1;
        }
        r = url_parse_hostport(p, authority, authority_len, url);
        if (r < 0)
                return r;

        if (path) {
                r = url_decode(p, path, path_len, false, true, false, "database name",
                               &url->database);
                if (r < 0)
                        return r;
        }
        if (query)
                return url_parse_query(p, query, query_len, url);
        return 0;
}

int fp_url_parse(const char *text, struct fp_url *ret, char *err, size_t errlen)
{
        struct url_parser p = {.err = err, .errlen = errlen};
        struct fp_url url = {0};
        int r;

        memset(ret, 0, sizeof(*ret));
        if (err && errlen > 0)
                err[0] = '\0';
        if (!text)
                return url_fail(&p, -EINVAL, "no URL given");

        r = url_parse_all(&p, text, &url);
        if (r < 0) {
                fp_url_free(&url);
                return r;
        }
        *ret = url;
        return 0;
}

void fp_url_free(struct fp_url *url)
{
        if (!url)
                return;
        url_free_secret(url->password);
        free(url->scheme);
        free(url->user);
        free(url->host);
        free(url->port);
        free(url->database);
        for (size_t i = 0; i < url->n_params; i++) {
                free(url->param_keys[i]);
                free(url->param_values[i]);
        }
        memset(url, 0, sizeof(*url));
}

int fp_url_mysql_options(const struct fp_url *url, struct fp_url_mysql *ret)
{
        const char *v;

        if (!url_is_mysql(url))
                return -EINVAL;
        *ret = (struct fp_url_mysql){
                .host = url->host,
                .port = url->port ? (unsigned int)strtoul(url->port, NULL, 10) : 0,
                .user = url->user,
                .password = url->password,
                .database = url->database,
                .unix_socket = url_param(url, "unix_socket"),
                .charset = url_param(url, "charset"),
                .init_command = url_param(url, "init_command"),
        };
        v = url_param(url, "connect_timeout");
        if (v)
                ret->connect_timeout_s = (int)strtol(v, NULL, 10);
        v = url_param(url, "multi_statements");
        if (v)
                (void)url_parse_bool(v, &ret->multi_statements);
        v = url_param(url, "found_rows");
        if (v)
                (void)url_parse_bool(v, &ret->found_rows);
        return 0;
}

/* Whether query parameter i goes into libpq's keywords (not the forced ones). */
static bool url_param_passed(const struct fp_url *url, size_t i)
{
        return strcmp(url->param_keys[i], "sslmode") != 0 &&
               strcmp(url->param_keys[i], "gssencmode") != 0;
}

int fp_url_pg_keywords(const struct fp_url *url, const char **keys, const char **values, size_t cap)
{
        /* ?host= and ?port= take precedence, as in SQLAlchemy's psycopg2 dialect. */
        const struct {
                const char *key;
                const char *value;
        } fixed[] = {
                {"host", url_param(url, "host") ? NULL : url->host},
                {"port", url_param(url, "port") ? NULL : url->port},
                {"user", url->user},
                {"password", url->password},
                {"dbname", url->database},
        };
        size_t n = 0, need = 2;

        for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
                need += fixed[i].value != NULL;
        for (size_t i = 0; i < url->n_params; i++)
                need += url_param_passed(url, i);
        if (need + 1 > cap)
                return -ENOSPC;

        for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
                if (fixed[i].value) {
                        keys[n] = fixed[i].key;
                        values[n++] = fixed[i].value;
                }
        for (size_t i = 0; i < url->n_params; i++)
                if (url_param_passed(url, i)) {
                        keys[n] = url->param_keys[i];
                        values[n++] = url->param_values[i];
                }
        keys[n] = "sslmode";
        values[n++] = "disable";
        keys[n] = "gssencmode";
        values[n++] = "disable";
        keys[n] = NULL;
        values[n] = NULL;
        return (int)n;
}

/* A bounded writer: keeps the NUL, counts what fitted. */
struct url_out {
        char *buf;
        size_t len;
        size_t pos;
};

static void url_put_char(struct url_out *o, char c)
{
        if (o->pos + 1 < o->len) {
                o->buf[o->pos++] = c;
                o->buf[o->pos] = '\0';
        }
}

static void url_put(struct url_out *o, const char *s)
{
        for (; *s; s++)
                url_put_char(o, *s);
}

/*
 * Writes s, percent-encoding '%', space, control characters and the
 * characters in reserved, so that the text parses back to the same value.
 */
static void url_put_encoded(struct url_out *o, const char *s, const char *reserved)
{
        static const char hex[] = "0123456789ABCDEF";

        for (; *s; s++) {
                unsigned char c = (unsigned char)*s;
                if (c <= 0x20 || c == 0x7f || c == '%' || strchr(reserved, c)) {
                        url_put_char(o, '%');
                        url_put_char(o, hex[c >> 4]);
                        url_put_char(o, hex[c & 15]);
                } else {
                        url_put_char(o, (char)c);
                }
        }
}

int fp_url_format_masked(const struct fp_url *url, char *buf, size_t len)
{
        struct url_out o = {.buf = buf, .len = len};

        if (!url || !buf || len == 0)
                return -EINVAL;
        buf[0] = '\0';
        url_put(&o, url->scheme ? url->scheme : "postgresql");
        url_put(&o, "://");
        if (url->user || url->password) {
                if (url->user)
                        url_put_encoded(&o, url->user, ":@/?");
                if (url->password)
                        url_put(&o, ":***");
                url_put_char(&o, '@');
        }
        if (url->host && strchr(url->host, ':')) {
                url_put_char(&o, '[');
                url_put_encoded(&o, url->host, "[]/?@");
                url_put_char(&o, ']');
        } else if (url->host) {
                url_put_encoded(&o, url->host, ":[]/?@");
        }
        if (url->port) {
                url_put_char(&o, ':');
                url_put_encoded(&o, url->port, ":/?@");
        }
        if (url->database) {
                url_put_char(&o, '/');
                url_put_encoded(&o, url->database, "?@");
        }
        for (size_t i = 0; i < url->n_params; i++) {
                url_put_char(&o, i == 0 ? '?' : '&');
                url_put_encoded(&o, url->param_keys[i], "&=+@");
                url_put_char(&o, '=');
                url_put_encoded(&o, url->param_values[i], "&=+@");
        }
        return (int)o.pos;
}
