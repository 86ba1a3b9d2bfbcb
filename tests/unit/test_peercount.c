/* SPDX-License-Identifier: MIT */
/*
 * test_peercount.c — connection counts per uid or pid (agent/peercount.c):
 * counting up and down, removal at 0, growth, and a randomised check
 * against a plain array.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "peercount.h"

static void test_basic(void **state)
{
        struct fp_peercount pc = FP_PEERCOUNT_INIT;
        (void)state;

        assert_int_equal(fp_peercount_get(&pc, 33), 0);
        fp_peercount_sub(&pc, 33); /* absent: no-op */
        assert_int_equal(fp_peercount_add(&pc, 33), 0);
        assert_int_equal(fp_peercount_add(&pc, 33), 0);
        assert_int_equal(fp_peercount_add(&pc, 0), 0);
        assert_int_equal(fp_peercount_add(&pc, UINT32_MAX), 0);
        assert_int_equal(fp_peercount_get(&pc, 33), 2);
        assert_int_equal(fp_peercount_get(&pc, 0), 1);
        assert_int_equal(fp_peercount_get(&pc, UINT32_MAX), 1);
        assert_int_equal(pc.n_keys, 3);
        fp_peercount_sub(&pc, 33);
        fp_peercount_sub(&pc, 33);
        assert_int_equal(fp_peercount_get(&pc, 33), 0);
        assert_int_equal(pc.n_keys, 2);
        fp_peercount_sub(&pc, 33);
        assert_int_equal(pc.n_keys, 2);
        fp_peercount_done(&pc);
        assert_int_equal(fp_peercount_get(&pc, 0), 0);
        fp_peercount_done(&pc);
}

/* Many keys (consecutive pids) grow the table; counts stay right throughout. */
static void test_random_against_array(void **state)
{
        enum {
                KEYS = 5000,
                STEPS = 200000
        };
        static uint32_t expect[KEYS];
        struct fp_peercount pc = FP_PEERCOUNT_INIT;
        (void)state;

        srandom(7);
        for (int step = 0; step < STEPS; step++) {
                uint32_t k = (uint32_t)random() % KEYS;
                uint32_t key = 100000 + k; /* pids are dense */
                if (random() % 3 != 0) {
                        assert_int_equal(fp_peercount_add(&pc, key), 0);
                        expect[k]++;
                } else {
                        fp_peercount_sub(&pc, key);
                        if (expect[k] > 0)
                                expect[k]--;
                }
                if (step % 10000 == 0)
                        for (uint32_t j = 0; j < KEYS; j++)
                                assert_int_equal(fp_peercount_get(&pc, 100000 + j), expect[j]);
        }
        size_t keys = 0;
        for (uint32_t j = 0; j < KEYS; j++) {
                assert_int_equal(fp_peercount_get(&pc, 100000 + j), expect[j]);
                keys += expect[j] > 0;
        }
        assert_int_equal(pc.n_keys, keys);
        assert_true(pc.n_buckets >= 64 && (pc.n_buckets & (pc.n_buckets - 1)) == 0);
        fp_peercount_done(&pc);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_basic),
                cmocka_unit_test(test_random_against_array),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
