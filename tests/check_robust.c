/*
 * check_robust.c - reliability checks that the bad-input catalogue
 * (tests/check_bad_inputs.sh) cannot make through smlp-run: the
 * check_finite session option (NaN and infinity in loaded weights and
 * checkpoints, up to the last element), initializers whose values would
 * not be finite (refused at load) and the edges of the ranges the graph
 * verifier allows (int32 initializers, uniform a == b, 64-character
 * plugin names), the deterministic run order of the nodes, a FIFO given
 * as a graph (must not block), the --max-memory budget checked at
 * planning time to the byte, and no recursion on graph input (a chain of
 * 20000 nodes loads, plans and runs on a thread with a small stack).
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>

#include "testutil.h"

/* x [-1, 2] -> linear(W [3, 2], b [3]) -> y. */
static const char *graph_tiny =
    "{\"name\": \"tiny\", \"plugins\": [\"core\"], \"tensors\": ["
    "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 2]},"
    "{\"name\": \"W\", \"kind\": \"Parameter\", \"shape\": [3, 2]},"
    "{\"name\": \"b\", \"kind\": \"Parameter\", \"shape\": [3]},"
    "{\"name\": \"y\", \"kind\": \"Output\"}],"
    "\"nodes\": [{\"name\": \"fc\", \"op\": \"core.linear\","
    " \"inputs\": [0, 1, 2], \"outputs\": [3]}]}";

static smlp_graph_t *
load_json(const char *name, const char *json)
{
    struct smlp_error err;
    smlp_graph_t *g;
    char path[512];

    tu_graph_from_json(tu_tmpdir(), name, json, path, sizeof(path));
    g = smlp_graph_load(path, &err);
    ck_assert_msg(g != NULL, "%s", err.msg);
    return g;
}

/*
 * Writes a checkpoint of W [3, 2] and b [3] (F32) by hand.  `pad` spaces
 * after the header put the data at an offset that need not be aligned.
 */
static void
write_wb(const char *path, const float w[6], const float b[3], int pad)
{
    char header[256], buf[512];
    uint64_t hlen;
    size_t len;

    snprintf(header, sizeof(header),
             "{\"W\": {\"dtype\": \"F32\", \"shape\": [3, 2], "
             "\"data_offsets\": [0, 24]}, \"b\": {\"dtype\": \"F32\", "
             "\"shape\": [3], \"data_offsets\": [24, 36]}}%*s",
             pad, "");
    hlen = strlen(header);
    memcpy(buf, &hlen, 8);
    memcpy(buf + 8, header, hlen);
    memcpy(buf + 8 + hlen, w, 24);
    memcpy(buf + 8 + hlen + 24, b, 12);
    len = 8 + hlen + 36;
    tu_write(path, buf, len);
}

static smlp_session_t *
tiny_session(smlp_graph_t *g, smlp_registry_t *reg, int check_finite,
             const char *weights, struct smlp_error *err)
{
    struct smlp_session_opts o;

    smlp_session_opts_init(&o);
    o.threads = 1;
    o.check_finite = check_finite;
    o.weights = weights;
    return smlp_session_create(g, reg, &o, err);
}

START_TEST(test_check_finite_weights)
{
    static const float b[3] = {1, 2, 3};
    float w[6] = {1, 2, 3, 4, 5, 6};
    smlp_registry_t *reg = tu_registry();
    smlp_graph_t *g = load_json("tiny", graph_tiny);
    const char *dir = tu_tmpdir();
    struct smlp_tensor t;
    struct smlp_error err;
    smlp_session_t *s, *plain;
    char good[600], nan[600], inf[600];

    snprintf(good, sizeof(good), "%s/good.safetensors", dir);
    snprintf(nan, sizeof(nan), "%s/nan.safetensors", dir);
    snprintf(inf, sizeof(inf), "%s/inf.safetensors", dir);
    write_wb(good, w, b, 1);
    w[1] = NAN;
    write_wb(nan, w, b, 2); /* data at an odd offset */
    w[1] = 2;
    w[4] = -INFINITY;
    write_wb(inf, w, b, 3);

    s = tiny_session(g, reg, 1, NULL, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    ck_assert_int_eq(smlp_session_load_weights(s, good), SMLP_OK);
    ck_assert_int_eq(smlp_session_load_weights(s, nan), SMLP_EBADFILE);
    tu_assert_contains(smlp_session_errmsg(s), nan);
    tu_assert_contains(smlp_session_errmsg(s), "tensor 'W': element 1 is NaN");
    ck_assert_int_eq(smlp_session_load_weights(s, inf), SMLP_EBADFILE);
    tu_assert_contains(smlp_session_errmsg(s),
                       "tensor 'W': element 4 is infinite");
    /* The refused tensor keeps its old values. */
    ck_assert_int_eq(smlp_session_tensor(s, "W", &t), SMLP_OK);
    ck_assert(((const float *)t.data)[1] == 2 &&
              ((const float *)t.data)[4] == 5);
    ck_assert_int_eq(smlp_session_run(s), SMLP_OK);

    /* Off by default: the NaN loads. */
    plain = tiny_session(g, reg, 0, nan, &err);
    ck_assert_msg(plain != NULL, "%s", err.msg);
    ck_assert_int_eq(smlp_session_tensor(plain, "W", &t), SMLP_OK);
    ck_assert(isnan(((const float *)t.data)[1]));
    smlp_session_destroy(plain);

    /* Through opts.weights at creation. */
    ck_assert_ptr_null(tiny_session(g, reg, 1, nan, &err));
    ck_assert_int_eq(err.status, SMLP_EBADFILE);
    tu_assert_contains(err.msg, "tensor 'W': element 1 is NaN");

    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * Loads graph_tiny with W's init replaced by `init` (JSON) and W's dtype
 * by `dtype`; the path of the graph file goes to path[0..len).  Returns
 * the graph, or NULL with err set.
 */
static smlp_graph_t *
load_with_init(const char *dtype, const char *init, char *path, size_t len,
               struct smlp_error *err)
{
    char json[1024];

    snprintf(json, sizeof(json),
             "{\"name\": \"tiny\", \"plugins\": [\"core\"], \"tensors\": ["
             "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 2]},"
             "{\"name\": \"W\", \"kind\": \"Parameter\", \"dtype\": \"%s\","
             " \"shape\": [3, 2], \"init\": %s},"
             "{\"name\": \"y\", \"kind\": \"Output\"}],"
             "\"nodes\": [{\"name\": \"fc\", \"op\": \"core.linear\","
             " \"inputs\": [0, 1], \"outputs\": [2]}]}",
             dtype, init);
    tu_graph_from_json(tu_tmpdir(), "init", json, path, len);
    return smlp_graph_load(path, err);
}

/* Expects the load of graph_tiny with W's `dtype` and `init` to fail
 * with `needle`, the message naming the file. */
static void
expect_bad_init(const char *dtype, const char *init, const char *needle)
{
    struct smlp_error err;
    char path[512];

    ck_assert_msg(load_with_init(dtype, init, path, sizeof(path), &err) ==
                      NULL,
                  "loaded with init %s", init);
    ck_assert_int_eq(err.status, SMLP_EBADGRAPH);
    tu_assert_contains(err.msg, path);
    tu_assert_contains(err.msg, needle);
}

/* Expects graph_tiny with W's `dtype` and `init` to load. */
static void
expect_good_init(const char *dtype, const char *init)
{
    struct smlp_error err;
    smlp_graph_t *g;
    char path[512];

    g = load_with_init(dtype, init, path, sizeof(path), &err);
    ck_assert_msg(g != NULL, "init %s refused: %s", init, err.msg);
    smlp_graph_unload(g);
}

/* An initializer that would fill NaN, infinity or a wrapped integer is
 * refused when the graph loads, naming the tensor and the kind. */
START_TEST(test_graph_load_init_not_finite)
{
    expect_bad_init("F32", "{\"kind\": \"Constant\", \"a\": nan}",
                    "tensor 1 'W': constant initializer: a=nan is not a "
                    "finite float32 value");
    expect_bad_init("F32", "{\"kind\": \"Constant\", \"a\": 1e300}",
                    "tensor 1 'W': constant initializer: a=1e+300 is not a "
                    "finite float32 value");
    expect_bad_init("F32", "{\"kind\": \"Constant\", \"a\": -inf}",
                    "constant initializer: a=-inf is not a finite float32");
    expect_bad_init("F32", "{\"kind\": \"Normal\", \"a\": 1e300,"
                    " \"b\": 1}",
                    "tensor 1 'W': normal initializer: a=1e+300 is not a "
                    "finite float32 value");
    expect_bad_init("F32", "{\"kind\": \"Normal\", \"a\": 0,"
                    " \"b\": 1e300}",
                    "tensor 1 'W': normal initializer: b=1e+300 is not a "
                    "finite float32 value");
    expect_bad_init("F32", "{\"kind\": \"Normal\", \"a\": 0,"
                    " \"b\": 1e38}",
                    "tensor 1 'W': normal initializer (a=0, b=1e+38) can "
                    "give 5.9e+38, beyond the range of float32");
    expect_bad_init("F32", "{\"kind\": \"Uniform\", \"a\": 0,"
                    " \"b\": inf}",
                    "uniform initializer: b=inf is not a finite float32");
    expect_bad_init("F32", "{\"kind\": \"Uniform\", \"a\": nan,"
                    " \"b\": 1}",
                    "uniform initializer: a=nan is not a finite float32");
    expect_bad_init("I32", "{\"kind\": \"Constant\", \"a\": 1e10}",
                    "tensor 1 'W': constant initializer (a=1e+10, b=0) can "
                    "give 1e+10, beyond the range of int32");
    /* The checks that were there before stay. */
    expect_bad_init("F32", "{\"kind\": \"Uniform\", \"a\": 1,"
                    " \"b\": -1}",
                    "uniform initializer needs a <= b (a=1, b=-1)");
    expect_bad_init("F32", "{\"kind\": \"Normal\", \"b\": -1}",
                    "normal initializer needs std b >= 0 (b=-1)");
}
END_TEST

/*
 * check_finite looks at every element of a tensor, the last one too: a
 * NaN in the last element of W (element 5 of its 6) or of b (element 2
 * of 3) is refused by smlp_session_load_weights and by
 * smlp_checkpoint_load, naming the file, the tensor and the element.  The
 * checkpoints are saved by a session that does not check, which loaded
 * the NaN.
 */
START_TEST(test_check_finite_last_element)
{
    static const float b_good[3] = {1, 2, 3};
    static const float w_good[6] = {1, 2, 3, 4, 5, 6};
    static const char *const names[2] = {"W", "b"};
    static const char *const needles[2] = {"tensor 'W': element 5 is NaN",
                                           "tensor 'b': element 2 is NaN"};
    smlp_registry_t *reg = tu_registry();
    smlp_graph_t *g = load_json("tiny", graph_tiny);
    const char *dir = tu_tmpdir();
    float w[6], b[3];
    struct smlp_error err;
    smlp_session_t *s, *plain;
    char wpath[600], cpath[600];
    int i;

    s = tiny_session(g, reg, 1, NULL, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    for (i = 0; i < 2; i++) {
        memcpy(w, w_good, sizeof(w));
        memcpy(b, b_good, sizeof(b));
        if (i == 0)
            w[5] = NAN;
        else
            b[2] = NAN;
        snprintf(wpath, sizeof(wpath), "%s/last_%s.safetensors", dir,
                 names[i]);
        snprintf(cpath, sizeof(cpath), "%s/last_%s.ckpt", dir, names[i]);
        write_wb(wpath, w, b, 0);

        ck_assert_int_eq(smlp_session_load_weights(s, wpath),
                         SMLP_EBADFILE);
        tu_assert_contains(smlp_session_errmsg(s), wpath);
        tu_assert_contains(smlp_session_errmsg(s), needles[i]);

        plain = tiny_session(g, reg, 0, wpath, &err);
        ck_assert_msg(plain != NULL, "%s", err.msg);
        ck_assert_msg(smlp_checkpoint_save(plain, NULL, cpath, NULL, NULL,
                                           0) == SMLP_OK,
                      "%s", smlp_session_errmsg(plain));
        smlp_session_destroy(plain);
        ck_assert_int_eq(smlp_checkpoint_load(s, NULL, cpath),
                         SMLP_EBADFILE);
        tu_assert_contains(smlp_session_errmsg(s), cpath);
        tu_assert_contains(smlp_session_errmsg(s), needles[i]);
    }
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * An int32 initializer may give any int32, the ends included: a constant
 * of -2^31 or of 2^31 - 1 loads, and so does a uniform over the whole
 * range.  One past either end is refused (a and b are doubles in the
 * file, so -2^31 - 1 and 2^31 are exact; %g prints them as
 * -2.14748e+09 and 2.14748e+09).  The int32 range is not applied to a
 * float32 tensor, which takes -2^31 - 1.
 */
START_TEST(test_graph_load_init_int32_range)
{
    expect_good_init("I32", "{\"kind\": \"Constant\", \"a\": -2147483648}");
    expect_good_init("I32", "{\"kind\": \"Constant\", \"a\": 2147483647}");
    expect_good_init("I32", "{\"kind\": \"Uniform\", \"a\": -2147483648,"
                            " \"b\": 2147483647}");
    expect_bad_init("I32", "{\"kind\": \"Constant\", \"a\": -2147483649}",
                    "tensor 1 'W': constant initializer (a=-2.14748e+09, "
                    "b=0) can give -2.14748e+09, beyond the range of "
                    "int32");
    expect_bad_init("I32", "{\"kind\": \"Uniform\", \"a\": -2147483649,"
                           " \"b\": 0}",
                    "tensor 1 'W': uniform initializer (a=-2.14748e+09, "
                    "b=0) can give -2.14748e+09, beyond the range of "
                    "int32");
    expect_bad_init("I32", "{\"kind\": \"Constant\", \"a\": 2147483648}",
                    "tensor 1 'W': constant initializer (a=2.14748e+09, "
                    "b=0) can give 2.14748e+09, beyond the range of int32");
    expect_good_init("F32", "{\"kind\": \"Constant\", \"a\": -2147483649}");
}
END_TEST

/*
 * The ends of the other initializer rules: a normal initializer of std
 * b = 0 is allowed (b >= 0: every value is a), and a uniform one can
 * give b, so its range check looks at b as well as a (int32: [0, 2^31]
 * reaches one past the top).
 */
START_TEST(test_graph_load_init_other_ends)
{
    expect_good_init("F32", "{\"kind\": \"Normal\", \"a\": 0.25,"
                            " \"b\": 0}");
    expect_bad_init("I32", "{\"kind\": \"Uniform\", \"a\": 0,"
                           " \"b\": 2147483648}",
                    "tensor 1 'W': uniform initializer (a=0, b=2.14748e+09) "
                    "can give 2.14748e+09, beyond the range of int32");
}
END_TEST

/*
 * A uniform initializer needs a <= b: a == b is allowed (every value is
 * a; the session fills W with 0.5), a > b is refused, naming the tensor
 * and both values.
 */
START_TEST(test_graph_load_init_uniform_equal_ends)
{
    smlp_registry_t *reg = tu_registry();
    struct smlp_tensor t;
    struct smlp_error err;
    smlp_session_t *s;
    smlp_graph_t *g;
    char path[512];
    int i;

    g = load_with_init("F32", "{\"kind\": \"Uniform\", \"a\": 0.5,"
                              " \"b\": 0.5, \"seed\": 3}",
                       path, sizeof(path), &err);
    ck_assert_msg(g != NULL, "%s", err.msg);
    s = tiny_session(g, reg, 1, NULL, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    ck_assert_int_eq(smlp_session_tensor(s, "W", &t), SMLP_OK);
    for (i = 0; i < 6; i++)
        ck_assert_float_eq(((const float *)t.data)[i], 0.5f);
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
    expect_good_init("I32", "{\"kind\": \"Uniform\", \"a\": -7, \"b\": -7}");
    expect_bad_init("F32", "{\"kind\": \"Uniform\", \"a\": 0.5,"
                           " \"b\": 0.25}",
                    "tensor 1 'W': uniform initializer needs a <= b "
                    "(a=0.5, b=0.25)");
}
END_TEST

/*
 * A graph with the plugin `name` and one node of it, `name`.relu, x -> y;
 * loads it (the plugin itself is not looked for until a session).
 */
static smlp_graph_t *
load_plugin_graph(const char *name, char *path, size_t len,
                  struct smlp_error *err)
{
    char json[1024];

    snprintf(json, sizeof(json),
             "{\"name\": \"p\", \"plugins\": [\"%s\"], \"tensors\": ["
             "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 2]},"
             "{\"name\": \"y\", \"kind\": \"Output\"}],"
             "\"nodes\": [{\"name\": \"n\", \"op\": \"%s.relu\","
             " \"inputs\": [0], \"outputs\": [1]}]}",
             name, name);
    tu_graph_from_json(tu_tmpdir(), "plugin", json, path, len);
    return smlp_graph_load(path, err);
}

/*
 * A plugin name has at most 64 characters: a name of exactly 64 loads
 * (and is kept whole), one of 65 is refused, the message naming the
 * file and the plugin.
 */
START_TEST(test_graph_load_plugin_name_limit)
{
    struct smlp_error err;
    smlp_graph_t *g;
    char name[66], path[512], needle[128];

    memset(name, 'p', 64);
    name[64] = '\0';
    g = load_plugin_graph(name, path, sizeof(path), &err);
    ck_assert_msg(g != NULL, "%s", err.msg);
    ck_assert_int_eq(smlp_graph_plugin_count(g), 1);
    ck_assert_str_eq(smlp_graph_plugin_name(g, 0), name);
    smlp_graph_unload(g);

    name[64] = 'p';
    name[65] = '\0';
    ck_assert_ptr_null(load_plugin_graph(name, path, sizeof(path), &err));
    ck_assert_int_eq(err.status, SMLP_EBADGRAPH);
    tu_assert_contains(err.msg, path);
    snprintf(needle, sizeof(needle), "plugin '%s' is not a plugin name",
             name);
    tu_assert_contains(err.msg, needle);
}
END_TEST

/*
 * Nodes run in a fixed order: Kahn's sort taking the ready node of the
 * lowest index first (graph.c).  The graph, nodes in file order:
 *
 *   n0: a -> b    n1: x -> p    n2: x -> q
 *   n3: b -> r    n4: x -> a    n5: x -> s     (all core.relu)
 *
 * At the start n1, n2, n4 and n5 are ready; n1, n2 and n4 run.  n4 makes
 * n0 ready, which runs before n5 (0 < 5), and n0 makes n3 ready (3 < 5).
 * So: n1 n2 n4 n0 n3 n5; file order, or a first-in first-out queue
 * (n1 n2 n4 n5 n0 n3), would differ.  The order is read back through
 * smlp_session_node_profile, smlp_session_node_output and
 * smlp_session_node_input, which index the nodes in run order.
 */
START_TEST(test_run_order_lowest_index_first)
{
    static const char *const order[6] = {"n1", "n2", "n4", "n0", "n3",
                                         "n5"};
    static const char *const outs[6] = {"p", "q", "a", "b", "r", "s"};
    static const char *const ins[6] = {"x", "x", "x", "a", "b", "x"};
    smlp_registry_t *reg = tu_registry();
    struct smlp_node_profile p;
    struct smlp_error err;
    smlp_session_t *s;
    smlp_graph_t *g;
    int i;

    g = load_json(
        "order",
        "{\"name\": \"order\", \"plugins\": [\"core\"], \"tensors\": ["
        "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 2]},"
        "{\"name\": \"a\"}, {\"name\": \"b\"},"
        "{\"name\": \"p\", \"kind\": \"Output\"},"
        "{\"name\": \"q\", \"kind\": \"Output\"},"
        "{\"name\": \"r\", \"kind\": \"Output\"},"
        "{\"name\": \"s\", \"kind\": \"Output\"}],"
        "\"nodes\": ["
        "{\"name\": \"n0\", \"op\": \"core.relu\", \"inputs\": [1],"
        " \"outputs\": [2]},"
        "{\"name\": \"n1\", \"op\": \"core.relu\", \"inputs\": [0],"
        " \"outputs\": [3]},"
        "{\"name\": \"n2\", \"op\": \"core.relu\", \"inputs\": [0],"
        " \"outputs\": [4]},"
        "{\"name\": \"n3\", \"op\": \"core.relu\", \"inputs\": [2],"
        " \"outputs\": [5]},"
        "{\"name\": \"n4\", \"op\": \"core.relu\", \"inputs\": [0],"
        " \"outputs\": [1]},"
        "{\"name\": \"n5\", \"op\": \"core.relu\", \"inputs\": [0],"
        " \"outputs\": [6]}]}");
    s = tiny_session(g, reg, 0, NULL, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    ck_assert_int_eq(smlp_session_run(s), SMLP_OK);
    for (i = 0; i < 6; i++) {
        ck_assert_int_eq(smlp_session_node_profile(s, i, &p), SMLP_OK);
        ck_assert_msg(strcmp(p.name, order[i]) == 0,
                      "run order position %d: %s, expected %s", i, p.name,
                      order[i]);
        ck_assert_str_eq(smlp_session_node_output(s, i, 0), outs[i]);
        ck_assert_str_eq(smlp_session_node_input(s, i, 0), ins[i]);
        ck_assert_ptr_null(smlp_session_node_input(s, i, 1));
        ck_assert_ptr_null(smlp_session_node_input(s, i, -1));
    }
    ck_assert_ptr_null(smlp_session_node_input(s, 6, 0));
    ck_assert_ptr_null(smlp_session_node_input(s, -1, 0));
    ck_assert_int_eq(smlp_session_node_profile(s, 6, &p), SMLP_EINVAL);
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

START_TEST(test_graph_fifo_does_not_block)
{
    struct smlp_error err;
    char path[600];

    snprintf(path, sizeof(path), "%s/fifo.fbs", tu_tmpdir());
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    /* Before the fix, open() blocked here until a writer came. */
    ck_assert_ptr_null(smlp_graph_load(path, &err));
    ck_assert_int_eq(err.status, SMLP_EBADFILE);
    tu_assert_contains(err.msg, "not a regular file");
}
END_TEST

/* The budget is arena + parameters, checked before anything is
 * allocated: the exact need passes, one byte less fails. */
START_TEST(test_max_memory_exact)
{
    smlp_registry_t *reg = tu_registry();
    struct smlp_session_opts o;
    struct smlp_session_stats st;
    struct smlp_error err;
    smlp_session_t *s;
    smlp_graph_t *g;
    char path[512];
    uint64_t need;

    tu_shipped_graph("sparse_mlp_fmnist", path, sizeof(path));
    g = smlp_graph_load(path, &err);
    ck_assert_msg(g != NULL, "%s", err.msg);
    smlp_session_opts_init(&o);
    o.batch = 3;
    o.plan_only = 1;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    smlp_session_get_stats(s, &st);
    need = st.arena_bytes + st.param_bytes;
    smlp_session_destroy(s);

    o.plan_only = 0;
    o.max_memory = need;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    ck_assert_int_eq(smlp_session_run(s), SMLP_OK);
    smlp_session_destroy(s);
    o.max_memory = need - 1;
    ck_assert_ptr_null(smlp_session_create(g, reg, &o, &err));
    ck_assert_int_eq(err.status, SMLP_ELIMIT);
    tu_assert_contains(err.msg, "over the memory limit");
    tu_assert_contains(err.msg, "--max-memory");
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/* A chain of N_CHAIN relu nodes, and a check that the runtime handles
 * it on a small stack: no recursion whose depth grows with the graph. */
#define N_CHAIN 20000

struct chain_job {
    const char *path;
    int status;
    char msg[1024];
    float out[2];
};

static void *
chain_thread(void *arg)
{
    struct chain_job *job = arg;
    struct smlp_session_opts o;
    struct smlp_tensor t;
    struct smlp_error err;
    smlp_registry_t *reg;
    smlp_session_t *s = NULL;
    smlp_graph_t *g;

    job->status = -1;
    reg = smlp_registry_create(NULL, &err);
    g = reg != NULL ? smlp_graph_load(job->path, &err) : NULL;
    if (g != NULL) {
        smlp_session_opts_init(&o);
        o.threads = 1;
        s = smlp_session_create(g, reg, &o, &err);
    }
    if (s == NULL) {
        snprintf(job->msg, sizeof(job->msg), "%s", err.msg);
    } else if (smlp_session_run(s) != SMLP_OK) {
        snprintf(job->msg, sizeof(job->msg), "%s", smlp_session_errmsg(s));
    } else if (smlp_session_tensor(s, "y", &t) == SMLP_OK) {
        memcpy(job->out, t.data, sizeof(job->out));
        job->status = 0;
    }
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
    return NULL;
}

START_TEST(test_no_recursion_deep_chain)
{
    const char *dir = tu_tmpdir();
    struct chain_job job;
    pthread_attr_t attr;
    pthread_t th;
    size_t cap = 200 + (size_t)N_CHAIN * 160, len = 0;
    char *json = malloc(cap), path[512];
    int i;

    ck_assert_ptr_nonnull(json);
    len += (size_t)snprintf(
        json + len, cap - len,
        "{\"name\": \"chain\", \"plugins\": [\"core\"], \"tensors\": ["
        "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 2],"
        " \"init\": {\"kind\": \"Constant\", \"a\": -3}}");
    for (i = 1; i < N_CHAIN; i++)
        len += (size_t)snprintf(json + len, cap - len, ", {\"name\": \"t%d\"}",
                                i);
    len += (size_t)snprintf(json + len, cap - len,
                            ", {\"name\": \"y\", \"kind\": \"Output\"}],"
                            " \"nodes\": [");
    /* Node i reads tensor i and writes tensor i + 1; the last writes y
     * (tensor N_CHAIN).  Listed backwards, so that the order comes from
     * the sort, not from the file.  Node 0 scales by -1, so y = 3. */
    for (i = N_CHAIN - 1; i >= 0; i--)
        len += (size_t)snprintf(
            json + len, cap - len,
            "%s{\"name\": \"n%d\", \"op\": \"core.%s\", \"inputs\": [%d],"
            " \"outputs\": [%d]%s}",
            i == N_CHAIN - 1 ? "" : ", ", i, i == 0 ? "scale" : "relu", i,
            i + 1,
            i == 0 ? ", \"attrs\": [{\"name\": \"alpha\", \"type\": "
                     "\"Float\", \"f\": -1}]"
                   : "");
    len += (size_t)snprintf(json + len, cap - len, "]}");
    ck_assert_uint_lt(len, cap - 1);
    tu_graph_from_json(dir, "chain", json, path, sizeof(path));
    free(json);

    /* 1 MiB: far less than N_CHAIN frames of any recursion would need
     * (and enough for the sanitizers' larger frames). */
    memset(&job, 0, sizeof(job));
    job.path = path;
    ck_assert_int_eq(pthread_attr_init(&attr), 0);
    ck_assert_int_eq(pthread_attr_setstacksize(&attr, 1u << 20), 0);
    ck_assert_int_eq(pthread_create(&th, &attr, chain_thread, &job), 0);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    pthread_attr_destroy(&attr);
    ck_assert_msg(job.status == 0, "%s", job.msg);
    ck_assert(job.out[0] == 3.0f && job.out[1] == 3.0f);
}
END_TEST

static Suite *
robust_suite(void)
{
    Suite *s = suite_create("robust");
    TCase *tc = tcase_create("weights");

    tcase_add_test(tc, test_check_finite_weights);
    tcase_add_test(tc, test_check_finite_last_element);
    tcase_add_test(tc, test_graph_load_init_not_finite);
    tcase_add_test(tc, test_graph_load_init_int32_range);
    tcase_add_test(tc, test_graph_load_init_other_ends);
    tcase_add_test(tc, test_graph_load_init_uniform_equal_ends);
    suite_add_tcase(s, tc);
    tc = tcase_create("graph");
    tcase_add_test(tc, test_graph_load_plugin_name_limit);
    tcase_add_test(tc, test_run_order_lowest_index_first);
    suite_add_tcase(s, tc);
    tc = tcase_create("limits");
    tcase_add_test(tc, test_graph_fifo_does_not_block);
    tcase_add_test(tc, test_max_memory_exact);
    tcase_add_test(tc, test_no_recursion_deep_chain);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(robust_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
