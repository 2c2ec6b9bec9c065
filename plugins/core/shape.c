/*
 * shape.c - core.transpose and core.reshape.
 *
 * Both move 4-byte elements (f32 or i32) without looking at them.
 * transpose is a general axis permutation: output dim d is input dim
 * perm[d].  reshape is a view (SMLP_OP_VIEW): the runtime aliases its
 * output to its input and does not call the kernel, which only copies for
 * hosts (the test harness) that give it separate buffers.
 *
 * Backwards: transpose's is the transpose of dy by the inverse
 * permutation; reshape's copies dy into dx (nothing when the runtime
 * aliases them).
 *
 * Threads: transpose copies blocks in chunks of rows (transpose_copy);
 * reshape's copy, which the runtime never runs, stays on one thread.
 */
#include <string.h>

#include "core.h"

#define ELEM_MASK (SMLP__MASK_F32 | SMLP__MASK_I32)
#define TILE 32

static int
check_any_input(struct smlp_infer_ctx *ctx, int min_rank)
{
    const struct smlp_tensor *x = ctx->n_inputs > 0 ? ctx->inputs[0] : NULL;

    if (x == NULL)
        return smlp_infer_fail(ctx, SMLP_EINVAL, "input 0 (x) is missing");
    return smlp_infer_check_input(ctx, 0, "x", x->dtype, min_rank,
                                  SMLP_MAX_RANK);
}

/* ---- core.transpose ----------------------------------------------------- */

struct transpose_priv {
    int rank;
    int perm[SMLP_MAX_RANK];
};

static int
transpose_infer(struct smlp_infer_ctx *ctx)
{
    const struct smlp_tensor *x;
    struct transpose_priv priv = {0};
    const int64_t *perm;
    int64_t shape[SMLP_MAX_RANK];
    char s1[SMLP_SHAPE_STRLEN], s2[SMLP_SHAPE_STRLEN];
    int seen[SMLP_MAX_RANK] = {0};
    size_t n;
    int rc, d;

    if ((rc = smlp_infer_attr_ints(ctx, "perm", 1, &perm, &n)) != 0 ||
        (rc = check_any_input(ctx, 0)) != 0)
        return rc;
    x = ctx->inputs[0];
    smlp_ints_str(perm, n, s1, sizeof(s1));
    smlp_shape_str(x, s2, sizeof(s2));
    if (n != (size_t)x->rank)
        return smlp_infer_fail(ctx, SMLP_EINVAL,
                               "attribute 'perm' = %s has %zu entries, input "
                               "0 (x) of shape %s has rank %d",
                               s1, n, s2, x->rank);
    for (d = 0; d < x->rank; d++) {
        if (perm[d] < 0 || perm[d] >= x->rank || seen[perm[d]])
            return smlp_infer_fail(ctx, SMLP_EINVAL,
                                   "attribute 'perm' = %s is not a "
                                   "permutation of 0..%d (input 0 (x) has "
                                   "shape %s)",
                                   s1, x->rank - 1, s2);
        seen[perm[d]] = 1;
        priv.perm[d] = (int)perm[d];
        shape[d] = x->shape[perm[d]];
    }
    priv.rank = x->rank;
    smlp_infer_set_output(ctx, 0, x->dtype, x->rank, shape);
    return smlp_infer_set_priv(ctx, &priv, sizeof(priv));
}

/*
 * Copies an n0 x n1 block read with strides s0, s1 (elements) into dst,
 * row-major; tiled so that neither side walks memory with a long stride
 * for long.
 */
static void
copy_block(uint32_t *dst, const uint32_t *src, int64_t n0, int64_t n1,
           int64_t s0, int64_t s1)
{
    int64_t i0, i1, b0, b1;

    if (s1 == 1) {
        for (i0 = 0; i0 < n0; i0++)
            memcpy(dst + i0 * n1, src + i0 * s0, (size_t)n1 * 4);
        return;
    }
    for (b0 = 0; b0 < n0; b0 += TILE)
        for (b1 = 0; b1 < n1; b1 += TILE) {
            int64_t e0 = b0 + TILE < n0 ? b0 + TILE : n0;
            int64_t e1 = b1 + TILE < n1 ? b1 + TILE : n1;

            for (i0 = b0; i0 < e0; i0++)
                for (i1 = b1; i1 < e1; i1++)
                    dst[i0 * n1 + i1] = src[i0 * s0 + i1 * s1];
        }
}

/*
 * A transpose as m >= 2 dims: output dim d has size[d] and input stride
 * stride[d]; the last two form the blocks that copy_block moves.
 */
struct transpose_plan {
    uint32_t *dst;
    const uint32_t *src;
    int m;
    int64_t size[SMLP_MAX_RANK + 2], stride[SMLP_MAX_RANK + 2];
    int64_t rows;   /* rows of a block per task */
    int64_t chunks; /* tasks per block */
};

static int
transpose_task(void *arg, int64_t task, int worker)
{
    const struct transpose_plan *p = arg;
    int64_t blk = task / p->chunks, r0 = task % p->chunks * p->rows;
    int64_t n0 = p->size[p->m - 2], n1 = p->size[p->m - 1], off = 0, rest;
    int64_t nr = n0 - r0 < p->rows ? n0 - r0 : p->rows;
    int d;

    (void)worker;
    /* Block blk's index over the leading dims (the last varies fastest). */
    for (rest = blk, d = p->m - 3; d >= 0; d--) {
        off += rest % p->size[d] * p->stride[d];
        rest /= p->size[d];
    }
    copy_block(p->dst + blk * n0 * n1 + r0 * n1,
               p->src + off + r0 * p->stride[p->m - 2], nr, n1,
               p->stride[p->m - 2], p->stride[p->m - 1]);
    return 0;
}

/*
 * dst = src (a row-major tensor of `rank` dims `shape`) with its axes
 * permuted: dst dim d is src dim perm[d].  Tasks: each block (the last two
 * merged output dims) in chunks of rows of about SMLP__CORE_CHUNK
 * elements, cut by shape alone (a copy: any cut gives the same bytes).
 */
static int
transpose_copy(const struct smlp_host_api *host, const struct smlp_node *node,
               uint32_t *dst, const uint32_t *src, int rank,
               const int64_t *shape, const int *perm)
{
    struct transpose_plan p;
    int64_t istride[SMLP_MAX_RANK], total = 1, blocks = 1;
    int d, m = 0;

    for (d = 0; d < rank; d++)
        total *= shape[d];
    if (total == 0)
        return SMLP_OK;
    istride[rank > 0 ? rank - 1 : 0] = 1;
    for (d = rank - 2; d >= 0; d--)
        istride[d] = istride[d + 1] * shape[d + 1];
    /* Output dims with their input strides; drop 1s, merge dims that are
     * contiguous in the input as well. */
    for (d = 0; d < rank; d++) {
        int64_t n = shape[perm[d]], st = istride[perm[d]];

        if (n == 1)
            continue;
        if (m > 0 && p.stride[m - 1] == n * st) {
            p.size[m - 1] *= n;
            p.stride[m - 1] = st;
        } else {
            p.size[m] = n;
            p.stride[m] = st;
            m++;
        }
    }
    /* Pad to at least two dims so the block copy covers every case. */
    while (m < 2) {
        memmove(p.size + 1, p.size, (size_t)m * sizeof(*p.size));
        memmove(p.stride + 1, p.stride, (size_t)m * sizeof(*p.stride));
        p.size[0] = 1;
        p.stride[0] = 0;
        m++;
    }
    p.dst = dst;
    p.src = src;
    p.m = m;
    for (d = 0; d < m - 2; d++)
        blocks *= p.size[d];
    p.rows = SMLP__CORE_CHUNK / p.size[m - 1];
    if (p.rows < 1)
        p.rows = 1;
    p.rows = (p.rows + TILE - 1) / TILE * TILE; /* whole tiles */
    if (p.rows > p.size[m - 2])
        p.rows = p.size[m - 2];
    p.chunks = (p.size[m - 2] + p.rows - 1) / p.rows;
    return smlp_parallel_for(host, node, blocks * p.chunks, transpose_task,
                             &p);
}

static int
transpose_run(struct smlp_kernel_ctx *ctx)
{
    const struct transpose_priv *priv = ctx->priv;
    const struct smlp_tensor *x = ctx->inputs[0];

    return transpose_copy(ctx->host, ctx->node, ctx->outputs[0]->data,
                          x->data, x->rank, x->shape, priv->perm);
}

/* dx = dy transposed back: dx dim perm[d] is dy dim d. */
static int
transpose_backward(struct smlp_backward_ctx *ctx)
{
    const struct transpose_priv *priv = ctx->priv;
    const struct smlp_tensor *gy = ctx->grad_outputs[0];
    struct smlp_tensor *gx = ctx->grad_inputs[0];
    int inv[SMLP_MAX_RANK];
    int d;

    if (gx == NULL)
        return SMLP_OK;
    if (gy == NULL)
        return smlp__core_zero_grads(ctx);
    for (d = 0; d < priv->rank; d++)
        inv[priv->perm[d]] = d;
    return transpose_copy(ctx->host, ctx->node, gx->data, gy->data,
                          gy->rank, gy->shape, inv);
}

/* ---- core.reshape ------------------------------------------------------- */

static int
reshape_infer(struct smlp_infer_ctx *ctx)
{
    const struct smlp_tensor *x;
    const int64_t *want;
    int64_t shape[SMLP_MAX_RANK], known = 1, numel;
    char s1[SMLP_SHAPE_STRLEN], s2[SMLP_SHAPE_STRLEN];
    size_t n, d;
    int rc, infer_at = -1;

    if ((rc = smlp_infer_attr_ints(ctx, "shape", 1, &want, &n)) != 0 ||
        (rc = check_any_input(ctx, 0)) != 0)
        return rc;
    x = ctx->inputs[0];
    numel = smlp_tensor_numel(x);
    smlp_ints_str(want, n, s1, sizeof(s1));
    smlp_shape_str(x, s2, sizeof(s2));
    if (n > SMLP_MAX_RANK)
        return smlp_infer_fail(ctx, SMLP_EINVAL,
                               "attribute 'shape' = %s has more than %d dims",
                               s1, SMLP_MAX_RANK);
    for (d = 0; d < n; d++) {
        if (want[d] == -1 && infer_at < 0) {
            infer_at = (int)d;
            shape[d] = 1;
            continue;
        }
        if (want[d] == 0 && d < (size_t)x->rank)
            shape[d] = x->shape[d];
        else if (want[d] > 0)
            shape[d] = want[d];
        else
            return smlp_infer_fail(ctx, SMLP_EINVAL,
                                   "attribute 'shape' = %s: entry %zu (%lld) "
                                   "is invalid for input 0 (x) of shape %s "
                                   "(use one -1, 0 only within its rank)",
                                   s1, d, (long long)want[d], s2);
        if (known > 0 && shape[d] > INT64_MAX / known)
            return smlp_infer_fail(ctx, SMLP_ESHAPE,
                                   "attribute 'shape' = %s overflows", s1);
        known *= shape[d];
    }
    if (infer_at >= 0) {
        if (known == 0 || numel % known != 0)
            return smlp_infer_fail(ctx, SMLP_ESHAPE,
                                   "attribute 'shape' = %s cannot hold the "
                                   "%lld elements of input 0 (x) of shape %s",
                                   s1, (long long)numel, s2);
        shape[infer_at] = numel / known;
        known = numel;
    }
    if (known != numel)
        return smlp_infer_fail(ctx, SMLP_ESHAPE,
                               "attribute 'shape' = %s gives %lld elements, "
                               "input 0 (x) of shape %s has %lld",
                               s1, (long long)known, s2, (long long)numel);
    smlp_infer_set_output(ctx, 0, x->dtype, (int)n, shape);
    return SMLP_OK;
}

static int
reshape_run(struct smlp_kernel_ctx *ctx)
{
    const struct smlp_tensor *x = ctx->inputs[0];

    if (ctx->outputs[0]->data != x->data)
        memcpy(ctx->outputs[0]->data, x->data,
               (size_t)smlp_tensor_numel(x) * 4);
    return SMLP_OK;
}

static int
reshape_backward(struct smlp_backward_ctx *ctx)
{
    const struct smlp_tensor *gy = ctx->grad_outputs[0];
    struct smlp_tensor *gx = ctx->grad_inputs[0];

    if (gx == NULL)
        return SMLP_OK;
    if (gy == NULL)
        return smlp__core_zero_grads(ctx);
    smlp__core_copy_grad(gx->data, gy->data, smlp_tensor_numel(gx));
    return SMLP_OK;
}

/* ---- definitions -------------------------------------------------------- */

static const struct smlp_kernel_def transpose_cpu = {
    .size = sizeof(struct smlp_kernel_def),
    .abi = SMLP_ABI_VERSION,
    .device = SMLP_DEVICE_CPU,
    .dtype_mask = ELEM_MASK,
    .run = transpose_run,
    .score = SMLP__CORE_CPU_SCORE,
};

static const struct smlp_kernel_def *const transpose_kernels[] = {
    &transpose_cpu, SMLP__CORE_CUDA(smlp__core_transpose_cuda) NULL};

static const struct smlp_kernel_def reshape_cpu = {
    .size = sizeof(struct smlp_kernel_def),
    .abi = SMLP_ABI_VERSION,
    .device = SMLP_DEVICE_CPU,
    .dtype_mask = ELEM_MASK,
    .run = reshape_run,
    .score = SMLP__CORE_CPU_SCORE,
};

static const struct smlp_kernel_def *const reshape_kernels[] = {
    &reshape_cpu, SMLP__CORE_CUDA(smlp__core_reshape_cuda) NULL};

static const struct smlp_attr_def transpose_attrs[] = {
    {"perm", SMLP_ATTR_INTS, 1,
     "output dim d is input dim perm[d]; a permutation of 0..rank-1"},
    {NULL, 0, 0, NULL},
};

static const struct smlp_attr_def reshape_attrs[] = {
    {"shape", SMLP_ATTR_INTS, 1,
     "the new shape; one -1 is inferred, 0 copies the input dim there"},
    {NULL, 0, 0, NULL},
};

const struct smlp_op_def smlp__core_op_transpose = {
    .size = sizeof(struct smlp_op_def),
    .abi = SMLP_ABI_VERSION,
    .name = "core.transpose",
    .min_inputs = 1,
    .max_inputs = 1,
    .n_outputs = 1,
    .attrs = transpose_attrs,
    .infer = transpose_infer,
    .kernels = transpose_kernels,
    .backward = transpose_backward,
    .doc = "general axis permutation: y.shape[d] = x.shape[perm[d]]",
};

const struct smlp_op_def smlp__core_op_reshape = {
    .size = sizeof(struct smlp_op_def),
    .abi = SMLP_ABI_VERSION,
    .name = "core.reshape",
    .min_inputs = 1,
    .max_inputs = 1,
    .n_outputs = 1,
    .flags = SMLP_OP_VIEW,
    .attrs = reshape_attrs,
    .infer = reshape_infer,
    .kernels = reshape_kernels,
    .backward = reshape_backward,
    .doc = "same data, new `shape` (-1 inferred, 0 copies the dim); a view",
};
