/*
 * train_sync.c - what a step's micro-batches (--accum) add up and
 * smlp-train's ranks exchange in data-parallel training (train_dist.h).
 *
 * Each rank runs its part of the batch (the loader's part/parts) as
 * --accum micro-batches of equal size, each a forward and a backward;
 * the micro-batches' losses, correct answers, images and MoE values add
 * up in doubles (train_sync_micro) and their gradients in floats, in
 * order, in one buffer (train_sync_accum).  Then, collectively and in
 * this order:
 *
 *   the forward values  the sums above (for the batch's loss and
 *                       accuracy) and the MoE layers' loads and aux
 *                       losses (train_moe.h), summed over the ranks;
 *   the gradients       summed over the ranks in floats and divided by
 *                       ranks x micro-batches: the mean of per-micro-
 *                       batch means, which is the gradient of the whole
 *                       batch's mean loss (the micro-batches are equal);
 *   after the update    the state tensors (batch norms' running
 *                       statistics) of rank 0, as PyTorch's
 *                       DistributedDataParallel broadcasts its buffers.
 *
 * The sums reach every rank with rank 0's bits (train_dist_mpi.c), so
 * the updates, and the parameters, are the same on every rank;
 * train_sync_check compares hashes of the parameters and state tensors
 * at checkpoints.
 */
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "train_dist.h"
#include "train_main.h"

int
train_sync_setup(struct train_run *r)
{
    struct train_sync *y = &r->sync;
    int i, n;

    y->n_vals = 3 + train_moe_values(&r->moe);
    y->vals = malloc(y->n_vals * sizeof(double));
    y->micro = malloc(y->n_vals * sizeof(double));
    if (y->vals == NULL || y->micro == NULL)
        goto oom;
    if (train_dist_size() == 1 && r->o.accum == 1)
        return 0;
    /* For tests: rank 1 changes a gradient at this step, so that the
     * ranks' parameters part. */
    y->test_diverge_step = -1;
    if (getenv("SMLP_TRAIN_TEST_DIVERGE_STEP") != NULL)
        y->test_diverge_step =
            strtoll(getenv("SMLP_TRAIN_TEST_DIVERGE_STEP"), NULL, 10);
    n = smlp_session_tensor_count(r->ts, 1);
    y->grads = calloc((size_t)(n > 0 ? n : 1), sizeof(*y->grads));
    if (y->grads == NULL)
        goto oom;
    for (i = 0; i < n; i++) {
        const char *name = smlp_session_tensor_name(r->ts, 1, i);
        struct smlp_tensor *g = &y->grads[y->n_grads];

        /* Frozen parameters (and i32 ones) have no gradient. */
        if (smlp_session_grad(r->ts, name, g) != SMLP_OK)
            continue;
        y->floats += (size_t)smlp_tensor_numel(g);
        y->n_grads++;
    }
    n = smlp_session_tensor_count(r->ts, 2);
    y->states = calloc((size_t)(n > 0 ? n : 1), sizeof(*y->states));
    if (y->states == NULL)
        goto oom;
    for (i = 0; i < n; i++)
        if (train_tensor(r->ts, smlp_session_tensor_name(r->ts, 2, i),
                         &y->states[y->n_states]) == 0)
            y->n_states++;
        else
            return -1;
    y->buf = malloc((y->floats ? y->floats : 1) * sizeof(float));
    if (y->buf == NULL)
        goto oom;
    return 0;
oom:
    train_fail("out of memory (%zu gradient floats to exchange)",
               y->floats);
    return -1;
}

void
train_sync_micro(struct train_run *r, int64_t a, double loss,
                 double correct, int64_t images)
{
    struct train_sync *y = &r->sync;
    size_t j;

    if (a == 0) {
        y->vals[0] = loss;
        y->vals[1] = correct;
        y->vals[2] = (double)images;
        train_moe_get(&r->moe, y->vals + 3);
        return;
    }
    y->vals[0] += loss;
    y->vals[1] += correct;
    y->vals[2] += (double)images;
    train_moe_get(&r->moe, y->micro);
    for (j = 3; j < y->n_vals; j++)
        y->vals[j] += y->micro[j - 3];
}

void
train_sync_accum(struct train_run *r, int64_t a)
{
    struct train_sync *y = &r->sync;
    size_t at = 0, n, j;
    int i;

    if (y->buf == NULL)
        return;
    for (i = 0; i < y->n_grads; i++) {
        const float *g = y->grads[i].data;

        n = (size_t)smlp_tensor_numel(&y->grads[i]);
        if (a == 0)
            memcpy(y->buf + at, g, n * sizeof(float));
        else
            for (j = 0; j < n; j++)
                y->buf[at + j] += g[j];
        at += n;
    }
}

int
train_sync_forward(struct train_run *r, int64_t n, double *loss,
                   double *correct, int64_t *images)
{
    struct train_sync *y = &r->sync;
    int64_t parts = n * train_dist_size();

    if (train_dist_sum_f64(y->vals, y->n_vals) != 0)
        return -1;
    *loss = y->vals[0] / (double)parts;
    *correct = y->vals[1];
    *images = (int64_t)y->vals[2];
    train_moe_step_values(&r->moe, y->vals + 3, (int)parts);
    return 0;
}

int
train_sync_grads(struct train_run *r)
{
    struct train_sync *y = &r->sync;
    float scale = 1.0f / (float)(train_dist_size() * r->o.accum);
    size_t at = 0, n, j;
    int i;

    if (y->buf == NULL)
        return 0;
    if (train_dist_sum_f32(y->buf, y->floats) != 0)
        return -1;
    for (j = 0; j < y->floats; j++)
        y->buf[j] *= scale;
    if (r->step == y->test_diverge_step && train_dist_rank() == 1 &&
        y->floats > 0)
        y->buf[y->floats - 1] += 1.0f;
    for (i = 0; i < y->n_grads; i++) {
        n = (size_t)smlp_tensor_numel(&y->grads[i]);
        memcpy(y->grads[i].data, y->buf + at, n * sizeof(float));
        at += n;
    }
    return 0;
}

int
train_sync_states(struct train_run *r)
{
    struct train_sync *y = &r->sync;
    int i;

    for (i = 0; i < y->n_states; i++)
        if (train_dist_bcast(y->states[i].data,
                             (size_t)smlp_tensor_numel(&y->states[i]) * 4) !=
            0)
            return -1;
    return 0;
}

int
train_sync_check(struct train_run *r)
{
    struct smlp__st_hash h;
    struct smlp_tensor t;
    int kind, i, n;

    if (train_dist_size() == 1)
        return 0;
    smlp__st_hash_init(&h);
    for (kind = 1; kind <= 2; kind++) { /* parameters, then states */
        n = smlp_session_tensor_count(r->ts, kind);
        for (i = 0; i < n; i++)
            if (smlp_session_tensor(r->ts,
                                    smlp_session_tensor_name(r->ts, kind, i),
                                    &t) == SMLP_OK &&
                t.data != NULL)
                smlp__st_hash_update(&h, t.data,
                                     (size_t)smlp_tensor_numel(&t) * 4);
    }
    if (train_dist_same_u64(smlp__st_hash_final(&h)))
        return 0;
    train_fail("step %lld: the ranks' parameters differ (or their state "
               "tensors: a kernel or the MPI library gave ranks different "
               "bits); stopping",
               (long long)r->step);
    return -1;
}

void
train_sync_free(struct train_run *r)
{
    free(r->sync.grads);
    free(r->sync.states);
    free(r->sync.buf);
    free(r->sync.vals);
    free(r->sync.micro);
    memset(&r->sync, 0, sizeof(r->sync));
}
