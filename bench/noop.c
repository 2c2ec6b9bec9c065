/*
 * noop.c - the `noop` plugin of bench/sched: one op, noop.id, whose
 * kernel does nothing (its output is a 1-element f32 it leaves as it is).
 * A graph of such nodes measures what the runtime itself costs per node:
 * readiness tracking, the hand-off to a pool thread and back, profiling.
 * Not installed; built by `make bench`.
 */
#include "smlp_plugin.h"

static int
noop_infer(struct smlp_infer_ctx *ctx)
{
    ctx->outputs[0]->dtype = SMLP_DTYPE_F32;
    ctx->outputs[0]->rank = 1;
    ctx->outputs[0]->shape[0] = 1;
    return SMLP_OK;
}

static int
noop_run(struct smlp_kernel_ctx *ctx)
{
    (void)ctx;
    return SMLP_OK;
}

static const struct smlp_kernel_def noop_kernel = {
    sizeof(struct smlp_kernel_def), SMLP_ABI_VERSION, SMLP_DEVICE_CPU,
    1u << SMLP_DTYPE_F32, NULL, noop_run, 1};
static const struct smlp_kernel_def *const noop_kernels[] = {&noop_kernel,
                                                              NULL};
static const struct smlp_op_def noop_op = {
    sizeof(struct smlp_op_def), SMLP_ABI_VERSION, "noop.id", 1, 8, 1, 0,
    NULL, noop_infer, noop_kernels, NULL, "does nothing (bench/sched)"};
static const struct smlp_op_def *const noop_ops[] = {&noop_op, NULL};
static const struct smlp_plugin_def noop_plugin = {
    sizeof(struct smlp_plugin_def), SMLP_ABI_VERSION, "noop", "1",
    SMLP_BUILD_SIGNATURE, noop_ops, NULL};

SMLP_PLUGIN_DEFINE(noop_plugin)
