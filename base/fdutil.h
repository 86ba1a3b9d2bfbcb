/* SPDX-License-Identifier: MIT */
/*
 * fdutil.h — descriptors that must stop reaching a database without their
 * number changing: a client library's handle keeps using its number.
 */
#ifndef FORKPOOL_FDUTIL_H
#define FORKPOOL_FDUTIL_H

/*
 * Puts an unconnected socket in place of fd (same number, close-on-exec):
 * the original is closed, so that what a client library still writes there
 * (PostgreSQL's Terminate, MySQL's COM_QUIT) reaches nobody and fails
 * quietly, while another process's copy of the session goes on.
 * Async-signal-safe (used in the fork child handler). Returns 0 or a negative
 * errno (then fd is untouched).
 */
int fp_neutralize_fd(int fd);

#endif /* FORKPOOL_FDUTIL_H */
