/* SPDX-License-Identifier: MIT */
/*
 * consumer.c — a program built against an installed libforkpool
 * (tests/package/install_test.sh): once with pkg-config, once with CMake's
 * find_package(forkpool). It needs no supervisor. With WITH_LIBPQ it also
 * includes libpq-fe.h after forkpool.h, as a program that uses its leases
 * does: the two declarations of PGconn must agree.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <forkpool.h>
#ifdef WITH_LIBPQ
#include <libpq-fe.h>
#endif

int main(void)
{
        printf("forkpool %s %d\n", forkpool_version(), FORKPOOL_VERSION_NUMBER);
#ifdef WITH_LIBPQ
        PGconn *(*lease_pg)(forkpool_lease *) = forkpool_lease_pg;
        printf("libpq %d %s\n", PQlibVersion(), lease_pg ? "PGconn" : "");
#endif
        printf("%s\n", forkpool_strerror(-ETIMEDOUT));
        /* The header and the library it was found with are the same release. */
        return strcmp(forkpool_version(), FORKPOOL_VERSION_STRING) == 0 ? 0 : 1;
}
