/* SPDX-License-Identifier: MIT */
/*
 * shutdown.c — how forkpoold stops (shutdown.h).
 */
#include "shutdown.h"

#include <errno.h>
#include <signal.h>

#include <systemd/sd-daemon.h>

#include "log.h"

static bool all_pools_idle(struct fp_supervisor *sup)
{
        for (size_t i = 0; i < sup->n_pools; i++)
                if (fp_pool_busy(&sup->pools[i]->pool) > 0)
                        return false;
        return true;
}

/* Runs after every event while stopping: exits once nothing is in use. */
static int on_drain_check(sd_event_source *s, void *userdata)
{
        struct fp_supervisor *sup = userdata;
        (void)s;
        if (all_pools_idle(sup))
                sd_event_exit(sup->event, 0);
        return 0;
}

static int on_grace_over(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct fp_supervisor *sup = userdata;
        (void)s, (void)usec;
        log_warning("shutdown grace period over: revoking the leases still held");
        for (size_t i = 0; i < sup->n_pools; i++)
                fp_pool_revoke_all(&sup->pools[i]->pool);
        sd_event_exit(sup->event, 0);
        return 0;
}

/* The longest a restart through the fd store waits for resets and pings to finish. */
#define QUIESCE_MAX_MS 5000

/*
 * The connections in the middle of a statement of the supervisor's (a reset,
 * a pre-ping): their replies are still to be read, so they cannot be left to
 * the next supervisor as they are. With abandon, each leaves the fd store (and
 * is closed at exit). Returns how many there are. O(slots): only at shutdown.
 */
static int quiesce_count(struct fp_supervisor *sup, bool abandon)
{
        int n = 0;
        for (size_t i = 0; i < sup->n_pools; i++) {
                struct fp_pool *pool = &sup->pools[i]->pool;
                for (uint32_t j = 0; j < pool->capacity; j++) {
                        struct fp_record *rec = &pool->records[j];
                        if (!rec->conn ||
                            (rec->state != FP_SLOT_RESETTING && rec->state != FP_SLOT_CHECKING))
                                continue;
                        n++;
                        if (abandon && rec->in_fdstore) {
                                log_warning("pool %s: backend %d still %s at the restart: closed",
                                            pool->params.name, rec->backend_pid,
                                            rec->state == FP_SLOT_RESETTING ? "resetting"
                                                                            : "being pinged");
                                fp_fdstore_forget(&sup->fdstore, pool, rec);
                        }
                }
        }
        return n;
}

/*
 * Runs after every event while a restart through the fd store quiesces: reads
 * what the workers sent meanwhile and exits once no connection is mid-statement.
 */
static int on_quiesce_check(sd_event_source *s, void *userdata)
{
        struct fp_supervisor *sup = userdata;
        (void)s;
        sup->transport->read_all(sup);
        if (quiesce_count(sup, false) == 0)
                sd_event_exit(sup->event, 0);
        return 0;
}

static int on_quiesce_over(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct fp_supervisor *sup = userdata;
        (void)s, (void)usec;
        sup->transport->read_all(sup);
        (void)quiesce_count(sup, true);
        sd_event_exit(sup->event, 0);
        return 0;
}

/*
 * Leaves the connections to systemd's fd store for the next start, in a state
 * it can take over: first every release and acquire the workers already sent
 * is handled (a release left unread would leave its slot leased to a live
 * process that let it go), then the resets and pings running finish, or,
 * after QUIESCE_MAX_MS (at most the grace period), their connections are
 * closed: a reply left unread would be read by the next holder.
 */
static void quiesce_for_fdstore(struct fp_supervisor *sup)
{
        sup->transport->read_all(sup);
        if (quiesce_count(sup, false) == 0) {
                sd_event_exit(sup->event, 0);
                return;
        }
        int ms = sup->cfg.shutdown_grace_ms < QUIESCE_MAX_MS ? sup->cfg.shutdown_grace_ms
                                                             : QUIESCE_MAX_MS;
        int r = sd_event_add_post(sup->event, &sup->drain_check, on_quiesce_check, sup);
        if (r >= 0)
                r = sd_event_add_time_relative(sup->event, &sup->grace_timer, CLOCK_MONOTONIC,
                                               (uint64_t)(ms > 0 ? ms : 0) * 1000u, 1000,
                                               on_quiesce_over, sup);
        if (r < 0) {
                log_error_errno(r, "cannot wait for resets and pings; closing them");
                (void)quiesce_count(sup, true);
                sd_event_exit(sup->event, 0);
        }
}

void fp_shutdown_begin(struct fp_supervisor *sup, const char *why)
{
        if (sup->stopping)
                return;
        sup->stopping = true;
        if (fp_fdstore_active(&sup->fdstore)) {
                /*
                 * The connections stay in systemd's fd store for the next start;
                 * leased ones go on under their holders, who give them back to it.
                 */
                (void)sd_notify(0, "STOPPING=1\nSTATUS=stopping: connections kept in the fd "
                                   "store");
                log_info("%s: stopping; connections kept in systemd's fd store", why);
                sup->transport->stop_listening(sup);
                quiesce_for_fdstore(sup);
                return;
        }
        (void)sd_notify(0, "STOPPING=1\nSTATUS=stopping: waiting for leases to come back");
        log_info("%s: stopping (leases held: waiting up to %d ms)", why,
                 sup->cfg.shutdown_grace_ms);
        sup->transport->stop_listening(sup);
        for (size_t i = 0; i < sup->n_pools; i++)
                fp_pool_drain(&sup->pools[i]->pool, -ESHUTDOWN, "forkpoold is shutting down");
        if (all_pools_idle(sup)) {
                sd_event_exit(sup->event, 0);
                return;
        }
        int r = sd_event_add_post(sup->event, &sup->drain_check, on_drain_check, sup);
        if (r >= 0)
                r = sd_event_add_time_relative(sup->event, &sup->grace_timer, CLOCK_MONOTONIC,
                                               (uint64_t)sup->cfg.shutdown_grace_ms * 1000u, 1000,
                                               on_grace_over, sup);
        if (r < 0) {
                log_error_errno(r, "cannot wait for leases; exiting now");
                sd_event_exit(sup->event, 0);
        }
}

static int on_stop_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        (void)s;
        fp_shutdown_begin(userdata, si->ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
        return 0;
}

int fp_shutdown_watch_signals(struct fp_supervisor *sup)
{
        int r = sd_event_add_signal(sup->event, NULL, SIGTERM, on_stop_signal, sup);
        if (r >= 0)
                r = sd_event_add_signal(sup->event, NULL, SIGINT, on_stop_signal, sup);
        if (r < 0)
                return log_error_errno(r, "cannot watch SIGTERM and SIGINT");
        return 0;
}
