/* SPDX-License-Identifier: MIT */
/*
 * pool.c — pool accounting and the record state machine (pool.h).
 *
 * Every public entry point ends with fp_pool_publish(), so the segment is
 * true whenever the event loop is idle; where a worker is answered, the
 * segment is published first, so that what it reads there already counts
 * its own lease or timeout.
 */
#include "pool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Recycle jitter: a connection's lifetime is shortened by up to 1/40 (2.5 %). */
#define RECYCLE_JITTER_DIVISOR 40

/* What a waiter hears when its connect or ping ends in a pool that is closing. */
#define POOL_CLOSING_TEXT "the pool is closing"

/* 64-bit words of a bitmap of n records. */
#define UNUSED_WORDS(n) (((n) + 63) / 64)

static uint64_t realtime_usec(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t now(struct fp_pool *pool)
{
        return pool->ops->now(pool);
}

static void emit(struct fp_pool *pool, enum fp_event_type type, const struct fp_record *rec,
                 pid_t pid, uint64_t duration_usec, int error)
{
        if (pool->ops->event)
                pool->ops->event(pool, type, rec, pid, duration_usec, error);
}

/* The sizes a pool class forces: null is unbounded, static and assertion hold one. */
static void apply_class_sizes(struct fp_pool *pool)
{
        const struct fp_pool_params *p = &pool->params;

        switch (p->pool_class) {
        case FP_POOL_NULL:
                pool->pool_size = 0;
                pool->max_overflow = -1;
                break;
        case FP_POOL_STATIC:
        case FP_POOL_ASSERTION:
                pool->pool_size = 1;
                pool->max_overflow = 0;
                break;
        case FP_POOL_PROCESS:
                pool->pool_size = p->pool_size;
                pool->max_overflow = 0;
                break;
        default:
                pool->pool_size = p->pool_size;
                pool->max_overflow = p->pool_size == 0 ? -1 : p->max_overflow;
        }
}

/* The deadline heap's order: earliest deadline first, then first come first. */
static bool waiter_deadline_less(const void *a, const void *b)
{
        const struct fp_waiter *x = a, *y = b;
        return x->deadline_usec != y->deadline_usec ? x->deadline_usec < y->deadline_usec
                                                    : x->seq < y->seq;
}

static void waiter_set_heap_index(void *w, size_t index)
{
        ((struct fp_waiter *)w)->heap_index = index;
}

static void record_mark_dirty(struct fp_pool *pool, struct fp_record *rec)
{
        if (!rec->dirty) {
                rec->dirty = true;
                pool->dirty[pool->n_dirty++] = rec->index;
        }
}

int fp_pool_init(struct fp_pool *pool, const struct fp_pool_params *params,
                 const struct fp_pool_ops *ops, void *userdata)
{
        memset(pool, 0, sizeof(*pool));
        pool->params = *params;
        pool->ops = ops;
        pool->userdata = userdata;
        apply_class_sizes(pool);
        pool->overflow = -pool->pool_size;
        pool->capacity = FP_SHM_MAX_SLOTS_PER_POOL;
        TAILQ_INIT(&pool->waiters);
        fp_heap_init(&pool->deadlines, waiter_deadline_less, waiter_set_heap_index);

        pool->records = calloc(pool->capacity, sizeof(*pool->records));
        TAILQ_INIT(&pool->queue);
        pool->dirty = calloc(pool->capacity, sizeof(*pool->dirty));
        pool->unused = calloc(UNUSED_WORDS(pool->capacity), sizeof(*pool->unused));
        if (!pool->records || !pool->dirty || !pool->unused) {
                free(pool->records);
                free(pool->dirty);
                free(pool->unused);
                return -ENOMEM;
        }
        for (uint32_t i = 0; i < pool->capacity; i++) {
                pool->records[i] =
                        (struct fp_record){.pool = pool, .index = i, .state = FP_SLOT_UNUSED};
                pool->unused[i / 64] |= UINT64_C(1) << (i % 64);
        }
        return 0;
}

void fp_pool_done(struct fp_pool *pool)
{
        struct fp_waiter *w;
        while ((w = TAILQ_FIRST(&pool->waiters))) {
                TAILQ_REMOVE(&pool->waiters, w, link);
                free(w);
        }
        fp_heap_done(&pool->deadlines);
        free(pool->records);
        free(pool->dirty);
        free(pool->unused);
        memset(pool, 0, sizeof(*pool));
}

void fp_pool_attach_shm(struct fp_pool *pool, struct fp_shm_pool *shm, struct fp_shm_slot *slots)
{
        pool->shm = shm;
        pool->shm_slots = slots;
        for (uint32_t i = 0; i < pool->capacity; i++)
                record_mark_dirty(pool, &pool->records[i]);
        fp_pool_publish(pool);
}

static void histogram_add(struct fp_shm_histogram *h, uint64_t usec)
{
        size_t i = 0;
        while (i < FP_SHM_HIST_BOUNDS && usec > fp_shm_hist_bounds_usec[i])
                i++;
        h->count[i]++;
        h->sum_usec += usec;
}

/* --- the idle queue Q: a list of records, taken FIFO or LIFO --- */

static void queue_push(struct fp_pool *pool, struct fp_record *rec)
{
        TAILQ_INSERT_TAIL(&pool->queue, rec, queue_link);
        pool->queue_len++;
        rec->in_queue = true;
}

static void queue_remove(struct fp_pool *pool, struct fp_record *rec)
{
        TAILQ_REMOVE(&pool->queue, rec, queue_link);
        pool->queue_len--;
        rec->in_queue = false;
}

static struct fp_record *queue_pop(struct fp_pool *pool)
{
        struct fp_record *rec = pool->params.use_lifo ? TAILQ_LAST(&pool->queue, fp_record_queue)
                                                      : TAILQ_FIRST(&pool->queue);
        if (rec)
                queue_remove(pool, rec);
        return rec;
}

bool fp_pool_has_idle_connection(const struct fp_pool *pool)
{
        const struct fp_record *rec = pool->params.use_lifo
                                              ? TAILQ_LAST(&pool->queue, fp_record_queue)
                                              : TAILQ_FIRST(&pool->queue);
        return rec && rec->conn;
}

/*
 * The idle record w would like back (affinity): the one of its last lease, if
 * it is in Q with its connection and nobody has leased it since. O(1).
 */
static struct fp_record *queue_take_preferred(struct fp_pool *pool, const struct fp_waiter *w)
{
        uint64_t id = w->prefer_lease_id;
        if (!id || !pool->params.affinity || fp_lease_id_pool(id) != pool->lease_tag)
                return NULL;
        uint32_t index = (uint32_t)(id >> 32) & 0xffff;
        if (index >= pool->capacity)
                return NULL;
        struct fp_record *rec = &pool->records[index];
        if (!rec->in_queue || !rec->conn || (uint32_t)rec->lease_generation != (uint32_t)id)
                return NULL;
        queue_remove(pool, rec);
        return rec;
}

static void record_set_state(struct fp_pool *pool, struct fp_record *rec, enum fp_slot_state state)
{
        uint64_t bit = UINT64_C(1) << (rec->index % 64);
        rec->state = state;
        if (state == FP_SLOT_UNUSED) {
                pool->unused[rec->index / 64] |= bit;
        } else {
                pool->unused[rec->index / 64] &= ~bit;
                if (rec->index >= pool->records_end)
                        pool->records_end = rec->index + 1;
        }
        record_mark_dirty(pool, rec);
}

/*
 * The unused record with the lowest index, made CONNECTING, or NULL: a look
 * at one bit word per 64 records (the unused bitmap), not at each record.
 */
static struct fp_record *record_alloc(struct fp_pool *pool)
{
        for (uint32_t word = 0; word < UNUSED_WORDS(pool->capacity); word++)
                if (pool->unused[word]) {
                        uint32_t i = word * 64 + (uint32_t)__builtin_ctzll(pool->unused[word]);
                        if (i >= pool->capacity)
                                return NULL;
                        struct fp_record *rec = &pool->records[i];
                        uint64_t lease_generation = rec->lease_generation;
                        bool dirty = rec->dirty;
                        *rec = (struct fp_record){.pool = pool,
                                                  .index = i,
                                                  .lease_generation = lease_generation,
                                                  .new_record = true,
                                                  .dirty = dirty};
                        record_set_state(pool, rec, FP_SLOT_CONNECTING);
                        return rec;
                }
        return NULL;
}

/* Closes rec's connection (if any); the record stays, empty. */
static void record_close(struct fp_pool *pool, struct fp_record *rec, enum fp_close_mode mode)
{
        if (rec->conn) {
                emit(pool, FP_EV_CLOSE, rec, rec->holder_pid, now(pool) - rec->connected_at, 0);
                pool->ops->close(pool, rec, mode);
                pool->counters.closes++;
                pool->n_live--;
                rec->conn = NULL;
        }
        rec->backend_pid = 0;
        record_set_state(pool, rec, FP_SLOT_EMPTY);
}

/* Hard invalidation: the invalidate event, then a close that cuts every copy. */
static void record_invalidate(struct fp_pool *pool, struct fp_record *rec, int error)
{
        pool->counters.invalidations++;
        emit(pool, FP_EV_INVALIDATE, rec, rec->holder_pid, 0, error);
        record_close(pool, rec, FP_CLOSE_HARD);
}

/* Forgets a record: it no longer counts, and O goes down by one. */
static void record_discard(struct fp_pool *pool, struct fp_record *rec)
{
        record_close(pool, rec, FP_CLOSE_CLEAN);
        rec->holder = NULL;
        rec->holder_pid = 0;
        record_set_state(pool, rec, FP_SLOT_UNUSED);
        pool->overflow--;
}

static bool can_create(const struct fp_pool *pool)
{
        return pool->max_overflow == -1 || pool->overflow < pool->max_overflow;
}

/* Whether an idle live record must be replaced before a checkout (recycle, generation). */
static bool record_is_stale(struct fp_pool *pool, const struct fp_record *rec)
{
        return rec->generation < pool->generation || now(pool) >= rec->recycle_at;
}

/* When a connection made now must be recycled: pool_recycle less up to 2.5 % jitter. */
static uint64_t recycle_deadline(struct fp_pool *pool, uint64_t connected_at)
{
        if (pool->params.recycle_ms < 0)
                return UINT64_MAX;
        uint64_t life = (uint64_t)pool->params.recycle_ms * 1000u;
        uint64_t span = life / RECYCLE_JITTER_DIVISOR;
        if (span > 0 && pool->ops->random)
                life -= pool->ops->random(pool) % (span + 1);
        return connected_at + life;
}

/* --- waiters --- */

/* Frees w, which is no longer queued nor anyone's connecting_for. */
static void waiter_free(struct fp_pool *pool, struct fp_waiter *w)
{
        if (w->client_list)
                TAILQ_REMOVE(w->client_list, w, client_link);
        if (pool->ops->waiter_done)
                pool->ops->waiter_done(pool, w);
        free(w);
}

/* Queues w last. Its heap slot was reserved by fp_pool_acquire(): this cannot fail. */
static void waiter_insert(struct fp_pool *pool, struct fp_waiter *w)
{
        w->seq = ++pool->waiter_seq;
        TAILQ_INSERT_TAIL(&pool->waiters, w, link);
        (void)fp_heap_push(&pool->deadlines, w);
        pool->n_waiting++;
}

static void waiter_remove(struct fp_pool *pool, struct fp_waiter *w)
{
        TAILQ_REMOVE(&pool->waiters, w, link);
        (void)fp_heap_remove(&pool->deadlines, w->heap_index);
        pool->n_waiting--;
}

uint64_t fp_pool_next_deadline(const struct fp_pool *pool)
{
        const struct fp_waiter *w = fp_heap_peek(&pool->deadlines);
        return w ? w->deadline_usec : UINT64_MAX;
}

static void deadline_changed(struct fp_pool *pool)
{
        if (pool->ops->deadline_changed)
                pool->ops->deadline_changed(pool, fp_pool_next_deadline(pool));
}

/* Answers w with an error and frees it (it is no longer queued). */
static void fail_waiter(struct fp_pool *pool, struct fp_waiter *w, int error, const char *text)
{
        fp_pool_publish(pool);
        pool->ops->send_error(pool, w, error, text);
        waiter_free(pool, w);
}

/* Takes w out of the queue and answers it with SQLAlchemy's timeout error. */
static void expire_waiter(struct fp_pool *pool, struct fp_waiter *w)
{
        char text[160];

        waiter_remove(pool, w);
        pool->counters.timeouts++;
        emit(pool, FP_EV_TIMEOUT, NULL, w->pid, now(pool) - w->start_usec, -ETIMEDOUT);
        snprintf(text, sizeof(text),
                 "QueuePool limit of size %d overflow %d reached, connection timed out, "
                 "timeout %.2f",
                 pool->pool_size, fp_pool_overflow(pool),
                 (double)(w->deadline_usec - w->start_usec) / 1e6);
        fail_waiter(pool, w, -ETIMEDOUT, text);
}

/* --- checkout, checkin --- */

static void checkin(struct fp_pool *pool, struct fp_record *rec);

/* Hands rec (live, out of Q) to w, which is no longer queued. Frees w. */
static void lease_to(struct fp_pool *pool, struct fp_record *rec, struct fp_waiter *w)
{
        rec->lease_generation++;
        rec->holder = w->client;
        rec->holder_pid = w->pid;
        rec->fresh = false;
        rec->leak_reported = false;
        rec->leased_at = now(pool);
        rec->last_checkout_usec = realtime_usec();
        memcpy(rec->label, w->label, sizeof(rec->label));
        rec->pin_reasons = 0;
        record_set_state(pool, rec, FP_SLOT_LEASED);

        /* Readers of the segment see the lease by the time the worker has it. */
        pool->counters.acquires++;
        histogram_add(&pool->wait_hist, rec->leased_at - w->start_usec);
        emit(pool, FP_EV_CHECKOUT, rec, w->pid, rec->leased_at - w->start_usec, 0);
        fp_pool_publish(pool);
        int r = pool->ops->send_lease(pool, rec, w);
        waiter_free(pool, w);
        if (r < 0) {
                /*
                 * The fd never left: the connection is intact and unused. The
                 * next waiter gets it from the running dispatch() loop (checkin
                 * only asks for another round), so a long run of undeliverable
                 * leases costs no stack.
                 */
                pool->counters.acquires--;
                record_set_state(pool, rec, FP_SLOT_IDLE);
                checkin(pool, rec);
        }
}

/* Starts a connect in rec (new, or empty from Q) for w. */
static void connect_for(struct fp_pool *pool, struct fp_record *rec, struct fp_waiter *w)
{
        record_set_state(pool, rec, FP_SLOT_CONNECTING);
        rec->connecting_for = w;
        pool->ops->connect(pool, rec);
}

/*
 * Serves w with rec, taken from Q: replaced first if stale or soft
 * invalidated, pinged first if pre_ping and used before.
 */
static void checkout_idle(struct fp_pool *pool, struct fp_record *rec, struct fp_waiter *w)
{
        if (!rec->conn) {
                connect_for(pool, rec, w);
                return;
        }
        if (record_is_stale(pool, rec)) {
                pool->counters.recycles++;
                emit(pool, FP_EV_RECYCLE, rec, w->pid, now(pool) - rec->connected_at, 0);
                record_close(pool, rec, FP_CLOSE_CLEAN);
                connect_for(pool, rec, w);
                return;
        }
        if (pool->params.pre_ping && !rec->fresh) {
                pool->counters.pings++;
                record_set_state(pool, rec, FP_SLOT_CHECKING);
                rec->connecting_for = w;
                pool->ops->ping(pool, rec);
                return;
        }
        lease_to(pool, rec, w);
}

/*
 * Serves queued waiters, first come first served, while there is an idle
 * record or room for a new one. Never recursive: serving a waiter can check a
 * record back in (a lease that could not be sent, a connect that failed at
 * once), which calls dispatch() again; that nested call only asks the running
 * loop for another round.
 */
static void dispatch(struct fp_pool *pool)
{
        struct fp_waiter *w;

        if (pool->dispatching) {
                pool->dispatch_again = true;
                return;
        }
        pool->dispatching = true;
        do {
                pool->dispatch_again = false;
                while (!pool->closing && !pool->paused && (w = TAILQ_FIRST(&pool->waiters))) {
                        struct fp_record *rec = queue_take_preferred(pool, w);
                        if (!rec)
                                rec = queue_pop(pool);
                        if (rec) {
                                waiter_remove(pool, w);
                                checkout_idle(pool, rec, w);
                                continue;
                        }
                        if (!can_create(pool) || !(rec = record_alloc(pool)))
                                break;
                        pool->overflow++;
                        waiter_remove(pool, w);
                        connect_for(pool, rec, w);
                }
        } while (pool->dispatch_again);
        pool->dispatching = false;
        deadline_changed(pool);
}

/* Puts rec back into Q, or discards it when Q is full (overflow); then serves waiters. */
static void checkin(struct fp_pool *pool, struct fp_record *rec)
{
        uint64_t held = rec->holder ? now(pool) - rec->leased_at : 0;
        if (rec->holder)
                histogram_add(&pool->hold_hist, held);
        emit(pool, FP_EV_CHECKIN, rec, rec->holder_pid, held, 0);
        rec->holder = NULL;
        rec->holder_pid = 0;
        rec->label[0] = '\0';
        rec->pin_reasons = 0;
        if (pool->closing || pool->params.pool_class == FP_POOL_NULL ||
            (pool->pool_size > 0 && pool->queue_len >= (uint32_t)pool->pool_size)) {
                record_discard(pool, rec);
        } else {
                if (rec->conn && rec->generation < pool->generation)
                        record_close(pool, rec, FP_CLOSE_CLEAN); /* not to be reused */
                record_set_state(pool, rec, rec->conn ? FP_SLOT_IDLE : FP_SLOT_EMPTY);
                queue_push(pool, rec);
        }
        dispatch(pool);
}

/* The holder of an assertion pool's connection, if it is out (for the error text). */
static const struct fp_record *assertion_holder(const struct fp_pool *pool)
{
        for (uint32_t i = 0; i < pool->records_end; i++) {
                const struct fp_record *rec = &pool->records[i];
                if (rec->state != FP_SLOT_UNUSED && rec->state != FP_SLOT_IDLE &&
                    rec->state != FP_SLOT_EMPTY)
                        return rec;
        }
        return NULL;
}

int fp_pool_acquire(struct fp_pool *pool, void *client, pid_t pid, uint32_t request_id,
                    int timeout_ms, const char *label, uint64_t prefer_lease_id)
{
        struct fp_waiter *w = calloc(1, sizeof(*w));
        uint64_t start = now(pool);

        if (!w || fp_heap_reserve(&pool->deadlines, 1) < 0) {
                free(w);
                return -ENOMEM;
        }
        if (timeout_ms < 0)
                timeout_ms = pool->params.timeout_ms;
        *w = (struct fp_waiter){
                .pool = pool,
                .client = client,
                .pid = pid,
                .request_id = request_id,
                .start_usec = start,
                .deadline_usec = start + (uint64_t)timeout_ms * 1000u,
                .heap_index = FP_HEAP_NONE,
                .prefer_lease_id = prefer_lease_id,
        };
        if (pool->ops->client_waiters) {
                w->client_list = pool->ops->client_waiters(pool, client);
                TAILQ_INSERT_TAIL(w->client_list, w, client_link);
        }
        if (label) {
                /* The label goes into logs and forkpoolctl: no control characters. */
                snprintf(w->label, sizeof(w->label), "%s", label);
                for (char *c = w->label; *c; c++)
                        if ((unsigned char)*c < 0x20 || *c == 0x7f)
                                *c = '?';
        }

        /* AssertionPool: a second checkout is an error at once, naming the holder. */
        const struct fp_record *held;
        if (pool->params.pool_class == FP_POOL_ASSERTION && (held = assertion_holder(pool))) {
                char text[160];
                snprintf(text, sizeof(text), "connection is already checked out by pid %d%s%s",
                         (int)held->holder_pid, held->label[0] ? " as " : "", held->label);
                fail_waiter(pool, w, -EBUSY, text);
                return 0;
        }

        waiter_insert(pool, w);
        uint64_t seq = w->seq;
        dispatch(pool);

        /*
         * Timeout 0: served now or not at all, even behind other waiters. w was
         * queued last and dispatch() serves from the head: it is still queued
         * if and only if the last waiter is still the one with its number (w
         * itself may have been served and freed; it is not looked at).
         */
        struct fp_waiter *last = TAILQ_LAST(&pool->waiters, fp_waiter_list);
        if (timeout_ms == 0 && last && last->seq == seq) {
                expire_waiter(pool, last);
                deadline_changed(pool);
        }
        fp_pool_publish(pool);
        return 0;
}

struct fp_record *fp_pool_find_lease(struct fp_pool *pool, uint64_t lease_id)
{
        uint32_t index = (uint32_t)(lease_id >> 32) & 0xffff;
        if (fp_lease_id_pool(lease_id) != pool->lease_tag || index >= pool->capacity)
                return NULL;
        struct fp_record *rec = &pool->records[index];
        if (rec->state != FP_SLOT_LEASED || fp_record_lease_id(pool, rec) != lease_id)
                return NULL;
        return rec;
}

/* Moves the generation on unless rec is already older than it (a stale reporter). */
static void invalidate_pool_from(struct fp_pool *pool, const struct fp_record *rec)
{
        if (rec->generation == pool->generation)
                fp_pool_invalidate_all(pool);
}

/*
 * A lease restored from the fd store, by the id the previous supervisor gave
 * it (its pool's lease tag is another now), held by client or, if no control
 * connection claimed it yet, by process pid.
 */
static struct fp_record *find_restored(struct fp_pool *pool, uint64_t lease_id, void *client,
                                       pid_t pid)
{
        uint32_t index = (uint32_t)(lease_id >> 32) & 0xffff;
        if (index >= pool->capacity)
                return NULL;
        struct fp_record *rec = &pool->records[index];
        if (!rec->restored || rec->state != FP_SLOT_LEASED || rec->restored_lease_id != lease_id)
                return NULL;
        if (rec->holder != client && !(rec->holder == NULL && rec->holder_pid == pid))
                return NULL;
        return rec;
}

int fp_pool_release(struct fp_pool *pool, void *client, pid_t pid, uint64_t lease_id,
                    const struct fp_release_info *info)
{
        struct fp_record *rec = fp_pool_find_lease(pool, lease_id);
        if (rec && rec->holder != client &&
            !(rec->restored && !rec->holder && rec->holder_pid == pid))
                rec = NULL;
        if (!rec)
                rec = find_restored(pool, lease_id, client, pid);
        if (!rec)
                return -ESRCH;
        rec->restored = false;
        rec->holder = client;

        pool->counters.releases++;
        uint32_t f = info->flags;
        if (f & FP_RELEASE_DETACH) {
                /* The worker keeps the session (detach); the slot's capacity is free at once. */
                pool->counters.detaches++;
                emit(pool, FP_EV_DETACH, rec, rec->holder_pid, now(pool) - rec->leased_at, 0);
                record_close(pool, rec, FP_CLOSE_FORGET);
        } else if (f & FP_RELEASE_DISCONNECTED) {
                /* The server went away: this and every older connection are done. */
                record_invalidate(pool, rec, -ECONNRESET);
                invalidate_pool_from(pool, rec);
        } else if (f & (FP_RELEASE_INVALIDATE | FP_RELEASE_NOT_AT_BOUNDARY)) {
                record_invalidate(pool, rec, 0);
        } else if (f & FP_RELEASE_SOFT_INVALIDATE) {
                pool->counters.soft_invalidations++;
                emit(pool, FP_EV_SOFT_INVALIDATE, rec, rec->holder_pid, 0, 0);
                record_close(pool, rec, FP_CLOSE_CLEAN);
        } else if (pool->closing || rec->generation < pool->generation ||
                   pool->params.pool_class == FP_POOL_NULL) {
                /* Not to be reused: no reset needed, the server ends the session. */
                record_close(pool, rec, FP_CLOSE_CLEAN);
        } else if (!(f & FP_RELEASE_UNUSED)) {
                emit(pool, FP_EV_RESET, rec, rec->holder_pid, 0, 0);
                record_set_state(pool, rec, FP_SLOT_RESETTING);
                pool->ops->reset(pool, rec, info);
                fp_pool_publish(pool);
                return 0;
        }
        checkin(pool, rec);
        fp_pool_publish(pool);
        return 0;
}

void fp_pool_reset_done(struct fp_pool *pool, struct fp_record *rec, bool ok)
{
        if (!ok)
                record_invalidate(pool, rec, -EIO); /* closed, its empty slot checked in */
        else
                record_set_state(pool, rec, FP_SLOT_IDLE);
        checkin(pool, rec);
        fp_pool_publish(pool);
}

void fp_pool_connect_done(struct fp_pool *pool, struct fp_record *rec, int error, const char *text)
{
        struct fp_waiter *w = rec->connecting_for;
        rec->connecting_for = NULL;

        if (error == 0) {
                pool->counters.connects++;
                pool->n_live++;
                rec->new_record = false;
                rec->fresh = true;
                rec->generation = pool->generation;
                rec->connected_at = now(pool);
                rec->recycle_at = recycle_deadline(pool, rec->connected_at);
                rec->connect_usec = realtime_usec();
                record_set_state(pool, rec, FP_SLOT_IDLE);
                if (!pool->connected_once) {
                        pool->connected_once = true;
                        emit(pool, FP_EV_FIRST_CONNECT, rec, w ? w->pid : 0, 0, 0);
                }
                emit(pool, FP_EV_CONNECT, rec, w ? w->pid : 0, 0, 0);
                if (w && !pool->closing)
                        lease_to(pool, rec, w);
                else {
                        if (w)
                                fail_waiter(pool, w, -ESHUTDOWN, POOL_CLOSING_TEXT);
                        checkin(pool, rec);
                }
                fp_pool_publish(pool);
                return;
        }

        pool->counters.connect_failures++;
        emit(pool, FP_EV_CONNECT_FAILED, rec, w ? w->pid : 0, 0, error);
        rec->conn = NULL;
        rec->backend_pid = 0;
        /*
         * A failed connect: a new record goes away and O is restored; a pooled record goes
         * back to Q empty. Either way the next waiter is served now rather than
         * at its timeout (our decision, not SQLAlchemy's) — after the failed one has
         * been told, and after the counts it may read are true.
         */
        bool pooled = !rec->new_record;
        if (pooled) {
                record_set_state(pool, rec, FP_SLOT_EMPTY);
        } else {
                record_set_state(pool, rec, FP_SLOT_UNUSED);
                pool->overflow--;
        }
        if (w)
                fail_waiter(pool, w, error, text);
        if (pooled)
                checkin(pool, rec);
        else
                dispatch(pool);
        fp_pool_publish(pool);
}

void fp_pool_ping_done(struct fp_pool *pool, struct fp_record *rec, int error, const char *text)
{
        struct fp_waiter *w = rec->connecting_for;
        rec->connecting_for = NULL;

        if (error == 0) {
                record_set_state(pool, rec, FP_SLOT_IDLE);
                if (w && !pool->closing)
                        lease_to(pool, rec, w);
                else {
                        if (w)
                                fail_waiter(pool, w, -ESHUTDOWN, POOL_CLOSING_TEXT);
                        checkin(pool, rec);
                }
                fp_pool_publish(pool);
                return;
        }
        /*
         * A failed pre-ping: the dead connection is invalidated, and with it every connection
         * as old (the server probably restarted); then one reconnect in place,
         * whose failure is the caller's error.
         */
        (void)text;
        pool->counters.ping_failures++;
        emit(pool, FP_EV_PING_FAILED, rec, w ? w->pid : 0, 0, error);
        record_invalidate(pool, rec, error);
        invalidate_pool_from(pool, rec);
        if (w && !pool->closing)
                connect_for(pool, rec, w);
        else {
                if (w)
                        fail_waiter(pool, w, -ESHUTDOWN, POOL_CLOSING_TEXT);
                checkin(pool, rec);
        }
        fp_pool_publish(pool);
}

int fp_pool_client_gone(struct fp_pool *pool, void *client)
{
        struct fp_waiter *w, *next;
        int reclaimed = 0;

        if (pool->ops->client_waiters) {
                /* Its own waiters only; those of other pools, or connecting, are not queued here.
                 */
                struct fp_waiter_list *list = pool->ops->client_waiters(pool, client);
                for (w = TAILQ_FIRST(list); w; w = next) {
                        next = TAILQ_NEXT(w, client_link);
                        if (w->pool == pool && w->heap_index != FP_HEAP_NONE) {
                                waiter_remove(pool, w);
                                waiter_free(pool, w);
                        }
                }
        } else {
                for (w = TAILQ_FIRST(&pool->waiters); w; w = next) {
                        next = TAILQ_NEXT(w, link);
                        if (w->client == client) {
                                waiter_remove(pool, w);
                                waiter_free(pool, w);
                        }
                }
        }
        for (uint32_t i = 0; i < pool->records_end; i++) {
                struct fp_record *rec = &pool->records[i];
                if (rec->connecting_for && rec->connecting_for->client == client) {
                        /* The connect or ping goes on; its result goes to Q. */
                        waiter_free(pool, rec->connecting_for);
                        rec->connecting_for = NULL;
                }
                if (rec->state == FP_SLOT_LEASED && rec->holder == client) {
                        pool->counters.reclaims++;
                        emit(pool, FP_EV_RECLAIM, rec, rec->holder_pid, now(pool) - rec->leased_at,
                             0);
                        record_close(pool, rec, FP_CLOSE_HARD);
                        checkin(pool, rec);
                        reclaimed++;
                }
        }
        dispatch(pool);
        fp_pool_publish(pool);
        return reclaimed;
}

void fp_pool_expire(struct fp_pool *pool, uint64_t now_usec)
{
        struct fp_waiter *w;
        bool changed = false;

        while ((w = fp_heap_peek(&pool->deadlines)) && w->deadline_usec <= now_usec) {
                expire_waiter(pool, w);
                changed = true;
        }
        if (changed) {
                deadline_changed(pool);
                fp_pool_publish(pool);
        }
}

static void revoke(struct fp_pool *pool, struct fp_record *rec, int why);

void fp_pool_check_leases(struct fp_pool *pool)
{
        const struct fp_pool_params *p = &pool->params;
        uint64_t t = now(pool);

        if (p->leak_timeout_ms <= 0 && p->max_lease_time_ms <= 0)
                return;
        for (uint32_t i = 0; i < pool->records_end; i++) {
                struct fp_record *rec = &pool->records[i];
                if (rec->state != FP_SLOT_LEASED)
                        continue;
                uint64_t held = t - rec->leased_at;
                if (p->max_lease_time_ms > 0 && held >= (uint64_t)p->max_lease_time_ms * 1000u) {
                        revoke(pool, rec, -ETIMEDOUT);
                        continue;
                }
                if (p->leak_timeout_ms > 0 && !rec->leak_reported &&
                    held >= (uint64_t)p->leak_timeout_ms * 1000u) {
                        rec->leak_reported = true;
                        pool->counters.leaks++;
                        emit(pool, FP_EV_LEAK, rec, rec->holder_pid, held, 0);
                }
        }
        fp_pool_publish(pool);
}

void fp_pool_set_pin(struct fp_pool *pool, struct fp_record *rec, uint32_t reasons)
{
        rec->pin_reasons = reasons;
        record_mark_dirty(pool, rec);
        fp_pool_publish(pool);
}

void fp_pool_update_params(struct fp_pool *pool, const struct fp_pool_params *params)
{
        int old_size = pool->pool_size;
        enum fp_pool_class pool_class = pool->params.pool_class;
        pool->params = *params;
        pool->params.pool_class = pool_class;
        apply_class_sizes(pool);
        /* Keep "records that exist = O + pool_size" true under the new size. */
        pool->overflow += old_size - pool->pool_size;
        dispatch(pool);
        fp_pool_publish(pool);
}

void fp_pool_drain(struct fp_pool *pool, int error, const char *text)
{
        struct fp_waiter *w;
        struct fp_record *rec;

        pool->closing = true;
        while ((w = TAILQ_FIRST(&pool->waiters))) {
                waiter_remove(pool, w);
                fail_waiter(pool, w, error, text);
        }
        while ((rec = queue_pop(pool)))
                record_discard(pool, rec);
        deadline_changed(pool);
        fp_pool_publish(pool);
}

void fp_pool_invalidate_all(struct fp_pool *pool)
{
        pool->generation++;
        pool->counters.pool_invalidations++;
        emit(pool, FP_EV_POOL_INVALIDATE, NULL, 0, 0, 0);
        /* Idle records keep their place in Q, empty: they reconnect when next used. */
        for (struct fp_record *rec = TAILQ_FIRST(&pool->queue); rec;
             rec = TAILQ_NEXT(rec, queue_link)) {
                if (rec->conn)
                        record_close(pool, rec, FP_CLOSE_CLEAN);
        }
        fp_pool_publish(pool);
}

int fp_pool_busy(const struct fp_pool *pool)
{
        int n = 0;
        for (uint32_t i = 0; i < pool->records_end; i++) {
                enum fp_slot_state s = pool->records[i].state;
                n += s == FP_SLOT_LEASED || s == FP_SLOT_RESETTING || s == FP_SLOT_CONNECTING ||
                     s == FP_SLOT_CHECKING;
        }
        return n;
}

/* Takes a lease back under its holder: shut down, so its next query fails. */
static void revoke(struct fp_pool *pool, struct fp_record *rec, int why)
{
        pool->counters.revokes++;
        emit(pool, FP_EV_REVOKE, rec, rec->holder_pid, now(pool) - rec->leased_at, why);
        record_close(pool, rec, FP_CLOSE_HARD);
        checkin(pool, rec);
}

void fp_pool_revoke_all(struct fp_pool *pool)
{
        for (uint32_t i = 0; i < pool->records_end; i++)
                if (pool->records[i].state == FP_SLOT_LEASED)
                        revoke(pool, &pool->records[i], -ESHUTDOWN);
        fp_pool_publish(pool);
}

int fp_pool_revoke(struct fp_pool *pool, uint32_t slot)
{
        if (slot >= pool->capacity || pool->records[slot].state != FP_SLOT_LEASED)
                return -ESRCH;
        revoke(pool, &pool->records[slot], -ECANCELED);
        fp_pool_publish(pool);
        return 0;
}

int fp_pool_restore(struct fp_pool *pool, uint32_t index, void *conn, int backend_pid, bool leased,
                    pid_t holder_pid, uint64_t lease_generation)
{
        if (index >= pool->capacity || pool->records[index].state != FP_SLOT_UNUSED)
                return -EBUSY;
        struct fp_record *rec = &pool->records[index];
        bool dirty = rec->dirty;
        *rec = (struct fp_record){.pool = pool, .index = index, .dirty = dirty};
        rec->conn = conn;
        rec->backend_pid = backend_pid;
        rec->generation = pool->generation;
        rec->connected_at = now(pool);
        rec->recycle_at = recycle_deadline(pool, rec->connected_at);
        rec->connect_usec = realtime_usec();
        rec->lease_generation = lease_generation;
        pool->n_live++;
        pool->overflow++;
        if (leased) {
                rec->restored = true;
                rec->holder_pid = holder_pid;
                rec->leased_at = rec->connected_at;
                rec->last_checkout_usec = rec->connect_usec;
                record_set_state(pool, rec, FP_SLOT_LEASED);
        } else {
                record_set_state(pool, rec, FP_SLOT_IDLE);
                queue_push(pool, rec);
        }
        fp_pool_publish(pool);
        return 0;
}

void fp_pool_attach_orphans(struct fp_pool *pool, void *client, pid_t pid)
{
        for (uint32_t i = 0; i < pool->records_end; i++) {
                struct fp_record *rec = &pool->records[i];
                if (rec->state == FP_SLOT_LEASED && !rec->holder && rec->holder_pid == pid)
                        rec->holder = client;
        }
}

bool fp_pool_reclaim_orphan(struct fp_pool *pool, uint32_t index, pid_t pid)
{
        if (index >= pool->capacity)
                return false;
        struct fp_record *rec = &pool->records[index];
        if (!rec->restored || rec->state != FP_SLOT_LEASED || rec->holder || rec->holder_pid != pid)
                return false;
        pool->counters.reclaims++;
        emit(pool, FP_EV_RECLAIM, rec, pid, now(pool) - rec->leased_at, 0);
        record_close(pool, rec, FP_CLOSE_HARD);
        checkin(pool, rec);
        fp_pool_publish(pool);
        return true;
}

void fp_pool_set_paused(struct fp_pool *pool, bool paused)
{
        pool->paused = paused;
        if (!paused)
                dispatch(pool);
        fp_pool_publish(pool);
}

int fp_pool_checkedin(const struct fp_pool *pool)
{
        return (int)pool->queue_len;
}

int fp_pool_checkedout(const struct fp_pool *pool)
{
        return pool->pool_size - (int)pool->queue_len + pool->overflow;
}

int fp_pool_overflow(const struct fp_pool *pool)
{
        return pool->pool_size != 0 ? pool->overflow : 0;
}

int fp_pool_status(const struct fp_pool *pool, char *buf, size_t len)
{
        return fp_pool_status_line(buf, len, pool->params.pool_class, pool->pool_size,
                                   fp_pool_checkedin(pool), fp_pool_overflow(pool),
                                   fp_pool_checkedout(pool));
}

void fp_pool_publish(struct fp_pool *pool)
{
        struct fp_shm_pool *shm = pool->shm;
        if (!shm)
                return;

        const struct fp_pool_params *p = &pool->params;
        struct fp_waiter *first = TAILQ_FIRST(&pool->waiters);

        fp_segment_write_begin(shm);
        shm->pool_class = p->pool_class;
        shm->pool_mode = p->pool_mode;
        shm->pool_size = pool->pool_size;
        shm->max_overflow = pool->max_overflow;
        shm->timeout_ms = p->timeout_ms;
        shm->connect_timeout_ms = p->connect_timeout_ms;
        shm->reset_mode = p->reset_mode;
        shm->recycle_ms = p->recycle_ms;
        shm->leak_timeout_ms = p->leak_timeout_ms;
        shm->max_lease_time_ms = p->max_lease_time_ms;
        shm->flags = (p->pre_ping ? FP_SHM_POOL_PRE_PING : 0) |
                     (p->use_lifo ? FP_SHM_POOL_LIFO : 0) | (pool->paused ? FP_SHM_POOL_PAUSED : 0);
        shm->generation = (uint32_t)pool->generation;
        shm->checked_in = fp_pool_checkedin(pool);
        shm->checked_out = fp_pool_checkedout(pool);
        shm->overflow = pool->overflow;
        shm->waiting = pool->n_waiting;
        shm->live = pool->n_live;
        shm->oldest_wait_start_usec = first ? first->start_usec : 0;
        shm->counters = pool->counters;
        shm->wait_hist = pool->wait_hist;
        shm->hold_hist = pool->hold_hist;
        for (uint32_t d = 0; d < pool->n_dirty; d++) {
                struct fp_record *rec = &pool->records[pool->dirty[d]];
                rec->dirty = false;
                if (!pool->shm_slots)
                        continue;
                struct fp_shm_slot *slot = &pool->shm_slots[rec->index];
                *slot = (struct fp_shm_slot){
                        .state = rec->state,
                        .holder_pid = rec->state == FP_SLOT_LEASED ? rec->holder_pid : 0,
                        .lease_generation = rec->lease_generation,
                        .backend_pid = rec->conn ? rec->backend_pid : 0,
                        .connect_usec = rec->conn ? rec->connect_usec : 0,
                        .last_checkout_usec = rec->last_checkout_usec,
                };
                if (rec->state == FP_SLOT_LEASED) {
                        memcpy(slot->label, rec->label, sizeof(slot->label));
                        slot->pin_reasons = rec->pin_reasons;
                }
        }
        pool->n_dirty = 0;
        fp_segment_write_end(shm);
}
