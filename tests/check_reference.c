/*
 * check_reference.c - the runtime against the independent PyTorch
 * reference (tests/reference/sparse_mlp_ref.py, written from OPS.md, run
 * by hand; its outputs are committed):
 *
 *   sparse_mlp_fmnist.safetensors  the shipped sparse_mlp_fmnist graph at
 *       batch 4 with the reference's weights and image: features and
 *       logits, and every gate's load output;
 *   sparse_mlp_s_moe.safetensors   the MoE_s layer of block 6 of
 *       sparse_mlp_s as a four-node graph (gate, dispatch, expert_ffn,
 *       combine), in inference and in training mode (noise_std 0): y,
 *       routing (expert, slot), combine weights, load and aux.
 *
 * The files hold the expected outputs only: the parameters and inputs
 * come from the reference's counter-based generator, whose settings for
 * each tensor are in the file's __metadata__ ("init.NAME": "KIND SEED
 * CENTER HALF SUM"); tests/refspec.c draws the same values and checks
 * their sum against the reference's.
 *
 * Float results are compared with the relative error
 *     rel = max_i |got_i - want_i| / max_i |want_i|  <= 1e-4
 * (one norm for the whole tensor, so that entries near zero do not
 * dominate); routing decisions and loads must be equal.  The reference
 * chose its random values so that every routing decision has a margin of
 * at least 1e-3 (top-k and capacity boundaries) or 1e-5 (slot order), far
 * above float32 rounding.
 */
#include <math.h>
#include <stdint.h>

#include "refspec.h"
#include "safetensors.h"
#include "testutil.h"

#define REL_TOL 1e-4

/* ---- the reference files (runtime/safetensors.c reads them) ---------- */

struct ref_file {
    char path[600];
    struct smlp__st_file *st;
};

struct ref_tensor {
    const void *data;
    int dtype;      /* SMLP_DTYPE_F32 or SMLP_DTYPE_I32 */
    int rank;
    int64_t shape[SMLP_MAX_RANK];
    int64_t numel;
};

static void
ref_open(struct ref_file *f, const char *name)
{
    char err[512];

    snprintf(f->path, sizeof(f->path), "%s/tests/reference/%s", tu_srcdir(),
             name);
    ck_assert_msg(smlp__st_open(f->path, &f->st, err, sizeof(err)) ==
                      SMLP_OK, "%s (SMLP_TEST_SRCDIR?)", err);
}

static void
ref_close(struct ref_file *f)
{
    smlp__st_close(f->st);
}

static struct ref_tensor
ref_get(const struct ref_file *f, const char *name)
{
    const struct smlp__st_entry *e = smlp__st_find(f->st, name);
    struct ref_tensor t;
    int d;

    ck_assert_msg(e != NULL, "%s has no tensor '%s'", f->path, name);
    ck_assert_msg(e->dtype == SMLP_DTYPE_F32 || e->dtype == SMLP_DTYPE_I32,
                  "%s: '%s' has dtype %s", f->path, name, e->dtype_name);
    memset(&t, 0, sizeof(t));
    t.data = e->data;
    t.dtype = e->dtype;
    t.rank = e->rank;
    t.numel = 1;
    for (d = 0; d < e->rank; d++) {
        t.shape[d] = e->shape[d];
        t.numel *= e->shape[d];
    }
    return t;
}

/* ---- comparisons ------------------------------------------------------- */

static const struct smlp_tensor *
out_tensor(smlp_session_t *s, const char *name, struct smlp_tensor *t)
{
    ck_assert_msg(smlp_session_tensor(s, name, t) == SMLP_OK,
                  "no tensor '%s'", name);
    ck_assert_msg(t->data != NULL, "tensor '%s' has no data", name);
    return t;
}

static void
check_same_shape(const char *name, const struct smlp_tensor *got,
                 const struct ref_tensor *want)
{
    int d;

    ck_assert_msg(got->dtype == want->dtype, "%s: dtype %d, reference %d",
                  name, got->dtype, want->dtype);
    ck_assert_msg(got->rank == want->rank, "%s: rank %d, reference %d",
                  name, got->rank, want->rank);
    for (d = 0; d < got->rank; d++)
        ck_assert_msg(got->shape[d] == want->shape[d],
                      "%s: dim %d is %lld, reference %lld", name, d,
                      (long long)got->shape[d], (long long)want->shape[d]);
}

/* max|a-b| / max|b| over n floats. */
static double
rel_error(const float *got, const float *want, int64_t n, int64_t *worst)
{
    double diff = 0, norm = 0;
    int64_t i;

    *worst = 0;
    for (i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (!(d <= diff)) { /* NaN counts as worst */
            diff = isnan(d) ? INFINITY : d;
            *worst = i;
        }
        if (fabs((double)want[i]) > norm)
            norm = fabs((double)want[i]);
    }
    return norm > 0 ? diff / norm : diff;
}

/* Session tensor `name` against reference tensor `ref_name`. */
static void
expect_close(smlp_session_t *s, const char *name,
             const struct ref_file *f, const char *ref_name)
{
    struct smlp_tensor t;
    struct ref_tensor w = ref_get(f, ref_name);
    int64_t worst;
    double rel;

    out_tensor(s, name, &t);
    check_same_shape(name, &t, &w);
    ck_assert_int_eq(w.dtype, SMLP_DTYPE_F32);
    rel = rel_error(t.data, w.data, w.numel, &worst);
    ck_assert_msg(rel <= REL_TOL,
                  "%s: relative error %.3g > %g (worst at %lld: %.9g, "
                  "reference %.9g)", name, rel, REL_TOL, (long long)worst,
                  ((const float *)t.data)[worst],
                  ((const float *)w.data)[worst]);
}

static void
expect_equal_i32(smlp_session_t *s, const char *name,
                 const struct ref_file *f, const char *ref_name)
{
    struct smlp_tensor t;
    struct ref_tensor w = ref_get(f, ref_name);
    const int32_t *a, *b;
    int64_t i, bad = 0, first = -1;

    out_tensor(s, name, &t);
    check_same_shape(name, &t, &w);
    ck_assert_int_eq(w.dtype, SMLP_DTYPE_I32);
    a = t.data;
    b = w.data;
    for (i = 0; i < w.numel; i++)
        if (a[i] != b[i]) {
            if (first < 0)
                first = i;
            bad++;
        }
    ck_assert_msg(bad == 0,
                  "%s: %lld of %lld values differ from the reference; "
                  "first at %lld: %d, reference %d", name, (long long)bad,
                  (long long)w.numel, (long long)first, a[first], b[first]);
}

/* A session of `g` with the parameters and (with `inputs`) the inputs of
 * reference file f. */
static smlp_session_t *
session(const smlp_graph_t *g, smlp_registry_t *reg, int64_t batch,
        int training, const struct ref_file *f, int inputs)
{
    struct smlp_session_opts o;
    struct smlp_error err;
    smlp_session_t *s;
    char msg[1024];

    smlp_session_opts_init(&o);
    o.batch = batch;
    o.training = training;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    ck_assert_msg(refspec_fill(s, f->path, inputs, msg, sizeof(msg)) == 0,
                  "%s", msg);
    return s;
}

static void
run(smlp_session_t *s)
{
    ck_assert_msg(smlp_session_run(s) == SMLP_OK, "%s",
                  smlp_session_errmsg(s));
}

static smlp_graph_t *
shipped(const char *name)
{
    struct smlp_error err;
    smlp_graph_t *g;
    char path[512];

    tu_shipped_graph(name, path, sizeof(path));
    g = smlp_graph_load(path, &err);
    ck_assert_msg(g != NULL, "%s", err.msg);
    return g;
}

/* ---- sparse_mlp_fmnist -------------------------------------------------- */

static const char *const fmnist_moe[] = {
    "blocks.4.moe_s", "blocks.4.moe_c", "blocks.5.moe_s", "blocks.5.moe_c",
};

START_TEST(test_fmnist_matches_reference)
{
    smlp_registry_t *reg = tu_registry();
    smlp_graph_t *g = shipped("sparse_mlp_fmnist");
    struct ref_file f;
    smlp_session_t *s;
    struct smlp_tensor t;
    char name[128], ref[160];
    size_t i;

    ref_open(&f, "sparse_mlp_fmnist.safetensors");
    s = session(g, reg, 4, 0, &f, 1);
    run(s);
    expect_close(s, "features", &f, "expected.features");
    expect_close(s, "logits", &f, "expected.logits");
    for (i = 0; i < sizeof(fmnist_moe) / sizeof(fmnist_moe[0]); i++) {
        snprintf(name, sizeof(name), "%s.gate.load", fmnist_moe[i]);
        snprintf(ref, sizeof(ref), "expected.%s", name);
        expect_equal_i32(s, name, &f, ref);
        /* OPS.md: aux is 0 in inference */
        snprintf(name, sizeof(name), "%s.gate.aux", fmnist_moe[i]);
        out_tensor(s, name, &t);
        ck_assert_msg(*(const float *)t.data == 0.0f, "%s = %g in inference",
                      name, *(const float *)t.data);
    }
    smlp_session_destroy(s);
    ref_close(&f);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * Routing groups are one image's items, so an image's outputs do not
 * depend on its batch-mates: each image run alone routes exactly as in the
 * batch (the loads of the four single-image runs add up to the batch's),
 * and gives the same features and logits.
 *
 * The floats are compared with max|a-b|/max|b| <= 1e-5, not bit for bit:
 * the dense ops are not bitwise batch-invariant in this runtime (already
 * the first node, core.patch_embed, gives stem.out values that differ by
 * ~3e-8 between batch 1 and batch 4, and the dense mixer_fmnist differs
 * alike: the GEMMs' rounding depends on the number of rows B*S), so the
 * bitwise property belongs to no op of the moe plugin.  A routing that
 * depended on the batch would show as a load mismatch and as errors of
 * order 1e-2 here.
 */
#define ALONE_TOL 1e-5

START_TEST(test_fmnist_image_alone_equals_in_batch)
{
    smlp_registry_t *reg = tu_registry();
    smlp_graph_t *g = shipped("sparse_mlp_fmnist");
    static const char *const outs[] = {"features", "logits"};
    enum { N_MOE = sizeof(fmnist_moe) / sizeof(fmnist_moe[0]) };
    int32_t load_sum[N_MOE][8];
    struct ref_file f;
    smlp_session_t *s4, *s1;
    struct smlp_tensor img4, img1, a, b;
    char name[128];
    int64_t per_image, worst;
    int i, o, m, e;

    memset(load_sum, 0, sizeof(load_sum));
    ref_open(&f, "sparse_mlp_fmnist.safetensors");
    s4 = session(g, reg, 4, 0, &f, 1);
    run(s4);
    s1 = session(g, reg, 1, 0, &f, 0); /* its image: s4's, one by one */
    out_tensor(s4, "image", &img4);
    out_tensor(s1, "image", &img1);
    per_image = smlp_tensor_numel(&img1);
    ck_assert_int_eq(smlp_tensor_numel(&img4), 4 * per_image);
    for (i = 0; i < 4; i++) {
        memcpy(img1.data, (const float *)img4.data + i * per_image,
               (size_t)per_image * sizeof(float));
        run(s1);
        for (o = 0; o < 2; o++) {
            int64_t n;
            double rel;
            out_tensor(s4, outs[o], &a);
            out_tensor(s1, outs[o], &b);
            n = smlp_tensor_numel(&b);
            ck_assert_int_eq(smlp_tensor_numel(&a), 4 * n);
            rel = rel_error(b.data, (const float *)a.data + i * n, n, &worst);
            ck_assert_msg(rel <= ALONE_TOL,
                          "image %d: %s alone differs from %s in the batch "
                          "of 4: relative error %.3g > %g", i, outs[o],
                          outs[o], rel, ALONE_TOL);
        }
        for (m = 0; m < N_MOE; m++) {
            snprintf(name, sizeof(name), "%s.gate.load", fmnist_moe[m]);
            out_tensor(s1, name, &b);
            ck_assert_int_eq(smlp_tensor_numel(&b), 8);
            for (e = 0; e < 8; e++)
                load_sum[m][e] += ((const int32_t *)b.data)[e];
        }
    }
    for (m = 0; m < N_MOE; m++) {
        snprintf(name, sizeof(name), "%s.gate.load", fmnist_moe[m]);
        out_tensor(s4, name, &a);
        for (e = 0; e < 8; e++)
            ck_assert_msg(load_sum[m][e] == ((const int32_t *)a.data)[e],
                          "%s[%d][%d]: the single-image runs add up to %d, "
                          "the batch of 4 has %d", name, e / 2, e % 2,
                          load_sum[m][e], ((const int32_t *)a.data)[e]);
    }
    smlp_session_destroy(s1);
    smlp_session_destroy(s4);
    ref_close(&f);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/* ---- one MoE layer of sparse_mlp_s: blocks.6.moe_s ---------------------- */

#define L "blocks.6.moe_s"

/* The gate attributes of blocks.6.moe_s in graphs/sparse_mlp_s.json
 * (test_moe_s_attrs_match_graph checks the numeric ones), with noise_std
 * given: the training check uses 0 so that it draws no noise. */
static void
moe_s_graph(const char *noise_std, char *path, size_t len)
{
    char json[4096];

    snprintf(
        json, sizeof(json),
        "{\"name\": \"moe_s_layer\", \"plugins\": [\"moe\"], \"tensors\": ["
        "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 392]},"
        "{\"name\": \"" L ".gate.weight\", \"kind\": \"Parameter\","
        " \"shape\": [4, 392]},"
        "{\"name\": \"" L ".gate.expert\", \"dtype\": \"I32\","
        " \"kind\": \"Output\", \"shape\": [-1, 1]},"
        "{\"name\": \"" L ".gate.slot\", \"dtype\": \"I32\","
        " \"kind\": \"Output\", \"shape\": [-1, 1]},"
        "{\"name\": \"" L ".gate.combine_weight\", \"kind\": \"Output\","
        " \"shape\": [-1, 1]},"
        "{\"name\": \"" L ".gate.slot_item\", \"dtype\": \"I32\"},"
        "{\"name\": \"" L ".gate.aux\", \"kind\": \"Output\", \"shape\": []},"
        "{\"name\": \"" L ".gate.load\", \"dtype\": \"I32\","
        " \"kind\": \"Output\", \"shape\": [4, 2]},"
        "{\"name\": \"" L ".dispatch.out\"},"
        "{\"name\": \"" L ".experts.fc1.weight\", \"kind\": \"Parameter\","
        " \"shape\": [4, 256, 392]},"
        "{\"name\": \"" L ".experts.fc1.bias\", \"kind\": \"Parameter\","
        " \"shape\": [4, 256]},"
        "{\"name\": \"" L ".experts.fc2.weight\", \"kind\": \"Parameter\","
        " \"shape\": [4, 392, 256]},"
        "{\"name\": \"" L ".experts.fc2.bias\", \"kind\": \"Parameter\","
        " \"shape\": [4, 392]},"
        "{\"name\": \"" L ".experts.out\"},"
        "{\"name\": \"y\", \"kind\": \"Output\", \"shape\": [-1, 392]}],"
        "\"nodes\": ["
        "{\"name\": \"" L ".gate\", \"op\": \"moe.gate.importance\","
        " \"inputs\": [0, 1], \"outputs\": [2, 3, 4, 5, 6, 7], \"attrs\": ["
        "{\"name\": \"k\", \"type\": \"Int\", \"i\": 1},"
        "{\"name\": \"group_size\", \"type\": \"Int\", \"i\": 256},"
        "{\"name\": \"capacity_factor\", \"type\": \"Float\", \"f\": 1.05},"
        "{\"name\": \"eval_capacity_factor\", \"type\": \"Float\", \"f\": 1.0},"
        "{\"name\": \"noise_std\", \"type\": \"Float\", \"f\": %s},"
        "{\"name\": \"normalize\", \"type\": \"String\", \"s\": \"none\"},"
        "{\"name\": \"aux\", \"type\": \"String\", \"s\": \"vmoe\"},"
        "{\"name\": \"aux_weight\", \"type\": \"Float\", \"f\": 0.01}]},"
        "{\"name\": \"" L ".dispatch\", \"op\": \"moe.dispatch\","
        " \"inputs\": [0, 5], \"outputs\": [8]},"
        "{\"name\": \"" L ".experts\", \"op\": \"moe.expert_ffn\","
        " \"inputs\": [8, 9, 10, 11, 12, 5], \"outputs\": [13], \"attrs\": ["
        "{\"name\": \"activation\", \"type\": \"String\", \"s\": \"gelu\"}]},"
        "{\"name\": \"" L ".combine\", \"op\": \"moe.combine\","
        " \"inputs\": [13, 2, 3, 4], \"outputs\": [14]}]}",
        noise_std);
    tu_graph_from_json(tu_tmpdir(), "moe_s_layer", json, path, len);
}

START_TEST(test_moe_s_attrs_match_graph)
{
    smlp_graph_t *g = shipped("sparse_mlp_s");
    int64_t i;
    double f;

    ck_assert_int_eq(smlp_graph_node_attr_int(g, L ".gate", "k", &i), 0);
    ck_assert_int_eq(i, 1);
    ck_assert_int_eq(smlp_graph_node_attr_int(g, L ".gate", "group_size", &i),
                     0);
    ck_assert_int_eq(i, 256);
    ck_assert_int_eq(
        smlp_graph_node_attr_float(g, L ".gate", "capacity_factor", &f), 0);
    ck_assert(f == 1.05);
    ck_assert_int_eq(
        smlp_graph_node_attr_float(g, L ".gate", "eval_capacity_factor", &f),
        0);
    ck_assert(f == 1.0);
    ck_assert_int_eq(
        smlp_graph_node_attr_float(g, L ".gate", "noise_std", &f), 0);
    ck_assert(f == 1.0);
    ck_assert_int_eq(
        smlp_graph_node_attr_float(g, L ".gate", "aux_weight", &f), 0);
    ck_assert(f == 0.01);
    smlp_graph_unload(g);
}
END_TEST

static void
check_moe_s(int training)
{
    static const char *const gate_i32[] = {"expert", "slot", "load"};
    const char *pre = training ? "expected_train." : "expected.";
    smlp_registry_t *reg = tu_registry();
    struct smlp_error err;
    struct ref_file f;
    struct ref_tensor y;
    struct smlp_tensor aux;
    smlp_session_t *s;
    smlp_graph_t *g;
    char path[512], name[128], ref[160];
    size_t i;

    ref_open(&f, "sparse_mlp_s_moe.safetensors");
    y = ref_get(&f, "expected.y");
    ck_assert_int_eq(y.rank, 2);
    ck_assert_int_eq(y.shape[0], 2 * 256);
    ck_assert_int_eq(y.shape[1], 392);
    moe_s_graph(training ? "0.0" : "1.0", path, sizeof(path));
    g = smlp_graph_load(path, &err);
    ck_assert_msg(g != NULL, "%s", err.msg);
    s = session(g, reg, y.shape[0], training, &f, 1);
    run(s);
    for (i = 0; i < sizeof(gate_i32) / sizeof(gate_i32[0]); i++) {
        snprintf(name, sizeof(name), L ".gate.%s", gate_i32[i]);
        snprintf(ref, sizeof(ref), "%s%s", pre, name);
        expect_equal_i32(s, name, &f, ref);
    }
    snprintf(ref, sizeof(ref), "%s" L ".gate.combine_weight", pre);
    expect_close(s, L ".gate.combine_weight", &f, ref);
    snprintf(ref, sizeof(ref), "%sy", pre);
    expect_close(s, "y", &f, ref);
    out_tensor(s, L ".gate.aux", &aux);
    if (training) {
        struct ref_tensor w = ref_get(&f, "expected_train." L ".gate.aux");
        float got = *(const float *)aux.data, want = *(const float *)w.data;
        ck_assert_int_eq(w.rank, 0);
        ck_assert_msg(want > 0 &&
                          fabs((double)got - want) <= REL_TOL * fabs(want),
                      "aux = %.9g, reference %.9g", got, want);
    } else {
        ck_assert_msg(*(const float *)aux.data == 0.0f,
                      "aux = %g in inference", *(const float *)aux.data);
    }
    smlp_session_destroy(s);
    ref_close(&f);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}

START_TEST(test_moe_s_inference)
{
    check_moe_s(0);
}
END_TEST

START_TEST(test_moe_s_training_no_noise)
{
    check_moe_s(1);
}
END_TEST

static Suite *
reference_suite(void)
{
    Suite *s = suite_create("reference");
    TCase *tc = tcase_create("sparse_mlp_fmnist");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_fmnist_matches_reference);
    tcase_add_test(tc, test_fmnist_image_alone_equals_in_batch);
    suite_add_tcase(s, tc);
    tc = tcase_create("sparse_mlp_s_moe");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_moe_s_attrs_match_graph);
    tcase_add_test(tc, test_moe_s_inference);
    tcase_add_test(tc, test_moe_s_training_no_noise);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(reference_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
