/* SPDX-License-Identifier: MIT */
/*
 * peercount.h — how many control connections each uid (or pid) holds, in
 * O(1) per connection and disconnection, so that checking the per-peer
 * limits does not scan every client (a refused peer could otherwise make
 * forkpoold do work proportional to all clients for each attempt).
 *
 * A chained hash table of uint32_t keys with counts; a key whose count drops
 * to 0 is removed. Grows when it gets full; never shrinks.
 */
#ifndef FORKPOOL_PEERCOUNT_H
#define FORKPOOL_PEERCOUNT_H

#include <stddef.h>
#include <stdint.h>

struct fp_peercount_entry;

struct fp_peercount {
        struct fp_peercount_entry **buckets; /* n_buckets, a power of two; NULL until used */
        size_t n_buckets;
        size_t n_keys;
};

/* An empty table (allocates nothing until the first fp_peercount_add()). */
/* (clang-format 14 and 19 lay out braces in a macro differently) */
/* clang-format off */
#define FP_PEERCOUNT_INIT {0}
/* clang-format on */

/* Frees everything; the table is empty and usable again. Safe on an empty one. */
void fp_peercount_done(struct fp_peercount *pc);

/* The count of key (0 if absent). O(1) on average. */
uint32_t fp_peercount_get(const struct fp_peercount *pc, uint32_t key);

/* Adds one to key's count. Returns 0 or -ENOMEM (nothing changes). */
int fp_peercount_add(struct fp_peercount *pc, uint32_t key);

/* Takes one from key's count (removing it at 0); no-op if absent. */
void fp_peercount_sub(struct fp_peercount *pc, uint32_t key);

#endif /* FORKPOOL_PEERCOUNT_H */
