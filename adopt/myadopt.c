/* SPDX-License-Identifier: MIT */
/*
 * myadopt.c — making a real MYSQL * on an already-authenticated MySQL/MariaDB
 * socket (myadopt.h), for the worker's leases and the supervisor's restored
 * connections alike.
 *
 * The method: Connector/C connects, with its
 * non-blocking API, to a private Unix socket of this process (adoptsock.c: a
 * socket file in a fresh 0700 directory, which no other uid can reach); we
 * play the server's part of the handshake with the real session's values —
 * version, thread id, capabilities (MariaDB's extended ones too), collation,
 * status and the real scramble (so that mysql_change_user works) — check
 * that the client's HandshakeResponse asks for exactly what the real session
 * negotiated, answer OK, and then dup3 the real socket over the library's.
 * From then on every byte the library sends goes to the real server.
 */
#include "myadopt.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "adoptsock.h"
#include "bytes.h"
#include "sockio.h"

#define STEP_TIMEOUT_MS         2000
#define RESPONSE_MAX            8192
#define PLUGIN_NAME             "mysql_native_password"
#define ER_HANDSHAKE_ERROR_CODE 1043

/* Capability bits that may differ between the two handshakes without meaning anything. */
#define CAPS_IGNORED (CLIENT_REMEMBER_OPTIONS | CLIENT_CONNECT_WITH_DB)

/* The process's private listener; recreated in a child after fork. */
static pthread_mutex_t adopt_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fp_adopt_listener listener = FP_ADOPT_LISTENER_INIT("mysql.sock");

void fp_my_adopt_atfork_child(void)
{
        /* A thread of the parent may have held it at fork; it is not here. */
        pthread_mutex_init(&adopt_lock, NULL);
}

void fp_my_adopt_close_listener(void)
{
        pthread_mutex_lock(&adopt_lock);
        fp_adopt_listener_reset(&listener);
        pthread_mutex_unlock(&adopt_lock);
}

/* Frames payload[0..len) as one packet with sequence number seq and sends it. */
static int send_packet(int fd, unsigned char seq, const unsigned char *payload, size_t len)
{
        unsigned char buf[512];
        if (len + 4 > sizeof(buf))
                return -EMSGSIZE;
        buf[0] = (unsigned char)(len & 0xff);
        buf[1] = (unsigned char)((len >> 8) & 0xff);
        buf[2] = (unsigned char)((len >> 16) & 0xff);
        buf[3] = seq;
        memcpy(buf + 4, payload, len);
        return fp_write_full(fd, buf, len + 4);
}

/* The server greeting (HandshakeV10) of the real session. */
static int send_greeting(int fd, const struct fp_lease_mysql *info)
{
        unsigned char buf[256], *p = buf;
        /* TLS cannot be leased: never offer it (Connector/C 3.4 would take it). */
        uint32_t caps = info->server_capabilities & ~(uint32_t)CLIENT_SSL;
        size_t vlen = strnlen(info->server_version, sizeof(info->server_version) - 1);

        *p++ = (unsigned char)(info->protocol_version ? info->protocol_version : 10);
        memcpy(p, info->server_version, vlen);
        p += vlen;
        *p++ = '\0';
        fp_put_le32(&p, info->thread_id);
        memcpy(p, info->scramble, 8);
        p += 8;
        *p++ = '\0';
        fp_put_le16(&p, caps & 0xffff);
        *p++ = (unsigned char)info->server_language;
        fp_put_le16(&p, info->server_status & ~(uint32_t)SERVER_SESSION_STATE_CHANGED);
        fp_put_le16(&p, caps >> 16);
        *p++ = FP_MY_SCRAMBLE_LEN + 1;
        memset(p, 0, 6);
        p += 6;
        /* MariaDB's extended capabilities, read when CLIENT_MYSQL is clear. */
        fp_put_le32(&p, (caps & CLIENT_MYSQL) ? 0 : info->server_ext_capabilities);
        memcpy(p, info->scramble + 8, FP_MY_SCRAMBLE_LEN - 8);
        p += FP_MY_SCRAMBLE_LEN - 8;
        *p++ = '\0';
        memcpy(p, PLUGIN_NAME, sizeof(PLUGIN_NAME));
        p += sizeof(PLUGIN_NAME);
        return send_packet(fd, 0, buf, (size_t)(p - buf));
}

/*
 * Reads the client's HandshakeResponse and checks that it negotiates what the
 * real session did. Returns 0, -EPROTO with a reason in why, or an I/O error.
 */
static int check_response(int fd, const struct fp_lease_mysql *info, char *why, size_t whylen)
{
        unsigned char head[4], body[RESPONSE_MAX];
        int r = fp_read_full(fd, head, sizeof(head), STEP_TIMEOUT_MS);
        if (r < 0)
                return r;
        size_t len = (size_t)head[0] | (size_t)head[1] << 8 | (size_t)head[2] << 16;
        if (head[3] != 1 || len < 32 || len > sizeof(body)) {
                snprintf(why, whylen, "unexpected handshake response from the client library");
                return -EPROTO;
        }
        r = fp_read_full(fd, body, len, STEP_TIMEOUT_MS);
        if (r < 0)
                return r;

        uint32_t got = fp_get_le32(body) & ~(uint32_t)CAPS_IGNORED;
        uint32_t want = info->client_flag & ~(uint32_t)CAPS_IGNORED;
        if (got != want) {
                snprintf(why, whylen,
                         "capability mismatch: this process's MySQL client library asks for "
                         "capabilities 0x%08x, the leased session negotiated 0x%08x (differing "
                         "bits 0x%08x); forkpoold and its workers need compatible client "
                         "libraries",
                         got, want, got ^ want);
                return -EPROTO;
        }
        if (!(info->server_capabilities & CLIENT_MYSQL)) {
                uint32_t got_ext = fp_get_le32(body + 28);
                if (got_ext != info->client_ext_flag) {
                        snprintf(why, whylen,
                                 "capability mismatch: this process's MySQL client library asks "
                                 "for MariaDB extended capabilities 0x%08x, the leased session "
                                 "negotiated 0x%08x; forkpoold and its workers need compatible "
                                 "client libraries",
                                 got_ext, info->client_ext_flag);
                        return -EPROTO;
                }
        }
        if (body[8] != (unsigned char)(info->charset_nr & 0xff)) {
                snprintf(why, whylen,
                         "character set mismatch: this process's MySQL client library uses "
                         "collation %u for '%s', the leased session %u",
                         body[8], info->charset, info->charset_nr);
                return -EPROTO;
        }
        return 0;
}

static int send_ok(int fd, const struct fp_lease_mysql *info)
{
        unsigned char buf[7], *p = buf;
        *p++ = 0x00; /* OK */
        *p++ = 0x00; /* affected rows */
        *p++ = 0x00; /* insert id */
        fp_put_le16(&p, info->server_status & ~(uint32_t)SERVER_SESSION_STATE_CHANGED);
        fp_put_le16(&p, 0); /* warnings */
        return send_packet(fd, 2, buf, sizeof(buf));
}

static void send_refusal(int fd, const char *why)
{
        unsigned char buf[300], *p = buf;
        size_t n = strlen(why);
        if (n > sizeof(buf) - 16)
                n = sizeof(buf) - 16;
        *p++ = 0xff;
        fp_put_le16(&p, ER_HANDSHAKE_ERROR_CODE);
        memcpy(p, "#08S01", 6);
        p += 6;
        memcpy(p, why, n);
        p += n;
        (void)send_packet(fd, 2, buf, (size_t)(p - buf));
}

/* A new handle with info's character set and the options adoption needs. */
static int handle_new(const struct fp_lease_mysql *info, fp_my_status_fn status_cb,
                      void *status_data, MYSQL **ret)
{
        my_bool off = 0;
        MYSQL *m = mysql_init(NULL);

        if (!m)
                return -ENOMEM;
        if (mysql_optionsv(m, MYSQL_OPT_NONBLOCK, 0) ||
            mysql_optionsv(m, MYSQL_SET_CHARSET_NAME, info->charset) ||
            mysql_optionsv(m, MYSQL_OPT_RECONNECT, &off) ||
            mysql_optionsv(m, MYSQL_OPT_SSL_ENFORCE, &off) ||
            mysql_optionsv(m, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &off) ||
            (status_cb && mysql_optionsv(m, MARIADB_OPT_STATUS_CALLBACK, status_cb, status_data))) {
                mysql_close(m);
                return -ENOMEM;
        }
        *ret = m;
        return 0;
}

/* One attempt on the listener as it is. On failure real_fd is untouched. */
static int adopt_once(int real_fd, const struct fp_lease_mysql *info, fp_my_status_fn status_cb,
                      void *status_data, MYSQL **ret_handle, char *why, size_t whylen)
{
        MYSQL *m, *ret = NULL;
        int srv = -1, step = 0, r;

        r = fp_adopt_listener_open(&listener);
        if (r < 0)
                return r;
        r = handle_new(info, status_cb, status_data, &m);
        if (r < 0)
                return r;

        /* The library adds CLIENT_REMEMBER_OPTIONS itself (a client-local bit). */
        uint32_t flags = info->client_flag & ~(uint32_t)CLIENT_REMEMBER_OPTIONS;
        int status =
                mysql_real_connect_start(&ret, m, NULL, info->user, "",
                                         info->db[0] ? info->db : NULL, 0, listener.path, flags);
        while (status != 0) {
                if ((status & MYSQL_WAIT_READ) && step == 0) {
                        /* It waits for the greeting: accept its connection and greet it. */
                        srv = fp_adopt_listener_accept(&listener, STEP_TIMEOUT_MS);
                        r = srv < 0 ? srv : send_greeting(srv, info);
                        if (r < 0)
                                break;
                        step = 1;
                        status = mysql_real_connect_cont(&ret, m, MYSQL_WAIT_READ);
                } else if ((status & MYSQL_WAIT_READ) && step == 1) {
                        /* It sent its HandshakeResponse and waits for the verdict. */
                        r = check_response(srv, info, why, whylen);
                        if (r == -EPROTO)
                                send_refusal(srv, why);
                        else if (r >= 0)
                                r = send_ok(srv, info);
                        if (r < 0)
                                break;
                        step = 2;
                        status = mysql_real_connect_cont(&ret, m, MYSQL_WAIT_READ);
                } else {
                        /* Anything else the library waits for: let it. */
                        short events = (short)((status & MYSQL_WAIT_READ ? POLLIN : 0) |
                                               (status & MYSQL_WAIT_WRITE ? POLLOUT : 0) |
                                               (status & MYSQL_WAIT_EXCEPT ? POLLPRI : 0));
                        int rev = fp_poll_fd(mysql_get_socket(m), events, STEP_TIMEOUT_MS);
                        if (rev < 0) {
                                r = rev;
                                break;
                        }
                        status = mysql_real_connect_cont(
                                &ret, m,
                                (rev & (POLLIN | POLLHUP | POLLERR) ? MYSQL_WAIT_READ : 0) |
                                        (rev & (POLLOUT | POLLHUP | POLLERR) ? MYSQL_WAIT_WRITE
                                                                             : 0) |
                                        (rev & POLLPRI ? MYSQL_WAIT_EXCEPT : 0));
                }
        }
        if (r >= 0 && (step != 2 || ret != m)) {
                if (!why[0])
                        snprintf(why, whylen, "adopting the connection failed: %s", mysql_error(m));
                r = -EPROTO;
        }
        if (r >= 0 && dup3(real_fd, mysql_get_socket(m), O_CLOEXEC) < 0)
                r = -errno;
        if (srv >= 0)
                close(srv);
        if (r < 0) {
                /* The library still talks to our listener here, never to the real server. */
                mysql_close(m);
                return r;
        }
        close(real_fd);
        *ret_handle = m;
        return 0;
}

/*
 * Adoption recovers from whatever happened to the listener (its directory
 * removed by a tmp cleaner, its backlog flooded, the socket broken): after a
 * failure that is not a refusal, the listener is recreated and the adoption
 * tried once more.
 */
static int adopt_locked(int real_fd, const struct fp_lease_mysql *info, fp_my_status_fn status_cb,
                        void *status_data, MYSQL **ret, char *why, size_t whylen)
{
        int r = adopt_once(real_fd, info, status_cb, status_data, ret, why, whylen);
        if (r >= 0 || r == -ENOMEM || (r == -EPROTO && why[0] && strncmp(why, "adopting", 8)))
                return r;
        fp_adopt_listener_reset(&listener);
        why[0] = '\0';
        return adopt_once(real_fd, info, status_cb, status_data, ret, why, whylen);
}

int fp_my_adopt(int real_fd, const struct fp_lease_mysql *info, fp_my_status_fn status_cb,
                void *status_data, MYSQL **ret, char *err, size_t errlen)
{
        char why[FP_ERRTEXT_MAX] = "";

        pthread_mutex_lock(&adopt_lock);
        int r = adopt_locked(real_fd, info, status_cb, status_data, ret, why, sizeof(why));
        pthread_mutex_unlock(&adopt_lock);
        if (err && errlen > 0)
                snprintf(err, errlen, "%s", r < 0 ? why : "");
        return r;
}
