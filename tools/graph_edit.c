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
 *     also drops its router weight, which is then pruned;
 *   - --clone-block puts the copy's nodes and tensors where the replaced
 *     block's were, in the source block's order, and --sum-tensors puts
 *     its chain at the end, as gen_graphs.py lays out a sparse block and
 *     aux_loss; the copy's initializers get FNV-1a of their new names.
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
    EDIT_CLONE_BLOCK,
    EDIT_SUM_TENSORS,
    EDIT_KIND_COUNT
};

static const char *const edit_opt[] = {
    "--set-op",   "--set-attr",  "--del-attr",  "--rename",
    "--remove-node", "--drop-input", "--set-shape", "--set-init",
    "--name",     "--set-meta",  "--del-meta",  "--clone-block",
    "--sum-tensors",
};

_Static_assert(sizeof(edit_opt) / sizeof(edit_opt[0]) == EDIT_KIND_COUNT,
               "an option name per edit kind");

/* One edit, parsed from its option's argument (spec). */
struct edit {
    int kind;
    const char *spec;
    char *glob;  /* node or tensor glob (set-op: NULL = every node) */
    char *key;   /* op glob, attribute name(s), old name, meta key,
                    clone-block SRC, sum-tensors node prefix (or NULL) */
    char *value; /* new op, attribute value, new name, meta value,
                    clone-block DST, sum-tensors output */
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

/*
 * Block prefixes of --clone-block SRC=DST: a block is the nodes named
 * PREFIX or PREFIX.*, so the prefix is a name (a trailing '.' is
 * dropped), not a glob; SRC and DST must be different blocks, neither
 * inside the other.
 */
static int
parse_clone_block(struct edit *e)
{
    char **side[2];
    size_t len, k;
    int i;

    if (split(e->spec, '=', &e->key, &e->value) != 0 || !*e->value)
        return bad_spec(e, "SRC=DST, two block prefixes, e.g. "
                           "blocks.10=blocks.8");
    side[0] = &e->key;
    side[1] = &e->value;
    for (i = 0; i < 2; i++) {
        len = strlen(*side[i]);
        if (len > 0 && (*side[i])[len - 1] == '.')
            (*side[i])[--len] = '\0';
        if (len == 0 || strpbrk(*side[i], "*?[]") != NULL)
            return bad_spec(e, "SRC=DST as block prefixes (names such as "
                               "blocks.8, not globs)");
    }
    if (strcmp(e->key, e->value) == 0) {
        sg_error("%s '%s': SRC and DST are the same block '%s'; a block "
                 "cannot replace itself",
                 edit_opt[e->kind], e->spec, e->key);
        return -1;
    }
    for (i = 0; i < 2; i++) {
        const char *a = *side[i], *b = *side[1 - i];

        k = strlen(a);
        if (strncmp(a, b, k) == 0 && b[k] == '.') {
            sg_error("%s '%s': the blocks overlap: '%s' is inside '%s' "
                     "(give two separate blocks, e.g. blocks.10=blocks.8)",
                     edit_opt[e->kind], e->spec, b, a);
            return -1;
        }
    }
    return 0;
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
    case EDIT_CLONE_BLOCK:
        return parse_clone_block(e);
    case EDIT_SUM_TENSORS:
        if (split(e->spec, '=', &left, &e->value) != 0 || !*e->value)
            return bad_spec(e, "[NODE_PREFIX:]TENSOR_GLOB=OUT, e.g. "
                               "'aux_sum:*.gate.aux=aux_loss'");
        p = strchr(left, ':');
        if (p != NULL) {
            e->key = xstrndup(left, (size_t)(p - left));
            e->glob = xstrdup(p + 1);
            free(left);
        } else {
            e->glob = left;
        }
        if ((e->key != NULL && !*e->key) || !*e->glob)
            return bad_spec(e, "[NODE_PREFIX:]TENSOR_GLOB=OUT with a "
                               "non-empty NODE_PREFIX and TENSOR_GLOB");
        return 0;
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

/* ---- --clone-block and --sum-tensors ------------------------------------ */

/* Nonzero when name is `prefix` or starts with `prefix` + '.'. */
static int
in_block(const char *name, const char *prefix, size_t len)
{
    return strncmp(name, prefix, len) == 0 &&
           (name[len] == '\0' || name[len] == '.');
}

/* How a block (the nodes named PREFIX or PREFIX.*) uses each tensor. */
enum {
    USE_READ_IN = 1,   /* read by a node of the block */
    USE_WRITE_IN = 2,  /* written by a node of the block */
    USE_READ_OUT = 4,  /* read by a node outside it */
    USE_WRITE_OUT = 8, /* written by a node outside it */
    USE_ENTRY = 16,    /* read from outside: the block's input */
    USE_OWNED = 32     /* the block's own: goes and comes with it */
};

struct block {
    const char *prefix;
    size_t len;
    uint8_t *in;      /* per node: 1 in the block */
    uint8_t *use;     /* per tensor: USE_* bits */
    int32_t n_nodes;  /* nodes in the block */
    int32_t first;    /* the first of them */
    int32_t *entries; /* USE_ENTRY tensors, in order of first use */
    int32_t n_entries;
};

static void
block_free(struct block *b)
{
    free(b->in);
    free(b->use);
    free(b->entries);
}

/*
 * Sorts every tensor the block uses into its entries (read by the block
 * and written outside it, or named outside the block, or a graph input:
 * what it reads from the rest of the graph) and the tensors it owns (the
 * rest: its parameters, activations and outputs).
 */
static void
block_scan(const struct smlp__graph_ir *ir, const char *prefix,
           struct block *b)
{
    int32_t i, j, k, t;

    memset(b, 0, sizeof(*b));
    b->prefix = prefix;
    b->len = strlen(prefix);
    b->first = -1;
    b->in = xrealloc(NULL, (size_t)ir->n_nodes + 1);
    b->use = xrealloc(NULL, (size_t)ir->n_tensors + 1);
    b->entries = xrealloc(NULL, ((size_t)ir->n_tensors + 1) *
                                    sizeof(*b->entries));
    memset(b->use, 0, (size_t)ir->n_tensors + 1);
    for (i = 0; i < ir->n_nodes; i++) {
        const struct smlp__node_ir *n = &ir->nodes[i];
        int in = in_block(n->name, prefix, b->len);

        b->in[i] = (uint8_t)in;
        if (in && b->n_nodes++ == 0)
            b->first = i;
        for (j = 0; j < n->n_inputs; j++)
            if (n->inputs[j] >= 0)
                b->use[n->inputs[j]] |= in ? USE_READ_IN : USE_READ_OUT;
        for (j = 0; j < n->n_outputs; j++)
            b->use[n->outputs[j]] |= in ? USE_WRITE_IN : USE_WRITE_OUT;
    }
    for (t = 0; t < ir->n_tensors; t++) {
        uint8_t u = b->use[t];

        if (!(u & (USE_READ_IN | USE_WRITE_IN)))
            continue;
        if ((u & USE_READ_IN) && !(u & USE_WRITE_IN) &&
            (!in_block(ir->tensors[t].name, prefix, b->len) ||
             (u & USE_WRITE_OUT) ||
             ir->tensors[t].kind == SMLP__TENSOR_INPUT))
            b->use[t] |= USE_ENTRY;
        else
            b->use[t] |= USE_OWNED;
    }
    for (i = 0; i < ir->n_nodes; i++) {
        const struct smlp__node_ir *n = &ir->nodes[i];

        if (!b->in[i])
            continue;
        for (j = 0; j < n->n_inputs; j++) {
            t = n->inputs[j];
            if (t < 0 || !(b->use[t] & USE_ENTRY))
                continue;
            for (k = 0; k < b->n_entries && b->entries[k] != t; k++)
                ;
            if (k == b->n_entries)
                b->entries[b->n_entries++] = t;
        }
    }
}

/* "a, b, c" (at most 4, then ", ...") of the tensors list[0..n) into buf. */
static const char *
tensor_list(const struct smlp__graph_ir *ir, const int32_t *list, int32_t n,
            char *buf, size_t len)
{
    size_t used = 0;
    int32_t i;

    buf[0] = '\0';
    for (i = 0; i < n && i < 4 && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s'%s'",
                                 i ? ", " : "", ir->tensors[list[i]].name);
    if (n > 4 && used < len)
        snprintf(buf + used, len - used, ", ...");
    return buf;
}

static void
attrs_copy(struct smlp__node_ir *to, const struct smlp__node_ir *from)
{
    int32_t i;

    to->n_attrs = from->n_attrs;
    to->attrs = xrealloc(NULL, ((size_t)from->n_attrs + 1) *
                                   sizeof(*to->attrs));
    for (i = 0; i < from->n_attrs; i++) {
        const struct smlp__attr_ir *a = &from->attrs[i];
        struct smlp__attr_ir *b = &to->attrs[i];

        *b = *a;
        b->name = xstrdup(a->name);
        b->s = a->s != NULL ? xstrdup(a->s) : NULL;
        b->ints = NULL;
        b->floats = NULL;
        if (a->ints != NULL) {
            b->ints = xrealloc(NULL, (a->n_values + 1) * sizeof(*b->ints));
            memcpy(b->ints, a->ints, a->n_values * sizeof(*b->ints));
        }
        if (a->floats != NULL) {
            b->floats = xrealloc(NULL,
                                 (a->n_values + 1) * sizeof(*b->floats));
            memcpy(b->floats, a->floats, a->n_values * sizeof(*b->floats));
        }
    }
}

/*
 * --clone-block SRC=DST: DST's nodes and the tensors it owns go; a copy
 * of SRC's nodes and owned tensors, renamed SRC -> DST, takes their place
 * (nodes where DST's first node was, tensors where DST's first owned
 * tensor was, in SRC's order).  The copy reads DST's entries where SRC
 * read its own (paired in order of first use); nodes outside DST that
 * read one of DST's tensors read the copy's tensor of the same name, or,
 * for DST's only such tensor without one, the copy's exit (the one
 * activation SRC writes for nodes outside it).  Initializers keep their
 * kind and bounds and are seeded with FNV-1a of their new names.
 */
static int
apply_clone_block(struct smlp__graph_ir *ir, const struct edit *e)
{
    struct block src, dst;
    int32_t n_t = ir->n_tensors, n_clone = 0, n_unmatched = 0, n_exit = 0;
    int32_t n_outputs = 0, i, j, k, t, *clone_t = NULL, *clone_of = NULL;
    int32_t *redirect = NULL, *map = NULL, *unmatched = NULL, *exits = NULL;
    int32_t *outputs = NULL, kept, at;
    struct smlp__tensor_ir *tensors = NULL;
    struct smlp__node_ir *nodes = NULL, *copy = NULL;
    char **names = NULL, list[512], list2[512];
    size_t dlen = strlen(e->value);
    int rc = -1;

    block_scan(ir, e->key, &src);
    block_scan(ir, e->value, &dst);
    for (i = 0; i < 2; i++) {
        const struct block *b = i ? &dst : &src;

        if (b->n_nodes == 0) {
            sg_error("%s '%s': no node is in block '%s' (%s: no node is "
                     "named '%s' or '%s.*')",
                     edit_opt[e->kind], e->spec, b->prefix,
                     i ? "DST" : "SRC", b->prefix, b->prefix);
            goto out;
        }
    }
    if (src.n_entries != dst.n_entries) {
        sg_error("%s '%s': '%s' reads %d tensor%s from outside it (%s), "
                 "'%s' reads %d (%s); the copy would have nothing to read "
                 "in their place",
                 edit_opt[e->kind], e->spec, src.prefix,
                 (int)src.n_entries, src.n_entries == 1 ? "" : "s",
                 tensor_list(ir, src.entries, src.n_entries, list,
                             sizeof(list)),
                 dst.prefix, (int)dst.n_entries,
                 tensor_list(ir, dst.entries, dst.n_entries, list2,
                             sizeof(list2)));
        goto out;
    }

    /* The copy's tensors: SRC's own, in tensor order, renamed. */
    clone_t = xrealloc(NULL, ((size_t)n_t + 1) * sizeof(*clone_t));
    clone_of = xrealloc(NULL, ((size_t)n_t + 1) * sizeof(*clone_of));
    names = xrealloc(NULL, ((size_t)n_t + 1) * sizeof(*names));
    for (t = 0; t < n_t; t++) {
        clone_of[t] = -1;
        if (!(src.use[t] & USE_OWNED))
            continue;
        if (!in_block(ir->tensors[t].name, src.prefix, src.len)) {
            sg_error("%s '%s': block '%s' writes tensor '%s', whose name "
                     "is not in the block; the copy would write a second "
                     "'%s'",
                     edit_opt[e->kind], e->spec, src.prefix,
                     ir->tensors[t].name, ir->tensors[t].name);
            goto out;
        }
        clone_of[t] = n_clone;
        clone_t[n_clone] = t;
        names[n_clone++] = prefix_rename(ir->tensors[t].name, src.prefix,
                                         src.len, e->value, dlen);
    }
    for (k = 0; k < n_clone; k++) {
        t = find_tensor(ir, names[k]);
        if (t >= 0 && !(dst.use[t] & USE_OWNED)) {
            sg_error("%s '%s': the copy of '%s' would be named '%s', and "
                     "a tensor outside block '%s' has that name",
                     edit_opt[e->kind], e->spec,
                     ir->tensors[clone_t[k]].name, names[k], dst.prefix);
            goto out;
        }
    }
    for (i = 0; i < ir->n_nodes; i++) {
        char *name;

        if (!src.in[i])
            continue;
        name = prefix_rename(ir->nodes[i].name, src.prefix, src.len,
                             e->value, dlen);
        j = find_node(ir, name);
        if (j >= 0 && !dst.in[j]) {
            sg_error("%s '%s': the copy of node '%s' would be named '%s', "
                     "and a node outside block '%s' has that name",
                     edit_opt[e->kind], e->spec, ir->nodes[i].name, name,
                     dst.prefix);
            free(name);
            goto out;
        }
        free(name);
    }

    /* Readers outside DST of DST's tensors: the copy's tensor of the same
     * name, else the copy's exit.  Indices >= n_t are the copy's. */
    redirect = xrealloc(NULL, ((size_t)n_t + 1) * sizeof(*redirect));
    unmatched = xrealloc(NULL, ((size_t)n_t + 1) * sizeof(*unmatched));
    exits = xrealloc(NULL, ((size_t)n_t + 1) * sizeof(*exits));
    for (t = 0; t < n_t; t++) {
        redirect[t] = t;
        if (!(dst.use[t] & USE_OWNED) || !(dst.use[t] & USE_READ_OUT))
            continue;
        for (k = 0; k < n_clone; k++)
            if (strcmp(names[k], ir->tensors[t].name) == 0)
                break;
        if (k < n_clone)
            redirect[t] = n_t + k;
        else
            unmatched[n_unmatched++] = t;
    }
    for (t = 0; t < n_t; t++)
        if ((src.use[t] & (USE_OWNED | USE_WRITE_IN | USE_READ_OUT)) ==
                (USE_OWNED | USE_WRITE_IN | USE_READ_OUT) &&
            ir->tensors[t].kind == SMLP__TENSOR_ACTIVATION)
            exits[n_exit++] = t;
    if (n_unmatched == 1 && n_exit == 1) {
        redirect[unmatched[0]] = n_t + clone_of[exits[0]];
    } else if (n_unmatched > 0) {
        int32_t r = -1;

        for (i = 0; i < ir->n_nodes && r < 0; i++)
            for (j = 0; !dst.in[i] && j < ir->nodes[i].n_inputs; j++)
                if (ir->nodes[i].inputs[j] == unmatched[0])
                    r = i;
        sg_error("%s '%s': node '%s' reads '%s' of block '%s', and the "
                 "copy of '%s' has no tensor of that name%s; if that node "
                 "sums outputs of '%s', rebuild the sum without them "
                 "first (--sum-tensors)",
                 edit_opt[e->kind], e->spec,
                 r >= 0 ? ir->nodes[r].name : "?",
                 ir->tensors[unmatched[0]].name, dst.prefix, src.prefix,
                 n_unmatched == 1 ? " nor a single exit to take its place"
                                  : "",
                 dst.prefix);
        goto out;
    }

    /* The new tensors: DST's own go, the copy's come at the first of
     * them.  map: old index (or n_t + copy index) -> new index. */
    map = xrealloc(NULL, ((size_t)n_t + n_clone + 1) * sizeof(*map));
    tensors = xrealloc(NULL, ((size_t)n_t + n_clone + 1) * sizeof(*tensors));
    outputs = xrealloc(NULL, ((size_t)n_clone + 1) * sizeof(*outputs));
    kept = 0;
    at = -1;
    for (t = 0; t <= n_t; t++) {
        if (at < 0 && (t == n_t || (dst.use[t] & USE_OWNED))) {
            at = kept;
            for (k = 0; k < n_clone; k++) {
                struct smlp__tensor_ir *c = &tensors[kept];

                *c = ir->tensors[clone_t[k]];
                c->name = names[k];
                names[k] = NULL;
                if (c->init.present)
                    c->init.seed = fnv1a64(c->name);
                if (c->kind == SMLP__TENSOR_OUTPUT)
                    outputs[n_outputs++] = kept;
                map[n_t + k] = kept++;
            }
        }
        if (t == n_t)
            break;
        if (dst.use[t] & USE_OWNED) {
            map[t] = -1;
            free(ir->tensors[t].name);
            continue;
        }
        map[t] = kept;
        tensors[kept++] = ir->tensors[t];
    }
    free(ir->tensors);
    ir->tensors = tensors;
    ir->n_tensors = kept;
    tensors = NULL;

    /* The copy's nodes (from SRC's, which still hold old indices),
     * then the new node list: the copy where DST's first node was. */
    copy = xrealloc(NULL, ((size_t)src.n_nodes + 1) * sizeof(*copy));
    for (i = 0, kept = 0; i < ir->n_nodes; i++) {
        const struct smlp__node_ir *s = &ir->nodes[i];
        struct smlp__node_ir *c;

        if (!src.in[i])
            continue;
        c = &copy[kept++];
        memset(c, 0, sizeof(*c));
        c->name = prefix_rename(s->name, src.prefix, src.len, e->value,
                                dlen);
        c->op = xstrdup(s->op);
        c->n_inputs = s->n_inputs;
        c->inputs = xrealloc(NULL, ((size_t)s->n_inputs + 1) *
                                       sizeof(*c->inputs));
        for (k = 0; k < s->n_inputs; k++) {
            int32_t m = 0;

            t = s->inputs[k];
            if (t < 0) {
                c->inputs[k] = -1;
            } else if (src.use[t] & USE_ENTRY) {
                while (src.entries[m] != t)
                    m++;
                c->inputs[k] = map[dst.entries[m]];
            } else {
                c->inputs[k] = map[n_t + clone_of[t]];
            }
        }
        c->n_outputs = s->n_outputs;
        c->outputs = xrealloc(NULL, ((size_t)s->n_outputs + 1) *
                                        sizeof(*c->outputs));
        for (k = 0; k < s->n_outputs; k++)
            c->outputs[k] = map[n_t + clone_of[s->outputs[k]]];
        attrs_copy(c, s);
    }
    nodes = xrealloc(NULL, ((size_t)ir->n_nodes - dst.n_nodes + src.n_nodes +
                            1) * sizeof(*nodes));
    for (i = 0, kept = 0; i < ir->n_nodes; i++) {
        struct smlp__node_ir *n = &ir->nodes[i];

        if (i == dst.first) {
            memcpy(&nodes[kept], copy, (size_t)src.n_nodes * sizeof(*copy));
            kept += src.n_nodes;
        }
        if (dst.in[i]) {
            node_free(n);
            continue;
        }
        for (j = 0; j < n->n_inputs; j++)
            if (n->inputs[j] >= 0)
                n->inputs[j] = map[redirect[n->inputs[j]]];
        for (j = 0; j < n->n_outputs; j++)
            n->outputs[j] = map[n->outputs[j]];
        nodes[kept++] = *n;
    }
    free(ir->nodes);
    ir->nodes = nodes;
    ir->n_nodes = kept;
    if (n_outputs > 0)
        sg_note("the copy of '%s' adds %d graph output%s: %s",
                src.prefix, (int)n_outputs, n_outputs == 1 ? "" : "s",
                tensor_list(ir, outputs, n_outputs, list, sizeof(list)));
    rc = 0;
out:
    if (names != NULL)
        for (k = 0; k < n_clone; k++)
            free(names[k]);
    free(names);
    free(clone_t);
    free(clone_of);
    free(redirect);
    free(unmatched);
    free(exits);
    free(map);
    free(outputs);
    free(copy);
    block_free(&src);
    block_free(&dst);
    return rc;
}

/* Nonzero when name is prefix + "." + a decimal number. */
static int
chain_node(const char *name, const char *prefix, size_t len)
{
    const char *p = name + len + 1;

    if (strncmp(name, prefix, len) != 0 || name[len] != '.' || *p == '\0')
        return 0;
    return strspn(p, "0123456789") == strlen(p);
}

/*
 * --sum-tensors [NODE_PREFIX:]TENSOR_GLOB=OUT: OUT (a graph output) is
 * the sum of the tensors matching the glob, in tensor order, by a chain
 * of core.add nodes NODE_PREFIX.0, NODE_PREFIX.1, ... writing
 * NODE_PREFIX.N.out and, the last, OUT (the layout of gen_graphs.py's
 * aux_loss).  An existing chain (nodes NODE_PREFIX.N) is removed with the
 * tensors it writes; readers of the old OUT read the new one.  The chain
 * and its tensors go at the end of the graph.  Without NODE_PREFIX, the
 * chain that writes OUT now names it.
 */
static int
apply_sum_tensors(struct smlp__graph_ir *ir, const struct edit *e)
{
    int32_t n_t = ir->n_tensors, i, j, t, out = -1, writer = -1, n_sum = 0;
    int32_t *sum = NULL, *map = NULL, kept, first_new;
    uint8_t *old = NULL, *gone = NULL;
    char *prefix = NULL, *name = NULL;
    size_t plen, nlen;
    int rc = -1;

    out = find_tensor(ir, e->value);
    if (out >= 0)
        for (i = 0; i < ir->n_nodes && writer < 0; i++)
            for (j = 0; j < ir->nodes[i].n_outputs; j++)
                if (ir->nodes[i].outputs[j] == out)
                    writer = i;
    if (e->key != NULL) {
        prefix = xstrdup(e->key);
    } else {
        const char *dot = writer >= 0 ? strrchr(ir->nodes[writer].name, '.')
                                      : NULL;

        if (dot == NULL || dot == ir->nodes[writer].name ||
            !chain_node(ir->nodes[writer].name, ir->nodes[writer].name,
                        (size_t)(dot - ir->nodes[writer].name))) {
            sg_error("%s '%s': %s; give the chain's NODE_PREFIX "
                     "(NODE_PREFIX:TENSOR_GLOB=OUT makes nodes "
                     "NODE_PREFIX.0, NODE_PREFIX.1, ...)",
                     edit_opt[e->kind], e->spec,
                     out < 0 ? "there is no tensor of that name yet"
                             : "no sum chain (nodes PREFIX.0, PREFIX.1, "
                               "...) writes it");
            goto out;
        }
        prefix = xstrndup(ir->nodes[writer].name,
                          (size_t)(dot - ir->nodes[writer].name));
    }
    plen = strlen(prefix);
    nlen = plen + 32; /* prefix.N.out */
    name = xrealloc(NULL, nlen);

    /* The old chain and the tensors it writes. */
    old = xrealloc(NULL, (size_t)ir->n_nodes + 1);
    gone = xrealloc(NULL, (size_t)n_t + 1);
    memset(gone, 0, (size_t)n_t + 1);
    for (i = 0; i < ir->n_nodes; i++) {
        const struct smlp__node_ir *n = &ir->nodes[i];

        old[i] = (uint8_t)chain_node(n->name, prefix, plen);
        if (!old[i])
            continue;
        if (strcmp(n->op, "core.add") != 0) {
            sg_error("%s '%s': node '%s' (%s) has a name of the chain "
                     "'%s.N' but is not a core.add of one",
                     edit_opt[e->kind], e->spec, n->name, n->op, prefix);
            goto out;
        }
        for (j = 0; j < n->n_outputs; j++)
            gone[n->outputs[j]] = 1;
    }
    if (out >= 0 && !gone[out]) {
        sg_error("%s '%s': tensor '%s' exists already and is not written "
                 "by the chain '%s.N'",
                 edit_opt[e->kind], e->spec, e->value, prefix);
        goto out;
    }
    for (t = 0; t < n_t; t++)
        if (gone[t] && t != out &&
            ir->tensors[t].kind == SMLP__TENSOR_OUTPUT) {
            sg_error("%s '%s': the chain '%s.N' writes the graph output "
                     "'%s', which a new OUT '%s' would drop (--rename "
                     "renames an output)",
                     edit_opt[e->kind], e->spec, prefix, ir->tensors[t].name,
                     e->value);
            goto out;
        }
    for (i = 0; i < ir->n_nodes; i++) {
        const struct smlp__node_ir *n = &ir->nodes[i];

        if (old[i])
            continue;
        for (j = 0; j < n->n_inputs; j++) {
            t = n->inputs[j];
            if (t >= 0 && gone[t] && t != out) {
                sg_error("%s '%s': node '%s' reads '%s', a partial sum of "
                         "the chain '%s.N' being replaced",
                         edit_opt[e->kind], e->spec, n->name,
                         ir->tensors[t].name, prefix);
                goto out;
            }
        }
    }

    /* The tensors to sum. */
    sum = xrealloc(NULL, ((size_t)n_t + 1) * sizeof(*sum));
    for (t = 0; t < n_t; t++)
        if (!gone[t] && sg_glob(e->glob, ir->tensors[t].name))
            sum[n_sum++] = t;
    if (n_sum == 0) {
        rc = no_match(e, "tensor", e->glob);
        goto out;
    }
    if (n_sum == 1) {
        sg_error("%s '%s': only '%s' matches '%s'; a sum needs two "
                 "tensors or more",
                 edit_opt[e->kind], e->spec, ir->tensors[sum[0]].name,
                 e->glob);
        goto out;
    }
    for (j = 0; j < n_sum - 1; j++) {
        snprintf(name, nlen, "%s.%d", prefix, (int)j);
        i = find_node(ir, name);
        if (i >= 0 && !old[i]) {
            sg_error("%s '%s': a node named '%s' exists already",
                     edit_opt[e->kind], e->spec, name);
            goto out;
        }
        snprintf(name, nlen, "%s.%d.out", prefix, (int)j);
        t = find_tensor(ir, j == n_sum - 2 ? e->value : name);
        if (t >= 0 && !gone[t]) {
            sg_error("%s '%s': a tensor named '%s' exists already",
                     edit_opt[e->kind], e->spec,
                     j == n_sum - 2 ? e->value : name);
            goto out;
        }
    }

    /* Remove the old chain's tensors, then its nodes. */
    map = xrealloc(NULL, ((size_t)n_t + 1) * sizeof(*map));
    for (t = 0, kept = 0; t < n_t; t++) {
        if (gone[t]) {
            map[t] = -1;
            free(ir->tensors[t].name);
            continue;
        }
        map[t] = kept;
        ir->tensors[kept++] = ir->tensors[t];
    }
    for (j = 0; j < n_sum; j++)
        sum[j] = map[sum[j]];
    first_new = kept;
    if (out >= 0) /* readers of the old OUT read the new one */
        map[out] = first_new + n_sum - 2;
    for (i = 0, kept = 0; i < ir->n_nodes; i++) {
        struct smlp__node_ir *n = &ir->nodes[i];

        if (old[i]) {
            node_free(n);
            continue;
        }
        for (j = 0; j < n->n_inputs; j++)
            if (n->inputs[j] >= 0)
                n->inputs[j] = map[n->inputs[j]];
        for (j = 0; j < n->n_outputs; j++)
            n->outputs[j] = map[n->outputs[j]];
        ir->nodes[kept++] = *n;
    }
    ir->n_nodes = kept;
    ir->n_tensors = first_new;

    /* The new chain at the end. */
    ir->tensors = xrealloc(ir->tensors, ((size_t)first_new + n_sum) *
                                            sizeof(*ir->tensors));
    ir->nodes = xrealloc(ir->nodes, ((size_t)ir->n_nodes + n_sum) *
                                        sizeof(*ir->nodes));
    for (j = 0; j < n_sum - 1; j++) {
        struct smlp__tensor_ir *y = &ir->tensors[ir->n_tensors];
        struct smlp__node_ir *n = &ir->nodes[ir->n_nodes++];
        int last = j == n_sum - 2;

        memset(y, 0, sizeof(*y));
        snprintf(name, nlen, "%s.%d.out", prefix, (int)j);
        y->name = xstrdup(last ? e->value : name);
        y->dtype = ir->tensors[sum[0]].dtype;
        y->kind = last ? SMLP__TENSOR_OUTPUT : SMLP__TENSOR_ACTIVATION;
        if (last && ir->tensors[sum[0]].has_shape) {
            y->has_shape = 1;
            y->rank = ir->tensors[sum[0]].rank;
            memcpy(y->shape, ir->tensors[sum[0]].shape, sizeof(y->shape));
        }
        memset(n, 0, sizeof(*n));
        snprintf(name, nlen, "%s.%d", prefix, (int)j);
        n->name = xstrdup(name);
        n->op = xstrdup("core.add");
        n->n_inputs = 2;
        n->inputs = xrealloc(NULL, 2 * sizeof(*n->inputs));
        n->inputs[0] = j == 0 ? sum[0] : ir->n_tensors - 1;
        n->inputs[1] = sum[j + 1];
        n->n_outputs = 1;
        n->outputs = xrealloc(NULL, sizeof(*n->outputs));
        n->outputs[0] = ir->n_tensors++;
    }
    need_plugin(ir, "core", 4);
    rc = 0;
out:
    free(name);
    free(prefix);
    free(old);
    free(gone);
    free(sum);
    free(map);
    return rc;
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
    case EDIT_CLONE_BLOCK: return apply_clone_block(ir, e);
    case EDIT_SUM_TENSORS: return apply_sum_tensors(ir, e);
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
"  --clone-block SRC=DST           replace block DST (the nodes named DST\n"
"                                  or DST.*, and the tensors only they use)\n"
"                                  by a copy of block SRC renamed SRC ->\n"
"                                  DST, in DST's place: it reads what DST\n"
"                                  read, and DST's readers read its tensors\n"
"                                  of the same names (or its exit); new\n"
"                                  initializers are seeded with FNV-1a of\n"
"                                  their names; e.g. blocks.10=blocks.8\n"
"  --sum-tensors [NODE_PREFIX:]TENSOR_GLOB=OUT\n"
"                                  OUT (a graph output) = the sum of the\n"
"                                  tensors matching the glob, in graph\n"
"                                  order, by core.add nodes NODE_PREFIX.0,\n"
"                                  .1, ... at the end; replaces the chain\n"
"                                  NODE_PREFIX.N there (default: the chain\n"
"                                  writing OUT), e.g. '*.gate.aux=aux_loss'\n"
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
"the last four blocks sparse (sparse_mlp_b_last4):\n"
"  smlp-graph edit graphs/sparse_mlp_b.fbs -o last4.fbs \\\n"
"      --clone-block blocks.10=blocks.8 --clone-block blocks.10=blocks.9 \\\n"
"      --sum-tensors '*.gate.aux=aux_loss'\n"
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
        {"clone-block", required_argument, NULL, 1000 + EDIT_CLONE_BLOCK},
        {"sum-tensors", required_argument, NULL, 1000 + EDIT_SUM_TENSORS},
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
