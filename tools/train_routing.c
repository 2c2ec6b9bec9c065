/*
 * train_routing.c - routing of the test set by class (train_routing.h).
 */
#include "train_routing.h"
#include "train_report.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "graph_ir.h"

static int
add_layer(struct train_routing *rt, const struct smlp__graph_ir *ir,
          const struct smlp__node_ir *node)
{
    struct train_routing_layer *l = &rt->layers[rt->n_layers];

    l->name = strdup(node->name);
    l->t_expert = strdup(ir->tensors[node->outputs[0]].name);
    l->t_slot = strdup(ir->tensors[node->outputs[1]].name);
    l->t_load = strdup(ir->tensors[node->outputs[5]].name);
    rt->n_layers++;
    return l->name && l->t_expert && l->t_slot && l->t_load ? 0 : -1;
}

int
train_routing_graph(struct train_routing *rt, const uint8_t *buf,
                    size_t len, const char *what, uint8_t **out,
                    size_t *out_len, char *err, size_t errlen)
{
    struct smlp__graph_ir *ir = NULL;
    int32_t i, j;
    int rc = -1;

    memset(rt, 0, sizeof(*rt));
    *out = NULL;
    if (smlp__graph_ir_decode(buf, len, what, &ir, err, errlen) != SMLP_OK)
        return -1;
    rt->layers = calloc((size_t)ir->n_nodes + 1, sizeof(*rt->layers));
    if (rt->layers == NULL)
        goto oom;
    for (i = 0; i < ir->n_nodes; i++) {
        const struct smlp__node_ir *n = &ir->nodes[i];

        if (strncmp(n->op, "moe.gate.", 9) != 0)
            continue;
        if (n->n_outputs != 6) {
            snprintf(err, errlen, "%s: node '%s' (%s) has %d outputs, the "
                     "gate contract 6", what, n->name, n->op, n->n_outputs);
            goto out;
        }
        for (j = 0; j < 2; j++)
            if (ir->tensors[n->outputs[j]].kind == SMLP__TENSOR_ACTIVATION)
                ir->tensors[n->outputs[j]].kind = SMLP__TENSOR_OUTPUT;
        if (add_layer(rt, ir, n) != 0)
            goto oom;
    }
    if (smlp__graph_ir_encode(ir, out, out_len, err, errlen) != SMLP_OK)
        goto out;
    rc = 0;
    goto out;
oom:
    snprintf(err, errlen, "%s: out of memory", what);
out:
    smlp__graph_ir_free(ir);
    if (rc != 0)
        train_routing_free(rt);
    return rc;
}

/* t: tensor `name` of s, i32 with host data and rank 2. */
static int
bind(smlp_session_t *s, const char *name, struct smlp_tensor *t, char *err,
     size_t errlen)
{
    if (smlp_session_tensor(s, name, t) == SMLP_OK && t->data != NULL &&
        t->dtype == SMLP_DTYPE_I32 && t->rank == 2)
        return 0;
    snprintf(err, errlen, "--routing-by-class: the gate output '%s' is not "
             "an i32 matrix with data", name);
    return -1;
}

int
train_routing_init(struct train_routing *rt, smlp_session_t *s,
                   int64_t batch, int64_t classes, char *err, size_t errlen)
{
    struct smlp_tensor load;
    int i;

    rt->classes = classes;
    for (i = 0; i < rt->n_layers; i++) {
        struct train_routing_layer *l = &rt->layers[i];
        size_t cells;

        if (bind(s, l->t_expert, &l->expert, err, errlen) != 0 ||
            bind(s, l->t_slot, &l->slot, err, errlen) != 0 ||
            bind(s, l->t_load, &load, err, errlen) != 0)
            return -1;
        if (l->expert.shape[0] % batch != 0 ||
            l->slot.shape[0] != l->expert.shape[0] ||
            l->slot.shape[1] != l->expert.shape[1]) {
            snprintf(err, errlen, "--routing-by-class: gate '%s' routes %lld "
                     "items, not a whole number per image of the batch of "
                     "%lld", l->name, (long long)l->expert.shape[0],
                     (long long)batch);
            return -1;
        }
        l->experts = load.shape[0];
        cells = (size_t)(classes * l->experts);
        l->assigned = calloc(cells, sizeof(int64_t));
        l->dropped = calloc(cells, sizeof(int64_t));
        if (l->assigned == NULL || l->dropped == NULL) {
            snprintf(err, errlen, "--routing-by-class: out of memory");
            return -1;
        }
    }
    return 0;
}

void
train_routing_reset(struct train_routing *rt)
{
    int i;

    for (i = 0; i < rt->n_layers; i++) {
        size_t bytes = (size_t)(rt->classes * rt->layers[i].experts) *
                       sizeof(int64_t);

        memset(rt->layers[i].assigned, 0, bytes);
        memset(rt->layers[i].dropped, 0, bytes);
    }
}

void
train_routing_add(struct train_routing *rt, const int32_t *labels,
                  int64_t n, int64_t batch)
{
    int i;

    for (i = 0; i < rt->n_layers; i++) {
        struct train_routing_layer *l = &rt->layers[i];
        const int32_t *ex = l->expert.data, *sl = l->slot.data;
        int64_t k = l->expert.shape[1], per = l->expert.shape[0] / batch;
        int64_t b, j;

        for (b = 0; b < n; b++) {
            int64_t c = labels[b];

            if (c < 0 || c >= rt->classes)
                continue;
            for (j = b * per * k; j < (b + 1) * per * k; j++) {
                int64_t e = ex[j];

                if (e < 0 || e >= l->experts)
                    continue;
                l->assigned[c * l->experts + e]++;
                l->dropped[c * l->experts + e] += sl[j] < 0;
            }
        }
    }
}

static int
fill_csv(FILE *f, void *arg)
{
    const struct train_routing *rt = arg;
    int i;
    int64_t c, e;

    fprintf(f, "%s\n", TRAIN_ROUTING_CSV_HEADER);
    for (i = 0; i < rt->n_layers; i++) {
        const struct train_routing_layer *l = &rt->layers[i];

        for (c = 0; c < rt->classes; c++)
            for (e = 0; e < l->experts; e++)
                fprintf(f, "%s,%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64
                        "\n", l->name, c, e,
                        l->assigned[c * l->experts + e],
                        l->dropped[c * l->experts + e]);
    }
    return 0;
}

int
train_routing_write(const struct train_routing *rt, const char *path,
                    char *err, size_t errlen)
{
    return train_write_atomic(path, fill_csv, (void *)rt, err, errlen);
}

void
train_routing_print(const struct train_routing *rt, FILE *f)
{
    int i;
    int64_t c, e;

    for (i = 0; i < rt->n_layers; i++) {
        const struct train_routing_layer *l = &rt->layers[i];

        fprintf(f, "routing by class, %s: share of each class's "
                   "assignments per expert (%%)\n  class", l->name);
        for (e = 0; e < l->experts; e++)
            fprintf(f, "  e%-4" PRId64, e);
        fprintf(f, "  dropped\n");
        for (c = 0; c < rt->classes; c++) {
            const int64_t *a = l->assigned + c * l->experts;
            const int64_t *d = l->dropped + c * l->experts;
            int64_t all = 0, drop = 0;

            for (e = 0; e < l->experts; e++) {
                all += a[e];
                drop += d[e];
            }
            if (all == 0)
                continue;
            fprintf(f, "  %5" PRId64, c);
            for (e = 0; e < l->experts; e++)
                fprintf(f, "  %5.1f", 100.0 * (double)a[e] / (double)all);
            fprintf(f, "  %6.1f\n", 100.0 * (double)drop / (double)all);
        }
    }
}

void
train_routing_free(struct train_routing *rt)
{
    int i;

    for (i = 0; i < rt->n_layers; i++) {
        free(rt->layers[i].name);
        free(rt->layers[i].t_expert);
        free(rt->layers[i].t_slot);
        free(rt->layers[i].t_load);
        free(rt->layers[i].assigned);
        free(rt->layers[i].dropped);
    }
    free(rt->layers);
    memset(rt, 0, sizeof(*rt));
}
