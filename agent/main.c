/* SPDX-License-Identifier: MIT */
/*
 * main.c — forkpoold's command line.
 *
 *   forkpoold --config FILE
 *   forkpoold --url URL [--pool-size N] [--max-overflow M] [--pool-timeout SEC]
 *             [--socket PATH] [--log-level LEVEL]
 *
 * A bad configuration is one line on stderr and exit status 78 (EX_CONFIG);
 * nothing is started.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "control.h"
#include "forkpool.h"
#include "log.h"
#include "reload.h"
#include "shutdown.h"
#include "supervisor.h"

#define EXIT_USAGE  64
#define EXIT_CONFIG 78

static void usage(FILE *out)
{
        fprintf(out,
                "Usage: forkpoold --config FILE [--socket PATH] [--log-level LEVEL]\n"
                "       forkpoold --url URL [--pool-size N] [--max-overflow M]\n"
                "                 [--pool-timeout SEC] [--socket PATH] [--log-level LEVEL]\n"
                "\n"
                "Shares a capped set of database connections among the worker processes of\n"
                "prefork servers; workers lease them with libforkpool.\n"
                "\n"
                "  --config FILE        the configuration file (see the README)\n"
                "  --url URL            one pool named \"default\" on this database URL\n"
                "  --pool-size N        connections kept open (default 5)\n"
                "  --max-overflow M     connections allowed beyond pool-size (default 10,\n"
                "                       -1 = no limit)\n"
                "  --pool-timeout SEC   how long an acquire waits (default 30)\n"
                "  --socket PATH        the control socket (default %s)\n"
                "  --log-level LEVEL    error, warning, info (default) or debug\n"
                "  --connect-timeout, --reset-on-return, --poolclass, --pool-recycle,\n"
                "  --pool-pre-ping, --pool-use-lifo, --connect-rate, --echo-pool,\n"
                "  --on-connect, --leak-timeout, --max-lease-time VALUE\n"
                "                       the pool key of the same name (see the README)\n"
                "  --version, --help\n",
                FORKPOOL_DEFAULT_SOCKET);
}

/*
 * Overwrites the value of --url in our own argv, so that the password does
 * not stay visible in ps and /proc/PID/cmdline.
 */
static void scrub_argv_secret(char *arg)
{
        char *at = strrchr(arg, '@');
        char *colon = strstr(arg, "://");
        if (!at || !colon)
                return;
        char *pw = strchr(colon + 3, ':');
        if (pw && pw < at)
                memset(pw + 1, '*', (size_t)(at - pw - 1));
}

static int parse_log_level(const char *text, enum fp_log_level *ret)
{
        static const char *const names[] = {"error", "warning", "info", "debug"};
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                if (strcmp(text, names[i]) == 0) {
                        *ret = (enum fp_log_level)i;
                        return 0;
                }
        return -EINVAL;
}

/* Command-line options that set a key of the quick-start pool, named like the key. */
static const char *const pool_key_options[] = {
        "connect-timeout", "reset-on-return", "poolclass",      "pool-recycle",
        "pool-pre-ping",   "pool-use-lifo",   "connect-rate",   "echo-pool",
        "on-connect",      "leak-timeout",    "max-lease-time",
};
#define N_POOL_KEY_OPTIONS   (sizeof(pool_key_options) / sizeof(pool_key_options[0]))
#define POOL_KEY_OPTION_BASE 1000

/* "pool-recycle" → "pool_recycle" */
static void option_to_key(const char *option, char *key, size_t len)
{
        snprintf(key, len, "%s", option);
        for (char *c = key; *c; c++)
                if (*c == '-')
                        *c = '_';
}

int main(int argc, char **argv)
{
        struct option options[16 + N_POOL_KEY_OPTIONS] = {
                {"config", required_argument, NULL, 'c'},
                {"url", required_argument, NULL, 'u'},
                {"pool-size", required_argument, NULL, 's'},
                {"max-overflow", required_argument, NULL, 'o'},
                {"pool-timeout", required_argument, NULL, 't'},
                {"socket", required_argument, NULL, 'S'},
                {"log-level", required_argument, NULL, 'l'},
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, 'V'},
        };
        const char *config_path = NULL, *url = NULL, *pool_size = NULL, *max_overflow = NULL,
                   *pool_timeout = NULL, *socket_path = NULL, *log_level = NULL;
        const char *pool_key_values[N_POOL_KEY_OPTIONS] = {0};
        bool any_pool_key = false;
        char *url_copy = NULL;
        char err[FP_CONFIG_ERR_MAX];
        struct fp_config cfg;
        struct fp_supervisor sup;
        int c, r;

        for (size_t i = 0; i < N_POOL_KEY_OPTIONS; i++)
                options[9 + i] = (struct option){pool_key_options[i], required_argument, NULL,
                                                 POOL_KEY_OPTION_BASE + (int)i};

        while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
                switch (c) {
                case 'c':
                        config_path = optarg;
                        break;
                case 'u':
                        free(url_copy);
                        url_copy = strdup(optarg);
                        url = url_copy;
                        scrub_argv_secret(optarg);
                        break;
                case 's':
                        pool_size = optarg;
                        break;
                case 'o':
                        max_overflow = optarg;
                        break;
                case 't':
                        pool_timeout = optarg;
                        break;
                case 'S':
                        socket_path = optarg;
                        break;
                case 'l':
                        log_level = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                case 'V':
                        printf("forkpoold %s\n", FORKPOOL_VERSION_STRING);
                        return 0;
                default:
                        if (c >= POOL_KEY_OPTION_BASE &&
                            c < POOL_KEY_OPTION_BASE + (int)N_POOL_KEY_OPTIONS) {
                                pool_key_values[c - POOL_KEY_OPTION_BASE] = optarg;
                                any_pool_key = true;
                                break;
                        }
                        usage(stderr);
                        return EXIT_USAGE;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "forkpoold: unexpected argument '%s'\n", argv[optind]);
                return EXIT_USAGE;
        }
        if (!config_path && !url) {
                fprintf(stderr, "forkpoold: give --config FILE or --url URL (see --help)\n");
                return EXIT_USAGE;
        }
        if (!url && (pool_size || max_overflow || pool_timeout || any_pool_key)) {
                fprintf(stderr, "forkpoold: pool options such as --pool-size only apply to "
                                "--url\n");
                return EXIT_USAGE;
        }

        fp_config_init(&cfg);
        r = config_path ? fp_config_load(&cfg, config_path, err, sizeof(err)) : 0;
        if (r >= 0 && url)
                r = fp_config_quick_pool(&cfg, url, pool_size, max_overflow, pool_timeout, err,
                                         sizeof(err));
        for (size_t i = 0; r >= 0 && i < N_POOL_KEY_OPTIONS; i++) {
                char key[32], reason[FP_CONFIG_ERR_MAX];
                if (!pool_key_values[i])
                        continue;
                option_to_key(pool_key_options[i], key, sizeof(key));
                r = fp_config_set_pool_key(&cfg, "default", key, pool_key_values[i], reason,
                                           sizeof(reason));
                if (r < 0 && snprintf(err, sizeof(err), "--%s: %s", pool_key_options[i], reason) >=
                                     (int)sizeof(err))
                        err[sizeof(err) - 1] = '\0';
        }
        if (url_copy) {
                explicit_bzero(url_copy, strlen(url_copy));
                free(url_copy);
        }
        if (r >= 0 && socket_path) {
                free(cfg.socket_path);
                cfg.socket_path = strdup(socket_path);
                if (!cfg.socket_path) {
                        snprintf(err, sizeof(err), "out of memory");
                        r = -ENOMEM;
                }
        }
        if (r >= 0 && log_level && parse_log_level(log_level, &cfg.log_level) < 0) {
                snprintf(err, sizeof(err),
                         "--log-level: expected error, warning, info or debug, "
                         "not '%s'",
                         log_level);
                r = -EINVAL;
        }
        if (r >= 0)
                r = fp_config_validate(&cfg, err, sizeof(err));
        if (r < 0) {
                fprintf(stderr, "forkpoold: %s\n", err);
                fp_config_free(&cfg);
                return EXIT_CONFIG;
        }

        r = fp_supervisor_init(&sup, &cfg, &fp_control_transport);
        if (r >= 0)
                r = fp_shutdown_watch_signals(&sup);
        if (r >= 0)
                r = fp_reload_watch_signal(&sup);
        if (r < 0) {
                fp_supervisor_done(&sup);
                return 1;
        }
        r = fp_supervisor_run(&sup);
        fp_supervisor_done(&sup);
        log_info("stopped");
        return r;
}
