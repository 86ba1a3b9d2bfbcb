/* SPDX-License-Identifier: MIT */
/*
 * fuzz_proto.c — libFuzzer target for the control-message parser.
 *
 * Every input is one received datagram. It goes through fp_msg_check() as
 * both ends run it, and a message that passes goes through the checks its
 * receiver makes before it uses a field: forkpoold's (agent/control.c: the
 * header of a rejected message, string termination in an acquire and an admin
 * command, the packed session parameters of a release), libforkpool's
 * (worker/forkpool.c: the identifiers and parameters of a PostgreSQL or
 * MySQL lease, the text and errno of an error) and forkpoolctl's (the text of
 * an admin reply); the statement set of a lease or a release (its count
 * bounded by fp_msg_check(), a repeated hash found by fp_stmt_set_valid()).
 * Then every string the receiver goes on to use is used (strlen, lookups), in
 * a buffer of exactly the message's size, so that ASan sees any read a check
 * let through.
 *
 * Beyond memory safety it asserts the parser's contracts: an accepted message
 * is exactly its op's size; fp_params_check() counts the pairs a receiver
 * walks, fp_params_get() finds each name, and fp_params_add() rebuilds the
 * list byte for byte.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgparams.h"
#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken contract: libFuzzer reports the abort as a crash and keeps the input. */
#define FUZZ_ASSERT(cond)                                                                          \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "%s:%d: contract broken: %s\n", __FILE__, __LINE__,        \
                                #cond);                                                            \
                        abort();                                                                   \
                }                                                                                  \
        } while (0)

/* Keeps a computed value alive so that the reads producing it are not optimised away. */
static volatile size_t fuzz_sink;

/*
 * A packed "name\0value\0" list of params_len bytes in a field of cap bytes,
 * checked and used as its receivers do (agent/control.c, agent/drivers/pgconn.c,
 * worker/forkpool.c, worker/adopt_pg.c).
 */
static void fuzz_params(const char *params, size_t cap, uint32_t params_len)
{
        char rebuilt[FP_PARAMS_MAX];
        uint32_t rebuilt_len = 0;
        size_t pos = 0;
        int pairs, walked = 0;

        if (params_len > cap)
                return; /* every receiver drops the list here */
        pairs = fp_params_check(params, params_len);
        if (pairs < 0) {
                FUZZ_ASSERT(pairs == -EBADMSG);
                return;
        }

        /* Walked with strlen, as worker/adopt_pg.c builds its ParameterStatus messages. */
        while (pos < params_len) {
                const char *name = params + pos;
                const char *value = name + strlen(name) + 1;
                size_t vlen = strlen(value);

                FUZZ_ASSERT(*name != '\0');
                FUZZ_ASSERT(value + vlen < params + params_len);
                const char *found = fp_params_get(params, params_len, name);
                FUZZ_ASSERT(found && found <= value);
                FUZZ_ASSERT(fp_params_add(rebuilt, sizeof(rebuilt), &rebuilt_len, name, value) ==
                            0);
                pos = (size_t)(value - params) + vlen + 1;
                walked++;
        }
        FUZZ_ASSERT(walked == pairs);
        FUZZ_ASSERT(rebuilt_len == params_len && memcmp(rebuilt, params, params_len) == 0);

        /* The lookups the supervisor's connections make after a release. */
        static const char *const my_keys[] = {FP_MY_PARAM_STATUS, FP_MY_PARAM_DATABASE,
                                              FP_MY_PARAM_CHARSET};
        for (size_t i = 0; i < FP_PG_N_REPORTED; i++) {
                const char *v = fp_params_get(params, params_len, fp_pg_reported_params[i]);
                if (v)
                        fuzz_sink += strlen(v);
        }
        for (size_t i = 0; i < sizeof(my_keys) / sizeof(my_keys[0]); i++) {
                const char *v = fp_params_get(params, params_len, my_keys[i]);
                if (v)
                        fuzz_sink += strlen(v);
        }
}

/*
 * A statement set as its receivers use it (worker/forkpool.c lease_new,
 * agent/drivers/pgconn.c at a release): fp_msg_check() bounded its count,
 * and every hash in it is found. fp_stmt_set_valid(), which forkpoold asks of
 * a release's set (agent/control.c handle_release), says whether a hash
 * repeats, as comparing every pair does.
 */
static void fuzz_statements(const struct fp_stmt_set *set)
{
        FUZZ_ASSERT(set->count <= FP_STMTS_MAX);
        bool repeats = false;
        for (uint32_t i = 0; i < set->count && !repeats; i++)
                for (uint32_t j = i + 1; j < set->count && !repeats; j++)
                        repeats = memcmp(set->hash[i], set->hash[j], FP_STMT_HASH_LEN) == 0;
        FUZZ_ASSERT(fp_stmt_set_valid(set) == !repeats);
        struct fp_stmt_set copy = {0};
        for (uint32_t i = 0; i < set->count; i++) {
                FUZZ_ASSERT(fp_stmt_set_has(set, set->hash[i]));
                FUZZ_ASSERT(fp_stmt_set_add(&copy, set->hash[i]) == 0);
        }
        for (uint32_t i = 0; i < set->count; i++) {
                fp_stmt_set_remove(&copy, set->hash[i]);
                FUZZ_ASSERT(!fp_stmt_set_has(&copy, set->hash[i]));
        }
        FUZZ_ASSERT(copy.count == 0);
}

/* forkpoold's handling of an acquire (agent/control.c handle_acquire). */
static void fuzz_acquire(const struct fp_msg_acquire *msg)
{
        if (!fp_str_terminated(msg->pool, sizeof(msg->pool)) ||
            !fp_str_terminated(msg->label, sizeof(msg->label)))
                return;
        fuzz_sink += strlen(msg->pool) + strlen(msg->label) + (size_t)msg->timeout_ms;
        fuzz_sink += strcmp(msg->pool, "main") == 0;
}

/* libforkpool's handling of a lease (worker/forkpool.c lease_new, adopt_pg.c, adopt_mysql.c). */
static void fuzz_lease(const struct fp_msg_lease *msg)
{
        fuzz_statements(&msg->statements);
        if (msg->db_kind == FP_DB_MYSQL) {
                struct fp_lease_mysql my = msg->my;
                my.server_version[sizeof(my.server_version) - 1] = '\0';
                my.charset[sizeof(my.charset) - 1] = '\0';
                my.user[sizeof(my.user) - 1] = '\0';
                my.db[sizeof(my.db) - 1] = '\0';
                fuzz_sink += strlen(my.server_version) + strlen(my.charset) + strlen(my.user) +
                             strlen(my.db) + my.scramble[FP_MY_SCRAMBLE_LEN - 1];
                return;
        }

        struct fp_lease_pg info = msg->pg;

        info.user[sizeof(info.user) - 1] = '\0';
        info.dbname[sizeof(info.dbname) - 1] = '\0';
        fuzz_sink += strlen(info.user) + strlen(info.dbname);
        if (info.server_addr_len > 0 && info.server_addr_len <= sizeof(info.server_addr))
                fuzz_sink += info.server_addr.ss_family;
        fuzz_params(info.params, sizeof(info.params), info.params_len);
}

/* libforkpool's handling of an error reply (worker/forkpool.c error_reply). */
static void fuzz_error(const struct fp_msg_error *msg)
{
        char text[FP_ERRTEXT_MAX];

        memcpy(text, msg->text, sizeof(text));
        text[sizeof(text) - 1] = '\0';
        fuzz_sink += strlen(text);
        int error = msg->error < 0 && msg->error > -4096 ? msg->error : -EPROTO;
        FUZZ_ASSERT(error < 0);
}

/* forkpoold's handling of an admin command (agent/control.c handle_admin). */
static void fuzz_admin(const struct fp_msg_admin *msg)
{
        if (!fp_str_terminated(msg->pool, sizeof(msg->pool)))
                return;
        fuzz_sink += strlen(msg->pool) + msg->command + msg->arg;
}

/* forkpoolctl's handling of an admin reply (ctl/ctl_commands.c). */
static void fuzz_admin_ok(const struct fp_msg_admin_ok *msg)
{
        char text[FP_ERRTEXT_MAX];

        memcpy(text, msg->text, sizeof(text));
        text[sizeof(text) - 1] = '\0';
        fuzz_sink += strlen(text);
}

/*
 * The size of the struct a receiver casts an accepted message of this op to,
 * 0 for an op this target does not know yet (add a case and a handler below
 * with every new op).
 */
static size_t fuzz_op_size(uint16_t op)
{
        switch (op) {
        case FP_OP_HELLO:
                return sizeof(struct fp_msg_hello);
        case FP_OP_HELLO_OK:
                return sizeof(struct fp_msg_hello_ok);
        case FP_OP_ACQUIRE:
                return sizeof(struct fp_msg_acquire);
        case FP_OP_LEASE:
                return sizeof(struct fp_msg_lease);
        case FP_OP_RELEASE:
                return sizeof(struct fp_msg_release);
        case FP_OP_ERROR:
                return sizeof(struct fp_msg_error);
        case FP_OP_CANCEL:
                return sizeof(struct fp_msg_cancel);
        case FP_OP_ADMIN:
                return sizeof(struct fp_msg_admin);
        case FP_OP_ADMIN_OK:
                return sizeof(struct fp_msg_admin_ok);
        default:
                return 0;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct fp_msg_hdr hdr = {0};

        /* Receivers read into FP_MSG_MAX bytes; a longer datagram is truncated and dropped. */
        if (size > FP_MSG_MAX)
                return 0;
        /* Exactly size bytes (malloc'ed, so aligned like the receivers' buffers). */
        void *buf = malloc(size ? size : 1);
        if (!buf)
                return 0;
        if (size)
                memcpy(buf, data, size);

        int r = fp_msg_check(buf, size);
        memcpy(&hdr, buf, size < sizeof(hdr) ? size : sizeof(hdr));
        fuzz_sink += strlen(fp_op_name(hdr.op)) + hdr.request_id;
        if (r < 0) {
                FUZZ_ASSERT(r == -EBADMSG || r == -EPROTO || r == -EOPNOTSUPP);
                free(buf);
                return 0;
        }

        FUZZ_ASSERT(size >= sizeof(hdr) && hdr.size == size);
        /* Receivers cast the buffer to the op's struct: it must be exactly that size. */
        FUZZ_ASSERT(fuzz_op_size(hdr.op) == size || fuzz_op_size(hdr.op) == 0);
        switch (hdr.op) {
        case FP_OP_HELLO:
                fuzz_sink += (size_t)((const struct fp_msg_hello *)buf)->pid;
                break;
        case FP_OP_HELLO_OK:
                fuzz_sink += (size_t)((const struct fp_msg_hello_ok *)buf)->supervisor_pid;
                break;
        case FP_OP_ACQUIRE:
                fuzz_acquire(buf);
                break;
        case FP_OP_LEASE:
                fuzz_lease(buf);
                break;
        case FP_OP_RELEASE: {
                const struct fp_msg_release *msg = buf;
                fuzz_params(msg->params, sizeof(msg->params), msg->params_len);
                fuzz_statements(&msg->statements);
                break;
        }
        case FP_OP_ERROR:
                fuzz_error(buf);
                break;
        case FP_OP_CANCEL:
                fuzz_sink += (size_t)((const struct fp_msg_cancel *)buf)->lease_id;
                break;
        case FP_OP_ADMIN:
                fuzz_admin(buf);
                break;
        case FP_OP_ADMIN_OK:
                fuzz_admin_ok(buf);
                break;
        default:
                break; /* an op newer than this target */
        }
        free(buf);
        return 0;
}
