/* A well-formed test plugin: good.identity copies, good.fail fails. */
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

FIXTURE_OP(identity_op, "good.identity");
static const struct smlp_op_def fail_op = {
    sizeof(struct smlp_op_def), SMLP_ABI_VERSION, "good.fail", 1, 1, 1, 0,
    NULL, fixture_infer, fail_kernels, NULL, "always fails"};
static const struct smlp_op_def *const ops[] = {&identity_op, &fail_op, NULL};
static const struct smlp_plugin_def def = {
    sizeof(def), SMLP_ABI_VERSION, "good", "1", SMLP_BUILD_SIGNATURE, ops,
    NULL};
SMLP_PLUGIN_DEFINE(def)
