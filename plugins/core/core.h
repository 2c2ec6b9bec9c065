/*
 * core.h - declarations shared by the files of the `core` plugin.
 *
 * Each op lives in the file that holds its kernels and exports (inside the
 * plugin only; the build hides every symbol but smlp_plugin_init) its
 * struct smlp_op_def; plugin.c lists them.
 */
#ifndef SMLP_CORE_H
#define SMLP_CORE_H

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "smlp_kernel.h"

/* Preferred over kernels that declare a lower score (none yet). */
#define SMLP__CORE_CPU_SCORE 10

/* dtype_mask bits. */
#define SMLP__MASK_F32 (1u << SMLP_DTYPE_F32)
#define SMLP__MASK_I32 (1u << SMLP_DTYPE_I32)

/*
 * Checks that each of the n sizes fits the `int` that cblas_sgemm takes
 * (OpenBLAS built without 64-bit indices).  `what` names the product in
 * the message.
 */
static inline int
smlp__core_check_blas_dims(struct smlp_infer_ctx *ctx, const char *what,
                           int n, const int64_t *dims)
{
    int i;

    for (i = 0; i < n; i++)
        if (dims[i] > INT_MAX)
            return smlp_infer_fail(ctx, SMLP_ELIMIT,
                                   "%s: size %lld exceeds the BLAS limit %d",
                                   what, (long long)dims[i], INT_MAX);
    return SMLP_OK;
}

/*
 * Records a backward failure for the node (the host adds file, node and op
 * names) and returns status.
 */
static inline int
smlp__core_backward_fail(struct smlp_backward_ctx *ctx, int status,
                         const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static inline int
smlp__core_backward_fail(struct smlp_backward_ctx *ctx, int status,
                         const char *fmt, ...)
{
    char msg[SMLP_KERNEL_MSGLEN];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ctx->host->errorf(ctx->node, "%s", msg);
    return status;
}

/*
 * The backward of a node that no gradient reaches (grad_outputs all NULL,
 * read as zeros): every wanted gradient is zero.  Returns SMLP_OK.
 */
static inline int
smlp__core_zero_grads(struct smlp_backward_ctx *ctx)
{
    int i;

    for (i = 0; i < ctx->n_inputs; i++) {
        struct smlp_tensor *g = ctx->grad_inputs[i];

        if (g != NULL && smlp_tensor_numel(g) > 0)
            memset(g->data, 0, (size_t)smlp_tensor_numel(g) * sizeof(float));
    }
    return SMLP_OK;
}

/* dst = src for n floats; dst may be src (the runtime may alias them). */
static inline void
smlp__core_copy_grad(float *dst, const float *src, int64_t n)
{
    if (dst != src && n > 0)
        memcpy(dst, src, (size_t)n * sizeof(float));
}

/*
 * Intra-op parallelism (gemm.c).  Work is cut into tasks for
 * host->parallel_for (through smlp_parallel_for) at boundaries that depend
 * on the shapes alone, so results are the same for any thread count; BLAS
 * runs one thread per call (plugin.c).
 */

/*
 * A product, or `batch` of them: for i in [0, batch),
 * C_i = alpha·op(A_i)·op(B_i) + beta·C_i, row-major, op(X) = Xᵀ when
 * trans_x; A_i = a + i·stride_a (likewise B, C); op(A) is m x k, op(B)
 * k x n, C m x n.  Sizes fit cblas's int (infer checks them).
 *
 * With sum_batch, all products go to the same C (stride_c unused):
 * C = alpha·Σ_i op(A_i)·op(B_i) + beta·C, each tile of C summing i in
 * increasing order (weight gradients summed over a batch).  When C has
 * fewer tiles than SMLP__CORE_GEMM_TASKS and `partial` is set (no
 * epilogue), the batch is also cut into smlp__core_gemm_sum_parts()
 * parts (a function of the shapes): part 0 sums into C, part p > 0 into
 * partial + (p − 1)·m·n (rows of n floats), and the parts are then added
 * to C in increasing p; so a small C (token mixing's dW, 64 x 49) keeps
 * every thread busy, with the same bits for any thread count.
 *
 * epilogue (optional) runs on each tile once it is computed, while it is
 * hot in the cache: for rows [m0, m0 + mb) and columns [n0, n0 + nb) of
 * C_i (c points at element (m0, n0), ldc as above); used to add biases.
 */
struct smlp__core_gemm {
    int trans_a, trans_b, sum_batch;
    int64_t batch, m, n, k;
    float alpha, beta;
    const float *a;
    int64_t lda, stride_a;
    const float *b;
    int64_t ldb, stride_b;
    float *c;
    int64_t ldc, stride_c;
    void (*epilogue)(void *arg, float *c, int64_t ldc, int64_t i,
                     int64_t m0, int64_t mb, int64_t n0, int64_t nb);
    void *epilogue_arg;
    float *partial; /* sum_batch: scratch for the parts, or NULL */
};

/* The number of tiles the products of a batch are cut into, at least. */
#define SMLP__CORE_GEMM_TASKS 8

/*
 * The tiles (bm rows x bn columns of C) that smlp__core_gemm cuts each
 * product of a batch into; a function of the shapes alone.
 */
void smlp__core_gemm_tiles(int64_t batch, int64_t m, int64_t n, int64_t k,
                           int64_t *bm, int64_t *bn);
/*
 * The parts a sum_batch product of these shapes is cut into along the
 * batch (1: none); it needs (parts − 1)·m·n floats of `partial`.
 */
int64_t smlp__core_gemm_sum_parts(int64_t batch, int64_t m, int64_t n,
                                  int64_t k);
/* Runs g as tiles, each a single-threaded sgemm over all of k, on the
 * node's threads.  k == 0 is the caller's business (BLAS is not called
 * with it by the kernels).  Returns SMLP_OK. */
int smlp__core_gemm(const struct smlp_host_api *host,
                    const struct smlp_node *node,
                    const struct smlp__core_gemm *g);

/*
 * fn(arg, begin, end, worker) over [0, n) in chunks of `chunk` elements
 * (the last may be shorter), as tasks on the node's threads; returns the
 * first nonzero value fn returned, else 0.  One chunk runs inline.
 */
int smlp__core_parallel_range(const struct smlp_host_api *host,
                              const struct smlp_node *node, int64_t n,
                              int64_t chunk,
                              int (*fn)(void *arg, int64_t begin,
                                        int64_t end, int worker),
                              void *arg);

/* Elements per task of elementwise loops (64 KiB of f32 per operand). */
#define SMLP__CORE_CHUNK 16384

extern const struct smlp_op_def smlp__core_op_linear;
extern const struct smlp_op_def smlp__core_op_gelu;
extern const struct smlp_op_def smlp__core_op_relu;
extern const struct smlp_op_def smlp__core_op_add;
extern const struct smlp_op_def smlp__core_op_scale;
extern const struct smlp_op_def smlp__core_op_transpose;
extern const struct smlp_op_def smlp__core_op_reshape;
extern const struct smlp_op_def smlp__core_op_mean;
extern const struct smlp_op_def smlp__core_op_patch_embed;
extern const struct smlp_op_def smlp__core_op_matmul;
extern const struct smlp_op_def smlp__core_op_softmax_cross_entropy;
extern const struct smlp_op_def smlp__core_op_argmax;

/*
 * CUDA kernels (cuda.cu, built with configure --with-cuda): one per op,
 * listed after the CPU kernel in each op's kernel table through
 * SMLP__CORE_CUDA(k), which is empty in a build without CUDA.
 */
#ifdef SMLP_HAVE_CUDA
#ifdef __cplusplus
extern "C" {
#endif
extern const struct smlp_kernel_def smlp__core_linear_cuda;
extern const struct smlp_kernel_def smlp__core_gelu_cuda;
extern const struct smlp_kernel_def smlp__core_relu_cuda;
extern const struct smlp_kernel_def smlp__core_add_cuda;
extern const struct smlp_kernel_def smlp__core_scale_cuda;
extern const struct smlp_kernel_def smlp__core_transpose_cuda;
extern const struct smlp_kernel_def smlp__core_reshape_cuda;
extern const struct smlp_kernel_def smlp__core_mean_cuda;
extern const struct smlp_kernel_def smlp__core_patch_embed_cuda;
extern const struct smlp_kernel_def smlp__core_matmul_cuda;
extern const struct smlp_kernel_def smlp__core_sce_cuda;
extern const struct smlp_kernel_def smlp__core_argmax_cuda;
#ifdef __cplusplus
}
#endif
#define SMLP__CORE_CUDA(k) &(k),
#else
#define SMLP__CORE_CUDA(k)
#endif

#endif /* SMLP_CORE_H */
