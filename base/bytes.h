/* SPDX-License-Identifier: MIT */
/*
 * bytes.h — integers into and out of wire packets: big-endian for the
 * PostgreSQL protocol, little-endian for MySQL's. Each put advances *p past
 * what it wrote; the caller has checked the room.
 */
#ifndef FORKPOOL_BYTES_H
#define FORKPOOL_BYTES_H

#include <stdint.h>
#include <string.h>

/* Writes v as 4 bytes, most significant first (PostgreSQL's Int32). */
static inline void fp_put_be32(char **p, uint32_t v)
{
        unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                              (unsigned char)(v >> 8), (unsigned char)v};
        memcpy(*p, b, 4);
        *p += 4;
}

/* Writes the low 16 bits of v as 2 bytes, least significant first (MySQL's int<2>). */
static inline void fp_put_le16(unsigned char **p, uint32_t v)
{
        (*p)[0] = (unsigned char)(v & 0xff);
        (*p)[1] = (unsigned char)((v >> 8) & 0xff);
        *p += 2;
}

/* Writes v as 4 bytes, least significant first (MySQL's int<4>). */
static inline void fp_put_le32(unsigned char **p, uint32_t v)
{
        fp_put_le16(p, v & 0xffff);
        fp_put_le16(p, v >> 16);
}

/* Reads 4 bytes, least significant first (MySQL's int<4>). */
static inline uint32_t fp_get_le32(const unsigned char *p)
{
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

#endif /* FORKPOOL_BYTES_H */
