/* SPDX-License-Identifier: MIT */
/*
 * config_keys.c — the keys of the file and what each sets (config_keys.h).
 */
#include "config_keys.h"

#include <errno.h>
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

static const struct config_key forkpool_keys[] = {
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

static const struct config_key pool_keys[] = {
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

_Static_assert(sizeof(forkpool_keys) / sizeof(forkpool_keys[0]) <= CONFIG_MAX_KEYS,
               "key_lines too small");
_Static_assert(sizeof(pool_keys) / sizeof(pool_keys[0]) <= CONFIG_MAX_KEYS, "key_lines too small");

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
        const struct config_key *k = config_find_key(CONFIG_SECTION_POOL, key, NULL);
        if (k)
                return k->set(&ld, value, err, errlen);
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
