/*
 * moco.h - declarations shared by the files of the `moco` plugin.
 *
 * The plugin implements OPS.md "moco" (MoCo v3, MODELS.md §4): the
 * contrastive loss moco.loss (loss.c, forward and backward) and the
 * momentum encoder's update moco.momentum_update (momentum.c, forward
 * only), with CUDA kernels of both in cuda.cu.  Each op lives in the
 * file that holds its kernels and exports
 * (inside the plugin only; the build hides every symbol but
 * smlp_plugin_init) its struct smlp_op_def; plugin.c lists them.
 *
 * State handling of moco.momentum_update.  Input 0 (θ_k) is a state
 * tensor of the graph (like norm.batch_norm's running statistics): the
 * kernel overwrites it in place with m·θ_k + (1 − m)·θ_q, so the next
 * run (and a checkpoint) sees the moved weights.  Output 0 is a separate
 * activation holding the same new values: nodes must not write state
 * tensors and the runtime never aliases a state tensor through a view,
 * so the output is a copy whose purpose is ordering -- nodes that must
 * see the updated key weights within the same run (MoCo v3 updates the
 * momentum encoder before it computes the keys) read the output, not
 * the state tensor, and the scheduler then runs them after the update.
 * No other node may read the state tensor itself in a graph that updates
 * it: nothing orders such a reader against the in-place write (a data
 * race between workers).
 * The update does not depend on the session mode (OPS.md names gate
 * noise, batch-norm statistics and the aux load term as the only
 * mode-dependent parts): every run of the node moves θ_k once, so a graph
 * that holds the node must run once per training step.  m comes from the
 * attribute `m` or, when given, from an optional scalar input 2, so a
 * trainer can follow MoCo's cosine schedule of m without editing the
 * graph (an addition to OPS.md, which lists the attribute only).  No
 * gradient flows through it (MoCo's update is under no_grad) and it has
 * no backward.
 */
#ifndef SMLP_MOCO_H
#define SMLP_MOCO_H

#include <stddef.h>
#include <stdint.h>

#include "smlp_kernel.h"

/* Preferred over kernels that declare a lower score (none yet). */
#define SMLP__MOCO_CPU_SCORE 10

/* dtype_mask bits. */
#define SMLP__MOCO_MASK_F32 (1u << SMLP_DTYPE_F32)

/* Workspace pieces are aligned like the workspace itself. */
#define SMLP__MOCO_ALIGN 64

/* Rounds a workspace offset up to SMLP__MOCO_ALIGN. */
static inline size_t
smlp__moco_align(size_t n)
{
    return (n + SMLP__MOCO_ALIGN - 1) / SMLP__MOCO_ALIGN * SMLP__MOCO_ALIGN;
}

/* moco.loss's workspace (forward and backward, CPU and GPU alike): byte
 * offsets of q̂, k̂ [n,D] f32, s [n,n] f32, the n norms and the n row
 * terms (doubles); *total = 0 when it overflows. */
static inline void
smlp__moco_loss_layout(int64_t n, int64_t d, size_t off[5], size_t *total)
{
    uint64_t nd = (uint64_t)n * (uint64_t)d, nn = (uint64_t)n * (uint64_t)n;
    size_t rows, sq, dn;

    *total = 0;
    /* n, d <= INT_MAX (checked), so nd and nn fit 62 bits. */
    if (nd > SIZE_MAX / 8 || nn > SIZE_MAX / 8)
        return;
    rows = smlp__moco_align((size_t)nd * sizeof(float));
    sq = smlp__moco_align((size_t)nn * sizeof(float));
    dn = smlp__moco_align((size_t)n * sizeof(double));
    if (rows > SIZE_MAX / 4 - sq)
        return;
    off[0] = 0;
    off[1] = rows;
    off[2] = 2 * rows;
    off[3] = 2 * rows + sq;
    off[4] = off[3] + dn;
    *total = off[4] + dn;
}

/*
 * CUDA kernels (cuda.cu, built with configure --with-cuda), listed after
 * the CPU kernel in each op's kernel table through SMLP__MOCO_CUDA(k),
 * which is empty in a build without CUDA.
 */
#ifdef SMLP_HAVE_CUDA
#ifdef __cplusplus
extern "C" {
#endif
extern const struct smlp_kernel_def smlp__moco_loss_cuda;
extern const struct smlp_kernel_def smlp__moco_momentum_cuda;
#ifdef __cplusplus
}
#endif
#define SMLP__MOCO_CUDA(k) &(k),
#else
#define SMLP__MOCO_CUDA(k)
#endif

extern const struct smlp_op_def smlp__moco_op_loss;
extern const struct smlp_op_def smlp__moco_op_momentum_update;

#endif /* SMLP_MOCO_H */
