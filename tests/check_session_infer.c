/*
 * check_session_infer.c - what a session checks when it is created:
 * shape inference and its errors (arity, attributes, declared shapes and
 * dtypes, fixed batches, batch limits), the outputs an op's infer
 * declares, the kernel chosen for each node, views, and the ranges of
 * the session options.  Graph checks at load time: check_session_graph.c.
 */
#include "sessionfx.h"

static void
expect_bad_session(const char *json, int64_t batch, int status,
                   const char *needle)
{
    smlp_registry_t *reg = tu_registry();
    struct smlp_session_opts o;
    struct smlp_error err;
    smlp_graph_t *g;
    char path[512];

    g = graph_json(json, &err, path, sizeof(path));
    ck_assert_msg(g != NULL, "%s", err.msg);
    smlp_session_opts_init(&o);
    o.batch = batch;
    ck_assert_ptr_null(smlp_session_create(g, reg, &o, &err));
    ck_assert_msg(err.status == status, "got %s: %s",
                  smlp_status_name(err.status), err.msg);
    tu_assert_contains(err.msg, needle);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}

/*
 * Creates a batch-2 session of x [-1, 2] -> node 's' (good.shape, the
 * fixture whose infer leaves its output as its attributes say) -> y,
 * declared `decl` ("" for no shape), then the tensors `more` (JSON, each
 * after a comma); expects it to fail with `status`
 * and `needle`, the message naming the graph file.
 */
static void
expect_shape_fail_with(const char *attrs, const char *decl, const char *more,
                       int status, const char *needle)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct smlp_session_opts o;
    struct smlp_error err;
    smlp_session_t *s;
    smlp_graph_t *g;
    char json[1024], path[512];

    snprintf(json, sizeof(json),
             "{\"name\": \"g\", \"plugins\": [\"good\"], \"tensors\": ["
             T_IN ", {\"name\": \"y\", \"kind\": \"Output\"%s}%s],"
             " \"nodes\": [{\"name\": \"s\", \"op\": \"good.shape\","
             " \"inputs\": [0], \"outputs\": [1], \"attrs\": [%s]}]}",
             decl, more, attrs);
    g = graph_json(json, &err, path, sizeof(path));
    ck_assert_msg(g != NULL, "%s", err.msg);
    smlp_session_opts_init(&o);
    o.batch = 2;
    o.threads = 1;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s == NULL, "session created, expected '%s'", needle);
    ck_assert_msg(err.status == status, "got %s: %s",
                  smlp_status_name(err.status), err.msg);
    tu_assert_contains(err.msg, path);
    tu_assert_contains(err.msg, needle);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}

static void
expect_shape_fail(const char *attrs, const char *decl, int status,
                  const char *needle)
{
    expect_shape_fail_with(attrs, decl, "", status, needle);
}

#define T_ATTR(name, v) "{\"name\": \"" name "\", \"i\": " #v "}"

/*
 * What an infer writes is checked (session.c): rank 0 to 8 and a known
 * dtype (else SMLP_EINVAL); no negative dimension, even where the
 * product comes out positive, and at most 2^48 bytes (SMLP_ESHAPE); the
 * declared rank as well as the declared dims (x is [2,2]; rank 3 makes
 * [2,2,0]); saved bytes up to 2^48 (SMLP_ELIMIT); and an infer's own
 * negative status is the session's.
 */
START_TEST(test_infer_output_checked)
{
    char attrs[64], want[64];

    expect_shape_fail(T_ATTR("rank", 9), "", SMLP_EINVAL,
                      "node 0 's' (good.shape): shape inference left "
                      "output 0 'y' with rank 9 and dtype 0 (rank 0 to 8, "
                      "dtype 0 to 1)");
    expect_shape_fail(T_ATTR("dtype", 2), "", SMLP_EINVAL,
                      "node 0 's' (good.shape): shape inference left "
                      "output 0 'y' with rank 2 and dtype 2 (rank 0 to 8, "
                      "dtype 0 to 1)");
    expect_shape_fail(T_ATTR("d0", -1) "," T_ATTR("d1", -1), "",
                      SMLP_ESHAPE,
                      "node 0 's' (good.shape): output 0 'y' has shape "
                      "[-1,-1], with a negative dimension");
    /* 2^22 x (2^24 + 1) f32: 2^48 + 2^24 bytes, just over. */
    expect_shape_fail(T_ATTR("d0", 4194304) "," T_ATTR("d1", 16777217), "",
                      SMLP_ESHAPE,
                      "node 0 's' (good.shape): output 0 'y' has shape "
                      "[4194304,16777217], over 2^48 bytes");
    expect_shape_fail(T_ATTR("rank", 3), ", \"shape\": [-1, 2]",
                      SMLP_ESHAPE,
                      "node 0 's' (good.shape): output 0 'y' is f32 "
                      "[2,2,0], but the graph declares f32 [2,2]");
    expect_shape_fail(T_ATTR("saved", 562949953421312), "", SMLP_ELIMIT,
                      "node 0 's' (good.shape): shape inference asks for "
                      "562949953421312 bytes of saved bytes, over the "
                      "limit of 2^48");
    snprintf(attrs, sizeof(attrs), "{\"name\": \"status\", \"i\": %d}",
             SMLP_ESHAPE);
    snprintf(want, sizeof(want), "node 0 's' (good.shape): ");
    expect_shape_fail(attrs, "", SMLP_ESHAPE, want);
}
END_TEST

/*
 * The kernel a node runs (session.c): among the CPU kernels whose dtype
 * mask has the dtype of the node's first input, the highest score, the
 * first one on ties.  good.pick's kernels fill y with 2 (f32, score 2),
 * 9 (i32 only, score 9), -2 (f32, score 2) and 1 (f32, score 1): an f32
 * x gets 2, even with an i32 second input; an i32 x gets 9.
 */
START_TEST(test_kernel_choice)
{
    static const char *const first[2] = {"F32", "I32"};
    static const float want[2] = {2, 9};
    smlp_registry_t *reg = tu_fixture_registry();
    struct smlp_error err;
    smlp_session_t *s;
    smlp_graph_t *g;
    char json[1024], path[512];
    float *y;
    int64_t n, i;
    int k, two;

    for (k = 0; k < 2; k++)
        for (two = 0; two < 2; two++) {
            snprintf(json, sizeof(json),
                     "{\"name\": \"g\", \"plugins\": [\"good\"], "
                     "\"tensors\": [{\"name\": \"x\", \"kind\": \"Input\","
                     " \"dtype\": \"%s\", \"shape\": [-1, 2]},"
                     " {\"name\": \"w\", \"kind\": \"Input\", \"dtype\":"
                     " \"%s\", \"shape\": [2]},"
                     " {\"name\": \"y\", \"kind\": \"Output\"}], \"nodes\":"
                     " [{\"name\": \"p\", \"op\": \"good.pick\", \"inputs\":"
                     " [0%s], \"outputs\": [2]}]}",
                     first[k], first[1 - k], two ? ", 1" : "");
            g = graph_json(json, &err, path, sizeof(path));
            ck_assert_msg(g != NULL, "%s", err.msg);
            s = smlp_session_create(g, reg, NULL, &err);
            ck_assert_msg(s != NULL, "%s", err.msg);
            tu_run_ok(s);
            y = tensor_data(s, "y", &n);
            ck_assert_int_eq(n, 2);
            for (i = 0; i < n; i++)
                ck_assert_msg(y[i] == want[k], "x %s%s: y[%d] = %g, not %g",
                              first[k], two ? " and w" : "", (int)i,
                              (double)y[i], (double)want[k]);
            smlp_session_destroy(s);
            smlp_graph_unload(g);
        }
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * Runs x (f32 [1, 2] = {1.5, -2}) or, with `param`, a parameter W
 * (constant 1.5, [1, 2]) through good.view with `attrs`; returns y's
 * data (copied into out, `n` elements of 4 bytes).
 */
static void
run_view(const char *attrs, int param, void *out, int64_t n)
{
    static const float xv[2] = {1.5f, -2.0f};
    smlp_registry_t *reg = tu_fixture_registry();
    struct smlp_error err;
    struct smlp_tensor t;
    smlp_session_t *s;
    smlp_graph_t *g;
    char json[1024], path[512];

    snprintf(json, sizeof(json),
             "{\"name\": \"g\", \"plugins\": [\"good\"], \"tensors\": ["
             "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 2]},"
             " {\"name\": \"W\", \"kind\": \"Parameter\", \"shape\": [1, 2],"
             " \"init\": {\"kind\": \"Constant\", \"a\": 1.5}},"
             " {\"name\": \"y\", \"kind\": \"Output\"}], \"nodes\": ["
             "{\"name\": \"v\", \"op\": \"good.view\", \"inputs\": [%d],"
             " \"outputs\": [2], \"attrs\": [%s]}]}",
             param ? 1 : 0, attrs);
    g = graph_json(json, &err, path, sizeof(path));
    ck_assert_msg(g != NULL, "%s", err.msg);
    s = smlp_session_create(g, reg, NULL, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    memcpy(tensor_data(s, "x", NULL), xv, sizeof(xv));
    tu_run_ok(s);
    ck_assert_int_eq(smlp_session_tensor(s, "y", &t), SMLP_OK);
    ck_assert_int_eq(smlp_tensor_numel(&t), n);
    memcpy(out, t.data, (size_t)n * 4);
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}

/*
 * A view op's output is its input's bytes (no kernel) only when it can
 * be: same dtype, same element count, and an input that is not a
 * parameter or state (session.c).  Otherwise the kernel runs: good.view
 * writes x + 1 there, (int)x + 1 for an i32 output.
 */
START_TEST(test_view_alias_or_kernel)
{
    float f[2];
    int32_t i[2];

    run_view("", 0, f, 2); /* aliased: y is x */
    ck_assert_float_eq(f[0], 1.5f);
    ck_assert_float_eq(f[1], -2.0f);
    run_view("{\"name\": \"dtype\", \"i\": 1}", 0, i, 2);
    ck_assert_int_eq(i[0], 2);
    ck_assert_int_eq(i[1], -1);
    run_view("{\"name\": \"n\", \"i\": 1}", 0, f, 1);
    ck_assert_float_eq(f[0], 2.5f);
    run_view("", 1, f, 2);
    ck_assert_float_eq(f[0], 2.5f);
    ck_assert_float_eq(f[1], 2.5f);
}
END_TEST

START_TEST(test_infer_linear_mismatch_names_node)
{
    expect_bad_session(
        "{\"name\": \"g\", \"plugins\": [\"core\"], \"tensors\": [" T_IN ","
        "{\"name\": \"W\", \"kind\": \"Parameter\", \"shape\": [3, 5]},"
        "{\"name\": \"y\", \"kind\": \"Output\"}], \"nodes\": ["
        "{\"name\": \"fc\", \"op\": \"core.linear\", \"inputs\": [0, 1],"
        " \"outputs\": [2]}]}",
        1, SMLP_ESHAPE, "node 0 'fc' (core.linear): ");
}
END_TEST

START_TEST(test_infer_declared_shape_mismatch)
{
    expect_bad_session(
        "{\"name\": \"g\", \"plugins\": [\"core\"], \"tensors\": [" T_IN ","
        "{\"name\": \"y\", \"kind\": \"Output\", \"shape\": [-1, 7]}],"
        " \"nodes\": [{\"name\": \"r\", \"op\": \"core.relu\","
        " \"inputs\": [0], \"outputs\": [1]}]}",
        2, SMLP_ESHAPE,
        "output 0 'y' is f32 [2,2], but the graph declares f32 [2,7]");
}
END_TEST

/* The declared dtype counts as much as the shape: relu's output is f32,
 * the graph declares i32 (same shape). */
START_TEST(test_infer_declared_dtype_mismatch)
{
    expect_bad_session(
        "{\"name\": \"g\", \"plugins\": [\"core\"], \"tensors\": [" T_IN ","
        "{\"name\": \"y\", \"kind\": \"Output\", \"shape\": [-1, 2],"
        " \"dtype\": \"I32\"}], \"nodes\": [{\"name\": \"r\", \"op\":"
        " \"core.relu\", \"inputs\": [0], \"outputs\": [1]}]}",
        2, SMLP_ESHAPE,
        "node 0 'r' (core.relu): output 0 'y' is f32 [2,2], but the graph "
        "declares i32 [2,2]");
}
END_TEST

START_TEST(test_infer_batch_zero_and_overflow)
{
    expect_bad_session("{\"name\": \"g\", \"plugins\": [\"core\"], "
                       "\"tensors\": [" T_IN "," T_RELU_Y, 0, SMLP_EINVAL,
                       "batch size 0 is out of range");
    expect_bad_session(
        "{\"name\": \"g\", \"plugins\": [\"core\"], \"tensors\": ["
        "{\"name\": \"x\", \"kind\": \"Input\", \"shape\":"
        " [-1, 4294967296, 4294967296]}," T_RELU_Y,
        1, SMLP_ESHAPE, "tensor 'x': shape [1,4294967296,4294967296] is too "
                        "large");
}
END_TEST

/*
 * The ranges of smlp_session_opts (smlp.h), each end: batch 1 to 2^31,
 * threads 0 to 1024, device 0 (cpu) or 1 (cuda).  The ends inside are
 * planned only (a batch of 2^31 would need 16 GiB).
 */
START_TEST(test_session_opts_ranges)
{
    smlp_registry_t *reg = tu_registry();
    struct smlp_session_opts o;
    struct smlp_error err;
    smlp_session_t *s;
    smlp_graph_t *g;
    char path[512];

    g = graph_json("{\"name\": \"g\", \"plugins\": [\"core\"], "
                   "\"tensors\": [" T_IN "," T_RELU_Y,
                   &err, path, sizeof(path));
    ck_assert_msg(g != NULL, "%s", err.msg);
    smlp_session_opts_init(&o);
    o.plan_only = 1;
    o.batch = INT64_C(1) << 31;
    o.threads = 1024;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    smlp_session_destroy(s);

    o.batch = (INT64_C(1) << 31) + 1;
    ck_assert_ptr_null(smlp_session_create(g, reg, &o, &err));
    ck_assert_int_eq(err.status, SMLP_EINVAL);
    tu_assert_contains(err.msg, "batch size 2147483649 is out of range (1 "
                                "to 2^31)");
    o.batch = 1;
    o.threads = 1025;
    ck_assert_ptr_null(smlp_session_create(g, reg, &o, &err));
    ck_assert_int_eq(err.status, SMLP_EINVAL);
    tu_assert_contains(err.msg, "thread count 1025 is out of range");
    o.threads = -1;
    ck_assert_ptr_null(smlp_session_create(g, reg, &o, &err));
    ck_assert_int_eq(err.status, SMLP_EINVAL);
    tu_assert_contains(err.msg, "thread count -1 is out of range");
    o.threads = 1;
    o.device = 2;
    ck_assert_ptr_null(smlp_session_create(g, reg, &o, &err));
    ck_assert_int_eq(err.status, SMLP_EINVAL);
    tu_assert_contains(err.msg, "device 2 is unknown (0 = cpu, 1 = cuda)");
    o.device = -1;
    ck_assert_ptr_null(smlp_session_create(g, reg, &o, &err));
    ck_assert_int_eq(err.status, SMLP_EINVAL);
    tu_assert_contains(err.msg, "device -1 is unknown");
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

START_TEST(test_infer_arity)
{
    expect_bad_session(
        "{\"name\": \"g\", \"plugins\": [\"core\"], \"tensors\": [" T_IN ","
        "{\"name\": \"y\", \"kind\": \"Output\"}], \"nodes\": [{\"name\":"
        " \"a\", \"op\": \"core.add\", \"inputs\": [0], \"outputs\": [1]}]}",
        1, SMLP_EBADGRAPH,
        "node 0 'a' (core.add): has 1 inputs and 1 outputs, the op takes 2 "
        "inputs");
}
END_TEST

/*
 * Arity both ways: too many inputs (core.relu takes exactly 1; good.pick
 * 1 to 2) and too few outputs (core.relu writes 1) are refused.
 */
START_TEST(test_infer_arity_other_ends)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct smlp_error err;
    smlp_graph_t *g;
    char path[512];

    expect_bad_session(
        "{\"name\": \"g\", \"plugins\": [\"core\"], \"tensors\": [" T_IN ","
        "{\"name\": \"y\", \"kind\": \"Output\"}], \"nodes\": [{\"name\":"
        " \"r\", \"op\": \"core.relu\", \"inputs\": [0, 0], \"outputs\":"
        " [1]}]}",
        1, SMLP_EBADGRAPH,
        "g.fbs: node 0 'r' (core.relu): has 2 inputs and 1 outputs, the op "
        "takes 1 inputs and 1 outputs");
    expect_bad_session(
        "{\"name\": \"g\", \"plugins\": [\"core\"], \"tensors\": [" T_IN ","
        "{\"name\": \"y\", \"kind\": \"Output\"}], \"nodes\": [{\"name\":"
        " \"r\", \"op\": \"core.relu\", \"inputs\": [0], \"outputs\": [1]},"
        " {\"name\": \"q\", \"op\": \"core.relu\", \"inputs\": [0],"
        " \"outputs\": []}]}",
        1, SMLP_EBADGRAPH,
        "g.fbs: node 1 'q' (core.relu): has 1 inputs and 0 outputs, the op "
        "takes 1 inputs and 1 outputs");
    g = graph_json("{\"name\": \"g\", \"plugins\": [\"good\"], \"tensors\": ["
                   T_IN ", {\"name\": \"y\", \"kind\": \"Output\"}],"
                   " \"nodes\": [{\"name\": \"p\", \"op\": \"good.pick\","
                   " \"inputs\": [0, 0, 0], \"outputs\": [1]}]}",
                   &err, path, sizeof(path));
    ck_assert_msg(g != NULL, "%s", err.msg);
    ck_assert_ptr_null(smlp_session_create(g, reg, NULL, &err));
    ck_assert_int_eq(err.status, SMLP_EBADGRAPH);
    tu_assert_contains(err.msg, "g.fbs: node 0 'p' (good.pick): has 3 "
                                "inputs and 1 outputs, the op takes 1 to 2 "
                                "inputs and 1 outputs");
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/* A misspelt attribute is an error, not a run with the default. */
START_TEST(test_infer_undeclared_attr)
{
    expect_bad_session(
        "{\"name\": \"g\", \"plugins\": [\"core\"], \"tensors\": [" T_IN ","
        "{\"name\": \"W\", \"kind\": \"Parameter\", \"shape\": [3, 2]},"
        "{\"name\": \"y\", \"kind\": \"Output\"}], \"nodes\": ["
        "{\"name\": \"fc\", \"op\": \"core.linear\", \"inputs\": [0, 1],"
        " \"outputs\": [2], \"attrs\": [{\"name\": \"axsi\", \"i\": -1}]}]}",
        1, SMLP_EBADGRAPH,
        "g.fbs: node 0 'fc' (core.linear): attribute 'axsi' is not one that "
        "the op declares (it declares axis)");
    expect_bad_session(
        "{\"name\": \"g\", \"plugins\": [\"core\"], \"tensors\": [" T_IN ","
        "{\"name\": \"y\", \"kind\": \"Output\"}], \"nodes\": [{\"name\":"
        " \"r\", \"op\": \"core.relu\", \"inputs\": [0], \"outputs\": [1],"
        " \"attrs\": [{\"name\": \"slope\", \"type\": \"Float\","
        " \"f\": 0.1}]}]}",
        1, SMLP_EBADGRAPH,
        "node 0 'r' (core.relu): attribute 'slope' is not one that the op "
        "declares (it declares none)");
}
END_TEST

/* An input with a fixed first dimension fixes the batch: a session with
 * another batch blames the input, not a node downstream. */
/*
 * An attribute name matches a declared one whole: 'axis2' (which starts
 * with core.linear's 'axis') is refused, and so is a misspelt name after
 * a good one (the second attribute is checked too).
 */
START_TEST(test_infer_undeclared_attr_whole_name)
{
    expect_bad_session(
        "{\"name\": \"g\", \"plugins\": [\"core\"], \"tensors\": [" T_IN ","
        "{\"name\": \"W\", \"kind\": \"Parameter\", \"shape\": [3, 2]},"
        "{\"name\": \"y\", \"kind\": \"Output\"}], \"nodes\": ["
        "{\"name\": \"fc\", \"op\": \"core.linear\", \"inputs\": [0, 1],"
        " \"outputs\": [2], \"attrs\": [{\"name\": \"axis2\", \"i\": -1}]}]}",
        1, SMLP_EBADGRAPH,
        "g.fbs: node 0 'fc' (core.linear): attribute 'axis2' is not one "
        "that the op declares (it declares axis)");
    expect_bad_session(
        "{\"name\": \"g\", \"plugins\": [\"core\"], \"tensors\": [" T_IN ","
        "{\"name\": \"W\", \"kind\": \"Parameter\", \"shape\": [3, 2]},"
        "{\"name\": \"y\", \"kind\": \"Output\"}], \"nodes\": ["
        "{\"name\": \"fc\", \"op\": \"core.linear\", \"inputs\": [0, 1],"
        " \"outputs\": [2], \"attrs\": [{\"name\": \"axis\", \"i\": -1},"
        " {\"name\": \"bias\", \"i\": 0}]}]}",
        1, SMLP_EBADGRAPH,
        "g.fbs: node 0 'fc' (core.linear): attribute 'bias' is not one "
        "that the op declares (it declares axis)");
}
END_TEST

START_TEST(test_infer_fixed_batch_input)
{
    static const char *json =
        "{\"name\": \"g\", \"plugins\": [\"core\"], \"tensors\": ["
        "{\"name\": \"image\", \"kind\": \"Input\", \"shape\": [2, 3]},"
        "{\"name\": \"h\"},"
        "{\"name\": \"y\", \"kind\": \"Output\", \"shape\": [-1, 3]}],"
        "\"nodes\": [{\"name\": \"r\", \"op\": \"core.relu\","
        " \"inputs\": [0], \"outputs\": [1]},"
        "{\"name\": \"s\", \"op\": \"core.relu\", \"inputs\": [1],"
        " \"outputs\": [2]}]}";
    smlp_registry_t *reg = tu_registry();
    struct smlp_session_opts o;
    struct smlp_error err;
    smlp_session_t *s;
    smlp_graph_t *g;
    char path[512];

    expect_bad_session(json, 5, SMLP_ESHAPE,
                       "g.fbs: input 'image' has a fixed batch of 2 "
                       "(declared [2,3]); the session asks for batch 5");
    g = graph_json(json, &err, path, sizeof(path));
    ck_assert_msg(g != NULL, "%s", err.msg);
    smlp_session_opts_init(&o);
    o.batch = 2;
    o.plan_only = 1;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * Only a dimension declared -1 can blame an input's fixed batch: y is
 * declared [-1, 3] and comes out [2, 5] at batch 2; input 'k' [5] would
 * fix a batch of 5, but dimension 1 is no batch, so the node is at
 * fault.
 */
START_TEST(test_infer_fixed_batch_only_in_batch_dims)
{
    expect_shape_fail_with(T_ATTR("d1", 5), ", \"shape\": [-1, 3]",
                           ", {\"name\": \"k\", \"kind\": \"Input\","
                           " \"shape\": [5]}",
                           SMLP_ESHAPE,
                           "node 0 's' (good.shape): output 0 'y' is f32 "
                           "[2,5], but the graph declares f32 [2,3]");
}
END_TEST

/* A node that no CPU kernel supports (good.shape's one kernel takes f32,
 * x is i32) is SMLP_ENOKERNEL, naming the node, the op and the plugin. */
START_TEST(test_infer_no_cpu_kernel)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct smlp_error err;
    smlp_graph_t *g;
    char path[512];

    g = graph_json("{\"name\": \"g\", \"plugins\": [\"good\"], \"tensors\": ["
                   "{\"name\": \"x\", \"kind\": \"Input\", \"dtype\": \"I32\","
                   " \"shape\": [-1, 2]}, {\"name\": \"y\", \"kind\":"
                   " \"Output\"}], \"nodes\": [{\"name\": \"s\", \"op\":"
                   " \"good.shape\", \"inputs\": [0], \"outputs\": [1]}]}",
                   &err, path, sizeof(path));
    ck_assert_msg(g != NULL, "%s", err.msg);
    ck_assert_ptr_null(smlp_session_create(g, reg, NULL, &err));
    ck_assert_msg(err.status == SMLP_ENOKERNEL, "got %s: %s",
                  smlp_status_name(err.status), err.msg);
    tu_assert_contains(err.msg, path);
    tu_assert_contains(err.msg, "node 0 's' (good.shape): no CPU kernel of "
                                "plugin 'good' supports this node");
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

static Suite *
session_infer_suite(void)
{
    Suite *s = suite_create("session_infer");
    TCase *tc;

    tc = tcase_create("infer");
    tcase_add_test(tc, test_infer_linear_mismatch_names_node);
    tcase_add_test(tc, test_infer_output_checked);
    tcase_add_test(tc, test_kernel_choice);
    tcase_add_test(tc, test_view_alias_or_kernel);
    tcase_add_test(tc, test_infer_no_cpu_kernel);
    tcase_add_test(tc, test_infer_declared_shape_mismatch);
    tcase_add_test(tc, test_infer_declared_dtype_mismatch);
    tcase_add_test(tc, test_infer_batch_zero_and_overflow);
    tcase_add_test(tc, test_session_opts_ranges);
    tcase_add_test(tc, test_infer_arity);
    tcase_add_test(tc, test_infer_arity_other_ends);
    tcase_add_test(tc, test_infer_undeclared_attr);
    tcase_add_test(tc, test_infer_undeclared_attr_whole_name);
    tcase_add_test(tc, test_infer_fixed_batch_input);
    tcase_add_test(tc, test_infer_fixed_batch_only_in_batch_dims);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(session_infer_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
