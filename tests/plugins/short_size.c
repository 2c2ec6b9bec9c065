/* Declares a plugin definition too small to hold the ABI 1.0 fields. */
#include "fixture.h"

FIXTURE_OP(op, "short_size.identity");
static const struct smlp_op_def *const ops[] = {&op, NULL};
static const struct smlp_plugin_def def = {
    8, SMLP_ABI_VERSION, "short_size", "1", SMLP_BUILD_SIGNATURE, ops, NULL};
SMLP_PLUGIN_DEFINE(def)
