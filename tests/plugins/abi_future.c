/* Built by a future SMLP_PLUGIN_DEFINE for ABI 2.1: it exports its ABI
 * and refuses the host in its init without a message. */
#include "fixture.h"

SMLP_PLUGIN_EXPORT const uint32_t smlp_plugin_abi = (2u << 16) | 1u;

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
