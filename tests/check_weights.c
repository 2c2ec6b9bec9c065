/*
 * check_weights.c - a session's parameters and inputs from safetensors
 * files (written by hand here, independently of the runtime's writer):
 * round trips, bad checkpoints, failures that change nothing, dtypes,
 * non-finite values; the seeded synthetic inputs and the initialisers'
 * values; outputs written before a run.
 */
#include "sessionfx.h"

/* Writes a one-tensor safetensors file by hand (independent of the
 * runtime's writer). */
static void
write_st(const char *path, const char *name, const char *dtype,
         const char *shape, const void *data, size_t nbytes)
{
    char header[512], buf[1024];
    uint64_t hlen;
    size_t len;

    snprintf(header, sizeof(header),
             "{\"%s\": {\"dtype\": \"%s\", \"shape\": %s, "
             "\"data_offsets\": [0, %zu]}}",
             name, dtype, shape, nbytes);
    hlen = strlen(header);
    memcpy(buf, &hlen, 8);
    memcpy(buf + 8, header, hlen);
    memcpy(buf + 8 + hlen, data, nbytes);
    len = 8 + hlen + nbytes;
    tu_write(path, buf, len);
}

/* The same with n tensors: names[k], dtypes[k] (F32 for all when
 * dtypes is NULL), shapes[k] (JSON) and nbytes[k] bytes of data[k],
 * laid out one after another. */
static void
write_st_dt(const char *path, int n, const char *const *names,
            const char *const *dtypes, const char *const *shapes,
            const void *const *data, const size_t *nbytes)
{
    char header[1024], buf[2048];
    size_t used = 0, off = 0, len;
    uint64_t hlen;
    int k;

    used += (size_t)snprintf(header + used, sizeof(header) - used, "{");
    for (k = 0; k < n; k++) {
        used += (size_t)snprintf(header + used, sizeof(header) - used,
                                 "%s\"%s\": {\"dtype\": \"%s\", "
                                 "\"shape\": %s, \"data_offsets\": [%zu, "
                                 "%zu]}",
                                 k > 0 ? ", " : "", names[k],
                                 dtypes != NULL ? dtypes[k] : "F32",
                                 shapes[k], off, off + nbytes[k]);
        off += nbytes[k];
    }
    used += (size_t)snprintf(header + used, sizeof(header) - used, "}");
    ck_assert_uint_lt(used, sizeof(header));
    hlen = used;
    ck_assert_uint_le(8 + hlen + off, sizeof(buf));
    memcpy(buf, &hlen, 8);
    memcpy(buf + 8, header, hlen);
    len = 8 + hlen;
    for (k = 0; k < n; k++) {
        memcpy(buf + len, data[k], nbytes[k]);
        len += nbytes[k];
    }
    tu_write(path, buf, len);
}

static void
write_st_n(const char *path, int n, const char *const *names,
           const char *const *shapes, const void *const *data,
           const size_t *nbytes)
{
    write_st_dt(path, n, names, NULL, shapes, data, nbytes);
}

static smlp_session_t *
branches_session(const char *weights, smlp_graph_t **g, smlp_registry_t *reg,
                 struct smlp_error *err)
{
    struct smlp_session_opts o;
    char path[512];

    *g = graph_json(graph_branches, err, path, sizeof(path));
    ck_assert_msg(*g != NULL, "%s", err->msg);
    smlp_session_opts_init(&o);
    o.batch = 2;
    o.weights = weights;
    return smlp_session_create(*g, reg, &o, err);
}

START_TEST(test_weights_save_load_roundtrip)
{
    smlp_registry_t *reg = tu_registry();
    const char *dir = tu_tmpdir();
    struct smlp_error err;
    smlp_session_t *a, *b;
    smlp_graph_t *ga, *gb;
    char path[600];
    float *w;
    int i;

    a = branches_session(NULL, &ga, reg, &err);
    ck_assert_msg(a != NULL, "%s", err.msg);
    w = tensor_data(a, "W1", NULL);
    for (i = 0; i < 6; i++)
        w[i] = 0.5f * (float)i - 1.0f;
    snprintf(path, sizeof(path), "%s/w.safetensors", dir);
    ck_assert_msg(smlp_session_save_weights(a, path) == SMLP_OK, "%s",
                  smlp_session_errmsg(a));
    b = branches_session(path, &gb, reg, &err);
    ck_assert_msg(b != NULL, "%s", err.msg);
    ck_assert_mem_eq(tensor_data(a, "W1", NULL), tensor_data(b, "W1", NULL),
                     6 * sizeof(float));
    ck_assert_mem_eq(tensor_data(a, "W2", NULL), tensor_data(b, "W2", NULL),
                     6 * sizeof(float));
    ck_assert_int_eq(smlp_session_run(a), SMLP_OK);
    ck_assert_int_eq(smlp_session_run(b), SMLP_OK);
    ck_assert_mem_eq(tensor_data(a, "out", NULL),
                     tensor_data(b, "out", NULL), 6 * sizeof(float));
    smlp_session_destroy(a);
    smlp_session_destroy(b);
    smlp_graph_unload(ga);
    smlp_graph_unload(gb);
    smlp_registry_destroy(reg);
}
END_TEST

static void
expect_bad_weights(const char *name, const char *dtype, const char *shape,
                   size_t nbytes, const char *needle)
{
    static const float data[16];
    smlp_registry_t *reg = tu_registry();
    struct smlp_error err;
    smlp_graph_t *g;
    char path[600];

    snprintf(path, sizeof(path), "%s/bad.safetensors", tu_tmpdir());
    write_st(path, name, dtype, shape, data, nbytes);
    ck_assert_ptr_null(branches_session(path, &g, reg, &err));
    tu_assert_contains(err.msg, path);
    tu_assert_contains(err.msg, needle);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}

START_TEST(test_weights_bad_checkpoints)
{
    expect_bad_weights("W9", "F32", "[3, 2]", 24, "has no tensor 'W1'");
    /* A file with W1 only lacks the others; wrong shapes are named. */
    expect_bad_weights("W1", "F32", "[2, 3]", 24,
                       "tensor 'W1' has shape [2,3], the graph declares "
                       "[3,2]");
    expect_bad_weights("W1", "I32", "[3, 2]", 24,
                       "tensor 'W1' has dtype I32, the graph declares f32");
    /* Only the last dimension differs: every dimension is compared. */
    expect_bad_weights("W1", "F32", "[3, 4]", 48,
                       "tensor 'W1' has shape [3,4], the graph declares "
                       "[3,2]");
}
END_TEST

/*
 * A weights file holds the parameters and state only, not the inputs
 * (nor the outputs): read as inputs, it lacks x.
 */
START_TEST(test_weights_save_params_only)
{
    smlp_registry_t *reg = tu_registry();
    struct smlp_error err;
    smlp_session_t *s;
    smlp_graph_t *g;
    char path[600];

    s = branches_session(NULL, &g, reg, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    snprintf(path, sizeof(path), "%s/params.safetensors", tu_tmpdir());
    ck_assert_int_eq(smlp_session_save_weights(s, path), SMLP_OK);
    ck_assert_int_eq(smlp_session_read_inputs(s, path), SMLP_ENOENT);
    tu_assert_contains(smlp_session_errmsg(s), "has no tensor 'x'");
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/* check_finite is for weights: an input may hold NaN and infinity (a
 * model may mask them), and they are read as they are. */
START_TEST(test_inputs_read_nonfinite)
{
    const float x2[4] = {1, NAN, INFINITY, 4};
    smlp_registry_t *reg = tu_registry();
    struct smlp_session_opts o;
    struct smlp_error err;
    smlp_session_t *s;
    smlp_graph_t *g;
    char path[600];

    g = graph_json(graph_branches, &err, path, sizeof(path));
    ck_assert_msg(g != NULL, "%s", err.msg);
    smlp_session_opts_init(&o);
    o.batch = 2;
    o.check_finite = 1;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    snprintf(path, sizeof(path), "%s/xnan.safetensors", tu_tmpdir());
    write_st(path, "x", "F32", "[2, 2]", x2, sizeof(x2));
    ck_assert_msg(smlp_session_read_inputs(s, path) == SMLP_OK, "%s",
                  smlp_session_errmsg(s));
    ck_assert_mem_eq(tensor_data(s, "x", NULL), x2, sizeof(x2));
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

START_TEST(test_inputs_read_file)
{
    static const float x2[4] = {1, 2, 3, 4};
    smlp_registry_t *reg = tu_registry();
    struct smlp_error err;
    smlp_session_t *s;
    smlp_graph_t *g;
    char path[600];

    s = branches_session(NULL, &g, reg, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    snprintf(path, sizeof(path), "%s/x.safetensors", tu_tmpdir());
    write_st(path, "x", "F32", "[2, 2]", x2, sizeof(x2));
    ck_assert_int_eq(smlp_session_read_inputs(s, path), SMLP_OK);
    ck_assert_mem_eq(tensor_data(s, "x", NULL), x2, sizeof(x2));
    write_st(path, "x", "F32", "[1, 2]", x2, 8);
    ck_assert_int_eq(smlp_session_read_inputs(s, path), SMLP_ESHAPE);
    tu_assert_contains(smlp_session_errmsg(s),
                       "tensor 'x' has shape [1,2], the session expects "
                       "[2,2] (is the session's batch size right? smlp-run "
                       "--batch)");
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/* Copies of the branches graph's parameters, to compare against. */
struct branches_snap {
    float W1[6], b1[3], W2[6];
};

static void
branches_snap_take(smlp_session_t *s, struct branches_snap *sn)
{
    memcpy(sn->W1, tensor_data(s, "W1", NULL), sizeof(sn->W1));
    memcpy(sn->b1, tensor_data(s, "b1", NULL), sizeof(sn->b1));
    memcpy(sn->W2, tensor_data(s, "W2", NULL), sizeof(sn->W2));
}

static void
branches_snap_expect(smlp_session_t *s, const struct branches_snap *sn)
{
    ck_assert_mem_eq(tensor_data(s, "W1", NULL), sn->W1, sizeof(sn->W1));
    ck_assert_mem_eq(tensor_data(s, "b1", NULL), sn->b1, sizeof(sn->b1));
    ck_assert_mem_eq(tensor_data(s, "W2", NULL), sn->W2, sizeof(sn->W2));
}

/*
 * A load that fails on the last tensor (W2: missing, misshapen, or
 * infinite with check_finite) leaves the session's tensors as they were:
 * W1 and b1, good in the file, were not copied either.
 */
START_TEST(test_weights_load_failure_changes_nothing)
{
    static const char *const names[3] = {"W1", "b1", "W2"};
    static const char *const shapes[3] = {"[3, 2]", "[3]", "[3, 2]"};
    static const char *const bad_shapes[3] = {"[3, 2]", "[3]", "[2, 3]"};
    static const size_t nbytes[3] = {24, 12, 24};
    smlp_registry_t *reg = tu_registry();
    struct branches_snap before;
    struct smlp_session_opts o;
    struct smlp_error err;
    smlp_session_t *s;
    smlp_graph_t *g;
    float w1[6], b1[3], w2[6];
    const void *data[3] = {w1, b1, w2};
    char path[600], gpath[512];
    int i;

    for (i = 0; i < 6; i++)
        w1[i] = w2[i] = 9.0f + (float)i;
    for (i = 0; i < 3; i++)
        b1[i] = -9.0f;
    g = graph_json(graph_branches, &err, gpath, sizeof(gpath));
    ck_assert_msg(g != NULL, "%s", err.msg);
    smlp_session_opts_init(&o);
    o.batch = 2;
    o.check_finite = 1;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    branches_snap_take(s, &before);
    snprintf(path, sizeof(path), "%s/w.safetensors", tu_tmpdir());

    write_st_n(path, 2, names, shapes, data, nbytes);
    ck_assert_int_eq(smlp_session_load_weights(s, path), SMLP_ENOENT);
    tu_assert_contains(smlp_session_errmsg(s), "has no tensor 'W2'");
    branches_snap_expect(s, &before);

    write_st_n(path, 3, names, bad_shapes, data, nbytes);
    ck_assert_int_eq(smlp_session_load_weights(s, path), SMLP_ESHAPE);
    tu_assert_contains(smlp_session_errmsg(s),
                       "tensor 'W2' has shape [2,3], the graph declares "
                       "[3,2]");
    branches_snap_expect(s, &before);

    w2[5] = INFINITY;
    write_st_n(path, 3, names, shapes, data, nbytes);
    ck_assert_int_eq(smlp_session_load_weights(s, path), SMLP_EBADFILE);
    tu_assert_contains(smlp_session_errmsg(s),
                       "tensor 'W2': element 5 is infinite");
    branches_snap_expect(s, &before);

    w2[5] = 1.0f;
    write_st_n(path, 3, names, shapes, data, nbytes);
    ck_assert_msg(smlp_session_load_weights(s, path) == SMLP_OK, "%s",
                  smlp_session_errmsg(s));
    ck_assert_mem_eq(tensor_data(s, "W1", NULL), w1, sizeof(w1));
    ck_assert_mem_eq(tensor_data(s, "W2", NULL), w2, sizeof(w2));
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/* out = x + x2: two inputs, the second of the wrong batch in the file;
 * x, good in the file, is not copied either. */
START_TEST(test_inputs_read_failure_changes_nothing)
{
    static const char *graph_two_inputs =
        "{\"name\": \"two\", \"plugins\": [\"core\"], \"tensors\": ["
        "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 2]},"
        "{\"name\": \"x2\", \"kind\": \"Input\", \"shape\": [-1, 2]},"
        "{\"name\": \"out\", \"kind\": \"Output\"}], \"nodes\": ["
        "{\"name\": \"sum\", \"op\": \"core.add\", \"inputs\": [0, 1],"
        " \"outputs\": [2]}]}";
    static const char *const names[2] = {"x", "x2"};
    static const char *const shapes[2] = {"[2, 2]", "[1, 2]"};
    static const float x[4] = {1, 2, 3, 4}, x2[2] = {5, 6};
    static const void *const data[2] = {x, x2};
    static const size_t nbytes[2] = {16, 8};
    smlp_registry_t *reg = tu_registry();
    struct smlp_session_opts o;
    struct smlp_error err;
    smlp_session_t *s;
    smlp_graph_t *g;
    float before[4];
    char path[600], gpath[512];

    g = graph_json(graph_two_inputs, &err, gpath, sizeof(gpath));
    ck_assert_msg(g != NULL, "%s", err.msg);
    smlp_session_opts_init(&o);
    o.batch = 2;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    memcpy(before, tensor_data(s, "x", NULL), sizeof(before));
    snprintf(path, sizeof(path), "%s/in.safetensors", tu_tmpdir());
    write_st_n(path, 2, names, shapes, data, nbytes);
    ck_assert_int_eq(smlp_session_read_inputs(s, path), SMLP_ESHAPE);
    tu_assert_contains(smlp_session_errmsg(s),
                       "tensor 'x2' has shape [1,2], the session expects "
                       "[2,2]");
    ck_assert_mem_eq(tensor_data(s, "x", NULL), before, sizeof(before));
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * Inputs are read with the dtype the graph declares: labels are i32,
 * and a file holding them as F32 (4 bytes each too, the same shape) is
 * refused naming the file and the input, and changes nothing (the
 * logits, good in the file, included).  With zero logits over 3 classes
 * the loss is ln 3 for any labels.
 */
START_TEST(test_inputs_read_wrong_dtype)
{
    static const char *const names[2] = {"logits", "labels"};
    static const char *const f32[2] = {"F32", "F32"};
    static const char *const i32[2] = {"F32", "I32"};
    static const char *const shapes[2] = {"[2, 3]", "[2]"};
    static const float zeros[6], flabels[2] = {1, 2};
    static const int32_t labels[2] = {2, 1};
    const void *fdata[2] = {zeros, flabels}, *idata[2] = {zeros, labels};
    static const size_t nbytes[2] = {24, 8};
    smlp_registry_t *reg = tu_registry();
    struct smlp_session_opts o;
    struct smlp_error err;
    smlp_session_t *s;
    smlp_graph_t *g;
    char path[600], gpath[512];
    int32_t before[2];
    float *logits, lbefore[6];

    g = graph_json(
        "{\"name\": \"ce\", \"plugins\": [\"core\"], \"tensors\": ["
        "{\"name\": \"logits\", \"kind\": \"Input\", \"shape\": [-1, 3]},"
        "{\"name\": \"labels\", \"kind\": \"Input\", \"shape\": [-1],"
        " \"dtype\": \"I32\", \"init\": {\"kind\": \"Zeros\"}},"
        "{\"name\": \"loss\", \"kind\": \"Output\"}], \"nodes\": ["
        "{\"name\": \"ce\", \"op\": \"core.softmax_cross_entropy\","
        " \"inputs\": [0, 1], \"outputs\": [2]}]}",
        &err, gpath, sizeof(gpath));
    ck_assert_msg(g != NULL, "%s", err.msg);
    smlp_session_opts_init(&o);
    o.batch = 2;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    memcpy(before, tensor_data(s, "labels", NULL), sizeof(before));
    memcpy(lbefore, tensor_data(s, "logits", NULL), sizeof(lbefore));
    snprintf(path, sizeof(path), "%s/labels.safetensors", tu_tmpdir());
    write_st_dt(path, 2, names, f32, shapes, fdata, nbytes);
    ck_assert_msg(smlp_session_read_inputs(s, path) == SMLP_EBADFILE, "%s",
                  smlp_session_errmsg(s));
    tu_assert_contains(smlp_session_errmsg(s), path);
    tu_assert_contains(smlp_session_errmsg(s),
                       "tensor 'labels' has dtype F32, the graph declares "
                       "i32");
    ck_assert_mem_eq(tensor_data(s, "labels", NULL), before,
                     sizeof(before));
    ck_assert_mem_eq(tensor_data(s, "logits", NULL), lbefore,
                     sizeof(lbefore));
    write_st_dt(path, 2, names, i32, shapes, idata, nbytes);
    ck_assert_msg(smlp_session_read_inputs(s, path) == SMLP_OK, "%s",
                  smlp_session_errmsg(s));
    ck_assert_mem_eq(tensor_data(s, "labels", NULL), labels,
                     sizeof(labels));
    logits = tensor_data(s, "logits", NULL);
    ck_assert_mem_eq(logits, zeros, sizeof(zeros));
    ck_assert_int_eq(smlp_session_run(s), SMLP_OK);
    ck_assert_msg(fabs(*tensor_data(s, "loss", NULL) - log(3.0)) < 1e-6,
                  "loss %g, want ln 3", *tensor_data(s, "loss", NULL));
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * Inputs without an initializer get seeded synthetic data: a standard
 * normal whose seed depends on the input (its index) and on the fill
 * seed.  Two such inputs of one shape get different values, the same
 * in every session, and another fill seed changes both.
 */
START_TEST(test_inputs_synthetic_per_input_seed)
{
    static const char *graph_two_inputs =
        "{\"name\": \"two\", \"plugins\": [\"core\"], \"tensors\": ["
        "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 8]},"
        "{\"name\": \"x2\", \"kind\": \"Input\", \"shape\": [-1, 8]},"
        "{\"name\": \"out\", \"kind\": \"Output\"}], \"nodes\": ["
        "{\"name\": \"sum\", \"op\": \"core.add\", \"inputs\": [0, 1],"
        " \"outputs\": [2]}]}";
    smlp_registry_t *reg = tu_registry();
    struct smlp_session_opts o;
    struct smlp_error err;
    smlp_session_t *s, *t;
    smlp_graph_t *g;
    float x[16], x2[16];
    char gpath[512];
    int i, same = 0;

    g = graph_json(graph_two_inputs, &err, gpath, sizeof(gpath));
    ck_assert_msg(g != NULL, "%s", err.msg);
    smlp_session_opts_init(&o);
    o.batch = 2;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    t = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(t != NULL, "%s", err.msg);
    memcpy(x, tensor_data(s, "x", NULL), sizeof(x));
    memcpy(x2, tensor_data(s, "x2", NULL), sizeof(x2));
    for (i = 0; i < 16; i++) {
        ck_assert(isfinite(x[i]) && isfinite(x2[i]));
        same += x[i] == x2[i];
    }
    ck_assert_msg(same == 0, "x and x2 share %d of 16 values", same);
    ck_assert_mem_eq(tensor_data(t, "x", NULL), x, sizeof(x));
    ck_assert_mem_eq(tensor_data(t, "x2", NULL), x2, sizeof(x2));
    ck_assert_int_eq(smlp_session_fill_inputs(t, 1), SMLP_OK);
    for (i = 0; i < 16; i++) {
        ck_assert_float_ne(tensor_data(t, "x", NULL)[i], x[i]);
        ck_assert_float_ne(tensor_data(t, "x2", NULL)[i], x2[i]);
    }
    smlp_session_destroy(s);
    smlp_session_destroy(t);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * The seeded initializers (runtime/init.c) against the formulas of its
 * header, evaluated independently in python3 (double, rounded to f32 once;
 * I32 rounded to nearest), with seed_xor 0 as for parameters and state:
 *
 *   mix(x) = SplitMix64's finalizer of x + 0x9E3779B97F4A7C15
 *   bits(i) = mix(seed ^ mix(i)),  u(i) = (bits(i) >> 40) / 2^24
 *   Uniform(a, b):  a + (b - a) u(i)
 *   Normal(a, b):   a + b sqrt(-2 ln u1) cos(2 pi u2),
 *                   u1 = ((bits(2i) >> 40) + 0.5) / 2^24, u2 = u(2i + 1)
 *
 * Normal goes through log, sqrt and cos: it may differ from python's by
 * an ulp where a libm rounds otherwise, so it is checked to 1.5e-7
 * (relative); the rest bit for bit.
 */
START_TEST(test_init_values)
{
    static const char *graph_init =
        "{\"name\": \"inits\", \"plugins\": [\"core\"], \"tensors\": ["
        "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 2]},"
        "{\"name\": \"u\", \"kind\": \"Parameter\", \"shape\": [4],"
        " \"init\": {\"kind\": \"Uniform\", \"a\": -0.5, \"b\": 0.5,"
        " \"seed\": 3}},"
        "{\"name\": \"n\", \"kind\": \"Parameter\", \"shape\": [8],"
        " \"init\": {\"kind\": \"Normal\", \"a\": 1, \"b\": 2,"
        " \"seed\": 9}},"
        "{\"name\": \"c\", \"kind\": \"State\", \"shape\": [2],"
        " \"init\": {\"kind\": \"Constant\", \"a\": 0.25, \"b\": 4}},"
        "{\"name\": \"o\", \"kind\": \"State\", \"shape\": [2],"
        " \"init\": {\"kind\": \"Ones\"}},"
        "{\"name\": \"k\", \"kind\": \"State\", \"dtype\": \"I32\","
        " \"shape\": [6], \"init\": {\"kind\": \"Uniform\", \"a\": -10,"
        " \"b\": 10, \"seed\": 5}},"
        "{\"name\": \"y\", \"kind\": \"Output\"}], \"nodes\": ["
        "{\"name\": \"dbl\", \"op\": \"core.add\", \"inputs\": [0, 0],"
        " \"outputs\": [6]}]}";
    /* python3: f32(-0.5 + 1.0 * u(i)) for seed 3, and so on. */
    static const float want_u[4] = {0.2814992666244507f, 0.026717960834503174f,
                                    0.2083260416984558f, 0.23687756061553955f};
    static const float want_n[8] = {
        1.6659984588623047f, 1.8342032432556152f, 0.5549448132514954f,
        -1.131898283958435f, 1.4394153356552124f, 1.7398041486740112f,
        2.780251979827881f,  3.026024580001831f};
    /* -10 + 20 u(i) = -5.10, 3.85, 1.66, 6.12, 9.06, 7.53: rounded. */
    static const int32_t want_k[6] = {-5, 4, 2, 6, 9, 8};
    smlp_registry_t *reg = tu_registry();
    struct smlp_session_opts o;
    struct smlp_error err;
    struct smlp_tensor t;
    smlp_session_t *s;
    smlp_graph_t *g;
    const float *v;
    char path[512];
    int i;

    g = graph_json(graph_init, &err, path, sizeof(path));
    ck_assert_msg(g != NULL, "%s", err.msg);
    smlp_session_opts_init(&o);
    o.seed = 77; /* the session seed does not reach initializers */
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    v = tensor_data(s, "u", NULL);
    for (i = 0; i < 4; i++)
        ck_assert_msg(v[i] == want_u[i], "u[%d] = %.9g, want %.9g", i,
                      v[i], want_u[i]);
    v = tensor_data(s, "n", NULL);
    for (i = 0; i < 8; i++)
        ck_assert_msg(fabsf(v[i] - want_n[i]) <= 1.5e-7f * fabsf(want_n[i]),
                      "n[%d] = %.9g, want %.9g", i, v[i], want_n[i]);
    v = tensor_data(s, "c", NULL);
    ck_assert_float_eq(v[0], 0.25f);
    ck_assert_float_eq(v[1], 0.25f);
    v = tensor_data(s, "o", NULL);
    ck_assert_float_eq(v[0], 1.0f);
    ck_assert_float_eq(v[1], 1.0f);
    ck_assert_int_eq(smlp_session_tensor(s, "k", &t), SMLP_OK);
    ck_assert_int_eq(t.dtype, SMLP_DTYPE_I32);
    ck_assert_mem_eq(t.data, want_k, sizeof(want_k));
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/* Before the first run the outputs hold no values: write_outputs refuses
 * (and writes no file), and the arena reads as zeros, not garbage. */
START_TEST(test_outputs_write_before_run)
{
    smlp_registry_t *reg = tu_registry();
    struct smlp_error err;
    struct stat st;
    smlp_session_t *s;
    smlp_graph_t *g;
    const float *out;
    char path[600];
    int64_t n, i;

    s = branches_session(NULL, &g, reg, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    out = tensor_data(s, "out", &n);
    for (i = 0; i < n; i++)
        ck_assert_float_eq(out[i], 0.0f);
    snprintf(path, sizeof(path), "%s/out.safetensors", tu_tmpdir());
    ck_assert_int_eq(smlp_session_write_outputs(s, path), SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(s),
                       "no run yet: the outputs hold no values (call "
                       "smlp_session_run first)");
    ck_assert_int_ne(stat(path, &st), 0);
    ck_assert_int_eq(smlp_session_run(s), SMLP_OK);
    ck_assert_msg(smlp_session_write_outputs(s, path) == SMLP_OK, "%s",
                  smlp_session_errmsg(s));
    ck_assert_int_eq(stat(path, &st), 0);
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * opts.no_init (smlp.h): parameters are allocated but left zero, the
 * graph's initializers unused.  graph_branches' W2 has a uniform
 * initializer on [-1, 1]: nonzero without no_init (six draws), all zero
 * with it.
 */
START_TEST(test_no_init_leaves_zeros)
{
    smlp_registry_t *reg = tu_registry();
    struct smlp_session_opts o;
    struct smlp_error err;
    smlp_session_t *s;
    smlp_graph_t *g;
    char path[512];
    int64_t n, i;
    float *w;
    int k, nonzero;

    g = graph_json(graph_branches, &err, path, sizeof(path));
    ck_assert_msg(g != NULL, "%s", err.msg);
    for (k = 0; k < 2; k++) {
        smlp_session_opts_init(&o);
        o.no_init = k;
        s = smlp_session_create(g, reg, &o, &err);
        ck_assert_msg(s != NULL, "%s", err.msg);
        w = tensor_data(s, "W2", &n);
        ck_assert_int_eq(n, 6);
        for (nonzero = 0, i = 0; i < n; i++)
            nonzero += w[i] != 0.0f;
        if (k == 0)
            ck_assert_int_gt(nonzero, 0);
        else
            ck_assert_int_eq(nonzero, 0);
        smlp_session_destroy(s);
    }
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * opts.weights loads state as well as parameters (smlp.h: "parameters
 * and state"): a graph with a state tensor st [2] (initializer 0) saved
 * with st = {3, -4} gives a new session st = {3, -4} from the start.
 */
START_TEST(test_weights_at_create_load_state)
{
    static const char *json =
        "{\"name\": \"st\", \"plugins\": [\"core\"], \"tensors\": ["
        "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 2]},"
        "{\"name\": \"W\", \"kind\": \"Parameter\", \"shape\": [3, 2]},"
        "{\"name\": \"st\", \"kind\": \"State\", \"shape\": [2]},"
        "{\"name\": \"out\", \"kind\": \"Output\"}], \"nodes\": ["
        "{\"name\": \"fc\", \"op\": \"core.linear\", \"inputs\": [0, 1],"
        " \"outputs\": [3]}]}";
    smlp_registry_t *reg = tu_registry();
    struct smlp_session_opts o;
    struct smlp_error err;
    smlp_session_t *a, *b;
    smlp_graph_t *g;
    char gpath[512], path[600];
    float *v;

    g = graph_json(json, &err, gpath, sizeof(gpath));
    ck_assert_msg(g != NULL, "%s", err.msg);
    a = smlp_session_create(g, reg, NULL, &err);
    ck_assert_msg(a != NULL, "%s", err.msg);
    v = tensor_data(a, "st", NULL);
    v[0] = 3;
    v[1] = -4;
    snprintf(path, sizeof(path), "%s/state.safetensors", tu_tmpdir());
    ck_assert_msg(smlp_session_save_weights(a, path) == SMLP_OK, "%s",
                  smlp_session_errmsg(a));
    smlp_session_destroy(a);
    smlp_session_opts_init(&o);
    o.weights = path;
    b = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(b != NULL, "%s", err.msg);
    v = tensor_data(b, "st", NULL);
    ck_assert_float_eq(v[0], 3.0f);
    ck_assert_float_eq(v[1], -4.0f);
    smlp_session_destroy(b);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

static Suite *
weights_suite(void)
{
    Suite *s = suite_create("weights");
    TCase *tc;

    tc = tcase_create("weights");
    tcase_add_test(tc, test_weights_save_load_roundtrip);
    tcase_add_test(tc, test_weights_bad_checkpoints);
    tcase_add_test(tc, test_inputs_read_file);
    tcase_add_test(tc, test_weights_save_params_only);
    tcase_add_test(tc, test_inputs_read_nonfinite);
    tcase_add_test(tc, test_weights_load_failure_changes_nothing);
    tcase_add_test(tc, test_inputs_read_failure_changes_nothing);
    tcase_add_test(tc, test_inputs_read_wrong_dtype);
    tcase_add_test(tc, test_inputs_synthetic_per_input_seed);
    tcase_add_test(tc, test_init_values);
    tcase_add_test(tc, test_outputs_write_before_run);
    tcase_add_test(tc, test_no_init_leaves_zeros);
    tcase_add_test(tc, test_weights_at_create_load_state);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(weights_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
