/*
 * gate_backward.c - the backward of the gates of the `moe` plugin.
 *
 * moe.gate.topk, .importance and .per_image.  The routing decisions
 * (output 0 expert, 1 slot, 3 slot_item, 5 load, and which item goes
 * first) are piecewise constant in x and Wg and get no gradient; the
 * backward reads them from the forward's outputs.  Gradient flows from
 * output 2 (weight) and output 4 (aux) through the router logits: with R
 * routing rows (items, or images of T items for per_image), src the rows
 * (x, or the image means), zc = src·Wgᵀ the clean logits, zn = zc + the
 * seeded noise (training with noise_std > 0; the same draw as the
 * forward's, from seed, node name and step; else zn = zc), p =
 * softmax(zn) and pc = softmax(zc):
 *
 *   weight, normalize none: w = p[r, e] of a kept choice, so dp[r, e] +=
 *     dw; topk: w_j = p_j / S with S the sum of the item's kept p, so
 *     dp_j += (dw_j - Σ_l dw_l·w_l) / S.  Dropped choices (w = 0) and
 *     items whose kept p sum to 0 give nothing.
 *   aux (training only; in inference the output is the constant 0), per
 *     group of R_g rows, c = d aux · aux_weight / groups:
 *     vmoe importance: ½·CV²(Imp), Imp_e = Σ_r pc[r, e]: dpc[r, e] +=
 *       c·½·∂CV²/∂Imp_e, with ∂CV²(v)/∂v_e = 2/(n·μ²)·(v_e − μ − var/μ)
 *       (population var, n = E; 0 when μ = 0, as the forward's CV²);
 *     vmoe load (only when noisy: the forward has no load term without
 *       noise): ½·CV²(Load), Load_e = mean_r Φ((zc[r, e] − t_r)/σ) with
 *       t_r = zn[r, e*] the k-th largest noisy logit of row r.  Both the
 *       clean logit and the threshold are differentiated (as V-MoE's
 *       reference does): with u = (t_r − zc[r, e])/σ,
 *         dzc[r, e]  += g_e·φ(u)/(σ·R_g),
 *         dzc[r, e*] −= Σ_e g_e·φ(u)/(σ·R_g)   (t_r moves with zc[r, e*]),
 *       g = c·½·∂CV²/∂Load; which expert is e* is a routing decision
 *       (constant), and the noise itself is a constant draw;
 *     switch: E·Σ_e f_e·P_e, P_e = mean_r pc[r, e] (the clean softmax,
 *       as MODELS.md §0.5 and DeepSpeed's top-1 gate), f_e the share of
 *       (noisy) first choices (a count: constant): dpc[r, e] += c·E·f_e /
 *       R_g;
 *     per_image superclass: aux_weight·mean_b CE(zc[b], label_b):
 *       dzc[b, e] += d aux · aux_weight / R · (pc[b, e] − [e = label_b]).
 *   dzc = the softmax backward of dp, (dp_e − <p, dp>)·p_e per row, plus
 *     the same of dpc with pc when noisy (dzn = dzc: the noise is
 *     additive), plus the load and CE terms;
 *   dWg = dzcᵀ·src and dsrc = dzc·Wg (two sgemm); per_image spreads
 *     dsrc/T to the image's T items.
 *
 * Everything is recomputed from the inputs in the backward workspace
 * (smlp__moe_gate_backward_size), with the forward's own functions on the
 * forward's row blocks, so zc, p and the routing thresholds are the
 * forward's bit for bit.  The gradients of p and of the logits accumulate
 * in double in a fixed order (items in index order, rows then experts).
 * Intra-op tasks (smlp_parallel_for) in three rounds, boundaries fixed by
 * the shapes: (1) blocks of routing rows recompute the router and add d
 * weight of their items (an image's items are in its row's block); (2)
 * blocks of whole groups add the aux terms (each group's sums are its
 * own), run the softmax backwards and write d logits as f32; (3) column
 * blocks of dWg (a sum over all rows, by one task per element) and row
 * blocks of d x.  Each element is written by one task in the serial
 * order, and the products are single-threaded sgemm calls inside tasks,
 * so nothing depends on `threads`.
 *
 * moe.gate.hash: no trainable input and a constant weight (1 or 0): its
 * backward writes zeros to d x when asked, so that the runtime can pass
 * through it.
 */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "moe.h"

/* Reserves count·size bytes at *off (aligned) as *field; -1 on overflow. */
static int
take(size_t *off, size_t *field, int64_t count, size_t size)
{
    size_t bytes;

    if (count < 0 ||
        (uint64_t)count > (SIZE_MAX - SMLP__MOE_ALIGN) / size)
        return -1;
    bytes = smlp__moe_align((size_t)count * size);
    if (*off > SIZE_MAX - bytes)
        return -1;
    *field = *off;
    *off += bytes;
    return 0;
}

int
smlp__moe_gate_bwd_layout(const struct smlp__moe_gate_priv *pv,
                          struct smlp__moe_gate_bwd_layout *l)
{
    int noisy = pv->training && pv->noise_std > 0.0;
    int per_image = pv->kind == SMLP__MOE_GATE_PER_IMAGE;
    int64_t re, rd, gt;
    size_t off = 0;

    gt = smlp__moe_tasks(pv->groups, smlp__moe_groups_per_task(pv->g));
    if ((pv->rows > 0 && pv->e > INT64_MAX / pv->rows) ||
        (pv->rows > 0 && pv->d > INT64_MAX / pv->rows) ||
        pv->e > INT64_MAX / 2 ||
        (gt > 0 && (pv->e > INT64_MAX / 2 / gt || pv->k > INT64_MAX / gt)))
        return -1;
    re = pv->rows * pv->e;
    rd = pv->rows * pv->d;
    if (take(&off, &l->zc, re, sizeof(float)) ||
        take(&off, &l->zn, noisy ? re : 0, sizeof(float)) ||
        take(&off, &l->p, re, sizeof(float)) ||
        take(&off, &l->pc, noisy ? re : 0, sizeof(float)) ||
        take(&off, &l->xm, per_image ? rd : 0, sizeof(float)) ||
        take(&off, &l->dp, re, sizeof(double)) ||
        take(&off, &l->dpc, noisy ? re : 0, sizeof(double)) ||
        take(&off, &l->dzf, re, sizeof(float)) ||
        take(&off, &l->dsrc, per_image ? rd : 0, sizeof(float)) ||
        take(&off, &l->sel, gt * pv->e, sizeof(int32_t)) ||
        take(&off, &l->choice, gt * pv->k, sizeof(int32_t)) ||
        take(&off, &l->acc, gt * 2 * pv->e, sizeof(double)))
        return -1;
    l->total = off;
    return 0;
}

size_t
smlp__moe_gate_backward_size(const struct smlp__moe_gate_priv *p)
{
    struct smlp__moe_gate_bwd_layout l;

    if (p->kind == SMLP__MOE_GATE_HASH)
        return 0;
    return smlp__moe_gate_bwd_layout(p, &l) == 0 ? l.total : SIZE_MAX;
}

static void
zero_grad(struct smlp_tensor *t)
{
    if (t != NULL)
        memset(t->data, 0, (size_t)smlp_tensor_numel(t) * sizeof(float));
}

/* d p from d weight of items [i0, i1) (items in index order, choices in
 * j order). */
static void
weight_grad(const struct smlp__moe_gate_priv *pv, const float *p,
            const int32_t *expert, const int32_t *slot, const float *dw,
            int64_t i0, int64_t i1, double *dp)
{
    int64_t i, j, k = pv->k, e = pv->e;

    for (i = i0; i < i1; i++) {
        const float *row = p + (i / pv->t) * e;
        double *drow = dp + (i / pv->t) * e;
        const int32_t *ex = expert + i * k, *sl = slot + i * k;
        const float *g = dw + i * k;
        double sum = 0.0, dot = 0.0;

        if (pv->normalize == SMLP__MOE_NORMALIZE_NONE) {
            for (j = 0; j < k; j++)
                if (sl[j] >= 0)
                    drow[ex[j]] += (double)g[j];
            continue;
        }
        /* The forward's sum: double, j order. */
        for (j = 0; j < k; j++)
            if (sl[j] >= 0)
                sum += row[ex[j]];
        if (!(sum > 0.0))
            continue;
        for (j = 0; j < k; j++)
            if (sl[j] >= 0)
                dot += (double)g[j] * ((double)row[ex[j]] / sum);
        for (j = 0; j < k; j++)
            if (sl[j] >= 0)
                drow[ex[j]] += ((double)g[j] - dot) / sum;
    }
}

/*
 * The balance aux's gradient w.r.t. the softmaxes for groups [g0, g1), c
 * = d aux · aux_weight / groups, both into dpc (the clean softmax pc):
 * vmoe importance and switch's P.  acc: 2E doubles.
 */
static void
balance_grad(const struct smlp__moe_gate_priv *pv, const float *pc,
             const int32_t *expert, double c, int64_t g0, int64_t g1,
             double *dpc, double *acc)
{
    int64_t rg = pv->g / pv->t, e = pv->e, grp, r, j;
    double *sum = acc, *g = acc + e;

    for (grp = g0; grp < g1; grp++) {
        int64_t r0 = grp * rg;

        for (j = 0; j < e; j++)
            sum[j] = 0.0;
        if (pv->aux == SMLP__MOE_AUX_VMOE) {
            for (r = r0; r < r0 + rg; r++)
                for (j = 0; j < e; j++)
                    sum[j] += pc[r * e + j];
            smlp__moe_cv2_grad(sum, e, 0.5 * c, g);
            for (r = r0; r < r0 + rg; r++)
                for (j = 0; j < e; j++)
                    dpc[r * e + j] += g[j];
        } else {
            /* f_e·rg: first choices of the group's rows (routing row r's
             * first item holds its choices). */
            for (r = r0; r < r0 + rg; r++)
                sum[expert[r * pv->t * pv->k]] += 1.0;
            for (j = 0; j < e; j++)
                g[j] = c * (double)e * (sum[j] / (double)rg) / (double)rg;
            for (r = r0; r < r0 + rg; r++)
                for (j = 0; j < e; j++)
                    dpc[r * e + j] += g[j];
        }
    }
}

/* The column of row zn's k-th largest value (the forward's threshold). */
static int32_t
threshold_expert(const float *zn, int64_t e, int64_t k, int32_t *sel,
                 int32_t *choice)
{
    smlp__moe_top_choices(zn, 1, e, k, sel, choice);
    return choice[k - 1];
}

/*
 * The vmoe load term's gradient w.r.t. the clean logits of groups [g0,
 * g1), added into dz, c = d aux · aux_weight / groups.  Load is
 * recomputed as the forward does (smlp__moe_aux_vmoe).  acc: 2E doubles.
 */
static void
load_grad(const struct smlp__moe_gate_priv *pv, const float *zc,
          const float *zn, double sigma, double c, int64_t g0, int64_t g1,
          double *dz, int32_t *sel, int32_t *choice, double *acc)
{
    const double scale = 1.0 / (sigma * 1.41421356237309504880);
    const double inv_sqrt_2pi = 0.39894228040143267794;
    int64_t rg = pv->g / pv->t, e = pv->e, k = pv->k, grp, r, j;
    double *load = acc, *g = acc + e;

    for (grp = g0; grp < g1; grp++) {
        int64_t r0 = grp * rg;

        for (j = 0; j < e; j++)
            load[j] = 0.0;
        for (r = r0; r < r0 + rg; r++) {
            double thr = zn[r * e + threshold_expert(zn + r * e, e, k, sel,
                                                     choice)];

            for (j = 0; j < e; j++)
                load[j] += 0.5 * erfc((thr - zc[r * e + j]) * scale);
        }
        for (j = 0; j < e; j++)
            load[j] /= (double)rg;
        smlp__moe_cv2_grad(load, e, 0.5 * c, g);
        for (r = r0; r < r0 + rg; r++) {
            int32_t star = threshold_expert(zn + r * e, e, k, sel, choice);
            double thr = zn[r * e + star], total = 0.0;

            for (j = 0; j < e; j++) {
                double u = (thr - zc[r * e + j]) / sigma;
                double q = g[j] * inv_sqrt_2pi * exp(-0.5 * u * u) /
                           (sigma * (double)rg);

                dz[r * e + j] += q;
                total += q;
            }
            dz[r * e + star] -= total;
        }
    }
}

/* The superclass cross-entropy's gradient: dz[b] += cc·(pc[b] − onehot). */
static void
superclass_grad(const float *pc, const int32_t *labels, int64_t rows,
                int64_t e, double cc, double *dz)
{
    int64_t b, j;

    for (b = 0; b < rows; b++) {
        for (j = 0; j < e; j++)
            dz[b * e + j] += cc * (double)pc[b * e + j];
        dz[b * e + labels[b]] -= cc;
    }
}

/* C [m, n] (row stride ldc) = op(A)·B with B [inner, n] (stride ldb); A
 * [m, inner], or [inner, m] read transposed when trans_a (stride lda).
 * C = 0 when inner is 0. */
static void
gemm(int trans_a, int64_t m, int64_t n, int64_t inner, const float *a,
     int64_t lda, const float *b, int64_t ldb, float *c, int64_t ldc)
{
    int64_t r;

    if (m == 0 || n == 0)
        return;
    if (inner == 0) {
        for (r = 0; r < m; r++)
            memset(c + r * ldc, 0, (size_t)n * sizeof(float));
        return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                CblasNoTrans, (int)m, (int)n, (int)inner, 1.0f, a, (int)lda,
                b, (int)ldb, 0.0f, c, (int)ldc);
}

/* Columns of d Wg per task of the last round. */
#define GATE_BWD_COLS 64

/* What the tasks of a gate backward share. */
struct gate_bwd_args {
    const struct smlp__moe_gate_priv *pv;
    const struct smlp__moe_gate_bwd_layout *l;
    char *ws;
    const float *x, *wg, *src, *dw;
    const int32_t *expert, *slot, *labels; /* labels: when aux_on */
    float *xm, *zc, *zn, *p, *pc, *dzf, *dsrc, *gx, *gwg;
    double *dp, *dpc;
    int noisy, balance, load;
    double sigma, c, cc; /* c: balance and load scale; cc: superclass */
    uint64_t seed, step;
    int64_t gpt, col_tasks;
};

/* Round 1, routing rows [r0, r1): the forward's router recomputed, then
 * d p from d weight of their items. */
static int
gbwd_rows_task(void *arg, int64_t task, int worker)
{
    const struct gate_bwd_args *a = arg;
    const struct smlp__moe_gate_priv *pv = a->pv;
    int64_t e = pv->e, d = pv->d, r0 = task * SMLP__MOE_TASK_ROWS;
    int64_t r1 = r0 + SMLP__MOE_TASK_ROWS < pv->rows
                     ? r0 + SMLP__MOE_TASK_ROWS
                     : pv->rows;
    int64_t nr = r1 - r0;

    (void)worker;
    if (pv->kind == SMLP__MOE_GATE_PER_IMAGE)
        smlp__moe_image_means(a->x + r0 * pv->t * d, nr, pv->t, d,
                              a->xm + r0 * d);
    smlp__moe_router_logits(a->src + r0 * d, a->wg, nr, e, d,
                            a->zc + r0 * e);
    if (a->noisy)
        smlp__moe_noise_rows(a->zc + r0 * e, r0, nr, e, a->sigma, a->seed,
                             pv->name_hash, a->step, a->zn + r0 * e);
    smlp__moe_softmax(a->zn + r0 * e, nr, e, a->p + r0 * e);
    memset(a->dp + r0 * e, 0, (size_t)(nr * e) * sizeof(double));
    if (a->noisy) {
        smlp__moe_softmax(a->zc + r0 * e, nr, e, a->pc + r0 * e);
        memset(a->dpc + r0 * e, 0, (size_t)(nr * e) * sizeof(double));
    }
    if (a->dw != NULL)
        weight_grad(pv, a->p, a->expert, a->slot, a->dw, r0 * pv->t,
                    r1 * pv->t, a->dp);
    return 0;
}

/* Round 2, groups [g0, g1): the aux terms, the softmax backwards and d
 * logits as f32, in the serial order of every element. */
static int
gbwd_groups_task(void *arg, int64_t task, int worker)
{
    const struct gate_bwd_args *a = arg;
    const struct smlp__moe_gate_priv *pv = a->pv;
    int64_t e = pv->e, rg = pv->g / pv->t, g0 = task * a->gpt;
    int64_t g1 = g0 + a->gpt < pv->groups ? g0 + a->gpt : pv->groups;
    int64_t r0 = g0 * rg, nr = (g1 - g0) * rg, i;
    double *acc = (double *)(a->ws + a->l->acc) + task * 2 * e;
    int32_t *sel = (int32_t *)(a->ws + a->l->sel) + task * e;
    int32_t *choice = (int32_t *)(a->ws + a->l->choice) + task * pv->k;

    (void)worker;
    if (a->balance)
        balance_grad(pv, a->pc, a->expert, a->c, g0, g1, a->dpc, acc);
    smlp__moe_softmax_backward(a->p + r0 * e, nr, e, a->dp + r0 * e);
    if (a->noisy) {
        smlp__moe_softmax_backward(a->pc + r0 * e, nr, e, a->dpc + r0 * e);
        for (i = r0 * e; i < (r0 + nr) * e; i++)
            a->dp[i] += a->dpc[i];
    }
    if (a->load)
        load_grad(pv, a->zc, a->zn, a->sigma, a->c, g0, g1, a->dp, sel,
                  choice, acc);
    if (a->labels != NULL)
        superclass_grad(a->pc + r0 * e, a->labels + r0, nr, e, a->cc,
                        a->dp + r0 * e);
    for (i = r0 * e; i < (r0 + nr) * e; i++)
        a->dzf[i] = (float)a->dp[i];
    return 0;
}

/* Round 3: columns [c0, c1) of d Wg (a sum over all rows) for tasks <
 * col_tasks, else routing rows of d src (d x, or d image means spread to
 * the image's items). */
static int
gbwd_product_task(void *arg, int64_t task, int worker)
{
    const struct gate_bwd_args *a = arg;
    const struct smlp__moe_gate_priv *pv = a->pv;
    int64_t e = pv->e, d = pv->d, r0, r1, i, c;

    (void)worker;
    if (task < a->col_tasks) {
        int64_t c0 = task * GATE_BWD_COLS;
        int64_t c1 = c0 + GATE_BWD_COLS < d ? c0 + GATE_BWD_COLS : d;

        gemm(1, e, c1 - c0, pv->rows, a->dzf, e, a->src + c0, d,
             a->gwg + c0, d);
        return 0;
    }
    r0 = (task - a->col_tasks) * SMLP__MOE_TASK_ROWS;
    r1 = r0 + SMLP__MOE_TASK_ROWS < pv->rows ? r0 + SMLP__MOE_TASK_ROWS
                                             : pv->rows;
    if (pv->kind != SMLP__MOE_GATE_PER_IMAGE) {
        gemm(0, r1 - r0, d, e, a->dzf + r0 * e, e, a->wg, d, a->gx + r0 * d,
             d);
        return 0;
    }
    gemm(0, r1 - r0, d, e, a->dzf + r0 * e, e, a->wg, d, a->dsrc + r0 * d,
         d);
    for (i = r0 * pv->t; i < r1 * pv->t; i++)
        for (c = 0; c < d; c++)
            a->gx[i * d + c] = (float)((double)a->dsrc[(i / pv->t) * d + c] /
                                       (double)pv->t);
    return 0;
}

int
smlp__moe_gate_backward(struct smlp_backward_ctx *ctx)
{
    const struct smlp__moe_gate_priv *pv = ctx->priv;
    struct smlp__moe_gate_bwd_layout l;
    struct gate_bwd_args a;
    char *ws = ctx->workspace;
    struct smlp_tensor *gx = ctx->grad_inputs[0], *gwg = ctx->grad_inputs[1];
    const struct smlp_tensor *gwt = ctx->grad_outputs[2];
    const struct smlp_tensor *gat = ctx->grad_outputs[4];
    const int32_t *labels = NULL;
    int per_image = pv->kind == SMLP__MOE_GATE_PER_IMAGE;
    int noisy = pv->training && pv->noise_std > 0.0, aux_on, rc;
    double ga;
    int64_t e = pv->e, rows = pv->rows, i, tasks;

    /* superclass is i32: no gradient. */
    if (ctx->n_inputs > 2)
        zero_grad(ctx->grad_inputs[2]);
    if (gx == NULL && gwg == NULL)
        return SMLP_OK;
    if (per_image && ctx->n_inputs > 2 && ctx->inputs[2] != NULL)
        labels = ctx->inputs[2]->data;
    ga = gat != NULL ? (double)*(const float *)gat->data : 0.0;
    /* aux is the constant 0 in inference. */
    aux_on = gat != NULL && pv->training &&
             (pv->aux != SMLP__MOE_AUX_NONE || labels != NULL);
    if ((gwt == NULL && !aux_on) || rows == 0) {
        zero_grad(gx);
        zero_grad(gwg);
        return SMLP_OK;
    }
    if (labels != NULL && aux_on)
        for (i = 0; i < rows; i++)
            if (labels[i] < 0 || labels[i] >= e)
                return smlp__moe_backward_fail(
                    ctx, SMLP_EINVAL,
                    "input 2 (superclass): label %d of image %lld is out of "
                    "range [0, %lld) (E experts)",
                    (int)labels[i], (long long)i, (long long)e);
    if (smlp__moe_gate_bwd_layout(pv, &l) != 0 ||
        ctx->workspace_size < l.total)
        return smlp__moe_backward_fail(ctx, SMLP_EINVAL,
                                       "backward workspace of %zu bytes, "
                                       "the gate needs %zu",
                                       ctx->workspace_size, l.total);
    a.pv = pv;
    a.l = &l;
    a.ws = ws;
    a.x = ctx->inputs[0]->data;
    a.wg = ctx->inputs[1]->data;
    a.dw = gwt != NULL ? gwt->data : NULL;
    a.expert = ctx->outputs[0]->data;
    a.slot = ctx->outputs[1]->data;
    a.labels = aux_on ? labels : NULL;
    a.xm = (float *)(ws + l.xm);
    a.src = per_image ? a.xm : a.x;
    a.zc = (float *)(ws + l.zc);
    a.zn = noisy ? (float *)(ws + l.zn) : a.zc;
    a.p = (float *)(ws + l.p);
    a.pc = noisy ? (float *)(ws + l.pc) : a.p;
    a.dp = (double *)(ws + l.dp);
    a.dpc = noisy ? (double *)(ws + l.dpc) : a.dp;
    a.dzf = (float *)(ws + l.dzf);
    a.dsrc = (float *)(ws + l.dsrc);
    a.gx = gx != NULL ? gx->data : NULL;
    a.gwg = gwg != NULL ? gwg->data : NULL;
    a.noisy = noisy;
    a.balance = aux_on && pv->aux != SMLP__MOE_AUX_NONE && pv->groups > 0;
    a.load = aux_on && noisy && pv->aux == SMLP__MOE_AUX_VMOE &&
             pv->groups > 0;
    a.sigma = pv->noise_std / (double)e;
    a.c = pv->groups > 0 ? ga * pv->aux_weight / (double)pv->groups : 0.0;
    a.cc = ga * pv->aux_weight / (double)rows;
    a.seed = ctx->seed;
    a.step = ctx->step;
    a.gpt = smlp__moe_groups_per_task(pv->g);

    /* The forward's router, recomputed, and d p from d weight. */
    if ((rc = smlp_parallel_for(ctx->host, ctx->node,
                                smlp__moe_tasks(rows, SMLP__MOE_TASK_ROWS),
                                gbwd_rows_task, &a)) != 0)
        return rc;
    /* d p from the aux, then d logits, group by group. */
    if ((rc = smlp_parallel_for(ctx->host, ctx->node,
                                smlp__moe_tasks(pv->groups, a.gpt),
                                gbwd_groups_task, &a)) != 0)
        return rc;
    /* Through the router product. */
    a.col_tasks = a.gwg != NULL ? smlp__moe_tasks(pv->d, GATE_BWD_COLS) : 0;
    tasks = a.col_tasks +
            (a.gx != NULL ? smlp__moe_tasks(rows, SMLP__MOE_TASK_ROWS) : 0);
    return smlp_parallel_for(ctx->host, ctx->node, tasks, gbwd_product_task,
                             &a);
}

int
smlp__moe_hash_backward(struct smlp_backward_ctx *ctx)
{
    zero_grad(ctx->grad_inputs[0]);
    return SMLP_OK;
}
