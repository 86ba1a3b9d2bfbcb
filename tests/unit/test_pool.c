/* SPDX-License-Identifier: MIT */
/*
 * test_pool.c — QueuePool accounting (agent/pool.c) against SQLAlchemy's
 * observable behaviour (research/sqlalchemy_pool.md §2): counts, the status
 * line, when connections are discarded, waiter order and timeouts, failed
 * connects, dead clients and dispose. The pool's I/O is replaced by a
 * recorder: connects complete when the test says so.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pool.h"

#define MAX_EVENTS 64

struct recorder {
        struct fp_record *connecting[MAX_EVENTS];
        int n_connecting;
        uint32_t leased_request[MAX_EVENTS];
        struct fp_record *leased_rec[MAX_EVENTS];
        int n_leased;
        uint32_t error_request[MAX_EVENTS];
        int error_code[MAX_EVENTS];
        char error_text[MAX_EVENTS][160];
        int n_errors;
        int n_closed, n_hard_closed, n_resets;
        int fail_sends;
        int fake_conn;
};

static struct recorder rec_log;

static void fake_connect(struct fp_pool *pool, struct fp_record *rec)
{
        (void)pool;
        rec_log.connecting[rec_log.n_connecting++] = rec;
}

static void fake_reset(struct fp_pool *pool, struct fp_record *rec,
                       const struct fp_release_info *info)
{
        (void)info;
        rec_log.n_resets++;
        fp_pool_reset_done(pool, rec, true);
}

static void fake_close(struct fp_pool *pool, struct fp_record *rec, bool hard)
{
        (void)pool, (void)rec;
        rec_log.n_closed++;
        rec_log.n_hard_closed += hard;
}

static int fake_send_lease(struct fp_pool *pool, struct fp_record *rec, struct fp_waiter *w)
{
        (void)pool;
        if (rec_log.fail_sends)
                return -EPIPE;
        rec_log.leased_request[rec_log.n_leased] = w->request_id;
        rec_log.leased_rec[rec_log.n_leased++] = rec;
        return 0;
}

static void fake_send_error(struct fp_pool *pool, struct fp_waiter *w, int error, const char *text)
{
        (void)pool;
        rec_log.error_request[rec_log.n_errors] = w->request_id;
        rec_log.error_code[rec_log.n_errors] = error;
        snprintf(rec_log.error_text[rec_log.n_errors], 160, "%s", text ? text : "");
        rec_log.n_errors++;
}

static const struct fp_pool_ops fake_ops = {
        .connect = fake_connect,
        .reset = fake_reset,
        .close = fake_close,
        .send_lease = fake_send_lease,
        .send_error = fake_send_error,
};

static int client_a, client_b; /* their addresses identify two control connections */

static struct fp_pool *pool_new(int size, int overflow, int timeout_ms)
{
        static struct fp_pool pool;
        struct fp_pool_params params = {.pool_size = size,
                                        .max_overflow = overflow,
                                        .timeout_ms = timeout_ms,
                                        .connect_timeout_ms = 1000};
        memset(&rec_log, 0, sizeof(rec_log));
        snprintf(params.name, sizeof(params.name), "test");
        assert_int_equal(fp_pool_init(&pool, &params, &fake_ops, NULL), 0);
        return &pool;
}

/* Completes every pending connect successfully (in order). */
static void connects_succeed(struct fp_pool *pool)
{
        int n = rec_log.n_connecting;
        struct fp_record *pending[MAX_EVENTS];
        memcpy(pending, rec_log.connecting, sizeof(pending));
        rec_log.n_connecting = 0;
        for (int i = 0; i < n; i++) {
                pending[i]->conn = &rec_log.fake_conn;
                fp_pool_connect_done(pool, pending[i], 0, NULL);
        }
}

static uint64_t lease_id_of(struct fp_pool *pool, int n)
{
        return fp_record_lease_id(pool, rec_log.leased_rec[n]);
}

static void release(struct fp_pool *pool, void *client, uint64_t lease_id)
{
        struct fp_release_info info = {0};
        assert_int_equal(fp_pool_release(pool, client, lease_id, &info), 0);
}

static void assert_status(struct fp_pool *pool, const char *expected)
{
        char buf[200];
        fp_pool_status(pool, buf, sizeof(buf));
        assert_string_equal(buf, expected);
}

static void test_fresh_status(void **state)
{
        (void)state;
        struct fp_pool *pool = pool_new(2, 1, 1000);
        assert_status(pool, "Pool size: 2  Connections in pool: 0 Current Overflow: -2 Current "
                            "Checked out connections: 0");
        fp_pool_done(pool);
}

static void test_lazy_and_overflow(void **state)
{
        (void)state;
        struct fp_pool *pool = pool_new(2, 1, 1000);
        for (uint32_t i = 1; i <= 3; i++)
                assert_int_equal(fp_pool_acquire(pool, &client_a, 100, i, -1, 0), 0);
        assert_int_equal(rec_log.n_connecting, 3);
        connects_succeed(pool);
        assert_int_equal(rec_log.n_leased, 3);
        assert_status(pool, "Pool size: 2  Connections in pool: 0 Current Overflow: 1 Current "
                            "Checked out connections: 3");
        /* At the limit: a fourth waits; with timeout 0 it fails at once. */
        assert_int_equal(fp_pool_acquire(pool, &client_a, 100, 4, 0, 0), 0);
        assert_int_equal(rec_log.n_errors, 1);
        assert_int_equal(rec_log.error_code[0], -ETIMEDOUT);
        assert_string_equal(rec_log.error_text[0], "QueuePool limit of size 2 overflow 1 reached, "
                                                   "connection timed out, timeout 0.00");
        assert_int_equal(pool->counters.timeouts, 1);

        /* Return all three: the queue holds pool_size, the third is closed. */
        for (int i = 0; i < 3; i++)
                release(pool, &client_a, lease_id_of(pool, i));
        assert_int_equal(rec_log.n_closed, 1);
        assert_status(pool, "Pool size: 2  Connections in pool: 2 Current Overflow: 0 Current "
                            "Checked out connections: 0");
        fp_pool_done(pool);
}

/* §2.3: discarded iff the queue is full at return time, not "because it overflowed". */
static void test_discard_only_when_queue_full(void **state)
{
        (void)state;
        struct fp_pool *pool = pool_new(1, 1, 1000);
        fp_pool_acquire(pool, &client_a, 100, 1, -1, 0);
        fp_pool_acquire(pool, &client_a, 100, 2, -1, 0);
        connects_succeed(pool);
        uint64_t a = lease_id_of(pool, 0), b = lease_id_of(pool, 1);
        release(pool, &client_a, b);
        assert_int_equal(rec_log.n_closed, 0);
        assert_int_equal(fp_pool_overflow(pool), 1);
        assert_int_equal(fp_pool_checkedin(pool), 1);
        release(pool, &client_a, a);
        assert_int_equal(rec_log.n_closed, 1);
        assert_int_equal(fp_pool_overflow(pool), 0);
        assert_int_equal(fp_pool_checkedout(pool), 0);
        fp_pool_done(pool);
}

static void test_reuse_fifo(void **state)
{
        (void)state;
        struct fp_pool *pool = pool_new(2, 0, 1000);
        fp_pool_acquire(pool, &client_a, 100, 1, -1, 0);
        fp_pool_acquire(pool, &client_a, 100, 2, -1, 0);
        connects_succeed(pool);
        struct fp_record *first = rec_log.leased_rec[0], *second = rec_log.leased_rec[1];
        release(pool, &client_a, lease_id_of(pool, 0));
        release(pool, &client_a, lease_id_of(pool, 1));
        /* FIFO: the one returned first is handed out first; no new connect. */
        fp_pool_acquire(pool, &client_a, 100, 3, -1, 0);
        fp_pool_acquire(pool, &client_a, 100, 4, -1, 0);
        assert_int_equal(rec_log.n_connecting, 0);
        assert_ptr_equal(rec_log.leased_rec[2], first);
        assert_ptr_equal(rec_log.leased_rec[3], second);
        assert_int_equal(rec_log.n_resets, 2);
        fp_pool_done(pool);
}

static void test_waiters_fifo_and_deadlines(void **state)
{
        (void)state;
        struct fp_pool *pool = pool_new(1, 0, 1000);
        fp_pool_acquire(pool, &client_a, 100, 1, -1, 0);
        connects_succeed(pool);
        fp_pool_acquire(pool, &client_a, 100, 2, 500, 10);
        fp_pool_acquire(pool, &client_b, 200, 3, 5000, 20);
        fp_pool_acquire(pool, &client_b, 200, 4, 5000, 30);
        assert_int_equal(pool->n_waiting, 3);
        assert_int_equal(fp_pool_next_deadline(pool), 10 + 500 * 1000);

        /* The first waiter times out; the others keep their places. */
        fp_pool_expire(pool, 10 + 500 * 1000);
        assert_int_equal(rec_log.n_errors, 1);
        assert_int_equal(rec_log.error_request[0], 2);
        assert_int_equal(pool->n_waiting, 2);

        release(pool, &client_a, lease_id_of(pool, 0));
        assert_int_equal(rec_log.leased_request[1], 3);
        release(pool, &client_b, lease_id_of(pool, 1));
        assert_int_equal(rec_log.leased_request[2], 4);
        assert_int_equal(pool->n_waiting, 0);
        assert_int_equal(fp_pool_next_deadline(pool), UINT64_MAX);
        fp_pool_done(pool);
}

/* §2.4 with our decision: a failed connect restores O and serves the next waiter now. */
static void test_failed_connect_wakes_next(void **state)
{
        (void)state;
        struct fp_pool *pool = pool_new(1, 0, 1000);
        fp_pool_acquire(pool, &client_a, 100, 1, -1, 0);
        fp_pool_acquire(pool, &client_b, 200, 2, -1, 0);
        assert_int_equal(rec_log.n_connecting, 1);
        assert_int_equal(pool->n_waiting, 1);

        struct fp_record *rec = rec_log.connecting[0];
        rec_log.n_connecting = 0;
        fp_pool_connect_done(pool, rec, -EHOSTUNREACH, "connection refused");
        assert_int_equal(rec_log.n_errors, 1);
        assert_int_equal(rec_log.error_code[0], -EHOSTUNREACH);
        assert_string_equal(rec_log.error_text[0], "connection refused");
        assert_int_equal(pool->counters.connect_failures, 1);
        /* The second waiter is connecting now, without waiting for its timeout. */
        assert_int_equal(rec_log.n_connecting, 1);
        assert_int_equal(pool->n_waiting, 0);
        connects_succeed(pool);
        assert_int_equal(rec_log.leased_request[0], 2);
        assert_status(pool, "Pool size: 1  Connections in pool: 0 Current Overflow: 0 Current "
                            "Checked out connections: 1");
        fp_pool_done(pool);
}

static void test_pool_size_zero_unbounded(void **state)
{
        (void)state;
        struct fp_pool *pool = pool_new(0, 5, 1000);
        for (uint32_t i = 1; i <= 6; i++)
                fp_pool_acquire(pool, &client_a, 100, i, 0, 0);
        connects_succeed(pool);
        assert_int_equal(rec_log.n_leased, 6);
        assert_int_equal(rec_log.n_errors, 0);
        assert_status(pool, "Pool size: 0  Connections in pool: 0 Current Overflow: 0 Current "
                            "Checked out connections: 6");
        for (int i = 0; i < 6; i++)
                release(pool, &client_a, lease_id_of(pool, i));
        assert_int_equal(rec_log.n_closed, 0);
        assert_status(pool, "Pool size: 0  Connections in pool: 6 Current Overflow: 0 Current "
                            "Checked out connections: 0");
        fp_pool_done(pool);
}

static void test_max_overflow_unlimited(void **state)
{
        (void)state;
        struct fp_pool *pool = pool_new(2, -1, 1000);
        for (uint32_t i = 1; i <= 5; i++)
                fp_pool_acquire(pool, &client_a, 100, i, 0, 0);
        connects_succeed(pool);
        assert_int_equal(fp_pool_overflow(pool), 3);
        for (int i = 0; i < 5; i++)
                release(pool, &client_a, lease_id_of(pool, i));
        assert_status(pool, "Pool size: 2  Connections in pool: 2 Current Overflow: 0 Current "
                            "Checked out connections: 0");
        fp_pool_done(pool);
}

static void test_client_gone_reclaims(void **state)
{
        (void)state;
        struct fp_pool *pool = pool_new(2, 0, 1000);
        fp_pool_acquire(pool, &client_a, 100, 1, -1, 0);
        fp_pool_acquire(pool, &client_a, 100, 2, -1, 0);
        connects_succeed(pool);
        fp_pool_acquire(pool, &client_b, 200, 3, -1, 0); /* waits */
        fp_pool_acquire(pool, &client_a, 100, 4, -1, 0); /* waits, dies */

        assert_int_equal(fp_pool_client_gone(pool, &client_a), 2);
        assert_int_equal(rec_log.n_hard_closed, 2);
        assert_int_equal(pool->counters.reclaims, 2);
        /* b is served by reconnecting an emptied slot; a's waiter is gone. */
        assert_int_equal(pool->n_waiting, 0);
        assert_int_equal(rec_log.n_connecting, 1);
        connects_succeed(pool);
        assert_int_equal(rec_log.leased_request[2], 3);
        assert_int_equal(fp_pool_checkedout(pool), 1);
        assert_int_equal(fp_pool_checkedin(pool), 1);
        /* A release naming a lease the client does not hold changes nothing. */
        struct fp_release_info info = {0};
        assert_int_equal(fp_pool_release(pool, &client_a, lease_id_of(pool, 2), &info), -ESRCH);
        assert_int_equal(fp_pool_checkedout(pool), 1);
        fp_pool_done(pool);
}

static void test_undeliverable_lease_goes_back(void **state)
{
        (void)state;
        struct fp_pool *pool = pool_new(1, 0, 1000);
        rec_log.fail_sends = 1;
        fp_pool_acquire(pool, &client_a, 100, 1, -1, 0);
        connects_succeed(pool);
        assert_int_equal(fp_pool_checkedin(pool), 1);
        assert_int_equal(fp_pool_checkedout(pool), 0);
        assert_int_equal(pool->counters.acquires, 0);
        fp_pool_done(pool);
}

static void test_invalidate_and_dispose(void **state)
{
        (void)state;
        struct fp_pool *pool = pool_new(2, 0, 1000);
        fp_pool_acquire(pool, &client_a, 100, 1, -1, 0);
        fp_pool_acquire(pool, &client_a, 100, 2, -1, 0);
        connects_succeed(pool);
        struct fp_release_info inval = {.flags = FP_RELEASE_INVALIDATE};
        assert_int_equal(fp_pool_release(pool, &client_a, lease_id_of(pool, 0), &inval), 0);
        assert_int_equal(pool->counters.invalidations, 1);
        /* The empty slot is back in the queue (§3.1). */
        assert_int_equal(fp_pool_checkedin(pool), 1);
        assert_int_equal(pool->n_live, 1);

        fp_pool_dispose(pool);
        release(pool, &client_a, lease_id_of(pool, 1));
        /* The leased one was closed on return; counters stay truthful. */
        assert_int_equal(pool->n_live, 0);
        assert_status(pool, "Pool size: 2  Connections in pool: 2 Current Overflow: 0 Current "
                            "Checked out connections: 0");
        fp_pool_done(pool);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_fresh_status),
                cmocka_unit_test(test_lazy_and_overflow),
                cmocka_unit_test(test_discard_only_when_queue_full),
                cmocka_unit_test(test_reuse_fifo),
                cmocka_unit_test(test_waiters_fifo_and_deadlines),
                cmocka_unit_test(test_failed_connect_wakes_next),
                cmocka_unit_test(test_pool_size_zero_unbounded),
                cmocka_unit_test(test_max_overflow_unlimited),
                cmocka_unit_test(test_client_gone_reclaims),
                cmocka_unit_test(test_undeliverable_lease_goes_back),
                cmocka_unit_test(test_invalidate_and_dispose),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
