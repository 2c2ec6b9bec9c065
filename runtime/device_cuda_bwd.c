/*
 * device_cuda_bwd.c - the backward on the GPU (s->ag->on_dev): what
 * autograd.c and sched.c do for a CPU backward, enqueued in backward
 * order on the session's stream (autograd.c decides when; docs/gpu.md,
 * "Training").
 *
 * Memory: plan.c planned the gradient stores, the backward workspaces
 * and the saved bytes on the device's timeline (the forward's steps,
 * then the backward's); the parameters' gradients have a device block of
 * their own (c->grads, laid out as the host block s->ag->grads), copied
 * to the host at the end, where smlp_session_grad and the optimizer read
 * them.  Order: one stream and the nodes enqueued in backward order, so
 * a node's backward runs after the backwards that send it gradients, and
 * every reuse of device bytes is ordered without edges.  Sums: the
 * contributions to a gradient are added in autograd.c's order with
 * cublasSaxpy (alpha 1: y + x rounded once, the CPU's float add), so the
 * results equal a CPU backward's when the kernels compute the same.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "device_cuda.h"

#define STR_(x) #x
#define STR(x) STR_(x)
#define BLAS_SONAME "libcublas.so." STR(CUBLAS_VER_MAJOR)

/* Host blocks at least this big are page-locked (as device_cuda.c). */
#define PIN_MIN ((uint64_t)1 << 20)

/* Device views of node n's gradients, and its device workspace size. */
static int
node_views(smlp_session_t *s, struct smlp__node_rt *n)
{
    const struct smlp__autograd *ag = s->ag;
    const struct smlp__node_ir *nir = n->node.ir;
    int32_t j, ni = nir->n_inputs, no = nir->n_outputs;

    n->dgin_t = smlp__calloc((size_t)ni + 1, sizeof(*n->dgin_t));
    n->dgin = smlp__calloc((size_t)ni + 1, sizeof(*n->dgin));
    n->dgout_t = smlp__calloc((size_t)no + 1, sizeof(*n->dgout_t));
    n->dgout = smlp__calloc((size_t)no + 1, sizeof(*n->dgout));
    if (n->dgin_t == NULL || n->dgin == NULL || n->dgout_t == NULL ||
        n->dgout == NULL)
        return SMLP_ENOMEM;
    for (j = 0; j < ni; j++) {
        if (n->gin[j] == NULL)
            continue;
        n->dgin_t[j] = n->gin_t[j];
        n->dgin_t[j].data = ag->stores[n->gin_store[j]].dev_data;
        n->dgin[j] = &n->dgin_t[j];
    }
    for (j = 0; j < no; j++) {
        const struct smlp__tensor_rt *t = &s->tensors[nir->outputs[j]];

        if (n->gout[j] == NULL)
            continue;
        n->dgout_t[j] = t->grad;
        n->dgout_t[j].data = ag->stores[t->gstore].dev_data;
        n->dgout[j] = &n->dgout_t[j];
    }
    if (n->bwd_ws_buffer >= 0)
        n->bwd_workspace = s->dev_plan.buffers[n->bwd_ws_buffer].size;
    return SMLP_OK;
}

int
smlp__cuda_bwd_alloc(smlp_session_t *s, struct smlp_error *err)
{
    struct cuda_state *c = s->dev;
    struct smlp__autograd *ag = s->ag;
    uint64_t off = 0;
    cudaError_t e;
    int32_t k;

    e = cudaMalloc(&c->grads, ag->grad_bytes + SMLP__ALIGN);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return smlp__seterr(err, SMLP_ENOMEM,
                            "%s: device cuda: cannot allocate %llu bytes of "
                            "gradients: %s",
                            s->graph->source,
                            (unsigned long long)ag->grad_bytes,
                            cudaGetErrorString(e));
    }
    for (k = 0; k < ag->n_stores; k++) {
        struct smlp__gstore *st = &ag->stores[k];

        if (k < ag->n_trainable) {
            st->dev_data = (char *)c->grads + off;
            off += SMLP__ROUND(st->bytes);
        } else if (st->buffer >= 0) {
            st->dev_data =
                (char *)c->arena + s->dev_plan.buffers[st->buffer].offset;
        }
    }
    c->bev = smlp__calloc((size_t)s->n_nodes * 2 + 1, sizeof(*c->bev));
    if (c->bev == NULL)
        return smlp__seterr(err, SMLP_ENOMEM, "out of memory");
    for (k = 0; k < ag->n_bwd; k++) {
        int32_t id = ag->border[k];

        if (node_views(s, &s->nodes[id]) != SMLP_OK)
            return smlp__seterr(err, SMLP_ENOMEM, "out of memory");
        if (smlp__cuda_node_events(s, c->bev, id, &c->n_bev, err) != SMLP_OK)
            return SMLP_EDEVICE;
    }
    if (ag->grad_bytes >= PIN_MIN &&
        cudaHostRegister(ag->grads, ag->grad_bytes + SMLP__ALIGN,
                         cudaHostRegisterDefault) == cudaSuccess)
        c->grads_pinned = 1;
    (void)cudaGetLastError();
    return SMLP_OK;
}

void
smlp__cuda_bwd_free(smlp_session_t *s)
{
    struct cuda_state *c = s->dev;
    int32_t i;

    for (i = 0; i < c->n_bev; i++)
        if (c->bev[i] != NULL)
            cudaEventDestroy(c->bev[i]);
    smlp__free(c->bev);
    c->bev = NULL;
    c->n_bev = 0;
    if (c->blas != NULL)
        c->blas_destroy(c->blas);
    c->blas = NULL;
    if (c->blas_lib != NULL)
        dlclose(c->blas_lib);
    c->blas_lib = NULL;
    if (c->grads_pinned && s->ag != NULL)
        cudaHostUnregister(s->ag->grads);
    c->grads_pinned = 0;
    cudaFree(c->grads);
    c->grads = NULL;
}

/* A cuBLAS symbol: one the process has already (a stand-in), else from
 * the library, opened here once. */
static void *
blas_sym(struct cuda_state *c, const char *name)
{
    void *f = dlsym(RTLD_DEFAULT, name);

    if (f != NULL)
        return f;
    if (c->blas_lib == NULL)
        c->blas_lib = dlopen(BLAS_SONAME, RTLD_NOW | RTLD_LOCAL);
    return c->blas_lib != NULL ? dlsym(c->blas_lib, name) : NULL;
}

/* Records a failure of the backward that no node caused. */
#define FAIL(s, ...) ((s)->failed = 1, smlp__session_fail((s), __VA_ARGS__))

/* cuBLAS on the session's stream, on the first sum of a backward. */
static int
blas_open(smlp_session_t *s)
{
    struct cuda_state *c = s->dev;
    cublasStatus_t (*create)(cublasHandle_t *);
    cublasStatus_t (*set_stream)(cublasHandle_t, cudaStream_t);
    cublasStatus_t st;

    if (c->blas != NULL)
        return SMLP_OK;
    *(void **)&create = blas_sym(c, "cublasCreate_v2");
    *(void **)&set_stream = blas_sym(c, "cublasSetStream_v2");
    *(void **)&c->blas_destroy = blas_sym(c, "cublasDestroy_v2");
    *(void **)&c->blas_saxpy = blas_sym(c, "cublasSaxpy_v2");
    if (create == NULL || set_stream == NULL || c->blas_destroy == NULL ||
        c->blas_saxpy == NULL)
        return FAIL(s, SMLP_EDEVICE,
                                  "%s: device cuda: cannot load %s, which "
                                  "sums gradients on the GPU: %s",
                                  s->graph->source, BLAS_SONAME,
                                  c->blas_lib == NULL ? dlerror()
                                                      : "a symbol is missing");
    st = create(&c->blas);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = set_stream(c->blas, c->stream);
    if (st != CUBLAS_STATUS_SUCCESS) {
        if (c->blas != NULL)
            c->blas_destroy(c->blas);
        c->blas = NULL;
        return FAIL(s, SMLP_EDEVICE,
                                  "%s: device cuda: cuBLAS failed to start "
                                  "(status %d)",
                                  s->graph->source, (int)st);
    }
    return SMLP_OK;
}

/* Adds tensor t's other contributions into its gradient, in order. */
static int
sum_contribs(smlp_session_t *s, int32_t t)
{
    static const float one = 1.0f;
    struct cuda_state *c = s->dev;
    const struct smlp__autograd *ag = s->ag;
    float *g = ag->stores[s->tensors[t].gstore].dev_data;
    int64_t n = smlp_tensor_numel(&s->tensors[t].t);
    int32_t e;

    if (ag->coff[t + 1] - ag->coff[t] < 2)
        return SMLP_OK;
    if (blas_open(s) != SMLP_OK)
        return SMLP_EDEVICE;
    for (e = ag->coff[t] + 1; e < ag->coff[t + 1]; e++) {
        const float *x = ag->stores[ag->contrib[e].store].dev_data;
        int64_t done, m;

        for (done = 0; done < n; done += m) {
            m = n - done < (1 << 30) ? n - done : (1 << 30);
            if (c->blas_saxpy(c->blas, (int)m, &one, x + done, 1, g + done,
                              1) != CUBLAS_STATUS_SUCCESS)
                return FAIL(
                    s, SMLP_EDEVICE,
                    "%s: device cuda: cannot sum the gradient of '%s'",
                    s->graph->source, s->graph->ir->tensors[t].name);
        }
    }
    return SMLP_OK;
}

/* Enqueues node n's backward: the sums into its outputs' gradients, then
 * its kernel or copy.  A failing kernel has described itself. */
static int
node_backward(smlp_session_t *s, struct smlp__node_rt *n)
{
    struct cuda_state *c = s->dev;
    const struct smlp__node_ir *nir = n->node.ir;
    struct smlp_backward_ctx ctx;
    cudaError_t e = cudaSuccess;
    int32_t j;
    int rc;

    for (j = 0; j < nir->n_outputs; j++)
        if (s->tensors[nir->outputs[j]].need_grad &&
            (rc = sum_contribs(s, nir->outputs[j])) != SMLP_OK)
            return rc;
    switch (n->bwd) {
    case SMLP__BWD_ALIAS:
        return SMLP_OK;
    case SMLP__BWD_COPY:
        if (n->dgin[0] != NULL && n->dgout[0] != NULL)
            e = cudaMemcpyAsync(n->dgin[0]->data, n->dgout[0]->data,
                                smlp__cuda_tensor_bytes(n->dgin[0]),
                                cudaMemcpyDeviceToDevice, c->stream);
        else if (n->dgin[0] != NULL)
            e = cudaMemsetAsync(n->dgin[0]->data, 0,
                                smlp__cuda_tensor_bytes(n->dgin[0]),
                                c->stream);
        return e == cudaSuccess
                   ? SMLP_OK
                   : smlp__cuda_fail_node(n, e, "cannot copy a gradient");
    default:
        break;
    }
    smlp__backward_ctx_init(s, n, &ctx);
    ctx.inputs = (const struct smlp_tensor *const *)n->dev_in;
    ctx.outputs = (const struct smlp_tensor *const *)n->dev_out;
    ctx.grad_outputs = (const struct smlp_tensor *const *)n->dgout;
    ctx.grad_inputs = n->dgin;
    if (n->bwd_ws_buffer >= 0) {
        ctx.workspace =
            (char *)c->arena + s->dev_plan.buffers[n->bwd_ws_buffer].offset;
        ctx.workspace_size = n->bwd_workspace;
    }
    if (n->saved_buffer >= 0) {
        ctx.saved =
            (char *)c->arena + s->dev_plan.buffers[n->saved_buffer].offset;
        ctx.saved_size = n->saved_bytes;
    }
    ctx.stream = c->stream;
    return smlp__node_status(&n->node, n->kernel->def.backward(&ctx));
}

/* The parameters' gradients: sums, zeros for those the loss does not
 * reach, then the copy to the host block. */
static int
param_grads(smlp_session_t *s)
{
    struct cuda_state *c = s->dev;
    const struct smlp__autograd *ag = s->ag;
    cudaError_t e = cudaSuccess;
    int32_t k;
    int rc;

    for (k = 0; k < ag->n_trainable; k++) {
        int32_t p = ag->trainable[k];

        if (ag->coff[p] == ag->coff[p + 1])
            e = cudaMemsetAsync(ag->stores[k].dev_data, 0,
                                ag->stores[k].bytes, c->stream);
        else if ((rc = sum_contribs(s, p)) != SMLP_OK)
            return rc;
        if (e != cudaSuccess)
            return smlp__cuda_fail(s, e, "cannot zero a gradient");
    }
    e = cudaMemcpyAsync(ag->grads, c->grads, ag->grad_bytes,
                        cudaMemcpyDeviceToHost, c->stream);
    if (e != cudaSuccess)
        return smlp__cuda_fail(s, e, "cannot copy the gradients to the host");
    return SMLP_OK;
}

int
smlp__device_backward(smlp_session_t *s)
{
    static const float one = 1.0f;
    struct cuda_state *c = s->dev;
    struct smlp__autograd *ag = s->ag;
    cudaError_t e;
    int32_t k;
    int rc = SMLP_OK;
    float ms;

    e = cudaSetDevice(c->device);
    if (e == cudaSuccess && s->tensors[ag->loss].need_grad)
        e = cudaMemcpyAsync(ag->stores[s->tensors[ag->loss].gstore].dev_data,
                            &one, sizeof(one), cudaMemcpyHostToDevice,
                            c->stream);
    if (e != cudaSuccess)
        rc = smlp__cuda_fail(s, e, "cannot start the backward");
    for (k = 0; k < ag->n_bwd && rc == SMLP_OK; k++) {
        int32_t id = ag->border[k];
        struct smlp__node_rt *n = &s->nodes[id];

        n->node.err[0] = '\0';
        n->bthread = 0;
        e = cudaEventRecord(c->bev[2 * id], c->stream);
        rc = e == cudaSuccess ? node_backward(s, n)
                              : smlp__cuda_fail_node(n, e, "cannot record "
                                                           "an event");
        if (rc == SMLP_OK && (e = cudaEventRecord(c->bev[2 * id + 1],
                                                  c->stream)) != cudaSuccess)
            rc = smlp__cuda_fail_node(n, e, "cannot record an event");
        if (rc < 0 && !s->failed) {
            smlp__session_fail(s, SMLP_EKERNEL,
                               "%s: node %d '%s' (%s): backward failed: %s",
                               s->graph->source, n->node.index,
                               n->node.ir->name, n->node.ir->op,
                               n->node.err[0] ? n->node.err
                                              : smlp_strerror(rc));
            s->failed = 1;
            rc = SMLP_EKERNEL;
        }
    }
    if (rc == SMLP_OK)
        rc = param_grads(s);
    e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess)
        return smlp__cuda_fail(s, e, "the backward failed on the GPU");
    if (rc != SMLP_OK)
        return rc;
    for (k = 0; k < ag->n_bwd; k++) {
        int32_t id = ag->border[k];
        struct smlp__node_rt *n = &s->nodes[id];

        if (cudaEventElapsedTime(&ms, c->base, c->bev[2 * id]) == cudaSuccess)
            n->bt0 = s->run_t0 + 1e3 * ms;
        if (cudaEventElapsedTime(&ms, c->base, c->bev[2 * id + 1]) ==
            cudaSuccess)
            n->bt1 = s->run_t0 + 1e3 * ms;
    }
    (void)cudaGetLastError();
    return SMLP_OK;
}
