/*
 * cuda.cu - CUDA kernels of the `moco` plugin (f32): moco.loss, forward
 * and (plugin ABI 1.3) backward, and moco.momentum_update (forward; it
 * has no backward).
 *
 * The same arithmetic as loss.c and momentum.c (their comments give the
 * formulas), on the session's stream with device pointers, in the CPU's
 * workspace layout (smlp__moco_loss_layout).  moco.loss: a block per row
 * normalises q and k (norms in double by a fixed tree), s = q̂·k̂ᵀ is one
 * cuBLAS product, a block per row of s takes its maximum and log-sum-exp
 * in double (fixed trees), and the row terms are summed by one thread in
 * row order: ctr(q1, k2)'s terms wait in the norms' slot (the forward
 * needs no norms) until ctr(q2, k1)'s are there, and the loss is their
 * two sums added in double, as the CPU adds them.  The backward forms d s
 * in place of s, d q̂ = d s·k̂ (cuBLAS) and d q row by row; the incoming
 * gradient is read on the device.  moco.momentum_update moves θ_k in
 * place (a state tensor: the runtime copies state back after the run);
 * an m input outside [0, 1] gives NaN weights (the CPU fails the node; the
 * GPU cannot report it without a synchronisation).
 */
#include <math.h>
#include <stdint.h>

#include "moco.h"
#include "smlp_cuda.h"

#define ROW_BLOCK 128
#define NORM_EPS 1e-12

/* ---- moco.loss ---------------------------------------------------------- */

/* xh[r] = x[r] / max(‖x[r]‖, NORM_EPS), norm[r] = that divisor (when
 * norm is not NULL): a block per row. */
__global__ void
k_normalize(const float *x, float *xh, double *norm, int64_t n, int64_t d)
{
    __shared__ double red[ROW_BLOCK];
    int64_t r, c;

    for (r = blockIdx.x; r < n; r += gridDim.x) {
        const float *row = x + r * d;
        double ss = 0.0, nr;
        float inv;

        for (c = threadIdx.x; c < d; c += ROW_BLOCK)
            ss += (double)row[c] * (double)row[c];
        nr = sqrt(smlp_cuda_block_sum<ROW_BLOCK>(ss, red));
        nr = nr > NORM_EPS ? nr : NORM_EPS;
        inv = (float)(1.0 / nr);
        for (c = threadIdx.x; c < d; c += ROW_BLOCK)
            xh[r * d + c] = row[c] * inv;
        if (norm != NULL && threadIdx.x == 0)
            norm[r] = nr;
    }
}

/*
 * A block per row i of s: term[i] = (max − s_ii)/τ + log Σ_j exp((s_ij −
 * max)/τ); with gy (the backward) s_i becomes d s_i = c·(p_ij − [i = j]),
 * p the row's softmax rounded to float, c = (float)(2g/n), g = *gy.
 */
__global__ void
k_rows(float *s, double *term, int64_t n, double tau, const float *gy)
{
    __shared__ double red[ROW_BLOCK];
    int64_t i, j;

    for (i = blockIdx.x; i < n; i += gridDim.x) {
        float *row = s + i * n;
        double max = -INFINITY, sum = 0.0;
        float c;

        for (j = threadIdx.x; j < n; j += ROW_BLOCK)
            if (row[j] > max)
                max = row[j];
        max = smlp_cuda_block_max<ROW_BLOCK>(max, red);
        for (j = threadIdx.x; j < n; j += ROW_BLOCK)
            sum += exp(((double)row[j] - max) / tau);
        sum = smlp_cuda_block_sum<ROW_BLOCK>(sum, red);
        if (threadIdx.x == 0)
            term[i] = (max - (double)row[i]) / tau + log(sum);
        if (gy == NULL)
            continue;
        __syncthreads(); /* row[i] is read above before it is rewritten */
        c = (float)(2.0 * (double)gy[0] / (double)n);
        for (j = threadIdx.x; j < n; j += ROW_BLOCK) {
            float p = (float)(exp(((double)row[j] - max) / tau) / sum);

            row[j] = c * (p - (i == j ? 1.0f : 0.0f));
        }
    }
}

/* loss = 2τ/n·Σ t1 + 2τ/n·Σ t2, each sum in row order (one thread). */
__global__ void
k_loss_sum(const double *t1, const double *t2, int64_t n, double tau,
           float *out)
{
    double a = 0.0, b = 0.0;
    int64_t i;

    for (i = 0; i < n; i++)
        a += t1[i];
    for (i = 0; i < n; i++)
        b += t2[i];
    *out = (float)(2.0 * tau * a / (double)n + 2.0 * tau * b / (double)n);
}

/* dq = (d q̂ − q̂·<q̂, d q̂>)/‖q‖ in place, d q̂/1e-12 below the clamp: a
 * block per row. */
__global__ void
k_dq(const float *qh, const double *qn, float *dq, int64_t n, int64_t d)
{
    __shared__ double red[ROW_BLOCK];
    int64_t i, j;

    for (i = blockIdx.x; i < n; i += gridDim.x) {
        const float *q = qh + i * d;
        float *dr = dq + i * d;
        double dot = 0.0, inv = 1.0 / qn[i];

        if (qn[i] <= NORM_EPS) {
            for (j = threadIdx.x; j < d; j += ROW_BLOCK)
                dr[j] = (float)(dr[j] * inv);
            continue;
        }
        for (j = threadIdx.x; j < d; j += ROW_BLOCK)
            dot += (double)q[j] * (double)dr[j];
        dot = smlp_cuda_block_sum<ROW_BLOCK>(dot, red);
        for (j = threadIdx.x; j < d; j += ROW_BLOCK)
            dr[j] = (float)(((double)dr[j] - (double)q[j] * dot) * inv);
    }
}

/* The workspace's pieces for [n, d] (the CPU's layout). */
struct loss_ws {
    float *qh, *kh, *s;
    double *qn, *term;
};

static struct loss_ws
loss_ws(void *ws, int64_t n, int64_t d)
{
    size_t off[5] = {0}, total;
    struct loss_ws w;

    smlp__moco_loss_layout(n, d, off, &total);
    w.qh = (float *)((char *)ws + off[0]);
    w.kh = (float *)((char *)ws + off[1]);
    w.s = (float *)((char *)ws + off[2]);
    w.qn = (double *)((char *)ws + off[3]);
    w.term = (double *)((char *)ws + off[4]);
    return w;
}

static unsigned
rows_grid(int64_t n)
{
    return (unsigned)(n < (1 << 20) ? n : (1 << 20));
}

/*
 * One ctr(q, k) on the stream: the rows normalised (q's norms kept when
 * qn is set), s, the row terms; with gy also d s, and then d q into dq.
 */
template <class Ctx>
static int
ctr(Ctx *ctx, const struct loss_ws *w, const float *q, const float *k,
    int64_t n, int64_t d, double *qn, const float *gy, float *dq)
{
    cudaStream_t st = smlp_cuda_stream(ctx);
    double tau = smlp_cuda_attr_float(ctx, "tau", 0.2);
    int rc;

    k_normalize<<<rows_grid(n), ROW_BLOCK, 0, st>>>(q, w->qh, qn, n, d);
    k_normalize<<<rows_grid(n), ROW_BLOCK, 0, st>>>(k, w->kh, NULL, n, d);
    if ((rc = smlp_cuda_launched(ctx, "normalize")) != SMLP_OK ||
        (rc = smlp_cuda_sgemm_xwt(ctx, w->qh, w->kh, w->s, n, d, n)) !=
            SMLP_OK)
        return rc;
    k_rows<<<rows_grid(n), ROW_BLOCK, 0, st>>>(w->s, w->term, n, tau, gy);
    if ((rc = smlp_cuda_launched(ctx, "moco.loss rows")) != SMLP_OK ||
        dq == NULL)
        return rc;
    /* d q̂[n, d] = d s[n, n]·k̂[n, d], then d q. */
    if ((rc = smlp_cuda_sgemm(ctx, 0, 0, n, d, n, w->s, n, 0, w->kh, d, 0,
                              0.0f, dq, d, 0, 1)) != SMLP_OK)
        return rc;
    k_dq<<<rows_grid(n), ROW_BLOCK, 0, st>>>(w->qh, qn, dq, n, d);
    return smlp_cuda_launched(ctx, "moco.loss d q");
}

static int
loss_run(struct smlp_kernel_ctx *ctx)
{
    const struct smlp_tensor *q1 = ctx->inputs[0];
    int64_t n = q1->shape[0], d = q1->shape[1];
    struct loss_ws w = loss_ws(ctx->workspace, n, d);
    int rc;

    /* ctr(q1, k2); its terms move to the norms' slot; ctr(q2, k1). */
    if ((rc = ctr(ctx, &w, (const float *)q1->data,
                  (const float *)ctx->inputs[3]->data, n, d, NULL, NULL,
                  NULL)) != SMLP_OK ||
        (rc = smlp_cuda_check(ctx,
                              cudaMemcpyAsync(w.qn, w.term,
                                              (size_t)n * sizeof(double),
                                              cudaMemcpyDeviceToDevice,
                                              smlp_cuda_stream(ctx)),
                              "copy")) != SMLP_OK ||
        (rc = ctr(ctx, &w, (const float *)ctx->inputs[1]->data,
                  (const float *)ctx->inputs[2]->data, n, d, NULL, NULL,
                  NULL)) != SMLP_OK)
        return rc;
    k_loss_sum<<<1, 1, 0, smlp_cuda_stream(ctx)>>>(
        w.qn, w.term, n, smlp_cuda_attr_float(ctx, "tau", 0.2),
        (float *)ctx->outputs[0]->data);
    return smlp_cuda_launched(ctx, "moco.loss sum");
}

static int
loss_backward(struct smlp_backward_ctx *ctx)
{
    const struct smlp_tensor *q1 = ctx->inputs[0];
    const struct smlp_tensor *gy = ctx->grad_outputs[0];
    int64_t n = q1->shape[0], d = q1->shape[1];
    size_t bytes = (size_t)(n * d) * sizeof(float);
    struct loss_ws w = loss_ws(ctx->workspace, n, d);
    int t, rc;

    /* Keys are stop-gradient: zeros where a gradient is asked for. */
    for (t = 2; t < 4; t++)
        if (ctx->grad_inputs[t] != NULL &&
            (rc = smlp_cuda_memset(ctx, ctx->grad_inputs[t]->data, 0, bytes,
                                   "memset")) != SMLP_OK)
            return rc;
    /* q1 pairs with k2 (input 3), q2 with k1 (input 2). */
    for (t = 0; t < 2; t++) {
        struct smlp_tensor *gq = ctx->grad_inputs[t];

        if (gq == NULL)
            continue;
        if (gy == NULL)
            rc = smlp_cuda_memset(ctx, gq->data, 0, bytes, "memset");
        else
            rc = ctr(ctx, &w, (const float *)ctx->inputs[t]->data,
                     (const float *)ctx->inputs[3 - t]->data, n, d, w.qn,
                     (const float *)gy->data, (float *)gq->data);
        if (rc != SMLP_OK)
            return rc;
    }
    return SMLP_OK;
}

/* ---- moco.momentum_update ----------------------------------------------- */

/* θ_k ← m·θ_k + (1 − m)·θ_q in double, rounded once; out = the same. */
__global__ void
k_momentum(float *k, const float *q, float *out, int64_t n, double m_attr,
           const float *m_in)
{
    double m = m_in != NULL ? (double)m_in[0] : m_attr;
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;

    for (; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float v = m >= 0.0 && m <= 1.0
                      ? (float)(m * (double)k[i] + (1.0 - m) * (double)q[i])
                      : nanf("");

        k[i] = v;
        out[i] = v;
    }
}

static int
momentum_run(struct smlp_kernel_ctx *ctx)
{
    const struct smlp_tensor *kt = ctx->inputs[0];
    const struct smlp_tensor *mt = smlp_cuda_input(ctx, 2);
    int64_t n = smlp_tensor_numel(kt);

    if (n == 0)
        return SMLP_OK;
    k_momentum<<<smlp_cuda_grid(n), SMLP_CUDA_BLOCK, 0,
                 smlp_cuda_stream(ctx)>>>(
        (float *)kt->data, (const float *)ctx->inputs[1]->data,
        (float *)ctx->outputs[0]->data, n,
        smlp_cuda_attr_float(ctx, "m", 0.99),
        mt != NULL ? (const float *)mt->data : NULL);
    return smlp_cuda_launched(ctx, "momentum_update");
}

/* ---- definitions -------------------------------------------------------- */

extern "C" {
const struct smlp_kernel_def smlp__moco_loss_cuda = {
    sizeof(struct smlp_kernel_def), SMLP_ABI_VERSION, SMLP_DEVICE_CUDA,
    SMLP__MOCO_MASK_F32, NULL, loss_run, SMLP__MOCO_CPU_SCORE,
    loss_backward,
};
const struct smlp_kernel_def smlp__moco_momentum_cuda = {
    sizeof(struct smlp_kernel_def), SMLP_ABI_VERSION, SMLP_DEVICE_CUDA,
    SMLP__MOCO_MASK_F32, NULL, momentum_run, SMLP__MOCO_CPU_SCORE,
    NULL, /* no backward: the op is SMLP_OP_NO_GRAD */
};
}
