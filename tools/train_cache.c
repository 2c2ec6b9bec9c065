/*
 * train_cache.c - cutting a probe's training graph where the head reads
 * the frozen backbone (train_cache.h).  smlp-train's side of the cache
 * (filling it, feeding it) is in train_setup.c and train_eval.c.
 *
 * IR memory is malloc'ed and released by smlp__graph_ir_free; what the
 * cut removes is moved into a scratch IR and released with it.
 */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph_ir.h"
#include "smlp.h"
#include "train_cache.h"
#include "train_head.h"

/* What a probe trains (train_setup.c freezes every other parameter). */
#define HEAD_GLOB "head.*"

/* Sets flag[] of every tensor the nodes with node_in[i] set read or
 * write, from one end: forward (downstream of what is flagged: the nodes
 * reading a flagged tensor, their outputs flagged) or backward (upstream:
 * the nodes writing one, their inputs flagged).  Graph files need not
 * list nodes in order: repeated until nothing changes. */
static void
spread(const struct smlp__graph_ir *ir, char *node_in, char *flag,
       int forward)
{
    int32_t i, j;
    int changed = 1;

    while (changed) {
        changed = 0;
        for (i = 0; i < ir->n_nodes; i++) {
            const struct smlp__node_ir *n = &ir->nodes[i];
            const int32_t *from = forward ? n->inputs : n->outputs;
            const int32_t *to = forward ? n->outputs : n->inputs;
            int32_t n_from = forward ? n->n_inputs : n->n_outputs;
            int32_t n_to = forward ? n->n_outputs : n->n_inputs;

            if (node_in[i])
                continue;
            for (j = 0; j < n_from; j++)
                if (from[j] >= 0 && flag[from[j]])
                    break;
            if (j == n_from)
                continue;
            node_in[i] = 1;
            for (j = 0; j < n_to; j++)
                if (to[j] >= 0)
                    flag[to[j]] = 1;
            changed = 1;
        }
    }
}

/* node_in[i] = 1 for the head's nodes: those downstream of a head.*
 * parameter and upstream of `loss` or `logits` (what smlp-train reads);
 * live[t] = 1 for the head.* parameters and what those nodes write.  -1
 * when out of memory. */
static int
mark_head(const struct smlp__graph_ir *ir, char *node_in, char *live)
{
    char *up = calloc((size_t)ir->n_nodes + 1, 1);
    char *need = calloc((size_t)ir->n_tensors + 1, 1);
    int32_t i, j;

    if (up == NULL || need == NULL) {
        free(up);
        free(need);
        return -1;
    }
    for (i = 0; i < ir->n_tensors; i++) {
        live[i] = ir->tensors[i].kind == SMLP__TENSOR_PARAMETER &&
                  fnmatch(HEAD_GLOB, ir->tensors[i].name, 0) == 0;
        need[i] = strcmp(ir->tensors[i].name, "loss") == 0 ||
                  strcmp(ir->tensors[i].name, "logits") == 0;
    }
    memset(node_in, 0, (size_t)ir->n_nodes);
    spread(ir, node_in, live, 1);
    spread(ir, up, need, 0);
    for (i = 0; i < ir->n_nodes; i++)
        node_in[i] = node_in[i] && up[i];
    /* live: the head.* parameters and what the head writes */
    for (i = 0; i < ir->n_tensors; i++)
        live[i] = ir->tensors[i].kind == SMLP__TENSOR_PARAMETER &&
                  fnmatch(HEAD_GLOB, ir->tensors[i].name, 0) == 0;
    for (i = 0; i < ir->n_nodes; i++)
        for (j = 0; node_in[i] && j < ir->nodes[i].n_outputs; j++)
            live[ir->nodes[i].outputs[j]] = 1;
    free(up);
    free(need);
    return 0;
}

/* Decodes buf and marks its head; -1 with a message. */
static int
decode_marked(const uint8_t *buf, size_t len, const char *what,
              struct smlp__graph_ir **ir, char **node_in, char **live,
              char *err, size_t errlen)
{
    *node_in = *live = NULL;
    if (smlp__graph_ir_decode(buf, len, what, ir, err, errlen) != SMLP_OK)
        return -1;
    *node_in = malloc((size_t)(*ir)->n_nodes + 1);
    *live = malloc((size_t)(*ir)->n_tensors + 1);
    if (*node_in == NULL || *live == NULL) {
        snprintf(err, errlen, "%s: out of memory", what);
        return -1;
    }
    if (mark_head(*ir, *node_in, *live) != 0) {
        snprintf(err, errlen, "%s: out of memory", what);
        return -1;
    }
    return 0;
}

int
train_cache_find(const uint8_t *buf, size_t len, const char *what,
                 const char *image, int *ok, char *tensor, size_t tlen,
                 char *why, size_t whylen, char *err, size_t errlen)
{
    struct smlp__graph_ir *ir = NULL;
    char *node_in, *live;
    int32_t i, j, cut = -1, loss;
    int rc = -1;

    *ok = 0;
    if (decode_marked(buf, len, what, &ir, &node_in, &live, err, errlen) != 0)
        goto out;
    why[0] = '\0';
    for (i = 0; i < ir->n_nodes && why[0] == '\0'; i++) {
        const struct smlp__node_ir *n = &ir->nodes[i];

        for (j = 0; node_in[i] && j < n->n_inputs; j++) {
            int32_t t = n->inputs[j];
            const struct smlp__tensor_ir *ti;

            if (t < 0 || live[t])
                continue;
            ti = &ir->tensors[t];
            if (ti->kind == SMLP__TENSOR_PARAMETER ||
                ti->kind == SMLP__TENSOR_STATE)
                continue;
            if (ti->kind == SMLP__TENSOR_INPUT) {
                if (strcmp(ti->name, image) == 0)
                    snprintf(why, whylen, "head node '%s' reads the images "
                                          "'%s'", n->name, image);
                continue;
            }
            if (cut >= 0 && cut != t) {
                snprintf(why, whylen, "the head reads more than one "
                                      "backbone tensor ('%s', '%s')",
                         ir->tensors[cut].name, ti->name);
                break;
            }
            cut = t;
        }
    }
    loss = smlp__graph_ir_find_tensor(ir, "loss");
    if (why[0] != '\0') {
        rc = 0; /* said above */
        goto out;
    }
    if (loss < 0 || !live[loss])
        snprintf(why, whylen, "the loss does not depend on %s", HEAD_GLOB);
    else if (cut < 0)
        snprintf(why, whylen, "the head reads no backbone tensor");
    else if (ir->tensors[cut].dtype != SMLP_DTYPE_F32)
        snprintf(why, whylen, "the head reads '%s', which is not f32",
                 ir->tensors[cut].name);
    else if (ir->tensors[cut].has_shape &&
             (ir->tensors[cut].rank < 1 || ir->tensors[cut].shape[0] != -1))
        snprintf(why, whylen, "the head reads '%s', which does not have the "
                              "batch as its first dimension",
                 ir->tensors[cut].name);
    else if (strlen(ir->tensors[cut].name) >= tlen)
        snprintf(why, whylen, "the head reads a tensor with a name of %zu "
                              "bytes", strlen(ir->tensors[cut].name));
    else {
        snprintf(tensor, tlen, "%s", ir->tensors[cut].name);
        *ok = 1;
    }
    rc = 0;
out:
    free(node_in);
    free(live);
    smlp__graph_ir_free(ir);
    return rc;
}

int
train_cache_expose(const uint8_t *buf, size_t len, const char *what,
                   const char *tensor, uint8_t **out, size_t *out_len,
                   char *err, size_t errlen)
{
    struct smlp__graph_ir *ir = NULL;
    int32_t t;
    int rc = -1;

    *out = NULL;
    if (smlp__graph_ir_decode(buf, len, what, &ir, err, errlen) != SMLP_OK)
        return -1;
    t = smlp__graph_ir_find_tensor(ir, tensor);
    if (t < 0) {
        snprintf(err, errlen, "%s: no tensor '%s'", what, tensor);
        goto out;
    }
    if (ir->tensors[t].kind == SMLP__TENSOR_ACTIVATION)
        ir->tensors[t].kind = SMLP__TENSOR_OUTPUT;
    if (smlp__graph_ir_encode(ir, out, out_len, err, errlen) == SMLP_OK)
        rc = 0;
out:
    smlp__graph_ir_free(ir);
    return rc;
}

/* Moves the tensors not kept and the nodes not in the head into a scratch
 * IR that is then released, and renumbers what stays.  -1 when out of
 * memory (ir unchanged). */
static int
cut_graph(struct smlp__graph_ir *ir, const char *node_in, const char *keep)
{
    struct smlp__graph_ir *gone = calloc(1, sizeof(*gone));
    int32_t *map = malloc(((size_t)ir->n_tensors + 1) * sizeof(*map));
    int32_t i, kept = 0;

    if (gone != NULL) {
        gone->tensors = malloc(((size_t)ir->n_tensors + 1) *
                               sizeof(*gone->tensors));
        gone->nodes = malloc(((size_t)ir->n_nodes + 1) *
                             sizeof(*gone->nodes));
    }
    if (gone == NULL || map == NULL || gone->tensors == NULL ||
        gone->nodes == NULL) {
        smlp__graph_ir_free(gone);
        free(map);
        return -1;
    }
    for (i = 0; i < ir->n_tensors; i++) {
        map[i] = keep[i] ? kept : -1;
        if (keep[i])
            ir->tensors[kept++] = ir->tensors[i];
        else
            gone->tensors[gone->n_tensors++] = ir->tensors[i];
    }
    ir->n_tensors = kept;
    for (kept = 0, i = 0; i < ir->n_nodes; i++) {
        struct smlp__node_ir *n = &ir->nodes[i];

        if (!node_in[i]) {
            gone->nodes[gone->n_nodes++] = *n;
            continue;
        }
        smlp__graph_ir_node_remap(n, map);
        ir->nodes[kept++] = *n;
    }
    ir->n_nodes = kept;
    smlp__graph_ir_free(gone);
    free(map);
    return 0;
}

int
train_cache_head(const uint8_t *buf, size_t len, const char *what,
                 const char *tensor, const int64_t *dims, int n_dims,
                 uint8_t **out, size_t *out_len, char *err, size_t errlen)
{
    struct smlp__graph_ir *ir = NULL;
    struct smlp__tensor_ir *c;
    char *node_in, *live, *keep = NULL;
    int32_t i, j, cut;
    int rc = -1;

    *out = NULL;
    if (decode_marked(buf, len, what, &ir, &node_in, &live, err, errlen) != 0)
        goto out;
    cut = smlp__graph_ir_find_tensor(ir, tensor);
    if (cut < 0 || n_dims < 0 || n_dims + 1 > SMLP_MAX_RANK) {
        snprintf(err, errlen, "%s: cannot cut the graph at '%s'", what,
                 tensor);
        goto out;
    }
    keep = calloc((size_t)ir->n_tensors + 1, 1);
    if (keep == NULL)
        goto out_nomem;
    for (i = 0; i < ir->n_tensors; i++)
        keep[i] = ir->tensors[i].kind == SMLP__TENSOR_PARAMETER ||
                  ir->tensors[i].kind == SMLP__TENSOR_STATE || i == cut;
    for (i = 0; i < ir->n_nodes; i++) {
        for (j = 0; node_in[i] && j < ir->nodes[i].n_inputs; j++)
            if (ir->nodes[i].inputs[j] >= 0)
                keep[ir->nodes[i].inputs[j]] = 1;
        for (j = 0; node_in[i] && j < ir->nodes[i].n_outputs; j++)
            keep[ir->nodes[i].outputs[j]] = 1;
    }
    c = &ir->tensors[cut];
    c->kind = SMLP__TENSOR_INPUT;
    c->dtype = SMLP_DTYPE_F32;
    c->has_shape = 1;
    c->rank = n_dims + 1;
    c->shape[0] = -1;
    for (i = 0; i < n_dims; i++)
        c->shape[i + 1] = dims[i];
    memset(&c->init, 0, sizeof(c->init));
    if (cut_graph(ir, node_in, keep) != 0 ||
        train_head_add_meta(ir, "train.probe_cache", tensor) != 0)
        goto out_nomem;
    if (smlp__graph_ir_encode(ir, out, out_len, err, errlen) == SMLP_OK)
        rc = 0;
    goto out;
out_nomem:
    snprintf(err, errlen, "%s: out of memory", what);
out:
    free(keep);
    free(node_in);
    free(live);
    smlp__graph_ir_free(ir);
    return rc;
}
