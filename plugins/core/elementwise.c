/*
 * elementwise.c - core.gelu, core.relu, core.add and core.scale.
 *
 * All four take f32 tensors of any rank and give an output of the same
 * shape.  gelu is exact (0.5·x·(1 + erf(x/√2))) unless `approximate` is
 * "tanh" (0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))).
 */
#include <math.h>
#include <string.h>

#include "core.h"

/* Shape inference shared by the unary ops: f32 in, same shape out. */
static int
unary_infer(struct smlp_infer_ctx *ctx)
{
    const struct smlp_tensor *x;
    int rc;

    if ((rc = smlp_infer_check_input(ctx, 0, "x", SMLP_DTYPE_F32, 0,
                                     SMLP_MAX_RANK)) != 0)
        return rc;
    x = ctx->inputs[0];
    smlp_infer_set_output(ctx, 0, SMLP_DTYPE_F32, x->rank, x->shape);
    return SMLP_OK;
}

/* ---- core.gelu ---------------------------------------------------------- */

struct gelu_priv {
    int tanh_approx;
};

static int
gelu_infer(struct smlp_infer_ctx *ctx)
{
    struct gelu_priv priv = {0};
    const char *approx;
    int rc;

    if ((rc = smlp_infer_attr_string(ctx, "approximate", 0, "none",
                                     &approx)) != 0)
        return rc;
    if (strcmp(approx, "none") == 0)
        priv.tanh_approx = 0;
    else if (strcmp(approx, "tanh") == 0)
        priv.tanh_approx = 1;
    else
        return smlp_infer_fail(ctx, SMLP_EINVAL,
                               "attribute 'approximate' = '%s' is invalid: "
                               "expected 'none' or 'tanh'",
                               approx);
    if ((rc = unary_infer(ctx)) != 0)
        return rc;
    return smlp_infer_set_priv(ctx, &priv, sizeof(priv));
}

SMLP_VECTOR_CLONES static void
gelu_erf_loop(const float *x, float *y, int64_t n)
{
    int64_t i;

    for (i = 0; i < n; i++)
        y[i] = smlp_gelu_erf(x[i]);
}

static int
gelu_run(struct smlp_kernel_ctx *ctx)
{
    const struct gelu_priv *priv = ctx->priv;
    const float *x = ctx->inputs[0]->data;
    float *y = ctx->outputs[0]->data;
    int64_t i, n = smlp_tensor_numel(ctx->inputs[0]);
    const float k = 0.79788456080286536f; /* sqrt(2/pi) */

    if (priv->tanh_approx) {
        for (i = 0; i < n; i++) {
            float v = x[i];
            y[i] = 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
        }
    } else {
        gelu_erf_loop(x, y, n);
    }
    return SMLP_OK;
}

/* ---- core.relu ---------------------------------------------------------- */

static int
relu_run(struct smlp_kernel_ctx *ctx)
{
    const float *x = ctx->inputs[0]->data;
    float *y = ctx->outputs[0]->data;
    int64_t i, n = smlp_tensor_numel(ctx->inputs[0]);

    for (i = 0; i < n; i++)
        y[i] = x[i] > 0.0f ? x[i] : 0.0f;
    return SMLP_OK;
}

/* ---- core.add ----------------------------------------------------------- */

static int
add_infer(struct smlp_infer_ctx *ctx)
{
    const struct smlp_tensor *a;
    int rc;

    if ((rc = smlp_infer_check_input(ctx, 0, "a", SMLP_DTYPE_F32, 0,
                                     SMLP_MAX_RANK)) != 0 ||
        (rc = smlp_infer_check_input(ctx, 1, "b", SMLP_DTYPE_F32, 0,
                                     SMLP_MAX_RANK)) != 0 ||
        (rc = smlp_infer_check_same_shape(ctx, 1, "b", 0, "a")) != 0)
        return rc;
    a = ctx->inputs[0];
    smlp_infer_set_output(ctx, 0, SMLP_DTYPE_F32, a->rank, a->shape);
    return SMLP_OK;
}

static int
add_run(struct smlp_kernel_ctx *ctx)
{
    const float *a = ctx->inputs[0]->data, *b = ctx->inputs[1]->data;
    float *y = ctx->outputs[0]->data;
    int64_t i, n = smlp_tensor_numel(ctx->inputs[0]);

    for (i = 0; i < n; i++)
        y[i] = a[i] + b[i];
    return SMLP_OK;
}

/* ---- core.scale --------------------------------------------------------- */

struct scale_priv {
    float alpha;
};

static int
scale_infer(struct smlp_infer_ctx *ctx)
{
    struct scale_priv priv = {0};
    double alpha;
    int rc;

    if ((rc = smlp_infer_attr_float(ctx, "alpha", 1, 0.0, &alpha)) != 0)
        return rc;
    if (!isfinite(alpha))
        return smlp_infer_fail(ctx, SMLP_EINVAL,
                               "attribute 'alpha' = %g is not finite", alpha);
    priv.alpha = (float)alpha;
    if ((rc = unary_infer(ctx)) != 0)
        return rc;
    return smlp_infer_set_priv(ctx, &priv, sizeof(priv));
}

static int
scale_run(struct smlp_kernel_ctx *ctx)
{
    const struct scale_priv *priv = ctx->priv;
    const float *x = ctx->inputs[0]->data;
    float *y = ctx->outputs[0]->data;
    int64_t i, n = smlp_tensor_numel(ctx->inputs[0]);

    for (i = 0; i < n; i++)
        y[i] = priv->alpha * x[i];
    return SMLP_OK;
}

/* ---- definitions -------------------------------------------------------- */

#define CPU_KERNEL(var, fn)                                                  \
    static const struct smlp_kernel_def var##_cpu = {                        \
        .size = sizeof(struct smlp_kernel_def),                              \
        .abi = SMLP_ABI_VERSION,                                             \
        .device = SMLP_DEVICE_CPU,                                           \
        .dtype_mask = SMLP__MASK_F32,                                        \
        .run = fn,                                                           \
        .score = SMLP__CORE_CPU_SCORE,                                       \
    };                                                                       \
    static const struct smlp_kernel_def *const var##_kernels[] = {           \
        &var##_cpu, SMLP__CORE_CUDA(smlp__core_##var##_cuda) NULL}

CPU_KERNEL(gelu, gelu_run);
CPU_KERNEL(relu, relu_run);
CPU_KERNEL(add, add_run);
CPU_KERNEL(scale, scale_run);

static const struct smlp_attr_def gelu_attrs[] = {
    {"approximate", SMLP_ATTR_STRING, 0,
     "'none' (exact erf form, default) or 'tanh'"},
    {NULL, 0, 0, NULL},
};

static const struct smlp_attr_def scale_attrs[] = {
    {"alpha", SMLP_ATTR_FLOAT, 1, "the factor"},
    {NULL, 0, 0, NULL},
};

static const struct smlp_attr_def no_attrs[] = {{NULL, 0, 0, NULL}};

const struct smlp_op_def smlp__core_op_gelu = {
    .size = sizeof(struct smlp_op_def),
    .abi = SMLP_ABI_VERSION,
    .name = "core.gelu",
    .min_inputs = 1,
    .max_inputs = 1,
    .n_outputs = 1,
    .attrs = gelu_attrs,
    .infer = gelu_infer,
    .kernels = gelu_kernels,
    .doc = "elementwise GELU, exact (erf) or `approximate`='tanh'",
};

const struct smlp_op_def smlp__core_op_relu = {
    .size = sizeof(struct smlp_op_def),
    .abi = SMLP_ABI_VERSION,
    .name = "core.relu",
    .min_inputs = 1,
    .max_inputs = 1,
    .n_outputs = 1,
    .attrs = no_attrs,
    .infer = unary_infer,
    .kernels = relu_kernels,
    .doc = "elementwise max(x, 0)",
};

const struct smlp_op_def smlp__core_op_add = {
    .size = sizeof(struct smlp_op_def),
    .abi = SMLP_ABI_VERSION,
    .name = "core.add",
    .min_inputs = 2,
    .max_inputs = 2,
    .n_outputs = 1,
    .attrs = no_attrs,
    .infer = add_infer,
    .kernels = add_kernels,
    .doc = "y = a + b, a and b of the same shape",
};

const struct smlp_op_def smlp__core_op_scale = {
    .size = sizeof(struct smlp_op_def),
    .abi = SMLP_ABI_VERSION,
    .name = "core.scale",
    .min_inputs = 1,
    .max_inputs = 1,
    .n_outputs = 1,
    .attrs = scale_attrs,
    .infer = scale_infer,
    .kernels = scale_kernels,
    .doc = "y = alpha * x",
};
