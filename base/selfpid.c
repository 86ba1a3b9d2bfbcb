/* SPDX-License-Identifier: MIT */
/*
 * selfpid.c — the pid, cached in a page that forks wipe (selfpid.h).
 */
#include "selfpid.h"

#include <pthread.h>
#include <stddef.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#endif

static pthread_once_t page_once = PTHREAD_ONCE_INIT;
/* The cached pid (0: not known in this process yet), or NULL: no such page here. */
static pid_t *cached;

static void page_make(void)
{
        size_t size = (size_t)sysconf(_SC_PAGESIZE);
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
                return;
        if (madvise(p, size, MADV_WIPEONFORK) < 0) {
                munmap(p, size);
                return;
        }
        cached = p;
}

pid_t fp_self_pid(void)
{
        pthread_once(&page_once, page_make);
        if (!cached)
                return getpid();
        pid_t pid = __atomic_load_n(cached, __ATOMIC_RELAXED);
        if (pid == 0) {
                pid = getpid();
                __atomic_store_n(cached, pid, __ATOMIC_RELAXED);
        }
        return pid;
}
