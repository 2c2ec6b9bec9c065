/* Built with a different build signature (say, 64-bit indices). */
#include "fixture.h"

FIXTURE_OP(op, "badsig.identity");
static const struct smlp_op_def *const ops[] = {&op, NULL};
static const struct smlp_plugin_def def = {
    sizeof(def), SMLP_ABI_VERSION, "badsig", "1",
    "smlp-abi1 size_t8 idx=i64 f=f32 le", ops, NULL};
SMLP_PLUGIN_DEFINE(def)
