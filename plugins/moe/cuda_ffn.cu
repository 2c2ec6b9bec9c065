/*
 * cuda_ffn.cu - CUDA kernels of moe.dispatch, moe.expert_ffn and
 * moe.combine (forward and, plugin ABI 1.3, backward; f32).
 *
 * Listed after the CPU kernels in the ops' kernel tables (moe.h,
 * SMLP__MOE_CUDA).  run() is called on the runtime's loop thread with
 * device pointers and the session's stream in ctx->stream and only
 * enqueues work.  Attributes are read again from the node with the CPU
 * op's defaults (expert_ffn's ctx->priv is private to expert_ffn.c).
 *
 *   dispatch    a gather, one thread per element of buf: buf[e,m] =
 *               x[slot_item[e,m]], zero where −1.  Bit-identical to the CPU.
 *   expert_ffn  per chunk of experts: H = buf·W1ᵀ (one
 *               cublasSgemmStridedBatched over the experts of the chunk,
 *               FP32, no TF32), H = act(H + b1) in one elementwise pass,
 *               out = H·W2ᵀ (a second strided-batched product, straight
 *               into the output), then one pass adds b2 and zeroes the rows
 *               whose slot_item is −1.  H lives in the workspace the CPU
 *               declared (at least M·h floats); a chunk is as many experts
 *               as it holds (all of them when it is large enough).  Every
 *               row is computed, empty ones too (their result is then
 *               overwritten with zeros): the products stay dense.  GELU is
 *               the CPU's smlp_gelu_erf ported as a device function with
 *               the same operations in the same order and no FMA
 *               contraction (__fmul_rn/__fadd_rn), so for equal inputs it
 *               gives the same bits; the products differ from OpenBLAS by
 *               float rounding only.
 *   combine     one thread per element of y, summing the kept choices in j
 *               order in float, as y += w·row with two roundings like the
 *               CPU (no FMA).  Bit-identical to the CPU for equal inputs.
 *
 * Indices the CPU kernels check and fail on (a slot_item outside {−1} ∪
 * [0,N), an expert outside [0,E), a slot outside {−1} ∪ [0,M)) cannot be
 * checked here without a synchronisation, since they live in device
 * memory and run() only enqueues.  The kernels are bounds-safe instead:
 * an invalid index is never used to address memory; dispatch writes a
 * zero row, expert_ffn treats any negative slot_item as empty (zero row),
 * combine skips the choice.  In a graph these indices come from a gate,
 * whose outputs are always valid.
 *
 * Backwards (the CPU files' formulas, in the same orders where they sum):
 *   dispatch    dx = 0, then expert by expert dx[item] += d buf[row] (an
 *               item has one row per expert at most: no two threads meet);
 *   expert_ffn  expert by expert in the workspace's first 2·M·h floats:
 *               A = X·W1ᵀ and G = dY·W2 (cuBLAS), one pass for G ⊙=
 *               act'(A + b1) and A = act(A + b1) (empty rows zeroed),
 *               then dW2 = dYᵀ·A, dW1 = Gᵀ·X, dX = G·W1 (cuBLAS) and the
 *               bias sums in float in row order over the filled rows;
 *   combine     d out written by the one choice that points to each row,
 *               d weight a dot product in double.
 *
 * cuBLAS handles come from smlp_cuda.h's cache of this file (one per
 * stream; cuda_gate.cu has its own).
 */
#include <cuda_runtime.h>
#include <stdint.h>
#include <string.h>

#include "moe.h"
#include "smlp_cuda.h"

/* ---- moe.dispatch ------------------------------------------------------- */

__global__ void
k_dispatch(const float *x, const int32_t *si, float *buf, int64_t n,
           int64_t rows, int64_t d)
{
    int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;

    for (; idx < rows * d; idx += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = idx / d, c = idx - r * d;
        int32_t item = si[r];

        buf[idx] = item >= 0 && item < n ? x[(int64_t)item * d + c] : 0.0f;
    }
}

static int
dispatch_run(struct smlp_kernel_ctx *ctx)
{
    const struct smlp_tensor *xt = ctx->inputs[0], *st = ctx->inputs[1];
    int64_t rows = st->shape[0] * st->shape[1], d = xt->shape[1];

    if (rows * d == 0)
        return SMLP_OK;
    k_dispatch<<<smlp_cuda_grid(rows * d), SMLP_CUDA_BLOCK, 0,
                 smlp_cuda_stream(ctx)>>>(
        (const float *)xt->data, (const int32_t *)st->data,
        (float *)ctx->outputs[0]->data, xt->shape[0], rows, d);
    return smlp_cuda_launched(ctx, "moe.dispatch");
}

/* ---- moe.expert_ffn ----------------------------------------------------- */

/* smlp_erff of ops/smlp_kernel.h, operation for operation. */
__device__ static inline float
erf_cpu(float x)
{
    float x2, p, q;

    x = x > 4.0f ? 4.0f : x;
    x = x < -4.0f ? -4.0f : x;
    x2 = __fmul_rn(x, x);
    p = -2.72614225801306e-10f;
    p = __fadd_rn(__fmul_rn(p, x2), 2.77068142495902e-08f);
    p = __fadd_rn(__fmul_rn(p, x2), -2.10102402082508e-06f);
    p = __fadd_rn(__fmul_rn(p, x2), -5.69250639462346e-05f);
    p = __fadd_rn(__fmul_rn(p, x2), -7.34990630326855e-04f);
    p = __fadd_rn(__fmul_rn(p, x2), -2.95459980854025e-03f);
    p = __fadd_rn(__fmul_rn(p, x2), -1.60960333262415e-02f);
    q = -1.45660718464996e-05f;
    q = __fadd_rn(__fmul_rn(q, x2), -2.13374055278905e-04f);
    q = __fadd_rn(__fmul_rn(q, x2), -1.68282697438203e-03f);
    q = __fadd_rn(__fmul_rn(q, x2), -7.37332916720468e-03f);
    q = __fadd_rn(__fmul_rn(q, x2), -1.42647390514189e-02f);
    return __fdiv_rn(__fmul_rn(x, p), q);
}

/* smlp_gelu_erf: 0.5·x·(1 + erf(x/√2)). */
__device__ static inline float
gelu_cpu(float x)
{
    return __fmul_rn(__fmul_rn(0.5f, x),
                     __fadd_rn(1.0f, erf_cpu(__fmul_rn(x,
                                                       0.70710678118654752f))));
}

/* H[b, r, j] = act(H[b, r, j] + b1[b, j]) over nb·m·h values. */
__global__ void
k_bias_act(float *hd, const float *b1, int64_t total, int64_t m, int64_t h,
           int relu)
{
    int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;

    for (; idx < total; idx += (int64_t)gridDim.x * blockDim.x) {
        int64_t j = idx % h, b = idx / (m * h);
        float v = __fadd_rn(hd[idx], b1[b * h + j]);

        hd[idx] = relu ? (v < 0.0f ? 0.0f : v) : gelu_cpu(v);
    }
}

/* out[e, r, c] += b2[e, c], or 0 where slot_item[e, r] < 0. */
__global__ void
k_out_bias(float *out, const float *b2, const int32_t *si, int64_t total,
           int64_t m, int64_t o)
{
    int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;

    for (; idx < total; idx += (int64_t)gridDim.x * blockDim.x) {
        int64_t row = idx / o, c = idx - row * o, e = row / m;

        if (si != NULL && si[row] < 0)
            out[idx] = 0.0f;
        else
            out[idx] = __fadd_rn(out[idx], b2[e * o + c]);
    }
}

static int
ffn_run(struct smlp_kernel_ctx *ctx)
{
    const struct smlp_tensor *bt = ctx->inputs[0];
    const struct smlp_tensor *sit = smlp_cuda_input(ctx, 5);
    const float *buf = (const float *)bt->data;
    const float *w1 = (const float *)ctx->inputs[1]->data;
    const float *b1 = (const float *)ctx->inputs[2]->data;
    const float *w2 = (const float *)ctx->inputs[3]->data;
    const float *b2 = (const float *)ctx->inputs[4]->data;
    const int32_t *si = sit != NULL ? (const int32_t *)sit->data : NULL;
    float *out = (float *)ctx->outputs[0]->data, *hs;
    int64_t e = bt->shape[0], m = bt->shape[1], d = bt->shape[2];
    int64_t h = ctx->inputs[1]->shape[1], o = ctx->inputs[3]->shape[1];
    int64_t nb, e0;
    int relu, st;

    relu = strcmp(smlp_cuda_attr_string(ctx, "activation", "gelu"),
                  "relu") == 0;
    if (e * m * o == 0)
        return SMLP_OK;
    if (h == 0) {
        /* act(...)·W2ᵀ is an empty sum: out = b2 on filled rows. */
        if ((st = smlp_cuda_memset(ctx, out, 0,
                                   (size_t)(e * m * o) * sizeof(float),
                                   "memset")) != SMLP_OK)
            return st;
    } else {
        /* Experts per chunk: as many M·h blocks of H as the workspace
         * holds (the CPU declared at least one). */
        nb = (int64_t)(ctx->workspace_size / ((size_t)(m * h) *
                                              sizeof(float)));
        if (ctx->workspace == NULL || nb < 1)
            return smlp_kernel_fail(ctx, SMLP_EINVAL,
                                    "workspace of %zu bytes, need %lld",
                                    ctx->workspace_size,
                                    (long long)(m * h * 4));
        if (nb > e)
            nb = e;
        hs = (float *)ctx->workspace;
        for (e0 = 0; e0 < e; e0 += nb) {
            int64_t n = e - e0 < nb ? e - e0 : nb;

            if ((st = smlp_cuda_sgemm_xwt_batched(
                     ctx, buf + e0 * m * d, m * d, w1 + e0 * h * d, h * d,
                     hs, m * h, m, d, h, n)) != SMLP_OK)
                return st;
            k_bias_act<<<smlp_cuda_grid(n * m * h), SMLP_CUDA_BLOCK, 0,
                         smlp_cuda_stream(ctx)>>>(hs, b1 + e0 * h, n * m * h,
                                                  m, h, relu);
            if ((st = smlp_cuda_launched(ctx, "moe.expert_ffn (bias, "
                                              "activation)")) != SMLP_OK ||
                (st = smlp_cuda_sgemm_xwt_batched(
                     ctx, hs, m * h, w2 + e0 * o * h, o * h, out + e0 * m * o,
                     m * o, m, h, o, n)) != SMLP_OK)
                return st;
        }
    }
    k_out_bias<<<smlp_cuda_grid(e * m * o), SMLP_CUDA_BLOCK, 0,
                 smlp_cuda_stream(ctx)>>>(out, b2, si, e * m * o, m, o);
    return smlp_cuda_launched(ctx, "moe.expert_ffn (bias)");
}

/* ---- moe.combine -------------------------------------------------------- */

__global__ void
k_combine(const float *out, const int32_t *expert, const int32_t *slot,
          const float *weight, float *y, int64_t n, int64_t k, int64_t e,
          int64_t m, int64_t o)
{
    int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;

    for (; idx < n * o; idx += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = idx / o, c = idx - i * o, j;
        float acc = 0.0f;

        for (j = 0; j < k; j++) {
            int32_t ex = expert[i * k + j], s = slot[i * k + j];

            if (ex < 0 || ex >= e || s < 0 || s >= m)
                continue;
            acc = __fadd_rn(acc, __fmul_rn(weight[i * k + j],
                                           out[((int64_t)ex * m + s) * o +
                                               c]));
        }
        y[idx] = acc;
    }
}

static int
combine_run(struct smlp_kernel_ctx *ctx)
{
    const struct smlp_tensor *ot = ctx->inputs[0], *et = ctx->inputs[1];
    int64_t n = et->shape[0], o = ot->shape[2];

    if (n * o == 0)
        return SMLP_OK;
    k_combine<<<smlp_cuda_grid(n * o), SMLP_CUDA_BLOCK, 0,
                smlp_cuda_stream(ctx)>>>(
        (const float *)ot->data, (const int32_t *)et->data,
        (const int32_t *)ctx->inputs[2]->data,
        (const float *)ctx->inputs[3]->data, (float *)ctx->outputs[0]->data,
        n, et->shape[1], ot->shape[0], ot->shape[1], o);
    return smlp_cuda_launched(ctx, "moe.combine");
}

/* ---- backwards (plugin ABI 1.3) ----------------------------------------- */

/* dx[slot_item[e, r]] += dbuf[e, r] for the rows of one expert: an item
 * sits in at most one row per expert, so no two threads add to the same
 * element, and the experts run in order (dispatch.c's order, in float). */
__global__ void
k_dispatch_bwd(const float *dbuf, const int32_t *si, float *dx, int64_t n,
               int64_t m, int64_t d)
{
    int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;

    for (; idx < m * d; idx += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = idx / d, c = idx - r * d;
        int32_t item = si[r];

        if (item >= 0 && item < n)
            dx[(int64_t)item * d + c] =
                __fadd_rn(dx[(int64_t)item * d + c], dbuf[idx]);
    }
}

static int
dispatch_backward(struct smlp_backward_ctx *ctx)
{
    const struct smlp_tensor *xt = ctx->inputs[0], *st = ctx->inputs[1];
    const struct smlp_tensor *gy = ctx->grad_outputs[0];
    struct smlp_tensor *gx = ctx->grad_inputs[0];
    int64_t e = st->shape[0], m = st->shape[1], d = xt->shape[1], ex;
    int rc;

    if (gx == NULL)
        return SMLP_OK;
    if ((rc = smlp_cuda_zero_grad(ctx, 0)) != SMLP_OK || gy == NULL ||
        m * d == 0)
        return rc;
    for (ex = 0; ex < e; ex++) {
        k_dispatch_bwd<<<smlp_cuda_grid(m * d), SMLP_CUDA_BLOCK, 0,
                         smlp_cuda_stream(ctx)>>>(
            (const float *)gy->data + ex * m * d,
            (const int32_t *)st->data + ex * m, (float *)gx->data,
            xt->shape[0], m, d);
        if ((rc = smlp_cuda_launched(ctx, "moe.dispatch backward")) !=
            SMLP_OK)
            return rc;
    }
    return SMLP_OK;
}

/*
 * a = A + b1 (A = X·W1ᵀ in place), then G ⊙= act'(a) and A = act(a), per
 * expert_ffn.c's act_pass; rows whose slot_item is negative get zeros in
 * both (they take no part in the sums, as on the CPU).  The GELU
 * derivative is smlp_gelu_erf_both's: 0.5·(1 + erf(a/√2)) + a·φ(a), a
 * clamped to ±10 in φ.
 */
__global__ void
k_act_grad(float *a, float *g, const float *b1, const int32_t *si,
           int64_t m, int64_t h, int relu)
{
    int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;

    for (; idx < m * h; idx += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = idx / h;
        float v = __fadd_rn(a[idx], b1[idx - r * h]), xc, e1;

        if (si != NULL && si[r] < 0) {
            a[idx] = 0.0f;
            g[idx] = 0.0f;
            continue;
        }
        if (relu) {
            g[idx] = v > 0.0f ? g[idx] : 0.0f;
            a[idx] = v < 0.0f ? 0.0f : v;
            continue;
        }
        e1 = __fadd_rn(1.0f, erf_cpu(__fmul_rn(v, 0.70710678118654752f)));
        xc = fminf(fmaxf(v, -10.0f), 10.0f);
        g[idx] *= 0.5f * e1 +
                  xc * 0.39894228040143268f * expf(-0.5f * xc * xc);
        a[idx] = __fmul_rn(__fmul_rn(0.5f, v), e1);
    }
}

/* db[c] = Σ_r y[r, c] over the rows not marked empty, in float, in row
 * order (a thread per column). */
__global__ void
k_colsum(const float *y, const int32_t *si, float *db, int64_t m, int64_t n)
{
    int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, r;

    for (; c < n; c += (int64_t)gridDim.x * blockDim.x) {
        float acc = 0.0f;

        for (r = 0; r < m; r++)
            if (si == NULL || si[r] >= 0)
                acc = __fadd_rn(acc, y[r * n + c]);
        db[c] = acc;
    }
}

/*
 * Expert by expert (expert_ffn.c's formulas), in the workspace's first
 * 2·M·h floats: A = X·W1ᵀ, G = dY·W2, then act_pass; dW2 = dYᵀ·act(A),
 * db2 = Σ dY, dW1 = Gᵀ·X, db1 = Σ G, dX = G·W1.
 */
static int
ffn_backward(struct smlp_backward_ctx *ctx)
{
    const struct smlp_tensor *bt = ctx->inputs[0];
    const struct smlp_tensor *sit = smlp_cuda_input(ctx, 5);
    const struct smlp_tensor *gy = ctx->grad_outputs[0];
    const float *x = (const float *)bt->data;
    const float *w1 = (const float *)ctx->inputs[1]->data;
    const float *b1 = (const float *)ctx->inputs[2]->data;
    const float *w2 = (const float *)ctx->inputs[3]->data;
    const int32_t *si = sit != NULL ? (const int32_t *)sit->data : NULL;
    float *gp[5];
    int64_t e = bt->shape[0], m = bt->shape[1], d = bt->shape[2];
    int64_t h = ctx->inputs[1]->shape[1], o = ctx->inputs[3]->shape[1], ex;
    size_t need = 2 * smlp__moe_align((size_t)(m * h) * sizeof(float));
    float *as = (float *)ctx->workspace, *gs;
    const float *dy;
    int relu, i, rc;

    for (i = 0; i < 5; i++)
        gp[i] = ctx->grad_inputs[i] != NULL
                    ? (float *)ctx->grad_inputs[i]->data
                    : NULL;
    if (gy == NULL || e * m == 0 || h == 0) {
        /* Nothing flows, or an empty product: zeros, then db2 = Σ dY. */
        for (i = 0; i < 5; i++)
            if ((rc = smlp_cuda_zero_grad(ctx, i)) != SMLP_OK)
                return rc;
        if (gy == NULL || gp[4] == NULL || e * m == 0)
            return SMLP_OK;
        for (ex = 0; ex < e; ex++) {
            k_colsum<<<smlp_cuda_grid(o), SMLP_CUDA_BLOCK, 0,
                       smlp_cuda_stream(ctx)>>>(
                (const float *)gy->data + ex * m * o,
                si != NULL ? si + ex * m : NULL, gp[4] + ex * o, m, o);
            if ((rc = smlp_cuda_launched(ctx, "moe.expert_ffn db2")) !=
                SMLP_OK)
                return rc;
        }
        return SMLP_OK;
    }
    if (as == NULL || ctx->workspace_size < need)
        return smlp_cuda_fail(ctx, SMLP_EINVAL,
                              "backward workspace of %zu bytes, need %zu",
                              ctx->workspace_size, need);
    gs = (float *)((char *)as + need / 2);
    dy = (const float *)gy->data;
    relu = strcmp(smlp_cuda_attr_string(ctx, "activation", "gelu"),
                  "relu") == 0;
    for (ex = 0; ex < e; ex++) {
        const float *xe = x + ex * m * d, *dye = dy + ex * m * o;
        const float *w1e = w1 + ex * h * d, *w2e = w2 + ex * o * h;
        const int32_t *sie = si != NULL ? si + ex * m : NULL;

        if ((rc = smlp_cuda_sgemm_xwt(ctx, xe, w1e, as, m, d, h)) !=
                SMLP_OK ||
            (rc = smlp_cuda_sgemm(ctx, 0, 0, m, h, o, dye, o, 0, w2e, h, 0,
                                  0.0f, gs, h, 0, 1)) != SMLP_OK)
            return rc;
        k_act_grad<<<smlp_cuda_grid(m * h), SMLP_CUDA_BLOCK, 0,
                     smlp_cuda_stream(ctx)>>>(as, gs, b1 + ex * h, sie, m, h,
                                              relu);
        if ((rc = smlp_cuda_launched(ctx, "moe.expert_ffn act'")) !=
            SMLP_OK)
            return rc;
        if (gp[3] != NULL &&
            (rc = smlp_cuda_sgemm(ctx, 1, 0, o, h, m, dye, o, 0, as, h, 0,
                                  0.0f, gp[3] + ex * o * h, h, 0, 1)) !=
                SMLP_OK)
            return rc;
        if (gp[1] != NULL &&
            (rc = smlp_cuda_sgemm(ctx, 1, 0, h, d, m, gs, h, 0, xe, d, 0,
                                  0.0f, gp[1] + ex * h * d, d, 0, 1)) !=
                SMLP_OK)
            return rc;
        if (gp[0] != NULL &&
            (rc = smlp_cuda_sgemm(ctx, 0, 0, m, d, h, gs, h, 0, w1e, d, 0,
                                  0.0f, gp[0] + ex * m * d, d, 0, 1)) !=
                SMLP_OK)
            return rc;
        if (gp[4] != NULL)
            k_colsum<<<smlp_cuda_grid(o), SMLP_CUDA_BLOCK, 0,
                       smlp_cuda_stream(ctx)>>>(dye, sie, gp[4] + ex * o, m,
                                                o);
        if (gp[2] != NULL)
            k_colsum<<<smlp_cuda_grid(h), SMLP_CUDA_BLOCK, 0,
                       smlp_cuda_stream(ctx)>>>(gs, sie, gp[2] + ex * h, m,
                                                h);
        if ((rc = smlp_cuda_launched(ctx, "moe.expert_ffn bias grads")) !=
            SMLP_OK)
            return rc;
    }
    return SMLP_OK;
}

/*
 * d out[e, s] = weight·dy[n] for the kept choice (n, j) that points to
 * (e, s) (one at most: a slot holds one item); a thread per element of
 * the choices' rows.  d out is zeroed first (rows nobody points to).
 */
__global__ void
k_combine_dout(const float *dy, const int32_t *expert, const int32_t *slot,
               const float *weight, float *dout, int64_t n, int64_t k,
               int64_t e, int64_t m, int64_t o)
{
    int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;

    for (; idx < n * k * o; idx += (int64_t)gridDim.x * blockDim.x) {
        int64_t ch = idx / o, c = idx - ch * o, i = ch / k;
        int32_t ex = expert[ch], s = slot[ch];

        if (ex < 0 || ex >= e || s < 0 || s >= m)
            continue;
        dout[((int64_t)ex * m + s) * o + c] =
            __fmul_rn(weight[ch], dy[i * o + c]);
    }
}

/* d weight[n, j] = <out[expert, slot], dy[n]> in double, column order; 0
 * for a dropped choice.  A thread per choice. */
__global__ void
k_combine_dw(const float *out, const float *dy, const int32_t *expert,
             const int32_t *slot, float *dw, int64_t n, int64_t k, int64_t e,
             int64_t m, int64_t o)
{
    int64_t ch = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, c;

    for (; ch < n * k; ch += (int64_t)gridDim.x * blockDim.x) {
        int32_t ex = expert[ch], s = slot[ch];
        const float *row, *g = dy + (ch / k) * o;
        double acc = 0.0;

        if (ex < 0 || ex >= e || s < 0 || s >= m) {
            dw[ch] = 0.0f;
            continue;
        }
        row = out + ((int64_t)ex * m + s) * o;
        for (c = 0; c < o; c++)
            acc += (double)row[c] * (double)g[c];
        dw[ch] = (float)acc;
    }
}

static int
combine_backward(struct smlp_backward_ctx *ctx)
{
    const struct smlp_tensor *ot = ctx->inputs[0], *et = ctx->inputs[1];
    const struct smlp_tensor *gy = ctx->grad_outputs[0];
    struct smlp_tensor *gout = ctx->grad_inputs[0], *gw = ctx->grad_inputs[3];
    int64_t n = et->shape[0], k = et->shape[1], o = ot->shape[2];
    int64_t e = ot->shape[0], m = ot->shape[1];
    const int32_t *ex = (const int32_t *)et->data;
    const int32_t *sl = (const int32_t *)ctx->inputs[2]->data;
    int rc;

    if ((rc = smlp_cuda_zero_grad(ctx, 0)) != SMLP_OK ||
        (rc = smlp_cuda_zero_grad(ctx, 3)) != SMLP_OK || gy == NULL)
        return rc;
    if (gout != NULL && n * k * o > 0) {
        k_combine_dout<<<smlp_cuda_grid(n * k * o), SMLP_CUDA_BLOCK, 0,
                         smlp_cuda_stream(ctx)>>>(
            (const float *)gy->data, ex, sl,
            (const float *)ctx->inputs[3]->data, (float *)gout->data, n, k,
            e, m, o);
        if ((rc = smlp_cuda_launched(ctx, "moe.combine d out")) != SMLP_OK)
            return rc;
    }
    if (gw != NULL && n * k > 0) {
        k_combine_dw<<<smlp_cuda_grid(n * k), SMLP_CUDA_BLOCK, 0,
                       smlp_cuda_stream(ctx)>>>(
            (const float *)ot->data, (const float *)gy->data, ex, sl,
            (float *)gw->data, n, k, e, m, o);
        return smlp_cuda_launched(ctx, "moe.combine d weight");
    }
    return SMLP_OK;
}

/* ---- definitions -------------------------------------------------------- */

#define CUDA_KERNEL(var, fn, bwd)                                            \
    const struct smlp_kernel_def var = {                                     \
        sizeof(struct smlp_kernel_def),                                      \
        SMLP_ABI_VERSION,                                                    \
        SMLP_DEVICE_CUDA,                                                    \
        SMLP__MOE_MASK_F32,                                                  \
        NULL,                                                                \
        fn,                                                                  \
        SMLP__MOE_CPU_SCORE,                                                 \
        bwd, /* the backward on the GPU (ABI 1.3) */                         \
    }

extern "C" {
CUDA_KERNEL(smlp__moe_dispatch_cuda, dispatch_run, dispatch_backward);
CUDA_KERNEL(smlp__moe_expert_ffn_cuda, ffn_run, ffn_backward);
CUDA_KERNEL(smlp__moe_combine_cuda, combine_run, combine_backward);
}
