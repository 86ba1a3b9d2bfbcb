/* SPDX-License-Identifier: MIT */
/*
 * fdstore.c — connections kept in systemd's file-descriptor store across
 * restarts and crashes (fdstore.h).
 *
 * The state memfd is an array of struct fp_saved_slot (PostgreSQL and MySQL
 * alike, at a fixed stride), one per (pool id, slot index) of the supervisor
 * that wrote it; a connection's FDNAME, "c<pool id>.<slot index>", says
 * where its record is. Records are written with pwrite() as slots change
 * (connect, lease, return), so a crash leaves them true.
 */
#include "fdstore.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "log.h"
#include "myadopt.h"
#include "myconn.h"
#include "pgadopt.h"
#include "pgconn.h"
#include "supervisor.h"

#define FP_SAVED_SLOT_MAGIC 0x464b5053u /* "SPKF" */
#define STATE_NAME          "state"
#define STATE_RECORDS       ((size_t)FP_SHM_MAX_POOLS * FP_SHM_MAX_SLOTS_PER_POOL)

bool fp_fdstore_active(const struct fp_supervisor *sup)
{
        return sup->fdstore_fd >= 0;
}

static off_t record_offset(uint32_t pool_id, uint32_t index)
{
        return (off_t)(((size_t)pool_id * FP_SHM_MAX_SLOTS_PER_POOL + index) *
                       sizeof(struct fp_saved_slot));
}

int fp_fdstore_init(struct fp_supervisor *sup)
{
        const char *max = getenv("FDSTORE");
        sup->fdstore_fd = -1;
        if (!getenv("NOTIFY_SOCKET") || !max || atoi(max) <= 0)
                return 0;

        int fd = memfd_create("forkpool-state", MFD_CLOEXEC);
        if (fd < 0)
                return log_error_errno(-errno, "cannot create the fd store's state memfd");
        if (ftruncate(fd, (off_t)(STATE_RECORDS * sizeof(struct fp_saved_slot))) < 0) {
                int r = log_error_errno(-errno, "cannot size the fd store's state memfd");
                close(fd);
                return r;
        }
        sup->fdstore_fd = fd;
        return 0;
}

/* Hands the (new) state memfd to systemd, replacing an older one. */
static void store_state_memfd(struct fp_supervisor *sup)
{
        (void)sd_notify(0, "FDSTOREREMOVE=1\nFDNAME=" STATE_NAME);
        int r = sd_pid_notify_with_fds(0, 0, "FDSTORE=1\nFDNAME=" STATE_NAME, &sup->fdstore_fd, 1);
        if (r <= 0)
                log_warning("cannot keep the state in systemd's fd store (%s): a restart will "
                            "close the pooled connections",
                            r < 0 ? strerror(-r) : "no notify socket");
}

void fp_fdstore_save(struct fp_supervisor *sup, struct fp_pool *pool, const struct fp_record *rec)
{
        struct fp_sup_pool *sp = pool->userdata;
        struct fp_saved_slot s;
        enum fp_db_kind kind = sp->driver->kind;

        if (!fp_fdstore_active(sup) || !rec->conn ||
            (kind != FP_DB_POSTGRES && kind != FP_DB_MYSQL))
                return;
        memset(&s, 0, sizeof(s));
        if (kind == FP_DB_POSTGRES) {
                struct fp_msg_lease desc;
                memset(&desc, 0, sizeof(desc));
                sp->driver->describe(rec->conn, &desc);
                s.txn = desc.txn;
                s.pg = desc.pg;
        } else {
                /* Not the driver's describe(): that one counts as handing the connection out. */
                fp_myconn_describe(rec->conn, &s.my, &s.txn);
        }
        s.magic = FP_SAVED_SLOT_MAGIC;
        s.index = rec->index;
        snprintf(s.pool, sizeof(s.pool), "%s", pool->params.name);
        s.db_kind = kind;
        s.state = rec->state == FP_SLOT_LEASED ? FP_SLOT_LEASED : FP_SLOT_IDLE;
        s.holder_pid = rec->state == FP_SLOT_LEASED ? rec->holder_pid : 0;
        s.lease_generation = rec->lease_generation;
        if (pwrite(sup->fdstore_fd, &s, sizeof(s), record_offset(pool->id, rec->index)) !=
            (ssize_t)sizeof(s))
                log_warning_errno(-errno, "pool %s: cannot save slot %u", pool->params.name,
                                  rec->index);

        if (rec->in_fdstore)
                return;
        char msg[128];
        int fd = sp->driver->socket(rec->conn);
        snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=c%u.%u", pool->id, rec->index);
        if (sd_pid_notify_with_fds(0, 0, msg, &fd, 1) > 0)
                ((struct fp_record *)rec)->in_fdstore = true;
}

void fp_fdstore_forget(struct fp_supervisor *sup, struct fp_pool *pool, const struct fp_record *rec)
{
        uint32_t zero = 0;

        if (!fp_fdstore_active(sup) || !rec->in_fdstore)
                return;
        (void)sd_notifyf(0, "FDSTOREREMOVE=1\nFDNAME=c%u.%u", pool->id, rec->index);
        /* The record goes too, so that the next forkpoold does not look for this connection. */
        if (pwrite(sup->fdstore_fd, &zero, sizeof(zero), record_offset(pool->id, rec->index)) !=
            (ssize_t)sizeof(zero))
                log_warning_errno(-errno, "pool %s: cannot clear saved slot %u", pool->params.name,
                                  rec->index);
        ((struct fp_record *)rec)->in_fdstore = false;
}

/* Parses "c<pool id>.<index>". */
static bool parse_conn_name(const char *name, uint32_t *ret_pool, uint32_t *ret_index)
{
        unsigned p, i;
        int n = 0;
        if (sscanf(name, "c%u.%u%n", &p, &i, &n) != 2 || name[n] || p >= FP_SHM_MAX_POOLS ||
            i >= FP_SHM_MAX_SLOTS_PER_POOL)
                return false;
        *ret_pool = p;
        *ret_index = i;
        return true;
}

/* The saved session's id (backend pid, thread id), for messages. */
static int saved_backend_id(const struct fp_saved_slot *s)
{
        return s->db_kind == FP_DB_MYSQL ? (int)s->my.thread_id : s->pg.backend_pid;
}

/*
 * Adopts fd as a connection of sp's driver with s's saved values. Takes fd in
 * every case (closed on failure, never shut down: a worker may still hold
 * it). Returns 0 and the driver's connection in *ret, or a negative errno.
 */
static int adopt_saved(struct fp_supervisor *sup, struct fp_sup_pool *sp, int fd,
                       const struct fp_saved_slot *s, void **ret)
{
        char why[FP_ERRTEXT_MAX];
        int r;

        if (s->db_kind == FP_DB_POSTGRES) {
                PGconn *conn;
                struct fp_pgconn *pc;
                r = fp_pg_adopt(fd, &s->pg, s->txn, &conn);
                if (r < 0) {
                        close(fd);
                        return r;
                }
                r = fp_pgconn_restore(sup->event, conn, &s->pg, s->txn, &pc);
                if (r < 0) {
                        PQfinish(conn);
                        return r;
                }
                *ret = pc;
                return 0;
        }

        MYSQL *m;
        r = fp_my_adopt(fd, &s->my, NULL, NULL, &m, why, sizeof(why));
        if (r < 0) {
                if (why[0])
                        log_warning("fd store: pool %s: thread %u: %s", s->pool, s->my.thread_id,
                                    why);
                close(fd);
                return r;
        }
        r = fp_myconn_restore(sup->event, sp->prepared, m, &s->my, s->state == FP_SLOT_LEASED, ret);
        if (r < 0)
                mysql_close(m);
        return r;
}

/* Adopts one saved connection into its pool. Takes fd in every case. */
static bool restore_one(struct fp_supervisor *sup, int fd, const struct fp_saved_slot *s)
{
        struct fp_sup_pool *sp = fp_supervisor_find_pool(sup, s->pool);
        int backend = saved_backend_id(s);
        void *conn;

        if (!sp || sp->driver->kind != s->db_kind) {
                log_warning("fd store: pool %s is gone: its backend %d is closed", s->pool,
                            backend);
                close(fd); /* never shut down: a worker may still hold it */
                return false;
        }
        int r = adopt_saved(sup, sp, fd, s, &conn);
        if (r < 0) {
                log_warning_errno(r, "fd store: pool %s: cannot adopt backend %d", s->pool,
                                  backend);
                return false;
        }
        bool leased = s->state == FP_SLOT_LEASED;
        r = fp_pool_restore(&sp->pool, s->index, conn, backend, leased, s->holder_pid,
                            s->lease_generation);
        if (r < 0) {
                log_warning("fd store: pool %s: slot %u is taken: backend %d closed", s->pool,
                            s->index, backend);
                sp->driver->close(conn, false);
                return false;
        }
        if (leased)
                log_info("fd store: pool %s: slot %u back, backend %d, leased to pid %d", s->pool,
                         s->index, backend, (int)s->holder_pid);
        else
                log_info("fd store: pool %s: slot %u back, backend %d, idle", s->pool, s->index,
                         backend);
        fp_fdstore_save(sup, &sp->pool, &sp->pool.records[s->index]);
        if (leased)
                fp_supervisor_watch_orphan(sup, sp, s->index, s->holder_pid);
        return true;
}

int fp_fdstore_restore(struct fp_supervisor *sup)
{
        char **names = NULL;
        const struct fp_saved_slot *old = MAP_FAILED;
        int n = sd_listen_fds_with_names(0, &names);
        int restored = 0;

        if (n <= 0)
                goto store;
        for (int i = 0; i < n; i++)
                if (names && names[i] && strcmp(names[i], STATE_NAME) == 0)
                        old = mmap(NULL, STATE_RECORDS * sizeof(struct fp_saved_slot), PROT_READ,
                                   MAP_SHARED, SD_LISTEN_FDS_START + i, 0);
        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                uint32_t pool_id, index;
                const char *name = names ? names[i] : NULL;
                if (!name || !parse_conn_name(name, &pool_id, &index))
                        continue;
                /* It leaves the store under its old name; restored, it comes back under its new. */
                (void)sd_notifyf(0, "FDSTOREREMOVE=1\nFDNAME=%s", name);
                const struct fp_saved_slot *s =
                        old == MAP_FAILED
                                ? NULL
                                : &old[(size_t)pool_id * FP_SHM_MAX_SLOTS_PER_POOL + index];
                if (!s || s->magic != FP_SAVED_SLOT_MAGIC || s->index != index ||
                    (s->db_kind != FP_DB_POSTGRES && s->db_kind != FP_DB_MYSQL)) {
                        log_warning("fd store: nothing saved for connection %s: closed", name);
                        close(fd);
                        continue;
                }
                struct fp_saved_slot copy = *s;
                copy.pool[sizeof(copy.pool) - 1] = '\0';
                if (copy.db_kind == FP_DB_MYSQL) {
                        copy.my.server_version[sizeof(copy.my.server_version) - 1] = '\0';
                        copy.my.charset[sizeof(copy.my.charset) - 1] = '\0';
                        copy.my.user[sizeof(copy.my.user) - 1] = '\0';
                        copy.my.db[sizeof(copy.my.db) - 1] = '\0';
                }
                restored += restore_one(sup, fd, &copy);
        }
        if (old != MAP_FAILED)
                munmap((void *)old, STATE_RECORDS * sizeof(struct fp_saved_slot));
        for (int i = 0; i < n; i++) {
                if (names && names[i] && strcmp(names[i], STATE_NAME) == 0)
                        close(SD_LISTEN_FDS_START + i);
                free(names ? names[i] : NULL);
        }
        free(names);
store:
        if (fp_fdstore_active(sup))
                store_state_memfd(sup);
        return restored;
}

void fp_fdstore_done(struct fp_supervisor *sup)
{
        if (sup->fdstore_fd >= 0)
                close(sup->fdstore_fd);
        sup->fdstore_fd = -1;
}
