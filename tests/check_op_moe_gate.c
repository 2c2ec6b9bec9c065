/*
 * check_op_moe_gate.c - the routing of the `moe` plugin's gates:
 * moe.gate.topk (capacity, groups, normalisation), moe.gate.importance,
 * moe.gate.per_image and moe.gate.hash, and the gates' shape and
 * attribute errors.
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

/* ---- moe.gate.topk ------------------------------------------------------ */

START_TEST(test_gate_topk_capacity_overflow)
{
    /* E = 2, k = 1, G = N = 4, cf 1: cap = ceil(1·4·1/2) = 2, M = 2.
     * Items 0, 1, 2 prefer expert 0, item 3 expert 1: items 0 and 1 fill
     * expert 0, item 2 (later) is dropped, item 3 takes expert 1 row 0. */
    const float x[] = {1, 0, 2, 0, 3, 0, 0, 1};
    const struct gate_want w = {
        .expert = (const int32_t[]){0, 0, 0, 1},
        .slot = (const int32_t[]){0, 1, -1, 0},
        .slot_item = (const int32_t[]){0, 1, 3, -1},
        .load = (const int32_t[]){2, 1, 1, 0},
        .weight = (const double[]){SIG1, SIG2, 0.0, SIG1},
        .m = 2,
    };

    gate_eye("moe.gate.topk", NULL, x, 4, 2, 1, &w);
}
END_TEST

START_TEST(test_gate_topk_k2_rank_order)
{
    /* E = 2, k = 2, N = 4, cf 0.75: cap = ceil(2·4·0.75/2) = 3.
     * p: item 0 [σ1, 1−σ1], item 1 [1−σ2, σ2], item 2 [σ3, 1−σ3],
     * item 3 [σ.5, 1−σ.5]; choices (0,1), (1,0), (0,1), (0,1).
     * Rank 0 first: e0 <- items 0, 2, 3 (rows 0, 1, 2), e1 <- item 1
     * (row 0).  Rank 1: item 0 -> e1 row 1; item 1 -> e0 is full:
     * dropped (while the later items 2, 3 kept their first choice
     * there); item 2 -> e1 row 2; item 3 -> e1 full: dropped.
     * load e0 {3 kept, 1 dropped}, e1 {3, 1}. */
    const float x[] = {1, 0, 0, 2, 3, 0, 0.5f, 0};
    const struct gate_want w = {
        .expert = (const int32_t[]){0, 1, 1, 0, 0, 1, 0, 1},
        .slot = (const int32_t[]){0, 1, 0, -1, 1, 2, 2, -1},
        .slot_item = (const int32_t[]){0, 2, 3, 1, 0, 2},
        .load = (const int32_t[]){3, 1, 3, 1},
        .weight = (const double[]){SIG1, 1 - SIG1, SIG2, 0.0, SIG3, 1 - SIG3,
                                   SIG05, 0.0},
        .m = 3,
    };
    struct ophost_attr attrs[] = {OPHOST_INT("k", 2),
                                  OPHOST_FLOAT("capacity_factor", 0.75),
                                  OPHOST_END};

    gate_eye("moe.gate.topk", attrs, x, 4, 2, 2, &w);
}
END_TEST

START_TEST(test_gate_topk_k2_item_major_differs)
{
    /* E = 2, k = 2, N = 2, cf 0.5: cap = ceil(2·2·0.5/2) = 1.  Item 0
     * chooses (0, 1), item 1 (1, 0).  Rank by rank: both first choices
     * are kept and both second choices dropped (an item-major order
     * would have given item 0 both experts and dropped item 1). */
    const float x[] = {2, 0, 0, 1};
    const struct gate_want w = {
        .expert = (const int32_t[]){0, 1, 1, 0},
        .slot = (const int32_t[]){0, -1, 0, -1},
        .slot_item = (const int32_t[]){0, 1},
        .load = (const int32_t[]){1, 1, 1, 1},
        .weight = (const double[]){SIG2, 0.0, SIG1, 0.0},
        .m = 1,
    };
    struct ophost_attr attrs[] = {OPHOST_INT("k", 2),
                                  OPHOST_FLOAT("capacity_factor", 0.5),
                                  OPHOST_END};

    gate_eye("moe.gate.topk", attrs, x, 2, 2, 2, &w);
}
END_TEST

START_TEST(test_gate_topk_ties_lower_expert)
{
    /* Logits [1,1,0] and [0,1,1]: equal p go to the lower expert, so the
     * choices are (0, 1) and (1, 2).  cf 0: cap = G = 2, no drops.
     * Rank 0: item 0 -> e0 row 0, item 1 -> e1 row 0; rank 1: item 0 ->
     * e1 row 1, item 1 -> e2 row 0.
     * p of [1,1,0] = [e, e, 1]/(2e + 1) = 0.4223187982515182 twice. */
    const float x[] = {1, 1, 0, 0, 1, 1};
    const double pt = 0.4223187982515182;
    const struct gate_want w = {
        .expert = (const int32_t[]){0, 1, 1, 2},
        .slot = (const int32_t[]){0, 1, 0, 0},
        .slot_item = (const int32_t[]){0, -1, 1, 0, 1, -1},
        .load = (const int32_t[]){1, 0, 2, 0, 1, 0},
        .weight = (const double[]){pt, pt, pt, pt},
        .m = 2,
    };
    struct ophost_attr attrs[] = {OPHOST_INT("k", 2),
                                  OPHOST_FLOAT("capacity_factor", 0.0),
                                  OPHOST_END};

    gate_eye("moe.gate.topk", attrs, x, 2, 3, 2, &w);
}
END_TEST

START_TEST(test_gate_topk_groups)
{
    /* E = 2, k = 1, N = 4, G = 2, cf 1: cap = ceil(1·2·1/2) = 1, M = 2.
     * Group 0 (items 0, 1) owns row 0 of each expert, group 1 row 1.
     * Items 0, 1, 3 prefer e0, item 2 e1.  Group 0: item 0 -> e0 row 0,
     * item 1 dropped.  Group 1: item 2 -> e1 row 1, item 3 -> e0 row 1
     * (its own group's row, although group 0 filled e0). */
    const float x[] = {1, 0, 2, 0, 0, 1, 3, 0};
    const struct gate_want w = {
        .expert = (const int32_t[]){0, 0, 1, 0},
        .slot = (const int32_t[]){0, -1, 1, 1},
        .slot_item = (const int32_t[]){0, 3, -1, 2},
        .load = (const int32_t[]){2, 1, 1, 0},
        .weight = (const double[]){SIG1, 0.0, SIG1, SIG3},
        .m = 2,
    };
    struct ophost_attr attrs[] = {OPHOST_INT("group_size", 2), OPHOST_END};

    gate_eye("moe.gate.topk", attrs, x, 4, 2, 1, &w);
}
END_TEST

START_TEST(test_gate_topk_no_drop_cf_le_0)
{
    /* cf <= 0: cap = G = 4 whatever k and E; all four items fit e0. */
    const float x[] = {1, 0, 2, 0, 3, 0, 0.5f, 0};
    const struct gate_want w = {
        .expert = (const int32_t[]){0, 0, 0, 0},
        .slot = (const int32_t[]){0, 1, 2, 3},
        .slot_item = (const int32_t[]){0, 1, 2, 3, -1, -1, -1, -1},
        .load = (const int32_t[]){4, 0, 0, 0},
        .weight = (const double[]){SIG1, SIG2, SIG3, SIG05},
        .m = 4,
    };
    struct ophost_attr zero[] = {OPHOST_FLOAT("capacity_factor", 0.0),
                                 OPHOST_END};
    struct ophost_attr neg[] = {OPHOST_FLOAT("capacity_factor", -1.0),
                                OPHOST_INT("capacity_multiple", 3),
                                OPHOST_END};

    gate_eye("moe.gate.topk", zero, x, 4, 2, 1, &w);
    gate_eye("moe.gate.topk", neg, x, 4, 2, 1, &w);
}
END_TEST

/* M of a topk gate on N items, E experts (eye router), with attrs. */
static int64_t
gate_rows(const struct ophost_attr *attrs, int64_t n, int64_t e)
{
    struct smlp_tensor *in[2] = {ophost_f32(OPHOST_SHAPE(n, e), NULL),
                                 eye(e)};
    struct smlp_tensor *out[NGATE] = {NULL};
    const char *msg;
    int64_t m;
    int rc;

    rc = ophost_infer(host, "moe.gate.topk", attrs, in, 2, out, NGATE, &msg);
    ck_assert_msg(rc == SMLP_OK, "infer: %s", msg);
    m = out[3]->shape[1];
    free_all(in, 2);
    free_all(out, NGATE);
    return m;
}

START_TEST(test_gate_capacity_multiple)
{
    /* N = 8, E = 2, k = 1, G = 4 (2 groups).
     * cf 1: cap = ceil(4/2) = 2, multiple 4 -> 4, M = 2·4 = 8.
     * cf 0.1: ceil(0.2) = 1, multiple 3 -> 3, M = 6.
     * cf 0.01: ceil(0.02) = 1 (at least 1), multiple 1, M = 2.
     * cf 1.3, k 2: ceil(2·4·1.3/2) = ceil(5.2) = 6, M = 12.
     * multiple 2 (the smallest that rounds): cf 0.1 gives 1 -> 2, M = 4;
     * cf 1 gives 2, already a multiple, so it stays 2, M = 4 (rounding
     * must not add a multiple to a capacity that is one). */
    struct ophost_attr a1[] = {OPHOST_INT("group_size", 4),
                               OPHOST_INT("capacity_multiple", 4),
                               OPHOST_END};
    struct ophost_attr a2[] = {OPHOST_INT("group_size", 4),
                               OPHOST_FLOAT("capacity_factor", 0.1),
                               OPHOST_INT("capacity_multiple", 3),
                               OPHOST_END};
    struct ophost_attr a3[] = {OPHOST_INT("group_size", 4),
                               OPHOST_FLOAT("capacity_factor", 0.01),
                               OPHOST_END};
    struct ophost_attr a4[] = {OPHOST_INT("group_size", 4),
                               OPHOST_INT("k", 2),
                               OPHOST_FLOAT("capacity_factor", 1.3),
                               OPHOST_END};
    struct ophost_attr a5[] = {OPHOST_INT("group_size", 4),
                               OPHOST_FLOAT("capacity_factor", 0.1),
                               OPHOST_INT("capacity_multiple", 2),
                               OPHOST_END};
    struct ophost_attr a6[] = {OPHOST_INT("group_size", 4),
                               OPHOST_INT("capacity_multiple", 2),
                               OPHOST_END};

    ck_assert_int_eq(gate_rows(a1, 8, 2), 8);
    ck_assert_int_eq(gate_rows(a2, 8, 2), 6);
    ck_assert_int_eq(gate_rows(a3, 8, 2), 2);
    ck_assert_int_eq(gate_rows(a4, 8, 2), 12);
    ck_assert_int_eq(gate_rows(a5, 8, 2), 4);
    ck_assert_int_eq(gate_rows(a6, 8, 2), 4);
}
END_TEST

START_TEST(test_gate_capacity_multiple_no_drop)
{
    /* cf 1 gives cap 2 but capacity_multiple 4 rounds it to 4, so the
     * third item on e0 is kept (it would be dropped with cap 2). */
    const float x[] = {1, 0, 2, 0, 3, 0, 0, 1};
    const struct gate_want w = {
        .expert = (const int32_t[]){0, 0, 0, 1},
        .slot = (const int32_t[]){0, 1, 2, 0},
        .slot_item = (const int32_t[]){0, 1, 2, -1, 3, -1, -1, -1},
        .load = (const int32_t[]){3, 0, 1, 0},
        .m = 4,
    };
    struct ophost_attr attrs[] = {OPHOST_INT("capacity_multiple", 4),
                                  OPHOST_END};

    gate_eye("moe.gate.topk", attrs, x, 4, 2, 1, &w);
}
END_TEST

START_TEST(test_gate_capacity_at_least_one)
{
    /* OPS.md: the capacity is "at least 1".  ceil(k·G·cf/E) is already 1
     * for any cf > 0 unless k·G·cf/E underflows: with the smallest
     * subnormal cf = DBL_TRUE_MIN = 2^-1074, k = 1, G = N = 2, E = 8 the
     * quotient 2^-1076 rounds to 0 and so does its ceil, so only the
     * "at least 1" rule keeps cap = 1 (M = 1).  Both items prefer e0 (eye
     * router, logits [1,0,...] and [2,0,...]): topk (item order) gives
     * the one row to item 0 (weight p = e/(e + 7)) and drops item 1;
     * importance gives it to the more confident item 1 (weight e²/(e² +
     * 7)) and drops item 0.
     * With capacity_multiple 4 the 1 is rounded up to cap = M = 4 and
     * both items are kept (item 1's weight e²/(e² + 7)); a capacity of 0
     * would stay 0 through the rounding. */
    const float x[] = {1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0};
    const struct gate_want one = {
        .expert = (const int32_t[]){0, 0},
        .slot = (const int32_t[]){0, -1},
        .slot_item = (const int32_t[]){0, -1, -1, -1, -1, -1, -1, -1},
        .load = (const int32_t[]){1, 1, 0, 0, 0, 0, 0, 0,
                                  0, 0, 0, 0, 0, 0, 0, 0},
        .weight = (const double[]){0.27970806737656245, 0.0},
        .m = 1,
    };
    const struct gate_want one_imp = {
        .expert = (const int32_t[]){0, 0},
        .slot = (const int32_t[]){-1, 0},
        .slot_item = (const int32_t[]){1, -1, -1, -1, -1, -1, -1, -1},
        .load = (const int32_t[]){1, 1, 0, 0, 0, 0, 0, 0,
                                  0, 0, 0, 0, 0, 0, 0, 0},
        .weight = (const double[]){0.0, 0.5135191667978681},
        .m = 1,
    };
    const struct gate_want four = {
        .slot = (const int32_t[]){0, 1},
        .slot_item = (const int32_t[]){0,  1,  -1, -1, -1, -1, -1, -1,
                                       -1, -1, -1, -1, -1, -1, -1, -1,
                                       -1, -1, -1, -1, -1, -1, -1, -1,
                                       -1, -1, -1, -1, -1, -1, -1, -1},
        .load = (const int32_t[]){2, 0, 0, 0, 0, 0, 0, 0,
                                  0, 0, 0, 0, 0, 0, 0, 0},
        .weight = (const double[]){0.27970806737656245, 0.5135191667978681},
        .m = 4,
    };
    struct ophost_attr tiny[] = {OPHOST_FLOAT("capacity_factor",
                                              DBL_TRUE_MIN),
                                 OPHOST_END};
    struct ophost_attr tiny4[] = {OPHOST_FLOAT("capacity_factor",
                                               DBL_TRUE_MIN),
                                  OPHOST_INT("capacity_multiple", 4),
                                  OPHOST_END};

    gate_eye("moe.gate.topk", tiny, x, 2, 8, 1, &one);
    gate_eye("moe.gate.importance", tiny, x, 2, 8, 1, &one_imp);
    gate_eye("moe.gate.topk", tiny4, x, 2, 8, 1, &four);
    /* The runs above are in inference, on eval_capacity_factor (which
     * defaults to capacity_factor); training uses capacity_factor. */
    ophost_set_training(host, 1);
    gate_eye("moe.gate.topk", tiny, x, 2, 8, 1, &one);
}
END_TEST

START_TEST(test_gate_eval_vs_training_capacity)
{
    /* capacity_factor 1 (training): cap = 2; eval_capacity_factor 0.5
     * (inference): cap = ceil(4·0.5/2) = 1.  All items prefer e0. */
    const float x[] = {1, 0, 2, 0, 3, 0, 0.5f, 0};
    const struct gate_want eval = {
        .slot = (const int32_t[]){0, -1, -1, -1},
        .slot_item = (const int32_t[]){0, -1},
        .load = (const int32_t[]){1, 3, 0, 0},
        .m = 1,
    };
    const struct gate_want train = {
        .slot = (const int32_t[]){0, 1, -1, -1},
        .slot_item = (const int32_t[]){0, 1, -1, -1},
        .load = (const int32_t[]){2, 2, 0, 0},
        .m = 2,
    };
    struct ophost_attr attrs[] = {OPHOST_FLOAT("capacity_factor", 1.0),
                                  OPHOST_FLOAT("eval_capacity_factor", 0.5),
                                  OPHOST_END};
    struct ophost_attr dflt[] = {OPHOST_FLOAT("capacity_factor", 0.5),
                                 OPHOST_END};

    ophost_set_training(host, 0);
    gate_eye("moe.gate.topk", attrs, x, 4, 2, 1, &eval);
    /* eval_capacity_factor defaults to capacity_factor. */
    gate_eye("moe.gate.topk", dflt, x, 4, 2, 1, &eval);
    ophost_set_training(host, 1);
    gate_eye("moe.gate.topk", attrs, x, 4, 2, 1, &train);
}
END_TEST

START_TEST(test_gate_normalize_topk)
{
    /* E = 3, k = 2, N = 2, cf 0.75: cap = ceil(2·2·0.75/3) = 1.
     * Item 0 logits [2,1,0]: p = [.66524, .24473, .09003], choices
     * (0, 1); item 1 [0,1,2]: choices (2, 1).  Rank 0: item 0 -> e0,
     * item 1 -> e2; rank 1: item 0 -> e1, item 1 -> e1 full: dropped.
     * none: weights = p of kept choices.  topk: item 0 keeps both:
     * .66524/(.66524+.24473) = σ(1), .24473/... = 1 − σ(1); item 1 keeps
     * only its first: 1 and 0.  Each item's weights sum to 1. */
    const float x[] = {2, 1, 0, 0, 1, 2};
    const double p0 = 0.6652409557748219, p1 = 0.24472847105479764;
    const struct gate_want none = {
        .expert = (const int32_t[]){0, 1, 2, 1},
        .slot = (const int32_t[]){0, 0, 0, -1},
        .weight = (const double[]){p0, p1, p0, 0.0},
        .m = 1,
    };
    const struct gate_want topk = {
        .expert = (const int32_t[]){0, 1, 2, 1},
        .slot = (const int32_t[]){0, 0, 0, -1},
        .weight = (const double[]){SIG1, 1 - SIG1, 1.0, 0.0},
        .m = 1,
    };
    struct ophost_attr a_none[] = {OPHOST_INT("k", 2),
                                   OPHOST_FLOAT("capacity_factor", 0.75),
                                   OPHOST_STRING("normalize", "none"),
                                   OPHOST_END};
    struct ophost_attr a_topk[] = {OPHOST_INT("k", 2),
                                   OPHOST_FLOAT("capacity_factor", 0.75),
                                   OPHOST_STRING("normalize", "topk"),
                                   OPHOST_END};

    gate_eye("moe.gate.topk", a_none, x, 2, 3, 2, &none);
    gate_eye("moe.gate.topk", a_topk, x, 2, 3, 2, &topk);
}
END_TEST

START_TEST(test_gate_normalize_topk_all_dropped)
{
    /* E = 2, k = 2, cap 1 (cf 0.5, N = 2): both items prefer e0 then e1.
     * Rank 0: item 0 -> e0, item 1 dropped; rank 1: item 0 -> e1, item 1
     * dropped.  Item 1 keeps nothing: all its weights are 0. */
    const float x[] = {1, 0, 2, 0};
    const struct gate_want w = {
        .expert = (const int32_t[]){0, 1, 0, 1},
        .slot = (const int32_t[]){0, 0, -1, -1},
        .weight = (const double[]){SIG1, 1 - SIG1, 0.0, 0.0},
        .load = (const int32_t[]){1, 1, 1, 1},
        .m = 1,
    };
    struct ophost_attr attrs[] = {OPHOST_INT("k", 2),
                                  OPHOST_FLOAT("capacity_factor", 0.5),
                                  OPHOST_STRING("normalize", "topk"),
                                  OPHOST_END};

    gate_eye("moe.gate.topk", attrs, x, 2, 2, 2, &w);
}
END_TEST

/* ---- moe.gate.importance ------------------------------------------------ */

START_TEST(test_gate_importance_drops_least_confident)
{
    /* E = 2, k = 1, N = 4, cf 0.5: cap = ceil(4·0.5/2) = 1.  Items 0-2
     * prefer e0 with max p σ1, σ3, σ2; item 3 prefers e1 (σ.5).  Priority
     * by descending max p: 1 (σ3), 2 (σ2), 0 (σ1), 3 (σ.5).  e0's single
     * row goes to item 1, items 2 and 0 are dropped; item 3 gets e1.
     * The topk gate on the same input keeps item 0 instead. */
    const float x[] = {1, 0, 3, 0, 2, 0, 0, 0.5f};
    const struct gate_want imp = {
        .expert = (const int32_t[]){0, 0, 0, 1},
        .slot = (const int32_t[]){-1, 0, -1, 0},
        .slot_item = (const int32_t[]){1, 3},
        .load = (const int32_t[]){1, 2, 1, 0},
        .weight = (const double[]){0.0, SIG3, 0.0, SIG05},
        .m = 1,
    };
    const struct gate_want topk = {
        .slot = (const int32_t[]){0, -1, -1, 0},
        .slot_item = (const int32_t[]){0, 3},
        .m = 1,
    };
    struct ophost_attr attrs[] = {OPHOST_FLOAT("capacity_factor", 0.5),
                                  OPHOST_END};

    gate_eye("moe.gate.importance", attrs, x, 4, 2, 1, &imp);
    gate_eye("moe.gate.topk", attrs, x, 4, 2, 1, &topk);
}
END_TEST

START_TEST(test_gate_importance_ties_lower_index)
{
    /* cf 1: cap 2.  Item 0 has max p σ1; items 1, 2, 3 tie at σ2.
     * Priority: 1, 2, 3 (ties -> lower index), then 0.  e0's two rows go
     * to items 1 and 2; items 3 and 0 are dropped. */
    const float x[] = {1, 0, 2, 0, 2, 0, 2, 0};
    const struct gate_want w = {
        .expert = (const int32_t[]){0, 0, 0, 0},
        .slot = (const int32_t[]){-1, 0, 1, -1},
        .slot_item = (const int32_t[]){1, 2, -1, -1},
        .load = (const int32_t[]){2, 2, 0, 0},
        .m = 2,
    };

    gate_eye("moe.gate.importance", NULL, x, 4, 2, 1, &w);
}
END_TEST

START_TEST(test_gate_importance_k2_groups)
{
    /* E = 2, k = 2, N = 4, G = 2, cf 0.5: cap = ceil(2·2·0.5/2) = 1.
     * Group 0: item 0 [1,0] (max σ1), item 1 [0,3] (max σ3): priority
     * 1, 0.  Rank 0: item 1 -> e1 row 0, item 0 -> e0 row 0; rank 1:
     * item 1 -> e0 full, item 0 -> e1 full: dropped.  Group 1 (rows 1):
     * item 2 [2,0] (σ2), item 3 [3,0] (σ3): priority 3, 2.  Rank 0:
     * item 3 -> e0 row 1, item 2 -> e0 full: dropped; rank 1: item 3 ->
     * e1 row 1, item 2 -> e1 full: dropped. */
    const float x[] = {1, 0, 0, 3, 2, 0, 3, 0};
    const struct gate_want w = {
        .expert = (const int32_t[]){0, 1, 1, 0, 0, 1, 0, 1},
        .slot = (const int32_t[]){0, -1, 0, -1, -1, -1, 1, 1},
        .slot_item = (const int32_t[]){0, 3, 1, 3},
        .load = (const int32_t[]){2, 2, 2, 2},
        .m = 2,
    };
    struct ophost_attr attrs[] = {OPHOST_INT("k", 2),
                                  OPHOST_INT("group_size", 2),
                                  OPHOST_FLOAT("capacity_factor", 0.5),
                                  OPHOST_END};

    gate_eye("moe.gate.importance", attrs, x, 4, 2, 2, &w);
}
END_TEST

/* ---- moe.gate.per_image ------------------------------------------------- */

START_TEST(test_gate_per_image_follows_image)
{
    /* T = 2, N = 4 (2 images), E = 2, cf 1: cap = ceil(4/2) = 2.
     * Image 0: items [3,0], [-1,0], mean [1,0] -> e0 with p σ1 (item 1
     * alone would prefer e1).  Image 1: [0,0], [0,2], mean [0,1] -> e1,
     * p σ1.  Every item follows its image with the image's weight. */
    const float x[] = {3, 0, -1, 0, 0, 0, 0, 2};
    const struct gate_want w = {
        .expert = (const int32_t[]){0, 0, 1, 1},
        .slot = (const int32_t[]){0, 1, 0, 1},
        .slot_item = (const int32_t[]){0, 1, 2, 3},
        .load = (const int32_t[]){2, 0, 2, 0},
        .weight = (const double[]){SIG1, SIG1, SIG1, SIG1},
        .m = 2,
    };
    struct ophost_attr attrs[] = {OPHOST_INT("items_per_image", 2),
                                  OPHOST_END};

    gate_eye("moe.gate.per_image", attrs, x, 4, 2, 1, &w);
}
END_TEST

START_TEST(test_gate_per_image_drops_in_item_order)
{
    /* Same images, cf 0.5: cap = ceil(4·0.5/2) = 1.  Each expert takes
     * the first item of its image; the second is dropped (weight 0). */
    const float x[] = {3, 0, -1, 0, 0, 0, 0, 2};
    const struct gate_want w = {
        .expert = (const int32_t[]){0, 0, 1, 1},
        .slot = (const int32_t[]){0, -1, 0, -1},
        .slot_item = (const int32_t[]){0, 2},
        .load = (const int32_t[]){1, 1, 1, 1},
        .weight = (const double[]){SIG1, 0.0, SIG1, 0.0},
        .m = 1,
    };
    struct ophost_attr attrs[] = {OPHOST_INT("items_per_image", 2),
                                  OPHOST_FLOAT("capacity_factor", 0.5),
                                  OPHOST_END};

    gate_eye("moe.gate.per_image", attrs, x, 4, 2, 1, &w);
}
END_TEST

START_TEST(test_gate_per_image_k2)
{
    /* T = 2, k = 2, E = 3, N = 4, one group, cf 0.75: cap = ceil(2·4·
     * 0.75/3) = 2.  Image 0 mean [2,1,0]: choices (0, 1); image 1 mean
     * [0,1,2]: choices (2, 1).  Rank 0 in item order: items 0, 1 -> e0
     * rows 0, 1; items 2, 3 -> e2 rows 0, 1.  Rank 1: items 0, 1 -> e1
     * rows 0, 1; items 2, 3 -> e1 full: dropped. */
    const float x[] = {2, 1, 0, 2, 1, 0, 0, 1, 2, 0, 1, 2};
    const double p0 = 0.6652409557748219, p1 = 0.24472847105479764;
    const struct gate_want w = {
        .expert = (const int32_t[]){0, 1, 0, 1, 2, 1, 2, 1},
        .slot = (const int32_t[]){0, 0, 1, 1, 0, -1, 1, -1},
        .slot_item = (const int32_t[]){0, 1, 0, 1, 2, 3},
        .load = (const int32_t[]){2, 0, 2, 2, 2, 0},
        .weight = (const double[]){p0, p1, p0, p1, p0, 0.0, p0, 0.0},
        .m = 2,
    };
    struct ophost_attr attrs[] = {OPHOST_INT("items_per_image", 2),
                                  OPHOST_INT("k", 2),
                                  OPHOST_FLOAT("capacity_factor", 0.75),
                                  OPHOST_END};

    gate_eye("moe.gate.per_image", attrs, x, 4, 3, 2, &w);
}
END_TEST

START_TEST(test_gate_per_image_superclass_aux)
{
    /* Image logits [1,0] and [0,1] (means as above), labels {0, 0}.
     * CE_0 = log(1 + e) − 1 = 0.3132616875182228, CE_1 = log(1 + e) =
     * 1.3132616875182228; aux ('none' balance term) = 0.5 · mean =
     * 0.4066308437591114.  Inference: 0. */
    const float x[] = {3, 0, -1, 0, 0, 0, 0, 2};
    const int32_t labels[] = {0, 0};
    struct smlp_tensor *in[3] = {ophost_f32(OPHOST_SHAPE(4, 2), x), eye(2),
                                 ophost_i32(OPHOST_SHAPE(2), labels)};
    struct smlp_tensor *out[NGATE];
    struct ophost_attr attrs[] = {OPHOST_INT("items_per_image", 2),
                                  OPHOST_STRING("aux", "none"),
                                  OPHOST_FLOAT("aux_weight", 0.5),
                                  OPHOST_END};

    ophost_set_training(host, 1);
    run_ok("moe.gate.per_image", attrs, in, 3, out, NGATE);
    assert_f32(out[4], (const double[]){0.4066308437591114}, 1, 1e-6,
               "aux");
    free_all(out, NGATE);
    ophost_set_training(host, 0);
    run_ok("moe.gate.per_image", attrs, in, 3, out, NGATE);
    assert_f32(out[4], (const double[]){0.0}, 1, 0.0, "aux");
    free_all(out, NGATE);
    free_all(in, 3);
}
END_TEST

START_TEST(test_gate_per_image_superclass_out_of_range)
{
    const int32_t labels[] = {0, 2};
    struct smlp_tensor *in[3] = {ophost_f32(OPHOST_SHAPE(4, 2), NULL),
                                 eye(2), ophost_i32(OPHOST_SHAPE(2), labels)};
    struct ophost_attr attrs[] = {OPHOST_INT("items_per_image", 2),
                                  OPHOST_END};

    ophost_set_training(host, 1);
    run_fails("moe.gate.per_image", attrs, in, 3, NGATE,
              "input 2 (superclass): label 2 of image 1 is out of range "
              "[0, 2)");
    free_all(in, 3);
}
END_TEST

START_TEST(test_gate_per_image_vmoe_over_images)
{
    /* Training, noise 0, aux_weight 1, one group of 2 images: image p
     * [σ1, 1−σ1] and [1−σ1, σ1], Imp = [1, 1]: CV² = 0, aux 0.  With
     * both images on e0 (x rows 3,4 = [2,0], [0,0], mean [1,0]): Imp =
     * [2σ1, 2 − 2σ1], mean 1, CV² = (2σ1 − 1)² = tanh²(½) =
     * 0.21355226703407257, aux = ½ of that. */
    const float bal[] = {3, 0, -1, 0, 0, 0, 0, 2};
    const float same[] = {3, 0, -1, 0, 2, 0, 0, 0};
    struct ophost_attr attrs[] = {OPHOST_INT("items_per_image", 2),
                                  OPHOST_FLOAT("aux_weight", 1.0),
                                  OPHOST_END};
    const struct gate_want w = {.m = 2};

    ophost_set_training(host, 1);
    ck_assert_double_eq_tol(
        gate_eye("moe.gate.per_image", attrs, bal, 4, 2, 1, &w), 0.0, 1e-7);
    ck_assert_double_eq_tol(
        gate_eye("moe.gate.per_image", attrs, same, 4, 2, 1, &w),
        0.5 * 0.21355226703407257, 1e-6);
}
END_TEST

/* ---- moe.gate.hash ------------------------------------------------------ */

/* Runs moe.gate.hash on N items of width 2 and checks the outputs. */
static void
hash_check(const struct ophost_attr *attrs, int64_t n, int64_t e,
           const struct gate_want *w)
{
    struct smlp_tensor *in[1] = {ophost_f32(OPHOST_SHAPE(n, 2), NULL)};
    struct smlp_tensor *out[NGATE];

    run_ok("moe.gate.hash", attrs, in, 1, out, NGATE);
    assert_shape(out[0], 2, (const int64_t[]){n, 1});
    assert_shape(out[3], 2, (const int64_t[]){e, w->m});
    assert_i32(out[0], w->expert, n, "expert");
    assert_i32(out[1], w->slot, n, "slot");
    assert_f32(out[2], w->weight, n, 0.0, "weight");
    assert_i32(out[3], w->slot_item, e * w->m, "slot_item");
    assert_i32(out[5], w->load, 2 * e, "load");
    assert_f32(out[4], (const double[]){0.0}, 1, 0.0, "aux");
    ck_assert_int_eq(ophost_stats(host)->macs, 0);
    free_all(in, 1);
    free_all(out, NGATE);
}

START_TEST(test_gate_hash_chunk)
{
    /* E = 3, T = 4, N = 8 (two images), G = N, cf default 0: cap = 8.
     * Position q = n mod 4 -> floor(3q/4) = 0, 0, 1, 2. */
    const struct gate_want w = {
        .expert = (const int32_t[]){0, 0, 1, 2, 0, 0, 1, 2},
        .slot = (const int32_t[]){0, 1, 0, 0, 2, 3, 1, 1},
        .weight = (const double[]){1, 1, 1, 1, 1, 1, 1, 1},
        .slot_item = (const int32_t[]){0, 1, 4, 5, -1, -1, -1, -1,
                                       2, 6, -1, -1, -1, -1, -1, -1,
                                       3, 7, -1, -1, -1, -1, -1, -1},
        .load = (const int32_t[]){4, 0, 2, 0, 2, 0},
        .m = 8,
    };
    struct ophost_attr attrs[] = {OPHOST_INT("experts", 3),
                                  OPHOST_INT("items_per_image", 4),
                                  OPHOST_END};

    hash_check(attrs, 8, 3, &w);
    ophost_set_training(host, 1); /* both modes route alike */
    hash_check(attrs, 8, 3, &w);
}
END_TEST

START_TEST(test_gate_hash_lowbias32)
{
    /* mode hash: expert = lowbias32(q) mod E.  lowbias32 of q = 0..5
     * (python3: h ^= h >> 16; h *= 0x7feb352d; h ^= h >> 15;
     * h *= 0x846ca68b; h ^= h >> 16, all mod 2^32):
     *   0 -> 0x00000000, 1 -> 0x688990c0 (1753845952),
     *   2 -> 0xd1132181 (3507691905), 3 -> 0x53f1e9dd (1408362973),
     *   4 -> 0xd97e5ed1 (3648937681), 5 -> 0x5c45d53e (1548080446);
     * mod 5: 0, 2, 0, 3, 1, 1.  E = 5, T = 6, N = 12, G = 6 (two
     * groups), cf 0: cap = 6, M = 12; group 1 owns rows 6..11. */
    const struct gate_want w = {
        .expert = (const int32_t[]){0, 2, 0, 3, 1, 1, 0, 2, 0, 3, 1, 1},
        .slot = (const int32_t[]){0, 0, 1, 0, 0, 1, 6, 6, 7, 6, 6, 7},
        .weight = (const double[]){1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
        .slot_item =
            (const int32_t[]){
                0, 2, -1, -1, -1, -1, 6, 8, -1, -1, -1, -1,   /* e0 */
                4, 5, -1, -1, -1, -1, 10, 11, -1, -1, -1, -1, /* e1 */
                1, -1, -1, -1, -1, -1, 7, -1, -1, -1, -1, -1, /* e2 */
                3, -1, -1, -1, -1, -1, 9, -1, -1, -1, -1, -1, /* e3 */
                -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1},
        .load = (const int32_t[]){4, 0, 4, 0, 2, 0, 2, 0, 0, 0},
        .m = 12,
    };
    struct ophost_attr attrs[] = {OPHOST_INT("experts", 5),
                                  OPHOST_INT("items_per_image", 6),
                                  OPHOST_INT("group_size", 6),
                                  OPHOST_STRING("mode", "hash"), OPHOST_END};

    hash_check(attrs, 12, 5, &w);
}
END_TEST

START_TEST(test_gate_hash_capacity_drops)
{
    /* chunk, E = 2, T = 3: q 0, 1, 2 -> floor(2q/3) = 0, 0, 1.  cf 0.5:
     * cap = ceil(1·3·0.5/2) = 1: item 1 is dropped (weight 0). */
    const struct gate_want w = {
        .expert = (const int32_t[]){0, 0, 1},
        .slot = (const int32_t[]){0, -1, 0},
        .weight = (const double[]){1, 0, 1},
        .slot_item = (const int32_t[]){0, 2},
        .load = (const int32_t[]){1, 1, 1, 0},
        .m = 1,
    };
    struct ophost_attr attrs[] = {OPHOST_INT("experts", 2),
                                  OPHOST_INT("items_per_image", 3),
                                  OPHOST_FLOAT("capacity_factor", 0.5),
                                  OPHOST_END};

    hash_check(attrs, 3, 2, &w);
}
END_TEST

START_TEST(test_gate_hash_errors)
{
    struct smlp_tensor *in[1] = {ophost_f32(OPHOST_SHAPE(8, 2), NULL)};
    struct ophost_attr no_e[] = {OPHOST_INT("items_per_image", 4),
                                 OPHOST_END};
    struct ophost_attr k2[] = {OPHOST_INT("experts", 2),
                               OPHOST_INT("items_per_image", 4),
                               OPHOST_INT("k", 2), OPHOST_END};
    struct ophost_attr k0[] = {OPHOST_INT("experts", 2),
                               OPHOST_INT("items_per_image", 4),
                               OPHOST_INT("k", 0), OPHOST_END};
    struct ophost_attr mode[] = {OPHOST_INT("experts", 2),
                                 OPHOST_INT("items_per_image", 4),
                                 OPHOST_STRING("mode", "random"), OPHOST_END};
    struct ophost_attr t3[] = {OPHOST_INT("experts", 2),
                               OPHOST_INT("items_per_image", 3),
                               OPHOST_END};

    infer_fails("moe.gate.hash", no_e, in, 1, NGATE,
                "missing required attribute 'experts'");
    infer_fails("moe.gate.hash", k2, in, 1, NGATE,
                "attribute 'k' = 2 is invalid");
    /* k = 1 exactly: 0 is refused as well as 2. */
    infer_fails("moe.gate.hash", k0, in, 1, NGATE,
                "attribute 'k' = 0 is invalid");
    infer_fails("moe.gate.hash", mode, in, 1, NGATE,
                "attribute 'mode' = 'random' is invalid: expected 'chunk' "
                "or 'hash'");
    infer_fails("moe.gate.hash", t3, in, 1, NGATE,
                "attribute 'items_per_image' = 3 does not divide the group "
                "size G = 8");
    free_all(in, 1);
}
END_TEST

/* ---- shape and attribute errors ------------------------------------------ */

START_TEST(test_gate_errors)
{
    struct smlp_tensor *in[3] = {ophost_f32(OPHOST_SHAPE(6, 3), NULL),
                                 ophost_f32(OPHOST_SHAPE(2, 3), NULL),
                                 NULL};
    struct ophost_attr k3[] = {OPHOST_INT("k", 3), OPHOST_END};
    struct ophost_attr g4[] = {OPHOST_INT("group_size", 4), OPHOST_END};
    struct ophost_attr aux[] = {OPHOST_STRING("aux", "foo"), OPHOST_END};
    struct ophost_attr norm[] = {OPHOST_STRING("normalize", "sum"),
                                 OPHOST_END};
    struct ophost_attr noise[] = {OPHOST_FLOAT("noise_std", -1.0),
                                  OPHOST_END};
    struct ophost_attr mult[] = {OPHOST_INT("capacity_multiple", 0),
                                 OPHOST_END};
    struct ophost_attr kf[] = {OPHOST_FLOAT("k", 1.0), OPHOST_END};
    struct ophost_attr t4[] = {OPHOST_INT("items_per_image", 4), OPHOST_END};
    struct ophost_attr t3[] = {OPHOST_INT("items_per_image", 3), OPHOST_END};
    struct ophost_attr k0[] = {OPHOST_INT("k", 0), OPHOST_END};
    struct ophost_attr inf[] = {OPHOST_FLOAT("aux_weight", INFINITY),
                                OPHOST_END};
    struct ophost_attr nan[] = {OPHOST_FLOAT("noise_std", NAN), OPHOST_END};

    infer_fails("moe.gate.topk", k3, in, 2, NGATE,
                "attribute 'k' = 3 is invalid: expected 1 <= k <= E = 2");
    /* Both ends of 1 <= k <= E. */
    infer_fails("moe.gate.topk", k0, in, 2, NGATE,
                "attribute 'k' = 0 is invalid: expected 1 <= k <= E = 2");
    /* Float attributes must be finite: inf and NaN pass a sign check. */
    infer_fails("moe.gate.topk", inf, in, 2, NGATE,
                "attribute 'aux_weight' = inf is invalid: expected a finite "
                "value");
    infer_fails("moe.gate.topk", nan, in, 2, NGATE,
                "is invalid: expected a finite value >= 0");
    infer_fails("moe.gate.importance", g4, in, 2, NGATE,
                "input 0 (x) has shape [6,3]: its 6 items are not a "
                "multiple of attribute 'group_size' = 4");
    infer_fails("moe.gate.topk", aux, in, 2, NGATE,
                "attribute 'aux' = 'foo' is invalid: expected 'vmoe', "
                "'switch' or 'none'");
    infer_fails("moe.gate.topk", norm, in, 2, NGATE,
                "attribute 'normalize' = 'sum' is invalid: expected 'none' "
                "or 'topk'");
    infer_fails("moe.gate.topk", noise, in, 2, NGATE,
                "attribute 'noise_std' = -1 is invalid");
    infer_fails("moe.gate.topk", mult, in, 2, NGATE,
                "attribute 'capacity_multiple' = 0 is invalid");
    infer_fails("moe.gate.topk", kf, in, 2, NGATE,
                "attribute 'k' is a float, expected an int");
    infer_fails("moe.gate.per_image", NULL, in, 2, NGATE,
                "missing required attribute 'items_per_image'");
    infer_fails("moe.gate.per_image", t4, in, 2, NGATE,
                "attribute 'items_per_image' = 4 does not divide the group "
                "size G = 6");
    in[2] = ophost_i32(OPHOST_SHAPE(3), NULL);
    infer_fails("moe.gate.per_image", t3, in, 3, NGATE,
                "input 2 (superclass) has shape [3], expected [2]");
    ophost_tensor_free(in[2]);
    in[2] = NULL;
    ophost_tensor_free(in[1]);
    in[1] = ophost_f32(OPHOST_SHAPE(2, 5), NULL);
    infer_fails("moe.gate.topk", NULL, in, 2, NGATE,
                "input 1 (Wg) has shape [2,5], expected [2,3]");
    /* Wg [0,3]: no expert to route to. */
    ophost_tensor_free(in[1]);
    in[1] = ophost_f32(OPHOST_SHAPE(0, 3), NULL);
    infer_fails("moe.gate.topk", NULL, in, 2, NGATE,
                "input 1 (Wg) has shape [0,3], expected at least one expert");
    ophost_tensor_free(in[1]);
    in[1] = ophost_i32(OPHOST_SHAPE(2, 3), NULL);
    infer_fails("moe.gate.topk", NULL, in, 2, NGATE,
                "input 1 (Wg) has dtype i32, expected f32");
    free_all(in, 3);
}
END_TEST

START_TEST(test_gate_macs_and_shapes)
{
    /* Router MACs N·d·E; per_image routes N/T rows: (N/T)·d·E. */
    struct smlp_tensor *in[2] = {ophost_f32(OPHOST_SHAPE(8, 3), NULL),
                                 ophost_f32(OPHOST_SHAPE(4, 3), NULL)};
    struct smlp_tensor *out[NGATE] = {NULL};
    struct ophost_attr t2[] = {OPHOST_INT("items_per_image", 2), OPHOST_END};
    const char *msg;

    ck_assert_int_eq(ophost_infer(host, "moe.gate.topk", NULL, in, 2, out,
                                  NGATE, &msg),
                     SMLP_OK);
    ck_assert_int_eq(ophost_stats(host)->macs, 8 * 3 * 4);
    assert_shape(out[1], 2, (const int64_t[]){8, 1});
    ck_assert_int_eq(out[2]->dtype, SMLP_DTYPE_F32);
    ck_assert_int_eq(out[3]->dtype, SMLP_DTYPE_I32);
    ck_assert_int_eq(out[4]->rank, 0);
    ck_assert_int_eq(out[4]->dtype, SMLP_DTYPE_F32);
    free_all(out, NGATE);
    ck_assert_int_eq(ophost_infer(host, "moe.gate.per_image", t2, in, 2, out,
                                  NGATE, &msg),
                     SMLP_OK);
    ck_assert_int_eq(ophost_stats(host)->macs, 4 * 3 * 4);
    free_all(out, NGATE);
    free_all(in, 2);
}
END_TEST

START_TEST(test_gate_empty_batch)
{
    /* N = 0 (G = 0): no groups, M = 0, load all zero, aux 0. */
    struct smlp_tensor *in[2] = {ophost_f32(OPHOST_SHAPE(0, 2), NULL),
                                 eye(2)};
    struct smlp_tensor *out[NGATE];
    struct ophost_attr t2[] = {OPHOST_INT("items_per_image", 2), OPHOST_END};
    struct ophost_attr hash[] = {OPHOST_INT("experts", 2),
                                 OPHOST_INT("items_per_image", 2),
                                 OPHOST_END};
    const int32_t zeros[4] = {0, 0, 0, 0};
    const char *const ops[] = {"moe.gate.topk", "moe.gate.importance",
                               "moe.gate.per_image", "moe.gate.hash"};
    int i;

    ophost_set_training(host, 1);
    for (i = 0; i < 4; i++) {
        run_ok(ops[i], i == 2 ? t2 : i == 3 ? hash : NULL, in, i == 3 ? 1 : 2,
               out, NGATE);
        assert_shape(out[0], 2, (const int64_t[]){0, 1});
        assert_shape(out[3], 2, (const int64_t[]){2, 0});
        assert_i32(out[5], zeros, 4, "load");
        assert_f32(out[4], (const double[]){0.0}, 1, 0.0, "aux");
        free_all(out, NGATE);
    }
    free_all(in, 2);
}
END_TEST

static Suite *
moe_gate_suite(void)
{
    Suite *s = suite_create("moe_gate");
    TCase *tc;

#define TC(name)                                                             \
    tc = tcase_create(name);                                                 \
    tcase_add_checked_fixture(tc, setup, teardown);                          \
    suite_add_tcase(s, tc)

    TC("gate_topk");
    tcase_add_test(tc, test_gate_topk_capacity_overflow);
    tcase_add_test(tc, test_gate_topk_k2_rank_order);
    tcase_add_test(tc, test_gate_topk_k2_item_major_differs);
    tcase_add_test(tc, test_gate_topk_ties_lower_expert);
    tcase_add_test(tc, test_gate_topk_groups);
    tcase_add_test(tc, test_gate_topk_no_drop_cf_le_0);
    TC("capacity");
    tcase_add_test(tc, test_gate_capacity_multiple);
    tcase_add_test(tc, test_gate_capacity_multiple_no_drop);
    tcase_add_test(tc, test_gate_capacity_at_least_one);
    tcase_add_test(tc, test_gate_eval_vs_training_capacity);
    TC("normalize");
    tcase_add_test(tc, test_gate_normalize_topk);
    tcase_add_test(tc, test_gate_normalize_topk_all_dropped);
    TC("gate_importance");
    tcase_add_test(tc, test_gate_importance_drops_least_confident);
    tcase_add_test(tc, test_gate_importance_ties_lower_index);
    tcase_add_test(tc, test_gate_importance_k2_groups);
    TC("gate_per_image");
    tcase_add_test(tc, test_gate_per_image_follows_image);
    tcase_add_test(tc, test_gate_per_image_drops_in_item_order);
    tcase_add_test(tc, test_gate_per_image_k2);
    tcase_add_test(tc, test_gate_per_image_superclass_aux);
    tcase_add_test(tc, test_gate_per_image_superclass_out_of_range);
    tcase_add_test(tc, test_gate_per_image_vmoe_over_images);
    TC("gate_hash");
    tcase_add_test(tc, test_gate_hash_chunk);
    tcase_add_test(tc, test_gate_hash_lowbias32);
    tcase_add_test(tc, test_gate_hash_capacity_drops);
    tcase_add_test(tc, test_gate_hash_errors);
    TC("errors");
    tcase_add_test(tc, test_gate_errors);
    tcase_add_test(tc, test_gate_macs_and_shapes);
    tcase_add_test(tc, test_gate_empty_batch);
#undef TC
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(moe_gate_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
