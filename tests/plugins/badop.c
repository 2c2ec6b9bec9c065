/* An op definition without outputs: refused at load, saying so. */
#include "fixture.h"

static const struct smlp_op_def op = {
    sizeof(struct smlp_op_def), SMLP_ABI_VERSION, "badop.none", 1, 1, 0, 0,
    NULL, fixture_infer, fixture_kernels, NULL, "no outputs"};
static const struct smlp_op_def *const ops[] = {&op, NULL};
static const struct smlp_plugin_def def = {
    sizeof(def), SMLP_ABI_VERSION, "badop", "1", SMLP_BUILD_SIGNATURE, ops,
    NULL};
SMLP_PLUGIN_DEFINE(def)
