/* SPDX-License-Identifier: MIT */
/*
 * test_worker.c — libforkpool's own logic that needs no supervisor, linked
 * from its sources (the shared library exports only forkpool_*): a released
 * socket becomes the process's cached unconnected socket, and that cache is
 * never trusted once the application has put something else at its number
 * (a daemon that closes every descriptor, then opens files).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"

/* Whether fd is an open socket with no peer, and close-on-exec. */
static bool unconnected_socket(int fd)
{
        struct stat st;
        struct sockaddr_storage peer;
        socklen_t len = sizeof(peer);
        return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) &&
               getpeername(fd, (struct sockaddr *)&peer, &len) < 0 && errno == ENOTCONN &&
               (fcntl(fd, F_GETFD) & FD_CLOEXEC);
}

/* The lowest descriptor number that is open now and was not in before[0..n). */
static int new_fd(const bool *before, int n)
{
        for (int fd = 0; fd < n; fd++)
                if (!before[fd] && fcntl(fd, F_GETFD) >= 0)
                        return fd;
        return -1;
}

static void test_release_socket(void **state)
{
        enum {
                N = 256
        };
        bool open_before[N];
        int sv[2];
        char byte;
        (void)state;

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        for (int fd = 0; fd < N; fd++)
                open_before[fd] = fcntl(fd, F_GETFD) >= 0;

        /* The leased socket's number now holds an unconnected socket; the session's end sees EOF.
         */
        assert_int_equal(fp_release_socket(sv[0]), 0);
        assert_true(unconnected_socket(sv[0]));
        assert_int_equal(recv(sv[1], &byte, 1, MSG_DONTWAIT), 0);
        close(sv[1]);
        int cached = new_fd(open_before, N);
        assert_true(cached >= 0);
        assert_true(unconnected_socket(cached));

        /* The application closes the cached socket and opens a file at its number. */
        int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
        assert_true(null >= 0);
        assert_int_equal(dup2(null, cached), cached);
        close(null);

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        assert_int_equal(fp_release_socket(sv[0]), 0);
        /* The file was neither put under the released number nor closed. */
        assert_true(unconnected_socket(sv[0]));
        struct stat st;
        assert_int_equal(fstat(cached, &st), 0);
        assert_true(S_ISCHR(st.st_mode));
        assert_int_equal(recv(sv[1], &byte, 1, MSG_DONTWAIT), 0);
        close(sv[0]);
        close(sv[1]);
        close(cached);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_release_socket),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
