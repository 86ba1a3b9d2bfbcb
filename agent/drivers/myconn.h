/* SPDX-License-Identifier: MIT */
/*
 * myconn.h — what the fd store needs of the supervisor's MySQL/MariaDB
 * connections beyond fp_my_driver (driver.h): describing a connection without
 * touching its lease bookkeeping, and wrapping a restored one.
 */
#ifndef FORKPOOL_MYCONN_H
#define FORKPOOL_MYCONN_H

#include <stdbool.h>
#include <stdint.h>

#include <mysql.h>
#include <systemd/sd-event.h>

#include "proto.h"

/*
 * Fills *ret with conn's session as the next lease would hand it over and
 * *ret_txn with its enum fp_txn; unlike fp_my_driver's describe(), it does
 * not count as handing the connection out.
 */
void fp_myconn_describe(const void *conn, struct fp_lease_mysql *ret, uint32_t *ret_txn);

/*
 * Wraps m, a handle adopted (fp_my_adopt) on a session a previous supervisor
 * opened (the fd store), as a connection of the pool whose fp_my_driver
 * prepare() made prepared, with that session's saved values (info). leased:
 * a worker holds it (cancel and a hard close then KILL its thread). The
 * connection is ready for fp_my_driver's reset, exec, cancel and close like a
 * freshly connected one. Returns 0 and the connection in *ret, or -ENOMEM (m
 * untouched).
 */
int fp_myconn_restore(sd_event *event, void *prepared, MYSQL *m, const struct fp_lease_mysql *info,
                      bool leased, void **ret);

#endif /* FORKPOOL_MYCONN_H */
