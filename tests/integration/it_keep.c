/* SPDX-License-Identifier: MIT */
/*
 * it_keep.c — the PGconn a process keeps across leases of the same session
 * (forkpool_lease_pg): it is reused, and unreachable while not leased;
 * nothing of its previous holder's use reaches the next holder (hooks,
 * non-blocking mode, verbosity, tracing, notifications, an error's text, a
 * transaction, changed settings); one with an event procedure of the
 * application's is not kept; a child, forked or raw-cloned, never gets its
 * parent's.
 */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libpq-events.h>

#include "itest.h"

#define POOL_ONE "pool_size = 1\nmax_overflow = 0\nreset_on_return = auto\n"

/*
 * Releases lease (its PGconn c) and takes every freed block of c's size, so
 * that if c was finished rather than kept, no new PGconn can be made at its
 * address: "the same pointer" then means "the same PGconn". Free the blocks
 * with blocks_free().
 */
#define N_BLOCKS 32
struct blocks {
        void *p[N_BLOCKS];
};
static void release_holding(forkpool_lease *lease, PGconn *c, struct blocks *b)
{
        size_t size = malloc_usable_size(c);
        CHECK_OK(forkpool_release(lease));
        for (int i = 0; i < N_BLOCKS; i++)
                CHECK((b->p[i] = malloc(size)));
}
static void blocks_free(struct blocks *b)
{
        for (int i = 0; i < N_BLOCKS; i++)
                free(b->p[i]);
}

/* One lease of pool main, adopted. */
static PGconn *lease_pg(forkpool *fp, forkpool_lease **ret)
{
        CHECK_OK(forkpool_acquire(fp, "main", 10000, ret));
        PGconn *c = forkpool_lease_pg(*ret);
        CHECK_MSG(c, "forkpool_lease_pg: %s", forkpool_last_error());
        return c;
}

static void test_reused(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;

        itest_sup_start(&s, "it_keep_reuse", POOL_ONE, NULL);
        CHECK_OK(forkpool_open(s.socket, &fp));
        PGconn *first = lease_pg(fp, &lease);
        char pid[32];
        snprintf(pid, sizeof(pid), "%s", itest_query(first, "SELECT pg_backend_pid()"));
        int sock = PQsocket(first);
        struct blocks b;
        release_holding(lease, first, &b);

        /* Kept, on a socket that reaches no server. */
        struct sockaddr_storage peer;
        socklen_t len = sizeof(peer);
        CHECK(getpeername(sock, (struct sockaddr *)&peer, &len) < 0 && errno == ENOTCONN);

        for (int i = 0; i < 20; i++) {
                PGconn *again = lease_pg(fp, &lease);
                CHECK_MSG(again == first, "lease %d: a new PGconn, not the kept one", i);
                CHECK(strcmp(itest_query(again, "SELECT pg_backend_pid()"), pid) == 0);
                CHECK_OK(forkpool_release(lease));
        }
        blocks_free(&b);
        CHECK(itest_pool(&s).counters.acquires == 21);
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

static int notices;
static void count_notice(void *arg, const char *message)
{
        (void)arg, (void)message;
        notices++;
}

/* Whether file (a trace) grows while sql runs on c. */
static bool traced(PGconn *c, const char *file, const char *sql)
{
        struct stat before, after;
        CHECK(stat(file, &before) == 0);
        itest_query(c, sql);
        CHECK(stat(file, &after) == 0);
        return after.st_size != before.st_size;
}

static void test_nothing_leaks(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;
        char trace[256];

        itest_sup_start(&s, "it_keep_clean", POOL_ONE, NULL);
        snprintf(trace, sizeof(trace), "%s/trace", s.dir);
        FILE *tf = fopen(trace, "w");
        CHECK(tf);
        PGconn *admin = PQconnectdb(itest_url("it_keep_admin"));
        CHECK(PQstatus(admin) == CONNECTION_OK);
        CHECK_OK(forkpool_open(s.socket, &fp));

        /* A holder that sets everything a PGconn lets it set, and leaves a notification. */
        PGconn *c = lease_pg(fp, &lease);
        PQsetNoticeProcessor(c, count_notice, NULL);
        CHECK(PQsetnonblocking(c, 1) == 0);
        PQsetErrorVerbosity(c, PQERRORS_VERBOSE);
        PQsetErrorContextVisibility(c, PQSHOW_CONTEXT_ALWAYS);
        PQtrace(c, tf);
        itest_query(c, "LISTEN it_keep_chan");
        itest_query(c, "DO $$ BEGIN RAISE NOTICE 'mine'; END $$");
        CHECK(notices == 1);
        itest_query(admin, "NOTIFY it_keep_chan, 'for the first holder'");
        usleep(100000); /* the notification reaches the socket */
        struct blocks b;
        release_holding(lease, c, &b);

        PGconn *next = lease_pg(fp, &lease);
        blocks_free(&b);
        CHECK_MSG(next == c, "the PGconn was not kept: this test checks nothing");
        CHECK(PQisnonblocking(next) == 0);
        CHECK(PQsetErrorVerbosity(next, PQERRORS_DEFAULT) == PQERRORS_DEFAULT);
        CHECK(PQsetErrorContextVisibility(next, PQSHOW_CONTEXT_ERRORS) == PQSHOW_CONTEXT_ERRORS);
        CHECK(PQsetNoticeProcessor(next, NULL, NULL) != count_notice);
        CHECK(!traced(next, trace, "SELECT 1"));
        itest_query(next, "DO $$ BEGIN RAISE NOTICE 'theirs'; END $$");
        CHECK(notices == 1);
        itest_query(admin, "NOTIFY it_keep_chan, 'after the reset'");
        itest_query(next, "SELECT 1");
        CHECK(PQconsumeInput(next) == 1);
        PGnotify *n = PQnotifies(next);
        CHECK_MSG(!n, "notification '%s' reached the next holder", n ? n->extra : "");
        CHECK_OK(forkpool_release(lease));

        /*
         * A changed setting: the reset puts the session's back, and the next
         * holder's PGconn reports what the session has (a kept one knew the
         * old value: it is adopted anew).
         */
        c = lease_pg(fp, &lease);
        itest_query(c, "SET application_name = 'it_keep_leak'");
        CHECK_OK(forkpool_release(lease));
        next = lease_pg(fp, &lease);
        char *shown = itest_query(next, "SHOW application_name");
        CHECK(strcmp(shown, "it_keep_leak") != 0);
        CHECK(strcmp(PQparameterStatus(next, "application_name"), shown) == 0);
        CHECK_OK(forkpool_release(lease));

        /* A failed command's text and an aborted transaction stay with their holder. */
        c = lease_pg(fp, &lease);
        PGresult *res = PQexec(c, "SELECT no_such_function()");
        CHECK(PQresultStatus(res) == PGRES_FATAL_ERROR);
        PQclear(res);
        CHECK(*PQerrorMessage(c));
        CHECK_OK(forkpool_release(lease));
        next = lease_pg(fp, &lease);
        CHECK_MSG(*PQerrorMessage(next) == '\0', "the next holder sees '%s'", PQerrorMessage(next));
        itest_query(next, "BEGIN");
        res = PQexec(next, "SELECT 1/0");
        PQclear(res);
        CHECK(PQtransactionStatus(next) == PQTRANS_INERROR);
        CHECK_OK(forkpool_release(lease));
        c = lease_pg(fp, &lease);
        CHECK(PQtransactionStatus(c) == PQTRANS_IDLE);
        CHECK(*PQerrorMessage(c) == '\0');
        itest_query(c, "SELECT 1");
        CHECK_OK(forkpool_release(lease));

        fclose(tf);
        PQfinish(admin);
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

struct app_events {
        int results;
        bool destroyed;
};

static int app_event(PGEventId id, void *info, void *pass_through)
{
        struct app_events *ev = pass_through;
        (void)info;
        if (id == PGEVT_RESULTCREATE)
                ev->results++;
        if (id == PGEVT_CONNDESTROY)
                ev->destroyed = true;
        return 1;
}

static void test_foreign_event_not_kept(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *lease;
        struct app_events ev = {0};

        itest_sup_start(&s, "it_keep_events", POOL_ONE, NULL);
        CHECK_OK(forkpool_open(s.socket, &fp));
        PGconn *c = lease_pg(fp, &lease);
        CHECK(PQregisterEventProc(c, app_event, "it_keep", &ev));
        itest_query(c, "SELECT 1");
        CHECK(ev.results == 1);
        CHECK_OK(forkpool_release(lease));
        CHECK_MSG(ev.destroyed, "a PGconn with the application's event procedure was kept");

        c = lease_pg(fp, &lease);
        itest_query(c, "SELECT 1");
        CHECK(ev.results == 1);
        CHECK_OK(forkpool_release(lease));
        /* Without one, it is kept again. */
        c = lease_pg(fp, &lease);
        struct blocks b;
        release_holding(lease, c, &b);
        CHECK(lease_pg(fp, &lease) == c);
        blocks_free(&b);
        CHECK_OK(forkpool_release(lease));
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

/* In a child: the parent's lease is not ours, a lease of our own works. */
static int child_leases(forkpool *fp, forkpool_lease *parents)
{
        forkpool_lease *mine;
        if (forkpool_release(parents) != -ECHILD)
                return 1;
        if (forkpool_acquire(fp, "main", 10000, &mine) < 0)
                return 2;
        PGconn *c = forkpool_lease_pg(mine);
        if (!c)
                return 3;
        PGresult *res = PQexec(c, "SELECT pg_backend_pid()");
        bool ok = PQresultStatus(res) == PGRES_TUPLES_OK &&
                  atoi(PQgetvalue(res, 0, 0)) == forkpool_lease_backend_pid(mine);
        PQclear(res);
        if (!ok)
                return 4;
        return forkpool_release(mine) == 0 ? 0 : 5;
}

static void test_fork_safe(void)
{
        struct itest_sup s;
        forkpool *fp;
        forkpool_lease *held, *lease;

        itest_sup_start(&s, "it_keep_fork", "pool_size = 2\nmax_overflow = 0\n", NULL);
        CHECK_OK(forkpool_open(s.socket, &fp));
        /* Both sessions leased and given back once: the parent keeps both PGconns. */
        PGconn *a = lease_pg(fp, &held);
        PGconn *b = lease_pg(fp, &lease);
        CHECK_OK(forkpool_release(lease));
        CHECK_OK(forkpool_release(held));
        a = lease_pg(fp, &held); /* one kept PGconn in use, the other kept idle */

        for (int raw = 0; raw < 2; raw++) {
                pid_t pid = raw ? (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0) : fork();
                CHECK(pid >= 0);
                if (pid == 0)
                        _exit(child_leases(fp, held));
                int status = itest_wait_child(pid, 30000);
                CHECK_MSG(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
                          "%s child failed (status %d)", raw ? "raw-cloned" : "forked", status);
                /* The parent's lease and its kept PGconn are untouched. */
                itest_query(a, "SELECT 1");
        }
        CHECK_OK(forkpool_release(held));
        PGconn *x = lease_pg(fp, &held), *y = lease_pg(fp, &lease);
        CHECK_MSG((x == a || x == b || y == a || y == b),
                  "the parent's kept PGconns were lost across the children");
        itest_query(x, "SELECT 1");
        itest_query(y, "SELECT 1");
        CHECK_OK(forkpool_release(lease));
        CHECK_OK(forkpool_release(held));
        forkpool_close(fp);
        CHECK(itest_sup_stop(&s) == 0);
}

ITEST_MAIN({"reused", test_reused, 60}, {"nothing_leaks", test_nothing_leaks, 60},
           {"foreign_event_not_kept", test_foreign_event_not_kept, 60},
           {"fork_safe", test_fork_safe, 90})
