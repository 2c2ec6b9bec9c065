/*
 * train_eval.c - smlp-train's test evaluation: the training session's
 * parameters copied into the inference session, the test set run through
 * it (accuracy, loss, per-class tallies, --routing-by-class), and
 * --eval-only.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train_dist.h"
#include "train_main.h"

int
train_copy_params(struct train_run *r, smlp_session_t *to)
{
    int kind, i;

    for (kind = 1; kind <= 2; kind++)
        for (i = 0; i < smlp_session_tensor_count(to, kind); i++) {
            const char *name = smlp_session_tensor_name(to, kind, i);
            struct smlp_tensor a, b;

            if (train_tensor(r->ts, name, &a) != 0 ||
                train_tensor(to, name, &b) != 0)
                return -1;
            if (a.dtype != b.dtype ||
                smlp_tensor_numel(&a) != smlp_tensor_numel(&b)) {
                train_fail("%s: '%s' differs between the sessions", r->o.graph,
                           name);
                return -1;
            }
            memcpy(b.data, a.data, (size_t)smlp_tensor_numel(&a) * 4);
            (void)smlp_session_tensor(to, name, &b); /* device copy */
        }
    return 0;
}

/* Correct predictions among the first n rows of logits [*, k]; adds the
 * rows' cross-entropy to *ce and, per label c < k, the rows to tally[2c]
 * and the correct ones to tally[2c + 1], when not NULL. */
int64_t
train_score(const float *logits, int64_t k, const int32_t *labels,
            int64_t n, double *ce, int64_t *tally)
{
    int64_t i, j, best, correct = 0;

    for (i = 0; i < n; i++) {
        const float *row = logits + i * k;
        double sum = 0.0;

        for (best = 0, j = 1; j < k; j++)
            if (row[j] > row[best])
                best = j;
        correct += best == labels[i];
        if (tally != NULL && labels[i] >= 0 && labels[i] < k) {
            tally[2 * labels[i]]++;
            tally[2 * labels[i] + 1] += best == labels[i];
        }
        if (ce == NULL)
            continue;
        for (j = 0; j < k; j++)
            sum += exp((double)row[j] - row[best]);
        *ce += log(sum) + row[best] - row[labels[i]];
    }
    return correct;
}

/*
 * Data-parallel runs (train_dist.h) share the test set out: each rank
 * runs its range of the batches, then the ranks sum the correct answers,
 * the tallies, the routing counts (integers: exact) and the batches'
 * cross-entropies (each batch's on one rank, the others' zero: exact).
 * The loss adds the batches' sums in order on every rank, as one process
 * does, so the printed numbers do not depend on the number of ranks.
 */
static int
sum_over_ranks(struct train_run *r, int64_t *correct, double *ce_b,
               int64_t nb)
{
    int i;

    if (train_dist_size() == 1)
        return 0;
    if (train_dist_sum_i64(correct, 1) != 0 ||
        train_dist_sum_f64(ce_b, (size_t)nb) != 0 ||
        train_dist_sum_i64(r->tally, (size_t)(2 * r->e_logits.shape[1])) !=
            0)
        return -1;
    for (i = 0; i < r->routing.n_layers; i++) {
        struct train_routing_layer *L = &r->routing.layers[i];
        size_t n = (size_t)(r->routing.classes * L->experts);

        if (train_dist_sum_i64(L->assigned, n) != 0 ||
            train_dist_sum_i64(L->dropped, n) != 0)
            return -1;
    }
    return 0;
}

int
train_evaluate(struct train_run *r, double *acc, double *loss)
{
    int64_t nb = train_loader_batches(r->el), i, lo, hi, correct = 0;
    size_t floats = (size_t)smlp_tensor_numel(&r->e_image);
    double t0 = train_now(), ce = 0.0, *ce_b;
    char err[1024];

    if (train_copy_params(r, r->es) != 0)
        return -1;
    free(r->tally);
    r->tally = calloc((size_t)(2 * r->e_logits.shape[1]), sizeof(int64_t));
    ce_b = calloc((size_t)(nb > 0 ? nb : 1), sizeof(double));
    if (r->tally == NULL || ce_b == NULL) {
        free(ce_b);
        train_fail("out of memory");
        return -1;
    }
    train_routing_reset(&r->routing);
    train_dist_range(nb, train_dist_rank(), train_dist_size(), &lo, &hi);
    if (lo < hi)
        train_loader_request(r->el, 0, lo);
    for (i = lo; i < hi; i++) {
        const struct train_batch *b = train_loader_wait(r->el);

        memcpy(r->e_image.data, b->images, floats * sizeof(float));
        if (i + 1 < hi)
            train_loader_request(r->el, 0, i + 1);
        if (smlp_session_run(r->es) != SMLP_OK) {
            free(ce_b);
            train_fail("evaluation: %s", smlp_session_errmsg(r->es));
            return -1;
        }
        correct += train_score(r->e_logits.data, r->e_logits.shape[1],
                               b->labels, b->n, &ce_b[i], r->tally);
        train_routing_add(&r->routing, b->labels, b->n,
                          r->e_logits.shape[0]);
    }
    if (sum_over_ranks(r, &correct, ce_b, nb) != 0) {
        free(ce_b);
        return -1;
    }
    for (i = 0; i < nb; i++)
        ce += ce_b[i];
    free(ce_b);
    *acc = (double)correct / (double)r->test.n;
    *loss = ce / (double)r->test.n;
    r->eval_s += train_now() - t0;
    if (r->o.routing != NULL && train_dist_rank() == 0 &&
        train_routing_write(&r->routing, r->o.routing, err, sizeof(err)) !=
            0) {
        train_fail("--routing-by-class %s", err);
        return -1;
    }
    return 0;
}

/* --eval-only: the test set's accuracy and loss with the parameters as
 * loaded, then exit. */
int
train_eval_only(struct train_run *r)
{
    double acc, loss, t0 = train_now();
    int64_t k;

    if (r->mode == TRAIN_MODE_MOCO) {
        train_fail("--eval-only: %s is a MoCo pre-training graph, not a "
                   "classifier: evaluate its backbone with the classifier "
                   "graph and --init-from (and --probe to train a head)",
                   r->o.graph);
        return TRAIN_EXIT_FAIL;
    }
    if (train_evaluate(r, &acc, &loss) != 0)
        return TRAIN_EXIT_FAIL;
    if (!isfinite(loss)) {
        /* The accuracy of NaN logits means nothing (argmax picks 0). */
        train_fail("--eval-only: the test loss is %g: the logits are not "
                   "finite (overflow in the graph?)", loss);
        return TRAIN_EXIT_FAIL;
    }
    printf("%s: test acc %.2f%%, test loss %.4f (%lld test images, %.1f "
           "s)\n",
           smlp_graph_name(r->eg), 100.0 * acc, loss, (long long)r->test.n,
           train_now() - t0);
    printf("per class: accuracy (test images)");
    for (k = 0; k < r->e_logits.shape[1]; k++)
        if (r->tally[2 * k] > 0)
            printf("%s%3lld %6.2f%% (%lld)", k % 5 == 0 ? "\n" : "  ",
                   (long long)k,
                   100.0 * (double)r->tally[2 * k + 1] /
                       (double)r->tally[2 * k],
                   (long long)r->tally[2 * k]);
    printf("\n");
    if (r->o.routing != NULL) {
        train_routing_print(&r->routing, stdout);
        printf("routing by class written to %s\n", r->o.routing);
    }
    return TRAIN_EXIT_OK;
}
