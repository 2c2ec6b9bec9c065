/*
 * check_session.c - graph checks, shape inference errors, the memory plan,
 * the scheduler (hand-computed results, bit-identical for 1 and 2
 * threads), weights and inputs from safetensors files.
 */
#include <math.h>
#include <stdint.h>

#include "testutil.h"

/* Loads a graph from JSON; returns NULL and fills err when it is bad. */
static smlp_graph_t *
graph_json(const char *json, struct smlp_error *err, char *path, size_t len)
{
    tu_graph_from_json(tu_tmpdir(), "g", json, path, len);
    return smlp_graph_load(path, err);
}

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

#define T_IN "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 2]}"

/* The rest of a graph whose tensor 0 is x: y = relu(x), the output. */
#define T_RELU_Y                                                             \
    "{\"name\": \"y\", \"kind\": \"Output\"}], \"nodes\": [{\"name\":"       \
    " \"r\", \"op\": \"core.relu\", \"inputs\": [0], \"outputs\": [1]}]}"

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

/* y = W1 x + b1 and z = W2 x, out = y + z: two independent branches. */
static const char *graph_branches =
    "{\"name\": \"branches\", \"plugins\": [\"core\"], \"tensors\": ["
    "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 2]},"
    "{\"name\": \"W1\", \"kind\": \"Parameter\", \"shape\": [3, 2]},"
    "{\"name\": \"b1\", \"kind\": \"Parameter\", \"shape\": [3]},"
    "{\"name\": \"W2\", \"kind\": \"Parameter\", \"shape\": [3, 2],"
    " \"init\": {\"kind\": \"Uniform\", \"a\": -1, \"b\": 1, \"seed\": 7}},"
    "{\"name\": \"y\"}, {\"name\": \"z\"},"
    "{\"name\": \"out\", \"kind\": \"Output\", \"shape\": [-1, 3]}],"
    "\"nodes\": ["
    "{\"name\": \"fc1\", \"op\": \"core.linear\", \"inputs\": [0, 1, 2],"
    " \"outputs\": [4]},"
    "{\"name\": \"fc2\", \"op\": \"core.linear\", \"inputs\": [0, 3, -1],"
    " \"outputs\": [5]},"
    "{\"name\": \"sum\", \"op\": \"core.add\", \"inputs\": [4, 5],"
    " \"outputs\": [6]}]}";

static float *
tensor_data(smlp_session_t *s, const char *name, int64_t *numel)
{
    struct smlp_tensor t;

    ck_assert_int_eq(smlp_session_tensor(s, name, &t), SMLP_OK);
    ck_assert_ptr_nonnull(t.data);
    if (numel != NULL)
        *numel = smlp_tensor_numel(&t);
    return t.data;
}

static void
run_branches(int threads, float *out)
{
    static const float w1[6] = {1, 2, 3, 4, 5, 6}, b1[3] = {0.5f, -1, 2};
    static const float x[4] = {1, -1, 0.25f, 2};
    smlp_registry_t *reg = tu_registry();
    struct smlp_session_opts o;
    struct smlp_session_stats st;
    struct smlp_error err;
    smlp_session_t *s;
    smlp_graph_t *g;
    const float *w2;
    char path[512];
    int64_t n;
    int i, j;

    g = graph_json(graph_branches, &err, path, sizeof(path));
    ck_assert_msg(g != NULL, "%s", err.msg);
    smlp_session_opts_init(&o);
    o.batch = 2;
    o.threads = threads;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    smlp_session_get_stats(s, &st);
    ck_assert_int_eq(st.inter_op, threads); /* two branches run at once */
    memcpy(tensor_data(s, "W1", NULL), w1, sizeof(w1));
    memcpy(tensor_data(s, "b1", NULL), b1, sizeof(b1));
    memcpy(tensor_data(s, "x", NULL), x, sizeof(x));
    w2 = tensor_data(s, "W2", NULL);
    for (i = 0; i < 6; i++) /* seeded Uniform(-1, 1) */
        ck_assert(w2[i] >= -1.0f && w2[i] < 1.0f && w2[i] != 0.0f);
    ck_assert_int_eq(smlp_session_run(s), SMLP_OK);
    memcpy(out, tensor_data(s, "out", &n), 6 * sizeof(float));
    ck_assert_int_eq(n, 6);
    for (i = 0; i < 2; i++)
        for (j = 0; j < 3; j++) {
            double want = b1[j];
            int k;
            for (k = 0; k < 2; k++)
                want += ((double)w1[j * 2 + k] + w2[j * 2 + k]) * x[i * 2 + k];
            ck_assert_msg(fabs(out[i * 3 + j] - want) < 1e-5,
                          "out[%d,%d] = %g, want %g", i, j, out[i * 3 + j],
                          want);
        }
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}

START_TEST(test_sched_run_branches_hand_values)
{
    float a[6], b[6];

    run_branches(1, a);
    run_branches(2, b);
    ck_assert_mem_eq(a, b, sizeof(a));
}
END_TEST

/*
 * A wide graph of small nodes: y_i = (i + 1) x for 48 nodes that all read
 * the input.  On 2 threads the session runs 2 nodes at once, and the
 * scheduler hands the small ready nodes to the pool in batches (sched.c):
 * every output must still be exact, run after run.
 */
#define WIDE_N 48

static char *
wide_json(void)
{
    size_t cap = 64 * 1024, len = 0;
    char *j = malloc(cap);
    int i;

    ck_assert_ptr_nonnull(j);
    len += (size_t)snprintf(j + len, cap - len,
                            "{\"name\": \"wide\", \"plugins\": [\"core\"], "
                            "\"tensors\": [{\"name\": \"x\", \"kind\": "
                            "\"Input\", \"shape\": [-1, 5]}");
    for (i = 0; i < WIDE_N; i++)
        len += (size_t)snprintf(j + len, cap - len,
                                ", {\"name\": \"y%d\", \"kind\": \"Output\"}",
                                i);
    len += (size_t)snprintf(j + len, cap - len, "], \"nodes\": [");
    for (i = 0; i < WIDE_N; i++)
        len += (size_t)snprintf(
            j + len, cap - len,
            "%s{\"name\": \"s%d\", \"op\": \"core.scale\", \"inputs\": [0], "
            "\"outputs\": [%d], \"attrs\": [{\"name\": \"alpha\", \"type\": "
            "\"Float\", \"f\": %d}]}",
            i ? ", " : "", i, i + 1, i + 1);
    snprintf(j + len, cap - len, "]}");
    return j;
}

static void
run_wide(int threads)
{
    smlp_registry_t *reg = tu_registry();
    struct smlp_session_opts o;
    struct smlp_session_stats st;
    struct smlp_error err;
    smlp_session_t *s;
    smlp_graph_t *g;
    char path[512], name[16], *json = wide_json();
    float *x;
    int run, i, k, on_pool = 0;

    g = graph_json(json, &err, path, sizeof(path));
    free(json);
    ck_assert_msg(g != NULL, "%s", err.msg);
    smlp_session_opts_init(&o);
    o.batch = 3;
    o.threads = threads;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    smlp_session_get_stats(s, &st);
    ck_assert_int_eq(st.inter_op, threads);
    x = tensor_data(s, "x", NULL);
    for (run = 0; run < 5; run++) {
        for (k = 0; k < 15; k++)
            x[k] = (float)(k - 7) * 0.375f + (float)run;
        ck_assert_msg(smlp_session_run(s) == SMLP_OK, "%s",
                      smlp_session_errmsg(s));
        for (i = 0; i < WIDE_N; i++) {
            int64_t n;
            const float *y;
            struct smlp_node_profile p;

            snprintf(name, sizeof(name), "y%d", i);
            y = tensor_data(s, name, &n);
            ck_assert_int_eq(n, 15);
            for (k = 0; k < 15; k++)
                ck_assert_msg(y[k] == (float)(i + 1) * x[k],
                              "run %d: y%d[%d] = %g, want %g", run, i, k,
                              y[k], (float)(i + 1) * x[k]);
            ck_assert_int_eq(smlp_session_node_profile(s, i, &p), SMLP_OK);
            ck_assert(p.end_us >= p.start_us);
            on_pool += p.thread != 0;
        }
    }
    if (threads == 1)
        ck_assert_int_eq(on_pool, 0); /* one runner: the loop thread */
    else
        ck_assert_int_gt(on_pool, 0);
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}

START_TEST(test_sched_wide_small_nodes_batched)
{
    run_wide(1);
    run_wide(2);
}
END_TEST

/* Runs a shipped graph and copies `name` out. */
static float *
run_shipped(const char *graph, int64_t batch, int threads, int runs,
            const char *name, int64_t *numel)
{
    smlp_registry_t *reg = tu_registry();
    struct smlp_session_opts o;
    struct smlp_error err;
    smlp_session_t *s;
    smlp_graph_t *g;
    char path[512];
    float *copy;
    int i;

    tu_shipped_graph(graph, path, sizeof(path));
    g = smlp_graph_load(path, &err);
    ck_assert_msg(g != NULL, "%s", err.msg);
    smlp_session_opts_init(&o);
    o.batch = batch;
    o.threads = threads;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    for (i = 0; i < runs; i++)
        ck_assert_msg(smlp_session_run(s) == SMLP_OK, "%s",
                      smlp_session_errmsg(s));
    tensor_data(s, name, numel);
    copy = malloc((size_t)*numel * sizeof(float));
    memcpy(copy, tensor_data(s, name, NULL), (size_t)*numel * sizeof(float));
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
    return copy;
}

START_TEST(test_sched_threads_bit_identical)
{
    int64_t n1, n2, n3, i;
    float *a = run_shipped("mixer_fmnist", 4, 1, 1, "features", &n1);
    float *b = run_shipped("mixer_fmnist", 4, 2, 1, "features", &n2);
    float *c = run_shipped("mixer_fmnist", 4, 2, 3, "features", &n3);
    double norm = 0;

    ck_assert_int_eq(n1, 4 * 128);
    ck_assert_int_eq(n1, n2);
    ck_assert_int_eq(n1, n3);
    for (i = 0; i < n1; i++)
        norm += fabs(a[i]);
    ck_assert_msg(norm > 1.0 && isfinite(norm), "features look dead: %g",
                  norm);
    ck_assert_mem_eq(a, b, (size_t)n1 * sizeof(float));
    ck_assert_mem_eq(a, c, (size_t)n1 * sizeof(float));
    free(a);
    free(b);
    free(c);
}
END_TEST

START_TEST(test_sched_batch_independent)
{
    int64_t n1, n3, i;
    float *one = run_shipped("mixer_fmnist", 1, 1, 1, "features", &n1);
    float *three = run_shipped("mixer_fmnist", 3, 1, 1, "features", &n3);

    /* The synthetic batch's image 0 is the same at any batch size, and a
     * Mixer never mixes images. */
    for (i = 0; i < n1; i++)
        ck_assert_msg(fabs(one[i] - three[i]) <= 1e-5 * (1 + fabs(one[i])),
                      "feature %lld: %g vs %g", (long long)i, one[i],
                      three[i]);
    free(one);
    free(three);
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

static smlp_session_t *
plan_shipped(const char *graph, int64_t batch, uint64_t max_memory,
             smlp_graph_t **g, smlp_registry_t *reg, struct smlp_error *err)
{
    struct smlp_session_opts o;
    char path[512];

    tu_shipped_graph(graph, path, sizeof(path));
    *g = smlp_graph_load(path, err);
    ck_assert_msg(*g != NULL, "%s", err->msg);
    smlp_session_opts_init(&o);
    o.batch = batch;
    o.plan_only = 1;
    o.max_memory = max_memory;
    return smlp_session_create(*g, reg, &o, err);
}

START_TEST(test_plan_mixer_b_within_bound)
{
    smlp_registry_t *reg = tu_registry();
    struct smlp_session_stats st;
    struct smlp_error err;
    smlp_session_t *s;
    smlp_graph_t *g;

    s = plan_shipped("mixer_b", 8, 0, &g, reg, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    smlp_session_get_stats(s, &st);
    /* Input 8x3x224x224 f32 alone is 4.8 MB. */
    ck_assert_uint_gt(st.lower_bound, 8u * 3 * 224 * 224 * 4);
    ck_assert_msg((double)st.arena_bytes <= 1.1 * (double)st.lower_bound,
                  "arena %llu > 1.1 x lower bound %llu",
                  (unsigned long long)st.arena_bytes,
                  (unsigned long long)st.lower_bound);
    /* Mixer-B/16: 59.88 M parameters, 12.6 GMACs per image. */
    ck_assert_uint_eq(st.params / 10000, 5988);
    ck_assert_uint_eq(st.macs / 8 / 10000000, 1260);
    ck_assert_int_eq(smlp_session_run(s), SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(s), "plan_only");
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

START_TEST(test_plan_max_memory)
{
    smlp_registry_t *reg = tu_registry();
    struct smlp_error err;
    smlp_graph_t *g;

    ck_assert_ptr_null(plan_shipped("mixer_b", 8, 1 << 20, &g, reg, &err));
    ck_assert_int_eq(err.status, SMLP_ELIMIT);
    tu_assert_contains(err.msg, "over the memory limit of 1048576 bytes "
                                "(the session's max_memory, smlp-run "
                                "--max-memory)");
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * Exact fits: a chain x -> a -> b -> c -> y of core.relu, each 4032
 * bytes (1000 floats, 64-byte aligned).  Lifetimes (steps): x and y the
 * whole run, a [0, 1], b [1, 2], c [2, 3].  Placed largest first, ties
 * by first step: x at 0, a at 4032, b at 8064; c overlaps x and b but
 * not a, so it takes a's gap [4032, 8064), exactly its size; y overlaps
 * x and c and takes [8064, 12096).  Three buffers, the lower bound (x,
 * a, b at step 1).
 */
START_TEST(test_plan_exact_fit_gap)
{
    smlp_registry_t *reg = tu_registry();
    struct smlp_session_opts o;
    struct smlp_session_stats st;
    struct smlp_error err;
    smlp_session_t *s;
    smlp_graph_t *g;
    char path[512];

    g = graph_json(
        "{\"name\": \"g\", \"plugins\": [\"core\"], \"tensors\": ["
        "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 1000]},"
        "{\"name\": \"a\"}, {\"name\": \"b\"}, {\"name\": \"c\"},"
        "{\"name\": \"y\", \"kind\": \"Output\"}], \"nodes\": ["
        "{\"name\": \"r0\", \"op\": \"core.relu\", \"inputs\": [0],"
        " \"outputs\": [1]},"
        "{\"name\": \"r1\", \"op\": \"core.relu\", \"inputs\": [1],"
        " \"outputs\": [2]},"
        "{\"name\": \"r2\", \"op\": \"core.relu\", \"inputs\": [2],"
        " \"outputs\": [3]},"
        "{\"name\": \"r3\", \"op\": \"core.relu\", \"inputs\": [3],"
        " \"outputs\": [4]}]}",
        &err, path, sizeof(path));
    ck_assert_msg(g != NULL, "%s", err.msg);
    smlp_session_opts_init(&o);
    o.threads = 1;
    o.plan_only = 1;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    smlp_session_get_stats(s, &st);
    ck_assert_uint_eq(st.lower_bound, 3 * 4032);
    ck_assert_uint_eq(st.arena_bytes, 3 * 4032);
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * Where placing by size alone leaves a gap: the chain x -> h1 -> h2 ->
 * h3 -> y of bias-free linears 16 -> 64 -> 16 -> 32 -> 48 at batch 2
 * (x 128 bytes, h1 512, h2 128, h3 256, y 384).  The most bytes live at
 * once are 768 (x, h1, h2 at fc2; x, h3, y at fc4).  By size, h1 goes
 * to 0, y (which does not meet h1) to 0 too, h3 above y at 384, x at 640
 * and h2 at 768: 896 bytes.  By lifetime x goes first, to 0, and the
 * rest packs around it: x, h1 [128, 640), h2 [640, 768), h3 [128, 384),
 * y [384, 768), the bound.  The run then checks that no live bytes were
 * shared: weights in {-1, 0, 1} and small integer inputs keep every sum
 * exact in floats, so y must equal the chain computed here in doubles.
 */
START_TEST(test_plan_lifetime_order_closes_gap)
{
    static const int dims[5] = {16, 64, 16, 32, 48};
    static const char *const wn[4] = {"w1", "w2", "w3", "w4"};
    smlp_registry_t *reg = tu_registry();
    struct smlp_session_opts o;
    struct smlp_session_stats st;
    struct smlp_error err;
    double ref[2][64], nxt[2][64];
    smlp_session_t *s;
    smlp_graph_t *g;
    char path[512];
    float *x, *w;
    const float *y;
    int64_t n;
    int l, i, j, k, plan_only;

    g = graph_json(
        "{\"name\": \"gap\", \"plugins\": [\"core\"], \"tensors\": ["
        "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 16]},"
        "{\"name\": \"w1\", \"kind\": \"Parameter\", \"shape\": [64, 16]},"
        "{\"name\": \"h1\"},"
        "{\"name\": \"w2\", \"kind\": \"Parameter\", \"shape\": [16, 64]},"
        "{\"name\": \"h2\"},"
        "{\"name\": \"w3\", \"kind\": \"Parameter\", \"shape\": [32, 16]},"
        "{\"name\": \"h3\"},"
        "{\"name\": \"w4\", \"kind\": \"Parameter\", \"shape\": [48, 32]},"
        "{\"name\": \"y\", \"kind\": \"Output\"}], \"nodes\": ["
        "{\"name\": \"fc1\", \"op\": \"core.linear\", \"inputs\": [0, 1],"
        " \"outputs\": [2]},"
        "{\"name\": \"fc2\", \"op\": \"core.linear\", \"inputs\": [2, 3],"
        " \"outputs\": [4]},"
        "{\"name\": \"fc3\", \"op\": \"core.linear\", \"inputs\": [4, 5],"
        " \"outputs\": [6]},"
        "{\"name\": \"fc4\", \"op\": \"core.linear\", \"inputs\": [6, 7],"
        " \"outputs\": [8]}]}",
        &err, path, sizeof(path));
    ck_assert_msg(g != NULL, "%s", err.msg);
    for (plan_only = 1; plan_only >= 0; plan_only--) {
        smlp_session_opts_init(&o);
        o.batch = 2;
        o.threads = 2;
        o.plan_only = plan_only;
        s = smlp_session_create(g, reg, &o, &err);
        ck_assert_msg(s != NULL, "%s", err.msg);
        smlp_session_get_stats(s, &st);
        ck_assert_uint_eq(st.lower_bound, 768);
        ck_assert_uint_eq(st.arena_bytes, 768);
        if (plan_only) {
            smlp_session_destroy(s);
            continue;
        }
        x = tensor_data(s, "x", NULL);
        for (i = 0; i < 2; i++)
            for (j = 0; j < 16; j++) {
                x[i * 16 + j] = (float)((i * 5 + j * 3) % 7 - 3);
                ref[i][j] = x[i * 16 + j];
            }
        for (l = 0; l < 4; l++) {
            w = tensor_data(s, wn[l], NULL);
            for (j = 0; j < dims[l + 1]; j++)
                for (k = 0; k < dims[l]; k++)
                    w[j * dims[l] + k] =
                        (float)((j * 7 + k * 3 + l) % 3 - 1);
            for (i = 0; i < 2; i++)
                for (j = 0; j < dims[l + 1]; j++) {
                    nxt[i][j] = 0;
                    for (k = 0; k < dims[l]; k++)
                        nxt[i][j] += w[j * dims[l] + k] * ref[i][k];
                }
            memcpy(ref, nxt, sizeof(ref));
        }
        ck_assert_msg(smlp_session_run(s) == SMLP_OK, "%s",
                      smlp_session_errmsg(s));
        y = tensor_data(s, "y", &n);
        ck_assert_int_eq(n, 96);
        for (i = 0; i < 2; i++)
            for (j = 0; j < 48; j++)
                ck_assert_msg(y[i * 48 + j] == ref[i][j],
                              "y[%d][%d] = %g, want %g", i, j,
                              y[i * 48 + j], ref[i][j]);
        smlp_session_destroy(s);
    }
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * A buffer lives until its last reader has run: y = relu(W relu(x)) with
 * W the reversal scaled by row, W[j][3 - j] = j + 1, so that
 * y[i][j] = (j + 1) x[i][3 - j] for positive x.  The linear node reads
 * a = relu(x) while it writes b: were a's lifetime to end before that
 * step, b could take a's bytes and the product would read entries it
 * had already overwritten (a reversal cannot be computed in place in
 * any order).
 */
START_TEST(test_plan_lifetime_covers_last_read)
{
    static const float x[8] = {1, 2, 3, 4, 0.5f, 0.25f, 8, 16};
    smlp_registry_t *reg = tu_registry();
    struct smlp_session_opts o;
    struct smlp_error err;
    smlp_session_t *s;
    smlp_graph_t *g;
    char path[512];
    float *w;
    const float *y;
    int64_t n;
    int i, j, threads;

    g = graph_json(
        "{\"name\": \"g\", \"plugins\": [\"core\"], \"tensors\": ["
        "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 4]},"
        "{\"name\": \"W\", \"kind\": \"Parameter\", \"shape\": [4, 4]},"
        "{\"name\": \"a\"}, {\"name\": \"b\"},"
        "{\"name\": \"y\", \"kind\": \"Output\"}], \"nodes\": ["
        "{\"name\": \"r0\", \"op\": \"core.relu\", \"inputs\": [0],"
        " \"outputs\": [2]},"
        "{\"name\": \"fc\", \"op\": \"core.linear\", \"inputs\": [2, 1],"
        " \"outputs\": [3]},"
        "{\"name\": \"r1\", \"op\": \"core.relu\", \"inputs\": [3],"
        " \"outputs\": [4]}]}",
        &err, path, sizeof(path));
    ck_assert_msg(g != NULL, "%s", err.msg);
    for (threads = 1; threads <= 2; threads++) {
        smlp_session_opts_init(&o);
        o.batch = 2;
        o.threads = threads;
        s = smlp_session_create(g, reg, &o, &err);
        ck_assert_msg(s != NULL, "%s", err.msg);
        w = tensor_data(s, "W", NULL);
        memset(w, 0, 16 * sizeof(float));
        for (j = 0; j < 4; j++)
            w[j * 4 + (3 - j)] = (float)(j + 1);
        memcpy(tensor_data(s, "x", NULL), x, sizeof(x));
        ck_assert_msg(smlp_session_run(s) == SMLP_OK, "%s",
                      smlp_session_errmsg(s));
        y = tensor_data(s, "y", &n);
        ck_assert_int_eq(n, 8);
        for (i = 0; i < 2; i++)
            for (j = 0; j < 4; j++)
                ck_assert_msg(y[i * 4 + j] == (float)(j + 1) *
                                                  x[i * 4 + 3 - j],
                              "%d threads: y[%d][%d] = %g, want %g", threads,
                              i, j, y[i * 4 + j],
                              (float)(j + 1) * x[i * 4 + 3 - j]);
        smlp_session_destroy(s);
    }
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

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

static Suite *
session_suite(void)
{
    Suite *s = suite_create("session");
    TCase *tc = tcase_create("graph");

    tcase_add_test(tc, test_graph_load_cycle);
    tcase_add_test(tc, test_graph_load_two_writers);
    tcase_add_test(tc, test_graph_load_unwritten_read);
    tcase_add_test(tc, test_graph_load_duplicate_names);
    tcase_add_test(tc, test_graph_load_plugin_path_refused);
    tcase_add_test(tc, test_graph_load_misc_semantics);
    tcase_add_test(tc, test_graph_load_format_version);
    tcase_add_test(tc, test_graph_load_bad_names);
    tcase_add_test(tc, test_graph_load_no_nodes_no_output);
    tcase_add_test(tc, test_graph_load_batch_dim_first_only);
    tcase_add_test(tc, test_graph_load_not_a_file);
    tcase_add_test(tc, test_graph_flatc_json_roundtrip_runs_identically);
    suite_add_tcase(s, tc);
    tc = tcase_create("infer");
    tcase_add_test(tc, test_infer_linear_mismatch_names_node);
    tcase_add_test(tc, test_infer_declared_shape_mismatch);
    tcase_add_test(tc, test_infer_declared_dtype_mismatch);
    tcase_add_test(tc, test_infer_batch_zero_and_overflow);
    tcase_add_test(tc, test_infer_arity);
    tcase_add_test(tc, test_infer_undeclared_attr);
    tcase_add_test(tc, test_infer_fixed_batch_input);
    suite_add_tcase(s, tc);
    tc = tcase_create("sched");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_sched_run_branches_hand_values);
    tcase_add_test(tc, test_sched_threads_bit_identical);
    tcase_add_test(tc, test_sched_batch_independent);
    tcase_add_test(tc, test_sched_wide_small_nodes_batched);
    suite_add_tcase(s, tc);
    tc = tcase_create("plan");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_plan_mixer_b_within_bound);
    tcase_add_test(tc, test_plan_max_memory);
    tcase_add_test(tc, test_plan_exact_fit_gap);
    tcase_add_test(tc, test_plan_lifetime_order_closes_gap);
    tcase_add_test(tc, test_plan_lifetime_covers_last_read);
    suite_add_tcase(s, tc);
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
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(session_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
