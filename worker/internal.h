/* SPDX-License-Identifier: MIT */
/*
 * internal.h — libforkpool's private types, shared by its modules.
 */
#ifndef FORKPOOL_INTERNAL_H
#define FORKPOOL_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/un.h>

#include "fdutil.h"
#include "forkpool.h"
#include "proto.h"
#include "segment.h"

#define FP_PENDING_RELEASES_MAX 64

/*
 * A lease flag of this library's own, beside the supervisor's enum
 * fp_lease_flags: the releases of this lease ask for FP_RELEASE_CLEAN_DIRTY
 * (its session is tracked and cleaned by what it did, whatever the pool's
 * reset mode). The libpq drop-in sets it on every lease.
 */
#define FP_LEASE_LOCAL_CLEAN_DIRTY (1u << 16)

/*
 * Another of this library's lease flags: the holder keeps the lease's
 * statement set true (the libpq drop-in in transaction mode adds what it
 * prepares), so the release reports it (FP_RELEASE_STATEMENTS).
 */
#define FP_LEASE_LOCAL_STATEMENTS (1u << 17)

/* A handle's cache of released MySQL handles: adopt_mysql.c's, under its own lock. */
struct fp_my_cache;

/*
 * A timeout-0 acquire sent while another thread's acquire holds acquire_lock
 * and reads the control connection: that reader hands its reply over here.
 * Lives on the waiting thread's stack, in forkpool.side (under io_lock).
 */
struct fp_side_wait {
        struct fp_side_wait *next;
        uint32_t request_id;
        bool done;    /* reply holds the answer */
        int lease_fd; /* the descriptor that came with it, or -1 */
        union {
                struct fp_msg_hdr hdr;
                struct fp_msg_error error;
                struct fp_msg_lease lease;
                char bytes[FP_MSG_MAX];
        } reply;
};

/*
 * A control connection, counted while acquires use its descriptor outside
 * io_lock: a connection that is replaced meanwhile (it died) is closed only
 * when its last user is done, so its number cannot come to mean another
 * socket under them. state is users << 1 | retired (atomic).
 */
struct fp_control {
        int fd;
        int release_fd;            /* the release channel (proto.h), -1: none */
        uint32_t channel_releases; /* releases sent on it (io_lock; read atomically) */
        unsigned state;
        int recv_timeout_ms; /* its SO_RCVTIMEO, -1: none (acquire_lock's holder sets it) */
};

struct forkpool {
        struct forkpool *next_handle; /* in the process-wide list, for fork handling */
        pthread_mutex_t acquire_lock; /* one reader of the control connection's replies */
        struct fp_side_wait *side;    /* timeout-0 acquires waiting for a reply (io_lock) */
        pthread_cond_t side_cond;     /* a side reply arrived, or acquire_lock was let go */
        pthread_mutex_t io_lock;      /* fd, pid, the lease list; held briefly */
        char socket_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
        int fd;                 /* control connection (ctl->fd), -1 when not connected */
        struct fp_control *ctl; /* the current control connection, NULL when not connected */
        uint64_t fd_generation; /* incremented for every new control connection */
        /*
         * A release went on the control connection and no lease has arrived
         * since (which would show that forkpoold read it): the next releases
         * go there too, so that forkpoold takes them in the order given.
         */
        bool released_on_control;
        pid_t pid; /* the process the control connection belongs to */
        uint32_t next_request_id;
        struct forkpool_lease *leases;  /* held by this process */
        struct fp_msg_release *pending; /* releases waiting for a supervisor (a restart) */
        size_t n_pending;
        struct fp_segment segment;    /* forkpool_pool_state()'s read-only mapping */
        pid_t segment_pid;            /* the process that mapped it */
        uint64_t segment_checked_ms;  /* CLOCK_MONOTONIC of the last look at the name's inode */
        struct fp_my_cache *my_cache; /* adopt_mysql.c's (NULL: none yet); not under io_lock */
        /* The session this process would like back (fp_prefer_lease), for acquires of that pool. */
        uint64_t prefer_lease_id;
        char prefer_pool[FP_NAME_MAX];
};

/*
 * The link between an adopted PGconn's event procedure and its lease; owned by
 * the PGconn (freed when it is finished), cut when the lease goes away first.
 */
struct fp_session_tracker {
        struct forkpool_lease *lease;
};

struct forkpool_lease {
        struct forkpool_lease *prev, *next;
        forkpool *fp;
        pid_t pid; /* the acquiring process */
        uint64_t lease_id;
        int fd;         /* the leased socket (PQsocket(pg) once adopted) */
        PGconn *pg;     /* the adopted connection, or NULL */
        uint32_t txn;   /* transaction status at hand-over */
        uint32_t flags; /* enum fp_lease_flags */
        uint32_t dirty; /* enum fp_session_dirty, seen so far (TRACK_DIRTY leases) */
        struct fp_session_tracker *tracker; /* TRACK_DIRTY leases once adopted */
        /*
         * The session's protocol-level statements named by their hash (proto.h)
         * while statements_known: from the lease (FP_LEASE_STATEMENTS), kept by
         * a FP_LEASE_LOCAL_STATEMENTS holder; the session tracker empties it at
         * DEALLOCATE ALL and DISCARD ALL and makes it unknown at a DEALLOCATE
         * it cannot place.
         */
        struct fp_stmt_set statements;
        bool statements_known;
        bool soft_invalidated;
        bool in_use; /* a sticky lease between acquire and release */
        /*
         * A cancel or a pin of this lease went on the control connection
         * (atomic: a cancel may come from another thread): its release
         * follows them there, not on the release channel, so that the
         * supervisor reads them first.
         */
        bool spoke_on_control;
        int64_t leased_ms; /* CLOCK_MONOTONIC when the lease arrived */
        /*
         * pg is this library's own (made or taken from the cache by
         * forkpool_lease_pg()), not an application's (the drop-in's): a release
         * may keep it for the session's next lease here (pg_cache.h). Only the
         * lease's holder touches it (flags are read by other threads).
         */
        bool own_pg;
        char pool[FP_NAME_MAX];        /* for the sticky cache */
        uint32_t db_kind;              /* enum fp_db_kind */
        struct fp_lease_pg info;       /* PostgreSQL leases; info.backend_pid for every kind */
        struct st_mysql *my;           /* the adopted MySQL connection, or NULL */
        struct fp_lease_mysql my_info; /* MySQL leases */
        /* A raw MySQL lease's session as its own client reported it (forkpool_lease_mysql_report).
         */
        bool my_reported;
        uint32_t my_rep_status;
        char my_rep_db[FP_MY_IDENT_MAX];
        char my_rep_charset[FP_MY_CHARSET_MAX];
};

/*
 * Makes a real PGconn on lease->fd as adopt/pgadopt.h describes: a
 * private listener plays the server's part of the startup with the session's
 * real ParameterStatus and BackendKeyData, then the real socket is dup3'ed
 * over libpq's. Returns 0 (lease->pg set, lease->fd now libpq's socket) or a
 * negative errno. Serialised process-wide.
 */
int fp_adopt_pg(struct forkpool_lease *lease);

/*
 * Swaps an unconnected socket in under lease->pg and finishes it, so that
 * libpq's Terminate never reaches the server, and closes the real socket.
 */
void fp_abandon_pg(struct forkpool_lease *lease);

/*
 * Watches the results of an adopted PGconn for commands that change the
 * session (SET, LISTEN, PREPARE, CREATE, …) and records them in lease->dirty,
 * for reset_on_return = auto. Costs one string test per result.
 */
int fp_track_pg_session(struct forkpool_lease *lease);

/* Cuts the link between the lease and its PGconn's session tracker (if any). */
void fp_untrack_pg(struct forkpool_lease *lease);

/* Whether conn carries the session tracker (fp_track_pg_session() ran on it once). */
bool fp_pg_tracked(PGconn *conn);

/*
 * Makes conn, adopted by the caller on lease->fd's session (pgadopt.h), the
 * lease's PGconn: lease->fd becomes PQsocket(conn), and for TRACK_DIRTY
 * leases the session tracker (conn's own from an earlier lease, or a new one)
 * records into this lease. Returns 0 or -ENOMEM (conn is the lease's anyway).
 */
int fp_attach_pg(struct forkpool_lease *lease, PGconn *conn);

/*
 * Gives the lease back like forkpool_release() but keeps its PGconn: an
 * unconnected socket is put under it (nothing reaches the session any more)
 * and the caller owns it (to adopt another session into it, or to
 * PQfinish it). Returns the PGconn, or NULL (none adopted: the lease is
 * released all the same; or not this process's lease: nothing is touched).
 */
PGconn *fp_release_keep_pg(struct forkpool_lease *lease);

/*
 * fp_release_keep_pg(), with placeholder (a descriptor of the caller's, or
 * -1 for the unconnected socket) dup3'ed under the PGconn instead.
 */
PGconn *fp_release_keep_pg_on(struct forkpool_lease *lease, int placeholder);

/*
 * fp_release_keep_pg(), also handing the caller a copy of the session
 * parameters the release reported (what the PGconn knows, packed as in
 * fp_msg_release.params): *ret_params is malloc'ed (the caller frees it) and
 * NULL with *ret_params_len 0 when there is none or no memory. Both are set
 * only when a PGconn is returned.
 */
PGconn *fp_release_keep_pg_reporting(struct forkpool_lease *lease, int placeholder,
                                     char **ret_params, uint32_t *ret_params_len);

/*
 * Gives back a lease that was never used (nothing was sent on its session):
 * the supervisor makes it idle again without a reset. Returns 0 or -ECHILD.
 */
int fp_release_unused(struct forkpool_lease *lease);

/*
 * Asks for the session of lease_id (one this process held and gave back) at
 * fp's next acquires from pool: forkpoold hands it out if it is idle and
 * nobody has leased it since (pool_affinity), so an adoption kept here can
 * be reused; lease_id 0 clears it. Only the drop-in asks (for sessions whose
 * PGconn it keeps): a program using the C API gets the pool's own order.
 */
void fp_prefer_lease(forkpool *fp, const char *pool, uint64_t lease_id);

/*
 * A non-blocking acquire: sends the request on fp's control connection
 * (connecting it first if needed: one local round trip) and returns that
 * connection's descriptor, readable once the answer is there, with the
 * request's id in *ret_request_id; or a negative errno.
 */
int fp_acquire_send(forkpool *fp, const char *pool, int timeout_ms, uint32_t *ret_request_id);

/*
 * Collects the answer to fp_acquire_send()'s request without blocking:
 * returns 0 with the lease in *ret, -EAGAIN while it has not arrived, or the
 * acquire's negative errno (forkpool_last_error() has the supervisor's text).
 */
int fp_acquire_recv(forkpool *fp, uint32_t request_id, const char *pool, forkpool_lease **ret);

/*
 * The pool_mode (enum fp_pool_mode) of pool as the supervisor publishes it
 * in its segment, or a negative errno (-ENOENT: no such pool). Never blocks.
 */
int fp_pool_mode(forkpool *fp, const char *pool);

/*
 * Tells the supervisor that the lease's session is pinned to its holder, and
 * why (enum fp_pin_reason), for forkpoolctl; no reply. Returns 0 or a
 * negative errno (the report is lost, nothing else changes).
 */
int fp_pin_report(struct forkpool_lease *lease, uint32_t reasons);

/* The pool_timeout of pool in milliseconds, as its segment record says, or a negative errno. */
int fp_pool_timeout_ms(forkpool *fp, const char *pool);

/* Sends a CancelRequest for the lease's backend to the real server. */
int fp_cancel_pg(const struct forkpool_lease *lease);

/*
 * The same for a release: one dup3 of a cached unconnected socket (checked to
 * still be ours), falling back to fp_neutralize_fd().
 */
int fp_release_socket(int fd);

/* In a child after fork: the modules' process-wide locks start unlocked. */
void fp_adopt_pg_atfork_child(void);
void fp_pool_state_atfork_child(void);

/*
 * Around a fork (the atfork handlers, after every fp->io_lock is taken):
 * prepare takes the MySQL handle caches' lock, so that the child finds every
 * cache whole; parent gives it back; child forgets the parent's cached
 * handles (never reused nor mysql_close()d: their memory is left to the
 * child's exit; only the child's copies of their dummy sockets are closed,
 * which writes nothing) and gives the lock back. child runs only after
 * prepare.
 */
void fp_adopt_mysql_atfork_prepare(void);
void fp_adopt_mysql_atfork_parent(void);
void fp_adopt_mysql_atfork_child(void);

/*
 * Makes a real MYSQL on lease->fd as adopt/myadopt.h describes: a
 * private listener plays the server's part of the handshake with the real
 * session's values and checks the client's capabilities against the
 * session's, then the real socket is dup3'ed over the library's. A handle
 * this process released for the same session (lease_id's pool and slot,
 * thread id, scramble) whose state is still the lease's (server_status,
 * database, character set, user, capabilities, version) is taken from
 * lease->fp's cache instead: lease->fd is dup3'ed over its socket, no
 * handshake. Returns 0
 * (lease->my set, lease->fd now its socket) or a negative errno (-EPROTO: a
 * mismatch, its reason in forkpool_last_error()). Serialised process-wide.
 */
int fp_adopt_mysql(struct forkpool_lease *lease);

/*
 * Swaps an unconnected socket in under lease->my and closes the handle, so
 * that no COM_QUIT reaches the server; closes the real socket.
 */
void fp_abandon_mysql(struct forkpool_lease *lease);

/*
 * Release of an adopted MySQL lease at a boundary (describe_release said so,
 * no invalidation, no detach): swaps the dummy socket in under lease->my and
 * keeps the handle in lease->fp's cache instead of closing it, if it is
 * clean (no error, no statement, ready); the oldest is closed when the cache
 * is full. Otherwise abandons it as fp_abandon_mysql(). Either way no byte
 * can reach the server through it afterwards and lease->my is NULL.
 * Takes fp->io_lock.
 */
void fp_release_mysql_cached(struct forkpool_lease *lease);

/*
 * Closes the handles of fp's cache and frees it (a parent's handles inherited
 * by a fork that bypassed the atfork handlers are only forgotten). Call
 * without fp->io_lock.
 */
void fp_my_cache_close(forkpool *fp);

/* Detach: the caller keeps lease->my; the lease lets go of it. */
void fp_forget_mysql(struct forkpool_lease *lease);

/*
 * Fills a MySQL release: the transaction status, the session report
 * (server_status, database, charset), what changed, and a NOT_AT_BOUNDARY or
 * DISCONNECTED flag. Statements left prepared are closed on the server.
 */
void fp_describe_release_mysql(const struct forkpool_lease *lease, struct fp_msg_release *rel);

/*
 * A process pool's release of an adopted MySQL lease: true if the handle is
 * at a boundary and outside a transaction (rolled back here if needed).
 */
bool fp_sticky_keep_mysql(struct forkpool_lease *lease);

/* Sets the text forkpool_last_error() returns on this thread. */
void fp_set_last_error(const char *text);

#endif /* FORKPOOL_INTERNAL_H */
