/*
 * check_session_sched.c - the scheduler: hand-computed results,
 * bit-identical for 1 and 2 threads.
 */
#include "sessionfx.h"

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
    /* fc2 leaves its bias out: its input 2 has no name, its others do.
     * Where nodes ran (sched.c, run_inline): on 2 threads the branches
     * start together, so both go to the pool; sum then runs alone, with
     * nothing in flight and nothing else ready, on the loop thread (0).
     * On 1 thread every node runs on the loop thread. */
    for (i = 0; i < 3; i++) {
        struct smlp_node_profile p;

        ck_assert_int_eq(smlp_session_node_profile(s, i, &p), SMLP_OK);
        if (threads == 1 || strcmp(p.name, "sum") == 0)
            ck_assert_msg(p.thread == 0, "%s ran on thread %d", p.name,
                          p.thread);
        else
            ck_assert_msg(p.thread != 0, "%s ran on the loop thread",
                          p.name);
    }
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
    /* inter_op x intra_op <= the budget: threads nodes, 1 thread each. */
    ck_assert_int_eq(st.intra_op, 1);
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

/*
 * Ready nodes start lowest graph position first (sched.c, the ready
 * heap): on 1 thread the 48 nodes of the wide graph, all ready at once,
 * run one after the other on the loop thread, so in the order of the
 * profile (the graph order, here the file order) each starts after the
 * previous one ended.  A heap that took another node first (a FIFO would
 * agree here, but not a heap that lost its order) runs some node before
 * a lower one.
 */
START_TEST(test_sched_ready_lowest_position_first)
{
    smlp_registry_t *reg = tu_registry();
    struct smlp_session_opts o;
    struct smlp_node_profile p, prev;
    struct smlp_error err;
    smlp_session_t *s;
    smlp_graph_t *g;
    char path[512], name[16], *json = wide_json();
    int i;

    g = graph_json(json, &err, path, sizeof(path));
    free(json);
    ck_assert_msg(g != NULL, "%s", err.msg);
    smlp_session_opts_init(&o);
    o.batch = 3;
    o.threads = 1;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    ck_assert_int_eq(smlp_session_run(s), SMLP_OK);
    for (i = 0; i < WIDE_N; i++) {
        ck_assert_int_eq(smlp_session_node_profile(s, i, &p), SMLP_OK);
        snprintf(name, sizeof(name), "s%d", i);
        ck_assert_str_eq(p.name, name);
        ck_assert_int_eq(p.thread, 0);
        if (i > 0)
            ck_assert_msg(p.start_us >= prev.end_us,
                          "%s started at %g us, before %s ended (%g us)",
                          p.name, p.start_us, prev.name, prev.end_us);
        prev = p;
    }
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
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

static Suite *
session_sched_suite(void)
{
    Suite *s = suite_create("session_sched");
    TCase *tc;

    tc = tcase_create("sched");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_sched_run_branches_hand_values);
    tcase_add_test(tc, test_sched_threads_bit_identical);
    tcase_add_test(tc, test_sched_batch_independent);
    tcase_add_test(tc, test_sched_wide_small_nodes_batched);
    tcase_add_test(tc, test_sched_ready_lowest_position_first);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(session_sched_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
