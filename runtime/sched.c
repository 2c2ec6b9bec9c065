/*
 * sched.c - running a session's nodes on a libuv loop.
 *
 * The loop runs on the caller's thread.  A node is ready when all its
 * predecessors are done (producers of its inputs, plus ordering edges the
 * memory plan adds).  Ready nodes are started lowest graph position first,
 * at most `inter_op` at once, on the libuv thread pool (uv_queue_work).
 * The kernel runs in work_cb on a worker and touches only its node's
 * tensors; after_work_cb runs on the loop thread and releases successors.
 * View nodes (reshape) move no bytes and complete on the loop thread.
 * Kernels reduce in fixed orders, so results do not depend on completion
 * order or on the number of threads.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static atomic_int next_thread_id = 1;
static _Thread_local int thread_id;

static int
cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;

    return (x > y) - (x < y);
}

int
smlp__sched_init(smlp_session_t *s, struct smlp_error *err)
{
    const smlp_graph_t *g = s->graph;
    int32_t i, j, k;

    s->pos = smlp__malloc((size_t)s->n_nodes * sizeof(*s->pos) + 1);
    s->ready = smlp__malloc((size_t)s->n_nodes * sizeof(*s->ready) + 1);
    if (s->pos == NULL || s->ready == NULL)
        return smlp__seterr(err, SMLP_ENOMEM, "out of memory");
    for (i = 0; i < s->n_nodes; i++)
        s->pos[g->order[i]] = i;
    /* Data edges: producer of each input -> consumer. */
    for (i = 0; i < s->n_nodes; i++) {
        const struct smlp__node_ir *nir = s->nodes[i].node.ir;

        for (j = 0; j < nir->n_inputs; j++) {
            int32_t t = nir->inputs[j], p;
            struct smlp__node_rt *pn;
            int32_t *succ;

            if (t < 0 || (p = g->producer[t]) < 0)
                continue;
            pn = &s->nodes[p];
            succ = smlp__realloc(pn->succ,
                                 (size_t)(pn->n_succ + 1) * sizeof(*succ));
            if (succ == NULL)
                return smlp__seterr(err, SMLP_ENOMEM, "out of memory");
            pn->succ = succ;
            pn->succ[pn->n_succ++] = i;
        }
    }
    /* Deduplicate and count predecessors. */
    for (i = 0; i < s->n_nodes; i++) {
        struct smlp__node_rt *n = &s->nodes[i];

        if (n->n_succ > 1)
            qsort(n->succ, (size_t)n->n_succ, sizeof(*n->succ), cmp_i32);
        for (j = 0, k = 0; j < n->n_succ; j++)
            if (k == 0 || n->succ[k - 1] != n->succ[j])
                n->succ[k++] = n->succ[j];
        n->n_succ = k;
    }
    for (i = 0; i < s->n_nodes; i++)
        for (j = 0; j < s->nodes[i].n_succ; j++)
            s->nodes[s->nodes[i].succ[j]].n_pred++;
    if (uv_loop_init(&s->loop) != 0)
        return smlp__seterr(err, SMLP_ENOMEM, "cannot start a libuv loop");
    s->loop_ready = 1;
    return SMLP_OK;
}

void
smlp__sched_close(smlp_session_t *s)
{
    if (s->loop_ready) {
        uv_run(&s->loop, UV_RUN_DEFAULT); /* drain (nothing pending) */
        uv_loop_close(&s->loop);
        s->loop_ready = 0;
    }
    smlp__free(s->pos);
    smlp__free(s->ready);
    s->pos = s->ready = NULL;
}

static void
heap_push(smlp_session_t *s, int32_t node)
{
    int32_t c = s->n_ready++;

    s->ready[c] = node;
    while (c > 0) {
        int32_t p = (c - 1) / 2, tmp;
        if (s->pos[s->ready[p]] <= s->pos[s->ready[c]])
            break;
        tmp = s->ready[p];
        s->ready[p] = s->ready[c];
        s->ready[c] = tmp;
        c = p;
    }
}

static int32_t
heap_pop(smlp_session_t *s)
{
    int32_t top = s->ready[0], c = 0;

    s->ready[0] = s->ready[--s->n_ready];
    for (;;) {
        int32_t l = 2 * c + 1, r = l + 1, m = c, tmp;
        if (l < s->n_ready && s->pos[s->ready[l]] < s->pos[s->ready[m]])
            m = l;
        if (r < s->n_ready && s->pos[s->ready[r]] < s->pos[s->ready[m]])
            m = r;
        if (m == c)
            break;
        tmp = s->ready[m];
        s->ready[m] = s->ready[c];
        s->ready[c] = tmp;
        c = m;
    }
    return top;
}

static void
work_cb(uv_work_t *req)
{
    struct smlp__node_rt *n = req->data;
    smlp_session_t *s = n->session;
    struct smlp_kernel_ctx ctx;

    if (thread_id == 0)
        thread_id = atomic_fetch_add(&next_thread_id, 1);
    memset(&ctx, 0, sizeof(ctx));
    ctx.size = sizeof(ctx);
    ctx.abi = SMLP_ABI_VERSION;
    ctx.host = &smlp__host_api;
    ctx.node = &n->node;
    ctx.priv = n->priv;
    ctx.n_inputs = n->node.ir->n_inputs;
    ctx.n_outputs = n->node.ir->n_outputs;
    ctx.inputs = (const struct smlp_tensor *const *)n->in;
    ctx.outputs = n->out;
    if (n->ws_buffer >= 0) {
        ctx.workspace =
            (char *)s->arena + s->plan.buffers[n->ws_buffer].offset;
        ctx.workspace_size = n->workspace;
    }
    ctx.training = s->opts.training;
    ctx.threads = s->intra_op;
    ctx.seed = s->opts.seed;
    ctx.step = s->step;
    n->node.err[0] = '\0';
    n->thread = thread_id;
    n->t0 = smlp__now_us();
    n->status = n->kernel->def.run(&ctx);
    n->t1 = smlp__now_us();
}

static void dispatch(smlp_session_t *s);

static void
complete(smlp_session_t *s, struct smlp__node_rt *n)
{
    int32_t k;

    s->done++;
    if (n->status < 0) {
        if (!s->failed)
            smlp__session_fail(s, SMLP_EKERNEL,
                               "%s: node %d '%s' (%s) failed: %s",
                               s->graph->source, n->node.index,
                               n->node.ir->name, n->node.ir->op,
                               n->node.err[0] ? n->node.err
                                              : smlp_strerror(n->status));
        s->failed = 1;
        return;
    }
    for (k = 0; k < n->n_succ; k++) {
        struct smlp__node_rt *c = &s->nodes[n->succ[k]];
        if (--c->pending == 0)
            heap_push(s, n->succ[k]);
    }
}

static void
after_work_cb(uv_work_t *req, int status)
{
    struct smlp__node_rt *n = req->data;
    smlp_session_t *s = n->session;

    s->in_flight--;
    if (status != 0 && n->status >= 0)
        n->status = SMLP_ECANCELED;
    complete(s, n);
    dispatch(s);
}

static void
dispatch(smlp_session_t *s)
{
    while (!s->failed && s->n_ready > 0 && s->in_flight < s->inter_op) {
        int32_t id = heap_pop(s);
        struct smlp__node_rt *n = &s->nodes[id];
        int rc;

        if (n->is_view) {
            n->t0 = n->t1 = smlp__now_us();
            n->thread = 0;
            n->status = SMLP_OK;
            complete(s, n);
            continue;
        }
        n->req.data = n;
        rc = uv_queue_work(&s->loop, &n->req, work_cb, after_work_cb);
        if (rc != 0) {
            n->status = SMLP_EBUSY;
            complete(s, n);
            continue;
        }
        s->in_flight++;
    }
}

/* Called once per process: the pool is sized at its first use. */
static void
size_pool(int want)
{
    static int done;
    char buf[16];

    if (done)
        return;
    done = 1;
    if (getenv("UV_THREADPOOL_SIZE") != NULL)
        return;
    if (want < 4)
        want = 4;
    snprintf(buf, sizeof(buf), "%d", want);
    setenv("UV_THREADPOOL_SIZE", buf, 0);
}

int
smlp__sched_run(smlp_session_t *s)
{
    int32_t i;

    for (i = 0; i < s->reg->n_plugins; i++)
        if (s->reg->plugins[i]->def.set_threads != NULL)
            s->reg->plugins[i]->def.set_threads(s->intra_op);
    size_pool(s->inter_op);
    s->n_ready = 0;
    s->in_flight = 0;
    s->done = 0;
    s->failed = 0;
    s->errmsg[0] = '\0';
    for (i = 0; i < s->n_nodes; i++) {
        s->nodes[i].pending = s->nodes[i].n_pred;
        s->nodes[i].t0 = s->nodes[i].t1 = 0;
        if (s->nodes[i].n_pred == 0)
            heap_push(s, i);
    }
    s->run_t0 = smlp__now_us();
    dispatch(s);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    s->last_run_ms = (smlp__now_us() - s->run_t0) / 1e3;
    s->step++;
    if (s->failed)
        return SMLP_EKERNEL;
    if (s->done != s->n_nodes)
        return smlp__session_fail(s, SMLP_EBADGRAPH,
                                  "%s: %d of %d nodes never became ready",
                                  s->graph->source, s->n_nodes - s->done,
                                  s->n_nodes);
    return SMLP_OK;
}
