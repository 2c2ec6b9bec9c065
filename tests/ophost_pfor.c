/*
 * ophost_pfor.c - the op test harness's parallel_for (see ophost.h).
 *
 * parallel_for runs the tasks on ophost_set_threads(n) threads (the
 * calling thread and n - 1 pthreads started for the call) and, so that a
 * kernel whose results depend on which thread runs which task or in what
 * order shows it, hands them out in a shuffled order that changes from
 * call to call.  It checks that each task ran exactly once.  A nested call
 * (from inside a task) runs serially, also shuffled, as the runtime's
 * does (in order there).  With ophost_set_round_robin the shuffled tasks
 * are dealt to the workers like cards, so which worker id runs which
 * task no longer depends on timing.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ophost_impl.h"

/* ---- parallel_for ---------------------------------------------------- */

struct pjob {
    int (*fn)(void *arg, int64_t task, int worker);
    void *arg;
    int64_t n_tasks;
    int64_t *order;          /* a permutation of [0, n_tasks) */
    atomic_int *runs;        /* per task: times it ran */
    atomic_llong next;       /* the next entry of order to hand out */
    atomic_int rc;
    atomic_int bad_worker;
    int threads;
    int round_robin; /* worker w runs entries w, w + threads, ... of order */
};

struct pworker {
    struct pjob *job;
    int id;
};

/* The calling thread's depth of tasks and its worker id there. */
static _Thread_local int in_task;
static _Thread_local int cur_worker;

static uint64_t
splitmix(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Runs entry k of j's order as worker w. */
static void
pjob_run(struct pjob *j, int w, int64_t k)
{
    int64_t task = j->order[k];
    int r, zero;

    if (w < 0 || w >= j->threads)
        atomic_store(&j->bad_worker, 1);
    atomic_fetch_add(&j->runs[task], 1);
    r = j->fn(j->arg, task, w);
    if (r != 0) {
        zero = 0;
        atomic_compare_exchange_strong(&j->rc, &zero, r);
    }
}

static void
pjob_work(struct pjob *j, int w)
{
    int64_t k;
    int saved = cur_worker;

    in_task++;
    cur_worker = w;
    if (j->round_robin)
        for (k = w; k < j->n_tasks; k += j->threads)
            pjob_run(j, w, k);
    else
        while ((k = atomic_fetch_add(&j->next, 1)) < j->n_tasks)
            pjob_run(j, w, k);
    cur_worker = saved;
    in_task--;
}

static void *
pjob_thread(void *arg)
{
    struct pworker *pw = arg;

    pjob_work(pw->job, pw->id);
    return NULL;
}

int
ophost__parallel_for(const struct smlp_node *node, int64_t n_tasks,
                     int (*fn)(void *arg, int64_t task, int worker), void *arg)
{
    struct ophost *h = node != NULL ? node->host : NULL;
    struct pworker pw[64];
    pthread_t tid[64];
    struct pjob j;
    int64_t k, r;
    int threads, started = 0, i, rc;

    if (n_tasks <= 0)
        return 0;
    if (h == NULL || fn == NULL) {
        fprintf(stderr, "ophost: parallel_for without a node under test\n");
        abort();
    }
    memset(&j, 0, sizeof(j));
    j.fn = fn;
    j.arg = arg;
    j.n_tasks = n_tasks;
    j.order = malloc((size_t)n_tasks * sizeof(*j.order));
    j.runs = calloc((size_t)n_tasks, sizeof(*j.runs));
    if (j.order == NULL || j.runs == NULL) {
        fprintf(stderr, "ophost: parallel_for: out of memory\n");
        abort();
    }
    for (k = 0; k < n_tasks; k++)
        j.order[k] = k;
    for (k = n_tasks - 1; k > 0; k--) { /* Fisher-Yates */
        int64_t tmp;

        r = (int64_t)(splitmix(&h->shuffle) % (uint64_t)(k + 1));
        tmp = j.order[k];
        j.order[k] = j.order[r];
        j.order[r] = tmp;
    }
    threads = h->threads < 1 ? 1 : h->threads > 64 ? 64 : h->threads;
    j.threads = threads;
    atomic_init(&j.next, 0);
    atomic_init(&j.rc, 0);
    atomic_init(&j.bad_worker, 0);
    if (in_task > 0) {
        pjob_work(&j, cur_worker); /* nested: serial, as the outer worker */
    } else {
        j.round_robin = h->round_robin;
        for (i = 1; i < threads && i < n_tasks; i++) {
            pw[i].job = &j;
            pw[i].id = i;
            if (pthread_create(&tid[i], NULL, pjob_thread, &pw[i]) != 0)
                break;
            started = i;
        }
        pjob_work(&j, 0);
        for (i = 1; i <= started; i++)
            pthread_join(tid[i], NULL);
        /* Round robin: the shares of threads that did not start. */
        for (i = started + 1; j.round_robin && i < threads && i < n_tasks;
             i++)
            pjob_work(&j, i);
    }
    for (k = 0; k < n_tasks; k++)
        if (atomic_load(&j.runs[k]) != 1) {
            fprintf(stderr, "ophost: parallel_for: task %lld of %lld ran "
                    "%d times\n", (long long)k, (long long)n_tasks,
                    atomic_load(&j.runs[k]));
            abort();
        }
    if (atomic_load(&j.bad_worker)) {
        fprintf(stderr, "ophost: parallel_for: worker id out of range\n");
        abort();
    }
    rc = atomic_load(&j.rc);
    free(j.order);
    free(j.runs);
    return rc;
}
