/* SPDX-License-Identifier: MIT */
/*
 * ratelimit.c — a token bucket for log lines (ratelimit.h).
 */
#include "ratelimit.h"

bool fp_ratelimit_allow(struct fp_ratelimit *rl, uint64_t now_usec, uint64_t *ret_suppressed)
{
        if (!rl->started) {
                rl->started = true;
                rl->tokens = rl->burst;
                rl->refilled_usec = now_usec;
        } else if (rl->interval_usec > 0 && now_usec > rl->refilled_usec) {
                uint64_t earned = (now_usec - rl->refilled_usec) / rl->interval_usec;
                if (earned >= rl->burst - rl->tokens) {
                        rl->tokens = rl->burst;
                        rl->refilled_usec = now_usec;
                } else {
                        rl->tokens += (uint32_t)earned;
                        rl->refilled_usec += earned * rl->interval_usec;
                }
        }
        if (rl->tokens == 0) {
                rl->suppressed++;
                return false;
        }
        rl->tokens--;
        *ret_suppressed = rl->suppressed;
        rl->suppressed = 0;
        return true;
}
