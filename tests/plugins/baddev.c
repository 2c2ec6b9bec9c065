/* A kernel for a device that does not exist: refused at load (it used to
 * load and fail later as "no CPU kernel supports this node"). */
#include "fixture.h"

static const struct smlp_kernel_def kernel = {
    sizeof(struct smlp_kernel_def), SMLP_ABI_VERSION, 7,
    1u << SMLP_DTYPE_F32, NULL, fixture_copy, 1, NULL};
static const struct smlp_kernel_def *const kernels[] = {&kernel, NULL};
static const struct smlp_op_def op = {
    sizeof(struct smlp_op_def), SMLP_ABI_VERSION, "baddev.copy", 1, 1, 1, 0,
    NULL, fixture_infer, kernels, NULL, "device 7"};
static const struct smlp_op_def *const ops[] = {&op, NULL};
static const struct smlp_plugin_def def = {
    sizeof(def), SMLP_ABI_VERSION, "baddev", "1", SMLP_BUILD_SIGNATURE, ops,
    NULL};
SMLP_PLUGIN_DEFINE(def)
