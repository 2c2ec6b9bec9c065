/*
 * dispatch.c - moe.dispatch: gather the items into the experts' buffers.
 *
 * x [N,d], slot_item i32 [E,M] -> buf [E,M,d] with buf[e,m] = x[slot_item
 * [e,m]] and zero rows where slot_item is −1.  A gather, so no two rows
 * write the same place.  Every index is checked before it is read: one
 * outside {−1} ∪ [0,N) fails the run with a message (never an
 * out-of-bounds read).
 *
 * Backward: dx[n] = Σ dbuf[e,m] over the rows (e,m) with slot_item[e,m]
 * = n, summed in float in ascending row order (e, then m), one pass over
 * the buffer after dx is zeroed, single-threaded (a scatter-add: cheap
 * next to the expert products, and bit-identical whatever `threads`).
 * An item that no row holds (dropped) gets a zero gradient.
 */
#include <string.h>

#include "moe.h"

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
    return SMLP_OK;
}

static int
dispatch_run(struct smlp_kernel_ctx *ctx)
{
    const struct smlp_tensor *xt = ctx->inputs[0], *st = ctx->inputs[1];
    const float *x = xt->data;
    const int32_t *si = st->data;
    float *buf = ctx->outputs[0]->data;
    int64_t n = xt->shape[0], d = xt->shape[1];
    int64_t rows = st->shape[0] * st->shape[1], r;
    size_t row_bytes = (size_t)d * sizeof(float);

    for (r = 0; r < rows; r++) {
        int32_t item = si[r];

        if (item == -1) {
            memset(buf + r * d, 0, row_bytes);
            continue;
        }
        if (item < 0 || item >= n)
            return smlp_kernel_fail(ctx, SMLP_EINVAL,
                                    "input 1 (slot_item)[%lld,%lld] = %d is "
                                    "out of range: expected -1 or an item "
                                    "of input 0 (x) in [0, %lld)",
                                    (long long)(r / st->shape[1]),
                                    (long long)(r % st->shape[1]), (int)item,
                                    (long long)n);
        memcpy(buf + r * d, x + (int64_t)item * d, row_bytes);
    }
    return SMLP_OK;
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

static int
dispatch_backward(struct smlp_backward_ctx *ctx)
{
    const struct smlp_tensor *xt = ctx->inputs[0], *st = ctx->inputs[1];
    const struct smlp_tensor *gbuf = ctx->grad_outputs[0];
    struct smlp_tensor *gx = ctx->grad_inputs[0];
    const int32_t *si = st->data;
    const float *db;
    float *dx;
    int64_t n = xt->shape[0], d = xt->shape[1], m = st->shape[1];
    int64_t rows = st->shape[0] * m, r, c;

    if (gx == NULL)
        return SMLP_OK; /* slot_item is i32: nothing else is wanted */
    dx = gx->data;
    /* Every index is checked before dx is touched. */
    for (r = 0; r < rows; r++)
        if (si[r] < -1 || si[r] >= n)
            return dispatch_bad_row(ctx, r, m, si[r], n);
    memset(dx, 0, (size_t)(n * d) * sizeof(float));
    if (gbuf == NULL)
        return SMLP_OK;
    db = gbuf->data;
    for (r = 0; r < rows; r++) {
        const float *src = db + r * d;
        float *dst;

        if (si[r] < 0)
            continue;
        dst = dx + (int64_t)si[r] * d;
        for (c = 0; c < d; c++)
            dst[c] += src[c];
    }
    return SMLP_OK;
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
