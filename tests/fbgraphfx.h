/*
 * fbgraphfx.h - the fixtures of the graph FlatBuffer suites
 * (check_fbgraph_decode.c, check_fbgraph_corrupt.c,
 * check_fbgraph_encode.c): graph binaries made by flatc from JSON, the
 * small navigation helpers that read them (which trust the file: they
 * only ever see flatc's output), decoding and comparing IRs, an IR made
 * here, and the scratch directory of the run.  SMLP_TEST_SRCDIR and
 * FLATC come from the environment, or else from the build
 * (FBGRAPH_TEST_SRCDIR, FBGRAPH_TEST_FLATC).
 */
#ifndef SMLP_FBGRAPHFX_H
#define SMLP_FBGRAPHFX_H

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

/* The scratch directory of the run, made by fbgraph_run(). */
static char tmpdir[64];
/* The error text of the last call. */
static char errbuf[512];

/* ---- Files and flatc ---- */

static inline const char *
env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);

    return v != NULL && v[0] != '\0' ? v : fallback;
}

static inline const char *
srcdir(void)
{
    return env_or("SMLP_TEST_SRCDIR", FBGRAPH_TEST_SRCDIR);
}

static inline void
write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");

    ck_assert_msg(f != NULL, "cannot create %s", path);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

/* Runs flatc with `args` (options first, as flatc wants them). */
static inline void
flatc(const char *args)
{
    char cmd[2048];

    snprintf(cmd, sizeof(cmd), "'%s' %s",
             env_or("FLATC", FBGRAPH_TEST_FLATC), args);
    ck_assert_msg(system(cmd) == 0, "failed: %s", cmd);
}

/* Compiles JSON file `json` (named NAME.json) with `opts`; returns the
 * bytes of OUTDIR/NAME.fbs. */
static inline uint8_t *
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
static inline uint8_t *
build_fixture(const char *name, size_t *len)
{
    char json[512];

    snprintf(json, sizeof(json), "%s/tests/data/fbgraph/%s.json",
             srcdir(), name);
    return build_file(json, "", len);
}

/* Builds JSON text given here, as TMPDIR/NAME.json. */
static inline uint8_t *
build_json(const char *name, const char *text, size_t *len)
{
    char json[512];

    snprintf(json, sizeof(json), "%s/%s.json", tmpdir, name);
    write_file(json, text, strlen(text));
    return build_file(json, "", len);
}

/* ---- Navigating flatc's output (trusted) to corrupt it ---- */

static inline uint32_t
get32(const uint8_t *b, size_t at)
{
    uint32_t v;

    memcpy(&v, b + at, 4);
    return v;
}

static inline uint16_t
get16(const uint8_t *b, size_t at)
{
    uint16_t v;

    memcpy(&v, b + at, 2);
    return v;
}

static inline size_t
vtable_of(const uint8_t *b, size_t table)
{
    return table - (size_t)(int32_t)get32(b, table);
}

/* Position of field `id` of the table, which must be present. */
static inline size_t
field(const uint8_t *b, size_t table, int id)
{
    size_t vt = vtable_of(b, table);

    ck_assert_uint_lt(4 + 2 * (size_t)id, get16(b, vt));
    ck_assert_uint_ne(get16(b, vt + 4 + 2 * (size_t)id), 0);
    return table + get16(b, vt + 4 + 2 * (size_t)id);
}

/* Where the uoffset at `at` points. */
static inline size_t
deref(const uint8_t *b, size_t at)
{
    return at + get32(b, at);
}

/* The table of element i of the vector field `id` of `table`. */
static inline size_t
element(const uint8_t *b, size_t table, int id, size_t i)
{
    size_t v = deref(b, field(b, table, id));

    return deref(b, v + 4 + 4 * i);
}

static inline size_t
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

static inline int
decode(const uint8_t *buf, size_t len, struct smlp__graph_ir **ir)
{
    return smlp__graph_ir_decode(buf, len, "test.fbs", ir, errbuf,
                                 sizeof(errbuf));
}

static inline struct smlp__graph_ir *
decode_ok(const uint8_t *buf, size_t len)
{
    struct smlp__graph_ir *ir = NULL;
    int rc = decode(buf, len, &ir);

    ck_assert_msg(rc == SMLP_OK, "decode failed (%d): %s", rc, errbuf);
    ck_assert_ptr_nonnull(ir);
    return ir;
}

static inline int
same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) ||
           (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* What the last comparison found different. */
static char why[256];

/* Records in why[] what differs when cond holds; returns cond. */
static inline int __attribute__((format(printf, 2, 3)))
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

static inline int
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

static inline int
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

static inline int
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
static inline int
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

static inline void
assert_ir_equal(const struct smlp__graph_ir *a,
                const struct smlp__graph_ir *b)
{
    ck_assert_msg(ir_equal(a, b), "IRs differ: %s", why);
}

/* Encodes ir, decodes the result and checks that it is equal. */
static inline void
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
/* ---- The full fixture, which most cases edit or compare with ---- */

/* Most cases start from the full fixture. */
static uint8_t *full;
static size_t full_len;

static inline void
setup_full(void)
{
    full = build_fixture("full", &full_len);
}

static inline void
teardown_full(void)
{
    free(full);
    full = NULL;
}
/* ---- An IR made here ---- */

/* A graph made here, with many tensors (shared vtables) and edge values;
 * `exotic` adds values that flatc's JSON cannot carry exactly. */
static inline struct smlp__graph_ir *
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

/* Removes the scratch directory with its files and subdirectories. */
static void __attribute__((unused))
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

/* Runs suite s in a fresh scratch directory; the exit status of main(). */
static inline int
fbgraph_run(Suite *s)
{
    SRunner *sr;
    int failed;

    snprintf(tmpdir, sizeof(tmpdir), "/tmp/check_fbgraph.XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    remove_tree(tmpdir);
    return failed == 0 ? 0 : 1;
}

#endif
