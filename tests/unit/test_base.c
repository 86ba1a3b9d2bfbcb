/* SPDX-License-Identifier: MIT */
/*
 * test_base.c — the helpers of base/ and agent/access.c that every room
 * relies on: one-line texts, wire integers, the unconnected socket put in
 * place of a descriptor, the control-socket connect and poll wait, the allow
 * lists, SQLAlchemy's status line, and the statement sets of the control
 * protocol (a release's set that repeats a hash is malformed).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "access.h"
#include "bytes.h"
#include "fdutil.h"
#include "proto.h"
#include "segment.h"
#include "sockio.h"
#include "text.h"

static void test_one_line(void **state)
{
        char out[16];
        (void)state;

        fp_one_line("FATAL:  no\nDETAIL: more\n", out, sizeof(out));
        assert_string_equal(out, "FATAL:  no DETA");
        fp_one_line("error\r\n\n", out, sizeof(out));
        assert_string_equal(out, "error");
        fp_one_line("a\rb", out, sizeof(out));
        assert_string_equal(out, "a b");
        fp_one_line(NULL, out, sizeof(out));
        assert_string_equal(out, "");
        fp_one_line("\n", out, sizeof(out));
        assert_string_equal(out, "");
        fp_one_line("abc", out, 1);
        assert_string_equal(out, "");
}

static void test_bytes(void **state)
{
        char be[4], *p = be;
        unsigned char le[6], *q = le;
        (void)state;

        fp_put_be32(&p, 80877102u);
        assert_ptr_equal(p, be + 4);
        assert_memory_equal(be, "\x04\xd2\x16\x2e", 4);
        fp_put_le16(&q, 0x1234);
        fp_put_le32(&q, 0xa1b2c3d4u);
        assert_ptr_equal(q, le + 6);
        assert_memory_equal(le, "\x34\x12\xd4\xc3\xb2\xa1", 6);
        assert_int_equal(fp_get_le32(le + 2), 0xa1b2c3d4u);
}

static void test_neutralize_fd(void **state)
{
        int sv[2];
        char byte = 'x';
        (void)state;

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        int fd = sv[0];
        assert_int_equal(fp_neutralize_fd(fd), 0);
        /* Same number, now an unconnected socket: writes fail, nothing reaches the peer. */
        assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        assert_int_equal(send(fd, &byte, 1, MSG_NOSIGNAL | MSG_DONTWAIT), -1);
        assert_true(errno == ENOTCONN || errno == EPIPE);
        /* The original was closed: the peer sees the end of the stream. */
        assert_int_equal(recv(sv[1], &byte, 1, MSG_DONTWAIT), 0);
        close(fd);
        close(sv[1]);
        assert_int_equal(fp_neutralize_fd(-1), -EBADF);
}

static void test_connect_and_poll(void **state)
{
        char path[160], longpath[300];
        (void)state;

        memset(longpath, 'a', sizeof(longpath) - 1);
        longpath[0] = '/';
        longpath[sizeof(longpath) - 1] = '\0';
        assert_int_equal(fp_connect_seqpacket(longpath), -ENAMETOOLONG);
        snprintf(path, sizeof(path), "/tmp/fp-test-base.%d.sock", (int)getpid());
        (void)unlink(path);
        assert_int_equal(fp_connect_seqpacket(path), -ENOENT);

        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
        assert_int_equal(fp_poll_fd(sv[0], POLLIN, 10), -ETIMEDOUT);
        assert_int_equal(fp_wait_fd(sv[0], POLLIN, 0), -ETIMEDOUT);
        assert_int_equal(write(sv[1], "m", 1), 1);
        assert_true(fp_poll_fd(sv[0], POLLIN, 1000) & POLLIN);
        assert_int_equal(fp_wait_fd(sv[0], POLLIN, 1000), 0);
        close(sv[0]);
        close(sv[1]);
}

static void test_access_lists(void **state)
{
        const uint32_t uids[] = {1001, 1002};
        const uint32_t gids[] = {33};
        const gid_t groups[] = {100, 33};
        (void)state;

        assert_true(fp_access_privileged(0));
        assert_true(fp_access_privileged(geteuid()));
        assert_true(fp_access_listed(uids, 2, gids, 1, 1002, 5, NULL, 0));
        assert_true(fp_access_listed(uids, 2, gids, 1, 7, 33, NULL, 0));
        assert_true(fp_access_listed(uids, 2, gids, 1, 7, 5, groups, 2));
        assert_false(fp_access_listed(uids, 2, gids, 1, 7, 5, groups, 1));
        /* Empty lists let nobody in. */
        assert_false(fp_access_listed(NULL, 0, NULL, 0, 1001, 33, groups, 2));
}

static void test_status_line(void **state)
{
        char line[256];
        (void)state;

        fp_pool_status_line(line, sizeof(line), FP_POOL_QUEUE, 5, 1, -3, 1);
        assert_string_equal(line, "Pool size: 5  Connections in pool: 1 Current Overflow: -3 "
                                  "Current Checked out connections: 1");
        fp_pool_status_line(line, sizeof(line), FP_POOL_NULL, 0, 0, 0, 2);
        assert_string_equal(line, "NullPool");
        fp_pool_status_line(line, sizeof(line), FP_POOL_PROCESS, 3, 0, 0, 2);
        assert_string_equal(line, "ProcessPool size: 2");
        assert_string_equal(fp_reset_mode_name(FP_RESET_DISCARD), "discard");
        enum fp_reset_mode mode = FP_RESET_ROLLBACK;
        assert_int_equal(fp_reset_mode_parse("auto", &mode), 0);
        assert_int_equal(mode, FP_RESET_AUTO);
        assert_int_equal(fp_reset_mode_parse("bogus", &mode), -EINVAL);
        assert_int_equal(mode, FP_RESET_AUTO);
}

/* A hash of its own for each n; those of the same n / 256 share their first bytes. */
static void stmt_hash(uint32_t n, uint8_t *hash)
{
        memset(hash, 0, FP_STMT_HASH_LEN);
        hash[0] = (uint8_t)(n / 256);
        hash[FP_STMT_HASH_LEN - 1] = (uint8_t)n;
        hash[FP_STMT_HASH_LEN - 2] = (uint8_t)(n >> 8);
}

/* The plain answer: whether any two of set's hashes are equal. */
static bool stmt_set_repeats(const struct fp_stmt_set *set)
{
        for (uint32_t i = 0; i < set->count; i++)
                for (uint32_t j = i + 1; j < set->count; j++)
                        if (memcmp(set->hash[i], set->hash[j], FP_STMT_HASH_LEN) == 0)
                                return true;
        return false;
}

static void test_stmt_set_valid(void **state)
{
        (void)state;
        static struct fp_stmt_set set;
        memset(&set, 0, sizeof(set));
        assert_true(fp_stmt_set_valid(&set));
        /* A full set of distinct hashes, every one in the same slot at first: valid. */
        for (uint32_t i = 0; i < FP_STMTS_MAX; i++) {
                uint8_t hash[FP_STMT_HASH_LEN];
                stmt_hash(i, hash);
                assert_int_equal(fp_stmt_set_add(&set, hash), 0);
        }
        assert_int_equal(set.count, FP_STMTS_MAX);
        assert_true(fp_stmt_set_valid(&set));
        /* A count beyond the bound. */
        set.count = FP_STMTS_MAX + 1;
        assert_false(fp_stmt_set_valid(&set));
        /* A hash twice, wherever the two are. */
        uint32_t pairs[][2] = {
                {0, 1}, {0, FP_STMTS_MAX - 1}, {17, 40}, {FP_STMTS_MAX - 2, FP_STMTS_MAX - 1}};
        for (size_t p = 0; p < sizeof(pairs) / sizeof(pairs[0]); p++) {
                set.count = FP_STMTS_MAX;
                for (uint32_t i = 0; i < FP_STMTS_MAX; i++)
                        stmt_hash(i, set.hash[i]);
                memcpy(set.hash[pairs[p][1]], set.hash[pairs[p][0]], FP_STMT_HASH_LEN);
                assert_false(fp_stmt_set_valid(&set));
                set.count = 2;
                memcpy(set.hash[1], set.hash[0], FP_STMT_HASH_LEN);
                assert_false(fp_stmt_set_valid(&set));
        }
        /* Sets of every size, some hashes drawn twice, against the plain answer. */
        uint32_t seed = 12345;
        for (int round = 0; round < 2000; round++) {
                seed = seed * 1103515245u + 12345u;
                set.count = (seed >> 8) % (FP_STMTS_MAX + 1);
                for (uint32_t i = 0; i < set.count; i++) {
                        seed = seed * 1103515245u + 12345u;
                        /* Few distinct values (and shared first bytes) when round is odd. */
                        stmt_hash((seed >> 8) % (round % 2 ? 300u : 100000u), set.hash[i]);
                }
                assert_int_equal(fp_stmt_set_valid(&set), !stmt_set_repeats(&set));
        }
        /* What fp_stmt_set_add() and fp_stmt_set_remove() make is always valid. */
        memset(&set, 0, sizeof(set));
        for (uint32_t i = 0; i < 500; i++) {
                uint8_t hash[FP_STMT_HASH_LEN];
                stmt_hash((i * 7) % 90, hash);
                if (i % 3 == 2)
                        fp_stmt_set_remove(&set, hash);
                else
                        (void)fp_stmt_set_add(&set, hash);
                assert_true(fp_stmt_set_valid(&set));
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_one_line),       cmocka_unit_test(test_bytes),
                cmocka_unit_test(test_neutralize_fd),  cmocka_unit_test(test_connect_and_poll),
                cmocka_unit_test(test_access_lists),   cmocka_unit_test(test_status_line),
                cmocka_unit_test(test_stmt_set_valid),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
