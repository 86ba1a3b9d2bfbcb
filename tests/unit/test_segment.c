/* SPDX-License-Identifier: MIT */
/*
 * test_segment.c — unit tests of shm/segment.c: the segment's name, creating,
 * opening and checking it, snapshots under the seqlock (read from another
 * process, as workers and forkpoolctl do), replacement, permissions, the
 * read-only mapping, and publishing under a random name and finding it.
 *
 * Every test works on its own segment name (pid and a counter) and the
 * teardown unlinks it, whatever the test's outcome. Work that must happen in
 * another process runs in a forked child that reports through its exit status
 * (never through cmocka, whose state the child only has a copy of) and is
 * killed by an alarm if it hangs.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "segment.h"

/* A child that takes longer than this is killed (SIGALRM) and the test fails. */
#define CHILD_TIMEOUT_SEC 10

/* The pools and slots of the segment most tests create. */
#define TEST_POOLS 3u
#define TEST_SLOTS 10u

struct fixture {
        char name[FP_SHM_NAME_MAX];
        struct fp_segment writer;
        struct fp_segment reader;
        struct fp_segment other;
};

static int fixture_setup(void **state)
{
        static unsigned counter;
        struct fixture *f = calloc(1, sizeof(*f));

        if (!f)
                return -1;
        snprintf(f->name, sizeof(f->name), "/fp-test-segment.%d.%u", (int)getpid(), counter++);
        *state = f;
        return 0;
}

static int fixture_teardown(void **state)
{
        struct fixture *f = *state;

        fp_segment_close(&f->writer);
        fp_segment_close(&f->reader);
        fp_segment_close(&f->other);
        (void)fp_segment_unlink(f->name);
        free(f);
        return 0;
}

/* Creates the fixture's segment (TEST_POOLS pools, TEST_SLOTS slots, mode 0640) in f->writer. */
static void create_default(struct fixture *f)
{
        assert_int_equal(fp_segment_create(&f->writer, f->name, TEST_POOLS, TEST_SLOTS, 0640, -1),
                         0);
}

/*
 * Runs fn(arg) in a forked child and returns its raw wait status. The child
 * dies by SIGALRM after CHILD_TIMEOUT_SEC and never returns into cmocka.
 */
static int run_in_child(int (*fn)(void *arg), void *arg)
{
        int status;
        pid_t pid = fork();

        assert_true(pid >= 0);
        if (pid == 0) {
                alarm(CHILD_TIMEOUT_SEC);
                _exit(fn(arg));
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        return status;
}

static void assert_child_succeeded(int status)
{
        if (WIFSIGNALED(status))
                fail_msg("child died by signal %d", WTERMSIG(status));
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_name_stable_and_distinct(void **state)
{
        char a[FP_SHM_NAME_MAX], b[FP_SHM_NAME_MAX], c[FP_SHM_NAME_MAX];

        (void)state;
        fp_segment_name("/run/forkpool/forkpool.sock", a);
        fp_segment_name("/run/forkpool/forkpool.sock", b);
        fp_segment_name("/run/forkpool/other.sock", c);
        assert_string_equal(a, b);
        assert_string_not_equal(a, c);
        assert_int_equal(strncmp(a, "/forkpool.", 10), 0);
        assert_int_equal(strlen(a), 10 + 16);

        /* FNV-1a 64 test vectors: the supervisor and readers built apart must agree. */
        fp_segment_name("", a);
        assert_string_equal(a, "/forkpool.cbf29ce484222325");
        fp_segment_name("a", a);
        assert_string_equal(a, "/forkpool.af63dc4c8601ec8c");
}

static void test_create_then_open_checks_header(void **state)
{
        struct fixture *f = *state;
        const struct fp_shm_header *h;

        create_default(f);
        assert_true(f->writer.writable);
        assert_string_equal(f->writer.name, f->name);

        assert_int_equal(fp_segment_open(&f->reader, f->name), 0);
        assert_false(f->reader.writable);
        assert_string_equal(f->reader.name, f->name);
        h = f->reader.hdr;
        assert_true(h->magic == FP_SHM_MAGIC);
        assert_memory_equal(&h->magic, "FORKPOOL", 8);
        assert_int_equal(h->layout_version, FP_SHM_LAYOUT_VERSION);
        assert_int_equal(h->header_size, sizeof(struct fp_shm_header));
        assert_int_equal(h->pool_count, TEST_POOLS);
        assert_int_equal(h->slot_count, TEST_SLOTS);
        assert_int_equal(h->pool_size, sizeof(struct fp_shm_pool));
        assert_int_equal(h->slot_size, sizeof(struct fp_shm_slot));
        assert_int_equal(h->total_size, sizeof(struct fp_shm_header) +
                                                TEST_POOLS * sizeof(struct fp_shm_pool) +
                                                TEST_SLOTS * sizeof(struct fp_shm_slot) +
                                                FP_SHM_EVENTS * sizeof(struct fp_shm_event));
        assert_int_equal(h->events_offset,
                         h->total_size - FP_SHM_EVENTS * sizeof(struct fp_shm_event));
        assert_int_equal(f->reader.size, h->total_size);
        assert_int_equal(h->supervisor_pid, getpid());
        assert_int_equal(h->obsolete, 0);
}

static void test_open_missing_is_enoent(void **state)
{
        struct fixture *f = *state;

        assert_int_equal(fp_segment_open(&f->reader, f->name), -ENOENT);
        assert_null(f->reader.hdr);
}

static void test_create_rejects_bad_arguments(void **state)
{
        struct fixture *f = *state;
        char long_name[FP_SHM_NAME_MAX + 8];

        assert_int_equal(fp_segment_create(&f->writer, f->name, FP_SHM_MAX_POOLS + 1, 1, 0640, -1),
                         -EINVAL);
        memset(long_name, 'x', sizeof(long_name) - 1);
        long_name[0] = '/';
        long_name[sizeof(long_name) - 1] = '\0';
        assert_int_equal(fp_segment_create(&f->writer, long_name, 1, 1, 0640, -1), -EINVAL);
        assert_null(f->writer.hdr);
}

static void test_records_out_of_range(void **state)
{
        struct fixture *f = *state;
        struct fp_segment zero = {0};

        create_default(f);
        assert_non_null(fp_segment_pool(&f->writer, TEST_POOLS - 1));
        assert_null(fp_segment_pool(&f->writer, TEST_POOLS));
        assert_non_null(fp_segment_slot(&f->writer, TEST_SLOTS - 1));
        assert_null(fp_segment_slot(&f->writer, TEST_SLOTS));
        assert_null(fp_segment_pool(&zero, 0));
        assert_null(fp_segment_slot(&zero, 0));
        fp_segment_close(&zero);
}

/* Slot i of the pool that fill_pool() writes, as version v of the data. */
static struct fp_shm_slot expected_slot(uint32_t i, int v)
{
        return (struct fp_shm_slot){
                .state = v == 1 ? FP_SLOT_IDLE : FP_SLOT_LEASED,
                .holder_pid = v == 1 ? 0 : 900 + (int32_t)i,
                .lease_generation = (uint64_t)v * 10 + i,
                .backend_pid = 4100 + (int32_t)i,
                .connect_usec = 1700000000000000ull + i,
                .last_checkout_usec = v == 1 ? 0 : 1700000001000000ull + i,
        };
}

/* Pool 1 of the default segment: 4 slots from slot 5. */
#define FILL_POOL  1u
#define FILL_BASE  5u
#define FILL_SLOTS 4u

/* The pool fields of version v of the data (slots come from expected_slot()). */
static void fill_pool_fields(struct fp_shm_pool *p, int v)
{
        snprintf(p->name, sizeof(p->name), "reports");
        p->db_kind = 1;
        p->reset_mode = FP_RESET_COMMIT;
        p->pool_size = 4;
        p->max_overflow = 2;
        p->timeout_ms = 30000;
        p->connect_timeout_ms = 10000;
        p->slot_base = FILL_BASE;
        p->slot_count = FILL_SLOTS;
        p->checked_in = v == 1 ? FILL_SLOTS : 0;
        p->checked_out = v == 1 ? 0 : FILL_SLOTS;
        p->overflow = -4;
        p->live = FILL_SLOTS;
        p->counters.acquires = v == 1 ? 7 : 11;
        p->counters.releases = 7;
        p->counters.closes = 3;
}

/* Writes version v of pool FILL_POOL and its slots in one write section. */
static void fill_pool(const struct fp_segment *seg, int v)
{
        struct fp_shm_pool *p = fp_segment_pool(seg, FILL_POOL);

        fp_segment_write_begin(p);
        fill_pool_fields(p, v);
        for (uint32_t i = 0; i < FILL_SLOTS; i++)
                *fp_segment_slot(seg, FILL_BASE + i) = expected_slot(i, v);
        fp_segment_write_end(p);
}

/* 0 if snapshot (pool, n slots) is exactly version v, else which part differs (1..). */
static int snapshot_differs(const struct fp_shm_pool *pool, const struct fp_shm_slot *slots, int n,
                            int v)
{
        struct fp_shm_pool want = {0};

        fill_pool_fields(&want, v);
        want.seq = pool->seq;
        if (pool->seq & 1)
                return 1;
        if (memcmp(pool, &want, sizeof(want)) != 0)
                return 2;
        if (n != (int)FILL_SLOTS)
                return 3;
        for (uint32_t i = 0; i < FILL_SLOTS; i++) {
                struct fp_shm_slot s = expected_slot(i, v);
                if (memcmp(&slots[i], &s, sizeof(s)) != 0)
                        return 4 + (int)i;
        }
        return 0;
}

static void test_snapshot_returns_written_values(void **state)
{
        struct fixture *f = *state;
        struct fp_shm_slot slots[FILL_SLOTS + 1];
        struct fp_shm_slot canary;
        struct fp_shm_pool pool;

        create_default(f);
        fill_pool(&f->writer, 1);
        assert_int_equal(fp_segment_open(&f->reader, f->name), 0);

        assert_int_equal(fp_segment_snapshot(&f->reader, FILL_POOL, &pool, slots, FILL_SLOTS + 1),
                         FILL_SLOTS);
        assert_int_equal(pool.seq, 2);
        assert_int_equal(snapshot_differs(&pool, slots, FILL_SLOTS, 1), 0);
        assert_string_equal(pool.name, "reports");

        /* Fewer slots asked for: exactly that many copied, nothing beyond. */
        memset(&canary, 0xa5, sizeof(canary));
        slots[2] = canary;
        assert_int_equal(fp_segment_snapshot(&f->reader, FILL_POOL, &pool, slots, 2), 2);
        assert_memory_equal(&slots[2], &canary, sizeof(canary));

        /* No slot buffer: the pool alone. */
        assert_int_equal(fp_segment_snapshot(&f->reader, FILL_POOL, &pool, NULL, 0), 0);
        assert_int_equal(pool.checked_in, FILL_SLOTS);

        assert_int_equal(fp_segment_snapshot(&f->reader, TEST_POOLS, &pool, slots, 1), -ERANGE);
}

static void test_snapshot_rejects_slots_outside_segment(void **state)
{
        struct fixture *f = *state;
        struct fp_shm_slot slots[TEST_SLOTS];
        struct fp_shm_pool pool, *p;

        create_default(f);
        p = fp_segment_pool(&f->writer, 0);
        fp_segment_write_begin(p);
        p->slot_base = TEST_SLOTS - 1;
        p->slot_count = 2;
        fp_segment_write_end(p);
        assert_int_equal(fp_segment_open(&f->reader, f->name), 0);
        assert_int_equal(fp_segment_snapshot(&f->reader, 0, &pool, slots, TEST_SLOTS), -EBADMSG);
}

/* What a reader child needs: the segment's name and a pipe to say "I saw it torn". */
struct torn_reader {
        const char *name;
        int ready_fd;
};

/*
 * Child: opens the segment read-only, checks that a snapshot taken while the
 * parent writes fails with -EAGAIN, tells the parent, then retries until a
 * snapshot succeeds and checks that it is the complete second version,
 * taken after the write ended (seq 4: two write sections). Returns 0 or the
 * step that failed.
 */
static int torn_reader_child(void *arg)
{
        const struct torn_reader *t = arg;
        struct fp_shm_slot slots[TEST_SLOTS];
        struct fp_segment seg = {0};
        struct fp_shm_pool pool;
        int r;

        if (fp_segment_open(&seg, t->name) < 0)
                return 10;
        if (fp_segment_snapshot(&seg, FILL_POOL, &pool, slots, TEST_SLOTS) != -EAGAIN)
                return 11;
        if (write(t->ready_fd, "x", 1) != 1)
                return 12;
        do {
                sched_yield();
                r = fp_segment_snapshot(&seg, FILL_POOL, &pool, slots, TEST_SLOTS);
        } while (r == -EAGAIN);
        if (r < 0)
                return 13;
        if (pool.seq != 4)
                return 14;
        r = snapshot_differs(&pool, slots, r, 2);
        fp_segment_close(&seg);
        return r ? 20 + r : 0;
}

static void test_snapshot_waits_for_torn_write_in_other_process(void **state)
{
        struct fixture *f = *state;
        struct torn_reader t = {.name = f->name};
        struct fp_shm_pool *p;
        int status, fds[2];
        char byte;
        pid_t pid;

        create_default(f);
        fill_pool(&f->writer, 1);
        p = fp_segment_pool(&f->writer, FILL_POOL);

        /* Half of version 2 written; the rest only after the child has seen seq odd. */
        fp_segment_write_begin(p);
        fill_pool_fields(p, 2);
        assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
        t.ready_fd = fds[1];
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                alarm(CHILD_TIMEOUT_SEC);
                close(fds[0]);
                _exit(torn_reader_child(&t));
        }
        close(fds[1]);
        if (read(fds[0], &byte, 1) != 1) {
                /* The child gave up before the torn read: its exit status says where. */
                assert_int_equal(waitpid(pid, &status, 0), pid);
                assert_child_succeeded(status);
                fail_msg("child closed the pipe without reporting");
        }
        close(fds[0]);
        for (uint32_t i = 0; i < FILL_SLOTS; i++) {
                usleep(10000); /* the child keeps trying meanwhile */
                *fp_segment_slot(&f->writer, FILL_BASE + i) = expected_slot(i, 2);
        }
        fp_segment_write_end(p);

        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_child_succeeded(status);
}

/* Child: every snapshot of a pool held mid-write for good must fail with -EAGAIN. */
static int kept_odd_child(void *arg)
{
        struct fp_segment seg = {0};
        struct fp_shm_pool pool;
        int ret = 0;

        if (fp_segment_open(&seg, arg) < 0)
                return 10;
        for (int i = 0; i < 20 && ret == 0; i++) {
                if (fp_segment_snapshot(&seg, FILL_POOL, &pool, NULL, 0) != -EAGAIN)
                        ret = 11;
                usleep(1000);
        }
        fp_segment_close(&seg);
        return ret;
}

static void test_snapshot_eagain_while_write_never_ends(void **state)
{
        struct fixture *f = *state;
        struct fp_shm_pool pool, *p;

        create_default(f);
        fill_pool(&f->writer, 1);
        p = fp_segment_pool(&f->writer, FILL_POOL);
        fp_segment_write_begin(p);
        assert_child_succeeded(run_in_child(kept_odd_child, f->name));

        /* Once the write ends, the same pool reads fine again. */
        fp_segment_write_end(p);
        assert_int_equal(fp_segment_open(&f->reader, f->name), 0);
        assert_int_equal(fp_segment_snapshot(&f->reader, FILL_POOL, &pool, NULL, 0), 0);
        assert_int_equal(pool.seq, 4);
}

/* How long the stress reader keeps reading while the parent writes without pause. */
#define STRESS_USEC 300000

static uint64_t monotonic_usec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Writer side of the stress test: every field it touches gets the same value k. */
static void stress_write(const struct fp_segment *seg, uint64_t k)
{
        struct fp_shm_pool *p = fp_segment_pool(seg, FILL_POOL);

        fp_segment_write_begin(p);
        p->checked_in = (int32_t)k;
        p->checked_out = (int32_t)k;
        p->counters.acquires = k;
        for (uint32_t i = 0; i < FILL_SLOTS; i++)
                fp_segment_slot(seg, FILL_BASE + i)->lease_generation = k;
        p->counters.releases = k;
        fp_segment_write_end(p);
}

/* 0 if every field stress_write() touches holds the same value in the snapshot. */
static int stress_torn(const struct fp_shm_pool *pool, const struct fp_shm_slot *slots, int n)
{
        uint64_t k = pool->counters.acquires;

        if (n != (int)FILL_SLOTS || (uint64_t)pool->checked_in != (uint32_t)k ||
            (uint64_t)pool->checked_out != (uint32_t)k || pool->counters.releases != k)
                return 1;
        for (int i = 0; i < n; i++)
                if (slots[i].lease_generation != k)
                        return 1;
        return 0;
}

/*
 * Child: snapshots the pool for STRESS_USEC while the parent rewrites it
 * without pause; every snapshot that succeeds must be one version, never a
 * mix. Returns 0, 11 (a torn snapshot), 12 (hardly any snapshot succeeded).
 */
static int stress_reader_child(void *arg)
{
        struct fp_shm_slot slots[TEST_SLOTS];
        struct fp_segment seg = {0};
        struct fp_shm_pool pool;
        uint64_t end = monotonic_usec() + STRESS_USEC;
        long ok = 0;
        int r;

        if (fp_segment_open(&seg, arg) < 0)
                return 10;
        while (monotonic_usec() < end) {
                r = fp_segment_snapshot(&seg, FILL_POOL, &pool, slots, TEST_SLOTS);
                if (r == -EAGAIN)
                        continue;
                if (r < 0 || stress_torn(&pool, slots, r))
                        return 11;
                ok++;
        }
        fp_segment_close(&seg);
        return ok >= 100 ? 0 : 12;
}

static void test_snapshot_never_torn_under_concurrent_writes(void **state)
{
        struct fixture *f = *state;
        int status = 0;
        uint64_t k = 0;
        pid_t pid, r;

        create_default(f);
        fill_pool(&f->writer, 1);
        stress_write(&f->writer, k);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                alarm(CHILD_TIMEOUT_SEC);
                _exit(stress_reader_child(f->name));
        }
        do {
                for (int i = 0; i < 256; i++)
                        stress_write(&f->writer, ++k);
                r = waitpid(pid, &status, WNOHANG);
        } while (r == 0);
        assert_int_equal(r, pid);
        assert_child_succeeded(status);
}

static void test_open_wrong_layout_version_is_eproto(void **state)
{
        struct fixture *f = *state;

        create_default(f);
        f->writer.hdr->layout_version = FP_SHM_LAYOUT_VERSION + 1;
        assert_int_equal(fp_segment_open(&f->reader, f->name), -EPROTO);
        assert_null(f->reader.hdr);
}

static void test_open_wrong_magic_is_ebadmsg(void **state)
{
        struct fixture *f = *state;

        create_default(f);
        f->writer.hdr->magic ^= 1;
        assert_int_equal(fp_segment_open(&f->reader, f->name), -EBADMSG);
        assert_null(f->reader.hdr);
}

static void test_open_inconsistent_sizes_is_ebadmsg(void **state)
{
        struct fixture *f = *state;

        create_default(f);
        f->writer.hdr->pool_count = TEST_POOLS + 1;
        assert_int_equal(fp_segment_open(&f->reader, f->name), -EBADMSG);
        f->writer.hdr->pool_count = TEST_POOLS;
        f->writer.hdr->slot_size = 32;
        assert_int_equal(fp_segment_open(&f->reader, f->name), -EBADMSG);
        f->writer.hdr->slot_size = sizeof(struct fp_shm_slot);
        assert_int_equal(fp_segment_open(&f->reader, f->name), 0);
}

static void test_create_replaces_and_marks_old_obsolete(void **state)
{
        struct fixture *f = *state;
        struct fp_segment fresh = {0};
        struct fp_shm_pool pool;

        create_default(f);
        fill_pool(&f->writer, 1);
        assert_int_equal(fp_segment_open(&f->reader, f->name), 0);

        /* A new supervisor takes over the name with another shape. */
        assert_int_equal(fp_segment_create(&f->other, f->name, 1, 2, 0640, -1), 0);
        assert_int_equal(__atomic_load_n(&f->reader.hdr->obsolete, __ATOMIC_ACQUIRE), 1);
        assert_int_equal(f->writer.hdr->obsolete, 1);
        assert_int_equal(f->other.hdr->obsolete, 0);

        /* The old mapping stays readable; a fresh open finds the new segment. */
        assert_int_equal(fp_segment_snapshot(&f->reader, FILL_POOL, &pool, NULL, 0), 0);
        assert_string_equal(pool.name, "reports");
        assert_int_equal(fp_segment_open(&fresh, f->name), 0);
        assert_int_equal(fresh.hdr->pool_count, 1);
        assert_int_equal(fresh.hdr->slot_count, 2);
        assert_int_equal(fresh.hdr->obsolete, 0);
        fp_segment_close(&fresh);
}

/* The permission bits and group of the segment `name`, as shm_open + fstat see them. */
static struct stat stat_segment(const char *name)
{
        struct stat st;
        int fd = shm_open(name, O_RDONLY | O_CLOEXEC, 0);

        assert_true(fd >= 0);
        assert_int_equal(fstat(fd, &st), 0);
        close(fd);
        return st;
}

static void test_created_mode_ignores_umask(void **state)
{
        struct fixture *f = *state;
        mode_t old_umask = umask(0077);
        struct stat st;
        int r;

        /* With umask 077, shm_open alone would give 0600. */
        r = fp_segment_create(&f->writer, f->name, 1, 1, 0640, (int)getegid());
        umask(old_umask);
        assert_int_equal(r, 0);
        st = stat_segment(f->name);
        assert_int_equal(st.st_mode & 07777, 0640);
        assert_int_equal(st.st_uid, geteuid());
        assert_int_equal(st.st_gid, getegid());
}

/* Child: writes through a read-only mapping; must die by SIGSEGV before returning. */
static int write_readonly_child(void *arg)
{
        struct fp_segment seg = {0};
        struct rlimit no_core = {0, 0};

        (void)setrlimit(RLIMIT_CORE, &no_core);
        signal(SIGSEGV, SIG_DFL); /* a sanitizer's handler would turn the signal into an exit */
        if (fp_segment_open(&seg, arg) < 0)
                return 10;
        *(volatile uint32_t *)&seg.hdr->obsolete = 1;
        return 11;
}

static void test_readonly_mapping_cannot_be_written(void **state)
{
        struct fixture *f = *state;
        int status;

        create_default(f);
        status = run_in_child(write_readonly_child, f->name);
        assert_true(WIFSIGNALED(status));
        assert_int_equal(WTERMSIG(status), SIGSEGV);
        assert_int_equal(f->writer.hdr->obsolete, 0);
}

static void test_slot_state_names(void **state)
{
        (void)state;
        assert_string_equal(fp_slot_state_name(FP_SLOT_UNUSED), "unused");
        assert_string_equal(fp_slot_state_name(FP_SLOT_EMPTY), "empty");
        assert_string_equal(fp_slot_state_name(FP_SLOT_CONNECTING), "connecting");
        assert_string_equal(fp_slot_state_name(FP_SLOT_IDLE), "idle");
        assert_string_equal(fp_slot_state_name(FP_SLOT_LEASED), "leased");
        assert_string_equal(fp_slot_state_name(FP_SLOT_RESETTING), "resetting");
        assert_string_equal(fp_slot_state_name(FP_SLOT_STATE_MAX), "unknown");
        assert_string_equal(fp_slot_state_name(UINT32_MAX), "unknown");
}

/* The event ring: in order, readable by another mapping, and overwritten oldest first. */
static void test_event_ring(void **state)
{
        struct fixture *f = *state;
        struct fp_shm_event ev = {0}, got;

        create_default(f);
        assert_int_equal(fp_segment_open(&f->reader, f->name), 0);
        assert_int_equal(fp_segment_event_last(&f->reader), 0);
        assert_int_equal(fp_segment_event_read(&f->reader, 1, &got), -EAGAIN);

        for (uint32_t i = 1; i <= FP_SHM_EVENTS + 10; i++) {
                ev.type = FP_EV_CHECKOUT;
                ev.slot = i;
                ev.pid = (int32_t)(1000 + i);
                fp_segment_event_write(&f->writer, &ev);
        }
        uint64_t last = fp_segment_event_last(&f->reader);
        assert_int_equal(last, FP_SHM_EVENTS + 10);
        assert_int_equal(fp_segment_event_read(&f->reader, last, &got), 0);
        assert_int_equal(got.seq, last);
        assert_int_equal(got.slot, last);
        assert_int_equal(got.pid, 1000 + (int32_t)last);
        /* The first ten were overwritten; the oldest still there is 11. */
        assert_int_equal(fp_segment_event_read(&f->reader, 10, &got), -ESTALE);
        assert_int_equal(fp_segment_event_read(&f->reader, 11, &got), 0);
        assert_int_equal(got.slot, 11);
        assert_int_equal(fp_segment_event_read(&f->reader, last + 1, &got), -EAGAIN);
        assert_string_equal(fp_event_type_name(FP_EV_CHECKOUT), "checkout");
        assert_string_equal(fp_event_type_name(0), "unknown");
        assert_string_equal(fp_pool_class_name(FP_POOL_PROCESS), "process");
}

/* A segment others could write (or truncate) is refused; so are a FIFO and a symlink. */
static void test_open_refuses_what_others_can_change(void **state)
{
        struct fixture *f = *state;
        char path[128], link_name[FP_SHM_NAME_MAX + 8], link_path[128];

        create_default(f);
        snprintf(path, sizeof(path), "/dev/shm%s", f->name);
        assert_int_equal(chmod(path, 0666), 0);
        assert_int_equal(fp_segment_open(&f->reader, f->name), -EPERM);
        assert_int_equal(chmod(path, 0620), 0);
        assert_int_equal(fp_segment_open(&f->reader, f->name), -EPERM);
        assert_int_equal(chmod(path, 0640), 0);
        assert_int_equal(fp_segment_open(&f->reader, f->name), 0);
        fp_segment_close(&f->reader);

        /* A symlink to a good segment is not followed. */
        snprintf(link_name, sizeof(link_name), "%s.lnk", f->name);
        snprintf(link_path, sizeof(link_path), "/dev/shm%s", link_name);
        assert_int_equal(symlink(path, link_path), 0);
        assert_int_equal(fp_segment_open(&f->reader, link_name), -EBADMSG);
        unlink(link_path);

        /* A FIFO is never opened (an open would block). */
        fp_segment_close(&f->writer);
        assert_int_equal(fp_segment_unlink(f->name), 0);
        assert_int_equal(mkfifo(path, 0600), 0);
        assert_int_equal(fp_segment_open(&f->reader, f->name), -EBADMSG);
        unlink(path);
        assert_null(f->reader.hdr);
        assert_int_equal(fp_segment_open(&f->reader, "no-slash"), -EINVAL);
        assert_int_equal(fp_segment_open(&f->reader, "/a/b"), -EINVAL);
}

/* Counts the /dev/shm entries named prefix.* */
static int count_published(const char *prefix)
{
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "ls /dev/shm | grep -c '^%s\\.' 2>/dev/null", prefix + 1);
        FILE *p = popen(cmd, "r");
        int n = -1;
        if (p) {
                if (fscanf(p, "%d", &n) != 1)
                        n = -1;
                pclose(p);
        }
        return n;
}

/*
 * fp_segment_publish() takes a random name beside whatever is already there,
 * retires its own older segments, and fp_segment_find() maps the newest.
 */
static void test_publish_and_find(void **state)
{
        struct fixture *f = *state;
        char sock[] = "/tmp/fp-test-sock.XXXXXX", prefix[FP_SHM_NAME_MAX], squat[128];
        struct fp_segment first, second, found;

        (void)f;
        int fd = mkstemp(sock);
        assert_true(fd >= 0);
        close(fd);
        fp_segment_name(sock, prefix);
        assert_int_equal(fp_segment_find(&found, sock), -ENOENT);

        /* The predictable name taken by a file that is not a segment: no harm. */
        snprintf(squat, sizeof(squat), "/dev/shm%s", prefix);
        fd = open(squat, O_CREAT | O_EXCL | O_WRONLY, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "junk", 4), 4);
        close(fd);

        assert_int_equal(fp_segment_publish(&first, sock, 1, 2, 0640, -1), 0);
        assert_int_equal(strncmp(first.name, prefix, strlen(prefix)), 0);
        assert_int_equal(first.name[strlen(prefix)], '.');
        assert_int_equal(count_published(prefix), 1);
        /* The junk under the bare prefix was ours: retired. */
        assert_int_not_equal(access(squat, F_OK), 0);

        assert_int_equal(fp_segment_find(&found, sock), 0);
        assert_string_equal(found.name, first.name);
        assert_int_equal(found.hdr->pool_count, 1);
        fp_segment_close(&found);

        /* Republishing retires the first: obsolete for its readers, unlinked. */
        usleep(2000);
        assert_int_equal(fp_segment_publish(&second, sock, 2, 4, 0640, -1), 0);
        assert_string_not_equal(second.name, first.name);
        assert_int_equal(__atomic_load_n(&first.hdr->obsolete, __ATOMIC_ACQUIRE), 1);
        assert_int_equal(count_published(prefix), 1);
        assert_int_equal(fp_segment_find(&found, sock), 0);
        assert_string_equal(found.name, second.name);
        assert_int_equal(found.hdr->pool_count, 2);
        fp_segment_close(&found);

        fp_segment_close(&first);
        (void)fp_segment_unlink(second.name);
        fp_segment_close(&second);
        assert_int_equal(fp_segment_find(&found, sock), -ENOENT);
        unlink(sock);
        assert_int_equal(fp_segment_find(&found, sock), -ENOENT);
}

#define SEG_TEST(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown)

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_name_stable_and_distinct),
                SEG_TEST(test_create_then_open_checks_header),
                SEG_TEST(test_open_missing_is_enoent),
                SEG_TEST(test_create_rejects_bad_arguments),
                SEG_TEST(test_records_out_of_range),
                SEG_TEST(test_snapshot_returns_written_values),
                SEG_TEST(test_snapshot_rejects_slots_outside_segment),
                SEG_TEST(test_snapshot_waits_for_torn_write_in_other_process),
                SEG_TEST(test_snapshot_eagain_while_write_never_ends),
                SEG_TEST(test_snapshot_never_torn_under_concurrent_writes),
                SEG_TEST(test_open_wrong_layout_version_is_eproto),
                SEG_TEST(test_open_wrong_magic_is_ebadmsg),
                SEG_TEST(test_open_inconsistent_sizes_is_ebadmsg),
                SEG_TEST(test_create_replaces_and_marks_old_obsolete),
                SEG_TEST(test_created_mode_ignores_umask),
                SEG_TEST(test_readonly_mapping_cannot_be_written),
                SEG_TEST(test_open_refuses_what_others_can_change),
                SEG_TEST(test_publish_and_find),
                cmocka_unit_test(test_slot_state_names),
                SEG_TEST(test_event_ring),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
