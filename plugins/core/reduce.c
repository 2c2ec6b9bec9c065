/*
 * reduce.c - core.mean, core.argmax and core.softmax_cross_entropy.
 *
 * Every reduction runs in one fixed order (index order) and accumulates
 * in double, so results do not depend on threads or schedule.  mean and
 * softmax_cross_entropy have backwards (argmax gives integers: none).
 *
 * Threads: mean runs in tasks of (row, 256 columns) forward and chunks of
 * rows backward, each sum whole in one task; argmax and the cross-entropy
 * (a few rows of logits) run on the calling thread.
 */
#include <math.h>
#include <string.h>

#include "core.h"

/* ---- core.mean ---------------------------------------------------------- */

struct mean_priv {
    int axis;
};

static void
mean_split(const struct smlp_tensor *x, int axis, int64_t *outer,
           int64_t *len, int64_t *inner)
{
    int d;

    *outer = 1;
    *inner = 1;
    for (d = 0; d < axis; d++)
        *outer *= x->shape[d];
    for (d = axis + 1; d < x->rank; d++)
        *inner *= x->shape[d];
    *len = x->shape[axis];
}

static int
mean_infer(struct smlp_infer_ctx *ctx)
{
    const struct smlp_tensor *x;
    struct mean_priv priv = {0};
    int64_t axis, keepdims, shape[SMLP_MAX_RANK], outer, len, inner;
    char s[SMLP_SHAPE_STRLEN];
    int rc, d, r = 0;

    if ((rc = smlp_infer_attr_int(ctx, "axis", 1, 0, &axis)) != 0 ||
        (rc = smlp_infer_attr_int(ctx, "keepdims", 0, 0, &keepdims)) != 0 ||
        (rc = smlp_infer_check_input(ctx, 0, "x", SMLP_DTYPE_F32, 1,
                                     SMLP_MAX_RANK)) != 0 ||
        (rc = smlp_infer_axis(ctx, "axis", axis, 0, "x", &priv.axis)) != 0)
        return rc;
    if (keepdims != 0 && keepdims != 1)
        return smlp_infer_fail(ctx, SMLP_EINVAL,
                               "attribute 'keepdims' = %lld is invalid: "
                               "expected 0 or 1",
                               (long long)keepdims);
    x = ctx->inputs[0];
    if (x->shape[priv.axis] == 0)
        return smlp_infer_fail(ctx, SMLP_ESHAPE,
                               "input 0 (x) has shape %s: the mean over "
                               "empty axis %lld is undefined",
                               smlp_shape_str(x, s, sizeof(s)),
                               (long long)axis);
    for (d = 0; d < x->rank; d++)
        if (d != priv.axis)
            shape[r++] = x->shape[d];
        else if (keepdims)
            shape[r++] = 1;
    smlp_infer_set_output(ctx, 0, SMLP_DTYPE_F32, r, shape);
    mean_split(x, priv.axis, &outer, &len, &inner);
    if (inner > 1)
        ctx->workspace = (size_t)inner * sizeof(double);
    return smlp_infer_set_priv(ctx, &priv, sizeof(priv));
}

/* Columns i of one task of mean (its double sums live on the stack). */
#define MEAN_COLS 256

struct mean_run {
    const float *x, *dy;
    float *y, *dx;
    int64_t outer, len, inner, cols; /* cols: column chunks per o */
};

/* Forward, task = (o, chunk of columns i): y[o,i] = Σ_k x[o,k,i] / len,
 * k increasing, in double. */
static int
mean_task(void *arg, int64_t task, int worker)
{
    const struct mean_run *r = arg;
    int64_t o = task / r->cols, i0 = task % r->cols * MEAN_COLS;
    int64_t ni = r->inner - i0 < MEAN_COLS ? r->inner - i0 : MEAN_COLS;
    const float *xo = r->x + o * r->len * r->inner + i0;
    double acc[MEAN_COLS];
    int64_t k, i;

    (void)worker;
    if (r->inner == 1) {
        double sum = 0.0;

        for (k = 0; k < r->len; k++)
            sum += xo[k];
        r->y[o] = (float)(sum / (double)r->len);
        return 0;
    }
    for (i = 0; i < ni; i++)
        acc[i] = 0.0;
    for (k = 0; k < r->len; k++)
        for (i = 0; i < ni; i++)
            acc[i] += xo[k * r->inner + i];
    for (i = 0; i < ni; i++)
        r->y[o * r->inner + i0 + i] = (float)(acc[i] / (double)r->len);
    return 0;
}

static int
mean_run(struct smlp_kernel_ctx *ctx)
{
    const struct mean_priv *priv = ctx->priv;
    struct mean_run r;

    r.x = ctx->inputs[0]->data;
    r.y = ctx->outputs[0]->data;
    mean_split(ctx->inputs[0], priv->axis, &r.outer, &r.len, &r.inner);
    r.cols = (r.inner + MEAN_COLS - 1) / MEAN_COLS;
    return smlp_parallel_for(ctx->host, ctx->node, r.outer * r.cols,
                             mean_task, &r);
}

/* Backward over rows (o, k) [begin, end): dx[o,k,i] = dy[o,i] / len. */
static int
mean_grad_task(void *arg, int64_t begin, int64_t end, int worker)
{
    const struct mean_run *r = arg;
    float f = (float)(1.0 / (double)r->len);
    int64_t row, i;

    (void)worker;
    for (row = begin; row < end; row++) {
        const float *dyo = r->dy + row / r->len * r->inner;
        float *dst = r->dx + row * r->inner;

        for (i = 0; i < r->inner; i++)
            dst[i] = dyo[i] * f;
    }
    return 0;
}

/* dx[o,k,i] = dy[o,i] / len: every element of the axis gets its share. */
static int
mean_backward(struct smlp_backward_ctx *ctx)
{
    const struct mean_priv *priv = ctx->priv;
    const struct smlp_tensor *gy = ctx->grad_outputs[0];
    struct smlp_tensor *gx = ctx->grad_inputs[0];
    struct mean_run r;
    int64_t rows_per_task;

    if (gx == NULL)
        return SMLP_OK;
    if (gy == NULL)
        return smlp__core_zero_grads(ctx);
    mean_split(ctx->inputs[0], priv->axis, &r.outer, &r.len, &r.inner);
    r.dy = gy->data;
    r.dx = gx->data;
    rows_per_task = r.inner > 0 ? SMLP__CORE_CHUNK / r.inner : 1;
    return smlp__core_parallel_range(ctx->host, ctx->node, r.outer * r.len,
                                     rows_per_task > 0 ? rows_per_task : 1,
                                     mean_grad_task, &r);
}

/* ---- shared by argmax and softmax_cross_entropy ------------------------- */

/* Checks that input 0 (called `name`) is f32 [N,K] with K >= 1. */
static int
check_rows(struct smlp_infer_ctx *ctx, const char *name)
{
    char s[SMLP_SHAPE_STRLEN];
    int rc;

    if ((rc = smlp_infer_check_input(ctx, 0, name, SMLP_DTYPE_F32, 2, 2)) !=
        0)
        return rc;
    if (ctx->inputs[0]->shape[1] < 1)
        return smlp_infer_fail(ctx, SMLP_ESHAPE,
                               "input 0 (%s) has shape %s: needs at least "
                               "one class",
                               name, smlp_shape_str(ctx->inputs[0], s,
                                                    sizeof(s)));
    return SMLP_OK;
}

/* ---- core.argmax -------------------------------------------------------- */

static int
argmax_infer(struct smlp_infer_ctx *ctx)
{
    int rc;

    if ((rc = check_rows(ctx, "x")) != 0)
        return rc;
    smlp_infer_set_output(ctx, 0, SMLP_DTYPE_I32, 1, ctx->inputs[0]->shape);
    return SMLP_OK;
}

/* Ties go to the lowest index; a NaN wins over numbers (as in PyTorch). */
static int
argmax_run(struct smlp_kernel_ctx *ctx)
{
    const struct smlp_tensor *xt = ctx->inputs[0];
    const float *x = xt->data;
    int32_t *y = ctx->outputs[0]->data;
    int64_t n = xt->shape[0], k = xt->shape[1], r, j;

    for (r = 0; r < n; r++) {
        const float *row = x + r * k;
        int64_t best = 0;

        for (j = 1; j < k && !isnan(row[best]); j++)
            if (row[j] > row[best] || isnan(row[j]))
                best = j;
        y[r] = (int32_t)best;
    }
    return SMLP_OK;
}

/* ---- core.softmax_cross_entropy ----------------------------------------- */

struct sce_priv {
    double smoothing;
};

static int
sce_infer(struct smlp_infer_ctx *ctx)
{
    const struct smlp_tensor *logits, *labels;
    struct sce_priv priv = {0};
    char s1[SMLP_SHAPE_STRLEN], s2[SMLP_SHAPE_STRLEN];
    int rc;

    if ((rc = smlp_infer_attr_float(ctx, "label_smoothing", 0, 0.0,
                                    &priv.smoothing)) != 0)
        return rc;
    if (!(priv.smoothing >= 0.0 && priv.smoothing <= 1.0))
        return smlp_infer_fail(ctx, SMLP_EINVAL,
                               "attribute 'label_smoothing' = %g is invalid: "
                               "expected a value in [0, 1]",
                               priv.smoothing);
    if ((rc = check_rows(ctx, "logits")) != 0 ||
        (rc = smlp_infer_check_input(ctx, 1, "labels", SMLP_DTYPE_I32, 1,
                                     1)) != 0)
        return rc;
    logits = ctx->inputs[0];
    labels = ctx->inputs[1];
    if (labels->shape[0] != logits->shape[0])
        return smlp_infer_fail(ctx, SMLP_ESHAPE,
                               "input 1 (labels) has shape %s, expected "
                               "[%lld] (one label per row of input 0 "
                               "(logits) %s)",
                               smlp_shape_str(labels, s1, sizeof(s1)),
                               (long long)logits->shape[0],
                               smlp_shape_str(logits, s2, sizeof(s2)));
    smlp_infer_set_output(ctx, 0, SMLP_DTYPE_F32, 0, NULL);
    ctx->backward_workspace = (size_t)logits->shape[1] * sizeof(double);
    return smlp_infer_set_priv(ctx, &priv, sizeof(priv));
}

/*
 * Per row, with lse = max + log Σ exp(x - max) (no overflow for large
 * logits): −log p_k = lse − x_k, and the smoothed loss is
 * (1−ε)(lse − x_label) + ε(lse − mean_k x_k).  The mean over rows is the
 * loss; an empty batch gives NaN, as in PyTorch.
 */
static int
sce_run(struct smlp_kernel_ctx *ctx)
{
    const struct sce_priv *priv = ctx->priv;
    const struct smlp_tensor *lt = ctx->inputs[0];
    const float *logits = lt->data;
    const int32_t *labels = ctx->inputs[1]->data;
    int64_t n = lt->shape[0], k = lt->shape[1], r, j;
    double eps = priv->smoothing, total = 0.0;

    for (r = 0; r < n; r++) {
        const float *row = logits + r * k;
        double max = row[0], sum = 0.0, xsum = 0.0, lse;

        if (labels[r] < 0 || labels[r] >= k)
            return smlp_kernel_fail(ctx, SMLP_EINVAL,
                                    "row %lld: label %d is out of range "
                                    "[0, %lld)",
                                    (long long)r, (int)labels[r],
                                    (long long)k);
        for (j = 1; j < k; j++)
            if (row[j] > max)
                max = row[j];
        for (j = 0; j < k; j++) {
            sum += exp((double)row[j] - max);
            xsum += row[j];
        }
        lse = max + log(sum);
        total += (1.0 - eps) * (lse - row[labels[r]]);
        if (eps != 0.0)
            total += eps * (lse - xsum / (double)k);
    }
    *(float *)ctx->outputs[0]->data = (float)(total / (double)n);
    return SMLP_OK;
}

/*
 * d loss / d logits[r,j] = g/N·(p_j − (1−ε)·[j = label_r] − ε/K), with
 * p = softmax of row r (from the row's max, in double; the workspace holds
 * the row's exponentials) and g the incoming scalar gradient.
 */
static int
sce_backward(struct smlp_backward_ctx *ctx)
{
    const struct sce_priv *priv = ctx->priv;
    const struct smlp_tensor *lt = ctx->inputs[0];
    const struct smlp_tensor *gy = ctx->grad_outputs[0];
    struct smlp_tensor *gx = ctx->grad_inputs[0];
    const float *logits = lt->data;
    const int32_t *labels = ctx->inputs[1]->data;
    int64_t n = lt->shape[0], k = lt->shape[1], r, j;
    double eps = priv->smoothing, *e = ctx->workspace, g;
    float *dx;

    if (gx == NULL)
        return SMLP_OK;
    if (gy == NULL)
        return smlp__core_zero_grads(ctx);
    g = (double)*(const float *)gy->data / (double)n;
    dx = gx->data;
    for (r = 0; r < n; r++) {
        const float *row = logits + r * k;
        float *drow = dx + r * k;
        double max = row[0], sum = 0.0, inv;

        if (labels[r] < 0 || labels[r] >= k)
            return smlp__core_backward_fail(ctx, SMLP_EINVAL,
                                            "row %lld: label %d is out of "
                                            "range [0, %lld)",
                                            (long long)r, (int)labels[r],
                                            (long long)k);
        for (j = 1; j < k; j++)
            if (row[j] > max)
                max = row[j];
        for (j = 0; j < k; j++) {
            e[j] = exp((double)row[j] - max);
            sum += e[j];
        }
        inv = 1.0 / sum;
        for (j = 0; j < k; j++)
            drow[j] = (float)(g * (e[j] * inv - eps / (double)k));
        drow[labels[r]] = (float)(g * (e[labels[r]] * inv - (1.0 - eps) -
                                       eps / (double)k));
    }
    return SMLP_OK;
}

/* ---- definitions -------------------------------------------------------- */

static const struct smlp_kernel_def mean_cpu = {
    .size = sizeof(struct smlp_kernel_def),
    .abi = SMLP_ABI_VERSION,
    .device = SMLP_DEVICE_CPU,
    .dtype_mask = SMLP__MASK_F32,
    .run = mean_run,
    .score = SMLP__CORE_CPU_SCORE,
};

static const struct smlp_kernel_def argmax_cpu = {
    .size = sizeof(struct smlp_kernel_def),
    .abi = SMLP_ABI_VERSION,
    .device = SMLP_DEVICE_CPU,
    .dtype_mask = SMLP__MASK_F32,
    .run = argmax_run,
    .score = SMLP__CORE_CPU_SCORE,
};

static const struct smlp_kernel_def sce_cpu = {
    .size = sizeof(struct smlp_kernel_def),
    .abi = SMLP_ABI_VERSION,
    .device = SMLP_DEVICE_CPU,
    .dtype_mask = SMLP__MASK_F32 | SMLP__MASK_I32,
    .run = sce_run,
    .score = SMLP__CORE_CPU_SCORE,
};

static const struct smlp_kernel_def *const mean_kernels[] = {
    &mean_cpu, SMLP__CORE_CUDA(smlp__core_mean_cuda) NULL};
static const struct smlp_kernel_def *const argmax_kernels[] = {
    &argmax_cpu, SMLP__CORE_CUDA(smlp__core_argmax_cuda) NULL};
static const struct smlp_kernel_def *const sce_kernels[] = {
    &sce_cpu, SMLP__CORE_CUDA(smlp__core_sce_cuda) NULL};

static const struct smlp_attr_def mean_attrs[] = {
    {"axis", SMLP_ATTR_INT, 1, "the axis averaged over (negative from end)"},
    {"keepdims", SMLP_ATTR_INT, 0, "1 keeps the axis with size 1 (def. 0)"},
    {NULL, 0, 0, NULL},
};

static const struct smlp_attr_def sce_attrs[] = {
    {"label_smoothing", SMLP_ATTR_FLOAT, 0,
     "e in [0,1]: loss = (1-e)*CE + e*mean_k(-log p_k) (default 0)"},
    {NULL, 0, 0, NULL},
};

static const struct smlp_attr_def no_attrs[] = {{NULL, 0, 0, NULL}};

const struct smlp_op_def smlp__core_op_mean = {
    .size = sizeof(struct smlp_op_def),
    .abi = SMLP_ABI_VERSION,
    .name = "core.mean",
    .min_inputs = 1,
    .max_inputs = 1,
    .n_outputs = 1,
    .attrs = mean_attrs,
    .infer = mean_infer,
    .kernels = mean_kernels,
    .backward = mean_backward,
    .doc = "mean of x over one `axis` (`keepdims` keeps it as size 1)",
};

const struct smlp_op_def smlp__core_op_argmax = {
    .size = sizeof(struct smlp_op_def),
    .abi = SMLP_ABI_VERSION,
    .name = "core.argmax",
    .min_inputs = 1,
    .max_inputs = 1,
    .n_outputs = 1,
    .attrs = no_attrs,
    .infer = argmax_infer,
    .kernels = argmax_kernels,
    .doc = "x f32 [N,K] -> i32 [N], index of each row's max (ties: lowest)",
};

const struct smlp_op_def smlp__core_op_softmax_cross_entropy = {
    .size = sizeof(struct smlp_op_def),
    .abi = SMLP_ABI_VERSION,
    .name = "core.softmax_cross_entropy",
    .min_inputs = 2,
    .max_inputs = 2,
    .n_outputs = 1,
    .attrs = sce_attrs,
    .infer = sce_infer,
    .kernels = sce_kernels,
    .backward = sce_backward,
    .doc = "logits f32 [N,K], labels i32 [N] -> mean -log softmax[label], "
           "scalar f32",
};
