/*
 * check_train_probe.c - smlp-train's --probe graph (tools/train_probe.c):
 * the frozen backbone routes as in inference.
 *
 * The shipped sparse_mlp_fmnist (gates: noise_std 1, capacity_factor
 * 1.05, eval_capacity_factor 1.0, aux vmoe) with the loss head, built with
 * probe = 1: every gate node gets capacity_factor = the graph's
 * eval_capacity_factor, noise_std 0, aux "none" and aux_weight 0.  Then
 * the behaviour those attributes are for: a training session of the probe
 * graph (what the probe trains with) gives the logits of an inference
 * session of the graph as shipped (what the probe is tested with), on the
 * same images and parameters (the head set to non-zero values), and the
 * loss is the cross-entropy alone (aux 0).  The training session of the
 * graph built without probe gives other logits (gate noise, training
 * capacity), so the comparison can tell.
 */
#include <math.h>
#include <stdint.h>

#include "graph_ir.h"
#include "testutil.h"
#include "train_head.h"

#define BATCH 8

/* The probe = 0/1 training graph of the shipped sparse_mlp_fmnist, and
 * its IR in *out_ir (free it). */
static smlp_graph_t *
probe_graph(int probe, struct smlp__graph_ir **out_ir,
            struct train_head_info *info)
{
    struct smlp_error e;
    smlp_graph_t *g;
    uint8_t *buf, *head;
    size_t len, head_len;
    char path[512], err[512];

    tu_shipped_graph("sparse_mlp_fmnist", path, sizeof(path));
    buf = tu_read_file(path, &len);
    ck_assert_msg(train_head_build(buf, len, path, 0.0, probe, &head,
                                   &head_len, info, err, sizeof(err)) == 0,
                  "%s", err);
    ck_assert_msg(smlp__graph_ir_decode(head, head_len, path, out_ir, err,
                                        sizeof(err)) == SMLP_OK,
                  "%s", err);
    g = smlp_graph_load_buffer(head, head_len, path, &e);
    ck_assert_msg(g != NULL, "%s", e.msg);
    free(head);
    free(buf);
    return g;
}

/* Attribute `name` of node n, or NULL. */
static const struct smlp__attr_ir *
attr(const struct smlp__node_ir *n, const char *name)
{
    int32_t i;

    for (i = 0; i < n->n_attrs; i++)
        if (strcmp(n->attrs[i].name, name) == 0)
            return &n->attrs[i];
    return NULL;
}

START_TEST(test_probe_gate_attributes)
{
    struct smlp__graph_ir *orig, *ir;
    struct train_head_info info;
    smlp_graph_t *g = probe_graph(1, &ir, &info);
    uint8_t *buf;
    size_t len;
    char path[512], err[512];
    int32_t i, gates = 0;

    tu_shipped_graph("sparse_mlp_fmnist", path, sizeof(path));
    buf = tu_read_file(path, &len);
    ck_assert_msg(smlp__graph_ir_decode(buf, len, path, &orig, err,
                                        sizeof(err)) == SMLP_OK,
                  "%s", err);
    for (i = 0; i < orig->n_nodes; i++) {
        const struct smlp__node_ir *o = &orig->nodes[i], *n = &ir->nodes[i];
        const struct smlp__attr_ir *a;

        ck_assert_str_eq(o->name, n->name);
        if (strncmp(o->op, "moe.gate.", 9) != 0)
            continue;
        gates++;
        /* the shipped graph differs in training and inference */
        ck_assert_ptr_nonnull(attr(o, "eval_capacity_factor"));
        ck_assert_ptr_nonnull(attr(o, "noise_std"));
        ck_assert_double_ne(attr(o, "capacity_factor")->f,
                            attr(o, "eval_capacity_factor")->f);
        ck_assert_double_gt(attr(o, "noise_std")->f, 0.0);
        a = attr(n, "capacity_factor");
        ck_assert_ptr_nonnull(a);
        ck_assert_double_eq(a->f, attr(o, "eval_capacity_factor")->f);
        ck_assert_double_eq(attr(n, "noise_std")->f, 0.0);
        ck_assert_ptr_nonnull(attr(n, "aux"));
        ck_assert_str_eq(attr(n, "aux")->s, "none");
        ck_assert_double_eq(attr(n, "aux_weight")->f, 0.0);
    }
    ck_assert_int_eq(gates, 4); /* two sparse blocks, MoE_s and MoE_c */
    ck_assert_int_eq(info.probe_gates, gates);
    ck_assert_str_eq(info.probe_bn, "");
    smlp__graph_ir_free(orig);
    smlp__graph_ir_free(ir);
    smlp_graph_unload(g);
    free(buf);
}
END_TEST

/* A session of g, training or not, with the images x and the head
 * weights set; the logits after one run into logits[BATCH * 10].  In
 * training, *loss is the session's loss and *ce the mean cross-entropy of
 * the logits and the session's labels, computed here in double. */
static void
run_logits(const smlp_graph_t *g, smlp_registry_t *reg, int training,
           const char *image, const float *x, size_t nx, float *logits,
           float *loss, double *ce)
{
    struct smlp_session_opts o;
    struct smlp_error e;
    struct smlp_tensor t;
    smlp_session_t *s;
    int64_t i, n;

    smlp_session_opts_init(&o);
    o.batch = BATCH;
    o.threads = 1;
    o.seed = 5;
    o.training = training;
    o.loss = training ? "loss" : NULL;
    s = smlp_session_create(g, reg, &o, &e);
    ck_assert_msg(s != NULL, "%s", e.msg);
    ck_assert_int_eq(smlp_session_tensor(s, image, &t), SMLP_OK);
    ck_assert_int_eq(smlp_tensor_numel(&t), (int64_t)nx);
    memcpy(t.data, x, nx * sizeof(float));
    ck_assert_int_eq(smlp_session_tensor(s, "head.weight", &t), SMLP_OK);
    n = smlp_tensor_numel(&t);
    for (i = 0; i < n; i++) /* the head is zero-initialised */
        ((float *)t.data)[i] = (float)sin(0.37 * (double)i);
    ck_assert_int_eq(smlp_session_run(s), SMLP_OK);
    ck_assert_int_eq(smlp_session_tensor(s, "logits", &t), SMLP_OK);
    ck_assert_int_eq(smlp_tensor_numel(&t), BATCH * 10);
    memcpy(logits, t.data, BATCH * 10 * sizeof(float));
    if (training) {
        const int32_t *label;
        int64_t b;
        int j;

        ck_assert_int_eq(smlp_session_tensor(s, "loss", &t), SMLP_OK);
        *loss = *(const float *)t.data;
        ck_assert_int_eq(smlp_session_tensor(s, "labels", &t), SMLP_OK);
        label = t.data;
        *ce = 0.0;
        for (b = 0; b < BATCH; b++) {
            const float *z = logits + b * 10;
            double m = z[0], sum = 0.0;

            ck_assert(label[b] >= 0 && label[b] < 10);
            for (j = 1; j < 10; j++)
                m = fmax(m, z[j]);
            for (j = 0; j < 10; j++)
                sum += exp(z[j] - m);
            *ce += (m + log(sum) - z[label[b]]) / BATCH;
        }
    }
    smlp_session_destroy(s);
}

/* Largest |a_i - b_i|. */
static double
max_diff(const float *a, const float *b, int n)
{
    double d = 0.0;
    int i;

    for (i = 0; i < n; i++)
        d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

START_TEST(test_probe_trains_on_inference_features)
{
    struct smlp__graph_ir *ir_probe, *ir_plain;
    struct train_head_info ip, iq;
    smlp_registry_t *reg = tu_registry();
    smlp_graph_t *probe = probe_graph(1, &ir_probe, &ip);
    smlp_graph_t *plain = probe_graph(0, &ir_plain, &iq);
    smlp_graph_t *shipped;
    struct smlp_error e;
    static float x[BATCH * 28 * 28];
    float want[BATCH * 10], got[BATCH * 10], other[BATCH * 10], loss;
    double ce;
    char path[512];
    int i;

    for (i = 0; i < BATCH * 28 * 28; i++)
        x[i] = (float)cos(0.013 * (double)i * (double)(i % 7 + 1));
    tu_shipped_graph("sparse_mlp_fmnist", path, sizeof(path));
    shipped = smlp_graph_load(path, &e);
    ck_assert_msg(shipped != NULL, "%s", e.msg);
    run_logits(shipped, reg, 0, ip.image, x, BATCH * 28 * 28, want, NULL,
               NULL);
    run_logits(probe, reg, 1, ip.image, x, BATCH * 28 * 28, got, &loss, &ce);
    ck_assert_msg(max_diff(got, want, BATCH * 10) <= 1e-5,
                  "probe training logits differ from inference by %g",
                  max_diff(got, want, BATCH * 10));
    /* no aux term in the probe's loss */
    ck_assert_double_eq_tol(loss, ce, 1e-5 * ce);
    run_logits(plain, reg, 1, ip.image, x, BATCH * 28 * 28, other, &loss,
               &ce);
    ck_assert_double_gt(loss - ce, 1e-6); /* the aux loss is there */
    ck_assert_msg(max_diff(other, want, BATCH * 10) > 1e-3,
                  "training mode without probe gives the inference logits "
                  "too (%g): the test cannot tell",
                  max_diff(other, want, BATCH * 10));
    smlp__graph_ir_free(ir_probe);
    smlp__graph_ir_free(ir_plain);
    smlp_graph_unload(shipped);
    smlp_graph_unload(probe);
    smlp_graph_unload(plain);
    smlp_registry_destroy(reg);
}
END_TEST

static Suite *
probe_suite(void)
{
    Suite *s = suite_create("train_probe");
    TCase *tc = tcase_create("probe");

    tcase_add_test(tc, test_probe_gate_attributes);
    tcase_add_test(tc, test_probe_trains_on_inference_features);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(probe_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
