/* SPDX-License-Identifier: MIT */
/*
 * config_validate.c — checking a whole configuration (fp_config_validate() of
 * config.h).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "config_values.h"

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
