/* SPDX-License-Identifier: MIT */
/*
 * mykill.h — a MySQL pool's admin connection, for the MySQL driver
 * (myconn.c): KILL QUERY <thread id> cancels what a leased session runs, KILL
 * <thread id> ends a session taken back from a worker that may have left it
 * busy (its statement stops and its locks go at once). mariadb_cancel() is
 * never used: it shuts the shared socket down.
 *
 * The connection is opened when first needed and closed after a while
 * without use. The KILLs that end sessions go first; the KILL QUERYs queue
 * behind them. Each KILL may name a target (the driver's connection), told
 * through the owner's operations when its KILL QUERY leaves the queue (sent
 * or dropped) and when its KILL is done (or dropped).
 */
#ifndef FORKPOOL_MYKILL_H
#define FORKPOOL_MYKILL_H

#include <stdbool.h>
#include <sys/queue.h>

#include <mysql.h>
#include <systemd/sd-event.h>

#include "myasync.h"

struct my_kill;
TAILQ_HEAD(my_kill_list, my_kill);

/* One pool's KILL sender. */
struct my_killer {
        /* Set by the owner: */
        sd_event *event;         /* NULL until the owner knows its loop: nothing is sent */
        struct my_server server; /* where to connect, as whom */
        int connect_timeout_ms;  /* for the admin connection's connect */
        void *owner;             /* passed to the operations below */
        /* A new handle with the pool's options. Returns 0 or -ENOMEM. */
        int (*new_handle)(void *owner, MYSQL **ret);
        /* target's KILL is done, or was dropped. */
        void (*done)(void *owner, void *target);
        /* target's KILL QUERY left the queue: sent (done() follows) or dropped. */
        void (*unqueued)(void *owner, void *target);

        /* The killer's own: */
        struct my_async admin; /* admin.m is NULL when closed */
        bool ready;
        struct my_kill *current;     /* being sent */
        struct my_kill_list kills;   /* KILL: sessions to end, first */
        struct my_kill_list cancels; /* KILL QUERY */
        sd_event_source *idle;
};

/* Empty queues; the owner's fields are the owner's to set. */
void fp_my_killer_init(struct my_killer *killer);

/* Closes the admin connection and frees every queued KILL, telling nobody. */
void fp_my_killer_done(struct my_killer *killer);

/*
 * Queues a KILL (or, query_only, a KILL QUERY) for thread_id, the session on
 * socket session_fd, and sends it as soon as it can. The KILL keeps a
 * duplicate of session_fd and is not sent if the server has closed that
 * socket by then (after a restart the thread id may be another session's);
 * a KILL that ends a session shuts its socket down for every copy when it is
 * done or dropped. Only a server lost without closing its sockets (a host
 * crash) can still receive a stale KILL. target (may be NULL) is told when it
 * is done; *ret (if not NULL) is the queued KILL, for fp_my_killer_drop()
 * while it waits. done() may run from inside this call. Returns 0, -ENOMEM or
 * -EMFILE.
 */
int fp_my_killer_queue(struct my_killer *killer, unsigned long thread_id, int session_fd,
                       bool query_only, void *target, struct my_kill **ret);

/*
 * Drops a KILL QUERY that fp_my_killer_queue() queued and that has not left
 * the queue yet (unqueued() not called): nobody is told.
 */
void fp_my_killer_drop(struct my_killer *killer, struct my_kill *cancel);

/* target is gone: its KILLs go on (the thread id stays valid), nobody is told of them. */
void fp_my_killer_forget_target(struct my_killer *killer, void *target);

#endif /* FORKPOOL_MYKILL_H */
