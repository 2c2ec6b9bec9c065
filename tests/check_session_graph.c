/*
 * check_session_graph.c - graph checks at load time.  Shape inference,
 * kernel choice and session options: check_session_infer.c; the
 * scheduler: check_session_sched.c; the memory plan:
 * check_session_plan.c; weights and inputs from safetensors files:
 * check_weights.c.
 */
#include "sessionfx.h"

static void
expect_bad_graph_status(const char *json, int status, const char *needle)
{
    struct smlp_error err;
    char path[512];
    smlp_graph_t *g = graph_json(json, &err, path, sizeof(path));

    ck_assert_msg(g == NULL, "graph loaded, expected '%s'", needle);
    ck_assert_msg(err.status == status, "got %s: %s",
                  smlp_status_name(err.status), err.msg);
    tu_assert_contains(err.msg, needle);
    tu_assert_contains(err.msg, path);
}

static void
expect_bad_graph(const char *json, const char *needle)
{
    expect_bad_graph_status(json, SMLP_EBADGRAPH, needle);
}

/* Loads a graph that must load. */
static void
expect_good_graph(const char *json)
{
    struct smlp_error err;
    char path[512];
    smlp_graph_t *g = graph_json(json, &err, path, sizeof(path));

    ck_assert_msg(g != NULL, "%s", err.msg);
    smlp_graph_unload(g);
}

START_TEST(test_graph_load_cycle)
{
    expect_bad_graph(
        "{\"name\": \"g\", \"plugins\": [\"core\"], \"tensors\": [" T_IN
        ", {\"name\": \"a\"}, {\"name\": \"b\"}], \"nodes\": ["
        "{\"name\": \"n0\", \"op\": \"core.add\", \"inputs\": [0, 2],"
        " \"outputs\": [1]},"
        "{\"name\": \"n1\", \"op\": \"core.relu\", \"inputs\": [1],"
        " \"outputs\": [2]}]}",
        "cycle through node 0 'n0'");
}
END_TEST

/*
 * The cycle is named by its first node: here n0 runs (x -> p) and n1, n2
 * wait on each other, so the message names node 1, not node 0.
 */
START_TEST(test_graph_load_cycle_names_first_waiting_node)
{
    expect_bad_graph(
        "{\"name\": \"g\", \"plugins\": [\"core\"], \"tensors\": [" T_IN
        ", {\"name\": \"p\", \"kind\": \"Output\"}, {\"name\": \"a\"},"
        " {\"name\": \"b\"}], \"nodes\": ["
        "{\"name\": \"n0\", \"op\": \"core.relu\", \"inputs\": [0],"
        " \"outputs\": [1]},"
        "{\"name\": \"n1\", \"op\": \"core.add\", \"inputs\": [0, 3],"
        " \"outputs\": [2]},"
        "{\"name\": \"n2\", \"op\": \"core.relu\", \"inputs\": [2],"
        " \"outputs\": [3]}]}",
        "g.fbs: the graph has a cycle through node 1 'n1'");
}
END_TEST

/*
 * Tensor 0 may be an activation like any other: here n1 writes it and
 * n0 reads it, so n1 runs first (relu(relu(x)) = relu(x)).
 */
START_TEST(test_graph_tensor0_activation)
{
    smlp_registry_t *reg = tu_registry();
    struct smlp_session_opts o;
    struct smlp_error err;
    smlp_session_t *s;
    smlp_graph_t *g;
    char path[512];
    float *x, *y;
    int64_t n, i;

    g = graph_json("{\"name\": \"g\", \"plugins\": [\"core\"], \"tensors\": ["
                   "{\"name\": \"a\"}, " T_IN ", {\"name\": \"y\", \"kind\":"
                   " \"Output\", \"shape\": [-1, 2]}], \"nodes\": ["
                   "{\"name\": \"n0\", \"op\": \"core.relu\", \"inputs\": [0],"
                   " \"outputs\": [2]},"
                   "{\"name\": \"n1\", \"op\": \"core.relu\", \"inputs\": [1],"
                   " \"outputs\": [0]}]}",
                   &err, path, sizeof(path));
    ck_assert_msg(g != NULL, "%s", err.msg);
    smlp_session_opts_init(&o);
    o.batch = 3;
    o.threads = 1;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    ck_assert_str_eq(smlp_session_node_output(s, 0, 0), "a");
    ck_assert_str_eq(smlp_session_node_output(s, 1, 0), "y");
    x = tensor_data(s, "x", &n);
    ck_assert_int_eq(n, 6);
    for (i = 0; i < n; i++)
        x[i] = (float)(i - 3);
    tu_run_ok(s);
    y = tensor_data(s, "y", &n);
    ck_assert_int_eq(n, 6);
    for (i = 0; i < n; i++)
        ck_assert_float_eq(y[i], i > 3 ? (float)(i - 3) : 0.0f);
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

START_TEST(test_graph_load_two_writers)
{
    expect_bad_graph(
        "{\"name\": \"g\", \"plugins\": [\"core\"], \"tensors\": [" T_IN
        ", {\"name\": \"a\"}], \"nodes\": ["
        "{\"name\": \"n0\", \"op\": \"core.relu\", \"inputs\": [0],"
        " \"outputs\": [1]},"
        "{\"name\": \"n1\", \"op\": \"core.relu\", \"inputs\": [0],"
        " \"outputs\": [1]}]}",
        "tensor 'a' has two writers: node 0 'n0' and node 1 'n1'");
}
END_TEST

START_TEST(test_graph_load_unwritten_read)
{
    expect_bad_graph(
        "{\"name\": \"g\", \"plugins\": [\"core\"], \"tensors\": [" T_IN
        ", {\"name\": \"ghost\"}, {\"name\": \"y\"}], \"nodes\": ["
        "{\"name\": \"n0\", \"op\": \"core.add\", \"inputs\": [0, 1],"
        " \"outputs\": [2]}]}",
        "node 0 'n0' input 1 reads tensor 'ghost', which no node writes");
}
END_TEST

START_TEST(test_graph_load_duplicate_names)
{
    expect_bad_graph("{\"name\": \"g\", \"tensors\": [" T_IN "," T_IN "]}",
                     "two tensors are named 'x'");
    expect_bad_graph(
        "{\"name\": \"g\", \"plugins\": [\"core\"], \"tensors\": [" T_IN
        ", {\"name\": \"a\"}, {\"name\": \"b\"}], \"nodes\": ["
        "{\"name\": \"n\", \"op\": \"core.relu\", \"inputs\": [0],"
        " \"outputs\": [1]},"
        "{\"name\": \"n\", \"op\": \"core.relu\", \"inputs\": [0],"
        " \"outputs\": [2]}]}",
        "two nodes are named 'n'");
}
END_TEST

START_TEST(test_graph_load_plugin_path_refused)
{
    expect_bad_graph("{\"name\": \"g\", \"plugins\": [\"../../tmp/evil\"]}",
                     "graphs name plugins, never paths");
    expect_bad_graph("{\"name\": \"g\", \"plugins\": [\"/tmp/evil.so\"]}",
                     "is not a plugin name");
    /* A slash alone (no dot) makes a path too. */
    expect_bad_graph("{\"name\": \"g\", \"plugins\": [\"core\", \"a/b\"]}",
                     "g.fbs: plugin 'a/b' is not a plugin name");
    /* Letters, digits, '_' and '-' are all a name may hold (smlp.h). */
    expect_good_graph("{\"name\": \"g\", \"plugins\": [\"core\","
                      " \"my-ops_2\"], \"tensors\": [" T_IN "," T_RELU_Y);
}
END_TEST

START_TEST(test_graph_load_misc_semantics)
{
    expect_bad_graph("{\"name\": \"g\", \"tensors\": [{\"name\": \"w\","
                     " \"kind\": \"Parameter\"}]}",
                     "tensor 0 'w': inputs, parameters and state need a "
                     "shape");
    expect_bad_graph("{\"name\": \"g\", \"tensors\": [{\"name\": \"w\","
                     " \"kind\": \"Parameter\", \"shape\": [-1, 3]}]}",
                     "invalid dimension -1");
    expect_bad_graph(
        "{\"name\": \"g\", \"plugins\": [\"core\"], \"tensors\": [" T_IN
        ", {\"name\": \"a\"}], \"nodes\": [{\"name\": \"n0\","
        " \"op\": \"norm.layer_norm\", \"inputs\": [0], \"outputs\": [1]}]}",
        "op 'norm.layer_norm' must be 'plugin.op' with the plugin listed");
    expect_bad_graph(
        "{\"name\": \"g\", \"plugins\": [\"core\"], \"tensors\": [" T_IN
        "], \"nodes\": [{\"name\": \"n0\", \"op\": \"core.relu\","
        " \"inputs\": [0], \"outputs\": [0]}]}",
        "node 0 'n0' writes tensor 'x', which is an input");
    expect_bad_graph("{\"name\": \"g\", \"tensors\": [{\"name\": \"y\","
                     " \"kind\": \"Output\"}]}",
                     "output tensor 'y' is written by no node");
    expect_bad_graph("{\"name\": \"\"}", "empty name");
}
END_TEST

/*
 * The rules of graph.c's header, each on the kind of tensor that the
 * tests above do not cover: an input needs a shape too, state (like a
 * parameter) takes no -1, and the plugin part of an op is the whole
 * name before the dot ('cor' is not 'core').
 */
START_TEST(test_graph_load_shape_and_op_rules)
{
    expect_bad_graph("{\"name\": \"g\", \"plugins\": [\"core\"], "
                     "\"tensors\": [{\"name\": \"x\", \"kind\": \"Input\"},"
                     T_RELU_Y,
                     "g.fbs: tensor 0 'x': inputs, parameters and state need "
                     "a shape");
    expect_bad_graph("{\"name\": \"g\", \"plugins\": [\"core\"], "
                     "\"tensors\": [" T_IN ", {\"name\": \"y\", \"kind\":"
                     " \"Output\"}, {\"name\": \"s\", \"kind\": \"State\","
                     " \"shape\": [-1, 3]}], \"nodes\": [{\"name\": \"r\","
                     " \"op\": \"core.relu\", \"inputs\": [0], \"outputs\":"
                     " [1]}]}",
                     "g.fbs: tensor 2 's': shape [-1,3] has invalid dimension "
                     "-1 at position 0 (-1 marks the batch and is allowed on "
                     "inputs, outputs and activations only)");
    expect_bad_graph("{\"name\": \"g\", \"plugins\": [\"core\"], "
                     "\"tensors\": [" T_IN ", {\"name\": \"y\", \"kind\":"
                     " \"Output\"}], \"nodes\": [{\"name\": \"r\", \"op\":"
                     " \"cor.relu\", \"inputs\": [0], \"outputs\": [1]}]}",
                     "g.fbs: node 0 'r': op 'cor.relu' must be 'plugin.op' "
                     "with the plugin listed in the graph's plugins");
}
END_TEST

/* Only the version this runtime reads; absent means 1 (the default). */
START_TEST(test_graph_load_format_version)
{
    static const char *const bad[] = {"99", "0", "2", "4294967295"};
    char json[512], want[128];
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(json, sizeof(json), "{\"name\": \"g\", \"format_version\":"
                 " %s, \"plugins\": [\"core\"], \"tensors\": [" T_IN ","
                 T_RELU_Y, bad[i]);
        snprintf(want, sizeof(want), "g.fbs: graph format_version %s is not "
                 "supported (this runtime reads version 1)", bad[i]);
        expect_bad_graph_status(json, SMLP_EBADFILE, want);
    }
    expect_good_graph("{\"name\": \"g\", \"format_version\": 1, "
                      "\"plugins\": [\"core\"], \"tensors\": [" T_IN ","
                      T_RELU_Y);
    expect_good_graph("{\"name\": \"g\", \"plugins\": [\"core\"], "
                      "\"tensors\": [" T_IN "," T_RELU_Y);
}
END_TEST

/* Names (graph, tensors, nodes, ops, attributes, metadata keys) are not
 * empty and have no control characters. */
START_TEST(test_graph_load_bad_names)
{
    expect_bad_graph("{\"name\": \"g\", \"plugins\": [\"core\"], "
                     "\"tensors\": [{\"name\": \"x\", \"kind\": \"Input\","
                     " \"shape\": [-1, 2]}, {\"name\": \"\", \"kind\":"
                     " \"Output\"}], \"nodes\": [{\"name\": \"r\", \"op\":"
                     " \"core.relu\", \"inputs\": [0], \"outputs\": [1]}]}",
                     "g.fbs: tensor 1 has an empty name");
    expect_bad_graph("{\"name\": \"g\", \"plugins\": [\"core\"], "
                     "\"tensors\": [" T_IN ", {\"name\": \"y\", \"kind\":"
                     " \"Output\"}], \"nodes\": [{\"name\": \"\", \"op\":"
                     " \"core.relu\", \"inputs\": [0], \"outputs\": [1]}]}",
                     "g.fbs: node 0 has an empty name");
    expect_bad_graph("{\"name\": \"g\", \"plugins\": [\"core\"], "
                     "\"tensors\": [" T_IN ", {\"name\": \"y\\u0001z\","
                     " \"kind\": \"Output\"}], \"nodes\": [{\"name\": \"r\","
                     " \"op\": \"core.relu\", \"inputs\": [0], \"outputs\":"
                     " [1]}]}",
                     "g.fbs: tensor 1 has the name 'y\\x01z', which contains "
                     "the control character 0x01");
    expect_bad_graph("{\"name\": \"g\", \"plugins\": [\"core\"], "
                     "\"tensors\": [" T_IN ", {\"name\": \"y\", \"kind\":"
                     " \"Output\"}], \"nodes\": [{\"name\": \"r\\n\", \"op\":"
                     " \"core.relu\", \"inputs\": [0], \"outputs\": [1]}]}",
                     "g.fbs: node 0 has the name 'r\\x0a', which contains the "
                     "control character 0x0a");
    expect_bad_graph("{\"name\": \"g\", \"plugins\": [\"core\"], "
                     "\"tensors\": [" T_IN ", {\"name\": \"y\", \"kind\":"
                     " \"Output\"}], \"nodes\": [{\"name\": \"\\u007f\","
                     " \"op\": \"core.relu\", \"inputs\": [0], \"outputs\":"
                     " [1]}]}",
                     "control character 0x7f");
    expect_bad_graph("{\"name\": \"g\\t\", \"plugins\": [\"core\"], "
                     "\"tensors\": [" T_IN "," T_RELU_Y,
                     "g.fbs: the graph has the name 'g\\x09', which "
                     "contains the control character 0x09");
    /* Ops, attribute names and metadata keys follow the same rule. */
    expect_bad_graph("{\"name\": \"g\", \"plugins\": [\"core\"], "
                     "\"tensors\": [" T_IN ", {\"name\": \"y\", \"kind\":"
                     " \"Output\"}], \"nodes\": [{\"name\": \"r\", \"op\":"
                     " \"core.re\\nlu\", \"inputs\": [0], \"outputs\": [1]}]}",
                     "g.fbs: the op of node 0 has the name 'core.re\\x0alu', "
                     "which contains the control character 0x0a");
    expect_bad_graph("{\"name\": \"g\", \"plugins\": [\"core\"], "
                     "\"tensors\": [" T_IN ", {\"name\": \"y\", \"kind\":"
                     " \"Output\"}], \"nodes\": [{\"name\": \"r\", \"op\":"
                     " \"core.relu\", \"inputs\": [0], \"outputs\": [1],"
                     " \"attrs\": [{\"name\": \"a\", \"i\": 1},"
                     " {\"name\": \"b\\u001b\", \"i\": 2}]}]}",
                     "g.fbs: attribute 1 of node 0 has the name 'b\\x1b', "
                     "which contains the control character 0x1b");
    expect_bad_graph("{\"name\": \"g\", \"plugins\": [\"core\"], "
                     "\"tensors\": [" T_IN ", {\"name\": \"y\", \"kind\":"
                     " \"Output\"}], \"nodes\": [{\"name\": \"r\", \"op\":"
                     " \"core.relu\", \"inputs\": [0], \"outputs\": [1],"
                     " \"attrs\": [{\"name\": \"\", \"i\": 1}]}]}",
                     "g.fbs: attribute 0 of node 0 has an empty name");
    expect_bad_graph("{\"name\": \"g\", \"metadata\": [{\"key\": \"model\","
                     " \"value\": \"m\\n2\"}, {\"key\": \"k\\r\"}],"
                     " \"plugins\": [\"core\"], \"tensors\": [" T_IN ","
                     T_RELU_Y,
                     "g.fbs: metadata entry 1 has the name 'k\\x0d', which "
                     "contains the control character 0x0d");
    /* A metadata value is free text: a newline in it is fine. */
    expect_good_graph("{\"name\": \"g\", \"metadata\": [{\"key\":"
                      " \"model\", \"value\": \"m\\n2\"}], \"plugins\":"
                      " [\"core\"], \"tensors\": [" T_IN "," T_RELU_Y);
    /* UTF-8 beyond ASCII is a name like any other. */
    expect_good_graph("{\"name\": \"g\", \"plugins\": [\"core\"], "
                      "\"tensors\": [" T_IN ", {\"name\": \"y\\u00e9\","
                      " \"kind\": \"Output\"}], \"nodes\": [{\"name\":"
                      " \"\\u20ac\", \"op\": \"core.relu\", \"inputs\": [0],"
                      " \"outputs\": [1]}]}");
}
END_TEST

/* The edges of the name rule: 0x1f is the last control character below
 * the space, tensor 0 is checked like the others, and a DEL is shown as
 * \x7f in the message (never raw). */
START_TEST(test_graph_load_bad_name_edges)
{
    expect_bad_graph("{\"name\": \"g\", \"plugins\": [\"core\"], "
                     "\"tensors\": [" T_IN ", {\"name\": \"y\\u001f\","
                     " \"kind\": \"Output\"}], \"nodes\": [{\"name\": \"r\","
                     " \"op\": \"core.relu\", \"inputs\": [0], \"outputs\":"
                     " [1]}]}",
                     "g.fbs: tensor 1 has the name 'y\\x1f', which contains "
                     "the control character 0x1f");
    expect_bad_graph("{\"name\": \"g\", \"plugins\": [\"core\"], "
                     "\"tensors\": [{\"name\": \"x\\u0002\", \"kind\":"
                     " \"Input\", \"shape\": [-1, 2]}," T_RELU_Y,
                     "g.fbs: tensor 0 has the name 'x\\x02', which contains "
                     "the control character 0x02");
    expect_bad_graph("{\"name\": \"g\", \"plugins\": [\"core\"], "
                     "\"tensors\": [" T_IN ", {\"name\": \"y\", \"kind\":"
                     " \"Output\"}], \"nodes\": [{\"name\": \"r\\u007f\","
                     " \"op\": \"core.relu\", \"inputs\": [0], \"outputs\":"
                     " [1]}]}",
                     "g.fbs: node 0 has the name 'r\\x7f', which contains the "
                     "control character 0x7f");
}
END_TEST

/* A graph computes something: a node and an output tensor. */
START_TEST(test_graph_load_no_nodes_no_output)
{
    expect_bad_graph("{\"name\": \"g\", \"tensors\": [" T_IN "]}",
                     "g.fbs: the graph has no nodes");
    expect_bad_graph("{\"name\": \"g\"}", "g.fbs: the graph has no nodes");
    expect_bad_graph("{\"name\": \"g\", \"plugins\": [\"core\"], "
                     "\"tensors\": [" T_IN ", {\"name\": \"y\"}],"
                     " \"nodes\": [{\"name\": \"r\", \"op\": \"core.relu\","
                     " \"inputs\": [0], \"outputs\": [1]}]}",
                     "g.fbs: the graph has no output tensor");
}
END_TEST

/* -1 (the batch) is the first dimension, once. */
START_TEST(test_graph_load_batch_dim_first_only)
{
    expect_bad_graph("{\"name\": \"g\", \"plugins\": [\"core\"], "
                     "\"tensors\": [{\"name\": \"x\", \"kind\": \"Input\","
                     " \"shape\": [2, -1]}," T_RELU_Y,
                     "tensor 0 'x': shape [2,-1] has invalid dimension -1 at "
                     "position 1 (-1 marks the batch and is allowed as the "
                     "first dimension only)");
    expect_bad_graph("{\"name\": \"g\", \"plugins\": [\"core\"], "
                     "\"tensors\": [{\"name\": \"x\", \"kind\": \"Input\","
                     " \"shape\": [-1, -1]}," T_RELU_Y,
                     "tensor 0 'x': shape [-1,-1] has invalid dimension -1 "
                     "at position 1");
    expect_bad_graph("{\"name\": \"g\", \"plugins\": [\"core\"], "
                     "\"tensors\": [" T_IN ", {\"name\": \"y\", \"kind\":"
                     " \"Output\", \"shape\": [-1, 2, -1]}], \"nodes\":"
                     " [{\"name\": \"r\", \"op\": \"core.relu\", \"inputs\":"
                     " [0], \"outputs\": [1]}]}",
                     "tensor 1 'y': shape [-1,2,-1] has invalid dimension -1 "
                     "at position 2");
    expect_good_graph("{\"name\": \"g\", \"plugins\": [\"core\"], "
                      "\"tensors\": [" T_IN ", {\"name\": \"y\", \"kind\":"
                      " \"Output\", \"shape\": [-1, 2]}], \"nodes\":"
                      " [{\"name\": \"r\", \"op\": \"core.relu\","
                      " \"inputs\": [0], \"outputs\": [1]}]}");
}
END_TEST

START_TEST(test_graph_load_not_a_file)
{
    struct smlp_error err;

    ck_assert_ptr_null(smlp_graph_load(tu_tmpdir(), &err));
    ck_assert_int_eq(err.status, SMLP_EIO);
    tu_assert_contains(err.msg, "is a directory");
    ck_assert_ptr_null(smlp_graph_load("/nonexistent/g.fbs", &err));
    tu_assert_contains(err.msg, "/nonexistent/g.fbs: cannot open graph");
}
END_TEST

START_TEST(test_graph_flatc_json_roundtrip_runs_identically)
{
    const char *dir = tu_tmpdir();
    char src[512], cmd[2048], json[600], again[600];
    smlp_registry_t *reg = tu_registry();
    struct smlp_error err;
    smlp_graph_t *g1, *g2;
    smlp_session_t *s1, *s2;
    int64_t n;

    tu_shipped_graph("mixer_fmnist", src, sizeof(src));
    snprintf(cmd, sizeof(cmd),
             "'%s' --json --strict-json -o '%s' '%s/schemas/graph.fbs' -- '%s'"
             " && mkdir -p '%s/b' && '%s' -b -o '%s/b' '%s/schemas/graph.fbs'"
             " '%s/mixer_fmnist.json'",
             tu_env("FLATC", "flatc"), dir, tu_srcdir(), src, dir,
             tu_env("FLATC", "flatc"), dir, tu_srcdir(), dir);
    ck_assert_msg(system(cmd) == 0, "%s", cmd);
    snprintf(json, sizeof(json), "%s/mixer_fmnist.json", dir);
    snprintf(again, sizeof(again), "%s/b/mixer_fmnist.fbs", dir);
    g1 = smlp_graph_load(src, &err);
    g2 = smlp_graph_load(again, &err);
    ck_assert_msg(g1 != NULL && g2 != NULL, "%s", err.msg);
    s1 = smlp_session_create(g1, reg, NULL, &err);
    s2 = smlp_session_create(g2, reg, NULL, &err);
    ck_assert_msg(s1 != NULL && s2 != NULL, "%s", err.msg);
    ck_assert_int_eq(smlp_session_run(s1), SMLP_OK);
    ck_assert_int_eq(smlp_session_run(s2), SMLP_OK);
    tensor_data(s1, "features", &n);
    ck_assert_mem_eq(tensor_data(s1, "features", NULL),
                     tensor_data(s2, "features", NULL),
                     (size_t)n * sizeof(float));
    ck_assert_mem_eq(tensor_data(s1, "logits", NULL),
                     tensor_data(s2, "logits", NULL), 10 * sizeof(float));
    smlp_session_destroy(s1);
    smlp_session_destroy(s2);
    smlp_graph_unload(g1);
    smlp_graph_unload(g2);
    smlp_registry_destroy(reg);
}
END_TEST

/* Creates a session for a JSON graph and expects it to fail. */
static Suite *
session_graph_suite(void)
{
    Suite *s = suite_create("session_graph");
    TCase *tc;

    tc = tcase_create("graph");
    tcase_add_test(tc, test_graph_load_cycle);
    tcase_add_test(tc, test_graph_load_cycle_names_first_waiting_node);
    tcase_add_test(tc, test_graph_tensor0_activation);
    tcase_add_test(tc, test_graph_load_two_writers);
    tcase_add_test(tc, test_graph_load_unwritten_read);
    tcase_add_test(tc, test_graph_load_duplicate_names);
    tcase_add_test(tc, test_graph_load_plugin_path_refused);
    tcase_add_test(tc, test_graph_load_misc_semantics);
    tcase_add_test(tc, test_graph_load_shape_and_op_rules);
    tcase_add_test(tc, test_graph_load_format_version);
    tcase_add_test(tc, test_graph_load_bad_names);
    tcase_add_test(tc, test_graph_load_bad_name_edges);
    tcase_add_test(tc, test_graph_load_no_nodes_no_output);
    tcase_add_test(tc, test_graph_load_batch_dim_first_only);
    tcase_add_test(tc, test_graph_load_not_a_file);
    tcase_add_test(tc, test_graph_flatc_json_roundtrip_runs_identically);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(session_graph_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
