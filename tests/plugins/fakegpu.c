/*
 * fakegpu.c - a fixture plugin whose ops have a CPU kernel and a "CUDA"
 * kernel that runs on the fake CUDA runtime of tests/fakecuda.c: the CUDA
 * kernel computes the same thing as a host function enqueued on the
 * session's stream (so it runs later, on the stream's thread, on "device"
 * memory that fakecuda keeps apart from the host copies).  It exists to
 * check the runtime's placement, copies and scheduling without a GPU
 * (tests/check_cuda_sched.c); on a real GPU its CUDA kernels would read
 * device memory from the host and must not be used.
 *
 * Ops (f32, elementwise over x's shape):
 *   fakegpu.affine  x -> a·x + b (attributes a, b), through a workspace;
 *                   keeps a·x as saved bytes, which its backward checks
 *                   (both fail the node when a workspace or saved size
 *                   is below x's bytes)
 *   fakegpu.mul     x, w -> x·w (w usually a parameter)
 *   fakegpu.accum   x, s (state) -> s += x in place, y = s
 *   fakegpu.host    x -> x + 1, CPU only (the runtime falls back)
 *   fakegpu.mean    x -> the mean of all of x, a scalar (a loss)
 *   fakegpu.old     x -> x, its CUDA kernel declared with ABI 1.2's size
 *   fakegpu.poison  x -> x; the CUDA kernel makes the stream fail (with
 *                   attribute in_backward: its CUDA backward does; with
 *                   attribute refuse: it returns SMLP_EINVAL at once)
 * Every op but accum has a CPU backward, and its CUDA kernel (but host,
 * which has none) a "CUDA" backward (ABI 1.3), enqueued like the kernels
 * and counted by fakecuda_count_backward: training sessions run their
 * backward on the fake GPU, or on the CPU when the graph holds a host.
 */
#include <dlfcn.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "smlp_plugin.h"

#define F32 (1u << SMLP_DTYPE_F32)

enum fake_op {
    FAKE_AFFINE, FAKE_MUL, FAKE_ACCUM, FAKE_HOST, FAKE_MEAN, FAKE_COPY
};

struct job {
    enum fake_op op;
    int64_t n;
    const float *x, *w;
    float *s, *y, *ws;
    float *saved; /* affine: a·x kept for the backward (ABI 1.2), or NULL */
    float a, b;
};

static void
compute(const struct job *j)
{
    int64_t i;

    switch (j->op) {
    case FAKE_AFFINE:
        for (i = 0; i < j->n; i++)
            j->ws[i] = j->a * j->x[i];
        for (i = 0; i < j->n; i++)
            j->y[i] = j->ws[i] + j->b;
        for (i = 0; j->saved != NULL && i < j->n; i++)
            j->saved[i] = j->ws[i];
        break;
    case FAKE_MUL:
        for (i = 0; i < j->n; i++)
            j->y[i] = j->x[i] * j->w[i];
        break;
    case FAKE_ACCUM:
        for (i = 0; i < j->n; i++) {
            j->s[i] += j->x[i];
            j->y[i] = j->s[i];
        }
        break;
    case FAKE_HOST:
        for (i = 0; i < j->n; i++)
            j->y[i] = j->x[i] + 1.0f;
        break;
    case FAKE_COPY:
        memcpy(j->y, j->x, (size_t)j->n * sizeof(float));
        break;
    case FAKE_MEAN: {
        double sum = 0.0;
        for (i = 0; i < j->n; i++)
            sum += j->x[i];
        j->y[0] = (float)(sum / (double)j->n);
        break;
    }
    }
}

static void
job_fn(void *arg)
{
    compute(arg);
    free(arg);
}

static float
attr(const struct smlp_kernel_ctx *ctx, const char *name)
{
    double v = 0.0;

    ctx->host->attr_float(ctx->node, name, &v);
    return (float)v;
}

static int
fill_job(struct smlp_kernel_ctx *ctx, enum fake_op op, struct job *j)
{
    memset(j, 0, sizeof(*j));
    j->op = op;
    j->n = smlp_tensor_numel(ctx->inputs[0]);
    j->x = ctx->inputs[0]->data;
    j->y = ctx->outputs[0]->data;
    if (op == FAKE_MUL)
        j->w = ctx->inputs[1]->data;
    if (op == FAKE_ACCUM)
        j->s = ctx->inputs[1]->data;
    if (op == FAKE_AFFINE) {
        j->ws = ctx->workspace;
        j->saved = (float *)ctx->saved;
        j->a = attr(ctx, "a");
        j->b = attr(ctx, "b");
        if (ctx->workspace_size < (size_t)j->n * sizeof(float)) {
            ctx->host->errorf(ctx->node, "workspace too small");
            return SMLP_EINVAL;
        }
        if (j->saved != NULL &&
            ctx->saved_size < (size_t)j->n * sizeof(float)) {
            ctx->host->errorf(ctx->node, "saved bytes too small");
            return SMLP_EINVAL;
        }
    }
    return SMLP_OK;
}

static int
run_cpu(struct smlp_kernel_ctx *ctx, enum fake_op op)
{
    struct job j;
    int rc = fill_job(ctx, op, &j);

    if (rc == SMLP_OK)
        compute(&j);
    return rc;
}

typedef int (*launch_host_func_cb)(void *stream, void (*fn)(void *),
                                   void *arg);

static int
run_gpu(struct smlp_kernel_ctx *ctx, enum fake_op op)
{
    launch_host_func_cb launch =
        (launch_host_func_cb)dlsym(RTLD_DEFAULT, "cudaLaunchHostFunc");
    struct job *j = malloc(sizeof(*j));
    int rc;

    if (j == NULL || launch == NULL || ctx->stream == NULL) {
        free(j);
        ctx->host->errorf(ctx->node, "no stream or no cudaLaunchHostFunc");
        return SMLP_EDEVICE;
    }
    if ((rc = fill_job(ctx, op, j)) != SMLP_OK ||
        (rc = launch(ctx->stream, job_fn, j) == 0 ? SMLP_OK
                                                  : SMLP_EDEVICE) !=
            SMLP_OK)
        free(j);
    return rc;
}

static int
affine_cpu(struct smlp_kernel_ctx *ctx)
{
    return run_cpu(ctx, FAKE_AFFINE);
}
static int
affine_gpu(struct smlp_kernel_ctx *ctx)
{
    return run_gpu(ctx, FAKE_AFFINE);
}
static int
mul_cpu(struct smlp_kernel_ctx *ctx)
{
    return run_cpu(ctx, FAKE_MUL);
}
static int
mul_gpu(struct smlp_kernel_ctx *ctx)
{
    return run_gpu(ctx, FAKE_MUL);
}
static int
accum_cpu(struct smlp_kernel_ctx *ctx)
{
    return run_cpu(ctx, FAKE_ACCUM);
}
static int
accum_gpu(struct smlp_kernel_ctx *ctx)
{
    return run_gpu(ctx, FAKE_ACCUM);
}
static int
host_cpu(struct smlp_kernel_ctx *ctx)
{
    return run_cpu(ctx, FAKE_HOST);
}
static int
mean_cpu(struct smlp_kernel_ctx *ctx)
{
    return run_cpu(ctx, FAKE_MEAN);
}
static int
mean_gpu(struct smlp_kernel_ctx *ctx)
{
    return run_gpu(ctx, FAKE_MEAN);
}

static int
old_cpu(struct smlp_kernel_ctx *ctx)
{
    return run_cpu(ctx, FAKE_COPY);
}
static int
old_gpu(struct smlp_kernel_ctx *ctx)
{
    return run_gpu(ctx, FAKE_COPY);
}

static int
poison_cpu(struct smlp_kernel_ctx *ctx)
{
    memcpy(ctx->outputs[0]->data, ctx->inputs[0]->data,
           (size_t)smlp_tensor_numel(ctx->inputs[0]) * sizeof(float));
    return SMLP_OK;
}

static int
poison_gpu(struct smlp_kernel_ctx *ctx)
{
    void (*poison)(void *) =
        (void (*)(void *))dlsym(RTLD_DEFAULT, "fakecuda_poison");
    int64_t in_backward = 0, refuse = 0;

    ctx->host->attr_int(ctx->node, "in_backward", &in_backward);
    ctx->host->attr_int(ctx->node, "refuse", &refuse);
    if (refuse) { /* a kernel that checks its input and says no */
        ctx->host->errorf(ctx->node, "refused its input (attribute refuse)");
        return SMLP_EINVAL;
    }
    if (in_backward)
        return run_gpu(ctx, FAKE_COPY);
    if (poison == NULL) {
        ctx->host->errorf(ctx->node, "not on the fake CUDA runtime");
        return SMLP_EDEVICE;
    }
    poison(ctx->stream);
    return SMLP_OK;
}

/* A backward: gx = a·gy (affine), gy·w and gw = gy·x (mul), gy (host),
 * gy/n everywhere (mean); a NULL grad_output reads as zeros. */
struct bjob {
    enum fake_op op;
    int64_t n;
    float a;
    const float *gy;
    const float *in[2];
    float *g[2];
    const float *saved; /* affine: what its forward kept, or NULL */
};

static void
bcompute(const struct bjob *j)
{
    int64_t i;
    int k;

    for (k = 0; k < 2; k++) {
        if (j->g[k] == NULL)
            continue;
        for (i = 0; i < j->n; i++) {
            float d = j->gy != NULL ? j->gy[j->op == FAKE_MEAN ? 0 : i] : 0.0f;

            j->g[k][i] = j->op == FAKE_MUL    ? d * j->in[1 - k][i]
                         : j->op == FAKE_MEAN ? d / (float)j->n
                                              : j->a * d;
            /* Saved bytes that did not survive to the backward poison
             * the gradient (they are not needed otherwise). */
            if (j->saved != NULL && j->saved[i] != j->a * j->in[0][i])
                j->g[k][i] = NAN;
        }
    }
}

static void
bjob_fn(void *arg)
{
    bcompute(arg);
    free(arg);
}

static int
fill_bjob(struct smlp_backward_ctx *ctx, enum fake_op op, struct bjob *j)
{
    double v = 1.0; /* host, poison: gx = gy */
    int k;

    memset(j, 0, sizeof(*j));
    j->op = op;
    j->n = smlp_tensor_numel(ctx->inputs[0]);
    if (op == FAKE_AFFINE) {
        v = 0.0; /* the forward's default (attr) */
        ctx->host->attr_float(ctx->node, "a", &v);
    }
    j->a = (float)v;
    j->gy = ctx->grad_outputs[0] != NULL ? ctx->grad_outputs[0]->data : NULL;
    j->saved = op == FAKE_AFFINE ? (const float *)ctx->saved : NULL;
    if (j->saved != NULL && ctx->saved_size < (size_t)j->n * sizeof(float)) {
        ctx->host->errorf(ctx->node, "saved bytes too small");
        return SMLP_EINVAL;
    }
    for (k = 0; k < ctx->n_inputs && k < 2; k++) {
        j->in[k] = ctx->inputs[k]->data;
        j->g[k] = ctx->grad_inputs[k] != NULL ? ctx->grad_inputs[k]->data
                                              : NULL;
    }
    return SMLP_OK;
}

static int
bwd_cpu(struct smlp_backward_ctx *ctx, enum fake_op op)
{
    struct bjob j;
    int rc = fill_bjob(ctx, op, &j);

    if (rc == SMLP_OK)
        bcompute(&j);
    return rc;
}

/* On the (fake) GPU: later, on the stream, and counted by fakecuda. */
static int
bwd_gpu(struct smlp_backward_ctx *ctx, enum fake_op op)
{
    launch_host_func_cb launch =
        (launch_host_func_cb)dlsym(RTLD_DEFAULT, "cudaLaunchHostFunc");
    void (*count)(void) =
        (void (*)(void))dlsym(RTLD_DEFAULT, "fakecuda_count_backward");
    struct bjob *j = malloc(sizeof(*j));

    if (j == NULL || launch == NULL || count == NULL || ctx->stream == NULL) {
        free(j);
        ctx->host->errorf(ctx->node, "not on the fake CUDA runtime");
        return SMLP_EDEVICE;
    }
    if (fill_bjob(ctx, op, j) != SMLP_OK) {
        free(j);
        return SMLP_EINVAL;
    }
    if (launch(ctx->stream, bjob_fn, j) != 0) {
        free(j);
        return SMLP_EDEVICE;
    }
    count();
    return SMLP_OK;
}

#define BACKWARD(name, op)                                                   \
    static int name##_bwd(struct smlp_backward_ctx *ctx)                     \
    {                                                                        \
        return bwd_cpu(ctx, op);                                             \
    }                                                                        \
    static int name##_bwd_gpu(struct smlp_backward_ctx *ctx)                 \
    {                                                                        \
        return bwd_gpu(ctx, op);                                             \
    }
BACKWARD(affine, FAKE_AFFINE)
BACKWARD(mul, FAKE_MUL)
BACKWARD(mean, FAKE_MEAN)

static int
host_bwd(struct smlp_backward_ctx *ctx)
{
    return bwd_cpu(ctx, FAKE_HOST);
}

/* poison's backward passes gy on the CPU; on the GPU it makes the stream
 * fail (attribute in_backward = 1) or fails to enqueue (2). */
static int
poison_bwd(struct smlp_backward_ctx *ctx)
{
    return bwd_cpu(ctx, FAKE_HOST);
}

static int
poison_bwd_gpu(struct smlp_backward_ctx *ctx)
{
    void (*poison)(void *) =
        (void (*)(void *))dlsym(RTLD_DEFAULT, "fakecuda_poison");
    int64_t in_backward = 0;

    ctx->host->attr_int(ctx->node, "in_backward", &in_backward);
    if (in_backward == 2) {
        ctx->host->errorf(ctx->node, "refused to enqueue (in_backward 2)");
        return SMLP_EKERNEL;
    }
    if (poison == NULL) {
        ctx->host->errorf(ctx->node, "not on the fake CUDA runtime");
        return SMLP_EDEVICE;
    }
    poison(ctx->stream);
    return SMLP_OK;
}

/* Output 0 is x's shape; affine asks for a workspace of x's size. */
static int
same_shape_infer(struct smlp_infer_ctx *ctx)
{
    const struct smlp_tensor *x = ctx->inputs[0];
    int i;

    for (i = 0; i < ctx->n_inputs; i++)
        if (ctx->inputs[i] == NULL || ctx->inputs[i]->dtype != SMLP_DTYPE_F32 ||
            smlp_tensor_numel(ctx->inputs[i]) != smlp_tensor_numel(x)) {
            ctx->host->errorf(ctx->node, "inputs must be f32 of x's size");
            return SMLP_EINVAL;
        }
    ctx->outputs[0]->dtype = SMLP_DTYPE_F32;
    ctx->outputs[0]->rank = x->rank;
    memcpy(ctx->outputs[0]->shape, x->shape, sizeof(x->shape));
    ctx->workspace = (size_t)smlp_tensor_numel(x) * sizeof(float);
    return SMLP_OK;
}

/* affine also keeps a·x for its backward, which checks it (ABI 1.2). */
static int
affine_infer(struct smlp_infer_ctx *ctx)
{
    int rc = same_shape_infer(ctx);

    if (rc == SMLP_OK)
        ctx->saved_bytes = ctx->workspace;
    return rc;
}

static int
mean_infer(struct smlp_infer_ctx *ctx)
{
    if (ctx->inputs[0]->dtype != SMLP_DTYPE_F32) {
        ctx->host->errorf(ctx->node, "x must be f32");
        return SMLP_EINVAL;
    }
    ctx->outputs[0]->dtype = SMLP_DTYPE_F32;
    ctx->outputs[0]->rank = 0;
    return SMLP_OK;
}

/* bwd: the kernel's own backward (ABI 1.3), on its device. */
#define KERNEL(var, dev, fn, bwd)                                            \
    static const struct smlp_kernel_def var = {                              \
        sizeof(struct smlp_kernel_def), SMLP_ABI_VERSION, dev, F32, NULL,    \
        fn, 1, bwd}

KERNEL(affine_c, SMLP_DEVICE_CPU, affine_cpu, NULL);
KERNEL(affine_g, SMLP_DEVICE_CUDA, affine_gpu, affine_bwd_gpu);
KERNEL(mul_c, SMLP_DEVICE_CPU, mul_cpu, NULL);
KERNEL(mul_g, SMLP_DEVICE_CUDA, mul_gpu, mul_bwd_gpu);
KERNEL(accum_c, SMLP_DEVICE_CPU, accum_cpu, NULL);
KERNEL(accum_g, SMLP_DEVICE_CUDA, accum_gpu, NULL);
KERNEL(host_c, SMLP_DEVICE_CPU, host_cpu, NULL);
KERNEL(mean_c, SMLP_DEVICE_CPU, mean_cpu, NULL);
KERNEL(mean_g, SMLP_DEVICE_CUDA, mean_gpu, mean_bwd_gpu);
KERNEL(poison_c, SMLP_DEVICE_CPU, poison_cpu, NULL);
KERNEL(poison_g, SMLP_DEVICE_CUDA, poison_gpu, poison_bwd_gpu);
KERNEL(old_c, SMLP_DEVICE_CPU, old_cpu, NULL);
/* A plugin of ABI 1.2 knew no kernel backward: the host must not read
 * past the size it gives (this pointer would make the stream fail). */
static const struct smlp_kernel_def old_g = {
    offsetof(struct smlp_kernel_def, backward), SMLP_ABI_VERSION,
    SMLP_DEVICE_CUDA, F32, NULL, old_gpu, 1, poison_bwd_gpu};

static const struct smlp_kernel_def *const affine_k[] = {&affine_c,
                                                         &affine_g, NULL};
static const struct smlp_kernel_def *const mul_k[] = {&mul_c, &mul_g, NULL};
static const struct smlp_kernel_def *const accum_k[] = {&accum_c, &accum_g,
                                                        NULL};
static const struct smlp_kernel_def *const host_k[] = {&host_c, NULL};
static const struct smlp_kernel_def *const mean_k[] = {&mean_c, &mean_g,
                                                       NULL};
static const struct smlp_kernel_def *const poison_k[] = {&poison_c,
                                                         &poison_g, NULL};
static const struct smlp_kernel_def *const old_k[] = {&old_c, &old_g, NULL};

static const struct smlp_attr_def affine_attrs[] = {
    {"a", SMLP_ATTR_FLOAT, 0, "factor"},
    {"b", SMLP_ATTR_FLOAT, 0, "offset"},
    {NULL, 0, 0, NULL},
};
static const struct smlp_attr_def poison_attrs[] = {
    {"in_backward", SMLP_ATTR_INT, 0,
     "0: the forward fails; 1: its GPU backward fails; 2: it fails to "
     "enqueue"},
    {"refuse", SMLP_ATTR_INT, 0,
     "1: the CUDA kernel returns SMLP_EINVAL (before in_backward)"},
    {NULL, 0, 0, NULL},
};

#define OP_INFER(var, name, nin, attrs, infer, kernels, bwd)                \
    static const struct smlp_op_def var = {                                  \
        sizeof(struct smlp_op_def), SMLP_ABI_VERSION, name, nin, nin, 1, 0,  \
        attrs, infer, kernels, bwd, name}
#define OP(var, name, nin, attrs, kernels, bwd)                              \
    OP_INFER(var, name, nin, attrs, same_shape_infer, kernels, bwd)

OP_INFER(affine_op, "fakegpu.affine", 1, affine_attrs, affine_infer,
         affine_k, affine_bwd);
OP(mul_op, "fakegpu.mul", 2, NULL, mul_k, mul_bwd);
OP(accum_op, "fakegpu.accum", 2, NULL, accum_k, NULL);
OP(host_op, "fakegpu.host", 1, NULL, host_k, host_bwd);
OP(poison_op, "fakegpu.poison", 1, poison_attrs, poison_k, poison_bwd);
OP_INFER(mean_op, "fakegpu.mean", 1, NULL, mean_infer, mean_k, mean_bwd);
OP(old_op, "fakegpu.old", 1, NULL, old_k, host_bwd);

static const struct smlp_op_def *const ops[] = {
    &affine_op, &mul_op, &accum_op, &host_op, &poison_op, &mean_op,
    &old_op, NULL};
static const struct smlp_plugin_def def = {
    sizeof(def), SMLP_ABI_VERSION, "fakegpu", "1", SMLP_BUILD_SIGNATURE, ops,
    NULL};
SMLP_PLUGIN_DEFINE(def)
