/* SPDX-License-Identifier: MIT */
/*
 * log.h — forkpoold's log: one line per event, in the journal (with
 * structured fields) when stderr is the journal, on stderr prefixed with its
 * level otherwise. Errors are logged once, where they are handled. Never log
 * a secret.
 */
#ifndef FORKPOOL_LOG_H
#define FORKPOOL_LOG_H

#include <stdbool.h>

/* How much is logged (forkpool.conf: log_level). */
enum fp_log_level {
        FP_LOG_ERROR = 0,
        FP_LOG_WARNING,
        FP_LOG_INFO,
        FP_LOG_DEBUG,
};

/* Sets the most verbose level that is printed. */
void fp_log_set_level(enum fp_log_level level);

/* True if messages at level are printed (to skip building expensive ones). */
bool fp_log_enabled(enum fp_log_level level);

/* Prints one line at level (a trailing newline in fmt is not needed). */
void fp_log(enum fp_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Logs at error level and returns error (a negative errno), for `return log_error_errno(r, …)`. */
int fp_log_errno(enum fp_log_level level, int error, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* The structured fields of a pool event, for the journal. */
struct fp_log_fields {
        const char *pool;
        const char *event;
        int slot; /* -1: none */
        int holder_pid;
        int backend_pid;
};

/*
 * Like fp_log(), for a pool event: in the journal the fields POOL=, EVENT=,
 * SLOT=, HOLDER_PID= and BACKEND_PID= go with the message.
 */
void fp_log_event(enum fp_log_level level, const struct fp_log_fields *fields, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

#define log_error(...)   fp_log(FP_LOG_ERROR, __VA_ARGS__)
#define log_warning(...) fp_log(FP_LOG_WARNING, __VA_ARGS__)
#define log_info(...)    fp_log(FP_LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
        do {                                                                                       \
                if (fp_log_enabled(FP_LOG_DEBUG))                                                  \
                        fp_log(FP_LOG_DEBUG, __VA_ARGS__);                                         \
        } while (0)
#define log_error_errno(r, ...)   fp_log_errno(FP_LOG_ERROR, (r), __VA_ARGS__)
#define log_warning_errno(r, ...) fp_log_errno(FP_LOG_WARNING, (r), __VA_ARGS__)

#endif /* FORKPOOL_LOG_H */
