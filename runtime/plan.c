/*
 * plan.c - the activation memory plan.
 *
 * Every activation, output and input tensor (with the tensors that are
 * views of it) and every node workspace becomes a buffer with a lifetime
 * [first, last] in steps along the graph order.  Buffers get offsets in one
 * arena, greedily by decreasing size, each at the lowest offset that does
 * not collide with an already placed buffer whose lifetime overlaps (the
 * strategy of TFLite's arena planner).  Inputs and outputs live for the
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

static void
place(struct smlp__plan *p, int32_t *order, int32_t *live)
{
    int32_t i, j, n_live;

    for (i = 0; i < p->n_buffers; i++)
        order[i] = i;
    qsort_r(order, (size_t)p->n_buffers, sizeof(*order), cmp_by_size,
            p->buffers);
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
        if (at + b->size > p->arena_bytes)
            p->arena_bytes = at + b->size;
    }
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
static int
build_side(smlp_session_t *s, uint32_t side, struct smlp__plan *p,
           struct smlp_error *err)
{
    const smlp_graph_t *g = s->graph;
    int32_t n_steps = s->n_nodes, i, j, *order = NULL, *live = NULL;
    int32_t *first, *last;
    int rc = SMLP_OK;

    /* Steps: 0..n-1 are nodes in order; n is "after the run". */
    first = smlp__malloc((size_t)s->n_tensors * sizeof(*first) + 1);
    last = smlp__malloc((size_t)s->n_tensors * sizeof(*last) + 1);
    p->buffers = smlp__calloc((size_t)(s->n_tensors + s->n_nodes),
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
    for (i = 0; i < n_steps; i++) {
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
    for (i = 0; i < n_steps; i++) {
        struct smlp__node_rt *n = &s->nodes[g->order[i]];
        if (n->workspace > 0 && !n->is_view && side_of(n) == side)
            *ws_on(n, side) = add_buffer(p, n->workspace, i, i, g->order[i]);
    }
    order = smlp__malloc((size_t)p->n_buffers * sizeof(*order) + 1);
    live = smlp__malloc((size_t)p->n_buffers * sizeof(*live) + 1);
    if (order == NULL || live == NULL) {
        rc = smlp__seterr(err, SMLP_ENOMEM, "out of memory planning memory");
        goto out;
    }
    place(p, order, live);
    lower_bound(p, n_steps);
out:
    smlp__free(first);
    smlp__free(last);
    smlp__free(order);
    smlp__free(live);
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

    if (*ws_on(n, side) == b)
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

void
smlp__plan_free(struct smlp__plan *p)
{
    smlp__free(p->buffers);
    memset(p, 0, sizeof(*p));
}
