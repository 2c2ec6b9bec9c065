/*
 * check_op_moe.c - the data path of the `moe` plugin: moe.dispatch,
 * moe.combine, moe.expert_ffn, the four nodes of a layer together, and
 * the plugin's op table.  The gates: check_op_moe_gate.c; their aux
 * losses and noise: check_op_moe_aux.c.
 *
 * Expected values are worked out by hand in the comments (tiny gates
 * whose router weight is the identity, so the logits are the rows of x),
 * or by naive loops written here in double precision; never by calling a
 * kernel.  σ(v) = 1/(1 + e^−v), so with two experts and logits [a, b] the
 * softmax is [σ(a−b), σ(b−a)]; the decimal values were computed with
 * python3 (math module) and pasted.  Shape-inference errors are checked by
 * message substring.  The plugin is loaded from
 * $SMLP_TEST_BUILDDIR/plugins/.libs/moe.so through tests/ophost.c.
 */
#include "moehost.h"

/* ---- moe.dispatch ------------------------------------------------------- */

START_TEST(test_dispatch_gather)
{
    /* x rows (1,2), (3,4), (5,6); slot_item [[2,-1],[0,1]]:
     * buf = [[(5,6), (0,0)], [(1,2), (3,4)]]. */
    const float x[] = {1, 2, 3, 4, 5, 6};
    const int32_t si[] = {2, -1, 0, 1};
    const double want[] = {5, 6, 0, 0, 1, 2, 3, 4};
    struct smlp_tensor *in[2] = {ophost_f32(OPHOST_SHAPE(3, 2), x),
                                 ophost_i32(OPHOST_SHAPE(2, 2), si)};
    struct smlp_tensor *out[1];

    run_ok("moe.dispatch", NULL, in, 2, out, 1);
    assert_shape(out[0], 3, (const int64_t[]){2, 2, 2});
    assert_f32(out[0], want, 8, 0.0, "buf");
    free_all(in, 2);
    free_all(out, 1);
}
END_TEST

START_TEST(test_dispatch_out_of_range)
{
    const int32_t big[] = {0, 3, -1, 1};
    const int32_t neg[] = {0, -1, -2, 1};
    struct smlp_tensor *in[2] = {ophost_f32(OPHOST_SHAPE(3, 2), NULL),
                                 ophost_i32(OPHOST_SHAPE(2, 2), big)};

    run_fails("moe.dispatch", NULL, in, 2, 1,
              "input 1 (slot_item)[0,1] = 3 is out of range");
    memcpy(in[1]->data, neg, sizeof(neg));
    run_fails("moe.dispatch", NULL, in, 2, 1,
              "input 1 (slot_item)[1,0] = -2 is out of range");
    free_all(in, 2);
}
END_TEST

START_TEST(test_dispatch_errors)
{
    struct smlp_tensor *in[2] = {ophost_f32(OPHOST_SHAPE(3, 2), NULL),
                                 ophost_f32(OPHOST_SHAPE(2, 2), NULL)};

    infer_fails("moe.dispatch", NULL, in, 2, 1,
                "input 1 (slot_item) has dtype f32, expected i32");
    ophost_tensor_free(in[1]);
    in[1] = ophost_i32(OPHOST_SHAPE(4), NULL);
    infer_fails("moe.dispatch", NULL, in, 2, 1,
                "input 1 (slot_item) has shape [4] (rank 1), expected rank "
                "2");
    free_all(in, 2);
}
END_TEST

/* ---- moe.combine -------------------------------------------------------- */

/* out [2,2,2]: e0 rows (1,2), (3,4); e1 rows (10,20), (30,40). */
static const float comb_out[] = {1, 2, 3, 4, 10, 20, 30, 40};

START_TEST(test_combine_hand)
{
    /* y0 = 0.5·(3,4) + 0.25·(10,20) = (4, 7); y1: choice 0 dropped,
     * 2·(1,2) = (2, 4); y2: nothing kept, (0, 0). */
    const int32_t ex[] = {0, 1, 1, 0, 0, 1};
    const int32_t sl[] = {1, 0, -1, 0, -1, -1};
    const float w[] = {0.5f, 0.25f, 0.7f, 2.0f, 1.0f, 1.0f};
    const double want[] = {4, 7, 2, 4, 0, 0};
    struct smlp_tensor *in[4] = {ophost_f32(OPHOST_SHAPE(2, 2, 2), comb_out),
                                 ophost_i32(OPHOST_SHAPE(3, 2), ex),
                                 ophost_i32(OPHOST_SHAPE(3, 2), sl),
                                 ophost_f32(OPHOST_SHAPE(3, 2), w)};
    struct smlp_tensor *out[1];

    run_ok("moe.combine", NULL, in, 4, out, 1);
    assert_shape(out[0], 2, (const int64_t[]){3, 2});
    assert_f32(out[0], want, 6, 1e-7, "y");
    free_all(in, 4);
    free_all(out, 1);
}
END_TEST

START_TEST(test_combine_out_of_range)
{
    const int32_t ex_bad[] = {0, 2};
    const int32_t ex_ok[] = {0, 1};
    const int32_t sl_ok[] = {0, 1};
    const int32_t sl_big[] = {0, 2};
    const int32_t sl_neg[] = {-3, 0};
    const int32_t sl_m2[] = {0, -2}; /* just below -1, the "dropped" mark */
    struct smlp_tensor *in[4] = {ophost_f32(OPHOST_SHAPE(2, 2, 2), comb_out),
                                 ophost_i32(OPHOST_SHAPE(1, 2), ex_bad),
                                 ophost_i32(OPHOST_SHAPE(1, 2), sl_ok),
                                 ophost_f32(OPHOST_SHAPE(1, 2), NULL)};

    run_fails("moe.combine", NULL, in, 4, 1,
              "input 1 (expert)[0,1] = 2 is out of range [0, 2)");
    memcpy(in[1]->data, ex_ok, sizeof(ex_ok));
    memcpy(in[2]->data, sl_big, sizeof(sl_big));
    run_fails("moe.combine", NULL, in, 4, 1,
              "input 2 (slot)[0,1] = 2 is out of range");
    memcpy(in[2]->data, sl_neg, sizeof(sl_neg));
    run_fails("moe.combine", NULL, in, 4, 1,
              "input 2 (slot)[0,0] = -3 is out of range");
    memcpy(in[2]->data, sl_m2, sizeof(sl_m2));
    run_fails("moe.combine", NULL, in, 4, 1,
              "input 2 (slot)[0,1] = -2 is out of range");
    free_all(in, 4);
}
END_TEST

START_TEST(test_combine_errors)
{
    struct smlp_tensor *in[4] = {ophost_f32(OPHOST_SHAPE(2, 2, 2), NULL),
                                 ophost_i32(OPHOST_SHAPE(3, 2), NULL),
                                 ophost_i32(OPHOST_SHAPE(3, 2), NULL),
                                 ophost_f32(OPHOST_SHAPE(3, 1), NULL)};

    infer_fails("moe.combine", NULL, in, 4, 1,
                "input 3 (weight) has shape [3,1], expected [3,2]");
    ophost_tensor_free(in[2]);
    in[2] = ophost_f32(OPHOST_SHAPE(3, 2), NULL);
    infer_fails("moe.combine", NULL, in, 4, 1,
                "input 2 (slot) has dtype f32, expected i32");
    free_all(in, 4);
}
END_TEST

/* ---- moe.expert_ffn ----------------------------------------------------- */

static double
gelu_d(double v)
{
    return 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
}

/* Naive expert FFN in double; rows with si == -1 (si may be NULL) are
 * zero. */
static double *
ffn_ref(const float *buf, int64_t e, int64_t m, int64_t d, const float *w1,
        const float *b1, int64_t h, const float *w2, const float *b2,
        int64_t o, const int32_t *si, int relu)
{
    double *y = calloc((size_t)(e * m * o), sizeof(double));
    double *hid = malloc((size_t)h * sizeof(double));
    int64_t x, r, i, j, c;

    ck_assert_ptr_nonnull(y);
    ck_assert_ptr_nonnull(hid);
    for (x = 0; x < e; x++)
        for (r = 0; r < m; r++) {
            const float *row = buf + (x * m + r) * d;

            if (si != NULL && si[x * m + r] == -1)
                continue;
            for (j = 0; j < h; j++) {
                double s = b1[x * h + j];

                for (c = 0; c < d; c++)
                    s += (double)w1[(x * h + j) * d + c] * row[c];
                hid[j] = relu ? (s > 0 ? s : 0) : gelu_d(s);
            }
            for (i = 0; i < o; i++) {
                double s = b2[x * o + i];

                for (j = 0; j < h; j++)
                    s += (double)w2[(x * o + i) * h + j] * hid[j];
                y[(x * m + r) * o + i] = s;
            }
        }
    free(hid);
    return y;
}

/* expert_ffn on random E=3, M=4, d=5, h=6, o=3 against ffn_ref. */
static void
check_ffn(const char *act, int with_si)
{
    const int64_t e = 3, m = 4, d = 5, h = 6, o = 3;
    const int32_t si[] = {0, -1, 2, -1, -1, -1, -1, -1, 1, 2, 3, 4};
    float *bv = rnd(e * m * d, 1), *w1 = rnd(e * h * d, 2);
    float *b1 = rnd(e * h, 3), *w2 = rnd(e * o * h, 4), *b2 = rnd(e * o, 5);
    struct smlp_tensor *in[6] = {
        ophost_f32(OPHOST_SHAPE(e, m, d), bv),
        ophost_f32(OPHOST_SHAPE(e, h, d), w1),
        ophost_f32(OPHOST_SHAPE(e, h), b1),
        ophost_f32(OPHOST_SHAPE(e, o, h), w2),
        ophost_f32(OPHOST_SHAPE(e, o), b2),
        with_si ? ophost_i32(OPHOST_SHAPE(e, m), si) : NULL,
    };
    struct ophost_attr attrs[] = {OPHOST_STRING("activation", act),
                                  OPHOST_END};
    struct smlp_tensor *out[1];
    double *want;

    run_ok("moe.expert_ffn", act ? attrs : NULL, in, with_si ? 6 : 5, out,
           1);
    assert_shape(out[0], 3, (const int64_t[]){e, m, o});
    want = ffn_ref(bv, e, m, d, w1, b1, h, w2, b2, o, with_si ? si : NULL,
                   act != NULL && strcmp(act, "relu") == 0);
    assert_f32(out[0], want, e * m * o, 1e-5, "out");
    ck_assert_int_eq(ophost_stats(host)->macs,
                     (uint64_t)(e * m * (d * h + h * o)));
    if (with_si) {
        /* Rows marked -1 are exactly zero. */
        const float *y = out[0]->data;
        int64_t r, c;

        for (r = 0; r < e * m; r++)
            if (si[r] == -1)
                for (c = 0; c < o; c++)
                    ck_assert(y[r * o + c] == 0.0f);
    }
    free(want);
    free(bv);
    free(w1);
    free(b1);
    free(w2);
    free(b2);
    free_all(in, 6);
    free_all(out, 1);
}

START_TEST(test_expert_ffn_gelu_all_rows)
{
    check_ffn(NULL, 0); /* default activation: gelu */
    check_ffn("gelu", 0);
}
END_TEST

START_TEST(test_expert_ffn_gelu_slot_item)
{
    check_ffn("gelu", 1);
}
END_TEST

START_TEST(test_expert_ffn_relu)
{
    check_ffn("relu", 0);
    check_ffn("relu", 1);
}
END_TEST

START_TEST(test_expert_ffn_slot_item_invalid)
{
    const int32_t si[] = {0, -7};
    struct smlp_tensor *in[6] = {
        ophost_f32(OPHOST_SHAPE(1, 2, 2), NULL),
        ophost_f32(OPHOST_SHAPE(1, 3, 2), NULL),
        ophost_f32(OPHOST_SHAPE(1, 3), NULL),
        ophost_f32(OPHOST_SHAPE(1, 2, 3), NULL),
        ophost_f32(OPHOST_SHAPE(1, 2), NULL),
        ophost_i32(OPHOST_SHAPE(1, 2), si),
    };

    run_fails("moe.expert_ffn", NULL, in, 6, 1,
              "input 5 (slot_item)[0,1] = -7 is invalid");
    free_all(in, 6);
}
END_TEST

START_TEST(test_expert_ffn_errors)
{
    struct smlp_tensor *in[6] = {
        ophost_f32(OPHOST_SHAPE(2, 4, 5), NULL),
        ophost_f32(OPHOST_SHAPE(2, 6, 5), NULL),
        ophost_f32(OPHOST_SHAPE(2, 6), NULL),
        ophost_f32(OPHOST_SHAPE(2, 3, 6), NULL),
        ophost_f32(OPHOST_SHAPE(2, 3), NULL),
        ophost_f32(OPHOST_SHAPE(2, 4), NULL),
    };
    struct ophost_attr bad[] = {OPHOST_STRING("activation", "tanh"),
                                OPHOST_END};

    infer_fails("moe.expert_ffn", NULL, in, 6, 1,
                "input 5 (slot_item) has dtype f32, expected i32");
    infer_fails("moe.expert_ffn", bad, in, 5, 1,
                "attribute 'activation' = 'tanh' is invalid");
    ophost_tensor_free(in[1]);
    in[1] = ophost_f32(OPHOST_SHAPE(2, 6, 4), NULL);
    infer_fails("moe.expert_ffn", NULL, in, 5, 1,
                "input 1 (W1) has shape [2,6,4], expected [2,6,5]");
    ophost_tensor_free(in[1]);
    in[1] = ophost_f32(OPHOST_SHAPE(2, 6, 5), NULL);
    ophost_tensor_free(in[3]);
    in[3] = ophost_f32(OPHOST_SHAPE(2, 3, 7), NULL);
    infer_fails("moe.expert_ffn", NULL, in, 5, 1,
                "input 3 (W2) has shape [2,3,7], expected [2,3,6]");
    free_all(in, 6);
}
END_TEST

START_TEST(test_expert_ffn_relu_nan)
{
    /* E = 1, M = 2, d = h = o = 1, W1 = 1, b1 = 0, W2 = 2, b2 = 0.5:
     * out = 2 relu(buf) + 0.5.  A NaN row stays NaN (relu keeps it, as
     * core.relu), a negative one gives b2. */
    const float buf[] = {NAN, -1}, w1[] = {1}, b1[] = {0}, w2[] = {2};
    const float b2[] = {0.5f};
    struct smlp_tensor *in[5] = {
        ophost_f32(OPHOST_SHAPE(1, 2, 1), buf),
        ophost_f32(OPHOST_SHAPE(1, 1, 1), w1),
        ophost_f32(OPHOST_SHAPE(1, 1), b1),
        ophost_f32(OPHOST_SHAPE(1, 1, 1), w2),
        ophost_f32(OPHOST_SHAPE(1, 1), b2),
    };
    struct ophost_attr relu[] = {OPHOST_STRING("activation", "relu"),
                                 OPHOST_END};
    struct smlp_tensor *out[1];
    const float *y;

    run_ok("moe.expert_ffn", relu, in, 5, out, 1);
    y = out[0]->data;
    ck_assert_msg(isnan(y[0]), "row 0: %g, want NaN", (double)y[0]);
    ck_assert_msg(y[1] == 0.5f, "row 1: %g, want 0.5", (double)y[1]);
    free_all(out, 1);
    free_all(in, 5);
}
END_TEST

START_TEST(test_expert_ffn_hidden_0)
{
    /* h = 0 is a valid shape (OPS.md sets no minimum, infer accepts it):
     * the hidden layer is empty, act(buf·W1ᵀ + b1) is a [M,0] matrix and
     * its product with W2 [o,0] is an empty sum, 0.  So every computed
     * row is b2 of its expert, and rows marked -1 in slot_item are 0.
     * E = 2, M = 2, d = 3, o = 2; b2 = (0.5, -1) and (2, 3).  Outputs and
     * the gathered scratch are poisoned (NaN) by ophost: a kernel that
     * only adds b2 to rows it never set gives NaN. */
    const float b2[] = {0.5f, -1, 2, 3};
    const float buf[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    const int32_t si[] = {0, -1, -1, 1};
    const double all[] = {0.5, -1, 0.5, -1, 2, 3, 2, 3};
    const double some[] = {0.5, -1, 0, 0, 0, 0, 2, 3};
    struct smlp_tensor *in[6] = {
        ophost_f32(OPHOST_SHAPE(2, 2, 3), buf),
        ophost_f32(OPHOST_SHAPE(2, 0, 3), NULL),
        ophost_f32(OPHOST_SHAPE(2, 0), NULL),
        ophost_f32(OPHOST_SHAPE(2, 2, 0), NULL),
        ophost_f32(OPHOST_SHAPE(2, 2), b2),
        ophost_i32(OPHOST_SHAPE(2, 2), si),
    };
    struct ophost_attr relu[] = {OPHOST_STRING("activation", "relu"),
                                 OPHOST_END};
    struct smlp_tensor *out[1];

    run_ok("moe.expert_ffn", NULL, in, 5, out, 1);
    assert_shape(out[0], 3, (const int64_t[]){2, 2, 2});
    assert_f32(out[0], all, 8, 0.0, "out (all rows)");
    ck_assert_int_eq(ophost_stats(host)->macs, 0);
    free_all(out, 1);
    run_ok("moe.expert_ffn", relu, in, 6, out, 1);
    assert_f32(out[0], some, 8, 0.0, "out (slot_item)");
    free_all(out, 1);
    free_all(in, 6);
}
END_TEST

START_TEST(test_expert_ffn_more_threads_than_slots)
{
    /*
     * The forward workspace holds 4 worker slots (FFN_SLOTS, when that
     * exceeds the M·h floats floor, as here: one slot is at least M·h
     * floats); on more threads each worker's slot must come from
     * host->alloc.  E = 8 experts of M = 3 rows are 8 tasks (one row
     * block each); with round-robin dealing on n threads every worker id
     * in [0, n) runs a task whatever the timing, so for n = 5..8 a worker
     * >= 4 would use a slot past the workspace, which ophost's guard zone
     * reports ("wrote past its workspace").  n = 1..4 fit the workspace.
     * The outputs are checked against ffn_ref, with and without
     * slot_item (gathered slots hold X, H, Y; in place only H).
     */
    const int64_t e = 8, m = 3, d = 4, h = 5, o = 3;
    const int32_t si[] = {0,  1,  2,  -1, 3,  4,  5,  -1, -1, 6,  7,  8,
                          -1, -1, -1, 9,  10, 11, 12, -1, 13, 14, 15, 16};
    float *bv = rnd(e * m * d, 21), *w1 = rnd(e * h * d, 22);
    float *b1 = rnd(e * h, 23), *w2 = rnd(e * o * h, 24);
    float *b2 = rnd(e * o, 25);
    struct smlp_tensor *in[6] = {
        ophost_f32(OPHOST_SHAPE(e, m, d), bv),
        ophost_f32(OPHOST_SHAPE(e, h, d), w1),
        ophost_f32(OPHOST_SHAPE(e, h), b1),
        ophost_f32(OPHOST_SHAPE(e, o, h), w2),
        ophost_f32(OPHOST_SHAPE(e, o), b2),
        ophost_i32(OPHOST_SHAPE(e, m), si),
    };
    double *want_all, *want_si;
    struct smlp_tensor *out[1];
    char what[64];
    int n, g;

    want_all = ffn_ref(bv, e, m, d, w1, b1, h, w2, b2, o, NULL, 0);
    want_si = ffn_ref(bv, e, m, d, w1, b1, h, w2, b2, o, si, 0);
    ophost_set_round_robin(host, 1);
    for (n = 1; n <= 8; n++) {
        ophost_set_threads(host, n);
        for (g = 0; g < 2; g++) {
            snprintf(what, sizeof(what), "out (%d threads, %s)", n,
                     g ? "slot_item" : "all rows");
            run_ok("moe.expert_ffn", NULL, in, g ? 6 : 5, out, 1);
            assert_f32(out[0], g ? want_si : want_all, e * m * o, 1e-5,
                       what);
            free_all(out, 1);
        }
    }
    ophost_set_threads(host, 1);
    ophost_set_round_robin(host, 0);
    free(want_all);
    free(want_si);
    free(bv);
    free(w1);
    free(b1);
    free(w2);
    free(b2);
    free_all(in, 6);
}
END_TEST

/* ---- the four nodes together -------------------------------------------- */

/*
 * gate -> dispatch -> expert_ffn (with slot_item) -> combine on x with
 * router wg and expert weights ffn[0..4) = W1, b1, W2, b2; returns y.
 * gout (may be NULL) receives the gate's outputs, else they are freed.
 */
static struct smlp_tensor *
moe_layer(const char *gate, const struct ophost_attr *attrs,
          struct smlp_tensor *x, struct smlp_tensor *wg,
          struct smlp_tensor *const *ffn, struct smlp_tensor **gout)
{
    struct smlp_tensor *g[NGATE], *buf[1], *eo[1], *y[1];
    struct smlp_tensor *in[6];

    in[0] = x;
    in[1] = wg;
    run_ok(gate, attrs, in, 2, g, NGATE);
    in[1] = g[3];
    run_ok("moe.dispatch", NULL, in, 2, buf, 1);
    in[0] = buf[0];
    memcpy(in + 1, ffn, 4 * sizeof(*in));
    in[5] = g[3];
    run_ok("moe.expert_ffn", NULL, in, 6, eo, 1);
    in[0] = eo[0];
    in[1] = g[0];
    in[2] = g[1];
    in[3] = g[2];
    run_ok("moe.combine", NULL, in, 4, y, 1);
    free_all(buf, 1);
    free_all(eo, 1);
    if (gout != NULL)
        memcpy(gout, g, sizeof(g));
    else
        free_all(g, NGATE);
    return y[0];
}

START_TEST(test_layer_one_expert_is_dense_mlp)
{
    /* E = 1, k = 1, cf <= 0: every item goes to the one expert with
     * weight softmax([z]) = 1, so the layer is fc2(gelu(fc1 x)). */
    const int64_t n = 6, d = 4, h = 5;
    float *xv = rnd(n * d, 21), *wg = rnd(d, 22), *w1 = rnd(h * d, 23);
    float *b1 = rnd(h, 24), *w2 = rnd(d * h, 25), *b2 = rnd(d, 26);
    struct smlp_tensor *x = ophost_f32(OPHOST_SHAPE(n, d), xv);
    struct smlp_tensor *g = ophost_f32(OPHOST_SHAPE(1, d), wg);
    struct smlp_tensor *ffn[4] = {ophost_f32(OPHOST_SHAPE(1, h, d), w1),
                                  ophost_f32(OPHOST_SHAPE(1, h), b1),
                                  ophost_f32(OPHOST_SHAPE(1, d, h), w2),
                                  ophost_f32(OPHOST_SHAPE(1, d), b2)};
    struct ophost_attr a0[] = {OPHOST_FLOAT("capacity_factor", 0.0),
                               OPHOST_END};
    struct ophost_attr a1[] = {OPHOST_FLOAT("capacity_factor", -1.0),
                               OPHOST_INT("group_size", 3), OPHOST_END};
    struct smlp_tensor *y;
    double *want;

    /* The dense MLP is the expert reference on x as a [1, n, d] buffer. */
    want = ffn_ref(xv, 1, n, d, w1, b1, h, w2, b2, d, NULL, 0);
    y = moe_layer("moe.gate.topk", a0, x, g, ffn, NULL);
    assert_shape(y, 2, (const int64_t[]){n, d});
    assert_f32(y, want, n * d, 1e-5, "y");
    ophost_tensor_free(y);
    y = moe_layer("moe.gate.importance", a1, x, g, ffn, NULL);
    assert_f32(y, want, n * d, 1e-5, "y");
    ophost_tensor_free(y);
    ophost_set_training(host, 1); /* no noise: training routes alike */
    y = moe_layer("moe.gate.topk", a0, x, g, ffn, NULL);
    assert_f32(y, want, n * d, 1e-5, "y");
    ophost_tensor_free(y);
    free(want);
    free(xv);
    free(wg);
    free(w1);
    free(b1);
    free(w2);
    free(b2);
    ophost_tensor_free(x);
    ophost_tensor_free(g);
    free_all(ffn, 4);
}
END_TEST

START_TEST(test_layer_importance_equals_topk_without_drops)
{
    /* cf <= 0: nothing is dropped, so the priority order only permutes
     * the rows: same experts, weights and loads, and the same y.  The
     * expected y is also computed naively: Σ_j w_j·FFN_e(x). */
    const int64_t n = 8, d = 6, h = 5, e = 4, k = 2;
    float *xv = rnd(n * d, 31), *wgv = rnd(e * d, 32);
    float *w1 = rnd(e * h * d, 33), *b1 = rnd(e * h, 34);
    float *w2 = rnd(e * d * h, 35), *b2 = rnd(e * d, 36);
    struct smlp_tensor *x = ophost_f32(OPHOST_SHAPE(n, d), xv);
    struct smlp_tensor *g = ophost_f32(OPHOST_SHAPE(e, d), wgv);
    struct smlp_tensor *ffn[4] = {ophost_f32(OPHOST_SHAPE(e, h, d), w1),
                                  ophost_f32(OPHOST_SHAPE(e, h), b1),
                                  ophost_f32(OPHOST_SHAPE(e, d, h), w2),
                                  ophost_f32(OPHOST_SHAPE(e, d), b2)};
    struct ophost_attr attrs[] = {OPHOST_INT("k", k),
                                  OPHOST_INT("group_size", 4),
                                  OPHOST_FLOAT("capacity_factor", 0.0),
                                  OPHOST_STRING("normalize", "topk"),
                                  OPHOST_END};
    struct smlp_tensor *yt, *yi, *gt[NGATE], *gi[NGATE];
    double want[8 * 6];
    const int32_t *ex;
    const float *w;
    int64_t i, j, c;

    yt = moe_layer("moe.gate.topk", attrs, x, g, ffn, gt);
    yi = moe_layer("moe.gate.importance", attrs, x, g, ffn, gi);
    ck_assert(same_data(gt[0], gi[0]));
    ck_assert(same_data(gt[2], gi[2]));
    ck_assert(same_data(gt[5], gi[5]));
    ex = gt[0]->data;
    w = gt[2]->data;
    for (i = 0; i < n; i++) {
        for (c = 0; c < d; c++)
            want[i * d + c] = 0.0;
        for (j = 0; j < k; j++) {
            int32_t x_e = ex[i * k + j];
            double *f = ffn_ref(xv + i * d, 1, 1, d, w1 + x_e * h * d,
                                b1 + x_e * h, h, w2 + x_e * d * h,
                                b2 + x_e * d, d, NULL, 0);

            for (c = 0; c < d; c++)
                want[i * d + c] += w[i * k + j] * f[c];
            free(f);
        }
    }
    assert_f32(yt, want, n * d, 1e-5, "y topk");
    assert_f32(yi, want, n * d, 1e-5, "y importance");
    ophost_tensor_free(yt);
    ophost_tensor_free(yi);
    free_all(gt, NGATE);
    free_all(gi, NGATE);
    free(xv);
    free(wgv);
    free(w1);
    free(b1);
    free(w2);
    free(b2);
    ophost_tensor_free(x);
    ophost_tensor_free(g);
    free_all(ffn, 4);
}
END_TEST

/* ---- plugin ------------------------------------------------------------- */

START_TEST(test_plugin_registers_ops)
{
    static const char *const names[] = {
        "moe.gate.topk",   "moe.gate.importance", "moe.gate.per_image",
        "moe.gate.hash",   "moe.dispatch",        "moe.expert_ffn",
        "moe.combine",
    };
    const struct smlp_plugin_def *def = ophost_plugin(host);
    size_t i;

    ck_assert_str_eq(def->name, "moe");
    ck_assert_str_eq(def->signature, SMLP_BUILD_SIGNATURE);
    ck_assert_ptr_null(def->set_threads);
    ck_assert_int_eq(ophost_op_count(host), 7);
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const struct smlp_op_def *op = ophost_op(host, names[i]);

        ck_assert_msg(op != NULL, "%s not registered", names[i]);
        ck_assert_ptr_nonnull(op->doc);
        ck_assert_msg(strchr(op->doc, '\n') == NULL, "%s doc", names[i]);
        ck_assert_ptr_nonnull(op->attrs);
    }
    ck_assert_ptr_nonnull(
        strstr(ophost_op(host, "moe.gate.hash")->doc, "0x7feb352d"));
}
END_TEST

static Suite *
moe_suite(void)
{
    Suite *s = suite_create("moe");
    TCase *tc;

#define TC(name)                                                             \
    tc = tcase_create(name);                                                 \
    tcase_add_checked_fixture(tc, setup, teardown);                          \
    suite_add_tcase(s, tc)

    TC("dispatch");
    tcase_add_test(tc, test_dispatch_gather);
    tcase_add_test(tc, test_dispatch_out_of_range);
    tcase_add_test(tc, test_dispatch_errors);
    TC("combine");
    tcase_add_test(tc, test_combine_hand);
    tcase_add_test(tc, test_combine_out_of_range);
    tcase_add_test(tc, test_combine_errors);
    TC("expert_ffn");
    tcase_add_test(tc, test_expert_ffn_gelu_all_rows);
    tcase_add_test(tc, test_expert_ffn_gelu_slot_item);
    tcase_add_test(tc, test_expert_ffn_relu);
    tcase_add_test(tc, test_expert_ffn_relu_nan);
    tcase_add_test(tc, test_expert_ffn_slot_item_invalid);
    tcase_add_test(tc, test_expert_ffn_errors);
    tcase_add_test(tc, test_expert_ffn_hidden_0);
    tcase_add_test(tc, test_expert_ffn_more_threads_than_slots);
    TC("layer");
    tcase_add_test(tc, test_layer_one_expert_is_dense_mlp);
    tcase_add_test(tc, test_layer_importance_equals_topk_without_drops);
    TC("plugin");
    tcase_add_test(tc, test_plugin_registers_ops);
#undef TC
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(moe_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
