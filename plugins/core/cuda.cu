/*
 * cuda.cu - CUDA kernels of the `core` plugin (forward, f32 and i32); the
 * transpose and im2col launchers are shared with cuda_bwd.cu (the
 * backwards) through cuda_core.h.
 *
 * One kernel definition per op, listed after the CPU one in the op's
 * kernel table (core.h, SMLP__CORE_CUDA).  The runtime calls run() on its
 * loop thread with device pointers in every tensor and workspace and the
 * session's stream in ctx->stream; run() only enqueues work on that stream
 * (no synchronisation) and returns SMLP_OK, or a status after
 * host->errorf when an enqueue fails.  Shapes were checked by the CPU
 * op's infer(); attributes are read again here from the node (ctx->priv
 * belongs to the CPU file that wrote it), with the same defaults.
 *
 * Products go through cuBLAS in its default FP32 math mode: no TF32, so
 * results stay within float rounding of the CPU's (set
 * NVIDIA_TF32_OVERRIDE=0 if a site enables TF32 globally).  Row-major
 * tensors are handed to column-major cuBLAS as their transposes:
 * Y = A·B (row-major) is Yᵀ = Bᵀ·Aᵀ (column-major), so every call below
 * swaps its operands.  Reductions run in a fixed order (a thread per
 * output summing in index order in double, or a fixed-shape tree), so a
 * result does not depend on timing.
 *
 * cuBLAS (loaded on first use, see blas_open) handles: one per stream,
 * created on first use and kept until the plugin is closed (at most
 * BLAS_SLOTS; beyond that the least recently used one is rebound).  A
 * handle is used only under blas_lock, so two sessions running on two
 * threads never share one at the same time.
 */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_core.h"
#include "smlp_cuda.h"

#define BLOCK 256
#define TILE 32
#define BLAS_SLOTS 16

/* ---- helpers ------------------------------------------------------------ */

/* Blocks for a grid-stride loop over n items. */
static unsigned
grid_for(int64_t n)
{
    int64_t b = (n + BLOCK - 1) / BLOCK;

    if (b < 1)
        b = 1;
    if (b > (1 << 20))
        b = 1 << 20;
    return (unsigned)b;
}

static cudaStream_t
stream_of(const struct smlp_kernel_ctx *ctx)
{
    return (cudaStream_t)ctx->stream;
}

/* Checks the launches just made; a failure names the op's kernel. */
static int
launched(struct smlp_kernel_ctx *ctx, const char *what)
{
    return smlp_cuda_launched(ctx, what);
}

static int64_t
attr_int(const struct smlp_kernel_ctx *ctx, const char *name, int64_t def)
{
    int64_t v;

    return ctx->host->attr_int(ctx->node, name, &v) == SMLP_OK ? v : def;
}

static double
attr_float(const struct smlp_kernel_ctx *ctx, const char *name, double def)
{
    double v;

    return ctx->host->attr_float(ctx->node, name, &v) == SMLP_OK ? v : def;
}

static const struct smlp_tensor *
input(const struct smlp_kernel_ctx *ctx, int i)
{
    return i < ctx->n_inputs ? ctx->inputs[i] : NULL;
}

/* ---- cuBLAS ------------------------------------------------------------- */

/*
 * cuBLAS is opened with dlopen on the first product, not linked: it is
 * large (libcublasLt alone is over 500 MB) and linking it would cost every
 * process that loads this plugin, GPU or not, ~0.1 s of start-up.  The
 * table holds the few entry points used, typed from the header.
 */
#define BLAS_SONAME "libcublas.so." SMLP_STR(CUBLAS_VER_MAJOR)

struct blas_api {
    decltype(&cublasCreate_v2) create;
    decltype(&cublasSetStream_v2) set_stream;
    decltype(&cublasSetMathMode) set_math_mode;
    decltype(&cublasSgemm_v2) sgemm;
    decltype(&cublasSgemmStridedBatched) sgemm_strided_batched;
    decltype(&cublasGetStatusString) status_string;
};

struct blas_slot {
    cudaStream_t stream;
    cublasHandle_t handle;
    uint64_t used;
};

static pthread_mutex_t blas_lock = PTHREAD_MUTEX_INITIALIZER;
static struct blas_api blas;
static void *blas_lib;
static struct blas_slot blas_slots[BLAS_SLOTS];
static int n_blas_slots;
static uint64_t blas_clock;
static int blas_exit_set;

static const char *
blas_status(cublasStatus_t rc)
{
    return blas.status_string != NULL ? blas.status_string(rc) : "?";
}

/* Opens cuBLAS once (under blas_lock); SMLP_OK or a failure named. */
static int
blas_open(const struct smlp__cu_call *c)
{
    void *lib;

    if (blas_lib != NULL)
        return SMLP_OK;
    lib = dlopen(BLAS_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL)
        return smlp_cuda_fail(c, SMLP_EDEVICE, "cannot load %s: %s",
                              BLAS_SONAME, dlerror());
#define BLAS_SYM(field, name)                                                \
    if ((*(void **)&blas.field = dlsym(lib, name)) == NULL) {                \
        dlclose(lib);                                                        \
        return smlp_cuda_fail(c, SMLP_EDEVICE, "%s has no %s", BLAS_SONAME,  \
                              name);                                         \
    }
    BLAS_SYM(create, "cublasCreate_v2");
    BLAS_SYM(set_stream, "cublasSetStream_v2");
    BLAS_SYM(set_math_mode, "cublasSetMathMode");
    BLAS_SYM(sgemm, "cublasSgemm_v2");
    BLAS_SYM(sgemm_strided_batched, "cublasSgemmStridedBatched");
    BLAS_SYM(status_string, "cublasGetStatusString");
#undef BLAS_SYM
    blas_lib = lib;
    return SMLP_OK;
}

/*
 * Destroys the handles (their GPU workspaces) when this plugin is closed
 * or the process exits.  Registered with atexit() after the CUDA runtime
 * started, so at exit it runs before the runtime's own teardown; glibc
 * also runs it at dlclose of this plugin, whichever comes first.
 */
static void
blas_shutdown(void)
{
    decltype(&cublasDestroy_v2) destroy;
    int i;

    pthread_mutex_lock(&blas_lock);
    *(void **)&destroy = dlsym(blas_lib, "cublasDestroy_v2");
    for (i = 0; i < n_blas_slots; i++) {
        blas.set_stream(blas_slots[i].handle, NULL); /* its stream may be
                                                        gone */
        if (destroy != NULL)
            destroy(blas_slots[i].handle);
    }
    n_blas_slots = 0;
    pthread_mutex_unlock(&blas_lock);
}

/*
 * Takes blas_lock and returns, in *h, the handle of c's stream, bound to
 * it.  On SMLP_OK the caller enqueues its calls and then calls
 * blas_release(); on failure the lock is not held.
 */
static int
blas_acquire(const struct smlp__cu_call *c, cublasHandle_t *h)
{
    cudaStream_t st = c->stream;
    struct blas_slot *slot = NULL;
    cublasStatus_t rc;
    int i;

    pthread_mutex_lock(&blas_lock);
    if ((i = blas_open(c)) != SMLP_OK) {
        pthread_mutex_unlock(&blas_lock);
        return i;
    }
    for (i = 0; i < n_blas_slots; i++)
        if (blas_slots[i].stream == st)
            slot = &blas_slots[i];
    if (slot == NULL && n_blas_slots < BLAS_SLOTS) {
        cublasHandle_t nh;

        rc = blas.create(&nh);
        if (rc != CUBLAS_STATUS_SUCCESS) {
            pthread_mutex_unlock(&blas_lock);
            return smlp_cuda_fail(c, SMLP_EDEVICE,
                                  "cuBLAS: cannot create a handle: %s",
                                  blas_status(rc));
        }
        /* Default math: true FP32 products, no TF32 tensor-core path. */
        blas.set_math_mode(nh, CUBLAS_DEFAULT_MATH);
        if (n_blas_slots == 0 && !blas_exit_set) {
            atexit(blas_shutdown);
            blas_exit_set = 1;
        }
        slot = &blas_slots[n_blas_slots++];
        slot->handle = nh;
        slot->stream = NULL;
    }
    if (slot == NULL) { /* full: rebind the least recently used */
        slot = &blas_slots[0];
        for (i = 1; i < n_blas_slots; i++)
            if (blas_slots[i].used < slot->used)
                slot = &blas_slots[i];
    }
    rc = blas.set_stream(slot->handle, st);
    if (rc != CUBLAS_STATUS_SUCCESS) {
        pthread_mutex_unlock(&blas_lock);
        return smlp_cuda_fail(c, SMLP_EDEVICE,
                              "cuBLAS: cannot bind the stream: %s",
                              blas_status(rc));
    }
    slot->stream = st;
    slot->used = ++blas_clock;
    *h = slot->handle;
    return SMLP_OK;
}

static int
blas_release(const struct smlp__cu_call *c, cublasStatus_t rc,
             const char *what)
{
    pthread_mutex_unlock(&blas_lock);
    if (rc == CUBLAS_STATUS_SUCCESS)
        return SMLP_OK;
    return smlp_cuda_fail(c, SMLP_EDEVICE, "cuBLAS %s: %s", what,
                          blas_status(rc));
}

/*
 * Row-major Y[rows, out] = X[rows, in] · W[out, in]ᵀ (+ nothing): the
 * shape of linear along the last axis and of patch_embed's product.
 */
static int
gemm_xwt(struct smlp_kernel_ctx *ctx, const float *x, const float *w,
         float *y, int64_t rows, int64_t in, int64_t out)
{
    struct smlp__cu_call c = smlp__cu_of(ctx);
    const float one = 1.0f, zero = 0.0f;
    cublasHandle_t h;
    cublasStatus_t rc;
    int st;

    if ((st = blas_acquire(&c, &h)) != SMLP_OK)
        return st;
    rc = blas.sgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)out, (int)rows,
                     (int)in, &one, w, (int)in, x, (int)in, &zero, y,
                     (int)out);
    return blas_release(&c, rc, "sgemm");
}

/* ---- shared kernels ----------------------------------------------------- */

/* y[i] += b[(i / inner) % out] over n elements. */
__global__ void
k_bias(float *y, const float *b, int64_t n, int64_t out, int64_t inner)
{
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;

    for (; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] += b[(i / inner) % out];
}

static int
add_bias(struct smlp_kernel_ctx *ctx, float *y, const float *b, int64_t n,
         int64_t out, int64_t inner)
{
    k_bias<<<grid_for(n), BLOCK, 0, stream_of(ctx)>>>(y, b, n, out, inner);
    return launched(ctx, "bias");
}

/* ---- core.linear -------------------------------------------------------- */

static int
linear_run(struct smlp_kernel_ctx *ctx)
{
    const struct smlp_tensor *x = ctx->inputs[0], *w = ctx->inputs[1];
    const struct smlp_tensor *b = input(ctx, 2);
    float *y = (float *)ctx->outputs[0]->data;
    int64_t axis = attr_int(ctx, "axis", -1), outer = 1, inner = 1;
    int64_t in = w->shape[1], out = w->shape[0];
    struct smlp__cu_call c = smlp__cu_of(ctx);
    const float one = 1.0f, zero = 0.0f;
    cublasHandle_t h;
    cublasStatus_t rc;
    int d, st;

    if (axis < 0)
        axis += x->rank;
    for (d = 0; d < axis; d++)
        outer *= x->shape[d];
    for (d = (int)axis + 1; d < x->rank; d++)
        inner *= x->shape[d];
    if (outer * inner * out == 0)
        return SMLP_OK;
    if (in == 0) {
        if (cudaMemsetAsync(y, 0, (size_t)(outer * inner * out) * 4,
                            stream_of(ctx)) != cudaSuccess)
            return launched(ctx, "memset");
    } else if (inner == 1) {
        if ((st = gemm_xwt(ctx, (const float *)x->data,
                           (const float *)w->data, y, outer, in, out)) !=
            SMLP_OK)
            return st;
    } else {
        /* Per outer index o: Y_o[out, inner] = W[out, in]·X_o[in, inner],
         * i.e. column-major Y_oᵀ = X_oᵀ·Wᵀ, W shared (stride 0). */
        if ((st = blas_acquire(&c, &h)) != SMLP_OK)
            return st;
        rc = blas.sgemm_strided_batched(
            h, CUBLAS_OP_N, CUBLAS_OP_N, (int)inner, (int)out, (int)in, &one,
            (const float *)x->data, (int)inner, in * inner,
            (const float *)w->data, (int)in, 0, &zero, y, (int)inner,
            out * inner, (int)outer);
        if ((st = blas_release(&c, rc, "sgemm (strided batched)")) !=
            SMLP_OK)
            return st;
    }
    if (b == NULL)
        return SMLP_OK;
    return add_bias(ctx, y, (const float *)b->data, outer * out * inner, out,
                    inner);
}

/* ---- elementwise -------------------------------------------------------- */

__global__ void
k_gelu_erf(const float *x, float *y, int64_t n)
{
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;

    for (; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float v = x[i];
        y[i] = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    }
}

__global__ void
k_gelu_tanh(const float *x, float *y, int64_t n)
{
    const float k = 0.79788456080286536f; /* sqrt(2/pi) */
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;

    for (; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float v = x[i];
        y[i] = 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
    }
}

__global__ void
k_relu(const float *x, float *y, int64_t n)
{
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;

    for (; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = x[i] < 0.0f ? 0.0f : x[i]; /* a NaN stays */
}

__global__ void
k_add(const float *a, const float *b, float *y, int64_t n)
{
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;

    for (; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = a[i] + b[i];
}

__global__ void
k_scale(const float *x, float *y, float alpha, int64_t n)
{
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;

    for (; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = alpha * x[i];
}

static int
gelu_run(struct smlp_kernel_ctx *ctx)
{
    const float *x = (const float *)ctx->inputs[0]->data;
    float *y = (float *)ctx->outputs[0]->data;
    int64_t n = smlp_tensor_numel(ctx->inputs[0]);
    const char *approx = "none";

    if (n == 0)
        return SMLP_OK;
    if (ctx->host->attr_string(ctx->node, "approximate", &approx) !=
        SMLP_OK)
        approx = "none";
    if (strcmp(approx, "tanh") == 0)
        k_gelu_tanh<<<grid_for(n), BLOCK, 0, stream_of(ctx)>>>(x, y, n);
    else
        k_gelu_erf<<<grid_for(n), BLOCK, 0, stream_of(ctx)>>>(x, y, n);
    return launched(ctx, "gelu");
}

static int
relu_run(struct smlp_kernel_ctx *ctx)
{
    int64_t n = smlp_tensor_numel(ctx->inputs[0]);

    if (n == 0)
        return SMLP_OK;
    k_relu<<<grid_for(n), BLOCK, 0, stream_of(ctx)>>>(
        (const float *)ctx->inputs[0]->data, (float *)ctx->outputs[0]->data,
        n);
    return launched(ctx, "relu");
}

static int
add_run(struct smlp_kernel_ctx *ctx)
{
    int64_t n = smlp_tensor_numel(ctx->inputs[0]);

    if (n == 0)
        return SMLP_OK;
    k_add<<<grid_for(n), BLOCK, 0, stream_of(ctx)>>>(
        (const float *)ctx->inputs[0]->data,
        (const float *)ctx->inputs[1]->data, (float *)ctx->outputs[0]->data,
        n);
    return launched(ctx, "add");
}

static int
scale_run(struct smlp_kernel_ctx *ctx)
{
    int64_t n = smlp_tensor_numel(ctx->inputs[0]);
    float alpha = (float)attr_float(ctx, "alpha", 0.0);

    if (n == 0)
        return SMLP_OK;
    k_scale<<<grid_for(n), BLOCK, 0, stream_of(ctx)>>>(
        (const float *)ctx->inputs[0]->data, (float *)ctx->outputs[0]->data,
        alpha, n);
    return launched(ctx, "scale");
}

/* ---- core.transpose and core.reshape ------------------------------------ */

/* Output dims (after dropping 1s and merging) with their input strides. */
struct tp_desc {
    int m;
    int64_t size[SMLP_MAX_RANK];
    int64_t stride[SMLP_MAX_RANK];
};

/* Any permutation: each thread finds its element's input offset. */
__global__ void
k_transpose(const uint32_t *src, uint32_t *dst, int64_t total,
            struct tp_desc d)
{
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;

    for (; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t rem = i, off = 0;
        int k;

        for (k = d.m - 1; k >= 0; k--) {
            int64_t q = rem / d.size[k];
            off += (rem - q * d.size[k]) * d.stride[k];
            rem = q;
        }
        dst[i] = src[off];
    }
}

/*
 * The common case: the last two output dims are n0 (input stride 1) and
 * n1 (input stride s1), i.e. a batch of 2-D transposes, done through a
 * shared-memory tile so that reads and writes are both coalesced.  The
 * leading dims (d.m - 2 of them) are walked by blockIdx.z.
 */
__global__ void
k_transpose_tiled(const uint32_t *src, uint32_t *dst, int64_t n0,
                  int64_t n1, int64_t s1, int64_t batches, struct tp_desc d)
{
    __shared__ uint32_t tile[TILE][TILE + 1];
    int64_t b0 = (int64_t)blockIdx.y * TILE, b1 = (int64_t)blockIdx.x * TILE;
    int tx = threadIdx.x, ty = threadIdx.y, j;
    int64_t bt;

    for (bt = blockIdx.z; bt < batches; bt += gridDim.z) {
        int64_t rem = bt, off = 0;
        int k;

        for (k = d.m - 3; k >= 0; k--) {
            int64_t q = rem / d.size[k];
            off += (rem - q * d.size[k]) * d.stride[k];
            rem = q;
        }
        for (j = ty; j < TILE; j += blockDim.y) {
            int64_t i0 = b0 + tx, i1 = b1 + j;
            if (i0 < n0 && i1 < n1)
                tile[j][tx] = src[off + i0 + i1 * s1];
        }
        __syncthreads();
        for (j = ty; j < TILE; j += blockDim.y) {
            int64_t i0 = b0 + j, i1 = b1 + tx;
            if (i0 < n0 && i1 < n1)
                dst[(bt * n0 + i0) * n1 + i1] = tile[tx][j];
        }
        __syncthreads();
    }
}

int
smlp__cu_transpose(const struct smlp__cu_call *c, void *dstv,
                   const void *srcv, int rank, const int64_t *shape,
                   const int64_t *perm)
{
    const uint32_t *src = (const uint32_t *)srcv;
    uint32_t *dst = (uint32_t *)dstv;
    int64_t istride[SMLP_MAX_RANK], total = 1;
    struct tp_desc desc;
    int d;

    for (d = 0; d < rank; d++)
        total *= shape[d];
    if (total == 0)
        return SMLP_OK;
    istride[rank > 0 ? rank - 1 : 0] = 1;
    for (d = rank - 2; d >= 0; d--)
        istride[d] = istride[d + 1] * shape[d + 1];
    /* As the CPU kernel: drop 1s, merge dims contiguous in the input. */
    memset(&desc, 0, sizeof(desc));
    for (d = 0; d < rank; d++) {
        int64_t n = shape[perm[d]], s = istride[perm[d]];

        if (n == 1)
            continue;
        if (desc.m > 0 && desc.stride[desc.m - 1] == n * s) {
            desc.size[desc.m - 1] *= n;
            desc.stride[desc.m - 1] = s;
        } else {
            desc.size[desc.m] = n;
            desc.stride[desc.m] = s;
            desc.m++;
        }
    }
    if (desc.m >= 2 && desc.stride[desc.m - 2] == 1 &&
        desc.stride[desc.m - 1] != 1 &&
        (desc.size[desc.m - 2] + TILE - 1) / TILE <= 65535) {
        int64_t n0 = desc.size[desc.m - 2], n1 = desc.size[desc.m - 1];
        int64_t batches = total / (n0 * n1);
        dim3 grid((unsigned)((n1 + TILE - 1) / TILE),
                  (unsigned)((n0 + TILE - 1) / TILE),
                  (unsigned)(batches < 65535 ? batches : 65535));

        k_transpose_tiled<<<grid, dim3(TILE, 8), 0, c->stream>>>(
            src, dst, n0, n1, desc.stride[desc.m - 1], batches, desc);
    } else {
        if (desc.m == 0) { /* every dim is 1 */
            desc.m = 1;
            desc.size[0] = 1;
            desc.stride[0] = 1;
        }
        k_transpose<<<grid_for(total), BLOCK, 0, c->stream>>>(src, dst,
                                                             total, desc);
    }
    return smlp_cuda_launched(c, "transpose");
}

static int
transpose_run(struct smlp_kernel_ctx *ctx)
{
    const struct smlp_tensor *x = ctx->inputs[0];
    struct smlp__cu_call c = smlp__cu_of(ctx);
    const int64_t *perm;
    size_t np = 0;

    if (smlp_tensor_numel(x) == 0)
        return SMLP_OK;
    if (ctx->host->attr_ints(ctx->node, "perm", &perm, &np) != SMLP_OK ||
        np != (size_t)x->rank)
        return smlp_kernel_fail(ctx, SMLP_EINVAL,
                                "attribute 'perm' is missing");
    return smlp__cu_transpose(&c, ctx->outputs[0]->data, x->data, x->rank,
                              x->shape, perm);
}

/* Runs only when the runtime does not alias (reshape of a parameter). */
static int
reshape_run(struct smlp_kernel_ctx *ctx)
{
    const struct smlp_tensor *x = ctx->inputs[0];

    if (ctx->outputs[0]->data == x->data || smlp_tensor_numel(x) == 0)
        return SMLP_OK;
    if (cudaMemcpyAsync(ctx->outputs[0]->data, x->data,
                        (size_t)smlp_tensor_numel(x) * 4,
                        cudaMemcpyDeviceToDevice,
                        stream_of(ctx)) != cudaSuccess)
        return launched(ctx, "copy");
    return SMLP_OK;
}

/* ---- reductions --------------------------------------------------------- */

/* y[o, i] = mean over k of x[o, k, i]: one thread per output, summing in
 * k order in double like the CPU kernel. */
__global__ void
k_mean(const float *x, float *y, int64_t outer, int64_t len, int64_t inner)
{
    int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;

    for (; idx < outer * inner; idx += (int64_t)gridDim.x * blockDim.x) {
        int64_t o = idx / inner, i = idx - o * inner, k;
        const float *xo = x + o * len * inner + i;
        double sum = 0.0;

        for (k = 0; k < len; k++)
            sum += xo[k * inner];
        y[idx] = (float)(sum / (double)len);
    }
}

static int
mean_run(struct smlp_kernel_ctx *ctx)
{
    const struct smlp_tensor *x = ctx->inputs[0];
    int64_t axis = attr_int(ctx, "axis", 0), outer = 1, inner = 1, len;
    int d;

    if (axis < 0)
        axis += x->rank;
    for (d = 0; d < axis; d++)
        outer *= x->shape[d];
    for (d = (int)axis + 1; d < x->rank; d++)
        inner *= x->shape[d];
    len = x->shape[axis];
    if (outer * inner == 0)
        return SMLP_OK;
    k_mean<<<grid_for(outer * inner), BLOCK, 0, stream_of(ctx)>>>(
        (const float *)x->data, (float *)ctx->outputs[0]->data, outer, len,
        inner);
    return launched(ctx, "mean");
}

/* One thread per row; ties go to the lowest index, a NaN wins. */
__global__ void
k_argmax(const float *x, int32_t *y, int64_t n, int64_t k)
{
    int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;

    for (; r < n; r += (int64_t)gridDim.x * blockDim.x) {
        const float *row = x + r * k;
        int64_t best = 0, j;

        for (j = 1; j < k && !isnan(row[best]); j++)
            if (row[j] > row[best] || isnan(row[j]))
                best = j;
        y[r] = (int32_t)best;
    }
}

static int
argmax_run(struct smlp_kernel_ctx *ctx)
{
    const struct smlp_tensor *x = ctx->inputs[0];
    int64_t n = x->shape[0];

    if (n == 0)
        return SMLP_OK;
    k_argmax<<<grid_for(n), BLOCK, 0, stream_of(ctx)>>>(
        (const float *)x->data, (int32_t *)ctx->outputs[0]->data, n,
        x->shape[1]);
    return launched(ctx, "argmax");
}

/*
 * One block: thread t takes rows t, t + BLOCK, ... (each row as the CPU
 * kernel, in double), then a fixed tree sums the partial losses.  A label
 * out of [0, K) makes the loss NaN (the CPU kernel fails the node
 * instead; the GPU cannot report it without a synchronisation).
 */
__global__ void
k_sce(const float *logits, const int32_t *labels, float *out, int64_t n,
      int64_t k, double eps)
{
    __shared__ double part[BLOCK];
    int t = threadIdx.x, s;
    double acc = 0.0;
    int64_t r, j;

    for (r = t; r < n; r += BLOCK) {
        const float *row = logits + r * k;
        double max = row[0], sum = 0.0, xsum = 0.0, lse;
        int32_t lab = labels[r];

        if (lab < 0 || lab >= k) {
            acc = nan("");
            continue;
        }
        for (j = 1; j < k; j++)
            if (row[j] > max)
                max = row[j];
        for (j = 0; j < k; j++) {
            sum += exp((double)row[j] - max);
            xsum += row[j];
        }
        lse = max + log(sum);
        acc += (1.0 - eps) * (lse - row[lab]);
        if (eps != 0.0)
            acc += eps * (lse - xsum / (double)k);
    }
    part[t] = acc;
    __syncthreads();
    for (s = BLOCK / 2; s > 0; s /= 2) {
        if (t < s)
            part[t] += part[t + s];
        __syncthreads();
    }
    if (t == 0)
        out[0] = (float)(part[0] / (double)n);
}

static int
sce_run(struct smlp_kernel_ctx *ctx)
{
    const struct smlp_tensor *lt = ctx->inputs[0];

    k_sce<<<1, BLOCK, 0, stream_of(ctx)>>>(
        (const float *)lt->data, (const int32_t *)ctx->inputs[1]->data,
        (float *)ctx->outputs[0]->data, lt->shape[0], lt->shape[1],
        attr_float(ctx, "label_smoothing", 0.0));
    return launched(ctx, "softmax_cross_entropy");
}

/* ---- core.patch_embed --------------------------------------------------- */

/*
 * cols[B·L, Cin·P·P], columns in (cin, ky, kx) order like W's rows, from
 * the image x, or (to_image) the image from cols: patches do not
 * overlap, so each pixel has exactly one element (patch_embed's backward).
 */
__global__ void
k_im2col(float *cols, float *x, int64_t rows, int64_t cin, int64_t h,
         int64_t wid, int64_t p, int to_image)
{
    int64_t kdim = cin * p * p, pw = wid / p, l = (h / p) * pw;
    int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;

    for (; e < rows * kdim; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t row = e / kdim, col = e - row * kdim;
        int64_t i = row / l, li = row - i * l, pr = li / pw, pc = li - pr * pw;
        int64_t ci = col / (p * p), rem = col - ci * p * p;
        int64_t ky = rem / p, kx = rem - ky * p;
        int64_t at = ((i * cin + ci) * h + pr * p + ky) * wid + pc * p + kx;

        if (to_image)
            x[at] = cols[e];
        else
            cols[e] = x[at];
    }
}

int
smlp__cu_im2col(const struct smlp__cu_call *c, float *cols, float *x,
                int64_t rows, int64_t cin, int64_t h, int64_t wid, int64_t p,
                int to_image)
{
    k_im2col<<<grid_for(rows * cin * p * p), BLOCK, 0, c->stream>>>(
        cols, x, rows, cin, h, wid, p, to_image);
    return smlp_cuda_launched(c, to_image ? "col2im" : "im2col");
}

static int
patch_embed_run(struct smlp_kernel_ctx *ctx)
{
    const struct smlp_tensor *img = ctx->inputs[0], *w = ctx->inputs[1];
    const struct smlp_tensor *b = input(ctx, 2);
    float *cols = (float *)ctx->workspace, *y = (float *)ctx->outputs[0]->data;
    int64_t nb = img->shape[0], cin = img->shape[1], h = img->shape[2];
    int64_t wid = img->shape[3], p = attr_int(ctx, "patch", 1);
    int64_t c = w->shape[0], kdim = cin * p * p;
    int64_t rows = nb * (h / p) * (wid / p);
    struct smlp__cu_call cc = smlp__cu_of(ctx);
    int st;

    if (rows * c == 0)
        return SMLP_OK;
    if (kdim == 0) {
        if (cudaMemsetAsync(y, 0, (size_t)(rows * c) * 4, stream_of(ctx)) !=
            cudaSuccess)
            return launched(ctx, "memset");
    } else {
        if (cols == NULL || ctx->workspace_size < (size_t)(rows * kdim) * 4)
            return smlp_kernel_fail(ctx, SMLP_EINVAL,
                                    "workspace of %zu bytes, need %lld",
                                    ctx->workspace_size,
                                    (long long)(rows * kdim * 4));
        if ((st = smlp__cu_im2col(&cc, cols, (float *)img->data, rows, cin,
                                  h, wid, p, 0)) != SMLP_OK ||
            (st = gemm_xwt(ctx, cols, (const float *)w->data, y, rows, kdim,
                           c)) != SMLP_OK)
            return st;
    }
    if (b == NULL)
        return SMLP_OK;
    return add_bias(ctx, y, (const float *)b->data, rows * c, c, 1);
}

/* ---- core.matmul -------------------------------------------------------- */

static int
matmul_run(struct smlp_kernel_ctx *ctx)
{
    const struct smlp_tensor *a = ctx->inputs[0], *b = ctx->inputs[1];
    int ta = attr_int(ctx, "transpose_a", 0) != 0;
    int tb = attr_int(ctx, "transpose_b", 0) != 0;
    int r = a->rank, d, st;
    int64_t m = a->shape[r - 2 + ta], k = a->shape[r - 1 - ta];
    int64_t n = b->shape[r - 1 - tb], batch = 1;
    float *y = (float *)ctx->outputs[0]->data;
    struct smlp__cu_call c = smlp__cu_of(ctx);
    const float one = 1.0f, zero = 0.0f;
    cublasHandle_t h;
    cublasStatus_t rc;

    for (d = 0; d < r - 2; d++)
        batch *= a->shape[d];
    if (batch * m * n == 0)
        return SMLP_OK;
    if (k == 0) {
        if (cudaMemsetAsync(y, 0, (size_t)(batch * m * n) * 4,
                            stream_of(ctx)) != cudaSuccess)
            return launched(ctx, "memset");
        return SMLP_OK;
    }
    /* Column-major Y_iᵀ[n, m] = op(B_i)ᵀ · op(A_i)ᵀ. */
    if ((st = blas_acquire(&c, &h)) != SMLP_OK)
        return st;
    rc = blas.sgemm_strided_batched(
        h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
        (int)n, (int)m, (int)k, &one, (const float *)b->data,
        (int)(tb ? k : n), k * n, (const float *)a->data, (int)(ta ? m : k),
        m * k, &zero, y, (int)n, m * n, (int)batch);
    return blas_release(&c, rc, "sgemm (strided batched)");
}

/* ---- definitions -------------------------------------------------------- */

/* bwd: the backward on the GPU (cuda_bwd.cu; ABI 1.3), NULL for none. */
#define CUDA_KERNEL(var, mask, fn, bwd)                                      \
    const struct smlp_kernel_def var = {                                     \
        sizeof(struct smlp_kernel_def),                                      \
        SMLP_ABI_VERSION,                                                    \
        SMLP_DEVICE_CUDA,                                                    \
        (mask),                                                              \
        NULL,                                                                \
        fn,                                                                  \
        SMLP__CORE_CPU_SCORE,                                                \
        bwd,                                                                 \
    }

extern "C" {
CUDA_KERNEL(smlp__core_linear_cuda, SMLP__MASK_F32, linear_run,
            smlp__core_linear_bwd_cuda);
CUDA_KERNEL(smlp__core_gelu_cuda, SMLP__MASK_F32, gelu_run,
            smlp__core_gelu_bwd_cuda);
CUDA_KERNEL(smlp__core_relu_cuda, SMLP__MASK_F32, relu_run,
            smlp__core_relu_bwd_cuda);
CUDA_KERNEL(smlp__core_add_cuda, SMLP__MASK_F32, add_run,
            smlp__core_add_bwd_cuda);
CUDA_KERNEL(smlp__core_scale_cuda, SMLP__MASK_F32, scale_run,
            smlp__core_scale_bwd_cuda);
CUDA_KERNEL(smlp__core_transpose_cuda, SMLP__MASK_F32 | SMLP__MASK_I32,
            transpose_run, smlp__core_transpose_bwd_cuda);
CUDA_KERNEL(smlp__core_reshape_cuda, SMLP__MASK_F32 | SMLP__MASK_I32,
            reshape_run, smlp__core_reshape_bwd_cuda);
CUDA_KERNEL(smlp__core_mean_cuda, SMLP__MASK_F32, mean_run,
            smlp__core_mean_bwd_cuda);
CUDA_KERNEL(smlp__core_patch_embed_cuda, SMLP__MASK_F32, patch_embed_run,
            smlp__core_patch_embed_bwd_cuda);
CUDA_KERNEL(smlp__core_matmul_cuda, SMLP__MASK_F32, matmul_run,
            smlp__core_matmul_bwd_cuda);
CUDA_KERNEL(smlp__core_sce_cuda, SMLP__MASK_F32 | SMLP__MASK_I32, sce_run,
            smlp__core_sce_bwd_cuda);
CUDA_KERNEL(smlp__core_argmax_cuda, SMLP__MASK_F32, argmax_run, NULL);
}
