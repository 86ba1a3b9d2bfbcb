/* SPDX-License-Identifier: MIT */
/*
 * selfpid.h — this process's pid without a system call per question.
 *
 * glibc no longer caches getpid(), and the fork checks of a lease ask for it
 * several times per lease. The value is kept in a page the kernel wipes in
 * every child (MADV_WIPEONFORK), so that it is right after fork(), after a
 * raw clone() that ran no pthread_atfork handler, and in a child of a child,
 * with no handler to register. Where the kernel cannot wipe (before 4.14),
 * every call is a getpid().
 */
#ifndef FORKPOOL_SELFPID_H
#define FORKPOOL_SELFPID_H

#include <sys/types.h>

/* The calling process's pid, as getpid() returns it. Thread-safe, async-signal-safe once warm. */
pid_t fp_self_pid(void);

#endif /* FORKPOOL_SELFPID_H */
