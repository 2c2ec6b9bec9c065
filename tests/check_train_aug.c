/*
 * check_train_aug.c - smlp-train's seeded random numbers and image
 * augmentations (tools/train_aug.c): each augmentation on hand-checked
 * small cases and their determinism.  Against independent references:
 * check_train_aug_ref.c.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "train_data.h"

/* ---- augmentations ------------------------------------------------------- */

START_TEST(test_train_aug_flip)
{
    float x[6] = {1, 2, 3, 4, 5, 6}, want[6] = {3, 2, 1, 6, 5, 4};

    train_aug_flip(x, 2, 3);
    ck_assert_mem_eq(x, want, sizeof(x));
}
END_TEST

START_TEST(test_train_aug_brightness_contrast)
{
    float x[3] = {0.2f, 0.6f, 0.9f}, y[2] = {0.0f, 1.0f};

    train_aug_brightness(x, 3, 1.5);
    ck_assert_float_eq_tol(x[0], 0.3f, 1e-7);
    ck_assert_float_eq_tol(x[1], 0.9f, 1e-7);
    ck_assert_float_eq(x[2], 1.0f);
    train_aug_contrast(y, 2, 0.5);
    ck_assert_float_eq(y[0], 0.25f);
    ck_assert_float_eq(y[1], 0.75f);
    train_aug_contrast(y, 2, 4.0); /* mean 0.5: -0.5 and 1.5, clamped */
    ck_assert_float_eq(y[0], 0.0f);
    ck_assert_float_eq(y[1], 1.0f);
}
END_TEST

START_TEST(test_train_aug_solarize)
{
    float x[4] = {0.2f, 0.5f, 0.9f, 1.0f};

    train_aug_solarize(x, 4, 0.5f);
    ck_assert_float_eq(x[0], 0.2f);
    ck_assert_float_eq(x[1], 0.5f);
    ck_assert_float_eq_tol(x[2], 0.1f, 1e-7);
    ck_assert_float_eq(x[3], 0.0f);
}
END_TEST

START_TEST(test_train_aug_blur)
{
    float x[121], tmp[121], sum = 0;
    int i;

    for (i = 0; i < 121; i++)
        x[i] = 0.25f;
    train_aug_blur(x, 11, 11, 0.8, tmp);
    for (i = 0; i < 121; i++)
        ck_assert_float_eq_tol(x[i], 0.25f, 1e-6);
    /* A centred impulse spreads symmetrically and keeps its mass (the
     * edges are out of reach of the 7 taps). */
    memset(x, 0, sizeof(x));
    x[60] = 1.0f;
    train_aug_blur(x, 11, 11, 0.8, tmp);
    for (i = 0; i < 121; i++)
        sum += x[i];
    ck_assert_float_eq_tol(sum, 1.0f, 1e-5);
    ck_assert_float_lt(x[60], 1.0f);
    ck_assert_float_eq(x[59], x[61]);
    ck_assert_float_eq(x[49], x[71]);
    ck_assert_float_eq(x[59], x[49]);
    ck_assert_float_gt(x[60], x[59]);
    ck_assert_float_gt(x[57], 0.0f);  /* radius 3 */
    ck_assert_float_eq(x[56], 0.0f);
    /* sigma 1/3: radius 1, weights exp(-4.5) / (1 + 2 exp(-4.5)). */
    memset(x, 0, sizeof(x));
    x[60] = 1.0f;
    train_aug_blur(x, 11, 11, 1.0 / 3.0, tmp);
    {
        double e = exp(-4.5), w1 = e / (1 + 2 * e), w0 = 1 / (1 + 2 * e);

        ck_assert_float_eq_tol(x[60], w0 * w0, 1e-6);
        ck_assert_float_eq_tol(x[61], w0 * w1, 1e-6);
        ck_assert_float_eq_tol(x[48], w1 * w1, 1e-6);
        ck_assert_float_eq(x[62], 0.0f);
    }
    /* Reflected edges (torchvision's "reflect"): pixel 0 reads pixel 1
     * through taps -1 and +1. */
    memset(x, 0, sizeof(x));
    x[1] = 1.0f;
    train_aug_blur(x, 11, 11, 1.0 / 3.0, tmp);
    {
        double e = exp(-4.5), w1 = e / (1 + 2 * e), w0 = 1 / (1 + 2 * e);

        ck_assert_float_eq_tol(x[0], 2 * w1 * w0, 1e-6);
        ck_assert_float_eq_tol(x[1], w0 * w0, 1e-6);
        ck_assert_float_eq_tol(x[2], w1 * w0, 1e-6);
        ck_assert_float_eq_tol(x[12], w0 * w1, 1e-6);
    }
}
END_TEST

START_TEST(test_train_aug_resize_crop)
{
    float src[16], dst[16];
    int i;

    for (i = 0; i < 16; i++)
        src[i] = (float)i;
    /* The whole image: an exact copy. */
    train_aug_resize_crop(src, 4, 4, 0, 0, 4, 4, dst);
    ck_assert_mem_eq(dst, src, sizeof(src));
    /* The top-left 2x2 blown up to 4x4: sample rows/columns at
     * 0, 0.25, 0.75, 1 (clamped), value = 4 * row + column. */
    train_aug_resize_crop(src, 4, 4, 0, 0, 2, 2, dst);
    ck_assert_float_eq(dst[0], 0.0f);
    ck_assert_float_eq(dst[1], 0.25f);
    ck_assert_float_eq(dst[4 + 2], 1.75f);
    ck_assert_float_eq(dst[15], 5.0f);
    /* Bottom-right 2x2: offset by (2, 2). */
    train_aug_resize_crop(src, 4, 4, 2, 2, 2, 2, dst);
    ck_assert_float_eq(dst[0], 10.0f);
    ck_assert_float_eq(dst[15], 15.0f);
}
END_TEST

START_TEST(test_train_aug_crop_box)
{
    struct train_rng r;
    int i, top, left, ch, cw;

    train_rng_seed(&r, 3);
    for (i = 0; i < 2000; i++) {
        train_aug_crop_box(&r, 28, 28, 0.2, 1.0, 0.75, 4.0 / 3.0, &top,
                           &left, &ch, &cw);
        ck_assert(ch >= 1 && cw >= 1 && top >= 0 && left >= 0);
        ck_assert_int_le(top + ch, 28);
        ck_assert_int_le(left + cw, 28);
        ck_assert_int_ge(ch * cw, 0.2 * 784 * 0.85);
    }
    /* Scale 1, ratio 1: the whole image. */
    train_aug_crop_box(&r, 28, 28, 1.0, 1.0, 1.0, 1.0, &top, &left, &ch,
                       &cw);
    ck_assert(top == 0 && left == 0 && ch == 28 && cw == 28);
}
END_TEST

START_TEST(test_train_aug_apply_identity)
{
    struct train_aug_params p;
    uint8_t src[784];
    float dst[784], tmp[2 * 784];
    int i;

    for (i = 0; i < 784; i++)
        src[i] = (uint8_t)(i * 13);
    train_aug_preset(&p, -1);
    p.scale_min = p.scale_max = p.ratio_min = p.ratio_max = 1.0;
    p.p_jitter = p.p_blur = p.p_solarize = p.p_flip = 0.0;
    train_aug_apply(&p, 99, src, 28, 28, dst, tmp);
    for (i = 0; i < 784; i++)
        ck_assert_float_eq(dst[i], (float)src[i] / 255.0f);
    /* Flip only (p 1): the mirrored image. */
    p.p_flip = 1.0;
    train_aug_apply(&p, 99, src, 28, 28, dst, tmp);
    ck_assert_float_eq(dst[0], (float)src[27] / 255.0f);
    /* Solarize only (p 1). */
    p.p_flip = 0.0;
    p.p_solarize = 1.0;
    train_aug_apply(&p, 99, src, 28, 28, dst, tmp);
    for (i = 0; i < 784; i++)
        ck_assert_float_eq(dst[i], src[i] >= 128
                                       ? 1.0f - (float)src[i] / 255.0f
                                       : (float)src[i] / 255.0f);
}
END_TEST

START_TEST(test_train_aug_apply_deterministic)
{
    struct train_aug_params p;
    uint8_t src[784];
    float a[784], b[784], tmp[2 * 784];
    int i, view, differ = 0;

    for (i = 0; i < 784; i++)
        src[i] = (uint8_t)((i % 28) * (i / 28) % 256);
    for (view = -1; view <= 1; view++) {
        train_aug_preset(&p, view);
        train_aug_apply(&p, train_aug_key(5, 2, 17, view), src, 28, 28, a,
                        tmp);
        memset(tmp, 0x7f, sizeof(tmp)); /* scratch contents do not matter */
        train_aug_apply(&p, train_aug_key(5, 2, 17, view), src, 28, 28, b,
                        tmp);
        ck_assert_mem_eq(a, b, sizeof(a));
        for (i = 0; i < 784; i++)
            ck_assert(a[i] >= 0.0f && a[i] <= 1.0f);
    }
    /* Another epoch, index, seed or view: another image (most keys). */
    ck_assert_uint_ne(train_aug_key(5, 2, 17, 0), train_aug_key(5, 3, 17, 0));
    ck_assert_uint_ne(train_aug_key(5, 2, 17, 0), train_aug_key(5, 2, 18, 0));
    ck_assert_uint_ne(train_aug_key(5, 2, 17, 0), train_aug_key(6, 2, 17, 0));
    ck_assert_uint_ne(train_aug_key(5, 2, 17, 0), train_aug_key(5, 2, 17, 1));
    train_aug_preset(&p, 0);
    for (i = 0; i < 8 && !differ; i++) {
        train_aug_apply(&p, train_aug_key(5, 2, i, 0), src, 28, 28, a, tmp);
        train_aug_apply(&p, train_aug_key(5, 3, i, 0), src, 28, 28, b, tmp);
        differ = memcmp(a, b, sizeof(a)) != 0;
    }
    ck_assert(differ);
}
END_TEST

/* Image src moved by (dy, dx) with zero fill, then mirrored when flip:
 * the expected output, built here independently of train_aug.c. */
static void
shifted(const uint8_t *src, int h, int w, int dy, int dx, int flip,
        uint8_t *dst)
{
    uint8_t moved[64];
    int y, x;

    for (y = 0; y < h; y++)
        for (x = 0; x < w; x++) {
            int sy = y - dy, sx = x - dx;

            moved[y * w + x] =
                sy < 0 || sy >= h || sx < 0 || sx >= w ? 0 : src[sy * w + sx];
        }
    for (y = 0; y < h; y++)
        for (x = 0; x < w; x++)
            dst[y * w + x] = moved[y * w + (flip ? w - 1 - x : x)];
}

START_TEST(test_train_aug_shift_flip)
{
    /* 8 x 8 pixels 1..64, all different and none background: every
     * (dy, dx, flip) gives a different image. */
    uint8_t src[64], out[64], again[64], want[64];
    int count[5][5][2], i, dy, dx, f, hits;

    for (i = 0; i < 64; i++)
        src[i] = (uint8_t)(i + 1);
    memset(count, 0, sizeof(count));
    for (i = 0; i < 2000; i++) {
        uint64_t key = train_aug_key(3, i / 100, i % 100, -1);

        train_aug_shift_flip(key, src, 8, 8, 2, out);
        train_aug_shift_flip(key, src, 8, 8, 2, again);
        ck_assert_mem_eq(out, again, sizeof(out));
        hits = 0;
        for (dy = -2; dy <= 2; dy++)
            for (dx = -2; dx <= 2; dx++)
                for (f = 0; f < 2; f++) {
                    shifted(src, 8, 8, dy, dx, f, want);
                    if (memcmp(out, want, sizeof(out)) == 0) {
                        count[dy + 2][dx + 2][f]++;
                        hits++;
                    }
                }
        ck_assert_int_eq(hits, 1);
    }
    /* 50 outcomes, 40 expected of each: all occur, none far off (a
     * binomial(2000, 1/50) lies in [15, 70] with p > 1 - 1e-6). */
    for (dy = 0; dy < 5; dy++)
        for (dx = 0; dx < 5; dx++)
            for (f = 0; f < 2; f++) {
                ck_assert_int_ge(count[dy][dx][f], 15);
                ck_assert_int_le(count[dy][dx][f], 70);
            }
    /* No shift allowed: the image or its mirror. */
    for (i = 0; i < 20; i++) {
        train_aug_shift_flip(train_aug_key(4, 0, i, -1), src, 8, 8, 0, out);
        shifted(src, 8, 8, 0, 0, 0, want);
        shifted(src, 8, 8, 0, 0, 1, again);
        ck_assert(memcmp(out, want, 64) == 0 || memcmp(out, again, 64) == 0);
    }
}
END_TEST

/* ---- augmentations: crops, flips, blur, jitter, presets ------------------ */

/* train_rng_unit is uniform on [0, 1): of 4000 draws about half lie in
 * [0.5, 1) (binomial(4000, 1/2) is within 1800..2200 with p > 1 - 1e-9);
 * a unit built from too few bits would never reach 0.5. */
START_TEST(test_train_rng_unit_spread)
{
    struct train_rng r;
    int i, upper = 0;

    train_rng_seed(&r, 1);
    for (i = 0; i < 4000; i++)
        upper += train_rng_unit(&r) >= 0.5;
    ck_assert_int_ge(upper, 1800);
    ck_assert_int_le(upper, 2200);
}
END_TEST

/* The view is part of the key as given: view -1 (one view) is not view 0
 * of a two-view run, so a supervised run's images are not a MoCo view's. */
START_TEST(test_train_aug_key_view_minus_one)
{
    ck_assert_uint_ne(train_aug_key(5, 2, 17, -1),
                      train_aug_key(5, 2, 17, 0));
    ck_assert_uint_ne(train_aug_key(5, 2, 17, -1),
                      train_aug_key(5, 2, 17, 1));
}
END_TEST

/*
 * Crop positions: with scale 1/2 and ratio 1 on a 4 x 8 image the target
 * area is 16 and the box sqrt(16) = 4 on a side, which fits at the first
 * try; its top is then 0 (4 rows of 4) and its left uniform over the
 * 8 - 4 + 1 = 5 places 0..4, each of which must occur in 500 draws (a
 * place missed has p (4/5)^500 < 1e-48).  The same transposed (8 x 4)
 * for the top.
 */
START_TEST(test_train_aug_crop_box_positions)
{
    struct train_rng r;
    int seen[5] = {0}, i, top, left, ch, cw;

    train_rng_seed(&r, 9);
    for (i = 0; i < 500; i++) {
        train_aug_crop_box(&r, 4, 8, 0.5, 0.5, 1.0, 1.0, &top, &left, &ch,
                           &cw);
        ck_assert_int_eq(ch, 4);
        ck_assert_int_eq(cw, 4);
        ck_assert_int_eq(top, 0);
        ck_assert(left >= 0 && left <= 4);
        seen[left]++;
    }
    for (i = 0; i < 5; i++)
        ck_assert_int_gt(seen[i], 0);
    memset(seen, 0, sizeof(seen));
    for (i = 0; i < 500; i++) {
        train_aug_crop_box(&r, 8, 4, 0.5, 0.5, 1.0, 1.0, &top, &left, &ch,
                           &cw);
        ck_assert_int_eq(ch, 4);
        ck_assert_int_eq(cw, 4);
        ck_assert_int_eq(left, 0);
        ck_assert(top >= 0 && top <= 4);
        seen[top]++;
    }
    for (i = 0; i < 5; i++)
        ck_assert_int_gt(seen[i], 0);
}
END_TEST

/*
 * The ratio is width / height: ratio 2 and scale 1/2 of an 8 x 8 image
 * ask for area 32 = w * h with w = 2 h, so w = 8 and h = 4 (a 4-row
 * strip at top 0..4, left 0).
 */
START_TEST(test_train_aug_crop_box_ratio_axis)
{
    struct train_rng r;
    int i, top, left, ch, cw;

    train_rng_seed(&r, 10);
    for (i = 0; i < 50; i++) {
        train_aug_crop_box(&r, 8, 8, 0.5, 0.5, 2.0, 2.0, &top, &left, &ch,
                           &cw);
        ck_assert_int_eq(cw, 8);
        ck_assert_int_eq(ch, 4);
        ck_assert_int_eq(left, 0);
        ck_assert(top >= 0 && top <= 4);
    }
}
END_TEST

/*
 * When no try fits, the centre crop with the ratio clamped: the whole
 * 4 x 4 image (area 16) at ratio 2 wants w = sqrt(32) = 5.66 -> 6 > 4,
 * every time, so the fallback takes the full width 4 and height
 * round(4 / 2) = 2, centred: top (4 - 2) / 2 = 1.  At ratio 1/2 the
 * height 4 = sqrt(32) rounded is again too big; the fallback keeps the
 * height and takes width round(4 * 0.5) = 2, left 1.
 */
START_TEST(test_train_aug_crop_box_fallback)
{
    struct train_rng r;
    int top, left, ch, cw;

    train_rng_seed(&r, 11);
    train_aug_crop_box(&r, 4, 4, 1.0, 1.0, 2.0, 2.0, &top, &left, &ch, &cw);
    ck_assert_int_eq(cw, 4);
    ck_assert_int_eq(ch, 2);
    ck_assert_int_eq(top, 1);
    ck_assert_int_eq(left, 0);
    train_aug_crop_box(&r, 4, 4, 1.0, 1.0, 0.5, 0.5, &top, &left, &ch, &cw);
    ck_assert_int_eq(cw, 2);
    ck_assert_int_eq(ch, 4);
    ck_assert_int_eq(top, 0);
    ck_assert_int_eq(left, 1);
}
END_TEST

/*
 * A box that is not square and not on the diagonal, so that rows and
 * columns cannot be confused: src(y, x) = 4 y + x on 4 x 4.
 * Box top 2, left 0, 2 rows x 4 columns: columns map 1:1
 * (sx = (x + 0.5) * 4 / 4 - 0.5 = x), rows sample
 * sy = 2 + (y + 0.5) * 2 / 4 - 0.5 = 1.75, 2.25, 2.75, 3.25, clamped to
 * [2, 3]: 2, 2.25, 2.75, 3; bilinear in y gives 4 sy + x.
 * Box top 0, left 1, 4 rows x 2 columns: the transpose, columns sampled
 * at 1 + {0, 0.25, 0.75, 1}, value 4 y + sx.
 */
START_TEST(test_train_aug_resize_crop_rect)
{
    static const float s[4] = {0.0f, 0.25f, 0.75f, 1.0f};
    float src[16], dst[16];
    int i, y, x;

    for (i = 0; i < 16; i++)
        src[i] = (float)i;
    train_aug_resize_crop(src, 4, 4, 2, 0, 2, 4, dst);
    for (y = 0; y < 4; y++)
        for (x = 0; x < 4; x++)
            ck_assert_float_eq_tol(dst[y * 4 + x], 4 * (2 + s[y]) + x,
                                   1e-6);
    train_aug_resize_crop(src, 4, 4, 0, 1, 4, 2, dst);
    for (y = 0; y < 4; y++)
        for (x = 0; x < 4; x++)
            ck_assert_float_eq_tol(dst[y * 4 + x], 4 * y + (1 + s[x]),
                                   1e-6);
}
END_TEST

/* An even width: every column moves, the middle two swap too. */
START_TEST(test_train_aug_flip_even)
{
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    float want[8] = {4, 3, 2, 1, 8, 7, 6, 5};

    train_aug_flip(x, 2, 4);
    ck_assert_mem_eq(x, want, sizeof(x));
}
END_TEST

/*
 * The radius is ceil(3 sigma) but at most 3: sigma 2 (radius 6 uncapped)
 * still reaches 3 pixels from an impulse and not 4, and the 7 weights
 * still sum to 1.
 */
START_TEST(test_train_aug_blur_radius_cap)
{
    float x[121], tmp[121], sum = 0.0f;
    int i;

    memset(x, 0, sizeof(x));
    x[60] = 1.0f;
    train_aug_blur(x, 11, 11, 2.0, tmp);
    for (i = 0; i < 121; i++)
        sum += x[i];
    ck_assert_float_eq_tol(sum, 1.0f, 1e-5);
    ck_assert_float_gt(x[57], 0.0f);      /* 3 left */
    ck_assert_float_eq(x[56], 0.0f);      /* 4 left */
    ck_assert_float_gt(x[60 + 33], 0.0f); /* 3 down */
    ck_assert_float_eq(x[60 + 44], 0.0f); /* 4 down */
}
END_TEST

/*
 * A 3 x 7 image (not square): an impulse at row 1, column 3, sigma 1/3
 * (radius 1, weights w1 = e / (1 + 2 e) at +-1 and w0 = 1 / (1 + 2 e),
 * e = exp(-4.5)).  Rows 0 and 2 each reach row 1 through tap -1 and,
 * reflected, tap +1 (row 3 -> 1, row -1 -> 1): 2 w1 of the impulse's
 * row, times w0 in x at column 3.  The
 * scratch is twice as big and zero past the image, so reading a row
 * past the last (reflecting by the width) would give w1 w0 instead.
 */
START_TEST(test_train_aug_blur_not_square)
{
    float x[21], tmp[42];
    double e = exp(-4.5), w1 = e / (1 + 2 * e), w0 = 1 / (1 + 2 * e);

    memset(x, 0, sizeof(x));
    memset(tmp, 0, sizeof(tmp));
    x[7 + 3] = 1.0f;
    train_aug_blur(x, 3, 7, 1.0 / 3.0, tmp);
    ck_assert_float_eq_tol(x[7 + 3], w0 * w0, 1e-6);
    ck_assert_float_eq_tol(x[0 + 3], 2 * w1 * w0, 1e-6);
    ck_assert_float_eq_tol(x[14 + 3], 2 * w1 * w0, 1e-6);
    ck_assert_float_eq_tol(x[7 + 4], w0 * w1, 1e-6);
    ck_assert_float_eq_tol(x[7 + 6], 0.0, 1e-7);
}
END_TEST

/* The recipes as train_data.h documents them. */
START_TEST(test_train_aug_preset_values)
{
    struct train_aug_params p;
    int v;

    for (v = -1; v <= 1; v++) {
        train_aug_preset(&p, v);
        ck_assert(p.scale_min == 0.2 && p.scale_max == 1.0);
        ck_assert(p.ratio_min == 3.0 / 4.0 && p.ratio_max == 4.0 / 3.0);
        ck_assert(p.p_jitter == 0.8 && p.brightness == 0.4 &&
                  p.contrast == 0.4);
        ck_assert(p.sigma_min == 0.1 && p.sigma_max == 1.0);
        ck_assert(p.p_flip == 0.5);
        ck_assert(p.p_blur == (v == 0 ? 1.0 : v == 1 ? 0.1 : 0.5));
        ck_assert(p.p_solarize == (v == 0 ? 0.0 : v == 1 ? 0.2 : 0.1));
    }
}
END_TEST

/*
 * Every draw happens whether or not its step runs: with sigma 0 the blur
 * does nothing, and with brightness and contrast 0 the jitter multiplies
 * by 1, so p_blur 0 or 1 and p_jitter 0 or 1 must give the very same
 * image, flip included (p 0.5, drawn after them), for every key.
 */
START_TEST(test_train_aug_apply_draws_always)
{
    struct train_aug_params p;
    uint8_t src[784];
    float a[784], b[784], tmp[2 * 784];
    int i, k, flipped = 0;

    for (i = 0; i < 784; i++)
        src[i] = (uint8_t)(i % 28 * 9);
    train_aug_preset(&p, -1);
    p.brightness = p.contrast = 0.0;
    p.sigma_min = p.sigma_max = 0.0;
    p.p_solarize = 0.0;
    for (k = 0; k < 64; k++) {
        uint64_t key = train_aug_key(1, 0, k, -1);

        p.p_blur = 0.0;
        p.p_jitter = 0.0;
        train_aug_apply(&p, key, src, 28, 28, a, tmp);
        p.p_blur = 1.0;
        train_aug_apply(&p, key, src, 28, 28, b, tmp);
        ck_assert_mem_eq(a, b, sizeof(a));
        p.p_jitter = 1.0;
        train_aug_apply(&p, key, src, 28, 28, b, tmp);
        ck_assert_mem_eq(a, b, sizeof(a));
        /* The same crop with p_flip 0 tells whether it was flipped. */
        p.p_flip = 0.0;
        train_aug_apply(&p, key, src, 28, 28, b, tmp);
        flipped += memcmp(a, b, sizeof(a)) != 0;
        p.p_flip = 0.5;
    }
    /* Both outcomes of the flip occur (64 coins). */
    ck_assert_int_gt(flipped, 0);
    ck_assert_int_lt(flipped, 64);
}
END_TEST

/*
 * The jitter, by a reference model of the draws: after the crop's (scale
 * 1, ratio 1: the first try fits, the image unchanged) come u, then b
 * uniform in [1 - 0.4, 1 + 0.4], c likewise, then a bit choosing the
 * order.  The image is half 0 and half 1, so clamping makes the two
 * orders differ; every key's output must be one of the two orders as
 * computed here by plain loops, and both orders must occur.
 */
static void
ref_jitter(const float *in, float *out, size_t n, double b, double c,
           int b_first)
{
    double mean = 0.0;
    size_t i;
    int step;

    memcpy(out, in, n * sizeof(float));
    for (step = 0; step < 2; step++) {
        if ((step == 0) == b_first) {
            for (i = 0; i < n; i++) {
                float v = (float)(out[i] * b);

                out[i] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
            }
        } else {
            mean = 0.0;
            for (i = 0; i < n; i++)
                mean += out[i];
            mean /= (double)n;
            for (i = 0; i < n; i++) {
                float v = (float)(c * out[i] + (1.0 - c) * mean);

                out[i] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
            }
        }
    }
}

START_TEST(test_train_aug_apply_jitter_order)
{
    struct train_aug_params p;
    uint8_t src[16];
    float in[16], got[16], bc[16], cb[16], tmp[32];
    int i, k, n_bc = 0, n_cb = 0;

    for (i = 0; i < 16; i++) {
        src[i] = i < 8 ? 255 : 0;
        in[i] = (float)src[i] / 255.0f;
    }
    train_aug_preset(&p, -1);
    p.scale_min = p.scale_max = p.ratio_min = p.ratio_max = 1.0;
    p.p_jitter = 1.0;
    p.p_blur = p.p_solarize = p.p_flip = 0.0;
    for (k = 0; k < 64; k++) {
        uint64_t key = train_aug_key(2, 0, k, -1);
        struct train_rng r;
        int top, left, ch, cw, ok_bc, ok_cb;
        double b, c;

        train_rng_seed(&r, key);
        train_aug_crop_box(&r, 4, 4, 1, 1, 1, 1, &top, &left, &ch, &cw);
        (void)train_rng_unit(&r); /* u, below p_jitter 1 */
        b = 0.6 + 0.8 * train_rng_unit(&r);
        c = 0.6 + 0.8 * train_rng_unit(&r);
        ref_jitter(in, bc, 16, b, c, 1);
        ref_jitter(in, cb, 16, b, c, 0);
        train_aug_apply(&p, key, src, 4, 4, got, tmp);
        ok_bc = ok_cb = 1;
        for (i = 0; i < 16; i++) {
            ok_bc &= fabsf(got[i] - bc[i]) < 1e-6f;
            ok_cb &= fabsf(got[i] - cb[i]) < 1e-6f;
        }
        ck_assert_msg(ok_bc || ok_cb, "key %d: neither order", k);
        n_bc += ok_bc && !ok_cb;
        n_cb += ok_cb && !ok_bc;
    }
    ck_assert_int_gt(n_bc, 0);
    ck_assert_int_gt(n_cb, 0);
}
END_TEST

static Suite *
train_aug_suite(void)
{
    Suite *s = suite_create("train_aug");
    TCase *tc = tcase_create("augment");

    tcase_add_test(tc, test_train_aug_flip);
    tcase_add_test(tc, test_train_aug_brightness_contrast);
    tcase_add_test(tc, test_train_aug_solarize);
    tcase_add_test(tc, test_train_aug_blur);
    tcase_add_test(tc, test_train_aug_resize_crop);
    tcase_add_test(tc, test_train_aug_crop_box);
    tcase_add_test(tc, test_train_aug_apply_identity);
    tcase_add_test(tc, test_train_aug_apply_deterministic);
    tcase_add_test(tc, test_train_aug_shift_flip);
    tcase_add_test(tc, test_train_rng_unit_spread);
    tcase_add_test(tc, test_train_aug_key_view_minus_one);
    tcase_add_test(tc, test_train_aug_crop_box_positions);
    tcase_add_test(tc, test_train_aug_crop_box_ratio_axis);
    tcase_add_test(tc, test_train_aug_crop_box_fallback);
    tcase_add_test(tc, test_train_aug_resize_crop_rect);
    tcase_add_test(tc, test_train_aug_flip_even);
    tcase_add_test(tc, test_train_aug_blur_radius_cap);
    tcase_add_test(tc, test_train_aug_blur_not_square);
    tcase_add_test(tc, test_train_aug_preset_values);
    tcase_add_test(tc, test_train_aug_apply_draws_always);
    tcase_add_test(tc, test_train_aug_apply_jitter_order);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(train_aug_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
