/* SPDX-License-Identifier: MIT */
/*
 * pgadopt.c — making a real PGconn on an already-authenticated PostgreSQL
 * socket (pgadopt.h), for the worker's leases and the supervisor's restored
 * connections alike.
 *
 * The method (research/adoption.md §A): libpq connects to a private abstract
 * Unix socket of this process; we answer its StartupMessage with the real
 * session's AuthenticationOk, ParameterStatus values, BackendKeyData and
 * ReadyForQuery; then the real socket is dup3'ed over libpq's, so every byte
 * libpq sends from then on goes to the real backend.
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
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sockio.h"

#define FAKE_PORT         "5432"
#define ACCEPT_TIMEOUT_MS 2000
#define STARTUP_MAX       10000
#define PROTOCOL_3_0      196608

/* The process's private listener; recreated in a child after fork. */
static pthread_mutex_t adopt_lock = PTHREAD_MUTEX_INITIALIZER;
static int listener_fd = -1;
static pid_t listener_pid;
static char listener_host[64]; /* "@forkpool.<pid>.<random>" for libpq's host= */

void fp_pg_adopt_atfork_child(void)
{
        /* A thread of the parent may have held it at fork; it is not here. */
        pthread_mutex_init(&adopt_lock, NULL);
}

/* Creates the abstract listener libpq will connect to as host=@name port=5432. */
static int listener_open(void)
{
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        uint64_t rnd;
        int fd, r = -EADDRINUSE;

        if (listener_fd >= 0 && listener_pid == getpid())
                return 0;
        if (listener_fd >= 0)
                close(listener_fd); /* inherited from the parent: ours is a copy */
        listener_fd = -1;

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        for (int attempt = 0; attempt < 8 && r == -EADDRINUSE; attempt++) {
                if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
                        rnd = (uint64_t)getpid() * 2654435761u + (uint64_t)attempt;
                snprintf(listener_host, sizeof(listener_host), "@forkpool.%d.%016llx",
                         (int)getpid(), (unsigned long long)rnd);
                /* libpq maps "@name" to the abstract address "\0name/.s.PGSQL.<port>". */
                int n = snprintf(addr.sun_path + 1, sizeof(addr.sun_path) - 1,
                                 "%s/.s.PGSQL." FAKE_PORT, listener_host + 1);
                socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
                r = bind(fd, (struct sockaddr *)&addr, len) < 0 ? -errno : 0;
        }
        if (r == 0 && listen(fd, 16) < 0)
                r = -errno;
        if (r < 0) {
                close(fd);
                return r;
        }
        listener_fd = fd;
        listener_pid = getpid();
        return 0;
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

/* Closes whatever waits in the listener's backlog: nothing there is ours now. */
static void drain_backlog(void)
{
        for (int i = 0; i < 64; i++) {
                int fd = accept4(listener_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (fd < 0)
                        return;
                close(fd);
        }
}

/*
 * Accepts the connection libpq has just made to the listener (its connect
 * completes at once on a Unix socket), checking that it comes from this
 * process. Called with adopt_lock held after drain_backlog(), so the first
 * connection of ours is libpq's.
 */
static int accept_libpq(void)
{
        for (int skipped = 0; skipped < 16; skipped++) {
                int r = fp_wait_fd(listener_fd, POLLIN, ACCEPT_TIMEOUT_MS);
                if (r < 0)
                        return r;
                int fd = accept4(listener_fd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0) {
                        if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                                continue;
                        return -errno;
                }
                struct ucred cred;
                socklen_t clen = sizeof(cred);
                if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0 ||
                    cred.pid != getpid()) {
                        close(fd);
                        continue;
                }
                return fd;
        }
        return -EPROTO;
}

/* Reads and checks libpq's StartupMessage on our side of the connection. */
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

int fp_pg_adopt_begin(const char *user, const char *dbname, struct fp_pg_adoption *ret)
{
        /* Every keyword given, so that no PG* variable or service file takes part. */
        const char *keys[10], *values[10];
        size_t n = 0;
        int r;

        pthread_mutex_lock(&adopt_lock);
        r = listener_open();
        if (r < 0)
                goto out;
#define KV(k, v) (keys[n] = (k), values[n++] = (v))
        KV("host", listener_host);
        KV("port", FAKE_PORT);
        if (user && *user)
                KV("user", user); /* else libpq's default (PGUSER, the login name) */
        KV("dbname", dbname);
        KV("password", "unused");
        KV("sslmode", "disable");
        KV("gssencmode", "disable");
        KV("target_session_attrs", "any");
        keys[n] = values[n] = NULL;
#undef KV
        drain_backlog();
        PGconn *conn = PQconnectStartParams(keys, values, 0);
        if (!conn) {
                r = -ENOMEM;
                goto out;
        }
        if (PQstatus(conn) == CONNECTION_BAD) {
                PQfinish(conn);
                r = -ECONNREFUSED;
                goto out;
        }
        int srv = accept_libpq();
        if (srv < 0) {
                PQfinish(conn);
                r = srv;
                goto out;
        }
        *ret = (struct fp_pg_adoption){.conn = conn, .srv = srv};
        r = 0;
out:
        pthread_mutex_unlock(&adopt_lock);
        return r;
}

int fp_pg_readopt_begin(PGconn *conn, struct fp_pg_adoption *ret)
{
        int r;

        pthread_mutex_lock(&adopt_lock);
        r = listener_open();
        if (r < 0)
                goto out;
        drain_backlog();
        /* Reconnects to the listener the connection was made for (it is this process's). */
        if (!PQresetStart(conn)) {
                r = -ECONNREFUSED;
                goto out;
        }
        int srv = accept_libpq();
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
        if (r >= 0)
                r = fp_write_full(a->srv, reply,
                                  build_startup_reply(info, txn, reply, sizeof(reply)));
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
