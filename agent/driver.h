/* SPDX-License-Identifier: MIT */
/*
 * driver.h — what the supervisor needs from a database driver. Each driver
 * (pgconn.c for PostgreSQL) opens connections without blocking the event
 * loop, resets them after a lease, closes them, and describes them for a
 * lease. A connection object is opaque to everything but its driver.
 */
#ifndef FORKPOOL_DRIVER_H
#define FORKPOOL_DRIVER_H

#include <stdbool.h>
#include <systemd/sd-event.h>

#include "pool.h"
#include "proto.h"
#include "savedstate.h"
#include "url.h"

/*
 * Called once when a connect ends: error 0 with the new connection, or a
 * negative errno with a one-line text (the database's message) and no
 * connection.
 */
typedef void (*fp_db_connect_cb)(void *conn, int error, const char *text, void *userdata);

/* Called once when a reset ends; ok false means the connection must be closed. */
typedef void (*fp_db_reset_cb)(void *conn, bool ok, void *userdata);

/*
 * Called once when fp_db_driver.exec ends: error 0, or a negative errno with
 * the server's one-line message (-ECONNRESET when the connection is dead).
 */
typedef void (*fp_db_exec_cb)(void *conn, int error, const char *text, void *userdata);

struct fp_db_driver {
        const char *name; /* as in URLs and forkpoolctl: "postgresql" */
        enum fp_db_kind kind;
        /* How its connections are kept off TLS, for the pool's start line (a phrase). */
        const char *tls_off;

        /*
         * Derives what connects need from a parsed URL (which must outlive the
         * result). Returns 0 and an object for fp_db_driver.connect in *ret, or
         * a negative errno.
         */
        int (*prepare)(const struct fp_url *url, void **ret);
        /* Frees what prepare made. */
        void (*unprepare)(void *prepared);

        /*
         * Starts a connect; cb runs from the event loop, never from inside this
         * call. Returns 0 or -ENOMEM (then cb never runs).
         */
        int (*connect)(sd_event *event, const void *prepared, int timeout_ms, fp_db_connect_cb cb,
                       void *userdata);
        /*
         * Brings the driver's view of the session up to date with the worker's
         * report and resets it per mode; cb may run from inside this call.
         */
        void (*reset)(void *conn, enum fp_reset_mode mode, const struct fp_release_info *info,
                      int timeout_ms, fp_db_reset_cb cb, void *userdata);
        /* Closes and frees; hard: shut the socket down first (cuts a worker's copy). */
        void (*close)(void *conn, bool hard);
        /*
         * Frees the supervisor's side without sending a byte: the session now
         * belongs to a worker (detach). NULL if the driver cannot.
         */
        void (*forget)(void *conn);
        /*
         * Runs one statement on an idle connection without blocking (sql NULL:
         * the driver's cheapest liveness check, for pool_pre_ping); cb may not
         * run from inside this call. NULL if the driver cannot.
         */
        void (*exec)(void *conn, const char *sql, int timeout_ms, fp_db_exec_cb cb, void *userdata);
        /* The socket to hand to a worker. */
        int (*socket)(const void *conn);
        /* The server's id of the session (backend pid, thread id). */
        int (*backend_id)(const void *conn);
        /* Fills the driver's part of a lease message and its transaction status. */
        void (*describe)(const void *conn, struct fp_msg_lease *msg);
        /*
         * Asks the server, from the supervisor's side, to cancel what the
         * leased session is running (FP_OP_CANCEL); never blocks, never reads
         * the leased connection. Returns 0 when the request is on its way, or
         * a negative errno. NULL if the driver's workers cancel by themselves.
         */
        int (*cancel)(void *conn);
        /*
         * Fills the driver's part of conn's fd-store record (savedstate.h):
         * s->txn and the session values in s->pg or s->my, as the next lease
         * would hand them over. Unlike describe(), it does not count as handing
         * the connection out. NULL if the driver's connections cannot be kept
         * across restarts.
         */
        void (*save)(const void *conn, struct fp_saved_slot *s);
        /*
         * Adopts fd, a session a previous supervisor opened and saved as *s,
         * as a connection of the pool whose prepare() made prepared (leased:
         * s->state is FP_SLOT_LEASED). Takes fd in every case (closed on
         * failure, never shut down: a worker may still hold it). Returns 0 and
         * the connection in *ret, or a negative errno (logged when the reason
         * is the database's).
         */
        int (*restore)(sd_event *event, void *prepared, int fd, const struct fp_saved_slot *s,
                       void **ret);
        /*
         * Called once the fd store's connections are restored: frees what
         * restore() needed and the pool's connections do not (the private
         * adoption listener). NULL if there is nothing.
         */
        void (*restore_done)(void);
};

extern const struct fp_db_driver fp_pg_driver;
extern const struct fp_db_driver fp_my_driver;

/* The driver for a URL's scheme, or NULL. */
const struct fp_db_driver *fp_db_driver_for(const struct fp_url *url);

/* Calls every driver's restore_done(): the fd store's connections are back. */
void fp_db_drivers_restore_done(void);

#endif /* FORKPOOL_DRIVER_H */
