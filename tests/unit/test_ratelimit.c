/* SPDX-License-Identifier: MIT */
/*
 * test_ratelimit.c — the log lines' token bucket (agent/ratelimit.c): a
 * burst passes, then one line per interval, and the next line that passes
 * reports how many were suppressed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ratelimit.h"

static void test_burst_then_interval(void **state)
{
        struct fp_ratelimit rl = FP_RATELIMIT_INIT(3, 1000);
        uint64_t suppressed = 99;
        (void)state;

        for (int i = 0; i < 3; i++) {
                assert_true(fp_ratelimit_allow(&rl, 5000, &suppressed));
                assert_int_equal(suppressed, 0);
        }
        /* The bucket is empty: refused and counted, *ret untouched. */
        suppressed = 99;
        for (int i = 0; i < 1000; i++)
                assert_false(fp_ratelimit_allow(&rl, 5000 + (uint64_t)i % 1000, &suppressed));
        assert_int_equal(suppressed, 99);
        /* One interval later one line passes, and says how many were dropped. */
        assert_true(fp_ratelimit_allow(&rl, 6000, &suppressed));
        assert_int_equal(suppressed, 1000);
        assert_false(fp_ratelimit_allow(&rl, 6999, &suppressed));
        assert_true(fp_ratelimit_allow(&rl, 7000, &suppressed));
        assert_int_equal(suppressed, 1);
}

static void test_refill_caps_at_burst(void **state)
{
        struct fp_ratelimit rl = FP_RATELIMIT_INIT(2, 1000);
        uint64_t suppressed;
        (void)state;

        assert_true(fp_ratelimit_allow(&rl, 0, &suppressed));
        assert_true(fp_ratelimit_allow(&rl, 0, &suppressed));
        assert_false(fp_ratelimit_allow(&rl, 0, &suppressed));
        /* A long quiet time refills at most the burst. */
        assert_true(fp_ratelimit_allow(&rl, 1000000, &suppressed));
        assert_int_equal(suppressed, 1);
        assert_true(fp_ratelimit_allow(&rl, 1000000, &suppressed));
        assert_false(fp_ratelimit_allow(&rl, 1000000, &suppressed));
        /* Partial intervals are not lost: 1.5 then 0.5 intervals give two tokens. */
        assert_true(fp_ratelimit_allow(&rl, 1001500, &suppressed));
        assert_false(fp_ratelimit_allow(&rl, 1001600, &suppressed));
        assert_true(fp_ratelimit_allow(&rl, 1002000, &suppressed));
        assert_int_equal(suppressed, 1);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_burst_then_interval),
                cmocka_unit_test(test_refill_caps_at_burst),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
