/*
 * check_op_core_edges.c - the core plugin's ops at their edges: GELU (exact
 * and tanh) far in its tails and at inf and NaN, softmax cross-entropy with
 * logits of +-1e4 and +-1e30, -inf, inf and NaN, one class and 2^20 classes,
 * argmax and mean with non-finite values, and linear, matmul, transpose,
 * patch_embed and mean with every dimension 1 and at the ranks' bounds.
 *
 * The fixture and the comparisons are tests/edgefx.h's, which says where the
 * expected values come from.
 */
#include "edgefx.h"

static void
setup(void)
{
    setup_plugin("core");
}

/*
 * GELU far in its tails, both forms.  GELU(x) = x for x >= 10 and -0 for
 * x <= -10 to double precision (x·Φ(x), Φ(-10) = 7.6e-24); the f32
 * kernel must not overflow in erf, tanh or x³ (x³ is inf from |x| ~ 7e12:
 * tanh(±inf) = ±1 is still right).  NaN stays NaN; +inf gives inf; -inf
 * gives NaN (0·-inf; PyTorch's float64 GELU gives NaN too: the docs
 * leave it open).
 */
START_TEST(test_edges_gelu_tails)
{
    static const char *const forms[2] = {"none", "tanh"};
    const float x[] = {10,    -10,    50,    -50,      1e4f,    -1e4f,
                       1e30f, -1e30f, 3e38f, -3e38f,   INFINITY, NAN,
                       -INFINITY};
    const double want[] = {10,    0,      50,    0,    1e4,      0,
                           F1E30, 0,      3e38f, 0,    INFINITY, NAN,
                           NAN};
    struct smlp_tensor *in[1], *out[1];
    int a;

    for (a = 0; a < 2; a++) {
        struct ophost_attr attrs[] = {
            OPHOST_STRING("approximate", forms[a]), OPHOST_END};

        in[0] = ophost_f32(OPHOST_SHAPE(13), x);
        run_ok("core.gelu", attrs, in, 1, out, 1);
        expect_t(out[0], want, 13, 1e-6, forms[a]);
        free_all(in, 1);
        free_all(out, 1);
    }
}
END_TEST

/*
 * GELU's derivative at ±10, ±50, ±1e4, ±3e38: 1 on the right, 0 on the
 * left (Φ(x) + x·φ(x); at -10 it is -7.7e-22), both forms: the backward's
 * exp and x³ must not overflow into NaN (PyTorch's f32 tanh form gives
 * NaN at ±1e30; smlp clamps, which the tails allow).
 */
START_TEST(test_edges_gelu_grad_tails)
{
    static const char *const forms[2] = {"none", "tanh"};
    const float x[] = {10, -10, 50, -50, 1e4f, -1e4f, 3e38f, -3e38f};
    const double want[] = {1, 0, 1, 0, 1, 0, 1, 0};
    struct smlp_tensor *in[1], *out[1], *gout[1], *gin[1];
    const int w1[1] = {1};
    int a;

    for (a = 0; a < 2; a++) {
        struct ophost_attr attrs[] = {
            OPHOST_STRING("approximate", forms[a]), OPHOST_END};

        in[0] = ophost_f32(OPHOST_SHAPE(8), x);
        run_ok("core.gelu", attrs, in, 1, out, 1);
        gout[0] = filled(OPHOST_SHAPE(8), 1.0f);
        backward_ok("core.gelu", attrs, in, 1, out, 1, gout, w1, gin);
        expect_t(gin[0], want, 8, 1e-6, forms[a]);
        free_all(in, 1);
        free_all(out, 1);
        free_all(gout, 1);
        free_all(gin, 1);
    }
}
END_TEST

/* softmax_cross_entropy of logits at (x, labels), its loss and d logits
 * for d loss = 1 into *loss and gin[0] (caller frees). */
static float
sce_both(const float *x, const int32_t *labels, int64_t n, int64_t k,
         double eps, struct smlp_tensor **gin)
{
    struct ophost_attr attrs[] = {OPHOST_FLOAT("label_smoothing", eps),
                                  OPHOST_END};
    struct smlp_tensor *in[2] = {ophost_f32(OPHOST_SHAPE(n, k), x),
                                 ophost_i32(OPHOST_SHAPE(n), labels)};
    struct smlp_tensor *out[1], *gout[1], *g2[2];
    const int want[2] = {1, 0};
    float loss;

    run_ok("core.softmax_cross_entropy", attrs, in, 2, out, 1);
    loss = scalar(out[0]);
    gout[0] = filled(0, NULL, 1.0f);
    backward_ok("core.softmax_cross_entropy", attrs, in, 2, out, 1, gout,
                want, g2);
    *gin = g2[0];
    free_all(in, 2);
    free_all(out, 1);
    free_all(gout, 1);
    return loss;
}

/*
 * Logits of ±1e30 and ±1e4: the log-sum-exp from the row maximum keeps
 * them finite.  Rows (1e30, -1e30) with labels 0 and 1 cost 0 and 2e30:
 * the mean is 1e30; d logits = (softmax - onehot)/N = (0, 0) and (0.5,
 * -0.5).  Row (1e4, -1e4, 0), label 2, costs 1e4 - 0 + log(1 + e^-1e4 +
 * e^-2e4) = 1e4; d = (1, 0, -1).  (PyTorch float64: the same.)
 */
START_TEST(test_edges_sce_huge_logits)
{
    const float x1[] = {1e30f, -1e30f, 1e30f, -1e30f};
    const int32_t l1[] = {0, 1};
    const double d1[] = {0, 0, 0.5, -0.5};
    const float x2[] = {1e4f, -1e4f, 0};
    const int32_t l2[] = {2};
    const double d2[] = {1, 0, -1};
    struct smlp_tensor *g;
    float loss;

    loss = sce_both(x1, l1, 2, 2, 0.0, &g);
    ck_assert_msg(fabs(loss - F1E30) <= 1e-6 * F1E30, "loss %g", loss);
    expect_t(g, d1, 4, 1e-7, "d logits");
    ophost_tensor_free(g);
    loss = sce_both(x2, l2, 1, 3, 0.0, &g);
    ck_assert_msg(fabs(loss - 1e4) <= 1e-6 * 1e4, "loss %g", loss);
    expect_t(g, d2, 3, 1e-7, "d logits");
    ophost_tensor_free(g);
}
END_TEST

/*
 * Non-finite logits.  A -inf logit off the label is a class of
 * probability 0: row (0, -inf, 0), label 0, costs log 2 with d = (-0.5,
 * 0, 0.5); with label smoothing 0.1 the smoothed term takes -log 0 of
 * that class: +inf (PyTorch float64: log 2, (-0.5, 0, 0.5), inf).  A +inf
 * logit gives NaN (inf - inf; PyTorch: NaN), and a NaN logit makes the
 * loss NaN while the other rows' gradients stay finite: rows are
 * independent.
 */
START_TEST(test_edges_sce_nonfinite)
{
    const float x1[] = {0, -INFINITY, 0};
    const int32_t l1[] = {0};
    const double d1[] = {-0.5, 0, 0.5};
    const float x2[] = {INFINITY, 0};
    const int32_t l2[] = {0};
    const float x3[] = {1, 2, 3, NAN, 0, 0};
    const int32_t l3[] = {2, 1};
    double p[3], z = exp(1.0) + exp(2.0) + exp(3.0), d3[6];
    struct smlp_tensor *g;
    float loss;
    int j;

    loss = sce_both(x1, l1, 1, 3, 0.0, &g);
    ck_assert_msg(fabs(loss - log(2.0)) <= 1e-6, "loss %g", loss);
    expect_t(g, d1, 3, 1e-7, "d logits");
    ophost_tensor_free(g);
    loss = sce_both(x1, l1, 1, 3, 0.1, &g);
    ck_assert_msg(isinf(loss) && loss > 0, "smoothed loss %g", loss);
    ophost_tensor_free(g);
    loss = sce_both(x2, l2, 1, 2, 0.0, &g);
    ck_assert_msg(isnan(loss), "+inf logit: loss %g", loss);
    ophost_tensor_free(g);
    /* Row 0: (softmax(1,2,3) - onehot(2)) / 2; row 1: NaN. */
    for (j = 0; j < 3; j++)
        p[j] = exp((double)(j + 1)) / z;
    for (j = 0; j < 3; j++)
        d3[j] = (p[j] - (j == 2)) / 2.0;
    for (j = 3; j < 6; j++)
        d3[j] = NAN;
    loss = sce_both(x3, l3, 2, 3, 0.0, &g);
    ck_assert_msg(isnan(loss), "NaN logit: loss %g", loss);
    expect_t(g, d3, 6, 1e-6, "d logits");
    ophost_tensor_free(g);
}
END_TEST

/*
 * One row of one class: p = 1, the loss is 0 and so is d logits.  One row
 * of 2^20 equal classes (the class count is not bounded below i32's
 * range; 2^20 is cheap): -log(2^-20) = 20·log 2, d = 2^-20 - onehot.
 */
START_TEST(test_edges_sce_one_class_and_many)
{
    const int64_t k = 1 << 20;
    const float x1[] = {-1e30f};
    const int32_t l1[] = {0};
    const double d1[] = {0};
    int32_t l2[] = {12345};
    float *x2 = calloc((size_t)k, sizeof(float));
    struct smlp_tensor *g;
    const float *gv;
    float loss;
    int64_t j;

    loss = sce_both(x1, l1, 1, 1, 0.0, &g);
    ck_assert_msg(loss == 0.0f, "loss %g", loss);
    expect_t(g, d1, 1, 0.0, "d logits");
    ophost_tensor_free(g);
    ck_assert_ptr_nonnull(x2);
    loss = sce_both(x2, l2, 1, k, 0.0, &g);
    ck_assert_msg(fabs(loss - 20.0 * log(2.0)) <= 1e-6 * 20.0, "loss %g",
                  loss);
    gv = g->data;
    for (j = 0; j < k; j++) {
        double w = 1.0 / (double)k - (j == l2[0]);

        ck_assert_msg(fabs(gv[j] - w) <= 1e-7 * (1.0 + fabs(w)),
                      "d logits[%lld] = %g, want %g", (long long)j,
                      (double)gv[j], w);
    }
    ophost_tensor_free(g);
    free(x2);
}
END_TEST

/*
 * argmax with NaN, inf and signed zeros.  OPS.md: ties -> lowest index;
 * the kernel also makes the first NaN win (as torch.argmax does, which
 * gives these same indices): (NaN,1,2) -> 0, (1,NaN,5) -> 1, (5,1,NaN)
 * -> 2, (-inf,-inf,-inf) -> 0, (1,inf,inf) -> 1, (-0,+0,-1) -> 0 (-0 ==
 * +0: a tie), (NaN,NaN,3) -> 0.
 */
START_TEST(test_edges_argmax_nonfinite)
{
    const float x[] = {NAN,       1,         2,         1,    NAN,
                       5,         5,         1,         NAN,  -INFINITY,
                       -INFINITY, -INFINITY, 1,         INFINITY,
                       INFINITY,  -0.0f,     0.0f,      -1,   NAN,
                       NAN,       3};
    const int32_t want[] = {0, 1, 2, 0, 1, 0, 0};
    struct smlp_tensor *in[1] = {ophost_f32(OPHOST_SHAPE(7, 3), x)};
    struct smlp_tensor *out[1];

    run_ok("core.argmax", NULL, in, 1, out, 1);
    expect_i(out[0], want, 7, "argmax");
    free_all(in, 1);
    free_all(out, 1);
}
END_TEST

/*
 * mean accumulates in double: the mean of three FLT_MAX is FLT_MAX (an
 * f32 sum would overflow to inf), of (1e30, -1e30, 0) is 0, of (inf,
 * -inf, 1) is NaN and of (inf, 1, 2) is inf.  Over an axis of size 1
 * the mean is x itself and the gradient dy.
 */
START_TEST(test_edges_mean_extremes)
{
    struct ophost_attr ax1[] = {OPHOST_INT("axis", 1), OPHOST_END};
    const float x[] = {FLT_MAX,  FLT_MAX,   FLT_MAX, 1e30f, -1e30f, 0,
                       INFINITY, -INFINITY, 1,       INFINITY, 1,   2};
    const double want[] = {FLT_MAX, 0, NAN, INFINITY};
    const float x1[] = {-3, 0.5f, 1e30f};
    const double want1[] = {-3, 0.5, F1E30};
    const float dy[] = {7, -2, 0.25f};
    const double dx1[] = {7, -2, 0.25};
    const int w1[1] = {1};
    struct smlp_tensor *in[1], *out[1], *gout[1], *gin[1];

    in[0] = ophost_f32(OPHOST_SHAPE(4, 3), x);
    run_ok("core.mean", ax1, in, 1, out, 1);
    expect_t(out[0], want, 4, 1e-7, "mean");
    free_all(in, 1);
    free_all(out, 1);
    in[0] = ophost_f32(OPHOST_SHAPE(3, 1), x1);
    run_ok("core.mean", ax1, in, 1, out, 1);
    expect_t(out[0], want1, 3, 0.0, "mean over size 1");
    gout[0] = ophost_f32(OPHOST_SHAPE(3), dy);
    backward_ok("core.mean", ax1, in, 1, out, 1, gout, w1, gin);
    expect_t(gin[0], dx1, 3, 0.0, "d x");
    free_all(in, 1);
    free_all(out, 1);
    free_all(gout, 1);
    free_all(gin, 1);
}
END_TEST

/*
 * Every dimension 1: linear [1,1]·[1,1] + [1] (3·-2 + 0.5 = -5.5, d x =
 * W·dy = -2·4, d W = x·dy = 3·4, d b = dy = 4), matmul [1,1,1]·[1,1,1]
 * (3·-2), transpose of [1,1,1] and patch_embed of a 1x1 image with P = 1
 * ([1,1,1,1] with W [1,1,1,1] and b [1]: 3·-2 + 0.5 = -5.5).
 */
START_TEST(test_edges_core_unit_dims)
{
    struct ophost_attr perm[] = {OPHOST_INTS("perm", 2, 0, 1), OPHOST_END};
    struct ophost_attr patch[] = {OPHOST_INT("patch", 1), OPHOST_END};
    const float three = 3, mtwo = -2, half = 0.5f, four = 4;
    const double y1[] = {-5.5}, mm[] = {-6}, tr[] = {3};
    const double dx[] = {-8}, dw[] = {12}, db[] = {4};
    const int all[3] = {1, 1, 1};
    struct smlp_tensor *in[3], *out[1], *gout[1], *gin[3];

    in[0] = ophost_f32(OPHOST_SHAPE(1, 1), &three);
    in[1] = ophost_f32(OPHOST_SHAPE(1, 1), &mtwo);
    in[2] = ophost_f32(OPHOST_SHAPE(1), &half);
    run_ok("core.linear", NULL, in, 3, out, 1);
    expect_t(out[0], y1, 1, 0.0, "linear");
    gout[0] = ophost_f32(OPHOST_SHAPE(1, 1), &four);
    backward_ok("core.linear", NULL, in, 3, out, 1, gout, all, gin);
    expect_t(gin[0], dx, 1, 0.0, "linear d x");
    expect_t(gin[1], dw, 1, 0.0, "linear d W");
    expect_t(gin[2], db, 1, 0.0, "linear d b");
    free_all(in, 3);
    free_all(out, 1);
    free_all(gout, 1);
    free_all(gin, 3);

    in[0] = ophost_f32(OPHOST_SHAPE(1, 1, 1), &three);
    in[1] = ophost_f32(OPHOST_SHAPE(1, 1, 1), &mtwo);
    run_ok("core.matmul", NULL, in, 2, out, 1);
    expect_t(out[0], mm, 1, 0.0, "matmul");
    free_all(in, 2);
    free_all(out, 1);

    in[0] = ophost_f32(OPHOST_SHAPE(1, 1, 1), &three);
    run_ok("core.transpose", perm, in, 1, out, 1);
    expect_t(out[0], tr, 1, 0.0, "transpose");
    free_all(in, 1);
    free_all(out, 1);

    in[0] = ophost_f32(OPHOST_SHAPE(1, 1, 1, 1), &three);
    in[1] = ophost_f32(OPHOST_SHAPE(1, 1, 1, 1), &mtwo);
    in[2] = ophost_f32(OPHOST_SHAPE(1), &half);
    run_ok("core.patch_embed", patch, in, 3, out, 1);
    ck_assert_int_eq(out[0]->rank, 3);
    expect_t(out[0], y1, 1, 0.0, "patch_embed");
    free_all(in, 3);
    free_all(out, 1);
}
END_TEST

/*
 * Rank at its bounds: a rank-8 tensor (SMLP_MAX_RANK) [2,1,3,1,1,2,1,2]
 * through transpose with the reversed perm (7..0) against a naive
 * index walk (y[i7..i0] = x[i0..i7]), its backward (d x = d y transposed
 * back, so d y = y gives d x = x), and the mean over axis 2 (size 3);
 * and a rank-0 scalar through gelu (GELU(2) = 2·Φ(2)) and scale.
 */
START_TEST(test_edges_core_rank_bounds)
{
    const int64_t sh[8] = {2, 1, 3, 1, 1, 2, 1, 2};
    struct ophost_attr perm[] = {OPHOST_INTS("perm", 7, 6, 5, 4, 3, 2, 1, 0),
                                 OPHOST_END};
    struct ophost_attr ax2[] = {OPHOST_INT("axis", 2), OPHOST_END};
    struct ophost_attr alpha[] = {OPHOST_FLOAT("alpha", -3.0), OPHOST_END};
    double yt[24], xm[8], xd[24], gelu2[1], sc[1];
    float x[24], two = 2;
    int64_t st[8], i, d, rest, o;
    const int w1[1] = {1};
    struct smlp_tensor *in[1], *out[1], *gout[1], *gin[1];

    for (i = 0; i < 24; i++) {
        x[i] = (float)(i * 7 % 24) - 11.5f;
        xd[i] = x[i];
    }
    st[7] = 1;
    for (d = 6; d >= 0; d--)
        st[d] = st[d + 1] * sh[d + 1];
    for (i = 0; i < 24; i++) {
        /* Output index i in the reversed shape, digit by digit: its
         * dim d (of size sh[7 - d]) is input dim 7 - d. */
        rest = i;
        o = 0;
        for (d = 7; d >= 0; d--) {
            o += rest % sh[7 - d] * st[7 - d];
            rest /= sh[7 - d];
        }
        yt[i] = x[o];
    }
    in[0] = ophost_f32(8, sh, x);
    run_ok("core.transpose", perm, in, 1, out, 1);
    ck_assert_int_eq(out[0]->rank, 8);
    for (d = 0; d < 8; d++)
        ck_assert_int_eq(out[0]->shape[d], sh[7 - d]);
    expect_t(out[0], yt, 24, 0.0, "transpose");
    gout[0] = ophost_tensor_like(out[0]);
    memcpy(gout[0]->data, out[0]->data, 24 * sizeof(float));
    backward_ok("core.transpose", perm, in, 1, out, 1, gout, w1, gin);
    expect_t(gin[0], xd, 24, 0.0, "transpose d x");
    free_all(out, 1);
    free_all(gout, 1);
    free_all(gin, 1);
    /* Mean over axis 2: x as [2, 3, 4] (dims 0, 2 and the rest). */
    for (i = 0; i < 8; i++)
        xm[i] = ((double)x[(i / 4) * 12 + i % 4] +
                 x[(i / 4) * 12 + 4 + i % 4] +
                 x[(i / 4) * 12 + 8 + i % 4]) / 3.0;
    run_ok("core.mean", ax2, in, 1, out, 1);
    ck_assert_int_eq(out[0]->rank, 7);
    expect_t(out[0], xm, 8, 1e-7, "mean");
    free_all(in, 1);
    free_all(out, 1);

    gelu2[0] = 2.0 * 0.5 * (1.0 + erf(2.0 / sqrt(2.0)));
    sc[0] = -6.0;
    in[0] = ophost_f32(0, NULL, &two);
    run_ok("core.gelu", NULL, in, 1, out, 1);
    ck_assert_int_eq(out[0]->rank, 0);
    expect_t(out[0], gelu2, 1, 1e-6, "gelu of a scalar");
    free_all(out, 1);
    run_ok("core.scale", alpha, in, 1, out, 1);
    expect_t(out[0], sc, 1, 0.0, "scale of a scalar");
    free_all(in, 1);
    free_all(out, 1);
}
END_TEST

static Suite *
edges_suite(void)
{
    Suite *s = suite_create("op_core_edges");
    TCase *tc;

    tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_edges_gelu_tails);
    tcase_add_test(tc, test_edges_gelu_grad_tails);
    tcase_add_test(tc, test_edges_sce_huge_logits);
    tcase_add_test(tc, test_edges_sce_nonfinite);
    tcase_add_test(tc, test_edges_sce_one_class_and_many);
    tcase_add_test(tc, test_edges_argmax_nonfinite);
    tcase_add_test(tc, test_edges_mean_extremes);
    tcase_add_test(tc, test_edges_core_unit_dims);
    tcase_add_test(tc, test_edges_core_rank_bounds);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return edges_run(edges_suite());
}
