/*
 * check_optim.c - optimizers, the learning-rate schedule and checkpoints
 * (runtime/optim_math.c, optim.c, checkpoint.c).
 *
 * TCase "math": the update rules over plain arrays (optim_math.c is
 * compiled into this test) against PyTorch's torch.optim.AdamW / SGD and
 * clip_grad_norm_, numbers from tests/reference/optim_ref.py pasted
 * below; the rank-1 no-decay rule; a non-finite gradient changes nothing.
 * TCase "schedule": smlp_lr_cosine at its key points, by hand.
 * TCase "checkpoint": save/load without an optimizer: round trip of
 * parameters, state, the step counter and metadata; atomic replacement;
 * every load error leaves the session as it was.
 * TCase "train": optimizers on a session and checkpoints with optimizer
 * state; these need the backward engine (smlp_session_backward,
 * smlp_session_grad) and the backward kernels of core.linear and
 * core.softmax_cross_entropy.
 */
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "optim.h"
#include "safetensors.h"
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

/* ---- sessions and checkpoints -------------------------------------------- */

/* logits = W x + b, loss = softmax cross-entropy(logits, labels); W is
 * rank 2 (decayed), b rank 1 (not), `count` a state tensor. */
static const char *graph_ce =
    "{\"name\": \"ce\", \"plugins\": [\"core\"], \"tensors\": ["
    "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 4]},"
    "{\"name\": \"labels\", \"dtype\": \"I32\", \"kind\": \"Input\","
    " \"shape\": [-1]},"
    "{\"name\": \"W\", \"kind\": \"Parameter\", \"shape\": [3, 4],"
    " \"init\": {\"kind\": \"Uniform\", \"a\": -0.5, \"b\": 0.5,"
    " \"seed\": 3}},"
    "{\"name\": \"b\", \"kind\": \"Parameter\", \"shape\": [3],"
    " \"init\": {\"kind\": \"Uniform\", \"a\": -0.1, \"b\": 0.1,"
    " \"seed\": 4}},"
    "{\"name\": \"count\", \"kind\": \"State\", \"shape\": [2],"
    " \"init\": {\"kind\": \"Constant\", \"a\": 7}},"
    "{\"name\": \"logits\", \"kind\": \"Output\", \"shape\": [-1, 3]},"
    "{\"name\": \"loss\", \"kind\": \"Output\"}],"
    "\"nodes\": ["
    "{\"name\": \"fc\", \"op\": \"core.linear\", \"inputs\": [0, 2, 3],"
    " \"outputs\": [5]},"
    "{\"name\": \"ce\", \"op\": \"core.softmax_cross_entropy\","
    " \"inputs\": [5, 1], \"outputs\": [6]}]}";

/* One graph file for the whole test program (flatc once). */
static const char *
graph_path(void)
{
    static char path[512];

    if (path[0] == '\0')
        tu_graph_from_json(tu_tmpdir(), "ce", graph_ce, path, sizeof(path));
    return path;
}

struct fixture {
    smlp_registry_t *reg;
    smlp_graph_t *g;
    const char *dir;
};

static void
fixture_open(struct fixture *fx)
{
    struct smlp_error err;

    fx->reg = smlp_registry_create(NULL, &err);
    ck_assert_msg(fx->reg != NULL, "%s", err.msg);
    fx->g = smlp_graph_load(graph_path(), &err);
    ck_assert_msg(fx->g != NULL, "%s", err.msg);
    fx->dir = tu_tmpdir();
}

static void
fixture_close(struct fixture *fx)
{
    smlp_graph_unload(fx->g);
    smlp_registry_destroy(fx->reg);
}

/* A session of batch 2; with `loss`, in training mode with that loss and
 * the frozen globs given.  Inputs are set to fixed values. */
static smlp_session_t *
session(struct fixture *fx, const char *loss, const char *const *frozen)
{
    static const float x[8] = {0.5f, -1, 2, 0.25f, -0.75f, 1.5f, 0, 1};
    static const int32_t labels[2] = {2, 0};
    struct smlp_session_opts o;
    struct smlp_error err;
    struct smlp_tensor t;
    smlp_session_t *s;

    smlp_session_opts_init(&o);
    o.batch = 2;
    o.threads = 1;
    o.seed = 11;
    o.training = loss != NULL;
    o.loss = loss;
    o.frozen = frozen;
    s = smlp_session_create(fx->g, fx->reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    ck_assert_int_eq(smlp_session_tensor(s, "x", &t), SMLP_OK);
    memcpy(t.data, x, sizeof(x));
    ck_assert_int_eq(smlp_session_tensor(s, "labels", &t), SMLP_OK);
    memcpy(t.data, labels, sizeof(labels));
    return s;
}

static float *
data(smlp_session_t *s, const char *name)
{
    struct smlp_tensor t;

    ck_assert_int_eq(smlp_session_tensor(s, name, &t), SMLP_OK);
    ck_assert_ptr_nonnull(t.data);
    return t.data;
}

/* Copies of W, b and count, to compare a session against. */
struct snap {
    float W[12], b[3], count[2];
};

static void
snap_take(smlp_session_t *s, struct snap *sn)
{
    memcpy(sn->W, data(s, "W"), sizeof(sn->W));
    memcpy(sn->b, data(s, "b"), sizeof(sn->b));
    memcpy(sn->count, data(s, "count"), sizeof(sn->count));
}

static void
snap_expect(smlp_session_t *s, const struct snap *sn)
{
    ck_assert_mem_eq(data(s, "W"), sn->W, sizeof(sn->W));
    ck_assert_mem_eq(data(s, "b"), sn->b, sizeof(sn->b));
    ck_assert_mem_eq(data(s, "count"), sn->count, sizeof(sn->count));
}

static void
perturb(smlp_session_t *s)
{
    float *W = data(s, "W"), *b = data(s, "b"), *c = data(s, "count");
    int i;

    for (i = 0; i < 12; i++)
        W[i] += 1.0f;
    for (i = 0; i < 3; i++)
        b[i] -= 1.0f;
    c[0] = c[1] = -1.0f;
}

/* Opens a file written by smlp_checkpoint_save and returns its metadata
 * value for key (static storage), or NULL. */
static const char *
file_meta(const char *path, const char *key)
{
    static char value[256];
    struct smlp__st_file *f;
    const char *v;
    char err[512];

    ck_assert_msg(smlp__st_open(path, &f, err, sizeof(err)) == SMLP_OK, "%s",
                  err);
    v = smlp__st_meta(f, key);
    if (v != NULL)
        snprintf(value, sizeof(value), "%s", v);
    smlp__st_close(f);
    return v != NULL ? value : NULL;
}

/* Asserts that two files hold the same tensors, bit for bit, and the same
 * metadata. */
static void
files_equal(const char *a, const char *b)
{
    struct smlp__st_file *fa, *fb;
    char err[512];
    int32_t i;

    ck_assert_msg(smlp__st_open(a, &fa, err, sizeof(err)) == SMLP_OK, "%s",
                  err);
    ck_assert_msg(smlp__st_open(b, &fb, err, sizeof(err)) == SMLP_OK, "%s",
                  err);
    ck_assert_int_eq(fa->n_entries, fb->n_entries);
    for (i = 0; i < fa->n_entries; i++) {
        const struct smlp__st_entry *x = &fa->entries[i], *y;

        y = smlp__st_find(fb, x->name);
        ck_assert_msg(y != NULL, "%s lacks '%s'", b, x->name);
        ck_assert_int_eq(x->nbytes, y->nbytes);
        ck_assert_msg(memcmp(x->data, y->data, x->nbytes) == 0,
                      "tensor '%s' differs", x->name);
    }
    ck_assert_int_eq(fa->n_meta, fb->n_meta);
    for (i = 0; i < fa->n_meta; i++) {
        int32_t j;

        for (j = 0; j < fb->n_meta; j++)
            if (strcmp(fa->meta_keys[i], fb->meta_keys[j]) == 0)
                break;
        ck_assert_msg(j < fb->n_meta, "%s lacks metadata '%s'", b,
                      fa->meta_keys[i]);
        ck_assert_str_eq(fa->meta_values[i], fb->meta_values[j]);
    }
    smlp__st_close(fa);
    smlp__st_close(fb);
}

/* Number of directory entries whose name starts with prefix. */
static int
count_files(const char *dir, const char *prefix)
{
    struct dirent *d;
    DIR *dp = opendir(dir);
    int n = 0;

    ck_assert_ptr_nonnull(dp);
    while ((d = readdir(dp)) != NULL)
        n += strncmp(d->d_name, prefix, strlen(prefix)) == 0;
    closedir(dp);
    return n;
}

START_TEST(test_checkpoint_roundtrip)
{
    static const char *const keys[] = {"epoch", "data.position"};
    static const char *const vals[] = {"3", "1234"};
    struct fixture fx;
    smlp_session_t *a, *b;
    struct snap sa;
    char p1[600], p2[600];
    float *W;

    fixture_open(&fx);
    a = session(&fx, NULL, NULL);
    W = data(a, "W");
    W[5] = 42.0f;
    data(a, "count")[1] = 3.0f;
    ck_assert_int_eq(smlp_session_run(a), SMLP_OK);
    ck_assert_int_eq(smlp_session_run(a), SMLP_OK);
    snap_take(a, &sa);
    snprintf(p1, sizeof(p1), "%s/a.safetensors", fx.dir);
    snprintf(p2, sizeof(p2), "%s/b.safetensors", fx.dir);
    ck_assert_msg(smlp_checkpoint_save(a, NULL, p1, keys, vals, 2) ==
                      SMLP_OK,
                  "%s", smlp_session_errmsg(a));
    ck_assert_str_eq(file_meta(p1, "smlp.graph"), "ce");
    ck_assert_str_eq(file_meta(p1, "smlp.step"), "2");
    ck_assert_str_eq(file_meta(p1, "smlp.seed"), "11");
    ck_assert_str_eq(file_meta(p1, "smlp.version"), smlp_version_string());
    ck_assert_ptr_null(file_meta(p1, "smlp.optim.kind"));
    ck_assert_ptr_null(smlp_checkpoint_meta(a, "epoch"));

    /* Perturb, load: bit-identical again. */
    perturb(a);
    ck_assert_msg(smlp_checkpoint_load(a, NULL, p1) == SMLP_OK, "%s",
                  smlp_session_errmsg(a));
    snap_expect(a, &sa);
    ck_assert_str_eq(smlp_checkpoint_meta(a, "epoch"), "3");
    ck_assert_str_eq(smlp_checkpoint_meta(a, "data.position"), "1234");
    ck_assert_str_eq(smlp_checkpoint_meta(a, "smlp.step"), "2");
    ck_assert_ptr_null(smlp_checkpoint_meta(a, "nope"));

    /* Into a fresh session: same tensors, same step counter (its save is
     * the same file, bit for bit), same outputs. */
    b = session(&fx, NULL, NULL);
    ck_assert_msg(smlp_checkpoint_load(b, NULL, p1) == SMLP_OK, "%s",
                  smlp_session_errmsg(b));
    snap_expect(b, &sa);
    ck_assert_int_eq(smlp_checkpoint_save(b, NULL, p2, keys, vals, 2),
                     SMLP_OK);
    files_equal(p1, p2);
    ck_assert_int_eq(smlp_session_run(a), SMLP_OK);
    ck_assert_int_eq(smlp_session_run(b), SMLP_OK);
    ck_assert_mem_eq(data(a, "logits"), data(b, "logits"), 6 * sizeof(float));

    /* A checkpoint is also a weights file. */
    perturb(b);
    ck_assert_int_eq(smlp_session_load_weights(b, p1), SMLP_OK);
    snap_expect(b, &sa);
    smlp_session_destroy(a);
    smlp_session_destroy(b);
    fixture_close(&fx);
}
END_TEST

START_TEST(test_checkpoint_save_bad_meta)
{
    static const char *const reserved[] = {"smlp.step"};
    static const char *const dup[] = {"k", "k"};
    static const char *const nullkey[] = {NULL};
    static const char *const vals[] = {"1", "2"};
    struct fixture fx;
    smlp_session_t *s;
    char path[600];

    fixture_open(&fx);
    s = session(&fx, NULL, NULL);
    snprintf(path, sizeof(path), "%s/c.safetensors", fx.dir);
    ck_assert_int_eq(smlp_checkpoint_save(s, NULL, path, reserved, vals, 1),
                     SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(s),
                       "metadata key 'smlp.step' is reserved");
    ck_assert_int_eq(smlp_checkpoint_save(s, NULL, path, dup, vals, 2),
                     SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(s), "'k'");
    ck_assert_int_eq(smlp_checkpoint_save(s, NULL, path, NULL, NULL, 1),
                     SMLP_EINVAL);
    /* A negative count; a NULL key (not taken for a reserved one). */
    ck_assert_int_eq(smlp_checkpoint_save(s, NULL, path, dup, vals, -1),
                     SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(s),
                       "-1 metadata pairs with a negative count");
    ck_assert_int_eq(smlp_checkpoint_save(s, NULL, path, nullkey, vals, 1),
                     SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(s),
                       "metadata pair 0 has a NULL key or value");
    ck_assert_int_eq(access(path, F_OK), -1);
    ck_assert_int_eq(count_files(fx.dir, "c.safetensors"), 0);
    smlp_session_destroy(s);
    fixture_close(&fx);
}
END_TEST

/*
 * The destination is never partial: a save that fails while writing (a
 * file size limit, which binds root too) or creating (a read-only
 * directory, when not root) leaves the old file and no temporary file;
 * an old temporary file left by a crash is harmless.
 */
START_TEST(test_checkpoint_save_atomic)
{
    struct fixture fx;
    smlp_session_t *s;
    struct snap before;
    struct rlimit rl;
    char path[700], sub[600], stray[800];
    struct stat st;
    off_t size;
    int fd;

    fixture_open(&fx);
    s = session(&fx, NULL, NULL);
    snprintf(sub, sizeof(sub), "%s/run", fx.dir);
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    snprintf(path, sizeof(path), "%s/ckpt.safetensors", sub);
    /* A stray temporary file of a crashed save. */
    snprintf(stray, sizeof(stray), "%s.tmp.AbCdEf", path);
    tu_write(stray, "partial", 7);
    ck_assert_int_eq(smlp_checkpoint_save(s, NULL, path, NULL, NULL, 0),
                     SMLP_OK);
    snap_take(s, &before);
    ck_assert_int_eq(stat(path, &st), 0);
    size = st.st_size;

    /* Writing fails: the file size limit is below the checkpoint size. */
    perturb(s);
    signal(SIGXFSZ, SIG_IGN);
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &rl), 0);
    rl.rlim_cur = 256;
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    ck_assert_int_eq(smlp_checkpoint_save(s, NULL, path, NULL, NULL, 0),
                     SMLP_EIO);
    tu_assert_contains(smlp_session_errmsg(s), path);
    rl.rlim_cur = rl.rlim_max;
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_size, size);
    /* Only the file and the stray one are there. */
    ck_assert_int_eq(count_files(sub, "ckpt.safetensors"), 2);
    ck_assert_int_eq(smlp_checkpoint_load(s, NULL, path), SMLP_OK);
    snap_expect(s, &before);

    /* A read-only directory (permissions do not bind root: then skipped). */
    perturb(s);
    ck_assert_int_eq(chmod(sub, 0555), 0);
    snprintf(stray, sizeof(stray), "%s/probe", sub);
    fd = open(stray, O_CREAT | O_WRONLY, 0644);
    if (fd >= 0) {
        close(fd);
        unlink(stray);
    } else {
        ck_assert_int_eq(smlp_checkpoint_save(s, NULL, path, NULL, NULL, 0),
                         SMLP_EIO);
        tu_assert_contains(smlp_session_errmsg(s), "temporary file");
        ck_assert_int_eq(smlp_checkpoint_load(s, NULL, path), SMLP_OK);
        snap_expect(s, &before);
    }
    ck_assert_int_eq(chmod(sub, 0755), 0);
    ck_assert_int_eq(count_files(sub, "ckpt.safetensors"), 2);
    smlp_session_destroy(s);
    fixture_close(&fx);
}
END_TEST

/* A safetensors file made here: W, b and count as given (name NULL: left
 * out), and the metadata pairs. */
struct fake_tensor {
    const char *name;
    const char *dtype;
    int rank;
    int64_t shape[2];
};

static void
write_fake(const char *path, const struct fake_tensor *ts, int n,
           const char *const *keys, const char *const *vals, int n_meta)
{
    static float zeros[64];
    struct smlp__st_entry e[8];
    char err[512];
    int i;

    memset(e, 0, sizeof(e));
    for (i = 0; i < n; i++) {
        e[i].name = (char *)ts[i].name;
        e[i].dtype = strcmp(ts[i].dtype, "F32") == 0 ? SMLP_DTYPE_F32
                                                     : SMLP_DTYPE_I32;
        snprintf(e[i].dtype_name, sizeof(e[i].dtype_name), "%s",
                 ts[i].dtype);
        e[i].rank = ts[i].rank;
        memcpy(e[i].shape, ts[i].shape, sizeof(ts[i].shape));
        e[i].nbytes = 4 * (size_t)(ts[i].rank == 1
                                       ? ts[i].shape[0]
                                       : ts[i].shape[0] * ts[i].shape[1]);
        e[i].data = zeros;
    }
    ck_assert_msg(smlp__st_write(path, e, n, keys, vals, n_meta, err,
                                 sizeof(err)) == SMLP_OK,
                  "%s", err);
}

static void
expect_load_error(smlp_session_t *s, const char *path, int status,
                  const char *needle, const struct snap *before)
{
    int rc = smlp_checkpoint_load(s, NULL, path);

    ck_assert_msg(rc == status, "load %s: %s (%s), expected %s", path,
                  smlp_status_name(rc), smlp_session_errmsg(s),
                  smlp_status_name(status));
    tu_assert_contains(smlp_session_errmsg(s), path);
    tu_assert_contains(smlp_session_errmsg(s), needle);
    snap_expect(s, before);
    /* The metadata of the last good load stays. */
    ck_assert_str_eq(smlp_checkpoint_meta(s, "tag"), "good");
}

/* dst = src with one bit of its last byte flipped. */
static void
copy_flipped(const char *src, const char *dst)
{
    size_t len;
    unsigned char *b = tu_read_file(src, &len);
    FILE *f = fopen(dst, "wb");

    ck_assert_ptr_nonnull(f);
    ck_assert_uint_gt(len, 0);
    b[len - 1] ^= 0x10;
    ck_assert_uint_eq(fwrite(b, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
    free(b);
}

START_TEST(test_checkpoint_load_errors)
{
    static const char *const keys[] = {"smlp.graph", "smlp.step"};
    static const char *const vals[] = {"ce", "5"};
    static const char *const badstep[] = {"ce", "5x"};
    static const char *const tagk[] = {"tag"};
    static const char *const tagv[] = {"good"};
    const struct fake_tensor W = {"W", "F32", 2, {3, 4}};
    const struct fake_tensor b = {"b", "F32", 1, {3}};
    const struct fake_tensor count = {"count", "F32", 1, {2}};
    struct fake_tensor ts[3];
    struct fixture fx;
    smlp_session_t *s;
    struct snap before;
    char good[600], path[600], cmd[1400];
    struct stat st;
    int k;

    fixture_open(&fx);
    s = session(&fx, NULL, NULL);
    snprintf(good, sizeof(good), "%s/good.safetensors", fx.dir);
    snprintf(path, sizeof(path), "%s/bad.safetensors", fx.dir);
    ck_assert_int_eq(smlp_checkpoint_save(s, NULL, good, tagk, tagv, 1),
                     SMLP_OK);
    ck_assert_int_eq(smlp_checkpoint_load(s, NULL, good), SMLP_OK);
    perturb(s);
    snap_take(s, &before);

    /* The file made by hand loads (the format is what it says). */
    ts[0] = W, ts[1] = b, ts[2] = count;
    write_fake(path, ts, 3, keys, vals, 2);
    ck_assert_int_eq(smlp_checkpoint_load(s, NULL, path), SMLP_OK);
    ck_assert_float_eq(data(s, "W")[0], 0.0f);
    /* The largest step count, 2^63 - 1, loads, and the session saves it
     * as its step (one more is refused below). */
    {
        static const char *const maxstep[] = {"ce", "9223372036854775807"};
        char again[700];

        write_fake(path, ts, 3, keys, maxstep, 2);
        ck_assert_msg(smlp_checkpoint_load(s, NULL, path) == SMLP_OK, "%s",
                      smlp_session_errmsg(s));
        snprintf(again, sizeof(again), "%s/again.safetensors", fx.dir);
        ck_assert_int_eq(smlp_checkpoint_save(s, NULL, again, NULL, NULL, 0),
                         SMLP_OK);
        ck_assert_str_eq(file_meta(again, "smlp.step"),
                         "9223372036854775807");
    }
    ck_assert_int_eq(smlp_checkpoint_load(s, NULL, good), SMLP_OK);
    perturb(s);
    snap_take(s, &before);

    /* Missing tensor (the last one, so that the others were checked). */
    write_fake(path, ts, 2, keys, vals, 2);
    expect_load_error(s, path, SMLP_ENOENT,
                      "has no tensor 'count' (graph ", &before);
    /* Wrong shape. */
    ts[0].shape[0] = 4, ts[0].shape[1] = 3;
    write_fake(path, ts, 3, keys, vals, 2);
    expect_load_error(s, path, SMLP_ESHAPE,
                      "tensor 'W' has shape [4,3], graph ", &before);
    tu_assert_contains(smlp_session_errmsg(s), "needs [3,4]");
    /* Another rank whose dimensions match as far as it goes ([3]). */
    ts[0] = W;
    ts[0].rank = 1;
    write_fake(path, ts, 3, keys, vals, 2);
    expect_load_error(s, path, SMLP_ESHAPE,
                      "tensor 'W' has shape [3], graph ", &before);
    /* Only the last dimension differs ([3,5] against [3,4]). */
    ts[0] = W;
    ts[0].shape[1] = 5;
    write_fake(path, ts, 3, keys, vals, 2);
    expect_load_error(s, path, SMLP_ESHAPE,
                      "tensor 'W' has shape [3,5], graph ", &before);
    /* Wrong dtype. */
    ts[0] = W;
    ts[2].dtype = "I32";
    write_fake(path, ts, 3, keys, vals, 2);
    expect_load_error(s, path, SMLP_EBADFILE,
                      "tensor 'count' has dtype I32", &before);
    /* Not a checkpoint; a bad step counter. */
    ts[2] = count;
    write_fake(path, ts, 3, NULL, NULL, 0);
    expect_load_error(s, path, SMLP_EBADFILE, "is not an smlp checkpoint",
                      &before);
    write_fake(path, ts, 3, keys, badstep, 2);
    expect_load_error(s, path, SMLP_EBADFILE,
                      "metadata smlp.step is '5x', not a step count",
                      &before);
    /* A sign or a space strtoull would take, and 2^63 (over int64). */
    for (k = 0; k < 3; k++) {
        static const char *const steps[] = {"+5", " 5",
                                            "9223372036854775808"};
        const char *v2[2] = {"ce", steps[k]};

        write_fake(path, ts, 3, keys, v2, 2);
        expect_load_error(s, path, SMLP_EBADFILE, "not a step count",
                          &before);
    }
    /* Truncated: the good file less its last 4 bytes. */
    ck_assert_int_eq(stat(good, &st), 0);
    snprintf(cmd, sizeof(cmd), "head -c %lld '%s' > '%s'",
             (long long)st.st_size - 4, good, path);
    ck_assert_int_eq(system(cmd), 0);
    expect_load_error(s, path, SMLP_EBADFILE, "beyond the data block",
                      &before);
    /* Damaged after it was written: one bit of the last data byte
     * flipped (a value that still reads as a float); the same as weights
     * (smlp_session_save_weights writes the hash too). */
    copy_flipped(good, path);
    expect_load_error(s, path, SMLP_EBADFILE,
                      "the tensor data do not match the file's "
                      "smlp.data_hash",
                      &before);
    ck_assert_int_eq(smlp_session_save_weights(s, good), SMLP_OK);
    ck_assert_int_eq(smlp_session_load_weights(s, good), SMLP_OK);
    copy_flipped(good, path);
    ck_assert_int_eq(smlp_session_load_weights(s, path), SMLP_EBADFILE);
    tu_assert_contains(smlp_session_errmsg(s), "smlp.data_hash");
    /* Absent. */
    snprintf(path, sizeof(path), "%s/absent.safetensors", fx.dir);
    expect_load_error(s, path, SMLP_EIO, "cannot open", &before);
    smlp_session_destroy(s);
    fixture_close(&fx);
}
END_TEST

/*
 * The dtype that the header of safetensors file `path` gives tensor
 * `name`, read from the bytes as the format defines them: an 8-byte
 * little-endian length, then the JSON header {"NAME": {"dtype": ...}}.
 */
static void
header_dtype(const char *path, const char *name, char *out, size_t len)
{
    size_t n;
    unsigned char *b = tu_read_file(path, &n);
    uint64_t hlen = 0;
    char key[128], *h, *p, *q;
    int i;

    ck_assert_uint_ge(n, 8);
    for (i = 7; i >= 0; i--)
        hlen = hlen << 8 | b[i];
    ck_assert_uint_le(hlen, n - 8);
    h = strndup((const char *)b + 8, (size_t)hlen);
    ck_assert_ptr_nonnull(h);
    snprintf(key, sizeof(key), "\"%s\"", name);
    p = strstr(h, key);
    ck_assert_msg(p != NULL, "%s: no %s in the header %s", path, key, h);
    p = strstr(p, "\"dtype\"");
    ck_assert_ptr_nonnull(p);
    p = strchr(p + strlen("\"dtype\""), '"');
    ck_assert_ptr_nonnull(p);
    q = strchr(p + 1, '"');
    ck_assert_ptr_nonnull(q);
    snprintf(out, len, "%.*s", (int)(q - p - 1), p + 1);
    free(h);
    free(b);
}

/* An I32 state tensor is saved as I32 (the header says so) and comes
 * back bit for bit. */
START_TEST(test_checkpoint_i32_state)
{
    static const char *graph_i32 =
        "{\"name\": \"i32s\", \"plugins\": [\"core\"], \"tensors\": ["
        "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 2]},"
        "{\"name\": \"ticks\", \"dtype\": \"I32\", \"kind\": \"State\","
        " \"shape\": [3], \"init\": {\"kind\": \"Zeros\"}},"
        "{\"name\": \"y\", \"kind\": \"Output\"}],"
        "\"nodes\": [{\"name\": \"dbl\", \"op\": \"core.add\","
        " \"inputs\": [0, 0], \"outputs\": [2]}]}";
    static const int32_t ticks[3] = {1, -2, 70000};
    struct smlp_session_opts o;
    struct smlp_error err;
    struct smlp_tensor t;
    smlp_registry_t *reg;
    smlp_session_t *a, *b;
    smlp_graph_t *g;
    char path[600], dtype[16];

    reg = smlp_registry_create(NULL, &err);
    ck_assert_msg(reg != NULL, "%s", err.msg);
    tu_graph_from_json(tu_tmpdir(), "i32s", graph_i32, path, sizeof(path));
    g = smlp_graph_load(path, &err);
    ck_assert_msg(g != NULL, "%s", err.msg);
    smlp_session_opts_init(&o);
    a = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(a != NULL, "%s", err.msg);
    b = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(b != NULL, "%s", err.msg);
    ck_assert_int_eq(smlp_session_tensor(a, "ticks", &t), SMLP_OK);
    ck_assert_int_eq(t.dtype, SMLP_DTYPE_I32);
    memcpy(t.data, ticks, sizeof(ticks));
    snprintf(path, sizeof(path), "%s/i32.safetensors", tu_tmpdir());
    ck_assert_msg(smlp_checkpoint_save(a, NULL, path, NULL, NULL, 0) ==
                      SMLP_OK,
                  "%s", smlp_session_errmsg(a));
    header_dtype(path, "ticks", dtype, sizeof(dtype));
    ck_assert_str_eq(dtype, "I32");
    ck_assert_msg(smlp_checkpoint_load(b, NULL, path) == SMLP_OK, "%s",
                  smlp_session_errmsg(b));
    ck_assert_int_eq(smlp_session_tensor(b, "ticks", &t), SMLP_OK);
    ck_assert_mem_eq(t.data, ticks, sizeof(ticks));
    smlp_session_destroy(a);
    smlp_session_destroy(b);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/* ---- training: optimizers on a session (needs the backward engine) ----- */

struct trainer {
    smlp_session_t *s;
    smlp_optim_t *opt;
};

static void
trainer_open(struct fixture *fx, struct trainer *tr,
             const struct smlp_optim_opts *o, const char *const *frozen)
{
    struct smlp_error err;

    tr->s = session(fx, "loss", frozen);
    tr->opt = smlp_optim_create(tr->s, o, &err);
    ck_assert_msg(tr->opt != NULL, "%s", err.msg);
}

static void
trainer_close(struct trainer *tr)
{
    smlp_optim_destroy(tr->opt);
    smlp_session_destroy(tr->s);
}

/* One training step with lr from the schedule; returns the grad norm. */
static double
train_step(struct trainer *tr, double lr)
{
    double norm = -1;

    ck_assert_int_eq(smlp_session_run(tr->s), SMLP_OK);
    ck_assert_msg(smlp_session_backward(tr->s) == SMLP_OK, "%s",
                  smlp_session_errmsg(tr->s));
    ck_assert_msg(smlp_optim_step(tr->opt, lr, &norm) == SMLP_OK, "%s",
                  smlp_session_errmsg(tr->s));
    return norm;
}

static float *
grad(smlp_session_t *s, const char *name)
{
    struct smlp_tensor t;

    ck_assert_msg(smlp_session_grad(s, name, &t) == SMLP_OK, "%s",
                  smlp_session_errmsg(s));
    return t.data;
}

/* The session's step applies the update rules to its parameters: W with
 * weight decay, b without, the norm over both. */
START_TEST(test_optim_session_step)
{
    struct smlp_optim_opts o;
    struct fixture fx;
    struct trainer tr;
    float W[12], b[3], gW[12], gb[3], mW[12] = {0}, vW[12] = {0},
          mb[3] = {0}, vb[3] = {0};
    double norm = -1;
    int kind;

    fixture_open(&fx);
    for (kind = 0; kind < 2; kind++) {
        smlp_optim_opts_init(&o);
        o.kind = kind;
        o.weight_decay = 0.1;
        trainer_open(&fx, &tr, &o, NULL);
        memset(mW, 0, sizeof(mW));
        memset(vW, 0, sizeof(vW));
        memset(mb, 0, sizeof(mb));
        memset(vb, 0, sizeof(vb));
        ck_assert_int_eq(smlp_optim_steps(tr.opt), 0);
        ck_assert_int_eq(smlp_session_run(tr.s), SMLP_OK);
        ck_assert_int_eq(smlp_session_backward(tr.s), SMLP_OK);
        memcpy(W, data(tr.s, "W"), sizeof(W));
        memcpy(b, data(tr.s, "b"), sizeof(b));
        memcpy(gW, grad(tr.s, "W"), sizeof(gW));
        memcpy(gb, grad(tr.s, "b"), sizeof(gb));
        ck_assert_int_eq(smlp_optim_step(tr.opt, 0.01, &norm), SMLP_OK);
        ck_assert_int_eq(smlp_optim_steps(tr.opt), 1);
        ck_assert_double_eq(norm, sqrt(smlp__sumsq(gW, 12) +
                                       smlp__sumsq(gb, 3)));
        if (kind == SMLP_OPTIM_ADAMW) {
            smlp__adamw_update(W, gW, mW, vW, 12, 0.01, 0.1, 0.9, 0.999,
                               1e-8, 1);
            smlp__adamw_update(b, gb, mb, vb, 3, 0.01, 0.0, 0.9, 0.999, 1e-8,
                               1);
        } else {
            smlp__sgd_update(W, gW, mW, 12, 0.01, 0.1, 0.9, 0, 1);
            smlp__sgd_update(b, gb, mb, 3, 0.01, 0.0, 0.9, 0, 1);
        }
        ck_assert_mem_eq(data(tr.s, "W"), W, sizeof(W));
        ck_assert_mem_eq(data(tr.s, "b"), b, sizeof(b));
        trainer_close(&tr);
    }
    fixture_close(&fx);
}
END_TEST

START_TEST(test_optim_session_frozen)
{
    static const char *const frozen[] = {"b", NULL};
    struct fixture fx;
    struct trainer tr;
    struct smlp_tensor t;
    float b[3], W[12];

    fixture_open(&fx);
    trainer_open(&fx, &tr, NULL, frozen);
    memcpy(b, data(tr.s, "b"), sizeof(b));
    memcpy(W, data(tr.s, "W"), sizeof(W));
    train_step(&tr, 0.1);
    ck_assert_mem_eq(data(tr.s, "b"), b, sizeof(b));
    ck_assert(memcmp(data(tr.s, "W"), W, sizeof(W)) != 0);
    ck_assert_int_eq(smlp_session_grad(tr.s, "b", &t), SMLP_EINVAL);
    trainer_close(&tr);
    fixture_close(&fx);
}
END_TEST

START_TEST(test_optim_session_nonfinite)
{
    struct fixture fx;
    struct trainer tr;
    struct snap before;
    double norm = 0;

    fixture_open(&fx);
    trainer_open(&fx, &tr, NULL, NULL);
    train_step(&tr, 0.01);
    ck_assert_int_eq(smlp_session_run(tr.s), SMLP_OK);
    ck_assert_int_eq(smlp_session_backward(tr.s), SMLP_OK);
    grad(tr.s, "b")[2] = NAN;
    snap_take(tr.s, &before);
    ck_assert_int_eq(smlp_optim_step(tr.opt, 0.01, &norm), SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(tr.s),
                       "the gradient of parameter 'b' is not finite "
                       "(element 2 is NaN): no parameter was updated");
    ck_assert(!isfinite(norm));
    snap_expect(tr.s, &before);
    ck_assert_int_eq(smlp_optim_steps(tr.opt), 1);
    /* An infinity is named so (the refused step left the gradients). */
    grad(tr.s, "b")[2] = 0.0f;
    grad(tr.s, "W")[7] = -INFINITY;
    ck_assert_int_eq(smlp_optim_step(tr.opt, 0.01, &norm), SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(tr.s),
                       "the gradient of parameter 'W' is not finite "
                       "(element 7 is infinite)");
    snap_expect(tr.s, &before);
    ck_assert_int_eq(smlp_optim_step(tr.opt, NAN, NULL), SMLP_EINVAL);
    ck_assert_int_eq(smlp_optim_step(tr.opt, INFINITY, NULL), SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(tr.s),
                       "learning rate inf is not a finite number >= 0");
    ck_assert_int_eq(smlp_optim_step(tr.opt, -1.0, NULL), SMLP_EINVAL);
    trainer_close(&tr);
    fixture_close(&fx);
}
END_TEST

/* A step needs a backward of its own: before any backward, and a second
 * step on the same gradients, are refused with nothing changed (the
 * parameters, the step count, and the moments: the run that follows
 * matches one that never saw the refused steps, bit for bit). */
START_TEST(test_optim_step_needs_backward)
{
    struct fixture fx;
    struct trainer a, b;
    struct snap before;
    double norm = -1;

    fixture_open(&fx);
    trainer_open(&fx, &a, NULL, NULL);
    trainer_open(&fx, &b, NULL, NULL);
    snap_take(a.s, &before);
    ck_assert_int_eq(smlp_optim_step(a.opt, 0.01, &norm), SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(a.s),
                       "no backward has run yet: each smlp_optim_step "
                       "needs a successful smlp_session_backward of its own "
                       "before it; nothing was updated");
    snap_expect(a.s, &before);
    ck_assert_int_eq(smlp_optim_steps(a.opt), 0);
    /* A run alone is not enough. */
    ck_assert_int_eq(smlp_session_run(a.s), SMLP_OK);
    ck_assert_int_eq(smlp_optim_step(a.opt, 0.01, NULL), SMLP_EINVAL);
    ck_assert_int_eq(smlp_session_backward(a.s), SMLP_OK);
    ck_assert_int_eq(smlp_optim_step(a.opt, 0.01, NULL), SMLP_OK);
    train_step(&b, 0.01);

    snap_take(a.s, &before);
    ck_assert_int_eq(smlp_optim_step(a.opt, 0.01, NULL), SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(a.s),
                       "no backward since the last optimizer step");
    snap_expect(a.s, &before);
    ck_assert_int_eq(smlp_optim_steps(a.opt), 1);
    /* Also after a forward: the gradients are still the old ones. */
    ck_assert_int_eq(smlp_session_run(a.s), SMLP_OK);
    ck_assert_int_eq(smlp_optim_step(a.opt, 0.01, NULL), SMLP_EINVAL);
    snap_expect(a.s, &before);

    /* A forward between the backward and the step is fine. */
    ck_assert_int_eq(smlp_session_backward(a.s), SMLP_OK);
    ck_assert_int_eq(smlp_session_run(a.s), SMLP_OK);
    ck_assert_int_eq(smlp_optim_step(a.opt, 0.01, NULL), SMLP_OK);
    train_step(&b, 0.01);
    ck_assert_int_eq(smlp_optim_steps(a.opt), 2);
    snap_take(b.s, &before);
    snap_expect(a.s, &before);

    /* A checkpoint load after a backward: those gradients belong to the
     * parameters before the load, so the next step needs a new one. */
    {
        char path[600];

        snprintf(path, sizeof(path), "%s/ck.safetensors", tu_tmpdir());
        ck_assert_int_eq(
            smlp_checkpoint_save(a.s, a.opt, path, NULL, NULL, 0), SMLP_OK);
        ck_assert_int_eq(smlp_session_backward(a.s), SMLP_OK);
        ck_assert_int_eq(smlp_checkpoint_load(a.s, a.opt, path), SMLP_OK);
        ck_assert_int_eq(smlp_optim_step(a.opt, 0.01, NULL), SMLP_EINVAL);
        tu_assert_contains(smlp_session_errmsg(a.s),
                           "no backward since the last failed one or "
                           "checkpoint load");
        snap_expect(a.s, &before);
    }
    trainer_close(&a);
    trainer_close(&b);
    fixture_close(&fx);
}
END_TEST

START_TEST(test_optim_create_errors)
{
    struct smlp_optim_opts o;
    struct smlp_error err;
    struct fixture fx;
    smlp_session_t *s;

    fixture_open(&fx);
    s = session(&fx, NULL, NULL);
    ck_assert_ptr_null(smlp_optim_create(s, NULL, &err));
    ck_assert_int_eq(err.status, SMLP_EINVAL);
    tu_assert_contains(err.msg, "needs a session with training = 1 and a "
                                "loss");
    smlp_session_destroy(s);
    s = session(&fx, "loss", NULL);
    smlp_optim_opts_init(&o);
    o.kind = 7;
    ck_assert_ptr_null(smlp_optim_create(s, &o, &err));
    tu_assert_contains(err.msg, "optimizer kind 7 is unknown");
    smlp_optim_opts_init(&o);
    o.beta2 = 1.0;
    ck_assert_ptr_null(smlp_optim_create(s, &o, &err));
    tu_assert_contains(err.msg, "betas (0.9, 1) are outside [0, 1)");
    /* The edges of the open intervals: 1 itself is out (a momentum or
     * beta of 1 never forgets: the update grows without bound). */
    smlp_optim_opts_init(&o);
    o.beta1 = 1.0;
    ck_assert_ptr_null(smlp_optim_create(s, &o, &err));
    tu_assert_contains(err.msg, "betas (1, 0.999) are outside [0, 1)");
    smlp_optim_opts_init(&o);
    o.kind = SMLP_OPTIM_SGD;
    o.momentum = 1.0;
    ck_assert_ptr_null(smlp_optim_create(s, &o, &err));
    tu_assert_contains(err.msg, "momentum 1 is outside [0, 1)");
    smlp_optim_opts_init(&o);
    o.kind = SMLP_OPTIM_SGD;
    o.momentum = 0;
    o.nesterov = 1;
    ck_assert_ptr_null(smlp_optim_create(s, &o, &err));
    tu_assert_contains(err.msg, "Nesterov momentum needs a momentum > 0");
    smlp_optim_opts_init(&o);
    o.weight_decay = -0.1;
    ck_assert_ptr_null(smlp_optim_create(s, &o, &err));
    tu_assert_contains(err.msg, "weight decay -0.1 is not a finite number");
    smlp_optim_opts_init(&o);
    o.clip_norm = -1;
    ck_assert_ptr_null(smlp_optim_create(s, &o, &err));
    tu_assert_contains(err.msg, "clip norm -1");
    /* Infinities are no finite numbers (NaN fails every comparison). */
    smlp_optim_opts_init(&o);
    o.eps = INFINITY;
    ck_assert_ptr_null(smlp_optim_create(s, &o, &err));
    tu_assert_contains(err.msg, "eps inf is not a finite number >= 0");
    smlp_optim_opts_init(&o);
    o.weight_decay = INFINITY;
    ck_assert_ptr_null(smlp_optim_create(s, &o, &err));
    tu_assert_contains(err.msg, "weight decay inf is not a finite number");
    smlp_optim_opts_init(&o);
    o.clip_norm = INFINITY;
    ck_assert_ptr_null(smlp_optim_create(s, &o, &err));
    tu_assert_contains(err.msg, "clip norm inf is not a finite number");
    /* The closed ends are in: beta1 = 0 (no averaging of the gradient),
     * beta2 = 0, eps = 0, and for SGD momentum 0 and decay 0. */
    {
        static const double edges[][3] = {
            {0.0, 0.999, 1e-8}, {0.9, 0.0, 1e-8}, {0.9, 0.999, 0.0}};
        smlp_optim_t *opt;
        int k;

        for (k = 0; k < 3; k++) {
            smlp_optim_opts_init(&o);
            o.beta1 = edges[k][0];
            o.beta2 = edges[k][1];
            o.eps = edges[k][2];
            opt = smlp_optim_create(s, &o, &err);
            ck_assert_msg(opt != NULL, "betas (%g, %g), eps %g: %s",
                          o.beta1, o.beta2, o.eps, err.msg);
            smlp_optim_destroy(opt);
        }
        smlp_optim_opts_init(&o);
        o.kind = SMLP_OPTIM_SGD;
        o.momentum = 0;
        o.weight_decay = 0;
        opt = smlp_optim_create(s, &o, &err);
        ck_assert_msg(opt != NULL, "%s", err.msg);
        smlp_optim_destroy(opt);
    }
    smlp_session_destroy(s);
    fixture_close(&fx);
}
END_TEST

/* A plan_only session has no memory: no optimizer, no checkpoint saved
 * from it or loaded into it (and no file written). */
START_TEST(test_optim_plan_only_refused)
{
    struct smlp_session_opts so;
    struct smlp_error err;
    struct fixture fx;
    smlp_session_t *s;
    char path[600];

    fixture_open(&fx);
    smlp_session_opts_init(&so);
    so.batch = 2;
    so.threads = 1;
    so.training = 1;
    so.loss = "loss";
    so.plan_only = 1;
    s = smlp_session_create(fx.g, fx.reg, &so, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    ck_assert_ptr_null(smlp_optim_create(s, NULL, &err));
    ck_assert_int_eq(err.status, SMLP_EINVAL);
    tu_assert_contains(err.msg, "the session was planned only and cannot "
                                "train");
    snprintf(path, sizeof(path), "%s/plan_only.safetensors", fx.dir);
    ck_assert_int_eq(smlp_checkpoint_save(s, NULL, path, NULL, NULL, 0),
                     SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(s), "was planned only");
    ck_assert_int_eq(access(path, F_OK), -1);
    smlp_session_destroy(s);
    /* A good checkpoint of the same graph is refused too. */
    s = session(&fx, NULL, NULL);
    ck_assert_int_eq(smlp_checkpoint_save(s, NULL, path, NULL, NULL, 0),
                     SMLP_OK);
    smlp_session_destroy(s);
    s = smlp_session_create(fx.g, fx.reg, &so, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    ck_assert_int_eq(smlp_checkpoint_load(s, NULL, path), SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(s), "was planned only");
    smlp_session_destroy(s);
    fixture_close(&fx);
}
END_TEST

/*
 * Train 3 steps, save, train 3 more; a new session and optimizer that load
 * the checkpoint and train the same 3 steps end bit-identical, and the
 * checkpoint survives a load + save unchanged.
 */
START_TEST(test_checkpoint_resume_bit_identical)
{
    static const char *const keys[] = {"epoch"};
    static const char *const vals[] = {"1"};
    struct smlp_optim_opts o;
    struct fixture fx;
    struct trainer a, b;
    struct snap sa;
    char p1[600], p2[600];
    double na, nb;
    int kind, t;

    fixture_open(&fx);
    snprintf(p1, sizeof(p1), "%s/a.safetensors", fx.dir);
    snprintf(p2, sizeof(p2), "%s/b.safetensors", fx.dir);
    for (kind = 0; kind < 2; kind++) {
        smlp_optim_opts_init(&o);
        o.kind = kind;
        o.nesterov = kind == SMLP_OPTIM_SGD;
        o.clip_norm = 0.5;
        trainer_open(&fx, &a, &o, NULL);
        for (t = 0; t < 3; t++)
            train_step(&a, smlp_lr_cosine(0.05, 0.001, t, 2, 6));
        ck_assert_msg(smlp_checkpoint_save(a.s, a.opt, p1, keys, vals, 1) ==
                          SMLP_OK,
                      "%s", smlp_session_errmsg(a.s));
        ck_assert_str_eq(file_meta(p1, "smlp.optim.kind"),
                         kind ? "adamw" : "sgd");
        ck_assert_str_eq(file_meta(p1, "smlp.optim.steps"), "3");
        ck_assert_str_eq(file_meta(p1, "epoch"), "1");

        trainer_open(&fx, &b, &o, NULL);
        ck_assert_msg(smlp_checkpoint_load(b.s, b.opt, p1) == SMLP_OK, "%s",
                      smlp_session_errmsg(b.s));
        ck_assert_int_eq(smlp_optim_steps(b.opt), 3);
        ck_assert_int_eq(smlp_checkpoint_save(b.s, b.opt, p2, keys, vals, 1),
                         SMLP_OK);
        files_equal(p1, p2);
        for (t = 3; t < 6; t++) {
            na = train_step(&a, smlp_lr_cosine(0.05, 0.001, t, 2, 6));
            nb = train_step(&b, smlp_lr_cosine(0.05, 0.001, t, 2, 6));
            ck_assert_double_eq(na, nb);
        }
        snap_take(a.s, &sa);
        snap_expect(b.s, &sa);
        ck_assert_int_eq(smlp_checkpoint_save(a.s, a.opt, p1, keys, vals, 1),
                         SMLP_OK);
        ck_assert_int_eq(smlp_checkpoint_save(b.s, b.opt, p2, keys, vals, 1),
                         SMLP_OK);
        files_equal(p1, p2);
        ck_assert_str_eq(file_meta(p1, "smlp.step"), "6");
        trainer_close(&a);
        trainer_close(&b);
    }
    fixture_close(&fx);
}
END_TEST

/*
 * The step counter matters: with a noisy gate (moe.gate.topk, noise seeded
 * by the session seed, the node and the step) the combine weights are the
 * logits of the loss, so each step's gradient depends on the step's
 * noise.  A run resumed from a checkpoint continues bit-identically; one
 * whose session ran once more after the load (one step of noise ahead)
 * does not.
 */
static const char *graph_noisy =
    "{\"name\": \"noisy\", \"plugins\": [\"core\", \"moe\"], \"tensors\": ["
    "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 4]},"
    "{\"name\": \"labels\", \"dtype\": \"I32\", \"kind\": \"Input\","
    " \"shape\": [-1]},"
    "{\"name\": \"Wg\", \"kind\": \"Parameter\", \"shape\": [3, 4],"
    " \"init\": {\"kind\": \"Uniform\", \"a\": -0.5, \"b\": 0.5,"
    " \"seed\": 5}},"
    "{\"name\": \"expert\", \"dtype\": \"I32\"},"
    "{\"name\": \"slot\", \"dtype\": \"I32\"},"
    "{\"name\": \"weight\"},"
    "{\"name\": \"slot_item\", \"dtype\": \"I32\"},"
    "{\"name\": \"aux\"},"
    "{\"name\": \"load\", \"dtype\": \"I32\"},"
    "{\"name\": \"loss\", \"kind\": \"Output\"}],"
    "\"nodes\": ["
    "{\"name\": \"gate\", \"op\": \"moe.gate.topk\", \"inputs\": [0, 2],"
    " \"outputs\": [3, 4, 5, 6, 7, 8], \"attrs\": ["
    "{\"name\": \"k\", \"type\": \"Int\", \"i\": 2},"
    "{\"name\": \"capacity_factor\", \"type\": \"Float\", \"f\": 0},"
    "{\"name\": \"noise_std\", \"type\": \"Float\", \"f\": 3.0},"
    "{\"name\": \"aux\", \"type\": \"String\", \"s\": \"none\"}]},"
    "{\"name\": \"ce\", \"op\": \"core.softmax_cross_entropy\","
    " \"inputs\": [5, 1], \"outputs\": [9]}]}";

static smlp_session_t *
noisy_session(struct fixture *fx, smlp_graph_t *g)
{
    static const float x[8] = {0.5f, -1, 2, 0.25f, -0.75f, 1.5f, 0, 1};
    static const int32_t labels[2] = {1, 0};
    struct smlp_session_opts o;
    struct smlp_error err;
    smlp_session_t *s;

    smlp_session_opts_init(&o);
    o.batch = 2;
    o.threads = 1;
    o.seed = 5;
    o.training = 1;
    o.loss = "loss";
    s = smlp_session_create(g, fx->reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    memcpy(data(s, "x"), x, sizeof(x));
    memcpy(data(s, "labels"), labels, sizeof(labels));
    return s;
}

START_TEST(test_checkpoint_resume_noise_step)
{
    struct fixture fx;
    struct trainer a, b, c;
    struct smlp_error err;
    smlp_graph_t *g;
    float wa[12];
    char path[600];
    int t;

    fixture_open(&fx);
    tu_graph_from_json(fx.dir, "noisy", graph_noisy, path, sizeof(path));
    g = smlp_graph_load(path, &err);
    ck_assert_msg(g != NULL, "%s", err.msg);
    snprintf(path, sizeof(path), "%s/noisy.safetensors", fx.dir);
    a.s = noisy_session(&fx, g);
    a.opt = smlp_optim_create(a.s, NULL, &err);
    ck_assert_msg(a.opt != NULL, "%s", err.msg);
    for (t = 0; t < 3; t++)
        train_step(&a, 0.05);
    ck_assert_int_eq(smlp_checkpoint_save(a.s, a.opt, path, NULL, NULL, 0),
                     SMLP_OK);
    for (t = 0; t < 4; t++)
        train_step(&a, 0.05);
    memcpy(wa, data(a.s, "Wg"), sizeof(wa));

    b.s = noisy_session(&fx, g);
    b.opt = smlp_optim_create(b.s, NULL, &err);
    ck_assert_int_eq(smlp_checkpoint_load(b.s, b.opt, path), SMLP_OK);
    for (t = 0; t < 4; t++)
        train_step(&b, 0.05);
    ck_assert_mem_eq(data(b.s, "Wg"), wa, sizeof(wa));

    c.s = noisy_session(&fx, g);
    c.opt = smlp_optim_create(c.s, NULL, &err);
    ck_assert_int_eq(smlp_checkpoint_load(c.s, c.opt, path), SMLP_OK);
    ck_assert_int_eq(smlp_session_run(c.s), SMLP_OK);
    for (t = 0; t < 4; t++)
        train_step(&c, 0.05);
    ck_assert_msg(memcmp(data(c.s, "Wg"), wa, sizeof(wa)) != 0,
                  "the noise does not depend on the step: this test "
                  "cannot tell whether the step counter is restored");
    trainer_close(&a);
    trainer_close(&b);
    trainer_close(&c);
    smlp_graph_unload(g);
    fixture_close(&fx);
}
END_TEST

/* dst = src with metadata `key` set to `value` (NULL: left out), the
 * tensors unchanged; written as another program would, without
 * smlp.data_hash. */
static void
copy_with_meta(const char *src, const char *dst, const char *key,
               const char *value)
{
    const char *keys[64], *vals[64];
    struct smlp__st_file *f;
    char err[512];
    int32_t i, n = 0;

    ck_assert_msg(smlp__st_open(src, &f, err, sizeof(err)) == SMLP_OK, "%s",
                  err);
    for (i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) != 0 &&
            strcmp(f->meta_keys[i], SMLP__ST_HASH_KEY) != 0) {
            ck_assert_int_lt(n, 63);
            keys[n] = f->meta_keys[i];
            vals[n++] = f->meta_values[i];
        }
    if (value != NULL) {
        keys[n] = key;
        vals[n++] = value;
    }
    ck_assert_msg(smlp__st_write(dst, f->entries, f->n_entries, keys, vals,
                                 n, err, sizeof(err)) == SMLP_OK,
                  "%s", err);
    smlp__st_close(f);
}

START_TEST(test_checkpoint_load_optimizer_errors)
{
    struct smlp_optim_opts o;
    struct fixture fx;
    struct trainer a, sgd;
    struct snap before;
    char path[600], plain[600];

    fixture_open(&fx);
    snprintf(path, sizeof(path), "%s/adamw.safetensors", fx.dir);
    snprintf(plain, sizeof(plain), "%s/plain.safetensors", fx.dir);
    trainer_open(&fx, &a, NULL, NULL);
    train_step(&a, 0.01);
    ck_assert_int_eq(smlp_checkpoint_save(a.s, a.opt, path, NULL, NULL, 0),
                     SMLP_OK);
    ck_assert_int_eq(smlp_checkpoint_save(a.s, NULL, plain, NULL, NULL, 0),
                     SMLP_OK);
    smlp_optim_opts_init(&o);
    o.kind = SMLP_OPTIM_SGD;
    trainer_open(&fx, &sgd, &o, NULL);
    train_step(&sgd, 0.01);
    snap_take(sgd.s, &before);
    /* Another kind. */
    ck_assert_int_eq(smlp_checkpoint_load(sgd.s, sgd.opt, path),
                     SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(sgd.s), path);
    tu_assert_contains(smlp_session_errmsg(sgd.s),
                       "holds the state of optimizer 'adamw', this "
                       "optimizer is sgd");
    snap_expect(sgd.s, &before);
    ck_assert_int_eq(smlp_optim_steps(sgd.opt), 1);
    /* No optimizer state at all. */
    ck_assert_int_eq(smlp_checkpoint_load(sgd.s, sgd.opt, plain),
                     SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(sgd.s), "holds no optimizer state");
    snap_expect(sgd.s, &before);
    /* The optimizer of another session: refused both ways, the file
     * and the session left as they were. */
    ck_assert_int_eq(smlp_checkpoint_save(sgd.s, a.opt, plain, NULL, NULL,
                                          0),
                     SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(sgd.s),
                       "the optimizer belongs to another session");
    ck_assert_ptr_null(file_meta(plain, "smlp.optim.kind"));
    ck_assert_int_eq(smlp_checkpoint_load(sgd.s, a.opt, path), SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(sgd.s),
                       "the optimizer belongs to another session");
    snap_expect(sgd.s, &before);
    ck_assert_int_eq(smlp_optim_steps(a.opt), 1);
    /* Without the optimizer, the parameters of either file load. */
    ck_assert_int_eq(smlp_checkpoint_load(sgd.s, NULL, path), SMLP_OK);
    ck_assert_int_eq(smlp_optim_steps(sgd.opt), 1);
    /* An optimizer step count that is not one, or none at all. */
    {
        char edited[700];

        snprintf(edited, sizeof(edited), "%s/steps.safetensors", fx.dir);
        copy_with_meta(path, edited, "smlp.optim.steps", "1x");
        snap_take(a.s, &before);
        ck_assert_int_eq(smlp_checkpoint_load(a.s, a.opt, edited),
                         SMLP_EBADFILE);
        tu_assert_contains(smlp_session_errmsg(a.s),
                           "metadata smlp.optim.steps is '1x', not a step "
                           "count");
        copy_with_meta(path, edited, "smlp.optim.steps", NULL);
        ck_assert_int_eq(smlp_checkpoint_load(a.s, a.opt, edited),
                         SMLP_EBADFILE);
        tu_assert_contains(smlp_session_errmsg(a.s),
                           "metadata smlp.optim.steps is missing");
        snap_expect(a.s, &before);
        ck_assert_int_eq(smlp_optim_steps(a.opt), 1);
        /* The edited copy itself is sound: with a count it loads. */
        copy_with_meta(path, edited, "smlp.optim.steps", "7");
        ck_assert_int_eq(smlp_checkpoint_load(a.s, a.opt, edited), SMLP_OK);
        ck_assert_int_eq(smlp_optim_steps(a.opt), 7);
    }
    /* Same kind, other options: SGD without momentum has no buffers, so
     * the file lacks the ones SGD with momentum needs. */
    trainer_close(&sgd);
    o.momentum = 0;
    trainer_open(&fx, &sgd, &o, NULL);
    train_step(&sgd, 0.01);
    ck_assert_int_eq(smlp_checkpoint_save(sgd.s, sgd.opt, plain, NULL, NULL,
                                          0),
                     SMLP_OK);
    trainer_close(&sgd);
    o.momentum = 0.9;
    trainer_open(&fx, &sgd, &o, NULL);
    snap_take(sgd.s, &before);
    ck_assert_int_eq(smlp_checkpoint_load(sgd.s, sgd.opt, plain),
                     SMLP_ENOENT);
    tu_assert_contains(smlp_session_errmsg(sgd.s),
                       "has no tensor 'optim.momentum_buffer.W' (the sgd "
                       "optimizer, for parameter 'W', needs it)");
    snap_expect(sgd.s, &before);
    ck_assert_int_eq(smlp_optim_steps(sgd.opt), 0);
    trainer_close(&sgd);
    trainer_close(&a);
    fixture_close(&fx);
}
END_TEST

/*
 * check_finite covers the checkpoint's tensors: the graph's parameters
 * and the optimizer's state.  A checkpoint whose tensor holds a NaN in
 * its last element (b [3]: element 2; optim.exp_avg.W [3, 4]: element
 * 11) is refused by a check_finite session naming that tensor, and
 * nothing is loaded.  The file is written as another program would,
 * without smlp.data_hash (which would refuse the edited bytes first);
 * a session without check_finite loads it, so the refusal is that check.
 */
static const struct {
    const char *tensor;
    int elem, n;
} nan_cases[] = {{"b", 2, 3}, {"optim.exp_avg.W", 11, 12}};

START_TEST(test_checkpoint_load_nonfinite)
{
    const char *name = nan_cases[_i].tensor;
    const int elem = nan_cases[_i].elem;
    struct smlp__st_file *f;
    struct smlp__st_entry *e;
    struct smlp_session_opts so;
    struct smlp_error err;
    struct fixture fx;
    struct trainer a, c;
    struct snap before;
    const char *keys[64], *values[64];
    float *bad = NULL;
    char path[600], edited[600], msg[768], ebuf[512];
    int32_t i, n_meta = 0;

    fixture_open(&fx);
    snprintf(path, sizeof(path), "%s/state.safetensors", fx.dir);
    snprintf(edited, sizeof(edited), "%s/nan_state.safetensors", fx.dir);
    trainer_open(&fx, &a, NULL, NULL);
    train_step(&a, 0.01);
    ck_assert_int_eq(smlp_checkpoint_save(a.s, a.opt, path, NULL, NULL, 0),
                     SMLP_OK);
    trainer_close(&a);

    ck_assert_msg(smlp__st_open(path, &f, ebuf, sizeof(ebuf)) == SMLP_OK, "%s",
                  ebuf);
    e = malloc((size_t)f->n_entries * sizeof(*e));
    ck_assert_ptr_nonnull(e);
    for (i = 0; i < f->n_entries; i++) {
        e[i] = f->entries[i];
        if (strcmp(e[i].name, name) != 0)
            continue;
        ck_assert_uint_eq(e[i].nbytes, nan_cases[_i].n * sizeof(float));
        bad = malloc(e[i].nbytes);
        ck_assert_ptr_nonnull(bad);
        memcpy(bad, e[i].data, e[i].nbytes);
        bad[elem] = NAN;
        e[i].data = bad;
    }
    ck_assert_ptr_nonnull(bad);
    for (i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], SMLP__ST_HASH_KEY) != 0) {
            ck_assert_int_lt(n_meta, 64);
            keys[n_meta] = f->meta_keys[i];
            values[n_meta++] = f->meta_values[i];
        }
    ck_assert_msg(smlp__st_write(edited, e, f->n_entries, keys, values, n_meta,
                                 ebuf, sizeof(ebuf)) == SMLP_OK,
                  "%s", ebuf);
    smlp__st_close(f);
    free(e);
    free(bad);

    smlp_session_opts_init(&so);
    so.batch = 2;
    so.threads = 1;
    so.training = 1;
    so.loss = "loss";
    so.check_finite = 1;
    c.s = smlp_session_create(fx.g, fx.reg, &so, &err);
    ck_assert_msg(c.s != NULL, "%s", err.msg);
    c.opt = smlp_optim_create(c.s, NULL, &err);
    ck_assert_msg(c.opt != NULL, "%s", err.msg);
    snap_take(c.s, &before);
    ck_assert_int_eq(smlp_checkpoint_load(c.s, c.opt, edited), SMLP_EBADFILE);
    snprintf(msg, sizeof(msg), "%s: tensor '%s': element %d is NaN", edited,
             name, elem);
    tu_assert_contains(smlp_session_errmsg(c.s), msg);
    snap_expect(c.s, &before);
    ck_assert_int_eq(smlp_optim_steps(c.opt), 0);
    trainer_close(&c);

    trainer_open(&fx, &c, NULL, NULL); /* no check_finite: it loads */
    ck_assert_msg(smlp_checkpoint_load(c.s, c.opt, edited) == SMLP_OK, "%s",
                  smlp_session_errmsg(c.s));
    ck_assert_int_eq(smlp_optim_steps(c.opt), 1);
    trainer_close(&c);
    fixture_close(&fx);
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

    tc = tcase_create("checkpoint");
    tcase_add_test(tc, test_checkpoint_roundtrip);
    tcase_add_test(tc, test_checkpoint_save_bad_meta);
    tcase_add_test(tc, test_checkpoint_save_atomic);
    tcase_add_test(tc, test_checkpoint_load_errors);
    tcase_add_test(tc, test_checkpoint_i32_state);
    suite_add_tcase(s, tc);

    tc = tcase_create("train");
    tcase_add_test(tc, test_optim_session_step);
    tcase_add_test(tc, test_optim_session_frozen);
    tcase_add_test(tc, test_optim_session_nonfinite);
    tcase_add_test(tc, test_optim_step_needs_backward);
    tcase_add_test(tc, test_optim_create_errors);
    tcase_add_test(tc, test_optim_plan_only_refused);
    tcase_add_test(tc, test_checkpoint_resume_bit_identical);
    tcase_add_test(tc, test_checkpoint_resume_noise_step);
    tcase_add_test(tc, test_checkpoint_load_optimizer_errors);
    tcase_add_loop_test(tc, test_checkpoint_load_nonfinite, 0,
                        (int)(sizeof(nan_cases) / sizeof(nan_cases[0])));
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
