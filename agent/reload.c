/* SPDX-License-Identifier: MIT */
/*
 * reload.c — reloading forkpoold's configuration (reload.h).
 */
#include "reload.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#include "log.h"

/* Applies a new, valid configuration: global settings and pools. Takes cfg's pools. */
static void apply_config(struct fp_supervisor *sup, struct fp_config *cfg)
{
        bool layout_changed = false;

        if (strcmp(cfg->socket_path, sup->cfg.socket_path) != 0)
                log_warning("reload: the control socket cannot move (%s → %s); restart for that",
                            sup->cfg.socket_path, cfg->socket_path);
        fp_log_set_level(cfg->log_level);
        sup->cfg.log_level = cfg->log_level;
        sup->cfg.shutdown_grace_ms = cfg->shutdown_grace_ms;
        sup->cfg.n_allow_uids = cfg->n_allow_uids;
        memcpy(sup->cfg.allow_uids, cfg->allow_uids, sizeof(cfg->allow_uids));
        sup->cfg.n_allow_gids = cfg->n_allow_gids;
        memcpy(sup->cfg.allow_gids, cfg->allow_gids, sizeof(cfg->allow_gids));
        /* Who is an admin is checked per command: a removed admin is refused from now on. */
        sup->cfg.n_admin_uids = cfg->n_admin_uids;
        memcpy(sup->cfg.admin_uids, cfg->admin_uids, sizeof(cfg->admin_uids));
        sup->cfg.n_admin_gids = cfg->n_admin_gids;
        memcpy(sup->cfg.admin_gids, cfg->admin_gids, sizeof(cfg->admin_gids));
        /* Peer limits apply to new connections and new acquires. */
        sup->cfg.max_connections_per_uid = cfg->max_connections_per_uid;
        sup->cfg.max_connections_per_pid = cfg->max_connections_per_pid;
        sup->cfg.max_waiting_per_connection = cfg->max_waiting_per_connection;
        sup->cfg.hello_timeout_ms = cfg->hello_timeout_ms;

        /* Pools that are gone drain: no new leases, the rest close as they come back. */
        for (size_t i = 0; i < sup->n_pools; i++) {
                struct fp_sup_pool *sp = sup->pools[i];
                if (sp->removed || fp_config_find_pool(cfg, sp->cfg.name))
                        continue;
                log_info("reload: pool %s removed; its connections close as they come back",
                         sp->cfg.name);
                sp->removed = true;
                fp_pool_drain(&sp->pool, -ENOENT, "the pool was removed by a reload");
                layout_changed = true;
        }

        for (size_t i = 0; i < cfg->n_pools; i++) {
                struct fp_pool_config *pc = &cfg->pools[i];
                struct fp_sup_pool *sp = fp_supervisor_find_pool(sup, pc->name);
                struct fp_pool_params params;
                fp_sup_pool_params(pc, &params);

                if (sp) {
                        bool url_changed = strcmp(sp->cfg.url_text, pc->url_text) != 0;
                        int r = fp_sup_pool_set_config(sp, pc);
                        if (r < 0) {
                                log_error("reload: pool %s keeps its URL: the new one %s",
                                          params.name,
                                          r == -EINVAL ? "is for another kind of database"
                                                       : "cannot be used");
                                url_changed = false;
                        }
                        fp_pool_update_params(&sp->pool, &params);
                        if (url_changed) {
                                log_info("reload: pool %s has a new URL; existing connections "
                                         "close as they come back",
                                         params.name);
                                fp_pool_invalidate_all(&sp->pool);
                        }
                        continue;
                }
                if (sup->n_pools >= FP_SHM_MAX_POOLS) {
                        log_error("reload: pool %s not added: at most %d pools (removed ones "
                                  "count until restart)",
                                  pc->name, FP_SHM_MAX_POOLS);
                        continue;
                }
                if (fp_sup_pool_new(sup, pc, &sp) < 0) {
                        log_error("reload: pool %s not added: out of memory", params.name);
                        continue;
                }
                sup->pools[sup->n_pools++] = sp;
                log_info("reload: pool %s added", params.name);
                layout_changed = true;
        }
        if (layout_changed)
                (void)fp_supervisor_publish_segment(sup);
}

int fp_supervisor_reload(struct fp_supervisor *sup, char *err, size_t len)
{
        struct fp_config cfg;

        if (!sup->cfg.path) {
                snprintf(err, len, "started without --config, nothing to reload");
                return -EINVAL;
        }
        (void)sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64, fp_supervisor_now(sup));
        fp_config_init(&cfg);
        if (fp_config_load(&cfg, sup->cfg.path, err, len) < 0 ||
            fp_config_validate(&cfg, err, len) < 0) {
                fp_config_free(&cfg);
                (void)sd_notify(0, "READY=1");
                return -EINVAL;
        }
        apply_config(sup, &cfg);
        fp_config_free(&cfg);
        sup->last_status[0] = '\0';
        (void)sd_notify(0, "READY=1");
        snprintf(err, len, "configuration reloaded from %s", sup->cfg.path);
        return 0;
}

static int on_reload_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        struct fp_supervisor *sup = userdata;
        char text[FP_CONFIG_ERR_MAX];
        (void)s, (void)si;

        if (fp_supervisor_reload(sup, text, sizeof(text)) < 0)
                log_error("reload rejected, keeping the running configuration: %s", text);
        else
                log_info("%s", text);
        return 0;
}

int fp_reload_watch_signal(struct fp_supervisor *sup)
{
        int r = sd_event_add_signal(sup->event, NULL, SIGHUP, on_reload_signal, sup);
        if (r < 0)
                return log_error_errno(r, "cannot watch SIGHUP");
        return 0;
}
