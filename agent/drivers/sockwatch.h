/* SPDX-License-Identifier: MIT */
/*
 * sockwatch.h — watching a client library's socket on the event loop through
 * a private duplicate of it.
 *
 * libpq and Connector/C close their socket themselves when the server drops
 * the connection (in the middle of a reset, a ping, a hook). An epoll
 * registration belongs to the open socket, not to the descriptor number: if
 * another copy of the socket stays open — the one in systemd's fd store, a
 * worker's — the registration outlives the library's close, a later
 * EPOLL_CTL_DEL by that number fails (or hits another socket that got the
 * number), and the next event on the dead socket names an event source that
 * was freed: sd-event aborts. Watching a duplicate that only this module
 * closes keeps the registration and its descriptor together.
 */
#ifndef FORKPOOL_SOCKWATCH_H
#define FORKPOOL_SOCKWATCH_H

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

/* Zero-initialised (calloc) means "not watching". */
struct fp_sockwatch {
        sd_event_source *io; /* on fd; NULL when not watching */
        int fd;              /* our duplicate of the library's socket, valid while io is set */
};

/*
 * Watches lib_fd (the library's current socket) for events, calling handler
 * with userdata; enabled or not. The same socket keeps its duplicate and
 * source (only the events change); another socket (the library reconnected
 * elsewhere) gets a fresh duplicate, the old one is dropped. Returns 0, or a
 * negative errno (-EBADF: lib_fd is not open); on failure nothing is watched.
 * Never blocks.
 */
int fp_sockwatch_set(struct fp_sockwatch *w, sd_event *event, int lib_fd, uint32_t events,
                     bool enabled, sd_event_io_handler_t handler, void *userdata);

/* Drops the source, then closes the duplicate. Idempotent. */
void fp_sockwatch_free(struct fp_sockwatch *w);

#endif /* FORKPOOL_SOCKWATCH_H */
