/*
 * check_fbgraph_decode.c - the graph FlatBuffer reader
 * (runtime/fbgraph.c) on valid graphs, and the IR's copy, free and
 * attribute lookup.
 *
 * Graph binaries are made at test time by flatc from JSON (the fixtures
 * in tests/data/fbgraph/ and JSON written here), so the reader is checked
 * against an independent writer.
 */
#include "fbgraphfx.h"

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
fbgraph_decode_suite(void)
{
    Suite *s = suite_create("fbgraph_decode");
    TCase *tc;

    tc = tcase_create("decode");
    tcase_add_test(tc, test_fbgraph_decode_full);
    tcase_add_test(tc, test_fbgraph_decode_minimal);
    tcase_add_test(tc, test_fbgraph_decode_forced_defaults);
    tcase_add_test(tc, test_fbgraph_decode_no_errbuf);
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

int
main(void)
{
    return fbgraph_run(fbgraph_decode_suite());
}
