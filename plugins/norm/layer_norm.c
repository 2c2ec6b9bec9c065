/*
 * layer_norm.c - norm.layer_norm over the last axis.
 *
 * x [..., d], gamma [d], beta [d] -> y of x's shape:
 * y = (x - mean) / sqrt(var + eps) · gamma + beta per row of d values,
 * with the biased variance.  Mean and variance are computed in double,
 * in index order (two passes), so results do not depend on threads.
 */
#include <math.h>

#include "norm.h"

struct layer_norm_priv {
    double eps;
};

static int
layer_norm_infer(struct smlp_infer_ctx *ctx)
{
    const struct smlp_tensor *x;
    struct layer_norm_priv priv = {0};
    char s[SMLP_SHAPE_STRLEN], why[SMLP_SHAPE_STRLEN + 64];
    int64_t d;
    int rc;

    if ((rc = smlp__norm_attr_range(ctx, "eps", 1e-6, 0.0, HUGE_VAL,
                                    &priv.eps)) != 0 ||
        (rc = smlp_infer_check_input(ctx, 0, "x", SMLP_DTYPE_F32, 1,
                                     SMLP_MAX_RANK)) != 0 ||
        (rc = smlp_infer_check_input(ctx, 1, "gamma", SMLP_DTYPE_F32, 1,
                                     1)) != 0 ||
        (rc = smlp_infer_check_input(ctx, 2, "beta", SMLP_DTYPE_F32, 1,
                                     1)) != 0)
        return rc;
    x = ctx->inputs[0];
    d = x->shape[x->rank - 1];
    if (d < 1)
        return smlp_infer_fail(ctx, SMLP_ESHAPE,
                               "input 0 (x) has shape %s: the last dim is "
                               "empty",
                               smlp_shape_str(x, s, sizeof(s)));
    snprintf(why, sizeof(why), "the last dim of input 0 (x) %s",
             smlp_shape_str(x, s, sizeof(s)));
    if ((rc = smlp_infer_check_vector(ctx, 1, "gamma", d, why)) != 0 ||
        (rc = smlp_infer_check_vector(ctx, 2, "beta", d, why)) != 0)
        return rc;
    smlp_infer_set_output(ctx, 0, SMLP_DTYPE_F32, x->rank, x->shape);
    return smlp_infer_set_priv(ctx, &priv, sizeof(priv));
}

static int
layer_norm_run(struct smlp_kernel_ctx *ctx)
{
    const struct layer_norm_priv *priv = ctx->priv;
    const struct smlp_tensor *xt = ctx->inputs[0];
    const float *x = xt->data;
    const float *gamma = ctx->inputs[1]->data, *beta = ctx->inputs[2]->data;
    float *y = ctx->outputs[0]->data;
    int64_t d = xt->shape[xt->rank - 1], rows, r, j;

    rows = smlp_tensor_numel(xt) / d;
    for (r = 0; r < rows; r++) {
        const float *xr = x + r * d;
        float *yr = y + r * d;
        double mean = 0.0, var = 0.0, rstd;

        for (j = 0; j < d; j++)
            mean += xr[j];
        mean /= (double)d;
        for (j = 0; j < d; j++) {
            double c = xr[j] - mean;
            var += c * c;
        }
        var /= (double)d;
        rstd = 1.0 / sqrt(var + priv->eps);
        for (j = 0; j < d; j++)
            yr[j] = (float)((xr[j] - mean) * rstd * gamma[j] + beta[j]);
    }
    return SMLP_OK;
}

static const struct smlp_attr_def layer_norm_attrs[] = {
    {"eps", SMLP_ATTR_FLOAT, 0, "added to the variance (default 1e-6)"},
    {NULL, 0, 0, NULL},
};

static const struct smlp_kernel_def layer_norm_cpu = {
    .size = sizeof(struct smlp_kernel_def),
    .abi = SMLP_ABI_VERSION,
    .device = SMLP_DEVICE_CPU,
    .dtype_mask = 1u << SMLP_DTYPE_F32,
    .run = layer_norm_run,
    .score = SMLP__NORM_CPU_SCORE,
};

static const struct smlp_kernel_def *const layer_norm_kernels[] = {
    &layer_norm_cpu, SMLP__NORM_CUDA(smlp__norm_layer_norm_cuda) NULL};

const struct smlp_op_def smlp__norm_op_layer_norm = {
    .size = sizeof(struct smlp_op_def),
    .abi = SMLP_ABI_VERSION,
    .name = "norm.layer_norm",
    .min_inputs = 3,
    .max_inputs = 3,
    .n_outputs = 1,
    .attrs = layer_norm_attrs,
    .infer = layer_norm_infer,
    .kernels = layer_norm_kernels,
    .doc = "x [..,d], gamma [d], beta [d] -> (x-mean)/sqrt(var+eps)*gamma+beta "
           "over the last axis",
};
