/*
 * autograd.c - the backward pass: which tensors get a gradient, which
 * nodes run a backward, where gradients live, and the work of one node's
 * backward (docs/training.md, "The backward pass").
 *
 * At session creation (smlp__autograd_prepare, with opts.loss):
 *
 *   - trainable parameters: f32 parameters matching no opts.frozen glob;
 *   - a tensor needs a gradient when it lies on a path from a trainable
 *     parameter to the loss through f32 tensors (integer tensors carry no
 *     gradient: routing indices are constants to the backward) and no
 *     SMLP_OP_NO_GRAD node (its outputs are constants too);
 *   - a node has a backward when one of its inputs and one of its outputs
 *     need a gradient; its op must then have a backward (SMLP_ENOKERNEL
 *     otherwise, naming a parameter that reaches the loss through it);
 *   - the backward order is the reverse of the graph order, and a node's
 *     backward waits for the backwards of the nodes that read its outputs
 *     (data edges), plus the ordering edges of memory reuse (plan.c);
 *   - each (node, input) pair that receives a gradient is a contribution.
 *     The contributions to one tensor are summed in a fixed order: by
 *     backward step (the reader latest in the graph order first), then by
 *     input slot.  The first writes the tensor's gradient store directly;
 *     every other one writes a store of its own that is added, in that
 *     order, just before the tensor's producer runs its backward (for a
 *     parameter: after every node's backward).  Sums never depend on the
 *     completion order or the thread count.
 *   - views (SMLP_OP_VIEW that the runtime aliases): the output's gradient
 *     IS the view's contribution to its input's gradient (same bytes), so
 *     a reshape costs neither memory nor a copy in the backward.
 *
 * Stores of activations' gradients are arena buffers that plan.c places
 * with the forward's buffers on one timeline; trainable parameters'
 * gradients are one persistent block (smlp_session_grad).
 *
 * In a session with a device, the backward runs there when every node
 * with a backward kernel ran there with a kernel that has a device
 * backward (choose_side; ag->on_dev): then the stores live in the device
 * arena and device_cuda_bwd.c does on the stream what this file does on
 * the CPU (sums, copies, kernels), in the same order.  Otherwise every
 * backward runs here, reading host copies of the forward values.
 */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"

#define ROUND(x) (((x) + SMLP__ALIGN - 1) & ~(uint64_t)(SMLP__ALIGN - 1))

static uint64_t
tensor_bytes(const struct smlp_tensor *t)
{
    return (uint64_t)smlp_tensor_numel(t) * smlp__dtype_size(t->dtype);
}

static int
is_frozen(const char *const *globs, const char *name)
{
    /* Flags 0: '*' also matches '/' and '.' ("blocks.*" freezes all). */
    for (; globs != NULL && *globs != NULL; globs++)
        if (fnmatch(*globs, name, 0) == 0)
            return 1;
    return 0;
}

static const char *
tname(const smlp_session_t *s, int32_t t)
{
    return s->graph->ir->tensors[t].name;
}

/* Checks opts.loss and returns its tensor id, or a negative status. */
static int32_t
find_loss(smlp_session_t *s, struct smlp_error *err)
{
    const char *src = s->graph->source, *name = s->opts.loss;
    static const char *const kinds[] = {"an activation", "a parameter",
                                        "a state tensor", "an input",
                                        "an output"};
    const struct smlp_tensor *t;
    char buf[200];
    int32_t loss;

    _Static_assert(sizeof(kinds) / sizeof(kinds[0]) ==
                       SMLP__TENSOR_KIND_COUNT,
                   "a name per tensor kind");
    if (!s->opts.training)
        return smlp__seterr(err, SMLP_EINVAL,
                            "%s: loss '%s': a loss needs a training session "
                            "(opts.training = 1)",
                            src, name);
    loss = smlp__graph_ir_find_tensor(s->graph->ir, name);
    if (loss < 0)
        return smlp__seterr(err, SMLP_ENOENT,
                            "%s: loss '%s': the graph has no tensor of that "
                            "name",
                            src, name);
    if (s->tensors[loss].kind != SMLP__TENSOR_ACTIVATION &&
        s->tensors[loss].kind != SMLP__TENSOR_OUTPUT)
        return smlp__seterr(err, SMLP_EINVAL,
                            "%s: loss '%s' is %s; a loss must be computed by "
                            "a node (an activation or an output)",
                            src, name, kinds[s->tensors[loss].kind]);
    t = &s->tensors[loss].t;
    if (t->dtype != SMLP_DTYPE_F32 || t->rank != 0)
        return smlp__seterr(err, SMLP_EINVAL,
                            "%s: loss '%s' is %s %s; a loss must be an f32 "
                            "scalar (rank 0)",
                            src, name, smlp__dtype_name(t->dtype),
                            smlp__shape_str(t->shape, t->rank, buf,
                                            sizeof(buf)));
    return loss;
}

/*
 * How node n's backward runs, or an error when it has none.  `witness`
 * is a trainable parameter that reaches the loss through n.
 */
static int
bwd_kind(smlp_session_t *s, struct smlp__node_rt *n, int32_t witness,
         struct smlp_error *err)
{
    const struct smlp__node_ir *nir = n->node.ir;
    const char *src = s->graph->source;
    int32_t j, extra = -1;

    for (j = 1; j < nir->n_inputs; j++)
        if (nir->inputs[j] >= 0 && s->tensors[nir->inputs[j]].need_grad)
            extra = j;
    if (n->is_view) {
        if (extra >= 0)
            return smlp__seterr(err, SMLP_ENOKERNEL,
                                "%s: node %d '%s' (%s): a view passes a "
                                "gradient to its input 0 only, but input %d "
                                "'%s' needs one",
                                src, n->node.index, nir->name, nir->op,
                                extra, tname(s, nir->inputs[extra]));
        return SMLP__BWD_ALIAS;
    }
    if (n->op->def.backward != NULL)
        return SMLP__BWD_KERNEL;
    if ((n->op->def.flags & SMLP_OP_VIEW) && extra < 0 && n->in[0] != NULL &&
        n->in[0]->dtype == n->out[0]->dtype &&
        smlp_tensor_numel(n->in[0]) == smlp_tensor_numel(n->out[0]))
        return SMLP__BWD_COPY;
    return smlp__seterr(err, SMLP_ENOKERNEL,
                        "%s: node %d '%s' (%s): the op has no backward, but "
                        "parameter '%s' reaches the loss '%s' through this "
                        "node (freeze it with opts.frozen, or use an op with "
                        "a backward)",
                        src, n->node.index, nir->name, nir->op,
                        tname(s, witness), tname(s, s->ag->loss));
}

/* A new store of `bytes` (lifetime set later). */
static int32_t
new_store(struct smlp__autograd *ag, uint64_t bytes, int32_t param)
{
    struct smlp__gstore *st = &ag->stores[ag->n_stores];

    st->bytes = bytes;
    st->first = INT32_MAX;
    st->last = -1;
    st->buffer = -1;
    st->param = param;
    st->data = NULL;
    return ag->n_stores++;
}

static void
touch(struct smlp__autograd *ag, int32_t store, int32_t step)
{
    struct smlp__gstore *st = &ag->stores[store];

    if (step < st->first)
        st->first = step;
    if (step > st->last)
        st->last = step;
}

/* Stores of tensor t's contributions: its gstore first, then new ones. */
static void
assign_contribs(smlp_session_t *s, int32_t t)
{
    struct smlp__autograd *ag = s->ag;
    int32_t e;

    for (e = ag->coff[t]; e < ag->coff[t + 1]; e++)
        ag->contrib[e].store =
            e == ag->coff[t] ? s->tensors[t].gstore
                             : new_store(ag, tensor_bytes(&s->tensors[t].t),
                                         -1);
}

static void
grad_view(struct smlp_tensor *v, const struct smlp_tensor *like)
{
    memset(v, 0, sizeof(*v));
    v->size = sizeof(*v);
    v->abi = SMLP_ABI_VERSION;
    v->dtype = SMLP_DTYPE_F32;
    v->rank = like->rank;
    memcpy(v->shape, like->shape, sizeof(v->shape));
}

/* Marks need_grad; returns the first backward node's problem, if any. */
static int
mark(smlp_session_t *s, uint8_t *fwd, uint8_t *reach, int32_t *witness,
     struct smlp_error *err)
{
    const smlp_graph_t *g = s->graph;
    struct smlp__autograd *ag = s->ag;
    int32_t i, j;
    int kind;

    /* Reached from a trainable parameter (through f32 tensors; never
     * through an SMLP_OP_NO_GRAD op, whose outputs are constants). */
    for (i = 0; i < s->n_nodes; i++) {
        const struct smlp__node_ir *nir = s->nodes[g->order[i]].node.ir;
        int32_t w = -1;

        if (s->nodes[g->order[i]].op->def.flags & SMLP_OP_NO_GRAD)
            continue;
        for (j = 0; j < nir->n_inputs && w < 0; j++)
            if (nir->inputs[j] >= 0 && fwd[nir->inputs[j]])
                w = witness[nir->inputs[j]];
        if (w < 0)
            continue;
        for (j = 0; j < nir->n_outputs; j++)
            if (s->tensors[nir->outputs[j]].t.dtype == SMLP_DTYPE_F32) {
                fwd[nir->outputs[j]] = 1;
                witness[nir->outputs[j]] = w;
            }
    }
    /* Reaching the loss (through f32 tensors). */
    reach[ag->loss] = 1;
    for (i = s->n_nodes - 1; i >= 0; i--) {
        const struct smlp__node_ir *nir = s->nodes[g->order[i]].node.ir;
        int any = 0;

        for (j = 0; j < nir->n_outputs; j++)
            any |= reach[nir->outputs[j]];
        for (j = 0; j < nir->n_inputs && any; j++)
            if (nir->inputs[j] >= 0 &&
                s->tensors[nir->inputs[j]].t.dtype == SMLP_DTYPE_F32)
                reach[nir->inputs[j]] = 1;
    }
    for (i = 0; i < s->n_tensors; i++)
        s->tensors[i].need_grad = fwd[i] && reach[i];
    /* Nodes with a backward, checked in graph order. */
    for (i = 0; i < s->n_nodes; i++) {
        struct smlp__node_rt *n = &s->nodes[g->order[i]];
        const struct smlp__node_ir *nir = n->node.ir;
        int32_t w = -1;
        int out = 0;

        for (j = 0; j < nir->n_inputs && w < 0; j++)
            if (nir->inputs[j] >= 0 && s->tensors[nir->inputs[j]].need_grad)
                w = witness[nir->inputs[j]];
        for (j = 0; j < nir->n_outputs; j++)
            out |= s->tensors[nir->outputs[j]].need_grad;
        if (w < 0 || !out)
            continue;
        kind = bwd_kind(s, n, w, err);
        if (kind < 0)
            return kind;
        n->bwd = kind;
    }
    return SMLP_OK;
}

/* Contributions, stores, their lifetimes, views and data edges. */
static int
build(smlp_session_t *s, struct smlp_error *err)
{
    const smlp_graph_t *g = s->graph;
    struct smlp__autograd *ag = s->ag;
    int32_t n = s->n_nodes, i, j, k, e, n_contrib, *fill;

    /* Backward order: the reverse of the graph order. */
    for (i = n - 1; i >= 0; i--) {
        int32_t id = g->order[i];
        if (s->nodes[id].bwd != SMLP__BWD_NONE) {
            ag->bpos[id] = ag->n_bwd;
            ag->border[ag->n_bwd++] = id;
        }
    }
    /* Contributions, grouped by tensor, in backward order then slot. */
    for (k = 0; k < ag->n_bwd; k++) {
        const struct smlp__node_ir *nir = s->nodes[ag->border[k]].node.ir;
        for (j = 0; j < nir->n_inputs; j++)
            if (nir->inputs[j] >= 0 && s->tensors[nir->inputs[j]].need_grad)
                ag->coff[nir->inputs[j] + 1]++;
    }
    for (i = 0; i < s->n_tensors; i++)
        ag->coff[i + 1] += ag->coff[i];
    n_contrib = ag->coff[s->n_tensors];
    ag->contrib = smlp__calloc((size_t)n_contrib + 1, sizeof(*ag->contrib));
    ag->stores = smlp__calloc((size_t)(ag->n_trainable + s->n_tensors +
                                       n_contrib) + 1,
                              sizeof(*ag->stores));
    fill = smlp__calloc((size_t)s->n_tensors + 1, sizeof(*fill));
    if (ag->contrib == NULL || ag->stores == NULL || fill == NULL) {
        smlp__free(fill);
        return smlp__seterr(err, SMLP_ENOMEM, "out of memory");
    }
    for (k = 0; k < ag->n_bwd; k++) {
        int32_t id = ag->border[k];
        const struct smlp__node_ir *nir = s->nodes[id].node.ir;

        for (j = 0; j < nir->n_inputs; j++) {
            int32_t t = nir->inputs[j];
            struct smlp__contrib *c;

            if (t < 0 || !s->tensors[t].need_grad)
                continue;
            c = &ag->contrib[ag->coff[t] + fill[t]++];
            c->node = id;
            c->slot = j;
            c->store = -1;
        }
    }
    smlp__free(fill);
    /* Stores: parameters first (stores[k] is trainable[k]'s gradient). */
    for (k = 0; k < ag->n_trainable; k++) {
        int32_t p = ag->trainable[k];
        s->tensors[p].gstore =
            new_store(ag, tensor_bytes(&s->tensors[p].t), p);
    }
    for (k = 0; k < ag->n_trainable; k++)
        assign_contribs(s, ag->trainable[k]);
    for (i = 0; i < n; i++) {
        struct smlp__node_rt *nd = &s->nodes[g->order[i]];
        const struct smlp__node_ir *nir = nd->node.ir;

        for (j = 0; j < nir->n_outputs; j++) {
            int32_t o = nir->outputs[j], x;

            if (!s->tensors[o].need_grad)
                continue;
            if (nd->bwd == SMLP__BWD_ALIAS) {
                /* The view's contribution to its input is this gradient. */
                x = nir->inputs[0];
                for (e = ag->coff[x]; e < ag->coff[x + 1]; e++)
                    if (ag->contrib[e].node == nd->node.index &&
                        ag->contrib[e].slot == 0)
                        break;
                SMLP_ASSERT(e < ag->coff[x + 1]);
                s->tensors[o].gstore = ag->contrib[e].store;
            } else {
                s->tensors[o].gstore =
                    new_store(ag, tensor_bytes(&s->tensors[o].t), -1);
            }
            assign_contribs(s, o);
        }
    }
    /* Lifetimes (steps of the timeline; n + n_bwd is "after"). */
    for (e = 0; e < n_contrib; e++)
        touch(ag, ag->contrib[e].store, n + ag->bpos[ag->contrib[e].node]);
    for (i = 0; i < s->n_tensors; i++) {
        int32_t step;

        if (!s->tensors[i].need_grad)
            continue;
        if (s->tensors[i].kind == SMLP__TENSOR_PARAMETER) {
            step = n + ag->n_bwd;
        } else {
            step = n + ag->bpos[g->producer[i]];
            touch(ag, s->tensors[i].gstore, step);
        }
        for (e = ag->coff[i] + 1; e < ag->coff[i + 1]; e++)
            touch(ag, ag->contrib[e].store, step);
    }
    if (s->tensors[ag->loss].need_grad)
        touch(ag, s->tensors[ag->loss].gstore, n); /* the seed */
    /* Views of gradients, workspaces, data edges. */
    for (i = 0; i < s->n_tensors; i++)
        if (s->tensors[i].gstore >= 0)
            grad_view(&s->tensors[i].grad, &s->tensors[i].t);
    for (k = 0; k < ag->n_bwd; k++) {
        struct smlp__node_rt *nd = &s->nodes[ag->border[k]];
        const struct smlp__node_ir *nir = nd->node.ir;

        nd->gin_t = smlp__calloc((size_t)nir->n_inputs + 1,
                                 sizeof(*nd->gin_t));
        nd->gin = smlp__calloc((size_t)nir->n_inputs + 1, sizeof(*nd->gin));
        nd->gin_store = smlp__calloc((size_t)nir->n_inputs + 1,
                                     sizeof(*nd->gin_store));
        nd->gout = smlp__calloc((size_t)nir->n_outputs + 1,
                                sizeof(*nd->gout));
        if (nd->gin_t == NULL || nd->gin == NULL || nd->gin_store == NULL ||
            nd->gout == NULL)
            return smlp__seterr(err, SMLP_ENOMEM, "out of memory");
        for (j = 0; j < nir->n_inputs; j++)
            nd->gin_store[j] = -1;
        for (j = 0; j < nir->n_outputs; j++)
            if (s->tensors[nir->outputs[j]].need_grad)
                nd->gout[j] = &s->tensors[nir->outputs[j]].grad;
        if (nd->bwd == SMLP__BWD_KERNEL) {
            if (nd->bwd_workspace < nd->workspace)
                nd->bwd_workspace = nd->workspace;
        } else {
            nd->bwd_workspace = 0;
        }
    }
    for (e = 0; e < n_contrib; e++) {
        const struct smlp__contrib *c = &ag->contrib[e];
        struct smlp__node_rt *nd = &s->nodes[c->node];
        int32_t t = nd->node.ir->inputs[c->slot], p = g->producer[t];
        int32_t *succ;

        nd->gin_store[c->slot] = c->store;
        grad_view(&nd->gin_t[c->slot], &s->tensors[t].t);
        nd->gin[c->slot] = &nd->gin_t[c->slot];
        if (p < 0)
            continue; /* a parameter */
        SMLP_ASSERT(s->nodes[p].bwd != SMLP__BWD_NONE);
        for (j = 0; j < nd->n_bsucc; j++)
            if (nd->bsucc[j] == p)
                break;
        if (j < nd->n_bsucc)
            continue;
        succ = smlp__realloc(nd->bsucc,
                             (size_t)(nd->n_bsucc + 1) * sizeof(*succ));
        if (succ == NULL)
            return smlp__seterr(err, SMLP_ENOMEM, "out of memory");
        nd->bsucc = succ;
        nd->bsucc[nd->n_bsucc++] = p;
    }
    for (k = 0; k < ag->n_trainable; k++)
        ag->grad_bytes += ROUND(ag->stores[k].bytes);
    return SMLP_OK;
}

/*
 * Where the backward runs: on the session's device when every node with
 * a backward kernel ran its forward there with a kernel that has a
 * device backward (ABI 1.3), else on the CPU, with a notice naming the
 * first node (in graph order) that keeps it there.
 */
static void
choose_side(smlp_session_t *s)
{
    struct smlp__autograd *ag = s->ag;
    int32_t k;

    if (s->n_dev_nodes == 0)
        return;
    for (k = ag->n_bwd - 1; k >= 0; k--) {
        const struct smlp__node_rt *n = &s->nodes[ag->border[k]];

        if (n->bwd != SMLP__BWD_KERNEL ||
            (n->device != SMLP_DEVICE_CPU && n->kernel->def.backward != NULL))
            continue;
        smlp__host_api.log(SMLP_LOG_WARN,
                           "%s: node %d '%s' (%s): no %s backward, so the "
                           "backward runs on the CPU (the runtime copies the "
                           "forward values it reads)",
                           s->graph->source, n->node.index, n->node.ir->name,
                           n->node.ir->op,
                           smlp__device_name(s->opts.device));
        return;
    }
    ag->on_dev = 1;
}

int
smlp__autograd_prepare(smlp_session_t *s, struct smlp_error *err)
{
    struct smlp__autograd *ag;
    uint8_t *fwd = NULL, *reach = NULL;
    int32_t *witness = NULL, i, loss;
    size_t nt = (size_t)s->n_tensors + 1;
    int rc;

    for (i = 0; i < s->n_tensors; i++)
        s->tensors[i].gstore = -1;
    for (i = 0; i < s->n_nodes; i++)
        s->nodes[i].bwd_ws_buffer = -1;
    if (s->opts.loss == NULL) {
        s->opts.frozen = NULL; /* not owned */
        return SMLP_OK;
    }
    loss = find_loss(s, err);
    if (loss < 0)
        return loss;
    ag = s->ag = smlp__calloc(1, sizeof(*ag));
    if (ag == NULL)
        return smlp__seterr(err, SMLP_ENOMEM, "out of memory");
    ag->loss = loss;
    s->opts.loss = tname(s, loss); /* the caller's string is not owned */
    ag->trainable = smlp__malloc(nt * sizeof(*ag->trainable));
    ag->pindex = smlp__malloc(nt * sizeof(*ag->pindex));
    ag->coff = smlp__calloc(nt + 1, sizeof(*ag->coff));
    ag->border = smlp__malloc(((size_t)s->n_nodes + 1) * sizeof(*ag->border));
    ag->bpos = smlp__malloc(((size_t)s->n_nodes + 1) * sizeof(*ag->bpos));
    fwd = smlp__calloc(nt, 1);
    reach = smlp__calloc(nt, 1);
    witness = smlp__malloc(nt * sizeof(*witness));
    if (ag->trainable == NULL || ag->pindex == NULL || ag->coff == NULL ||
        ag->border == NULL || ag->bpos == NULL || fwd == NULL ||
        reach == NULL || witness == NULL) {
        rc = smlp__seterr(err, SMLP_ENOMEM, "out of memory");
        goto out;
    }
    for (i = 0; i < s->n_nodes; i++)
        ag->bpos[i] = -1;
    for (i = 0; i < s->n_tensors; i++) {
        ag->pindex[i] = -1;
        witness[i] = -1;
        if (s->tensors[i].kind != SMLP__TENSOR_PARAMETER ||
            s->tensors[i].t.dtype != SMLP_DTYPE_F32 ||
            is_frozen(s->opts.frozen, tname(s, i)))
            continue;
        ag->pindex[i] = ag->n_trainable;
        ag->trainable[ag->n_trainable++] = i;
        fwd[i] = 1;
        witness[i] = i;
    }
    s->opts.frozen = NULL; /* not owned */
    rc = mark(s, fwd, reach, witness, err);
    if (rc == SMLP_OK)
        rc = build(s, err);
    if (rc == SMLP_OK)
        choose_side(s);
out:
    smlp__free(fwd);
    smlp__free(reach);
    smlp__free(witness);
    return rc;
}

int
smlp__autograd_alloc(smlp_session_t *s, struct smlp_error *err)
{
    struct smlp__autograd *ag = s->ag;
    uint64_t off = 0;
    int32_t i, j, k;

    if (ag == NULL || s->opts.plan_only)
        return SMLP_OK;
    ag->grads = aligned_alloc(SMLP__ALIGN, ag->grad_bytes + SMLP__ALIGN);
    if (ag->grads == NULL)
        return smlp__seterr(err, SMLP_ENOMEM,
                            "%s: cannot allocate %llu bytes of gradients",
                            s->graph->source,
                            (unsigned long long)ag->grad_bytes);
    memset(ag->grads, 0, ag->grad_bytes);
    for (k = 0; k < ag->n_stores; k++) {
        struct smlp__gstore *st = &ag->stores[k];

        if (k < ag->n_trainable) {
            st->data = (char *)ag->grads + off;
            off += ROUND(st->bytes);
        } else if (st->buffer >= 0 && !ag->on_dev) {
            st->data = (char *)s->arena + s->plan.buffers[st->buffer].offset;
        }
    }
    if (ag->on_dev)
        return SMLP_OK; /* the rest is device memory (device.h) */
    for (i = 0; i < s->n_tensors; i++)
        if (s->tensors[i].gstore >= 0)
            s->tensors[i].grad.data = ag->stores[s->tensors[i].gstore].data;
    for (k = 0; k < ag->n_bwd; k++) {
        struct smlp__node_rt *n = &s->nodes[ag->border[k]];

        for (j = 0; j < n->node.ir->n_inputs; j++)
            if (n->gin_store[j] >= 0)
                n->gin_t[j].data = ag->stores[n->gin_store[j]].data;
        if (n->bwd_ws_buffer >= 0)
            n->bwd_workspace = s->plan.buffers[n->bwd_ws_buffer].size;
    }
    return SMLP_OK;
}

void
smlp__autograd_free(smlp_session_t *s)
{
    struct smlp__autograd *ag = s->ag;
    int32_t i;

    for (i = 0; i < s->n_nodes && s->nodes != NULL; i++) {
        struct smlp__node_rt *n = &s->nodes[i];
        smlp__free(n->gin_t);
        smlp__free(n->gin);
        smlp__free(n->gin_store);
        smlp__free(n->gout);
        smlp__free(n->bsucc);
        smlp__free(n->dgin_t);
        smlp__free(n->dgin);
        smlp__free(n->dgout_t);
        smlp__free(n->dgout);
        n->dgin_t = n->dgout_t = NULL;
        n->dgin = n->dgout = NULL;
        n->gin_t = NULL;
        n->gin = NULL;
        n->gin_store = NULL;
        n->gout = NULL;
        n->bsucc = NULL;
    }
    if (ag == NULL)
        return;
    smlp__free(ag->trainable);
    smlp__free(ag->pindex);
    smlp__free(ag->border);
    smlp__free(ag->bpos);
    smlp__free(ag->coff);
    smlp__free(ag->contrib);
    smlp__free(ag->stores);
    free(ag->grads); /* aligned_alloc */
    smlp__free(ag);
    s->ag = NULL;
}

/* g += c, element by element (a fixed order: no reassociation). */
static void
add_into(float *restrict g, const float *restrict c, int64_t n)
{
    int64_t i;

    for (i = 0; i < n; i++)
        g[i] += c[i];
}

/* Elements per task of sum_contribs. */
#define SUM_CHUNK 16384

struct sum_run {
    const smlp_session_t *s;
    int32_t t;
    int64_t n;
};

/* Elements [task·SUM_CHUNK, ...) of tensor t's gradient: the other
 * contributions added in order (each element the same way in any task). */
static int
sum_task(void *arg, int64_t task, int worker)
{
    const struct sum_run *r = arg;
    const struct smlp__autograd *ag = r->s->ag;
    int64_t off = task * SUM_CHUNK;
    int64_t len = r->n - off < SUM_CHUNK ? r->n - off : SUM_CHUNK;
    float *g = (float *)ag->stores[r->s->tensors[r->t].gstore].data + off;
    int32_t e;

    (void)worker;
    for (e = ag->coff[r->t] + 1; e < ag->coff[r->t + 1]; e++)
        add_into(g, (const float *)ag->stores[ag->contrib[e].store].data +
                        off,
                 len);
    return 0;
}

/* Sums tensor t's other contributions into its gradient, in order, in
 * chunks on the session's team (team.c) when that helps. */
static void
sum_contribs(smlp_session_t *s, int32_t t)
{
    struct smlp__autograd *ag = s->ag;
    struct sum_run r;

    if (ag->coff[t + 1] - ag->coff[t] < 2)
        return;
    r.s = s;
    r.t = t;
    r.n = smlp_tensor_numel(&s->tensors[t].t);
    smlp__team_run(s->team, s->intra_op, (r.n + SUM_CHUNK - 1) / SUM_CHUNK,
                   sum_task, &r);
}

int
smlp__autograd_node_has_work(const smlp_session_t *s,
                             const struct smlp__node_rt *n)
{
    const struct smlp__node_ir *nir = n->node.ir;
    int32_t j, o;

    if (n->bwd != SMLP__BWD_ALIAS)
        return 1;
    for (j = 0; j < nir->n_outputs; j++) {
        o = nir->outputs[j];
        if (s->tensors[o].need_grad && s->ag->coff[o + 1] - s->ag->coff[o] > 1)
            return 1;
    }
    return 0;
}

void
smlp__backward_ctx_init(const smlp_session_t *s, struct smlp__node_rt *n,
                        struct smlp_backward_ctx *ctx)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->size = sizeof(*ctx);
    ctx->abi = SMLP_ABI_VERSION;
    ctx->host = &smlp__host_api;
    ctx->node = &n->node;
    ctx->priv = n->priv;
    ctx->n_inputs = n->node.ir->n_inputs;
    ctx->n_outputs = n->node.ir->n_outputs;
    ctx->threads = 1;
    ctx->seed = s->opts.seed;
    ctx->step = s->ag->fwd_step;
}

int
smlp__autograd_node(smlp_session_t *s, struct smlp__node_rt *n)
{
    const struct smlp__node_ir *nir = n->node.ir;
    struct smlp_backward_ctx ctx;
    int32_t j;

    for (j = 0; j < nir->n_outputs; j++)
        if (s->tensors[nir->outputs[j]].need_grad)
            sum_contribs(s, nir->outputs[j]);
    switch (n->bwd) {
    case SMLP__BWD_ALIAS:
        return SMLP_OK;
    case SMLP__BWD_COPY:
        if (n->gin[0] != NULL) {
            size_t bytes = (size_t)tensor_bytes(n->gin[0]);
            if (n->gout[0] != NULL)
                memcpy(n->gin[0]->data, n->gout[0]->data, bytes);
            else
                memset(n->gin[0]->data, 0, bytes);
        }
        return SMLP_OK;
    default:
        break;
    }
    smlp__backward_ctx_init(s, n, &ctx);
    ctx.inputs = (const struct smlp_tensor *const *)n->in;
    ctx.outputs = (const struct smlp_tensor *const *)n->out;
    ctx.grad_outputs = (const struct smlp_tensor *const *)n->gout;
    ctx.grad_inputs = n->gin;
    if (n->bwd_ws_buffer >= 0) {
        ctx.workspace =
            (char *)s->arena + s->plan.buffers[n->bwd_ws_buffer].offset;
        ctx.workspace_size = n->bwd_workspace;
    }
    if (n->saved_buffer >= 0) {
        ctx.saved =
            (char *)s->arena + s->plan.buffers[n->saved_buffer].offset;
        ctx.saved_size = n->saved_bytes;
    }
    ctx.threads = s->intra_op;
    return smlp__node_status(&n->node, n->op->def.backward(&ctx));
}

void
smlp__autograd_begin(smlp_session_t *s)
{
    struct smlp__autograd *ag = s->ag;

    if (s->tensors[ag->loss].need_grad)
        *(float *)s->tensors[ag->loss].grad.data = 1.0f;
}

void
smlp__autograd_end(smlp_session_t *s)
{
    struct smlp__autograd *ag = s->ag;
    int32_t k;

    for (k = 0; k < ag->n_trainable; k++) {
        int32_t p = ag->trainable[k];

        if (ag->coff[p] == ag->coff[p + 1])
            memset(ag->stores[k].data, 0, ag->stores[k].bytes);
        else
            sum_contribs(s, p);
    }
}

int32_t
smlp__grad_count(const smlp_session_t *s)
{
    return s->ag != NULL ? s->ag->n_trainable : 0;
}

int32_t
smlp__grad_tensor(const smlp_session_t *s, int32_t k)
{
    SMLP_ASSERT(s->ag != NULL && k >= 0 && k < s->ag->n_trainable);
    return s->ag->trainable[k];
}

float *
smlp__grad_data(const smlp_session_t *s, int32_t k)
{
    SMLP_ASSERT(s->ag != NULL && k >= 0 && k < s->ag->n_trainable);
    return s->ag->stores[k].data;
}

SMLP_API int
smlp_session_backward(smlp_session_t *s)
{
    int rc;

    if (s == NULL)
        return SMLP_EINVAL;
    if (s->ag == NULL)
        return smlp__session_fail(s, SMLP_EINVAL,
                                  "%s: the session has no loss to "
                                  "differentiate (create it with "
                                  "opts.training = 1 and opts.loss)",
                                  s->graph->source);
    if (s->arena == NULL)
        return smlp__session_fail(s, SMLP_EINVAL,
                                  "%s: the session was created with "
                                  "plan_only and cannot run",
                                  s->graph->source);
    if (!s->ag->fwd_ready)
        return smlp__session_fail(s, SMLP_EINVAL,
                                  "%s: no forward run to differentiate: "
                                  "each smlp_session_backward needs a "
                                  "successful smlp_session_run of its own "
                                  "before it",
                                  s->graph->source);
    rc = smlp__sched_backward(s);
    /* The backward reuses the bytes of the forward values it has read. */
    s->ag->fwd_ready = 0;
    /* A new generation of gradients for the optimizers, or none. */
    s->ag->grad_gen = rc == SMLP_OK ? ++s->ag->n_backward : 0;
    return rc;
}

SMLP_API int
smlp_session_grad(smlp_session_t *s, const char *name,
                  struct smlp_tensor *out)
{
    int32_t i, k;

    if (s == NULL)
        return SMLP_EINVAL;
    if (name == NULL || out == NULL)
        return smlp__session_fail(s, SMLP_EINVAL,
                                  "smlp_session_grad: no %s (NULL)",
                                  name == NULL ? "name" : "output tensor");
    if (s->ag == NULL)
        return smlp__session_fail(s, SMLP_EINVAL,
                                  "%s: the session has no loss, so no "
                                  "gradients (opts.loss)",
                                  s->graph->source);
    i = smlp__graph_ir_find_tensor(s->graph->ir, name);
    if (i < 0 || s->tensors[i].kind != SMLP__TENSOR_PARAMETER)
        return smlp__session_fail(s, SMLP_ENOENT,
                                  "%s: no parameter named '%s'",
                                  s->graph->source, name);
    k = s->ag->pindex[i];
    if (k < 0)
        return smlp__session_fail(
            s, SMLP_EINVAL, "%s: parameter '%s' has no gradient: %s",
            s->graph->source, name,
            s->tensors[i].t.dtype != SMLP_DTYPE_F32
                ? "it is not f32"
                : "it is frozen (it matched a glob of opts.frozen)");
    if (s->ag->grads == NULL)
        return smlp__session_fail(s, SMLP_EINVAL,
                                  "%s: the session was created with "
                                  "plan_only and has no gradients",
                                  s->graph->source);
    *out = s->tensors[i].t;
    out->data = s->ag->stores[k].data;
    return SMLP_OK;
}
