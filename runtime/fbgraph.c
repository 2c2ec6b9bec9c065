/*
 * fbgraph.c - the verifying reader of smlp graph files.
 *
 * A graph file is a FlatBuffer of schemas/graph.fbs.  Debian has no C
 * FlatBuffers library, so this file reads the format directly:
 *
 *   bytes 0..4   uoffset of the root table (Graph)
 *   bytes 4..8   file identifier "SMLG"
 *   table        int32 soffset; its vtable lies at (table - soffset)
 *   vtable       uint16 vtable size, uint16 object size, then one uint16
 *                per field: the field's offset in the table, 0 = absent
 *   reference    a uint32 uoffset, relative to where it is stored, to a
 *                table, a string (uint32 length, bytes, NUL) or a vector
 *                (uint32 length, elements; tables and strings by uoffset)
 *
 * The buffer is untrusted (graphs are downloaded), so nothing in it is
 * used before it is checked: every table, vtable, field, offset, vector
 * and string goes through the fb_* helpers below, which check that the
 * bytes lie inside the buffer (and inside the table's object), are
 * aligned, and that counts, lengths, enums and indices are in range and
 * strings well-formed UTF-8 (as FlatBuffers requires).  The check and the
 * read happen in one pass, and every multi-byte value is read with
 * memcpy, so unaligned or hostile input can neither crash nor trap.
 * Shared sub-objects are legal in FlatBuffers; a budget on the bytes the
 * IR may take (a multiple of the file size) stops a small file from
 * expanding into gigabytes through them.  Fields that this reader does
 * not know (added by a newer schema) are skipped unread, as FlatBuffers
 * intends.  The format version is not checked here (graph.c does), so
 * that tools can still decode and mend a graph the runtime refuses.
 *
 * Messages name the input, the place and the fault: "g.fbs: tensor 12
 * 'blocks.0.w': shape vector (offset 4096, 3 x 8 bytes) runs past the end
 * of the file (4100 bytes)".  Memory comes from malloc and goes back with
 * free (smlp__graph_ir_free), so this convenience library and its test do
 * not need the rest of the runtime.  The writer, smlp__graph_ir_free and
 * smlp__graph_ir_clone are in fbgraph_write.c.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph_ir.h"
#include "utf8.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "the FlatBuffers reader assumes a little-endian host");

/*
 * Tables may nest this deep.  Our schema needs 3 (Graph, Tensor or Node,
 * Init or Attr) and is not recursive; the bound keeps it so if it grows.
 */
#define FB_MAX_DEPTH 8
/* The IR may take FB_EXPAND bytes per byte of file, plus FB_SLACK. */
#define FB_EXPAND 32
#define FB_SLACK ((size_t)1 << 20)

/* Field ids: the order of the fields in schemas/graph.fbs. */
enum { GRAPH_VERSION, GRAPH_NAME, GRAPH_PLUGINS, GRAPH_TENSORS, GRAPH_NODES,
       GRAPH_METADATA };
enum { TENSOR_NAME, TENSOR_DTYPE, TENSOR_KIND, TENSOR_SHAPE, TENSOR_INIT };
enum { INIT_KIND, INIT_A, INIT_B, INIT_SEED };
enum { NODE_NAME, NODE_OP, NODE_INPUTS, NODE_OUTPUTS, NODE_ATTRS };
enum { ATTR_NAME, ATTR_TYPE, ATTR_I, ATTR_F, ATTR_S, ATTR_INTS,
       ATTR_FLOATS };
enum { KV_KEY, KV_VALUE };

/* The state of one decode. */
struct fb_reader {
    const uint8_t *buf;
    size_t len;
    const char *what; /* the input's name, for messages */
    char *err;
    size_t errlen;
    size_t limit;   /* bytes the IR may take */
    size_t budget;  /* bytes the IR may still take */
    char loc[320];  /* where the reader is: "node 3 'fc': attr 1 'eps'" */
};

/* A checked table: its object is buf[pos, pos + obj_size). */
struct fb_table {
    size_t pos;
    size_t vt;
    size_t vt_size;
    size_t obj_size;
};

/* A checked vector: n elements of the element size from data. */
struct fb_vector {
    size_t pos; /* the length prefix */
    size_t data;
    size_t n;
};

static uint16_t
rd_u16(const uint8_t *p)
{
    uint16_t v;

    memcpy(&v, p, sizeof(v));
    return v;
}

static uint32_t
rd_u32(const uint8_t *p)
{
    uint32_t v;

    memcpy(&v, p, sizeof(v));
    return v;
}

/*
 * Formats "WHAT: LOC: message" into the caller's buffer (when there is
 * one) and returns status, so that a failing path reads "return fail()".
 */
static int __attribute__((format(printf, 3, 4)))
fail(struct fb_reader *r, int status, const char *fmt, ...)
{
    char msg[400];
    va_list ap;

    if (r->err == NULL || r->errlen == 0)
        return status;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (r->loc[0] != '\0')
        snprintf(r->err, r->errlen, "%s: %s: %s", r->what, r->loc, msg);
    else
        snprintf(r->err, r->errlen, "%s: %s", r->what, msg);
    return status;
}

/* Appends a part to the location; returns what loc_pop() restores. */
static size_t __attribute__((format(printf, 2, 3)))
loc_push(struct fb_reader *r, const char *fmt, ...)
{
    size_t old = strlen(r->loc), at = old;
    va_list ap;

    if (old > 0 && old + 2 < sizeof(r->loc)) {
        memcpy(r->loc + old, ": ", 3);
        at += 2;
    }
    if (at < sizeof(r->loc) - 1) {
        va_start(ap, fmt);
        vsnprintf(r->loc + at, sizeof(r->loc) - at, fmt, ap);
        va_end(ap);
    }
    return old;
}

static void
loc_pop(struct fb_reader *r, size_t old)
{
    r->loc[old] = '\0';
}

/*
 * Allocates n zeroed items of `size` bytes for the IR, charging them to
 * the budget.  Returns SMLP_OK, SMLP_EBADFILE (over budget) or
 * SMLP_ENOMEM.  n == 0 gives NULL.
 */
static int
ir_alloc(struct fb_reader *r, size_t n, size_t size, void *out)
{
    void *p = NULL;

    if (n > 0) {
        if (n > r->budget / size)
            return fail(r, SMLP_EBADFILE,
                        "the graph needs more than %zu bytes of memory, "
                        "the limit for a file of %zu bytes: too many "
                        "objects referenced more than once",
                        r->limit, r->len);
        r->budget -= n * size;
        p = calloc(n, size);
        if (p == NULL)
            return fail(r, SMLP_ENOMEM, "out of memory");
    }
    memcpy(out, &p, sizeof(p));
    return SMLP_OK;
}

/*
 * Checks the table at `pos`: alignment, its soffset, the vtable (inside
 * the file, even size of at least 4) and the object size (inside the
 * file).  Fills *t.
 */
static int
fb_table(struct fb_reader *r, size_t pos, int depth, struct fb_table *t)
{
    int32_t soff;
    int64_t vt;

    memset(t, 0, sizeof(*t));
    if (depth > FB_MAX_DEPTH)
        return fail(r, SMLP_EBADFILE,
                    "tables nested %d deep, more than the limit of %d",
                    depth, FB_MAX_DEPTH);
    if (pos % 4 != 0)
        return fail(r, SMLP_EBADFILE,
                    "table at offset %zu is not 4-byte aligned", pos);
    if (pos > r->len - 4)
        return fail(r, SMLP_EBADFILE,
                    "table at offset %zu lies past the end of the file "
                    "(%zu bytes)", pos, r->len);
    memcpy(&soff, r->buf + pos, sizeof(soff));
    vt = (int64_t)pos - soff;
    if (vt < 0 || vt > (int64_t)(r->len - 4))
        return fail(r, SMLP_EBADFILE,
                    "table at offset %zu: vtable offset %" PRId64
                    " is outside the file (%zu bytes)", pos, vt, r->len);
    if (vt % 2 != 0)
        return fail(r, SMLP_EBADFILE,
                    "table at offset %zu: vtable offset %" PRId64
                    " is not 2-byte aligned", pos, vt);
    t->pos = pos;
    t->vt = (size_t)vt;
    t->vt_size = rd_u16(r->buf + t->vt);
    t->obj_size = rd_u16(r->buf + t->vt + 2);
    if (t->vt_size % 2 != 0)
        return fail(r, SMLP_EBADFILE,
                    "table at offset %zu: vtable size %zu is odd", pos,
                    t->vt_size);
    if (t->vt_size < 4)
        return fail(r, SMLP_EBADFILE,
                    "table at offset %zu: vtable size %zu is smaller "
                    "than 4", pos, t->vt_size);
    if (t->vt_size > r->len - t->vt)
        return fail(r, SMLP_EBADFILE,
                    "table at offset %zu: vtable (offset %zu, %zu bytes) "
                    "runs past the end of the file (%zu bytes)",
                    pos, t->vt, t->vt_size, r->len);
    if (t->obj_size < 4)
        return fail(r, SMLP_EBADFILE,
                    "table at offset %zu: object size %zu is smaller "
                    "than 4", pos, t->obj_size);
    if (t->obj_size > r->len - pos)
        return fail(r, SMLP_EBADFILE,
                    "table at offset %zu: object (%zu bytes) runs past "
                    "the end of the file (%zu bytes)",
                    pos, t->obj_size, r->len);
    return SMLP_OK;
}

/*
 * Finds field `id` of `size` bytes in t.  *at is its position, or 0 when
 * the field is absent (a field never starts at 0: it follows a soffset).
 * The field must lie inside the object and be aligned to its size.
 */
static int
fb_field(struct fb_reader *r, const struct fb_table *t, int id, size_t size,
         const char *name, size_t *at)
{
    size_t slot = 4 + 2 * (size_t)id, fo;

    *at = 0;
    if (slot + 2 > t->vt_size)
        return SMLP_OK;
    fo = rd_u16(r->buf + t->vt + slot);
    if (fo == 0)
        return SMLP_OK;
    if (fo < 4 || fo > t->obj_size || size > t->obj_size - fo)
        return fail(r, SMLP_EBADFILE,
                    "table at offset %zu: field '%s' at offset %zu (size "
                    "%zu) lies outside the object (%zu bytes)",
                    t->pos, name, fo, size, t->obj_size);
    if ((t->pos + fo) % size != 0)
        return fail(r, SMLP_EBADFILE,
                    "field '%s' at offset %zu is not %zu-byte aligned",
                    name, t->pos + fo, size);
    *at = t->pos + fo;
    return SMLP_OK;
}

/* Reads a scalar field into out (size bytes), which keeps its default
 * when the field is absent. */
static int
fb_scalar(struct fb_reader *r, const struct fb_table *t, int id,
          size_t size, const char *name, void *out)
{
    size_t at;
    int rc = fb_field(r, t, id, size, name, &at);

    if (rc == SMLP_OK && at != 0)
        memcpy(out, r->buf + at, size);
    return rc;
}

/*
 * Follows the uoffset stored at `at` (desc names it in messages).  The
 * target must leave 4 bytes in the file and be 4-byte aligned; an offset
 * of 0 or of 2^31 and more is invalid, as in the FlatBuffers verifier.
 */
static int
fb_deref(struct fb_reader *r, size_t at, const char *desc, size_t *target)
{
    uint32_t off = rd_u32(r->buf + at);

    *target = 0;
    if (off == 0 || off > INT32_MAX)
        return fail(r, SMLP_EBADFILE, "%s: offset %" PRIu32 " at %zu is "
                    "invalid", desc, off, at);
    if (off > r->len - at || r->len - at - off < 4)
        return fail(r, SMLP_EBADFILE,
                    "%s offset %" PRIu32 " at %zu points past the end of "
                    "the file (%zu bytes)", desc, off, at, r->len);
    if ((at + off) % 4 != 0)
        return fail(r, SMLP_EBADFILE,
                    "%s at offset %zu is not 4-byte aligned", desc,
                    at + off);
    *target = at + off;
    return SMLP_OK;
}

/*
 * Checks the vector at pos (from fb_deref) of elements of esize bytes.
 * The data of a non-empty vector must be aligned to esize (flatc does not
 * align empty vectors, and has no need to).
 */
static int
fb_vector(struct fb_reader *r, size_t pos, size_t esize, const char *desc,
          struct fb_vector *v)
{
    v->pos = pos;
    v->n = rd_u32(r->buf + pos);
    v->data = pos + 4;
    if (v->n > 0 && v->data % esize != 0)
        return fail(r, SMLP_EBADFILE,
                    "%s vector data (offset %zu) is not %zu-byte aligned",
                    desc, v->data, esize);
    if (v->n > (r->len - v->data) / esize)
        return fail(r, SMLP_EBADFILE,
                    "%s vector (offset %zu, %zu x %zu bytes) runs past the "
                    "end of the file (%zu bytes)",
                    desc, pos, v->n, esize, r->len);
    return SMLP_OK;
}

/*
 * Opens vector field `id` of t.  An absent vector is empty; *present
 * (when not NULL) says which.  More than `max` elements is an error.
 */
static int
fb_vector_field(struct fb_reader *r, const struct fb_table *t, int id,
                size_t esize, size_t max, const char *name,
                struct fb_vector *v, int *present)
{
    size_t at, pos;
    int rc;

    v->pos = v->data = v->n = 0;
    if (present != NULL)
        *present = 0;
    rc = fb_field(r, t, id, 4, name, &at);
    if (rc != SMLP_OK || at == 0)
        return rc;
    rc = fb_deref(r, at, name, &pos);
    if (rc == SMLP_OK)
        rc = fb_vector(r, pos, esize, name, v);
    if (rc != SMLP_OK)
        return rc;
    if (v->n > max)
        return fail(r, SMLP_EBADFILE, "%s vector has %zu elements, more "
                    "than the limit of %zu", name, v->n, max);
    if (present != NULL)
        *present = 1;
    return SMLP_OK;
}

/*
 * Checks the string at pos (from fb_deref): inside the file, terminated,
 * within SMLP__MAX_STRING, free of inner NULs (C strings could not carry
 * them) and well-formed UTF-8.  *out receives a malloc'ed copy.
 */
static int
fb_string(struct fb_reader *r, size_t pos, const char *desc, char **out)
{
    size_t n = rd_u32(r->buf + pos), data = pos + 4, bad;
    int rc;

    if (n >= r->len - data)
        return fail(r, SMLP_EBADFILE,
                    "%s string (offset %zu, %zu bytes) runs past the end "
                    "of the file (%zu bytes)", desc, pos, n, r->len);
    if (r->buf[data + n] != 0)
        return fail(r, SMLP_EBADFILE,
                    "%s string (offset %zu, %zu bytes) is not "
                    "NUL-terminated", desc, pos, n);
    if (n > SMLP__MAX_STRING)
        return fail(r, SMLP_EBADFILE,
                    "%s string (offset %zu) is %zu bytes long, more than "
                    "the limit of %d", desc, pos, n, SMLP__MAX_STRING);
    if (memchr(r->buf + data, 0, n) != NULL)
        return fail(r, SMLP_EBADFILE,
                    "%s string (offset %zu) contains a NUL byte", desc,
                    pos);
    bad = smlp__utf8_bad_at(r->buf + data, n);
    if (bad < n)
        return fail(r, SMLP_EBADFILE,
                    "%s string (offset %zu) is not valid UTF-8: byte %zu "
                    "is 0x%02x", desc, pos, bad, r->buf[data + bad]);
    rc = ir_alloc(r, n + 1, 1, out);
    if (rc == SMLP_OK)
        memcpy(*out, r->buf + data, n + 1);
    return rc;
}

/* Reads string field `id` of t; *out stays NULL when it is absent, which
 * is an error when `required`. */
static int
fb_string_field(struct fb_reader *r, const struct fb_table *t, int id,
                int required, const char *name, char **out)
{
    size_t at, pos;
    int rc = fb_field(r, t, id, 4, name, &at);

    if (rc != SMLP_OK)
        return rc;
    if (at == 0)
        return required ? fail(r, SMLP_EBADFILE,
                               "required field '%s' is missing", name)
                        : SMLP_OK;
    rc = fb_deref(r, at, name, &pos);
    return rc != SMLP_OK ? rc : fb_string(r, pos, name, out);
}

/*
 * Opens the vector of references `id` of t and allocates the zeroed IR
 * array of its elements (`size` bytes each) into *arr.  *n is set once
 * the array exists, so that smlp__graph_ir_free sees a consistent IR.
 */
static int
fb_list(struct fb_reader *r, const struct fb_table *t, int id,
        const char *name, size_t max, size_t size, void *arr, int32_t *n,
        struct fb_vector *v)
{
    int rc = fb_vector_field(r, t, id, 4, max, name, v, NULL);

    if (rc == SMLP_OK)
        rc = ir_alloc(r, v->n, size, arr);
    if (rc == SMLP_OK)
        *n = (int32_t)v->n;
    return rc;
}

/* Opens the table that element i of the offset vector v points to. */
static int
fb_vector_table(struct fb_reader *r, const struct fb_vector *v, size_t i,
                int depth, struct fb_table *t)
{
    size_t pos;
    int rc = fb_deref(r, v->data + 4 * i, "table", &pos);

    return rc != SMLP_OK ? rc : fb_table(r, pos, depth, t);
}

/* Reads a byte enum field and checks it against [0, count). */
static int
fb_enum(struct fb_reader *r, const struct fb_table *t, int id,
        const char *name, const char *type, int count, int32_t *out)
{
    int8_t v = 0;
    int rc = fb_scalar(r, t, id, 1, name, &v);

    if (rc != SMLP_OK)
        return rc;
    if (v < 0 || v >= count)
        return fail(r, SMLP_EBADFILE, "%s %d is not a valid %s (0..%d)",
                    name, v, type, count - 1);
    *out = v;
    return SMLP_OK;
}

static int
decode_init(struct fb_reader *r, size_t at, int depth,
            struct smlp__init_ir *init)
{
    struct fb_table t;
    size_t pos, loc = loc_push(r, "init");
    int rc;

    rc = fb_deref(r, at, "table", &pos);
    if (rc == SMLP_OK)
        rc = fb_table(r, pos, depth, &t);
    if (rc == SMLP_OK)
        rc = fb_enum(r, &t, INIT_KIND, "kind", "InitKind",
                     SMLP__INIT_KIND_COUNT, &init->kind);
    if (rc == SMLP_OK)
        rc = fb_scalar(r, &t, INIT_A, 8, "a", &init->a);
    if (rc == SMLP_OK)
        rc = fb_scalar(r, &t, INIT_B, 8, "b", &init->b);
    if (rc == SMLP_OK)
        rc = fb_scalar(r, &t, INIT_SEED, 8, "seed", &init->seed);
    if (rc == SMLP_OK) {
        init->present = 1;
        loc_pop(r, loc);
    }
    return rc;
}

static int
decode_tensor(struct fb_reader *r, const struct fb_vector *v, size_t i,
              int depth, struct smlp__tensor_ir *ten)
{
    struct fb_table t;
    struct fb_vector shape;
    size_t at, loc = loc_push(r, "tensor %zu", i);
    int rc;

    rc = fb_vector_table(r, v, i, depth, &t);
    if (rc == SMLP_OK)
        rc = fb_string_field(r, &t, TENSOR_NAME, 1, "name", &ten->name);
    if (rc != SMLP_OK)
        return rc;
    loc_pop(r, loc);
    loc_push(r, "tensor %zu '%.64s'", i, ten->name);
    rc = fb_enum(r, &t, TENSOR_DTYPE, "dtype", "DType", SMLP_DTYPE_COUNT,
                 &ten->dtype);
    if (rc == SMLP_OK)
        rc = fb_enum(r, &t, TENSOR_KIND, "kind", "TensorKind",
                     SMLP__TENSOR_KIND_COUNT, &ten->kind);
    if (rc == SMLP_OK)
        rc = fb_vector_field(r, &t, TENSOR_SHAPE, 8, SIZE_MAX, "shape",
                             &shape, &ten->has_shape);
    if (rc != SMLP_OK)
        return rc;
    if (shape.n > SMLP_MAX_RANK)
        return fail(r, SMLP_EBADFILE,
                    "shape has rank %zu, more than the limit of %d",
                    shape.n, SMLP_MAX_RANK);
    ten->rank = (int32_t)shape.n;
    memcpy(ten->shape, r->buf + shape.data, shape.n * 8);
    rc = fb_field(r, &t, TENSOR_INIT, 4, "init", &at);
    if (rc == SMLP_OK && at != 0)
        rc = decode_init(r, at, depth + 1, &ten->init);
    if (rc == SMLP_OK)
        loc_pop(r, loc);
    return rc;
}

/*
 * Reads the [int] field `id` (named `name`, its elements `elem`) of
 * tensor indices, each in [lo, n_tensors).
 */
static int
decode_indices(struct fb_reader *r, const struct fb_table *t, int id,
               const char *name, const char *elem, int32_t lo,
               int32_t n_tensors, int32_t *n_out, int32_t **out)
{
    struct fb_vector v;
    int32_t x;
    size_t i;
    int rc;

    rc = fb_vector_field(r, t, id, 4, SMLP__MAX_NODE_IO, name, &v, NULL);
    if (rc == SMLP_OK)
        rc = ir_alloc(r, v.n, sizeof(int32_t), out);
    if (rc != SMLP_OK)
        return rc;
    *n_out = (int32_t)v.n;
    for (i = 0; i < v.n; i++) {
        memcpy(&x, r->buf + v.data + 4 * i, sizeof(x));
        if (x < lo || x >= n_tensors)
            return fail(r, SMLP_EBADFILE,
                        "%s %zu is tensor %" PRId32 ", out of range "
                        "[%" PRId32 ", %" PRId32 ")",
                        elem, i, x, lo, n_tensors);
        (*out)[i] = x;
    }
    return SMLP_OK;
}

/*
 * Checks that an attribute carries no value of another type: the schema
 * has one field per type and "type" defaults to Int, so a value in the
 * wrong field is almost always a forgotten "type".
 */
static int
check_attr_values(struct fb_reader *r, const struct smlp__attr_ir *a,
                  int s_present, size_t n_ints, size_t n_floats)
{
    static const char *const names[] = {"Int", "Float", "String", "Ints",
                                        "Floats"};
    const char *wrong = NULL;
    uint64_t fbits;

    memcpy(&fbits, &a->f, sizeof(fbits));
    if (a->type != SMLP_ATTR_INT && a->i != 0)
        wrong = "i";
    else if (a->type != SMLP_ATTR_FLOAT && fbits != 0)
        wrong = "f";
    else if (a->type != SMLP_ATTR_STRING && a->s != NULL && a->s[0] != 0)
        wrong = "s";
    else if (a->type != SMLP_ATTR_INTS && n_ints > 0)
        wrong = "ints";
    else if (a->type != SMLP_ATTR_FLOATS && n_floats > 0)
        wrong = "floats";
    if (wrong != NULL)
        return fail(r, SMLP_EBADFILE, "type %s does not match the value "
                    "in '%s' (is \"type\" missing?)", names[a->type], wrong);
    if (a->type == SMLP_ATTR_STRING && !s_present)
        return fail(r, SMLP_EBADFILE, "type String but no 's' value");
    return SMLP_OK;
}

static int
decode_attr(struct fb_reader *r, const struct fb_vector *v, size_t i,
            int depth, struct smlp__attr_ir *a)
{
    struct fb_table t;
    struct fb_vector ints, floats;
    size_t loc = loc_push(r, "attr %zu", i);
    int rc;

    rc = fb_vector_table(r, v, i, depth, &t);
    if (rc == SMLP_OK)
        rc = fb_string_field(r, &t, ATTR_NAME, 1, "name", &a->name);
    if (rc != SMLP_OK)
        return rc;
    loc_pop(r, loc);
    loc_push(r, "attr %zu '%.64s'", i, a->name);
    rc = fb_enum(r, &t, ATTR_TYPE, "type", "AttrType", SMLP_ATTR_TYPE_COUNT,
                 &a->type);
    if (rc == SMLP_OK)
        rc = fb_scalar(r, &t, ATTR_I, 8, "i", &a->i);
    if (rc == SMLP_OK)
        rc = fb_scalar(r, &t, ATTR_F, 8, "f", &a->f);
    if (rc == SMLP_OK)
        rc = fb_string_field(r, &t, ATTR_S, 0, "s", &a->s);
    if (rc == SMLP_OK)
        rc = fb_vector_field(r, &t, ATTR_INTS, 8, SIZE_MAX, "ints", &ints,
                             NULL);
    if (rc == SMLP_OK)
        rc = fb_vector_field(r, &t, ATTR_FLOATS, 8, SIZE_MAX, "floats",
                             &floats, NULL);
    if (rc == SMLP_OK)
        rc = check_attr_values(r, a, a->s != NULL, ints.n, floats.n);
    if (rc != SMLP_OK)
        return rc;
    if (a->type != SMLP_ATTR_STRING) {
        free(a->s); /* an empty string of the wrong type: dropped */
        a->s = NULL;
    }
    if (a->type == SMLP_ATTR_INTS) {
        rc = ir_alloc(r, ints.n, sizeof(int64_t), &a->ints);
        if (rc == SMLP_OK && ints.n > 0)
            memcpy(a->ints, r->buf + ints.data, ints.n * 8);
        a->n_values = ints.n;
    } else if (a->type == SMLP_ATTR_FLOATS) {
        rc = ir_alloc(r, floats.n, sizeof(double), &a->floats);
        if (rc == SMLP_OK && floats.n > 0)
            memcpy(a->floats, r->buf + floats.data, floats.n * 8);
        a->n_values = floats.n;
    }
    if (rc == SMLP_OK)
        loc_pop(r, loc);
    return rc;
}

static int
decode_node(struct fb_reader *r, const struct fb_vector *v, size_t i,
            int depth, int32_t n_tensors, struct smlp__node_ir *node)
{
    struct fb_table t;
    struct fb_vector attrs;
    size_t j, k, loc = loc_push(r, "node %zu", i);
    int rc;

    rc = fb_vector_table(r, v, i, depth, &t);
    if (rc == SMLP_OK)
        rc = fb_string_field(r, &t, NODE_NAME, 1, "name", &node->name);
    if (rc != SMLP_OK)
        return rc;
    loc_pop(r, loc);
    loc_push(r, "node %zu '%.64s'", i, node->name);
    rc = fb_string_field(r, &t, NODE_OP, 1, "op", &node->op);
    if (rc == SMLP_OK)
        rc = decode_indices(r, &t, NODE_INPUTS, "inputs", "input", -1,
                            n_tensors, &node->n_inputs, &node->inputs);
    if (rc == SMLP_OK)
        rc = decode_indices(r, &t, NODE_OUTPUTS, "outputs", "output", 0,
                            n_tensors, &node->n_outputs, &node->outputs);
    if (rc == SMLP_OK)
        rc = fb_list(r, &t, NODE_ATTRS, "attrs", SMLP__MAX_ATTRS,
                     sizeof(*node->attrs), &node->attrs, &node->n_attrs,
                     &attrs);
    if (rc != SMLP_OK)
        return rc;
    for (j = 0; j < attrs.n; j++) {
        rc = decode_attr(r, &attrs, j, depth + 1, &node->attrs[j]);
        if (rc != SMLP_OK)
            return rc;
        for (k = 0; k < j; k++)
            if (strcmp(node->attrs[k].name, node->attrs[j].name) == 0)
                return fail(r, SMLP_EBADFILE,
                            "attrs %zu and %zu are both named '%.64s'", k,
                            j, node->attrs[j].name);
    }
    loc_pop(r, loc);
    return SMLP_OK;
}

static int
decode_meta(struct fb_reader *r, const struct fb_vector *v, size_t i,
            int depth, struct smlp__meta_ir *m)
{
    struct fb_table t;
    size_t loc = loc_push(r, "metadata %zu", i);
    int rc;

    rc = fb_vector_table(r, v, i, depth, &t);
    if (rc == SMLP_OK)
        rc = fb_string_field(r, &t, KV_KEY, 1, "key", &m->key);
    if (rc == SMLP_OK)
        rc = fb_string_field(r, &t, KV_VALUE, 0, "value", &m->value);
    if (rc == SMLP_OK)
        loc_pop(r, loc);
    return rc;
}

static int
decode_graph(struct fb_reader *r, size_t root, struct smlp__graph_ir *ir)
{
    struct fb_table t;
    struct fb_vector plugins, tensors, nodes, meta;
    size_t i, pos;
    int rc;

    loc_push(r, "graph");
    rc = fb_table(r, root, 1, &t);
    if (rc == SMLP_OK)
        rc = fb_scalar(r, &t, GRAPH_VERSION, 4, "format_version",
                       &ir->format_version);
    if (rc == SMLP_OK)
        rc = fb_string_field(r, &t, GRAPH_NAME, 1, "name", &ir->name);
    if (rc == SMLP_OK)
        rc = fb_list(r, &t, GRAPH_PLUGINS, "plugins", SMLP__MAX_PLUGINS,
                     sizeof(*ir->plugins), &ir->plugins, &ir->n_plugins,
                     &plugins);
    if (rc == SMLP_OK)
        rc = fb_list(r, &t, GRAPH_TENSORS, "tensors", SMLP__MAX_TENSORS,
                     sizeof(*ir->tensors), &ir->tensors, &ir->n_tensors,
                     &tensors);
    if (rc == SMLP_OK)
        rc = fb_list(r, &t, GRAPH_NODES, "nodes", SMLP__MAX_NODES,
                     sizeof(*ir->nodes), &ir->nodes, &ir->n_nodes, &nodes);
    if (rc == SMLP_OK)
        rc = fb_list(r, &t, GRAPH_METADATA, "metadata", SMLP__MAX_META,
                     sizeof(*ir->meta), &ir->meta, &ir->n_meta, &meta);
    if (rc != SMLP_OK)
        return rc;
    loc_pop(r, 0);
    for (i = 0; i < plugins.n && rc == SMLP_OK; i++) {
        loc_push(r, "plugin %zu", i);
        rc = fb_deref(r, plugins.data + 4 * i, "name", &pos);
        if (rc == SMLP_OK)
            rc = fb_string(r, pos, "name", &ir->plugins[i]);
        if (rc == SMLP_OK)
            loc_pop(r, 0);
    }
    /* Tensors come before nodes: node indices are checked against them. */
    for (i = 0; i < tensors.n && rc == SMLP_OK; i++)
        rc = decode_tensor(r, &tensors, i, 2, &ir->tensors[i]);
    for (i = 0; i < nodes.n && rc == SMLP_OK; i++)
        rc = decode_node(r, &nodes, i, 2, ir->n_tensors, &ir->nodes[i]);
    for (i = 0; i < meta.n && rc == SMLP_OK; i++)
        rc = decode_meta(r, &meta, i, 2, &ir->meta[i]);
    return rc;
}

/* Writes the 4 identifier bytes printably into out[0..17). */
static void
format_ident(const uint8_t *id, char out[17])
{
    size_t i, n = 0;

    for (i = 0; i < 4; i++) {
        if (id[i] >= 0x20 && id[i] < 0x7f && id[i] != '"' && id[i] != '\\')
            out[n++] = (char)id[i];
        else
            n += (size_t)snprintf(out + n, 5, "\\x%02x", id[i]);
    }
    out[n] = '\0';
}

/*
 * See graph_ir.h.  The header is checked first (size, then identifier, so
 * that a file of another kind says so, then the root offset), then the
 * tables from the root down, tensors before nodes.  Returns SMLP_OK,
 * SMLP_EBADFILE, SMLP_ENOMEM or SMLP_EINVAL (out is NULL).  Thread-safe:
 * all state is on the stack and in the new IR.
 */
int
smlp__graph_ir_decode(const uint8_t *buf, size_t len, const char *what,
                      struct smlp__graph_ir **out, char *err, size_t errlen)
{
    struct fb_reader r;
    struct smlp__graph_ir *ir = NULL;
    char ident[17];
    uint32_t root;
    int rc;

    memset(&r, 0, sizeof(r));
    r.buf = buf;
    r.len = buf != NULL ? len : 0;
    r.what = what != NULL ? what : "graph";
    r.err = err;
    r.errlen = errlen;
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (out == NULL)
        return fail(&r, SMLP_EINVAL, "no place for the decoded graph");
    *out = NULL;
    r.limit = r.len > (SIZE_MAX - FB_SLACK) / FB_EXPAND
                  ? SIZE_MAX
                  : r.len * FB_EXPAND + FB_SLACK;
    r.budget = r.limit;

    if (r.len < 8)
        return fail(&r, SMLP_EBADFILE, "file is %zu bytes, too short for "
                    "a FlatBuffer header (8 bytes)", r.len);
    if (memcmp(buf + 4, "SMLG", 4) != 0) {
        size_t i = 0;

        format_ident(buf + 4, ident);
        while (i < r.len && strchr(" \t\r\n", buf[i]) != NULL && buf[i])
            i++;
        return fail(&r, SMLP_EBADFILE, "file identifier is \"%s\", "
                    "expected \"SMLG\" (not a smlp graph%s)", ident,
                    i < r.len && buf[i] == '{'
                        ? "; it looks like a JSON source: compile it with "
                          "flatc -b schemas/graph.fbs FILE.json"
                        : "");
    }
    root = rd_u32(buf);
    if (root < 8 || root > r.len - 4)
        return fail(&r, SMLP_EBADFILE, "root table offset %" PRIu32
                    " is out of range (file is %zu bytes)", root, r.len);
    if (root % 4 != 0)
        return fail(&r, SMLP_EBADFILE, "root table offset %" PRIu32
                    " is not 4-byte aligned", root);

    rc = ir_alloc(&r, 1, sizeof(*ir), &ir);
    if (rc != SMLP_OK)
        return rc;
    ir->format_version = SMLP__GRAPH_FORMAT_VERSION; /* when absent */
    rc = decode_graph(&r, root, ir);
    if (rc != SMLP_OK)
        goto out_free_ir;
    *out = ir;
    return SMLP_OK;

out_free_ir:
    smlp__graph_ir_free(ir);
    return rc;
}
