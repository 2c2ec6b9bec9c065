/*
 * check_fbgraph_corrupt.c - the graph FlatBuffer reader
 * (runtime/fbgraph.c) on corrupted and invalid files.
 *
 * Corruptions are made by editing a binary that flatc wrote with the
 * small navigation helpers of fbgraphfx.h (which trust the file: they
 * only ever see flatc's output) and must be refused with SMLP_EBADFILE
 * and a message naming the fault.  Every truncation and many byte flips
 * of a real file must fail cleanly or decode.
 */
#include "fbgraphfx.h"

/* ---- Editing flatc's output ---- */

static void
put32(uint8_t *b, size_t at, uint32_t v)
{
    memcpy(b + at, &v, 4);
}

static void
put16(uint8_t *b, size_t at, uint16_t v)
{
    memcpy(b + at, &v, 2);
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

/* ---- Corrupted and invalid files ---- */

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

static Suite *
fbgraph_corrupt_suite(void)
{
    Suite *s = suite_create("fbgraph_corrupt");
    TCase *tc;

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
    return s;
}

int
main(void)
{
    return fbgraph_run(fbgraph_corrupt_suite());
}
