/*
 * check_optim.c - the optimizers' update rules and the learning-rate
 * schedule (runtime/optim_math.c, compiled into this test).
 *
 * TCase "math": the update rules over plain arrays against PyTorch's
 * torch.optim.AdamW / SGD and clip_grad_norm_, numbers from
 * tests/reference/optim_ref.py pasted below; the rank-1 no-decay rule; a
 * non-finite gradient changes nothing.
 * TCase "schedule": smlp_lr_cosine at its key points, by hand.
 * Checkpoints: check_checkpoint.c; optimizers on a session:
 * check_optim_train.c.
 */
#include <math.h>
#include <stdint.h>

#include "optim.h"
#include "testutil.h"

/* ---- math: PyTorch reference ------------------------------------------ */

#define REF_STEPS 4

struct ref_case {
    const char *name;
    int kind;
    double momentum;
    int nesterov;
    double beta1, beta2, eps, weight_decay, clip;
    double lr[REF_STEPS];
    float norm[REF_STEPS]; /* global norm before clipping, each step */
    float W[12];           /* W [3, 4] after REF_STEPS steps */
    float b[3];
    int n_slots;
    float slot0_W[12], slot0_b[3];
    float slot1_W[12], slot1_b[3];
};

/* BEGIN optim_ref.py (torch 1.13.0a0): generated, do not edit */
static const struct ref_case ref_cases[] = {
    {"adamw", SMLP_OPTIM_ADAMW, 0.0, 0, 0.9, 0.999, 1e-08, 0.05, 0.0,
     {0.01, 0.008, 0.006, 0.004},
     {2.79086089f, 1.34693432f, 5.41167212f, 0.279717028f},
     {0.123317629f, 0.397533655f, 0.488535613f, 0.363991559f,
      0.0336306393f, -0.33127737f, -0.507371783f, -0.443183124f,
      -0.160585642f, 0.16630432f, 0.398180574f, 0.477648348f},
     {0.0875207856f, 0.0713177025f, -0.0401585028f},
     2,
     {0.215041324f, 0.0833502188f, -0.170449138f, -0.174540117f,
      0.0770705938f, 0.215772703f, 0.038367305f, -0.195246294f,
      -0.142823607f, 0.118835993f, 0.206400588f, -0.0084121665f},
     {-0.0854255781f, -0.214751005f, -0.0294657107f},
     {0.00376607757f, 0.00112725433f, 0.0040553743f, 0.00167605083f,
      0.00282556191f, 0.00323487911f, 0.00138388935f, 0.0041467566f,
      0.00126280647f, 0.00344238826f, 0.00259102066f, 0.00187049375f},
     {0.00295050046f, 0.00311658927f, 0.00146167434f}},
    {"adamw_clip", SMLP_OPTIM_ADAMW, 0.0, 0, 0.8, 0.99, 1e-06, 0.1, 0.5,
     {0.01, 0.008, 0.006, 0.004},
     {2.79086089f, 1.34693432f, 5.41167212f, 0.279717028f},
     {0.121729784f, 0.396688253f, 0.492381841f, 0.362752825f,
      0.0343455002f, -0.331533581f, -0.508272409f, -0.43826142f,
      -0.161386535f, 0.164860547f, 0.397409916f, 0.474909991f},
     {0.0870823711f, 0.0719233528f, -0.0383869931f},
     2,
     {0.0565006696f, 0.0177034345f, -0.047029376f, -0.042864047f,
      0.0240972172f, 0.0557559915f, 0.00573211024f, -0.0526893288f,
      -0.0339207835f, 0.0345417894f, 0.0524005592f, -0.00650761696f},
     {-0.0262042619f, -0.0553115197f, -0.0033872677f},
     {0.000556113373f, 0.000558303553f, 0.000505742151f, 0.000593630539f,
      0.000495570886f, 0.000575734943f, 0.000536411186f, 0.000523639377f,
      0.000584851368f, 0.00049271941f, 0.000589401054f, 0.000515842228f},
     {0.000494294567f, 0.000578915118f, 0.000532237464f}},
    {"sgd_momentum", SMLP_OPTIM_SGD, 0.9, 0, 0.0, 0.0, 0.0, 0.01, 0.0,
     {0.1, 0.08, 0.06, 0.04},
     {2.79086089f, 1.34693432f, 5.41167212f, 0.279717028f},
     {-0.130887106f, 0.125186414f, 0.61405319f, 0.693808019f,
      0.0912166908f, -0.624441624f, -0.72791642f, -0.248478517f,
      0.158024266f, 0.148101673f, 0.0752981678f, 0.312808692f},
     {0.0438463129f, 0.372272223f, 0.172201052f},
     1,
     {2.15302682f, 0.842748523f, -1.68779612f, -1.72878993f,
      0.774426103f, 2.14381599f, 0.362067312f, -1.96679497f,
      -1.4293766f, 1.19570065f, 2.07439089f, -0.0713912696f},
     {-0.854255676f, -2.14751005f, -0.294657171f},
     {0.0f},
     {0.0f}},
    {"sgd_nesterov_clip", SMLP_OPTIM_SGD, 0.9, 1, 0.0, 0.0, 0.0, 0.01, 1.0,
     {0.1, 0.08, 0.06, 0.04},
     {2.79086089f, 1.34693432f, 5.41167212f, 0.279717028f},
     {0.00966600981f, 0.249035776f, 0.538822293f, 0.528606355f,
      0.0773129538f, -0.466724575f, -0.628953218f, -0.352162093f,
      0.00457421364f, 0.170106068f, 0.240173653f, 0.378065407f},
     {0.0507792048f, 0.213005275f, 0.0800607204f},
     1,
     {0.630714059f, 0.391494244f, -0.406920671f, -0.59229064f,
      0.101561405f, 0.647334576f, 0.234330505f, -0.538632631f,
      -0.537558198f, 0.244666576f, 0.673765302f, 0.130293965f},
     {-0.126279026f, -0.66289115f, -0.228366226f},
     {0.0f},
     {0.0f}},
    {"sgd_plain", SMLP_OPTIM_SGD, 0.0, 0, 0.0, 0.0, 0.0, 0.05, 0.0,
     {0.1, 0.08, 0.06, 0.04},
     {2.79086089f, 1.34693432f, 5.41167212f, 0.279717028f},
     {-0.0123514151f, 0.29779911f, 0.58434391f, 0.501151562f,
      0.015028825f, -0.472719371f, -0.567997336f, -0.310554087f,
      -0.0314084627f, 0.110395595f, 0.243254662f, 0.436812609f},
     {0.112233236f, 0.218706474f, 0.0216568075f},
     0,
     {0.0f},
     {0.0f},
     {0.0f},
     {0.0f}},
};
/* END optim_ref.py */

/* The inputs of optim_ref.py, computed the same way (double, then f32). */
static void
ref_init(float *W, float *b)
{
    int i;

    for (i = 0; i < 12; i++)
        W[i] = (float)(0.5 * sin(0.7 * i + 0.3));
    for (i = 0; i < 3; i++)
        b[i] = (float)(0.1 * cos(1.1 * i));
}

static void
ref_grads(int t, float *gW, float *gb)
{
    static const double amp[REF_STEPS] = {1.0, 0.5, 2.0, 0.1};
    int i;

    for (i = 0; i < 12; i++)
        gW[i] = (float)(amp[t] * sin(1.3 * i + 0.9 * t + 2.1 * 0 + 0.1));
    for (i = 0; i < 3; i++)
        gb[i] = (float)(amp[t] * sin(1.3 * i + 0.9 * t + 2.1 * 1 + 0.1));
}

/* Normwise relative error max_i |got_i - want_i| / max_i |want_i|. */
static double
normwise_err(const float *got, const float *want, int n)
{
    double err = 0, scale = 0;
    int i;

    for (i = 0; i < n; i++) {
        err = fmax(err, fabs((double)got[i] - want[i]));
        scale = fmax(scale, fabs((double)want[i]));
    }
    return err / fmax(scale, 1e-30);
}

/*
 * PyTorch's float kernels fuse multiply-adds (AVX2 fmadd) where ours round
 * twice, and its norm is a float32 sum where ours is double: results
 * differ in the last bits, and the differences compound over the steps
 * (measured with torch 1.13: at most 1.7e-7 of the array's largest value,
 * about 1.5 float epsilons).
 */
#define REF_TOL 1e-6

static void
expect_ref(const struct ref_case *rc, const char *what, const float *got,
           const float *want, int n)
{
    double e = normwise_err(got, want, n);
    int i;

    for (i = 0; i < n; i++)
        ck_assert_msg(isfinite(got[i]), "%s %s[%d] = %g", rc->name, what, i,
                      got[i]);
    ck_assert_msg(e <= REF_TOL,
                  "%s: %s differs from PyTorch's by %.3g (normwise)",
                  rc->name, what, e);
}

START_TEST(test_optim_apply_matches_torch)
{
    const struct ref_case *rc = &ref_cases[_i];
    struct smlp_optim_opts o;
    struct smlp__optim_param ps[2];
    float W[12], b[3], gW[12], gb[3];
    float s0W[12] = {0}, s0b[3] = {0}, s1W[12] = {0}, s1b[3] = {0};
    double norm;
    int t;

    smlp_optim_opts_init(&o);
    o.kind = rc->kind;
    o.momentum = rc->momentum;
    o.nesterov = rc->nesterov;
    o.beta1 = rc->beta1;
    o.beta2 = rc->beta2;
    o.eps = rc->eps;
    o.weight_decay = rc->weight_decay;
    o.clip_norm = rc->clip;
    ck_assert_int_eq(smlp__optim_n_slots(&o), rc->n_slots);
    ref_init(W, b);
    memset(ps, 0, sizeof(ps));
    ps[0] = (struct smlp__optim_param){W, gW, {s0W, s1W}, 12, 1};
    ps[1] = (struct smlp__optim_param){b, gb, {s0b, s1b}, 3, 0};
    for (t = 0; t < REF_STEPS; t++) {
        ref_grads(t, gW, gb);
        ck_assert_int_eq(smlp__optim_apply(&o, ps, 2, t + 1, rc->lr[t],
                                           &norm, NULL, NULL),
                         SMLP_OK);
        ck_assert_msg(fabs(norm - rc->norm[t]) <= 1e-6 * rc->norm[t],
                      "%s step %d: norm %.9g, PyTorch %.9g", rc->name, t,
                      norm, rc->norm[t]);
    }
    expect_ref(rc, "W", W, rc->W, 12);
    expect_ref(rc, "b", b, rc->b, 3);
    if (rc->n_slots >= 1) {
        expect_ref(rc, "slot 0 of W", s0W, rc->slot0_W, 12);
        expect_ref(rc, "slot 0 of b", s0b, rc->slot0_b, 3);
    }
    if (rc->n_slots >= 2) {
        expect_ref(rc, "slot 1 of W", s1W, rc->slot1_W, 12);
        expect_ref(rc, "slot 1 of b", s1b, rc->slot1_b, 3);
    }
}
END_TEST

/* Rank-1 parameters (decay 0) are not decayed: with a zero gradient they
 * do not move, while a decayed one shrinks by exactly the decay. */
START_TEST(test_optim_no_decay_rank1)
{
    struct smlp_optim_opts o;
    struct smlp__optim_param ps[2];
    float W[2] = {1.0f, -2.0f}, b[2] = {1.0f, -2.0f};
    float gW[2] = {0}, gb[2] = {0}, mW[2] = {0}, vW[2] = {0}, mb[2] = {0},
          vb[2] = {0};
    int kind;

    for (kind = 0; kind < 2; kind++) {
        smlp_optim_opts_init(&o);
        o.kind = kind;
        o.momentum = 0.9;
        o.weight_decay = 0.5;
        W[0] = b[0] = 1.0f;
        W[1] = b[1] = -2.0f;
        memset(mW, 0, sizeof(mW));
        memset(mb, 0, sizeof(mb));
        ps[0] = (struct smlp__optim_param){W, gW, {mW, vW}, 2, 1};
        ps[1] = (struct smlp__optim_param){b, gb, {mb, vb}, 2, 0};
        ck_assert_int_eq(smlp__optim_apply(&o, ps, 2, 1, 0.1, NULL, NULL,
                                           NULL),
                         SMLP_OK);
        /* AdamW: p * (1 - lr wd); SGD: p - lr (wd p): both 0.95 p. */
        ck_assert_float_eq(W[0], 0.95f);
        ck_assert_float_eq(W[1], -1.9f);
        ck_assert_float_eq(b[0], 1.0f);
        ck_assert_float_eq(b[1], -2.0f);
    }
}
END_TEST

START_TEST(test_optim_nonfinite_nothing_updated)
{
    struct smlp_optim_opts o;
    struct smlp__optim_param ps[2];
    float W[3] = {1, 2, 3}, b[2] = {4, 5}, gW[3] = {100, 200, 300},
          gb[2] = {1, NAN}, m[5] = {1, 1, 1, 1, 1}, v[5] = {2, 2, 2, 2, 2};
    float W0[3], b0[2], gW0[3], m0[5], v0[5];
    int64_t elem = -1;
    int32_t bad = -1;
    double norm = 0;

    smlp_optim_opts_init(&o);
    o.clip_norm = 1.0; /* clipping would scale gW: it must not happen */
    memcpy(W0, W, sizeof(W));
    memcpy(b0, b, sizeof(b));
    memcpy(gW0, gW, sizeof(gW));
    memcpy(m0, m, sizeof(m));
    memcpy(v0, v, sizeof(v));
    ps[0] = (struct smlp__optim_param){W, gW, {m, v}, 3, 1};
    ps[1] = (struct smlp__optim_param){b, gb, {m + 3, v + 3}, 2, 0};
    ck_assert_int_eq(smlp__optim_apply(&o, ps, 2, 1, 0.1, &norm, &bad, &elem),
                     SMLP_EINVAL);
    ck_assert_int_eq(bad, 1);
    ck_assert_int_eq(elem, 1);
    ck_assert(!isfinite(norm));
    ck_assert_mem_eq(W, W0, sizeof(W));
    ck_assert_mem_eq(b, b0, sizeof(b));
    ck_assert_mem_eq(gW, gW0, sizeof(gW));
    ck_assert_mem_eq(m, m0, sizeof(m));
    ck_assert_mem_eq(v, v0, sizeof(v));
    gb[1] = -INFINITY;
    o.kind = SMLP_OPTIM_SGD;
    ck_assert_int_eq(smlp__optim_apply(&o, ps, 2, 1, 0.1, &norm, &bad, &elem),
                     SMLP_EINVAL);
    ck_assert_mem_eq(W, W0, sizeof(W));
    ck_assert_mem_eq(m, m0, sizeof(m));
}
END_TEST

START_TEST(test_optim_clip_hand_values)
{
    struct smlp_optim_opts o;
    struct smlp__optim_param ps[2];
    float p[3] = {0}, g[3] = {3, 0, 0}, q[1] = {0}, h[1] = {4};
    double norm;

    ck_assert_double_eq(smlp__clip_coef(0.5, 1.0), 1.0);
    ck_assert_double_eq(smlp__clip_coef(5.0, 1.0), 1.0 / (5.0 + 1e-6));
    ck_assert_double_eq(smlp__sumsq(g, 3), 9.0);
    /* Plain SGD, lr 1: p = -g after clipping |(3, 4)| = 5 to 1. */
    smlp_optim_opts_init(&o);
    o.kind = SMLP_OPTIM_SGD;
    o.momentum = 0;
    o.weight_decay = 0;
    o.clip_norm = 1.0;
    ps[0] = (struct smlp__optim_param){p, g, {NULL, NULL}, 3, 1};
    ps[1] = (struct smlp__optim_param){q, h, {NULL, NULL}, 1, 0};
    ck_assert_int_eq(smlp__optim_apply(&o, ps, 2, 1, 1.0, &norm, NULL, NULL),
                     SMLP_OK);
    ck_assert_double_eq(norm, 5.0);
    ck_assert_float_eq_tol(g[0], 0.6f, 1e-6f);
    ck_assert_float_eq_tol(h[0], 0.8f, 1e-6f);
    ck_assert_float_eq(p[0], -g[0]);
    ck_assert_float_eq(q[0], -h[0]);
    /* Under the limit: untouched. */
    g[0] = 0.3f;
    h[0] = 0.4f;
    ck_assert_int_eq(smlp__optim_apply(&o, ps, 2, 2, 1.0, &norm, NULL, NULL),
                     SMLP_OK);
    ck_assert_float_eq(g[0], 0.3f);
    ck_assert_float_eq(h[0], 0.4f);
}
END_TEST

START_TEST(test_optim_opts_defaults)
{
    struct smlp_optim_opts o;

    smlp_optim_opts_init(&o);
    ck_assert_int_eq(o.kind, SMLP_OPTIM_ADAMW);
    ck_assert_double_eq(o.beta1, 0.9);
    ck_assert_double_eq(o.beta2, 0.999);
    ck_assert_double_eq(o.eps, 1e-8);
    ck_assert_double_eq(o.momentum, 0.9);
    ck_assert_double_eq(o.weight_decay, 0.05);
    ck_assert_double_eq(o.clip_norm, 0);
    ck_assert_str_eq(smlp__optim_slot_name(&o, 0), "exp_avg");
    ck_assert_str_eq(smlp__optim_slot_name(&o, 1), "exp_avg_sq");
    o.kind = SMLP_OPTIM_SGD;
    ck_assert_str_eq(smlp__optim_slot_name(&o, 0), "momentum_buffer");
    ck_assert_ptr_null(smlp__optim_slot_name(&o, 1));
    o.momentum = 0;
    ck_assert_int_eq(smlp__optim_n_slots(&o), 0);
    /* No slot, so no name for slot 0 either. */
    ck_assert_ptr_null(smlp__optim_slot_name(&o, 0));
}
END_TEST

/*
 * SGD's first update starts the momentum buffer as d itself (PyTorch
 * clones it), whatever the buffer held before; later updates blend.  By
 * hand, g = (1, 2), p = (1, 1), lr 0.5, momentum 0.9, no decay: the first
 * update makes buf = (1, 2), p = (0.5, 0) although buf held (5, -5).
 */
START_TEST(test_optim_sgd_first_clones)
{
    float p[2] = {1, 1}, g[2] = {1, 2}, buf[2] = {5, -5};

    smlp__sgd_update(p, g, buf, 2, 0.5, 0.0, 0.9, 0, 1);
    ck_assert_float_eq(buf[0], 1.0f);
    ck_assert_float_eq(buf[1], 2.0f);
    ck_assert_float_eq(p[0], 0.5f);
    ck_assert_float_eq(p[1], 0.0f);
}
END_TEST

/* ---- schedule ------------------------------------------------------------ */

START_TEST(test_lr_cosine_key_points)
{
    const double base = 1e-3, min = 1e-5;

    /* Warm-up over 10 steps, cosine over the next 100. */
    ck_assert_double_eq(smlp_lr_cosine(base, min, 0, 10, 110), 0.0);
    ck_assert_double_eq_tol(smlp_lr_cosine(base, min, 5, 10, 110), 5e-4,
                            1e-15);
    ck_assert_double_eq_tol(smlp_lr_cosine(base, min, 9, 10, 110), 9e-4,
                            1e-15);
    ck_assert_double_eq(smlp_lr_cosine(base, min, 10, 10, 110), base);
    /* A quarter: min + (base - min) (1 + cos(pi / 4)) / 2. */
    ck_assert_double_eq_tol(smlp_lr_cosine(base, min, 35, 10, 110),
                            1e-5 + 9.9e-4 * 0.8535533905932737, 1e-15);
    /* The middle: halfway between base and min. */
    ck_assert_double_eq_tol(smlp_lr_cosine(base, min, 60, 10, 110), 5.05e-4,
                            1e-15);
    ck_assert_double_eq_tol(smlp_lr_cosine(base, min, 109, 10, 110),
                            1e-5 + 9.9e-4 * 0.5 *
                                       (1 + cos(M_PI * 99.0 / 100.0)),
                            1e-15);
    ck_assert_double_eq(smlp_lr_cosine(base, min, 110, 10, 110), min);
    ck_assert_double_eq(smlp_lr_cosine(base, min, 1000, 10, 110), min);
    /*
     * A cosine of no steps (total == warmup): the warm-up ramps to step
     * total, where the schedule is min_lr exactly.  The cosine's span
     * total - warmup is 0 here, so computing t at step == total would
     * give 0 / 0, NaN; step >= total must return first.  The same with
     * no warm-up and no steps at all.
     */
    ck_assert_double_eq_tol(smlp_lr_cosine(base, min, 9, 10, 10), 9e-4,
                            1e-15);
    ck_assert_double_eq(smlp_lr_cosine(base, min, 10, 10, 10), min);
    ck_assert_double_eq(smlp_lr_cosine(base, min, 11, 10, 10), min);
    ck_assert_double_eq(smlp_lr_cosine(base, min, 0, 0, 0), min);
    /* No warm-up; negative steps count as 0. */
    ck_assert_double_eq(smlp_lr_cosine(base, min, 0, 0, 100), base);
    ck_assert_double_eq(smlp_lr_cosine(base, min, -3, 0, 100), base);
    ck_assert_double_eq(smlp_lr_cosine(base, min, -3, 10, 100), 0.0);
    /* A negative warm-up counts as none: the cosine spans [0, total). */
    ck_assert_double_eq(smlp_lr_cosine(base, min, 0, -5, 100), base);
    ck_assert_double_eq_tol(smlp_lr_cosine(base, min, 50, -5, 100), 5.05e-4,
                            1e-15);
    /* MoCo v3's momentum: 1 - (1 - m0) (1 + cos(pi k / K)) / 2. */
    ck_assert_double_eq_tol(1 - smlp_lr_cosine(1 - 0.99, 0, 0, 0, 100), 0.99,
                            1e-15);
    ck_assert_double_eq_tol(1 - smlp_lr_cosine(1 - 0.99, 0, 50, 0, 100),
                            0.995, 1e-15);
    ck_assert_double_eq(1 - smlp_lr_cosine(1 - 0.99, 0, 100, 0, 100), 1.0);
}
END_TEST

static Suite *
optim_suite(void)
{
    Suite *s = suite_create("optim");
    TCase *tc;

    tc = tcase_create("math");
    tcase_add_loop_test(tc, test_optim_apply_matches_torch, 0,
                        (int)(sizeof(ref_cases) / sizeof(ref_cases[0])));
    tcase_add_test(tc, test_optim_no_decay_rank1);
    tcase_add_test(tc, test_optim_nonfinite_nothing_updated);
    tcase_add_test(tc, test_optim_clip_hand_values);
    tcase_add_test(tc, test_optim_opts_defaults);
    tcase_add_test(tc, test_optim_sgd_first_clones);
    suite_add_tcase(s, tc);

    tc = tcase_create("schedule");
    tcase_add_test(tc, test_lr_cosine_key_points);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(optim_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
