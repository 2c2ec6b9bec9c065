/*
 * elementwise.c - core.gelu, core.relu, core.add and core.scale.
 *
 * All four take f32 tensors of any rank and give an output of the same
 * shape.  gelu is exact (0.5·x·(1 + erf(x/√2))) unless `approximate` is
 * "tanh" (0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))).
 *
 * relu(x) is 0 where x < 0 and x elsewhere, so that a NaN stays a NaN (as
 * in PyTorch) and the run's finite checks see it; a comparison x > 0
 * would turn it into 0.
 *
 * Each has a backward.  gelu's recomputes its derivative from x with
 * branch-free float code (smlp_erff and smlp_expf, smlp_kernel.h) so that
 * the loop vectorises like the forward; relu passes dy where x > 0 (0 at
 * x = 0, as PyTorch); add copies dy to both inputs; scale multiplies it
 * by alpha.
 *
 * Threads: every loop runs in chunks of SMLP__CORE_CHUNK elements (core.h),
 * each element computed the same way in any chunk.
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

/* The operands of an elementwise loop run in chunks (core.h). */
struct ew_run {
    const float *x, *x2; /* x2: add's b, the backwards' dy */
    float *y;
    float alpha;        /* scale */
    int tanh_approx;    /* gelu */
};

static int
gelu_task(void *arg, int64_t begin, int64_t end, int worker)
{
    const struct ew_run *r = arg;
    const float *x = r->x;
    float *y = r->y;
    int64_t i;
    const float k = 0.79788456080286536f; /* sqrt(2/pi) */

    (void)worker;
    if (r->tanh_approx) {
        for (i = begin; i < end; i++) {
            float v = x[i];
            y[i] = 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
        }
    } else {
        gelu_erf_loop(x + begin, y + begin, end - begin);
    }
    return 0;
}

/* Runs fn over the n elements of r in chunks (core.h). */
static int
ew_parallel(const struct smlp_host_api *host, const struct smlp_node *node,
            int64_t n, int (*fn)(void *, int64_t, int64_t, int),
            struct ew_run *r)
{
    return smlp__core_parallel_range(host, node, n, SMLP__CORE_CHUNK, fn, r);
}

static int
gelu_run(struct smlp_kernel_ctx *ctx)
{
    const struct gelu_priv *priv = ctx->priv;
    struct ew_run r;

    memset(&r, 0, sizeof(r));
    r.x = ctx->inputs[0]->data;
    r.y = ctx->outputs[0]->data;
    r.tanh_approx = priv->tanh_approx;
    return ew_parallel(ctx->host, ctx->node,
                       smlp_tensor_numel(ctx->inputs[0]), gelu_task, &r);
}

/* d/dx of the exact GELU (smlp_gelu_erf_grad, smlp_kernel.h) times dy. */
SMLP_VECTOR_CLONES static void
gelu_erf_grad_loop(const float *x, const float *dy, float *dx, int64_t n)
{
    int64_t i;

    for (i = 0; i < n; i++)
        dx[i] = dy[i] * smlp_gelu_erf_grad(x[i]);
}

/*
 * d/dx of the tanh GELU, with t = tanh(u), u = k(x + c·x³):
 *   0.5(1 + t) + 0.5·x·(1 - t²)·k(1 + 3c·x²),
 * where 0.5(1 + t) = e/(1 + e) and 1 - t² = 4e/(1 + e)² with e = e^(2u),
 * which stay accurate in both tails (1 ± t would cancel).  Beyond |x| = 20
 * the derivative is 0 or 1 to float precision, so x is clamped there and
 * u to ±40 (e stays finite).
 */
SMLP_VECTOR_CLONES static void
gelu_tanh_grad_loop(const float *x, const float *dy, float *dx, int64_t n)
{
    const float k = 0.79788456080286536f; /* sqrt(2/pi) */
    const float c = 0.044715f;
    int64_t i;

    for (i = 0; i < n; i++) {
        float v = x[i];
        float u, e, r, s;

        v = v > 20.0f ? 20.0f : v;
        v = v < -20.0f ? -20.0f : v;
        u = k * (v + c * v * v * v);
        u = u > 40.0f ? 40.0f : u;
        u = u < -40.0f ? -40.0f : u;
        e = smlp_expf(2.0f * u);
        r = 1.0f / (1.0f + e);
        s = e * r;
        dx[i] = dy[i] * (s + 2.0f * v * s * r * k * (1.0f + 3.0f * c * v * v));
    }
}

static int
gelu_grad_task(void *arg, int64_t begin, int64_t end, int worker)
{
    const struct ew_run *r = arg;

    (void)worker;
    if (r->tanh_approx)
        gelu_tanh_grad_loop(r->x + begin, r->x2 + begin, r->y + begin,
                            end - begin);
    else
        gelu_erf_grad_loop(r->x + begin, r->x2 + begin, r->y + begin,
                           end - begin);
    return 0;
}

static int
gelu_backward(struct smlp_backward_ctx *ctx)
{
    const struct gelu_priv *priv = ctx->priv;
    const struct smlp_tensor *gy = ctx->grad_outputs[0];
    struct smlp_tensor *gx = ctx->grad_inputs[0];
    struct ew_run r;

    if (gx == NULL)
        return SMLP_OK;
    if (gy == NULL)
        return smlp__core_zero_grads(ctx);
    memset(&r, 0, sizeof(r));
    r.x = ctx->inputs[0]->data;
    r.x2 = gy->data;
    r.y = gx->data;
    r.tanh_approx = priv->tanh_approx;
    return ew_parallel(ctx->host, ctx->node,
                       smlp_tensor_numel(ctx->inputs[0]), gelu_grad_task,
                       &r);
}

/* ---- core.relu ---------------------------------------------------------- */

static int
relu_task(void *arg, int64_t begin, int64_t end, int worker)
{
    const struct ew_run *r = arg;
    const float *x = r->x;
    float *y = r->y;
    int64_t i;

    (void)worker;
    for (i = begin; i < end; i++)
        y[i] = x[i] < 0.0f ? 0.0f : x[i]; /* a NaN stays */
    return 0;
}

static int
relu_run(struct smlp_kernel_ctx *ctx)
{
    struct ew_run r;

    memset(&r, 0, sizeof(r));
    r.x = ctx->inputs[0]->data;
    r.y = ctx->outputs[0]->data;
    return ew_parallel(ctx->host, ctx->node,
                       smlp_tensor_numel(ctx->inputs[0]), relu_task, &r);
}

static int
relu_grad_task(void *arg, int64_t begin, int64_t end, int worker)
{
    const struct ew_run *r = arg;
    const float *x = r->x, *dy = r->x2;
    float *dx = r->y;
    int64_t i;

    (void)worker;
    for (i = begin; i < end; i++)
        dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
    return 0;
}

static int
relu_backward(struct smlp_backward_ctx *ctx)
{
    const struct smlp_tensor *gy = ctx->grad_outputs[0];
    struct smlp_tensor *gx = ctx->grad_inputs[0];
    struct ew_run r;

    if (gx == NULL)
        return SMLP_OK;
    if (gy == NULL)
        return smlp__core_zero_grads(ctx);
    memset(&r, 0, sizeof(r));
    r.x = ctx->inputs[0]->data;
    r.x2 = gy->data;
    r.y = gx->data;
    return ew_parallel(ctx->host, ctx->node,
                       smlp_tensor_numel(ctx->inputs[0]), relu_grad_task,
                       &r);
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
add_task(void *arg, int64_t begin, int64_t end, int worker)
{
    const struct ew_run *r = arg;
    const float *a = r->x, *b = r->x2;
    float *y = r->y;
    int64_t i;

    (void)worker;
    for (i = begin; i < end; i++)
        y[i] = a[i] + b[i];
    return 0;
}

static int
add_run(struct smlp_kernel_ctx *ctx)
{
    struct ew_run r;

    memset(&r, 0, sizeof(r));
    r.x = ctx->inputs[0]->data;
    r.x2 = ctx->inputs[1]->data;
    r.y = ctx->outputs[0]->data;
    return ew_parallel(ctx->host, ctx->node,
                       smlp_tensor_numel(ctx->inputs[0]), add_task, &r);
}

/* dst = src (copy_grad) in chunks; r->y may alias r->x. */
static int
copy_task(void *arg, int64_t begin, int64_t end, int worker)
{
    const struct ew_run *r = arg;

    (void)worker;
    smlp__core_copy_grad(r->y + begin, r->x + begin, end - begin);
    return 0;
}

static int
add_backward(struct smlp_backward_ctx *ctx)
{
    const struct smlp_tensor *gy = ctx->grad_outputs[0];
    int64_t n = smlp_tensor_numel(ctx->inputs[0]);
    struct ew_run r;
    int i, rc;

    if (gy == NULL)
        return smlp__core_zero_grads(ctx);
    for (i = 0; i < 2; i++) {
        if (ctx->grad_inputs[i] == NULL ||
            ctx->grad_inputs[i]->data == gy->data)
            continue;
        memset(&r, 0, sizeof(r));
        r.x = gy->data;
        r.y = ctx->grad_inputs[i]->data;
        if ((rc = ew_parallel(ctx->host, ctx->node, n, copy_task, &r)) != 0)
            return rc;
    }
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
scale_task(void *arg, int64_t begin, int64_t end, int worker)
{
    const struct ew_run *r = arg;
    const float *x = r->x;
    float *y = r->y, alpha = r->alpha;
    int64_t i;

    (void)worker;
    for (i = begin; i < end; i++)
        y[i] = alpha * x[i];
    return 0;
}

static int
scale_run(struct smlp_kernel_ctx *ctx)
{
    const struct scale_priv *priv = ctx->priv;
    struct ew_run r;

    memset(&r, 0, sizeof(r));
    r.x = ctx->inputs[0]->data;
    r.y = ctx->outputs[0]->data;
    r.alpha = priv->alpha;
    return ew_parallel(ctx->host, ctx->node,
                       smlp_tensor_numel(ctx->inputs[0]), scale_task, &r);
}

static int
scale_backward(struct smlp_backward_ctx *ctx)
{
    const struct scale_priv *priv = ctx->priv;
    const struct smlp_tensor *gy = ctx->grad_outputs[0];
    struct smlp_tensor *gx = ctx->grad_inputs[0];
    struct ew_run r;

    if (gx == NULL)
        return SMLP_OK;
    if (gy == NULL)
        return smlp__core_zero_grads(ctx);
    memset(&r, 0, sizeof(r));
    r.x = gy->data;
    r.y = gx->data;
    r.alpha = priv->alpha;
    return ew_parallel(ctx->host, ctx->node,
                       smlp_tensor_numel(ctx->inputs[0]), scale_task, &r);
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
    .backward = gelu_backward,
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
    .backward = relu_backward,
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
    .backward = add_backward,
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
    .backward = scale_backward,
    .doc = "y = alpha * x",
};
