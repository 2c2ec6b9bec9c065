/*
 * momentum.c - moco.momentum_update: the momentum encoder's moving
 * average.
 *
 * theta_k (state) f32, theta_q f32 of the same shape, m f32 [] (optional)
 * -> theta_k' of that shape, with
 *   theta_k' = m·theta_k + (1 − m)·theta_q
 * elementwise, evaluated in double and rounded once to f32.  theta_k is
 * overwritten in place and output 0 receives a copy of the new values
 * (moco.h explains why, and when the update runs).  m is the attribute
 * `m` (default 0.99, MoCo v3's m₀), or the value of input 2 when it is
 * given: the trainer raises m from m₀ to 1 on a cosine during training,
 * which a per-graph attribute cannot follow, so a scalar input fed each
 * step overrides it.  Both must lie in [0, 1].  Forward only; no thread
 * use inside (elementwise, memory-bound).  Flagged SMLP_OP_NO_GRAD: the
 * backward engine treats the output as a constant, so a momentum encoder
 * that reads it (graphs/moco_sparse_mlp_*) puts no gradient path from
 * theta_q to the loss through this node.
 */
#include <math.h>

#include "moco.h"

struct momentum_priv {
    double m;
};

static int
momentum_infer(struct smlp_infer_ctx *ctx)
{
    struct momentum_priv priv = {0};
    const struct smlp_tensor *mt;
    char s[SMLP_SHAPE_STRLEN];
    int rc;

    if ((rc = smlp_infer_attr_float(ctx, "m", 0, 0.99, &priv.m)) != 0)
        return rc;
    if (!(priv.m >= 0.0 && priv.m <= 1.0))
        return smlp_infer_fail(ctx, SMLP_EINVAL,
                               "attribute 'm' = %g is invalid: expected a "
                               "value in [0, 1]",
                               priv.m);
    if ((rc = smlp_infer_check_input(ctx, 0, "theta_k", SMLP_DTYPE_F32, 0,
                                     SMLP_MAX_RANK)) != 0 ||
        (rc = smlp_infer_check_input(ctx, 1, "theta_q", SMLP_DTYPE_F32, 0,
                                     SMLP_MAX_RANK)) != 0 ||
        (rc = smlp_infer_check_same_shape(ctx, 1, "theta_q", 0,
                                          "theta_k")) != 0)
        return rc;
    if (ctx->n_inputs > 2 && ctx->inputs[2] != NULL) {
        if ((rc = smlp_infer_check_input(ctx, 2, "m", SMLP_DTYPE_F32, 0,
                                         1)) != 0)
            return rc;
        mt = ctx->inputs[2];
        if (smlp_tensor_numel(mt) != 1)
            return smlp_infer_fail(ctx, SMLP_ESHAPE,
                                   "input 2 (m) has shape %s, expected [] "
                                   "or [1] (one momentum value)",
                                   smlp_shape_str(mt, s, sizeof(s)));
    }
    smlp_infer_set_output(ctx, 0, SMLP_DTYPE_F32, ctx->inputs[0]->rank,
                          ctx->inputs[0]->shape);
    return smlp_infer_set_priv(ctx, &priv, sizeof(priv));
}

static int
momentum_run(struct smlp_kernel_ctx *ctx)
{
    const struct momentum_priv *priv = ctx->priv;
    const struct smlp_tensor *kt = ctx->inputs[0];
    float *k = kt->data, *out = ctx->outputs[0]->data;
    const float *q = ctx->inputs[1]->data;
    int64_t n = smlp_tensor_numel(kt), i;
    double m = priv->m;

    if (ctx->n_inputs > 2 && ctx->inputs[2] != NULL) {
        m = *(const float *)ctx->inputs[2]->data;
        if (!(m >= 0.0 && m <= 1.0))
            return smlp_kernel_fail(ctx, SMLP_EINVAL,
                                    "input 2 (m) = %g is invalid: expected "
                                    "a value in [0, 1]",
                                    m);
    }
    /* Reads before writes, element by element: correct even when the
     * output or theta_q shares theta_k's bytes. */
    for (i = 0; i < n; i++) {
        float v = (float)(m * (double)k[i] + (1.0 - m) * (double)q[i]);

        k[i] = v;
        out[i] = v;
    }
    return SMLP_OK;
}

static const struct smlp_kernel_def momentum_cpu = {
    .size = sizeof(struct smlp_kernel_def),
    .abi = SMLP_ABI_VERSION,
    .device = SMLP_DEVICE_CPU,
    .dtype_mask = SMLP__MOCO_MASK_F32,
    .run = momentum_run,
    .score = SMLP__MOCO_CPU_SCORE,
};

static const struct smlp_kernel_def *const momentum_kernels[] = {
    &momentum_cpu, SMLP__MOCO_CUDA(smlp__moco_momentum_cuda) NULL};

static const struct smlp_attr_def momentum_attrs[] = {
    {"m", SMLP_ATTR_FLOAT, 0,
     "momentum in [0, 1] (default 0.99); input 2, when given, overrides it"},
    {NULL, 0, 0, NULL},
};

const struct smlp_op_def smlp__moco_op_momentum_update = {
    .size = sizeof(struct smlp_op_def),
    .abi = SMLP_ABI_VERSION,
    .name = "moco.momentum_update",
    .min_inputs = 2,
    .max_inputs = 3,
    .n_outputs = 1,
    .flags = SMLP_OP_NO_GRAD, /* MoCo's update runs under no_grad */
    .attrs = momentum_attrs,
    .infer = momentum_infer,
    .kernels = momentum_kernels,
    .backward = NULL,
    .doc = "theta_k <- m*theta_k + (1-m)*theta_q in place (theta_k is "
           "state), output = the new theta_k: theta_k, theta_q, m [] "
           "(optional, overrides attr m)",
};
