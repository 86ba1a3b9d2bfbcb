/* SPDX-License-Identifier: MIT */
/*
 * pgtrace.c — the cancel key from libpq's protocol trace (pgtrace.h).
 *
 * libpq 14–17 print the message as
 *     "<time>\tB\t12\tBackendKeyData\t 4242 -123456789\n"
 * (the time only without PQTRACE_SUPPRESS_TIMESTAMPS): two Int32 fields, each
 * as " %d". A key of another length (libpq 18, protocol 3.2) is printed as
 * bytes, and the message length is no longer 12: both are refused.
 */
#include "pgtrace.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define KEY_TAG "\tBackendKeyData\t"

/* Parses one " %d" field at *p (up to end); advances *p. */
static bool parse_int32(const char **p, const char *end, int *ret)
{
        const char *s = *p;
        if (s >= end || *s != ' ')
                return false;
        s++;
        bool negative = false;
        if (s < end && *s == '-') {
                negative = true;
                s++;
        }
        if (s >= end || *s < '0' || *s > '9')
                return false;
        long long v = 0;
        while (s < end && *s >= '0' && *s <= '9') {
                v = v * 10 + (*s - '0');
                if (v > (long long)INT_MAX + 1)
                        return false;
                s++;
        }
        if (negative)
                v = -v;
        if (v < INT_MIN || v > INT_MAX)
                return false;
        *ret = (int)v;
        *p = s;
        return true;
}

int fp_pgtrace_backend_key(const char *trace, size_t len, int *ret_pid, int *ret_key)
{
        const char *end = trace + len;
        size_t tag_len = strlen(KEY_TAG);

        for (const char *line = trace; line < end;) {
                const char *nl = memchr(line, '\n', (size_t)(end - line));
                const char *line_end = nl ? nl : end;
                /* "B\t12" then the tag: the message came from the server, 12 bytes long. */
                const char *tag = NULL;
                for (const char *s = line; s + tag_len <= line_end; s++)
                        if (memcmp(s, KEY_TAG, tag_len) == 0) {
                                tag = s;
                                break;
                        }
                if (tag) {
                        static const char head[] = "B\t12";
                        size_t head_len = sizeof(head) - 1;
                        if ((size_t)(tag - line) < head_len ||
                            memcmp(tag - head_len, head, head_len) != 0 ||
                            (tag - line > (ptrdiff_t)head_len &&
                             tag[-(ptrdiff_t)head_len - 1] != '\t'))
                                return -EPROTO;
                        const char *p = tag + tag_len;
                        int pid, key;
                        if (!parse_int32(&p, line_end, &pid) || !parse_int32(&p, line_end, &key) ||
                            p != line_end || pid <= 0)
                                return -EPROTO;
                        *ret_pid = pid;
                        *ret_key = key;
                        return 0;
                }
                line = nl ? nl + 1 : end;
        }
        return -ENOENT;
}
