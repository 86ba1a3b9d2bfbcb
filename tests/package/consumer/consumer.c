/* SPDX-License-Identifier: MIT */
/*
 * consumer.c — a program built against an installed libforkpool
 * (tests/package/install_test.sh): once with pkg-config, once with CMake's
 * find_package(forkpool). It needs no supervisor.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <forkpool.h>

int main(void)
{
        printf("forkpool %s %d\n", forkpool_version(), FORKPOOL_VERSION_NUMBER);
        printf("%s\n", forkpool_strerror(-ETIMEDOUT));
        /* The header and the library it was found with are the same release. */
        return strcmp(forkpool_version(), FORKPOOL_VERSION_STRING) == 0 ? 0 : 1;
}
