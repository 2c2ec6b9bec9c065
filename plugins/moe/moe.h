/*
 * moe.h - declarations shared by the files of the `moe` plugin.
 *
 * The plugin implements OPS.md "moe": the four gates (gates.c, on the
 * routing core of gate_common.c), dispatch, expert_ffn and combine.  Each
 * op lives in the file that holds its kernels and exports (inside the
 * plugin only; the build hides every symbol but smlp_plugin_init) its
 * struct smlp_op_def; plugin.c lists them.
 *
 * The routing core works on "routing rows": the items for topk and
 * importance, the images (T consecutive items) for per_image.  Its
 * functions take plain arrays and keep no state, so a backward can rerun
 * them to recover the forward's choices and slots.  They are thread-safe
 * (they touch only what they are given).
 */
#ifndef SMLP_MOE_H
#define SMLP_MOE_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "smlp_kernel.h"

/* Preferred over kernels that declare a lower score (none yet). */
#define SMLP__MOE_CPU_SCORE 10

/* dtype_mask bits. */
#define SMLP__MOE_MASK_F32 (1u << SMLP_DTYPE_F32)
#define SMLP__MOE_MASK_I32 (1u << SMLP_DTYPE_I32)

/* Workspace pieces are aligned like the workspace itself. */
#define SMLP__MOE_ALIGN 64

enum smlp__moe_gate_kind {
    SMLP__MOE_GATE_TOPK = 0,
    SMLP__MOE_GATE_IMPORTANCE,
    SMLP__MOE_GATE_PER_IMAGE,
    SMLP__MOE_GATE_HASH,
    SMLP__MOE_GATE_COUNT
};

enum smlp__moe_normalize {
    SMLP__MOE_NORMALIZE_NONE = 0, /* combine with the softmax values */
    SMLP__MOE_NORMALIZE_TOPK,     /* divide by the sum of the kept ones */
    SMLP__MOE_NORMALIZE_COUNT
};

enum smlp__moe_aux {
    SMLP__MOE_AUX_VMOE = 0,
    SMLP__MOE_AUX_SWITCH,
    SMLP__MOE_AUX_NONE,
    SMLP__MOE_AUX_COUNT
};

enum smlp__moe_hash_mode {
    SMLP__MOE_HASH_MODE_CHUNK = 0,
    SMLP__MOE_HASH_MODE_HASH,
    SMLP__MOE_HASH_MODE_COUNT
};

/*
 * Intra-op tasks (smlp_parallel_for).  Task boundaries depend on the
 * shapes only, never on the thread count: row loops take blocks of
 * SMLP__MOE_TASK_ROWS routing rows, group loops take
 * smlp__moe_groups_per_task(G) consecutive groups (groups are independent:
 * each owns its items and its rows of every expert's buffer).  Scratch
 * that a task needs is indexed by the task in the workspace.
 */
#define SMLP__MOE_TASK_ROWS 64

/* Tasks of `per` elements each over n elements. */
static inline int64_t
smlp__moe_tasks(int64_t n, int64_t per)
{
    return n > 0 ? (n - 1) / per + 1 : 0;
}

/* Groups of g items per group task: about SMLP__MOE_TASK_ROWS items. */
static inline int64_t
smlp__moe_groups_per_task(int64_t g)
{
    return g >= SMLP__MOE_TASK_ROWS || g < 1
               ? 1
               : (SMLP__MOE_TASK_ROWS + g - 1) / g;
}

/* Byte offsets of the gate kernel's scratch arrays in its workspace.
 * RT = row tasks, GT = group tasks (see SMLP__MOE_TASK_ROWS). */
struct smlp__moe_gate_ws {
    size_t zc;    /* f32 [R,E] clean logits */
    size_t zn;    /* f32 [R,E] noisy logits (training with noise) */
    size_t p;     /* f32 [R,E] routing softmax (of the noisy logits) */
    size_t pc;    /* f32 [R,E] clean softmax (training with noise) */
    size_t xm;    /* f32 [R,d] image means (per_image) */
    size_t rexp;  /* i32 [R,k] choices per image (per_image) */
    size_t order; /* i32 [N] priority order of each group (importance) */
    size_t keys;  /* struct smlp__moe_key [N] (importance) */
    size_t count; /* i32 [GT,E] rows taken per expert in a task's group */
    size_t sel;   /* i32 [max(RT,GT),E] selection scratch per task */
    size_t acc;   /* f64 [GT,2E] aux accumulators per task */
    size_t total; /* bytes in all */
    size_t loadp; /* i32 [GT,2E] load counted by each group task */
    size_t auxg;  /* f64 [groups] aux of each group (learned gates) */
    size_t ce;    /* f64 [R] superclass cross-entropy per image
                   * (per_image) */
};

/* A gate node's parsed attributes and derived sizes (its ctx->priv). */
struct smlp__moe_gate_priv {
    int32_t kind;      /* enum smlp__moe_gate_kind */
    int32_t normalize; /* enum smlp__moe_normalize */
    int32_t aux;       /* enum smlp__moe_aux */
    int32_t mode;      /* enum smlp__moe_hash_mode (hash) */
    int64_t n;         /* items: rows of x */
    int64_t d;         /* item width */
    int64_t e;         /* experts */
    int64_t k;         /* choices per item */
    int64_t g;         /* group size G (items) */
    int64_t groups;    /* N / G */
    int64_t t;         /* items per routing row (per_image, hash: T; else 1) */
    int64_t rows;      /* routing rows R = N / t (per_image), else N */
    int64_t cap;       /* rows per expert per group */
    int64_t m;         /* rows per expert: groups · cap */
    double cf;         /* the capacity factor this session uses */
    double noise_std;
    double aux_weight;
    uint64_t name_hash; /* FNV-1a 64 of the node name (noise stream) */
    struct smlp__moe_gate_ws ws;
    int32_t training; /* the session mode infer saw (read by the backward) */
};

/* What slot assignment needs to know of a gate. */
struct smlp__moe_route {
    int64_t e;   /* experts */
    int64_t k;   /* choices per item */
    int64_t cap; /* rows per expert per group */
    int64_t m;   /* rows per expert in all: groups · cap */
};

/* A routing row's priority key (importance gate). */
struct smlp__moe_key {
    float score;
    int32_t index;
};

/* ---- capacity, hashing, noise (gate_common.c) -------------------------- */

/*
 * Capacity per expert per group: cf <= 0 gives G (no dropping, no
 * rounding); else c = ceil((double)k·G·cf / E) evaluated in double in
 * that order, raised to at least 1, then rounded up to a multiple of
 * `multiple` (so the result is >= 1 and a multiple).  Returns -1 when the
 * result does not fit (the caller reports it).
 */
int64_t smlp__moe_capacity(int64_t k, int64_t g, double cf, int64_t e,
                           int64_t multiple);

/* 64-bit FNV-1a of the NUL-terminated string s (NULL hashes as ""). */
uint64_t smlp__moe_fnv1a64(const char *s);

/*
 * lowbias32 (Chris Wellons' integer hash): h = x; h ^= h >> 16;
 * h *= 0x7feb352d; h ^= h >> 15; h *= 0x846ca68b; h ^= h >> 16.
 */
uint32_t smlp__moe_lowbias32(uint32_t x);

/*
 * out[i] = z[i] + sigma·N(0,1)_i for the rows·e logits z.  The standard
 * normal of element i comes from a counter-based stream, so it depends
 * only on (seed, name_hash, step, i), never on threads or call order:
 * key = mix(mix(mix(seed) ^ name_hash) ^ step) with mix the SplitMix64
 * step (add 0x9e3779b97f4a7c15, then its finaliser); a = mix(key +
 * 2i·γ), b = mix(key + (2i+1)·γ) (γ the same constant); u1 = ((a >> 11)
 * + 1)·2⁻⁵³ in (0,1], u2 = (b >> 11)·2⁻⁵³ in [0,1); N = √(−2 ln u1) ·
 * cos(2π u2) (Box–Muller), in double.
 */
void smlp__moe_noise(const float *z, int64_t rows, int64_t e, double sigma,
                     uint64_t seed, uint64_t name_hash, uint64_t step,
                     float *out);

/* smlp__moe_noise of rows [first, first + rows) of a larger table: z and
 * out point at row `first`, whose element j is number first·e + j of
 * the stream. */
void smlp__moe_noise_rows(const float *z, int64_t first, int64_t rows,
                          int64_t e, double sigma, uint64_t seed,
                          uint64_t name_hash, uint64_t step, float *out);

/* ---- routing core (gate_common.c) -------------------------------------- */

/* p = softmax(z) per row of e values, in double with the row maximum
 * subtracted, stored as float.  p may not alias z. */
void smlp__moe_softmax(const float *z, int64_t rows, int64_t e, float *p);

/*
 * The k largest values of each row of v [rows, e]: choice[r, j] is the
 * expert of the (j+1)-th largest, ties going to the lower expert index,
 * so choices are sorted by descending value.  sel: scratch of e int32.
 */
void smlp__moe_top_choices(const float *v, int64_t rows, int64_t e,
                           int64_t k, int32_t *sel, int32_t *choice);

/*
 * Importance priority of the n items of one group: order[0..n) lists the
 * local item indices by descending score (the item's first-choice p,
 * p[r, expert[r, 0]], i.e. its largest p), ties going to the lower index.
 * p and expert point at the group's first row; keys: scratch of n.
 */
void smlp__moe_importance_order(const float *p, int64_t e,
                                const int32_t *expert, int64_t k, int64_t n,
                                struct smlp__moe_key *keys, int32_t *order);

/*
 * Grants the buffer rows of group g to the n items [first, first + n):
 * choice rank by choice rank (j = 0..k-1), and within a rank the items in
 * priority order (order[i] = local index, NULL = item order), each (item,
 * choice) gets its expert's next free row g·cap + count[e] while
 * count[e] < cap, else slot −1 (dropped).  expert and slot are the
 * [N, k] arrays of the whole call; slot_item [e, m] (may be NULL) gets the
 * global item index in each granted row (rows left empty are not
 * touched).  count: scratch of e int32.
 */
void smlp__moe_assign_slots(const struct smlp__moe_route *r, int64_t g,
                            int64_t first, int64_t n, const int32_t *order,
                            const int32_t *expert, int32_t *count,
                            int32_t *slot, int32_t *slot_item);

/*
 * Combine weights of items [0, n): item i reads the probabilities of
 * routing row i / t of p [rows, e].  normalize none: the p of each kept
 * choice; topk: each kept p divided by the sum (double, j order) of the
 * item's kept p.  Dropped choices get 0, and so does every choice of an
 * item whose kept p sum to 0.
 */
void smlp__moe_weights(const float *p, int64_t e, int64_t t,
                       const int32_t *expert, const int32_t *slot, int64_t n,
                       int64_t k, int normalize, float *weight);

/* load[e] += {kept, dropped} over every (item, choice) of n items. */
void smlp__moe_add_load(const int32_t *expert, const int32_t *slot,
                        int64_t n, int64_t k, int32_t *load);

/* Population variance / mean² of v[0..n) (0 when the mean is 0). */
double smlp__moe_cv2(const double *v, int64_t n);

/*
 * V-MoE aux of one group of `rows` routing rows (before aux_weight):
 * ½·(CV²(Imp) + CV²(Load)), Imp_e = Σ_r pc[r, e]; the load term only when
 * sigma > 0: t_r = k-th largest of zn[r], Load_e = mean_r (1 −
 * Φ((t_r − zc[r, e]) / sigma)), computed as ½·erfc((t_r − zc)/(σ√2)).
 * sigma == 0 gives ½·CV²(Imp).  sel: scratch of e int32; acc: of 2e
 * doubles.
 */
double smlp__moe_aux_vmoe(const float *pc, const float *zc, const float *zn,
                          int64_t rows, int64_t e, int64_t k, double sigma,
                          int32_t *sel, double *acc);

/*
 * Switch aux of one group (before aux_weight): E·Σ_e f_e·P_e with f_e the
 * share of rows whose first choice (choice[r, 0], stride k) is e and P_e
 * the mean of p[r, e].  The gates pass the clean softmax as p (the
 * choices come from the noisy one).  acc: scratch of 2e doubles.
 */
double smlp__moe_aux_switch(const float *p, const int32_t *choice,
                            int64_t rows, int64_t e, int64_t k, double *acc);

/* ---- gates (gate_infer.c) ---------------------------------------------- */

/*
 * Shape inference of every moe.gate.* node (kind: enum
 * smlp__moe_gate_kind): checks inputs and attributes, sets the six
 * outputs, the workspace and the MACs, and stores a struct
 * smlp__moe_gate_priv as ctx->priv.  Returns SMLP_OK or a negative status
 * after host->errorf.
 */
int smlp__moe_gate_infer(struct smlp_infer_ctx *ctx, int kind);

/* ---- gate backward (gate_backward.c) ----------------------------------- */

/*
 * Bytes of backward workspace of a learned gate (0 for hash), or
 * SIZE_MAX when the size overflows (infer reports it).
 */
size_t smlp__moe_gate_backward_size(const struct smlp__moe_gate_priv *p);

/* Backward of topk, importance and per_image (see gate_backward.c). */
int smlp__moe_gate_backward(struct smlp_backward_ctx *ctx);

/* Backward of hash: zeros for x (its outputs do not depend on x). */
int smlp__moe_hash_backward(struct smlp_backward_ctx *ctx);

/* The forward's router pieces (gates.c), rerun by the backward: xm [rows,
 * d] = mean of each image's t items (double sums, item order), and z
 * [rows, e] = src [rows, d]·Wgᵀ (one sgemm). */
void smlp__moe_image_means(const float *x, int64_t rows, int64_t t,
                           int64_t d, float *xm);
void smlp__moe_router_logits(const float *src, const float *wg, int64_t rows,
                             int64_t e, int64_t d, float *z);

/* ---- helpers for shape inference --------------------------------------- */

/*
 * Checks that input i (called name) has exactly `rank` dims equal to
 * want[]; `why` ends the message, e.g. "[E,h,d] with E, d of input 0".
 */
static inline int
smlp__moe_check_shape(struct smlp_infer_ctx *ctx, int i, const char *name,
                      int rank, const int64_t *want, const char *why)
{
    const struct smlp_tensor *t = ctx->inputs[i];
    char s1[SMLP_SHAPE_STRLEN], s2[SMLP_SHAPE_STRLEN];
    int d, same = t->rank == rank;

    for (d = 0; same && d < rank; d++)
        same = t->shape[d] == want[d];
    if (same)
        return SMLP_OK;
    return smlp_infer_fail(ctx, SMLP_ESHAPE,
                           "input %d (%s) has shape %s, expected %s (%s)", i,
                           name, smlp_shape_str(t, s1, sizeof(s1)),
                           smlp_ints_str(want, (size_t)rank, s2, sizeof(s2)),
                           why);
}

/* Checks that each of the n sizes fits the `int` of cblas_sgemm. */
static inline int
smlp__moe_check_blas_dims(struct smlp_infer_ctx *ctx, const char *what,
                          int n, const int64_t *dims)
{
    int i;

    for (i = 0; i < n; i++)
        if (dims[i] > INT_MAX)
            return smlp_infer_fail(ctx, SMLP_ELIMIT,
                                   "%s: size %lld exceeds the BLAS limit %d",
                                   what, (long long)dims[i], INT_MAX);
    return SMLP_OK;
}

/* Rounds a workspace offset up to SMLP__MOE_ALIGN. */
static inline size_t
smlp__moe_align(size_t n)
{
    return (n + SMLP__MOE_ALIGN - 1) / SMLP__MOE_ALIGN * SMLP__MOE_ALIGN;
}

/* smlp_kernel_fail for a backward: formats a message for host->errorf
 * and returns status. */
static inline int
smlp__moe_backward_fail(struct smlp_backward_ctx *ctx, int status,
                        const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static inline int
smlp__moe_backward_fail(struct smlp_backward_ctx *ctx, int status,
                        const char *fmt, ...)
{
    char msg[SMLP_KERNEL_MSGLEN];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ctx->host->errorf(ctx->node, "%s", msg);
    return status;
}

/* The gate backward's pieces that its CPU (gate_backward.c) and CUDA
 * (cuda_gate_bwd.cu) versions share: host and device code. */
#ifdef __CUDACC__
#define SMLP__MOE_HD __host__ __device__
#else
#define SMLP__MOE_HD
#endif

/*
 * g[i] = scale·∂CV²(v)/∂v_i over v[0..n), with the mean and variance
 * summed in the order of smlp__moe_cv2; all 0 when the mean is 0 (the
 * forward's CV² is then the constant 0).
 */
static inline SMLP__MOE_HD void
smlp__moe_cv2_grad(const double *v, int64_t n, double scale, double *g)
{
    double mean = 0.0, var = 0.0, f;
    int64_t i;

    for (i = 0; i < n; i++)
        mean += v[i];
    mean /= (double)n;
    for (i = 0; i < n; i++)
        var += (v[i] - mean) * (v[i] - mean);
    var /= (double)n;
    if (mean == 0.0) {
        for (i = 0; i < n; i++)
            g[i] = 0.0;
        return;
    }
    f = scale * 2.0 / ((double)n * mean * mean);
    for (i = 0; i < n; i++)
        g[i] = f * (v[i] - mean - var / mean);
}

/* dz = (d − <p, d>)·p per row of e, in place (the softmax backward). */
static inline SMLP__MOE_HD void
smlp__moe_softmax_backward(const float *p, int64_t rows, int64_t e, double *d)
{
    int64_t r, j;

    for (r = 0; r < rows; r++) {
        const float *pr = p + r * e;
        double *dr = d + r * e, s = 0.0;

        for (j = 0; j < e; j++)
            s += (double)pr[j] * dr[j];
        for (j = 0; j < e; j++)
            dr[j] = (double)pr[j] * (dr[j] - s);
    }
}

/* Byte offsets of a gate backward's scratch arrays in its workspace
 * (gate_backward.c; the CUDA backward uses the same layout). */
struct smlp__moe_gate_bwd_layout {
    size_t zc;     /* f32 [R,E] clean logits */
    size_t zn;     /* f32 [R,E] noisy logits (noisy training) */
    size_t p;      /* f32 [R,E] routing softmax */
    size_t pc;     /* f32 [R,E] clean softmax (noisy training) */
    size_t xm;     /* f32 [R,d] image means (per_image) */
    size_t dp;     /* f64 [R,E] d p, then d logits in place */
    size_t dpc;    /* f64 [R,E] d pc (noisy training) */
    size_t dzf;    /* f32 [R,E] d logits for the sgemm calls */
    size_t dsrc;   /* f32 [R,d] d image means (per_image) */
    size_t sel;    /* i32 [GT,E] selection scratch per group task */
    size_t choice; /* i32 [GT,k] top-k of one row, per group task */
    size_t acc;    /* f64 [GT,2E] per-group sums and their gradients */
    size_t total;
};

#ifdef __cplusplus
extern "C" {
#endif
/* The layout for pv; -1 when a size overflows. */
int smlp__moe_gate_bwd_layout(const struct smlp__moe_gate_priv *pv,
                              struct smlp__moe_gate_bwd_layout *l);
#ifdef __cplusplus
}
#endif

extern const struct smlp_op_def smlp__moe_op_gate_topk;
extern const struct smlp_op_def smlp__moe_op_gate_importance;
extern const struct smlp_op_def smlp__moe_op_gate_per_image;
extern const struct smlp_op_def smlp__moe_op_gate_hash;
extern const struct smlp_op_def smlp__moe_op_dispatch;
extern const struct smlp_op_def smlp__moe_op_expert_ffn;
extern const struct smlp_op_def smlp__moe_op_combine;

/*
 * CUDA kernels (cuda_gate.cu, cuda_ffn.cu; built with configure
 * --with-cuda), listed after the CPU kernel in each op's kernel table
 * through SMLP__MOE_CUDA(k), which is empty in a build without CUDA.
 * gate_cuda serves topk, importance and per_image (like gate_cpu).
 */
#ifdef SMLP_HAVE_CUDA
#ifdef __cplusplus
extern "C" {
#endif
extern const struct smlp_kernel_def smlp__moe_gate_cuda;
extern const struct smlp_kernel_def smlp__moe_hash_cuda;
extern const struct smlp_kernel_def smlp__moe_dispatch_cuda;
extern const struct smlp_kernel_def smlp__moe_expert_ffn_cuda;
extern const struct smlp_kernel_def smlp__moe_combine_cuda;
#ifdef __cplusplus
}
#endif
#define SMLP__MOE_CUDA(k) &(k),
#else
#define SMLP__MOE_CUDA(k)
#endif

#endif /* SMLP_MOE_H */
