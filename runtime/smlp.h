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
 * or option at fault.  Objects are not thread-safe: use one from one
 * thread at a time.
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
#define SMLP_VERSION_MINOR 1
#define SMLP_VERSION_PATCH 0
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
 * destroyed.  Tools read arities and attribute schemas from it (since
 * 0.1.0).
 */
SMLP_API const struct smlp_op_def *
smlp_registry_op_def(const smlp_registry_t *reg, const char *name);
/* Unloads plugins; every session using the registry must be gone. */
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
};

SMLP_API void smlp_session_opts_init(struct smlp_session_opts *opts);

/*
 * Loads the graph's plugins into `reg`, resolves every node to an op and a
 * kernel, infers shapes with opts->batch, plans the arena, allocates it and
 * the parameters, and initializes parameters (from opts->weights or the
 * graph's seeded initializers) and inputs (seeded synthetic data).
 * `graph` and `reg` must outlive the session.
 */
SMLP_API smlp_session_t *smlp_session_create(const smlp_graph_t *graph,
                                             smlp_registry_t *reg,
                                             const struct smlp_session_opts *opts,
                                             struct smlp_error *err);
SMLP_API void smlp_session_destroy(smlp_session_t *s);
SMLP_API const char *smlp_session_errmsg(const smlp_session_t *s);

/* Runs the graph once (forward).  Blocks until every node is done. */
SMLP_API int smlp_session_run(smlp_session_t *s);

/*
 * A view of tensor `name` with the session's shapes.  Inputs, outputs,
 * parameters and state have stable data; other activations get data NULL
 * (their arena bytes are reused).  SMLP_ENOENT when there is no such
 * tensor.
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
/* Loads inputs by name from a safetensors file (shapes must match). */
SMLP_API int smlp_session_read_inputs(smlp_session_t *s, const char *path);
/* Loads parameters and state from a safetensors file. */
SMLP_API int smlp_session_load_weights(smlp_session_t *s, const char *path);
/* Writes parameters and state, atomically. */
SMLP_API int smlp_session_save_weights(smlp_session_t *s, const char *path);
/* Writes the graph outputs, atomically. */
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
    int intra_op;           /* threads inside one kernel (BLAS) */
    double last_run_ms;     /* wall time of the last run */
};
SMLP_API int smlp_session_get_stats(const smlp_session_t *s,
                                    struct smlp_session_stats *st);

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
/* Writes a Chrome/Perfetto trace (JSON) of the last run, atomically. */
SMLP_API int smlp_session_write_trace(smlp_session_t *s, const char *path);

#ifdef __cplusplus
}
#endif

#endif /* SMLP_H */
