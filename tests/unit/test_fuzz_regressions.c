/* SPDX-License-Identifier: MIT */
/*
 * test_fuzz_regressions.c — replays the inputs with which the fuzz targets
 * (tests/fuzz) once broke a contract, through the same production code, in
 * the ordinary and sanitizer builds (the fuzzing tree needs clang).
 *
 * The inputs live in tests/fuzz/corpus/<target>/regress-*.bin (they are
 * seeds of the fuzzing runs too), found next to this source file, or under
 * $FORKPOOL_FUZZ_CORPUS when that is set. Their formats are the targets':
 * fuzz_segment takes a little-endian uint32 image size, then the image's
 * first bytes (the rest is zeros).
 *
 * regress-unterminated-label.bin (fuzz_segment): a segment whose slot labels
 * fill their 64 bytes without a NUL. fp_segment_snapshot() terminated the
 * pool's name but copied labels as they were, so a reader printing one ran
 * off the slot (past the end of its array for the last slot).
 */
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "segment.h"

/* The largest image fuzz_segment makes. */
#define IMAGE_MAX (4u << 20)

/* The corpus directory of target into buf. */
static void corpus_dir(char *buf, size_t len, const char *target)
{
        const char *env = getenv("FORKPOOL_FUZZ_CORPUS");
        const char *slash = strrchr(__FILE__, '/');

        if (env && *env)
                snprintf(buf, len, "%s/%s", env, target);
        else
                snprintf(buf, len, "%.*s/../fuzz/corpus/%s", slash ? (int)(slash - __FILE__) : 1,
                         slash ? __FILE__ : ".", target);
}

/* Reads the whole file at path into a new buffer (*ret_data, owned by the caller). */
static void read_input(const char *path, unsigned char **ret_data, size_t *ret_len)
{
        FILE *f = fopen(path, "re");
        if (!f)
                fail_msg("cannot open %s: %s", path, strerror(errno));
        unsigned char *data = malloc(IMAGE_MAX);
        assert_non_null(data);
        size_t n = fread(data, 1, IMAGE_MAX, f);
        assert_int_equal(ferror(f), 0);
        fclose(f);
        *ret_data = data;
        *ret_len = n;
}

/* Writes a fuzz_segment input as the shared-memory object `name`, as the target does. */
static void write_segment_image(const char *name, const unsigned char *data, size_t len)
{
        uint32_t image_size = 0;

        if (len >= sizeof(image_size)) {
                memcpy(&image_size, data, sizeof(image_size));
                data += sizeof(image_size);
                len -= sizeof(image_size);
        } else {
                len = 0;
        }
        image_size = le32toh(image_size) % (IMAGE_MAX + 1);
        if (len > image_size)
                len = image_size;

        int fd = shm_open(name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(ftruncate(fd, (off_t)image_size), 0);
        if (len > 0)
                assert_int_equal(pwrite(fd, data, len, 0), (ssize_t)len);
        close(fd);
}

/*
 * Maps the fuzz_segment input at path with fp_segment_open() and snapshots
 * every pool into an array of exactly the slots copied, checking that every
 * string a reader prints is terminated. Returns how many slots of the raw
 * segment hold a label without a NUL (what the input is about), or -1 if
 * fp_segment_open() refused the image (as it must a layout of another version).
 */
static int replay_segment(const char *path)
{
        char name[FP_SHM_NAME_MAX];
        struct fp_segment seg = {0};
        unsigned char *data;
        int raw_unterminated = 0;
        size_t len;

        snprintf(name, sizeof(name), "/fp-test-fuzz.%d", (int)getpid());
        read_input(path, &data, &len);
        write_segment_image(name, data, len);
        free(data);
        int r = fp_segment_open(&seg, name);
        (void)fp_segment_unlink(name);
        if (r < 0) {
                assert_true(r == -EBADMSG || r == -EPROTO);
                return -1;
        }

        for (uint32_t s = 0; s < seg.hdr->slot_count; s++)
                raw_unterminated +=
                        !memchr(fp_segment_slot(&seg, s)->label, '\0', FP_SHM_LABEL_MAX);
        for (uint32_t i = 0; i < seg.hdr->pool_count; i++) {
                struct fp_shm_slot *slots = calloc(seg.hdr->slot_count + 1, sizeof(*slots));
                struct fp_shm_pool pool;
                assert_non_null(slots);
                r = fp_segment_snapshot(&seg, i, &pool, slots, seg.hdr->slot_count);
                if (r >= 0) {
                        assert_non_null(memchr(pool.name, '\0', sizeof(pool.name)));
                        /* Exactly r slots, so that ASan sees a read past the last one. */
                        struct fp_shm_slot *exact = malloc((size_t)r * sizeof(*exact) + 1);
                        assert_non_null(exact);
                        memcpy(exact, slots, (size_t)r * sizeof(*exact));
                        for (int j = 0; j < r; j++) {
                                assert_non_null(
                                        memchr(exact[j].label, '\0', sizeof(exact[j].label)));
                                assert_true(strlen(exact[j].label) < sizeof(exact[j].label));
                        }
                        free(exact);
                } else {
                        assert_true(r == -EAGAIN || r == -EBADMSG);
                }
                free(slots);
        }
        fp_segment_close(&seg);
        return raw_unterminated;
}

static void test_segment_unterminated_label(void **state)
{
        char path[4096], name[FP_SHM_NAME_MAX];
        struct fp_segment writer, reader;
        struct fp_shm_pool pool;
        (void)state;

        /* The fuzzer's input: its labels have no NUL, and the snapshot terminates them. */
        corpus_dir(path, sizeof(path), "fuzz_segment");
        strncat(path, "/regress-unterminated-label.bin", sizeof(path) - strlen(path) - 1);
        int raw = replay_segment(path);
        if (raw < 0)
                print_message("note: %s was made for another segment layout; regenerate it "
                              "with fuzz_segment\n",
                              path);
        else
                assert_true(raw > 0);

        /* The same case made with the writer, whatever the layout version. */
        snprintf(name, sizeof(name), "/fp-test-fuzz-label.%d", (int)getpid());
        assert_int_equal(fp_segment_create(&writer, name, 1, 2, 0600, -1), 0);
        struct fp_shm_pool *p = fp_segment_pool(&writer, 0);
        fp_segment_write_begin(p);
        p->slot_base = 0;
        p->slot_count = 2;
        for (uint32_t s = 0; s < 2; s++) {
                fp_segment_slot(&writer, s)->state = FP_SLOT_LEASED;
                memset(fp_segment_slot(&writer, s)->label, 'x', FP_SHM_LABEL_MAX);
        }
        memset(p->name, 'p', sizeof(p->name));
        fp_segment_write_end(p);
        assert_int_equal(fp_segment_open(&reader, name), 0);
        struct fp_shm_slot *slots = malloc(2 * sizeof(*slots));
        assert_non_null(slots);
        assert_int_equal(fp_segment_snapshot(&reader, 0, &pool, slots, 2), 2);
        assert_int_equal(strlen(pool.name), sizeof(pool.name) - 1);
        assert_int_equal(strlen(slots[1].label), FP_SHM_LABEL_MAX - 1);
        assert_int_equal(strlen(slots[0].label), FP_SHM_LABEL_MAX - 1);
        free(slots);
        fp_segment_close(&reader);
        fp_segment_close(&writer);
        (void)fp_segment_unlink(name);
}

/* Every stored fuzz_segment input (seeds and regressions) replays cleanly. */
static void test_segment_corpus(void **state)
{
        char dir[4096], path[4096 + 256];
        struct dirent *e;
        unsigned n = 0;
        (void)state;

        corpus_dir(dir, sizeof(dir), "fuzz_segment");
        DIR *d = opendir(dir);
        if (!d)
                fail_msg("cannot open %s: %s", dir, strerror(errno));
        while ((e = readdir(d))) {
                if (e->d_name[0] == '.')
                        continue;
                snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
                (void)replay_segment(path);
                n++;
        }
        closedir(d);
        assert_true(n >= 2);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_segment_unterminated_label),
                cmocka_unit_test(test_segment_corpus),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
