/*
 * check_cuda.c - CUDA kernels and the GPU runtime against the CPU.
 *
 * Without a usable GPU (or on a machine without a CUDA driver, such as
 * CI) it checks the error path - a session asking for device cuda fails
 * with SMLP_EDEVICE and a message saying why, and the registry and CPU
 * sessions still work - then prints "SKIP: no CUDA device (<reason>)" and
 * exits 77 (automake's SKIP).  With a GPU it compares, op by op and on
 * the whole graphs/mixer_fmnist graph, a CUDA session with a CPU session
 * of the same graph, seed and weights: the normwise relative error
 * max|gpu - cpu| / max|cpu| of every output (and of state) must be at
 * most 1e-4; i32 outputs must be equal.  It prints each error.  Training
 * sessions of small graphs that use every core, norm, moco and moe op
 * with a backward run their whole backward on the GPU (plugin ABI 1.3),
 * and their losses and parameter gradients must agree with the CPU's the
 * same way over two SGD steps.  With SMLP_CUDA_BENCH=1 it also times
 * mixer_b at batch 8 on the GPU.
 *
 * Check runs the GPU tests in one process (CK_NOFORK): a CUDA context
 * does not survive fork().
 *
 * Built with SMLP_CUDA_EMU (tests/cudaemu.am: check_cuda_emu), the same
 * tests run on any machine: the CUDA runtime and cuBLAS are
 * tests/fakecuda.c's host threads and the plugins' kernels their own
 * code compiled for the CPU (tests/cudaemu/cudaemu.h), loaded from
 * SMLP_EMU_PLUGINS.
 */
#include <fcntl.h>
#include <math.h>
#include <stdint.h>

#include "testutil.h"

#define TOL 1e-4

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

static void
run_ok(smlp_session_t *s)
{
    ck_assert_msg(smlp_session_run(s) == SMLP_OK, "%s",
                  smlp_session_errmsg(s));
}

/* Normwise relative error of tensor `name` (i32: mismatches). */
static double
rel_error(smlp_session_t *cpu, smlp_session_t *gpu, const char *name)
{
    struct smlp_tensor a, b;
    double diff = 0, scale = 0;
    int64_t n, i;

    ck_assert_int_eq(smlp_session_tensor(cpu, name, &a), SMLP_OK);
    ck_assert_int_eq(smlp_session_tensor(gpu, name, &b), SMLP_OK);
    ck_assert_ptr_nonnull(a.data);
    ck_assert_ptr_nonnull(b.data);
    n = smlp_tensor_numel(&a);
    ck_assert_int_eq(n, smlp_tensor_numel(&b));
    if (a.dtype == SMLP_DTYPE_I32) {
        const int32_t *x = a.data, *y = b.data;
        for (i = 0; i < n; i++)
            diff += x[i] != y[i];
        return diff;
    }
    for (i = 0; i < n; i++) {
        double x = ((const float *)a.data)[i], y = ((const float *)b.data)[i];

        if (isnan(x) || isnan(y)) {
            if (isnan(x) != isnan(y))
                return INFINITY;
            continue;
        }
        if (fabs(x - y) > diff)
            diff = fabs(x - y);
        if (fabs(x) > scale)
            scale = fabs(x);
    }
    return scale > 0 ? diff / scale : diff;
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
            double e = rel_error(cpu, gpu, name);

            printf("parity %-24s %-14s max rel err %.3g\n", label, name, e);
            fflush(stdout);
            ck_assert_msg(e <= TOL, "%s: %s: relative error %g > %g", label,
                          name, e, TOL);
        }
}

typedef void (*prep_cb)(smlp_session_t *s);

/* Runs graph `json` on the CPU and on the GPU `runs` times; compares. */
static void
parity(const char *label, const char *json, int64_t batch, int training,
       int runs, prep_cb prep)
{
    smlp_registry_t *reg = registry();
    smlp_graph_t *g = graph_json(json);
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
        run_ok(cpu);
        run_ok(gpu);
    }
    compare_all(label, cpu, gpu);
    smlp_session_destroy(cpu);
    smlp_session_destroy(gpu);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}

/* JSON pieces. */
#define IN(name, shape)                                                      \
    "{\"name\": \"" name "\", \"kind\": \"Input\", \"shape\": " shape "}"
#define IN_INIT(name, dtype, shape, kind, a, b)                              \
    "{\"name\": \"" name "\", \"kind\": \"Input\", \"dtype\": \"" dtype      \
    "\", \"shape\": " shape ", \"init\": {\"kind\": \"" kind "\", \"a\": " a \
    ", \"b\": " b ", \"seed\": 11}}"
#define PARAM(name, shape, seed)                                             \
    "{\"name\": \"" name "\", \"kind\": \"Parameter\", \"shape\": " shape    \
    ", \"init\": {\"kind\": \"Uniform\", \"a\": -1, \"b\": 1, \"seed\": "   \
    seed "}}"
#define STATE(name, shape, a, b, seed)                                       \
    "{\"name\": \"" name "\", \"kind\": \"State\", \"shape\": " shape        \
    ", \"init\": {\"kind\": \"Uniform\", \"a\": " a ", \"b\": " b           \
    ", \"seed\": " seed "}}"
#define ACT(name) "{\"name\": \"" name "\"}"
#define OUT(name) "{\"name\": \"" name "\", \"kind\": \"Output\"}"
#define NODE(name, op, ins, outs, attrs)                                     \
    "{\"name\": \"" name "\", \"op\": \"" op "\", \"inputs\": " ins          \
    ", \"outputs\": " outs ", \"attrs\": [" attrs "]}"
#define AINT(name, v)                                                        \
    "{\"name\": \"" name "\", \"type\": \"Int\", \"i\": " v "}"
#define AFLOAT(name, v)                                                      \
    "{\"name\": \"" name "\", \"type\": \"Float\", \"f\": " v "}"
#define ASTR(name, v)                                                        \
    "{\"name\": \"" name "\", \"type\": \"String\", \"s\": \"" v "\"}"
#define AINTS(name, v)                                                       \
    "{\"name\": \"" name "\", \"type\": \"Ints\", \"ints\": " v "}"
#define GRAPH(plugins, tensors, nodes)                                       \
    "{\"name\": \"op\", \"plugins\": " plugins ", \"tensors\": [" tensors    \
    "], \"nodes\": [" nodes "]}"
#define CORE "[\"core\"]"

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
    smlp_registry_t *reg = registry();
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
    run_ok(cpu);
    run_ok(gpu);
    run_ok(gpu2);
    e = rel_error(cpu, gpu, "features");
    printf("parity %-24s %-14s max rel err %.3g\n", "mixer_fmnist b=8",
           "features", e);
    ck_assert_msg(e <= TOL, "features: %g", e);
    e = rel_error(cpu, gpu, "logits");
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
    run_ok(gpu);
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
    smlp_registry_t *reg = registry();
    double ms[10];
    int k, r;

    for (k = 0; k < 2; k++) {
        struct smlp_session_stats st;
        smlp_graph_t *g;
        smlp_session_t *s = shipped(graphs[k], &g, reg, SMLP_DEVICE_CUDA, 8,
                                    1);

        run_ok(s); /* warm-up */
        for (r = 0; r < 10; r++) {
            run_ok(s);
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

/*
 * Outside Check's tests (no ck_assert here: Check refuses it there): a
 * one-node graph (relu) from JSON through flatc, or NULL.
 */
static smlp_graph_t *
probe_graph(struct smlp_error *err)
{
    static const char json[] = GRAPH(CORE, IN("x", "[-1, 3]") "," OUT("y"),
        NODE("r", "core.relu", "[0]", "[1]", ""));
    char dir[64] = "/tmp/smlp-cuda-XXXXXX", path[256], cmd[1024];
    FILE *f;

    if (mkdtemp(dir) == NULL)
        return NULL;
    snprintf(path, sizeof(path), "%s/probe.json", dir);
    if ((f = fopen(path, "w")) == NULL)
        return NULL;
    fputs(json, f);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "'%s' -b -o '%s' '%s/schemas/graph.fbs' '%s'",
             tu_env("FLATC", "flatc"), dir, tu_srcdir(), path);
    if (system(cmd) != 0)
        return NULL;
    snprintf(path, sizeof(path), "%s/probe.fbs", dir);
    return smlp_graph_load(path, err);
}

/*
 * Without a GPU: asking for it failed (msg, status); it must fail cleanly,
 * say why, do so again, and leave the CPU working.  Returns 1 when so.
 */
static int
no_device_checks(smlp_registry_t *reg, smlp_graph_t *g, const char *msg,
                 int status)
{
    struct smlp_session_opts o;
    struct smlp_error err;
    smlp_session_t *s;
    int ok = 1;

    if (status != SMLP_EDEVICE ||
        (strstr(msg, "device cuda: no CUDA device: ") == NULL &&
         strstr(msg, "device cuda: this libsmlp was built without") ==
             NULL)) {
        fprintf(stderr, "FAIL: unexpected error %d: %s\n", status, msg);
        ok = 0;
    }
    smlp_session_opts_init(&o);
    o.device = SMLP_DEVICE_CUDA;
    if ((s = smlp_session_create(g, reg, &o, &err)) != NULL ||
        err.status != SMLP_EDEVICE || strcmp(err.msg, msg) != 0) {
        fprintf(stderr, "FAIL: the second try differs: %s\n", err.msg);
        smlp_session_destroy(s);
        ok = 0;
    }
    o.device = SMLP_DEVICE_CPU;
    o.batch = 2;
    s = smlp_session_create(g, reg, &o, &err);
    if (s == NULL || smlp_session_run(s) != SMLP_OK) {
        fprintf(stderr, "FAIL: the CPU after the device error: %s\n",
                s ? smlp_session_errmsg(s) : err.msg);
        ok = 0;
    }
    smlp_session_destroy(s);
    return ok;
}

/* ---- training: the backward on the GPU (plugin ABI 1.3) ------------------ */

/* A training session of g with loss "loss" (stderr of its creation in
 * *notice when notice is not NULL). */
static smlp_session_t *
train_session(const smlp_graph_t *g, smlp_registry_t *reg, int device,
              int64_t batch, const char **notice)
{
    struct smlp_session_opts o;
    struct smlp_error err;
    smlp_session_t *s;
    int saved = notice != NULL ? tu_stderr_begin() : -1;

    smlp_session_opts_init(&o);
    o.device = device;
    o.batch = batch;
    o.training = 1;
    o.loss = "loss";
    o.threads = 1;
    s = smlp_session_create(g, reg, &o, &err);
    if (notice != NULL)
        *notice = tu_stderr_end(saved);
    ck_assert_msg(s != NULL, "%s", err.msg);
    return s;
}

/* Normwise relative error of parameter `name`'s gradients. */
static double
grad_error(smlp_session_t *cpu, smlp_session_t *gpu, const char *name)
{
    struct smlp_tensor a, b;
    double diff = 0, scale = 0;
    int64_t i;

    ck_assert_int_eq(smlp_session_grad(cpu, name, &a), SMLP_OK);
    ck_assert_int_eq(smlp_session_grad(gpu, name, &b), SMLP_OK);
    for (i = 0; i < smlp_tensor_numel(&a); i++) {
        double x = ((const float *)a.data)[i], y = ((const float *)b.data)[i];

        if (!(fabs(x - y) <= diff)) /* NaN too */
            diff = fabs(x - y);
        if (fabs(x) > scale)
            scale = fabs(x);
    }
    return scale > 0 ? diff / scale : diff;
}

/*
 * Two training steps (SGD) of graph `json` on the CPU and on the GPU from
 * the same weights and inputs: the whole backward runs on the GPU (no
 * notice), and the loss and every parameter's gradient agree within TOL
 * at each step (the second step also checks that the update reached the
 * GPU's copy of the parameters).
 */
static void
train_parity(const char *label, const char *json, int64_t batch)
{
    smlp_registry_t *reg = registry();
    smlp_graph_t *g = graph_json(json);
    const char *notice;
    smlp_session_t *cpu = train_session(g, reg, SMLP_DEVICE_CPU, batch, NULL);
    smlp_session_t *gpu = train_session(g, reg, SMLP_DEVICE_CUDA, batch,
                                        &notice);
    struct smlp_optim_opts oo;
    struct smlp_error err;
    smlp_optim_t *oc, *og;
    int step, k;

    ck_assert_msg(strstr(notice, "backward runs on the CPU") == NULL, "%s",
                  notice);
    smlp_optim_opts_init(&oo);
    oo.kind = SMLP_OPTIM_SGD;
    oo.weight_decay = 0;
    oc = smlp_optim_create(cpu, &oo, &err);
    og = smlp_optim_create(gpu, &oo, &err);
    ck_assert_ptr_nonnull(oc);
    ck_assert_ptr_nonnull(og);
    for (step = 0; step < 2; step++) {
        double e;

        run_ok(cpu);
        run_ok(gpu);
        ck_assert_int_eq(smlp_session_backward(cpu), SMLP_OK);
        ck_assert_msg(smlp_session_backward(gpu) == SMLP_OK, "%s",
                      smlp_session_errmsg(gpu));
        e = rel_error(cpu, gpu, "loss");
        printf("train %-20s step %d %-14s max rel err %.3g\n", label, step,
               "loss", e);
        ck_assert_msg(e <= TOL, "%s: loss: %g", label, e);
        for (k = 0; k < smlp_session_tensor_count(cpu, 1); k++) {
            const char *name = smlp_session_tensor_name(cpu, 1, k);

            e = grad_error(cpu, gpu, name);
            printf("train %-20s step %d d %-12s max rel err %.3g\n", label,
                   step, name, e);
            ck_assert_msg(e <= TOL, "%s: d %s: %g", label, name, e);
        }
        fflush(stdout);
        ck_assert_int_eq(smlp_optim_step(oc, 0.05, NULL), SMLP_OK);
        ck_assert_int_eq(smlp_optim_step(og, 0.05, NULL), SMLP_OK);
    }
    smlp_optim_destroy(oc);
    smlp_optim_destroy(og);
    smlp_session_destroy(cpu);
    smlp_session_destroy(gpu);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}

#define CORE_NORM "[\"core\", \"norm\"]"

/* A Mixer in small: patch_embed, layer_norm, token mixing along axis -2,
 * both GELUs, residual adds, channel mixing, transpose, mean, a head and
 * the cross-entropy (with label smoothing). */
START_TEST(test_cuda_train_mixer_ops)
{
    train_parity("mixer ops", GRAPH(CORE_NORM,
        IN("img", "[-1, 1, 8, 8]") ","
        IN_INIT("labels", "I32", "[-1]", "Uniform", "0", "4") ","
        PARAM("pw", "[16, 1, 4, 4]", "21") "," PARAM("pb", "[16]", "22") ","
        PARAM("g1", "[16]", "23") "," PARAM("b1", "[16]", "24") ","
        PARAM("t1", "[6, 4]", "25") "," PARAM("t1b", "[6]", "26") ","
        PARAM("t2", "[4, 6]", "27") "," PARAM("t2b", "[4]", "28") ","
        PARAM("g2", "[16]", "29") "," PARAM("b2", "[16]", "30") ","
        PARAM("c1", "[32, 16]", "31") "," PARAM("c1b", "[32]", "32") ","
        PARAM("c2", "[16, 32]", "33") "," PARAM("c2b", "[16]", "34") ","
        PARAM("hw", "[5, 16]", "35") "," PARAM("hb", "[5]", "36") ","
        ACT("x0") "," ACT("n1") "," ACT("h1") "," ACT("a1") "," ACT("h2")
        "," ACT("x1") "," ACT("n2") "," ACT("h3") "," ACT("a3") ","
        ACT("h4") "," ACT("x2") "," ACT("xt") "," ACT("f") ","
        OUT("logits") "," OUT("loss"),
        NODE("pe", "core.patch_embed", "[0, 2, 3]", "[18]",
             AINT("patch", "4")) ","
        NODE("ln1", "norm.layer_norm", "[18, 4, 5]", "[19]", "") ","
        NODE("tok1", "core.linear", "[19, 6, 7]", "[20]", AINT("axis", "-2"))
        "," NODE("gelu1", "core.gelu", "[20]", "[21]", "") ","
        NODE("tok2", "core.linear", "[21, 8, 9]", "[22]", AINT("axis", "-2"))
        "," NODE("res1", "core.add", "[18, 22]", "[23]", "") ","
        NODE("ln2", "norm.layer_norm", "[23, 10, 11]", "[24]", "") ","
        NODE("ch1", "core.linear", "[24, 12, 13]", "[25]", "") ","
        NODE("gelu2", "core.gelu", "[25]", "[26]",
             ASTR("approximate", "tanh")) ","
        NODE("ch2", "core.linear", "[26, 14, 15]", "[27]", "") ","
        NODE("res2", "core.add", "[23, 27]", "[28]", "") ","
        NODE("tr", "core.transpose", "[28]", "[29]",
             AINTS("perm", "[0, 2, 1]")) ","
        NODE("pool", "core.mean", "[29]", "[30]", AINT("axis", "2")) ","
        NODE("head", "core.linear", "[30, 16, 17]", "[31]", "") ","
        NODE("ce", "core.softmax_cross_entropy", "[31, 1]", "[32]",
             AFLOAT("label_smoothing", "0.1"))), 6);
}
END_TEST

/* batch_norm, relu, scale, a view, the four matmul forms and nested
 * means. */
START_TEST(test_cuda_train_mlp_ops)
{
    train_parity("mlp ops", GRAPH(CORE_NORM,
        IN("x", "[-1, 8]") "," PARAM("w", "[12, 8]", "41") ","
        PARAM("g", "[12]", "42") "," PARAM("b", "[12]", "43") ","
        STATE("rm", "[12]", "-0.5", "0.5", "44") ","
        STATE("rv", "[12]", "0.5", "1.5", "45") ","
        ACT("h") "," ACT("n") "," ACT("r") "," ACT("s") "," ACT("v") ","
        ACT("p") "," ACT("q") "," ACT("t") "," ACT("u") "," ACT("m2") ","
        ACT("m1") "," OUT("loss"),
        NODE("fc", "core.linear", "[0, 1, -1]", "[6]", "") ","
        NODE("bn", "norm.batch_norm", "[6, 2, 3, 4, 5]", "[7]", "") ","
        NODE("relu", "core.relu", "[7]", "[8]", "") ","
        NODE("sc", "core.scale", "[8]", "[9]", AFLOAT("alpha", "0.5")) ","
        NODE("view", "core.reshape", "[9]", "[10]",
             AINTS("shape", "[0, 3, 4]")) ","
        NODE("nt", "core.matmul", "[10, 10]", "[11]",
             AINT("transpose_b", "1")) ","
        NODE("tn", "core.matmul", "[10, 11]", "[12]",
             AINT("transpose_a", "1")) ","
        NODE("tt", "core.matmul", "[12, 10]", "[13]",
             AINT("transpose_a", "1") "," AINT("transpose_b", "1")) ","
        NODE("nn", "core.matmul", "[13, 10]", "[14]", "") ","
        NODE("mean2", "core.mean", "[14]", "[15]", AINT("axis", "2")) ","
        NODE("mean1", "core.mean", "[15]", "[16]", AINT("axis", "1")) ","
        NODE("mean0", "core.mean", "[16]", "[17]", AINT("axis", "0"))), 6);
}
END_TEST

/*
 * Backward branches the graphs above do not take: a layer_norm over 300
 * features (more than its 128-thread block, so every thread loops over
 * three columns in the row sums and in dx, which reaches w0), the tanh
 * GELU's derivative in both saturated tails (scale 1e13: x + 0.044715 x^3
 * overflows, so both of elementwise.c's clamps decide the value - without
 * them it is NaN or 1e5 times too large), and batch_norm without
 * gamma/beta (affine 0).
 */
START_TEST(test_cuda_train_norm_tails)
{
    train_parity("norm tails", GRAPH(CORE_NORM,
        IN("x", "[-1, 2, 4]") "," PARAM("w0", "[300, 4]", "60") ","
        PARAM("g", "[300]", "61") "," PARAM("b", "[300]", "62") ","
        PARAM("w", "[3, 2]", "63") ","
        STATE("rm", "[3]", "-0.5", "0.5", "64") ","
        STATE("rv", "[3]", "0.5", "1.5", "65") ","
        ACT("h0") "," ACT("n") "," ACT("s") "," ACT("a") "," ACT("m2") ","
        ACT("h") "," ACT("hn") "," ACT("r") "," ACT("m1") "," OUT("loss"),
        NODE("fc0", "core.linear", "[0, 1, -1]", "[7]", "") ","
        NODE("ln", "norm.layer_norm", "[7, 2, 3]", "[8]", "") ","
        NODE("sc", "core.scale", "[8]", "[9]", AFLOAT("alpha", "1e13")) ","
        NODE("gelu", "core.gelu", "[9]", "[10]", ASTR("approximate", "tanh"))
        "," NODE("mean2", "core.mean", "[10]", "[11]", AINT("axis", "2")) ","
        NODE("fc", "core.linear", "[11, 4, -1]", "[12]", "") ","
        NODE("bn", "norm.batch_norm", "[12, 5, 6]", "[13]",
             AINT("affine", "0")) ","
        NODE("relu", "core.relu", "[13]", "[14]", "") ","
        NODE("mean1", "core.mean", "[14]", "[15]", AINT("axis", "1")) ","
        NODE("mean0", "core.mean", "[15]", "[16]", AINT("axis", "0"))), 4);
}
END_TEST

/* Non-finite inputs for gelu_step: x[0] = NaN, or x[0] = +inf and
 * x[1] = -inf (through W, h = W·x is then ±inf or NaN in those rows). */
static void
nan_prep(smlp_session_t *s)
{
    struct smlp_tensor t;

    ck_assert_int_eq(smlp_session_tensor(s, "x", &t), SMLP_OK);
    ((float *)t.data)[0] = NAN;
}

static void
inf_prep(smlp_session_t *s)
{
    struct smlp_tensor t;

    ck_assert_int_eq(smlp_session_tensor(s, "x", &t), SMLP_OK);
    ((float *)t.data)[0] = INFINITY;
    ((float *)t.data)[5] = -INFINITY;
}

/*
 * One training step of x -> linear (W) -> gelu (`approximate`) -> mean
 * -> mean on the CPU and on the GPU, x set by prep: d W must agree
 * element by element, NaN for NaN, the same infinity for an infinity,
 * else within TOL of the largest finite CPU value.  The CPU kernel
 * propagates a NaN x (its d/dx is NaN) and gives 1 and 0 at +inf and
 * -inf (the derivative's limits, elementwise.c).
 */
static void
gelu_step(const char *label, const char *approx, prep_cb prep)
{
    char json[2048];
    smlp_registry_t *reg = registry();
    smlp_graph_t *g;
    smlp_session_t *cpu, *gpu;
    struct smlp_tensor a, b;
    double scale = 0.0;
    int64_t i, n;

    snprintf(json, sizeof(json), "%s", GRAPH(CORE,
        IN_INIT("x", "F32", "[-1, 4]", "Normal", "0", "1") ","
        PARAM("W", "[3, 4]", "70") "," ACT("h") "," ACT("y") ","
        ACT("m") "," OUT("loss"),
        NODE("fc", "core.linear", "[0, 1, -1]", "[2]", "") ","
        NODE("g", "core.gelu", "[2]", "[3]", ASTR("approximate", "%s")) ","
        NODE("m1", "core.mean", "[3]", "[4]", AINT("axis", "1")) ","
        NODE("m0", "core.mean", "[4]", "[5]", AINT("axis", "0"))));
    /* The graph text carries one %s: the form. */
    {
        char tmp[2048];

        snprintf(tmp, sizeof(tmp), json, approx);
        memcpy(json, tmp, sizeof(json));
    }
    g = graph_json(json);
    cpu = train_session(g, reg, SMLP_DEVICE_CPU, 3, NULL);
    gpu = train_session(g, reg, SMLP_DEVICE_CUDA, 3, NULL);
    prep(cpu);
    prep(gpu);
    run_ok(cpu);
    run_ok(gpu);
    ck_assert_int_eq(smlp_session_backward(cpu), SMLP_OK);
    ck_assert_msg(smlp_session_backward(gpu) == SMLP_OK, "%s",
                  smlp_session_errmsg(gpu));
    ck_assert_int_eq(smlp_session_grad(cpu, "W", &a), SMLP_OK);
    ck_assert_int_eq(smlp_session_grad(gpu, "W", &b), SMLP_OK);
    n = smlp_tensor_numel(&a);
    for (i = 0; i < n; i++) {
        double x = ((const float *)a.data)[i];

        if (isfinite(x) && fabs(x) > scale)
            scale = fabs(x);
    }
    for (i = 0; i < n; i++) {
        double x = ((const float *)a.data)[i], y = ((const float *)b.data)[i];

        printf("train %-20s d W[%lld] cpu %g gpu %g\n", label, (long long)i,
               x, y);
        ck_assert_msg(isnan(x) == isnan(y), "%s: d W[%lld]: cpu %g, gpu %g",
                      label, (long long)i, x, y);
        if (isnan(x) || x == y)
            continue;
        ck_assert_msg(isfinite(x) && isfinite(y) &&
                          fabs(x - y) <= TOL * (scale > 0 ? scale : 1.0),
                      "%s: d W[%lld]: cpu %g, gpu %g", label, (long long)i,
                      x, y);
    }
    fflush(stdout);
    smlp_session_destroy(cpu);
    smlp_session_destroy(gpu);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}

/* GELU's backward at NaN and at ±inf: the GPU's d/dx follows the CPU's
 * (NaN stays NaN in the tanh form; ±inf give 1 and 0 in the erf form,
 * not inf·0 = NaN). */
START_TEST(test_cuda_train_gelu_nonfinite)
{
    gelu_step("gelu tanh NaN", "tanh", nan_prep);
    gelu_step("gelu erf NaN", "none", nan_prep);
    gelu_step("gelu tanh inf", "tanh", inf_prep);
    gelu_step("gelu erf inf", "none", inf_prep);
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
    smlp_registry_t *reg = registry();
    smlp_graph_t *g = graph_json(GRAPH("[\"moco\"]",
        STATE("tk", "[7, 5]", "-1", "1", "51") "," PARAM("tq", "[7, 5]", "52")
        "," IN_INIT("m", "F32", "[]", "Uniform", "1.5", "1.6") ","
        OUT("y"),
        NODE("mom", "moco.momentum_update", "[0, 1, 2]", "[3]", "")));
    smlp_session_t *gpu = session(g, reg, SMLP_DEVICE_CUDA, 1, 1, 1);
    const char *names[2] = {"y", "tk"};
    struct smlp_tensor t;
    int i, k;

    run_ok(gpu);
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

/* moco.loss's backward: q1, q2 from linear layers, the keys inputs. */
START_TEST(test_cuda_train_moco)
{
    train_parity("moco loss", GRAPH("[\"core\", \"moco\"]",
        IN("x", "[-1, 16]") "," IN("k1", "[-1, 12]") ","
        IN("k2", "[-1, 12]") "," PARAM("w1", "[12, 16]", "53") ","
        PARAM("w2", "[12, 16]", "54") "," ACT("q1") "," ACT("q2") ","
        OUT("loss"),
        NODE("l1", "core.linear", "[0, 3, -1]", "[5]", "") ","
        NODE("l2", "core.linear", "[0, 4, -1]", "[6]", "") ","
        NODE("ctr", "moco.loss", "[5, 6, 1, 2]", "[7]",
             AFLOAT("tau", "0.2"))), 20);
}
END_TEST

/*
 * The moe ops' backwards: three sparse blocks (importance gate with noise
 * and the vmoe aux; topk gate with normalize topk and the switch aux;
 * per_image gate with superclass labels), dispatch, expert FFN and
 * combine, residual adds, and the loss = mean + the three aux outputs
 * (tests/data/cuda_train_moe.json; aux_weight 0.5 so that the aux
 * gradients count).  Routing must be the same on both devices (the gates'
 * forward parity, tests/check_cuda_moe), so the gradients can agree.
 */
START_TEST(test_cuda_train_moe)
{
    char path[600];
    size_t len;
    char *json;

    snprintf(path, sizeof(path), "%s/tests/data/cuda_train_moe.json",
             tu_srcdir());
    json = (char *)tu_read_file(path, &len);
    json = realloc(json, len + 1);
    ck_assert_ptr_nonnull(json);
    json[len] = '\0';
    train_parity("moe ops", json, 5);
    free(json);
}
END_TEST

/*
 * The loss reads the gate's weights directly, so even dropped (item,
 * choice) pairs get a weight gradient.  With normalize none a dropped
 * pair's weight is the constant 0: it must not reach p, hence Wg (cap 1
 * per expert and group of 8 drops most of the 16 items' pairs).
 */
START_TEST(test_cuda_train_gate_dropped)
{
    train_parity("gate dropped pairs", GRAPH("[\"core\", \"moe\"]",
        IN("x", "[-1, 8]") "," PARAM("Wg", "[4, 8]", "71") ","
        ACT("expert") "," ACT("slot") "," ACT("weight") ","
        ACT("slot_item") "," ACT("aux") "," ACT("load") "," ACT("m1") ","
        OUT("loss"),
        NODE("gate", "moe.gate.importance", "[0, 1]", "[2, 3, 4, 5, 6, 7]",
             AINT("group_size", "8") "," AFLOAT("capacity_factor", "0.5"))
        "," NODE("mean1", "core.mean", "[4]", "[8]", AINT("axis", "1")) ","
        NODE("mean0", "core.mean", "[8]", "[9]", AINT("axis", "0"))), 16);
}
END_TEST

/*
 * A superclass label out of [0, E) (all four are 4, E = 4): the CPU fails
 * the node, the GPU cannot report it without a synchronisation, so the
 * aux (here the loss) is NaN and so is the gradient of every routing row
 * (plugins/moe/cuda_gate.cu, cuda_gate_bwd.cu), hence of Wg.
 */
START_TEST(test_cuda_train_gate_bad_label)
{
    smlp_registry_t *reg = registry();
    smlp_graph_t *g = graph_json(GRAPH("[\"moe\"]",
        IN("x", "[16, 8]") "," PARAM("Wg", "[4, 8]", "72") ","
        ACT("expert") "," ACT("slot") "," ACT("weight") ","
        ACT("slot_item") "," OUT("loss") "," ACT("load") ","
        IN_INIT("sc", "I32", "[4]", "Uniform", "4", "4"),
        NODE("gate", "moe.gate.per_image", "[0, 1, 8]", "[2, 3, 4, 5, 6, 7]",
             AINT("items_per_image", "4") "," AFLOAT("aux_weight", "1"))));
    smlp_session_t *gpu = train_session(g, reg, SMLP_DEVICE_CUDA, 1, NULL);
    struct smlp_tensor t;
    int64_t i;

    run_ok(gpu);
    ck_assert_int_eq(smlp_session_tensor(gpu, "loss", &t), SMLP_OK);
    ck_assert(isnan(((const float *)t.data)[0]));
    ck_assert_msg(smlp_session_backward(gpu) == SMLP_OK, "%s",
                  smlp_session_errmsg(gpu));
    ck_assert_int_eq(smlp_session_grad(gpu, "Wg", &t), SMLP_OK);
    ck_assert_int_eq(smlp_tensor_numel(&t), 32);
    for (i = 0; i < 32; i++)
        ck_assert_msg(isnan(((const float *)t.data)[i]), "d Wg[%lld] = %g",
                      (long long)i, ((const float *)t.data)[i]);
    smlp_session_destroy(gpu);
    smlp_graph_unload(g);
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
    tc = tcase_create("training");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_cuda_train_mixer_ops);
    tcase_add_test(tc, test_cuda_train_mlp_ops);
    tcase_add_test(tc, test_cuda_train_norm_tails);
    tcase_add_test(tc, test_cuda_train_gelu_nonfinite);
    tcase_add_test(tc, test_cuda_train_moco);
    tcase_add_test(tc, test_cuda_train_moe);
    tcase_add_test(tc, test_cuda_train_gate_dropped);
    tcase_add_test(tc, test_cuda_train_gate_bad_label);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    smlp_registry_t *reg;
    smlp_graph_t *g;
    smlp_session_t *s;
    struct smlp_session_opts o;
    struct smlp_error err;
    char dir[512];
    SRunner *sr;
    int failed;

#ifdef SMLP_CUDA_EMU
    /* The emulated plugins come before the build tree's (registry.c's
     * search order: the fixture directory, then this). */
    setenv("SMLP_PLUGIN_PATH", SMLP_EMU_PLUGINS, 1);
#endif
    /* Probe: a session on the GPU. */
    tu_fixture_dir(dir, sizeof(dir));
    if ((reg = smlp_registry_create(dir, &err)) == NULL ||
        (g = probe_graph(&err)) == NULL) {
        fprintf(stderr, "FAIL: cannot set up the probe: %s\n", err.msg);
        return EXIT_FAILURE;
    }
    smlp_session_opts_init(&o);
    o.device = SMLP_DEVICE_CUDA;
    s = smlp_session_create(g, reg, &o, &err);
    if (s == NULL) {
        const char *why = strstr(err.msg, "device cuda: ");
        int ok = no_device_checks(reg, g, err.msg, err.status);

        smlp_graph_unload(g);
        smlp_registry_destroy(reg);
        if (!ok)
            return EXIT_FAILURE;
        printf("SKIP: no CUDA device (%s)\n", why ? why : err.msg);
        return 77;
    }
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
    sr = srunner_create(cuda_suite());
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
