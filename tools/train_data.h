/*
 * train_data.h - smlp-train's data: Fashion-MNIST from gzip'd IDX files,
 * pixel normalisation, the MoCo augmentations and a loader that prepares
 * the next batch on a thread of its own while the current one runs.
 *
 * Files: train_data.c (IDX reader, data sets, normalisation),
 * train_aug.c (augmentations), train_loader.c (shuffling and batches).
 * Everything here is deterministic: a batch is a pure function of the
 * data, the seed, the epoch and the batch's index, whatever the timing
 * of the loader thread (that is what makes --resume bit-identical).
 *
 * Errors are written into a caller's buffer (err[0..errlen)) and name the
 * file at fault; functions return 0 or -1 (and TRAIN_DATA_ENOENT when a
 * file is missing, so that smlp-train can say how to install the data).
 */
#ifndef SMLP_TRAIN_DATA_H
#define SMLP_TRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>

/* Where the Debian package dataset-fashion-mnist puts the files. */
#define TRAIN_FMNIST_DIR "/usr/share/datasets/fashion-mnist"
#define TRAIN_FMNIST_PACKAGE "dataset-fashion-mnist"

/*
 * Pixel normalisation: x / 255, then (x - mean) / std with the mean and
 * standard deviation of the Fashion-MNIST training pixels (0.2860,
 * 0.3530), so that inputs have mean about 0 and variance about 1.
 */
#define TRAIN_FMNIST_MEAN 0.2860f
#define TRAIN_FMNIST_STD 0.3530f

/* Returned besides -1 when a file does not exist. */
#define TRAIN_DATA_ENOENT (-2)

/* One split (train or test) in memory. */
struct train_set {
    int64_t n;        /* images (after train_set_limit) */
    int rows, cols;   /* 28 x 28 for Fashion-MNIST */
    uint8_t *images;  /* n * rows * cols bytes, row-major, 0 = background */
    uint8_t *labels;  /* n bytes, class 0..9 */
    int classes;      /* 1 + the largest label */
    int64_t top_label_at; /* the first image with label classes - 1 */
    char images_path[4096]; /* the files read, for messages */
    char labels_path[4096];
};

/*
 * Reads an IDX file of unsigned bytes with `rank` dimensions: PATH when
 * it exists, else PATH.gz; either may be gzip'd (one member or several
 * concatenated, each with its CRC-32 and length checked, nothing after
 * the last) or plain.  Checks the
 * magic (0x0000 08 rank), the dimensions (each 1..2^24, 2^32 bytes at
 * most) and that the data are exactly as long as the header says.
 * Returns 0 with dims[0..rank) and *data (malloc'ed; free it) set; -1 or
 * TRAIN_DATA_ENOENT with a message naming the file.
 */
int train_idx_read(const char *path, int rank, uint32_t *dims,
                   uint8_t **data, char *err, size_t errlen);

/*
 * Loads split `prefix` ("train" or "t10k") from dir: PREFIX-images-idx3-
 * ubyte and PREFIX-labels-idx1-ubyte (each .gz or plain).  The counts
 * must agree and the labels be below 256.  Returns 0, -1 or
 * TRAIN_DATA_ENOENT (message in err).  Release with train_set_free.
 */
int train_set_load(struct train_set *set, const char *dir, const char *prefix,
                   char *err, size_t errlen);
void train_set_free(struct train_set *set);
/* Keeps the first n images (n <= 0 or n >= set->n: all). */
void train_set_limit(struct train_set *set, int64_t n);

/* out[i] = (px[i] / 255 - TRAIN_FMNIST_MEAN) / TRAIN_FMNIST_STD. */
void train_normalize(const uint8_t *px, float *out, size_t n);
/* The same for values already in [0, 1] (after augmentation), in place. */
void train_normalize_unit(float *x, size_t n);

/* ---- random numbers (train_aug.c) -------------------------------------- */

/* SplitMix64: state advances by a constant, output is its mix. */
struct train_rng {
    uint64_t state;
};

uint64_t train_mix64(uint64_t x);
void train_rng_seed(struct train_rng *r, uint64_t seed);
uint64_t train_rng_next(struct train_rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double train_rng_unit(struct train_rng *r);
/* Uniform integer in [0, n) (n >= 1), by 128-bit multiplication. */
uint64_t train_rng_below(struct train_rng *r, uint64_t n);

/* ---- augmentations (train_aug.c) --------------------------------------- */

enum train_augment {
    TRAIN_AUGMENT_NONE = 0,
    TRAIN_AUGMENT_MOCO = 1,
    TRAIN_AUGMENT_SHIFT = 2,
    TRAIN_AUGMENT_COUNT
};

/*
 * One view's recipe, in the order they are applied (MoCo v3's, for 28 x
 * 28 grey images): random resized crop, brightness/contrast jitter (in a
 * random order), Gaussian blur, solarize, horizontal flip.  Grey images
 * have no saturation, hue or grey-scale step.
 */
struct train_aug_params {
    double scale_min, scale_max; /* crop area as a share of the image */
    double ratio_min, ratio_max; /* crop aspect ratio (w / h) */
    double p_jitter;             /* probability of the colour jitter */
    double brightness;           /* factor in [1 - b, 1 + b] */
    double contrast;             /* factor in [1 - c, 1 + c] */
    double p_blur;
    double sigma_min, sigma_max; /* blur sigma in pixels */
    double p_solarize;           /* invert pixels >= 128/255 */
    double p_flip;
};

/*
 * MoCo v3's recipes adapted to 28 x 28 images: view 0 always blurs and
 * never solarizes, view 1 blurs with p 0.1 and solarizes with p 0.2;
 * view -1 (one view, supervised training) blurs with p 0.5 and solarizes
 * with p 0.1.  Crop scale [0.2, 1] (0.08 leaves too little of a 28-pixel
 * image), ratio [3/4, 4/3], jitter p 0.8 with brightness and contrast
 * 0.4, sigma [0.1, 1.0] (MoCo's [0.1, 2.0] is for 224 pixels), flip 0.5.
 */
void train_aug_preset(struct train_aug_params *p, int view);

/* The key of one augmented image: a pure function of its inputs. */
uint64_t train_aug_key(uint64_t seed, int64_t epoch, int64_t index,
                       int view);

/*
 * Augments one h x w image of bytes into dst (h * w floats in [0, 1],
 * not normalised), drawing every random number from key.  tmp holds
 * 2 * h * w floats.
 */
void train_aug_apply(const struct train_aug_params *p, uint64_t key,
                     const uint8_t *src, int h, int w, float *dst,
                     float *tmp);

/* Largest shift of --augment shift, in pixels. */
#define TRAIN_AUG_SHIFT_MAX 2

/*
 * The light augmentation of supervised training (--augment shift): the
 * h x w image of bytes moved by dy, dx uniform in [-max_shift,
 * max_shift] (pixels moved in from outside are 0, the background: the
 * random crop of an image padded by max_shift), then mirrored left-right
 * with p 0.5; every random number from key.  dst holds h * w bytes.
 */
void train_aug_shift_flip(uint64_t key, const uint8_t *src, int h, int w,
                          int max_shift, uint8_t *dst);

/* The steps, for tests.  Images are h x w floats in [0, 1]. */
/* Bilinear resample of the box (top, left, ch, cw) of src to h x w
 * (pixel centres, edges clamped to the box). */
void train_aug_resize_crop(const float *src, int h, int w, int top,
                           int left, int ch, int cw, float *dst);
/* torchvision's RandomResizedCrop box (10 tries, then a centre crop). */
void train_aug_crop_box(struct train_rng *r, int h, int w, double scale_min,
                        double scale_max, double ratio_min, double ratio_max,
                        int *top, int *left, int *ch, int *cw);
void train_aug_flip(float *x, int h, int w);
/* x * f, clamped to [0, 1]. */
void train_aug_brightness(float *x, size_t n, double f);
/* (x - mean(x)) * f + mean(x), clamped to [0, 1]. */
void train_aug_contrast(float *x, size_t n, double f);
/* Separable Gaussian, radius ceil(3 sigma) (at most 3), reflected edges;
 * tmp holds h * w floats. */
void train_aug_blur(float *x, int h, int w, double sigma, float *tmp);
/* x >= threshold becomes 1 - x. */
void train_aug_solarize(float *x, size_t n, float threshold);

/* ---- the loader (train_loader.c) --------------------------------------- */

struct train_loader_opts {
    const struct train_set *set;
    int64_t batch;  /* rows per batch */
    uint64_t seed;
    int shuffle;    /* a new permutation of the set each epoch */
    int drop_last;  /* leave out a last partial batch (training) */
    int augment;    /* enum train_augment */
    int views;      /* augmented views per image: 1, or 2 (MoCo) */
    /* When not NULL: a batch's "images" are these rows, row_floats floats
     * per image of set (a probe's cached features, train_cache.h), in
     * the same order as the images would be; one view, no augment. */
    const float *rows;
    size_t row_floats;
    /* Data-parallel training (train_dist.h): this loader makes part
     * `part` of `parts` (0 = 1) of each batch: its rows part * batch /
     * parts .. (part + 1) * batch / parts - 1, where batch (a multiple of
     * parts) and the order are those of the whole batch. */
    int part, parts;
};

/* A batch: images [views * rows, 1, rows, cols] normalised (view v of
 * row i at v * rows + i), or [rows, row_floats] with opts.rows; labels
 * [rows]; rows = opts.batch / opts.parts.  Rows past n (a last partial
 * batch) are zero with label 0. */
struct train_batch {
    int64_t epoch;
    int64_t index;
    int64_t n;          /* rows holding data */
    float *images;
    int32_t *labels;
};

struct train_loader;

/*
 * Starts a loader thread (uv_thread) over o->set, which must outlive it.
 * NULL with a message on failure.
 */
struct train_loader *train_loader_create(const struct train_loader_opts *o,
                                         char *err, size_t errlen);
/* Batches per epoch. */
int64_t train_loader_batches(const struct train_loader *l);
/*
 * Asks the thread to prepare batch `index` of `epoch`: at most one batch
 * is in preparation and one held by the caller.  The permutation of an
 * epoch is a pure function of (seed, epoch).
 */
void train_loader_request(struct train_loader *l, int64_t epoch,
                          int64_t index);
/*
 * Waits for the batch asked for last and returns it; it stays valid
 * until the second train_loader_request after this call.  NULL when
 * nothing was requested.
 */
const struct train_batch *train_loader_wait(struct train_loader *l);
/*
 * Fills b (its images and labels allocated by the caller, sized as the
 * loader's) on the calling thread with what the loader thread would make
 * of batch `index` of `epoch` (with scratch memory of its own, so the
 * thread may run meanwhile); for tests.  Returns 0.
 */
int train_loader_fill(struct train_loader *l, int64_t epoch, int64_t index,
                      struct train_batch *b);
/*
 * The order of epoch `epoch` over n items: perm[0..n) is a permutation of
 * 0..n-1, Fisher-Yates driven by train_rng seeded with
 * train_mix64(seed ^ train_mix64(epoch)).
 */
void train_shuffle(uint64_t seed, int64_t epoch, int64_t n, int64_t *perm);
/* Stops the thread (after the batch in preparation) and frees. */
void train_loader_destroy(struct train_loader *l);

#endif /* SMLP_TRAIN_DATA_H */
