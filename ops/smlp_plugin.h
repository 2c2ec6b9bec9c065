/*
 * smlp_plugin.h - the operator plugin ABI of smlp.
 *
 * This is the only header a plugin includes and the only place where the
 * runtime (libsmlp) and plugins meet.  It is modelled on SQLite's loadable
 * extensions:
 *
 *   - A plugin is a shared object exporting one function, smlp_plugin_init
 *     (see SMLP_PLUGIN_ENTRY).  The host calls it with a table of host
 *     functions (struct smlp_host_api) and a registry handle.
 *   - The plugin calls host->register_plugin() with a struct smlp_plugin_def
 *     listing its operators.  Registration is legal only inside init.
 *   - Plugins never link libsmlp: everything they need from the host comes
 *     through the host table, whose slots are only ever appended (a NULL
 *     slot means "absent in this host").
 *   - Every struct that crosses the boundary starts with `uint32_t size`
 *     and `uint32_t abi`.  The reader copies at most `size` bytes into its
 *     own zeroed struct, so fields that the writer did not know read as 0.
 *     A different ABI major is rejected with both versions in the message.
 *   - The plugin definition carries a build signature (SMLP_BUILD_SIGNATURE)
 *     that must match the host's exactly (sizes of size_t and of the index
 *     and float types, endianness).
 *
 * Thread rules: infer() runs on the thread that creates the session.
 * Kernels run on worker threads, several at once for different nodes; a
 * kernel touches only its own node's inputs, outputs and workspace.
 *
 * Every ABI field is available since ABI 1.0 unless marked otherwise.
 */
#ifndef SMLP_PLUGIN_H
#define SMLP_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SMLP_ABI_MAJOR 1
#define SMLP_ABI_MINOR 3
#define SMLP_ABI_VERSION ((uint32_t)((SMLP_ABI_MAJOR << 16) | SMLP_ABI_MINOR))
#define SMLP_ABI_MAJOR_OF(v) ((uint32_t)(v) >> 16)
#define SMLP_ABI_MINOR_OF(v) ((uint32_t)(v)&0xffffu)

#define SMLP_STR_(x) #x
#define SMLP_STR(x) SMLP_STR_(x)
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define SMLP_ENDIAN_ "be"
#else
#define SMLP_ENDIAN_ "le"
#endif
/* Compared exactly by the host when a plugin registers. */
#define SMLP_BUILD_SIGNATURE                                                 \
    "smlp-abi" SMLP_STR(SMLP_ABI_MAJOR) " size_t" SMLP_STR(__SIZEOF_SIZE_T__) \
    " idx=i32 f=f32 " SMLP_ENDIAN_

/* Exported with default visibility even under -fvisibility=hidden. */
#if defined(__GNUC__)
#define SMLP_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define SMLP_PLUGIN_EXPORT
#endif

/* Most dimensions a tensor may have. */
#define SMLP_MAX_RANK 8

/*
 * Status codes shared by host and plugins: 0 is success, failures are
 * negative.  SMLP_DECLINED (positive) is not an error: the host's
 * attribute getters return it for an absent attribute.  A kernel turns a
 * node down in its supports() callback, when kernels are chosen; its run
 * (and a backward) returns 0 or a negative status, and any other value
 * fails the node.
 */
#define SMLP_STATUS_MAP(XX)                                                  \
    XX(OK, 0, "success")                                                     \
    XX(EINVAL, -1, "invalid argument")                                       \
    XX(ENOMEM, -2, "out of memory")                                          \
    XX(EBADGRAPH, -3, "malformed graph")                                     \
    XX(EABI, -4, "plugin ABI mismatch")                                      \
    XX(ENOKERNEL, -5, "no kernel for operator")                              \
    XX(EDEVICE, -6, "device error")                                          \
    XX(ECANCELED, -7, "operation canceled")                                  \
    XX(EBUSY, -8, "resource busy")                                           \
    XX(EIO, -9, "input/output error")                                        \
    XX(ENOENT, -10, "not found")                                             \
    XX(ESHAPE, -11, "shape mismatch")                                        \
    XX(ENOPLUGIN, -12, "plugin not found")                                   \
    XX(EDUPLICATE, -13, "duplicate definition")                              \
    XX(ELIMIT, -14, "resource limit exceeded")                               \
    XX(EBADFILE, -15, "malformed file")                                      \
    XX(EKERNEL, -16, "kernel failed")

enum smlp_status {
#define SMLP_XX_(name, val, text) SMLP_##name = (val),
    SMLP_STATUS_MAP(SMLP_XX_)
#undef SMLP_XX_
    SMLP_DECLINED = 1
};

enum smlp_dtype {
    SMLP_DTYPE_F32 = 0,
    SMLP_DTYPE_I32 = 1,
    SMLP_DTYPE_COUNT
};

enum smlp_device {
    SMLP_DEVICE_CPU = 0,
    SMLP_DEVICE_CUDA = 1,
    SMLP_DEVICE_COUNT
};

enum smlp_attr_type {
    SMLP_ATTR_INT = 0,
    SMLP_ATTR_FLOAT = 1,
    SMLP_ATTR_STRING = 2,
    SMLP_ATTR_INTS = 3,
    SMLP_ATTR_FLOATS = 4,
    SMLP_ATTR_TYPE_COUNT
};

enum smlp_log_level {
    SMLP_LOG_ERROR = 0,
    SMLP_LOG_WARN = 1,
    SMLP_LOG_INFO = 2,
    SMLP_LOG_DEBUG = 3,
    SMLP_LOG_LEVEL_COUNT
};

/* Opaque to plugins: a node of a graph, read through the host table. */
struct smlp_node;
/* Opaque to plugins: the registry that init() registers into. */
struct smlp_registry;

/*
 * A tensor as kernels see it.  Shapes are in elements, row-major.  `data`
 * is NULL during shape inference.  The host allocates these structs.
 */
struct smlp_tensor {
    uint32_t size;
    uint32_t abi;
    int32_t dtype; /* enum smlp_dtype */
    int32_t rank;
    int64_t shape[SMLP_MAX_RANK];
    void *data;
};

/*
 * Shape inference for one node.  The host fills the inputs (absent
 * optional inputs are NULL), the plugin fills every output's dtype, rank
 * and shape and may set the fields below.  Return SMLP_OK, or a negative
 * status after describing the problem with host->errorf() (the host adds
 * file, node and op names).
 */
struct smlp_infer_ctx {
    uint32_t size;
    uint32_t abi;
    const struct smlp_host_api *host;
    const struct smlp_node *node;
    int32_t n_inputs;
    int32_t n_outputs;
    const struct smlp_tensor *const *inputs;
    struct smlp_tensor *const *outputs;
    /* Out: bytes of scratch memory a forward kernel run needs (host
     * allocates it from the arena, 64-byte aligned). */
    size_t workspace;
    /* Out: multiply-accumulates of one forward run (for reports). */
    uint64_t macs;
    /* Out: node-private state (parsed attributes...), handed back to
     * every kernel as ctx->priv and released with priv_free. */
    void *priv;
    void (*priv_free)(void *priv);
    /* In: nonzero in a training session. */
    int32_t training;
    /* Out (since 1.1): bytes of scratch memory the backward needs.  The
     * backward's workspace holds max(workspace, backward_workspace) bytes,
     * 64-byte aligned, with undefined contents: it is NOT the forward's
     * workspace (whatever the backward needs from the forward pass it
     * reads from the node's inputs and outputs, or recomputes). */
    size_t backward_workspace;
    /* Out (since 1.2): bytes the forward kernel keeps for the backward
     * (e.g. a hidden activation it would otherwise recompute).  Only a
     * training session whose backward of this node runs gives them
     * (smlp_kernel_ctx.saved, 64-byte aligned); the backward of the same
     * step gets the same bytes unchanged (smlp_backward_ctx.saved).
     * Anywhere else saved is NULL, and in a training session that
     * recomputes instead (smlp_session_opts.recompute): the forward
     * writes them only when it has them, and a backward without them
     * recomputes. */
    size_t saved_bytes;
};

/* One forward kernel invocation. */
struct smlp_kernel_ctx {
    uint32_t size;
    uint32_t abi;
    const struct smlp_host_api *host;
    const struct smlp_node *node;
    void *priv;
    int32_t n_inputs;
    int32_t n_outputs;
    const struct smlp_tensor *const *inputs;
    struct smlp_tensor *const *outputs;
    void *workspace;
    size_t workspace_size;
    int32_t training;
    /* Threads this kernel may use inside itself, through
     * host->parallel_for (since 1.1; BLAS calls should run one). */
    int32_t threads;
    /* Session seed and training step, for seeded randomness. */
    uint64_t seed;
    uint64_t step;
    /* CUDA stream (cudaStream_t) for CUDA kernels; NULL on the CPU. */
    void *stream;
    /* (since 1.2) smlp_infer_ctx.saved_bytes bytes for the backward, or
     * NULL (see there). */
    void *saved;
    size_t saved_size;
};

/*
 * Backward of one node (used by training; declared since ABI 1.0).
 *
 * inputs/outputs are the forward values of this node, as the forward
 * kernel left them in the same training step (same seed and step, so
 * seeded noise can be drawn again).  grad_outputs[j] is d loss / d output
 * j, shaped like output j, or NULL when no gradient reaches output j
 * (integer outputs, outputs nobody differentiable reads): read NULL as
 * zeros.  grad_inputs[i] is NULL where no gradient is wanted (integer
 * inputs, inputs that need none), else an f32 tensor shaped like input i
 * that the kernel overwrites with d loss / d input i (the runtime sums
 * the contributions of several consumers itself).  workspace: see
 * smlp_infer_ctx.backward_workspace.  Reductions in a fixed order, as in
 * the forward: results must not depend on `threads`.
 */
struct smlp_backward_ctx {
    uint32_t size;
    uint32_t abi;
    const struct smlp_host_api *host;
    const struct smlp_node *node;
    void *priv;
    int32_t n_inputs;
    int32_t n_outputs;
    const struct smlp_tensor *const *inputs;
    const struct smlp_tensor *const *outputs;
    const struct smlp_tensor *const *grad_outputs;
    struct smlp_tensor *const *grad_inputs;
    void *workspace;
    size_t workspace_size;
    int32_t threads;
    uint64_t seed;
    uint64_t step;
    void *stream;
    /* (since 1.2) what the forward of this step left in its saved bytes
     * (smlp_infer_ctx.saved_bytes), or NULL when it had none. */
    const void *saved;
    size_t saved_size;
};

typedef int (*smlp_infer_cb)(struct smlp_infer_ctx *ctx);
typedef int (*smlp_kernel_cb)(struct smlp_kernel_ctx *ctx);
typedef int (*smlp_backward_cb)(struct smlp_backward_ctx *ctx);
/* Returns nonzero when the kernel can run this node (optional). */
typedef int (*smlp_supports_cb)(const struct smlp_infer_ctx *ctx);

/* One kernel of an op: a device, the dtypes it handles and a score. */
struct smlp_kernel_def {
    uint32_t size;
    uint32_t abi;
    int32_t device;      /* enum smlp_device */
    uint32_t dtype_mask; /* bit (1 << SMLP_DTYPE_x) per input dtype handled */
    smlp_supports_cb supports; /* (optional) */
    smlp_kernel_cb run;
    int32_t score; /* higher wins among kernels that support a node */
    /* (since 1.3) The backward of a node this kernel ran, on the kernel's
     * device: for a CUDA kernel, enqueued on ctx->stream (the session's)
     * with device pointers in every tensor, workspace and saved bytes, and
     * the same contract as smlp_op_def.backward.  NULL: the op's backward
     * runs on the CPU.  Ignored for CPU kernels.  A session runs its
     * backward on the device only when every node that needs one has
     * it. */
    smlp_backward_cb backward;
};

/* Schema entry for one attribute; arrays of these end with name == NULL. */
struct smlp_attr_def {
    const char *name;
    int32_t type;     /* enum smlp_attr_type */
    int32_t required; /* nonzero: the graph must set it */
    const char *doc;
};

/* Op flags. */
#define SMLP_OP_VIEW 0x1u /* output 0 aliases input 0's bytes (reshape) */
/* (since ABI 1.1) No gradient flows through the op (torch.no_grad): the
 * backward engine treats its outputs as constants, whatever its inputs
 * read, so it needs no backward and its readers get no gradient through
 * it (moco.momentum_update: the momentum encoder reads the moving average
 * of trainable parameters).  A host that predates the flag refuses such a
 * node on a path from a trainable parameter to the loss (no backward). */
#define SMLP_OP_NO_GRAD 0x2u

struct smlp_op_def {
    uint32_t size;
    uint32_t abi;
    const char *name; /* "plugin.op", must start with the plugin's name */
    int32_t min_inputs;
    int32_t max_inputs;
    int32_t n_outputs;
    uint32_t flags;
    const struct smlp_attr_def *attrs; /* ends with a NULL name */
    smlp_infer_cb infer;
    /* NULL-terminated list of kernels. */
    const struct smlp_kernel_def *const *kernels;
    smlp_backward_cb backward; /* (optional) */
    const char *doc;           /* one line */
};

struct smlp_plugin_def {
    uint32_t size;
    uint32_t abi;
    const char *name;      /* must equal the plugin's file name stem */
    const char *version;   /* free text, shown in reports */
    const char *signature; /* SMLP_BUILD_SIGNATURE */
    /* NULL-terminated list of ops. */
    const struct smlp_op_def *const *ops;
    /* (optional) Called with the intra-op thread budget before kernels
     * run, never while a kernel of this plugin runs. */
    void (*set_threads)(int threads);
};

/*
 * The host table.  Append-only: new slots go at the end, and a plugin
 * checks `size` (or uses SMLP_HOST_HAS) before calling a newer slot.
 *
 * Attribute getters return SMLP_OK and set *out when the attribute is set,
 * SMLP_DECLINED when it is absent (out untouched), SMLP_EINVAL when it has
 * another type (and record an error naming node and attribute).  Returned
 * pointers stay valid for the life of the node.
 */
struct smlp_host_api {
    uint32_t size;
    uint32_t abi;
    int (*register_plugin)(struct smlp_registry *reg,
                           const struct smlp_plugin_def *def);
    void *(*alloc)(size_t size);
    void (*free)(void *ptr);
    void (*log)(int level, const char *fmt, ...);
    /* Records an error for the node being inferred or run. */
    void (*errorf)(const struct smlp_node *node, const char *fmt, ...);
    const char *(*node_name)(const struct smlp_node *node);
    int (*attr_int)(const struct smlp_node *node, const char *name,
                    int64_t *out);
    int (*attr_float)(const struct smlp_node *node, const char *name,
                      double *out);
    int (*attr_string)(const struct smlp_node *node, const char *name,
                       const char **out);
    int (*attr_ints)(const struct smlp_node *node, const char *name,
                     const int64_t **out, size_t *n);
    int (*attr_floats)(const struct smlp_node *node, const char *name,
                       const double **out, size_t *n);
    /*
     * (since 1.1) Intra-op parallelism.  From a kernel or backward of
     * `node` (ctx->node): runs fn(arg, task, worker) once for every task in
     * [0, n_tasks), on up to ctx->threads threads of the session (the
     * calling thread is one of them), and returns when all have run.
     * Tasks run concurrently and in no particular order, and worker (in
     * [0, ctx->threads)) only indexes per-thread scratch: a task must
     * write its own part of the outputs and compute it the same way
     * whichever thread runs it, so that results do not depend on the
     * thread count.  Split work into a number of tasks fixed by the shapes
     * (e.g. rows in chunks of a constant size), never by ctx->threads.
     * Returns 0, or the first nonzero value a task returned (the other
     * tasks still run).  Use smlp_parallel_for (smlp_kernel.h), which
     * loops on the calling thread when the host lacks this slot.
     */
    int (*parallel_for)(const struct smlp_node *node, int64_t n_tasks,
                        int (*fn)(void *arg, int64_t task, int worker),
                        void *arg);
};

#define SMLP_HOST_HAS(host, field)                                           \
    ((host)->size >= offsetof(struct smlp_host_api, field) +                \
                         sizeof((host)->field) &&                            \
     (host)->field != NULL)

/* The one exported function of every plugin. */
#define SMLP_PLUGIN_ENTRY_NAME "smlp_plugin_init"
typedef int (*smlp_plugin_init_cb)(const struct smlp_host_api *host,
                                   struct smlp_registry *reg,
                                   char **errmsg);
/*
 * Optional: the ABI the plugin was built for (a const uint32_t,
 * SMLP_ABI_VERSION; SMLP_PLUGIN_DEFINE exports it).  The host reads it
 * only to name the plugin's ABI when the entry point returns SMLP_EABI.
 */
#define SMLP_PLUGIN_ABI_NAME "smlp_plugin_abi"

/*
 * Defines the entry point.  The host ABI major must equal the plugin's
 * and its table must hold every ABI 1.0 slot (through attr_floats, the
 * last of them); then the plugin definition is registered.  Else it
 * returns SMLP_EABI without a message, and the host names both ABIs from
 * smlp_plugin_abi.  (An entry point written by hand may set *errmsg on
 * failure, to a string allocated with host->alloc.)
 */
#define SMLP_PLUGIN_DEFINE(def)                                              \
    SMLP_PLUGIN_EXPORT const uint32_t smlp_plugin_abi = SMLP_ABI_VERSION;    \
    SMLP_PLUGIN_EXPORT int smlp_plugin_init(const struct smlp_host_api *host, \
                                            struct smlp_registry *reg,       \
                                            char **errmsg)                   \
    {                                                                        \
        (void)errmsg;                                                        \
        if (host == NULL ||                                                  \
            SMLP_ABI_MAJOR_OF(host->abi) != SMLP_ABI_MAJOR ||                \
            host->size < offsetof(struct smlp_host_api, attr_floats) +       \
                             sizeof(host->attr_floats))                      \
            return SMLP_EABI;                                                \
        return host->register_plugin(reg, &(def));                           \
    }

/* Elements of a tensor (product of its shape). */
static inline int64_t
smlp_tensor_numel(const struct smlp_tensor *t)
{
    int64_t n = 1;
    int32_t i;

    for (i = 0; i < t->rank; i++)
        n *= t->shape[i];
    return n;
}

#ifdef __cplusplus
}
#endif

#endif /* SMLP_PLUGIN_H */
