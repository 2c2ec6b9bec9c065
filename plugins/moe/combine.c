/*
 * combine.c - moe.combine: the weighted sum of each item's expert outputs.
 *
 * out [E,M,o], expert i32 [N,k], slot i32 [N,k], weight f32 [N,k] ->
 * y [N,o] with y[n] = Σ_j weight[n,j]·out[expert[n,j], slot[n,j]] over the
 * kept choices (slot >= 0), accumulated in float in j order; y[n] = 0
 * when none is kept (the residual carries a dropped item).  Each item
 * writes only its own row.  Indices are checked before use: an expert
 * outside [0,E) or a slot outside {−1} ∪ [0,M) fails the run with a
 * message.
 *
 * Backward (expert and slot are i32 and get no gradient):
 *   d out[e,s] = Σ weight[n,j]·dy[n] over the kept choices (n,j) with
 *                expert[n,j] = e and slot[n,j] = s, accumulated in float
 *                in ascending (n, j) order; rows no choice points to get 0;
 *   d weight[n,j] = <out[expert[n,j], slot[n,j]], dy[n]> (a dot product
 *                summed in double in column order), 0 for dropped choices.
 *
 * Intra-op tasks (smlp_parallel_for), after one pass has checked every
 * index: the forward's tasks are blocks of COMBINE_ROWS items (each item
 * writes its own row of y).  The backward's scatter-add into d out is
 * turned into a gather: one serial counting pass lists, for every buffer
 * row (e,s), the choices (n,j) that point to it, ascending (an inverse
 * index in the backward workspace: E·M + 1 offsets and N·k choices); then
 * tasks of COMBINE_ROWS buffer rows sum their rows' choices in that order
 * (the order of a serial scatter-add), and tasks of COMBINE_ROWS items
 * form d weight.  Every element is written by one task in one fixed
 * order, so results do not depend on `threads`.
 */
#include <string.h>

#include "moe.h"

/* Items or buffer rows of one task. */
#define COMBINE_ROWS 64

static int
combine_infer(struct smlp_infer_ctx *ctx)
{
    const struct smlp_tensor *out, *ex;
    int64_t shape[2];
    int rc;

    if ((rc = smlp_infer_check_input(ctx, 0, "out", SMLP_DTYPE_F32, 3, 3)) !=
            0 ||
        (rc = smlp_infer_check_input(ctx, 1, "expert", SMLP_DTYPE_I32, 2,
                                     2)) != 0 ||
        (rc = smlp_infer_check_input(ctx, 2, "slot", SMLP_DTYPE_I32, 2, 2)) !=
            0 ||
        (rc = smlp_infer_check_input(ctx, 3, "weight", SMLP_DTYPE_F32, 2,
                                     2)) != 0 ||
        (rc = smlp_infer_check_same_shape(ctx, 2, "slot", 1, "expert")) !=
            0 ||
        (rc = smlp_infer_check_same_shape(ctx, 3, "weight", 1, "expert")) !=
            0)
        return rc;
    out = ctx->inputs[0];
    ex = ctx->inputs[1];
    shape[0] = ex->shape[0];
    shape[1] = out->shape[2];
    smlp_infer_set_output(ctx, 0, SMLP_DTYPE_F32, 2, shape);
    /* The backward's inverse index: E·M + 1 offsets, then N·k choices. */
    if (ctx->size >= offsetof(struct smlp_infer_ctx, backward_workspace) +
                         sizeof(ctx->backward_workspace))
        ctx->backward_workspace =
            smlp__moe_align((size_t)(out->shape[0] * out->shape[1] + 1) *
                            sizeof(int32_t)) +
            smlp__moe_align((size_t)(ex->shape[0] * ex->shape[1]) *
                            sizeof(int32_t));
    return SMLP_OK;
}

/* What the tasks of both directions share. */
struct combine_args {
    const float *out, *weight, *dy;
    const int32_t *expert, *slot;
    float *y, *dout, *dw;
    const int32_t *first, *choices; /* inverse index (backward) */
    int64_t m, o, n, k, rows; /* rows = E·M */
    int64_t dout_tasks;       /* backward: tasks of d out, then of d w */
};

/* Forward task t: y of items [t·COMBINE_ROWS, ...). */
static int
combine_task(void *arg, int64_t task, int worker)
{
    const struct combine_args *a = arg;
    int64_t i = task * COMBINE_ROWS, end = i + COMBINE_ROWS, o = a->o, j, c;

    (void)worker;
    if (end > a->n)
        end = a->n;
    for (; i < end; i++) {
        float *yi = a->y + i * o;

        memset(yi, 0, (size_t)o * sizeof(float));
        for (j = 0; j < a->k; j++) {
            int32_t s = a->slot[i * a->k + j];
            const float *row;
            float w = a->weight[i * a->k + j];

            if (s < 0)
                continue;
            row = a->out + ((int64_t)a->expert[i * a->k + j] * a->m + s) * o;
            for (c = 0; c < o; c++)
                yi[c] += w * row[c];
        }
    }
    return 0;
}

/* Checks choice (i, j); SMLP_OK, or the failure through errorf. */
static int
combine_check_choice(const struct smlp_host_api *host,
                     const struct smlp_node *node, int64_t i, int64_t j,
                     int32_t ex, int32_t s, int64_t e, int64_t m)
{
    if (ex < 0 || ex >= e) {
        host->errorf(node,
                     "input 1 (expert)[%lld,%lld] = %d is out of range [0, "
                     "%lld) (dim 0 of input 0 (out))",
                     (long long)i, (long long)j, (int)ex, (long long)e);
        return SMLP_EINVAL;
    }
    if (s < -1 || s >= m) {
        host->errorf(node,
                     "input 2 (slot)[%lld,%lld] = %d is out of range: "
                     "expected -1 or a row in [0, %lld) (dim 1 of input 0 "
                     "(out))",
                     (long long)i, (long long)j, (int)s, (long long)m);
        return SMLP_EINVAL;
    }
    return SMLP_OK;
}

/* Checks every choice, in (i, j) order: the first bad one fails. */
static int
combine_check(const struct smlp_host_api *host, const struct smlp_node *node,
              const int32_t *expert, const int32_t *slot, int64_t n,
              int64_t k, int64_t e, int64_t m)
{
    int64_t i, j;
    int rc;

    for (i = 0; i < n; i++)
        for (j = 0; j < k; j++)
            if ((rc = combine_check_choice(host, node, i, j,
                                           expert[i * k + j],
                                           slot[i * k + j], e, m)) != 0)
                return rc;
    return SMLP_OK;
}

static int
combine_run(struct smlp_kernel_ctx *ctx)
{
    const struct smlp_tensor *ot = ctx->inputs[0], *et = ctx->inputs[1];
    struct combine_args a;
    int rc;

    a.out = ot->data;
    a.weight = ctx->inputs[3]->data;
    a.expert = et->data;
    a.slot = ctx->inputs[2]->data;
    a.y = ctx->outputs[0]->data;
    a.m = ot->shape[1];
    a.o = ot->shape[2];
    a.n = et->shape[0];
    a.k = et->shape[1];
    if ((rc = combine_check(ctx->host, ctx->node, a.expert, a.slot, a.n, a.k,
                            ot->shape[0], a.m)) != 0)
        return rc;
    return smlp_parallel_for(ctx->host, ctx->node,
                             (a.n + COMBINE_ROWS - 1) / COMBINE_ROWS,
                             combine_task, &a);
}

/* Backward task: d out of buffer rows [t·COMBINE_ROWS, ...) for t <
 * dout_tasks, else d weight of a block of items. */
static int
combine_bwd_task(void *arg, int64_t task, int worker)
{
    const struct combine_args *a = arg;
    int64_t r, end, o = a->o, c;
    int32_t q;

    (void)worker;
    if (task < a->dout_tasks) {
        r = task * COMBINE_ROWS;
        end = r + COMBINE_ROWS < a->rows ? r + COMBINE_ROWS : a->rows;
        for (; r < end; r++) {
            float *dst = a->dout + r * o;

            memset(dst, 0, (size_t)o * sizeof(float));
            for (q = a->first[r]; q < a->first[r + 1]; q++) {
                int32_t at = a->choices[q];
                const float *dyi = a->dy + (int64_t)(at / a->k) * o;
                float w = a->weight[at];

                for (c = 0; c < o; c++)
                    dst[c] += w * dyi[c];
            }
        }
        return 0;
    }
    r = (task - a->dout_tasks) * COMBINE_ROWS;
    end = r + COMBINE_ROWS < a->n ? r + COMBINE_ROWS : a->n;
    for (r *= a->k, end *= a->k; r < end; r++) {
        const float *dyi = a->dy + r / a->k * o, *row;
        double acc = 0.0;

        if (a->slot[r] < 0) {
            a->dw[r] = 0.0f;
            continue;
        }
        row = a->out + ((int64_t)a->expert[r] * a->m + a->slot[r]) * o;
        for (c = 0; c < o; c++)
            acc += (double)row[c] * (double)dyi[c];
        a->dw[r] = (float)acc;
    }
    return 0;
}

static int
combine_backward(struct smlp_backward_ctx *ctx)
{
    const struct smlp_tensor *ot = ctx->inputs[0], *et = ctx->inputs[1];
    const struct smlp_tensor *gyt = ctx->grad_outputs[0];
    struct smlp_tensor *gout = ctx->grad_inputs[0];
    struct smlp_tensor *gw = ctx->n_inputs > 3 ? ctx->grad_inputs[3] : NULL;
    struct combine_args a;
    int32_t *first, *list;
    int64_t e = ot->shape[0], r, q, nk;
    int rc;

    a.out = ot->data;
    a.weight = ctx->inputs[3]->data;
    a.dy = gyt != NULL ? gyt->data : NULL;
    a.expert = et->data;
    a.slot = ctx->inputs[2]->data;
    a.m = ot->shape[1];
    a.o = ot->shape[2];
    a.n = et->shape[0];
    a.k = et->shape[1];
    a.rows = e * a.m;
    a.dout = gout != NULL ? gout->data : NULL;
    a.dw = gw != NULL ? gw->data : NULL;
    nk = a.n * a.k;
    if (a.dout == NULL && a.dw == NULL)
        return SMLP_OK;
    /* Every index is checked before anything is written. */
    if ((rc = combine_check(ctx->host, ctx->node, a.expert, a.slot, a.n, a.k,
                            e, a.m)) != 0)
        return rc;
    if (a.dy == NULL) {
        /* No gradient reaches y: all zeros. */
        if (a.dout != NULL)
            memset(a.dout, 0, (size_t)(a.rows * a.o) * sizeof(float));
        if (a.dw != NULL)
            memset(a.dw, 0, (size_t)nk * sizeof(float));
        return SMLP_OK;
    }
    a.dout_tasks = 0;
    if (a.dout != NULL) {
        if (nk > INT32_MAX || a.rows > INT32_MAX)
            return smlp__moe_backward_fail(ctx, SMLP_ELIMIT,
                                           "%lld choices or %lld buffer "
                                           "rows exceed the inverse "
                                           "index's limit %d",
                                           (long long)nk, (long long)a.rows,
                                           (int)INT32_MAX);
        /* The inverse index by counting (see dispatch.c): the kept
         * choices of each buffer row, ascending. */
        first = ctx->workspace;
        list = (int32_t *)((char *)ctx->workspace +
                           smlp__moe_align((size_t)(a.rows + 1) *
                                           sizeof(int32_t)));
        memset(first, 0, (size_t)(a.rows + 1) * sizeof(int32_t));
        for (q = 0; q < nk; q++)
            if (a.slot[q] >= 0)
                first[(int64_t)a.expert[q] * a.m + a.slot[q] + 1]++;
        for (r = 0; r < a.rows; r++)
            first[r + 1] += first[r];
        for (q = 0; q < nk; q++)
            if (a.slot[q] >= 0)
                list[first[(int64_t)a.expert[q] * a.m + a.slot[q]]++] =
                    (int32_t)q;
        for (r = a.rows; r > 0; r--)
            first[r] = first[r - 1];
        first[0] = 0;
        a.first = first;
        a.choices = list;
        a.dout_tasks = (a.rows + COMBINE_ROWS - 1) / COMBINE_ROWS;
    }
    return smlp_parallel_for(
        ctx->host, ctx->node,
        a.dout_tasks +
            (a.dw != NULL ? (a.n + COMBINE_ROWS - 1) / COMBINE_ROWS : 0),
        combine_bwd_task, &a);
}

static const struct smlp_kernel_def combine_cpu = {
    .size = sizeof(struct smlp_kernel_def),
    .abi = SMLP_ABI_VERSION,
    .device = SMLP_DEVICE_CPU,
    .dtype_mask = SMLP__MOE_MASK_F32,
    .run = combine_run,
    .score = SMLP__MOE_CPU_SCORE,
};

static const struct smlp_kernel_def *const combine_kernels[] = {
    &combine_cpu, SMLP__MOE_CUDA(smlp__moe_combine_cuda) NULL};

static const struct smlp_attr_def no_attrs[] = {{NULL, 0, 0, NULL}};

const struct smlp_op_def smlp__moe_op_combine = {
    .size = sizeof(struct smlp_op_def),
    .abi = SMLP_ABI_VERSION,
    .name = "moe.combine",
    .min_inputs = 4,
    .max_inputs = 4,
    .n_outputs = 1,
    .attrs = no_attrs,
    .infer = combine_infer,
    .kernels = combine_kernels,
    .backward = combine_backward,
    .doc = "y[n] = sum_j weight[n,j]*out[expert[n,j],slot[n,j]] over kept "
           "choices: out [E,M,o], expert, slot i32 [N,k], weight [N,k] -> "
           "y [N,o]",
};
