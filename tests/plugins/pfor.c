/*
 * pfor.c - a fixture plugin for the runtime's host->parallel_for
 * (check_team).
 *
 *   pfor.probe(x) -> (runs, worker, nested), each f32 [tasks]
 *
 * The kernel runs `tasks` tasks (attribute, default 8) through
 * host->parallel_for and returns what it returned.  Task k adds 1 to
 * runs[k] and writes the worker id it got into worker[k].  Attributes:
 *   spin_us    each task busy-waits this long (default 0), so that tasks
 *              overlap and helpers join
 *   fail_task  task k == fail_task returns SMLP_EKERNEL (default -1)
 *   fail_task2 task k == fail_task2 returns SMLP_ENOMEM (default -1)
 *   nested     each task calls parallel_for with 3 tasks from inside;
 *              nested[k] = 1 when they ran in order on the task's own
 *              thread with the task's worker id, else 0
 *   macs       reported by infer (default 0), to steer the thread split
 * The output also sets nested[k] = -1 when a worker id was outside
 * [0, ctx->threads) and the backward is absent (inference only).
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "smlp_plugin.h"

struct probe_priv {
    int64_t tasks, spin_us, fail_task, fail_task2, nested;
};

struct probe_run {
    const struct smlp_host_api *host;
    const struct smlp_node *node;
    const struct probe_priv *p;
    int threads;
    float *runs, *worker, *nested;
};

struct nested_run {
    pthread_t self;
    int worker;
    int64_t next; /* the next task expected (order) */
    int ok;
};

static double
now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int
attr(const struct smlp_infer_ctx *ctx, const char *name, int64_t def,
     int64_t *out)
{
    int rc = ctx->host->attr_int(ctx->node, name, out);

    if (rc == SMLP_DECLINED) {
        *out = def;
        return SMLP_OK;
    }
    return rc;
}

static int
probe_infer(struct smlp_infer_ctx *ctx)
{
    struct probe_priv p, *priv;
    int64_t macs;
    int j;

    if (attr(ctx, "tasks", 8, &p.tasks) != SMLP_OK ||
        attr(ctx, "spin_us", 0, &p.spin_us) != SMLP_OK ||
        attr(ctx, "fail_task", -1, &p.fail_task) != SMLP_OK ||
        attr(ctx, "fail_task2", -1, &p.fail_task2) != SMLP_OK ||
        attr(ctx, "nested", 0, &p.nested) != SMLP_OK ||
        attr(ctx, "macs", 0, &macs) != SMLP_OK)
        return SMLP_EINVAL;
    if (p.tasks < 0 || macs < 0) {
        ctx->host->errorf(ctx->node, "tasks and macs must be >= 0");
        return SMLP_EINVAL;
    }
    for (j = 0; j < 3; j++) {
        ctx->outputs[j]->dtype = SMLP_DTYPE_F32;
        ctx->outputs[j]->rank = 1;
        ctx->outputs[j]->shape[0] = p.tasks;
    }
    ctx->macs = (uint64_t)macs;
    priv = ctx->host->alloc(sizeof(*priv));
    if (priv == NULL)
        return SMLP_ENOMEM;
    *priv = p;
    ctx->priv = priv;
    ctx->priv_free = ctx->host->free;
    return SMLP_OK;
}

static int
nested_task(void *arg, int64_t task, int worker)
{
    struct nested_run *n = arg;

    if (!pthread_equal(pthread_self(), n->self) || worker != n->worker ||
        task != n->next)
        n->ok = 0;
    n->next++;
    return 0;
}

static int
probe_task(void *arg, int64_t task, int worker)
{
    struct probe_run *r = arg;
    double t0;

    r->runs[task] += 1.0f;
    r->worker[task] = (float)worker;
    if (worker < 0 || worker >= r->threads)
        r->nested[task] = -1.0f;
    else
        r->nested[task] = 0.0f;
    if (r->p->spin_us > 0)
        for (t0 = now_us(); now_us() - t0 < (double)r->p->spin_us;)
            ;
    if (r->p->nested && r->nested[task] == 0.0f) {
        struct nested_run n;

        n.self = pthread_self();
        n.worker = worker;
        n.next = 0;
        n.ok = 1;
        if (r->host->parallel_for(r->node, 3, nested_task, &n) == 0 &&
            n.ok && n.next == 3)
            r->nested[task] = 1.0f;
    }
    if (task == r->p->fail_task2)
        return SMLP_ENOMEM;
    return task == r->p->fail_task ? SMLP_EKERNEL : 0;
}

static int
probe_run(struct smlp_kernel_ctx *ctx)
{
    struct probe_run r;
    int64_t k;

    r.host = ctx->host;
    r.node = ctx->node;
    r.p = ctx->priv;
    r.threads = ctx->threads;
    r.runs = ctx->outputs[0]->data;
    r.worker = ctx->outputs[1]->data;
    r.nested = ctx->outputs[2]->data;
    for (k = 0; k < r.p->tasks; k++)
        r.runs[k] = 0.0f;
    if (ctx->host->size < offsetof(struct smlp_host_api, parallel_for) +
                              sizeof(ctx->host->parallel_for) ||
        ctx->host->parallel_for == NULL) {
        ctx->host->errorf(ctx->node, "the host has no parallel_for");
        return SMLP_EKERNEL;
    }
    return ctx->host->parallel_for(ctx->node, r.p->tasks, probe_task, &r);
}

static const struct smlp_kernel_def probe_cpu = {
    sizeof(struct smlp_kernel_def), SMLP_ABI_VERSION, SMLP_DEVICE_CPU,
    1u << SMLP_DTYPE_F32, NULL, probe_run, 1, NULL};
static const struct smlp_kernel_def *const probe_kernels[] = {&probe_cpu,
                                                              NULL};
static const struct smlp_attr_def probe_attrs[] = {
    {"tasks", SMLP_ATTR_INT, 0, "tasks to run (default 8)"},
    {"spin_us", SMLP_ATTR_INT, 0, "busy time of each task"},
    {"fail_task", SMLP_ATTR_INT, 0, "the task that fails (default -1)"},
    {"fail_task2", SMLP_ATTR_INT, 0, "another, with SMLP_ENOMEM"},
    {"nested", SMLP_ATTR_INT, 0, "nonzero: a nested parallel_for per task"},
    {"macs", SMLP_ATTR_INT, 0, "MACs reported by infer"},
    {NULL, 0, 0, NULL},
};
static const struct smlp_op_def probe_op = {
    sizeof(struct smlp_op_def), SMLP_ABI_VERSION, "pfor.probe", 1, 1, 3, 0,
    probe_attrs, probe_infer, probe_kernels, NULL,
    "records how host->parallel_for ran its tasks"};
static const struct smlp_op_def *const ops[] = {&probe_op, NULL};
static const struct smlp_plugin_def def = {
    sizeof(def), SMLP_ABI_VERSION, "pfor", "1", SMLP_BUILD_SIGNATURE, ops,
    NULL};
SMLP_PLUGIN_DEFINE(def)
