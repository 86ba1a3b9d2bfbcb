/* SPDX-License-Identifier: MIT */
/*
 * sockio.h — sending and receiving one control message, with at most one
 * descriptor, on a SOCK_SEQPACKET socket.
 */
#ifndef FORKPOOL_SOCKIO_H
#define FORKPOOL_SOCKIO_H

#include <stddef.h>
#include <sys/types.h>

/*
 * Sends buf[0..len) as one message, with fd attached (SCM_RIGHTS) unless fd
 * is -1. Never raises SIGPIPE. flags are added to sendmsg's (e.g.
 * MSG_DONTWAIT). Returns 0 or a negative errno (-EPIPE when the peer is gone).
 */
int fp_send_msg(int sock, const void *buf, size_t len, int fd, int flags);

/*
 * Receives one message into buf (capacity cap). Received descriptors are
 * close-on-exec. If ret_fd is NULL any descriptor that arrives is closed and
 * -EBADMSG returned; otherwise *ret_fd is the descriptor or -1 (a second one
 * is closed and -EBADMSG returned). A truncated message or lost descriptor
 * (MSG_TRUNC, MSG_CTRUNC) closes whatever arrived and returns -EBADMSG.
 * Returns the message length, 0 at end of stream, or a negative errno
 * (-EAGAIN with MSG_DONTWAIT). Descriptors are never leaked.
 */
ssize_t fp_recv_msg(int sock, void *buf, size_t cap, int *ret_fd, int flags);

/*
 * Connects a new SOCK_SEQPACKET socket (close-on-exec, blocking) to the Unix
 * socket at path, forkpoold's control socket. Returns the descriptor, or
 * -ENAMETOOLONG (path does not fit a socket address), or the negative errno
 * of socket() or connect() (-ENOENT: no such socket; -ECONNREFUSED: nobody
 * listening on it).
 */
int fp_connect_seqpacket(const char *path);

/*
 * Waits up to timeout_ms for events (POLLIN, POLLOUT) on fd, through
 * signals. Returns what happened (poll's revents, > 0), -ETIMEDOUT or a
 * negative errno.
 */
int fp_poll_fd(int fd, short events, int timeout_ms);

/* fp_poll_fd(), returning 0 when something happened. */
int fp_wait_fd(int fd, short events, int timeout_ms);

/*
 * Reads exactly len bytes from a socket, waiting up to timeout_ms for each
 * part. Returns 0, -ECONNRESET (end of stream), -ETIMEDOUT or a negative errno.
 */
int fp_read_full(int fd, void *buf, size_t len, int timeout_ms);

/* Writes all of buf to a (blocking) socket, without SIGPIPE. Returns 0 or a negative errno. */
int fp_write_full(int fd, const void *buf, size_t len);

#endif /* FORKPOOL_SOCKIO_H */
