/*
 * check_op_norm_edges.c - the norm plugin's ops at their edges: layer norm
 * on rows of equal values (variance 0: finite results and gradients), rows
 * of +-1e30, d = 1 and d = 2^20, NaN and inf in one row (the others
 * unaffected); batch norm on a constant column, at batch 2 and 1.
 *
 * The fixture and the comparisons are tests/edgefx.h's, which says where the
 * expected values come from.
 */
#include "edgefx.h"

static void
setup(void)
{
    setup_plugin("norm");
}

/* Naive double layer norm of one row, and its backward (eps inside the
 * root, biased variance, docs/ops.md): y, and dx, dgamma, dbeta added. */
static void
ln_row_ref(const float *x, const float *dy, const float *gamma,
           const float *beta, int64_t d, double eps, double *y, double *dx,
           double *dgamma, double *dbeta)
{
    double mean = 0.0, var = 0.0, rstd, c1 = 0.0, c2 = 0.0;
    int64_t j;

    for (j = 0; j < d; j++)
        mean += x[j];
    mean /= (double)d;
    for (j = 0; j < d; j++)
        var += (x[j] - mean) * (x[j] - mean);
    var /= (double)d;
    rstd = 1.0 / sqrt(var + eps);
    for (j = 0; j < d; j++) {
        double xh = (x[j] - mean) * rstd, g = (double)dy[j] * gamma[j];

        y[j] = xh * gamma[j] + beta[j];
        c1 += g / (double)d;
        c2 += g * xh / (double)d;
        dgamma[j] += dy[j] * xh;
        dbeta[j] += dy[j];
    }
    for (j = 0; j < d; j++)
        dx[j] = rstd * ((double)dy[j] * gamma[j] - c1 -
                        (x[j] - mean) * rstd * c2);
}

/*
 * Layer norm of rows whose variance is 0 or enormous, forward and
 * backward against the naive double loop: a row of equal values (3.7)
 * and a row of equal huge values (1e30) give y = beta exactly (x - mean
 * is 0: the double mean of equal f32 values is exact) and a finite dx =
 * rstd·(g - mean g) with rstd = 1/sqrt(eps) = 1000; a row (1e30, -1e30,
 * 1e30, -1e30, 0) has mean 0 and variance 0.8e60 (fine in double):
 * x-hat = ±sqrt(5/4), 0.
 */
START_TEST(test_edges_layer_norm_degenerate_rows)
{
    const int64_t d = 5;
    float x[15] = {3.7f,  3.7f,   3.7f,  3.7f,   3.7f,  1e30f, 1e30f, 1e30f,
                   1e30f, 1e30f, 1e30f, -1e30f, 1e30f, -1e30f, 0};
    const float gamma[] = {1, 2, -3, 0.5f, 4}, beta[] = {0.5f, -1, 0, 2, 3};
    const float dy[] = {1,    -2,   0.5f, 3,     -1,   0.25f, 1,   -1,
                        2,    0,    -3,   1.5f,  0.5f, -0.5f, 2};
    const int all[3] = {1, 1, 1};
    double y[15], dx[15], dg[5] = {0}, db[5] = {0};
    struct smlp_tensor *in[3], *out[1], *gout[1], *gin[3];
    int64_t r;

    for (r = 0; r < 3; r++)
        ln_row_ref(x + r * d, dy + r * d, gamma, beta, d, 1e-6, y + r * d,
                   dx + r * d, dg, db);
    in[0] = ophost_f32(OPHOST_SHAPE(3, 5), x);
    in[1] = ophost_f32(OPHOST_SHAPE(5), gamma);
    in[2] = ophost_f32(OPHOST_SHAPE(5), beta);
    run_ok("norm.layer_norm", NULL, in, 3, out, 1);
    expect_t(out[0], y, 15, 1e-6, "y");
    for (r = 0; r < 10; r++)
        ck_assert_msg(((float *)out[0]->data)[r] == beta[r % 5],
                      "constant row: y[%lld] = %g is not beta", (long long)r,
                      (double)((float *)out[0]->data)[r]);
    gout[0] = ophost_f32(OPHOST_SHAPE(3, 5), dy);
    backward_ok("norm.layer_norm", NULL, in, 3, out, 1, gout, all, gin);
    expect_t(gin[0], dx, 15, 1e-6, "d x");
    expect_t(gin[1], dg, 5, 1e-6, "d gamma");
    expect_t(gin[2], db, 5, 1e-6, "d beta");
    free_all(in, 3);
    free_all(out, 1);
    free_all(gout, 1);
    free_all(gin, 3);
}
END_TEST

/*
 * Layer norm over d = 1 (every row is constant: y = beta, dx = 0, d gamma
 * = 0, d beta = Σ dy) and over one row of d = 2^20 equal values (y =
 * beta), the widest row cheap to run.
 */
START_TEST(test_edges_layer_norm_unit_and_wide)
{
    const int64_t wide = 1 << 20;
    const float x[] = {5, -1e30f, 0}, g1 = 3, b1 = -0.5f;
    const float dy[] = {1, 2, -4};
    const double y[] = {-0.5, -0.5, -0.5}, dx[] = {0, 0, 0}, dg[] = {0};
    const double db[] = {-1};
    const int all[3] = {1, 1, 1};
    struct smlp_tensor *in[3], *out[1], *gout[1], *gin[3];
    const float *yv;
    int64_t j;

    in[0] = ophost_f32(OPHOST_SHAPE(3, 1), x);
    in[1] = ophost_f32(OPHOST_SHAPE(1), &g1);
    in[2] = ophost_f32(OPHOST_SHAPE(1), &b1);
    run_ok("norm.layer_norm", NULL, in, 3, out, 1);
    expect_t(out[0], y, 3, 0.0, "y");
    gout[0] = ophost_f32(OPHOST_SHAPE(3, 1), dy);
    backward_ok("norm.layer_norm", NULL, in, 3, out, 1, gout, all, gin);
    expect_t(gin[0], dx, 3, 0.0, "d x");
    expect_t(gin[1], dg, 1, 0.0, "d gamma");
    expect_t(gin[2], db, 1, 0.0, "d beta");
    free_all(in, 3);
    free_all(out, 1);
    free_all(gout, 1);
    free_all(gin, 3);

    in[0] = filled(OPHOST_SHAPE(1, wide), -2.5f);
    in[1] = filled(OPHOST_SHAPE(wide), 2.0f);
    in[2] = filled(OPHOST_SHAPE(wide), 0.75f);
    run_ok("norm.layer_norm", NULL, in, 3, out, 1);
    yv = out[0]->data;
    for (j = 0; j < wide; j++)
        ck_assert_msg(yv[j] == 0.75f, "y[%lld] = %g", (long long)j,
                      (double)yv[j]);
    free_all(in, 3);
    free_all(out, 1);
}
END_TEST

/*
 * NaN and inf in one row of a layer norm: that row's y is NaN (its mean
 * is), the other row's is untouched; backward: d x of the clean row and d
 * beta (Σ dy, no x in it) stay finite, d gamma sums x-hat over every row
 * and is NaN.
 */
START_TEST(test_edges_layer_norm_nonfinite)
{
    const float x[] = {1, NAN, 2, 3, 1, 2, 3, 4, INFINITY, 0, 1, 2};
    const float gamma[] = {1, 1, 1, 1}, beta[] = {0, 0, 0, 0};
    const float dy[] = {1, 1, 1, 1, 1, -1, 2, 0, 1, 1, 1, 1};
    const int all[3] = {1, 1, 1};
    double y[12], dx[12], dg[4] = {0}, db[4] = {0}, want_db[4] = {3, 1, 4, 2};
    struct smlp_tensor *in[3], *out[1], *gout[1], *gin[3];
    int64_t j;

    ln_row_ref(x + 4, dy + 4, gamma, beta, 4, 1e-6, y + 4, dx + 4, dg, db);
    for (j = 0; j < 4; j++) {
        y[j] = y[8 + j] = NAN;
        dx[j] = dx[8 + j] = NAN;
        dg[j] = NAN;
    }
    in[0] = ophost_f32(OPHOST_SHAPE(3, 4), x);
    in[1] = ophost_f32(OPHOST_SHAPE(4), gamma);
    in[2] = ophost_f32(OPHOST_SHAPE(4), beta);
    run_ok("norm.layer_norm", NULL, in, 3, out, 1);
    expect_t(out[0], y, 12, 1e-6, "y");
    gout[0] = ophost_f32(OPHOST_SHAPE(3, 4), dy);
    backward_ok("norm.layer_norm", NULL, in, 3, out, 1, gout, all, gin);
    expect_f((float *)gin[0]->data + 4, dx + 4, 4, 1e-6, "d x, clean row");
    expect_t(gin[1], dg, 4, 1e-6, "d gamma");
    expect_t(gin[2], want_db, 4, 1e-7, "d beta");
    free_all(in, 3);
    free_all(out, 1);
    free_all(gout, 1);
    free_all(gin, 3);
}
END_TEST

/* Naive double batch norm backward of one column in training (batch
 * statistics): dx = gamma·rstd·(dy - mean dy - x-hat·mean(dy·x-hat)). */
static void
bn_col_ref(const float *x, const float *dy, int64_t n, int64_t ld,
           double gamma, double eps, double *dx)
{
    double mean = 0.0, var = 0.0, rstd, m1 = 0.0, m2 = 0.0;
    int64_t r;

    for (r = 0; r < n; r++)
        mean += x[r * ld];
    mean /= (double)n;
    for (r = 0; r < n; r++)
        var += (x[r * ld] - mean) * (x[r * ld] - mean);
    var /= (double)n;
    rstd = 1.0 / sqrt(var + eps);
    for (r = 0; r < n; r++) {
        m1 += dy[r * ld] / (double)n;
        m2 += dy[r * ld] * (x[r * ld] - mean) * rstd / (double)n;
    }
    for (r = 0; r < n; r++)
        dx[r * ld] = gamma * rstd *
                     (dy[r * ld] - m1 - (x[r * ld] - mean) * rstd * m2);
}

/*
 * Batch norm in training on a column of equal values (variance 0: y =
 * beta, d x = gamma·rstd·(dy - mean dy), rstd = 1/sqrt(1e-5), finite), a
 * column (1e18, -1e18, 1e18, -1e18) (mean 0, variance 1e36: y = ±gamma +
 * beta; the unbiased 4/3·1e36 still fits in f32) and an ordinary one
 * (1, 2, 3, 4: mean 2.5, variance 1.25, unbiased 5/3).  Running stats by
 * PyTorch's rule with momentum 0.1: running = 0.9·running + 0.1·batch.
 */
START_TEST(test_edges_batch_norm_constant_column)
{
    const float x[] = {2.5f, 1e18f, 1, 2.5f, -1e18f, 2,
                       2.5f, 1e18f, 3, 2.5f, -1e18f, 4};
    const float gamma[] = {1.5f, 2, -1}, beta[] = {0.25f, -1, 3};
    const float rm[] = {0.5f, 0, 1}, rv[] = {2, 1, 1};
    const float dy[] = {1, 0.5f, -1, -2, 1, 0.5f, 0.25f, 3, 2, 4, -1, 1};
    const int want[5] = {1, 1, 1, 0, 0};
    double y[12], dx[12], s = 1.0 / sqrt(1.25 + 1e-5);
    const double want_rm[] = {0.7, 0.0, 1.15};
    const double want_rv[] = {1.8, 0.9 + 0.1 * 4.0 / 3.0 * (double)1e18f *
                                             (double)1e18f,
                              0.9 + 0.1 * 5.0 / 3.0};
    struct smlp_tensor *in[5], *out[1], *gout[1], *gin[5];
    int64_t r, j;

    for (r = 0; r < 4; r++) {
        y[r * 3] = 0.25;
        y[r * 3 + 1] = (r % 2 == 0 ? 2.0 : -2.0) - 1.0;
        y[r * 3 + 2] = ((double)(r + 1) - 2.5) * s * -1.0 + 3.0;
    }
    for (j = 0; j < 3; j++)
        bn_col_ref(x + j, dy + j, 4, 3, gamma[j], 1e-5, dx + j);
    in[0] = ophost_f32(OPHOST_SHAPE(4, 3), x);
    in[1] = ophost_f32(OPHOST_SHAPE(3), gamma);
    in[2] = ophost_f32(OPHOST_SHAPE(3), beta);
    in[3] = ophost_f32(OPHOST_SHAPE(3), rm);
    in[4] = ophost_f32(OPHOST_SHAPE(3), rv);
    ophost_set_training(host, 1);
    run_ok("norm.batch_norm", NULL, in, 5, out, 1);
    expect_t(out[0], y, 12, 1e-6, "y");
    expect_t(in[3], want_rm, 3, 1e-6, "running_mean");
    expect_t(in[4], want_rv, 3, 1e-6, "running_var");
    gout[0] = ophost_f32(OPHOST_SHAPE(4, 3), dy);
    backward_ok("norm.batch_norm", NULL, in, 5, out, 1, gout, want, gin);
    expect_t(gin[0], dx, 12, 1e-5, "d x");
    for (r = 0; r < 4; r++)
        ck_assert(fabs(dx[r * 3]) > 1.0); /* rstd = 316: not all 0 */
    free_all(in, 5);
    free_all(out, 1);
    free_all(gout, 1);
    free_all(gin, 5);
}
END_TEST

/*
 * Batch norm at its smallest batches.  Training with N = 2 ((1, 3):
 * mean 2, biased variance 1, y = ∓1/sqrt(1 + 1e-5), running_var =
 * 0.9·1 + 0.1·2) and with N = 1 (refused: docs/ops.md) ; inference with N
 * = 1 uses the running stats: (3 - 1)/sqrt(4 + 1e-5), and a running
 * variance of 0 still gives the finite (-1 - 1)/sqrt(1e-5).
 */
START_TEST(test_edges_batch_norm_small_batches)
{
    struct ophost_attr no_affine[] = {OPHOST_INT("affine", 0), OPHOST_END};
    const float x2[] = {1, 3}, x1[] = {3, -1};
    const float rm1[] = {1}, rv1[] = {1}, rm2[] = {1, 1}, rv2[] = {4, 0};
    const double y2[] = {-1.0 / sqrt(1.0 + 1e-5), 1.0 / sqrt(1.0 + 1e-5)};
    const double rm2w[] = {0.9 + 0.2}, rv2w[] = {0.9 + 0.2};
    const double y1[] = {2.0 / sqrt(4.0 + 1e-5), -2.0 / sqrt(1e-5)};
    struct smlp_tensor *in[3], *out[1];
    const char *msg;
    int rc;

    in[0] = ophost_f32(OPHOST_SHAPE(2, 1), x2);
    in[1] = ophost_f32(OPHOST_SHAPE(1), rm1);
    in[2] = ophost_f32(OPHOST_SHAPE(1), rv1);
    ophost_set_training(host, 1);
    run_ok("norm.batch_norm", no_affine, in, 3, out, 1);
    expect_t(out[0], y2, 2, 1e-6, "y, N = 2");
    expect_t(in[1], rm2w, 1, 1e-6, "running_mean");
    expect_t(in[2], rv2w, 1, 1e-6, "running_var");
    free_all(in, 3);
    free_all(out, 1);

    in[0] = ophost_f32(OPHOST_SHAPE(1, 2), x1);
    in[1] = ophost_f32(OPHOST_SHAPE(2), rm2);
    in[2] = ophost_f32(OPHOST_SHAPE(2), rv2);
    out[0] = NULL;
    rc = ophost_run(host, "norm.batch_norm", no_affine, in, 3, out, 1,
                    &msg);
    ck_assert_msg(rc < 0 && strstr(msg, "more than one row") != NULL,
                  "training on one row: %s", msg);
    ck_assert_ptr_null(out[0]);
    ophost_set_training(host, 0);
    run_ok("norm.batch_norm", no_affine, in, 3, out, 1);
    expect_t(out[0], y1, 2, 1e-6, "y, inference, N = 1");
    free_all(in, 3);
    free_all(out, 1);
}
END_TEST

static Suite *
edges_suite(void)
{
    Suite *s = suite_create("op_norm_edges");
    TCase *tc;

    tc = tcase_create("norm");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_edges_layer_norm_degenerate_rows);
    tcase_add_test(tc, test_edges_layer_norm_unit_and_wide);
    tcase_add_test(tc, test_edges_layer_norm_nonfinite);
    tcase_add_test(tc, test_edges_batch_norm_constant_column);
    tcase_add_test(tc, test_edges_batch_norm_small_batches);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return edges_run(edges_suite());
}
