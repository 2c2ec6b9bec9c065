/* Built for a future ABI 2.0: it refuses the host in its init. */
#include "fixture.h"

SMLP_PLUGIN_EXPORT int
smlp_plugin_init(const struct smlp_host_api *host, struct smlp_registry *reg,
                 char **errmsg)
{
    (void)reg;
    (void)errmsg;
    if (SMLP_ABI_MAJOR_OF(host->abi) != 2)
        return SMLP_EABI;
    return SMLP_OK;
}
