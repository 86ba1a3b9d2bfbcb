/* SPDX-License-Identifier: MIT */
/*
 * config_keys.c — the keys of the file and what each sets (config_keys.h).
 */
#include "config_keys.h"

#include <errno.h>
#include <stddef.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_values.h"

/* Records the first error as "PATH:LINE: message"; later ones are dropped. */
void config_loader_fail(struct config_loader *ld, int line, int r, const char *fmt, ...)
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
 * The CUSTOM keys: each parses and stores its value itself (a kind that only
 * one key would have is a handler here too).
 */

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

static int key_log_level(struct config_loader *ld, const char *v, char *reason, size_t len)
{
        return config_parse_log_level(v, &ld->cfg->log_level, reason, len);
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

/* Where a value goes: a [forkpool] key's in struct fp_config, a [pool NAME] key's in
 * fp_pool_config. */
#define IN_FORKPOOL(field) offsetof(struct fp_config, field)
#define IN_POOL(field)     offsetof(struct fp_pool_config, field)

static const struct config_key forkpool_keys[] = {
        {.name = "socket", .kind = CONFIG_KIND_CUSTOM, .set = key_socket},
        {.name = "allow_users",
         .kind = CONFIG_KIND_USERS,
         .offset = IN_FORKPOOL(allow_uids),
         .count_offset = IN_FORKPOOL(n_allow_uids)},
        {.name = "allow_groups",
         .kind = CONFIG_KIND_GROUPS,
         .offset = IN_FORKPOOL(allow_gids),
         .count_offset = IN_FORKPOOL(n_allow_gids)},
        {.name = "log_level", .kind = CONFIG_KIND_CUSTOM, .set = key_log_level},
        {.name = "shutdown_grace",
         .kind = CONFIG_KIND_SECONDS,
         .offset = IN_FORKPOOL(shutdown_grace_ms)},
        {.name = "admin_users",
         .kind = CONFIG_KIND_USERS,
         .offset = IN_FORKPOOL(admin_uids),
         .count_offset = IN_FORKPOOL(n_admin_uids)},
        {.name = "user", .kind = CONFIG_KIND_CUSTOM, .set = key_user},
        {.name = "admin_groups",
         .kind = CONFIG_KIND_GROUPS,
         .offset = IN_FORKPOOL(admin_gids),
         .count_offset = IN_FORKPOOL(n_admin_gids)},
        {.name = "max_connections_per_uid",
         .kind = CONFIG_KIND_LIMIT,
         .offset = IN_FORKPOOL(max_connections_per_uid)},
        {.name = "max_connections_per_pid",
         .kind = CONFIG_KIND_LIMIT,
         .offset = IN_FORKPOOL(max_connections_per_pid)},
        {.name = "max_waiting_per_connection",
         .kind = CONFIG_KIND_LIMIT,
         .offset = IN_FORKPOOL(max_waiting_per_connection)},
        {.name = "hello_timeout",
         .kind = CONFIG_KIND_SECONDS,
         .offset = IN_FORKPOOL(hello_timeout_ms)},
};

static const struct config_key pool_keys[] = {
        {.name = "url", .kind = CONFIG_KIND_CUSTOM, .set = key_url},
        {.name = "pool_size", .kind = CONFIG_KIND_CUSTOM, .set = key_pool_size},
        {.name = "max_overflow", .kind = CONFIG_KIND_CUSTOM, .set = key_max_overflow},
        {.name = "pool_timeout", .kind = CONFIG_KIND_SECONDS, .offset = IN_POOL(timeout_ms)},
        {.name = "connect_timeout", .kind = CONFIG_KIND_CUSTOM, .set = key_connect_timeout},
        {.name = "reset_on_return", .kind = CONFIG_KIND_CUSTOM, .set = key_reset_on_return},
        {.name = "poolclass", .kind = CONFIG_KIND_CUSTOM, .set = key_poolclass},
        {.name = "pool_mode", .kind = CONFIG_KIND_CUSTOM, .set = key_pool_mode},
        {.name = "pool_recycle", .kind = CONFIG_KIND_CUSTOM, .set = key_pool_recycle},
        {.name = "pool_pre_ping", .kind = CONFIG_KIND_BOOL, .offset = IN_POOL(pre_ping)},
        {.name = "pool_use_lifo", .kind = CONFIG_KIND_BOOL, .offset = IN_POOL(use_lifo)},
        {.name = "pool_affinity", .kind = CONFIG_KIND_BOOL, .offset = IN_POOL(affinity)},
        {.name = "connect_rate", .kind = CONFIG_KIND_CUSTOM, .set = key_connect_rate},
        {.name = "echo_pool", .kind = CONFIG_KIND_CUSTOM, .set = key_echo_pool},
        {.name = "on_connect", .kind = CONFIG_KIND_CUSTOM, .set = key_on_connect},
        {.name = "leak_timeout", .kind = CONFIG_KIND_SECONDS, .offset = IN_POOL(leak_timeout_ms)},
        {.name = "max_lease_time",
         .kind = CONFIG_KIND_SECONDS,
         .offset = IN_POOL(max_lease_time_ms)},
        {.name = "allow_users",
         .kind = CONFIG_KIND_USERS,
         .offset = IN_POOL(allow_uids),
         .count_offset = IN_POOL(n_allow_uids)},
        {.name = "allow_groups",
         .kind = CONFIG_KIND_GROUPS,
         .offset = IN_POOL(allow_gids),
         .count_offset = IN_POOL(n_allow_gids)},
};

#undef IN_FORKPOOL
#undef IN_POOL

_Static_assert(sizeof(forkpool_keys) / sizeof(forkpool_keys[0]) <= CONFIG_MAX_KEYS,
               "key_lines too small");
_Static_assert(sizeof(pool_keys) / sizeof(pool_keys[0]) <= CONFIG_MAX_KEYS, "key_lines too small");

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

int config_key_set(struct config_loader *ld, const struct config_key *key, const char *value,
                   char *reason, size_t len)
{
        char *at = ld->section == CONFIG_SECTION_POOL ? (char *)ld->pool : (char *)ld->cfg;

        switch (key->kind) {
        case CONFIG_KIND_CUSTOM:
                return key->set(ld, value, reason, len);
        case CONFIG_KIND_BOOL:
                return config_parse_bool(value, (bool *)(at + key->offset), reason, len);
        case CONFIG_KIND_SECONDS:
                return config_parse_seconds(value, (int *)(at + key->offset), reason, len);
        case CONFIG_KIND_LIMIT:
                return config_parse_limit(value, (int *)(at + key->offset), reason, len);
        case CONFIG_KIND_USERS:
        case CONFIG_KIND_GROUPS:
                return config_set_ids(value, key->kind == CONFIG_KIND_GROUPS,
                                      (uint32_t *)(at + key->offset),
                                      (size_t *)(at + key->count_offset), reason, len);
        }
        return -EINVAL; /* not reached: every kind is handled above */
}

int fp_config_set_pool_key(struct fp_config *cfg, const char *pool, const char *key,
                           const char *value, char *err, size_t errlen)
{
        struct fp_pool_config *pc = (struct fp_pool_config *)fp_config_find_pool(cfg, pool);
        struct config_loader ld = {.cfg = cfg, .section = CONFIG_SECTION_POOL, .pool = pc};

        if (err && errlen > 0)
                err[0] = '\0';
        if (!pc) {
                config_err(err, errlen, "no pool '%s'", pool);
                return -ENOENT;
        }
        const struct config_key *k = config_find_key(CONFIG_SECTION_POOL, key, NULL);
        if (k)
                return config_key_set(&ld, k, value, err, errlen);
        config_err(err, errlen, "unknown pool key '%s'", key);
        return -ENOENT;
}

const struct config_key *config_find_key(enum config_section section, const char *name,
                                         size_t *ret_index)
{
        const struct config_key *keys;
        size_t n;

        if (section == CONFIG_SECTION_FORKPOOL) {
                keys = forkpool_keys;
                n = sizeof(forkpool_keys) / sizeof(forkpool_keys[0]);
        } else if (section == CONFIG_SECTION_POOL) {
                keys = pool_keys;
                n = sizeof(pool_keys) / sizeof(pool_keys[0]);
        } else {
                return NULL;
        }
        for (size_t i = 0; i < n; i++)
                if (strcmp(name, keys[i].name) == 0) {
                        if (ret_index)
                                *ret_index = i;
                        return &keys[i];
                }
        return NULL;
}
