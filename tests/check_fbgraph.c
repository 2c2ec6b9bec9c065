/*
 * check_fbgraph.c - tests of the graph FlatBuffer reader and writer
 * (runtime/fbgraph.c, runtime/fbgraph_write.c).
 *
 * Graph binaries are made at test time by flatc from JSON (the fixtures
 * in tests/data/fbgraph/ and JSON written here), so the reader is checked
 * against an independent writer.  Corruptions are made by editing such a
 * binary with the small navigation helpers below (which trust the file:
 * they only ever see flatc's output) and must be refused with
 * SMLP_EBADFILE and a message naming the fault.  Every truncation and
 * many byte flips of a real file must fail cleanly or decode.  Encoded
 * graphs go through `flatc --json` and `flatc -b` and must come back
 * equal.  SMLP_TEST_SRCDIR and FLATC come from the environment, or else
 * from the build (FBGRAPH_TEST_SRCDIR, FBGRAPH_TEST_FLATC).
 */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "graph_ir.h"
#include "testutil.h"

#ifndef FBGRAPH_TEST_SRCDIR
#define FBGRAPH_TEST_SRCDIR "."
#endif
#ifndef FBGRAPH_TEST_FLATC
#define FBGRAPH_TEST_FLATC "flatc"
#endif

/* The scratch directory of the run, made in main(). */
static char tmpdir[64];
/* The error text of the last call. */
static char errbuf[512];

/* ---- Files and flatc ---- */

static const char *
env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);

    return v != NULL && v[0] != '\0' ? v : fallback;
}

static const char *
srcdir(void)
{
    return env_or("SMLP_TEST_SRCDIR", FBGRAPH_TEST_SRCDIR);
}

static void
write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");

    ck_assert_msg(f != NULL, "cannot create %s", path);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

/* Runs flatc with `args` (options first, as flatc wants them). */
static void
flatc(const char *args)
{
    char cmd[2048];

    snprintf(cmd, sizeof(cmd), "'%s' %s",
             env_or("FLATC", FBGRAPH_TEST_FLATC), args);
    ck_assert_msg(system(cmd) == 0, "failed: %s", cmd);
}

/* Compiles JSON file `json` (named NAME.json) with `opts`; returns the
 * bytes of OUTDIR/NAME.fbs. */
static uint8_t *
build_file(const char *json, const char *opts, size_t *len)
{
    char args[1536], out[512];
    const char *base = strrchr(json, '/') != NULL ? strrchr(json, '/') + 1
                                                   : json;

    snprintf(args, sizeof(args), "-b %s -o '%s' '%s/schemas/graph.fbs' '%s'",
             opts, tmpdir, srcdir(), json);
    flatc(args);
    snprintf(out, sizeof(out), "%s/%.*s.fbs", tmpdir,
             (int)(strlen(base) - 5), base);
    return tu_read_file(out, len);
}

/* Builds tests/data/fbgraph/NAME.json. */
static uint8_t *
build_fixture(const char *name, size_t *len)
{
    char json[512];

    snprintf(json, sizeof(json), "%s/tests/data/fbgraph/%s.json",
             srcdir(), name);
    return build_file(json, "", len);
}

/* Builds JSON text given here, as TMPDIR/NAME.json. */
static uint8_t *
build_json(const char *name, const char *text, size_t *len)
{
    char json[512];

    snprintf(json, sizeof(json), "%s/%s.json", tmpdir, name);
    write_file(json, text, strlen(text));
    return build_file(json, "", len);
}

/* ---- Navigating flatc's output (trusted) to corrupt it ---- */

static uint32_t
get32(const uint8_t *b, size_t at)
{
    uint32_t v;

    memcpy(&v, b + at, 4);
    return v;
}

static void
put32(uint8_t *b, size_t at, uint32_t v)
{
    memcpy(b + at, &v, 4);
}

static uint16_t
get16(const uint8_t *b, size_t at)
{
    uint16_t v;

    memcpy(&v, b + at, 2);
    return v;
}

static void
put16(uint8_t *b, size_t at, uint16_t v)
{
    memcpy(b + at, &v, 2);
}

static size_t
vtable_of(const uint8_t *b, size_t table)
{
    return table - (size_t)(int32_t)get32(b, table);
}

/* Position of field `id` of the table, which must be present. */
static size_t
field(const uint8_t *b, size_t table, int id)
{
    size_t vt = vtable_of(b, table);

    ck_assert_uint_lt(4 + 2 * (size_t)id, get16(b, vt));
    ck_assert_uint_ne(get16(b, vt + 4 + 2 * (size_t)id), 0);
    return table + get16(b, vt + 4 + 2 * (size_t)id);
}

/* Where the uoffset at `at` points. */
static size_t
deref(const uint8_t *b, size_t at)
{
    return at + get32(b, at);
}

/* The table of element i of the vector field `id` of `table`. */
static size_t
element(const uint8_t *b, size_t table, int id, size_t i)
{
    size_t v = deref(b, field(b, table, id));

    return deref(b, v + 4 + 4 * i);
}

static size_t
root(const uint8_t *b)
{
    return get32(b, 0);
}

/* Field ids, as in schemas/graph.fbs. */
enum { G_NAME = 1, G_TENSORS = 3, G_NODES = 4, G_META = 5 };
enum { T_NAME = 0, T_DTYPE = 1, T_KIND = 2, T_SHAPE = 3, T_INIT = 4 };
enum { N_NAME = 0, N_ATTRS = 4 };
enum { A_TYPE = 1 };

/* ---- Decoding and comparing ---- */

static int
decode(const uint8_t *buf, size_t len, struct smlp__graph_ir **ir)
{
    return smlp__graph_ir_decode(buf, len, "test.fbs", ir, errbuf,
                                 sizeof(errbuf));
}

static struct smlp__graph_ir *
decode_ok(const uint8_t *buf, size_t len)
{
    struct smlp__graph_ir *ir = NULL;
    int rc = decode(buf, len, &ir);

    ck_assert_msg(rc == SMLP_OK, "decode failed (%d): %s", rc, errbuf);
    ck_assert_ptr_nonnull(ir);
    return ir;
}

/* The decoder must refuse buf with a message that contains `needle`. */
static void
expect_bad(const uint8_t *buf, size_t len, const char *needle)
{
    struct smlp__graph_ir *ir = (struct smlp__graph_ir *)&ir;
    int rc = smlp__graph_ir_decode(buf, len, "bad.fbs", &ir, errbuf,
                                   sizeof(errbuf));

    ck_assert_msg(rc == SMLP_EBADFILE, "rc %d, message \"%s\"", rc, errbuf);
    ck_assert_ptr_null(ir);
    ck_assert_msg(strncmp(errbuf, "bad.fbs: ", 9) == 0,
                  "message \"%s\" does not name the file", errbuf);
    ck_assert_msg(strstr(errbuf, needle) != NULL,
                  "message \"%s\" lacks \"%s\"", errbuf, needle);
}

static int
same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) ||
           (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* What the last comparison found different. */
static char why[256];

/* Records in why[] what differs when cond holds; returns cond. */
static int __attribute__((format(printf, 2, 3)))
differ(int cond, const char *fmt, ...)
{
    va_list ap;

    if (cond) {
        va_start(ap, fmt);
        vsnprintf(why, sizeof(why), fmt, ap);
        va_end(ap);
    }
    return cond;
}

static int
attr_equal(const struct smlp__attr_ir *a, const struct smlp__attr_ir *b)
{
    size_t n = a->n_values * 8;

    if (differ(!same_str(a->name, b->name) || a->type != b->type,
               "attr %s: name or type", a->name) ||
        differ(a->i != b->i || memcmp(&a->f, &b->f, 8) != 0 ||
                   !same_str(a->s, b->s) || a->n_values != b->n_values,
               "attr %s: i, f, s or n_values", a->name))
        return 0;
    if (a->type == SMLP_ATTR_INTS && n > 0)
        return !differ(memcmp(a->ints, b->ints, n) != 0, "attr %s: ints",
                       a->name);
    if (a->type == SMLP_ATTR_FLOATS && n > 0)
        return !differ(memcmp(a->floats, b->floats, n) != 0,
                       "attr %s: floats", a->name);
    return 1;
}

static int
tensor_equal(const struct smlp__tensor_ir *a, const struct smlp__tensor_ir *b)
{
    const struct smlp__init_ir *x = &a->init, *y = &b->init;

    if (differ(!same_str(a->name, b->name) || a->dtype != b->dtype ||
                   a->kind != b->kind,
               "tensor %s: name, dtype or kind", a->name) ||
        differ(a->has_shape != b->has_shape || a->rank != b->rank ||
                   memcmp(a->shape, b->shape, (size_t)a->rank * 8) != 0,
               "tensor %s: shape", a->name) ||
        differ(x->present != y->present, "tensor %s: init", a->name))
        return 0;
    return !x->present ||
           !differ(x->kind != y->kind || x->seed != y->seed ||
                       memcmp(&x->a, &y->a, 8) != 0 ||
                       memcmp(&x->b, &y->b, 8) != 0,
                   "tensor %s: init values", a->name);
}

static int
node_equal(const struct smlp__node_ir *a, const struct smlp__node_ir *b)
{
    int32_t j;

    if (differ(!same_str(a->name, b->name) || !same_str(a->op, b->op),
               "node %s: name or op", a->name) ||
        differ(a->n_inputs != b->n_inputs || a->n_outputs != b->n_outputs ||
                   a->n_attrs != b->n_attrs,
               "node %s: counts", a->name))
        return 0;
    for (j = 0; j < a->n_inputs; j++)
        if (differ(a->inputs[j] != b->inputs[j], "node %s: inputs",
                   a->name))
            return 0;
    for (j = 0; j < a->n_outputs; j++)
        if (differ(a->outputs[j] != b->outputs[j], "node %s: outputs",
                   a->name))
            return 0;
    for (j = 0; j < a->n_attrs; j++)
        if (!attr_equal(&a->attrs[j], &b->attrs[j]))
            return 0;
    return 1;
}

/* Compares two IRs field by field (floats bit for bit). */
static int
ir_equal(const struct smlp__graph_ir *a, const struct smlp__graph_ir *b)
{
    int32_t i;

    if (differ(a->format_version != b->format_version ||
                   !same_str(a->name, b->name),
               "format_version or name") ||
        differ(a->n_plugins != b->n_plugins || a->n_tensors != b->n_tensors ||
                   a->n_nodes != b->n_nodes || a->n_meta != b->n_meta,
               "counts"))
        return 0;
    for (i = 0; i < a->n_plugins; i++)
        if (differ(!same_str(a->plugins[i], b->plugins[i]), "plugin %d", i))
            return 0;
    for (i = 0; i < a->n_tensors; i++)
        if (!tensor_equal(&a->tensors[i], &b->tensors[i]))
            return 0;
    for (i = 0; i < a->n_nodes; i++)
        if (!node_equal(&a->nodes[i], &b->nodes[i]))
            return 0;
    for (i = 0; i < a->n_meta; i++)
        if (differ(!same_str(a->meta[i].key, b->meta[i].key) ||
                       !same_str(a->meta[i].value, b->meta[i].value),
                   "metadata %d", i))
            return 0;
    return 1;
}

static void
assert_ir_equal(const struct smlp__graph_ir *a,
                const struct smlp__graph_ir *b)
{
    ck_assert_msg(ir_equal(a, b), "IRs differ: %s", why);
}

/* Encodes ir, decodes the result and checks that it is equal. */
static void
assert_encode_roundtrip(const struct smlp__graph_ir *ir)
{
    struct smlp__graph_ir *back;
    uint8_t *buf;
    size_t len;
    int rc = smlp__graph_ir_encode(ir, &buf, &len, errbuf, sizeof(errbuf));

    ck_assert_msg(rc == SMLP_OK, "encode failed (%d): %s", rc, errbuf);
    back = decode_ok(buf, len);
    assert_ir_equal(ir, back);
    smlp__graph_ir_free(back);
    free(buf);
}

/* ---- Decoding valid graphs ---- */

START_TEST(test_fbgraph_decode_full)
{
    static const int64_t axes[] = {0, -1, 9007199254740993};
    const struct smlp__tensor_ir *t;
    const struct smlp__attr_ir *a;
    struct smlp__graph_ir *ir;
    size_t len;
    uint8_t *buf = build_fixture("full", &len);

    ir = decode_ok(buf, len);
    ck_assert_uint_eq(ir->format_version, 1);
    ck_assert_str_eq(ir->name, "full");
    ck_assert_int_eq(ir->n_plugins, 2);
    ck_assert_str_eq(ir->plugins[0], "core");
    ck_assert_str_eq(ir->plugins[1], "norm");

    ck_assert_int_eq(ir->n_tensors, 7);
    t = &ir->tensors[0];
    ck_assert_str_eq(t->name, "x");
    ck_assert_int_eq(t->dtype, SMLP_DTYPE_F32);
    ck_assert_int_eq(t->kind, SMLP__TENSOR_INPUT);
    ck_assert_int_eq(t->has_shape, 1);
    ck_assert_int_eq(t->rank, 2);
    ck_assert_int_eq(t->shape[0], -1);
    ck_assert_int_eq(t->shape[1], 4);
    ck_assert_int_eq(t->init.present, 0);
    t = &ir->tensors[1];
    ck_assert_str_eq(t->name, "w");
    ck_assert_int_eq(t->kind, SMLP__TENSOR_PARAMETER);
    ck_assert_int_eq(t->init.present, 1);
    ck_assert_int_eq(t->init.kind, SMLP__INIT_NORMAL);
    ck_assert(t->init.a == 0.0 && t->init.b == 0.02);
    ck_assert_uint_eq(t->init.seed, 12345678901234u);
    t = &ir->tensors[2];
    ck_assert_int_eq(t->init.kind, SMLP__INIT_UNIFORM);
    ck_assert(t->init.a == -0.5f && t->init.b == 0.25f);
    ck_assert_uint_eq(t->init.seed, 7);
    t = &ir->tensors[3];
    ck_assert_str_eq(t->name, "step");
    ck_assert_int_eq(t->dtype, SMLP_DTYPE_I32);
    ck_assert_int_eq(t->kind, SMLP__TENSOR_STATE);
    ck_assert_int_eq(t->has_shape, 1);
    ck_assert_int_eq(t->rank, 0);
    ck_assert_int_eq(t->init.present, 1);
    ck_assert_int_eq(t->init.kind, SMLP__INIT_ZEROS);
    ck_assert(t->init.a == 0.0f && t->init.b == 0.0f && t->init.seed == 0);
    t = &ir->tensors[4];
    ck_assert_int_eq(t->init.kind, SMLP__INIT_CONSTANT);
    ck_assert(t->init.a == 1.5f);
    t = &ir->tensors[5];
    ck_assert_str_eq(t->name, "y");
    ck_assert_int_eq(t->kind, SMLP__TENSOR_OUTPUT);
    ck_assert_int_eq(t->has_shape, 0);
    ck_assert_int_eq(t->rank, 0);
    t = &ir->tensors[6];
    ck_assert_int_eq(t->kind, SMLP__TENSOR_ACTIVATION);
    ck_assert_int_eq(t->rank, SMLP_MAX_RANK);
    ck_assert_int_eq(t->shape[0], -1);
    ck_assert_int_eq(t->shape[7], 8);

    ck_assert_int_eq(ir->n_nodes, 2);
    ck_assert_str_eq(ir->nodes[0].name, "fc");
    ck_assert_str_eq(ir->nodes[0].op, "core.linear");
    ck_assert_int_eq(ir->nodes[0].n_inputs, 3);
    ck_assert_int_eq(ir->nodes[0].inputs[0], 0);
    ck_assert_int_eq(ir->nodes[0].inputs[1], 1);
    ck_assert_int_eq(ir->nodes[0].inputs[2], -1);
    ck_assert_int_eq(ir->nodes[0].n_outputs, 1);
    ck_assert_int_eq(ir->nodes[0].outputs[0], 6);
    ck_assert_int_eq(ir->nodes[0].n_attrs, 7);
    a = ir->nodes[0].attrs;
    ck_assert_str_eq(a[0].name, "n");
    ck_assert_int_eq(a[0].type, SMLP_ATTR_INT);
    ck_assert_int_eq(a[0].i, -7);
    ck_assert_int_eq(a[1].type, SMLP_ATTR_FLOAT);
    ck_assert(a[1].f == 1e-5);
    ck_assert_int_eq(a[2].type, SMLP_ATTR_STRING);
    ck_assert_str_eq(a[2].s, "fast");
    ck_assert_int_eq(a[3].type, SMLP_ATTR_INTS);
    ck_assert_uint_eq(a[3].n_values, 3);
    ck_assert_mem_eq(a[3].ints, axes, sizeof(axes));
    ck_assert_int_eq(a[4].type, SMLP_ATTR_FLOATS);
    ck_assert_uint_eq(a[4].n_values, 2);
    ck_assert(a[4].floats[0] == 0.5 && a[4].floats[1] == -2.25);
    ck_assert_int_eq(a[5].type, SMLP_ATTR_INTS);
    ck_assert_uint_eq(a[5].n_values, 0);
    ck_assert_int_eq(a[6].type, SMLP_ATTR_STRING);
    ck_assert_str_eq(a[6].s, "");
    for (int i = 0; i < 7; i++)
        if (a[i].type != SMLP_ATTR_STRING)
            ck_assert_ptr_null(a[i].s);
    ck_assert_str_eq(ir->nodes[1].op, "norm.layer_norm");
    ck_assert_int_eq(ir->nodes[1].n_attrs, 0);
    ck_assert_int_eq(ir->nodes[1].outputs[0], 5);

    ck_assert_int_eq(ir->n_meta, 2);
    ck_assert_str_eq(ir->meta[0].key, "author");
    ck_assert_str_eq(ir->meta[0].value, "smlp tests");
    ck_assert_str_eq(ir->meta[1].key, "bare");
    ck_assert_ptr_null(ir->meta[1].value);
    smlp__graph_ir_free(ir);
    free(buf);
}
END_TEST

START_TEST(test_fbgraph_decode_minimal)
{
    struct smlp__graph_ir *ir;
    size_t len;
    uint8_t *buf = build_fixture("minimal", &len);
    const struct smlp__tensor_ir *t;

    ir = decode_ok(buf, len);
    ck_assert_uint_eq(ir->format_version, 1);
    ck_assert_str_eq(ir->name, "minimal");
    ck_assert_int_eq(ir->n_plugins, 0);
    ck_assert_int_eq(ir->n_tensors, 1);
    t = &ir->tensors[0];
    ck_assert_str_eq(t->name, "t");
    ck_assert_int_eq(t->dtype, SMLP_DTYPE_F32);
    ck_assert_int_eq(t->kind, SMLP__TENSOR_ACTIVATION);
    ck_assert_int_eq(t->has_shape, 0);
    ck_assert_int_eq(t->init.present, 0);
    ck_assert_int_eq(ir->n_nodes, 1);
    ck_assert_str_eq(ir->nodes[0].op, "core.noop");
    ck_assert_int_eq(ir->nodes[0].n_inputs, 0);
    ck_assert_int_eq(ir->nodes[0].n_outputs, 0);
    ck_assert_int_eq(ir->nodes[0].n_attrs, 0);
    ck_assert_str_eq(ir->meta[0].key, "k");
    ck_assert_ptr_null(ir->meta[0].value);
    smlp__graph_ir_free(ir);
    free(buf);

    buf = build_json("bare", "{\"name\": \"bare\", \"format_version\": 3}",
                     &len);
    ir = decode_ok(buf, len);
    ck_assert_str_eq(ir->name, "bare");
    ck_assert_uint_eq(ir->format_version, 3);
    ck_assert_int_eq(ir->n_tensors + ir->n_nodes + ir->n_meta, 0);
    smlp__graph_ir_free(ir);
    free(buf);
}
END_TEST

/* flatc --force-defaults writes every scalar, even at its default. */
START_TEST(test_fbgraph_decode_forced_defaults)
{
    struct smlp__graph_ir *a, *b;
    size_t len_a, len_b;
    char json[512];
    uint8_t *buf_a = build_fixture("full", &len_a), *buf_b;

    snprintf(json, sizeof(json), "%s/tests/data/fbgraph/full.json",
             srcdir());
    buf_b = build_file(json, "--force-defaults", &len_b);
    /* format_version (1, the default) is stored: field() asserts it. */
    ck_assert_uint_eq(get32(buf_b, field(buf_b, root(buf_b), 0)), 1);
    a = decode_ok(buf_a, len_a);
    b = decode_ok(buf_b, len_b);
    assert_ir_equal(a, b);
    smlp__graph_ir_free(a);
    smlp__graph_ir_free(b);
    free(buf_a);
    free(buf_b);
}
END_TEST

START_TEST(test_fbgraph_decode_no_errbuf)
{
    struct smlp__graph_ir *ir = NULL;
    size_t len;
    uint8_t *buf = build_fixture("minimal", &len);

    ck_assert_int_eq(smlp__graph_ir_decode(buf, len, NULL, &ir, NULL, 0),
                     SMLP_OK);
    smlp__graph_ir_free(ir);
    ck_assert_int_eq(smlp__graph_ir_decode(buf, 3, NULL, &ir, NULL, 0),
                     SMLP_EBADFILE);
    ck_assert_int_eq(smlp__graph_ir_decode(NULL, 0, "x", &ir, errbuf,
                                           sizeof(errbuf)),
                     SMLP_EBADFILE);
    ck_assert_ptr_null(ir);
    ck_assert_int_eq(smlp__graph_ir_decode(buf, len, "x", NULL, errbuf,
                                           sizeof(errbuf)),
                     SMLP_EINVAL);
    free(buf);
}
END_TEST

/* ---- Corrupted and invalid files ---- */

/* Each corruption test edits the full fixture. */
static uint8_t *full;
static size_t full_len;

static void
setup_full(void)
{
    full = build_fixture("full", &full_len);
}

static void
teardown_full(void)
{
    free(full);
    full = NULL;
}

START_TEST(test_fbgraph_decode_bad_identifier)
{
    memcpy(full + 4, "SML\x01", 4);
    expect_bad(full, full_len, "file identifier is \"SML\\x01\", expected "
                               "\"SMLG\"");
}
END_TEST

START_TEST(test_fbgraph_decode_truncated_header)
{
    expect_bad(full, 5, "too short");
    expect_bad(full, 0, "file is 0 bytes");
}
END_TEST

START_TEST(test_fbgraph_decode_root_out_of_range)
{
    put32(full, 0, (uint32_t)full_len + 64);
    expect_bad(full, full_len, "root table offset");
    put32(full, 0, 4);
    expect_bad(full, full_len, "out of range");
    put32(full, 0, 10);
    expect_bad(full, full_len, "root table offset 10 is not 4-byte aligned");
}
END_TEST

START_TEST(test_fbgraph_decode_vtable_out_of_range)
{
    put32(full, root(full), (uint32_t)-0x10000);
    expect_bad(full, full_len, "graph: table at offset");
    expect_bad(full, full_len, "is outside the file");
    put32(full, root(full), 0x7ffffff0);
    expect_bad(full, full_len, "is outside the file");
    put32(full, root(full), 1);
    expect_bad(full, full_len, "not 2-byte aligned");
}
END_TEST

START_TEST(test_fbgraph_decode_vtable_size_odd)
{
    put16(full, vtable_of(full, root(full)), 7);
    expect_bad(full, full_len, "vtable size 7 is odd");
}
END_TEST

START_TEST(test_fbgraph_decode_vtable_size_small)
{
    put16(full, vtable_of(full, root(full)), 2);
    expect_bad(full, full_len, "vtable size 2 is smaller than 4");
}
END_TEST

START_TEST(test_fbgraph_decode_vtable_past_end)
{
    put16(full, vtable_of(full, root(full)), 0xfffe);
    expect_bad(full, full_len, "vtable (offset");
    expect_bad(full, full_len, "runs past the end of the file");
}
END_TEST

START_TEST(test_fbgraph_decode_object_size_bad)
{
    size_t vt = vtable_of(full, root(full));

    put16(full, vt + 2, 2);
    expect_bad(full, full_len, "object size 2 is smaller than 4");
    put16(full, vt + 2, 0xfff0);
    expect_bad(full, full_len, "object (65520 bytes) runs past the end");
}
END_TEST

START_TEST(test_fbgraph_decode_field_outside_object)
{
    size_t vt = vtable_of(full, root(full));

    put16(full, vt + 4 + 2 * G_NAME, get16(full, vt + 2));
    expect_bad(full, full_len, "graph: table at offset");
    expect_bad(full, full_len, "field 'name'");
    expect_bad(full, full_len, "lies outside the object");
    put16(full, vt + 4 + 2 * G_NAME, 2);
    expect_bad(full, full_len, "lies outside the object");
}
END_TEST

START_TEST(test_fbgraph_decode_field_misaligned)
{
    size_t t = element(full, root(full), G_TENSORS, 1);
    size_t init = deref(full, field(full, t, T_INIT));
    size_t slot = vtable_of(full, init) + 4 + 2 * 3;

    /* The seed (a ulong) moved to an offset that is not a multiple of 8. */
    ck_assert_uint_ge(get16(full, slot), 8);
    put16(full, slot, get16(full, slot) - 4);
    expect_bad(full, full_len, "tensor 1 'w': init: field 'seed'");
    expect_bad(full, full_len, "not 8-byte aligned");
}
END_TEST

START_TEST(test_fbgraph_decode_string_unterminated)
{
    size_t s = deref(full, field(full, root(full), G_NAME));

    full[s + 4 + get32(full, s)] = 'x';
    expect_bad(full, full_len, "graph: name string (offset");
    expect_bad(full, full_len, "is not NUL-terminated");
}
END_TEST

START_TEST(test_fbgraph_decode_string_past_end)
{
    size_t f = field(full, root(full), G_NAME);
    size_t s = deref(full, f);

    put32(full, s, 0x7ffffff0);
    expect_bad(full, full_len, "name string (offset");
    expect_bad(full, full_len, "runs past the end of the file");
    put32(full, f, (uint32_t)(full_len - f + 8));
    expect_bad(full, full_len, "name offset");
    expect_bad(full, full_len, "points past the end of the file");
    put32(full, f, 0);
    expect_bad(full, full_len, "name: offset 0 at");
    expect_bad(full, full_len, "is invalid");
}
END_TEST

/*
 * A uoffset is 32 bits unsigned, but FlatBuffers buffers are under 2 GiB:
 * an offset of 2^31 or more is invalid whatever the size of the file, as
 * in the FlatBuffers verifier, and is reported as such.  2^31 - 1 is the
 * largest offset that may be valid; in this small file it points past the
 * end, which is a different message.  Checked on a string field (the
 * graph's name) and on an element of a vector of tables (tensor 0).
 */
START_TEST(test_fbgraph_decode_offset_over_int32)
{
    size_t f = field(full, root(full), G_NAME);
    size_t e = deref(full, field(full, root(full), G_TENSORS)) + 4;
    uint32_t saved = get32(full, f);
    char want[128];

    put32(full, f, 0x80000000u);
    snprintf(want, sizeof(want),
             "bad.fbs: graph: name: offset 2147483648 at %zu is invalid", f);
    expect_bad(full, full_len, want);
    put32(full, f, 0xffffffffu);
    snprintf(want, sizeof(want),
             "name: offset 4294967295 at %zu is invalid", f);
    expect_bad(full, full_len, want);
    put32(full, f, 0x7fffffffu);
    snprintf(want, sizeof(want),
             "name offset 2147483647 at %zu points past the end of the "
             "file (%zu bytes)", f, full_len);
    expect_bad(full, full_len, want);
    put32(full, f, saved);
    put32(full, e, 0x80000000u);
    snprintf(want, sizeof(want),
             "bad.fbs: tensor 0: table: offset 2147483648 at %zu is "
             "invalid", e);
    expect_bad(full, full_len, want);
}
END_TEST

START_TEST(test_fbgraph_decode_string_inner_nul)
{
    size_t s = deref(full, field(full, root(full), G_NAME));

    full[s + 5] = '\0';
    expect_bad(full, full_len, "contains a NUL byte");
}
END_TEST

/* Puts the 4 bytes of b over the graph's name ("full", 4 bytes). */
static void
put_graph_name(const char *b)
{
    size_t s = deref(full, field(full, root(full), G_NAME));

    ck_assert_uint_eq(get32(full, s), 4);
    memcpy(full + s + 4, b, 4);
}

/* FlatBuffers strings are UTF-8: anything else is refused where it is. */
START_TEST(test_fbgraph_decode_string_not_utf8)
{
    static const char *const bad[] = {
        "\xc0\x80ll",         /* overlong NUL */
        "fu\xe2\x82",         /* cut short by the end of the string */
        "\xed\xa0\x80l",     /* a surrogate */
        "\xf4\x90\x80\x80", /* beyond U+10FFFF */
        "f\x80ll",            /* a lone continuation byte */
    };
    size_t i, t, n;
    struct smlp__graph_ir *ir;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        put_graph_name(bad[i]);
        expect_bad(full, full_len, "bad.fbs: graph: name string (offset ");
        expect_bad(full, full_len, "is not valid UTF-8: byte ");
    }
    put_graph_name("f\x80ll");
    expect_bad(full, full_len, "is not valid UTF-8: byte 1 is 0x80");
    put_graph_name("\xf0\x9f\x98\x80"); /* U+1F600: fine */
    ir = decode_ok(full, full_len);
    ck_assert_str_eq(ir->name, "\xf0\x9f\x98\x80");
    smlp__graph_ir_free(ir);
    put_graph_name("full");
    /* A node name (node 0 'fc') and a tensor name (tensor 0 'x'). */
    n = deref(full, field(full, element(full, root(full), G_NODES, 0),
                          N_NAME));
    full[n + 5] = (uint8_t)0xff;
    expect_bad(full, full_len,
               "bad.fbs: node 0: name string (offset ");
    expect_bad(full, full_len, "is not valid UTF-8: byte 1 is 0xff");
    full[n + 5] = 'c';
    t = deref(full, field(full, element(full, root(full), G_TENSORS, 0),
                          T_NAME));
    full[t + 4] = (uint8_t)0xc3; /* a lead byte with no continuation */
    expect_bad(full, full_len, "bad.fbs: tensor 0: name string (offset ");
    expect_bad(full, full_len, "is not valid UTF-8: byte 0 is 0xc3");
}
END_TEST

START_TEST(test_fbgraph_decode_vector_overflow)
{
    size_t t = element(full, root(full), G_TENSORS, 0);
    size_t v = deref(full, field(full, t, T_SHAPE));

    put32(full, v, 0xffffffffu);
    expect_bad(full, full_len, "tensor 0 'x': shape vector (offset");
    expect_bad(full, full_len, "4294967295 x 8 bytes) runs past the end");
    put32(full, v, 0x20000001u);
    expect_bad(full, full_len, "runs past the end of the file");
    v = deref(full, field(full, root(full), G_TENSORS));
    put32(full, v, 0x40000000u);
    expect_bad(full, full_len, "graph: tensors vector (offset");
}
END_TEST

/*
 * A vector may end exactly at the end of the file, and not one element
 * later.  The shape of tensor 0 'x' ([-1, 4]: a length of 2, then 2 x 8
 * bytes) is copied to the very end of a longer buffer, its data 8-byte
 * aligned, and the tensor's shape field pointed at the copy.  Ending at
 * the last byte, the file decodes to the same IR as the original; with
 * the length 3, the third element would lie in the 8 bytes after the end
 * of the buffer, and the file is refused.  The buffer is allocated to
 * its exact size, so that ASan sees a read past the end.
 */
START_TEST(test_fbgraph_decode_vector_at_end)
{
    size_t t = element(full, root(full), G_TENSORS, 0);
    size_t f = field(full, t, T_SHAPE);
    size_t old = deref(full, f);
    size_t pos = (full_len + 7) / 8 * 8 + 4; /* pos + 4 is 8-aligned */
    size_t len = pos + 4 + 2 * 8;
    struct smlp__graph_ir *whole, *ir;
    uint8_t *buf = calloc(1, len);
    char want[160];

    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(get32(full, old), 2);
    memcpy(buf, full, full_len);
    memcpy(buf + pos, full + old, 4 + 2 * 8);
    put32(buf, f, (uint32_t)(pos - f));
    whole = decode_ok(full, full_len);
    ir = decode_ok(buf, len);
    assert_ir_equal(whole, ir);
    ck_assert_int_eq(ir->tensors[0].rank, 2);
    ck_assert_int_eq(ir->tensors[0].shape[1], 4);
    smlp__graph_ir_free(ir);
    smlp__graph_ir_free(whole);

    put32(buf, pos, 3);
    snprintf(want, sizeof(want),
             "bad.fbs: tensor 0 'x': shape vector (offset %zu, 3 x 8 bytes) "
             "runs past the end of the file (%zu bytes)", pos, len);
    expect_bad(buf, len, want);
    free(buf);
}
END_TEST

START_TEST(test_fbgraph_decode_misaligned_offset)
{
    size_t f = field(full, root(full), G_NAME);
    size_t t = element(full, root(full), G_TENSORS, 0);

    put32(full, f, get32(full, f) + 2);
    expect_bad(full, full_len, "not 4-byte aligned");
    put32(full, f, get32(full, f) - 2);
    /* A [long] whose data is not 8-byte aligned. */
    f = field(full, t, T_SHAPE);
    put32(full, f, get32(full, f) + 4);
    expect_bad(full, full_len, "shape vector data (offset");
    expect_bad(full, full_len, "is not 8-byte aligned");
}
END_TEST

START_TEST(test_fbgraph_decode_enum_out_of_range)
{
    size_t t = element(full, root(full), G_TENSORS, 3);
    size_t n = element(full, root(full), G_NODES, 0);
    size_t a = element(full, n, N_ATTRS, 1);
    size_t init = deref(full, field(full, element(full, root(full),
                                                  G_TENSORS, 1), T_INIT));
    uint8_t *copy = malloc(full_len);

    memcpy(copy, full, full_len);
    full[field(full, t, T_DTYPE)] = 7;
    expect_bad(full, full_len, "tensor 3 'step': dtype 7 is not a valid "
                               "DType (0..1)");
    memcpy(full, copy, full_len);
    full[field(full, t, T_KIND)] = 5;
    expect_bad(full, full_len, "kind 5 is not a valid TensorKind");
    memcpy(full, copy, full_len);
    full[field(full, a, A_TYPE)] = 0x80;
    expect_bad(full, full_len, "node 0 'fc': attr 1 'eps': type -128 is "
                               "not a valid AttrType");
    memcpy(full, copy, full_len);
    full[field(full, init, 0)] = 5;
    expect_bad(full, full_len, "kind 5 is not a valid InitKind");
    free(copy);
}
END_TEST

START_TEST(test_fbgraph_decode_missing_name)
{
    size_t n = element(full, root(full), G_NODES, 0);
    size_t t = element(full, root(full), G_TENSORS, 0);
    uint8_t *copy = malloc(full_len);

    memcpy(copy, full, full_len);
    put16(full, vtable_of(full, n) + 4 + 2 * N_NAME, 0);
    expect_bad(full, full_len, "node 0: required field 'name' is missing");
    memcpy(full, copy, full_len);
    put16(full, vtable_of(full, n) + 4 + 2 * 1, 0);
    expect_bad(full, full_len, "node 0 'fc': required field 'op' is "
                               "missing");
    memcpy(full, copy, full_len);
    put16(full, vtable_of(full, t) + 4 + 2 * T_NAME, 0);
    expect_bad(full, full_len, "tensor 0: required field 'name'");
    memcpy(full, copy, full_len);
    put16(full, vtable_of(full, root(full)) + 4 + 2 * G_NAME, 0);
    expect_bad(full, full_len, "graph: required field 'name' is missing");
    memcpy(full, copy, full_len);
    put16(full, vtable_of(full, element(full, n, N_ATTRS, 0)) + 4, 0);
    expect_bad(full, full_len, "node 0 'fc': attr 0: required field 'name'");
    memcpy(full, copy, full_len);
    put16(full, vtable_of(full, element(full, root(full), G_META, 0)) + 4,
          0);
    expect_bad(full, full_len, "metadata 0: required field 'key' is "
                               "missing");
    free(copy);
}
END_TEST

START_TEST(test_fbgraph_decode_index_out_of_range)
{
    static const char *const cases[][2] = {
        {"{\"name\": \"g\", \"tensors\": [{\"name\": \"a\"}, {\"name\": "
         "\"b\"}], \"nodes\": [{\"name\": \"n\", \"op\": \"c.o\", "
         "\"inputs\": [0, 2], \"outputs\": [1]}]}",
         "node 0 'n': input 1 is tensor 2, out of range [-1, 2)"},
        {"{\"name\": \"g\", \"tensors\": [{\"name\": \"a\"}], \"nodes\": "
         "[{\"name\": \"n\", \"op\": \"c.o\", \"inputs\": [-2]}]}",
         "input 0 is tensor -2, out of range"},
        {"{\"name\": \"g\", \"tensors\": [{\"name\": \"a\"}], \"nodes\": "
         "[{\"name\": \"n\", \"op\": \"c.o\", \"outputs\": [-1]}]}",
         "output 0 is tensor -1, out of range [0, 1)"},
    };
    size_t i, len;
    uint8_t *buf;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        buf = build_json("index", cases[i][0], &len);
        expect_bad(buf, len, cases[i][1]);
        free(buf);
    }
}
END_TEST

START_TEST(test_fbgraph_decode_rank_too_big)
{
    size_t len;
    uint8_t *buf = build_json(
        "rank", "{\"name\": \"g\", \"tensors\": [{\"name\": \"big\", "
                "\"shape\": [1, 2, 3, 4, 5, 6, 7, 8, 9]}]}", &len);

    expect_bad(buf, len, "tensor 0 'big': shape has rank 9, more than the "
                         "limit of 8");
    free(buf);
}
END_TEST

/* Builds {"name": "g", PREFIX "[0, 0, ...]" SUFFIX} with n zeros. */
static uint8_t *
build_repeated(const char *prefix, const char *item, size_t n,
               const char *suffix, size_t *len)
{
    size_t cap = strlen(prefix) + n * (strlen(item) + 2) + strlen(suffix) + 64;
    char *json = malloc(cap);
    uint8_t *buf;
    size_t i, at;

    at = (size_t)snprintf(json, cap, "{\"name\": \"g\", %s[", prefix);
    for (i = 0; i < n; i++)
        at += (size_t)snprintf(json + at, cap - at, "%s%s", i ? ", " : "",
                               item);
    snprintf(json + at, cap - at, "]%s}", suffix);
    buf = build_json("repeated", json, len);
    free(json);
    return buf;
}

START_TEST(test_fbgraph_decode_over_limits)
{
    size_t len, at;
    uint8_t *buf;
    char *json;

    buf = build_repeated("\"tensors\": [{\"name\": \"a\"}], \"nodes\": "
                         "[{\"name\": \"n\", \"op\": \"c.o\", \"inputs\": ",
                         "0", SMLP__MAX_NODE_IO + 1, "}]", &len);
    expect_bad(buf, len, "node 0 'n': inputs vector has 65 elements, more "
                         "than the limit of 64");
    free(buf);
    buf = build_repeated("\"nodes\": [{\"name\": \"n\", \"op\": \"c.o\", "
                         "\"attrs\": ", "{\"name\": \"a\"}",
                         SMLP__MAX_ATTRS + 1, "}]", &len);
    expect_bad(buf, len, "attrs vector has 257 elements");
    free(buf);
    buf = build_repeated("\"plugins\": ", "\"p\"", SMLP__MAX_PLUGINS + 1,
                         "", &len);
    expect_bad(buf, len, "graph: plugins vector has 257 elements");
    free(buf);

    json = malloc(SMLP__MAX_STRING + 64);
    at = (size_t)snprintf(json, 64, "{\"name\": \"g\", \"tensors\": "
                                    "[{\"name\": \"");
    memset(json + at, 'n', SMLP__MAX_STRING + 1);
    snprintf(json + at + SMLP__MAX_STRING + 1, 8, "\"}]}");
    buf = build_json("long", json, &len);
    free(json);
    expect_bad(buf, len, "tensor 0: name string (offset");
    expect_bad(buf, len, "is 65537 bytes long, more than the limit of 65536");
    free(buf);
}
END_TEST

/*
 * Many references to one big table: legal FlatBuffers, but the IR would
 * copy the table's 60 KB name for each of them.
 */
START_TEST(test_fbgraph_decode_shared_objects)
{
    size_t n = 200, cap = 70000 + n * 32, at, i, len, v, t0;
    char *json = malloc(cap);
    uint8_t *buf;

    at = (size_t)snprintf(json, cap, "{\"name\": \"g\", \"tensors\": "
                                     "[{\"name\": \"");
    memset(json + at, 'w', 60000);
    at += 60000;
    at += (size_t)snprintf(json + at, cap - at, "\"}");
    for (i = 1; i < n; i++)
        at += (size_t)snprintf(json + at, cap - at, ", {\"name\": \"t%zu\"}",
                               i);
    snprintf(json + at, cap - at, "]}");
    buf = build_json("shared", json, &len);
    free(json);
    v = deref(buf, field(buf, root(buf), G_TENSORS));
    t0 = deref(buf, v + 4);
    for (i = 1; i < n; i++) {
        ck_assert_uint_gt(t0, v + 4 + 4 * i);
        put32(buf, v + 4 + 4 * i, (uint32_t)(t0 - (v + 4 + 4 * i)));
    }
    expect_bad(buf, len, "referenced more than once");
    free(buf);
}
END_TEST

START_TEST(test_fbgraph_decode_attr_mismatch)
{
    static const char *const cases[][2] = {
        {"{\"name\": \"s\", \"type\": \"String\"}",
         "attr 0 's': type String but no 's' value"},
        {"{\"name\": \"eps\", \"f\": 0.5}",
         "attr 0 'eps': type Int does not match the value in 'f'"},
        {"{\"name\": \"k\", \"type\": \"Float\", \"i\": 3}",
         "type Float does not match the value in 'i'"},
        {"{\"name\": \"axes\", \"ints\": [1, 2]}",
         "type Int does not match the value in 'ints'"},
        {"{\"name\": \"m\", \"type\": \"Ints\", \"s\": \"x\"}",
         "type Ints does not match the value in 's'"},
        {"{\"name\": \"v\", \"type\": \"Ints\", \"floats\": [1.0]}",
         "type Ints does not match the value in 'floats'"},
        {"{\"name\": \"d\"}, {\"name\": \"e\"}, {\"name\": \"d\"}",
         "attrs 0 and 2 are both named 'd'"},
        /* Duplicates as the pair that ends the list, and as a list of two
         * (a check that stops one pair early misses them). */
        {"{\"name\": \"a\"}, {\"name\": \"b\"}, {\"name\": \"d\"}, "
         "{\"name\": \"d\"}",
         "bad.fbs: node 0 'n': attrs 2 and 3 are both named 'd'"},
        {"{\"name\": \"d\"}, {\"name\": \"d\"}",
         "node 0 'n': attrs 0 and 1 are both named 'd'"},
    };
    char json[512];
    size_t i, len;
    uint8_t *buf;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(json, sizeof(json), "{\"name\": \"g\", \"nodes\": "
                 "[{\"name\": \"n\", \"op\": \"c.o\", \"attrs\": [%s]}]}",
                 cases[i][0]);
        buf = build_json("attr", json, &len);
        expect_bad(buf, len, cases[i][1]);
        free(buf);
    }
}
END_TEST

/* ---- Truncated and flipped files ---- */

/*
 * Every prefix of a real file fails cleanly.  A prefix that only drops
 * trailing padding may still decode, and must then decode to the same IR.
 */
START_TEST(test_fbgraph_decode_truncated_every_length)
{
    struct smlp__graph_ir *whole = decode_ok(full, full_len), *ir;
    size_t n, k;
    int rc;

    for (n = 0; n < full_len; n++) {
        uint8_t *copy = malloc(n > 0 ? n : 1);
        memcpy(copy, full, n);
        ir = NULL;
        rc = decode(copy, n, &ir);
        if (rc == SMLP_OK) {
            for (k = n; k < full_len; k++)
                ck_assert_msg(full[k] == 0, "decoded at length %zu", n);
            assert_ir_equal(whole, ir);
            smlp__graph_ir_free(ir);
        } else {
            ck_assert_int_eq(rc, SMLP_EBADFILE);
            ck_assert_ptr_null(ir);
            ck_assert_msg(strncmp(errbuf, "test.fbs: ", 10) == 0, "%s",
                          errbuf);
        }
        free(copy);
    }
    smlp__graph_ir_free(whole);
}
END_TEST

/*
 * Each byte set to several values: the decoder either refuses the file
 * with a message or decodes it, and what it decodes the writer accepts
 * and writes back to an equal IR.
 */
START_TEST(test_fbgraph_decode_flipped_bytes)
{
    static const uint8_t masks[] = {0x01, 0x80, 0xff, 0x10};
    struct smlp__graph_ir *ir;
    size_t i, m, accepted = 0;
    int rc;

    for (i = 0; i < full_len; i++) {
        for (m = 0; m < sizeof(masks) + 1; m++) {
            uint8_t old = full[i];
            full[i] = m < sizeof(masks) ? old ^ masks[m] : 0;
            if (full[i] == old)
                continue;
            ir = NULL;
            rc = decode(full, full_len, &ir);
            full[i] = old;
            if (rc != SMLP_OK) {
                ck_assert_int_eq(rc, SMLP_EBADFILE);
                ck_assert_ptr_null(ir);
                ck_assert_msg(strncmp(errbuf, "test.fbs: ", 10) == 0 &&
                                  strlen(errbuf) > 12,
                              "%s", errbuf);
                continue;
            }
            accepted++;
            assert_encode_roundtrip(ir);
            smlp__graph_ir_free(ir);
        }
    }
    /* Flips in names and values are legal. */
    ck_assert_uint_gt(accepted, 0);
}
END_TEST

/* ---- Encoding ---- */

/* A graph made here, with many tensors (shared vtables) and edge values;
 * `exotic` adds values that flatc's JSON cannot carry exactly. */
static struct smlp__graph_ir *
make_ir(int exotic)
{
    struct smlp__graph_ir *ir = calloc(1, sizeof(*ir));
    struct smlp__node_ir *n;
    struct smlp__attr_ir *a;
    char name[32];
    int32_t i, d;

    ck_assert_ptr_nonnull(ir);
    ir->format_version = exotic ? 0xfffffffeu : 2;
    ir->name = strdup(exotic ? "" : "made");
    ir->n_plugins = 1;
    ir->plugins = calloc(1, sizeof(char *));
    ir->plugins[0] = strdup("core");
    ir->n_tensors = 300;
    ir->tensors = calloc(300, sizeof(*ir->tensors));
    for (i = 0; i < 300; i++) {
        struct smlp__tensor_ir *t = &ir->tensors[i];
        snprintf(name, sizeof(name), "t%d", i);
        t->name = strdup(name);
        t->dtype = i % 2;
        t->kind = i % 5;
        t->has_shape = i % 3 != 0;
        t->rank = t->has_shape ? i % 9 : 0;
        for (d = 0; d < t->rank; d++)
            t->shape[d] = d == 0 ? -1 : (int64_t)i * 1000 + d;
        if (i % 4 == 0) {
            t->init.present = 1;
            t->init.kind = i % 5;
            t->init.a = exotic ? -0.0f : 0.25f * (float)(i % 7);
            t->init.b = exotic ? (float)NAN : 2.5f;
            t->init.seed = exotic ? UINT64_MAX : (uint64_t)i * 977;
        }
    }
    ir->n_nodes = 2;
    ir->nodes = calloc(2, sizeof(*ir->nodes));
    n = &ir->nodes[0];
    n->name = strdup("n0");
    n->op = strdup("core.thing");
    n->n_inputs = 3;
    n->inputs = calloc(3, sizeof(int32_t));
    n->inputs[0] = 299;
    n->inputs[1] = -1;
    n->inputs[2] = 0;
    n->n_outputs = 2;
    n->outputs = calloc(2, sizeof(int32_t));
    n->outputs[0] = 5;
    n->outputs[1] = 6;
    n->n_attrs = 6;
    n->attrs = a = calloc(6, sizeof(*n->attrs));
    a[0].name = strdup("i");
    a[0].i = exotic ? INT64_MIN : -42;
    a[1].name = strdup("f");
    a[1].type = SMLP_ATTR_FLOAT;
    a[1].f = exotic ? -0.0 : 0.125;
    a[2].name = strdup("s");
    a[2].type = SMLP_ATTR_STRING;
    a[2].s = strdup(exotic ? "" : "text with \"quotes\" and \xc3\xa9");
    a[3].name = strdup("ints");
    a[3].type = SMLP_ATTR_INTS;
    a[3].n_values = 3;
    a[3].ints = calloc(3, 8);
    a[3].ints[0] = INT64_MAX;
    a[3].ints[1] = -5;
    a[3].ints[2] = exotic ? INT64_MIN : 0;
    a[4].name = strdup("floats");
    a[4].type = SMLP_ATTR_FLOATS;
    a[4].n_values = 2;
    a[4].floats = calloc(2, 8);
    a[4].floats[0] = exotic ? 1e-300 : 1.5;
    a[4].floats[1] = exotic ? (double)INFINITY : -1024.0;
    a[5].name = strdup("none");
    a[5].type = SMLP_ATTR_FLOATS;
    n = &ir->nodes[1];
    n->name = strdup("n1");
    n->op = strdup("core.other");
    ir->n_meta = 2;
    ir->meta = calloc(2, sizeof(*ir->meta));
    ir->meta[0].key = strdup("k");
    ir->meta[0].value = strdup("v");
    ir->meta[1].key = strdup("");
    return ir;
}

START_TEST(test_fbgraph_encode_roundtrip)
{
    struct smlp__graph_ir *ir = decode_ok(full, full_len);

    assert_encode_roundtrip(ir);
    smlp__graph_ir_free(ir);
    ir = make_ir(0);
    assert_encode_roundtrip(ir);
    smlp__graph_ir_free(ir);
    ir = make_ir(1);
    assert_encode_roundtrip(ir);
    smlp__graph_ir_free(ir);
}
END_TEST

/* Writing what was read gives the same bytes again (the writer is
 * deterministic), and [long]/[double] data lands on 8-byte boundaries. */
START_TEST(test_fbgraph_encode_stable_aligned)
{
    struct smlp__graph_ir *ir = make_ir(1), *back;
    uint8_t *a, *b;
    size_t len_a, len_b, i, t, v;

    ck_assert_int_eq(smlp__graph_ir_encode(ir, &a, &len_a, errbuf,
                                           sizeof(errbuf)), SMLP_OK);
    ck_assert_mem_eq(a + 4, "SMLG", 4);
    back = decode_ok(a, len_a);
    ck_assert_int_eq(smlp__graph_ir_encode(back, &b, &len_b, errbuf,
                                           sizeof(errbuf)), SMLP_OK);
    ck_assert_uint_eq(len_a, len_b);
    ck_assert_mem_eq(a, b, len_a);
    for (i = 0; i < 300; i++) {
        if (!ir->tensors[i].has_shape || ir->tensors[i].rank == 0)
            continue;
        t = element(a, root(a), G_TENSORS, i);
        v = deref(a, field(a, t, T_SHAPE));
        ck_assert_uint_eq((v + 4) % 8, 0);
    }
    t = element(a, root(a), G_NODES, 0);
    for (i = 3; i < 5; i++) {
        v = deref(a, field(a, element(a, t, N_ATTRS, i), 5 + (int)i - 3));
        ck_assert_uint_eq((v + 4) % 8, 0);
    }
    smlp__graph_ir_free(back);
    smlp__graph_ir_free(ir);
    free(a);
    free(b);
}
END_TEST

/* Writes ir to TMPDIR/NAME.fbs, turns it into JSON and back with flatc,
 * and checks that the result decodes to an equal IR. */
static void
assert_flatc_roundtrip(const struct smlp__graph_ir *ir, const char *name)
{
    struct smlp__graph_ir *back;
    char path[600], args[1536], jdir[512];
    uint8_t *buf;
    size_t len;

    ck_assert_int_eq(smlp__graph_ir_encode(ir, &buf, &len, errbuf,
                                           sizeof(errbuf)), SMLP_OK);
    snprintf(path, sizeof(path), "%s/%s.fbs", tmpdir, name);
    write_file(path, buf, len);
    free(buf);
    snprintf(jdir, sizeof(jdir), "%s/json", tmpdir);
    mkdir(jdir, 0700);
    snprintf(args, sizeof(args), "--json --strict-json -o '%s' "
             "'%s/schemas/graph.fbs' -- '%s'", jdir,
             srcdir(), path);
    flatc(args);
    snprintf(path, sizeof(path), "%s/%s.json", jdir, name);
    buf = build_file(path, "", &len);
    back = decode_ok(buf, len);
    assert_ir_equal(ir, back);
    smlp__graph_ir_free(back);
    free(buf);
}

START_TEST(test_fbgraph_encode_flatc_json)
{
    struct smlp__graph_ir *ir = decode_ok(full, full_len);

    assert_flatc_roundtrip(ir, "enc_full");
    smlp__graph_ir_free(ir);
    ir = make_ir(0);
    assert_flatc_roundtrip(ir, "enc_made");
    smlp__graph_ir_free(ir);
}
END_TEST

/* The writer must refuse ir with SMLP_EINVAL and a message with needle. */
static void
expect_einval(const struct smlp__graph_ir *ir, const char *needle)
{
    uint8_t *buf = (uint8_t *)&buf;
    size_t len = 1;

    ck_assert_int_eq(smlp__graph_ir_encode(ir, &buf, &len, errbuf,
                                           sizeof(errbuf)),
                     SMLP_EINVAL);
    ck_assert_ptr_null(buf);
    ck_assert_msg(strstr(errbuf, needle) != NULL, "message \"%s\" lacks "
                  "\"%s\"", errbuf, needle);
}

/* The writer refuses an IR that the reader would refuse. */
START_TEST(test_fbgraph_encode_invalid)
{
    struct smlp__graph_ir *ir = decode_ok(full, full_len);
    uint8_t *buf;
    size_t len;
    char *save;

    ir->tensors[0].rank = 9;
    expect_einval(ir, "cannot encode graph 'full': tensor 0 'x': rank 9");
    ir->tensors[0].rank = 2;
    ir->tensors[1].dtype = 2;
    expect_einval(ir, "tensor 1 'w': dtype 2 is out of range");
    ir->tensors[1].dtype = 0;
    ir->nodes[0].inputs[0] = 7;
    expect_einval(ir, "node 0 'fc': input 0 is tensor 7, out of range");
    ir->nodes[0].inputs[0] = 0;
    ir->nodes[0].attrs[0].f = 1.0;
    expect_einval(ir, "holds a value that is not of its type");
    ir->nodes[0].attrs[0].f = 0.0;
    save = ir->nodes[0].attrs[2].s;
    ir->nodes[0].attrs[2].s = NULL;
    expect_einval(ir, "type String but s is NULL");
    ir->nodes[0].attrs[2].s = save;
    save = ir->name;
    ir->name = NULL;
    expect_einval(ir, "the graph's name is NULL");
    ir->name = save;
    ir->nodes[1].n_outputs = 65;
    expect_einval(ir, "65 outputs, out of range [0, 64]");
    ir->nodes[1].n_outputs = 1;
    /* Everything put back, the IR encodes again. */
    assert_encode_roundtrip(ir);
    ck_assert_int_eq(smlp__graph_ir_encode(NULL, &buf, &len, NULL, 0),
                     SMLP_EINVAL);
    smlp__graph_ir_free(ir);
}
END_TEST

/* Whether field `id` of the table is present (its vtable entry nonzero). */
static int
has_field(const uint8_t *b, size_t table, int id)
{
    size_t vt = vtable_of(b, table);

    return 4 + 2 * (size_t)id < get16(b, vt) &&
           get16(b, vt + 4 + 2 * (size_t)id) != 0;
}

/* Leaves the heap blocks that the writer is likely to get next full of
 * 0xa5 bytes, so that padding the writer forgot to clear would show. */
static void
dirty_heap(void)
{
    static const size_t sizes[] = {4096, 8192, 16384};
    void *p[3];
    size_t i;

    for (i = 0; i < 3; i++) {
        p[i] = malloc(sizes[i]);
        ck_assert_ptr_nonnull(p[i]);
        memset(p[i], 0xa5, sizes[i]);
    }
    for (i = 0; i < 3; i++)
        free(p[i]);
}

/*
 * The smallest graphs, byte for byte, as worked out by hand from the
 * layout the writer's header describes (root offset and identifier, then
 * each table preceded by its vtable, children after their parent, every
 * item aligned to its size and no more, padding zero).  flatc reads them.
 */
START_TEST(test_fbgraph_encode_bytes_by_hand)
{
    static const uint8_t want_g[] = {
        /* 0: root table at 16; identifier */
        0x10, 0, 0, 0, 'S', 'M', 'L', 'G',
        /* 8: vtable of Graph: 8 bytes, table 8 bytes, format_version
         * absent (1 is the default), name at +4 */
        8, 0, 8, 0, 0, 0, 4, 0,
        /* 16: Graph: soffset 16 - 8 = 8; name at 20 + 4 = 24 */
        8, 0, 0, 0, 4, 0, 0, 0,
        /* 24: "g" */
        1, 0, 0, 0, 'g', 0};
    static const uint8_t want_ab[] = {
        /* 0: root table at 20; identifier */
        0x14, 0, 0, 0, 'S', 'M', 'L', 'G',
        /* 8: vtable: 10 bytes, table 12, no version, name +4,
         * plugins +8 */
        10, 0, 12, 0, 0, 0, 4, 0, 8, 0,
        /* 18: padding to 4 */
        0, 0,
        /* 20: Graph: soffset 12; name at 24 + 8 = 32; plugins at
         * 28 + 12 = 40 */
        12, 0, 0, 0, 8, 0, 0, 0, 12, 0, 0, 0,
        /* 32: "ab", then one byte of padding */
        2, 0, 0, 0, 'a', 'b', 0, 0,
        /* 40: plugins: 1 entry, at 44 + 4 = 48 */
        1, 0, 0, 0, 4, 0, 0, 0,
        /* 48: "c" */
        1, 0, 0, 0, 'c', 0};
    struct smlp__graph_ir ir;
    char *plugins[] = {"c"}, path[600], args[1536];
    uint8_t *buf;
    size_t len;

    memset(&ir, 0, sizeof(ir));
    ir.format_version = 1;
    ir.name = "g";
    dirty_heap();
    ck_assert_int_eq(smlp__graph_ir_encode(&ir, &buf, &len, errbuf,
                                           sizeof(errbuf)), SMLP_OK);
    ck_assert_uint_eq(len, sizeof(want_g));
    ck_assert_mem_eq(buf, want_g, sizeof(want_g));
    free(buf);

    ir.name = "ab";
    ir.n_plugins = 1;
    ir.plugins = plugins;
    dirty_heap();
    ck_assert_int_eq(smlp__graph_ir_encode(&ir, &buf, &len, errbuf,
                                           sizeof(errbuf)), SMLP_OK);
    ck_assert_uint_eq(len, sizeof(want_ab));
    ck_assert_mem_eq(buf, want_ab, sizeof(want_ab));
    free(buf);

    /* flatc agrees on what the bytes say. */
    snprintf(path, sizeof(path), "%s/ab.fbs", tmpdir);
    write_file(path, want_ab, sizeof(want_ab));
    snprintf(args, sizeof(args), "--json --strict-json --raw-binary -o '%s' "
             "'%s/schemas/graph.fbs' -- '%s'", tmpdir, srcdir(), path);
    flatc(args);
    snprintf(path, sizeof(path), "%s/ab.json", tmpdir);
    buf = tu_read_file(path, &len);
    ck_assert_ptr_nonnull(strstr((char *)buf, "\"name\": \"ab\""));
    ck_assert_ptr_nonnull(strstr((char *)buf, "\"c\""));
    free(buf);
}
END_TEST

/* The IR of a graph for the layout checks: tensors p0..p39 alike
 * (Parameter, shape [4, 3], Normal init with its own seed, some >= 2^63),
 * then "z" (an F32 activation with a Zeros init of all-zero bits), "m" (an
 * I32 input whose init has a = -0.0 and b = 5e-324, the smallest
 * subnormal, a single 1 bit), and one node "n" with no inputs and
 * an attribute of each type, values at their defaults where they can be. */
static struct smlp__graph_ir *
make_layout_ir(void)
{
    struct smlp__graph_ir *ir = calloc(1, sizeof(*ir));
    struct smlp__tensor_ir *t;
    struct smlp__attr_ir *a;
    char name[16];
    int32_t i;

    ck_assert_ptr_nonnull(ir);
    ir->format_version = 1;
    ir->name = strdup("layout");
    ir->n_tensors = 42;
    ir->tensors = calloc(42, sizeof(*ir->tensors));
    for (i = 0; i < 40; i++) {
        t = &ir->tensors[i];
        snprintf(name, sizeof(name), "p%d", (int)i);
        t->name = strdup(name);
        t->kind = SMLP__TENSOR_PARAMETER;
        t->has_shape = 1;
        t->rank = 2;
        t->shape[0] = 4;
        t->shape[1] = 3;
        t->init.present = 1;
        t->init.kind = SMLP__INIT_NORMAL;
        t->init.b = 0.02;
        t->init.seed = i % 2 ? UINT64_MAX - (uint64_t)i : (uint64_t)i + 1;
    }
    t = &ir->tensors[40];
    t->name = strdup("z");
    t->init.present = 1;
    t = &ir->tensors[41];
    t->name = strdup("m");
    t->dtype = SMLP_DTYPE_I32;
    t->kind = SMLP__TENSOR_INPUT;
    t->has_shape = 1;
    t->init.present = 1;
    t->init.a = -0.0;
    t->init.b = 5e-324;                     /* bits 0x0000000000000001 */
    ir->n_nodes = 1;
    ir->nodes = calloc(1, sizeof(*ir->nodes));
    ir->nodes[0].name = strdup("n");
    ir->nodes[0].op = strdup("core.thing");
    ir->nodes[0].n_outputs = 1;
    ir->nodes[0].outputs = calloc(1, sizeof(int32_t));
    ir->nodes[0].outputs[0] = 40;
    ir->nodes[0].n_attrs = 7;
    ir->nodes[0].attrs = a = calloc(7, sizeof(*a));
    a[0].name = strdup("int0");              /* Int 0: no type, no i */
    a[1].name = strdup("int");
    a[1].i = INT64_MIN;
    a[2].name = strdup("negzero");
    a[2].type = SMLP_ATTR_FLOAT;
    a[2].f = -0.0;
    a[3].name = strdup("s");
    a[3].type = SMLP_ATTR_STRING;
    a[3].s = strdup("odd");
    a[4].name = strdup("ints");
    a[4].type = SMLP_ATTR_INTS;
    a[4].n_values = 3;
    a[4].ints = calloc(3, 8);
    a[4].ints[0] = -1;
    a[5].name = strdup("floats");
    a[5].type = SMLP_ATTR_FLOATS;
    a[5].n_values = 1;
    a[5].floats = calloc(1, 8);
    a[5].floats[0] = 5e-324;
    a[6].name = strdup("nofloats");
    a[6].type = SMLP_ATTR_FLOATS;
    return ir;
}

static uint64_t
get64(const uint8_t *b, size_t at)
{
    uint64_t v;

    memcpy(&v, b + at, 8);
    return v;
}

/* The 8-byte scalar field `id` of the table: present, aligned to 8 in the
 * file, holding `bits`. */
static void
assert_field64(const uint8_t *b, size_t table, int id, uint64_t bits)
{
    size_t at = field(b, table, id);

    ck_assert_msg(at % 8 == 0, "8-byte field %d at offset %zu", id, at);
    ck_assert_uint_eq(get64(b, at), bits);
}

/*
 * What the writer's header promises about the bytes, read back with the
 * navigation helpers: 8-byte scalars and [long]/[double] data aligned to
 * 8 in the file; scalars at their default left out (compared bit for bit,
 * so -0.0 is written); tables alike share one vtable.
 */
START_TEST(test_fbgraph_encode_layout)
{
    struct smlp__graph_ir *ir = make_layout_ir(), *back;
    const struct smlp__tensor_ir *ten;
    uint8_t *b;
    size_t len, t, it, n, a, vt0, ivt0, v;
    uint64_t negzero = (uint64_t)1 << 63;
    int i;

    ck_assert_int_eq(smlp__graph_ir_encode(ir, &b, &len, errbuf,
                                           sizeof(errbuf)), SMLP_OK);
    /* The root: format_version 1 is the default, left out. */
    ck_assert(!has_field(b, root(b), 0));
    vt0 = vtable_of(b, element(b, root(b), G_TENSORS, 0));
    ivt0 = vtable_of(b, deref(b, field(b, element(b, root(b), G_TENSORS, 0),
                                       T_INIT)));
    for (i = 0; i < 40; i++) {
        ten = &ir->tensors[i];
        t = element(b, root(b), G_TENSORS, (size_t)i);
        /* F32 is the default dtype; Parameter is not the default kind. */
        ck_assert(!has_field(b, t, T_DTYPE));
        ck_assert_int_eq(b[field(b, t, T_KIND)], SMLP__TENSOR_PARAMETER);
        v = deref(b, field(b, t, T_SHAPE));
        ck_assert_uint_eq(get32(b, v), 2);
        ck_assert_uint_eq((v + 4) % 8, 0);
        ck_assert_uint_eq(get64(b, v + 4), 4);
        ck_assert_uint_eq(get64(b, v + 12), 3);
        it = deref(b, field(b, t, T_INIT));
        ck_assert_int_eq(b[field(b, it, 0)], SMLP__INIT_NORMAL);
        ck_assert(!has_field(b, it, 1));          /* a = 0.0 */
        assert_field64(b, it, 2, 0x3f947ae147ae147bu);   /* 0.02 */
        assert_field64(b, it, 3, ten->init.seed);
        /* One vtable for the 40 tensor tables, one for their inits. */
        ck_assert_uint_eq(vtable_of(b, t), vt0);
        ck_assert_uint_eq(vtable_of(b, it), ivt0);
    }
    ck_assert_uint_ne(vt0, ivt0);
    /* z: every scalar at its default, none written. */
    t = element(b, root(b), G_TENSORS, 40);
    ck_assert(!has_field(b, t, T_DTYPE) && !has_field(b, t, T_KIND) &&
              !has_field(b, t, T_SHAPE));
    it = deref(b, field(b, t, T_INIT));
    for (i = 0; i < 4; i++)
        ck_assert_msg(!has_field(b, it, i), "Zeros init field %d", i);
    /* m: I32, Input, shape [] (an empty vector, not absent), a = -0.0,
     * b = 5e-324: neither is the default 0.0, bit for bit. */
    t = element(b, root(b), G_TENSORS, 41);
    ck_assert_int_eq(b[field(b, t, T_DTYPE)], SMLP_DTYPE_I32);
    ck_assert_int_eq(b[field(b, t, T_KIND)], SMLP__TENSOR_INPUT);
    ck_assert_uint_eq(get32(b, deref(b, field(b, t, T_SHAPE))), 0);
    it = deref(b, field(b, t, T_INIT));
    ck_assert(!has_field(b, it, 0) && !has_field(b, it, 3));
    assert_field64(b, it, 1, negzero);
    assert_field64(b, it, 2, 1);
    /* The node: no inputs vector; one output. */
    n = element(b, root(b), G_NODES, 0);
    ck_assert(!has_field(b, n, 2));
    ck_assert_uint_eq(get32(b, deref(b, field(b, n, 3))), 1);
    /* Attrs (fields: name 0, type 1, i 2, f 3, s 4, ints 5, floats 6). */
    a = element(b, n, N_ATTRS, 0);
    for (i = 1; i < 7; i++)
        ck_assert_msg(!has_field(b, a, i), "Int 0 attr field %d", i);
    a = element(b, n, N_ATTRS, 1);
    ck_assert(!has_field(b, a, A_TYPE));
    assert_field64(b, a, 2, (uint64_t)INT64_MIN);
    a = element(b, n, N_ATTRS, 2);
    ck_assert_int_eq(b[field(b, a, A_TYPE)], SMLP_ATTR_FLOAT);
    assert_field64(b, a, 3, negzero);
    a = element(b, n, N_ATTRS, 4);
    v = deref(b, field(b, a, 5));
    ck_assert_uint_eq(get32(b, v), 3);
    ck_assert_uint_eq((v + 4) % 8, 0);
    ck_assert_uint_eq(get64(b, v + 4), UINT64_MAX);
    a = element(b, n, N_ATTRS, 5);
    ck_assert(!has_field(b, a, 5));
    v = deref(b, field(b, a, 6));
    ck_assert_uint_eq(get32(b, v), 1);
    ck_assert_uint_eq((v + 4) % 8, 0);
    ck_assert_uint_eq(get64(b, v + 4), 1);               /* 5e-324 */
    /* And it all reads back. */
    back = decode_ok(b, len);
    assert_ir_equal(ir, back);
    smlp__graph_ir_free(back);
    smlp__graph_ir_free(ir);
    free(b);
}
END_TEST

/* A string of n copies of c (malloc'ed). */
static char *
long_string(size_t n, char c)
{
    char *s = malloc(n + 1);

    ck_assert_ptr_nonnull(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/*
 * The writer's limits are the reader's (graph_ir.h): a string of
 * SMLP__MAX_STRING bytes, SMLP__MAX_NODE_IO inputs and outputs,
 * SMLP__MAX_ATTRS attributes and SMLP__MAX_PLUGINS plugins are written
 * and read back; one more is refused, before anything else is looked at
 * (the extra entries here are zeroed, which would fail on their own).
 */
START_TEST(test_fbgraph_encode_limits)
{
    struct smlp__graph_ir *ir = decode_ok(full, full_len);
    struct smlp__node_ir *n = &ir->nodes[1];
    struct smlp__attr_ir *attrs = n->attrs;
    char **plugins = ir->plugins, *name = ir->name;
    char key[16];
    int32_t i, *io;

    /* The graph's name at the limit, and a node's op. */
    ir->name = long_string(SMLP__MAX_STRING, 'g');
    free(n->op);
    n->op = long_string(SMLP__MAX_STRING, 'o');
    io = calloc(SMLP__MAX_NODE_IO + 1, sizeof(int32_t));
    for (i = 0; i <= SMLP__MAX_NODE_IO; i++)
        io[i] = i % 2 ? -1 : i % 7;
    free(n->inputs);
    n->inputs = io;
    n->n_inputs = SMLP__MAX_NODE_IO;
    n->attrs = calloc(SMLP__MAX_ATTRS + 1, sizeof(*n->attrs));
    n->n_attrs = SMLP__MAX_ATTRS;
    for (i = 0; i < SMLP__MAX_ATTRS; i++) {
        snprintf(key, sizeof(key), "a%d", (int)i);
        n->attrs[i].name = strdup(key);
        n->attrs[i].i = i;
    }
    ir->plugins = calloc(SMLP__MAX_PLUGINS + 1, sizeof(char *));
    ir->n_plugins = SMLP__MAX_PLUGINS;
    for (i = 0; i < SMLP__MAX_PLUGINS; i++) {
        snprintf(key, sizeof(key), "p%d", (int)i);
        ir->plugins[i] = strdup(key);
    }
    assert_encode_roundtrip(ir);

    free(ir->name);
    ir->name = long_string(SMLP__MAX_STRING + 1, 'g');
    expect_einval(ir, "the graph's name is longer than 65536 bytes");
    ir->name[SMLP__MAX_STRING] = '\0';
    free(n->op);
    n->op = long_string(SMLP__MAX_STRING + 1, 'o');
    expect_einval(ir, "node 1 'out': op is longer than 65536 bytes");
    n->op[SMLP__MAX_STRING] = '\0';
    n->n_inputs = SMLP__MAX_NODE_IO + 1;
    expect_einval(ir, "node 1 'out': 65 inputs, out of range [0, 64]");
    n->n_inputs = SMLP__MAX_NODE_IO;
    n->n_attrs = SMLP__MAX_ATTRS + 1;
    expect_einval(ir, "257 attrs, out of range [0, 256]");
    n->n_attrs = SMLP__MAX_ATTRS;
    ir->n_plugins = SMLP__MAX_PLUGINS + 1;
    expect_einval(ir, "257 plugins, out of range [0, 256]");
    ir->n_plugins = SMLP__MAX_PLUGINS;
    assert_encode_roundtrip(ir);

    /* Metadata: at most SMLP__MAX_META entries (zeroed: the count is
     * refused before the NULL keys). */
    free(ir->meta[0].key);
    free(ir->meta[0].value);
    free(ir->meta[1].key);
    free(ir->meta);
    ir->meta = calloc(SMLP__MAX_META + 1, sizeof(*ir->meta));
    ir->n_meta = SMLP__MAX_META + 1;
    expect_einval(ir, "65537 metadata entries, out of range [0, 65536]");
    ir->n_meta = 0;

    for (i = 0; i < SMLP__MAX_PLUGINS; i++)
        free(ir->plugins[i]);
    free(ir->plugins);
    ir->plugins = plugins;
    ir->n_plugins = 2;
    for (i = 0; i < SMLP__MAX_ATTRS; i++)
        free(n->attrs[i].name);
    free(n->attrs);
    n->attrs = attrs;
    n->n_attrs = 0;
    free(ir->name);
    ir->name = name;
    smlp__graph_ir_free(ir);
}
END_TEST

/* More IRs that the reader would refuse (or that would not read back the
 * same), each refused by the writer with a message naming the fault; the
 * IR is put back after each case. */
START_TEST(test_fbgraph_encode_invalid_more)
{
    struct smlp__graph_ir *ir = decode_ok(full, full_len);
    struct smlp__tensor_ir *t = &ir->tensors[1];
    struct smlp__node_ir *n = &ir->nodes[0];
    struct smlp__attr_ir *a = n->attrs;
    char *save, *longer = long_string(SMLP__MAX_STRING + 1, 's');
    void *p;
    uint8_t *buf = (uint8_t *)&buf;
    size_t len = 1;

    /* Counts with no array behind them. */
    p = ir->plugins;
    ir->plugins = NULL;
    expect_einval(ir, "2 plugins but the array is NULL");
    ir->plugins = p;
    p = n->outputs;
    n->outputs = NULL;
    expect_einval(ir, "node 0 'fc': 1 outputs but the array is NULL");
    n->outputs = p;
    p = a[3].ints;
    a[3].ints = NULL;
    expect_einval(ir, "3 values but the array is NULL");
    a[3].ints = p;
    /* Enums past their last value, and below 0. */
    t->kind = SMLP__TENSOR_KIND_COUNT;
    expect_einval(ir, "tensor 1 'w': kind 5 is out of range");
    t->kind = -1;
    expect_einval(ir, "tensor 1 'w': kind -1 is out of range");
    t->kind = SMLP__TENSOR_PARAMETER;
    t->dtype = -1;
    expect_einval(ir, "tensor 1 'w': dtype -1 is out of range");
    t->dtype = SMLP_DTYPE_F32;
    t->init.kind = SMLP__INIT_KIND_COUNT;
    expect_einval(ir, "tensor 1 'w': init kind 5 is out of range");
    t->init.kind = SMLP__INIT_NORMAL;
    a[0].type = SMLP_ATTR_TYPE_COUNT;
    expect_einval(ir, "node 0 'fc': attr 0 '");
    expect_einval(ir, "': type 5 is out of range");
    a[0].type = SMLP_ATTR_INT;
    /* Flags that are not 0 or 1, a rank without a shape. */
    t->has_shape = 2;
    expect_einval(ir, "has_shape is 2, not 0 or 1");
    t->has_shape = 1;
    t->init.present = 2;
    expect_einval(ir, "init.present is 2, not 0 or 1");
    t->init.present = 1;
    ir->tensors[5].rank = 1;      /* y has no shape */
    expect_einval(ir, "tensor 5 'y': rank 1 is out of range (has_shape 0)");
    ir->tensors[5].rank = 0;
    t->rank = -1;
    expect_einval(ir, "tensor 1 'w': rank -1 is out of range");
    t->rank = 2;
    /* Tensor indices: -1 is an absent input, never an output. */
    n->inputs[0] = -2;
    expect_einval(ir, "node 0 'fc': input 0 is tensor -2, out of range");
    n->inputs[0] = 0;
    n->outputs[0] = -1;
    expect_einval(ir, "node 0 'fc': output 0 is tensor -1, out of range");
    n->outputs[0] = ir->n_tensors;
    expect_einval(ir, "node 0 'fc': output 0 is tensor 7, out of range");
    n->outputs[0] = 6;
    /* Each attribute holds only the value of its type ("n" is an Int,
     * "eps" a Float, "axes" Ints, "scales" Floats). */
    a[1].i = 1;
    expect_einval(ir, "node 0 'fc': attr 1 'eps': holds a value that is not "
                      "of its type 1");
    a[1].i = 0;
    a[0].s = a[2].s;
    expect_einval(ir, "holds a value that is not of its type 0");
    a[0].s = NULL;
    a[0].n_values = 1;
    expect_einval(ir, "holds a value that is not of its type 0");
    a[0].n_values = 0;
    a[3].floats = a[4].floats;
    expect_einval(ir, "holds a value that is not of its type 3");
    a[3].floats = NULL;
    a[4].ints = a[3].ints;
    expect_einval(ir, "holds a value that is not of its type 4");
    a[4].ints = NULL;
    /* Two attributes of one name. */
    save = a[5].name;
    a[5].name = a[1].name;
    expect_einval(ir, "node 0 'fc': attrs 1 and 5 have the same name");
    a[5].name = save;
    /* Strings: required ones present, optional ones within the limit. */
    save = a[2].s;
    a[2].s = longer;
    expect_einval(ir, "s is longer than 65536 bytes");
    a[2].s = save;
    save = ir->plugins[1];
    ir->plugins[1] = NULL;
    expect_einval(ir, "plugin 1: name is NULL");
    ir->plugins[1] = save;
    save = n->op;
    n->op = NULL;
    expect_einval(ir, "node 0 'fc': op is NULL");
    n->op = save;
    save = ir->meta[1].key;
    ir->meta[1].key = NULL;
    expect_einval(ir, "metadata 1: key is NULL");
    ir->meta[1].key = save;
    ir->meta[1].value = longer;
    expect_einval(ir, "metadata 1: value is longer than 65536 bytes");
    ir->meta[1].value = NULL;
    /* Everything put back, the IR encodes again. */
    assert_encode_roundtrip(ir);
    /* No place for the result; on failure *out is NULL. */
    ck_assert_int_eq(smlp__graph_ir_encode(ir, NULL, &len, errbuf,
                                           sizeof(errbuf)), SMLP_EINVAL);
    ck_assert_str_eq(errbuf, "cannot encode graph '?': no graph or no place "
                             "for the result");
    ck_assert_int_eq(smlp__graph_ir_encode(ir, &buf, NULL, errbuf,
                                           sizeof(errbuf)), SMLP_EINVAL);
    free(longer);
    smlp__graph_ir_free(ir);
}
END_TEST

/* ---- Copying and freeing ---- */

START_TEST(test_fbgraph_clone_equal)
{
    struct smlp__graph_ir *ir = decode_ok(full, full_len), *c;

    c = smlp__graph_ir_clone(ir);
    ck_assert_ptr_nonnull(c);
    assert_ir_equal(ir, c);
    ck_assert_ptr_ne(ir->name, c->name);
    ck_assert_ptr_ne(ir->nodes[0].attrs[3].ints, c->nodes[0].attrs[3].ints);
    smlp__graph_ir_free(ir);
    /* The copy owns everything it points to (ASan checks). */
    assert_encode_roundtrip(c);
    smlp__graph_ir_free(c);
    ir = make_ir(1);
    c = smlp__graph_ir_clone(ir);
    assert_ir_equal(ir, c);
    smlp__graph_ir_free(ir);
    smlp__graph_ir_free(c);
}
END_TEST

START_TEST(test_fbgraph_clone_null)
{
    ck_assert_ptr_null(smlp__graph_ir_clone(NULL));
    smlp__graph_ir_free(NULL);
}
END_TEST

/* An IR being edited may have counts with no arrays behind them: the copy
 * keeps the NULLs, with counts of 0 (so that it frees cleanly and never
 * claims entries it does not have).  A node with a single attribute is
 * copied whole. */
START_TEST(test_fbgraph_clone_null_arrays)
{
    struct smlp__graph_ir *ir = decode_ok(full, full_len), *c;
    struct smlp__node_ir *n = &ir->nodes[0];
    int32_t *inputs = n->inputs, *outputs = n->outputs;
    struct smlp__attr_ir *attrs = n->attrs, *a;
    struct smlp__meta_ir *meta = ir->meta;

    a = smlp__graph_ir_node_attr(&ir->nodes[1], "k");
    ck_assert_ptr_nonnull(a);
    a->i = 3;
    c = smlp__graph_ir_clone(ir);
    ck_assert_ptr_nonnull(c);
    assert_ir_equal(ir, c);
    ck_assert_int_eq(c->nodes[1].n_attrs, 1);
    ck_assert_str_eq(c->nodes[1].attrs[0].name, "k");
    ck_assert_int_eq(c->nodes[1].attrs[0].i, 3);
    smlp__graph_ir_free(c);

    n->inputs = NULL;
    n->outputs = NULL;
    n->attrs = NULL;
    ir->meta = NULL;
    c = smlp__graph_ir_clone(ir);
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_null(c->nodes[0].inputs);
    ck_assert_int_eq(c->nodes[0].n_inputs, 0);
    ck_assert_ptr_null(c->nodes[0].outputs);
    ck_assert_int_eq(c->nodes[0].n_outputs, 0);
    ck_assert_ptr_null(c->nodes[0].attrs);
    ck_assert_int_eq(c->nodes[0].n_attrs, 0);
    ck_assert_ptr_null(c->meta);
    ck_assert_int_eq(c->n_meta, 0);
    /* The rest is copied as it is. */
    ck_assert_str_eq(c->nodes[0].op, "core.linear");
    ck_assert_int_eq(c->nodes[1].n_inputs, 3);
    ck_assert_int_eq(c->nodes[1].inputs[2], 2);
    ck_assert_int_eq(c->nodes[1].n_attrs, 1);
    smlp__graph_ir_free(c);
    n->inputs = inputs;
    n->outputs = outputs;
    n->attrs = attrs;
    ir->meta = meta;
    smlp__graph_ir_free(ir);
}
END_TEST

/* The names of node n's attributes, joined by ','. */
static const char *
attr_names(const struct smlp__node_ir *n)
{
    static char buf[256];
    size_t at = 0;
    int32_t i;

    buf[0] = '\0';
    for (i = 0; i < n->n_attrs; i++)
        at += (size_t)snprintf(buf + at, sizeof(buf) - at, "%s%s",
                               i > 0 ? "," : "", n->attrs[i].name);
    return buf;
}

/*
 * smlp__graph_ir_node_attr: an attribute that exists is returned as it
 * is; a new one is zeroed (type Int, no value), named, and placed in name
 * order when the attributes are sorted, else last; SMLP__MAX_ATTRS is the
 * most a node gets.
 */
START_TEST(test_fbgraph_node_attr)
{
    struct smlp__graph_ir *ir = decode_ok(full, full_len);
    struct smlp__node_ir *n = &ir->nodes[1];   /* "out": no attributes */
    struct smlp__attr_ir *a;
    char name[16];
    int32_t i;

    a = smlp__graph_ir_node_attr(n, "m");
    ck_assert_ptr_nonnull(a);
    a->type = SMLP_ATTR_FLOAT;
    a->f = 0.5;
    /* Sorted: before the first, after the last, in between. */
    smlp__graph_ir_node_attr(n, "c");
    smlp__graph_ir_node_attr(n, "x");
    a = smlp__graph_ir_node_attr(n, "e");
    ck_assert_str_eq(attr_names(n), "c,e,m,x");
    /* Each new one is zeroed: no value, no list, whatever the heap held
     * (the array grew by realloc). */
    ck_assert_ptr_eq(a, &n->attrs[1]);
    ck_assert_int_eq(a->type, SMLP_ATTR_INT);
    ck_assert(a->i == 0 && a->f == 0.0 && a->s == NULL &&
              a->ints == NULL && a->floats == NULL && a->n_values == 0);
    /* An existing one comes back with its value, nothing added. */
    a = smlp__graph_ir_node_attr(n, "m");
    ck_assert_ptr_eq(a, &n->attrs[2]);
    ck_assert(a->type == SMLP_ATTR_FLOAT && a->f == 0.5);
    ck_assert_int_eq(n->n_attrs, 4);
    assert_encode_roundtrip(ir);

    /* Node "fc" is not sorted ("n" before "eps"): a new one goes last,
     * even when only its first two are out of order. */
    n = &ir->nodes[0];
    ck_assert_str_eq(attr_names(n), "n,eps,mode,axes,scales,empty,blank");
    smlp__graph_ir_node_attr(n, "a");
    ck_assert_str_eq(attr_names(n),
                     "n,eps,mode,axes,scales,empty,blank,a");
    n = &ir->nodes[1];
    free(n->attrs[0].name);
    n->attrs[0].name = strdup("d");          /* d,e,m,x: sorted again */
    smlp__graph_ir_node_attr(n, "f");
    ck_assert_str_eq(attr_names(n), "d,e,f,m,x");
    free(n->attrs[0].name);
    n->attrs[0].name = strdup("z");          /* z,e,f,m,x */
    smlp__graph_ir_node_attr(n, "g");
    ck_assert_str_eq(attr_names(n), "z,e,f,m,x,g");

    /* Up to SMLP__MAX_ATTRS, and no further. */
    for (i = n->n_attrs; i < SMLP__MAX_ATTRS; i++) {
        snprintf(name, sizeof(name), "k%d", (int)i);
        ck_assert_ptr_nonnull(smlp__graph_ir_node_attr(n, name));
    }
    ck_assert_int_eq(n->n_attrs, SMLP__MAX_ATTRS);
    ck_assert_ptr_null(smlp__graph_ir_node_attr(n, "one_more"));
    ck_assert_int_eq(n->n_attrs, SMLP__MAX_ATTRS);
    ck_assert_ptr_nonnull(smlp__graph_ir_node_attr(n, "z"));
    assert_encode_roundtrip(ir);
    smlp__graph_ir_free(ir);
}
END_TEST

static Suite *
fbgraph_suite(void)
{
    Suite *s = suite_create("fbgraph");
    TCase *tc;

    tc = tcase_create("decode");
    tcase_add_test(tc, test_fbgraph_decode_full);
    tcase_add_test(tc, test_fbgraph_decode_minimal);
    tcase_add_test(tc, test_fbgraph_decode_forced_defaults);
    tcase_add_test(tc, test_fbgraph_decode_no_errbuf);
    suite_add_tcase(s, tc);

    tc = tcase_create("corrupt");
    tcase_add_checked_fixture(tc, setup_full, teardown_full);
    tcase_add_test(tc, test_fbgraph_decode_bad_identifier);
    tcase_add_test(tc, test_fbgraph_decode_truncated_header);
    tcase_add_test(tc, test_fbgraph_decode_root_out_of_range);
    tcase_add_test(tc, test_fbgraph_decode_vtable_out_of_range);
    tcase_add_test(tc, test_fbgraph_decode_vtable_size_odd);
    tcase_add_test(tc, test_fbgraph_decode_vtable_size_small);
    tcase_add_test(tc, test_fbgraph_decode_vtable_past_end);
    tcase_add_test(tc, test_fbgraph_decode_object_size_bad);
    tcase_add_test(tc, test_fbgraph_decode_field_outside_object);
    tcase_add_test(tc, test_fbgraph_decode_field_misaligned);
    tcase_add_test(tc, test_fbgraph_decode_string_unterminated);
    tcase_add_test(tc, test_fbgraph_decode_string_past_end);
    tcase_add_test(tc, test_fbgraph_decode_string_inner_nul);
    tcase_add_test(tc, test_fbgraph_decode_offset_over_int32);
    tcase_add_test(tc, test_fbgraph_decode_string_not_utf8);
    tcase_add_test(tc, test_fbgraph_decode_vector_overflow);
    tcase_add_test(tc, test_fbgraph_decode_vector_at_end);
    tcase_add_test(tc, test_fbgraph_decode_misaligned_offset);
    tcase_add_test(tc, test_fbgraph_decode_enum_out_of_range);
    tcase_add_test(tc, test_fbgraph_decode_missing_name);
    tcase_add_test(tc, test_fbgraph_decode_index_out_of_range);
    tcase_add_test(tc, test_fbgraph_decode_rank_too_big);
    tcase_add_test(tc, test_fbgraph_decode_over_limits);
    tcase_add_test(tc, test_fbgraph_decode_shared_objects);
    tcase_add_test(tc, test_fbgraph_decode_attr_mismatch);
    suite_add_tcase(s, tc);

    tc = tcase_create("fuzz");
    tcase_add_checked_fixture(tc, setup_full, teardown_full);
    tcase_add_test(tc, test_fbgraph_decode_truncated_every_length);
    tcase_add_test(tc, test_fbgraph_decode_flipped_bytes);
    suite_add_tcase(s, tc);

    tc = tcase_create("encode");
    tcase_add_checked_fixture(tc, setup_full, teardown_full);
    tcase_add_test(tc, test_fbgraph_encode_roundtrip);
    tcase_add_test(tc, test_fbgraph_encode_stable_aligned);
    tcase_add_test(tc, test_fbgraph_encode_flatc_json);
    tcase_add_test(tc, test_fbgraph_encode_invalid);
    tcase_add_test(tc, test_fbgraph_encode_bytes_by_hand);
    tcase_add_test(tc, test_fbgraph_encode_layout);
    tcase_add_test(tc, test_fbgraph_encode_limits);
    tcase_add_test(tc, test_fbgraph_encode_invalid_more);
    suite_add_tcase(s, tc);

    tc = tcase_create("clone");
    tcase_add_checked_fixture(tc, setup_full, teardown_full);
    tcase_add_test(tc, test_fbgraph_clone_equal);
    tcase_add_test(tc, test_fbgraph_clone_null);
    tcase_add_test(tc, test_fbgraph_clone_null_arrays);
    tcase_add_test(tc, test_fbgraph_node_attr);
    suite_add_tcase(s, tc);
    return s;
}

/* Removes the scratch directory with its files and subdirectories. */
static void
remove_tree(const char *dir)
{
    char p[512];
    struct dirent *d;
    struct stat st;
    DIR *dp = opendir(dir);

    if (dp == NULL)
        return;
    while ((d = readdir(dp)) != NULL) {
        if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, d->d_name);
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            remove_tree(p);
        else
            unlink(p);
    }
    closedir(dp);
    rmdir(dir);
}

int
main(void)
{
    SRunner *sr;
    int failed;

    snprintf(tmpdir, sizeof(tmpdir), "/tmp/check_fbgraph.XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    sr = srunner_create(fbgraph_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    remove_tree(tmpdir);
    return failed == 0 ? 0 : 1;
}
