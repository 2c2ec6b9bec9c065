/*
 * check_fbgraph_encode.c - the graph FlatBuffer writer
 * (runtime/fbgraph_write.c).
 *
 * Encoded graphs go through `flatc --json` and `flatc -b` and must come
 * back equal; the bytes are also read back by hand, and invalid IRs
 * must be refused.
 */
#include "fbgraphfx.h"

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

static Suite *
fbgraph_encode_suite(void)
{
    Suite *s = suite_create("fbgraph_encode");
    TCase *tc;

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
    return s;
}

int
main(void)
{
    return fbgraph_run(fbgraph_encode_suite());
}
