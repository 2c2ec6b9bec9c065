/*
 * session_use.c - what a caller does with a session that
 * smlp_session_create (session.c) made: fill its inputs, reach its
 * tensors by name, read its statistics and per-node profile, and run it
 * (the scheduler is sched.c; the backward is autograd.c).
 */
#include <string.h>

#include "device.h"

SMLP_API int
smlp_session_fill_inputs(smlp_session_t *s, uint64_t seed)
{
    const struct smlp__graph_ir *ir;
    int32_t i;

    if (s == NULL)
        return SMLP_EINVAL;
    ir = s->graph->ir;
    if (s->arena == NULL)
        return smlp__session_fail(s, SMLP_EINVAL,
                                  "the session was planned only");
    for (i = 0; i < s->n_tensors; i++) {
        struct smlp__tensor_rt *t = &s->tensors[i];
        struct smlp__init_ir normal = {1, SMLP__INIT_NORMAL, 0.0f, 1.0f, 0};

        if (t->kind != SMLP__TENSOR_INPUT || t->t.data == NULL)
            continue;
        normal.seed = smlp__mix64((uint64_t)i);
        smlp__init_fill(ir->tensors[i].init.present ? &ir->tensors[i].init
                                                    : &normal,
                        smlp__mix64(seed), t->t.dtype, t->t.data,
                        (uint64_t)smlp_tensor_numel(&t->t));
    }
    return SMLP_OK;
}

SMLP_API int
smlp_session_tensor(smlp_session_t *s, const char *name,
                    struct smlp_tensor *out)
{
    int32_t i;

    if (s == NULL)
        return SMLP_EINVAL;
    if (name == NULL || out == NULL)
        return smlp__session_fail(s, SMLP_EINVAL,
                                  "smlp_session_tensor: no %s (NULL)",
                                  name == NULL ? "name" : "output tensor");
    i = smlp__graph_ir_find_tensor(s->graph->ir, name);
    if (i < 0)
        return smlp__session_fail(s, SMLP_ENOENT,
                                  "%s: no tensor named '%s'",
                                  s->graph->source, name);
    *out = s->tensors[i].t;
    if (s->tensors[i].kind == SMLP__TENSOR_ACTIVATION)
        out->data = NULL;
    /* The caller may write parameters and state through the pointer: the
     * device copy, if any, is refreshed at the next run. */
    if (s->tensors[i].kind == SMLP__TENSOR_PARAMETER ||
        s->tensors[i].kind == SMLP__TENSOR_STATE)
        s->tensors[i].dirty = 1;
    return SMLP_OK;
}

SMLP_API int
smlp_session_tensor_count(const smlp_session_t *s, int kind)
{
    int32_t i, n = 0;

    for (i = 0; s != NULL && i < s->n_tensors; i++)
        n += s->tensors[i].kind == kind;
    return n;
}

SMLP_API const char *
smlp_session_tensor_name(const smlp_session_t *s, int kind, int k)
{
    int32_t i;

    for (i = 0; s != NULL && i < s->n_tensors; i++)
        if (s->tensors[i].kind == kind && k-- == 0)
            return s->graph->ir->tensors[i].name;
    return NULL;
}

SMLP_API int
smlp_session_get_stats(const smlp_session_t *s, struct smlp_session_stats *st)
{
    if (s == NULL || st == NULL)
        return SMLP_EINVAL;
    memset(st, 0, sizeof(*st));
    st->batch = s->opts.batch;
    st->params = s->n_params;
    st->macs = s->macs;
    st->arena_bytes = s->plan.arena_bytes;
    st->lower_bound = s->plan.lower_bound;
    st->param_bytes = s->param_bytes;
    st->n_nodes = s->n_nodes;
    st->inter_op = s->inter_op;
    st->intra_op = s->intra_op;
    st->last_run_ms = s->last_run_ms;
    return SMLP_OK;
}

SMLP_API int
smlp_session_get_device_stats(const smlp_session_t *s,
                              struct smlp_device_stats *st)
{
    struct smlp_device_stats d;
    int32_t i;

    if (s == NULL || st == NULL ||
        st->size < offsetof(struct smlp_device_stats, device) +
                       sizeof(st->device))
        return SMLP_EINVAL;
    memset(&d, 0, sizeof(d));
    d.size = st->size < sizeof(d) ? st->size : (uint32_t)sizeof(d);
    d.device = s->n_dev_nodes > 0 ? s->opts.device : SMLP_DEVICE_CPU;
    d.device_nodes = s->n_dev_nodes;
    if (s->n_dev_nodes > 0) {
        d.backward_on_device = s->ag != NULL && s->ag->on_dev;
        d.arena_bytes = s->dev_plan.arena_bytes;
        d.lower_bound = s->dev_plan.lower_bound;
        for (i = 0; i < s->n_tensors; i++) {
            const struct smlp__tensor_rt *t = &s->tensors[i];

            if ((t->kind == SMLP__TENSOR_PARAMETER ||
                 t->kind == SMLP__TENSOR_STATE) &&
                (t->res & SMLP__RES_DEV))
                d.param_bytes +=
                    ((uint64_t)smlp_tensor_numel(&t->t) *
                         smlp__dtype_size(t->t.dtype) +
                     SMLP__ALIGN - 1) &
                    ~(uint64_t)(SMLP__ALIGN - 1);
        }
        d.grad_bytes = d.backward_on_device ? s->ag->grad_bytes : 0;
    }
    memcpy(st, &d, d.size);
    return SMLP_OK;
}

SMLP_API int
smlp_session_node_profile(const smlp_session_t *s, int i,
                          struct smlp_node_profile *p)
{
    const struct smlp__node_rt *n;

    if (s == NULL || p == NULL || i < 0 || i >= s->n_nodes)
        return SMLP_EINVAL;
    n = &s->nodes[s->graph->order[i]];
    p->name = n->node.ir->name;
    p->op = n->node.ir->op;
    p->macs = n->macs;
    p->start_us = n->t0 - s->run_t0;
    p->end_us = n->t1 - s->run_t0;
    p->thread = n->thread;
    return SMLP_OK;
}

/* The name of tensor j of the i-th node in run order, among its outputs
 * (out) or inputs; NULL when out of range or absent. */
static const char *
node_tensor(const smlp_session_t *s, int i, int j, int out)
{
    const struct smlp__node_ir *n;
    const int32_t *ids;

    if (s == NULL || i < 0 || i >= s->n_nodes)
        return NULL;
    n = s->nodes[s->graph->order[i]].node.ir;
    ids = out ? n->outputs : n->inputs;
    if (j < 0 || j >= (out ? n->n_outputs : n->n_inputs) || ids[j] < 0)
        return NULL;
    return s->graph->ir->tensors[ids[j]].name;
}

SMLP_API const char *
smlp_session_node_output(const smlp_session_t *s, int i, int j)
{
    return node_tensor(s, i, j, 1);
}

SMLP_API const char *
smlp_session_node_input(const smlp_session_t *s, int i, int j)
{
    return node_tensor(s, i, j, 0);
}

SMLP_API int
smlp_session_run(smlp_session_t *s)
{
    uint64_t step;
    int rc;

    if (s == NULL)
        return SMLP_EINVAL;
    step = s->step;
    if (s->arena == NULL)
        return smlp__session_fail(s, SMLP_EINVAL,
                                  "%s: the session was created with "
                                  "plan_only and cannot run",
                                  s->graph->source);
    if (s->ag != NULL) {
        int32_t i;

        s->ag->fwd_ready = 0;
        for (i = 0; i < s->n_nodes; i++)
            s->nodes[i].bt0 = s->nodes[i].bt1 = 0; /* the trace's */
    }
    rc = smlp__sched_run(s);
    if (rc == SMLP_OK)
        s->has_run = 1;
    if (rc == SMLP_OK && s->ag != NULL) {
        /* What the backward needs: the same seed and step. */
        s->ag->fwd_ready = 1;
        s->ag->fwd_step = step;
    }
    return rc;
}
