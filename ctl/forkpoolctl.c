/* SPDX-License-Identifier: MIT */
/*
 * forkpoolctl.c — looks into a running forkpoold.
 *
 *   forkpoolctl [--socket PATH] [--help] [--version] COMMAND [ARGS]
 *
 * Commands read the supervisor's shared segment directly instead of asking it
 * over the control socket, so they answer even while the supervisor is busy,
 * and each pool they show is one consistent snapshot (the segment's seqlock).
 * Everything is copied out of the segment before anything is printed.
 *
 * Exit status: 0 on success, 1 when the answer is "no" (no supervisor, a stale
 * segment, no such pool) or output failed, 2 on a usage error.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "ctl_commands.h"
#include "forkpool.h"

/* The control socket, as libforkpool finds it: the option, $FORKPOOL_SOCKET, the default. */
static const char *ctl_socket_path(const char *option)
{
        const char *env;

        if (option)
                return option;
        env = getenv("FORKPOOL_SOCKET");
        return env && *env ? env : FORKPOOL_DEFAULT_SOCKET;
}

int main(int argc, char *argv[])
{
        static const struct option options[] = {
                {"socket", required_argument, NULL, 's'},
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, 'V'},
                {0},
        };
        const char *socket_option = NULL;
        int c;

        opterr = 0; /* we say it in one line, with the hint */
        /* "+": stop at the command; its options are its own. */
        while ((c = getopt_long(argc, argv, "+:h", options, NULL)) != -1) {
                switch (c) {
                case 's':
                        if (!*optarg)
                                return ctl_usage_error("empty path given to option", "--socket");
                        socket_option = optarg;
                        break;
                case 'h':
                        ctl_usage(stdout);
                        return ctl_finish_output();
                case 'V':
                        printf("forkpoolctl %s\n", FORKPOOL_VERSION_STRING);
                        return ctl_finish_output();
                default:
                        return ctl_option_error(c, argv);
                }
        }
        if (optind >= argc) {
                fprintf(stderr, "forkpoolctl: missing command\n%s", ctl_usage_hint);
                return CTL_EXIT_USAGE;
        }
        const char *cmd = argv[optind];
        if (strcmp(cmd, "status") == 0)
                return ctl_cmd_status(argc - optind, argv + optind, ctl_socket_path(socket_option));
        if (strcmp(cmd, "metrics") == 0)
                return ctl_cmd_metrics(argc - optind, argv + optind,
                                       ctl_socket_path(socket_option));
        if (strcmp(cmd, "top") == 0)
                return ctl_cmd_top(argc - optind, argv + optind, ctl_socket_path(socket_option));
        if (strcmp(cmd, "events") == 0)
                return ctl_cmd_events(argc - optind, argv + optind, ctl_socket_path(socket_option));
        if (strcmp(cmd, "url-check") == 0)
                return ctl_cmd_url_check(argc - optind, argv + optind);
        if (ctl_is_extra_command(cmd))
                return ctl_cmd_admin(argc - optind, argv + optind, ctl_socket_path(socket_option));
        return ctl_usage_error("unknown command", cmd);
}
