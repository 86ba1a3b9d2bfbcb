/* SPDX-License-Identifier: MIT */
/*
 * test_pool.c — QueuePool accounting (agent/pool.c) against SQLAlchemy's
 * observable behaviour (README: Pool semantics): counts, the status
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

#define MAX_EVENTS 128

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
        int n_closed, n_hard_closed, n_forgotten, n_resets;
        struct fp_record *pinging[MAX_EVENTS];
        int n_pinging;
        int fail_sends;
        int fake_conn;
        uint64_t clock;    /* the fake CLOCK_MONOTONIC, µs */
        char events[2048]; /* "connect checkout checkin …" */
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

static void fake_close(struct fp_pool *pool, struct fp_record *rec, enum fp_close_mode mode)
{
        (void)pool, (void)rec;
        rec_log.n_closed++;
        rec_log.n_hard_closed += mode == FP_CLOSE_HARD;
        rec_log.n_forgotten += mode == FP_CLOSE_FORGET;
}

static void fake_ping(struct fp_pool *pool, struct fp_record *rec)
{
        (void)pool;
        rec_log.pinging[rec_log.n_pinging++] = rec;
}

static uint64_t fake_now(struct fp_pool *pool)
{
        (void)pool;
        return rec_log.clock;
}

static void fake_event(struct fp_pool *pool, enum fp_event_type type, const struct fp_record *rec,
                       pid_t pid, uint64_t duration_usec, int error)
{
        (void)pool, (void)rec, (void)pid, (void)duration_usec, (void)error;
        size_t n = strlen(rec_log.events);
        snprintf(rec_log.events + n, sizeof(rec_log.events) - n, "%s%s", n ? " " : "",
                 fp_event_type_name(type));
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
        .ping = fake_ping,
        .reset = fake_reset,
        .close = fake_close,
        .send_lease = fake_send_lease,
        .send_error = fake_send_error,
        .now = fake_now,
        .event = fake_event,
};

static int client_a, client_b; /* their addresses identify two control connections */

static struct fp_pool pool_storage;

static struct fp_pool *pool_new_params(struct fp_pool_params params)
{
        memset(&rec_log, 0, sizeof(rec_log));
        rec_log.clock = 1000000;
        snprintf(params.name, sizeof(params.name), "test");
        if (params.connect_timeout_ms == 0)
                params.connect_timeout_ms = 1000;
        assert_int_equal(fp_pool_init(&pool_storage, &params, &fake_ops, NULL), 0);
        return &pool_storage;
}

static struct fp_pool *pool_new(int size, int overflow, int timeout_ms)
{
        return pool_new_params((struct fp_pool_params){.pool_size = size,
                                                       .max_overflow = overflow,
                                                       .timeout_ms = timeout_ms,
                                                       .recycle_ms = -1});
}

/*
 * fp_pool_done() as the supervisor calls it: the waiter a connect or a ping
 * still serves belongs to the record's owner (sup_pool_free() frees it).
 */
static void pool_done(struct fp_pool *pool)
{
        for (uint32_t i = 0; i < pool->capacity; i++) {
                free(pool->records[i].connecting_for);
                pool->records[i].connecting_for = NULL;
        }
        fp_pool_done(pool);
}

/* Acquire with the fake clock as the start time. */
static void acquire(struct fp_pool *pool, void *client, uint32_t request_id, int timeout_ms)
{
        assert_int_equal(fp_pool_acquire(pool, client, 100, request_id, timeout_ms, NULL, 0), 0);
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
        assert_int_equal(fp_pool_release(pool, client, 100, lease_id, &info), 0);
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
        pool_done(pool);
}

static void test_lazy_and_overflow(void **state)
{
        (void)state;
        struct fp_pool *pool = pool_new(2, 1, 1000);
        for (uint32_t i = 1; i <= 3; i++)
                acquire(pool, &client_a, i, -1);
        assert_int_equal(rec_log.n_connecting, 3);
        connects_succeed(pool);
        assert_int_equal(rec_log.n_leased, 3);
        assert_status(pool, "Pool size: 2  Connections in pool: 0 Current Overflow: 1 Current "
                            "Checked out connections: 3");
        /* At the limit: a fourth waits; with timeout 0 it fails at once. */
        acquire(pool, &client_a, 4, 0);
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
        pool_done(pool);
}

/* Discarded iff the queue is full at return time, not "because it overflowed". */
static void test_discard_only_when_queue_full(void **state)
{
        (void)state;
        struct fp_pool *pool = pool_new(1, 1, 1000);
        acquire(pool, &client_a, 1, -1);
        acquire(pool, &client_a, 2, -1);
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
        pool_done(pool);
}

static void test_reuse_fifo(void **state)
{
        (void)state;
        struct fp_pool *pool = pool_new(2, 0, 1000);
        acquire(pool, &client_a, 1, -1);
        acquire(pool, &client_a, 2, -1);
        connects_succeed(pool);
        struct fp_record *first = rec_log.leased_rec[0], *second = rec_log.leased_rec[1];
        release(pool, &client_a, lease_id_of(pool, 0));
        release(pool, &client_a, lease_id_of(pool, 1));
        /* FIFO: the one returned first is handed out first; no new connect. */
        acquire(pool, &client_a, 3, -1);
        acquire(pool, &client_a, 4, -1);
        assert_int_equal(rec_log.n_connecting, 0);
        assert_ptr_equal(rec_log.leased_rec[2], first);
        assert_ptr_equal(rec_log.leased_rec[3], second);
        assert_int_equal(rec_log.n_resets, 2);
        pool_done(pool);
}

static void test_waiters_fifo_and_deadlines(void **state)
{
        (void)state;
        struct fp_pool *pool = pool_new(1, 0, 1000);
        acquire(pool, &client_a, 1, -1);
        connects_succeed(pool);
        uint64_t t0 = rec_log.clock;
        rec_log.clock = t0 + 10;
        acquire(pool, &client_a, 2, 500);
        rec_log.clock = t0 + 20;
        acquire(pool, &client_b, 3, 5000);
        rec_log.clock = t0 + 30;
        acquire(pool, &client_b, 4, 5000);
        assert_int_equal(pool->n_waiting, 3);
        assert_int_equal(fp_pool_next_deadline(pool), t0 + 10 + 500 * 1000);

        /* The first waiter times out; the others keep their places. */
        fp_pool_expire(pool, t0 + 10 + 500 * 1000);
        assert_int_equal(rec_log.n_errors, 1);
        assert_int_equal(rec_log.error_request[0], 2);
        assert_int_equal(pool->n_waiting, 2);

        release(pool, &client_a, lease_id_of(pool, 0));
        assert_int_equal(rec_log.leased_request[1], 3);
        release(pool, &client_b, lease_id_of(pool, 1));
        assert_int_equal(rec_log.leased_request[2], 4);
        assert_int_equal(pool->n_waiting, 0);
        assert_int_equal(fp_pool_next_deadline(pool), UINT64_MAX);
        pool_done(pool);
}

/* A failed connect restores O and (our decision) serves the next waiter now. */
static void test_failed_connect_wakes_next(void **state)
{
        (void)state;
        struct fp_pool *pool = pool_new(1, 0, 1000);
        acquire(pool, &client_a, 1, -1);
        acquire(pool, &client_b, 2, -1);
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
        pool_done(pool);
}

static void test_pool_size_zero_unbounded(void **state)
{
        (void)state;
        struct fp_pool *pool = pool_new(0, 5, 1000);
        for (uint32_t i = 1; i <= 6; i++)
                acquire(pool, &client_a, i, 0);
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
        pool_done(pool);
}

static void test_max_overflow_unlimited(void **state)
{
        (void)state;
        struct fp_pool *pool = pool_new(2, -1, 1000);
        for (uint32_t i = 1; i <= 5; i++)
                acquire(pool, &client_a, i, 0);
        connects_succeed(pool);
        assert_int_equal(fp_pool_overflow(pool), 3);
        for (int i = 0; i < 5; i++)
                release(pool, &client_a, lease_id_of(pool, i));
        assert_status(pool, "Pool size: 2  Connections in pool: 2 Current Overflow: 0 Current "
                            "Checked out connections: 0");
        pool_done(pool);
}

static void test_client_gone_reclaims(void **state)
{
        (void)state;
        struct fp_pool *pool = pool_new(2, 0, 1000);
        acquire(pool, &client_a, 1, -1);
        acquire(pool, &client_a, 2, -1);
        connects_succeed(pool);
        acquire(pool, &client_b, 3, -1); /* waits */
        acquire(pool, &client_a, 4, -1); /* waits, dies */

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
        assert_int_equal(fp_pool_release(pool, &client_a, 100, lease_id_of(pool, 2), &info),
                         -ESRCH);
        assert_int_equal(fp_pool_checkedout(pool), 1);
        pool_done(pool);
}

/*
 * A new connection takes the unused slot with the lowest index, past the
 * first 64 too (the unused bitmap's words), and a disconnect reclaims every
 * slot in use.
 */
static void test_lowest_unused_slot(void **state)
{
        (void)state;
        enum {
                N = 70
        };
        struct fp_pool *pool = pool_new(1, N - 1, 1000);
        for (uint32_t i = 0; i < N; i++)
                acquire(pool, &client_a, i + 1, -1);
        connects_succeed(pool);
        for (int i = 0; i < N; i++)
                assert_int_equal(rec_log.leased_rec[i]->index, i);
        /* Slot 0 goes to Q (pool_size 1); 66 and 3 are discarded: unused again. */
        release(pool, &client_a, lease_id_of(pool, 0));
        release(pool, &client_a, lease_id_of(pool, 66));
        release(pool, &client_a, lease_id_of(pool, 3));
        assert_int_equal(rec_log.n_closed, 2);
        assert_int_equal(pool->records[3].state, FP_SLOT_UNUSED);
        acquire(pool, &client_b, 100, -1); /* the idle one, from Q */
        acquire(pool, &client_b, 101, -1); /* new: slot 3 */
        acquire(pool, &client_b, 102, -1); /* new: slot 66 */
        assert_int_equal(rec_log.n_connecting, 2);
        assert_int_equal(rec_log.connecting[0]->index, 3);
        assert_int_equal(rec_log.connecting[1]->index, 66);
        connects_succeed(pool);
        assert_int_equal(rec_log.leased_rec[N]->index, 0);
        assert_int_equal(fp_pool_client_gone(pool, &client_a), N - 3);
        assert_int_equal(fp_pool_client_gone(pool, &client_b), 3);
        assert_int_equal(fp_pool_checkedout(pool), 0);
        pool_done(pool);
}

static void test_undeliverable_lease_goes_back(void **state)
{
        (void)state;
        struct fp_pool *pool = pool_new(1, 0, 1000);
        rec_log.fail_sends = 1;
        acquire(pool, &client_a, 1, -1);
        connects_succeed(pool);
        assert_int_equal(fp_pool_checkedin(pool), 1);
        assert_int_equal(fp_pool_checkedout(pool), 0);
        assert_int_equal(pool->counters.acquires, 0);
        pool_done(pool);
}

/*
 * A release in front of many waiters whose leases cannot be sent: each failed
 * send puts the connection back and the next waiter gets it, in one loop (a
 * recursion through checkin → dispatch overflowed forkpoold's stack).
 */
static void test_many_undeliverable_leases(void **state)
{
        enum {
                N = 300000
        };
        (void)state;
        struct fp_pool *pool = pool_new(1, 0, 1000);
        acquire(pool, &client_a, 1, -1);
        connects_succeed(pool);
        for (uint32_t i = 0; i < N; i++)
                acquire(pool, &client_b, 2 + i, 60000);
        assert_int_equal(pool->n_waiting, N);
        rec_log.fail_sends = 1;
        release(pool, &client_a, lease_id_of(pool, 0));
        assert_int_equal(pool->n_waiting, 0);
        assert_int_equal(fp_pool_checkedin(pool), 1);
        assert_int_equal(fp_pool_checkedout(pool), 0);
        assert_int_equal(fp_pool_next_deadline(pool), UINT64_MAX);
        fp_pool_done(pool);
}

static int waiters_done;

static void count_waiter_done(struct fp_pool *pool, struct fp_waiter *w)
{
        (void)pool, (void)w;
        waiters_done++;
}

/*
 * Timeouts fire earliest deadline first whatever the arrival order (ties in
 * arrival order), and every waiter is reported done exactly once.
 */
static void test_timeouts_in_deadline_order(void **state)
{
        static const int timeouts_ms[] = {900, 100, 500, 100, 700, 300, 900, 200};
        enum {
                N = sizeof(timeouts_ms) / sizeof(timeouts_ms[0])
        };
        static const uint32_t expected[N] = {3, 5, 9, 7, 4, 6, 2, 8};
        (void)state;

        struct fp_pool *pool = pool_new(1, 0, 1000);
        struct fp_pool_ops ops = fake_ops;
        ops.waiter_done = count_waiter_done;
        pool->ops = &ops;
        waiters_done = 0;
        acquire(pool, &client_a, 1, -1);
        connects_succeed(pool);
        assert_int_equal(waiters_done, 1);
        uint64_t t0 = rec_log.clock;
        for (uint32_t i = 0; i < N; i++)
                acquire(pool, i % 2 ? &client_a : &client_b, 2 + i, timeouts_ms[i]);
        for (int step = 1; step <= 10; step++)
                fp_pool_expire(pool, t0 + (uint64_t)step * 100 * 1000);
        assert_int_equal(rec_log.n_errors, N);
        for (int i = 0; i < N; i++) {
                assert_int_equal(rec_log.error_request[i], expected[i]);
                assert_int_equal(rec_log.error_code[i], -ETIMEDOUT);
        }
        assert_int_equal(waiters_done, 1 + N);
        /* Dropped with their client: done too. */
        acquire(pool, &client_b, 20, 1000);
        acquire(pool, &client_b, 21, 1000);
        fp_pool_client_gone(pool, &client_b);
        assert_int_equal(waiters_done, 3 + N);
        assert_int_equal(fp_pool_next_deadline(pool), UINT64_MAX);
        fp_pool_done(pool);
}

static struct fp_waiter_list waiters_a, waiters_b;

static struct fp_waiter_list *fake_client_waiters(struct fp_pool *pool, void *client)
{
        (void)pool;
        return client == &client_a ? &waiters_a : &waiters_b;
}

static int list_length(const struct fp_waiter_list *list)
{
        int n = 0;
        const struct fp_waiter *w;
        TAILQ_FOREACH(w, list, client_link)
        n++;
        return n;
}

/*
 * With client_waiters, each client's waiters are on its own list from
 * acquire to done, and a client that goes drops exactly its own.
 */
static void test_client_waiter_lists(void **state)
{
        (void)state;
        struct fp_pool *pool = pool_new(1, 0, 1000);
        struct fp_pool_ops ops = fake_ops;
        ops.client_waiters = fake_client_waiters;
        pool->ops = &ops;
        TAILQ_INIT(&waiters_a);
        TAILQ_INIT(&waiters_b);

        acquire(pool, &client_a, 1, -1);
        assert_int_equal(list_length(&waiters_a), 1); /* connecting for it */
        connects_succeed(pool);
        assert_int_equal(list_length(&waiters_a), 0);
        /* 40 each: the recorder keeps at most MAX_EVENTS answers. */
        for (uint32_t i = 0; i < 40; i++) {
                acquire(pool, &client_a, 100 + i, 5000);
                acquire(pool, &client_b, 5000 + i, 5000);
        }
        assert_int_equal(list_length(&waiters_a), 40);
        assert_int_equal(list_length(&waiters_b), 40);
        fp_pool_client_gone(pool, &client_b);
        assert_int_equal(list_length(&waiters_b), 0);
        assert_int_equal(pool->n_waiting, 40);
        /* a's waiters kept their order: the next lease goes to its first. */
        release(pool, &client_a, lease_id_of(pool, 0));
        assert_int_equal(rec_log.leased_request[1], 100);
        assert_int_equal(list_length(&waiters_a), 39);
        /* Timeouts take them off the list too. */
        fp_pool_expire(pool, rec_log.clock + 5000 * 1000);
        assert_int_equal(list_length(&waiters_a), 0);
        assert_int_equal(pool->n_waiting, 0);
        fp_pool_done(pool);
}

static void test_invalidate_and_dispose(void **state)
{
        (void)state;
        struct fp_pool *pool = pool_new(2, 0, 1000);
        acquire(pool, &client_a, 1, -1);
        acquire(pool, &client_a, 2, -1);
        connects_succeed(pool);
        struct fp_release_info inval = {.flags = FP_RELEASE_INVALIDATE};
        assert_int_equal(fp_pool_release(pool, &client_a, 100, lease_id_of(pool, 0), &inval), 0);
        assert_int_equal(pool->counters.invalidations, 1);
        /* The empty slot is back in the queue. */
        assert_int_equal(fp_pool_checkedin(pool), 1);
        assert_int_equal(pool->n_live, 1);

        fp_pool_invalidate_all(pool);
        release(pool, &client_a, lease_id_of(pool, 1));
        /* The leased one was closed on return; counters stay truthful. */
        assert_int_equal(pool->n_live, 0);
        assert_status(pool, "Pool size: 2  Connections in pool: 2 Current Overflow: 0 Current "
                            "Checked out connections: 0");
        pool_done(pool);
}

static void release_flags(struct fp_pool *pool, void *client, uint64_t lease_id, uint32_t flags)
{
        struct fp_release_info info = {.flags = flags};
        assert_int_equal(fp_pool_release(pool, client, 100, lease_id, &info), 0);
}

/* Checks out n connections one by one (connecting each), returning nothing. */
static void checkout_new(struct fp_pool *pool, int n)
{
        for (int i = 0; i < n; i++) {
                acquire(pool, &client_a, (uint32_t)(100 + i), -1);
                connects_succeed(pool);
        }
}

static void test_lifo(void **state)
{
        (void)state;
        struct fp_pool *pool = pool_new_params((struct fp_pool_params){.pool_size = 3,
                                                                       .max_overflow = 0,
                                                                       .timeout_ms = 1000,
                                                                       .recycle_ms = -1,
                                                                       .use_lifo = true});
        checkout_new(pool, 3);
        for (int i = 0; i < 3; i++)
                release(pool, &client_a, lease_id_of(pool, i));
        acquire(pool, &client_a, 7, -1);
        /* LIFO: the one returned last comes back first. */
        assert_ptr_equal(rec_log.leased_rec[3], rec_log.leased_rec[2]);
        pool_done(pool);
}

/*
 * Affinity: an acquire that names the lease it held last gets that idle
 * connection back, whatever its place in Q; not once somebody else leased it
 * since, and not with affinity off. Waiters are still served in order.
 */
static void test_affinity(void **state)
{
        (void)state;
        struct fp_pool_params params = {.pool_size = 3,
                                        .max_overflow = 0,
                                        .timeout_ms = 1000,
                                        .recycle_ms = -1,
                                        .affinity = true};
        struct fp_pool *pool = pool_new_params(params);
        checkout_new(pool, 3);
        uint64_t last = lease_id_of(pool, 2);
        for (int i = 0; i < 3; i++)
                release(pool, &client_a, lease_id_of(pool, i));
        /* FIFO would give the first one back; the hint asks for the third. */
        assert_int_equal(fp_pool_acquire(pool, &client_a, 100, 7, -1, NULL, last), 0);
        assert_ptr_equal(rec_log.leased_rec[3], rec_log.leased_rec[2]);
        release(pool, &client_a, lease_id_of(pool, 3));

        /* Somebody else has leased it since: the hint is stale, FIFO order holds. */
        assert_int_equal(fp_pool_acquire(pool, &client_b, 100, 8, -1, NULL, 0), 0);
        assert_ptr_equal(rec_log.leased_rec[4], rec_log.leased_rec[0]);
        assert_int_equal(fp_pool_acquire(pool, &client_b, 100, 9, -1, NULL, 0), 0);
        assert_ptr_equal(rec_log.leased_rec[5], rec_log.leased_rec[1]);
        assert_int_equal(fp_pool_acquire(pool, &client_b, 100, 10, -1, NULL, 0), 0);
        assert_ptr_equal(rec_log.leased_rec[6], rec_log.leased_rec[2]);
        uint64_t stale = last;
        release(pool, &client_b, lease_id_of(pool, 4));
        release(pool, &client_b, lease_id_of(pool, 5));
        release(pool, &client_b, lease_id_of(pool, 6));
        assert_int_equal(fp_pool_acquire(pool, &client_a, 100, 11, -1, NULL, stale), 0);
        assert_ptr_equal(rec_log.leased_rec[7], rec_log.leased_rec[0]);
        /* A hint of another pool, or out of range, is ignored. */
        assert_int_equal(fp_pool_acquire(pool, &client_a, 100, 12, -1, NULL,
                                         (lease_id_of(pool, 6) & 0xffffffffffffu) |
                                                 (uint64_t)(pool->lease_tag ^ 1) << 48),
                         0);
        assert_ptr_equal(rec_log.leased_rec[8], rec_log.leased_rec[1]);
        fp_pool_done(pool);

        /* Affinity off: strict FIFO even with a hint. */
        params.affinity = false;
        pool = pool_new_params(params);
        checkout_new(pool, 3);
        last = lease_id_of(pool, 2);
        for (int i = 0; i < 3; i++)
                release(pool, &client_a, lease_id_of(pool, i));
        assert_int_equal(fp_pool_acquire(pool, &client_a, 100, 7, -1, NULL, last), 0);
        assert_ptr_equal(rec_log.leased_rec[3], rec_log.leased_rec[0]);
        fp_pool_done(pool);
}

static void test_event_sequences(void **state)
{
        (void)state;
        struct fp_pool *pool = pool_new(1, 1, 1000);
        checkout_new(pool, 2);
        /* The events of a checkout, twice: the pool's first connect also fires first_connect. */
        assert_string_equal(rec_log.events, "first_connect connect checkout connect checkout");
        rec_log.events[0] = '\0';
        release(pool, &client_a, lease_id_of(pool, 0));
        assert_string_equal(rec_log.events, "reset checkin"); /* C: slot kept */
        rec_log.events[0] = '\0';
        release(pool, &client_a, lease_id_of(pool, 1));
        assert_string_equal(rec_log.events, "reset checkin close"); /* D: queue full */
        rec_log.events[0] = '\0';
        acquire(pool, &client_a, 9, -1);
        release_flags(pool, &client_a, lease_id_of(pool, 2), FP_RELEASE_INVALIDATE);
        assert_string_equal(rec_log.events, "checkout invalidate close checkin"); /* E */
        pool_done(pool);
}

static void test_recycle(void **state)
{
        (void)state;
        struct fp_pool *pool = pool_new_params((struct fp_pool_params){
                .pool_size = 1, .max_overflow = 0, .timeout_ms = 1000, .recycle_ms = 10000});
        checkout_new(pool, 1);
        struct fp_record *first = rec_log.leased_rec[0];
        release(pool, &client_a, lease_id_of(pool, 0));
        rec_log.clock += 5 * 1000000u;
        acquire(pool, &client_a, 2, -1);
        assert_int_equal(rec_log.n_connecting, 0); /* younger than pool_recycle: reused */
        release(pool, &client_a, lease_id_of(pool, 1));
        rec_log.clock += 6 * 1000000u;
        rec_log.events[0] = '\0';
        acquire(pool, &client_a, 3, -1);
        /* Older: closed and replaced in place before it is handed out. */
        assert_string_equal(rec_log.events, "recycle close");
        assert_int_equal(rec_log.n_connecting, 1);
        connects_succeed(pool);
        assert_ptr_equal(rec_log.leased_rec[2], first); /* the same slot */
        assert_int_equal(pool->counters.recycles, 1);
        assert_int_equal(fp_pool_checkedout(pool), 1);
        pool_done(pool);
}

static uint32_t max_random(struct fp_pool *pool)
{
        (void)pool;
        return UINT32_MAX;
}

static void test_recycle_jitter_bounded(void **state)
{
        (void)state;
        struct fp_pool_ops ops = fake_ops;
        ops.random = max_random;
        struct fp_pool pool;
        struct fp_pool_params params = {.pool_size = 1,
                                        .timeout_ms = 1000,
                                        .recycle_ms = 40000,
                                        .connect_timeout_ms = 1000};
        memset(&rec_log, 0, sizeof(rec_log));
        rec_log.clock = 1000000;
        assert_int_equal(fp_pool_init(&pool, &params, &ops, NULL), 0);
        acquire(&pool, &client_a, 1, -1);
        connects_succeed(&pool);
        uint64_t life = rec_log.leased_rec[0]->recycle_at - rec_log.leased_rec[0]->connected_at;
        /* Shortened by at most 2.5 %: 40 s less at most 1 s. */
        assert_true(life <= 40000000u && life >= 39000000u);
        fp_pool_done(&pool);
}

static void test_pre_ping(void **state)
{
        (void)state;
        struct fp_pool *pool = pool_new_params((struct fp_pool_params){.pool_size = 3,
                                                                       .max_overflow = 0,
                                                                       .timeout_ms = 1000,
                                                                       .recycle_ms = -1,
                                                                       .pre_ping = true});
        checkout_new(pool, 3);
        assert_int_equal(rec_log.n_pinging, 0); /* brand-new connections are never pinged */
        for (int i = 0; i < 3; i++)
                release(pool, &client_a, lease_id_of(pool, i));

        /* A used connection is pinged; alive, it is handed out. */
        acquire(pool, &client_a, 10, -1);
        assert_int_equal(rec_log.n_pinging, 1);
        assert_int_equal(rec_log.n_leased, 3);
        fp_pool_ping_done(pool, rec_log.pinging[0], 0, NULL);
        assert_int_equal(rec_log.n_leased, 4);
        release(pool, &client_a, lease_id_of(pool, 3));

        /* Dead: it and every connection as old are invalidated, one reconnect serves. */
        rec_log.events[0] = '\0';
        acquire(pool, &client_a, 11, -1);
        assert_int_equal(rec_log.n_pinging, 2);
        fp_pool_ping_done(pool, rec_log.pinging[1], -ECONNRESET, "server closed the connection");
        assert_string_equal(rec_log.events,
                            "ping_failed invalidate close pool_invalidate close close");
        assert_int_equal(rec_log.n_connecting, 1);
        connects_succeed(pool);
        assert_int_equal(rec_log.n_leased, 5);
        assert_int_equal(pool->n_live, 1);
        /* The others reconnect when used, fresh, so they are not pinged. */
        acquire(pool, &client_a, 12, -1);
        assert_int_equal(rec_log.n_pinging, 2);
        assert_int_equal(rec_log.n_connecting, 1);
        assert_int_equal(pool->counters.ping_failures, 1);
        assert_int_equal(pool->counters.pool_invalidations, 1);
        pool_done(pool);
}

static void test_pre_ping_reconnect_fails(void **state)
{
        (void)state;
        struct fp_pool *pool = pool_new_params((struct fp_pool_params){.pool_size = 1,
                                                                       .max_overflow = 0,
                                                                       .timeout_ms = 1000,
                                                                       .recycle_ms = -1,
                                                                       .pre_ping = true});
        checkout_new(pool, 1);
        release(pool, &client_a, lease_id_of(pool, 0));
        acquire(pool, &client_a, 2, -1);
        fp_pool_ping_done(pool, rec_log.pinging[0], -ECONNRESET, "gone");
        struct fp_record *rec = rec_log.connecting[0];
        rec_log.n_connecting = 0;
        fp_pool_connect_done(pool, rec, -EHOSTUNREACH, "the database system is shutting down");
        /* The caller gets the connect error; the slot is back, empty. */
        assert_int_equal(rec_log.n_errors, 1);
        assert_int_equal(rec_log.error_code[0], -EHOSTUNREACH);
        assert_string_equal(rec_log.error_text[0], "the database system is shutting down");
        assert_int_equal(fp_pool_checkedout(pool), 0);
        assert_int_equal(fp_pool_checkedin(pool), 1);
        pool_done(pool);
}

static void test_soft_invalidate(void **state)
{
        (void)state;
        struct fp_pool *pool = pool_new(1, 0, 1000);
        checkout_new(pool, 1);
        rec_log.events[0] = '\0';
        release_flags(pool, &client_a, lease_id_of(pool, 0), FP_RELEASE_SOFT_INVALIDATE);
        assert_string_equal(rec_log.events, "soft_invalidate close checkin");
        assert_int_equal(rec_log.n_hard_closed, 0);
        assert_int_equal(rec_log.n_resets, 0);
        acquire(pool, &client_a, 2, -1);
        assert_int_equal(rec_log.n_connecting, 1); /* replaced at the next checkout */
        pool_done(pool);
}

static void test_disconnect_invalidates_older(void **state)
{
        (void)state;
        struct fp_pool *pool = pool_new(3, 0, 1000);
        checkout_new(pool, 3);
        release(pool, &client_a, lease_id_of(pool, 0));
        /* A worker saw the server go away: every connection as old is done. */
        release_flags(pool, &client_a, lease_id_of(pool, 1), FP_RELEASE_DISCONNECTED);
        assert_int_equal(pool->counters.pool_invalidations, 1);
        assert_int_equal(pool->n_live, 1); /* only the one still leased */
        /* A new connection, then a stale report from the old leased one: no new generation. */
        acquire(pool, &client_a, 20, -1);
        connects_succeed(pool);
        release_flags(pool, &client_a, lease_id_of(pool, 2), FP_RELEASE_DISCONNECTED);
        assert_int_equal(pool->counters.pool_invalidations, 1);
        assert_int_equal(pool->n_live, 1); /* the new one survives */
        pool_done(pool);
}

static void test_detach(void **state)
{
        (void)state;
        struct fp_pool *pool = pool_new(1, 0, 1000);
        checkout_new(pool, 1);
        acquire(pool, &client_b, 2, -1); /* waits */
        release_flags(pool, &client_a, lease_id_of(pool, 0), FP_RELEASE_DETACH);
        /* Our copy is dropped without a byte; the capacity serves the waiter at once. */
        assert_int_equal(rec_log.n_forgotten, 1);
        assert_int_equal(pool->counters.detaches, 1);
        assert_int_equal(rec_log.n_connecting, 1);
        connects_succeed(pool);
        assert_int_equal(rec_log.leased_request[1], 2);
        pool_done(pool);
}

static void test_null_pool(void **state)
{
        (void)state;
        struct fp_pool *pool = pool_new_params((struct fp_pool_params){.pool_class = FP_POOL_NULL,
                                                                       .pool_size = 5,
                                                                       .max_overflow = 10,
                                                                       .timeout_ms = 1000,
                                                                       .recycle_ms = -1});
        checkout_new(pool, 2);
        release(pool, &client_a, lease_id_of(pool, 0));
        release(pool, &client_a, lease_id_of(pool, 1));
        assert_int_equal(rec_log.n_closed, 2);
        assert_int_equal(rec_log.n_resets, 0);
        assert_int_equal(fp_pool_checkedin(pool), 0);
        acquire(pool, &client_a, 3, -1);
        assert_int_equal(rec_log.n_connecting, 1); /* every acquire connects */
        assert_status(pool, "NullPool");
        pool_done(pool);
}

static void test_static_pool(void **state)
{
        (void)state;
        struct fp_pool *pool = pool_new_params((struct fp_pool_params){.pool_class = FP_POOL_STATIC,
                                                                       .pool_size = 5,
                                                                       .max_overflow = 10,
                                                                       .timeout_ms = 1000,
                                                                       .recycle_ms = -1});
        checkout_new(pool, 1);
        acquire(pool, &client_b, 2, 0);
        assert_int_equal(rec_log.error_code[0], -ETIMEDOUT); /* exactly one, exclusive */
        release(pool, &client_a, lease_id_of(pool, 0));
        acquire(pool, &client_b, 3, 0);
        assert_ptr_equal(rec_log.leased_rec[1], rec_log.leased_rec[0]);
        assert_status(pool, "StaticPool");
        pool_done(pool);
}

static void test_assertion_pool(void **state)
{
        (void)state;
        struct fp_pool *pool =
                pool_new_params((struct fp_pool_params){.pool_class = FP_POOL_ASSERTION,
                                                        .pool_size = 5,
                                                        .timeout_ms = 30000,
                                                        .recycle_ms = -1});
        checkout_new(pool, 1);
        acquire(pool, &client_b, 2, -1);
        /* At once, naming the holder, without waiting for the timeout. */
        assert_int_equal(rec_log.n_errors, 1);
        assert_int_equal(rec_log.error_code[0], -EBUSY);
        assert_string_equal(rec_log.error_text[0], "connection is already checked out by pid 100");
        assert_int_equal(pool->n_waiting, 0);
        release(pool, &client_a, lease_id_of(pool, 0));
        acquire(pool, &client_b, 3, -1);
        assert_int_equal(rec_log.n_leased, 2);
        assert_status(pool, "AssertionPool");
        pool_done(pool);
}

static void test_leak_and_revoke(void **state)
{
        (void)state;
        struct fp_pool *pool = pool_new_params((struct fp_pool_params){.pool_size = 1,
                                                                       .timeout_ms = 1000,
                                                                       .recycle_ms = -1,
                                                                       .leak_timeout_ms = 1000,
                                                                       .max_lease_time_ms = 3000});
        checkout_new(pool, 1);
        rec_log.events[0] = '\0';
        rec_log.clock += 500000;
        fp_pool_check_leases(pool);
        assert_string_equal(rec_log.events, "");
        rec_log.clock += 1000000;
        fp_pool_check_leases(pool);
        fp_pool_check_leases(pool);
        assert_string_equal(rec_log.events, "leak"); /* once */
        assert_int_equal(pool->counters.leaks, 1);
        rec_log.clock += 2000000;
        fp_pool_check_leases(pool);
        assert_string_equal(rec_log.events, "leak revoke close checkin");
        assert_int_equal(rec_log.n_hard_closed, 1);
        assert_int_equal(pool->counters.revokes, 1);
        assert_int_equal(fp_pool_checkedout(pool), 0);
        /* The holder's late release of the revoked lease changes nothing. */
        struct fp_release_info info = {0};
        assert_int_equal(fp_pool_release(pool, &client_a, 100, lease_id_of(pool, 0), &info),
                         -ESRCH);
        pool_done(pool);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_fresh_status),
                cmocka_unit_test(test_lazy_and_overflow),
                cmocka_unit_test(test_discard_only_when_queue_full),
                cmocka_unit_test(test_reuse_fifo),
                cmocka_unit_test(test_affinity),
                cmocka_unit_test(test_waiters_fifo_and_deadlines),
                cmocka_unit_test(test_failed_connect_wakes_next),
                cmocka_unit_test(test_pool_size_zero_unbounded),
                cmocka_unit_test(test_max_overflow_unlimited),
                cmocka_unit_test(test_client_gone_reclaims),
                cmocka_unit_test(test_lowest_unused_slot),
                cmocka_unit_test(test_many_undeliverable_leases),
                cmocka_unit_test(test_timeouts_in_deadline_order),
                cmocka_unit_test(test_client_waiter_lists),
                cmocka_unit_test(test_undeliverable_lease_goes_back),
                cmocka_unit_test(test_invalidate_and_dispose),
                cmocka_unit_test(test_lifo),
                cmocka_unit_test(test_event_sequences),
                cmocka_unit_test(test_recycle),
                cmocka_unit_test(test_recycle_jitter_bounded),
                cmocka_unit_test(test_pre_ping),
                cmocka_unit_test(test_pre_ping_reconnect_fails),
                cmocka_unit_test(test_soft_invalidate),
                cmocka_unit_test(test_disconnect_invalidates_older),
                cmocka_unit_test(test_detach),
                cmocka_unit_test(test_null_pool),
                cmocka_unit_test(test_static_pool),
                cmocka_unit_test(test_assertion_pool),
                cmocka_unit_test(test_leak_and_revoke),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
