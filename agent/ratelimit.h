/* SPDX-License-Identifier: MIT */
/*
 * ratelimit.h — a token bucket for log lines that a peer can provoke at will
 * (malformed messages, refused connections, descriptor exhaustion): a burst
 * passes, then about one line per interval, and the next line that passes
 * says how many were suppressed.
 */
#ifndef FORKPOOL_RATELIMIT_H
#define FORKPOOL_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct fp_ratelimit {
        uint32_t burst;         /* bucket size: lines that may pass at once */
        uint64_t interval_usec; /* one token comes back per interval */
        uint32_t tokens;
        uint64_t refilled_usec; /* when tokens were last counted */
        uint64_t suppressed;    /* lines refused since the last one that passed */
        bool started;
};

/* A bucket of burst lines refilled by one per interval_usec, full at first use. */
/* (clang-format 14 and 19 lay out braces in a macro differently) */
/* clang-format off */
#define FP_RATELIMIT_INIT(burst_, interval_usec_) \
        {.burst = (burst_), .interval_usec = (interval_usec_)}
/* clang-format on */

/*
 * Whether a line may be logged now (now_usec: CLOCK_MONOTONIC). When it may,
 * *ret_suppressed is set to the number of lines refused since the previous
 * one that passed (and that count restarts); otherwise the refusal is counted
 * and *ret_suppressed is untouched. Never blocks, never fails.
 */
bool fp_ratelimit_allow(struct fp_ratelimit *rl, uint64_t now_usec, uint64_t *ret_suppressed);

#endif /* FORKPOOL_RATELIMIT_H */
