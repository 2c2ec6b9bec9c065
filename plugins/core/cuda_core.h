/*
 * cuda_core.h - what the core plugin's two CUDA files share: cuda.cu (the
 * forward kernels, the cuBLAS handles) and cuda_bwd.cu (the backwards).
 * C++ (nvcc) only.
 *
 * A CUDA call works for one node on one stream (struct smlp__cu_call,
 * made from a kernel's or a backward's context by smlp__cu_of): errors go
 * to that node, work to that stream, and nothing synchronises.
 */
#ifndef SMLP_CORE_CUDA_CORE_H
#define SMLP_CORE_CUDA_CORE_H

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "core.h"

#define SMLP__CU_BLOCK 256

struct smlp__cu_call {
    const struct smlp_host_api *host;
    const struct smlp_node *node;
    cudaStream_t stream;
};

template <class Ctx>
static inline struct smlp__cu_call
smlp__cu_of(const Ctx *ctx)
{
    struct smlp__cu_call c = {ctx->host, ctx->node,
                              (cudaStream_t)ctx->stream};
    return c;
}

/* An attribute of the node, or def when absent (either context). */
template <class Ctx>
static inline int64_t
smlp__cu_attr_int(const Ctx *ctx, const char *name, int64_t def)
{
    int64_t v;

    return ctx->host->attr_int(ctx->node, name, &v) == SMLP_OK ? v : def;
}

template <class Ctx>
static inline double
smlp__cu_attr_float(const Ctx *ctx, const char *name, double def)
{
    double v;

    return ctx->host->attr_float(ctx->node, name, &v) == SMLP_OK ? v : def;
}

/* Blocks for a grid-stride loop over n items of SMLP__CU_BLOCK threads. */
unsigned smlp__cu_grid(int64_t n);
/* Records a failure for c's node; returns status. */
int smlp__cu_fail(const struct smlp__cu_call *c, int status, const char *fmt,
                  ...) __attribute__((format(printf, 3, 4)));
/* Checks the launches just made; a failure names `what`. */
int smlp__cu_launched(const struct smlp__cu_call *c, const char *what);

/*
 * Row-major products on c's stream, cuBLAS in FP32 math:
 *   C_i[M,N] = op(A_i)[M,K]·op(B_i)[K,N] + beta·C_i,  i < batch,
 * op = transpose when ta / tb; lda, ldb, ldc are the stored rows' lengths
 * and sa, sb, sc the strides between batch members (0: shared).
 */
int smlp__cu_gemm(const struct smlp__cu_call *c, int ta, int tb, int64_t m,
                  int64_t n, int64_t k, const float *a, int64_t lda,
                  int64_t sa, const float *b, int64_t ldb, int64_t sb,
                  float beta, float *cm, int64_t ldc, int64_t sc,
                  int64_t batch);
/* dst = src with its dims permuted (4-byte elements; output dim d is
 * input dim perm[d]), as core.transpose. */
int smlp__cu_transpose(const struct smlp__cu_call *c, void *dst,
                       const void *src, int rank, const int64_t *shape,
                       const int64_t *perm);
/* cols[B·L, Cin·P·P] of x [B,Cin,H,W], as core.patch_embed's forward;
 * to_image: x from cols (its backward's scatter; x is then written). */
int smlp__cu_im2col(const struct smlp__cu_call *c, float *cols, float *x,
                    int64_t rows, int64_t cin, int64_t h, int64_t wid,
                    int64_t p, int to_image);

/* The backwards (cuda_bwd.cu), named in cuda.cu's kernel definitions. */
int smlp__core_linear_bwd_cuda(struct smlp_backward_ctx *ctx);
int smlp__core_gelu_bwd_cuda(struct smlp_backward_ctx *ctx);
int smlp__core_relu_bwd_cuda(struct smlp_backward_ctx *ctx);
int smlp__core_add_bwd_cuda(struct smlp_backward_ctx *ctx);
int smlp__core_scale_bwd_cuda(struct smlp_backward_ctx *ctx);
int smlp__core_transpose_bwd_cuda(struct smlp_backward_ctx *ctx);
int smlp__core_reshape_bwd_cuda(struct smlp_backward_ctx *ctx);
int smlp__core_mean_bwd_cuda(struct smlp_backward_ctx *ctx);
int smlp__core_patch_embed_bwd_cuda(struct smlp_backward_ctx *ctx);
int smlp__core_matmul_bwd_cuda(struct smlp_backward_ctx *ctx);
int smlp__core_sce_bwd_cuda(struct smlp_backward_ctx *ctx);

#endif /* SMLP_CORE_CUDA_CORE_H */
