/*
 * train_aug.c - seeded random numbers and the image augmentations of
 * smlp-train's loader (MoCo v3's recipe for grey 28 x 28 images, and the
 * shift-and-flip of supervised training).  See train_data.h.
 *
 * Every random number of one augmented image comes from one SplitMix64
 * stream keyed by (seed, epoch, index, view), drawn in a fixed order
 * whether or not a step is applied, so an image is the same whichever
 * thread makes it and whenever.  The arithmetic is plain C in a fixed
 * order (no threads, no library resampling), hence bit-identical from run
 * to run on one machine.
 */
#include <math.h>
#include <string.h>

#include "train_data.h"

#define GOLDEN UINT64_C(0x9E3779B97F4A7C15)

/* The largest blur radius: kernels of 7 taps on 28 pixels. */
#define BLUR_MAX_RADIUS 3

uint64_t
train_mix64(uint64_t x)
{
    x += GOLDEN;
    x = (x ^ (x >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94D049BB133111EB);
    return x ^ (x >> 31);
}

void
train_rng_seed(struct train_rng *r, uint64_t seed)
{
    r->state = seed;
}

uint64_t
train_rng_next(struct train_rng *r)
{
    uint64_t x = r->state;

    r->state += GOLDEN;
    return train_mix64(x);
}

double
train_rng_unit(struct train_rng *r)
{
    return (double)(train_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

uint64_t
train_rng_below(struct train_rng *r, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)train_rng_next(r) * n) >> 64);
}

void
train_aug_preset(struct train_aug_params *p, int view)
{
    p->scale_min = 0.2;
    p->scale_max = 1.0;
    p->ratio_min = 3.0 / 4.0;
    p->ratio_max = 4.0 / 3.0;
    p->p_jitter = 0.8;
    p->brightness = 0.4;
    p->contrast = 0.4;
    p->sigma_min = 0.1;
    p->sigma_max = 1.0;
    p->p_flip = 0.5;
    if (view == 0) {
        p->p_blur = 1.0;
        p->p_solarize = 0.0;
    } else if (view == 1) {
        p->p_blur = 0.1;
        p->p_solarize = 0.2;
    } else {
        p->p_blur = 0.5;
        p->p_solarize = 0.1;
    }
}

uint64_t
train_aug_key(uint64_t seed, int64_t epoch, int64_t index, int view)
{
    uint64_t k = train_mix64(seed ^ UINT64_C(0x61756721)); /* "aug!" */

    k = train_mix64(k ^ (uint64_t)epoch);
    k = train_mix64(k ^ (uint64_t)index);
    return train_mix64(k ^ (uint64_t)(int64_t)view);
}

static double
uniform(struct train_rng *r, double a, double b)
{
    return a + (b - a) * train_rng_unit(r);
}

static int
round_pos(double x)
{
    return (int)floor(x + 0.5);
}

void
train_aug_crop_box(struct train_rng *r, int h, int w, double scale_min,
                   double scale_max, double ratio_min, double ratio_max,
                   int *top, int *left, int *ch, int *cw)
{
    double area = (double)h * (double)w, ratio;
    int i;

    for (i = 0; i < 10; i++) {
        double target = area * uniform(r, scale_min, scale_max);
        double ar = exp(uniform(r, log(ratio_min), log(ratio_max)));
        int x = round_pos(sqrt(target * ar));
        int y = round_pos(sqrt(target / ar));

        if (x > 0 && x <= w && y > 0 && y <= h) {
            *top = (int)train_rng_below(r, (uint64_t)(h - y + 1));
            *left = (int)train_rng_below(r, (uint64_t)(w - x + 1));
            *ch = y;
            *cw = x;
            return;
        }
    }
    /* No try fitted: the centre crop of the whole image, its ratio
     * clamped to [ratio_min, ratio_max] (as torchvision). */
    ratio = (double)w / (double)h;
    if (ratio < ratio_min) {
        *cw = w;
        *ch = round_pos(w / ratio_min);
    } else if (ratio > ratio_max) {
        *ch = h;
        *cw = round_pos(h * ratio_max);
    } else {
        *cw = w;
        *ch = h;
    }
    *top = (h - *ch) / 2;
    *left = (w - *cw) / 2;
}

void
train_aug_resize_crop(const float *src, int h, int w, int top, int left,
                      int ch, int cw, float *dst)
{
    int y, x;

    for (y = 0; y < h; y++) {
        double sy = top + (y + 0.5) * ch / h - 0.5;
        int y0, y1;
        float fy;

        if (sy < top)
            sy = top;
        if (sy > top + ch - 1)
            sy = top + ch - 1;
        y0 = (int)floor(sy);
        y1 = y0 + 1 < top + ch ? y0 + 1 : y0;
        fy = (float)(sy - y0);
        for (x = 0; x < w; x++) {
            double sx = left + (x + 0.5) * cw / w - 0.5;
            const float *r0, *r1;
            int x0, x1;
            float fx, a, b;

            if (sx < left)
                sx = left;
            if (sx > left + cw - 1)
                sx = left + cw - 1;
            x0 = (int)floor(sx);
            x1 = x0 + 1 < left + cw ? x0 + 1 : x0;
            fx = (float)(sx - x0);
            r0 = src + (size_t)y0 * w;
            r1 = src + (size_t)y1 * w;
            a = (1.0f - fx) * r0[x0] + fx * r0[x1];
            b = (1.0f - fx) * r1[x0] + fx * r1[x1];
            dst[(size_t)y * w + x] = (1.0f - fy) * a + fy * b;
        }
    }
}

void
train_aug_flip(float *x, int h, int w)
{
    int y, i;

    for (y = 0; y < h; y++) {
        float *row = x + (size_t)y * w;

        for (i = 0; i < w / 2; i++) {
            float t = row[i];

            row[i] = row[w - 1 - i];
            row[w - 1 - i] = t;
        }
    }
}

static float
clamp01(float v)
{
    return v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
}

void
train_aug_brightness(float *x, size_t n, double f)
{
    size_t i;

    for (i = 0; i < n; i++)
        x[i] = clamp01((float)(x[i] * f));
}

void
train_aug_contrast(float *x, size_t n, double f)
{
    double mean = 0.0;
    size_t i;

    for (i = 0; i < n; i++)
        mean += x[i];
    mean = n > 0 ? mean / (double)n : 0.0;
    for (i = 0; i < n; i++)
        x[i] = clamp01((float)(f * x[i] + (1.0 - f) * mean));
}

/* Index i reflected into [0, n) (reflect padding: -1 -> 1, n -> n - 2). */
static int
reflect(int i, int n)
{
    if (n == 1)
        return 0;
    while (i < 0 || i >= n)
        i = i < 0 ? -i : 2 * (n - 1) - i;
    return i;
}

void
train_aug_blur(float *x, int h, int w, double sigma, float *tmp)
{
    float k[2 * BLUR_MAX_RADIUS + 1];
    int r = (int)ceil(3.0 * sigma), y, i, j;
    double sum = 0.0;

    if (r > BLUR_MAX_RADIUS)
        r = BLUR_MAX_RADIUS;
    if (r < 1 || !(sigma > 0.0))
        return;
    for (j = -r; j <= r; j++)
        sum += exp(-(double)(j * j) / (2.0 * sigma * sigma));
    for (j = -r; j <= r; j++)
        k[j + r] = (float)(exp(-(double)(j * j) / (2.0 * sigma * sigma)) /
                           sum);
    for (y = 0; y < h; y++)
        for (i = 0; i < w; i++) {
            float acc = 0.0f;

            for (j = -r; j <= r; j++)
                acc += k[j + r] * x[(size_t)y * w + reflect(i + j, w)];
            tmp[(size_t)y * w + i] = acc;
        }
    for (y = 0; y < h; y++)
        for (i = 0; i < w; i++) {
            float acc = 0.0f;

            for (j = -r; j <= r; j++)
                acc += k[j + r] * tmp[(size_t)reflect(y + j, h) * w + i];
            x[(size_t)y * w + i] = acc;
        }
}

void
train_aug_solarize(float *x, size_t n, float threshold)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (x[i] >= threshold)
            x[i] = 1.0f - x[i];
}

void
train_aug_apply(const struct train_aug_params *p, uint64_t key,
                const uint8_t *src, int h, int w, float *dst, float *tmp)
{
    size_t n = (size_t)h * (size_t)w, i;
    int top, left, ch, cw, order;
    double u, b, c, sigma;
    struct train_rng r;

    for (i = 0; i < n; i++)
        tmp[i] = (float)src[i] / 255.0f;
    train_rng_seed(&r, key);
    train_aug_crop_box(&r, h, w, p->scale_min, p->scale_max, p->ratio_min,
                       p->ratio_max, &top, &left, &ch, &cw);
    train_aug_resize_crop(tmp, h, w, top, left, ch, cw, dst);
    /* Every draw happens whether or not its step runs. */
    u = train_rng_unit(&r);
    b = uniform(&r, fmax(0.0, 1.0 - p->brightness), 1.0 + p->brightness);
    c = uniform(&r, fmax(0.0, 1.0 - p->contrast), 1.0 + p->contrast);
    order = (int)(train_rng_next(&r) >> 63);
    if (u < p->p_jitter) {
        if (order) {
            train_aug_brightness(dst, n, b);
            train_aug_contrast(dst, n, c);
        } else {
            train_aug_contrast(dst, n, c);
            train_aug_brightness(dst, n, b);
        }
    }
    u = train_rng_unit(&r);
    sigma = uniform(&r, p->sigma_min, p->sigma_max);
    if (u < p->p_blur)
        train_aug_blur(dst, h, w, sigma, tmp + n);
    if (train_rng_unit(&r) < p->p_solarize)
        train_aug_solarize(dst, n, 128.0f / 255.0f);
    if (train_rng_unit(&r) < p->p_flip)
        train_aug_flip(dst, h, w);
}

void
train_aug_shift_flip(uint64_t key, const uint8_t *src, int h, int w,
                     int max_shift, uint8_t *dst)
{
    struct train_rng r;
    int dy, dx, flip, y, x;

    train_rng_seed(&r, key);
    dy = (int)train_rng_below(&r, (uint64_t)(2 * max_shift + 1)) - max_shift;
    dx = (int)train_rng_below(&r, (uint64_t)(2 * max_shift + 1)) - max_shift;
    flip = (int)(train_rng_next(&r) >> 63);
    for (y = 0; y < h; y++) {
        int sy = y - dy;

        for (x = 0; x < w; x++) {
            /* dst(y, x) = shifted(y, flip ? w-1-x : x), shifted(y, x) =
             * src(y - dy, x - dx). */
            int sx = (flip ? w - 1 - x : x) - dx;

            dst[y * w + x] = sy >= 0 && sy < h && sx >= 0 && sx < w
                                 ? src[sy * w + sx]
                                 : 0;
        }
    }
}
