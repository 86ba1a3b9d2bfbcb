/* SPDX-License-Identifier: MIT */
/*
 * supervisor.c — forkpoold's top level (supervisor.h): pools wired to their
 * database drivers, the shared segment, the lease checks, start and end.
 * Stopping is shutdown.c's, reloading reload.c's, the holders of restored
 * leases orphan.c's.
 */
#include "supervisor.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "access.h"
#include "clock.h"
#include "fdstore.h"
#include "log.h"
#include "process.h"
#include "sockio.h"

static struct fp_sup_pool *sup_pool_of(struct fp_pool *pool)
{
        return pool->userdata;
}

uint64_t fp_supervisor_now(struct fp_supervisor *sup)
{
        (void)sup;
        return fp_monotonic_usec();
}

/* --- the pools' I/O (struct fp_pool_ops) --- */

struct connect_ctx {
        struct fp_record *rec;
        void *conn;
};

static void on_hook_done(void *conn, int error, const char *text, void *userdata)
{
        struct fp_record *rec = userdata;
        struct fp_sup_pool *sp = sup_pool_of(rec->pool);
        char reason[FP_ERRTEXT_MAX];

        if (error == 0) {
                rec->conn = conn;
                fp_pool_connect_done(&sp->pool, rec, 0, NULL);
                return;
        }
        /* A connection whose hook failed is closed, and the caller is told why. */
        snprintf(reason, sizeof(reason), "on_connect failed: %s", text);
        log_warning("pool %s: %s", sp->cfg.name, reason);
        sp->driver->close(conn, false);
        fp_pool_connect_done(&sp->pool, rec, -ECONNABORTED, reason);
}

static void on_connected(void *conn, int error, const char *text, void *userdata)
{
        struct fp_record *rec = userdata;
        struct fp_sup_pool *sp = sup_pool_of(rec->pool);

        if (error < 0) {
                log_warning("pool %s: connect failed: %s", sp->cfg.name, text);
                fp_pool_connect_done(&sp->pool, rec, error, text);
                return;
        }
        rec->backend_pid = sp->driver->backend_id(conn);
        log_debug("pool %s: slot %u connected, backend %d", sp->cfg.name, rec->index,
                  rec->backend_pid);
        if (sp->cfg.on_connect && sp->driver->exec) {
                sp->driver->exec(conn, sp->cfg.on_connect, sp->pool.params.connect_timeout_ms,
                                 on_hook_done, rec);
                return;
        }
        rec->conn = conn;
        fp_pool_connect_done(&sp->pool, rec, 0, NULL);
}

static void connect_now(struct fp_sup_pool *sp, struct fp_record *rec)
{
        int r = sp->driver->connect(sp->sup->event, sp->prepared,
                                    sp->pool.params.connect_timeout_ms, on_connected, rec);
        if (r < 0) {
                log_error_errno(r, "pool %s: cannot start a connect", sp->cfg.name);
                fp_pool_connect_done(&sp->pool, rec, r, "forkpoold cannot start a connect");
        }
}

/* struct fp_pacer.start: a record's connect, its turn come. */
static void pacer_start(void *item, void *ctx)
{
        connect_now(ctx, item);
}

static void op_connect(struct fp_pool *pool, struct fp_record *rec)
{
        struct fp_sup_pool *sp = sup_pool_of(pool);

        fp_pacer_submit(&sp->pacer, rec, sp->cfg.connect_rate, fp_supervisor_now(sp->sup),
                        pool->capacity);
}

static void on_ping_done(void *conn, int error, const char *text, void *userdata)
{
        struct fp_record *rec = userdata;
        (void)conn;
        if (error < 0)
                log_info("pool %s: pre-ping of backend %d failed: %s", rec->pool->params.name,
                         rec->backend_pid, text);
        fp_pool_ping_done(rec->pool, rec, error, text);
}

static void op_ping(struct fp_pool *pool, struct fp_record *rec)
{
        struct fp_sup_pool *sp = sup_pool_of(pool);
        sp->driver->exec(rec->conn, NULL, pool->params.connect_timeout_ms, on_ping_done, rec);
}

static void on_reset(void *conn, bool ok, void *userdata)
{
        struct fp_record *rec = userdata;
        (void)conn;
        fp_pool_reset_done(rec->pool, rec, ok);
}

static void op_reset(struct fp_pool *pool, struct fp_record *rec,
                     const struct fp_release_info *info)
{
        struct fp_release_info report = *info;
        report.keep_statements = pool->params.pool_mode == FP_POOL_MODE_TRANSACTION;
        sup_pool_of(pool)->driver->reset(rec->conn, pool->params.reset_mode, &report,
                                         pool->params.connect_timeout_ms, on_reset, rec);
}

static void op_close(struct fp_pool *pool, struct fp_record *rec, enum fp_close_mode mode)
{
        const struct fp_db_driver *driver = sup_pool_of(pool)->driver;
        static const char *const how[] = {[FP_CLOSE_CLEAN] = "",
                                          [FP_CLOSE_HARD] = " (shut down)",
                                          [FP_CLOSE_FORGET] = " (detached)"};
        log_debug("pool %s: closing backend %d%s", pool->params.name, rec->backend_pid, how[mode]);
        if (mode == FP_CLOSE_FORGET && driver->forget)
                driver->forget(rec->conn);
        else
                driver->close(rec->conn, mode == FP_CLOSE_HARD);
}

static int op_send_lease(struct fp_pool *pool, struct fp_record *rec, struct fp_waiter *w)
{
        const struct fp_db_driver *driver = sup_pool_of(pool)->driver;
        struct fp_msg_lease msg;

        fp_msg_init(&msg.hdr, FP_OP_LEASE, sizeof(msg), w->request_id);
        msg.lease_id = fp_record_lease_id(pool, rec);
        driver->describe(rec->conn, &msg);
        msg.flags &= FP_LEASE_STATEMENTS;
        msg.flags |= (pool->params.reset_mode == FP_RESET_AUTO ? FP_LEASE_TRACK_DIRTY : 0) |
                     (pool->params.pool_class == FP_POOL_PROCESS ? FP_LEASE_STICKY : 0) |
                     (pool->n_waiting > 0 ? FP_LEASE_CONTENDED : 0);
        if (pool->params.pool_mode != FP_POOL_MODE_TRANSACTION) {
                /* Only the drop-in's transaction mode names statements by their content. */
                msg.flags &= ~(uint32_t)FP_LEASE_STATEMENTS;
                memset(&msg.statements, 0, sizeof(msg.statements));
        }
        int r = sup_pool_of(pool)->sup->transport->send_lease(
                w->client, w->request_id, &msg, sizeof(msg), driver->socket(rec->conn));
        if (r < 0)
                log_debug("pool %s: lease to pid %d not delivered: %s", pool->params.name, w->pid,
                          strerror(-r));
        return r;
}

static void op_send_error(struct fp_pool *pool, struct fp_waiter *w, int error, const char *text)
{
        sup_pool_of(pool)->sup->transport->send_error(w->client, w->request_id, error, text);
}

static void op_waiter_done(struct fp_pool *pool, struct fp_waiter *w)
{
        sup_pool_of(pool)->sup->transport->acquire_done(w->client);
}

static struct fp_waiter_list *op_client_waiters(struct fp_pool *pool, void *client)
{
        return sup_pool_of(pool)->sup->transport->client_waiters(client);
}

static uint64_t op_now(struct fp_pool *pool)
{
        return fp_supervisor_now(sup_pool_of(pool)->sup);
}

static uint32_t op_random(struct fp_pool *pool)
{
        (void)pool;
        return (uint32_t)random();
}

/* Events worth a line at echo_pool = true; the rest only at debug. */
static bool event_is_notable(enum fp_event_type type)
{
        return type != FP_EV_CHECKOUT && type != FP_EV_CHECKIN && type != FP_EV_RESET;
}

static void op_event(struct fp_pool *pool, enum fp_event_type type, const struct fp_record *rec,
                     pid_t pid, uint64_t duration_usec, int error)
{
        struct fp_sup_pool *sp = sup_pool_of(pool);
        struct fp_segment *seg = &sp->sup->seg;
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        struct fp_shm_event ev = {
                .time_usec = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u,
                .duration_usec = duration_usec,
                .type = (uint16_t)type,
                .pool = (uint16_t)pool->id,
                .slot = rec ? rec->index : UINT32_MAX,
                .pid = pid,
                .backend_pid = rec ? rec->backend_pid : 0,
                .error = error,
        };
        if (seg->hdr)
                fp_segment_event_write(seg, &ev);
        if (rec && fp_fdstore_active(&sp->sup->fdstore)) {
                /* The event's record, as the pool (ours to change) holds it. */
                struct fp_record *stored = &pool->records[rec->index];
                if (type == FP_EV_CLOSE)
                        fp_fdstore_forget(&sp->sup->fdstore, pool, stored);
                else if (type == FP_EV_CONNECT || type == FP_EV_CHECKOUT || type == FP_EV_CHECKIN)
                        fp_fdstore_save(&sp->sup->fdstore, pool, sp->driver, stored);
        }

        int echo = sp->cfg.echo;
        bool leak = type == FP_EV_LEAK || type == FP_EV_REVOKE;
        if (leak || (echo == 1 && event_is_notable(type)) || echo == 2) {
                enum fp_log_level level = leak ? FP_LOG_WARNING : FP_LOG_INFO;
                struct fp_log_fields fields = {
                        .pool = pool->params.name,
                        .event = fp_event_type_name(type),
                        .slot = rec ? (int)rec->index : -1,
                        .holder_pid = (int)pid,
                        .backend_pid = rec ? rec->backend_pid : 0,
                };
                bool labeled = rec && rec->label[0];
                fp_log_event(
                        level, &fields, "pool %s: %s slot %d pid %d backend %d%s%s%s (%.3f ms)%s%s",
                        pool->params.name, fp_event_type_name(type), fields.slot, (int)pid,
                        fields.backend_pid, labeled ? " label '" : "", labeled ? rec->label : "",
                        labeled ? "'" : "", (double)duration_usec / 1000.0, error ? ": " : "",
                        error ? strerror(-error) : "");
        }
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct fp_sup_pool *sp = userdata;
        (void)s;
        fp_pool_expire(&sp->pool, usec);
        return 0;
}

static void op_deadline_changed(struct fp_pool *pool, uint64_t deadline_usec)
{
        struct fp_sup_pool *sp = sup_pool_of(pool);
        int r;

        if (deadline_usec == UINT64_MAX) {
                if (sp->deadline)
                        sd_event_source_set_enabled(sp->deadline, SD_EVENT_OFF);
                return;
        }
        if (!sp->deadline)
                r = sd_event_add_time(sp->sup->event, &sp->deadline, CLOCK_MONOTONIC, deadline_usec,
                                      1000, on_deadline, sp);
        else {
                r = sd_event_source_set_time(sp->deadline, deadline_usec);
                if (r >= 0)
                        r = sd_event_source_set_enabled(sp->deadline, SD_EVENT_ONESHOT);
        }
        if (r < 0)
                log_error_errno(r, "pool %s: cannot arm the acquire timeout", pool->params.name);
}

static const struct fp_pool_ops pool_ops = {
        .connect = op_connect,
        .ping = op_ping,
        .reset = op_reset,
        .close = op_close,
        .send_lease = op_send_lease,
        .send_error = op_send_error,
        .deadline_changed = op_deadline_changed,
        .now = op_now,
        .event = op_event,
        .random = op_random,
        .waiter_done = op_waiter_done,
        .client_waiters = op_client_waiters,
};

/* --- pools --- */

void fp_sup_pool_params(const struct fp_pool_config *cfg, struct fp_pool_params *ret)
{
        *ret = (struct fp_pool_params){
                .pool_class = cfg->pool_class,
                .pool_mode = cfg->pool_mode,
                .pool_size = cfg->pool_size,
                .max_overflow = cfg->max_overflow,
                .timeout_ms = cfg->timeout_ms,
                .connect_timeout_ms = cfg->connect_timeout_ms,
                .reset_mode = cfg->reset_mode,
                .recycle_ms = cfg->recycle_ms,
                .pre_ping = cfg->pre_ping,
                .use_lifo = cfg->use_lifo,
                .affinity = cfg->affinity,
                .leak_timeout_ms = cfg->leak_timeout_ms,
                .max_lease_time_ms = cfg->max_lease_time_ms,
        };
        snprintf(ret->name, sizeof(ret->name), "%s", cfg->name);
}

/* Frees a pool configuration's URL, wiping the password. */
static void pool_config_release(struct fp_pool_config *cfg)
{
        free(cfg->on_connect);
        cfg->on_connect = NULL;
        fp_url_free(&cfg->url);
        if (cfg->url_text) {
                explicit_bzero(cfg->url_text, strlen(cfg->url_text));
                free(cfg->url_text);
                cfg->url_text = NULL;
        }
}

int fp_sup_pool_set_config(struct fp_sup_pool *sp, struct fp_pool_config *cfg)
{
        const struct fp_db_driver *driver = fp_db_driver_for(&cfg->url);
        void *prepared;

        if (!driver)
                return -EPROTONOSUPPORT;
        if (sp->driver && driver != sp->driver)
                return -EINVAL; /* a pool keeps its kind of database */
        int r = driver->prepare(&cfg->url, &prepared);
        if (r < 0)
                return r;
        /* The old parameters point into the old URL: both go together. */
        if (sp->prepared)
                sp->driver->unprepare(sp->prepared);
        pool_config_release(&sp->cfg);
        sp->cfg = *cfg;
        memset(cfg, 0, sizeof(*cfg));
        sp->driver = driver;
        sp->prepared = prepared;
        return 0;
}

int fp_sup_pool_new(struct fp_supervisor *sup, struct fp_pool_config *cfg, struct fp_sup_pool **ret)
{
        struct fp_sup_pool *sp = calloc(1, sizeof(*sp));
        struct fp_pool_params params;
        int r;

        if (!sp)
                return -ENOMEM;
        sp->sup = sup;
        fp_pacer_init(&sp->pacer, sup->event, pacer_start, sp, sp->cfg.name);
        fp_sup_pool_params(cfg, &params);
        r = fp_sup_pool_set_config(sp, cfg);
        if (r >= 0)
                r = fp_pool_init(&sp->pool, &params, &pool_ops, sp);
        if (r < 0) {
                if (sp->prepared)
                        sp->driver->unprepare(sp->prepared);
                pool_config_release(&sp->cfg);
                free(sp);
                return r;
        }
        sp->pool.id = (uint32_t)sup->n_pools;
        sp->pool.lease_tag = (uint16_t)(sup->lease_tag_base + sp->pool.id);
        /* A TLS session cannot move to another process: off on purpose, and said so. */
        log_info("pool %s: TLS is off: leased connections cannot carry TLS (%s)", sp->cfg.name,
                 sp->driver->tls_off);
        *ret = sp;
        return 0;
}

static void sup_pool_free(struct fp_sup_pool *sp)
{
        sd_event_source_disable_unref(sp->deadline);
        fp_pacer_done(&sp->pacer);
        for (uint32_t i = 0; i < sp->pool.capacity; i++) {
                struct fp_record *rec = &sp->pool.records[i];
                if (rec->conn && rec->in_fdstore && sp->driver->forget)
                        sp->driver->forget(rec->conn); /* lives on in the fd store */
                else if (rec->conn)
                        sp->driver->close(rec->conn, true);
                free(rec->connecting_for);
        }
        fp_pool_done(&sp->pool);
        sp->driver->unprepare(sp->prepared);
        pool_config_release(&sp->cfg);
        free(sp);
}

struct fp_sup_pool *fp_supervisor_find_pool(struct fp_supervisor *sup, const char *name)
{
        for (size_t i = 0; i < sup->n_pools; i++)
                if (!sup->pools[i]->removed && strcmp(sup->pools[i]->cfg.name, name) == 0)
                        return sup->pools[i];
        return NULL;
}

struct fp_sup_pool *fp_supervisor_pool_by_id(struct fp_supervisor *sup, uint32_t tag)
{
        uint16_t id = (uint16_t)(tag - sup->lease_tag_base);
        if (tag > UINT16_MAX || id >= sup->n_pools)
                return NULL;
        return sup->pools[id];
}

/* Whether tag is in the FP_SHM_MAX_POOLS tags from base on (modulo 2^16). */
static bool tag_in_range(uint16_t base, uint16_t tag)
{
        return (uint16_t)(tag - base) < FP_SHM_MAX_POOLS;
}

void fp_supervisor_choose_lease_tags(struct fp_supervisor *sup, const uint16_t *avoid, size_t n)
{
        uint16_t base = 0;
        for (int attempt = 0; attempt < 1000; attempt++) {
                if (getrandom(&base, sizeof(base), 0) != (ssize_t)sizeof(base))
                        base = (uint16_t)(base * 31u + (unsigned)getpid() + (unsigned)attempt);
                bool clash = false;
                for (size_t i = 0; i < n && !clash; i++)
                        clash = tag_in_range(base, avoid[i]);
                if (!clash)
                        break;
        }
        sup->lease_tag_base = base;
        for (size_t i = 0; i < sup->n_pools; i++)
                sup->pools[i]->pool.lease_tag = (uint16_t)(base + sup->pools[i]->pool.id);
}

bool fp_supervisor_pool_allows(const struct fp_supervisor *sup, const struct fp_sup_pool *sp,
                               uid_t uid, gid_t gid, const gid_t *groups, size_t n_groups)
{
        const struct fp_config *g = &sup->cfg;
        const struct fp_pool_config *c = &sp->cfg;

        if (fp_access_privileged(uid))
                return true;
        /* The global lists, as at connect: a reload may have removed this peer since. */
        if (!fp_access_listed(g->allow_uids, g->n_allow_uids, g->allow_gids, g->n_allow_gids, uid,
                              gid, groups, n_groups))
                return false;
        if (c->n_allow_uids == 0 && c->n_allow_gids == 0)
                return true;
        return fp_access_listed(c->allow_uids, c->n_allow_uids, c->allow_gids, c->n_allow_gids, uid,
                                gid, groups, n_groups);
}

bool fp_supervisor_pool_has_idle(const struct fp_sup_pool *sp)
{
        return fp_pool_has_idle_connection(&sp->pool);
}

int fp_supervisor_acquire(struct fp_sup_pool *sp, struct fp_client *client, pid_t pid,
                          uint32_t request_id, int timeout_ms, const char *label,
                          uint64_t prefer_lease_id)
{
        return fp_pool_acquire(&sp->pool, client, pid, request_id, timeout_ms, label,
                               prefer_lease_id);
}

int fp_supervisor_release(struct fp_supervisor *sup, struct fp_client *client, pid_t pid,
                          uint64_t lease_id, const struct fp_release_info *info)
{
        struct fp_sup_pool *sp = fp_supervisor_pool_by_id(sup, fp_lease_id_pool(lease_id));

        if (sp && fp_pool_release(&sp->pool, client, pid, lease_id, info) == 0)
                return 0;
        /* A lease restored from systemd's fd store may carry its pool's old id. */
        for (size_t i = 0; i < sup->n_pools; i++)
                if (fp_pool_release(&sup->pools[i]->pool, client, pid, lease_id, info) == 0)
                        return 0;
        return -ESRCH;
}

int fp_supervisor_cancel(struct fp_supervisor *sup, struct fp_client *client, pid_t pid,
                         uint64_t lease_id)
{
        struct fp_sup_pool *sp = fp_supervisor_pool_by_id(sup, fp_lease_id_pool(lease_id));
        struct fp_record *rec = sp ? fp_pool_find_lease(&sp->pool, lease_id) : NULL;

        if (!rec || rec->holder != client)
                return -ESRCH;
        if (!sp->driver->cancel) {
                log_debug("pool %s: %s connections are cancelled by the worker itself",
                          sp->cfg.name, sp->driver->name);
                return 0;
        }
        int r = sp->driver->cancel(rec->conn);
        if (r < 0)
                log_warning_errno(r, "pool %s: cannot cancel the query of backend %d for pid %d",
                                  sp->cfg.name, rec->backend_pid, pid);
        else
                log_debug("pool %s: cancelling the query of backend %d for pid %d", sp->cfg.name,
                          rec->backend_pid, pid);
        return 0;
}

int fp_supervisor_pin(struct fp_supervisor *sup, struct fp_client *client, pid_t pid,
                      uint64_t lease_id, uint32_t reasons)
{
        struct fp_sup_pool *sp = fp_supervisor_pool_by_id(sup, fp_lease_id_pool(lease_id));
        struct fp_record *rec = sp ? fp_pool_find_lease(&sp->pool, lease_id) : NULL;
        char why[160];

        if (!rec || rec->holder != client)
                return -ESRCH;
        log_debug("pool %s: pid %d pins backend %d (%s)", sp->cfg.name, pid, rec->backend_pid,
                  fp_pin_reasons_text(reasons, why, sizeof(why)));
        fp_pool_set_pin(&sp->pool, rec, reasons);
        return 0;
}

void fp_supervisor_client_arrived(struct fp_supervisor *sup, struct fp_client *client, pid_t pid)
{
        if (!fp_orphans_any(&sup->orphans))
                return;
        for (size_t i = 0; i < sup->n_pools; i++)
                fp_pool_attach_orphans(&sup->pools[i]->pool, client, pid);
}

void fp_supervisor_client_gone(struct fp_supervisor *sup, struct fp_client *client)
{
        for (size_t i = 0; i < sup->n_pools; i++) {
                struct fp_sup_pool *sp = sup->pools[i];
                int n = fp_pool_client_gone(&sp->pool, client);
                if (n > 0)
                        log_info("pool %s: reclaimed %d lease%s of pid %d (connections closed)",
                                 sp->cfg.name, n, n == 1 ? "" : "s", fp_client_pid(client));
        }
}

/* --- the segment --- */

int fp_supervisor_publish_segment(struct fp_supervisor *sup)
{
        char prefix[FP_SHM_NAME_MAX];
        struct fp_segment seg;
        uint32_t n = (uint32_t)sup->n_pools;
        int gid = sup->cfg.n_allow_gids > 0 ? (int)sup->cfg.allow_gids[0] : -1;

        int r = fp_segment_publish(&seg, sup->cfg.socket_path, n, n * FP_SHM_MAX_SLOTS_PER_POOL,
                                   0640, gid);
        if (r < 0) {
                fp_segment_name(sup->cfg.socket_path, prefix);
                return log_error_errno(r, "cannot create the shared segment /dev/shm%s.*", prefix);
        }

        struct fp_segment old = sup->seg;
        sup->seg = seg;
        for (uint32_t i = 0; i < n; i++) {
                struct fp_sup_pool *sp = sup->pools[i];
                struct fp_shm_pool *shm = fp_segment_pool(&seg, i);
                /* A removed pool keeps its record until restart; readers see it marked. */
                if (snprintf(shm->name, sizeof(shm->name), "%s%s", sp->cfg.name,
                             sp->removed ? "~removed" : "") >= (int)sizeof(shm->name))
                        shm->name[sizeof(shm->name) - 2] = '~';
                shm->db_kind = sp->driver->kind;
                shm->slot_base = i * FP_SHM_MAX_SLOTS_PER_POOL;
                shm->slot_count = FP_SHM_MAX_SLOTS_PER_POOL;
                fp_pool_attach_shm(&sp->pool, shm, fp_segment_slot(&seg, shm->slot_base));
        }
        fp_segment_close(&old);
        return 0;
}

/* --- leak control --- */

#define LEASE_CHECK_USEC (250 * 1000)

/* Tells systemd (if it listens) one line about every pool, when that line changes. */
static void notify_status(struct fp_supervisor *sup)
{
        char status[512];
        size_t n = 0;

        for (size_t i = 0; i < sup->n_pools && n < sizeof(status); i++) {
                const struct fp_pool *p = &sup->pools[i]->pool;
                if (sup->pools[i]->removed)
                        continue;
                n += (size_t)snprintf(status + n, sizeof(status) - n,
                                      "%s%s: %d out, %d idle, %d waiting%s", n ? "; " : "",
                                      p->params.name, fp_pool_checkedout(p), fp_pool_checkedin(p),
                                      p->n_waiting, p->paused ? " (paused)" : "");
        }
        if (strcmp(status, sup->last_status) == 0)
                return;
        snprintf(sup->last_status, sizeof(sup->last_status), "%s", status);
        (void)sd_notifyf(0, "STATUS=%s", status);
}

static int on_lease_check(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct fp_supervisor *sup = userdata;
        /* A lease given back on a release channel is not one to revoke. */
        sup->transport->take_releases(sup);
        for (size_t i = 0; i < sup->n_pools; i++)
                fp_pool_check_leases(&sup->pools[i]->pool);
        notify_status(sup);
        sd_event_source_set_time(s, usec + LEASE_CHECK_USEC);
        sd_event_source_set_enabled(s, SD_EVENT_ON);
        return 0;
}

/* --- life cycle --- */

/* True if another supervisor accepts connections on path. */
static bool socket_is_live(const char *path)
{
        int fd = fp_connect_seqpacket(path);
        if (fd < 0)
                return false;
        close(fd);
        return true;
}

/* fp_fdstore_pools.find */
static struct fp_pool *restore_find(void *ctx, const char *name,
                                    const struct fp_db_driver **ret_driver, void **ret_prepared)
{
        struct fp_sup_pool *sp = fp_supervisor_find_pool(ctx, name);
        if (!sp)
                return NULL;
        *ret_driver = sp->driver;
        *ret_prepared = sp->prepared;
        return &sp->pool;
}

/* fp_fdstore_pools.choose_lease_tags */
static void restore_choose_tags(void *ctx, const uint16_t *avoid, size_t n)
{
        fp_supervisor_choose_lease_tags(ctx, avoid, n);
}

/* fp_fdstore_pools.restored_leased */
static void restore_leased(void *ctx, struct fp_pool *pool, uint32_t index, pid_t holder)
{
        struct fp_supervisor *sup = ctx;
        fp_orphans_watch(&sup->orphans, sup->event, pool, index, holder);
}

int fp_supervisor_init(struct fp_supervisor *sup, struct fp_config *cfg,
                       const struct fp_transport *transport)
{
        const struct fp_fdstore_pools restore_pools = {
                .ctx = sup,
                .find = restore_find,
                .choose_lease_tags = restore_choose_tags,
                .restored_leased = restore_leased,
        };
        sigset_t mask;
        int r;

        memset(sup, 0, sizeof(*sup));
        sup->transport = transport;
        sup->listen_fd = -1;
        sup->clients_epfd = -1;
        sup->releases_epfd = -1;
        sup->fdstore.fd = -1;
        LIST_INIT(&sup->clients);
        fp_orphans_init(&sup->orphans);
        sup->cfg = *cfg;
        memset(cfg, 0, sizeof(*cfg));
        fp_log_set_level(sup->cfg.log_level);
        fp_process_raise_fd_limit();

        r = fp_process_drop_privileges(&sup->cfg);
        if (r < 0)
                return r;

        /*
         * Counted while they are all open: the restore below consumes some,
         * and sd_listen_fds() fails on a range with a closed descriptor.
         */
        sup->n_listen_fds = sd_listen_fds(0);
        if (sup->n_listen_fds <= 0 && socket_is_live(sup->cfg.socket_path)) {
                log_error("another forkpoold is already listening on %s", sup->cfg.socket_path);
                return -EADDRINUSE;
        }

        r = sd_event_default(&sup->event);
        if (r < 0)
                return log_error_errno(r, "cannot create the event loop");

        /* Without a restore, no lease of a previous supervisor is still held. */
        fp_supervisor_choose_lease_tags(sup, NULL, 0);
        for (size_t i = 0; i < sup->cfg.n_pools; i++) {
                struct fp_sup_pool *sp;
                r = fp_sup_pool_new(sup, &sup->cfg.pools[i], &sp);
                if (r < 0)
                        return log_error_errno(r, "cannot set up pool %s", sup->cfg.pools[i].name);
                sup->pools[sup->n_pools++] = sp;
        }
        sup->cfg.n_pools = 0; /* the pools own their configuration now */

        r = fp_supervisor_publish_segment(sup);
        if (r < 0)
                return r;
        r = fp_fdstore_init(&sup->fdstore);
        if (r < 0)
                return r;
        /*
         * Before the control socket, which looks for its own among the first
         * sup->n_listen_fds descriptors; it takes $LISTEN_FDS away from the environment.
         */
        r = fp_fdstore_restore(&sup->fdstore, sup->event, &restore_pools);
        if (r > 0)
                log_info("%d connection%s back from systemd's fd store", r, r == 1 ? "" : "s");
        fp_db_drivers_restore_done();

        /* Until the loop runs: SIGTERM, SIGINT and SIGHUP wait for their watchers (main.c). */
        signal(SIGPIPE, SIG_IGN);
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigprocmask(SIG_BLOCK, &mask, NULL);

        r = sup->transport->listen(sup);
        if (r < 0)
                return r;
        r = sd_event_add_time_relative(sup->event, &sup->lease_check, CLOCK_MONOTONIC,
                                       LEASE_CHECK_USEC, 10000, on_lease_check, sup);
        if (r >= 0)
                r = sd_event_source_set_enabled(sup->lease_check, SD_EVENT_ON);
        if (r < 0)
                return log_error_errno(r, "cannot arm the lease checks");

        for (size_t i = 0; i < sup->n_pools; i++) {
                char status[160];
                struct fp_sup_pool *sp = sup->pools[i];
                char url[512];
                fp_url_format_masked(&sp->cfg.url, url, sizeof(url));
                fp_pool_status(&sp->pool, status, sizeof(status));
                log_info("pool %s: %s (max_overflow %d, reset_on_return %s) — %s", sp->cfg.name,
                         url, sp->cfg.max_overflow, fp_reset_mode_name(sp->cfg.reset_mode), status);
        }
        /* WatchdogSec=: sd-event sends WATCHDOG=1 at half the interval while the loop runs. */
        r = sd_event_set_watchdog(sup->event, true);
        if (r < 0)
                log_warning_errno(r, "cannot arm the systemd watchdog");
        log_info("listening on %s%s (segment %s)", sup->cfg.socket_path,
                 sup->socket_activated ? " (socket activation)" : "", sup->seg.name);
        return 0;
}

int fp_supervisor_run(struct fp_supervisor *sup)
{
        (void)sd_notify(0, "READY=1");
        notify_status(sup);
        int r = sd_event_loop(sup->event);
        if (r < 0) {
                log_error_errno(r, "event loop failed");
                return 1;
        }
        return 0;
}

void fp_supervisor_done(struct fp_supervisor *sup)
{
        sup->transport->stop_listening(sup);
        sup->transport->close_all(sup);
        fp_orphans_done(&sup->orphans);
        for (size_t i = 0; i < sup->n_pools; i++)
                sup_pool_free(sup->pools[i]);
        fp_fdstore_done(&sup->fdstore);
        sup->n_pools = 0;
        if (sup->seg.hdr) {
                char name[FP_SHM_NAME_MAX];
                snprintf(name, sizeof(name), "%s", sup->seg.name);
                /*
                 * Readers that keep the old mapping (a long-lived handle's
                 * forkpool_pool_state()) see at once that it is dead and map
                 * the next supervisor's segment instead of counters frozen here.
                 */
                __atomic_store_n(&sup->seg.hdr->obsolete, 1, __ATOMIC_RELEASE);
                fp_segment_close(&sup->seg);
                (void)fp_segment_unlink(name);
        }
        sd_event_source_disable_unref(sup->grace_timer);
        sd_event_source_disable_unref(sup->drain_check);
        sd_event_source_disable_unref(sup->lease_check);
        sup->event = sd_event_unref(sup->event);
        fp_config_free(&sup->cfg);
}
