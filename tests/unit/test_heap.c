/* SPDX-License-Identifier: MIT */
/*
 * test_heap.c — the binary heap (agent/heap.c): order, ties, removal from
 * anywhere with the positions it reports, and a randomised check against a
 * plain scan.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "heap.h"

struct item {
        uint64_t key;
        uint64_t seq; /* ties come out in insertion order */
        size_t index;
};

static bool item_less(const void *a, const void *b)
{
        const struct item *x = a, *y = b;
        return x->key != y->key ? x->key < y->key : x->seq < y->seq;
}

static void item_set_index(void *item, size_t index)
{
        ((struct item *)item)->index = index;
}

/* Every item sits where it was told, and no child is less than its parent. */
static void check_invariants(const struct fp_heap *h)
{
        for (size_t i = 0; i < h->n; i++) {
                const struct item *it = h->items[i];
                assert_int_equal(it->index, i);
                if (i > 0)
                        assert_false(item_less(it, h->items[(i - 1) / 2]));
        }
}

static void test_empty(void **state)
{
        struct fp_heap h;
        (void)state;
        fp_heap_init(&h, item_less, item_set_index);
        assert_null(fp_heap_peek(&h));
        assert_null(fp_heap_pop(&h));
        assert_null(fp_heap_remove(&h, 0));
        assert_int_equal(fp_heap_size(&h), 0);
        fp_heap_done(&h);
        fp_heap_done(&h);
}

static void test_order_and_ties(void **state)
{
        static const uint64_t keys[] = {5, 3, 9, 3, 1, 7, 3, 0, 9, 2};
        struct item items[10];
        struct fp_heap h;
        (void)state;

        fp_heap_init(&h, item_less, item_set_index);
        for (size_t i = 0; i < 10; i++) {
                items[i] = (struct item){.key = keys[i], .seq = i};
                assert_int_equal(fp_heap_push(&h, &items[i]), 0);
                check_invariants(&h);
        }
        assert_int_equal(fp_heap_size(&h), 10);
        struct item *prev = NULL;
        for (size_t i = 0; i < 10; i++) {
                struct item *it = fp_heap_pop(&h);
                assert_non_null(it);
                assert_int_equal(it->index, FP_HEAP_NONE);
                if (prev)
                        assert_true(item_less(prev, it));
                prev = it;
                check_invariants(&h);
        }
        /* The three 3s came out in the order they went in. */
        assert_null(fp_heap_pop(&h));
        fp_heap_done(&h);
}

static void test_remove_anywhere(void **state)
{
        enum {
                N = 200
        };
        struct item items[N];
        struct fp_heap h;
        (void)state;

        fp_heap_init(&h, item_less, item_set_index);
        assert_int_equal(fp_heap_reserve(&h, N), 0);
        for (size_t i = 0; i < N; i++) {
                items[i] = (struct item){.key = (i * 7919) % 101, .seq = i};
                assert_int_equal(fp_heap_push(&h, &items[i]), 0);
        }
        /* Remove every third item by its reported position. */
        for (size_t i = 0; i < N; i += 3) {
                size_t at = items[i].index;
                assert_ptr_equal(fp_heap_remove(&h, at), &items[i]);
                assert_int_equal(items[i].index, FP_HEAP_NONE);
                check_invariants(&h);
        }
        assert_null(fp_heap_remove(&h, fp_heap_size(&h)));
        struct item *prev = NULL;
        size_t n = 0;
        for (struct item *it; (it = fp_heap_pop(&h)); n++) {
                assert_true(it - items < N && (it - items) % 3 != 0);
                if (prev)
                        assert_true(item_less(prev, it));
                prev = it;
        }
        assert_int_equal(n, N - (N + 2) / 3);
        fp_heap_done(&h);
}

/* Random pushes, pops and removals, checked against a scan for the least. */
static void test_random_against_scan(void **state)
{
        enum {
                N = 2000,
                STEPS = 20000
        };
        static struct item items[N];
        bool in[N] = {0};
        struct fp_heap h;
        (void)state;

        srandom(42);
        fp_heap_init(&h, item_less, item_set_index);
        for (size_t i = 0; i < N; i++)
                items[i] = (struct item){.index = FP_HEAP_NONE};
        uint64_t seq = 0;
        for (int step = 0; step < STEPS; step++) {
                size_t i = (size_t)random() % N;
                int op = (int)(random() % 3);
                if (!in[i]) {
                        items[i].key = (uint64_t)(random() % 50);
                        items[i].seq = seq++;
                        assert_int_equal(fp_heap_push(&h, &items[i]), 0);
                        in[i] = true;
                } else if (op == 0) {
                        assert_ptr_equal(fp_heap_remove(&h, items[i].index), &items[i]);
                        in[i] = false;
                } else if (op == 1) {
                        struct item *least = NULL;
                        for (size_t j = 0; j < N; j++)
                                if (in[j] && (!least || item_less(&items[j], least)))
                                        least = &items[j];
                        assert_ptr_equal(fp_heap_peek(&h), least);
                        assert_ptr_equal(fp_heap_pop(&h), least);
                        in[least - items] = false;
                }
                if (step % 1000 == 0)
                        check_invariants(&h);
        }
        check_invariants(&h);
        fp_heap_done(&h);
        assert_int_equal(fp_heap_size(&h), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_empty),
                cmocka_unit_test(test_order_and_ties),
                cmocka_unit_test(test_remove_anywhere),
                cmocka_unit_test(test_random_against_scan),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
