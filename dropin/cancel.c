/* SPDX-License-Identifier: MIT */
/*
 * cancel.c — the arena of the drop-in's PGcancel objects (cancel.h).
 */
#include "cancel.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

#include "pgcancel.h"

#define ARENA_OBJECTS 4096

struct dropin_cancel {
        struct sockaddr_storage addr;
        socklen_t addr_len;
        int32_t backend_pid;
        int32_t cancel_key;
        uint32_t next_free; /* index + 1 of the next free object, 0: none */
        /* A cell: the session running now, backend_pid << 32 | cancel_key, 0: none. */
        uint64_t live;
        struct dropin_cancel *cell; /* a transaction-mode object's cell, or NULL */
};

static pthread_mutex_t arena_lock = PTHREAD_MUTEX_INITIALIZER;
static struct dropin_cancel *arena; /* ARENA_OBJECTS objects, mapped once, never unmapped */
static uint32_t first_free;         /* index + 1, 0: none */
static uint32_t never_used;         /* objects below this index have been handed out once */

/* A free object of the arena (no cell, naming none), or NULL. Called with arena_lock held. */
static struct dropin_cancel *arena_take(void)
{
        struct dropin_cancel *c = NULL;
        if (!arena) {
                void *p = mmap(NULL, ARENA_OBJECTS * sizeof(*arena), PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (p != MAP_FAILED)
                        __atomic_store_n(&arena, (struct dropin_cancel *)p, __ATOMIC_RELEASE);
        }
        if (arena && first_free) {
                c = &arena[first_free - 1];
                first_free = c->next_free;
        } else if (arena && never_used < ARENA_OBJECTS) {
                c = &arena[never_used++];
        }
        if (c) {
                c->next_free = 0;
                c->cell = NULL;
                __atomic_store_n(&c->live, 0, __ATOMIC_RELAXED);
        }
        return c;
}

PGcancel *dropin_cancel_new(const struct fp_lease_pg *info)
{
        return dropin_cancel_new_for_cell(info, NULL);
}

PGcancel *dropin_cancel_new_for_cell(const struct fp_lease_pg *info,
                                     struct dropin_cancel_cell *cell)
{
        if (!info->has_cancel_key || info->server_addr_len == 0 ||
            info->server_addr_len > sizeof(info->server_addr))
                return NULL;
        pthread_mutex_lock(&arena_lock);
        struct dropin_cancel *c = arena_take();
        if (c) {
                memcpy(&c->addr, &info->server_addr, info->server_addr_len);
                c->addr_len = info->server_addr_len;
                c->backend_pid = info->backend_pid;
                c->cancel_key = info->cancel_key;
                c->cell = (struct dropin_cancel *)cell;
        }
        pthread_mutex_unlock(&arena_lock);
        return (PGcancel *)c;
}

struct dropin_cancel_cell *dropin_cancel_cell_new(void)
{
        pthread_mutex_lock(&arena_lock);
        struct dropin_cancel *c = arena_take();
        pthread_mutex_unlock(&arena_lock);
        return (struct dropin_cancel_cell *)c;
}

void dropin_cancel_cell_set(struct dropin_cancel_cell *cell, int32_t backend_pid,
                            int32_t cancel_key)
{
        struct dropin_cancel *c = (struct dropin_cancel *)cell;
        uint64_t v = backend_pid ? (uint64_t)(uint32_t)backend_pid << 32 | (uint32_t)cancel_key : 0;
        if (c)
                __atomic_store_n(&c->live, v, __ATOMIC_RELEASE);
}

void dropin_cancel_cell_free(struct dropin_cancel_cell *cell)
{
        dropin_cancel_cell_set(cell, 0, 0);
        if (cell)
                dropin_cancel_free((PGcancel *)cell);
}

bool dropin_cancel_is_ours(const PGcancel *cancel)
{
        const struct dropin_cancel *c = (const struct dropin_cancel *)cancel;
        struct dropin_cancel *base = __atomic_load_n(&arena, __ATOMIC_ACQUIRE);
        return base && c >= base && c < base + ARENA_OBJECTS;
}

/* Copies text into errbuf, truncated and terminated, without the C library's formatting. */
static void put_error(char *errbuf, int errbufsize, const char *text)
{
        if (!errbuf || errbufsize <= 0)
                return;
        int i = 0;
        for (; i < errbufsize - 1 && text[i]; i++)
                errbuf[i] = text[i];
        errbuf[i] = '\0';
}

bool dropin_cancel_target(const PGcancel *cancel, const struct sockaddr **addr, socklen_t *addr_len,
                          int32_t *backend_pid, int32_t *cancel_key)
{
        const struct dropin_cancel *c = (const struct dropin_cancel *)cancel;
        *addr = (const struct sockaddr *)&c->addr;
        *addr_len = c->addr_len;
        *backend_pid = c->backend_pid;
        *cancel_key = c->cancel_key;
        if (c->cell) {
                /* A transaction-mode connection: the session running now, if any. */
                uint64_t v = __atomic_load_n(&c->cell->live, __ATOMIC_ACQUIRE);
                if (!v)
                        return false;
                *backend_pid = (int32_t)(uint32_t)(v >> 32);
                *cancel_key = (int32_t)(uint32_t)v;
        }
        return true;
}

int dropin_cancel_send(const PGcancel *cancel, char *errbuf, int errbufsize)
{
        const struct sockaddr *addr;
        socklen_t addr_len;
        int32_t pid, key;
        if (!dropin_cancel_target(cancel, &addr, &addr_len, &pid, &key))
                return 1; /* nothing runs: nothing to cancel */
        int r = fp_pg_cancel_request(addr, addr_len, pid, key, DROPIN_CANCEL_TIMEOUT_MS);
        if (r == 0)
                return 1;
        put_error(errbuf, errbufsize,
                  r == -ECONNREFUSED || r == -ENOENT
                          ? "forkpool: could not connect to the server to cancel"
                          : "forkpool: could not send the cancel request to the server");
        return 0;
}

void dropin_cancel_atfork_child(void)
{
        /* A thread of the parent may have held it at fork; it is not here. */
        pthread_mutex_init(&arena_lock, NULL);
}

void dropin_cancel_free(PGcancel *cancel)
{
        struct dropin_cancel *c = (struct dropin_cancel *)cancel;
        pthread_mutex_lock(&arena_lock);
        c->next_free = first_free;
        first_free = (uint32_t)(c - arena) + 1;
        pthread_mutex_unlock(&arena_lock);
}
