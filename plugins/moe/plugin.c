/*
 * plugin.c - the `moe` plugin: its definition, op table and entry point.
 *
 * moe holds the sparse Mixture-of-Experts layer as four graph nodes
 * (OPS.md, "moe"): a gate (moe.gate.topk, .importance, .per_image or
 * .hash), moe.dispatch, moe.expert_ffn and moe.combine, each with a CPU
 * kernel.  Kernels and backwards split their work into tasks fixed by the
 * shapes and hand them to host->parallel_for (smlp_parallel_for), each
 * task calling single-threaded OpenBLAS sgemm; the plugin has no
 * set_threads: OpenBLAS's threading is process-wide and the host (core's
 * set_threads) keeps it at one thread per call.
 */
#include "moe.h"

static const struct smlp_op_def *const moe_ops[] = {
    &smlp__moe_op_gate_topk,
    &smlp__moe_op_gate_importance,
    &smlp__moe_op_gate_per_image,
    &smlp__moe_op_gate_hash,
    &smlp__moe_op_dispatch,
    &smlp__moe_op_expert_ffn,
    &smlp__moe_op_combine,
    NULL,
};

static const struct smlp_plugin_def moe_plugin = {
    .size = sizeof(struct smlp_plugin_def),
    .abi = SMLP_ABI_VERSION,
    .name = "moe",
    .version = "0.1.0",
    .signature = SMLP_BUILD_SIGNATURE,
    .ops = moe_ops,
    .set_threads = NULL,
};

SMLP_PLUGIN_DEFINE(moe_plugin)
