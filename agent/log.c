/* SPDX-License-Identifier: MIT */
/*
 * log.c — forkpoold's log: structured journal entries when stderr is the
 * journal (systemd's JOURNAL_STREAM names it), plain lines on stderr otherwise.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <systemd/sd-journal.h>

static enum fp_log_level log_level = FP_LOG_INFO;
static int to_journal = -1; /* -1: not decided yet */

static const int level_priorities[] = {
        [FP_LOG_ERROR] = LOG_ERR,
        [FP_LOG_WARNING] = LOG_WARNING,
        [FP_LOG_INFO] = LOG_INFO,
        [FP_LOG_DEBUG] = LOG_DEBUG,
};

/* True if stderr is the journal's stream (JOURNAL_STREAM=<dev>:<inode> matches it). */
static bool stderr_is_journal(void)
{
        if (to_journal >= 0)
                return to_journal;
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;
        to_journal = e && sscanf(e, "%llu:%llu", &dev, &ino) == 2 && fstat(2, &st) == 0 &&
                     (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
        return to_journal;
}

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
        if (stderr_is_journal()) {
                sd_journal_send("MESSAGE=%s%s", line, suffix ? suffix : "", "PRIORITY=%d",
                                level_priorities[level], "SYSLOG_IDENTIFIER=forkpoold", NULL);
                return;
        }
        /* One write per line, so that lines from a busy loop never interleave. */
        fprintf(stderr, "forkpoold: %s: %s%s\n", level_names[level], line, suffix ? suffix : "");
}

void fp_log_event(enum fp_log_level level, const struct fp_log_fields *f, const char *fmt, ...)
{
        va_list ap;
        char line[1024];

        if (!fp_log_enabled(level))
                return;
        va_start(ap, fmt);
        int n = vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        if (n < 0)
                return;
        if (!stderr_is_journal()) {
                fprintf(stderr, "forkpoold: %s: %s\n", level_names[level], line);
                return;
        }
        sd_journal_send("MESSAGE=%s", line, "PRIORITY=%d", level_priorities[level],
                        "SYSLOG_IDENTIFIER=forkpoold", "POOL=%s", f->pool, "EVENT=%s", f->event,
                        "SLOT=%d", f->slot, "HOLDER_PID=%d", f->holder_pid, "BACKEND_PID=%d",
                        f->backend_pid, NULL);
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
