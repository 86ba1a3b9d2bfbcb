/* SPDX-License-Identifier: MIT */
/*
 * fdutil.c — replacing a descriptor by an unconnected socket (fdutil.h).
 */
#include "fdutil.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

int fp_neutralize_fd(int fd)
{
        int dummy = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (dummy < 0)
                return -errno;
        int r = dup3(dummy, fd, O_CLOEXEC) < 0 ? -errno : 0;
        close(dummy);
        return r;
}
