/*
 * gates.c - moe.gate.topk, moe.gate.importance, moe.gate.per_image and
 * moe.gate.hash: their CPU kernels and op definitions.
 *
 * The three learned gates share one kernel.  With R routing rows (items,
 * or images of T items for per_image):
 *   1. per_image: the mean of each image's T items (double sums, item
 *      order), so the router sees R = N/T rows;
 *   2. clean logits z = rows·Wgᵀ, one sgemm;
 *   3. training with noise_std > 0: noisy logits z + N(0, (noise_std/E)²)
 *      from the counter-based stream of smlp__moe_noise (session seed,
 *      node name, step, element index), so runs repeat exactly;
 *   4. p = softmax(noisy logits) routes and weighs; the clean softmax
 *      feeds the importance term of the vmoe aux;
 *   5. the k largest p per row (ties -> lower expert); per_image copies an
 *      image's choices to its T items;
 *   6. per group, slots choice rank by choice rank with items in priority
 *      order (item order; importance: descending first-choice p);
 *   7. weights, load, and in training the aux (per group, averaged over
 *      groups, times aux_weight), plus aux_weight times the mean
 *      cross-entropy of the clean image logits against the optional
 *      superclass labels (per_image; labels are checked only when used).
 * The noise of element e of routing row r is number r·E + e of the
 * node's stream, so per_image draws one noise vector per image.
 * The hash gate has no router: expert = f(item index mod T).
 * Backward: gate_backward.c.
 *
 * Kernels run on worker threads and touch only their node's buffers.
 */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "moe.h"

/* xm[b] = mean of the t rows x[b·t .. b·t + t), summed in double. */
void
smlp__moe_image_means(const float *x, int64_t rows, int64_t t, int64_t d,
                      float *xm)
{
    int64_t b, i, c;

    for (b = 0; b < rows; b++)
        for (c = 0; c < d; c++) {
            double s = 0.0;

            for (i = 0; i < t; i++)
                s += x[(b * t + i) * d + c];
            xm[b * d + c] = (float)(s / (double)t);
        }
}

/* z [rows, e] = src [rows, d] · Wgᵀ (Wg [e, d]), one sgemm. */
void
smlp__moe_router_logits(const float *src, const float *wg, int64_t rows,
                        int64_t e, int64_t d, float *z)
{
    if (rows == 0 || e == 0)
        return;
    if (d == 0) {
        memset(z, 0, (size_t)(rows * e) * sizeof(float));
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)e,
                (int)d, 1.0f, src, (int)d, wg, (int)d, 0.0f, z, (int)e);
}

/* mean_b CE(z[b], labels[b]) = mean_b (logsumexp(z[b]) − z[b, label]). */
static double
mean_cross_entropy(const float *z, const int32_t *labels, int64_t rows,
                   int64_t e)
{
    double total = 0.0;
    int64_t b, j;

    if (rows == 0)
        return 0.0;
    for (b = 0; b < rows; b++) {
        const float *zb = z + b * e;
        double max = zb[0], sum = 0.0;

        for (j = 1; j < e; j++)
            if (zb[j] > max)
                max = zb[j];
        for (j = 0; j < e; j++)
            sum += exp((double)zb[j] - max);
        total += max + log(sum) - (double)zb[labels[b]];
    }
    return total / (double)rows;
}

/* The aux output of a training run (before the superclass term). */
static double
balance_aux(const struct smlp__moe_gate_priv *pv, const float *zc,
            const float *zn, const float *p, const float *pc,
            const int32_t *rexp, double sigma, int32_t *sel, double *acc)
{
    int64_t rg = pv->g / pv->t, g, r0;
    double s = 0.0;

    if (pv->aux == SMLP__MOE_AUX_NONE || pv->groups == 0)
        return 0.0;
    for (g = 0; g < pv->groups; g++) {
        r0 = g * rg;
        if (pv->aux == SMLP__MOE_AUX_VMOE)
            s += smlp__moe_aux_vmoe(pc + r0 * pv->e, zc + r0 * pv->e,
                                    zn + r0 * pv->e, rg, pv->e, pv->k, sigma,
                                    sel, acc);
        else
            s += smlp__moe_aux_switch(p + r0 * pv->e, rexp + r0 * pv->k, rg,
                                      pv->e, pv->k, acc);
    }
    return pv->aux_weight * s / (double)pv->groups;
}

/* Kernel of topk, importance and per_image. */
static int
gate_run(struct smlp_kernel_ctx *ctx)
{
    const struct smlp__moe_gate_priv *pv = ctx->priv;
    const struct smlp__moe_route route = {pv->e, pv->k, pv->cap, pv->m};
    char *ws = ctx->workspace;
    const float *x = ctx->inputs[0]->data, *wg = ctx->inputs[1]->data;
    const float *src = x;
    const int32_t *labels = NULL;
    int32_t *expert = ctx->outputs[0]->data, *slot = ctx->outputs[1]->data;
    int32_t *slot_item = ctx->outputs[3]->data, *load = ctx->outputs[5]->data;
    float *weight = ctx->outputs[2]->data, *aux = ctx->outputs[4]->data;
    float *zc = (float *)(ws + pv->ws.zc), *zn = zc;
    float *p = (float *)(ws + pv->ws.p), *pc = p;
    int32_t *rexp = expert, *order = NULL;
    int32_t *count = (int32_t *)(ws + pv->ws.count);
    int32_t *sel = (int32_t *)(ws + pv->ws.sel);
    int per_image = pv->kind == SMLP__MOE_GATE_PER_IMAGE;
    int noisy = ctx->training && pv->noise_std > 0.0;
    double sigma = pv->noise_std / (double)pv->e, total = 0.0;
    int64_t i, j, g;

    if (per_image && ctx->n_inputs > 2 && ctx->inputs[2] != NULL)
        labels = ctx->inputs[2]->data;
    if (labels != NULL && ctx->training)
        for (i = 0; i < pv->rows; i++)
            if (labels[i] < 0 || labels[i] >= pv->e)
                return smlp_kernel_fail(ctx, SMLP_EINVAL,
                                        "input 2 (superclass): label %d of "
                                        "image %lld is out of range [0, "
                                        "%lld) (E experts)",
                                        (int)labels[i], (long long)i,
                                        (long long)pv->e);
    if (per_image) {
        float *xm = (float *)(ws + pv->ws.xm);

        smlp__moe_image_means(x, pv->rows, pv->t, pv->d, xm);
        src = xm;
        rexp = (int32_t *)(ws + pv->ws.rexp);
    }
    smlp__moe_router_logits(src, wg, pv->rows, pv->e, pv->d, zc);
    if (noisy) {
        zn = (float *)(ws + pv->ws.zn);
        smlp__moe_noise(zc, pv->rows, pv->e, sigma, ctx->seed, pv->name_hash,
                        ctx->step, zn);
    }
    smlp__moe_softmax(zn, pv->rows, pv->e, p);
    if (noisy) {
        pc = (float *)(ws + pv->ws.pc);
        smlp__moe_softmax(zc, pv->rows, pv->e, pc);
    }
    smlp__moe_top_choices(p, pv->rows, pv->e, pv->k, sel, rexp);
    if (per_image)
        for (i = 0; i < pv->n; i++)
            for (j = 0; j < pv->k; j++)
                expert[i * pv->k + j] = rexp[(i / pv->t) * pv->k + j];
    for (i = 0; i < pv->e * pv->m; i++)
        slot_item[i] = -1;
    for (g = 0; g < pv->groups; g++) {
        int64_t first = g * pv->g;

        if (pv->kind == SMLP__MOE_GATE_IMPORTANCE) {
            order = (int32_t *)(ws + pv->ws.order);
            smlp__moe_importance_order(
                p + first * pv->e, pv->e, expert + first * pv->k, pv->k,
                pv->g, (struct smlp__moe_key *)(ws + pv->ws.keys), order);
        }
        smlp__moe_assign_slots(&route, g, first, pv->g, order, expert, count,
                               slot, slot_item);
    }
    smlp__moe_weights(p, pv->e, per_image ? pv->t : 1, expert, slot, pv->n,
                      pv->k, pv->normalize, weight);
    smlp__moe_count_load(expert, slot, pv->n, pv->k, pv->e, load);
    if (ctx->training) {
        total = balance_aux(pv, zc, zn, p, pc, rexp, noisy ? sigma : 0.0, sel,
                            (double *)(ws + pv->ws.acc));
        if (labels != NULL)
            total += pv->aux_weight *
                     mean_cross_entropy(zc, labels, pv->rows, pv->e);
    }
    *aux = (float)total;
    return SMLP_OK;
}

/*
 * Kernel of moe.gate.hash: position q = n mod T; chunk sends q to expert
 * ⌊q·E/T⌋, hash to lowbias32(q) mod E.  Weight 1 where kept, 0 where
 * dropped; aux 0.
 */
static int
hash_run(struct smlp_kernel_ctx *ctx)
{
    const struct smlp__moe_gate_priv *pv = ctx->priv;
    const struct smlp__moe_route route = {pv->e, 1, pv->cap, pv->m};
    int32_t *expert = ctx->outputs[0]->data, *slot = ctx->outputs[1]->data;
    int32_t *slot_item = ctx->outputs[3]->data, *load = ctx->outputs[5]->data;
    int32_t *count = (int32_t *)((char *)ctx->workspace + pv->ws.count);
    float *weight = ctx->outputs[2]->data;
    int64_t i, g;

    for (i = 0; i < pv->n; i++) {
        int64_t q = i % pv->t;

        if (pv->mode == SMLP__MOE_HASH_MODE_CHUNK)
            expert[i] = (int32_t)(q * pv->e / pv->t);
        else
            expert[i] = (int32_t)(smlp__moe_lowbias32((uint32_t)q) %
                                  (uint64_t)pv->e);
    }
    for (i = 0; i < pv->e * pv->m; i++)
        slot_item[i] = -1;
    for (g = 0; g < pv->groups; g++)
        smlp__moe_assign_slots(&route, g, g * pv->g, pv->g, NULL, expert,
                               count, slot, slot_item);
    for (i = 0; i < pv->n; i++)
        weight[i] = slot[i] >= 0 ? 1.0f : 0.0f;
    smlp__moe_count_load(expert, slot, pv->n, 1, pv->e, load);
    *(float *)ctx->outputs[4]->data = 0.0f;
    return SMLP_OK;
}

static int
topk_infer(struct smlp_infer_ctx *ctx)
{
    return smlp__moe_gate_infer(ctx, SMLP__MOE_GATE_TOPK);
}

static int
importance_infer(struct smlp_infer_ctx *ctx)
{
    return smlp__moe_gate_infer(ctx, SMLP__MOE_GATE_IMPORTANCE);
}

static int
per_image_infer(struct smlp_infer_ctx *ctx)
{
    return smlp__moe_gate_infer(ctx, SMLP__MOE_GATE_PER_IMAGE);
}

static int
hash_infer(struct smlp_infer_ctx *ctx)
{
    return smlp__moe_gate_infer(ctx, SMLP__MOE_GATE_HASH);
}

/* ---- definitions -------------------------------------------------------- */

static const struct smlp_kernel_def gate_cpu = {
    .size = sizeof(struct smlp_kernel_def),
    .abi = SMLP_ABI_VERSION,
    .device = SMLP_DEVICE_CPU,
    .dtype_mask = SMLP__MOE_MASK_F32,
    .run = gate_run,
    .score = SMLP__MOE_CPU_SCORE,
};

static const struct smlp_kernel_def hash_cpu = {
    .size = sizeof(struct smlp_kernel_def),
    .abi = SMLP_ABI_VERSION,
    .device = SMLP_DEVICE_CPU,
    .dtype_mask = SMLP__MOE_MASK_F32,
    .run = hash_run,
    .score = SMLP__MOE_CPU_SCORE,
};

static const struct smlp_kernel_def *const gate_kernels[] = {
    &gate_cpu, SMLP__MOE_CUDA(smlp__moe_gate_cuda) NULL};
static const struct smlp_kernel_def *const hash_kernels[] = {
    &hash_cpu, SMLP__MOE_CUDA(smlp__moe_hash_cuda) NULL};

#define GATE_CAPACITY_ATTRS(cf_doc)                                          \
    {"group_size", SMLP_ATTR_INT, 0,                                         \
     "G, items routed together; N must be a multiple (0 = N, default)"},     \
        {"capacity_factor", SMLP_ATTR_FLOAT, 0, cf_doc},                     \
        {"eval_capacity_factor", SMLP_ATTR_FLOAT, 0,                         \
         "capacity factor of inference sessions (default capacity_factor)"}, \
        {"capacity_multiple", SMLP_ATTR_INT, 0,                              \
         "round the capacity up to a multiple of this (default 1)"}

#define GATE_LEARNED_ATTRS                                                   \
    {"k", SMLP_ATTR_INT, 0, "choices per item, 1 <= k <= E (default 1)"},    \
        GATE_CAPACITY_ATTRS(                                                 \
            "cf of training sessions: cap = ceil(k*G*cf/E) (default 1.0; "   \
            "<= 0: cap = G, no dropping)"),                                  \
        {"noise_std", SMLP_ATTR_FLOAT, 0,                                    \
         "training: logits += N(0,(noise_std/E)^2) (default 0)"},            \
        {"normalize", SMLP_ATTR_STRING, 0,                                   \
         "'none' (softmax values, default) or 'topk' (divide by the sum "    \
         "of the kept ones)"},                                               \
        {"aux", SMLP_ATTR_STRING, 0,                                         \
         "'vmoe' (default), 'switch' or 'none'"},                            \
        {"aux_weight", SMLP_ATTR_FLOAT, 0,                                   \
         "weight of the aux loss (default 0.01)"}

static const struct smlp_attr_def learned_attrs[] = {
    GATE_LEARNED_ATTRS,
    {NULL, 0, 0, NULL},
};

static const struct smlp_attr_def per_image_attrs[] = {
    GATE_LEARNED_ATTRS,
    {"items_per_image", SMLP_ATTR_INT, 1,
     "T, consecutive items of one image (required; divides G)"},
    {NULL, 0, 0, NULL},
};

static const struct smlp_attr_def hash_attrs[] = {
    {"experts", SMLP_ATTR_INT, 1, "E, the number of experts (required)"},
    {"items_per_image", SMLP_ATTR_INT, 1,
     "T: position q = item index mod T (required; divides G)"},
    {"mode", SMLP_ATTR_STRING, 0,
     "'chunk' (expert floor(q*E/T), default) or 'hash' (lowbias32(q) mod "
     "E)"},
    {"k", SMLP_ATTR_INT, 0, "must be 1 (default 1)"},
    GATE_CAPACITY_ATTRS("cap = ceil(G*cf/E) in training (default 0: cap = G, "
                        "no dropping)"),
    {NULL, 0, 0, NULL},
};

#define GATE_OUTPUTS_DOC                                                     \
    " -> expert i32 [N,k], slot i32 [N,k], weight f32 [N,k], slot_item "     \
    "i32 [E,M], aux f32 [], load i32 [E,2]"

const struct smlp_op_def smlp__moe_op_gate_topk = {
    .size = sizeof(struct smlp_op_def),
    .abi = SMLP_ABI_VERSION,
    .name = "moe.gate.topk",
    .min_inputs = 2,
    .max_inputs = 2,
    .n_outputs = 6,
    .attrs = learned_attrs,
    .infer = topk_infer,
    .kernels = gate_kernels,
    .backward = smlp__moe_gate_backward,
    .doc = "top-k softmax router, slots in item order (Switch/GShard): x "
           "[N,d], Wg [E,d]" GATE_OUTPUTS_DOC,
};

const struct smlp_op_def smlp__moe_op_gate_importance = {
    .size = sizeof(struct smlp_op_def),
    .abi = SMLP_ABI_VERSION,
    .name = "moe.gate.importance",
    .min_inputs = 2,
    .max_inputs = 2,
    .n_outputs = 6,
    .attrs = learned_attrs,
    .infer = importance_infer,
    .kernels = gate_kernels,
    .backward = smlp__moe_gate_backward,
    .doc = "top-k router, slots by descending max p (batch-prioritised "
           "routing): x [N,d], Wg [E,d]" GATE_OUTPUTS_DOC,
};

const struct smlp_op_def smlp__moe_op_gate_per_image = {
    .size = sizeof(struct smlp_op_def),
    .abi = SMLP_ABI_VERSION,
    .name = "moe.gate.per_image",
    .min_inputs = 2,
    .max_inputs = 3,
    .n_outputs = 6,
    .attrs = per_image_attrs,
    .infer = per_image_infer,
    .kernels = gate_kernels,
    .backward = smlp__moe_gate_backward,
    .doc = "one decision per image of T items from their mean: x [N,d], "
           "Wg [E,d], superclass i32 [N/T] (optional, training CE "
           "aux)" GATE_OUTPUTS_DOC,
};

const struct smlp_op_def smlp__moe_op_gate_hash = {
    .size = sizeof(struct smlp_op_def),
    .abi = SMLP_ABI_VERSION,
    .name = "moe.gate.hash",
    .min_inputs = 1,
    .max_inputs = 1,
    .n_outputs = 6,
    .attrs = hash_attrs,
    .infer = hash_infer,
    .kernels = hash_kernels,
    .backward = smlp__moe_hash_backward,
    .doc = "fixed routing by position q = n mod T: chunk -> floor(q*E/T), "
           "hash -> lowbias32(q) mod E (h=q; h^=h>>16; h*=0x7feb352d; "
           "h^=h>>15; h*=0x846ca68b; h^=h>>16); x [N,d]" GATE_OUTPUTS_DOC,
};
