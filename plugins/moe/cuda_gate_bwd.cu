/*
 * cuda_gate_bwd.cu - the backward of the gates on the GPU (plugin ABI
 * 1.3): moe.gate.topk, .importance, .per_image and .hash.
 *
 * gate_backward.c's three rounds, with its formulas and its workspace
 * layout (smlp__moe_gate_bwd_layout), on the session's stream:
 *   1. the router recomputed as the forward computed it: image means
 *      (per_image), zc = src·Wgᵀ (cuBLAS), the noise redrawn from the same
 *      stream (seed, node name, step), the softmaxes (cuda_gate.h's
 *      kernels); then a thread per routing row zeroes its d p (and d pc)
 *      and adds d weight of its items in item order;
 *   2. a thread per group task (the CPU's tasks: acc and the order are
 *      the CPU's): the balance aux (vmoe importance and switch's P, both
 *      into d pc), the softmax backwards, the vmoe load term, the superclass
 *      cross-entropy, d logits as f32; the incoming d aux is read on the
 *      device;
 *   3. d Wg = d logitsᵀ·src and d src = d logits·Wg (cuBLAS); per_image
 *      spreads d src / T to the image's items.
 * Sums run in double in the CPU's order, so the results agree with the
 * CPU's up to the products' float rounding and libm's last bits.  A
 * superclass label out of [0, E) makes its row's gradient NaN (the CPU
 * fails the node; the GPU cannot report it without a synchronisation).
 * moe.gate.hash has no trainable input: its backward zeroes d x.
 */
#include "cuda_gate.h"

#define BWD_BLOCK 128

/* Round 1, a thread per routing row: d p (and d pc) zeroed, then d p from
 * d weight of the row's t items (gate_backward.c, weight_grad). */
__global__ void
k_weight_grad(const float *p, const int32_t *expert, const int32_t *slot,
              const float *dw, double *dp, double *dpc, int64_t rows,
              int64_t e, int64_t k, int64_t t, int normalize)
{
    int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, i, j;

    for (; r < rows; r += (int64_t)gridDim.x * blockDim.x) {
        const float *row = p + r * e;
        double *drow = dp + r * e;

        for (j = 0; j < e; j++) {
            drow[j] = 0.0;
            if (dpc != NULL)
                dpc[r * e + j] = 0.0;
        }
        for (i = r * t; dw != NULL && i < (r + 1) * t; i++) {
            const int32_t *ex = expert + i * k, *sl = slot + i * k;
            const float *g = dw + i * k;
            double sum = 0.0, dot = 0.0;

            if (normalize == SMLP__MOE_NORMALIZE_NONE) {
                for (j = 0; j < k; j++)
                    if (sl[j] >= 0 && ex[j] >= 0 && ex[j] < e)
                        drow[ex[j]] += (double)g[j];
                continue;
            }
            for (j = 0; j < k; j++)
                if (sl[j] >= 0 && ex[j] >= 0 && ex[j] < e)
                    sum += row[ex[j]];
            if (!(sum > 0.0))
                continue;
            for (j = 0; j < k; j++)
                if (sl[j] >= 0 && ex[j] >= 0 && ex[j] < e)
                    dot += (double)g[j] * ((double)row[ex[j]] / sum);
            for (j = 0; j < k; j++)
                if (sl[j] >= 0 && ex[j] >= 0 && ex[j] < e)
                    drow[ex[j]] += ((double)g[j] - dot) / sum;
        }
    }
}

struct groups_args {
    const float *p, *pc, *zc, *zn, *gaux;
    const int32_t *expert, *labels;
    double *dp, *dpc, *acc;
    float *dzf;
    int64_t rows, e, k, t, rg, groups, gpt;
    int aux, balance, load, noisy;
    double sigma, aux_weight;
};

/* Round 2, a thread per group task (gate_backward.c, gbwd_groups_task). */
__global__ void
k_groups_grad(struct groups_args a)
{
    const double scale = 1.0 / (a.sigma * 1.41421356237309504880);
    const double inv_sqrt_2pi = 0.39894228040143267794;
    int64_t task = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    int64_t e = a.e;

    for (; task * a.gpt < a.groups;
         task += (int64_t)gridDim.x * blockDim.x) {
        int64_t g0 = task * a.gpt;
        int64_t g1 = g0 + a.gpt < a.groups ? g0 + a.gpt : a.groups;
        int64_t r0 = g0 * a.rg, nr = (g1 - g0) * a.rg, grp, r, j, i;
        double ga = a.gaux != NULL ? (double)a.gaux[0] : 0.0;
        double c = ga * a.aux_weight / (double)a.groups;
        double cc = ga * a.aux_weight / (double)a.rows;
        double *sum = a.acc + task * 2 * e, *g = sum + e;

        for (grp = g0; a.balance && grp < g1; grp++) {
            int64_t q0 = grp * a.rg;

            for (j = 0; j < e; j++)
                sum[j] = 0.0;
            if (a.aux == SMLP__MOE_AUX_VMOE) {
                for (r = q0; r < q0 + a.rg; r++)
                    for (j = 0; j < e; j++)
                        sum[j] += a.pc[r * e + j];
                smlp__moe_cv2_grad(sum, e, 0.5 * c, g);
                for (r = q0; r < q0 + a.rg; r++)
                    for (j = 0; j < e; j++)
                        a.dpc[r * e + j] += g[j];
            } else {
                for (r = q0; r < q0 + a.rg; r++) {
                    int32_t first = a.expert[r * a.t * a.k];

                    if (first >= 0 && first < e)
                        sum[first] += 1.0;
                }
                for (j = 0; j < e; j++)
                    g[j] = c * (double)e * (sum[j] / (double)a.rg) /
                           (double)a.rg;
                for (r = q0; r < q0 + a.rg; r++)
                    for (j = 0; j < e; j++)
                        a.dpc[r * e + j] += g[j];
            }
        }
        smlp__moe_softmax_backward(a.p + r0 * e, nr, e, a.dp + r0 * e);
        if (a.noisy) {
            smlp__moe_softmax_backward(a.pc + r0 * e, nr, e, a.dpc + r0 * e);
            for (i = r0 * e; i < (r0 + nr) * e; i++)
                a.dp[i] += a.dpc[i];
        }
        for (grp = g0; a.load && grp < g1; grp++) {
            int64_t q0 = grp * a.rg;

            for (j = 0; j < e; j++)
                sum[j] = 0.0; /* the group's load */
            for (r = q0; r < q0 + a.rg; r++) {
                double thr = kth_value(a.zn + r * e, e, a.k);

                for (j = 0; j < e; j++)
                    sum[j] += 0.5 * erfc((thr - a.zc[r * e + j]) * scale);
            }
            for (j = 0; j < e; j++)
                sum[j] /= (double)a.rg;
            smlp__moe_cv2_grad(sum, e, 0.5 * c, g);
            for (r = q0; r < q0 + a.rg; r++) {
                int64_t star = kth_expert(a.zn + r * e, e, a.k);
                double thr = a.zn[r * e + star], total = 0.0;

                for (j = 0; j < e; j++) {
                    double u = (thr - a.zc[r * e + j]) / a.sigma;
                    double q = g[j] * inv_sqrt_2pi * exp(-0.5 * u * u) /
                               (a.sigma * (double)a.rg);

                    a.dp[r * e + j] += q;
                    total += q;
                }
                a.dp[r * e + star] -= total;
            }
        }
        for (r = r0; a.labels != NULL && r < r0 + nr; r++) {
            int32_t lab = a.labels[r];

            for (j = 0; j < e; j++)
                a.dp[r * e + j] += lab >= 0 && lab < e
                                       ? cc * (double)a.pc[r * e + j]
                                       : nan("");
            if (lab >= 0 && lab < e)
                a.dp[r * e + lab] -= cc;
        }
        for (i = r0 * e; i < (r0 + nr) * e; i++)
            a.dzf[i] = (float)a.dp[i];
    }
}

/* gx[i, c] = d src[i / t, c] / t (per_image: the image's items). */
__global__ void
k_spread(const float *dsrc, float *gx, int64_t n, int64_t t, int64_t d)
{
    int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;

    for (; idx < n * d; idx += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = idx / d, c = idx - i * d;

        gx[idx] = (float)((double)dsrc[(i / t) * d + c] / (double)t);
    }
}

int
smlp__moe_gate_bwd_cuda(struct smlp_backward_ctx *ctx)
{
    const struct smlp__moe_gate_priv *pv =
        (const struct smlp__moe_gate_priv *)ctx->priv;
    struct smlp__moe_gate_bwd_layout l;
    struct groups_args a;
    char *ws = (char *)ctx->workspace;
    struct smlp_tensor *gx = ctx->grad_inputs[0], *gwg = ctx->grad_inputs[1];
    const struct smlp_tensor *gwt = ctx->grad_outputs[2];
    const struct smlp_tensor *gat = ctx->grad_outputs[4];
    const float *x = (const float *)ctx->inputs[0]->data;
    const float *wg = (const float *)ctx->inputs[1]->data, *src = x;
    const int32_t *labels = NULL;
    int per_image = pv->kind == SMLP__MOE_GATE_PER_IMAGE;
    int noisy = pv->training && pv->noise_std > 0.0, aux_on, rc;
    int64_t e = pv->e, d = pv->d, rows = pv->rows, t;
    float *zc, *zn = NULL, *p, *pc = NULL, *dzf;
    double sigma = pv->noise_std / (double)e;
    uint64_t key = 0;

    if ((rc = smlp_cuda_zero_grad(ctx, 2)) != SMLP_OK)
        return rc;
    if (gx == NULL && gwg == NULL)
        return SMLP_OK;
    if (per_image && ctx->n_inputs > 2 && ctx->inputs[2] != NULL)
        labels = (const int32_t *)ctx->inputs[2]->data;
    aux_on = gat != NULL && pv->training &&
             (pv->aux != SMLP__MOE_AUX_NONE || labels != NULL);
    if ((gwt == NULL && !aux_on) || rows == 0) {
        if ((rc = smlp_cuda_zero_grad(ctx, 0)) != SMLP_OK)
            return rc;
        return smlp_cuda_zero_grad(ctx, 1);
    }
    if (smlp__moe_gate_bwd_layout(pv, &l) != 0 || ws == NULL ||
        ctx->workspace_size < l.total)
        return smlp_cuda_fail(ctx, SMLP_EINVAL,
                              "backward workspace of %zu bytes, the gate "
                              "needs %zu",
                              ctx->workspace_size, l.total);
    t = per_image ? pv->t : 1;
    /* Round 1: the router, then d p from d weight. */
    if (per_image) {
        float *xm = (float *)(ws + l.xm);

        k_image_means<<<smlp_cuda_grid(rows * d), SMLP_CUDA_BLOCK, 0,
                        smlp_cuda_stream(ctx)>>>(x, xm, rows, pv->t, d);
        if ((rc = smlp_cuda_launched(ctx, "moe gate backward (means)")) !=
            SMLP_OK)
            return rc;
        src = xm;
    }
    zc = (float *)(ws + l.zc);
    p = (float *)(ws + l.p);
    if ((rc = smlp_cuda_sgemm_xwt(ctx, src, wg, zc, rows, d, e)) != SMLP_OK)
        return rc;
    if (noisy) {
        zn = (float *)(ws + l.zn);
        pc = (float *)(ws + l.pc);
        key = mix64(mix64(mix64(ctx->seed) ^ pv->name_hash) ^ ctx->step);
    }
    k_route_rows<<<smlp_cuda_grid_of(rows, BWD_BLOCK), BWD_BLOCK, 0,
                   smlp_cuda_stream(ctx)>>>(zc, zn, p, pc, NULL, rows, e,
                                            pv->k, t, sigma, key);
    a.dp = (double *)(ws + l.dp);
    a.dpc = noisy ? (double *)(ws + l.dpc) : a.dp;
    k_weight_grad<<<smlp_cuda_grid_of(rows, BWD_BLOCK), BWD_BLOCK, 0,
                    smlp_cuda_stream(ctx)>>>(
        p, (const int32_t *)ctx->outputs[0]->data,
        (const int32_t *)ctx->outputs[1]->data,
        gwt != NULL ? (const float *)gwt->data : NULL, a.dp,
        noisy ? a.dpc : NULL, rows, e, pv->k, t, pv->normalize);
    if ((rc = smlp_cuda_launched(ctx, "moe gate backward (rows)")) !=
        SMLP_OK)
        return rc;
    /* Round 2: the aux terms and d logits, by the CPU's group tasks. */
    dzf = (float *)(ws + l.dzf);
    a.p = p;
    a.pc = noisy ? pc : p;
    a.zc = zc;
    a.zn = noisy ? zn : zc;
    a.gaux = gat != NULL ? (const float *)gat->data : NULL;
    a.expert = (const int32_t *)ctx->outputs[0]->data;
    a.labels = aux_on ? labels : NULL;
    a.acc = (double *)(ws + l.acc);
    a.dzf = dzf;
    a.rows = rows;
    a.e = e;
    a.k = pv->k;
    a.t = t;
    a.rg = pv->g / pv->t;
    a.groups = pv->groups;
    a.gpt = smlp__moe_groups_per_task(pv->g);
    a.aux = pv->aux;
    a.balance = aux_on && pv->aux != SMLP__MOE_AUX_NONE && pv->groups > 0;
    a.load = aux_on && noisy && pv->aux == SMLP__MOE_AUX_VMOE &&
             pv->groups > 0;
    a.noisy = noisy;
    a.sigma = noisy ? sigma : 1.0;
    a.aux_weight = pv->aux_weight;
    k_groups_grad<<<smlp_cuda_grid_of(smlp__moe_tasks(pv->groups, a.gpt),
                                      BWD_BLOCK),
                    BWD_BLOCK, 0, smlp_cuda_stream(ctx)>>>(a);
    if ((rc = smlp_cuda_launched(ctx, "moe gate backward (groups)")) !=
        SMLP_OK)
        return rc;
    /* Round 3: through the router product. */
    if (gwg != NULL &&
        (rc = smlp_cuda_sgemm(ctx, 1, 0, e, d, rows, dzf, e, 0, src, d, 0,
                              0.0f, (float *)gwg->data, d, 0, 1)) != SMLP_OK)
        return rc;
    if (gx == NULL)
        return SMLP_OK;
    if (!per_image)
        return smlp_cuda_sgemm(ctx, 0, 0, rows, d, e, dzf, e, 0, wg, d, 0,
                               0.0f, (float *)gx->data, d, 0, 1);
    if ((rc = smlp_cuda_sgemm(ctx, 0, 0, rows, d, e, dzf, e, 0, wg, d, 0,
                              0.0f, (float *)(ws + l.dsrc), d, 0, 1)) !=
        SMLP_OK)
        return rc;
    k_spread<<<smlp_cuda_grid(rows * pv->t * d), SMLP_CUDA_BLOCK, 0,
               smlp_cuda_stream(ctx)>>>((const float *)(ws + l.dsrc),
                                        (float *)gx->data, rows * pv->t,
                                        pv->t, d);
    return smlp_cuda_launched(ctx, "moe gate backward (spread)");
}

int
smlp__moe_hash_bwd_cuda(struct smlp_backward_ctx *ctx)
{
    return smlp_cuda_zero_grad(ctx, 0);
}
