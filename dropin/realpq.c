/* SPDX-License-Identifier: MIT */
/*
 * realpq.c — loading the real libpq and pointing the forwarders at it
 * (realpq.h).
 *
 * This file deliberately does not include libpq-fe.h: it sees each pointer
 * as a plain void * (the generated list names functions and data objects
 * alike), which is all the loader needs.
 */
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "realpq_loader.h"

#ifndef FP_REAL_LIBPQ
#error "FP_REAL_LIBPQ (the real libpq's path) must be defined by the build"
#endif

#define FP_REALPQ_FUNC(name)                                                                       \
        extern void fp_missing_##name(void) __attribute__((visibility("hidden")));                 \
        extern void *fp_realpq_##name __attribute__((visibility("hidden")));
#define FP_REALPQ_DATA(name, size) extern unsigned char name[size];
#include "realpq_syms.h"
#undef FP_REALPQ_FUNC
#undef FP_REALPQ_DATA

/* Called by the generated stubs (forwarders.S, lazy.S). */
void fp_realpq_lazy_load(void) __attribute__((visibility("hidden")));
long fp_realpq_missing(const char *name) __attribute__((visibility("hidden")));

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static void *real_handle;
static const char *real_path_used = FP_REAL_LIBPQ;
static atomic_int missing_reports;

static void load(void)
{
        /*
         * The build's libpq, or another one for an unusual installation (ignored
         * in setuid programs; the loader ignores the drop-in there anyway).
         */
        const char *path = secure_getenv("FORKPOOL_REAL_LIBPQ");
        if (path && *path)
                real_path_used = path;
        real_handle = dlopen(real_path_used, RTLD_NOW | RTLD_LOCAL);
        if (!real_handle)
                fprintf(stderr, "forkpool: the libpq drop-in cannot load the real libpq: %s\n",
                        dlerror());
        void *p;
#define FP_REALPQ_FUNC(name)                                                                       \
        p = real_handle ? dlsym(real_handle, #name) : NULL;                                        \
        fp_realpq_##name = p ? p : (void *)fp_missing_##name;
#define FP_REALPQ_DATA(name, size)                                                                 \
        p = real_handle ? dlsym(real_handle, #name) : NULL;                                        \
        if (p)                                                                                     \
                memcpy(name, p, size);
#include "realpq_syms.h"
#undef FP_REALPQ_FUNC
#undef FP_REALPQ_DATA
}

void fp_realpq_load(void)
{
        pthread_once(&load_once, load);
}

void fp_realpq_lazy_load(void)
{
        fp_realpq_load();
}

long fp_realpq_missing(const char *name)
{
        /* A handful of reports say enough; a loop calling it must not flood stderr. */
        if (atomic_fetch_add(&missing_reports, 1) < 16)
                fprintf(stderr,
                        "forkpool: the real libpq (%s) has no %s(); the drop-in fails the call\n",
                        real_path_used, name);
        errno = ENOSYS;
        return 0;
}

const char *fp_realpq_path(void)
{
        fp_realpq_load();
        return real_path_used;
}

bool fp_realpq_loaded(void)
{
        fp_realpq_load();
        return real_handle != NULL;
}

bool fp_dropin_enabled(void)
{
        static int enabled = -1; /* computed once; a race computes the same answer */
        if (enabled < 0) {
                const char *off = getenv("FORKPOOL_DROPIN");
                enabled = fp_realpq_loaded() &&
                          strcmp(program_invocation_short_name, "forkpoold") != 0 &&
                          !(off && (strcmp(off, "off") == 0 || strcmp(off, "0") == 0));
        }
        return enabled;
}

/* This library's and the real libpq's resolved paths, found once. */
static pthread_once_t paths_once = PTHREAD_ONCE_INIT;
static char self_path[4096], real_path[4096];

static void paths_load(void)
{
        Dl_info info;
        if (!dladdr((void *)fp_realpq_other_copy, &info) || !info.dli_fname ||
            !realpath(info.dli_fname, self_path))
                self_path[0] = '\0';
        if (!realpath(fp_realpq_path(), real_path))
                real_path[0] = '\0';
}

static int find_other_copy(struct dl_phdr_info *info, size_t size, void *data)
{
        char *found = data;
        char resolved[4096];
        (void)size;
        const char *name = info->dlpi_name;
        if (!name || !*name)
                return 0;
        const char *base = strrchr(name, '/');
        base = base ? base + 1 : name;
        if (strncmp(base, "libpq", 5) != 0 || (base[5] != '.' && base[5] != '-'))
                return 0;
        if (strcmp(name, real_path_used) == 0 || strcmp(name, self_path) == 0 ||
            strcmp(name, real_path) == 0)
                return 0;
        /* Only a name we do not know yet costs a path resolution. */
        if (realpath(name, resolved) &&
            (strcmp(resolved, self_path) == 0 || strcmp(resolved, real_path) == 0))
                return 0;
        snprintf(found, 256, "%s", name);
        return 1;
}

const char *fp_realpq_other_copy(void)
{
        static __thread char found[256];
        pthread_once(&paths_once, paths_load);
        if (!self_path[0] || !real_path[0])
                return NULL;
        return dl_iterate_phdr(find_other_copy, found) ? found : NULL;
}

/* Before the application's constructors, so that even they find a loaded libpq. */
__attribute__((constructor(101))) static void realpq_init(void)
{
        fp_realpq_load();
}
