/*
 * layer_norm.c - norm.layer_norm over the last axis.
 *
 * x [..., d], gamma [d], beta [d] -> y of x's shape:
 * y = (x - mean) / sqrt(var + eps) · gamma + beta per row of d values,
 * with the biased variance.  Mean and variance are computed in double,
 * in index order (two passes), so results do not depend on threads.
 *
 * Backward, per row with x̂ = (x - mean)·rstd, rstd = 1/sqrt(var + eps)
 * and g = dy·gamma:
 *   dx     = rstd·(g - mean_j(g) - x̂·mean_j(g·x̂)),
 *   dgamma = Σ_rows dy·x̂,   dbeta = Σ_rows dy.
 * The row statistics and the two row sums are recomputed in double with
 * LN_LANES partial sums (element j goes to lane j mod LN_LANES, lanes are
 * added in lane order), so the loops vectorise and the order is fixed;
 * they agree with the forward's sequential sums to double rounding, far
 * below f32 resolution.  dgamma and dbeta accumulate in double in row
 * order in the backward workspace (2·d doubles).  Single-threaded: the
 * result does not depend on `threads`.
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
    if ((uint64_t)d > SIZE_MAX / (2 * sizeof(double)))
        return smlp_infer_fail(ctx, SMLP_ELIMIT,
                               "input 0 (x) has shape %s: the last dim "
                               "overflows the backward workspace size",
                               smlp_shape_str(x, s, sizeof(s)));
    smlp_infer_set_output(ctx, 0, SMLP_DTYPE_F32, x->rank, x->shape);
    /* dgamma and dbeta accumulators. */
    smlp__norm_set_backward_workspace(ctx, 2 * (size_t)d * sizeof(double));
    return smlp_infer_set_priv(ctx, &priv, sizeof(priv));
}

static int
layer_norm_run(struct smlp_kernel_ctx *ctx)
{
    const struct layer_norm_priv *priv = ctx->priv;
    const struct smlp_tensor *xt = ctx->inputs[0];
    const float *x = xt->data;
    const float *gamma = ctx->inputs[1]->data, *beta = ctx->inputs[2]->data;
    float *y = ctx->outputs[0]->data;
    int64_t d = xt->shape[xt->rank - 1], rows, r, j;

    rows = smlp_tensor_numel(xt) / d;
    for (r = 0; r < rows; r++) {
        const float *xr = x + r * d;
        float *yr = y + r * d;
        double mean = 0.0, var = 0.0, rstd;

        for (j = 0; j < d; j++)
            mean += xr[j];
        mean /= (double)d;
        for (j = 0; j < d; j++) {
            double c = xr[j] - mean;
            var += c * c;
        }
        var /= (double)d;
        rstd = 1.0 / sqrt(var + priv->eps);
        for (j = 0; j < d; j++)
            yr[j] = (float)((xr[j] - mean) * rstd * gamma[j] + beta[j]);
    }
    return SMLP_OK;
}

/* ---- backward ----------------------------------------------------------- */

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
 * One row of the backward: mean and rstd of x[0..d), then dx (when dx is
 * not NULL), and dy·x̂ added into dg and dy into db (each when not NULL).
 */
SMLP_VECTOR_CLONES static void
layer_norm_backward_row(const float *x, const float *dy, const float *gamma,
                        int64_t d, double eps, float *dx, double *dg,
                        double *db)
{
    double a1[LN_LANES] = {0}, a2[LN_LANES] = {0};
    double mean, rstd, c1, c2;
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
    rstd = 1.0 / sqrt(lanes_total(a1) / (double)d + eps);
    if (dx != NULL) {
        /* c1 = mean_j(g), c2 = mean_j(g·x̂) with g = dy·gamma. */
        for (l = 0; l < LN_LANES; l++)
            a1[l] = 0.0;
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
    if (dg != NULL)
        for (j = 0; j < d; j++)
            dg[j] += (double)dy[j] * (((double)x[j] - mean) * rstd);
    if (db != NULL)
        for (j = 0; j < d; j++)
            db[j] += (double)dy[j];
}

static int
layer_norm_backward(struct smlp_backward_ctx *ctx)
{
    const struct layer_norm_priv *priv = ctx->priv;
    const struct smlp_tensor *xt = ctx->inputs[0];
    const struct smlp_tensor *dyt = ctx->grad_outputs[0];
    struct smlp_tensor *gx = ctx->grad_inputs[0];
    struct smlp_tensor *gg = ctx->grad_inputs[1], *gb = ctx->grad_inputs[2];
    const float *x = xt->data, *gamma = ctx->inputs[1]->data, *dy;
    int64_t d = xt->shape[xt->rank - 1], rows, r, j;
    double *dg = NULL, *db = NULL;

    if (gx == NULL && gg == NULL && gb == NULL)
        return SMLP_OK;
    if (dyt == NULL) {
        /* No gradient reaches y: every wanted gradient is zero. */
        smlp__norm_zero_grad(gx);
        smlp__norm_zero_grad(gg);
        smlp__norm_zero_grad(gb);
        return SMLP_OK;
    }
    dy = dyt->data;
    rows = smlp_tensor_numel(xt) / d;
    if (gg != NULL)
        dg = ctx->workspace;
    if (gb != NULL)
        db = (double *)ctx->workspace + d;
    for (j = 0; j < d; j++) {
        if (dg != NULL)
            dg[j] = 0.0;
        if (db != NULL)
            db[j] = 0.0;
    }
    for (r = 0; r < rows; r++)
        layer_norm_backward_row(x + r * d, dy + r * d, gamma, d, priv->eps,
                                gx != NULL ? (float *)gx->data + r * d
                                           : NULL,
                                dg, db);
    for (j = 0; j < d; j++) {
        if (dg != NULL)
            ((float *)gg->data)[j] = (float)dg[j];
        if (db != NULL)
            ((float *)gb->data)[j] = (float)db[j];
    }
    return SMLP_OK;
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
