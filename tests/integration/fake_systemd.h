/* SPDX-License-Identifier: MIT */
/*
 * fake_systemd.h — systemd's part of the protocols forkpoold uses to restart
 * without losing a connection, played by a test without PID 1: a notify
 * socket that keeps the descriptors forkpoold stores (FDSTORE=1, FDNAME=,
 * FDSTOREREMOVE=1) and hands them to the next forkpoold ($LISTEN_FDS,
 * $LISTEN_PID, $LISTEN_FDNAMES), as `systemctl restart` of a unit with
 * FileDescriptorStoreMax= does.
 */
#ifndef FORKPOOL_FAKE_SYSTEMD_H
#define FORKPOOL_FAKE_SYSTEMD_H

#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>

#define FAKE_SYSTEMD_MAX_STORED 64

struct fake_systemd {
        char dir[64], config[128], socket[128], notify[128], log[128];
        int sock;
        pthread_t thread;
        pthread_mutex_t lock;
        bool stop;
        int n_stored;
        char names[FAKE_SYSTEMD_MAX_STORED][64];
        int fds[FAKE_SYSTEMD_MAX_STORED];
        int ready;     /* READY=1 messages seen */
        pid_t pid;     /* the running forkpoold, or 0 */
        int listen_fd; /* the socket unit's listening socket (fake_systemd_socket_unit()), or -1 */
};

/*
 * Creates a temporary directory with a configuration: [forkpool] with the
 * socket in that directory and global_lines (NULL: none), then pools verbatim
 * ("[pool NAME]\nurl = …\n…"). Binds the notify socket and starts the thread
 * that reads it. Fails the test on error.
 */
void fake_systemd_init_config(struct fake_systemd *sd, const char *global_lines, const char *pools);

/* fake_systemd_init_config() with one pool "main" on url and its extra lines. */
void fake_systemd_init(struct fake_systemd *sd, const char *url, const char *pool_lines);

/*
 * Plays a socket unit too (forkpoold.socket): binds and listens on the
 * configured socket, and passes that socket ("control") before what the store
 * holds at every start. Call before the first fake_systemd_start(). Fails the
 * test on error.
 */
void fake_systemd_socket_unit(struct fake_systemd *sd);

/*
 * Starts forkpoold the way systemd does, passing it what the store holds, and
 * waits (up to 30 s) for its READY=1. Fails the test if it does not come.
 */
void fake_systemd_start(struct fake_systemd *sd);

/*
 * Sends sig (SIGTERM: systemctl restart; SIGKILL: a crash) to forkpoold and
 * waits for it (up to 20 s); after SIGTERM its exit status must be 0. Fails
 * the test otherwise.
 */
void fake_systemd_stop(struct fake_systemd *sd, int sig);

/* Stops forkpoold if it runs, the notify thread, closes the store, removes the directory. */
void fake_systemd_done(struct fake_systemd *sd);

/* Number of stored database connections (names starting with 'c'). */
int fake_systemd_stored_connections(struct fake_systemd *sd);

/* The nth stored descriptor whose name starts with name (still owned by the store), or -1. */
int fake_systemd_stored_fd(struct fake_systemd *sd, const char *name, int nth);

#endif /* FORKPOOL_FAKE_SYSTEMD_H */
