/*
 * train_cache_run.c - the probe's feature cache in a run of smlp-train:
 * whether the head can train on cached rows (train_cache_plan), the head
 * graph cut at the cached tensor once its shape is known
 * (train_cache_cut), and the inference pass that fills the rows of both
 * sets (train_cache_fill).  The graph editing is train_cache.c's; the
 * sessions are created in train_setup.c.  docs/training.md, "The feature
 * cache".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train_cache.h"
#include "train_dist.h"
#include "train_main.h"

int
train_cache_plan(struct train_run *r, const uint8_t *head, size_t head_len)
{
    const char *off = NULL;
    smlp_graph_t *g;
    struct smlp_error err;
    uint8_t *buf;
    size_t len;
    char why[1024], msg[1024];
    int ok;

    if (!r->o.probe || r->o.no_probe_cache || r->o.eval_only ||
        r->head.moco)
        return 0;
    if (r->o.augment != TRAIN_AUGMENT_NONE)
        off = "with --augment the backbone sees other images every epoch";
    else if (r->o.moe_stats != NULL)
        off = "--moe-stats counts the backbone's routing at every step";
    else if (r->o.routing != NULL)
        off = "--routing-by-class reports the backbone's evaluation";
    if (off == NULL &&
        train_cache_find(head, head_len, r->o.graph, r->head.image, &ok,
                         r->cache.tensor, sizeof(r->cache.tensor), why,
                         sizeof(why), msg, sizeof(msg)) != 0) {
        train_fail("%s", msg);
        return -1;
    }
    if (off != NULL || !ok) {
        printf("note: --probe runs the frozen backbone at every step (no "
               "feature cache): %s\n", off != NULL ? off : why);
        return 0;
    }
    if (train_cache_expose(r->graph_buf, r->graph_len, r->o.graph,
                           r->cache.tensor, &buf, &len, msg,
                           sizeof(msg)) != 0) {
        train_fail("%s", msg);
        return -1;
    }
    g = smlp_graph_load_buffer(buf, len, r->o.graph, &err);
    free(buf);
    if (g == NULL) {
        train_fail("%s (with '%s' as an output)", err.msg, r->cache.tensor);
        return -1;
    }
    smlp_graph_unload(r->eg);
    r->eg = g;
    r->cache.on = 1;
    return 0;
}

int
train_cache_cut(struct train_run *r, int64_t b)
{
    const double cap = 4.0 * 1073741824.0; /* bytes */
    struct smlp_tensor t;
    struct smlp_error err;
    smlp_graph_t *g;
    uint8_t *buf;
    size_t len;
    double bytes;
    char msg[1024];

    if (smlp_session_tensor(r->es, r->cache.tensor, &t) != SMLP_OK) {
        train_fail("%s", smlp_session_errmsg(r->es));
        return -1;
    }
    r->cache.row = t.rank >= 1 && t.shape[0] == b && b > 0
                       ? smlp_tensor_numel(&t) / b : 0;
    bytes = (double)(r->train.n + r->test.n) * (double)r->cache.row * 4.0;
    if (r->cache.row == 0 || bytes > cap) {
        printf("note: --probe runs the frozen backbone at every step (no "
               "feature cache): '%s' %s\n", r->cache.tensor,
               r->cache.row == 0 ? "is not one row per image"
                                 : "would take more than 4 GiB");
        r->cache.on = 0;
        return 0;
    }
    if (train_cache_head(r->cache.head, r->cache.head_len, r->o.graph,
                         r->cache.tensor, t.shape + 1, t.rank - 1, &buf, &len,
                         msg, sizeof(msg)) != 0) {
        train_fail("%s", msg);
        return -1;
    }
    g = smlp_graph_load_buffer(buf, len, r->o.graph, &err);
    free(buf);
    if (g == NULL) {
        train_fail("%s (the probe's head, cut at '%s')", err.msg,
                   r->cache.tensor);
        return -1;
    }
    smlp_graph_unload(r->tg);
    r->tg = g;
    r->cache.train = malloc((size_t)r->train.n * (size_t)r->cache.row *
                            sizeof(float));
    r->cache.test = malloc((size_t)r->test.n * (size_t)r->cache.row *
                           sizeof(float));
    if (r->cache.train == NULL || r->cache.test == NULL) {
        train_fail("out of memory for the probe's feature cache (%.0f MiB; "
                   "--no-probe-cache needs none)", bytes / 1048576.0);
        return -1;
    }
    return 0;
}

/* Runs the feature session over `set` in order and keeps each image's row
 * of the cut tensor in rows.  Data-parallel ranks share the batches out
 * (train_dist_range) and then gather the rows: each row comes from the
 * same batch as in one process, so the cache has the same bits. */
static int
cache_set(struct train_run *r, const struct train_set *set, float *rows)
{
    struct train_loader_opts lo;
    struct train_loader *l;
    struct smlp_tensor in, cut;
    int64_t nb, i, first, end;
    char err[256];

    if (train_tensor(r->cache.fs, r->head.image, &in) != 0 ||
        train_tensor(r->cache.fs, r->cache.tensor, &cut) != 0)
        return -1;
    memset(&lo, 0, sizeof(lo));
    lo.set = set;
    lo.batch = in.shape[0];
    lo.seed = r->o.seed;
    lo.views = 1;
    l = train_loader_create(&lo, err, sizeof(err));
    if (l == NULL) {
        train_fail("%s", err);
        return -1;
    }
    nb = train_loader_batches(l);
    train_dist_range(nb, train_dist_rank(), train_dist_size(), &first, &end);
    if (first < end)
        train_loader_request(l, 0, first);
    for (i = first; i < end; i++) {
        const struct train_batch *b = train_loader_wait(l);

        memcpy(in.data, b->images,
               (size_t)smlp_tensor_numel(&in) * sizeof(float));
        if (i + 1 < end)
            train_loader_request(l, 0, i + 1);
        if (smlp_session_run(r->cache.fs) != SMLP_OK) {
            train_fail("the probe's feature cache: %s",
                       smlp_session_errmsg(r->cache.fs));
            train_loader_destroy(l);
            return -1;
        }
        memcpy(rows + (size_t)(i * lo.batch) * (size_t)r->cache.row,
               cut.data,
               (size_t)b->n * (size_t)r->cache.row * sizeof(float));
    }
    train_loader_destroy(l);
    return train_dist_gather(rows, set->n, lo.batch,
                             (size_t)r->cache.row * sizeof(float));
}

int
train_cache_fill(struct train_run *r)
{
    double t0 = train_now();

    if (train_copy_params(r, r->cache.fs) != 0 ||
        cache_set(r, &r->train, r->cache.train) != 0 ||
        cache_set(r, &r->test, r->cache.test) != 0)
        return -1;
    printf("probe: the frozen backbone's '%s' (%lld floats per image) of "
           "%lld + %lld images cached in %.1f s\n", r->cache.tensor,
           (long long)r->cache.row, (long long)r->train.n,
           (long long)r->test.n, train_now() - t0);
    fflush(stdout);
    smlp_session_destroy(r->cache.fs);
    r->cache.fs = NULL;
    free(r->frozen); /* its names were the feature session's */
    r->frozen = NULL;
    return 0;
}
