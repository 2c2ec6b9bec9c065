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
    .doc = "y[n] = sum_j weight[n,j]*out[expert[n,j],slot[n,j]] over kept "
           "choices: out [E,M,o], expert, slot i32 [N,k], weight [N,k] -> "
           "y [N,o]",
};
