/*
 * plan.c - the activation memory plan.
 *
 * Every activation, output and input tensor (with the tensors that are
 * views of it) and every node workspace becomes a buffer with a lifetime
 * [first, last] in steps along the graph order.  Buffers get offsets in one
 * arena, greedily by decreasing size, each at the lowest offset that does
 * not collide with an already placed buffer whose lifetime overlaps (the
 * strategy of TFLite's arena planner); the same greedy placement by
 * decreasing lifetime is tried too and the smaller arena kept
 * (place_best).  Inputs and outputs live for the
 * whole run so the caller can write inputs before and read outputs after.
 * The lower bound is the largest total of buffers alive at one step.
 *
 * With nodes running concurrently, reuse of bytes needs ordering: see
 * smlp__plan_add_reuse_edges.
 *
 * Devices: when nodes run on a device, a tensor may have a host copy, a
 * device copy or both (smlp__plan_residency).  Each side gets its own
 * arena, planned by the same code from the accesses made on that side:
 * a node's kernel reads and writes its tensors on its own side, and a
 * node writes the other-side copy of an output (the runtime copies it
 * right after the kernel) at its own step.  With every node on the CPU
 * the host plan is exactly the plan without devices.
 *
 * Training (sessions with a loss, autograd.c): the timeline goes on after
 * the forward's steps with one step per node backward, in reverse order.
 * A forward value that a backward reads (the node's inputs and outputs)
 * lives until its last backward read, and no longer; gradient stores and
 * backward workspaces are buffers like the others, from their first write
 * to their last read, and so are the bytes a node's forward saves for its
 * backward (ABI 1.2 saved_bytes: from its forward step, written there,
 * to its backward step).  So the one arena, its size and its lower bound
 * cover forward and backward together.  That timeline is planned on the
 * side the backward runs on (bwd_side): the host, also in a session whose
 * forward nodes run on a device (then the device arena holds the forward
 * only, the forward values that backwards read get host copies and a
 * device node saves no bytes), or the device when its backward runs there
 * (autograd.c, ag->on_dev: then the host arena holds the forward only).
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define ROUND(x) (((x) + SMLP__ALIGN - 1) & ~(uint64_t)(SMLP__ALIGN - 1))

/* Root tensor whose bytes tensor t uses (following view nodes). */
static int32_t
root_of(const smlp_session_t *s, int32_t t)
{
    const smlp_graph_t *g = s->graph;

    while (g->producer[t] >= 0 && s->nodes[g->producer[t]].is_view)
        t = g->ir->nodes[g->producer[t]].inputs[0];
    return t;
}

/* Which side of a node touches: the host or the device. */
static uint32_t
side_of(const struct smlp__node_rt *n)
{
    return n->device == SMLP_DEVICE_CPU ? SMLP__RES_HOST : SMLP__RES_DEV;
}

/* The side the backward runs on (sessions with a loss). */
static uint32_t
bwd_side(const smlp_session_t *s)
{
    return s->ag != NULL && s->ag->on_dev ? SMLP__RES_DEV : SMLP__RES_HOST;
}

/* The plan buffer of tensor t on `side`. */
static int32_t *
buffer_on(smlp_session_t *s, int32_t t, uint32_t side)
{
    return side == SMLP__RES_HOST ? &s->tensors[t].buffer
                                  : &s->tensors[t].dev_buffer;
}

static int32_t *
ws_on(struct smlp__node_rt *n, uint32_t side)
{
    return side == SMLP__RES_HOST ? &n->ws_buffer : &n->dev_ws_buffer;
}

void
smlp__plan_residency(smlp_session_t *s)
{
    int32_t i, j;

    for (i = 0; i < s->n_tensors; i++)
        s->tensors[i].res = SMLP__RES_HOST;
    for (i = 0; i < s->n_nodes; i++)
        s->nodes[i].push = 0;
    if (s->n_dev_nodes == 0)
        return;
    /* Roots: host for inputs, outputs, parameters and state; each
     * non-view node's side for what it reads and writes. */
    for (i = 0; i < s->n_tensors; i++) {
        int k = s->tensors[i].kind;
        s->tensors[i].res = (k == SMLP__TENSOR_INPUT ||
                             k == SMLP__TENSOR_PARAMETER ||
                             k == SMLP__TENSOR_STATE)
                                ? SMLP__RES_HOST
                                : 0;
    }
    for (i = 0; i < s->n_tensors; i++)
        if (s->tensors[i].kind == SMLP__TENSOR_OUTPUT)
            s->tensors[root_of(s, i)].res |= SMLP__RES_HOST;
    for (i = 0; i < s->n_nodes; i++) {
        const struct smlp__node_ir *nir = s->nodes[i].node.ir;
        uint32_t side = side_of(&s->nodes[i]);

        if (s->nodes[i].is_view)
            continue;
        /* Training with backwards on the CPU: what a backward kernel
         * reads of the forward (its node's inputs and outputs) needs a
         * host copy too, which a device producer makes right after its
         * kernel.  (A device backward reads its forward's device
         * copies.) */
        if (s->ag != NULL && bwd_side(s) == SMLP__RES_HOST &&
            s->nodes[i].bwd == SMLP__BWD_KERNEL)
            side |= SMLP__RES_HOST;
        for (j = 0; j < nir->n_outputs; j++)
            s->tensors[root_of(s, nir->outputs[j])].res |= side;
        for (j = 0; j < nir->n_inputs; j++)
            if (nir->inputs[j] >= 0)
                s->tensors[root_of(s, nir->inputs[j])].res |= side;
    }
    /* Views share their root's copies. */
    for (i = 0; i < s->n_tensors; i++)
        s->tensors[i].res = s->tensors[root_of(s, i)].res;
    for (i = 0; i < s->n_nodes; i++) {
        const struct smlp__node_ir *nir = s->nodes[i].node.ir;

        if (s->nodes[i].is_view || s->nodes[i].device != SMLP_DEVICE_CPU)
            continue;
        for (j = 0; j < nir->n_outputs; j++)
            if (s->tensors[nir->outputs[j]].res & SMLP__RES_DEV)
                s->nodes[i].push++;
    }
}

static int
add_buffer(struct smlp__plan *p, uint64_t size, int32_t first, int32_t last,
           int32_t writer)
{
    struct smlp__buffer *b = &p->buffers[p->n_buffers];

    b->size = ROUND(size);
    /* Each size is at most SMLP__MAX_BYTES (session.c): the sum
     * saturates instead of wrapping, and is checked after planning. */
    p->sum_bytes = p->sum_bytes > UINT64_MAX - b->size ? UINT64_MAX
                                                       : p->sum_bytes + b->size;
    b->first = first;
    b->last = last;
    b->writer = writer;
    b->offset = 0;
    return p->n_buffers++;
}

static int
cmp_by_size(const void *x, const void *y, void *arg)
{
    const struct smlp__buffer *bufs = arg;
    const struct smlp__buffer *a = &bufs[*(const int32_t *)x];
    const struct smlp__buffer *b = &bufs[*(const int32_t *)y];

    if (a->size != b->size)
        return a->size < b->size ? 1 : -1;
    if (a->first != b->first)
        return a->first < b->first ? -1 : 1;
    return *(const int32_t *)x - *(const int32_t *)y;
}

/* Longest lifetime first, then in the order of their first steps (then
 * by size): buffers that stay (inputs, a block's residual stream) settle
 * at the bottom and the short-lived ones stack above them as they come,
 * each taking the bytes its predecessors have left. */
static int
cmp_by_span(const void *x, const void *y, void *arg)
{
    const struct smlp__buffer *bufs = arg;
    const struct smlp__buffer *a = &bufs[*(const int32_t *)x];
    const struct smlp__buffer *b = &bufs[*(const int32_t *)y];
    int64_t sa = (int64_t)a->last - a->first;
    int64_t sb = (int64_t)b->last - b->first;

    if (sa != sb)
        return sa < sb ? 1 : -1;
    if (a->first != b->first)
        return a->first < b->first ? -1 : 1;
    return cmp_by_size(x, y, arg);
}

static int
cmp_by_offset(const void *x, const void *y, void *arg)
{
    const struct smlp__buffer *bufs = arg;
    uint64_t a = bufs[*(const int32_t *)x].offset;
    uint64_t b = bufs[*(const int32_t *)y].offset;

    return a < b ? -1 : a > b;
}

static int
overlap(const struct smlp__buffer *a, const struct smlp__buffer *b)
{
    return a->first <= b->last && b->first <= a->last;
}

/* Places the buffers in the order `cmp` gives, each at the lowest offset
 * that fits among the placed buffers whose lifetimes overlap its own;
 * returns the arena size. */
static uint64_t
place(struct smlp__plan *p, int32_t *order, int32_t *live,
      int (*cmp)(const void *, const void *, void *))
{
    uint64_t arena = 0;
    int32_t i, j, n_live;

    for (i = 0; i < p->n_buffers; i++)
        order[i] = i;
    qsort_r(order, (size_t)p->n_buffers, sizeof(*order), cmp, p->buffers);
    for (i = 0; i < p->n_buffers; i++) {
        struct smlp__buffer *b = &p->buffers[order[i]];
        uint64_t at = 0;

        n_live = 0;
        for (j = 0; j < i; j++)
            if (overlap(&p->buffers[order[j]], b))
                live[n_live++] = order[j];
        qsort_r(live, (size_t)n_live, sizeof(*live), cmp_by_offset,
                p->buffers);
        for (j = 0; j < n_live; j++) {
            const struct smlp__buffer *o = &p->buffers[live[j]];
            if (o->offset >= at + b->size)
                break; /* the gap before o fits */
            if (o->offset + o->size > at)
                at = o->offset + o->size;
        }
        b->offset = at;
        if (at + b->size > arena)
            arena = at + b->size;
    }
    return arena;
}

/* Neither order is best on every graph: by size alone, the chain
 * 16 -> 64 -> 16 -> 32 -> 48 (tests/check_session_plan.c) puts its output
 * at 0 and leaves a gap under the input; by lifetime the input goes
 * first and the chain packs to the lower bound.  Both are placed and
 * the smaller arena kept (by size on a tie).  `keep` holds the first
 * placement's offsets. */
static void
place_best(struct smlp__plan *p, int32_t *order, int32_t *live,
           uint64_t *keep)
{
    uint64_t by_size, by_span;
    int32_t i;

    by_size = place(p, order, live, cmp_by_size);
    for (i = 0; i < p->n_buffers; i++)
        keep[i] = p->buffers[i].offset;
    by_span = place(p, order, live, cmp_by_span);
    if (by_span < by_size) {
        p->arena_bytes = by_span;
        return;
    }
    for (i = 0; i < p->n_buffers; i++)
        p->buffers[i].offset = keep[i];
    p->arena_bytes = by_size;
}

static void
lower_bound(struct smlp__plan *p, int32_t n_steps)
{
    uint64_t *delta;
    uint64_t cur = 0;
    int32_t i;

    delta = smlp__calloc((size_t)n_steps + 2, sizeof(*delta));
    if (delta == NULL)
        return;
    /* Sizes are added at first and removed after last (unsigned wrap is
     * fine: the running sum never goes below zero). */
    for (i = 0; i < p->n_buffers; i++) {
        delta[p->buffers[i].first] += p->buffers[i].size;
        delta[p->buffers[i].last + 1] -= p->buffers[i].size;
    }
    for (i = 0; i <= n_steps; i++) {
        cur += delta[i];
        if (cur > p->lower_bound)
            p->lower_bound = cur;
    }
    smlp__free(delta);
}

/*
 * Plans the copies on `side` (SMLP__RES_HOST or SMLP__RES_DEV) into p:
 * every root tensor with a copy there and every workspace of a node on
 * that side.
 */
/*
 * The backward's part of the host plan: forward values that backwards
 * read live until the last of them, and gradient stores and backward
 * workspaces become buffers (writer -1: the forward's reuse edges ignore
 * them; smlp__plan_add_backward_edges orders their users).
 */
static void
plan_backward(smlp_session_t *s, struct smlp__plan *p, int32_t *last)
{
    struct smlp__autograd *ag = s->ag;
    int32_t k, j, step;

    for (k = 0; k < ag->n_bwd; k++) {
        struct smlp__node_rt *n = &s->nodes[ag->border[k]];
        const struct smlp__node_ir *nir = n->node.ir;

        if (n->bwd != SMLP__BWD_KERNEL)
            continue; /* views and copies read only gradients */
        step = s->n_nodes + k;
        for (j = 0; j < nir->n_inputs + nir->n_outputs; j++) {
            int32_t t = j < nir->n_inputs ? nir->inputs[j]
                                          : nir->outputs[j - nir->n_inputs];
            int32_t r;

            if (t < 0 || s->tensors[t].kind == SMLP__TENSOR_PARAMETER ||
                s->tensors[t].kind == SMLP__TENSOR_STATE)
                continue;
            r = root_of(s, t);
            if (last[r] < step)
                last[r] = step;
        }
    }
}

static void
plan_backward_buffers(smlp_session_t *s, struct smlp__plan *p)
{
    struct smlp__autograd *ag = s->ag;
    const smlp_graph_t *g = s->graph;
    int32_t k, i;

    for (k = ag->n_trainable; k < ag->n_stores; k++) {
        struct smlp__gstore *st = &ag->stores[k];
        if (st->first <= st->last)
            st->buffer = add_buffer(p, st->bytes, st->first, st->last, -1);
    }
    for (k = 0; k < ag->n_bwd; k++) {
        struct smlp__node_rt *n = &s->nodes[ag->border[k]];
        if (n->bwd_workspace > 0)
            n->bwd_ws_buffer = add_buffer(p, n->bwd_workspace,
                                          s->n_nodes + k, s->n_nodes + k, -1);
    }
    /* Saved bytes: written by the forward at step i (its writer, for the
     * forward's reuse edges), read by the backward at n_nodes + k. */
    for (i = 0; i < s->n_nodes; i++) {
        int32_t node = g->order[i];
        struct smlp__node_rt *n = &s->nodes[node];

        if (n->saved_bytes > 0 && n->bwd == SMLP__BWD_KERNEL &&
            ag->bpos[node] >= 0 && side_of(n) == bwd_side(s))
            n->saved_buffer = add_buffer(p, n->saved_bytes, i,
                                         s->n_nodes + ag->bpos[node], node);
    }
}

static int
build_side(smlp_session_t *s, uint32_t side, struct smlp__plan *p,
           struct smlp_error *err)
{
    const smlp_graph_t *g = s->graph;
    int train = s->ag != NULL && side == bwd_side(s);
    int32_t n_fwd = s->n_nodes, i, j, *order = NULL, *live = NULL;
    int32_t n_steps = n_fwd + (train ? s->ag->n_bwd : 0);
    int32_t *first, *last;
    uint64_t *keep = NULL;
    int rc = SMLP_OK;

    /* Steps: 0..n_fwd-1 are nodes in order, then the backwards (training);
     * n_steps is "after the run". */
    first = smlp__malloc((size_t)s->n_tensors * sizeof(*first) + 1);
    last = smlp__malloc((size_t)s->n_tensors * sizeof(*last) + 1);
    p->buffers = smlp__calloc(
        (size_t)(s->n_tensors + s->n_nodes) +
            (train ? (size_t)(s->ag->n_stores + s->ag->n_bwd + s->n_nodes)
                   : 0),
        sizeof(*p->buffers));
    if (first == NULL || last == NULL || p->buffers == NULL) {
        rc = smlp__seterr(err, SMLP_ENOMEM, "out of memory planning memory");
        goto out;
    }
    for (i = 0; i < s->n_tensors; i++) {
        first[i] = INT32_MAX;
        last[i] = -1;
        if (s->tensors[i].kind == SMLP__TENSOR_INPUT &&
            (s->tensors[i].res & side)) {
            /* On the host the caller writes inputs before the run and may
             * read them after; the device copy is uploaded at step 0. */
            first[i] = 0;
            last[i] = side == SMLP__RES_HOST ? n_steps : 0;
        }
    }
    for (i = 0; i < n_fwd; i++) {
        const struct smlp__node_rt *n = &s->nodes[g->order[i]];
        const struct smlp__node_ir *nir = n->node.ir;
        /* Its kernel runs here (views count on both sides). */
        int here = n->is_view || side_of(n) == side;

        for (j = 0; j < nir->n_outputs; j++) {
            int32_t r = root_of(s, nir->outputs[j]);
            if (!(s->tensors[r].res & side))
                continue; /* written here by the kernel or by a copy */
            if (first[r] > i)
                first[r] = i;
            if (last[r] < i)
                last[r] = i;
            if (s->tensors[nir->outputs[j]].kind == SMLP__TENSOR_OUTPUT &&
                side == SMLP__RES_HOST)
                last[r] = n_steps;
        }
        for (j = 0; j < nir->n_inputs && here; j++) {
            int32_t r;
            if (nir->inputs[j] < 0)
                continue;
            r = root_of(s, nir->inputs[j]);
            if (!(s->tensors[r].res & side))
                continue;
            if (last[r] < i)
                last[r] = i;
        }
    }
    if (train)
        plan_backward(s, p, last);
    for (i = 0; i < s->n_tensors; i++) {
        struct smlp__tensor_rt *t = &s->tensors[i];
        int32_t r;

        if (t->kind == SMLP__TENSOR_PARAMETER || t->kind == SMLP__TENSOR_STATE)
            continue;
        if (t->t.rank < 0)
            continue; /* an activation no node of this session writes */
        r = root_of(s, i);
        if (r != i)
            continue;
        if (first[i] == INT32_MAX)
            continue;
        *buffer_on(s, i, side) = add_buffer(
            p,
            (uint64_t)smlp_tensor_numel(&t->t) * smlp__dtype_size(t->t.dtype),
            first[i], last[i],
            g->producer[i] >= 0 ? g->producer[i] : -1);
    }
    for (i = 0; i < s->n_tensors; i++) {
        int32_t r;
        if (*buffer_on(s, i, side) >= 0 || s->tensors[i].t.rank < 0 ||
            s->tensors[i].kind == SMLP__TENSOR_PARAMETER ||
            s->tensors[i].kind == SMLP__TENSOR_STATE)
            continue;
        r = root_of(s, i);
        *buffer_on(s, i, side) = *buffer_on(s, r, side);
    }
    for (i = 0; i < n_fwd; i++) {
        struct smlp__node_rt *n = &s->nodes[g->order[i]];
        if (n->workspace > 0 && !n->is_view && side_of(n) == side)
            *ws_on(n, side) = add_buffer(p, n->workspace, i, i, g->order[i]);
    }
    if (train)
        plan_backward_buffers(s, p);
    if (p->sum_bytes > SMLP__MAX_BYTES) {
        /* The arena is at most the sum: bounding the sum keeps every
         * offset below from wrapping. */
        rc = smlp__seterr(err, SMLP_ELIMIT,
                          "%s: batch %lld: the %s buffers add up to %llu "
                          "bytes, over the limit of 2^48",
                          g->source, (long long)s->opts.batch,
                          side == SMLP__RES_HOST ? "host" : "device",
                          (unsigned long long)p->sum_bytes);
        goto out;
    }
    order = smlp__malloc((size_t)p->n_buffers * sizeof(*order) + 1);
    live = smlp__malloc((size_t)p->n_buffers * sizeof(*live) + 1);
    keep = smlp__malloc((size_t)p->n_buffers * sizeof(*keep) + 1);
    if (order == NULL || live == NULL || keep == NULL) {
        rc = smlp__seterr(err, SMLP_ENOMEM, "out of memory planning memory");
        goto out;
    }
    place_best(p, order, live, keep);
    lower_bound(p, n_steps);
out:
    smlp__free(first);
    smlp__free(last);
    smlp__free(order);
    smlp__free(live);
    smlp__free(keep);
    return rc;
}

int
smlp__plan_build(smlp_session_t *s, struct smlp_error *err)
{
    int rc = build_side(s, SMLP__RES_HOST, &s->plan, err);

    if (rc == SMLP_OK && s->n_dev_nodes > 0)
        rc = build_side(s, SMLP__RES_DEV, &s->dev_plan, err);
    return rc;
}

/*
 * Whether node `node` reads or writes buffer b of `side`: its kernel's
 * tensors and workspace when it runs on that side (views count, as before
 * devices), else only the copies of its outputs it makes there.
 */
static int
touches(smlp_session_t *s, int32_t node, int32_t b, uint32_t side)
{
    struct smlp__node_rt *n = &s->nodes[node];
    const struct smlp__node_ir *nir = n->node.ir;
    int32_t j;

    if (*ws_on(n, side) == b ||
        (s->ag != NULL && side == bwd_side(s) && n->saved_buffer == b))
        return 1;
    for (j = 0; j < nir->n_outputs; j++)
        if (*buffer_on(s, nir->outputs[j], side) == b)
            return 1;
    if (!n->is_view && side_of(n) != side)
        return 0;
    for (j = 0; j < nir->n_inputs; j++)
        if (nir->inputs[j] >= 0 && *buffer_on(s, nir->inputs[j], side) == b)
            return 1;
    return 0;
}

static int
add_reuse_edges(smlp_session_t *s, const struct smlp__plan *p, uint32_t side,
                struct smlp_error *err)
{
    const smlp_graph_t *g = s->graph;
    int32_t a, b, i;

    for (a = 0; a < p->n_buffers; a++) {
        const struct smlp__buffer *A = &p->buffers[a];

        for (b = 0; b < p->n_buffers; b++) {
            const struct smlp__buffer *B = &p->buffers[b];

            if (A->last >= B->first || B->writer < 0 ||
                A->offset >= B->offset + B->size ||
                B->offset >= A->offset + A->size)
                continue;
            /* Every node touching A must finish before B's writer. */
            for (i = A->first; i <= A->last && i < s->n_nodes; i++) {
                int32_t node = g->order[i], k;
                struct smlp__node_rt *n = &s->nodes[node];
                int32_t *succ;

                if (node == B->writer || !touches(s, node, a, side))
                    continue;
                for (k = 0; k < n->n_succ; k++)
                    if (n->succ[k] == B->writer)
                        break;
                if (k < n->n_succ)
                    continue;
                succ = smlp__realloc(n->succ, (size_t)(n->n_succ + 1) *
                                                  sizeof(*succ));
                if (succ == NULL)
                    return smlp__seterr(err, SMLP_ENOMEM, "out of memory");
                n->succ = succ;
                n->succ[n->n_succ++] = B->writer;
            }
        }
    }
    return SMLP_OK;
}

int
smlp__plan_add_reuse_edges(smlp_session_t *s, struct smlp_error *err)
{
    int rc = add_reuse_edges(s, &s->plan, SMLP__RES_HOST, err);

    if (rc == SMLP_OK && s->n_dev_nodes > 0)
        rc = add_reuse_edges(s, &s->dev_plan, SMLP__RES_DEV, err);
    return rc;
}

/*
 * Whether the backward of node `node` touches host buffer b: its gradient
 * stores (its outputs' gradients with the contributions summed into them,
 * the contributions it writes), its workspace, and, when it runs a kernel,
 * its forward inputs and outputs.
 */
static int
bwd_touches(smlp_session_t *s, int32_t node, int32_t b)
{
    const struct smlp__autograd *ag = s->ag;
    const struct smlp__node_rt *n = &s->nodes[node];
    const struct smlp__node_ir *nir = n->node.ir;
    int32_t j, e;

    if (n->bwd_ws_buffer == b || n->saved_buffer == b)
        return 1;
    for (j = 0; j < nir->n_outputs; j++) {
        int32_t o = nir->outputs[j];
        if (!s->tensors[o].need_grad)
            continue;
        if (ag->stores[s->tensors[o].gstore].buffer == b)
            return 1;
        for (e = ag->coff[o] + 1; e < ag->coff[o + 1]; e++)
            if (ag->stores[ag->contrib[e].store].buffer == b)
                return 1;
    }
    for (j = 0; j < nir->n_inputs; j++)
        if (n->gin_store[j] >= 0 && ag->stores[n->gin_store[j]].buffer == b)
            return 1;
    if (n->bwd != SMLP__BWD_KERNEL)
        return 0;
    for (j = 0; j < nir->n_inputs; j++)
        if (nir->inputs[j] >= 0 && s->tensors[nir->inputs[j]].buffer == b)
            return 1;
    for (j = 0; j < nir->n_outputs; j++)
        if (s->tensors[nir->outputs[j]].buffer == b)
            return 1;
    return 0;
}

int
smlp__plan_add_backward_edges(smlp_session_t *s, struct smlp_error *err)
{
    const struct smlp__plan *p = &s->plan;
    const struct smlp__autograd *ag = s->ag;
    int32_t n = s->n_nodes, end, a, b, i;

    if (ag == NULL || ag->on_dev)
        return SMLP_OK; /* a device backward runs in order on one stream */
    end = n + ag->n_bwd;
    for (a = 0; a < p->n_buffers; a++) {
        const struct smlp__buffer *A = &p->buffers[a];

        if (A->last < n)
            continue; /* the forward is over before a backward starts */
        for (b = 0; b < p->n_buffers; b++) {
            const struct smlp__buffer *B = &p->buffers[b];
            int32_t w;

            if (A->last >= B->first || B->first < n || B->first >= end ||
                A->offset >= B->offset + B->size ||
                B->offset >= A->offset + A->size)
                continue;
            /* B's first access, a write, is the backward at B->first:
             * every backward touching A must finish before it. */
            w = ag->border[B->first - n];
            for (i = A->first > n ? A->first : n; i <= A->last && i < end;
                 i++) {
                int32_t node = ag->border[i - n], k;
                struct smlp__node_rt *nd = &s->nodes[node];
                int32_t *succ;

                if (node == w || !bwd_touches(s, node, a))
                    continue;
                for (k = 0; k < nd->n_bsucc; k++)
                    if (nd->bsucc[k] == w)
                        break;
                if (k < nd->n_bsucc)
                    continue;
                succ = smlp__realloc(nd->bsucc, (size_t)(nd->n_bsucc + 1) *
                                                    sizeof(*succ));
                if (succ == NULL)
                    return smlp__seterr(err, SMLP_ENOMEM, "out of memory");
                nd->bsucc = succ;
                nd->bsucc[nd->n_bsucc++] = w;
            }
        }
    }
    return SMLP_OK;
}

void
smlp__plan_free(struct smlp__plan *p)
{
    smlp__free(p->buffers);
    memset(p, 0, sizeof(*p));
}
