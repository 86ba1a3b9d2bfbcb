/* SPDX-License-Identifier: MIT */
/*
 * myadopt.h — a real MYSQL * on an already-authenticated MySQL/MariaDB
 * socket, made by playing the server's part of the handshake with the
 * session's own values (myadopt.c says how). Used by libforkpool for
 * every lease and by forkpoold for the connections it gets back from
 * systemd's fd store.
 */
#ifndef FORKPOOL_MYADOPT_H
#define FORKPOOL_MYADOPT_H

#include <stddef.h>
#include <stdint.h>

#include <mysql.h>

#include "proto.h"

/*
 * The MariaDB extended capabilities this Connector/C asks for in every
 * handshake: all it supports (3.3), or its default set (3.4, which asks for
 * MARIADB_CLIENT_BULK_UNIT_RESULTS only when told to). A session's
 * negotiated extended capabilities are the server's & these.
 */
#ifdef CLIENT_DEFAULT_EXTENDED_FLAGS
#define FP_MY_CLIENT_EXT_FLAGS ((uint32_t)(CLIENT_DEFAULT_EXTENDED_FLAGS >> 32))
#else
#define FP_MY_CLIENT_EXT_FLAGS ((uint32_t)(MARIADB_CLIENT_SUPPORTED_FLAGS >> 32))
#endif

/* A MARIADB_OPT_STATUS_CALLBACK function. */
typedef void (*fp_my_status_fn)(void *data, enum enum_mariadb_status_info type, ...);

/*
 * Makes a MYSQL handle whose socket is real_fd: its handshake values
 * (version, thread id, capabilities, collation, status, scramble) are info's.
 * The handle is non-blocking-capable (MYSQL_OPT_NONBLOCK), never reconnects,
 * never uses TLS, and has status_cb (if not NULL) installed as its status
 * callback with status_data. On success real_fd is taken (closed; the
 * handle's socket is a close-on-exec duplicate) and *ret owns the handle; on
 * failure real_fd is untouched and, for a refusal or a library error, err
 * (errlen > 0) holds one line saying why (otherwise ""). Blocks for a few
 * local round trips (at most ~2 s per step if something is badly wrong).
 * Returns 0 or a negative errno (-EPROTO: refused). Serialised process-wide.
 */
int fp_my_adopt(int real_fd, const struct fp_lease_mysql *info, fp_my_status_fn status_cb,
                void *status_data, MYSQL **ret, char *err, size_t errlen);

/* In a child after fork: the module's lock starts unlocked. */
void fp_my_adopt_atfork_child(void);

/*
 * Closes this process's private adoption listener and removes its directory;
 * the next adoption opens a new one. For a process that adopts only now and
 * then (forkpoold, once it has restored its connections from the fd store).
 */
void fp_my_adopt_close_listener(void);

#endif /* FORKPOOL_MYADOPT_H */
