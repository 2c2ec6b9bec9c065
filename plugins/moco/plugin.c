/*
 * plugin.c - the `moco` plugin: its definition, op table and entry point.
 *
 * moco holds the MoCo v3 pre-training pieces (OPS.md, "moco"): the
 * contrastive loss moco.loss (forward and backward) and the momentum
 * encoder's update moco.momentum_update (forward only, writes its state
 * input; see moco.h), each with a CPU kernel.  The loss splits its rows
 * into tasks for host->parallel_for, each calling single-threaded
 * OpenBLAS sgemm; like moe, the plugin has no set_threads and leaves
 * OpenBLAS's (process-wide) threading to the host, which keeps it at one
 * thread per call.
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
