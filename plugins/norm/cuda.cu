/*
 * cuda.cu - CUDA kernels of the `norm` plugin (forward and, plugin ABI
 * 1.3, backward; f32).
 *
 * Listed after the CPU kernels in each op's kernel table (norm.h,
 * SMLP__NORM_CUDA).  The runtime calls run() on its loop thread with
 * device pointers and the session's stream in ctx->stream; run() only
 * enqueues work.  Attributes are read again from the node with the CPU
 * op's defaults (ctx->priv belongs to the CPU file).  Statistics are
 * computed in double in a fixed order, so results do not depend on
 * timing:
 *   layer_norm: one block per row, a fixed-shape tree over the row;
 *   batch_norm: one thread per column, summing rows in order exactly as
 *   the CPU kernel does (training updates the running statistics, which
 *   are state tensors, in place on the device; the runtime copies state
 *   back to the host after the run).
 * The backwards follow layer_norm.c's and batch_norm.c's formulas, with
 * the statistics recomputed as the forward computes them and column sums
 * (dgamma, dbeta) by a thread per column over the rows in order.
 * batch_norm's backward assumes training mode: a backward only follows a
 * forward of a training session.
 */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "norm.h"
#include "smlp_cuda.h"

#define LN_BLOCK 128
#define BN_BLOCK 128

static __device__ inline double
block_sum(double v, double *red)
{
    return smlp_cuda_block_sum<LN_BLOCK>(v, red);
}

/* Mean and 1/sqrt(var + eps) of the row xr[0..d), the same tree in the
 * forward and the backward; all threads of the block get them. */
__device__ void
row_stats(const float *xr, int64_t d, double eps, double *red, double *mean,
          double *rstd)
{
    double s = 0.0;
    int64_t j;

    for (j = threadIdx.x; j < d; j += LN_BLOCK)
        s += xr[j];
    *mean = block_sum(s, red) / (double)d;
    s = 0.0;
    for (j = threadIdx.x; j < d; j += LN_BLOCK) {
        double c = xr[j] - *mean;
        s += c * c;
    }
    *rstd = 1.0 / sqrt(block_sum(s, red) / (double)d + eps);
}

__global__ void
k_layer_norm(const float *x, const float *gamma, const float *beta,
             float *y, int64_t rows, int64_t d, double eps)
{
    __shared__ double red[LN_BLOCK];
    int64_t r, j;

    for (r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *xr = x + r * d;
        float *yr = y + r * d;
        double mean, rstd;

        row_stats(xr, d, eps, red, &mean, &rstd);
        for (j = threadIdx.x; j < d; j += LN_BLOCK)
            yr[j] = (float)((xr[j] - mean) * rstd * gamma[j] + beta[j]);
    }
}

static int
layer_norm_run(struct smlp_kernel_ctx *ctx)
{
    const struct smlp_tensor *xt = ctx->inputs[0];
    int64_t d = xt->shape[xt->rank - 1], rows;

    rows = smlp_tensor_numel(xt) / d;
    if (rows == 0)
        return SMLP_OK;
    k_layer_norm<<<(unsigned)(rows < (1 << 20) ? rows : (1 << 20)), LN_BLOCK,
                   0, (cudaStream_t)ctx->stream>>>(
        (const float *)xt->data, (const float *)ctx->inputs[1]->data,
        (const float *)ctx->inputs[2]->data, (float *)ctx->outputs[0]->data,
        rows, d, smlp_cuda_attr_float(ctx, "eps", 1e-6));
    return smlp_cuda_launched(ctx, "layer_norm");
}

/*
 * Thread j owns column j: statistics (training) or the running ones
 * (inference), then the column of y.  gamma and beta are NULL when
 * affine = 0.
 */
__global__ void
k_batch_norm(const float *x, const float *gamma, const float *beta,
             float *rmean, float *rvar, float *y, int64_t n, int64_t d,
             double eps, double m, int training)
{
    int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, r;

    for (; j < d; j += (int64_t)gridDim.x * blockDim.x) {
        double mean = 0.0, var = 0.0, scale, shift;

        if (training) {
            for (r = 0; r < n; r++)
                mean += x[r * d + j];
            mean /= (double)n;
            for (r = 0; r < n; r++) {
                double c = x[r * d + j] - mean;
                var += c * c;
            }
            var /= (double)n;
            rmean[j] = (float)((1.0 - m) * rmean[j] + m * mean);
            rvar[j] = (float)((1.0 - m) * rvar[j] +
                              m * (var * (double)n / (double)(n - 1)));
        } else {
            mean = rmean[j];
            var = rvar[j];
        }
        scale = (gamma ? gamma[j] : 1.0) / sqrt(var + eps);
        shift = beta ? beta[j] : 0.0;
        for (r = 0; r < n; r++)
            y[r * d + j] = (float)((x[r * d + j] - mean) * scale + shift);
    }
}

static int
batch_norm_run(struct smlp_kernel_ctx *ctx)
{
    const struct smlp_tensor *xt = ctx->inputs[0];
    int affine = ctx->n_inputs == 5;
    int rm = affine ? 3 : 1;
    int64_t n = xt->shape[0], d = xt->shape[1];
    int64_t blocks = (d + BN_BLOCK - 1) / BN_BLOCK;

    if (ctx->training && n < 2)
        return smlp_kernel_fail(ctx, SMLP_EINVAL,
                                "training needs more than one row per "
                                "channel, got %lld",
                                (long long)n);
    if (d == 0)
        return SMLP_OK;
    k_batch_norm<<<(unsigned)(blocks < (1 << 20) ? blocks : (1 << 20)),
                   BN_BLOCK, 0, (cudaStream_t)ctx->stream>>>(
        (const float *)xt->data,
        affine ? (const float *)ctx->inputs[1]->data : NULL,
        affine ? (const float *)ctx->inputs[2]->data : NULL,
        (float *)ctx->inputs[rm]->data, (float *)ctx->inputs[rm + 1]->data,
        (float *)ctx->outputs[0]->data, n, d,
        smlp_cuda_attr_float(ctx, "eps", 1e-5),
        smlp_cuda_attr_float(ctx, "momentum", 0.1), ctx->training != 0);
    return smlp_cuda_launched(ctx, "batch_norm");
}

/* ---- backwards (plugin ABI 1.3) ----------------------------------------- */

/* Zeroes gradient g when wanted. */
static int
zero_grad(struct smlp_backward_ctx *ctx, struct smlp_tensor *g)
{
    if (g == NULL)
        return SMLP_OK;
    return smlp_cuda_memset(ctx, g->data, 0,
                            (size_t)smlp_tensor_numel(g) * sizeof(float),
                            "memset");
}

/*
 * layer_norm, one block per row: the forward's statistics (the same tree),
 * kept in stats[2r], stats[2r + 1] (mean, rstd) for the column pass, and
 * dx = rstd·(g − mean_j g − x̂·mean_j(g·x̂)) with g = dy·gamma.
 */
__global__ void
k_layer_norm_bwd_rows(const float *x, const float *dy, const float *gamma,
                      float *dx, double *stats, int64_t rows, int64_t d,
                      double eps)
{
    __shared__ double red[LN_BLOCK];
    int64_t r, j;

    for (r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *xr = x + r * d, *dr = dy + r * d;
        double mean, rstd, s1, s2;

        row_stats(xr, d, eps, red, &mean, &rstd);
        if (threadIdx.x == 0) {
            stats[2 * r] = mean;
            stats[2 * r + 1] = rstd;
        }
        if (dx == NULL)
            continue;
        s1 = 0.0;
        s2 = 0.0;
        for (j = threadIdx.x; j < d; j += LN_BLOCK) {
            double g = (double)dr[j] * gamma[j];
            s1 += g;
            s2 += g * ((xr[j] - mean) * rstd);
        }
        s1 = block_sum(s1, red) / (double)d;
        s2 = block_sum(s2, red) / (double)d;
        for (j = threadIdx.x; j < d; j += LN_BLOCK) {
            double xh = (xr[j] - mean) * rstd;
            dx[r * d + j] =
                (float)(rstd * ((double)dr[j] * gamma[j] - s1 - xh * s2));
        }
    }
}

/* dgamma = Σ_rows dy·x̂, dbeta = Σ_rows dy: a thread per column, rows in
 * order, in double. */
__global__ void
k_layer_norm_bwd_cols(const float *x, const float *dy, const double *stats,
                      float *dgamma, float *dbeta, int64_t rows, int64_t d)
{
    int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, r;

    for (; j < d; j += (int64_t)gridDim.x * blockDim.x) {
        double sg = 0.0, sb = 0.0;

        for (r = 0; r < rows; r++) {
            double v = dy[r * d + j];
            sb += v;
            sg += v * ((x[r * d + j] - stats[2 * r]) * stats[2 * r + 1]);
        }
        if (dgamma != NULL)
            dgamma[j] = (float)sg;
        if (dbeta != NULL)
            dbeta[j] = (float)sb;
    }
}

static int
layer_norm_backward(struct smlp_backward_ctx *ctx)
{
    const struct smlp_tensor *xt = ctx->inputs[0];
    struct smlp_tensor *gx = ctx->grad_inputs[0];
    struct smlp_tensor *gg = ctx->grad_inputs[1], *gb = ctx->grad_inputs[2];
    cudaStream_t st = (cudaStream_t)ctx->stream;
    int64_t d = xt->shape[xt->rank - 1], rows = smlp_tensor_numel(xt) / d;
    /* The CPU backward's workspace: 2·d doubles, then 2 per row. */
    double *stats = (double *)ctx->workspace + 2 * d;
    const float *dy;
    int rc;

    if (gx == NULL && gg == NULL && gb == NULL)
        return SMLP_OK;
    if (ctx->grad_outputs[0] == NULL || rows == 0) {
        if ((rc = zero_grad(ctx, gx)) != SMLP_OK ||
            (rc = zero_grad(ctx, gg)) != SMLP_OK)
            return rc;
        return zero_grad(ctx, gb);
    }
    if (ctx->workspace == NULL ||
        ctx->workspace_size < 2 * (size_t)(d + rows) * sizeof(double)) {
        ctx->host->errorf(ctx->node, "backward workspace of %zu bytes, "
                                     "need %zu",
                          ctx->workspace_size,
                          2 * (size_t)(d + rows) * sizeof(double));
        return SMLP_EINVAL;
    }
    dy = (const float *)ctx->grad_outputs[0]->data;
    k_layer_norm_bwd_rows<<<(unsigned)(rows < (1 << 20) ? rows : (1 << 20)),
                            LN_BLOCK, 0, st>>>(
        (const float *)xt->data, dy, (const float *)ctx->inputs[1]->data,
        gx != NULL ? (float *)gx->data : NULL, stats, rows, d,
        smlp_cuda_attr_float(ctx, "eps", 1e-6));
    if ((rc = smlp_cuda_launched(ctx, "layer_norm backward")) != SMLP_OK ||
        (gg == NULL && gb == NULL))
        return rc;
    k_layer_norm_bwd_cols<<<(unsigned)((d + LN_BLOCK - 1) / LN_BLOCK),
                            LN_BLOCK, 0, st>>>(
        (const float *)xt->data, dy, stats,
        gg != NULL ? (float *)gg->data : NULL,
        gb != NULL ? (float *)gb->data : NULL, rows, d);
    return smlp_cuda_launched(ctx, "layer_norm backward");
}

/*
 * batch_norm in training (a backward follows a training forward): thread
 * j owns column j, with the batch statistics as the forward computed them:
 *   dbeta = Σ dy, dgamma = Σ dy·x̂,
 *   dx = gamma·rstd·(dy − dbeta/N − (x − mean)·rstd²·Σ dy·(x − mean)/N).
 */
__global__ void
k_batch_norm_bwd(const float *x, const float *dy, const float *gamma,
                 float *dx, float *dgamma, float *dbeta, int64_t n,
                 int64_t d, double eps)
{
    int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, r;

    for (; j < d; j += (int64_t)gridDim.x * blockDim.x) {
        double mean = 0.0, var = 0.0, rstd, sg = 0.0, sgx = 0.0, a, b, c;

        for (r = 0; r < n; r++)
            mean += x[r * d + j];
        mean /= (double)n;
        for (r = 0; r < n; r++) {
            double v = x[r * d + j] - mean;
            var += v * v;
        }
        rstd = 1.0 / sqrt(var / (double)n + eps);
        for (r = 0; r < n; r++) {
            double g = dy[r * d + j];
            sg += g;
            sgx += g * ((double)x[r * d + j] - mean);
        }
        if (dbeta != NULL)
            dbeta[j] = (float)sg;
        if (dgamma != NULL)
            dgamma[j] = (float)(sgx * rstd);
        if (dx == NULL)
            continue;
        a = rstd * (gamma != NULL ? (double)gamma[j] : 1.0);
        b = sg / (double)n;
        c = sgx * rstd * rstd / (double)n;
        for (r = 0; r < n; r++)
            dx[r * d + j] = (float)(a * ((double)dy[r * d + j] - b -
                                         ((double)x[r * d + j] - mean) * c));
    }
}

static int
batch_norm_backward(struct smlp_backward_ctx *ctx)
{
    const struct smlp_tensor *xt = ctx->inputs[0];
    int affine = ctx->n_inputs == 5, rm = affine ? 3 : 1, rc;
    struct smlp_tensor *gx = ctx->grad_inputs[0];
    struct smlp_tensor *gg = affine ? ctx->grad_inputs[1] : NULL;
    struct smlp_tensor *gb = affine ? ctx->grad_inputs[2] : NULL;
    int64_t n = xt->shape[0], d = xt->shape[1];
    int64_t blocks = (d + BN_BLOCK - 1) / BN_BLOCK;

    /* The running statistics are state: no gradient. */
    if ((rc = zero_grad(ctx, ctx->grad_inputs[rm])) != SMLP_OK ||
        (rc = zero_grad(ctx, ctx->grad_inputs[rm + 1])) != SMLP_OK)
        return rc;
    if (ctx->grad_outputs[0] == NULL) {
        if ((rc = zero_grad(ctx, gx)) != SMLP_OK ||
            (rc = zero_grad(ctx, gg)) != SMLP_OK)
            return rc;
        return zero_grad(ctx, gb);
    }
    if (d == 0 || (gx == NULL && gg == NULL && gb == NULL))
        return SMLP_OK;
    k_batch_norm_bwd<<<(unsigned)(blocks < (1 << 20) ? blocks : (1 << 20)),
                       BN_BLOCK, 0, (cudaStream_t)ctx->stream>>>(
        (const float *)xt->data, (const float *)ctx->grad_outputs[0]->data,
        affine ? (const float *)ctx->inputs[1]->data : NULL,
        gx != NULL ? (float *)gx->data : NULL,
        gg != NULL ? (float *)gg->data : NULL,
        gb != NULL ? (float *)gb->data : NULL, n, d,
        smlp_cuda_attr_float(ctx, "eps", 1e-5));
    return smlp_cuda_launched(ctx, "batch_norm backward");
}

extern "C" {
const struct smlp_kernel_def smlp__norm_layer_norm_cuda = {
    sizeof(struct smlp_kernel_def), SMLP_ABI_VERSION, SMLP_DEVICE_CUDA,
    1u << SMLP_DTYPE_F32, NULL, layer_norm_run, SMLP__NORM_CPU_SCORE,
    layer_norm_backward,
};
const struct smlp_kernel_def smlp__norm_batch_norm_cuda = {
    sizeof(struct smlp_kernel_def), SMLP_ABI_VERSION, SMLP_DEVICE_CUDA,
    1u << SMLP_DTYPE_F32, NULL, batch_norm_run, SMLP__NORM_CPU_SCORE,
    batch_norm_backward,
};
}
