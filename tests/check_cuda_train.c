/*
 * check_cuda_train.c - the CUDA backward kernels against the CPU:
 * training sessions whose whole backward runs on the GPU ("training");
 * check_cuda.c checks the forward.
 *
 * Without a usable GPU (or on a machine without a CUDA driver, such as CI)
 * it checks the error path - a session asking for device cuda fails with
 * SMLP_EDEVICE and a message saying why, and the registry and CPU sessions
 * still work - then prints "SKIP: no CUDA device (<reason>)" and exits 77
 * (automake's SKIP); check_cuda.c does the same (both call cudafx_main,
 * cudafx.h).  With a GPU, training sessions of small graphs that use every
 * core, norm, moco and moe op with a backward run their whole backward on
 * the GPU (plugin ABI 1.3), and their losses and parameter gradients must
 * agree with the CPU's over two SGD steps: the normwise relative error
 * max|gpu - cpu| / max|cpu| at most 1e-4.  It prints each error.  It also
 * checks GELU's backward at NaN and at +-inf against the CPU's, and the NaN
 * gradients a gate's superclass label out of range gives on the GPU.
 *
 * Check runs the GPU tests in one process (CK_NOFORK): a CUDA context
 * does not survive fork().
 *
 * Built with SMLP_CUDA_EMU (tests/cudaemu.am: check_cuda_train_emu), the
 * same tests run on any machine: the CUDA runtime and cuBLAS are
 * tests/fakecuda.c's host threads and the plugins' kernels their own
 * code compiled for the CPU (tests/cudaemu/cudaemu.h), loaded from
 * SMLP_EMU_PLUGINS.
 */
#include "cudafx.h"

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
    smlp_registry_t *reg = tu_fixture_registry();
    smlp_graph_t *g = tu_graph_json(json);
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

        tu_run_ok(cpu);
        tu_run_ok(gpu);
        ck_assert_int_eq(smlp_session_backward(cpu), SMLP_OK);
        ck_assert_msg(smlp_session_backward(gpu) == SMLP_OK, "%s",
                      smlp_session_errmsg(gpu));
        e = tu_rel_error(cpu, gpu, "loss");
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
    smlp_registry_t *reg = tu_fixture_registry();
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
    g = tu_graph_json(json);
    cpu = train_session(g, reg, SMLP_DEVICE_CPU, 3, NULL);
    gpu = train_session(g, reg, SMLP_DEVICE_CUDA, 3, NULL);
    prep(cpu);
    prep(gpu);
    tu_run_ok(cpu);
    tu_run_ok(gpu);
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
    smlp_registry_t *reg = tu_fixture_registry();
    smlp_graph_t *g = tu_graph_json(GRAPH("[\"moe\"]",
        IN("x", "[16, 8]") "," PARAM("Wg", "[4, 8]", "72") ","
        ACT("expert") "," ACT("slot") "," ACT("weight") ","
        ACT("slot_item") "," OUT("loss") "," ACT("load") ","
        IN_INIT("sc", "I32", "[4]", "Uniform", "4", "4"),
        NODE("gate", "moe.gate.per_image", "[0, 1, 8]", "[2, 3, 4, 5, 6, 7]",
             AINT("items_per_image", "4") "," AFLOAT("aux_weight", "1"))));
    smlp_session_t *gpu = train_session(g, reg, SMLP_DEVICE_CUDA, 1, NULL);
    struct smlp_tensor t;
    int64_t i;

    tu_run_ok(gpu);
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
cuda_train_suite(void)
{
    Suite *s = suite_create("cuda_train");
    TCase *tc = tcase_create("training");

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
    return cudafx_main(cuda_train_suite);
}
