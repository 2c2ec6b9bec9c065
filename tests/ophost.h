/*
 * ophost.h - a minimal plugin host for testing operators one at a time.
 *
 * ophost implements struct smlp_host_api on its own (no libsmlp): it
 * dlopens one plugin, calls its smlp_plugin_init, validates and records
 * the registered ops, and runs one op on tensors that the test builds:
 * shape inference (with input data hidden, as the runtime does), a check
 * of the inferred output shapes, workspace allocation and the CPU kernel
 * (or the backward).  Workspaces and outputs it allocates are filled with
 * 0xff bytes (NaN for f32, -1 for i32) so that reading scratch memory or
 * leaving output elements unwritten shows up.  Each workspace (and the
 * saved bytes) is followed by a guard zone of canary bytes, checked after
 * the kernel or backward returns: a write past its end makes the call
 * fail with SMLP_EKERNEL ("the kernel wrote past its workspace ...").
 *
 * Errors: every call returns an enum smlp_status; the message that the
 * plugin gave host->errorf (the first one, as in the runtime) or that
 * ophost wrote is kept in the host until its next call, and *errmsg (when
 * errmsg is not NULL) points to it.  Messages carry no node prefix.
 *
 * Not thread-safe: one test thread per host.  The host table's alloc and
 * free count live blocks process-wide (ophost_live_allocs), because the
 * ABI gives them no context argument.
 */
#ifndef SMLP_TEST_OPHOST_H
#define SMLP_TEST_OPHOST_H

#include <stddef.h>
#include <stdint.h>

#include "smlp_plugin.h"

struct ophost;

/*
 * One attribute of the node under test; lists end with OPHOST_END.  The
 * pointed-to values must stay valid during the call that uses them.
 */
struct ophost_attr {
    const char *name; /* NULL ends a list */
    int type;         /* enum smlp_attr_type */
    int64_t i;
    double f;
    const char *s;
    const int64_t *ints;
    const double *floats;
    size_t n; /* entries of ints / floats */
};

/* Initialisers for the entries of a `struct ophost_attr attrs[]` array. */
#define OPHOST_INT(nm, v) {.name = (nm), .type = SMLP_ATTR_INT, .i = (v)}
#define OPHOST_FLOAT(nm, v) {.name = (nm), .type = SMLP_ATTR_FLOAT, .f = (v)}
#define OPHOST_STRING(nm, v)                                                 \
    {.name = (nm), .type = SMLP_ATTR_STRING, .s = (v)}
#define OPHOST_INTS(nm, ...)                                                 \
    {.name = (nm), .type = SMLP_ATTR_INTS,                                   \
     .ints = (const int64_t[]){__VA_ARGS__},                                 \
     .n = sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)}
#define OPHOST_FLOATS(nm, ...)                                               \
    {.name = (nm), .type = SMLP_ATTR_FLOATS,                                 \
     .floats = (const double[]){__VA_ARGS__},                                \
     .n = sizeof((double[]){__VA_ARGS__}) / sizeof(double)}
#define OPHOST_END {.name = NULL}

/* Expands to the two arguments `rank, shape` of the tensor constructors:
 * ophost_f32(OPHOST_SHAPE(2, 3), data). */
#define OPHOST_SHAPE(...)                                                    \
    (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)),               \
        (const int64_t[]){__VA_ARGS__}

/* What the last shape inference reported. */
struct ophost_stats {
    size_t workspace;
    uint64_t macs;
};

/*
 * Loads a plugin: `name` is either a path (contains '/') or a plugin name
 * looked up as $SMLP_TEST_BUILDDIR/plugins/.libs/NAME.so (SMLP_TEST_BUILDDIR
 * defaults to ".").  Returns the host, or NULL with a message in err
 * (errlen bytes).  Release with ophost_destroy.
 */
struct ophost *ophost_create(const char *name, char *err, size_t errlen);
/* dlcloses the plugin and frees the host; NULL is a no-op. */
void ophost_destroy(struct ophost *h);

/* The plugin definition as registered (a zero-extended copy). */
const struct smlp_plugin_def *ophost_plugin(const struct ophost *h);
/* Registered ops (zero-extended copies), in registration order. */
int ophost_op_count(const struct ophost *h);
const struct smlp_op_def *ophost_op_at(const struct ophost *h, int i);
/* The op named `name`, or NULL. */
const struct smlp_op_def *ophost_op(const struct ophost *h, const char *name);

/* Session mode handed to infer and the kernels (default 0, inference). */
void ophost_set_training(struct ophost *h, int training);
/* In training mode, ops that ask for saved bytes (ABI 1.2) get them: a
 * poisoned buffer in ophost_run, and in ophost_backward the bytes a
 * forward kernel run on the same inputs (into scratch outputs) leaves
 * there, as in a session's step.  ophost_set_saved(h, 0) gives NULL
 * instead, as an older host or an inference session does (default on). */
void ophost_set_saved(struct ophost *h, int on);
/* Calls the plugin's set_threads (when it has one), passes `threads` to
 * kernels as ctx->threads (default 1) and runs host->parallel_for on that
 * many threads, handing tasks out in a shuffled order (ophost.c). */
void ophost_set_threads(struct ophost *h, int threads);
/* With `on`, parallel_for (top level, on ophost_set_threads' n threads)
 * deals its shuffled tasks round robin: entries w, w + n, w + 2n, ... of
 * the shuffled order go to worker w, on its own thread.  So a call with
 * at least n tasks runs every worker id in [0, n) whatever the timing,
 * which is what a test of per-worker scratch needs.  Default off: tasks
 * go to whichever thread asks first. */
void ophost_set_round_robin(struct ophost *h, int on);
/* Seed and step handed to kernels (default 0, 0). */
void ophost_set_seed(struct ophost *h, uint64_t seed, uint64_t step);

/*
 * Runs shape inference of `op` on inputs[0..n_in) (NULL entries are
 * absent optional inputs) with the given attributes (NULL: none).
 * outputs[0..n_out) (n_out must equal the op's output count): an entry
 * that is NULL receives a new tensor of the inferred dtype and shape (its
 * data allocated and poisoned; free it with ophost_tensor_free); an entry
 * that is set must already have the inferred dtype and shape, else the
 * call fails with SMLP_ESHAPE naming both (its data is allocated when
 * NULL).  Returns the status of infer or of those checks.
 */
int ophost_infer(struct ophost *h, const char *op,
                 const struct ophost_attr *attrs,
                 struct smlp_tensor *const *inputs, int n_in,
                 struct smlp_tensor **outputs, int n_out,
                 const char **errmsg);

/*
 * ophost_infer, then the best CPU kernel (highest score among those whose
 * dtype_mask has the first present input's dtype and whose supports()
 * agrees, as in the runtime) with a fresh 64-byte aligned workspace of
 * the requested size.  View ops are run too (their kernel copies).
 * Returns SMLP_OK or the first failing status.
 */
int ophost_run(struct ophost *h, const char *op,
               const struct ophost_attr *attrs,
               struct smlp_tensor *const *inputs, int n_in,
               struct smlp_tensor **outputs, int n_out, const char **errmsg);

/*
 * Runs the op's backward: infer first (for priv and the workspace size;
 * outputs must then match the inferred shapes), then backward() with the
 * forward values inputs/outputs, grad_outputs (one per output, f32 shaped
 * like it, or NULL: no gradient reaches that output) and grad_inputs (one
 * per input; NULL where no gradient is wanted, else shaped like the input
 * and overwritten).  The workspace holds max(workspace,
 * backward_workspace) poisoned bytes, as in the runtime.
 * SMLP_ENOKERNEL when the op has no backward.
 */
int ophost_backward(struct ophost *h, const char *op,
                    const struct ophost_attr *attrs,
                    struct smlp_tensor *const *inputs, int n_in,
                    struct smlp_tensor *const *outputs, int n_out,
                    struct smlp_tensor *const *grad_outputs,
                    struct smlp_tensor *const *grad_inputs,
                    const char **errmsg);

/* Workspace and MACs of the last successful shape inference. */
const struct ophost_stats *ophost_stats(const struct ophost *h);
/* The message of the last failed call ("" after a success). */
const char *ophost_errmsg(const struct ophost *h);

/*
 * Tensors owned by the test: a struct plus data (4-byte elements), data
 * copied from `data` or zeroed when it is NULL.  NULL when out of memory.
 */
struct smlp_tensor *ophost_tensor(int dtype, int rank, const int64_t *shape,
                                  const void *data);
struct smlp_tensor *ophost_f32(int rank, const int64_t *shape,
                               const float *data);
struct smlp_tensor *ophost_i32(int rank, const int64_t *shape,
                               const int32_t *data);
/* A new tensor with t's dtype and shape, zeroed (for gradients). */
struct smlp_tensor *ophost_tensor_like(const struct smlp_tensor *t);
/* Frees the struct and its data; NULL is a no-op. */
void ophost_tensor_free(struct smlp_tensor *t);

/* Blocks allocated through the host table and not yet freed. */
long ophost_live_allocs(void);
/* "EINVAL" etc. for a status. */
const char *ophost_status_name(int status);

#endif /* SMLP_TEST_OPHOST_H */
