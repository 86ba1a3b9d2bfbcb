/* SPDX-License-Identifier: MIT */
/*
 * peercount.c — connection counts per uid or pid (peercount.h).
 */
#include "peercount.h"

#include <errno.h>
#include <stdlib.h>

#define PEERCOUNT_MIN_BUCKETS 64

struct fp_peercount_entry {
        struct fp_peercount_entry *next;
        uint32_t key;
        uint32_t count;
};

/* Spreads consecutive pids over the buckets (a multiplicative hash). */
static size_t bucket_of(const struct fp_peercount *pc, uint32_t key)
{
        return (size_t)(((uint64_t)key * 0x9e3779b97f4a7c15ull) >> 32) & (pc->n_buckets - 1);
}

void fp_peercount_done(struct fp_peercount *pc)
{
        for (size_t i = 0; i < pc->n_buckets; i++) {
                struct fp_peercount_entry *e = pc->buckets[i];
                while (e) {
                        struct fp_peercount_entry *next = e->next;
                        free(e);
                        e = next;
                }
        }
        free(pc->buckets);
        *pc = (struct fp_peercount){0};
}

uint32_t fp_peercount_get(const struct fp_peercount *pc, uint32_t key)
{
        if (pc->n_buckets == 0)
                return 0;
        for (const struct fp_peercount_entry *e = pc->buckets[bucket_of(pc, key)]; e; e = e->next)
                if (e->key == key)
                        return e->count;
        return 0;
}

/* Doubles the buckets (or makes the first ones). Returns 0 or -ENOMEM (unchanged). */
static int peercount_grow(struct fp_peercount *pc)
{
        size_t n = pc->n_buckets ? pc->n_buckets * 2 : PEERCOUNT_MIN_BUCKETS;
        struct fp_peercount_entry **buckets = calloc(n, sizeof(*buckets));
        if (!buckets)
                return -ENOMEM;
        struct fp_peercount old = *pc;
        pc->buckets = buckets;
        pc->n_buckets = n;
        for (size_t i = 0; i < old.n_buckets; i++) {
                struct fp_peercount_entry *e = old.buckets[i];
                while (e) {
                        struct fp_peercount_entry *next = e->next;
                        size_t b = bucket_of(pc, e->key);
                        e->next = buckets[b];
                        buckets[b] = e;
                        e = next;
                }
        }
        free(old.buckets);
        return 0;
}

int fp_peercount_add(struct fp_peercount *pc, uint32_t key)
{
        if (pc->n_buckets > 0)
                for (struct fp_peercount_entry *e = pc->buckets[bucket_of(pc, key)]; e; e = e->next)
                        if (e->key == key) {
                                e->count++;
                                return 0;
                        }
        /* A new key: keep chains short (one key per bucket on average at most). */
        if (pc->n_keys >= pc->n_buckets && peercount_grow(pc) < 0 && pc->n_buckets == 0)
                return -ENOMEM;
        struct fp_peercount_entry *e = malloc(sizeof(*e));
        if (!e)
                return -ENOMEM;
        size_t b = bucket_of(pc, key);
        *e = (struct fp_peercount_entry){.next = pc->buckets[b], .key = key, .count = 1};
        pc->buckets[b] = e;
        pc->n_keys++;
        return 0;
}

void fp_peercount_sub(struct fp_peercount *pc, uint32_t key)
{
        if (pc->n_buckets == 0)
                return;
        struct fp_peercount_entry **link = &pc->buckets[bucket_of(pc, key)];
        for (struct fp_peercount_entry *e = *link; e; link = &e->next, e = e->next) {
                if (e->key != key)
                        continue;
                if (--e->count == 0) {
                        *link = e->next;
                        free(e);
                        pc->n_keys--;
                }
                return;
        }
}
