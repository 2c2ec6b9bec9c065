/*
 * check_op_moe_edges.c - the moe plugin's ops at their edges: ties and
 * degenerate routing in the gates (all logits equal, k = E, one expert,
 * capacity below k, every item on one expert), logits of +-1e4 and +-1e30 in
 * training with the aux losses, a NaN item, normalize: topk when the kept
 * weights underflow, a single item and G = 1; the expert FFN in its
 * activation's tails and with an empty buffer row holding NaN; dispatch and
 * combine carrying NaN and 1e30 as data.
 *
 * The fixture and the comparisons are tests/edgefx.h's, which says where the
 * expected values come from.
 */
#include "edgefx.h"

static void
setup(void)
{
    setup_plugin("moe");
}

#define NGATE 6 /* outputs of a gate */

/* The e x e identity: a router whose logits are the rows of x. */
static struct smlp_tensor *
eye(int64_t e)
{
    struct smlp_tensor *t = ophost_f32(OPHOST_SHAPE(e, e), NULL);
    int64_t i;

    for (i = 0; i < e; i++)
        ((float *)t->data)[i * e + i] = 1.0f;
    return t;
}

/*
 * The invariants of every gate's outputs (OPS.md, the gate contract),
 * whatever the logits: experts in [0, E), slots in [-1, M) and inside
 * the item's group's rows, slot_item the inverse of slot, weight 0 where
 * dropped, load the kept and dropped counts.
 */
static void
check_routing(struct smlp_tensor *const *out, int64_t n, int64_t k,
              int64_t e, int64_t g)
{
    const int32_t *ex = out[0]->data, *sl = out[1]->data;
    const int32_t *si = out[3]->data, *load = out[5]->data;
    const float *w = out[2]->data;
    int64_t m = out[3]->shape[1], cap = m / (n / g), i, j, kept = 0;
    int64_t cnt[64][2];

    ck_assert_int_le(e, 64);
    memset(cnt, 0, sizeof(cnt));
    for (i = 0; i < n * k; i++) {
        int64_t item = i / k, grp = item / g;

        ck_assert_msg(ex[i] >= 0 && ex[i] < e, "expert[%lld] = %d",
                      (long long)i, (int)ex[i]);
        if (sl[i] < 0) {
            ck_assert_int_eq(sl[i], -1);
            ck_assert_msg(w[i] == 0.0f, "dropped weight[%lld] = %g",
                          (long long)i, (double)w[i]);
            cnt[ex[i]][1]++;
            continue;
        }
        ck_assert_msg(sl[i] >= grp * cap && sl[i] < (grp + 1) * cap,
                      "slot[%lld] = %d outside group %lld", (long long)i,
                      (int)sl[i], (long long)grp);
        ck_assert_int_eq(si[ex[i] * m + sl[i]], item);
        for (j = 0; j < k; j++)
            if (j != i % k)
                ck_assert(ex[item * k + j] != ex[i]);
        cnt[ex[i]][0]++;
        kept++;
    }
    for (i = 0; i < e * m; i++)
        if (si[i] >= 0)
            kept--;
        else
            ck_assert_int_eq(si[i], -1);
    ck_assert_int_eq(kept, 0); /* as many full rows as kept choices */
    for (i = 0; i < e; i++) {
        ck_assert_int_eq(load[2 * i], cnt[i][0]);
        ck_assert_int_eq(load[2 * i + 1], cnt[i][1]);
    }
}

/* Runs gate op on logits x [n, e] (identity router) into out[]. */
static void
gate_logits(const char *op, const struct ophost_attr *attrs, const float *x,
            int64_t n, int64_t e, struct smlp_tensor **in,
            struct smlp_tensor **out)
{
    in[0] = ophost_f32(OPHOST_SHAPE(n, e), x);
    in[1] = eye(e);
    run_ok(op, attrs, in, 2, out, NGATE);
}

/*
 * Every item's logits equal (all 0), E = 4, k = 1, N = 6, cf 1: p = 1/4
 * everywhere, ties go to the lower expert (OPS.md), so every item
 * chooses expert 0; cap = ceil(1·6·1/4) = 2 keeps items 0 and 1 and
 * drops 2..5, for topk (item order) and for importance (all scores tie:
 * lower item first) alike.  weight 1/4 where kept; load e0 {2, 4}.  In
 * training the switch aux is E·f_0·P_0 = 4·1·1/4 = 1 (times aux_weight
 * 0.01) and the vmoe aux is ½·CV²(importance) = 0.  The same bits for 1
 * and 3 threads.
 */
START_TEST(test_edges_gate_all_logits_equal)
{
    static const char *const gates[2] = {"moe.gate.topk",
                                         "moe.gate.importance"};
    float x[24] = {0};
    const int32_t ex[6] = {0, 0, 0, 0, 0, 0}, sl[6] = {0, 1, -1, -1, -1, -1};
    const int32_t si[8] = {0, 1, -1, -1, -1, -1, -1, -1};
    const int32_t load[8] = {2, 4, 0, 0, 0, 0, 0, 0};
    const double w[6] = {0.25, 0.25, 0, 0, 0, 0};
    struct ophost_attr sw[] = {OPHOST_STRING("aux", "switch"), OPHOST_END};
    struct smlp_tensor *in[2], *out[NGATE], *in3[2], *out3[NGATE];
    int gi, j;

    for (gi = 0; gi < 2; gi++) {
        gate_logits(gates[gi], NULL, x, 6, 4, in, out);
        check_routing(out, 6, 1, 4, 6);
        expect_i(out[0], ex, 6, "expert");
        expect_i(out[1], sl, 6, "slot");
        expect_t(out[2], w, 6, 1e-7, "weight");
        expect_i(out[3], si, 8, "slot_item");
        expect_i(out[5], load, 8, "load");
        ophost_set_threads(host, 3);
        gate_logits(gates[gi], NULL, x, 6, 4, in3, out3);
        for (j = 0; j < NGATE; j++)
            ck_assert_msg(memcmp(out[j]->data, out3[j]->data,
                                 (size_t)smlp_tensor_numel(out[j]) * 4) ==
                              0,
                          "%s output %d differs with 3 threads", gates[gi],
                          j);
        ophost_set_threads(host, 1);
        free_all(in3, 2);
        free_all(out3, NGATE);
        free_all(out, NGATE);
        ophost_set_training(host, 1);
        run_ok(gates[gi], sw, in, 2, out, NGATE);
        ck_assert_float_eq_tol(scalar(out[4]), 0.01f, 1e-8f);
        free_all(out, NGATE);
        run_ok(gates[gi], NULL, in, 2, out, NGATE);
        ck_assert_float_eq_tol(scalar(out[4]), 0.0f, 1e-9f);
        ophost_set_training(host, 0);
        free_all(in, 2);
        free_all(out, NGATE);
    }
}
END_TEST

/*
 * k = E = 3 on equal logits: every item's choices are (0, 1, 2) (ties ->
 * lower expert, rank order).  N = 4, cf 0.5: cap = ceil(3·4·0.5/3) = 2,
 * so each rank fills every expert with items 0 and 1, and items 2 and 3
 * are dropped entirely (weight 0 on all three choices).  normalize topk:
 * items 0 and 1 weigh (1/3)/(3·1/3) = 1/3 per choice.
 */
START_TEST(test_edges_gate_k_equals_e)
{
    float x[12] = {0};
    const int32_t ex[12] = {0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2};
    const int32_t sl[12] = {0, 0, 0, 1, 1, 1, -1, -1, -1, -1, -1, -1};
    const int32_t si[6] = {0, 1, 0, 1, 0, 1};
    const int32_t load[6] = {2, 2, 2, 2, 2, 2};
    const double t = 1.0 / 3.0;
    const double w[12] = {t, t, t, t, t, t, 0, 0, 0, 0, 0, 0};
    struct ophost_attr attrs[] = {OPHOST_INT("k", 3),
                                  OPHOST_FLOAT("capacity_factor", 0.5),
                                  OPHOST_STRING("normalize", "topk"),
                                  OPHOST_END};
    struct smlp_tensor *in[2], *out[NGATE];

    gate_logits("moe.gate.topk", attrs, x, 4, 3, in, out);
    check_routing(out, 4, 3, 3, 4);
    expect_i(out[0], ex, 12, "expert");
    expect_i(out[1], sl, 12, "slot");
    expect_i(out[3], si, 6, "slot_item");
    expect_i(out[5], load, 6, "load");
    expect_t(out[2], w, 12, 1e-7, "weight");
    free_all(in, 2);
    free_all(out, NGATE);
}
END_TEST

/*
 * One expert (E = 1, Wg [1, 2]): p = 1 for every item whatever x (even
 * ±1e30), so all choose expert 0 with weight 1.  N = 5, cf 0.5: cap =
 * ceil(1·5·0.5/1) = 3: items 0..2 kept (item order), 3 and 4 dropped.
 * In training the vmoe aux is 0 (CV² of one value) and the switch aux
 * E·f·P = 1 (times 0.01); the gradients are 0: softmax over one logit is
 * constant.
 */
START_TEST(test_edges_gate_one_expert)
{
    const float x[10] = {1, 2, -1e30f, 3, 0, 0, 1e30f, 1e30f, -4, 5};
    const float wg[2] = {0.5f, -2};
    const int32_t ex[5] = {0, 0, 0, 0, 0}, sl[5] = {0, 1, 2, -1, -1};
    const int32_t si[3] = {0, 1, 2}, load[2] = {3, 2};
    const double w[5] = {1, 1, 1, 0, 0}, zero[10] = {0};
    struct ophost_attr cf[] = {OPHOST_FLOAT("capacity_factor", 0.5),
                               OPHOST_END};
    struct ophost_attr sw[] = {OPHOST_FLOAT("capacity_factor", 0.5),
                               OPHOST_STRING("aux", "switch"), OPHOST_END};
    const int want[2] = {1, 1};
    struct smlp_tensor *in[2], *out[NGATE], *gout[NGATE] = {NULL}, *gin[2];

    in[0] = ophost_f32(OPHOST_SHAPE(5, 2), x);
    in[1] = ophost_f32(OPHOST_SHAPE(1, 2), wg);
    run_ok("moe.gate.topk", cf, in, 2, out, NGATE);
    check_routing(out, 5, 1, 1, 5);
    expect_i(out[0], ex, 5, "expert");
    expect_i(out[1], sl, 5, "slot");
    expect_i(out[3], si, 3, "slot_item");
    expect_i(out[5], load, 2, "load");
    expect_t(out[2], w, 5, 0.0, "weight");
    free_all(out, NGATE);
    ophost_set_training(host, 1);
    run_ok("moe.gate.topk", cf, in, 2, out, NGATE);
    ck_assert_float_eq_tol(scalar(out[4]), 0.0f, 1e-9f);
    free_all(out, NGATE);
    run_ok("moe.gate.topk", sw, in, 2, out, NGATE);
    ck_assert_float_eq_tol(scalar(out[4]), 0.01f, 1e-9f);
    gout[2] = filled(OPHOST_SHAPE(5, 1), 1.0f);
    gout[4] = filled(0, NULL, 1.0f);
    backward_ok("moe.gate.topk", sw, in, 2, out, NGATE, gout, want, gin);
    expect_t(gin[0], zero, 10, 0.0, "d x");
    expect_t(gin[1], zero, 2, 0.0, "d Wg");
    free_all(gin, 2);
    free_all(gout, NGATE);
    free_all(out, NGATE);
    free_all(in, 2);
}
END_TEST

/*
 * Capacity 1 below k = 3 (E = 4, N = 2, cf 0.5: cap = ceil(3·2·0.5/4) =
 * 1).  Item 0 logits (4, 3, 2, 1) choose (0, 1, 2), item 1 (1, 2, 3, 4)
 * choose (3, 2, 1).  Rank 0: e0 <- 0, e3 <- 1.  Rank 1: e1 <- 0, e2 <- 1.
 * Rank 2: item 0's e2 and item 1's e1 are full: both dropped.  So each
 * item keeps two choices, and with normalize topk its weights are its two
 * kept p over their sum: item 0 (e^4, e^3)/(e^4 + e^3) = (σ1, 1 - σ1),
 * item 1 the same for (e3, e2).
 */
START_TEST(test_edges_gate_capacity_below_k)
{
    const float x[8] = {4, 3, 2, 1, 1, 2, 3, 4};
    const int32_t ex[6] = {0, 1, 2, 3, 2, 1}, sl[6] = {0, 0, -1, 0, 0, -1};
    const int32_t si[4] = {0, 0, 1, 1}, load[8] = {1, 0, 1, 1, 1, 1, 1, 0};
    const double s1 = 1.0 / (1.0 + exp(-1.0));
    const double w[6] = {s1, 1 - s1, 0, s1, 1 - s1, 0};
    struct ophost_attr attrs[] = {OPHOST_INT("k", 3),
                                  OPHOST_FLOAT("capacity_factor", 0.5),
                                  OPHOST_STRING("normalize", "topk"),
                                  OPHOST_END};
    struct smlp_tensor *in[2], *out[NGATE];

    gate_logits("moe.gate.topk", attrs, x, 2, 4, in, out);
    ck_assert_int_eq(out[3]->shape[1], 1);
    check_routing(out, 2, 3, 4, 2);
    expect_i(out[0], ex, 6, "expert");
    expect_i(out[1], sl, 6, "slot");
    expect_i(out[3], si, 4, "slot_item");
    expect_i(out[5], load, 8, "load");
    expect_t(out[2], w, 6, 1e-6, "weight");
    free_all(in, 2);
    free_all(out, NGATE);
}
END_TEST

/*
 * Every item prefers expert 2 (logits (0, 0, s_i) with s_i = 1, 5, 3, 4,
 * 2), N = 5, E = 3, cf 1: cap = ceil(5/3) = 2.  topk keeps exactly the
 * first two items (0, 1) in item order; importance keeps the two most
 * confident, items 1 (s = 5) then 3 (s = 4), in that slot order.  The
 * other three are dropped (load e2 {2, 3}).
 */
START_TEST(test_edges_gate_all_on_one_expert)
{
    const float x[15] = {0, 0, 1, 0, 0, 5, 0, 0, 3, 0, 0, 4, 0, 0, 2};
    const int32_t ex[5] = {2, 2, 2, 2, 2};
    const int32_t sl_topk[5] = {0, 1, -1, -1, -1};
    const int32_t sl_imp[5] = {-1, 0, -1, 1, -1};
    const int32_t si_topk[6] = {-1, -1, -1, -1, 0, 1};
    const int32_t si_imp[6] = {-1, -1, -1, -1, 1, 3};
    const int32_t load[6] = {0, 0, 0, 0, 2, 3};
    struct smlp_tensor *in[2], *out[NGATE];

    gate_logits("moe.gate.topk", NULL, x, 5, 3, in, out);
    check_routing(out, 5, 1, 3, 5);
    expect_i(out[0], ex, 5, "expert");
    expect_i(out[1], sl_topk, 5, "topk slot");
    expect_i(out[3], si_topk, 6, "topk slot_item");
    expect_i(out[5], load, 6, "load");
    free_all(in, 2);
    free_all(out, NGATE);
    gate_logits("moe.gate.importance", NULL, x, 5, 3, in, out);
    check_routing(out, 5, 1, 3, 5);
    expect_i(out[0], ex, 5, "expert");
    expect_i(out[1], sl_imp, 5, "importance slot");
    expect_i(out[3], si_imp, 6, "importance slot_item");
    expect_i(out[5], load, 6, "load");
    free_all(in, 2);
    free_all(out, NGATE);
}
END_TEST

/*
 * Gate logits of ±1e30 and ±1e4 (the softmax subtracts the row maximum
 * in double): item 0 (1e30, -1e30, 0) has p = (1, 0, 0), item 1 (-1e4,
 * 1e4, 1e4 - 1) has p = (0, 1/(1+e⁻¹), 1/(1+e)) up to the f32 logits
 * (1e4 - 1 is exact in f32), item 2 (-1e30, -1e30, -1e30) has p = 1/3
 * each (ties: experts 0, 1).  k = 2, cf 0: nothing dropped.  The
 * choices: (0, 1) (p ties at 0 -> lower), (1, 2), (0, 1); the weights
 * are those p.  In training (vmoe and switch aux) the aux and the
 * gradients must be finite, and with every p saturated at 0 or 1 for
 * items 0 the d logits of that item are 0.
 */
START_TEST(test_edges_gate_huge_logits)
{
    const float x[9] = {1e30f, -1e30f, 0,      -1e4f, 1e4f,
                        1e4f - 1, -1e30f, -1e30f, -1e30f};
    const int32_t ex[6] = {0, 1, 1, 2, 0, 1};
    const double s1 = 1.0 / (1.0 + exp(-1.0)), t = 1.0 / 3.0;
    const double w[6] = {1, 0, s1, 1 - s1, t, t};
    static const char *const aux[2] = {"vmoe", "switch"};
    const int want[2] = {1, 1};
    struct smlp_tensor *in[2], *out[NGATE], *gout[NGATE] = {NULL}, *gin[2];
    int a, j;

    for (a = 0; a < 2; a++) {
        struct ophost_attr attrs[] = {OPHOST_INT("k", 2),
                                      OPHOST_FLOAT("capacity_factor", 0.0),
                                      OPHOST_STRING("aux", aux[a]),
                                      OPHOST_END};

        ophost_set_training(host, a);
        gate_logits("moe.gate.topk", attrs, x, 3, 3, in, out);
        check_routing(out, 3, 2, 3, 3);
        expect_i(out[0], ex, 6, "expert");
        expect_t(out[2], w, 6, 1e-6, "weight");
        ck_assert(isfinite(scalar(out[4])));
        gout[2] = filled(OPHOST_SHAPE(3, 2), 1.0f);
        ((float *)gout[2]->data)[0] = -3.0f;
        gout[4] = filled(0, NULL, 1.0f);
        backward_ok("moe.gate.topk", attrs, in, 2, out, NGATE, gout, want,
                    gin);
        expect_all_finite(gin[0], "d x");
        expect_all_finite(gin[1], "d Wg");
        for (j = 0; j < 3; j++)
            ck_assert_msg(((float *)gin[0]->data)[j] == 0.0f,
                          "d x[0,%d] = %g", j,
                          (double)((float *)gin[0]->data)[j]);
        free_all(gin, 2);
        free_all(gout, NGATE);
        free_all(out, NGATE);
        free_all(in, 2);
    }
    ophost_set_training(host, 0);
}
END_TEST

/*
 * A NaN item among the gates' items (row (NaN, 0, 0): through the
 * identity router every logit of the row is NaN).  Its p are NaN, which
 * compare false with everything: it takes experts 0..k-1, and the
 * importance gate ranks it last (the kernel maps a NaN score to -inf; the
 * docs leave NaN open).  Nothing else changes: N = 4, E = 3, k = 1, cf 1
 * (cap 2); items 0 (1,0,0) and 2 (2,0,0) choose e0, item 3 (0,0,1) e2.
 * topk, item order: e0 <- 0, 1 (NaN, weight NaN); 2 dropped; e2 <- 3.
 * importance, scores e/(e+2), -inf, e²/(e²+2), e/(e+2): order 2, 0, 3,
 * 1, so e0 <- 2, 0 and the NaN item is dropped (weight exactly 0).
 */
START_TEST(test_edges_gate_nan_item)
{
    const float x[12] = {1, 0, 0, NAN, 0, 0, 2, 0, 0, 0, 0, 1};
    const int32_t ex[4] = {0, 0, 0, 2};
    const int32_t sl_topk[4] = {0, 1, -1, 0}, sl_imp[4] = {1, -1, 0, 0};
    const int32_t si_topk[6] = {0, 1, -1, -1, 3, -1};
    const int32_t si_imp[6] = {2, 0, -1, -1, 3, -1};
    const double e1 = exp(1.0), e2 = exp(2.0);
    const double w_topk[4] = {e1 / (e1 + 2), NAN, 0, e1 / (e1 + 2)};
    const double w_imp[4] = {e1 / (e1 + 2), 0, e2 / (e2 + 2),
                             e1 / (e1 + 2)};
    struct smlp_tensor *in[2], *out[NGATE];

    gate_logits("moe.gate.topk", NULL, x, 4, 3, in, out);
    expect_i(out[0], ex, 4, "expert");
    expect_i(out[1], sl_topk, 4, "topk slot");
    expect_i(out[3], si_topk, 6, "topk slot_item");
    expect_t(out[2], w_topk, 4, 1e-6, "topk weight");
    free_all(in, 2);
    free_all(out, NGATE);
    gate_logits("moe.gate.importance", NULL, x, 4, 3, in, out);
    check_routing(out, 4, 1, 3, 4);
    expect_i(out[0], ex, 4, "expert");
    expect_i(out[1], sl_imp, 4, "importance slot");
    expect_i(out[3], si_imp, 6, "importance slot_item");
    expect_t(out[2], w_imp, 4, 1e-6, "importance weight");
    free_all(in, 2);
    free_all(out, NGATE);
}
END_TEST

/*
 * normalize topk when an item's first choice is dropped and the kept
 * second one has an f32 p of 0.  E = 3, k = 2, N = 2, cf 0.75: cap =
 * ceil(2·2·0.75/3) = 1.  Item 0 (0, -300, -1) chooses (0, 2), item 1 (0,
 * -200, -300) chooses (0, 1) (its p of e1 and e2 are both 0 in f32: a
 * tie, lower expert); rank 0: e0 <- item 0, item 1 dropped; rank 1: e2
 * <- item 0, e1 <- item 1.  Item 0 weighs (1, e⁻¹)/(1 + e⁻¹).  Item 1's
 * kept p is e⁻²⁰⁰ ≈ 1e-87, 0 in f32: float64 arithmetic would put weight
 * 1 on it (first choice dropped), but the weights are quotients of the
 * f32 softmax, and a kept sum of 0 gives weight 0 (docs/ops.md, moe.h
 * smlp__moe_weights; GShard's f32 code divides by max(sum, eps): 0 too).
 */
START_TEST(test_edges_gate_topk_normalize_underflow)
{
    const float x[6] = {0, -300, -1, 0, -200, -300};
    const int32_t ex[4] = {0, 2, 0, 1}, sl[4] = {0, 0, -1, 0};
    const double q = 1.0 / (1.0 + exp(-1.0));
    const double w[4] = {q, 1 - q, 0, 0};
    struct ophost_attr attrs[] = {OPHOST_INT("k", 2),
                                  OPHOST_FLOAT("capacity_factor", 0.75),
                                  OPHOST_STRING("normalize", "topk"),
                                  OPHOST_END};
    struct smlp_tensor *in[2], *out[NGATE];

    gate_logits("moe.gate.topk", attrs, x, 2, 3, in, out);
    check_routing(out, 2, 2, 3, 2);
    expect_i(out[0], ex, 4, "expert");
    expect_i(out[1], sl, 4, "slot");
    expect_t(out[2], w, 4, 1e-6, "weight");
    free_all(in, 2);
    free_all(out, NGATE);
}
END_TEST

/*
 * One item (N = 1, batch 1): E = 4, k = 2, cf 1: cap = ceil(2·1/4) = 1.
 * Logits (0, 3, 1, 2) choose (1, 3), both kept at row 0, weights p_1 =
 * e³/S, p_3 = e²/S with S = 1 + e + e² + e³.  per_image with T = 1 and
 * hash (E = 3, T = 1: position 0 -> expert 0) on the same item.  In
 * training the gradients of the learned gates are finite.  Then G = 1
 * (every item its own group, N = 3, k = 2, E = 2): cap = ceil(2·1/2) =
 * 1, M = 3, every choice kept in its own group's row.
 */
START_TEST(test_edges_gate_single_item)
{
    static const char *const gates[3] = {
        "moe.gate.topk", "moe.gate.importance", "moe.gate.per_image"};
    const float x[4] = {0, 3, 1, 2};
    const double s = 1 + exp(1.0) + exp(2.0) + exp(3.0);
    const int32_t ex[2] = {1, 3}, sl[2] = {0, 0}, si[4] = {-1, 0, -1, 0};
    const double w[2] = {exp(3.0) / s, exp(2.0) / s};
    const int32_t hex[1] = {0}, hsl[1] = {0}, hsi[3] = {0, -1, -1};
    const float x3[6] = {1, 0, 0, 1, 2, 0};
    const int32_t ex3[6] = {0, 1, 1, 0, 0, 1}, sl3[6] = {0, 0, 1, 1, 2, 2};
    const int want[2] = {1, 1};
    struct ophost_attr hash[] = {OPHOST_INT("experts", 3),
                                 OPHOST_INT("items_per_image", 1),
                                 OPHOST_END};
    struct smlp_tensor *in[2], *out[NGATE], *gout[NGATE] = {NULL}, *gin[2];
    int gi;

    for (gi = 0; gi < 3; gi++) {
        struct ophost_attr attrs[] = {OPHOST_INT("k", 2),
                                      OPHOST_INT("items_per_image", 1),
                                      OPHOST_END};

        if (gi < 2)
            attrs[1] = (struct ophost_attr)OPHOST_END;
        gate_logits(gates[gi], attrs, x, 1, 4, in, out);
        check_routing(out, 1, 2, 4, 1);
        expect_i(out[0], ex, 2, "expert");
        expect_i(out[1], sl, 2, "slot");
        expect_i(out[3], si, 4, "slot_item");
        expect_t(out[2], w, 2, 1e-6, "weight");
        free_all(out, NGATE);
        ophost_set_training(host, 1);
        run_ok(gates[gi], attrs, in, 2, out, NGATE);
        gout[2] = filled(OPHOST_SHAPE(1, 2), 1.0f);
        gout[4] = filled(0, NULL, 1.0f);
        backward_ok(gates[gi], attrs, in, 2, out, NGATE, gout, want, gin);
        expect_all_finite(gin[0], "d x");
        expect_all_finite(gin[1], "d Wg");
        ophost_set_training(host, 0);
        free_all(gin, 2);
        free_all(gout, NGATE);
        free_all(out, NGATE);
        free_all(in, 2);
    }
    in[0] = ophost_f32(OPHOST_SHAPE(1, 4), x);
    run_ok("moe.gate.hash", hash, in, 1, out, NGATE);
    expect_i(out[0], hex, 1, "hash expert");
    expect_i(out[1], hsl, 1, "hash slot");
    expect_i(out[3], hsi, 3, "hash slot_item");
    free_all(in, 1);
    free_all(out, NGATE);
    {
        struct ophost_attr g1[] = {OPHOST_INT("k", 2),
                                   OPHOST_INT("group_size", 1), OPHOST_END};

        gate_logits("moe.gate.topk", g1, x3, 3, 2, in, out);
        check_routing(out, 3, 2, 2, 1);
        ck_assert_int_eq(out[3]->shape[1], 3);
        expect_i(out[0], ex3, 6, "G = 1 expert");
        expect_i(out[1], sl3, 6, "G = 1 slot");
        free_all(in, 2);
        free_all(out, NGATE);
    }
}
END_TEST

/*
 * The expert FFN in GELU's tails and with garbage in an empty buffer row
 * (E = 1, M = 4, d = h = o = 1; W1 = 1, b1 = 0, W2 = 2, b2 = 0.5).  buf
 * rows 1e4, -1e4, NaN (marked empty: slot_item -1) and 3: out = 2·GELU(a)
 * + 0.5 = 2e4 + 0.5, 0.5, 0 (empty rows are zero, OPS.md) and 6Φ(3) +
 * 0.5.  Backward with d out = 1: d a = 2·GELU'(a) = 2, 0, -, 2g with g =
 * Φ(3) + 3φ(3); d buf = d a (0 on the empty row, whose output is the
 * constant 0); d W1 = Σ d a·buf = 2e4 + 6g, d b1 = 2 + 2g, d W2 = Σ
 * GELU(a) = 1e4 + 3Φ(3), d b2 = 3: the empty row's NaN and its constant
 * output reach no gradient.
 */
START_TEST(test_edges_expert_ffn_tails_and_empty_row)
{
    const float buf[4] = {1e4f, -1e4f, NAN, 3};
    const int32_t si[4] = {0, 1, -1, 2};
    const float one = 1, zero = 0, two = 2, half = 0.5f;
    const double phi3 = 0.5 * (1.0 + erf(3.0 / sqrt(2.0)));
    const double g = phi3 + 3.0 * exp(-4.5) / sqrt(2.0 * M_PI);
    const double out_w[4] = {2e4 + 0.5, 0.5, 0, 6.0 * phi3 + 0.5};
    const double dbuf[4] = {2, 0, 0, 2 * g};
    const double dw1[1] = {2e4 + 6 * g}, db1[1] = {2 + 2 * g};
    const double dw2[1] = {1e4 + 3 * phi3}, db2[1] = {3};
    const int want[6] = {1, 1, 1, 1, 1, 0};
    struct smlp_tensor *in[6], *out[1], *gout[1], *gin[6];

    in[0] = ophost_f32(OPHOST_SHAPE(1, 4, 1), buf);
    in[1] = ophost_f32(OPHOST_SHAPE(1, 1, 1), &one);
    in[2] = ophost_f32(OPHOST_SHAPE(1, 1), &zero);
    in[3] = ophost_f32(OPHOST_SHAPE(1, 1, 1), &two);
    in[4] = ophost_f32(OPHOST_SHAPE(1, 1), &half);
    in[5] = ophost_i32(OPHOST_SHAPE(1, 4), si);
    run_ok("moe.expert_ffn", NULL, in, 6, out, 1);
    expect_t(out[0], out_w, 4, 1e-6, "out");
    ck_assert(((float *)out[0]->data)[2] == 0.0f);
    gout[0] = filled(OPHOST_SHAPE(1, 4, 1), 1.0f);
    backward_ok("moe.expert_ffn", NULL, in, 6, out, 1, gout, want, gin);
    expect_t(gin[0], dbuf, 4, 1e-6, "d buf");
    expect_t(gin[1], dw1, 1, 1e-6, "d W1");
    expect_t(gin[2], db1, 1, 1e-6, "d b1");
    expect_t(gin[3], dw2, 1, 1e-6, "d W2");
    expect_t(gin[4], db2, 1, 1e-6, "d b2");
    free_all(in, 6);
    free_all(out, 1);
    free_all(gout, 1);
    free_all(gin, 6);
}
END_TEST

/*
 * dispatch and combine carry NaN and huge values through as data,
 * without mixing rows: dispatch of x rows (NaN, 1), (1e30, -1e30), (2, 3)
 * with slot_item [[2, -1], [0, 1]] gives [[(2,3), (0,0)], [(NaN,1),
 * (1e30,-1e30)]] (the empty row is 0, not garbage); combine of that buf
 * reads only kept choices, so an item whose only kept choice is the
 * clean row stays finite although the other rows hold NaN: y0 = 0.5·(2,
 * 3) (its second choice, on the NaN row, is dropped), y1 = 1·(NaN, 1) +
 * 0.25·(2,3) = (NaN, 1.75), y2 (all dropped) = 0.
 */
START_TEST(test_edges_dispatch_combine_nonfinite)
{
    const float x[6] = {NAN, 1, 1e30f, -1e30f, 2, 3};
    const int32_t si[4] = {2, -1, 0, 1};
    const double buf_w[8] = {2, 3, 0, 0, NAN, 1, F1E30, -F1E30};
    const int32_t ex[6] = {0, 1, 1, 0, 0, 1}, sl[6] = {0, -1, 0, 0, -1, -1};
    const float w[6] = {0.5f, 0, 1, 0.25f, 1, 1};
    const double y_w[6] = {1, 1.5, NAN, 1.75, 0, 0};
    struct smlp_tensor *in[4], *out[1], *cin[4], *y[1];

    in[0] = ophost_f32(OPHOST_SHAPE(3, 2), x);
    in[1] = ophost_i32(OPHOST_SHAPE(2, 2), si);
    run_ok("moe.dispatch", NULL, in, 2, out, 1);
    expect_t(out[0], buf_w, 8, 0.0, "buf");
    cin[0] = out[0];
    cin[1] = ophost_i32(OPHOST_SHAPE(3, 2), ex);
    cin[2] = ophost_i32(OPHOST_SHAPE(3, 2), sl);
    cin[3] = ophost_f32(OPHOST_SHAPE(3, 2), w);
    run_ok("moe.combine", NULL, cin, 4, y, 1);
    expect_t(y[0], y_w, 6, 1e-7, "y");
    free_all(in, 2);
    free_all(cin, 4);
    free_all(y, 1);
}
END_TEST

static Suite *
edges_suite(void)
{
    Suite *s = suite_create("op_moe_edges");
    TCase *tc;

    tc = tcase_create("moe");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_edges_gate_all_logits_equal);
    tcase_add_test(tc, test_edges_gate_k_equals_e);
    tcase_add_test(tc, test_edges_gate_one_expert);
    tcase_add_test(tc, test_edges_gate_capacity_below_k);
    tcase_add_test(tc, test_edges_gate_all_on_one_expert);
    tcase_add_test(tc, test_edges_gate_huge_logits);
    tcase_add_test(tc, test_edges_gate_nan_item);
    tcase_add_test(tc, test_edges_gate_topk_normalize_underflow);
    tcase_add_test(tc, test_edges_gate_single_item);
    tcase_add_test(tc, test_edges_expert_ffn_tails_and_empty_row);
    tcase_add_test(tc, test_edges_dispatch_combine_nonfinite);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return edges_run(edges_suite());
}
