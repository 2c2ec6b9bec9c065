/*
 * smlp.h - public API of libsmlp, the smlp graph runtime.
 *
 * The runtime loads a model graph (a FlatBuffer, schemas/graph.fbs),
 * verifies it, loads the operator plugins it names, infers shapes for a
 * batch size, plans activation memory in one arena and runs the graph on a
 * libuv loop.  It knows no operator itself: see smlp_plugin.h.
 *
 * Objects:
 *   smlp_graph_t     a verified graph (immutable after load)
 *   smlp_registry_t  loaded plugins and their operators
 *   smlp_session_t   a graph bound to a registry, a batch size and a
 *                    thread budget, with its memory and parameters
 *
 * Errors: constructors return NULL and fill a struct smlp_error; actions
 * return a status (0 or a negative SMLP_E* code) and keep the message in
 * the object (smlp_session_errmsg).  Messages name the file, node, tensor
 * or option at fault.  A message stays until the next call that sets
 * one (a later successful call does not clear it; smlp_session_run
 * does).
 *
 * Threads: an object is used from one thread at a time.  Sessions (on
 * the same graph and registry or not) may run on different threads at
 * once: their results are the same bits as alone.  Two things are per
 * process: libuv's thread pool, sized by the first session that runs
 * (UV_THREADPOOL_SIZE, when set, wins), and the BLAS thread count a
 * plugin sets for its kernels (the core plugin: OpenBLAS at 1 thread,
 * since the runtime's threads split the work).  libuv reads the pool
 * size only from the environment, so that first run sets
 * UV_THREADPOOL_SIZE for a moment and removes it again: other threads of
 * the program should not read or change the environment during the
 * process's first smlp_session_run (getenv beside setenv is not
 * thread-safe in C).  smlp reads SMLP_LOG once, before that moment.
 * Creating a session loads its graph's plugins into the registry: do not
 * create sessions on a registry while another thread runs one of its
 * sessions; load the plugins first (smlp_registry_load).
 *
 * A NULL pointer argument is refused, never dereferenced: actions return
 * SMLP_EINVAL (with a message in the session when there is one), getters
 * return NULL or 0, and init, destroy and unload functions do nothing;
 * smlp_session_errmsg(NULL) returns a fixed text.
 *
 * Lifetimes: strings the library returns (names, sources, metadata)
 * point into the graph or registry that holds them and stay valid while
 * it lives; a session keeps its graph and registry alive, and an
 * optimizer its session (below).
 */
#ifndef SMLP_H
#define SMLP_H

#include <stddef.h>
#include <stdint.h>

#include "smlp_plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define SMLP_API __attribute__((visibility("default")))
#else
#define SMLP_API
#endif

#define SMLP_VERSION_MAJOR 0
#define SMLP_VERSION_MINOR 4
#define SMLP_VERSION_PATCH 1
#define SMLP_VERSION_HEX                                                     \
    ((SMLP_VERSION_MAJOR << 16) | (SMLP_VERSION_MINOR << 8) |                \
     SMLP_VERSION_PATCH)

typedef struct smlp_graph_s smlp_graph_t;
/* The same struct plugins see as `struct smlp_registry`. */
typedef struct smlp_registry smlp_registry_t;
typedef struct smlp_session_s smlp_session_t;

/* Filled by constructors that fail. */
struct smlp_error {
    int status;
    char msg[1024];
};

SMLP_API unsigned smlp_version(void);
SMLP_API const char *smlp_version_string(void);
/* "invalid argument", ... ; "unknown status" for other values. */
SMLP_API const char *smlp_strerror(int status);
/* "EINVAL", ... */
SMLP_API const char *smlp_status_name(int status);

/* ---- graphs ---------------------------------------------------------- */

/*
 * Reads, verifies and checks a graph file.  Structural problems (the
 * FlatBuffer) and semantic ones (cycles, two writers, a tensor nobody
 * writes, duplicate names, plugin names that look like paths) are errors
 * naming the file and the node or tensor.  Release with smlp_graph_unload.
 */
SMLP_API smlp_graph_t *smlp_graph_load(const char *path,
                                       struct smlp_error *err);
/* Same from memory; `what` names the buffer in messages. */
SMLP_API smlp_graph_t *smlp_graph_load_buffer(const void *buf, size_t len,
                                              const char *what,
                                              struct smlp_error *err);
/* Releases the graph.  Sessions created from it keep it: with some still
 * alive, the last smlp_session_destroy frees it, and the names the graph
 * and its sessions hand out stay valid until then. */
SMLP_API void smlp_graph_unload(smlp_graph_t *graph);

SMLP_API const char *smlp_graph_name(const smlp_graph_t *graph);
/* The path (or `what`) it was loaded from. */
SMLP_API const char *smlp_graph_source(const smlp_graph_t *graph);
SMLP_API int smlp_graph_node_count(const smlp_graph_t *graph);
SMLP_API int smlp_graph_tensor_count(const smlp_graph_t *graph);
SMLP_API int smlp_graph_plugin_count(const smlp_graph_t *graph);
SMLP_API const char *smlp_graph_plugin_name(const smlp_graph_t *graph,
                                            int i);
/* Attribute `name` of the node named `node`: SMLP_ENOENT when there is
 * no such node or attribute or it has another type (the float getter also
 * reads an Int attribute). */
SMLP_API int smlp_graph_node_attr_int(const smlp_graph_t *graph,
                                      const char *node, const char *name,
                                      int64_t *out);
SMLP_API int smlp_graph_node_attr_float(const smlp_graph_t *graph,
                                        const char *node, const char *name,
                                        double *out);
/* Metadata value for `key`, NULL when absent. */
SMLP_API const char *smlp_graph_meta(const smlp_graph_t *graph,
                                     const char *key);

/* ---- plugins ----------------------------------------------------------- */

/*
 * Creates a registry.  Plugins are looked up by name (NAME.so) in, in
 * order: `plugin_path` (colon-separated, may be NULL), $SMLP_PLUGIN_PATH,
 * the build tree's plugin directory (when it exists) and the installed
 * plugin directory.
 */
SMLP_API smlp_registry_t *smlp_registry_create(const char *plugin_path,
                                               struct smlp_error *err);
/*
 * Loads plugin `name` unless it is loaded.  Errors name the plugin, the
 * file and the directories searched: missing plugin, missing entry
 * symbol, ABI or signature mismatch, duplicate op, failing init.
 */
SMLP_API int smlp_registry_load(smlp_registry_t *reg, const char *name,
                                struct smlp_error *err);
/* The directories searched, joined by ':' (for messages and --help). */
SMLP_API const char *smlp_registry_search_path(const smlp_registry_t *reg);
SMLP_API int smlp_registry_op_count(const smlp_registry_t *reg);
SMLP_API const char *smlp_registry_op_name(const smlp_registry_t *reg,
                                           int i);
/*
 * The definition of op `name` as the registry holds it: the host's copy of
 * what the plugin registered (fields the plugin did not know read 0;
 * `kernels` is NULL), or NULL when no loaded plugin has the op.  `attrs`
 * and `doc` point into the plugin and stay valid until the registry is
 * freed (smlp_registry_destroy, or the last session's
 * smlp_session_destroy after it).  Tools read arities and attribute
 * schemas from it (since
 * 0.1.0).
 */
SMLP_API const struct smlp_op_def *
smlp_registry_op_def(const smlp_registry_t *reg, const char *name);
/* Releases the registry.  With sessions created from it still alive this
 * only drops the caller's reference: the last smlp_session_destroy
 * unloads the plugins and frees it. */
SMLP_API void smlp_registry_destroy(smlp_registry_t *reg);

/* ---- sessions ---------------------------------------------------------- */

struct smlp_session_opts {
    int64_t batch;      /* value of the -1 dimension (default 1) */
    int threads;        /* total thread budget; 0 = number of CPUs */
    uint64_t seed;      /* synthetic inputs and seeded noise (default 0) */
    int training;       /* session mode (default 0: inference) */
    const char *weights;  /* safetensors with parameters; NULL: seeded
                             initializers from the graph */
    uint64_t max_memory;  /* bytes for arena + parameters; 0 = no limit */
    int plan_only;      /* infer and plan, allocate nothing, cannot run */
    int no_init;        /* allocate parameters but leave them zero */
    /* enum smlp_device to run on (default SMLP_DEVICE_CPU).  With
     * SMLP_DEVICE_CUDA each node whose op has a CUDA kernel runs on the
     * GPU, the others on the CPU (with a notice on stderr), and the
     * runtime copies tensors between them.  Inputs, outputs, parameters
     * and state stay host-visible: parameters and state written through
     * smlp_session_tensor's pointer reach the GPU at the next run if
     * smlp_session_tensor is called for them (again) after the write, or
     * after smlp_session_load_weights.  Without a usable GPU (or a libsmlp
     * built without CUDA) smlp_session_create fails with SMLP_EDEVICE
     * and a message saying why.  See docs/gpu.md. */
    int device;
    /* Refuse parameters or state loaded from a file (opts->weights,
     * smlp_session_load_weights) that hold a NaN or an infinity: the load
     * fails with SMLP_EBADFILE naming the file, the tensor and the first
     * such element (smlp-run --check-finite).  Default 0. */
    int check_finite;
    /* Training (since 0.2.0; docs/training.md).  With training = 1 and
     * `loss` the name of an f32 rank-0 tensor of the graph, the session
     * also plans a backward pass: smlp_session_backward() after
     * smlp_session_run() writes d loss / d p for every parameter p that is
     * not frozen.  NULL (default): no backward (inference, or a forward
     * run in training mode).  smlp_session_create fails, naming the graph
     * file and the tensor, when there is no such tensor (SMLP_ENOENT), it
     * is not an f32 scalar computed by a node or training is 0
     * (SMLP_EINVAL), or a node on a path from a trainable parameter to
     * the loss has an op without backward (SMLP_ENOKERNEL).  With a
     * device, the forward runs there as in inference and the backward on
     * the CPU: the forward values the backward reads are copied to the
     * host, and the optimizer's updates reach the device at the next run
     * (docs/gpu.md, "Training").  Only read during smlp_session_create. */
    const char *loss;
    /* NULL-terminated list of shell globs (fnmatch, '*' matches '.'):
     * parameters matching one get no gradient and are not planned for
     * one (a frozen backbone for a linear probe).  NULL: none frozen.
     * Only read during smlp_session_create. */
    const char *const *frozen;
    /* Training: 1 = give no op the bytes it asks to keep from its forward
     * for its backward (ABI 1.2 saved bytes, e.g. moe.expert_ffn's
     * pre-activations); their backwards recompute them instead.  Less
     * memory (they live from the node's forward step to its backward
     * step), a slower backward, gradients equal to rounding (another
     * summation order).  Default 0: keep them.  Only read during
     * smlp_session_create. */
    int recompute;
};

SMLP_API void smlp_session_opts_init(struct smlp_session_opts *opts);

/*
 * Loads the graph's plugins into `reg`, resolves every node to an op and a
 * kernel, infers shapes with opts->batch, plans the arena, allocates it and
 * the parameters, and initializes parameters (from opts->weights or the
 * graph's seeded initializers) and inputs (seeded synthetic data).
 * The session holds `graph` and `reg`: smlp_graph_unload and
 * smlp_registry_destroy may come before smlp_session_destroy, which then
 * frees them (the last session of each does; sessions may be destroyed
 * on different threads).
 */
SMLP_API smlp_session_t *smlp_session_create(
    const smlp_graph_t *graph, smlp_registry_t *reg,
    const struct smlp_session_opts *opts, struct smlp_error *err);
SMLP_API void smlp_session_destroy(smlp_session_t *s);
SMLP_API const char *smlp_session_errmsg(const smlp_session_t *s);

/* Runs the graph once (forward).  Blocks until every node is done. */
SMLP_API int smlp_session_run(smlp_session_t *s);

/*
 * A view of tensor `name` with the session's shapes.  Inputs, outputs,
 * parameters and state have stable data (outputs read as zeros until
 * the first run: the arena is zeroed at creation); other activations get
 * data NULL (their arena bytes are reused), and so does every tensor of
 * a plan_only session.  SMLP_ENOENT when there is no such tensor.
 */
SMLP_API int smlp_session_tensor(smlp_session_t *s, const char *name,
                                 struct smlp_tensor *out);
/* Graph tensors of a kind, in graph order: 0 act, 1 param, 2 state,
 * 3 input, 4 output. */
SMLP_API int smlp_session_tensor_count(const smlp_session_t *s, int kind);
SMLP_API const char *smlp_session_tensor_name(const smlp_session_t *s,
                                              int kind, int i);

/* Fills inputs with the graph's seeded synthetic data for `seed`. */
SMLP_API int smlp_session_fill_inputs(smlp_session_t *s, uint64_t seed);
/* Loads inputs by name from a safetensors file: each input must be there
 * with the session's dtype and shape (SMLP_EIO, SMLP_ENOENT,
 * SMLP_EBADFILE, SMLP_ESHAPE, naming the file and the tensor).  Every
 * tensor is checked before any is copied: a failed call leaves the
 * inputs as they were. */
SMLP_API int smlp_session_read_inputs(smlp_session_t *s, const char *path);
/* Loads parameters and state from a safetensors file, with the same
 * checks (and opts.check_finite).  Every tensor is checked before any is
 * copied: a failed load leaves the session as it was.  Every safetensors
 * reader here also checks metadata "smlp.data_hash" when the file has it
 * (smlp's writers put it there since 0.3.0: a 64-bit hash of the data
 * block), so a file changed or damaged after it was written is refused
 * (SMLP_EBADFILE) instead of loading other numbers. */
SMLP_API int smlp_session_load_weights(smlp_session_t *s, const char *path);
/* Writes parameters and state, atomically, with "smlp.data_hash". */
SMLP_API int smlp_session_save_weights(smlp_session_t *s, const char *path);
/* Writes the graph outputs, atomically.  SMLP_EINVAL ("no run yet")
 * before the first successful smlp_session_run. */
SMLP_API int smlp_session_write_outputs(smlp_session_t *s,
                                        const char *path);

struct smlp_session_stats {
    int64_t batch;
    uint64_t params;        /* parameter elements */
    uint64_t macs;          /* multiply-accumulates of one run */
    uint64_t arena_bytes;   /* planned arena size (peak activations) */
    uint64_t lower_bound;   /* largest sum of simultaneously live buffers */
    uint64_t param_bytes;
    int n_nodes;
    int inter_op;           /* nodes run at once */
    int intra_op;           /* threads one kernel may use: its share of
                               the budget, through host parallel_for
                               (BLAS calls themselves run 1 thread) */
    double last_run_ms;     /* wall time of the last run */
};
SMLP_API int smlp_session_get_stats(const smlp_session_t *s,
                                    struct smlp_session_stats *st);

/*
 * Device memory of a session (smlp_session_stats cannot grow
 * without breaking callers, so this struct starts with its size: set
 * `size` to sizeof(struct smlp_device_stats) before the call; fields past
 * the size you give are not written).  For a session with no node on a
 * device every count is 0 and `device` is SMLP_DEVICE_CPU.
 */
struct smlp_device_stats {
    uint32_t size;
    int32_t device;        /* enum smlp_device the nodes run on */
    int32_t device_nodes;  /* nodes placed there */
    int32_t backward_on_device; /* training: 1 when the backward runs
                                   there too (docs/gpu.md, "Training") */
    uint64_t arena_bytes;  /* planned device arena (activations, and the
                              backward's timeline when it runs there) */
    uint64_t lower_bound;  /* largest sum of simultaneously live device
                              buffers */
    uint64_t param_bytes;  /* device copies of parameters and state */
    uint64_t grad_bytes;   /* parameters' gradients on the device */
};
/* SMLP_EINVAL when st is NULL or st->size is below the first fields'
 * (size and device). */
SMLP_API int smlp_session_get_device_stats(const smlp_session_t *s,
                                           struct smlp_device_stats *st);

/* Per-node profile of the last run. */
struct smlp_node_profile {
    const char *name;
    const char *op;
    uint64_t macs;
    double start_us;  /* since the start of the run */
    double end_us;
    int thread;       /* small worker number, 0 = loop thread */
};
SMLP_API int smlp_session_node_profile(const smlp_session_t *s, int i,
                                       struct smlp_node_profile *p);
/* Name of output j of the i-th node in run order (the order of
 * smlp_session_node_profile); NULL when i or j is out of range or the
 * output is absent. */
SMLP_API const char *smlp_session_node_output(const smlp_session_t *s,
                                              int i, int j);
/* The same for input j (since 0.4.0); NULL also when the input is absent
 * (an optional input the node leaves out). */
SMLP_API const char *smlp_session_node_input(const smlp_session_t *s,
                                             int i, int j);
/* Writes a Chrome/Perfetto trace (JSON) of the last run, atomically. */
SMLP_API int smlp_session_write_trace(smlp_session_t *s, const char *path);

/* ---- training (since 0.2.0; docs/training.md) --------------------------- */

/*
 * The backward pass of the last smlp_session_run() of a session created
 * with opts.training = 1 and opts.loss set: runs every node's backward in
 * reverse order (on the thread pool, as the forward) from d loss / d loss
 * = 1 and overwrites the gradient of every trainable parameter.  A
 * parameter that the loss does not depend on gets a zero gradient.
 * Forward values the backward reads stay allocated until their last
 * backward use; gradients of activations share the arena (planned with
 * the forward; smlp_session_get_stats covers both).  The backward
 * consumes its forward (it reuses the bytes of the values it has read):
 * each call needs a successful smlp_session_run of its own before it.
 * SMLP_EINVAL when the session has no loss or no such run precedes;
 * SMLP_EKERNEL, naming the node and op, when a backward kernel fails (the
 * gradients are then undefined).  SMLP_ENOKERNEL (naming the node and
 * op) when a node on a path from a trainable parameter to the loss has no
 * backward is reported at session creation, not here.  Deterministic:
 * bit-identical for any thread count (contributions to a gradient are
 * summed in a fixed order, docs/training.md).
 */
SMLP_API int smlp_session_backward(smlp_session_t *s);
/*
 * The gradient of parameter `name` as a tensor view (same dtype and
 * shape; data stable for the session's life, valid after a backward,
 * writable: an optimizer may clip it in place; owned by the session).
 * SMLP_ENOENT when there is no such parameter, SMLP_EINVAL when it is
 * frozen or not f32, the session has no loss or was created plan_only.
 */
SMLP_API int smlp_session_grad(smlp_session_t *s, const char *name,
                               struct smlp_tensor *out);

/* ---- optimizers (since 0.2.0; docs/training.md) ------------------------ */

typedef struct smlp_optim_s smlp_optim_t;

enum smlp_optimizer { SMLP_OPTIM_SGD = 0, SMLP_OPTIM_ADAMW = 1 };

/*
 * The update rules are PyTorch's (torch.optim.SGD with dampening 0,
 * torch.optim.AdamW with amsgrad off, clip_grad_norm_), on f32 state:
 *
 *   SGD:   d = g + wd p;  buf = momentum buf + d (buf = d on the first
 *          step);  d = nesterov ? d + momentum buf : buf;  p -= lr d
 *   AdamW: p *= 1 - lr wd;  m = beta1 m + (1 - beta1) g;
 *          v = beta2 v + (1 - beta2) g^2;  t = updates so far + 1;
 *          p -= lr / (1 - beta1^t) m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 */
struct smlp_optim_opts {
    int kind;            /* enum smlp_optimizer (default ADAMW) */
    double momentum;     /* SGD: heavy-ball momentum in [0, 1) (0.9); 0 =
                            plain SGD, no state */
    int nesterov;        /* SGD: Nesterov momentum (0); needs momentum > 0 */
    double beta1, beta2; /* AdamW, each in [0, 1) (0.9, 0.999) */
    double eps;          /* AdamW (1e-8) */
    /* Weight decay >= 0: AdamW's is decoupled (p *= 1 - lr wd), SGD's is
     * L2 (wd p added to the gradient).  smlp_optim_opts_init sets 0.05,
     * AdamW's usual value: a caller choosing SGD sets its own (0 = none).
     * Never applied to parameters of rank <= 1 (biases, norm gains and
     * shifts, scalars): timm's rule. */
    double weight_decay;
    /* Clip to this global L2 norm (0 = off, the default): the norm of all
     * trainable gradients together (sum of squares in double, parameters
     * in graph order); when clip_norm / (norm + 1e-6) < 1 every gradient
     * is multiplied by it, in place, before the update. */
    double clip_norm;
};
SMLP_API void smlp_optim_opts_init(struct smlp_optim_opts *o);

/*
 * An optimizer over the trainable parameters of session s: the f32
 * parameters that no opts.frozen glob matches (s must have been created
 * with training = 1 and a loss).  Its state (momentum buffers, Adam
 * moments, the step count) is zero at creation.  The optimizer holds s:
 * smlp_session_destroy with optimizers alive only drops the caller's
 * reference (the caller must not use s after it), and the last
 * smlp_optim_destroy frees the session (since 0.2.1; before, s had to
 * outlive its optimizers).
 * NULL with SMLP_EINVAL for an option out of range (naming it) or a
 * session without a loss; SMLP_ENOMEM.
 */
SMLP_API smlp_optim_t *smlp_optim_create(smlp_session_t *s,
                                         const struct smlp_optim_opts *o,
                                         struct smlp_error *err);
SMLP_API void smlp_optim_destroy(smlp_optim_t *opt);
/*
 * One update with learning rate lr (finite, >= 0) from the session's
 * current gradients (after smlp_session_backward).  One step per
 * backward: SMLP_EINVAL, with nothing changed, unless a successful
 * smlp_session_backward has run since this optimizer's last step and
 * since the last smlp_checkpoint_load (none has run yet, the last one
 * failed, its gradients were applied already, or they belong to the
 * parameters before a load); a forward in between is allowed.  Clips first when
 * clip_norm > 0.  *grad_norm (may be NULL) receives the global gradient
 * norm before clipping.  SMLP_EINVAL when a gradient holds a NaN or an
 * infinity: nothing is updated (parameters, state, step count, and the
 * gradients are not clipped), *grad_norm is not finite and
 * smlp_session_errmsg names the parameter and the element.  Runs on the
 * caller's thread; deterministic.
 */
SMLP_API int smlp_optim_step(smlp_optim_t *opt, double lr,
                             double *grad_norm);
/* Updates done so far (restored by smlp_checkpoint_load). */
SMLP_API int64_t smlp_optim_steps(const smlp_optim_t *opt);

/*
 * Learning rate at `step` (0-based) of `total`: linear warm-up from 0 to
 * base over `warmup` steps, then cosine decay from base to min_lr at
 * step total (MAE / MoCo v3; timm's CosineLRScheduler with warmup_prefix
 * and warmup_lr_init 0; torch's CosineAnnealingLR after the warm-up):
 *
 *   step < warmup:          base * step / warmup
 *   warmup <= step < total: min_lr + (base - min_lr) / 2 * (1 + cos(pi t)),
 *                           t = (step - warmup) / (total - warmup)
 *   step >= total:          min_lr
 *
 * Negative step or warmup count as 0.  Also gives MoCo's momentum:
 * m = 1 - smlp_lr_cosine(1 - m0, 0, step, 0, total).
 */
SMLP_API double smlp_lr_cosine(double base, double min_lr, int64_t step,
                               int64_t warmup, int64_t total);

/* ---- checkpoints (since 0.2.0; docs/training.md) ----------------------- */

/*
 * A checkpoint is one safetensors file: the session's parameters and
 * state under their graph names (so it also loads as weights), the
 * optimizer's state under "optim.<slot>.<param>" (opt may be NULL; slots
 * momentum_buffer for SGD with momentum, exp_avg and exp_avg_sq for
 * AdamW, f32 and shaped like the parameter), and string metadata
 * (__metadata__): the pairs meta_keys/meta_values[0..n_meta) of the
 * caller, whose keys must not start with "smlp.", plus smlp's own:
 * "smlp.graph" (graph name), "smlp.version", "smlp.step" (the session's
 * run counter, which seeds gate noise: restored by a load so that a
 * resumed run is bit-identical), "smlp.seed" (the session's seed, which
 * the caller must give the resuming session), "smlp.data_hash" (since
 * 0.3.0; loads check it) and, with an optimizer, "smlp.optim.kind"
 * ("sgd" or "adamw") and "smlp.optim.steps".  It is
 * written to a temporary file in the same directory, fsync'ed, renamed
 * over path and the directory fsync'ed: a reader sees the old file or the
 * new one, never a part.  SMLP_EINVAL (reserved or duplicate key, opt of
 * another session), SMLP_EIO (path named), SMLP_ENOMEM; messages in
 * smlp_session_errmsg.
 */
SMLP_API int smlp_checkpoint_save(smlp_session_t *s, const smlp_optim_t *opt,
                                  const char *path,
                                  const char *const *meta_keys,
                                  const char *const *meta_values, int n_meta);
/*
 * Loads a checkpoint written by smlp_checkpoint_save into s (parameters,
 * state, the run counter) and into opt when not NULL (its state and step
 * count).  Every tensor must be present with its dtype and shape; the
 * whole file is validated before anything is changed, so a failed load
 * leaves s and opt as they were, with a message naming the file and the
 * tensor or key: SMLP_EIO (cannot open), SMLP_EBADFILE (malformed or
 * truncated, not a checkpoint, wrong dtype, NaN/infinity with
 * opts.check_finite), SMLP_ENOENT (missing tensor), SMLP_ESHAPE,
 * SMLP_EINVAL (an optimizer of another kind, naming both, or a file
 * without optimizer state).  Extra tensors are ignored.  Then
 * smlp_checkpoint_meta reads the file's metadata.
 */
SMLP_API int smlp_checkpoint_load(smlp_session_t *s, smlp_optim_t *opt,
                                  const char *path);
/* Value of metadata `key` of the last checkpoint loaded into s, or NULL;
 * valid until the next successful load or the session's end. */
SMLP_API const char *smlp_checkpoint_meta(const smlp_session_t *s,
                                          const char *key);

#ifdef __cplusplus
}
#endif

#endif /* SMLP_H */
