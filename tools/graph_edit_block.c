/*
 * graph_edit_block.c - `smlp-graph edit --clone-block SRC=DST` (a block
 * replaced by a renamed copy of another, parameters re-seeded by the
 * graphs' name rule) and --sum-tensors GLOB=OUT (the aux-loss sum chain
 * rebuilt); see graph_edit.c for the layout conventions.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph_edit.h"

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
    b->in = ge_realloc(NULL, (size_t)ir->n_nodes + 1);
    b->use = ge_realloc(NULL, (size_t)ir->n_tensors + 1);
    b->entries = ge_realloc(NULL, ((size_t)ir->n_tensors + 1) *
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
    to->attrs = ge_realloc(NULL, ((size_t)from->n_attrs + 1) *
                                   sizeof(*to->attrs));
    for (i = 0; i < from->n_attrs; i++) {
        const struct smlp__attr_ir *a = &from->attrs[i];
        struct smlp__attr_ir *b = &to->attrs[i];

        *b = *a;
        b->name = ge_strdup(a->name);
        b->s = a->s != NULL ? ge_strdup(a->s) : NULL;
        b->ints = NULL;
        b->floats = NULL;
        if (a->ints != NULL) {
            b->ints = ge_realloc(NULL, (a->n_values + 1) * sizeof(*b->ints));
            memcpy(b->ints, a->ints, a->n_values * sizeof(*b->ints));
        }
        if (a->floats != NULL) {
            b->floats = ge_realloc(NULL,
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
int
ge_apply_clone_block(struct smlp__graph_ir *ir, const struct edit *e)
{
    struct block src, dst;
    int32_t n_t = ir->n_tensors, n_clone = 0, n_unmatched = 0, n_exit = 0;
    int32_t n_outputs = 0, i, j, k, t, *clone_t = NULL, *clone_of = NULL;
    int32_t *redirect = NULL, *map = NULL, *unmatched = NULL, *exits = NULL;
    int32_t *outputs = NULL, kept, at;
    struct smlp__tensor_ir *tensors = NULL;
    struct smlp__node_ir *nodes = NULL, *copy = NULL;
    uint8_t *promote = NULL;
    int32_t *dropped = NULL, n_dropped = 0;
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
    clone_t = ge_realloc(NULL, ((size_t)n_t + 1) * sizeof(*clone_t));
    clone_of = ge_realloc(NULL, ((size_t)n_t + 1) * sizeof(*clone_of));
    names = ge_realloc(NULL, ((size_t)n_t + 1) * sizeof(*names));
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
        names[n_clone++] = ge_prefix_rename(ir->tensors[t].name, src.prefix,
                                            src.len, e->value, dlen);
    }
    for (k = 0; k < n_clone; k++) {
        t = smlp__graph_ir_find_tensor(ir, names[k]);
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
        name = ge_prefix_rename(ir->nodes[i].name, src.prefix, src.len,
                                e->value, dlen);
        j = smlp__graph_ir_find_node(ir, name);
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
    redirect = ge_realloc(NULL, ((size_t)n_t + 1) * sizeof(*redirect));
    unmatched = ge_realloc(NULL, ((size_t)n_t + 1) * sizeof(*unmatched));
    exits = ge_realloc(NULL, ((size_t)n_t + 1) * sizeof(*exits));
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

    /* DST's graph outputs: a copy's activation of the same name takes
     * their place; the others go, with a note. */
    promote = ge_realloc(NULL, (size_t)n_clone + 1);
    memset(promote, 0, (size_t)n_clone + 1);
    dropped = ge_realloc(NULL, ((size_t)n_t + 1) * sizeof(*dropped));
    for (t = 0; t < n_t; t++) {
        if (!(dst.use[t] & USE_OWNED) ||
            ir->tensors[t].kind != SMLP__TENSOR_OUTPUT)
            continue;
        for (k = 0; k < n_clone && strcmp(names[k], ir->tensors[t].name); k++)
            ;
        if (k == n_clone)
            dropped[n_dropped++] = t;
        else if (ir->tensors[clone_t[k]].kind == SMLP__TENSOR_ACTIVATION)
            promote[k] = 1;
    }
    if (n_dropped > 0)
        sg_note("the copy of '%s' has no tensor named as %d graph output%s "
                "of '%s', which go%s: %s",
                src.prefix, (int)n_dropped, n_dropped == 1 ? "" : "s",
                dst.prefix, n_dropped == 1 ? "es" : "",
                tensor_list(ir, dropped, n_dropped, list, sizeof(list)));

    /* The new tensors: DST's own go, the copy's come at the first of
     * them.  map: old index (or n_t + copy index) -> new index. */
    map = ge_realloc(NULL, ((size_t)n_t + n_clone + 1) * sizeof(*map));
    tensors = ge_realloc(NULL, ((size_t)n_t + n_clone + 1) * sizeof(*tensors));
    outputs = ge_realloc(NULL, ((size_t)n_clone + 1) * sizeof(*outputs));
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
                    c->init.seed = ge_fnv1a64(c->name);
                if (c->kind == SMLP__TENSOR_OUTPUT && !promote[k])
                    outputs[n_outputs++] = kept;
                if (promote[k])
                    c->kind = SMLP__TENSOR_OUTPUT;
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
    copy = ge_realloc(NULL, ((size_t)src.n_nodes + 1) * sizeof(*copy));
    for (i = 0, kept = 0; i < ir->n_nodes; i++) {
        const struct smlp__node_ir *s = &ir->nodes[i];
        struct smlp__node_ir *c;

        if (!src.in[i])
            continue;
        c = &copy[kept++];
        memset(c, 0, sizeof(*c));
        c->name = ge_prefix_rename(s->name, src.prefix, src.len, e->value,
                                   dlen);
        c->op = ge_strdup(s->op);
        c->n_inputs = s->n_inputs;
        c->inputs = ge_realloc(NULL, ((size_t)s->n_inputs + 1) *
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
        c->outputs = ge_realloc(NULL, ((size_t)s->n_outputs + 1) *
                                        sizeof(*c->outputs));
        for (k = 0; k < s->n_outputs; k++)
            c->outputs[k] = map[n_t + clone_of[s->outputs[k]]];
        attrs_copy(c, s);
    }
    nodes = ge_realloc(NULL, ((size_t)ir->n_nodes - dst.n_nodes + src.n_nodes +
                            1) * sizeof(*nodes));
    for (i = 0, kept = 0; i < ir->n_nodes; i++) {
        struct smlp__node_ir *n = &ir->nodes[i];

        if (i == dst.first) {
            memcpy(&nodes[kept], copy, (size_t)src.n_nodes * sizeof(*copy));
            kept += src.n_nodes;
        }
        if (dst.in[i]) {
            ge_node_free(n);
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
    free(promote);
    free(dropped);
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
int
ge_apply_sum_tensors(struct smlp__graph_ir *ir, const struct edit *e)
{
    int32_t n_t = ir->n_tensors, i, j, t, out = -1, writer = -1, n_sum = 0;
    int32_t *sum = NULL, *map = NULL, kept, first_new;
    uint8_t *old = NULL, *gone = NULL;
    char *prefix = NULL, *name = NULL;
    size_t plen, nlen;
    int rc = -1;

    out = smlp__graph_ir_find_tensor(ir, e->value);
    if (out >= 0)
        for (i = 0; i < ir->n_nodes && writer < 0; i++)
            for (j = 0; j < ir->nodes[i].n_outputs; j++)
                if (ir->nodes[i].outputs[j] == out)
                    writer = i;
    if (e->key != NULL) {
        prefix = ge_strdup(e->key);
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
        prefix = ge_strndup(ir->nodes[writer].name,
                            (size_t)(dot - ir->nodes[writer].name));
    }
    plen = strlen(prefix);
    nlen = plen + 32; /* prefix.N.out */
    name = ge_realloc(NULL, nlen);

    /* The old chain and the tensors it writes. */
    old = ge_realloc(NULL, (size_t)ir->n_nodes + 1);
    gone = ge_realloc(NULL, (size_t)n_t + 1);
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
    sum = ge_realloc(NULL, ((size_t)n_t + 1) * sizeof(*sum));
    for (t = 0; t < n_t; t++)
        if (!gone[t] && sg_glob(e->glob, ir->tensors[t].name))
            sum[n_sum++] = t;
    if (n_sum == 0) {
        rc = ge_no_match(e, "tensor", e->glob);
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
        i = smlp__graph_ir_find_node(ir, name);
        if (i >= 0 && !old[i]) {
            sg_error("%s '%s': a node named '%s' exists already",
                     edit_opt[e->kind], e->spec, name);
            goto out;
        }
        snprintf(name, nlen, "%s.%d.out", prefix, (int)j);
        t = smlp__graph_ir_find_tensor(ir, j == n_sum - 2 ? e->value : name);
        if (t >= 0 && !gone[t]) {
            sg_error("%s '%s': a tensor named '%s' exists already",
                     edit_opt[e->kind], e->spec,
                     j == n_sum - 2 ? e->value : name);
            goto out;
        }
    }

    /* Remove the old chain's tensors, then its nodes. */
    map = ge_realloc(NULL, ((size_t)n_t + 1) * sizeof(*map));
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
            ge_node_free(n);
            continue;
        }
        smlp__graph_ir_node_remap(n, map);
        ir->nodes[kept++] = *n;
    }
    ir->n_nodes = kept;
    ir->n_tensors = first_new;

    /* The new chain at the end. */
    ir->tensors = ge_realloc(ir->tensors, ((size_t)first_new + n_sum) *
                                            sizeof(*ir->tensors));
    ir->nodes = ge_realloc(ir->nodes, ((size_t)ir->n_nodes + n_sum) *
                                        sizeof(*ir->nodes));
    for (j = 0; j < n_sum - 1; j++) {
        struct smlp__tensor_ir *y = &ir->tensors[ir->n_tensors];
        struct smlp__node_ir *n = &ir->nodes[ir->n_nodes++];
        int last = j == n_sum - 2;

        memset(y, 0, sizeof(*y));
        snprintf(name, nlen, "%s.%d.out", prefix, (int)j);
        y->name = ge_strdup(last ? e->value : name);
        y->dtype = ir->tensors[sum[0]].dtype;
        y->kind = last ? SMLP__TENSOR_OUTPUT : SMLP__TENSOR_ACTIVATION;
        if (last && ir->tensors[sum[0]].has_shape) {
            y->has_shape = 1;
            y->rank = ir->tensors[sum[0]].rank;
            memcpy(y->shape, ir->tensors[sum[0]].shape, sizeof(y->shape));
        }
        memset(n, 0, sizeof(*n));
        snprintf(name, nlen, "%s.%d", prefix, (int)j);
        n->name = ge_strdup(name);
        n->op = ge_strdup("core.add");
        n->n_inputs = 2;
        n->inputs = ge_realloc(NULL, 2 * sizeof(*n->inputs));
        n->inputs[0] = j == 0 ? sum[0] : ir->n_tensors - 1;
        n->inputs[1] = sum[j + 1];
        n->n_outputs = 1;
        n->outputs = ge_realloc(NULL, sizeof(*n->outputs));
        n->outputs[0] = ir->n_tensors++;
    }
    ge_need_plugin(ir, "core", 4);
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
