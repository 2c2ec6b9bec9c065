/*
 * graph_edit.c - `smlp-graph edit`: change a graph, verify it, write it.
 *
 * The edits on the command line are applied in their order to the IR of
 * the input graph (graph_ir.h).  Then tensors that no node reads or
 * writes any more (parameters of a removed node, the router weight a
 * --set-op dropped, outputs of a removed node) are pruned, and plugins no
 * node uses are dropped from the graph's list (--keep-unused keeps both).
 * The result is encoded, loaded back through the runtime's checks and,
 * unless --no-infer, bound to the plugins with a plan-only session (every
 * node resolves to an op and a kernel, shapes infer for --batch).  Only a
 * graph that passes is written, atomically; a failing edit writes
 * nothing.
 *
 * Conventions that keep edits reproducible (docs/graphs.md):
 *   - a new attribute goes where sorting by name puts it when the node's
 *     attributes are sorted (tools/gen_graphs.py writes them sorted), else
 *     at the end; a changed attribute keeps its place and, unless a type
 *     is given, its type;
 *   - a new initializer's seed is the 64-bit FNV-1a hash of the tensor
 *     name (the generator's rule); a changed one keeps its seed;
 *   - --set-op drops the trailing inputs the new op does not take (with a
 *     note naming them), so swapping a learned gate for moe.gate.hash
 *     also drops its router weight, which is then pruned.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph_tool.h"

enum edit_kind {
    EDIT_SET_OP,
    EDIT_SET_ATTR,
    EDIT_DEL_ATTR,
    EDIT_RENAME,
    EDIT_REMOVE_NODE,
    EDIT_DROP_INPUT,
    EDIT_SET_SHAPE,
    EDIT_SET_INIT,
    EDIT_NAME,
    EDIT_SET_META,
    EDIT_DEL_META,
    EDIT_KIND_COUNT
};

static const char *const edit_opt[] = {
    "--set-op",   "--set-attr",  "--del-attr",  "--rename",
    "--remove-node", "--drop-input", "--set-shape", "--set-init",
    "--name",     "--set-meta",  "--del-meta",
};

_Static_assert(sizeof(edit_opt) / sizeof(edit_opt[0]) == EDIT_KIND_COUNT,
               "an option name per edit kind");

/* One edit, parsed from its option's argument (spec). */
struct edit {
    int kind;
    const char *spec;
    char *glob;  /* node or tensor glob (set-op: NULL = every node) */
    char *key;   /* op glob, attribute name(s), old name, meta key */
    char *value; /* new op, attribute value, new name, meta value */
    int type;    /* attribute type; -1: keep the old one or infer */
    int64_t index;
};

struct edit_opts {
    const char *input;
    const char *output;
    const char *plugin_path;
    int64_t batch;
    int no_infer;
    int keep_unused;
    int dry_run;
    int n_edits;
    struct edit *edits;
};

/* ---- strings and the IR's memory (malloc, as graph_ir.h wants) --------- */

static char *
xstrdup(const char *s)
{
    char *p = malloc(strlen(s) + 1);

    if (p == NULL) {
        sg_error("out of memory");
        exit(SG_EXIT_FAIL);
    }
    return strcpy(p, s);
}

static char *
xstrndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);

    if (p == NULL) {
        sg_error("out of memory");
        exit(SG_EXIT_FAIL);
    }
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static void *
xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);

    if (q == NULL) {
        sg_error("out of memory");
        exit(SG_EXIT_FAIL);
    }
    return q;
}

static void
attr_clear(struct smlp__attr_ir *a)
{
    free(a->s);
    free(a->ints);
    free(a->floats);
    a->s = NULL;
    a->ints = NULL;
    a->floats = NULL;
    a->n_values = 0;
    a->i = 0;
    a->f = 0.0;
}

static void
node_free(struct smlp__node_ir *n)
{
    int32_t i;

    free(n->name);
    free(n->op);
    free(n->inputs);
    free(n->outputs);
    for (i = 0; i < n->n_attrs; i++) {
        free(n->attrs[i].name);
        attr_clear(&n->attrs[i]);
    }
    free(n->attrs);
}

static uint64_t
fnv1a64(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;

    for (; *s != '\0'; s++) {
        h ^= (uint64_t)(unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

/* ---- parsing values ----------------------------------------------------- */

static int
parse_i64(const char *s, int64_t *out)
{
    char *end;
    long long v;

    while (*s == ' ')
        s++;
    errno = 0;
    v = strtoll(s, &end, 10);
    while (*end == ' ')
        end++;
    if (errno != 0 || end == s || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

static int
parse_f64(const char *s, double *out)
{
    char *end;
    double v;

    while (*s == ' ')
        s++;
    errno = 0;
    v = strtod(s, &end);
    while (*end == ' ')
        end++;
    if (errno == ERANGE || end == s || *end != '\0' || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

/*
 * Splits a list "a,b,c" (optionally in brackets) into its n items, each
 * parsed as an int (ints != NULL) or a double.  An empty list has none.
 * Returns 0 or -1 (an item does not parse).
 */
static int
parse_list(const char *text, int64_t **ints, double **floats, size_t *n)
{
    char *s = xstrdup(text), *p = s, *item, *end;
    size_t len = strlen(s), cap = 8;
    int rc = 0;

    *n = 0;
    if (ints != NULL)
        *ints = xrealloc(NULL, cap * sizeof(**ints));
    else
        *floats = xrealloc(NULL, cap * sizeof(**floats));
    if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
        s[len - 1] = '\0';
        p = s + 1;
    }
    while (*p == ' ')
        p++;
    if (*p == '\0')
        goto out;
    for (item = p; item != NULL; item = end) {
        end = strchr(item, ',');
        if (end != NULL)
            *end++ = '\0';
        if (*n == cap) {
            cap *= 2;
            if (ints != NULL)
                *ints = xrealloc(*ints, cap * sizeof(**ints));
            else
                *floats = xrealloc(*floats, cap * sizeof(**floats));
        }
        if (ints != NULL ? parse_i64(item, &(*ints)[*n])
                         : parse_f64(item, &(*floats)[*n])) {
            rc = -1;
            goto out;
        }
        (*n)++;
    }
out:
    free(s);
    return rc;
}

static const char *const type_names[] = {"int", "float", "string", "ints",
                                         "floats"};

/* The type a new attribute gets from its value's text. */
static int
infer_type(const char *v)
{
    int64_t i, *ints = NULL;
    double d, *floats = NULL;
    size_t n;
    int type = SMLP_ATTR_STRING;

    if (parse_i64(v, &i) == 0)
        return SMLP_ATTR_INT;
    if (parse_f64(v, &d) == 0)
        return SMLP_ATTR_FLOAT;
    if (strchr(v, ',') != NULL || v[0] == '[') {
        if (parse_list(v, &ints, NULL, &n) == 0)
            type = SMLP_ATTR_INTS;
        else if (parse_list(v, NULL, &floats, &n) == 0)
            type = SMLP_ATTR_FLOATS;
    }
    free(ints);
    free(floats);
    return type;
}

/*
 * Sets attribute a (its name already set) to the text v as `type`.
 * Returns 0, or -1 after a message naming the node and attribute.
 */
static int
attr_set(struct smlp__attr_ir *a, int type, const char *v,
         const struct edit *e, const char *node)
{
    struct smlp__attr_ir tmp;

    memset(&tmp, 0, sizeof(tmp));
    tmp.type = type;
    switch (type) {
    case SMLP_ATTR_INT:
        if (parse_i64(v, &tmp.i) == 0)
            break;
        sg_error("%s '%s': node '%s': attribute '%s' is an int, and '%s' "
                 "is not an integer (NAME:TYPE=VALUE changes the type)",
                 edit_opt[e->kind], e->spec, node, a->name, v);
        return -1;
    case SMLP_ATTR_FLOAT:
        if (parse_f64(v, &tmp.f) == 0)
            break;
        sg_error("%s '%s': node '%s': attribute '%s' is a float, and '%s' "
                 "is not a finite number",
                 edit_opt[e->kind], e->spec, node, a->name, v);
        return -1;
    case SMLP_ATTR_STRING:
        tmp.s = xstrdup(v);
        break;
    case SMLP_ATTR_INTS:
        if (parse_list(v, &tmp.ints, NULL, &tmp.n_values) == 0)
            break;
        free(tmp.ints);
        sg_error("%s '%s': node '%s': attribute '%s' is a list of ints, and "
                 "'%s' is not one (e.g. -1,196)",
                 edit_opt[e->kind], e->spec, node, a->name, v);
        return -1;
    case SMLP_ATTR_FLOATS:
        if (parse_list(v, NULL, &tmp.floats, &tmp.n_values) == 0)
            break;
        free(tmp.floats);
        sg_error("%s '%s': node '%s': attribute '%s' is a list of floats, "
                 "and '%s' is not one (e.g. 0.5,1.0)",
                 edit_opt[e->kind], e->spec, node, a->name, v);
        return -1;
    }
    if (type != SMLP_ATTR_INTS)
        free(tmp.ints), tmp.ints = NULL;
    if (type != SMLP_ATTR_FLOATS)
        free(tmp.floats), tmp.floats = NULL;
    attr_clear(a);
    tmp.name = a->name;
    *a = tmp;
    return 0;
}

/* ---- parsing the edits -------------------------------------------------- */

/* Splits s at the first c into two new strings; -1 when c is absent or a
 * side is empty. */
static int
split(const char *s, int c, char **left, char **right)
{
    const char *p = strchr(s, c);

    if (p == NULL || p == s)
        return -1;
    *left = xstrndup(s, (size_t)(p - s));
    *right = xstrdup(p + 1);
    return 0;
}

static int
bad_spec(const struct edit *e, const char *want)
{
    sg_error("%s '%s': expected %s", edit_opt[e->kind], e->spec, want);
    return -1;
}

/* Fills e from its kind and spec; -1 after a message (a usage error). */
static int
parse_edit(struct edit *e)
{
    char *left = NULL, *p;

    e->type = -1;
    switch (e->kind) {
    case EDIT_SET_OP:
        if (split(e->spec, '=', &left, &e->value) != 0 || !*e->value)
            return bad_spec(e, "[NODE_GLOB:]OLD_OP=NEW_OP, e.g. "
                               "moe.gate.importance=moe.gate.topk");
        p = strchr(left, ':');
        if (p != NULL) {
            e->glob = xstrndup(left, (size_t)(p - left));
            e->key = xstrdup(p + 1);
            free(left);
        } else {
            e->key = left;
        }
        p = strchr(e->value, '.');
        if (!*e->key || (e->glob != NULL && !*e->glob) || p == NULL ||
            p == e->value || p[1] == '\0')
            return bad_spec(e, "[NODE_GLOB:]OLD_OP=NEW_OP with NEW_OP "
                               "named PLUGIN.OP");
        return 0;
    case EDIT_SET_ATTR:
        if (split(e->spec, '=', &left, &e->value) != 0 ||
            split(left, ':', &e->glob, &e->key) != 0 || !*e->key) {
            free(left);
            return bad_spec(e, "NODE_GLOB:NAME[:TYPE]=VALUE, e.g. "
                               "'*moe_c*:capacity_factor=0.5'");
        }
        free(left);
        p = strchr(e->key, ':');
        if (p != NULL) {
            int t;

            *p++ = '\0';
            for (t = 0; t < SMLP_ATTR_TYPE_COUNT; t++)
                if (strcmp(p, type_names[t]) == 0)
                    e->type = t;
            if (e->type < 0)
                return bad_spec(e, "a TYPE of int, float, string, ints or "
                                   "floats");
        }
        return 0;
    case EDIT_DEL_ATTR:
        if (split(e->spec, ':', &e->glob, &e->key) != 0 || !*e->key)
            return bad_spec(e, "NODE_GLOB:NAME[,NAME...]");
        return 0;
    case EDIT_RENAME:
        if (split(e->spec, '=', &e->key, &e->value) != 0 || !*e->value)
            return bad_spec(e, "OLD=NEW (a node or tensor name; OLD* = NEW* "
                               "renames a prefix)");
        if ((e->key[strlen(e->key) - 1] == '*') !=
            (e->value[strlen(e->value) - 1] == '*'))
            return bad_spec(e, "both names ending in '*' (a prefix "
                               "rename) or neither");
        return 0;
    case EDIT_REMOVE_NODE:
        e->glob = xstrdup(e->spec);
        return *e->glob ? 0 : bad_spec(e, "NODE_GLOB");
    case EDIT_DROP_INPUT:
        if (split(e->spec, ':', &e->glob, &left) != 0 ||
            parse_i64(left, &e->index) != 0 || e->index < 0 ||
            e->index >= SMLP__MAX_NODE_IO) {
            free(left);
            return bad_spec(e, "NODE_GLOB:INDEX (an input index from 0)");
        }
        free(left);
        return 0;
    case EDIT_SET_SHAPE:
        if (split(e->spec, '=', &e->glob, &e->value) != 0)
            return bad_spec(e, "TENSOR_GLOB=D0,D1,... (or =none)");
        return 0;
    case EDIT_SET_INIT:
        if (split(e->spec, '=', &e->glob, &e->value) != 0)
            return bad_spec(e, "TENSOR_GLOB=KIND[:A[,B]][@SEED]");
        return 0;
    case EDIT_NAME:
        e->value = xstrdup(e->spec);
        return *e->value ? 0 : bad_spec(e, "a graph name");
    case EDIT_SET_META:
        if (split(e->spec, '=', &e->key, &e->value) != 0)
            return bad_spec(e, "KEY=VALUE");
        return 0;
    case EDIT_DEL_META:
        e->key = xstrdup(e->spec);
        return *e->key ? 0 : bad_spec(e, "KEY");
    }
    return -1;
}

/* ---- applying the edits ------------------------------------------------- */

static int
no_match(const struct edit *e, const char *what, const char *glob)
{
    sg_error("%s '%s': no %s matches '%s'", edit_opt[e->kind], e->spec,
             what, glob);
    return -1;
}

static int32_t
find_tensor(const struct smlp__graph_ir *ir, const char *name)
{
    int32_t i;

    for (i = 0; i < ir->n_tensors; i++)
        if (strcmp(ir->tensors[i].name, name) == 0)
            return i;
    return -1;
}

static int32_t
find_node(const struct smlp__graph_ir *ir, const char *name)
{
    int32_t i;

    for (i = 0; i < ir->n_nodes; i++)
        if (strcmp(ir->nodes[i].name, name) == 0)
            return i;
    return -1;
}

/* Adds plugin `name` (len bytes) to the graph's list when missing. */
static void
need_plugin(struct smlp__graph_ir *ir, const char *name, size_t len)
{
    int32_t i;

    for (i = 0; i < ir->n_plugins; i++)
        if (strlen(ir->plugins[i]) == len &&
            memcmp(ir->plugins[i], name, len) == 0)
            return;
    ir->plugins = xrealloc(ir->plugins,
                           (size_t)(ir->n_plugins + 1) * sizeof(char *));
    ir->plugins[ir->n_plugins++] = xstrndup(name, len);
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

static int
apply_set_op(struct smlp__graph_ir *ir, const struct edit *e,
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
        node->op = xstrdup(e->value);
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
    need_plugin(ir, e->value, strcspn(e->value, "."));
    return 0;
}

/* Nonzero when the node's attributes are in ascending name order. */
static int
attrs_sorted(const struct smlp__node_ir *n)
{
    int32_t i;

    for (i = 1; i < n->n_attrs; i++)
        if (strcmp(n->attrs[i - 1].name, n->attrs[i].name) > 0)
            return 0;
    return 1;
}

static int
apply_set_attr(struct smlp__graph_ir *ir, const struct edit *e)
{
    int32_t i, j, at;
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
            if (attr_set(a, type, e->value, e, node->name) != 0)
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
            type = infer_type(e->value);
        at = node->n_attrs;
        if (attrs_sorted(node))
            for (at = 0; at < node->n_attrs &&
                         strcmp(node->attrs[at].name, e->key) < 0;
                 at++)
                ;
        node->attrs = xrealloc(node->attrs, (size_t)(node->n_attrs + 1) *
                                                sizeof(*node->attrs));
        memmove(&node->attrs[at + 1], &node->attrs[at],
                (size_t)(node->n_attrs - at) * sizeof(*node->attrs));
        node->n_attrs++;
        a = &node->attrs[at];
        memset(a, 0, sizeof(*a));
        a->name = xstrdup(e->key);
        if (attr_set(a, type, e->value, e, node->name) != 0)
            return -1;
    }
    return n > 0 ? 0 : no_match(e, "node", e->glob);
}

static int
apply_del_attr(struct smlp__graph_ir *ir, const struct edit *e)
{
    char *names = xstrdup(e->key), *name, *next;
    int32_t i, j;
    int nodes = 0, removed, rc = 0;

    for (i = 0; i < ir->n_nodes; i++)
        nodes += sg_glob(e->glob, ir->nodes[i].name);
    if (nodes == 0) {
        free(names);
        return no_match(e, "node", e->glob);
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
                attr_clear(&node->attrs[j]);
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
static char *
prefix_rename(const char *name, const char *from, size_t from_len,
              const char *to, size_t to_len)
{
    char *s;

    if (strncmp(name, from, from_len) != 0)
        return NULL;
    s = xrealloc(NULL, to_len + strlen(name + from_len) + 1);
    memcpy(s, to, to_len);
    strcpy(s + to_len, name + from_len);
    return s;
}

static int
apply_rename(struct smlp__graph_ir *ir, const struct edit *e)
{
    size_t from_len = strlen(e->key), to_len = strlen(e->value);
    int32_t i, t, nd;
    char *s;
    int n = 0;

    if (e->key[from_len - 1] != '*') {
        nd = find_node(ir, e->key);
        t = find_tensor(ir, e->key);
        if (nd < 0 && t < 0)
            return no_match(e, "node or tensor", e->key);
        if ((nd >= 0 && find_node(ir, e->value) >= 0) ||
            (t >= 0 && find_tensor(ir, e->value) >= 0)) {
            sg_error("%s '%s': a %s named '%s' exists already",
                     edit_opt[e->kind], e->spec,
                     nd >= 0 && find_node(ir, e->value) >= 0 ? "node"
                                                              : "tensor",
                     e->value);
            return -1;
        }
        if (nd >= 0) {
            free(ir->nodes[nd].name);
            ir->nodes[nd].name = xstrdup(e->value);
        }
        if (t >= 0) {
            free(ir->tensors[t].name);
            ir->tensors[t].name = xstrdup(e->value);
        }
        return 0;
    }
    /* A prefix rename: "blocks.11.*=blocks.12.*".  Name clashes are left
     * to the verification, which names them. */
    from_len--;
    to_len--;
    for (i = 0; i < ir->n_nodes; i++)
        if ((s = prefix_rename(ir->nodes[i].name, e->key, from_len,
                               e->value, to_len)) != NULL) {
            free(ir->nodes[i].name);
            ir->nodes[i].name = s;
            n++;
        }
    for (i = 0; i < ir->n_tensors; i++)
        if ((s = prefix_rename(ir->tensors[i].name, e->key, from_len,
                               e->value, to_len)) != NULL) {
            free(ir->tensors[i].name);
            ir->tensors[i].name = s;
            n++;
        }
    return n > 0 ? 0 : no_match(e, "node or tensor", e->key);
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

static int
apply_remove_node(struct smlp__graph_ir *ir, const struct edit *e)
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
        node_free(node);
        memmove(node, node + 1,
                (size_t)(ir->n_nodes - i - 1) * sizeof(*node));
        ir->n_nodes--;
        n++;
    }
    return n > 0 ? 0 : no_match(e, "node", e->glob);
}

static int
apply_drop_input(struct smlp__graph_ir *ir, const struct edit *e)
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
    return n > 0 ? 0 : no_match(e, "node", e->glob);
}

static int
apply_set_shape(struct smlp__graph_ir *ir, const struct edit *e)
{
    int64_t *dims = NULL;
    size_t n_dims = 0, d;
    int32_t i;
    int n = 0, none = strcmp(e->value, "none") == 0;

    if (!none && (parse_list(e->value, &dims, NULL, &n_dims) != 0 ||
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
    return n > 0 ? 0 : no_match(e, "tensor", e->glob);
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

static int
apply_set_init(struct smlp__graph_ir *ir, const struct edit *e)
{
    static const char *const kinds[] = {"zeros", "ones", "constant",
                                        "uniform", "normal"};
    static const int n_args[] = {0, 0, 1, 2, 2};
    char *spec = xstrdup(e->value), *args, *at;
    double v[2] = {0.0, 0.0}, *floats = NULL, bound;
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
         (args != NULL && (parse_list(args, NULL, &floats, &n) != 0 ||
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
        matched++;
        if (none) {
            memset(&t->init, 0, sizeof(t->init));
            continue;
        }
        if (!t->init.present)
            t->init.seed = fnv1a64(t->name);
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
    rc = matched > 0 ? 0 : no_match(e, "tensor", e->glob);
out:
    free(floats);
    free(spec);
    return rc;
}

static int
apply_meta(struct smlp__graph_ir *ir, const struct edit *e)
{
    int32_t i;

    for (i = 0; i < ir->n_meta; i++)
        if (strcmp(ir->meta[i].key, e->key) == 0)
            break;
    if (e->kind == EDIT_DEL_META) {
        if (i == ir->n_meta)
            return no_match(e, "metadata key", e->key);
        free(ir->meta[i].key);
        free(ir->meta[i].value);
        memmove(&ir->meta[i], &ir->meta[i + 1],
                (size_t)(ir->n_meta - i - 1) * sizeof(*ir->meta));
        ir->n_meta--;
        return 0;
    }
    if (i == ir->n_meta) {
        ir->meta = xrealloc(ir->meta,
                            (size_t)(ir->n_meta + 1) * sizeof(*ir->meta));
        ir->meta[i].key = xstrdup(e->key);
        ir->meta[i].value = NULL;
        ir->n_meta++;
    }
    free(ir->meta[i].value);
    ir->meta[i].value = xstrdup(e->value);
    return 0;
}

static int
apply_edit(struct smlp__graph_ir *ir, const struct edit *e,
           smlp_registry_t *reg)
{
    switch (e->kind) {
    case EDIT_SET_OP: return apply_set_op(ir, e, reg);
    case EDIT_SET_ATTR: return apply_set_attr(ir, e);
    case EDIT_DEL_ATTR: return apply_del_attr(ir, e);
    case EDIT_RENAME: return apply_rename(ir, e);
    case EDIT_REMOVE_NODE: return apply_remove_node(ir, e);
    case EDIT_DROP_INPUT: return apply_drop_input(ir, e);
    case EDIT_SET_SHAPE: return apply_set_shape(ir, e);
    case EDIT_SET_INIT: return apply_set_init(ir, e);
    case EDIT_NAME:
        free(ir->name);
        ir->name = xstrdup(e->value);
        return 0;
    case EDIT_SET_META:
    case EDIT_DEL_META: return apply_meta(ir, e);
    }
    return -1;
}

/* ---- pruning ------------------------------------------------------------ */

/* Lists up to 4 names of what was removed, for the note. */
static void
note_removed(const char *what, char **names, int n)
{
    char list[400] = "";
    size_t used = 0;
    int i;

    for (i = 0; i < n && i < 4; i++)
        used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s",
                                 i ? ", " : "", names[i]);
    sg_note("removed %d %s no node uses: %s%s (--keep-unused keeps them)",
            n, what, list, n > 4 ? ", ..." : "");
}

/*
 * Removes tensors no node reads or writes (graph inputs and outputs
 * stay) and plugins no node's op belongs to; renumbers node indices.
 */
static void
prune(struct smlp__graph_ir *ir)
{
    int32_t *map, i, j, kept = 0;
    char **gone;
    int n_gone = 0;

    map = xrealloc(NULL, ((size_t)ir->n_tensors + 1) * sizeof(*map));
    gone = xrealloc(NULL, ((size_t)ir->n_tensors + ir->n_plugins + 1) *
                              sizeof(*gone));
    for (i = 0; i < ir->n_tensors; i++)
        map[i] = -1;
    for (i = 0; i < ir->n_nodes; i++) {
        for (j = 0; j < ir->nodes[i].n_inputs; j++)
            if (ir->nodes[i].inputs[j] >= 0)
                map[ir->nodes[i].inputs[j]] = 0;
        for (j = 0; j < ir->nodes[i].n_outputs; j++)
            map[ir->nodes[i].outputs[j]] = 0;
    }
    for (i = 0; i < ir->n_tensors; i++) {
        struct smlp__tensor_ir *t = &ir->tensors[i];

        if (map[i] < 0 && t->kind != SMLP__TENSOR_INPUT &&
            t->kind != SMLP__TENSOR_OUTPUT) {
            gone[n_gone++] = t->name;
            continue;
        }
        map[i] = kept;
        ir->tensors[kept++] = *t;
    }
    if (n_gone > 0) {
        note_removed(n_gone == 1 ? "tensor" : "tensors", gone, n_gone);
        for (i = 0; i < n_gone; i++)
            free(gone[i]);
    }
    ir->n_tensors = kept;
    for (i = 0; i < ir->n_nodes; i++) {
        for (j = 0; j < ir->nodes[i].n_inputs; j++)
            if (ir->nodes[i].inputs[j] >= 0)
                ir->nodes[i].inputs[j] = map[ir->nodes[i].inputs[j]];
        for (j = 0; j < ir->nodes[i].n_outputs; j++)
            ir->nodes[i].outputs[j] = map[ir->nodes[i].outputs[j]];
    }
    n_gone = 0;
    kept = 0;
    for (i = 0; i < ir->n_plugins; i++) {
        size_t len = strlen(ir->plugins[i]);

        for (j = 0; j < ir->n_nodes; j++)
            if (strncmp(ir->nodes[j].op, ir->plugins[i], len) == 0 &&
                ir->nodes[j].op[len] == '.')
                break;
        if (j == ir->n_nodes)
            gone[n_gone++] = ir->plugins[i];
        else
            ir->plugins[kept++] = ir->plugins[i];
    }
    if (n_gone > 0) {
        note_removed(n_gone == 1 ? "plugin" : "plugins", gone, n_gone);
        for (i = 0; i < n_gone; i++)
            free(gone[i]);
    }
    ir->n_plugins = kept;
    free(gone);
    free(map);
}

/* ---- the command -------------------------------------------------------- */

static void
edit_usage(FILE *f)
{
    fprintf(f,
"usage: smlp-graph edit GRAPH -o OUT [options] EDITS...\n"
"Applies the edits in their order, removes tensors and plugins no node\n"
"uses any more, verifies the result (format, names, writers, cycles;\n"
"plugins, kernels and shapes for --batch) and writes OUT atomically.\n"
"Nothing is written when an edit or the verification fails.  GLOBs are\n"
"shell patterns ('*' also matches '.'); quote them.\n"
"\n"
"edits:\n"
"  --set-op [NODE_GLOB:]OLD=NEW    nodes whose op matches the glob OLD get\n"
"                                  op NEW (its plugin is added to the\n"
"                                  graph); inputs beyond what NEW takes are\n"
"                                  dropped, with a note\n"
"  --set-attr NODE_GLOB:NAME[:TYPE]=VALUE\n"
"                                  set (or add) an attribute; TYPE int,\n"
"                                  float, string, ints or floats (default:\n"
"                                  the attribute's own, or from VALUE);\n"
"                                  lists as 1,2,3\n"
"  --del-attr NODE_GLOB:NAME[,NAME...]\n"
"                                  remove attributes\n"
"  --rename OLD=NEW                rename a node and/or tensor; OLD*=NEW*\n"
"                                  renames every name with prefix OLD\n"
"  --remove-node NODE_GLOB         remove nodes; readers of a node's\n"
"                                  output 0 read its input 0 instead (a\n"
"                                  pass-through); its parameters go too\n"
"  --drop-input NODE_GLOB:INDEX    remove input INDEX of nodes\n"
"  --set-shape TENSOR_GLOB=D0,D1,...|none\n"
"                                  set a declared shape (-1 = batch)\n"
"  --set-init TENSOR_GLOB=SPEC[@SEED]\n"
"                                  zeros, ones, constant:A, uniform:A,B,\n"
"                                  normal:MEAN,STD, xavier (uniform with\n"
"                                  the Glorot bound of the shape) or none;\n"
"                                  the seed is kept (new: FNV-1a of the\n"
"                                  name) unless @SEED is given\n"
"  --name NAME                     the graph's name\n"
"  --set-meta KEY=VALUE, --del-meta KEY\n"
"                                  metadata\n"
"\n"
"options:\n"
"  -o, --output OUT    the file to write (may be GRAPH itself)\n"
"  --batch N           batch size for the shape check (default 1)\n"
"  --plugin-path DIRS  colon-separated plugin directories searched first\n"
"  --no-infer          skip plugins and shape inference (graphs whose\n"
"                      plugins are not at hand); --set-op then keeps inputs\n"
"  --keep-unused       keep tensors and plugins no node uses\n"
"  -n, --dry-run       verify, but write nothing\n"
"  --help\n"
"\n"
"example: the positional-priority ablation of Sparse-MLP-B\n"
"  smlp-graph edit graphs/sparse_mlp_b.fbs -o topk.fbs \\\n"
"      --set-op moe.gate.importance=moe.gate.topk\n"
"More recipes (every ablation graph): docs/graphs.md.\n");
}

static void
edits_free(struct edit_opts *o)
{
    int i;

    for (i = 0; i < o->n_edits; i++) {
        free(o->edits[i].glob);
        free(o->edits[i].key);
        free(o->edits[i].value);
    }
    free(o->edits);
}

static int
parse_args(int argc, char **argv, struct edit_opts *o)
{
    enum { OPT_PLUGIN_PATH = 256, OPT_BATCH, OPT_NO_INFER, OPT_KEEP };
    static const struct option longopts[] = {
        {"set-op", required_argument, NULL, 1000 + EDIT_SET_OP},
        {"set-attr", required_argument, NULL, 1000 + EDIT_SET_ATTR},
        {"del-attr", required_argument, NULL, 1000 + EDIT_DEL_ATTR},
        {"rename", required_argument, NULL, 1000 + EDIT_RENAME},
        {"remove-node", required_argument, NULL, 1000 + EDIT_REMOVE_NODE},
        {"drop-input", required_argument, NULL, 1000 + EDIT_DROP_INPUT},
        {"set-shape", required_argument, NULL, 1000 + EDIT_SET_SHAPE},
        {"set-init", required_argument, NULL, 1000 + EDIT_SET_INIT},
        {"name", required_argument, NULL, 1000 + EDIT_NAME},
        {"set-meta", required_argument, NULL, 1000 + EDIT_SET_META},
        {"del-meta", required_argument, NULL, 1000 + EDIT_DEL_META},
        {"output", required_argument, NULL, 'o'},
        {"plugin-path", required_argument, NULL, OPT_PLUGIN_PATH},
        {"batch", required_argument, NULL, OPT_BATCH},
        {"no-infer", no_argument, NULL, OPT_NO_INFER},
        {"keep-unused", no_argument, NULL, OPT_KEEP},
        {"dry-run", no_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    struct edit *e;
    int c;

    memset(o, 0, sizeof(*o));
    o->batch = 1;
    while ((c = getopt_long(argc, argv, "o:nh", longopts, NULL)) != -1) {
        if (c >= 1000 && c < 1000 + EDIT_KIND_COUNT) {
            o->edits = xrealloc(o->edits, (size_t)(o->n_edits + 1) *
                                              sizeof(*o->edits));
            e = &o->edits[o->n_edits++];
            memset(e, 0, sizeof(*e));
            e->kind = c - 1000;
            e->spec = optarg;
            if (parse_edit(e) != 0)
                return SG_USAGE_ERR;
            continue;
        }
        switch (c) {
        case 'o': o->output = optarg; break;
        case 'n': o->dry_run = 1; break;
        case OPT_PLUGIN_PATH: o->plugin_path = optarg; break;
        case OPT_NO_INFER: o->no_infer = 1; break;
        case OPT_KEEP: o->keep_unused = 1; break;
        case OPT_BATCH:
            if (sg_parse_int("--batch", optarg, 1, INT64_C(1) << 31,
                             &o->batch) != 0)
                return SG_USAGE_ERR;
            break;
        case 'h': edit_usage(stdout); return SG_HELP_DONE;
        default: return sg_bad_option(argv, "o:nh");
        }
    }
    if (sg_operands(argc, 1, "edit GRAPH -o OUT EDITS...") != 0)
        return SG_USAGE_ERR;
    o->input = argv[optind];
    if (o->output == NULL && !o->dry_run) {
        sg_error("no output file: give -o OUT (or --dry-run)");
        return SG_USAGE_ERR;
    }
    return 0;
}

/* Encodes ir, loads it back through the runtime's checks and (with reg)
 * plans it.  Returns the encoded bytes, or NULL after a message. */
static uint8_t *
verify(const struct smlp__graph_ir *ir, const struct edit_opts *o,
       smlp_registry_t *reg, size_t *len)
{
    struct smlp_session_opts so;
    struct smlp_error err;
    smlp_graph_t *g;
    smlp_session_t *s;
    uint8_t *buf = NULL;
    char msg[1024];
    const char *what = o->output ? o->output : o->input;

    if (smlp__graph_ir_encode(ir, &buf, len, msg, sizeof(msg)) != SMLP_OK) {
        sg_error("%s; nothing written", msg);
        return NULL;
    }
    g = smlp_graph_load_buffer(buf, *len, what, &err);
    if (g == NULL) {
        sg_error("the edited graph is not valid: %s; nothing written",
                 err.msg);
        free(buf);
        return NULL;
    }
    if (reg != NULL) {
        smlp_session_opts_init(&so);
        so.batch = o->batch;
        so.threads = 1;
        so.plan_only = 1;
        s = smlp_session_create(g, reg, &so, &err);
        if (s == NULL) {
            sg_error("the edited graph does not check: %s; nothing written",
                     err.msg);
            smlp_graph_unload(g);
            free(buf);
            return NULL;
        }
        smlp_session_destroy(s);
        sg_lint_attrs(ir, reg);
    }
    smlp_graph_unload(g);
    return buf;
}

int
sg_edit_main(int argc, char **argv)
{
    struct edit_opts o;
    struct sg_graph g;
    struct smlp_error err;
    smlp_registry_t *reg = NULL;
    uint8_t *out = NULL;
    size_t len = 0;
    int i, rc, status = SG_EXIT_FAIL;

    rc = parse_args(argc, argv, &o);
    if (rc != 0) {
        edits_free(&o);
        return rc == SG_HELP_DONE ? SG_EXIT_OK : rc;
    }
    if (sg_graph_open(&g, o.input, 0) != 0) {
        edits_free(&o);
        return SG_EXIT_FAIL;
    }
    if (!o.no_infer) {
        reg = smlp_registry_create(o.plugin_path, &err);
        if (reg == NULL) {
            sg_error("%s", err.msg);
            goto out;
        }
    }
    for (i = 0; i < o.n_edits; i++)
        if (apply_edit(g.ir, &o.edits[i], reg) != 0)
            goto out;
    if (!o.keep_unused)
        prune(g.ir);
    out = verify(g.ir, &o, reg, &len);
    if (out == NULL)
        goto out;
    if (!o.dry_run && sg_write_atomic(o.output, out, len, NULL, NULL) != 0)
        goto out;
    printf("%s %s: graph %s, %d nodes, %d tensors, %d edit%s%s\n",
           o.dry_run ? "checked" : "wrote", o.dry_run ? o.input : o.output,
           g.ir->name, (int)g.ir->n_nodes, (int)g.ir->n_tensors, o.n_edits,
           o.n_edits == 1 ? "" : "s",
           o.no_infer ? " (not checked against plugins: --no-infer)" : "");
    status = SG_EXIT_OK;
out:
    free(out);
    smlp_registry_destroy(reg);
    sg_graph_close(&g);
    edits_free(&o);
    return status;
}
