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
 *
 * Threads: im2col and col2im go by patch rows, the products by tiles
 * (gemm.c: dW's sum over rows is never split), the bias is added to each
 * tile of Y, db is summed in chunks of channels; all cut by shape only.
 */
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

/*
 * The image as patch rows: unit u = i·(H/P) + pr is patch row pr of image
 * i, whose W/P patches are rows [u·(W/P), (u + 1)·(W/P)) of cols.
 */
struct patch_cols {
    float *cols;
    float *x;        /* the image (im2col reads it, col2im writes it) */
    int64_t cin, h, wid, p, kdim;
};

/* Copies the PxP patches of units [begin, end) into rows of
 * cols[B·L, Cin·P·P] (im2col), columns ordered (cin, ky, kx). */
static int
im2col_task(void *arg, int64_t begin, int64_t end, int worker)
{
    const struct patch_cols *pc = arg;
    int64_t u, col, ci, ky, p = pc->p, per = pc->h / p;

    (void)worker;
    for (u = begin; u < end; u++) {
        int64_t i = u / per, pr = u % per;
        float *cols = pc->cols + u * (pc->wid / p) * pc->kdim;

        for (col = 0; col < pc->wid / p; col++)
            for (ci = 0; ci < pc->cin; ci++)
                for (ky = 0; ky < p; ky++) {
                    const float *src =
                        pc->x + ((i * pc->cin + ci) * pc->h + pr * p + ky) *
                                    pc->wid +
                        col * p;

                    memcpy(cols, src, (size_t)p * sizeof(float));
                    cols += p;
                }
    }
    return 0;
}

/* The inverse: writes rows of cols back to their patches (col2im). */
static int
col2im_task(void *arg, int64_t begin, int64_t end, int worker)
{
    const struct patch_cols *pc = arg;
    int64_t u, col, ci, ky, p = pc->p, per = pc->h / p;

    (void)worker;
    for (u = begin; u < end; u++) {
        int64_t i = u / per, pr = u % per;
        const float *cols = pc->cols + u * (pc->wid / p) * pc->kdim;

        for (col = 0; col < pc->wid / p; col++)
            for (ci = 0; ci < pc->cin; ci++)
                for (ky = 0; ky < p; ky++) {
                    float *dst = pc->x +
                                 ((i * pc->cin + ci) * pc->h + pr * p + ky) *
                                     pc->wid +
                                 col * p;

                    memcpy(dst, cols, (size_t)p * sizeof(float));
                    cols += p;
                }
    }
    return 0;
}

/* Patch rows per task of im2col / col2im: a function of the shape. */
static int64_t
patch_units_per_task(const struct patch_cols *pc)
{
    int64_t bytes = (pc->wid / pc->p) * pc->kdim * (int64_t)sizeof(float);
    int64_t per = bytes > 0 ? (256 * 1024) / bytes : 1;

    return per > 0 ? per : 1;
}

static int
patch_run_cols(const struct smlp_host_api *host, const struct smlp_node *node,
               struct patch_cols *pc, int64_t nb,
               int (*fn)(void *, int64_t, int64_t, int))
{
    return smlp__core_parallel_range(host, node, nb * (pc->h / pc->p),
                                     patch_units_per_task(pc), fn, pc);
}

static void
patch_bias_epilogue(void *arg, float *c, int64_t ldc, int64_t i, int64_t m0,
                    int64_t mb, int64_t n0, int64_t nb)
{
    const float *bd = (const float *)arg + n0;
    int64_t r, j;

    (void)i;
    (void)m0;
    for (r = 0; r < mb; r++)
        for (j = 0; j < nb; j++)
            c[r * ldc + j] += bd[j];
}

static int
patch_run(struct smlp_kernel_ctx *ctx)
{
    const struct patch_priv *priv = ctx->priv;
    const struct smlp_tensor *img = ctx->inputs[0], *w = ctx->inputs[1];
    const struct smlp_tensor *b = ctx->n_inputs > 2 ? ctx->inputs[2] : NULL;
    float *y = ctx->outputs[0]->data;
    int64_t nb = img->shape[0], cin = img->shape[1], h = img->shape[2];
    int64_t wid = img->shape[3], p = priv->patch, c = w->shape[0];
    int64_t kdim = cin * p * p, rows = nb * (h / p) * (wid / p), r, j;
    struct patch_cols pc;
    struct smlp__core_gemm g;
    int rc;

    if (rows * c == 0)
        return SMLP_OK;
    if (kdim == 0) {
        const float *bd = b != NULL ? b->data : NULL;

        for (r = 0; r < rows; r++)
            for (j = 0; j < c; j++)
                y[r * c + j] = bd != NULL ? bd[j] : 0.0f;
        return SMLP_OK;
    }
    pc.cols = ctx->workspace;
    pc.x = img->data;
    pc.cin = cin;
    pc.h = h;
    pc.wid = wid;
    pc.p = p;
    pc.kdim = kdim;
    if ((rc = patch_run_cols(ctx->host, ctx->node, &pc, nb, im2col_task)) !=
        0)
        return rc;
    /* Y[B·L, C] = cols·Wᵀ (+ b on each tile). */
    memset(&g, 0, sizeof(g));
    g.batch = 1;
    g.m = rows;
    g.n = c;
    g.k = kdim;
    g.alpha = 1.0f;
    g.a = pc.cols;
    g.lda = kdim;
    g.trans_b = 1;
    g.b = w->data;
    g.ldb = kdim;
    g.c = y;
    g.ldc = c;
    if (b != NULL) {
        g.epilogue = patch_bias_epilogue;
        g.epilogue_arg = b->data;
    }
    return smlp__core_gemm(ctx->host, ctx->node, &g);
}

/* db[j] = Σ_r dy[r, j] in double, r increasing, for j in a range. */
struct patch_db {
    float *db;
    const float *dy;
    double *acc;
    int64_t rows, c;
};

static int
patch_db_task(void *arg, int64_t begin, int64_t end, int worker)
{
    const struct patch_db *a = arg;
    int64_t r, j;

    (void)worker;
    for (j = begin; j < end; j++)
        a->acc[j] = 0.0;
    for (r = 0; r < a->rows; r++)
        for (j = begin; j < end; j++)
            a->acc[j] += a->dy[r * a->c + j];
    for (j = begin; j < end; j++)
        a->db[j] = (float)a->acc[j];
    return 0;
}

static int
patch_backward(struct smlp_backward_ctx *ctx)
{
    const struct patch_priv *priv = ctx->priv;
    const struct smlp_tensor *img = ctx->inputs[0], *w = ctx->inputs[1];
    const struct smlp_tensor *gy = ctx->grad_outputs[0];
    struct smlp_tensor *gimg = ctx->grad_inputs[0], *gw = ctx->grad_inputs[1];
    struct smlp_tensor *gb = ctx->n_inputs > 2 ? ctx->grad_inputs[2] : NULL;
    const float *dy;
    int64_t nb = img->shape[0], cin = img->shape[1], h = img->shape[2];
    int64_t wid = img->shape[3], p = priv->patch, c = w->shape[0];
    int64_t kdim = cin * p * p, rows = nb * (h / p) * (wid / p);
    struct patch_cols pc;
    struct smlp__core_gemm g;
    int rc;

    if (gy == NULL || rows * c * kdim == 0)
        smlp__core_zero_grads(ctx);
    if (gy == NULL)
        return SMLP_OK;
    dy = gy->data;
    if (gb != NULL && rows * c > 0) {
        struct patch_db a;

        a.db = gb->data;
        a.dy = dy;
        a.acc = (double *)((char *)ctx->workspace +
                           patch_bias_offset(rows, kdim));
        a.rows = rows;
        a.c = c;
        if ((rc = smlp__core_parallel_range(ctx->host, ctx->node, c, 256,
                                            patch_db_task, &a)) != 0)
            return rc;
    }
    if (rows * c * kdim == 0)
        return SMLP_OK;
    pc.cols = ctx->workspace;
    pc.cin = cin;
    pc.h = h;
    pc.wid = wid;
    pc.p = p;
    pc.kdim = kdim;
    memset(&g, 0, sizeof(g));
    g.batch = 1;
    g.alpha = 1.0f;
    if (gw != NULL) {
        /* dW[C, kdim] = dYᵀ·cols, summed over rows by BLAS. */
        pc.x = img->data;
        if ((rc = patch_run_cols(ctx->host, ctx->node, &pc, nb,
                                 im2col_task)) != 0)
            return rc;
        g.m = c;
        g.n = kdim;
        g.k = rows;
        g.trans_a = 1;
        g.a = dy;
        g.lda = c;
        g.b = pc.cols;
        g.ldb = kdim;
        g.c = gw->data;
        g.ldc = kdim;
        if ((rc = smlp__core_gemm(ctx->host, ctx->node, &g)) != 0)
            return rc;
    }
    if (gimg != NULL) {
        /* dcols[rows, kdim] = dY·W, then back to the image. */
        g.m = rows;
        g.n = kdim;
        g.k = c;
        g.trans_a = 0;
        g.a = dy;
        g.lda = c;
        g.b = w->data;
        g.ldb = kdim;
        g.c = pc.cols;
        g.ldc = kdim;
        if ((rc = smlp__core_gemm(ctx->host, ctx->node, &g)) != 0)
            return rc;
        pc.x = gimg->data;
        return patch_run_cols(ctx->host, ctx->node, &pc, nb, col2im_task);
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
