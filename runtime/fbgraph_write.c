/*
 * fbgraph_write.c - writing an IR as a smlp graph FlatBuffer
 * (schemas/graph.fbs, file identifier "SMLG"), and releasing and copying
 * IRs.  The reader is fbgraph.c.
 *
 * FlatBuffers builders usually write back to front; this writer goes
 * front to back, which is simpler and as valid.  The only constraint is
 * that a uoffset is unsigned, so whatever a reference points to must come
 * after the reference: each table is written with placeholder references,
 * its children (strings, vectors, sub-tables) follow it, and the
 * placeholders are patched once the children's positions are known.  A
 * table's vtable is written just before it, or shared with an identical
 * recent one.  Every value is placed at a position aligned to its size
 * (8 for long and double, including [long] and [double] vector data), so
 * flatc's verifier and our reader (fbgraph.c) accept the result.
 *
 * Scalars equal to their schema default are left out, as flatc does; the
 * default is compared bit for bit, so -0.0 is written and reads back as
 * -0.0.  The IR is checked first against the rules the reader enforces,
 * so that whatever this writer accepts decodes back to an equal IR.
 *
 * IR memory comes from malloc and goes back with free, as in fbgraph.c.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph_ir.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "the FlatBuffers writer assumes a little-endian host");

/* FlatBuffers offsets are 32-bit and soffsets signed: 2 GiB at most. */
#define FBW_MAX_SIZE ((size_t)INT32_MAX)
/* Vtables compared for sharing: the last few written. */
#define FBW_VT_CACHE 16
/* Most fields of a table in our schema (Attr has 7). */
#define FBW_MAX_FIELDS 8

/* Field ids: the order of the fields in schemas/graph.fbs. */
enum { GRAPH_VERSION, GRAPH_NAME, GRAPH_PLUGINS, GRAPH_TENSORS, GRAPH_NODES,
       GRAPH_METADATA };
enum { TENSOR_NAME, TENSOR_DTYPE, TENSOR_KIND, TENSOR_SHAPE, TENSOR_INIT };
enum { INIT_KIND, INIT_A, INIT_B, INIT_SEED };
enum { NODE_NAME, NODE_OP, NODE_INPUTS, NODE_OUTPUTS, NODE_ATTRS };
enum { ATTR_NAME, ATTR_TYPE, ATTR_I, ATTR_F, ATTR_S, ATTR_INTS,
       ATTR_FLOATS };
enum { KV_KEY, KV_VALUE };

/* The growing output.  After a failure (status != 0) nothing is written
 * any more and positions are meaningless; the caller checks at the end. */
struct fbw {
    uint8_t *buf;
    size_t len;
    size_t cap;
    int status;
    size_t vt[FBW_VT_CACHE];
    int n_vt;
    int next_vt;
};

/* One field of a table being built.  A reference (slot != NULL) is a
 * 4-byte placeholder whose position is stored in *slot by fbw_table_end. */
struct fbw_field {
    int id;
    size_t size;
    uint8_t value[8];
    size_t *slot;
};

struct fbw_table {
    int n;
    struct fbw_field f[FBW_MAX_FIELDS];
};

/* Appends n zero bytes; returns their position. */
static size_t
fbw_grow(struct fbw *w, size_t n)
{
    size_t pos = w->len, cap;
    uint8_t *p;

    if (w->status != SMLP_OK)
        return 0;
    if (n > FBW_MAX_SIZE - w->len) {
        w->status = SMLP_ELIMIT;
        return 0;
    }
    if (n > w->cap - w->len) {
        cap = w->cap > 0 ? w->cap : 4096;
        while (cap - w->len < n)
            cap *= 2;
        p = realloc(w->buf, cap);
        if (p == NULL) {
            w->status = SMLP_ENOMEM;
            return 0;
        }
        w->buf = p;
        w->cap = cap;
    }
    memset(w->buf + pos, 0, n);
    w->len += n;
    return pos;
}

static void
fbw_set(struct fbw *w, size_t at, const void *p, size_t n)
{
    if (w->status == SMLP_OK)
        memcpy(w->buf + at, p, n);
}

static size_t
fbw_put(struct fbw *w, const void *p, size_t n)
{
    size_t pos = fbw_grow(w, n);

    fbw_set(w, pos, p, n);
    return pos;
}

static void
fbw_pad(struct fbw *w, size_t align)
{
    fbw_grow(w, (align - w->len % align) % align);
}

/* Stores at `slot` the uoffset to `target`, which lies after it. */
static void
fbw_link(struct fbw *w, size_t slot, size_t target)
{
    uint32_t off = (uint32_t)(target - slot);

    fbw_set(w, slot, &off, sizeof(off));
}

static void
fbw_scalar(struct fbw_table *t, int id, const void *value, size_t size)
{
    struct fbw_field *f = &t->f[t->n++];

    f->id = id;
    f->size = size;
    memcpy(f->value, value, size);
    f->slot = NULL;
}

static void
fbw_ref(struct fbw_table *t, int id, size_t *slot)
{
    struct fbw_field *f = &t->f[t->n++];

    f->id = id;
    f->size = 4;
    memset(f->value, 0, sizeof(f->value));
    f->slot = slot;
}

/* Returns the position of a vtable equal to vt[0..size), or writes one. */
static size_t
fbw_vtable(struct fbw *w, const uint8_t *vt, size_t size)
{
    size_t pos;
    int i;

    for (i = 0; i < w->n_vt && w->status == SMLP_OK; i++)
        if (memcmp(w->buf + w->vt[i], vt, 2) == 0 &&
            memcmp(w->buf + w->vt[i], vt, size) == 0)
            return w->vt[i];
    fbw_pad(w, 2);
    pos = fbw_put(w, vt, size);
    w->vt[w->next_vt] = pos;
    w->next_vt = (w->next_vt + 1) % FBW_VT_CACHE;
    if (w->n_vt < FBW_VT_CACHE)
        w->n_vt++;
    return pos;
}

/*
 * Writes the vtable and the table: the soffset, then the fields from the
 * largest to the smallest, each aligned to its size.  Returns the table's
 * position and fills the reference slots.
 */
static size_t
fbw_table_end(struct fbw *w, struct fbw_table *t)
{
    uint8_t vt[4 + 2 * FBW_MAX_FIELDS] = {0};
    size_t off[FBW_MAX_FIELDS], order[FBW_MAX_FIELDS];
    size_t i, j, k, o = 4, align = 4, n_ids = 0, pos, vt_pos;
    uint16_t v16;
    int32_t soff;

    for (i = 0; i < (size_t)t->n; i++) {
        for (j = i; j > 0 && t->f[order[j - 1]].size < t->f[i].size; j--)
            order[j] = order[j - 1];
        order[j] = i;
    }
    for (k = 0; k < (size_t)t->n; k++) {
        i = order[k];
        o = (o + t->f[i].size - 1) / t->f[i].size * t->f[i].size;
        off[i] = o;
        o += t->f[i].size;
        if (t->f[i].size > align)
            align = t->f[i].size;
        if ((size_t)t->f[i].id + 1 > n_ids)
            n_ids = (size_t)t->f[i].id + 1;
        v16 = (uint16_t)off[i];
        memcpy(vt + 4 + 2 * t->f[i].id, &v16, 2);
    }
    v16 = (uint16_t)(4 + 2 * n_ids);
    memcpy(vt, &v16, 2);
    v16 = (uint16_t)o;
    memcpy(vt + 2, &v16, 2);
    vt_pos = fbw_vtable(w, vt, 4 + 2 * n_ids);
    fbw_pad(w, align);
    pos = fbw_grow(w, o);
    soff = (int32_t)(pos - vt_pos);
    fbw_set(w, pos, &soff, sizeof(soff));
    for (i = 0; i < (size_t)t->n; i++) {
        fbw_set(w, pos + off[i], t->f[i].value, t->f[i].size);
        if (t->f[i].slot != NULL)
            *t->f[i].slot = pos + off[i];
    }
    return pos;
}

/* Writes a string (length, bytes, NUL); returns its position. */
static size_t
fbw_string(struct fbw *w, const char *s)
{
    uint32_t n = (uint32_t)strlen(s);
    size_t pos;

    fbw_pad(w, 4);
    pos = fbw_put(w, &n, sizeof(n));
    fbw_put(w, s, (size_t)n + 1);
    return pos;
}

/* Writes a vector of n scalars of esize (4 or 8) bytes, its data aligned
 * to esize; returns the position of its length. */
static size_t
fbw_vector(struct fbw *w, const void *data, size_t n, size_t esize)
{
    uint32_t n32 = (uint32_t)n;
    size_t pos;

    fbw_pad(w, 4);
    if (esize == 8 && w->len % 8 == 0)
        fbw_grow(w, 4);
    pos = fbw_put(w, &n32, sizeof(n32));
    if (n > 0)
        fbw_put(w, data, n * esize);
    return pos;
}

/* Writes the length of a vector of n references and n zeroed slots;
 * returns the position of the length (slot i is at pos + 4 + 4 * i). */
static size_t
fbw_offsets(struct fbw *w, size_t n)
{
    uint32_t n32 = (uint32_t)n;
    size_t pos;

    fbw_pad(w, 4);
    pos = fbw_put(w, &n32, sizeof(n32));
    fbw_grow(w, 4 * n);
    return pos;
}

/* Whether the n bytes at p differ from all-zero bits (a zero default). */
static int
nonzero(const void *p, size_t n)
{
    const uint8_t *b = p;
    size_t i;

    for (i = 0; i < n; i++)
        if (b[i] != 0)
            return 1;
    return 0;
}

static void
write_tensor(struct fbw *w, size_t slot, const struct smlp__tensor_ir *ten)
{
    struct fbw_table t = {0}, it = {0};
    const struct smlp__init_ir *init = &ten->init;
    size_t name, shape = 0, init_slot = 0;
    int8_t dtype = (int8_t)ten->dtype, kind = (int8_t)ten->kind;
    int8_t ikind = (int8_t)init->kind;

    fbw_ref(&t, TENSOR_NAME, &name);
    if (dtype != 0)
        fbw_scalar(&t, TENSOR_DTYPE, &dtype, 1);
    if (kind != 0)
        fbw_scalar(&t, TENSOR_KIND, &kind, 1);
    if (ten->has_shape)
        fbw_ref(&t, TENSOR_SHAPE, &shape);
    if (init->present)
        fbw_ref(&t, TENSOR_INIT, &init_slot);
    fbw_link(w, slot, fbw_table_end(w, &t));
    fbw_link(w, name, fbw_string(w, ten->name));
    if (ten->has_shape)
        fbw_link(w, shape, fbw_vector(w, ten->shape, (size_t)ten->rank, 8));
    if (!init->present)
        return;
    if (ikind != 0)
        fbw_scalar(&it, INIT_KIND, &ikind, 1);
    if (nonzero(&init->a, 8))
        fbw_scalar(&it, INIT_A, &init->a, 8);
    if (nonzero(&init->b, 8))
        fbw_scalar(&it, INIT_B, &init->b, 8);
    if (init->seed != 0)
        fbw_scalar(&it, INIT_SEED, &init->seed, 8);
    fbw_link(w, init_slot, fbw_table_end(w, &it));
}

static void
write_attr(struct fbw *w, size_t slot, const struct smlp__attr_ir *a)
{
    struct fbw_table t = {0};
    size_t name, s = 0, vec = 0;
    int8_t type = (int8_t)a->type;
    int list = a->n_values > 0 && (a->type == SMLP_ATTR_INTS ||
                                   a->type == SMLP_ATTR_FLOATS);

    fbw_ref(&t, ATTR_NAME, &name);
    if (type != 0)
        fbw_scalar(&t, ATTR_TYPE, &type, 1);
    if (a->i != 0)
        fbw_scalar(&t, ATTR_I, &a->i, 8);
    if (nonzero(&a->f, 8))
        fbw_scalar(&t, ATTR_F, &a->f, 8);
    if (a->s != NULL)
        fbw_ref(&t, ATTR_S, &s);
    if (list)
        fbw_ref(&t, a->type == SMLP_ATTR_INTS ? ATTR_INTS : ATTR_FLOATS,
                &vec);
    fbw_link(w, slot, fbw_table_end(w, &t));
    fbw_link(w, name, fbw_string(w, a->name));
    if (a->s != NULL)
        fbw_link(w, s, fbw_string(w, a->s));
    if (list)
        fbw_link(w, vec, fbw_vector(w, a->type == SMLP_ATTR_INTS
                                           ? (const void *)a->ints
                                           : (const void *)a->floats,
                                    a->n_values, 8));
}

static void
write_node(struct fbw *w, size_t slot, const struct smlp__node_ir *n)
{
    struct fbw_table t = {0};
    size_t name, op, in = 0, out = 0, attrs = 0, v;
    int32_t i;

    fbw_ref(&t, NODE_NAME, &name);
    fbw_ref(&t, NODE_OP, &op);
    if (n->n_inputs > 0)
        fbw_ref(&t, NODE_INPUTS, &in);
    if (n->n_outputs > 0)
        fbw_ref(&t, NODE_OUTPUTS, &out);
    if (n->n_attrs > 0)
        fbw_ref(&t, NODE_ATTRS, &attrs);
    fbw_link(w, slot, fbw_table_end(w, &t));
    fbw_link(w, name, fbw_string(w, n->name));
    fbw_link(w, op, fbw_string(w, n->op));
    if (n->n_inputs > 0)
        fbw_link(w, in, fbw_vector(w, n->inputs, (size_t)n->n_inputs, 4));
    if (n->n_outputs > 0)
        fbw_link(w, out,
                 fbw_vector(w, n->outputs, (size_t)n->n_outputs, 4));
    if (n->n_attrs <= 0)
        return;
    v = fbw_offsets(w, (size_t)n->n_attrs);
    fbw_link(w, attrs, v);
    for (i = 0; i < n->n_attrs; i++)
        write_attr(w, v + 4 + 4 * (size_t)i, &n->attrs[i]);
}

static void
write_meta(struct fbw *w, size_t slot, const struct smlp__meta_ir *m)
{
    struct fbw_table t = {0};
    size_t key, value = 0;

    fbw_ref(&t, KV_KEY, &key);
    if (m->value != NULL)
        fbw_ref(&t, KV_VALUE, &value);
    fbw_link(w, slot, fbw_table_end(w, &t));
    fbw_link(w, key, fbw_string(w, m->key));
    if (m->value != NULL)
        fbw_link(w, value, fbw_string(w, m->value));
}

static void
write_graph(struct fbw *w, const struct smlp__graph_ir *ir)
{
    struct fbw_table t = {0};
    size_t name, plugins = 0, tensors = 0, nodes = 0, meta = 0, v;
    int32_t i;

    fbw_grow(w, 8);
    fbw_set(w, 4, "SMLG", 4);
    if (ir->format_version != SMLP__GRAPH_FORMAT_VERSION)
        fbw_scalar(&t, GRAPH_VERSION, &ir->format_version, 4);
    fbw_ref(&t, GRAPH_NAME, &name);
    if (ir->n_plugins > 0)
        fbw_ref(&t, GRAPH_PLUGINS, &plugins);
    if (ir->n_tensors > 0)
        fbw_ref(&t, GRAPH_TENSORS, &tensors);
    if (ir->n_nodes > 0)
        fbw_ref(&t, GRAPH_NODES, &nodes);
    if (ir->n_meta > 0)
        fbw_ref(&t, GRAPH_METADATA, &meta);
    fbw_link(w, 0, fbw_table_end(w, &t));
    fbw_link(w, name, fbw_string(w, ir->name));
    if (ir->n_plugins > 0) {
        v = fbw_offsets(w, (size_t)ir->n_plugins);
        fbw_link(w, plugins, v);
        for (i = 0; i < ir->n_plugins; i++)
            fbw_link(w, v + 4 + 4 * (size_t)i,
                     fbw_string(w, ir->plugins[i]));
    }
    if (ir->n_tensors > 0) {
        v = fbw_offsets(w, (size_t)ir->n_tensors);
        fbw_link(w, tensors, v);
        for (i = 0; i < ir->n_tensors; i++)
            write_tensor(w, v + 4 + 4 * (size_t)i, &ir->tensors[i]);
    }
    if (ir->n_nodes > 0) {
        v = fbw_offsets(w, (size_t)ir->n_nodes);
        fbw_link(w, nodes, v);
        for (i = 0; i < ir->n_nodes; i++)
            write_node(w, v + 4 + 4 * (size_t)i, &ir->nodes[i]);
    }
    if (ir->n_meta > 0) {
        v = fbw_offsets(w, (size_t)ir->n_meta);
        fbw_link(w, meta, v);
        for (i = 0; i < ir->n_meta; i++)
            write_meta(w, v + 4 + 4 * (size_t)i, &ir->meta[i]);
    }
}

/* ---- Checking the IR before it is written ---- */

/* The caller's message buffer and the place being checked. */
struct fbw_check {
    char *err;
    size_t errlen;
    const char *graph;
    char loc[192];
};

/* Formats "cannot encode graph 'NAME': LOC: message"; returns status. */
static int
vrefuse(struct fbw_check *c, int status, const char *fmt, va_list ap)
{
    char msg[320];

    if (c->err != NULL && c->errlen > 0) {
        vsnprintf(msg, sizeof(msg), fmt, ap);
        snprintf(c->err, c->errlen, "cannot encode graph '%.64s': %s%s%s",
                 c->graph, c->loc, c->loc[0] != '\0' ? ": " : "", msg);
    }
    return status;
}

static int __attribute__((format(printf, 3, 4)))
refuse(struct fbw_check *c, int status, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = vrefuse(c, status, fmt, ap);
    va_end(ap);
    return rc;
}

/* refuse() with SMLP_EINVAL, for an IR that breaks a rule. */
static int __attribute__((format(printf, 2, 3)))
invalid(struct fbw_check *c, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = vrefuse(c, SMLP_EINVAL, fmt, ap);
    va_end(ap);
    return rc;
}

/* Checks a string the reader would accept: present unless optional, no
 * longer than SMLP__MAX_STRING. */
static int
check_str(struct fbw_check *c, const char *s, int optional,
          const char *name)
{
    if (s == NULL)
        return optional ? SMLP_OK : invalid(c, "%s is NULL", name);
    if (strlen(s) > SMLP__MAX_STRING)
        return invalid(c, "%s is longer than %d bytes", name,
                       SMLP__MAX_STRING);
    return SMLP_OK;
}

/* Checks an array count against [0, max] and its pointer. */
static int
check_count(struct fbw_check *c, int64_t n, const void *p, int64_t max,
            const char *name)
{
    if (n < 0 || n > max)
        return invalid(c, "%" PRId64 " %s, out of range [0, %" PRId64 "]",
                       n, name, max);
    if (n > 0 && p == NULL)
        return invalid(c, "%" PRId64 " %s but the array is NULL", n, name);
    return SMLP_OK;
}

static int
check_tensor(struct fbw_check *c, const struct smlp__tensor_ir *t)
{
    int rc = check_str(c, t->name, 0, "name");

    if (rc != SMLP_OK)
        return rc;
    if (t->dtype < 0 || t->dtype >= SMLP_DTYPE_COUNT)
        return invalid(c, "dtype %" PRId32 " is out of range", t->dtype);
    if (t->kind < 0 || t->kind >= SMLP__TENSOR_KIND_COUNT)
        return invalid(c, "kind %" PRId32 " is out of range", t->kind);
    if (t->has_shape != 0 && t->has_shape != 1)
        return invalid(c, "has_shape is %" PRId32 ", not 0 or 1",
                       t->has_shape);
    if (t->rank < 0 || t->rank > (t->has_shape ? SMLP_MAX_RANK : 0))
        return invalid(c, "rank %" PRId32 " is out of range (has_shape "
                       "%" PRId32 ")", t->rank, t->has_shape);
    if (t->init.present != 0 && t->init.present != 1)
        return invalid(c, "init.present is %" PRId32 ", not 0 or 1",
                       t->init.present);
    if (t->init.present &&
        (t->init.kind < 0 || t->init.kind >= SMLP__INIT_KIND_COUNT))
        return invalid(c, "init kind %" PRId32 " is out of range",
                       t->init.kind);
    return SMLP_OK;
}

/* The value rules of fbgraph.c: only the field of the type is set. */
static int
check_attr(struct fbw_check *c, const struct smlp__attr_ir *a)
{
    int rc = check_str(c, a->name, 0, "name");
    int list = a->type == SMLP_ATTR_INTS || a->type == SMLP_ATTR_FLOATS;

    if (rc == SMLP_OK)
        rc = check_str(c, a->s, 1, "s");
    if (rc != SMLP_OK)
        return rc;
    if (a->type < 0 || a->type >= SMLP_ATTR_TYPE_COUNT)
        return invalid(c, "type %" PRId32 " is out of range", a->type);
    if ((a->type != SMLP_ATTR_INT && a->i != 0) ||
        (a->type != SMLP_ATTR_FLOAT && nonzero(&a->f, 8)) ||
        (a->type != SMLP_ATTR_STRING && a->s != NULL) ||
        (!list && a->n_values != 0) ||
        (a->type == SMLP_ATTR_INTS && a->floats != NULL) ||
        (a->type == SMLP_ATTR_FLOATS && a->ints != NULL))
        return invalid(c, "holds a value that is not of its type %" PRId32,
                       a->type);
    if (a->type == SMLP_ATTR_STRING && a->s == NULL)
        return invalid(c, "type String but s is NULL");
    if (a->n_values > FBW_MAX_SIZE / 8)
        return invalid(c, "%zu values is too many", a->n_values);
    if (a->n_values > 0 &&
        (a->type == SMLP_ATTR_INTS ? (const void *)a->ints
                                   : (const void *)a->floats) == NULL)
        return invalid(c, "%zu values but the array is NULL", a->n_values);
    return SMLP_OK;
}

static int
check_node(struct fbw_check *c, const struct smlp__node_ir *n,
           int32_t n_tensors)
{
    int32_t i, j;
    int rc;

    rc = check_str(c, n->name, 0, "name");
    if (rc == SMLP_OK)
        rc = check_str(c, n->op, 0, "op");
    if (rc == SMLP_OK)
        rc = check_count(c, n->n_inputs, n->inputs, SMLP__MAX_NODE_IO,
                         "inputs");
    if (rc == SMLP_OK)
        rc = check_count(c, n->n_outputs, n->outputs, SMLP__MAX_NODE_IO,
                         "outputs");
    if (rc == SMLP_OK)
        rc = check_count(c, n->n_attrs, n->attrs, SMLP__MAX_ATTRS, "attrs");
    if (rc != SMLP_OK)
        return rc;
    for (i = 0; i < n->n_inputs; i++)
        if (n->inputs[i] < -1 || n->inputs[i] >= n_tensors)
            return invalid(c, "input %" PRId32 " is tensor %" PRId32
                           ", out of range", i, n->inputs[i]);
    for (i = 0; i < n->n_outputs; i++)
        if (n->outputs[i] < 0 || n->outputs[i] >= n_tensors)
            return invalid(c, "output %" PRId32 " is tensor %" PRId32
                           ", out of range", i, n->outputs[i]);
    for (i = 0; i < n->n_attrs; i++) {
        size_t at = strlen(c->loc);

        /* "node N 'name': attr I 'name': ..." as the reader says it. */
        snprintf(c->loc + at, sizeof(c->loc) - at, ": attr %" PRId32
                 " '%.64s'", i, n->attrs[i].name != NULL ? n->attrs[i].name
                                                         : "");
        rc = check_attr(c, &n->attrs[i]);
        c->loc[at] = '\0';
        if (rc != SMLP_OK)
            return rc;
        for (j = 0; j < i; j++)
            if (strcmp(n->attrs[j].name, n->attrs[i].name) == 0)
                return invalid(c, "attrs %" PRId32 " and %" PRId32
                               " have the same name", j, i);
    }
    return SMLP_OK;
}

/* Checks everything the reader would refuse; returns SMLP_EINVAL. */
static int
check_graph(struct fbw_check *c, const struct smlp__graph_ir *ir)
{
    int32_t i;
    int rc;

    rc = check_str(c, ir->name, 0, "the graph's name");
    if (rc == SMLP_OK)
        rc = check_count(c, ir->n_plugins, ir->plugins, SMLP__MAX_PLUGINS,
                         "plugins");
    if (rc == SMLP_OK)
        rc = check_count(c, ir->n_tensors, ir->tensors, SMLP__MAX_TENSORS,
                         "tensors");
    if (rc == SMLP_OK)
        rc = check_count(c, ir->n_nodes, ir->nodes, SMLP__MAX_NODES,
                         "nodes");
    if (rc == SMLP_OK)
        rc = check_count(c, ir->n_meta, ir->meta, SMLP__MAX_META,
                         "metadata entries");
    for (i = 0; rc == SMLP_OK && i < ir->n_plugins; i++) {
        snprintf(c->loc, sizeof(c->loc), "plugin %" PRId32, i);
        rc = check_str(c, ir->plugins[i], 0, "name");
    }
    for (i = 0; rc == SMLP_OK && i < ir->n_tensors; i++) {
        snprintf(c->loc, sizeof(c->loc), "tensor %" PRId32 " '%.64s'", i,
                 ir->tensors[i].name != NULL ? ir->tensors[i].name : "");
        rc = check_tensor(c, &ir->tensors[i]);
    }
    for (i = 0; rc == SMLP_OK && i < ir->n_nodes; i++) {
        snprintf(c->loc, sizeof(c->loc), "node %" PRId32 " '%.64s'", i,
                 ir->nodes[i].name != NULL ? ir->nodes[i].name : "");
        rc = check_node(c, &ir->nodes[i], ir->n_tensors);
    }
    for (i = 0; rc == SMLP_OK && i < ir->n_meta; i++) {
        snprintf(c->loc, sizeof(c->loc), "metadata %" PRId32, i);
        rc = check_str(c, ir->meta[i].key, 0, "key");
        if (rc == SMLP_OK)
            rc = check_str(c, ir->meta[i].value, 1, "value");
    }
    return rc;
}

/*
 * See graph_ir.h.  Returns SMLP_OK, SMLP_EINVAL (an IR the reader would
 * refuse, or NULL arguments; the message names the tensor, node or attr),
 * SMLP_ENOMEM or SMLP_ELIMIT (over 2 GiB).  On failure *out is NULL.
 */
int
smlp__graph_ir_encode(const struct smlp__graph_ir *ir, uint8_t **out,
                      size_t *len, char *err, size_t errlen)
{
    struct fbw_check c;
    struct fbw w;
    int rc;

    memset(&c, 0, sizeof(c));
    c.err = err;
    c.errlen = errlen;
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (out == NULL || len == NULL || ir == NULL) {
        c.graph = "?";
        return invalid(&c, "no graph or no place for the result");
    }
    *out = NULL;
    *len = 0;
    c.graph = ir->name != NULL ? ir->name : "";
    rc = check_graph(&c, ir);
    if (rc != SMLP_OK)
        return rc;

    memset(&w, 0, sizeof(w));
    write_graph(&w, ir);
    if (w.status != SMLP_OK)
        goto out_free_buf;
    *out = w.buf;
    *len = w.len;
    return SMLP_OK;

out_free_buf:
    free(w.buf);
    c.loc[0] = '\0';
    if (w.status == SMLP_ENOMEM)
        return refuse(&c, SMLP_ENOMEM, "out of memory");
    return refuse(&c, SMLP_ELIMIT, "the graph needs more than %zu bytes",
                  FBW_MAX_SIZE);
}

/* ---- Releasing and copying an IR ---- */

static void
free_node(struct smlp__node_ir *n)
{
    int32_t i;

    free(n->name);
    free(n->op);
    free(n->inputs);
    free(n->outputs);
    for (i = 0; n->attrs != NULL && i < n->n_attrs; i++) {
        free(n->attrs[i].name);
        free(n->attrs[i].s);
        free(n->attrs[i].ints);
        free(n->attrs[i].floats);
    }
    free(n->attrs);
}

/*
 * Frees an IR and everything it owns.  Works on a partly built IR, as
 * long as its arrays were zeroed when made and counts never exceed what
 * was allocated (the decoder and smlp__graph_ir_clone keep to this).
 */
void
smlp__graph_ir_free(struct smlp__graph_ir *ir)
{
    int32_t i;

    if (ir == NULL)
        return;
    free(ir->name);
    for (i = 0; ir->plugins != NULL && i < ir->n_plugins; i++)
        free(ir->plugins[i]);
    free(ir->plugins);
    for (i = 0; ir->tensors != NULL && i < ir->n_tensors; i++)
        free(ir->tensors[i].name);
    free(ir->tensors);
    for (i = 0; ir->nodes != NULL && i < ir->n_nodes; i++)
        free_node(&ir->nodes[i]);
    free(ir->nodes);
    for (i = 0; ir->meta != NULL && i < ir->n_meta; i++) {
        free(ir->meta[i].key);
        free(ir->meta[i].value);
    }
    free(ir->meta);
    free(ir);
}

/* Copies n items of `size` bytes from src into a new array at *dst (NULL
 * when n is 0 or src is NULL).  Returns -1 when out of memory. */
static int
copy_array(void *dst, const void *src, size_t n, size_t size)
{
    void *p = NULL;

    if (n > 0 && src != NULL) {
        p = calloc(n, size);
        if (p == NULL)
            return -1;
        memcpy(p, src, n * size);
    }
    memcpy(dst, &p, sizeof(p));
    return 0;
}

static int
copy_str(char **dst, const char *src)
{
    *dst = NULL;
    return src == NULL ? 0 : copy_array(dst, src, strlen(src) + 1, 1);
}

/*
 * Deep-copies node src into dst, whose pointers must all be NULL; on
 * failure dst holds what was copied so far (free_node releases it).
 */
static int
copy_node(struct smlp__node_ir *dst, const struct smlp__node_ir *src)
{
    struct smlp__attr_ir *a;
    int32_t i;

    if (copy_str(&dst->name, src->name) || copy_str(&dst->op, src->op) ||
        copy_array(&dst->inputs, src->inputs, (size_t)src->n_inputs, 4) ||
        copy_array(&dst->outputs, src->outputs, (size_t)src->n_outputs, 4))
        return -1;
    dst->n_inputs = dst->inputs != NULL ? src->n_inputs : 0;
    dst->n_outputs = dst->outputs != NULL ? src->n_outputs : 0;
    if (src->n_attrs <= 0 || src->attrs == NULL)
        return 0;
    dst->attrs = calloc((size_t)src->n_attrs, sizeof(*dst->attrs));
    if (dst->attrs == NULL)
        return -1;
    dst->n_attrs = src->n_attrs;
    for (i = 0; i < src->n_attrs; i++) {
        a = &dst->attrs[i];
        a->type = src->attrs[i].type;
        a->i = src->attrs[i].i;
        a->f = src->attrs[i].f;
        a->n_values = src->attrs[i].n_values;
        if (copy_str(&a->name, src->attrs[i].name) ||
            copy_str(&a->s, src->attrs[i].s) ||
            copy_array(&a->ints, src->attrs[i].ints, a->n_values, 8) ||
            copy_array(&a->floats, src->attrs[i].floats, a->n_values, 8))
            return -1;
    }
    return 0;
}

/*
 * See graph_ir.h.  Copies every field as it is, without checking the IR
 * (an IR being edited may be invalid for a while); NULL pointers stay
 * NULL.  Returns NULL when ir is NULL or memory runs out.
 */
struct smlp__graph_ir *
smlp__graph_ir_clone(const struct smlp__graph_ir *ir)
{
    struct smlp__graph_ir *c;
    int32_t i;

    if (ir == NULL)
        return NULL;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->format_version = ir->format_version;
    if (copy_str(&c->name, ir->name))
        goto out_free_copy;
    if (ir->n_plugins > 0 && ir->plugins != NULL) {
        c->plugins = calloc((size_t)ir->n_plugins, sizeof(*c->plugins));
        if (c->plugins == NULL)
            goto out_free_copy;
        c->n_plugins = ir->n_plugins;
        for (i = 0; i < ir->n_plugins; i++)
            if (copy_str(&c->plugins[i], ir->plugins[i]))
                goto out_free_copy;
    }
    if (ir->n_tensors > 0 && ir->tensors != NULL) {
        c->tensors = calloc((size_t)ir->n_tensors, sizeof(*c->tensors));
        if (c->tensors == NULL)
            goto out_free_copy;
        c->n_tensors = ir->n_tensors;
        for (i = 0; i < ir->n_tensors; i++) {
            c->tensors[i] = ir->tensors[i];
            if (copy_str(&c->tensors[i].name, ir->tensors[i].name))
                goto out_free_copy;
        }
    }
    if (ir->n_nodes > 0 && ir->nodes != NULL) {
        c->nodes = calloc((size_t)ir->n_nodes, sizeof(*c->nodes));
        if (c->nodes == NULL)
            goto out_free_copy;
        c->n_nodes = ir->n_nodes;
        for (i = 0; i < ir->n_nodes; i++)
            if (copy_node(&c->nodes[i], &ir->nodes[i]))
                goto out_free_copy;
    }
    if (ir->n_meta > 0 && ir->meta != NULL) {
        c->meta = calloc((size_t)ir->n_meta, sizeof(*c->meta));
        if (c->meta == NULL)
            goto out_free_copy;
        c->n_meta = ir->n_meta;
        for (i = 0; i < ir->n_meta; i++)
            if (copy_str(&c->meta[i].key, ir->meta[i].key) ||
                copy_str(&c->meta[i].value, ir->meta[i].value))
                goto out_free_copy;
    }
    return c;

out_free_copy:
    smlp__graph_ir_free(c);
    return NULL;
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

/* See graph_ir.h. */
struct smlp__attr_ir *
smlp__graph_ir_node_attr(struct smlp__node_ir *n, const char *name)
{
    struct smlp__attr_ir *a;
    char *copy = NULL;
    int32_t i, at;

    for (i = 0; i < n->n_attrs; i++)
        if (strcmp(n->attrs[i].name, name) == 0)
            return &n->attrs[i];
    if (n->n_attrs >= SMLP__MAX_ATTRS || copy_str(&copy, name) != 0)
        return NULL;
    a = realloc(n->attrs, ((size_t)n->n_attrs + 1) * sizeof(*a));
    if (a == NULL) {
        free(copy);
        return NULL;
    }
    n->attrs = a;
    at = n->n_attrs;
    if (attrs_sorted(n))
        for (at = 0; at < n->n_attrs && strcmp(a[at].name, name) < 0; at++)
            ;
    memmove(&a[at + 1], &a[at], (size_t)(n->n_attrs - at) * sizeof(*a));
    n->n_attrs++;
    memset(&a[at], 0, sizeof(*a));
    a[at].name = copy;
    return &a[at];
}
