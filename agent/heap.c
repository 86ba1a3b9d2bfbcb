/* SPDX-License-Identifier: MIT */
/*
 * heap.c — a binary min-heap of pointers with position tracking (heap.h).
 */
#include "heap.h"

#include <errno.h>
#include <stdlib.h>

#define HEAP_MIN_CAP 16

void fp_heap_init(struct fp_heap *heap, bool (*less)(const void *a, const void *b),
                  void (*set_index)(void *item, size_t index))
{
        *heap = (struct fp_heap){.less = less, .set_index = set_index};
}

void fp_heap_done(struct fp_heap *heap)
{
        free(heap->items);
        heap->items = NULL;
        heap->n = heap->cap = 0;
}

int fp_heap_reserve(struct fp_heap *heap, size_t n)
{
        if (n <= heap->cap - heap->n)
                return 0;
        if (n > SIZE_MAX / sizeof(void *) / 2 - heap->n)
                return -ENOMEM;
        size_t cap = heap->cap ? heap->cap : HEAP_MIN_CAP;
        while (cap < heap->n + n)
                cap *= 2;
        void **items = realloc(heap->items, cap * sizeof(*items));
        if (!items)
                return -ENOMEM;
        heap->items = items;
        heap->cap = cap;
        return 0;
}

static void heap_place(struct fp_heap *heap, size_t i, void *item)
{
        heap->items[i] = item;
        heap->set_index(item, i);
}

/* Moves the item at i up while it is less than its parent. */
static void heap_sift_up(struct fp_heap *heap, size_t i)
{
        void *item = heap->items[i];
        while (i > 0) {
                size_t parent = (i - 1) / 2;
                if (!heap->less(item, heap->items[parent]))
                        break;
                heap_place(heap, i, heap->items[parent]);
                i = parent;
        }
        heap_place(heap, i, item);
}

/* Moves the item at i down while a child is less than it. */
static void heap_sift_down(struct fp_heap *heap, size_t i)
{
        void *item = heap->items[i];
        for (;;) {
                size_t child = 2 * i + 1;
                if (child >= heap->n)
                        break;
                if (child + 1 < heap->n && heap->less(heap->items[child + 1], heap->items[child]))
                        child++;
                if (!heap->less(heap->items[child], item))
                        break;
                heap_place(heap, i, heap->items[child]);
                i = child;
        }
        heap_place(heap, i, item);
}

int fp_heap_push(struct fp_heap *heap, void *item)
{
        int r = fp_heap_reserve(heap, 1);
        if (r < 0)
                return r;
        heap->items[heap->n++] = item;
        heap_sift_up(heap, heap->n - 1);
        return 0;
}

void *fp_heap_peek(const struct fp_heap *heap)
{
        return heap->n > 0 ? heap->items[0] : NULL;
}

void *fp_heap_remove(struct fp_heap *heap, size_t index)
{
        if (index >= heap->n)
                return NULL;
        void *item = heap->items[index];
        void *last = heap->items[--heap->n];
        heap->set_index(item, FP_HEAP_NONE);
        if (index == heap->n)
                return item;
        heap->items[index] = last;
        /* The last item may belong above or below the hole. */
        if (index > 0 && heap->less(last, heap->items[(index - 1) / 2]))
                heap_sift_up(heap, index);
        else
                heap_sift_down(heap, index);
        return item;
}

void *fp_heap_pop(struct fp_heap *heap)
{
        return fp_heap_remove(heap, 0);
}
