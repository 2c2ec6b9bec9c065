/*
 * gemm.c - matrix products and loops split into tasks for
 * host->parallel_for (see core.h).
 *
 * A product C = alpha·op(A)·op(B) + beta·C of m x n x k (or a batch of
 * them) is cut into tiles of C, bm rows x bn columns, each one
 * single-threaded cblas_sgemm over the whole k: every element of C is
 * computed by one call, in OpenBLAS's order for that tile's shape.  The
 * tiles depend on (batch, m, n, k) alone, never on the thread count, so
 * the results are the same bits for any number of threads.
 *
 * Tile sizes: each cut costs a repacking of the other operand (a cut of
 * the rows repacks op(B), a cut of the columns op(A)), and cuts of the
 * rows cost more (OpenBLAS packs op(B) in large panels and its kernels
 * run 16 rows at a time).  So tiles stay large: the products are cut in
 * halves, the columns while the tile is at most twice as tall as it is
 * wide, the rows otherwise, until there are at least
 * SMLP__CORE_GEMM_TASKS tiles in the batch or a cut would leave tiles of
 * under 2^21 multiply-adds (40 us on one core) or under 64 rows or
 * columns.  Measured on the model's shapes (Zen 4, OpenBLAS 0.3.21, one
 * thread, as a share of the uncut product's rate): 1568 x 3072 x 768 in
 * 784 x 768 tiles 95%, 1568 x 768 x 3072 in 392 x 384 tiles 93-96%,
 * 196 x 768 x 3072 (batch 1) in 196 x 96 tiles 95% but in 98-row tiles
 * 86%.  With 8 or more tiles two to four threads balance within a tile.
 */
#include <cblas.h>

#include "core.h"

/* Multiply-adds below which a cut is not worth a task. */
#define MIN_TILE_MACS (INT64_C(1) << 21)
#define MIN_TILE_SIDE 64
/* Tile widths are multiples of this where that keeps the last tile at
 * least half as wide (64-byte aligned columns of C and op(B)). */
#define TILE_ALIGN 16

static int64_t
ceil_div(int64_t a, int64_t b)
{
    return (a + b - 1) / b;
}

static int64_t
round_up(int64_t a, int64_t b)
{
    return ceil_div(a, b) * b;
}

/* The side of `parts` tiles over len, aligned to `align` when the last
 * tile stays at least half a tile. */
static int64_t
tile_side(int64_t len, int64_t parts, int64_t align)
{
    int64_t t = ceil_div(len, parts), r = round_up(t, align);

    if ((len - (ceil_div(len, r) - 1) * r) * 2 >= r)
        return r;
    return t;
}

void
smlp__core_gemm_tiles(int64_t batch, int64_t m, int64_t n, int64_t k,
                      int64_t *bm, int64_t *bn)
{
    int64_t pm = 1, pn = 1, tm = m, tn = n;

    for (;;) {
        int64_t cm = tile_side(m, pm * 2, 1);
        int64_t cn = tile_side(n, pn * 2, TILE_ALIGN);
        int ok_m = cm < tm && cm >= MIN_TILE_SIDE &&
                   cm * tn * k >= MIN_TILE_MACS;
        int ok_n = cn < tn && cn >= MIN_TILE_SIDE &&
                   tm * cn * k >= MIN_TILE_MACS;

        if (batch * ceil_div(m, tm) * ceil_div(n, tn) >=
            SMLP__CORE_GEMM_TASKS)
            break;
        /* The columns unless the tile is over twice as tall as wide. */
        if (ok_n && (tm <= 2 * tn || !ok_m)) {
            pn *= 2;
            tn = cn;
        } else if (ok_m) {
            pm *= 2;
            tm = cm;
        } else {
            break;
        }
    }
    *bm = tm;
    *bn = tn;
}

struct gemm_run {
    const struct smlp__core_gemm *g;
    int64_t bm, bn, tiles_m, tiles_n;
    int64_t parts; /* sum_batch: parts of the batch (1: none) */
};

int64_t
smlp__core_gemm_sum_parts(int64_t batch, int64_t m, int64_t n, int64_t k)
{
    int64_t bm, bn, tiles, parts;

    if (batch <= 1 || m <= 0 || n <= 0 || k <= 0)
        return 1;
    smlp__core_gemm_tiles(1, m, n, k * batch, &bm, &bn);
    tiles = ceil_div(m, bm) * ceil_div(n, bn);
    if (tiles >= SMLP__CORE_GEMM_TASKS)
        return 1;
    parts = ceil_div(SMLP__CORE_GEMM_TASKS, tiles);
    if (parts > batch)
        parts = batch;
    /* Each part at least MIN_TILE_MACS of work per tile. */
    while (parts > 1 && bm * bn * k * (batch / parts) < MIN_TILE_MACS)
        parts--;
    return parts;
}

static int
gemm_task(void *arg, int64_t task, int worker)
{
    const struct gemm_run *r = arg;
    const struct smlp__core_gemm *g = r->g;
    int64_t per = r->tiles_m * r->tiles_n, t = task % per;
    int64_t m0 = (t / r->tiles_n) * r->bm, n0 = (t % r->tiles_n) * r->bn;
    int64_t mb = g->m - m0 < r->bm ? g->m - m0 : r->bm;
    int64_t nb = g->n - n0 < r->bn ? g->n - n0 : r->bn;
    int64_t part = g->sum_batch ? task / per : 0;
    int64_t i = g->sum_batch ? part * g->batch / r->parts : task / per;
    int64_t end = g->sum_batch ? (part + 1) * g->batch / r->parts : i + 1;
    /* Part p > 0 of a split sum goes to its own m x n block of partial. */
    float *cbase = part > 0 ? g->partial + (part - 1) * g->m * g->n : g->c;
    int64_t ldc = part > 0 ? g->n : g->ldc;
    float beta = part > 0 ? 0.0f : g->beta, *c;

    (void)worker;
    for (; i < end; i++) {
        /* Row m0 of op(A): row m0 of A, or column m0 when transposed;
         * column n0 of op(B): column n0 of B, or row n0 when transposed. */
        const float *a = g->a + i * g->stride_a +
                         (g->trans_a ? m0 : m0 * g->lda);
        const float *b = g->b + i * g->stride_b +
                         (g->trans_b ? n0 * g->ldb : n0);

        c = cbase + (g->sum_batch ? 0 : i * g->stride_c) + m0 * ldc + n0;
        cblas_sgemm(CblasRowMajor, g->trans_a ? CblasTrans : CblasNoTrans,
                    g->trans_b ? CblasTrans : CblasNoTrans, (int)mb,
                    (int)nb, (int)g->k, g->alpha, a, (int)g->lda, b,
                    (int)g->ldb, beta, c, (int)ldc);
        if (g->sum_batch)
            beta = 1.0f;
        else if (g->epilogue != NULL)
            g->epilogue(g->epilogue_arg, c, g->ldc, i, m0, mb, n0, nb);
    }
    if (g->sum_batch && g->epilogue != NULL)
        g->epilogue(g->epilogue_arg, g->c + m0 * g->ldc + n0, g->ldc, 0, m0,
                    mb, n0, nb);
    return 0;
}

/* Rows [begin, end) of C += the parts 1.. of a split sum, in order. */
static int
gemm_add_parts(void *arg, int64_t begin, int64_t end, int worker)
{
    const struct gemm_run *r = arg;
    const struct smlp__core_gemm *g = r->g;
    int64_t row, p, j;

    (void)worker;
    for (row = begin; row < end; row++) {
        float *c = g->c + row * g->ldc;

        for (p = 1; p < r->parts; p++) {
            const float *q = g->partial + ((p - 1) * g->m + row) * g->n;

            for (j = 0; j < g->n; j++)
                c[j] += q[j];
        }
    }
    return 0;
}

int
smlp__core_gemm(const struct smlp_host_api *host,
                const struct smlp_node *node, const struct smlp__core_gemm *g)
{
    struct gemm_run r;
    int64_t tasks;
    int rc;

    if (g->batch <= 0 || g->m <= 0 || g->n <= 0)
        return SMLP_OK;
    if (g->sum_batch)
        smlp__core_gemm_tiles(1, g->m, g->n, g->k * g->batch, &r.bm, &r.bn);
    else
        smlp__core_gemm_tiles(g->batch, g->m, g->n, g->k, &r.bm, &r.bn);
    r.g = g;
    r.tiles_m = ceil_div(g->m, r.bm);
    r.tiles_n = ceil_div(g->n, r.bn);
    r.parts = g->sum_batch && g->partial != NULL && g->epilogue == NULL
                  ? smlp__core_gemm_sum_parts(g->batch, g->m, g->n, g->k)
                  : 1;
    tasks = r.tiles_m * r.tiles_n * (g->sum_batch ? r.parts : g->batch);
    if ((rc = smlp_parallel_for(host, node, tasks, gemm_task, &r)) != 0 ||
        r.parts == 1)
        return rc;
    return smlp__core_parallel_range(host, node, g->m,
                                     ceil_div(g->m, SMLP__CORE_GEMM_TASKS),
                                     gemm_add_parts, &r);
}

/* ---- ranges ------------------------------------------------------------ */

struct range_run {
    int64_t n, chunk;
    int (*fn)(void *arg, int64_t begin, int64_t end, int worker);
    void *arg;
};

static int
range_task(void *arg, int64_t task, int worker)
{
    const struct range_run *r = arg;
    int64_t begin = task * r->chunk;
    int64_t end = r->n - begin < r->chunk ? r->n : begin + r->chunk;

    return r->fn(r->arg, begin, end, worker);
}

int
smlp__core_parallel_range(const struct smlp_host_api *host,
                          const struct smlp_node *node, int64_t n,
                          int64_t chunk,
                          int (*fn)(void *arg, int64_t begin, int64_t end,
                                    int worker),
                          void *arg)
{
    struct range_run r;

    if (n <= 0)
        return SMLP_OK;
    if (chunk < 1)
        chunk = 1;
    r.n = n;
    r.chunk = chunk;
    r.fn = fn;
    r.arg = arg;
    return smlp_parallel_for(host, node, ceil_div(n, chunk), range_task,
                             &r);
}
