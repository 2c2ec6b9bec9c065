/*
 * plugin.c - the `core` plugin: its definition, op table and entry point.
 *
 * core holds the dense building blocks of the models (OPS.md, "core"):
 * linear, gelu, relu, add, scale, transpose, reshape, mean, patch_embed,
 * matmul, softmax_cross_entropy and argmax, each with a CPU kernel.  The
 * matrix products go through OpenBLAS, always on one thread per call:
 * kernels split their work into tasks fixed by the shapes and hand them
 * to host->parallel_for (smlp_parallel_for), so that results do not
 * depend on the thread count (OpenBLAS's own splits do).
 */
#include <cblas.h>

#include "core.h"

static const struct smlp_op_def *const core_ops[] = {
    &smlp__core_op_linear,
    &smlp__core_op_gelu,
    &smlp__core_op_relu,
    &smlp__core_op_add,
    &smlp__core_op_scale,
    &smlp__core_op_transpose,
    &smlp__core_op_reshape,
    &smlp__core_op_mean,
    &smlp__core_op_patch_embed,
    &smlp__core_op_matmul,
    &smlp__core_op_softmax_cross_entropy,
    &smlp__core_op_argmax,
    NULL,
};

/*
 * OpenBLAS runs one thread per call whatever the intra-op budget: the
 * budget is used through parallel_for, each task calling a single-threaded
 * sgemm.  OpenBLAS's threading is process-wide, so this also covers the
 * sgemm calls of other plugins in the process.  The host calls this before
 * kernels run, never while one of ours runs.
 */
static void
core_set_threads(int threads)
{
    (void)threads;
    openblas_set_num_threads(1);
}

static const struct smlp_plugin_def core_plugin = {
    .size = sizeof(struct smlp_plugin_def),
    .abi = SMLP_ABI_VERSION,
    .name = "core",
    .version = "0.1.0",
    .signature = SMLP_BUILD_SIGNATURE,
    .ops = core_ops,
    .set_threads = core_set_threads,
};

SMLP_PLUGIN_DEFINE(core_plugin)
