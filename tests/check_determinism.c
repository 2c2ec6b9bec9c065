/*
 * check_determinism.c - the same graph, weights and input give the same
 * bits: sparse_mlp_fmnist (MoE routing included) for 1, 2 and 3 threads
 * and over repeated runs, in inference and in training (gate noise), and
 * the gradients of a training backward (a loss added to the graph) for 1,
 * 2 and 3 threads; and, since its MoE groups are one image each, an
 * image's routing does not depend on the images that share its batch.
 *
 * The graph is a chain, so the session gives every thread to one node at
 * a time (runtime/session.c: 1 x T): the kernels split their work into
 * tasks fixed by the shapes (host parallel_for), which is what these
 * tests check the results do not depend on.
 *
 * The routing test makes the gates' expert, slot, combine weight and
 * slot_item tensors graph outputs (an edit of the graph's IR), so that
 * they survive the run.  It
 * runs each image of a pool alone, then in batches of other sizes, orders
 * and company, and compares: chosen experts exactly; slots exactly, once
 * shifted by the image's group (group g owns rows [g·cap, (g+1)·cap));
 * the per-expert loads of a batch exactly against the sum of its images'
 * loads; combine weights and features within a tolerance.  Floats are not
 * compared bit for bit across batch sizes: OpenBLAS's rounding depends on
 * the number of rows of a product.  The same holds for a per_image gate
 * (the graph's importance gates swapped for moe.gate.per_image).
 */
#include <math.h>
#include <stdint.h>

#include "graph_ir.h"
#include "testutil.h"

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

static int
ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);

    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The gate outputs the routing test reads. */
static const char *const gate_outputs[] = {".gate.expert", ".gate.slot",
                                           ".gate.combine_weight",
                                           ".gate.slot_item"};
#define N_GATE_OUTPUTS 4

/*
 * sparse_mlp_fmnist with the gate outputs above made graph outputs and,
 * when `gate_op` is not NULL, every gate's op replaced by it (with
 * items_per_image = group_size, for per_image).  The edit goes through
 * the graph IR (runtime/graph_ir.h: decode, edit, encode).
 */
static smlp_graph_t *
routing_graph(const char *gate_op)
{
    struct smlp__graph_ir *ir;
    struct smlp_error err;
    smlp_graph_t *g;
    uint8_t *buf;
    size_t len;
    char path[512], msg[512];
    FILE *f;
    long flen;
    int32_t i, j, a;

    tu_shipped_graph("sparse_mlp_fmnist", path, sizeof(path));
    f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    flen = ftell(f);
    rewind(f);
    buf = malloc((size_t)flen);
    ck_assert_uint_eq(fread(buf, 1, (size_t)flen, f), (size_t)flen);
    fclose(f);
    ck_assert_msg(smlp__graph_ir_decode(buf, (size_t)flen, path, &ir, msg,
                                        sizeof(msg)) == SMLP_OK,
                  "%s", msg);
    free(buf);
    for (i = 0; i < ir->n_tensors; i++)
        for (j = 0; j < N_GATE_OUTPUTS; j++)
            if (ends_with(ir->tensors[i].name, gate_outputs[j]))
                ir->tensors[i].kind = SMLP__TENSOR_OUTPUT;
    for (i = 0; gate_op != NULL && i < ir->n_nodes; i++) {
        struct smlp__node_ir *n = &ir->nodes[i];
        struct smlp__attr_ir *attrs;
        int64_t group = 0;

        if (strncmp(n->op, "moe.gate.", 9) != 0)
            continue;
        free(n->op);
        n->op = strdup(gate_op);
        for (a = 0; a < n->n_attrs; a++)
            if (strcmp(n->attrs[a].name, "group_size") == 0)
                group = n->attrs[a].i;
        ck_assert_int_gt(group, 0);
        attrs = realloc(n->attrs, (size_t)(n->n_attrs + 1) * sizeof(*attrs));
        ck_assert_ptr_nonnull(attrs);
        n->attrs = attrs;
        memset(&attrs[n->n_attrs], 0, sizeof(*attrs));
        attrs[n->n_attrs].name = strdup("items_per_image");
        attrs[n->n_attrs].type = SMLP_ATTR_INT;
        attrs[n->n_attrs].i = group;
        n->n_attrs++;
    }
    ck_assert_msg(smlp__graph_ir_encode(ir, &buf, &len, msg, sizeof(msg)) ==
                      SMLP_OK,
                  "%s", msg);
    smlp__graph_ir_free(ir);
    g = smlp_graph_load_buffer(buf, len, "sparse_mlp_fmnist (edited)", &err);
    free(buf);
    ck_assert_msg(g != NULL, "%s", err.msg);
    return g;
}

static smlp_session_t *
session(const smlp_graph_t *g, smlp_registry_t *reg, int64_t batch,
        int threads, int training)
{
    struct smlp_session_opts o;
    struct smlp_error err;
    smlp_session_t *s;

    smlp_session_opts_init(&o);
    o.batch = batch;
    o.threads = threads;
    o.training = training;
    o.seed = 11;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    return s;
}

static void
tensor(smlp_session_t *s, const char *name, struct smlp_tensor *t)
{
    ck_assert_msg(smlp_session_tensor(s, name, t) == SMLP_OK, "%s",
                  smlp_session_errmsg(s));
    ck_assert_ptr_nonnull(t->data);
}

static size_t
nbytes(const struct smlp_tensor *t)
{
    return (size_t)smlp_tensor_numel(t) * 4; /* f32 and i32 */
}

/* A copy of every output of s, in the order of smlp_session_tensor_name. */
struct snapshot {
    int n;
    char **names;
    void **data;
    size_t *bytes;
};

static void
snap(smlp_session_t *s, struct snapshot *out)
{
    struct smlp_tensor t;
    int i;

    out->n = smlp_session_tensor_count(s, 4);
    out->names = calloc((size_t)out->n, sizeof(char *));
    out->data = calloc((size_t)out->n, sizeof(void *));
    out->bytes = calloc((size_t)out->n, sizeof(size_t));
    for (i = 0; i < out->n; i++) {
        out->names[i] = strdup(smlp_session_tensor_name(s, 4, i));
        tensor(s, out->names[i], &t);
        out->bytes[i] = nbytes(&t);
        out->data[i] = malloc(out->bytes[i] ? out->bytes[i] : 1);
        memcpy(out->data[i], t.data, out->bytes[i]);
    }
}

static void
snap_free(struct snapshot *sn)
{
    int i;

    for (i = 0; i < sn->n; i++) {
        free(sn->names[i]);
        free(sn->data[i]);
    }
    free(sn->names);
    free(sn->data);
    free(sn->bytes);
}

static void
assert_same_bits(const struct snapshot *a, const struct snapshot *b,
                 const char *what)
{
    int i;

    ck_assert_int_eq(a->n, b->n);
    for (i = 0; i < a->n; i++) {
        ck_assert_str_eq(a->names[i], b->names[i]);
        ck_assert_uint_eq(a->bytes[i], b->bytes[i]);
        ck_assert_msg(memcmp(a->data[i], b->data[i], a->bytes[i]) == 0,
                      "%s: output '%s' differs", what, a->names[i]);
    }
}

/* Runs `runs` times and snapshots the outputs after the first and the
 * last run. */
static void
run_snap(const smlp_graph_t *g, smlp_registry_t *reg, int threads,
         int training, int runs, struct snapshot *first,
         struct snapshot *last)
{
    smlp_session_t *s = session(g, reg, 4, threads, training);
    int i;

    for (i = 0; i < runs; i++) {
        ck_assert_msg(smlp_session_run(s) == SMLP_OK, "%s",
                      smlp_session_errmsg(s));
        if (i == 0)
            snap(s, first);
    }
    if (last != NULL)
        snap(s, last);
    smlp_session_destroy(s);
}

START_TEST(test_sparse_threads_and_repeats_bit_identical)
{
    smlp_registry_t *reg = tu_registry();
    smlp_graph_t *g = routing_graph(NULL);
    struct snapshot one, one_last, two, two_last, three, three_last;
    struct smlp_session_stats st;
    struct smlp_tensor t;
    smlp_session_t *s;
    double norm = 0;
    int64_t i;

    run_snap(g, reg, 1, 0, 3, &one, &one_last);
    run_snap(g, reg, 2, 0, 3, &two, &two_last);
    run_snap(g, reg, 3, 0, 2, &three, &three_last);
    assert_same_bits(&one, &two, "1 vs 2 threads");
    assert_same_bits(&one, &three, "1 vs 3 threads");
    assert_same_bits(&one, &one_last, "run 1 vs run 3 (1 thread)");
    assert_same_bits(&one, &two_last, "run 1 vs run 3 (2 threads)");
    assert_same_bits(&one, &three_last, "run 1 vs run 2 (3 threads)");
    /* Not vacuous: the features are alive, and the threads go inside the
     * nodes (a chain: one node at a time, T threads each). */
    s = session(g, reg, 4, 2, 0);
    ck_assert_int_eq(smlp_session_run(s), SMLP_OK);
    tensor(s, "features", &t);
    for (i = 0; i < smlp_tensor_numel(&t); i++)
        norm += fabs(((const float *)t.data)[i]);
    ck_assert_msg(norm > 1 && isfinite(norm), "features look dead: %g",
                  norm);
    smlp_session_get_stats(s, &st);
    ck_assert_int_eq(st.inter_op, 1);
    ck_assert_int_eq(st.intra_op, 2);
    smlp_session_destroy(s);
    s = session(g, reg, 4, 3, 0);
    smlp_session_get_stats(s, &st);
    ck_assert_int_eq(st.inter_op, 1);
    ck_assert_int_eq(st.intra_op, 3);
    smlp_session_destroy(s);
    snap_free(&one);
    snap_free(&one_last);
    snap_free(&two);
    snap_free(&two_last);
    snap_free(&three);
    snap_free(&three_last);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/* Training: gate noise, training capacity, aux losses.  The first run of
 * a fresh session is the same for 1, 2 and 3 threads, and so is the
 * next. */
START_TEST(test_sparse_training_threads_bit_identical)
{
    smlp_registry_t *reg = tu_registry();
    smlp_graph_t *g = routing_graph(NULL);
    struct snapshot one, one_last, two, two_last, three, three_last;
    struct smlp_tensor t;
    smlp_session_t *s;

    run_snap(g, reg, 1, 1, 2, &one, &one_last);
    run_snap(g, reg, 2, 1, 2, &two, &two_last);
    run_snap(g, reg, 3, 1, 2, &three, &three_last);
    assert_same_bits(&one, &two, "training, 1 vs 2 threads, run 1");
    assert_same_bits(&one_last, &two_last, "training, 1 vs 2 threads, run 2");
    assert_same_bits(&one, &three, "training, 1 vs 3 threads, run 1");
    assert_same_bits(&one_last, &three_last,
                     "training, 1 vs 3 threads, run 2");
    s = session(g, reg, 4, 1, 1);
    ck_assert_int_eq(smlp_session_run(s), SMLP_OK);
    tensor(s, "aux_loss", &t);
    ck_assert_msg(*(const float *)t.data > 0, "aux %g",
                  *(const float *)t.data);
    smlp_session_destroy(s);
    snap_free(&one);
    snap_free(&one_last);
    snap_free(&two);
    snap_free(&two_last);
    snap_free(&three);
    snap_free(&three_last);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/* ---- the training backward ------------------------------------------- */

static int32_t
add_tensor(struct smlp__graph_ir *ir, const char *name, int kind, int rank)
{
    struct smlp__tensor_ir *t;

    t = realloc(ir->tensors, (size_t)(ir->n_tensors + 1) * sizeof(*t));
    ck_assert_ptr_nonnull(t);
    ir->tensors = t;
    t = &ir->tensors[ir->n_tensors];
    memset(t, 0, sizeof(*t));
    t->name = strdup(name);
    t->dtype = SMLP_DTYPE_F32;
    t->kind = kind;
    t->has_shape = kind == SMLP__TENSOR_OUTPUT;
    t->rank = t->has_shape ? rank : 0;
    return ir->n_tensors++;
}

static void
add_node(struct smlp__graph_ir *ir, const char *name, const char *op,
         int32_t a, int32_t b, int32_t out, int64_t axis)
{
    struct smlp__node_ir *n;

    n = realloc(ir->nodes, (size_t)(ir->n_nodes + 1) * sizeof(*n));
    ck_assert_ptr_nonnull(n);
    ir->nodes = n;
    n = &ir->nodes[ir->n_nodes++];
    memset(n, 0, sizeof(*n));
    n->name = strdup(name);
    n->op = strdup(op);
    n->n_inputs = b >= 0 ? 2 : 1;
    n->inputs = malloc(2 * sizeof(int32_t));
    n->inputs[0] = a;
    n->inputs[1] = b;
    n->n_outputs = 1;
    n->outputs = malloc(sizeof(int32_t));
    n->outputs[0] = out;
    if (axis >= 0) {
        n->n_attrs = 1;
        n->attrs = calloc(1, sizeof(*n->attrs));
        n->attrs[0].name = strdup("axis");
        n->attrs[0].type = SMLP_ATTR_INT;
        n->attrs[0].i = axis;
    }
}

/*
 * sparse_mlp_fmnist with a scalar loss: mean(mean(features, 1), 0) +
 * aux_loss, so that a gradient reaches every parameter (the features
 * through every block, the aux loss through the gates).
 */
static smlp_graph_t *
loss_graph(void)
{
    struct smlp__graph_ir *ir;
    struct smlp_error err;
    smlp_graph_t *g;
    uint8_t *buf;
    size_t len;
    char path[512], msg[512];
    int32_t i, feat = -1, aux = -1, m1, m0, loss;
    FILE *f;
    long flen;

    tu_shipped_graph("sparse_mlp_fmnist", path, sizeof(path));
    f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    flen = ftell(f);
    rewind(f);
    buf = malloc((size_t)flen);
    ck_assert_uint_eq(fread(buf, 1, (size_t)flen, f), (size_t)flen);
    fclose(f);
    ck_assert_msg(smlp__graph_ir_decode(buf, (size_t)flen, path, &ir, msg,
                                        sizeof(msg)) == SMLP_OK,
                  "%s", msg);
    free(buf);
    for (i = 0; i < ir->n_tensors; i++) {
        if (strcmp(ir->tensors[i].name, "features") == 0)
            feat = i;
        if (strcmp(ir->tensors[i].name, "aux_loss") == 0)
            aux = i;
    }
    ck_assert_int_ge(feat, 0);
    ck_assert_int_ge(aux, 0);
    m1 = add_tensor(ir, "features_mean1", SMLP__TENSOR_ACTIVATION, 1);
    m0 = add_tensor(ir, "features_mean", SMLP__TENSOR_ACTIVATION, 0);
    loss = add_tensor(ir, "loss", SMLP__TENSOR_OUTPUT, 0);
    add_node(ir, "loss.mean1", "core.mean", feat, -1, m1, 1);
    add_node(ir, "loss.mean0", "core.mean", m1, -1, m0, 0);
    add_node(ir, "loss.sum", "core.add", m0, aux, loss, -1);
    ck_assert_msg(smlp__graph_ir_encode(ir, &buf, &len, msg, sizeof(msg)) ==
                      SMLP_OK,
                  "%s", msg);
    smlp__graph_ir_free(ir);
    g = smlp_graph_load_buffer(buf, len, "sparse_mlp_fmnist + loss", &err);
    free(buf);
    ck_assert_msg(g != NULL, "%s", err.msg);
    return g;
}

/* Forward + backward at `threads`; copies of every parameter's gradient
 * (in the order of smlp_session_tensor_name, kind 1) into out. */
static void
grads_at(const smlp_graph_t *g, smlp_registry_t *reg, int threads,
         struct snapshot *out, struct smlp_session_stats *st)
{
    struct smlp_session_opts o;
    struct smlp_error err;
    smlp_session_t *s;
    struct smlp_tensor t;
    int i, n = 0;

    smlp_session_opts_init(&o);
    o.batch = 4;
    o.threads = threads;
    o.training = 1;
    o.seed = 5;
    o.loss = "loss";
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    smlp_session_get_stats(s, st);
    ck_assert_msg(smlp_session_run(s) == SMLP_OK, "%s",
                  smlp_session_errmsg(s));
    ck_assert_msg(smlp_session_backward(s) == SMLP_OK, "%s",
                  smlp_session_errmsg(s));
    out->n = smlp_session_tensor_count(s, 1);
    out->names = calloc((size_t)out->n, sizeof(char *));
    out->data = calloc((size_t)out->n, sizeof(void *));
    out->bytes = calloc((size_t)out->n, sizeof(size_t));
    for (i = 0; i < out->n; i++) {
        out->names[i] = strdup(smlp_session_tensor_name(s, 1, i));
        if (smlp_session_grad(s, out->names[i], &t) != SMLP_OK) {
            out->bytes[i] = 0;
            out->data[i] = malloc(1);
            continue;
        }
        out->bytes[i] = nbytes(&t);
        out->data[i] = malloc(out->bytes[i] ? out->bytes[i] : 1);
        memcpy(out->data[i], t.data, out->bytes[i]);
        n++;
    }
    ck_assert_int_gt(n, 10);
    smlp_session_destroy(s);
}

START_TEST(test_sparse_backward_threads_bit_identical)
{
    smlp_registry_t *reg = tu_registry();
    smlp_graph_t *g = loss_graph();
    struct snapshot one, two, three;
    struct smlp_session_stats st;
    double norm = 0;
    int i;
    size_t k;

    grads_at(g, reg, 1, &one, &st);
    grads_at(g, reg, 2, &two, &st);
    ck_assert_int_eq(st.inter_op * st.intra_op, 2);
    grads_at(g, reg, 3, &three, &st);
    assert_same_bits(&one, &two, "gradients, 1 vs 2 threads");
    assert_same_bits(&one, &three, "gradients, 1 vs 3 threads");
    /* Not vacuous: gradients reach the parameters. */
    for (i = 0; i < one.n; i++)
        for (k = 0; k < one.bytes[i] / 4; k++)
            norm += fabs(((const float *)one.data[i])[k]);
    ck_assert_msg(norm > 0 && isfinite(norm), "gradient norm %g", norm);
    snap_free(&one);
    snap_free(&two);
    snap_free(&three);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/* ---- routing and batch composition ----------------------------------- */

#define POOL 5
#define MAX_LAYERS 8

/* The routing of one gate for one batch. */
struct route {
    char prefix[128]; /* "blocks.4.moe_s" */
    int64_t items;    /* items per image (rows of x per image) */
    int64_t k, e, cap;
    int32_t *expert;  /* [batch·items, k] */
    int32_t *slot;    /* [batch·items, k], shifted to the image's group */
    float *weight;    /* [batch·items, k] */
    int32_t *load;    /* [e, 2] */
};

struct result {
    int64_t batch;
    int n_layers;
    struct route layer[MAX_LAYERS];
    float *features; /* [batch, d] */
    int64_t d;
};

/*
 * Runs g at batch n on the pool images idx[0..n) (inputs written through
 * the session's pointer) and collects every gate's routing.
 */
static void
run_batch(const smlp_graph_t *g, smlp_registry_t *reg, const float *pool,
          int64_t image_floats, const int *idx, int64_t n,
          struct result *r)
{
    smlp_session_t *s = session(g, reg, n, 1, 0);
    struct smlp_tensor t;
    int64_t i, j;
    int c;

    tensor(s, "image", &t);
    ck_assert_int_eq(smlp_tensor_numel(&t), n * image_floats);
    for (i = 0; i < n; i++)
        memcpy((float *)t.data + i * image_floats,
               pool + idx[i] * image_floats, (size_t)image_floats * 4);
    ck_assert_msg(smlp_session_run(s) == SMLP_OK, "%s",
                  smlp_session_errmsg(s));
    memset(r, 0, sizeof(*r));
    r->batch = n;
    for (c = 0; c < smlp_session_tensor_count(s, 4); c++) {
        const char *name = smlp_session_tensor_name(s, 4, c);
        struct route *rt;
        char buf[200];
        int64_t m;

        if (!ends_with(name, ".gate.expert"))
            continue;
        ck_assert_int_lt(r->n_layers, MAX_LAYERS);
        rt = &r->layer[r->n_layers++];
        snprintf(rt->prefix, sizeof(rt->prefix), "%.*s",
                 (int)(strlen(name) - strlen(".gate.expert")), name);
        tensor(s, name, &t);
        ck_assert_int_eq(t.dtype, SMLP_DTYPE_I32);
        ck_assert_int_eq(t.rank, 2);
        ck_assert_int_eq(t.shape[0] % n, 0);
        rt->items = t.shape[0] / n;
        rt->k = t.shape[1];
        rt->expert = malloc(nbytes(&t));
        memcpy(rt->expert, t.data, nbytes(&t));
        snprintf(buf, sizeof(buf), "%s.gate.slot_item", rt->prefix);
        tensor(s, buf, &t);
        rt->e = t.shape[0];
        m = t.shape[1];
        ck_assert_int_eq(m % n, 0); /* one group per image */
        rt->cap = m / n;
        snprintf(buf, sizeof(buf), "%s.gate.slot", rt->prefix);
        tensor(s, buf, &t);
        rt->slot = malloc(nbytes(&t));
        for (i = 0; i < n * rt->items; i++)
            for (j = 0; j < rt->k; j++) {
                int32_t v = ((const int32_t *)t.data)[i * rt->k + j];
                int64_t img = i / rt->items;

                /* Image img's group owns rows [img·cap, (img+1)·cap). */
                ck_assert(v == -1 || (v >= img * rt->cap &&
                                      v < (img + 1) * rt->cap));
                rt->slot[i * rt->k + j] =
                    v < 0 ? v : (int32_t)(v - img * rt->cap);
            }
        snprintf(buf, sizeof(buf), "%s.gate.combine_weight", rt->prefix);
        tensor(s, buf, &t);
        rt->weight = malloc(nbytes(&t));
        memcpy(rt->weight, t.data, nbytes(&t));
        snprintf(buf, sizeof(buf), "%s.gate.load", rt->prefix);
        tensor(s, buf, &t);
        ck_assert_int_eq(smlp_tensor_numel(&t), 2 * rt->e);
        rt->load = malloc(nbytes(&t));
        memcpy(rt->load, t.data, nbytes(&t));
    }
    ck_assert_int_gt(r->n_layers, 0);
    tensor(s, "features", &t);
    r->d = smlp_tensor_numel(&t) / n;
    r->features = malloc(nbytes(&t));
    memcpy(r->features, t.data, nbytes(&t));
    smlp_session_destroy(s);
}

static void
result_free(struct result *r)
{
    int l;

    for (l = 0; l < r->n_layers; l++) {
        free(r->layer[l].expert);
        free(r->layer[l].slot);
        free(r->layer[l].weight);
        free(r->layer[l].load);
    }
    free(r->features);
}

/*
 * Checks batch result b (images idx[0..n)) against the images run alone
 * (alone[idx[i]]): routing exactly, loads as sums, floats within 1e-4.
 */
static void
compare_batch(const struct result *b, const int *idx,
              const struct result *alone, int64_t *dropped)
{
    int64_t i, j, x, n = b->batch;
    int l;

    for (l = 0; l < b->n_layers; l++) {
        const struct route *rb = &b->layer[l];
        int32_t sum[2 * 64];

        ck_assert_int_le(rb->e, 64);
        memset(sum, 0, sizeof(sum));
        for (i = 0; i < n; i++) {
            const struct route *ra = &alone[idx[i]].layer[l];
            int64_t per = rb->items * rb->k, off = i * per;

            ck_assert_str_eq(ra->prefix, rb->prefix);
            ck_assert_int_eq(ra->cap, rb->cap);
            for (x = 0; x < per; x++) {
                ck_assert_msg(rb->expert[off + x] == ra->expert[x],
                              "%s: image %d (batch position %lld of %lld): "
                              "item %lld choice %lld: expert %d alone, %d "
                              "in the batch",
                              rb->prefix, idx[i], (long long)i, (long long)n,
                              (long long)(x / rb->k), (long long)(x % rb->k),
                              ra->expert[x], rb->expert[off + x]);
                ck_assert_msg(rb->slot[off + x] == ra->slot[x],
                              "%s: image %d: item %lld choice %lld: slot %d "
                              "alone, %d in the batch",
                              rb->prefix, idx[i], (long long)(x / rb->k),
                              (long long)(x % rb->k), ra->slot[x],
                              rb->slot[off + x]);
                ck_assert_msg(fabsf(rb->weight[off + x] - ra->weight[x]) <=
                                  1e-4f,
                              "%s: image %d: weight %g alone, %g in the batch",
                              rb->prefix, idx[i], ra->weight[x],
                              rb->weight[off + x]);
                *dropped += ra->slot[x] < 0;
            }
            for (j = 0; j < 2 * rb->e; j++)
                sum[j] += ra->load[j];
        }
        for (j = 0; j < 2 * rb->e; j++)
            ck_assert_msg(rb->load[j] == sum[j],
                          "%s: load[%lld] is %d, the images alone sum to %d",
                          rb->prefix, (long long)j, rb->load[j], sum[j]);
    }
    for (i = 0; i < n; i++)
        for (x = 0; x < b->d; x++) {
            float want = alone[idx[i]].features[x],
                  got = b->features[i * b->d + x];

            ck_assert_msg(fabsf(got - want) <= 1e-4f * (1 + fabsf(want)),
                          "image %d feature %lld: %g alone, %g in the batch",
                          idx[i], (long long)x, want, got);
        }
}

static void
check_composition(const char *gate_op)
{
    static const int orders[][POOL] = {
        {0, 1, 2, 3, 4}, {4, 3, 2, 1, 0}, {2, 0, 4, -1}, {3, 3, 1, -1},
        {1, 4, -1}, {4, 2, 0, 3, -1}};
    smlp_registry_t *reg = tu_registry();
    smlp_graph_t *g = routing_graph(gate_op);
    struct result alone[POOL], b;
    struct smlp_tensor t;
    smlp_session_t *s;
    int64_t image_floats, dropped = 0;
    float *pool;
    int i, n, o;

    /* The pool: the seeded synthetic batch of POOL images. */
    s = session(g, reg, POOL, 1, 0);
    ck_assert_int_eq(smlp_session_fill_inputs(s, 99), SMLP_OK);
    tensor(s, "image", &t);
    image_floats = smlp_tensor_numel(&t) / POOL;
    pool = malloc(nbytes(&t));
    memcpy(pool, t.data, nbytes(&t));
    smlp_session_destroy(s);

    for (i = 0; i < POOL; i++)
        run_batch(g, reg, pool, image_floats, &i, 1, &alone[i]);
    for (o = 0; o < (int)(sizeof(orders) / sizeof(orders[0])); o++) {
        for (n = 0; n < POOL && orders[o][n] >= 0; n++)
            ;
        run_batch(g, reg, pool, image_floats, orders[o], n, &b);
        compare_batch(&b, orders[o], alone, &dropped);
        result_free(&b);
    }
    /* Capacity bites in these graphs: dropped items are part of what
     * must not depend on the batch. */
    ck_assert_int_gt(dropped, 0);
    for (i = 0; i < POOL; i++)
        result_free(&alone[i]);
    free(pool);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}

START_TEST(test_routing_independent_of_batch_importance)
{
    check_composition(NULL);
}
END_TEST

START_TEST(test_routing_independent_of_batch_per_image)
{
    check_composition("moe.gate.per_image");
}
END_TEST

START_TEST(test_sparse_shipped_graph_threads_bit_identical)
{
    smlp_registry_t *reg = tu_registry();
    smlp_graph_t *g = shipped("sparse_mlp_fmnist");
    struct snapshot a, b, c;

    /* The shipped graph itself (not the edit): 1 vs 2 vs 3 threads. */
    run_snap(g, reg, 1, 0, 1, &a, NULL);
    run_snap(g, reg, 2, 0, 1, &b, NULL);
    run_snap(g, reg, 3, 0, 1, &c, NULL);
    assert_same_bits(&a, &b, "shipped sparse_mlp_fmnist, 1 vs 2 threads");
    assert_same_bits(&a, &c, "shipped sparse_mlp_fmnist, 1 vs 3 threads");
    snap_free(&a);
    snap_free(&b);
    snap_free(&c);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

static Suite *
determinism_suite(void)
{
    Suite *s = suite_create("determinism");
    TCase *tc = tcase_create("threads");

    tcase_add_test(tc, test_sparse_threads_and_repeats_bit_identical);
    tcase_add_test(tc, test_sparse_training_threads_bit_identical);
    tcase_add_test(tc, test_sparse_shipped_graph_threads_bit_identical);
    tcase_add_test(tc, test_sparse_backward_threads_bit_identical);
    suite_add_tcase(s, tc);
    tc = tcase_create("batch");
    tcase_add_test(tc, test_routing_independent_of_batch_importance);
    tcase_add_test(tc, test_routing_independent_of_batch_per_image);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(determinism_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
