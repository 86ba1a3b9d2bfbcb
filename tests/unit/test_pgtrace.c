/* SPDX-License-Identifier: MIT */
/*
 * test_pgtrace.c — the cancel key read from libpq's protocol trace
 * (agent/drivers/pgtrace.c): libpq 15's format is read, with and without
 * timestamps; libpq 18's longer keys and anything malformed are refused,
 * never read as a wrong key.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "pgtrace.h"

static int parse(const char *text, int *pid, int *key)
{
        return fp_pgtrace_backend_key(text, strlen(text), pid, key);
}

/* A handshake as libpq 15 traced it with PQTRACE_SUPPRESS_TIMESTAMPS. */
static void test_libpq15(void **state)
{
        (void)state;
        const char *trace = "F\t46\tUnknown message: length is 46\n"
                            "B\t8\tAuthenticationOk\n"
                            "B\t22\tParameterStatus\t \"application_name\" \"\"\n"
                            "B\t12\tBackendKeyData\t 2155 934878762\n"
                            "B\t5\tReadyForQuery\t I\n";
        int pid = 0, key = 0;
        assert_int_equal(parse(trace, &pid, &key), 0);
        assert_int_equal(pid, 2155);
        assert_int_equal(key, 934878762);

        /* Negative keys, and the extremes of an Int32. */
        assert_int_equal(parse("B\t12\tBackendKeyData\t 7 -2147483648\n", &pid, &key), 0);
        assert_int_equal(pid, 7);
        assert_int_equal(key, INT32_MIN);
        assert_int_equal(parse("B\t12\tBackendKeyData\t 2147483647 2147483647", &pid, &key), 0);
        assert_int_equal(pid, INT32_MAX);
        assert_int_equal(key, INT32_MAX);

        /* With timestamps. */
        assert_int_equal(
                parse("2026-12-01 10:00:00.123456\tB\t12\tBackendKeyData\t 9 -5\n", &pid, &key), 0);
        assert_int_equal(pid, 9);
        assert_int_equal(key, -5);
}

/* Nothing a later libpq could print is taken for a 4-byte key. */
static void test_refused(void **state)
{
        (void)state;
        int pid = -1, key = -1;
        /* libpq 18, protocol 3.2: a 32-byte key printed as bytes, a longer message. */
        assert_int_equal(parse("B\t40\tBackendKeyData\t 2155 '\\x01\\x02...'\n", &pid, &key),
                         -EPROTO);
        assert_int_equal(parse("B\t12\tBackendKeyData\t 2155 '\\x01\\x02\\x03\\x04'\n", &pid, &key),
                         -EPROTO);
        assert_int_equal(parse("F\t12\tBackendKeyData\t 2155 1\n", &pid, &key), -EPROTO);
        assert_int_equal(parse("B\t12\tBackendKeyData\t 2155 1 3\n", &pid, &key), -EPROTO);
        assert_int_equal(parse("B\t12\tBackendKeyData\t 2155\n", &pid, &key), -EPROTO);
        assert_int_equal(parse("B\t12\tBackendKeyData\t 0 1\n", &pid, &key), -EPROTO);
        assert_int_equal(parse("B\t12\tBackendKeyData\t 1 2147483648\n", &pid, &key), -EPROTO);
        assert_int_equal(parse("B\t12\tBackendKeyData\t 1 99999999999999999999\n", &pid, &key),
                         -EPROTO);
        assert_int_equal(parse("B\t12\tBackendKeyData\t1 2\n", &pid, &key), -EPROTO);
        assert_int_equal(parse("xB\t12\tBackendKeyData\t 1 2\n", &pid, &key), -EPROTO);
        assert_int_equal(parse("B\t5\tReadyForQuery\t I\n", &pid, &key), -ENOENT);
        assert_int_equal(parse("", &pid, &key), -ENOENT);
        /* Out parameters untouched on failure. */
        assert_int_equal(pid, -1);
        assert_int_equal(key, -1);
        /* Not NUL-terminated: only len bytes are read. */
        const char cut[] = "B\t12\tBackendKeyData\t 2155 934878762";
        assert_int_equal(fp_pgtrace_backend_key(cut, sizeof(cut) - 1 - 3, &pid, &key), 0);
        assert_int_equal(key, 934878);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_libpq15),
                cmocka_unit_test(test_refused),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
