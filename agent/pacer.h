/* SPDX-License-Identifier: MIT */
/*
 * pacer.h — connect_rate: a pool's new connections are started at most
 * `rate` per second; the others wait in order and are started from the event
 * loop as their turn comes, so that a burst of acquires (or the first minutes
 * after a restart) is no login storm on the database.
 */
#ifndef FORKPOOL_PACER_H
#define FORKPOOL_PACER_H

#include <stdint.h>
#include <systemd/sd-event.h>

/* Starts one item whose turn came (a record to connect). */
typedef void (*fp_pacer_start_fn)(void *item, void *ctx);

/* One pool's pacing; zero it, then fp_pacer_init(). */
struct fp_pacer {
        sd_event *event;
        fp_pacer_start_fn start;
        void *ctx;
        const char *name;   /* the pool's, for log lines; must outlive the pacer */
        int rate;           /* per second, as of the last fp_pacer_submit() */
        uint64_t next_usec; /* CLOCK_MONOTONIC of the next start */
        void **queue;       /* waiting items, oldest first (allocated when first needed) */
        uint32_t n, cap;
        sd_event_source *timer;
};

/* Sets up an empty pacer that starts items with start(item, ctx) on event. */
void fp_pacer_init(struct fp_pacer *p, sd_event *event, fp_pacer_start_fn start, void *ctx,
                   const char *name);

/*
 * Starts item now (rate <= 0: no pacing; or its turn has come and nothing
 * waits), or queues it behind the others (at most capacity items; beyond
 * that, or out of memory, it is started now). start() may run from inside
 * this call. now_usec is CLOCK_MONOTONIC now (fp_supervisor_now()).
 */
void fp_pacer_submit(struct fp_pacer *p, void *item, int rate, uint64_t now_usec,
                     uint32_t capacity);

/* Frees the queue and the timer; waiting items are not started. */
void fp_pacer_done(struct fp_pacer *p);

#endif /* FORKPOOL_PACER_H */
