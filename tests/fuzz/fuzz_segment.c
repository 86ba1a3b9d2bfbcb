/* SPDX-License-Identifier: MIT */
/*
 * fuzz_segment.c — libFuzzer target for the shared-segment reader.
 *
 * Every input becomes a POSIX shared-memory object that the real reader maps
 * with fp_segment_open(), and is then read the way forkpoolctl and workers
 * read it: a snapshot of every pool (and one past the last), its slots, the
 * names of states and classes, the newest events of the ring.
 *
 * Input format: a little-endian uint32 image size (at most FUZZ_IMAGE_MAX),
 * then the image's first bytes; the rest of the image is zeros. So a small
 * input can describe a segment whose event ring alone is 256 KiB, and the
 * file size can disagree with the header (fuzz_seeds writes valid images).
 *
 * Beyond memory safety it asserts the reader's contracts: fp_segment_open()
 * fails only with -EBADMSG or -EPROTO and accepts only a header that adds up;
 * a snapshot copies at most the slots asked for and returns only
 * NUL-terminated strings (readers print them); lookups out of range fail.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "segment.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_IMAGE_MAX (4u << 20)

#define FUZZ_ASSERT(cond)                                                                          \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "%s:%d: contract broken: %s\n", __FILE__, __LINE__,        \
                                #cond);                                                            \
                        abort();                                                                   \
                }                                                                                  \
        } while (0)

static volatile size_t fuzz_sink;

/*
 * Writes the image described by data into a new shared-memory object `name`.
 * Returns 0 or a negative errno (nothing is left behind on failure).
 */
static int fuzz_write_image(const char *name, const uint8_t *data, size_t size)
{
        uint32_t image_size = 0;
        size_t prefix_len;
        int fd, r = 0;

        if (size >= sizeof(image_size))
                memcpy(&image_size, data, sizeof(image_size));
        image_size = le32toh(image_size) % (FUZZ_IMAGE_MAX + 1);
        data += size >= sizeof(image_size) ? sizeof(image_size) : size;
        size -= size >= sizeof(image_size) ? sizeof(image_size) : size;
        prefix_len = size < image_size ? size : image_size;

        fd = shm_open(name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        if (ftruncate(fd, (off_t)image_size) < 0 ||
            (prefix_len > 0 && pwrite(fd, data, prefix_len, 0) != (ssize_t)prefix_len))
                r = -errno;
        close(fd);
        if (r < 0)
                (void)shm_unlink(name);
        return r;
}

/* A string inside a fixed array that a reader is about to print. */
static void fuzz_use_string(const char *s, size_t n)
{
        FUZZ_ASSERT(memchr(s, '\0', n) != NULL);
        fuzz_sink += strlen(s);
}

/* Reads pool i of seg as forkpoolctl does, with room for max_slots slots. */
static void fuzz_read_pool(const struct fp_segment *seg, uint32_t i, struct fp_shm_slot *slots,
                           uint32_t max_slots)
{
        const struct fp_shm_header *hdr = seg->hdr;
        struct fp_shm_pool pool;

        int r = fp_segment_snapshot(seg, i, &pool, slots, max_slots);
        if (i >= hdr->pool_count) {
                FUZZ_ASSERT(r == -ERANGE);
                return;
        }
        if (r < 0) {
                /* -EAGAIN: a pool whose sequence count stays odd (a writer that died mid-write). */
                FUZZ_ASSERT(r == -EAGAIN || r == -EBADMSG);
                return;
        }
        FUZZ_ASSERT(slots ? (uint32_t)r <= max_slots : r == 0);
        FUZZ_ASSERT((uint32_t)r <= pool.slot_count);
        fuzz_use_string(pool.name, sizeof(pool.name));
        fuzz_sink += strlen(fp_pool_class_name(pool.pool_class));
        for (int j = 0; j < r; j++) {
                fuzz_sink += strlen(fp_slot_state_name(slots[j].state));
                fuzz_use_string(slots[j].label, sizeof(slots[j].label));
                fuzz_sink += (size_t)slots[j].holder_pid + (size_t)slots[j].backend_pid;
        }
}

/* Reads the newest events and a few impossible sequence numbers. */
static void fuzz_read_events(const struct fp_segment *seg)
{
        uint64_t last = fp_segment_event_last(seg);
        const uint64_t probes[] = {
                0, last - 2, last - 1, last, last + 1, UINT64_MAX, last - FP_SHM_EVENTS};

        for (size_t k = 0; k < sizeof(probes) / sizeof(probes[0]); k++) {
                struct fp_shm_event ev;
                int r = fp_segment_event_read(seg, probes[k], &ev);
                if (r < 0) {
                        FUZZ_ASSERT(r == -EAGAIN || r == -ESTALE);
                        continue;
                }
                FUZZ_ASSERT(probes[k] != 0 && probes[k] <= last && ev.seq == probes[k]);
                fuzz_sink += strlen(fp_event_type_name(ev.type)) + ev.pool + ev.slot;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static char name[FP_SHM_NAME_MAX];
        struct fp_segment seg = {0};
        int r;

        if (!name[0])
                snprintf(name, sizeof(name), "/fp-fuzz-segment.%d", (int)getpid());
        r = fuzz_write_image(name, data, size);
        if (r < 0) {
                fprintf(stderr, "fuzz_segment: cannot create %s: %s\n", name, strerror(-r));
                abort();
        }
        r = fp_segment_open(&seg, name);
        (void)shm_unlink(name);
        if (r < 0) {
                FUZZ_ASSERT(r == -EBADMSG || r == -EPROTO);
                return 0;
        }

        const struct fp_shm_header *hdr = seg.hdr;
        FUZZ_ASSERT(!seg.writable && seg.size == hdr->total_size);
        FUZZ_ASSERT(hdr->pool_count <= FP_SHM_MAX_POOLS);
        FUZZ_ASSERT(fp_segment_pool(&seg, hdr->pool_count) == NULL);
        FUZZ_ASSERT(fp_segment_slot(&seg, hdr->slot_count) == NULL);
        fuzz_sink += (size_t)hdr->supervisor_pid + hdr->obsolete;

        /* As forkpoolctl: room for every slot of the segment. */
        uint32_t max_slots = hdr->slot_count;
        struct fp_shm_slot *slots = calloc(max_slots ? max_slots : 1, sizeof(*slots));
        FUZZ_ASSERT(slots);
        for (uint32_t i = 0; i <= hdr->pool_count; i++) {
                fuzz_read_pool(&seg, i, slots, max_slots);
                fuzz_read_pool(&seg, i, slots, 1);
                fuzz_read_pool(&seg, i, NULL, 0);
        }
        free(slots);

        fuzz_read_events(&seg);
        fp_segment_close(&seg);
        FUZZ_ASSERT(seg.hdr == NULL);
        return 0;
}
