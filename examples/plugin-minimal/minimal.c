/*
 * minimal.c - the smallest complete smlp operator plugin.
 *
 * It registers one op, minimal.leaky_relu: y = x where x > 0, else
 * slope * x, elementwise on an f32 tensor of any shape, with an optional
 * float attribute `slope` (default 0.01).  The op has shape inference, a
 * CPU kernel and a backward.  docs/plugins.md quotes this file whole;
 * tests/check_sdk.sh builds it against the installed SDK, runs a graph
 * that uses it and checks the backward's gradient.  Build it with the
 * Makefile beside it: make -> minimal.so.
 */
#include <string.h>

#include "smlp_kernel.h" /* smlp_plugin.h and the smlp_infer_* helpers */

/* The attributes as infer() parsed them, handed to every run. */
struct minimal_priv {
    float slope;
};

/*
 * Shape inference, once per node when a session is created: input 0 (x)
 * is f32 of any rank, the output has its shape.  Returns SMLP_OK or a
 * negative status after describing the problem.
 */
static int
minimal_infer(struct smlp_infer_ctx *ctx)
{
    struct minimal_priv p;
    double slope;
    int rc;

    rc = smlp_infer_check_input(ctx, 0, "x", SMLP_DTYPE_F32, 1,
                                SMLP_MAX_RANK);
    if (rc != SMLP_OK)
        return rc;
    rc = smlp_infer_attr_float(ctx, "slope", 0, 0.01, &slope);
    if (rc != SMLP_OK)
        return rc;
    if (!(slope >= 0.0 && slope <= 1.0))
        return smlp_infer_fail(ctx, SMLP_EINVAL,
                               "attribute 'slope' is %g, expected 0 to 1",
                               slope);
    p.slope = (float)slope;
    smlp_infer_set_output(ctx, 0, SMLP_DTYPE_F32, ctx->inputs[0]->rank,
                          ctx->inputs[0]->shape);
    return smlp_infer_set_priv(ctx, &p, sizeof(p));
}

/*
 * The CPU kernel, on a worker thread: writes every element of y.
 * Returns SMLP_OK (or a negative status after smlp_kernel_fail).
 */
static int
minimal_run(struct smlp_kernel_ctx *ctx)
{
    const struct minimal_priv *p = ctx->priv;
    const float *x = ctx->inputs[0]->data;
    float *y = ctx->outputs[0]->data;
    int64_t i, n = smlp_tensor_numel(ctx->inputs[0]);

    for (i = 0; i < n; i++)
        y[i] = x[i] > 0.0f ? x[i] : p->slope * x[i];
    return SMLP_OK;
}

/*
 * The backward, for training: dx = dy where x > 0, else slope * dy.  At
 * x = 0, the kink, it takes slope * dy, as PyTorch's leaky_relu does.
 * grad_outputs[0] NULL means no gradient reaches y (zeros);
 * grad_inputs[0] NULL means x needs none.
 */
static int
minimal_backward(struct smlp_backward_ctx *ctx)
{
    const struct minimal_priv *p = ctx->priv;
    const float *x = ctx->inputs[0]->data;
    const float *dy;
    float *dx;
    int64_t i, n = smlp_tensor_numel(ctx->inputs[0]);

    if (ctx->grad_inputs[0] == NULL)
        return SMLP_OK;
    dx = ctx->grad_inputs[0]->data;
    if (ctx->grad_outputs[0] == NULL) {
        memset(dx, 0, (size_t)n * sizeof(*dx));
        return SMLP_OK;
    }
    dy = ctx->grad_outputs[0]->data;
    for (i = 0; i < n; i++)
        dx[i] = x[i] > 0.0f ? dy[i] : p->slope * dy[i];
    return SMLP_OK;
}

static const struct smlp_kernel_def minimal_cpu = {
    .size = sizeof(struct smlp_kernel_def),
    .abi = SMLP_ABI_VERSION,
    .device = SMLP_DEVICE_CPU,
    .dtype_mask = 1u << SMLP_DTYPE_F32, /* dtypes of input 0 it handles */
    .supports = NULL,                   /* (optional) turns nodes down */
    .run = minimal_run,
    .score = 10,                        /* the best that supports wins */
};
static const struct smlp_kernel_def *const minimal_kernels[] = {
    &minimal_cpu, NULL};

static const struct smlp_attr_def minimal_attrs[] = {
    {"slope", SMLP_ATTR_FLOAT, 0, "slope for x <= 0 (default 0.01)"},
    {NULL, 0, 0, NULL},
};

static const struct smlp_op_def minimal_leaky_relu = {
    .size = sizeof(struct smlp_op_def),
    .abi = SMLP_ABI_VERSION,
    .name = "minimal.leaky_relu",
    .min_inputs = 1,
    .max_inputs = 1,
    .n_outputs = 1,
    .attrs = minimal_attrs,
    .infer = minimal_infer,
    .kernels = minimal_kernels,
    .backward = minimal_backward, /* (optional) */
    .doc = "y = x if x > 0 else slope * x",
};
static const struct smlp_op_def *const minimal_ops[] = {
    &minimal_leaky_relu, NULL};

static const struct smlp_plugin_def minimal_plugin = {
    .size = sizeof(struct smlp_plugin_def),
    .abi = SMLP_ABI_VERSION,
    .name = "minimal", /* the file is minimal.so */
    .version = "1.0.0",
    .signature = SMLP_BUILD_SIGNATURE,
    .ops = minimal_ops,
};

SMLP_PLUGIN_DEFINE(minimal_plugin)
