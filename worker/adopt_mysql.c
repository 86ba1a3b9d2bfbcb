/* SPDX-License-Identifier: MIT */
/*
 * adopt_mysql.c — turning a leased MySQL/MariaDB socket into a real MYSQL *
 * (common/myadopt.c plays the server's part of the handshake), tracking what
 * the holder changes in the session, and giving the socket back without a
 * COM_QUIT.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <errmsg.h>
#include <mysql.h>

#include "internal.h"
#include "myadopt.h"
#include "sockio.h"

#define COM_STMT_CLOSE_CODE          0x19
#define COM_STMT_SEND_LONG_DATA_CODE 0x18
#define COM_QUIT_CODE                0x01

void fp_adopt_mysql_atfork_child(void)
{
        fp_my_adopt_atfork_child();
}

static void put_u32(unsigned char **p, uint32_t v)
{
        (*p)[0] = (unsigned char)(v & 0xff);
        (*p)[1] = (unsigned char)((v >> 8) & 0xff);
        (*p)[2] = (unsigned char)((v >> 16) & 0xff);
        (*p)[3] = (unsigned char)((v >> 24) & 0xff);
        *p += 4;
}

/* What a status callback of a TRACK_DIRTY lease records (reset_on_return = auto). */
static void track_status(void *data, enum enum_mariadb_status_info type, ...)
{
        struct forkpool_lease *lease = data;
        va_list ap;

        va_start(ap, type);
        if (type == STATUS_TYPE) {
                unsigned int status = va_arg(ap, unsigned int);
                if (status & SERVER_SESSION_STATE_CHANGED)
                        lease->dirty |= FP_DIRTY_SET;
        } else if (type == SESSION_TRACK_TYPE) {
                enum enum_session_state_type what = va_arg(ap, enum enum_session_state_type);
                switch (what) {
                case SESSION_TRACK_SCHEMA:
                        lease->dirty |= FP_DIRTY_PARAMS;
                        break;
                case SESSION_TRACK_SYSTEM_VARIABLES:
                        lease->dirty |= FP_DIRTY_SET;
                        break;
                case SESSION_TRACK_STATE_CHANGE:
                        /* User variables, temporary tables, prepared statements, … */
                        lease->dirty |= FP_DIRTY_OBJECTS;
                        break;
                default:
                        break;
                }
        }
        va_end(ap);
}

int fp_adopt_mysql(struct forkpool_lease *lease)
{
        char why[FP_ERRTEXT_MAX];
        MYSQL *m;
        int r = fp_my_adopt(lease->fd, &lease->my_info,
                            (lease->flags & FP_LEASE_TRACK_DIRTY) ? track_status : NULL, lease, &m,
                            why, sizeof(why));
        if (r < 0) {
                if (why[0])
                        fp_set_last_error(why);
                return r;
        }
        lease->fd = mysql_get_socket(m);
        lease->my = m;
        return 0;
}

void fp_abandon_mysql(struct forkpool_lease *lease)
{
        if (lease->my) {
                /* mysql_close()'s COM_QUIT goes to the unconnected dummy and fails quietly. */
                (void)fp_release_socket(mysql_get_socket(lease->my));
                mysql_close(lease->my);
                lease->my = NULL;
        } else if (lease->fd >= 0) {
                close(lease->fd);
        }
        lease->fd = -1;
}

void fp_forget_mysql(struct forkpool_lease *lease)
{
        /* The caller keeps the handle: the lease's callback must not outlive the lease. */
        if (lease->my && (lease->flags & FP_LEASE_TRACK_DIRTY))
                (void)mysql_optionsv(lease->my, MARIADB_OPT_STATUS_CALLBACK, NULL, NULL);
        lease->my = NULL;
        lease->fd = -1;
}

/*
 * Whether the handle is between commands: every reply read, every result
 * set consumed, nothing unread on the socket. Connector/C keeps no "reply
 * pending" flag: a command whose reply has not been read leaves the packet
 * sequence at 1 (the command was packet 0), which only the commands without
 * a reply (COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA) also do.
 */
static bool at_boundary(MYSQL *m, bool *ret_disconnected)
{
        unsigned int err = mysql_errno(m);
        *ret_disconnected = err == CR_SERVER_GONE_ERROR || err == CR_SERVER_LOST;
        if (*ret_disconnected)
                return false;
        if (m->status != MYSQL_STATUS_READY || (m->server_status & SERVER_MORE_RESULTS_EXIST))
                return false;
        if (m->net.pkt_nr == 1 && m->net.buff) {
                unsigned char cmd = m->net.buff[4];
                if (cmd != COM_STMT_CLOSE_CODE && cmd != COM_STMT_SEND_LONG_DATA_CODE &&
                    cmd != COM_QUIT_CODE)
                        return false;
        }
        char byte;
        ssize_t n = recv(mysql_get_socket(m), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0) {
                *ret_disconnected = true;
                return false;
        }
        return n < 0; /* EAGAIN: nothing unread */
}

/*
 * Closes, on the server, the prepared statements the caller left open:
 * mysql_close() only forgets them on our side, and the session goes on. One
 * COM_STMT_CLOSE each (it has no reply); the caller's handles stay valid for
 * mysql_stmt_close(), which then only frees them.
 */
static void close_left_statements(MYSQL *m)
{
        int fd = mysql_get_socket(m);
        for (LIST *e = m->stmts; e; e = e->next) {
                MYSQL_STMT *stmt = e->data;
                if (!stmt || stmt->mysql != m || stmt->state < MYSQL_STMT_PREPARED)
                        continue;
                unsigned char pkt[9] = {5, 0, 0, 0, COM_STMT_CLOSE_CODE};
                uint32_t id = (uint32_t)stmt->stmt_id;
                unsigned char *p = pkt + 5;
                put_u32(&p, id);
                (void)fp_write_full(fd, pkt, sizeof(pkt));
        }
}

void fp_describe_release_mysql(const struct forkpool_lease *lease, struct fp_msg_release *rel)
{
        MYSQL *m = lease->my;
        const struct fp_lease_mysql *info = &lease->my_info;
        char status[16];
        bool disconnected;

        if (!m) {
                /* Used through the raw fd (or not at all): state unknown to us. */
                rel->txn = FP_TXN_UNKNOWN;
                rel->dirty = FP_DIRTY_UNKNOWN;
                return;
        }
        if (!at_boundary(m, &disconnected)) {
                rel->flags |= disconnected ? FP_RELEASE_DISCONNECTED : FP_RELEASE_NOT_AT_BOUNDARY;
                rel->txn = FP_TXN_UNKNOWN;
                return;
        }
        close_left_statements(m);
        rel->txn = m->server_status & SERVER_STATUS_IN_TRANS ? FP_TXN_INTRANS : FP_TXN_IDLE;
        rel->dirty = lease->dirty;

        const char *db = m->db ? m->db : "";
        const char *charset = mysql_character_set_name(m);
        snprintf(status, sizeof(status), "%u", m->server_status);
        (void)fp_params_add(rel->params, sizeof(rel->params), &rel->params_len, FP_MY_PARAM_STATUS,
                            status);
        (void)fp_params_add(rel->params, sizeof(rel->params), &rel->params_len,
                            FP_MY_PARAM_DATABASE, db);
        if (charset)
                (void)fp_params_add(rel->params, sizeof(rel->params), &rel->params_len,
                                    FP_MY_PARAM_CHARSET, charset);
        if (strcmp(db, info->db) != 0 || (charset && strcmp(charset, info->charset) != 0) ||
            ((m->server_status ^ info->server_status) & SERVER_STATUS_AUTOCOMMIT))
                rel->dirty |= FP_DIRTY_PARAMS;
}

bool fp_sticky_keep_mysql(struct forkpool_lease *lease)
{
        MYSQL *m = lease->my;
        bool disconnected;

        /* Its prepared statements stay with the process, like the handle. */
        if (!at_boundary(m, &disconnected))
                return false;
        if ((m->server_status & SERVER_STATUS_IN_TRANS) && mysql_rollback(m) != 0)
                return false;
        return !(m->server_status & SERVER_STATUS_IN_TRANS);
}
