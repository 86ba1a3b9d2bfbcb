/* SPDX-License-Identifier: MIT */
/*
 * target.c — reading an application's connection parameters (target.h).
 */
#include "target.h"

#include <errno.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "realpq.h"

FP_REALPQ_DECLARE(PQconndefaults);

/* The parameters the drop-in looks at; the rest are accepted and ignored. */
enum setting {
        S_HOST,
        S_PORT,
        S_HOSTADDR,
        S_DBNAME,
        S_USER,
        S_PASSWORD,
        S_CONNECT_TIMEOUT,
        S_CLIENT_ENCODING,
        S_SSLMODE,
        S_GSSENCMODE,
        S_CHANNEL_BINDING,
        S_REPLICATION,
        S_OPTIONS,
        S_TARGET_SESSION_ATTRS,
        S_SERVICE,
        S_COUNT
};

static const struct {
        const char *keyword;
        const char *env; /* the libpq environment variable that stands in, or NULL */
} settings[S_COUNT] = {
        [S_HOST] = {"host", "PGHOST"},
        [S_PORT] = {"port", "PGPORT"},
        [S_HOSTADDR] = {"hostaddr", "PGHOSTADDR"},
        [S_DBNAME] = {"dbname", "PGDATABASE"},
        [S_USER] = {"user", "PGUSER"},
        [S_PASSWORD] = {"password", "PGPASSWORD"},
        [S_CONNECT_TIMEOUT] = {"connect_timeout", "PGCONNECT_TIMEOUT"},
        [S_CLIENT_ENCODING] = {"client_encoding", "PGCLIENTENCODING"},
        [S_SSLMODE] = {"sslmode", "PGSSLMODE"},
        [S_GSSENCMODE] = {"gssencmode", "PGGSSENCMODE"},
        [S_CHANNEL_BINDING] = {"channel_binding", "PGCHANNELBINDING"},
        [S_REPLICATION] = {"replication", NULL},
        [S_OPTIONS] = {"options", "PGOPTIONS"},
        [S_TARGET_SESSION_ATTRS] = {"target_session_attrs", "PGTARGETSESSIONATTRS"},
        [S_SERVICE] = {"service", "PGSERVICE"},
};

/* The values seen so far, by setting; they point into the caller's arrays or parses. */
struct seen {
        const char *value[S_COUNT];
};

/* Every keyword this libpq knows, from PQconndefaults(), read once. */
static pthread_once_t keywords_once = PTHREAD_ONCE_INIT;
static PQconninfoOption *known_keywords;

static void keywords_load(void)
{
        known_keywords = FP_REAL(PQconndefaults)();
}

static bool keyword_known(const char *keyword)
{
        pthread_once(&keywords_once, keywords_load);
        if (!known_keywords)
                return true; /* out of memory: let libpq judge later */
        for (const PQconninfoOption *o = known_keywords; o->keyword; o++)
                if (strcmp(o->keyword, keyword) == 0)
                        return true;
        return false;
}

/* Records keyword = value (a later value wins, as in libpq). Returns -EINVAL for unknown keys. */
static int seen_set(struct seen *s, const char *keyword, const char *value)
{
        if (!value || !*value)
                return 0; /* libpq treats an empty value as not given */
        for (int i = 0; i < S_COUNT; i++)
                if (strcmp(settings[i].keyword, keyword) == 0) {
                        s->value[i] = value;
                        return 0;
                }
        return keyword_known(keyword) ? 0 : -EINVAL;
}

static bool looks_like_conninfo(const char *dbname)
{
        return strchr(dbname, '=') || strncmp(dbname, "postgresql://", 13) == 0 ||
               strncmp(dbname, "postgres://", 11) == 0;
}

/* The value of a setting: given, else its environment variable, else NULL. */
static const char *seen_get(const struct seen *s, enum setting i)
{
        if (s->value[i])
                return s->value[i];
        const char *env = settings[i].env ? getenv(settings[i].env) : NULL;
        return env && *env ? env : NULL;
}

static bool truthy(const char *v)
{
        return v && *v && strcmp(v, "0") != 0 && strcasecmp(v, "false") != 0 &&
               strcasecmp(v, "off") != 0 && strcasecmp(v, "no") != 0;
}

static void copy(char *dst, size_t cap, const char *src)
{
        snprintf(dst, cap, "%s", src ? src : "");
}

/* Decides, from everything seen, whether and how the parameters address forkpool. */
static int target_decide(const struct seen *s, struct dropin_target *t)
{
        const char *host = seen_get(s, S_HOST);
        struct stat st;

        memset(t, 0, sizeof(*t));
        if (!host || host[0] != '/' || strchr(host, ','))
                return 0;
        if ((size_t)snprintf(t->socket, sizeof(t->socket), "%s/" DROPIN_SOCKET_NAME, host) >=
                    sizeof(t->socket) ||
            stat(t->socket, &st) < 0 || !S_ISSOCK(st.st_mode))
                return 0;

        copy(t->host, sizeof(t->host), host);
        copy(t->port, sizeof(t->port), seen_get(s, S_PORT) ? seen_get(s, S_PORT) : "5432");
        copy(t->hostaddr, sizeof(t->hostaddr), seen_get(s, S_HOSTADDR));
        copy(t->user, sizeof(t->user), seen_get(s, S_USER));
        copy(t->password, sizeof(t->password), seen_get(s, S_PASSWORD));
        const char *pool = seen_get(s, S_DBNAME);
        if (!pool)
                pool = *t->user ? t->user : NULL;
        /* The drop-in runs in threaded programs: getpwuid()'s static buffer is not its own. */
        char pw_buf[1024];
        if (!pool) {
                /* libpq's default database is the login name. */
                struct passwd pw_entry, *pw = NULL;
                if (getpwuid_r(geteuid(), &pw_entry, pw_buf, sizeof(pw_buf), &pw) != 0)
                        pw = NULL;
                pool = pw ? pw->pw_name : "";
        }
        copy(t->pool, sizeof(t->pool), pool);
        if (strlen(pool) >= sizeof(t->pool))
                snprintf(t->refusal, sizeof(t->refusal),
                         "forkpool: no pool can be named \"%.40s…\": pool names are at most %d "
                         "bytes",
                         pool, FP_NAME_MAX - 1);

        const char *enc = seen_get(s, S_CLIENT_ENCODING);
        if (enc && strcasecmp(enc, "auto") != 0)
                copy(t->client_encoding, sizeof(t->client_encoding), enc);

        t->timeout_ms = -1;
        const char *timeout = seen_get(s, S_CONNECT_TIMEOUT);
        if (timeout) {
                char *end;
                long sec = strtol(timeout, &end, 10);
                if (*end || end == timeout)
                        snprintf(t->refusal, sizeof(t->refusal),
                                 "forkpool: invalid connect_timeout \"%.40s\": a whole number of "
                                 "seconds",
                                 timeout);
                else if (sec > 0)
                        /* As libpq: anything below 2 s counts as 2 s. */
                        t->timeout_ms = (int)(sec < 2 ? 2000 : sec > 86400 ? 86400000 : sec * 1000);
        }

        const char *v;
        const char *why = NULL;
        char text[180];
        if ((v = seen_get(s, S_SSLMODE)) && strcmp(v, "disable") != 0 && strcmp(v, "allow") != 0 &&
            strcmp(v, "prefer") != 0) {
                snprintf(text, sizeof(text),
                         "sslmode=%.20s cannot be honoured: a leased session is plaintext (TLS "
                         "state cannot move between processes); use sslmode=disable",
                         v);
                why = text;
        } else if (truthy(getenv("PGREQUIRESSL")) && !s->value[S_SSLMODE]) {
                why = "PGREQUIRESSL cannot be honoured: a leased session is plaintext";
        } else if ((v = seen_get(s, S_GSSENCMODE)) && strcmp(v, "require") == 0) {
                why = "gssencmode=require cannot be honoured: a leased session is plaintext";
        } else if ((v = seen_get(s, S_CHANNEL_BINDING)) && strcmp(v, "require") == 0) {
                why = "channel_binding=require cannot be honoured: forkpoold authenticated the "
                      "session";
        } else if (truthy(seen_get(s, S_REPLICATION))) {
                why = "replication connections cannot be leased: connect to the server directly";
        } else if ((v = seen_get(s, S_OPTIONS))) {
                snprintf(text, sizeof(text),
                         "options=\"%.40s\" cannot be applied to a shared session: set it in the "
                         "pool's URL or with SET",
                         v);
                why = text;
        } else if ((v = seen_get(s, S_TARGET_SESSION_ATTRS)) && strcmp(v, "any") != 0) {
                snprintf(text, sizeof(text),
                         "target_session_attrs=%.20s cannot be checked on a leased session: use "
                         "any",
                         v);
                why = text;
        }
        if (why && !*t->refusal)
                snprintf(t->refusal, sizeof(t->refusal), "forkpool: pool \"%.63s\": %.170s",
                         t->pool, why);
        return 1;
}

/* Records every option a parse set. */
static int seen_add_options(struct seen *s, const PQconninfoOption *opts)
{
        for (const PQconninfoOption *o = opts; o->keyword; o++)
                if (o->val) {
                        int r = seen_set(s, o->keyword, o->val);
                        if (r < 0)
                                return r;
                }
        return 0;
}

int dropin_target_from_conninfo(const char *conninfo, struct dropin_target *ret)
{
        struct seen s = {0};
        char *err = NULL;

        PQconninfoOption *opts = FP_REAL(PQconninfoParse)(conninfo ? conninfo : "", &err);
        if (!opts) {
                free(err);
                return -EINVAL;
        }
        int r = seen_add_options(&s, opts);
        if (r >= 0)
                r = target_decide(&s, ret);
        FP_REAL(PQconninfoFree)(opts);
        return r;
}

int dropin_target_from_params(const char *const *keywords, const char *const *values,
                              int expand_dbname, struct dropin_target *ret)
{
        struct seen s = {0};
        PQconninfoOption *expanded = NULL;
        int r = 0;

        for (size_t i = 0; keywords && keywords[i] && r >= 0; i++) {
                const char *v = values ? values[i] : NULL;
                if (expand_dbname && !expanded && v && strcmp(keywords[i], "dbname") == 0 &&
                    looks_like_conninfo(v)) {
                        /* Only the first dbname is expanded, in its place. */
                        char *err = NULL;
                        expanded = FP_REAL(PQconninfoParse)(v, &err);
                        free(err);
                        r = expanded ? seen_add_options(&s, expanded) : -EINVAL;
                        continue;
                }
                r = seen_set(&s, keywords[i], v);
        }
        if (r >= 0)
                r = target_decide(&s, ret);
        if (expanded)
                FP_REAL(PQconninfoFree)(expanded);
        return r;
}
