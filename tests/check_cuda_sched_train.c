/*
 * check_cuda_sched_train.c - the runtime's GPU path without a GPU,
 * training: the forward on the fake GPU with the backward on the CPU or
 * on the device, its notices and failures, device stats and profile
 * times, all on the fake CUDA runtime of tests/fakecuda.c (linked into
 * this program) with the fixture plugin tests/plugins/fakegpu.c.  Results
 * must equal the CPU session's bit for bit.
 */
#include "cudaschedfx.h"

int fakecuda_backwards(void); /* tests/fakecuda.c */

/*
 * Training with the forward on the (fake) GPU: losses, gradients and
 * updated parameters equal the CPU session's bit for bit over several
 * steps.  With fakegpu.host nodes (no GPU backward) the backward runs on
 * the CPU, so the forward values it reads must reach the host; without
 * (_i == 1) it runs on the GPU (the fixture counts its device backwards),
 * with the gradient sums there.  Each update must reach the device.
 */
START_TEST(test_cuda_sched_training_bit_identical)
{
    smlp_registry_t *reg = tu_fixture_registry();
    int flags = _i == 1 ? DAG_NO_HOST : 0, before = fakecuda_backwards();
    unsigned seed;
    int moved = 0;

    for (seed = 1; seed <= 6; seed++) {
        char *json = random_dag(seed * 104729u, 30, DAG_LOSS | flags);
        smlp_graph_t *g = tu_graph_json(json);
        smlp_optim_t *oc, *o1, *o3;
        smlp_session_t *cpu = train_session(g, reg, SMLP_DEVICE_CPU, 1, &oc);
        smlp_session_t *g1 = train_session(g, reg, SMLP_DEVICE_CUDA, 1, &o1);
        smlp_session_t *g3 = train_session(g, reg, SMLP_DEVICE_CUDA, 3, &o3);
        struct smlp_tensor gc, gg;
        float w0 = data(cpu, "W", NULL)[0];
        int step;

        for (step = 0; step < 3; step++) {
            smlp_session_t *all[3] = {cpu, g1, g3};
            smlp_optim_t *opts[3] = {oc, o1, o3};
            int k;

            for (k = 0; k < 3; k++) {
                tu_run_ok(all[k]);
                ck_assert_msg(smlp_session_backward(all[k]) == SMLP_OK, "%s",
                              smlp_session_errmsg(all[k]));
            }
            expect_same(cpu, g1, "loss");
            expect_same(cpu, g3, "loss");
            ck_assert_int_eq(smlp_session_grad(cpu, "W", &gc), SMLP_OK);
            for (k = 1; k < 3; k++) {
                ck_assert_int_eq(smlp_session_grad(all[k], "W", &gg),
                                 SMLP_OK);
                ck_assert_mem_eq(gc.data, gg.data, 64 * sizeof(float));
            }
            for (k = 0; k < 3; k++)
                ck_assert_int_eq(smlp_optim_step(opts[k], 0.5, NULL),
                                 SMLP_OK);
        }
        expect_same(cpu, g1, "W");
        expect_same(cpu, g3, "W");
        moved += data(cpu, "W", NULL)[0] != w0;
        smlp_optim_destroy(oc);
        smlp_optim_destroy(o1);
        smlp_optim_destroy(o3);
        smlp_session_destroy(cpu);
        smlp_session_destroy(g1);
        smlp_session_destroy(g3);
        smlp_graph_unload(g);
        free(json);
    }
    ck_assert_int_gt(moved, 0); /* the loss reached W somewhere */
    if (flags & DAG_NO_HOST)
        ck_assert_int_gt(fakecuda_backwards(), before);
    else
        ck_assert_int_eq(fakecuda_backwards(), before);
    smlp_registry_destroy(reg);
}
END_TEST

/* x -> mul(W) -> NODE -> mean: NODE decides where the backward runs. */
static char *
loss_graph(const char *node_json)
{
    static char buf[2048];

    snprintf(buf, sizeof(buf),
             "{\"name\": \"tiny\", \"plugins\": [\"fakegpu\"], \"tensors\": ["
             "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 8]},"
             "{\"name\": \"W\", \"kind\": \"Parameter\", \"shape\": [8],"
             " \"init\": {\"kind\": \"Uniform\", \"a\": -1, \"b\": 1, \"seed\": 3}},"
             "{\"name\": \"h\"}, {\"name\": \"y\"},"
             "{\"name\": \"loss\", \"kind\": \"Output\"}], \"nodes\": ["
             "{\"name\": \"m\", \"op\": \"fakegpu.mul\", \"inputs\": [0, 1],"
             " \"outputs\": [2]}, %s,"
             "{\"name\": \"mean\", \"op\": \"fakegpu.mean\", \"inputs\": [3],"
             " \"outputs\": [4]}]}",
             node_json);
    return buf;
}

static smlp_session_t *
make_train(void *arg)
{
    smlp_optim_t *opt;
    smlp_session_t *s = train_session(arg, registry_for_train, 1, 1, &opt);

    smlp_optim_destroy(opt);
    return s;
}

/* Where the backward runs is said: a notice names the node that keeps it
 * on the CPU; none when it runs on the GPU. */
START_TEST(test_cuda_sched_backward_side_notice)
{
    smlp_graph_t *gh, *ga;
    smlp_session_t *s;
    const char *out;
    int before;

    registry_for_train = tu_fixture_registry();
    gh = tu_graph_json(loss_graph(
        "{\"name\": \"hh\", \"op\": \"fakegpu.host\","
        " \"inputs\": [2], \"outputs\": [3]}"));
    out = capture_stderr(make_train, gh, &s);
    tu_assert_contains(out, "node 1 'hh' (fakegpu.host): no cuda backward, "
                            "so the backward runs on the CPU");
    before = fakecuda_backwards();
    tu_run_ok(s);
    ck_assert_int_eq(smlp_session_backward(s), SMLP_OK);
    ck_assert_int_eq(fakecuda_backwards(), before);
    smlp_session_destroy(s);
    smlp_graph_unload(gh);
    /* A kernel of an ABI 1.2 plugin has no backward, whatever follows. */
    gh = tu_graph_json(loss_graph(
        "{\"name\": \"oo\", \"op\": \"fakegpu.old\","
        " \"inputs\": [2], \"outputs\": [3]}"));
    out = capture_stderr(make_train, gh, &s);
    tu_assert_contains(out, "node 1 'oo' (fakegpu.old): no cuda backward");
    tu_run_ok(s);
    ck_assert_int_eq(smlp_session_backward(s), SMLP_OK);
    ck_assert_int_eq(fakecuda_backwards(), before);
    smlp_session_destroy(s);
    ga = tu_graph_json(loss_graph(
        "{\"name\": \"aa\", \"op\": \"fakegpu.affine\","
        " \"inputs\": [2], \"outputs\": [3]}"));
    out = capture_stderr(make_train, ga, &s);
    ck_assert_msg(strstr(out, "backward") == NULL, "%s", out);
    tu_run_ok(s);
    ck_assert_int_eq(smlp_session_backward(s), SMLP_OK);
    ck_assert_int_eq(fakecuda_backwards(), before + 3);
    smlp_session_destroy(s);
    smlp_graph_unload(gh);
    smlp_graph_unload(ga);
    smlp_registry_destroy(registry_for_train);
}
END_TEST

/*
 * smlp_session_get_device_stats: nothing for a CPU session; the device
 * arena, the device copy of W and, with the backward on the device, its
 * gradient; a caller's shorter struct is not written past its size.
 */
START_TEST(test_cuda_sched_device_stats)
{
    smlp_graph_t *ga, *gh;
    smlp_session_t *cpu, *fwd, *bwd, *host;
    struct smlp_device_stats st;
    smlp_optim_t *o1, *o2;

    registry_for_train = tu_fixture_registry();
    ga = tu_graph_json(loss_graph(
        "{\"name\": \"aa\", \"op\": \"fakegpu.affine\","
        " \"inputs\": [2], \"outputs\": [3]}"));
    gh = tu_graph_json(loss_graph(
        "{\"name\": \"hh\", \"op\": \"fakegpu.host\","
        " \"inputs\": [2], \"outputs\": [3]}"));
    cpu = train_session(ga, registry_for_train, SMLP_DEVICE_CPU, 1, &o1);
    bwd = train_session(ga, registry_for_train, SMLP_DEVICE_CUDA, 1, &o2);
    (void)capture_stderr(make_train, gh, &host); /* its notice */
    fwd = session(ga, registry_for_train, SMLP_DEVICE_CUDA, 1, 1);
    st.size = sizeof(st);
    ck_assert_int_eq(smlp_session_get_device_stats(cpu, &st), SMLP_OK);
    ck_assert_int_eq(st.device, SMLP_DEVICE_CPU);
    ck_assert_int_eq(st.device_nodes, 0);
    ck_assert_uint_eq(st.arena_bytes + st.param_bytes + st.grad_bytes, 0);
    /* Inference: three nodes on the device, W's copy (8 floats, one
     * aligned block of 64 bytes), no gradients. */
    ck_assert_int_eq(smlp_session_get_device_stats(fwd, &st), SMLP_OK);
    ck_assert_int_eq(st.device, SMLP_DEVICE_CUDA);
    ck_assert_int_eq(st.device_nodes, 3);
    ck_assert_int_eq(st.backward_on_device, 0);
    ck_assert_uint_gt(st.arena_bytes, 0);
    ck_assert_uint_ge(st.arena_bytes, st.lower_bound);
    ck_assert_uint_eq(st.param_bytes, 64);
    ck_assert_uint_eq(st.grad_bytes, 0);
    /* Training with the backward there: W's gradient too. */
    ck_assert_int_eq(smlp_session_get_device_stats(bwd, &st), SMLP_OK);
    ck_assert_int_eq(st.backward_on_device, 1);
    ck_assert_uint_eq(st.grad_bytes, 64);
    /* The backward on the CPU (a host node): none on the device. */
    ck_assert_int_eq(smlp_session_get_device_stats(host, &st), SMLP_OK);
    ck_assert_int_eq(st.device_nodes, 2);
    ck_assert_int_eq(st.backward_on_device, 0);
    ck_assert_uint_eq(st.grad_bytes, 0);
    /* A shorter struct: size and device only. */
    memset(&st, 0xab, sizeof(st));
    st.size = offsetof(struct smlp_device_stats, device_nodes);
    ck_assert_int_eq(smlp_session_get_device_stats(bwd, &st), SMLP_OK);
    ck_assert_int_eq(st.device, SMLP_DEVICE_CUDA);
    ck_assert_int_eq(st.device_nodes, (int32_t)0xabababab);
    st.size = 2;
    ck_assert_int_eq(smlp_session_get_device_stats(bwd, &st), SMLP_EINVAL);
    ck_assert_int_eq(smlp_session_get_device_stats(bwd, NULL), SMLP_EINVAL);
    smlp_optim_destroy(o1);
    smlp_optim_destroy(o2);
    smlp_session_destroy(cpu);
    smlp_session_destroy(bwd);
    smlp_session_destroy(host);
    smlp_session_destroy(fwd);
    smlp_graph_unload(ga);
    smlp_graph_unload(gh);
    smlp_registry_destroy(registry_for_train);
}
END_TEST

/* W -> poison (its backward fails on the GPU as `mode` says) -> mul by x
 * -> mean: the poison's backward is the last one enqueued. */
static char *
poison_graph(int mode)
{
    static char buf[2048];

    snprintf(buf, sizeof(buf),
             "{\"name\": \"bad\", \"plugins\": [\"fakegpu\"], \"tensors\": ["
             "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 8]},"
             "{\"name\": \"W\", \"kind\": \"Parameter\", \"shape\": [8],"
             " \"init\": {\"kind\": \"Uniform\", \"a\": -1, \"b\": 1, \"seed\": 3}},"
             "{\"name\": \"Wp\"}, {\"name\": \"y\"},"
             "{\"name\": \"loss\", \"kind\": \"Output\"}], \"nodes\": ["
             "{\"name\": \"pp\", \"op\": \"fakegpu.poison\", \"inputs\": [1],"
             " \"outputs\": [2], \"attrs\": [{\"name\": \"in_backward\","
             " \"type\": \"Int\", \"i\": %d}]},"
             "{\"name\": \"m\", \"op\": \"fakegpu.mul\", \"inputs\": [0, 2],"
             " \"outputs\": [3]},"
             "{\"name\": \"mean\", \"op\": \"fakegpu.mean\", \"inputs\": [3],"
             " \"outputs\": [4]}]}",
             mode);
    return buf;
}

/* A device backward that fails on the stream (EDEVICE) or to enqueue
 * (EKERNEL, naming the node): a clear error, not a hang or a crash. */
START_TEST(test_cuda_sched_backward_failures)
{
    smlp_graph_t *g1, *g2;
    smlp_session_t *s;
    smlp_optim_t *opt;

    registry_for_train = tu_fixture_registry();
    g1 = tu_graph_json(poison_graph(1));
    s = train_session(g1, registry_for_train, SMLP_DEVICE_CUDA, 1, &opt);
    tu_run_ok(s);
    ck_assert_int_eq(smlp_session_backward(s), SMLP_EDEVICE);
    tu_assert_contains(smlp_session_errmsg(s),
                       "device cuda: the backward failed on the GPU");
    smlp_optim_destroy(opt);
    smlp_session_destroy(s);
    g2 = tu_graph_json(poison_graph(2));
    s = train_session(g2, registry_for_train, SMLP_DEVICE_CUDA, 1, &opt);
    tu_run_ok(s);
    ck_assert_int_eq(smlp_session_backward(s), SMLP_EKERNEL);
    tu_assert_contains(smlp_session_errmsg(s),
                       "node 0 'pp' (fakegpu.poison): backward failed: "
                       "refused to enqueue (in_backward 2)");
    smlp_optim_destroy(opt);
    smlp_session_destroy(s);
    smlp_graph_unload(g1);
    smlp_graph_unload(g2);
    smlp_registry_destroy(registry_for_train);
}
END_TEST

START_TEST(test_cuda_sched_profile_times)
{
    smlp_registry_t *reg = tu_fixture_registry();
    smlp_graph_t *g = tu_graph_json(graph_chain);
    smlp_session_t *s = session(g, reg, SMLP_DEVICE_CUDA, 2, 1);
    struct smlp_node_profile p;
    struct timespec t0, t1;
    double wall_us;
    int i, r;

    /* Each node's times lie within the run (measured around it, so an
     * upper bound); a GPU node's come from its events on the stream, the
     * end one after its kernel (n0 and n2 here: strictly later). */
    for (r = 0; r < 2; r++) {
        clock_gettime(CLOCK_MONOTONIC, &t0);
        tu_run_ok(s);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        wall_us = 1e6 * (double)(t1.tv_sec - t0.tv_sec) +
                  1e-3 * (double)(t1.tv_nsec - t0.tv_nsec);
        for (i = 0; i < smlp_graph_node_count(g); i++) {
            ck_assert_int_eq(smlp_session_node_profile(s, i, &p), SMLP_OK);
            ck_assert_msg(p.start_us >= 0 && p.end_us >= p.start_us &&
                              p.end_us <= wall_us,
                          "node %s: %g .. %g, run %g us", p.name, p.start_us,
                          p.end_us, wall_us);
            if (strcmp(p.op, "fakegpu.affine") == 0)
                ck_assert_msg(p.end_us > p.start_us, "node %s: %g .. %g",
                              p.name, p.start_us, p.end_us);
        }
    }
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

static Suite *
cuda_sched_train_suite(void)
{
    Suite *s = suite_create("cuda_sched_train");
    TCase *tc = tcase_create("fake");

    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_cuda_sched_training_bit_identical, 0, 2);
    tcase_add_test(tc, test_cuda_sched_backward_side_notice);
    tcase_add_test(tc, test_cuda_sched_backward_failures);
    tcase_add_test(tc, test_cuda_sched_device_stats);
    tcase_add_test(tc, test_cuda_sched_profile_times);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(cuda_sched_train_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
