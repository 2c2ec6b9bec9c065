/*
 * expertchoice.c - an smlp operator plugin written outside the smlp tree:
 * the expert-choice router (Zhou et al., "Mixture-of-Experts with Expert
 * Choice Routing", 2022; the "experts choose tokens" routing of V-MoE's
 * follow-ups) as a gate that plugs into moe.dispatch, moe.expert_ffn and
 * moe.combine.
 *
 * It is built against the installed SDK only (pkg-config smlp; see
 * Makefile and README.md) and includes nothing but smlp_plugin.h, the
 * plugin ABI, and smlp_kernel.h, its header-only helpers.  It links
 * nothing of smlp: the runtime hands it everything through the host table.
 *
 * The op, expertchoice.gate:
 *
 *   inputs   x f32 [N,d] items, Wg f32 [E,d] router weight (no bias)
 *   outputs  the six of the moe gate contract (OPS.md), with k = E:
 *            expert i32 [N,E], slot i32 [N,E], weight f32 [N,E],
 *            slot_item i32 [E,M], aux f32 [], load i32 [E,2]
 *   attrs    group_size G (0 = N), capacity_factor (1.0, training),
 *            eval_capacity_factor (= capacity_factor, inference),
 *            normalize 'none' (default) or 'sum'
 *
 * Routing of one group of G items: p = softmax(x·Wgᵀ) over the experts
 * of each item; each expert e takes its cap = ceil(G·cf/E) items with the
 * largest p[., e] (ties go to the lower item index; cf <= 0 or cap > G:
 * every item), in that order into rows g·cap .. g·cap + cap − 1 of its
 * buffer.  An item is chosen by any number of experts, 0 to E, so the
 * gate writes one "choice" per expert: choice j of item n is expert j,
 * with slot[n,j] its row in expert j's buffer, or −1 (and weight 0) when
 * expert j did not choose n.  weight[n,j] = p[n,j], or with normalize
 * 'sum' p[n,j] divided by the sum of the item's chosen p.  An item no
 * expert chose gets 0 from combine and rides the residual.  There is no
 * balancing loss (aux = 0): every expert takes exactly cap items.  load
 * [e] = {rows filled, items whose first choice (largest p) was e but that
 * e did not take}.
 *
 * Thread rules: infer() runs on the session's thread; the kernel runs on
 * a worker and touches only its node's tensors and workspace.  No
 * backward: this router is for inference and forward training runs.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "smlp_kernel.h"

/* The node's parsed attributes and sizes (ctx->priv of every kernel). */
struct ec_priv {
    int64_t n;      /* items */
    int64_t d;      /* item width */
    int64_t e;      /* experts */
    int64_t g;      /* group size */
    int64_t groups; /* n / g */
    int64_t cap;    /* items each expert takes per group */
    int64_t m;      /* buffer rows per expert: groups · cap */
    int sum;        /* normalize 'sum' */
};

/* An item's score for one expert; sorted by descending p, then index. */
struct ec_key {
    float p;
    int32_t item;
};

static int
key_cmp(const void *pa, const void *pb)
{
    const struct ec_key *a = pa, *b = pb;

    if (a->p > b->p)
        return -1;
    if (a->p < b->p)
        return 1;
    return (a->item > b->item) - (a->item < b->item);
}

static int
ec_infer(struct smlp_infer_ctx *ctx)
{
    const struct smlp_tensor *x, *wg;
    struct ec_priv p;
    char s1[SMLP_SHAPE_STRLEN], s2[SMLP_SHAPE_STRLEN];
    const char *norm;
    double cf, ecf, c;
    int64_t gs, shape[2];
    int rc;

    memset(&p, 0, sizeof(p));
    if ((rc = smlp_infer_check_input(ctx, 0, "x", SMLP_DTYPE_F32, 2, 2)) ||
        (rc = smlp_infer_check_input(ctx, 1, "Wg", SMLP_DTYPE_F32, 2, 2)))
        return rc;
    x = ctx->inputs[0];
    wg = ctx->inputs[1];
    p.n = x->shape[0];
    p.d = x->shape[1];
    p.e = wg->shape[0];
    if (wg->shape[1] != p.d || p.e < 1)
        return smlp_infer_fail(ctx, SMLP_ESHAPE,
                               "input 1 (Wg) has shape %s, expected [E,%lld] "
                               "with E >= 1 (d = dim 1 of input 0 (x) %s)",
                               smlp_shape_str(wg, s1, sizeof(s1)),
                               (long long)p.d,
                               smlp_shape_str(x, s2, sizeof(s2)));
    if ((rc = smlp_infer_attr_int(ctx, "group_size", 0, 0, &gs)) ||
        (rc = smlp_infer_attr_float(ctx, "capacity_factor", 0, 1.0, &cf)) ||
        (rc = smlp_infer_attr_float(ctx, "eval_capacity_factor", 0, cf,
                                    &ecf)) ||
        (rc = smlp_infer_attr_string(ctx, "normalize", 0, "none", &norm)))
        return rc;
    if (strcmp(norm, "none") != 0 && strcmp(norm, "sum") != 0)
        return smlp_infer_fail(ctx, SMLP_EINVAL,
                               "attribute 'normalize' = '%s' is invalid: "
                               "expected 'none' or 'sum'",
                               norm);
    p.sum = strcmp(norm, "sum") == 0;
    p.g = gs > 0 ? gs : p.n;
    if (gs < 0 || (p.g > 0 && p.n % p.g != 0))
        return smlp_infer_fail(ctx, SMLP_ESHAPE,
                               "input 0 (x) has shape %s: its %lld items "
                               "are not a multiple of attribute "
                               "'group_size' = %lld",
                               smlp_shape_str(x, s1, sizeof(s1)),
                               (long long)p.n, (long long)gs);
    p.groups = p.g > 0 ? p.n / p.g : 0;
    cf = ctx->training ? cf : ecf;
    if (!isfinite(cf))
        return smlp_infer_fail(ctx, SMLP_EINVAL,
                               "the capacity factor %g is not finite", cf);
    c = cf <= 0.0 ? (double)p.g : ceil((double)p.g * cf / (double)p.e);
    p.cap = c > (double)p.g ? p.g : c < 1.0 ? 1 : (int64_t)c;
    if (p.g == 0)
        p.cap = 0;
    p.m = p.groups * p.cap;
    if (p.n > INT32_MAX || p.m > INT32_MAX)
        return smlp_infer_fail(ctx, SMLP_ELIMIT,
                               "%lld items and %lld buffer rows exceed the "
                               "i32 index range",
                               (long long)p.n, (long long)p.m);
    shape[0] = p.n;
    shape[1] = p.e;
    smlp_infer_set_output(ctx, 0, SMLP_DTYPE_I32, 2, shape);
    smlp_infer_set_output(ctx, 1, SMLP_DTYPE_I32, 2, shape);
    smlp_infer_set_output(ctx, 2, SMLP_DTYPE_F32, 2, shape);
    shape[0] = p.e;
    shape[1] = p.m;
    smlp_infer_set_output(ctx, 3, SMLP_DTYPE_I32, 2, shape);
    smlp_infer_set_output(ctx, 4, SMLP_DTYPE_F32, 0, NULL);
    shape[1] = 2;
    smlp_infer_set_output(ctx, 5, SMLP_DTYPE_I32, 2, shape);
    /* Workspace: p of one group [G,E] and the sort keys [G]. */
    ctx->workspace = (size_t)(p.g * p.e) * sizeof(float) +
                     (size_t)p.g * sizeof(struct ec_key);
    ctx->macs = (uint64_t)p.n * (uint64_t)p.e * (uint64_t)p.d;
    return smlp_infer_set_priv(ctx, &p, sizeof(p));
}

/* p[i, .] = softmax over experts of x_i · Wgᵀ, for the g items of x. */
static void
route_probs(const float *x, const float *wg, int64_t g, int64_t e,
            int64_t d, float *p)
{
    int64_t i, j, c;

    for (i = 0; i < g; i++) {
        const float *xi = x + i * d;
        float *pi = p + i * e;
        double max = -INFINITY, sum = 0.0;

        for (j = 0; j < e; j++) {
            const float *w = wg + j * d;
            float z = 0.0f;

            for (c = 0; c < d; c++)
                z += xi[c] * w[c];
            pi[j] = z;
            if (z > max)
                max = z;
        }
        for (j = 0; j < e; j++)
            sum += exp((double)pi[j] - max);
        for (j = 0; j < e; j++)
            pi[j] = (float)(exp((double)pi[j] - max) / sum);
    }
}

static int
ec_run(struct smlp_kernel_ctx *ctx)
{
    const struct ec_priv *pv = ctx->priv;
    const float *x = ctx->inputs[0]->data, *wg = ctx->inputs[1]->data;
    int32_t *expert = ctx->outputs[0]->data, *slot = ctx->outputs[1]->data;
    int32_t *slot_item = ctx->outputs[3]->data, *load = ctx->outputs[5]->data;
    float *weight = ctx->outputs[2]->data, *p = ctx->workspace;
    struct ec_key *keys = (struct ec_key *)(p + pv->g * pv->e);
    int64_t grp, i, j, r, n, e = pv->e;

    for (i = 0; i < pv->n * e; i++) {
        expert[i] = (int32_t)(i % e);
        slot[i] = -1;
        weight[i] = 0.0f;
    }
    for (i = 0; i < e * pv->m; i++)
        slot_item[i] = -1;
    memset(load, 0, (size_t)(2 * e) * sizeof(*load));
    for (grp = 0; grp < pv->groups; grp++) {
        int64_t first = grp * pv->g;

        route_probs(x + first * pv->d, wg, pv->g, e, pv->d, p);
        /* Each expert takes its cap best items. */
        for (j = 0; j < e; j++) {
            for (i = 0; i < pv->g; i++) {
                keys[i].p = isnan(p[i * e + j]) ? -INFINITY : p[i * e + j];
                keys[i].item = (int32_t)i;
            }
            qsort(keys, (size_t)pv->g, sizeof(*keys), key_cmp);
            for (r = 0; r < pv->cap; r++) {
                int64_t row = grp * pv->cap + r;

                n = first + keys[r].item;
                slot[n * e + j] = (int32_t)row;
                weight[n * e + j] = p[keys[r].item * e + j];
                slot_item[j * pv->m + row] = (int32_t)n;
            }
            load[2 * j] += (int32_t)pv->cap;
        }
        /* Items that their favourite expert did not take. */
        for (i = 0; i < pv->g; i++) {
            int64_t best = 0;

            for (j = 1; j < e; j++)
                if (p[i * e + j] > p[i * e + best])
                    best = j;
            if (slot[(first + i) * e + best] < 0)
                load[2 * best + 1]++;
        }
    }
    if (pv->sum)
        for (n = 0; n < pv->n; n++) {
            double s = 0.0;

            for (j = 0; j < e; j++)
                s += weight[n * e + j];
            for (j = 0; j < e && s > 0.0; j++)
                weight[n * e + j] = (float)(weight[n * e + j] / s);
        }
    *(float *)ctx->outputs[4]->data = 0.0f;
    return SMLP_OK;
}

static const struct smlp_kernel_def ec_cpu = {
    .size = sizeof(struct smlp_kernel_def),
    .abi = SMLP_ABI_VERSION,
    .device = SMLP_DEVICE_CPU,
    .dtype_mask = 1u << SMLP_DTYPE_F32,
    .run = ec_run,
    .score = 10,
};

static const struct smlp_kernel_def *const ec_kernels[] = {&ec_cpu, NULL};

static const struct smlp_attr_def ec_attrs[] = {
    {"group_size", SMLP_ATTR_INT, 0,
     "G, items routed together; N must be a multiple (0 = N, default)"},
    {"capacity_factor", SMLP_ATTR_FLOAT, 0,
     "training: each expert takes cap = ceil(G*cf/E) items per group "
     "(default 1.0; <= 0: all G)"},
    {"eval_capacity_factor", SMLP_ATTR_FLOAT, 0,
     "the same for inference (default capacity_factor)"},
    {"normalize", SMLP_ATTR_STRING, 0,
     "'none' (combine with p, default) or 'sum' (divide by the sum of the "
     "item's chosen p)"},
    {NULL, 0, 0, NULL},
};

static const struct smlp_op_def ec_gate = {
    .size = sizeof(struct smlp_op_def),
    .abi = SMLP_ABI_VERSION,
    .name = "expertchoice.gate",
    .min_inputs = 2,
    .max_inputs = 2,
    .n_outputs = 6,
    .attrs = ec_attrs,
    .infer = ec_infer,
    .kernels = ec_kernels,
    .doc = "expert-choice router: each expert takes its top-cap items by "
           "softmax p: x [N,d], Wg [E,d] -> expert, slot, weight [N,E], "
           "slot_item [E,M], aux [], load [E,2]",
};

static const struct smlp_op_def *const ec_ops[] = {&ec_gate, NULL};

static const struct smlp_plugin_def ec_plugin = {
    .size = sizeof(struct smlp_plugin_def),
    .abi = SMLP_ABI_VERSION,
    .name = "expertchoice", /* the file is expertchoice.so */
    .version = "0.1.0",
    .signature = SMLP_BUILD_SIGNATURE,
    .ops = ec_ops,
};

SMLP_PLUGIN_DEFINE(ec_plugin)
