/* SPDX-License-Identifier: MIT */
/*
 * clock.h — CLOCK_MONOTONIC read now, in the units the project counts in.
 *
 * An event loop's cached time (sd_event_now()) is when the loop last woke:
 * a handler that reads a batch of messages, or a process that was stopped or
 * descheduled in the middle of one, sees it seconds old. Anything that starts
 * a deadline (a waiter's pool_timeout, a statement's) reads the clock here.
 * A vDSO call: no system call.
 */
#ifndef FORKPOOL_CLOCK_H
#define FORKPOOL_CLOCK_H

#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC now, in microseconds. */
static inline uint64_t fp_monotonic_usec(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* CLOCK_MONOTONIC now, in milliseconds. */
static inline int64_t fp_monotonic_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif /* FORKPOOL_CLOCK_H */
