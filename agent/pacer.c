/* SPDX-License-Identifier: MIT */
/*
 * pacer.c — connect_rate (pacer.h).
 */
#include "pacer.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

static int on_pacer_timer(sd_event_source *s, uint64_t usec, void *userdata);

/* Arms the timer for the first waiting item. */
static void timer_arm(struct fp_pacer *p)
{
        int r;
        if (!p->timer) {
                r = sd_event_add_time(p->event, &p->timer, CLOCK_MONOTONIC, p->next_usec, 1000,
                                      on_pacer_timer, p);
        } else {
                r = sd_event_source_set_time(p->timer, p->next_usec);
                if (r >= 0)
                        r = sd_event_source_set_enabled(p->timer, SD_EVENT_ONESHOT);
        }
        if (r < 0)
                log_error_errno(r, "pool %s: cannot arm the connect_rate timer", p->name);
}

/* One step between starts at the current rate (a rate set to 0 by a reload: no wait). */
static uint64_t step_usec(const struct fp_pacer *p)
{
        return p->rate > 0 ? 1000000u / (uint64_t)p->rate : 0;
}

/* Starts the waiting items whose turn has come, one per 1/rate seconds. */
static int on_pacer_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct fp_pacer *p = userdata;
        (void)s;

        while (p->n > 0 && p->next_usec <= usec) {
                void *item = p->queue[0];
                memmove(p->queue, p->queue + 1, --p->n * sizeof(*p->queue));
                p->next_usec += step_usec(p);
                p->start(item, p->ctx);
        }
        if (p->n > 0)
                timer_arm(p);
        return 0;
}

void fp_pacer_init(struct fp_pacer *p, sd_event *event, fp_pacer_start_fn start, void *ctx,
                   const char *name)
{
        memset(p, 0, sizeof(*p));
        p->event = event;
        p->start = start;
        p->ctx = ctx;
        p->name = name;
}

void fp_pacer_submit(struct fp_pacer *p, void *item, int rate, uint64_t now_usec, uint32_t capacity)
{
        p->rate = rate;
        if (rate <= 0) {
                p->start(item, p->ctx);
                return;
        }
        if (p->next_usec <= now_usec && p->n == 0) {
                p->next_usec = now_usec + step_usec(p);
                p->start(item, p->ctx);
                return;
        }
        if (!p->queue && capacity > 0) {
                p->queue = calloc(capacity, sizeof(*p->queue));
                p->cap = p->queue ? capacity : 0;
        }
        if (!p->queue || p->n >= p->cap) {
                p->start(item, p->ctx);
                return;
        }
        p->queue[p->n++] = item;
        timer_arm(p);
}

void fp_pacer_done(struct fp_pacer *p)
{
        p->timer = sd_event_source_disable_unref(p->timer);
        free(p->queue);
        p->queue = NULL;
        p->n = p->cap = 0;
}
