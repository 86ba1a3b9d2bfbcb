/* SPDX-License-Identifier: MIT */
/*
 * fdstore.c — connections kept in systemd's file-descriptor store across
 * restarts and crashes (fdstore.h).
 *
 * The state memfd is a header and an array of struct fp_saved_slot
 * (PostgreSQL and MySQL alike, at a fixed stride), one per (pool id, slot
 * index) of the supervisor that wrote it (savedstate.h); a connection's
 * FDNAME, "c<epoch>.<pool id>.<slot index>", says which supervisor stored it
 * and where its record is. Records are written with pwrite() as slots change
 * (connect, lease, return), so a crash leaves them true; they are read back
 * with pread() and checked, never mapped.
 */
#include "fdstore.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "log.h"

#define STATE_NAME "state"

bool fp_fdstore_active(const struct fp_fdstore *store)
{
        return store->fd >= 0;
}

/* A random epoch for this supervisor's store names; never 0. */
static uint64_t new_epoch(void)
{
        uint64_t epoch = 0;
        while (epoch == 0)
                if (getrandom(&epoch, sizeof(epoch), 0) != (ssize_t)sizeof(epoch)) {
                        struct timespec ts;
                        clock_gettime(CLOCK_REALTIME, &ts);
                        epoch = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^
                                ((uint64_t)getpid() << 16);
                }
        return epoch;
}

int fp_fdstore_init(struct fp_fdstore *store)
{
        const char *max = getenv("FDSTORE");
        struct fp_saved_header hdr;
        int r;

        store->fd = -1;
        if (!getenv("NOTIFY_SOCKET") || !max || atoi(max) <= 0)
                return 0;

        int fd = memfd_create("forkpool-state", MFD_CLOEXEC);
        if (fd < 0)
                return log_error_errno(-errno, "cannot create the fd store's state memfd");
        store->epoch = new_epoch();
        fp_saved_header_init(&hdr, store->epoch);
        if (ftruncate(fd, (off_t)fp_saved_state_size()) < 0) {
                r = log_error_errno(-errno, "cannot size the fd store's state memfd");
                close(fd);
                return r;
        }
        if (pwrite(fd, &hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr)) {
                r = log_error_errno(errno > 0 ? -errno : -EIO,
                                    "cannot write the fd store's state header");
                close(fd);
                return r;
        }
        store->fd = fd;
        return 0;
}

/* Hands the (new) state memfd to systemd, replacing an older one. */
static void store_state_memfd(struct fp_fdstore *store)
{
        (void)sd_notify(0, "FDSTOREREMOVE=1\nFDNAME=" STATE_NAME);
        int r = sd_pid_notify_with_fds(0, 0, "FDSTORE=1\nFDNAME=" STATE_NAME, &store->fd, 1);
        if (r <= 0)
                log_warning("cannot keep the state in systemd's fd store (%s): a restart will "
                            "close the pooled connections",
                            r < 0 ? strerror(-r) : "no notify socket");
}

void fp_fdstore_save(struct fp_fdstore *store, const struct fp_pool *pool,
                     const struct fp_db_driver *driver, struct fp_record *rec)
{
        struct fp_saved_slot s;

        if (!fp_fdstore_active(store) || !rec->conn || !driver->save)
                return;
        memset(&s, 0, sizeof(s));
        driver->save(rec->conn, &s);
        s.magic = FP_SAVED_SLOT_MAGIC;
        s.index = rec->index;
        snprintf(s.pool, sizeof(s.pool), "%s", pool->params.name);
        s.db_kind = driver->kind;
        s.state = rec->state == FP_SLOT_LEASED ? FP_SLOT_LEASED : FP_SLOT_IDLE;
        s.holder_pid = rec->state == FP_SLOT_LEASED ? rec->holder_pid : 0;
        s.lease_generation = rec->lease_generation;
        if (rec->state == FP_SLOT_LEASED)
                s.lease_id = rec->restored ? rec->restored_lease_id : fp_record_lease_id(pool, rec);
        if (pwrite(store->fd, &s, sizeof(s), (off_t)fp_saved_record_offset(pool->id, rec->index)) !=
            (ssize_t)sizeof(s))
                log_warning_errno(-errno, "pool %s: cannot save slot %u", pool->params.name,
                                  rec->index);

        if (rec->in_fdstore)
                return;
        char name[FP_SAVED_NAME_MAX], msg[128];
        int fd = driver->socket(rec->conn);
        fp_saved_name_format(name, sizeof(name), store->epoch, pool->id, rec->index);
        snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=%s", name);
        if (sd_pid_notify_with_fds(0, 0, msg, &fd, 1) > 0)
                rec->in_fdstore = true;
}

void fp_fdstore_forget(struct fp_fdstore *store, const struct fp_pool *pool, struct fp_record *rec)
{
        uint32_t zero = 0;
        char name[FP_SAVED_NAME_MAX];

        if (!fp_fdstore_active(store) || !rec->in_fdstore)
                return;
        fp_saved_name_format(name, sizeof(name), store->epoch, pool->id, rec->index);
        (void)sd_notifyf(0, "FDSTOREREMOVE=1\nFDNAME=%s", name);
        /* The record goes too, so that the next forkpoold does not look for this connection. */
        if (pwrite(store->fd, &zero, sizeof(zero),
                   (off_t)fp_saved_record_offset(pool->id, rec->index)) != (ssize_t)sizeof(zero))
                log_warning_errno(-errno, "pool %s: cannot clear saved slot %u", pool->params.name,
                                  rec->index);
        rec->in_fdstore = false;
}

/* Adopts one saved connection into its pool. Takes fd in every case. */
static bool restore_one(struct fp_fdstore *store, sd_event *event,
                        const struct fp_fdstore_pools *pools, int fd, const struct fp_saved_slot *s)
{
        const struct fp_db_driver *driver = NULL;
        void *prepared = NULL;
        struct fp_pool *pool = pools->find(pools->ctx, s->pool, &driver, &prepared);
        int backend = fp_saved_slot_backend_id(s);
        void *conn;

        if (!pool || driver->kind != s->db_kind || !driver->restore) {
                log_warning("fd store: pool %s is gone: its backend %d is closed", s->pool,
                            backend);
                close(fd); /* never shut down: a worker may still hold it */
                return false;
        }
        int r = driver->restore(event, prepared, fd, s, &conn);
        if (r < 0) {
                log_warning_errno(r, "fd store: pool %s: cannot adopt backend %d", s->pool,
                                  backend);
                return false;
        }
        bool leased = s->state == FP_SLOT_LEASED;
        /*
         * An idle connection's next lease is this supervisor's: its generation
         * goes on, its id has this pool's new tag. A held lease keeps its id.
         */
        r = fp_pool_restore(pool, s->index, conn, backend, leased, s->holder_pid,
                            s->lease_generation);
        if (r < 0) {
                log_warning("fd store: pool %s: slot %u is taken: backend %d closed", s->pool,
                            s->index, backend);
                driver->close(conn, false);
                return false;
        }
        if (leased)
                pool->records[s->index].restored_lease_id = s->lease_id;
        if (leased)
                log_info("fd store: pool %s: slot %u back, backend %d, leased to pid %d", s->pool,
                         s->index, backend, (int)s->holder_pid);
        else
                log_info("fd store: pool %s: slot %u back, backend %d, idle", s->pool, s->index,
                         backend);
        fp_fdstore_save(store, pool, driver, &pool->records[s->index]);
        if (leased)
                pools->restored_leased(pools->ctx, pool, s->index, s->holder_pid);
        return true;
}

/*
 * Checks the previous supervisor's state memfd: returns 0 and its epoch, or a
 * negative errno (logged) when its records cannot be trusted.
 */
static int state_check(int fd, uint64_t *ret_epoch)
{
        struct fp_saved_header hdr;
        struct stat st;
        ssize_t n;
        int r;

        if (fstat(fd, &st) < 0)
                return log_warning_errno(-errno, "fd store: cannot read the saved state");
        n = pread(fd, &hdr, sizeof(hdr), 0);
        r = fp_saved_header_check(&hdr, n > 0 ? (size_t)n : 0,
                                  st.st_size > 0 ? (uint64_t)st.st_size : 0, ret_epoch);
        if (r == -EPROTONOSUPPORT)
                log_warning("fd store: the saved state is of another layout version (%u, this "
                            "forkpoold reads %u): its connections are closed",
                            hdr.version, FP_SAVED_STATE_VERSION);
        else if (r < 0)
                log_warning("fd store: the saved state is not one this forkpoold wrote, or is "
                            "truncated (%lld bytes): its connections are closed",
                            (long long)st.st_size);
        return r;
}

/* Reads and checks the saved record for (pool id, index): 0 and *ret, or a negative errno. */
static int state_read(int fd, uint32_t pool_id, uint32_t index, struct fp_saved_slot *ret)
{
        struct fp_saved_slot raw;
        ssize_t n = pread(fd, &raw, sizeof(raw), (off_t)fp_saved_record_offset(pool_id, index));
        if (n < 0)
                return -errno;
        return fp_saved_record_check(&raw, (size_t)n, index, ret);
}

int fp_fdstore_restore(struct fp_fdstore *store, sd_event *event,
                       const struct fp_fdstore_pools *pools)
{
        char **names = NULL;
        int n = sd_listen_fds_with_names(0, &names);
        int restored = 0, state_fd = -1;
        uint64_t epoch = 0;
        struct fp_saved_slot *saved = NULL;
        int *status = NULL;
        uint16_t *tags = NULL;
        size_t n_tags = 0;

        if (n <= 0)
                goto store;
        saved = calloc((size_t)n, sizeof(*saved));
        status = calloc((size_t)n, sizeof(*status));
        tags = calloc((size_t)n, sizeof(*tags));
        if (!saved || !status || !tags) {
                /* Nothing is restored; the descriptors close when this process exits. */
                log_error("fd store: out of memory: the saved connections are not restored");
                goto done;
        }
        for (int i = 0; i < n; i++)
                if (names && names[i] && strcmp(names[i], STATE_NAME) == 0 &&
                    state_check(SD_LISTEN_FDS_START + i, &epoch) == 0)
                        state_fd = SD_LISTEN_FDS_START + i;

        /* First every record: the lease ids still held decide this supervisor's. */
        for (int i = 0; i < n; i++) {
                uint64_t name_epoch;
                uint32_t pool_id, index;
                const char *name = names ? names[i] : NULL;
                status[i] = 1; /* not a connection of ours */
                if (!name || strcmp(name, STATE_NAME) == 0)
                        continue;
                if (!fp_saved_name_parse(name, &name_epoch, &pool_id, &index)) {
                        /* An older forkpoold's "c<pool>.<slot>" is closed; others are not ours. */
                        unsigned p, q;
                        int end = 0;
                        if (sscanf(name, "c%u.%u%n", &p, &q, &end) == 2 && name[end] == '\0')
                                status[i] = -EPROTONOSUPPORT;
                        continue;
                }
                if (state_fd < 0 || name_epoch != epoch)
                        status[i] = -ENOENT;
                else
                        status[i] = state_read(state_fd, pool_id, index, &saved[i]);
                if (status[i] == 0 && saved[i].state == FP_SLOT_LEASED)
                        tags[n_tags++] = (uint16_t)fp_lease_id_pool(saved[i].lease_id);
        }
        pools->choose_lease_tags(pools->ctx, tags, n_tags);

        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                const char *name = names ? names[i] : NULL;
                if (status[i] == 1)
                        continue;
                /* It leaves the store under its old name; restored, it comes back under its new. */
                (void)sd_notifyf(0, "FDSTOREREMOVE=1\nFDNAME=%s", name);
                int r = status[i];
                if (r < 0) {
                        log_warning("fd store: %s for connection %s: closed",
                                    r == -EBADMSG           ? "a malformed saved record"
                                    : r == -EPROTONOSUPPORT ? "no state this forkpoold can read"
                                                            : "nothing saved",
                                    name);
                        close(fd); /* never shut down: a worker may still hold it */
                        continue;
                }
                restored += restore_one(store, event, pools, fd, &saved[i]);
        }
done:
        for (int i = 0; i < n; i++) {
                if (names && names[i] && strcmp(names[i], STATE_NAME) == 0)
                        close(SD_LISTEN_FDS_START + i);
                free(names ? names[i] : NULL);
        }
        free(names);
        if (saved)
                explicit_bzero(saved, (size_t)n * sizeof(*saved)); /* cancel keys, scrambles */
        free(saved);
        free(status);
        free(tags);
store:
        if (fp_fdstore_active(store))
                store_state_memfd(store);
        return restored;
}

void fp_fdstore_done(struct fp_fdstore *store)
{
        if (store->fd >= 0)
                close(store->fd);
        store->fd = -1;
}
