/*
 * Built for ABI 1.99 with a larger plugin definition (a field appended
 * after set_threads): the host reads the fields it knows and loads it.
 */
#include "fixture.h"

struct future_plugin_def {
    struct smlp_plugin_def base;
    void *appended_in_1_99;
};

FIXTURE_OP(op, "minor_new.identity");
static const struct smlp_op_def *const ops[] = {&op, NULL};
static const struct future_plugin_def def = {
    {sizeof(struct future_plugin_def), (1u << 16) | 99u, "minor_new", "1",
     SMLP_BUILD_SIGNATURE, ops, NULL},
    NULL};

SMLP_PLUGIN_EXPORT int
smlp_plugin_init(const struct smlp_host_api *host, struct smlp_registry *reg,
                 char **errmsg)
{
    (void)errmsg;
    return host->register_plugin(reg, &def.base);
}
