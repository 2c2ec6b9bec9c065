/*
 * gradfix.c - a fixture plugin for the autograd engine (check_autograd):
 * tiny f32 ops with hand-checkable backwards, and the odd ones out.
 *
 *   gradfix.mul(a, b)      y = a * b (same shapes)
 *   gradfix.add(a, b)      y = a + b (same shapes)
 *   gradfix.square_sum(x)  y = sum x^2, rank 0; its backward uses a
 *                          workspace of numel(x) floats (backward_workspace)
 *   gradfix.split(x)       (y = x, idx = 0, 1, 2, ... as i32); the backward
 *                          fails unless grad_outputs[1] (i32) is NULL
 *   gradfix.noise(x)       (y = x * m, m) with m in [0.5, 1.5) drawn from
 *                          (seed, step, i); the backward draws m again
 *   gradfix.flat(x)        a view (SMLP_OP_VIEW): x as a vector; no backward
 *   gradfix.nobwd(x)       y = x, and no backward
 *   gradfix.tofloat(i)     y = (float)i for an i32 i, and no backward (an
 *                          op that reads only integers needs none)
 *   gradfix.stopgrad(x)    y = x, SMLP_OP_NO_GRAD (no backward: its
 *                          output is a constant to autograd, as
 *                          moco.momentum_update's)
 *   gradfix.stash(x)       y = 3 * x, keeping a copy of x in its saved
 *                          bytes (ABI 1.2) when it gets them; the backward
 *                          fails unless they came back holding x, with
 *                          their size
 *   gradfix.sum(x, ...)    y = the sum of every element of 1 to 8 inputs,
 *                          rank 0 (a loss over many branches)
 *   gradfix.fwdws(x)       y = 2 * x through a forward workspace of
 *                          numel(x) floats, and no backward_workspace: the
 *                          backward fails unless its workspace holds at
 *                          least the forward's (smlp_infer_ctx)
 *   gradfix.fail(x)        y = x; the kernel fails ("fails on purpose")
 *   gradfix.bfail(x)       y = x; the backward fails ("fails on purpose")
 *   gradfix.count(x)       y = x (macs 65536, so the scheduler never
 *                          batches it); kernel and backward count the
 *                          instances of the op running at once (one
 *                          counter for the process) and fail when more
 *                          than the attribute `limit` (default 1) did.
 *                          Each waits up to 30 ms while the count is
 *                          within the limit, so that instances started
 *                          together overlap; the count only reads high
 *                          when more did run at once (a timing that
 *                          can never fail a correct host)
 *   gradfix.watch(x)       y = x + 1; kernel and backward (gx = go) watch
 *                          their tensors for 30 ms and fail when any
 *                          changed meanwhile: another node wrote bytes
 *                          they were still reading.  The backward also
 *                          fills a backward workspace of numel(x) floats
 *                          (a writer at its backward step) and watches it
 *
 * Backwards write every gradient they are given, read NULL grad_outputs as
 * zeros, and compute each element as go * other (mul), go (add),
 * (2 * x) * go (square_sum): tests recompute these in the same order and
 * compare bit for bit.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "smlp_plugin.h"

#define F32 (1u << SMLP_DTYPE_F32)

static int
fail(struct smlp_infer_ctx *ctx, const char *msg)
{
    ctx->host->errorf(ctx->node, "%s", msg);
    return SMLP_EINVAL;
}

static void
like(struct smlp_tensor *out, const struct smlp_tensor *x, int dtype)
{
    out->dtype = dtype;
    out->rank = x->rank;
    memcpy(out->shape, x->shape, sizeof(x->shape));
}

static int
infer_binary(struct smlp_infer_ctx *ctx)
{
    const struct smlp_tensor *a = ctx->inputs[0], *b = ctx->inputs[1];

    if (a->dtype != SMLP_DTYPE_F32 || b->dtype != SMLP_DTYPE_F32)
        return fail(ctx, "inputs must be f32");
    if (smlp_tensor_numel(a) != smlp_tensor_numel(b))
        return fail(ctx, "inputs must have as many elements");
    like(ctx->outputs[0], a, SMLP_DTYPE_F32);
    return SMLP_OK;
}

static int
infer_unary(struct smlp_infer_ctx *ctx)
{
    if (ctx->inputs[0]->dtype != SMLP_DTYPE_F32)
        return fail(ctx, "input must be f32");
    like(ctx->outputs[0], ctx->inputs[0], SMLP_DTYPE_F32);
    return SMLP_OK;
}

static float *
fp(const struct smlp_tensor *t)
{
    return t != NULL ? (float *)t->data : NULL;
}

/* ---- mul, add -------------------------------------------------------- */

static int
mul_run(struct smlp_kernel_ctx *ctx)
{
    int64_t i, n = smlp_tensor_numel(ctx->outputs[0]);
    const float *a = fp(ctx->inputs[0]), *b = fp(ctx->inputs[1]);
    float *y = fp(ctx->outputs[0]);

    for (i = 0; i < n; i++)
        y[i] = a[i] * b[i];
    return SMLP_OK;
}

static int
mul_backward(struct smlp_backward_ctx *ctx)
{
    int64_t i, n = smlp_tensor_numel(ctx->outputs[0]);
    const float *a = fp(ctx->inputs[0]), *b = fp(ctx->inputs[1]);
    const float *go = fp(ctx->grad_outputs[0]);
    float *ga = fp(ctx->grad_inputs[0]), *gb = fp(ctx->grad_inputs[1]);

    for (i = 0; i < n; i++) {
        float g = go != NULL ? go[i] : 0.0f;
        if (ga != NULL)
            ga[i] = g * b[i];
        if (gb != NULL)
            gb[i] = g * a[i];
    }
    return SMLP_OK;
}

static int
add_run(struct smlp_kernel_ctx *ctx)
{
    int64_t i, n = smlp_tensor_numel(ctx->outputs[0]);
    const float *a = fp(ctx->inputs[0]), *b = fp(ctx->inputs[1]);
    float *y = fp(ctx->outputs[0]);

    for (i = 0; i < n; i++)
        y[i] = a[i] + b[i];
    return SMLP_OK;
}

static int
add_backward(struct smlp_backward_ctx *ctx)
{
    int64_t i, n = smlp_tensor_numel(ctx->outputs[0]);
    const float *go = fp(ctx->grad_outputs[0]);
    int j;

    for (j = 0; j < 2; j++) {
        float *g = fp(ctx->grad_inputs[j]);
        for (i = 0; g != NULL && i < n; i++)
            g[i] = go != NULL ? go[i] : 0.0f;
    }
    return SMLP_OK;
}

/* ---- square_sum ------------------------------------------------------- */

static int
square_sum_infer(struct smlp_infer_ctx *ctx)
{
    if (ctx->inputs[0]->dtype != SMLP_DTYPE_F32)
        return fail(ctx, "input must be f32");
    ctx->outputs[0]->dtype = SMLP_DTYPE_F32;
    ctx->outputs[0]->rank = 0;
    ctx->backward_workspace =
        (size_t)smlp_tensor_numel(ctx->inputs[0]) * sizeof(float);
    return SMLP_OK;
}

static int
square_sum_run(struct smlp_kernel_ctx *ctx)
{
    int64_t i, n = smlp_tensor_numel(ctx->inputs[0]);
    const float *x = fp(ctx->inputs[0]);
    double acc = 0;

    for (i = 0; i < n; i++)
        acc += (double)x[i] * x[i];
    *fp(ctx->outputs[0]) = (float)acc;
    return SMLP_OK;
}

static int
square_sum_backward(struct smlp_backward_ctx *ctx)
{
    int64_t i, n = smlp_tensor_numel(ctx->inputs[0]);
    const float *x = fp(ctx->inputs[0]);
    float *gx = fp(ctx->grad_inputs[0]), *tmp = ctx->workspace;
    float go = ctx->grad_outputs[0] != NULL ? *fp(ctx->grad_outputs[0]) : 0;

    if (ctx->workspace_size < (size_t)n * sizeof(float) || tmp == NULL) {
        ctx->host->errorf(ctx->node, "backward workspace of %zu bytes, "
                          "%zu needed", ctx->workspace_size,
                          (size_t)n * sizeof(float));
        return SMLP_EINVAL;
    }
    if (gx == NULL)
        return SMLP_OK;
    for (i = 0; i < n; i++)
        tmp[i] = 2.0f * x[i];
    for (i = 0; i < n; i++)
        gx[i] = tmp[i] * go;
    return SMLP_OK;
}

/* ---- split ------------------------------------------------------------ */

static int
split_infer(struct smlp_infer_ctx *ctx)
{
    if (ctx->inputs[0]->dtype != SMLP_DTYPE_F32)
        return fail(ctx, "input must be f32");
    like(ctx->outputs[0], ctx->inputs[0], SMLP_DTYPE_F32);
    like(ctx->outputs[1], ctx->inputs[0], SMLP_DTYPE_I32);
    return SMLP_OK;
}

static int
split_run(struct smlp_kernel_ctx *ctx)
{
    int64_t i, n = smlp_tensor_numel(ctx->inputs[0]);
    int32_t *idx = ctx->outputs[1]->data;

    memcpy(ctx->outputs[0]->data, ctx->inputs[0]->data,
           (size_t)n * sizeof(float));
    for (i = 0; i < n; i++)
        idx[i] = (int32_t)i;
    return SMLP_OK;
}

static int
split_backward(struct smlp_backward_ctx *ctx)
{
    int64_t i, n = smlp_tensor_numel(ctx->inputs[0]);
    const float *go = fp(ctx->grad_outputs[0]);
    float *gx = fp(ctx->grad_inputs[0]);

    if (ctx->grad_outputs[1] != NULL) {
        ctx->host->errorf(ctx->node, "got a gradient for the i32 output");
        return SMLP_EINVAL;
    }
    for (i = 0; gx != NULL && i < n; i++)
        gx[i] = go != NULL ? go[i] : 0.0f;
    return SMLP_OK;
}

/* ---- tofloat ---------------------------------------------------------- */

static int
tofloat_infer(struct smlp_infer_ctx *ctx)
{
    if (ctx->inputs[0]->dtype != SMLP_DTYPE_I32)
        return fail(ctx, "input must be i32");
    like(ctx->outputs[0], ctx->inputs[0], SMLP_DTYPE_F32);
    return SMLP_OK;
}

static int
tofloat_run(struct smlp_kernel_ctx *ctx)
{
    int64_t i, n = smlp_tensor_numel(ctx->inputs[0]);
    const int32_t *in = ctx->inputs[0]->data;
    float *y = ctx->outputs[0]->data;

    for (i = 0; i < n; i++)
        y[i] = (float)in[i];
    return SMLP_OK;
}

/* ---- noise ------------------------------------------------------------ */

static uint64_t
mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float
noise_at(uint64_t seed, uint64_t step, int64_t i)
{
    uint64_t z = mix(seed ^ mix(step ^ mix((uint64_t)i)));

    return 0.5f + (float)(z >> 40) / 16777216.0f;
}

static int
noise_infer(struct smlp_infer_ctx *ctx)
{
    if (ctx->inputs[0]->dtype != SMLP_DTYPE_F32)
        return fail(ctx, "input must be f32");
    like(ctx->outputs[0], ctx->inputs[0], SMLP_DTYPE_F32);
    like(ctx->outputs[1], ctx->inputs[0], SMLP_DTYPE_F32);
    return SMLP_OK;
}

static int
noise_run(struct smlp_kernel_ctx *ctx)
{
    int64_t i, n = smlp_tensor_numel(ctx->inputs[0]);
    const float *x = fp(ctx->inputs[0]);
    float *y = fp(ctx->outputs[0]), *m = fp(ctx->outputs[1]);

    for (i = 0; i < n; i++) {
        m[i] = noise_at(ctx->seed, ctx->step, i);
        y[i] = x[i] * m[i];
    }
    return SMLP_OK;
}

static int
noise_backward(struct smlp_backward_ctx *ctx)
{
    int64_t i, n = smlp_tensor_numel(ctx->inputs[0]);
    const float *go = fp(ctx->grad_outputs[0]);
    float *gx = fp(ctx->grad_inputs[0]);

    for (i = 0; gx != NULL && i < n; i++)
        gx[i] = (go != NULL ? go[i] : 0.0f) *
                noise_at(ctx->seed, ctx->step, i);
    return SMLP_OK;
}

/* ---- stash ------------------------------------------------------------ */

static int
stash_infer(struct smlp_infer_ctx *ctx)
{
    int rc = infer_unary(ctx);

    ctx->saved_bytes = (size_t)smlp_tensor_numel(ctx->inputs[0]) *
                       sizeof(float);
    return rc;
}

static int
stash_run(struct smlp_kernel_ctx *ctx)
{
    int64_t i, n = smlp_tensor_numel(ctx->inputs[0]);
    const float *x = fp(ctx->inputs[0]);
    float *y = fp(ctx->outputs[0]);

    for (i = 0; i < n; i++)
        y[i] = 3.0f * x[i];
    if (ctx->saved != NULL) {
        if (ctx->saved_size < (size_t)n * sizeof(float)) {
            ctx->host->errorf(ctx->node, "saved bytes: %zu, %zu asked",
                              ctx->saved_size, (size_t)n * sizeof(float));
            return SMLP_EINVAL;
        }
        memcpy(ctx->saved, x, (size_t)n * sizeof(float));
    }
    return SMLP_OK;
}

static int
stash_backward(struct smlp_backward_ctx *ctx)
{
    int64_t i, n = smlp_tensor_numel(ctx->inputs[0]);
    float *gx = fp(ctx->grad_inputs[0]);
    float go;

    if (ctx->saved == NULL) {
        ctx->host->errorf(ctx->node, "no saved bytes in the backward");
        return SMLP_EINVAL;
    }
    if (ctx->saved_size < (size_t)n * sizeof(float)) {
        ctx->host->errorf(ctx->node, "saved bytes in the backward: %zu, "
                                     "%zu asked",
                          ctx->saved_size, (size_t)n * sizeof(float));
        return SMLP_EINVAL;
    }
    if (memcmp(ctx->saved, ctx->inputs[0]->data,
               (size_t)n * sizeof(float)) != 0) {
        ctx->host->errorf(ctx->node, "the saved bytes changed between the "
                                     "forward and the backward");
        return SMLP_EINVAL;
    }
    for (i = 0; gx != NULL && i < n; i++) {
        go = ctx->grad_outputs[0] != NULL ? fp(ctx->grad_outputs[0])[i] : 0;
        gx[i] = 3.0f * go;
    }
    return SMLP_OK;
}

/* ---- sum -------------------------------------------------------------- */

static int
sum_infer(struct smlp_infer_ctx *ctx)
{
    int j;

    for (j = 0; j < ctx->n_inputs; j++)
        if (ctx->inputs[j] == NULL ||
            ctx->inputs[j]->dtype != SMLP_DTYPE_F32)
            return fail(ctx, "inputs must be f32");
    ctx->outputs[0]->dtype = SMLP_DTYPE_F32;
    ctx->outputs[0]->rank = 0;
    return SMLP_OK;
}

static int
sum_run(struct smlp_kernel_ctx *ctx)
{
    double acc = 0;
    int64_t i, n;
    int j;

    for (j = 0; j < ctx->n_inputs; j++) {
        n = smlp_tensor_numel(ctx->inputs[j]);
        for (i = 0; i < n; i++)
            acc += fp(ctx->inputs[j])[i];
    }
    *fp(ctx->outputs[0]) = (float)acc;
    return SMLP_OK;
}

static int
sum_backward(struct smlp_backward_ctx *ctx)
{
    float go = ctx->grad_outputs[0] != NULL ? *fp(ctx->grad_outputs[0]) : 0;
    int64_t i, n;
    int j;

    for (j = 0; j < ctx->n_inputs; j++) {
        float *g = fp(ctx->grad_inputs[j]);
        n = smlp_tensor_numel(ctx->inputs[j]);
        for (i = 0; g != NULL && i < n; i++)
            g[i] = go;
    }
    return SMLP_OK;
}

/* ---- fwdws ------------------------------------------------------------ */

static int
fwdws_infer(struct smlp_infer_ctx *ctx)
{
    int rc = infer_unary(ctx);

    ctx->workspace = (size_t)smlp_tensor_numel(ctx->inputs[0]) *
                     sizeof(float);
    return rc;
}

static int
fwdws_run(struct smlp_kernel_ctx *ctx)
{
    int64_t i, n = smlp_tensor_numel(ctx->inputs[0]);
    const float *x = fp(ctx->inputs[0]);
    float *y = fp(ctx->outputs[0]), *tmp = ctx->workspace;

    if (ctx->workspace_size < (size_t)n * sizeof(float) || tmp == NULL) {
        ctx->host->errorf(ctx->node, "forward workspace of %zu bytes, "
                          "%zu needed", ctx->workspace_size,
                          (size_t)n * sizeof(float));
        return SMLP_EINVAL;
    }
    for (i = 0; i < n; i++)
        tmp[i] = 2.0f * x[i];
    memcpy(y, tmp, (size_t)n * sizeof(float));
    return SMLP_OK;
}

static int
fwdws_backward(struct smlp_backward_ctx *ctx)
{
    int64_t i, n = smlp_tensor_numel(ctx->inputs[0]);
    const float *go = fp(ctx->grad_outputs[0]);
    float *gx = fp(ctx->grad_inputs[0]), *tmp = ctx->workspace;

    if (ctx->workspace_size < (size_t)n * sizeof(float) || tmp == NULL) {
        ctx->host->errorf(ctx->node, "backward workspace of %zu bytes, "
                          "less than the forward's %zu",
                          ctx->workspace_size, (size_t)n * sizeof(float));
        return SMLP_EINVAL;
    }
    for (i = 0; i < n; i++)
        tmp[i] = 2.0f * (go != NULL ? go[i] : 0.0f);
    for (i = 0; gx != NULL && i < n; i++)
        gx[i] = tmp[i];
    return SMLP_OK;
}

/* ---- fail, bfail ------------------------------------------------------ */

static int
fail_run(struct smlp_kernel_ctx *ctx)
{
    ctx->host->errorf(ctx->node, "fails on purpose");
    return SMLP_EINVAL;
}

static int
fail_backward(struct smlp_backward_ctx *ctx)
{
    ctx->host->errorf(ctx->node, "fails on purpose");
    return SMLP_EINVAL;
}

static int
pass_backward(struct smlp_backward_ctx *ctx)
{
    int64_t i, n = smlp_tensor_numel(ctx->inputs[0]);
    const float *go = fp(ctx->grad_outputs[0]);
    float *gx = fp(ctx->grad_inputs[0]);

    for (i = 0; gx != NULL && i < n; i++)
        gx[i] = go != NULL ? go[i] : 0.0f;
    return SMLP_OK;
}

/* ---- count, watch: what ran at once ------------------------------------ */

#define WAIT_MS 30

static void
sleep_ms(void)
{
    struct timespec ts = {0, 1000000};

    nanosleep(&ts, NULL);
}

static atomic_int count_running;

static int
count_infer(struct smlp_infer_ctx *ctx)
{
    int64_t limit, *priv;
    int rc = ctx->host->attr_int(ctx->node, "limit", &limit);

    if (rc == SMLP_DECLINED)
        limit = 1;
    else if (rc != SMLP_OK)
        return rc;
    priv = ctx->host->alloc(sizeof(*priv));
    if (priv == NULL)
        return SMLP_ENOMEM;
    *priv = limit;
    ctx->priv = priv;
    ctx->priv_free = ctx->host->free;
    ctx->macs = 65536;
    return infer_unary(ctx);
}

/* Counts this instance in, waits, counts it out; the most seen. */
static int
count_instances(int64_t limit)
{
    int seen = atomic_fetch_add(&count_running, 1) + 1, now, ms;

    for (ms = 0; ms < WAIT_MS && seen <= limit; ms++) {
        sleep_ms();
        now = atomic_load(&count_running);
        if (now > seen)
            seen = now;
    }
    atomic_fetch_sub(&count_running, 1);
    return seen;
}

static int
count_run(struct smlp_kernel_ctx *ctx)
{
    int64_t limit = *(const int64_t *)ctx->priv;
    int seen = count_instances(limit);

    memcpy(ctx->outputs[0]->data, ctx->inputs[0]->data,
           (size_t)smlp_tensor_numel(ctx->inputs[0]) * sizeof(float));
    if (seen > limit) {
        ctx->host->errorf(ctx->node, "%d kernels ran at once, over the "
                          "limit of %lld", seen, (long long)limit);
        return SMLP_EINVAL;
    }
    return SMLP_OK;
}

static int
count_backward(struct smlp_backward_ctx *ctx)
{
    int64_t limit = *(const int64_t *)ctx->priv;
    int seen = count_instances(limit);

    if (seen > limit) {
        ctx->host->errorf(ctx->node, "%d backwards ran at once, over the "
                          "limit of %lld", seen, (long long)limit);
        return SMLP_EINVAL;
    }
    return pass_backward(ctx);
}

static int
watch_infer(struct smlp_infer_ctx *ctx)
{
    ctx->backward_workspace =
        (size_t)smlp_tensor_numel(ctx->inputs[0]) * sizeof(float);
    return infer_unary(ctx);
}

#define WS_MARK (-7.0f)

/* Whether y = x + 1, ws = WS_MARK and gx = go still hold (NULLs skip). */
static int
watch_holds(int64_t n, const float *x, const float *y, const float *ws,
            const float *go, const float *gx)
{
    int64_t i;

    for (i = 0; i < n; i++)
        if (y[i] != x[i] + 1.0f || (ws != NULL && ws[i] != WS_MARK) ||
            (go != NULL && gx != NULL && gx[i] != go[i]))
            return 0;
    return 1;
}

static int
watch_run(struct smlp_kernel_ctx *ctx)
{
    int64_t i, n = smlp_tensor_numel(ctx->inputs[0]);
    const float *x = fp(ctx->inputs[0]);
    float *y = fp(ctx->outputs[0]);
    int ms;

    for (i = 0; i < n; i++)
        y[i] = x[i] + 1.0f;
    for (ms = 0; ms < WAIT_MS; ms++) {
        sleep_ms();
        if (!watch_holds(n, x, y, NULL, NULL, NULL)) {
            ctx->host->errorf(ctx->node, "its input or output changed "
                              "while the kernel ran");
            return SMLP_EINVAL;
        }
    }
    return SMLP_OK;
}

static int
watch_backward(struct smlp_backward_ctx *ctx)
{
    int64_t i, n = smlp_tensor_numel(ctx->inputs[0]);
    const float *x = fp(ctx->inputs[0]), *y = fp(ctx->outputs[0]);
    const float *go = fp(ctx->grad_outputs[0]);
    float *gx = fp(ctx->grad_inputs[0]), *ws = ctx->workspace;
    int ms;

    if (ctx->workspace_size < (size_t)n * sizeof(float) || ws == NULL) {
        ctx->host->errorf(ctx->node, "backward workspace of %zu bytes, "
                          "%zu needed", ctx->workspace_size,
                          (size_t)n * sizeof(float));
        return SMLP_EINVAL;
    }
    for (i = 0; i < n; i++)
        ws[i] = WS_MARK;
    if (pass_backward(ctx) != SMLP_OK)
        return SMLP_EINVAL;
    for (ms = 0; ms < WAIT_MS; ms++) {
        sleep_ms();
        if (!watch_holds(n, x, y, ws, go, gx)) {
            ctx->host->errorf(ctx->node, "a tensor or the workspace of "
                              "its backward changed while it ran");
            return SMLP_EINVAL;
        }
    }
    return SMLP_OK;
}

/* ---- flat, nobwd ------------------------------------------------------ */

static int
flat_infer(struct smlp_infer_ctx *ctx)
{
    if (ctx->inputs[0]->dtype != SMLP_DTYPE_F32)
        return fail(ctx, "input must be f32");
    ctx->outputs[0]->dtype = SMLP_DTYPE_F32;
    ctx->outputs[0]->rank = 1;
    ctx->outputs[0]->shape[0] = smlp_tensor_numel(ctx->inputs[0]);
    return SMLP_OK;
}

static int
copy_run(struct smlp_kernel_ctx *ctx)
{
    memcpy(ctx->outputs[0]->data, ctx->inputs[0]->data,
           (size_t)smlp_tensor_numel(ctx->inputs[0]) * sizeof(float));
    return SMLP_OK;
}

/* ---- registration ----------------------------------------------------- */

#define KERNEL(var, fn)                                                      \
    static const struct smlp_kernel_def var##_k = {                          \
        sizeof(struct smlp_kernel_def), SMLP_ABI_VERSION, SMLP_DEVICE_CPU,   \
        F32, NULL, fn, 1, NULL};                                             \
    static const struct smlp_kernel_def *const var##_ks[] = {&var##_k, NULL}

#define OP(var, name, nin, nout, flags, infer, bwd, doc)                     \
    static const struct smlp_op_def var = {                                  \
        sizeof(struct smlp_op_def), SMLP_ABI_VERSION, name, nin, nin, nout,  \
        flags, NULL, infer, var##_ks, bwd, doc}

KERNEL(mul_op, mul_run);
KERNEL(add_op, add_run);
KERNEL(square_sum_op, square_sum_run);
KERNEL(split_op, split_run);
KERNEL(noise_op, noise_run);
KERNEL(flat_op, copy_run);
KERNEL(nobwd_op, copy_run);
static const struct smlp_kernel_def tofloat_op_k = {
    sizeof(struct smlp_kernel_def), SMLP_ABI_VERSION, SMLP_DEVICE_CPU,
    1u << SMLP_DTYPE_I32, NULL, tofloat_run, 1, NULL};
static const struct smlp_kernel_def *const tofloat_op_ks[] = {&tofloat_op_k,
                                                               NULL};
KERNEL(stopgrad_op, copy_run);
KERNEL(stash_op, stash_run);
KERNEL(sum_op, sum_run);
KERNEL(fwdws_op, fwdws_run);
KERNEL(fail_op, fail_run);
KERNEL(bfail_op, copy_run);
KERNEL(count_op, count_run);
KERNEL(watch_op, watch_run);

OP(mul_op, "gradfix.mul", 2, 1, 0, infer_binary, mul_backward, "a * b");
OP(add_op, "gradfix.add", 2, 1, 0, infer_binary, add_backward, "a + b");
OP(square_sum_op, "gradfix.square_sum", 1, 1, 0, square_sum_infer,
   square_sum_backward, "sum of squares, rank 0");
OP(split_op, "gradfix.split", 1, 2, 0, split_infer, split_backward,
   "(x, indices as i32)");
OP(noise_op, "gradfix.noise", 1, 2, 0, noise_infer, noise_backward,
   "(x * m, m), m seeded by (seed, step)");
OP(flat_op, "gradfix.flat", 1, 1, SMLP_OP_VIEW, flat_infer, NULL,
   "x as a vector (a view)");
OP(nobwd_op, "gradfix.nobwd", 1, 1, 0, infer_unary, NULL,
   "a copy without backward");
OP(tofloat_op, "gradfix.tofloat", 1, 1, 0, tofloat_infer, NULL,
   "an i32 tensor as f32, without backward");
OP(stopgrad_op, "gradfix.stopgrad", 1, 1, SMLP_OP_NO_GRAD, infer_unary,
   NULL, "a copy that no gradient goes through");
OP(stash_op, "gradfix.stash", 1, 1, 0, stash_infer, stash_backward,
   "3 * x, x kept in its saved bytes");
static const struct smlp_op_def sum_op = {
    sizeof(struct smlp_op_def), SMLP_ABI_VERSION, "gradfix.sum", 1, 8, 1, 0,
    NULL, sum_infer, sum_op_ks, sum_backward,
    "the sum of every element of its inputs, rank 0"};
OP(fwdws_op, "gradfix.fwdws", 1, 1, 0, fwdws_infer, fwdws_backward,
   "2 * x through a forward workspace");
OP(fail_op, "gradfix.fail", 1, 1, 0, infer_unary, pass_backward,
   "a kernel that fails");
OP(bfail_op, "gradfix.bfail", 1, 1, 0, infer_unary, fail_backward,
   "a copy whose backward fails");
OP(count_op, "gradfix.count", 1, 1, 0, count_infer, count_backward,
   "a copy that fails when more than `limit` ran at once");
OP(watch_op, "gradfix.watch", 1, 1, 0, watch_infer, watch_backward,
   "x + 1, failing when its tensors change while it runs");

static const struct smlp_op_def *const ops[] = {
    &mul_op, &add_op, &square_sum_op, &split_op, &noise_op, &flat_op,
    &nobwd_op, &tofloat_op, &stopgrad_op, &stash_op, &sum_op, &fwdws_op,
    &fail_op, &bfail_op, &count_op, &watch_op, NULL};
static const struct smlp_plugin_def def = {
    sizeof(def), SMLP_ABI_VERSION, "gradfix", "1", SMLP_BUILD_SIGNATURE, ops,
    NULL};
SMLP_PLUGIN_DEFINE(def)
