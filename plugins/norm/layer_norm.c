/*
 * layer_norm.c - norm.layer_norm over the last axis.
 *
 * x [..., d], gamma [d], beta [d] -> y of x's shape:
 * y = (x - mean) / sqrt(var + eps) · gamma + beta per row of d values,
 * with the biased variance.  Mean and variance are computed in double in
 * two passes, each with LN_LANES partial sums (element j goes to lane
 * j mod LN_LANES, lanes added in lane order: a fixed order that
 * vectorises), by ln_row_stats, which the backward shares.
 *
 * Backward, per row with x̂ = (x - mean)·rstd, rstd = 1/sqrt(var + eps)
 * and g = dy·gamma:
 *   dx     = rstd·(g - mean_j(g) - x̂·mean_j(g·x̂)),
 *   dgamma = Σ_rows dy·x̂,   dbeta = Σ_rows dy.
 * The row statistics are recomputed as the forward computes them
 * (ln_row_stats) and the two row sums the same way, with LN_LANES
 * partial sums.  dgamma and dbeta accumulate in double in row
 * order in the backward workspace (2·d doubles, then each row's mean and
 * rstd: 2·rows doubles).
 *
 * Threads: the forward and the backward's row pass (statistics, dx) run
 * in chunks of rows, the backward's column pass (dgamma, dbeta: every
 * column's sum whole in one task, rows in order) in chunks of LN_COLS
 * columns; the cuts depend on the shape only, so the result does not
 * depend on `threads`.
 */
#include <math.h>

#include "norm.h"

struct layer_norm_priv {
    double eps;
};

static int
layer_norm_infer(struct smlp_infer_ctx *ctx)
{
    const struct smlp_tensor *x;
    struct layer_norm_priv priv = {0};
    char s[SMLP_SHAPE_STRLEN], why[SMLP_SHAPE_STRLEN + 64];
    int64_t d;
    int rc;

    if ((rc = smlp__norm_attr_range(ctx, "eps", 1e-6, 0.0, HUGE_VAL,
                                    &priv.eps)) != 0 ||
        (rc = smlp_infer_check_input(ctx, 0, "x", SMLP_DTYPE_F32, 1,
                                     SMLP_MAX_RANK)) != 0 ||
        (rc = smlp_infer_check_input(ctx, 1, "gamma", SMLP_DTYPE_F32, 1,
                                     1)) != 0 ||
        (rc = smlp_infer_check_input(ctx, 2, "beta", SMLP_DTYPE_F32, 1,
                                     1)) != 0)
        return rc;
    x = ctx->inputs[0];
    d = x->shape[x->rank - 1];
    if (d < 1)
        return smlp_infer_fail(ctx, SMLP_ESHAPE,
                               "input 0 (x) has shape %s: the last dim is "
                               "empty",
                               smlp_shape_str(x, s, sizeof(s)));
    snprintf(why, sizeof(why), "the last dim of input 0 (x) %s",
             smlp_shape_str(x, s, sizeof(s)));
    if ((rc = smlp_infer_check_vector(ctx, 1, "gamma", d, why)) != 0 ||
        (rc = smlp_infer_check_vector(ctx, 2, "beta", d, why)) != 0)
        return rc;
    if ((uint64_t)smlp_tensor_numel(x) / (uint64_t)d + (uint64_t)d >
        SIZE_MAX / (2 * sizeof(double)))
        return smlp_infer_fail(ctx, SMLP_ELIMIT,
                               "input 0 (x) has shape %s: the last dim "
                               "overflows the backward workspace size",
                               smlp_shape_str(x, s, sizeof(s)));
    smlp_infer_set_output(ctx, 0, SMLP_DTYPE_F32, x->rank, x->shape);
    /* dgamma and dbeta accumulators, then each row's mean and rstd. */
    smlp__norm_set_backward_workspace(
        ctx, 2 * ((size_t)d + (size_t)(smlp_tensor_numel(x) / d)) *
                 sizeof(double));
    return smlp_infer_set_priv(ctx, &priv, sizeof(priv));
}

/* Partial sums per row reduction; a multiple of the widest vector of
 * doubles (AVX2: 4) so that the lane loops vectorise. */
#define LN_LANES 8

/* The lanes of a partial sum added in lane order. */
static inline double
lanes_total(const double *acc)
{
    double s = 0.0;
    int l;

    for (l = 0; l < LN_LANES; l++)
        s += acc[l];
    return s;
}

/*
 * mean and rstd = 1/sqrt(var + eps) of x[0..d): both sums in double with
 * LN_LANES partial sums (element j goes to lane j mod LN_LANES, lanes
 * added in lane order), two passes.
 */
static inline void
ln_row_stats(const float *x, int64_t d, double eps, double *mean_out,
             double *rstd_out)
{
    double a1[LN_LANES] = {0};
    double mean;
    int64_t j, dv = d - d % LN_LANES;
    int l;

    for (j = 0; j < dv; j += LN_LANES)
        for (l = 0; l < LN_LANES; l++)
            a1[l] += (double)x[j + l];
    for (; j < d; j++)
        a1[j - dv] += (double)x[j];
    mean = lanes_total(a1) / (double)d;
    for (l = 0; l < LN_LANES; l++)
        a1[l] = 0.0;
    for (j = 0; j < dv; j += LN_LANES)
        for (l = 0; l < LN_LANES; l++) {
            double c = (double)x[j + l] - mean;

            a1[l] += c * c;
        }
    for (; j < d; j++) {
        double c = (double)x[j] - mean;

        a1[j - dv] += c * c;
    }
    *mean_out = mean;
    *rstd_out = 1.0 / sqrt(lanes_total(a1) / (double)d + eps);
}

/* Rows per task: about 16 Ki elements, at least one row. */
static int64_t
ln_rowsper_task(int64_t d)
{
    return d < 16384 ? 16384 / d : 1;
}

struct ln_run {
    const struct layer_norm_priv *priv;
    int64_t d, rows;
    const float *x, *dy, *gamma, *beta;
    float *y, *dx, *dgamma, *dbeta;
    double *dg, *db, *stats; /* backward workspace */
};

/* y[0..d) of one row. */
SMLP_VECTOR_CLONES static void
ln_forward_row(const float *x, const float *gamma, const float *beta,
               int64_t d, double eps, float *y)
{
    double mean, rstd;
    int64_t j;

    ln_row_stats(x, d, eps, &mean, &rstd);
    for (j = 0; j < d; j++)
        y[j] = (float)(((double)x[j] - mean) * rstd * (double)gamma[j] +
                       (double)beta[j]);
}

/* Forward, rows [r0, r1). */
static int
ln_forward_task(void *arg, int64_t r0, int64_t r1, int worker)
{
    const struct ln_run *t = arg;
    int64_t d = t->d, r;

    (void)worker;
    for (r = r0; r < r1; r++)
        ln_forward_row(t->x + r * d, t->gamma, t->beta, d, t->priv->eps,
                       t->y + r * d);
    return 0;
}

static int
layer_norm_run(struct smlp_kernel_ctx *ctx)
{
    const struct smlp_tensor *xt = ctx->inputs[0];
    struct ln_run t;

    memset(&t, 0, sizeof(t));
    t.priv = ctx->priv;
    t.d = xt->shape[xt->rank - 1];
    t.x = xt->data;
    t.gamma = ctx->inputs[1]->data;
    t.beta = ctx->inputs[2]->data;
    t.y = ctx->outputs[0]->data;
    return smlp__norm_parallel_range(ctx->host, ctx->node,
                                     smlp_tensor_numel(xt) / t.d,
                                     ln_rowsper_task(t.d), ln_forward_task,
                                     &t);
}

/* ---- backward ----------------------------------------------------------- */

/*
 * One row of the backward: mean and rstd of x[0..d) (returned through
 * stat[0], stat[1]), then dx when dx is not NULL.
 */
SMLP_VECTOR_CLONES static void
layer_norm_backward_row(const float *x, const float *dy, const float *gamma,
                        int64_t d, double eps, float *dx, double *stat)
{
    double a1[LN_LANES] = {0}, a2[LN_LANES] = {0};
    double mean, rstd, c1, c2;
    int64_t j, dv = d - d % LN_LANES;
    int l;

    ln_row_stats(x, d, eps, &mean, &rstd);
    stat[0] = mean;
    stat[1] = rstd;
    if (dx == NULL)
        return;
    /* c1 = mean_j(g), c2 = mean_j(g·x̂) with g = dy·gamma. */
    for (j = 0; j < dv; j += LN_LANES)
        for (l = 0; l < LN_LANES; l++) {
            double g = (double)dy[j + l] * (double)gamma[j + l];

            a1[l] += g;
            a2[l] += g * ((double)x[j + l] - mean);
        }
    for (; j < d; j++) {
        double g = (double)dy[j] * (double)gamma[j];

        a1[j - dv] += g;
        a2[j - dv] += g * ((double)x[j] - mean);
    }
    c1 = lanes_total(a1) / (double)d;
    c2 = lanes_total(a2) * rstd / (double)d;
    for (j = 0; j < d; j++) {
        double xh = ((double)x[j] - mean) * rstd;
        double g = (double)dy[j] * (double)gamma[j];

        dx[j] = (float)(rstd * (g - c1 - xh * c2));
    }
}

/* Backward, rows [r0, r1): row statistics (kept) and dx. */
static int
ln_backward_rows(void *arg, int64_t r0, int64_t r1, int worker)
{
    const struct ln_run *t = arg;
    int64_t d = t->d, r;

    (void)worker;
    for (r = r0; r < r1; r++)
        layer_norm_backward_row(t->x + r * d, t->dy + r * d, t->gamma, d,
                                t->priv->eps,
                                t->dx != NULL ? t->dx + r * d : NULL,
                                t->stats + 2 * r);
    return 0;
}

/* Columns per task of dgamma and dbeta. */
#define LN_COLS 64

/* Backward, columns [j0, j1): dgamma = Σ_rows dy·x̂, dbeta = Σ_rows dy,
 * in double, rows in order. */
SMLP_VECTOR_CLONES static int
ln_backward_cols(void *arg, int64_t j0, int64_t j1, int worker)
{
    const struct ln_run *t = arg;
    int64_t d = t->d, rows = t->rows, r, j;

    (void)worker;
    for (j = j0; j < j1; j++) {
        if (t->dg != NULL)
            t->dg[j] = 0.0;
        if (t->db != NULL)
            t->db[j] = 0.0;
    }
    for (r = 0; r < rows; r++) {
        const float *x = t->x + r * d, *dy = t->dy + r * d;
        double mean = t->stats[2 * r], rstd = t->stats[2 * r + 1];

        if (t->dg != NULL)
            for (j = j0; j < j1; j++)
                t->dg[j] += (double)dy[j] * (((double)x[j] - mean) * rstd);
        if (t->db != NULL)
            for (j = j0; j < j1; j++)
                t->db[j] += (double)dy[j];
    }
    for (j = j0; j < j1; j++) {
        if (t->dg != NULL)
            t->dgamma[j] = (float)t->dg[j];
        if (t->db != NULL)
            t->dbeta[j] = (float)t->db[j];
    }
    return 0;
}

static int
layer_norm_backward(struct smlp_backward_ctx *ctx)
{
    const struct smlp_tensor *xt = ctx->inputs[0];
    const struct smlp_tensor *dyt = ctx->grad_outputs[0];
    struct smlp_tensor *gx = ctx->grad_inputs[0];
    struct smlp_tensor *gg = ctx->grad_inputs[1], *gb = ctx->grad_inputs[2];
    struct ln_run t;
    int rc;

    if (gx == NULL && gg == NULL && gb == NULL)
        return SMLP_OK;
    if (dyt == NULL) {
        /* No gradient reaches y: every wanted gradient is zero. */
        smlp__norm_zero_grad(gx);
        smlp__norm_zero_grad(gg);
        smlp__norm_zero_grad(gb);
        return SMLP_OK;
    }
    memset(&t, 0, sizeof(t));
    t.priv = ctx->priv;
    t.d = xt->shape[xt->rank - 1];
    t.rows = smlp_tensor_numel(xt) / t.d;
    t.x = xt->data;
    t.dy = dyt->data;
    t.gamma = ctx->inputs[1]->data;
    t.dx = gx != NULL ? gx->data : NULL;
    t.dgamma = gg != NULL ? gg->data : NULL;
    t.dbeta = gb != NULL ? gb->data : NULL;
    t.dg = gg != NULL ? (double *)ctx->workspace : NULL;
    t.db = gb != NULL ? (double *)ctx->workspace + t.d : NULL;
    t.stats = (double *)ctx->workspace + 2 * t.d;
    if ((rc = smlp__norm_parallel_range(ctx->host, ctx->node, t.rows,
                                        ln_rowsper_task(t.d),
                                        ln_backward_rows, &t)) != 0)
        return rc;
    if (gg == NULL && gb == NULL)
        return SMLP_OK;
    return smlp__norm_parallel_range(ctx->host, ctx->node, t.d, LN_COLS,
                                     ln_backward_cols, &t);
}

static const struct smlp_attr_def layer_norm_attrs[] = {
    {"eps", SMLP_ATTR_FLOAT, 0, "added to the variance (default 1e-6)"},
    {NULL, 0, 0, NULL},
};

static const struct smlp_kernel_def layer_norm_cpu = {
    .size = sizeof(struct smlp_kernel_def),
    .abi = SMLP_ABI_VERSION,
    .device = SMLP_DEVICE_CPU,
    .dtype_mask = 1u << SMLP_DTYPE_F32,
    .run = layer_norm_run,
    .score = SMLP__NORM_CPU_SCORE,
};

static const struct smlp_kernel_def *const layer_norm_kernels[] = {
    &layer_norm_cpu, SMLP__NORM_CUDA(smlp__norm_layer_norm_cuda) NULL};

const struct smlp_op_def smlp__norm_op_layer_norm = {
    .size = sizeof(struct smlp_op_def),
    .abi = SMLP_ABI_VERSION,
    .name = "norm.layer_norm",
    .min_inputs = 3,
    .max_inputs = 3,
    .n_outputs = 1,
    .attrs = layer_norm_attrs,
    .infer = layer_norm_infer,
    .kernels = layer_norm_kernels,
    .backward = layer_norm_backward,
    .doc = "x [..,d], gamma [d], beta [d] -> (x-mean)/sqrt(var+eps)*gamma+beta "
           "over the last axis",
};
