/* SPDX-License-Identifier: MIT */
/*
 * sockio.c — one control message per call, descriptors handled safely.
 */
#include "sockio.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_FDS_ACCEPTED 4

int fp_send_msg(int sock, const void *buf, size_t len, int fd, int flags)
{
        struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
        union {
                char buf[CMSG_SPACE(sizeof(int))];
                struct cmsghdr align;
        } control;
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};

        if (fd >= 0) {
                memset(&control, 0, sizeof(control));
                msg.msg_control = control.buf;
                msg.msg_controllen = sizeof(control.buf);
                struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
                cmsg->cmsg_level = SOL_SOCKET;
                cmsg->cmsg_type = SCM_RIGHTS;
                cmsg->cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
        }

        for (;;) {
                ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL | flags);
                if (n >= 0)
                        return (size_t)n == len ? 0 : -EMSGSIZE;
                if (errno != EINTR)
                        return -errno;
        }
}

/* Closes every descriptor carried by msg's control data. */
static void close_received_fds(struct msghdr *msg)
{
        for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                        continue;
                size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < n; i++) {
                        int fd;
                        memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                        close(fd);
                }
        }
}

ssize_t fp_recv_msg(int sock, void *buf, size_t cap, int *ret_fd, int flags)
{
        struct iovec iov = {.iov_base = buf, .iov_len = cap};
        union {
                char buf[CMSG_SPACE(MAX_FDS_ACCEPTED * sizeof(int))];
                struct cmsghdr align;
        } control;
        struct msghdr msg = {.msg_iov = &iov,
                             .msg_iovlen = 1,
                             .msg_control = control.buf,
                             .msg_controllen = sizeof(control.buf)};
        ssize_t n;

        do
                n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | flags);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return -errno;

        int fd = -1, count = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                        count += (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                        if (fd < 0 && count > 0)
                                memcpy(&fd, CMSG_DATA(c), sizeof(int));
                }

        if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || count > 1 || (count > 0 && !ret_fd)) {
                close_received_fds(&msg);
                return -EBADMSG;
        }
        if (ret_fd)
                *ret_fd = fd;
        return n;
}

int fp_poll_fd(int fd, short events, int timeout_ms)
{
        struct pollfd p = {.fd = fd, .events = events};
        int n;
        do
                n = poll(&p, 1, timeout_ms);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return -errno;
        return n == 0 ? -ETIMEDOUT : (int)p.revents;
}

int fp_wait_fd(int fd, short events, int timeout_ms)
{
        int r = fp_poll_fd(fd, events, timeout_ms);
        return r < 0 ? r : 0;
}

int fp_write_full(int fd, const void *buf, size_t len)
{
        size_t done = 0;
        while (done < len) {
                ssize_t n = send(fd, (const char *)buf + done, len - done, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                done += (size_t)n;
        }
        return 0;
}

int fp_read_full(int fd, void *buf, size_t len, int timeout_ms)
{
        size_t done = 0;
        while (done < len) {
                ssize_t n = recv(fd, (char *)buf + done, len - done, MSG_DONTWAIT);
                if (n > 0) {
                        done += (size_t)n;
                        continue;
                }
                if (n == 0)
                        return -ECONNRESET;
                if (errno == EINTR)
                        continue;
                if (errno != EAGAIN)
                        return -errno;
                int r = fp_wait_fd(fd, POLLIN, timeout_ms);
                if (r < 0)
                        return r;
        }
        return 0;
}

int fp_connect_seqpacket(const char *path)
{
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        size_t len = strlen(path);

        if (len >= sizeof(addr.sun_path))
                return -ENAMETOOLONG;
        memcpy(addr.sun_path, path, len + 1);
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}
