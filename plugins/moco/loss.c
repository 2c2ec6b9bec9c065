/*
 * loss.c - moco.loss: the symmetric contrastive loss of MoCo v3.
 *
 * q1, q2 (query branch), k1, k2 (momentum branch), each f32 [n,D] ->
 * loss f32 [] with
 *   loss     = ctr(q1, k2) + ctr(q2, k1),
 *   ctr(q,k) = 2τ·CE(q̂·k̂ᵀ/τ, labels 0..n−1)
 *            = 2τ/n · Σ_i (logsumexp_j(s_ij/τ) − s_ii/τ),  s = q̂·k̂ᵀ,
 *   x̂        = x / max(‖x‖₂, 1e-12) per row (torch.nn.functional.normalize,
 *              as moco-v3's builder.py uses),
 * attribute `tau` (τ, default 0.2, > 0).  The keys' positives are the
 * rows of the same index; the other rows of the batch are the negatives.
 * One device: moco-v3's AllGather of the keys is not part of the op
 * (with one device N = n and the labels are 0..n−1).
 *
 * Forward: the rows are normalised into the workspace (norms in double),
 * s = q̂·k̂ᵀ is one OpenBLAS sgemm [n,n], then each row's log-sum-exp is
 * taken from the row maximum in double; the row terms and both ctr are
 * summed in double in a fixed order (row order, ctr(q1,k2) first).
 *
 * Backward (g = d loss, a NULL grad_output reads as 0): with p_i =
 * softmax(s_i/τ),
 *   d s_ij = 2g/n·(p_ij − [i = j])     (the τ of 2τ cancels the 1/τ),
 *   d q̂    = d s · k̂                   (an sgemm),
 *   d q    = (d q̂ − q̂·<q̂, d q̂>) / ‖q‖  (‖q‖ >= 1e-12; below it the
 *            clamped x/1e-12 gives d q = d q̂ / 1e-12),
 * q1 from ctr(q1, k2), q2 from ctr(q2, k1).  k1 and k2 get no gradient
 * (the keys are stop-gradient in MoCo): their grad_inputs, when not
 * NULL, are filled with zeros.
 *
 * Workspace (forward and backward alike): q̂, k̂ [n,D] f32, s [n,n] f32,
 * the n norms of q in double.  The only thread use is OpenBLAS's, which
 * never splits an inner sum, so results do not depend on `threads`.
 */
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "moco.h"

/* Below this norm a row is divided by it instead (F.normalize's eps). */
#define NORM_EPS 1e-12

struct loss_priv {
    double tau;
};

/* Byte offsets of q̂, k̂, s and the norms; *total = 0 when it overflows. */
static void
loss_layout(int64_t n, int64_t d, size_t off[4], size_t *total)
{
    uint64_t nd = (uint64_t)n * (uint64_t)d, nn = (uint64_t)n * (uint64_t)n;
    size_t rows, sq;

    *total = 0;
    /* n, d <= INT_MAX (checked), so nd and nn fit 62 bits. */
    if (nd > SIZE_MAX / 8 || nn > SIZE_MAX / 8)
        return;
    rows = smlp__moco_align((size_t)nd * sizeof(float));
    sq = smlp__moco_align((size_t)nn * sizeof(float));
    if (rows > SIZE_MAX / 4 - sq)
        return;
    off[0] = 0;
    off[1] = rows;
    off[2] = 2 * rows;
    off[3] = 2 * rows + sq;
    *total = off[3] + smlp__moco_align((size_t)n * sizeof(double));
}

static int
loss_infer(struct smlp_infer_ctx *ctx)
{
    static const char *const names[4] = {"q1", "q2", "k1", "k2"};
    const struct smlp_tensor *q1;
    struct loss_priv priv = {0};
    char s[SMLP_SHAPE_STRLEN];
    size_t off[4], total;
    int rc, i;

    if ((rc = smlp_infer_attr_float(ctx, "tau", 0, 0.2, &priv.tau)) != 0)
        return rc;
    if (!(priv.tau > 0.0 && priv.tau < HUGE_VAL))
        return smlp_infer_fail(ctx, SMLP_EINVAL,
                               "attribute 'tau' = %g is invalid: expected a "
                               "finite value > 0",
                               priv.tau);
    for (i = 0; i < 4; i++)
        if ((rc = smlp_infer_check_input(ctx, i, names[i], SMLP_DTYPE_F32,
                                         2, 2)) != 0 ||
            (i > 0 && (rc = smlp_infer_check_same_shape(ctx, i, names[i], 0,
                                                        names[0])) != 0))
            return rc;
    q1 = ctx->inputs[0];
    if (q1->shape[0] < 1 || q1->shape[1] < 1)
        return smlp_infer_fail(ctx, SMLP_ESHAPE,
                               "input 0 (q1) has shape %s, expected [n,D] "
                               "with n >= 1 and D >= 1",
                               smlp_shape_str(q1, s, sizeof(s)));
    for (i = 0; i < 2; i++)
        if (q1->shape[i] > INT_MAX)
            return smlp_infer_fail(ctx, SMLP_ELIMIT,
                                   "moco.loss: size %lld exceeds the BLAS "
                                   "limit %d",
                                   (long long)q1->shape[i], INT_MAX);
    loss_layout(q1->shape[0], q1->shape[1], off, &total);
    if (total == 0)
        return smlp_infer_fail(ctx, SMLP_ELIMIT,
                               "input 0 (q1) has shape %s: the [n,n] "
                               "similarity matrix does not fit in memory",
                               smlp_shape_str(q1, s, sizeof(s)));
    smlp_infer_set_output(ctx, 0, SMLP_DTYPE_F32, 0, q1->shape);
    ctx->workspace = total;
    if (ctx->size >= offsetof(struct smlp_infer_ctx, backward_workspace) +
                         sizeof(ctx->backward_workspace))
        ctx->backward_workspace = total;
    /* Two n×n×D products (one per ctr). */
    ctx->macs = 2 * (uint64_t)q1->shape[0] * (uint64_t)q1->shape[0] *
                (uint64_t)q1->shape[1];
    return smlp_infer_set_priv(ctx, &priv, sizeof(priv));
}

/* xh[r] = x[r] / max(‖x[r]‖, NORM_EPS); norm[r] = that divisor. */
static void
normalize_rows(const float *x, int64_t n, int64_t d, float *xh,
               double *norm)
{
    int64_t r, c;

    for (r = 0; r < n; r++) {
        const float *row = x + r * d;
        double ss = 0.0, nr;
        float inv;

        for (c = 0; c < d; c++)
            ss += (double)row[c] * (double)row[c];
        nr = sqrt(ss);
        nr = nr > NORM_EPS ? nr : NORM_EPS;
        inv = (float)(1.0 / nr);
        for (c = 0; c < d; c++)
            xh[r * d + c] = row[c] * inv;
        if (norm != NULL)
            norm[r] = nr;
    }
}

/* The pieces of the workspace. */
struct loss_ws {
    float *qh, *kh, *s;
    double *qn;
};

static void
loss_ws_get(void *ws, int64_t n, int64_t d, struct loss_ws *w)
{
    size_t off[4], total;

    loss_layout(n, d, off, &total);
    w->qh = (float *)((char *)ws + off[0]);
    w->kh = (float *)((char *)ws + off[1]);
    w->s = (float *)((char *)ws + off[2]);
    w->qn = (double *)((char *)ws + off[3]);
}

/*
 * ctr(q, k) for n rows of d values.  Leaves q̂, k̂, the norms of q in w;
 * with probs, overwrites row i of w->s with softmax(s_i/τ) (as f32).
 */
static double
ctr(const float *q, const float *k, int64_t n, int64_t d, double tau,
    const struct loss_ws *w, int probs)
{
    double total = 0.0;
    int64_t i, j;

    normalize_rows(q, n, d, w->qh, w->qn);
    normalize_rows(k, n, d, w->kh, NULL);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n,
                (int)d, 1.0f, w->qh, (int)d, w->kh, (int)d, 0.0f, w->s,
                (int)n);
    for (i = 0; i < n; i++) {
        float *row = w->s + i * n;
        double max = row[0], sum = 0.0;

        for (j = 1; j < n; j++)
            if (row[j] > max)
                max = row[j];
        for (j = 0; j < n; j++)
            sum += exp(((double)row[j] - max) / tau);
        total += (max - (double)row[i]) / tau + log(sum);
        if (probs)
            for (j = 0; j < n; j++)
                row[j] = (float)(exp(((double)row[j] - max) / tau) / sum);
    }
    return 2.0 * tau * total / (double)n;
}

static int
loss_run(struct smlp_kernel_ctx *ctx)
{
    const struct loss_priv *priv = ctx->priv;
    const struct smlp_tensor *q1 = ctx->inputs[0];
    int64_t n = q1->shape[0], d = q1->shape[1];
    struct loss_ws w;
    double loss;

    loss_ws_get(ctx->workspace, n, d, &w);
    loss = ctr(q1->data, ctx->inputs[3]->data, n, d, priv->tau, &w, 0);
    loss += ctr(ctx->inputs[1]->data, ctx->inputs[2]->data, n, d, priv->tau,
                &w, 0);
    *(float *)ctx->outputs[0]->data = (float)loss;
    return SMLP_OK;
}

/* dq = d ctr(q, k) / d q, scaled by g (see the file comment). */
static void
ctr_backward(const float *q, const float *k, int64_t n, int64_t d,
             double tau, double g, const struct loss_ws *w, float *dq)
{
    float c = (float)(2.0 * g / (double)n);
    int64_t i, j;

    ctr(q, k, n, d, tau, w, 1);
    for (i = 0; i < n; i++) {
        float *row = w->s + i * n;

        for (j = 0; j < n; j++)
            row[j] = c * (row[j] - (i == j ? 1.0f : 0.0f));
    }
    /* d q̂ = d s · k̂, into dq. */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)d,
                (int)n, 1.0f, w->s, (int)n, w->kh, (int)d, 0.0f, dq, (int)d);
    for (i = 0; i < n; i++) {
        const float *qh = w->qh + i * d;
        float *dr = dq + i * d;
        double dot = 0.0, inv = 1.0 / w->qn[i];

        if (w->qn[i] <= NORM_EPS) {
            for (j = 0; j < d; j++)
                dr[j] = (float)(dr[j] * inv);
            continue;
        }
        for (j = 0; j < d; j++)
            dot += (double)qh[j] * (double)dr[j];
        for (j = 0; j < d; j++)
            dr[j] = (float)(((double)dr[j] - (double)qh[j] * dot) * inv);
    }
}

static int
loss_backward(struct smlp_backward_ctx *ctx)
{
    const struct loss_priv *priv = ctx->priv;
    const struct smlp_tensor *q1 = ctx->inputs[0];
    const struct smlp_tensor *gy = ctx->grad_outputs[0];
    int64_t n = q1->shape[0], d = q1->shape[1];
    size_t bytes = (size_t)(n * d) * sizeof(float);
    struct loss_ws w;
    int t;

    /* Keys are stop-gradient: zeros where a gradient is asked for. */
    for (t = 2; t < 4; t++)
        if (ctx->grad_inputs[t] != NULL)
            memset(ctx->grad_inputs[t]->data, 0, bytes);
    loss_ws_get(ctx->workspace, n, d, &w);
    /* q1 pairs with k2 (input 3), q2 with k1 (input 2). */
    for (t = 0; t < 2; t++) {
        struct smlp_tensor *gq = ctx->grad_inputs[t];

        if (gq == NULL)
            continue;
        if (gy == NULL) {
            memset(gq->data, 0, bytes);
            continue;
        }
        ctr_backward(ctx->inputs[t]->data, ctx->inputs[3 - t]->data, n, d,
                     priv->tau, (double)*(const float *)gy->data, &w,
                     gq->data);
    }
    return SMLP_OK;
}

static const struct smlp_kernel_def loss_cpu = {
    .size = sizeof(struct smlp_kernel_def),
    .abi = SMLP_ABI_VERSION,
    .device = SMLP_DEVICE_CPU,
    .dtype_mask = SMLP__MOCO_MASK_F32,
    .run = loss_run,
    .score = SMLP__MOCO_CPU_SCORE,
};

static const struct smlp_kernel_def *const loss_kernels[] = {&loss_cpu,
                                                             NULL};

static const struct smlp_attr_def loss_attrs[] = {
    {"tau", SMLP_ATTR_FLOAT, 0, "temperature, > 0 (default 0.2)"},
    {NULL, 0, 0, NULL},
};

const struct smlp_op_def smlp__moco_op_loss = {
    .size = sizeof(struct smlp_op_def),
    .abi = SMLP_ABI_VERSION,
    .name = "moco.loss",
    .min_inputs = 4,
    .max_inputs = 4,
    .n_outputs = 1,
    .attrs = loss_attrs,
    .infer = loss_infer,
    .kernels = loss_kernels,
    .backward = loss_backward,
    .doc = "ctr(q1,k2)+ctr(q2,k1), ctr(q,k) = 2*tau*CE(norm(q)*norm(k)^T/"
           "tau, labels 0..n-1): q1, q2, k1, k2 [n,D] -> loss [] (no "
           "gradient to k1, k2)",
};
