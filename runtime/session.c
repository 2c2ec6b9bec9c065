/*
 * session.c - binding a graph to ops, shapes, memory and threads.
 *
 * smlp_session_create runs the pipeline once: open the device asked for
 * (device.h), load the graph's plugins, resolve each node to an op and a
 * kernel, infer shapes in graph order for the batch size, place each node
 * (on the device when its op has a kernel there, else on the CPU), plan
 * the arenas (plan.c), choose the thread budget, set up the scheduler
 * (sched.c), allocate and initialize.  A training session with a loss
 * also gets its backward pass (autograd.c) between shape inference and
 * planning.  Everything a user can get wrong is reported naming the graph
 * file, the node and the op.
 */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "device.h"

const char *
smlp__device_name(int device)
{
    static const char *const names[] = {"cpu", "cuda"};

    _Static_assert(sizeof(names) / sizeof(names[0]) == SMLP_DEVICE_COUNT,
                   "a name per enum smlp_device");
    return device >= 0 && device < SMLP_DEVICE_COUNT ? names[device]
                                                     : "device?";
}

SMLP_API void
smlp_session_opts_init(struct smlp_session_opts *o)
{
    if (o == NULL)
        return;
    memset(o, 0, sizeof(*o));
    o->batch = 1;
}

int
smlp__session_fail(smlp_session_t *s, int status, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(s->errmsg, sizeof(s->errmsg), fmt, ap);
    va_end(ap);
    return status;
}

SMLP_API const char *
smlp_session_errmsg(const smlp_session_t *s)
{
    if (s == NULL)
        return "no session (NULL)";
    return s->errmsg[0] ? s->errmsg : "no error";
}

/* numel * dtype size of a shape, or -1 when a dimension is negative or
 * the size is over SMLP__MAX_BYTES. */
static int64_t
shape_bytes(const int64_t *shape, int rank, size_t elem)
{
    int64_t n = (int64_t)elem;
    int i;

    for (i = 0; i < rank; i++) {
        if (shape[i] < 0)
            return -1;
        if (shape[i] != 0 && n > (int64_t)SMLP__MAX_BYTES / shape[i])
            return -1;
        n *= shape[i];
    }
    return n;
}

static int
negative_dim(const struct smlp_tensor *t)
{
    int d;

    for (d = 0; d < t->rank; d++)
        if (t->shape[d] < 0)
            return 1;
    return 0;
}

static int
setup_tensors(smlp_session_t *s, struct smlp_error *err)
{
    const struct smlp__graph_ir *ir = s->graph->ir;
    char buf[200];
    int32_t i, d;

    s->n_tensors = ir->n_tensors;
    s->tensors = smlp__calloc((size_t)ir->n_tensors, sizeof(*s->tensors));
    if (s->tensors == NULL)
        return smlp__seterr(err, SMLP_ENOMEM, "out of memory");
    for (i = 0; i < ir->n_tensors; i++) {
        const struct smlp__tensor_ir *ti = &ir->tensors[i];
        struct smlp__tensor_rt *t = &s->tensors[i];

        t->t.size = sizeof(t->t);
        t->t.abi = SMLP_ABI_VERSION;
        t->t.dtype = ti->dtype;
        t->kind = ti->kind;
        t->buffer = -1;
        t->dev_buffer = -1;
        t->t.rank = -1;
        if (ti->kind == SMLP__TENSOR_ACTIVATION ||
            ti->kind == SMLP__TENSOR_OUTPUT)
            continue; /* shapes come from inference */
        t->t.rank = ti->rank;
        for (d = 0; d < ti->rank; d++)
            t->t.shape[d] = ti->shape[d] == -1 ? s->opts.batch : ti->shape[d];
        if (shape_bytes(t->t.shape, t->t.rank, smlp__dtype_size(t->t.dtype)) <
            0)
            return smlp__seterr(err, SMLP_ESHAPE,
                                "%s: tensor '%s': shape %s is too large "
                                "(over 2^48 bytes)",
                                s->graph->source, ti->name,
                                smlp__shape_str(t->t.shape, t->t.rank, buf,
                                                sizeof(buf)));
    }
    return SMLP_OK;
}

static const struct smlp__kernel *
choose_kernel(const struct smlp__op *op, const struct smlp_infer_ctx *ctx,
              int device)
{
    const struct smlp__kernel *best = NULL;
    int dtype = -1, i;

    for (i = 0; i < ctx->n_inputs; i++)
        if (ctx->inputs[i] != NULL) {
            dtype = ctx->inputs[i]->dtype;
            break;
        }
    for (i = 0; i < op->n_kernels; i++) {
        const struct smlp_kernel_def *k = &op->kernels[i].def;

        if (k->device != device)
            continue;
        if (dtype >= 0 && k->dtype_mask != 0 &&
            !(k->dtype_mask & (1u << dtype)))
            continue;
        if (k->supports != NULL && !k->supports(ctx))
            continue;
        if (best == NULL || k->score > best->def.score)
            best = &op->kernels[i];
    }
    return best;
}

/*
 * The first input whose declared shape has no -1 and starts with `first`,
 * or -1.  When a dimension declared -1 comes out as `first` instead of the
 * session's batch, such an input has fixed the graph's batch.
 */
static int32_t
fixed_batch_input(const smlp_session_t *s, int64_t first)
{
    const struct smlp__graph_ir *ir = s->graph->ir;
    int32_t i, d;

    for (i = 0; i < ir->n_tensors; i++) {
        const struct smlp__tensor_ir *ti = &ir->tensors[i];

        if (ti->kind != SMLP__TENSOR_INPUT || ti->rank < 1 ||
            ti->shape[0] != first)
            continue;
        for (d = 1; d < ti->rank && ti->shape[d] != -1; d++)
            ;
        if (d == ti->rank)
            return i;
    }
    return -1;
}

/*
 * Output j of node n did not come out as the graph declares it: `want`,
 * its -1s replaced by the session's batch.  When the difference is in a
 * dimension declared -1 and an input has fixed the batch to what came out
 * there, that input and the session's batch are at fault, not node n:
 * reports so (SMLP_ESHAPE) and returns the status; else returns SMLP_OK
 * and the caller reports the mismatch itself.
 */
static int
output_batch_mismatch(smlp_session_t *s, const struct smlp__node_rt *n,
                      int32_t j, const int64_t *want,
                      struct smlp_error *err)
{
    const struct smlp__tensor_ir *decl =
        &s->graph->ir->tensors[n->node.ir->outputs[j]];
    const struct smlp_tensor *t = n->out[j];
    const struct smlp__tensor_ir *in;
    char b1[200], b2[200], b3[200];
    int32_t d, k;

    for (d = 0; d < decl->rank && d < t->rank; d++) {
        if (decl->shape[d] != -1 || t->shape[d] == s->opts.batch)
            continue;
        k = fixed_batch_input(s, t->shape[d]);
        if (k < 0)
            continue;
        in = &s->graph->ir->tensors[k];
        return smlp__seterr(
            err, SMLP_ESHAPE,
            "%s: input '%s' has a fixed batch of %lld (declared %s); the "
            "session asks for batch %lld (node %d '%s' (%s) gives output "
            "'%s' %s where the graph declares %s)",
            s->graph->source, in->name, (long long)in->shape[0],
            smlp__shape_str(in->shape, in->rank, b1, sizeof(b1)),
            (long long)s->opts.batch, n->node.index, n->node.ir->name,
            n->node.ir->op, decl->name,
            smlp__shape_str(t->shape, t->rank, b2, sizeof(b2)),
            smlp__shape_str(want, decl->rank, b3, sizeof(b3)));
    }
    return SMLP_OK;
}

/* Checks what infer() wrote into output j of node n. */
static int
check_output(smlp_session_t *s, struct smlp__node_rt *n, int32_t j,
             struct smlp_error *err)
{
    const struct smlp__graph_ir *ir = s->graph->ir;
    int32_t ti = n->node.ir->outputs[j];
    const struct smlp__tensor_ir *decl = &ir->tensors[ti];
    struct smlp_tensor *t = &s->tensors[ti].t;
    char b1[200], b2[200];
    int32_t d;

    if (t->rank < 0 || t->rank > SMLP_MAX_RANK || t->dtype < 0 ||
        t->dtype >= SMLP_DTYPE_COUNT)
        return smlp__seterr(err, SMLP_EINVAL,
                            "%s: node %d '%s' (%s): shape inference left "
                            "output %d '%s' with rank %d and dtype %d (rank "
                            "0 to %d, dtype 0 to %d)",
                            s->graph->source, n->node.index, n->node.ir->name,
                            n->node.ir->op, j, decl->name, (int)t->rank,
                            (int)t->dtype, SMLP_MAX_RANK,
                            SMLP_DTYPE_COUNT - 1);
    if (shape_bytes(t->shape, t->rank, smlp__dtype_size(t->dtype)) < 0)
        return smlp__seterr(err, SMLP_ESHAPE,
                            "%s: node %d '%s' (%s): output %d '%s' has shape "
                            "%s, %s",
                            s->graph->source, n->node.index, n->node.ir->name,
                            n->node.ir->op, j, decl->name,
                            smlp__shape_str(t->shape, t->rank, b1,
                                            sizeof(b1)),
                            negative_dim(t) ? "with a negative dimension"
                                            : "over 2^48 bytes");
    if (decl->has_shape) {
        int64_t want[SMLP_MAX_RANK];
        int same = decl->rank == t->rank;

        for (d = 0; d < decl->rank; d++) {
            want[d] = decl->shape[d] == -1 ? s->opts.batch : decl->shape[d];
            if (same && want[d] != t->shape[d])
                same = 0;
        }
        if (!same && output_batch_mismatch(s, n, j, want, err) != SMLP_OK)
            return SMLP_ESHAPE;
        if (!same || decl->dtype != t->dtype)
            return smlp__seterr(
                err, SMLP_ESHAPE,
                "%s: node %d '%s' (%s): output %d '%s' is %s %s, but the "
                "graph declares %s %s",
                s->graph->source, n->node.index, n->node.ir->name,
                n->node.ir->op, j, decl->name, smlp__dtype_name(t->dtype),
                smlp__shape_str(t->shape, t->rank, b1, sizeof(b1)),
                smlp__dtype_name(decl->dtype),
                smlp__shape_str(want, decl->rank, b2, sizeof(b2)));
    }
    return SMLP_OK;
}

static int
infer_node(smlp_session_t *s, struct smlp__node_rt *n, struct smlp_error *err)
{
    const struct smlp__node_ir *nir = n->node.ir;
    const char *src = s->graph->source;
    struct smlp_infer_ctx ctx;
    int32_t j;
    int rc;

    memset(&ctx, 0, sizeof(ctx));
    ctx.size = sizeof(ctx);
    ctx.abi = SMLP_ABI_VERSION;
    ctx.host = &smlp__host_api;
    ctx.node = &n->node;
    ctx.n_inputs = nir->n_inputs;
    ctx.n_outputs = nir->n_outputs;
    ctx.inputs = (const struct smlp_tensor *const *)n->in;
    ctx.outputs = n->out;
    ctx.training = s->opts.training;
    for (j = 0; j < nir->n_inputs; j++)
        if (n->in[j] == NULL && j < n->op->def.min_inputs)
            return smlp__seterr(err, SMLP_EBADGRAPH,
                                "%s: node %d '%s' (%s): input %d is "
                                "required but absent (-1)",
                                src, n->node.index, nir->name, nir->op, j);
    for (j = 0; j < nir->n_outputs; j++) {
        n->out[j]->rank = -1;
        n->out[j]->dtype = -1;
    }
    n->node.err[0] = '\0';
    rc = n->op->def.infer(&ctx);
    n->priv = ctx.priv;
    n->priv_free = ctx.priv_free;
    if (rc != SMLP_OK)
        return smlp__seterr(err, rc < 0 ? rc : SMLP_EINVAL,
                            "%s: node %d '%s' (%s): %s", src, n->node.index,
                            nir->name, nir->op,
                            n->node.err[0] ? n->node.err
                                           : "shape inference failed");
    for (j = 0; j < nir->n_outputs; j++)
        if ((rc = check_output(s, n, j, err)) != SMLP_OK)
            return rc;
    if (ctx.workspace > SMLP__MAX_BYTES ||
        ctx.backward_workspace > SMLP__MAX_BYTES ||
        ctx.saved_bytes > SMLP__MAX_BYTES)
        return smlp__seterr(err, SMLP_ELIMIT,
                            "%s: node %d '%s' (%s): shape inference asks "
                            "for %zu bytes of %s, over the limit of 2^48",
                            src, n->node.index, nir->name, nir->op,
                            ctx.workspace > SMLP__MAX_BYTES
                                ? ctx.workspace
                            : ctx.backward_workspace > SMLP__MAX_BYTES
                                ? ctx.backward_workspace
                                : ctx.saved_bytes,
                            ctx.workspace > SMLP__MAX_BYTES ? "workspace"
                            : ctx.backward_workspace > SMLP__MAX_BYTES
                                ? "backward workspace"
                                : "saved bytes");
    n->workspace = ctx.workspace;
    n->bwd_workspace = ctx.backward_workspace;
    n->saved_bytes = s->opts.recompute ? 0 : ctx.saved_bytes;
    n->macs = ctx.macs;
    n->is_view = (n->op->def.flags & SMLP_OP_VIEW) != 0;
    if (n->is_view &&
        (nir->n_inputs < 1 || n->in[0] == NULL ||
         n->in[0]->dtype != n->out[0]->dtype ||
         smlp_tensor_numel(n->in[0]) != smlp_tensor_numel(n->out[0]) ||
         s->tensors[nir->inputs[0]].kind == SMLP__TENSOR_PARAMETER ||
         s->tensors[nir->inputs[0]].kind == SMLP__TENSOR_STATE))
        n->is_view = 0; /* run its kernel (a copy) instead of aliasing */
    n->device = SMLP_DEVICE_CPU;
    if (s->opts.device != SMLP_DEVICE_CPU && !n->is_view) {
        n->kernel = choose_kernel(n->op, &ctx, s->opts.device);
        if (n->kernel != NULL) {
            n->device = s->opts.device;
            s->n_dev_nodes++;
        } else {
            smlp__host_api.log(SMLP_LOG_WARN,
                               "%s: node %d '%s' (%s): no %s kernel, runs "
                               "on the CPU (the runtime copies its tensors)",
                               src, n->node.index, nir->name, nir->op,
                               smlp__device_name(s->opts.device));
        }
    }
    if (n->kernel == NULL)
        n->kernel = choose_kernel(n->op, &ctx, SMLP_DEVICE_CPU);
    if (n->kernel == NULL)
        return smlp__seterr(err, SMLP_ENOKERNEL,
                            "%s: node %d '%s' (%s): no CPU kernel of plugin "
                            "'%s' supports this node",
                            src, n->node.index, nir->name, nir->op,
                            n->op->plugin->name);
    return SMLP_OK;
}

/*
 * Refuses an attribute of node n that its op does not declare (when the
 * op declares its attributes: def.attrs not NULL), so that a misspelt
 * name is an error rather than a run with the default value.
 */
static int
check_attrs(const smlp_session_t *s, const struct smlp__node_rt *n,
            struct smlp_error *err)
{
    const struct smlp__node_ir *nir = n->node.ir;
    const struct smlp_attr_def *decl = n->op->def.attrs;
    char list[300] = "";
    size_t used = 0;
    int32_t j, k;

    if (decl == NULL)
        return SMLP_OK;
    for (j = 0; j < nir->n_attrs; j++) {
        for (k = 0; decl[k].name != NULL; k++)
            if (strcmp(decl[k].name, nir->attrs[j].name) == 0)
                break;
        if (decl[k].name != NULL)
            continue;
        for (k = 0; decl[k].name != NULL && used < sizeof(list); k++)
            used += (size_t)snprintf(list + used, sizeof(list) - used,
                                     "%s%s", k > 0 ? ", " : "",
                                     decl[k].name);
        return smlp__seterr(err, SMLP_EBADGRAPH,
                            "%s: node %d '%s' (%s): attribute '%s' is not "
                            "one that the op declares (it declares %s)",
                            s->graph->source, n->node.index, nir->name,
                            nir->op, nir->attrs[j].name,
                            list[0] != '\0' ? list : "none");
    }
    return SMLP_OK;
}

static int
resolve_nodes(smlp_session_t *s, struct smlp_error *err)
{
    const struct smlp__graph_ir *ir = s->graph->ir;
    const char *src = s->graph->source;
    int32_t i, j, k;
    int rc;

    s->n_nodes = ir->n_nodes;
    s->nodes = smlp__calloc((size_t)ir->n_nodes, sizeof(*s->nodes));
    if (s->nodes == NULL)
        return smlp__seterr(err, SMLP_ENOMEM, "out of memory");
    for (i = 0; i < ir->n_nodes; i++) {
        struct smlp__node_rt *n = &s->nodes[i];
        const struct smlp__node_ir *nir = &ir->nodes[i];

        n->node.ir = nir;
        n->node.index = i;
        n->session = s;
        n->ws_buffer = -1;
        n->dev_ws_buffer = -1;
        n->saved_buffer = -1;
        n->op = smlp__registry_find(s->reg, nir->op);
        if (n->op == NULL) {
            struct smlp__plugin *p;
            char list[400] = "";
            size_t len = strcspn(nir->op, ".");

            for (k = 0; k < smlp_registry_op_count(s->reg); k++) {
                const char *name = smlp_registry_op_name(s->reg, k);
                if (strncmp(name, nir->op, len) == 0 && name[len] == '.' &&
                    strlen(list) + strlen(name) + 3 < sizeof(list)) {
                    strcat(list, list[0] ? ", " : "");
                    strcat(list, name);
                }
            }
            for (k = 0; k < ir->n_plugins; k++)
                if (strncmp(ir->plugins[k], nir->op, len) == 0 &&
                    ir->plugins[k][len] == '\0')
                    break;
            /* graph.c refuses an op whose plugin the graph does not
             * list, so k < n_plugins; NULL would print "?". */
            p = k < ir->n_plugins
                    ? smlp__registry_plugin(s->reg, ir->plugins[k])
                    : NULL;
            return smlp__seterr(err, SMLP_ENOKERNEL,
                                "%s: node %d '%s': unknown op '%s' (plugin "
                                "'%s' from %s has: %s)",
                                src, i, nir->name, nir->op,
                                p ? p->name : "?", p ? p->path : "?",
                                list[0] ? list : "no ops");
        }
        if (nir->n_inputs < n->op->def.min_inputs ||
            nir->n_inputs > n->op->def.max_inputs ||
            nir->n_outputs != n->op->def.n_outputs) {
            if (n->op->def.min_inputs == n->op->def.max_inputs)
                return smlp__seterr(
                    err, SMLP_EBADGRAPH,
                    "%s: node %d '%s' (%s): has %d inputs and %d outputs, "
                    "the op takes %d inputs and %d outputs",
                    src, i, nir->name, nir->op, nir->n_inputs,
                    nir->n_outputs, n->op->def.min_inputs,
                    n->op->def.n_outputs);
            return smlp__seterr(
                err, SMLP_EBADGRAPH,
                "%s: node %d '%s' (%s): has %d inputs and %d outputs, the op "
                "takes %d to %d inputs and %d outputs",
                src, i, nir->name, nir->op, nir->n_inputs, nir->n_outputs,
                n->op->def.min_inputs, n->op->def.max_inputs,
                n->op->def.n_outputs);
        }
        if ((rc = check_attrs(s, n, err)) != SMLP_OK)
            return rc;
        n->in = smlp__calloc((size_t)nir->n_inputs + 1, sizeof(*n->in));
        n->out = smlp__calloc((size_t)nir->n_outputs + 1, sizeof(*n->out));
        if (n->in == NULL || n->out == NULL)
            return smlp__seterr(err, SMLP_ENOMEM, "out of memory");
        for (j = 0; j < nir->n_inputs; j++)
            n->in[j] = nir->inputs[j] < 0 ? NULL
                                          : &s->tensors[nir->inputs[j]].t;
        for (j = 0; j < nir->n_outputs; j++)
            n->out[j] = &s->tensors[nir->outputs[j]].t;
    }
    for (i = 0; i < ir->n_nodes; i++) {
        rc = infer_node(s, &s->nodes[s->graph->order[i]], err);
        if (rc != SMLP_OK)
            return rc;
        s->macs += s->nodes[s->graph->order[i]].macs;
    }
    return SMLP_OK;
}

/*
 * The thread budget T (opts.threads; 0: the CPUs online) is split into
 * inter_op nodes at once x intra_op threads inside each (host
 * parallel_for, team.c), inter_op x intra_op <= T.  BLAS itself always
 * runs one thread per call (plugins' set_threads; OpenBLAS's results
 * depend on its thread count): kernels split their GEMMs into tasks fixed
 * by the shapes, so results are bit-identical for any T.
 *
 * Which split: a node's work is estimated as macs + 16 per output element
 * + 2^16 (its fixed cost, a few microseconds); p, the graph's average
 * parallelism, is the total work over the heaviest path's, the paths
 * following data edges and the memory plan's ordering edges (a node may
 * not overwrite bytes that an earlier node still reads: plan.c; a plan
 * that packs the arena tightly along the graph order leaves little to run
 * side by side, whatever the graph's shape).  inter_op = k (k <= the
 * widest level, k <= T) keeps min(k, p) nodes busy, each running
 * q = T / k threads at an efficiency e^log2(q) (each doubling of a
 * kernel's threads costs a factor e); the k of the highest
 * min(k, p) x q x e^log2(q) wins, the smallest on ties.  e
 * is 0.9 when kernels are big (2^20 MACs or more on average: GEMMs split
 * well) and 0.5 otherwise (small kernels gain little from splitting; toy
 * graphs are better served side by side).
 *
 * Measured (docs/performance.md): the shipped Mixer and Sparse-MLP graphs
 * are chains (p = 1.00) and get 1 x T (a sparse graph at batch 1, whose
 * aux-loss branches weigh next to its tiny kernels, gets 2 x 1); the MoCo
 * graphs have four encoder passes that the graph allows side by side, but
 * their memory plan chains them (p about 1.2 with the ordering edges),
 * and 1 x 2 trains them 1.8x faster than 2 x 1 on 2 cores.
 */
/* The widest level of the graph's data edges (views not counted). */
static int32_t
data_width(const smlp_session_t *s)
{
    const smlp_graph_t *g = s->graph;
    int32_t *level, *count, i, j, width = 1;

    level = smlp__calloc((size_t)s->n_nodes + 1, sizeof(*level));
    count = smlp__calloc((size_t)s->n_nodes + 1, sizeof(*count));
    if (level == NULL || count == NULL) {
        width = s->n_nodes; /* unknown: assume wide */
        goto out;
    }
    for (i = 0; i < s->n_nodes; i++) {
        int32_t id = g->order[i], lv = 0;
        const struct smlp__node_ir *nir = s->nodes[id].node.ir;

        for (j = 0; j < nir->n_inputs; j++) {
            int32_t t = nir->inputs[j];
            if (t >= 0 && g->producer[t] >= 0 &&
                level[g->producer[t]] + 1 > lv)
                lv = level[g->producer[t]] + 1;
        }
        level[id] = lv;
        if (!s->nodes[id].is_view && ++count[lv] > width)
            width = count[lv];
    }
out:
    smlp__free(level);
    smlp__free(count);
    return width;
}

static int
choose_threads(smlp_session_t *s, struct smlp_error *err)
{
    const smlp_graph_t *g = s->graph;
    int32_t *level, *count, *rlevel, i, j, width;
    int32_t kernels = 0, threads = s->opts.threads;
    double *fin, *rstart, total = 0, longest = 0, par = 1, macs = 0, e;
    double best = -1;
    size_t n = (size_t)s->n_nodes + 1;
    int k, rc;

    if (threads <= 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        threads = cpus > 0 ? (int)cpus : 1;
    }
    /* The memory plan's ordering edges: needed whenever work may run side
     * by side (device work runs beside the CPU nodes even with inter_op
     * 1), and they bound how much can.  A chain or a budget of 1 thread
     * runs one node at a time: no edges (their cost grows as the square
     * of the buffers). */
    width = data_width(s);
    if (s->n_dev_nodes > 0 || (threads > 1 && width > 1))
        if ((rc = smlp__plan_add_reuse_edges(s, err)) != SMLP_OK)
            return rc;
    width = 1;
    level = smlp__calloc(n, sizeof(*level));
    count = smlp__calloc(n, sizeof(*count));
    rlevel = smlp__calloc(n, sizeof(*rlevel));
    fin = smlp__calloc(n, sizeof(*fin));
    rstart = smlp__calloc(n, sizeof(*rstart));
    if (level != NULL && count != NULL && rlevel != NULL && fin != NULL &&
        rstart != NULL) {
        /* In graph order, a topological order of both kinds of edges
         * (the plan's go from earlier to later steps).  Before
         * smlp__sched_init, a node's succ holds only the plan's edges. */
        for (i = 0; i < s->n_nodes; i++) {
            int32_t id = g->order[i], lv = rlevel[id];
            const struct smlp__node_rt *nd = &s->nodes[id];
            const struct smlp__node_ir *nir = nd->node.ir;
            double w = 0, start = rstart[id];

            for (j = 0; j < nir->n_inputs; j++) {
                int32_t t = nir->inputs[j], p;
                if (t < 0 || (p = g->producer[t]) < 0)
                    continue;
                if (level[p] + 1 > lv)
                    lv = level[p] + 1;
                if (fin[p] > start)
                    start = fin[p];
            }
            level[id] = lv;
            if (!nd->is_view) {
                if (++count[lv] > width)
                    width = count[lv];
                w = (double)nd->macs + 65536.0;
                for (j = 0; j < nir->n_outputs; j++)
                    w += 16.0 * (double)smlp_tensor_numel(nd->out[j]);
                macs += (double)nd->macs;
                kernels++;
            }
            fin[id] = start + w;
            total += w;
            if (fin[id] > longest)
                longest = fin[id];
            for (j = 0; j < nd->n_succ; j++) {
                int32_t c = nd->succ[j];
                if (fin[id] > rstart[c])
                    rstart[c] = fin[id];
                if (lv + 1 > rlevel[c])
                    rlevel[c] = lv + 1;
            }
        }
        if (longest > 0)
            par = total / longest;
    }
    smlp__free(level);
    smlp__free(count);
    smlp__free(rlevel);
    smlp__free(fin);
    smlp__free(rstart);
    e = kernels > 0 && macs / kernels >= 1048576.0 ? 0.9 : 0.5;
    s->inter_op = 1;
    for (k = 1; k <= width && k <= threads; k++) {
        int intra = threads / k;
        double score = (k < par ? k : par) * intra * pow(e, log2(intra));

        if (score > best + 1e-9) {
            best = score;
            s->inter_op = k;
        }
    }
    s->intra_op = threads / s->inter_op;
    s->parallelism = par;
    smlp__host_api.log(SMLP_LOG_DEBUG,
                       "%s: parallelism %.2f, widest level %d, %s kernels: "
                       "%d nodes at once x %d threads each",
                       g->source, par, width, e > 0.5 ? "big" : "small",
                       s->inter_op, s->intra_op);
    return SMLP_OK;
}

static int
alloc_memory(smlp_session_t *s, struct smlp_error *err)
{
    const struct smlp__graph_ir *ir = s->graph->ir;
    uint64_t off = 0, need, grad_bytes;
    int32_t i;
    int rc;

    for (i = 0; i < s->n_tensors; i++) {
        struct smlp__tensor_rt *t = &s->tensors[i];
        if (t->kind != SMLP__TENSOR_PARAMETER && t->kind != SMLP__TENSOR_STATE)
            continue;
        /* Each at most SMLP__MAX_BYTES (setup_tensors): stop adding
         * before the sum could wrap. */
        if (off <= SMLP__MAX_BYTES)
            off += ((uint64_t)shape_bytes(t->t.shape, t->t.rank,
                                          smlp__dtype_size(t->t.dtype)) +
                    SMLP__ALIGN - 1) &
                   ~(uint64_t)(SMLP__ALIGN - 1);
        if (t->kind == SMLP__TENSOR_PARAMETER)
            s->n_params += (uint64_t)smlp_tensor_numel(&t->t);
    }
    if (off > SMLP__MAX_BYTES)
        return smlp__seterr(err, SMLP_ELIMIT,
                            "%s: the parameters and state need more than "
                            "2^48 bytes",
                            s->graph->source);
    s->param_bytes = off;
    grad_bytes = s->ag != NULL ? s->ag->grad_bytes : 0;
    need = s->plan.arena_bytes + s->param_bytes + grad_bytes;
    if (s->opts.max_memory != 0 && need > s->opts.max_memory) {
        char grads[64] = "";

        if (s->ag != NULL)
            snprintf(grads, sizeof(grads), " + gradients %llu",
                     (unsigned long long)grad_bytes);
        return smlp__seterr(err, SMLP_ELIMIT,
                            "%s: batch %lld needs %llu bytes (activations "
                            "%llu + parameters %llu%s), over the memory "
                            "limit of %llu bytes (the session's max_memory, "
                            "smlp-run --max-memory)",
                            s->graph->source, (long long)s->opts.batch,
                            (unsigned long long)need,
                            (unsigned long long)s->plan.arena_bytes,
                            (unsigned long long)s->param_bytes, grads,
                            (unsigned long long)s->opts.max_memory);
    }
    if (s->opts.plan_only)
        return SMLP_OK;
    s->arena = aligned_alloc(SMLP__ALIGN, s->plan.arena_bytes + SMLP__ALIGN);
    s->params = aligned_alloc(SMLP__ALIGN, s->param_bytes + SMLP__ALIGN);
    if (s->arena == NULL || s->params == NULL)
        return smlp__seterr(err, SMLP_ENOMEM,
                            "%s: cannot allocate %llu bytes for batch %lld "
                            "(activations %llu + parameters %llu): try a "
                            "smaller batch",
                            s->graph->source,
                            (unsigned long long)(s->plan.arena_bytes +
                                                 s->param_bytes),
                            (long long)s->opts.batch,
                            (unsigned long long)s->plan.arena_bytes,
                            (unsigned long long)s->param_bytes);
    /* Zeroed once, so that no call (smlp_session_tensor before a run, a
     * plugin reading what it did not write) sees uninitialized bytes. */
    memset(s->arena, 0, s->plan.arena_bytes);
    memset(s->params, 0, s->param_bytes);
    off = 0;
    for (i = 0; i < s->n_tensors; i++) {
        struct smlp__tensor_rt *t = &s->tensors[i];
        uint64_t bytes;

        if (t->buffer >= 0) {
            t->t.data = (char *)s->arena + s->plan.buffers[t->buffer].offset;
            continue;
        }
        if (t->kind != SMLP__TENSOR_PARAMETER && t->kind != SMLP__TENSOR_STATE)
            continue;
        bytes = (uint64_t)shape_bytes(t->t.shape, t->t.rank,
                                      smlp__dtype_size(t->t.dtype));
        t->t.data = (char *)s->params + off;
        if (!s->opts.no_init && ir->tensors[i].init.present)
            smlp__init_fill(&ir->tensors[i].init, 0, t->t.dtype, t->t.data,
                            (uint64_t)smlp_tensor_numel(&t->t));
        off += (bytes + SMLP__ALIGN - 1) & ~(uint64_t)(SMLP__ALIGN - 1);
    }
    for (i = 0; i < s->n_nodes; i++)
        if (s->nodes[i].ws_buffer >= 0)
            s->nodes[i].workspace =
                s->plan.buffers[s->nodes[i].ws_buffer].size;
    if ((rc = smlp__autograd_alloc(s, err)) != SMLP_OK)
        return rc;
    if (s->n_dev_nodes > 0)
        return smlp__device_alloc(s, err);
    return SMLP_OK;
}

SMLP_API smlp_session_t *
smlp_session_create(const smlp_graph_t *graph, smlp_registry_t *reg,
                    const struct smlp_session_opts *opts,
                    struct smlp_error *err)
{
    struct smlp_session_opts defaults;
    smlp_session_t *s;
    int32_t i;
    int rc;

    if (opts == NULL) {
        smlp_session_opts_init(&defaults);
        opts = &defaults;
    }
    if (graph == NULL || reg == NULL) {
        smlp__seterr(err, SMLP_EINVAL, "no graph or registry");
        return NULL;
    }
    if (opts->batch < 1 || opts->batch > (INT64_C(1) << 31)) {
        smlp__seterr(err, SMLP_EINVAL,
                     "batch size %lld is out of range (1 to 2^31)",
                     (long long)opts->batch);
        return NULL;
    }
    if (opts->threads < 0 || opts->threads > 1024) {
        smlp__seterr(err, SMLP_EINVAL,
                     "thread count %d is out of range (0 = all CPUs, up to "
                     "1024)",
                     opts->threads);
        return NULL;
    }
    if (opts->device < 0 || opts->device >= SMLP_DEVICE_COUNT) {
        smlp__seterr(err, SMLP_EINVAL,
                     "device %d is unknown (0 = cpu, 1 = cuda)",
                     opts->device);
        return NULL;
    }
    s = smlp__calloc(1, sizeof(*s));
    if (s == NULL) {
        smlp__seterr(err, SMLP_ENOMEM, "out of memory");
        return NULL;
    }
    s->refs = 1; /* the caller's, dropped by smlp_session_destroy */
    s->graph = graph;
    s->reg = reg;
    smlp__graph_hold(graph); /* both released by session_free */
    smlp__registry_hold(reg);
    s->opts = *opts;
    s->opts.weights = NULL; /* not owned; used below only */
    if (s->opts.device != SMLP_DEVICE_CPU &&
        smlp__device_open(s, err) != SMLP_OK)
        goto fail;
    for (i = 0; i < graph->ir->n_plugins; i++) {
        rc = smlp_registry_load(reg, graph->ir->plugins[i], err);
        if (rc != SMLP_OK) {
            char msg[sizeof(err->msg)];
            if (err != NULL) {
                /* A message too long is cut short: fine for an error. */
                if (snprintf(msg, sizeof(msg), "%s: %s", graph->source,
                             err->msg) >= (int)sizeof(msg))
                    msg[sizeof(msg) - 2] = '~';
                memcpy(err->msg, msg, sizeof(msg));
            }
            goto fail;
        }
    }
    if (setup_tensors(s, err) != SMLP_OK || resolve_nodes(s, err) != SMLP_OK ||
        smlp__autograd_prepare(s, err) != SMLP_OK)
        goto fail;
    smlp__plan_residency(s);
    if (smlp__plan_build(s, err) != SMLP_OK ||
        choose_threads(s, err) != SMLP_OK)
        goto fail;
    if (s->inter_op > 1 && smlp__plan_add_backward_edges(s, err) != SMLP_OK)
        goto fail;
    if (alloc_memory(s, err) != SMLP_OK || smlp__sched_init(s, err) != SMLP_OK)
        goto fail;
    if (s->opts.plan_only)
        return s;
    if (opts->weights != NULL &&
        smlp__weights_load(s, opts->weights,
                           (1 << SMLP__TENSOR_PARAMETER) |
                               (1 << SMLP__TENSOR_STATE)) != SMLP_OK) {
        smlp__seterr(err, SMLP_EBADFILE, "%s", s->errmsg);
        goto fail;
    }
    smlp_session_fill_inputs(s, opts->seed);
    return s;
fail:
    smlp_session_destroy(s);
    return NULL;
}

static void
session_free(smlp_session_t *s)
{
    int32_t i;

    if (s->opts.device != SMLP_DEVICE_CPU)
        smlp__device_close(s);
    smlp__sched_close(s);
    smlp__autograd_free(s);
    for (i = 0; i < s->n_nodes; i++) {
        struct smlp__node_rt *n = &s->nodes[i];
        if (n->priv_free != NULL && n->priv != NULL)
            n->priv_free(n->priv);
        smlp__free(n->in);
        smlp__free(n->out);
        smlp__free(n->succ);
        smlp__free(n->dev_t);
        smlp__free(n->dev_in);
        smlp__free(n->dev_out);
    }
    smlp__free(s->nodes);
    smlp__free(s->tensors);
    smlp__checkpoint_meta_free(s); /* checkpoint.c */
    smlp__plan_free(&s->plan);
    smlp__plan_free(&s->dev_plan);
    free(s->arena);
    free(s->params);
    /* Last: priv_free above runs plugin code, and s->graph's names were
     * in use until here. */
    smlp__graph_release(s->graph);
    smlp__registry_release(s->reg);
    smlp__free(s);
}

void
smlp__session_hold(smlp_session_t *s)
{
    __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
}

void
smlp__session_release(smlp_session_t *s)
{
    if (s != NULL && __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0)
        session_free(s);
}

/* With optimizers alive this only drops the caller's reference: the last
 * smlp_optim_destroy frees the session. */
SMLP_API void
smlp_session_destroy(smlp_session_t *s)
{
    smlp__session_release(s);
}
