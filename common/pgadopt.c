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

/*
 * Accepts libpq's connection on the listener and reads its StartupMessage.
 * Anything that is not this process speaking protocol 3.0 is closed and
 * skipped (research/adoption.md §A pitfall 3). Returns the accepted fd.
 */
static int accept_startup(void)
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
                uint32_t head[2];
                if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0 ||
                    cred.pid != getpid() ||
                    fp_read_full(fd, head, sizeof(head), ACCEPT_TIMEOUT_MS) < 0 ||
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

static int adopt_locked(int real_fd, const struct fp_lease_pg *info, uint32_t txn, PGconn **ret)
{
        const char *keys[] = {"host",     "port",    "user",       "dbname",
                              "password", "sslmode", "gssencmode", "target_session_attrs",
                              NULL};
        const char *values[] = {listener_host, FAKE_PORT, info->user, info->dbname, "unused",
                                "disable",     "disable", "any",      NULL};
        char reply[FP_PARAMS_MAX + 256];
        int srv = -1, r;

        r = listener_open();
        if (r < 0)
                return r;
        values[0] = listener_host;

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

int fp_pg_adopt(int real_fd, const struct fp_lease_pg *info, uint32_t txn, PGconn **ret)
{
        pthread_mutex_lock(&adopt_lock);
        int r = adopt_locked(real_fd, info, txn, ret);
        pthread_mutex_unlock(&adopt_lock);
        return r;
}
