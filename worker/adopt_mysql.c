/* SPDX-License-Identifier: MIT */
/*
 * adopt_mysql.c — turning a leased MySQL/MariaDB socket into a real MYSQL *
 * (adopt/myadopt.c plays the server's part of the handshake), tracking what
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

#include "bytes.h"
#include "internal.h"
#include "myadopt.h"
#include "selfpid.h"
#include "sockio.h"

#define COM_STMT_CLOSE_CODE          0x19
#define COM_STMT_SEND_LONG_DATA_CODE 0x18
#define COM_QUIT_CODE                0x01

/*
 * A released MySQL handle kept for the next lease of the same session in the
 * same process: its socket is an unconnected dummy, it has no statement, no
 * result and no status callback.
 */
struct fp_my_cached {
        MYSQL *my;
        uint64_t slot;             /* lease_id >> 32: pool id and slot index */
        struct fp_lease_mysql was; /* the lease it was adopted for */
};

#define FP_MY_CACHE_MAX 8

/* One forkpool handle's cache (fp->my_cache). */
struct fp_my_cache {
        struct fp_my_cache *next; /* in caches */
        pid_t pid;                /* the process whose handles these are */
        size_t n;
        struct fp_my_cached entries[FP_MY_CACHE_MAX]; /* oldest first */
};

/*
 * cache_lock guards every cache, every fp->my_cache pointer and the list of
 * caches. It is held only to move entries: never across a call into the
 * client library, never while taking a forkpool's io_lock (a fork takes it
 * after them: fp_adopt_mysql_atfork_prepare()).
 */
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fp_my_cache *caches;

/*
 * Forgets the handles of a cache that another process (the parent of a fork)
 * filled: only this process's copies of their dummy sockets are closed.
 * Async-signal-safe.
 */
static void cache_forget(struct fp_my_cache *cache)
{
        for (size_t i = 0; i < cache->n; i++)
                close(mysql_get_socket(cache->entries[i].my));
        cache->n = 0;
        cache->pid = fp_self_pid();
}

/* Under cache_lock: a cache inherited through a fork that bypassed the handlers is emptied. */
static void cache_claim(struct fp_my_cache *cache)
{
        if (cache->pid != fp_self_pid())
                cache_forget(cache);
}

void fp_adopt_mysql_atfork_child(void)
{
        fp_my_adopt_atfork_child();
        for (struct fp_my_cache *c = caches; c; c = c->next)
                cache_forget(c);
        /* Taken by fp_adopt_mysql_atfork_prepare() in the thread that forked: this one. */
        pthread_mutex_unlock(&cache_lock);
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

/*
 * Whether cached handle c may stand for a fresh adoption on lease info now:
 * the same session (slot, thread id, scramble), adopted with the same
 * handshake values, and the handle's own view of the mutable state (status,
 * database, character set, user) is what the supervisor mirrors.
 */
static bool cached_matches(const struct fp_my_cached *c, uint64_t slot,
                           const struct fp_lease_mysql *now)
{
        const struct fp_lease_mysql *was = &c->was;
        MYSQL *m = c->my;
        MY_CHARSET_INFO cs;

        if (c->slot != slot || was->thread_id != now->thread_id ||
            was->protocol_version != now->protocol_version ||
            was->server_capabilities != now->server_capabilities ||
            was->server_ext_capabilities != now->server_ext_capabilities ||
            was->client_flag != now->client_flag || was->client_ext_flag != now->client_ext_flag ||
            was->server_language != now->server_language ||
            memcmp(was->scramble, now->scramble, sizeof(now->scramble)) != 0 ||
            strncmp(was->server_version, now->server_version, sizeof(now->server_version)) != 0 ||
            strncmp(was->user, now->user, sizeof(now->user)) != 0)
                return false;
        if (mysql_thread_id(m) != now->thread_id || m->server_status != now->server_status ||
            memcmp(m->scramble_buff, now->scramble, sizeof(now->scramble)) != 0 ||
            strcmp(m->user ? m->user : "", now->user) != 0 ||
            strcmp(m->db ? m->db : "", now->db) != 0)
                return false;
        mysql_get_character_set_info(m, &cs);
        return cs.number == now->charset_nr && cs.csname && strcmp(cs.csname, now->charset) == 0;
}

/*
 * Takes from lease->fp's cache the handle for lease's session, if it still
 * matches; a cached handle of the same slot that does not is closed (its
 * socket is the dummy: the COM_QUIT goes nowhere). NULL if none.
 */
static MYSQL *cache_take(struct forkpool_lease *lease)
{
        forkpool *fp = lease->fp;
        uint64_t slot = lease->lease_id >> 32;
        MYSQL *hit = NULL, *stale = NULL;

        if (!fp)
                return NULL;
        pthread_mutex_lock(&cache_lock);
        struct fp_my_cache *cache = fp->my_cache;
        if (cache) {
                cache_claim(cache);
                for (size_t i = 0; i < cache->n; i++) {
                        struct fp_my_cached *c = &cache->entries[i];
                        if (c->slot != slot)
                                continue;
                        if (cached_matches(c, slot, &lease->my_info))
                                hit = c->my;
                        else
                                stale = c->my;
                        memmove(c, c + 1, (cache->n - i - 1) * sizeof(*c));
                        cache->n--;
                        break;
                }
        }
        pthread_mutex_unlock(&cache_lock);
        if (stale)
                mysql_close(stale);
        return hit;
}

/*
 * Puts the leased socket under cached handle m and readies it for lease.
 * Returns 0, or a negative errno with m closed (through its dummy) and
 * lease->fd untouched, for the caller to adopt as usual.
 */
static int cache_reuse(struct forkpool_lease *lease, MYSQL *m)
{
        if (((lease->flags & FP_LEASE_TRACK_DIRTY) &&
             mysql_optionsv(m, MARIADB_OPT_STATUS_CALLBACK, track_status, lease) != 0) ||
            dup3(lease->fd, mysql_get_socket(m), O_CLOEXEC) < 0) {
                int r = errno ? -errno : -ENOMEM;
                mysql_close(m); /* its socket is still the dummy */
                return r;
        }
        close(lease->fd);
        /* What a fresh handle would report before its first command. */
        m->affected_rows = 0;
        m->insert_id = 0;
        m->warning_count = 0;
        m->field_count = 0;
        m->info = NULL;
        lease->fd = mysql_get_socket(m);
        lease->my = m;
        return 0;
}

int fp_adopt_mysql(struct forkpool_lease *lease)
{
        char why[FP_ERRTEXT_MAX];
        MYSQL *m = cache_take(lease);
        if (m && cache_reuse(lease, m) == 0)
                return 0;
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

void fp_release_mysql_cached(struct forkpool_lease *lease)
{
        MYSQL *m = lease->my, *evict = NULL;
        forkpool *fp = lease->fp;

        if (!m || !fp || lease->pid != fp_self_pid() || mysql_errno(m) != 0 || m->stmts ||
            m->status != MYSQL_STATUS_READY || m->net.error) {
                fp_abandon_mysql(lease);
                return;
        }
        /* First the dummy: from here no byte of ours can reach the server. */
        if (fp_release_socket(mysql_get_socket(m)) < 0) {
                fp_abandon_mysql(lease);
                return;
        }
        (void)mysql_optionsv(m, MARIADB_OPT_STATUS_CALLBACK, NULL, NULL);
        lease->my = NULL;
        lease->fd = -1;

        pthread_mutex_lock(&cache_lock);
        struct fp_my_cache *cache = fp->my_cache;
        if (!cache) {
                cache = calloc(1, sizeof(*cache));
                if (cache) {
                        cache->pid = fp_self_pid();
                        cache->next = caches;
                        caches = cache;
                        fp->my_cache = cache;
                }
        }
        if (!cache) {
                evict = m; /* out of memory: not kept */
        } else {
                cache_claim(cache);
                if (cache->n == FP_MY_CACHE_MAX) {
                        evict = cache->entries[0].my;
                        memmove(cache->entries, cache->entries + 1,
                                (FP_MY_CACHE_MAX - 1) * sizeof(cache->entries[0]));
                        cache->n--;
                }
                struct fp_my_cached *c = &cache->entries[cache->n++];
                c->my = m;
                c->slot = lease->lease_id >> 32;
                c->was = lease->my_info;
        }
        pthread_mutex_unlock(&cache_lock);
        if (evict)
                mysql_close(evict);
}

void fp_my_cache_close(forkpool *fp)
{
        struct fp_my_cached all[FP_MY_CACHE_MAX];
        size_t n = 0;

        pthread_mutex_lock(&cache_lock);
        struct fp_my_cache *cache = fp->my_cache;
        if (cache) {
                cache_claim(cache);
                n = cache->n;
                memcpy(all, cache->entries, n * sizeof(all[0]));
                for (struct fp_my_cache **p = &caches; *p; p = &(*p)->next)
                        if (*p == cache) {
                                *p = cache->next;
                                break;
                        }
                fp->my_cache = NULL;
        }
        pthread_mutex_unlock(&cache_lock);
        for (size_t i = 0; i < n; i++)
                mysql_close(all[i].my);
        free(cache);
}

void fp_adopt_mysql_atfork_prepare(void)
{
        pthread_mutex_lock(&cache_lock);
}

void fp_adopt_mysql_atfork_parent(void)
{
        pthread_mutex_unlock(&cache_lock);
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
                fp_put_le32(&p, id);
                (void)fp_write_full(fd, pkt, sizeof(pkt));
        }
}

void fp_describe_release_mysql(const struct forkpool_lease *lease, struct fp_msg_release *rel)
{
        MYSQL *m = lease->my;
        const struct fp_lease_mysql *info = &lease->my_info;
        char status[16];
        bool disconnected;

        if (!m && lease->my_reported) {
                /* Used through the raw fd by a client that reported the session's state. */
                const char *db = lease->my_rep_db, *charset = lease->my_rep_charset;
                rel->txn = lease->my_rep_status & SERVER_STATUS_IN_TRANS ? FP_TXN_INTRANS
                                                                         : FP_TXN_IDLE;
                rel->dirty = lease->dirty;
                snprintf(status, sizeof(status), "%u", lease->my_rep_status);
                (void)fp_params_add(rel->params, sizeof(rel->params), &rel->params_len,
                                    FP_MY_PARAM_STATUS, status);
                (void)fp_params_add(rel->params, sizeof(rel->params), &rel->params_len,
                                    FP_MY_PARAM_DATABASE, db);
                (void)fp_params_add(rel->params, sizeof(rel->params), &rel->params_len,
                                    FP_MY_PARAM_CHARSET, charset);
                if (strcmp(db, info->db) != 0 || strcmp(charset, info->charset) != 0 ||
                    ((lease->my_rep_status ^ info->server_status) & SERVER_STATUS_AUTOCOMMIT))
                        rel->dirty |= FP_DIRTY_PARAMS;
                return;
        }
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

/* Copies the NUL-terminated src of at most n - 1 bytes into dst[n]; -EINVAL if it is longer. */
static int copy_name(char *dst, size_t n, const char *src)
{
        size_t len = strnlen(src, n);
        if (len >= n)
                return -EINVAL;
        memcpy(dst, src, len + 1);
        return 0;
}

FORKPOOL_EXPORT int forkpool_lease_mysql_session(const forkpool_lease *lease,
                                                 forkpool_mysql_session *ret)
{
        const struct fp_lease_mysql *my;
        forkpool_mysql_session s;

        if (!lease || !ret || ret->struct_size < offsetof(forkpool_mysql_session, scramble) + 20)
                return -EINVAL;
        if (lease->pid != fp_self_pid())
                return -ECHILD;
        if (lease->db_kind != FP_DB_MYSQL)
                return -EOPNOTSUPP;
        my = &lease->my_info;
        memset(&s, 0, sizeof(s));
        s.thread_id = my->thread_id;
        s.protocol_version = my->protocol_version;
        s.server_capabilities = my->server_capabilities;
        s.server_ext_capabilities = my->server_ext_capabilities;
        s.client_flag = my->client_flag;
        s.client_ext_flag = my->client_ext_flag;
        s.server_language = my->server_language;
        s.server_status = my->server_status;
        s.charset_nr = my->charset_nr;
        _Static_assert(sizeof(s.server_version) == FP_MY_VERSION_MAX, "version size");
        _Static_assert(sizeof(s.charset) == FP_MY_CHARSET_MAX, "charset size");
        _Static_assert(sizeof(s.user) == FP_MY_IDENT_MAX && sizeof(s.db) == FP_MY_IDENT_MAX,
                       "name sizes");
        _Static_assert(sizeof(s.scramble) == FP_MY_SCRAMBLE_LEN, "scramble size");
        memcpy(s.server_version, my->server_version, sizeof(s.server_version));
        memcpy(s.charset, my->charset, sizeof(s.charset));
        memcpy(s.user, my->user, sizeof(s.user));
        memcpy(s.db, my->db, sizeof(s.db));
        memcpy(s.scramble, my->scramble, sizeof(s.scramble));
        size_t n = ret->struct_size < sizeof(s) ? ret->struct_size : sizeof(s);
        s.struct_size = n;
        memcpy(ret, &s, n);
        return 0;
}

FORKPOOL_EXPORT int forkpool_lease_mysql_report(forkpool_lease *lease, unsigned int server_status,
                                                const char *db, const char *charset)
{
        char new_db[FP_MY_IDENT_MAX], new_charset[FP_MY_CHARSET_MAX];

        if (!lease)
                return -EINVAL;
        if (lease->pid != fp_self_pid())
                return -ECHILD;
        if (lease->db_kind != FP_DB_MYSQL || lease->my)
                return -EOPNOTSUPP;
        if (copy_name(new_db, sizeof(new_db), db ? db : lease->my_info.db) < 0 ||
            copy_name(new_charset, sizeof(new_charset),
                      charset ? charset : lease->my_info.charset) < 0)
                return -EINVAL;
        memcpy(lease->my_rep_db, new_db, sizeof(new_db));
        memcpy(lease->my_rep_charset, new_charset, sizeof(new_charset));
        lease->my_rep_status = server_status;
        lease->my_reported = true;
        return 0;
}
