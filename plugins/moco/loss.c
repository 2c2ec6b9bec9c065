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
 * Intra-op tasks (smlp_parallel_for) over blocks of LOSS_ROWS rows, two
 * rounds per ctr: (1) the rows of q and of k are normalised; (2) each
 * block of rows of q forms its rows of s (a single-threaded sgemm against
 * all of k̂), their log-sum-exp terms and, in the backward, the rows of
 * d s, d q̂ = d s·k̂ (a second sgemm) and d q.  A row's values depend only
 * on its block, and the row terms are summed afterwards in row order, so
 * results do not depend on `threads`.
 *
 * Workspace (forward and backward alike): q̂, k̂ [n,D] f32, s [n,n] f32,
 * the n norms of q and the n row terms, in double.
 */
#include <cblas.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "moco.h"

/* Rows of one task (a constant: task boundaries depend on n only). */
#define LOSS_ROWS 32

/* Below this norm a row is divided by it instead (F.normalize's eps). */
#define NORM_EPS 1e-12

struct loss_priv {
    double tau;
};

static int
loss_infer(struct smlp_infer_ctx *ctx)
{
    static const char *const names[4] = {"q1", "q2", "k1", "k2"};
    const struct smlp_tensor *q1;
    struct loss_priv priv = {0};
    char s[SMLP_SHAPE_STRLEN];
    size_t off[5], total;
    int rc, i;

    if ((rc = smlp_infer_attr_float(ctx, "tau", 0, 0.2, &priv.tau)) != 0)
        return rc;
    /* The logits' spread (max - s)/tau is at most 2/tau, finite for
     * every normal tau; a subnormal one would make it inf and the loss
     * inf, where the limit is finite. */
    if (!(priv.tau >= DBL_MIN && priv.tau < HUGE_VAL))
        return smlp_infer_fail(ctx, SMLP_EINVAL,
                               "attribute 'tau' = %g is invalid: expected a "
                               "finite value > 0, at least %g (the smallest "
                               "normal double)",
                               priv.tau, DBL_MIN);
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
    smlp__moco_loss_layout(q1->shape[0], q1->shape[1], off, &total);
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

/* One ctr (or its backward) as its tasks see it. */
struct loss_ws {
    float *qh, *kh, *s;
    double *qn, *term;
    const float *q, *k;
    int64_t n, d, blocks; /* blocks of LOSS_ROWS rows */
    double tau;
    float c;  /* backward: 2g/n */
    float *dq; /* backward: d q, or NULL in the forward */
};

static void
loss_ws_get(void *ws, int64_t n, int64_t d, struct loss_ws *w)
{
    size_t off[5] = {0}, total;

    smlp__moco_loss_layout(n, d, off, &total);
    w->qh = (float *)((char *)ws + off[0]);
    w->kh = (float *)((char *)ws + off[1]);
    w->s = (float *)((char *)ws + off[2]);
    w->qn = (double *)((char *)ws + off[3]);
    w->term = (double *)((char *)ws + off[4]);
    w->n = n;
    w->d = d;
    w->blocks = (n + LOSS_ROWS - 1) / LOSS_ROWS;
}

/* Round 1: rows of q (tasks < blocks) or of k, normalised. */
static int
normalize_task(void *arg, int64_t task, int worker)
{
    const struct loss_ws *w = arg;
    int is_k = task >= w->blocks;
    int64_t r0 = (is_k ? task - w->blocks : task) * LOSS_ROWS;
    int64_t r1 = r0 + LOSS_ROWS < w->n ? r0 + LOSS_ROWS : w->n;

    (void)worker;
    if (is_k)
        normalize_rows(w->k + r0 * w->d, r1 - r0, w->d, w->kh + r0 * w->d,
                       NULL);
    else
        normalize_rows(w->q + r0 * w->d, r1 - r0, w->d, w->qh + r0 * w->d,
                       w->qn + r0);
    return 0;
}

/*
 * Round 2, rows [r0, r1) of q: s = q̂·k̂ᵀ, each row's term
 * logsumexp_j(s_ij/τ) − s_ii/τ; in the backward (dq set) then d s =
 * c·(softmax(s_i/τ) − [i = j]), d q̂ = d s·k̂ and d q (see the file
 * comment).
 */
static int
rows_task(void *arg, int64_t task, int worker)
{
    const struct loss_ws *w = arg;
    int64_t n = w->n, d = w->d, r0 = task * LOSS_ROWS, i, j;
    int64_t r1 = r0 + LOSS_ROWS < n ? r0 + LOSS_ROWS : n;
    float *s = w->s + r0 * n;

    (void)worker;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(r1 - r0),
                (int)n, (int)d, 1.0f, w->qh + r0 * d, (int)d, w->kh, (int)d,
                0.0f, s, (int)n);
    for (i = r0; i < r1; i++) {
        float *row = w->s + i * n;
        double max = row[0], sum = 0.0;

        for (j = 1; j < n; j++)
            if (row[j] > max)
                max = row[j];
        for (j = 0; j < n; j++)
            sum += exp(((double)row[j] - max) / w->tau);
        w->term[i] = (max - (double)row[i]) / w->tau + log(sum);
        if (w->dq == NULL)
            continue;
        for (j = 0; j < n; j++)
            row[j] = (float)(exp(((double)row[j] - max) / w->tau) / sum);
        for (j = 0; j < n; j++)
            row[j] = w->c * (row[j] - (i == j ? 1.0f : 0.0f));
    }
    if (w->dq == NULL)
        return 0;
    /* d q̂ = d s · k̂, into dq. */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(r1 - r0),
                (int)d, (int)n, 1.0f, s, (int)n, w->kh, (int)d, 0.0f,
                w->dq + r0 * d, (int)d);
    for (i = r0; i < r1; i++) {
        const float *qh = w->qh + i * d;
        float *dr = w->dq + i * d;
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
    return 0;
}

/*
 * ctr(q, k) for n rows of d values (dq NULL), or its gradient w.r.t. q
 * scaled by g into dq; *out gets ctr (the forward).  Returns 0 or a
 * task's status.
 */
static int
ctr(const struct smlp_host_api *host, const struct smlp_node *node,
    struct loss_ws *w, const float *q, const float *k, double g, float *dq,
    double *out)
{
    double total = 0.0;
    int64_t i;
    int rc;

    w->q = q;
    w->k = k;
    w->dq = dq;
    w->c = (float)(2.0 * g / (double)w->n);
    if ((rc = smlp_parallel_for(host, node, 2 * w->blocks, normalize_task,
                                w)) != 0 ||
        (rc = smlp_parallel_for(host, node, w->blocks, rows_task, w)) != 0)
        return rc;
    /* Row order: the serial sum. */
    for (i = 0; i < w->n; i++)
        total += w->term[i];
    if (out != NULL)
        *out = 2.0 * w->tau * total / (double)w->n;
    return 0;
}

static int
loss_run(struct smlp_kernel_ctx *ctx)
{
    const struct loss_priv *priv = ctx->priv;
    const struct smlp_tensor *q1 = ctx->inputs[0];
    int64_t n = q1->shape[0], d = q1->shape[1];
    struct loss_ws w;
    double l1, l2;
    int rc;

    loss_ws_get(ctx->workspace, n, d, &w);
    w.tau = priv->tau;
    if ((rc = ctr(ctx->host, ctx->node, &w, q1->data, ctx->inputs[3]->data,
                  0.0, NULL, &l1)) != 0 ||
        (rc = ctr(ctx->host, ctx->node, &w, ctx->inputs[1]->data,
                  ctx->inputs[2]->data, 0.0, NULL, &l2)) != 0)
        return rc;
    *(float *)ctx->outputs[0]->data = (float)(l1 + l2);
    return SMLP_OK;
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
    int t, rc;

    /* Keys are stop-gradient: zeros where a gradient is asked for. */
    for (t = 2; t < 4; t++)
        if (ctx->grad_inputs[t] != NULL)
            memset(ctx->grad_inputs[t]->data, 0, bytes);
    loss_ws_get(ctx->workspace, n, d, &w);
    w.tau = priv->tau;
    /* q1 pairs with k2 (input 3), q2 with k1 (input 2). */
    for (t = 0; t < 2; t++) {
        struct smlp_tensor *gq = ctx->grad_inputs[t];

        if (gq == NULL)
            continue;
        if (gy == NULL) {
            memset(gq->data, 0, bytes);
            continue;
        }
        if ((rc = ctr(ctx->host, ctx->node, &w, ctx->inputs[t]->data,
                      ctx->inputs[3 - t]->data,
                      (double)*(const float *)gy->data, gq->data, NULL)) !=
            0)
            return rc;
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

static const struct smlp_kernel_def *const loss_kernels[] = {
    &loss_cpu, SMLP__MOCO_CUDA(smlp__moco_loss_cuda) NULL};

static const struct smlp_attr_def loss_attrs[] = {
    {"tau", SMLP_ATTR_FLOAT, 0,
     "temperature, a normal double > 0 (default 0.2)"},
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
