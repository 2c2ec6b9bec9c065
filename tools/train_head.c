/*
 * train_head.c - appending smlp-train's loss head to a classifier graph's
 * IR (runtime/graph_ir.h) and encoding the result.  See train_head.h.
 *
 * IR memory is malloc'ed and released by smlp__graph_ir_free, so new
 * tensors and nodes are appended with realloc and their strings strdup'ed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph_ir.h"
#include "smlp.h"
#include "train_head.h"

/* Seed of the synthetic labels (any constant: "labels"). */
#define HEAD_LABEL_SEED UINT64_C(0x6c6162656c73)

/* Appends a tensor; returns its index or -1 when out of memory. */
static int32_t
add_tensor(struct smlp__graph_ir *ir, const char *name, int dtype, int kind,
           int rank)
{
    struct smlp__tensor_ir *t;

    t = realloc(ir->tensors, ((size_t)ir->n_tensors + 1) * sizeof(*t));
    if (t == NULL)
        return -1;
    ir->tensors = t;
    t += ir->n_tensors;
    memset(t, 0, sizeof(*t));
    t->name = strdup(name);
    if (t->name == NULL)
        return -1;
    t->dtype = dtype;
    t->kind = kind;
    t->has_shape = 1;
    t->rank = rank;
    if (rank > 0)
        t->shape[0] = -1;
    return ir->n_tensors++;
}

/* Appends node `name` (op) reading a and b, writing out; attrs is an
 * optional single float attribute.  0 or -1 when out of memory. */
static int
add_node(struct smlp__graph_ir *ir, const char *name, const char *op,
         int32_t a, int32_t b, int32_t out, const char *attr, double value)
{
    struct smlp__node_ir *n;

    n = realloc(ir->nodes, ((size_t)ir->n_nodes + 1) * sizeof(*n));
    if (n == NULL)
        return -1;
    ir->nodes = n;
    n += ir->n_nodes;
    memset(n, 0, sizeof(*n));
    ir->n_nodes++;
    n->name = strdup(name);
    n->op = strdup(op);
    n->inputs = malloc(2 * sizeof(int32_t));
    n->outputs = malloc(sizeof(int32_t));
    if (n->name == NULL || n->op == NULL || n->inputs == NULL ||
        n->outputs == NULL)
        return -1;
    n->n_inputs = 2;
    n->inputs[0] = a;
    n->inputs[1] = b;
    n->n_outputs = 1;
    n->outputs[0] = out;
    if (attr != NULL) {
        n->attrs = calloc(1, sizeof(*n->attrs));
        if (n->attrs == NULL)
            return -1;
        n->n_attrs = 1;
        n->attrs[0].name = strdup(attr);
        if (n->attrs[0].name == NULL)
            return -1;
        n->attrs[0].type = SMLP_ATTR_FLOAT;
        n->attrs[0].f = value;
    }
    return 0;
}

static int
add_plugin(struct smlp__graph_ir *ir, const char *name)
{
    char **p;
    int32_t i;

    for (i = 0; i < ir->n_plugins; i++)
        if (strcmp(ir->plugins[i], name) == 0)
            return 0;
    p = realloc(ir->plugins, ((size_t)ir->n_plugins + 1) * sizeof(*p));
    if (p == NULL)
        return -1;
    ir->plugins = p;
    p[ir->n_plugins] = strdup(name);
    if (p[ir->n_plugins] == NULL)
        return -1;
    ir->n_plugins++;
    return 0;
}

int
train_head_add_meta(struct smlp__graph_ir *ir, const char *key,
                    const char *value)
{
    struct smlp__meta_ir *m;

    m = realloc(ir->meta, ((size_t)ir->n_meta + 1) * sizeof(*m));
    if (m == NULL)
        return -1;
    ir->meta = m;
    m += ir->n_meta;
    m->key = strdup(key);
    m->value = strdup(value);
    ir->n_meta++;
    return m->key != NULL && m->value != NULL ? 0 : -1;
}

/* The image input: 'image', else the only f32 input; -1 with a message. */
static int32_t
find_image(const struct smlp__graph_ir *ir, const char *what, char *err,
           size_t errlen)
{
    int32_t i, found = -1, n = 0;

    i = smlp__graph_ir_find_tensor(ir, "image");
    if (i >= 0 && ir->tensors[i].kind == SMLP__TENSOR_INPUT)
        found = i;
    /* No 'image': count every f32 input (stopping at the first one
     * found would take it for the only one). */
    if (found < 0)
        for (i = 0; i < ir->n_tensors; i++)
            if (ir->tensors[i].kind == SMLP__TENSOR_INPUT &&
                ir->tensors[i].dtype == SMLP_DTYPE_F32 && n++ == 0)
                found = i;
    if (found < 0 || n > 1) {
        snprintf(err, errlen,
                 "%s: %s: smlp-train feeds images to an f32 input named "
                 "'image' (or the only f32 input), shaped [-1,C,H,W]",
                 what, found < 0 ? "no f32 input" : "several f32 inputs");
        return -1;
    }
    if (ir->tensors[found].dtype != SMLP_DTYPE_F32 ||
        !ir->tensors[found].has_shape || ir->tensors[found].rank != 4 ||
        ir->tensors[found].shape[0] != -1) {
        snprintf(err, errlen,
                 "%s: input '%s' must be an f32 tensor shaped [-1,C,H,W] "
                 "(batch first) to take images",
                 what, ir->tensors[found].name);
        return -1;
    }
    return found;
}

/* Checks the names the head adds are free; 1 when the graph has its own
 * head (labels input and loss), 0 when free, -1 with a message. */
static int
check_names(const struct smlp__graph_ir *ir, const char *what,
            double label_smoothing, char *err, size_t errlen)
{
    static const char *const tensors[] = {"labels", "ce", "loss"};
    static const char *const nodes[] = {"train.ce", "train.loss"};
    int32_t labels = smlp__graph_ir_find_tensor(ir, "labels");
    int32_t loss = smlp__graph_ir_find_tensor(ir, "loss");
    size_t i;

    if (labels >= 0 && loss >= 0 &&
        ir->tensors[labels].kind == SMLP__TENSOR_INPUT &&
        ir->tensors[labels].dtype == SMLP_DTYPE_I32) {
        if (label_smoothing != 0.0) {
            snprintf(err, errlen,
                     "%s: the graph has its own loss: set label smoothing "
                     "in the graph, not with --label-smoothing", what);
            return -1;
        }
        return 1;
    }
    for (i = 0; i < sizeof(tensors) / sizeof(tensors[0]); i++)
        if (smlp__graph_ir_find_tensor(ir, tensors[i]) >= 0) {
            snprintf(err, errlen,
                     "%s: the graph already has a tensor '%s', the name of "
                     "one smlp-train adds for the loss (rename it with "
                     "smlp-graph edit --rename)", what, tensors[i]);
            return -1;
        }
    for (i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++)
        if (smlp__graph_ir_find_node(ir, nodes[i]) >= 0) {
            snprintf(err, errlen,
                     "%s: the graph already has a node '%s', the name of "
                     "one smlp-train adds for the loss", what, nodes[i]);
            return -1;
        }
    return 0;
}

static int
append_head(struct smlp__graph_ir *ir, int32_t logits, int32_t aux,
            int64_t classes, double label_smoothing)
{
    int32_t labels, ce, loss;

    labels = add_tensor(ir, "labels", SMLP_DTYPE_I32, SMLP__TENSOR_INPUT, 1);
    if (labels < 0)
        return -1;
    if (classes > 0) {
        struct smlp__init_ir *init = &ir->tensors[labels].init;

        /* Rounded to nearest: every class about equally often. */
        init->present = 1;
        init->kind = SMLP__INIT_UNIFORM;
        init->a = -0.5;
        init->b = (double)classes - 0.5;
        init->seed = HEAD_LABEL_SEED;
    }
    ce = add_tensor(ir, aux >= 0 ? "ce" : "loss", SMLP_DTYPE_F32,
                    SMLP__TENSOR_OUTPUT, 0);
    if (ce < 0 ||
        add_node(ir, "train.ce", "core.softmax_cross_entropy", logits,
                 labels, ce,
                 label_smoothing != 0.0 ? "label_smoothing" : NULL,
                 label_smoothing) != 0)
        return -1;
    if (aux >= 0) {
        loss = add_tensor(ir, "loss", SMLP_DTYPE_F32, SMLP__TENSOR_OUTPUT, 0);
        if (loss < 0 ||
            add_node(ir, "train.loss", "core.add", ce, aux, loss, NULL,
                     0.0) != 0)
            return -1;
    }
    if (add_plugin(ir, "core") != 0)
        return -1;
    return train_head_add_meta(ir, "train.head",
                    aux >= 0 ? "core.softmax_cross_entropy(logits, labels) "
                               "+ aux_loss"
                             : "core.softmax_cross_entropy(logits, labels)");
}

/* Is t an f32 input [-1,C,H,W]? */
static int
is_image_input(const struct smlp__tensor_ir *t)
{
    return t->kind == SMLP__TENSOR_INPUT && t->dtype == SMLP_DTYPE_F32 &&
           t->has_shape && t->rank == 4 && t->shape[0] == -1;
}

/* A MoCo graph (inputs view1 and view2): 1 and info filled, 0 when it is
 * not one, -1 with a message when it is one with a fault. */
static int
check_moco(const struct smlp__graph_ir *ir, const char *what,
           struct train_head_info *info, char *err, size_t errlen)
{
    int32_t v1 = smlp__graph_ir_find_tensor(ir, "view1");
    int32_t v2 = smlp__graph_ir_find_tensor(ir, "view2");
    int32_t loss = smlp__graph_ir_find_tensor(ir, "loss");
    int32_t m = smlp__graph_ir_find_tensor(ir, "m");

    if (v1 < 0 || v2 < 0 || ir->tensors[v1].kind != SMLP__TENSOR_INPUT ||
        ir->tensors[v2].kind != SMLP__TENSOR_INPUT)
        return 0;
    if (!is_image_input(&ir->tensors[v1]) ||
        !is_image_input(&ir->tensors[v2]) ||
        memcmp(ir->tensors[v1].shape, ir->tensors[v2].shape,
               4 * sizeof(ir->tensors[v1].shape[0])) != 0) {
        snprintf(err, errlen,
                 "%s: a MoCo graph's inputs 'view1' and 'view2' must be f32 "
                 "tensors of one shape [-1,C,H,W]", what);
        return -1;
    }
    if (loss < 0 || ir->tensors[loss].dtype != SMLP_DTYPE_F32 ||
        (ir->tensors[loss].has_shape && ir->tensors[loss].rank != 0)) {
        snprintf(err, errlen,
                 "%s: a MoCo graph (inputs 'view1', 'view2') must compute "
                 "its loss: an f32 scalar 'loss'", what);
        return -1;
    }
    if (m >= 0 && (ir->tensors[m].kind != SMLP__TENSOR_INPUT ||
                   ir->tensors[m].dtype != SMLP_DTYPE_F32 ||
                   !ir->tensors[m].has_shape || ir->tensors[m].rank != 0)) {
        snprintf(err, errlen,
                 "%s: tensor 'm' must be an f32 scalar input (the momentum "
                 "smlp-train feeds each step)", what);
        return -1;
    }
    snprintf(info->image, sizeof(info->image), "view1");
    memcpy(info->chw, ir->tensors[v1].shape + 1, sizeof(info->chw));
    info->moco = 1;
    info->has_m = m >= 0;
    info->existing = 1;
    info->has_aux = smlp__graph_ir_find_tensor(ir, "aux_loss") >= 0;
    return 1;
}

int
train_head_build(const uint8_t *buf, size_t len, const char *what,
                 double label_smoothing, int probe, uint8_t **out,
                 size_t *out_len, struct train_head_info *info, char *err,
                 size_t errlen)
{
    struct smlp__graph_ir *ir = NULL;
    const struct smlp__tensor_ir *t;
    int32_t image, logits, aux;
    int rc = -1, own;

    memset(info, 0, sizeof(*info));
    *out = NULL;
    if (smlp__graph_ir_decode(buf, len, what, &ir, err, errlen) != SMLP_OK)
        return -1;
    own = check_moco(ir, what, info, err, errlen);
    if (own < 0)
        goto out_free;
    if (own > 0)
        goto out_encode;
    image = find_image(ir, what, err, errlen);
    if (image < 0)
        goto out_free;
    t = &ir->tensors[image];
    snprintf(info->image, sizeof(info->image), "%s", t->name);
    memcpy(info->chw, t->shape + 1, sizeof(info->chw));
    logits = smlp__graph_ir_find_tensor(ir, "logits");
    if (logits < 0 || ir->tensors[logits].dtype != SMLP_DTYPE_F32 ||
        (ir->tensors[logits].has_shape && ir->tensors[logits].rank != 2)) {
        snprintf(err, errlen,
                 "%s: no f32 tensor 'logits' [-1,K]: smlp-train trains "
                 "classifiers (logits of K classes per image)", what);
        goto out_free;
    }
    if (ir->tensors[logits].has_shape)
        info->classes = ir->tensors[logits].shape[1];
    aux = smlp__graph_ir_find_tensor(ir, "aux_loss");
    if (aux >= 0 && (ir->tensors[aux].dtype != SMLP_DTYPE_F32 ||
                     (ir->tensors[aux].has_shape &&
                      ir->tensors[aux].rank != 0))) {
        snprintf(err, errlen, "%s: tensor 'aux_loss' is not an f32 scalar",
                 what);
        goto out_free;
    }
    own = check_names(ir, what, label_smoothing, err, errlen);
    if (own < 0)
        goto out_free;
    if (probe && train_probe_gates(ir, info) != 0) {
        snprintf(err, errlen, "%s: out of memory", what);
        goto out_free;
    }
    if (own) {
        info->existing = 1;
        info->has_aux = 0;
    } else {
        /* A probe's loss is the head's cross-entropy: aux_loss comes
         * from the frozen backbone (and is 0 once train_probe_gates has
         * set every aux_weight to 0), so it moves no trained value. */
        if (probe)
            aux = -1;
        info->has_aux = aux >= 0;
        if (append_head(ir, logits, aux, info->classes,
                        label_smoothing) != 0) {
            snprintf(err, errlen, "%s: out of memory", what);
            goto out_free;
        }
    }
out_encode:
    if (smlp__graph_ir_encode(ir, out, out_len, err, errlen) != SMLP_OK)
        goto out_free;
    rc = 0;
out_free:
    smlp__graph_ir_free(ir);
    return rc;
}
