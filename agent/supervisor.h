/* SPDX-License-Identifier: MIT */
/*
 * supervisor.h — forkpoold's top level: the event loop, the pools and their
 * database connections, the shared segment. control.c serves the control
 * socket on its behalf; shutdown.h stops it, reload.h reloads it, orphan.h
 * watches the holders of restored leases.
 */
#ifndef FORKPOOL_SUPERVISOR_H
#define FORKPOOL_SUPERVISOR_H

#include <stdbool.h>
#include <sys/types.h>
#include <sys/queue.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "driver.h"
#include "fdstore.h"
#include "orphan.h"
#include "pacer.h"
#include "peercount.h"
#include "pool.h"

/* One pool with what it needs to open connections. */
struct fp_sup_pool {
        struct fp_pool pool;
        struct fp_supervisor *sup;
        struct fp_pool_config cfg; /* owns the URL (and its password) */
        const struct fp_db_driver *driver;
        void *prepared;            /* the driver's connect parameters, pointing into cfg.url */
        sd_event_source *deadline; /* the earliest waiter's timeout */
        bool removed;              /* gone from the configuration: draining */
        struct fp_pacer pacer;     /* connect_rate: connects wait here for their turn */
};

struct fp_client;
LIST_HEAD(fp_client_list, fp_client);

/*
 * What the supervisor needs of the transport that serves its clients (the
 * control socket, control.h): it is given one at fp_supervisor_init() and
 * reaches its clients only through it.
 */
struct fp_transport {
        /* Starts accepting clients. Returns 0 or a negative errno (logged). */
        int (*listen)(struct fp_supervisor *sup);
        /* Stops accepting (shutdown): no new client arrives. */
        void (*stop_listening)(struct fp_supervisor *sup);
        /* Closes every client connection (end of shutdown). */
        void (*close_all)(struct fp_supervisor *sup);
        /* Handles every message the clients sent that is still queued; never blocks. */
        void (*read_all)(struct fp_supervisor *sup);
        /*
         * Handles the releases that wait in the clients' release channels
         * (proto.h) before the supervisor looks at who holds what; never
         * blocks, costs the ready channels only.
         */
        void (*take_releases)(struct fp_supervisor *sup);
        /* Sends a lease (msg, len) with the connection's fd. Returns 0 or a negative errno. */
        int (*send_lease)(struct fp_client *client, uint32_t request_id, const void *msg,
                          size_t len, int fd);
        /* Sends an error reply (a failure drops the client later). */
        void (*send_error)(struct fp_client *client, uint32_t request_id, int error,
                           const char *text);
        /* A queued acquire of the client was answered or dropped. */
        void (*acquire_done)(struct fp_client *client);
        /* The list of the client's waiters in every pool (struct fp_pool_ops.client_waiters). */
        struct fp_waiter_list *(*client_waiters)(struct fp_client *client);
};

struct fp_supervisor {
        const struct fp_transport *transport; /* how clients are reached */
        sd_event *event;
        struct fp_config cfg;
        struct fp_segment seg;
        int listen_fd;
        sd_event_source *listen_src;
        struct fp_client_list clients;
        int clients_epfd;                /* the clients' sockets, watched together (control.c) */
        sd_event_source *clients_src;    /* clients_epfd in the event loop */
        int releases_epfd;               /* the clients' release channels, watched together */
        sd_event_source *releases_flush; /* reads the channels soon after a lease went out */
        bool releases_urgent; /* an acquire waits, or stopping: releases_epfd in clients_epfd */
        bool releases_leased; /* a lease went out since releases_flush last ran */
        uint32_t n_acquires_queued; /* the clients' acquires queued in the pools */
        unsigned n_refused;         /* refused clients waiting to read their answer */
        struct fp_peercount conns_by_uid, conns_by_pid; /* served clients (control.c) */
        sd_event_source *accept_retry; /* out of descriptors: accepting resumes at this timer */
        size_t n_pools;
        struct fp_sup_pool *pools[FP_SHM_MAX_POOLS];
        bool stopping;
        sd_event_source *grace_timer;
        sd_event_source *drain_check;
        sd_event_source *lease_check; /* leak_timeout and max_lease_time */
        bool socket_activated;        /* the control socket came from systemd: not ours to remove */
        int n_listen_fds;             /* descriptors systemd passed ($LISTEN_FDS), counted
                                         before the fd store's restore consumed some */
        struct fp_fdstore fdstore;    /* connections kept across restarts (fdstore.h) */
        uint16_t lease_tag_base;      /* pool id i has lease tag base + i
                                         (fp_supervisor_choose_lease_tags) */
        struct fp_orphans orphans;    /* holders of restored leases, not reconnected yet */
        char last_status[512];        /* the last STATUS= sent to systemd */
};

/*
 * Sets up everything from cfg (whose ownership moves to sup): the segment,
 * the pools, the signal handlers, and transport's listener (which sup uses
 * until fp_supervisor_done()). A stale segment or
 * socket left by a crashed supervisor is replaced; a live one is an error.
 * Returns 0 or a negative errno (logged).
 */
int fp_supervisor_init(struct fp_supervisor *sup, struct fp_config *cfg,
                       const struct fp_transport *transport);

/* Runs the event loop until a shutdown completes. Returns the exit code. */
int fp_supervisor_run(struct fp_supervisor *sup);

/* Frees everything, removes the socket and the segment. */
void fp_supervisor_done(struct fp_supervisor *sup);

/* The pool named name that accepts acquires, or NULL. */
struct fp_sup_pool *fp_supervisor_find_pool(struct fp_supervisor *sup, const char *name);

/* The pool with lease tag tag (fp_lease_id_pool() of a lease id), or NULL. O(1). */
struct fp_sup_pool *fp_supervisor_pool_by_id(struct fp_supervisor *sup, uint32_t tag);

/*
 * Gives the pools new lease tags, none of which is in avoid[0..n) (the tags
 * of leases a previous supervisor gave, restored from the fd store): the
 * lease ids this supervisor gives then never equal one a worker still holds
 * from before. The tags are a random base plus the pool's id, so the pools
 * configured later (reload) get theirs without a search. Call before any
 * lease is given.
 */
void fp_supervisor_choose_lease_tags(struct fp_supervisor *sup, const uint16_t *avoid, size_t n);

/*
 * Current CLOCK_MONOTONIC time in microseconds, read now (clock.h): not the
 * loop's wake-up time, which a long or stopped iteration makes stale.
 */
uint64_t fp_supervisor_now(struct fp_supervisor *sup);

/*
 * Whether a client with these credentials may lease from sp now: root and
 * forkpoold's own uid always; others must be in the global allow lists (as
 * checked at connect: they are checked again because a reload may have
 * removed the peer since) and, if the pool has allow lists of its own, in
 * those too. O(length of the lists).
 */
bool fp_supervisor_pool_allows(const struct fp_supervisor *sup, const struct fp_sup_pool *sp,
                               uid_t uid, gid_t gid, const gid_t *groups, size_t n_groups);

/* --- for reload.c: pools made, changed and published --- */

/* The pool parameters a pool configuration asks for. */
void fp_sup_pool_params(const struct fp_pool_config *cfg, struct fp_pool_params *ret);

/*
 * Moves cfg (and the URL it owns) into sp and prepares its driver's connect
 * parameters. On failure sp keeps its previous configuration and cfg is
 * untouched: -EPROTONOSUPPORT (no driver for the URL), -EINVAL (another kind
 * of database than the pool's), or the driver's error.
 */
int fp_sup_pool_set_config(struct fp_sup_pool *sp, struct fp_pool_config *cfg);

/*
 * A new pool of sup from cfg (whose URL it takes), with the next pool id;
 * the caller puts it in sup->pools. Returns 0 or a negative errno.
 */
int fp_sup_pool_new(struct fp_supervisor *sup, struct fp_pool_config *cfg,
                    struct fp_sup_pool **ret);

/*
 * (Re)creates the shared segment for the current pools and attaches every
 * pool to it. Returns 0 or a negative errno (logged).
 */
int fp_supervisor_publish_segment(struct fp_supervisor *sup);

/* Whether sp would hand the next acquire an idle connection now (no connect). O(1). */
bool fp_supervisor_pool_has_idle(const struct fp_sup_pool *sp);

/*
 * Queues client's acquire (request_id; pid as the kernel reported it) in sp
 * (from fp_supervisor_find_pool(), allowed by fp_supervisor_pool_allows()):
 * the answer goes out through the transport, possibly from inside this call.
 * Returns 0, or -ENOMEM (then no answer goes out).
 */
int fp_supervisor_acquire(struct fp_sup_pool *sp, struct fp_client *client, pid_t pid,
                          uint32_t request_id, int timeout_ms, const char *label,
                          uint64_t prefer_lease_id);

/*
 * Releases the lease lease_id that client (pid) holds, with the worker's
 * report: in the pool its id names, else in every pool (a lease restored from
 * the fd store may carry its pool's old id). Returns 0 or -ESRCH (not held).
 */
int fp_supervisor_release(struct fp_supervisor *sup, struct fp_client *client, pid_t pid,
                          uint64_t lease_id, const struct fp_release_info *info);

/*
 * Records that client (pid) pinned the session of its lease lease_id, and
 * why (enum fp_pin_reason), for forkpoolctl (FP_OP_PIN). Returns 0, or
 * -ESRCH if client holds no such lease.
 */
int fp_supervisor_pin(struct fp_supervisor *sup, struct fp_client *client, pid_t pid,
                      uint64_t lease_id, uint32_t reasons);

/*
 * Asks the driver to cancel what the lease lease_id that client (pid) holds
 * is running (FP_OP_CANCEL); never blocks. A driver whose workers cancel by
 * themselves is not asked; a failure is logged. Returns 0, or -ESRCH if
 * client holds no such lease.
 */
int fp_supervisor_cancel(struct fp_supervisor *sup, struct fp_client *client, pid_t pid,
                         uint64_t lease_id);

/* A process connected: it becomes the holder of the restored leases it had. */
void fp_supervisor_client_arrived(struct fp_supervisor *sup, struct fp_client *client, pid_t pid);

/* Called by control.c when a client is gone: reclaims its leases in every pool. */
void fp_supervisor_client_gone(struct fp_supervisor *sup, struct fp_client *client);

/* The pid the kernel reported for the client (SO_PEERCRED); the transport's. */
pid_t fp_client_pid(const struct fp_client *client);

#endif /* FORKPOOL_SUPERVISOR_H */
