/* SPDX-License-Identifier: MIT */
/*
 * adoptsock.h — the private Unix listener an adoption module lets its client
 * library connect to (pgadopt.c, myadopt.c): a socket file in a fresh 0700
 * directory of this process, that no other uid can reach.
 */
#ifndef FORKPOOL_ADOPTSOCK_H
#define FORKPOOL_ADOPTSOCK_H

#include <stdbool.h>
#include <sys/types.h>
#include <sys/un.h>

#define FP_ADOPT_SOCK_PATH_MAX sizeof(((struct sockaddr_un *)0)->sun_path)

/*
 * One module's listener. Initialise with FP_ADOPT_LISTENER_INIT(".s.PGSQL.5432");
 * it belongs to the process (and euid) that opened it: after fork or a uid
 * change it is recreated on the next fp_adopt_listener_open(). Not locked: the
 * owning module serialises its use.
 */
struct fp_adopt_listener {
        int fd;
        pid_t pid;
        uid_t uid;
        bool registered;                   /* known to the exit-time cleanup */
        const char *sock_name;             /* the socket file's name inside dir */
        char dir[FP_ADOPT_SOCK_PATH_MAX];  /* the private directory ("" if none) */
        char path[FP_ADOPT_SOCK_PATH_MAX]; /* dir + "/" + sock_name */
};

/* (clang-format 14 and 19 lay out braces in a macro differently) */
/* clang-format off */
#define FP_ADOPT_LISTENER_INIT(name) {.fd = -1, .sock_name = (name)}
/* clang-format on */

/*
 * Makes sure l is a listening socket of this process at l->path. The first
 * call in a process (or after a uid change, or after fp_adopt_listener_reset)
 * creates a directory forkpool.<pid>.XXXXXX (mode 0700) under
 * $XDG_RUNTIME_DIR when that is a private directory of ours, else under
 * /tmp/forkpool-<uid> (0700, created if missing; /tmp itself if that name is
 * not ours), binds the socket in it and, once per process, removes such
 * directories that our uid left there for processes that no longer exist.
 * Later calls cost one getpid() and one geteuid(). Returns 0 or a negative
 * errno; on failure nothing is left behind (but /tmp/forkpool-<uid>) and l
 * is closed.
 */
int fp_adopt_listener_open(struct fp_adopt_listener *l);

/*
 * Closes the listener and removes its socket file and directory, so that the
 * next fp_adopt_listener_open() starts afresh (the recovery after any failed
 * adoption: a directory removed by a tmp cleaner, a broken or flooded
 * listener). In a child after fork it only forgets the parent's copy. Never
 * fails.
 */
void fp_adopt_listener_reset(struct fp_adopt_listener *l);

/*
 * Accepts the next connection made by this very process (SO_PEERCRED pid),
 * closing and skipping any other, waiting up to timeout_ms in all. The
 * returned socket is blocking and close-on-exec; the caller owns it.
 * Returns the socket, -ETIMEDOUT, or a negative errno.
 */
int fp_adopt_listener_accept(struct fp_adopt_listener *l, int timeout_ms);

#endif /* FORKPOOL_ADOPTSOCK_H */
