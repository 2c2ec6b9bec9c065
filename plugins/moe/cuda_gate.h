/*
 * cuda_gate.h - what the gates' CUDA forward (cuda_gate.cu) and backward
 * (cuda_gate_bwd.cu) share: the device ports of gate_common.c's helpers
 * (the noise stream's SplitMix64, the expert order, the softmax, CV², the
 * k-th value) and the two kernels that recompute a router: the image
 * means and the routing rows (noise, softmaxes, choices).  Everything is
 * static (each .cu file gets its copy).  nvcc only.
 */
#ifndef SMLP_MOE_CUDA_GATE_H
#define SMLP_MOE_CUDA_GATE_H

#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "moe.h"
#include "smlp_cuda.h"

#define MOE_GAMMA 0x9e3779b97f4a7c15ull

/* ---- shared with gate_common.c ------------------------------------------ */

/* One SplitMix64 step (gate_common.c, mix64). */
__host__ __device__ static inline uint64_t
mix64(uint64_t x)
{
    uint64_t z = x + MOE_GAMMA;

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* smlp__moe_lowbias32. */
__device__ static inline uint32_t
lowbias32(uint32_t x)
{
    uint32_t h = x;

    h ^= h >> 16;
    h *= 0x7feb352dU;
    h ^= h >> 15;
    h *= 0x846ca68bU;
    h ^= h >> 16;
    return h;
}

/* Expert a ranks before expert b in row v (gate_common.c). */
__device__ static inline bool
ranks_before(const float *v, int64_t a, int64_t b)
{
    return v[a] > v[b] || (v[a] == v[b] && a < b);
}

/* smlp__moe_softmax of one row of e values. */
__device__ static inline void
softmax_row(const float *z, float *p, int64_t e)
{
    double max = z[0], sum = 0.0;
    int64_t j;

    for (j = 1; j < e; j++)
        if (z[j] > max)
            max = z[j];
    for (j = 0; j < e; j++)
        sum += exp((double)z[j] - max);
    for (j = 0; j < e; j++)
        p[j] = (float)(exp((double)z[j] - max) / sum);
}

/* smlp__moe_cv2, the same sums in the same order (no FMA). */
__device__ static inline double
cv2(const double *v, int64_t n)
{
    double mean = 0.0, var = 0.0;
    int64_t i;

    if (n <= 0)
        return 0.0;
    for (i = 0; i < n; i++)
        mean += v[i];
    mean /= (double)n;
    for (i = 0; i < n; i++)
        var = __dadd_rn(var, __dmul_rn(v[i] - mean, v[i] - mean));
    var /= (double)n;
    return mean != 0.0 ? var / (mean * mean) : 0.0;
}

/*
 * The k-th expert of row v in the ranks_before order (what the CPU's
 * select_top gives as sel[k-1]): the one that exactly k - 1 experts rank
 * before.  O(e²), no scratch.  A row with NaN has no such order; then
 * expert 0 (the aux is NaN on both devices anyway).
 */
__device__ static inline int64_t
kth_expert(const float *v, int64_t e, int64_t k)
{
    int64_t i, j;

    for (i = 0; i < e; i++) {
        int64_t rank = 0;

        for (j = 0; j < e; j++)
            rank += ranks_before(v, j, i);
        if (rank == k - 1)
            return i;
    }
    return 0;
}

/* Its value (the vmoe load term's threshold). */
__device__ static inline float
kth_value(const float *v, int64_t e, int64_t k)
{
    return v[kth_expert(v, e, k)];
}

/* ---- steps 1 and 3 ------------------------------------------------------ */

/* xm[b, c] = mean of x[b·t + i, c] over i, summed in double (image_means). */
static __global__ void
k_image_means(const float *x, float *xm, int64_t rows, int64_t t, int64_t d)
{
    int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;

    for (; idx < rows * d; idx += (int64_t)gridDim.x * blockDim.x) {
        int64_t b = idx / d, c = idx - b * d, i;
        double s = 0.0;

        for (i = 0; i < t; i++)
            s += x[(b * t + i) * d + c];
        xm[idx] = (float)(s / (double)t);
    }
}

/*
 * One thread per routing row r: noisy logits zn (when zn != NULL: element
 * r·e + j is number r·e + j of the node's stream, keyed by `key`), the
 * routing softmax p (of zn, else of zc) and the clean one pc (with
 * noise), then (unless expert is NULL, as in the backward) the k choices
 * into expert[(r·t + i)·k + j] for each of the row's t items.  Choice j
 * is the best expert by ranks_before that is not
 * among choices 0..j-1: for a row without NaN that is the CPU's partial
 * selection sort; for an all-NaN row (the only other kind a softmax gives)
 * both give experts 0..k-1.
 */
static __global__ void
k_route_rows(const float *zc, float *zn, float *p, float *pc,
             int32_t *expert, int64_t rows, int64_t e, int64_t k, int64_t t,
             double sigma, uint64_t key)
{
    const double two_pi = 6.283185307179586476925287;
    const double inv53 = 1.0 / 9007199254740992.0; /* 2^-53 */
    int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;

    for (; r < rows; r += (int64_t)gridDim.x * blockDim.x) {
        const float *z = zc + r * e;
        float *pr = p + r * e;
        int32_t *ch = expert + r * t * k;
        int64_t i, j, q;

        if (zn != NULL) {
            float *zr = zn + r * e;

            for (j = 0; j < e; j++) {
                uint64_t c = 2 * (uint64_t)(r * e + j);
                uint64_t a = mix64(key + c * MOE_GAMMA);
                uint64_t b = mix64(key + (c + 1) * MOE_GAMMA);
                double u1 = ((double)(a >> 11) + 1.0) * inv53;
                double u2 = (double)(b >> 11) * inv53;
                double g = sqrt(-2.0 * log(u1)) * cos(two_pi * u2);

                zr[j] = (float)__dadd_rn((double)z[j], __dmul_rn(sigma, g));
            }
            softmax_row(zr, pr, e);
            softmax_row(z, pc + r * e, e);
        } else {
            softmax_row(z, pr, e);
        }
        if (expert == NULL)
            continue; /* the backward: the softmaxes only */
        for (j = 0; j < k; j++) {
            int64_t best = -1;

            for (i = 0; i < e; i++) {
                bool chosen = false;

                for (q = 0; q < j; q++)
                    chosen = chosen || ch[q] == i;
                if (!chosen && (best < 0 || ranks_before(pr, i, best)))
                    best = i;
            }
            ch[j] = (int32_t)best;
        }
        for (i = 1; i < t; i++)
            for (j = 0; j < k; j++)
                ch[i * k + j] = ch[j];
    }
}

/* The backwards (cuda_gate_bwd.cu), named in cuda_gate.cu's kernel
 * definitions. */
int smlp__moe_gate_bwd_cuda(struct smlp_backward_ctx *ctx);
int smlp__moe_hash_bwd_cuda(struct smlp_backward_ctx *ctx);

#endif /* SMLP_MOE_CUDA_GATE_H */
