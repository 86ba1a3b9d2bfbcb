/* SPDX-License-Identifier: MIT */
/*
 * adopt_pg.c — a lease's real PGconn (adopt/pgadopt.c makes it), giving it
 * back without a Terminate, tracking what changes in the session, and
 * cancelling through the real server.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <libpq-events.h>

#include "internal.h"
#include "pg_cache.h"
#include "pgadopt.h"
#include "pgcancel.h"
#include "sockio.h"

#define CANCEL_TIMEOUT_MS 5000

/*
 * The process's unconnected socket for releases, made once; its identity is
 * checked before each use, in case the application closed our descriptor
 * (a daemon closing every fd) and the number now means something else.
 */
static pthread_mutex_t dummy_lock = PTHREAD_MUTEX_INITIALIZER;
static int dummy_fd = -1;
static dev_t dummy_dev;
static ino_t dummy_ino;

void fp_adopt_pg_atfork_child(void)
{
        /* A thread of the parent may have held these at fork; it is not here. */
        fp_pg_adopt_atfork_child();
        pthread_mutex_init(&dummy_lock, NULL);
}

int fp_release_socket(int fd)
{
        struct stat st;
        int r = -EBADF;

        pthread_mutex_lock(&dummy_lock);
        if (dummy_fd >= 0 &&
            (fstat(dummy_fd, &st) < 0 || st.st_dev != dummy_dev || st.st_ino != dummy_ino))
                dummy_fd = -1; /* not ours any more: never close it, just forget it */
        if (dummy_fd < 0) {
                int d = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (d >= 0 && fstat(d, &st) == 0) {
                        dummy_fd = d;
                        dummy_dev = st.st_dev;
                        dummy_ino = st.st_ino;
                } else if (d >= 0) {
                        close(d);
                }
        }
        if (dummy_fd >= 0)
                r = dup3(dummy_fd, fd, O_CLOEXEC) < 0 ? -errno : 0;
        pthread_mutex_unlock(&dummy_lock);
        return r < 0 ? fp_neutralize_fd(fd) : 0;
}

int fp_adopt_pg(struct forkpool_lease *lease)
{
        PGconn *conn;
        int fd = lease->fd;
        int r = fp_pg_adopt(fd, &lease->info, lease->txn, &conn);
        if (r < 0)
                return r;
        fp_pg_cache_learn_defaults(conn);
        lease->fd = PQsocket(conn);
        lease->pg = conn;
        return 0;
}

void fp_abandon_pg(struct forkpool_lease *lease)
{
        if (lease->pg) {
                /* PQfinish's Terminate goes to the unconnected dummy and fails quietly. */
                (void)fp_release_socket(PQsocket(lease->pg));
                PQfinish(lease->pg);
                lease->pg = NULL;
        } else if (lease->fd >= 0) {
                close(lease->fd);
        }
        lease->fd = -1;
}

/* The session-changing commands, by their command tag (PQcmdStatus). */
static uint32_t dirty_from_tag(const char *tag)
{
        static const struct {
                const char *prefix;
                uint32_t dirty;
        } tags[] = {
                {"SET", FP_DIRTY_SET},        {"RESET", FP_DIRTY_SET},
                {"LISTEN", FP_DIRTY_LISTEN},  {"PREPARE", FP_DIRTY_PREPARE},
                {"CREATE", FP_DIRTY_OBJECTS}, {"DECLARE", FP_DIRTY_OBJECTS},
                {"LOAD", FP_DIRTY_OBJECTS},   {"ALTER", FP_DIRTY_OBJECTS},
                {"DROP", FP_DIRTY_OBJECTS},   {"SELECT", 0},
        };
        for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++)
                if (strncmp(tag, tags[i].prefix, strlen(tags[i].prefix)) == 0)
                        return tags[i].dirty;
        return 0;
}

/*
 * What a SELECT's result columns give away: session advisory locks and
 * set_config() (unless the query renamed the column). A transaction-level
 * lock (pg_advisory_xact_lock) ends with the transaction and does not count.
 */
static uint32_t dirty_from_columns(const PGresult *res)
{
        uint32_t dirty = 0;
        int n = PQnfields(res);
        for (int i = 0; i < n && i < 16; i++) {
                const char *name = PQfname(res, i);
                if (!name || (name[0] != 'p' && name[0] != 's'))
                        continue;
                if (strncmp(name, "pg_advisory_lock", 16) == 0 ||
                    strncmp(name, "pg_try_advisory_lock", 20) == 0)
                        dirty |= FP_DIRTY_OBJECTS;
                else if (strcmp(name, "set_config") == 0)
                        dirty |= FP_DIRTY_SET;
        }
        return dirty;
}

/*
 * What a command did to the session's protocol-level statements (struct
 * forkpool_lease.statements), by its tag: DEALLOCATE ALL and DISCARD ALL
 * drop them all; a DEALLOCATE of one name (the drop-in never sends its own)
 * may have dropped one of the set.
 */
static void track_statements(struct forkpool_lease *lease, const char *tag)
{
        if (!tag || tag[0] != 'D')
                return;
        if (strcmp(tag, "DEALLOCATE ALL") == 0 || strcmp(tag, "DISCARD ALL") == 0) {
                lease->statements.count = 0;
                lease->statements_known = true;
        } else if (strcmp(tag, "DEALLOCATE") == 0)
                lease->statements_known = false;
}

static int track_event(PGEventId id, void *info, void *pass_through)
{
        struct fp_session_tracker *tracker = pass_through;

        if (id == PGEVT_CONNDESTROY) {
                if (tracker->lease)
                        tracker->lease->tracker = NULL;
                free(tracker);
                return 1;
        }
        if (id != PGEVT_RESULTCREATE || !tracker->lease)
                return 1;
        const PGresult *res = ((PGEventResultCreate *)info)->result;
        const char *tag = PQcmdStatus((PGresult *)res);
        track_statements(tracker->lease, tag);
        if (PQresultStatus(res) == PGRES_COMMAND_OK && (!tag || !*tag))
                tracker->lease->dirty |= FP_DIRTY_PREPARE; /* PQprepare: a named statement */
        else if (PQresultStatus(res) == PGRES_TUPLES_OK)
                tracker->lease->dirty |= dirty_from_columns(res);
        else if (tag)
                tracker->lease->dirty |= dirty_from_tag(tag);
        return 1;
}

int fp_track_pg_session(struct forkpool_lease *lease)
{
        struct fp_session_tracker *tracker = malloc(sizeof(*tracker));
        if (!tracker)
                return -ENOMEM;
        tracker->lease = lease;
        if (!PQregisterEventProc(lease->pg, track_event, "forkpool", tracker)) {
                free(tracker);
                return -ENOMEM;
        }
        /* Found again by fp_attach_pg() when the PGconn serves another lease. */
        (void)PQsetInstanceData(lease->pg, track_event, tracker);
        lease->tracker = tracker;
        return 0;
}

bool fp_pg_tracked(PGconn *conn)
{
        return PQinstanceData(conn, track_event) != NULL;
}

void fp_untrack_pg(struct forkpool_lease *lease)
{
        if (lease->tracker)
                lease->tracker->lease = NULL;
        lease->tracker = NULL;
}

int fp_attach_pg(struct forkpool_lease *lease, PGconn *conn)
{
        lease->pg = conn;
        lease->fd = PQsocket(conn);
        if (!(lease->flags & FP_LEASE_TRACK_DIRTY))
                return 0;
        struct fp_session_tracker *tracker = PQinstanceData(conn, track_event);
        if (!tracker)
                return fp_track_pg_session(lease);
        tracker->lease = lease;
        lease->tracker = tracker;
        return 0;
}

int fp_cancel_pg(const struct forkpool_lease *lease)
{
        const struct fp_lease_pg *info = &lease->info;

        if (!info->has_cancel_key || info->server_addr_len == 0 ||
            info->server_addr_len > sizeof(info->server_addr))
                return -EOPNOTSUPP;
        return fp_pg_cancel_request((const struct sockaddr *)&info->server_addr,
                                    info->server_addr_len, info->backend_pid, info->cancel_key,
                                    CANCEL_TIMEOUT_MS);
}
