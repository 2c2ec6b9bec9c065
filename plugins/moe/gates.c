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
 * Intra-op tasks (smlp_parallel_for), in two rounds whose boundaries
 * depend on the shapes only (moe.h, SMLP__MOE_TASK_ROWS): steps 1-5 run
 * per block of routing rows (one sgemm of the block's logits; the noise
 * indexed by the global element number; the superclass cross-entropy of
 * each image into its own entry), steps 6-7 per block of whole groups
 * (groups are independent: each task empties and fills its groups' rows
 * of every expert's buffer, sorts each group on its own (importance: a
 * total order, so qsort has one answer), and counts the load and the aux
 * of its groups into its own entries).  Then, on the calling thread, the
 * load counts are added (integers) and the per-group aux and per-image
 * cross-entropy terms summed in group and image order, as a serial loop
 * would, so every output is bit-identical for any thread count.  The
 * hash gate runs the group round only.  Scratch is indexed by task.
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

/* CE(z, label) = logsumexp(z) − z[label] over e logits, in double. */
static double
cross_entropy(const float *z, int32_t label, int64_t e)
{
    double max = z[0], sum = 0.0;
    int64_t j;

    for (j = 1; j < e; j++)
        if (z[j] > max)
            max = z[j];
    for (j = 0; j < e; j++)
        sum += exp((double)z[j] - max);
    return max + log(sum) - (double)z[label];
}

/* What the tasks of a gate run share. */
struct gate_args {
    const struct smlp__moe_gate_priv *pv;
    struct smlp__moe_route route;
    char *ws;
    const float *x, *wg, *src;
    const int32_t *labels; /* superclass (per_image, training), or NULL */
    float *xm, *zc, *zn, *p, *pc, *weight;
    int32_t *rexp, *expert, *slot, *slot_item;
    int noisy, training;
    double sigma;
    uint64_t seed, step;
    int64_t gpt; /* groups per group task */
};

/*
 * Row task: routing rows [r0, r1): image means (per_image), the clean
 * logits (one sgemm of the block), the noise, the softmaxes, the top-k
 * choices (copied to the image's items for per_image) and, with labels,
 * each image's cross-entropy term.  Every value is a function of its row.
 */
static int
gate_rows_task(void *arg, int64_t task, int worker)
{
    const struct gate_args *a = arg;
    const struct smlp__moe_gate_priv *pv = a->pv;
    int64_t e = pv->e, k = pv->k, r0 = task * SMLP__MOE_TASK_ROWS;
    int64_t r1 = r0 + SMLP__MOE_TASK_ROWS < pv->rows
                     ? r0 + SMLP__MOE_TASK_ROWS
                     : pv->rows;
    int64_t nr = r1 - r0, i, j;
    int32_t *sel = (int32_t *)(a->ws + pv->ws.sel) + task * e;

    (void)worker;
    if (pv->kind == SMLP__MOE_GATE_PER_IMAGE)
        smlp__moe_image_means(a->x + r0 * pv->t * pv->d, nr, pv->t, pv->d,
                              a->xm + r0 * pv->d);
    smlp__moe_router_logits(a->src + r0 * pv->d, a->wg, nr, e, pv->d,
                            a->zc + r0 * e);
    if (a->noisy)
        smlp__moe_noise_rows(a->zc + r0 * e, r0, nr, e, a->sigma, a->seed,
                             pv->name_hash, a->step, a->zn + r0 * e);
    smlp__moe_softmax(a->zn + r0 * e, nr, e, a->p + r0 * e);
    if (a->noisy)
        smlp__moe_softmax(a->zc + r0 * e, nr, e, a->pc + r0 * e);
    smlp__moe_top_choices(a->p + r0 * e, nr, e, k, sel, a->rexp + r0 * k);
    if (pv->kind == SMLP__MOE_GATE_PER_IMAGE)
        for (i = r0 * pv->t; i < r1 * pv->t; i++)
            for (j = 0; j < k; j++)
                a->expert[i * k + j] = a->rexp[(i / pv->t) * k + j];
    if (a->labels != NULL) {
        double *ce = (double *)(a->ws + pv->ws.ce);

        for (i = r0; i < r1; i++)
            ce[i] = cross_entropy(a->zc + i * e, a->labels[i], e);
    }
    return 0;
}

/* Empties group g's rows of every expert's buffer in slot_item. */
static void
clear_group_rows(const struct smlp__moe_gate_priv *pv, int64_t g,
                 int32_t *slot_item)
{
    int64_t ex, r;

    for (ex = 0; ex < pv->e; ex++)
        for (r = g * pv->cap; r < (g + 1) * pv->cap; r++)
            slot_item[ex * pv->m + r] = -1;
}

/*
 * Group task: groups [g0, g1) one after another: priority order
 * (importance), slots, combine weights, the load of their items (into
 * the task's own counts) and, in training, each group's balance aux.
 */
static int
gate_groups_task(void *arg, int64_t task, int worker)
{
    const struct gate_args *a = arg;
    const struct smlp__moe_gate_priv *pv = a->pv;
    int64_t e = pv->e, k = pv->k, g0 = task * a->gpt, g1 = g0 + a->gpt, g;
    int32_t *count = (int32_t *)(a->ws + pv->ws.count) + task * e;
    int32_t *sel = (int32_t *)(a->ws + pv->ws.sel) + task * e;
    int32_t *load = (int32_t *)(a->ws + pv->ws.loadp) + task * 2 * e;
    double *acc = (double *)(a->ws + pv->ws.acc) + task * 2 * e;
    double *auxg = (double *)(a->ws + pv->ws.auxg);
    int64_t rg = pv->g / pv->t, t = pv->t;

    (void)worker;
    if (g1 > pv->groups)
        g1 = pv->groups;
    memset(load, 0, (size_t)(2 * e) * sizeof(*load));
    for (g = g0; g < g1; g++) {
        int64_t first = g * pv->g, r0 = g * rg;
        int32_t *order = NULL;

        clear_group_rows(pv, g, a->slot_item);
        if (pv->kind == SMLP__MOE_GATE_IMPORTANCE) {
            order = (int32_t *)(a->ws + pv->ws.order) + first;
            smlp__moe_importance_order(
                a->p + first * e, e, a->expert + first * k, k, pv->g,
                (struct smlp__moe_key *)(a->ws + pv->ws.keys) + first, order);
        }
        smlp__moe_assign_slots(&a->route, g, first, pv->g, order, a->expert,
                               count, a->slot, a->slot_item);
        smlp__moe_weights(a->p + (first / t) * e, e, t, a->expert + first * k,
                          a->slot + first * k, pv->g, k, pv->normalize,
                          a->weight + first * k);
        smlp__moe_add_load(a->expert + first * k, a->slot + first * k, pv->g,
                           k, load);
        if (!a->training || pv->aux == SMLP__MOE_AUX_NONE)
            continue;
        if (pv->aux == SMLP__MOE_AUX_VMOE)
            auxg[g] = smlp__moe_aux_vmoe(a->pc + r0 * e, a->zc + r0 * e,
                                         a->zn + r0 * e, rg, e, k,
                                         a->noisy ? a->sigma : 0.0, sel, acc);
        else
            auxg[g] = smlp__moe_aux_switch(a->pc + r0 * e, a->rexp + r0 * k,
                                           rg, e, k, acc);
    }
    return 0;
}

/* load = the sum of the group tasks' counts (integers: exact). */
static void
sum_load(const struct smlp__moe_gate_priv *pv, const char *ws, int64_t tasks,
         int32_t *load)
{
    const int32_t *part = (const int32_t *)(ws + pv->ws.loadp);
    int64_t t, j;

    memset(load, 0, (size_t)(2 * pv->e) * sizeof(*load));
    for (t = 0; t < tasks; t++)
        for (j = 0; j < 2 * pv->e; j++)
            load[j] += part[t * 2 * pv->e + j];
}

/* Kernel of topk, importance and per_image. */
static int
gate_run(struct smlp_kernel_ctx *ctx)
{
    const struct smlp__moe_gate_priv *pv = ctx->priv;
    struct gate_args a;
    const int32_t *labels = NULL;
    float *aux = ctx->outputs[4]->data;
    int per_image = pv->kind == SMLP__MOE_GATE_PER_IMAGE;
    double total = 0.0, s = 0.0;
    int64_t i, g, gtasks;
    int rc;

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
    a.pv = pv;
    a.route.e = pv->e;
    a.route.k = pv->k;
    a.route.cap = pv->cap;
    a.route.m = pv->m;
    a.ws = ctx->workspace;
    a.x = ctx->inputs[0]->data;
    a.wg = ctx->inputs[1]->data;
    a.labels = ctx->training ? labels : NULL;
    a.expert = ctx->outputs[0]->data;
    a.slot = ctx->outputs[1]->data;
    a.weight = ctx->outputs[2]->data;
    a.slot_item = ctx->outputs[3]->data;
    a.noisy = ctx->training && pv->noise_std > 0.0;
    a.training = ctx->training != 0;
    a.sigma = pv->noise_std / (double)pv->e;
    a.seed = ctx->seed;
    a.step = ctx->step;
    a.gpt = smlp__moe_groups_per_task(pv->g);
    a.xm = (float *)(a.ws + pv->ws.xm);
    a.src = per_image ? a.xm : a.x;
    a.rexp = per_image ? (int32_t *)(a.ws + pv->ws.rexp) : a.expert;
    a.zc = (float *)(a.ws + pv->ws.zc);
    a.zn = a.noisy ? (float *)(a.ws + pv->ws.zn) : a.zc;
    a.p = (float *)(a.ws + pv->ws.p);
    a.pc = a.noisy ? (float *)(a.ws + pv->ws.pc) : a.p;
    if ((rc = smlp_parallel_for(ctx->host, ctx->node,
                                smlp__moe_tasks(pv->rows,
                                                SMLP__MOE_TASK_ROWS),
                                gate_rows_task, &a)) != 0)
        return rc;
    gtasks = smlp__moe_tasks(pv->groups, a.gpt);
    if ((rc = smlp_parallel_for(ctx->host, ctx->node, gtasks,
                                gate_groups_task, &a)) != 0)
        return rc;
    sum_load(pv, a.ws, gtasks, ctx->outputs[5]->data);
    if (ctx->training) {
        /* Group by group, image by image: the serial order. */
        if (pv->aux != SMLP__MOE_AUX_NONE && pv->groups > 0) {
            const double *auxg = (const double *)(a.ws + pv->ws.auxg);

            for (g = 0; g < pv->groups; g++)
                s += auxg[g];
            total = pv->aux_weight * s / (double)pv->groups;
        }
        if (labels != NULL && pv->rows > 0) {
            const double *ce = (const double *)(a.ws + pv->ws.ce);

            for (s = 0.0, i = 0; i < pv->rows; i++)
                s += ce[i];
            total += pv->aux_weight * (s / (double)pv->rows);
        }
    }
    *aux = (float)total;
    return SMLP_OK;
}

/* What the tasks of a hash gate run share. */
struct hash_args {
    const struct smlp__moe_gate_priv *pv;
    struct smlp__moe_route route;
    char *ws;
    int32_t *expert, *slot, *slot_item;
    float *weight;
    int64_t gpt;
};

/* Group task of the hash gate: experts, slots, weights and load of the
 * items of groups [g0, g1). */
static int
hash_groups_task(void *arg, int64_t task, int worker)
{
    const struct hash_args *a = arg;
    const struct smlp__moe_gate_priv *pv = a->pv;
    int64_t e = pv->e, g0 = task * a->gpt, g1 = g0 + a->gpt, g, i;
    int32_t *count = (int32_t *)(a->ws + pv->ws.count) + task * e;
    int32_t *load = (int32_t *)(a->ws + pv->ws.loadp) + task * 2 * e;

    (void)worker;
    if (g1 > pv->groups)
        g1 = pv->groups;
    memset(load, 0, (size_t)(2 * e) * sizeof(*load));
    for (g = g0; g < g1; g++) {
        int64_t first = g * pv->g;

        for (i = first; i < first + pv->g; i++) {
            int64_t q = i % pv->t;

            if (pv->mode == SMLP__MOE_HASH_MODE_CHUNK)
                a->expert[i] = (int32_t)(q * e / pv->t);
            else
                a->expert[i] = (int32_t)(smlp__moe_lowbias32((uint32_t)q) %
                                         (uint64_t)e);
        }
        clear_group_rows(pv, g, a->slot_item);
        smlp__moe_assign_slots(&a->route, g, first, pv->g, NULL, a->expert,
                               count, a->slot, a->slot_item);
        for (i = first; i < first + pv->g; i++)
            a->weight[i] = a->slot[i] >= 0 ? 1.0f : 0.0f;
        smlp__moe_add_load(a->expert + first, a->slot + first, pv->g, 1,
                           load);
    }
    return 0;
}

/*
 * Kernel of moe.gate.hash: position q = n mod T; chunk sends q to expert
 * ⌊q·E/T⌋, hash to lowbias32(q) mod E.  Weight 1 where kept, 0 where
 * dropped; aux 0.  Tasks are groups, as for the learned gates.
 */
static int
hash_run(struct smlp_kernel_ctx *ctx)
{
    const struct smlp__moe_gate_priv *pv = ctx->priv;
    struct hash_args a;
    int64_t gtasks;
    int rc;

    a.pv = pv;
    a.route.e = pv->e;
    a.route.k = 1;
    a.route.cap = pv->cap;
    a.route.m = pv->m;
    a.ws = ctx->workspace;
    a.expert = ctx->outputs[0]->data;
    a.slot = ctx->outputs[1]->data;
    a.slot_item = ctx->outputs[3]->data;
    a.weight = ctx->outputs[2]->data;
    a.gpt = smlp__moe_groups_per_task(pv->g);
    gtasks = smlp__moe_tasks(pv->groups, a.gpt);
    if ((rc = smlp_parallel_for(ctx->host, ctx->node, gtasks,
                                hash_groups_task, &a)) != 0)
        return rc;
    sum_load(pv, a.ws, gtasks, ctx->outputs[5]->data);
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
