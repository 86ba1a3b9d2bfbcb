/* SPDX-License-Identifier: MIT */
/*
 * control.h — the control socket: forkpoold's transport to its clients
 * (SOCK_SEQPACKET, SO_PEERCRED, the allow lists, the per-peer limits, a pidfd
 * per worker, message dispatch, admin commands, socket activation). It serves
 * the supervisor (supervisor.h) through fp_control_transport and calls the
 * supervisor's operations for acquires, releases, cancels and admin commands.
 */
#ifndef FORKPOOL_CONTROL_H
#define FORKPOOL_CONTROL_H

#include <stddef.h>
#include <stdint.h>

#include "supervisor.h"

/* The control socket as the supervisor's transport (fp_supervisor_init()). */
extern const struct fp_transport fp_control_transport;

/* Creates the listening control socket (mode 0660) and watches it. */
int fp_control_listen(struct fp_supervisor *sup);

/* Stops accepting: closes the listener and removes the socket file. */
void fp_control_stop_listening(struct fp_supervisor *sup);

/* Closes every client connection (end of shutdown). */
void fp_control_close_all(struct fp_supervisor *sup);

/*
 * Handles every message the clients have sent that is still queued in their
 * sockets (before a restart leaves the connections to the fd store). Does not
 * block. A client may be freed meanwhile (end of stream).
 */
void fp_control_read_all(struct fp_supervisor *sup);

/*
 * Handles the releases waiting in the clients' release channels (proto.h).
 * Does not block; costs the channels that have some.
 */
void fp_control_take_releases(struct fp_supervisor *sup);

/* Sends a lease (with the connection's fd) to a client. Returns 0 or a negative errno. */
int fp_control_send_lease(struct fp_client *client, uint32_t request_id, const void *msg,
                          size_t len, int fd);

/* Sends an error reply to a client (failures are handled by dropping the client later). */
void fp_control_send_error(struct fp_client *client, uint32_t request_id, int error,
                           const char *text);

/*
 * An acquire the client queued (fp_pool_acquire() accepted it) was answered
 * or dropped: it no longer counts against max_waiting_per_connection.
 */
void fp_control_acquire_done(struct fp_client *client);

/* The list of the client's waiters in every pool (struct fp_pool_ops.client_waiters). */
struct fp_waiter_list *fp_control_client_waiters(struct fp_client *client);

#endif /* FORKPOOL_CONTROL_H */
