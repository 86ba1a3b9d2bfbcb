/* SPDX-License-Identifier: MIT */
/*
 * config.c — forkpoold's configuration (config.h): its defaults, the
 * quick-start pool of the command line, freeing. The file is read by
 * config_ini.c with the keys of config_keys.c and the value parsers of
 * config_values.c; config_validate.c checks the whole.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_values.h"
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

void fp_pool_config_defaults(struct fp_pool_config *pc, const char *name, int line)
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

void fp_pool_config_free(struct fp_pool_config *pc)
{
        free(pc->on_connect);
        pc->on_connect = NULL;
        config_free_secret(pc->url_text);
        pc->url_text = NULL;
        fp_url_free(&pc->url);
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

        fp_pool_config_defaults(&pc, CONFIG_QUICK_POOL_NAME, 0);
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
                fp_pool_config_free(existing);
                existing->url = pc.url;
                existing->url_text = pc.url_text;
        }
        existing->pool_size = pc.pool_size;
        existing->max_overflow = pc.max_overflow;
        existing->timeout_ms = pc.timeout_ms;
        return 0;
}

void fp_config_free(struct fp_config *cfg)
{
        if (!cfg)
                return;
        for (size_t i = 0; i < cfg->n_pools && i < FP_SHM_MAX_POOLS; i++)
                fp_pool_config_free(&cfg->pools[i]);
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
