/* SPDX-License-Identifier: MIT */
/*
 * sockwatch.c — an io source on a private duplicate of a client library's
 * socket (sockwatch.h).
 */
#include "sockwatch.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

/* Whether descriptors a and b are the same open socket (the same inode). */
static bool same_socket(int a, int b)
{
        struct stat sa, sb;
        return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
               sa.st_ino == sb.st_ino;
}

int fp_sockwatch_set(struct fp_sockwatch *w, sd_event *event, int lib_fd, uint32_t events,
                     bool enabled, sd_event_io_handler_t handler, void *userdata)
{
        int r;

        if (lib_fd < 0)
                return -EBADF;
        if (!w->io || !same_socket(w->fd, lib_fd)) {
                fp_sockwatch_free(w);
                int fd = fcntl(lib_fd, F_DUPFD_CLOEXEC, 3);
                if (fd < 0)
                        return -errno;
                r = sd_event_add_io(event, &w->io, fd, events, handler, userdata);
                if (r < 0) {
                        close(fd);
                        w->io = NULL;
                        return r;
                }
                w->fd = fd;
        } else {
                r = sd_event_source_set_io_events(w->io, events);
                if (r < 0)
                        return r;
        }
        return sd_event_source_set_enabled(w->io, enabled && events ? SD_EVENT_ON : SD_EVENT_OFF);
}

void fp_sockwatch_free(struct fp_sockwatch *w)
{
        if (!w->io)
                return;
        w->io = sd_event_source_disable_unref(w->io);
        close(w->fd);
        w->fd = -1;
}
