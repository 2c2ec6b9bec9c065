/*
 * smlp_kernel.h - small header-only helpers for kernel writers.
 *
 * Everything here is built on the plugin ABI (smlp_plugin.h) alone: it
 * reads attributes with defaults, checks inputs and formats the messages
 * that OPS.md asks for ("input 1 (W) has shape [3,4,5] (rank 3), expected
 * rank 2").  All functions are static inline, so a plugin that includes
 * this header exports nothing more and links nothing more.
 *
 * The smlp_infer_* helpers take the infer context of the node being
 * inferred; on failure they describe the problem with host->errorf (the
 * host adds the file, node and op names) and return a negative status,
 * which infer() passes on.  They run on the thread that creates the
 * session and keep no state.
 */
#ifndef SMLP_KERNEL_H
#define SMLP_KERNEL_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "smlp_plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * host->parallel_for when the host has it (see smlp_plugin.h), else the
 * tasks in order on the calling thread (worker 0).
 */
static inline int
smlp_parallel_for(const struct smlp_host_api *host,
                  const struct smlp_node *node, int64_t n_tasks,
                  int (*fn)(void *arg, int64_t task, int worker), void *arg)
{
    int64_t t;
    int rc = 0, r;

    if (n_tasks <= 0)
        return 0;
    if (n_tasks > 1 && SMLP_HOST_HAS(host, parallel_for))
        return host->parallel_for(node, n_tasks, fn, arg);
    for (t = 0; t < n_tasks; t++)
        if ((r = fn(arg, t, 0)) != 0 && rc == 0)
            rc = r;
    return rc;
}

/* Room for any message these helpers format. */
#define SMLP_KERNEL_MSGLEN 512
/* Room for a shape of SMLP_MAX_RANK dims as text. */
#define SMLP_SHAPE_STRLEN 192

/* "f32", "i32" or "dtype N". */
static inline const char *
smlp_dtype_str(int dtype)
{
    switch (dtype) {
    case SMLP_DTYPE_F32:
        return "f32";
    case SMLP_DTYPE_I32:
        return "i32";
    default:
        return "dtype?";
    }
}

/* Writes "[a,b,c]" (n values) into buf (len bytes, truncated); returns buf. */
static inline const char *
smlp_ints_str(const int64_t *v, size_t n, char *buf, size_t len)
{
    size_t used = 0, i;
    int k;

    if (len == 0)
        return buf;
    buf[0] = '\0';
    k = snprintf(buf, len, "[");
    used = k > 0 ? (size_t)k : 0;
    for (i = 0; i < n && used < len; i++) {
        k = snprintf(buf + used, len - used, "%s%lld", i ? "," : "",
                     (long long)v[i]);
        if (k < 0)
            break;
        used += (size_t)k;
    }
    if (used < len)
        snprintf(buf + used, len - used, "]");
    return buf;
}

/* The shape of t as "[2,196,768]" ("[]" for a scalar); returns buf. */
static inline const char *
smlp_shape_str(const struct smlp_tensor *t, char *buf, size_t len)
{
    return smlp_ints_str(t->shape, (size_t)(t->rank > 0 ? t->rank : 0), buf,
                         len);
}

/* Formats a message and hands it to host->errorf; returns status. */
static inline int
smlp_infer_fail(struct smlp_infer_ctx *ctx, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static inline int
smlp_infer_fail(struct smlp_infer_ctx *ctx, int status, const char *fmt, ...)
{
    char msg[SMLP_KERNEL_MSGLEN];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ctx->host->errorf(ctx->node, "%s", msg);
    return status;
}

/* The same for a kernel run (a failure found in the data). */
static inline int
smlp_kernel_fail(struct smlp_kernel_ctx *ctx, int status, const char *fmt,
                 ...) __attribute__((format(printf, 3, 4)));

static inline int
smlp_kernel_fail(struct smlp_kernel_ctx *ctx, int status, const char *fmt,
                 ...)
{
    char msg[SMLP_KERNEL_MSGLEN];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ctx->host->errorf(ctx->node, "%s", msg);
    return status;
}

/*
 * Turns a getter's answer into ours: absent and required is an error,
 * absent and optional means "use the default" (returns SMLP_DECLINED).
 */
static inline int
smlp_infer_attr_status_(struct smlp_infer_ctx *ctx, int rc, const char *name,
                        const char *tname, int required)
{
    if (rc == SMLP_OK)
        return SMLP_OK;
    if (rc == SMLP_DECLINED) {
        if (required)
            return smlp_infer_fail(ctx, SMLP_EINVAL,
                                   "missing required attribute '%s' (%s)",
                                   name, tname);
        return SMLP_DECLINED;
    }
    /* The host has recorded the type mismatch already; this message is
     * for hosts that do not (errorf keeps the first one). */
    return smlp_infer_fail(ctx, SMLP_EINVAL,
                           "attribute '%s' has the wrong type, expected "
                           "a%s %s",
                           name, strcmp(tname, "int") == 0 ? "n" : "", tname);
}

/*
 * Reads int attribute `name` into *out: its value when set, else def
 * (or an error when required).  Returns SMLP_OK or SMLP_EINVAL.
 */
static inline int
smlp_infer_attr_int(struct smlp_infer_ctx *ctx, const char *name,
                    int required, int64_t def, int64_t *out)
{
    int rc = ctx->host->attr_int(ctx->node, name, out);

    rc = smlp_infer_attr_status_(ctx, rc, name, "int", required);
    if (rc == SMLP_DECLINED) {
        *out = def;
        rc = SMLP_OK;
    }
    return rc;
}

/* Like smlp_infer_attr_int for a float attribute (read as double). */
static inline int
smlp_infer_attr_float(struct smlp_infer_ctx *ctx, const char *name,
                      int required, double def, double *out)
{
    int rc = ctx->host->attr_float(ctx->node, name, out);

    rc = smlp_infer_attr_status_(ctx, rc, name, "float", required);
    if (rc == SMLP_DECLINED) {
        *out = def;
        rc = SMLP_OK;
    }
    return rc;
}

/* Like smlp_infer_attr_int for a string; *out is owned by the host. */
static inline int
smlp_infer_attr_string(struct smlp_infer_ctx *ctx, const char *name,
                       int required, const char *def, const char **out)
{
    int rc = ctx->host->attr_string(ctx->node, name, out);

    rc = smlp_infer_attr_status_(ctx, rc, name, "string", required);
    if (rc == SMLP_DECLINED) {
        *out = def;
        rc = SMLP_OK;
    }
    return rc;
}

/* Reads an ints attribute (absent and optional: *out = NULL, *n = 0). */
static inline int
smlp_infer_attr_ints(struct smlp_infer_ctx *ctx, const char *name,
                     int required, const int64_t **out, size_t *n)
{
    int rc = ctx->host->attr_ints(ctx->node, name, out, n);

    rc = smlp_infer_attr_status_(ctx, rc, name, "ints", required);
    if (rc == SMLP_DECLINED) {
        *out = NULL;
        *n = 0;
        rc = SMLP_OK;
    }
    return rc;
}

/*
 * Checks that input i (called `name` in messages) is present, has dtype
 * `dtype` and a rank in [min_rank, max_rank].  Returns SMLP_OK, or
 * SMLP_EINVAL / SMLP_ESHAPE after an errorf.
 */
static inline int
smlp_infer_check_input(struct smlp_infer_ctx *ctx, int i, const char *name,
                       int dtype, int min_rank, int max_rank)
{
    const struct smlp_tensor *t;
    char s[SMLP_SHAPE_STRLEN];

    if (i >= ctx->n_inputs || ctx->inputs[i] == NULL)
        return smlp_infer_fail(ctx, SMLP_EINVAL, "input %d (%s) is missing",
                               i, name);
    t = ctx->inputs[i];
    if (t->dtype != dtype)
        return smlp_infer_fail(ctx, SMLP_EINVAL,
                               "input %d (%s) has dtype %s, expected %s", i,
                               name, smlp_dtype_str(t->dtype),
                               smlp_dtype_str(dtype));
    if (t->rank < min_rank || t->rank > max_rank) {
        smlp_shape_str(t, s, sizeof(s));
        if (min_rank == max_rank)
            return smlp_infer_fail(ctx, SMLP_ESHAPE,
                                   "input %d (%s) has shape %s (rank %d), "
                                   "expected rank %d",
                                   i, name, s, t->rank, min_rank);
        return smlp_infer_fail(ctx, SMLP_ESHAPE,
                               "input %d (%s) has shape %s (rank %d), "
                               "expected rank %d to %d",
                               i, name, s, t->rank, min_rank, max_rank);
    }
    return SMLP_OK;
}

/*
 * Checks that input i has exactly the shape of tensor ref (input ref_i,
 * called ref_name).  Used for "same shape" operands.
 */
static inline int
smlp_infer_check_same_shape(struct smlp_infer_ctx *ctx, int i,
                            const char *name, int ref_i, const char *ref_name)
{
    const struct smlp_tensor *t = ctx->inputs[i], *r = ctx->inputs[ref_i];
    char s1[SMLP_SHAPE_STRLEN], s2[SMLP_SHAPE_STRLEN];
    int d, same = t->rank == r->rank;

    for (d = 0; same && d < t->rank; d++)
        same = t->shape[d] == r->shape[d];
    if (same)
        return SMLP_OK;
    return smlp_infer_fail(ctx, SMLP_ESHAPE,
                           "input %d (%s) has shape %s, expected %s like "
                           "input %d (%s)",
                           i, name, smlp_shape_str(t, s1, sizeof(s1)),
                           smlp_shape_str(r, s2, sizeof(s2)), ref_i, ref_name);
}

/*
 * Checks that input i is the vector [n]: used for biases and affine
 * parameters.  `why` ends the message, e.g. "the last dim of input 0 (x)".
 */
static inline int
smlp_infer_check_vector(struct smlp_infer_ctx *ctx, int i, const char *name,
                        int64_t n, const char *why)
{
    const struct smlp_tensor *t = ctx->inputs[i];
    char s[SMLP_SHAPE_STRLEN];

    if (t->rank == 1 && t->shape[0] == n)
        return SMLP_OK;
    return smlp_infer_fail(ctx, SMLP_ESHAPE,
                           "input %d (%s) has shape %s, expected [%lld] (%s)",
                           i, name, smlp_shape_str(t, s, sizeof(s)),
                           (long long)n, why);
}

/*
 * Normalises `axis` (attribute attr, negative counts from the end) against
 * input i (called name); *out in [0, rank).
 */
static inline int
smlp_infer_axis(struct smlp_infer_ctx *ctx, const char *attr, int64_t axis,
                int i, const char *name, int *out)
{
    const struct smlp_tensor *t = ctx->inputs[i];
    char s[SMLP_SHAPE_STRLEN];
    int64_t a = axis < 0 ? axis + t->rank : axis;

    if (a < 0 || a >= t->rank)
        return smlp_infer_fail(ctx, SMLP_EINVAL,
                               "attribute '%s' = %lld is out of range for "
                               "input %d (%s) of shape %s (rank %d)",
                               attr, (long long)axis, i, name,
                               smlp_shape_str(t, s, sizeof(s)), t->rank);
    *out = (int)a;
    return SMLP_OK;
}

/* Sets output i's dtype and shape. */
static inline void
smlp_infer_set_output(struct smlp_infer_ctx *ctx, int i, int dtype, int rank,
                      const int64_t *shape)
{
    struct smlp_tensor *t = ctx->outputs[i];
    int d;

    t->dtype = dtype;
    t->rank = rank;
    for (d = 0; d < rank; d++)
        t->shape[d] = shape[d];
}

/*
 * Copies `size` bytes of parsed attributes into node-private memory
 * (host->alloc), handed to every kernel run as ctx->priv and released by
 * the host with host->free.  Call it last, when every check passed.
 */
static inline int
smlp_infer_set_priv(struct smlp_infer_ctx *ctx, const void *src, size_t size)
{
    void *p = ctx->host->alloc(size);

    if (p == NULL)
        return smlp_infer_fail(ctx, SMLP_ENOMEM,
                               "out of memory (%zu bytes of node state)",
                               size);
    memcpy(p, src, size);
    ctx->priv = p;
    ctx->priv_free = ctx->host->free;
    return SMLP_OK;
}

/*
 * SMLP_VECTOR_CLONES before an elementwise loop function builds it three
 * times, for AVX-512 (x86-64-v4), AVX2 and the baseline, picked at load
 * time (GCC's ifunc-based target_clones), so a portable build still runs
 * 16- or 8-wide where it can.  Plugins compile with -fno-trapping-math
 * -fvect-cost-model=dynamic ($(SMLP_VEC_CFLAGS)) so that branch-free
 * float loops vectorise at -O2, and with -ffp-contract=off: the clones do
 * the same IEEE operations per element (no FMA contraction, and GCC does
 * not reorder float sums without -ffast-math), so every clone gives the
 * same bits.
 */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    defined(__linux__)
#define SMLP_VECTOR_CLONES                                                  \
    __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define SMLP_VECTOR_CLONES
#endif

/*
 * erf(x) for floats without libm: x·P(x²)/Q(x²) on x clamped to [-4, 4]
 * (|erf(4)| = 1 - 1.5e-8, below float resolution), a rational minimax
 * approximation of degree 13/8 (the coefficients used by Eigen's and XLA's
 * float erf).  Max abs error 6.5e-8 over [-6, 6] in exact arithmetic; a few
 * float ulps in practice.  Branch-free, so loops over it vectorise, and
 * 5-10x faster than glibc's erff.  NaN stays NaN.
 */
static inline float
smlp_erff(float x)
{
    float x2, p, q;

    x = x > 4.0f ? 4.0f : x;
    x = x < -4.0f ? -4.0f : x;
    x2 = x * x;
    p = -2.72614225801306e-10f;
    p = p * x2 + 2.77068142495902e-08f;
    p = p * x2 + -2.10102402082508e-06f;
    p = p * x2 + -5.69250639462346e-05f;
    p = p * x2 + -7.34990630326855e-04f;
    p = p * x2 + -2.95459980854025e-03f;
    p = p * x2 + -1.60960333262415e-02f;
    q = -1.45660718464996e-05f;
    q = q * x2 + -2.13374055278905e-04f;
    q = q * x2 + -1.68282697438203e-03f;
    q = q * x2 + -7.37332916720468e-03f;
    q = q * x2 + -1.42647390514189e-02f;
    return x * p / q;
}

/* Exact GELU, 0.5·x·(1 + erf(x/√2)), through smlp_erff. */
static inline float
smlp_gelu_erf(float x)
{
    return 0.5f * x * (1.0f + smlp_erff(x * 0.70710678118654752f));
}

/*
 * e^a for floats without libm, branch-free so that loops over it
 * vectorise: a is clamped to [-87, 88] (a NaN becomes -87: callers keep
 * NaNs flowing through their other terms), a = n·ln2 + r with
 * |r| <= ln2/2 (ln2 in two parts, Cody-Waite), e^r from Cephes'
 * polynomial for expf, and 2^n put
 * into the exponent bits.  Relative error about 1e-7.
 */
static inline float
smlp_expf(float a)
{
    union {
        uint32_t u;
        float f;
    } scale;
    float n, r, p;

    a = a > -87.0f ? a : -87.0f;
    a = a < 88.0f ? a : 88.0f;
    n = a * 1.44269504088896341f;
    /* Round to nearest: 1.5·2^23 pushes the fraction out (|n| < 2^22);
     * the code stays branch-free (a ?: here stops GCC's AVX2 clone). */
    n = (n + 12582912.0f) - 12582912.0f;
    r = a - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    scale.u = (uint32_t)((int32_t)n + 127) << 23;
    return p * scale.f;
}

/*
 * The exact GELU and its derivative with one erf: returns d/dx =
 * Φ(x) + x·φ(x), with Φ(x) = (1 + erf(x/√2))/2 and φ(x) = e^(-x²/2)/√(2π),
 * and stores act(x) = x·Φ(x) (the same bits as smlp_gelu_erf) in *act.
 * Beyond |x| = 10 the x·φ term is below 1e-21, so x is clamped there for
 * it (smlp_erff saturates at |x/√2| = 4 anyway; a NaN stays NaN).
 * Branch-free.
 */
static inline float
smlp_gelu_erf_both(float x, float *act)
{
    float e1 = 1.0f + smlp_erff(x * 0.70710678118654752f);
    float xc = x > 10.0f ? 10.0f : x;
    float pdf;

    xc = xc < -10.0f ? -10.0f : xc;
    pdf = 0.39894228040143268f * smlp_expf(-0.5f * xc * xc);
    *act = 0.5f * x * e1;
    return 0.5f * e1 + xc * pdf;
}

/* d/dx of the exact GELU (smlp_gelu_erf_both without the activation). */
static inline float
smlp_gelu_erf_grad(float x)
{
    float act;

    return smlp_gelu_erf_both(x, &act);
}

#ifdef __cplusplus
}
#endif

#endif /* SMLP_KERNEL_H */
