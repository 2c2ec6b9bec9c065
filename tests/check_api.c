/*
 * check_api.c - the public API's contract at its edges: every SMLP_API
 * function of smlp.h given NULL pointers (SMLP_EINVAL, NULL, 0 or a no-op,
 * never a crash, and no internal function names in messages), and the
 * lifetimes of graphs and registries that sessions still use (unloading
 * or destroying them first is defined: the last session frees them; the
 * sanitizer build checks there is no use after free and no leak).
 */
#include <pthread.h>

#include "testutil.h"

/* y = W x + b, loss = softmax cross-entropy(y, labels); labels are set
 * to valid classes by training_session. */
static const char *graph_ce =
    "{\"name\": \"ce\", \"plugins\": [\"core\"], \"tensors\": ["
    "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 4]},"
    "{\"name\": \"labels\", \"dtype\": \"I32\", \"kind\": \"Input\","
    " \"shape\": [-1]},"
    "{\"name\": \"W\", \"kind\": \"Parameter\", \"shape\": [3, 4],"
    " \"init\": {\"kind\": \"Uniform\", \"a\": -0.5, \"b\": 0.5,"
    " \"seed\": 3}},"
    "{\"name\": \"b\", \"kind\": \"Parameter\", \"shape\": [3]},"
    "{\"name\": \"y\", \"kind\": \"Output\", \"shape\": [-1, 3]},"
    "{\"name\": \"loss\", \"kind\": \"Output\"}],"
    "\"metadata\": [{\"key\": \"k\", \"value\": \"v\"}],"
    "\"nodes\": ["
    "{\"name\": \"fc\", \"op\": \"core.linear\", \"inputs\": [0, 2, 3],"
    " \"outputs\": [4]},"
    "{\"name\": \"ce\", \"op\": \"core.softmax_cross_entropy\","
    " \"inputs\": [4, 1], \"outputs\": [5]}]}";

static smlp_graph_t *
load_graph(void)
{
    static char path[512];
    struct smlp_error err;
    smlp_graph_t *g;

    if (path[0] == '\0')
        tu_graph_from_json(tu_tmpdir(), "ce", graph_ce, path, sizeof(path));
    g = smlp_graph_load(path, &err);
    ck_assert_msg(g != NULL, "%s", err.msg);
    return g;
}

static smlp_session_t *
training_session(const smlp_graph_t *g, smlp_registry_t *reg)
{
    static const int32_t labels[2] = {2, 0};
    struct smlp_session_opts o;
    struct smlp_error err;
    struct smlp_tensor t;
    smlp_session_t *s;

    smlp_session_opts_init(&o);
    o.batch = 2;
    o.threads = 1;
    o.training = 1;
    o.loss = "loss";
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    ck_assert_int_eq(smlp_session_tensor(s, "labels", &t), SMLP_OK);
    memcpy(t.data, labels, sizeof(labels));
    return s;
}

/* The session's message after a call refused for a NULL argument: says
 * NULL, and names no internal (smlp__) function. */
static void
expect_null_msg(const smlp_session_t *s, const char *needle)
{
    const char *msg = smlp_session_errmsg(s);

    tu_assert_contains(msg, needle);
    tu_assert_contains(msg, "(NULL)");
    ck_assert_msg(strstr(msg, "smlp__") == NULL, "internal name in '%s'",
                  msg);
}

/* Status words (runtime/util.c): the code's name and text from
 * SMLP_STATUS_MAP (ops/smlp_plugin.h), SMLP_DECLINED (positive, not in the
 * map) its own words, any other code "unknown". */
START_TEST(test_api_status_words)
{
    ck_assert_str_eq(smlp_strerror(SMLP_OK), "success");
    ck_assert_str_eq(smlp_status_name(SMLP_OK), "OK");
    ck_assert_str_eq(smlp_strerror(SMLP_EINVAL), "invalid argument");
    ck_assert_str_eq(smlp_status_name(SMLP_EINVAL), "EINVAL");
    ck_assert_str_eq(smlp_strerror(SMLP_EBADFILE), "malformed file");
    ck_assert_str_eq(smlp_status_name(SMLP_EBADFILE), "EBADFILE");
    ck_assert_str_eq(smlp_strerror(SMLP_DECLINED), "declined");
    ck_assert_str_eq(smlp_status_name(SMLP_DECLINED), "DECLINED");
    ck_assert_str_eq(smlp_strerror(2), "unknown status");
    ck_assert_str_eq(smlp_status_name(2), "UNKNOWN");
    ck_assert_str_eq(smlp_strerror(-1000), "unknown status");
    ck_assert_str_eq(smlp_status_name(-1000), "UNKNOWN");
}
END_TEST

START_TEST(test_api_graph_nulls)
{
    struct smlp_error err;
    smlp_graph_t *g = load_graph();
    int64_t i64;
    double f64;

    ck_assert_ptr_null(smlp_graph_load(NULL, &err));
    ck_assert_int_eq(err.status, SMLP_EINVAL);
    tu_assert_contains(err.msg, "no graph path (NULL)");
    ck_assert_ptr_null(smlp_graph_load(NULL, NULL));
    ck_assert_ptr_null(smlp_graph_load_buffer(NULL, 0, NULL, &err));
    ck_assert_int_eq(err.status, SMLP_EINVAL);
    tu_assert_contains(err.msg, "no graph buffer (NULL)");
    ck_assert_ptr_null(smlp_graph_load_buffer(NULL, 16, "buf", NULL));
    smlp_graph_unload(NULL);

    ck_assert_ptr_null(smlp_graph_name(NULL));
    ck_assert_ptr_null(smlp_graph_source(NULL));
    ck_assert_int_eq(smlp_graph_node_count(NULL), 0);
    ck_assert_int_eq(smlp_graph_tensor_count(NULL), 0);
    ck_assert_int_eq(smlp_graph_plugin_count(NULL), 0);
    ck_assert_ptr_null(smlp_graph_plugin_name(NULL, 0));
    ck_assert_int_eq(smlp_graph_node_attr_int(NULL, "fc", "a", &i64),
                     SMLP_EINVAL);
    ck_assert_int_eq(smlp_graph_node_attr_int(g, NULL, "a", &i64),
                     SMLP_EINVAL);
    ck_assert_int_eq(smlp_graph_node_attr_int(g, "fc", NULL, &i64),
                     SMLP_EINVAL);
    ck_assert_int_eq(smlp_graph_node_attr_int(g, "fc", "a", NULL),
                     SMLP_EINVAL);
    ck_assert_int_eq(smlp_graph_node_attr_float(NULL, "fc", "a", &f64),
                     SMLP_EINVAL);
    ck_assert_int_eq(smlp_graph_node_attr_float(g, NULL, "a", &f64),
                     SMLP_EINVAL);
    ck_assert_int_eq(smlp_graph_node_attr_float(g, "fc", NULL, &f64),
                     SMLP_EINVAL);
    ck_assert_int_eq(smlp_graph_node_attr_float(g, "fc", "a", NULL),
                     SMLP_EINVAL);
    ck_assert_ptr_null(smlp_graph_meta(NULL, "k"));
    ck_assert_ptr_null(smlp_graph_meta(g, NULL));
    ck_assert_str_eq(smlp_graph_meta(g, "k"), "v");
    smlp_graph_unload(g);
}
END_TEST

/*
 * The graph accessors on a graph that has what they look for (smlp.h):
 * plugin i for 0 <= i < the count, else NULL; an attribute by node and
 * name, an Int through _int and through _float (as a double), a Float
 * through _float only (_int: SMLP_ENOENT), a missing one SMLP_ENOENT.
 * Node "b" comes second, so the lookup goes past the first node.
 */
START_TEST(test_api_graph_accessors)
{
    static const char *json =
        "{\"name\": \"acc\", \"plugins\": [\"core\"], \"tensors\": ["
        "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 2]},"
        "{\"name\": \"h\"}, {\"name\": \"y\", \"kind\": \"Output\"}],"
        "\"metadata\": [{\"key\": \"k1\", \"value\": \"v1\"},"
        " {\"key\": \"k2\", \"value\": \"v2\"}],"
        "\"nodes\": ["
        "{\"name\": \"a\", \"op\": \"core.relu\", \"inputs\": [0],"
        " \"outputs\": [1], \"attrs\": [{\"name\": \"n\", \"i\": 3},"
        " {\"name\": \"f\", \"type\": \"Float\", \"f\": 0.5}]},"
        "{\"name\": \"b\", \"op\": \"core.relu\", \"inputs\": [1],"
        " \"outputs\": [2], \"attrs\": [{\"name\": \"n\", \"i\": -9}]}]}";
    smlp_graph_t *g = tu_graph_json(json);
    int64_t i64 = 0;
    double f64 = 0;

    ck_assert_str_eq(smlp_graph_name(g), "acc");
    ck_assert_int_eq(smlp_graph_node_count(g), 2);
    ck_assert_int_eq(smlp_graph_tensor_count(g), 3);
    ck_assert_int_eq(smlp_graph_plugin_count(g), 1);
    ck_assert_str_eq(smlp_graph_plugin_name(g, 0), "core");
    ck_assert_ptr_null(smlp_graph_plugin_name(g, 1));
    ck_assert_ptr_null(smlp_graph_plugin_name(g, -1));
    ck_assert_str_eq(smlp_graph_meta(g, "k1"), "v1");
    ck_assert_str_eq(smlp_graph_meta(g, "k2"), "v2");
    ck_assert_ptr_null(smlp_graph_meta(g, "v1"));

    ck_assert_int_eq(smlp_graph_node_attr_int(g, "a", "n", &i64), SMLP_OK);
    ck_assert_int_eq(i64, 3);
    ck_assert_int_eq(smlp_graph_node_attr_int(g, "b", "n", &i64), SMLP_OK);
    ck_assert_int_eq(i64, -9);
    ck_assert_int_eq(smlp_graph_node_attr_int(g, "a", "f", &i64),
                     SMLP_ENOENT);
    ck_assert_int_eq(smlp_graph_node_attr_int(g, "a", "m", &i64),
                     SMLP_ENOENT);
    ck_assert_int_eq(smlp_graph_node_attr_int(g, "c", "n", &i64),
                     SMLP_ENOENT);
    ck_assert_int_eq(smlp_graph_node_attr_float(g, "a", "f", &f64),
                     SMLP_OK);
    ck_assert_double_eq(f64, 0.5);
    ck_assert_int_eq(smlp_graph_node_attr_float(g, "a", "n", &f64),
                     SMLP_OK);
    ck_assert_double_eq(f64, 3.0);
    ck_assert_int_eq(smlp_graph_node_attr_float(g, "b", "f", &f64),
                     SMLP_ENOENT);
    smlp_graph_unload(g);
}
END_TEST

/*
 * The session accessors of smlp.h on a graph worked out by hand:
 *   x (input [-1, 2], constant 0.5), W1 [3, 2], b1 [3], W2 [3, 2]
 *   (parameters), st [2] (state), y, z (activations), out (output);
 *   fc1 = linear(x, W1, b1) -> y, fc2 = linear(x, W2, absent) -> z,
 *   sum = add(y, z) -> out; run order fc1, fc2, sum.
 * Kinds count and name in graph order; activations have no data; names,
 * nodes and inputs out of range (or absent) give NULL or SMLP_EINVAL;
 * device stats write no field past the size given.
 */
START_TEST(test_api_session_accessors)
{
    static const char *json =
        "{\"name\": \"acc\", \"plugins\": [\"core\"], \"tensors\": ["
        "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 2],"
        " \"init\": {\"kind\": \"Constant\", \"a\": 0.5}},"
        "{\"name\": \"W1\", \"kind\": \"Parameter\", \"shape\": [3, 2]},"
        "{\"name\": \"b1\", \"kind\": \"Parameter\", \"shape\": [3]},"
        "{\"name\": \"W2\", \"kind\": \"Parameter\", \"shape\": [3, 2]},"
        "{\"name\": \"y\"}, {\"name\": \"z\"},"
        "{\"name\": \"out\", \"kind\": \"Output\", \"shape\": [-1, 3]},"
        "{\"name\": \"st\", \"kind\": \"State\", \"shape\": [2]}],"
        "\"nodes\": ["
        "{\"name\": \"fc1\", \"op\": \"core.linear\", \"inputs\": [0, 1, 2],"
        " \"outputs\": [4]},"
        "{\"name\": \"fc2\", \"op\": \"core.linear\", \"inputs\": [0, 3, -1],"
        " \"outputs\": [5]},"
        "{\"name\": \"sum\", \"op\": \"core.add\", \"inputs\": [4, 5],"
        " \"outputs\": [6]}]}";
    static const int counts[5] = {2, 3, 1, 1, 1};
    smlp_registry_t *reg = tu_registry();
    smlp_graph_t *g = tu_graph_json(json);
    struct smlp_session_opts o;
    struct smlp_session_stats st;
    struct smlp_device_stats ds;
    struct smlp_node_profile p;
    struct smlp_error err;
    struct smlp_tensor t;
    smlp_session_t *s;
    int k;

    smlp_session_opts_init(&o);
    o.threads = 1;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    for (k = 0; k < 5; k++)
        ck_assert_int_eq(smlp_session_tensor_count(s, k), counts[k]);
    ck_assert_str_eq(smlp_session_tensor_name(s, 0, 1), "z");
    ck_assert_str_eq(smlp_session_tensor_name(s, 1, 0), "W1");
    ck_assert_str_eq(smlp_session_tensor_name(s, 1, 2), "W2");
    ck_assert_ptr_null(smlp_session_tensor_name(s, 1, 3));
    ck_assert_str_eq(smlp_session_tensor_name(s, 2, 0), "st");
    ck_assert_str_eq(smlp_session_tensor_name(s, 4, 0), "out");

    ck_assert_int_eq(smlp_session_tensor(s, "nosuch", &t), SMLP_ENOENT);
    tu_assert_contains(smlp_session_errmsg(s), "no tensor named 'nosuch'");
    ck_assert_int_eq(smlp_session_tensor(s, "y", &t), SMLP_OK);
    ck_assert_ptr_null(t.data);
    ck_assert_int_eq(smlp_session_tensor(s, "x", &t), SMLP_OK);
    ck_assert_ptr_nonnull(t.data);
    ck_assert_float_eq(((const float *)t.data)[0], 0.5f);
    ck_assert_float_eq(((const float *)t.data)[1], 0.5f);

    ck_assert_str_eq(smlp_session_node_input(s, 0, 0), "x");
    ck_assert_str_eq(smlp_session_node_input(s, 1, 1), "W2");
    ck_assert_ptr_null(smlp_session_node_input(s, 1, 2)); /* absent */
    ck_assert_ptr_null(smlp_session_node_input(s, 1, 3));
    ck_assert_str_eq(smlp_session_node_input(s, 2, 1), "z");
    ck_assert_ptr_null(smlp_session_node_input(s, 2, 2));
    ck_assert_str_eq(smlp_session_node_output(s, 2, 0), "out");
    ck_assert_ptr_null(smlp_session_node_output(s, 0, 1));
    ck_assert_ptr_null(smlp_session_node_output(s, 3, 0));
    ck_assert_ptr_null(smlp_session_node_output(s, -1, 0));

    tu_run_ok(s);
    ck_assert_int_eq(smlp_session_node_profile(s, 3, &p), SMLP_EINVAL);
    ck_assert_int_eq(smlp_session_node_profile(s, -1, &p), SMLP_EINVAL);
    for (k = 0; k < 3; k++) {
        ck_assert_int_eq(smlp_session_node_profile(s, k, &p), SMLP_OK);
        ck_assert_msg(p.start_us >= 0 && p.end_us >= p.start_us &&
                          p.end_us < 60e6,
                      "node %d: %g to %g us", k, p.start_us, p.end_us);
    }
    ck_assert_str_eq(p.name, "sum");
    ck_assert_str_eq(p.op, "core.add");
    ck_assert_int_eq(smlp_session_get_stats(s, &st), SMLP_OK);
    ck_assert(st.last_run_ms > 0);

    memset(&ds, 0xab, sizeof(ds));
    ds.size = 7;
    ck_assert_int_eq(smlp_session_get_device_stats(s, &ds), SMLP_EINVAL);
    ds.size = 8; /* size and device only */
    ck_assert_int_eq(smlp_session_get_device_stats(s, &ds), SMLP_OK);
    ck_assert_int_eq(ds.device, SMLP_DEVICE_CPU);
    ck_assert_uint_eq((uint32_t)ds.device_nodes, 0xababababu);
    ds.size = sizeof(ds);
    ck_assert_int_eq(smlp_session_get_device_stats(s, &ds), SMLP_OK);
    ck_assert_int_eq(ds.device_nodes, 0);
    ck_assert_uint_eq(ds.arena_bytes, 0);
    smlp_session_destroy(s);

    o.plan_only = 1;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    ck_assert_int_eq(smlp_session_fill_inputs(s, 1), SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(s), "planned only");
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

START_TEST(test_api_registry_nulls)
{
    smlp_registry_t *reg = tu_registry();
    struct smlp_error err;

    ck_assert_int_eq(smlp_registry_load(NULL, "core", &err), SMLP_EINVAL);
    tu_assert_contains(err.msg, "no registry (NULL)");
    ck_assert_int_eq(smlp_registry_load(reg, NULL, &err), SMLP_EINVAL);
    tu_assert_contains(err.msg, "no plugin name (NULL)");
    ck_assert_int_eq(smlp_registry_load(reg, NULL, NULL), SMLP_EINVAL);
    ck_assert_ptr_null(smlp_registry_search_path(NULL));
    ck_assert_int_eq(smlp_registry_op_count(NULL), 0);
    ck_assert_ptr_null(smlp_registry_op_name(NULL, 0));
    ck_assert_ptr_null(smlp_registry_op_def(NULL, "core.add"));
    ck_assert_ptr_null(smlp_registry_op_def(reg, NULL));
    smlp_registry_destroy(NULL);
    smlp_registry_destroy(reg);
}
END_TEST

START_TEST(test_api_session_nulls)
{
    smlp_registry_t *reg = tu_registry();
    smlp_graph_t *g = load_graph();
    smlp_session_t *s = training_session(g, reg);
    struct smlp_session_stats st;
    struct smlp_device_stats ds;
    struct smlp_node_profile p;
    struct smlp_error err;
    struct smlp_tensor t;
    const char *path = "/nonexistent/x";

    smlp_session_opts_init(NULL);
    ck_assert_ptr_null(smlp_session_create(NULL, reg, NULL, &err));
    ck_assert_int_eq(err.status, SMLP_EINVAL);
    ck_assert_ptr_null(smlp_session_create(g, NULL, NULL, &err));
    ck_assert_int_eq(err.status, SMLP_EINVAL);
    smlp_session_destroy(NULL);
    ck_assert_ptr_nonnull(smlp_session_errmsg(NULL));
    ck_assert_int_eq(smlp_session_run(NULL), SMLP_EINVAL);

    ck_assert_int_eq(smlp_session_tensor(NULL, "x", &t), SMLP_EINVAL);
    ck_assert_int_eq(smlp_session_tensor(s, NULL, &t), SMLP_EINVAL);
    expect_null_msg(s, "smlp_session_tensor: no name");
    ck_assert_int_eq(smlp_session_tensor(s, "x", NULL), SMLP_EINVAL);
    expect_null_msg(s, "smlp_session_tensor: no output tensor");
    ck_assert_int_eq(smlp_session_tensor_count(NULL, 1), 0);
    ck_assert_ptr_null(smlp_session_tensor_name(NULL, 1, 0));

    ck_assert_int_eq(smlp_session_fill_inputs(NULL, 0), SMLP_EINVAL);
    ck_assert_int_eq(smlp_session_read_inputs(NULL, path), SMLP_EINVAL);
    ck_assert_int_eq(smlp_session_read_inputs(s, NULL), SMLP_EINVAL);
    expect_null_msg(s, "smlp_session_read_inputs: no path");
    ck_assert_int_eq(smlp_session_load_weights(NULL, path), SMLP_EINVAL);
    ck_assert_int_eq(smlp_session_load_weights(s, NULL), SMLP_EINVAL);
    expect_null_msg(s, "smlp_session_load_weights: no path");
    ck_assert_int_eq(smlp_session_save_weights(NULL, path), SMLP_EINVAL);
    ck_assert_int_eq(smlp_session_save_weights(s, NULL), SMLP_EINVAL);
    expect_null_msg(s, "smlp_session_save_weights: no path");
    ck_assert_int_eq(smlp_session_write_outputs(NULL, path), SMLP_EINVAL);
    ck_assert_int_eq(smlp_session_write_outputs(s, NULL), SMLP_EINVAL);
    expect_null_msg(s, "smlp_session_write_outputs: no path");

    ck_assert_int_eq(smlp_session_get_stats(NULL, &st), SMLP_EINVAL);
    ck_assert_int_eq(smlp_session_get_stats(s, NULL), SMLP_EINVAL);
    ds.size = sizeof(ds);
    ck_assert_int_eq(smlp_session_get_device_stats(NULL, &ds), SMLP_EINVAL);
    ck_assert_int_eq(smlp_session_get_device_stats(s, NULL), SMLP_EINVAL);
    ck_assert_int_eq(smlp_session_node_profile(NULL, 0, &p), SMLP_EINVAL);
    ck_assert_int_eq(smlp_session_node_profile(s, 0, NULL), SMLP_EINVAL);
    ck_assert_ptr_null(smlp_session_node_output(NULL, 0, 0));
    ck_assert_ptr_null(smlp_session_node_input(NULL, 0, 0));
    ck_assert_int_eq(smlp_session_write_trace(NULL, path), SMLP_EINVAL);
    ck_assert_int_eq(smlp_session_write_trace(s, NULL), SMLP_EINVAL);
    expect_null_msg(s, "smlp_session_write_trace: no path");

    ck_assert_int_eq(smlp_session_backward(NULL), SMLP_EINVAL);
    ck_assert_int_eq(smlp_session_grad(NULL, "W", &t), SMLP_EINVAL);
    ck_assert_int_eq(smlp_session_grad(s, NULL, &t), SMLP_EINVAL);
    expect_null_msg(s, "smlp_session_grad: no name");
    ck_assert_int_eq(smlp_session_grad(s, "W", NULL), SMLP_EINVAL);
    expect_null_msg(s, "smlp_session_grad: no output tensor");

    /* The session still works after all that. */
    ck_assert_int_eq(smlp_session_run(s), SMLP_OK);
    ck_assert_int_eq(smlp_session_backward(s), SMLP_OK);
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * smlp.h: each smlp_session_backward needs a successful smlp_session_run
 * of its own before it.  A run that fails (label 7 of 3 classes) after
 * a good one leaves nothing to differentiate: the backward is refused,
 * not run on the earlier forward.  A good run makes it work again.
 */
START_TEST(test_api_backward_after_failed_run)
{
    smlp_registry_t *reg = tu_registry();
    smlp_graph_t *g = load_graph();
    smlp_session_t *s = training_session(g, reg);
    struct smlp_tensor t;

    tu_run_ok(s);
    ck_assert_int_eq(smlp_session_tensor(s, "labels", &t), SMLP_OK);
    ((int32_t *)t.data)[0] = 7;
    ck_assert_int_ne(smlp_session_run(s), SMLP_OK);
    ck_assert_int_eq(smlp_session_backward(s), SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(s), "no forward run to "
                                               "differentiate");
    ((int32_t *)t.data)[0] = 2;
    tu_run_ok(s);
    ck_assert_msg(smlp_session_backward(s) == SMLP_OK, "%s",
                  smlp_session_errmsg(s));
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

START_TEST(test_api_optim_checkpoint_nulls)
{
    smlp_registry_t *reg = tu_registry();
    smlp_graph_t *g = load_graph();
    smlp_session_t *s = training_session(g, reg);
    struct smlp_error err;
    const char *keys[1] = {"a"}, *path = "/nonexistent/x";

    smlp_optim_opts_init(NULL);
    ck_assert_ptr_null(smlp_optim_create(NULL, NULL, &err));
    ck_assert_int_eq(err.status, SMLP_EINVAL);
    smlp_optim_destroy(NULL);
    ck_assert_int_eq(smlp_optim_step(NULL, 0.1, NULL), SMLP_EINVAL);
    ck_assert_int_eq(smlp_optim_steps(NULL), 0);

    ck_assert_int_eq(smlp_checkpoint_save(NULL, NULL, path, NULL, NULL, 0),
                     SMLP_EINVAL);
    ck_assert_int_eq(smlp_checkpoint_save(s, NULL, NULL, NULL, NULL, 0),
                     SMLP_EINVAL);
    expect_null_msg(s, "smlp_checkpoint_save: no path");
    ck_assert_int_eq(smlp_checkpoint_save(s, NULL, path, keys, NULL, 1),
                     SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(s), "NULL keys or values");
    ck_assert_int_eq(smlp_checkpoint_load(NULL, NULL, path), SMLP_EINVAL);
    ck_assert_int_eq(smlp_checkpoint_load(s, NULL, NULL), SMLP_EINVAL);
    expect_null_msg(s, "smlp_checkpoint_load: no path");
    ck_assert_ptr_null(smlp_checkpoint_meta(NULL, "smlp.step"));
    ck_assert_ptr_null(smlp_checkpoint_meta(s, NULL));
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/* ---- lifetimes ----------------------------------------------------------- */

/*
 * The registry and the graph released before the session: the session
 * keeps both (its plugins stay loaded, its names valid) and frees them
 * when it goes.  Without the counts the run after smlp_registry_destroy
 * called into unloaded plugins.
 */
START_TEST(test_api_session_outlives_registry_and_graph)
{
    smlp_registry_t *reg = tu_registry();
    smlp_graph_t *g = load_graph();
    smlp_session_t *s = training_session(g, reg);
    struct smlp_node_profile p;
    struct smlp_tensor t;
    float y[6];

    ck_assert_int_eq(smlp_session_run(s), SMLP_OK);
    ck_assert_int_eq(smlp_session_tensor(s, "y", &t), SMLP_OK);
    memcpy(y, t.data, sizeof(y));
    smlp_registry_destroy(reg);
    ck_assert_int_eq(smlp_session_run(s), SMLP_OK);
    ck_assert_int_eq(smlp_session_backward(s), SMLP_OK);
    smlp_graph_unload(g);
    ck_assert_int_eq(smlp_session_run(s), SMLP_OK);
    ck_assert_int_eq(smlp_session_tensor(s, "y", &t), SMLP_OK);
    ck_assert_mem_eq(t.data, y, sizeof(y));
    ck_assert_str_eq(smlp_session_tensor_name(s, 1, 0), "W");
    ck_assert_int_eq(smlp_session_node_profile(s, 0, &p), SMLP_OK);
    ck_assert_str_eq(p.name, "fc");
    ck_assert_str_eq(p.op, "core.linear");
    smlp_session_destroy(s); /* frees the graph and the registry */
}
END_TEST

/*
 * The session destroyed before its optimizer: the optimizer keeps it,
 * steps on the gradients of the last backward, and frees it when it goes
 * (the sanitizer build sees a use after free or a leak).  The update is
 * SGD without momentum: W moves by exactly -lr·dW.
 */
START_TEST(test_api_optim_outlives_session)
{
    smlp_registry_t *reg = tu_registry();
    smlp_graph_t *g = load_graph();
    smlp_session_t *s = training_session(g, reg);
    struct smlp_optim_opts o;
    struct smlp_error err;
    struct smlp_tensor w, dw;
    smlp_optim_t *opt;
    float want[12];
    int i;

    smlp_optim_opts_init(&o);
    o.kind = SMLP_OPTIM_SGD;
    o.momentum = 0.0;
    o.weight_decay = 0.0;
    opt = smlp_optim_create(s, &o, &err);
    ck_assert_msg(opt != NULL, "%s", err.msg);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
    ck_assert_int_eq(smlp_session_run(s), SMLP_OK);
    ck_assert_int_eq(smlp_session_backward(s), SMLP_OK);
    ck_assert_int_eq(smlp_session_tensor(s, "W", &w), SMLP_OK);
    ck_assert_int_eq(smlp_session_grad(s, "W", &dw), SMLP_OK);
    for (i = 0; i < 12; i++)
        want[i] = ((const float *)w.data)[i] -
                  0.5f * ((const float *)dw.data)[i];
    smlp_session_destroy(s); /* the optimizer still holds it */
    ck_assert_int_eq(smlp_optim_step(opt, 0.5, NULL), SMLP_OK);
    ck_assert_int_eq(smlp_optim_steps(opt), 1);
    for (i = 0; i < 12; i++)
        ck_assert_float_eq_tol(((const float *)w.data)[i], want[i], 1e-6);
    smlp_optim_destroy(opt); /* frees session, graph and registry */
}
END_TEST

static void *
destroy_thread(void *arg)
{
    smlp_session_t *s = arg;

    smlp_session_run(s);
    smlp_session_destroy(s);
    return NULL;
}

/* Sessions of one graph and registry destroyed on several threads at
 * once, after the caller has released both: exactly one frees them
 * (atomic counts; the sanitizer build sees any double free or leak). */
START_TEST(test_api_last_session_frees_across_threads)
{
    enum { N = 4 };
    smlp_registry_t *reg = tu_registry();
    smlp_graph_t *g = load_graph();
    smlp_session_t *s[N];
    pthread_t th[N];
    int i;

    for (i = 0; i < N; i++)
        s[i] = training_session(g, reg);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
    for (i = 0; i < N; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, destroy_thread, s[i]),
                         0);
    for (i = 0; i < N; i++)
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
}
END_TEST

static Suite *
api_suite(void)
{
    Suite *s = suite_create("api");
    TCase *tc = tcase_create("nulls");

    tcase_add_test(tc, test_api_graph_nulls);
    tcase_add_test(tc, test_api_graph_accessors);
    tcase_add_test(tc, test_api_session_accessors);
    tcase_add_test(tc, test_api_backward_after_failed_run);
    tcase_add_test(tc, test_api_registry_nulls);
    tcase_add_test(tc, test_api_status_words);
    tcase_add_test(tc, test_api_session_nulls);
    tcase_add_test(tc, test_api_optim_checkpoint_nulls);
    suite_add_tcase(s, tc);
    tc = tcase_create("lifetimes");
    tcase_add_test(tc, test_api_session_outlives_registry_and_graph);
    tcase_add_test(tc, test_api_last_session_frees_across_threads);
    tcase_add_test(tc, test_api_optim_outlives_session);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(api_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
