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
 * Single-threaded, so the result does not depend on `threads`.
 */
#include <string.h>

#include "moe.h"

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
    return SMLP_OK;
}

static int
combine_run(struct smlp_kernel_ctx *ctx)
{
    const struct smlp_tensor *ot = ctx->inputs[0], *et = ctx->inputs[1];
    const float *out = ot->data, *weight = ctx->inputs[3]->data;
    const int32_t *expert = et->data, *slot = ctx->inputs[2]->data;
    float *y = ctx->outputs[0]->data;
    int64_t e = ot->shape[0], m = ot->shape[1], o = ot->shape[2];
    int64_t n = et->shape[0], k = et->shape[1], i, j, c;

    for (i = 0; i < n; i++) {
        float *yi = y + i * o;

        memset(yi, 0, (size_t)o * sizeof(float));
        for (j = 0; j < k; j++) {
            int32_t ex = expert[i * k + j], s = slot[i * k + j];
            const float *row;
            float w = weight[i * k + j];

            if (ex < 0 || ex >= e)
                return smlp_kernel_fail(ctx, SMLP_EINVAL,
                                        "input 1 (expert)[%lld,%lld] = %d "
                                        "is out of range [0, %lld) (dim 0 "
                                        "of input 0 (out))",
                                        (long long)i, (long long)j, (int)ex,
                                        (long long)e);
            if (s < -1 || s >= m)
                return smlp_kernel_fail(ctx, SMLP_EINVAL,
                                        "input 2 (slot)[%lld,%lld] = %d is "
                                        "out of range: expected -1 or a row "
                                        "in [0, %lld) (dim 1 of input 0 "
                                        "(out))",
                                        (long long)i, (long long)j, (int)s,
                                        (long long)m);
            if (s < 0)
                continue;
            row = out + ((int64_t)ex * m + s) * o;
            for (c = 0; c < o; c++)
                yi[c] += w * row[c];
        }
    }
    return SMLP_OK;
}

/* Checks choice (i, j) as the forward does; SMLP_OK or the failure. */
static int
combine_check_choice(struct smlp_backward_ctx *ctx, int64_t i, int64_t j,
                     int32_t ex, int32_t s, int64_t e, int64_t m)
{
    if (ex < 0 || ex >= e)
        return smlp__moe_backward_fail(ctx, SMLP_EINVAL,
                                       "input 1 (expert)[%lld,%lld] = %d is "
                                       "out of range [0, %lld) (dim 0 of "
                                       "input 0 (out))",
                                       (long long)i, (long long)j, (int)ex,
                                       (long long)e);
    if (s < -1 || s >= m)
        return smlp__moe_backward_fail(ctx, SMLP_EINVAL,
                                       "input 2 (slot)[%lld,%lld] = %d is "
                                       "out of range: expected -1 or a row "
                                       "in [0, %lld) (dim 1 of input 0 "
                                       "(out))",
                                       (long long)i, (long long)j, (int)s,
                                       (long long)m);
    return SMLP_OK;
}

static int
combine_backward(struct smlp_backward_ctx *ctx)
{
    const struct smlp_tensor *ot = ctx->inputs[0], *et = ctx->inputs[1];
    const struct smlp_tensor *gyt = ctx->grad_outputs[0];
    struct smlp_tensor *gout = ctx->grad_inputs[0];
    struct smlp_tensor *gw = ctx->n_inputs > 3 ? ctx->grad_inputs[3] : NULL;
    const float *out = ot->data, *weight = ctx->inputs[3]->data;
    const float *dy = gyt != NULL ? gyt->data : NULL;
    const int32_t *expert = et->data, *slot = ctx->inputs[2]->data;
    int64_t e = ot->shape[0], m = ot->shape[1], o = ot->shape[2];
    int64_t n = et->shape[0], k = et->shape[1], i, j, c;
    float *dout = gout != NULL ? gout->data : NULL;
    float *dw = gw != NULL ? gw->data : NULL;
    int rc;

    if (dout == NULL && dw == NULL)
        return SMLP_OK;
    /* Every index is checked before anything is written. */
    for (i = 0; i < n; i++)
        for (j = 0; j < k; j++)
            if ((rc = combine_check_choice(ctx, i, j, expert[i * k + j],
                                           slot[i * k + j], e, m)) != 0)
                return rc;
    if (dout != NULL)
        memset(dout, 0, (size_t)(e * m * o) * sizeof(float));
    if (dw != NULL)
        memset(dw, 0, (size_t)(n * k) * sizeof(float));
    if (dy == NULL)
        return SMLP_OK; /* no gradient reaches y: all zeros */
    for (i = 0; i < n; i++) {
        const float *dyi = dy + i * o;

        for (j = 0; j < k; j++) {
            int32_t s = slot[i * k + j];
            int64_t at = ((int64_t)expert[i * k + j] * m + s) * o;
            float w = weight[i * k + j];

            if (s < 0)
                continue;
            if (dout != NULL)
                for (c = 0; c < o; c++)
                    dout[at + c] += w * dyi[c];
            if (dw != NULL) {
                double acc = 0.0;

                for (c = 0; c < o; c++)
                    acc += (double)out[at + c] * (double)dyi[c];
                dw[i * k + j] = (float)acc;
            }
        }
    }
    return SMLP_OK;
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
