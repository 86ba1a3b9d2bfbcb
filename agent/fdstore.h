/* SPDX-License-Identifier: MIT */
/*
 * fdstore.h — restarts that drop nothing: every connection's socket
 * (PostgreSQL and MySQL/MariaDB) is kept in systemd's file-descriptor store
 * (FDSTORE=1, one FDNAME per slot), and what the next supervisor needs to
 * adopt it — the session's BackendKeyData and ParameterStatus values
 * (PostgreSQL) or its handshake values and scramble (MySQL), the slot's state
 * and holder — in a memfd kept there too ("state"). A crash or a restart
 * leaves both with systemd; the next forkpoold gets them back ($LISTEN_FDS,
 * $LISTEN_FDNAMES) and adopts the connections: idle ones return to their
 * pools, leased ones wait for their holders' releases, holders that died
 * meanwhile are reclaimed.
 *
 * Active when $FDSTORE (the unit's FileDescriptorStoreMax=, which systemd 254+
 * sets by itself) is more than 0 and $NOTIFY_SOCKET is set. The state memfd
 * holds session secrets (cancel keys, scrambles): it never leaves forkpoold
 * and systemd.
 */
#ifndef FORKPOOL_FDSTORE_H
#define FORKPOOL_FDSTORE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "driver.h"
#include "pool.h"
#include "savedstate.h"

/* The store of one supervisor. */
struct fp_fdstore {
        int fd;         /* the state memfd, -1 when the store is not in use */
        uint64_t epoch; /* this supervisor's, in its store names (savedstate.h) */
};

/* What fp_fdstore_restore() needs of the pools it restores into. */
struct fp_fdstore_pools {
        void *ctx; /* passed to each operation */
        /*
         * The pool named name that accepts connections, with its driver and
         * the driver's prepared connect parameters; NULL if there is none.
         */
        struct fp_pool *(*find)(void *ctx, const char *name, const struct fp_db_driver **ret_driver,
                                void **ret_prepared);
        /*
         * Gives the pools lease tags none of which is in avoid[0..n), before
         * any connection is restored (fp_supervisor_choose_lease_tags()).
         */
        void (*choose_lease_tags)(void *ctx, const uint16_t *avoid, size_t n);
        /* Slot index of pool came back leased to holder: watch it until it reconnects. */
        void (*restored_leased)(void *ctx, struct fp_pool *pool, uint32_t index, pid_t holder);
};

/* Sets up the store (a new state memfd, given to systemd). Returns 0 or a negative errno. */
int fp_fdstore_init(struct fp_fdstore *store);

/* True when connections are kept in systemd's store. */
bool fp_fdstore_active(const struct fp_fdstore *store);

/*
 * Adopts the connections a previous forkpoold left in the store into pools
 * (their drivers' restore(), on event); the rest are closed (never shut down:
 * a worker may still hold one). Call once, after the pools exist. Returns the
 * number of connections restored.
 */
int fp_fdstore_restore(struct fp_fdstore *store, sd_event *event,
                       const struct fp_fdstore_pools *pools);

/*
 * Records rec's connection (new, leased, returned) of pool, whose driver is
 * driver: its fd is stored on first call. Nothing if the driver cannot save.
 */
void fp_fdstore_save(struct fp_fdstore *store, const struct fp_pool *pool,
                     const struct fp_db_driver *driver, struct fp_record *rec);

/* rec's connection is being closed: it leaves the store. */
void fp_fdstore_forget(struct fp_fdstore *store, const struct fp_pool *pool, struct fp_record *rec);

/* Frees the store's memory (the memfd and the fds stay with systemd). */
void fp_fdstore_done(struct fp_fdstore *store);

#endif /* FORKPOOL_FDSTORE_H */
