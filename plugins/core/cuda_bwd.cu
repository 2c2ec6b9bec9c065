/*
 * cuda_bwd.cu - the backwards of the `core` plugin on the GPU (plugin ABI
 * 1.3: smlp_kernel_def.backward of each CUDA kernel in cuda.cu).
 *
 * Each computes what the op's CPU backward computes (the formulas are in
 * the CPU files' comments: linear.c, elementwise.c, shape.c, reduce.c,
 * patch_embed.c, matmul.c), enqueued on the session's stream with device
 * pointers everywhere, grad_outputs included (a scalar incoming gradient
 * is read on the device, never on the host).  A NULL grad_output reads as
 * zeros, a NULL grad_input is not wanted.  Products go through cuBLAS
 * (smlp_cuda_sgemm of ops/smlp_cuda.h, FP32 math, this file's own handle
 * cache); transpose and im2col are cuda.cu's; sums run in double in a
 * fixed order (a
 * thread per output, in index order), so results do not depend on timing:
 * a sum over the batch of products (linear's dW with inner > 1) is a
 * chain of products with beta = 1 in batch order.  A label out of range
 * makes the cross-entropy's gradient row NaN (the CPU fails the node; the
 * GPU cannot report it without a synchronisation).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "cuda_core.h"
#include "smlp_cuda.h"

#define BLOCK SMLP_CUDA_BLOCK
#define GRID(n) smlp_cuda_grid(n)

/* ---- helpers ------------------------------------------------------------ */

/* Zeroes every wanted gradient (no gradient reaches the node). */
static int
zero_grads(struct smlp_backward_ctx *ctx)
{
    int i, st;

    for (i = 0; i < ctx->n_inputs; i++)
        if ((st = smlp_cuda_zero_grad(ctx, i)) != SMLP_OK)
            return st;
    return SMLP_OK;
}

/* dst = src (n floats); nothing when the runtime aliased them. */
static int
copy_grad(struct smlp_backward_ctx *ctx, void *dst, const void *src,
          int64_t n)
{
    if (dst == src || n == 0)
        return SMLP_OK;
    return smlp_cuda_check(ctx,
                           cudaMemcpyAsync(dst, src, (size_t)n * sizeof(float),
                                           cudaMemcpyDeviceToDevice,
                                           smlp_cuda_stream(ctx)),
                           "copy");
}

/* The dims of x before and after `axis` (normalised). */
static void
split(const struct smlp_tensor *x, int64_t axis, int64_t *outer,
      int64_t *inner)
{
    int d;

    *outer = 1;
    *inner = 1;
    for (d = 0; d < axis; d++)
        *outer *= x->shape[d];
    for (d = (int)axis + 1; d < x->rank; d++)
        *inner *= x->shape[d];
}

/* db[j] = Σ_o Σ_k dy[(o·out + j)·inner + k] in double, o then k. */
__global__ void
k_bias_grad(float *db, const float *dy, int64_t outer, int64_t out,
            int64_t inner)
{
    int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;

    for (; j < out; j += (int64_t)gridDim.x * blockDim.x) {
        double acc = 0.0;
        int64_t o, k;

        for (o = 0; o < outer; o++)
            for (k = 0; k < inner; k++)
                acc += dy[(o * out + j) * inner + k];
        db[j] = (float)acc;
    }
}

static int
bias_grad(struct smlp_backward_ctx *ctx, float *db, const float *dy,
          int64_t outer, int64_t out, int64_t inner)
{
    if (out == 0)
        return SMLP_OK;
    k_bias_grad<<<GRID(out), BLOCK, 0, smlp_cuda_stream(ctx)>>>(
        db, dy, outer, out, inner);
    return smlp_cuda_launched(ctx, "bias gradient");
}

/* ---- core.linear -------------------------------------------------------- */

int
smlp__core_linear_bwd_cuda(struct smlp_backward_ctx *ctx)
{
    const struct smlp_tensor *x = ctx->inputs[0], *w = ctx->inputs[1];
    const struct smlp_tensor *gy = ctx->grad_outputs[0];
    struct smlp_tensor *gx = ctx->grad_inputs[0], *gw = ctx->grad_inputs[1];
    struct smlp_tensor *gb = ctx->n_inputs > 2 ? ctx->grad_inputs[2] : NULL;
    int64_t axis = smlp_cuda_attr_int(ctx, "axis", -1), outer, inner, o;
    int64_t in = w->shape[1], out = w->shape[0];
    const float *dy, *xd = (const float *)x->data;
    const float *wd = (const float *)w->data;
    int st;

    if (gy == NULL)
        return zero_grads(ctx);
    dy = (const float *)gy->data;
    if (axis < 0)
        axis += x->rank;
    split(x, axis, &outer, &inner);
    if (outer * inner * out * in == 0) {
        if ((st = zero_grads(ctx)) != SMLP_OK)
            return st;
        if (gb != NULL && outer * inner * out > 0)
            return bias_grad(ctx, (float *)gb->data, dy, outer, out, inner);
        return SMLP_OK;
    }
    if (inner == 1) {
        /* dX[outer, in] = dY[outer, out]·W;  dW = dYᵀ·X. */
        if (gx != NULL &&
            (st = smlp_cuda_sgemm(ctx, 0, 0, outer, in, out, dy, out, 0, wd,
                                  in, 0, 0.0f, (float *)gx->data, in, 0,
                                  1)) != SMLP_OK)
            return st;
        if (gw != NULL &&
            (st = smlp_cuda_sgemm(ctx, 1, 0, out, in, outer, dy, out, 0, xd,
                                  in, 0, 0.0f, (float *)gw->data, in, 0,
                                  1)) != SMLP_OK)
            return st;
    } else {
        /* Per o: dX_o[in, inner] = Wᵀ·dY_o;  dW = Σ_o dY_o·X_oᵀ. */
        if (gx != NULL &&
            (st = smlp_cuda_sgemm(ctx, 1, 0, in, inner, out, wd, in, 0, dy,
                                  inner, out * inner, 0.0f, (float *)gx->data,
                                  inner, in * inner, outer)) != SMLP_OK)
            return st;
        for (o = 0; gw != NULL && o < outer; o++)
            if ((st = smlp_cuda_sgemm(ctx, 0, 1, out, in, inner,
                                      dy + o * out * inner, inner, 0,
                                      xd + o * in * inner, inner, 0,
                                      o > 0 ? 1.0f : 0.0f, (float *)gw->data,
                                      in, 0, 1)) != SMLP_OK)
                return st;
    }
    if (gb != NULL)
        return bias_grad(ctx, (float *)gb->data, dy, outer, out, inner);
    return SMLP_OK;
}

/* ---- elementwise -------------------------------------------------------- */

/* d/dx of 0.5·x·(1 + erf(x/√2)) = Φ(x) + x·φ(x).  As the CPU's
 * smlp_gelu_erf_both, x is clamped to ±10 in the x·φ(x) term (below 1e-21
 * there), so that x = ±inf gives 1 or 0, not inf·0; a NaN stays NaN (the
 * ternaries keep it, where fminf/fmaxf would drop it). */
__global__ void
k_gelu_erf_grad(const float *x, const float *dy, float *dx, int64_t n)
{
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;

    for (; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float v = x[i];
        float cdf = 0.5f * (1.0f + erff(v * 0.70710678118654752f));
        float vc = v > 10.0f ? 10.0f : v < -10.0f ? -10.0f : v;
        float pdf = 0.39894228040143268f * expf(-0.5f * vc * vc);

        dx[i] = dy[i] * (cdf + vc * pdf);
    }
}

/* The tanh GELU's derivative, written as elementwise.c's (clamps and
 * all: accurate in both tails).  The clamps are ternaries, as there:
 * fminf/fmaxf return the other operand for a NaN, which would turn a NaN
 * x into the derivative at -20 (about 0) instead of NaN. */
__global__ void
k_gelu_tanh_grad(const float *x, const float *dy, float *dx, int64_t n)
{
    const float k = 0.79788456080286536f, c = 0.044715f;
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;

    for (; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float v = x[i] > 20.0f ? 20.0f : x[i] < -20.0f ? -20.0f : x[i];
        float u = k * (v + c * v * v * v), e, r, s;

        u = u > 40.0f ? 40.0f : u < -40.0f ? -40.0f : u;
        e = expf(2.0f * u);
        r = 1.0f / (1.0f + e);
        s = e * r;

        dx[i] = dy[i] * (s + 2.0f * v * s * r * k * (1.0f + 3.0f * c * v * v));
    }
}

__global__ void
k_relu_grad(const float *x, const float *dy, float *dx, int64_t n)
{
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;

    for (; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
}

__global__ void
k_scale_grad(const float *dy, float *dx, float alpha, int64_t n)
{
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;

    for (; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dx[i] = alpha * dy[i];
}

int
smlp__core_gelu_bwd_cuda(struct smlp_backward_ctx *ctx)
{
    struct smlp_tensor *gx = ctx->grad_inputs[0];
    int64_t n = smlp_tensor_numel(ctx->inputs[0]);
    const char *approx = "none";
    const float *x = (const float *)ctx->inputs[0]->data, *dy;

    if (gx == NULL || n == 0)
        return SMLP_OK;
    if (ctx->grad_outputs[0] == NULL)
        return zero_grads(ctx);
    dy = (const float *)ctx->grad_outputs[0]->data;
    if (ctx->host->attr_string(ctx->node, "approximate", &approx) !=
        SMLP_OK)
        approx = "none";
    if (strcmp(approx, "tanh") == 0)
        k_gelu_tanh_grad<<<GRID(n), BLOCK, 0, smlp_cuda_stream(ctx)>>>(
            x, dy, (float *)gx->data, n);
    else
        k_gelu_erf_grad<<<GRID(n), BLOCK, 0, smlp_cuda_stream(ctx)>>>(
            x, dy, (float *)gx->data, n);
    return smlp_cuda_launched(ctx, "gelu backward");
}

int
smlp__core_relu_bwd_cuda(struct smlp_backward_ctx *ctx)
{
    struct smlp_tensor *gx = ctx->grad_inputs[0];
    int64_t n = smlp_tensor_numel(ctx->inputs[0]);

    if (gx == NULL || n == 0)
        return SMLP_OK;
    if (ctx->grad_outputs[0] == NULL)
        return zero_grads(ctx);
    k_relu_grad<<<GRID(n), BLOCK, 0, smlp_cuda_stream(ctx)>>>(
        (const float *)ctx->inputs[0]->data,
        (const float *)ctx->grad_outputs[0]->data, (float *)gx->data, n);
    return smlp_cuda_launched(ctx, "relu backward");
}

/* da = db = dy. */
int
smlp__core_add_bwd_cuda(struct smlp_backward_ctx *ctx)
{
    int64_t n = smlp_tensor_numel(ctx->inputs[0]);
    int i, st;

    if (ctx->grad_outputs[0] == NULL)
        return zero_grads(ctx);
    for (i = 0; i < 2; i++)
        if (ctx->grad_inputs[i] != NULL &&
            (st = copy_grad(ctx, ctx->grad_inputs[i]->data,
                            ctx->grad_outputs[0]->data, n)) != SMLP_OK)
            return st;
    return SMLP_OK;
}

int
smlp__core_scale_bwd_cuda(struct smlp_backward_ctx *ctx)
{
    struct smlp_tensor *gx = ctx->grad_inputs[0];
    int64_t n = smlp_tensor_numel(ctx->inputs[0]);

    if (gx == NULL || n == 0)
        return SMLP_OK;
    if (ctx->grad_outputs[0] == NULL)
        return zero_grads(ctx);
    k_scale_grad<<<GRID(n), BLOCK, 0, smlp_cuda_stream(ctx)>>>(
        (const float *)ctx->grad_outputs[0]->data, (float *)gx->data,
        (float)smlp_cuda_attr_float(ctx, "alpha", 0.0), n);
    return smlp_cuda_launched(ctx, "scale backward");
}

/* ---- core.transpose and core.reshape ------------------------------------ */

/* dx = dy transposed back: dx dim perm[d] is dy dim d. */
int
smlp__core_transpose_bwd_cuda(struct smlp_backward_ctx *ctx)
{
    const struct smlp_tensor *gy = ctx->grad_outputs[0];
    struct smlp_tensor *gx = ctx->grad_inputs[0];
    struct smlp__cu_call c = smlp__cu_of(ctx);
    int64_t inv[SMLP_MAX_RANK];
    const int64_t *perm;
    size_t np = 0;
    size_t d;

    if (gx == NULL)
        return SMLP_OK;
    if (gy == NULL)
        return zero_grads(ctx);
    if (ctx->host->attr_ints(ctx->node, "perm", &perm, &np) != SMLP_OK ||
        np != (size_t)gy->rank)
        return smlp_cuda_fail(ctx, SMLP_EINVAL,
                              "attribute 'perm' is missing");
    for (d = 0; d < np; d++)
        inv[perm[d]] = (int64_t)d;
    return smlp__cu_transpose(&c, gx->data, gy->data, gy->rank, gy->shape,
                              inv);
}

int
smlp__core_reshape_bwd_cuda(struct smlp_backward_ctx *ctx)
{
    struct smlp_tensor *gx = ctx->grad_inputs[0];

    if (gx == NULL)
        return SMLP_OK;
    if (ctx->grad_outputs[0] == NULL)
        return zero_grads(ctx);
    return copy_grad(ctx, gx->data, ctx->grad_outputs[0]->data,
                     smlp_tensor_numel(gx));
}

/* ---- reductions --------------------------------------------------------- */

/* dx[o,k,i] = dy[o,i] · (1/len), the factor rounded to float first. */
__global__ void
k_mean_grad(const float *dy, float *dx, int64_t outer, int64_t len,
            int64_t inner)
{
    float f = (float)(1.0 / (double)len);
    int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;

    for (; e < outer * len * inner; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = e % inner, o = e / (len * inner);

        dx[e] = dy[o * inner + i] * f;
    }
}

int
smlp__core_mean_bwd_cuda(struct smlp_backward_ctx *ctx)
{
    const struct smlp_tensor *x = ctx->inputs[0];
    struct smlp_tensor *gx = ctx->grad_inputs[0];
    int64_t axis = smlp_cuda_attr_int(ctx, "axis", 0), outer, inner, len;

    if (gx == NULL || smlp_tensor_numel(x) == 0)
        return SMLP_OK;
    if (ctx->grad_outputs[0] == NULL)
        return zero_grads(ctx);
    if (axis < 0)
        axis += x->rank;
    split(x, axis, &outer, &inner);
    len = x->shape[axis];
    k_mean_grad<<<GRID(outer * len * inner), BLOCK, 0,
                  smlp_cuda_stream(ctx)>>>(
        (const float *)ctx->grad_outputs[0]->data, (float *)gx->data, outer,
        len, inner);
    return smlp_cuda_launched(ctx, "mean backward");
}

/*
 * A thread per row: d loss / d logits[r,j] = g/N·(p_j − (1−ε)·[j = label]
 * − ε/K), p the row's softmax from its max in double, g = *gy.
 */
__global__ void
k_sce_grad(const float *logits, const int32_t *labels, const float *gy,
           float *dx, int64_t n, int64_t k, double eps)
{
    int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, j;
    double g = (double)gy[0] / (double)n;

    for (; r < n; r += (int64_t)gridDim.x * blockDim.x) {
        const float *row = logits + r * k;
        float *drow = dx + r * k;
        double max = row[0], sum = 0.0, inv;
        int32_t lab = labels[r];

        if (lab < 0 || lab >= k) {
            for (j = 0; j < k; j++)
                drow[j] = nanf("");
            continue;
        }
        for (j = 1; j < k; j++)
            if (row[j] > max)
                max = row[j];
        for (j = 0; j < k; j++)
            sum += exp((double)row[j] - max);
        inv = 1.0 / sum;
        for (j = 0; j < k; j++)
            drow[j] = (float)(g * (exp((double)row[j] - max) * inv -
                                   eps / (double)k -
                                   (j == lab ? 1.0 - eps : 0.0)));
    }
}

int
smlp__core_sce_bwd_cuda(struct smlp_backward_ctx *ctx)
{
    const struct smlp_tensor *lt = ctx->inputs[0];
    struct smlp_tensor *gx = ctx->grad_inputs[0];
    int64_t n = lt->shape[0];

    if (gx == NULL || n == 0)
        return SMLP_OK;
    if (ctx->grad_outputs[0] == NULL)
        return zero_grads(ctx);
    k_sce_grad<<<GRID(n), BLOCK, 0, smlp_cuda_stream(ctx)>>>(
        (const float *)lt->data, (const int32_t *)ctx->inputs[1]->data,
        (const float *)ctx->grad_outputs[0]->data, (float *)gx->data, n,
        lt->shape[1], smlp_cuda_attr_float(ctx, "label_smoothing", 0.0));
    return smlp_cuda_launched(ctx, "softmax_cross_entropy backward");
}

/* ---- core.patch_embed --------------------------------------------------- */

/*
 * dW = dYᵀ·cols (im2col redone in the workspace), then dcols = dY·W in
 * the same space, scattered back to dimg; db = Σ_rows dY.  The workspace
 * is the CPU backward's (cols first), which is large enough.
 */
int
smlp__core_patch_embed_bwd_cuda(struct smlp_backward_ctx *ctx)
{
    const struct smlp_tensor *img = ctx->inputs[0], *w = ctx->inputs[1];
    const struct smlp_tensor *gyt = ctx->grad_outputs[0];
    struct smlp_tensor *gimg = ctx->grad_inputs[0], *gw = ctx->grad_inputs[1];
    struct smlp_tensor *gb = ctx->n_inputs > 2 ? ctx->grad_inputs[2] : NULL;
    int64_t nb = img->shape[0], cin = img->shape[1], h = img->shape[2];
    int64_t wid = img->shape[3], p = smlp_cuda_attr_int(ctx, "patch", 1);
    int64_t ch = w->shape[0], kdim = cin * p * p;
    int64_t rows = nb * (h / p) * (wid / p);
    struct smlp__cu_call c = smlp__cu_of(ctx);
    float *cols = (float *)ctx->workspace;
    const float *dy;
    int st;

    if (gyt == NULL || rows * ch * kdim == 0)
        if ((st = zero_grads(ctx)) != SMLP_OK)
            return st;
    if (gyt == NULL)
        return SMLP_OK;
    dy = (const float *)gyt->data;
    if (rows * ch * kdim > 0 && (gw != NULL || gimg != NULL) &&
        (cols == NULL ||
         ctx->workspace_size < (size_t)(rows * kdim) * sizeof(float)))
        return smlp_cuda_fail(ctx, SMLP_EINVAL,
                              "backward workspace of %zu bytes, need %lld",
                              ctx->workspace_size,
                              (long long)(rows * kdim * 4));
    if (rows * ch * kdim > 0 && gw != NULL) {
        if ((st = smlp__cu_im2col(&c, cols, (float *)img->data, rows, cin,
                                  h, wid, p, 0)) != SMLP_OK ||
            (st = smlp_cuda_sgemm(ctx, 1, 0, ch, kdim, rows, dy, ch, 0, cols,
                                  kdim, 0, 0.0f, (float *)gw->data, kdim, 0,
                                  1)) != SMLP_OK)
            return st;
    }
    if (rows * ch * kdim > 0 && gimg != NULL) {
        if ((st = smlp_cuda_sgemm(ctx, 0, 0, rows, kdim, ch, dy, ch, 0,
                                  (const float *)w->data, kdim, 0, 0.0f, cols,
                                  kdim, 0, 1)) != SMLP_OK)
            return st;
        if ((st = smlp__cu_im2col(&c, cols, (float *)gimg->data, rows, cin,
                                  h, wid, p, 1)) != SMLP_OK)
            return st;
    }
    if (gb != NULL && rows * ch > 0)
        return bias_grad(ctx, (float *)gb->data, dy, rows, ch, 1);
    return SMLP_OK;
}

/* ---- core.matmul -------------------------------------------------------- */

/*
 * With op(a) [m,k] and op(b) [k,n] per batch index (matmul.c):
 *   da = dy·op(b)ᵀ, or op(b)·dyᵀ with transpose_a;
 *   db = op(a)ᵀ·dy, or dyᵀ·op(a) with transpose_b.
 */
int
smlp__core_matmul_bwd_cuda(struct smlp_backward_ctx *ctx)
{
    const struct smlp_tensor *a = ctx->inputs[0], *b = ctx->inputs[1];
    struct smlp_tensor *ga = ctx->grad_inputs[0], *gb = ctx->grad_inputs[1];
    int ta = smlp_cuda_attr_int(ctx, "transpose_a", 0) != 0;
    int tb = smlp_cuda_attr_int(ctx, "transpose_b", 0) != 0;
    int r = a->rank, d, st;
    int64_t m = a->shape[r - 2 + ta], k = a->shape[r - 1 - ta];
    int64_t n = b->shape[r - 1 - tb], batch = 1;
    const float *ad = (const float *)a->data, *bd = (const float *)b->data;
    const float *dy;
    /* Stored rows' lengths: a is [m,k] or [k,m], b [k,n] or [n,k]. */
    int64_t lda = ta ? m : k, ldb = tb ? k : n;

    if (ctx->grad_outputs[0] == NULL)
        return zero_grads(ctx);
    dy = (const float *)ctx->grad_outputs[0]->data;
    for (d = 0; d < r - 2; d++)
        batch *= a->shape[d];
    if (batch * m * n == 0 || k == 0) {
        /* An empty product: the other gradients are empty sums. */
        return zero_grads(ctx);
    }
    if (ga != NULL) {
        st = ta ? smlp_cuda_sgemm(ctx, tb, 1, k, m, n, bd, ldb, k * n, dy, n,
                                  m * n, 0.0f, (float *)ga->data, m, m * k,
                                  batch)
                : smlp_cuda_sgemm(ctx, 0, !tb, m, k, n, dy, n, m * n, bd, ldb,
                                  k * n, 0.0f, (float *)ga->data, k, m * k,
                                  batch);
        if (st != SMLP_OK)
            return st;
    }
    if (gb != NULL) {
        st = tb ? smlp_cuda_sgemm(ctx, 1, ta, n, k, m, dy, n, m * n, ad, lda,
                                  m * k, 0.0f, (float *)gb->data, k, k * n,
                                  batch)
                : smlp_cuda_sgemm(ctx, !ta, 0, k, n, m, ad, lda, m * k, dy, n,
                                  m * n, 0.0f, (float *)gb->data, n, k * n,
                                  batch);
        if (st != SMLP_OK)
            return st;
    }
    return SMLP_OK;
}
