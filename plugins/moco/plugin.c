/*
 * plugin.c - the `moco` plugin: its definition, op table and entry point.
 *
 * moco holds the MoCo v3 pre-training pieces (OPS.md, "moco"): the
 * contrastive loss moco.loss (forward and backward) and the momentum
 * encoder's update moco.momentum_update (forward only, writes its state
 * input; see moco.h), each with a CPU kernel.  The loss's similarity
 * products go through OpenBLAS; like moe, the plugin has no set_threads
 * and leaves BLAS threading to the host.
 */
#include "moco.h"

static const struct smlp_op_def *const moco_ops[] = {
    &smlp__moco_op_loss,
    &smlp__moco_op_momentum_update,
    NULL,
};

static const struct smlp_plugin_def moco_plugin = {
    .size = sizeof(struct smlp_plugin_def),
    .abi = SMLP_ABI_VERSION,
    .name = "moco",
    .version = "0.1.0",
    .signature = SMLP_BUILD_SIGNATURE,
    .ops = moco_ops,
    .set_threads = NULL,
};

SMLP_PLUGIN_DEFINE(moco_plugin)
