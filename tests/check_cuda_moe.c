/*
 * check_cuda_moe.c - the CUDA kernels of the `moe` plugin against its CPU
 * kernels (plugins/moe/cuda_gate.cu, cuda_ffn.cu).
 *
 * Each test runs a graph in a CPU session and in a CUDA session with the
 * same seed and weights and compares every output after every run:
 * routing decisions (expert, slot, slot_item, load: i32) must be equal,
 * float outputs (weight, aux, buffers, y, features, logits) within the
 * normwise relative error max|gpu - cpu| / max|cpu| <= 1e-4.  Creating
 * the CUDA session must not print the runtime's "no cuda kernel" notice
 * for a moe node (which would mean it fell back to the CPU and the test
 * compared the CPU with itself).
 *
 * Routing is a discrete function of the router logits, so the gate tests
 * set x and Wg to multiples of 1/8 in [-1, 1] with at most 16 features:
 * every product and partial sum is exact in float, the logits are the same
 * bits on both devices whatever the summation order, and the decisions
 * must agree exactly - including the many ties such data makes (top-k
 * ties -> lower expert, importance ties -> lower item).  Training cases
 * add the seeded gate noise, which both devices draw from the same
 * counter-based stream.  The whole sparse_mlp_fmnist graph runs with the
 * PyTorch reference's weights and images (drawn from the generator
 * settings in tests/reference/sparse_mlp_fmnist.safetensors by
 * tests/refspec.c; batch 4, whose routing margins the reference chose far
 * above float rounding) and at batch 8 with those
 * four images twice (a routing group is one image, so each group routes
 * as at batch 4).
 *
 * Without a usable GPU (or in a build without CUDA) it prints
 * "SKIP: no CUDA device (<reason>)" and exits 77.  SMLP_CUDA_MOE_SELFTEST=1
 * runs the "CUDA" side on the CPU too, to check this test itself on a
 * machine without a GPU.  Check runs the tests in one process (CK_NOFORK):
 * a CUDA context does not survive fork().  Built with SMLP_CUDA_EMU
 * (tests/cudaemu.am: check_cuda_moe_emu) it runs the plugin's own CUDA
 * kernels on the CPU (tests/cudaemu/cudaemu.h), on any machine.
 */
#include <math.h>
#include <stdint.h>

#include "refspec.h"
#include "testutil.h"

#define TOL 1e-4

static int selftest; /* SMLP_CUDA_MOE_SELFTEST: both sides on the CPU */
static uint64_t session_seed; /* opts.seed of both sessions */

static smlp_session_t *
session_opts(const smlp_graph_t *g, smlp_registry_t *reg, int device,
             int64_t batch, int training, const char *weights)
{
    struct smlp_session_opts o;
    struct smlp_error err;
    smlp_session_t *s;

    smlp_session_opts_init(&o);
    o.device = device;
    o.batch = batch;
    o.training = training;
    o.threads = 1;
    o.weights = weights;
    o.seed = session_seed;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    return s;
}

/*
 * A CUDA session (a CPU one in self-test mode) whose creation printed no
 * "no cuda kernel" notice: every node has its CUDA kernel.  stderr is
 * captured around smlp_session_create and echoed afterwards.
 */
static smlp_session_t *
gpu_session(const smlp_graph_t *g, smlp_registry_t *reg, int64_t batch,
            int training, const char *weights)
{
    char path[] = "/tmp/smlp-moe-stderr-XXXXXX", text[8192], *line;
    struct smlp_session_opts o;
    struct smlp_error err;
    smlp_session_t *s;
    ssize_t len;
    int fd, saved;

    if (selftest)
        return session_opts(g, reg, SMLP_DEVICE_CPU, batch, training,
                            weights);
    smlp_session_opts_init(&o);
    o.device = SMLP_DEVICE_CUDA;
    o.batch = batch;
    o.training = training;
    o.threads = 1;
    o.weights = weights;
    o.seed = session_seed;
    fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    fflush(stderr);
    saved = dup(2);
    ck_assert_int_ge(saved, 0);
    /* No ck_assert until stderr is back: a failure would leave it here. */
    if (dup2(fd, 2) >= 0) {
        s = smlp_session_create(g, reg, &o, &err);
        fflush(stderr);
        dup2(saved, 2);
    } else {
        s = smlp_session_create(g, reg, &o, &err);
    }
    close(saved);
    len = pread(fd, text, sizeof(text) - 1, 0);
    close(fd);
    unlink(path);
    text[len > 0 ? len : 0] = '\0';
    fputs(text, stderr);
    ck_assert_msg(s != NULL, "%s", err.msg);
    for (line = strtok(text, "\n"); line != NULL;
         line = strtok(NULL, "\n"))
        ck_assert_msg(strstr(line, "no cuda kernel") == NULL ||
                          strstr(line, "(moe.") == NULL,
                      "a moe node runs on the CPU in the CUDA session: %s",
                      line);
    return s;
}

/* Prints the kept and dropped (item, choice) pairs of output "load". */
static void
print_load(const char *label, smlp_session_t *s)
{
    struct smlp_tensor t;
    int64_t kept = 0, dropped = 0, i;

    ck_assert_int_eq(smlp_session_tensor(s, "load", &t), SMLP_OK);
    for (i = 0; i + 1 < smlp_tensor_numel(&t); i += 2) {
        kept += ((const int32_t *)t.data)[i];
        dropped += ((const int32_t *)t.data)[i + 1];
    }
    printf("routing %-33s kept %lld, dropped %lld\n", label,
           (long long)kept, (long long)dropped);
}

/* Compares every graph output; prints and checks each. */
static void
compare_outputs(const char *label, int run, smlp_session_t *cpu,
                smlp_session_t *gpu)
{
    int i;

    for (i = 0; i < smlp_session_tensor_count(cpu, 4); i++) {
        const char *name = smlp_session_tensor_name(cpu, 4, i);
        double e = tu_rel_error(cpu, gpu, name);

        printf("parity %-34s run %d %-28s %s %.3g\n", label, run, name,
               strstr(name, "load") || strstr(name, "slot") ||
                       strstr(name, "expert")
                   ? "mismatches/rel err"
                   : "max rel err",
               e);
        fflush(stdout);
        ck_assert_msg(e <= TOL, "%s, run %d: %s: error %g > %g", label, run,
                      name, e, TOL);
        if (strcmp(name, "load") == 0)
            print_load(label, cpu);
    }
}

/* Deterministic multiples of 1/8 in [-1, 1]. */
static float
eighth(uint64_t i, uint64_t seed)
{
    uint64_t h = (i + 1) * 0x9e3779b97f4a7c15ull ^ seed * 0xbf58476d1ce4e5b9ull;

    h ^= h >> 29;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 32;
    return (float)((int)(h % 17) - 8) / 8.0f;
}

/* Rows of x that exact_router fills with NaN (-1: none). */
static int64_t nan_rows[2] = {-1, -1};

/* x and Wg (when the graph has them) as exact multiples of 1/8; the rows
 * of x in nan_rows all NaN. */
static void
exact_router(smlp_session_t *s)
{
    static const char *const names[2] = {"x", "Wg"};
    struct smlp_tensor t;
    int64_t i;
    int k;

    for (k = 0; k < 2; k++) {
        if (smlp_session_tensor(s, names[k], &t) != SMLP_OK)
            continue;
        ck_assert_int_le(t.shape[t.rank - 1], 16);
        for (i = 0; i < smlp_tensor_numel(&t); i++)
            ((float *)t.data)[i] = eighth((uint64_t)i, (uint64_t)k + 7);
        for (i = 0; k == 0 && i < 2; i++)
            if (nan_rows[i] >= 0 && nan_rows[i] < t.shape[0]) {
                float *row = (float *)t.data + nan_rows[i] * t.shape[1];
                int64_t c;

                for (c = 0; c < t.shape[1]; c++)
                    row[c] = NAN;
            }
    }
}

/* Runs graph `json` `runs` times on both sides, comparing after each. */
static void
parity(const char *label, const char *json, int training, int runs)
{
    smlp_registry_t *reg = tu_registry();
    smlp_graph_t *g = tu_graph_json(json);
    smlp_session_t *cpu = session_opts(g, reg, SMLP_DEVICE_CPU, 1, training,
                                       NULL);
    smlp_session_t *gpu = gpu_session(g, reg, 1, training, NULL);
    int r;

    for (r = 0; r < runs; r++) {
        /* Inputs are uploaded at each run; parameters after
         * smlp_session_tensor (exact_router calls it again each time). */
        exact_router(cpu);
        exact_router(gpu);
        tu_run_ok(cpu);
        tu_run_ok(gpu);
        compare_outputs(label, r, cpu, gpu);
    }
    smlp_session_destroy(cpu);
    smlp_session_destroy(gpu);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}

/* ---- JSON pieces (graph.fbs as JSON, compiled by flatc) ----------------- */

#define IN(name, shape)                                                      \
    "{\"name\": \"" name "\", \"kind\": \"Input\", \"shape\": " shape "}"
#define IN_I32(name, shape, a, b)                                            \
    "{\"name\": \"" name "\", \"kind\": \"Input\", \"dtype\": \"I32\", "     \
    "\"shape\": " shape ", \"init\": {\"kind\": \"Uniform\", \"a\": " a      \
    ", \"b\": " b ", \"seed\": 11}}"
#define PARAM(name, shape, seed)                                             \
    "{\"name\": \"" name "\", \"kind\": \"Parameter\", \"shape\": " shape    \
    ", \"init\": {\"kind\": \"Uniform\", \"a\": -1, \"b\": 1, \"seed\": "   \
    seed "}}"
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
#define GRAPH(tensors, nodes)                                                \
    "{\"name\": \"moe\", \"plugins\": [\"moe\"], \"tensors\": [" tensors     \
    "], \"nodes\": [" nodes "]}"

/* Tensors 2..7: the six gate outputs. */
#define GATE_OUTS                                                            \
    OUT("expert") "," OUT("slot") "," OUT("weight") "," OUT("slot_item")     \
        "," OUT("aux") "," OUT("load")

/* A learned gate on x [n, d] with Wg [e, d]. */
#define GATE(op, n, d, e, attrs)                                             \
    GRAPH(IN("x", "[" n ", " d "]") "," PARAM("Wg", "[" e ", " d "]", "1")   \
          "," GATE_OUTS,                                                     \
          NODE("gate", op, "[0, 1]", "[2, 3, 4, 5, 6, 7]", attrs))

/* The hash gate on x [n, d]: tensors 1..6 are its outputs. */
#define HASH(n, d, attrs)                                                    \
    GRAPH(IN("x", "[" n ", " d "]") "," GATE_OUTS,                           \
          NODE("gate", "moe.gate.hash", "[0]", "[1, 2, 3, 4, 5, 6]", attrs))

/*
 * A whole MoE layer: gate -> dispatch -> expert_ffn -> combine, every
 * intermediate an output so that each op is compared.  ffn_ins: the
 * expert_ffn inputs ("[8, 9, 10, 11, 12, 5]" passes slot_item).
 */
#define LAYER(gate_op, n, d, e, h, o, gate_attrs, ffn_ins, ffn_attrs)        \
    GRAPH(IN("x", "[" n ", " d "]") "," PARAM("Wg", "[" e ", " d "]", "1")   \
          "," GATE_OUTS "," OUT("buf") ","                                   \
          PARAM("W1", "[" e ", " h ", " d "]", "2") ","                      \
          PARAM("b1", "[" e ", " h "]", "3") ","                             \
          PARAM("W2", "[" e ", " o ", " h "]", "4") ","                      \
          PARAM("b2", "[" e ", " o "]", "5") "," OUT("ffn") "," OUT("y"),   \
          NODE("gate", gate_op, "[0, 1]", "[2, 3, 4, 5, 6, 7]", gate_attrs)  \
          "," NODE("dispatch", "moe.dispatch", "[0, 5]", "[8]", "") ","      \
          NODE("experts", "moe.expert_ffn", ffn_ins, "[13]", ffn_attrs) ","  \
          NODE("combine", "moe.combine", "[13, 2, 3, 4]", "[14]", ""))

/* ---- gates in inference ------------------------------------------------- */

START_TEST(test_cuda_moe_gate_topk)
{
    /* cap = 16 of 64 items on 4 experts: skewed routing drops some. */
    parity("topk k=1 cf=1", GATE("moe.gate.topk", "64", "8", "4",
        AFLOAT("capacity_factor", "1.0")), 0, 1);
    /* k=2, groups of 24, cap = ceil(2*24*0.75/6) = 6 -> multiple of 4. */
    parity("topk k=2 G=24 cf=.75 topk-norm", GATE("moe.gate.topk", "96",
        "8", "6",
        AINT("k", "2") "," AINT("group_size", "24") ","
        AFLOAT("capacity_factor", "0.75") "," AINT("capacity_multiple", "4")
        "," ASTR("normalize", "topk")), 0, 1);
    /* Inference uses eval_capacity_factor: 0 = no dropping. */
    parity("topk k=3 eval cf=0", GATE("moe.gate.topk", "48", "5", "5",
        AINT("k", "3") "," AINT("group_size", "16") ","
        AFLOAT("capacity_factor", "0.5") ","
        AFLOAT("eval_capacity_factor", "0")), 0, 1);
    parity("topk k=1 E=1", GATE("moe.gate.topk", "20", "3", "1",
        AFLOAT("capacity_factor", "0.5")), 0, 1);
}
END_TEST

START_TEST(test_cuda_moe_gate_importance)
{
    parity("importance k=1 G=32 cf=.5", GATE("moe.gate.importance", "64",
        "8", "4",
        AINT("group_size", "32") "," AFLOAT("capacity_factor", "0.5")), 0,
        1);
    parity("importance k=2 G=64 topk-norm", GATE("moe.gate.importance",
        "128", "16", "8",
        AINT("k", "2") "," AINT("group_size", "64") ","
        AFLOAT("capacity_factor", "1.0") "," ASTR("normalize", "topk")), 0,
        1);
    /* Groups that do not divide into warps of 32: 37 items. */
    parity("importance k=2 G=37", GATE("moe.gate.importance", "111", "6",
        "3",
        AINT("k", "2") "," AINT("group_size", "37") ","
        AFLOAT("capacity_factor", "0.8")), 0, 1);
}
END_TEST

/*
 * Items whose router logits are NaN (a NaN row of x): their first-choice
 * p is NaN, which the importance order takes as -inf (key_cmp's rule), so
 * they come last in their group and are the ones dropped; a NaN key
 * compared as is would rank before every item and break the order.
 */
START_TEST(test_cuda_moe_gate_importance_nan)
{
    nan_rows[0] = 2;
    nan_rows[1] = 13;
    parity("importance k=1 G=16 NaN items", GATE("moe.gate.importance",
        "32", "8", "4",
        AINT("group_size", "16") "," AFLOAT("capacity_factor", "0.5")), 0,
        1);
    nan_rows[0] = nan_rows[1] = -1;
}
END_TEST

/* G = 4096 is the largest group whose keys sit in shared memory; 5000
 * takes the global-memory path (the order kept in `weight`). */
START_TEST(test_cuda_moe_gate_importance_large_groups)
{
    parity("importance k=2 G=4096 (shared)", GATE("moe.gate.importance",
        "4096", "4", "8",
        AINT("k", "2") "," AFLOAT("capacity_factor", "0.9")), 0, 1);
    parity("importance k=1 G=5000 (global)", GATE("moe.gate.importance",
        "10000", "4", "4",
        AINT("group_size", "5000") "," AFLOAT("capacity_factor", "0.8")), 0,
        1);
}
END_TEST

START_TEST(test_cuda_moe_gate_per_image)
{
    /* 16 images of 4 items, groups of 4 images. */
    parity("per_image k=2 T=4 G=16", GATE("moe.gate.per_image", "64", "8",
        "4",
        AINT("k", "2") "," AINT("items_per_image", "4") ","
        AINT("group_size", "16") "," AFLOAT("capacity_factor", "1.0") ","
        ASTR("normalize", "topk")), 0, 1);
    parity("per_image k=1 T=8 all", GATE("moe.gate.per_image", "64", "8",
        "4",
        AINT("items_per_image", "8") "," AFLOAT("capacity_factor", "0.5")),
        0, 1);
}
END_TEST

START_TEST(test_cuda_moe_gate_hash)
{
    /* chunk: positions 0..7 -> experts 0,0,0,1,1,1,2,2; cap 3 per group
     * of 16 (two images) drops some. */
    parity("hash chunk cf=.5", HASH("64", "4",
        AINT("experts", "3") "," AINT("items_per_image", "8") ","
        AINT("group_size", "16") "," AFLOAT("capacity_factor", "0.5")), 0,
        1);
    parity("hash hash no drop", HASH("64", "4",
        AINT("experts", "5") "," AINT("items_per_image", "16") ","
        ASTR("mode", "hash")), 0, 1);
    parity("hash hash cf=.75 multiple 2", HASH("96", "4",
        AINT("experts", "4") "," AINT("items_per_image", "12") ","
        AINT("group_size", "24") "," AFLOAT("capacity_factor", "0.75") ","
        AINT("capacity_multiple", "2") "," ASTR("mode", "hash")), 0, 1);
}
END_TEST

/* ---- gates in training: noise, aux -------------------------------------- */

START_TEST(test_cuda_moe_gate_training)
{
    /* Three runs: the noise stream moves on with the step. */
    parity("importance train k=2 noise vmoe", GATE("moe.gate.importance",
        "64", "8", "4",
        AINT("k", "2") "," AINT("group_size", "16") ","
        AFLOAT("capacity_factor", "1.0") "," AFLOAT("noise_std", "1.0") ","
        ASTR("aux", "vmoe") "," AFLOAT("aux_weight", "0.5")), 1, 3);
    parity("importance train k=2 vmoe sigma=0", GATE("moe.gate.importance",
        "64", "8", "4",
        AINT("k", "2") "," AINT("group_size", "32") ","
        AFLOAT("capacity_factor", "0.75") "," ASTR("normalize", "topk")), 1,
        2);
    parity("topk train noise switch", GATE("moe.gate.topk", "64", "8", "8",
        AINT("group_size", "32") "," AFLOAT("capacity_factor", "1.25") ","
        AFLOAT("noise_std", "0.5") "," ASTR("aux", "switch") ","
        AFLOAT("aux_weight", "0.1")), 1, 3);
    parity("topk train aux none", GATE("moe.gate.topk", "32", "8", "4",
        AFLOAT("noise_std", "2.0") "," ASTR("aux", "none")), 1, 2);
    /* per_image with superclass labels: CE of the image logits. */
    parity("per_image train superclass vmoe",
        GRAPH(IN("x", "[64, 8]") "," PARAM("Wg", "[4, 8]", "1") ","
              GATE_OUTS "," IN_I32("sc", "[16]", "0", "3"),
              NODE("gate", "moe.gate.per_image", "[0, 1, 8]",
                   "[2, 3, 4, 5, 6, 7]",
                   AINT("items_per_image", "4") "," AINT("group_size", "16")
                   "," AFLOAT("capacity_factor", "1.0") ","
                   AFLOAT("noise_std", "1.0") ","
                   AFLOAT("aux_weight", "0.2"))), 1, 3);
    parity("per_image train switch", GATE("moe.gate.per_image", "64", "8",
        "4",
        AINT("k", "2") "," AINT("items_per_image", "4") ","
        AINT("group_size", "32") "," ASTR("aux", "switch") ","
        AFLOAT("noise_std", "0.3")), 1, 2);
    /* The noise follows the session's seed (opts.seed) on both sides. */
    session_seed = 987654321;
    parity("topk train noise seed", GATE("moe.gate.topk", "32", "8", "4",
        AFLOAT("noise_std", "1.0") "," ASTR("aux", "none")), 1, 1);
    session_seed = 0;
}
END_TEST

/* ---- dispatch, expert_ffn, combine -------------------------------------- */

START_TEST(test_cuda_moe_layer)
{
    parity("layer importance k=2 gelu", LAYER("moe.gate.importance", "64",
        "8", "4", "32", "8",
        AINT("k", "2") "," AINT("group_size", "16") ","
        AFLOAT("capacity_factor", "1.0"),
        "[8, 9, 10, 11, 12, 5]", ASTR("activation", "gelu")), 0, 1);
    /* Without slot_item every row is computed (empty ones give b2's
     * image of act(b1)). */
    parity("layer topk relu no slot_item", LAYER("moe.gate.topk", "48",
        "6", "3", "16", "5",
        AINT("group_size", "16") "," AFLOAT("capacity_factor", "0.75") ","
        ASTR("normalize", "topk"),
        "[8, 9, 10, 11, 12]", ASTR("activation", "relu")), 0, 1);
    parity("layer per_image k=2 gelu", LAYER("moe.gate.per_image", "64",
        "8", "4", "24", "8",
        AINT("k", "2") "," AINT("items_per_image", "8") ","
        AINT("group_size", "32") "," AFLOAT("capacity_factor", "1.0"),
        "[8, 9, 10, 11, 12, 5]", ""), 0, 1);
    parity("layer train noise", LAYER("moe.gate.importance", "64", "8",
        "4", "32", "8",
        AINT("k", "2") "," AINT("group_size", "16") ","
        AFLOAT("capacity_factor", "1.05") "," AFLOAT("noise_std", "1.0"),
        "[8, 9, 10, 11, 12, 5]", ""), 1, 2);
}
END_TEST

/*
 * expert_ffn alone on a buffer of large values (Normal, sd 8): most hidden
 * pre-activations are beyond +-5.7, where the exact-erf GELU's argument
 * passes smlp_erff's clamp at +-4 (past it the rational approximation is
 * no longer an erf), and the GPU must clamp as the CPU does.
 */
START_TEST(test_cuda_moe_ffn_gelu_tails)
{
    parity("expert_ffn gelu tails", GRAPH(
        "{\"name\": \"buf\", \"kind\": \"Input\", \"shape\": [3, 8, 6], "
        "\"init\": {\"kind\": \"Normal\", \"a\": 0, \"b\": 8, "
        "\"seed\": 5}}," PARAM("W1", "[3, 16, 6]", "2") ","
        PARAM("b1", "[3, 16]", "3") "," PARAM("W2", "[3, 4, 16]", "4") ","
        PARAM("b2", "[3, 4]", "5") "," OUT("y"),
        NODE("experts", "moe.expert_ffn", "[0, 1, 2, 3, 4]", "[5]",
             ASTR("activation", "gelu"))), 0, 1);
}
END_TEST

/* ---- sparse_mlp_fmnist with the reference's weights --------------------- */

static void
ref_path(char *out, size_t len)
{
    snprintf(out, len, "%s/tests/reference/sparse_mlp_fmnist.safetensors",
             tu_srcdir());
}

/* Copies tensor `name` of src into dst `times` times over (dst's tensor
 * is `times` as long). */
static void
copy_repeated(smlp_session_t *src, smlp_session_t *dst, const char *name,
              int times)
{
    struct smlp_tensor a, b;
    int64_t n;
    int i;

    ck_assert_int_eq(smlp_session_tensor(src, name, &a), SMLP_OK);
    ck_assert_int_eq(smlp_session_tensor(dst, name, &b), SMLP_OK);
    n = smlp_tensor_numel(&a);
    ck_assert_int_eq(smlp_tensor_numel(&b), times * n);
    for (i = 0; i < times; i++)
        memcpy((float *)b.data + i * n, a.data, (size_t)n * sizeof(float));
}

static void
fmnist(int64_t batch)
{
    smlp_registry_t *reg = tu_registry();
    smlp_graph_t *g;
    smlp_session_t *ref, *cpu, *gpu;
    struct smlp_error err;
    struct smlp_tensor a;
    char path[600], wpath[700], label[64], msg[1024];
    float first[80];
    int64_t n;
    int r;

    tu_shipped_graph("sparse_mlp_fmnist", path, sizeof(path));
    g = smlp_graph_load(path, &err);
    ck_assert_msg(g != NULL, "%s", err.msg);
    ref_path(path, sizeof(path));
    /* The reference's weights (drawn from its generator settings) as a
     * file both sessions load, its four images from a batch-4 session. */
    snprintf(wpath, sizeof(wpath), "%s/ref_weights.safetensors",
             tu_tmpdir());
    ck_assert_msg(refspec_write_weights(g, reg, path, wpath, msg,
                                        sizeof(msg)) == 0, "%s", msg);
    ref = session_opts(g, reg, SMLP_DEVICE_CPU, 4, 0, wpath);
    ck_assert_msg(refspec_fill(ref, path, 1, msg, sizeof(msg)) == 0, "%s",
                  msg);
    cpu = session_opts(g, reg, SMLP_DEVICE_CPU, batch, 0, wpath);
    gpu = gpu_session(g, reg, batch, 0, wpath);
    copy_repeated(ref, cpu, "image", (int)(batch / 4));
    copy_repeated(ref, gpu, "image", (int)(batch / 4));
    snprintf(label, sizeof(label), "sparse_mlp_fmnist b=%lld",
             (long long)batch);
    for (r = 0; r < 2; r++) {
        tu_run_ok(cpu);
        tu_run_ok(gpu);
        compare_outputs(label, r, cpu, gpu);
    }
    /* The GPU is deterministic: a third run gives the same bits. */
    ck_assert_int_eq(smlp_session_tensor(gpu, "logits", &a), SMLP_OK);
    n = smlp_tensor_numel(&a);
    ck_assert_int_le(n, 80);
    memcpy(first, a.data, (size_t)n * sizeof(float));
    tu_run_ok(gpu);
    ck_assert_int_eq(smlp_session_tensor(gpu, "logits", &a), SMLP_OK);
    ck_assert_mem_eq(first, a.data, (size_t)n * sizeof(float));
    smlp_session_destroy(ref);
    smlp_session_destroy(cpu);
    smlp_session_destroy(gpu);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}

START_TEST(test_cuda_moe_fmnist_b4)
{
    fmnist(4);
}
END_TEST

START_TEST(test_cuda_moe_fmnist_b8)
{
    fmnist(8);
}
END_TEST

/* ---- main --------------------------------------------------------------- */

static Suite *
cuda_moe_suite(void)
{
    Suite *s = suite_create("cuda_moe");
    TCase *tc = tcase_create("gates");

    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_cuda_moe_gate_topk);
    tcase_add_test(tc, test_cuda_moe_gate_importance);
    tcase_add_test(tc, test_cuda_moe_gate_importance_large_groups);
    tcase_add_test(tc, test_cuda_moe_gate_importance_nan);
    tcase_add_test(tc, test_cuda_moe_gate_per_image);
    tcase_add_test(tc, test_cuda_moe_gate_hash);
    tcase_add_test(tc, test_cuda_moe_gate_training);
    suite_add_tcase(s, tc);
    tc = tcase_create("layer");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_cuda_moe_layer);
    tcase_add_test(tc, test_cuda_moe_ffn_gelu_tails);
    suite_add_tcase(s, tc);
    tc = tcase_create("graphs");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_cuda_moe_fmnist_b4);
    tcase_add_test(tc, test_cuda_moe_fmnist_b8);
    suite_add_tcase(s, tc);
    return s;
}

/*
 * Outside Check's tests (no ck_assert): a one-node graph (the hash gate)
 * from JSON through flatc, or NULL.
 */
static smlp_graph_t *
probe_graph(struct smlp_error *err)
{
    static const char json[] = HASH("8", "2",
        AINT("experts", "2") "," AINT("items_per_image", "4"));
    char dir[64] = "/tmp/smlp-cuda-moe-XXXXXX", path[256], cmd[1024];
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

int
main(void)
{
    smlp_registry_t *reg;
    smlp_graph_t *g;
    smlp_session_t *s;
    struct smlp_session_opts o;
    struct smlp_error err;
    SRunner *sr;
    int failed;

#ifdef SMLP_CUDA_EMU
    /* The emulated plugins come before the build tree's. */
    setenv("SMLP_PLUGIN_PATH", SMLP_EMU_PLUGINS, 1);
#endif
    memset(&err, 0, sizeof(err));
    selftest = getenv("SMLP_CUDA_MOE_SELFTEST") != NULL &&
               strcmp(getenv("SMLP_CUDA_MOE_SELFTEST"), "1") == 0;
    if ((reg = smlp_registry_create(NULL, &err)) == NULL ||
        (g = probe_graph(&err)) == NULL) {
        fprintf(stderr, "FAIL: cannot set up the probe (flatc, "
                "SMLP_TEST_SRCDIR?): %s\n", err.msg);
        return EXIT_FAILURE;
    }
    smlp_session_opts_init(&o);
    o.device = selftest ? SMLP_DEVICE_CPU : SMLP_DEVICE_CUDA;
    s = smlp_session_create(g, reg, &o, &err);
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
    if (s == NULL) {
        const char *why = strstr(err.msg, "device cuda: ");

        if (err.status != SMLP_EDEVICE || why == NULL) {
            fprintf(stderr, "FAIL: unexpected error %d: %s\n", err.status,
                    err.msg);
            return EXIT_FAILURE;
        }
        printf("SKIP: no CUDA device (%s)\n", why);
        return 77;
    }
    if (selftest)
        printf("SMLP_CUDA_MOE_SELFTEST=1: both sides on the CPU\n");
    sr = srunner_create(cuda_moe_suite());
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
