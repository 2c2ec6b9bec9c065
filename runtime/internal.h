/*
 * internal.h - declarations shared by the runtime's files (not installed).
 *
 * Data flows one way: graph.c (verified graph) -> registry.c (ops) ->
 * session.c (resolution, shape inference, placement) -> plan.c (memory
 * plans: host arena, device arena) -> sched.c (execution) -> report
 * (stats, trace.c).  device.h is the interface to the device code
 * (device_cuda.c in a CUDA build).
 */
#ifndef SMLP_INTERNAL_H
#define SMLP_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "graph_ir.h"
#include "smlp.h"

#define SMLP__ALIGN 64
/*
 * The most bytes one tensor, workspace or memory block may take: 2^48
 * (256 TiB, beyond any machine).  Sizes are checked against it where
 * they enter (shapes, what infer asks for), so that sums of them, rounded
 * up to SMLP__ALIGN, cannot wrap around.
 */
#define SMLP__MAX_BYTES (UINT64_C(1) << 48)
#define SMLP__ERRLEN 1024

#define SMLP_ASSERT(cond)                                                    \
    do {                                                                     \
        if (!(cond))                                                         \
            smlp__assert_fail(#cond, __FILE__, __LINE__);                    \
    } while (0)

void smlp__assert_fail(const char *cond, const char *file, int line);

/* Formats into err (status + message); returns status. */
int smlp__seterr(struct smlp_error *err, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void *smlp__malloc(size_t n);
void *smlp__calloc(size_t n, size_t size);
void *smlp__realloc(void *p, size_t n);
char *smlp__strdup(const char *s);
void smlp__free(void *p);
size_t smlp__dtype_size(int dtype);
const char *smlp__dtype_name(int dtype);
/* "[2,196,768]" into buf. */
const char *smlp__shape_str(const int64_t *shape, int rank, char *buf,
                            size_t len);
double smlp__now_us(void);

/* A hint to the CPU inside a spin-wait loop. */
static inline void
smlp__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* ---- graph.c ---- */
struct smlp_graph_s {
    struct smlp__graph_ir *ir;
    char *source;
    int32_t *producer;    /* per tensor: writing node or -1 */
    int32_t *order;       /* nodes in a topological order */
    int32_t *cons_off;    /* per tensor: consumers are cons[cons_off[t] ..
                             cons_off[t + 1]), one entry per input slot */
    int32_t *cons;
    int refs;             /* 1 until smlp_graph_unload, + 1 per live
                             session (atomic: smlp__graph_hold) */
};

/*
 * A session holds its graph and its registry (smlp_session_create) and
 * releases them last thing in smlp_session_destroy, so that
 * smlp_graph_unload and smlp_registry_destroy with sessions alive only
 * drop the caller's reference: the last release frees.  The counts are
 * atomic, so sessions on different threads may come and go.  The graph
 * stays immutable otherwise (hold casts away the const).
 */
void smlp__graph_hold(const smlp_graph_t *g);
void smlp__graph_release(const smlp_graph_t *g);
/* An optimizer holds its session the same way (session.c). */
void smlp__session_hold(smlp_session_t *s);
void smlp__session_release(smlp_session_t *s);

/* ---- registry.c ---- */
struct smlp__kernel {
    struct smlp_kernel_def def;
};

struct smlp__plugin;

struct smlp__op {
    struct smlp_op_def def; /* copy, fields beyond the plugin's size zero */
    struct smlp__plugin *plugin;
    int n_kernels;
    struct smlp__kernel *kernels;
};

struct smlp__plugin {
    char *name;
    char *path;
    void *handle;
    struct smlp_plugin_def def;
};

struct smlp_registry {
    char *search_path; /* joined with ':' */
    int n_dirs;
    char **dirs;
    int n_plugins;
    struct smlp__plugin **plugins;
    int n_ops;
    struct smlp__op **ops; /* sorted by name after each load */
    /* While a plugin's init runs. */
    struct smlp__plugin *loading;
    int load_status;
    char load_err[SMLP__ERRLEN];
    int refs; /* 1 until smlp_registry_destroy, + 1 per live session
                 (atomic; see smlp__graph_hold) */
};

void smlp__registry_hold(smlp_registry_t *reg);
void smlp__registry_release(smlp_registry_t *reg);
/*
 * The SMLP_LOG level (default SMLP_LOG_WARN), read from the environment
 * once per process: plugins log from worker threads, and sched.c's pool
 * start sets UV_THREADPOOL_SIZE for a moment (getenv beside setenv is not
 * thread-safe), so that start reads it first.
 */
int smlp__log_max(void);

extern const struct smlp_host_api smlp__host_api;
const struct smlp__op *smlp__registry_find(const smlp_registry_t *reg,
                                           const char *name);
struct smlp__plugin *smlp__registry_plugin(const smlp_registry_t *reg,
                                           const char *name);

/* ---- the node as plugins see it (opaque struct smlp_node) ---- */
struct smlp_node {
    const struct smlp__node_ir *ir;
    int32_t index;
    char err[SMLP__ERRLEN]; /* filled by host->errorf */
};

/*
 * A kernel's or backward's return value: 0 or a negative status.  Any
 * other (SMLP_DECLINED is for attribute getters; a kernel turns a node
 * down in supports(), before the run) becomes SMLP_EKERNEL with a
 * message in node->err, so that it fails the node instead of passing
 * for success.  (util.c)
 */
int smlp__node_status(struct smlp_node *node, int rc);

/* ---- session.c ---- */

/* Where a tensor's bytes live (bits of smlp__tensor_rt.res). */
#define SMLP__RES_HOST 1u
#define SMLP__RES_DEV 2u

struct smlp__tensor_rt {
    struct smlp_tensor t; /* shape after inference; data when placed */
    int32_t buffer;       /* plan buffer, -1 for parameters/state */
    int32_t kind;
    /* Devices (sessions with nodes off the CPU; see device.h). */
    uint32_t res;         /* SMLP__RES_*: copies this tensor's root has */
    int32_t dev_buffer;   /* device plan buffer, -1 when none */
    void *dev_data;       /* the device copy, NULL when none */
    int dirty;            /* parameter/state: host copy newer than device */
    /* Training (autograd.c; sessions with opts.loss, else zero).  need_grad:
     * d loss / d this tensor is computed (it lies on a path from a
     * trainable parameter to the loss); gstore: the smlp__gstore holding
     * that gradient (-1 when none); grad: a view of it (f32, this shape;
     * data set once memory is allocated). */
    int32_t need_grad;
    int32_t gstore;
    struct smlp_tensor grad;
};

struct smlp__node_rt {
    struct smlp_node node;
    const struct smlp__op *op;
    const struct smlp__kernel *kernel;
    void *priv;
    void (*priv_free)(void *);
    int is_view;
    size_t workspace;
    int32_t ws_buffer; /* plan buffer of the workspace, -1 when none */
    uint64_t macs;
    struct smlp_tensor **in;  /* NULL for absent optional inputs */
    struct smlp_tensor **out;
    /* Placement: enum smlp_device the kernel runs on (views: CPU, they run
     * nothing).  A device node sees device copies through dev_in/dev_out
     * and its workspace in the device arena (dev_ws_buffer); a CPU node
     * copies `push` of its outputs to the device after its kernel. */
    int device;
    int32_t dev_ws_buffer;
    struct smlp_tensor *dev_t; /* n_inputs + n_outputs device views */
    struct smlp_tensor **dev_in;
    struct smlp_tensor **dev_out;
    int32_t push;
    /* Scheduling.  pending counts predecessors not yet done on the host;
     * pending_s those not yet enqueued on the device stream (a device
     * node may start then: the stream orders it after them). */
    int32_t n_succ;
    int32_t *succ;
    int32_t n_pred;
    int32_t pending;
    int32_t pending_s;
    uv_work_t req;
    /* A batch of small ready nodes run by one pool work item (sched.c):
     * the next node of the batch, -1 at its end.  cost: the node's work
     * estimate, macs + output elements. */
    int32_t batch_next;
    uint64_t cost;
    int status;
    double t0, t1;
    int thread;
    struct smlp_session_s *session;
    /* Backward (autograd.c; zero/NULL unless the node has one).  bwd: enum
     * smlp__bwd_kind.  bwd_workspace: max(workspace, backward_workspace)
     * as infer() asked, planned as bwd_ws_buffer at the node's backward
     * step.  gin[i]: grad_inputs (&gin_t[i], or NULL where input i needs no
     * gradient), writing store gin_store[i]; gout[j]: grad_outputs
     * (&tensors[output j].grad, or NULL).  Scheduling as the forward's,
     * over the reverse graph: bsucc are the backward nodes that wait for
     * this one.  saved_bytes: what infer() asked to keep from the forward
     * for the backward (ABI 1.2), planned as saved_buffer from the node's
     * forward step to its backward step when the backward runs a kernel
     * (-1 otherwise: the kernels get saved NULL). */
    int32_t bwd;
    size_t bwd_workspace;
    int32_t bwd_ws_buffer;
    size_t saved_bytes;
    int32_t saved_buffer;
    struct smlp_tensor *gin_t;
    struct smlp_tensor **gin;
    int32_t *gin_store;
    const struct smlp_tensor **gout;
    int32_t n_bsucc;
    int32_t *bsucc;
    int32_t n_bpred;
    int32_t bpending;
    /* A device backward (ag->on_dev): device views of the gradients,
     * dgin_t[i] / dgin[i] and dgout[j] as gin_t, gin and gout. */
    struct smlp_tensor *dgin_t;
    struct smlp_tensor **dgin;
    struct smlp_tensor **dgout;
    struct smlp_tensor *dgout_t;
    double bt0, bt1; /* the last backward's start and end (0: not run) */
    int bthread;
};

/* One planned buffer: a tensor (plus its views) or a workspace. */
struct smlp__buffer {
    uint64_t size;
    uint64_t offset;
    int32_t first; /* step (position in the order) of the first write */
    int32_t last;  /* step of the last read */
    int32_t writer;  /* node writing it (or -1 for inputs) */
};

struct smlp__plan {
    int32_t n_buffers;
    struct smlp__buffer *buffers;
    uint64_t arena_bytes;
    uint64_t lower_bound;
    uint64_t sum_bytes; /* all buffers' sizes (saturating): >= arena */
};

struct smlp_session_s {
    const smlp_graph_t *graph;
    smlp_registry_t *reg;
    int refs; /* 1 until smlp_session_destroy, + 1 per live optimizer
                 (atomic; see smlp__graph_hold) */
    struct smlp_session_opts opts;
    int32_t n_tensors;
    struct smlp__tensor_rt *tensors;
    int32_t n_nodes;
    struct smlp__node_rt *nodes;
    struct smlp__plan plan;
    void *arena;
    void *params;
    uint64_t param_bytes;
    uint64_t n_params;
    uint64_t macs;
    int inter_op;        /* nodes run at once (session.c) */
    int intra_op;        /* threads per kernel: parallel_for (team.c) */
    struct smlp__team *team; /* NULL when intra_op is 1 */
    double parallelism;  /* the graph's average parallelism (session.c) */
    uint64_t step;
    int has_run;         /* a run succeeded: the outputs hold its values */
    double last_run_ms;
    double run_t0;
    /* Scheduler state (sched.c). */
    uv_loop_t loop;
    int loop_ready;
    int32_t *ready;      /* min-heap of node positions */
    int32_t n_ready;
    int32_t *pos;        /* node -> position in the order */
    int32_t in_flight;
    int32_t done;
    int failed;
    char errmsg[SMLP__ERRLEN];
    /* Devices (opts.device != CPU and at least one node placed there).
     * Device nodes and CPU nodes' pushes are enqueued on one stream, in
     * that order into `fifo`; a fence (a host function on the stream)
     * marks fifo[0 .. upto) done and wakes the loop through dev_async. */
    int32_t n_dev_nodes;
    struct smlp__plan dev_plan;
    void *dev;           /* device state (device_cuda.c) */
    int32_t *dev_ready;  /* min-heap of device nodes ready to enqueue */
    int32_t n_dev_ready;
    int32_t *fifo;       /* node ids in stream order */
    int32_t *views;      /* stream_done's stack of views to pass on */
    int32_t fifo_head;   /* fifo[.. head) are done */
    int32_t fifo_tail;
    int32_t fenced;      /* fifo[.. fenced) are covered by a fence */
    struct smlp__fence *fences; /* one per fence of a run, in order */
    int32_t fence_head, fence_tail;
    uv_async_t dev_async;
    uv_timer_t dev_timer; /* watches the stream while fences are out */
    uv_mutex_t dev_lock;  /* guards dev_upto (a leaf lock) */
    int32_t dev_upto;     /* largest fence reached, written by CUDA */
    int dev_handles;      /* dev_async, dev_timer and dev_lock exist */
    /* Training with a loss (autograd.c); NULL otherwise. */
    struct smlp__autograd *ag;
    /* checkpoint.c: metadata of the last checkpoint loaded
     * (smlp_checkpoint_meta): ckpt_meta[2k] keys, ckpt_meta[2k + 1]
     * values, k < ckpt_n_meta, one allocation; NULL when none.  Freed by
     * smlp__checkpoint_meta_free (smlp_session_destroy calls it). */
    int32_t ckpt_n_meta;
    char **ckpt_meta;
};

/* A fence: the host function's argument. */
struct smlp__fence {
    smlp_session_t *s;
    int32_t upto;
};

int smlp__session_fail(smlp_session_t *s, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- plan.c ---- */
/*
 * Assigns buffers of the session's activations and workspaces offsets in
 * one arena from their lifetimes along the graph order (greedy by size
 * and greedy by lifetime, the smaller arena kept), and records the lower
 * bound.  Fills s->plan, and s->dev_plan for the device copies when nodes
 * run on a device (the same planner).
 */
int smlp__plan_build(smlp_session_t *s, struct smlp_error *err);
/*
 * Sets each tensor's `res`: where copies of its root are needed (the host
 * for CPU nodes, inputs, outputs, parameters and state; the device for
 * device nodes), and each CPU node's `push` count.  Call after placement,
 * before smlp__plan_build.  With every node on the CPU everything is host.
 */
void smlp__plan_residency(smlp_session_t *s);
/*
 * Adds scheduling edges so that a buffer's bytes are not written before
 * every reader of the previous tenant of the same bytes has finished
 * (needed once nodes run concurrently), in both arenas.
 */
int smlp__plan_add_reuse_edges(smlp_session_t *s, struct smlp_error *err);
/*
 * The same for the backward steps of the timeline (sessions with a loss):
 * ordering edges between backward nodes (smlp__node_rt.bsucc).  Forward
 * and backward never overlap in time, so no edge crosses them.
 */
int smlp__plan_add_backward_edges(smlp_session_t *s, struct smlp_error *err);
void smlp__plan_free(struct smlp__plan *p);

/* ---- sched.c ---- */
int smlp__sched_init(smlp_session_t *s, struct smlp_error *err);
int smlp__sched_run(smlp_session_t *s);
void smlp__sched_close(smlp_session_t *s);
/* Runs the backward steps (smlp_session_backward). */
int smlp__sched_backward(smlp_session_t *s);
/* The host function of a fence (struct smlp__fence *): runs on a CUDA
 * thread, records the fence and wakes the loop.  Calls no CUDA API. */
void smlp__sched_fence_cb(void *fence);

/* ---- autograd.c: the backward pass (docs/training.md, "Backward") ----
 *
 * A session created with opts.training and opts.loss gets a struct
 * smlp__autograd.  The timeline has s->n_nodes forward steps (the graph
 * order) followed by ag->n_bwd backward steps: step s->n_nodes + k runs the
 * backward of node ag->border[k] (the backward nodes in reverse graph
 * order); step s->n_nodes + ag->n_bwd is "after the backward".  Gradient
 * bytes live in stores (struct smlp__gstore): arena buffers planned with
 * the forward's (plan.c), or, for trainable parameters, slices of one
 * persistent block (ag->grads).  stores[k] for k < n_trainable is the
 * gradient of parameter trainable[k].
 */

/* How a node's backward runs (smlp__node_rt.bwd). */
enum smlp__bwd_kind {
    SMLP__BWD_NONE = 0,   /* none: no gradient flows through the node */
    SMLP__BWD_KERNEL = 1, /* the op's backward kernel */
    SMLP__BWD_ALIAS = 2,  /* an aliased view (reshape): its output's
                             gradient is its input's contribution, same
                             bytes; nothing runs but the sums */
    SMLP__BWD_COPY = 3    /* a view that runs as a copy and whose op has no
                             backward: the runtime copies the gradient */
};

/* Where gradient bytes live. */
struct smlp__gstore {
    uint64_t bytes;
    int32_t first;  /* timeline step of its first access (a write) */
    int32_t last;   /* timeline step of its last read */
    int32_t buffer; /* buffer of the backward's plan (the host's, or the
                       device's when ag->on_dev); -1 for a parameter's
                       gradient */
    int32_t param;  /* that parameter's tensor id, else -1 */
    void *data;     /* host bytes after allocation (NULL with plan_only,
                       and for the arena stores of a device backward) */
    void *dev_data; /* device bytes (a device backward only) */
};

/* A gradient contribution: node `node` writes d loss / d (its input
 * `slot`) into store `store`. */
struct smlp__contrib {
    int32_t node;
    int32_t slot;
    int32_t store;
};

struct smlp__autograd {
    int32_t loss;        /* tensor id of the loss */
    int32_t n_trainable;
    int32_t *trainable;  /* tensor ids of the trainable parameters, in
                            graph order */
    int32_t *pindex;     /* tensor id -> index in trainable, or -1 */
    int32_t n_bwd;       /* nodes with a backward */
    int32_t *border;     /* backward order (see above) */
    int32_t *bpos;       /* node -> k of border[k], -1 when none */
    /* Contributions to tensor t: contrib[coff[t] .. coff[t + 1]), in the
     * order they are summed: the first writes the tensor's gstore, each
     * other its own store, added in that order. */
    int32_t *coff;
    struct smlp__contrib *contrib;
    int32_t n_stores;
    struct smlp__gstore *stores;
    void *grads;         /* the parameters' gradient block */
    uint64_t grad_bytes;
    /* The backward runs on the session's device (every node with a
     * backward kernel ran there with a kernel that has a device backward,
     * ABI 1.3): stores, backward workspaces and saved bytes are planned
     * in the device arena, and the parameters' gradients are copied to
     * `grads` at the end (device.h).  0: every backward on the CPU. */
    int on_dev;
    int fwd_ready;       /* a forward ran (and succeeded) since the last
                            backward */
    uint64_t fwd_step;   /* the step that forward ran with */
    /* The gradients' generation: 0 when they hold no backward's result
     * (none ran yet, or the last failed), else the count of successful
     * backwards when the last one ran.  An optimizer steps once per
     * generation (struct smlp_optim_s.grad_gen). */
    uint64_t n_backward;
    uint64_t grad_gen;
    double last_backward_ms;
};

/*
 * After shape inference (resolve_nodes): finds the loss and the trainable
 * parameters, decides which tensors need a gradient and which nodes a
 * backward (SMLP_ENOKERNEL naming file, node, op and a parameter when one
 * has none), assigns gradient stores with their lifetimes and adds the
 * backward's data edges.  Does nothing without opts.loss.
 */
int smlp__autograd_prepare(smlp_session_t *s, struct smlp_error *err);
/* After the arena is allocated: allocates the parameter gradients and
 * points every store and gradient view at its bytes. */
int smlp__autograd_alloc(smlp_session_t *s, struct smlp_error *err);
void smlp__autograd_free(smlp_session_t *s);
/* The work of node n's backward on a worker: sums the contributions to
 * its outputs' gradients, then runs its kernel (or copy).  Returns the
 * kernel's status. */
int smlp__autograd_node(smlp_session_t *s, struct smlp__node_rt *n);
/* The fields of node n's backward context that do not depend on where it
 * runs (size, abi, host, node, priv, counts, seed, step; threads 1); the
 * caller adds the tensors, workspace, saved bytes and stream. */
void smlp__backward_ctx_init(const smlp_session_t *s,
                             struct smlp__node_rt *n,
                             struct smlp_backward_ctx *ctx);
/* Whether node n's backward has work for a worker (aliased views with
 * nothing to sum complete on the loop thread). */
int smlp__autograd_node_has_work(const smlp_session_t *s,
                                 const struct smlp__node_rt *n);
/* On the loop thread, before the backward's nodes: seeds d loss / d loss
 * = 1.  After them: sums the contributions of parameters read by several
 * nodes and zeroes the gradients the loss does not reach. */
void smlp__autograd_begin(smlp_session_t *s);
void smlp__autograd_end(smlp_session_t *s);

/*
 * For optim.c and checkpoint.c: the trainable parameters of a session
 * with a loss (0 without one), in graph order.  smlp__grad_tensor gives the
 * k-th one's tensor id (s->tensors[id].t is the parameter, its name
 * s->graph->ir->tensors[id].name); smlp__grad_data its gradient (f32,
 * the parameter's shape, the same pointer smlp_session_grad returns;
 * NULL with plan_only).  Stable for the session's life.
 */
int32_t smlp__grad_count(const smlp_session_t *s);
int32_t smlp__grad_tensor(const smlp_session_t *s, int32_t k);
float *smlp__grad_data(const smlp_session_t *s, int32_t k);

/* ---- team.c: intra-op parallelism (host->parallel_for) ---- */
struct smlp__team;
/* Starts n_threads helper threads (idle ones sleep); NULL when none could
 * be started.  With fewer than asked when some fail to start. */
struct smlp__team *smlp__team_create(int n_threads);
/* Stops and joins the helpers; no job may be running.  NULL: a no-op. */
void smlp__team_destroy(struct smlp__team *t);
int smlp__team_size(const struct smlp__team *t);
/*
 * Runs fn(arg, task, worker) for every task in [0, n_tasks) on the
 * calling thread (worker 0) and up to max_workers - 1 helpers of t, and
 * returns when all have run: 0, or the first nonzero value a task
 * returned.  Serial (in order, on the caller) when t is NULL, max_workers
 * is 1, there is one task, or the caller is itself inside a task.
 */
int smlp__team_run(struct smlp__team *t, int max_workers, int64_t n_tasks,
                   int (*fn)(void *arg, int64_t task, int worker),
                   void *arg);
/* host->parallel_for: the team of node's session, with its intra_op. */
int smlp__host_parallel_for(const struct smlp_node *node, int64_t n_tasks,
                            int (*fn)(void *arg, int64_t task, int worker),
                            void *arg);

/* ---- init.c ---- */
/* Fills a tensor from a seeded initializer (see init.c for the rule). */
void smlp__init_fill(const struct smlp__init_ir *init, uint64_t seed_xor,
                     int dtype, void *data, uint64_t n);
uint64_t smlp__mix64(uint64_t x);

/* ---- weights.c ---- */
int smlp__weights_load(smlp_session_t *s, const char *path, int kinds_mask);
int smlp__weights_save(smlp_session_t *s, const char *path, int kinds_mask);

/* ---- checkpoint.c ---- */
/* Frees the session's checkpoint metadata (s->ckpt_meta); idempotent. */
void smlp__checkpoint_meta_free(smlp_session_t *s);

#endif /* SMLP_INTERNAL_H */
