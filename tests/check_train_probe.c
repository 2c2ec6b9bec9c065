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
 *
 * Also: hash gates keep their attributes, the first batch norm is named,
 * and the head's labels, label smoothing and loss.  The probe's feature
 * cache (tools/train_cache.c): check_train_cache.c.
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

/* The hash gates of sparse_mlp_b_hash have no router, gate noise, aux
 * loss or capacity factor: the probe counts them but adds none of those
 * attributes (the graph still loads).  The first batch norm of the
 * backbone is named, for smlp-train's warning: two layer norms made
 * batch norms here, the first one's name. */
START_TEST(test_probe_hash_gates_and_batch_norm)
{
    struct smlp__graph_ir *orig, *ir;
    struct train_head_info info;
    struct smlp_error e;
    smlp_graph_t *g;
    uint8_t *buf, *head;
    size_t len, head_len;
    char path[512], err[512];
    int32_t i, first = -1, gates = 0, hash = 0, norms = 0;

    tu_shipped_graph("sparse_mlp_b_hash", path, sizeof(path));
    buf = tu_read_file(path, &len);
    ck_assert_msg(train_head_build(buf, len, path, 0.0, 1, &head, &head_len,
                                   &info, err, sizeof(err)) == 0,
                  "%s", err);
    g = smlp_graph_load_buffer(head, head_len, path, &e);
    ck_assert_msg(g != NULL, "%s", e.msg);
    ck_assert_int_eq(smlp__graph_ir_decode(buf, len, path, &orig, err,
                                           sizeof(err)),
                     SMLP_OK);
    ck_assert_int_eq(smlp__graph_ir_decode(head, head_len, path, &ir, err,
                                           sizeof(err)),
                     SMLP_OK);
    for (i = 0; i < orig->n_nodes; i++) {
        const struct smlp__node_ir *o = &orig->nodes[i], *n = &ir->nodes[i];

        ck_assert_str_eq(o->name, n->name);
        if (strncmp(o->op, "moe.gate.", 9) != 0)
            continue;
        gates++;
        if (strcmp(o->op, "moe.gate.hash") != 0)
            continue;
        hash++;
        ck_assert_int_eq(n->n_attrs, o->n_attrs);
        ck_assert_ptr_null(attr(n, "noise_std"));
        ck_assert_ptr_null(attr(n, "aux"));
        ck_assert_ptr_null(attr(n, "aux_weight"));
        ck_assert_ptr_null(attr(n, "capacity_factor"));
    }
    ck_assert_int_eq(hash, 4);
    ck_assert_int_eq(info.probe_gates, gates);
    ck_assert_str_eq(info.probe_bn, "");
    for (i = 0; i < ir->n_nodes && norms < 2; i++)
        if (strcmp(ir->nodes[i].op, "norm.layer_norm") == 0) {
            free(ir->nodes[i].op);
            ir->nodes[i].op = strdup("norm.batch_norm");
            if (norms++ == 0)
                first = i;
        }
    ck_assert_int_eq(norms, 2);
    memset(&info, 0, sizeof(info));
    ck_assert_int_eq(train_probe_gates(ir, &info), 0);
    ck_assert_str_eq(info.probe_bn, ir->nodes[first].name);
    smlp__graph_ir_free(orig);
    smlp__graph_ir_free(ir);
    smlp_graph_unload(g);
    free(head);
    free(buf);
}
END_TEST

/* The head smlp-train appends to sparse_mlp_fmnist: 'labels' an i32
 * input whose initializer (smlp-run's synthetic labels) is uniform on
 * [-0.5, 9.5), every class 0..9 once rounded; the loss ce + aux_loss,
 * with --label-smoothing an attribute of train.ce; for a probe the
 * cross-entropy alone (its backbone's aux is 0) and no aux in info. */
START_TEST(test_head_labels_aux_smoothing)
{
    int probe;

    for (probe = 0; probe < 2; probe++) {
        struct smlp__graph_ir *ir;
        struct train_head_info info;
        const struct smlp__tensor_ir *t;
        const struct smlp__node_ir *ce;
        const struct smlp__attr_ir *a;
        uint8_t *buf, *head;
        size_t len, head_len;
        char path[512], err[512];
        int32_t i;

        tu_shipped_graph("sparse_mlp_fmnist", path, sizeof(path));
        buf = tu_read_file(path, &len);
        ck_assert_msg(train_head_build(buf, len, path, probe ? 0.0 : 0.1,
                                       probe, &head, &head_len, &info, err,
                                       sizeof(err)) == 0,
                      "%s", err);
        ck_assert_int_eq(smlp__graph_ir_decode(head, head_len, path, &ir,
                                               err, sizeof(err)),
                         SMLP_OK);
        ck_assert_int_eq(info.classes, 10);
        ck_assert_int_eq(info.existing, 0);
        i = smlp__graph_ir_find_tensor(ir, "labels");
        ck_assert_int_ge(i, 0);
        t = &ir->tensors[i];
        ck_assert_int_eq(t->kind, SMLP__TENSOR_INPUT);
        ck_assert_int_eq(t->dtype, SMLP_DTYPE_I32);
        ck_assert_int_eq(t->init.present, 1);
        ck_assert_int_eq(t->init.kind, SMLP__INIT_UNIFORM);
        ck_assert_double_eq(t->init.a, -0.5);
        ck_assert_double_eq(t->init.b, 9.5);
        i = smlp__graph_ir_find_node(ir, "train.ce");
        ck_assert_int_ge(i, 0);
        ce = &ir->nodes[i];
        ck_assert_str_eq(ir->tensors[ce->inputs[0]].name, "logits");
        ck_assert_str_eq(ir->tensors[ce->inputs[1]].name, "labels");
        a = attr(ce, "label_smoothing");
        i = smlp__graph_ir_find_node(ir, "train.loss");
        if (probe) {
            ck_assert_int_eq(info.has_aux, 0);
            ck_assert_int_lt(i, 0);
            ck_assert_str_eq(ir->tensors[ce->outputs[0]].name, "loss");
            ck_assert_ptr_null(a);
        } else {
            ck_assert_int_eq(info.has_aux, 1);
            ck_assert_int_ge(i, 0);
            ck_assert_str_eq(ir->tensors[ce->outputs[0]].name, "ce");
            ck_assert_str_eq(ir->tensors[ir->nodes[i].inputs[1]].name,
                             "aux_loss");
            ck_assert_ptr_nonnull(a);
            ck_assert_double_eq(a->f, 0.1);
        }
        smlp__graph_ir_free(ir);
        free(head);
        free(buf);
    }
}
END_TEST

/* A small classifier for train_head_build: tensor 0 (IN0) and `w` feed
 * node NODE's logits (LOGITS_SHAPE); EXTRA are more tensors (no node reads
 * them: the head is built from the IR alone). */
#define HEAD_GRAPH(in0, node, logits_shape, extra)                         \
    "{\"name\": \"h\", \"plugins\": [\"core\"], \"tensors\": ["            \
    in0 ", {\"name\": \"w\", \"kind\": \"Parameter\", \"shape\": [3, 4]},"  \
    " {\"name\": \"logits\", \"kind\": \"Output\", \"shape\": "            \
    logits_shape "}" extra "], \"nodes\": [{\"name\": \"" node "\", "      \
    "\"op\": \"core.linear\", \"inputs\": [0, 1], \"outputs\": [2]}]}"
#define IMG(name, shape)                                                   \
    "{\"name\": \"" name "\", \"kind\": \"Input\", \"shape\": " shape "}"
#define OK_IMG IMG("image", "[-1, 1, 2, 2]")

/* train_head_build's refusals, each naming what is wrong: no f32 input
 * or two of them (none named image), an image not [-1,C,H,W], no logits
 * [-1,K], an aux_loss not a scalar, a graph with its own head given
 * --label-smoothing, a tensor or node of the names the head adds; and a
 * MoCo graph's (views of two shapes, no loss, an 'm' not a scalar). */
START_TEST(test_head_refusals)
{
    static const struct {
        const char *json, *why;
        double smoothing;
    } cases[] = {
        {HEAD_GRAPH("{\"name\": \"x\", \"kind\": \"Input\", \"dtype\": "
                    "\"I32\", \"shape\": [-1, 1, 2, 2]}",
                    "fc", "[-1, 3]", ""),
         "no f32 input", 0},
        /* two f32 inputs, neither named image: which takes the images?
         * (find_image took the first and never counted a second) */
        {HEAD_GRAPH(IMG("x", "[-1, 1, 2, 2]"), "fc", "[-1, 3]",
                    ", " IMG("y", "[-1, 1, 2, 2]")),
         "several f32 inputs", 0},
        {HEAD_GRAPH(IMG("image", "[2, 1, 2, 2]"), "fc", "[-1, 3]", ""),
         "input 'image' must be an f32 tensor shaped [-1,C,H,W]", 0},
        {HEAD_GRAPH(IMG("image", "[-1, 4]"), "fc", "[-1, 3]", ""),
         "input 'image' must be an f32 tensor shaped [-1,C,H,W]", 0},
        {HEAD_GRAPH(OK_IMG, "fc", "[-1, 3, 1]", ""),
         "no f32 tensor 'logits' [-1,K]", 0},
        {HEAD_GRAPH(OK_IMG, "fc", "[-1, 3]",
                    ", {\"name\": \"aux_loss\", \"kind\": \"Parameter\", "
                    "\"shape\": [2]}"),
         "tensor 'aux_loss' is not an f32 scalar", 0},
        {HEAD_GRAPH(OK_IMG, "fc", "[-1, 3]",
                    ", {\"name\": \"labels\", \"kind\": \"Input\", "
                    "\"dtype\": \"I32\", \"shape\": [-1]}, {\"name\": "
                    "\"loss\", \"kind\": \"Parameter\", \"shape\": []}"),
         "the graph has its own loss: set label smoothing in the graph",
         0.1},
        {HEAD_GRAPH(OK_IMG, "fc", "[-1, 3]",
                    ", {\"name\": \"ce\", \"kind\": \"Parameter\", "
                    "\"shape\": []}"),
         "the graph already has a tensor 'ce'", 0},
        /* an i32 input 'labels' but no 'loss': not a head of its own */
        {HEAD_GRAPH(OK_IMG, "fc", "[-1, 3]",
                    ", {\"name\": \"labels\", \"kind\": \"Input\", "
                    "\"dtype\": \"I32\", \"shape\": [-1]}"),
         "the graph already has a tensor 'labels'", 0},
        {HEAD_GRAPH(OK_IMG, "fc", "[-1, 3]",
                    ", {\"name\": \"loss\", \"kind\": \"Parameter\", "
                    "\"shape\": []}"),
         "the graph already has a tensor 'loss'", 0},
        {HEAD_GRAPH(OK_IMG, "train.loss", "[-1, 3]", ""),
         "the graph already has a node 'train.loss'", 0},
        {HEAD_GRAPH(IMG("view1", "[-1, 1, 2, 2]"), "fc", "[-1, 3]",
                    ", " IMG("view2", "[-1, 1, 2, 3]")),
         "inputs 'view1' and 'view2' must be f32 tensors of one shape", 0},
        {HEAD_GRAPH(IMG("view1", "[-1, 1, 2, 2]"), "fc", "[-1, 3]",
                    ", " IMG("view2", "[-1, 1, 2, 2]")),
         "must compute its loss: an f32 scalar 'loss'", 0},
        {HEAD_GRAPH(IMG("view1", "[-1, 1, 2, 2]"), "fc", "[-1, 3]",
                    ", " IMG("view2", "[-1, 1, 2, 2]") ", {\"name\": "
                    "\"loss\", \"kind\": \"Parameter\", \"shape\": [2]}"),
         "must compute its loss: an f32 scalar 'loss'", 0},
        {HEAD_GRAPH(IMG("view1", "[-1, 1, 2, 2]"), "fc", "[-1, 3]",
                    ", " IMG("view2", "[-1, 1, 2, 2]") ", {\"name\": "
                    "\"loss\", \"kind\": \"Parameter\", \"shape\": []}, "
                    IMG("m", "[1]")),
         "tensor 'm' must be an f32 scalar input", 0},
    };
    char dir[512], path[1024], name[16], err[512];
    struct train_head_info info;
    uint8_t *buf, *head;
    size_t i, len, head_len;

    tu_scratch_make(dir, sizeof(dir), "head");
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(name, sizeof(name), "g%zu", i);
        tu_graph_from_json(dir, name, cases[i].json, path, sizeof(path));
        buf = tu_read_file(path, &len);
        err[0] = '\0';
        ck_assert_msg(train_head_build(buf, len, path, cases[i].smoothing, 0,
                                       &head, &head_len, &info, err,
                                       sizeof(err)) == -1,
                      "case %zu: built", i);
        ck_assert_msg(strstr(err, cases[i].why) != NULL, "case %zu: %s", i,
                      err);
        ck_assert_ptr_null(head);
        free(buf);
    }
    tu_scratch_remove(dir);
}
END_TEST

/* The graph's own head (an i32 input 'labels' and a 'loss') is kept as
 * it is, without --label-smoothing: no train.* node added, existing set,
 * no aux; a head added to a 3-class classifier draws the synthetic
 * labels uniform on [-0.5, 2.5) (0, 1, 2 once rounded); a tensor named
 * 'image' that is not an input leaves the images to the only f32 input. */
START_TEST(test_head_own_and_three_classes)
{
    static const char *const own = HEAD_GRAPH(
        OK_IMG, "fc", "[-1, 3]",
        ", {\"name\": \"labels\", \"kind\": \"Input\", \"dtype\": \"I32\", "
        "\"shape\": [-1]}, {\"name\": \"loss\", \"kind\": \"Parameter\", "
        "\"shape\": []}, {\"name\": \"aux_loss\", \"kind\": \"Parameter\", "
        "\"shape\": []}");
    static const char *const three = HEAD_GRAPH(OK_IMG, "fc", "[-1, 3]", "");
    static const char *const param_image = HEAD_GRAPH(
        IMG("x", "[-1, 1, 2, 2]"), "fc", "[-1, 3]",
        ", {\"name\": \"image\", \"kind\": \"Parameter\", "
        "\"shape\": [3]}");
    char dir[512], path[1024], err[512];
    struct smlp__graph_ir *ir;
    struct train_head_info info;
    uint8_t *buf, *head;
    size_t len, head_len;
    int32_t t;

    tu_scratch_make(dir, sizeof(dir), "head");
    tu_graph_from_json(dir, "own", own, path, sizeof(path));
    buf = tu_read_file(path, &len);
    ck_assert_msg(train_head_build(buf, len, path, 0.0, 0, &head, &head_len,
                                   &info, err, sizeof(err)) == 0,
                  "%s", err);
    ck_assert_int_eq(info.existing, 1);
    ck_assert_int_eq(info.has_aux, 0);
    ck_assert_int_eq(info.classes, 3);
    ck_assert_str_eq(info.image, "image");
    ck_assert_int_eq(smlp__graph_ir_decode(head, head_len, path, &ir, err,
                                           sizeof(err)),
                     SMLP_OK);
    ck_assert_int_lt(smlp__graph_ir_find_node(ir, "train.ce"), 0);
    ck_assert_int_lt(smlp__graph_ir_find_node(ir, "train.loss"), 0);
    ck_assert_int_eq(ir->n_nodes, 1);
    smlp__graph_ir_free(ir);
    free(head);
    free(buf);

    tu_graph_from_json(dir, "three", three, path, sizeof(path));
    buf = tu_read_file(path, &len);
    ck_assert_msg(train_head_build(buf, len, path, 0.0, 0, &head, &head_len,
                                   &info, err, sizeof(err)) == 0,
                  "%s", err);
    ck_assert_int_eq(info.existing, 0);
    ck_assert_int_eq(info.has_aux, 0);
    ck_assert_int_eq(info.classes, 3);
    ck_assert_int_eq(info.chw[0], 1);
    ck_assert_int_eq(info.chw[1], 2);
    ck_assert_int_eq(info.chw[2], 2);
    ck_assert_int_eq(smlp__graph_ir_decode(head, head_len, path, &ir, err,
                                           sizeof(err)),
                     SMLP_OK);
    t = smlp__graph_ir_find_tensor(ir, "labels");
    ck_assert_int_ge(t, 0);
    ck_assert_double_eq(ir->tensors[t].init.a, -0.5);
    ck_assert_double_eq(ir->tensors[t].init.b, 2.5);
    /* no aux_loss: the cross-entropy is the loss itself */
    t = smlp__graph_ir_find_node(ir, "train.ce");
    ck_assert_int_ge(t, 0);
    ck_assert_str_eq(ir->tensors[ir->nodes[t].outputs[0]].name, "loss");
    ck_assert_int_lt(smlp__graph_ir_find_node(ir, "train.loss"), 0);
    smlp__graph_ir_free(ir);
    free(head);
    free(buf);

    tu_graph_from_json(dir, "pimage", param_image, path, sizeof(path));
    buf = tu_read_file(path, &len);
    ck_assert_msg(train_head_build(buf, len, path, 0.0, 0, &head, &head_len,
                                   &info, err, sizeof(err)) == 0,
                  "%s", err);
    ck_assert_str_eq(info.image, "x");
    free(head);
    free(buf);
    tu_scratch_remove(dir);
}
END_TEST

static Suite *
probe_suite(void)
{
    Suite *s = suite_create("train_probe");
    TCase *tc = tcase_create("probe");

    tcase_add_test(tc, test_probe_gate_attributes);
    tcase_add_test(tc, test_probe_trains_on_inference_features);
    tcase_add_test(tc, test_probe_hash_gates_and_batch_norm);
    tcase_add_test(tc, test_head_labels_aux_smoothing);
    tcase_add_test(tc, test_head_refusals);
    tcase_add_test(tc, test_head_own_and_three_classes);
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
