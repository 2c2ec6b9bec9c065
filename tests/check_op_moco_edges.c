/*
 * check_op_moco_edges.c - the moco plugin's loss at its edges: zero rows
 * (normalising 0), identical queries and keys, rows scaled by 1e30 and by
 * 1e-30 (below the normalisation's floor) against a double-precision
 * reference, and NaN and inf rows.
 *
 * The fixture and the comparisons are tests/edgefx.h's, which says where the
 * expected values come from.
 */
#include "edgefx.h"

static void
setup(void)
{
    setup_plugin("moco");
}

/* Deterministic values in [-1, 1) (a 64-bit LCG). */
static void
fill(float *v, int64_t n, uint64_t seed)
{
    int64_t i;

    for (i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        v[i] = (float)((double)(seed >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
}

/*
 * Naive double ctr(q, k) (docs/ops.md: rows divided by max(‖x‖, 1e-12),
 * as F.normalize) and d ctr / d q for d ctr = 1 into dq [n, d]:
 * d s_ij = 2/n·(p_ij − [i = j]), d q-hat = d s·k-hat, d q = (d q-hat −
 * q-hat·<q-hat, d q-hat>)/‖q‖, or d q-hat/1e-12 below the floor.
 */
static double
ctr_ref(const float *q, const float *k, int64_t n, int64_t d, double tau,
        double *dq)
{
    double *qh = malloc((size_t)(n * d) * sizeof(double));
    double *kh = malloc((size_t)(n * d) * sizeof(double));
    double *qn = malloc((size_t)n * sizeof(double));
    double *s = malloc((size_t)n * sizeof(double));
    double loss = 0.0;
    int64_t i, j, c;

    ck_assert(qh != NULL && kh != NULL && qn != NULL && s != NULL);
    for (i = 0; i < n; i++) {
        double a = 0.0, b = 0.0;

        for (c = 0; c < d; c++) {
            a += (double)q[i * d + c] * q[i * d + c];
            b += (double)k[i * d + c] * k[i * d + c];
        }
        qn[i] = sqrt(a) > 1e-12 ? sqrt(a) : 1e-12;
        b = sqrt(b) > 1e-12 ? sqrt(b) : 1e-12;
        for (c = 0; c < d; c++) {
            qh[i * d + c] = q[i * d + c] / qn[i];
            kh[i * d + c] = k[i * d + c] / b;
        }
    }
    for (i = 0; i < n; i++) {
        double max = -HUGE_VAL, sum = 0.0, dot = 0.0;

        for (j = 0; j < n; j++) {
            s[j] = 0.0;
            for (c = 0; c < d; c++)
                s[j] += qh[i * d + c] * kh[j * d + c];
            max = s[j] > max ? s[j] : max;
        }
        for (j = 0; j < n; j++)
            sum += exp((s[j] - max) / tau);
        loss += 2.0 * tau / (double)n *
                ((max - s[i]) / tau + log(sum));
        for (c = 0; c < d; c++)
            dq[i * d + c] = 0.0;
        for (j = 0; j < n; j++) {
            double ds = 2.0 / (double)n *
                        (exp((s[j] - max) / tau) / sum - (i == j));

            for (c = 0; c < d; c++)
                dq[i * d + c] += ds * kh[j * d + c];
        }
        if (qn[i] > 1e-12) {
            for (c = 0; c < d; c++)
                dot += qh[i * d + c] * dq[i * d + c];
            for (c = 0; c < d; c++)
                dq[i * d + c] -= qh[i * d + c] * dot;
        }
        for (c = 0; c < d; c++)
            dq[i * d + c] /= qn[i];
    }
    free(qh);
    free(kh);
    free(qn);
    free(s);
    return loss;
}

/*
 * moco.loss (tau 0.2) and its backward (d loss = 1) on q1, q2, k1, k2
 * [n, d]: returns the loss; d q1, d q2 into g[0], g[1] (caller frees).
 */
static float
moco_both(const float *const *src, int64_t n, int64_t d,
          struct smlp_tensor **g)
{
    struct ophost_attr attrs[] = {OPHOST_FLOAT("tau", 0.2), OPHOST_END};
    struct smlp_tensor *in[4], *out[1], *gout[1], *gin[4];
    const int want[4] = {1, 1, 0, 0};
    float loss;
    int i;

    for (i = 0; i < 4; i++)
        in[i] = ophost_f32(OPHOST_SHAPE(n, d), src[i]);
    run_ok("moco.loss", attrs, in, 4, out, 1);
    loss = scalar(out[0]);
    gout[0] = filled(0, NULL, 1.0f);
    backward_ok("moco.loss", attrs, in, 4, out, 1, gout, want, gin);
    g[0] = gin[0];
    g[1] = gin[1];
    free_all(in, 4);
    free_all(out, 1);
    free_all(gout, 1);
    return loss;
}

/* Checks d q1, d q2 against ctr_ref normwise: max |got − want| <= tol ·
 * max(max |want|, 1e-30). */
static void
expect_moco_grads(struct smlp_tensor *const *g, const double *const *want,
                  int64_t nd, double tol)
{
    int t;
    int64_t i;

    for (t = 0; t < 2; t++) {
        const float *v = g[t]->data;
        double big = 1e-30, err = 0.0;

        for (i = 0; i < nd; i++)
            big = fabs(want[t][i]) > big ? fabs(want[t][i]) : big;
        for (i = 0; i < nd; i++) {
            double e = fabs(v[i] - want[t][i]);

            err = isnan(e) || e > err ? (isnan(e) ? INFINITY : e) : err;
        }
        ck_assert_msg(err <= tol * big, "d q%d: error %g, max |grad| %g",
                      t + 1, err, big);
    }
}

/*
 * Zero rows and identical rows.  Every input 0: every x-hat is 0 (the
 * 1e-12 floor of docs/ops.md keeps 0/0 away), all similarities 0, each
 * ctr = 2τ·log n: loss 4τ·log 3; d q = d q-hat/1e-12 = 0 (d q-hat = d s·
 * k-hat = 0).  Zero keys under random queries: the same.  All rows of all
 * inputs equal (1, 2, 3): every similarity 1, loss 4τ·log 3 again, and
 * d q-hat_i = 2/n·Σ_j (1/n − [i = j])·k-hat = 0.
 */
START_TEST(test_edges_moco_zero_and_identical_rows)
{
    const int64_t n = 3, d = 3;
    float zero[9] = {0}, q1[9], q2[9], same[9];
    const double want = 4.0 * 0.2 * log(3.0), zeros[9] = {0};
    const float *const all0[4] = {zero, zero, zero, zero};
    const float *const keys0[4] = {q1, q2, zero, zero};
    const float *const ident[4] = {same, same, same, same};
    struct smlp_tensor *g[2];
    float loss;
    int i;

    fill(q1, 9, 1);
    fill(q2, 9, 2);
    for (i = 0; i < 9; i++)
        same[i] = (float)(i % 3 + 1);
    loss = moco_both(all0, n, d, g);
    ck_assert_msg(fabs(loss - want) <= 1e-6, "zeros: loss %g", loss);
    expect_t(g[0], zeros, 9, 0.0, "zeros: d q1");
    expect_t(g[1], zeros, 9, 0.0, "zeros: d q2");
    free_all(g, 2);
    loss = moco_both(keys0, n, d, g);
    ck_assert_msg(fabs(loss - want) <= 1e-6, "zero keys: loss %g", loss);
    expect_t(g[0], zeros, 9, 0.0, "zero keys: d q1");
    expect_t(g[1], zeros, 9, 0.0, "zero keys: d q2");
    free_all(g, 2);
    loss = moco_both(ident, n, d, g);
    ck_assert_msg(fabs(loss - want) <= 1e-6, "identical: loss %g", loss);
    expect_t(g[0], zeros, 9, 1e-6, "identical: d q1");
    expect_t(g[1], zeros, 9, 1e-6, "identical: d q2");
    free_all(g, 2);
}
END_TEST

/*
 * Rows of huge and tiny norm against the double reference.  Scaling
 * every row by 1e30 or by 1e38/‖row‖∞ (entries up to 1e38, norms past
 * FLT_MAX/2 before normalisation) leaves the loss unchanged and scales d
 * q by 1/scale; rows scaled by 1e-30 fall below the 1e-12 floor, so
 * x-hat = x/1e-12 is no unit vector and the similarities are ~1e-36:
 * the loss tends to 4τ·log n and d q = d q-hat/1e-12.
 */
START_TEST(test_edges_moco_extreme_norms)
{
    const int64_t n = 5, d = 8, nd = 40;
    const double scales[3] = {1e30, 0.0, 1e-30};
    float base[4][40], x[4][40];
    const float *const src[4] = {x[0], x[1], x[2], x[3]};
    double dq1[40], dq2[40], want;
    const double *const wg[2] = {dq1, dq2};
    struct smlp_tensor *g[2];
    float loss;
    int t, i, sc;

    for (t = 0; t < 4; t++)
        fill(base[t], nd, 10 + t);
    for (sc = 0; sc < 3; sc++) {
        for (t = 0; t < 4; t++)
            for (i = 0; i < nd; i++) {
                /* scales[1]: every row's largest entry becomes 1e38. */
                double f = scales[sc];

                if (f == 0.0) {
                    double m = 0.0;
                    int c;

                    for (c = 0; c < d; c++)
                        m = fmax(m, fabs(base[t][i / d * d + c]));
                    f = 1e38 / m;
                }
                x[t][i] = (float)(base[t][i] * f);
            }
        want = ctr_ref(x[0], x[3], n, d, 0.2, dq1) +
               ctr_ref(x[1], x[2], n, d, 0.2, dq2);
        loss = moco_both(src, n, d, g);
        ck_assert_msg(fabs(loss - want) <= 1e-6 * (1.0 + want),
                      "scale %d: loss %.9g, want %.9g", sc, loss, want);
        expect_moco_grads(g, wg, nd, 1e-5);
        free_all(g, 2);
    }
}
END_TEST

/*
 * NaN or inf in one input row: the loss is NaN (the row's norm is NaN
 * or inf, its x-hat NaN), no crash, and the backward still runs.
 */
START_TEST(test_edges_moco_nonfinite)
{
    const int64_t n = 3, d = 2;
    float q1[6], q2[6], k1[6], k2[6];
    const float *const src[4] = {q1, q2, k1, k2};
    struct smlp_tensor *g[2];
    float loss;

    fill(q1, 6, 3);
    fill(q2, 6, 4);
    fill(k1, 6, 5);
    fill(k2, 6, 6);
    q1[3] = NAN;
    loss = moco_both(src, n, d, g);
    ck_assert_msg(isnan(loss), "NaN query: loss %g", loss);
    free_all(g, 2);
    q1[3] = 0.5f;
    k1[0] = INFINITY;
    loss = moco_both(src, n, d, g);
    ck_assert_msg(isnan(loss), "inf key: loss %g", loss);
    free_all(g, 2);
}
END_TEST

static Suite *
edges_suite(void)
{
    Suite *s = suite_create("op_moco_edges");
    TCase *tc;

    tc = tcase_create("moco");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_edges_moco_zero_and_identical_rows);
    tcase_add_test(tc, test_edges_moco_extreme_norms);
    tcase_add_test(tc, test_edges_moco_nonfinite);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return edges_run(edges_suite());
}
