/* SPDX-License-Identifier: MIT */
/*
 * savedstate.c — the fd store's state memfd: its layout and the checks on a
 * memfd another forkpoold left (savedstate.h).
 */
#include "savedstate.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

void fp_saved_header_init(struct fp_saved_header *hdr, uint64_t epoch)
{
        memset(hdr, 0, sizeof(*hdr));
        hdr->magic = FP_SAVED_STATE_MAGIC;
        hdr->version = FP_SAVED_STATE_VERSION;
        hdr->header_size = FP_SAVED_HEADER_SIZE;
        hdr->record_size = FP_SAVED_SLOT_SIZE;
        hdr->n_records = FP_SAVED_RECORDS;
        hdr->epoch = epoch;
}

int fp_saved_header_check(const void *buf, size_t len, uint64_t file_size, uint64_t *ret_epoch)
{
        struct fp_saved_header hdr;

        if (len < sizeof(hdr))
                return -EBADMSG;
        memcpy(&hdr, buf, sizeof(hdr));
        if (hdr.magic != FP_SAVED_STATE_MAGIC)
                return -EBADMSG;
        if (hdr.version != FP_SAVED_STATE_VERSION)
                return -EPROTONOSUPPORT;
        if (hdr.header_size != FP_SAVED_HEADER_SIZE || hdr.record_size != FP_SAVED_SLOT_SIZE ||
            hdr.n_records != FP_SAVED_RECORDS || file_size < fp_saved_state_size())
                return -EBADMSG;
        *ret_epoch = hdr.epoch;
        return 0;
}

/* Terminates a fixed string field in place. */
#define TERMINATE(field) ((field)[sizeof(field) - 1] = '\0')

static int check_pg(struct fp_lease_pg *pg)
{
        TERMINATE(pg->user);
        TERMINATE(pg->dbname);
        if (pg->params_len > sizeof(pg->params) || fp_params_check(pg->params, pg->params_len) < 0)
                return -EBADMSG;
        if (pg->backend_pid <= 0)
                return -EBADMSG;
        /* An address that cannot be right: no cancel, rather than a wrong one. */
        if (pg->server_addr_len == 0 || pg->server_addr_len > sizeof(pg->server_addr) ||
            pg->has_cancel_key > 1) {
                pg->server_addr_len = 0;
                pg->has_cancel_key = 0;
        }
        return 0;
}

static void check_my(struct fp_lease_mysql *my)
{
        TERMINATE(my->server_version);
        TERMINATE(my->charset);
        TERMINATE(my->user);
        TERMINATE(my->db);
}

int fp_saved_record_check(const void *buf, size_t len, uint32_t index, struct fp_saved_slot *ret)
{
        struct fp_saved_slot s;

        if (len < sizeof(s))
                return -EBADMSG;
        memcpy(&s, buf, sizeof(s));
        if (s.magic != FP_SAVED_SLOT_MAGIC || s.index != index)
                return -ENOENT;
        TERMINATE(s.pool);
        if (s.pool[0] == '\0' || (s.state != FP_SLOT_IDLE && s.state != FP_SLOT_LEASED) ||
            (s.state == FP_SLOT_LEASED && (s.holder_pid <= 0 || s.lease_id == 0)) ||
            s.txn > FP_TXN_UNKNOWN)
                return -EBADMSG;
        if (s.db_kind == FP_DB_POSTGRES) {
                if (check_pg(&s.pg) < 0)
                        return -EBADMSG;
        } else if (s.db_kind == FP_DB_MYSQL)
                check_my(&s.my);
        else
                return -EBADMSG;
        *ret = s;
        return 0;
}

void fp_saved_name_format(char *buf, size_t len, uint64_t epoch, uint32_t pool_id, uint32_t index)
{
        snprintf(buf, len, "c%016" PRIx64 ".%" PRIu32 ".%" PRIu32, epoch, pool_id, index);
}

/* Parses decimal digits at *p (at least one, no sign, at most max); advances *p. */
static bool parse_uint(const char **p, uint32_t max, uint32_t *ret)
{
        const char *s = *p;
        uint64_t v = 0;
        if (*s < '0' || *s > '9')
                return false;
        while (*s >= '0' && *s <= '9') {
                v = v * 10 + (uint64_t)(*s - '0');
                if (v > max)
                        return false;
                s++;
        }
        *ret = (uint32_t)v;
        *p = s;
        return true;
}

bool fp_saved_name_parse(const char *name, uint64_t *ret_epoch, uint32_t *ret_pool_id,
                         uint32_t *ret_index)
{
        uint64_t epoch = 0;
        uint32_t pool_id, index;
        const char *p = name;

        if (*p++ != 'c')
                return false;
        for (int i = 0; i < 16; i++, p++) {
                int d;
                if (*p >= '0' && *p <= '9')
                        d = *p - '0';
                else if (*p >= 'a' && *p <= 'f')
                        d = *p - 'a' + 10;
                else
                        return false;
                epoch = epoch << 4 | (uint64_t)d;
        }
        if (*p++ != '.' || !parse_uint(&p, FP_SHM_MAX_POOLS - 1, &pool_id) || *p++ != '.' ||
            !parse_uint(&p, FP_SHM_MAX_SLOTS_PER_POOL - 1, &index) || *p != '\0')
                return false;
        *ret_epoch = epoch;
        *ret_pool_id = pool_id;
        *ret_index = index;
        return true;
}

int fp_saved_slot_backend_id(const struct fp_saved_slot *s)
{
        return s->db_kind == FP_DB_MYSQL ? (int)s->my.thread_id : s->pg.backend_pid;
}
