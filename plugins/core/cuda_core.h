/*
 * cuda_core.h - what the core plugin's two CUDA files share beyond
 * ops/smlp_cuda.h: cuda.cu's transpose and im2col launchers, which
 * cuda_bwd.cu (the backwards) uses too, and the backwards' names, which
 * cuda.cu's kernel definitions carry.  C++ (nvcc) only.
 *
 * A launcher works for one node on one stream (struct smlp__cu_call, made
 * from a kernel's or a backward's context by smlp__cu_of): errors go to
 * that node, work to that stream, and nothing synchronises.
 */
#ifndef SMLP_CORE_CUDA_CORE_H
#define SMLP_CORE_CUDA_CORE_H

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "core.h"

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
