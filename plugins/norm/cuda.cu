/*
 * cuda.cu - CUDA kernels of the `norm` plugin (forward, f32).
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
 */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "norm.h"

#define LN_BLOCK 128
#define BN_BLOCK 128

static int
launched(struct smlp_kernel_ctx *ctx, const char *what)
{
    cudaError_t e = cudaGetLastError();

    if (e == cudaSuccess)
        return SMLP_OK;
    return smlp_kernel_fail(ctx, SMLP_EDEVICE, "CUDA %s: %s (%s)", what,
                            cudaGetErrorString(e), cudaGetErrorName(e));
}

static double
attr_float(const struct smlp_kernel_ctx *ctx, const char *name, double def)
{
    double v;

    return ctx->host->attr_float(ctx->node, name, &v) == SMLP_OK ? v : def;
}

/* Sum of v over the block, the same tree every time; all threads get it. */
__device__ double
block_sum(double v, double *red)
{
    int t = threadIdx.x, s;
    double total;

    red[t] = v;
    __syncthreads();
    for (s = LN_BLOCK / 2; s > 0; s /= 2) {
        if (t < s)
            red[t] += red[t + s];
        __syncthreads();
    }
    total = red[0];
    __syncthreads(); /* red is reused by the next call */
    return total;
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
        double mean, var, rstd, s = 0.0;

        for (j = threadIdx.x; j < d; j += LN_BLOCK)
            s += xr[j];
        mean = block_sum(s, red) / (double)d;
        s = 0.0;
        for (j = threadIdx.x; j < d; j += LN_BLOCK) {
            double c = xr[j] - mean;
            s += c * c;
        }
        var = block_sum(s, red) / (double)d;
        rstd = 1.0 / sqrt(var + eps);
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
        rows, d, attr_float(ctx, "eps", 1e-6));
    return launched(ctx, "layer_norm");
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
        (float *)ctx->outputs[0]->data, n, d, attr_float(ctx, "eps", 1e-5),
        attr_float(ctx, "momentum", 0.1), ctx->training != 0);
    return launched(ctx, "batch_norm");
}

extern "C" {
const struct smlp_kernel_def smlp__norm_layer_norm_cuda = {
    sizeof(struct smlp_kernel_def), SMLP_ABI_VERSION, SMLP_DEVICE_CUDA,
    1u << SMLP_DTYPE_F32, NULL, layer_norm_run, SMLP__NORM_CPU_SCORE,
    NULL, /* backward: the op's, on the CPU */
};
const struct smlp_kernel_def smlp__norm_batch_norm_cuda = {
    sizeof(struct smlp_kernel_def), SMLP_ABI_VERSION, SMLP_DEVICE_CUDA,
    1u << SMLP_DTYPE_F32, NULL, batch_norm_run, SMLP__NORM_CPU_SCORE,
    NULL, /* backward: the op's, on the CPU */
};
}
