/*
 * matmul.c - core.matmul: batched matrix product.
 *
 * a [..., m, k] (or [..., k, m] with transpose_a), b [..., k, n] (or
 * [..., n, k] with transpose_b) -> [..., m, n].  a and b have the same
 * rank and equal leading (batch) dims; no broadcasting.  One sgemm per
 * batch index, the transposes handled by BLAS (nothing is copied).
 *
 * The backward is two more sgemms per batch index.  With op(a) the
 * [m,k] operand and op(b) the [k,n] one:
 *   d op(a) = dy·op(b)ᵀ, so da = dy·op(b)ᵀ, or op(b)·dyᵀ with transpose_a;
 *   d op(b) = op(a)ᵀ·dy, so db = op(a)ᵀ·dy, or dyᵀ·op(a) with transpose_b.
 *
 * Threads: the batch of products runs as tiles (gemm.c), cut by shape
 * only; no product's sum over k is ever split.
 */
#include <string.h>

#include "core.h"

struct matmul_priv {
    int transpose_a;
    int transpose_b;
};

static int
read_flag(struct smlp_infer_ctx *ctx, const char *name, int *out)
{
    int64_t v;
    int rc;

    if ((rc = smlp_infer_attr_int(ctx, name, 0, 0, &v)) != 0)
        return rc;
    if (v != 0 && v != 1)
        return smlp_infer_fail(ctx, SMLP_EINVAL,
                               "attribute '%s' = %lld is invalid: expected "
                               "0 or 1",
                               name, (long long)v);
    *out = (int)v;
    return SMLP_OK;
}

static int
matmul_infer(struct smlp_infer_ctx *ctx)
{
    const struct smlp_tensor *a, *b;
    struct matmul_priv priv = {0};
    int64_t shape[SMLP_MAX_RANK], m, k, kb, n, batch = 1, dims[3];
    char s1[SMLP_SHAPE_STRLEN], s2[SMLP_SHAPE_STRLEN];
    int rc, d, r;

    if ((rc = read_flag(ctx, "transpose_a", &priv.transpose_a)) != 0 ||
        (rc = read_flag(ctx, "transpose_b", &priv.transpose_b)) != 0 ||
        (rc = smlp_infer_check_input(ctx, 0, "a", SMLP_DTYPE_F32, 2,
                                     SMLP_MAX_RANK)) != 0 ||
        (rc = smlp_infer_check_input(ctx, 1, "b", SMLP_DTYPE_F32, 2,
                                     SMLP_MAX_RANK)) != 0)
        return rc;
    a = ctx->inputs[0];
    b = ctx->inputs[1];
    r = a->rank;
    smlp_shape_str(a, s1, sizeof(s1));
    smlp_shape_str(b, s2, sizeof(s2));
    for (d = 0; d < r - 2 && b->rank == r; d++)
        if (a->shape[d] != b->shape[d])
            break;
    if (b->rank != r || d < r - 2)
        return smlp_infer_fail(ctx, SMLP_ESHAPE,
                               "input 1 (b) has shape %s: its leading dims "
                               "must equal those of input 0 (a) %s",
                               s2, s1);
    m = a->shape[r - 2 + priv.transpose_a];
    k = a->shape[r - 1 - priv.transpose_a];
    kb = b->shape[r - 2 + priv.transpose_b];
    n = b->shape[r - 1 - priv.transpose_b];
    if (k != kb)
        return smlp_infer_fail(ctx, SMLP_ESHAPE,
                               "input 0 (a) %s (transpose_a=%d) gives k=%lld "
                               "but input 1 (b) %s (transpose_b=%d) gives "
                               "k=%lld",
                               s1, priv.transpose_a, (long long)k, s2,
                               priv.transpose_b, (long long)kb);
    for (d = 0; d < r - 2; d++) {
        shape[d] = a->shape[d];
        batch *= a->shape[d];
    }
    shape[r - 2] = m;
    shape[r - 1] = n;
    dims[0] = m;
    dims[1] = n;
    dims[2] = k;
    if ((rc = smlp__core_check_blas_dims(ctx, "core.matmul", 3, dims)) != 0)
        return rc;
    smlp_infer_set_output(ctx, 0, SMLP_DTYPE_F32, r, shape);
    ctx->macs = (uint64_t)batch * (uint64_t)m * (uint64_t)n * (uint64_t)k;
    return smlp_infer_set_priv(ctx, &priv, sizeof(priv));
}

/* One operand set of a batched product (see smlp__core_gemm). */
static void
matmul_set(struct smlp__core_gemm *g, int64_t batch, int64_t m, int64_t n,
           int64_t k, int ta, const float *a, int64_t lda, int64_t sa,
           int tb, const float *b, int64_t ldb, int64_t sb, float *c,
           int64_t ldc)
{
    memset(g, 0, sizeof(*g));
    g->batch = batch;
    g->m = m;
    g->n = n;
    g->k = k;
    g->alpha = 1.0f;
    g->trans_a = ta;
    g->a = a;
    g->lda = lda;
    g->stride_a = sa;
    g->trans_b = tb;
    g->b = b;
    g->ldb = ldb;
    g->stride_b = sb;
    g->c = c;
    g->ldc = ldc;
    g->stride_c = m * n;
}

static int
matmul_run(struct smlp_kernel_ctx *ctx)
{
    const struct matmul_priv *priv = ctx->priv;
    const struct smlp_tensor *a = ctx->inputs[0], *b = ctx->inputs[1];
    float *y = ctx->outputs[0]->data;
    int ta = priv->transpose_a, tb = priv->transpose_b, r = a->rank, d;
    int64_t m = a->shape[r - 2 + ta], k = a->shape[r - 1 - ta];
    int64_t n = b->shape[r - 1 - tb], batch = 1;
    struct smlp__core_gemm g;

    for (d = 0; d < r - 2; d++)
        batch *= a->shape[d];
    if (batch * m * n == 0)
        return SMLP_OK;
    if (k == 0) {
        memset(y, 0, (size_t)(batch * m * n) * sizeof(float));
        return SMLP_OK;
    }
    matmul_set(&g, batch, m, n, k, ta, a->data, ta ? m : k, m * k, tb,
               b->data, tb ? k : n, k * n, y, n);
    return smlp__core_gemm(ctx->host, ctx->node, &g);
}

static int
matmul_backward(struct smlp_backward_ctx *ctx)
{
    const struct matmul_priv *priv = ctx->priv;
    const struct smlp_tensor *a = ctx->inputs[0], *b = ctx->inputs[1];
    const struct smlp_tensor *gy = ctx->grad_outputs[0];
    struct smlp_tensor *ga = ctx->grad_inputs[0], *gb = ctx->grad_inputs[1];
    const float *ad = a->data, *bd = b->data, *dy;
    int ta = priv->transpose_a, tb = priv->transpose_b, r = a->rank, d, rc;
    int64_t m = a->shape[r - 2 + ta], k = a->shape[r - 1 - ta];
    int64_t n = b->shape[r - 1 - tb], batch = 1;
    int64_t lda = ta ? m : k, ldb = tb ? k : n;
    struct smlp__core_gemm g;

    if (gy == NULL)
        return smlp__core_zero_grads(ctx);
    for (d = 0; d < r - 2; d++)
        batch *= a->shape[d];
    if (batch * m * n * k == 0)
        return smlp__core_zero_grads(ctx);
    dy = gy->data;
    if (ga != NULL) {
        if (!ta) /* da[m,k] = dy·op(b)ᵀ */
            matmul_set(&g, batch, m, k, n, 0, dy, n, m * n, !tb, bd, ldb,
                       k * n, ga->data, k);
        else /* da[k,m] = op(b)·dyᵀ */
            matmul_set(&g, batch, k, m, n, tb, bd, ldb, k * n, 1, dy, n,
                       m * n, ga->data, m);
        if ((rc = smlp__core_gemm(ctx->host, ctx->node, &g)) != 0)
            return rc;
    }
    if (gb != NULL) {
        if (!tb) /* db[k,n] = op(a)ᵀ·dy */
            matmul_set(&g, batch, k, n, m, !ta, ad, lda, m * k, 0, dy, n,
                       m * n, gb->data, n);
        else /* db[n,k] = dyᵀ·op(a) */
            matmul_set(&g, batch, n, k, m, 1, dy, n, m * n, ta, ad, lda,
                       m * k, gb->data, k);
        if ((rc = smlp__core_gemm(ctx->host, ctx->node, &g)) != 0)
            return rc;
    }
    return SMLP_OK;
}

static const struct smlp_attr_def matmul_attrs[] = {
    {"transpose_a", SMLP_ATTR_INT, 0, "1: a is [..., k, m] (default 0)"},
    {"transpose_b", SMLP_ATTR_INT, 0, "1: b is [..., n, k] (default 0)"},
    {NULL, 0, 0, NULL},
};

static const struct smlp_kernel_def matmul_cpu = {
    .size = sizeof(struct smlp_kernel_def),
    .abi = SMLP_ABI_VERSION,
    .device = SMLP_DEVICE_CPU,
    .dtype_mask = SMLP__MASK_F32,
    .run = matmul_run,
    .score = SMLP__CORE_CPU_SCORE,
};

static const struct smlp_kernel_def *const matmul_kernels[] = {
    &matmul_cpu, SMLP__CORE_CUDA(smlp__core_matmul_cuda) NULL};

const struct smlp_op_def smlp__core_op_matmul = {
    .size = sizeof(struct smlp_op_def),
    .abi = SMLP_ABI_VERSION,
    .name = "core.matmul",
    .min_inputs = 2,
    .max_inputs = 2,
    .n_outputs = 1,
    .attrs = matmul_attrs,
    .infer = matmul_infer,
    .kernels = matmul_kernels,
    .backward = matmul_backward,
    .doc = "batched a*b: a [..,m,k], b [..,k,n] (same leading dims) -> "
           "[..,m,n]; transpose_a/b",
};
