/*
 * check_train_data.c - smlp-train's data side (tools/train_data.h): the
 * IDX reader (gzip'd and plain, bad magic, truncation, trailing bytes,
 * corrupt gzip, missing files), the data sets, pixel normalisation and
 * the seeded shuffle.  The loader: check_train_loader.c; the
 * augmentations: check_train_aug.c.
 */
#include "trainfx.h"

/* ---- IDX ----------------------------------------------------------------- */

START_TEST(test_train_idx_read_gz)
{
    uint32_t dims[3] = {3, 2, 2}, got[3];
    uint8_t data[12], *out;
    char path[128];
    int i;

    for (i = 0; i < 12; i++)
        data[i] = (uint8_t)(i * 20);
    snprintf(path, sizeof(path), "%s/x-idx3-ubyte.gz", dir);
    write_idx(path, 1, 3, dims, data, 12);
    snprintf(path, sizeof(path), "%s/x-idx3-ubyte", dir);
    ck_assert_int_eq(train_idx_read(path, 3, got, &out, err, sizeof(err)),
                     0);
    ck_assert_uint_eq(got[0], 3);
    ck_assert_uint_eq(got[1], 2);
    ck_assert_uint_eq(got[2], 2);
    ck_assert_mem_eq(out, data, 12);
    free(out);
}
END_TEST

START_TEST(test_train_idx_read_plain)
{
    uint32_t dims[1] = {4}, got[1];
    uint8_t data[4] = {9, 8, 7, 6}, *out;
    char path[128];

    snprintf(path, sizeof(path), "%s/l-idx1-ubyte", dir);
    write_idx(path, 0, 1, dims, data, 4);
    ck_assert_int_eq(train_idx_read(path, 1, got, &out, err, sizeof(err)),
                     0);
    ck_assert_uint_eq(got[0], 4);
    ck_assert_mem_eq(out, data, 4);
    free(out);
}
END_TEST

START_TEST(test_train_idx_read_bad_magic)
{
    uint32_t dims[3] = {1, 2, 2}, got[3];
    uint8_t data[4] = {0}, *out;
    char path[128];

    /* A label file (rank 1) where images (rank 3) are expected. */
    snprintf(path, sizeof(path), "%s/m-idx3-ubyte.gz", dir);
    write_idx(path, 1, 1, dims, data, 1);
    snprintf(path, sizeof(path), "%s/m-idx3-ubyte", dir);
    ck_assert_int_eq(train_idx_read(path, 3, got, &out, err, sizeof(err)),
                     -1);
    ck_assert_ptr_nonnull(strstr(err, "m-idx3-ubyte.gz"));
    ck_assert_ptr_nonnull(strstr(err, "magic 0x00000801, expected "
                                      "0x00000803"));
    ck_assert_ptr_null(out);
}
END_TEST

START_TEST(test_train_idx_read_truncated)
{
    uint32_t dims[3] = {5, 2, 2}, got[3];
    uint8_t data[12] = {0}, *out;
    char path[128];

    snprintf(path, sizeof(path), "%s/t-idx3-ubyte.gz", dir);
    write_idx(path, 1, 3, dims, data, 12);
    snprintf(path, sizeof(path), "%s/t-idx3-ubyte", dir);
    ck_assert_int_eq(train_idx_read(path, 3, got, &out, err, sizeof(err)),
                     -1);
    ck_assert_ptr_nonnull(strstr(err, "t-idx3-ubyte.gz: truncated"));
    ck_assert_ptr_nonnull(strstr(err, "promises 20 bytes"));
    ck_assert_ptr_nonnull(strstr(err, "has 12"));
    /* A header cut short. */
    tu_write(path, "\0\0\x08\x03\0\0", 6);
    ck_assert_int_eq(train_idx_read(path, 3, got, &out, err, sizeof(err)),
                     -1);
    ck_assert_ptr_nonnull(strstr(err, "inside the IDX header"));
}
END_TEST

START_TEST(test_train_idx_read_trailing)
{
    uint32_t dims[1] = {2}, got[1];
    uint8_t data[3] = {1, 2, 3}, *out;
    char path[128];

    snprintf(path, sizeof(path), "%s/x-idx1-ubyte", dir);
    write_idx(path, 0, 1, dims, data, 3);
    ck_assert_int_eq(train_idx_read(path, 1, got, &out, err, sizeof(err)),
                     -1);
    ck_assert_ptr_nonnull(strstr(err, "the file has more"));
}
END_TEST

START_TEST(test_train_idx_read_corrupt_gzip)
{
    uint32_t dims[1] = {200}, got[1];
    uint8_t data[200], *out, *buf;
    char path[128];
    FILE *f;
    long n;

    memset(data, 5, sizeof(data));
    snprintf(path, sizeof(path), "%s/c-idx1-ubyte.gz", dir);
    write_idx(path, 1, 1, dims, data, sizeof(data));
    /* Flip a byte of the CRC (the gzip trailer's first 4 bytes). */
    f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    buf = malloc((size_t)n);
    fseek(f, 0, SEEK_SET);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    buf[n - 8] ^= 0xff;
    tu_write(path, buf, (size_t)n);
    free(buf);
    snprintf(path, sizeof(path), "%s/c-idx1-ubyte", dir);
    ck_assert_int_eq(train_idx_read(path, 1, got, &out, err, sizeof(err)),
                     -1);
    ck_assert_ptr_nonnull(strstr(err, "c-idx1-ubyte.gz"));
}
END_TEST

START_TEST(test_train_idx_read_missing)
{
    uint32_t got[1];
    uint8_t *out;
    char path[128];

    snprintf(path, sizeof(path), "%s/none-idx1-ubyte", dir);
    ck_assert_int_eq(train_idx_read(path, 1, got, &out, err, sizeof(err)),
                     TRAIN_DATA_ENOENT);
    ck_assert_ptr_nonnull(strstr(err, "none-idx1-ubyte.gz: No such file"));
}
END_TEST

START_TEST(test_train_set_load_ok)
{
    struct train_set s;

    write_split("train", 23, 4, 3);
    ck_assert_int_eq(train_set_load(&s, dir, "train", err, sizeof(err)), 0);
    ck_assert_int_eq(s.n, 23);
    ck_assert_int_eq(s.rows, 4);
    ck_assert_int_eq(s.cols, 3);
    ck_assert_int_eq(s.classes, 10);
    ck_assert_int_eq(s.images[12 * 5 + 1], 5 * 7 + 1);
    ck_assert_int_eq(s.labels[17], 7);
    train_set_limit(&s, 5);
    ck_assert_int_eq(s.n, 5);
    train_set_limit(&s, 0);
    ck_assert_int_eq(s.n, 5);
    train_set_free(&s);
}
END_TEST

START_TEST(test_train_set_load_count_mismatch)
{
    uint32_t dims[1] = {22};
    uint8_t lab[22] = {0};
    char path[256];
    struct train_set s;

    write_split("train", 23, 4, 3);
    snprintf(path, sizeof(path), "%s/train-labels-idx1-ubyte.gz", dir);
    write_idx(path, 1, 1, dims, lab, 22);
    ck_assert_int_eq(train_set_load(&s, dir, "train", err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "22 labels for the 23 images"));
    ck_assert_ptr_null(s.images);
}
END_TEST

/* ---- IDX header checks ------------------------------------------------- */

/* Writes the 4 + 4 * rank header bytes of an IDX file of element type
 * `type`, big-endian, and no data: the header is all these tests need. */
static void
write_head(const char *path, uint8_t type, int rank, const uint32_t *dims)
{
    uint8_t head[4 + 4 * 3];
    int i;

    head[0] = head[1] = 0;
    head[2] = type;
    head[3] = (uint8_t)rank;
    for (i = 0; i < rank; i++) {
        head[4 + 4 * i] = (uint8_t)(dims[i] >> 24);
        head[5 + 4 * i] = (uint8_t)(dims[i] >> 16);
        head[6 + 4 * i] = (uint8_t)(dims[i] >> 8);
        head[7 + 4 * i] = (uint8_t)dims[i];
    }
    tu_write(path, head, 4 + 4 * (size_t)rank);
}

/* A dimension of 0 is refused, naming it by its index from 0 (the
 * second of [2, 0, 3] is dimension 1), not read as an empty set. */
START_TEST(test_train_idx_read_zero_dim)
{
    uint32_t dims[3] = {2, 0, 3}, got[3];
    uint8_t *out = (uint8_t *)1;
    char path[128];

    snprintf(path, sizeof(path), "%s/z-idx3-ubyte", dir);
    write_head(path, 0x08, 3, dims);
    ck_assert_int_eq(train_idx_read(path, 3, got, &out, err, sizeof(err)),
                     -1);
    ck_assert_ptr_nonnull(strstr(err, "z-idx3-ubyte: dimension 1 is 0, "
                                      "expected 1 to 16777216"));
    ck_assert_ptr_null(out);
}
END_TEST

/*
 * The largest dimension is 2^24 = 16777216, inclusive: a label file of
 * 2^24 labels and no data gets as far as reading them (and is then
 * truncated: 0 of 16777216 bytes); 2^24 + 1 is refused from the header.
 */
START_TEST(test_train_idx_read_dim_limit)
{
    uint32_t dims[1] = {UINT32_C(1) << 24}, got[1];
    uint8_t *out;
    char path[128];

    snprintf(path, sizeof(path), "%s/d-idx1-ubyte", dir);
    write_head(path, 0x08, 1, dims);
    ck_assert_int_eq(train_idx_read(path, 1, got, &out, err, sizeof(err)),
                     -1);
    ck_assert_ptr_nonnull(strstr(err, "truncated: the header promises "
                                      "16777216 bytes of data, the file "
                                      "has 0"));
    dims[0]++;
    write_head(path, 0x08, 1, dims);
    ck_assert_int_eq(train_idx_read(path, 1, got, &out, err, sizeof(err)),
                     -1);
    ck_assert_ptr_nonnull(strstr(err, "dimension 0 is 16777217, expected "
                                      "1 to 16777216"));
}
END_TEST

/* Images of 2^24 x 2^24 x 2^24 bytes: each dimension is allowed, but
 * 2^24 * 2^24 = 2^48 bytes is already more than the 2^32 limit (their
 * 2^72 product would wrap to 0 in 64 bits: an empty set, silently). */
START_TEST(test_train_idx_read_too_many_bytes)
{
    uint32_t dims[3] = {UINT32_C(1) << 24, UINT32_C(1) << 24,
                        UINT32_C(1) << 24},
             got[3];
    uint8_t *out = (uint8_t *)1;
    char path[128];

    snprintf(path, sizeof(path), "%s/b-idx3-ubyte", dir);
    write_head(path, 0x08, 3, dims);
    ck_assert_int_eq(train_idx_read(path, 3, got, &out, err, sizeof(err)),
                     -1);
    ck_assert_ptr_nonnull(strstr(err, "b-idx3-ubyte: the header promises "
                                      "more than 4294967296 bytes"));
    ck_assert_ptr_null(out);
}
END_TEST

/* An IDX file of another element type (0x0D, float) is refused by its
 * magic number even with the right rank: its bytes are not pixels. */
START_TEST(test_train_idx_read_wrong_type)
{
    uint32_t dims[1] = {4}, got[1];
    uint8_t *out = (uint8_t *)1;
    char path[128];

    snprintf(path, sizeof(path), "%s/f-idx1-ubyte", dir);
    write_head(path, 0x0d, 1, dims);
    ck_assert_int_eq(train_idx_read(path, 1, got, &out, err, sizeof(err)),
                     -1);
    ck_assert_ptr_nonnull(strstr(err, "magic 0x00000d01, expected "
                                      "0x00000801"));
    ck_assert_ptr_null(out);
}
END_TEST

/*
 * Bytes after the last gzip member are reported at their offset in the
 * file: a member of N bytes followed by "garbage!" has them at byte N
 * (not at the end of what was read into the buffer, N + 8).
 */
START_TEST(test_train_idx_read_garbage_offset)
{
    uint32_t dims[1] = {6}, got[1];
    uint8_t data[6] = {1, 2, 3, 4, 5, 6}, *out, *gz;
    char path[128], gzpath[128], want[160];
    long n;
    FILE *f;

    snprintf(gzpath, sizeof(gzpath), "%s/g-idx1-ubyte.gz", dir);
    snprintf(path, sizeof(path), "%s/g-idx1-ubyte", dir);
    write_idx(gzpath, 1, 1, dims, data, 6);
    f = fopen(gzpath, "rb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    ck_assert_int_gt(n, 0);
    gz = malloc((size_t)n + 8);
    ck_assert_ptr_nonnull(gz);
    rewind(f);
    ck_assert_uint_eq(fread(gz, 1, (size_t)n, f), (size_t)n);
    fclose(f);

    memcpy(gz + n, "garbage!", 8);
    tu_write(gzpath, gz, (size_t)n + 8);
    ck_assert_int_eq(train_idx_read(path, 1, got, &out, err, sizeof(err)),
                     -1);
    snprintf(want, sizeof(want), "trailing garbage at byte %ld, after gzip "
             "member 1)", n);
    ck_assert_msg(strstr(err, want) != NULL, "'%s' lacks '%s'", err, want);

    free(gz);
}
END_TEST

/* The number of classes is the largest label + 1, and top_label_at the
 * first image with that label: labels 1, 2, 2, 0 give 3 classes, the
 * first 2 at image 1.  A label equal to the count so far raises it too
 * (1 with 0 classes counted makes 2, then 2 makes 3). */
START_TEST(test_train_set_load_classes)
{
    uint32_t idims[3] = {4, 1, 1}, ldims[1] = {4};
    uint8_t px[4] = {10, 20, 30, 40}, lab[4] = {1, 2, 2, 0};
    char path[256];
    struct train_set s;

    snprintf(path, sizeof(path), "%s/c-images-idx3-ubyte", dir);
    write_idx(path, 0, 3, idims, px, 4);
    snprintf(path, sizeof(path), "%s/c-labels-idx1-ubyte", dir);
    write_idx(path, 0, 1, ldims, lab, 4);
    ck_assert_int_eq(train_set_load(&s, dir, "c", err, sizeof(err)), 0);
    ck_assert_int_eq(s.n, 4);
    ck_assert_int_eq(s.classes, 3);
    ck_assert_int_eq(s.top_label_at, 1);
    train_set_free(&s);
}
END_TEST

/* ---- normalisation, random numbers, shuffle ------------------------------ */

START_TEST(test_train_normalize_values)
{
    uint8_t px[3] = {0, 73, 255};
    float out[3], unit[3];
    int i;

    train_normalize(px, out, 3);
    ck_assert_float_eq_tol(out[0], -0.2860 / 0.3530, 1e-6);
    ck_assert_float_eq_tol(out[2], (1.0 - 0.2860) / 0.3530, 1e-6);
    ck_assert_float_eq_tol(out[1], (73 / 255.0 - 0.2860) / 0.3530, 1e-6);
    for (i = 0; i < 3; i++)
        unit[i] = (float)px[i] / 255.0f;
    train_normalize_unit(unit, 3);
    ck_assert_mem_eq(unit, out, sizeof(out));
}
END_TEST

START_TEST(test_train_shuffle_permutation)
{
    int64_t a[100], b[100], c[100];
    int seen[100] = {0}, i, same = 1, same_seed = 1;

    train_shuffle(7, 0, 100, a);
    train_shuffle(7, 0, 100, b);
    ck_assert_mem_eq(a, b, sizeof(a));
    for (i = 0; i < 100; i++) {
        ck_assert(a[i] >= 0 && a[i] < 100);
        seen[a[i]]++;
    }
    for (i = 0; i < 100; i++)
        ck_assert_int_eq(seen[i], 1);
    train_shuffle(7, 1, 100, b);
    train_shuffle(8, 0, 100, c);
    for (i = 0; i < 100; i++) {
        same &= a[i] == b[i];
        same_seed &= a[i] == c[i];
    }
    ck_assert(!same);
    ck_assert(!same_seed);
}
END_TEST

START_TEST(test_train_rng_ranges)
{
    struct train_rng r;
    int i, hit[7] = {0};

    train_rng_seed(&r, 42);
    for (i = 0; i < 7000; i++) {
        double u = train_rng_unit(&r);
        uint64_t k = train_rng_below(&r, 7);

        ck_assert(u >= 0.0 && u < 1.0);
        ck_assert_uint_lt(k, 7);
        hit[k]++;
    }
    for (i = 0; i < 7; i++)
        ck_assert_int_gt(hit[i], 800);
}
END_TEST

/* ---- the shuffle, against a reference loop ---------------------------- */

START_TEST(test_train_shuffle_reference)
{
    int64_t got[100], want[100];
    int s, swapped = 0;

    train_shuffle(7, 0, 100, got);
    ref_shuffle(7, 0, 100, want);
    ck_assert_mem_eq(got, want, sizeof(got));
    train_shuffle(7, 3, 100, got);
    ref_shuffle(7, 3, 100, want);
    ck_assert_mem_eq(got, want, sizeof(got));
    /* Two items: each order occurs (the last swap, j in {0, 1}, is a
     * coin; 64 seeds all alike has p 2^-63). */
    for (s = 0; s < 64; s++) {
        train_shuffle((uint64_t)s, 0, 2, got);
        ck_assert(got[0] + got[1] == 1);
        swapped += got[0] == 1;
    }
    ck_assert_int_gt(swapped, 0);
    ck_assert_int_lt(swapped, 64);
}
END_TEST

static Suite *
train_data_suite(void)
{
    Suite *s = suite_create("train_data");
    TCase *tc;

    tc = tcase_create("idx");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_train_idx_read_gz);
    tcase_add_test(tc, test_train_idx_read_plain);
    tcase_add_test(tc, test_train_idx_read_bad_magic);
    tcase_add_test(tc, test_train_idx_read_truncated);
    tcase_add_test(tc, test_train_idx_read_trailing);
    tcase_add_test(tc, test_train_idx_read_corrupt_gzip);
    tcase_add_test(tc, test_train_idx_read_missing);
    tcase_add_test(tc, test_train_set_load_ok);
    tcase_add_test(tc, test_train_set_load_count_mismatch);
    tcase_add_test(tc, test_train_idx_read_zero_dim);
    tcase_add_test(tc, test_train_idx_read_dim_limit);
    tcase_add_test(tc, test_train_idx_read_too_many_bytes);
    tcase_add_test(tc, test_train_idx_read_wrong_type);
    tcase_add_test(tc, test_train_idx_read_garbage_offset);
    tcase_add_test(tc, test_train_set_load_classes);
    suite_add_tcase(s, tc);

    tc = tcase_create("normalize_shuffle");
    tcase_add_test(tc, test_train_normalize_values);
    tcase_add_test(tc, test_train_shuffle_permutation);
    tcase_add_test(tc, test_train_rng_ranges);
    tcase_add_test(tc, test_train_shuffle_reference);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(train_data_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
