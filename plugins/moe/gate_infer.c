/*
 * gate_infer.c - shape inference of the four gates of the `moe` plugin.
 *
 * One function checks the inputs and attributes of every moe.gate.* node
 * (OPS.md, "The gate contract"), fixes the capacity from the session mode
 * (capacity_factor in training, eval_capacity_factor in inference), sets
 * the six outputs, lays out the kernel's workspace, sizes the backward's
 * (gate_backward.c) and stores it all, with the session mode, in a struct
 * smlp__moe_gate_priv for the kernels of gates.c and the backward.  It
 * runs on the thread that creates the session; every failure is described
 * with host->errorf (input or attribute, expected vs actual) and returned.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "moe.h"

/* Reads string attribute `name` (default def) as one of names[0..n). */
static int
attr_enum(struct smlp_infer_ctx *ctx, const char *name, const char *def,
          const char *const *names, int n, int32_t *out)
{
    char want[128];
    const char *s;
    size_t used = 0;
    int rc, i;

    if ((rc = smlp_infer_attr_string(ctx, name, 0, def, &s)) != 0)
        return rc;
    for (i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return SMLP_OK;
        }
    want[0] = '\0';
    for (i = 0; i < n && used < sizeof(want); i++) {
        int w = snprintf(want + used, sizeof(want) - used, "%s'%s'",
                         i == 0 ? "" : i == n - 1 ? " or " : ", ", names[i]);

        if (w < 0)
            break;
        used += (size_t)w;
    }
    return smlp_infer_fail(ctx, SMLP_EINVAL,
                           "attribute '%s' = '%s' is invalid: expected %s",
                           name, s, want);
}

/* Reads int attribute `name` (default def) and checks it is >= lo. */
static int
attr_int_min(struct smlp_infer_ctx *ctx, const char *name, int required,
             int64_t def, int64_t lo, const char *meaning, int64_t *out)
{
    int rc = smlp_infer_attr_int(ctx, name, required, def, out);

    if (rc != SMLP_OK)
        return rc;
    if (*out < lo)
        return smlp_infer_fail(ctx, SMLP_EINVAL,
                               "attribute '%s' = %lld is invalid: expected "
                               "a value >= %lld%s",
                               name, (long long)*out, (long long)lo, meaning);
    return SMLP_OK;
}

/* Reads float attribute `name` (default def): finite, and >= 0 when
 * nonneg is set. */
static int
attr_float_ok(struct smlp_infer_ctx *ctx, const char *name, double def,
              int nonneg, double *out)
{
    int rc = smlp_infer_attr_float(ctx, name, 0, def, out);

    if (rc != SMLP_OK)
        return rc;
    if (!isfinite(*out) || (nonneg && *out < 0.0))
        return smlp_infer_fail(ctx, SMLP_EINVAL,
                               "attribute '%s' = %g is invalid: expected a "
                               "finite value%s",
                               name, *out, nonneg ? " >= 0" : "");
    return SMLP_OK;
}

/* The workspace of the gate kernels (see struct smlp__moe_gate_ws). */
static void
gate_layout(struct smlp__moe_gate_priv *p)
{
    size_t off = 0, re = (size_t)(p->rows * p->e) * sizeof(float);
    int learned = p->kind != SMLP__MOE_GATE_HASH;
    int noise = learned && p->noise_std > 0.0;
    int per_image = p->kind == SMLP__MOE_GATE_PER_IMAGE;
    int importance = p->kind == SMLP__MOE_GATE_IMPORTANCE;
    int64_t rt = learned ? smlp__moe_tasks(p->rows, SMLP__MOE_TASK_ROWS) : 0;
    int64_t gt = smlp__moe_tasks(p->groups,
                                 smlp__moe_groups_per_task(p->g));
    size_t te = (size_t)((rt > gt ? rt : gt) * p->e);

#define TAKE(field, bytes)                                                    \
    do {                                                                     \
        p->ws.field = off;                                                   \
        off += smlp__moe_align(bytes);                                       \
    } while (0)
    TAKE(zc, learned ? re : 0);
    TAKE(zn, noise ? re : 0);
    TAKE(p, learned ? re : 0);
    TAKE(pc, noise ? re : 0);
    TAKE(xm, per_image ? (size_t)(p->rows * p->d) * sizeof(float) : 0);
    TAKE(rexp, per_image ? (size_t)(p->rows * p->k) * sizeof(int32_t) : 0);
    TAKE(order, importance ? (size_t)p->n * sizeof(int32_t) : 0);
    TAKE(keys, importance ? (size_t)p->n * sizeof(struct smlp__moe_key) : 0);
    TAKE(count, (size_t)(gt * p->e) * sizeof(int32_t));
    TAKE(sel, learned ? te * sizeof(int32_t) : 0);
    TAKE(acc, learned ? (size_t)(gt * 2 * p->e) * sizeof(double) : 0);
    TAKE(loadp, (size_t)(gt * 2 * p->e) * sizeof(int32_t));
    TAKE(auxg, learned ? (size_t)p->groups * sizeof(double) : 0);
    TAKE(ce, per_image ? (size_t)p->rows * sizeof(double) : 0);
#undef TAKE
    p->ws.total = off;
}

/* Experts and k: from Wg (learned gates) or attributes (hash). */
static int
infer_experts(struct smlp_infer_ctx *ctx, struct smlp__moe_gate_priv *p)
{
    char s1[SMLP_SHAPE_STRLEN], s2[SMLP_SHAPE_STRLEN];
    const struct smlp_tensor *x = ctx->inputs[0], *wg;
    int rc;

    if (p->kind == SMLP__MOE_GATE_HASH) {
        if ((rc = attr_int_min(ctx, "experts", 1, 0, 1, "", &p->e)) != 0 ||
            (rc = smlp_infer_attr_int(ctx, "k", 0, 1, &p->k)) != 0)
            return rc;
        if (p->k != 1)
            return smlp_infer_fail(ctx, SMLP_EINVAL,
                                   "attribute 'k' = %lld is invalid: "
                                   "moe.gate.hash sends each item to one "
                                   "expert (k = 1)",
                                   (long long)p->k);
        if (p->e > INT32_MAX)
            return smlp_infer_fail(ctx, SMLP_ELIMIT,
                                   "attribute 'experts' = %lld exceeds the "
                                   "i32 expert index range",
                                   (long long)p->e);
        return SMLP_OK;
    }
    if ((rc = smlp_infer_check_input(ctx, 1, "Wg", SMLP_DTYPE_F32, 2, 2)) !=
        0)
        return rc;
    wg = ctx->inputs[1];
    if (wg->shape[1] != p->d)
        return smlp_infer_fail(ctx, SMLP_ESHAPE,
                               "input 1 (Wg) has shape %s, expected "
                               "[%lld,%lld] (dim 1 = d, the width of input "
                               "0 (x) %s)",
                               smlp_shape_str(wg, s1, sizeof(s1)),
                               (long long)wg->shape[0], (long long)p->d,
                               smlp_shape_str(x, s2, sizeof(s2)));
    p->e = wg->shape[0];
    if (p->e < 1)
        return smlp_infer_fail(ctx, SMLP_ESHAPE,
                               "input 1 (Wg) has shape %s, expected at "
                               "least one expert (dim 0)",
                               smlp_shape_str(wg, s1, sizeof(s1)));
    if ((rc = smlp_infer_attr_int(ctx, "k", 0, 1, &p->k)) != 0)
        return rc;
    if (p->k < 1 || p->k > p->e)
        return smlp_infer_fail(ctx, SMLP_EINVAL,
                               "attribute 'k' = %lld is invalid: expected "
                               "1 <= k <= E = %lld (dim 0 of input 1 (Wg) "
                               "%s)",
                               (long long)p->k, (long long)p->e,
                               smlp_shape_str(wg, s1, sizeof(s1)));
    return SMLP_OK;
}

/* Group size, items per image, capacity and M. */
static int
infer_groups(struct smlp_infer_ctx *ctx, struct smlp__moe_gate_priv *p)
{
    const struct smlp_tensor *x = ctx->inputs[0];
    char s[SMLP_SHAPE_STRLEN];
    int64_t gs, mult;
    double cf, ecf;
    int rc;

    if ((rc = attr_int_min(ctx, "group_size", 0, 0, 0, " (0: all items)",
                           &gs)) != 0)
        return rc;
    p->g = gs > 0 ? gs : p->n;
    if (p->g > 0 && p->n % p->g != 0)
        return smlp_infer_fail(ctx, SMLP_ESHAPE,
                               "input 0 (x) has shape %s: its %lld items "
                               "are not a multiple of attribute "
                               "'group_size' = %lld",
                               smlp_shape_str(x, s, sizeof(s)),
                               (long long)p->n, (long long)p->g);
    p->groups = p->g > 0 ? p->n / p->g : 0;
    p->t = 1;
    if (p->kind == SMLP__MOE_GATE_PER_IMAGE ||
        p->kind == SMLP__MOE_GATE_HASH) {
        if ((rc = attr_int_min(ctx, "items_per_image", 1, 0, 1, "",
                               &p->t)) != 0)
            return rc;
        if (p->g % p->t != 0)
            return smlp_infer_fail(ctx, SMLP_ESHAPE,
                                   "attribute 'items_per_image' = %lld "
                                   "does not divide the group size G = "
                                   "%lld (attribute 'group_size' = %lld, "
                                   "input 0 (x) %s)",
                                   (long long)p->t, (long long)p->g,
                                   (long long)gs,
                                   smlp_shape_str(x, s, sizeof(s)));
    }
    p->rows = p->kind == SMLP__MOE_GATE_PER_IMAGE ? p->n / p->t : p->n;
    if ((rc = attr_float_ok(ctx, "capacity_factor",
                            p->kind == SMLP__MOE_GATE_HASH ? 0.0 : 1.0, 0,
                            &cf)) != 0 ||
        (rc = attr_float_ok(ctx, "eval_capacity_factor", cf, 0, &ecf)) !=
            0 ||
        (rc = attr_int_min(ctx, "capacity_multiple", 0, 1, 1, "", &mult)) !=
            0)
        return rc;
    p->cf = ctx->training ? cf : ecf;
    p->cap = smlp__moe_capacity(p->k, p->g, p->cf, p->e, mult);
    if (p->cap < 0)
        return smlp_infer_fail(ctx, SMLP_ELIMIT,
                               "capacity factor %g (attribute '%s') gives a "
                               "capacity beyond 2^62 per expert for groups "
                               "of %lld items",
                               p->cf, ctx->training ? "capacity_factor"
                                                    : "eval_capacity_factor",
                               (long long)p->g);
    if (p->n > INT32_MAX || p->cap > INT32_MAX ||
        p->groups * p->cap > INT32_MAX)
        return smlp_infer_fail(ctx, SMLP_ELIMIT,
                               "%lld items in %lld groups with capacity "
                               "%lld (capacity factor %g) exceed the i32 "
                               "index range",
                               (long long)p->n, (long long)p->groups,
                               (long long)p->cap, p->cf);
    p->m = p->groups * p->cap;
    return SMLP_OK;
}

/* noise_std, normalize, aux, aux_weight, the superclass input; mode. */
static int
infer_options(struct smlp_infer_ctx *ctx, struct smlp__moe_gate_priv *p)
{
    static const char *const normalize[] = {"none", "topk"};
    static const char *const aux[] = {"vmoe", "switch", "none"};
    static const char *const mode[] = {"chunk", "hash"};
    char s[SMLP_SHAPE_STRLEN];
    int rc;

    if (p->kind == SMLP__MOE_GATE_HASH)
        return attr_enum(ctx, "mode", "chunk", mode, 2, &p->mode);
    if ((rc = attr_float_ok(ctx, "noise_std", 0.0, 1, &p->noise_std)) != 0 ||
        (rc = attr_enum(ctx, "normalize", "none", normalize, 2,
                        &p->normalize)) != 0 ||
        (rc = attr_enum(ctx, "aux", "vmoe", aux, 3, &p->aux)) != 0 ||
        (rc = attr_float_ok(ctx, "aux_weight", 0.01, 0, &p->aux_weight)) !=
            0)
        return rc;
    if (p->kind != SMLP__MOE_GATE_PER_IMAGE || ctx->n_inputs < 3 ||
        ctx->inputs[2] == NULL)
        return SMLP_OK;
    if ((rc = smlp_infer_check_input(ctx, 2, "superclass", SMLP_DTYPE_I32, 1,
                                     1)) != 0)
        return rc;
    if (ctx->inputs[2]->shape[0] != p->rows)
        return smlp_infer_fail(ctx, SMLP_ESHAPE,
                               "input 2 (superclass) has shape %s, expected "
                               "[%lld] (one label per image: N / "
                               "items_per_image = %lld / %lld)",
                               smlp_shape_str(ctx->inputs[2], s, sizeof(s)),
                               (long long)p->rows, (long long)p->n,
                               (long long)p->t);
    return SMLP_OK;
}

int
smlp__moe_gate_infer(struct smlp_infer_ctx *ctx, int kind)
{
    struct smlp__moe_gate_priv p;
    int64_t shape[2], dims[3];
    size_t bws;
    int rc;

    memset(&p, 0, sizeof(p));
    p.kind = kind;
    if ((rc = smlp_infer_check_input(ctx, 0, "x", SMLP_DTYPE_F32, 2, 2)) != 0)
        return rc;
    p.n = ctx->inputs[0]->shape[0];
    p.d = ctx->inputs[0]->shape[1];
    if ((rc = infer_experts(ctx, &p)) != 0 ||
        (rc = infer_groups(ctx, &p)) != 0 ||
        (rc = infer_options(ctx, &p)) != 0)
        return rc;
    dims[0] = p.rows;
    dims[1] = p.e;
    dims[2] = p.d;
    if (kind != SMLP__MOE_GATE_HASH &&
        (rc = smlp__moe_check_blas_dims(ctx, "router logits", 3, dims)) != 0)
        return rc;
    shape[0] = p.n;
    shape[1] = p.k;
    smlp_infer_set_output(ctx, 0, SMLP_DTYPE_I32, 2, shape);
    smlp_infer_set_output(ctx, 1, SMLP_DTYPE_I32, 2, shape);
    smlp_infer_set_output(ctx, 2, SMLP_DTYPE_F32, 2, shape);
    shape[0] = p.e;
    shape[1] = p.m;
    smlp_infer_set_output(ctx, 3, SMLP_DTYPE_I32, 2, shape);
    smlp_infer_set_output(ctx, 4, SMLP_DTYPE_F32, 0, NULL);
    shape[1] = 2;
    smlp_infer_set_output(ctx, 5, SMLP_DTYPE_I32, 2, shape);
    /* The workspace holds up to 4 f32 [rows, E] tables and per-task
     * tables of at most N·2E doubles: keep its size far from overflowing
     * size_t. */
    if ((p.rows > 0 && p.e > INT64_MAX / 16 / p.rows) ||
        (p.n > 0 && p.e > INT64_MAX / 16 / p.n))
        return smlp_infer_fail(ctx, SMLP_ELIMIT,
                               "%lld routing rows x %lld experts overflow "
                               "the gate's workspace size",
                               (long long)p.rows, (long long)p.e);
    gate_layout(&p);
    ctx->workspace = p.ws.total;
    p.training = ctx->training != 0;
    bws = smlp__moe_gate_backward_size(&p);
    if (bws == SIZE_MAX)
        return smlp_infer_fail(ctx, SMLP_ELIMIT,
                               "%lld routing rows x %lld experts (width "
                               "%lld) overflow the gate's backward "
                               "workspace size",
                               (long long)p.rows, (long long)p.e,
                               (long long)p.d);
    if (ctx->size >= offsetof(struct smlp_infer_ctx, backward_workspace) +
                         sizeof(ctx->backward_workspace))
        ctx->backward_workspace = bws;
    /* The router product: one MAC per (routing row, expert, feature). */
    ctx->macs = kind == SMLP__MOE_GATE_HASH
                    ? 0
                    : (uint64_t)p.rows * (uint64_t)p.e * (uint64_t)p.d;
    if (ctx->host->node_name != NULL)
        p.name_hash = smlp__moe_fnv1a64(ctx->host->node_name(ctx->node));
    else
        p.name_hash = smlp__moe_fnv1a64("");
    return smlp_infer_set_priv(ctx, &p, sizeof(p));
}
