/* SPDX-License-Identifier: MIT */
/*
 * pgadopt.c — making a real PGconn on an already-authenticated PostgreSQL
 * socket (pgadopt.h), for the worker's leases and the supervisor's restored
 * connections alike.
 *
 * The method (research/adoption.md §A): libpq connects to a private Unix
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

/*
 * Accepts libpq's connection on the listener and reads its StartupMessage.
 * Anything that is not this process speaking protocol 3.0 (a CancelRequest
 * of an earlier PQcancel, a stale connection) is closed and skipped
 * (research/adoption.md §A pitfall 3). Returns the accepted fd.
 */
static int accept_startup(void)
{
        for (int skipped = 0; skipped < 16; skipped++) {
                int fd = fp_adopt_listener_accept(&listener, ACCEPT_TIMEOUT_MS);
                if (fd < 0)
                        return fd;
                uint32_t head[2];
                if (fp_read_full(fd, head, sizeof(head), HEADER_TIMEOUT_MS) < 0 ||
                    ntohl(head[1]) != PROTOCOL_3_0 || ntohl(head[0]) < 8 ||
                    ntohl(head[0]) > STARTUP_MAX) {
                        close(fd);
                        continue;
                }
                char rest[STARTUP_MAX];
                if (fp_read_full(fd, rest, ntohl(head[0]) - 8, ACCEPT_TIMEOUT_MS) < 0) {
                        close(fd);
                        continue;
                }
                return fd;
        }
        return -EPROTO;
}

static void put_u32(char **p, uint32_t v)
{
        v = htonl(v);
        memcpy(*p, &v, 4);
        *p += 4;
}

/* Builds AuthenticationOk, ParameterStatus…, BackendKeyData, ReadyForQuery. */
static size_t build_startup_reply(const struct fp_lease_pg *info, uint32_t txn, char *buf,
                                  size_t cap)
{
        char *p = buf;

        *p++ = 'R';
        put_u32(&p, 8);
        put_u32(&p, 0);

        size_t pos = 0;
        while (pos < info->params_len) {
                const char *name = info->params + pos;
                const char *value = name + strlen(name) + 1;
                size_t nlen = strlen(name) + 1, vlen = strlen(value) + 1;
                if ((size_t)(p - buf) + 5 + nlen + vlen + 32 > cap)
                        break;
                *p++ = 'S';
                put_u32(&p, (uint32_t)(4 + nlen + vlen));
                memcpy(p, name, nlen);
                p += nlen;
                memcpy(p, value, vlen);
                p += vlen;
                pos = (size_t)(value - info->params) + vlen;
        }

        *p++ = 'K';
        put_u32(&p, 12);
        put_u32(&p, (uint32_t)info->backend_pid);
        put_u32(&p, (uint32_t)info->cancel_key);

        *p++ = 'Z';
        put_u32(&p, 5);
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

/* One attempt on the listener as it is. On failure real_fd is untouched. */
static int adopt_once(int real_fd, const struct fp_lease_pg *info, uint32_t txn, PGconn **ret)
{
        const char *keys[12] = {"host",     "port",    "user",       "dbname",
                                "password", "sslmode", "gssencmode", "target_session_attrs"};
        const char *values[12] = {NULL,     FAKE_PORT, info->user, info->dbname,
                                  "unused", "disable", "disable",  "any"};
        size_t n = 8;
        int known = auth_options();
        if (known & 1) {
                keys[n] = "channel_binding";
                values[n++] = "disable";
        }
        if (known & 2) {
                keys[n] = "require_auth";
                values[n++] = "none";
        }
        keys[n] = values[n] = NULL;
        char reply[FP_PARAMS_MAX + 256];
        int srv = -1, r;

        r = fp_adopt_listener_open(&listener);
        if (r < 0)
                return r;
        values[0] = listener.dir;

        PGconn *conn = PQconnectStartParams(keys, values, 0);
        if (!conn)
                return -ENOMEM;
        if (PQstatus(conn) == CONNECTION_BAD) {
                r = -ECONNREFUSED;
                goto err_finish;
        }
        /* The first poll sends the StartupMessage (the Unix connect is already done). */
        if (PQconnectPoll(conn) == PGRES_POLLING_FAILED) {
                r = -ECONNREFUSED;
                goto err_finish;
        }
        srv = accept_startup();
        if (srv < 0) {
                r = srv;
                goto err_finish;
        }
        r = fp_write_full(srv, reply, build_startup_reply(info, txn, reply, sizeof(reply)));
        if (r >= 0)
                r = finish_connect(conn);
        if (r >= 0 && dup3(real_fd, PQsocket(conn), O_CLOEXEC) < 0)
                r = -errno;
        close(srv);
        if (r < 0)
                goto err_finish;

        close(real_fd);
        *ret = conn;
        return 0;

err_finish:
        /* libpq still talks to our listener here, never to the real server. */
        PQfinish(conn);
        return r;
}

/*
 * Adoption recovers from whatever happened to the listener (its directory
 * removed by a tmp cleaner, its backlog flooded, the socket broken): after a
 * failure the listener is recreated and the adoption tried once more.
 */
static int adopt_locked(int real_fd, const struct fp_lease_pg *info, uint32_t txn, PGconn **ret)
{
        int r = adopt_once(real_fd, info, txn, ret);
        if (r >= 0 || r == -ENOMEM)
                return r;
        fp_adopt_listener_reset(&listener);
        return adopt_once(real_fd, info, txn, ret);
}

int fp_pg_adopt(int real_fd, const struct fp_lease_pg *info, uint32_t txn, PGconn **ret)
{
        pthread_mutex_lock(&adopt_lock);
        int r = adopt_locked(real_fd, info, txn, ret);
        pthread_mutex_unlock(&adopt_lock);
        return r;
}
