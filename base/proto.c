/* SPDX-License-Identifier: MIT */
/*
 * proto.c — validation and helpers for the control protocol (proto.h).
 */
#include "proto.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

void fp_msg_init(struct fp_msg_hdr *hdr, enum fp_op op, size_t size, uint32_t request_id)
{
        memset(hdr, 0, size);
        hdr->magic = FP_PROTO_MAGIC;
        hdr->version = FP_PROTO_VERSION;
        hdr->op = (uint16_t)op;
        hdr->size = (uint32_t)size;
        hdr->request_id = request_id;
}

/* The exact size each op requires, or 0 for an unknown op. */
static size_t msg_expected_size(uint32_t op)
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
        case FP_OP_PIN:
                return sizeof(struct fp_msg_pin);
        default:
                return 0;
        }
}

int fp_msg_check(const void *buf, size_t len)
{
        struct fp_msg_hdr hdr;

        if (len < sizeof(hdr))
                return -EBADMSG;
        memcpy(&hdr, buf, sizeof(hdr));
        if (hdr.magic != FP_PROTO_MAGIC || hdr.version != FP_PROTO_VERSION)
                return -EPROTO;
        if (hdr.size != len)
                return -EBADMSG;
        size_t expected = msg_expected_size(hdr.op);
        if (expected == 0)
                return -EOPNOTSUPP;
        if (len != expected)
                return -EBADMSG;
        if (hdr.op == FP_OP_LEASE || hdr.op == FP_OP_RELEASE) {
                size_t at = hdr.op == FP_OP_LEASE
                                    ? offsetof(struct fp_msg_lease, statements.count)
                                    : offsetof(struct fp_msg_release, statements.count);
                uint32_t count;
                memcpy(&count, (const char *)buf + at, sizeof(count));
                if (count > FP_STMTS_MAX)
                        return -EBADMSG;
        }
        return 0;
}

bool fp_stmt_set_valid(const struct fp_stmt_set *set)
{
        enum {
                SLOTS = 2 * FP_STMTS_MAX /* half full at most: a free slot ends every probe */
        };
        /* The index + 1 of the hash in each slot, 0: free. */
        uint8_t slot[SLOTS] = {0};
        if (set->count > FP_STMTS_MAX)
                return false;
        for (uint32_t i = 0; i < set->count; i++) {
                /* Content hashes are uniform: their first bytes place them (a crafted set
                 * only makes the probes longer, never the answer wrong). */
                uint32_t at;
                memcpy(&at, set->hash[i], sizeof(at));
                for (at %= SLOTS; slot[at]; at = (at + 1) % SLOTS)
                        if (memcmp(set->hash[slot[at] - 1], set->hash[i], FP_STMT_HASH_LEN) == 0)
                                return false;
                slot[at] = (uint8_t)(i + 1);
        }
        return true;
}

bool fp_stmt_set_has(const struct fp_stmt_set *set, const uint8_t *hash)
{
        for (uint32_t i = 0; i < set->count && i < FP_STMTS_MAX; i++)
                if (memcmp(set->hash[i], hash, FP_STMT_HASH_LEN) == 0)
                        return true;
        return false;
}

int fp_stmt_set_add(struct fp_stmt_set *set, const uint8_t *hash)
{
        if (fp_stmt_set_has(set, hash))
                return 0;
        if (set->count >= FP_STMTS_MAX)
                return -ENOSPC;
        memcpy(set->hash[set->count++], hash, FP_STMT_HASH_LEN);
        return 0;
}

void fp_stmt_set_remove(struct fp_stmt_set *set, const uint8_t *hash)
{
        for (uint32_t i = 0; i < set->count && i < FP_STMTS_MAX; i++)
                if (memcmp(set->hash[i], hash, FP_STMT_HASH_LEN) == 0) {
                        set->count--;
                        if (i != set->count)
                                memcpy(set->hash[i], set->hash[set->count], FP_STMT_HASH_LEN);
                        return;
                }
}

const char *fp_op_name(uint32_t op)
{
        static const char *const names[] = {
                [FP_OP_HELLO] = "hello",       [FP_OP_HELLO_OK] = "hello-ok",
                [FP_OP_ACQUIRE] = "acquire",   [FP_OP_LEASE] = "lease",
                [FP_OP_RELEASE] = "release",   [FP_OP_ERROR] = "error",
                [FP_OP_CANCEL] = "cancel",     [FP_OP_ADMIN] = "admin",
                [FP_OP_ADMIN_OK] = "admin-ok", [FP_OP_PIN] = "pin",
        };
        if (op < sizeof(names) / sizeof(names[0]) && names[op])
                return names[op];
        return "unknown";
}

char *fp_pin_reasons_text(uint32_t reasons, char *buf, size_t len)
{
        static const char *const words[] = {
                "SET",           "LISTEN",          "PREPARE",
                "advisory lock", "temporary table", "WITH HOLD cursor",
                "LOAD",          "session state",
        };
        size_t used = 0;
        if (len == 0)
                return buf;
        buf[0] = '\0';
        for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
                if (!(reasons & (1u << i)))
                        continue;
                int n = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", words[i]);
                if (n < 0 || (size_t)n >= len - used)
                        break;
                used += (size_t)n;
        }
        return buf;
}

int fp_params_check(const char *buf, size_t len)
{
        size_t pos = 0;
        int pairs = 0;

        while (pos < len) {
                for (int part = 0; part < 2; part++) {
                        const char *nul = memchr(buf + pos, '\0', len - pos);
                        if (!nul || (part == 0 && nul == buf + pos))
                                return -EBADMSG;
                        pos = (size_t)(nul - buf) + 1;
                        if (part == 0 && pos >= len)
                                return -EBADMSG;
                }
                pairs++;
        }
        return pairs;
}

const char *fp_params_get(const char *buf, size_t len, const char *name)
{
        size_t pos = 0;

        while (pos < len) {
                const char *key = buf + pos;
                const char *value = key + strlen(key) + 1;
                if (strcmp(key, name) == 0)
                        return value;
                pos = (size_t)(value - buf) + strlen(value) + 1;
        }
        return NULL;
}

int fp_params_add(char *buf, size_t cap, uint32_t *len, const char *name, const char *value)
{
        size_t nlen = strlen(name) + 1, vlen = strlen(value) + 1;

        if (*len > cap || nlen + vlen > cap - *len)
                return -ENOSPC;
        memcpy(buf + *len, name, nlen);
        memcpy(buf + *len + nlen, value, vlen);
        *len += (uint32_t)(nlen + vlen);
        return 0;
}
