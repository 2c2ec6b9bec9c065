/*
 * fakecuda.c - a stand-in for the few CUDA runtime functions that
 * libsmlp's device code calls (runtime/device_cuda.c), so that the
 * runtime's GPU placement, copies, fences and scheduling run and are
 * checked on a machine without a GPU (tests/check_cuda_sched.c).
 *
 * Linked into the test program, these definitions come before
 * libcudart's in symbol lookup, for libsmlp and for plugins alike
 * (-fvisibility=hidden is undone by FAKE_API).  "Device memory" is host
 * memory from malloc, distinct from the host copies, so a missing copy
 * shows as a wrong result.  A stream is a worker thread running its
 * operations (copies, events, host functions) in order, asynchronously,
 * each after a random pause of up to FAKECUDA_JITTER_US microseconds
 * (environment, default 200), so that a missing ordering shows as a
 * race.  fakecuda_poison(stream) enqueues a fault, as a faulting kernel
 * would: from there on operations are dropped, host functions never run,
 * and queries report cudaErrorIllegalAddress.  With FAKECUDA_NO_DEVICE set,
 * cudaGetDeviceCount fails like the real one on a machine without a
 * driver.  Kernels of real CUDA plugins cannot run here (they go to the
 * real libcudart and fail): graphs use the fakegpu fixture plugin.  The
 * four cuBLAS functions the runtime's backward uses for gradient sums
 * (runtime/device_cuda_bwd.c finds loaded symbols first) are here too, and
 * a counter of the fixture's device backwards (fakecuda_backwards).
 * For tests of the error paths and of what the runtime allocates and
 * copies: fakecuda_fail(fn, skip, e) makes a later call of fn fail,
 * fakecuda_count(what) counts live allocations, events, streams, cuBLAS
 * handles and registered host blocks and the bytes copied each way, and
 * device memory starts as NaN bytes (0xff), as unwritten memory should
 * read to a test.  FAKECUDA_NO_DEVICE=count0 reports no device without
 * an error.
 */
#include <cblas.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FAKE_API __attribute__((visibility("default")))

enum op_kind { OP_COPY, OP_EVENT, OP_HOSTFN, OP_POISON, OP_MEMSET };

struct op {
    enum op_kind kind;
    void *dst;
    const void *src;
    size_t n;
    cudaHostFn_t fn;
    void *arg;
    cudaEvent_t ev;
    struct op *next;
};

struct CUstream_st {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;  /* an op arrived, or stop */
    pthread_cond_t idle;  /* the queue emptied */
    struct op *head, *tail;
    int busy;
    int stop;
    int poisoned;
    unsigned seed;
};

struct CUevent_st {
    double t; /* seconds, when the stream reached it */
};

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int
jitter_us(void)
{
    const char *e = getenv("FAKECUDA_JITTER_US");

    return e != NULL ? atoi(e) : 200;
}

static void *
worker(void *arg)
{
    struct CUstream_st *st = arg;
    int jitter = jitter_us();

    pthread_mutex_lock(&st->lock);
    for (;;) {
        struct op *op;
        int poisoned;

        while (st->head == NULL && !st->stop)
            pthread_cond_wait(&st->wake, &st->lock);
        if (st->head == NULL)
            break;
        op = st->head;
        st->head = op->next;
        if (st->head == NULL)
            st->tail = NULL;
        st->busy = 1;
        poisoned = st->poisoned;
        pthread_mutex_unlock(&st->lock);
        if (jitter > 0)
            usleep((useconds_t)(rand_r(&st->seed) % (unsigned)jitter));
        if (!poisoned) {
            switch (op->kind) {
            case OP_POISON:
                pthread_mutex_lock(&st->lock);
                st->poisoned = 1;
                pthread_mutex_unlock(&st->lock);
                break;
            case OP_COPY:
                memcpy(op->dst, op->src, op->n);
                break;
            case OP_MEMSET:
                memset(op->dst, (int)(intptr_t)op->arg, op->n);
                break;
            case OP_EVENT:
                op->ev->t = now_s();
                break;
            case OP_HOSTFN:
                op->fn(op->arg);
                break;
            }
        }
        free(op);
        pthread_mutex_lock(&st->lock);
        st->busy = 0;
        if (st->head == NULL)
            pthread_cond_broadcast(&st->idle);
    }
    pthread_mutex_unlock(&st->lock);
    return NULL;
}

static cudaError_t
enqueue(cudaStream_t st, struct op *op)
{
    if (st == NULL || op == NULL) {
        free(op);
        return cudaErrorInvalidValue;
    }
    op->next = NULL;
    pthread_mutex_lock(&st->lock);
    if (st->tail != NULL)
        st->tail->next = op;
    else
        st->head = op;
    st->tail = op;
    pthread_cond_signal(&st->wake);
    pthread_mutex_unlock(&st->lock);
    return cudaSuccess;
}

/* Enqueues a fault on `stream` (see the file comment). */
FAKE_API void
fakecuda_poison(void *stream)
{
    struct op *op = calloc(1, sizeof(*op));

    if (op != NULL)
        op->kind = OP_POISON;
    enqueue(stream, op);
}

FAKE_API cudaError_t
cudaGetDeviceCount(int *count)
{
    const char *none = getenv("FAKECUDA_NO_DEVICE");

    if (none != NULL) {
        *count = 0;
        return strcmp(none, "count0") == 0 ? cudaSuccess
                                           : cudaErrorInsufficientDriver;
    }
    *count = 1;
    return cudaSuccess;
}

/* The last launch error of this thread (tests/cudaemu: a launch with an
 * invalid configuration), returned and cleared by cudaGetLastError. */
static _Thread_local cudaError_t last_error = cudaSuccess;

FAKE_API void
fakecuda_set_error(cudaError_t e)
{
    last_error = e;
}

/* ---- failures on demand, and counts --------------------------------- */

#define N_FAILS 8

static struct {
    const char *fn;
    int skip;
    cudaError_t e;
} fails[N_FAILS];
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;

/* The call of `fn` after the next `skip` ones fails with e, once (a
 * cuBLAS function with CUBLAS_STATUS_EXECUTION_FAILED); fn NULL clears
 * every pending failure.  fn is kept, not copied. */
FAKE_API void
fakecuda_fail(const char *fn, int skip, cudaError_t e)
{
    int i;

    pthread_mutex_lock(&fail_lock);
    for (i = 0; i < N_FAILS; i++) {
        if (fn == NULL) {
            fails[i].fn = NULL;
        } else if (fails[i].fn == NULL) {
            fails[i].fn = fn;
            fails[i].skip = skip;
            fails[i].e = e;
            break;
        }
    }
    pthread_mutex_unlock(&fail_lock);
}

/* cudaSuccess, or the failure fakecuda_fail asked of this call of fn. */
static cudaError_t
fail_now(const char *fn)
{
    cudaError_t e = cudaSuccess;
    int i;

    pthread_mutex_lock(&fail_lock);
    for (i = 0; i < N_FAILS; i++)
        if (fails[i].fn != NULL && strcmp(fails[i].fn, fn) == 0 &&
            fails[i].skip-- == 0) {
            e = fails[i].e;
            fails[i].fn = NULL;
        }
    pthread_mutex_unlock(&fail_lock);
    if (e != cudaSuccess)
        last_error = e;
    return e;
}

static atomic_long n_allocs, n_events, n_streams, n_blas, n_pinned;
static atomic_long copied[4]; /* bytes, by cudaMemcpyKind (0..3) */

/* Live device allocations ("allocs"), events, streams, cuBLAS handles
 * ("blas"), registered host blocks ("pinned"); bytes copied "h2d", "d2h",
 * "d2d" (asynchronously or not) since the start. */
FAKE_API long
fakecuda_count(const char *what)
{
    return strcmp(what, "allocs") == 0    ? atomic_load(&n_allocs)
           : strcmp(what, "events") == 0  ? atomic_load(&n_events)
           : strcmp(what, "streams") == 0 ? atomic_load(&n_streams)
           : strcmp(what, "blas") == 0    ? atomic_load(&n_blas)
           : strcmp(what, "pinned") == 0  ? atomic_load(&n_pinned)
           : strcmp(what, "h2d") == 0
               ? atomic_load(&copied[cudaMemcpyHostToDevice])
           : strcmp(what, "d2h") == 0
               ? atomic_load(&copied[cudaMemcpyDeviceToHost])
           : strcmp(what, "d2d") == 0
               ? atomic_load(&copied[cudaMemcpyDeviceToDevice])
               : -1;
}

static void
count_copy(enum cudaMemcpyKind kind, size_t n)
{
    if ((unsigned)kind < 4)
        atomic_fetch_add(&copied[kind], (long)n);
}

FAKE_API cudaError_t
cudaGetLastError(void)
{
    cudaError_t e = last_error;

    last_error = cudaSuccess;
    return e;
}

FAKE_API const char *
cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess:
        return "no error";
    case cudaErrorInsufficientDriver:
        return "CUDA driver version is insufficient for CUDA runtime "
               "version";
    case cudaErrorIllegalAddress:
        return "an illegal memory access was encountered";
    case cudaErrorInvalidConfiguration:
        return "invalid configuration argument";
    default:
        return "fake CUDA error";
    }
}

FAKE_API const char *
cudaGetErrorName(cudaError_t e)
{
    switch (e) {
    case cudaSuccess:
        return "cudaSuccess";
    case cudaErrorInsufficientDriver:
        return "cudaErrorInsufficientDriver";
    case cudaErrorIllegalAddress:
        return "cudaErrorIllegalAddress";
    case cudaErrorInvalidConfiguration:
        return "cudaErrorInvalidConfiguration";
    default:
        return "cudaErrorUnknown";
    }
}

FAKE_API cudaError_t
cudaSetDevice(int device)
{
    if (fail_now("cudaSetDevice") != cudaSuccess)
        return last_error;
    return device == 0 ? cudaSuccess : cudaErrorInvalidDevice;
}

FAKE_API cudaError_t
cudaStreamCreateWithFlags(cudaStream_t *out, unsigned int flags)
{
    static unsigned streams;
    struct CUstream_st *st;

    if (fail_now("cudaStreamCreateWithFlags") != cudaSuccess)
        return last_error;
    st = calloc(1, sizeof(*st));
    if (st == NULL)
        return cudaErrorMemoryAllocation;
    pthread_mutex_init(&st->lock, NULL);
    pthread_cond_init(&st->wake, NULL);
    pthread_cond_init(&st->idle, NULL);
    st->seed = 12345u + __atomic_fetch_add(&streams, 1, __ATOMIC_RELAXED);
    if (pthread_create(&st->thread, NULL, worker, st) != 0) {
        free(st);
        return cudaErrorMemoryAllocation;
    }
    *out = st;
    atomic_fetch_add(&n_streams, 1);
    return cudaSuccess;
}

FAKE_API cudaError_t
cudaStreamSynchronize(cudaStream_t st)
{
    int poisoned;

    pthread_mutex_lock(&st->lock);
    while (st->head != NULL || st->busy)
        pthread_cond_wait(&st->idle, &st->lock);
    poisoned = st->poisoned;
    pthread_mutex_unlock(&st->lock);
    if (fail_now("cudaStreamSynchronize") != cudaSuccess)
        return last_error;
    return poisoned ? cudaErrorIllegalAddress : cudaSuccess;
}

FAKE_API cudaError_t
cudaStreamQuery(cudaStream_t st)
{
    cudaError_t e;

    pthread_mutex_lock(&st->lock);
    e = st->poisoned                        ? cudaErrorIllegalAddress
        : st->head != NULL || st->busy ? cudaErrorNotReady
                                            : cudaSuccess;
    pthread_mutex_unlock(&st->lock);
    return e;
}

FAKE_API cudaError_t
cudaStreamDestroy(cudaStream_t st)
{
    pthread_mutex_lock(&st->lock);
    st->stop = 1;
    pthread_cond_signal(&st->wake);
    pthread_mutex_unlock(&st->lock);
    pthread_join(st->thread, NULL);
    pthread_mutex_destroy(&st->lock);
    pthread_cond_destroy(&st->wake);
    pthread_cond_destroy(&st->idle);
    free(st);
    atomic_fetch_sub(&n_streams, 1);
    return cudaSuccess;
}

FAKE_API cudaError_t
cudaEventCreate(cudaEvent_t *ev)
{
    if (fail_now("cudaEventCreate") != cudaSuccess)
        return last_error;
    *ev = calloc(1, sizeof(**ev));
    if (*ev == NULL)
        return cudaErrorMemoryAllocation;
    atomic_fetch_add(&n_events, 1);
    return cudaSuccess;
}

FAKE_API cudaError_t
cudaEventDestroy(cudaEvent_t ev)
{
    if (ev != NULL)
        atomic_fetch_sub(&n_events, 1);
    free(ev);
    return cudaSuccess;
}

FAKE_API cudaError_t
cudaEventRecord(cudaEvent_t ev, cudaStream_t st)
{
    struct op *op;

    if (fail_now("cudaEventRecord") != cudaSuccess)
        return last_error;
    op = calloc(1, sizeof(*op));
    if (op != NULL) {
        op->kind = OP_EVENT;
        op->ev = ev;
    }
    return enqueue(st, op);
}

FAKE_API cudaError_t
cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b)
{
    *ms = (float)(1e3 * (b->t - a->t));
    return cudaSuccess;
}

FAKE_API cudaError_t
cudaMalloc(void **p, size_t n)
{
    if (fail_now("cudaMalloc") != cudaSuccess)
        return last_error;
    if (posix_memalign(p, 256, n > 0 ? n : 1) != 0)
        return cudaErrorMemoryAllocation;
    memset(*p, 0xff, n); /* NaN floats until written */
    atomic_fetch_add(&n_allocs, 1);
    return cudaSuccess;
}

FAKE_API cudaError_t
cudaFree(void *p)
{
    if (p != NULL)
        atomic_fetch_sub(&n_allocs, 1);
    free(p);
    return cudaSuccess;
}

/* Registered host blocks, by address: registering one twice or
 * unregistering one that is not fails, as with the real runtime. */
#define N_PINNED 64
static void *pinned[N_PINNED];
static pthread_mutex_t pin_lock = PTHREAD_MUTEX_INITIALIZER;

FAKE_API cudaError_t
cudaHostRegister(void *p, size_t n, unsigned int flags)
{
    cudaError_t e = cudaErrorHostMemoryAlreadyRegistered;
    int i, free_slot = -1;

    if (fail_now("cudaHostRegister") != cudaSuccess)
        return last_error;
    pthread_mutex_lock(&pin_lock);
    for (i = 0; i < N_PINNED && pinned[i] != p; i++)
        if (pinned[i] == NULL && free_slot < 0)
            free_slot = i;
    if (i == N_PINNED && free_slot >= 0) {
        pinned[free_slot] = p;
        atomic_fetch_add(&n_pinned, 1);
        e = cudaSuccess;
    }
    pthread_mutex_unlock(&pin_lock);
    return e;
}

FAKE_API cudaError_t
cudaHostUnregister(void *p)
{
    cudaError_t e = cudaErrorHostMemoryNotRegistered;
    int i;

    pthread_mutex_lock(&pin_lock);
    for (i = 0; i < N_PINNED; i++)
        if (p != NULL && pinned[i] == p) {
            pinned[i] = NULL;
            atomic_fetch_sub(&n_pinned, 1);
            e = cudaSuccess;
        }
    pthread_mutex_unlock(&pin_lock);
    return e;
}

FAKE_API cudaError_t
cudaMemcpy(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind)
{
    if (fail_now("cudaMemcpy") != cudaSuccess)
        return last_error;
    count_copy(kind, n);
    memcpy(dst, src, n);
    return cudaSuccess;
}

FAKE_API cudaError_t
cudaMemcpyAsync(void *dst, const void *src, size_t n,
                enum cudaMemcpyKind kind, cudaStream_t st)
{
    struct op *op;

    if (fail_now("cudaMemcpyAsync") != cudaSuccess)
        return last_error;
    count_copy(kind, n);
    op = calloc(1, sizeof(*op));
    if (op != NULL) {
        op->kind = OP_COPY;
        op->dst = dst;
        op->src = src;
        op->n = n;
    }
    return enqueue(st, op);
}

FAKE_API cudaError_t
cudaMemsetAsync(void *dst, int value, size_t n, cudaStream_t st)
{
    struct op *op;

    if (fail_now("cudaMemsetAsync") != cudaSuccess)
        return last_error;
    op = calloc(1, sizeof(*op));
    if (op != NULL) {
        op->kind = OP_MEMSET;
        op->dst = dst;
        op->arg = (void *)(intptr_t)value;
        op->n = n;
    }
    return enqueue(st, op);
}

FAKE_API cudaError_t
cudaLaunchHostFunc(cudaStream_t st, cudaHostFn_t fn, void *arg)
{
    struct op *op;

    if (fail_now("cudaLaunchHostFunc") != cudaSuccess)
        return last_error;
    op = calloc(1, sizeof(*op));
    if (op != NULL) {
        op->kind = OP_HOSTFN;
        op->fn = fn;
        op->arg = arg;
    }
    return enqueue(st, op);
}

/* ---- what the fixture plugin and the runtime's backward use ---------- */

/* Device backwards enqueued by the fixture (tests/plugins/fakegpu.c). */
static atomic_int backwards;

FAKE_API void
fakecuda_count_backward(void)
{
    atomic_fetch_add(&backwards, 1);
}

int
fakecuda_backwards(void)
{
    return atomic_load(&backwards);
}

/* cuBLAS, as far as the runtime's gradient sums need it: a handle holds
 * its stream, and saxpy runs there as a host function. */
struct cublasContext {
    cudaStream_t stream;
};

struct saxpy_job {
    int n;
    float alpha;
    const float *x;
    float *y;
};

static void
saxpy_fn(void *arg)
{
    struct saxpy_job *j = arg;
    int i;

    for (i = 0; i < j->n; i++)
        j->y[i] = j->alpha * j->x[i] + j->y[i];
    free(j);
}

FAKE_API cublasStatus_t
cublasCreate_v2(cublasHandle_t *h)
{
    if (fail_now("cublasCreate_v2") != cudaSuccess)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    *h = calloc(1, sizeof(**h));
    if (*h == NULL)
        return CUBLAS_STATUS_ALLOC_FAILED;
    atomic_fetch_add(&n_blas, 1);
    return CUBLAS_STATUS_SUCCESS;
}

FAKE_API cublasStatus_t
cublasDestroy_v2(cublasHandle_t h)
{
    if (h != NULL)
        atomic_fetch_sub(&n_blas, 1);
    free(h);
    return CUBLAS_STATUS_SUCCESS;
}

FAKE_API cublasStatus_t
cublasSetStream_v2(cublasHandle_t h, cudaStream_t st)
{
    h->stream = st;
    return CUBLAS_STATUS_SUCCESS;
}

FAKE_API cublasStatus_t
cublasSaxpy_v2(cublasHandle_t h, int n, const float *alpha, const float *x,
               int incx, float *y, int incy)
{
    struct saxpy_job *j;

    if (fail_now("cublasSaxpy_v2") != cudaSuccess)
        return CUBLAS_STATUS_EXECUTION_FAILED;
    j = malloc(sizeof(*j));
    if (j == NULL || incx != 1 || incy != 1) {
        free(j);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    j->n = n;
    j->alpha = *alpha; /* host pointer mode: read at the call */
    j->x = x;
    j->y = y;
    if (cudaLaunchHostFunc(h->stream, saxpy_fn, j) != cudaSuccess) {
        free(j);
        return CUBLAS_STATUS_EXECUTION_FAILED;
    }
    return CUBLAS_STATUS_SUCCESS;
}

/* ---- what the plugins' products use (tests/cudaemu) --------------------- */

/* Column-major products as cuBLAS defines them, by OpenBLAS, on the
 * handle's stream; alpha and beta are host pointers (the default mode),
 * read at the call.  The math mode is recorded and ignored (FP32 here). */
struct gemm_job {
    int ta, tb, m, n, k, lda, ldb, ldc, batches;
    float alpha, beta;
    const float *a, *b;
    float *c;
    long long sa, sb, sc;
};

static void
gemm_fn(void *arg)
{
    struct gemm_job *j = arg;
    int i;

    for (i = 0; i < j->batches; i++)
        cblas_sgemm(CblasColMajor, j->ta ? CblasTrans : CblasNoTrans,
                    j->tb ? CblasTrans : CblasNoTrans, j->m, j->n, j->k,
                    j->alpha, j->a + i * j->sa, j->lda, j->b + i * j->sb,
                    j->ldb, j->beta, j->c + i * j->sc, j->ldc);
    free(j);
}

static cublasStatus_t
gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
     int n, int k, const float *alpha, const float *a, int lda,
     long long sa, const float *b, int ldb, long long sb, const float *beta,
     float *c, int ldc, long long sc, int batches)
{
    struct gemm_job *j;

    if ((ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) ||
        (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T) || m < 0 || n < 0 ||
        k < 0 || batches < 0 || ldc < (m > 1 ? m : 1) ||
        lda < ((ta == CUBLAS_OP_N ? m : k) > 1 ? (ta == CUBLAS_OP_N ? m : k)
                                              : 1) ||
        ldb < ((tb == CUBLAS_OP_N ? k : n) > 1 ? (tb == CUBLAS_OP_N ? k : n)
                                              : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (m == 0 || n == 0 || batches == 0)
        return CUBLAS_STATUS_SUCCESS;
    j = malloc(sizeof(*j));
    if (j == NULL)
        return CUBLAS_STATUS_ALLOC_FAILED;
    *j = (struct gemm_job){ta == CUBLAS_OP_T, tb == CUBLAS_OP_T, m, n, k,
                           lda, ldb, ldc, batches, *alpha, *beta, a, b, c,
                           sa, sb, sc};
    if (cudaLaunchHostFunc(h->stream, gemm_fn, j) != cudaSuccess) {
        free(j);
        return CUBLAS_STATUS_EXECUTION_FAILED;
    }
    return CUBLAS_STATUS_SUCCESS;
}

FAKE_API cublasStatus_t
cublasSgemm_v2(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb,
               int m, int n, int k, const float *alpha, const float *a,
               int lda, const float *b, int ldb, const float *beta, float *c,
               int ldc)
{
    return gemm(h, ta, tb, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c,
                ldc, 0, 1);
}

FAKE_API cublasStatus_t
cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta,
                          cublasOperation_t tb, int m, int n, int k,
                          const float *alpha, const float *a, int lda,
                          long long sa, const float *b, int ldb,
                          long long sb, const float *beta, float *c, int ldc,
                          long long sc, int batches)
{
    return gemm(h, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c,
                ldc, sc, batches);
}

FAKE_API cublasStatus_t
cublasSetMathMode(cublasHandle_t h, cublasMath_t mode)
{
    return h != NULL ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}

FAKE_API const char *
cublasGetStatusString(cublasStatus_t s)
{
    return s == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS"
                                      : "fake cuBLAS error";
}
