/* Registers the same op name twice. */
#include "fixture.h"

FIXTURE_OP(op1, "dup.identity");
FIXTURE_OP(op2, "dup.identity");
static const struct smlp_op_def *const ops[] = {&op1, &op2, NULL};
static const struct smlp_plugin_def def = {
    sizeof(def), SMLP_ABI_VERSION, "dup", "1", SMLP_BUILD_SIGNATURE, ops, NULL};
SMLP_PLUGIN_DEFINE(def)
