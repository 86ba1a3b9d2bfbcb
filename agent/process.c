/* SPDX-License-Identifier: MIT */
/*
 * process.c — forkpoold's process set-up (process.h).
 */
#include "process.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

/*
 * user = NAME, started as root: becomes NAME (its groups included) before
 * anything is created, so that the socket, the segment and every connection
 * belong to it. The socket's directory is created for it if missing.
 */
int fp_process_drop_privileges(const struct fp_config *c)
{
        char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
        struct stat st;

        if (!c->run_user)
                return 0;
        if (geteuid() != 0) {
                if (geteuid() != c->run_uid)
                        log_warning("user = %s ignored: not started as root", c->run_user);
                return 0;
        }
        snprintf(dir, sizeof(dir), "%s", c->socket_path);
        char *slash = strrchr(dir, '/');
        if (slash && slash != dir) {
                *slash = '\0';
                if (stat(dir, &st) < 0 && errno == ENOENT) {
                        /* Never chown what a symlink planted after mkdir points to. */
                        if (mkdir(dir, 0755) < 0 || fchownat(AT_FDCWD, dir, c->run_uid, c->run_gid,
                                                             AT_SYMLINK_NOFOLLOW) < 0)
                                return log_error_errno(-errno, "cannot create %s for user %s", dir,
                                                       c->run_user);
                }
        }
        if (initgroups(c->run_user, c->run_gid) < 0 || setgid(c->run_gid) < 0 ||
            setuid(c->run_uid) < 0)
                return log_error_errno(-errno, "cannot become user %s", c->run_user);
        if (setuid(0) == 0)
                return log_error_errno(-EPERM, "still root after becoming %s", c->run_user);
        log_info("running as user %s (uid %u)", c->run_user, (unsigned)c->run_uid);
        return 0;
}

/*
 * Every control connection costs two descriptors (its socket and a pidfd),
 * so the usual soft limit of 1024 would let max_connections_per_uid
 * connections of one uid exhaust them: take up to FD_LIMIT_WANTED, as far
 * as the hard limit allows (forkpoold uses epoll and poll, never select, and
 * starts no children).
 */
#define FD_LIMIT_WANTED 65536

void fp_process_raise_fd_limit(void)
{
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return;
        rlim_t want = rl.rlim_max < FD_LIMIT_WANTED ? rl.rlim_max : FD_LIMIT_WANTED;
        if (rl.rlim_cur >= want)
                return;
        rlim_t old = rl.rlim_cur;
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                log_debug("cannot raise the descriptor limit from %llu: %s",
                          (unsigned long long)old, strerror(errno));
        else
                log_debug("descriptor limit raised from %llu to %llu", (unsigned long long)old,
                          (unsigned long long)rl.rlim_cur);
}
