/* SPDX-License-Identifier: MIT */

/*
 * How it works.
 *
 * A connection to a pool in transaction mode is connected as in session
 * mode (a lease, adopted into a real PGconn); then its session goes back at
 * once and the PGconn is kept on a placeholder descriptor under the same
 * PQsocket() number (one end of a socketpair whose other end the drop-in
 * keeps open: the idle PGconn neither reads EOF nor becomes readable).
 *
 * The first command on an idle connection leases a session (the one the
 * connection held last, if forkpoold can give it) and dup3()s its socket
 * under the PGconn; the connection gives it back when it is idle again:
 * PQTRANS_IDLE, every result consumed, no pipeline and no COPY in progress,
 * not pinned. libpq's per-connection state is the same for every session of
 * a pool, but for what the drop-in answers itself: PQbackendPID(),
 * PQparameterStatus(), PQgetCancel() describe the session that runs the
 * current transaction (while idle, the last one).
 *
 * State that outlives a transaction pins the session to the connection
 * until PQfinish(): what the session tracker (worker/adopt_pg.c) sees change,
 * less what the statement's text shows to end with the transaction (SET
 * LOCAL, CREATE of a permanent object, DECLARE without WITH HOLD, …).
 *
 * Protocol-level prepared statements do not pin, and each is prepared once
 * per session: the drop-in remembers each named statement (name, text,
 * parameter types) and names it on the wire by its content, "fp_" and the
 * hex of 128 bits of a SHA-256 of its types and text, so a name means one
 * statement on every session and for every connection and process. The
 * lease carries the set of such statements the session holds (forkpoold
 * keeps one per connection of a transaction-mode pool, bounded by
 * FP_STMTS_MAX; the release gives it back, FP_LEASE_LOCAL_STATEMENTS): on a
 * session that has the statement it is executed by that name with no Parse
 * (a PQprepare of it needs no round trip: a made COMMAND_OK answers); on one
 * that lacks it, it is prepared first (PQprepare, one round trip; for the
 * PQsend* paths too, before the command goes out) and added to the set
 * once the server accepted it. A full set, or a pipeline on a session that
 * lacks it, runs it as the unnamed statement, as before. What the drop-in
 * keeps for a command's results (our Parse's answer, a result it made)
 * follows those results, also when a synchronous call discards them unread
 * (tx_discard_unread). The session tracker empties the set at a DEALLOCATE
 * ALL or DISCARD ALL the server completed (tx_event forgets the
 * connection's statements then, not before); forkpoold
 * empties it when the session's statements go (its reset's DISCARD ALL, a
 * release by a holder that does not keep it: DEALLOCATE ALL; a new
 * connection). Our Parse is not the application's state: its
 * FP_DIRTY_PREPARE is taken back (tx_parse), so it neither pins nor makes
 * reset_on_return = auto discard the session. DEALLOCATE of one name only
 * forgets the connection's name: the session keeps the statement for any
 * connection that prepares the same text. Why not per connection (the
 * application's name on the wire): two connections would then prepare the
 * same text twice on one session, and a name on a session would say
 * nothing about its text.
 *
 * A lease that fails (timeout, no supervisor, the database down) makes the
 * command fail as a query does (PGRES_FATAL_ERROR, forkpool's reason in
 * PQresultErrorMessage() and PQerrorMessage(); PQsend* return 0); the
 * PGconn stays CONNECTION_OK for the next try.
 */
/*
 * txmode.c — transaction pooling in the drop-in (pool_mode = transaction;
 * its entry points for dropin.c are declared in dropin.h): the command
 * entry points of libpq, replaced so that a transaction-mode connection
 * leases a session when a command starts and gives it back when it is idle
 * again. For every other connection each is one atomic load (no
 * transaction-mode connection in the process) or one table look-up, then
 * the real function.
 */
#include "dropin.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "cancel.h"
#include "clock.h"
#include "realpq.h"
#include "selfpid.h"

FP_REALPQ_DECLARE(PQexec);
FP_REALPQ_DECLARE(PQexecParams);
FP_REALPQ_DECLARE(PQprepare);
FP_REALPQ_DECLARE(PQexecPrepared);
FP_REALPQ_DECLARE(PQdescribePrepared);
FP_REALPQ_DECLARE(PQdescribePortal);
FP_REALPQ_DECLARE(PQsendQuery);
FP_REALPQ_DECLARE(PQsendQueryParams);
FP_REALPQ_DECLARE(PQsendPrepare);
FP_REALPQ_DECLARE(PQsendQueryPrepared);
FP_REALPQ_DECLARE(PQsendDescribePrepared);
FP_REALPQ_DECLARE(PQsendDescribePortal);
FP_REALPQ_DECLARE(PQgetResult);
FP_REALPQ_DECLARE(PQenterPipelineMode);
FP_REALPQ_DECLARE(PQexitPipelineMode);
FP_REALPQ_DECLARE(PQpipelineStatus);
FP_REALPQ_DECLARE(PQtransactionStatus);
FP_REALPQ_DECLARE(PQisBusy);
FP_REALPQ_DECLARE(PQbackendPID);
FP_REALPQ_DECLARE(PQmakeEmptyPGresult);
FP_REALPQ_DECLARE(PQresultAlloc);
FP_REALPQ_DECLARE(PQresultSetInstanceData);
FP_REALPQ_DECLARE(PQresultInstanceData);
FP_REALPQ_DECLARE(PQresultErrorMessage);
FP_REALPQ_DECLARE(PQresultErrorField);
FP_REALPQ_DECLARE(PQresultStatus);
FP_REALPQ_DECLARE(PQclear);
FP_REALPQ_DECLARE(PQcmdStatus);
FP_REALPQ_DECLARE(PQconsumeInput);
FP_REALPQ_DECLARE(PQflush);
FP_REALPQ_DECLARE(PQsetSingleRowMode);

/* "fp_" and the hex of a statement's hash: its name on the wire. */
#define TX_WIRE_NAME_MAX (3 + 2 * FP_STMT_HASH_LEN + 1)

/* A named protocol-level statement the application prepared on the connection. */
struct tx_statement {
        struct tx_statement *next;
        char *name;
        char *text;
        int n_params;
        Oid *types;                     /* n_params, or NULL */
        uint8_t hash[FP_STMT_HASH_LEN]; /* of text and types (tx_statement_hash) */
        char wire[TX_WIRE_NAME_MAX];    /* its name on every session */
};

struct txmode {
        int sock;                        /* PQsocket(): the same number throughout */
        bool pinned;                     /* the session stays until PQfinish() */
        uint32_t pin_reasons;            /* enum fp_pin_reason: what pinned it */
        uint32_t dirty_known;            /* the lease's dirty bits already judged */
        uint32_t persist;                /* what the commands sent since the lease may leave */
        bool failed;                     /* a command failed since the lease */
        uint64_t last_lease_id;          /* the session to ask back */
        struct fp_lease_pg info;         /* the current (or last) session's hand-over values */
        struct dropin_cancel_cell *cell; /* what this connection's cancel objects cancel */
        struct tx_statement *statements;
        /* A result the drop-in made without a round trip: PQgetResult()'s next one. */
        PGresult *stash;
        /* A Parse of parse_hash is in flight: its result says whether the session has it. */
        bool parse_sent;
        /* A statement went out under its wire name: its error may say the set is wrong. */
        bool wire_sent;
        uint8_t parse_hash[FP_STMT_HASH_LEN];
        uint32_t parse_dirty; /* the lease's FP_DIRTY_PREPARE before it (ours is no dirt) */
        /*
         * A command sent while no session was free: the acquire waits on a
         * control connection whose descriptor is under sock meanwhile, and the
         * command goes out when the lease arrives.
         */
        bool pending;
        /*
         * While every control connection the process may open carries an acquire
         * (max_connections_per_pid), a pending command waits in the process: a
         * periodic timer is under sock instead and each wake-up tries again,
         * until queue_deadline_ms.
         */
        int queue_timer; /* -1: not queued */
        int64_t queue_deadline_ms;
        struct tx_deferred *deferred;
        bool deferred_failed; /* its lease failed: PQgetResult gives error, then NULL */
        char error[600];      /* why the last lease failed, "…\n"; "" if it did not */
};

/* A PQsend* call waiting for its session: its arguments, copied. */
enum tx_deferred_kind {
        TX_SEND_QUERY,
        TX_SEND_PARAMS,
        TX_SEND_PREPARE,  /* PQsendPrepare() */
        TX_SEND_PREPARED, /* PQsendQueryPrepared() of a remembered statement */
};
struct tx_deferred {
        enum tx_deferred_kind kind;
        bool named; /* hash names the statement (a PQsendPrepare() with a name, PREPARED) */
        uint8_t hash[FP_STMT_HASH_LEN];
        char *text;
        int n_types; /* types[]: the statement's parameter types, as prepared */
        Oid *types;
        int n_params; /* values[], lengths[], formats[]: the call's parameters */
        char **values;
        int *lengths;
        int *formats;
        int result_format;
};

/* Transaction-mode connections in the process: 0 lets every entry point skip the look-up. */
static atomic_size_t txmode_count;

/*
 * The placeholder: one end of a socketpair whose other end stays open, dup3'ed
 * under idle connections. Made once per process (a child keeps its parent's:
 * nobody writes on it).
 */
static pthread_mutex_t placeholder_lock = PTHREAD_MUTEX_INITIALIZER;
static int placeholder_pair[2] = {-1, -1};

static int placeholder_fd(void)
{
        pthread_mutex_lock(&placeholder_lock);
        if (placeholder_pair[0] < 0 &&
            socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, placeholder_pair) <
                    0)
                placeholder_pair[0] = placeholder_pair[1] = -1;
        int fd = placeholder_pair[0];
        pthread_mutex_unlock(&placeholder_lock);
        return fd;
}

/*
 * Inside one of the entry points below on this thread: the real libpq calls
 * its own exported functions (PQexec calls PQsendQuery and PQgetResult),
 * which reach these again and must pass straight through.
 */
static __thread unsigned tx_inside;

void txmode_suspend(bool on)
{
        if (on)
                tx_inside++;
        else
                tx_inside--;
}

/* The entry of a transaction-mode connection, or NULL (also inside an entry point). */
static struct dropin_conn *tx_find(const PGconn *conn)
{
        if (atomic_load_explicit(&txmode_count, memory_order_relaxed) == 0 || tx_inside)
                return NULL;
        struct dropin_conn *d = dropin_find(conn);
        return d && d->tx ? d : NULL;
}

static void tx_statement_forget_all(struct txmode *tx);

/*
 * The event procedure whose instance data on a result is the drop-in's error
 * text. It also sees every result the server sends a transaction-mode
 * connection as libpq makes it (inside PQexec() too, and for each statement
 * of a multi-statement text): a DEALLOCATE ALL or DISCARD ALL the server
 * completed forgets the connection's statements, and only then (one that
 * fails, in an aborted transaction say, leaves them as the server does).
 */
static int tx_event(PGEventId id, void *info, void *pass_through)
{
        (void)pass_through;
        if (id != PGEVT_RESULTCREATE)
                return 1;
        const PGEventResultCreate *created = info;
        struct dropin_conn *d = dropin_find(created->conn);
        if (!d || !d->tx || FP_REAL(PQresultStatus)(created->result) != PGRES_COMMAND_OK)
                return 1;
        const char *tag = FP_REAL(PQcmdStatus)(created->result);
        if (tag && (strcmp(tag, "DEALLOCATE ALL") == 0 || strcmp(tag, "DISCARD ALL") == 0))
                tx_statement_forget_all(d->tx);
        return 1;
}

/* --- which statements leave state behind the transaction --- */

/* Whether word (lower case) starts s at a word boundary, case-insensitively. */
static bool word_is(const char *s, const char *word)
{
        size_t n = strlen(word);
        return strncasecmp(s, word, n) == 0 && !isalnum((unsigned char)s[n]) && s[n] != '_';
}

/* s after blanks and the word there. */
static const char *next_word(const char *s)
{
        while (isalnum((unsigned char)*s) || *s == '_')
                s++;
        while (isspace((unsigned char)*s))
                s++;
        return s;
}

/* Whether the statement [s, end) holds needle, case-insensitively. */
static bool stmt_has(const char *s, const char *end, const char *needle)
{
        size_t n = strlen(needle);
        for (; s + n <= end; s++)
                if (strncasecmp(s, needle, n) == 0)
                        return true;
        return false;
}

/*
 * Beside enum fp_session_dirty's bits: state the statement's text shows for
 * certain that the session tracker cannot see (its command tag says SELECT):
 * it pins unless the command failed.
 */
#define TX_UNSEEN (1u << 31)

/*
 * What a statement may leave is enum fp_session_dirty's bits (the session
 * tracker's classes) in the low byte, and the enum fp_pin_reason it would
 * pin for shifted by TX_REASON_SHIFT.
 */
#define TX_REASON_SHIFT           8
#define TX_DIRTY_MASK             0xffu
#define TX_PERSIST(dirty, reason) ((dirty) | (uint32_t)(reason) << TX_REASON_SHIFT)
#define TX_ALL                                                                                     \
        TX_PERSIST(FP_DIRTY_SET | FP_DIRTY_LISTEN | FP_DIRTY_PREPARE | FP_DIRTY_OBJECTS,           \
                   FP_PIN_OTHER)

/* What one statement, [s, end), may leave in the session beyond its transaction. */
static uint32_t stmt_persist(const char *s, const char *end)
{
        for (;;) {
                while (s < end && isspace((unsigned char)*s))
                        s++;
                if (s + 1 < end && s[0] == '/' && s[1] == '*') {
                        const char *close = s + 2;
                        while (close + 1 < end && !(close[0] == '*' && close[1] == '/'))
                                close++;
                        if (close + 1 >= end)
                                return TX_ALL; /* an unterminated comment: no telling */
                        s = close + 2;
                } else if (s + 1 < end && s[0] == '-' && s[1] == '-') {
                        while (s < end && *s != '\n')
                                s++;
                } else {
                        break;
                }
        }
        if (s >= end)
                return 0;
        if (word_is(s, "set")) {
                const char *w = next_word(s);
                return word_is(w, "local") || word_is(w, "transaction") || word_is(w, "constraints")
                               ? 0
                               : TX_PERSIST(FP_DIRTY_SET, FP_PIN_SET);
        }
        if (word_is(s, "reset"))
                return 0; /* back to the session's defaults: PHP's pg_pconnect() sends RESET ALL */
        if (word_is(s, "listen"))
                return TX_PERSIST(FP_DIRTY_LISTEN, FP_PIN_LISTEN);
        if (word_is(s, "prepare"))
                return TX_PERSIST(FP_DIRTY_PREPARE, FP_PIN_PREPARE);
        if (word_is(s, "load"))
                return TX_PERSIST(FP_DIRTY_OBJECTS, FP_PIN_LOAD);
        if (word_is(s, "declare"))
                return stmt_has(s, end, "with hold") ? TX_PERSIST(FP_DIRTY_OBJECTS, FP_PIN_HOLD)
                                                     : 0;
        if (word_is(s, "create")) {
                const char *w = next_word(s);
                if (word_is(w, "or"))
                        w = next_word(next_word(w)); /* OR REPLACE */
                if (word_is(w, "global") || word_is(w, "local"))
                        w = next_word(w);
                /* CREATE TEMP TABLE … AS reports "SELECT n": the tracker cannot see it. */
                return word_is(w, "temp") || word_is(w, "temporary")
                               ? TX_PERSIST(FP_DIRTY_OBJECTS, FP_PIN_TEMP) | TX_UNSEEN
                               : 0;
        }
        static const char *const ends_with_transaction[] = {
                "alter", "drop",   "discard",  "deallocate", "unlisten",  "begin",   "commit",
                "abort", "start",  "rollback", "end",        "savepoint", "release", "truncate",
                "grant", "revoke", "comment",  "analyze",    "vacuum",    "lock",    "notify",
        };
        static const char *const queries[] = {
                "select", "with",    "values",  "insert", "update", "delete", "merge", "table",
                "show",   "explain", "execute", "fetch",  "move",   "close",  "copy",  "call",
        };
        for (size_t i = 0; i < sizeof(ends_with_transaction) / sizeof(ends_with_transaction[0]);
             i++)
                if (word_is(s, ends_with_transaction[i]))
                        return 0;
        bool query = false;
        for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]) && !query; i++)
                query = word_is(s, queries[i]);
        if (!query)
                return TX_ALL; /* a statement not known here: what the tracker sees pins */
        /* A query: session advisory locks and set_config(…, false) show in its text. */
        uint32_t p = 0;
        if (stmt_has(s, end, "pg_advisory_lock") || stmt_has(s, end, "pg_try_advisory_lock"))
                p |= TX_PERSIST(FP_DIRTY_OBJECTS, FP_PIN_ADVISORY);
        if (stmt_has(s, end, "set_config") && !stmt_has(s, end, "true)"))
                p |= TX_PERSIST(FP_DIRTY_SET, FP_PIN_SET);
        if (stmt_has(s, end, "into temp"))
                p |= TX_PERSIST(FP_DIRTY_OBJECTS, FP_PIN_TEMP) | TX_UNSEEN; /* SELECT … INTO TEMP */
        return p;
}

/*
 * What sql may leave in the session beyond its transaction (enum
 * fp_session_dirty bits); every bit when the text cannot be split safely
 * (dollar quoting).
 */
static uint32_t sql_persist(const char *sql)
{
        const uint32_t all = TX_ALL;
        uint32_t p = 0;
        if (!sql)
                return all;
        const char *start = sql, *s = sql;
        for (; *s; s++) {
                if (*s == '$' && (s == sql || !isalnum((unsigned char)s[-1])) &&
                    (s[1] == '$' || isalpha((unsigned char)s[1])))
                        return all;
                if (*s == '\'' || *s == '"') {
                        char q = *s;
                        for (s++; *s && *s != q; s++)
                                ;
                        if (!*s)
                                break;
                } else if (s[0] == '-' && s[1] == '-') {
                        while (*s && *s != '\n')
                                s++;
                        if (!*s)
                                break;
                } else if (*s == ';') {
                        p |= stmt_persist(start, s);
                        start = s + 1;
                }
        }
        return p | stmt_persist(start, s);
}

/* --- leasing and giving back --- */

static void tx_settle(struct dropin_conn *d);
static int tx_install(struct dropin_conn *d, forkpool_lease *lease);
static PGresult *tx_error_result(struct dropin_conn *d);

/* Records why a lease failed; the command's result says it too. */
static void tx_set_error(struct dropin_conn *d, const char *text)
{
        snprintf(d->tx->error, sizeof(d->tx->error), "%s\n", text);
}

/* Frees tx's deferred command, if any. */
static void tx_deferred_free(struct txmode *tx)
{
        struct tx_deferred *c = tx->deferred;
        if (!c)
                return;
        for (int i = 0; c->values && i < c->n_params; i++)
                free(c->values[i]);
        free(c->values);
        free(c->lengths);
        free(c->formats);
        free(c->types);
        free(c->text);
        free(c);
        tx->deferred = NULL;
}

/* A copy of n items of size each at p (NULL for NULL or none); *ok false if out of memory. */
static void *tx_copy(const void *p, size_t n, size_t size, bool *ok)
{
        if (!p || n == 0)
                return NULL;
        void *copy = malloc(n * size);
        if (copy)
                memcpy(copy, p, n * size);
        else
                *ok = false;
        return copy;
}

/*
 * Copies a PQsend* call's arguments into tx->deferred: n_types types, and
 * n_params values (lengths and formats say which are binary, as libpq reads
 * them). Returns 0 or -ENOMEM.
 */
static int tx_defer(struct txmode *tx, enum tx_deferred_kind kind, const uint8_t *hash,
                    const char *text, int n_types, const Oid *types, int n_params,
                    const char *const *values, const int *lengths, const int *formats,
                    int result_format)
{
        bool ok = true;
        size_t n = n_params > 0 ? (size_t)n_params : 0;
        struct tx_deferred *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        tx->deferred = c;
        c->kind = kind;
        c->n_types = n_types > 0 ? n_types : 0;
        c->n_params = n_params;
        c->result_format = result_format;
        c->named = hash != NULL;
        if (hash)
                memcpy(c->hash, hash, sizeof(c->hash));
        c->text = text ? strdup(text) : NULL;
        ok = !text || c->text;
        c->types = tx_copy(types, (size_t)c->n_types, sizeof(Oid), &ok);
        c->lengths = tx_copy(lengths, n, sizeof(int), &ok);
        c->formats = tx_copy(formats, n, sizeof(int), &ok);
        if (values && n) {
                c->values = calloc(n, sizeof(char *));
                ok = ok && c->values;
                for (size_t i = 0; ok && i < n; i++) {
                        if (!values[i])
                                continue;
                        bool binary = formats && formats[i] == 1;
                        size_t len = binary && lengths ? (size_t)lengths[i] : strlen(values[i]) + 1;
                        c->values[i] = tx_copy(values[i], len ? len : 1, 1, &ok);
                }
        }
        if (!ok) {
                tx_deferred_free(tx);
                return -ENOMEM;
        }
        return 0;
}

static int tx_send_prepare(struct dropin_conn *d, const uint8_t *hash, const char *text,
                           int n_params, const Oid *types);
static int tx_send_prepared(struct dropin_conn *d, const uint8_t *hash, const char *text,
                            int n_types, const Oid *types, int n_params, const char *const *values,
                            const int *lengths, const int *formats, int result_format);

/* Sends tx's deferred command on the session now under the PGconn. Returns libpq's 1 or 0. */
static int tx_send_deferred(struct dropin_conn *d)
{
        const struct tx_deferred *c = d->tx->deferred;
        PGconn *conn = d->conn;
        int ok;
        switch (c->kind) {
        case TX_SEND_QUERY:
                ok = FP_REAL(PQsendQuery)(conn, c->text);
                break;
        case TX_SEND_PARAMS:
                ok = FP_REAL(PQsendQueryParams)(conn, c->text, c->n_params, c->types,
                                                (const char *const *)c->values, c->lengths,
                                                c->formats, c->result_format);
                break;
        case TX_SEND_PREPARED:
                ok = tx_send_prepared(d, c->hash, c->text, c->n_types, c->types, c->n_params,
                                      (const char *const *)c->values, c->lengths, c->formats,
                                      c->result_format);
                break;
        default:
                ok = tx_send_prepare(d, c->named ? c->hash : NULL, c->text, c->n_types, c->types);
                break;
        }
        /* The application was told it was sent: whatever libpq buffered goes out now. */
        while (ok && FP_REAL(PQflush)(conn) == 1) {
                struct pollfd p = {.fd = d->tx->sock, .events = POLLOUT};
                (void)poll(&p, 1, 1000);
        }
        return ok;
}

/* Whether an acquire that could not start (r) may wait in the process for a control connection. */
static bool tx_queueable(int r)
{
        return r == -EMFILE || r == -ENFILE || r == -EAGAIN || r == -EUSERS;
}

/*
 * Leaves d's command waiting in the process for a control connection (see
 * struct txmode): a periodic timer under PQsocket(). Returns 0 or a negative
 * errno (nothing changed).
 */
static int tx_queue(struct dropin_conn *d, forkpool *fp)
{
        struct txmode *tx = d->tx;
        int64_t deadline;
        int t = dropin_queue_timer(d, fp, &deadline);
        if (t < 0)
                return t;
        if (dup3(t, tx->sock, O_CLOEXEC) < 0) {
                int r = -errno;
                close(t);
                return r;
        }
        tx->queue_timer = t;
        tx->queue_deadline_ms = deadline;
        return 0;
}

/* Reads the timer's expirations (it is readable again at the next one). */
static void tx_timer_drain(int timer)
{
        uint64_t ticks;
        ssize_t n = read(timer, &ticks, sizeof(ticks));
        (void)n;
}

/* Stops d's queue timer (the caller puts another descriptor under PQsocket()). */
static void tx_unqueue(struct txmode *tx)
{
        if (tx->queue_timer >= 0)
                close(tx->queue_timer);
        tx->queue_timer = -1;
}

/*
 * A queued command: tries again to start its acquire (block: until it
 * starts or its deadline). Returns 0 (started, or not queued), -EAGAIN
 * (still queued; only without block) or a negative errno with its reason in
 * text.
 */
static int tx_queue_retry(struct dropin_conn *d, bool block, char *text, size_t cap)
{
        struct txmode *tx = d->tx;
        while (tx->queue_timer >= 0) {
                int64_t left = tx->queue_deadline_ms - fp_monotonic_ms();
                int control = dropin_acquire_send(d, left > 0 ? (int)left : 0, tx->last_lease_id);
                if (control >= 0) {
                        int r = dup3(control, tx->sock, O_CLOEXEC) < 0 ? -errno : 0;
                        tx_unqueue(tx);
                        if (r < 0) {
                                dropin_acquire_abandon(d);
                                snprintf(text, cap, "forkpool: pool \"%s\": %s", d->target.pool,
                                         strerror(-r));
                        }
                        return r;
                }
                if (!tx_queueable(control) || left <= 0) {
                        int r = tx_queueable(control) ? -ETIMEDOUT : control;
                        int ignored;
                        dropin_acquire_error(&d->target,
                                             dropin_main_handle(d->target.socket, &ignored), r,
                                             text, cap);
                        tx_unqueue(tx);
                        return r;
                }
                if (!block) {
                        tx_timer_drain(tx->queue_timer);
                        return -EAGAIN;
                }
                struct pollfd p = {.fd = tx->queue_timer, .events = POLLIN};
                (void)poll(&p, 1, DROPIN_QUEUE_RETRY_MS * 2);
                tx_timer_drain(tx->queue_timer);
        }
        return 0;
}

/*
 * A pending command's lease: collected if it has come (block: waits for it;
 * forkpoold answers by the acquire's timeout), then the command is sent.
 * Returns 0 (not pending any more: sent, or failed with deferred_failed
 * set) or -EAGAIN (still waiting; only without block).
 */
static int tx_pending_complete(struct dropin_conn *d, bool block)
{
        struct txmode *tx = d->tx;
        char text[512];
        forkpool_lease *lease;
        int r;
        if (!tx->pending)
                return 0;
        r = tx_queue_retry(d, block, text, sizeof(text));
        if (r == -EAGAIN)
                return r;
        while (r >= 0) {
                r = dropin_acquire_recv(d, &lease, text, sizeof(text));
                if (r != -EAGAIN)
                        break;
                if (!block)
                        return -EAGAIN;
                struct pollfd p = {.fd = tx->sock, .events = POLLIN};
                (void)poll(&p, 1, 1000);
                r = 0;
        }
        tx->pending = false;
        int ph = placeholder_fd();
        if (r < 0 && (ph < 0 || dup3(ph, tx->sock, O_CLOEXEC) < 0))
                (void)fp_neutralize_fd(tx->sock);
        if (r < 0)
                tx_set_error(d, text);
        else
                r = tx_install(d, lease);
        if (r >= 0) {
                if (tx->deferred->kind != TX_SEND_PREPARE)
                        tx->persist |= sql_persist(tx->deferred->text);
                tx_inside++;
                if (!tx_send_deferred(d)) {
                        snprintf(tx->error, sizeof(tx->error), "%s",
                                 FP_REAL(PQerrorMessage)(d->conn));
                        r = -EIO;
                }
                tx_inside--;
        }
        tx_deferred_free(tx);
        tx->deferred_failed = r < 0;
        if (r < 0) {
                /* Its result, made now: tx->error may say something else before it is read. */
                FP_REAL(PQclear)(tx->stash);
                tx->stash = tx_error_result(d);
        }
        if (r < 0 && d->lease)
                tx_settle(d);
        return 0;
}

/*
 * A child after fork using an inherited connection: a session the parent
 * leased is never used here (its descriptor is replaced by the
 * placeholder); the child leases its own. Returns 0, or -EPROTO if the
 * connection was inside the parent's transaction (unusable here).
 */
static int tx_adopt_in_child(struct dropin_conn *d)
{
        struct txmode *tx = d->tx;
        bool had_lease = d->lease != NULL || tx->pending;
        int ph = placeholder_fd();
        if (had_lease && (ph < 0 || dup3(ph, tx->sock, O_CLOEXEC) < 0))
                (void)fp_neutralize_fd(tx->sock);
        d->lease = NULL; /* the parent's; libforkpool made our copy inert at fork */
        d->wait = NULL;
        d->wait_leased = false;
        d->pid = fp_self_pid();
        bool was_pending = tx->pending;
        tx->pending = false;
        tx_unqueue(tx); /* the child's copy of the timer */
        tx_deferred_free(tx);
        FP_REAL(PQclear)(tx->stash);
        tx->stash = NULL;
        tx->deferred_failed = false;
        tx->parse_sent = false;
        if (FP_REAL(PQtransactionStatus)(d->conn) != PQTRANS_IDLE || tx->pinned || was_pending) {
                tx_set_error(d, "forkpool: this connection was in use by the parent process when "
                                "it forked (a transaction, or a pinned session); open a new one");
                return -EPROTO;
        }
        return 0;
}

/*
 * Puts the session of lease (just acquired) under d's PGconn. Returns 0, or
 * -EPROTO with d->tx->error set (the lease went back unused).
 */
static int tx_install(struct dropin_conn *d, forkpool_lease *lease)
{
        struct txmode *tx = d->tx;
        if (lease->db_kind != FP_DB_POSTGRES || lease->pg ||
            dup3(lease->fd, tx->sock, O_CLOEXEC) < 0) {
                char text[512];
                (void)fp_release_unused(lease);
                dropin_lease_gone(d);
                snprintf(text, sizeof(text), "forkpool: pool \"%s\": the session cannot be used",
                         d->target.pool);
                tx_set_error(d, text);
                return -EPROTO;
        }
        close(lease->fd);
        lease->flags |=
                FP_LEASE_TRACK_DIRTY | FP_LEASE_LOCAL_CLEAN_DIRTY | FP_LEASE_LOCAL_STATEMENTS;
        (void)fp_attach_pg(lease, d->conn);
        d->lease = lease;
        tx->error[0] = '\0';
        tx->dirty_known = 0;
        tx->persist = 0;
        tx->failed = false;
        tx->parse_sent = false;
        tx->last_lease_id = lease->lease_id;
        memcpy(&tx->info, &lease->info, sizeof(tx->info));
        dropin_cancel_cell_set(tx->cell, lease->info.backend_pid, lease->info.cancel_key);
        return 0;
}

/*
 * A connection whose last reset found no session (the database down): tries
 * again. Returns 0 (connected, idle) or -ECONNRESET with d->tx->error set.
 */
static int tx_recover(struct dropin_conn *d)
{
        dropin_reset(d);
        if (d->tx && FP_REAL(PQstatus)(d->conn) == CONNECTION_OK)
                return 0;
        if (d->tx)
                snprintf(d->tx->error, sizeof(d->tx->error), "%s", d->error);
        return -ECONNRESET;
}

/*
 * Before a command: a child's inherited connection adopted, a pending
 * command sent (one at a time, as libpq), a broken connection recovered.
 * Returns 0 or a negative errno with d->tx->error set.
 */
static int tx_ready(struct dropin_conn *d)
{
        if (d->pid != fp_self_pid() && tx_adopt_in_child(d) < 0)
                return -EPROTO;
        if (d->tx->pending)
                (void)tx_pending_complete(d, true);
        if (FP_REAL(PQstatus)(d->conn) == CONNECTION_BAD && tx_recover(d) < 0)
                return -ECONNRESET;
        return 0;
}

/* Makes sure d holds a session. Returns 0, or a negative errno with d->tx->error set. */
static int tx_lease(struct dropin_conn *d)
{
        struct txmode *tx = d->tx;
        char text[512];
        forkpool_lease *lease;
        int r;

        r = tx_ready(d);
        if (r < 0)
                return r;
        if (d->lease)
                return 0;
        forkpool *fp = dropin_main_handle(d->target.socket, &r);
        if (fp)
                r = dropin_acquire(d, fp, d->target.timeout_ms, tx->last_lease_id, &lease);
        if (r < 0) {
                dropin_acquire_error(&d->target, fp, r, text, sizeof(text));
                tx_set_error(d, text);
                return r;
        }
        return tx_install(d, lease);
}

/* Gives d's session back, the placeholder under its PGconn. */
static void tx_give_back(struct dropin_conn *d)
{
        forkpool_lease *lease = d->lease;
        d->lease = NULL;
        dropin_cancel_cell_set(d->tx->cell, 0, 0);
        if (!fp_release_keep_pg_on(lease, placeholder_fd()))
                (void)fp_neutralize_fd(d->tx->sock);
        dropin_lease_gone(d);
}

/*
 * The reasons (enum fp_pin_reason) among what the commands' text named
 * (candidates) that explain the session tracker's classes seen (dirty);
 * FP_PIN_OTHER if none does.
 */
static uint32_t tx_pin_reasons(uint32_t dirty, uint32_t candidates)
{
        static const struct {
                uint32_t reason, dirty;
        } classes[] = {
                {FP_PIN_SET, FP_DIRTY_SET},         {FP_PIN_LISTEN, FP_DIRTY_LISTEN},
                {FP_PIN_PREPARE, FP_DIRTY_PREPARE}, {FP_PIN_ADVISORY, FP_DIRTY_OBJECTS},
                {FP_PIN_TEMP, FP_DIRTY_OBJECTS},    {FP_PIN_HOLD, FP_DIRTY_OBJECTS},
                {FP_PIN_LOAD, FP_DIRTY_OBJECTS},
        };
        uint32_t reasons = 0;
        for (size_t i = 0; i < sizeof(classes) / sizeof(classes[0]); i++)
                if ((candidates & classes[i].reason) && (dirty & classes[i].dirty))
                        reasons |= classes[i].reason;
        return reasons ? reasons : FP_PIN_OTHER;
}

/*
 * After a command (its last result read, or a synchronous call returned):
 * judges what the session tracker saw change (a pin, or state that ended
 * with the transaction), and gives the session back if the connection is
 * idle and not pinned.
 */
static void tx_settle(struct dropin_conn *d)
{
        struct txmode *tx = d->tx;
        forkpool_lease *lease = d->lease;
        if (!lease || d->pid != fp_self_pid())
                return;
        if (FP_REAL(PQstatus)(d->conn) == CONNECTION_BAD) {
                /* The session died (a server restart): it goes back as such, and the PGconn
                 * gets a fresh session now, so the next transaction works. */
                dropin_reset(d);
                return;
        }
        uint32_t fresh = lease->dirty & ~tx->dirty_known;
        uint32_t reasons = 0;
        if ((tx->persist & TX_UNSEEN) && !tx->failed)
                reasons |= FP_PIN_TEMP;
        if (fresh) {
                uint32_t pin = fresh & tx->persist & TX_DIRTY_MASK;
                if (pin)
                        reasons |= tx_pin_reasons(pin, tx->persist >> TX_REASON_SHIFT);
                else
                        lease->dirty &= ~fresh; /* it ended with the transaction */
        }
        if (reasons & ~tx->pin_reasons) {
                tx->pinned = true;
                tx->pin_reasons |= reasons;
                (void)fp_pin_report(lease, tx->pin_reasons);
        }
        tx->dirty_known = lease->dirty;
        if (tx->pinned || FP_REAL(PQtransactionStatus)(d->conn) != PQTRANS_IDLE ||
            FP_REAL(PQisBusy)(d->conn) || FP_REAL(PQpipelineStatus)(d->conn) != PQ_PIPELINE_OFF)
                return;
        tx_give_back(d);
}

/* A failed command's result carrying d's error (PQresultErrorMessage reads it), or NULL. */
static PGresult *tx_error_result(struct dropin_conn *d)
{
        PGresult *res = FP_REAL(PQmakeEmptyPGresult)(d->conn, PGRES_FATAL_ERROR);
        if (!res)
                return NULL;
        size_t n = strlen(d->tx->error) + 1;
        char *copy = FP_REAL(PQresultAlloc)(res, n);
        if (copy) {
                memcpy(copy, d->tx->error, n);
                (void)FP_REAL(PQresultSetInstanceData)(res, tx_event, copy);
        }
        return res;
}

/*
 * Whether a PQsend* call on d must be refused, as libpq refuses a command
 * while the previous one is in progress or its results are unread: here what
 * libpq itself does not know of — a command held back until its session
 * comes (pending), a result the drop-in made (a failed deferred command's
 * error, a prepare that needed no round trip). Outside pipeline mode only.
 * Sets PQerrorMessage() when it refuses; never blocks.
 */
static bool tx_send_refused(struct dropin_conn *d)
{
        struct txmode *tx = d->tx;
        /* A child's copy of the parent's state is not its own: tx_ready() drops it. */
        if (d->pid != fp_self_pid() || !(tx->pending || tx->stash || tx->deferred_failed) ||
            FP_REAL(PQpipelineStatus)(d->conn) != PQ_PIPELINE_OFF)
                return false;
        tx_set_error(d, "another command is already in progress");
        return true;
}

/* Before a command on d whose text is sql (NULL: unknown): a session, and what it may leave. */
static int tx_begin(struct dropin_conn *d, const char *sql)
{
        int r = tx_lease(d);
        if (r < 0)
                return r;
        d->tx->error[0] = '\0'; /* PQerrorMessage() is about this command from here on */
        d->tx->persist |= sql_persist(sql);
        tx_inside++;
        return 0;
}

/* How long a PQsend* waits for a lease before it leaves it pending (a free session's round trip).
 */
#define TX_SEND_WAIT_MS 2

/*
 * Before a PQsend* call on d: like tx_begin(), but when no session is free
 * the acquire is left waiting on a control connection of its own (its
 * descriptor under PQsocket()) and 1 is returned: the caller defers the
 * command (tx_defer), tx_pending_complete() sends it. 0: leased (call
 * tx_end() after the real call); negative errno: failed, d->tx->error says
 * why.
 */
static int tx_begin_send(struct dropin_conn *d, const char *sql)
{
        struct txmode *tx = d->tx;
        forkpool_lease *lease;
        char text[512];
        int r;

        r = tx_ready(d);
        if (r < 0)
                return r;
        if (d->lease)
                return tx_begin(d, sql);
        forkpool *fp = dropin_main_handle(d->target.socket, &r);
        if (!fp) {
                dropin_acquire_error(&d->target, fp, r, text, sizeof(text));
                tx_set_error(d, text);
                return r;
        }
        int control = dropin_acquire_send(d, d->target.timeout_ms, tx->last_lease_id);
        if (control >= 0) {
                /* A free session answers within a round trip: then the command goes out now. */
                struct pollfd p = {.fd = control, .events = POLLIN};
                if (poll(&p, 1, TX_SEND_WAIT_MS) == 1) {
                        r = dropin_acquire_recv(d, &lease, text, sizeof(text));
                        if (r == 0)
                                return tx_install(d, lease) < 0 ? -EPROTO : tx_begin(d, sql);
                        if (r != -EAGAIN) {
                                tx_set_error(d, text);
                                return r;
                        }
                }
        }
        if (control < 0 && tx_queueable(control) && tx_queue(d, fp) == 0) {
                tx->pending = true; /* waits in the process for a control connection */
                tx->deferred_failed = false;
                tx->persist |= sql_persist(sql);
                return 1;
        }
        if (control < 0 || dup3(control, tx->sock, O_CLOEXEC) < 0) {
                if (control >= 0)
                        dropin_acquire_abandon(d);
                dropin_acquire_error(&d->target, fp, control < 0 ? control : -errno, text,
                                     sizeof(text));
                tx_set_error(d, text);
                return control < 0 ? control : -EIO;
        }
        tx->pending = true;
        tx->deferred_failed = false;
        tx->persist |= sql_persist(sql);
        return 1;
}

/* Gives up d's pending acquire and its command; the placeholder goes back under PQsocket(). */
static void tx_pending_cancel(struct dropin_conn *d)
{
        struct txmode *tx = d->tx;
        if (!tx->pending)
                return;
        if (tx->queue_timer >= 0)
                tx_unqueue(tx);
        else
                dropin_acquire_abandon(d);
        tx->pending = false;
        tx_deferred_free(tx);
        int ph = placeholder_fd();
        if (ph < 0 || dup3(ph, tx->sock, O_CLOEXEC) < 0)
                (void)fp_neutralize_fd(tx->sock);
}

/*
 * A PQsend* wrapper whose tx_begin_send() left the command pending, with
 * tx_defer()'s result: returns what the wrapper returns (1, or 0 when the
 * arguments could not be kept: the acquire is given up).
 */
static int tx_deferred(struct dropin_conn *d, int deferred_ok)
{
        if (deferred_ok >= 0)
                return 1;
        tx_pending_cancel(d);
        snprintf(d->tx->error, sizeof(d->tx->error), "forkpool: out of memory\n");
        return 0;
}

/* After the real call that tx_begin() prepared: tx_settle(), or nothing yet (settle false). */
static void tx_end(struct dropin_conn *d, bool settle)
{
        tx_inside--;
        if (settle)
                tx_settle(d);
}

/* --- remembered statements, named on the sessions by their content --- */

/*
 * The hash naming the statement of text with n_params parameter types
 * (types NULL: every one 0, left to the server), into hash: SHA-256 (OpenSSL)
 * of the count, the types and the text, its first FP_STMT_HASH_LEN bytes. Two
 * statements only ever share a name on a session if they are the same.
 * Returns 0 or -EIO.
 */
static int tx_statement_hash(const char *text, int n_params, const Oid *types, uint8_t *hash)
{
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        uint32_t n = n_params > 0 ? (uint32_t)n_params : 0;
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        bool ok = ctx && text && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
                  EVP_DigestUpdate(ctx, &n, sizeof(n)) == 1;
        for (uint32_t i = 0; ok && i < n; i++) {
                uint32_t type = types ? (uint32_t)types[i] : 0;
                ok = EVP_DigestUpdate(ctx, &type, sizeof(type)) == 1;
        }
        ok = ok && EVP_DigestUpdate(ctx, text, strlen(text)) == 1 &&
             EVP_DigestFinal_ex(ctx, md, &len) == 1 && len >= FP_STMT_HASH_LEN;
        EVP_MD_CTX_free(ctx);
        if (!ok)
                return -EIO;
        memcpy(hash, md, FP_STMT_HASH_LEN);
        return 0;
}

/* The wire name of the statement of hash: "fp_" and its hex, into wire. */
static void tx_wire_name(const uint8_t *hash, char wire[TX_WIRE_NAME_MAX])
{
        static const char hex[] = "0123456789abcdef";
        memcpy(wire, "fp_", 3);
        for (size_t i = 0; i < FP_STMT_HASH_LEN; i++) {
                wire[3 + 2 * i] = hex[hash[i] >> 4];
                wire[4 + 2 * i] = hex[hash[i] & 0xf];
        }
        wire[TX_WIRE_NAME_MAX - 1] = '\0';
}

static struct tx_statement *tx_statement_find(const struct txmode *tx, const char *name)
{
        if (!name)
                return NULL;
        for (struct tx_statement *s = tx->statements; s; s = s->next)
                if (strcmp(s->name, name) == 0)
                        return s;
        return NULL;
}

static void tx_statement_free(struct tx_statement *s)
{
        free(s->name);
        free(s->text);
        free(s->types);
        free(s);
}

/* Forgets every remembered statement. */
static void tx_statement_forget_all(struct txmode *tx)
{
        struct tx_statement *next;
        for (struct tx_statement *s = tx->statements; s; s = next) {
                next = s->next;
                tx_statement_free(s);
        }
        tx->statements = NULL;
}

/*
 * Remembers name's statement, whose hash (tx_statement_hash) is hash
 * (replacing one of that name). Returns it, or NULL (out of memory).
 */
static struct tx_statement *tx_statement_put(struct txmode *tx, const char *name, const char *text,
                                             int n_params, const Oid *types, const uint8_t *hash)
{
        struct tx_statement *s = calloc(1, sizeof(*s));
        if (!s)
                return NULL;
        s->name = strdup(name);
        s->text = strdup(text);
        s->n_params = n_params;
        if (types && n_params > 0) {
                s->types = malloc((size_t)n_params * sizeof(Oid));
                if (s->types)
                        memcpy(s->types, types, (size_t)n_params * sizeof(Oid));
        }
        if (!s->name || !s->text || (types && n_params > 0 && !s->types)) {
                tx_statement_free(s);
                return NULL;
        }
        memcpy(s->hash, hash, sizeof(s->hash));
        tx_wire_name(hash, s->wire);
        for (struct tx_statement **p = &tx->statements; *p; p = &(*p)->next)
                if (strcmp((*p)->name, name) == 0) {
                        struct tx_statement *old = *p;
                        *p = old->next;
                        tx_statement_free(old);
                        break;
                }
        s->next = tx->statements;
        tx->statements = s;
        return s;
}

/*
 * "DEALLOCATE [PREPARE] name" of a statement the application remembered on
 * d, sent as SQL: it is forgotten and true is returned (nothing to send: the
 * session keeps its statement under its wire name, for any connection that
 * prepares the same text). Not in an aborted transaction, where the server
 * refuses the command (25P02) and the statement stays: false, the text goes
 * to the server, which says so. "DEALLOCATE ALL" and "DISCARD ALL" go to the
 * server too (false); their success forgets every statement (tx_event) and
 * empties the lease's set (the session tracker).
 */
static bool tx_deallocate(struct dropin_conn *d, const char *sql)
{
        struct txmode *tx = d->tx;
        char name[256];
        size_t n = 0;
        const char *s = sql;
        if (!s)
                return false;
        while (isspace((unsigned char)*s))
                s++;
        if (!word_is(s, "deallocate") || FP_REAL(PQtransactionStatus)(d->conn) == PQTRANS_INERROR)
                return false;
        s = next_word(s);
        if (word_is(s, "prepare"))
                s = next_word(s);
        if (word_is(s, "all"))
                return false;
        bool quoted = *s == '"';
        s += quoted;
        while (*s && n + 1 < sizeof(name) &&
               (quoted ? *s != '"' : (isalnum((unsigned char)*s) || *s == '_')))
                name[n++] = *s++;
        name[n] = '\0';
        s += quoted && *s == '"';
        while (isspace((unsigned char)*s) || *s == ';')
                s++;
        if (*s || !n)
                return false;
        for (struct tx_statement **p = &tx->statements; *p; p = &(*p)->next)
                if (strcmp((*p)->name, name) == 0) {
                        struct tx_statement *old = *p;
                        *p = old->next;
                        tx_statement_free(old);
                        return true;
                }
        return false;
}

/* Whether d's session holds the statement of hash (its lease's set says so). */
static bool tx_session_has(const struct dropin_conn *d, const uint8_t *hash)
{
        return d->lease && d->lease->statements_known &&
               fp_stmt_set_has(&d->lease->statements, hash);
}

/*
 * Whether a statement may be prepared under its wire name on d's session
 * now: its set is known and not full, and nothing is in flight outside a
 * pipeline (a Parse of ours would mix with the application's results).
 */
static bool tx_session_room(const struct dropin_conn *d)
{
        return d->lease && d->lease->statements_known &&
               d->lease->statements.count < FP_STMTS_MAX &&
               FP_REAL(PQpipelineStatus)(d->conn) == PQ_PIPELINE_OFF && !FP_REAL(PQisBusy)(d->conn);
}

/*
 * PQprepare() of a statement of ours (wire) on d's session: the session
 * tracker does not count it as the application's state (FP_DIRTY_PREPARE),
 * which would pin the session or have it discarded.
 */
static PGresult *tx_parse(struct dropin_conn *d, const char *wire, const char *text, int n_params,
                          const Oid *types)
{
        uint32_t before = d->lease->dirty & FP_DIRTY_PREPARE;
        PGresult *res = FP_REAL(PQprepare)(d->conn, wire, text, n_params, types);
        d->lease->dirty = (d->lease->dirty & ~(uint32_t)FP_DIRTY_PREPARE) | before;
        return res;
}

/*
 * After a failed command: if the server's error says the session's named
 * statements are not what the set says (26000: no such statement; 42P05:
 * one exists already; 0A000: a statement whose plan a schema change broke,
 * "cached plan must not change result type"), the set is no longer trusted:
 * the rest of the lease runs its statements unnamed, and the release has
 * forkpoold's reset deallocate them all, so the next lease prepares afresh.
 */
static void tx_check_statement_error(struct dropin_conn *d, const PGresult *res)
{
        if (!d->lease || FP_REAL(PQresultStatus)(res) != PGRES_FATAL_ERROR)
                return;
        const char *state = FP_REAL(PQresultErrorField)(res, PG_DIAG_SQLSTATE);
        if (state && (strcmp(state, "26000") == 0 || strcmp(state, "42P05") == 0 ||
                      strcmp(state, "0A000") == 0))
                d->lease->statements_known = false;
}

/*
 * The statement's n_types parameter types as the n_params a call passes
 * (libpq reads one type per parameter): NULL when types will do as they are
 * (n_params <= n_types), else a copy padded with 0 (the server infers the
 * rest), or NULL if out of memory. The caller frees it.
 */
static Oid *tx_types_for(int n_params, int n_types, const Oid *types)
{
        if (n_params <= n_types)
                return NULL;
        Oid *all = calloc((size_t)n_params, sizeof(Oid));
        if (all && n_types > 0 && types)
                memcpy(all, types, (size_t)n_types * sizeof(Oid));
        return all;
}

/*
 * Makes the statement of hash (text, types) a named statement on d's
 * session unless it is one: a Parse under its wire name, one round trip
 * (PQprepare), outside a pipeline only. Returns 1 (execute it by wire), 0
 * (it cannot be named on this session: run it unnamed) or -1 with the
 * server's error result in *ret_error (the text does not prepare; NULL if
 * libpq made none).
 */
static int tx_name_now(struct dropin_conn *d, const uint8_t *hash, const char *text, int n_params,
                       const Oid *types, PGresult **ret_error)
{
        char wire[TX_WIRE_NAME_MAX];
        if (tx_session_has(d, hash))
                return 1;
        if (!tx_session_room(d))
                return 0;
        tx_wire_name(hash, wire);
        PGresult *res = tx_parse(d, wire, text, n_params, types);
        if (FP_REAL(PQresultStatus)(res) == PGRES_COMMAND_OK) {
                FP_REAL(PQclear)(res);
                (void)fp_stmt_set_add(&d->lease->statements, hash);
                return 1;
        }
        d->tx->failed = true;
        tx_check_statement_error(d, res);
        *ret_error = res;
        return -1;
}

/*
 * Leaves res as the result of the command being "sent" (PQgetResult()
 * returns it, then NULL). Returns libpq's 1, or 0 for no result.
 */
static int tx_stash(struct dropin_conn *d, PGresult *res)
{
        d->tx->stash = res;
        return res != NULL;
}

/*
 * The first result of our Parse of parse_hash (tx_send_prepare; res NULL:
 * none came): the session has the statement only if it worked. An error
 * that says the set is wrong (42P05) stops trusting it.
 */
static void tx_parse_result(struct dropin_conn *d, const PGresult *res)
{
        struct txmode *tx = d->tx;
        tx->parse_sent = false;
        if (!d->lease)
                return;
        if (FP_REAL(PQresultStatus)(res) != PGRES_COMMAND_OK) {
                fp_stmt_set_remove(&d->lease->statements, tx->parse_hash);
                tx_check_statement_error(d, res);
        }
        d->lease->dirty = (d->lease->dirty & ~(uint32_t)FP_DIRTY_PREPARE) | tx->parse_dirty;
}

/*
 * Before a synchronous call (the PQexec family), which discards the results
 * the application left unread, as libpq does, but inside libpq where the
 * drop-in does not see them: what the drop-in keeps for those results is
 * settled on the results it belongs to, not on the call's. A made result
 * (stash) and a failed deferred command's error are dropped; our Parse's
 * results are read here (they say whether the session has the statement);
 * a statement sent by its wire name has no result left to check.
 */
static void tx_discard_unread(struct dropin_conn *d)
{
        struct txmode *tx = d->tx;
        FP_REAL(PQclear)(tx->stash);
        tx->stash = NULL;
        tx->deferred_failed = false;
        tx->wire_sent = false;
        if (!tx->parse_sent)
                return;
        tx_inside++;
        /* A Parse's results: its CommandComplete or error, then NULL (never COPY). */
        PGresult *res = FP_REAL(PQgetResult)(d->conn);
        tx_parse_result(d, res);
        while (res) {
                tx->failed |= FP_REAL(PQresultStatus)(res) == PGRES_FATAL_ERROR;
                FP_REAL(PQclear)(res);
                res = FP_REAL(PQgetResult)(d->conn);
        }
        tx_inside--;
}

/*
 * PQsendPrepare() on d's session, of the statement of hash (NULL: the
 * application named none): a session that has it gets nothing (a made
 * COMMAND_OK result answers); one with room gets a Parse under its wire
 * name (its result says whether it made it); else the unnamed statement,
 * which the server checks.
 */
static int tx_send_prepare(struct dropin_conn *d, const uint8_t *hash, const char *text,
                           int n_params, const Oid *types)
{
        PGconn *conn = d->conn;
        char wire[TX_WIRE_NAME_MAX];
        if (!hash)
                return FP_REAL(PQsendPrepare)(conn, NULL, text, n_params, types);
        bool plain = FP_REAL(PQpipelineStatus)(conn) == PQ_PIPELINE_OFF && !FP_REAL(PQisBusy)(conn);
        if (tx_session_has(d, hash)) {
                if (plain && FP_REAL(PQtransactionStatus)(conn) != PQTRANS_INERROR)
                        return tx_stash(d, FP_REAL(PQmakeEmptyPGresult)(conn, PGRES_COMMAND_OK));
        } else if (tx_session_room(d)) {
                tx_wire_name(hash, wire);
                int ok = FP_REAL(PQsendPrepare)(conn, wire, text, n_params, types);
                if (ok && fp_stmt_set_add(&d->lease->statements, hash) == 0) {
                        d->tx->parse_sent = true;
                        d->tx->parse_dirty = d->lease->dirty & FP_DIRTY_PREPARE;
                        memcpy(d->tx->parse_hash, hash, FP_STMT_HASH_LEN);
                }
                return ok;
        }
        return FP_REAL(PQsendPrepare)(conn, "", text, n_params, types);
}

/*
 * PQsendQueryPrepared() of the statement of hash on d's session: by its
 * wire name, prepared first (one round trip) if the session lacks it and
 * may have it; unnamed (PQsendQueryParams) if it may not. A text that does
 * not prepare answers with the server's error.
 */
static int tx_send_prepared(struct dropin_conn *d, const uint8_t *hash, const char *text,
                            int n_types, const Oid *types, int n_params, const char *const *values,
                            const int *lengths, const int *formats, int result_format)
{
        PGresult *error = NULL;
        char wire[TX_WIRE_NAME_MAX];
        int named = tx_name_now(d, hash, text, n_types, types, &error);
        if (named < 0)
                return tx_stash(d, error);
        if (named == 0) {
                Oid *all = tx_types_for(n_params, n_types, types);
                if (!all && n_params > n_types) {
                        snprintf(d->tx->error, sizeof(d->tx->error), "forkpool: out of memory\n");
                        return 0;
                }
                int ok = FP_REAL(PQsendQueryParams)(d->conn, text, n_params, all ? all : types,
                                                    values, lengths, formats, result_format);
                free(all);
                return ok;
        }
        tx_wire_name(hash, wire);
        int ok = FP_REAL(PQsendQueryPrepared)(d->conn, wire, n_params, values, lengths, formats,
                                              result_format);
        d->tx->wire_sent = ok;
        return ok;
}

/* A statement with an empty effect and the status DEALLOCATE has (PQsendQuery's stand-in). */
#define TX_NOOP_SQL "DO $$BEGIN END$$"

/* --- connecting and closing --- */

int txmode_connected(struct dropin_conn *d)
{
        int r;
        forkpool *fp = dropin_main_handle(d->target.socket, &r);
        if (!fp || !d->lease || !d->conn)
                return fp ? -EINVAL : r;
        if (!d->tx) {
                if (fp_pool_mode(fp, d->target.pool) != FP_POOL_MODE_TRANSACTION)
                        return 0;
                if ((d->lease->flags & FP_LEASE_STICKY) || placeholder_fd() < 0)
                        return -EOPNOTSUPP;
                struct txmode *tx = calloc(1, sizeof(*tx));
                if (!tx)
                        return -ENOMEM;
                tx->cell = dropin_cancel_cell_new();
                tx->queue_timer = -1;
                if (!FP_REAL(PQregisterEventProc)(d->conn, tx_event, "forkpool transaction mode",
                                                  NULL)) {
                        dropin_cancel_cell_free(tx->cell);
                        free(tx);
                        return -ENOMEM;
                }
                d->tx = tx;
                atomic_fetch_add(&txmode_count, 1);
        }
        struct txmode *tx = d->tx;
        d->lease->flags |= FP_LEASE_LOCAL_STATEMENTS;
        tx->sock = FP_REAL(PQsocket)(d->conn);
        tx->last_lease_id = d->lease->lease_id;
        memcpy(&tx->info, &d->lease->info, sizeof(tx->info));
        tx->pinned = false;
        tx->pin_reasons = 0;
        tx->error[0] = '\0';
        /* A connect that changed the session (client_encoding) keeps it. */
        tx->persist = TX_ALL;
        tx->dirty_known = 0;
        dropin_cancel_cell_set(tx->cell, tx->info.backend_pid, tx->info.cancel_key);
        tx_settle(d);
        return 0;
}

void txmode_before_reset(struct dropin_conn *d)
{
        if (d->tx && d->pid == fp_self_pid())
                tx_pending_cancel(d);
        if (d->tx && d->lease && d->pid == fp_self_pid())
                tx_give_back(d);
        if (d->tx)
                d->tx->pinned = false;
}

static void tx_free(struct txmode *tx)
{
        tx_deferred_free(tx);
        tx_statement_forget_all(tx);
        FP_REAL(PQclear)(tx->stash);
        free(tx);
}

void txmode_finish(struct dropin_conn *d)
{
        struct txmode *tx = d->tx;
        if (!tx)
                return;
        tx_pending_cancel(d);
        if (d->lease)
                tx_give_back(d);
        /* libpq's Terminate goes to an unconnected socket and fails quietly. */
        (void)fp_release_socket(tx->sock);
        dropin_cancel_cell_free(tx->cell);
        d->tx = NULL;
        atomic_fetch_sub(&txmode_count, 1);
        tx_free(tx);
}

void txmode_forget(struct dropin_conn *d)
{
        if (!d->tx)
                return;
        tx_free(d->tx);
        d->tx = NULL;
        atomic_fetch_sub(&txmode_count, 1);
}

const char *txmode_error(const struct dropin_conn *d)
{
        return d->tx && d->tx->error[0] ? d->tx->error : NULL;
}

/* --- the replaced entry points --- */

DROPIN_EXPORT PGresult *PQexec(PGconn *conn, const char *query)
{
        struct dropin_conn *d = tx_find(conn);
        if (!d)
                return FP_REAL(PQexec)(conn, query);
        if (tx_ready(d) < 0)
                return tx_error_result(d);
        tx_discard_unread(d);
        if (tx_deallocate(d, query)) {
                tx_settle(d); /* the results discarded may have been the last */
                return FP_REAL(PQmakeEmptyPGresult)(conn, PGRES_COMMAND_OK);
        }
        if (tx_begin(d, query) < 0)
                return tx_error_result(d);
        PGresult *res = FP_REAL(PQexec)(conn, query);
        d->tx->failed |= FP_REAL(PQresultStatus)(res) == PGRES_FATAL_ERROR;
        tx_end(d, true);
        return res;
}

DROPIN_EXPORT PGresult *PQexecParams(PGconn *conn, const char *command, int nParams,
                                     const Oid *paramTypes, const char *const *paramValues,
                                     const int *paramLengths, const int *paramFormats,
                                     int resultFormat)
{
        struct dropin_conn *d = tx_find(conn);
        if (!d)
                return FP_REAL(PQexecParams)(conn, command, nParams, paramTypes, paramValues,
                                             paramLengths, paramFormats, resultFormat);
        if (tx_begin(d, command) < 0)
                return tx_error_result(d);
        tx_discard_unread(d);
        PGresult *res = FP_REAL(PQexecParams)(conn, command, nParams, paramTypes, paramValues,
                                              paramLengths, paramFormats, resultFormat);
        tx_end(d, true);
        return res;
}

DROPIN_EXPORT PGresult *PQprepare(PGconn *conn, const char *stmtName, const char *query,
                                  int nParams, const Oid *paramTypes)
{
        struct dropin_conn *d = tx_find(conn);
        uint8_t hash[FP_STMT_HASH_LEN];
        if (!d || !stmtName || tx_statement_hash(query, nParams, paramTypes, hash) < 0)
                return FP_REAL(PQprepare)(conn, stmtName, query, nParams, paramTypes);
        /* Preparing leaves no state of the application's: what the text does counts when it runs.
         */
        if (tx_begin(d, "") < 0)
                return tx_error_result(d);
        tx_discard_unread(d);
        /*
         * A session that has the statement needs no Parse; one with room gets it
         * under its wire name; else the server checks it as the unnamed one.
         */
        char wire[TX_WIRE_NAME_MAX];
        bool has = tx_session_has(d, hash);
        bool name_it = !has && tx_session_room(d);
        PGresult *res;
        tx_wire_name(hash, wire);
        if (has && FP_REAL(PQtransactionStatus)(conn) != PQTRANS_INERROR)
                res = FP_REAL(PQmakeEmptyPGresult)(conn, PGRES_COMMAND_OK);
        else if (name_it)
                res = tx_parse(d, wire, query, nParams, paramTypes);
        else
                res = FP_REAL(PQprepare)(conn, "", query, nParams, paramTypes);
        bool ok = FP_REAL(PQresultStatus)(res) == PGRES_COMMAND_OK;
        if (ok && name_it)
                (void)fp_stmt_set_add(&d->lease->statements, hash);
        if (ok && !tx_statement_put(d->tx, stmtName, query, nParams, paramTypes, hash)) {
                FP_REAL(PQclear)(res);
                snprintf(d->tx->error, sizeof(d->tx->error), "forkpool: out of memory\n");
                res = tx_error_result(d);
        }
        d->tx->failed |= !ok;
        tx_end(d, true);
        return res;
}

DROPIN_EXPORT PGresult *PQexecPrepared(PGconn *conn, const char *stmtName, int nParams,
                                       const char *const *paramValues, const int *paramLengths,
                                       const int *paramFormats, int resultFormat)
{
        struct dropin_conn *d = tx_find(conn);
        if (!d)
                return FP_REAL(PQexecPrepared)(conn, stmtName, nParams, paramValues, paramLengths,
                                               paramFormats, resultFormat);
        const struct tx_statement *s = tx_statement_find(d->tx, stmtName);
        if (tx_begin(d, s ? s->text : NULL) < 0)
                return tx_error_result(d);
        tx_discard_unread(d);
        PGresult *res = NULL;
        int named = s ? tx_name_now(d, s->hash, s->text, s->n_params, s->types, &res) : -2;
        if (named > 0)
                res = FP_REAL(PQexecPrepared)(conn, s->wire, nParams, paramValues, paramLengths,
                                              paramFormats, resultFormat);
        else if (named == 0) {
                Oid *all = tx_types_for(nParams, s->n_params, s->types);
                if (all || nParams <= s->n_params)
                        res = FP_REAL(PQexecParams)(conn, s->text, nParams, all ? all : s->types,
                                                    paramValues, paramLengths, paramFormats,
                                                    resultFormat);
                else
                        snprintf(d->tx->error, sizeof(d->tx->error), "forkpool: out of memory\n");
                free(all);
                if (!res)
                        res = tx_error_result(d);
        } else if (named == -2)
                res = FP_REAL(PQexecPrepared)(conn, stmtName, nParams, paramValues, paramLengths,
                                              paramFormats, resultFormat);
        d->tx->failed |= FP_REAL(PQresultStatus)(res) == PGRES_FATAL_ERROR;
        if (named > 0)
                tx_check_statement_error(d, res);
        tx_end(d, true);
        return res;
}

DROPIN_EXPORT PGresult *PQdescribePrepared(PGconn *conn, const char *stmt)
{
        struct dropin_conn *d = tx_find(conn);
        if (!d)
                return FP_REAL(PQdescribePrepared)(conn, stmt);
        const struct tx_statement *s = tx_statement_find(d->tx, stmt);
        if (tx_begin(d, s ? s->text : "") < 0)
                return tx_error_result(d);
        tx_discard_unread(d);
        PGresult *res = NULL;
        int named = s ? tx_name_now(d, s->hash, s->text, s->n_params, s->types, &res) : -2;
        if (named > 0) {
                res = FP_REAL(PQdescribePrepared)(conn, s->wire);
        } else if (named == 0) {
                /* No room on this session: the unnamed statement made, then described. */
                res = FP_REAL(PQprepare)(conn, "", s->text, s->n_params, s->types);
                if (FP_REAL(PQresultStatus)(res) == PGRES_COMMAND_OK) {
                        FP_REAL(PQclear)(res);
                        res = FP_REAL(PQdescribePrepared)(conn, "");
                }
        } else if (named == -2) {
                res = FP_REAL(PQdescribePrepared)(conn, stmt);
        }
        tx_end(d, true);
        return res;
}

DROPIN_EXPORT PGresult *PQdescribePortal(PGconn *conn, const char *portal)
{
        struct dropin_conn *d = tx_find(conn);
        if (!d)
                return FP_REAL(PQdescribePortal)(conn, portal);
        if (tx_begin(d, "") < 0)
                return tx_error_result(d);
        tx_discard_unread(d);
        PGresult *res = FP_REAL(PQdescribePortal)(conn, portal);
        tx_end(d, true);
        return res;
}

DROPIN_EXPORT int PQsendQuery(PGconn *conn, const char *query)
{
        struct dropin_conn *d = tx_find(conn);
        if (!d)
                return FP_REAL(PQsendQuery)(conn, query);
        if (tx_send_refused(d))
                return 0;
        if (tx_deallocate(d, query))
                query = TX_NOOP_SQL;
        int r = tx_begin_send(d, query);
        if (r < 0)
                return 0;
        if (r == 1)
                return tx_deferred(d, tx_defer(d->tx, TX_SEND_QUERY, NULL, query, 0, NULL, 0, NULL,
                                               NULL, NULL, 0));
        int ok = FP_REAL(PQsendQuery)(conn, query);
        tx_end(d, !ok);
        return ok;
}

DROPIN_EXPORT int PQsendQueryParams(PGconn *conn, const char *command, int nParams,
                                    const Oid *paramTypes, const char *const *paramValues,
                                    const int *paramLengths, const int *paramFormats,
                                    int resultFormat)
{
        struct dropin_conn *d = tx_find(conn);
        if (!d)
                return FP_REAL(PQsendQueryParams)(conn, command, nParams, paramTypes, paramValues,
                                                  paramLengths, paramFormats, resultFormat);
        if (tx_send_refused(d))
                return 0;
        if (tx_deallocate(d, command))
                command = TX_NOOP_SQL;
        int r = tx_begin_send(d, command);
        if (r < 0)
                return 0;
        if (r == 1)
                return tx_deferred(d, tx_defer(d->tx, TX_SEND_PARAMS, NULL, command, nParams,
                                               paramTypes, nParams, paramValues, paramLengths,
                                               paramFormats, resultFormat));
        int ok = FP_REAL(PQsendQueryParams)(conn, command, nParams, paramTypes, paramValues,
                                            paramLengths, paramFormats, resultFormat);
        tx_end(d, !ok);
        return ok;
}

DROPIN_EXPORT int PQsendPrepare(PGconn *conn, const char *stmtName, const char *query, int nParams,
                                const Oid *paramTypes)
{
        struct dropin_conn *d = tx_find(conn);
        uint8_t hash[FP_STMT_HASH_LEN];
        if (!d || (stmtName && tx_statement_hash(query, nParams, paramTypes, hash) < 0))
                return FP_REAL(PQsendPrepare)(conn, stmtName, query, nParams, paramTypes);
        if (tx_send_refused(d))
                return 0;
        /* Remembered now: a later PQsendQueryPrepared may come before the result is read. */
        if (stmtName && !tx_statement_put(d->tx, stmtName, query, nParams, paramTypes, hash)) {
                snprintf(d->tx->error, sizeof(d->tx->error), "forkpool: out of memory\n");
                return 0;
        }
        int r = tx_begin_send(d, ""); /* as PQprepare(): no state until it runs */
        if (r < 0)
                return 0;
        if (r == 1)
                return tx_deferred(d, tx_defer(d->tx, TX_SEND_PREPARE, stmtName ? hash : NULL,
                                               query, nParams, paramTypes, 0, NULL, NULL, NULL, 0));
        int ok = tx_send_prepare(d, stmtName ? hash : NULL, query, nParams, paramTypes);
        tx_end(d, !ok);
        return ok;
}

DROPIN_EXPORT int PQsendQueryPrepared(PGconn *conn, const char *stmtName, int nParams,
                                      const char *const *paramValues, const int *paramLengths,
                                      const int *paramFormats, int resultFormat)
{
        struct dropin_conn *d = tx_find(conn);
        if (!d)
                return FP_REAL(PQsendQueryPrepared)(conn, stmtName, nParams, paramValues,
                                                    paramLengths, paramFormats, resultFormat);
        if (tx_send_refused(d))
                return 0;
        const struct tx_statement *s = tx_statement_find(d->tx, stmtName);
        int ok;
        if (s) {
                int r = tx_begin_send(d, s->text);
                if (r < 0)
                        return 0;
                if (r == 1)
                        return tx_deferred(d, tx_defer(d->tx, TX_SEND_PREPARED, s->hash, s->text,
                                                       s->n_params, s->types, nParams, paramValues,
                                                       paramLengths, paramFormats, resultFormat));
                ok = tx_send_prepared(d, s->hash, s->text, s->n_params, s->types, nParams,
                                      paramValues, paramLengths, paramFormats, resultFormat);
        } else {
                if (tx_begin(d, NULL) < 0)
                        return 0;
                ok = FP_REAL(PQsendQueryPrepared)(conn, stmtName, nParams, paramValues,
                                                  paramLengths, paramFormats, resultFormat);
        }
        tx_end(d, !ok);
        return ok;
}

DROPIN_EXPORT int PQsendDescribePrepared(PGconn *conn, const char *stmt)
{
        struct dropin_conn *d = tx_find(conn);
        if (!d)
                return FP_REAL(PQsendDescribePrepared)(conn, stmt);
        if (tx_send_refused(d))
                return 0;
        const struct tx_statement *s = tx_statement_find(d->tx, stmt);
        if (tx_begin(d, s ? s->text : "") < 0)
                return 0;
        PGresult *error = NULL;
        int named = s ? tx_name_now(d, s->hash, s->text, s->n_params, s->types, &error) : -2;
        int ok;
        if (named == -1) {
                ok = tx_stash(d, error); /* the text does not prepare: the server's error */
                tx_end(d, !ok);
                return ok;
        }
        if (named > 0) {
                stmt = s->wire;
        } else if (named == 0 && FP_REAL(PQpipelineStatus)(conn) == PQ_PIPELINE_OFF &&
                   !FP_REAL(PQisBusy)(conn)) {
                /* No room on this session: the unnamed statement made first, then described. */
                PGresult *res = FP_REAL(PQprepare)(conn, "", s->text, s->n_params, s->types);
                ok = FP_REAL(PQresultStatus)(res) == PGRES_COMMAND_OK;
                FP_REAL(PQclear)(res);
                if (!ok) {
                        tx_end(d, true);
                        return 0;
                }
                stmt = "";
        }
        ok = FP_REAL(PQsendDescribePrepared)(conn, stmt);
        tx_end(d, !ok);
        return ok;
}

DROPIN_EXPORT int PQsendDescribePortal(PGconn *conn, const char *portal)
{
        struct dropin_conn *d = tx_find(conn);
        if (!d)
                return FP_REAL(PQsendDescribePortal)(conn, portal);
        if (tx_send_refused(d))
                return 0;
        if (tx_begin(d, "") < 0)
                return 0;
        int ok = FP_REAL(PQsendDescribePortal)(conn, portal);
        tx_end(d, !ok);
        return ok;
}

DROPIN_EXPORT PGresult *PQgetResult(PGconn *conn)
{
        struct dropin_conn *d = tx_find(conn);
        if (d && d->tx->pending)
                (void)tx_pending_complete(d, true);
        /* A deferred command that failed has one result, made (in stash): why. */
        if (d)
                d->tx->deferred_failed = false;
        if (d && d->tx->stash) {
                PGresult *made = d->tx->stash;
                d->tx->stash = NULL;
                return made;
        }
        PGresult *res = FP_REAL(PQgetResult)(conn);
        if (d && d->tx->parse_sent)
                tx_parse_result(d, res);
        if (res) {
                if (d && FP_REAL(PQresultStatus)(res) == PGRES_FATAL_ERROR) {
                        d->tx->failed = true;
                        if (d->tx->wire_sent)
                                tx_check_statement_error(d, res);
                }
                return res;
        }
        if (d) {
                d->tx->wire_sent = false; /* that command's results are all read */
                tx_settle(d);
        } /* the release point of an asynchronous command */
        return NULL;
}

DROPIN_EXPORT int PQsetSingleRowMode(PGconn *conn)
{
        /* Only right after a command has gone out: a pending one goes out first. */
        struct dropin_conn *d = tx_find(conn);
        if (d && d->tx->pending)
                (void)tx_pending_complete(d, true);
        return FP_REAL(PQsetSingleRowMode)(conn);
}

DROPIN_EXPORT int PQconsumeInput(PGconn *conn)
{
        struct dropin_conn *d = tx_find(conn);
        if (d && d->tx->pending && tx_pending_complete(d, false) == -EAGAIN)
                return 1; /* the lease has not come: nothing to read yet */
        if (d && d->tx->deferred_failed)
                return 1;
        return FP_REAL(PQconsumeInput)(conn);
}

DROPIN_EXPORT int PQisBusy(PGconn *conn)
{
        struct dropin_conn *d = tx_find(conn);
        if (d && d->tx->pending && tx_pending_complete(d, false) == -EAGAIN)
                return 1;
        if (d && (d->tx->deferred_failed || d->tx->stash))
                return 0; /* its result is ready */
        return FP_REAL(PQisBusy)(conn);
}

DROPIN_EXPORT int PQflush(PGconn *conn)
{
        struct dropin_conn *d = tx_find(conn);
        if (d && (d->tx->pending || d->tx->deferred_failed || d->tx->stash))
                return 0; /* the command goes out, flushed, when its session comes */
        return FP_REAL(PQflush)(conn);
}

DROPIN_EXPORT PGTransactionStatusType PQtransactionStatus(const PGconn *conn)
{
        struct dropin_conn *d = tx_find(conn);
        if (d && (d->tx->pending || d->tx->deferred_failed || d->tx->stash))
                return PQTRANS_ACTIVE; /* a command is in progress */
        return FP_REAL(PQtransactionStatus)(conn);
}

DROPIN_EXPORT int PQenterPipelineMode(PGconn *conn)
{
        struct dropin_conn *d = tx_find(conn);
        if (!d)
                return FP_REAL(PQenterPipelineMode)(conn);
        /* A pipeline's syncs and flushes go to a session: it is leased now. */
        if (tx_begin(d, "") < 0)
                return 0;
        int ok = FP_REAL(PQenterPipelineMode)(conn);
        tx_end(d, !ok);
        return ok;
}

DROPIN_EXPORT int PQexitPipelineMode(PGconn *conn)
{
        int ok = FP_REAL(PQexitPipelineMode)(conn);
        struct dropin_conn *d = ok ? tx_find(conn) : NULL;
        if (d)
                tx_settle(d);
        return ok;
}

DROPIN_EXPORT int PQbackendPID(const PGconn *conn)
{
        struct dropin_conn *d = tx_find(conn);
        return d ? d->tx->info.backend_pid : FP_REAL(PQbackendPID)(conn);
}

DROPIN_EXPORT const char *PQparameterStatus(const PGconn *conn, const char *paramName)
{
        struct dropin_conn *d = tx_find(conn);
        if (d && !d->tx->pinned && paramName) {
                /* The hand-over values of the session running now (or last). */
                const char *v =
                        fp_params_get(d->tx->info.params, d->tx->info.params_len, paramName);
                if (v)
                        return v;
        }
        return FP_REAL(PQparameterStatus)(conn, paramName);
}

DROPIN_EXPORT char *PQresultErrorMessage(const PGresult *res)
{
        if (res && atomic_load_explicit(&txmode_count, memory_order_relaxed) != 0) {
                char *text = FP_REAL(PQresultInstanceData)(res, tx_event);
                if (text)
                        return text;
        }
        return FP_REAL(PQresultErrorMessage)(res);
}

DROPIN_EXPORT char *PQresultErrorField(const PGresult *res, int fieldcode)
{
        if (res && atomic_load_explicit(&txmode_count, memory_order_relaxed) != 0 &&
            FP_REAL(PQresultInstanceData)(res, tx_event)) {
                static char sqlstate[] = "57P03"; /* cannot_connect_now */
                static char severity[] = "ERROR";
                char *text = FP_REAL(PQresultInstanceData)(res, tx_event);
                switch (fieldcode) {
                case PG_DIAG_SQLSTATE:
                        return sqlstate;
                case PG_DIAG_SEVERITY:
                case PG_DIAG_SEVERITY_NONLOCALIZED:
                        return severity;
                case PG_DIAG_MESSAGE_PRIMARY:
                        return text;
                default:
                        return NULL;
                }
        }
        return FP_REAL(PQresultErrorField)(res, fieldcode);
}

PGcancel *txmode_get_cancel(struct dropin_conn *d)
{
        return dropin_cancel_new_for_cell(&d->tx->info, d->tx->cell);
}
