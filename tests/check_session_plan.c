/*
 * check_session_plan.c - the memory plan.
 */
#include "gradgraph.h"
#include "sessionfx.h"

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

/*
 * Nets of bias-free core.linear nodes for the placement tests below:
 * node k reads tensor src[k] (0 is the input x, j > 0 the output t<j> of
 * node j - 1) and writes t<k + 1> of dims[k + 1] features; out[j] marks
 * the tensors that are graph outputs (those nobody reads).  At batch 2 a
 * tensor of d features takes 8 d bytes, rounded up to 64.
 */
struct lnet {
    int n_nodes;
    int src[4];
    int dims[5];
    int out[5];
};

static smlp_graph_t *
lnet_graph(const struct lnet *net)
{
    char shape[32], w[8], in[8], out[8], ins[16], name[8];
    struct gb b;
    char path[512];
    int k;

    gb_init(&b);
    snprintf(shape, sizeof(shape), "[-1, %d]", net->dims[0]);
    gb_tensor(&b, "t0", "Input", shape, NULL);
    for (k = 0; k < net->n_nodes; k++) {
        snprintf(w, sizeof(w), "w%d", k + 1);
        snprintf(shape, sizeof(shape), "[%d, %d]", net->dims[k + 1],
                 net->dims[net->src[k]]);
        gb_tensor(&b, w, "Parameter", shape, NULL);
        snprintf(out, sizeof(out), "t%d", k + 1);
        gb_tensor(&b, out, net->out[k + 1] ? "Output" : "Activation", NULL,
                  NULL);
        snprintf(in, sizeof(in), "t%d", net->src[k]);
        snprintf(ins, sizeof(ins), "%s %s", in, w);
        snprintf(name, sizeof(name), "fc%d", k + 1);
        gb_node(&b, name, "core.linear", ins, out, NULL);
    }
    return gb_load(&b, "\"core\"", path, sizeof(path));
}

/*
 * Plans net at batch 2 and checks the arena and the lower bound (both
 * `arena`), then runs it on 2 threads: weights in {-1, 0, 1} and small
 * integer inputs keep every sum exact in floats, so each output must
 * equal the net computed here in doubles (no live bytes were shared).
 */
static void
lnet_check(const struct lnet *net, uint64_t arena)
{
    smlp_registry_t *reg = tu_registry();
    smlp_graph_t *g = lnet_graph(net);
    struct smlp_session_opts o;
    struct smlp_session_stats st;
    struct smlp_error err;
    double ref[5][2][64];
    smlp_session_t *s;
    char name[8];
    const float *y;
    float *x, *w;
    int k, i, j, m, in;

    smlp_session_opts_init(&o);
    o.batch = 2;
    o.threads = 2;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    smlp_session_get_stats(s, &st);
    ck_assert_uint_eq(st.lower_bound, arena);
    ck_assert_uint_eq(st.arena_bytes, arena);
    x = tensor_data(s, "t0", NULL);
    for (i = 0; i < 2; i++)
        for (j = 0; j < net->dims[0]; j++) {
            x[i * net->dims[0] + j] = (float)((i * 5 + j * 3) % 7 - 3);
            ref[0][i][j] = x[i * net->dims[0] + j];
        }
    for (k = 0; k < net->n_nodes; k++) {
        in = net->dims[net->src[k]];
        snprintf(name, sizeof(name), "w%d", k + 1);
        w = tensor_data(s, name, NULL);
        for (j = 0; j < net->dims[k + 1]; j++)
            for (m = 0; m < in; m++)
                w[j * in + m] = (float)((j * 7 + m * 3 + k) % 3 - 1);
        for (i = 0; i < 2; i++)
            for (j = 0; j < net->dims[k + 1]; j++) {
                ref[k + 1][i][j] = 0;
                for (m = 0; m < in; m++)
                    ref[k + 1][i][j] +=
                        w[j * in + m] * ref[net->src[k]][i][m];
            }
    }
    ck_assert_msg(smlp_session_run(s) == SMLP_OK, "%s",
                  smlp_session_errmsg(s));
    for (k = 1; k <= net->n_nodes; k++) {
        if (!net->out[k])
            continue;
        snprintf(name, sizeof(name), "t%d", k);
        y = tensor_data(s, name, NULL);
        for (i = 0; i < 2; i++)
            for (j = 0; j < net->dims[k]; j++)
                ck_assert_msg(y[i * net->dims[k] + j] == ref[k][i][j],
                              "%s[%d][%d] = %g, want %g", name, i, j,
                              y[i * net->dims[k] + j], ref[k][i][j]);
    }
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}

/*
 * The other way round, where placing by size wins: the chain 8 -> 8 ->
 * 8 -> 16 (x, t1, t2 64 bytes, t3 128).  Lifetimes: x [0, 3], t1 [0, 1],
 * t2 [1, 2], t3 [2, 3]; the bound is 256 (x, t2, t3 at fc3).  Largest
 * first: t3 at 0, x at 128, t1 (which does not meet t3) at 0, t2 above
 * t3 and x at 192: 256 bytes.  Longest lifetime first: x at 0, t1 at
 * 64, t2 at 128, and t3 finds no 128-byte gap below t2's end: 320.  (So
 * does smallest first.)  The plan keeps the 256.
 */
START_TEST(test_plan_size_order_wins)
{
    static const struct lnet net = {3, {0, 1, 2}, {8, 8, 8, 16},
                                    {0, 0, 0, 1}};

    lnet_check(&net, 256);
}
END_TEST

/*
 * Lifetimes of several lengths: t1 = fc1(x) 64 features, t2 = fc2(t1),
 * t3 = fc3(x) and t4 = fc4(t2) 48 each, t3 and t4 outputs (x, t2..t4 384
 * bytes, t1 512).  Lifetimes: x [0, 4], t1 [0, 1], t2 [1, 3], t3 [2, 4],
 * t4 [3, 4]; the bound is 1536 (x, t2, t3, t4 at fc4).  Longest first
 * (x, then t2 and t3, then t1 and t4): x at 0, t2 at 384, t3 at 768, t1
 * (which does not meet t3) at 768 and t4 at 1152: the bound.  Largest
 * first: t1 at 0, x at 512, t2 at 896, t3 at 0, and t4 finds only the
 * 128 bytes between t3 and x: 1664.  Shortest first gives 1664 too (t1
 * at 0, t4 at 0, t2 at 512, t3 at 896, x above them all).
 */
START_TEST(test_plan_longest_lifetime_first)
{
    static const struct lnet net = {4, {0, 1, 0, 2}, {48, 64, 48, 48, 48},
                                    {0, 0, 0, 1, 1}};

    lnet_check(&net, 1536);
}
END_TEST

/*
 * graph_branches with a state tensor s [5] that no node uses: the
 * statistics count parameters only in `params` (W1 6 + b1 3 + W2 6 =
 * 15), while `param_bytes` holds parameters and state, each rounded up
 * to 64 bytes (24, 12, 24 and 20 bytes: 4 x 64 = 256), each starting
 * 64-byte aligned like the arena's buffers (DESIGN.md, Memory).
 */
START_TEST(test_stats_params_not_state)
{
    static const char *json =
        "{\"name\": \"branches\", \"plugins\": [\"core\"], \"tensors\": ["
        "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 2]},"
        "{\"name\": \"W1\", \"kind\": \"Parameter\", \"shape\": [3, 2]},"
        "{\"name\": \"b1\", \"kind\": \"Parameter\", \"shape\": [3]},"
        "{\"name\": \"W2\", \"kind\": \"Parameter\", \"shape\": [3, 2]},"
        "{\"name\": \"y\"}, {\"name\": \"z\"},"
        "{\"name\": \"out\", \"kind\": \"Output\", \"shape\": [-1, 3]},"
        "{\"name\": \"s\", \"kind\": \"State\", \"shape\": [5]}],"
        "\"nodes\": ["
        "{\"name\": \"fc1\", \"op\": \"core.linear\", \"inputs\": [0, 1, 2],"
        " \"outputs\": [4]},"
        "{\"name\": \"fc2\", \"op\": \"core.linear\", \"inputs\": [0, 3, -1],"
        " \"outputs\": [5]},"
        "{\"name\": \"sum\", \"op\": \"core.add\", \"inputs\": [4, 5],"
        " \"outputs\": [6]}]}";
    static const char *const names[4] = {"W1", "b1", "W2", "s"};
    smlp_registry_t *reg = tu_registry();
    struct smlp_session_stats st;
    struct smlp_error err;
    smlp_session_t *s;
    smlp_graph_t *g;
    char path[512];
    int i;

    g = graph_json(json, &err, path, sizeof(path));
    ck_assert_msg(g != NULL, "%s", err.msg);
    s = smlp_session_create(g, reg, NULL, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    ck_assert_int_eq(smlp_session_get_stats(s, &st), SMLP_OK);
    ck_assert_uint_eq(st.params, 15);
    ck_assert_uint_eq(st.param_bytes, 256);
    ck_assert_int_eq(st.n_nodes, 3);
    ck_assert_int_eq(st.batch, 1);
    for (i = 0; i < 4; i++) {
        struct smlp_tensor t;

        ck_assert_int_eq(smlp_session_tensor(s, names[i], &t), SMLP_OK);
        ck_assert_msg((uintptr_t)t.data % 64 == 0, "%s at %p", names[i],
                      t.data);
    }
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * The arena is zeroed when a session is made, so an output read before
 * the first run is zeros, even where the memory was used before: the
 * first session runs (out nonzero) and is destroyed, the second, of the
 * same size, is read before it runs.
 */
START_TEST(test_arena_zeroed_before_run)
{
    smlp_registry_t *reg = tu_registry();
    struct smlp_session_opts o;
    struct smlp_error err;
    smlp_session_t *s;
    smlp_graph_t *g;
    char path[512];
    int64_t n, i;
    float *out;
    int k, nonzero = 0;

    g = graph_json(graph_branches, &err, path, sizeof(path));
    ck_assert_msg(g != NULL, "%s", err.msg);
    smlp_session_opts_init(&o);
    o.batch = 64;
    o.threads = 1;
    for (k = 0; k < 4; k++) {
        s = smlp_session_create(g, reg, &o, &err);
        ck_assert_msg(s != NULL, "%s", err.msg);
        out = tensor_data(s, "out", &n);
        ck_assert_int_eq(n, 64 * 3);
        for (i = 0; i < n; i++)
            ck_assert_msg(out[i] == 0.0f, "session %d: out[%d] = %g before "
                          "any run", k, (int)i, (double)out[i]);
        tu_run_ok(s);
        for (i = 0; i < n; i++)
            nonzero += out[i] != 0.0f;
        smlp_session_destroy(s);
    }
    ck_assert_int_gt(nonzero, 0);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * A training session's budget counts its gradients too (smlp.h
 * max_memory: arena + parameters, and gradients when training): the
 * arena and parameters alone are too little, and the message says
 * "+ gradients".
 */
START_TEST(test_max_memory_counts_gradients)
{
    static const char *json =
        "{\"name\": \"ce\", \"plugins\": [\"core\"], \"tensors\": ["
        "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 4]},"
        "{\"name\": \"labels\", \"dtype\": \"I32\", \"kind\": \"Input\","
        " \"shape\": [-1], \"init\": {\"kind\": \"Zeros\"}},"
        "{\"name\": \"W\", \"kind\": \"Parameter\", \"shape\": [3, 4]},"
        "{\"name\": \"b\", \"kind\": \"Parameter\", \"shape\": [3]},"
        "{\"name\": \"y\", \"kind\": \"Output\", \"shape\": [-1, 3]},"
        "{\"name\": \"loss\", \"kind\": \"Output\"}],"
        "\"nodes\": ["
        "{\"name\": \"fc\", \"op\": \"core.linear\", \"inputs\": [0, 2, 3],"
        " \"outputs\": [4]},"
        "{\"name\": \"ce\", \"op\": \"core.softmax_cross_entropy\","
        " \"inputs\": [4, 1], \"outputs\": [5]}]}";
    smlp_registry_t *reg = tu_registry();
    struct smlp_session_opts o;
    struct smlp_session_stats st;
    struct smlp_error err;
    smlp_session_t *s;
    smlp_graph_t *g;
    char path[512];

    g = graph_json(json, &err, path, sizeof(path));
    ck_assert_msg(g != NULL, "%s", err.msg);
    smlp_session_opts_init(&o);
    o.batch = 2;
    o.training = 1;
    o.loss = "loss";
    o.plan_only = 1;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    ck_assert_int_eq(smlp_session_get_stats(s, &st), SMLP_OK);
    smlp_session_destroy(s);
    o.max_memory = st.arena_bytes + st.param_bytes;
    ck_assert_ptr_null(smlp_session_create(g, reg, &o, &err));
    ck_assert_int_eq(err.status, SMLP_ELIMIT);
    tu_assert_contains(err.msg, " + gradients ");
    tu_assert_contains(err.msg, "over the memory limit");
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

static Suite *
session_plan_suite(void)
{
    Suite *s = suite_create("session_plan");
    TCase *tc;

    tc = tcase_create("plan");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_plan_mixer_b_within_bound);
    tcase_add_test(tc, test_plan_max_memory);
    tcase_add_test(tc, test_plan_exact_fit_gap);
    tcase_add_test(tc, test_plan_lifetime_order_closes_gap);
    tcase_add_test(tc, test_plan_lifetime_covers_last_read);
    tcase_add_test(tc, test_plan_size_order_wins);
    tcase_add_test(tc, test_plan_longest_lifetime_first);
    tcase_add_test(tc, test_stats_params_not_state);
    tcase_add_test(tc, test_arena_zeroed_before_run);
    tcase_add_test(tc, test_max_memory_counts_gradients);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(session_plan_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
