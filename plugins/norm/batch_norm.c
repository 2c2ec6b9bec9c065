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
 *
 * Threads: forward and backward each run as tasks of BN_COLS columns,
 * every column whole in one task (cut by the shape only).
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

/* Columns per task: every column is independent (its sums run over all
 * rows, in row order, in one task). */
#define BN_COLS 64

/*
 * Batch mean and biased variance of columns [0, w) of x (rows of stride
 * ld), in row order.
 */
static void
column_stats(const float *x, int64_t n, int64_t ld, int64_t w, double *mean,
             double *var)
{
    int64_t r, j;

    for (j = 0; j < w; j++) {
        mean[j] = 0.0;
        var[j] = 0.0;
    }
    for (r = 0; r < n; r++)
        for (j = 0; j < w; j++)
            mean[j] += x[r * ld + j];
    for (j = 0; j < w; j++)
        mean[j] /= (double)n;
    for (r = 0; r < n; r++)
        for (j = 0; j < w; j++) {
            double c = x[r * ld + j] - mean[j];
            var[j] += c * c;
        }
    for (j = 0; j < w; j++)
        var[j] /= (double)n;
}

/* What the column tasks of the forward and the backward share. */
struct bn_run {
    const struct batch_norm_priv *priv;
    int training;
    int64_t n, d;
    const float *x, *dy, *gamma, *beta;
    float *rmean, *rvar, *y, *dx, *dgamma, *dbeta;
    const float *crmean, *crvar;
    double *ws; /* forward: mean, scale; backward: mean, rstd, sg, sgx */
};

/* Forward, columns [j0, j1): statistics, running update, y. */
static int
bn_forward_task(void *arg, int64_t j0, int64_t j1, int worker)
{
    const struct bn_run *t = arg;
    int64_t n = t->n, d = t->d, w = j1 - j0, r, j;
    double *mean = t->ws + j0, *scale = t->ws + d + j0;
    double m = t->priv->momentum;

    (void)worker;
    if (t->training) {
        column_stats(t->x + j0, n, d, w, mean, scale);
        for (j = 0; j < w; j++) {
            double unbiased = scale[j] * (double)n / (double)(n - 1);

            t->rmean[j0 + j] =
                (float)((1.0 - m) * t->rmean[j0 + j] + m * mean[j]);
            t->rvar[j0 + j] =
                (float)((1.0 - m) * t->rvar[j0 + j] + m * unbiased);
        }
    } else {
        for (j = 0; j < w; j++) {
            mean[j] = t->rmean[j0 + j];
            scale[j] = t->rvar[j0 + j];
        }
    }
    /* scale holds the variance; turn it into gamma / sqrt(var + eps). */
    for (j = 0; j < w; j++)
        scale[j] = (t->gamma ? t->gamma[j0 + j] : 1.0) /
                   sqrt(scale[j] + t->priv->eps);
    for (r = 0; r < n; r++)
        for (j = 0; j < w; j++)
            t->y[r * d + j0 + j] =
                (float)((t->x[r * d + j0 + j] - mean[j]) * scale[j] +
                        (t->beta ? t->beta[j0 + j] : 0.0));
    return 0;
}

static int
batch_norm_run(struct smlp_kernel_ctx *ctx)
{
    const struct batch_norm_priv *priv = ctx->priv;
    const struct smlp_tensor *xt = ctx->inputs[0];
    struct bn_run t;

    memset(&t, 0, sizeof(t));
    t.priv = priv;
    t.training = ctx->training;
    t.n = xt->shape[0];
    t.d = xt->shape[1];
    t.x = xt->data;
    t.gamma = priv->affine ? ctx->inputs[1]->data : NULL;
    t.beta = priv->affine ? ctx->inputs[2]->data : NULL;
    t.rmean = ctx->inputs[rm_slot(priv->affine)]->data;
    t.rvar = ctx->inputs[rm_slot(priv->affine) + 1]->data;
    t.y = ctx->outputs[0]->data;
    t.ws = ctx->workspace;
    if (ctx->training && t.n < 2)
        return smlp_kernel_fail(ctx, SMLP_EINVAL,
                                "training needs more than one row per "
                                "channel, got %lld",
                                (long long)t.n);
    return smlp__norm_parallel_range(ctx->host, ctx->node, t.d, BN_COLS,
                                     bn_forward_task, &t);
}

/* ---- backward ----------------------------------------------------------- */

/*
 * The column sums of the backward over columns [0, w) (rows of stride
 * ld): sg[j] = Σ_r dy[r, j] and sgx[j] = Σ_r dy[r, j]·(x[r, j] - mean[j]),
 * in double in row order.
 */
SMLP_VECTOR_CLONES static void
backward_sums(const float *x, const float *dy, int64_t n, int64_t ld,
              int64_t w, const double *mean, double *sg, double *sgx)
{
    int64_t r, j;

    for (j = 0; j < w; j++) {
        sg[j] = 0.0;
        sgx[j] = 0.0;
    }
    for (r = 0; r < n; r++) {
        const float *xr = x + r * ld, *dr = dy + r * ld;

        for (j = 0; j < w; j++) {
            sg[j] += (double)dr[j];
            sgx[j] += (double)dr[j] * ((double)xr[j] - mean[j]);
        }
    }
}

/* dx[r, j] = a[j]·(dy[r, j] - b[j] - (x[r, j] - mean[j])·c[j]). */
SMLP_VECTOR_CLONES static void
backward_dx(const float *x, const float *dy, int64_t n, int64_t ld,
            int64_t w, const double *mean, const double *a, const double *b,
            const double *c, float *dx)
{
    int64_t r, j;

    for (r = 0; r < n; r++) {
        const float *xr = x + r * ld, *dr = dy + r * ld;
        float *out = dx + r * ld;

        for (j = 0; j < w; j++)
            out[j] = (float)(a[j] * ((double)dr[j] - b[j] -
                                     ((double)xr[j] - mean[j]) * c[j]));
    }
}

/* Backward, columns [j0, j1). */
static int
bn_backward_task(void *arg, int64_t j0, int64_t j1, int worker)
{
    const struct bn_run *t = arg;
    int64_t n = t->n, d = t->d, w = j1 - j0, j;
    double *mean = t->ws + j0, *rstd = t->ws + d + j0;
    double *sg = t->ws + 2 * d + j0, *sgx = t->ws + 3 * d + j0;

    (void)worker;
    if (t->training)
        column_stats(t->x + j0, n, d, w, mean, rstd);
    else
        for (j = 0; j < w; j++) {
            mean[j] = t->crmean[j0 + j];
            rstd[j] = t->crvar[j0 + j];
        }
    for (j = 0; j < w; j++)
        rstd[j] = 1.0 / sqrt(rstd[j] + t->priv->eps);
    backward_sums(t->x + j0, t->dy + j0, n, d, w, mean, sg, sgx);
    for (j = 0; j < w; j++) {
        if (t->dbeta != NULL)
            t->dbeta[j0 + j] = (float)sg[j];
        if (t->dgamma != NULL)
            t->dgamma[j0 + j] = (float)(sgx[j] * rstd[j]);
    }
    if (t->dx == NULL)
        return 0;
    /* dx = a·(dy - b - (x - mean)·c): a = gamma·rstd; training b =
     * Σdy/N, c = rstd²·Σ dy·(x - mean)/N; inference b = c = 0.  sg, sgx
     * become b, c in place. */
    for (j = 0; j < w; j++) {
        double b = 0.0, c = 0.0;

        if (t->priv->training) {
            b = sg[j] / (double)n;
            c = sgx[j] * rstd[j] * rstd[j] / (double)n;
        }
        sg[j] = b;
        sgx[j] = c;
        rstd[j] *= t->gamma != NULL ? (double)t->gamma[j0 + j] : 1.0;
    }
    backward_dx(t->x + j0, t->dy + j0, n, d, w, mean, rstd, sg, sgx,
                t->dx + j0);
    return 0;
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
    struct bn_run t;

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
    memset(&t, 0, sizeof(t));
    t.priv = priv;
    t.training = priv->training;
    t.n = xt->shape[0];
    t.d = xt->shape[1];
    t.x = xt->data;
    t.dy = dyt->data;
    t.gamma = priv->affine ? ctx->inputs[1]->data : NULL;
    t.crmean = ctx->inputs[rm]->data;
    t.crvar = ctx->inputs[rm + 1]->data;
    t.dx = gx != NULL ? gx->data : NULL;
    t.dgamma = gg != NULL ? gg->data : NULL;
    t.dbeta = gb != NULL ? gb->data : NULL;
    t.ws = ctx->workspace;
    return smlp__norm_parallel_range(ctx->host, ctx->node, t.d, BN_COLS,
                                     bn_backward_task, &t);
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
