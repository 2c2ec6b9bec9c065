/* A well-formed test plugin: good.identity copies, good.fail fails,
 * good.decline, good.declinesaid and good.hugews misbehave, good.shape
 * infers what its attributes say, good.pick tells which of its kernels
 * ran and good.view whether its kernel ran (see below). */
#include "fixture.h"

static int
fail_run(struct smlp_kernel_ctx *ctx)
{
    ctx->host->errorf(ctx->node, "fixture kernel failure on purpose");
    return SMLP_EKERNEL;
}

static const struct smlp_kernel_def fail_kernel = {
    sizeof(struct smlp_kernel_def), SMLP_ABI_VERSION, SMLP_DEVICE_CPU,
    1u << SMLP_DTYPE_F32, NULL, fail_run, 1, NULL};
static const struct smlp_kernel_def *const fail_kernels[] = {&fail_kernel,
                                                             NULL};

/* good.decline: a run that returns SMLP_DECLINED (for attribute getters
 * only): the node must fail, not pass for done. */
static int
decline_run(struct smlp_kernel_ctx *ctx)
{
    (void)ctx;
    return SMLP_DECLINED;
}

static const struct smlp_kernel_def decline_kernel = {
    sizeof(struct smlp_kernel_def), SMLP_ABI_VERSION, SMLP_DEVICE_CPU,
    1u << SMLP_DTYPE_F32, NULL, decline_run, 1, NULL};
static const struct smlp_kernel_def *const decline_kernels[] = {
    &decline_kernel, NULL};

/* good.declinesaid: a run that reports an error, then returns
 * SMLP_DECLINED: the node fails with the kernel's own message. */
static int
declinesaid_run(struct smlp_kernel_ctx *ctx)
{
    ctx->host->errorf(ctx->node, "the kernel's own words");
    return SMLP_DECLINED;
}

static const struct smlp_kernel_def declinesaid_kernel = {
    sizeof(struct smlp_kernel_def), SMLP_ABI_VERSION, SMLP_DEVICE_CPU,
    1u << SMLP_DTYPE_F32, NULL, declinesaid_run, 1, NULL};
static const struct smlp_kernel_def *const declinesaid_kernels[] = {
    &declinesaid_kernel, NULL};

/* good.hugews: an infer asking for a workspace near SIZE_MAX (whose
 * rounding would wrap the planner's sums). */
static int
hugews_infer(struct smlp_infer_ctx *ctx)
{
    int rc = fixture_infer(ctx);

    ctx->workspace = SIZE_MAX - 127;
    return rc;
}

/*
 * good.shape: an infer that leaves output 0 as its attributes say, for
 * the session's checks of what an infer wrote (session.c check_output):
 * "rank", "d0", "d1" and "dtype" (each by default the input's), "saved"
 * (saved bytes, default 0) and "status" (returned when not 0).  Its
 * one kernel takes f32 inputs only, and writes nothing.
 */
static int
shape_infer(struct smlp_infer_ctx *ctx)
{
    const struct smlp_tensor *x = ctx->inputs[0];
    struct smlp_tensor *y = ctx->outputs[0];
    int64_t v;

    y->dtype = x->dtype;
    y->rank = x->rank;
    memcpy(y->shape, x->shape, sizeof(x->shape));
    if (ctx->host->attr_int(ctx->node, "rank", &v) == SMLP_OK)
        y->rank = (int32_t)v;
    if (ctx->host->attr_int(ctx->node, "d0", &v) == SMLP_OK)
        y->shape[0] = v;
    if (ctx->host->attr_int(ctx->node, "d1", &v) == SMLP_OK)
        y->shape[1] = v;
    if (ctx->host->attr_int(ctx->node, "dtype", &v) == SMLP_OK)
        y->dtype = (int32_t)v;
    if (ctx->host->attr_int(ctx->node, "saved", &v) == SMLP_OK)
        ctx->saved_bytes = (size_t)v;
    if (ctx->host->attr_int(ctx->node, "status", &v) == SMLP_OK && v != 0)
        return (int)v;
    return SMLP_OK;
}

static int
shape_run(struct smlp_kernel_ctx *ctx)
{
    (void)ctx;
    return SMLP_OK;
}

static const struct smlp_kernel_def shape_kernel = {
    sizeof(struct smlp_kernel_def), SMLP_ABI_VERSION, SMLP_DEVICE_CPU,
    1u << SMLP_DTYPE_F32, NULL, shape_run, 1, NULL};
static const struct smlp_kernel_def *const shape_kernels[] = {&shape_kernel,
                                                              NULL};

/*
 * good.pick: four CPU kernels, each filling the output with its own
 * value, for the session's choice of kernel: the highest score among
 * those whose dtype mask has the dtype of the first input present, the
 * first on ties.  f32 inputs get 2 (k2a: 2 beats k1's 1, and comes
 * before k2b's -2); i32 ones get 9 (k9, which is i32 only).
 */
static int
pick_infer(struct smlp_infer_ctx *ctx)
{
    const struct smlp_tensor *x = ctx->inputs[0];
    struct smlp_tensor *y = ctx->outputs[0];

    y->dtype = SMLP_DTYPE_F32;
    y->rank = x->rank;
    memcpy(y->shape, x->shape, sizeof(x->shape));
    return SMLP_OK;
}

static void
pick_fill(struct smlp_kernel_ctx *ctx, float v)
{
    float *y = ctx->outputs[0]->data;
    int64_t i, n = smlp_tensor_numel(ctx->outputs[0]);

    for (i = 0; i < n; i++)
        y[i] = v;
}

static int
pick_run2a(struct smlp_kernel_ctx *ctx)
{
    pick_fill(ctx, 2);
    return SMLP_OK;
}

static int
pick_run2b(struct smlp_kernel_ctx *ctx)
{
    pick_fill(ctx, -2);
    return SMLP_OK;
}

static int
pick_run1(struct smlp_kernel_ctx *ctx)
{
    pick_fill(ctx, 1);
    return SMLP_OK;
}

static int
pick_run9(struct smlp_kernel_ctx *ctx)
{
    pick_fill(ctx, 9);
    return SMLP_OK;
}

static const struct smlp_kernel_def pick_k2a = {
    sizeof(struct smlp_kernel_def), SMLP_ABI_VERSION, SMLP_DEVICE_CPU,
    1u << SMLP_DTYPE_F32, NULL, pick_run2a, 2, NULL};
static const struct smlp_kernel_def pick_k9 = {
    sizeof(struct smlp_kernel_def), SMLP_ABI_VERSION, SMLP_DEVICE_CPU,
    1u << SMLP_DTYPE_I32, NULL, pick_run9, 9, NULL};
static const struct smlp_kernel_def pick_k2b = {
    sizeof(struct smlp_kernel_def), SMLP_ABI_VERSION, SMLP_DEVICE_CPU,
    1u << SMLP_DTYPE_F32, NULL, pick_run2b, 2, NULL};
static const struct smlp_kernel_def pick_k1 = {
    sizeof(struct smlp_kernel_def), SMLP_ABI_VERSION, SMLP_DEVICE_CPU,
    1u << SMLP_DTYPE_F32, NULL, pick_run1, 1, NULL};
static const struct smlp_kernel_def *const pick_kernels[] = {
    &pick_k2a, &pick_k9, &pick_k2b, &pick_k1, NULL};

/*
 * good.view: a view (SMLP_OP_VIEW) whose kernel, which the runtime calls
 * only when it does not alias the output to the input, writes x + 1:
 * y then tells which happened.  "dtype" (1: i32, whose kernel writes
 * (int)x + 1) and "n" (a vector of n elements, its kernel reading x
 * cyclically) make an output that no alias can be.
 */
static int
view_infer(struct smlp_infer_ctx *ctx)
{
    const struct smlp_tensor *x = ctx->inputs[0];
    struct smlp_tensor *y = ctx->outputs[0];
    int64_t v;

    if (x->dtype != SMLP_DTYPE_F32) {
        ctx->host->errorf(ctx->node, "input 0 must be f32");
        return SMLP_EINVAL;
    }
    y->dtype = x->dtype;
    y->rank = x->rank;
    memcpy(y->shape, x->shape, sizeof(x->shape));
    if (ctx->host->attr_int(ctx->node, "dtype", &v) == SMLP_OK)
        y->dtype = (int32_t)v;
    if (ctx->host->attr_int(ctx->node, "n", &v) == SMLP_OK) {
        y->rank = 1;
        y->shape[0] = v;
    }
    return SMLP_OK;
}

static int
view_run(struct smlp_kernel_ctx *ctx)
{
    const float *x = ctx->inputs[0]->data;
    int64_t i, nx = smlp_tensor_numel(ctx->inputs[0]);
    int64_t n = smlp_tensor_numel(ctx->outputs[0]);

    for (i = 0; i < n; i++) {
        if (ctx->outputs[0]->dtype == SMLP_DTYPE_I32)
            ((int32_t *)ctx->outputs[0]->data)[i] = (int32_t)x[i % nx] + 1;
        else
            ((float *)ctx->outputs[0]->data)[i] = x[i % nx] + 1;
    }
    return SMLP_OK;
}

static const struct smlp_kernel_def view_kernel = {
    sizeof(struct smlp_kernel_def), SMLP_ABI_VERSION, SMLP_DEVICE_CPU,
    1u << SMLP_DTYPE_F32, NULL, view_run, 1, NULL};
static const struct smlp_kernel_def *const view_kernels[] = {&view_kernel,
                                                             NULL};

FIXTURE_OP(identity_op, "good.identity");
static const struct smlp_op_def decline_op = {
    sizeof(struct smlp_op_def), SMLP_ABI_VERSION, "good.decline", 1, 1, 1, 0,
    NULL, fixture_infer, decline_kernels, NULL, "declines in its run"};
static const struct smlp_op_def declinesaid_op = {
    sizeof(struct smlp_op_def), SMLP_ABI_VERSION, "good.declinesaid", 1, 1,
    1, 0, NULL, fixture_infer, declinesaid_kernels, NULL,
    "says why, then declines in its run"};
static const struct smlp_op_def hugews_op = {
    sizeof(struct smlp_op_def), SMLP_ABI_VERSION, "good.hugews", 1, 1, 1, 0,
    NULL, hugews_infer, fixture_kernels, NULL, "asks for 2^64 - 128 bytes"};
static const struct smlp_op_def shape_op = {
    sizeof(struct smlp_op_def), SMLP_ABI_VERSION, "good.shape", 1, 1, 1, 0,
    NULL, shape_infer, shape_kernels, NULL,
    "leaves its output as its attributes say"};
static const struct smlp_op_def pick_op = {
    sizeof(struct smlp_op_def), SMLP_ABI_VERSION, "good.pick", 1, 2, 1, 0,
    NULL, pick_infer, pick_kernels, NULL,
    "fills its output with the value of the kernel chosen"};
static const struct smlp_op_def view_op = {
    sizeof(struct smlp_op_def), SMLP_ABI_VERSION, "good.view", 1, 1, 1,
    SMLP_OP_VIEW, NULL, view_infer, view_kernels, NULL,
    "a view whose kernel writes x + 1"};
static const struct smlp_op_def fail_op = {
    sizeof(struct smlp_op_def), SMLP_ABI_VERSION, "good.fail", 1, 1, 1, 0,
    NULL, fixture_infer, fail_kernels, NULL, "always fails"};
static const struct smlp_op_def *const ops[] = {
    &identity_op, &fail_op, &decline_op, &declinesaid_op, &hugews_op,
    &shape_op, &pick_op, &view_op, NULL};
static const struct smlp_plugin_def def = {
    sizeof(def), SMLP_ABI_VERSION, "good", "1", SMLP_BUILD_SIGNATURE, ops,
    NULL};
SMLP_PLUGIN_DEFINE(def)
