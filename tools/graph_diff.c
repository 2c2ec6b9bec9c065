/*
 * graph_diff.c - `smlp-graph diff A B`: what differs between two graphs.
 *
 * Two graphs compute the same thing when they have the same plugins (as
 * a set), the same tensors by name (dtype, kind, declared shape,
 * initializer) and the same nodes by name (op, inputs and outputs as
 * tensor names, attributes by name with their types and values).  The
 * order of tensors, nodes and attributes in the file does not matter, nor
 * do the graph's name and metadata, which are shown as notes.  Exit
 * status: 0 the same, 1 different, 2 trouble (a file that does not load,
 * usage), as diff(1).
 *
 * Lines: "- tensor X (...)" only in A, "+ node Y (...)" only in B,
 * "~ node Y: attr k: 2 -> 1" changed, "  note: name: a -> b".
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph_tool.h"

struct diff_ctx {
    const struct smlp__graph_ir *a;
    const struct smlp__graph_ir *b;
    int quiet;
    int count;
};

static void __attribute__((format(printf, 3, 4)))
line(struct diff_ctx *c, char mark, const char *fmt, ...)
{
    va_list ap;

    c->count++;
    if (c->quiet)
        return;
    printf("%c ", mark);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

/* ---- describing things -------------------------------------------------- */

static const char *
tensor_str(const struct smlp__tensor_ir *t, char *buf, size_t len)
{
    char shape[200];

    snprintf(buf, len, "%s %s %s", sg_kind_name(t->kind),
             sg_dtype_name(t->dtype),
             t->has_shape ? sg_shape_str(t->shape, t->rank, shape,
                                         sizeof(shape))
                          : "(shape inferred)");
    return buf;
}

static const char *
init_str(const struct smlp__init_ir *init, char *buf, size_t len)
{
    char a[48], b[48];

    if (!init->present)
        snprintf(buf, len, "(none)");
    else
        snprintf(buf, len, "%s a=%s b=%s seed=%" PRIu64,
                 sg_init_enum(init->kind),
                 sg_double_str(init->a, a, sizeof(a)),
                 sg_double_str(init->b, b, sizeof(b)), init->seed);
    return buf;
}

static const char *
attr_str(const struct smlp__attr_ir *a, char *buf, size_t len)
{
    size_t used = 0, i;
    char d[48];

    if (a == NULL) {
        snprintf(buf, len, "(absent)");
        return buf;
    }
#define PUT(...)                                                             \
    do {                                                                     \
        if (used < len)                                                      \
            used += (size_t)snprintf(buf + used, len - used, __VA_ARGS__);   \
    } while (0)
    switch (a->type) {
    case SMLP_ATTR_INT: PUT("%" PRId64, a->i); break;
    case SMLP_ATTR_FLOAT: PUT("%s", sg_double_str(a->f, d, sizeof(d))); break;
    case SMLP_ATTR_STRING: PUT("'%s'", a->s ? a->s : ""); break;
    case SMLP_ATTR_INTS:
    case SMLP_ATTR_FLOATS:
        PUT("[");
        for (i = 0; i < a->n_values; i++) {
            if (a->type == SMLP_ATTR_INTS)
                PUT("%s%" PRId64, i ? "," : "", a->ints[i]);
            else
                PUT("%s%s", i ? "," : "",
                    sg_double_str(a->floats[i], d, sizeof(d)));
        }
        PUT("]");
        break;
    }
    if (a->type != SMLP_ATTR_INT && a->type != SMLP_ATTR_STRING)
        PUT(" (%s)", sg_attr_enum(a->type));
#undef PUT
    return buf;
}

/* Node i's inputs or outputs as tensor names: "[x, W, -]". */
static const char *
io_str(const struct smlp__graph_ir *ir, const int32_t *v, int32_t n,
       char *buf, size_t len)
{
    size_t used = 0;
    int32_t i;

    used += (size_t)snprintf(buf, len, "[");
    for (i = 0; i < n && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s",
                                 i ? ", " : "",
                                 v[i] >= 0 ? ir->tensors[v[i]].name : "-");
    if (used < len)
        snprintf(buf + used, len - used, "]");
    return buf;
}

/* ---- comparing ---------------------------------------------------------- */

static int
same_double(double x, double y)
{
    return memcmp(&x, &y, sizeof(x)) == 0;
}

static int
same_attr(const struct smlp__attr_ir *x, const struct smlp__attr_ir *y)
{
    size_t i;

    if (x->type != y->type)
        return 0;
    switch (x->type) {
    case SMLP_ATTR_INT: return x->i == y->i;
    case SMLP_ATTR_FLOAT: return same_double(x->f, y->f);
    case SMLP_ATTR_STRING:
        return strcmp(x->s ? x->s : "", y->s ? y->s : "") == 0;
    default:
        if (x->n_values != y->n_values)
            return 0;
        for (i = 0; i < x->n_values; i++)
            if (x->type == SMLP_ATTR_INTS ? x->ints[i] != y->ints[i]
                                          : !same_double(x->floats[i],
                                                         y->floats[i]))
                return 0;
        return 1;
    }
}

static const struct smlp__attr_ir *
find_attr(const struct smlp__node_ir *n, const char *name)
{
    int32_t i;

    for (i = 0; i < n->n_attrs; i++)
        if (strcmp(n->attrs[i].name, name) == 0)
            return &n->attrs[i];
    return NULL;
}

/* Whether two lists of tensor indices name the same tensors. */
static int
same_io(const struct smlp__graph_ir *a, const int32_t *x, int32_t nx,
        const struct smlp__graph_ir *b, const int32_t *y, int32_t ny)
{
    int32_t i;

    if (nx != ny)
        return 0;
    for (i = 0; i < nx; i++) {
        if ((x[i] < 0) != (y[i] < 0))
            return 0;
        if (x[i] >= 0 &&
            strcmp(a->tensors[x[i]].name, b->tensors[y[i]].name) != 0)
            return 0;
    }
    return 1;
}

static void
diff_plugins(struct diff_ctx *c)
{
    int32_t i, j;

    for (i = 0; i < c->a->n_plugins; i++) {
        for (j = 0; j < c->b->n_plugins &&
                    strcmp(c->a->plugins[i], c->b->plugins[j]) != 0;
             j++)
            ;
        if (j == c->b->n_plugins)
            line(c, '-', "plugin %s", c->a->plugins[i]);
    }
    for (j = 0; j < c->b->n_plugins; j++) {
        for (i = 0; i < c->a->n_plugins &&
                    strcmp(c->a->plugins[i], c->b->plugins[j]) != 0;
             i++)
            ;
        if (i == c->a->n_plugins)
            line(c, '+', "plugin %s", c->b->plugins[j]);
    }
}

static void
diff_tensors(struct diff_ctx *c)
{
    char b1[256], b2[256];
    int32_t i, j;

    for (i = 0; i < c->a->n_tensors; i++) {
        const struct smlp__tensor_ir *x = &c->a->tensors[i], *y;
        int shape_same;

        j = smlp__graph_ir_find_tensor(c->b, x->name);
        if (j < 0) {
            line(c, '-', "tensor %s (%s)", x->name,
                 tensor_str(x, b1, sizeof(b1)));
            continue;
        }
        y = &c->b->tensors[j];
        shape_same = x->has_shape == y->has_shape && x->rank == y->rank &&
                     memcmp(x->shape, y->shape,
                            (size_t)x->rank * sizeof(int64_t)) == 0;
        if (x->kind != y->kind || x->dtype != y->dtype || !shape_same)
            line(c, '~', "tensor %s: %s -> %s", x->name,
                 tensor_str(x, b1, sizeof(b1)),
                 tensor_str(y, b2, sizeof(b2)));
        if (x->init.present != y->init.present ||
            (x->init.present &&
             (x->init.kind != y->init.kind ||
              !same_double(x->init.a, y->init.a) ||
              !same_double(x->init.b, y->init.b) ||
              x->init.seed != y->init.seed)))
            line(c, '~', "tensor %s: init %s -> %s", x->name,
                 init_str(&x->init, b1, sizeof(b1)),
                 init_str(&y->init, b2, sizeof(b2)));
    }
    for (j = 0; j < c->b->n_tensors; j++)
        if (smlp__graph_ir_find_tensor(c->a, c->b->tensors[j].name) < 0)
            line(c, '+', "tensor %s (%s)", c->b->tensors[j].name,
                 tensor_str(&c->b->tensors[j], b1, sizeof(b1)));
}

static void
diff_nodes(struct diff_ctx *c)
{
    char b1[1024], b2[1024];
    int32_t i, j, k;

    for (i = 0; i < c->a->n_nodes; i++) {
        const struct smlp__node_ir *x = &c->a->nodes[i], *y;

        j = smlp__graph_ir_find_node(c->b, x->name);
        if (j < 0) {
            line(c, '-', "node %s (%s)", x->name, x->op);
            continue;
        }
        y = &c->b->nodes[j];
        if (strcmp(x->op, y->op) != 0)
            line(c, '~', "node %s: op %s -> %s", x->name, x->op, y->op);
        if (!same_io(c->a, x->inputs, x->n_inputs, c->b, y->inputs,
                     y->n_inputs))
            line(c, '~', "node %s: inputs %s -> %s", x->name,
                 io_str(c->a, x->inputs, x->n_inputs, b1, sizeof(b1)),
                 io_str(c->b, y->inputs, y->n_inputs, b2, sizeof(b2)));
        if (!same_io(c->a, x->outputs, x->n_outputs, c->b, y->outputs,
                     y->n_outputs))
            line(c, '~', "node %s: outputs %s -> %s", x->name,
                 io_str(c->a, x->outputs, x->n_outputs, b1, sizeof(b1)),
                 io_str(c->b, y->outputs, y->n_outputs, b2, sizeof(b2)));
        for (k = 0; k < x->n_attrs; k++) {
            const struct smlp__attr_ir *ya = find_attr(y, x->attrs[k].name);

            if (ya == NULL || !same_attr(&x->attrs[k], ya))
                line(c, '~', "node %s: attr %s: %s -> %s", x->name,
                     x->attrs[k].name,
                     attr_str(&x->attrs[k], b1, sizeof(b1)),
                     attr_str(ya, b2, sizeof(b2)));
        }
        for (k = 0; k < y->n_attrs; k++)
            if (find_attr(x, y->attrs[k].name) == NULL)
                line(c, '~', "node %s: attr %s: (absent) -> %s", x->name,
                     y->attrs[k].name,
                     attr_str(&y->attrs[k], b2, sizeof(b2)));
    }
    for (j = 0; j < c->b->n_nodes; j++)
        if (smlp__graph_ir_find_node(c->a, c->b->nodes[j].name) < 0)
            line(c, '+', "node %s (%s)", c->b->nodes[j].name,
                 c->b->nodes[j].op);
}

/* The name and metadata: notes, not differences. */
static int
note_meta(const struct diff_ctx *c)
{
    int32_t i, j;
    int n = 0;

    if (strcmp(c->a->name, c->b->name) != 0) {
        n++;
        if (!c->quiet)
            printf("  note: name: %s -> %s\n", c->a->name, c->b->name);
    }
    for (i = 0; i < c->a->n_meta; i++) {
        const struct smlp__meta_ir *x = &c->a->meta[i];
        const char *yv = NULL;

        for (j = 0; j < c->b->n_meta; j++)
            if (strcmp(c->b->meta[j].key, x->key) == 0)
                break;
        if (j < c->b->n_meta)
            yv = c->b->meta[j].value ? c->b->meta[j].value : "";
        if (yv != NULL && strcmp(x->value ? x->value : "", yv) == 0)
            continue;
        n++;
        if (!c->quiet)
            printf("  note: metadata %s: '%s' -> %s%s%s\n", x->key,
                   x->value ? x->value : "", yv ? "'" : "(absent)",
                   yv ? yv : "", yv ? "'" : "");
    }
    for (j = 0; j < c->b->n_meta; j++) {
        for (i = 0; i < c->a->n_meta &&
                    strcmp(c->a->meta[i].key, c->b->meta[j].key) != 0;
             i++)
            ;
        if (i < c->a->n_meta)
            continue;
        n++;
        if (!c->quiet)
            printf("  note: metadata %s: (absent) -> '%s'\n",
                   c->b->meta[j].key,
                   c->b->meta[j].value ? c->b->meta[j].value : "");
    }
    return n;
}

static void
diff_usage(FILE *f)
{
    fprintf(f,
"usage: smlp-graph diff A B [-q]\n"
"Shows what differs between graphs A and B: plugins, tensors (kind,\n"
"dtype, declared shape, initializer) and nodes (op, inputs, outputs,\n"
"attributes), matched by name; file order does not matter.  The graph's\n"
"name and metadata are shown as notes.  Exit status 0 when A and B\n"
"compute the same thing (name and metadata aside), 1 when they differ,\n"
"2 when a graph cannot be read or the runtime refuses it.\n"
"\n"
"  -q, --quiet  print only the summary line\n"
"  --help\n");
}

int
sg_diff_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    struct sg_graph a, b;
    struct diff_ctx c;
    int ch, notes;

    memset(&c, 0, sizeof(c));
    while ((ch = getopt_long(argc, argv, "qh", longopts, NULL)) != -1) {
        switch (ch) {
        case 'q': c.quiet = 1; break;
        case 'h': diff_usage(stdout); return SG_EXIT_OK;
        default: return sg_bad_option(argv, "qh");
        }
    }
    if (sg_operands(argc, 2, "diff A B") != 0)
        return SG_USAGE_ERR;
    if (sg_graph_open(&a, argv[optind], 0) != 0)
        return SG_EXIT_USAGE;
    if (sg_graph_open(&b, argv[optind + 1], 0) != 0) {
        sg_graph_close(&a);
        return SG_EXIT_USAGE;
    }
    c.a = a.ir;
    c.b = b.ir;
    diff_plugins(&c);
    diff_tensors(&c);
    diff_nodes(&c);
    notes = note_meta(&c);
    if (a.graph == NULL || b.graph == NULL) {
        /* A graph the runtime refuses computes nothing: no "same". */
        if (c.count > 0)
            printf("%d difference%s between %s and %s\n", c.count,
                   c.count == 1 ? "" : "s", a.path, b.path);
        if (a.graph == NULL)
            sg_error("%s", a.why);
        if (b.graph == NULL)
            sg_error("%s", b.why);
        sg_graph_close(&a);
        sg_graph_close(&b);
        return SG_EXIT_USAGE;
    }
    if (c.count == 0)
        printf("%s and %s compute the same thing%s\n", a.path, b.path,
               notes ? " (name and metadata aside)" : "");
    else
        printf("%d difference%s between %s and %s\n", c.count,
               c.count == 1 ? "" : "s", a.path, b.path);
    sg_graph_close(&a);
    sg_graph_close(&b);
    return c.count == 0 ? SG_EXIT_OK : SG_EXIT_FAIL;
}
