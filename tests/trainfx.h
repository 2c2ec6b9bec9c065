/*
 * trainfx.h - the fixtures of smlp-train's data suites
 * (check_train_data.c, check_train_loader.c): a scratch directory and
 * an error buffer, IDX files of bytes written here (a header for the
 * dims, then the data, gzip'd or plain), and the shuffle in a plain loop.
 */
#ifndef SMLP_TRAINFX_H
#define SMLP_TRAINFX_H

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "testutil.h"
#include "train_data.h"

static char dir[64];
static char err[8192];

static inline void
setup(void)
{
    snprintf(dir, sizeof(dir), "%s", tu_tmpdir());
}

/* Writes an IDX file of bytes: header for dims[0..rank), then `n` data
 * bytes from data (may differ from the header's count), gzip'd when gz. */
static inline void
write_idx(const char *path, int gz, int rank, const uint32_t *dims,
          const uint8_t *data, size_t n)
{
    uint8_t head[4 + 4 * 3];
    int i;

    head[0] = head[1] = 0;
    head[2] = 0x08;
    head[3] = (uint8_t)rank;
    for (i = 0; i < rank; i++) {
        head[4 + 4 * i] = (uint8_t)(dims[i] >> 24);
        head[5 + 4 * i] = (uint8_t)(dims[i] >> 16);
        head[6 + 4 * i] = (uint8_t)(dims[i] >> 8);
        head[7 + 4 * i] = (uint8_t)dims[i];
    }
    if (gz) {
        gzFile f = gzopen(path, "wb");

        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(gzwrite(f, head, 4 + 4 * (unsigned)rank),
                         4 + 4 * rank);
        if (n > 0)
            ck_assert_int_eq(gzwrite(f, data, (unsigned)n), (int)n);
        ck_assert_int_eq(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");

        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(fwrite(head, 1, 4 + 4 * (size_t)rank, f),
                          4 + 4 * (size_t)rank);
        ck_assert_uint_eq(fwrite(data, 1, n, f), n);
        ck_assert_int_eq(fclose(f), 0);
    }
}

/* A split of n images h x w: pixel i of image k is (k * 7 + i) % 256,
 * label k % 10. */
static inline void
write_split(const char *prefix, uint32_t n, uint32_t h, uint32_t w)
{
    uint32_t dims[3] = {n, h, w};
    uint8_t *px = malloc((size_t)n * h * w), *lab = malloc(n);
    char path[256];
    size_t i;

    for (i = 0; i < (size_t)n * h * w; i++)
        px[i] = (uint8_t)((i / (h * w)) * 7 + i % (h * w));
    for (i = 0; i < n; i++)
        lab[i] = (uint8_t)(i % 10);
    snprintf(path, sizeof(path), "%s/%s-images-idx3-ubyte.gz", dir, prefix);
    write_idx(path, 1, 3, dims, px, (size_t)n * h * w);
    snprintf(path, sizeof(path), "%s/%s-labels-idx1-ubyte.gz", dir, prefix);
    write_idx(path, 1, 1, dims, lab, n);
    free(px);
    free(lab);
}

/* train_shuffle as train_data.h documents it, in a plain loop: the
 * identity, then Fisher-Yates from the last item down to item 1, item i
 * swapped with one uniform in 0..i, all drawn from train_rng seeded with
 * train_mix64(seed ^ train_mix64(epoch)). */
static inline void
ref_shuffle(uint64_t seed, int64_t epoch, int64_t n, int64_t *perm)
{
    struct train_rng r;
    int64_t i;

    for (i = 0; i < n; i++)
        perm[i] = i;
    train_rng_seed(&r, train_mix64(seed ^ train_mix64((uint64_t)epoch)));
    for (i = n - 1; i >= 1; i--) {
        int64_t j = (int64_t)train_rng_below(&r, (uint64_t)(i + 1)), t;

        t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

#endif
