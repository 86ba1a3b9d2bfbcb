/* SPDX-License-Identifier: MIT */
/*
 * log.c — plain log lines on stderr.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static enum fp_log_level log_level = FP_LOG_INFO;

static const char *const level_names[] = {
        [FP_LOG_ERROR] = "error",
        [FP_LOG_WARNING] = "warning",
        [FP_LOG_INFO] = "info",
        [FP_LOG_DEBUG] = "debug",
};

void fp_log_set_level(enum fp_log_level level)
{
        log_level = level;
}

bool fp_log_enabled(enum fp_log_level level)
{
        return level <= log_level;
}

static void log_line(enum fp_log_level level, const char *suffix, const char *fmt, va_list ap)
{
        char line[1024];
        int n = vsnprintf(line, sizeof(line), fmt, ap);
        if (n < 0)
                return;
        /* One write per line, so that lines from a busy loop never interleave. */
        fprintf(stderr, "forkpoold: %s: %s%s\n", level_names[level], line, suffix ? suffix : "");
}

void fp_log(enum fp_log_level level, const char *fmt, ...)
{
        va_list ap;
        if (!fp_log_enabled(level))
                return;
        va_start(ap, fmt);
        log_line(level, NULL, fmt, ap);
        va_end(ap);
}

int fp_log_errno(enum fp_log_level level, int error, const char *fmt, ...)
{
        va_list ap;
        char suffix[128];
        if (!fp_log_enabled(level))
                return error;
        snprintf(suffix, sizeof(suffix), ": %s", strerror(error < 0 ? -error : error));
        va_start(ap, fmt);
        log_line(level, suffix, fmt, ap);
        va_end(ap);
        return error;
}
