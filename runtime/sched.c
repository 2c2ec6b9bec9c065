/*
 * sched.c - running a session's nodes on a libuv loop.
 *
 * The loop runs on the caller's thread.  A node is ready when all its
 * predecessors are done (producers of its inputs, plus ordering edges the
 * memory plan adds).  Ready nodes are started lowest graph position first,
 * at most `inter_op` at once, on the libuv thread pool (uv_queue_work),
 * or on the loop thread itself when that saves a hand-off (run_inline).
 * The kernel runs in work_cb on a worker and touches only its node's
 * tensors; after_work_cb runs on the loop thread and releases successors.
 * View nodes (reshape) move no bytes and complete on the loop thread.
 * Inside a node, a kernel may split its work with host->parallel_for,
 * which runs on the session's team of helper threads (team.c, started
 * here when intra_op > 1): the pool (or the loop thread) runs nodes, the
 * team runs the tasks of the nodes running.  Kernels reduce in fixed
 * orders and cut their work by shape only, so results do not depend on
 * completion order or on the number of threads.
 *
 * Devices (device.h): a device node is enqueued on the session's stream,
 * from the loop thread, as soon as each predecessor is itself enqueued
 * there or done (pending_s: the stream orders it after them), and takes
 * no inter_op slot.  A CPU node waits until its predecessors are done on
 * the host (pending), which for device work means a fence behind it has
 * run: a host function on the stream that records how far the stream got
 * and wakes the loop with uv_async_send (sends coalesce, so the callback
 * takes the largest fence reached and completes everything before it).
 * Each round of dispatching ends with one fence when it enqueued device
 * work.  A CPU node whose outputs a device node reads enqueues their
 * copies (its push) after its kernel and completes with the next fence.
 * A failed CUDA context never runs host functions, so a timer polls the
 * stream while fences are out.
 *
 * The backward (smlp__sched_backward, sessions with a loss) runs the same
 * way over the reverse graph: a node's backward is ready when the
 * backwards that send gradients to its outputs are done (plus the
 * ordering edges of memory reuse), ready ones start lowest backward step
 * first, at most inter_op at once, on the pool.  Aliased views with
 * nothing to sum complete on the loop thread.  A backward on the device
 * (autograd.c, ag->on_dev) is enqueued node by node in backward order on
 * the stream instead (smlp__device_backward).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"

static atomic_int next_thread_id = 1;
static _Thread_local int thread_id;

static int device_init(smlp_session_t *s, struct smlp_error *err);

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
    /* The same for the backward's edges (autograd.c, plan.c). */
    for (i = 0; i < s->n_nodes; i++) {
        struct smlp__node_rt *n = &s->nodes[i];

        if (n->n_bsucc > 1)
            qsort(n->bsucc, (size_t)n->n_bsucc, sizeof(*n->bsucc), cmp_i32);
        for (j = 0, k = 0; j < n->n_bsucc; j++)
            if (k == 0 || n->bsucc[k - 1] != n->bsucc[j])
                n->bsucc[k++] = n->bsucc[j];
        n->n_bsucc = k;
    }
    for (i = 0; i < s->n_nodes; i++)
        for (j = 0; j < s->nodes[i].n_bsucc; j++)
            s->nodes[s->nodes[i].bsucc[j]].n_bpred++;
    for (i = 0; i < s->n_nodes; i++) {
        struct smlp__node_rt *n = &s->nodes[i];

        n->cost = n->macs;
        n->batch_next = -1;
        for (j = 0; j < n->node.ir->n_outputs; j++)
            if (n->out[j] != NULL)
                n->cost += (uint64_t)smlp_tensor_numel(n->out[j]);
    }
    if (uv_loop_init(&s->loop) != 0)
        return smlp__seterr(err, SMLP_ENOMEM, "cannot start a libuv loop");
    s->loop_ready = 1;
    /* The helpers of parallel_for (team.c): each of the inter_op nodes at
     * once brings its own thread, the team the other intra_op - 1. */
    if (s->intra_op > 1 && !s->opts.plan_only) {
        s->team = smlp__team_create(s->inter_op * (s->intra_op - 1));
        if (s->team == NULL)
            return smlp__seterr(err, SMLP_ENOMEM,
                                "cannot start %d helper threads",
                                s->inter_op * (s->intra_op - 1));
    }
    if (s->n_dev_nodes > 0 && !s->opts.plan_only)
        return device_init(s, err);
    return SMLP_OK;
}

void
smlp__sched_close(smlp_session_t *s)
{
    smlp__team_destroy(s->team);
    s->team = NULL;
    if (s->loop_ready) {
        if (s->dev_handles) {
            uv_close((uv_handle_t *)&s->dev_async, NULL);
            uv_close((uv_handle_t *)&s->dev_timer, NULL);
        }
        uv_run(&s->loop, UV_RUN_DEFAULT); /* drain (nothing pending) */
        uv_loop_close(&s->loop);
        s->loop_ready = 0;
    }
    if (s->dev_handles)
        uv_mutex_destroy(&s->dev_lock);
    s->dev_handles = 0;
    smlp__free(s->pos);
    smlp__free(s->ready);
    smlp__free(s->dev_ready);
    smlp__free(s->fifo);
    smlp__free(s->views);
    smlp__free(s->fences);
    s->pos = s->ready = s->dev_ready = s->fifo = s->views = NULL;
    s->fences = NULL;
}

/* Min-heaps of node ids keyed by position in the order. */
static void
heap_insert(int32_t *heap, int32_t *count, const int32_t *pos, int32_t node)
{
    int32_t c = (*count)++;

    heap[c] = node;
    while (c > 0) {
        int32_t p = (c - 1) / 2, tmp;
        if (pos[heap[p]] <= pos[heap[c]])
            break;
        tmp = heap[p];
        heap[p] = heap[c];
        heap[c] = tmp;
        c = p;
    }
}

static int32_t
heap_take(int32_t *heap, int32_t *count, const int32_t *pos)
{
    int32_t top = heap[0], c = 0, n = --*count;

    heap[0] = heap[n];
    for (;;) {
        int32_t l = 2 * c + 1, r = l + 1, m = c, tmp;
        if (l < n && pos[heap[l]] < pos[heap[m]])
            m = l;
        if (r < n && pos[heap[r]] < pos[heap[m]])
            m = r;
        if (m == c)
            break;
        tmp = heap[m];
        heap[m] = heap[c];
        heap[c] = tmp;
        c = m;
    }
    return top;
}

/* Ready CPU nodes (and views). */
static void
heap_push(smlp_session_t *s, int32_t node)
{
    heap_insert(s->ready, &s->n_ready, s->pos, node);
}

static int32_t
heap_pop(smlp_session_t *s)
{
    return heap_take(s->ready, &s->n_ready, s->pos);
}

static void
run_node(struct smlp__node_rt *n)
{
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
    if (n->saved_buffer >= 0) {
        ctx.saved = (char *)s->arena + s->plan.buffers[n->saved_buffer].offset;
        ctx.saved_size = n->saved_bytes;
    }
    ctx.training = s->opts.training;
    ctx.threads = s->intra_op;
    ctx.seed = s->opts.seed;
    ctx.step = s->step;
    n->node.err[0] = '\0';
    n->thread = thread_id;
    n->t0 = smlp__now_us();
    n->status = smlp__node_status(&n->node, n->kernel->def.run(&ctx));
    n->t1 = smlp__now_us();
}

/* The node after n in its batch (make_batch), or NULL. */
static struct smlp__node_rt *
batch_after(struct smlp__node_rt *n)
{
    return n->batch_next < 0 ? NULL : &n->session->nodes[n->batch_next];
}

/* batch_after, unlinking n from its batch: completions walk a batch
 * with this, so that each node leaves it before it completes. */
static struct smlp__node_rt *
batch_unlink(struct smlp__node_rt *n)
{
    struct smlp__node_rt *next = batch_after(n);

    n->batch_next = -1;
    return next;
}

/* A pool work item: its node and the rest of its batch, in order. */
static void
work_cb(uv_work_t *req)
{
    struct smlp__node_rt *n;

    for (n = req->data; n != NULL; n = batch_after(n))
        run_node(n);
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
        if (--c->pending == 0 && c->device == SMLP_DEVICE_CPU)
            heap_push(s, n->succ[k]);
    }
}

/*
 * Node n's work is on the stream or done (device sessions only): device
 * successors may be enqueued once all their predecessors are; a view
 * passes this on at once (it has no work of its own).  Chains of views
 * go through the s->views stack, not recursion: a graph may hold any
 * number of them, and each view is pushed once per run.
 */
static void
stream_done(smlp_session_t *s, struct smlp__node_rt *n)
{
    int32_t k, top = 0;

    for (;;) {
        for (k = 0; k < n->n_succ; k++) {
            struct smlp__node_rt *c = &s->nodes[n->succ[k]];

            if (--c->pending_s != 0)
                continue;
            if (c->device != SMLP_DEVICE_CPU)
                heap_insert(s->dev_ready, &s->n_dev_ready, s->pos,
                            n->succ[k]);
            else if (c->is_view)
                s->views[top++] = n->succ[k];
        }
        if (top == 0)
            return;
        n = &s->nodes[s->views[--top]];
    }
}

/* Enqueues device node `id` on the stream. */
static void
launch(smlp_session_t *s, int32_t id)
{
    struct smlp__node_rt *n = &s->nodes[id];

    n->node.err[0] = '\0';
    n->thread = 0;
    n->t0 = n->t1 = smlp__now_us();
    n->status = smlp__device_launch(s, n);
    if (n->status < 0) {
        complete(s, n);
        return;
    }
    s->fifo[s->fifo_tail++] = id;
    stream_done(s, n);
}

/*
 * The stream failed (its fences will never run): stop waiting for it.
 * The message is in s->errmsg; CPU nodes in flight still finish.
 */
static void
device_failed(smlp_session_t *s)
{
    s->failed = 1;
    s->fence_head = s->fence_tail;
    s->fifo_head = s->fifo_tail;
    uv_timer_stop(&s->dev_timer);
}

static void
watch_cb(uv_timer_t *timer)
{
    smlp_session_t *s = timer->data;

    if (smlp__device_poll(s) != SMLP_OK)
        device_failed(s);
}

/* Puts a fence behind everything enqueued so far. */
static void
fence(smlp_session_t *s)
{
    struct smlp__fence *f = &s->fences[s->fence_tail];

    f->s = s;
    f->upto = s->fifo_tail;
    if (smlp__device_fence(s, f) != SMLP_OK) {
        device_failed(s);
        return;
    }
    s->fenced = f->upto;
    if (s->fence_tail++ == s->fence_head)
        uv_timer_start(&s->dev_timer, watch_cb, 10, 10);
}

void
smlp__sched_fence_cb(void *arg)
{
    struct smlp__fence *f = arg;
    smlp_session_t *s = f->s;

    uv_mutex_lock(&s->dev_lock);
    if (f->upto > s->dev_upto)
        s->dev_upto = f->upto;
    uv_mutex_unlock(&s->dev_lock);
    uv_async_send(&s->dev_async);
}

static void dispatch(smlp_session_t *s);

/* On the loop: completes the stream work that the fences reached. */
static void
fence_async_cb(uv_async_t *async)
{
    smlp_session_t *s = async->data;
    int32_t upto;

    uv_mutex_lock(&s->dev_lock);
    upto = s->dev_upto;
    uv_mutex_unlock(&s->dev_lock);
    while (s->fence_head < s->fence_tail &&
           s->fences[s->fence_head].upto <= upto)
        s->fence_head++;
    if (s->fence_head == s->fence_tail)
        uv_timer_stop(&s->dev_timer);
    while (s->fifo_head < upto && s->fifo_head < s->fifo_tail)
        complete(s, &s->nodes[s->fifo[s->fifo_head++]]);
    dispatch(s);
}

/* The device parts of the scheduler (sessions with device nodes). */
static int
device_init(smlp_session_t *s, struct smlp_error *err)
{
    size_t n = (size_t)s->n_nodes + 1;

    s->dev_ready = smlp__malloc(n * sizeof(*s->dev_ready));
    s->fifo = smlp__malloc(n * sizeof(*s->fifo));
    s->views = smlp__malloc(n * sizeof(*s->views));
    s->fences = smlp__calloc(n, sizeof(*s->fences));
    if (s->dev_ready == NULL || s->fifo == NULL || s->views == NULL ||
        s->fences == NULL)
        return smlp__seterr(err, SMLP_ENOMEM, "out of memory");
    if (uv_mutex_init(&s->dev_lock) != 0)
        return smlp__seterr(err, SMLP_ENOMEM, "cannot create a mutex");
    if (uv_async_init(&s->loop, &s->dev_async, fence_async_cb) != 0) {
        uv_mutex_destroy(&s->dev_lock);
        return smlp__seterr(err, SMLP_ENOMEM,
                            "cannot create a libuv async handle");
    }
    uv_timer_init(&s->loop, &s->dev_timer);
    s->dev_async.data = s;
    s->dev_timer.data = s;
    /* Neither keeps the loop alive when idle; the timer runs (and so keeps
     * uv_run going) exactly while fences are out. */
    uv_unref((uv_handle_t *)&s->dev_async);
    s->dev_handles = 1;
    return SMLP_OK;
}

/* Node n's kernel returned (on a worker or inline): release it. */
static void
work_done(smlp_session_t *s, struct smlp__node_rt *n, int status)
{
    if (status != 0 && n->status >= 0)
        n->status = SMLP_ECANCELED;
    if (n->status >= 0 && s->n_dev_nodes > 0 && !s->failed) {
        if (n->push > 0) {
            n->status = smlp__device_push(s, n);
            if (n->status >= 0) {
                /* Done on the host with the next fence. */
                s->fifo[s->fifo_tail++] = (int32_t)(n - s->nodes);
                stream_done(s, n);
                return;
            }
        } else {
            stream_done(s, n);
        }
    }
    complete(s, n);
}

static void
after_work_cb(uv_work_t *req, int status)
{
    struct smlp__node_rt *n = req->data, *next;
    smlp_session_t *s = n->session;

    s->in_flight--;
    for (; n != NULL; n = next) {
        next = batch_unlink(n);
        work_done(s, n, status);
    }
    dispatch(s);
}

/*
 * Batches: a pool hand-off costs 5-20 us (two thread wake-ups), more than
 * a small kernel itself, so when more nodes are ready than runners are
 * free, small ones travel together: node `head` takes the next small
 * ready nodes (all ready, so independent of each other) in order, up to
 * an even share of the ready nodes per free runner, BATCH_MAX nodes and
 * BATCH_COST of estimated work in all.  Nodes of SMALL_COST or more go
 * alone.  The same for the backward (keyed by its own order, pos).
 * Host-only sessions (device sessions complete through fences).
 */
#define SMALL_COST 32768u
#define BATCH_COST 65536u
#define BATCH_MAX 64

static void
make_batch(smlp_session_t *s, struct smlp__node_rt *head, const int32_t *pos,
           int backward)
{
    struct smlp__node_rt *tail = head;
    uint64_t cost = head->cost;
    int32_t free_runners = s->inter_op - s->in_flight, share, count = 1;

    if (s->n_dev_nodes > 0 || head->cost >= SMALL_COST || s->n_ready == 0 ||
        free_runners < 1)
        return;
    share = (s->n_ready + 1 + free_runners - 1) / free_runners;
    if (share > BATCH_MAX)
        share = BATCH_MAX;
    while (count < share && s->n_ready > 0) {
        struct smlp__node_rt *c = &s->nodes[s->ready[0]];

        if (backward ? !smlp__autograd_node_has_work(s, c) : c->is_view)
            break;
        if (c->cost >= SMALL_COST || cost + c->cost > BATCH_COST)
            break;
        tail->batch_next = heap_take(s->ready, &s->n_ready, pos);
        tail = c;
        cost += c->cost;
        count++;
    }
}

/*
 * Whether the loop thread runs the node it just took from the ready heap
 * itself instead of handing it to the pool: with one runner (inter_op 1)
 * always, else when nothing is in flight and nothing else is ready (a
 * chain: the pool would have nothing to overlap it with).  A hand-off to
 * a pool thread and back costs two thread wake-ups, 5-20 us, which is
 * most of what a small node costs.  While the loop thread runs a kernel
 * it cannot take completions, so with work in flight or more nodes ready
 * the pool keeps the inter_op runners busy instead.  Device sessions
 * always use the pool (their completions come through fences).
 */
static int
run_inline(const smlp_session_t *s)
{
    if (s->n_dev_nodes > 0)
        return 0;
    return s->inter_op <= 1 || (s->in_flight == 0 && s->n_ready == 0);
}

static void
dispatch(smlp_session_t *s)
{
again:
    while (!s->failed && s->n_dev_ready > 0)
        launch(s, heap_take(s->dev_ready, &s->n_dev_ready, s->pos));
    while (!s->failed && s->n_ready > 0 && s->in_flight < s->inter_op) {
        int32_t id = heap_pop(s);
        struct smlp__node_rt *n = &s->nodes[id], *next;
        int rc;

        if (n->is_view) {
            n->t0 = n->t1 = smlp__now_us();
            n->thread = 0;
            n->status = SMLP_OK;
            complete(s, n);
            continue;
        }
        n->req.data = n;
        if (run_inline(s)) {
            run_node(n);
            n->thread = 0;
            work_done(s, n, 0);
            continue;
        }
        make_batch(s, n, s->pos, 0);
        rc = uv_queue_work(&s->loop, &n->req, work_cb, after_work_cb);
        if (rc != 0) {
            for (; n != NULL; n = next) {
                next = batch_unlink(n);
                n->status = SMLP_EBUSY;
                complete(s, n);
            }
            continue;
        }
        s->in_flight++;
    }
    if (!s->failed && s->n_dev_ready > 0)
        goto again; /* views released device nodes */
    if (s->fifo_tail > s->fenced)
        fence(s);
}

/*
 * libuv's thread pool is one per process, sized from UV_THREADPOOL_SIZE
 * when it first gets work.  Once per process (sessions on several
 * threads race here): unless the host set the variable, set it to the
 * first session's inter_op (at least libuv's 4), start the pool with a
 * no-op on a loop of our own, and unset it again, so that the host's
 * environment is left as it was.
 */
static uv_once_t pool_once = UV_ONCE_INIT;
static atomic_int pool_want;

static void
pool_noop(uv_work_t *req)
{
    (void)req;
}

static void
pool_start(void)
{
    uv_work_t req;
    uv_loop_t loop;
    char buf[16];
    int want = atomic_load(&pool_want);

    (void)smlp__log_max(); /* its getenv before, not beside, the setenv */
    if (getenv("UV_THREADPOOL_SIZE") != NULL)
        return;
    snprintf(buf, sizeof(buf), "%d", want < 4 ? 4 : want);
    if (setenv("UV_THREADPOOL_SIZE", buf, 0) != 0)
        return;
    if (uv_loop_init(&loop) == 0) {
        if (uv_queue_work(&loop, &req, pool_noop, NULL) == 0)
            uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
    }
    unsetenv("UV_THREADPOOL_SIZE");
}

static void
size_pool(int want)
{
    int zero = 0;

    atomic_compare_exchange_strong(&pool_want, &zero, want);
    uv_once(&pool_once, pool_start);
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
    if (s->n_dev_nodes > 0) {
        s->n_dev_ready = 0;
        s->fifo_head = s->fifo_tail = s->fenced = 0;
        s->fence_head = s->fence_tail = 0;
        uv_mutex_lock(&s->dev_lock);
        s->dev_upto = 0;
        uv_mutex_unlock(&s->dev_lock);
    }
    for (i = 0; i < s->n_nodes; i++) {
        s->nodes[i].pending = s->nodes[i].n_pred;
        s->nodes[i].pending_s = s->nodes[i].n_pred;
        s->nodes[i].t0 = s->nodes[i].t1 = 0;
        if (s->nodes[i].n_pred != 0)
            continue;
        if (s->nodes[i].device != SMLP_DEVICE_CPU)
            heap_insert(s->dev_ready, &s->n_dev_ready, s->pos, i);
        else
            heap_push(s, i);
    }
    if (s->n_dev_nodes > 0)
        for (i = 0; i < s->n_nodes; i++)
            if (s->nodes[i].n_pred == 0 && s->nodes[i].is_view)
                stream_done(s, &s->nodes[i]);
    s->run_t0 = smlp__now_us();
    if (s->n_dev_nodes > 0 && smlp__device_run_begin(s) != SMLP_OK) {
        s->step++;
        return SMLP_EDEVICE;
    }
    dispatch(s);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    if (s->n_dev_nodes > 0 && smlp__device_run_end(s) != SMLP_OK)
        s->failed = 1;
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

/* ---- the backward ------------------------------------------------------ */

static void
brun_node(struct smlp__node_rt *n)
{
    if (thread_id == 0)
        thread_id = atomic_fetch_add(&next_thread_id, 1);
    n->node.err[0] = '\0';
    n->bthread = thread_id;
    n->bt0 = smlp__now_us();
    n->status = smlp__autograd_node(n->session, n);
    n->bt1 = smlp__now_us();
}

/* A pool work item: a backward and the rest of its batch (make_batch). */
static void
bwork_cb(uv_work_t *req)
{
    struct smlp__node_rt *n;

    for (n = req->data; n != NULL; n = batch_after(n))
        brun_node(n);
}

static void
bcomplete(smlp_session_t *s, struct smlp__node_rt *n)
{
    int32_t k;

    s->done++;
    if (n->status < 0) {
        if (!s->failed)
            smlp__session_fail(s, SMLP_EKERNEL,
                               "%s: node %d '%s' (%s): backward failed: %s",
                               s->graph->source, n->node.index,
                               n->node.ir->name, n->node.ir->op,
                               n->node.err[0] ? n->node.err
                                              : smlp_strerror(n->status));
        s->failed = 1;
        return;
    }
    for (k = 0; k < n->n_bsucc; k++)
        if (--s->nodes[n->bsucc[k]].bpending == 0)
            heap_insert(s->ready, &s->n_ready, s->ag->bpos, n->bsucc[k]);
}

static void bdispatch(smlp_session_t *s);

static void
bafter_work_cb(uv_work_t *req, int status)
{
    struct smlp__node_rt *n = req->data, *next;
    smlp_session_t *s = n->session;

    s->in_flight--;
    for (; n != NULL; n = next) {
        next = batch_unlink(n);
        if (status != 0 && n->status >= 0)
            n->status = SMLP_ECANCELED;
        bcomplete(s, n);
    }
    bdispatch(s);
}

static void
bdispatch(smlp_session_t *s)
{
    while (!s->failed && s->n_ready > 0 && s->in_flight < s->inter_op) {
        int32_t id = heap_take(s->ready, &s->n_ready, s->ag->bpos);
        struct smlp__node_rt *n = &s->nodes[id], *next;

        if (!smlp__autograd_node_has_work(s, n)) {
            n->bt0 = n->bt1 = smlp__now_us();
            n->bthread = 0;
            n->status = SMLP_OK;
            bcomplete(s, n);
            continue;
        }
        n->req.data = n;
        if (run_inline(s)) {
            brun_node(n);
            n->bthread = 0;
            bcomplete(s, n);
            continue;
        }
        make_batch(s, n, s->ag->bpos, 1);
        if (uv_queue_work(&s->loop, &n->req, bwork_cb, bafter_work_cb) !=
            0) {
            for (; n != NULL; n = next) {
                next = batch_unlink(n);
                n->status = SMLP_EBUSY;
                bcomplete(s, n);
            }
            continue;
        }
        s->in_flight++;
    }
}

int
smlp__sched_backward(smlp_session_t *s)
{
    struct smlp__autograd *ag = s->ag;
    double t0;
    int32_t i, k;

    for (i = 0; i < s->reg->n_plugins; i++)
        if (s->reg->plugins[i]->def.set_threads != NULL)
            s->reg->plugins[i]->def.set_threads(s->intra_op);
    size_pool(s->inter_op);
    s->n_ready = 0;
    s->in_flight = 0;
    s->done = 0;
    s->failed = 0;
    s->errmsg[0] = '\0';
    t0 = smlp__now_us();
    if (ag->on_dev) { /* device_cuda_bwd.c */
        int rc = smlp__device_backward(s);

        ag->last_backward_ms = (smlp__now_us() - t0) / 1e3;
        return rc;
    }
    smlp__autograd_begin(s);
    for (k = 0; k < ag->n_bwd; k++) {
        struct smlp__node_rt *n = &s->nodes[ag->border[k]];

        n->bpending = n->n_bpred;
        n->bt0 = n->bt1 = 0;
        if (n->n_bpred == 0)
            heap_insert(s->ready, &s->n_ready, ag->bpos, ag->border[k]);
    }
    bdispatch(s);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    if (!s->failed && s->done == ag->n_bwd)
        smlp__autograd_end(s);
    ag->last_backward_ms = (smlp__now_us() - t0) / 1e3;
    if (s->failed)
        return SMLP_EKERNEL;
    if (s->done != ag->n_bwd)
        return smlp__session_fail(s, SMLP_EBADGRAPH,
                                  "%s: %d of %d node backwards never became "
                                  "ready",
                                  s->graph->source, ag->n_bwd - s->done,
                                  ag->n_bwd);
    return SMLP_OK;
}
