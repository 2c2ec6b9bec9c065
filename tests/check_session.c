/*
 * check_session.c - graph checks, shape inference errors, the memory plan,
 * the scheduler (hand-computed results, bit-identical for 1 and 2
 * threads).  Weights and inputs from safetensors files: check_weights.c.
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
    /* fc2 leaves its bias out: its input 2 has no name, its others do. */
    for (i = 0; i < 3; i++) {
        struct smlp_node_profile p;

        ck_assert_int_eq(smlp_session_node_profile(s, i, &p), SMLP_OK);
        if (strcmp(p.name, "fc2") != 0)
            continue;
        ck_assert_str_eq(smlp_session_node_input(s, i, 0), "x");
        ck_assert_str_eq(smlp_session_node_input(s, i, 1), "W2");
        ck_assert_ptr_null(smlp_session_node_input(s, i, 2));
        ck_assert_ptr_null(smlp_session_node_input(s, i, 3));
        break;
    }
    ck_assert_int_lt(i, 3);
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

static Suite *
session_suite(void)
{
    Suite *s = suite_create("session");
    TCase *tc;

    tc = tcase_create("graph");

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
