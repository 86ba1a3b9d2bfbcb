/* SPDX-License-Identifier: MIT */
/*
 * config.h — forkpoold's configuration: the INI file (parsed with libinih) and
 * the one-pool quick start from the command line.
 *
 *   [forkpool]
 *   socket = /run/forkpool/forkpool.sock
 *   allow_users = www-data, 1001
 *   allow_groups = www-data
 *   log_level = info
 *   shutdown_grace = 10
 *   max_connections_per_uid = 1024
 *   max_connections_per_pid = 32
 *   max_waiting_per_connection = 128
 *   hello_timeout = 5
 *
 *   [pool main]
 *   url = postgresql://app:secret@127.0.0.1:5432/appdb
 *   pool_size = 5
 *   max_overflow = 10
 *   pool_timeout = 30
 *   connect_timeout = 10
 *   reset_on_return = rollback
 *   pool_mode = session
 *
 * Every error is one line naming file:line, the key and why.
 */
#ifndef FORKPOOL_CONFIG_H
#define FORKPOOL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "config_values.h"
#include "log.h"
#include "segment.h"
#include "url.h"

#define FP_CONFIG_ERR_MAX 512

struct fp_pool_config {
        char name[FP_SHM_POOL_NAME_MAX];
        char *url_text;         /* as written; holds the password: never log it */
        struct fp_url url;      /* parsed */
        int pool_size;          /* default 5; 0 = no limit */
        int max_overflow;       /* default 10; -1 = no limit; < -1 rejected */
        int timeout_ms;         /* pool_timeout, default 30 s; seconds with decimals allowed */
        int connect_timeout_ms; /* default 10 s */
        enum fp_reset_mode reset_mode; /* default rollback */
        enum fp_pool_class pool_class; /* poolclass, default queue */
        enum fp_pool_mode pool_mode;   /* default session; transaction: PostgreSQL only */
        int recycle_ms;                /* pool_recycle, default -1 (off) */
        bool pre_ping;                 /* pool_pre_ping, default false */
        bool use_lifo;                 /* pool_use_lifo, default false */
        bool affinity;                 /* pool_affinity, default true */
        int connect_rate;              /* new connections per second, 0 = no limit */
        int echo;                      /* echo_pool: 0 off, 1 true, 2 debug */
        char *on_connect;              /* SQL run on every new connection, or NULL */
        int leak_timeout_ms;           /* 0 = off */
        int max_lease_time_ms;         /* 0 = off */
        size_t n_allow_uids; /* who may lease from this pool (besides root and ourselves); */
        uid_t allow_uids[FP_CONFIG_MAX_IDS]; /* empty: the global allow lists decide */
        size_t n_allow_gids;
        gid_t allow_gids[FP_CONFIG_MAX_IDS];
        int line; /* where the section starts (0 for the command line) */
};

struct fp_config {
        char *path;        /* the file, or NULL for the command line */
        char *socket_path; /* default FORKPOOL_DEFAULT_SOCKET; malloc'd (replace it with
                            * free() + strdup()); NULL only after fp_config_free() or if
                            * fp_config_init() ran out of memory (fp_config_validate()
                            * reports that) */
        size_t n_allow_uids;
        uid_t allow_uids[FP_CONFIG_MAX_IDS];
        size_t n_allow_gids;
        gid_t allow_gids[FP_CONFIG_MAX_IDS];
        size_t n_admin_uids; /* who may run admin commands (besides root and ourselves) */
        uid_t admin_uids[FP_CONFIG_MAX_IDS];
        size_t n_admin_gids;
        gid_t admin_gids[FP_CONFIG_MAX_IDS];
        char *run_user; /* user = NAME: started as root, forkpoold becomes NAME */
        uid_t run_uid;
        gid_t run_gid;
        enum fp_log_level log_level; /* default info */
        int shutdown_grace_ms;       /* default 10 s */
        /* Per-peer limits on the control socket (0 = no limit). */
        int max_connections_per_uid;    /* default 1024 */
        int max_connections_per_pid;    /* default 32 */
        int max_waiting_per_connection; /* acquires queued per connection, default 128 */
        int hello_timeout_ms;           /* first message due within, default 5 s; 0 = off */
        size_t n_pools;
        struct fp_pool_config pools[FP_SHM_MAX_POOLS];
};

/* Fills *cfg with defaults and no pools. */
void fp_config_init(struct fp_config *cfg);

/*
 * Parses the INI file at path into *cfg (initialised by fp_config_init()).
 * Users and groups are resolved by name (getpwnam/getgrnam) or taken as
 * numbers. Returns 0, or -EINVAL/-ENOENT/... with one line in err such as
 * "/etc/forkpool.conf:12: pool_size: not an integer: 'five'".
 * On failure *cfg holds no allocations (it has been freed).
 */
int fp_config_load(struct fp_config *cfg, const char *path, char *err, size_t errlen);

/*
 * Adds or overrides the quick-start pool named "default" from the command
 * line. Any of the optional arguments may be NULL. Returns 0 or -EINVAL with
 * a one-line reason in err (naming the option).
 */
int fp_config_quick_pool(struct fp_config *cfg, const char *url, const char *pool_size,
                         const char *max_overflow, const char *pool_timeout, char *err,
                         size_t errlen);

/*
 * Sets one [pool NAME] key of an existing pool from text, exactly as the file
 * would (used for the quick-start pool's command-line options). Returns 0,
 * -ENOENT (no such pool or key) or -EINVAL with a reason (without the key) in
 * err.
 */
int fp_config_set_pool_key(struct fp_config *cfg, const char *pool, const char *key,
                           const char *value, char *err, size_t errlen);

/*
 * Checks the whole configuration (at least one pool, names unique, ...).
 * Returns 0 or -EINVAL with a one-line reason.
 */
int fp_config_validate(const struct fp_config *cfg, char *err, size_t errlen);

/*
 * Frees everything *cfg owns (wiping passwords) and re-initialises it, except
 * that socket_path is left NULL so that *cfg holds no allocation: call
 * fp_config_init() before using it again. Safe on a zeroed or freed struct.
 */
void fp_config_free(struct fp_config *cfg);

/* The pool configuration named name, or NULL. */
const struct fp_pool_config *fp_config_find_pool(const struct fp_config *cfg, const char *name);

/*
 * Fills *pc with a pool's defaults (pool_size 5, max_overflow 10, …), named
 * name, its section starting at line (0: the command line). *pc holds no
 * allocation afterwards.
 */
void fp_pool_config_defaults(struct fp_pool_config *pc, const char *name, int line);

/* Frees what *pc owns (wiping the URL's password); *pc keeps its other values. */
void fp_pool_config_free(struct fp_pool_config *pc);

#endif /* FORKPOOL_CONFIG_H */
