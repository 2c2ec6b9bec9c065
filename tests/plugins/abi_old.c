/* Claims ABI 0.9: the host must refuse it, naming both versions. */
#include "fixture.h"

FIXTURE_OP(op, "abi_old.identity");
static const struct smlp_op_def *const ops[] = {&op, NULL};
static const struct smlp_plugin_def def = {
    sizeof(def), (0u << 16) | 9u, "abi_old", "1", SMLP_BUILD_SIGNATURE, ops,
    NULL};

SMLP_PLUGIN_EXPORT int
smlp_plugin_init(const struct smlp_host_api *host, struct smlp_registry *reg,
                 char **errmsg)
{
    (void)errmsg;
    return host->register_plugin(reg, &def);
}
