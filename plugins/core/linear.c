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
 * backward workspace of `out` doubles (followed by the partial sums of
 * dW's sum over o when gemm.c splits it: token mixing's small dW).
 *
 * Threads: every product runs as tiles of its output (gemm.c), each a
 * single-threaded sgemm over the whole summed dimension, so dW's sums over
 * rows are never split (its sum over o is, into parts fixed by the
 * shapes, when dW has too few tiles for the threads); the bias is added
 * to each tile as it is computed, and db is summed in chunks of j.  The
 * tiles depend on the shapes only: the same bits for any thread count.
 */
#include <string.h>

#include "core.h"

struct linear_priv {
    int axis; /* normalised, in [0, rank) */
};

/* The backward workspace: db's `out` doubles, then (inner > 1) the
 * partial sums of dW's split batch sum (gemm.c), 64-byte aligned. */
static size_t
linear_partial_offset(int64_t out)
{
    return ((size_t)out * sizeof(double) + 63) / 64 * 64;
}

static size_t
linear_partial_floats(int64_t outer, int64_t inner,
                      const struct smlp_tensor *w)
{
    int64_t parts;

    if (inner == 1)
        return 0;
    parts = smlp__core_gemm_sum_parts(outer, w->shape[0], w->shape[1],
                                      inner);
    return (size_t)(parts - 1) * (size_t)w->shape[0] * (size_t)w->shape[1];
}

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
    ctx->backward_workspace = linear_partial_offset(w->shape[0]) +
                              linear_partial_floats(outer, inner, w) *
                                  sizeof(float);
    return smlp_infer_set_priv(ctx, &priv, sizeof(priv));
}

/* The bias added to a tile of y (epilogue of the product). */
struct bias_add {
    const float *b;
    int per_row; /* y_o[out, inner]: b[row]; else y[outer, out]: b[col] */
};

static void
bias_epilogue(void *arg, float *c, int64_t ldc, int64_t i, int64_t m0,
              int64_t mb, int64_t n0, int64_t nb)
{
    const struct bias_add *ba = arg;
    int64_t r, k;

    (void)i;
    for (r = 0; r < mb; r++) {
        float *row = c + r * ldc;

        if (ba->per_row) {
            float v = ba->b[m0 + r];
            for (k = 0; k < nb; k++)
                row[k] += v;
        } else {
            const float *bv = ba->b + n0;
            for (k = 0; k < nb; k++)
                row[k] += bv[k];
        }
    }
}

static int
linear_run(struct smlp_kernel_ctx *ctx)
{
    const struct linear_priv *priv = ctx->priv;
    const struct smlp_tensor *x = ctx->inputs[0], *w = ctx->inputs[1];
    const struct smlp_tensor *b = ctx->n_inputs > 2 ? ctx->inputs[2] : NULL;
    struct smlp__core_gemm g;
    struct bias_add ba;
    float *yd = ctx->outputs[0]->data;
    int64_t outer, inner, o, j, k;
    int64_t in = w->shape[1], out = w->shape[0];

    linear_split(x, priv->axis, &outer, &inner);
    if (outer * inner * out == 0)
        return SMLP_OK;
    if (in == 0) {
        const float *bd = b != NULL ? b->data : NULL;

        for (o = 0; o < outer; o++)
            for (j = 0; j < out; j++)
                for (k = 0; k < inner; k++)
                    yd[(o * out + j) * inner + k] = bd ? bd[j] : 0.0f;
        return SMLP_OK;
    }
    memset(&g, 0, sizeof(g));
    g.alpha = 1.0f;
    g.beta = 0.0f;
    g.c = yd;
    if (b != NULL) {
        ba.b = b->data;
        ba.per_row = inner != 1;
        g.epilogue = bias_epilogue;
        g.epilogue_arg = &ba;
    }
    if (inner == 1) {
        /* Y[outer, out] = X[outer, in]·Wᵀ. */
        g.batch = 1;
        g.m = outer;
        g.n = out;
        g.k = in;
        g.a = x->data;
        g.lda = in;
        g.trans_b = 1;
        g.b = w->data;
        g.ldb = in;
        g.ldc = out;
    } else {
        /* Y_o[out, inner] = W[out, in]·X_o[in, inner] for each o. */
        g.batch = outer;
        g.m = out;
        g.n = inner;
        g.k = in;
        g.a = w->data;
        g.lda = in;
        g.b = x->data;
        g.ldb = inner;
        g.stride_b = in * inner;
        g.ldc = inner;
        g.stride_c = out * inner;
    }
    return smlp__core_gemm(ctx->host, ctx->node, &g);
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

/* db[j] = Σ_o Σ_k dy[o,j,k] for j in a range, in double, o increasing. */
struct bias_grad {
    float *db;
    const float *dy;
    double *acc;
    int64_t outer, out, inner;
};

/* Columns j of one task: 256 (2 KiB of acc). */
#define BIAS_CHUNK 256

static int
bias_grad_task(void *arg, int64_t begin, int64_t end, int worker)
{
    const struct bias_grad *bg = arg;
    int64_t o, j;

    (void)worker;
    for (j = begin; j < end; j++)
        bg->acc[j] = 0.0;
    for (o = 0; o < bg->outer; o++) {
        const float *dyo = bg->dy + o * bg->out * bg->inner;

        if (bg->inner == 1) {
            for (j = begin; j < end; j++)
                bg->acc[j] += dyo[j];
            continue;
        }
        for (j = begin; j < end; j++)
            bg->acc[j] += linear_sum(dyo + j * bg->inner, bg->inner);
    }
    for (j = begin; j < end; j++)
        bg->db[j] = (float)bg->acc[j];
    return 0;
}

static int
linear_bias_grad(struct smlp_backward_ctx *ctx, float *db, const float *dy,
                 int64_t outer, int64_t out, int64_t inner)
{
    struct bias_grad bg;

    bg.db = db;
    bg.dy = dy;
    bg.acc = ctx->workspace;
    bg.outer = outer;
    bg.out = out;
    bg.inner = inner;
    return smlp__core_parallel_range(ctx->host, ctx->node, out, BIAS_CHUNK,
                                     bias_grad_task, &bg);
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
    struct smlp__core_gemm g;
    const float *dy;
    int64_t outer, inner;
    int64_t in = w->shape[1], out = w->shape[0];
    int rc;

    if (gy == NULL)
        return smlp__core_zero_grads(ctx);
    dy = gy->data;
    linear_split(x, priv->axis, &outer, &inner);
    if (outer * inner * out * in == 0) {
        /* Some product is empty: whatever is left has zero gradient
         * (db is still a plain sum when only `in` is 0). */
        smlp__core_zero_grads(ctx);
        if (gb != NULL && outer * inner * out > 0)
            return linear_bias_grad(ctx, gb->data, dy, outer, out, inner);
        return SMLP_OK;
    }
    memset(&g, 0, sizeof(g));
    g.alpha = 1.0f;
    g.beta = 0.0f;
    if (gx != NULL) {
        if (inner == 1) {
            /* dX[outer, in] = dY[outer, out]·W. */
            g.batch = 1;
            g.m = outer;
            g.n = in;
            g.k = out;
            g.a = dy;
            g.lda = out;
            g.b = w->data;
            g.ldb = in;
        } else {
            /* dX_o[in, inner] = Wᵀ·dY_o[out, inner]. */
            g.batch = outer;
            g.m = in;
            g.n = inner;
            g.k = out;
            g.trans_a = 1;
            g.a = w->data;
            g.lda = in;
            g.b = dy;
            g.ldb = inner;
            g.stride_b = out * inner;
            g.stride_c = in * inner;
        }
        g.c = gx->data;
        g.ldc = inner == 1 ? in : inner;
        if ((rc = smlp__core_gemm(ctx->host, ctx->node, &g)) != SMLP_OK)
            return rc;
    }
    if (gw != NULL) {
        memset(&g, 0, sizeof(g));
        g.alpha = 1.0f;
        g.beta = 0.0f;
        g.m = out;
        g.n = in;
        g.c = gw->data;
        g.ldc = in;
        if (inner == 1) {
            /* dW[out, in] = dYᵀ·X, summed over the outer rows by BLAS. */
            g.batch = 1;
            g.k = outer;
            g.trans_a = 1;
            g.a = dy;
            g.lda = out;
            g.b = x->data;
            g.ldb = in;
        } else {
            /* dW = Σ_o dY_o[out, inner]·X_o[in, inner]ᵀ, o increasing. */
            g.batch = outer;
            g.sum_batch = 1;
            g.k = inner;
            g.a = dy;
            g.lda = inner;
            g.stride_a = out * inner;
            g.trans_b = 1;
            g.b = x->data;
            g.ldb = inner;
            g.stride_b = in * inner;
            if (linear_partial_floats(outer, inner, w) > 0)
                g.partial = (float *)((char *)ctx->workspace +
                                      linear_partial_offset(out));
        }
        if ((rc = smlp__core_gemm(ctx->host, ctx->node, &g)) != SMLP_OK)
            return rc;
    }
    if (gb != NULL)
        return linear_bias_grad(ctx, gb->data, dy, outer, out, inner);
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
