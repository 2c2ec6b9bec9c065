/*
 * gate_common.c - the routing core shared by the gates of the `moe` plugin.
 *
 * Everything here works on plain arrays (see moe.h for each contract):
 * capacity, the node-name hash and the seeded gate noise, the softmax,
 * the top-k choices, the importance priority order, slot assignment,
 * combine weights, load counts and the auxiliary losses.  Nothing keeps
 * state, nothing allocates, and every reduction runs in a fixed order, so
 * results do not depend on threads and a backward can recompute the
 * forward's routing from the same inputs.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "moe.h"

/* ---- capacity, hashing, noise ------------------------------------------ */

int64_t
smlp__moe_capacity(int64_t k, int64_t g, double cf, int64_t e,
                   int64_t multiple)
{
    double c;
    int64_t cap;

    if (cf <= 0.0)
        return g;
    /* Exactly ceil((double)k * G * cf / E), left to right. */
    c = ceil((double)k * (double)g * cf / (double)e);
    if (!(c < 4611686018427387904.0)) /* 2^62: room for the rounding */
        return -1;
    cap = (int64_t)c;
    if (cap < 1)
        cap = 1;
    if (multiple > 1) {
        if (cap > INT64_MAX - multiple)
            return -1;
        cap = (cap + multiple - 1) / multiple * multiple;
    }
    return cap;
}

uint64_t
smlp__moe_fnv1a64(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;

    for (; s != NULL && *s != '\0'; s++) {
        h ^= (uint64_t)(unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

uint32_t
smlp__moe_lowbias32(uint32_t x)
{
    uint32_t h = x;

    h ^= h >> 16;
    h *= 0x7feb352dU;
    h ^= h >> 15;
    h *= 0x846ca68bU;
    h ^= h >> 16;
    return h;
}

#define MOE_GAMMA 0x9e3779b97f4a7c15ull

/* One SplitMix64 step: the state x advanced by γ, then finalised. */
static uint64_t
mix64(uint64_t x)
{
    uint64_t z = x + MOE_GAMMA;

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void
smlp__moe_noise(const float *z, int64_t rows, int64_t e, double sigma,
                uint64_t seed, uint64_t name_hash, uint64_t step, float *out)
{
    smlp__moe_noise_rows(z, 0, rows, e, sigma, seed, name_hash, step, out);
}

void
smlp__moe_noise_rows(const float *z, int64_t first, int64_t rows, int64_t e,
                     double sigma, uint64_t seed, uint64_t name_hash,
                     uint64_t step, float *out)
{
    const double two_pi = 6.283185307179586476925287;
    const double inv53 = 1.0 / 9007199254740992.0; /* 2^-53 */
    uint64_t key = mix64(mix64(mix64(seed) ^ name_hash) ^ step);
    int64_t i, n = rows * e, base = first * e;

    for (i = 0; i < n; i++) {
        uint64_t c = 2 * (uint64_t)(base + i);
        uint64_t a = mix64(key + c * MOE_GAMMA);
        uint64_t b = mix64(key + (c + 1) * MOE_GAMMA);
        double u1 = ((double)(a >> 11) + 1.0) * inv53;
        double u2 = (double)(b >> 11) * inv53;
        double g = sqrt(-2.0 * log(u1)) * cos(two_pi * u2);

        out[i] = (float)((double)z[i] + sigma * g);
    }
}

/* ---- routing core ------------------------------------------------------ */

void
smlp__moe_softmax(const float *z, int64_t rows, int64_t e, float *p)
{
    int64_t r, j;

    for (r = 0; r < rows; r++) {
        const float *zr = z + r * e;
        float *pr = p + r * e;
        double max = zr[0], sum = 0.0;

        for (j = 1; j < e; j++)
            if (zr[j] > max)
                max = zr[j];
        for (j = 0; j < e; j++)
            sum += exp((double)zr[j] - max);
        for (j = 0; j < e; j++)
            pr[j] = (float)(exp((double)zr[j] - max) / sum);
    }
}

/* Nonzero when expert a ranks before expert b in row v: larger value,
 * or the same value and a lower index. */
static int
ranks_before(const float *v, int32_t a, int32_t b)
{
    return v[a] > v[b] || (v[a] == v[b] && a < b);
}

/*
 * Partial selection sort of the experts of one row: afterwards sel[0..k)
 * are the k best by ranks_before, in that order.  O(k·e); k is small.
 */
static void
select_top(const float *v, int64_t e, int64_t k, int32_t *sel)
{
    int64_t i, j;

    for (i = 0; i < e; i++)
        sel[i] = (int32_t)i;
    for (j = 0; j < k; j++) {
        int64_t best = j;

        for (i = j + 1; i < e; i++)
            if (ranks_before(v, sel[i], sel[best]))
                best = i;
        if (best != j) {
            int32_t tmp = sel[j];

            sel[j] = sel[best];
            sel[best] = tmp;
        }
    }
}

void
smlp__moe_top_choices(const float *v, int64_t rows, int64_t e, int64_t k,
                      int32_t *sel, int32_t *choice)
{
    int64_t r, j;

    for (r = 0; r < rows; r++) {
        select_top(v + r * e, e, k, sel);
        for (j = 0; j < k; j++)
            choice[r * k + j] = sel[j];
    }
}

/* Descending score, then ascending index: a total order, so qsort (not
 * stable) still gives one answer. */
static int
key_cmp(const void *pa, const void *pb)
{
    const struct smlp__moe_key *a = pa, *b = pb;

    if (a->score > b->score)
        return -1;
    if (a->score < b->score)
        return 1;
    return (a->index > b->index) - (a->index < b->index);
}

void
smlp__moe_importance_order(const float *p, int64_t e, const int32_t *expert,
                           int64_t k, int64_t n, struct smlp__moe_key *keys,
                           int32_t *order)
{
    int64_t i;

    for (i = 0; i < n; i++) {
        float s = p[i * e + expert[i * k]];

        /* NaN would break the total order: rank it last. */
        keys[i].score = isnan(s) ? -INFINITY : s;
        keys[i].index = (int32_t)i;
    }
    qsort(keys, (size_t)n, sizeof(*keys), key_cmp);
    for (i = 0; i < n; i++)
        order[i] = keys[i].index;
}

void
smlp__moe_assign_slots(const struct smlp__moe_route *r, int64_t g,
                       int64_t first, int64_t n, const int32_t *order,
                       const int32_t *expert, int32_t *count, int32_t *slot,
                       int32_t *slot_item)
{
    int64_t base = g * r->cap, i, j;

    memset(count, 0, (size_t)r->e * sizeof(*count));
    for (j = 0; j < r->k; j++)
        for (i = 0; i < n; i++) {
            int64_t item = first + (order != NULL ? order[i] : i);
            int64_t at = item * r->k + j;
            int32_t ex = expert[at];

            if (count[ex] >= r->cap) {
                slot[at] = -1;
                continue;
            }
            slot[at] = (int32_t)(base + count[ex]);
            if (slot_item != NULL)
                slot_item[ex * r->m + slot[at]] = (int32_t)item;
            count[ex]++;
        }
}

void
smlp__moe_weights(const float *p, int64_t e, int64_t t,
                  const int32_t *expert, const int32_t *slot, int64_t n,
                  int64_t k, int normalize, float *weight)
{
    int64_t i, j;

    for (i = 0; i < n; i++) {
        const float *row = p + (i / t) * e;
        const int32_t *ex = expert + i * k, *sl = slot + i * k;
        float *w = weight + i * k;
        double sum = 0.0;

        if (normalize == SMLP__MOE_NORMALIZE_NONE) {
            for (j = 0; j < k; j++)
                w[j] = sl[j] >= 0 ? row[ex[j]] : 0.0f;
            continue;
        }
        for (j = 0; j < k; j++)
            if (sl[j] >= 0)
                sum += row[ex[j]];
        for (j = 0; j < k; j++)
            w[j] = sl[j] >= 0 && sum > 0.0
                       ? (float)((double)row[ex[j]] / sum)
                       : 0.0f;
    }
}

void
smlp__moe_add_load(const int32_t *expert, const int32_t *slot, int64_t n,
                   int64_t k, int32_t *load)
{
    int64_t i;

    for (i = 0; i < n * k; i++)
        load[2 * expert[i] + (slot[i] < 0 ? 1 : 0)]++;
}

double
smlp__moe_cv2(const double *v, int64_t n)
{
    double mean = 0.0, var = 0.0;
    int64_t i;

    if (n <= 0)
        return 0.0;
    for (i = 0; i < n; i++)
        mean += v[i];
    mean /= (double)n;
    for (i = 0; i < n; i++)
        var += (v[i] - mean) * (v[i] - mean);
    var /= (double)n;
    return mean != 0.0 ? var / (mean * mean) : 0.0;
}

double
smlp__moe_aux_vmoe(const float *pc, const float *zc, const float *zn,
                   int64_t rows, int64_t e, int64_t k, double sigma,
                   int32_t *sel, double *acc)
{
    double *imp = acc, *load = acc + e, loss;
    int64_t r, j;

    memset(acc, 0, (size_t)(2 * e) * sizeof(*acc));
    for (r = 0; r < rows; r++)
        for (j = 0; j < e; j++)
            imp[j] += pc[r * e + j];
    loss = smlp__moe_cv2(imp, e);
    if (sigma > 0.0 && rows > 0) {
        const double scale = 1.0 / (sigma * 1.41421356237309504880);

        for (r = 0; r < rows; r++) {
            double thr;

            select_top(zn + r * e, e, k, sel);
            thr = zn[r * e + sel[k - 1]];
            /* 1 − Φ(x) = ½·erfc(x/√2). */
            for (j = 0; j < e; j++)
                load[j] += 0.5 * erfc((thr - zc[r * e + j]) * scale);
        }
        for (j = 0; j < e; j++)
            load[j] /= (double)rows;
        loss += smlp__moe_cv2(load, e);
    }
    return 0.5 * loss;
}

double
smlp__moe_aux_switch(const float *p, const int32_t *choice, int64_t rows,
                     int64_t e, int64_t k, double *acc)
{
    double *f = acc, *pm = acc + e, s = 0.0;
    int64_t r, j;

    if (rows <= 0)
        return 0.0;
    memset(acc, 0, (size_t)(2 * e) * sizeof(*acc));
    for (r = 0; r < rows; r++) {
        f[choice[r * k]] += 1.0;
        for (j = 0; j < e; j++)
            pm[j] += p[r * e + j];
    }
    for (j = 0; j < e; j++)
        s += (f[j] / (double)rows) * (pm[j] / (double)rows);
    return (double)e * s;
}
