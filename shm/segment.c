/* SPDX-License-Identifier: MIT */
/*
 * segment.c — creating, finding, mapping and reading forkpool's shared
 * segment.
 *
 * Where the segment lives, and why readers can trust it:
 *
 * - /dev/shm is writable by every local user, so no name in it can be
 *   reserved. The supervisor therefore never depends on one: each segment it
 *   publishes gets a fresh random name, /forkpool.<hash of the socket
 *   path>.<random>, created with O_EXCL (another name is drawn if it is
 *   taken). Whatever another user has put in /dev/shm cannot keep it from
 *   starting. After creating the new segment it marks obsolete and unlinks
 *   the older segments of the same socket path that belong to its own uid
 *   (a stale one of a killed predecessor, the one it replaces on reload), and
 *   leaves anybody else's alone.
 *
 * - Readers (workers, forkpoolctl) find the segment by that prefix and trust
 *   one only if it is a regular file owned by the user that owns the control
 *   socket (the supervisor's; with socket activation set SocketUser= to the
 *   service's user) or by root, and writable by nobody else (mode 0640). Any
 *   other candidate is ignored, so a file someone else created is never
 *   mapped, and a FIFO or device is never even opened (O_NONBLOCK, and only
 *   after fstatat says regular file).
 *
 * - A mapped file that shrinks kills its readers with SIGBUS. Only the
 *   owner (or root) can truncate a trusted segment, and the supervisor sizes
 *   a segment once, before anyone can find it (its header's magic is written
 *   last), and never truncates it afterwards: a replaced segment is marked
 *   obsolete and unlinked, so that mappings of it stay valid. Readers map
 *   exactly the size fstat reported and check that the header agrees.
 *
 * - Passing a sealed memfd (F_SEAL_SHRINK) over the control socket would
 *   remove the names altogether, at the price of a control request for
 *   every reader (forkpoolctl status included); not done here.
 */
#include "segment.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Readers give up after this many torn reads; the writer holds the lock for microseconds. */
#define SNAPSHOT_RETRIES 10000
/* Where glibc's shm_open() puts its names. */
#define SHM_DIR "/dev/shm"
/* Tries at a random name that is not taken. */
#define CREATE_TRIES 16

void fp_segment_name(const char *socket_path, char ret_name[FP_SHM_NAME_MAX])
{
        /* FNV-1a 64: stable, no dependency, and collisions only matter between two
         * instances on one host that would also have to share a socket path. */
        uint64_t h = 0xcbf29ce484222325ull;
        for (const unsigned char *p = (const unsigned char *)socket_path; *p; p++) {
                h ^= *p;
                h *= 0x100000001b3ull;
        }
        snprintf(ret_name, FP_SHM_NAME_MAX, "/forkpool.%016llx", (unsigned long long)h);
}

static size_t segment_events_offset(uint32_t pool_count, uint32_t slot_count)
{
        return sizeof(struct fp_shm_header) + (size_t)pool_count * sizeof(struct fp_shm_pool) +
               (size_t)slot_count * sizeof(struct fp_shm_slot);
}

static size_t segment_total_size(uint32_t pool_count, uint32_t slot_count)
{
        return segment_events_offset(pool_count, slot_count) +
               (size_t)FP_SHM_EVENTS * sizeof(struct fp_shm_event);
}

/* Opens the directory of the segments, for the *at() calls. Returns its fd or a negative errno. */
static int shm_dir_open(void)
{
        int fd = open(SHM_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        return fd;
}

/*
 * Marks our segment dir/name obsolete so that mapped readers reopen, then
 * unlinks it. Only a regular file of our uid is touched: it is never
 * truncated, so mapping its header cannot fault.
 */
static void segment_retire_at(int dir, const char *name)
{
        struct stat st;
        int fd = openat(dir, name, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
                return;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
                close(fd);
                return;
        }
        if ((size_t)st.st_size >= sizeof(struct fp_shm_header)) {
                struct fp_shm_header *hdr =
                        mmap(NULL, sizeof(*hdr), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
                if (hdr != MAP_FAILED) {
                        if (hdr->magic == FP_SHM_MAGIC)
                                __atomic_store_n(&hdr->obsolete, 1, __ATOMIC_RELEASE);
                        munmap(hdr, sizeof(*hdr));
                }
        }
        close(fd);
        (void)unlinkat(dir, name, 0);
}

/* Whether /dev/shm entry name is prefix ("forkpool.<hash>") or prefix + "." + anything. */
static bool name_matches(const char *entry, const char *prefix)
{
        size_t n = strlen(prefix);
        return strncmp(entry, prefix, n) == 0 && (entry[n] == '\0' || entry[n] == '.');
}

int fp_segment_create(struct fp_segment *seg, const char *name, uint32_t pool_count,
                      uint32_t slot_count, unsigned mode, int gid)
{
        size_t size = segment_total_size(pool_count, slot_count);
        int dir, fd, r;

        if (pool_count > FP_SHM_MAX_POOLS || strlen(name) >= FP_SHM_NAME_MAX || name[0] != '/' ||
            strchr(name + 1, '/'))
                return -EINVAL;
        dir = shm_dir_open();
        if (dir < 0)
                return dir;

        /* A stale segment of ours goes; one of another user's we leave and fail on. */
        segment_retire_at(dir, name + 1);
        fd = openat(dir, name + 1, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        if (fd < 0) {
                r = -errno;
                close(dir);
                return r;
        }
        /* The mode we promised, whatever the umask; the size, once and for good. */
        if (fchmod(fd, mode) < 0 || (gid >= 0 && fchown(fd, (uid_t)-1, (gid_t)gid) < 0) ||
            ftruncate(fd, (off_t)size) < 0) {
                r = -errno;
                goto err_unlink;
        }

        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
                r = -errno;
                goto err_unlink;
        }
        close(fd);
        close(dir);

        struct fp_shm_header *hdr = p;
        memset(hdr, 0, size);
        hdr->layout_version = FP_SHM_LAYOUT_VERSION;
        hdr->header_size = sizeof(*hdr);
        hdr->total_size = size;
        hdr->pool_count = pool_count;
        hdr->slot_count = slot_count;
        hdr->pools_offset = sizeof(*hdr);
        hdr->pool_size = sizeof(struct fp_shm_pool);
        hdr->slots_offset = (uint32_t)(sizeof(*hdr) + pool_count * sizeof(struct fp_shm_pool));
        hdr->slot_size = sizeof(struct fp_shm_slot);
        hdr->events_offset = (uint32_t)segment_events_offset(pool_count, slot_count);
        hdr->event_count = FP_SHM_EVENTS;
        hdr->event_size = sizeof(struct fp_shm_event);
        hdr->supervisor_pid = getpid();
        struct timespec now;
        if (clock_gettime(CLOCK_REALTIME, &now) == 0)
                hdr->started_usec = (uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_nsec / 1000u;
        /* The magic goes last: a reader that sees it sees a complete header. */
        __atomic_store_n(&hdr->magic, FP_SHM_MAGIC, __ATOMIC_RELEASE);

        *seg = (struct fp_segment){.hdr = hdr, .size = size, .writable = true};
        snprintf(seg->name, sizeof(seg->name), "%s", name);
        return 0;

err_unlink:
        close(fd);
        (void)unlinkat(dir, name + 1, 0);
        close(dir);
        return r;
}

/* Retires every segment of ours named prefix or prefix.* in /dev/shm, except keep. */
static void segment_retire_others(const char *prefix, const char *keep)
{
        int dir = shm_dir_open();
        if (dir < 0)
                return;
        int scan = dup(dir);
        DIR *d = scan >= 0 ? fdopendir(scan) : NULL;
        if (!d) {
                if (scan >= 0)
                        close(scan);
                close(dir);
                return;
        }
        struct dirent *e;
        while ((e = readdir(d))) {
                struct stat st;
                if (!name_matches(e->d_name, prefix + 1) || strcmp(e->d_name, keep + 1) == 0)
                        continue;
                if (fstatat(dir, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
                    st.st_uid != geteuid())
                        continue;
                segment_retire_at(dir, e->d_name);
        }
        closedir(d);
        close(dir);
}

int fp_segment_publish(struct fp_segment *seg, const char *socket_path, uint32_t pool_count,
                       uint32_t slot_count, unsigned mode, int gid)
{
        char prefix[FP_SHM_NAME_MAX], name[FP_SHM_NAME_MAX + 32];
        int r = -EEXIST;

        fp_segment_name(socket_path, prefix);
        for (int attempt = 0; attempt < CREATE_TRIES && r == -EEXIST; attempt++) {
                uint64_t rnd;
                if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd)) {
                        struct timespec ts;
                        clock_gettime(CLOCK_MONOTONIC, &ts);
                        rnd = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)getpid() ^
                              (uint64_t)attempt * 0x9e3779b97f4a7c15ull;
                }
                snprintf(name, sizeof(name), "%s.%016llx", prefix, (unsigned long long)rnd);
                r = fp_segment_create(seg, name, pool_count, slot_count, mode, gid);
        }
        if (r < 0)
                return r;
        segment_retire_others(prefix, seg->name);
        return 0;
}

static int segment_header_check(const struct fp_shm_header *hdr, size_t size)
{
        if (__atomic_load_n(&hdr->magic, __ATOMIC_ACQUIRE) != FP_SHM_MAGIC)
                return -EBADMSG;
        if (hdr->layout_version != FP_SHM_LAYOUT_VERSION)
                return -EPROTO;
        if (hdr->header_size != sizeof(*hdr) || hdr->pool_size != sizeof(struct fp_shm_pool) ||
            hdr->slot_size != sizeof(struct fp_shm_slot) || hdr->total_size != size ||
            hdr->pool_count > FP_SHM_MAX_POOLS || hdr->pools_offset != sizeof(*hdr) ||
            hdr->slots_offset != sizeof(*hdr) + hdr->pool_count * sizeof(struct fp_shm_pool) ||
            hdr->slot_count > FP_SHM_MAX_POOLS * FP_SHM_MAX_SLOTS_PER_POOL ||
            hdr->events_offset != segment_events_offset(hdr->pool_count, hdr->slot_count) ||
            hdr->event_count != FP_SHM_EVENTS || hdr->event_size != sizeof(struct fp_shm_event) ||
            segment_total_size(hdr->pool_count, hdr->slot_count) != size)
                return -EBADMSG;
        return 0;
}

/*
 * Maps /dev/shm entry name (under dir) read-only if it is a regular file,
 * writable by its owner alone, owned by owner or root (owner (uid_t)-1: any)
 * and of a plausible size; checks its header.
 */
static int segment_open_at(struct fp_segment *seg, int dir, const char *name, uid_t owner)
{
        struct stat st;
        int fd, r;

        /* Never open a FIFO or a device someone put there: look first. */
        if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADMSG;
        fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        /* Someone else able to write (or truncate) it, or an owner we do not trust. */
        if (!S_ISREG(st.st_mode) || (st.st_mode & 0022) ||
            (owner != (uid_t)-1 && st.st_uid != owner && st.st_uid != 0)) {
                close(fd);
                return -EPERM;
        }
        if ((size_t)st.st_size < sizeof(struct fp_shm_header) ||
            (size_t)st.st_size > segment_total_size(FP_SHM_MAX_POOLS,
                                                    FP_SHM_MAX_POOLS * FP_SHM_MAX_SLOTS_PER_POOL)) {
                close(fd);
                return -EBADMSG;
        }
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
        r = p == MAP_FAILED ? -errno : 0;
        close(fd);
        if (r < 0)
                return r;

        r = segment_header_check(p, (size_t)st.st_size);
        if (r < 0) {
                munmap(p, (size_t)st.st_size);
                return r;
        }
        *seg = (struct fp_segment){.hdr = p,
                                   .size = (size_t)st.st_size,
                                   .writable = false,
                                   .dev = (uint64_t)st.st_dev,
                                   .ino = (uint64_t)st.st_ino};
        snprintf(seg->name, sizeof(seg->name), "/%s", name);
        return 0;
}

int fp_segment_open(struct fp_segment *seg, const char *name)
{
        if (name[0] != '/' || strchr(name + 1, '/') || strlen(name) >= FP_SHM_NAME_MAX)
                return -EINVAL;
        int dir = shm_dir_open();
        if (dir < 0)
                return dir;
        int r = segment_open_at(seg, dir, name + 1, (uid_t)-1);
        close(dir);
        return r;
}

/* How much an error says about a candidate: the most telling one is reported. */
static int error_rank(int r)
{
        switch (r) {
        case -ENOENT:
                return 0;
        case -EPERM:
                return 1;
        case -EBADMSG:
                return 2;
        case -EPROTO:
                return 3;
        default:
                return 4;
        }
}

int fp_segment_find(struct fp_segment *seg, const char *socket_path)
{
        char prefix[FP_SHM_NAME_MAX];
        struct fp_segment best = {0};
        struct stat st;
        int err = -ENOENT;

        /* The supervisor's uid: the owner of its control socket. */
        if (stat(socket_path, &st) < 0)
                return errno == ENOENT ? -ENOENT : -errno;
        uid_t owner = st.st_uid;

        fp_segment_name(socket_path, prefix);
        int dir = shm_dir_open();
        if (dir < 0)
                return dir;
        int scan = dup(dir);
        DIR *d = scan >= 0 ? fdopendir(scan) : NULL;
        if (!d) {
                if (scan >= 0)
                        close(scan);
                close(dir);
                return -ENOMEM;
        }
        struct dirent *e;
        while ((e = readdir(d))) {
                struct fp_segment cand;
                if (!name_matches(e->d_name, prefix + 1))
                        continue;
                int r = segment_open_at(&cand, dir, e->d_name, owner);
                if (r < 0) {
                        if (error_rank(r) > error_rank(err))
                                err = r;
                        continue;
                }
                /* The newest that is not obsolete; an obsolete one only if nothing else. */
                bool cand_old = __atomic_load_n(&cand.hdr->obsolete, __ATOMIC_ACQUIRE) != 0;
                bool best_old =
                        best.hdr && __atomic_load_n(&best.hdr->obsolete, __ATOMIC_ACQUIRE) != 0;
                if (!best.hdr || (best_old && !cand_old) ||
                    (best_old == cand_old && cand.hdr->started_usec > best.hdr->started_usec)) {
                        fp_segment_close(&best);
                        best = cand;
                } else {
                        fp_segment_close(&cand);
                }
        }
        closedir(d);
        close(dir);
        if (!best.hdr)
                return err == -EPERM ? -ENOENT : err;
        *seg = best;
        return 0;
}

void fp_segment_close(struct fp_segment *seg)
{
        if (seg->hdr)
                munmap(seg->hdr, seg->size);
        *seg = (struct fp_segment){0};
}

int fp_segment_unlink(const char *name)
{
        if (name[0] != '/' || strchr(name + 1, '/'))
                return -EINVAL;
        return shm_unlink(name) < 0 ? -errno : 0;
}

struct fp_shm_pool *fp_segment_pool(const struct fp_segment *seg, uint32_t i)
{
        if (!seg->hdr || i >= seg->hdr->pool_count)
                return NULL;
        return (struct fp_shm_pool *)((char *)seg->hdr + seg->hdr->pools_offset) + i;
}

struct fp_shm_slot *fp_segment_slot(const struct fp_segment *seg, uint32_t i)
{
        if (!seg->hdr || i >= seg->hdr->slot_count)
                return NULL;
        return (struct fp_shm_slot *)((char *)seg->hdr + seg->hdr->slots_offset) + i;
}

void fp_segment_write_begin(struct fp_shm_pool *pool)
{
        __atomic_store_n(&pool->seq, pool->seq + 1, __ATOMIC_RELAXED);
        /* Readers must see the odd counter before any of the writes that follow. */
        __atomic_thread_fence(__ATOMIC_RELEASE);
}

void fp_segment_write_end(struct fp_shm_pool *pool)
{
        __atomic_store_n(&pool->seq, pool->seq + 1, __ATOMIC_RELEASE);
}

int fp_segment_snapshot(const struct fp_segment *seg, uint32_t i, struct fp_shm_pool *ret_pool,
                        struct fp_shm_slot *ret_slots, uint32_t max_slots)
{
        const struct fp_shm_pool *pool = fp_segment_pool(seg, i);
        if (!pool)
                return -ERANGE;

        for (int attempt = 0; attempt < SNAPSHOT_RETRIES; attempt++) {
                uint64_t before = __atomic_load_n(&pool->seq, __ATOMIC_ACQUIRE);
                if (before & 1) {
                        /* The writer may have been preempted mid-write: let it run. */
                        if (attempt % 64 == 63)
                                sched_yield();
                        continue;
                }

                struct fp_shm_pool copy;
                memcpy(&copy, pool, sizeof(copy));
                uint32_t n = copy.slot_count < max_slots ? copy.slot_count : max_slots;
                bool in_range = copy.slot_base <= seg->hdr->slot_count &&
                                n <= seg->hdr->slot_count - copy.slot_base;
                if (in_range && n > 0 && ret_slots)
                        memcpy(ret_slots, fp_segment_slot(seg, copy.slot_base),
                               n * sizeof(*ret_slots));

                __atomic_thread_fence(__ATOMIC_ACQUIRE);
                if (__atomic_load_n(&pool->seq, __ATOMIC_RELAXED) != before)
                        continue;
                if (!in_range)
                        return -EBADMSG;
                /* Readers print these strings: a damaged segment must not run them off. */
                copy.name[sizeof(copy.name) - 1] = '\0';
                for (uint32_t k = 0; ret_slots && k < n; k++)
                        ret_slots[k].label[sizeof(ret_slots[k].label) - 1] = '\0';
                *ret_pool = copy;
                return ret_slots ? (int)n : 0;
        }
        return -EAGAIN;
}

const char *fp_slot_state_name(uint32_t state)
{
        static const char *const names[FP_SLOT_STATE_MAX] = {
                [FP_SLOT_UNUSED] = "unused",         [FP_SLOT_EMPTY] = "empty",
                [FP_SLOT_CONNECTING] = "connecting", [FP_SLOT_IDLE] = "idle",
                [FP_SLOT_LEASED] = "leased",         [FP_SLOT_RESETTING] = "resetting",
                [FP_SLOT_CHECKING] = "checking",
        };
        return state < FP_SLOT_STATE_MAX ? names[state] : "unknown";
}

const char *fp_pool_class_name(uint32_t pool_class)
{
        static const char *const names[FP_POOL_CLASS_MAX] = {
                [FP_POOL_QUEUE] = "queue",     [FP_POOL_NULL] = "null",
                [FP_POOL_STATIC] = "static",   [FP_POOL_ASSERTION] = "assertion",
                [FP_POOL_PROCESS] = "process",
        };
        return pool_class < FP_POOL_CLASS_MAX ? names[pool_class] : "unknown";
}

const char *fp_pool_mode_name(uint32_t pool_mode)
{
        static const char *const names[FP_POOL_MODE_MAX] = {
                [FP_POOL_MODE_SESSION] = "session",
                [FP_POOL_MODE_TRANSACTION] = "transaction",
        };
        return pool_mode < FP_POOL_MODE_MAX ? names[pool_mode] : "unknown";
}

int fp_reset_mode_parse(const char *text, enum fp_reset_mode *ret)
{
        if (strcmp(text, "rollback") == 0)
                *ret = FP_RESET_ROLLBACK;
        else if (strcmp(text, "commit") == 0)
                *ret = FP_RESET_COMMIT;
        else if (strcmp(text, "none") == 0)
                *ret = FP_RESET_NONE;
        else if (strcmp(text, "discard") == 0)
                *ret = FP_RESET_DISCARD;
        else if (strcmp(text, "auto") == 0)
                *ret = FP_RESET_AUTO;
        else
                return -EINVAL;
        return 0;
}

const char *fp_reset_mode_name(enum fp_reset_mode mode)
{
        switch (mode) {
        case FP_RESET_ROLLBACK:
                return "rollback";
        case FP_RESET_COMMIT:
                return "commit";
        case FP_RESET_NONE:
                return "none";
        case FP_RESET_DISCARD:
                return "discard";
        case FP_RESET_AUTO:
                return "auto";
        }
        return "unknown";
}

int fp_pool_status_line(char *buf, size_t len, uint32_t pool_class, int pool_size, int checked_in,
                        int overflow, int checked_out)
{
        switch (pool_class) {
        case FP_POOL_NULL:
                return snprintf(buf, len, "NullPool");
        case FP_POOL_STATIC:
                return snprintf(buf, len, "StaticPool");
        case FP_POOL_ASSERTION:
                return snprintf(buf, len, "AssertionPool");
        case FP_POOL_PROCESS:
                return snprintf(buf, len, "ProcessPool size: %d", checked_out);
        default:
                return snprintf(buf, len,
                                "Pool size: %d  Connections in pool: %d Current Overflow: %d "
                                "Current Checked out connections: %d",
                                pool_size, checked_in, overflow, checked_out);
        }
}

const char *fp_event_type_name(uint32_t type)
{
        static const char *const names[FP_EV_TYPE_MAX] = {
                [FP_EV_CONNECT] = "connect",
                [FP_EV_FIRST_CONNECT] = "first_connect",
                [FP_EV_CHECKOUT] = "checkout",
                [FP_EV_CHECKIN] = "checkin",
                [FP_EV_RESET] = "reset",
                [FP_EV_INVALIDATE] = "invalidate",
                [FP_EV_SOFT_INVALIDATE] = "soft_invalidate",
                [FP_EV_CLOSE] = "close",
                [FP_EV_DETACH] = "detach",
                [FP_EV_RECLAIM] = "reclaim",
                [FP_EV_TIMEOUT] = "timeout",
                [FP_EV_CONNECT_FAILED] = "connect_failed",
                [FP_EV_PING_FAILED] = "ping_failed",
                [FP_EV_RECYCLE] = "recycle",
                [FP_EV_LEAK] = "leak",
                [FP_EV_REVOKE] = "revoke",
                [FP_EV_POOL_INVALIDATE] = "pool_invalidate",
        };
        return type > 0 && type < FP_EV_TYPE_MAX ? names[type] : "unknown";
}

static struct fp_shm_event *segment_event(const struct fp_segment *seg, uint64_t seq)
{
        struct fp_shm_event *ring =
                (struct fp_shm_event *)((char *)seg->hdr + seg->hdr->events_offset);
        return &ring[seq & (FP_SHM_EVENTS - 1)];
}

void fp_segment_event_write(struct fp_segment *seg, const struct fp_shm_event *ev)
{
        uint64_t seq = seg->hdr->event_seq + 1;
        struct fp_shm_event *slot = segment_event(seg, seq);

        /* Invalidate the entry first, so that a reader never takes a half-written one. */
        __atomic_store_n(&slot->seq, 0, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_RELEASE);
        struct fp_shm_event copy = *ev;
        copy.seq = 0;
        memcpy((char *)slot + sizeof(slot->seq), (char *)&copy + sizeof(copy.seq),
               sizeof(copy) - sizeof(copy.seq));
        __atomic_store_n(&slot->seq, seq, __ATOMIC_RELEASE);
        __atomic_store_n(&seg->hdr->event_seq, seq, __ATOMIC_RELEASE);
}

uint64_t fp_segment_event_last(const struct fp_segment *seg)
{
        return __atomic_load_n(&seg->hdr->event_seq, __ATOMIC_ACQUIRE);
}

int fp_segment_event_read(const struct fp_segment *seg, uint64_t seq, struct fp_shm_event *ret)
{
        if (seq == 0 || seq > fp_segment_event_last(seg))
                return -EAGAIN;
        const struct fp_shm_event *slot = segment_event(seg, seq);
        if (__atomic_load_n(&slot->seq, __ATOMIC_ACQUIRE) != seq)
                return -ESTALE;
        struct fp_shm_event copy;
        memcpy(&copy, slot, sizeof(copy));
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&slot->seq, __ATOMIC_RELAXED) != seq)
                return -ESTALE;
        copy.seq = seq;
        *ret = copy;
        return 0;
}
