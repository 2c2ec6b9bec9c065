/*
 * expert_ffn.c - moe.expert_ffn: one two-layer MLP per expert.
 *
 * buf [E,M,d], W1 [E,h,d], b1 [E,h], W2 [E,o,h], b2 [E,o], slot_item i32
 * [E,M] (optional) -> out [E,M,o]; per expert e:
 *   out_e = act(buf_e·W1_eᵀ + b1_e)·W2_eᵀ + b2_e,
 * act = exact GELU (0.5·x·(1 + erf(x/√2)), smlp_gelu_erf, as core.gelu)
 * or ReLU (attribute `activation`).
 *
 * Forward.  Intra-op tasks (smlp_parallel_for) are (expert, row block):
 * an expert's M rows are cut into ceil(M/FFN_ROWS_MAX) blocks of
 * near-equal size, so there are E·ceil(M/FFN_ROWS_MAX) tasks, a number
 * fixed by the shapes.  A task gathers the rows of its block that hold an
 * item (slot_item != −1; without slot_item every row, read in place) into
 * a contiguous X [n,d] in its worker's scratch slot; then, per chunk of at
 * most FFN_CHUNK_MAX hidden units, Hc = X·W1cᵀ (a single-threaded sgemm),
 * bias and activation in one pass while Hc is in cache, and Y += Hc·W2cᵀ
 * (the first chunk sets Y; Y goes straight into out without slot_item);
 * then b2, and the rows are scattered back, rows marked −1 written as
 * zeros at no cost.  Blocks are large and the chunks bound the scratch,
 * so each weight is packed once per task (with 64-row blocks, re-packing
 * sparse_mlp_b's 9 MiB per-expert weights cost ~40% more work).  A row's
 * result depends on its block and the chunks only, never on the thread
 * count.  The workspace holds FFN_SLOTS worker slots (X, Hc, Y of one
 * block) and never less than M·h floats (what the CUDA kernel expects); a
 * run on more threads than the workspace has slots gets them from
 * host->alloc.
 *
 * Reported MACs are E·M·(d·h + h·o), the upper bound of what is issued
 * (every row filled); with slot_item the kernel issues Σ_e n_e·(d·h + h·o).
 *
 * Backward (slot_item gets no gradient), expert by expert on the same rows
 * as the forward (the n_e filled rows gathered, in row order, or all M),
 * with dY the rows of d out and A = X·W1ᵀ + b1 the pre-activation,
 * recomputed:
 *   dW2 = dYᵀ·act(A),  db2 = Σ_rows dY,
 *   G   = (dY·W2) ⊙ act'(A),
 *   dW1 = Gᵀ·X,  db1 = Σ_rows G,  dX = G·W1,
 * with act' the derivative of the exact GELU (Φ(a) + a·φ(a), Φ through
 * smlp_erff as in the forward) or of ReLU (1 where a > 0, else 0, as
 * PyTorch).  Rows marked −1 get a zero d buf and contribute nothing.
 * Two rounds of tasks per expert, split along whichever dimension makes
 * the repacked operand the small one:
 *   row mode (M > h): (1) row blocks of at most FFN_BWD_ROWS_MAX rows form
 *     A, G, act(A) (one fused elementwise pass) and dX; (2) blocks of
 *     hidden units form dW1's rows, db1 and dW2's columns, plus blocks of
 *     db2;
 *   column mode (M <= h): (1) blocks of hidden units form A, G, act(A) of
 *     their columns, then dW1's rows, db1 and dW2's columns; (2) column
 *     blocks of dX and of db2.
 * The weight and bias gradients (sums over the rows) are split by output
 * element, never over the rows, so every element is summed by one task in
 * one fixed order (bias sums in float in row order); dX rows are sums
 * over h by one task.  Column blocks are about FFN_COL_TASKS per product
 * (ffn_cols).  Every product is a single-threaded OpenBLAS sgemm inside a
 * task, so results do not depend on `threads`.  The backward workspace
 * holds X [M,d], act(A) [M,h], G [M,h], dY [M,o], dX [M,d] and the filled
 * rows' indices with slot_item, and act(A), G without (X, dY and dX are
 * then read or written in place).
 */
#include <cblas.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "moe.h"

/* Task shapes: constants, and functions of the shapes only (never of the
 * thread count). */
/* Forward row blocks of at most this many rows. */
#define FFN_ROWS_MAX 512
/* Forward hidden chunks of at most this many units. */
#define FFN_CHUNK_MAX 512
/* Worker scratch slots the forward workspace holds at least. */
#define FFN_SLOTS 4
/* Backward row blocks (row mode) of at most this many rows. */
#define FFN_BWD_ROWS_MAX 256
/* Backward column blocks: about FFN_COL_TASKS per product, each a
 * multiple of 16 columns in [FFN_COL_MIN, FFN_COL_MAX]. */
#define FFN_COL_TASKS 8
#define FFN_COL_MIN 32
#define FFN_COL_MAX 512

struct ffn_priv {
    int relu;
};

/* Row blocks per expert of the forward. */
static int64_t
ffn_blocks(int64_t m)
{
    return m > 0 ? (m + FFN_ROWS_MAX - 1) / FFN_ROWS_MAX : 0;
}

/* Rows of the largest forward block. */
static int64_t
ffn_block_rows(int64_t m)
{
    int64_t nb = ffn_blocks(m);

    return nb > 0 ? (m + nb - 1) / nb : 0;
}

/* Hidden columns per forward chunk: ceil(h / FFN_CHUNK_MAX) chunks of
 * near-equal width, a multiple of 16. */
static int64_t
ffn_chunk(int64_t h)
{
    int64_t nc = (h + FFN_CHUNK_MAX - 1) / FFN_CHUNK_MAX, c;

    if (nc < 1)
        return 16;
    c = (h + nc - 1) / nc;
    return (c + 15) / 16 * 16;
}

/* Columns per backward task over n columns. */
static int64_t
ffn_cols(int64_t n)
{
    int64_t c = (n + FFN_COL_TASKS - 1) / FFN_COL_TASKS;

    c = (c + 15) / 16 * 16;
    return c < FFN_COL_MIN ? FFN_COL_MIN : c > FFN_COL_MAX ? FFN_COL_MAX : c;
}

/* A forward worker slot for blocks of r rows: X [r,d], H [r,min(h,
 * ffn_chunk(h))], Y [r,o] (X and Y only when gathered); offsets and slot size
 * in bytes. */
static void
ffn_slot_layout(int64_t r, int64_t d, int64_t h, int64_t o, int gathered,
                size_t *hoff, size_t *yoff, size_t *slot)
{
    int64_t hc = h < ffn_chunk(h) ? h : ffn_chunk(h);
    size_t xs = gathered ? smlp__moe_align((size_t)(r * d) * sizeof(float))
                         : 0;
    size_t hs = smlp__moe_align((size_t)(r * hc) * sizeof(float));
    size_t ys = gathered ? smlp__moe_align((size_t)(r * o) * sizeof(float))
                         : 0;

    *hoff = xs;
    *yoff = xs + hs;
    *slot = xs + hs + ys;
}

/* Bytes of forward workspace: FFN_SLOTS slots, at least M·h floats (what
 * the CUDA kernel expects); more slots fit when the floor is larger. */
static size_t
ffn_workspace(int64_t m, int64_t d, int64_t h, int64_t o, int gathered)
{
    size_t hoff, yoff, slot, floor;

    ffn_slot_layout(ffn_block_rows(m), d, h, o, gathered, &hoff, &yoff,
                    &slot);
    floor = smlp__moe_align((size_t)(m * h) * sizeof(float));
    return FFN_SLOTS * slot > floor ? FFN_SLOTS * slot : floor;
}

/* The backward's pieces: X [M,d], act(A) [M,h], G [M,h], dY [M,o], dX
 * [M,d] (offsets in bytes; X, dY and dX only when gathered), then the
 * filled rows' indices (i32 [M], gathered). */
static void
ffn_backward_layout(int64_t m, int64_t d, int64_t h, int64_t o, int gathered,
                    size_t off[6], size_t *total)
{
    size_t xs = gathered ? smlp__moe_align((size_t)(m * d) * sizeof(float))
                         : 0;
    size_t hs = smlp__moe_align((size_t)(m * h) * sizeof(float));
    size_t ys = gathered ? smlp__moe_align((size_t)(m * o) * sizeof(float))
                         : 0;
    size_t is = gathered ? smlp__moe_align((size_t)m * sizeof(int32_t))
                         : 0;

    off[0] = 0;
    off[1] = xs;
    off[2] = xs + hs;
    off[3] = xs + 2 * hs;
    off[4] = off[3] + ys;
    off[5] = off[4] + xs;
    *total = off[5] + is;
}

static int
ffn_infer(struct smlp_infer_ctx *ctx)
{
    static const char *const acts[] = {"gelu", "relu"};
    const struct smlp_tensor *buf, *w1, *w2;
    struct ffn_priv priv = {0};
    const char *act;
    int64_t e, m, d, h, o, want[3], dims[4];
    size_t total, boff[6];
    int rc, gathered;

    if ((rc = smlp_infer_attr_string(ctx, "activation", 0, "gelu", &act)) !=
        0)
        return rc;
    if (strcmp(act, acts[0]) == 0)
        priv.relu = 0;
    else if (strcmp(act, acts[1]) == 0)
        priv.relu = 1;
    else
        return smlp_infer_fail(ctx, SMLP_EINVAL,
                               "attribute 'activation' = '%s' is invalid: "
                               "expected 'gelu' or 'relu'",
                               act);
    if ((rc = smlp_infer_check_input(ctx, 0, "buf", SMLP_DTYPE_F32, 3, 3)) !=
            0 ||
        (rc = smlp_infer_check_input(ctx, 1, "W1", SMLP_DTYPE_F32, 3, 3)) !=
            0 ||
        (rc = smlp_infer_check_input(ctx, 2, "b1", SMLP_DTYPE_F32, 2, 2)) !=
            0 ||
        (rc = smlp_infer_check_input(ctx, 3, "W2", SMLP_DTYPE_F32, 3, 3)) !=
            0 ||
        (rc = smlp_infer_check_input(ctx, 4, "b2", SMLP_DTYPE_F32, 2, 2)) !=
            0)
        return rc;
    buf = ctx->inputs[0];
    w1 = ctx->inputs[1];
    w2 = ctx->inputs[3];
    e = buf->shape[0];
    m = buf->shape[1];
    d = buf->shape[2];
    h = w1->shape[1];
    o = w2->shape[1];
    want[0] = e;
    want[1] = h;
    want[2] = d;
    if ((rc = smlp__moe_check_shape(ctx, 1, "W1", 3, want,
                                    "[E,h,d] with E, d of input 0 (buf) "
                                    "[E,M,d]")) != 0)
        return rc;
    if ((rc = smlp__moe_check_shape(ctx, 2, "b1", 2, want,
                                    "[E,h] with h = dim 1 of input 1 (W1)")) !=
        0)
        return rc;
    want[1] = o;
    want[2] = h;
    if ((rc = smlp__moe_check_shape(ctx, 3, "W2", 3, want,
                                    "[E,o,h] with h = dim 1 of input 1 "
                                    "(W1)")) != 0 ||
        (rc = smlp__moe_check_shape(ctx, 4, "b2", 2, want,
                                    "[E,o] with o = dim 1 of input 3 (W2)")) !=
            0)
        return rc;
    gathered = ctx->n_inputs > 5 && ctx->inputs[5] != NULL;
    if (gathered) {
        if ((rc = smlp_infer_check_input(ctx, 5, "slot_item", SMLP_DTYPE_I32,
                                         2, 2)) != 0)
            return rc;
        want[0] = e;
        want[1] = m;
        if ((rc = smlp__moe_check_shape(ctx, 5, "slot_item", 2, want,
                                        "[E,M] like dims 0, 1 of input 0 "
                                        "(buf)")) != 0)
            return rc;
    }
    dims[0] = m;
    dims[1] = d;
    dims[2] = h;
    dims[3] = o;
    if ((rc = smlp__moe_check_blas_dims(ctx, "moe.expert_ffn", 4, dims)) !=
        0)
        return rc;
    want[0] = e;
    want[1] = m;
    want[2] = o;
    smlp_infer_set_output(ctx, 0, SMLP_DTYPE_F32, 3, want);
    ctx->workspace = ffn_workspace(m, d, h, o, gathered);
    ffn_backward_layout(m, d, h, o, gathered, boff, &total);
    if (ctx->size >= offsetof(struct smlp_infer_ctx, backward_workspace) +
                        sizeof(ctx->backward_workspace))
        ctx->backward_workspace = total;
    /* Training: the forward keeps the pre-activations Z = X·W1ᵀ + b1 of
     * every filled row, [E,M,h], so that the backward need not recompute
     * them (one of its five products). */
    if (ctx->training &&
        ctx->size >= offsetof(struct smlp_infer_ctx, saved_bytes) +
                         sizeof(ctx->saved_bytes))
        ctx->saved_bytes = (size_t)(e * m * h) * sizeof(float);
    ctx->macs = (uint64_t)e * (uint64_t)m *
                ((uint64_t)d * (uint64_t)h + (uint64_t)h * (uint64_t)o);
    return smlp_infer_set_priv(ctx, &priv, sizeof(priv));
}

/*
 * C [rows, cols] (row stride ldc) = beta·C + op(A)·op(B): A [rows, inner]
 * (stride lda), or [inner, rows] read transposed when trans_a; B [inner,
 * cols] (stride ldb), or [cols, inner] read transposed when trans_b.  An
 * empty inner sum gives beta·C (C = 0 when beta is 0).
 */
static void
gemm(int trans_a, int trans_b, int64_t rows, int64_t cols, int64_t inner,
     const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
     float *c, int64_t ldc)
{
    int64_t r;

    if (rows == 0 || cols == 0)
        return;
    if (inner == 0) {
        if (beta == 0.0f)
            for (r = 0; r < rows; r++)
                memset(c + r * ldc, 0, (size_t)cols * sizeof(float));
        return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, (int)rows, (int)cols,
                (int)inner, 1.0f, a, (int)lda, b, (int)ldb, beta, c,
                (int)ldc);
}

/* H = act(H + b) over rows of h values (row stride ld), in one pass. */
SMLP_VECTOR_CLONES static void
bias_act(float *hd, const float *b, int64_t rows, int64_t h, int64_t ld,
         int relu)
{
    int64_t r, j;

    for (r = 0; r < rows; r++) {
        float *row = hd + r * ld;

        if (relu)
            for (j = 0; j < h; j++) {
                float v = row[j] + b[j];
                row[j] = v < 0.0f ? 0.0f : v;
            }
        else
            for (j = 0; j < h; j++)
                row[j] = smlp_gelu_erf(row[j] + b[j]);
    }
}

/* bias_act of one row of n values that also keeps the pre-activation:
 * z = row + b (the sum bias_act makes), row = act(z). */
SMLP_VECTOR_CLONES static void
bias_act_keep(float *row, const float *b, int64_t n, int relu, float *z)
{
    int64_t j;

    for (j = 0; j < n; j++)
        z[j] = row[j] + b[j];
    if (relu)
        for (j = 0; j < n; j++)
            row[j] = z[j] < 0.0f ? 0.0f : z[j];
    else
        for (j = 0; j < n; j++)
            row[j] = smlp_gelu_erf(z[j]);
}

/* Y += b over rows of o values. */
static void
add_bias(float *y, const float *b, int64_t rows, int64_t o)
{
    int64_t r, j;

    for (r = 0; r < rows; r++)
        for (j = 0; j < o; j++)
            y[r * o + j] += b[j];
}

/* What the forward tasks share (read-only while they run). */
struct ffn_fwd {
    int relu;
    const float *buf, *w1, *b1, *w2, *b2;
    const int32_t *si; /* NULL: every row is computed */
    float *out;
    float *z;       /* saved pre-activations [E,M,h], or NULL */
    int64_t m, d, h, o;
    int64_t blocks; /* row blocks per expert */
    char *slots;    /* worker w's slot at slots + w·slot */
    size_t slot, hoff, yoff;
};

/*
 * Task (expert, block): the block's rows (the filled ones gathered into
 * the worker's slot, or all of them in place), then per chunk of
 * ffn_chunk(h) hidden units Hc = act(X·W1cᵀ + b1c) and Y += Hc·W2cᵀ (the
 * first chunk sets Y), then b2 and the scatter.  With saved bytes (a
 * training step whose backward runs) each filled row's X·W1cᵀ + b1c is
 * kept there too, at its row of [E,M,h].
 */
static int
ffn_fwd_task(void *arg, int64_t task, int worker)
{
    const struct ffn_fwd *f = arg;
    int64_t ex = task / f->blocks, b = task % f->blocks;
    int64_t r0 = b * f->m / f->blocks, r1 = (b + 1) * f->m / f->blocks;
    int64_t d = f->d, h = f->h, o = f->o, chunk = ffn_chunk(h), n, r, j, c0;
    int64_t cw;
    const float *be = f->buf + ex * f->m * d, *src;
    const float *w1e = f->w1 + ex * h * d, *w2e = f->w2 + ex * o * h;
    const int32_t *sie = f->si != NULL ? f->si + ex * f->m : NULL;
    char *slot = f->slots + (size_t)worker * f->slot;
    float *xs = (float *)slot, *hs = (float *)(slot + f->hoff);
    float *ys = (float *)(slot + f->yoff);
    float *oe = f->out + ex * f->m * o, *dst;

    if (sie == NULL) {
        n = r1 - r0;
        src = be + r0 * d;
        dst = oe + r0 * o;
    } else {
        for (r = r0, n = 0; r < r1; r++)
            if (sie[r] != -1)
                memcpy(xs + (n++) * d, be + r * d, (size_t)d * sizeof(float));
        src = xs;
        dst = ys;
    }
    if (n > 0) {
        if (h == 0)
            memset(dst, 0, (size_t)(n * o) * sizeof(float));
        for (c0 = 0; c0 < h; c0 += chunk) {
            cw = h - c0 < chunk ? h - c0 : chunk;
            gemm(0, 1, n, cw, d, src, d, w1e + c0 * d, d, 0.0f, hs, cw);
            if (f->z == NULL)
                bias_act(hs, f->b1 + ex * h + c0, n, cw, cw, f->relu);
            for (r = r0, j = 0; f->z != NULL && r < r1; r++)
                if (sie == NULL || sie[r] != -1)
                    bias_act_keep(hs + (j++) * cw, f->b1 + ex * h + c0, cw,
                                  f->relu, f->z + (ex * f->m + r) * h + c0);
            gemm(0, 1, n, o, cw, hs, cw, w2e + c0, h, c0 > 0 ? 1.0f : 0.0f,
                 dst, o);
        }
        add_bias(dst, f->b2 + ex * o, n, o);
    }
    if (sie == NULL)
        return 0;
    for (r = r0, n = 0; r < r1; r++) {
        if (sie[r] == -1)
            memset(oe + r * o, 0, (size_t)o * sizeof(float));
        else
            memcpy(oe + r * o, ys + (n++) * o, (size_t)o * sizeof(float));
    }
    return 0;
}

/* Worker slots the run may index: the session's threads when the host
 * runs tasks in parallel, else 1. */
static int64_t
ffn_workers(const struct smlp_host_api *host, int32_t threads)
{
    if (!SMLP_HOST_HAS(host, parallel_for) || threads < 1)
        return 1;
    return threads;
}

static int
ffn_run(struct smlp_kernel_ctx *ctx)
{
    const struct ffn_priv *priv = ctx->priv;
    const struct smlp_tensor *bt = ctx->inputs[0];
    struct ffn_fwd f;
    void *heap = NULL;
    int64_t e = bt->shape[0], workers, r;
    int rc;

    f.relu = priv->relu;
    f.buf = bt->data;
    f.w1 = ctx->inputs[1]->data;
    f.b1 = ctx->inputs[2]->data;
    f.w2 = ctx->inputs[3]->data;
    f.b2 = ctx->inputs[4]->data;
    f.si = ctx->n_inputs > 5 && ctx->inputs[5] != NULL ? ctx->inputs[5]->data
                                                       : NULL;
    f.out = ctx->outputs[0]->data;
    f.m = bt->shape[1];
    f.d = bt->shape[2];
    f.h = ctx->inputs[1]->shape[1];
    f.o = ctx->inputs[3]->shape[1];
    f.z = NULL;
    if (ctx->size >= offsetof(struct smlp_kernel_ctx, saved_size) +
                         sizeof(ctx->saved_size) &&
        ctx->saved != NULL &&
        ctx->saved_size >= (size_t)(e * f.m * f.h) * sizeof(float))
        f.z = ctx->saved;
    for (r = 0; f.si != NULL && r < e * f.m; r++)
        if (f.si[r] < -1)
            return smlp_kernel_fail(
                ctx, SMLP_EINVAL,
                "input 5 (slot_item)[%lld,%lld] = %d is invalid: expected "
                "-1 (empty row) or an item index >= 0",
                (long long)(r / f.m), (long long)(r % f.m), (int)f.si[r]);
    if (e == 0 || f.m == 0 || f.o == 0)
        return SMLP_OK;
    f.blocks = ffn_blocks(f.m);
    ffn_slot_layout(ffn_block_rows(f.m), f.d, f.h, f.o, f.si != NULL,
                    &f.hoff, &f.yoff, &f.slot);
    f.slots = ctx->workspace;
    workers = ffn_workers(ctx->host, ctx->threads);
    if (f.slot > 0 && (size_t)workers > ctx->workspace_size / f.slot) {
        /* More threads than the workspace has slots: slots for this run. */
        heap = ctx->host->alloc((size_t)workers * f.slot);
        if (heap == NULL)
            return smlp_kernel_fail(ctx, SMLP_ENOMEM,
                                    "out of memory (%lld scratch slots of "
                                    "%zu bytes)",
                                    (long long)workers, f.slot);
        f.slots = heap;
    }
    rc = smlp_parallel_for(ctx->host, ctx->node, e * f.blocks, ffn_fwd_task,
                           &f);
    if (heap != NULL)
        ctx->host->free(heap);
    return rc;
}

/* ---- backward ----------------------------------------------------------- */

/* dst[j] = Σ_r src[r, j] for j in [0, n) over rows of stride ld, in row
 * order. */
static void
column_sums(const float *src, int64_t rows, int64_t n, int64_t ld,
            float *dst)
{
    int64_t r, j;

    memset(dst, 0, (size_t)n * sizeof(float));
    for (r = 0; r < rows; r++)
        for (j = 0; j < n; j++)
            dst[j] += src[r * ld + j];
}

/*
 * The fused elementwise pass over a block of rows x n values (row stride
 * ld) of A (the product X·W1ᵀ without bias) and G (d act, when g is not
 * NULL): a += b (unless b is NULL: A holds Z already), g *= act'(a), then
 * a = act(a) when keep_act.  ReLU' =
 * [a > 0]; GELU' = Φ(a) + a·φ(a) (smlp_gelu_erf_both: one erf for act and
 * act' when both are wanted), branch-free so
 * that the loops vectorise.
 */
SMLP_VECTOR_CLONES static void
act_pass(float *a, float *g, const float *b, int64_t rows, int64_t n,
         int64_t ld, int relu, int keep_act)
{
    int64_t r, i;

    for (r = 0; r < rows; r++) {
        float *ar = a + r * ld, *gr = g != NULL ? g + r * ld : NULL;

        for (i = 0; b != NULL && i < n; i++)
            ar[i] += b[i];
        if (relu) {
            for (i = 0; gr != NULL && i < n; i++)
                gr[i] = ar[i] > 0.0f ? gr[i] : 0.0f;
            for (i = 0; keep_act && i < n; i++)
                ar[i] = ar[i] < 0.0f ? 0.0f : ar[i];
            continue;
        }
        if (gr != NULL && keep_act) {
            /* One erf per value for both act(a) and act'(a). */
            for (i = 0; i < n; i++) {
                float act, d = smlp_gelu_erf_both(ar[i], &act);

                gr[i] *= d;
                ar[i] = act;
            }
            continue;
        }
        for (i = 0; gr != NULL && i < n; i++)
            gr[i] *= smlp_gelu_erf_grad(ar[i]);
        for (i = 0; keep_act && i < n; i++)
            ar[i] = smlp_gelu_erf(ar[i]);
    }
}

/* Zeroes the gradients of expert ex that are wanted (no rows or no
 * gradient reaching out). */
static void
ffn_zero_expert(float *const dp[5], int64_t ex, const int64_t sz[5])
{
    int i;

    for (i = 0; i < 5; i++)
        if (dp[i] != NULL)
            memset(dp[i] + ex * sz[i], 0, (size_t)sz[i] * sizeof(float));
}

/* What the backward tasks of one expert share. */
struct ffn_bwd {
    int relu;
    int need_a;         /* act(A) for dW2 */
    int need_g;         /* G for dW1, db1, dX */
    int64_t d, h, o;
    int64_t n;          /* rows of the expert taken part (filled or all) */
    const int32_t *idx; /* their rows in the expert (gathered), else NULL */
    const float *w1e, *w2e, *b1e;
    const float *ze;     /* the forward's Z = X·W1ᵀ + b1 [M,h], or NULL */
    const float *x, *dy; /* X [n,d], dY [n,o]: gathered, or in place */
    float *as, *gs;      /* act(A) [n,h], G [n,h] */
    float *dxs;          /* dX [n,d] before the scatter (gathered) */
    float *dxe;          /* the expert's d buf rows, or NULL */
    float *dw1, *db1, *dw2, *db2; /* the expert's gradients, or NULL */
    int rows_mode;       /* round 1 over row blocks (else h columns) */
    int64_t row_blocks;  /* row mode: blocks over the n rows */
    int64_t hc, dc, oc;  /* column blocks over h, d, o */
    int64_t w_tasks;     /* round 2: tasks of dW (row mode), */
    int64_t dx_tasks;    /* then of dX (column mode), then of db2 */
};

/* dW1 rows, db1 and dW2 columns [c0, c0 + cw) of the hidden units, from
 * G and act(A): each a sum over all n rows, by one task. */
static void
ffn_bwd_weights(const struct ffn_bwd *f, int64_t c0, int64_t cw)
{
    int64_t n = f->n, d = f->d, h = f->h, o = f->o;

    if (f->dw1 != NULL)
        gemm(1, 0, cw, d, n, f->gs + c0, h, f->x, d, 0.0f, f->dw1 + c0 * d,
             d);
    if (f->db1 != NULL)
        column_sums(f->gs + c0, n, cw, h, f->db1 + c0);
    if (f->dw2 != NULL)
        gemm(1, 0, o, cw, n, f->dy, o, f->as + c0, h, 0.0f, f->dw2 + c0, h);
}

/* dX rows [r0, r1) (of the n) = G·W1, scattered to the filled rows when
 * gathered. */
static void
ffn_bwd_dx_rows(const struct ffn_bwd *f, int64_t r0, int64_t r1)
{
    int64_t d = f->d, h = f->h, i;

    if (f->idx == NULL) {
        gemm(0, 0, r1 - r0, d, h, f->gs + r0 * h, h, f->w1e, d, 0.0f,
             f->dxe + r0 * d, d);
        return;
    }
    gemm(0, 0, r1 - r0, d, h, f->gs + r0 * h, h, f->w1e, d, 0.0f,
         f->dxs + r0 * d, d);
    for (i = r0; i < r1; i++)
        memcpy(f->dxe + (int64_t)f->idx[i] * d, f->dxs + i * d,
               (size_t)d * sizeof(float));
}

/*
 * The pre-activations of rows [r0, r1) of the n and hidden columns [c0,
 * c0 + cw) into a (row stride h): the forward's Z when it kept them
 * (returns NULL: the bias is in), else the product X·W1cᵀ (returns the
 * bias to add).
 */
static const float *
ffn_bwd_pre(const struct ffn_bwd *f, int64_t r0, int64_t r1, int64_t c0,
            int64_t cw, float *a)
{
    int64_t d = f->d, h = f->h, i;

    if (f->ze == NULL) {
        gemm(0, 1, r1 - r0, cw, d, f->x + r0 * d, d, f->w1e + c0 * d, d,
             0.0f, a, h);
        return f->b1e + c0;
    }
    for (i = r0; i < r1; i++)
        memcpy(a + (i - r0) * h,
               f->ze + (f->idx != NULL ? (int64_t)f->idx[i] : i) * h + c0,
               (size_t)cw * sizeof(float));
    return NULL;
}

/*
 * Round 1 in row mode, rows [r0, r1) of the n: A = X·W1ᵀ + b1 (or the
 * forward's Z), G = dY·W2, G *= act'(A), act(A), and dX = G·W1 of these
 * rows.
 */
static int
ffn_bwd_rows(void *arg, int64_t task, int worker)
{
    const struct ffn_bwd *f = arg;
    int64_t n = f->n, h = f->h, o = f->o;
    int64_t r0 = task * n / f->row_blocks, r1 = (task + 1) * n / f->row_blocks;
    float *as = f->as + r0 * h, *gs = f->gs + r0 * h;

    const float *b;

    (void)worker;
    b = ffn_bwd_pre(f, r0, r1, 0, h, as);
    if (f->need_g)
        gemm(0, 0, r1 - r0, h, o, f->dy + r0 * o, o, f->w2e, h, 0.0f, gs, h);
    act_pass(as, f->need_g ? gs : NULL, b, r1 - r0, h, h, f->relu,
             f->need_a);
    if (f->dxe != NULL)
        ffn_bwd_dx_rows(f, r0, r1);
    return 0;
}

/*
 * Round 1, hidden columns [c0, c1): A = X·W1cᵀ + b1c (or the forward's
 * Z), G = dY·W2c, G *= act'(A), act(A); then dW1 rows c (Gcᵀ·X), db1 c
 * (column sums of G) and
 * dW2 columns c (dYᵀ·act(A)c): everything of these columns, each a sum
 * over all n rows by one task.
 */
static int
ffn_bwd_hidden(void *arg, int64_t task, int worker)
{
    const struct ffn_bwd *f = arg;
    int64_t n = f->n, h = f->h, o = f->o;
    int64_t c0 = task * f->hc, cw = c0 + f->hc < h ? f->hc : h - c0;
    float *as = f->as + c0, *gs = f->gs + c0;

    const float *b;

    (void)worker;
    b = ffn_bwd_pre(f, 0, n, c0, cw, as);
    if (f->need_g)
        gemm(0, 0, n, cw, o, f->dy, o, f->w2e + c0, h, 0.0f, gs, h);
    act_pass(as, f->need_g ? gs : NULL, b, n, cw, h, f->relu, f->need_a);
    ffn_bwd_weights(f, c0, cw);
    return 0;
}

/* Round 2: hidden columns of dW (row mode; tasks < w_tasks), columns of
 * dX = G·W1 (column mode; scattered to the filled rows when gathered), or
 * columns of db2. */
static int
ffn_bwd_out(void *arg, int64_t task, int worker)
{
    const struct ffn_bwd *f = arg;
    int64_t n = f->n, d = f->d, h = f->h, o = f->o, c0, cw, i;

    (void)worker;
    if (task < f->w_tasks) {
        c0 = task * f->hc;
        ffn_bwd_weights(f, c0, c0 + f->hc < h ? f->hc : h - c0);
        return 0;
    }
    task -= f->w_tasks;
    if (task >= f->dx_tasks) {
        c0 = (task - f->dx_tasks) * f->oc;
        cw = c0 + f->oc < o ? f->oc : o - c0;
        column_sums(f->dy + c0, n, cw, o, f->db2 + c0);
        return 0;
    }
    c0 = task * f->dc;
    cw = c0 + f->dc < d ? f->dc : d - c0;
    if (f->idx == NULL) {
        gemm(0, 0, n, cw, h, f->gs, h, f->w1e + c0, d, 0.0f, f->dxe + c0, d);
        return 0;
    }
    gemm(0, 0, n, cw, h, f->gs, h, f->w1e + c0, d, 0.0f, f->dxs + c0, d);
    for (i = 0; i < n; i++)
        memcpy(f->dxe + (int64_t)f->idx[i] * d + c0, f->dxs + i * d + c0,
               (size_t)cw * sizeof(float));
    return 0;
}

static int
ffn_backward(struct smlp_backward_ctx *ctx)
{
    const struct ffn_priv *priv = ctx->priv;
    const struct smlp_tensor *bt = ctx->inputs[0];
    const float *buf = bt->data, *w1 = ctx->inputs[1]->data;
    const float *b1 = ctx->inputs[2]->data, *w2 = ctx->inputs[3]->data;
    const int32_t *si = ctx->n_inputs > 5 && ctx->inputs[5] != NULL
                            ? ctx->inputs[5]->data
                            : NULL;
    const float *dout = ctx->grad_outputs[0] != NULL
                            ? ctx->grad_outputs[0]->data
                            : NULL;
    const float *z = NULL;
    int64_t e = bt->shape[0], m = bt->shape[1], d = bt->shape[2];
    int64_t h = ctx->inputs[1]->shape[1], o = ctx->inputs[3]->shape[1];
    /* Per expert sizes of buf, W1, b1, W2, b2 (and of their gradients). */
    const int64_t sz[5] = {m * d, h * d, h, o * h, o};
    struct ffn_bwd f;
    float *dp[5], *xs, *dys;
    int32_t *idx;
    int64_t ex, r, tasks;
    size_t off[6], total;
    int i, rc;

    for (i = 0; i < 5; i++)
        dp[i] = ctx->grad_inputs[i] != NULL ? ctx->grad_inputs[i]->data
                                            : NULL;
    if (dp[0] == NULL && dp[1] == NULL && dp[2] == NULL && dp[3] == NULL &&
        dp[4] == NULL)
        return SMLP_OK;
    for (r = 0; si != NULL && r < e * m; r++)
        if (si[r] < -1)
            return smlp__moe_backward_fail(
                ctx, SMLP_EINVAL,
                "input 5 (slot_item)[%lld,%lld] = %d is invalid: expected "
                "-1 (empty row) or an item index >= 0",
                (long long)(r / m), (long long)(r % m), (int)si[r]);
    /* What the forward kept (training with ABI 1.2 hosts). */
    if (ctx->size >= offsetof(struct smlp_backward_ctx, saved_size) +
                         sizeof(ctx->saved_size) &&
        ctx->saved != NULL &&
        ctx->saved_size >= (size_t)(e * m * h) * sizeof(float))
        z = ctx->saved;
    ffn_backward_layout(m, d, h, o, si != NULL, off, &total);
    xs = (float *)((char *)ctx->workspace + off[0]);
    dys = (float *)((char *)ctx->workspace + off[3]);
    idx = (int32_t *)((char *)ctx->workspace + off[5]);
    f.relu = priv->relu;
    f.need_g = dp[0] != NULL || dp[1] != NULL || dp[2] != NULL;
    f.need_a = dp[3] != NULL;
    f.d = d;
    f.h = h;
    f.o = o;
    f.as = (float *)((char *)ctx->workspace + off[1]);
    f.gs = (float *)((char *)ctx->workspace + off[2]);
    f.dxs = (float *)((char *)ctx->workspace + off[4]);
    f.hc = ffn_cols(h);
    f.dc = ffn_cols(d);
    f.oc = ffn_cols(o);
    /* Row mode when the rows outnumber the hidden units: the products
     * then repack the (smaller) weights per task rather than the rows. */
    f.rows_mode = m > h;
    f.w_tasks = f.rows_mode && (f.need_a || dp[1] != NULL || dp[2] != NULL)
                    ? (h + f.hc - 1) / f.hc
                    : 0;
    f.dx_tasks = !f.rows_mode && dp[0] != NULL ? (d + f.dc - 1) / f.dc : 0;
    for (ex = 0; ex < e; ex++) {
        const int32_t *sie = si != NULL ? si + ex * m : NULL;
        const float *be = buf + ex * m * d;
        const float *dye = dout != NULL ? dout + ex * m * o : NULL;

        f.w1e = w1 + ex * h * d;
        f.w2e = w2 + ex * o * h;
        f.b1e = b1 + ex * h;
        f.ze = z != NULL ? z + ex * m * h : NULL;
        f.dxe = dp[0] != NULL ? dp[0] + ex * m * d : NULL;
        f.dw1 = dp[1] != NULL ? dp[1] + ex * h * d : NULL;
        f.db1 = dp[2] != NULL ? dp[2] + ex * h : NULL;
        f.dw2 = dp[3] != NULL ? dp[3] + ex * o * h : NULL;
        f.db2 = dp[4] != NULL ? dp[4] + ex * o : NULL;
        f.n = m;
        f.idx = NULL;
        f.x = be;
        f.dy = dye;
        if (sie != NULL && dye != NULL) {
            /* The filled rows, in row order, gathered; empty ones get d
             * buf = 0. */
            for (r = 0, f.n = 0; r < m; r++) {
                if (sie[r] != -1) {
                    memcpy(xs + f.n * d, be + r * d,
                           (size_t)d * sizeof(float));
                    memcpy(dys + f.n * o, dye + r * o,
                           (size_t)o * sizeof(float));
                    idx[f.n++] = (int32_t)r;
                } else if (f.dxe != NULL) {
                    memset(f.dxe + r * d, 0, (size_t)d * sizeof(float));
                }
            }
            f.idx = idx;
            f.x = xs;
            f.dy = dys;
        }
        if (dye == NULL || f.n == 0) {
            ffn_zero_expert(dp, ex, sz);
            continue;
        }
        if (f.need_a || f.need_g) {
            f.row_blocks = (f.n + FFN_BWD_ROWS_MAX - 1) / FFN_BWD_ROWS_MAX;
            tasks = f.rows_mode ? f.row_blocks : (h + f.hc - 1) / f.hc;
            if ((rc = smlp_parallel_for(ctx->host, ctx->node, tasks,
                                        f.rows_mode ? ffn_bwd_rows
                                                    : ffn_bwd_hidden,
                                        &f)) != 0)
                return rc;
        }
        tasks = f.w_tasks + f.dx_tasks +
                (f.db2 != NULL ? (o + f.oc - 1) / f.oc : 0);
        if ((rc = smlp_parallel_for(ctx->host, ctx->node, tasks, ffn_bwd_out,
                                    &f)) != 0)
            return rc;
    }
    return SMLP_OK;
}

static const struct smlp_kernel_def ffn_cpu = {
    .size = sizeof(struct smlp_kernel_def),
    .abi = SMLP_ABI_VERSION,
    .device = SMLP_DEVICE_CPU,
    .dtype_mask = SMLP__MOE_MASK_F32,
    .run = ffn_run,
    .score = SMLP__MOE_CPU_SCORE,
};

static const struct smlp_kernel_def *const ffn_kernels[] = {
    &ffn_cpu, SMLP__MOE_CUDA(smlp__moe_expert_ffn_cuda) NULL};

static const struct smlp_attr_def ffn_attrs[] = {
    {"activation", SMLP_ATTR_STRING, 0,
     "'gelu' (exact erf GELU, default) or 'relu'"},
    {NULL, 0, 0, NULL},
};

const struct smlp_op_def smlp__moe_op_expert_ffn = {
    .size = sizeof(struct smlp_op_def),
    .abi = SMLP_ABI_VERSION,
    .name = "moe.expert_ffn",
    .min_inputs = 5,
    .max_inputs = 6,
    .n_outputs = 1,
    .attrs = ffn_attrs,
    .infer = ffn_infer,
    .kernels = ffn_kernels,
    .backward = ffn_backward,
    .doc = "per expert act(buf*W1^T+b1)*W2^T+b2: buf [E,M,d], W1 [E,h,d], "
           "b1 [E,h], W2 [E,o,h], b2 [E,o], slot_item i32 [E,M] (optional: "
           "only filled rows computed, -1 rows zero) -> [E,M,o]",
};
