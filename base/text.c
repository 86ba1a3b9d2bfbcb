/* SPDX-License-Identifier: MIT */
/*
 * text.c — one-line messages (text.h).
 */
#include "text.h"

#include <string.h>

void fp_one_line(const char *in, char *out, size_t len)
{
        size_t n = in ? strlen(in) : 0, j = 0;

        while (n > 0 && (in[n - 1] == '\n' || in[n - 1] == '\r'))
                n--;
        for (size_t i = 0; i < n && j + 1 < len; i++)
                out[j++] = in[i] == '\n' || in[i] == '\r' ? ' ' : in[i];
        out[j] = '\0';
}
