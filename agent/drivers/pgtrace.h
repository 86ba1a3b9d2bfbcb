/* SPDX-License-Identifier: MIT */
/*
 * pgtrace.h — the cancel key of a PostgreSQL session, read from libpq's own
 * protocol trace (PQtrace) of the supervisor's handshake. libpq has no public
 * accessor for the key before version 17, and its private struct pg_cancel
 * changed layout in libpq 18; the trace prints what the server sent
 * (BackendKeyData), so the key read from it cannot be a wrong one.
 */
#ifndef FORKPOOL_PGTRACE_H
#define FORKPOOL_PGTRACE_H

#include <stddef.h>

/*
 * Finds the server's BackendKeyData message in a PQtrace text of len bytes
 * (need not be NUL-terminated) and returns 0 with the backend pid and the
 * 32-bit cancel key in *ret_pid and *ret_key. Returns -ENOENT if the trace
 * has no such message, -EPROTO if it has one that is not a process id and a
 * 4-byte key (protocol 3.2's longer keys, a trace format this code does not
 * know): the caller then has no cancel key. The out parameters are touched
 * only on success. Does not block.
 */
int fp_pgtrace_backend_key(const char *trace, size_t len, int *ret_pid, int *ret_key);

#endif /* FORKPOOL_PGTRACE_H */
