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

int
smlp__plan_build(smlp_session_t *s, struct smlp_error *err)
{
    const smlp_graph_t *g = s->graph;
    struct smlp__plan *p = &s->plan;
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
        if (s->tensors[i].kind == SMLP__TENSOR_INPUT) {
            first[i] = 0;
            last[i] = n_steps;
        }
    }
    for (i = 0; i < n_steps; i++) {
        const struct smlp__node_ir *nir = &g->ir->nodes[g->order[i]];

        for (j = 0; j < nir->n_outputs; j++) {
            int32_t r = root_of(s, nir->outputs[j]);
            if (first[r] > i)
                first[r] = i;
            if (last[r] < i)
                last[r] = i;
            if (s->tensors[nir->outputs[j]].kind == SMLP__TENSOR_OUTPUT)
                last[r] = n_steps;
        }
        for (j = 0; j < nir->n_inputs; j++) {
            int32_t r;
            if (nir->inputs[j] < 0)
                continue;
            r = root_of(s, nir->inputs[j]);
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
        t->buffer = add_buffer(
            p,
            (uint64_t)smlp_tensor_numel(&t->t) * smlp__dtype_size(t->t.dtype),
            first[i], last[i],
            g->producer[i] >= 0 ? g->producer[i] : -1);
    }
    for (i = 0; i < s->n_tensors; i++) {
        int32_t r;
        if (s->tensors[i].buffer >= 0 || s->tensors[i].t.rank < 0 ||
            s->tensors[i].kind == SMLP__TENSOR_PARAMETER ||
            s->tensors[i].kind == SMLP__TENSOR_STATE)
            continue;
        r = root_of(s, i);
        s->tensors[i].buffer = s->tensors[r].buffer;
    }
    for (i = 0; i < n_steps; i++) {
        struct smlp__node_rt *n = &s->nodes[g->order[i]];
        if (n->workspace > 0 && !n->is_view)
            n->ws_buffer = add_buffer(p, n->workspace, i, i, g->order[i]);
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

/* Nodes (by index) that read or write buffer b. */
static int
touches(const smlp_session_t *s, int32_t node, int32_t b)
{
    const struct smlp__node_ir *nir = s->nodes[node].node.ir;
    int32_t j;

    if (s->nodes[node].ws_buffer == b)
        return 1;
    for (j = 0; j < nir->n_inputs; j++)
        if (nir->inputs[j] >= 0 && s->tensors[nir->inputs[j]].buffer == b)
            return 1;
    for (j = 0; j < nir->n_outputs; j++)
        if (s->tensors[nir->outputs[j]].buffer == b)
            return 1;
    return 0;
}

int
smlp__plan_add_reuse_edges(smlp_session_t *s, struct smlp_error *err)
{
    const struct smlp__plan *p = &s->plan;
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

                if (node == B->writer || !touches(s, node, a))
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

void
smlp__plan_free(struct smlp__plan *p)
{
    smlp__free(p->buffers);
    memset(p, 0, sizeof(*p));
}
