/* SPDX-License-Identifier: MIT */
/*
 * fuzz_seeds.c — writes valid inputs for the fuzz targets, made with the
 * project's own writers (fp_msg_init, fp_params_add, fp_segment_create), so
 * they follow the current protocol and segment layout.
 *
 *   fuzz_seeds DIR
 *
 * writes DIR/fuzz_proto/<op>.bin (one message of every op),
 * DIR/fuzz_segment/segment.bin (a populated segment: two pools, slots in
 * every state, events) and DIR/fuzz_state/state.bin (a state memfd's header,
 * a PostgreSQL and a MySQL record) and DIR/fuzz_state/name.bin (a store
 * name), creating the directories. tests/run.sh runs it
 * before each fuzzing run; tests/fuzz/corpus/ holds a copy plus any inputs
 * kept as regressions. Exit status 0, or 1 with one line on stderr.
 */
#include <endian.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pgparams.h"
#include "proto.h"
#include "savedstate.h"
#include "segment.h"

/* Writes len bytes to dir/file. Returns 0 or a negative errno. */
static int seeds_write(const char *dir, const char *file, const void *buf, size_t len)
{
        char path[4096];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", dir, file);
        f = fopen(path, "we");
        if (!f)
                return -errno;
        size_t n = fwrite(buf, 1, len, f);
        int r = n == len ? 0 : -EIO;
        if (fclose(f) != 0 && r == 0)
                r = -errno;
        return r;
}

/* Fills a packed parameter list as the supervisor reports a PostgreSQL session. */
static void seeds_params(char *buf, size_t cap, uint32_t *len)
{
        static const char *const values[] = {
                "app",  "UTF8", "ISO, MDY", "off", "off", "on",   "postgres",         "off",
                "UTF8", "15.8", "app",      "on",  "UTC", "4096", "\"$user\", public"};
        _Static_assert(sizeof(values) / sizeof(values[0]) == FP_PG_N_REPORTED, "one per name");

        *len = 0;
        for (size_t i = 0; i < FP_PG_N_REPORTED; i++)
                (void)fp_params_add(buf, cap, len, fp_pg_reported_params[i], values[i]);
}

static int seeds_proto(const char *dir)
{
        struct fp_msg_hello hello;
        struct fp_msg_hello_ok hello_ok;
        struct fp_msg_acquire acquire;
        struct fp_msg_lease lease;
        struct fp_msg_release release;
        struct fp_msg_error error;
        struct fp_msg_cancel cancel;
        struct fp_msg_admin admin;
        struct fp_msg_admin_ok admin_ok;
        struct fp_msg_lease lease_my;
        int r = 0;

        fp_msg_init(&hello.hdr, FP_OP_HELLO, sizeof(hello), 1);
        hello.pid = 4242;
        fp_msg_init(&hello_ok.hdr, FP_OP_HELLO_OK, sizeof(hello_ok), 1);
        hello_ok.supervisor_pid = 100;
        fp_msg_init(&acquire.hdr, FP_OP_ACQUIRE, sizeof(acquire), 2);
        acquire.timeout_ms = -1;
        snprintf(acquire.pool, sizeof(acquire.pool), "main");
        snprintf(acquire.label, sizeof(acquire.label), "GET /orders");
        fp_msg_init(&lease.hdr, FP_OP_LEASE, sizeof(lease), 2);
        lease.lease_id = (1ull << 32) | 7;
        lease.db_kind = FP_DB_POSTGRES;
        lease.txn = FP_TXN_IDLE;
        lease.pg.backend_pid = 31337;
        lease.pg.cancel_key = 0x12345678;
        lease.pg.has_cancel_key = 1;
        snprintf(lease.pg.user, sizeof(lease.pg.user), "app");
        snprintf(lease.pg.dbname, sizeof(lease.pg.dbname), "appdb");
        seeds_params(lease.pg.params, sizeof(lease.pg.params), &lease.pg.params_len);
        lease.flags = FP_LEASE_STATEMENTS;
        for (uint8_t i = 0; i < 3; i++) {
                uint8_t hash[FP_STMT_HASH_LEN];
                memset(hash, 0x10 * (i + 1), sizeof(hash));
                (void)fp_stmt_set_add(&lease.statements, hash);
        }
        fp_msg_init(&release.hdr, FP_OP_RELEASE, sizeof(release), 3);
        release.lease_id = lease.lease_id;
        release.txn = FP_TXN_INTRANS;
        seeds_params(release.params, sizeof(release.params), &release.params_len);
        release.flags = FP_RELEASE_STATEMENTS;
        release.statements = lease.statements;
        fp_msg_init(&error.hdr, FP_OP_ERROR, sizeof(error), 2);
        error.error = -ETIMEDOUT;
        snprintf(error.text, sizeof(error.text),
                 "QueuePool limit of size 5 overflow 10 reached, connection timed out, "
                 "timeout 30.00");

        fp_msg_init(&cancel.hdr, FP_OP_CANCEL, sizeof(cancel), 4);
        cancel.lease_id = lease.lease_id;
        fp_msg_init(&admin.hdr, FP_OP_ADMIN, sizeof(admin), 5);
        admin.command = 1;
        snprintf(admin.pool, sizeof(admin.pool), "main");
        fp_msg_init(&admin_ok.hdr, FP_OP_ADMIN_OK, sizeof(admin_ok), 5);
        snprintf(admin_ok.text, sizeof(admin_ok.text), "pool main paused");
        fp_msg_init(&lease_my.hdr, FP_OP_LEASE, sizeof(lease_my), 6);
        lease_my.lease_id = (2ull << 32) | 1;
        lease_my.db_kind = FP_DB_MYSQL;
        lease_my.my.thread_id = 77;
        lease_my.my.protocol_version = 10;
        snprintf(lease_my.my.server_version, sizeof(lease_my.my.server_version), "10.11.6-MariaDB");
        snprintf(lease_my.my.charset, sizeof(lease_my.my.charset), "utf8mb4");
        snprintf(lease_my.my.user, sizeof(lease_my.my.user), "app");
        snprintf(lease_my.my.db, sizeof(lease_my.my.db), "appdb");

        if (r == 0)
                r = seeds_write(dir, "hello.bin", &hello, sizeof(hello));
        if (r == 0)
                r = seeds_write(dir, "hello_ok.bin", &hello_ok, sizeof(hello_ok));
        if (r == 0)
                r = seeds_write(dir, "acquire.bin", &acquire, sizeof(acquire));
        if (r == 0)
                r = seeds_write(dir, "lease.bin", &lease, sizeof(lease));
        if (r == 0)
                r = seeds_write(dir, "release.bin", &release, sizeof(release));
        /* Malformed: a hash twice (forkpoold closes the connection). */
        memcpy(release.statements.hash[1], release.statements.hash[0], FP_STMT_HASH_LEN);
        if (r == 0)
                r = seeds_write(dir, "release_repeat.bin", &release, sizeof(release));
        if (r == 0)
                r = seeds_write(dir, "error.bin", &error, sizeof(error));
        if (r == 0)
                r = seeds_write(dir, "cancel.bin", &cancel, sizeof(cancel));
        if (r == 0)
                r = seeds_write(dir, "admin.bin", &admin, sizeof(admin));
        if (r == 0)
                r = seeds_write(dir, "admin_ok.bin", &admin_ok, sizeof(admin_ok));
        if (r == 0)
                r = seeds_write(dir, "lease_mysql.bin", &lease_my, sizeof(lease_my));
        return r;
}

/* Fills pool i of a writable segment: name, settings, accounting and its slots. */
static void seeds_pool(struct fp_segment *seg, uint32_t i, const char *name, uint32_t slot_base,
                       uint32_t slot_count)
{
        struct fp_shm_pool *p = fp_segment_pool(seg, i);

        fp_segment_write_begin(p);
        snprintf(p->name, sizeof(p->name), "%s", name);
        p->db_kind = FP_DB_POSTGRES;
        p->pool_size = (int32_t)slot_count - 1;
        p->max_overflow = 1;
        p->timeout_ms = 30000;
        p->connect_timeout_ms = 10000;
        p->slot_base = slot_base;
        p->slot_count = slot_count;
        p->recycle_ms = -1;
        for (uint32_t k = 0; k < slot_count; k++) {
                struct fp_shm_slot *s = fp_segment_slot(seg, slot_base + k);
                s->state = k % FP_SLOT_STATE_MAX;
                s->backend_pid = s->state >= FP_SLOT_IDLE ? 20000 + (int32_t)k : 0;
                s->connect_usec = s->backend_pid ? 1700000000000000ull : 0;
                if (s->state == FP_SLOT_LEASED) {
                        s->holder_pid = 4242;
                        s->lease_generation = 3;
                        s->last_checkout_usec = 1700000001000000ull;
                        snprintf(s->label, sizeof(s->label), "GET /orders");
                        p->checked_out++;
                } else if (s->state == FP_SLOT_IDLE) {
                        p->checked_in++;
                }
                p->live += s->backend_pid != 0;
        }
        p->overflow = p->live - p->pool_size;
        p->counters.acquires = 10;
        p->counters.releases = 9;
        p->counters.connects = (uint64_t)p->live;
        fp_segment_write_end(p);
}

static int seeds_segment(const char *dir)
{
        char name[FP_SHM_NAME_MAX];
        struct fp_segment seg;
        int r;

        snprintf(name, sizeof(name), "/fp-fuzz-seeds.%d", (int)getpid());
        r = fp_segment_create(&seg, name, 2, 2 * FP_SLOT_STATE_MAX, 0600, -1);
        if (r < 0)
                return r;
        (void)fp_segment_unlink(name);

        seeds_pool(&seg, 0, "main", 0, FP_SLOT_STATE_MAX + 2);
        seeds_pool(&seg, 1, "reports", FP_SLOT_STATE_MAX + 2, FP_SLOT_STATE_MAX - 2);
        for (uint32_t type = 1; type < FP_EV_TYPE_MAX; type++) {
                struct fp_shm_event ev = {.time_usec = 1700000002000000ull,
                                          .type = (uint16_t)type,
                                          .pool = (uint16_t)(type % 2),
                                          .slot = type % FP_SLOT_STATE_MAX,
                                          .pid = 4242,
                                          .backend_pid = 20003};
                fp_segment_event_write(&seg, &ev);
        }

        /* fuzz_segment's format: the image size, then the image without its trailing zeros. */
        size_t len = seg.size;
        const unsigned char *image = (const unsigned char *)seg.hdr;
        while (len > 0 && image[len - 1] == 0)
                len--;
        unsigned char *buf = malloc(sizeof(uint32_t) + len);
        if (!buf) {
                fp_segment_close(&seg);
                return -ENOMEM;
        }
        uint32_t size_le = htole32((uint32_t)seg.size);
        memcpy(buf, &size_le, sizeof(size_le));
        memcpy(buf + sizeof(size_le), image, len);
        r = seeds_write(dir, "segment.bin", buf, sizeof(size_le) + len);
        free(buf);
        fp_segment_close(&seg);
        return r;
}

/* A state memfd's first bytes as fuzz_state takes them: its size, header, two records. */
static int seeds_state(const char *dir)
{
        struct {
                struct fp_saved_header hdr;
                struct fp_saved_slot rec[2];
        } in;
        uint8_t buf[sizeof(uint64_t) + sizeof(in)];
        char name[FP_SAVED_NAME_MAX];

        _Static_assert(sizeof(in) == FP_SAVED_HEADER_SIZE + 2 * FP_SAVED_SLOT_SIZE, "no padding");
        memset(&in, 0, sizeof(in));
        uint64_t file_size_le = htole64(fp_saved_state_size());
        fp_saved_header_init(&in.hdr, 0x0123456789abcdefull);
        for (uint32_t i = 0; i < 2; i++) {
                struct fp_saved_slot *s = &in.rec[i];
                s->magic = FP_SAVED_SLOT_MAGIC;
                s->index = i;
                snprintf(s->pool, sizeof(s->pool), "main");
                s->state = i ? FP_SLOT_LEASED : FP_SLOT_IDLE;
                s->holder_pid = i ? 4242 : 0;
                s->lease_generation = 7;
                s->lease_id = i ? (uint64_t)0x1234 << 48 | (uint64_t)i << 32 | 7 : 0;
        }
        in.rec[0].db_kind = FP_DB_POSTGRES;
        in.rec[0].pg.backend_pid = 1234;
        in.rec[0].pg.cancel_key = 5678;
        snprintf(in.rec[0].pg.user, sizeof(in.rec[0].pg.user), "app");
        snprintf(in.rec[0].pg.dbname, sizeof(in.rec[0].pg.dbname), "appdb");
        seeds_params(in.rec[0].pg.params, sizeof(in.rec[0].pg.params), &in.rec[0].pg.params_len);
        in.rec[1].db_kind = FP_DB_MYSQL;
        in.rec[1].my.thread_id = 99;
        snprintf(in.rec[1].my.server_version, sizeof(in.rec[1].my.server_version), "10.11.6");
        snprintf(in.rec[1].my.charset, sizeof(in.rec[1].my.charset), "utf8mb4");
        snprintf(in.rec[1].my.user, sizeof(in.rec[1].my.user), "app");
        memcpy(buf, &file_size_le, sizeof(file_size_le));
        memcpy(buf + sizeof(file_size_le), &in, sizeof(in));
        int r = seeds_write(dir, "state.bin", buf, sizeof(buf));
        if (r < 0)
                return r;
        uint64_t zero = 0;
        fp_saved_name_format(name, sizeof(name), 0x0123456789abcdefull, 3, 17);
        char text[sizeof(zero) + sizeof(name)];
        memcpy(text, &zero, sizeof(zero));
        memcpy(text + sizeof(zero), name, strlen(name));
        return seeds_write(dir, "name.bin", text, sizeof(zero) + strlen(name));
}

/* Creates dir/sub and writes its path into buf. Returns 0 or a negative errno. */
static int seeds_dir(char *buf, size_t len, const char *dir, const char *sub)
{
        snprintf(buf, len, "%s/%s", dir, sub);
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return -errno;
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

int main(int argc, char *argv[])
{
        char dir[4096];
        int r;

        if (argc != 2) {
                fprintf(stderr, "usage: fuzz_seeds DIR\n");
                return 1;
        }
        r = seeds_dir(dir, sizeof(dir), argv[1], "fuzz_proto");
        if (r == 0)
                r = seeds_proto(dir);
        if (r == 0)
                r = seeds_dir(dir, sizeof(dir), argv[1], "fuzz_segment");
        if (r == 0)
                r = seeds_segment(dir);
        if (r == 0)
                r = seeds_dir(dir, sizeof(dir), argv[1], "fuzz_state");
        if (r == 0)
                r = seeds_state(dir);
        if (r < 0) {
                fprintf(stderr, "fuzz_seeds: cannot write the seeds in %s: %s\n", argv[1],
                        strerror(-r));
                return 1;
        }
        return 0;
}
