/*
 * train_loader.c - smlp-train's batches: a seeded shuffle per epoch and a
 * loader thread that prepares the next batch while the session runs the
 * current one.  See train_data.h.
 *
 * Why a thread of our own: the session runs its own libuv loop inside
 * smlp_session_run() and the caller cannot reach it, and uv_queue_work
 * would put the loader on libuv's process-wide pool, where it would take
 * a worker from the session's kernels.  One uv_thread with a mutex and a
 * condition variable is the simplest overlap: the caller asks for batch
 * i + 1, runs batch i, then waits (normally not at all) for i + 1.
 *
 * Two batch buffers: the one the caller holds and the one in preparation.
 * The thread owns `slots[l->cur]` between a request and the end of its
 * work; everything else in struct train_loader under `lock` is shared.
 * Nothing here allocates after creation, so the thread cannot fail.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "train_data.h"

/* The permutation of one epoch, kept until the epoch changes. */
struct perm_cache {
    int64_t epoch; /* -1: none yet */
    int64_t *perm;
};

struct train_loader {
    struct train_loader_opts o;
    int64_t n_batches;
    int64_t rows;                   /* of a batch, this loader's part */
    size_t pixels;                  /* floats per image */
    struct train_aug_params aug[2]; /* per view */
    struct train_batch slots[2];
    struct perm_cache perm[2];      /* 0: the thread's, 1: the caller's */
    float *tmp[2];                  /* augmentation scratch, the same */
    uv_thread_t thread;
    uv_mutex_t lock;
    uv_cond_t cond;
    /* Under lock. */
    int stop;
    int pending;   /* a request waits for the thread */
    int busy;      /* the thread is filling slots[cur] */
    int requested; /* a request not yet collected by train_loader_wait */
    int cur;       /* the slot of the last request */
};

void
train_shuffle(uint64_t seed, int64_t epoch, int64_t n, int64_t *perm)
{
    struct train_rng r;
    int64_t i;

    for (i = 0; i < n; i++)
        perm[i] = i;
    train_rng_seed(&r, train_mix64(seed ^ train_mix64((uint64_t)epoch)));
    for (i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)train_rng_below(&r, (uint64_t)i + 1);
        int64_t t = perm[i];

        perm[i] = perm[j];
        perm[j] = t;
    }
}

static const int64_t *
epoch_perm(struct train_loader *l, int which, int64_t epoch)
{
    struct perm_cache *c = &l->perm[which];
    int64_t i;

    if (c->epoch != epoch) {
        if (l->o.shuffle)
            train_shuffle(l->o.seed, epoch, l->o.set->n, c->perm);
        else
            for (i = 0; i < l->o.set->n; i++)
                c->perm[i] = i;
        c->epoch = epoch;
    }
    return c->perm;
}

/* Makes batch `index` of `epoch` into b with scratch `which`. */
static void
fill(struct train_loader *l, int which, int64_t epoch, int64_t index,
     struct train_batch *b)
{
    const struct train_set *set = l->o.set;
    const int64_t *perm = epoch_perm(l, which, epoch);
    int64_t batch = l->rows, rows, i;
    int64_t start = index * l->o.batch + l->o.part * batch;
    int views = l->o.views, v;

    rows = set->n - start < batch ? set->n - start : batch;
    if (rows < 0)
        rows = 0;
    b->epoch = epoch;
    b->index = index;
    b->n = rows;
    for (i = 0; i < rows; i++) {
        int64_t item = perm[start + i];
        const uint8_t *px;

        b->labels[i] = set->labels[item];
        if (l->o.rows != NULL) {
            memcpy(b->images + (size_t)i * l->pixels,
                   l->o.rows + (size_t)item * l->pixels,
                   l->pixels * sizeof(float));
            continue;
        }
        px = set->images + (size_t)item * l->pixels;
        for (v = 0; v < views; v++) {
            float *dst = b->images + ((size_t)v * batch + i) * l->pixels;

            if (l->o.augment == TRAIN_AUGMENT_NONE) {
                train_normalize(px, dst, l->pixels);
                continue;
            }
            if (l->o.augment == TRAIN_AUGMENT_SHIFT) {
                uint8_t *moved = (uint8_t *)l->tmp[which];

                train_aug_shift_flip(train_aug_key(l->o.seed, epoch, item,
                                                   views == 1 ? -1 : v),
                                     px, set->rows, set->cols,
                                     TRAIN_AUG_SHIFT_MAX, moved);
                train_normalize(moved, dst, l->pixels);
                continue;
            }
            train_aug_apply(&l->aug[v],
                            train_aug_key(l->o.seed, epoch, item,
                                          views == 1 ? -1 : v),
                            px, set->rows, set->cols, dst, l->tmp[which]);
            train_normalize_unit(dst, l->pixels);
        }
    }
    for (; i < batch; i++) {
        b->labels[i] = 0;
        for (v = 0; v < views; v++)
            memset(b->images + ((size_t)v * batch + i) * l->pixels, 0,
                   l->pixels * sizeof(float));
    }
}

static void
loader_thread(void *arg)
{
    struct train_loader *l = arg;
    struct train_batch *b;
    int64_t epoch, index;

    uv_mutex_lock(&l->lock);
    for (;;) {
        while (!l->pending && !l->stop)
            uv_cond_wait(&l->cond, &l->lock);
        if (l->stop)
            break;
        l->pending = 0;
        l->busy = 1;
        b = &l->slots[l->cur];
        epoch = b->epoch;
        index = b->index;
        uv_mutex_unlock(&l->lock);
        fill(l, 0, epoch, index, b);
        uv_mutex_lock(&l->lock);
        l->busy = 0;
        uv_cond_broadcast(&l->cond);
    }
    uv_mutex_unlock(&l->lock);
}

static void
free_buffers(struct train_loader *l)
{
    int i;

    for (i = 0; i < 2; i++) {
        free(l->slots[i].images);
        free(l->slots[i].labels);
        free(l->perm[i].perm);
        free(l->tmp[i]);
    }
}

struct train_loader *
train_loader_create(const struct train_loader_opts *o, char *err,
                    size_t errlen)
{
    struct train_loader *l;
    size_t floats;
    int i;

    int parts = o->parts > 0 ? o->parts : 1;

    if (o->batch < 1 || o->views < 1 || o->views > 2 || o->set->n < 1 ||
        (o->rows != NULL && (o->views != 1 || o->row_floats < 1 ||
                             o->augment != TRAIN_AUGMENT_NONE)) ||
        o->batch % parts != 0 || o->part < 0 || o->part >= parts) {
        snprintf(err, errlen, "loader: bad options (batch %lld, views %d, "
                              "%lld images, part %d of %d)",
                 (long long)o->batch, o->views, (long long)o->set->n,
                 o->part, parts);
        return NULL;
    }
    l = calloc(1, sizeof(*l));
    if (l == NULL)
        goto out_nomem;
    l->o = *o;
    l->o.parts = parts;
    l->rows = o->batch / parts;
    l->pixels = o->rows != NULL ? o->row_floats
                                : (size_t)o->set->rows * (size_t)o->set->cols;
    l->n_batches = o->drop_last ? o->set->n / o->batch
                                : (o->set->n + o->batch - 1) / o->batch;
    for (i = 0; i < 2; i++)
        train_aug_preset(&l->aug[i], o->views == 1 ? -1 : i);
    floats = (size_t)o->views * (size_t)l->rows * l->pixels;
    for (i = 0; i < 2; i++) {
        l->slots[i].images = malloc(floats * sizeof(float));
        l->slots[i].labels = malloc((size_t)l->rows * sizeof(int32_t));
        l->perm[i].perm = malloc((size_t)o->set->n * sizeof(int64_t));
        l->perm[i].epoch = -1;
        l->tmp[i] = malloc(2 * l->pixels * sizeof(float));
        if (l->slots[i].images == NULL || l->slots[i].labels == NULL ||
            l->perm[i].perm == NULL || l->tmp[i] == NULL)
            goto out_free;
    }
    if (uv_mutex_init(&l->lock) != 0)
        goto out_free;
    if (uv_cond_init(&l->cond) != 0)
        goto out_mutex;
    if (uv_thread_create(&l->thread, loader_thread, l) != 0) {
        snprintf(err, errlen, "loader: cannot start a thread");
        uv_cond_destroy(&l->cond);
        uv_mutex_destroy(&l->lock);
        free_buffers(l);
        free(l);
        return NULL;
    }
    return l;
out_mutex:
    uv_mutex_destroy(&l->lock);
out_free:
    free_buffers(l);
    free(l);
out_nomem:
    snprintf(err, errlen, "loader: out of memory");
    return NULL;
}

int64_t
train_loader_batches(const struct train_loader *l)
{
    return l->n_batches;
}

void
train_loader_request(struct train_loader *l, int64_t epoch, int64_t index)
{
    uv_mutex_lock(&l->lock);
    while (l->pending || l->busy)
        uv_cond_wait(&l->cond, &l->lock);
    l->cur = l->requested ? l->cur : 1 - l->cur;
    l->slots[l->cur].epoch = epoch;
    l->slots[l->cur].index = index;
    l->pending = 1;
    l->requested = 1;
    uv_cond_broadcast(&l->cond);
    uv_mutex_unlock(&l->lock);
}

const struct train_batch *
train_loader_wait(struct train_loader *l)
{
    const struct train_batch *b = NULL;

    uv_mutex_lock(&l->lock);
    if (l->requested) {
        while (l->pending || l->busy)
            uv_cond_wait(&l->cond, &l->lock);
        l->requested = 0;
        b = &l->slots[l->cur];
    }
    uv_mutex_unlock(&l->lock);
    return b;
}

int
train_loader_fill(struct train_loader *l, int64_t epoch, int64_t index,
                  struct train_batch *b)
{
    fill(l, 1, epoch, index, b);
    return 0;
}

void
train_loader_destroy(struct train_loader *l)
{
    if (l == NULL)
        return;
    uv_mutex_lock(&l->lock);
    l->stop = 1;
    uv_cond_broadcast(&l->cond);
    uv_mutex_unlock(&l->lock);
    uv_thread_join(&l->thread);
    uv_cond_destroy(&l->cond);
    uv_mutex_destroy(&l->lock);
    free_buffers(l);
    free(l);
}
