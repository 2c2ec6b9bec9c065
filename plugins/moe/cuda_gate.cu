/*
 * cuda_gate.cu - CUDA kernels of the four gates of the `moe` plugin
 * (forward, f32): moe.gate.topk, .importance and .per_image (one kernel
 * definition, like the CPU's gate_run) and moe.gate.hash.  Their
 * backwards are in cuda_gate_bwd.cu, the helpers both use in cuda_gate.h.
 *
 * Listed after the CPU kernels in the ops' kernel tables (moe.h,
 * SMLP__MOE_CUDA).  The runtime calls run() on its loop thread with device
 * pointers in every tensor and in the workspace and the session's stream
 * in ctx->stream; run() only enqueues work (no synchronisation, no host
 * round trip) and returns SMLP_OK, or a status after host->errorf when an
 * enqueue fails.  ctx->priv is the struct smlp__moe_gate_priv that
 * smlp__moe_gate_infer stored (capacity, groups, workspace layout), and
 * the workspace is the one the CPU kernel declared, in device memory.
 *
 * The steps mirror gates.c, and each one computes what the CPU computes
 * in the same order, so that routing decisions are identical:
 *   1. per_image: image means in double, item order (k_image_means);
 *   2. router logits zc = rows·Wgᵀ, one cublasSgemm in FP32 (no TF32);
 *   3. k_route_rows, one thread per routing row: in training with
 *      noise_std > 0 the noisy logits from the CPU's counter-based stream
 *      (SplitMix64 key, Box–Muller in double, the same formula as
 *      smlp__moe_noise), the softmax in double (and the clean one), then
 *      the k best experts by "larger p, ties -> lower expert" (per_image:
 *      copied to the image's T items);
 *   4. k_assign, one block per routing group:
 *        - importance: the priority order by counting, for each item, the
 *          items that rank before it (larger first-choice p, ties -> lower
 *          index; NaN ranks last), i.e. its position in the CPU's sorted
 *          order.  Keys and order sit in shared memory up to G = 4096
 *          (SHARED_G_MAX); beyond that the keys are read from global
 *          memory and the order is kept in the group's slice of the
 *          `weight` output, which is written only at the end;
 *        - slots rank by rank (all first choices before any second), the
 *          items in priority order, by one warp in chunks of 32: a lane's
 *          row in its expert is the expert's running count plus the lanes
 *          before it in the chunk with the same expert (__match_any_sync);
 *          the count is bumped by the lowest such lane.  Kept iff that
 *          row is below the capacity, exactly as the CPU's
 *          `count[e] < cap` test, since a dropped pair never increments
 *          the CPU's count and every later pair to that expert is dropped
 *          too;
 *        - load from the per-expert counts (integer atomics into [E,2]:
 *          exact whatever the order), then the weights (none / topk after
 *          masking, the sum in double in j order);
 *   5. training: k_aux, a single block that walks the groups in order and
 *      sums each group's vmoe or switch term in double in the CPU's order
 *      (no float atomics), plus the superclass cross-entropy (per_image):
 *      the aux output does not depend on timing.
 * Products with a floating-point add after a multiply that the CPU keeps
 * as two roundings use __dmul_rn/__dadd_rn so that nvcc does not contract
 * them into an FMA.  What can still differ from the CPU: the last bit of
 * the double exp/log/cos/erfc of CUDA's libm against glibc's (each at most
 * an ulp or two in double, so the float results agree unless a value
 * falls on a float rounding boundary), and cuBLAS's summation order in
 * the router product (float rounding of the logits, so a decision can
 * differ only where two logits are within rounding of a tie).
 *
 * Data the CPU kernel checks and fails on, the GPU cannot check without a
 * synchronisation: a superclass label out of [0, E) makes the aux NaN (as
 * core.softmax_cross_entropy on the GPU).  Indices this file reads are
 * its own outputs (experts in [0, E)); they are still bounds-checked
 * before use and an impossible one would be skipped, never used to
 * address memory.
 *
 * Limits: the kernel declines (supports() returns 0, so the node runs on
 * the CPU with the runtime's notice) nodes with more than GATE_E_MAX
 * experts, whose per-expert counters would not fit in shared memory.
 */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "cuda_gate.h"

#define ROW_BLOCK 128      /* k_route_rows: threads per block */
#define GATE_BLOCK 256     /* k_assign: threads per block (>= 32) */
#define AUX_BLOCK 256      /* k_aux: its one block */
#define SHARED_G_MAX 4096  /* importance: keys and order in shared memory */
#define GATE_E_MAX 2048    /* experts the CUDA gate takes */
/* hash_run's experts: position q = i mod t; chunk or lowbias32. */
__global__ void
k_hash_expert(int32_t *expert, int64_t n, int64_t e, int64_t t, int chunk)
{
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;

    for (; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t q = i % t;

        if (chunk)
            expert[i] = (int32_t)(q * e / t);
        else
            expert[i] = (int32_t)((uint64_t)lowbias32((uint32_t)q) %
                                  (uint64_t)e);
    }
}

/* ---- step 4: one block per group ---------------------------------------- */

struct assign_args {
    const float *p;        /* [R, e] routing softmax; NULL for hash */
    const int32_t *expert; /* [N, k] */
    int32_t *slot;         /* [N, k] */
    float *weight;         /* [N, k] */
    int32_t *slot_item;    /* [e, m], all -1 on entry */
    int32_t *load;         /* [e, 2], all 0 on entry */
    int64_t groups, g, e, k, cap, m;
    int64_t t;             /* items per routing row of p (per_image T) */
    int importance;        /* priority by descending first-choice p */
    int keys_shared;       /* importance with g <= SHARED_G_MAX */
    int normalize;         /* enum smlp__moe_normalize */
    int hash;              /* weights 1 (kept) / 0 (dropped) */
};

/* Importance key of local item i of the group starting at `first`:
 * its first-choice p (its largest), NaN as -inf (key_cmp's rule). */
__device__ static inline float
importance_score(const struct assign_args &a, int64_t first, int64_t i)
{
    int64_t item = first + i;
    int32_t ex = a.expert[item * a.k];
    float s;

    if (ex < 0 || ex >= a.e)
        return -INFINITY;
    s = a.p[item * a.e + ex];
    return isnan(s) ? -INFINITY : s;
}

__global__ void
k_assign(struct assign_args a)
{
    extern __shared__ int32_t smem[];
    int32_t *cnt = smem;                     /* [e] pairs per expert */
    float *keys = (float *)(smem + a.e);     /* [g] (keys_shared) */
    int32_t *sorder = (int32_t *)(keys + a.g); /* [g] (keys_shared) */
    int tid = threadIdx.x, lane = threadIdx.x & 31;
    int64_t grp, i, j;

    for (grp = blockIdx.x; grp < a.groups; grp += gridDim.x) {
        int64_t first = grp * a.g;
        const int32_t *order = NULL;

        for (j = tid; j < a.e; j += blockDim.x)
            cnt[j] = 0;
        if (a.importance) {
            int32_t *ord = a.keys_shared
                               ? sorder
                               : (int32_t *)(a.weight + first * a.k);

            if (a.keys_shared) {
                for (i = tid; i < a.g; i += blockDim.x)
                    keys[i] = importance_score(a, first, i);
                __syncthreads();
            }
            /* Position of item i in the sorted order = the number of
             * items that rank before it (a total order: a permutation). */
            for (i = tid; i < a.g; i += blockDim.x) {
                float si = a.keys_shared ? keys[i]
                                         : importance_score(a, first, i);
                int64_t rank = 0;

                for (j = 0; j < a.g; j++) {
                    float sj = a.keys_shared ? keys[j]
                                             : importance_score(a, first, j);

                    rank += sj > si || (sj == si && j < i);
                }
                ord[rank] = (int32_t)i;
            }
            order = ord;
        }
        __syncthreads();
        if (tid < 32) {
            const unsigned below = (1u << lane) - 1u;

            for (j = 0; j < a.k; j++)
                for (int64_t c = 0; c < a.g; c += 32) {
                    int64_t q = c + lane;
                    bool valid = q < a.g;
                    int64_t loc = valid ? (order ? order[q] : q) : 0;
                    int64_t item = first + loc, at = item * a.k + j;
                    int32_t ex = valid ? a.expert[at] : -1;
                    unsigned same;
                    int32_t base = 0, rank;

                    if (ex < 0 || ex >= a.e)
                        ex = -1; /* invalid lanes: never counted */
                    same = __match_any_sync(0xffffffffu, ex);
                    rank = __popc(same & below);
                    if (ex >= 0)
                        base = cnt[ex];
                    __syncwarp();
                    if (ex >= 0 && rank == 0)
                        cnt[ex] = base + __popc(same);
                    __syncwarp();
                    if (!valid)
                        continue;
                    if (ex >= 0 && (int64_t)base + rank < a.cap) {
                        int64_t s = grp * a.cap + base + rank;

                        a.slot[at] = (int32_t)s;
                        a.slot_item[ex * a.m + s] = (int32_t)item;
                    } else {
                        a.slot[at] = -1;
                    }
                }
        }
        __syncthreads();
        /* Pairs beyond the capacity were dropped. */
        for (j = tid; j < a.e; j += blockDim.x) {
            int32_t c = cnt[j], kept = c < a.cap ? c : (int32_t)a.cap;

            if (kept > 0)
                atomicAdd(&a.load[2 * j], kept);
            if (c > kept)
                atomicAdd(&a.load[2 * j + 1], c - kept);
        }
        /* smlp__moe_weights (the order in `weight` is no longer read). */
        for (i = tid; i < a.g; i += blockDim.x) {
            int64_t item = first + i;
            const int32_t *ex = a.expert + item * a.k;
            const int32_t *sl = a.slot + item * a.k;
            float *w = a.weight + item * a.k;
            const float *row = a.p != NULL ? a.p + (item / a.t) * a.e : NULL;
            double sum = 0.0;

            for (j = 0; j < a.k; j++) {
                bool kept = sl[j] >= 0 && ex[j] >= 0 && ex[j] < a.e;

                if (a.hash)
                    w[j] = kept ? 1.0f : 0.0f;
                else if (a.normalize == SMLP__MOE_NORMALIZE_NONE)
                    w[j] = kept ? row[ex[j]] : 0.0f;
                else if (kept)
                    sum += row[ex[j]];
            }
            if (a.hash || a.normalize == SMLP__MOE_NORMALIZE_NONE)
                continue;
            for (j = 0; j < a.k; j++) {
                bool kept = sl[j] >= 0 && ex[j] >= 0 && ex[j] < a.e;

                w[j] = kept && sum > 0.0
                           ? (float)((double)row[ex[j]] / sum)
                           : 0.0f;
            }
        }
        __syncthreads(); /* smem is reused by the next group */
    }
}

/* ---- step 5: the aux output (training) ---------------------------------- */

struct aux_args {
    const float *zc, *zn, *p, *pc; /* [R, e] */
    const int32_t *expert;         /* [N, k]: row r's choices at r·t·k */
    const int32_t *labels;         /* [R] superclass, or NULL */
    float *aux;
    int64_t groups, rg, rows, e, k, t;
    int kind;                      /* enum smlp__moe_aux */
    double sigma;                  /* > 0: the vmoe load term */
    double aux_weight;
};

/*
 * One block.  Groups in order; within a group a thread per expert sums
 * over the group's rows in row order (the CPU's order), thread 0 forms the
 * group's term and accumulates it in group order: balance_aux and
 * mean_cross_entropy of gates.c, term for term.
 */
__global__ void
k_aux(struct aux_args a)
{
    extern __shared__ double dsm[];
    double *A = dsm, *B = dsm + a.e, *part = dsm + 2 * a.e;
    float *thr = (float *)(part + AUX_BLOCK);
    int tid = threadIdx.x;
    double s = 0.0, total = 0.0;
    int64_t grp, r, j, c0;

    for (grp = 0; a.kind != SMLP__MOE_AUX_NONE && grp < a.groups; grp++) {
        int64_t r0 = grp * a.rg;

        if (a.kind == SMLP__MOE_AUX_VMOE) {
            for (j = tid; j < a.e; j += AUX_BLOCK) {
                double imp = 0.0;

                for (r = 0; r < a.rg; r++)
                    imp += a.pc[(r0 + r) * a.e + j];
                A[j] = imp;
                B[j] = 0.0;
            }
            __syncthreads();
            if (a.sigma > 0.0 && a.rg > 0) {
                const double scale = 1.0 / (a.sigma * 1.41421356237309504880);

                for (c0 = 0; c0 < a.rg; c0 += AUX_BLOCK) {
                    int64_t n = a.rg - c0 < AUX_BLOCK ? a.rg - c0 : AUX_BLOCK;

                    if (tid < n)
                        thr[tid] = kth_value(a.zn + (r0 + c0 + tid) * a.e,
                                             a.e, a.k);
                    __syncthreads();
                    for (j = tid; j < a.e; j += AUX_BLOCK) {
                        double l = B[j];

                        for (r = 0; r < n; r++) {
                            double x = ((double)thr[r] -
                                        a.zc[(r0 + c0 + r) * a.e + j]) *
                                       scale;

                            l = __dadd_rn(l, __dmul_rn(0.5, erfc(x)));
                        }
                        B[j] = l;
                    }
                    __syncthreads();
                }
                for (j = tid; j < a.e; j += AUX_BLOCK)
                    B[j] /= (double)a.rg;
                __syncthreads();
            }
            if (tid == 0) {
                double loss = cv2(A, a.e);

                if (a.sigma > 0.0 && a.rg > 0)
                    loss += cv2(B, a.e);
                s += 0.5 * loss;
            }
        } else if (a.rg > 0) { /* switch */
            for (j = tid; j < a.e; j += AUX_BLOCK) {
                double f = 0.0, pm = 0.0;

                for (r = 0; r < a.rg; r++) {
                    if (a.expert[(r0 + r) * a.t * a.k] == j)
                        f += 1.0;
                    pm += a.pc[(r0 + r) * a.e + j];
                }
                A[j] = f;
                B[j] = pm;
            }
            __syncthreads();
            if (tid == 0) {
                double ss = 0.0;

                for (j = 0; j < a.e; j++)
                    ss = __dadd_rn(ss, __dmul_rn(A[j] / (double)a.rg,
                                                 B[j] / (double)a.rg));
                s = __dadd_rn(s, __dmul_rn((double)a.e, ss));
            }
        }
        __syncthreads(); /* A and B are reused by the next group */
    }
    if (a.kind != SMLP__MOE_AUX_NONE && a.groups > 0)
        total = a.aux_weight * s / (double)a.groups;
    if (a.labels != NULL && a.rows > 0) {
        double ce = 0.0;

        for (c0 = 0; c0 < a.rows; c0 += AUX_BLOCK) {
            int64_t n = a.rows - c0 < AUX_BLOCK ? a.rows - c0 : AUX_BLOCK;

            if (tid < n) {
                const float *zb = a.zc + (c0 + tid) * a.e;
                int32_t lab = a.labels[c0 + tid];
                double max = zb[0], sum = 0.0;

                for (j = 1; j < a.e; j++)
                    if (zb[j] > max)
                        max = zb[j];
                for (j = 0; j < a.e; j++)
                    sum += exp((double)zb[j] - max);
                part[tid] = lab >= 0 && lab < a.e
                                ? max + log(sum) - (double)zb[lab]
                                : nan("");
            }
            __syncthreads();
            if (tid == 0)
                for (r = 0; r < n; r++)
                    ce += part[r];
            __syncthreads();
        }
        if (tid == 0)
            total = __dadd_rn(total,
                              __dmul_rn(a.aux_weight, ce / (double)a.rows));
    }
    if (tid == 0)
        *a.aux = (float)total;
}

/* ---- run ---------------------------------------------------------------- */

/* Outputs every gate starts from: slot_item all -1, load all 0. */
static int
clear_outputs(struct smlp_kernel_ctx *ctx,
              const struct smlp__moe_gate_priv *pv)
{
    int st;

    if ((st = smlp_cuda_memset(ctx, ctx->outputs[3]->data, 0xff,
                               (size_t)(pv->e * pv->m) * sizeof(int32_t),
                               "memset (slot_item)")) != SMLP_OK ||
        (st = smlp_cuda_memset(ctx, ctx->outputs[5]->data, 0,
                               (size_t)(2 * pv->e) * sizeof(int32_t),
                               "memset (load)")) != SMLP_OK)
        return st;
    return SMLP_OK;
}

static int
zero_aux(struct smlp_kernel_ctx *ctx)
{
    return smlp_cuda_memset(ctx, ctx->outputs[4]->data, 0, sizeof(float),
                            "memset (aux)");
}

/* Step 4 for the groups of pv (p NULL: the hash gate). */
static int
assign(struct smlp_kernel_ctx *ctx, const struct smlp__moe_gate_priv *pv,
       const float *p, int64_t k, int hash)
{
    struct assign_args a;
    size_t smem = (size_t)pv->e * sizeof(int32_t);

    a.p = p;
    a.expert = (const int32_t *)ctx->outputs[0]->data;
    a.slot = (int32_t *)ctx->outputs[1]->data;
    a.weight = (float *)ctx->outputs[2]->data;
    a.slot_item = (int32_t *)ctx->outputs[3]->data;
    a.load = (int32_t *)ctx->outputs[5]->data;
    a.groups = pv->groups;
    a.g = pv->g;
    a.e = pv->e;
    a.k = k;
    a.cap = pv->cap;
    a.m = pv->m;
    a.t = pv->kind == SMLP__MOE_GATE_PER_IMAGE ? pv->t : 1;
    a.importance = pv->kind == SMLP__MOE_GATE_IMPORTANCE;
    a.keys_shared = a.importance && pv->g <= SHARED_G_MAX;
    a.normalize = pv->normalize;
    a.hash = hash;
    if (a.keys_shared)
        smem += (size_t)pv->g * (sizeof(float) + sizeof(int32_t));
    k_assign<<<smlp_cuda_grid_of(pv->groups, 1), GATE_BLOCK, smem,
               smlp_cuda_stream(ctx)>>>(a);
    return smlp_cuda_launched(ctx, "moe gate (slots)");
}

/* Step 5: the aux output of a training run. */
static int
aux_training(struct smlp_kernel_ctx *ctx,
             const struct smlp__moe_gate_priv *pv, const float *zc,
             const float *zn, const float *p, const float *pc, double sigma,
             const int32_t *labels)
{
    struct aux_args a;
    size_t smem = (size_t)(2 * pv->e + AUX_BLOCK) * sizeof(double) +
                  AUX_BLOCK * sizeof(float);

    a.zc = zc;
    a.zn = zn;
    a.p = p;
    a.pc = pc;
    a.expert = (const int32_t *)ctx->outputs[0]->data;
    a.labels = labels;
    a.aux = (float *)ctx->outputs[4]->data;
    a.groups = pv->groups;
    a.rg = pv->g / pv->t;
    a.rows = pv->rows;
    a.e = pv->e;
    a.k = pv->k;
    a.t = pv->kind == SMLP__MOE_GATE_PER_IMAGE ? pv->t : 1;
    a.kind = pv->aux;
    a.sigma = sigma;
    a.aux_weight = pv->aux_weight;
    k_aux<<<1, AUX_BLOCK, smem, smlp_cuda_stream(ctx)>>>(a);
    return smlp_cuda_launched(ctx, "moe gate (aux)");
}

/* Kernel of topk, importance and per_image (gates.c, gate_run). */
static int
gate_run(struct smlp_kernel_ctx *ctx)
{
    const struct smlp__moe_gate_priv *pv =
        (const struct smlp__moe_gate_priv *)ctx->priv;
    char *ws = (char *)ctx->workspace;
    const float *x, *wg, *src;
    const int32_t *labels = NULL;
    float *zc, *zn = NULL, *p, *pc = NULL;
    int per_image, noisy, st;
    double sigma;
    uint64_t key = 0;

    if (pv == NULL || (pv->ws.total > 0 &&
                       (ws == NULL || ctx->workspace_size < pv->ws.total)))
        return smlp_kernel_fail(ctx, SMLP_EINVAL,
                                "no node state or a workspace of %zu bytes "
                                "(need %zu)",
                                ctx->workspace_size,
                                pv != NULL ? pv->ws.total : (size_t)0);
    if ((st = clear_outputs(ctx, pv)) != SMLP_OK)
        return st;
    if (pv->n == 0 || pv->groups == 0)
        return zero_aux(ctx);
    x = (const float *)ctx->inputs[0]->data;
    wg = (const float *)ctx->inputs[1]->data;
    per_image = pv->kind == SMLP__MOE_GATE_PER_IMAGE;
    noisy = ctx->training && pv->noise_std > 0.0;
    sigma = pv->noise_std / (double)pv->e;
    if (per_image && ctx->n_inputs > 2 && ctx->inputs[2] != NULL)
        labels = (const int32_t *)ctx->inputs[2]->data;
    src = x;
    if (per_image) {
        float *xm = (float *)(ws + pv->ws.xm);

        if (pv->rows * pv->d > 0) {
            k_image_means<<<smlp_cuda_grid(pv->rows * pv->d),
                            SMLP_CUDA_BLOCK, 0, smlp_cuda_stream(ctx)>>>(
                x, xm, pv->rows, pv->t, pv->d);
            if ((st = smlp_cuda_launched(ctx, "moe gate (image means)")) !=
                SMLP_OK)
                return st;
        }
        src = xm;
    }
    zc = (float *)(ws + pv->ws.zc);
    p = (float *)(ws + pv->ws.p);
    if ((st = smlp_cuda_sgemm_xwt(ctx, src, wg, zc, pv->rows, pv->d,
                                  pv->e)) != SMLP_OK)
        return st;
    if (noisy) {
        zn = (float *)(ws + pv->ws.zn);
        pc = (float *)(ws + pv->ws.pc);
        key = mix64(mix64(mix64(ctx->seed) ^ pv->name_hash) ^ ctx->step);
    }
    k_route_rows<<<smlp_cuda_grid_of(pv->rows, ROW_BLOCK), ROW_BLOCK, 0,
                   smlp_cuda_stream(ctx)>>>(
        zc, zn, p, pc, (int32_t *)ctx->outputs[0]->data, pv->rows, pv->e,
        pv->k, per_image ? pv->t : 1, sigma, key);
    if ((st = smlp_cuda_launched(ctx, "moe gate (softmax, top-k)")) !=
            SMLP_OK ||
        (st = assign(ctx, pv, p, pv->k, 0)) != SMLP_OK)
        return st;
    if (!ctx->training)
        return zero_aux(ctx);
    return aux_training(ctx, pv, zc, noisy ? zn : zc, p, noisy ? pc : p,
                        noisy ? sigma : 0.0, labels);
}

/* Kernel of moe.gate.hash (gates.c, hash_run). */
static int
hash_run(struct smlp_kernel_ctx *ctx)
{
    const struct smlp__moe_gate_priv *pv =
        (const struct smlp__moe_gate_priv *)ctx->priv;
    int st;

    if (pv == NULL)
        return smlp_kernel_fail(ctx, SMLP_EINVAL, "no node state");
    if ((st = clear_outputs(ctx, pv)) != SMLP_OK ||
        (st = zero_aux(ctx)) != SMLP_OK)
        return st;
    if (pv->n == 0 || pv->groups == 0)
        return SMLP_OK;
    k_hash_expert<<<smlp_cuda_grid(pv->n), SMLP_CUDA_BLOCK, 0,
                    smlp_cuda_stream(ctx)>>>(
        (int32_t *)ctx->outputs[0]->data, pv->n, pv->e, pv->t,
        pv->mode == SMLP__MOE_HASH_MODE_CHUNK);
    if ((st = smlp_cuda_launched(ctx, "moe hash gate (experts)")) != SMLP_OK)
        return st;
    return assign(ctx, pv, NULL, 1, 1);
}

/* Nodes whose per-expert counters fit in shared memory (see the top). */
static int
gate_supports(const struct smlp_infer_ctx *ctx)
{
    const struct smlp__moe_gate_priv *pv =
        (const struct smlp__moe_gate_priv *)ctx->priv;

    return pv != NULL && pv->e <= GATE_E_MAX && pv->g * pv->k <= INT32_MAX;
}

/* ---- definitions -------------------------------------------------------- */

extern "C" {
const struct smlp_kernel_def smlp__moe_gate_cuda = {
    sizeof(struct smlp_kernel_def), SMLP_ABI_VERSION, SMLP_DEVICE_CUDA,
    SMLP__MOE_MASK_F32, gate_supports, gate_run, SMLP__MOE_CPU_SCORE,
    smlp__moe_gate_bwd_cuda, /* cuda_gate_bwd.cu (ABI 1.3) */
};
const struct smlp_kernel_def smlp__moe_hash_cuda = {
    sizeof(struct smlp_kernel_def), SMLP_ABI_VERSION, SMLP_DEVICE_CUDA,
    SMLP__MOE_MASK_F32, gate_supports, hash_run, SMLP__MOE_CPU_SCORE,
    smlp__moe_hash_bwd_cuda,
};
}
