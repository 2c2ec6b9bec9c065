/*
 * device.h - the runtime's interface to devices other than the CPU
 * (internal).
 *
 * A session asks for a device (smlp_session_opts.device).  session.c
 * places each node there when its op has a kernel for it, else on the CPU
 * with a notice; plan.c gives device copies their own arena from the same
 * lifetime plan; sched.c enqueues device nodes on the device's stream and
 * learns of their completion through fences.  Everything that calls a
 * device API lives behind these functions: device_cuda.c in a build with
 * CUDA (SMLP_HAVE_CUDA), the stubs below otherwise.  None of them is
 * called unless the session asked for a device, so a CPU session never
 * touches the CUDA runtime.
 *
 * The copy model (docs/gpu.md): the host copy of a parameter or state
 * tensor is the master (weights load, save and init stay on the host);
 * its device copy is uploaded before a run when dirty.  Graph inputs are
 * uploaded at the start of each run, and graph outputs copied back by the
 * node that writes them, so smlp_session_tensor and the safetensors
 * functions see host memory as before.  A tensor that crosses devices
 * inside the graph is copied by its producer right after its kernel: a
 * device node copies to the host, a CPU node to the device (its `push`).
 * All device work of a session is in order on one stream.  State written
 * by device kernels (batch-norm statistics) is copied back after the run.
 *
 * Threads: every function runs on the thread that creates or runs the
 * session (the loop thread), never on a worker.
 */
#ifndef SMLP_DEVICE_H
#define SMLP_DEVICE_H

#include "internal.h"

/* "cpu", "cuda" or "device?". */
const char *smlp__device_name(int device);

#ifdef SMLP_HAVE_CUDA

/*
 * Opens opts.device for s (the first CUDA device, a stream), or fails with
 * SMLP_EDEVICE and a message naming the device and the cause, e.g.
 * "device cuda: no CUDA device: CUDA driver version is insufficient for
 * CUDA runtime version (cudaErrorInsufficientDriver, code 35)".
 */
int smlp__device_open(smlp_session_t *s, struct smlp_error *err);
/*
 * After the host arena and parameters exist: allocates the device arena
 * (s->dev_plan) and device copies of parameters and state, points every
 * tensor's dev_data and device node's views at them, and pins the host
 * arena and parameters for asynchronous copies.  Marks parameters and
 * state dirty.
 */
int smlp__device_alloc(smlp_session_t *s, struct smlp_error *err);
/* Before a run: uploads inputs and dirty parameters and state.  Returns
 * a status and records a message in the session on failure. */
int smlp__device_run_begin(smlp_session_t *s);
/*
 * Enqueues device node n: its kernel with device views and the session's
 * stream, then copies of its outputs that the host needs.  A failing
 * kernel has described itself with errorf; returns its status.
 */
int smlp__device_launch(smlp_session_t *s, struct smlp__node_rt *n);
/* Enqueues the copies of CPU node n's outputs that the device needs. */
int smlp__device_push(smlp_session_t *s, struct smlp__node_rt *n);
/* Enqueues fence f: smlp__sched_fence_cb(f) runs when the stream gets
 * there.  On failure records a message in the session. */
int smlp__device_fence(smlp_session_t *s, struct smlp__fence *f);
/* SMLP_OK while the stream is healthy; a device error (recorded in the
 * session) once it failed (fences will then never run). */
int smlp__device_poll(smlp_session_t *s);
/* After a run: waits for the stream, reports asynchronous errors, copies
 * state back to the host and fills device nodes' profile times. */
int smlp__device_run_end(smlp_session_t *s);
/* Waits for the stream and frees everything smlp__device_open and
 * smlp__device_alloc made (unpinning host memory).  Safe on any state. */
void smlp__device_close(smlp_session_t *s);
/*
 * The backward of the last run on the device (s->ag->on_dev), node by
 * node in backward order on the stream: the seed d loss / d loss = 1, the
 * sums of contributions, view copies and each node's device backward;
 * then the parameters' gradients (sums, zeros) are copied to their host
 * block and the stream is waited for.  Fills the nodes' backward times.
 * SMLP_EKERNEL naming the node when a backward kernel fails to enqueue,
 * SMLP_EDEVICE when the device does (both recorded in the session).
 */
int smlp__device_backward(smlp_session_t *s);

#else /* no device support built in: opening fails, the rest is unused */

static inline int
smlp__device_open(smlp_session_t *s, struct smlp_error *err)
{
    return smlp__seterr(err, SMLP_EDEVICE,
                        "%s: device %s: this libsmlp was built without "
                        "support for it (configure --with-cuda)",
                        s->graph->source,
                        smlp__device_name(s->opts.device));
}

static inline int
smlp__device_alloc(smlp_session_t *s, struct smlp_error *err)
{
    return smlp__seterr(err, SMLP_EDEVICE, "no device support");
}

static inline int
smlp__device_run_begin(smlp_session_t *s)
{
    return SMLP_EDEVICE;
}

static inline int
smlp__device_launch(smlp_session_t *s, struct smlp__node_rt *n)
{
    return SMLP_EDEVICE;
}

static inline int
smlp__device_push(smlp_session_t *s, struct smlp__node_rt *n)
{
    return SMLP_EDEVICE;
}

static inline int
smlp__device_fence(smlp_session_t *s, struct smlp__fence *f)
{
    return SMLP_EDEVICE;
}

static inline int
smlp__device_poll(smlp_session_t *s)
{
    return SMLP_EDEVICE;
}

static inline int
smlp__device_run_end(smlp_session_t *s)
{
    return SMLP_EDEVICE;
}

static inline void
smlp__device_close(smlp_session_t *s)
{
}

static inline int
smlp__device_backward(smlp_session_t *s)
{
    return SMLP_EDEVICE;
}

#endif /* SMLP_HAVE_CUDA */

#endif /* SMLP_DEVICE_H */
