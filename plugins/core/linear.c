/*
 * linear.c - core.linear: y = W·x along one axis, plus an optional bias.
 *
 * x [..., in, ...] with `in` at `axis`, W [out, in] (PyTorch layout),
 * b [out] -> y, x's shape with `in` replaced by `out`.  With outer the
 * product of the dims before the axis and inner the product after it:
 *   inner == 1 (axis -1): one sgemm, Y[outer,out] = X[outer,in]·Wᵀ;
 *   otherwise, per outer index o, a left multiply
 *     Y_o[out,inner] = W[out,in]·X_o[in,inner],
 * so mixing tokens (axis -2 of [B,S,C]) needs no transposed copy.  The
 * bias is added afterwards.
 *
 * The backward runs the same shapes of sgemm, transposed:
 *   inner == 1: dX = dY·W, dW = dYᵀ·X (one sgemm each);
 *   otherwise:  dX_o = Wᵀ·dY_o per o, dW = Σ_o dY_o·X_oᵀ (sgemm with
 *               beta 1, o in increasing order);
 * and db[j] = Σ_o Σ_k dY[o,j,k] in double, in a fixed order, in a
 * backward workspace of `out` doubles.
 */
#include <cblas.h>
#include <string.h>

#include "core.h"

struct linear_priv {
    int axis; /* normalised, in [0, rank) */
};

/* outer, inner of x around axis. */
static void
linear_split(const struct smlp_tensor *x, int axis, int64_t *outer,
             int64_t *inner)
{
    int d;

    *outer = 1;
    *inner = 1;
    for (d = 0; d < axis; d++)
        *outer *= x->shape[d];
    for (d = axis + 1; d < x->rank; d++)
        *inner *= x->shape[d];
}

static int
linear_infer(struct smlp_infer_ctx *ctx)
{
    const struct smlp_tensor *x, *w, *b;
    struct linear_priv priv = {0};
    int64_t axis_attr, shape[SMLP_MAX_RANK], outer, inner, dims[3];
    char s1[SMLP_SHAPE_STRLEN], s2[SMLP_SHAPE_STRLEN];
    int rc, d;

    if ((rc = smlp_infer_attr_int(ctx, "axis", 0, -1, &axis_attr)) != 0 ||
        (rc = smlp_infer_check_input(ctx, 0, "x", SMLP_DTYPE_F32, 1,
                                     SMLP_MAX_RANK)) != 0 ||
        (rc = smlp_infer_check_input(ctx, 1, "W", SMLP_DTYPE_F32, 2, 2)) !=
            0 ||
        (rc = smlp_infer_axis(ctx, "axis", axis_attr, 0, "x", &priv.axis)) !=
            0)
        return rc;
    x = ctx->inputs[0];
    w = ctx->inputs[1];
    b = ctx->n_inputs > 2 ? ctx->inputs[2] : NULL;
    if (x->shape[priv.axis] != w->shape[1])
        return smlp_infer_fail(ctx, SMLP_ESHAPE,
                               "input 0 (x) has shape %s: dim %lld is %lld, "
                               "W %s expects %lld",
                               smlp_shape_str(x, s1, sizeof(s1)),
                               (long long)axis_attr,
                               (long long)x->shape[priv.axis],
                               smlp_shape_str(w, s2, sizeof(s2)),
                               (long long)w->shape[1]);
    if (b != NULL &&
        ((rc = smlp_infer_check_input(ctx, 2, "b", SMLP_DTYPE_F32, 1, 1)) !=
             0 ||
         (rc = smlp_infer_check_vector(ctx, 2, "b", w->shape[0],
                                       "dim 0 of W")) != 0))
        return rc;
    linear_split(x, priv.axis, &outer, &inner);
    dims[0] = outer * inner;
    dims[1] = w->shape[0];
    dims[2] = w->shape[1];
    if ((rc = smlp__core_check_blas_dims(ctx, "core.linear", 3, dims)) != 0)
        return rc;
    for (d = 0; d < x->rank; d++)
        shape[d] = d == priv.axis ? w->shape[0] : x->shape[d];
    smlp_infer_set_output(ctx, 0, SMLP_DTYPE_F32, x->rank, shape);
    ctx->macs = (uint64_t)(outer * inner) * (uint64_t)w->shape[1] *
                (uint64_t)w->shape[0];
    if (b != NULL)
        ctx->backward_workspace = (size_t)w->shape[0] * sizeof(double);
    return smlp_infer_set_priv(ctx, &priv, sizeof(priv));
}

static int
linear_run(struct smlp_kernel_ctx *ctx)
{
    const struct linear_priv *priv = ctx->priv;
    const struct smlp_tensor *x = ctx->inputs[0], *w = ctx->inputs[1];
    const struct smlp_tensor *b = ctx->n_inputs > 2 ? ctx->inputs[2] : NULL;
    const float *xd = x->data, *wd = w->data;
    const float *bd = b != NULL ? b->data : NULL;
    float *yd = ctx->outputs[0]->data;
    int64_t outer, inner, o, j, k;
    int in = (int)w->shape[1], out = (int)w->shape[0];

    linear_split(x, priv->axis, &outer, &inner);
    if (outer * inner * out == 0)
        return SMLP_OK;
    if (in == 0) {
        memset(yd, 0, (size_t)(outer * inner * out) * sizeof(float));
    } else if (inner == 1) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)outer, out,
                    in, 1.0f, xd, in, wd, in, 0.0f, yd, out);
    } else {
        for (o = 0; o < outer; o++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out,
                        (int)inner, in, 1.0f, wd, in, xd + o * in * inner,
                        (int)inner, 0.0f, yd + o * out * inner, (int)inner);
    }
    if (bd == NULL)
        return SMLP_OK;
    for (o = 0; o < outer; o++) {
        float *yo = yd + o * out * inner;

        for (j = 0; j < out; j++)
            for (k = 0; k < inner; k++)
                yo[j * inner + k] += bd[j];
    }
    return SMLP_OK;
}

/*
 * Σ v[0..n) in double, in a fixed order that vectorises: eight
 * interleaved partial sums (lane l takes k ≡ l mod 8), added up pairwise
 * at the end.
 */
static double
linear_sum(const float *v, int64_t n)
{
    double part[8] = {0};
    int64_t k, l;

    for (k = 0; k + 8 <= n; k += 8)
        for (l = 0; l < 8; l++)
            part[l] += v[k + l];
    for (l = 0; k + l < n; l++)
        part[l] += v[k + l];
    return ((part[0] + part[1]) + (part[2] + part[3])) +
           ((part[4] + part[5]) + (part[6] + part[7]));
}

/* db[j] = Σ_o Σ_k dy[o,j,k], summed in double in a fixed order. */
static void
linear_bias_grad(float *db, const float *dy, double *acc, int64_t outer,
                 int64_t out, int64_t inner)
{
    int64_t o, j;

    for (j = 0; j < out; j++)
        acc[j] = 0.0;
    for (o = 0; o < outer; o++) {
        const float *dyo = dy + o * out * inner;

        if (inner == 1) {
            for (j = 0; j < out; j++)
                acc[j] += dyo[j];
            continue;
        }
        for (j = 0; j < out; j++)
            acc[j] += linear_sum(dyo + j * inner, inner);
    }
    for (j = 0; j < out; j++)
        db[j] = (float)acc[j];
}

/*
 * d x, d W and d b (each when wanted) from dy; see the file comment.
 * Sizes of zero give zero gradients without calling BLAS.
 */
static int
linear_backward(struct smlp_backward_ctx *ctx)
{
    const struct linear_priv *priv = ctx->priv;
    const struct smlp_tensor *x = ctx->inputs[0], *w = ctx->inputs[1];
    const struct smlp_tensor *gy = ctx->grad_outputs[0];
    struct smlp_tensor *gx = ctx->grad_inputs[0], *gw = ctx->grad_inputs[1];
    struct smlp_tensor *gb = ctx->n_inputs > 2 ? ctx->grad_inputs[2] : NULL;
    const float *xd = x->data, *wd = w->data, *dy;
    int64_t outer, inner, o;
    int in = (int)w->shape[1], out = (int)w->shape[0];

    if (gy == NULL)
        return smlp__core_zero_grads(ctx);
    dy = gy->data;
    linear_split(x, priv->axis, &outer, &inner);
    if (outer * inner * out * in == 0) {
        /* Some product is empty: whatever is left has zero gradient
         * (db is still a plain sum when only `in` is 0). */
        smlp__core_zero_grads(ctx);
        if (gb != NULL && outer * inner * out > 0)
            linear_bias_grad(gb->data, dy, ctx->workspace, outer, out,
                             inner);
        return SMLP_OK;
    }
    if (inner == 1) {
        if (gx != NULL)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans,
                        (int)outer, in, out, 1.0f, dy, out, wd, in, 0.0f,
                        gx->data, in);
        if (gw != NULL)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in,
                        (int)outer, 1.0f, dy, out, xd, in, 0.0f, gw->data,
                        in);
    } else {
        for (o = 0; gx != NULL && o < outer; o++)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, in,
                        (int)inner, out, 1.0f, wd, in, dy + o * out * inner,
                        (int)inner, 0.0f, (float *)gx->data + o * in * inner,
                        (int)inner);
        for (o = 0; gw != NULL && o < outer; o++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, out, in,
                        (int)inner, 1.0f, dy + o * out * inner, (int)inner,
                        xd + o * in * inner, (int)inner, o ? 1.0f : 0.0f,
                        gw->data, in);
    }
    if (gb != NULL)
        linear_bias_grad(gb->data, dy, ctx->workspace, outer, out, inner);
    return SMLP_OK;
}

static const struct smlp_attr_def linear_attrs[] = {
    {"axis", SMLP_ATTR_INT, 0,
     "axis of x that W mixes (default -1; negative counts from the end)"},
    {NULL, 0, 0, NULL},
};

static const struct smlp_kernel_def linear_cpu = {
    .size = sizeof(struct smlp_kernel_def),
    .abi = SMLP_ABI_VERSION,
    .device = SMLP_DEVICE_CPU,
    .dtype_mask = SMLP__MASK_F32,
    .supports = NULL,
    .run = linear_run,
    .score = SMLP__CORE_CPU_SCORE,
};

static const struct smlp_kernel_def *const linear_kernels[] = {
    &linear_cpu, SMLP__CORE_CUDA(smlp__core_linear_cuda) NULL};

const struct smlp_op_def smlp__core_op_linear = {
    .size = sizeof(struct smlp_op_def),
    .abi = SMLP_ABI_VERSION,
    .name = "core.linear",
    .min_inputs = 2,
    .max_inputs = 3,
    .n_outputs = 1,
    .flags = 0,
    .attrs = linear_attrs,
    .infer = linear_infer,
    .kernels = linear_kernels,
    .backward = linear_backward,
    .doc = "y = W*x along `axis` (+ b): x [..,in,..], W [out,in], "
           "b [out] (optional) -> x's shape with out at axis",
};
