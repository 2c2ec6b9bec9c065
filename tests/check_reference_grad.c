/*
 * check_reference_grad.c - whole-model gradients against PyTorch autograd
 * (tests/reference/grad_ref.py, run by hand; its outputs are committed).
 *
 * The shipped mixer_fmnist and sparse_mlp_fmnist with the loss head that
 * smlp-train appends (tools/train_head.c: softmax cross-entropy on logits
 * plus aux_loss), every gate's noise_std set to 0 (the reference cannot
 * draw the session's noise), at batch 4 in training mode, with the
 * reference's parameters, images and labels: the loss and d loss / d p of
 * every parameter, after one forward and one backward of the runtime's
 * reverse schedule (autograd.c, the plugins' backwards), against the
 * reference's float64 gradients; sparse_mlp_fmnist also with
 * opts.recompute (moe.expert_ffn's backward without its saved bytes).
 *
 * grad_NAME.safetensors holds, per parameter, the whole gradient (up to
 * 4096 elements) or, for a larger one viewed as [numel / d, d], its row
 * sums, column sums and 256 elements at fixed indices (an error in any
 * one element moves a row and a column sum), and in its __metadata__ the
 * gradient's norm.  Tolerances (the reference's float32 run is within
 * 5.5e-6 of its float64 one on these views):
 *   each view  max_i |got_i - want_i| / max_i |want_i| <= 1e-4
 *   norm       |got - want| / want <= 1e-4
 *   loss       relative 1e-5
 * A view that is zero in exact arithmetic (every float64 element under
 * 1e-9 G, G the model's largest gradient element, "max_grad": the biases
 * of the token-mixing layers' last linears and the column sums of the
 * channel-mixing layers' last weights, whose paths to the loss pass a
 * layer norm over the channels; grad_ref.py) must stay under 1e-5 G
 * (float32 rounding gives up to 2.7e-7 G).
 */
#include <math.h>
#include <stdint.h>

#include "graph_ir.h"
#include "refspec.h"
#include "safetensors.h"
#include "testutil.h"
#include "train_head.h"

#define REL_TOL 1e-4
#define LOSS_TOL 1e-5
#define ZERO_REF 1e-9
#define ZERO_TOL 1e-5
#define SAMPLES 256

/* The shipped graph NAME without gate noise, with smlp-train's head. */
static smlp_graph_t *
training_graph(const char *name)
{
    struct smlp__graph_ir *ir;
    struct train_head_info info;
    struct smlp_error e;
    smlp_graph_t *g;
    uint8_t *buf, *enc, *head;
    size_t len, enc_len, head_len;
    char path[512], err[512];
    int32_t i, j, edited = 0;

    tu_shipped_graph(name, path, sizeof(path));
    buf = tu_read_file(path, &len);
    ck_assert_msg(smlp__graph_ir_decode(buf, len, path, &ir, err,
                                        sizeof(err)) == SMLP_OK, "%s", err);
    for (i = 0; i < ir->n_nodes; i++)
        for (j = 0; j < ir->nodes[i].n_attrs; j++)
            if (strcmp(ir->nodes[i].attrs[j].name, "noise_std") == 0) {
                ir->nodes[i].attrs[j].f = 0.0;
                edited++;
            }
    ck_assert_msg(strcmp(name, "mixer_fmnist") == 0 || edited > 0,
                  "%s: no gate with noise_std", name);
    ck_assert_msg(smlp__graph_ir_encode(ir, &enc, &enc_len, err,
                                        sizeof(err)) == SMLP_OK, "%s", err);
    ck_assert_msg(train_head_build(enc, enc_len, path, 0.0, 0, &head,
                                   &head_len, &info, err, sizeof(err)) == 0,
                  "%s", err);
    ck_assert_int_eq(info.existing, 0);
    g = smlp_graph_load_buffer(head, head_len, path, &e);
    ck_assert_msg(g != NULL, "%s", e.msg);
    free(head);
    free(enc);
    smlp__graph_ir_free(ir);
    free(buf);
    return g;
}

static const char *
meta(const struct smlp__st_file *f, const char *key)
{
    const char *v = smlp__st_meta(f, key);

    ck_assert_msg(v != NULL, "reference file has no metadata '%s'", key);
    return v;
}

/*
 * Compares view `view` of the gradient of `name` (got[0..n), computed
 * from smlp's gradient in double) with the reference's.  0 when it
 * agrees, else -1 with a message.
 */
static int
compare_view(const struct smlp__st_file *f, double g_max, const char *view,
             const char *name, const double *got, int64_t n, char *msg,
             size_t len)
{
    const struct smlp__st_entry *ref;
    const float *want;
    double d = 0, m = 0, a = 0;
    char key[300];
    int64_t i;

    snprintf(key, sizeof(key), "%s.%s", view, name);
    ref = smlp__st_find(f, key);
    ck_assert_msg(ref != NULL, "reference file has no %s", key);
    ck_assert_int_eq((int64_t)(ref->nbytes / sizeof(float)), n);
    want = ref->data;
    for (i = 0; i < n; i++) {
        d = fmax(d, fabs(got[i] - want[i]));
        m = fmax(m, fabs((double)want[i]));
        a = fmax(a, fabs(got[i]));
    }
    if (m < ZERO_REF * g_max) {
        if (a <= ZERO_TOL * g_max)
            return 0;
        snprintf(msg, len, "%s of d %s: zero in exact arithmetic, got %.3g "
                 "(G = %.6g)", view, name, a, g_max);
        return -1;
    }
    if (d <= REL_TOL * m)
        return 0;
    snprintf(msg, len, "%s of d %s: off by %.3g of its largest element "
             "(%.6g)", view, name, d / m, m);
    return -1;
}

/*
 * Compares the gradient g of parameter `name` (shape in gt) with the
 * reference in f (g_max: the model's G): the whole gradient, or its row
 * and column sums and samples, and its norm.  Returns NULL when it
 * agrees, else a description of the first disagreement in msg.
 */
static const char *
compare_grad(const struct smlp__st_file *f, double g_max, const char *name,
             const struct smlp_tensor *gt, char *msg, size_t len)
{
    const float *g = gt->data;
    int64_t n = smlp_tensor_numel(gt), d, i, j;
    double norm = 0, want, *v;
    char key[300];
    int rc;

    for (i = 0; i < n; i++)
        norm += (double)g[i] * g[i];
    norm = sqrt(norm);
    snprintf(key, sizeof(key), "norm.%s", name);
    want = atof(meta(f, key));
    if (want >= ZERO_REF * g_max && !(fabs(norm - want) <= REL_TOL * want)) {
        snprintf(msg, len, "d %s: norm %.9g, reference %.9g", name, norm,
                 want);
        return msg;
    }
    v = calloc((size_t)n, sizeof(double));
    ck_assert_ptr_nonnull(v);
    snprintf(key, sizeof(key), "grad.%s", name);
    if (smlp__st_find(f, key) != NULL) {
        for (i = 0; i < n; i++)
            v[i] = g[i];
        rc = compare_view(f, g_max, "grad", name, v, n, msg, len);
    } else {
        d = gt->shape[gt->rank - 1];
        for (i = 0; i < n; i++)
            v[i / d] += g[i];
        rc = compare_view(f, g_max, "rows", name, v, n / d, msg, len);
        memset(v, 0, (size_t)n * sizeof(double));
        for (i = 0; rc == 0 && i < n; i++)
            v[i % d] += g[i];
        if (rc == 0)
            rc = compare_view(f, g_max, "cols", name, v, d, msg, len);
        for (j = 0; rc == 0 && j < SAMPLES; j++)
            v[j] = g[((2 * j + 1) * n) / (2 * SAMPLES)];
        if (rc == 0)
            rc = compare_view(f, g_max, "sample", name, v, SAMPLES, msg, len);
    }
    free(v);
    return rc == 0 ? NULL : msg;
}

struct model {
    smlp_registry_t *reg;
    smlp_graph_t *g;
    smlp_session_t *s;
    struct smlp__st_file *f;
    char path[600];
    double g_max;
};

/* Session at batch 4 with the reference's values, one forward+backward;
 * recompute: opts.recompute. */
static void
model_run(struct model *m, const char *name, int recompute)
{
    struct smlp_session_opts o;
    struct smlp_error e;
    const struct smlp__st_entry *lab;
    struct smlp_tensor t;
    char err[512];
    double want;

    snprintf(m->path, sizeof(m->path),
             "%s/tests/reference/grad_%s.safetensors", tu_srcdir(), name);
    ck_assert_msg(smlp__st_open(m->path, &m->f, err, sizeof(err)) == SMLP_OK,
                  "%s", err);
    m->g_max = atof(meta(m->f, "max_grad"));
    ck_assert(m->g_max > 0);
    m->reg = tu_registry();
    m->g = training_graph(name);
    smlp_session_opts_init(&o);
    o.batch = 4;
    o.training = 1;
    o.loss = "loss";
    o.threads = 2;
    o.recompute = recompute;
    m->s = smlp_session_create(m->g, m->reg, &o, &e);
    ck_assert_msg(m->s != NULL, "%s", e.msg);
    ck_assert_msg(refspec_fill(m->s, m->path, 0, err, sizeof(err)) == 0, "%s",
                  err);
    ck_assert_msg(refspec_fill_tensor(m->s, m->path, "image", err,
                                      sizeof(err)) == 0, "%s", err);
    lab = smlp__st_find(m->f, "labels");
    ck_assert_ptr_nonnull(lab);
    ck_assert_int_eq(smlp_session_tensor(m->s, "labels", &t), SMLP_OK);
    ck_assert_int_eq(t.dtype, SMLP_DTYPE_I32);
    ck_assert_uint_eq(lab->nbytes, 4 * sizeof(int32_t));
    memcpy(t.data, lab->data, lab->nbytes);
    ck_assert_msg(smlp_session_run(m->s) == SMLP_OK, "%s",
                  smlp_session_errmsg(m->s));
    ck_assert_msg(smlp_session_backward(m->s) == SMLP_OK, "%s",
                  smlp_session_errmsg(m->s));
    ck_assert_int_eq(smlp_session_tensor(m->s, "loss", &t), SMLP_OK);
    want = atof(meta(m->f, "loss"));
    ck_assert_msg(fabs(*(const float *)t.data - want) <= LOSS_TOL * want,
                  "%s: loss %.9g, reference %.9g", name,
                  *(const float *)t.data, want);
}

static void
model_free(struct model *m)
{
    smlp_session_destroy(m->s);
    smlp_graph_unload(m->g);
    smlp_registry_destroy(m->reg);
    smlp__st_close(m->f);
}

static void
check_model(const char *name, int min_params, int recompute)
{
    struct model m;
    struct smlp_tensor gr;
    char msg[512];
    const char *bad;
    int k, n, norms = 0;

    model_run(&m, name, recompute);
    n = smlp_session_tensor_count(m.s, 1);
    ck_assert_int_ge(n, min_params);
    for (k = 0; k < n; k++) {
        const char *p = smlp_session_tensor_name(m.s, 1, k);

        ck_assert_int_eq(smlp_session_grad(m.s, p, &gr), SMLP_OK);
        bad = compare_grad(m.f, m.g_max, p, &gr, msg, sizeof(msg));
        ck_assert_msg(bad == NULL, "%s: %s", name, bad);
    }
    /* the file has no parameter the graph lacks */
    for (k = 0; k < m.f->n_meta; k++)
        norms += strncmp(m.f->meta_keys[k], "norm.", 5) == 0;
    ck_assert_int_eq(norms, n);
    model_free(&m);
}

START_TEST(test_grad_mixer_fmnist)
{
    check_model("mixer_fmnist", 78, 0);
}
END_TEST

START_TEST(test_grad_sparse_mlp_fmnist)
{
    check_model("sparse_mlp_fmnist", 98, 0);
}
END_TEST

/* opts.recompute: moe.expert_ffn's backward recomputes its
 * pre-activations instead of keeping them (ABI 1.2 saved bytes) */
START_TEST(test_grad_sparse_mlp_fmnist_recompute)
{
    check_model("sparse_mlp_fmnist", 98, 1);
}
END_TEST

/*
 * The comparison finds one wrong element that no sample covers: element 1
 * of blocks.5.moe_c.experts.fc1.weight ([4,512,128]: 65 536 elements, 256
 * sampled), moved by 1e-3 G, changes the first row sum.
 */
START_TEST(test_grad_compare_sees_one_element)
{
    struct model m;
    struct smlp_tensor gr;
    const char *p = "blocks.5.moe_c.experts.fc1.weight";
    char msg[512];

    model_run(&m, "sparse_mlp_fmnist", 0);
    ck_assert_int_eq(smlp_session_grad(m.s, p, &gr), SMLP_OK);
    ck_assert_int_gt(smlp_tensor_numel(&gr), 4096);
    ck_assert_ptr_null(compare_grad(m.f, m.g_max, p, &gr, msg, sizeof(msg)));
    /* samples are ((2j + 1) n) / 512 >= 128 */
    ((float *)gr.data)[1] += (float)(1e-3 * m.g_max);
    ck_assert_ptr_nonnull(compare_grad(m.f, m.g_max, p, &gr, msg,
                                       sizeof(msg)));
    tu_assert_contains(msg, "of d blocks.5.moe_c.experts.fc1.weight");
    model_free(&m);
}
END_TEST

static Suite *
grad_suite(void)
{
    Suite *s = suite_create("reference_grad");
    TCase *tc = tcase_create("models");

    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_grad_mixer_fmnist);
    tcase_add_test(tc, test_grad_sparse_mlp_fmnist);
    tcase_add_test(tc, test_grad_sparse_mlp_fmnist_recompute);
    tcase_add_test(tc, test_grad_compare_sees_one_element);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(grad_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
