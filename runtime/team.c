/*
 * team.c - intra-op parallelism: host->parallel_for and the session's
 * team of helper threads.
 *
 * A session whose intra_op (threads per kernel, session.c) is above 1 owns
 * a team of inter_op * (intra_op - 1) helper threads, started with the
 * scheduler (smlp__sched_init) and joined when the session is destroyed.
 * They are not the libuv pool, which runs nodes: a kernel runs on a pool
 * thread (or on the loop thread), calls host->parallel_for, and becomes
 * worker 0 of a *job*; up to intra_op - 1 helpers join it as workers 1,
 * 2, ...  Several kernels (inter_op > 1) may post jobs at once: each job
 * takes at most intra_op - 1 helpers, so the inter_op callers plus their
 * helpers never exceed the session's thread budget.
 *
 * Tasks are handed out one at a time from an atomic counter, so uneven
 * tasks balance and a caller whose helpers are all busy elsewhere simply
 * runs every task itself.  Which thread runs a task is not fixed, so a
 * task's result must not depend on it (the ABI's rule, smlp_plugin.h).
 *
 * Idle helpers spin for SPIN_US watching for a new job (kernels of a
 * chain post jobs back to back, a few microseconds apart), then sleep on
 * a condition variable until one is posted.  A caller whose own tasks are
 * handed out waits for the last one the same way: spinning briefly, then
 * sleeping until the helper that finishes it wakes it.
 *
 * A parallel_for from inside a task (nested) runs its tasks in order on
 * the calling thread, as that task's worker.  So does one outside any
 * session kernel (no team, a single task, intra_op 1).
 *
 * Locking: team->lock guards the list of open jobs, each job's `joined`,
 * `sleepers` and `stop`; it is a leaf lock (nothing else is taken while it
 * is held; tasks never run under it).  The counters a task updates are
 * atomics.  A job lives on its caller's stack: a helper joins it only
 * under the lock while it is listed, and counts itself in `inside` until
 * it has stopped touching it; the caller unlists it, then waits for
 * `inside` to drop to 0 before returning.
 */
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* How long an idle helper (or a waiting caller) spins before sleeping. */
#define SPIN_US 100.0

struct smlp__job {
    int (*fn)(void *arg, int64_t task, int worker);
    void *arg;
    int64_t n_tasks;
    int max_workers;      /* worker ids are [0, max_workers) */
    int joined;           /* ids handed out (0: the caller); team->lock */
    atomic_llong next;    /* the next task to hand out */
    atomic_llong left;    /* tasks not yet finished */
    atomic_int rc;        /* the first nonzero value a task returned */
    atomic_int inside;    /* helpers that may still touch the job */
    struct smlp__job *link; /* the team's open jobs; team->lock */
};

struct smlp__team {
    uv_mutex_t lock;
    uv_cond_t wake;       /* idle helpers sleep here */
    uv_cond_t done;       /* callers waiting for their last task */
    struct smlp__job *jobs; /* open jobs, oldest first */
    atomic_uint posted;   /* bumped at each post; spinning helpers watch */
    atomic_int stop;
    int sleepers;         /* helpers waiting on `wake` */
    int waiters;          /* callers waiting on `done` */
    int n_threads;
    uv_thread_t *threads;
};

/* The calling thread's depth of tasks (nesting) and worker id there. */
static _Thread_local int task_depth;
static _Thread_local int task_worker;

/* An open job with tasks to hand out and a free worker id, or NULL. */
static struct smlp__job *
pick(struct smlp__team *t)
{
    struct smlp__job *j;

    for (j = t->jobs; j != NULL; j = j->link)
        if (j->joined < j->max_workers &&
            atomic_load_explicit(&j->next, memory_order_relaxed) <
                j->n_tasks)
            return j;
    return NULL;
}

/* Takes tasks of job j as worker w until none is left to take; returns
 * whether this thread finished the job's last task. */
static int
run_tasks(struct smlp__job *j, int w)
{
    int64_t k;
    int r, last = 0, zero;

    task_depth++;
    task_worker = w;
    while ((k = atomic_fetch_add(&j->next, 1)) < j->n_tasks) {
        r = j->fn(j->arg, k, w);
        if (r != 0) {
            zero = 0;
            atomic_compare_exchange_strong(&j->rc, &zero, r);
        }
        if (atomic_fetch_sub(&j->left, 1) == 1)
            last = 1;
    }
    task_depth--;
    return last;
}

static void
helper_main(void *arg)
{
    struct smlp__team *t = arg;
    struct smlp__job *j;
    unsigned seen;
    double t0;
    int w, spins;

    uv_mutex_lock(&t->lock);
    for (;;) {
        if (atomic_load(&t->stop))
            break;
        if ((j = pick(t)) != NULL) {
            w = j->joined++;
            atomic_fetch_add(&j->inside, 1);
            uv_mutex_unlock(&t->lock);
            if (run_tasks(j, w)) {
                /* The caller may be asleep: wake it (under the lock, so
                 * that it cannot miss this between its check and its
                 * wait). */
                uv_mutex_lock(&t->lock);
                if (t->waiters > 0)
                    uv_cond_broadcast(&t->done);
                uv_mutex_unlock(&t->lock);
            }
            atomic_fetch_sub(&j->inside, 1); /* the last touch of j */
            uv_mutex_lock(&t->lock);
            continue;
        }
        /* Nothing to do: spin a while for the next post, then sleep. */
        seen = atomic_load(&t->posted);
        uv_mutex_unlock(&t->lock);
        t0 = smlp__now_us();
        for (spins = 0; atomic_load_explicit(&t->posted,
                                             memory_order_acquire) == seen &&
                        !atomic_load_explicit(&t->stop,
                                              memory_order_relaxed);
             spins++) {
            smlp__cpu_relax();
            if ((spins & 63) == 63 && smlp__now_us() - t0 > SPIN_US)
                break;
        }
        uv_mutex_lock(&t->lock);
        if (atomic_load(&t->posted) == seen && !atomic_load(&t->stop)) {
            t->sleepers++;
            uv_cond_wait(&t->wake, &t->lock);
            t->sleepers--;
        }
    }
    uv_mutex_unlock(&t->lock);
}

struct smlp__team *
smlp__team_create(int n_threads)
{
    struct smlp__team *t;
    int i;

    if (n_threads < 1)
        return NULL;
    t = smlp__calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->threads = smlp__calloc((size_t)n_threads, sizeof(*t->threads));
    if (t->threads == NULL)
        goto out_free;
    if (uv_mutex_init(&t->lock) != 0)
        goto out_free_threads;
    if (uv_cond_init(&t->wake) != 0)
        goto out_mutex;
    if (uv_cond_init(&t->done) != 0)
        goto out_wake;
    atomic_init(&t->posted, 0);
    atomic_init(&t->stop, 0);
    for (i = 0; i < n_threads; i++) {
        if (uv_thread_create(&t->threads[i], helper_main, t) != 0)
            break;
        t->n_threads++;
    }
    if (t->n_threads > 0)
        return t; /* with fewer helpers when some did not start */
    uv_cond_destroy(&t->done);
out_wake:
    uv_cond_destroy(&t->wake);
out_mutex:
    uv_mutex_destroy(&t->lock);
out_free_threads:
    smlp__free(t->threads);
out_free:
    smlp__free(t);
    return NULL;
}

void
smlp__team_destroy(struct smlp__team *t)
{
    int i;

    if (t == NULL)
        return;
    uv_mutex_lock(&t->lock);
    atomic_store(&t->stop, 1);
    uv_cond_broadcast(&t->wake);
    uv_mutex_unlock(&t->lock);
    for (i = 0; i < t->n_threads; i++)
        uv_thread_join(&t->threads[i]);
    uv_cond_destroy(&t->done);
    uv_cond_destroy(&t->wake);
    uv_mutex_destroy(&t->lock);
    smlp__free(t->threads);
    smlp__free(t);
}

int
smlp__team_size(const struct smlp__team *t)
{
    return t != NULL ? t->n_threads : 0;
}

/* Tasks [0, n) in order on this thread as worker w. */
static int
run_serial(int64_t n, int (*fn)(void *, int64_t, int), void *arg, int w)
{
    int64_t k;
    int rc = 0, r;

    task_depth++;
    task_worker = w;
    for (k = 0; k < n; k++)
        if ((r = fn(arg, k, w)) != 0 && rc == 0)
            rc = r;
    task_depth--;
    return rc;
}

int
smlp__team_run(struct smlp__team *t, int max_workers, int64_t n_tasks,
               int (*fn)(void *arg, int64_t task, int worker), void *arg)
{
    struct smlp__job job, **pp;
    double t0;
    int i, want, spins;

    if (n_tasks <= 0)
        return 0;
    if (task_depth > 0)
        return run_serial(n_tasks, fn, arg, task_worker);
    if (t == NULL || max_workers <= 1 || n_tasks == 1)
        return run_serial(n_tasks, fn, arg, 0);
    job.fn = fn;
    job.arg = arg;
    job.n_tasks = n_tasks;
    job.max_workers = max_workers;
    job.joined = 1; /* the caller is worker 0 */
    job.link = NULL;
    atomic_init(&job.next, 0);
    atomic_init(&job.left, n_tasks);
    atomic_init(&job.rc, 0);
    atomic_init(&job.inside, 0);
    uv_mutex_lock(&t->lock);
    for (pp = &t->jobs; *pp != NULL; pp = &(*pp)->link)
        ;
    *pp = &job;
    atomic_fetch_add(&t->posted, 1);
    want = max_workers - 1;
    if (want > n_tasks - 1)
        want = (int)(n_tasks - 1);
    for (i = 0; i < want && i < t->sleepers; i++)
        uv_cond_signal(&t->wake);
    uv_mutex_unlock(&t->lock);

    run_tasks(&job, 0);

    /* Wait for the tasks helpers still run: spin, then sleep. */
    t0 = smlp__now_us();
    for (spins = 0;
         atomic_load_explicit(&job.left, memory_order_acquire) > 0;
         spins++) {
        smlp__cpu_relax();
        if ((spins & 63) == 63 && smlp__now_us() - t0 > SPIN_US)
            break;
    }
    uv_mutex_lock(&t->lock);
    t->waiters++;
    while (atomic_load(&job.left) > 0)
        uv_cond_wait(&t->done, &t->lock);
    t->waiters--;
    for (pp = &t->jobs; *pp != &job; pp = &(*pp)->link)
        ;
    *pp = job.link;
    uv_mutex_unlock(&t->lock);
    /* Helpers that joined are leaving (each is past its last task). */
    for (spins = 0; atomic_load(&job.inside) > 0; spins++)
        if ((spins & 1023) == 1023)
            sched_yield();
        else
            smlp__cpu_relax();
    return atomic_load(&job.rc);
}

/* ---- the host slot ---------------------------------------------------- */

int
smlp__host_parallel_for(const struct smlp_node *node, int64_t n_tasks,
                        int (*fn)(void *arg, int64_t task, int worker),
                        void *arg)
{
    const struct smlp__node_rt *n;
    const smlp_session_t *s;

    if (fn == NULL || n_tasks <= 0)
        return 0;
    if (node == NULL)
        return smlp__team_run(NULL, 1, n_tasks, fn, arg);
    n = (const struct smlp__node_rt *)((const char *)node -
                                       offsetof(struct smlp__node_rt, node));
    s = n->session;
    if (s == NULL || n->device != SMLP_DEVICE_CPU)
        return smlp__team_run(NULL, 1, n_tasks, fn, arg);
    return smlp__team_run(s->team, s->intra_op, n_tasks, fn, arg);
}
