/*
 * check_cuda_sched.c - the runtime's GPU path without a GPU, forward:
 * placement (with CPU fallback and its notice), the device arena and the
 * copies between host and device, parameter uploads, state downloads,
 * fences, the two-phase scheduling and a failing stream, all run on the
 * fake CUDA runtime of tests/fakecuda.c (linked into this program) with
 * the fixture plugin tests/plugins/fakegpu.c.  Results must equal the CPU
 * session's bit for bit: the fake "GPU" kernels do the same float
 * arithmetic, so any missing copy or ordering shows as a difference
 * (fakecuda runs each stream operation after a random pause).  Training:
 * check_cuda_sched_train.c; what the runtime allocates, copies and
 * reports on failure: check_cuda_sched_fail.c.
 */
#include "cudaschedfx.h"

START_TEST(test_cuda_sched_chain_fallback)
{
    smlp_registry_t *reg = tu_fixture_registry();
    smlp_graph_t *g = tu_graph_json(graph_chain);
    smlp_session_t *cpu = session(g, reg, SMLP_DEVICE_CPU, 3, 1), *gpu;
    struct make_args a;
    const char *msg;
    int64_t n, i;
    float *x, *out;

    a.g = g;
    a.reg = reg;
    smlp_session_opts_init(&a.o);
    a.o.device = SMLP_DEVICE_CUDA;
    a.o.batch = 3;
    msg = capture_stderr(make_session, &a, &gpu);
    ck_assert_msg(gpu != NULL, "%s", a.err.msg);
    tu_assert_contains(msg, "node 1 'n1' (fakegpu.host): no cuda kernel, "
                            "runs on the CPU");
    ck_assert_ptr_null(strstr(msg, "'n0'"));
    tu_run_ok(cpu);
    tu_run_ok(gpu);
    expect_same(cpu, gpu, "out");
    x = data(gpu, "x", &n);
    out = data(gpu, "out", NULL);
    for (i = 0; i < n; i++)
        ck_assert_float_eq(out[i], -0.75f * ((2.0f * x[i] + 1.0f) + 1.0f) +
                                       0.5f);
    /* New inputs reach the device at the next run. */
    for (i = 0; i < n; i++)
        x[i] = (float)i;
    tu_run_ok(gpu);
    out = data(gpu, "out", NULL);
    for (i = 0; i < n; i++)
        ck_assert_float_eq(out[i], -0.75f * ((2.0f * (float)i + 1.0f) +
                                             1.0f) +
                                       0.5f);
    smlp_session_destroy(cpu);
    smlp_session_destroy(gpu);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

START_TEST(test_cuda_sched_params_upload)
{
    smlp_registry_t *reg = tu_fixture_registry();
    smlp_graph_t *g = tu_graph_json(graph_param);
    smlp_session_t *s = session(g, reg, SMLP_DEVICE_CUDA, 1, 1), *t, *t2;
    char path[600];
    float *w, *x, *y;
    int i;

    tu_run_ok(s);
    x = data(s, "x", NULL);
    y = data(s, "y", NULL);
    w = data(s, "W", NULL);
    for (i = 0; i < 16; i++)
        ck_assert_float_eq(y[i], x[i] * w[i]);
    /* Written through the pointer smlp_session_tensor gave: uploaded. */
    for (i = 0; i < 16; i++)
        w[i] = (float)(i + 1);
    tu_run_ok(s);
    for (i = 0; i < 16; i++)
        ck_assert_float_eq(y[i], x[i] * (float)(i + 1));
    /* Loaded from a checkpoint: uploaded. */
    snprintf(path, sizeof(path), "%s/w.safetensors", tu_tmpdir());
    ck_assert_int_eq(smlp_session_save_weights(s, path), SMLP_OK);
    t = session(g, reg, SMLP_DEVICE_CUDA, 1, 1);
    tu_run_ok(t);
    ck_assert_int_eq(smlp_session_load_weights(t, path), SMLP_OK);
    tu_run_ok(t);
    expect_same(s, t, "y");
    /* Loaded from a training checkpoint after a run: uploaded too. */
    snprintf(path, sizeof(path), "%s/w.ckpt.safetensors", tu_tmpdir());
    ck_assert_int_eq(smlp_checkpoint_save(s, NULL, path, NULL, NULL, 0),
                     SMLP_OK);
    t2 = session(g, reg, SMLP_DEVICE_CUDA, 1, 1);
    tu_run_ok(t2);
    ck_assert_int_eq(smlp_checkpoint_load(t2, NULL, path), SMLP_OK);
    tu_run_ok(t2);
    x = data(t2, "x", NULL);
    y = data(t2, "y", NULL);
    for (i = 0; i < 16; i++)
        ck_assert_float_eq(y[i], x[i] * (float)(i + 1));
    smlp_session_destroy(t2);
    smlp_session_destroy(s);
    smlp_session_destroy(t);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

START_TEST(test_cuda_sched_state_download)
{
    smlp_registry_t *reg = tu_fixture_registry();
    smlp_graph_t *g = tu_graph_json(graph_state);
    smlp_session_t *cpu = session(g, reg, SMLP_DEVICE_CPU, 1, 1);
    smlp_session_t *gpu = session(g, reg, SMLP_DEVICE_CUDA, 1, 1);
    const float *x;
    int i, r;

    for (r = 0; r < 3; r++) {
        tu_run_ok(cpu);
        tu_run_ok(gpu);
        expect_same(cpu, gpu, "y");
        expect_same(cpu, gpu, "s"); /* copied back after each run */
    }
    x = data(gpu, "x", NULL);
    for (i = 0; i < 8; i++)
        ck_assert_float_eq(data(gpu, "s", NULL)[i],
                           1.0f + x[i] + x[i] + x[i]);
    smlp_session_destroy(cpu);
    smlp_session_destroy(gpu);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

START_TEST(test_cuda_sched_random_dags_bit_identical)
{
    smlp_registry_t *reg = tu_fixture_registry();
    unsigned seed;

    for (seed = 1; seed <= 6; seed++) {
        char *json = random_dag(seed * 7919u, 40, 0);
        smlp_graph_t *g = tu_graph_json(json);
        smlp_session_t *cpu = session(g, reg, SMLP_DEVICE_CPU, 1, 1);
        smlp_session_t *g1 = session(g, reg, SMLP_DEVICE_CUDA, 1, 1);
        smlp_session_t *g3 = session(g, reg, SMLP_DEVICE_CUDA, 1, 3);
        int k, r;

        for (r = 0; r < 2; r++) {
            tu_run_ok(cpu);
            tu_run_ok(g1);
            tu_run_ok(g3);
            for (k = 0; k < smlp_session_tensor_count(cpu, 4); k++) {
                const char *name = smlp_session_tensor_name(cpu, 4, k);
                expect_same(cpu, g1, name);
                expect_same(cpu, g3, name);
            }
        }
        smlp_session_destroy(cpu);
        smlp_session_destroy(g1);
        smlp_session_destroy(g3);
        smlp_graph_unload(g);
        free(json);
    }
    smlp_registry_destroy(reg);
}
END_TEST

static const char *graph_poison =
    "{\"name\": \"poison\", \"plugins\": [\"fakegpu\"], \"tensors\": ["
    "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 4]},"
    "{\"name\": \"a\"}, {\"name\": \"p\"},"
    "{\"name\": \"out\", \"kind\": \"Output\"}],"
    "\"nodes\": ["
    "{\"name\": \"n0\", \"op\": \"fakegpu.affine\", \"inputs\": [0],"
    " \"outputs\": [1]},"
    "{\"name\": \"n1\", \"op\": \"fakegpu.poison\", \"inputs\": [1],"
    " \"outputs\": [2]},"
    "{\"name\": \"n2\", \"op\": \"fakegpu.host\", \"inputs\": [2],"
    " \"outputs\": [3]}]}";

START_TEST(test_cuda_sched_stream_failure)
{
    smlp_registry_t *reg = tu_fixture_registry();
    smlp_graph_t *g = tu_graph_json(graph_poison);
    smlp_session_t *s = session(g, reg, SMLP_DEVICE_CUDA, 1, 1);

    /* The fences never run: the watchdog notices and the run ends. */
    ck_assert_int_ne(smlp_session_run(s), SMLP_OK);
    tu_assert_contains(smlp_session_errmsg(s), "device cuda: ");
    tu_assert_contains(smlp_session_errmsg(s),
                       "an illegal memory access was encountered");
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * A CUDA kernel that refuses its input returns SMLP_EINVAL (the status
 * whose value is -1, the edge of the runtime's "rc < 0" test): the run
 * fails as any failed kernel does (SMLP_EKERNEL) with the kernel's
 * message, naming the node, and the host-only node after it never runs.
 */
START_TEST(test_cuda_sched_kernel_einval)
{
    static const char *json =
        "{\"name\": \"refuse\", \"plugins\": [\"fakegpu\"], \"tensors\": ["
        "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 4]},"
        "{\"name\": \"a\"}, {\"name\": \"p\"},"
        "{\"name\": \"out\", \"kind\": \"Output\"}],"
        "\"nodes\": ["
        "{\"name\": \"n0\", \"op\": \"fakegpu.affine\", \"inputs\": [0],"
        " \"outputs\": [1]},"
        "{\"name\": \"n1\", \"op\": \"fakegpu.poison\", \"inputs\": [1],"
        " \"outputs\": [2], \"attrs\": [{\"name\": \"refuse\","
        " \"type\": \"Int\", \"i\": 1}]},"
        "{\"name\": \"n2\", \"op\": \"fakegpu.host\", \"inputs\": [2],"
        " \"outputs\": [3]}]}";
    smlp_registry_t *reg = tu_fixture_registry();
    smlp_graph_t *g = tu_graph_json(json);
    smlp_session_t *s = session(g, reg, SMLP_DEVICE_CUDA, 1, 1);
    struct smlp_tensor out;

    ck_assert_int_eq(smlp_session_tensor(s, "out", &out), SMLP_OK);
    ((float *)out.data)[0] = 12345.0f;
    ck_assert_int_eq(smlp_session_run(s), SMLP_EKERNEL);
    tu_assert_contains(smlp_session_errmsg(s),
                       "node 1 'n1' (fakegpu.poison) failed: refused its "
                       "input (attribute refuse)");
    ck_assert(((float *)out.data)[0] == 12345.0f);
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

START_TEST(test_cuda_sched_no_device_message)
{
    smlp_registry_t *reg = tu_fixture_registry();
    smlp_graph_t *g = tu_graph_json(graph_param);
    struct smlp_session_opts o;
    struct smlp_error err;

    setenv("FAKECUDA_NO_DEVICE", "1", 1);
    smlp_session_opts_init(&o);
    o.device = SMLP_DEVICE_CUDA;
    ck_assert_ptr_null(smlp_session_create(g, reg, &o, &err));
    unsetenv("FAKECUDA_NO_DEVICE");
    ck_assert_int_eq(err.status, SMLP_EDEVICE);
    tu_assert_contains(err.msg,
                       "device cuda: no CUDA device: CUDA driver version is "
                       "insufficient for CUDA runtime version "
                       "(cudaErrorInsufficientDriver, code 35)");
    o.device = 7;
    ck_assert_ptr_null(smlp_session_create(g, reg, &o, &err));
    ck_assert_int_eq(err.status, SMLP_EINVAL);
    tu_assert_contains(err.msg, "device 7 is unknown");
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

START_TEST(test_cuda_sched_all_cpu_and_plan_only)
{
    static const char *json =
        "{\"name\": \"cpu\", \"plugins\": [\"fakegpu\"], \"tensors\": ["
        "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 4]},"
        "{\"name\": \"y\", \"kind\": \"Output\"}],"
        "\"nodes\": [{\"name\": \"h\", \"op\": \"fakegpu.host\","
        " \"inputs\": [0], \"outputs\": [1]}]}";
    smlp_registry_t *reg = tu_fixture_registry();
    smlp_graph_t *g = tu_graph_json(json), *gc = tu_graph_json(graph_chain);
    smlp_session_t *cpu = session(g, reg, SMLP_DEVICE_CPU, 2, 1);
    smlp_session_t *gpu = session(g, reg, SMLP_DEVICE_CUDA, 2, 1), *p;
    struct smlp_session_opts o;
    struct smlp_error err;

    tu_run_ok(cpu);
    tu_run_ok(gpu); /* nothing to place on the GPU: a CPU session */
    expect_same(cpu, gpu, "y");
    smlp_session_opts_init(&o);
    o.device = SMLP_DEVICE_CUDA;
    o.plan_only = 1;
    p = smlp_session_create(gc, reg, &o, &err);
    ck_assert_msg(p != NULL, "%s", err.msg);
    ck_assert_int_eq(smlp_session_run(p), SMLP_EINVAL);
    smlp_session_destroy(p);
    smlp_session_destroy(cpu);
    smlp_session_destroy(gpu);
    smlp_graph_unload(g);
    smlp_graph_unload(gc);
    smlp_registry_destroy(reg);
}
END_TEST

static Suite *
cuda_sched_suite(void)
{
    Suite *s = suite_create("cuda_sched");
    TCase *tc = tcase_create("fake");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_cuda_sched_chain_fallback);
    tcase_add_test(tc, test_cuda_sched_params_upload);
    tcase_add_test(tc, test_cuda_sched_state_download);
    tcase_add_test(tc, test_cuda_sched_random_dags_bit_identical);
    tcase_add_test(tc, test_cuda_sched_stream_failure);
    tcase_add_test(tc, test_cuda_sched_kernel_einval);
    tcase_add_test(tc, test_cuda_sched_no_device_message);
    tcase_add_test(tc, test_cuda_sched_all_cpu_and_plan_only);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(cuda_sched_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
