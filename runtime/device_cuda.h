/*
 * device_cuda.h - what the CUDA device's two files share (internal to a
 * build with CUDA): device_cuda.c (memory, copies, the stream, fences,
 * the forward's launches) and device_cuda_bwd.c (the backward on the
 * GPU).  Their interface to the rest of the runtime is device.h.
 */
#ifndef SMLP_DEVICE_CUDA_H
#define SMLP_DEVICE_CUDA_H

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "device.h"

struct cuda_state {
    int device;
    cudaStream_t stream;
    void *arena;      /* device arena, s->dev_plan.arena_bytes */
    void *params;     /* device copies of parameters and state */
    int arena_pinned; /* s->arena is registered with CUDA */
    int params_pinned;
    cudaEvent_t base;  /* recorded when a run starts */
    cudaEvent_t *ev;   /* per node: start, end (device nodes only) */
    int32_t n_ev;
    /* A backward on the device (s->ag->on_dev; device_cuda_bwd.c). */
    void *grads;       /* the parameters' gradients, as s->ag->grads */
    cudaEvent_t *bev;  /* per node: backward start, end */
    int32_t n_bev;
    int grads_pinned;  /* s->ag->grads is registered with CUDA */
    /* cuBLAS for the gradient sums (y += x: cublasSaxpy with alpha 1,
     * the same rounding as the CPU's float add), found on the first
     * backward: symbols already loaded in the process first (a test's
     * stand-in), else libcublas.so.<major> opened here. */
    void *blas_lib;
    cublasHandle_t blas;
    cublasStatus_t (*blas_destroy)(cublasHandle_t);
    cublasStatus_t (*blas_saxpy)(cublasHandle_t, int, const float *,
                                 const float *, int, float *, int);
};

#define SMLP__ROUND(x)                                                       \
    (((x) + SMLP__ALIGN - 1) & ~(uint64_t)(SMLP__ALIGN - 1))

static inline uint64_t
smlp__cuda_tensor_bytes(const struct smlp_tensor *t)
{
    return (uint64_t)smlp_tensor_numel(t) * smlp__dtype_size(t->dtype);
}

/* Records a device error in the session (the first one wins); returns
 * SMLP_EDEVICE. */
int smlp__cuda_fail(smlp_session_t *s, cudaError_t e, const char *what);
/* The same for a node: the message goes where a kernel's would. */
int smlp__cuda_fail_node(struct smlp__node_rt *n, cudaError_t e,
                         const char *what);

/* Creates node id's start and end events, ev[2·id] and ev[2·id + 1],
 * and raises *n_ev over them; SMLP_EDEVICE (in err) when CUDA cannot. */
int smlp__cuda_node_events(smlp_session_t *s, cudaEvent_t *ev, int32_t id,
                           int32_t *n_ev, struct smlp_error *err);

/* From smlp__device_alloc when s->ag->on_dev: the device's gradient
 * stores, the backward's device views and events. */
int smlp__cuda_bwd_alloc(smlp_session_t *s, struct smlp_error *err);
/* From smlp__device_close: frees what smlp__cuda_bwd_alloc and the
 * backward made.  Safe on any state. */
void smlp__cuda_bwd_free(smlp_session_t *s);

#endif /* SMLP_DEVICE_CUDA_H */
