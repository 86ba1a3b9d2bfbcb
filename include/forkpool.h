/* SPDX-License-Identifier: MIT */
/*
 * forkpool.h — the one public header of libforkpool.
 *
 * A process links libforkpool to lease a real database connection from the
 * forkpoold supervisor: the connection's socket arrives by descriptor passing
 * and becomes a real PGconn * (PostgreSQL) or MYSQL * (MySQL/MariaDB, with
 * MariaDB Connector/C) in this process. Queries go straight to the database;
 * the supervisor only sees acquire and release.
 *
 * Conventions: every function that can fail returns 0 or a positive value on
 * success and a negative errno on failure; out parameters (ret_*) are written
 * only on success. The library never logs, never aborts, never installs
 * signal handlers and never calls exit().
 *
 * Fork safety: a handle and its leases belong to the process that acquired
 * them. Any call on a lease from another process (for example a child made
 * by fork()) returns -ECHILD and touches nothing; a child that keeps using
 * the same forkpool handle for new acquires gets its own control connection.
 *
 * Every function that returns an int returns -EINVAL for a NULL handle,
 * lease, pool name or out parameter.
 *
 * Threads: one forkpool handle may be shared by the threads of a process.
 * - Acquires on it are served one after another: an acquire waits (within
 *   its timeout) for another thread's acquire to finish. An acquire with
 *   timeout 0 never waits for another thread: while one waits, it is sent
 *   alongside on the same control connection and answered at once (a
 *   connection, or -ETIMEDOUT if its pool has none free and none can be
 *   opened now; -ETIMEDOUT too if the handle has no control connection at
 *   that moment, as during a restart of forkpoold).
 * - Releases, cancels and fork() never wait for an acquire, nor for a
 *   reconnect to a restarting forkpoold (that happens outside the handle's
 *   lock; a release that finds no supervisor is sent to the next one).
 * - A lease (and its PGconn or MYSQL) is used by one thread at a time, like
 *   any PGconn, with one exception: forkpool_cancel() may run on another
 *   thread while one waits for a result. Every call on a lease, cancel
 *   included, must have returned before forkpool_release(),
 *   forkpool_invalidate() or forkpool_detach() of that lease starts: they
 *   free it, and a call still running would use freed memory.
 * - forkpool_close() is called once no other thread uses the handle or its
 *   leases.
 */
#ifndef FORKPOOL_H
#define FORKPOOL_H

#include <stddef.h>

#include "forkpool_version.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * libpq's PGconn and Connector/C's MYSQL, declared as <libpq-fe.h> and
 * <mysql.h> declare them: this header needs neither. Include the client
 * library's own header to use the connection (a repeated identical typedef
 * is valid C11 and C++).
 */
typedef struct pg_conn PGconn;
struct st_mysql;

#if defined(FORKPOOL_BUILDING)
#define FORKPOOL_EXPORT __attribute__((visibility("default")))
#else
#define FORKPOOL_EXPORT
#endif

/*
 * forkpool_version.h (generated from the build's project version) defines
 * FORKPOOL_VERSION_MAJOR, _MINOR, _PATCH, FORKPOOL_VERSION_STRING ("0.1.0")
 * and FORKPOOL_VERSION_NUMBER (major * 10000 + minor * 100 + patch, for
 * #if FORKPOOL_VERSION_NUMBER >= 100). forkpool_version() is the version of
 * the library actually loaded.
 */

/* Where forkpoold listens when neither an argument nor $FORKPOOL_SOCKET says. */
#define FORKPOOL_DEFAULT_SOCKET "/run/forkpool/forkpool.sock"

/* A control connection to one forkpoold (opaque). */
typedef struct forkpool forkpool;

/* One leased connection (opaque). */
typedef struct forkpool_lease forkpool_lease;

/* The library's version string, e.g. "0.1.0". Never NULL. */
FORKPOOL_EXPORT const char *forkpool_version(void);

/*
 * Connects to forkpoold and checks that it speaks this library's protocol.
 * socket_path NULL means $FORKPOOL_SOCKET, else FORKPOOL_DEFAULT_SOCKET.
 * Returns 0 and a new handle in *ret, owned by the caller (forkpool_close()).
 * Errors: -ECONNREFUSED (no supervisor at that path: nothing listens there,
 * or there is no socket at all), -EACCES (this uid/gid is not allowed, by
 * forkpoold or by the socket's permissions), -EUSERS / -EMFILE (this uid /
 * this process already has max_connections_per_uid / _per_pid control
 * connections, or -EMFILE: forkpoold is out of descriptors;
 * forkpool_last_error() says which), -EPROTO (protocol version mismatch),
 * -ETIMEDOUT (the supervisor did not answer within 10 s), -ENAMETOOLONG (the
 * path does not fit a Unix socket address), -ENOMEM, -EINVAL (ret is NULL),
 * or another connect(2) error as a negative errno.
 * Blocks for one round trip to the supervisor.
 */
FORKPOOL_EXPORT int forkpool_open(const char *socket_path, forkpool **ret);

/*
 * Closes the control connection and frees the handle. Leases still held are
 * given up: their connections are closed (never reused) by the supervisor.
 * In a process other than the one that opened the handle, only this
 * process's memory is freed; nothing is written to the parent's sockets.
 * NULL is a no-op.
 */
FORKPOOL_EXPORT void forkpool_close(forkpool *fp);

/*
 * Leases one connection from the named pool. timeout_ms < 0 means the pool's
 * pool_timeout; 0 means "only if one is free or can be opened now".
 * Returns 0 and a new lease in *ret, owned by the caller until
 * forkpool_release() or forkpool_invalidate().
 * Used from a forked child, the handle first opens the child's own control
 * connection (never -ECHILD).
 * Errors: -ETIMEDOUT (none free in time, or connecting to the database took
 * longer than its connect_timeout), -ENOENT (no such pool, or a name longer
 * than a pool name can be), -EACCES (this uid/gid may not lease from the
 * pool), -ECONNREFUSED (no supervisor), -ECONNRESET (the supervisor went away
 * during the call), -EPROTO (protocol mismatch, or the database negotiated
 * TLS), -ESHUTDOWN (the supervisor is stopping), -EHOSTUNREACH (the database
 * could not be reached), -ECONNABORTED (the pool's on_connect hook failed on
 * a new connection), -EBADMSG (the supervisor could not read the request),
 * -EAGAIN (max_waiting_per_connection acquires are already queued on this
 * handle's connection, e.g. earlier ones that gave up waiting), -EINVAL (a
 * NULL argument), -ENOMEM, or an error of forkpool_open() when the
 * control connection had to be reopened. forkpool_last_error() has the
 * supervisor's text for the errors it sent (the database's own message for
 * -EHOSTUNREACH and -ECONNABORTED). Blocks until a connection is leased or
 * the timeout passes.
 */
FORKPOOL_EXPORT int forkpool_acquire(forkpool *fp, const char *pool, int timeout_ms,
                                     forkpool_lease **ret);

/*
 * Like forkpool_acquire(), with a label for the lease (at most 63 bytes; NULL
 * for none): forkpoolctl shows it, and leak_timeout warnings name it.
 * Errors as forkpool_acquire(), plus -EBUSY (an assertion pool's connection is
 * already out; forkpool_last_error() names the holder's pid).
 */
FORKPOOL_EXPORT int forkpool_acquire_labeled(forkpool *fp, const char *pool, int timeout_ms,
                                             const char *label, forkpool_lease **ret);

/*
 * The text of the last error the supervisor sent this thread (for example the
 * database's own connect error), or "" if none. Valid until the next call on
 * the same thread.
 */
FORKPOOL_EXPORT const char *forkpool_last_error(void);

/*
 * A real libpq connection on the leased socket, made on first call and owned
 * by the lease (do not PQfinish it; do not PQreset it; do not use PQcancel,
 * use forkpool_cancel(); do not use it after the release). A PGconn released
 * at rest (no transaction, nothing in flight, its last command not failed,
 * no event procedure of the application's) is kept by the process, on an
 * unconnected socket, and handed out again by this call when the same
 * session comes back to the same process, with libpq's defaults restored
 * (notice hooks, non-blocking mode, error verbosity and context, tracing):
 * the pointer may be the same as an earlier lease's. Returns NULL if the
 * lease is not a PostgreSQL lease, if called from another process, or if
 * adoption failed (errno is set).
 */
FORKPOOL_EXPORT PGconn *forkpool_lease_pg(forkpool_lease *lease);

/*
 * A real MariaDB Connector/C handle (MYSQL *) on the leased socket of a
 * MySQL/MariaDB pool, made on first call and owned by the lease: do not
 * mysql_close() it, do not reconnect it (reconnect is off), do not use
 * mariadb_cancel() (it would shut the shared socket down), use
 * forkpool_cancel(). Its character set, status and capabilities mirror the
 * real session, so escaping, prepared statements, multi-statements (if the
 * pool's URL enables them) and mysql_change_user() work as usual. Returns
 * NULL with errno set: EOPNOTSUPP (not a MySQL lease), ECHILD (another
 * process), EPROTO (this process's client library would negotiate other
 * capabilities than the session has; forkpool_last_error() says which), or
 * the adoption's error.
 */
FORKPOOL_EXPORT struct st_mysql *forkpool_lease_mysql(forkpool_lease *lease);

/*
 * The real session of a MySQL/MariaDB lease as the supervisor handed it
 * over: what a client library that speaks the protocol itself (not
 * Connector/C) needs to take the session over on forkpool_lease_fd() — the
 * server's greeting (version, thread id, capabilities, default collation,
 * scramble) and what the session negotiated and last reported. Versioned
 * like forkpool_pool_stats: the caller sets struct_size (FORKPOOL_MYSQL_SESSION_INIT).
 */
typedef struct forkpool_mysql_session {
        size_t struct_size;                   /* in: sizeof(); out: bytes filled */
        unsigned int thread_id;               /* CONNECTION_ID() */
        unsigned int protocol_version;        /* the greeting's, normally 10 */
        unsigned int server_capabilities;     /* the greeting's 32 capability bits */
        unsigned int server_ext_capabilities; /* MariaDB's extended capabilities */
        unsigned int client_flag;             /* the capabilities the session negotiated */
        unsigned int client_ext_flag;         /* MariaDB extended capabilities negotiated */
        unsigned int server_language;         /* the server's default collation id */
        unsigned int server_status;           /* as the session last reported it */
        unsigned int charset_nr;              /* the connection's collation id */
        char server_version[64];
        char charset[32]; /* the connection's character set name */
        char user[256];   /* the session's user */
        char db[256];     /* the current database, "" if none */
        unsigned char scramble[20];
        /* Fields added by later versions go here, at the end. */
} forkpool_mysql_session;

/* clang-format off */
#define FORKPOOL_MYSQL_SESSION_INIT {.struct_size = sizeof(forkpool_mysql_session)}
/* clang-format on */

/*
 * Fills *ret with the MySQL lease's session (see forkpool_mysql_session):
 * only the fields that fit ret->struct_size, which is left at the bytes
 * filled. Never blocks. Returns 0, -ECHILD (another process), -EOPNOTSUPP
 * (a PostgreSQL lease), -EINVAL (NULL, or a struct_size smaller than this
 * structure's first version).
 */
FORKPOOL_EXPORT int forkpool_lease_mysql_session(const forkpool_lease *lease,
                                                 forkpool_mysql_session *ret);

/*
 * For a MySQL lease used through forkpool_lease_fd() by a client library of
 * its own (no forkpool_lease_mysql()): tells the library the session's state
 * as that client last saw it, at a protocol boundary — the server_status of
 * the last reply, the current database and character set name (NULL: as
 * handed over). The next forkpool_release() reports it to the supervisor
 * (which then skips the ROLLBACK when no transaction is open, and hands the
 * next holder the session as it is) instead of "unknown" (a ROLLBACK, the
 * state as handed over). The caller vouches that the connection is at a
 * protocol boundary. Returns 0, -ECHILD, -EOPNOTSUPP (a PostgreSQL lease, or
 * one adopted by forkpool_lease_mysql(), whose state the library reads
 * itself), -EINVAL (NULL lease, or a name too long).
 */
FORKPOOL_EXPORT int forkpool_lease_mysql_report(forkpool_lease *lease, unsigned int server_status,
                                                const char *db, const char *charset);

/* The leased socket's descriptor (owned by the lease), or -ECHILD, -EINVAL. */
FORKPOOL_EXPORT int forkpool_lease_fd(const forkpool_lease *lease);

/*
 * The database backend's process id of the leased connection (MySQL: its
 * thread id, CONNECTION_ID()), or -ECHILD, -EINVAL.
 */
FORKPOOL_EXPORT int forkpool_lease_backend_pid(const forkpool_lease *lease);

/*
 * Gives the connection back and frees the lease and its PGconn or MYSQL. The
 * caller must be at a protocol boundary (no query running, all results read,
 * not in COPY or pipeline mode); a connection returned elsewhere is closed by
 * the supervisor instead of reused. MySQL statements still prepared are
 * closed on the server (their MYSQL_STMT handles only need
 * mysql_stmt_close() to be freed). No reply is awaited. Returns 0, or -ECHILD
 * (another process: nothing is touched and the lease stays allocated), or
 * -EINVAL (NULL).
 *
 * Blocking: normally one send on the control connection. If that connection
 * was lost (forkpoold restarted), the release first reconnects, which waits
 * for the new supervisor's hello — at most 10 s, and only while a socket
 * (systemd's, during a restart) accepts the connection; if none answers, the
 * release is kept and sent by the next control connection this handle makes.
 * A process pool's (poolclass = process) release runs a blocking ROLLBACK
 * itself when a transaction is open.
 */
FORKPOOL_EXPORT int forkpool_release(forkpool_lease *lease);

/*
 * Like forkpool_release(), but the supervisor closes the connection instead
 * of reusing it (for example after an error that left the session in an
 * unknown state). Same returns.
 */
FORKPOOL_EXPORT int forkpool_invalidate(forkpool_lease *lease);

/*
 * Marks the lease to be closed when it comes back instead of reused (a soft
 * invalidation): it stays usable until forkpool_release(). Returns 0, -ECHILD.
 */
FORKPOOL_EXPORT int forkpool_soft_invalidate(forkpool_lease *lease);

/*
 * Takes the connection out of the pool for good: the lease is freed and the
 * session belongs to the caller — the PGconn returned by forkpool_lease_pg()
 * (finish it with PQfinish(), which ends the session normally) or the MYSQL
 * of forkpool_lease_mysql() (mysql_close()), or, if it was
 * never adopted, the descriptor of forkpool_lease_fd() — outside every limit
 * and count. The supervisor drops its own copy without a byte. Returns 0 or
 * -ECHILD.
 */
FORKPOOL_EXPORT int forkpool_detach(forkpool_lease *lease);

/*
 * Asks the real database server to cancel the query running on the leased
 * connection. May be called from another thread of the acquiring process
 * while one waits for the result, but must return before the lease is
 * released, invalidated or detached (see Threads above). PostgreSQL: a CancelRequest to the
 * server's own address; returns 0 when it was delivered (the query may have
 * finished already), -ECHILD, -EOPNOTSUPP (no cancel key known), or the
 * connect/send error; blocks for at most about 5 s. MySQL: forkpoold sends
 * KILL QUERY from a connection of its own; returns 0 once the request is on
 * its way (no reply is awaited; a later holder's query is never hit by it),
 * -ECHILD, or -ECONNRESET (forkpoold is gone).
 */
FORKPOOL_EXPORT int forkpool_cancel(forkpool_lease *lease);

/*
 * A static English text for err, a negative errno returned by this library:
 * every code the functions above document has its own text, phrased for
 * forkpool; any other errno gets the C library's description (as strerror()
 * gives it, without a locale), anything else "unknown error". A positive
 * errno is read as its negative. Never NULL, never to be freed; thread-safe.
 */
FORKPOOL_EXPORT const char *forkpool_strerror(int err);

/*
 * A pool's load, read from the supervisor's shared segment
 * (forkpool_pool_state()). The caller sets struct_size to
 * sizeof(forkpool_pool_stats) (FORKPOOL_POOL_STATS_INIT does), so that later
 * versions can add fields at the end without breaking programs built
 * against this one: the library fills only the fields that fit in the
 * caller's struct_size, and leaves in struct_size how many bytes it filled
 * (less than the caller's size when the loaded library is older than the
 * header the caller was built with; FORKPOOL_POOL_STATS_HAS() says whether a
 * field was filled).
 */
typedef struct forkpool_pool_stats {
        size_t struct_size;   /* in: sizeof(forkpool_pool_stats); out: bytes filled */
        int pool_size;        /* connections kept open */
        int max_overflow;     /* -1: no limit */
        int checked_out;      /* leased, being reset, checked or connecting */
        int idle;             /* in the pool, ready (or empty slots that reconnect) */
        int waiting;          /* acquires queued right now */
        double oldest_wait_s; /* how long the first of them has waited; 0 if none */
        int paused;           /* 1 while an admin has paused the pool */
        /* Since 0.1 (second layout): */
        int overflow; /* SQLAlchemy's overflow(): the overflow counter (0 if pool_size is 0) */
        char poolclass[16]; /* "queue", "null", "static", "assertion" or "process" */
        /* Fields added by later versions go here, at the end. */
} forkpool_pool_stats;

/* An initialiser: forkpool_pool_stats st = FORKPOOL_POOL_STATS_INIT; */
/* clang-format off */
#define FORKPOOL_POOL_STATS_INIT {.struct_size = sizeof(forkpool_pool_stats)}
/* clang-format on */

/* Whether forkpool_pool_state() filled field of *stats (a pointer). */
#define FORKPOOL_POOL_STATS_HAS(stats, field)                                                      \
        ((stats)->struct_size >=                                                                   \
         offsetof(forkpool_pool_stats, field) + sizeof(((forkpool_pool_stats *)0)->field))

/*
 * Reads pool's current load straight from the shared segment, without asking
 * the supervisor (so a web server can answer 503 before it queues). ret's
 * struct_size must be set (see forkpool_pool_stats). Never blocks; about a
 * microsecond. Works in a forked child too (it maps the segment again).
 * Returns 0, -ENOENT (no such pool, or no complete segment: no supervisor —
 * the segment of one that has exited counts as none — or one still
 * starting), -EPROTO (the segment has another layout version: the
 * running forkpoold is of another version than this library), -EACCES (the
 * segment is not readable by this user), -EAGAIN (the supervisor kept
 * writing; try again), -EINVAL (a NULL argument, or a struct_size smaller
 * than this structure's first version), or another shm_open(3)/mmap(2)
 * error as a negative errno.
 */
FORKPOOL_EXPORT int forkpool_pool_state(forkpool *fp, const char *pool, forkpool_pool_stats *ret);

#ifdef __cplusplus
}
#endif

#endif /* FORKPOOL_H */
