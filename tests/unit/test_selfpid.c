/* SPDX-License-Identifier: MIT */
/*
 * test_selfpid.c — the cached pid (common/selfpid.c): it is getpid()'s, in
 * the process that asked first, in a forked child, in a child made by a raw
 * clone() that runs no pthread_atfork handler, and in a child of a child.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "selfpid.h"

/* Runs in a child: 0 if fp_self_pid() is its own pid, before and after a child of its own. */
static int child_checks(int depth)
{
        if (fp_self_pid() != getpid())
                return 1;
        if (depth > 0) {
                pid_t pid = fork();
                if (pid < 0)
                        return 2;
                if (pid == 0)
                        _exit(child_checks(depth - 1));
                int status;
                if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
                    WEXITSTATUS(status) != 0)
                        return 3;
        }
        return fp_self_pid() == getpid() ? 0 : 4;
}

static int run_child(bool raw)
{
        pid_t pid = raw ? (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0) : fork();
        if (pid < 0)
                return -1;
        if (pid == 0)
                _exit(child_checks(1));
        int status;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
                return -1;
        return WEXITSTATUS(status);
}

static void test_parent(void **state)
{
        (void)state;
        assert_int_equal(fp_self_pid(), getpid());
        assert_int_equal(fp_self_pid(), getpid());
}

static void test_fork(void **state)
{
        (void)state;
        assert_int_equal(fp_self_pid(), getpid()); /* cached before the fork */
        assert_int_equal(run_child(false), 0);
        assert_int_equal(fp_self_pid(), getpid());
}

static void test_raw_clone(void **state)
{
        (void)state;
        assert_int_equal(fp_self_pid(), getpid());
        assert_int_equal(run_child(true), 0);
        assert_int_equal(fp_self_pid(), getpid());
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parent),
                cmocka_unit_test(test_fork),
                cmocka_unit_test(test_raw_clone),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
