/*
 * graph.c - loading a graph file and checking what the format cannot:
 * the format version, names that are printable and unique, one writer per
 * tensor, no reads of unwritten tensors, no cycles, at least one node and
 * one output, plugin names that are names (never paths), declared shapes
 * (-1, the batch, as the first dimension only) and initializers whose
 * values are finite in the tensor's dtype.
 *
 * The FlatBuffer itself is verified and decoded by fbgraph.c; this file
 * owns the resulting IR.  A loaded graph is immutable.
 */
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define MAX_GRAPH_FILE (1ull << 30)

static int
cmp_names(const void *a, const void *b)
{
    const char *const *x = a;
    const char *const *y = b;

    return strcmp(*x, *y);
}

/* Reports the first name that appears twice in names[0..n). */
static const char *
find_duplicate(const char **names, int32_t n, int *status)
{
    const char **sorted;
    const char *dup = NULL;
    int32_t i;

    *status = SMLP_OK;
    sorted = smlp__malloc((size_t)n * sizeof(*sorted));
    if (sorted == NULL) {
        *status = SMLP_ENOMEM;
        return NULL;
    }
    memcpy(sorted, names, (size_t)n * sizeof(*sorted));
    qsort(sorted, (size_t)n, sizeof(*sorted), cmp_names);
    for (i = 1; i < n; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0) {
            dup = sorted[i];
            break;
        }
    smlp__free(sorted);
    return dup;
}

static int
plugin_name_ok(const char *name)
{
    const char *p;

    if (name[0] == '\0' || strlen(name) > 64)
        return 0;
    for (p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
            return 0;
    return 1;
}

/*
 * Copies name into out[0..len) for a message, control characters written
 * as \xNN, cut short with "..." when long.
 */
static const char *
shown_name(const char *name, char *out, size_t len)
{
    const unsigned char *p;
    size_t n = 0;

    for (p = (const unsigned char *)name; *p != 0 && n + 8 < len; p++) {
        if (*p < 0x20 || *p == 0x7f)
            n += (size_t)snprintf(out + n, len - n, "\\x%02x", *p);
        else
            out[n++] = (char)*p;
    }
    if (*p != 0)
        n += (size_t)snprintf(out + n, len - n, "...");
    out[n] = '\0';
    return out;
}

/*
 * Checks that the name of `what` ("tensor 3", "node 0", "the graph", "the
 * op of node 2", "attribute 1 of node 2", "metadata entry 0") can be
 * shown and typed: not empty, no control characters (< 0x20, 0x7f).
 * The decoder has checked that it is UTF-8.
 */
static int
check_name_text(const smlp_graph_t *g, const char *what, const char *name,
                struct smlp_error *err)
{
    const unsigned char *p;
    char shown[120];

    if (name[0] == '\0')
        return smlp__seterr(err, SMLP_EBADGRAPH, "%s: %s has an empty name",
                            g->source, what);
    for (p = (const unsigned char *)name; *p != 0; p++)
        if (*p < 0x20 || *p == 0x7f)
            return smlp__seterr(err, SMLP_EBADGRAPH,
                                "%s: %s has the name '%s', which contains "
                                "the control character 0x%02x",
                                g->source, what,
                                shown_name(name, shown, sizeof(shown)), *p);
    return SMLP_OK;
}

static int
check_names(smlp_graph_t *g, struct smlp_error *err)
{
    const struct smlp__graph_ir *ir = g->ir;
    const char **names;
    const char *dup;
    char what[48];
    int32_t i, n;
    int rc;

    if ((rc = check_name_text(g, "the graph", ir->name, err)) != SMLP_OK)
        return rc;
    for (i = 0; i < ir->n_tensors; i++) {
        snprintf(what, sizeof(what), "tensor %d", i);
        if ((rc = check_name_text(g, what, ir->tensors[i].name, err)) !=
            SMLP_OK)
            return rc;
    }
    for (i = 0; i < ir->n_nodes; i++) {
        const struct smlp__node_ir *n = &ir->nodes[i];
        int32_t a;

        snprintf(what, sizeof(what), "node %d", i);
        if ((rc = check_name_text(g, what, n->name, err)) != SMLP_OK)
            return rc;
        /* Ops and attribute names are matched against what plugins
         * register and shown in messages: the same rule. */
        snprintf(what, sizeof(what), "the op of node %d", i);
        if ((rc = check_name_text(g, what, n->op, err)) != SMLP_OK)
            return rc;
        for (a = 0; a < n->n_attrs; a++) {
            snprintf(what, sizeof(what), "attribute %d of node %d", a, i);
            if ((rc = check_name_text(g, what, n->attrs[a].name, err)) !=
                SMLP_OK)
                return rc;
        }
    }
    for (i = 0; i < ir->n_meta; i++) {
        snprintf(what, sizeof(what), "metadata entry %d", i);
        if ((rc = check_name_text(g, what, ir->meta[i].key, err)) !=
            SMLP_OK)
            return rc;
    }
    n = ir->n_tensors > ir->n_nodes ? ir->n_tensors : ir->n_nodes;
    if (n < ir->n_plugins)
        n = ir->n_plugins;
    names = smlp__malloc((size_t)n * sizeof(*names) + 1);
    if (names == NULL)
        return smlp__seterr(err, SMLP_ENOMEM, "%s: out of memory", g->source);
    for (i = 0; i < ir->n_tensors; i++)
        names[i] = ir->tensors[i].name;
    dup = find_duplicate(names, ir->n_tensors, &rc);
    if (rc == SMLP_OK && dup != NULL)
        rc = smlp__seterr(err, SMLP_EBADGRAPH,
                          "%s: two tensors are named '%s'", g->source, dup);
    if (rc == SMLP_OK) {
        for (i = 0; i < ir->n_nodes; i++)
            names[i] = ir->nodes[i].name;
        dup = find_duplicate(names, ir->n_nodes, &rc);
        if (rc == SMLP_OK && dup != NULL)
            rc = smlp__seterr(err, SMLP_EBADGRAPH,
                              "%s: two nodes are named '%s'", g->source, dup);
    }
    if (rc == SMLP_OK) {
        for (i = 0; i < ir->n_plugins; i++) {
            if (!plugin_name_ok(ir->plugins[i])) {
                rc = smlp__seterr(err, SMLP_EBADGRAPH,
                                  "%s: plugin '%s' is not a plugin name "
                                  "(letters, digits, '_' and '-' only); "
                                  "graphs name plugins, never paths",
                                  g->source, ir->plugins[i]);
                break;
            }
            names[i] = ir->plugins[i];
        }
    }
    if (rc == SMLP_OK) {
        dup = find_duplicate(names, ir->n_plugins, &rc);
        if (rc == SMLP_OK && dup != NULL)
            rc = smlp__seterr(err, SMLP_EBADGRAPH,
                              "%s: plugin '%s' is listed twice", g->source,
                              dup);
    }
    if (rc == SMLP_ENOMEM)
        smlp__seterr(err, rc, "%s: out of memory", g->source);
    smlp__free(names);
    return rc;
}

static int
graph_lists_plugin(const struct smlp__graph_ir *ir, const char *op)
{
    const char *dot = strchr(op, '.');
    size_t len;
    int32_t i;

    if (dot == NULL)
        return 0;
    len = (size_t)(dot - op);
    for (i = 0; i < ir->n_plugins; i++)
        if (strlen(ir->plugins[i]) == len &&
            memcmp(ir->plugins[i], op, len) == 0)
            return 1;
    return 0;
}

/*
 * |z| of the normal initializer's Box-Muller draw is below this (init.c:
 * u1 >= 2^-25, sqrt(-2 ln 2^-25) = 5.89...).
 */
#define NORMAL_MAX_Z 5.9

/*
 * Checks tensor i's initializer: the parameters its kind uses (constant
 * a; uniform a <= b; normal mean a and std b >= 0) are finite float32
 * values, and every value it can give is finite in the tensor's dtype
 * (float32; int32 for i32 tensors), so that a run never starts from NaN,
 * infinity or a wrapped integer.  Zeros and ones use no parameter.
 */
static int
check_init(const smlp_graph_t *g, int32_t i, struct smlp_error *err)
{
    static const char *const kinds[] = {"zeros", "ones", "constant",
                                        "uniform", "normal"};
    const struct smlp__tensor_ir *t = &g->ir->tensors[i];
    const struct smlp__init_ir *in = &t->init;
    const char *kind = kinds[in->kind];
    int is_i32 = t->dtype == SMLP_DTYPE_I32;
    double lo = in->a, hi = in->a;
    double top = is_i32 ? 2147483647.0 : FLT_MAX;
    double bottom = is_i32 ? -2147483648.0 : -FLT_MAX;
    int n_params = 0, k;

    _Static_assert(sizeof(kinds) / sizeof(kinds[0]) == SMLP__INIT_KIND_COUNT,
                   "a name per init kind");
    if (in->kind == SMLP__INIT_CONSTANT)
        n_params = 1; /* a */
    else if (in->kind == SMLP__INIT_UNIFORM || in->kind == SMLP__INIT_NORMAL)
        n_params = 2; /* a and b */
    for (k = 0; k < n_params; k++) {
        double v = k == 0 ? in->a : in->b;

        if (!isfinite(v) || fabs(v) > FLT_MAX)
            return smlp__seterr(err, SMLP_EBADGRAPH,
                                "%s: tensor %d '%s': %s initializer: %s=%g "
                                "is not a finite float32 value",
                                g->source, i, t->name, kind,
                                k == 0 ? "a" : "b", v);
    }
    if (in->kind == SMLP__INIT_UNIFORM && !(in->a <= in->b))
        return smlp__seterr(err, SMLP_EBADGRAPH,
                            "%s: tensor %d '%s': uniform initializer "
                            "needs a <= b (a=%g, b=%g)",
                            g->source, i, t->name, in->a, in->b);
    if (in->kind == SMLP__INIT_NORMAL && !(in->b >= 0))
        return smlp__seterr(err, SMLP_EBADGRAPH,
                            "%s: tensor %d '%s': normal initializer "
                            "needs std b >= 0 (b=%g)",
                            g->source, i, t->name, in->b);
    if (in->kind == SMLP__INIT_UNIFORM)
        hi = in->b;
    if (in->kind == SMLP__INIT_NORMAL) {
        lo = in->a - NORMAL_MAX_Z * in->b;
        hi = in->a + NORMAL_MAX_Z * in->b;
    }
    if (n_params > 0 && (lo < bottom || hi > top))
        return smlp__seterr(err, SMLP_EBADGRAPH,
                            "%s: tensor %d '%s': %s initializer (a=%g, "
                            "b=%g) can give %g, beyond the range of %s",
                            g->source, i, t->name, kind, in->a, in->b,
                            fabs(lo) > fabs(hi) ? lo : hi,
                            is_i32 ? "int32" : "float32");
    return SMLP_OK;
}

/*
 * Declared shapes: required for inputs, parameters and state; dimensions
 * are >= 0, or -1 for the batch, which only the first dimension of an
 * input, output or activation can be (the session puts the batch size in
 * every -1).  Then the initializers.
 */
static int
check_tensors(smlp_graph_t *g, struct smlp_error *err)
{
    const struct smlp__graph_ir *ir = g->ir;
    char buf[160];
    int32_t i, d;
    int rc;

    for (i = 0; i < ir->n_tensors; i++) {
        const struct smlp__tensor_ir *t = &ir->tensors[i];
        int fixed = t->kind == SMLP__TENSOR_PARAMETER ||
                    t->kind == SMLP__TENSOR_STATE;
        int needs_shape = fixed || t->kind == SMLP__TENSOR_INPUT;

        if (needs_shape && !t->has_shape)
            return smlp__seterr(err, SMLP_EBADGRAPH,
                                "%s: tensor %d '%s': inputs, parameters "
                                "and state need a shape",
                                g->source, i, t->name);
        for (d = 0; t->has_shape && d < t->rank; d++) {
            int64_t v = t->shape[d];
            const char *why = NULL;

            if (v < -1)
                why = "dimensions are >= 0, or -1 for the batch";
            else if (v == -1 && fixed)
                why = "-1 marks the batch and is allowed on inputs, "
                      "outputs and activations only";
            else if (v == -1 && d > 0)
                why = "-1 marks the batch and is allowed as the first "
                      "dimension only";
            if (why != NULL)
                return smlp__seterr(
                    err, SMLP_EBADGRAPH,
                    "%s: tensor %d '%s': shape %s has invalid dimension "
                    "%lld at position %d (%s)",
                    g->source, i, t->name,
                    smlp__shape_str(t->shape, t->rank, buf, sizeof(buf)),
                    (long long)v, d, why);
        }
        if (t->init.present && (rc = check_init(g, i, err)) != SMLP_OK)
            return rc;
    }
    return SMLP_OK;
}

/* Writers, readers and node ops. */
static int
check_nodes(smlp_graph_t *g, struct smlp_error *err)
{
    const struct smlp__graph_ir *ir = g->ir;
    int32_t i, j, *fill;

    for (i = 0; i < ir->n_tensors; i++)
        g->producer[i] = -1;
    for (i = 0; i < ir->n_nodes; i++) {
        const struct smlp__node_ir *n = &ir->nodes[i];

        if (!graph_lists_plugin(ir, n->op))
            return smlp__seterr(
                err, SMLP_EBADGRAPH,
                "%s: node %d '%s': op '%s' must be 'plugin.op' with the "
                "plugin listed in the graph's plugins",
                g->source, i, n->name, n->op);
        for (j = 0; j < n->n_outputs; j++) {
            int32_t t = n->outputs[j];
            const struct smlp__tensor_ir *ti = &ir->tensors[t];

            if (g->producer[t] >= 0)
                return smlp__seterr(
                    err, SMLP_EBADGRAPH,
                    "%s: tensor '%s' has two writers: node %d '%s' and "
                    "node %d '%s'",
                    g->source, ti->name, g->producer[t],
                    ir->nodes[g->producer[t]].name, i, n->name);
            if (ti->kind != SMLP__TENSOR_ACTIVATION &&
                ti->kind != SMLP__TENSOR_OUTPUT)
                return smlp__seterr(
                    err, SMLP_EBADGRAPH,
                    "%s: node %d '%s' writes tensor '%s', which is an "
                    "input, parameter or state (only activations and "
                    "outputs are written by nodes)",
                    g->source, i, n->name, ti->name);
            g->producer[t] = i;
        }
    }
    for (i = 0; i < ir->n_nodes; i++) {
        const struct smlp__node_ir *n = &ir->nodes[i];

        for (j = 0; j < n->n_inputs; j++) {
            int32_t t = n->inputs[j];
            int kind;

            if (t < 0)
                continue;
            g->cons_off[t + 1]++;
            kind = ir->tensors[t].kind;
            if ((kind == SMLP__TENSOR_ACTIVATION ||
                 kind == SMLP__TENSOR_OUTPUT) &&
                g->producer[t] < 0)
                return smlp__seterr(
                    err, SMLP_EBADGRAPH,
                    "%s: node %d '%s' input %d reads tensor '%s', which no "
                    "node writes",
                    g->source, i, n->name, j, ir->tensors[t].name);
        }
    }
    for (i = 0; i < ir->n_tensors; i++)
        g->cons_off[i + 1] += g->cons_off[i];
    g->cons = smlp__malloc(((size_t)g->cons_off[ir->n_tensors] + 1) *
                           sizeof(int32_t));
    fill = smlp__calloc((size_t)ir->n_tensors, sizeof(int32_t));
    if (g->cons == NULL || fill == NULL) {
        smlp__free(fill);
        return smlp__seterr(err, SMLP_ENOMEM, "%s: out of memory", g->source);
    }
    /* Each node appears once per input slot reading the tensor. */
    for (i = 0; i < ir->n_nodes; i++)
        for (j = 0; j < ir->nodes[i].n_inputs; j++) {
            int32_t t = ir->nodes[i].inputs[j];
            if (t >= 0)
                g->cons[g->cons_off[t] + fill[t]++] = i;
        }
    smlp__free(fill);
    for (i = 0; i < ir->n_tensors; i++)
        if (ir->tensors[i].kind == SMLP__TENSOR_OUTPUT && g->producer[i] < 0)
            return smlp__seterr(err, SMLP_EBADGRAPH,
                                "%s: output tensor '%s' is written by no node",
                                g->source, ir->tensors[i].name);
    return SMLP_OK;
}

/* A graph computes something: it has a node and an output tensor. */
static int
check_has_work(const smlp_graph_t *g, struct smlp_error *err)
{
    const struct smlp__graph_ir *ir = g->ir;
    int32_t i;

    if (ir->n_nodes == 0)
        return smlp__seterr(err, SMLP_EBADGRAPH, "%s: the graph has no "
                            "nodes", g->source);
    for (i = 0; i < ir->n_tensors; i++)
        if (ir->tensors[i].kind == SMLP__TENSOR_OUTPUT)
            return SMLP_OK;
    return smlp__seterr(err, SMLP_EBADGRAPH, "%s: the graph has no output "
                        "tensor (no tensor of kind Output)", g->source);
}

/* Kahn's algorithm, lowest node index first (file order when possible). */
static int
sort_nodes(smlp_graph_t *g, struct smlp_error *err)
{
    const struct smlp__graph_ir *ir = g->ir;
    int32_t *indeg, *heap, n_heap = 0, n_done = 0, i, j, k;
    int rc = SMLP_OK;

    indeg = smlp__calloc((size_t)ir->n_nodes, sizeof(*indeg));
    heap = smlp__calloc((size_t)ir->n_nodes, sizeof(*heap));
    if (indeg == NULL || heap == NULL) {
        rc = smlp__seterr(err, SMLP_ENOMEM, "%s: out of memory", g->source);
        goto out;
    }
    for (i = 0; i < ir->n_nodes; i++)
        for (j = 0; j < ir->nodes[i].n_inputs; j++) {
            int32_t t = ir->nodes[i].inputs[j];
            if (t >= 0 && g->producer[t] >= 0)
                indeg[i]++;
        }
    for (i = 0; i < ir->n_nodes; i++)
        if (indeg[i] == 0)
            heap[n_heap++] = i; /* ascending: already a heap */
    while (n_heap > 0) {
        int32_t cur = heap[0], pos = 0;

        /* Pop the minimum. */
        heap[0] = heap[--n_heap];
        for (;;) {
            int32_t l = 2 * pos + 1, r = l + 1, m = pos, tmp;
            if (l < n_heap && heap[l] < heap[m])
                m = l;
            if (r < n_heap && heap[r] < heap[m])
                m = r;
            if (m == pos)
                break;
            tmp = heap[m];
            heap[m] = heap[pos];
            heap[pos] = tmp;
            pos = m;
        }
        g->order[n_done++] = cur;
        /* Release consumers of cur's outputs. */
        for (k = 0; k < ir->nodes[cur].n_outputs; k++) {
            int32_t t = ir->nodes[cur].outputs[k];
            for (j = g->cons_off[t]; j < g->cons_off[t + 1]; j++) {
                int32_t c;

                i = g->cons[j];
                if (--indeg[i] != 0)
                    continue;
                c = n_heap++;
                heap[c] = i;
                while (c > 0 && heap[(c - 1) / 2] > heap[c]) {
                    int32_t p = (c - 1) / 2, tmp = heap[p];
                    heap[p] = heap[c];
                    heap[c] = tmp;
                    c = p;
                }
            }
        }
    }
    if (n_done != ir->n_nodes) {
        for (i = 0; i < ir->n_nodes && indeg[i] == 0; i++)
            ;
        rc = smlp__seterr(err, SMLP_EBADGRAPH,
                          "%s: the graph has a cycle through node %d '%s'",
                          g->source, i, ir->nodes[i].name);
    }
out:
    smlp__free(indeg);
    smlp__free(heap);
    return rc;
}

SMLP_API smlp_graph_t *
smlp_graph_load_buffer(const void *buf, size_t len, const char *what,
                       struct smlp_error *err)
{
    smlp_graph_t *g;
    int rc;

    if (buf == NULL) {
        smlp__seterr(err, SMLP_EINVAL, "%s: no graph buffer (NULL)",
                     what ? what : "<buffer>");
        return NULL;
    }
    g = smlp__calloc(1, sizeof(*g));
    if (g == NULL) {
        smlp__seterr(err, SMLP_ENOMEM, "out of memory loading a graph");
        return NULL;
    }
    g->refs = 1; /* the caller's, dropped by smlp_graph_unload */
    g->source = smlp__strdup(what ? what : "<buffer>");
    if (g->source == NULL) {
        smlp__seterr(err, SMLP_ENOMEM, "out of memory loading a graph");
        goto fail;
    }
    rc = smlp__graph_ir_decode(buf, len, g->source, &g->ir,
                               err ? err->msg : NULL,
                               err ? sizeof(err->msg) : 0);
    if (rc != SMLP_OK) {
        if (err != NULL)
            err->status = rc;
        goto fail;
    }
    g->producer = smlp__calloc((size_t)g->ir->n_tensors, sizeof(int32_t));
    g->cons_off = smlp__calloc((size_t)g->ir->n_tensors + 1, sizeof(int32_t));
    g->order = smlp__calloc((size_t)g->ir->n_nodes, sizeof(int32_t));
    if (g->producer == NULL || g->order == NULL || g->cons_off == NULL) {
        smlp__seterr(err, SMLP_ENOMEM, "%s: out of memory", g->source);
        goto fail;
    }
    if (g->ir->format_version != SMLP__GRAPH_FORMAT_VERSION) {
        smlp__seterr(err, SMLP_EBADFILE, "%s: graph format_version %u is "
                     "not supported (this runtime reads version %d)",
                     g->source, (unsigned)g->ir->format_version,
                     SMLP__GRAPH_FORMAT_VERSION);
        goto fail;
    }
    if (check_names(g, err) != SMLP_OK || check_tensors(g, err) != SMLP_OK ||
        check_nodes(g, err) != SMLP_OK || sort_nodes(g, err) != SMLP_OK ||
        check_has_work(g, err) != SMLP_OK)
        goto fail;
    return g;
fail:
    smlp_graph_unload(g);
    return NULL;
}

SMLP_API smlp_graph_t *
smlp_graph_load(const char *path, struct smlp_error *err)
{
    struct stat st;
    smlp_graph_t *g = NULL;
    uint8_t *buf = NULL;
    size_t got = 0;
    int fd;

    if (path == NULL) {
        smlp__seterr(err, SMLP_EINVAL, "no graph path (NULL)");
        return NULL;
    }
    /* O_NONBLOCK: a FIFO must not block the open (it is refused below). */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        smlp__seterr(err, SMLP_EIO, "%s: cannot open graph: %s", path,
                     strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) != 0) {
        smlp__seterr(err, SMLP_EIO, "%s: cannot stat: %s", path,
                     strerror(errno));
        goto out_close;
    }
    if (S_ISDIR(st.st_mode)) {
        smlp__seterr(err, SMLP_EIO, "%s: is a directory, not a graph file",
                     path);
        goto out_close;
    }
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > MAX_GRAPH_FILE) {
        smlp__seterr(err, SMLP_EBADFILE,
                     "%s: not a regular file of at most 1 GiB", path);
        goto out_close;
    }
    buf = smlp__malloc((size_t)st.st_size);
    if (buf == NULL) {
        smlp__seterr(err, SMLP_ENOMEM, "%s: out of memory", path);
        goto out_close;
    }
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            smlp__seterr(err, SMLP_EIO, "%s: read failed: %s", path,
                         r < 0 ? strerror(errno) : "file shrank");
            goto out_free;
        }
        got += (size_t)r;
    }
    g = smlp_graph_load_buffer(buf, got, path, err);
out_free:
    smlp__free(buf);
out_close:
    close(fd);
    return g;
}

static void
graph_free(smlp_graph_t *g)
{
    if (g->ir != NULL)
        smlp__graph_ir_free(g->ir);
    smlp__free(g->producer);
    smlp__free(g->cons_off);
    smlp__free(g->cons);
    smlp__free(g->order);
    smlp__free(g->source);
    smlp__free(g);
}

/* See internal.h. */
void
smlp__graph_hold(const smlp_graph_t *g)
{
    __atomic_add_fetch(&((smlp_graph_t *)g)->refs, 1, __ATOMIC_RELAXED);
}

void
smlp__graph_release(const smlp_graph_t *g)
{
    smlp_graph_t *mut = (smlp_graph_t *)g;

    if (g != NULL && __atomic_sub_fetch(&mut->refs, 1, __ATOMIC_ACQ_REL) == 0)
        graph_free(mut);
}

/* With sessions alive this only drops the caller's reference: the last
 * smlp_session_destroy frees the graph. */
SMLP_API void
smlp_graph_unload(smlp_graph_t *g)
{
    smlp__graph_release(g);
}

SMLP_API const char *
smlp_graph_name(const smlp_graph_t *g)
{
    return g != NULL ? g->ir->name : NULL;
}

SMLP_API const char *
smlp_graph_source(const smlp_graph_t *g)
{
    return g != NULL ? g->source : NULL;
}

SMLP_API int
smlp_graph_node_count(const smlp_graph_t *g)
{
    return g != NULL ? g->ir->n_nodes : 0;
}

SMLP_API int
smlp_graph_tensor_count(const smlp_graph_t *g)
{
    return g != NULL ? g->ir->n_tensors : 0;
}

SMLP_API int
smlp_graph_plugin_count(const smlp_graph_t *g)
{
    return g != NULL ? g->ir->n_plugins : 0;
}

SMLP_API const char *
smlp_graph_plugin_name(const smlp_graph_t *g, int i)
{
    if (g == NULL || i < 0 || i >= g->ir->n_plugins)
        return NULL;
    return g->ir->plugins[i];
}

SMLP_API const char *
smlp_graph_meta(const smlp_graph_t *g, const char *key)
{
    int32_t i;

    if (g == NULL || key == NULL)
        return NULL;
    for (i = 0; i < g->ir->n_meta; i++)
        if (strcmp(g->ir->meta[i].key, key) == 0)
            return g->ir->meta[i].value;
    return NULL;
}

static const struct smlp__attr_ir *
find_node_attr(const smlp_graph_t *g, const char *node, const char *name)
{
    int32_t i, a;

    for (i = 0; i < g->ir->n_nodes; i++) {
        const struct smlp__node_ir *n = &g->ir->nodes[i];

        if (n->name == NULL || strcmp(n->name, node) != 0)
            continue;
        for (a = 0; a < n->n_attrs; a++)
            if (strcmp(n->attrs[a].name, name) == 0)
                return &n->attrs[a];
        return NULL;
    }
    return NULL;
}

SMLP_API int
smlp_graph_node_attr_int(const smlp_graph_t *g, const char *node,
                         const char *name, int64_t *out)
{
    const struct smlp__attr_ir *a;

    if (g == NULL || node == NULL || name == NULL || out == NULL)
        return SMLP_EINVAL;
    a = find_node_attr(g, node, name);
    if (a == NULL || a->type != SMLP_ATTR_INT)
        return SMLP_ENOENT;
    *out = a->i;
    return SMLP_OK;
}

SMLP_API int
smlp_graph_node_attr_float(const smlp_graph_t *g, const char *node,
                           const char *name, double *out)
{
    const struct smlp__attr_ir *a;

    if (g == NULL || node == NULL || name == NULL || out == NULL)
        return SMLP_EINVAL;
    a = find_node_attr(g, node, name);
    if (a == NULL || (a->type != SMLP_ATTR_FLOAT && a->type != SMLP_ATTR_INT))
        return SMLP_ENOENT;
    *out = a->type == SMLP_ATTR_INT ? (double)a->i : a->f;
    return SMLP_OK;
}
