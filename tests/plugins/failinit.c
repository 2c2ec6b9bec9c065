/* Its init fails with a message. */
#include <stdio.h>

#include "fixture.h"

SMLP_PLUGIN_EXPORT int
smlp_plugin_init(const struct smlp_host_api *host, struct smlp_registry *reg,
                 char **errmsg)
{
    (void)reg;
    *errmsg = host->alloc(64);
    if (*errmsg != NULL)
        snprintf(*errmsg, 64, "fixture refuses to load");
    return SMLP_EINVAL;
}
