/*
 * dispatch.c - moe.dispatch: gather the items into the experts' buffers.
 *
 * x [N,d], slot_item i32 [E,M] -> buf [E,M,d] with buf[e,m] = x[slot_item
 * [e,m]] and zero rows where slot_item is −1.  A gather, so no two rows
 * write the same place.  Every index is checked before it is read: one
 * outside {−1} ∪ [0,N) fails the run with a message (never an
 * out-of-bounds read).
 *
 * Forward: intra-op tasks (smlp_parallel_for) copy blocks of
 * DISPATCH_ROWS buffer rows each, after one pass has checked every index.
 *
 * Backward: dx[n] = Σ dbuf[e,m] over the rows (e,m) with slot_item[e,m]
 * = n, summed in float in ascending row order (e, then m); an item that no
 * row holds (dropped) gets a zero gradient.  The scatter-add is turned
 * into a gather: one serial counting pass lists, for every item, the rows
 * that hold it in ascending order (an inverse index in the backward
 * workspace: N + 1 offsets and E·M rows), then tasks of DISPATCH_ROWS
 * items each sum their items' rows in that order, so every row of dx is
 * written by one task, in the order of a serial scatter-add, whatever the
 * thread count.
 */
#include <string.h>

#include "moe.h"

/* Buffer rows (forward) or items (backward) of one task. */
#define DISPATCH_ROWS 64

static int
dispatch_infer(struct smlp_infer_ctx *ctx)
{
    const struct smlp_tensor *x, *si;
    int64_t shape[3];
    int rc;

    if ((rc = smlp_infer_check_input(ctx, 0, "x", SMLP_DTYPE_F32, 2, 2)) !=
            0 ||
        (rc = smlp_infer_check_input(ctx, 1, "slot_item", SMLP_DTYPE_I32, 2,
                                     2)) != 0)
        return rc;
    x = ctx->inputs[0];
    si = ctx->inputs[1];
    shape[0] = si->shape[0];
    shape[1] = si->shape[1];
    shape[2] = x->shape[1];
    smlp_infer_set_output(ctx, 0, SMLP_DTYPE_F32, 3, shape);
    /* The backward's inverse index: N + 1 offsets, then E·M rows. */
    if (ctx->size >= offsetof(struct smlp_infer_ctx, backward_workspace) +
                         sizeof(ctx->backward_workspace))
        ctx->backward_workspace =
            smlp__moe_align((size_t)(x->shape[0] + 1) * sizeof(int32_t)) +
            smlp__moe_align((size_t)(shape[0] * shape[1]) * sizeof(int32_t));
    return SMLP_OK;
}

/* What the forward tasks share. */
struct dispatch_fwd {
    const float *x;
    const int32_t *si;
    float *buf;
    int64_t rows, d;
};

/* Task t: buffer rows [t·DISPATCH_ROWS, ...). */
static int
dispatch_task(void *arg, int64_t task, int worker)
{
    const struct dispatch_fwd *f = arg;
    int64_t r = task * DISPATCH_ROWS, end = r + DISPATCH_ROWS, d = f->d;
    size_t row_bytes = (size_t)d * sizeof(float);

    (void)worker;
    if (end > f->rows)
        end = f->rows;
    for (; r < end; r++) {
        if (f->si[r] == -1)
            memset(f->buf + r * d, 0, row_bytes);
        else
            memcpy(f->buf + r * d, f->x + (int64_t)f->si[r] * d, row_bytes);
    }
    return 0;
}

static int
dispatch_run(struct smlp_kernel_ctx *ctx)
{
    const struct smlp_tensor *xt = ctx->inputs[0], *st = ctx->inputs[1];
    struct dispatch_fwd f;
    int64_t n = xt->shape[0], r;

    f.x = xt->data;
    f.si = st->data;
    f.buf = ctx->outputs[0]->data;
    f.d = xt->shape[1];
    f.rows = st->shape[0] * st->shape[1];
    /* Every index is checked before a row is copied. */
    for (r = 0; r < f.rows; r++)
        if (f.si[r] < -1 || f.si[r] >= n)
            return smlp_kernel_fail(ctx, SMLP_EINVAL,
                                    "input 1 (slot_item)[%lld,%lld] = %d is "
                                    "out of range: expected -1 or an item "
                                    "of input 0 (x) in [0, %lld)",
                                    (long long)(r / st->shape[1]),
                                    (long long)(r % st->shape[1]),
                                    (int)f.si[r], (long long)n);
    return smlp_parallel_for(ctx->host, ctx->node,
                             (f.rows + DISPATCH_ROWS - 1) / DISPATCH_ROWS,
                             dispatch_task, &f);
}

/* Fails the backward when slot_item row r holds an invalid index. */
static int
dispatch_bad_row(struct smlp_backward_ctx *ctx, int64_t r, int64_t m,
                 int32_t item, int64_t n)
{
    return smlp__moe_backward_fail(ctx, SMLP_EINVAL,
                                   "input 1 (slot_item)[%lld,%lld] = %d is "
                                   "out of range: expected -1 or an item of "
                                   "input 0 (x) in [0, %lld)",
                                   (long long)(r / m), (long long)(r % m),
                                   (int)item, (long long)n);
}

/* What the backward tasks share: rows[first[i] .. first[i + 1]) are the
 * buffer rows holding item i, ascending. */
struct dispatch_bwd {
    const float *db;
    const int32_t *first, *rows;
    float *dx;
    int64_t n, d;
};

/* Task t: dx of items [t·DISPATCH_ROWS, ...). */
static int
dispatch_bwd_task(void *arg, int64_t task, int worker)
{
    const struct dispatch_bwd *f = arg;
    int64_t i = task * DISPATCH_ROWS, end = i + DISPATCH_ROWS, d = f->d, c;
    int32_t j;

    (void)worker;
    if (end > f->n)
        end = f->n;
    for (; i < end; i++) {
        float *dst = f->dx + i * d;

        memset(dst, 0, (size_t)d * sizeof(float));
        for (j = f->first[i]; j < f->first[i + 1]; j++) {
            const float *src = f->db + (int64_t)f->rows[j] * d;

            for (c = 0; c < d; c++)
                dst[c] += src[c];
        }
    }
    return 0;
}

static int
dispatch_backward(struct smlp_backward_ctx *ctx)
{
    const struct smlp_tensor *xt = ctx->inputs[0], *st = ctx->inputs[1];
    const struct smlp_tensor *gbuf = ctx->grad_outputs[0];
    struct smlp_tensor *gx = ctx->grad_inputs[0];
    const int32_t *si = st->data;
    struct dispatch_bwd f;
    int32_t *first, *next, *list;
    int64_t n = xt->shape[0], d = xt->shape[1], m = st->shape[1];
    int64_t rows = st->shape[0] * m, r, i;

    if (gx == NULL)
        return SMLP_OK; /* slot_item is i32: nothing else is wanted */
    /* Every index is checked before dx is touched. */
    for (r = 0; r < rows; r++)
        if (si[r] < -1 || si[r] >= n)
            return dispatch_bad_row(ctx, r, m, si[r], n);
    if (gbuf == NULL) {
        memset(gx->data, 0, (size_t)(n * d) * sizeof(float));
        return SMLP_OK;
    }
    if (rows > INT32_MAX)
        return smlp__moe_backward_fail(ctx, SMLP_ELIMIT,
                                       "%lld buffer rows exceed the "
                                       "inverse index's limit %d",
                                       (long long)rows, (int)INT32_MAX);
    /* The inverse index, by counting: first[i + 1] counts item i's rows,
     * prefix sums make it offsets, and rows are placed in row order. */
    first = ctx->workspace;
    list = (int32_t *)((char *)ctx->workspace +
                       smlp__moe_align((size_t)(n + 1) * sizeof(int32_t)));
    memset(first, 0, (size_t)(n + 1) * sizeof(int32_t));
    for (r = 0; r < rows; r++)
        if (si[r] >= 0)
            first[si[r] + 1]++;
    for (i = 0; i < n; i++)
        first[i + 1] += first[i];
    /* next[i]: where item i's next row goes; first[] shifted by one. */
    next = first;
    for (r = 0; r < rows; r++)
        if (si[r] >= 0)
            list[next[si[r]]++] = (int32_t)r;
    /* next[i] is now the end of item i's rows, i.e. the old first[i + 1]:
     * shift back so that first[i] is item i's start. */
    for (i = n; i > 0; i--)
        first[i] = first[i - 1];
    first[0] = 0;
    f.first = first;
    f.rows = list;
    f.db = gbuf->data;
    f.dx = gx->data;
    f.n = n;
    f.d = d;
    return smlp_parallel_for(ctx->host, ctx->node,
                             (n + DISPATCH_ROWS - 1) / DISPATCH_ROWS,
                             dispatch_bwd_task, &f);
}

static const struct smlp_kernel_def dispatch_cpu = {
    .size = sizeof(struct smlp_kernel_def),
    .abi = SMLP_ABI_VERSION,
    .device = SMLP_DEVICE_CPU,
    .dtype_mask = SMLP__MOE_MASK_F32,
    .run = dispatch_run,
    .score = SMLP__MOE_CPU_SCORE,
};

static const struct smlp_kernel_def *const dispatch_kernels[] = {
    &dispatch_cpu, SMLP__MOE_CUDA(smlp__moe_dispatch_cuda) NULL};

static const struct smlp_attr_def no_attrs[] = {{NULL, 0, 0, NULL}};

const struct smlp_op_def smlp__moe_op_dispatch = {
    .size = sizeof(struct smlp_op_def),
    .abi = SMLP_ABI_VERSION,
    .name = "moe.dispatch",
    .min_inputs = 2,
    .max_inputs = 2,
    .n_outputs = 1,
    .attrs = no_attrs,
    .infer = dispatch_infer,
    .kernels = dispatch_kernels,
    .backward = dispatch_backward,
    .doc = "buf[e,m] = x[slot_item[e,m]] (0 where -1): x [N,d], slot_item "
           "i32 [E,M] -> buf [E,M,d]",
};
