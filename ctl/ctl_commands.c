/* SPDX-License-Identifier: MIT */
/*
 * ctl_commands.c — forkpoolctl's admin, events and url-check commands
 * (ctl_commands.h).
 */
#include "ctl_commands.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"
#include "segment.h"
#include "sockio.h"
#include "url.h"

#define EXIT_FAILED        1
#define EXIT_USAGE         2
#define ADMIN_TIMEOUT_MS   10000
#define FOLLOW_INTERVAL_MS 200

static int usage_error(const char *what)
{
        fprintf(stderr, "forkpoolctl: %s\nTry 'forkpoolctl --help' for more information.\n", what);
        return EXIT_USAGE;
}

int ctl_is_extra_command(const char *name)
{
        static const char *const names[] = {"dispose",    "pause",  "resume",   "reload",
                                            "kill-lease", "events", "url-check"};
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                if (strcmp(name, names[i]) == 0)
                        return 1;
        return 0;
}

/* --- admin commands --- */

/* Sends one admin message and prints the answer. Returns the exit status. */
static int admin_send(const char *socket_path, uint32_t command, const char *pool, uint32_t arg)
{
        union {
                struct fp_msg_hdr hdr;
                struct fp_msg_error error;
                struct fp_msg_admin_ok ok;
                char bytes[FP_MSG_MAX];
        } reply;
        struct fp_msg_admin msg;
        struct pollfd p;

        int fd = fp_connect_seqpacket(socket_path);
        if (fd == -ENAMETOOLONG)
                return usage_error("socket path too long");
        if (fd < 0) {
                fprintf(stderr, "forkpoolctl: no forkpoold is listening on %s: %s\n", socket_path,
                        strerror(-fd));
                return EXIT_FAILED;
        }
        fp_msg_init(&msg.hdr, FP_OP_ADMIN, sizeof(msg), 1);
        msg.command = command;
        msg.arg = arg;
        snprintf(msg.pool, sizeof(msg.pool), "%s", pool ? pool : "");
        int sent = fp_send_msg(fd, &msg, sizeof(msg), -1, 0);
        p = (struct pollfd){.fd = fd, .events = POLLIN};
        ssize_t n = poll(&p, 1, ADMIN_TIMEOUT_MS) == 1
                            ? fp_recv_msg(fd, reply.bytes, sizeof(reply), NULL, 0)
                            : -ETIMEDOUT;
        close(fd);
        if (n <= 0 || fp_msg_check(reply.bytes, (size_t)n) < 0) {
                fprintf(stderr, "forkpoolctl: forkpoold did not answer (%s)\n",
                        strerror(n < 0      ? (int)-n
                                 : sent < 0 ? -sent
                                            : EPROTO));
                return EXIT_FAILED;
        }
        if (reply.hdr.op == FP_OP_ERROR) {
                reply.error.text[sizeof(reply.error.text) - 1] = '\0';
                fprintf(stderr, "forkpoolctl: %s\n", reply.error.text);
                return EXIT_FAILED;
        }
        if (reply.hdr.op != FP_OP_ADMIN_OK) {
                fprintf(stderr, "forkpoolctl: unexpected answer from forkpoold\n");
                return EXIT_FAILED;
        }
        reply.ok.text[sizeof(reply.ok.text) - 1] = '\0';
        printf("%s\n", reply.ok.text);
        return 0;
}

int ctl_cmd_admin(int argc, char *argv[], const char *socket_path)
{
        static const struct {
                const char *name;
                uint32_t command;
                int args; /* after the command */
        } commands[] = {
                {"dispose", FP_ADMIN_DISPOSE, 1},       {"pause", FP_ADMIN_PAUSE, 1},
                {"resume", FP_ADMIN_RESUME, 1},         {"reload", FP_ADMIN_RELOAD, 0},
                {"kill-lease", FP_ADMIN_KILL_LEASE, 2},
        };
        char what[160];

        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
                if (strcmp(argv[0], commands[i].name) != 0)
                        continue;
                if (argc - 1 != commands[i].args) {
                        snprintf(what, sizeof(what), "%s takes %s", argv[0],
                                 commands[i].args == 0   ? "no argument"
                                 : commands[i].args == 1 ? "one argument: POOL"
                                                         : "two arguments: POOL SLOT");
                        return usage_error(what);
                }
                uint32_t slot = 0;
                if (commands[i].args == 2) {
                        char *end;
                        unsigned long v = strtoul(argv[2], &end, 10);
                        if (!*argv[2] || *end || v >= FP_SHM_MAX_SLOTS_PER_POOL) {
                                snprintf(what, sizeof(what), "not a slot number: '%s'", argv[2]);
                                return usage_error(what);
                        }
                        slot = (uint32_t)v;
                }
                if (commands[i].args >= 1 && strlen(argv[1]) >= FP_NAME_MAX)
                        return usage_error("pool name too long");
                return admin_send(socket_path, commands[i].command,
                                  commands[i].args ? argv[1] : NULL, slot);
        }
        return usage_error("unknown command");
}

/* --- events --- */

static int open_segment(const char *socket_path, struct fp_segment *seg)
{
        char name[FP_SHM_NAME_MAX];
        fp_segment_name(socket_path, name);
        int r = fp_segment_find(seg, socket_path);
        if (r < 0) {
                fprintf(stderr,
                        "forkpoolctl: no forkpoold is running for %s (segment /dev/shm%s.*: %s)\n",
                        socket_path, name, strerror(-r));
                return EXIT_FAILED;
        }
        return 0;
}

/*
 * Whether seg is no longer its supervisor's: marked obsolete (a reload, a
 * restart, a graceful stop), or its name now names another file or none (a
 * supervisor killed before it could say so).
 */
static bool segment_gone(const struct fp_segment *seg)
{
        char path[sizeof("/dev/shm") + FP_SHM_NAME_MAX];
        struct stat st;

        if (__atomic_load_n(&seg->hdr->obsolete, __ATOMIC_ACQUIRE))
                return true;
        snprintf(path, sizeof(path), "/dev/shm%s", seg->name);
        return stat(path, &st) < 0 || (uint64_t)st.st_dev != seg->dev ||
               (uint64_t)st.st_ino != seg->ino;
}

static const char *pool_name(const struct fp_segment *seg, uint32_t i, char *buf, size_t len)
{
        struct fp_shm_pool pool;
        if (fp_segment_snapshot(seg, i, &pool, NULL, 0) < 0)
                snprintf(buf, len, "#%u", i);
        else
                snprintf(buf, len, "%s", pool.name);
        return buf;
}

static void print_event(const struct fp_segment *seg, const struct fp_shm_event *ev, bool json)
{
        char pool[FP_SHM_POOL_NAME_MAX];
        time_t t = (time_t)(ev->time_usec / 1000000u);
        struct tm tm;
        char when[32];

        localtime_r(&t, &tm);
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
        pool_name(seg, ev->pool, pool, sizeof(pool));
        if (!json) {
                printf("%s.%06u %-6" PRIu64 " %-15s pool %s", when,
                       (unsigned)(ev->time_usec % 1000000u), ev->seq, fp_event_type_name(ev->type),
                       pool);
                if (ev->slot != UINT32_MAX)
                        printf(" slot %u", ev->slot);
                if (ev->pid)
                        printf(" pid %d", ev->pid);
                if (ev->backend_pid)
                        printf(" backend %d", ev->backend_pid);
                if (ev->duration_usec)
                        printf(" %.3f ms", (double)ev->duration_usec / 1000.0);
                if (ev->error)
                        printf(" (%s)", strerror(-ev->error));
                printf("\n");
                return;
        }
        struct json_object *o = json_object_new_object();
        json_object_object_add(o, "seq", json_object_new_int64((int64_t)ev->seq));
        json_object_object_add(o, "time_usec", json_object_new_int64((int64_t)ev->time_usec));
        json_object_object_add(o, "type", json_object_new_string(fp_event_type_name(ev->type)));
        json_object_object_add(o, "pool", json_object_new_string(pool));
        json_object_object_add(o, "slot",
                               ev->slot == UINT32_MAX ? NULL : json_object_new_int64(ev->slot));
        json_object_object_add(o, "pid", ev->pid ? json_object_new_int(ev->pid) : NULL);
        json_object_object_add(o, "backend_pid",
                               ev->backend_pid ? json_object_new_int(ev->backend_pid) : NULL);
        json_object_object_add(o, "duration_usec",
                               json_object_new_int64((int64_t)ev->duration_usec));
        json_object_object_add(o, "error",
                               ev->error ? json_object_new_string(strerror(-ev->error)) : NULL);
        printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        json_object_put(o);
}

int ctl_cmd_events(int argc, char *argv[], const char *socket_path)
{
        static const struct option options[] = {
                {"follow", no_argument, NULL, 'f'},
                {"json", no_argument, NULL, 'j'},
                {"last", required_argument, NULL, 'n'},
                {0},
        };
        bool follow = false, json = false;
        uint64_t last_n = 50;
        struct fp_segment seg;
        int c;

        optind = 1;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "+fjn:", options, NULL)) != -1) {
                switch (c) {
                case 'f':
                        follow = true;
                        break;
                case 'j':
                        json = true;
                        break;
                case 'n': {
                        char *end;
                        last_n = strtoull(optarg, &end, 10);
                        if (!*optarg || *end)
                                return usage_error("--last takes a number");
                        break;
                }
                default:
                        return usage_error("events takes --follow, --json and --last N");
                }
        }
        if (optind < argc)
                return usage_error("events takes no argument");
        if (open_segment(socket_path, &seg) != 0)
                return EXIT_FAILED;

        uint64_t newest = fp_segment_event_last(&seg);
        uint64_t next = newest > last_n ? newest - last_n + 1 : 1;
        if (newest >= FP_SHM_EVENTS && next <= newest - FP_SHM_EVENTS)
                next = newest - FP_SHM_EVENTS + 1;
        for (;;) {
                newest = fp_segment_event_last(&seg);
                for (; next <= newest; next++) {
                        struct fp_shm_event ev;
                        int r = fp_segment_event_read(&seg, next, &ev);
                        if (r == -ESTALE)
                                continue; /* overwritten meanwhile: a gap, not an error */
                        if (r < 0)
                                break;
                        print_event(&seg, &ev, json);
                }
                fflush(stdout);
                if (!follow)
                        break;
                if (segment_gone(&seg)) {
                        fprintf(stderr, "forkpoolctl: the segment was replaced or removed (a "
                                        "reload, a restart or a stop); run events again\n");
                        break;
                }
                struct timespec ts = {0, FOLLOW_INTERVAL_MS * 1000000L};
                nanosleep(&ts, NULL);
        }
        fp_segment_close(&seg);
        return ferror(stdout) ? EXIT_FAILED : 0;
}

/* --- url-check --- */

int ctl_cmd_url_check(int argc, char *argv[])
{
        struct fp_url url;
        char err[512], masked[1024];

        if (argc != 2)
                return usage_error("url-check takes one argument: URL");
        if (fp_url_parse(argv[1], &url, err, sizeof(err)) < 0) {
                fprintf(stderr, "forkpoolctl: %s\n", err);
                return EXIT_FAILED;
        }
        fp_url_format_masked(&url, masked, sizeof(masked));
        printf("url       %s\n", masked);
        printf("scheme    %s\n", url.scheme);
        printf("user      %s\n", url.user ? url.user : "(default)");
        printf("password  %s\n", url.password ? "*** (set)" : "(none)");
        printf("host      %s\n", url.host ? url.host : "(default)");
        printf("port      %s\n", url.port ? url.port : "(default)");
        printf("database  %s\n", url.database ? url.database : "(default)");
        for (size_t i = 0; i < url.n_params; i++)
                printf("param     %s = %s\n", url.param_keys[i], url.param_values[i]);
        if (strcmp(url.scheme, "postgresql") == 0)
                printf("forced    sslmode=disable gssencmode=disable (a leased connection "
                       "cannot carry TLS)\n");
        fp_url_free(&url);
        return ferror(stdout) ? EXIT_FAILED : 0;
}
