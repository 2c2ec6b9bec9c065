/*
 * check_cuda_sched_fail.c - the runtime's GPU path without a GPU: what
 * it allocates, copies and reports on failure, on the fake CUDA runtime
 * of tests/fakecuda.c (linked into this program, which fails its calls
 * on demand and counts them) with the fixture plugin
 * tests/plugins/fakegpu.c.
 */
#include "cudaschedfx.h"

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
    smlp_registry_t *reg = tu_fixture_registry();
    smlp_graph_t *gc = tu_graph_json(graph_chain);
    smlp_graph_t *gp = tu_graph_json(graph_param);
    smlp_graph_t *gs = tu_graph_json(graph_state);
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
        tu_run_ok(s);
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
        tu_run_ok(s);
        ck_assert_int_eq(fakecuda_count("h2d") - up, r == 1 ? 64 : 128);
        ck_assert_int_eq(fakecuda_count("d2h") - down, 64);
    }
    smlp_session_destroy(s);
    /* state, 8 floats: s goes up once and comes back after each run. */
    s = session(gs, reg, SMLP_DEVICE_CUDA, 1, 1);
    for (r = 0; r < 2; r++) {
        up = fakecuda_count("h2d");
        down = fakecuda_count("d2h");
        tu_run_ok(s);
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
    registry_for_train = tu_fixture_registry();
    pinned = fakecuda_count("pinned");
    /* Host arena x + y = 2 * 512 KiB, exactly 1 MiB: pinned; W 512 KiB:
     * not. */
    half = tu_graph_json(mul_graph(131072, 0));
    a = session(half, registry_for_train, SMLP_DEVICE_CUDA, 1, 1);
    ck_assert_int_eq(smlp_session_get_stats(a, &st), SMLP_OK);
    ck_assert_uint_eq(st.arena_bytes, 1 << 20);
    ck_assert_int_eq(fakecuda_count("pinned"), pinned + 1);
    tu_run_ok(a);
    /* Training: W exactly 1 MiB, its gradient block too, the arena more:
     * three blocks. */
    one = tu_graph_json(mul_graph(262144, 1));
    b = train_session(one, registry_for_train, SMLP_DEVICE_CUDA, 1, &ob);
    ck_assert_int_eq(fakecuda_count("pinned"), pinned + 4);
    tu_run_ok(b);
    ck_assert_int_eq(smlp_session_backward(b), SMLP_OK);
    /* No sum in this backward: cuBLAS stays closed. */
    ck_assert_int_eq(fakecuda_count("blas"), before[3]);
    /* A small training session pins nothing. */
    small = tu_graph_json(mul_graph(8, 1));
    c = train_session(small, registry_for_train, SMLP_DEVICE_CUDA, 1, &oc);
    ck_assert_int_eq(fakecuda_count("pinned"), pinned + 4);
    /* Sums open one cuBLAS handle for the session, whatever their
     * number. */
    json = random_dag(3 * 104729u, 30, DAG_LOSS | DAG_NO_HOST);
    fan = tu_graph_json(json);
    free(json);
    d = train_session(fan, registry_for_train, SMLP_DEVICE_CUDA, 1, &od);
    tu_run_ok(d);
    ck_assert_int_eq(smlp_session_backward(d), SMLP_OK);
    tu_run_ok(d);
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
    tu_run_ok(s);
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
    smlp_registry_t *reg = tu_fixture_registry();
    smlp_graph_t *gp = tu_graph_json(graph_param);
    smlp_graph_t *gc = tu_graph_json(graph_chain);
    smlp_graph_t *gs = tu_graph_json(graph_state);
    smlp_graph_t *gh = tu_graph_json(graph_host_param);
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

    tu_run_ok(s);
    fakecuda_fail(fn, skip, FAKE_ERR);
    if (fn2 != NULL)
        fakecuda_fail(fn2, 0, FAKE_ERR);
    rc = smlp_session_backward(s);
    fakecuda_fail(NULL, 0, 0);
    ck_assert_msg(status != 0 ? rc == status : rc < 0, "%s #%d: %d (%s)",
                  fn, skip, rc, smlp_session_errmsg(s));
    tu_assert_contains(smlp_session_errmsg(s), text);
    tu_run_ok(s);
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

    registry_for_train = tu_fixture_registry();
    g = tu_graph_json(graph_fan);
    s = train_session(g, registry_for_train, SMLP_DEVICE_CUDA, 1, &opt);
    for (step = 0; step < 2; step++) {
        tu_run_ok(s);
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
    g = tu_graph_json(graph_square);
    s = train_session(g, registry_for_train, SMLP_DEVICE_CUDA, 1, &opt);
    tu_run_ok(s);
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
cuda_sched_fail_suite(void)
{
    Suite *s = suite_create("cuda_sched_fail");
    TCase *tc = tcase_create("fake");

    tcase_set_timeout(tc, 120);
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
    SRunner *sr = srunner_create(cuda_sched_fail_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
