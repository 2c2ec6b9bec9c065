/*
 * device_cuda.c - the CUDA device: memory, copies, the stream and fences
 * (built with configure --with-cuda; interface and copy model in
 * device.h, the user's view in docs/gpu.md).
 *
 * A session on CUDA owns one non-blocking stream on device 0 (pick
 * another with CUDA_VISIBLE_DEVICES), a device arena planned like the
 * host one (s->dev_plan), one block for the device copies of parameters
 * and state, and two events per device node that time it on the GPU
 * (device_cuda_bwd.c adds what a backward on the GPU needs).
 * Every CUDA call is made from the thread running the session (the loop
 * thread); the only code CUDA runs on its own threads is the fences' host
 * function, smlp__sched_fence_cb in sched.c, which calls no CUDA API.
 * Host memory (the arena and the parameters, when 1 MiB or more) is
 * page-locked with cudaHostRegister so that copies are asynchronous;
 * otherwise, or when that fails, the copies still work, synchronously.
 */
#include <stdio.h>
#include <string.h>

#include "device_cuda.h"

/* Host blocks at least this big are page-locked (see smlp__device_alloc). */
#define PIN_MIN ((uint64_t)1 << 20)

#define ROUND(x) SMLP__ROUND(x)

static uint64_t
tensor_bytes(const struct smlp__tensor_rt *t)
{
    return smlp__cuda_tensor_bytes(&t->t);
}

int
smlp__cuda_fail(smlp_session_t *s, cudaError_t e, const char *what)
{
    if (!s->failed)
        smlp__session_fail(s, SMLP_EDEVICE,
                           "%s: device cuda: %s: %s (%s, code %d)",
                           s->graph->source, what, cudaGetErrorString(e),
                           cudaGetErrorName(e), (int)e);
    s->failed = 1;
    return SMLP_EDEVICE;
}

int
smlp__cuda_node_events(smlp_session_t *s, cudaEvent_t *ev, int32_t id,
                       int32_t *n_ev, struct smlp_error *err)
{
    cudaError_t e = cudaEventCreate(&ev[2 * id]);

    if (e == cudaSuccess)
        e = cudaEventCreate(&ev[2 * id + 1]);
    if (*n_ev < 2 * id + 2)
        *n_ev = 2 * id + 2; /* destroyed at close, created or not */
    if (e == cudaSuccess)
        return SMLP_OK;
    (void)cudaGetLastError();
    return smlp__seterr(err, SMLP_EDEVICE,
                        "%s: device cuda: cannot create events: %s",
                        s->graph->source, cudaGetErrorString(e));
}

int
smlp__cuda_fail_node(struct smlp__node_rt *n, cudaError_t e, const char *what)
{
    snprintf(n->node.err, sizeof(n->node.err), "device cuda: %s: %s (%s)",
             what, cudaGetErrorString(e), cudaGetErrorName(e));
    return SMLP_EDEVICE;
}

int
smlp__device_open(smlp_session_t *s, struct smlp_error *err)
{
    struct cuda_state *c;
    cudaError_t e;
    int count = 0;

    e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return smlp__seterr(err, SMLP_EDEVICE,
                            "%s: device cuda: no CUDA device: %s (%s, code "
                            "%d)",
                            s->graph->source, cudaGetErrorString(e),
                            cudaGetErrorName(e), (int)e);
    }
    if (count < 1)
        return smlp__seterr(err, SMLP_EDEVICE,
                            "%s: device cuda: no CUDA device: the driver "
                            "reports none",
                            s->graph->source);
    c = smlp__calloc(1, sizeof(*c));
    if (c == NULL)
        return smlp__seterr(err, SMLP_ENOMEM, "out of memory");
    s->dev = c;
    c->device = 0;
    e = cudaSetDevice(c->device);
    if (e == cudaSuccess)
        e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
    if (e == cudaSuccess)
        e = cudaEventCreate(&c->base);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return smlp__seterr(err, SMLP_EDEVICE,
                            "%s: device cuda: cannot open device %d: %s "
                            "(%s, code %d)",
                            s->graph->source, c->device,
                            cudaGetErrorString(e), cudaGetErrorName(e),
                            (int)e);
    }
    return SMLP_OK;
}

/* Device views of node n's tensors, and its device workspace size. */
static int
node_views(smlp_session_t *s, struct smlp__node_rt *n)
{
    const struct smlp__node_ir *nir = n->node.ir;
    int32_t j, ni = nir->n_inputs, no = nir->n_outputs;

    n->dev_t = smlp__calloc((size_t)(ni + no) + 1, sizeof(*n->dev_t));
    n->dev_in = smlp__calloc((size_t)ni + 1, sizeof(*n->dev_in));
    n->dev_out = smlp__calloc((size_t)no + 1, sizeof(*n->dev_out));
    if (n->dev_t == NULL || n->dev_in == NULL || n->dev_out == NULL)
        return SMLP_ENOMEM;
    for (j = 0; j < ni; j++) {
        if (nir->inputs[j] < 0)
            continue;
        n->dev_t[j] = s->tensors[nir->inputs[j]].t;
        n->dev_t[j].data = s->tensors[nir->inputs[j]].dev_data;
        n->dev_in[j] = &n->dev_t[j];
    }
    for (j = 0; j < no; j++) {
        n->dev_t[ni + j] = s->tensors[nir->outputs[j]].t;
        n->dev_t[ni + j].data = s->tensors[nir->outputs[j]].dev_data;
        n->dev_out[j] = &n->dev_t[ni + j];
    }
    n->workspace = n->dev_ws_buffer >= 0
                       ? s->dev_plan.buffers[n->dev_ws_buffer].size
                       : 0;
    return SMLP_OK;
}

int
smlp__device_alloc(smlp_session_t *s, struct smlp_error *err)
{
    struct cuda_state *c = s->dev;
    uint64_t off = 0;
    cudaError_t e;
    int32_t i;

    for (i = 0; i < s->n_tensors; i++) {
        struct smlp__tensor_rt *t = &s->tensors[i];
        if ((t->kind == SMLP__TENSOR_PARAMETER ||
             t->kind == SMLP__TENSOR_STATE) &&
            (t->res & SMLP__RES_DEV))
            off += ROUND(tensor_bytes(t));
    }
    e = cudaMalloc(&c->arena, s->dev_plan.arena_bytes + SMLP__ALIGN);
    if (e == cudaSuccess && off > 0)
        e = cudaMalloc(&c->params, off);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return smlp__seterr(err, SMLP_ENOMEM,
                            "%s: device cuda: cannot allocate %llu bytes "
                            "(activations %llu + parameters %llu): %s",
                            s->graph->source,
                            (unsigned long long)(s->dev_plan.arena_bytes +
                                                 off),
                            (unsigned long long)s->dev_plan.arena_bytes,
                            (unsigned long long)off, cudaGetErrorString(e));
    }
    off = 0;
    for (i = 0; i < s->n_tensors; i++) {
        struct smlp__tensor_rt *t = &s->tensors[i];

        if (t->dev_buffer >= 0) {
            t->dev_data = (char *)c->arena +
                          s->dev_plan.buffers[t->dev_buffer].offset;
        } else if ((t->kind == SMLP__TENSOR_PARAMETER ||
                    t->kind == SMLP__TENSOR_STATE) &&
                   (t->res & SMLP__RES_DEV)) {
            t->dev_data = (char *)c->params + off;
            t->dirty = 1;
            off += ROUND(tensor_bytes(t));
        }
    }
    c->ev = smlp__calloc((size_t)s->n_nodes * 2 + 1, sizeof(*c->ev));
    if (c->ev == NULL)
        return smlp__seterr(err, SMLP_ENOMEM, "out of memory");
    for (i = 0; i < s->n_nodes; i++) {
        struct smlp__node_rt *n = &s->nodes[i];

        if (n->device == SMLP_DEVICE_CPU)
            continue;
        if (node_views(s, n) != SMLP_OK)
            return smlp__seterr(err, SMLP_ENOMEM, "out of memory");
        if (smlp__cuda_node_events(s, c->ev, i, &c->n_ev, err) != SMLP_OK)
            return SMLP_EDEVICE;
    }
    /* Page-locked host memory makes the copies asynchronous.  Only big
     * blocks (which malloc maps on pages of their own, so no registration
     * shares a page with another): small ones copy synchronously, which
     * is as correct and costs little. */
    if (s->plan.arena_bytes >= PIN_MIN &&
        cudaHostRegister(s->arena, s->plan.arena_bytes + SMLP__ALIGN,
                         cudaHostRegisterDefault) == cudaSuccess)
        c->arena_pinned = 1;
    if (s->param_bytes >= PIN_MIN &&
        cudaHostRegister(s->params, s->param_bytes + SMLP__ALIGN,
                         cudaHostRegisterDefault) == cudaSuccess)
        c->params_pinned = 1;
    (void)cudaGetLastError();
    if (s->ag != NULL && s->ag->on_dev)
        return smlp__cuda_bwd_alloc(s, err);
    return SMLP_OK;
}

int
smlp__device_run_begin(smlp_session_t *s)
{
    struct cuda_state *c = s->dev;
    cudaError_t e;
    int32_t i;

    e = cudaSetDevice(c->device);
    if (e == cudaSuccess)
        e = cudaEventRecord(c->base, c->stream);
    for (i = 0; i < s->n_tensors && e == cudaSuccess; i++) {
        struct smlp__tensor_rt *t = &s->tensors[i];

        if (t->dev_data == NULL)
            continue;
        if (t->kind == SMLP__TENSOR_INPUT ||
            ((t->kind == SMLP__TENSOR_PARAMETER ||
              t->kind == SMLP__TENSOR_STATE) &&
             t->dirty)) {
            e = cudaMemcpyAsync(t->dev_data, t->t.data, tensor_bytes(t),
                                cudaMemcpyHostToDevice, c->stream);
            t->dirty = 0;
        }
    }
    if (e != cudaSuccess)
        return smlp__cuda_fail(s, e,
                               "cannot copy inputs and parameters to the GPU");
    return SMLP_OK;
}

int
smlp__device_launch(smlp_session_t *s, struct smlp__node_rt *n)
{
    struct cuda_state *c = s->dev;
    const struct smlp__node_ir *nir = n->node.ir;
    int32_t id = (int32_t)(n - s->nodes), j;
    struct smlp_kernel_ctx ctx;
    cudaError_t e;
    int rc;

    memset(&ctx, 0, sizeof(ctx));
    ctx.size = sizeof(ctx);
    ctx.abi = SMLP_ABI_VERSION;
    ctx.host = &smlp__host_api;
    ctx.node = &n->node;
    ctx.priv = n->priv;
    ctx.n_inputs = nir->n_inputs;
    ctx.n_outputs = nir->n_outputs;
    ctx.inputs = (const struct smlp_tensor *const *)n->dev_in;
    ctx.outputs = n->dev_out;
    if (n->dev_ws_buffer >= 0) {
        ctx.workspace =
            (char *)c->arena + s->dev_plan.buffers[n->dev_ws_buffer].offset;
        ctx.workspace_size = n->workspace;
    }
    if (n->saved_buffer >= 0) { /* its backward runs on the device */
        ctx.saved =
            (char *)c->arena + s->dev_plan.buffers[n->saved_buffer].offset;
        ctx.saved_size = n->saved_bytes;
    }
    ctx.training = s->opts.training;
    ctx.threads = 1;
    ctx.seed = s->opts.seed;
    ctx.step = s->step;
    ctx.stream = c->stream;
    e = cudaEventRecord(c->ev[2 * id], c->stream);
    if (e != cudaSuccess)
        return smlp__cuda_fail_node(n, e, "cannot record an event");
    rc = smlp__node_status(&n->node, n->kernel->def.run(&ctx));
    if (rc < 0)
        return rc;
    /* Outputs the host needs (CPU consumers, graph outputs). */
    for (j = 0; j < nir->n_outputs; j++) {
        struct smlp__tensor_rt *t = &s->tensors[nir->outputs[j]];

        if (!(t->res & SMLP__RES_HOST) || tensor_bytes(t) == 0)
            continue;
        e = cudaMemcpyAsync(t->t.data, t->dev_data, tensor_bytes(t),
                            cudaMemcpyDeviceToHost, c->stream);
        if (e != cudaSuccess)
            return smlp__cuda_fail_node(n, e,
                                        "cannot copy an output to the host");
    }
    e = cudaEventRecord(c->ev[2 * id + 1], c->stream);
    if (e != cudaSuccess)
        return smlp__cuda_fail_node(n, e, "cannot record an event");
    return SMLP_OK;
}

int
smlp__device_push(smlp_session_t *s, struct smlp__node_rt *n)
{
    struct cuda_state *c = s->dev;
    const struct smlp__node_ir *nir = n->node.ir;
    cudaError_t e;
    int32_t j;

    for (j = 0; j < nir->n_outputs; j++) {
        struct smlp__tensor_rt *t = &s->tensors[nir->outputs[j]];

        if (!(t->res & SMLP__RES_DEV) || tensor_bytes(t) == 0)
            continue;
        e = cudaMemcpyAsync(t->dev_data, t->t.data, tensor_bytes(t),
                            cudaMemcpyHostToDevice, c->stream);
        if (e != cudaSuccess)
            return smlp__cuda_fail_node(n, e,
                                        "cannot copy an output to the GPU");
    }
    return SMLP_OK;
}

int
smlp__device_fence(smlp_session_t *s, struct smlp__fence *f)
{
    struct cuda_state *c = s->dev;
    cudaError_t e = cudaLaunchHostFunc(c->stream, smlp__sched_fence_cb, f);

    if (e != cudaSuccess)
        return smlp__cuda_fail(s, e, "cannot enqueue a fence");
    return SMLP_OK;
}

int
smlp__device_poll(smlp_session_t *s)
{
    struct cuda_state *c = s->dev;
    cudaError_t e = cudaStreamQuery(c->stream);

    if (e == cudaSuccess || e == cudaErrorNotReady)
        return SMLP_OK;
    return smlp__cuda_fail(s, e, "the stream failed");
}

int
smlp__device_run_end(smlp_session_t *s)
{
    struct cuda_state *c = s->dev;
    cudaError_t e;
    float ms;
    int32_t i;

    e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess)
        return smlp__cuda_fail(s, e, "the run failed on the GPU");
    /* State that device kernels may have updated (batch-norm statistics)
     * goes back to its host master copy. */
    for (i = 0; i < s->n_tensors; i++) {
        struct smlp__tensor_rt *t = &s->tensors[i];

        if (t->kind != SMLP__TENSOR_STATE || t->dev_data == NULL)
            continue;
        e = cudaMemcpy(t->t.data, t->dev_data, tensor_bytes(t),
                       cudaMemcpyDeviceToHost);
        if (e != cudaSuccess)
            return smlp__cuda_fail(s, e, "cannot copy state back to the host");
    }
    if (s->failed)
        return SMLP_OK; /* some nodes never ran: no times */
    for (i = 0; i < s->n_nodes; i++) {
        struct smlp__node_rt *n = &s->nodes[i];

        if (n->device == SMLP_DEVICE_CPU)
            continue;
        if (cudaEventElapsedTime(&ms, c->base, c->ev[2 * i]) == cudaSuccess)
            n->t0 = s->run_t0 + 1e3 * ms;
        if (cudaEventElapsedTime(&ms, c->base, c->ev[2 * i + 1]) ==
            cudaSuccess)
            n->t1 = s->run_t0 + 1e3 * ms;
    }
    (void)cudaGetLastError();
    return SMLP_OK;
}

void
smlp__device_close(smlp_session_t *s)
{
    struct cuda_state *c = s->dev;
    int32_t i;

    if (c == NULL)
        return;
    cudaSetDevice(c->device);
    if (c->stream != NULL)
        cudaStreamSynchronize(c->stream);
    smlp__cuda_bwd_free(s);
    for (i = 0; i < c->n_ev; i++)
        if (c->ev[i] != NULL)
            cudaEventDestroy(c->ev[i]);
    smlp__free(c->ev);
    if (c->base != NULL)
        cudaEventDestroy(c->base);
    cudaFree(c->arena);
    cudaFree(c->params);
    if (c->arena_pinned)
        cudaHostUnregister(s->arena);
    if (c->params_pinned)
        cudaHostUnregister(s->params);
    if (c->stream != NULL)
        cudaStreamDestroy(c->stream);
    (void)cudaGetLastError();
    smlp__free(c);
    s->dev = NULL;
}
