/*
 * check_op_moco.c - the ops of the `moco` plugin, one TCase per op.
 *
 * moco.loss is checked against values and gradients computed
 * independently by tests/reference/moco_ref.py (PyTorch in float64, from
 * the same float32 inputs; pasted below: torch is never needed to run the
 * tests), against central finite differences (tests/gradcheck.h), for zero
 * key gradients, thread-count bit-identity (also on a batch that splits
 * into several intra-op tasks, there against the formulas in double),
 * rows below the norm floor and a small tau (logits past exp's range),
 * also against the formulas in double, and shape errors.
 * moco.momentum_update is checked against values worked out by hand in
 * the comments.  Tolerances are stated where they are used.  The plugin
 * is loaded from $SMLP_TEST_BUILDDIR/plugins/.libs/moco.so through
 * tests/ophost.c.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ophost.h"
#include "gradcheck.h"

/* ---- reference values (printed by tests/reference/moco_ref.py) -------- */

/* case A: n=4 D=3 tau=0.2 */
#define MOCO_A_LOSS 3.960877586722908
static const double moco_a_dq1[] = {
    -0.15803528753479384, -0.078956424523512814, 3.0609621941957155e-05,
    0.0083003331067860731, -0.25009182735609198, -0.10014491435768778,
    0.037297125350107097, 0.18451349858075738, -0.14655899717405763,
    -0.82986146030509755, 0.83631483340991664, 0.28092272852812072,
};
static const double moco_a_dq2[] = {
    -0.1083463423347103, -0.061050405459175755, -0.16939674779388592,
    -0.34467330578017824, -0.11300534478426971, 0.10734807335690055,
    0.27646472169107006, -0.10072596719845742, -0.12787299128645915,
    0.0143400336731524, 0.023900056121920657, 0.14337062176203161,
};
/* case B: n=3 D=5 tau=1 */
#define MOCO_B_LOSS 2.3490501553424812
static const double moco_b_dq1[] = {
    0.017415231798212524, -0.03490599013790889, 0.042421895431943309,
    0.0004240442131081823, 0.048317150415028841, 0.032100828684210853,
    0.00087638919842114582, 0.0093766738228099888, 0.017866667709215453,
    0.10540566520351125, 0.036986864265592757, 0.036675868915520868,
    -0.019133959260130506, 0.0079340829532872272, 0.014207497079940332,
};
static const double moco_b_dq2[] = {
    0.053790879646485545, -0.034308747555446377, -0.0034951507512642269,
    0.060473566741788061, 0.047510621511352727, -0.0013687341602282577,
    0.095313964194121387, -0.043298382847556847, 0.02675719423494255,
    -0.032373426698468225, 0.063999977636007691, -0.017461683681824838,
    -0.058609821223179787, 0.10520509534892722, -0.1640265108339094,
};
/* case ONE: n=1 D=2 tau=0.2 */
#define MOCO_ONE_LOSS 0
static const double moco_one_dq1[] = {
    0, 0,
};
static const double moco_one_dq2[] = {
    0, 0,
};
/* The inputs of moco_ref.py's cases, the same literals. */
static const float a_q1[] = {0.5f,  -1.0f, 2.0f, 1.5f, 0.25f, -0.5f,
                             -2.0f, 1.0f,  0.75f, 0.1f, 0.2f, -0.3f};
static const float a_q2[] = {1.0f, 1.0f,  -1.0f, -0.5f, 2.0f,  0.5f,
                             0.3f, -0.7f, 1.2f,  2.5f,  -1.5f, 0.0f};
static const float a_k1[] = {0.4f,  -0.8f, 1.9f, 1.2f, 0.5f, -0.2f,
                             -1.7f, 0.8f,  1.0f, 0.3f, 0.1f, -0.6f};
static const float a_k2[] = {0.9f, 1.2f,  -0.8f, -0.6f, 1.8f,  0.9f,
                             0.1f, -0.5f, 1.5f,  2.2f,  -1.2f, 0.4f};
static const float b_q1[] = {1.0f, 0.0f,  -1.0f, 2.0f, 0.5f,
                             -0.3f, 0.8f, 0.8f,  -1.1f, 0.2f,
                             0.6f, -0.9f, 0.4f,  0.0f, 1.3f};
static const float b_q2[] = {0.2f, 0.4f,  -0.6f, 0.8f,  -1.0f,
                             1.5f, -0.5f, 0.25f, 0.75f, -1.25f,
                             -0.1f, 0.9f, -0.8f, 0.7f,  0.6f};
static const float b_k1[] = {0.3f, 0.5f,  -0.4f, 0.6f, -0.9f,
                             1.2f, -0.6f, 0.1f,  0.9f, -1.0f,
                             0.0f, 1.1f,  -0.5f, 0.5f, 0.8f};
static const float b_k2[] = {0.9f, 0.2f, -0.8f, 1.7f, 0.6f,
                             -0.2f, 0.5f, 1.0f, -0.9f, 0.0f,
                             0.4f, -0.7f, 0.6f, 0.2f, 1.1f};

static struct ophost *host;

static void
setup(void)
{
    char err[1024];

    host = ophost_create("moco", err, sizeof(err));
    ck_assert_msg(host != NULL, "%s", err);
}

static void
teardown(void)
{
    ophost_destroy(host);
    host = NULL;
    ck_assert_int_eq(ophost_live_allocs(), 0);
}

/* ---- helpers ---------------------------------------------------------- */

/* n deterministic values in [-scale, scale). */
static void
fill(float *v, int64_t n, uint64_t seed, double scale)
{
    int64_t i;

    for (i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        v[i] = (float)(scale * ((double)(seed >> 11) / 9007199254740992.0 *
                                    2.0 -
                                1.0));
    }
}

static void
free_all(struct smlp_tensor **t, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        ophost_tensor_free(t[i]);
        t[i] = NULL;
    }
}

static void
poison(struct smlp_tensor *t)
{
    float *v = t->data;
    int64_t i, n = smlp_tensor_numel(t);

    for (i = 0; i < n; i++)
        v[i] = NAN;
}

/* q1, q2, k1, k2 [n,d] from the four arrays (random when NULL). */
static void
loss_inputs(struct smlp_tensor **in, int64_t n, int64_t d,
            const float *const src[4], uint64_t seed)
{
    int i;

    for (i = 0; i < 4; i++) {
        in[i] = ophost_f32(OPHOST_SHAPE(n, d), src ? src[i] : NULL);
        ck_assert_ptr_nonnull(in[i]);
        if (src == NULL)
            fill(in[i]->data, n * d, seed + (uint64_t)i, 1.0);
    }
}

/* The loss of in[0..4) with attrs. */
static double
loss_of(const struct ophost_attr *attrs, struct smlp_tensor *const *in)
{
    struct smlp_tensor *out[1] = {NULL};
    const char *msg;
    double v;
    int rc = ophost_run(host, "moco.loss", attrs, in, 4, out, 1, &msg);

    ck_assert_msg(rc == SMLP_OK, "moco.loss failed (%s): %s",
                  ophost_status_name(rc), msg);
    ck_assert_int_eq(out[0]->dtype, SMLP_DTYPE_F32);
    ck_assert_int_eq(out[0]->rank, 0);
    v = *(const float *)out[0]->data;
    ophost_tensor_free(out[0]);
    return v;
}

/* Forward, then the backward with d loss = g (gout NULL when !has_g) into
 * the gradients gi[i] for want[i] (poisoned first).  Returns the loss;
 * the caller frees gi. */
static double
loss_backward(const struct ophost_attr *attrs,
              struct smlp_tensor *const *in, int has_g, float g,
              const int want[4], struct smlp_tensor **gi)
{
    struct smlp_tensor *out[1] = {NULL}, *go[1] = {NULL};
    const char *msg;
    double v;
    int rc, i;

    rc = ophost_run(host, "moco.loss", attrs, in, 4, out, 1, &msg);
    ck_assert_msg(rc == SMLP_OK, "moco.loss failed: %s", msg);
    v = *(const float *)out[0]->data;
    if (has_g) {
        go[0] = ophost_tensor_like(out[0]);
        *(float *)go[0]->data = g;
    }
    for (i = 0; i < 4; i++) {
        gi[i] = want[i] ? ophost_tensor_like(in[i]) : NULL;
        if (gi[i] != NULL)
            poison(gi[i]);
    }
    rc = ophost_backward(host, "moco.loss", attrs, in, 4, out, 1, go, gi,
                         &msg);
    ck_assert_msg(rc == SMLP_OK, "moco.loss backward failed (%s): %s",
                  ophost_status_name(rc), msg);
    ophost_tensor_free(go[0]);
    ophost_tensor_free(out[0]);
    return v;
}

/* |got - want| <= tol·max_i |want_i| for every element (normwise). */
static void
assert_grad(const struct smlp_tensor *t, const double *want, double tol,
            const char *what)
{
    const float *v = t->data;
    int64_t i, n = smlp_tensor_numel(t);
    double scale = 0.0;

    for (i = 0; i < n; i++)
        if (fabs(want[i]) > scale)
            scale = fabs(want[i]);
    scale = scale > 1e-3 ? scale : 1e-3;
    for (i = 0; i < n; i++)
        ck_assert_msg(fabs(v[i] - want[i]) <= tol * scale,
                      "%s[%lld]: got %.9g, want %.9g (tol %g x %g)", what,
                      (long long)i, (double)v[i], want[i], tol, scale);
}

static void
assert_zero(const struct smlp_tensor *t, const char *what)
{
    const float *v = t->data;
    int64_t i, n = smlp_tensor_numel(t);

    for (i = 0; i < n; i++)
        ck_assert_msg(v[i] == 0.0f, "%s[%lld] = %g, want 0", what,
                      (long long)i, (double)v[i]);
}

static void
infer_fails(const char *op, const struct ophost_attr *attrs,
            struct smlp_tensor *const *in, int n_in, const char *want)
{
    struct smlp_tensor *out[1] = {NULL};
    const char *msg;
    int rc = ophost_infer(host, op, attrs, in, n_in, out, 1, &msg);

    ck_assert_msg(rc < 0, "%s: infer succeeded, expected '%s'", op, want);
    ck_assert_ptr_null(out[0]);
    ck_assert_msg(strstr(msg, want) != NULL, "%s: message '%s' lacks '%s'",
                  op, msg, want);
}

/* ---- moco.loss ---------------------------------------------------------- */

/*
 * Against PyTorch (float64 from the same f32 inputs).  The kernel forms
 * the similarities with an f32 sgemm (relative rounding ~1e-7, amplified
 * by 1/τ = 5 in the logits) and rounds the loss to f32, so the loss must
 * agree to 1e-6 relative and the gradients to 1e-5 of their largest
 * element (observed: 5e-8 and 2e-7).
 */
static void
check_reference(const float *const src[4], int64_t n, int64_t d, double tau,
                double want, const double *dq1, const double *dq2)
{
    struct ophost_attr attrs[] = {OPHOST_FLOAT("tau", tau), OPHOST_END};
    struct smlp_tensor *in[4], *gi[4];
    const int all[4] = {1, 1, 0, 0};
    double got;

    loss_inputs(in, n, d, src, 0);
    got = loss_of(attrs, in);
    ck_assert_msg(fabs(got - want) <= 1e-6 * (1.0 + fabs(want)),
                  "loss: got %.9g, want %.9g", got, want);
    loss_backward(attrs, in, 1, 1.0f, all, gi);
    assert_grad(gi[0], dq1, 1e-5, "d q1");
    assert_grad(gi[1], dq2, 1e-5, "d q2");
    free_all(gi, 4);
    free_all(in, 4);
}

START_TEST(test_loss_reference_tau02)
{
    const float *const src[4] = {a_q1, a_q2, a_k1, a_k2};

    check_reference(src, 4, 3, 0.2, MOCO_A_LOSS, moco_a_dq1, moco_a_dq2);
}
END_TEST

START_TEST(test_loss_reference_tau1)
{
    const float *const src[4] = {b_q1, b_q2, b_k1, b_k2};

    check_reference(src, 3, 5, 1.0, MOCO_B_LOSS, moco_b_dq1, moco_b_dq2);
}
END_TEST

START_TEST(test_loss_default_tau)
{
    /* No attribute: τ = 0.2, case A's value. */
    const float *const src[4] = {a_q1, a_q2, a_k1, a_k2};
    struct smlp_tensor *in[4];
    double got;

    loss_inputs(in, 4, 3, src, 0);
    got = loss_of(NULL, in);
    ck_assert_msg(fabs(got - MOCO_A_LOSS) <= 1e-6 * (1.0 + MOCO_A_LOSS),
                  "loss: got %.9g, want %.9g", got, MOCO_A_LOSS);
    ck_assert_int_eq(ophost_stats(host)->macs, 2 * 4 * 4 * 3);
    free_all(in, 4);
}
END_TEST

START_TEST(test_loss_single_row)
{
    /* One row is one class: CE = 0 whatever the inputs (moco_ref.py case
     * ONE), and so are the gradients. */
    const float q1[] = {1, 2}, q2[] = {-1, 0.5f}, k1[] = {0.3f, 0.3f};
    const float k2[] = {2, -1};
    const float *const src[4] = {q1, q2, k1, k2};
    struct smlp_tensor *in[4], *gi[4];
    const int all[4] = {1, 1, 1, 1};
    double got;

    loss_inputs(in, 1, 2, src, 0);
    got = loss_backward(NULL, in, 1, 1.0f, all, gi);
    ck_assert_msg(fabs(got - MOCO_ONE_LOSS) <= 1e-7, "loss %g", got);
    assert_grad(gi[0], moco_one_dq1, 1e-6, "d q1");
    assert_grad(gi[1], moco_one_dq2, 1e-6, "d q2");
    free_all(gi, 4);
    free_all(in, 4);
}
END_TEST

START_TEST(test_loss_scale_invariant)
{
    /* Rows are normalised: scaling any row by a positive factor leaves
     * the loss unchanged (up to f32 rounding of the normalised rows,
     * ~1e-7 relative). */
    const float *const src[4] = {a_q1, a_q2, a_k1, a_k2};
    struct smlp_tensor *in[4];
    double base, scaled;
    int i, r, c;

    loss_inputs(in, 4, 3, src, 0);
    base = loss_of(NULL, in);
    for (i = 0; i < 4; i++)
        for (r = 0; r < 4; r++)
            for (c = 0; c < 3; c++)
                ((float *)in[i]->data)[r * 3 + c] *= (float)(r + i + 1) *
                                                     2.5f;
    scaled = loss_of(NULL, in);
    ck_assert_msg(fabs(scaled - base) <= 1e-6 * (1.0 + base),
                  "scaled %.9g, base %.9g", scaled, base);
    free_all(in, 4);
}
END_TEST

START_TEST(test_loss_fd)
{
    /* Smooth in q (the rows are far from 0: no clamp).  FD of the f32
     * loss at eps 1e-2: truncation O(h²) plus f32 rounding of the loss
     * (~1e-7·|L|/(2h) = ~2e-5 absolute) against gradients of at most
     * ~0.08 here.  Observed worst normwise error 4.3e-4; tol 5e-3.
     * k1 and k2 are not checked here (the op's gradient to them is zero
     * by definition, not the derivative: test_loss_keys_get_zero). */
    struct smlp_tensor *in[4];
    const int check[4] = {1, 1, 0, 0};
    struct ophost_attr attrs[] = {OPHOST_FLOAT("tau", 0.2), OPHOST_END};
    struct gc_spec s = {.op = "moco.loss", .attrs = attrs, .inputs = in,
                        .n_in = 4, .n_out = 1, .check = check, .tol = 5e-3,
                        .seed = 7};
    struct gc_result res;
    char msg[1024];

    loss_inputs(in, 6, 4, NULL, 100);
    ck_assert_msg(gc_check(host, &s, &res, msg, sizeof(msg)) == 0, "%s",
                  msg);
    free_all(in, 4);
}
END_TEST

START_TEST(test_loss_keys_get_zero)
{
    /* Keys are stop-gradient: wanted key gradients are overwritten with
     * zeros; a NULL grad_output (no gradient reaching the loss) gives
     * zeros everywhere; a scaled d loss scales the q gradients exactly
     * (a power of two). */
    const float *const src[4] = {a_q1, a_q2, a_k1, a_k2};
    struct smlp_tensor *in[4], *gi[4], *g2[4];
    const int all[4] = {1, 1, 1, 1};
    int64_t i;
    int t;

    loss_inputs(in, 4, 3, src, 0);
    loss_backward(NULL, in, 1, 1.0f, all, gi);
    assert_zero(gi[2], "d k1");
    assert_zero(gi[3], "d k2");
    loss_backward(NULL, in, 1, 4.0f, all, g2);
    for (t = 0; t < 2; t++)
        for (i = 0; i < 12; i++)
            ck_assert(((float *)g2[t]->data)[i] ==
                      4.0f * ((float *)gi[t]->data)[i]);
    free_all(g2, 4);
    loss_backward(NULL, in, 0, 0.0f, all, g2);
    for (t = 0; t < 4; t++)
        assert_zero(g2[t], "gradient without d loss");
    free_all(g2, 4);
    free_all(gi, 4);
    free_all(in, 4);
}
END_TEST

START_TEST(test_loss_threads)
{
    /* The same gradients, bit for bit, at 1 and 2 threads. */
    struct smlp_tensor *in[4], *g1[4], *g2[4];
    const int want[4] = {1, 1, 1, 1};
    double l1, l2;
    int t;

    loss_inputs(in, 9, 7, NULL, 200);
    ophost_set_threads(host, 1);
    l1 = loss_backward(NULL, in, 1, 1.0f, want, g1);
    ophost_set_threads(host, 2);
    l2 = loss_backward(NULL, in, 1, 1.0f, want, g2);
    ophost_set_threads(host, 1);
    ck_assert(l1 == l2);
    for (t = 0; t < 4; t++)
        ck_assert_msg(memcmp(g1[t]->data, g2[t]->data, 9 * 7 * sizeof(float))
                          == 0,
                      "gradient of input %d differs between 1 and 2 "
                      "threads",
                      t);
    free_all(g1, 4);
    free_all(g2, 4);
    free_all(in, 4);
}
END_TEST

/*
 * ctr(q, k) and d ctr / d q·g in double (the formulas of loss.c's file
 * comment), added into *loss and dq.
 */
static void
ctr_reference(const float *q, const float *k, int64_t n, int64_t d,
              double tau, double g, double *loss, double *dq)
{
    double *qh = calloc((size_t)(n * d), sizeof(double));
    double *kh = calloc((size_t)(n * d), sizeof(double));
    double *qn = calloc((size_t)n, sizeof(double));
    double *p = calloc((size_t)n, sizeof(double));
    double *dqh = calloc((size_t)d, sizeof(double));
    double total = 0.0;
    int64_t i, j, c;

    ck_assert(qh != NULL && kh != NULL && qn != NULL && p != NULL &&
              dqh != NULL);
    for (i = 0; i < n; i++) {
        double sq = 0.0, sk = 0.0;

        for (c = 0; c < d; c++) {
            sq += (double)q[i * d + c] * q[i * d + c];
            sk += (double)k[i * d + c] * k[i * d + c];
        }
        qn[i] = sqrt(sq) > 1e-12 ? sqrt(sq) : 1e-12;
        sk = sqrt(sk) > 1e-12 ? sqrt(sk) : 1e-12;
        for (c = 0; c < d; c++) {
            qh[i * d + c] = q[i * d + c] / qn[i];
            kh[i * d + c] = k[i * d + c] / sk;
        }
    }
    for (i = 0; i < n; i++) {
        double max = -1e300, sum = 0.0, dot = 0.0;

        for (j = 0; j < n; j++) {
            p[j] = 0.0;
            for (c = 0; c < d; c++)
                p[j] += qh[i * d + c] * kh[j * d + c];
            p[j] /= tau;
            max = p[j] > max ? p[j] : max;
        }
        total -= p[i];
        for (j = 0; j < n; j++)
            sum += exp(p[j] - max);
        total += max + log(sum);
        for (c = 0; c < d; c++)
            dqh[c] = 0.0;
        for (j = 0; j < n; j++) {
            double ds = 2.0 * g / (double)n *
                        (exp(p[j] - max) / sum - (i == j ? 1.0 : 0.0));

            for (c = 0; c < d; c++)
                dqh[c] += ds * kh[j * d + c];
        }
        for (c = 0; c < d; c++)
            dot += qh[i * d + c] * dqh[c];
        /* Below the floor q-hat = q / 1e-12, linear in q. */
        if (qn[i] <= 1e-12)
            dot = 0.0;
        for (c = 0; c < d; c++)
            dq[i * d + c] += (dqh[c] - qh[i * d + c] * dot) / qn[i];
    }
    *loss += 2.0 * tau * total / (double)n;
    free(qh);
    free(kh);
    free(qn);
    free(p);
    free(dqh);
}

START_TEST(test_loss_tasks)
{
    /* n = 150: five row tasks of 32 per ctr (intra-op tasks, each its
     * own rows of s and d q).  Loss and gradients bit-identical for 1 to
     * 4 threads (shuffled task order), and against the formulas in
     * double: the loss to 1e-6 relative, the gradients to 1e-5 of their
     * largest element, as for the PyTorch references. */
    const int64_t n = 150, d = 24;
    const double tau = 0.3, g = 1.5;
    struct ophost_attr attrs[] = {OPHOST_FLOAT("tau", tau), OPHOST_END};
    struct smlp_tensor *in[4], *g1[4], *gt[4];
    const int want[4] = {1, 1, 1, 1};
    double *dq1 = calloc((size_t)(n * d), sizeof(double));
    double *dq2 = calloc((size_t)(n * d), sizeof(double));
    double l1, lt, ref = 0.0;
    int t, i;

    ck_assert(dq1 != NULL && dq2 != NULL);
    loss_inputs(in, n, d, NULL, 300);
    ophost_set_threads(host, 1);
    l1 = loss_backward(attrs, in, 1, (float)g, want, g1);
    for (t = 2; t <= 4; t++) {
        ophost_set_threads(host, t);
        lt = loss_backward(attrs, in, 1, (float)g, want, gt);
        ck_assert(l1 == lt);
        for (i = 0; i < 4; i++)
            ck_assert_msg(memcmp(g1[i]->data, gt[i]->data,
                                 (size_t)(n * d) * sizeof(float)) == 0,
                          "gradient of input %d differs between 1 and %d "
                          "threads",
                          i, t);
        free_all(gt, 4);
    }
    ophost_set_threads(host, 1);
    ctr_reference(in[0]->data, in[3]->data, n, d, tau, g, &ref, dq1);
    ctr_reference(in[1]->data, in[2]->data, n, d, tau, g, &ref, dq2);
    ck_assert_msg(fabs(l1 - ref) <= 1e-6 * (1.0 + fabs(ref)),
                  "loss: got %.9g, want %.9g", l1, ref);
    assert_grad(g1[0], dq1, 1e-5, "d q1");
    assert_grad(g1[1], dq2, 1e-5, "d q2");
    assert_zero(g1[2], "d k1");
    assert_zero(g1[3], "d k2");
    free(dq1);
    free(dq2);
    free_all(g1, 4);
    free_all(in, 4);
}
END_TEST

/* A zero query row and a tiny one (norm 9e-13): both are below the
 * 1e-12 floor, where q-hat = q / 1e-12 is linear in q, so their gradient
 * is d q-hat / 1e-12, with no projection (checked against the
 * double-precision reference, the rows apart from the others). */
START_TEST(test_loss_zero_row)
{
    const int64_t n = 5, d = 4;
    const double tau = 0.2, g = 1.0;
    struct ophost_attr attrs[] = {OPHOST_FLOAT("tau", tau), OPHOST_END};
    struct smlp_tensor *in[4], *g1[4];
    const int want[4] = {1, 1, 0, 0};
    double *dq1 = calloc((size_t)(n * d), sizeof(double)), ref = 0.0;
    float *q;
    const float *got;
    int64_t r, c;

    loss_inputs(in, n, d, NULL, 500);
    q = in[0]->data;
    memset(q + 2 * d, 0, (size_t)d * sizeof(float));
    /* Row 4: (6, -6, 3, 0) e-13, norm 9e-13. */
    q[4 * d] = 6e-13f;
    q[4 * d + 1] = -6e-13f;
    q[4 * d + 2] = 3e-13f;
    q[4 * d + 3] = 0.0f;
    loss_backward(attrs, in, 1, (float)g, want, g1);
    ctr_reference(in[0]->data, in[3]->data, n, d, tau, g, &ref, dq1);
    got = g1[0]->data;
    for (r = 2; r <= 4; r += 2)
        for (c = 0; c < d; c++)
            ck_assert_msg(fabs(got[r * d + c] - dq1[r * d + c]) <=
                              1e-5 * fabs(dq1[r * d + c]) + 1e-3,
                          "row %lld: d q1[%lld] = %g, want %g", (long long)r,
                          (long long)c, (double)got[r * d + c],
                          dq1[r * d + c]);
    free(dq1);
    free_all(g1, 4);
    free_all(in, 4);
}
END_TEST

/*
 * A small tau (1e-3): the logits s/tau span up to 2000, beyond exp's range
 * (709), so each row's log-sum-exp must be taken from its maximum; the
 * keys k2 lie near one direction and q1's row 0 points the other way, so
 * that row's logits are all near -1000 (exp underflows to 0 from any
 * shift but the row's own maximum).  Loss and gradients against the
 * formulas in double; the f32 similarities' rounding (~1e-7) is
 * amplified by 1/tau, so 1e-4 relative for the loss and 1e-3 of the
 * largest element for the gradients.
 */
START_TEST(test_loss_small_tau)
{
    const int64_t n = 6, d = 5;
    const double tau = 1e-3, g = 1.0;
    struct ophost_attr attrs[] = {OPHOST_FLOAT("tau", tau), OPHOST_END};
    struct smlp_tensor *in[4], *g1[4];
    const int want[4] = {1, 1, 0, 0};
    double *dq1 = calloc((size_t)(n * d), sizeof(double));
    double *dq2 = calloc((size_t)(n * d), sizeof(double));
    static const float base[5] = {1.0f, -0.5f, 0.25f, 0.8f, -0.3f};
    float *q1, *k2;
    double l, ref = 0.0;
    int64_t j, c;

    ck_assert(dq1 != NULL && dq2 != NULL);
    loss_inputs(in, n, d, NULL, 700);
    q1 = in[0]->data;
    k2 = in[3]->data;
    for (j = 0; j < n; j++)
        for (c = 0; c < d; c++)
            k2[j * d + c] = base[c] + 0.05f * k2[j * d + c];
    for (c = 0; c < d; c++)
        q1[c] = -base[c];
    l = loss_backward(attrs, in, 1, (float)g, want, g1);
    ctr_reference(in[0]->data, in[3]->data, n, d, tau, g, &ref, dq1);
    ctr_reference(in[1]->data, in[2]->data, n, d, tau, g, &ref, dq2);
    ck_assert_msg(isfinite(l) && fabs(l - ref) <= 1e-4 * fabs(ref),
                  "loss: got %.9g, want %.9g", l, ref);
    assert_grad(g1[0], dq1, 1e-3, "d q1");
    assert_grad(g1[1], dq2, 1e-3, "d q2");
    free(dq1);
    free(dq2);
    free_all(g1, 4);
    free_all(in, 4);
}
END_TEST

START_TEST(test_loss_errors)
{
    struct smlp_tensor *in[4];
    struct ophost_attr zero[] = {OPHOST_FLOAT("tau", 0.0), OPHOST_END};
    struct ophost_attr neg[] = {OPHOST_FLOAT("tau", -0.5), OPHOST_END};
    /* The smallest subnormal: 2/tau overflows (the loss would be inf). */
    struct ophost_attr tiny[] = {OPHOST_FLOAT("tau", 4.9406564584124654e-324),
                                 OPHOST_END};
    struct ophost_attr inf[] = {OPHOST_FLOAT("tau", HUGE_VAL), OPHOST_END};
    struct ophost_attr type[] = {OPHOST_STRING("tau", "0.2"), OPHOST_END};

    loss_inputs(in, 4, 3, NULL, 300);
    infer_fails("moco.loss", zero, in, 4,
                "attribute 'tau' = 0 is invalid: expected a finite value > "
                "0");
    infer_fails("moco.loss", neg, in, 4, "attribute 'tau' = -0.5 is invalid");
    infer_fails("moco.loss", tiny, in, 4,
                "attribute 'tau' = 4.94066e-324 is invalid: expected a "
                "finite value > 0, at least 2.22507e-308");
    infer_fails("moco.loss", inf, in, 4, "attribute 'tau' = inf is invalid");
    infer_fails("moco.loss", type, in, 4, "attribute 'tau'");
    ophost_tensor_free(in[1]);
    in[1] = ophost_f32(OPHOST_SHAPE(4, 2), NULL);
    infer_fails("moco.loss", NULL, in, 4,
                "input 1 (q2) has shape [4,2], expected [4,3] like input 0 "
                "(q1)");
    ophost_tensor_free(in[1]);
    in[1] = ophost_f32(OPHOST_SHAPE(4, 3), NULL);
    ophost_tensor_free(in[2]);
    in[2] = ophost_f32(OPHOST_SHAPE(12), NULL);
    infer_fails("moco.loss", NULL, in, 4,
                "input 2 (k1) has shape [12] (rank 1), expected rank 2");
    ophost_tensor_free(in[2]);
    in[2] = ophost_f32(OPHOST_SHAPE(4, 3), NULL);
    ophost_tensor_free(in[3]);
    in[3] = ophost_i32(OPHOST_SHAPE(4, 3), NULL);
    infer_fails("moco.loss", NULL, in, 4,
                "input 3 (k2) has dtype i32, expected f32");
    ophost_tensor_free(in[3]);
    in[3] = ophost_f32(OPHOST_SHAPE(5, 3), NULL);
    infer_fails("moco.loss", NULL, in, 4,
                "input 3 (k2) has shape [5,3], expected [4,3] like input 0 "
                "(q1)");
    free_all(in, 4);
    loss_inputs(in, 0, 3, NULL, 301);
    infer_fails("moco.loss", NULL, in, 4,
                "input 0 (q1) has shape [0,3], expected [n,D] with n >= 1 "
                "and D >= 1");
    free_all(in, 4);
    loss_inputs(in, 4, 0, NULL, 302);
    infer_fails("moco.loss", NULL, in, 4,
                "input 0 (q1) has shape [4,0], expected [n,D] with n >= 1 "
                "and D >= 1");
    free_all(in, 4);
}
END_TEST

/* ---- moco.momentum_update ----------------------------------------------- */

/* Runs momentum_update; returns the output (state updated in in[0]). */
static struct smlp_tensor *
momentum_ok(const struct ophost_attr *attrs, struct smlp_tensor *const *in,
            int n_in)
{
    struct smlp_tensor *out[1] = {NULL};
    const char *msg;
    int rc = ophost_run(host, "moco.momentum_update", attrs, in, n_in, out,
                        1, &msg);

    ck_assert_msg(rc == SMLP_OK, "momentum_update failed (%s): %s",
                  ophost_status_name(rc), msg);
    return out[0];
}

/* got[i] == (float)want[i] within one f32 rounding of the result. */
static void
assert_vals(const float *got, const double *want, int64_t n,
            const char *what)
{
    int64_t i;

    for (i = 0; i < n; i++)
        ck_assert_msg(fabs(got[i] - want[i]) <= 1.2e-7 * fabs(want[i]),
                      "%s[%lld]: got %.9g, want %.9g", what, (long long)i,
                      (double)got[i], want[i]);
}

START_TEST(test_momentum_hand)
{
    /* m = 0.9: 0.9·1 + 0.1·3 = 1.2; 0.9·2 + 0.1·(−2) = 1.6;
     * 0.9·(−4) + 0.1·4 = −3.2; 0.9·0.5 + 0.1·0.5 = 0.5.  The state input
     * holds the new values afterwards and the output is a copy of them. */
    const float k[] = {1, 2, -4, 0.5f}, q[] = {3, -2, 4, 0.5f};
    const double want[] = {1.2, 1.6, -3.2, 0.5};
    struct ophost_attr attrs[] = {OPHOST_FLOAT("m", 0.9), OPHOST_END};
    struct smlp_tensor *in[2] = {ophost_f32(OPHOST_SHAPE(2, 2), k),
                                 ophost_f32(OPHOST_SHAPE(2, 2), q)};
    struct smlp_tensor *out = momentum_ok(attrs, in, 2);

    ck_assert_int_eq(out->rank, 2);
    ck_assert_int_eq(out->shape[0], 2);
    ck_assert_int_eq(out->shape[1], 2);
    ck_assert_ptr_ne(out->data, in[0]->data);
    assert_vals(in[0]->data, want, 4, "theta_k");
    assert_vals(out->data, want, 4, "output");
    /* theta_q is read only. */
    ck_assert(memcmp(in[1]->data, q, sizeof(q)) == 0);
    ophost_tensor_free(out);
    free_all(in, 2);
}
END_TEST

START_TEST(test_momentum_default_and_repeat)
{
    /* Default m = 0.99: (1, 0) and (0, 1) give 0.99 and 0.01.  A second
     * run moves the state again: 0.99·0.99 = 0.9801 and
     * 0.99·0.01 + 0.01 = 0.0199. */
    const float k[] = {1, 0}, q[] = {0, 1};
    const double once[] = {0.99, 0.01}, twice[] = {0.9801, 0.0199};
    struct smlp_tensor *in[2] = {ophost_f32(OPHOST_SHAPE(2), k),
                                 ophost_f32(OPHOST_SHAPE(2), q)};
    struct smlp_tensor *out = momentum_ok(NULL, in, 2);

    assert_vals(out->data, once, 2, "first");
    ophost_tensor_free(out);
    out = momentum_ok(NULL, in, 2);
    /* Two f32 roundings now: 2.4e-7 relative. */
    ck_assert(fabs(((float *)out->data)[0] - twice[0]) <= 2.4e-7 * twice[0]);
    ck_assert(fabs(((float *)out->data)[1] - twice[1]) <= 2.4e-7 * twice[1]);
    ophost_tensor_free(out);
    free_all(in, 2);
}
END_TEST

START_TEST(test_momentum_endpoints)
{
    /* m = 1 keeps theta_k exactly; m = 0 copies theta_q exactly (any
     * rank: a scalar and a rank-3 tensor). */
    const float k[] = {1.5f, -2.25f, 3.0f, 7.0f, 0.125f, -1.0f};
    const float q[] = {-0.5f, 4.0f, 1e-3f, -8.0f, 2.0f, 0.0f};
    struct ophost_attr one[] = {OPHOST_FLOAT("m", 1.0), OPHOST_END};
    struct ophost_attr zero[] = {OPHOST_FLOAT("m", 0.0), OPHOST_END};
    struct smlp_tensor *in[2] = {ophost_f32(OPHOST_SHAPE(1, 2, 3), k),
                                 ophost_f32(OPHOST_SHAPE(1, 2, 3), q)};
    struct smlp_tensor *out = momentum_ok(one, in, 2);

    ck_assert(memcmp(in[0]->data, k, sizeof(k)) == 0);
    ck_assert(memcmp(out->data, k, sizeof(k)) == 0);
    ophost_tensor_free(out);
    out = momentum_ok(zero, in, 2);
    ck_assert(memcmp(in[0]->data, q, sizeof(q)) == 0);
    ck_assert(memcmp(out->data, q, sizeof(q)) == 0);
    ophost_tensor_free(out);
    free_all(in, 2);
    in[0] = ophost_f32(0, NULL, k);
    in[1] = ophost_f32(0, NULL, q);
    out = momentum_ok(zero, in, 2);
    ck_assert_int_eq(out->rank, 0);
    ck_assert(((float *)out->data)[0] == q[0]);
    ophost_tensor_free(out);
    free_all(in, 2);
}
END_TEST

START_TEST(test_momentum_m_input)
{
    /* Input 2 overrides the attribute: m = 0.75 (not 0.5):
     * 0.75·4 + 0.25·8 = 5; 0.75·(−4) + 0.25·0 = −3. */
    const float k[] = {4, -4}, q[] = {8, 0}, m = 0.75f, one = 1.0f;
    const double want[] = {5, -3};
    struct ophost_attr attrs[] = {OPHOST_FLOAT("m", 0.5), OPHOST_END};
    struct smlp_tensor *in[3] = {ophost_f32(OPHOST_SHAPE(2), k),
                                 ophost_f32(OPHOST_SHAPE(2), q),
                                 ophost_f32(0, NULL, &m)};
    struct smlp_tensor *out = momentum_ok(attrs, in, 3);

    assert_vals(out->data, want, 2, "output");
    assert_vals(in[0]->data, want, 2, "theta_k");
    ophost_tensor_free(out);
    /* The endpoints as an input, shaped [1]: m = 1 keeps theta_k (5, -3)
     * exactly, m = 0 copies theta_q (8, 0). */
    ophost_tensor_free(in[2]);
    in[2] = ophost_f32(OPHOST_SHAPE(1), &one);
    out = momentum_ok(attrs, in, 3);
    ck_assert(((float *)out->data)[0] == 5.0f);
    ck_assert(((float *)out->data)[1] == -3.0f);
    ophost_tensor_free(out);
    ((float *)in[2]->data)[0] = 0.0f;
    out = momentum_ok(attrs, in, 3);
    ck_assert(memcmp(out->data, q, sizeof(q)) == 0);
    ck_assert(memcmp(in[0]->data, q, sizeof(q)) == 0);
    ophost_tensor_free(out);
    free_all(in, 3);
}
END_TEST

START_TEST(test_momentum_errors)
{
    const float bad_m = 1.5f;
    struct ophost_attr big[] = {OPHOST_FLOAT("m", 1.5), OPHOST_END};
    struct smlp_tensor *in[3] = {ophost_f32(OPHOST_SHAPE(4), NULL),
                                 ophost_f32(OPHOST_SHAPE(3), NULL), NULL};
    struct smlp_tensor *out[1] = {NULL};
    const char *msg;
    int rc;

    infer_fails("moco.momentum_update", NULL, in, 2,
                "input 1 (theta_q) has shape [3], expected [4] like input 0 "
                "(theta_k)");
    ophost_tensor_free(in[1]);
    in[1] = ophost_f32(OPHOST_SHAPE(4), NULL);
    infer_fails("moco.momentum_update", big, in, 2,
                "attribute 'm' = 1.5 is invalid: expected a value in [0, "
                "1]");
    in[2] = ophost_f32(OPHOST_SHAPE(2), NULL);
    infer_fails("moco.momentum_update", NULL, in, 3,
                "input 2 (m) has shape [2], expected [] or [1]");
    ophost_tensor_free(in[2]);
    /* An empty m holds no value either. */
    in[2] = ophost_f32(OPHOST_SHAPE(0), NULL);
    infer_fails("moco.momentum_update", NULL, in, 3,
                "input 2 (m) has shape [0], expected [] or [1]");
    ophost_tensor_free(in[2]);
    in[2] = ophost_f32(0, NULL, &bad_m);
    rc = ophost_run(host, "moco.momentum_update", NULL, in, 3, out, 1, &msg);
    ck_assert_int_eq(rc, SMLP_EINVAL);
    ck_assert_msg(strstr(msg, "input 2 (m) = 1.5 is invalid") != NULL,
                  "message: %s", msg);
    ophost_tensor_free(out[0]);
    ophost_tensor_free(in[0]);
    in[0] = ophost_i32(OPHOST_SHAPE(4), NULL);
    infer_fails("moco.momentum_update", NULL, in, 2,
                "input 0 (theta_k) has dtype i32, expected f32");
    free_all(in, 3);
}
END_TEST

START_TEST(test_momentum_no_backward)
{
    /* Forward only: no gradient flows through the moving average. */
    struct smlp_tensor *in[2] = {ophost_f32(OPHOST_SHAPE(2), NULL),
                                 ophost_f32(OPHOST_SHAPE(2), NULL)};
    struct smlp_tensor *out[1] = {NULL}, *go[1], *gi[2] = {NULL, NULL};
    const char *msg;

    ck_assert_ptr_null(ophost_op(host, "moco.momentum_update")->backward);
    out[0] = momentum_ok(NULL, in, 2);
    go[0] = ophost_tensor_like(out[0]);
    gi[1] = ophost_tensor_like(in[1]);
    ck_assert_int_eq(ophost_backward(host, "moco.momentum_update", NULL, in,
                                     2, out, 1, go, gi, &msg),
                     SMLP_ENOKERNEL);
    free_all(go, 1);
    free_all(gi, 2);
    free_all(out, 1);
    free_all(in, 2);
}
END_TEST

/* ---- plugin ------------------------------------------------------------- */

START_TEST(test_plugin_registers_ops)
{
    static const char *const names[] = {"moco.loss", "moco.momentum_update"};
    const struct smlp_plugin_def *def = ophost_plugin(host);
    size_t i;

    ck_assert_str_eq(def->name, "moco");
    ck_assert_str_eq(def->signature, SMLP_BUILD_SIGNATURE);
    ck_assert_ptr_null(def->set_threads);
    ck_assert_int_eq(ophost_op_count(host), 2);
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const struct smlp_op_def *op = ophost_op(host, names[i]);

        ck_assert_msg(op != NULL, "%s not registered", names[i]);
        ck_assert_ptr_nonnull(op->doc);
        ck_assert_msg(strchr(op->doc, '\n') == NULL, "%s doc", names[i]);
        ck_assert_ptr_nonnull(op->attrs);
        ck_assert_ptr_nonnull(op->attrs[0].name);
    }
    ck_assert_ptr_nonnull(ophost_op(host, "moco.loss")->backward);
}
END_TEST

static Suite *
moco_suite(void)
{
    Suite *s = suite_create("moco");
    TCase *tc;

#define TC(name)                                                             \
    tc = tcase_create(name);                                                 \
    tcase_add_checked_fixture(tc, setup, teardown);                          \
    suite_add_tcase(s, tc)

    TC("loss");
    tcase_add_test(tc, test_loss_reference_tau02);
    tcase_add_test(tc, test_loss_zero_row);
    tcase_add_test(tc, test_loss_reference_tau1);
    tcase_add_test(tc, test_loss_default_tau);
    tcase_add_test(tc, test_loss_single_row);
    tcase_add_test(tc, test_loss_scale_invariant);
    tcase_add_test(tc, test_loss_fd);
    tcase_add_test(tc, test_loss_keys_get_zero);
    tcase_add_test(tc, test_loss_threads);
    tcase_add_test(tc, test_loss_tasks);
    tcase_add_test(tc, test_loss_small_tau);
    tcase_add_test(tc, test_loss_errors);
    TC("momentum_update");
    tcase_add_test(tc, test_momentum_hand);
    tcase_add_test(tc, test_momentum_default_and_repeat);
    tcase_add_test(tc, test_momentum_endpoints);
    tcase_add_test(tc, test_momentum_m_input);
    tcase_add_test(tc, test_momentum_errors);
    tcase_add_test(tc, test_momentum_no_backward);
    TC("plugin");
    tcase_add_test(tc, test_plugin_registers_ops);
#undef TC
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(moco_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
