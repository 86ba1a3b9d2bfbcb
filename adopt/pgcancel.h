/* SPDX-License-Identifier: MIT */
/*
 * pgcancel.h — PostgreSQL's CancelRequest, sent to a backend's server from
 * any process that knows the backend's pid and cancel key.
 */
#ifndef FORKPOOL_PGCANCEL_H
#define FORKPOOL_PGCANCEL_H

#include <stdint.h>
#include <sys/socket.h>

/* The CancelRequest code of the PostgreSQL protocol (1234 << 16 | 5678). */
#define FP_PG_CANCEL_REQUEST_CODE 80877102

/*
 * Writes the 16 bytes of CancelRequest(backend_pid, cancel_key) into packet,
 * in network byte order, ready to send.
 */
void fp_pg_cancel_packet(uint32_t packet[4], int32_t backend_pid, int32_t cancel_key);

/*
 * Connects to the server at addr, sends CancelRequest(backend_pid,
 * cancel_key) and waits up to timeout_ms for the server to close the
 * connection (it does once it has handled the request). Returns 0 when the
 * request was delivered (the query may have ended already), or a negative
 * errno. Async-signal-safe: only socket system calls, no locks, no memory.
 */
int fp_pg_cancel_request(const struct sockaddr *addr, socklen_t addr_len, int32_t backend_pid,
                         int32_t cancel_key, int timeout_ms);

#endif /* FORKPOOL_PGCANCEL_H */
