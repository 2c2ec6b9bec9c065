/*
 * check_op_moe_aux.c - the gates' auxiliary losses (vmoe importance
 * and load, switch) and their seeded routing noise.
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

/* ---- aux ---------------------------------------------------------------- */

/* Items [1,0], [1,0] (group 0) and [0,0], [0,0] (group 1). */
static const float aux_x[] = {1, 0, 1, 0, 0, 0, 0, 0};

START_TEST(test_aux_vmoe_importance)
{
    /* noise 0: aux = w·mean_g ½·CV²(Imp_g).  Group 0: Imp = [2σ1,
     * 2 − 2σ1], mean 1, population variance (2σ1 − 1)² = tanh²(½), so
     * CV² = 0.21355226703407257.  Group 1: Imp = [1, 1], CV² = 0.
     * aux_weight 1: ½·(0.21355 + 0)/2 = 0.05338806675851814; default
     * 0.01: 0.0005338806675851814. */
    struct ophost_attr w1[] = {OPHOST_INT("group_size", 2),
                               OPHOST_FLOAT("aux_weight", 1.0), OPHOST_END};
    struct ophost_attr dflt[] = {OPHOST_INT("group_size", 2), OPHOST_END};
    const struct gate_want w = {.m = 2};

    ophost_set_training(host, 1);
    ck_assert_double_eq_tol(gate_eye("moe.gate.topk", w1, aux_x, 4, 2, 1, &w),
                            0.05338806675851814, 1e-7);
    ck_assert_double_eq_tol(
        gate_eye("moe.gate.topk", dflt, aux_x, 4, 2, 1, &w),
        0.0005338806675851814, 1e-9);
    ck_assert_double_eq_tol(
        gate_eye("moe.gate.importance", dflt, aux_x, 4, 2, 1, &w),
        0.0005338806675851814, 1e-9);
}
END_TEST

START_TEST(test_aux_switch)
{
    /* Group 0: both first choices e0, f = [1, 0], P = [σ1, 1 − σ1]:
     * E·Σ f·P = 2σ1.  Group 1: p = [½, ½] (tie -> e0), f = [1, 0]: 1.
     * Mean: (2σ1 + 1)/2 = 1.2310585786300048 (aux_weight 1). */
    struct ophost_attr attrs[] = {OPHOST_INT("group_size", 2),
                                  OPHOST_STRING("aux", "switch"),
                                  OPHOST_FLOAT("aux_weight", 1.0),
                                  OPHOST_END};
    const struct gate_want w = {.m = 2};

    ophost_set_training(host, 1);
    ck_assert_double_eq_tol(
        gate_eye("moe.gate.topk", attrs, aux_x, 4, 2, 1, &w),
        1.2310585786300048, 1e-6);
}
END_TEST

START_TEST(test_aux_switch_clean_p_under_noise)
{
    /* With noise the first choices (f) come from the noisy logits and P
     * from the clean softmax (MODELS.md §0.5).  E = 2, k = 1, one group
     * of 4, aux_weight 1: aux = 2·Σ_e f_e·P_e, with P_e = mean of σ over
     * the clean logits x (Wg = identity) and f_e read from the expert
     * output.  The noisy P (from the weight output: the chosen expert's
     * noisy probability) gives another value, so the check tells them
     * apart (f must not be uniform: then both are 1). */
    static const float x[] = {2, 0, 1.5f, 0, 1.8f, 0, 0, 2.5f};
    struct ophost_attr attrs[] = {
        OPHOST_INT("group_size", 4), OPHOST_STRING("aux", "switch"),
        OPHOST_FLOAT("aux_weight", 1.0), OPHOST_FLOAT("noise_std", 1.0),
        OPHOST_END};
    struct smlp_tensor *in[2] = {ophost_f32(OPHOST_SHAPE(4, 2), x), eye(2)};
    struct smlp_tensor *out[NGATE];
    double f[2] = {0, 0}, pc[2] = {0, 0}, pn[2] = {0, 0}, want, noisy;
    const int32_t *ex;
    const float *wt;
    int i;

    ophost_set_training(host, 1);
    ophost_set_seed(host, 5, 2);
    run_ok("moe.gate.topk", attrs, in, 2, out, NGATE);
    ex = (const int32_t *)out[0]->data;
    wt = (const float *)out[2]->data;
    for (i = 0; i < 4; i++) {
        double p0 = 1.0 / (1.0 + exp((double)x[2 * i + 1] - x[2 * i]));

        ck_assert(ex[i] == 0 || ex[i] == 1);
        f[ex[i]] += 0.25;
        pc[0] += p0 / 4.0;
        pc[1] += (1.0 - p0) / 4.0;
        pn[ex[i]] += (double)wt[i] / 4.0;
        pn[1 - ex[i]] += (1.0 - (double)wt[i]) / 4.0;
    }
    want = 2.0 * (f[0] * pc[0] + f[1] * pc[1]);
    noisy = 2.0 * (f[0] * pn[0] + f[1] * pn[1]);
    ck_assert_msg(fabs(noisy - want) > 1e-3,
                  "the draw does not separate noisy %.6f from clean %.6f",
                  noisy, want);
    ck_assert_double_eq_tol(*(const float *)out[4]->data, want, 1e-6);
    free_all(in, 2);
    free_all(out, NGATE);
}
END_TEST

START_TEST(test_aux_zero_in_inference_and_none)
{
    struct ophost_attr vmoe[] = {OPHOST_INT("group_size", 2),
                                 OPHOST_FLOAT("aux_weight", 1.0),
                                 OPHOST_FLOAT("noise_std", 1.0), OPHOST_END};
    struct ophost_attr sw[] = {OPHOST_INT("group_size", 2),
                               OPHOST_STRING("aux", "switch"),
                               OPHOST_FLOAT("aux_weight", 1.0), OPHOST_END};
    struct ophost_attr none[] = {OPHOST_INT("group_size", 2),
                                 OPHOST_STRING("aux", "none"),
                                 OPHOST_FLOAT("aux_weight", 1.0),
                                 OPHOST_END};
    const struct gate_want w = {.m = 2};

    ophost_set_training(host, 0);
    ck_assert_double_eq(gate_eye("moe.gate.topk", vmoe, aux_x, 4, 2, 1, &w),
                        0.0);
    ck_assert_double_eq(gate_eye("moe.gate.topk", sw, aux_x, 4, 2, 1, &w),
                        0.0);
    ophost_set_training(host, 1);
    ck_assert_double_eq(gate_eye("moe.gate.topk", none, aux_x, 4, 2, 1, &w),
                        0.0);
}
END_TEST

START_TEST(test_aux_vmoe_load_term)
{
    /* With noise the load term is added: ½·(CV²(Imp) + CV²(Load)) >=
     * ½·CV²(Imp) of the clean softmax (the importance term does not see
     * the noise), finite, and the same on a rerun. */
    struct ophost_attr noisy[] = {OPHOST_INT("group_size", 2),
                                  OPHOST_FLOAT("aux_weight", 1.0),
                                  OPHOST_FLOAT("noise_std", 1.0),
                                  OPHOST_END};
    const struct gate_want w = {.m = 2};
    double a, b;

    ophost_set_training(host, 1);
    ophost_set_seed(host, 11, 5);
    a = gate_eye("moe.gate.topk", noisy, aux_x, 4, 2, 1, &w);
    b = gate_eye("moe.gate.topk", noisy, aux_x, 4, 2, 1, &w);
    ck_assert(isfinite(a));
    ck_assert_double_eq(a, b);
    ck_assert_double_ge(a, 0.05338806675851814 - 1e-7);
}
END_TEST

START_TEST(test_aux_superclass_one_image)
{
    /* The superclass term is a mean over images even when there is one:
     * N = T = 2, items [3,0], [-1,0], image logits = their mean [1,0],
     * label 1: CE = log(1 + e) − 0 = 1.3132616875182228; aux 'none',
     * aux_weight 0.5: 0.6566308437591114. */
    const float x[] = {3, 0, -1, 0};
    const int32_t labels[] = {1};
    struct smlp_tensor *in[3] = {ophost_f32(OPHOST_SHAPE(2, 2), x), eye(2),
                                 ophost_i32(OPHOST_SHAPE(1), labels)};
    struct smlp_tensor *out[NGATE];
    struct ophost_attr attrs[] = {OPHOST_INT("items_per_image", 2),
                                  OPHOST_STRING("aux", "none"),
                                  OPHOST_FLOAT("aux_weight", 0.5),
                                  OPHOST_END};

    ophost_set_training(host, 1);
    run_ok("moe.gate.per_image", attrs, in, 3, out, NGATE);
    assert_f32(out[4], (const double[]){0.6566308437591114}, 1, 1e-6,
               "aux");
    free_all(out, NGATE);
    free_all(in, 3);
}
END_TEST

START_TEST(test_aux_superclass_large_logits)
{
    /* The cross-entropy subtracts the largest logit before exp, so a gap
     * of 1000 (e^1000 overflows a double) stays finite.  Image 0 logits
     * [1000, 0], label 0: CE = log(1 + e^-1000) = 0 in double; image 1
     * logits [0, 1000], label 0: CE = 1000 + log(1 + e^-1000) = 1000.
     * aux 'none', aux_weight 1: mean 500 (exact in f32). */
    const float x[] = {1000, 0, 1000, 0, 0, 1000, 0, 1000};
    const int32_t labels[] = {0, 0};
    struct smlp_tensor *in[3] = {ophost_f32(OPHOST_SHAPE(4, 2), x), eye(2),
                                 ophost_i32(OPHOST_SHAPE(2), labels)};
    struct smlp_tensor *out[NGATE];
    struct ophost_attr attrs[] = {OPHOST_INT("items_per_image", 2),
                                  OPHOST_STRING("aux", "none"),
                                  OPHOST_FLOAT("aux_weight", 1.0),
                                  OPHOST_END};

    ophost_set_training(host, 1);
    run_ok("moe.gate.per_image", attrs, in, 3, out, NGATE);
    assert_f32(out[4], (const double[]){500.0}, 1, 0.0, "aux");
    free_all(out, NGATE);
    free_all(in, 3);
}
END_TEST

/* ---- noise -------------------------------------------------------------- */

/* Runs the topk gate (k 2, normalize none) on fixed random x [8,4],
 * Wg [4,4]; out receives the six outputs. */
static void
noise_run(const struct ophost_attr *attrs, struct smlp_tensor **out)
{
    float *xv = rnd(32, 5), *wv = rnd(16, 6);
    struct smlp_tensor *in[2] = {ophost_f32(OPHOST_SHAPE(8, 4), xv),
                                 ophost_f32(OPHOST_SHAPE(4, 4), wv)};

    run_ok("moe.gate.topk", attrs, in, 2, out, NGATE);
    free_all(in, 2);
    free(xv);
    free(wv);
}

START_TEST(test_noise_deterministic)
{
    struct ophost_attr attrs[] = {OPHOST_INT("k", 2),
                                  OPHOST_FLOAT("capacity_factor", 0.0),
                                  OPHOST_FLOAT("noise_std", 1.0), OPHOST_END};
    struct ophost_attr clean[] = {OPHOST_INT("k", 2),
                                  OPHOST_FLOAT("capacity_factor", 0.0),
                                  OPHOST_END};
    struct smlp_tensor *a[NGATE], *b[NGATE], *c[NGATE], *d[NGATE];
    struct smlp_tensor *z[NGATE];
    int i;

    ophost_set_training(host, 1);
    ophost_set_seed(host, 7, 3);
    noise_run(attrs, a);
    noise_run(attrs, b);
    for (i = 0; i < NGATE; i++)
        ck_assert_msg(same_data(a[i], b[i]), "output %d differs", i);
    /* Another step, another seed: other noise, so other weights. */
    ophost_set_seed(host, 7, 4);
    noise_run(attrs, c);
    ck_assert(!same_data(a[2], c[2]));
    ophost_set_seed(host, 8, 3);
    noise_run(attrs, d);
    ck_assert(!same_data(a[2], d[2]));
    /* Noise changes the weights against the clean router. */
    noise_run(clean, z);
    ck_assert(!same_data(a[2], z[2]));
    free_all(a, NGATE);
    free_all(b, NGATE);
    free_all(c, NGATE);
    free_all(d, NGATE);
    free_all(z, NGATE);
}
END_TEST

START_TEST(test_noise_off_in_inference)
{
    /* Inference ignores noise_std: weights are the clean softmax of
     * x·Wgᵀ (computed here in double) and equal a noise-free run. */
    struct ophost_attr attrs[] = {OPHOST_INT("k", 2),
                                  OPHOST_FLOAT("capacity_factor", 0.0),
                                  OPHOST_FLOAT("noise_std", 1.0), OPHOST_END};
    struct ophost_attr clean[] = {OPHOST_INT("k", 2),
                                  OPHOST_FLOAT("capacity_factor", 0.0),
                                  OPHOST_END};
    float *xv = rnd(32, 5), *wv = rnd(16, 6);
    struct smlp_tensor *a[NGATE], *z[NGATE];
    const int32_t *ex;
    double want[16];
    int n, e, j, c;

    ophost_set_training(host, 0);
    ophost_set_seed(host, 7, 3);
    noise_run(attrs, a);
    noise_run(clean, z);
    ck_assert(same_data(a[2], z[2]));
    ck_assert(same_data(a[0], z[0]));
    ex = a[0]->data;
    for (n = 0; n < 8; n++) {
        double l[4], max = -1e300, sum = 0.0;

        for (e = 0; e < 4; e++) {
            l[e] = 0.0;
            for (c = 0; c < 4; c++)
                l[e] += (double)xv[n * 4 + c] * wv[e * 4 + c];
            max = l[e] > max ? l[e] : max;
        }
        for (e = 0; e < 4; e++)
            sum += exp(l[e] - max);
        for (j = 0; j < 2; j++)
            want[n * 2 + j] = exp(l[ex[n * 2 + j]] - max) / sum;
        ck_assert_double_ge(want[n * 2], want[n * 2 + 1]);
    }
    assert_f32(a[2], want, 16, 1e-6, "weight");
    free_all(a, NGATE);
    free_all(z, NGATE);
    free(xv);
    free(wv);
}
END_TEST

START_TEST(test_noise_scale)
{
    /* Zero logits, E = 2, noise_std 2: each logit gets N(0, σ²), σ =
     * noise_std/E = 1.  The kept p is σ(|n0 − n1|), so logit(weight)² has
     * mean E[(n0 − n1)²] = 2σ² = 2 (4000 items: standard error 0.045),
     * and expert 0 wins half the time (standard error 0.008). */
    const int64_t n = 4000;
    struct smlp_tensor *in[2] = {ophost_f32(OPHOST_SHAPE(n, 2), NULL),
                                 eye(2)};
    struct smlp_tensor *out[NGATE];
    struct ophost_attr attrs[] = {OPHOST_FLOAT("capacity_factor", 0.0),
                                  OPHOST_FLOAT("noise_std", 2.0), OPHOST_END};
    const float *w;
    const int32_t *ex;
    double sq = 0.0, zeros = 0.0;
    int64_t i;

    ophost_set_training(host, 1);
    ophost_set_seed(host, 42, 1);
    run_ok("moe.gate.topk", attrs, in, 2, out, NGATE);
    w = out[2]->data;
    ex = out[0]->data;
    for (i = 0; i < n; i++) {
        double l = log(w[i] / (1.0 - w[i]));

        sq += l * l;
        zeros += ex[i] == 0;
    }
    ck_assert_double_eq_tol(sq / (double)n, 2.0, 0.25);
    ck_assert_double_eq_tol(zeros / (double)n, 0.5, 0.05);
    free_all(in, 2);
    free_all(out, NGATE);
}
END_TEST

START_TEST(test_noise_importance_priority_is_noisy)
{
    /* The importance gate ranks items by the routing softmax, i.e. the
     * *noisy* one in training (docs/ops.md), not the clean one.  E = 2,
     * k = 1, one group of N = 4 items whose clean logits (Wg = identity)
     * all prefer e0 with close confidences, noise_std 1 (σ = 0.5).  A run
     * with capacity_factor 0 (nothing dropped, normalize none) shows each
     * item's choice and its noisy p (the weight); the same draw (seed,
     * step, node) with capacity_factor 0.5 gives cap = ceil(4·0.5/2) = 1,
     * so each expert must keep the item with the largest noisy p among
     * those that chose it (ties -> lower index), and drop the others.
     * Over steps 1..8 at least one draw must keep another item than the
     * clean softmax would rank first, or the check proves nothing. */
    static const float x[] = {1.0f, 0, 1.1f, 0, 0.9f, 0, 1.2f, 0};
    struct ophost_attr all[] = {OPHOST_FLOAT("capacity_factor", 0.0),
                                OPHOST_FLOAT("noise_std", 1.0), OPHOST_END};
    struct ophost_attr cap1[] = {OPHOST_FLOAT("capacity_factor", 0.5),
                                 OPHOST_FLOAT("noise_std", 1.0), OPHOST_END};
    struct smlp_tensor *in[2] = {ophost_f32(OPHOST_SHAPE(4, 2), x), eye(2)};
    struct smlp_tensor *a[NGATE], *b[NGATE];
    int step, i, separated = 0;

    ophost_set_training(host, 1);
    for (step = 1; step <= 8; step++) {
        const int32_t *ex, *ex1, *sl;
        const float *pn;
        int best[2] = {-1, -1}, clean[2] = {-1, -1};
        double cp[4];

        ophost_set_seed(host, 3, (uint64_t)step);
        run_ok("moe.gate.importance", all, in, 2, a, NGATE);
        run_ok("moe.gate.importance", cap1, in, 2, b, NGATE);
        ex = a[0]->data;
        pn = a[2]->data;
        ex1 = b[0]->data;
        sl = b[1]->data;
        for (i = 0; i < 4; i++) {
            int e = ex[i];

            /* Clean p of the chosen expert: σ(±(x0 − x1)). */
            cp[i] = 1.0 / (1.0 + exp((e == 0 ? -1.0 : 1.0) *
                                     ((double)x[2 * i] - x[2 * i + 1])));
            ck_assert_int_eq(ex1[i], e);
            if (best[e] < 0 || pn[i] > pn[best[e]])
                best[e] = i;
            if (clean[e] < 0 || cp[i] > cp[clean[e]])
                clean[e] = i;
        }
        for (i = 0; i < 4; i++)
            ck_assert_msg(sl[i] == (i == best[ex[i]] ? 0 : -1),
                          "step %d item %d (expert %d, noisy p %.6f): "
                          "slot %d", step, i, ex[i], (double)pn[i], sl[i]);
        separated += best[0] != clean[0] || best[1] != clean[1];
        free_all(a, NGATE);
        free_all(b, NGATE);
    }
    ck_assert_msg(separated > 0, "no draw separates noisy from clean order");
    free_all(in, 2);
}
END_TEST

static Suite *
moe_aux_suite(void)
{
    Suite *s = suite_create("moe_aux");
    TCase *tc;

#define TC(name)                                                             \
    tc = tcase_create(name);                                                 \
    tcase_add_checked_fixture(tc, setup, teardown);                          \
    suite_add_tcase(s, tc)

    TC("aux");
    tcase_add_test(tc, test_aux_vmoe_importance);
    tcase_add_test(tc, test_aux_switch);
    tcase_add_test(tc, test_aux_switch_clean_p_under_noise);
    tcase_add_test(tc, test_aux_zero_in_inference_and_none);
    tcase_add_test(tc, test_aux_vmoe_load_term);
    tcase_add_test(tc, test_aux_superclass_one_image);
    tcase_add_test(tc, test_aux_superclass_large_logits);
    TC("noise");
    tcase_add_test(tc, test_noise_deterministic);
    tcase_add_test(tc, test_noise_off_in_inference);
    tcase_add_test(tc, test_noise_scale);
    tcase_add_test(tc, test_noise_importance_priority_is_noisy);
#undef TC
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(moe_aux_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
