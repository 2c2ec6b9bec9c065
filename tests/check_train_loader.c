/*
 * check_train_loader.c - smlp-train's loader thread (tools/train_data.h)
 * against the same batches made synchronously (also each batch as wait
 * returns it, a batch past the end, and the options it refuses).
 */
#include "trainfx.h"

/* ---- the loader ---------------------------------------------------------- */

static void
check_loader(int augment, int views)
{
    struct train_loader_opts o;
    struct train_loader *l;
    struct train_set s;
    struct train_batch want;
    int64_t e, i, perm[23];
    size_t floats = (size_t)views * 5 * 16;

    write_split("train", 23, 4, 4);
    ck_assert_int_eq(train_set_load(&s, dir, "train", err, sizeof(err)), 0);
    memset(&o, 0, sizeof(o));
    o.set = &s;
    o.batch = 5;
    o.seed = 11;
    o.shuffle = 1;
    o.drop_last = 0;
    o.augment = augment;
    o.views = views;
    l = train_loader_create(&o, err, sizeof(err));
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(train_loader_batches(l), 5);
    want.images = malloc(floats * sizeof(float));
    want.labels = malloc(5 * sizeof(int32_t));
    train_loader_request(l, 0, 0);
    for (e = 0; e < 2; e++)
        for (i = 0; i < 5; i++) {
            const struct train_batch *b = train_loader_wait(l);

            /* Ask for the next one before looking at this one. */
            if (e < 1 || i < 4)
                train_loader_request(l, i < 4 ? e : e + 1,
                                     i < 4 ? i + 1 : 0);
            ck_assert_int_eq(b->epoch, e);
            ck_assert_int_eq(b->index, i);
            ck_assert_int_eq(b->n, i < 4 ? 5 : 3);
            train_loader_fill(l, e, i, &want);
            ck_assert_mem_eq(b->images, want.images, floats * sizeof(float));
            ck_assert_mem_eq(b->labels, want.labels, 5 * sizeof(int32_t));
            train_shuffle(11, e, 23, perm);
            ck_assert_int_eq(b->labels[0], s.labels[perm[i * 5]]);
            if (i == 4) {
                ck_assert_int_eq(b->labels[4], 0);
                ck_assert_float_eq(b->images[(size_t)4 * 16], 0.0f);
            }
        }
    ck_assert_ptr_null(train_loader_wait(l));
    free(want.images);
    free(want.labels);
    train_loader_destroy(l);
    /* drop_last leaves the partial batch out. */
    o.drop_last = 1;
    l = train_loader_create(&o, err, sizeof(err));
    ck_assert_int_eq(train_loader_batches(l), 4);
    train_loader_request(l, 0, 3); /* destroyed with a request pending */
    train_loader_destroy(l);
    train_set_free(&s);
}

START_TEST(test_train_loader_batches_plain)
{
    check_loader(TRAIN_AUGMENT_NONE, 1);
}
END_TEST

START_TEST(test_train_loader_batches_moco)
{
    check_loader(TRAIN_AUGMENT_MOCO, 2);
}
END_TEST

START_TEST(test_train_loader_batches_shift)
{
    check_loader(TRAIN_AUGMENT_SHIFT, 1);
}
END_TEST

START_TEST(test_train_loader_normalised)
{
    struct train_loader_opts o;
    struct train_loader *l;
    const struct train_batch *b;
    struct train_set s;
    uint8_t px[16];

    write_split("train", 4, 4, 4);
    ck_assert_int_eq(train_set_load(&s, dir, "train", err, sizeof(err)), 0);
    memset(&o, 0, sizeof(o));
    o.set = &s;
    o.batch = 4;
    o.views = 1;
    l = train_loader_create(&o, err, sizeof(err));
    train_loader_request(l, 0, 0);
    b = train_loader_wait(l);
    /* No shuffle: image 2 is row 2. */
    {
        float want[16];

        memcpy(px, s.images + 2 * 16, 16);
        train_normalize(px, want, 16);
        ck_assert_mem_eq(b->images + 2 * 16, want, sizeof(want));
        ck_assert_int_eq(b->labels[2], 2);
    }
    train_loader_destroy(l);
    train_set_free(&s);
}
END_TEST
/* ---- the loader, against reference loops -------------------------------- */

/* A loader over the 23 images of 4 x 4 that write_split makes, batches
 * of 5, seed 11, shuffled. */
static struct train_loader *
make_loader(struct train_set *s, int augment, int views)
{
    struct train_loader_opts o;
    struct train_loader *l;

    write_split("train", 23, 4, 4);
    ck_assert_int_eq(train_set_load(s, dir, "train", err, sizeof(err)), 0);
    memset(&o, 0, sizeof(o));
    o.set = s;
    o.batch = 5;
    o.seed = 11;
    o.shuffle = 1;
    o.augment = augment;
    o.views = views;
    l = train_loader_create(&o, err, sizeof(err));
    ck_assert_ptr_nonnull(l);
    return l;
}

/*
 * Each image of batch 1 of epoch 1 is, independently of the loader, the
 * augmentation of the image perm[5 + i] (the image, not its place in the
 * batch) with the key (seed, epoch, image, view), view -1 for one view
 * (and the one-view recipe), and sits at v * batch + i: the contract of
 * train_data.h, rebuilt here step by step.
 */
static void
check_loader_images(int augment, int views)
{
    struct train_loader *l;
    struct train_set s;
    const struct train_batch *b;
    struct train_aug_params p;
    int64_t perm[23];
    float want[16], tmp[32];
    uint8_t moved[16];
    int i, v;

    l = make_loader(&s, augment, views);
    ref_shuffle(11, 1, 23, perm);
    train_loader_request(l, 1, 1);
    b = train_loader_wait(l);
    ck_assert_int_eq(b->n, 5);
    for (i = 0; i < 5; i++) {
        int64_t item = perm[5 + i];
        const uint8_t *px = s.images + item * 16;

        ck_assert_int_eq(b->labels[i], s.labels[item]);
        for (v = 0; v < views; v++) {
            int view = views == 1 ? -1 : v;
            uint64_t key = train_aug_key(11, 1, item, view);

            if (augment == TRAIN_AUGMENT_SHIFT) {
                train_aug_shift_flip(key, px, 4, 4, TRAIN_AUG_SHIFT_MAX,
                                     moved);
                train_normalize(moved, want, 16);
            } else {
                train_aug_preset(&p, view);
                train_aug_apply(&p, key, px, 4, 4, want, tmp);
                train_normalize_unit(want, 16);
            }
            ck_assert_mem_eq(b->images + ((size_t)v * 5 + i) * 16, want,
                             sizeof(want));
        }
    }
    train_loader_destroy(l);
    train_set_free(&s);
}

START_TEST(test_train_loader_images_moco2)
{
    check_loader_images(TRAIN_AUGMENT_MOCO, 2);
}
END_TEST

START_TEST(test_train_loader_images_moco1)
{
    check_loader_images(TRAIN_AUGMENT_MOCO, 1);
}
END_TEST

START_TEST(test_train_loader_images_shift)
{
    check_loader_images(TRAIN_AUGMENT_SHIFT, 1);
}
END_TEST

/* The last batch (23 = 4 * 5 + 3) of a two-view loader: rows 3 and 4 of
 * both views are zero with label 0, whatever the buffer held before
 * (0x7f bytes here).  A batch past the end (index 5: rows 25..30 of 23)
 * holds no image: n is 0, not negative, and every row is zero. */
START_TEST(test_train_loader_partial_two_views)
{
    struct train_loader *l;
    struct train_set s;
    struct train_batch b;
    size_t floats = 2 * 5 * 16, k;
    int v, i;

    l = make_loader(&s, TRAIN_AUGMENT_MOCO, 2);
    b.images = malloc(floats * sizeof(float));
    b.labels = malloc(5 * sizeof(int32_t));
    memset(b.images, 0x7f, floats * sizeof(float));
    memset(b.labels, 0x7f, 5 * sizeof(int32_t));
    train_loader_fill(l, 0, 4, &b);
    ck_assert_int_eq(b.n, 3);
    for (i = 3; i < 5; i++) {
        ck_assert_int_eq(b.labels[i], 0);
        for (v = 0; v < 2; v++)
            for (k = 0; k < 16; k++)
                ck_assert_float_eq(b.images[((size_t)v * 5 + i) * 16 + k],
                                   0.0f);
    }
    memset(b.images, 0x7f, floats * sizeof(float));
    memset(b.labels, 0x7f, 5 * sizeof(int32_t));
    train_loader_fill(l, 0, 5, &b);
    ck_assert_int_eq(b.n, 0);
    for (i = 0; i < 5; i++)
        ck_assert_int_eq(b.labels[i], 0);
    for (k = 0; k < floats; k++)
        ck_assert_float_eq(b.images[k], 0.0f);
    free(b.images);
    free(b.labels);
    train_loader_destroy(l);
    train_set_free(&s);
}
END_TEST

/*
 * train_loader_wait hands out a batch only once the thread has made it:
 * 100 batches (20 epochs of 5), each copied the moment wait returns,
 * before any other call could give the thread time to finish it, are
 * those train_loader_fill makes (a wait that returned while the request
 * still waited for the thread would give the slot's batch from two
 * requests before, or at first uninitialised memory).  Then two requests
 * in a row and one wait: the batch asked for last.
 */
START_TEST(test_train_loader_wait_ready)
{
    struct train_loader *l;
    struct train_set s;
    struct train_batch want;
    const struct train_batch *b;
    float got[5 * 16];
    int32_t got_labels[5];
    int64_t e, i, n;

    l = make_loader(&s, TRAIN_AUGMENT_NONE, 1);
    want.images = malloc(sizeof(got));
    want.labels = malloc(sizeof(got_labels));
    for (e = 0; e < 20; e++)
        for (i = 0; i < 5; i++) {
            train_loader_request(l, e, i);
            b = train_loader_wait(l);
            n = b->n;
            memcpy(got, b->images, sizeof(got));
            memcpy(got_labels, b->labels, sizeof(got_labels));
            ck_assert_int_eq(b->epoch, e);
            ck_assert_int_eq(b->index, i);
            train_loader_fill(l, e, i, &want);
            ck_assert_int_eq(n, i < 4 ? 5 : 3);
            ck_assert_mem_eq(got, want.images, sizeof(got));
            ck_assert_mem_eq(got_labels, want.labels, sizeof(got_labels));
        }
    train_loader_request(l, 3, 1);
    train_loader_request(l, 3, 4);
    b = train_loader_wait(l);
    ck_assert_int_eq(b->epoch, 3);
    ck_assert_int_eq(b->index, 4);
    ck_assert_int_eq(b->n, 3);
    train_loader_fill(l, 3, 4, &want);
    ck_assert_mem_eq(b->images, want.images, sizeof(got));
    ck_assert_mem_eq(b->labels, want.labels, sizeof(got_labels));
    ck_assert_ptr_null(train_loader_wait(l));
    free(want.images);
    free(want.labels);
    train_loader_destroy(l);
    train_set_free(&s);
}
END_TEST

/* 20 images in batches of 5: 4 batches, with or without drop_last (no
 * partial batch to drop or keep). */
START_TEST(test_train_loader_batches_exact)
{
    struct train_loader_opts o;
    struct train_loader *l;
    struct train_set s;

    write_split("train", 20, 2, 2);
    ck_assert_int_eq(train_set_load(&s, dir, "train", err, sizeof(err)), 0);
    memset(&o, 0, sizeof(o));
    o.set = &s;
    o.batch = 5;
    o.views = 1;
    l = train_loader_create(&o, err, sizeof(err));
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(train_loader_batches(l), 4);
    train_loader_destroy(l);
    o.drop_last = 1;
    l = train_loader_create(&o, err, sizeof(err));
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(train_loader_batches(l), 4);
    train_loader_destroy(l);
    train_set_free(&s);
}
END_TEST

/* Options the loader refuses: 3 views, and rows (cached features) with
 * two views or with an augmentation (features cannot be augmented); also
 * batches of 0 images, a set of none and rows of 0 floats (each would
 * make a loader of no batches or of empty rows: batch 0 divides by 0). */
START_TEST(test_train_loader_bad_options)
{
    struct train_loader_opts o;
    struct train_set s, empty;
    float rows[4 * 3] = {0};

    write_split("train", 4, 2, 2);
    ck_assert_int_eq(train_set_load(&s, dir, "train", err, sizeof(err)), 0);
    memset(&o, 0, sizeof(o));
    o.set = &s;
    o.batch = 2;
    o.views = 3;
    err[0] = '\0';
    ck_assert_ptr_null(train_loader_create(&o, err, sizeof(err)));
    ck_assert_ptr_nonnull(strstr(err, "loader: bad options"));
    o.views = 2;
    o.rows = rows;
    o.row_floats = 3;
    err[0] = '\0';
    ck_assert_ptr_null(train_loader_create(&o, err, sizeof(err)));
    ck_assert_ptr_nonnull(strstr(err, "loader: bad options"));
    o.views = 1;
    o.augment = TRAIN_AUGMENT_MOCO;
    err[0] = '\0';
    ck_assert_ptr_null(train_loader_create(&o, err, sizeof(err)));
    ck_assert_ptr_nonnull(strstr(err, "loader: bad options"));
    o.augment = TRAIN_AUGMENT_NONE;
    o.row_floats = 0;
    err[0] = '\0';
    ck_assert_ptr_null(train_loader_create(&o, err, sizeof(err)));
    ck_assert_ptr_nonnull(strstr(err, "loader: bad options"));
    o.rows = NULL;
    o.batch = 0;
    err[0] = '\0';
    ck_assert_ptr_null(train_loader_create(&o, err, sizeof(err)));
    ck_assert_ptr_nonnull(
        strstr(err, "(batch 0, views 1, 4 images, part 0 of 1)"));
    o.batch = 2;
    empty = s;
    empty.n = 0;
    o.set = &empty;
    err[0] = '\0';
    ck_assert_ptr_null(train_loader_create(&o, err, sizeof(err)));
    ck_assert_ptr_nonnull(
        strstr(err, "(batch 2, views 1, 0 images, part 0 of 1)"));
    /* Parts of a batch (data-parallel ranks): equal ones, in range. */
    o.set = &s;
    o.batch = 3;
    o.parts = 2;
    err[0] = '\0';
    ck_assert_ptr_null(train_loader_create(&o, err, sizeof(err)));
    ck_assert_ptr_nonnull(
        strstr(err, "(batch 3, views 1, 4 images, part 0 of 2)"));
    o.batch = 4;
    o.part = 2;
    ck_assert_ptr_null(train_loader_create(&o, err, sizeof(err)));
    o.part = -1;
    ck_assert_ptr_null(train_loader_create(&o, err, sizeof(err)));
    train_set_free(&s);
}
END_TEST

/*
 * Part p of 3 of each batch of 6 (two views: MoCo's layout) holds rows
 * 2p and 2p + 1 of the whole batch, both views, with their labels: what
 * a rank of a data-parallel run trains on.  The last (partial) batch of
 * 23 images, 5 rows, leaves part 2 one row and zeros.
 */
START_TEST(test_train_loader_parts)
{
    struct train_loader_opts o;
    struct train_loader *whole, *part[3];
    struct train_batch w, b;
    struct train_set s;
    size_t px = 16;
    int64_t i, k, v;
    int p;

    write_split("train", 23, 4, 4);
    ck_assert_int_eq(train_set_load(&s, dir, "train", err, sizeof(err)), 0);
    memset(&o, 0, sizeof(o));
    o.set = &s;
    o.batch = 6;
    o.seed = 5;
    o.shuffle = 1;
    o.augment = TRAIN_AUGMENT_MOCO;
    o.views = 2;
    whole = train_loader_create(&o, err, sizeof(err));
    ck_assert_ptr_nonnull(whole);
    o.parts = 3;
    for (p = 0; p < 3; p++) {
        o.part = p;
        part[p] = train_loader_create(&o, err, sizeof(err));
        ck_assert_ptr_nonnull(part[p]);
        ck_assert_int_eq(train_loader_batches(part[p]), 4);
    }
    w.images = malloc(2 * 6 * px * sizeof(float));
    w.labels = malloc(6 * sizeof(int32_t));
    b.images = malloc(2 * 2 * px * sizeof(float));
    b.labels = malloc(2 * sizeof(int32_t));
    for (i = 0; i < 4; i++) {
        train_loader_fill(whole, 1, i, &w);
        for (p = 0; p < 3; p++) {
            train_loader_fill(part[p], 1, i, &b);
            ck_assert_int_eq(b.n, i < 3 ? 2 : p < 2 ? 2 : 1);
            for (k = 0; k < 2; k++) {
                if (k >= b.n) {
                    ck_assert_int_eq(b.labels[k], 0);
                    ck_assert_float_eq(b.images[k * px], 0.0f);
                    continue;
                }
                ck_assert_int_eq(b.labels[k], w.labels[2 * p + k]);
                for (v = 0; v < 2; v++)
                    ck_assert_mem_eq(b.images + (v * 2 + k) * px,
                                     w.images + (v * 6 + 2 * p + k) * px,
                                     px * sizeof(float));
            }
        }
    }
    free(w.images);
    free(w.labels);
    free(b.images);
    free(b.labels);
    for (p = 0; p < 3; p++)
        train_loader_destroy(part[p]);
    train_loader_destroy(whole);
    train_set_free(&s);
}
END_TEST

/* With rows (a probe's cached features, 3 floats per image here, row k
 * holding 10 k + j), batch 1 of epoch 1 holds the rows of the images
 * perm[5..10) of the shuffle, in that order, with their labels. */
START_TEST(test_train_loader_rows_shuffled)
{
    struct train_loader_opts o;
    struct train_loader *l;
    const struct train_batch *b;
    struct train_set s;
    float rows[23 * 3];
    int64_t perm[23];
    int i, j;

    write_split("train", 23, 2, 2);
    ck_assert_int_eq(train_set_load(&s, dir, "train", err, sizeof(err)), 0);
    for (i = 0; i < 23; i++)
        for (j = 0; j < 3; j++)
            rows[i * 3 + j] = (float)(10 * i + j);
    memset(&o, 0, sizeof(o));
    o.set = &s;
    o.batch = 5;
    o.seed = 11;
    o.shuffle = 1;
    o.views = 1;
    o.rows = rows;
    o.row_floats = 3;
    l = train_loader_create(&o, err, sizeof(err));
    ck_assert_ptr_nonnull(l);
    ref_shuffle(11, 1, 23, perm);
    train_loader_request(l, 1, 1);
    b = train_loader_wait(l);
    for (i = 0; i < 5; i++) {
        ck_assert_int_eq(b->labels[i], s.labels[perm[5 + i]]);
        for (j = 0; j < 3; j++)
            ck_assert_float_eq(b->images[i * 3 + j],
                               (float)(10 * perm[5 + i] + j));
    }
    train_loader_destroy(l);
    train_set_free(&s);
}
END_TEST

static Suite *
train_loader_suite(void)
{
    Suite *s = suite_create("train_loader");
    TCase *tc;

    tc = tcase_create("loader");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_train_loader_batches_plain);
    tcase_add_test(tc, test_train_loader_batches_moco);
    tcase_add_test(tc, test_train_loader_batches_shift);
    tcase_add_test(tc, test_train_loader_normalised);
    tcase_add_test(tc, test_train_loader_images_moco2);
    tcase_add_test(tc, test_train_loader_images_moco1);
    tcase_add_test(tc, test_train_loader_images_shift);
    tcase_add_test(tc, test_train_loader_partial_two_views);
    tcase_add_test(tc, test_train_loader_batches_exact);
    tcase_add_test(tc, test_train_loader_bad_options);
    tcase_add_test(tc, test_train_loader_parts);
    tcase_add_test(tc, test_train_loader_rows_shuffled);
    tcase_add_test(tc, test_train_loader_wait_ready);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(train_loader_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
