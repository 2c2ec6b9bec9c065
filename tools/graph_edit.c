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

#include "graph_edit.h"

const char *const edit_opt[] = {
    "--set-op",   "--set-attr",  "--del-attr",  "--rename",
    "--remove-node", "--drop-input", "--set-shape", "--set-init",
    "--name",     "--set-meta",  "--del-meta",  "--clone-block",
    "--sum-tensors",
};

_Static_assert(sizeof(edit_opt) / sizeof(edit_opt[0]) == EDIT_KIND_COUNT,
               "an option name per edit kind");

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

char *
ge_strdup(const char *s)
{
    char *p = malloc(strlen(s) + 1);

    if (p == NULL) {
        sg_error("out of memory");
        exit(SG_EXIT_FAIL);
    }
    return strcpy(p, s);
}

char *
ge_strndup(const char *s, size_t n)
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

void *
ge_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);

    if (q == NULL) {
        sg_error("out of memory");
        exit(SG_EXIT_FAIL);
    }
    return q;
}

void
ge_attr_clear(struct smlp__attr_ir *a)
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

void
ge_node_free(struct smlp__node_ir *n)
{
    int32_t i;

    free(n->name);
    free(n->op);
    free(n->inputs);
    free(n->outputs);
    for (i = 0; i < n->n_attrs; i++) {
        free(n->attrs[i].name);
        ge_attr_clear(&n->attrs[i]);
    }
    free(n->attrs);
}

uint64_t
ge_fnv1a64(const char *s)
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
    /* ERANGE: beyond a double (inf, or 0 for a tiny nonzero value:
     * refused), or a subnormal (glibc says so too; exact: taken). */
    if ((errno == ERANGE && (v == 0.0 || !isfinite(v))) || end == s ||
        *end != '\0' || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

/*
 * Splits a list "a,b,c" (optionally in brackets) into its n items, each
 * parsed as an int (ints != NULL) or a double.  An empty list has none.
 * Returns 0 or -1 (an item does not parse).
 */
int
ge_parse_list(const char *text, int64_t **ints, double **floats, size_t *n)
{
    char *s = ge_strdup(text), *p = s, *item, *end;
    size_t len = strlen(s), cap = 8;
    int rc = 0;

    *n = 0;
    if (ints != NULL)
        *ints = ge_realloc(NULL, cap * sizeof(**ints));
    else
        *floats = ge_realloc(NULL, cap * sizeof(**floats));
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
                *ints = ge_realloc(*ints, cap * sizeof(**ints));
            else
                *floats = ge_realloc(*floats, cap * sizeof(**floats));
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
int
ge_infer_type(const char *v)
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
        if (ge_parse_list(v, &ints, NULL, &n) == 0)
            type = SMLP_ATTR_INTS;
        else if (ge_parse_list(v, NULL, &floats, &n) == 0)
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
int
ge_attr_set(struct smlp__attr_ir *a, int type, const char *v,
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
                 "is not a finite number a double holds",
                 edit_opt[e->kind], e->spec, node, a->name, v);
        return -1;
    case SMLP_ATTR_STRING:
        tmp.s = ge_strdup(v);
        break;
    case SMLP_ATTR_INTS:
        if (ge_parse_list(v, &tmp.ints, NULL, &tmp.n_values) == 0)
            break;
        free(tmp.ints);
        sg_error("%s '%s': node '%s': attribute '%s' is a list of ints, and "
                 "'%s' is not one (e.g. -1,196)",
                 edit_opt[e->kind], e->spec, node, a->name, v);
        return -1;
    case SMLP_ATTR_FLOATS:
        if (ge_parse_list(v, NULL, &tmp.floats, &tmp.n_values) == 0)
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
    ge_attr_clear(a);
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
    *left = ge_strndup(s, (size_t)(p - s));
    *right = ge_strdup(p + 1);
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
            e->glob = ge_strndup(left, (size_t)(p - left));
            e->key = ge_strdup(p + 1);
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
        e->glob = ge_strdup(e->spec);
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
        e->value = ge_strdup(e->spec);
        return *e->value ? 0 : bad_spec(e, "a graph name");
    case EDIT_SET_META:
        if (split(e->spec, '=', &e->key, &e->value) != 0)
            return bad_spec(e, "KEY=VALUE");
        return 0;
    case EDIT_DEL_META:
        e->key = ge_strdup(e->spec);
        return *e->key ? 0 : bad_spec(e, "KEY");
    case EDIT_CLONE_BLOCK:
        return parse_clone_block(e);
    case EDIT_SUM_TENSORS:
        if (split(e->spec, '=', &left, &e->value) != 0 || !*e->value)
            return bad_spec(e, "[NODE_PREFIX:]TENSOR_GLOB=OUT, e.g. "
                               "'aux_sum:*.gate.aux=aux_loss'");
        p = strchr(left, ':');
        if (p != NULL) {
            e->key = ge_strndup(left, (size_t)(p - left));
            e->glob = ge_strdup(p + 1);
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

static int
apply_edit(struct smlp__graph_ir *ir, const struct edit *e,
           smlp_registry_t *reg)
{
    switch (e->kind) {
    case EDIT_SET_OP: return ge_apply_set_op(ir, e, reg);
    case EDIT_SET_ATTR: return ge_apply_set_attr(ir, e);
    case EDIT_DEL_ATTR: return ge_apply_del_attr(ir, e);
    case EDIT_RENAME: return ge_apply_rename(ir, e);
    case EDIT_REMOVE_NODE: return ge_apply_remove_node(ir, e);
    case EDIT_DROP_INPUT: return ge_apply_drop_input(ir, e);
    case EDIT_SET_SHAPE: return ge_apply_set_shape(ir, e);
    case EDIT_SET_INIT: return ge_apply_set_init(ir, e);
    case EDIT_NAME:
        free(ir->name);
        ir->name = ge_strdup(e->value);
        return 0;
    case EDIT_SET_META:
    case EDIT_DEL_META: return ge_apply_meta(ir, e);
    case EDIT_CLONE_BLOCK: return ge_apply_clone_block(ir, e);
    case EDIT_SUM_TENSORS: return ge_apply_sum_tensors(ir, e);
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

    /* snprintf returns what it would have written: stop once full. */
    for (i = 0; i < n && i < 4 && used < sizeof(list) - 1; i++)
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

    map = ge_realloc(NULL, ((size_t)ir->n_tensors + 1) * sizeof(*map));
    gone = ge_realloc(NULL, ((size_t)ir->n_tensors + ir->n_plugins + 1) *
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
    for (i = 0; i < ir->n_nodes; i++)
        smlp__graph_ir_node_remap(&ir->nodes[i], map);
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
"                                  set a declared shape (-1 = batch;\n"
"                                  GLOB= alone: a scalar)\n"
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
            o->edits = ge_realloc(o->edits, (size_t)(o->n_edits + 1) *
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
    if (o->output != NULL)
        return sg_check_out(o->output, o->input, 1);
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
    char msg[1200];
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
        if (sg_plan_modes(g, ir, reg, o->batch, msg, sizeof(msg)) != 0) {
            sg_error("the edited graph does not check %s; nothing written",
                     msg);
            smlp_graph_unload(g);
            free(buf);
            return NULL;
        }
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
