/*
 * plugin.c - the `norm` plugin: its definition, op table and entry point.
 *
 * norm holds the normalisation layers (OPS.md, "norm"): layer_norm and
 * batch_norm, each with a CPU kernel.  No BLAS, so no set_threads.
 */
#include "norm.h"

static const struct smlp_op_def *const norm_ops[] = {
    &smlp__norm_op_layer_norm,
    &smlp__norm_op_batch_norm,
    NULL,
};

static const struct smlp_plugin_def norm_plugin = {
    .size = sizeof(struct smlp_plugin_def),
    .abi = SMLP_ABI_VERSION,
    .name = "norm",
    .version = "0.1.0",
    .signature = SMLP_BUILD_SIGNATURE,
    .ops = norm_ops,
    .set_threads = NULL,
};

SMLP_PLUGIN_DEFINE(norm_plugin)
