/* SPDX-License-Identifier: MIT */
/*
 * pgcancel.c — sending a CancelRequest (pgcancel.h).
 */
#include "pgcancel.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <unistd.h>

void fp_pg_cancel_packet(uint32_t packet[4], int32_t backend_pid, int32_t cancel_key)
{
        packet[0] = htonl(16);
        packet[1] = htonl(FP_PG_CANCEL_REQUEST_CODE);
        packet[2] = htonl((uint32_t)backend_pid);
        packet[3] = htonl((uint32_t)cancel_key);
}

int fp_pg_cancel_request(const struct sockaddr *addr, socklen_t addr_len, int32_t backend_pid,
                         int32_t cancel_key, int timeout_ms)
{
        uint32_t packet[4];
        size_t done = 0;
        int fd, r = 0;

        fp_pg_cancel_packet(packet, backend_pid, cancel_key);

        fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, addr, addr_len) < 0)
                r = -errno;
        while (r == 0 && done < sizeof(packet)) {
                ssize_t n =
                        send(fd, (const char *)packet + done, sizeof(packet) - done, MSG_NOSIGNAL);
                if (n < 0 && errno != EINTR)
                        r = -errno;
                else if (n > 0)
                        done += (size_t)n;
        }
        if (r == 0) {
                /* The server closes the connection once it has handled the request. */
                struct pollfd p = {.fd = fd, .events = POLLIN};
                char byte;
                if (poll(&p, 1, timeout_ms) > 0)
                        (void)recv(fd, &byte, 1, 0);
        }
        close(fd);
        return r;
}
