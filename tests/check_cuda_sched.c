/*
 * check_cuda_sched.c - the runtime's GPU path without a GPU: placement
 * (with CPU fallback and its notice), the device arena and the copies
 * between host and device, parameter uploads, state downloads, fences,
 * the two-phase scheduling and a failing stream, all run on the fake CUDA
 * runtime of tests/fakecuda.c (linked into this program) with the
 * fixture plugin tests/plugins/fakegpu.c.  Results must equal the CPU
 * session's bit for bit: the fake "GPU" kernels do the same float
 * arithmetic, so any missing copy or ordering shows as a difference
 * (fakecuda runs each stream operation after a random pause).
 */
#include <math.h>
#include <stdint.h>
#include <time.h>

#include "testutil.h"

static smlp_registry_t *
registry(void)
{
    struct smlp_error err;
    char dir[512];
    smlp_registry_t *reg;

    tu_fixture_dir(dir, sizeof(dir));
    reg = smlp_registry_create(dir, &err);
    ck_assert_msg(reg != NULL, "%s", err.msg);
    return reg;
}

static smlp_graph_t *
graph_json(const char *json)
{
    struct smlp_error err;
    char path[512];
    smlp_graph_t *g;

    tu_graph_from_json(tu_tmpdir(), "g", json, path, sizeof(path));
    g = smlp_graph_load(path, &err);
    ck_assert_msg(g != NULL, "%s", err.msg);
    return g;
}

/* Runs f(arg) with stderr going to a file; returns what it printed. */
static const char *
capture_stderr(smlp_session_t *(*f)(void *), void *arg, smlp_session_t **s)
{
    int saved = tu_stderr_begin();

    *s = f(arg);
    return tu_stderr_end(saved);
}

struct make_args {
    const smlp_graph_t *g;
    smlp_registry_t *reg;
    struct smlp_session_opts o;
    struct smlp_error err;
};

static smlp_session_t *
make_session(void *arg)
{
    struct make_args *a = arg;

    return smlp_session_create(a->g, a->reg, &a->o, &a->err);
}

static smlp_session_t *
session(const smlp_graph_t *g, smlp_registry_t *reg, int device,
        int64_t batch, int threads)
{
    struct make_args a;
    smlp_session_t *s;

    a.g = g;
    a.reg = reg;
    smlp_session_opts_init(&a.o);
    a.o.device = device;
    a.o.batch = batch;
    a.o.threads = threads;
    s = make_session(&a);
    ck_assert_msg(s != NULL, "%s", a.err.msg);
    return s;
}

static float *
data(smlp_session_t *s, const char *name, int64_t *numel)
{
    struct smlp_tensor t;

    ck_assert_int_eq(smlp_session_tensor(s, name, &t), SMLP_OK);
    ck_assert_ptr_nonnull(t.data);
    if (numel != NULL)
        *numel = smlp_tensor_numel(&t);
    return t.data;
}

static void
run_ok(smlp_session_t *s)
{
    ck_assert_msg(smlp_session_run(s) == SMLP_OK, "%s",
                  smlp_session_errmsg(s));
}

static void
expect_same(smlp_session_t *a, smlp_session_t *b, const char *name)
{
    int64_t n1, n2, i;
    const float *x = data(a, name, &n1), *y = data(b, name, &n2);

    ck_assert_int_eq(n1, n2);
    for (i = 0; i < n1; i++)
        ck_assert_msg(memcmp(&x[i], &y[i], sizeof(float)) == 0,
                      "%s[%lld]: %.9g (cpu) vs %.9g (fake cuda)", name,
                      (long long)i, x[i], y[i]);
}

/* x -> affine (gpu) -> host (cpu fallback) -> affine (gpu) -> reshape
 * (a view) -> out. */
static const char *graph_chain =
    "{\"name\": \"chain\", \"plugins\": [\"core\", \"fakegpu\"],"
    " \"tensors\": ["
    "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 33]},"
    "{\"name\": \"a1\"}, {\"name\": \"h\"}, {\"name\": \"a2\"},"
    "{\"name\": \"out\", \"kind\": \"Output\"}],"
    "\"nodes\": ["
    "{\"name\": \"n0\", \"op\": \"fakegpu.affine\", \"inputs\": [0],"
    " \"outputs\": [1], \"attrs\": [{\"name\": \"a\", \"type\": \"Float\","
    " \"f\": 2.0}, {\"name\": \"b\", \"type\": \"Float\", \"f\": 1.0}]},"
    "{\"name\": \"n1\", \"op\": \"fakegpu.host\", \"inputs\": [1],"
    " \"outputs\": [2]},"
    "{\"name\": \"n2\", \"op\": \"fakegpu.affine\", \"inputs\": [2],"
    " \"outputs\": [3], \"attrs\": [{\"name\": \"a\", \"type\": \"Float\","
    " \"f\": -0.75}, {\"name\": \"b\", \"type\": \"Float\", \"f\": 0.5}]},"
    "{\"name\": \"n3\", \"op\": \"core.reshape\", \"inputs\": [3],"
    " \"outputs\": [4], \"attrs\": [{\"name\": \"shape\", \"type\":"
    " \"Ints\", \"ints\": [-1]}]}]}";

START_TEST(test_cuda_sched_chain_fallback)
{
    smlp_registry_t *reg = registry();
    smlp_graph_t *g = graph_json(graph_chain);
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
    run_ok(cpu);
    run_ok(gpu);
    expect_same(cpu, gpu, "out");
    x = data(gpu, "x", &n);
    out = data(gpu, "out", NULL);
    for (i = 0; i < n; i++)
        ck_assert_float_eq(out[i], -0.75f * ((2.0f * x[i] + 1.0f) + 1.0f) +
                                       0.5f);
    /* New inputs reach the device at the next run. */
    for (i = 0; i < n; i++)
        x[i] = (float)i;
    run_ok(gpu);
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

static const char *graph_param =
    "{\"name\": \"param\", \"plugins\": [\"fakegpu\"], \"tensors\": ["
    "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 16]},"
    "{\"name\": \"W\", \"kind\": \"Parameter\", \"shape\": [16],"
    " \"init\": {\"kind\": \"Uniform\", \"a\": -1, \"b\": 1, \"seed\": 5}},"
    "{\"name\": \"y\", \"kind\": \"Output\"}],"
    "\"nodes\": [{\"name\": \"m\", \"op\": \"fakegpu.mul\","
    " \"inputs\": [0, 1], \"outputs\": [2]}]}";

START_TEST(test_cuda_sched_params_upload)
{
    smlp_registry_t *reg = registry();
    smlp_graph_t *g = graph_json(graph_param);
    smlp_session_t *s = session(g, reg, SMLP_DEVICE_CUDA, 1, 1), *t, *t2;
    char path[600];
    float *w, *x, *y;
    int i;

    run_ok(s);
    x = data(s, "x", NULL);
    y = data(s, "y", NULL);
    w = data(s, "W", NULL);
    for (i = 0; i < 16; i++)
        ck_assert_float_eq(y[i], x[i] * w[i]);
    /* Written through the pointer smlp_session_tensor gave: uploaded. */
    for (i = 0; i < 16; i++)
        w[i] = (float)(i + 1);
    run_ok(s);
    for (i = 0; i < 16; i++)
        ck_assert_float_eq(y[i], x[i] * (float)(i + 1));
    /* Loaded from a checkpoint: uploaded. */
    snprintf(path, sizeof(path), "%s/w.safetensors", tu_tmpdir());
    ck_assert_int_eq(smlp_session_save_weights(s, path), SMLP_OK);
    t = session(g, reg, SMLP_DEVICE_CUDA, 1, 1);
    run_ok(t);
    ck_assert_int_eq(smlp_session_load_weights(t, path), SMLP_OK);
    run_ok(t);
    expect_same(s, t, "y");
    /* Loaded from a training checkpoint after a run: uploaded too. */
    snprintf(path, sizeof(path), "%s/w.ckpt.safetensors", tu_tmpdir());
    ck_assert_int_eq(smlp_checkpoint_save(s, NULL, path, NULL, NULL, 0),
                     SMLP_OK);
    t2 = session(g, reg, SMLP_DEVICE_CUDA, 1, 1);
    run_ok(t2);
    ck_assert_int_eq(smlp_checkpoint_load(t2, NULL, path), SMLP_OK);
    run_ok(t2);
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

static const char *graph_state =
    "{\"name\": \"state\", \"plugins\": [\"fakegpu\"], \"tensors\": ["
    "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 8]},"
    "{\"name\": \"s\", \"kind\": \"State\", \"shape\": [8],"
    " \"init\": {\"kind\": \"Constant\", \"a\": 1}},"
    "{\"name\": \"y\", \"kind\": \"Output\"}],"
    "\"nodes\": [{\"name\": \"acc\", \"op\": \"fakegpu.accum\","
    " \"inputs\": [0, 1], \"outputs\": [2]}]}";

START_TEST(test_cuda_sched_state_download)
{
    smlp_registry_t *reg = registry();
    smlp_graph_t *g = graph_json(graph_state);
    smlp_session_t *cpu = session(g, reg, SMLP_DEVICE_CPU, 1, 1);
    smlp_session_t *gpu = session(g, reg, SMLP_DEVICE_CUDA, 1, 1);
    const float *x;
    int i, r;

    for (r = 0; r < 3; r++) {
        run_ok(cpu);
        run_ok(gpu);
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

/*
 * A random DAG over tensors [1, 64]: affine and mul on the "GPU", host on
 * the CPU, reshape views, a parameter, several outputs, wide levels.
 */
enum { DAG_LOSS = 1, DAG_NO_HOST = 2 };

static char *
random_dag(unsigned seed, int n_nodes, int flags)
{
    int with_loss = flags & DAG_LOSS;
    size_t cap = 65536, len = 0;
    char *j = malloc(cap);
    int i, n_t = 2;

    ck_assert_ptr_nonnull(j);
#define PUT(...)                                                             \
    len += (size_t)snprintf(j + len, cap - len, __VA_ARGS__)
    PUT("{\"name\": \"dag\", \"plugins\": [\"core\", \"fakegpu\"],"
        " \"tensors\": [{\"name\": \"x\", \"kind\": \"Input\","
        " \"shape\": [-1, 64]}, {\"name\": \"W\", \"kind\": \"Parameter\","
        " \"shape\": [64], \"init\": {\"kind\":"
        " \"Uniform\", \"a\": -1, \"b\": 1, \"seed\": %u}}",
        seed);
    for (i = 0; i < n_nodes; i++)
        PUT(", {\"name\": \"t%d\"%s}", i,
            i >= n_nodes - 3 || i % 7 == 3 ? ", \"kind\": \"Output\"" : "");
    if (with_loss) /* loss = mean of the last tensor */
        PUT(", {\"name\": \"loss\", \"kind\": \"Output\"}");
    PUT("], \"nodes\": [");
    for (i = 0; i < n_nodes; i++) {
        /* Inputs among the last few tensors: wide, with reuse. */
        int back = 1 + (int)(rand_r(&seed) % 5u);
        int in = n_t - back < 0 ? 0 : n_t - back;
        int kind = (int)(rand_r(&seed) % 8u);

        if (in == 1)
            in = 0; /* W is not an activation */
        PUT("%s{\"name\": \"n%d\", ", i ? ", " : "", i);
        if (kind < 3)
            PUT("\"op\": \"fakegpu.affine\", \"inputs\": [%d], \"attrs\": "
                "[{\"name\": \"a\", \"type\": \"Float\", \"f\": %g}, "
                "{\"name\": \"b\", \"type\": \"Float\", \"f\": %g}]",
                in, 0.5 + (rand_r(&seed) % 100) / 100.0,
                (rand_r(&seed) % 100) / 50.0 - 1.0);
        else if (kind < 5 && !(flags & DAG_NO_HOST))
            PUT("\"op\": \"fakegpu.host\", \"inputs\": [%d]", in);
        else if (kind < 5) /* host's x + 1, on the GPU */
            PUT("\"op\": \"fakegpu.affine\", \"inputs\": [%d], \"attrs\": "
                "[{\"name\": \"a\", \"type\": \"Float\", \"f\": 1}, "
                "{\"name\": \"b\", \"type\": \"Float\", \"f\": 1}]",
                in);
        else if (kind < 6)
            PUT("\"op\": \"core.reshape\", \"inputs\": [%d], \"attrs\": "
                "[{\"name\": \"shape\", \"type\": \"Ints\", \"ints\": "
                "[0, 64]}]",
                in);
        else {
            int other = (int)(rand_r(&seed) % 3u);
            int second = n_t - 1 - (int)(rand_r(&seed) % 3u);

            if (second < 2)
                second = 0;
            if (other == 0)
                second = 1; /* the parameter */
            PUT("\"op\": \"fakegpu.mul\", \"inputs\": [%d, %d]", in, second);
        }
        PUT(", \"outputs\": [%d]}", n_t);
        n_t++;
    }
    if (with_loss)
        PUT(", {\"name\": \"mean\", \"op\": \"fakegpu.mean\", \"inputs\":"
            " [%d], \"outputs\": [%d]}", n_t - 1, n_t);
    PUT("]}");
#undef PUT
    ck_assert_uint_lt(len, cap);
    return j;
}

START_TEST(test_cuda_sched_random_dags_bit_identical)
{
    smlp_registry_t *reg = registry();
    unsigned seed;

    for (seed = 1; seed <= 6; seed++) {
        char *json = random_dag(seed * 7919u, 40, 0);
        smlp_graph_t *g = graph_json(json);
        smlp_session_t *cpu = session(g, reg, SMLP_DEVICE_CPU, 1, 1);
        smlp_session_t *g1 = session(g, reg, SMLP_DEVICE_CUDA, 1, 1);
        smlp_session_t *g3 = session(g, reg, SMLP_DEVICE_CUDA, 1, 3);
        int k, r;

        for (r = 0; r < 2; r++) {
            run_ok(cpu);
            run_ok(g1);
            run_ok(g3);
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

static smlp_registry_t *registry_for_train; /* make_train's */

/* A training session (loss "loss", SGD with momentum) on `device`. */
static smlp_session_t *
train_session(const smlp_graph_t *g, smlp_registry_t *reg, int device,
              int threads, smlp_optim_t **opt)
{
    struct smlp_optim_opts oo;
    struct smlp_session_opts o;
    struct smlp_error err;
    smlp_session_t *s;

    smlp_session_opts_init(&o);
    o.device = device;
    o.threads = threads;
    o.training = 1;
    o.loss = "loss";
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    smlp_optim_opts_init(&oo);
    oo.kind = SMLP_OPTIM_SGD;
    oo.weight_decay = 0;
    *opt = smlp_optim_create(s, &oo, &err);
    ck_assert_msg(*opt != NULL, "%s", err.msg);
    return s;
}

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
    smlp_registry_t *reg = registry();
    int flags = _i == 1 ? DAG_NO_HOST : 0, before = fakecuda_backwards();
    unsigned seed;
    int moved = 0;

    for (seed = 1; seed <= 6; seed++) {
        char *json = random_dag(seed * 104729u, 30, DAG_LOSS | flags);
        smlp_graph_t *g = graph_json(json);
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
                run_ok(all[k]);
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

    registry_for_train = registry();
    gh = graph_json(loss_graph("{\"name\": \"hh\", \"op\": \"fakegpu.host\","
                               " \"inputs\": [2], \"outputs\": [3]}"));
    out = capture_stderr(make_train, gh, &s);
    tu_assert_contains(out, "node 1 'hh' (fakegpu.host): no cuda backward, "
                            "so the backward runs on the CPU");
    before = fakecuda_backwards();
    run_ok(s);
    ck_assert_int_eq(smlp_session_backward(s), SMLP_OK);
    ck_assert_int_eq(fakecuda_backwards(), before);
    smlp_session_destroy(s);
    smlp_graph_unload(gh);
    /* A kernel of an ABI 1.2 plugin has no backward, whatever follows. */
    gh = graph_json(loss_graph("{\"name\": \"oo\", \"op\": \"fakegpu.old\","
                               " \"inputs\": [2], \"outputs\": [3]}"));
    out = capture_stderr(make_train, gh, &s);
    tu_assert_contains(out, "node 1 'oo' (fakegpu.old): no cuda backward");
    run_ok(s);
    ck_assert_int_eq(smlp_session_backward(s), SMLP_OK);
    ck_assert_int_eq(fakecuda_backwards(), before);
    smlp_session_destroy(s);
    ga = graph_json(loss_graph("{\"name\": \"aa\", \"op\": \"fakegpu.affine\","
                               " \"inputs\": [2], \"outputs\": [3]}"));
    out = capture_stderr(make_train, ga, &s);
    ck_assert_msg(strstr(out, "backward") == NULL, "%s", out);
    run_ok(s);
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

    registry_for_train = registry();
    ga = graph_json(loss_graph("{\"name\": \"aa\", \"op\": \"fakegpu.affine\","
                               " \"inputs\": [2], \"outputs\": [3]}"));
    gh = graph_json(loss_graph("{\"name\": \"hh\", \"op\": \"fakegpu.host\","
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

    registry_for_train = registry();
    g1 = graph_json(poison_graph(1));
    s = train_session(g1, registry_for_train, SMLP_DEVICE_CUDA, 1, &opt);
    run_ok(s);
    ck_assert_int_eq(smlp_session_backward(s), SMLP_EDEVICE);
    tu_assert_contains(smlp_session_errmsg(s),
                       "device cuda: the backward failed on the GPU");
    smlp_optim_destroy(opt);
    smlp_session_destroy(s);
    g2 = graph_json(poison_graph(2));
    s = train_session(g2, registry_for_train, SMLP_DEVICE_CUDA, 1, &opt);
    run_ok(s);
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
    smlp_registry_t *reg = registry();
    smlp_graph_t *g = graph_json(graph_chain);
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
        run_ok(s);
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
    smlp_registry_t *reg = registry();
    smlp_graph_t *g = graph_json(graph_poison);
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

START_TEST(test_cuda_sched_no_device_message)
{
    smlp_registry_t *reg = registry();
    smlp_graph_t *g = graph_json(graph_param);
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
    smlp_registry_t *reg = registry();
    smlp_graph_t *g = graph_json(json), *gc = graph_json(graph_chain);
    smlp_session_t *cpu = session(g, reg, SMLP_DEVICE_CPU, 2, 1);
    smlp_session_t *gpu = session(g, reg, SMLP_DEVICE_CUDA, 2, 1), *p;
    struct smlp_session_opts o;
    struct smlp_error err;

    run_ok(cpu);
    run_ok(gpu); /* nothing to place on the GPU: a CPU session */
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

/* ---- what the runtime allocates, copies and reports on failure ------- */

/* tests/fakecuda.c: failures on demand and counts (see there). */
void fakecuda_fail(const char *fn, int skip, int e);
long fakecuda_count(const char *what);

#define FAKE_ERR 2 /* cudaErrorMemoryAllocation: "fake CUDA error" here */

static const char *const live_kinds[5] = {"allocs", "events", "streams",
                                          "blas", "pinned"};

static void
live_counts(long *c)
{
    int k;

    for (k = 0; k < 5; k++)
        c[k] = fakecuda_count(live_kinds[k]);
}

/* Everything the fake runtime counts as live is back to `before`. */
static void
expect_released(const long *before, const char *label)
{
    long now[5];
    int k;

    live_counts(now);
    for (k = 0; k < 5; k++)
        ck_assert_msg(now[k] == before[k], "%s: %ld %s live, %ld before",
                      label, now[k], live_kinds[k], before[k]);
}

/*
 * Bytes crossing the boundary, derived by hand: each tensor crosses once
 * per run whatever its number of readers; inputs go up at every run,
 * parameters only when stale (first run, after smlp_session_tensor),
 * state comes back after every run.
 */
START_TEST(test_cuda_sched_copies_counted)
{
    smlp_registry_t *reg = registry();
    smlp_graph_t *gc = graph_json(graph_chain), *gp = graph_json(graph_param);
    smlp_graph_t *gs = graph_json(graph_state);
    smlp_session_t *s;
    long up, down;
    int r;

    /* chain, batch 3: every tensor 3 * 33 floats = 396 bytes.  Up: x and
     * the host node's h; down: a1 (for the host node) and a2 (out).
     * Events: the run's base and two per GPU node (n0, n2). */
    up = fakecuda_count("events");
    s = session(gc, reg, SMLP_DEVICE_CUDA, 3, 1);
    ck_assert_int_eq(fakecuda_count("events") - up, 1 + 2 * 2);
    for (r = 0; r < 2; r++) {
        up = fakecuda_count("h2d");
        down = fakecuda_count("d2h");
        run_ok(s);
        ck_assert_int_eq(fakecuda_count("h2d") - up, 2 * 396);
        ck_assert_int_eq(fakecuda_count("d2h") - down, 2 * 396);
    }
    ck_assert_int_eq(fakecuda_count("d2d"), 0);
    smlp_session_destroy(s);
    /* param: x and W 64 bytes each, then x alone, then W again once
     * smlp_session_tensor has handed it out; y comes down each time. */
    s = session(gp, reg, SMLP_DEVICE_CUDA, 1, 1);
    for (r = 0; r < 3; r++) {
        if (r == 2)
            (void)data(s, "W", NULL);
        up = fakecuda_count("h2d");
        down = fakecuda_count("d2h");
        run_ok(s);
        ck_assert_int_eq(fakecuda_count("h2d") - up, r == 1 ? 64 : 128);
        ck_assert_int_eq(fakecuda_count("d2h") - down, 64);
    }
    smlp_session_destroy(s);
    /* state, 8 floats: s goes up once and comes back after each run. */
    s = session(gs, reg, SMLP_DEVICE_CUDA, 1, 1);
    for (r = 0; r < 2; r++) {
        up = fakecuda_count("h2d");
        down = fakecuda_count("d2h");
        run_ok(s);
        ck_assert_int_eq(fakecuda_count("h2d") - up, r == 0 ? 64 : 32);
        ck_assert_int_eq(fakecuda_count("d2h") - down, 64);
    }
    smlp_session_destroy(s);
    smlp_graph_unload(gc);
    smlp_graph_unload(gp);
    smlp_graph_unload(gs);
    smlp_registry_destroy(reg);
}
END_TEST

/* x [-1, N] * W [N] -> y, and with `loss`, mean(y) -> loss. */
static char *
mul_graph(int n, int loss)
{
    static char buf[1024];

    snprintf(buf, sizeof(buf),
             "{\"name\": \"big\", \"plugins\": [\"fakegpu\"], \"tensors\": ["
             "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, %d]},"
             "{\"name\": \"W\", \"kind\": \"Parameter\", \"shape\": [%d],"
             " \"init\": {\"kind\": \"Uniform\", \"a\": -1, \"b\": 1,"
             " \"seed\": 3}}, {\"name\": \"y\"%s}%s], \"nodes\": ["
             "{\"name\": \"m\", \"op\": \"fakegpu.mul\", \"inputs\": [0, 1],"
             " \"outputs\": [2]}%s]}",
             n, n, loss ? "" : ", \"kind\": \"Output\"",
             loss ? ", {\"name\": \"loss\", \"kind\": \"Output\"}" : "",
             loss ? ", {\"name\": \"mean\", \"op\": \"fakegpu.mean\","
                    " \"inputs\": [2], \"outputs\": [3]}"
                  : "");
    return buf;
}

/*
 * Host blocks of 1 MiB or more are page-locked, smaller ones not, and
 * every registration is undone when the session goes; so are the device
 * blocks, events, the stream and the cuBLAS handle the backward opened
 * (once, for its first sum; none without sums).
 */
START_TEST(test_cuda_sched_pinning_and_release)
{
    smlp_graph_t *half, *one, *small, *fan;
    smlp_session_t *a, *b, *c, *d;
    struct smlp_session_stats st;
    smlp_optim_t *ob, *oc, *od;
    long before[5], pinned;
    char *json;

    live_counts(before);
    registry_for_train = registry();
    pinned = fakecuda_count("pinned");
    /* Host arena x + y = 2 * 512 KiB, exactly 1 MiB: pinned; W 512 KiB:
     * not. */
    half = graph_json(mul_graph(131072, 0));
    a = session(half, registry_for_train, SMLP_DEVICE_CUDA, 1, 1);
    ck_assert_int_eq(smlp_session_get_stats(a, &st), SMLP_OK);
    ck_assert_uint_eq(st.arena_bytes, 1 << 20);
    ck_assert_int_eq(fakecuda_count("pinned"), pinned + 1);
    run_ok(a);
    /* Training: W exactly 1 MiB, its gradient block too, the arena more:
     * three blocks. */
    one = graph_json(mul_graph(262144, 1));
    b = train_session(one, registry_for_train, SMLP_DEVICE_CUDA, 1, &ob);
    ck_assert_int_eq(fakecuda_count("pinned"), pinned + 4);
    run_ok(b);
    ck_assert_int_eq(smlp_session_backward(b), SMLP_OK);
    /* No sum in this backward: cuBLAS stays closed. */
    ck_assert_int_eq(fakecuda_count("blas"), before[3]);
    /* A small training session pins nothing. */
    small = graph_json(mul_graph(8, 1));
    c = train_session(small, registry_for_train, SMLP_DEVICE_CUDA, 1, &oc);
    ck_assert_int_eq(fakecuda_count("pinned"), pinned + 4);
    /* Sums open one cuBLAS handle for the session, whatever their
     * number. */
    json = random_dag(3 * 104729u, 30, DAG_LOSS | DAG_NO_HOST);
    fan = graph_json(json);
    free(json);
    d = train_session(fan, registry_for_train, SMLP_DEVICE_CUDA, 1, &od);
    run_ok(d);
    ck_assert_int_eq(smlp_session_backward(d), SMLP_OK);
    run_ok(d);
    ck_assert_int_eq(smlp_session_backward(d), SMLP_OK);
    ck_assert_int_eq(fakecuda_count("blas"), before[3] + 1);
    smlp_optim_destroy(ob);
    smlp_optim_destroy(oc);
    smlp_optim_destroy(od);
    smlp_session_destroy(a);
    smlp_session_destroy(b);
    smlp_session_destroy(c);
    smlp_session_destroy(d);
    expect_released(before, "after destroy");
    smlp_graph_unload(half);
    smlp_graph_unload(one);
    smlp_graph_unload(small);
    smlp_graph_unload(fan);
    smlp_registry_destroy(registry_for_train);
}
END_TEST

/* Creating a CUDA session of g (a training session with loss "loss"
 * when `training`) whose `skip`+1-th call of fn fails: NULL, `status`, a
 * message holding `text`, nothing left behind. */
static void
create_fails_as(const smlp_graph_t *g, smlp_registry_t *reg, int training,
                const char *fn, int skip, int status, const char *text)
{
    struct smlp_session_opts o;
    struct smlp_error err;
    smlp_session_t *s;
    long before[5];

    live_counts(before);
    smlp_session_opts_init(&o);
    o.device = SMLP_DEVICE_CUDA;
    if (training) {
        o.training = 1;
        o.loss = "loss";
    }
    fakecuda_fail(fn, skip, FAKE_ERR);
    s = smlp_session_create(g, reg, &o, &err);
    fakecuda_fail(NULL, 0, 0);
    ck_assert_msg(s == NULL, "%s #%d: the session was created", fn, skip);
    ck_assert_int_eq(err.status, status);
    tu_assert_contains(err.msg, text);
    expect_released(before, fn);
}

static void
create_fails(const smlp_graph_t *g, smlp_registry_t *reg, const char *fn,
             int skip, int status, const char *text)
{
    create_fails_as(g, reg, 0, fn, skip, status, text);
}

/* A run of s whose `skip`+1-th call of fn fails says `text`; the next
 * run works. */
static void
run_fails(smlp_session_t *s, const char *fn, int skip, const char *text)
{
    int rc;

    fakecuda_fail(fn, skip, FAKE_ERR);
    rc = smlp_session_run(s);
    fakecuda_fail(NULL, 0, 0);
    ck_assert_msg(rc != SMLP_OK, "%s #%d: the run succeeded", fn, skip);
    tu_assert_contains(smlp_session_errmsg(s), text);
    run_ok(s);
}

/* x -> host -> h; W -> host -> hw; h * hw (gpu) -> y: W has no device
 * copy. */
static const char *graph_host_param =
    "{\"name\": \"hp\", \"plugins\": [\"fakegpu\"], \"tensors\": ["
    "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 16]},"
    "{\"name\": \"W\", \"kind\": \"Parameter\", \"shape\": [16],"
    " \"init\": {\"kind\": \"Uniform\", \"a\": -1, \"b\": 1, \"seed\": 5}},"
    "{\"name\": \"hw\"}, {\"name\": \"y\", \"kind\": \"Output\"}],"
    "\"nodes\": [{\"name\": \"h\", \"op\": \"fakegpu.host\", \"inputs\": [1],"
    " \"outputs\": [2]}, {\"name\": \"m\", \"op\": \"fakegpu.mul\","
    " \"inputs\": [0, 2], \"outputs\": [3]}]}";

/*
 * Each CUDA call of the forward path failing: the session is not created
 * (the cause said, nothing leaked) or the run fails naming the node and
 * the call, and the next run works.  Call order (device_cuda.c): create:
 * stream, base event, two events per device node, the arena, the
 * parameters' block; a run: base event, uploads, per device node start
 * event, kernel, copies to the host, end event, then a fence.
 */
START_TEST(test_cuda_sched_forward_failures)
{
    smlp_registry_t *reg = registry();
    smlp_graph_t *gp = graph_json(graph_param), *gc = graph_json(graph_chain);
    smlp_graph_t *gs = graph_json(graph_state);
    smlp_graph_t *gh = graph_json(graph_host_param);
    struct smlp_session_opts o;
    struct smlp_error err;
    smlp_session_t *s;
    const float *x, *out;
    long allocs;
    int i;

    create_fails(gp, reg, "cudaStreamCreateWithFlags", 0, SMLP_EDEVICE,
                 "device cuda: cannot open device 0: fake CUDA error "
                 "(cudaErrorUnknown, code 2)");
    create_fails(gp, reg, "cudaEventCreate", 0, SMLP_EDEVICE,
                 "device cuda: cannot open device 0");
    create_fails(gp, reg, "cudaEventCreate", 1, SMLP_EDEVICE,
                 "device cuda: cannot create events: fake CUDA error");
    create_fails(gp, reg, "cudaEventCreate", 2, SMLP_EDEVICE,
                 "device cuda: cannot create events");
    /* x, y and the workspace fakegpu asks for (x's size) 64 bytes each,
     * all live at once; W 64. */
    create_fails(gp, reg, "cudaMalloc", 0, SMLP_ENOMEM,
                 "device cuda: cannot allocate 256 bytes (activations 192 "
                 "+ parameters 64): fake CUDA error");
    create_fails(gp, reg, "cudaMalloc", 1, SMLP_ENOMEM,
                 "cannot allocate 256 bytes");
    /* W only on the host: x, hw, y and m's workspace on the device, no
     * parameter block (one allocation). */
    create_fails(gh, reg, "cudaMalloc", 0, SMLP_ENOMEM,
                 "cannot allocate 256 bytes (activations 256 + parameters "
                 "0)");
    allocs = fakecuda_count("allocs");
    s = session(gh, reg, SMLP_DEVICE_CUDA, 1, 1);
    ck_assert_int_eq(fakecuda_count("allocs"), allocs + 1);
    smlp_session_destroy(s);
    /* A driver that reports no device without an error. */
    setenv("FAKECUDA_NO_DEVICE", "count0", 1);
    smlp_session_opts_init(&o);
    o.device = SMLP_DEVICE_CUDA;
    s = smlp_session_create(gp, reg, &o, &err);
    unsetenv("FAKECUDA_NO_DEVICE");
    ck_assert_ptr_null(s);
    ck_assert_int_eq(err.status, SMLP_EDEVICE);
    tu_assert_contains(err.msg, "device cuda: no CUDA device: the driver "
                                "reports none");
    /* chain: n0 (gpu) -> n1 (host) -> n2 (gpu). */
    s = session(gc, reg, SMLP_DEVICE_CUDA, 1, 1);
    run_fails(s, "cudaEventRecord", 0,
              "device cuda: cannot copy inputs and parameters to the GPU: "
              "fake CUDA error (cudaErrorUnknown, code 2)");
    run_fails(s, "cudaMemcpyAsync", 0,
              "cannot copy inputs and parameters to the GPU");
    run_fails(s, "cudaEventRecord", 1,
              "node 0 'n0' (fakegpu.affine) failed: device cuda: cannot "
              "record an event: fake CUDA error (cudaErrorUnknown)");
    run_fails(s, "cudaEventRecord", 2,
              "node 0 'n0' (fakegpu.affine) failed: device cuda: cannot "
              "record an event");
    run_fails(s, "cudaMemcpyAsync", 1,
              "node 0 'n0' (fakegpu.affine) failed: device cuda: cannot "
              "copy an output to the host");
    run_fails(s, "cudaMemcpyAsync", 2,
              "node 1 'n1' (fakegpu.host) failed: device cuda: cannot copy "
              "an output to the GPU");
    /* n0's kernel is the first host function, the fence behind it the
     * second. */
    run_fails(s, "cudaLaunchHostFunc", 1,
              "device cuda: cannot enqueue a fence: fake CUDA error");
    run_fails(s, "cudaStreamSynchronize", 0,
              "device cuda: the run failed on the GPU: fake CUDA error");
    x = data(s, "x", NULL);
    out = data(s, "out", NULL);
    for (i = 0; i < 33; i++)
        ck_assert_float_eq(out[i], -0.75f * ((2.0f * x[i] + 1.0f) + 1.0f) +
                                       0.5f);
    smlp_session_destroy(s);
    s = session(gs, reg, SMLP_DEVICE_CUDA, 1, 1);
    run_fails(s, "cudaMemcpy", 0,
              "device cuda: cannot copy state back to the host: fake CUDA "
              "error");
    smlp_session_destroy(s);
    /* A run that failed with x's upload still queued (W's failed), then
     * destroyed at once: the stream is waited for before memory goes (the
     * sanitizer build sees a copy into freed memory otherwise). */
    s = session(gp, reg, SMLP_DEVICE_CUDA, 1, 1);
    fakecuda_fail("cudaMemcpyAsync", 1, FAKE_ERR);
    ck_assert_int_eq(smlp_session_run(s), SMLP_EDEVICE);
    fakecuda_fail(NULL, 0, 0);
    smlp_session_destroy(s);
    smlp_graph_unload(gp);
    smlp_graph_unload(gc);
    smlp_graph_unload(gs);
    smlp_graph_unload(gh);
    smlp_registry_destroy(reg);
}
END_TEST

/* x * W -> h, h * W -> y, mean(y) -> loss (W's gradient has two
 * contributions, summed on the GPU); x * V -> z, an output the loss does
 * not read (V's gradient is zeros). */
static const char *graph_fan =
    "{\"name\": \"fan\", \"plugins\": [\"fakegpu\"], \"tensors\": ["
    "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 8]},"
    "{\"name\": \"W\", \"kind\": \"Parameter\", \"shape\": [8],"
    " \"init\": {\"kind\": \"Uniform\", \"a\": -1, \"b\": 1, \"seed\": 3}},"
    "{\"name\": \"V\", \"kind\": \"Parameter\", \"shape\": [8],"
    " \"init\": {\"kind\": \"Uniform\", \"a\": -1, \"b\": 1, \"seed\": 4}},"
    "{\"name\": \"h\"}, {\"name\": \"y\"},"
    "{\"name\": \"loss\", \"kind\": \"Output\"},"
    "{\"name\": \"z\", \"kind\": \"Output\"}], \"nodes\": ["
    "{\"name\": \"m1\", \"op\": \"fakegpu.mul\", \"inputs\": [0, 1],"
    " \"outputs\": [3]},"
    "{\"name\": \"m2\", \"op\": \"fakegpu.mul\", \"inputs\": [3, 1],"
    " \"outputs\": [4]},"
    "{\"name\": \"mean\", \"op\": \"fakegpu.mean\", \"inputs\": [4],"
    " \"outputs\": [5]},"
    "{\"name\": \"mz\", \"op\": \"fakegpu.mul\", \"inputs\": [0, 2],"
    " \"outputs\": [6]}]}";

/* x * W -> h, h * h -> y, mean(y) -> loss. */
static const char *graph_square =
    "{\"name\": \"sq\", \"plugins\": [\"fakegpu\"], \"tensors\": ["
    "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 8]},"
    "{\"name\": \"W\", \"kind\": \"Parameter\", \"shape\": [8],"
    " \"init\": {\"kind\": \"Uniform\", \"a\": -1, \"b\": 1, \"seed\": 3}},"
    "{\"name\": \"h\"}, {\"name\": \"y\"},"
    "{\"name\": \"loss\", \"kind\": \"Output\"}], \"nodes\": ["
    "{\"name\": \"m1\", \"op\": \"fakegpu.mul\", \"inputs\": [0, 1],"
    " \"outputs\": [2]},"
    "{\"name\": \"m2\", \"op\": \"fakegpu.mul\", \"inputs\": [2, 2],"
    " \"outputs\": [3]},"
    "{\"name\": \"mean\", \"op\": \"fakegpu.mean\", \"inputs\": [3],"
    " \"outputs\": [4]}]}";

/* d loss / d W = (x W) / 8 + (W / 8) x, d V = 0, as the CPU sums them. */
static void
expect_fan_grads(smlp_session_t *s)
{
    const float *x = data(s, "x", NULL), *w = data(s, "W", NULL);
    struct smlp_tensor g;
    int i;

    ck_assert_int_eq(smlp_session_grad(s, "W", &g), SMLP_OK);
    for (i = 0; i < 8; i++) {
        float want = (1.0f / 8.0f) * (x[i] * w[i]) +
                     ((1.0f / 8.0f) * w[i]) * x[i];

        ck_assert_msg(((const float *)g.data)[i] == want,
                      "d W[%d] = %.9g, want %.9g", i,
                      ((const float *)g.data)[i], want);
    }
    ck_assert_int_eq(smlp_session_grad(s, "V", &g), SMLP_OK);
    for (i = 0; i < 8; i++)
        ck_assert_msg(((const float *)g.data)[i] == 0.0f, "d V[%d] = %g", i,
                      ((const float *)g.data)[i]);
}

/* A backward of s whose `skip`+1-th call of fn (and, with fn2, the
 * first of fn2) fails: `status` (0: any error) and `text`; then a run and
 * a backward work and give the right gradients. */
static void
backward_fails(smlp_session_t *s, const char *fn, int skip, const char *fn2,
               int status, const char *text)
{
    int rc;

    run_ok(s);
    fakecuda_fail(fn, skip, FAKE_ERR);
    if (fn2 != NULL)
        fakecuda_fail(fn2, 0, FAKE_ERR);
    rc = smlp_session_backward(s);
    fakecuda_fail(NULL, 0, 0);
    ck_assert_msg(status != 0 ? rc == status : rc < 0, "%s #%d: %d (%s)",
                  fn, skip, rc, smlp_session_errmsg(s));
    tu_assert_contains(smlp_session_errmsg(s), text);
    run_ok(s);
    ck_assert_msg(smlp_session_backward(s) == SMLP_OK, "%s",
                  smlp_session_errmsg(s));
    expect_fan_grads(s);
}

/* create_fails for a training session (loss "loss"): ENOMEM or EDEVICE
 * as the message says. */
static void
create_train_fails(const smlp_graph_t *g, const char *fn, int skip,
                   const char *text)
{
    create_fails_as(g, registry_for_train, 1, fn, skip,
                    strstr(text, "allocate") != NULL ? SMLP_ENOMEM
                                                     : SMLP_EDEVICE,
                    text);
}

/*
 * The backward on the device: W's two contributions summed, V's gradient
 * zeroed (device memory starts as NaN here), the same at every step; and
 * each CUDA call of it failing, with the message of the first failure.
 * Call order (device_cuda_bwd.c): create: after the forward's (stream,
 * base event, 2 per device node, arena, parameters) the gradients' block
 * and 2 events per backward node; a backward: the seed copy, per node
 * start event, kernel, end event (mean, m2, m1), cuBLAS (create, the
 * sum), V's zeros, the copy of the gradients, the synchronisation.
 */
START_TEST(test_cuda_sched_backward_device_failures)
{
    smlp_graph_t *g;
    smlp_session_t *s;
    smlp_optim_t *opt;
    int step;

    registry_for_train = registry();
    g = graph_json(graph_fan);
    s = train_session(g, registry_for_train, SMLP_DEVICE_CUDA, 1, &opt);
    for (step = 0; step < 2; step++) {
        run_ok(s);
        ck_assert_msg(smlp_session_backward(s) == SMLP_OK, "%s",
                      smlp_session_errmsg(s));
        expect_fan_grads(s);
    }
    backward_fails(s, "cudaMemcpyAsync", 0, NULL, SMLP_EDEVICE,
                   "device cuda: cannot start the backward: fake CUDA "
                   "error (cudaErrorUnknown, code 2)");
    /* The first failure is the one reported. */
    backward_fails(s, "cudaMemcpyAsync", 0, "cudaStreamSynchronize",
                   SMLP_EDEVICE, "device cuda: cannot start the backward");
    backward_fails(s, "cudaEventRecord", 0, NULL, SMLP_EKERNEL,
                   "node 2 'mean' (fakegpu.mean): backward failed: device "
                   "cuda: cannot record an event: fake CUDA error");
    backward_fails(s, "cudaEventRecord", 1, NULL, SMLP_EKERNEL,
                   "node 2 'mean' (fakegpu.mean): backward failed: device "
                   "cuda: cannot record an event");
    /* A node's failure, then the stream's: the node's is reported. */
    backward_fails(s, "cudaEventRecord", 0, "cudaStreamSynchronize", 0,
                   "node 2 'mean' (fakegpu.mean): backward failed: device "
                   "cuda: cannot record an event");
    backward_fails(s, "cublasSaxpy_v2", 0, NULL, SMLP_EDEVICE,
                   "device cuda: cannot sum the gradient of 'W'");
    backward_fails(s, "cudaMemsetAsync", 0, NULL, SMLP_EDEVICE,
                   "device cuda: cannot zero a gradient: fake CUDA error");
    backward_fails(s, "cudaMemcpyAsync", 1, NULL, SMLP_EDEVICE,
                   "device cuda: cannot copy the gradients to the host");
    backward_fails(s, "cudaStreamSynchronize", 0, NULL, SMLP_EDEVICE,
                   "device cuda: the backward failed on the GPU: fake CUDA "
                   "error");
    smlp_optim_destroy(opt);
    smlp_session_destroy(s);
    /* cuBLAS that does not start: a new session (the handle is kept). */
    s = train_session(g, registry_for_train, SMLP_DEVICE_CUDA, 1, &opt);
    backward_fails(s, "cublasCreate_v2", 0, NULL, SMLP_EDEVICE,
                   "device cuda: cuBLAS failed to start (status 1)");
    smlp_optim_destroy(opt);
    smlp_session_destroy(s);
    /* Creation: the gradients' block (W and V, 64 bytes each), the
     * backward's events (after base and 2 * 4 forward ones). */
    create_train_fails(g, "cudaMalloc", 2,
                       "device cuda: cannot allocate 128 bytes of "
                       "gradients: fake CUDA error");
    create_train_fails(g, "cudaEventCreate", 9,
                       "device cuda: cannot create events");
    smlp_graph_unload(g);
    /* A sum into an activation's gradient failing (h is both inputs of
     * m2, so its gradient has two contributions, summed before m1's
     * backward): said as such and not blamed on m1, a node that did not
     * fail. */
    g = graph_json(graph_square);
    s = train_session(g, registry_for_train, SMLP_DEVICE_CUDA, 1, &opt);
    run_ok(s);
    fakecuda_fail("cublasSaxpy_v2", 0, FAKE_ERR);
    step = smlp_session_backward(s);
    fakecuda_fail(NULL, 0, 0);
    ck_assert_int_eq(step, SMLP_EDEVICE);
    tu_assert_contains(smlp_session_errmsg(s),
                       "device cuda: cannot sum the gradient of 'h'");
    ck_assert_ptr_null(strstr(smlp_session_errmsg(s), "'m1'"));
    smlp_optim_destroy(opt);
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(registry_for_train);
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
    tcase_add_loop_test(tc, test_cuda_sched_training_bit_identical, 0, 2);
    tcase_add_test(tc, test_cuda_sched_backward_side_notice);
    tcase_add_test(tc, test_cuda_sched_backward_failures);
    tcase_add_test(tc, test_cuda_sched_device_stats);
    tcase_add_test(tc, test_cuda_sched_profile_times);
    tcase_add_test(tc, test_cuda_sched_stream_failure);
    tcase_add_test(tc, test_cuda_sched_no_device_message);
    tcase_add_test(tc, test_cuda_sched_all_cpu_and_plan_only);
    tcase_add_test(tc, test_cuda_sched_copies_counted);
    tcase_add_test(tc, test_cuda_sched_pinning_and_release);
    tcase_add_test(tc, test_cuda_sched_forward_failures);
    tcase_add_test(tc, test_cuda_sched_backward_device_failures);
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
