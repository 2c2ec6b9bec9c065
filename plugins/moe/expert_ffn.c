/*
 * expert_ffn.c - moe.expert_ffn: one two-layer MLP per expert.
 *
 * buf [E,M,d], W1 [E,h,d], b1 [E,h], W2 [E,o,h], b2 [E,o], slot_item i32
 * [E,M] (optional) -> out [E,M,o]; per expert e:
 *   out_e = act(buf_e·W1_eᵀ + b1_e)·W2_eᵀ + b2_e,
 * act = exact GELU (0.5·x·(1 + erf(x/√2)), smlp_gelu_erf, as core.gelu)
 * or ReLU (attribute `activation`).
 *
 * Without slot_item every one of the M rows is computed.  With it, the
 * rows of expert e that hold an item (slot_item != −1) are gathered into a
 * contiguous workspace block X [n_e, d]; one sgemm gives H [n_e, h], bias
 * and activation are applied in one pass, a second sgemm gives Y [n_e, o],
 * the bias b2 is added and the rows are scattered back; rows marked −1 are
 * written as zeros and cost nothing.  The workspace is sized for the worst
 * case (n_e = M): M·(d + h + o) floats with slot_item, M·h without.
 *
 * Reported MACs are E·M·(d·h + h·o), the upper bound of what is issued
 * (every row filled); with slot_item the kernel issues Σ_e n_e·(d·h + h·o). *
 * Backward (slot_item gets no gradient), per expert on the same rows as
 * the forward (the filled rows gathered, or all M), with dY the rows of
 * d out and A = X·W1ᵀ + b1 the pre-activation, recomputed by one sgemm
 * into the backward workspace:
 *   dW2 = dYᵀ·act(A),  db2 = Σ_rows dY,
 *   G   = (dY·W2) ⊙ act'(A),
 *   dW1 = Gᵀ·X,  db1 = Σ_rows G,  dX = G·W1,
 * with act' the derivative of the exact GELU (Φ(a) + a·φ(a), Φ through
 * smlp_erff as in the forward) or of ReLU (1 where a > 0, else 0, as
 * PyTorch).  Rows marked −1 get a zero d buf and contribute nothing.
 * Bias sums run in float in row order; the products are OpenBLAS sgemm
 * calls (which split rows and columns, never the inner sum, across BLAS
 * threads), so results do not depend on `threads`.  The backward
 * workspace holds X [M,d], A [M,h], G [M,h], dY [M,o] with slot_item, and
 * A, G without (X and dY are then read in place).
 */
#include <cblas.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "moe.h"

struct ffn_priv {
    int relu;
};

/* The ws pieces: X [M,d], H [M,h], Y [M,o] (offsets in bytes). */
static void
ffn_layout(int64_t m, int64_t d, int64_t h, int64_t o, int gathered,
           size_t *hoff, size_t *yoff, size_t *total)
{
    size_t xs = gathered ? smlp__moe_align((size_t)(m * d) * sizeof(float))
                         : 0;
    size_t hs = smlp__moe_align((size_t)(m * h) * sizeof(float));
    size_t ys = gathered ? smlp__moe_align((size_t)(m * o) * sizeof(float))
                         : 0;

    *hoff = xs;
    *yoff = xs + hs;
    *total = xs + hs + ys;
}

/* The backward's pieces: X [M,d], A [M,h], G [M,h], dY [M,o] (offsets in
 * bytes; X and dY only when gathered). */
static void
ffn_backward_layout(int64_t m, int64_t d, int64_t h, int64_t o, int gathered,
                    size_t off[4], size_t *total)
{
    size_t xs = gathered ? smlp__moe_align((size_t)(m * d) * sizeof(float))
                         : 0;
    size_t hs = smlp__moe_align((size_t)(m * h) * sizeof(float));

    off[0] = 0;
    off[1] = xs;
    off[2] = xs + hs;
    off[3] = xs + 2 * hs;
    *total = off[3] + (gathered ? smlp__moe_align((size_t)(m * o) *
                                                  sizeof(float))
                                : 0);
}

static int
ffn_infer(struct smlp_infer_ctx *ctx)
{
    static const char *const acts[] = {"gelu", "relu"};
    const struct smlp_tensor *buf, *w1, *w2;
    struct ffn_priv priv = {0};
    const char *act;
    int64_t e, m, d, h, o, want[3], dims[4];
    size_t hoff, yoff, total, boff[4];
    int rc, gathered;

    if ((rc = smlp_infer_attr_string(ctx, "activation", 0, "gelu", &act)) !=
        0)
        return rc;
    if (strcmp(act, acts[0]) == 0)
        priv.relu = 0;
    else if (strcmp(act, acts[1]) == 0)
        priv.relu = 1;
    else
        return smlp_infer_fail(ctx, SMLP_EINVAL,
                               "attribute 'activation' = '%s' is invalid: "
                               "expected 'gelu' or 'relu'",
                               act);
    if ((rc = smlp_infer_check_input(ctx, 0, "buf", SMLP_DTYPE_F32, 3, 3)) !=
            0 ||
        (rc = smlp_infer_check_input(ctx, 1, "W1", SMLP_DTYPE_F32, 3, 3)) !=
            0 ||
        (rc = smlp_infer_check_input(ctx, 2, "b1", SMLP_DTYPE_F32, 2, 2)) !=
            0 ||
        (rc = smlp_infer_check_input(ctx, 3, "W2", SMLP_DTYPE_F32, 3, 3)) !=
            0 ||
        (rc = smlp_infer_check_input(ctx, 4, "b2", SMLP_DTYPE_F32, 2, 2)) !=
            0)
        return rc;
    buf = ctx->inputs[0];
    w1 = ctx->inputs[1];
    w2 = ctx->inputs[3];
    e = buf->shape[0];
    m = buf->shape[1];
    d = buf->shape[2];
    h = w1->shape[1];
    o = w2->shape[1];
    want[0] = e;
    want[1] = h;
    want[2] = d;
    if ((rc = smlp__moe_check_shape(ctx, 1, "W1", 3, want,
                                    "[E,h,d] with E, d of input 0 (buf) "
                                    "[E,M,d]")) != 0)
        return rc;
    if ((rc = smlp__moe_check_shape(ctx, 2, "b1", 2, want,
                                    "[E,h] with h = dim 1 of input 1 (W1)")) !=
        0)
        return rc;
    want[1] = o;
    want[2] = h;
    if ((rc = smlp__moe_check_shape(ctx, 3, "W2", 3, want,
                                    "[E,o,h] with h = dim 1 of input 1 "
                                    "(W1)")) != 0 ||
        (rc = smlp__moe_check_shape(ctx, 4, "b2", 2, want,
                                    "[E,o] with o = dim 1 of input 3 (W2)")) !=
            0)
        return rc;
    gathered = ctx->n_inputs > 5 && ctx->inputs[5] != NULL;
    if (gathered) {
        if ((rc = smlp_infer_check_input(ctx, 5, "slot_item", SMLP_DTYPE_I32,
                                         2, 2)) != 0)
            return rc;
        want[0] = e;
        want[1] = m;
        if ((rc = smlp__moe_check_shape(ctx, 5, "slot_item", 2, want,
                                        "[E,M] like dims 0, 1 of input 0 "
                                        "(buf)")) != 0)
            return rc;
    }
    dims[0] = m;
    dims[1] = d;
    dims[2] = h;
    dims[3] = o;
    if ((rc = smlp__moe_check_blas_dims(ctx, "moe.expert_ffn", 4, dims)) !=
        0)
        return rc;
    want[0] = e;
    want[1] = m;
    want[2] = o;
    smlp_infer_set_output(ctx, 0, SMLP_DTYPE_F32, 3, want);
    ffn_layout(m, d, h, o, gathered, &hoff, &yoff, &total);
    ctx->workspace = total;
    ffn_backward_layout(m, d, h, o, gathered, boff, &total);
    if (ctx->size >= offsetof(struct smlp_infer_ctx, backward_workspace) +
                        sizeof(ctx->backward_workspace))
        ctx->backward_workspace = total;
    ctx->macs = (uint64_t)e * (uint64_t)m *
                ((uint64_t)d * (uint64_t)h + (uint64_t)h * (uint64_t)o);
    return smlp_infer_set_priv(ctx, &priv, sizeof(priv));
}

/* C [rows, cols] = A [rows, inner] · Bᵀ (B [cols, inner]). */
static void
gemm_nt(int64_t rows, int64_t cols, int64_t inner, const float *a,
        const float *b, float *c)
{
    if (rows == 0 || cols == 0)
        return;
    if (inner == 0) {
        memset(c, 0, (size_t)(rows * cols) * sizeof(float));
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)cols,
                (int)inner, 1.0f, a, (int)inner, b, (int)inner, 0.0f, c,
                (int)cols);
}

/* H = act(H + b) over rows of h values, in one pass. */
SMLP_VECTOR_CLONES static void
bias_act(float *hd, const float *b, int64_t rows, int64_t h, int relu)
{
    int64_t r, j;

    for (r = 0; r < rows; r++) {
        float *row = hd + r * h;

        if (relu)
            for (j = 0; j < h; j++) {
                float v = row[j] + b[j];
                row[j] = v > 0.0f ? v : 0.0f;
            }
        else
            for (j = 0; j < h; j++)
                row[j] = smlp_gelu_erf(row[j] + b[j]);
    }
}

/* Y += b over rows of o values. */
static void
add_bias(float *y, const float *b, int64_t rows, int64_t o)
{
    int64_t r, j;

    for (r = 0; r < rows; r++)
        for (j = 0; j < o; j++)
            y[r * o + j] += b[j];
}

static int
ffn_run(struct smlp_kernel_ctx *ctx)
{
    const struct ffn_priv *priv = ctx->priv;
    const struct smlp_tensor *bt = ctx->inputs[0];
    const float *buf = bt->data, *w1 = ctx->inputs[1]->data;
    const float *b1 = ctx->inputs[2]->data, *w2 = ctx->inputs[3]->data;
    const float *b2 = ctx->inputs[4]->data;
    const int32_t *si = ctx->n_inputs > 5 && ctx->inputs[5] != NULL
                            ? ctx->inputs[5]->data
                            : NULL;
    float *out = ctx->outputs[0]->data;
    int64_t e = bt->shape[0], m = bt->shape[1], d = bt->shape[2];
    int64_t h = ctx->inputs[1]->shape[1], o = ctx->inputs[3]->shape[1];
    int64_t ex, r, n;
    size_t hoff, yoff, total;
    float *xs, *hs, *ys;

    ffn_layout(m, d, h, o, si != NULL, &hoff, &yoff, &total);
    xs = (float *)ctx->workspace;
    hs = (float *)((char *)ctx->workspace + hoff);
    ys = (float *)((char *)ctx->workspace + yoff);
    for (ex = 0; ex < e; ex++) {
        const float *be = buf + ex * m * d, *src = be;
        const float *w1e = w1 + ex * h * d, *w2e = w2 + ex * o * h;
        const int32_t *sie = si != NULL ? si + ex * m : NULL;
        float *oe = out + ex * m * o, *dst = oe;

        n = m;
        if (sie != NULL) {
            for (r = 0, n = 0; r < m; r++) {
                if (sie[r] < -1)
                    return smlp_kernel_fail(
                        ctx, SMLP_EINVAL,
                        "input 5 (slot_item)[%lld,%lld] = %d is invalid: "
                        "expected -1 (empty row) or an item index >= 0",
                        (long long)ex, (long long)r, (int)sie[r]);
                if (sie[r] != -1)
                    memcpy(xs + (n++) * d, be + r * d,
                           (size_t)d * sizeof(float));
            }
            src = xs;
            dst = ys;
        }
        if (n > 0) {
            gemm_nt(n, h, d, src, w1e, hs);
            bias_act(hs, b1 + ex * h, n, h, priv->relu);
            gemm_nt(n, o, h, hs, w2e, dst);
            add_bias(dst, b2 + ex * o, n, o);
        }
        if (sie == NULL)
            continue;
        for (r = 0, n = 0; r < m; r++) {
            if (sie[r] == -1)
                memset(oe + r * o, 0, (size_t)o * sizeof(float));
            else
                memcpy(oe + r * o, ys + (n++) * o,
                       (size_t)o * sizeof(float));
        }
    }
    return SMLP_OK;
}

/* ---- backward ----------------------------------------------------------- */

/* C [rows, cols] = op(A)·B, B [inner, cols]; A is [rows, inner], or
 * [inner, rows] read transposed when trans_a.  C = 0 when inner is 0. */
static void
gemm_xn(int trans_a, int64_t rows, int64_t cols, int64_t inner,
        const float *a, const float *b, float *c)
{
    if (rows == 0 || cols == 0)
        return;
    if (inner == 0) {
        memset(c, 0, (size_t)(rows * cols) * sizeof(float));
        return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                CblasNoTrans, (int)rows, (int)cols, (int)inner, 1.0f, a,
                trans_a ? (int)rows : (int)inner, b, (int)cols, 0.0f, c,
                (int)cols);
}

/* dst[j] = Σ_r src[r, j] over rows of n values, in row order. */
static void
column_sums(const float *src, int64_t rows, int64_t n, float *dst)
{
    int64_t r, j;

    memset(dst, 0, (size_t)n * sizeof(float));
    for (r = 0; r < rows; r++)
        for (j = 0; j < n; j++)
            dst[j] += src[r * n + j];
}

/* dst = act(src) elementwise over n values. */
SMLP_VECTOR_CLONES static void
act_copy(const float *src, float *dst, int64_t n, int relu)
{
    int64_t i;

    if (relu)
        for (i = 0; i < n; i++)
            dst[i] = src[i] > 0.0f ? src[i] : 0.0f;
    else
        for (i = 0; i < n; i++)
            dst[i] = smlp_gelu_erf(src[i]);
}

/* g *= act'(a) elementwise over n values: ReLU' = [a > 0]; GELU' =
 * Φ(a) + a·φ(a) with Φ(a) = ½(1 + erf(a/√2)), φ(a) = e^(−a²/2)/√(2π). */
SMLP_VECTOR_CLONES static void
act_grad(float *g, const float *a, int64_t n, int relu)
{
    int64_t i;

    if (relu)
        for (i = 0; i < n; i++)
            g[i] = a[i] > 0.0f ? g[i] : 0.0f;
    else
        for (i = 0; i < n; i++) {
            float x = a[i];
            float cdf = 0.5f * (1.0f + smlp_erff(x * 0.70710678118654752f));
            float pdf = 0.39894228040143268f * expf(-0.5f * x * x);

            g[i] *= cdf + x * pdf;
        }
}

/* Zeroes the gradients of expert ex that are wanted (no rows or no
 * gradient reaching out). */
static void
ffn_zero_expert(float *const dp[5], int64_t ex, const int64_t sz[5])
{
    int i;

    for (i = 0; i < 5; i++)
        if (dp[i] != NULL)
            memset(dp[i] + ex * sz[i], 0, (size_t)sz[i] * sizeof(float));
}

static int
ffn_backward(struct smlp_backward_ctx *ctx)
{
    const struct ffn_priv *priv = ctx->priv;
    const struct smlp_tensor *bt = ctx->inputs[0];
    const float *buf = bt->data, *w1 = ctx->inputs[1]->data;
    const float *b1 = ctx->inputs[2]->data, *w2 = ctx->inputs[3]->data;
    const int32_t *si = ctx->n_inputs > 5 && ctx->inputs[5] != NULL
                            ? ctx->inputs[5]->data
                            : NULL;
    const float *dout = ctx->grad_outputs[0] != NULL
                            ? ctx->grad_outputs[0]->data
                            : NULL;
    int64_t e = bt->shape[0], m = bt->shape[1], d = bt->shape[2];
    int64_t h = ctx->inputs[1]->shape[1], o = ctx->inputs[3]->shape[1];
    /* Per expert sizes of buf, W1, b1, W2, b2 (and of their gradients). */
    const int64_t sz[5] = {m * d, h * d, h, o * h, o};
    float *dp[5];
    int64_t ex, r, n;
    size_t off[4], total;
    float *xs, *as, *gs, *dys;
    int i, need_g;

    for (i = 0; i < 5; i++)
        dp[i] = ctx->grad_inputs[i] != NULL ? ctx->grad_inputs[i]->data
                                            : NULL;
    if (dp[0] == NULL && dp[1] == NULL && dp[2] == NULL && dp[3] == NULL &&
        dp[4] == NULL)
        return SMLP_OK;
    for (r = 0; si != NULL && r < e * m; r++)
        if (si[r] < -1)
            return smlp__moe_backward_fail(
                ctx, SMLP_EINVAL,
                "input 5 (slot_item)[%lld,%lld] = %d is invalid: expected "
                "-1 (empty row) or an item index >= 0",
                (long long)(r / m), (long long)(r % m), (int)si[r]);
    need_g = dp[0] != NULL || dp[1] != NULL || dp[2] != NULL;
    ffn_backward_layout(m, d, h, o, si != NULL, off, &total);
    xs = (float *)((char *)ctx->workspace + off[0]);
    as = (float *)((char *)ctx->workspace + off[1]);
    gs = (float *)((char *)ctx->workspace + off[2]);
    dys = (float *)((char *)ctx->workspace + off[3]);
    for (ex = 0; ex < e; ex++) {
        const float *be = buf + ex * m * d, *x = be, *dy;
        const float *w1e = w1 + ex * h * d, *w2e = w2 + ex * o * h;
        const int32_t *sie = si != NULL ? si + ex * m : NULL;
        float *dxe = dp[0] != NULL ? dp[0] + ex * m * d : NULL;
        float *dx = dxe;

        n = m;
        dy = dout != NULL ? dout + ex * m * o : NULL;
        if (sie != NULL && dout != NULL) {
            for (r = 0, n = 0; r < m; r++)
                if (sie[r] != -1) {
                    memcpy(xs + n * d, be + r * d, (size_t)d * sizeof(float));
                    memcpy(dys + n * o, dy + r * o,
                           (size_t)o * sizeof(float));
                    n++;
                }
            x = xs;
            dy = dys;
            dx = dxe != NULL ? xs : NULL; /* X is dead once dW1 is formed */
        }
        if (dy == NULL || n == 0) {
            ffn_zero_expert(dp, ex, sz);
            continue;
        }
        /* A = X·W1ᵀ + b1, the pre-activation. */
        gemm_nt(n, h, d, x, w1e, as);
        add_bias(as, b1 + ex * h, n, h);
        if (dp[3] != NULL) {
            act_copy(as, gs, n * h, priv->relu);
            gemm_xn(1, o, h, n, dy, gs, dp[3] + ex * o * h);
        }
        if (dp[4] != NULL)
            column_sums(dy, n, o, dp[4] + ex * o);
        if (!need_g)
            continue;
        gemm_xn(0, n, h, o, dy, w2e, gs);
        act_grad(gs, as, n * h, priv->relu);
        if (dp[2] != NULL)
            column_sums(gs, n, h, dp[2] + ex * h);
        if (dp[1] != NULL)
            gemm_xn(1, h, d, n, gs, x, dp[1] + ex * h * d);
        if (dx == NULL)
            continue;
        gemm_xn(0, n, d, h, gs, w1e, dx);
        if (sie == NULL)
            continue;
        for (r = 0, n = 0; r < m; r++) {
            if (sie[r] == -1)
                memset(dxe + r * d, 0, (size_t)d * sizeof(float));
            else
                memcpy(dxe + r * d, xs + (n++) * d,
                       (size_t)d * sizeof(float));
        }
    }
    return SMLP_OK;
}

static const struct smlp_kernel_def ffn_cpu = {
    .size = sizeof(struct smlp_kernel_def),
    .abi = SMLP_ABI_VERSION,
    .device = SMLP_DEVICE_CPU,
    .dtype_mask = SMLP__MOE_MASK_F32,
    .run = ffn_run,
    .score = SMLP__MOE_CPU_SCORE,
};

static const struct smlp_kernel_def *const ffn_kernels[] = {
    &ffn_cpu, SMLP__MOE_CUDA(smlp__moe_expert_ffn_cuda) NULL};

static const struct smlp_attr_def ffn_attrs[] = {
    {"activation", SMLP_ATTR_STRING, 0,
     "'gelu' (exact erf GELU, default) or 'relu'"},
    {NULL, 0, 0, NULL},
};

const struct smlp_op_def smlp__moe_op_expert_ffn = {
    .size = sizeof(struct smlp_op_def),
    .abi = SMLP_ABI_VERSION,
    .name = "moe.expert_ffn",
    .min_inputs = 5,
    .max_inputs = 6,
    .n_outputs = 1,
    .attrs = ffn_attrs,
    .infer = ffn_infer,
    .kernels = ffn_kernels,
    .backward = ffn_backward,
    .doc = "per expert act(buf*W1^T+b1)*W2^T+b2: buf [E,M,d], W1 [E,h,d], "
           "b1 [E,h], W2 [E,o,h], b2 [E,o], slot_item i32 [E,M] (optional: "
           "only filled rows computed, -1 rows zero) -> [E,M,o]",
};
