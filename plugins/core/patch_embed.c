/*
 * patch_embed.c - core.patch_embed: non-overlapping P×P convolution.
 *
 * img [B,Cin,H,W], W [C,Cin,P,P], b [C] (optional) -> [B, L, C] with
 * L = (H/P)·(W/P) patches in row-major (row, col) order.  The kernel
 * copies the patches into the workspace as rows of
 * cols[B·L, Cin·P·P] (im2col, columns ordered (cin, ky, kx) like W's
 * flattened rows), then runs one sgemm Y[B·L, C] = cols·Wᵀ and adds b.
 *
 * The backward redoes the im2col in its workspace for dW = dYᵀ·cols (one
 * sgemm), then reuses that space for dcols = dY·W (one sgemm), which
 * col2im scatters back to dimg: patches do not overlap, so that is a
 * copy, not a sum.  db[c] = Σ_rows dY[row,c] in double, in row order,
 * after the cols in the workspace.
 */
#include <cblas.h>
#include <string.h>

#include "core.h"

struct patch_priv {
    int patch;
};

/* Byte offset of the backward's db accumulators: after the cols. */
static size_t
patch_bias_offset(int64_t rows, int64_t kdim)
{
    return ((size_t)(rows * kdim) * sizeof(float) + sizeof(double) - 1) /
           sizeof(double) * sizeof(double);
}

static int
patch_infer(struct smlp_infer_ctx *ctx)
{
    const struct smlp_tensor *img, *w, *b;
    struct patch_priv priv = {0};
    int64_t patch, rows, kdim, shape[3], dims[3];
    char s1[SMLP_SHAPE_STRLEN], s2[SMLP_SHAPE_STRLEN];
    int rc;

    if ((rc = smlp_infer_attr_int(ctx, "patch", 1, 0, &patch)) != 0)
        return rc;
    if (patch < 1 || patch > INT_MAX)
        return smlp_infer_fail(ctx, SMLP_EINVAL,
                               "attribute 'patch' = %lld is invalid: "
                               "expected a positive size",
                               (long long)patch);
    if ((rc = smlp_infer_check_input(ctx, 0, "img", SMLP_DTYPE_F32, 4, 4)) !=
            0 ||
        (rc = smlp_infer_check_input(ctx, 1, "W", SMLP_DTYPE_F32, 4, 4)) != 0)
        return rc;
    img = ctx->inputs[0];
    w = ctx->inputs[1];
    b = ctx->n_inputs > 2 ? ctx->inputs[2] : NULL;
    smlp_shape_str(img, s1, sizeof(s1));
    smlp_shape_str(w, s2, sizeof(s2));
    if (w->shape[1] != img->shape[1] || w->shape[2] != patch ||
        w->shape[3] != patch)
        return smlp_infer_fail(ctx, SMLP_ESHAPE,
                               "input 1 (W) has shape %s, expected "
                               "[C,%lld,%lld,%lld] for input 0 (img) %s and "
                               "patch %lld",
                               s2, (long long)img->shape[1], (long long)patch,
                               (long long)patch, s1, (long long)patch);
    if (img->shape[2] % patch != 0 || img->shape[3] % patch != 0)
        return smlp_infer_fail(ctx, SMLP_ESHAPE,
                               "input 0 (img) has shape %s: H=%lld and "
                               "W=%lld must be divisible by patch %lld",
                               s1, (long long)img->shape[2],
                               (long long)img->shape[3], (long long)patch);
    if (b != NULL &&
        ((rc = smlp_infer_check_input(ctx, 2, "b", SMLP_DTYPE_F32, 1, 1)) !=
             0 ||
         (rc = smlp_infer_check_vector(ctx, 2, "b", w->shape[0],
                                       "dim 0 of W")) != 0))
        return rc;
    shape[0] = img->shape[0];
    shape[1] = (img->shape[2] / patch) * (img->shape[3] / patch);
    shape[2] = w->shape[0];
    rows = shape[0] * shape[1];
    kdim = img->shape[1] * patch * patch;
    dims[0] = rows;
    dims[1] = shape[2];
    dims[2] = kdim;
    if ((rc = smlp__core_check_blas_dims(ctx, "core.patch_embed", 3, dims)) !=
        0)
        return rc;
    smlp_infer_set_output(ctx, 0, SMLP_DTYPE_F32, 3, shape);
    ctx->workspace = (size_t)(rows * kdim) * sizeof(float);
    ctx->backward_workspace = patch_bias_offset(rows, kdim) +
                              (b != NULL ? (size_t)shape[2] : 0) *
                                  sizeof(double);
    ctx->macs = (uint64_t)rows * (uint64_t)kdim * (uint64_t)shape[2];
    priv.patch = (int)patch;
    return smlp_infer_set_priv(ctx, &priv, sizeof(priv));
}

/* Copies the PxP patches of img into rows of cols[B·L, Cin·P·P]. */
static void
im2col(float *cols, const float *x, int64_t nb, int64_t cin, int64_t h,
       int64_t wid, int64_t p)
{
    int64_t i, pr, pc, ci, ky;

    for (i = 0; i < nb; i++)
        for (pr = 0; pr < h / p; pr++)
            for (pc = 0; pc < wid / p; pc++)
                for (ci = 0; ci < cin; ci++)
                    for (ky = 0; ky < p; ky++) {
                        const float *src = x + ((i * cin + ci) * h +
                                                pr * p + ky) * wid + pc * p;

                        memcpy(cols, src, (size_t)p * sizeof(float));
                        cols += p;
                    }
}

static int
patch_run(struct smlp_kernel_ctx *ctx)
{
    const struct patch_priv *priv = ctx->priv;
    const struct smlp_tensor *img = ctx->inputs[0], *w = ctx->inputs[1];
    const struct smlp_tensor *b = ctx->n_inputs > 2 ? ctx->inputs[2] : NULL;
    float *cols = ctx->workspace, *y = ctx->outputs[0]->data;
    int64_t nb = img->shape[0], cin = img->shape[1], h = img->shape[2];
    int64_t wid = img->shape[3], p = priv->patch, c = w->shape[0];
    int64_t kdim = cin * p * p, rows = nb * (h / p) * (wid / p), r, j;

    if (rows * c == 0)
        return SMLP_OK;
    if (kdim == 0) {
        memset(y, 0, (size_t)(rows * c) * sizeof(float));
    } else {
        im2col(cols, img->data, nb, cin, h, wid, p);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows,
                    (int)c, (int)kdim, 1.0f, cols, (int)kdim, w->data,
                    (int)kdim, 0.0f, y, (int)c);
    }
    if (b != NULL) {
        const float *bd = b->data;

        for (r = 0; r < rows; r++)
            for (j = 0; j < c; j++)
                y[r * c + j] += bd[j];
    }
    return SMLP_OK;
}

/* The inverse of im2col: writes rows of cols back to their patches. */
static void
col2im(float *x, const float *cols, int64_t nb, int64_t cin, int64_t h,
       int64_t wid, int64_t p)
{
    int64_t i, pr, pc, ci, ky;

    for (i = 0; i < nb; i++)
        for (pr = 0; pr < h / p; pr++)
            for (pc = 0; pc < wid / p; pc++)
                for (ci = 0; ci < cin; ci++)
                    for (ky = 0; ky < p; ky++) {
                        float *dst = x + ((i * cin + ci) * h + pr * p + ky) *
                                             wid + pc * p;

                        memcpy(dst, cols, (size_t)p * sizeof(float));
                        cols += p;
                    }
}

static int
patch_backward(struct smlp_backward_ctx *ctx)
{
    const struct patch_priv *priv = ctx->priv;
    const struct smlp_tensor *img = ctx->inputs[0], *w = ctx->inputs[1];
    const struct smlp_tensor *gy = ctx->grad_outputs[0];
    struct smlp_tensor *gimg = ctx->grad_inputs[0], *gw = ctx->grad_inputs[1];
    struct smlp_tensor *gb = ctx->n_inputs > 2 ? ctx->grad_inputs[2] : NULL;
    float *cols = ctx->workspace;
    const float *dy;
    int64_t nb = img->shape[0], cin = img->shape[1], h = img->shape[2];
    int64_t wid = img->shape[3], p = priv->patch, c = w->shape[0];
    int64_t kdim = cin * p * p, rows = nb * (h / p) * (wid / p), r, j;

    if (gy == NULL || rows * c * kdim == 0)
        smlp__core_zero_grads(ctx);
    if (gy == NULL)
        return SMLP_OK;
    dy = gy->data;
    if (gb != NULL && rows * c > 0) {
        double *acc = (double *)((char *)ctx->workspace +
                                 patch_bias_offset(rows, kdim));
        float *db = gb->data;

        for (j = 0; j < c; j++)
            acc[j] = 0.0;
        for (r = 0; r < rows; r++)
            for (j = 0; j < c; j++)
                acc[j] += dy[r * c + j];
        for (j = 0; j < c; j++)
            db[j] = (float)acc[j];
    }
    if (rows * c * kdim == 0)
        return SMLP_OK;
    if (gw != NULL) {
        im2col(cols, img->data, nb, cin, h, wid, p);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)c,
                    (int)kdim, (int)rows, 1.0f, dy, (int)c, cols, (int)kdim,
                    0.0f, gw->data, (int)kdim);
    }
    if (gimg != NULL) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows,
                    (int)kdim, (int)c, 1.0f, dy, (int)c, w->data, (int)kdim,
                    0.0f, cols, (int)kdim);
        col2im(gimg->data, cols, nb, cin, h, wid, p);
    }
    return SMLP_OK;
}

static const struct smlp_attr_def patch_attrs[] = {
    {"patch", SMLP_ATTR_INT, 1, "patch size P (stride P, no overlap)"},
    {NULL, 0, 0, NULL},
};

static const struct smlp_kernel_def patch_cpu = {
    .size = sizeof(struct smlp_kernel_def),
    .abi = SMLP_ABI_VERSION,
    .device = SMLP_DEVICE_CPU,
    .dtype_mask = SMLP__MASK_F32,
    .run = patch_run,
    .score = SMLP__CORE_CPU_SCORE,
};

static const struct smlp_kernel_def *const patch_kernels[] = {
    &patch_cpu, SMLP__CORE_CUDA(smlp__core_patch_embed_cuda) NULL};

const struct smlp_op_def smlp__core_op_patch_embed = {
    .size = sizeof(struct smlp_op_def),
    .abi = SMLP_ABI_VERSION,
    .name = "core.patch_embed",
    .min_inputs = 2,
    .max_inputs = 3,
    .n_outputs = 1,
    .attrs = patch_attrs,
    .infer = patch_infer,
    .kernels = patch_kernels,
    .backward = patch_backward,
    .doc = "img [B,Cin,H,W], W [C,Cin,P,P], b [C] (optional) -> "
           "[B,(H/P)(W/P),C], PxP patches, stride P",
};
