/*
 * check_op_moe.c - the ops of the `moe` plugin, one TCase per feature.
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
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ophost.h"

#define SIG1 0.7310585786300049   /* σ(1) */
#define SIG2 0.8807970779778823   /* σ(2) */
#define SIG3 0.9525741268224334   /* σ(3) */
#define SIG05 0.6224593312018546  /* σ(0.5) */
#define NGATE 6                   /* outputs of a gate */

static struct ophost *host;

static void
setup(void)
{
    char err[1024];

    host = ophost_create("moe", err, sizeof(err));
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

/* Deterministic values in [-1, 1) (a 64-bit LCG). */
static float *
rnd(int64_t n, uint64_t seed)
{
    float *v = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    int64_t i;

    ck_assert_ptr_nonnull(v);
    for (i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        v[i] = (float)((double)(seed >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
    return v;
}

/* The e x e identity: a router whose logits are the rows of x. */
static struct smlp_tensor *
eye(int64_t e)
{
    struct smlp_tensor *t = ophost_f32(OPHOST_SHAPE(e, e), NULL);
    float *w = t->data;
    int64_t i;

    for (i = 0; i < e; i++)
        w[i * e + i] = 1.0f;
    return t;
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
assert_shape(const struct smlp_tensor *t, int rank, const int64_t *shape)
{
    int d;

    ck_assert_int_eq(t->rank, rank);
    for (d = 0; d < rank; d++)
        ck_assert_int_eq(t->shape[d], shape[d]);
}

static void
assert_i32(const struct smlp_tensor *t, const int32_t *want, int64_t n,
           const char *what)
{
    const int32_t *got = t->data;
    int64_t i;

    ck_assert_int_eq(t->dtype, SMLP_DTYPE_I32);
    ck_assert_int_eq(smlp_tensor_numel(t), n);
    for (i = 0; i < n; i++)
        ck_assert_msg(got[i] == want[i], "%s[%lld]: got %d, want %d", what,
                      (long long)i, (int)got[i], (int)want[i]);
}

static void
assert_f32(const struct smlp_tensor *t, const double *want, int64_t n,
           double tol, const char *what)
{
    const float *got = t->data;
    int64_t i;

    ck_assert_int_eq(t->dtype, SMLP_DTYPE_F32);
    ck_assert_int_eq(smlp_tensor_numel(t), n);
    for (i = 0; i < n; i++)
        ck_assert_msg(fabs(got[i] - want[i]) <= tol * (1.0 + fabs(want[i])),
                      "%s[%lld]: got %.9g, want %.9g", what, (long long)i,
                      (double)got[i], want[i]);
}

/* Runs op with n_out outputs (fresh tensors in out[]), asserting success. */
static void
run_ok(const char *op, const struct ophost_attr *attrs,
       struct smlp_tensor *const *in, int n_in, struct smlp_tensor **out,
       int n_out)
{
    const char *msg;
    int rc, i;

    for (i = 0; i < n_out; i++)
        out[i] = NULL;
    rc = ophost_run(host, op, attrs, in, n_in, out, n_out, &msg);
    ck_assert_msg(rc == SMLP_OK, "%s failed (%s): %s", op,
                  ophost_status_name(rc), msg);
}

/* Runs op, asserting that the kernel fails with `want` in the message. */
static void
run_fails(const char *op, const struct ophost_attr *attrs,
          struct smlp_tensor *const *in, int n_in, int n_out,
          const char *want)
{
    struct smlp_tensor *out[NGATE] = {NULL};
    const char *msg;
    int rc = ophost_run(host, op, attrs, in, n_in, out, n_out, &msg);

    ck_assert_msg(rc < 0, "%s: run succeeded, expected '%s'", op, want);
    ck_assert_msg(strstr(msg, want) != NULL, "%s: message '%s' lacks '%s'",
                  op, msg, want);
    free_all(out, n_out);
}

/* Runs shape inference, asserting failure with `want` in the message. */
static void
infer_fails(const char *op, const struct ophost_attr *attrs,
            struct smlp_tensor *const *in, int n_in, int n_out,
            const char *want)
{
    struct smlp_tensor *out[NGATE] = {NULL};
    const char *msg;
    int rc = ophost_infer(host, op, attrs, in, n_in, out, n_out, &msg);
    int i;

    ck_assert_msg(rc < 0, "%s: infer succeeded, expected '%s'", op, want);
    for (i = 0; i < n_out; i++)
        ck_assert_ptr_null(out[i]);
    ck_assert_msg(strstr(msg, want) != NULL, "%s: message '%s' lacks '%s'",
                  op, msg, want);
}

/* What a gate run should give (NULL fields are not checked). */
struct gate_want {
    const int32_t *expert, *slot, *slot_item, *load;
    const double *weight;
    int64_t m;
};

/*
 * Runs gate `op` on x [n, e] (the logits) with router Wg = identity and
 * checks the outputs against w; aux is returned.
 */
static double
gate_eye(const char *op, const struct ophost_attr *attrs, const float *x,
         int64_t n, int64_t e, int64_t k, const struct gate_want *w)
{
    struct smlp_tensor *in[2] = {ophost_f32(OPHOST_SHAPE(n, e), x), eye(e)};
    struct smlp_tensor *out[NGATE];
    double aux;

    run_ok(op, attrs, in, 2, out, NGATE);
    assert_shape(out[0], 2, (const int64_t[]){n, k});
    assert_shape(out[3], 2, (const int64_t[]){e, w->m});
    assert_shape(out[4], 0, NULL);
    assert_shape(out[5], 2, (const int64_t[]){e, 2});
    if (w->expert != NULL)
        assert_i32(out[0], w->expert, n * k, "expert");
    if (w->slot != NULL)
        assert_i32(out[1], w->slot, n * k, "slot");
    if (w->weight != NULL)
        assert_f32(out[2], w->weight, n * k, 1e-6, "weight");
    if (w->slot_item != NULL)
        assert_i32(out[3], w->slot_item, e * w->m, "slot_item");
    if (w->load != NULL)
        assert_i32(out[5], w->load, e * 2, "load");
    aux = *(const float *)out[4]->data;
    free_all(in, 2);
    free_all(out, NGATE);
    return aux;
}

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
     * cf 1.3, k 2: ceil(2·4·1.3/2) = ceil(5.2) = 6, M = 12. */
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

    ck_assert_int_eq(gate_rows(a1, 8, 2), 8);
    ck_assert_int_eq(gate_rows(a2, 8, 2), 6);
    ck_assert_int_eq(gate_rows(a3, 8, 2), 2);
    ck_assert_int_eq(gate_rows(a4, 8, 2), 12);
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
    infer_fails("moe.gate.hash", mode, in, 1, NGATE,
                "attribute 'mode' = 'random' is invalid: expected 'chunk' "
                "or 'hash'");
    infer_fails("moe.gate.hash", t3, in, 1, NGATE,
                "attribute 'items_per_image' = 3 does not divide the group "
                "size G = 8");
    free_all(in, 1);
}
END_TEST

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

static int
same_data(const struct smlp_tensor *a, const struct smlp_tensor *b)
{
    return smlp_tensor_numel(a) == smlp_tensor_numel(b) &&
           memcmp(a->data, b->data, (size_t)smlp_tensor_numel(a) * 4) == 0;
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

    infer_fails("moe.gate.topk", k3, in, 2, NGATE,
                "attribute 'k' = 3 is invalid: expected 1 <= k <= E = 2");
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
    TC("aux");
    tcase_add_test(tc, test_aux_vmoe_importance);
    tcase_add_test(tc, test_aux_switch);
    tcase_add_test(tc, test_aux_switch_clean_p_under_noise);
    tcase_add_test(tc, test_aux_zero_in_inference_and_none);
    tcase_add_test(tc, test_aux_vmoe_load_term);
    TC("noise");
    tcase_add_test(tc, test_noise_deterministic);
    tcase_add_test(tc, test_noise_off_in_inference);
    tcase_add_test(tc, test_noise_scale);
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
    tcase_add_test(tc, test_expert_ffn_slot_item_invalid);
    tcase_add_test(tc, test_expert_ffn_errors);
    tcase_add_test(tc, test_expert_ffn_hidden_0);
    tcase_add_test(tc, test_expert_ffn_more_threads_than_slots);
    TC("layer");
    tcase_add_test(tc, test_layer_one_expert_is_dense_mlp);
    tcase_add_test(tc, test_layer_importance_equals_topk_without_drops);
    TC("errors");
    tcase_add_test(tc, test_gate_errors);
    tcase_add_test(tc, test_gate_macs_and_shapes);
    tcase_add_test(tc, test_gate_empty_batch);
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
