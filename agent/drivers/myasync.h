/* SPDX-License-Identifier: MIT */
/*
 * myasync.h — MariaDB Connector/C's non-blocking calls on the event loop,
 * for the MySQL driver (myconn.c): one MYSQL handle driven through a short
 * list of steps (connect, statements, rollback, reset, ping) within a
 * deadline. Every library call that may wait is a pair of _start and _cont
 * functions: the library says what it waits for (MYSQL_WAIT_READ, _WRITE,
 * _TIMEOUT), the socket (and a timer) are watched with sd-event and the call
 * continues when they are ready. Nothing here blocks the loop. A query's
 * result sets are read and freed.
 */
#ifndef FORKPOOL_MYASYNC_H
#define FORKPOOL_MYASYNC_H

#include <stdbool.h>

#include <mysql.h>
#include <systemd/sd-event.h>

#include "proto.h"
#include "sockwatch.h"

#define MY_MAX_STEPS 4
#define MY_SQL_MAX   64

enum my_op {
        MY_OP_CONNECT,
        MY_OP_QUERY, /* then its result sets are read and freed */
        MY_OP_STORE, /* internal: reading a result set */
        MY_OP_NEXT,  /* internal: moving to the next result set */
        MY_OP_ROLLBACK,
        MY_OP_COMMIT,
        MY_OP_RESET, /* COM_RESET_CONNECTION */
        MY_OP_SELECT_DB,
        MY_OP_PING,
};

struct my_step {
        enum my_op op;
        char sql[MY_SQL_MAX]; /* MY_OP_QUERY with a short statement */
        const char *text;     /* MY_OP_QUERY with a longer one, MY_OP_SELECT_DB */
};

/* Where MY_OP_CONNECT connects, as whom (strings the owner keeps alive). */
struct my_server {
        const char *host; /* NULL: local (the Unix socket) */
        const char *user;
        const char *password;
        const char *unix_socket;
        unsigned int port;
};

struct my_async;

/* The steps ended: error 0, -EIO (an SQL error, text set), -ECONNRESET, -ETIMEDOUT. */
typedef void (*my_done_fn)(struct my_async *a, int error, const char *text);

/* One MYSQL handle driven by the loop through a list of steps. */
struct my_async {
        MYSQL *m;
        sd_event *event;
        struct fp_sockwatch io;      /* the socket, while a step waits for it */
        sd_event_source *wait_timer; /* the library's own timeout (MYSQL_WAIT_TIMEOUT) */
        sd_event_source *deadline;   /* our limit for all the steps */
        sd_event_source *defer;      /* reports steps that ended at once */
        bool running;
        bool starting;        /* inside async_run() */
        bool defer_immediate; /* the owner's callback must not run inside async_run() */
        struct my_step steps[MY_MAX_STEPS];
        int n_steps, step;
        enum my_op op;               /* the library call in progress */
        int waiting_for;             /* the MYSQL_WAIT_* bits it waits for */
        struct my_server connect_to; /* MY_OP_CONNECT: where, as whom */
        const char *connect_db;      /* MY_OP_CONNECT: NULL for none */
        unsigned long connect_flag;  /* MY_OP_CONNECT: client flags */
        MYSQL *ret_mysql;
        MYSQL_RES *ret_res;
        int ret_int;
        my_bool ret_bool;
        char *owned_sql; /* a long MY_OP_QUERY statement */
        int error;
        char text[FP_ERRTEXT_MAX];
        my_done_fn done;
        void *owner;
};

/* Frees the event sources and the handle (mysql_close(): a COM_QUIT if it is connected). */
void fp_my_async_free(struct my_async *a);

/*
 * Adds a step to a->steps (a->n_steps is the caller's to zero first): op with
 * text, a statement (MY_OP_QUERY: copied if it is longer than MY_SQL_MAX - 1
 * bytes) or a database name (MY_OP_SELECT_DB: must outlive the run).
 */
void fp_my_async_step(struct my_async *a, enum my_op op, const char *text);

/*
 * Runs a->steps[0..n_steps) on a->m within timeout_ms, then calls done (from
 * the loop if defer_immediate, else possibly from inside this call). Returns
 * 0, or a negative errno if nothing could be started (done will not run).
 */
int fp_my_async_run(struct my_async *a, int timeout_ms, my_done_fn done, bool defer_immediate);

/* Reports error and text to done from the loop, as a run that failed would. */
void fp_my_async_fail_later(struct my_async *a, my_done_fn done, int error, const char *text);

#endif /* FORKPOOL_MYASYNC_H */
