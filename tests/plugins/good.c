/* A well-formed test plugin: good.identity copies, good.fail fails,
 * good.decline, good.declinesaid and good.hugews misbehave (see below). */
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
static const struct smlp_op_def fail_op = {
    sizeof(struct smlp_op_def), SMLP_ABI_VERSION, "good.fail", 1, 1, 1, 0,
    NULL, fixture_infer, fail_kernels, NULL, "always fails"};
static const struct smlp_op_def *const ops[] = {
    &identity_op, &fail_op, &decline_op, &declinesaid_op, &hugews_op,
    NULL};
static const struct smlp_plugin_def def = {
    sizeof(def), SMLP_ABI_VERSION, "good", "1", SMLP_BUILD_SIGNATURE, ops,
    NULL};
SMLP_PLUGIN_DEFINE(def)
