/* SPDX-License-Identifier: MIT */
/*
 * text.h — messages from client libraries, made fit for a one-line error.
 */
#ifndef FORKPOOL_TEXT_H
#define FORKPOOL_TEXT_H

#include <stddef.h>

/*
 * Copies in (NULL: the empty string) into out (len > 0 bytes, always
 * terminated, truncated to fit) as one line: line breaks at the end are
 * dropped, the others become spaces. libpq's error texts end in a newline and
 * may hold several lines.
 */
void fp_one_line(const char *in, char *out, size_t len);

#endif /* FORKPOOL_TEXT_H */
