/*
 * train_eval.c - smlp-train's test evaluation: the training session's
 * parameters copied into the inference session, the test set run through
 * it (accuracy, loss, per-class tallies, --routing-by-class), and
 * --eval-only.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

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

int
train_evaluate(struct train_run *r, double *acc, double *loss)
{
    int64_t nb = train_loader_batches(r->el), i, correct = 0;
    size_t floats = (size_t)smlp_tensor_numel(&r->e_image);
    double t0 = train_now(), ce = 0.0;
    char err[1024];

    if (train_copy_params(r, r->es) != 0)
        return -1;
    free(r->tally);
    r->tally = calloc((size_t)(2 * r->e_logits.shape[1]), sizeof(int64_t));
    if (r->tally == NULL) {
        train_fail("out of memory");
        return -1;
    }
    train_routing_reset(&r->routing);
    train_loader_request(r->el, 0, 0);
    for (i = 0; i < nb; i++) {
        const struct train_batch *b = train_loader_wait(r->el);

        memcpy(r->e_image.data, b->images, floats * sizeof(float));
        if (i + 1 < nb)
            train_loader_request(r->el, 0, i + 1);
        if (smlp_session_run(r->es) != SMLP_OK) {
            train_fail("evaluation: %s", smlp_session_errmsg(r->es));
            return -1;
        }
        correct += train_score(r->e_logits.data, r->e_logits.shape[1],
                               b->labels, b->n, &ce, r->tally);
        train_routing_add(&r->routing, b->labels, b->n,
                          r->e_logits.shape[0]);
    }
    *acc = (double)correct / (double)r->test.n;
    *loss = ce / (double)r->test.n;
    r->eval_s += train_now() - t0;
    if (r->o.routing != NULL &&
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
