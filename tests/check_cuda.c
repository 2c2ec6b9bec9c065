/*
 * check_cuda.c - CUDA kernels and the GPU runtime against the CPU: the
 * forward, op by op ("ops") and on a whole graph ("graphs");
 * check_cuda_train.c checks the backward.
 *
 * Without a usable GPU (or on a machine without a CUDA driver, such as CI)
 * it checks the error path - a session asking for device cuda fails with
 * SMLP_EDEVICE and a message saying why, and the registry and CPU sessions
 * still work - then prints "SKIP: no CUDA device (<reason>)" and exits 77
 * (automake's SKIP); check_cuda_train.c does the same (both call
 * cudafx_main, cudafx.h).  With a GPU it compares, op by op and on the whole
 * graphs/mixer_fmnist graph, a CUDA session with a CPU session of the same
 * graph, seed and weights: the normwise relative error max|gpu - cpu| /
 * max|cpu| of every output (and of state) must be at most 1e-4; i32 outputs
 * must be equal.  It prints each error.  With SMLP_CUDA_BENCH=1 it also
 * times mixer_b at batch 8 on the GPU.
 *
 * Check runs the GPU tests in one process (CK_NOFORK): a CUDA context
 * does not survive fork().
 *
 * Built with SMLP_CUDA_EMU (tests/cudaemu.am: check_cuda_emu), the
 * same tests run on any machine: the CUDA runtime and cuBLAS are
 * tests/fakecuda.c's host threads and the plugins' kernels their own
 * code compiled for the CPU (tests/cudaemu/cudaemu.h), loaded from
 * SMLP_EMU_PLUGINS.
 */
#include "cudafx.h"

static smlp_session_t *
session(const smlp_graph_t *g, smlp_registry_t *reg, int device,
        int64_t batch, int training, int threads)
{
    struct smlp_session_opts o;
    struct smlp_error err;
    smlp_session_t *s;

    smlp_session_opts_init(&o);
    o.device = device;
    o.batch = batch;
    o.training = training;
    o.threads = threads;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    return s;
}

/* Compares every output and state tensor; prints and checks each. */
static void
compare_all(const char *label, smlp_session_t *cpu, smlp_session_t *gpu)
{
    static const int kinds[2] = {4, 2}; /* outputs, state */
    int k, i;

    for (k = 0; k < 2; k++)
        for (i = 0; i < smlp_session_tensor_count(cpu, kinds[k]); i++) {
            const char *name = smlp_session_tensor_name(cpu, kinds[k], i);
            double e = tu_rel_error(cpu, gpu, name);

            printf("parity %-24s %-14s max rel err %.3g\n", label, name, e);
            fflush(stdout);
            ck_assert_msg(e <= TOL, "%s: %s: relative error %g > %g", label,
                          name, e, TOL);
        }
}

/* Runs graph `json` on the CPU and on the GPU `runs` times; compares. */
static void
parity(const char *label, const char *json, int64_t batch, int training,
       int runs, prep_cb prep)
{
    smlp_registry_t *reg = tu_fixture_registry();
    smlp_graph_t *g = tu_graph_json(json);
    smlp_session_t *cpu = session(g, reg, SMLP_DEVICE_CPU, batch, training,
                                  1);
    smlp_session_t *gpu = session(g, reg, SMLP_DEVICE_CUDA, batch, training,
                                  1);
    int r;

    if (prep != NULL) {
        prep(cpu);
        prep(gpu);
    }
    for (r = 0; r < runs; r++) {
        tu_run_ok(cpu);
        tu_run_ok(gpu);
    }
    compare_all(label, cpu, gpu);
    smlp_session_destroy(cpu);
    smlp_session_destroy(gpu);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}

START_TEST(test_cuda_linear)
{
    parity("linear axis=-1", GRAPH(CORE,
        IN("x", "[-1, 5, 48]") "," PARAM("W", "[32, 48]", "1") ","
        PARAM("b", "[32]", "2") "," OUT("y"),
        NODE("fc", "core.linear", "[0, 1, 2]", "[3]", "")), 3, 0, 1, NULL);
    parity("linear axis=-2", GRAPH(CORE,
        IN("x", "[-1, 12, 20]") "," PARAM("W", "[7, 12]", "3") ","
        PARAM("b", "[7]", "4") "," OUT("y"),
        NODE("fc", "core.linear", "[0, 1, 2]", "[3]", AINT("axis", "-2"))),
        3, 0, 1, NULL);
    parity("linear axis=1 nobias", GRAPH(CORE,
        IN("x", "[-1, 6, 5, 4]") "," PARAM("W", "[3, 6]", "5") "," OUT("y"),
        NODE("fc", "core.linear", "[0, 1, -1]", "[2]", AINT("axis", "1"))),
        2, 0, 1, NULL);
    /* inner = 2: only inner = 1 may take the plain x W^T product; any
     * other inner needs the strided batched one. */
    parity("linear axis=-2 inner=2", GRAPH(CORE,
        IN("x", "[-1, 5, 2]") "," PARAM("W", "[3, 5]", "6") ","
        PARAM("b", "[3]", "7") "," OUT("y"),
        NODE("fc", "core.linear", "[0, 1, 2]", "[3]", AINT("axis", "-2"))),
        4, 0, 1, NULL);
}
END_TEST

START_TEST(test_cuda_elementwise)
{
    parity("gelu erf", GRAPH(CORE,
        IN_INIT("x", "F32", "[-1, 1000]", "Normal", "0", "3") "," OUT("y"),
        NODE("g", "core.gelu", "[0]", "[1]", "")), 2, 0, 1, NULL);
    parity("gelu tanh", GRAPH(CORE,
        IN_INIT("x", "F32", "[-1, 1000]", "Normal", "0", "3") "," OUT("y"),
        NODE("g", "core.gelu", "[0]", "[1]", ASTR("approximate", "tanh"))),
        2, 0, 1, NULL);
    parity("relu", GRAPH(CORE, IN("x", "[-1, 999]") "," OUT("y"),
        NODE("r", "core.relu", "[0]", "[1]", "")), 2, 0, 1, NULL);
    parity("add", GRAPH(CORE,
        IN("a", "[-1, 77]") "," IN("b", "[-1, 77]") "," OUT("y"),
        NODE("s", "core.add", "[0, 1]", "[2]", "")), 3, 0, 1, NULL);
    parity("scale", GRAPH(CORE, IN("x", "[-1, 77]") "," OUT("y"),
        NODE("s", "core.scale", "[0]", "[1]", AFLOAT("alpha", "-0.37"))), 3,
        0, 1, NULL);
}
END_TEST

START_TEST(test_cuda_transpose_reshape)
{
    parity("transpose [0,2,1]", GRAPH(CORE,
        IN("x", "[-1, 33, 65]") "," OUT("y"),
        NODE("t", "core.transpose", "[0]", "[1]", AINTS("perm", "[0, 2, 1]"))),
        3, 0, 1, NULL);
    parity("transpose [2,0,3,1]", GRAPH(CORE,
        IN("x", "[-1, 3, 4, 5]") "," OUT("y"),
        NODE("t", "core.transpose", "[0]", "[1]",
             AINTS("perm", "[2, 0, 3, 1]"))), 2, 0, 1, NULL);
    parity("transpose i32", GRAPH(CORE,
        IN_INIT("x", "I32", "[-1, 40, 9]", "Uniform", "-100", "100") ","
        IN_INIT("z", "I32", "[-1, 7, 9]", "Uniform", "-100", "100") ","
        OUT("y") "," OUT("w"),
        NODE("t", "core.transpose", "[0]", "[2]", AINTS("perm", "[0, 2, 1]"))
        "," NODE("u", "core.transpose", "[1]", "[3]",
                 AINTS("perm", "[2, 1, 0]"))), 2, 0, 1, NULL);
    /* A view between two kernels, and a reshape of a parameter (which
     * the runtime runs as a copy kernel). */
    parity("reshape", GRAPH(CORE,
        IN("x", "[-1, 4, 6]") "," ACT("r") "," ACT("v") "," OUT("y") ","
        PARAM("W", "[4, 6]", "6") "," OUT("w"),
        NODE("relu", "core.relu", "[0]", "[1]", "") ","
        NODE("view", "core.reshape", "[1]", "[2]", AINTS("shape", "[0, -1]"))
        "," NODE("sc", "core.scale", "[2]", "[3]", AFLOAT("alpha", "2"))
        "," NODE("copy", "core.reshape", "[4]", "[5]",
                 AINTS("shape", "[24]"))), 3, 0, 1, NULL);
}
END_TEST

START_TEST(test_cuda_reductions)
{
    parity("mean", GRAPH(CORE,
        IN("x", "[-1, 7, 9]") "," IN("z", "[-1, 10]") "," OUT("y") ","
        OUT("w"),
        NODE("m", "core.mean", "[0]", "[2]", AINT("axis", "1")) ","
        NODE("n", "core.mean", "[1]", "[3]",
             AINT("axis", "-1") "," AINT("keepdims", "1"))), 3, 0, 1, NULL);
    parity("softmax_cross_entropy", GRAPH(CORE,
        IN_INIT("x", "F32", "[-1, 10]", "Normal", "0", "4") ","
        IN_INIT("l", "I32", "[-1]", "Uniform", "0", "9") "," OUT("y") ","
        OUT("z"),
        NODE("ce", "core.softmax_cross_entropy", "[0, 1]", "[2]", "") ","
        NODE("cs", "core.softmax_cross_entropy", "[0, 1]", "[3]",
             AFLOAT("label_smoothing", "0.1"))), 37, 0, 1, NULL);
    /* More rows than the kernel's one block of 256 threads: thread t also
     * takes row t + 256, and the tree must sum all 256 partial losses
     * (rows 256..299 and threads 128..255 both change the mean). */
    parity("softmax_cross_entropy 300 rows", GRAPH(CORE,
        IN_INIT("x", "F32", "[-1, 3]", "Normal", "0", "4") ","
        IN_INIT("l", "I32", "[-1]", "Uniform", "0", "2") "," OUT("y"),
        NODE("ce", "core.softmax_cross_entropy", "[0, 1]", "[2]", "")),
        300, 0, 1, NULL);
}
END_TEST

/* Rows with ties and NaNs for argmax. */
static void
argmax_prep(smlp_session_t *s)
{
    struct smlp_tensor t;
    float *x;

    ck_assert_int_eq(smlp_session_tensor(s, "x", &t), SMLP_OK);
    x = t.data;
    x[3] = x[7] = 50.0f;     /* row 0: tie -> 3 */
    x[10 + 2] = NAN;         /* row 1: NaN wins -> 2 */
    x[20 + 0] = x[20 + 9] = 60.0f; /* row 2: tie -> 0 */
    x[30 + 4] = x[30 + 6] = NAN; /* row 3: the first NaN wins -> 4 */
}

START_TEST(test_cuda_argmax)
{
    parity("argmax", GRAPH(CORE, IN("x", "[-1, 10]") "," OUT("y"),
        NODE("a", "core.argmax", "[0]", "[1]", "")), 9, 0, 1, argmax_prep);
}
END_TEST

START_TEST(test_cuda_patch_embed_matmul)
{
    parity("patch_embed", GRAPH(CORE,
        IN("img", "[-1, 3, 8, 12]") "," PARAM("W", "[5, 3, 4, 4]", "7") ","
        PARAM("b", "[5]", "8") "," OUT("y"),
        NODE("pe", "core.patch_embed", "[0, 1, 2]", "[3]",
             AINT("patch", "4"))), 2, 0, 1, NULL);
    parity("matmul", GRAPH(CORE,
        IN("a", "[-1, 4, 6]") "," IN("b", "[-1, 6, 5]") ","
        IN("at", "[-1, 6, 4]") "," IN("bt", "[-1, 5, 6]") "," OUT("nn") ","
        OUT("tn") "," OUT("nt") "," OUT("tt"),
        NODE("nn", "core.matmul", "[0, 1]", "[4]", "") ","
        NODE("tn", "core.matmul", "[2, 1]", "[5]", AINT("transpose_a", "1"))
        "," NODE("nt", "core.matmul", "[0, 3]", "[6]",
                 AINT("transpose_b", "1")) ","
        NODE("tt", "core.matmul", "[2, 3]", "[7]",
             AINT("transpose_a", "1") "," AINT("transpose_b", "1"))),
        3, 0, 1, NULL);
}
END_TEST

#define NORM "[\"norm\"]"
#define BN_GRAPH                                                             \
    GRAPH(NORM,                                                              \
          IN("x", "[-1, 16]") "," PARAM("g", "[16]", "9") ","                \
          PARAM("b", "[16]", "10") ","                                       \
          STATE("rm", "[16]", "-0.5", "0.5", "12") ","                       \
          STATE("rv", "[16]", "0.5", "1.5", "13") "," OUT("y") ","           \
          STATE("rm2", "[16]", "-0.5", "0.5", "14") ","                      \
          STATE("rv2", "[16]", "0.5", "1.5", "15") "," OUT("z"),             \
          NODE("bn", "norm.batch_norm", "[0, 1, 2, 3, 4]", "[5]", "") ","   \
          NODE("bn2", "norm.batch_norm", "[0, 6, 7]", "[8]",                 \
               AINT("affine", "0") "," AFLOAT("eps", "0.001") ","            \
               AFLOAT("momentum", "0.3")))

START_TEST(test_cuda_norm)
{
    parity("layer_norm", GRAPH(NORM,
        IN("x", "[-1, 6, 40]") "," PARAM("g", "[40]", "16") ","
        PARAM("b", "[40]", "17") "," OUT("y") ","
        IN_INIT("z", "F32", "[-1, 3, 300]", "Normal", "5", "2") ","
        PARAM("g2", "[300]", "18") "," PARAM("b2", "[300]", "19") ","
        OUT("w"),
        NODE("ln", "norm.layer_norm", "[0, 1, 2]", "[3]", "") ","
        NODE("ln2", "norm.layer_norm", "[4, 5, 6]", "[7]",
             AFLOAT("eps", "0.01"))), 3, 0, 1, NULL);
    parity("batch_norm inference", BN_GRAPH, 5, 0, 1, NULL);
    parity("batch_norm training", BN_GRAPH, 5, 1, 3, NULL);
}
END_TEST

#define MOCO_GRAPH                                                           \
    GRAPH("[\"moco\"]",                                                      \
          IN("q1", "[-1, 24]") "," IN("q2", "[-1, 24]") ","                  \
          IN("k1", "[-1, 24]") "," IN("k2", "[-1, 24]") "," OUT("loss") ","  \
          STATE("tk", "[7, 5]", "-1", "1", "51") ","                        \
          PARAM("tq", "[7, 5]", "52") ","                                    \
          IN_INIT("m", "F32", "[]", "Uniform", "0.9", "0.99") "," OUT("y"),  \
          NODE("ctr", "moco.loss", "[0, 1, 2, 3]", "[4]",                    \
               AFLOAT("tau", "0.2")) ","                                     \
          NODE("mom", "moco.momentum_update", "[5, 6, 7]", "[8]", ""))

/* moco.loss and moco.momentum_update (its state moved, with an m input). */
/* All-zero rows: a query row and a key row (their norms clamp to
 * NORM_EPS, so the normalised rows are 0, not 0/0). */
static void
moco_zero_prep(smlp_session_t *s)
{
    struct smlp_tensor t;

    ck_assert_int_eq(smlp_session_tensor(s, "q1", &t), SMLP_OK);
    memset(t.data, 0, 24 * sizeof(float));
    ck_assert_int_eq(smlp_session_tensor(s, "k2", &t), SMLP_OK);
    memset((float *)t.data + 24, 0, 24 * sizeof(float));
}

START_TEST(test_cuda_moco)
{
    parity("moco", MOCO_GRAPH, 33, 1, 3, NULL);
    parity("moco zero rows", MOCO_GRAPH, 5, 1, 1, moco_zero_prep);
}
END_TEST

/*
 * An m input outside [0, 1]: the CPU fails the node, the GPU cannot
 * report it without a synchronisation and gives NaN weights instead
 * (plugins/moco/cuda.cu): every element of the output and of theta_k.
 */
START_TEST(test_cuda_moco_bad_m)
{
    smlp_registry_t *reg = tu_fixture_registry();
    smlp_graph_t *g = tu_graph_json(GRAPH("[\"moco\"]",
        STATE("tk", "[7, 5]", "-1", "1", "51") "," PARAM("tq", "[7, 5]", "52")
        "," IN_INIT("m", "F32", "[]", "Uniform", "1.5", "1.6") ","
        OUT("y"),
        NODE("mom", "moco.momentum_update", "[0, 1, 2]", "[3]", "")));
    smlp_session_t *gpu = session(g, reg, SMLP_DEVICE_CUDA, 1, 1, 1);
    const char *names[2] = {"y", "tk"};
    struct smlp_tensor t;
    int i, k;

    tu_run_ok(gpu);
    for (k = 0; k < 2; k++) {
        ck_assert_int_eq(smlp_session_tensor(gpu, names[k], &t), SMLP_OK);
        ck_assert_int_eq(smlp_tensor_numel(&t), 35);
        for (i = 0; i < 35; i++)
            ck_assert_msg(isnan(((const float *)t.data)[i]), "%s[%d] = %g",
                          names[k], i, ((const float *)t.data)[i]);
    }
    smlp_session_destroy(gpu);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/* relu (GPU) -> good.identity (no CUDA kernel: CPU) -> scale (GPU). */
START_TEST(test_cuda_fallback_to_cpu)
{
    parity("fallback", GRAPH("[\"core\", \"good\"]",
        IN("x", "[-1, 50]") "," ACT("r") "," ACT("i") "," OUT("y"),
        NODE("relu", "core.relu", "[0]", "[1]", "") ","
        NODE("id", "good.identity", "[1]", "[2]", "") ","
        NODE("sc", "core.scale", "[2]", "[3]", AFLOAT("alpha", "3"))), 4, 0,
        2, NULL);
}
END_TEST

/* Deterministic non-zero head weights (the graph zero-initialises it). */
static void
head_prep(smlp_session_t *s)
{
    struct smlp_tensor t;
    int64_t i;

    ck_assert_int_eq(smlp_session_tensor(s, "head.weight", &t), SMLP_OK);
    for (i = 0; i < smlp_tensor_numel(&t); i++)
        ((float *)t.data)[i] = (float)sin(0.37 * (double)i) * 0.1f;
    ck_assert_int_eq(smlp_session_tensor(s, "head.bias", &t), SMLP_OK);
    for (i = 0; i < smlp_tensor_numel(&t); i++)
        ((float *)t.data)[i] = 0.01f * (float)i;
}

static smlp_session_t *
shipped(const char *name, smlp_graph_t **g, smlp_registry_t *reg, int device,
        int64_t batch, int threads)
{
    struct smlp_error err;
    char path[512];

    tu_shipped_graph(name, path, sizeof(path));
    *g = smlp_graph_load(path, &err);
    ck_assert_msg(*g != NULL, "%s", err.msg);
    return session(*g, reg, device, batch, 0, threads);
}

START_TEST(test_cuda_mixer_fmnist)
{
    smlp_registry_t *reg = tu_fixture_registry();
    smlp_graph_t *g;
    smlp_session_t *cpu = shipped("mixer_fmnist", &g, reg, SMLP_DEVICE_CPU,
                                  8, 1);
    smlp_session_t *gpu = session(g, reg, SMLP_DEVICE_CUDA, 8, 0, 1);
    smlp_session_t *gpu2 = session(g, reg, SMLP_DEVICE_CUDA, 8, 0, 2);
    struct smlp_session_stats st;
    struct smlp_tensor a, b;
    char path[600];
    double e;

    head_prep(cpu);
    head_prep(gpu);
    head_prep(gpu2);
    tu_run_ok(cpu);
    tu_run_ok(gpu);
    tu_run_ok(gpu2);
    e = tu_rel_error(cpu, gpu, "features");
    printf("parity %-24s %-14s max rel err %.3g\n", "mixer_fmnist b=8",
           "features", e);
    ck_assert_msg(e <= TOL, "features: %g", e);
    e = tu_rel_error(cpu, gpu, "logits");
    printf("parity %-24s %-14s max rel err %.3g\n", "mixer_fmnist b=8",
           "logits", e);
    ck_assert_msg(e <= TOL, "logits: %g", e);
    smlp_session_get_stats(cpu, &st);
    printf("mixer_fmnist b=8: cpu %.3f ms", st.last_run_ms);
    smlp_session_get_stats(gpu, &st);
    printf(", gpu %.3f ms (first run)\n", st.last_run_ms);
    /* The GPU is deterministic: again, and with two threads. */
    ck_assert_int_eq(smlp_session_tensor(gpu, "logits", &a), SMLP_OK);
    ck_assert_int_eq(smlp_session_tensor(gpu2, "logits", &b), SMLP_OK);
    ck_assert_mem_eq(a.data, b.data, 80 * sizeof(float));
    tu_run_ok(gpu);
    ck_assert_int_eq(smlp_session_tensor(gpu, "logits", &a), SMLP_OK);
    ck_assert_mem_eq(a.data, b.data, 80 * sizeof(float));
    smlp_session_get_stats(gpu, &st);
    printf("mixer_fmnist b=8: gpu %.3f ms (second run)\n", st.last_run_ms);
    fflush(stdout);
    /* Outputs are host memory: write_outputs works as on the CPU. */
    snprintf(path, sizeof(path), "%s/out.safetensors", tu_tmpdir());
    ck_assert_int_eq(smlp_session_write_outputs(gpu, path), SMLP_OK);
    smlp_session_destroy(cpu);
    smlp_session_destroy(gpu);
    smlp_session_destroy(gpu2);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

static double
median(double *v, int n)
{
    int i, j;

    for (i = 1; i < n; i++)
        for (j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return v[n / 2];
}

/* Time by op type of the last run, from the per-node profile. */
static void
print_profile(smlp_session_t *s, const smlp_graph_t *g)
{
    static const char *ops[] = {"core.linear", "core.gelu", "core.add",
                                "norm.layer_norm", "core.patch_embed",
                                "core.mean", "core.transpose"};
    struct smlp_node_profile p;
    unsigned k;
    int i;

    for (k = 0; k < sizeof(ops) / sizeof(ops[0]); k++) {
        double us = 0;
        int count = 0;

        for (i = 0; i < smlp_graph_node_count(g); i++) {
            smlp_session_node_profile(s, i, &p);
            if (strcmp(p.op, ops[k]) == 0) {
                us += p.end_us - p.start_us;
                count++;
            }
        }
        if (count > 0)
            printf("  %-18s %3d nodes %9.3f ms\n", ops[k], count, us / 1e3);
    }
}

START_TEST(test_cuda_bench_mixer)
{
    static const char *graphs[2] = {"mixer_fmnist", "mixer_b"};
    smlp_registry_t *reg = tu_fixture_registry();
    double ms[10];
    int k, r;

    for (k = 0; k < 2; k++) {
        struct smlp_session_stats st;
        smlp_graph_t *g;
        smlp_session_t *s = shipped(graphs[k], &g, reg, SMLP_DEVICE_CUDA, 8,
                                    1);

        tu_run_ok(s); /* warm-up */
        for (r = 0; r < 10; r++) {
            tu_run_ok(s);
            smlp_session_get_stats(s, &st);
            ms[r] = st.last_run_ms;
        }
        printf("bench %s b=8 gpu: median %.3f ms, %.1f GFLOP/s\n", graphs[k],
               median(ms, 10), 2.0 * (double)st.macs / (median(ms, 10) * 1e6));
        print_profile(s, g);
        fflush(stdout);
        smlp_session_destroy(s);
        smlp_graph_unload(g);
    }
    smlp_registry_destroy(reg);
}
END_TEST

static Suite *
cuda_suite(void)
{
    Suite *s = suite_create("cuda");
    TCase *tc = tcase_create("ops");

    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_cuda_linear);
    tcase_add_test(tc, test_cuda_elementwise);
    tcase_add_test(tc, test_cuda_transpose_reshape);
    tcase_add_test(tc, test_cuda_reductions);
    tcase_add_test(tc, test_cuda_argmax);
    tcase_add_test(tc, test_cuda_patch_embed_matmul);
    tcase_add_test(tc, test_cuda_norm);
    tcase_add_test(tc, test_cuda_moco);
    tcase_add_test(tc, test_cuda_moco_bad_m);
    tcase_add_test(tc, test_cuda_fallback_to_cpu);
    suite_add_tcase(s, tc);
    tc = tcase_create("graphs");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_cuda_mixer_fmnist);
    if (getenv("SMLP_CUDA_BENCH") != NULL)
        tcase_add_test(tc, test_cuda_bench_mixer);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return cudafx_main(cuda_suite);
}
