/*
 * check_train_cache.c - the feature cache of smlp-train's --probe
 * (tools/train_cache.c, on the graph of tools/train_probe.c).
 *
 * The probe's feature cache (tools/train_cache.c): the probe graph of
 * each shipped classifier is cut at `features` into a graph of the two
 * head nodes that keeps every parameter and state tensor; edits that put
 * the images, two backbone tensors or no head.* parameter on the loss's
 * path are refused with the reason; a backbone's state tensors stay, a
 * head's are not cut at, a node off the path to loss and logits is left
 * out.  The cut must be f32 with the batch first, its name must fit the
 * caller's buffer; the cut input takes the rank of its dims (up to
 * SMLP_MAX_RANK); train_cache_expose makes an activation an output.
 * (check_moco_train.sh checks that smlp-train's cached probe gives
 * the bytes of the uncached one.)
 */
#include <stdint.h>

#include "graph_ir.h"
#include "testutil.h"
#include "train_cache.h"
#include "train_head.h"

/* The probe = 1 training graph of shipped graph `name`, encoded, with
 * tensor `from` renamed `to` when from is not NULL. */
static uint8_t *
probe_buffer(const char *name, const char *from, const char *to,
             size_t *len)
{
    struct smlp__graph_ir *ir;
    struct train_head_info info;
    uint8_t *buf, *head, *out;
    size_t n, head_len;
    char path[512], err[512];
    int32_t t;

    tu_shipped_graph(name, path, sizeof(path));
    buf = tu_read_file(path, &n);
    ck_assert_msg(train_head_build(buf, n, path, 0.0, 1, &head, &head_len,
                                   &info, err, sizeof(err)) == 0,
                  "%s", err);
    ck_assert_str_eq(info.image, "image");
    ck_assert_int_eq(smlp__graph_ir_decode(head, head_len, path, &ir, err,
                                           sizeof(err)),
                     SMLP_OK);
    if (from != NULL) {
        t = smlp__graph_ir_find_tensor(ir, from);
        ck_assert_msg(t >= 0, "no tensor %s", from);
        free(ir->tensors[t].name);
        ir->tensors[t].name = strdup(to);
    }
    ck_assert_int_eq(smlp__graph_ir_encode(ir, &out, len, err, sizeof(err)),
                     SMLP_OK);
    smlp__graph_ir_free(ir);
    free(head);
    free(buf);
    return out;
}

/* train_cache_find on it: the cut's name (ok) or the reason. */
static int
find_cut(const uint8_t *buf, size_t len, char *tensor, char *why)
{
    char err[512];
    int ok = -1;

    ck_assert_msg(train_cache_find(buf, len, "probe", "image", &ok, tensor,
                                   256, why, 1024, err, sizeof(err)) == 0,
                  "%s", err);
    return ok;
}

START_TEST(test_cache_cut_shipped)
{
    static const char *const graphs[] = {"sparse_mlp_fmnist", "mixer_fmnist"};
    int gi;

    for (gi = 0; gi < 2; gi++) {
        struct smlp__graph_ir *full, *cut;
        uint8_t *buf, *out;
        size_t len, out_len;
        const int64_t dims[1] = {128};
        char tensor[256], why[1024], err[512];
        int32_t i, t, params = 0;
        struct smlp_error e;
        smlp_graph_t *g;

        buf = probe_buffer(graphs[gi], NULL, NULL, &len);
        ck_assert_msg(find_cut(buf, len, tensor, why) == 1, "%s: %s",
                      graphs[gi], why);
        ck_assert_str_eq(tensor, "features");
        ck_assert_int_eq(train_cache_head(buf, len, "probe", tensor, dims, 1,
                                          &out, &out_len, err, sizeof(err)),
                         0);
        ck_assert_int_eq(smlp__graph_ir_decode(buf, len, "full", &full, err,
                                               sizeof(err)),
                         SMLP_OK);
        ck_assert_int_eq(smlp__graph_ir_decode(out, out_len, "cut", &cut,
                                               err, sizeof(err)),
                         SMLP_OK);
        /* the linear head and the cross-entropy, nothing else */
        ck_assert_int_eq(cut->n_nodes, 2);
        ck_assert_str_eq(cut->nodes[0].name, "head");
        ck_assert_str_eq(cut->nodes[1].name, "train.ce");
        t = smlp__graph_ir_find_tensor(cut, "features");
        ck_assert_int_ge(t, 0);
        ck_assert_int_eq(cut->tensors[t].kind, SMLP__TENSOR_INPUT);
        ck_assert_int_eq(cut->tensors[t].rank, 2);
        ck_assert_int_eq(cut->tensors[t].shape[0], -1);
        ck_assert_int_eq(cut->tensors[t].shape[1], 128);
        ck_assert_int_lt(smlp__graph_ir_find_tensor(cut, "image"), 0);
        ck_assert_int_lt(smlp__graph_ir_find_tensor(cut, "aux_loss"), 0);
        ck_assert_int_ge(smlp__graph_ir_find_tensor(cut, "labels"), 0);
        ck_assert_int_ge(smlp__graph_ir_find_tensor(cut, "loss"), 0);
        ck_assert_int_ge(smlp__graph_ir_find_tensor(cut, "logits"), 0);
        /* every parameter and state tensor, as it was */
        for (i = 0; i < full->n_tensors; i++) {
            const struct smlp__tensor_ir *a = &full->tensors[i];

            if (a->kind != SMLP__TENSOR_PARAMETER &&
                a->kind != SMLP__TENSOR_STATE)
                continue;
            params++;
            t = smlp__graph_ir_find_tensor(cut, a->name);
            ck_assert_msg(t >= 0, "%s: %s dropped", graphs[gi], a->name);
            ck_assert_int_eq(cut->tensors[t].kind, a->kind);
            ck_assert_int_eq(cut->tensors[t].rank, a->rank);
            ck_assert_mem_eq(cut->tensors[t].shape, a->shape,
                             (size_t)a->rank * sizeof(a->shape[0]));
            ck_assert_int_eq(cut->tensors[t].init.seed, a->init.seed);
        }
        ck_assert_int_gt(params, 40);
        for (i = 0; i < cut->n_meta; i++)
            if (strcmp(cut->meta[i].key, "train.probe_cache") == 0)
                break;
        ck_assert_int_lt(i, cut->n_meta);
        ck_assert_str_eq(cut->meta[i].value, "features");
        g = smlp_graph_load_buffer(out, out_len, "cut", &e);
        ck_assert_msg(g != NULL, "%s: %s", graphs[gi], e.msg);
        smlp_graph_unload(g);
        smlp__graph_ir_free(full);
        smlp__graph_ir_free(cut);
        free(out);
        free(buf);
    }
}
END_TEST

START_TEST(test_cache_refusals)
{
    static const struct {
        const char *from, *to, *why;
    } cases[] = {
        /* the stem's weight trained: the head starts at the images */
        {"stem.proj.weight", "head.stem", "head node 'stem' reads the "
                                          "images 'image'"},
        /* a router trained: its gate, dispatch and combine read the
         * block's normalised tokens, the residual add its input */
        {"blocks.5.moe_c.gate.weight", "head.gate",
         "the head reads more than one backbone tensor"},
        /* no head.* parameter left */
        {"head.weight", "w", NULL},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len;
        uint8_t *buf = probe_buffer("sparse_mlp_fmnist", cases[i].from,
                                    cases[i].to, &len);
        char tensor[256], why[1024];

        if (cases[i].why == NULL) {
            /* head.bias alone still trains: rename it too */
            struct smlp__graph_ir *ir;
            char err[512];
            int32_t t;

            ck_assert_int_eq(smlp__graph_ir_decode(buf, len, "p", &ir, err,
                                                   sizeof(err)),
                             SMLP_OK);
            t = smlp__graph_ir_find_tensor(ir, "head.bias");
            free(ir->tensors[t].name);
            ir->tensors[t].name = strdup("b");
            free(buf);
            ck_assert_int_eq(smlp__graph_ir_encode(ir, &buf, &len, err,
                                                   sizeof(err)),
                             SMLP_OK);
            smlp__graph_ir_free(ir);
        }
        ck_assert_int_eq(find_cut(buf, len, tensor, why), 0);
        ck_assert_msg(strstr(why, cases[i].why != NULL
                                      ? cases[i].why
                                      : "the loss does not depend on "
                                        "head.*") != NULL,
                      "%s: %s", cases[i].from, why);
        free(buf);
    }
}
END_TEST

/* Appends tensor `name` (f32, of kind) to ir; its index. */
static int32_t
append_tensor(struct smlp__graph_ir *ir, const char *name, int kind)
{
    struct smlp__tensor_ir *t;

    t = realloc(ir->tensors, ((size_t)ir->n_tensors + 1) * sizeof(*t));
    ck_assert_ptr_nonnull(t);
    ir->tensors = t;
    t += ir->n_tensors;
    memset(t, 0, sizeof(*t));
    t->name = strdup(name);
    t->dtype = SMLP_DTYPE_F32;
    t->kind = kind;
    return ir->n_tensors++;
}

/* Appends node `name` (op) reading a and b, writing out, to ir. */
static void
append_node(struct smlp__graph_ir *ir, const char *name, const char *op,
            int32_t a, int32_t b, int32_t out)
{
    struct smlp__node_ir *n;

    n = realloc(ir->nodes, ((size_t)ir->n_nodes + 1) * sizeof(*n));
    ck_assert_ptr_nonnull(n);
    ir->nodes = n;
    n += ir->n_nodes++;
    memset(n, 0, sizeof(*n));
    n->name = strdup(name);
    n->op = strdup(op);
    n->n_inputs = 2;
    n->inputs = malloc(2 * sizeof(int32_t));
    n->inputs[0] = a;
    n->inputs[1] = b;
    n->n_outputs = 1;
    n->outputs = malloc(sizeof(int32_t));
    n->outputs[0] = out;
}

/* The cut of a sparse_mlp_fmnist probe graph: found at `features`
 * ([batch, 128]), made and decoded; *out holds the cut graph's bytes. */
static struct smlp__graph_ir *
cut_at_features(const uint8_t *buf, size_t len, uint8_t **out)
{
    const int64_t dims[1] = {128};
    struct smlp__graph_ir *cut;
    size_t out_len;
    char tensor[256], why[1024], err[512];

    ck_assert_msg(find_cut(buf, len, tensor, why) == 1, "%s", why);
    ck_assert_str_eq(tensor, "features");
    ck_assert_int_eq(train_cache_head(buf, len, "probe", tensor, dims, 1, out,
                                      &out_len, err, sizeof(err)),
                     0);
    ck_assert_int_eq(smlp__graph_ir_decode(*out, out_len, "cut", &cut, err,
                                           sizeof(err)),
                     SMLP_OK);
    return cut;
}

/* The cut beyond the shipped graphs' two head nodes: a state tensor of
 * the backbone (as a batch norm's running statistics are) stays in the
 * cut graph as the parameters do; a state tensor the head reads
 * (head.bias made one) is not a backbone tensor to cut at; a node that
 * reads a head.* parameter but feeds neither loss nor logits (an extra
 * output) is not part of the head. */
START_TEST(test_cache_cut_states_and_side_nodes)
{
    static const char *const states[] = {"norm.weight", "head.bias"};
    struct smlp__graph_ir *ir, *cut;
    uint8_t *buf, *out;
    size_t len;
    char err[512];
    int32_t i, t, w, extra;

    buf = probe_buffer("sparse_mlp_fmnist", NULL, NULL, &len);
    ck_assert_int_eq(smlp__graph_ir_decode(buf, len, "p", &ir, err,
                                           sizeof(err)),
                     SMLP_OK);
    free(buf);
    for (i = 0; i < 2; i++) {
        t = smlp__graph_ir_find_tensor(ir, states[i]);
        ck_assert_int_ge(t, 0);
        ck_assert_int_eq(ir->tensors[t].kind, SMLP__TENSOR_PARAMETER);
        ir->tensors[t].kind = SMLP__TENSOR_STATE;
    }
    w = smlp__graph_ir_find_tensor(ir, "head.weight");
    extra = append_tensor(ir, "head.weight_sq", SMLP__TENSOR_OUTPUT);
    append_node(ir, "head.monitor", "core.mul", w, w, extra);
    ck_assert_int_eq(smlp__graph_ir_encode(ir, &buf, &len, err, sizeof(err)),
                     SMLP_OK);
    smlp__graph_ir_free(ir);
    cut = cut_at_features(buf, len, &out);
    ck_assert_int_eq(cut->n_nodes, 2);
    ck_assert_str_eq(cut->nodes[0].name, "head");
    ck_assert_str_eq(cut->nodes[1].name, "train.ce");
    for (i = 0; i < 2; i++) {
        t = smlp__graph_ir_find_tensor(cut, states[i]);
        ck_assert_msg(t >= 0, "%s dropped", states[i]);
        ck_assert_int_eq(cut->tensors[t].kind, SMLP__TENSOR_STATE);
    }
    ck_assert_int_lt(smlp__graph_ir_find_tensor(cut, "head.weight_sq"), 0);
    smlp__graph_ir_free(cut);
    free(out);
    free(buf);
}
END_TEST

/* The head is what `loss` or `logits` depends on: here the loss reads a
 * second linear head ('head.second', of the same parameters) and only
 * the logits read the first; the cut keeps both heads and the logits. */
START_TEST(test_cache_cut_keeps_logits)
{
    struct smlp__graph_ir *ir, *cut;
    uint8_t *buf, *out;
    size_t len;
    char err[512];
    int32_t h, ce, second, in[3];

    buf = probe_buffer("sparse_mlp_fmnist", NULL, NULL, &len);
    ck_assert_int_eq(smlp__graph_ir_decode(buf, len, "p", &ir, err,
                                           sizeof(err)),
                     SMLP_OK);
    free(buf);
    h = smlp__graph_ir_find_node(ir, "head");
    ce = smlp__graph_ir_find_node(ir, "train.ce");
    ck_assert_int_ge(h, 0);
    ck_assert_int_ge(ce, 0);
    ck_assert_int_eq(ir->nodes[h].n_inputs, 3);
    memcpy(in, ir->nodes[h].inputs, sizeof(in)); /* features, w, b */
    second = append_tensor(ir, "logits2", SMLP__TENSOR_ACTIVATION);
    append_node(ir, "head.second", "core.linear", in[0], in[1], second);
    h = ir->n_nodes - 1;
    ir->nodes[h].inputs = realloc(ir->nodes[h].inputs, sizeof(in));
    ck_assert_ptr_nonnull(ir->nodes[h].inputs);
    ir->nodes[h].n_inputs = 3;
    ir->nodes[h].inputs[2] = in[2];
    ir->nodes[ce].inputs[0] = second;
    ck_assert_int_eq(smlp__graph_ir_encode(ir, &buf, &len, err, sizeof(err)),
                     SMLP_OK);
    smlp__graph_ir_free(ir);
    cut = cut_at_features(buf, len, &out);
    ck_assert_int_eq(cut->n_nodes, 3);
    ck_assert_str_eq(cut->nodes[0].name, "head");
    ck_assert_str_eq(cut->nodes[1].name, "train.ce");
    ck_assert_str_eq(cut->nodes[2].name, "head.second");
    ck_assert_int_ge(smlp__graph_ir_find_tensor(cut, "logits"), 0);
    ck_assert_int_ge(smlp__graph_ir_find_tensor(cut, "logits2"), 0);
    smlp__graph_ir_free(cut);
    free(out);
    free(buf);
}
END_TEST

/* train_cache_expose on the shipped sparse_mlp_fmnist (which already
 * outputs `features`): `blocks.5.res2.out`, an activation (the cut of a
 * head from the final norm on), becomes a graph output and nothing else
 * changes (the same tensors, of the same kinds, and nodes); a parameter
 * named instead stays a parameter (only an activation is made an output);
 * a name the graph lacks is an error that names it, with no buffer. */
START_TEST(test_cache_expose)
{
    struct smlp__graph_ir *orig, *ir;
    uint8_t *buf, *out;
    size_t len, out_len;
    char path[512], err[512];
    int32_t i, t;

    tu_shipped_graph("sparse_mlp_fmnist", path, sizeof(path));
    buf = tu_read_file(path, &len);
    ck_assert_int_eq(smlp__graph_ir_decode(buf, len, path, &orig, err,
                                           sizeof(err)),
                     SMLP_OK);
    ck_assert_int_eq(train_cache_expose(buf, len, path, "blocks.5.res2.out",
                                        &out, &out_len, err, sizeof(err)),
                     0);
    ck_assert_int_eq(smlp__graph_ir_decode(out, out_len, "x", &ir, err,
                                           sizeof(err)),
                     SMLP_OK);
    ck_assert_int_eq(ir->n_tensors, orig->n_tensors);
    ck_assert_int_eq(ir->n_nodes, orig->n_nodes);
    t = smlp__graph_ir_find_tensor(orig, "blocks.5.res2.out");
    ck_assert_int_ge(t, 0);
    ck_assert_int_eq(orig->tensors[t].kind, SMLP__TENSOR_ACTIVATION);
    for (i = 0; i < ir->n_tensors; i++) {
        ck_assert_str_eq(ir->tensors[i].name, orig->tensors[i].name);
        ck_assert_int_eq(ir->tensors[i].kind,
                         i == t ? SMLP__TENSOR_OUTPUT
                                : orig->tensors[i].kind);
    }
    smlp__graph_ir_free(ir);
    free(out);
    ck_assert_int_eq(train_cache_expose(buf, len, path, "head.weight", &out,
                                        &out_len, err, sizeof(err)),
                     0);
    ck_assert_int_eq(smlp__graph_ir_decode(out, out_len, "x", &ir, err,
                                           sizeof(err)),
                     SMLP_OK);
    t = smlp__graph_ir_find_tensor(ir, "head.weight");
    ck_assert_int_ge(t, 0);
    ck_assert_int_eq(ir->tensors[t].kind, SMLP__TENSOR_PARAMETER);
    smlp__graph_ir_free(ir);
    free(out);
    out = buf; /* not NULL */
    ck_assert_int_eq(train_cache_expose(buf, len, "g.fbs", "nope", &out,
                                        &out_len, err, sizeof(err)),
                     -1);
    ck_assert_ptr_null(out);
    ck_assert_str_eq(err, "g.fbs: no tensor 'nope'");
    smlp__graph_ir_free(orig);
    free(buf);
}
END_TEST

/* The cut input of train_cache_head has the rank its dims give, up to
 * SMLP_MAX_RANK (8): 7 dims 2..8 make `features` an f32 input [-1, 2, 3,
 * ..., 8], each dim in its place; 8 dims (rank 9), -1 dims and a tensor
 * the graph lacks are refused, naming the tensor. */
START_TEST(test_cache_head_ranks)
{
    static const int64_t dims[SMLP_MAX_RANK] = {2, 3, 4, 5, 6, 7, 8, 9};
    struct smlp__graph_ir *cut;
    uint8_t *buf, *out;
    size_t len, out_len;
    char err[512];
    int32_t i, t;

    ck_assert_int_eq(SMLP_MAX_RANK, 8);
    buf = probe_buffer("sparse_mlp_fmnist", NULL, NULL, &len);
    ck_assert_int_eq(train_cache_head(buf, len, "probe", "features", dims,
                                      SMLP_MAX_RANK - 1, &out, &out_len, err,
                                      sizeof(err)),
                     0);
    ck_assert_int_eq(smlp__graph_ir_decode(out, out_len, "cut", &cut, err,
                                           sizeof(err)),
                     SMLP_OK);
    t = smlp__graph_ir_find_tensor(cut, "features");
    ck_assert_int_ge(t, 0);
    ck_assert_int_eq(cut->tensors[t].kind, SMLP__TENSOR_INPUT);
    ck_assert_int_eq(cut->tensors[t].dtype, SMLP_DTYPE_F32);
    ck_assert_int_eq(cut->tensors[t].has_shape, 1);
    ck_assert_int_eq(cut->tensors[t].rank, SMLP_MAX_RANK);
    ck_assert_int_eq(cut->tensors[t].shape[0], -1);
    for (i = 1; i < SMLP_MAX_RANK; i++)
        ck_assert_int_eq(cut->tensors[t].shape[i], i + 1);
    smlp__graph_ir_free(cut);
    free(out);
    ck_assert_int_eq(train_cache_head(buf, len, "probe", "features", dims,
                                      SMLP_MAX_RANK, &out, &out_len, err,
                                      sizeof(err)),
                     -1);
    ck_assert_str_eq(err, "probe: cannot cut the graph at 'features'");
    ck_assert_ptr_null(out);
    err[0] = '\0';
    ck_assert_int_eq(train_cache_head(buf, len, "probe", "features", dims,
                                      -1, &out, &out_len, err, sizeof(err)),
                     -1);
    ck_assert_str_eq(err, "probe: cannot cut the graph at 'features'");
    err[0] = '\0';
    ck_assert_int_eq(train_cache_head(buf, len, "probe", "nope", dims, 1,
                                      &out, &out_len, err, sizeof(err)),
                     -1);
    ck_assert_str_eq(err, "probe: cannot cut the graph at 'nope'");
    free(buf);
}
END_TEST

/* train_cache_find writes the cut's name only when it fits: `features`
 * (8 bytes and the NUL) in 9 bytes; in 8 the cache is refused with the
 * name's length rather than cut at a truncated name. */
START_TEST(test_cache_find_name_room)
{
    uint8_t *buf;
    size_t len;
    char tensor[16], why[1024], err[512];
    int ok;

    buf = probe_buffer("sparse_mlp_fmnist", NULL, NULL, &len);
    ck_assert_int_eq(train_cache_find(buf, len, "probe", "image", &ok, tensor,
                                      9, why, sizeof(why), err, sizeof(err)),
                     0);
    ck_assert_int_eq(ok, 1);
    ck_assert_str_eq(tensor, "features");
    ck_assert_int_eq(train_cache_find(buf, len, "probe", "image", &ok, tensor,
                                      8, why, sizeof(why), err, sizeof(err)),
                     0);
    ck_assert_int_eq(ok, 0);
    ck_assert_str_eq(why, "the head reads a tensor with a name of 8 bytes");
    free(buf);
}
END_TEST

/* The cut must be an f32 tensor with the batch first: `features` of the
 * sparse_mlp_fmnist probe, declared i32, [128, -1] or a scalar (rank 0),
 * is refused with the reason; declared [-1, 128] it is the cut. */
START_TEST(test_cache_refusals_cut_tensor)
{
    static const struct {
        int dtype, rank;
        int64_t shape[2];
        const char *why; /* NULL: the cut */
    } cases[] = {
        {SMLP_DTYPE_I32, 2, {-1, 128}, "which is not f32"},
        {SMLP_DTYPE_F32, 2, {128, -1}, "which does not have the batch as "
                                       "its first dimension"},
        {SMLP_DTYPE_F32, 0, {0, 0}, "which does not have the batch as "
                                    "its first dimension"},
        {SMLP_DTYPE_F32, 2, {-1, 128}, NULL},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct smlp__graph_ir *ir;
        uint8_t *buf;
        size_t len;
        char tensor[256], why[1024], err[512];
        int32_t t;

        buf = probe_buffer("sparse_mlp_fmnist", NULL, NULL, &len);
        ck_assert_int_eq(smlp__graph_ir_decode(buf, len, "p", &ir, err,
                                               sizeof(err)),
                         SMLP_OK);
        free(buf);
        t = smlp__graph_ir_find_tensor(ir, "features");
        ck_assert_int_ge(t, 0);
        ir->tensors[t].dtype = cases[i].dtype;
        ir->tensors[t].has_shape = 1;
        ir->tensors[t].rank = cases[i].rank;
        ir->tensors[t].shape[0] = cases[i].shape[0];
        ir->tensors[t].shape[1] = cases[i].shape[1];
        ck_assert_int_eq(smlp__graph_ir_encode(ir, &buf, &len, err,
                                               sizeof(err)),
                         SMLP_OK);
        smlp__graph_ir_free(ir);
        if (cases[i].why == NULL) {
            ck_assert_msg(find_cut(buf, len, tensor, why) == 1, "%s", why);
            ck_assert_str_eq(tensor, "features");
        } else {
            ck_assert_int_eq(find_cut(buf, len, tensor, why), 0);
            ck_assert_msg(strstr(why, "the head reads 'features', ") != NULL &&
                              strstr(why, cases[i].why) != NULL,
                          "case %zu: %s", i, why);
        }
        free(buf);
    }
}
END_TEST

static Suite *
cache_suite(void)
{
    Suite *s = suite_create("train_cache");
    TCase *tc = tcase_create("cache");

    tcase_add_test(tc, test_cache_cut_shipped);
    tcase_add_test(tc, test_cache_refusals);
    tcase_add_test(tc, test_cache_cut_states_and_side_nodes);
    tcase_add_test(tc, test_cache_cut_keeps_logits);
    tcase_add_test(tc, test_cache_expose);
    tcase_add_test(tc, test_cache_head_ranks);
    tcase_add_test(tc, test_cache_find_name_room);
    tcase_add_test(tc, test_cache_refusals_cut_tensor);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(cache_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
