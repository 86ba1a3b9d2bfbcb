/* SPDX-License-Identifier: MIT */
/*
 * target.h — what an application's connection parameters ask for, as the
 * drop-in reads them: whether they address forkpool (a host that is the
 * directory of a forkpoold control socket), which pool, and whether the rest
 * can be honoured on a leased session.
 *
 * The rule: the effective host (the parameters, then $PGHOST) is one
 * absolute directory that holds a Unix socket named "forkpool.sock". Then
 * dbname (else $PGDATABASE, else the user name) names the pool. Every other
 * parameter is honoured, ignored or refused as the README's table says.
 */
#ifndef FORKPOOL_DROPIN_TARGET_H
#define FORKPOOL_DROPIN_TARGET_H

#include <stdbool.h>

#include "proto.h"

#define DROPIN_SOCKET_NAME "forkpool.sock"

struct dropin_target {
        char socket[108];         /* <host>/forkpool.sock */
        char host[96];            /* as asked: PQhost() */
        char port[16];            /* as asked, else "5432": PQport() */
        char hostaddr[64];        /* as asked (ignored): PQhostaddr() */
        char pool[FP_NAME_MAX];   /* dbname: PQdb() */
        char user[FP_IDENT_MAX];  /* as asked, "" if not given */
        char password[128];       /* as asked (ignored): PQpass() */
        char client_encoding[64]; /* to SET after the lease, "" for none */
        int timeout_ms;           /* connect_timeout as the acquire's timeout; -1: pool_timeout */
        char refusal[256];        /* why it cannot be honoured; "" if it can */
};

/*
 * Reads a conninfo string or URI (as PQconnectdb() takes it). Returns 1 if
 * it addresses forkpool (*ret filled; ret->refusal says if it must fail), 0
 * if it does not, or -EINVAL if libpq cannot parse it (the real libpq then
 * reports why).
 */
int dropin_target_from_conninfo(const char *conninfo, struct dropin_target *ret);

/*
 * The same for PQconnectdbParams()'s keyword/value arrays; with expand_dbname
 * a dbname that is itself a conninfo string or URI is expanded in place, as
 * libpq does.
 */
int dropin_target_from_params(const char *const *keywords, const char *const *values,
                              int expand_dbname, struct dropin_target *ret);

#endif /* FORKPOOL_DROPIN_TARGET_H */
