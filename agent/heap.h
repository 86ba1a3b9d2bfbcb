/* SPDX-License-Identifier: MIT */
/*
 * heap.h — a binary min-heap of pointers that tells each item where it sits,
 * so that any item can be removed in O(log n). forkpoold keeps its waiters'
 * acquire deadlines in one per pool (sd-event's prioq is not public).
 *
 * The heap never owns its items. It calls set_index(item, i) whenever an item
 * moves to position i, and set_index(item, FP_HEAP_NONE) when it leaves.
 */
#ifndef FORKPOOL_HEAP_H
#define FORKPOOL_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FP_HEAP_NONE SIZE_MAX

struct fp_heap {
        void **items;
        size_t n, cap;
        /* Whether a must come out before b (a strict weak order). */
        bool (*less)(const void *a, const void *b);
        /* Told where an item now sits (FP_HEAP_NONE: no longer in the heap). */
        void (*set_index)(void *item, size_t index);
};

/* Initialises an empty heap. Allocates nothing. */
void fp_heap_init(struct fp_heap *heap, bool (*less)(const void *a, const void *b),
                  void (*set_index)(void *item, size_t index));

/* Frees the heap's array (not the items) and empties it. Safe on a zeroed struct. */
void fp_heap_done(struct fp_heap *heap);

/*
 * Makes room for n more items, so that the next n fp_heap_push() calls cannot
 * fail. Returns 0 or -ENOMEM (nothing changes).
 */
int fp_heap_reserve(struct fp_heap *heap, size_t n);

/* Adds item. O(log n). Returns 0 or -ENOMEM (the heap is unchanged). */
int fp_heap_push(struct fp_heap *heap, void *item);

/* The first item (the least), or NULL when empty. O(1). */
void *fp_heap_peek(const struct fp_heap *heap);

/* Removes and returns the first item, or NULL when empty. O(log n). */
void *fp_heap_pop(struct fp_heap *heap);

/*
 * Removes the item at position index (as last told through set_index) and
 * returns it, or NULL if index is out of range. O(log n).
 */
void *fp_heap_remove(struct fp_heap *heap, size_t index);

/* Number of items. */
static inline size_t fp_heap_size(const struct fp_heap *heap)
{
        return heap->n;
}

#endif /* FORKPOOL_HEAP_H */
