/* SPDX-License-Identifier: MIT */
/*
 * test_api.c — unit tests of libforkpool's calls that need no supervisor:
 * the version macros against forkpool_version(), forkpool_strerror() for
 * every code the library returns and for others, and the argument checks of
 * forkpool_pool_state(). Linked against the shared library, as a program is.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "forkpool.h"

/* The header alone must compile without libpq-fe.h or mysql.h. */
#ifdef LIBPQ_FE_H
#error "forkpool.h included libpq-fe.h"
#endif
#ifdef _mysql_h
#error "forkpool.h included mysql.h"
#endif

static void test_version(void **state)
{
        char expected[32];
        (void)state;

        snprintf(expected, sizeof(expected), "%d.%d.%d", FORKPOOL_VERSION_MAJOR,
                 FORKPOOL_VERSION_MINOR, FORKPOOL_VERSION_PATCH);
        assert_string_equal(expected, FORKPOOL_VERSION_STRING);
        assert_string_equal(forkpool_version(), FORKPOOL_VERSION_STRING);
        assert_int_equal(FORKPOOL_VERSION_NUMBER, FORKPOOL_VERSION_MAJOR * 10000 +
                                                          FORKPOOL_VERSION_MINOR * 100 +
                                                          FORKPOOL_VERSION_PATCH);
#if FORKPOOL_VERSION_NUMBER < 100
#error "FORKPOOL_VERSION_NUMBER is not usable in #if"
#endif
}

/* Every code a forkpool function documents in forkpool.h. */
static const int documented[] = {
        -ETIMEDOUT, -ECHILD,     -ENOENT,    -ECONNREFUSED, -ECONNRESET,   -EACCES,
        -EPERM,     -EPROTO,     -ESHUTDOWN, -EHOSTUNREACH, -ECONNABORTED, -EBUSY,
        -EAGAIN,    -EOPNOTSUPP, -EINVAL,    -ENOMEM,       -ENAMETOOLONG, -EBADMSG,
};

static void test_strerror_documented(void **state)
{
        (void)state;
        assert_string_equal(forkpool_strerror(0), "success");
        for (size_t i = 0; i < sizeof(documented) / sizeof(documented[0]); i++) {
                const char *text = forkpool_strerror(documented[i]);
                assert_non_null(text);
                /* Its own text: neither the generic fallback nor the C library's. */
                if (strcmp(text, "unknown error") == 0 ||
                    strcmp(text, strerror(-documented[i])) == 0)
                        fail_msg("forkpool_strerror(%d) has no text of its own: '%s'",
                                 documented[i], text);
                for (size_t k = 0; k < i; k++)
                        if (strcmp(text, forkpool_strerror(documented[k])) == 0)
                                fail_msg("%d and %d share the text '%s'", documented[i],
                                         documented[k], text);
        }
        /* A positive errno reads as its negative. */
        assert_string_equal(forkpool_strerror(ETIMEDOUT), forkpool_strerror(-ETIMEDOUT));
}

static void test_strerror_fallback(void **state)
{
        (void)state;
        /* Any other errno: the C library's description, never "unknown". */
        assert_string_equal(forkpool_strerror(-EMFILE), strerror(EMFILE));
        assert_string_equal(forkpool_strerror(-EPIPE), strerror(EPIPE));
        /* Not an errno at all. */
        assert_string_equal(forkpool_strerror(-123456), "unknown error");
        assert_string_equal(forkpool_strerror(INT32_MIN), "unknown error");
        /* Static text: a second call does not change the first's. */
        const char *a = forkpool_strerror(-EMFILE);
        const char *b = forkpool_strerror(-ENFILE);
        assert_ptr_not_equal(a, b);
        assert_string_equal(a, strerror(EMFILE));
}

static void test_pool_state_arguments(void **state)
{
        forkpool_pool_stats st = FORKPOOL_POOL_STATS_INIT;
        (void)state;

        assert_int_equal(st.struct_size, sizeof(st));
        assert_int_equal(forkpool_pool_state(NULL, "main", &st), -EINVAL);
        assert_true(FORKPOOL_POOL_STATS_HAS(&st, paused));
        st.struct_size = offsetof(forkpool_pool_stats, paused);
        assert_false(FORKPOOL_POOL_STATS_HAS(&st, paused));
        assert_true(FORKPOOL_POOL_STATS_HAS(&st, oldest_wait_s));
}

static void test_open_refused(void **state)
{
        forkpool *fp = NULL;
        (void)state;

        /* No socket file at all is "no supervisor", as nothing listening is. */
        assert_int_equal(forkpool_open("/nonexistent-forkpool-dir/forkpool.sock", &fp),
                         -ECONNREFUSED);
        assert_null(fp);
        assert_int_equal(forkpool_open(NULL, NULL), -EINVAL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_version),
                cmocka_unit_test(test_strerror_documented),
                cmocka_unit_test(test_strerror_fallback),
                cmocka_unit_test(test_pool_state_arguments),
                cmocka_unit_test(test_open_refused),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
