/*
 * batch_norm.c - norm.batch_norm over the rows of x [N, d].
 *
 * Inputs: x, gamma, beta, running_mean, running_var when affine = 1;
 * x, running_mean, running_var when affine = 0.  The running statistics
 * are state tensors that the kernel updates in place.
 *
 * Training: normalise with the batch mean and biased variance, then
 *   running_mean = (1 - momentum)·running_mean + momentum·mean
 *   running_var  = (1 - momentum)·running_var  + momentum·var·N/(N-1)
 * (the unbiased variance, as PyTorch does).  Inference: normalise with the
 * running statistics, which stay untouched.  y = (x - mean)/sqrt(var +
 * eps)·gamma + beta.  Column statistics are summed in double in row order
 * (fixed order) into the workspace.
 *
 * Backward, with rstd = 1/sqrt(var + eps), x̂ = (x - mean)·rstd and
 * gamma = 1 when affine = 0, per column:
 *   dbeta = Σ_rows dy,  dgamma = Σ_rows dy·x̂;
 *   training (mean, var the batch statistics, functions of x):
 *     dx = gamma·rstd·(dy - dbeta/N - x̂·dgamma/N);
 *   inference (mean, var the running statistics, constants):
 *     dx = gamma·rstd·dy.
 * running_mean and running_var are state, not parameters: they get no
 * gradient (zeros when one is asked for anyway).  Column sums run in
 * double in row order with the columns as the inner, vectorised loop, so
 * the order is fixed and the result does not depend on `threads`; the
 * backward workspace holds 4·d doubles.  The mode comes from the session
 * that inferred the node (the backward context has no training flag).
 */
#include <math.h>

#include "norm.h"

struct batch_norm_priv {
    double eps;
    double momentum;
    int affine;
    int training; /* the session mode infer saw */
};

/* Input slots of the running statistics. */
static int
rm_slot(int affine)
{
    return affine ? 3 : 1;
}

static int
batch_norm_infer(struct smlp_infer_ctx *ctx)
{
    static const char *const names[2][5] = {
        {"x", "running_mean", "running_var", NULL, NULL},
        {"x", "gamma", "beta", "running_mean", "running_var"},
    };
    const struct smlp_tensor *x;
    struct batch_norm_priv priv = {0};
    int64_t affine;
    char s[SMLP_SHAPE_STRLEN], why[SMLP_SHAPE_STRLEN + 64];
    int rc, i, want;

    if ((rc = smlp__norm_attr_range(ctx, "eps", 1e-5, 0.0, HUGE_VAL,
                                    &priv.eps)) != 0 ||
        (rc = smlp__norm_attr_range(ctx, "momentum", 0.1, 0.0, 1.0,
                                    &priv.momentum)) != 0 ||
        (rc = smlp_infer_attr_int(ctx, "affine", 0, 1, &affine)) != 0)
        return rc;
    if (affine != 0 && affine != 1)
        return smlp_infer_fail(ctx, SMLP_EINVAL,
                               "attribute 'affine' = %lld is invalid: "
                               "expected 0 or 1",
                               (long long)affine);
    priv.affine = (int)affine;
    want = affine ? 5 : 3;
    if (ctx->n_inputs != want)
        return smlp_infer_fail(ctx, SMLP_EINVAL,
                               "affine=%d takes %d inputs (%s), got %d",
                               priv.affine, want,
                               affine ? "x, gamma, beta, running_mean, "
                                        "running_var"
                                      : "x, running_mean, running_var",
                               (int)ctx->n_inputs);
    if ((rc = smlp_infer_check_input(ctx, 0, "x", SMLP_DTYPE_F32, 2, 2)) !=
        0)
        return rc;
    x = ctx->inputs[0];
    snprintf(why, sizeof(why), "dim 1 of input 0 (x) %s",
             smlp_shape_str(x, s, sizeof(s)));
    for (i = 1; i < want; i++)
        if ((rc = smlp_infer_check_input(ctx, i, names[affine][i],
                                         SMLP_DTYPE_F32, 1, 1)) != 0 ||
            (rc = smlp_infer_check_vector(ctx, i, names[affine][i],
                                          x->shape[1], why)) != 0)
            return rc;
    if (ctx->training && x->shape[0] < 2)
        return smlp_infer_fail(ctx, SMLP_ESHAPE,
                               "input 0 (x) has shape %s: training needs "
                               "more than one row per channel",
                               s);
    if ((uint64_t)x->shape[1] > SIZE_MAX / (4 * sizeof(double)))
        return smlp_infer_fail(ctx, SMLP_ELIMIT,
                               "input 0 (x) has shape %s: dim 1 overflows "
                               "the workspace size",
                               s);
    priv.training = ctx->training != 0;
    smlp_infer_set_output(ctx, 0, SMLP_DTYPE_F32, 2, x->shape);
    ctx->workspace = 2 * (size_t)x->shape[1] * sizeof(double);
    smlp__norm_set_backward_workspace(ctx, 4 * (size_t)x->shape[1] *
                                               sizeof(double));
    return smlp_infer_set_priv(ctx, &priv, sizeof(priv));
}

/* Batch mean and biased variance of each column, in row order. */
static void
column_stats(const float *x, int64_t n, int64_t d, double *mean,
             double *var)
{
    int64_t r, j;

    for (j = 0; j < d; j++) {
        mean[j] = 0.0;
        var[j] = 0.0;
    }
    for (r = 0; r < n; r++)
        for (j = 0; j < d; j++)
            mean[j] += x[r * d + j];
    for (j = 0; j < d; j++)
        mean[j] /= (double)n;
    for (r = 0; r < n; r++)
        for (j = 0; j < d; j++) {
            double c = x[r * d + j] - mean[j];
            var[j] += c * c;
        }
    for (j = 0; j < d; j++)
        var[j] /= (double)n;
}

static int
batch_norm_run(struct smlp_kernel_ctx *ctx)
{
    const struct batch_norm_priv *priv = ctx->priv;
    const struct smlp_tensor *xt = ctx->inputs[0];
    const float *x = xt->data;
    const float *gamma = priv->affine ? ctx->inputs[1]->data : NULL;
    const float *beta = priv->affine ? ctx->inputs[2]->data : NULL;
    float *rmean = ctx->inputs[rm_slot(priv->affine)]->data;
    float *rvar = ctx->inputs[rm_slot(priv->affine) + 1]->data;
    float *y = ctx->outputs[0]->data;
    int64_t n = xt->shape[0], d = xt->shape[1], r, j;
    double *mean = ctx->workspace, *scale = mean + d, m = priv->momentum;

    if (ctx->training) {
        if (n < 2)
            return smlp_kernel_fail(ctx, SMLP_EINVAL,
                                    "training needs more than one row per "
                                    "channel, got %lld",
                                    (long long)n);
        column_stats(x, n, d, mean, scale);
        for (j = 0; j < d; j++) {
            double unbiased = scale[j] * (double)n / (double)(n - 1);

            rmean[j] = (float)((1.0 - m) * rmean[j] + m * mean[j]);
            rvar[j] = (float)((1.0 - m) * rvar[j] + m * unbiased);
        }
    } else {
        for (j = 0; j < d; j++) {
            mean[j] = rmean[j];
            scale[j] = rvar[j];
        }
    }
    /* scale holds the variance; turn it into gamma / sqrt(var + eps). */
    for (j = 0; j < d; j++)
        scale[j] = (gamma ? gamma[j] : 1.0) / sqrt(scale[j] + priv->eps);
    for (r = 0; r < n; r++)
        for (j = 0; j < d; j++)
            y[r * d + j] = (float)((x[r * d + j] - mean[j]) * scale[j] +
                                   (beta ? beta[j] : 0.0));
    return SMLP_OK;
}

/* ---- backward ----------------------------------------------------------- */

/*
 * The column sums of the backward: sg[j] = Σ_r dy[r, j] and sgx[j] =
 * Σ_r dy[r, j]·(x[r, j] - mean[j]), in double in row order.
 */
SMLP_VECTOR_CLONES static void
backward_sums(const float *x, const float *dy, int64_t n, int64_t d,
              const double *mean, double *sg, double *sgx)
{
    int64_t r, j;

    for (j = 0; j < d; j++) {
        sg[j] = 0.0;
        sgx[j] = 0.0;
    }
    for (r = 0; r < n; r++) {
        const float *xr = x + r * d, *dr = dy + r * d;

        for (j = 0; j < d; j++) {
            sg[j] += (double)dr[j];
            sgx[j] += (double)dr[j] * ((double)xr[j] - mean[j]);
        }
    }
}

/* dx[r, j] = a[j]·(dy[r, j] - b[j] - (x[r, j] - mean[j])·c[j]). */
SMLP_VECTOR_CLONES static void
backward_dx(const float *x, const float *dy, int64_t n, int64_t d,
            const double *mean, const double *a, const double *b,
            const double *c, float *dx)
{
    int64_t r, j;

    for (r = 0; r < n; r++) {
        const float *xr = x + r * d, *dr = dy + r * d;
        float *out = dx + r * d;

        for (j = 0; j < d; j++)
            out[j] = (float)(a[j] * ((double)dr[j] - b[j] -
                                     ((double)xr[j] - mean[j]) * c[j]));
    }
}

static int
batch_norm_backward(struct smlp_backward_ctx *ctx)
{
    const struct batch_norm_priv *priv = ctx->priv;
    const struct smlp_tensor *xt = ctx->inputs[0];
    const struct smlp_tensor *dyt = ctx->grad_outputs[0];
    int rm = rm_slot(priv->affine);
    struct smlp_tensor *gx = ctx->grad_inputs[0];
    struct smlp_tensor *gg = priv->affine ? ctx->grad_inputs[1] : NULL;
    struct smlp_tensor *gb = priv->affine ? ctx->grad_inputs[2] : NULL;
    const float *x = xt->data, *dy;
    const float *gamma = priv->affine ? ctx->inputs[1]->data : NULL;
    const float *rmean = ctx->inputs[rm]->data;
    const float *rvar = ctx->inputs[rm + 1]->data;
    int64_t n = xt->shape[0], d = xt->shape[1], j;
    double *mean = ctx->workspace, *rstd = mean + d, *sg = rstd + d;
    double *sgx = sg + d;

    /* State: no gradient. */
    smlp__norm_zero_grad(ctx->grad_inputs[rm]);
    smlp__norm_zero_grad(ctx->grad_inputs[rm + 1]);
    if (gx == NULL && gg == NULL && gb == NULL)
        return SMLP_OK;
    if (dyt == NULL) {
        smlp__norm_zero_grad(gx);
        smlp__norm_zero_grad(gg);
        smlp__norm_zero_grad(gb);
        return SMLP_OK;
    }
    dy = dyt->data;
    if (priv->training)
        column_stats(x, n, d, mean, rstd);
    else
        for (j = 0; j < d; j++) {
            mean[j] = rmean[j];
            rstd[j] = rvar[j];
        }
    for (j = 0; j < d; j++)
        rstd[j] = 1.0 / sqrt(rstd[j] + priv->eps);
    backward_sums(x, dy, n, d, mean, sg, sgx);
    for (j = 0; j < d; j++) {
        if (gb != NULL)
            ((float *)gb->data)[j] = (float)sg[j];
        if (gg != NULL)
            ((float *)gg->data)[j] = (float)(sgx[j] * rstd[j]);
    }
    if (gx == NULL)
        return SMLP_OK;
    /* dx = a·(dy - b - (x - mean)·c): a = gamma·rstd; training b =
     * Σdy/N, c = rstd²·Σ dy·(x - mean)/N; inference b = c = 0.  sg, sgx
     * become b, c in place. */
    for (j = 0; j < d; j++) {
        double b = 0.0, c = 0.0;

        if (priv->training) {
            b = sg[j] / (double)n;
            c = sgx[j] * rstd[j] * rstd[j] / (double)n;
        }
        sg[j] = b;
        sgx[j] = c;
        rstd[j] *= gamma != NULL ? (double)gamma[j] : 1.0;
    }
    backward_dx(x, dy, n, d, mean, rstd, sg, sgx, gx->data);
    return SMLP_OK;
}

static const struct smlp_attr_def batch_norm_attrs[] = {
    {"eps", SMLP_ATTR_FLOAT, 0, "added to the variance (default 1e-5)"},
    {"momentum", SMLP_ATTR_FLOAT, 0,
     "weight of the batch in the running stats (default 0.1)"},
    {"affine", SMLP_ATTR_INT, 0, "1 (default): inputs gamma and beta"},
    {NULL, 0, 0, NULL},
};

static const struct smlp_kernel_def batch_norm_cpu = {
    .size = sizeof(struct smlp_kernel_def),
    .abi = SMLP_ABI_VERSION,
    .device = SMLP_DEVICE_CPU,
    .dtype_mask = 1u << SMLP_DTYPE_F32,
    .run = batch_norm_run,
    .score = SMLP__NORM_CPU_SCORE,
};

static const struct smlp_kernel_def *const batch_norm_kernels[] = {
    &batch_norm_cpu, SMLP__NORM_CUDA(smlp__norm_batch_norm_cuda) NULL};

const struct smlp_op_def smlp__norm_op_batch_norm = {
    .size = sizeof(struct smlp_op_def),
    .abi = SMLP_ABI_VERSION,
    .name = "norm.batch_norm",
    .min_inputs = 3,
    .max_inputs = 5,
    .n_outputs = 1,
    .attrs = batch_norm_attrs,
    .infer = batch_norm_infer,
    .kernels = batch_norm_kernels,
    .backward = batch_norm_backward,
    .doc = "x [N,d]; inputs x, gamma, beta, running_mean, running_var "
           "(affine=0: x, running_mean, running_var)",
};
