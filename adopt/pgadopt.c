/* SPDX-License-Identifier: MIT */
/*
 * pgadopt.c — making a real PGconn on an already-authenticated PostgreSQL
 * socket (pgadopt.h), for the worker's leases and the supervisor's restored
 * connections alike.
 *
 * The method: libpq connects to a private Unix
 * socket of this process (adoptsock.c: a socket file in a fresh 0700
 * directory, which no other uid can reach); we answer its StartupMessage with
 * the real session's AuthenticationOk, ParameterStatus values, BackendKeyData
 * and ReadyForQuery; then the real socket is dup3'ed over libpq's, so every
 * byte libpq sends from then on goes to the real backend.
 */
#include "pgadopt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "adoptsock.h"
#include "bytes.h"
#include "sockio.h"

#define FAKE_PORT         "5432"
#define ACCEPT_TIMEOUT_MS 2000
#define STARTUP_MAX       10000
#define PROTOCOL_3_0      196608
/*
 * libpq's StartupMessage is in the socket before we accept (PQconnectPoll
 * wrote it): a connection that has not sent its first bytes by then is
 * another one, not worth more than a moment.
 */
#define HEADER_TIMEOUT_MS 100

/* The process's private listener; recreated in a child after fork. */
static pthread_mutex_t adopt_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fp_adopt_listener listener = FP_ADOPT_LISTENER_INIT(".s.PGSQL." FAKE_PORT);

void fp_pg_adopt_atfork_child(void)
{
        /* A thread of the parent may have held it at fork; it is not here. */
        pthread_mutex_init(&adopt_lock, NULL);
}

void fp_pg_adopt_close_listener(void)
{
        pthread_mutex_lock(&adopt_lock);
        fp_adopt_listener_reset(&listener);
        pthread_mutex_unlock(&adopt_lock);
}

/* Builds AuthenticationOk, ParameterStatus…, BackendKeyData, ReadyForQuery. */
static size_t build_startup_reply(const struct fp_lease_pg *info, uint32_t txn, char *buf,
                                  size_t cap)
{
        char *p = buf;

        *p++ = 'R';
        fp_put_be32(&p, 8);
        fp_put_be32(&p, 0);

        size_t pos = 0;
        while (pos < info->params_len) {
                const char *name = info->params + pos;
                const char *value = name + strlen(name) + 1;
                size_t nlen = strlen(name) + 1, vlen = strlen(value) + 1;
                if ((size_t)(p - buf) + 5 + nlen + vlen + 32 > cap)
                        break;
                *p++ = 'S';
                fp_put_be32(&p, (uint32_t)(4 + nlen + vlen));
                memcpy(p, name, nlen);
                p += nlen;
                memcpy(p, value, vlen);
                p += vlen;
                pos = (size_t)(value - info->params) + vlen;
        }

        *p++ = 'K';
        fp_put_be32(&p, 12);
        fp_put_be32(&p, (uint32_t)info->backend_pid);
        fp_put_be32(&p, (uint32_t)info->cancel_key);

        *p++ = 'Z';
        fp_put_be32(&p, 5);
        *p++ = txn == FP_TXN_INTRANS ? 'T' : txn == FP_TXN_INERROR ? 'E' : 'I';
        return (size_t)(p - buf);
}

/* Drives libpq's side of the startup to the end. */
static int finish_connect(PGconn *conn)
{
        for (;;) {
                switch (PQconnectPoll(conn)) {
                case PGRES_POLLING_OK:
                        return 0;
                case PGRES_POLLING_FAILED:
                        return -ECONNREFUSED;
                case PGRES_POLLING_READING:
                        if (fp_wait_fd(PQsocket(conn), POLLIN, ACCEPT_TIMEOUT_MS) < 0)
                                return -ETIMEDOUT;
                        break;
                case PGRES_POLLING_WRITING:
                        if (fp_wait_fd(PQsocket(conn), POLLOUT, ACCEPT_TIMEOUT_MS) < 0)
                                return -ETIMEDOUT;
                        break;
                default:
                        break;
                }
        }
}

/*
 * Which of the options that would make libpq refuse our AuthenticationOk this
 * libpq knows (an unknown keyword fails the connect): the environment may ask
 * for them (PGCHANNELBINDING=require, PGREQUIREAUTH=scram-sha-256), and they
 * mean nothing here, where the real session is authenticated already. Looked
 * up once (with adopt_lock held).
 */
static int auth_options_known = -1; /* bit 0: channel_binding, bit 1: require_auth */

static int auth_options(void)
{
        if (auth_options_known >= 0)
                return auth_options_known;
        PQconninfoOption *opts = PQconndefaults();
        if (!opts)
                return 0; /* out of memory: try again next time */
        int known = 0;
        for (PQconninfoOption *o = opts; o->keyword; o++) {
                if (strcmp(o->keyword, "channel_binding") == 0)
                        known |= 1;
                else if (strcmp(o->keyword, "require_auth") == 0)
                        known |= 2;
        }
        PQconninfoFree(opts);
        auth_options_known = known;
        return known;
}

/*
 * Reads and checks libpq's StartupMessage on our side of its connection
 * (anything but protocol 3.0 from this process is refused).
 */
static int read_startup(int srv)
{
        uint32_t head[2];
        char rest[STARTUP_MAX];
        int r = fp_read_full(srv, head, sizeof(head), ACCEPT_TIMEOUT_MS);
        if (r < 0)
                return r;
        if (ntohl(head[1]) != PROTOCOL_3_0 || ntohl(head[0]) < 8 || ntohl(head[0]) > STARTUP_MAX)
                return -EPROTO;
        return fp_read_full(srv, rest, ntohl(head[0]) - 8, ACCEPT_TIMEOUT_MS);
}

/* Makes libpq send its StartupMessage and reads it. */
static int exchange_startup(struct fp_pg_adoption *a)
{
        /* The first poll sends the StartupMessage (the Unix connect is already done). */
        if (PQconnectPoll(a->conn) == PGRES_POLLING_FAILED)
                return -ECONNREFUSED;
        return read_startup(a->srv);
}

/*
 * Closes whatever waits in the listener's backlog (a stale connection of
 * this process, one of another): nothing there is an adoption's now, since
 * each one accepts its own connection before adopt_lock is let go. Usually
 * one accept4() that finds nothing.
 */
static void drain_backlog(void)
{
        for (int i = 0; i < 64; i++) {
                int fd = accept4(listener.fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (fd < 0)
                        return;
                close(fd);
        }
}

/*
 * One attempt at starting a PGconn on the listener as it is: libpq's connect
 * completes at once on a Unix socket, and is accepted here at once, with
 * adopt_lock held, so the connection of this process that comes out of the
 * backlog is libpq's.
 */
static int begin_once(const char *user, const char *dbname, struct fp_pg_adoption *ret)
{
        /* Every keyword given, so that no PG* variable or service file takes part. */
        const char *keys[12], *values[12];
        size_t n = 0;
        int r = fp_adopt_listener_open(&listener);
        if (r < 0)
                return r;
#define KV(k, v) (keys[n] = (k), values[n++] = (v))
        KV("host", listener.dir);
        KV("port", FAKE_PORT);
        if (user && *user)
                KV("user", user); /* else libpq's default (PGUSER, the login name) */
        KV("dbname", dbname);
        KV("password", "unused");
        KV("sslmode", "disable");
        KV("gssencmode", "disable");
        KV("target_session_attrs", "any");
        int known = auth_options();
        if (known & 1)
                KV("channel_binding", "disable");
        if (known & 2)
                KV("require_auth", "none");
        keys[n] = values[n] = NULL;
#undef KV

        drain_backlog();
        PGconn *conn = PQconnectStartParams(keys, values, 0);
        if (!conn)
                return -ENOMEM;
        if (PQstatus(conn) == CONNECTION_BAD) {
                PQfinish(conn);
                return -ECONNREFUSED;
        }
        int srv = fp_adopt_listener_accept(&listener, ACCEPT_TIMEOUT_MS);
        if (srv < 0) {
                PQfinish(conn);
                return srv;
        }
        *ret = (struct fp_pg_adoption){.conn = conn, .srv = srv};
        return 0;
}

int fp_pg_adopt_begin(const char *user, const char *dbname, struct fp_pg_adoption *ret)
{
        pthread_mutex_lock(&adopt_lock);
        int r = begin_once(user, dbname, ret);
        if (r < 0 && r != -ENOMEM) {
                /*
                 * Whatever happened to the listener (its directory removed by a
                 * tmp cleaner, its backlog flooded, the socket broken), a new
                 * one and a second attempt recover from it.
                 */
                fp_adopt_listener_reset(&listener);
                r = begin_once(user, dbname, ret);
        }
        pthread_mutex_unlock(&adopt_lock);
        return r;
}

int fp_pg_readopt_begin(PGconn *conn, struct fp_pg_adoption *ret)
{
        int r;

        pthread_mutex_lock(&adopt_lock);
        r = fp_adopt_listener_open(&listener);
        if (r < 0)
                goto out;
        /*
         * Reconnects to the listener the PGconn was made for: this process's,
         * unless a failure has replaced it since (then the reset fails).
         */
        if (!PQresetStart(conn)) {
                r = -ECONNREFUSED;
                goto out;
        }
        int srv = fp_adopt_listener_accept(&listener, ACCEPT_TIMEOUT_MS);
        if (srv < 0) {
                r = srv;
                goto out;
        }
        *ret = (struct fp_pg_adoption){.conn = conn, .srv = srv};
        r = 0;
out:
        pthread_mutex_unlock(&adopt_lock);
        return r;
}

int fp_pg_adopt_complete(struct fp_pg_adoption *a, int real_fd, const struct fp_lease_pg *info,
                         uint32_t txn)
{
        char reply[FP_PARAMS_MAX + 256];
        int r = exchange_startup(a);
        if (r >= 0) {
                size_t len = build_startup_reply(info, txn, reply, sizeof(reply));
                r = fp_write_full(a->srv, reply, len);
        }
        if (r >= 0)
                r = finish_connect(a->conn);
        if (r >= 0 && dup3(real_fd, PQsocket(a->conn), O_CLOEXEC) < 0)
                r = -errno;
        if (r < 0)
                return r;
        close(a->srv);
        a->srv = -1;
        close(real_fd);
        return 0;
}

/* Appends an ErrorResponse field: its type byte, then the text with its NUL. */
static char *put_field(char *p, const char *end, char type, const char *text)
{
        size_t n = strnlen(text, (size_t)(end - p) - 2);
        *p++ = type;
        memcpy(p, text, n);
        p += n;
        *p++ = '\0';
        return p;
}

int fp_pg_adopt_refuse(struct fp_pg_adoption *a, const char *message)
{
        char buf[1024];
        char *p = buf + 5, *end = buf + sizeof(buf) - 1;
        int r = exchange_startup(a);
        if (r < 0)
                return r;
        p = put_field(p, end, 'S', "FATAL");
        p = put_field(p, end, 'V', "FATAL");
        p = put_field(p, end, 'C', "08004"); /* sqlserver_rejected_establishment_of_sqlconnection */
        p = put_field(p, end, 'M', message);
        *p++ = '\0';
        buf[0] = 'E';
        uint32_t len = htonl((uint32_t)(p - buf - 1));
        memcpy(buf + 1, &len, 4);
        r = fp_write_full(a->srv, buf, (size_t)(p - buf));
        if (r >= 0)
                r = finish_connect(a->conn) == -ECONNREFUSED ? 0 : -EPROTO;
        close(a->srv);
        a->srv = -1;
        return r;
}

void fp_pg_adoption_abort(struct fp_pg_adoption *a)
{
        if (a->srv >= 0)
                close(a->srv);
        a->srv = -1;
        if (a->conn)
                PQfinish(a->conn); /* it talks to our listener, never to a server */
        a->conn = NULL;
}

int fp_pg_adopt(int real_fd, const struct fp_lease_pg *info, uint32_t txn, PGconn **ret)
{
        struct fp_pg_adoption a;
        int r = fp_pg_adopt_begin(info->user, info->dbname, &a);
        if (r < 0)
                return r;
        r = fp_pg_adopt_complete(&a, real_fd, info, txn);
        if (r < 0) {
                fp_pg_adoption_abort(&a);
                return r;
        }
        *ret = a.conn;
        return 0;
}
