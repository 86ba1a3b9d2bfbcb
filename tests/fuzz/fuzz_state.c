/* SPDX-License-Identifier: MIT */
/*
 * fuzz_state.c — libFuzzer target for the fd store's state memfd parser
 * (agent/savedstate.c), as the next forkpoold reads a memfd that another
 * version of it, or a crash, left in systemd's store.
 *
 * An input is a little-endian uint64 file size (what fstat() says), then the
 * file's first bytes: its header, then records at their stride. The header
 * goes through fp_saved_header_check(), each record (and a short last one)
 * through fp_saved_record_check(), and a NUL-terminated copy of the input
 * through fp_saved_name_parse(). Every string and length an accepted record
 * hands on is then used as fdstore.c and the adopters use it, so that ASan
 * sees any read a check let through.
 *
 * Contracts asserted: a header is accepted only for a file that holds every
 * record; an accepted record's strings are terminated inside their fields,
 * its lengths are within their fields and its parameters well formed; a
 * parsed name formats back to itself.
 */
#include <endian.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "savedstate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond)                                                                          \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "%s:%d: contract broken: %s\n", __FILE__, __LINE__,        \
                                #cond);                                                            \
                        abort();                                                                   \
                }                                                                                  \
        } while (0)

static volatile size_t fuzz_sink;

#define TERMINATED(field) (memchr((field), '\0', sizeof(field)) != NULL)

static void use_record(const struct fp_saved_slot *s)
{
        FUZZ_ASSERT(TERMINATED(s->pool));
        fuzz_sink += strlen(s->pool);
        FUZZ_ASSERT(s->state == FP_SLOT_IDLE || s->state == FP_SLOT_LEASED);
        if (s->db_kind == FP_DB_POSTGRES) {
                const struct fp_lease_pg *pg = &s->pg;
                FUZZ_ASSERT(TERMINATED(pg->user) && TERMINATED(pg->dbname));
                FUZZ_ASSERT(pg->params_len <= sizeof(pg->params));
                FUZZ_ASSERT(fp_params_check(pg->params, pg->params_len) >= 0);
                FUZZ_ASSERT(pg->server_addr_len <= sizeof(pg->server_addr));
                FUZZ_ASSERT(!pg->has_cancel_key || pg->server_addr_len > 0);
                fuzz_sink += strlen(pg->user) + strlen(pg->dbname);
                /* As fp_pgconn_restore() and fp_pg_adopt() look values up. */
                const char *v = fp_params_get(pg->params, pg->params_len, "client_encoding");
                fuzz_sink += v ? strlen(v) : 0;
        } else {
                FUZZ_ASSERT(s->db_kind == FP_DB_MYSQL);
                const struct fp_lease_mysql *my = &s->my;
                FUZZ_ASSERT(TERMINATED(my->server_version) && TERMINATED(my->charset) &&
                            TERMINATED(my->user) && TERMINATED(my->db));
                fuzz_sink += strlen(my->server_version) + strlen(my->charset) + strlen(my->user) +
                             strlen(my->db);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        uint64_t file_size_le, epoch;

        if (size < sizeof(file_size_le))
                return 0;
        memcpy(&file_size_le, data, sizeof(file_size_le));
        uint64_t file_size = le64toh(file_size_le);
        data += sizeof(file_size_le);
        size -= sizeof(file_size_le);

        /* Exactly the bytes read, in their own buffer: ASan sees a read past them. */
        uint8_t *image = malloc(size ? size : 1);
        if (!image)
                return 0;
        memcpy(image, data, size);

        if (fp_saved_header_check(image, size, file_size, &epoch) == 0)
                FUZZ_ASSERT(file_size >= fp_saved_state_size());
        size_t at = size < FP_SAVED_HEADER_SIZE ? size : FP_SAVED_HEADER_SIZE;
        for (; at < size; at += FP_SAVED_SLOT_SIZE) {
                struct fp_saved_slot s;
                size_t len = size - at < FP_SAVED_SLOT_SIZE ? size - at : FP_SAVED_SLOT_SIZE;
                /* The record's own index, as a name would give it. */
                uint32_t index = 0;
                if (len >= 8)
                        memcpy(&index, image + at + 4, sizeof(index));
                uint8_t *rec = malloc(len);
                if (!rec)
                        break;
                memcpy(rec, image + at, len);
                if (fp_saved_record_check(rec, len, index, &s) == 0)
                        use_record(&s);
                free(rec);
        }

        char *name = malloc(size + 1);
        if (name) {
                memcpy(name, image, size);
                name[size] = '\0';
                uint32_t pool_id, index;
                if (fp_saved_name_parse(name, &epoch, &pool_id, &index)) {
                        char again[FP_SAVED_NAME_MAX];
                        FUZZ_ASSERT(pool_id < FP_SHM_MAX_POOLS &&
                                    index < FP_SHM_MAX_SLOTS_PER_POOL);
                        fp_saved_name_format(again, sizeof(again), epoch, pool_id, index);
                        uint64_t e2;
                        uint32_t p2, i2;
                        FUZZ_ASSERT(fp_saved_name_parse(again, &e2, &p2, &i2) && e2 == epoch &&
                                    p2 == pool_id && i2 == index);
                }
                free(name);
        }
        free(image);
        return 0;
}
