/*
 * graph_edit_apply.c - the edits of `smlp-graph edit` that change one
 * kind of thing in place: --set-op, --set-attr, --del-attr, --rename,
 * --remove-node, --drop-input, --set-shape, --set-init, --set-meta and
 * --del-meta (graph_edit.c applies them in order; docs/graphs.md).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph_edit.h"

/* ---- applying the edits ------------------------------------------------- */

int
ge_no_match(const struct edit *e, const char *what, const char *glob)
{
    sg_error("%s '%s': no %s matches '%s'", edit_opt[e->kind], e->spec,
             what, glob);
    return -1;
}

/* Adds plugin `name` (len bytes) to the graph's list when missing. */
void
ge_need_plugin(struct smlp__graph_ir *ir, const char *name, size_t len)
{
    int32_t i;

    for (i = 0; i < ir->n_plugins; i++)
        if (strlen(ir->plugins[i]) == len &&
            memcmp(ir->plugins[i], name, len) == 0)
            return;
    ir->plugins = ge_realloc(ir->plugins,
                             (size_t)(ir->n_plugins + 1) * sizeof(char *));
    ir->plugins[ir->n_plugins++] = ge_strndup(name, len);
}

/*
 * Loads the plugin of op `name` and returns the op's definition, or NULL
 * after a message (no such plugin, or the plugin has no such op: the
 * message lists the ops it has).
 */
static const struct smlp_op_def *
op_def(smlp_registry_t *reg, const struct edit *e, const char *name)
{
    const struct smlp_op_def *def;
    struct smlp_error err;
    char plugin[128], list[1024] = "";
    size_t len = strcspn(name, "."), used = 0;
    int i;

    snprintf(plugin, sizeof(plugin), "%.*s", (int)len, name);
    if (smlp_registry_load(reg, plugin, &err) != SMLP_OK) {
        sg_error("%s '%s': %s", edit_opt[e->kind], e->spec, err.msg);
        return NULL;
    }
    def = smlp_registry_op_def(reg, name);
    if (def != NULL)
        return def;
    for (i = 0; i < smlp_registry_op_count(reg); i++) {
        const char *op = smlp_registry_op_name(reg, i);

        if (strncmp(op, name, len + 1) == 0 && used < sizeof(list))
            used += (size_t)snprintf(list + used, sizeof(list) - used,
                                     "%s%s", used ? ", " : "", op);
    }
    sg_error("%s '%s': plugin '%s' has no op '%s' (it has: %s)",
             edit_opt[e->kind], e->spec, plugin, name,
             used ? list : "no ops");
    return NULL;
}

int
ge_apply_set_op(struct smlp__graph_ir *ir, const struct edit *e,
                smlp_registry_t *reg)
{
    const struct smlp_op_def *def = NULL;
    int32_t i, j;
    int n = 0;

    if (reg != NULL && (def = op_def(reg, e, e->value)) == NULL)
        return -1;
    for (i = 0; i < ir->n_nodes; i++) {
        struct smlp__node_ir *node = &ir->nodes[i];

        if ((e->glob != NULL && !sg_glob(e->glob, node->name)) ||
            !sg_glob(e->key, node->op))
            continue;
        free(node->op);
        node->op = ge_strdup(e->value);
        n++;
        if (def == NULL || node->n_inputs <= def->max_inputs)
            continue;
        for (j = def->max_inputs; j < node->n_inputs; j++)
            sg_note("node '%s': op '%s' takes at most %d input%s: dropped "
                    "input %d '%s'",
                    node->name, e->value, (int)def->max_inputs,
                    def->max_inputs == 1 ? "" : "s", (int)j,
                    node->inputs[j] >= 0
                        ? ir->tensors[node->inputs[j]].name
                        : "(absent)");
        node->n_inputs = def->max_inputs;
    }
    if (n == 0) {
        if (e->glob != NULL)
            sg_error("%s '%s': no node matching '%s' has an op matching "
                     "'%s'",
                     edit_opt[e->kind], e->spec, e->glob, e->key);
        else
            sg_error("%s '%s': no node has an op matching '%s'",
                     edit_opt[e->kind], e->spec, e->key);
        return -1;
    }
    ge_need_plugin(ir, e->value, strcspn(e->value, "."));
    return 0;
}

int
ge_apply_set_attr(struct smlp__graph_ir *ir, const struct edit *e)
{
    int32_t i, j;
    int n = 0;

    for (i = 0; i < ir->n_nodes; i++) {
        struct smlp__node_ir *node = &ir->nodes[i];
        struct smlp__attr_ir *a = NULL;
        int type = e->type;

        if (!sg_glob(e->glob, node->name))
            continue;
        n++;
        for (j = 0; j < node->n_attrs; j++)
            if (strcmp(node->attrs[j].name, e->key) == 0)
                a = &node->attrs[j];
        if (a != NULL) {
            if (type < 0)
                type = a->type;
            if (ge_attr_set(a, type, e->value, e, node->name) != 0)
                return -1;
            continue;
        }
        if (node->n_attrs >= SMLP__MAX_ATTRS) {
            sg_error("%s '%s': node '%s' has %d attributes, the most a "
                     "node may have",
                     edit_opt[e->kind], e->spec, node->name,
                     SMLP__MAX_ATTRS);
            return -1;
        }
        if (type < 0)
            type = ge_infer_type(e->value);
        a = smlp__graph_ir_node_attr(node, e->key);
        if (a == NULL) {
            sg_error("out of memory");
            exit(SG_EXIT_FAIL);
        }
        if (ge_attr_set(a, type, e->value, e, node->name) != 0)
            return -1;
    }
    return n > 0 ? 0 : ge_no_match(e, "node", e->glob);
}

int
ge_apply_del_attr(struct smlp__graph_ir *ir, const struct edit *e)
{
    char *names = ge_strdup(e->key), *name, *next;
    int32_t i, j;
    int nodes = 0, removed, rc = 0;

    for (i = 0; i < ir->n_nodes; i++)
        nodes += sg_glob(e->glob, ir->nodes[i].name);
    if (nodes == 0) {
        free(names);
        return ge_no_match(e, "node", e->glob);
    }
    for (name = names; name != NULL && rc == 0; name = next) {
        next = strchr(name, ',');
        if (next != NULL)
            *next++ = '\0';
        removed = 0;
        for (i = 0; i < ir->n_nodes; i++) {
            struct smlp__node_ir *node = &ir->nodes[i];

            if (!sg_glob(e->glob, node->name))
                continue;
            for (j = 0; j < node->n_attrs; j++) {
                if (strcmp(node->attrs[j].name, name) != 0)
                    continue;
                free(node->attrs[j].name);
                ge_attr_clear(&node->attrs[j]);
                memmove(&node->attrs[j], &node->attrs[j + 1],
                        (size_t)(node->n_attrs - j - 1) *
                            sizeof(*node->attrs));
                node->n_attrs--;
                removed++;
                break;
            }
        }
        if (removed == 0) {
            sg_error("%s '%s': no node matching '%s' has an attribute '%s'",
                     edit_opt[e->kind], e->spec, e->glob, name);
            rc = -1;
        }
    }
    free(names);
    return rc;
}

/* Renames name (when it starts with prefix `from`) to `to` + the rest;
 * returns the new string or NULL when it does not match. */
char *
ge_prefix_rename(const char *name, const char *from, size_t from_len,
                 const char *to, size_t to_len)
{
    char *s;

    if (strncmp(name, from, from_len) != 0)
        return NULL;
    s = ge_realloc(NULL, to_len + strlen(name + from_len) + 1);
    memcpy(s, to, to_len);
    strcpy(s + to_len, name + from_len);
    return s;
}

int
ge_apply_rename(struct smlp__graph_ir *ir, const struct edit *e)
{
    size_t from_len = strlen(e->key), to_len = strlen(e->value);
    int32_t i, t, nd;
    int node_clash;
    char *s;
    int n = 0;

    if (e->key[from_len - 1] != '*') {
        nd = smlp__graph_ir_find_node(ir, e->key);
        t = smlp__graph_ir_find_tensor(ir, e->key);
        if (nd < 0 && t < 0)
            return ge_no_match(e, "node or tensor", e->key);
        node_clash = nd >= 0 && smlp__graph_ir_find_node(ir, e->value) >= 0;
        if (node_clash ||
            (t >= 0 && smlp__graph_ir_find_tensor(ir, e->value) >= 0)) {
            sg_error("%s '%s': a %s named '%s' exists already",
                     edit_opt[e->kind], e->spec,
                     node_clash ? "node" : "tensor", e->value);
            return -1;
        }
        if (nd >= 0) {
            free(ir->nodes[nd].name);
            ir->nodes[nd].name = ge_strdup(e->value);
        }
        if (t >= 0) {
            free(ir->tensors[t].name);
            ir->tensors[t].name = ge_strdup(e->value);
        }
        return 0;
    }
    /* A prefix rename: "blocks.11.*=blocks.12.*".  Name clashes are left
     * to the verification, which names them. */
    from_len--;
    to_len--;
    for (i = 0; i < ir->n_nodes; i++)
        if ((s = ge_prefix_rename(ir->nodes[i].name, e->key, from_len,
                                  e->value, to_len)) != NULL) {
            free(ir->nodes[i].name);
            ir->nodes[i].name = s;
            n++;
        }
    for (i = 0; i < ir->n_tensors; i++)
        if ((s = ge_prefix_rename(ir->tensors[i].name, e->key, from_len,
                                  e->value, to_len)) != NULL) {
            free(ir->tensors[i].name);
            ir->tensors[i].name = s;
            n++;
        }
    return n > 0 ? 0 : ge_no_match(e, "node or tensor", e->key);
}

/* The first node reading tensor t, or -1. */
static int32_t
first_reader(const struct smlp__graph_ir *ir, int32_t t)
{
    int32_t i, j;

    for (i = 0; i < ir->n_nodes; i++)
        for (j = 0; j < ir->nodes[i].n_inputs; j++)
            if (ir->nodes[i].inputs[j] == t)
                return i;
    return -1;
}

int
ge_apply_remove_node(struct smlp__graph_ir *ir, const struct edit *e)
{
    int32_t i, j, k, r;
    int n = 0;

    for (i = 0; i < ir->n_nodes;) {
        struct smlp__node_ir *node = &ir->nodes[i];
        int32_t in0, out0;

        if (!sg_glob(e->glob, node->name)) {
            i++;
            continue;
        }
        if (node->n_inputs < 1 || node->inputs[0] < 0 ||
            node->n_outputs < 1) {
            sg_error("%s '%s': node '%s' has no input 0 and output 0 to "
                     "connect; only a node that passes input 0 on as "
                     "output 0 can be removed",
                     edit_opt[e->kind], e->spec, node->name);
            return -1;
        }
        in0 = node->inputs[0];
        out0 = node->outputs[0];
        if (ir->tensors[out0].kind == SMLP__TENSOR_OUTPUT) {
            sg_error("%s '%s': node '%s' writes the graph output '%s', "
                     "which would then be written by no node",
                     edit_opt[e->kind], e->spec, node->name,
                     ir->tensors[out0].name);
            return -1;
        }
        for (j = 1; j < node->n_outputs; j++)
            if ((r = first_reader(ir, node->outputs[j])) >= 0 ||
                ir->tensors[node->outputs[j]].kind == SMLP__TENSOR_OUTPUT) {
                sg_error("%s '%s': node '%s': output %d '%s' is %s; only "
                         "output 0 can be rewired",
                         edit_opt[e->kind], e->spec, node->name, (int)j,
                         ir->tensors[node->outputs[j]].name,
                         r >= 0 ? "read by another node" : "a graph output");
                return -1;
            }
        /* Readers of output 0 read input 0 instead. */
        for (k = 0; k < ir->n_nodes; k++)
            for (j = 0; j < ir->nodes[k].n_inputs; j++)
                if (ir->nodes[k].inputs[j] == out0)
                    ir->nodes[k].inputs[j] = in0;
        ge_node_free(node);
        memmove(node, node + 1,
                (size_t)(ir->n_nodes - i - 1) * sizeof(*node));
        ir->n_nodes--;
        n++;
    }
    return n > 0 ? 0 : ge_no_match(e, "node", e->glob);
}

int
ge_apply_drop_input(struct smlp__graph_ir *ir, const struct edit *e)
{
    int32_t i;
    int n = 0;

    for (i = 0; i < ir->n_nodes; i++) {
        struct smlp__node_ir *node = &ir->nodes[i];

        if (!sg_glob(e->glob, node->name))
            continue;
        if (e->index >= node->n_inputs) {
            sg_error("%s '%s': node '%s' has %d inputs, no input %" PRId64,
                     edit_opt[e->kind], e->spec, node->name,
                     (int)node->n_inputs, e->index);
            return -1;
        }
        memmove(&node->inputs[e->index], &node->inputs[e->index + 1],
                (size_t)(node->n_inputs - e->index - 1) * sizeof(int32_t));
        node->n_inputs--;
        n++;
    }
    return n > 0 ? 0 : ge_no_match(e, "node", e->glob);
}

int
ge_apply_set_shape(struct smlp__graph_ir *ir, const struct edit *e)
{
    int64_t *dims = NULL;
    size_t n_dims = 0, d;
    int32_t i;
    int n = 0, none = strcmp(e->value, "none") == 0;

    if (!none && (ge_parse_list(e->value, &dims, NULL, &n_dims) != 0 ||
                  n_dims > SMLP_MAX_RANK)) {
        free(dims);
        sg_error("%s '%s': '%s' is not a shape of at most %d integers "
                 "(e.g. 8,196; -1 marks the batch) or 'none'",
                 edit_opt[e->kind], e->spec, e->value, SMLP_MAX_RANK);
        return -1;
    }
    for (d = 0; d < n_dims; d++)
        if (dims[d] < -1) {
            sg_error("%s '%s': dimension %" PRId64 " is invalid (>= 0, or "
                     "-1 for the batch)",
                     edit_opt[e->kind], e->spec, dims[d]);
            free(dims);
            return -1;
        }
    for (i = 0; i < ir->n_tensors; i++) {
        struct smlp__tensor_ir *t = &ir->tensors[i];

        if (!sg_glob(e->glob, t->name))
            continue;
        t->has_shape = !none;
        t->rank = (int32_t)n_dims;
        memset(t->shape, 0, sizeof(t->shape));
        if (n_dims > 0)
            memcpy(t->shape, dims, n_dims * sizeof(int64_t));
        n++;
    }
    free(dims);
    return n > 0 ? 0 : ge_no_match(e, "tensor", e->glob);
}

/*
 * x rounded to float32, then written as the shortest decimal that reads
 * back to that float32 and read as a double: what tools/gen_graphs.py
 * (its f32()) puts in a graph for an initializer bound.
 */
static double
generator_f32(double x)
{
    float f = (float)x;
    char buf[40];
    double y;
    int digits;

    for (digits = 1; digits < 18; digits++) {
        snprintf(buf, sizeof(buf), "%.*g", digits, (double)f);
        y = strtod(buf, NULL);
        if ((float)y == f)
            return y;
    }
    return (double)f;
}

/*
 * Xavier/Glorot uniform bound of a weight: [out, in] and stacked expert
 * weights [E, out, in] use fan_in = in, fan_out = out; a convolution
 * [out, in, kh, kw] fan_in = in·kh·kw, fan_out = out·kh·kw (PyTorch).
 */
static int
xavier_bound(const struct smlp__tensor_ir *t, double *bound)
{
    double fan_in, fan_out;

    if (!t->has_shape || t->rank < 2 || t->rank > 4)
        return -1;
    if (t->rank == 4) {
        double rf = (double)t->shape[2] * (double)t->shape[3];

        fan_in = (double)t->shape[1] * rf;
        fan_out = (double)t->shape[0] * rf;
    } else {
        fan_in = (double)t->shape[t->rank - 1];
        fan_out = (double)t->shape[t->rank - 2];
    }
    if (!(fan_in + fan_out > 0))
        return -1;
    *bound = sqrt(6.0 / (fan_in + fan_out));
    return 0;
}

int
ge_apply_set_init(struct smlp__graph_ir *ir, const struct edit *e)
{
    static const char *const kinds[] = {"zeros", "ones", "constant",
                                        "uniform", "normal"};
    static const int n_args[] = {0, 0, 1, 2, 2};
    char *spec = ge_strdup(e->value), *args, *at;
    double v[2] = {0.0, 0.0}, *floats = NULL, bound;
    const struct smlp__tensor_ir *computed = NULL;
    unsigned long long seed = 0;
    char *end;
    size_t n = 0;
    int32_t i;
    int kind = -1, xavier = 0, none = 0, has_seed = 0, matched = 0, k;
    int rc = -1;

    at = strchr(spec, '@');
    if (at != NULL) {
        *at++ = '\0';
        errno = 0;
        seed = strtoull(at, &end, 10);
        if (errno != 0 || end == at || *end != '\0' || at[0] == '-') {
            sg_error("%s '%s': '@%s' is not a seed (a non-negative "
                     "integer)",
                     edit_opt[e->kind], e->spec, at);
            goto out;
        }
        has_seed = 1;
    }
    args = strchr(spec, ':');
    if (args != NULL)
        *args++ = '\0';
    for (k = 0; k < SMLP__INIT_KIND_COUNT; k++)
        if (strcmp(spec, kinds[k]) == 0)
            kind = k;
    xavier = strcmp(spec, "xavier") == 0;
    none = strcmp(spec, "none") == 0;
    if (xavier)
        kind = SMLP__INIT_UNIFORM;
    if (kind < 0 && !none) {
        sg_error("%s '%s': '%s' is not an initializer: zeros, ones, "
                 "constant:A, uniform:A,B, normal:MEAN,STD, xavier or none",
                 edit_opt[e->kind], e->spec, spec);
        goto out;
    }
    if (!none && !xavier &&
        ((args == NULL) != (n_args[kind] == 0) ||
         (args != NULL && (ge_parse_list(args, NULL, &floats, &n) != 0 ||
                           n != (size_t)n_args[kind])))) {
        sg_error("%s '%s': %s takes %d number%s after ':'",
                 edit_opt[e->kind], e->spec, kinds[kind], n_args[kind],
                 n_args[kind] == 1 ? "" : "s");
        goto out;
    }
    for (k = 0; k < (int)n; k++)
        v[k] = floats[k];
    for (i = 0; i < ir->n_tensors; i++) {
        struct smlp__tensor_ir *t = &ir->tensors[i];

        if (!sg_glob(e->glob, t->name))
            continue;
        if (t->kind == SMLP__TENSOR_ACTIVATION ||
            t->kind == SMLP__TENSOR_OUTPUT) {
            /* A node computes it: an initializer would be ignored. */
            computed = computed ? computed : t;
            continue;
        }
        matched++;
        if (none) {
            memset(&t->init, 0, sizeof(t->init));
            continue;
        }
        if (!t->init.present)
            t->init.seed = ge_fnv1a64(t->name);
        if (has_seed)
            t->init.seed = (uint64_t)seed;
        t->init.present = 1;
        t->init.kind = kind;
        t->init.a = v[0];
        t->init.b = v[1];
        if (!xavier)
            continue;
        if (xavier_bound(t, &bound) != 0) {
            sg_error("%s '%s': tensor '%s' has no weight shape ([out,in], "
                     "[E,out,in] or [out,in,kh,kw]) to take fans from",
                     edit_opt[e->kind], e->spec, t->name);
            goto out;
        }
        t->init.a = generator_f32(-bound);
        t->init.b = generator_f32(bound);
    }
    if (matched == 0 && computed != NULL)
        sg_error("%s '%s': tensor '%s' is computed by a node (%s); "
                 "initializers are for parameters, state and inputs",
                 edit_opt[e->kind], e->spec, computed->name,
                 computed->kind == SMLP__TENSOR_OUTPUT ? "an output"
                                                       : "an activation");
    else
        rc = matched > 0 ? 0 : ge_no_match(e, "tensor", e->glob);
out:
    free(floats);
    free(spec);
    return rc;
}

int
ge_apply_meta(struct smlp__graph_ir *ir, const struct edit *e)
{
    int32_t i;

    for (i = 0; i < ir->n_meta; i++)
        if (strcmp(ir->meta[i].key, e->key) == 0)
            break;
    if (e->kind == EDIT_DEL_META) {
        if (i == ir->n_meta)
            return ge_no_match(e, "metadata key", e->key);
        free(ir->meta[i].key);
        free(ir->meta[i].value);
        memmove(&ir->meta[i], &ir->meta[i + 1],
                (size_t)(ir->n_meta - i - 1) * sizeof(*ir->meta));
        ir->n_meta--;
        return 0;
    }
    if (i == ir->n_meta) {
        ir->meta = ge_realloc(ir->meta,
                              (size_t)(ir->n_meta + 1) * sizeof(*ir->meta));
        ir->meta[i].key = ge_strdup(e->key);
        ir->meta[i].value = NULL;
        ir->n_meta++;
    }
    free(ir->meta[i].value);
    ir->meta[i].value = ge_strdup(e->value);
    return 0;
}
