/* SPDX-License-Identifier: MIT */
/*
 * pool.c — QueuePool accounting and the record state machine (pool.h).
 */
#include "pool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t realtime_usec(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int effective_max_overflow(const struct fp_pool_params *params)
{
        return params->pool_size == 0 ? -1 : params->max_overflow;
}

static void record_mark_dirty(struct fp_pool *pool, struct fp_record *rec);

int fp_pool_init(struct fp_pool *pool, const struct fp_pool_params *params,
                 const struct fp_pool_ops *ops, void *userdata)
{
        memset(pool, 0, sizeof(*pool));
        pool->params = *params;
        pool->ops = ops;
        pool->userdata = userdata;
        pool->overflow = -params->pool_size;
        pool->max_overflow = effective_max_overflow(params);
        pool->capacity = FP_SHM_MAX_SLOTS_PER_POOL;
        TAILQ_INIT(&pool->waiters);

        pool->records = calloc(pool->capacity, sizeof(*pool->records));
        pool->queue = calloc(pool->capacity, sizeof(*pool->queue));
        pool->dirty = calloc(pool->capacity, sizeof(*pool->dirty));
        if (!pool->records || !pool->queue || !pool->dirty) {
                free(pool->records);
                free(pool->queue);
                free(pool->dirty);
                return -ENOMEM;
        }
        for (uint32_t i = 0; i < pool->capacity; i++)
                pool->records[i] =
                        (struct fp_record){.pool = pool, .index = i, .state = FP_SLOT_UNUSED};
        return 0;
}

void fp_pool_done(struct fp_pool *pool)
{
        struct fp_waiter *w;
        while ((w = TAILQ_FIRST(&pool->waiters))) {
                TAILQ_REMOVE(&pool->waiters, w, link);
                free(w);
        }
        free(pool->records);
        free(pool->queue);
        free(pool->dirty);
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

/* Queues rec for the next fp_pool_publish(). */
static void record_mark_dirty(struct fp_pool *pool, struct fp_record *rec)
{
        if (!rec->dirty) {
                rec->dirty = true;
                pool->dirty[pool->n_dirty++] = rec->index;
        }
}

/* --- the idle queue Q (a ring of record indexes, FIFO) --- */

static void queue_push(struct fp_pool *pool, struct fp_record *rec)
{
        uint32_t tail = (pool->queue_head + pool->queue_len) % pool->capacity;
        pool->queue[tail] = rec->index;
        pool->queue_len++;
        rec->in_queue = true;
}

static struct fp_record *queue_pop(struct fp_pool *pool)
{
        if (pool->queue_len == 0)
                return NULL;
        struct fp_record *rec = &pool->records[pool->queue[pool->queue_head]];
        pool->queue_head = (pool->queue_head + 1) % pool->capacity;
        pool->queue_len--;
        rec->in_queue = false;
        return rec;
}

/* --- small state helpers --- */

static void record_set_state(struct fp_pool *pool, struct fp_record *rec,
                             enum fp_slot_state state)
{
        rec->state = state;
        record_mark_dirty(pool, rec);
}

static struct fp_record *record_alloc(struct fp_pool *pool)
{
        for (uint32_t i = 0; i < pool->capacity; i++)
                if (pool->records[i].state == FP_SLOT_UNUSED) {
                        struct fp_record *rec = &pool->records[i];
                        uint64_t generation = rec->lease_generation;
                        bool dirty = rec->dirty;
                        *rec = (struct fp_record){.pool = pool,
                                                  .index = i,
                                                  .lease_generation = generation,
                                                  .new_record = true,
                                                  .dirty = dirty};
                        record_set_state(pool, rec, FP_SLOT_CONNECTING);
                        return rec;
                }
        return NULL;
}

/* Forgets a record: it no longer counts, and O goes down by one. */
static void record_discard(struct fp_pool *pool, struct fp_record *rec)
{
        if (rec->conn) {
                pool->ops->close(pool, rec, false);
                pool->counters.closes++;
                pool->n_live--;
                rec->conn = NULL;
        }
        rec->holder = NULL;
        rec->holder_pid = 0;
        rec->backend_pid = 0;
        record_set_state(pool, rec, FP_SLOT_UNUSED);
        pool->overflow--;
}

/* Closes rec's connection and leaves the record empty (it still counts). */
static void record_invalidate(struct fp_pool *pool, struct fp_record *rec, bool hard)
{
        if (rec->conn) {
                pool->ops->close(pool, rec, hard);
                pool->counters.closes++;
                pool->n_live--;
                rec->conn = NULL;
        }
        rec->backend_pid = 0;
        record_set_state(pool, rec, FP_SLOT_EMPTY);
}

static bool can_create(const struct fp_pool *pool)
{
        return pool->max_overflow == -1 || pool->overflow < pool->max_overflow;
}

static void waiter_remove(struct fp_pool *pool, struct fp_waiter *w)
{
        TAILQ_REMOVE(&pool->waiters, w, link);
        pool->n_waiting--;
}

uint64_t fp_pool_next_deadline(const struct fp_pool *pool)
{
        uint64_t next = UINT64_MAX;
        struct fp_waiter *w;
        TAILQ_FOREACH(w, &pool->waiters, link)
                if (w->deadline_usec < next)
                        next = w->deadline_usec;
        return next;
}

static void deadline_changed(struct fp_pool *pool)
{
        if (pool->ops->deadline_changed)
                pool->ops->deadline_changed(pool, fp_pool_next_deadline(pool));
}

static bool waiter_queued(const struct fp_pool *pool, const struct fp_waiter *w)
{
        const struct fp_waiter *it;
        TAILQ_FOREACH(it, &pool->waiters, link)
                if (it == w)
                        return true;
        return false;
}

/* Takes w out of the queue and answers it with SQLAlchemy's timeout error. Frees w. */
static void expire_waiter(struct fp_pool *pool, struct fp_waiter *w)
{
        char text[160];

        waiter_remove(pool, w);
        pool->counters.timeouts++;
        fp_pool_publish(pool);
        snprintf(text, sizeof(text),
                 "QueuePool limit of size %d overflow %d reached, connection timed out, "
                 "timeout %.2f",
                 pool->params.pool_size, fp_pool_overflow(pool),
                 (double)(w->deadline_usec - w->start_usec) / 1e6);
        pool->ops->send_error(pool, w, -ETIMEDOUT, text);
        free(w);
}

/* Hands rec (live, out of Q) to w, which is no longer queued. Frees w. */
static void lease_to(struct fp_pool *pool, struct fp_record *rec, struct fp_waiter *w);

/* Puts rec back into Q, or discards it when Q is full (§2.3); then serves waiters. */
static void checkin(struct fp_pool *pool, struct fp_record *rec);

/*
 * Serves queued waiters, first come first served, while there is an idle
 * record or room for a new one.
 */
static void dispatch(struct fp_pool *pool)
{
        struct fp_waiter *w;

        while (!pool->closing && (w = TAILQ_FIRST(&pool->waiters))) {
                struct fp_record *rec = queue_pop(pool);
                if (!rec && can_create(pool)) {
                        rec = record_alloc(pool);
                        if (rec)
                                pool->overflow++;
                }
                if (!rec)
                        break;

                waiter_remove(pool, w);
                if (rec->conn) {
                        lease_to(pool, rec, w);
                        continue;
                }
                /* A new record, or an empty one from Q: connect in place for w. */
                record_set_state(pool, rec, FP_SLOT_CONNECTING);
                rec->connecting_for = w;
                pool->ops->connect(pool, rec);
        }
        deadline_changed(pool);
}

static void lease_to(struct fp_pool *pool, struct fp_record *rec, struct fp_waiter *w)
{
        rec->lease_generation++;
        rec->holder = w->client;
        rec->holder_pid = w->pid;
        rec->last_checkout_usec = realtime_usec();
        record_set_state(pool, rec, FP_SLOT_LEASED);

        /* Readers of the segment see the lease by the time the worker has it. */
        pool->counters.acquires++;
        fp_pool_publish(pool);
        int r = pool->ops->send_lease(pool, rec, w);
        free(w);
        if (r < 0) {
                /* The fd never left: the connection is intact and unused. */
                pool->counters.acquires--;
                rec->holder = NULL;
                rec->holder_pid = 0;
                record_set_state(pool, rec, FP_SLOT_IDLE);
                checkin(pool, rec);
        }
}

static void checkin(struct fp_pool *pool, struct fp_record *rec)
{
        rec->holder = NULL;
        rec->holder_pid = 0;
        if (pool->closing) {
                record_discard(pool, rec);
                return;
        }
        if (rec->conn && rec->generation < pool->generation) {
                /* Connected before a dispose: never reused. */
                record_invalidate(pool, rec, false);
        }
        if (pool->params.pool_size > 0 && pool->queue_len >= (uint32_t)pool->params.pool_size) {
                record_discard(pool, rec);
        } else {
                record_set_state(pool, rec, rec->conn ? FP_SLOT_IDLE : FP_SLOT_EMPTY);
                queue_push(pool, rec);
        }
        dispatch(pool);
}

int fp_pool_acquire(struct fp_pool *pool, void *client, pid_t pid, uint32_t request_id,
                    int timeout_ms, uint64_t now_usec)
{
        struct fp_waiter *w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;

        if (timeout_ms < 0)
                timeout_ms = pool->params.timeout_ms;
        *w = (struct fp_waiter){
                .client = client,
                .pid = pid,
                .request_id = request_id,
                .start_usec = now_usec,
                .deadline_usec = now_usec + (uint64_t)timeout_ms * 1000u,
        };

        TAILQ_INSERT_TAIL(&pool->waiters, w, link);
        pool->n_waiting++;
        dispatch(pool);

        /* Timeout 0: served now or not at all, even behind other waiters. */
        if (timeout_ms == 0 && waiter_queued(pool, w)) {
                expire_waiter(pool, w);
                deadline_changed(pool);
        }
        fp_pool_publish(pool);
        return 0;
}

struct fp_record *fp_pool_find_lease(struct fp_pool *pool, uint64_t lease_id)
{
        uint32_t index = (uint32_t)(lease_id >> 32) & 0xffff;
        if (fp_lease_id_pool(lease_id) != pool->id || index >= pool->capacity)
                return NULL;
        struct fp_record *rec = &pool->records[index];
        if (rec->state != FP_SLOT_LEASED || fp_record_lease_id(pool, rec) != lease_id)
                return NULL;
        return rec;
}

int fp_pool_release(struct fp_pool *pool, void *client, uint64_t lease_id,
                    const struct fp_release_info *info)
{
        struct fp_record *rec = fp_pool_find_lease(pool, lease_id);
        if (!rec || rec->holder != client)
                return -ESRCH;

        pool->counters.releases++;
        rec->holder = NULL;
        if (info->flags & (FP_RELEASE_INVALIDATE | FP_RELEASE_NOT_AT_BOUNDARY)) {
                pool->counters.invalidations++;
                record_invalidate(pool, rec, true);
                checkin(pool, rec);
        } else if (pool->closing || rec->generation < pool->generation) {
                /* Not to be reused (shutdown, removed pool, dispose): no reset needed. */
                record_invalidate(pool, rec, true);
                checkin(pool, rec);
        } else {
                record_set_state(pool, rec, FP_SLOT_RESETTING);
                pool->ops->reset(pool, rec, info);
        }
        fp_pool_publish(pool);
        return 0;
}

void fp_pool_reset_done(struct fp_pool *pool, struct fp_record *rec, bool ok)
{
        if (!ok) {
                pool->counters.invalidations++;
                record_invalidate(pool, rec, true);
        }
        checkin(pool, rec);
        fp_pool_publish(pool);
}

void fp_pool_connect_done(struct fp_pool *pool, struct fp_record *rec, int error,
                          const char *text)
{
        struct fp_waiter *w = rec->connecting_for;
        rec->connecting_for = NULL;

        if (error == 0) {
                pool->counters.connects++;
                pool->n_live++;
                rec->new_record = false;
                rec->generation = pool->generation;
                rec->connect_usec = realtime_usec();
                record_set_state(pool, rec, FP_SLOT_IDLE);
                if (w && !pool->closing)
                        lease_to(pool, rec, w);
                else {
                        free(w);
                        checkin(pool, rec);
                }
                fp_pool_publish(pool);
                return;
        }

        pool->counters.connect_failures++;
        rec->conn = NULL;
        rec->backend_pid = 0;
        /*
         * §2.4: a new record goes away and O is restored; a pooled record goes
         * back to Q empty. Either way the next waiter is served now rather than
         * at its timeout (our decision, DESIGN.md) — after the failed one has
         * been told, and after the counts it may read are true.
         */
        bool pooled = !rec->new_record;
        if (pooled) {
                record_set_state(pool, rec, FP_SLOT_EMPTY);
        } else {
                record_set_state(pool, rec, FP_SLOT_UNUSED);
                pool->overflow--;
        }
        fp_pool_publish(pool);
        if (w) {
                pool->ops->send_error(pool, w, error, text);
                free(w);
        }
        if (pooled)
                checkin(pool, rec);
        else
                dispatch(pool);
        fp_pool_publish(pool);
}

int fp_pool_client_gone(struct fp_pool *pool, void *client)
{
        struct fp_waiter *w, *next;
        int reclaimed = 0;

        for (w = TAILQ_FIRST(&pool->waiters); w; w = next) {
                next = TAILQ_NEXT(w, link);
                if (w->client == client) {
                        waiter_remove(pool, w);
                        free(w);
                }
        }
        for (uint32_t i = 0; i < pool->capacity; i++) {
                struct fp_record *rec = &pool->records[i];
                if (rec->state == FP_SLOT_CONNECTING && rec->connecting_for &&
                    rec->connecting_for->client == client) {
                        free(rec->connecting_for);
                        rec->connecting_for = NULL; /* done: goes to Q */
                }
                if (rec->state == FP_SLOT_LEASED && rec->holder == client) {
                        pool->counters.reclaims++;
                        record_invalidate(pool, rec, true);
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
        struct fp_waiter *w, *next;
        bool changed = false;

        for (w = TAILQ_FIRST(&pool->waiters); w; w = next) {
                next = TAILQ_NEXT(w, link);
                if (w->deadline_usec > now_usec)
                        continue;
                expire_waiter(pool, w);
                changed = true;
        }
        if (changed) {
                deadline_changed(pool);
                fp_pool_publish(pool);
        }
}

void fp_pool_update_params(struct fp_pool *pool, const struct fp_pool_params *params)
{
        int old_size = pool->params.pool_size;
        pool->params = *params;
        /* Keep "records that exist = O + pool_size" true under the new size. */
        pool->overflow += old_size - params->pool_size;
        pool->max_overflow = effective_max_overflow(params);
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
                pool->ops->send_error(pool, w, error, text);
                free(w);
        }
        while ((rec = queue_pop(pool)))
                record_discard(pool, rec);
        deadline_changed(pool);
        fp_pool_publish(pool);
}

void fp_pool_dispose(struct fp_pool *pool)
{
        pool->generation++;
        /* Idle records keep their place in Q, empty: they reconnect when next used. */
        for (uint32_t i = 0, n = pool->queue_len; i < n; i++) {
                struct fp_record *rec =
                        &pool->records[pool->queue[(pool->queue_head + i) % pool->capacity]];
                if (rec->conn)
                        record_invalidate(pool, rec, false);
        }
        fp_pool_publish(pool);
}

int fp_pool_busy(const struct fp_pool *pool)
{
        int n = 0;
        for (uint32_t i = 0; i < pool->capacity; i++) {
                enum fp_slot_state s = pool->records[i].state;
                n += s == FP_SLOT_LEASED || s == FP_SLOT_RESETTING || s == FP_SLOT_CONNECTING;
        }
        return n;
}

void fp_pool_revoke_all(struct fp_pool *pool)
{
        for (uint32_t i = 0; i < pool->capacity; i++) {
                struct fp_record *rec = &pool->records[i];
                if (rec->state == FP_SLOT_LEASED) {
                        pool->counters.reclaims++;
                        record_invalidate(pool, rec, true);
                        checkin(pool, rec);
                }
        }
        fp_pool_publish(pool);
}

int fp_pool_checkedin(const struct fp_pool *pool)
{
        return (int)pool->queue_len;
}

int fp_pool_checkedout(const struct fp_pool *pool)
{
        return pool->params.pool_size - (int)pool->queue_len + pool->overflow;
}

int fp_pool_overflow(const struct fp_pool *pool)
{
        return pool->params.pool_size != 0 ? pool->overflow : 0;
}

int fp_pool_status(const struct fp_pool *pool, char *buf, size_t len)
{
        return snprintf(buf, len,
                        "Pool size: %d  Connections in pool: %d Current Overflow: %d Current "
                        "Checked out connections: %d",
                        pool->params.pool_size, fp_pool_checkedin(pool), fp_pool_overflow(pool),
                        fp_pool_checkedout(pool));
}

void fp_pool_publish(struct fp_pool *pool)
{
        struct fp_shm_pool *shm = pool->shm;
        if (!shm)
                return;

        struct fp_waiter *first = TAILQ_FIRST(&pool->waiters);

        fp_segment_write_begin(shm);
        shm->pool_size = pool->params.pool_size;
        shm->max_overflow = pool->params.max_overflow;
        shm->timeout_ms = pool->params.timeout_ms;
        shm->connect_timeout_ms = pool->params.connect_timeout_ms;
        shm->reset_mode = pool->params.reset_mode;
        shm->checked_in = fp_pool_checkedin(pool);
        shm->checked_out = fp_pool_checkedout(pool);
        shm->overflow = pool->overflow;
        shm->waiting = pool->n_waiting;
        shm->live = pool->n_live;
        shm->oldest_wait_start_usec = first ? first->start_usec : 0;
        shm->counters = pool->counters;
        for (uint32_t d = 0; d < pool->n_dirty; d++) {
                struct fp_record *rec = &pool->records[pool->dirty[d]];
                rec->dirty = false;
                if (!pool->shm_slots)
                        continue;
                pool->shm_slots[rec->index] = (struct fp_shm_slot){
                        .state = rec->state,
                        .holder_pid = rec->state == FP_SLOT_LEASED ? rec->holder_pid : 0,
                        .lease_generation = rec->lease_generation,
                        .backend_pid = rec->conn ? rec->backend_pid : 0,
                        .connect_usec = rec->conn ? rec->connect_usec : 0,
                        .last_checkout_usec = rec->last_checkout_usec,
                };
        }
        pool->n_dirty = 0;
        fp_segment_write_end(shm);
}
