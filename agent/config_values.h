/* SPDX-License-Identifier: MIT */
/*
 * config_values.h — the values of forkpoold's configuration, parsed alike
 * from the file (config_keys.c) and the command line (config.c): numbers,
 * seconds, limits, booleans, user and group lists, log levels, socket paths,
 * pool names, URLs. Each parser returns 0 (and its result), or -EINVAL with a
 * one-line reason (without the key) in reason.
 */
#ifndef FORKPOOL_CONFIG_VALUES_H
#define FORKPOOL_CONFIG_VALUES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "log.h"
#include "url.h"

/* Longest piece of a value quoted in a reason; config_quote()'s buffer is this + 4. */
#define CONFIG_QUOTE_MAX 64

/* Most users or groups in one list. */
#define FP_CONFIG_MAX_IDS 64

#define CONFIG_POOL_NAME_RULE "1 to 63 characters of A-Z, a-z, 0-9, '_', '.' and '-'"

/* Writes a reason into err (errlen bytes; nothing if err is NULL or errlen 0). */
void config_err(char *err, size_t errlen, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/*
 * A printable copy of s for a reason (non-printable bytes become '?', long
 * text is cut), in buf of CONFIG_QUOTE_MAX + 4 bytes.
 */
const char *config_quote(const char *s, char *buf);

/* Whether c is a blank of the file (space, tab, CR, VT, FF; not newline). */
bool config_is_blank(char c);

/* Wipes and frees s (a password, a URL that holds one); NULL is fine. */
void config_free_secret(char *s);

/* Parses a whole decimal int (no blanks, no '+'). */
int config_parse_int(const char *v, int *ret, char *reason, size_t len);

/*
 * Parses seconds, with up to 3 decimals ("30", "0.25", ".5"), into
 * milliseconds. Negative values are refused.
 */
int config_parse_seconds(const char *v, int *ret_ms, char *reason, size_t len);

/* pool_size: a whole number >= 0 (0: no limit), at most a segment's slots. */
int config_parse_pool_size(const char *v, int *ret, char *reason, size_t len);

/* max_overflow: a whole number >= -1 (-1: no limit). */
int config_parse_max_overflow(const char *v, int *ret, char *reason, size_t len);

/* connect_timeout: seconds > 0, into milliseconds. */
int config_parse_connect_timeout(const char *v, int *ret_ms, char *reason, size_t len);

/* Parses a URL into *ret and a copy of its text into *ret_text. */
int config_parse_url(const char *v, struct fp_url *ret, char **ret_text, char *reason, size_t len);

/* Whether name follows CONFIG_POOL_NAME_RULE. */
bool config_pool_name_valid(const char *name);

/* Parses a list of users or groups separated by commas and/or blanks. */
int config_parse_ids(const char *v, bool group, unsigned long *ids, size_t *ret_n, char *reason,
                     size_t len);

/* log_level: "error", "warning", "info" or "debug". */
int config_parse_log_level(const char *v, enum fp_log_level *ret, char *reason, size_t len);

/*
 * Whether v can be a socket path: not empty and fitting a Unix socket
 * address. 0, or -EINVAL, -ENAMETOOLONG (-ENOMEM for NULL) with a reason.
 */
int config_check_socket_path(const char *v, char *reason, size_t len);

/* Parses a limit: a whole number >= 0, where 0 means no limit. */
int config_parse_limit(const char *v, int *ret, char *reason, size_t len);

/* A boolean: true/yes/on/1 or false/no/off/0. */
int config_parse_bool(const char *v, bool *ret, char *reason, size_t len);

/* Seconds, or -1 for "off" (pool_recycle). */
int config_parse_seconds_or_off(const char *v, int *ret_ms, char *reason, size_t len);

#endif /* FORKPOOL_CONFIG_VALUES_H */
