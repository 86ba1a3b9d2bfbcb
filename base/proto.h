/* SPDX-License-Identifier: MIT */
/*
 * proto.h — the control protocol between libforkpool and forkpoold.
 *
 * Transport: one AF_UNIX SOCK_SEQPACKET connection per worker process; one
 * message per datagram, every message starts with struct fp_msg_hdr. A lease
 * reply carries exactly one descriptor (SCM_RIGHTS), and so may a hello: the
 * worker's release channel (FP_HELLO_RELEASE_CHANNEL). No other message
 * carries any, and the supervisor rejects messages that do.
 *
 * The release channel is one end of a SOCK_SEQPACKET socket pair whose other
 * end the worker keeps. Only releases travel on it, and sending one does not
 * wake the supervisor: it reads the channels whenever it wakes for anything
 * else (first of all, before the acquires of the same wake-up), while it
 * hands out leases every FP_RELEASE_FLUSH_MS and twice more after the last,
 * and at once while an acquire waits for a connection or it is stopping. A
 * worker sends there only the release of a lease it held for less than
 * FP_RELEASE_CHANNEL_HOLD_MS, that was not handed out while others waited
 * (FP_LEASE_CONTENDED: it is wanted at once), and of which it sent nothing
 * else (a cancel, a pin) on the control connection: the release of a short lease costs the
 * supervisor no wake-up of its own, and is seen within about twice
 * FP_RELEASE_FLUSH_MS even when nothing else happens; any other goes on the
 * control connection, as do all of them if the channel is full or gone.
 * Releases are taken in the order given, and before the acquires that follow
 * them: an acquire and a release on the control connection say how many
 * releases the worker sent on its channel so far, and the supervisor reads
 * the channel up to there before it handles them; a worker that released on
 * the control connection releases there until a lease arrives (by then the
 * supervisor has read what came before its acquire).
 *
 * Fields are host-endian fixed-width integers: both ends run on the same
 * machine. Strings are NUL-terminated inside fixed arrays. Every message is
 * validated by fp_msg_check() before any field is read.
 */
#ifndef FORKPOOL_PROTO_H
#define FORKPOOL_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define FP_PROTO_MAGIC   0x46504331u /* "FPC1" */
#define FP_PROTO_VERSION 4u          /* 4: the release channel */

#define FP_NAME_MAX    64   /* pool names, including the NUL */
#define FP_IDENT_MAX   64   /* database user and database names, including the NUL */
#define FP_LABEL_MAX   64   /* the caller's label for a lease */
#define FP_ERRTEXT_MAX 256  /* error text in an error reply */
#define FP_PARAMS_MAX  2048 /* packed "name\0value\0" session parameters */
#define FP_MSG_MAX     4096 /* no message is larger */

#define FP_RELEASE_FLUSH_MS        10 /* the supervisor's reading of the release channels */
#define FP_RELEASE_CHANNEL_HOLD_MS 5  /* leases held longer are released on the control socket */

enum fp_op {
        FP_OP_HELLO = 1, /* worker → supervisor; reply FP_OP_HELLO_OK or FP_OP_ERROR */
        FP_OP_HELLO_OK,  /* supervisor → worker */
        FP_OP_ACQUIRE,   /* worker → supervisor; reply FP_OP_LEASE or FP_OP_ERROR */
        FP_OP_LEASE,     /* supervisor → worker, carries the connection's fd */
        FP_OP_RELEASE,   /* worker → supervisor; no reply */
        FP_OP_ERROR,     /* supervisor → worker */
        FP_OP_CANCEL,    /* worker → supervisor: cancel the lease's running query; no reply */
        FP_OP_ADMIN,     /* forkpoolctl → supervisor; reply FP_OP_ADMIN_OK or FP_OP_ERROR */
        FP_OP_ADMIN_OK,  /* supervisor → forkpoolctl */
        FP_OP_PIN,       /* worker → supervisor: the session is pinned, and why; no reply */
};

/*
 * Why a transaction-mode connection of the libpq drop-in keeps its session
 * (FP_OP_PIN): the state it created, which must not be lost.
 */
enum fp_pin_reason {
        FP_PIN_SET = 1u << 0,      /* SET, RESET, set_config(…, false) */
        FP_PIN_LISTEN = 1u << 1,   /* LISTEN */
        FP_PIN_PREPARE = 1u << 2,  /* SQL PREPARE */
        FP_PIN_ADVISORY = 1u << 3, /* a session advisory lock */
        FP_PIN_TEMP = 1u << 4,     /* a temporary table (or other temporary object) */
        FP_PIN_HOLD = 1u << 5,     /* a WITH HOLD cursor */
        FP_PIN_LOAD = 1u << 6,     /* LOAD */
        FP_PIN_OTHER = 1u << 7,    /* other session state (e.g. the connect's client_encoding) */
};

/* Admin commands (FP_OP_ADMIN); only admin uids/gids may send them. */
enum fp_admin_command {
        FP_ADMIN_DISPOSE = 1, /* pool: close idle connections, leased ones on return */
        FP_ADMIN_PAUSE,       /* pool: hand out nothing; leases drain */
        FP_ADMIN_RESUME,      /* pool */
        FP_ADMIN_RELOAD,      /* re-read the configuration file (as SIGHUP) */
        FP_ADMIN_KILL_LEASE,  /* pool, arg = slot: revoke that lease */
};

enum fp_db_kind {
        FP_DB_POSTGRES = 1,
        FP_DB_MYSQL, /* MySQL and MariaDB */
};

/* Transaction status as libpq reports it (PGTransactionStatusType values). */
enum fp_txn {
        FP_TXN_IDLE = 0,
        FP_TXN_ACTIVE = 1,
        FP_TXN_INTRANS = 2,
        FP_TXN_INERROR = 3,
        FP_TXN_UNKNOWN = 4,
};

/* Flags of a release. */
enum fp_release_flags {
        FP_RELEASE_INVALIDATE = 1u << 0,      /* close it, do not reuse */
        FP_RELEASE_NOT_AT_BOUNDARY = 1u << 1, /* returned mid-protocol: close it */
        FP_RELEASE_UNUSED = 1u << 2,          /* a lease the worker never used (stale reply) */
        FP_RELEASE_SOFT_INVALIDATE = 1u << 3, /* usable, but close it now that it is back */
        FP_RELEASE_DISCONNECTED = 1u << 4,    /* the worker saw the server go away */
        FP_RELEASE_DETACH = 1u << 5,          /* the worker keeps the session: forget it */
        FP_RELEASE_CLEAN_DIRTY = 1u << 6,     /* whatever the pool's reset: clean what dirty says */
        FP_RELEASE_STATEMENTS = 1u << 7,      /* statements is the session's set now */
};

/* What the worker saw change in the session (for reset_on_return = auto). */
enum fp_session_dirty {
        FP_DIRTY_PARAMS = 1u << 0,  /* a reported parameter differs from the hand-over */
        FP_DIRTY_SET = 1u << 1,     /* SET / RESET / set_config-like commands ran */
        FP_DIRTY_LISTEN = 1u << 2,  /* LISTEN */
        FP_DIRTY_PREPARE = 1u << 3, /* PREPARE or a protocol-level named statement */
        FP_DIRTY_OBJECTS = 1u << 4, /* CREATE (temporary objects), DECLARE, LOAD, … */
        FP_DIRTY_UNKNOWN = 1u << 5, /* not tracked (raw descriptor use) */
};

/* Flags of a lease. */
enum fp_lease_flags {
        FP_LEASE_TRACK_DIRTY = 1u << 0, /* the pool resets by what changed: report it */
        FP_LEASE_STICKY = 1u << 1,      /* process pool: keep it across releases */
        FP_LEASE_STATEMENTS = 1u << 2,  /* statements is the session's set (transaction mode) */
        FP_LEASE_CONTENDED = 1u << 3,   /* others waited for the pool: release on the connection */
};

#define FP_STMTS_MAX     64 /* statements a session's set holds */
#define FP_STMT_HASH_LEN 16 /* bytes of a statement's hash */

/*
 * The protocol-level named statements the libpq drop-in prepared on a
 * session in transaction mode, by the hash of their content (text and
 * parameter types) that names them on the wire ("fp_" and its hex).
 * forkpoold keeps one per connection; a lease hands it over, a release
 * gives it back as the holder left the session. Each hash is there at most
 * once: forkpoold takes a release whose set repeats one (fp_stmt_set_valid)
 * as malformed and closes the connection (FP_RELEASE_INVALIDATE), as for
 * malformed parameters: the session's statements are then not what any set
 * says, and a closed session holds none.
 */
struct fp_stmt_set {
        uint32_t count; /* hashes used in hash[], <= FP_STMTS_MAX */
        uint32_t reserved;
        uint8_t hash[FP_STMTS_MAX][FP_STMT_HASH_LEN];
};

struct fp_msg_hdr {
        uint32_t magic;
        uint16_t version;
        uint16_t op;
        uint32_t size;       /* of the whole message, header included */
        uint32_t request_id; /* echoed in the reply */
};

/* Flags of a hello and of its answer. */
enum fp_hello_flags {
        /* hello: carries the release channel; hello-ok: it was taken (else it was closed) */
        FP_HELLO_RELEASE_CHANNEL = 1u << 0,
};

struct fp_msg_hello {
        struct fp_msg_hdr hdr;
        int32_t pid;    /* informational; the supervisor trusts SO_PEERCRED */
        uint32_t flags; /* enum fp_hello_flags */
};

struct fp_msg_hello_ok {
        struct fp_msg_hdr hdr;
        int32_t supervisor_pid;
        uint32_t flags; /* enum fp_hello_flags: what the supervisor took */
};

struct fp_msg_acquire {
        struct fp_msg_hdr hdr;
        int32_t timeout_ms; /* < 0: the pool's pool_timeout */
        uint32_t flags;
        char pool[FP_NAME_MAX];
        char label[FP_LABEL_MAX];
        /*
         * The lease id of a session this process held last and would like back
         * (its adopted handle is still here), 0 for none: a hint, honoured when
         * that connection is idle and nobody has leased it since.
         */
        uint64_t prefer_lease_id;
        /* Releases this connection sent on its release channel so far (they go first). */
        uint32_t channel_releases;
        uint32_t reserved;
};

struct fp_msg_error {
        struct fp_msg_hdr hdr;
        int32_t error; /* negative errno */
        uint32_t reserved;
        char text[FP_ERRTEXT_MAX];
};

/* What a worker needs to adopt a PostgreSQL connection (adopt/pgadopt.h). */
struct fp_lease_pg {
        int32_t backend_pid;
        int32_t cancel_key;
        uint32_t has_cancel_key;
        uint32_t server_addr_len; /* 0: unknown, no cancel possible */
        struct sockaddr_storage server_addr;
        char user[FP_IDENT_MAX];
        char dbname[FP_IDENT_MAX];
        uint32_t params_len; /* bytes used in params */
        uint32_t reserved;
        char params[FP_PARAMS_MAX]; /* "name\0value\0" … */
};

#define FP_MY_VERSION_MAX  64  /* server version string, including the NUL */
#define FP_MY_IDENT_MAX    256 /* MySQL user (80 characters) and database (64) names, UTF-8 */
#define FP_MY_CHARSET_MAX  32  /* character set name, including the NUL */
#define FP_MY_SCRAMBLE_LEN 20  /* the session's authentication scramble */

/*
 * What a worker needs to adopt a MySQL/MariaDB connection: the real session's
 * handshake values, mirrored in the greeting its client library reads
 * (adopt/myadopt.h).
 */
struct fp_lease_mysql {
        uint32_t thread_id;
        uint32_t protocol_version;
        uint32_t server_capabilities;     /* the greeting's 32 capability bits */
        uint32_t server_ext_capabilities; /* MariaDB's extended capabilities (greeting) */
        uint32_t client_flag;             /* what the session negotiated */
        uint32_t client_ext_flag;         /* MariaDB extended capabilities negotiated */
        uint32_t server_language;         /* the server's default collation id */
        uint32_t server_status;           /* current, as the session last reported it */
        uint32_t charset_nr;              /* the connection's collation id */
        uint32_t reserved;
        char server_version[FP_MY_VERSION_MAX];
        char charset[FP_MY_CHARSET_MAX]; /* the connection's character set name */
        char user[FP_MY_IDENT_MAX];
        char db[FP_MY_IDENT_MAX]; /* the current database, "" if none */
        uint8_t scramble[FP_MY_SCRAMBLE_LEN];
};

/*
 * Keys of a MySQL release's session report (in fp_msg_release.params):
 * server_status in decimal, the current database and character set.
 */
#define FP_MY_PARAM_STATUS   "server_status"
#define FP_MY_PARAM_DATABASE "database"
#define FP_MY_PARAM_CHARSET  "charset"

struct fp_msg_lease {
        struct fp_msg_hdr hdr;
        uint64_t lease_id; /* pool lease tag << 48 | slot index << 32 | lease generation */
        uint32_t db_kind;  /* enum fp_db_kind */
        uint32_t txn;      /* enum fp_txn at hand-over */
        uint32_t flags;    /* enum fp_lease_flags */
        uint32_t reserved;
        union { /* by db_kind */
                struct fp_lease_pg pg;
                struct fp_lease_mysql my;
        };
        struct fp_stmt_set statements; /* with FP_LEASE_STATEMENTS, else count 0 */
};

/* Asks the supervisor to cancel the query running on a lease the sender holds. */
struct fp_msg_cancel {
        struct fp_msg_hdr hdr;
        uint64_t lease_id;
};

/* The lease's session stays with its holder until the lease ends (enum fp_pin_reason). */
struct fp_msg_pin {
        struct fp_msg_hdr hdr;
        uint64_t lease_id;
        uint32_t reasons; /* enum fp_pin_reason, 0: no longer pinned */
        uint32_t reserved;
};

struct fp_msg_release {
        struct fp_msg_hdr hdr;
        uint64_t lease_id;
        uint32_t flags; /* enum fp_release_flags */
        uint32_t txn;   /* enum fp_txn as the worker last saw it */
        uint32_t params_len;
        uint32_t dirty;            /* enum fp_session_dirty */
        uint32_t channel_releases; /* as in an acquire, on the control connection */
        uint32_t reserved;
        char params[FP_PARAMS_MAX];    /* the session parameters the worker saw */
        struct fp_stmt_set statements; /* with FP_RELEASE_STATEMENTS, else count 0 */
};

_Static_assert(sizeof(struct fp_msg_hdr) == 16, "header layout");
_Static_assert(sizeof(struct fp_msg_lease) <= FP_MSG_MAX, "lease fits a message");
_Static_assert(sizeof(struct fp_msg_release) <= FP_MSG_MAX, "release fits a message");
_Static_assert(sizeof(struct fp_lease_mysql) <= sizeof(struct fp_lease_pg),
               "a MySQL lease does not grow the lease message");
_Static_assert(sizeof(struct fp_msg_cancel) == 24, "cancel layout");
_Static_assert(sizeof(struct fp_msg_pin) == 32, "pin layout");

struct fp_msg_admin {
        struct fp_msg_hdr hdr;
        uint32_t command; /* enum fp_admin_command */
        uint32_t arg;     /* e.g. the slot of FP_ADMIN_KILL_LEASE */
        char pool[FP_NAME_MAX];
};

struct fp_msg_admin_ok {
        struct fp_msg_hdr hdr;
        char text[FP_ERRTEXT_MAX]; /* what was done, one line */
};

/* Fills a header for a message of the given op and size. */
void fp_msg_init(struct fp_msg_hdr *hdr, enum fp_op op, size_t size, uint32_t request_id);

/*
 * Validates a received message of len bytes: magic, version, size field equal
 * to len, a known op, the exact size that op requires, and the count of a
 * lease's or a release's statement set (<= FP_STMTS_MAX). Strings inside are
 * not yet checked (fp_msg_terminated() does that). Returns 0, -EPROTO (bad
 * magic or version), -EBADMSG (size mismatch, a count out of range) or
 * -EOPNOTSUPP (unknown op).
 */
int fp_msg_check(const void *buf, size_t len);

/*
 * Whether set is well formed: count <= FP_STMTS_MAX and no hash twice. One
 * pass, no sort, nothing allocated (an open-addressed table of 2 *
 * FP_STMTS_MAX slots on the stack): cheap enough for every release.
 */
bool fp_stmt_set_valid(const struct fp_stmt_set *set);

/* Whether set holds hash (FP_STMT_HASH_LEN bytes). */
bool fp_stmt_set_has(const struct fp_stmt_set *set, const uint8_t *hash);

/*
 * Adds hash to set. Returns 0 (added, or already there) or -ENOSPC (the set
 * is full: nothing changed).
 */
int fp_stmt_set_add(struct fp_stmt_set *set, const uint8_t *hash);

/* Removes hash from set, if there. */
void fp_stmt_set_remove(struct fp_stmt_set *set, const uint8_t *hash);

/* A short name of an op for logs ("acquire"), or "unknown". */
const char *fp_op_name(uint32_t op);

/*
 * Writes the pin reasons (enum fp_pin_reason) as words separated by ", "
 * ("SET, advisory lock") into buf; "" for none. Returns buf.
 */
char *fp_pin_reasons_text(uint32_t reasons, char *buf, size_t len);

/* True if the fixed array s of n bytes holds a NUL. */
static inline int fp_str_terminated(const char *s, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (s[i] == '\0')
                        return 1;
        return 0;
}

/*
 * Checks that buf[0..len) is a sequence of "name\0value\0" pairs. Returns the
 * number of pairs or -EBADMSG.
 */
int fp_params_check(const char *buf, size_t len);

/*
 * Looks up name in a packed parameter list. Returns the value (pointing into
 * buf) or NULL. buf must have passed fp_params_check().
 */
const char *fp_params_get(const char *buf, size_t len, const char *name);

/*
 * Appends "name\0value\0" to buf (capacity cap, used *len). Returns 0 or
 * -ENOSPC (nothing appended).
 */
int fp_params_add(char *buf, size_t cap, uint32_t *len, const char *name, const char *value);

#endif /* FORKPOOL_PROTO_H */
