/* The file is wrongname.so but the plugin calls itself 'other'. */
#include "fixture.h"

FIXTURE_OP(op, "other.identity");
static const struct smlp_op_def *const ops[] = {&op, NULL};
static const struct smlp_plugin_def def = {
    sizeof(def), SMLP_ABI_VERSION, "other", "1", SMLP_BUILD_SIGNATURE, ops,
    NULL};
SMLP_PLUGIN_DEFINE(def)
