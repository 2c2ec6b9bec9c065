/*
 * fixture.h - shared pieces of the test plugins in tests/plugins/: one
 * trivially correct op ("NAME.identity", f32 copy) that each fixture
 * registers in its own (good or broken) way.
 */
#ifndef SMLP_TEST_FIXTURE_H
#define SMLP_TEST_FIXTURE_H

#include <string.h>

#include "smlp_plugin.h"

/* Not every fixture registers FIXTURE_OP (abi_new, failinit, ... fail
 * before they would): unused there, without a warning. */
__attribute__((unused)) static int
fixture_infer(struct smlp_infer_ctx *ctx)
{
    const struct smlp_tensor *x = ctx->inputs[0];

    if (x->dtype != SMLP_DTYPE_F32) {
        ctx->host->errorf(ctx->node, "input 0 must be f32");
        return SMLP_EINVAL;
    }
    ctx->outputs[0]->dtype = x->dtype;
    ctx->outputs[0]->rank = x->rank;
    memcpy(ctx->outputs[0]->shape, x->shape, sizeof(x->shape));
    return SMLP_OK;
}

static int
fixture_copy(struct smlp_kernel_ctx *ctx)
{
    memcpy(ctx->outputs[0]->data, ctx->inputs[0]->data,
           (size_t)smlp_tensor_numel(ctx->inputs[0]) * sizeof(float));
    return SMLP_OK;
}

static const struct smlp_kernel_def fixture_kernel = {
    sizeof(struct smlp_kernel_def), SMLP_ABI_VERSION, SMLP_DEVICE_CPU,
    1u << SMLP_DTYPE_F32, NULL, fixture_copy, 1, NULL};
static const struct smlp_kernel_def *const fixture_kernels[] = {
    &fixture_kernel, NULL};

#define FIXTURE_OP(var, opname)                                              \
    static const struct smlp_op_def var = {                                  \
        sizeof(struct smlp_op_def), SMLP_ABI_VERSION, opname, 1, 1, 1, 0,    \
        NULL, fixture_infer, fixture_kernels, NULL, "copies its input"}

#endif
