/*
 * smlp_cuda.h - header-only helpers for the CUDA kernels of plugins.
 *
 * For .cu files only (nvcc, C++): it includes cuda_runtime.h and
 * cublas_v2.h, which STYLE.md keeps out of every other file, and it is
 * not installed.  A plugin's cuda.cu includes its own header (which
 * brings smlp_kernel.h), then this one.  Everything is `static inline`,
 * so a plugin that includes it exports nothing more; the state of the
 * cuBLAS handle cache lives in function-local statics, i.e. one cache per
 * translation unit (per .cu file), created on first use.
 *
 * What is here, modelled on the first CUDA kernels (plugins/core/cuda.cu):
 *   - grid sizing for grid-stride loops (smlp_cuda_grid);
 *   - the stream of a kernel context (smlp_cuda_stream);
 *   - error reporting: a failed launch or enqueue becomes SMLP_EDEVICE
 *     through smlp_kernel_fail (host->errorf), naming what failed
 *     (smlp_cuda_launched, smlp_cuda_check);
 *   - attribute readers with defaults for run() (smlp_cuda_attr_*);
 *   - cuBLAS, opened with dlopen on the first product and never linked
 *     (libcublasLt alone is over 500 MB; linking it would cost every
 *     process that loads the plugin ~0.1 s, GPU or not): one handle per
 *     stream, at most SMLP_CUDA_BLAS_SLOTS, the least recently used one
 *     rebound beyond that, each used only under the cache's lock
 *     (smlp_cublas_acquire / smlp_cublas_release), in the default FP32
 *     math mode (no TF32); and row-major products on top of it
 *     (smlp_cuda_sgemm_xwt, smlp_cuda_sgemm_xwt_batched, and the general
 *     smlp_cuda_sgemm).
 * Each helper takes a kernel's context or a backward's (template Ctx).
 *
 * Threads: run() is called on the session's loop thread, but two
 * sessions may run on two threads at once; the cache is guarded by a
 * mutex, everything else keeps no state.  Nothing here synchronises a
 * stream: run() only enqueues.
 */
#ifndef SMLP_CUDA_H
#define SMLP_CUDA_H

#ifndef __CUDACC__
#error "smlp_cuda.h is for .cu files compiled by nvcc"
#endif

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "smlp_kernel.h"

/* Threads per block of the grid-stride helpers. */
#define SMLP_CUDA_BLOCK 256
/* Most blocks smlp_cuda_grid hands out (grid-stride loops do the rest). */
#define SMLP_CUDA_MAX_GRID (1 << 20)
/* cuBLAS handles per translation unit (one per stream in use). */
#define SMLP_CUDA_BLAS_SLOTS 16

/* ---- errors and launches ------------------------------------------------ */

/*
 * Records a failure for the node of ctx -- a kernel's context or a
 * backward's (plugin ABI 1.3 device backwards): every helper here takes
 * either -- and returns status.
 */
template <class Ctx>
static inline int
smlp_cuda_fail(const Ctx *ctx, int status, const char *fmt, ...)
{
    char msg[SMLP_KERNEL_MSGLEN];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ctx->host->errorf(ctx->node, "%s", msg);
    return status;
}

/* Blocks of `block` threads for a grid-stride loop over n items (>= 1). */
static inline unsigned
smlp_cuda_grid_of(int64_t n, int block)
{
    int64_t b = (n + block - 1) / block;

    if (b < 1)
        b = 1;
    if (b > SMLP_CUDA_MAX_GRID)
        b = SMLP_CUDA_MAX_GRID;
    return (unsigned)b;
}

/* The same with SMLP_CUDA_BLOCK threads per block. */
static inline unsigned
smlp_cuda_grid(int64_t n)
{
    return smlp_cuda_grid_of(n, SMLP_CUDA_BLOCK);
}

template <class Ctx>
static inline cudaStream_t
smlp_cuda_stream(const Ctx *ctx)
{
    return (cudaStream_t)ctx->stream;
}

/* Status of an enqueue call (memset, copy...): SMLP_OK, or SMLP_EDEVICE
 * after an errorf naming `what` and the CUDA error. */
template <class Ctx>
static inline int
smlp_cuda_check(Ctx *ctx, cudaError_t e, const char *what)
{
    if (e == cudaSuccess)
        return SMLP_OK;
    (void)cudaGetLastError(); /* clear it: the next check is not about it */
    return smlp_cuda_fail(ctx, SMLP_EDEVICE, "CUDA %s: %s (%s)", what,
                            cudaGetErrorString(e), cudaGetErrorName(e));
}

/* Checks the kernel launches just made; a failure names `what`. */
template <class Ctx>
static inline int
smlp_cuda_launched(Ctx *ctx, const char *what)
{
    return smlp_cuda_check(ctx, cudaGetLastError(), what);
}

/* cudaMemsetAsync of `bytes` bytes (nothing when 0) on ctx's stream. */
template <class Ctx>
static inline int
smlp_cuda_memset(Ctx *ctx, void *p, int value,
                 size_t bytes, const char *what)
{
    if (bytes == 0)
        return SMLP_OK;
    return smlp_cuda_check(
        ctx, cudaMemsetAsync(p, value, bytes, smlp_cuda_stream(ctx)), what);
}

/* Zeroes the gradient of input i of a backward when it is wanted (the
 * node's gradient does not reach it, or it has none). */
static inline int
smlp_cuda_zero_grad(struct smlp_backward_ctx *ctx, int i)
{
    struct smlp_tensor *g = i < ctx->n_inputs ? ctx->grad_inputs[i] : NULL;

    if (g == NULL)
        return SMLP_OK;
    return smlp_cuda_memset(ctx, g->data, 0,
                            (size_t)smlp_tensor_numel(g) * sizeof(float),
                            "memset");
}

/* ---- block reductions (device code) ------------------------------------- */

/*
 * The sum (or the maximum) of v over the B threads of the block, by the
 * same fixed tree every time, so the result does not depend on timing;
 * every thread gets it.  red is the caller's __shared__ double[B].
 */
template <int B>
static __device__ inline double
smlp_cuda_block_sum(double v, double *red)
{
    int t = threadIdx.x, s;
    double total;

    red[t] = v;
    __syncthreads();
    for (s = B / 2; s > 0; s /= 2) {
        if (t < s)
            red[t] += red[t + s];
        __syncthreads();
    }
    total = red[0];
    __syncthreads(); /* red is reused by the next call */
    return total;
}

template <int B>
static __device__ inline double
smlp_cuda_block_max(double v, double *red)
{
    int t = threadIdx.x, s;
    double top;

    red[t] = v;
    __syncthreads();
    for (s = B / 2; s > 0; s /= 2) {
        if (t < s && red[t + s] > red[t])
            red[t] = red[t + s];
        __syncthreads();
    }
    top = red[0];
    __syncthreads();
    return top;
}

/* ---- attributes and inputs ---------------------------------------------- */

/* Attribute `name` of the node, or def when absent (or of another type:
 * infer() has rejected that already). */
template <class Ctx>
static inline int64_t
smlp_cuda_attr_int(const Ctx *ctx, const char *name,
                   int64_t def)
{
    int64_t v;

    return ctx->host->attr_int(ctx->node, name, &v) == SMLP_OK ? v : def;
}

template <class Ctx>
static inline double
smlp_cuda_attr_float(const Ctx *ctx, const char *name,
                     double def)
{
    double v;

    return ctx->host->attr_float(ctx->node, name, &v) == SMLP_OK ? v : def;
}

/* The string is owned by the host and lives as long as the node. */
template <class Ctx>
static inline const char *
smlp_cuda_attr_string(const Ctx *ctx, const char *name,
                      const char *def)
{
    const char *v;

    return ctx->host->attr_string(ctx->node, name, &v) == SMLP_OK ? v : def;
}

/* Input i, or NULL when the node has fewer inputs or it is absent. */
template <class Ctx>
static inline const struct smlp_tensor *
smlp_cuda_input(const Ctx *ctx, int i)
{
    return i < ctx->n_inputs ? ctx->inputs[i] : NULL;
}

/* ---- cuBLAS ------------------------------------------------------------- */

#define SMLP_CUBLAS_SONAME "libcublas.so." SMLP_STR(CUBLAS_VER_MAJOR)

/* The few cuBLAS entry points used, typed from the header. */
struct smlp_cublas_api {
    decltype(&cublasCreate_v2) create;
    decltype(&cublasDestroy_v2) destroy;
    decltype(&cublasSetStream_v2) set_stream;
    decltype(&cublasSetMathMode) set_math_mode;
    decltype(&cublasSgemm_v2) sgemm;
    decltype(&cublasSgemmStridedBatched) sgemm_strided_batched;
    decltype(&cublasGetStatusString) status_string;
};

struct smlp_cublas_slot {
    cudaStream_t stream;
    cublasHandle_t handle;
    uint64_t used;
};

struct smlp_cublas_cache {
    void *lib; /* NULL until opened */
    struct smlp_cublas_api api;
    struct smlp_cublas_slot slots[SMLP_CUDA_BLAS_SLOTS];
    int n_slots;
    uint64_t clock;
    int exit_set;
};

/* This translation unit's cache (zero-initialised)... */
static inline struct smlp_cublas_cache *
smlp_cublas__cache(void)
{
    static struct smlp_cublas_cache c;

    return &c;
}

/* ...and the lock that guards it and every use of its handles. */
static inline pthread_mutex_t *
smlp_cublas__lock(void)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

    return &lock;
}

static inline const char *
smlp_cublas_status(cublasStatus_t rc)
{
    struct smlp_cublas_cache *c = smlp_cublas__cache();

    return c->api.status_string != NULL ? c->api.status_string(rc) : "?";
}

/* Opens cuBLAS once (under the lock); SMLP_OK or a failure named. */
template <class Ctx>
static inline int
smlp_cublas__open(Ctx *ctx, struct smlp_cublas_cache *c)
{
    void *lib;

    if (c->lib != NULL)
        return SMLP_OK;
    lib = dlopen(SMLP_CUBLAS_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL)
        return smlp_cuda_fail(ctx, SMLP_EDEVICE, "cannot load %s: %s",
                                SMLP_CUBLAS_SONAME, dlerror());
#define SMLP_CUBLAS_SYM_(field, name)                                        \
    if ((*(void **)&c->api.field = dlsym(lib, name)) == NULL) {              \
        dlclose(lib);                                                        \
        return smlp_cuda_fail(ctx, SMLP_EDEVICE, "%s has no %s",           \
                                SMLP_CUBLAS_SONAME, name);                   \
    }
    SMLP_CUBLAS_SYM_(create, "cublasCreate_v2");
    SMLP_CUBLAS_SYM_(destroy, "cublasDestroy_v2");
    SMLP_CUBLAS_SYM_(set_stream, "cublasSetStream_v2");
    SMLP_CUBLAS_SYM_(set_math_mode, "cublasSetMathMode");
    SMLP_CUBLAS_SYM_(sgemm, "cublasSgemm_v2");
    SMLP_CUBLAS_SYM_(sgemm_strided_batched, "cublasSgemmStridedBatched");
    SMLP_CUBLAS_SYM_(status_string, "cublasGetStatusString");
#undef SMLP_CUBLAS_SYM_
    c->lib = lib;
    return SMLP_OK;
}

/*
 * Destroys the handles (their GPU workspaces) when the plugin is closed
 * or the process exits.  Registered with atexit() after the CUDA runtime
 * started, so at exit it runs before the runtime's own teardown; glibc
 * also runs it at dlclose of the plugin, whichever comes first.
 */
static inline void
smlp_cublas__shutdown(void)
{
    struct smlp_cublas_cache *c = smlp_cublas__cache();
    int i;

    pthread_mutex_lock(smlp_cublas__lock());
    for (i = 0; i < c->n_slots; i++) {
        c->api.set_stream(c->slots[i].handle, NULL); /* may be gone */
        c->api.destroy(c->slots[i].handle);
    }
    c->n_slots = 0;
    pthread_mutex_unlock(smlp_cublas__lock());
}

/*
 * Takes the cache's lock and returns, in *h, the handle of ctx's stream,
 * bound to it, and in *api the entry points.  On SMLP_OK the caller
 * enqueues its calls and then calls smlp_cublas_release(); on failure
 * (described with errorf) the lock is not held.
 */
template <class Ctx>
static inline int
smlp_cublas_acquire(Ctx *ctx, cublasHandle_t *h,
                    const struct smlp_cublas_api **api)
{
    struct smlp_cublas_cache *c = smlp_cublas__cache();
    cudaStream_t st = smlp_cuda_stream(ctx);
    struct smlp_cublas_slot *slot = NULL;
    cublasStatus_t rc;
    int i;

    pthread_mutex_lock(smlp_cublas__lock());
    if ((i = smlp_cublas__open(ctx, c)) != SMLP_OK) {
        pthread_mutex_unlock(smlp_cublas__lock());
        return i;
    }
    for (i = 0; i < c->n_slots; i++)
        if (c->slots[i].stream == st)
            slot = &c->slots[i];
    if (slot == NULL && c->n_slots < SMLP_CUDA_BLAS_SLOTS) {
        cublasHandle_t nh;

        rc = c->api.create(&nh);
        if (rc != CUBLAS_STATUS_SUCCESS) {
            pthread_mutex_unlock(smlp_cublas__lock());
            return smlp_cuda_fail(ctx, SMLP_EDEVICE,
                                    "cuBLAS: cannot create a handle: %s",
                                    smlp_cublas_status(rc));
        }
        /* Default math: true FP32 products, no TF32 tensor-core path. */
        c->api.set_math_mode(nh, CUBLAS_DEFAULT_MATH);
        if (!c->exit_set) {
            atexit(smlp_cublas__shutdown);
            c->exit_set = 1;
        }
        slot = &c->slots[c->n_slots++];
        slot->handle = nh;
        slot->stream = NULL;
    }
    if (slot == NULL) { /* full: rebind the least recently used */
        slot = &c->slots[0];
        for (i = 1; i < c->n_slots; i++)
            if (c->slots[i].used < slot->used)
                slot = &c->slots[i];
    }
    rc = c->api.set_stream(slot->handle, st);
    if (rc != CUBLAS_STATUS_SUCCESS) {
        pthread_mutex_unlock(smlp_cublas__lock());
        return smlp_cuda_fail(ctx, SMLP_EDEVICE,
                                "cuBLAS: cannot bind the stream: %s",
                                smlp_cublas_status(rc));
    }
    slot->stream = st;
    slot->used = ++c->clock;
    *h = slot->handle;
    *api = &c->api;
    return SMLP_OK;
}

/* Drops the lock; turns the status of the calls made into ours. */
template <class Ctx>
static inline int
smlp_cublas_release(Ctx *ctx, cublasStatus_t rc,
                    const char *what)
{
    pthread_mutex_unlock(smlp_cublas__lock());
    if (rc == CUBLAS_STATUS_SUCCESS)
        return SMLP_OK;
    return smlp_cuda_fail(ctx, SMLP_EDEVICE, "cuBLAS %s: %s", what,
                            smlp_cublas_status(rc));
}

/*
 * Row-major Y[rows, out] = X[rows, in] · W[out, in]ᵀ on ctx's stream (the
 * shape of a linear layer).  cuBLAS is column-major, so this is
 * Yᵀ = W·Xᵀ there: sgemm(T, N, out, rows, in, W, in, X, in, Y, out).
 * in == 0 gives zeros.  Sizes must fit an int (infer() checks them).
 */
template <class Ctx>
static inline int
smlp_cuda_sgemm_xwt(Ctx *ctx, const float *x,
                    const float *w, float *y, int64_t rows, int64_t in,
                    int64_t out)
{
    const float one = 1.0f, zero = 0.0f;
    const struct smlp_cublas_api *api = NULL;
    cublasHandle_t h = NULL;
    cublasStatus_t rc;
    int st;

    if (rows == 0 || out == 0)
        return SMLP_OK;
    if (in == 0)
        return smlp_cuda_memset(ctx, y, 0,
                                (size_t)(rows * out) * sizeof(float),
                                "memset");
    if ((st = smlp_cublas_acquire(ctx, &h, &api)) != SMLP_OK)
        return st;
    rc = api->sgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)out, (int)rows,
                    (int)in, &one, w, (int)in, x, (int)in, &zero, y,
                    (int)out);
    return smlp_cublas_release(ctx, rc, "sgemm");
}

/*
 * The same for `batch` independent products: Y_b = X_b · W_bᵀ with
 * X_b = x + b·sx, W_b = w + b·sw, Y_b = y + b·sy (strides in elements;
 * sw = 0 shares W), one cublasSgemmStridedBatched.
 */
template <class Ctx>
static inline int
smlp_cuda_sgemm_xwt_batched(Ctx *ctx, const float *x,
                            int64_t sx, const float *w, int64_t sw, float *y,
                            int64_t sy, int64_t rows, int64_t in,
                            int64_t out, int64_t batch)
{
    const float one = 1.0f, zero = 0.0f;
    const struct smlp_cublas_api *api = NULL;
    cublasHandle_t h = NULL;
    cublasStatus_t rc;
    int st;

    if (rows == 0 || out == 0 || batch == 0)
        return SMLP_OK;
    if (in == 0) {
        if (sy != rows * out)
            return smlp_cuda_fail(ctx, SMLP_EINVAL,
                                    "sgemm with in = 0 needs packed "
                                    "outputs");
        return smlp_cuda_memset(ctx, y, 0,
                                (size_t)(batch * rows * out) * sizeof(float),
                                "memset");
    }
    if ((st = smlp_cublas_acquire(ctx, &h, &api)) != SMLP_OK)
        return st;
    rc = api->sgemm_strided_batched(
        h, CUBLAS_OP_T, CUBLAS_OP_N, (int)out, (int)rows, (int)in, &one, w,
        (int)in, (long long)sw, x, (int)in, (long long)sx, &zero, y,
        (int)out, (long long)sy, (int)batch);
    return smlp_cublas_release(ctx, rc, "sgemm (strided batched)");
}

/*
 * Row-major products on ctx's stream, the general form:
 *   C_i[m,n] = op(A_i)[m,k]·op(B_i)[k,n] + beta·C_i,  i < batch,
 * op = transpose when ta / tb; lda, ldb, ldc are the stored rows'
 * lengths and sa, sb, sc the strides between batch members (0: shared).
 * Column-major cuBLAS computes Cᵀ = op(B)ᵀ·op(A)ᵀ, a row-major matrix
 * read column-major being its transpose.  k == 0 is left to the caller.
 */
template <class Ctx>
static inline int
smlp_cuda_sgemm(Ctx *ctx, int ta, int tb, int64_t m, int64_t n, int64_t k,
                const float *a, int64_t lda, int64_t sa, const float *b,
                int64_t ldb, int64_t sb, float beta, float *c, int64_t ldc,
                int64_t sc, int64_t batch)
{
    const float one = 1.0f;
    const struct smlp_cublas_api *api = NULL;
    cublasHandle_t h = NULL;
    cublasStatus_t rc;
    int st;

    if (m * n * batch == 0)
        return SMLP_OK;
    if ((st = smlp_cublas_acquire(ctx, &h, &api)) != SMLP_OK)
        return st;
    if (batch == 1)
        rc = api->sgemm(h, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                        ta ? CUBLAS_OP_T : CUBLAS_OP_N, (int)n, (int)m,
                        (int)k, &one, b, (int)ldb, a, (int)lda, &beta, c,
                        (int)ldc);
    else
        rc = api->sgemm_strided_batched(
            h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
            (int)n, (int)m, (int)k, &one, b, (int)ldb, (long long)sb, a,
            (int)lda, (long long)sa, &beta, c, (int)ldc, (long long)sc,
            (int)batch);
    return smlp_cublas_release(
        ctx, rc, batch == 1 ? "sgemm" : "sgemm (strided batched)");
}

#endif /* SMLP_CUDA_H */
