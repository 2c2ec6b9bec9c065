/*
 * graph_json.c - `smlp-graph dump`: a graph IR as flatc JSON.
 *
 * The output is what `flatc -b schemas/graph.fbs FILE.json` reads back
 * into the same graph, bit for bit: enums by name, 64-bit integers in
 * full (seeds >= 2^63 included, which flatc 2.0.8 keeps), doubles as the
 * shortest decimal that reads back to the same double.  The layout is
 * that of tools/gen_graphs.py (fields in schema order, one tensor, node or
 * metadata entry a line, defaults left out where the generator leaves
 * them out), so dumping a shipped graphs/NAME.fbs gives graphs/NAME.json
 * and `diff` on two dumps shows what an edit changed.
 *
 * What a binary cannot tell is written one fixed way: an Init's `a` and
 * `b` are written for the kinds that use them (Constant, Uniform, Normal)
 * and otherwise only when nonzero; its `seed` always; an attribute's value
 * field always, for its type.  -0.0 is written as -0.0, which flatc
 * stores as the default 0.0 (flatc compares with ==); nothing in our
 * graphs is -0.0.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph_tool.h"

/*
 * Writes into e[0..n) the shortest "[-]d[.ddd]e[+-]XX" that strtod reads
 * back as v (finite, nonzero).  For each number of digits the correctly
 * rounded decimal is tried, and when it misses, its neighbour on the far
 * side of v: at a power of two the doubles below v lie closer than those
 * above, so the nearest p-digit decimal can miss v while the next one up
 * reads back as v (2^-24 is 5.960464477539063e-08 as Python writes it,
 * where %.15e gives 5.960464477539062e-08, which reads back as the
 * double below).
 */
static void
shortest_e(double v, char *e, size_t n)
{
    char alt[48], d[24];
    unsigned long long m;
    const char *s;
    int p, x;
    double r;

    for (p = 1; p < 17; p++) {
        snprintf(e, n, "%.*e", p - 1, v);
        r = strtod(e, NULL);
        if (r == v)
            return;
        m = 0;
        for (s = e; *s != 'e'; s++)
            if (*s >= '0' && *s <= '9')
                m = m * 10 + (unsigned long long)(*s - '0');
        x = atoi(s + 1) - (p - 1); /* e is m x 10^x */
        m = fabs(r) < fabs(v) ? m + 1 : m - 1;
        if (m == 0)
            continue;
        snprintf(d, sizeof(d), "%llu", m);
        x += (int)strlen(d) - 1;
        snprintf(alt, sizeof(alt), "%s%c%s%se%+03d", v < 0 ? "-" : "", d[0],
                 d[1] != '\0' ? "." : "", d + 1, x);
        if (strtod(alt, NULL) == v) {
            snprintf(e, n, "%s", alt);
            return;
        }
    }
    snprintf(e, n, "%.16e", v);
}

const char *
sg_double_str(double v, char *buf, size_t len)
{
    char e[48], digits[24];
    int nd = 0, exp10, decpt, i, neg;
    char *s;
    size_t used = 0;

    if (isnan(v)) {
        snprintf(buf, len, "nan");
        return buf;
    }
    if (isinf(v)) {
        snprintf(buf, len, v < 0 ? "-inf" : "inf");
        return buf;
    }
    if (v == 0.0) {
        snprintf(buf, len, signbit(v) ? "-0.0" : "0.0");
        return buf;
    }
    shortest_e(v, e, sizeof(e));
    /* e is "[-]d[.ddd]e[+-]XX": take its digits and exponent apart. */
    s = e;
    neg = *s == '-';
    if (neg)
        s++;
    for (; *s != 'e' && *s != '\0'; s++)
        if (*s >= '0' && *s <= '9' && nd < (int)sizeof(digits) - 1)
            digits[nd++] = *s;
    exp10 = *s == 'e' ? atoi(s + 1) : 0;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = '\0';
    decpt = exp10 + 1; /* value = 0.DIGITS x 10^decpt */

#define PUT(...)                                                             \
    do {                                                                     \
        if (used < len)                                                      \
            used += (size_t)snprintf(buf + used, len - used, __VA_ARGS__);   \
    } while (0)
    if (neg)
        PUT("-");
    if (decpt <= -4 || decpt > 16) {
        /* Python's repr switches to exponent form here: "1e-06". */
        PUT("%c", digits[0]);
        if (nd > 1)
            PUT(".%s", digits + 1);
        PUT("e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    } else if (decpt <= 0) {
        PUT("0.");
        for (i = 0; i < -decpt; i++)
            PUT("0");
        PUT("%s", digits);
    } else if (decpt >= nd) {
        PUT("%s", digits);
        for (i = nd; i < decpt; i++)
            PUT("0");
        PUT(".0");
    } else {
        PUT("%.*s.%s", decpt, digits, digits + decpt);
    }
#undef PUT
    return buf;
}

/* A JSON string as Python's json.dumps(ensure_ascii=False) writes it. */
static void
put_string(FILE *f, const char *s)
{
    const unsigned char *p;

    fputc('"', f);
    for (p = (const unsigned char *)s; *p != '\0'; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\b': fputs("\\b", f); break;
        case '\f': fputs("\\f", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

static void
put_double(FILE *f, double v)
{
    char buf[48];

    fputs(sg_double_str(v, buf, sizeof(buf)), f);
}

static void
put_i64s(FILE *f, const int64_t *v, size_t n)
{
    size_t i;

    fputc('[', f);
    for (i = 0; i < n; i++)
        fprintf(f, "%s%" PRId64, i ? ", " : "", v[i]);
    fputc(']', f);
}

static void
put_i32s(FILE *f, const int32_t *v, int32_t n)
{
    int32_t i;

    fputc('[', f);
    for (i = 0; i < n; i++)
        fprintf(f, "%s%" PRId32, i ? ", " : "", v[i]);
    fputc(']', f);
}

static void
put_init(FILE *f, const struct smlp__init_ir *init)
{
    int uses_ab = init->kind == SMLP__INIT_CONSTANT ||
                  init->kind == SMLP__INIT_UNIFORM ||
                  init->kind == SMLP__INIT_NORMAL;
    uint64_t abits, bbits;

    memcpy(&abits, &init->a, sizeof(abits));
    memcpy(&bbits, &init->b, sizeof(bbits));
    fprintf(f, "{\"kind\": \"%s\"", sg_init_enum(init->kind));
    if (uses_ab || abits != 0) {
        fputs(", \"a\": ", f);
        put_double(f, init->a);
    }
    if (uses_ab || bbits != 0) {
        fputs(", \"b\": ", f);
        put_double(f, init->b);
    }
    fprintf(f, ", \"seed\": %" PRIu64 "}", init->seed);
}

static void
put_tensor(FILE *f, const struct smlp__tensor_ir *t)
{
    fputs("{\"name\": ", f);
    put_string(f, t->name);
    if (t->dtype != SMLP_DTYPE_F32)
        fprintf(f, ", \"dtype\": \"%s\"", sg_dtype_enum(t->dtype));
    if (t->kind != SMLP__TENSOR_ACTIVATION)
        fprintf(f, ", \"kind\": \"%s\"", sg_kind_enum(t->kind));
    if (t->has_shape) {
        fputs(", \"shape\": ", f);
        put_i64s(f, t->shape, (size_t)t->rank);
    }
    if (t->init.present) {
        fputs(", \"init\": ", f);
        put_init(f, &t->init);
    }
    fputc('}', f);
}

static void
put_attr(FILE *f, const struct smlp__attr_ir *a)
{
    size_t i;

    fputs("{\"name\": ", f);
    put_string(f, a->name);
    fprintf(f, ", \"type\": \"%s\"", sg_attr_enum(a->type));
    switch (a->type) {
    case SMLP_ATTR_INT:
        fprintf(f, ", \"i\": %" PRId64, a->i);
        break;
    case SMLP_ATTR_FLOAT:
        fputs(", \"f\": ", f);
        put_double(f, a->f);
        break;
    case SMLP_ATTR_STRING:
        fputs(", \"s\": ", f);
        put_string(f, a->s != NULL ? a->s : "");
        break;
    case SMLP_ATTR_INTS:
        fputs(", \"ints\": ", f);
        put_i64s(f, a->ints, a->n_values);
        break;
    case SMLP_ATTR_FLOATS:
        fputs(", \"floats\": [", f);
        for (i = 0; i < a->n_values; i++) {
            if (i > 0)
                fputs(", ", f);
            put_double(f, a->floats[i]);
        }
        fputc(']', f);
        break;
    }
    fputc('}', f);
}

static void
put_node(FILE *f, const struct smlp__node_ir *n)
{
    int32_t i;

    fputs("{\"name\": ", f);
    put_string(f, n->name);
    fputs(", \"op\": ", f);
    put_string(f, n->op);
    fputs(", \"inputs\": ", f);
    put_i32s(f, n->inputs, n->n_inputs);
    fputs(", \"outputs\": ", f);
    put_i32s(f, n->outputs, n->n_outputs);
    if (n->n_attrs > 0) {
        fputs(", \"attrs\": [", f);
        for (i = 0; i < n->n_attrs; i++) {
            if (i > 0)
                fputs(", ", f);
            put_attr(f, &n->attrs[i]);
        }
        fputc(']', f);
    }
    fputc('}', f);
}

static void
put_meta(FILE *f, const struct smlp__meta_ir *m)
{
    fputs("{\"key\": ", f);
    put_string(f, m->key);
    if (m->value != NULL) {
        fputs(", \"value\": ", f);
        put_string(f, m->value);
    }
    fputc('}', f);
}

/* Opens a list field: "  \"key\": [" and a newline. */
static void
list_open(FILE *f, const char *key)
{
    fprintf(f, "  \"%s\": [\n", key);
}

static void
list_sep(FILE *f, int32_t i, int32_t n)
{
    fputs(i + 1 < n ? ",\n" : "\n", f);
}

int
sg_json_write(FILE *f, const struct smlp__graph_ir *ir)
{
    int32_t i;

    fprintf(f, "{\n  \"format_version\": %" PRIu32 ",\n  \"name\": ",
            ir->format_version);
    put_string(f, ir->name);
    fputs(",\n  \"plugins\": [", f);
    for (i = 0; i < ir->n_plugins; i++) {
        if (i > 0)
            fputs(", ", f);
        put_string(f, ir->plugins[i]);
    }
    fputs("],\n", f);
    list_open(f, "tensors");
    for (i = 0; i < ir->n_tensors; i++) {
        fputs("    ", f);
        put_tensor(f, &ir->tensors[i]);
        list_sep(f, i, ir->n_tensors);
    }
    fputs("  ],\n", f);
    list_open(f, "nodes");
    for (i = 0; i < ir->n_nodes; i++) {
        fputs("    ", f);
        put_node(f, &ir->nodes[i]);
        list_sep(f, i, ir->n_nodes);
    }
    fputs("  ],\n", f);
    list_open(f, "metadata");
    for (i = 0; i < ir->n_meta; i++) {
        fputs("    ", f);
        put_meta(f, &ir->meta[i]);
        list_sep(f, i, ir->n_meta);
    }
    fputs("  ]\n}\n", f);
    return ferror(f) ? -1 : 0;
}
