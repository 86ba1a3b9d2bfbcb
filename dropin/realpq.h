/* SPDX-License-Identifier: MIT */
/*
 * realpq.h — the real libpq behind the drop-in.
 *
 * The drop-in is named libpq.so.5 and exports every symbol the real libpq
 * exports; the ones it does not replace are forwarders (forwarders.S,
 * generated from the real library's export table) that jump through a
 * pointer to the real function. Code of the drop-in calls the real libpq
 * through the same pointers, never through its own exported names (that
 * would re-enter the drop-in): FP_REAL(PQexec)(conn, sql). The worker code
 * compiled into the drop-in gets the same effect from realpq_redirect.h,
 * force-included, which turns every libpq name into its pointer.
 */
#ifndef FORKPOOL_REALPQ_H
#define FORKPOOL_REALPQ_H

#include <libpq-events.h>
#include <libpq-fe.h>

#include "realpq_loader.h"

#define FP_REAL(name)           (*fp_realpq_##name)
#define FP_REALPQ_DECLARE(name) extern __typeof__(name) *fp_realpq_##name

FP_REALPQ_DECLARE(PQconnectdb);
FP_REALPQ_DECLARE(PQconnectdbParams);
FP_REALPQ_DECLARE(PQsetdbLogin);
FP_REALPQ_DECLARE(PQconnectStart);
FP_REALPQ_DECLARE(PQconnectStartParams);
FP_REALPQ_DECLARE(PQconnectPoll);
FP_REALPQ_DECLARE(PQfinish);
FP_REALPQ_DECLARE(PQreset);
FP_REALPQ_DECLARE(PQresetStart);
FP_REALPQ_DECLARE(PQresetPoll);
FP_REALPQ_DECLARE(PQerrorMessage);
FP_REALPQ_DECLARE(PQgetCancel);
FP_REALPQ_DECLARE(PQfreeCancel);
FP_REALPQ_DECLARE(PQcancel);
FP_REALPQ_DECLARE(PQrequestCancel);
FP_REALPQ_DECLARE(PQhost);
FP_REALPQ_DECLARE(PQhostaddr);
FP_REALPQ_DECLARE(PQport);
FP_REALPQ_DECLARE(PQpass);
FP_REALPQ_DECLARE(PQconninfo);
FP_REALPQ_DECLARE(PQping);
FP_REALPQ_DECLARE(PQpingParams);
FP_REALPQ_DECLARE(PQconninfoParse);
FP_REALPQ_DECLARE(PQconninfoFree);
FP_REALPQ_DECLARE(PQstatus);
FP_REALPQ_DECLARE(PQsocket);
FP_REALPQ_DECLARE(PQparameterStatus);
FP_REALPQ_DECLARE(PQsetClientEncoding);
FP_REALPQ_DECLARE(PQregisterEventProc);
#ifdef LIBPQ_HAS_ASYNC_CANCEL
FP_REALPQ_DECLARE(PQcancelCreate);
FP_REALPQ_DECLARE(PQcancelStart);
FP_REALPQ_DECLARE(PQcancelBlocking);
FP_REALPQ_DECLARE(PQcancelPoll);
FP_REALPQ_DECLARE(PQcancelStatus);
FP_REALPQ_DECLARE(PQcancelSocket);
FP_REALPQ_DECLARE(PQcancelErrorMessage);
FP_REALPQ_DECLARE(PQcancelReset);
FP_REALPQ_DECLARE(PQcancelFinish);
#endif

#endif /* FORKPOOL_REALPQ_H */
