/*
 * check_grad_moe.c - the backwards of moe.dispatch, moe.expert_ffn and
 * moe.combine, one TCase per op.
 *
 * Each backward is checked against central finite differences of its own
 * forward (tests/gradcheck.h: normwise relative error per input, eps =
 * 1e-2 relative step unless stated), plus hand-worked values where the
 * op is linear, the contract of smlp_backward_ctx (a NULL grad_output
 * reads as zeros, wanted gradients are overwritten: they are poisoned
 * with NaN first, unwanted ones stay NULL) and bit-identical results for
 * 1 and 2 threads.  Tolerances and why they hold are stated at each
 * check.  The plugin is loaded from $SMLP_TEST_BUILDDIR/plugins/.libs/
 * moe.so through tests/ophost.c.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ophost.h"
#include "gradcheck.h"

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

/* n deterministic values in [offset - scale, offset + scale). */
static void
fill(float *v, int64_t n, uint64_t seed, double scale, double offset)
{
    int64_t i;

    for (i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        v[i] = (float)(offset + scale * ((double)(seed >> 11) /
                                         9007199254740992.0 * 2.0 - 1.0));
    }
}

/* A new f32 tensor of the given shape filled by fill(). */
static struct smlp_tensor *
rnd_f32(int rank, const int64_t *shape, uint64_t seed, double scale)
{
    struct smlp_tensor *t = ophost_f32(rank, shape, NULL);

    ck_assert_ptr_nonnull(t);
    fill(t->data, smlp_tensor_numel(t), seed, scale, 0.0);
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

/* Poisons an f32 tensor with NaN (a gradient the backward must
 * overwrite). */
static void
poison(struct smlp_tensor *t)
{
    float *v = t->data;
    int64_t i, n = smlp_tensor_numel(t);

    for (i = 0; i < n; i++)
        v[i] = NAN;
}

/* Runs gc_check and fails with its message; returns the result. */
static struct gc_result
grad_ok(const struct gc_spec *s)
{
    struct gc_result res;
    char msg[1024];
    int rc = gc_check(host, s, &res, msg, sizeof(msg));

    ck_assert_msg(rc == 0, "%s", msg);
    return res;
}

/* One forward of op into out[0..n_out). */
static void
forward_ok(const char *op, const struct ophost_attr *attrs,
           struct smlp_tensor *const *in, int n_in, struct smlp_tensor **out,
           int n_out)
{
    const char *msg;
    int rc = ophost_run(host, op, attrs, in, n_in, out, n_out, &msg);

    ck_assert_msg(rc == SMLP_OK, "%s failed (%s): %s", op,
                  ophost_status_name(rc), msg);
}

/* The backward of a one-output op; gi entries poisoned beforehand. */
static void
backward_ok(const char *op, const struct ophost_attr *attrs,
            struct smlp_tensor *const *in, int n_in,
            struct smlp_tensor *const *out, struct smlp_tensor *gout,
            struct smlp_tensor *const *gi)
{
    struct smlp_tensor *go[1] = {gout};
    const char *msg;
    int rc, i;

    for (i = 0; i < n_in; i++)
        if (gi[i] != NULL)
            poison(gi[i]);
    rc = ophost_backward(host, op, attrs, in, n_in, out, 1, go, gi, &msg);
    ck_assert_msg(rc == SMLP_OK, "%s backward failed (%s): %s", op,
                  ophost_status_name(rc), msg);
}

static void
assert_vals(const struct smlp_tensor *t, const double *want, double tol,
            const char *what)
{
    const float *v = t->data;
    int64_t i, n = smlp_tensor_numel(t);

    for (i = 0; i < n; i++)
        ck_assert_msg(fabs(v[i] - want[i]) <= tol,
                      "%s[%lld]: got %.9g, want %.9g", what, (long long)i,
                      (double)v[i], want[i]);
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

/*
 * Runs the backward of op at 1 and at 2 threads on the same forward
 * values and a random d out, and checks the gradients of the inputs
 * marked in want[] are bit-identical.
 */
static void
check_threads(const char *op, const struct ophost_attr *attrs,
              struct smlp_tensor *const *in, int n_in, const int *want)
{
    struct smlp_tensor *out[1] = {NULL}, *gout, *g1[8] = {0}, *g2[8] = {0};
    int i;

    forward_ok(op, attrs, in, n_in, out, 1);
    gout = ophost_tensor_like(out[0]);
    fill(gout->data, smlp_tensor_numel(gout), 99, 1.0, 0.0);
    for (i = 0; i < n_in; i++)
        if (want[i]) {
            g1[i] = ophost_tensor_like(in[i]);
            g2[i] = ophost_tensor_like(in[i]);
        }
    ophost_set_threads(host, 1);
    backward_ok(op, attrs, in, n_in, out, gout, g1);
    ophost_set_threads(host, 2);
    backward_ok(op, attrs, in, n_in, out, gout, g2);
    ophost_set_threads(host, 1);
    for (i = 0; i < n_in; i++)
        if (want[i])
            ck_assert_msg(memcmp(g1[i]->data, g2[i]->data,
                                 (size_t)smlp_tensor_numel(in[i]) *
                                     sizeof(float)) == 0,
                          "%s: gradient of input %d differs between 1 and "
                          "2 threads",
                          op, i);
    free_all(g1, 8);
    free_all(g2, 8);
    ophost_tensor_free(gout);
    ophost_tensor_free(out[0]);
}

/* ---- moe.dispatch ------------------------------------------------------- */

/*
 * x [5,3]; slot_item [2,4]: item 1 sits in two rows (e0 m1 and e1 m2, as
 * with k = 2), item 3 in none (dropped), items 0, 2, 4 once; three rows
 * are empty.
 */
static const int32_t disp_si[] = {0, 1, -1, 4, 2, -1, 1, -1};

START_TEST(test_dispatch_backward_hand)
{
    /* dbuf row r = (r, 10r, 100r): dx[0] = row 0, dx[1] = row 1 + row 6,
     * dx[2] = row 4, dx[3] = 0 (dropped), dx[4] = row 3.  Exact sums of
     * small integers: tolerance 0. */
    const double want[] = {0, 0,   0,   7, 70, 700, 4, 40, 400,
                           0, 0,   0,   3, 30, 300};
    struct smlp_tensor *in[2] = {rnd_f32(OPHOST_SHAPE(5, 3), 1, 1.0),
                                 ophost_i32(OPHOST_SHAPE(2, 4), disp_si)};
    struct smlp_tensor *out[1] = {NULL}, *gout, *gi[2] = {NULL, NULL};
    float *g;
    int r;

    forward_ok("moe.dispatch", NULL, in, 2, out, 1);
    gout = ophost_tensor_like(out[0]);
    g = gout->data;
    for (r = 0; r < 8; r++) {
        g[3 * r] = (float)r;
        g[3 * r + 1] = 10.0f * r;
        g[3 * r + 2] = 100.0f * r;
    }
    gi[0] = ophost_tensor_like(in[0]);
    backward_ok("moe.dispatch", NULL, in, 2, out, gout, gi);
    assert_vals(gi[0], want, 0.0, "dx");
    /* No gradient reaching buf: dx is all zeros (overwriting NaN). */
    backward_ok("moe.dispatch", NULL, in, 2, out, NULL, gi);
    assert_zero(gi[0], "dx");
    ophost_tensor_free(gout);
    free_all(gi, 2);
    free_all(out, 1);
    free_all(in, 2);
}
END_TEST

START_TEST(test_dispatch_backward_fd)
{
    /* Linear op: FD is exact up to f32 rounding of the outputs.
     * Observed 2e-8; tol 1e-4. */
    struct smlp_tensor *in[2] = {rnd_f32(OPHOST_SHAPE(5, 3), 2, 1.0),
                                 ophost_i32(OPHOST_SHAPE(2, 4), disp_si)};
    const int check[] = {1, 0};
    struct gc_spec s = {.op = "moe.dispatch", .inputs = in, .n_in = 2,
                        .n_out = 1, .check = check, .tol = 1e-4, .seed = 3};

    grad_ok(&s);
    free_all(in, 2);
}
END_TEST

START_TEST(test_dispatch_backward_threads)
{
    struct smlp_tensor *in[2] = {rnd_f32(OPHOST_SHAPE(5, 3), 4, 1.0),
                                 ophost_i32(OPHOST_SHAPE(2, 4), disp_si)};
    const int want[] = {1, 0};

    check_threads("moe.dispatch", NULL, in, 2, want);
    free_all(in, 2);
}
END_TEST

START_TEST(test_dispatch_backward_out_of_range)
{
    int32_t bad[] = {0, 1, -1, 5, 2, -1, 1, -1};
    struct smlp_tensor *in[2] = {rnd_f32(OPHOST_SHAPE(5, 3), 5, 1.0),
                                 ophost_i32(OPHOST_SHAPE(2, 4), disp_si)};
    struct smlp_tensor *out[1] = {NULL}, *gout, *gi[2] = {NULL, NULL};
    struct smlp_tensor *go[1];
    const char *msg;
    int rc;

    forward_ok("moe.dispatch", NULL, in, 2, out, 1);
    gout = ophost_tensor_like(out[0]);
    go[0] = gout;
    gi[0] = ophost_tensor_like(in[0]);
    memcpy(in[1]->data, bad, sizeof(bad));
    rc = ophost_backward(host, "moe.dispatch", NULL, in, 2, out, 1, go, gi,
                         &msg);
    ck_assert_int_eq(rc, SMLP_EINVAL);
    ck_assert_msg(strstr(msg, "input 1 (slot_item)[0,3] = 5 is out of "
                              "range") != NULL,
                  "message: %s", msg);
    /* -2, just below the empty mark -1, is refused as well (it must not
     * be skipped like an empty row). */
    bad[3] = -2;
    memcpy(in[1]->data, bad, sizeof(bad));
    rc = ophost_backward(host, "moe.dispatch", NULL, in, 2, out, 1, go, gi,
                         &msg);
    ck_assert_int_eq(rc, SMLP_EINVAL);
    ck_assert_msg(strstr(msg, "input 1 (slot_item)[0,3] = -2 is out of "
                              "range") != NULL,
                  "message: %s", msg);
    ophost_tensor_free(gout);
    free_all(gi, 2);
    free_all(out, 1);
    free_all(in, 2);
}
END_TEST

/* ---- moe.combine -------------------------------------------------------- */

/*
 * out [2,3,2]; N = 4 items, k = 2: item 0 -> (e0 s1, e1 s0); item 1 ->
 * (e1 s2, dropped); item 2 -> (dropped, dropped); item 3 -> (e0 s0, e1 s1).
 * Row e0 s2 is pointed to by nobody.
 */
static const int32_t comb_ex[] = {0, 1, 1, 0, 0, 1, 0, 1};
static const int32_t comb_sl[] = {1, 0, 2, -1, -1, -1, 0, 1};

START_TEST(test_combine_backward_hand)
{
    /* out e0 = rows (1,2), (3,4), (5,6); e1 = (7,8), (9,10), (11,12).
     * weights (0.5, 0.25), (2, 9), (3, 4), (1, -1); dy rows (1,0), (0,1),
     * (5,5), (2,3).
     * d out: e0 s0 = 1·(2,3); e0 s1 = 0.5·(1,0); e0 s2 = 0;
     *        e1 s0 = 0.25·(1,0); e1 s1 = -1·(2,3); e1 s2 = 2·(0,1).
     * d weight: (<(3,4),(1,0)>, <(7,8),(1,0)>) = (3, 7);
     *           (<(11,12),(0,1)>, 0) = (12, 0); (0, 0);
     *           (<(1,2),(2,3)>, <(9,10),(2,3)>) = (8, 48).
     * Exact in f32: tolerance 0. */
    const float ov[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    const float w[] = {0.5f, 0.25f, 2, 9, 3, 4, 1, -1};
    const float dyv[] = {1, 0, 0, 1, 5, 5, 2, 3};
    const double want_dout[] = {2, 3, 0.5, 0, 0, 0, 0.25, 0, -2, -3, 0, 2};
    const double want_dw[] = {3, 7, 12, 0, 0, 0, 8, 48};
    struct smlp_tensor *in[4] = {ophost_f32(OPHOST_SHAPE(2, 3, 2), ov),
                                 ophost_i32(OPHOST_SHAPE(4, 2), comb_ex),
                                 ophost_i32(OPHOST_SHAPE(4, 2), comb_sl),
                                 ophost_f32(OPHOST_SHAPE(4, 2), w)};
    struct smlp_tensor *out[1] = {NULL}, *gout, *gi[4] = {0};

    forward_ok("moe.combine", NULL, in, 4, out, 1);
    gout = ophost_f32(OPHOST_SHAPE(4, 2), dyv);
    gi[0] = ophost_tensor_like(in[0]);
    gi[3] = ophost_tensor_like(in[3]);
    backward_ok("moe.combine", NULL, in, 4, out, gout, gi);
    assert_vals(gi[0], want_dout, 0.0, "d out");
    assert_vals(gi[3], want_dw, 0.0, "d weight");
    /* Only d weight wanted: the same values. */
    ophost_tensor_free(gi[0]);
    gi[0] = NULL;
    backward_ok("moe.combine", NULL, in, 4, out, gout, gi);
    assert_vals(gi[3], want_dw, 0.0, "d weight alone");
    /* No gradient reaching y: zeros. */
    gi[0] = ophost_tensor_like(in[0]);
    backward_ok("moe.combine", NULL, in, 4, out, NULL, gi);
    assert_zero(gi[0], "d out");
    assert_zero(gi[3], "d weight");
    ophost_tensor_free(gout);
    free_all(gi, 4);
    free_all(out, 1);
    free_all(in, 4);
}
END_TEST

START_TEST(test_combine_backward_fd)
{
    /* Bilinear in (out, weight): central differences are exact up to f32
     * rounding of y.  Observed 1.6e-6; tol 1e-4. */
    struct smlp_tensor *in[4] = {rnd_f32(OPHOST_SHAPE(2, 3, 5), 6, 1.0),
                                 ophost_i32(OPHOST_SHAPE(4, 2), comb_ex),
                                 ophost_i32(OPHOST_SHAPE(4, 2), comb_sl),
                                 rnd_f32(OPHOST_SHAPE(4, 2), 7, 1.0)};
    const int check[] = {1, 0, 0, 1};
    struct gc_spec s = {.op = "moe.combine", .inputs = in, .n_in = 4,
                        .n_out = 1, .check = check, .tol = 1e-4, .seed = 8};

    grad_ok(&s);
    free_all(in, 4);
}
END_TEST

START_TEST(test_combine_backward_threads)
{
    struct smlp_tensor *in[4] = {rnd_f32(OPHOST_SHAPE(2, 3, 5), 9, 1.0),
                                 ophost_i32(OPHOST_SHAPE(4, 2), comb_ex),
                                 ophost_i32(OPHOST_SHAPE(4, 2), comb_sl),
                                 rnd_f32(OPHOST_SHAPE(4, 2), 10, 1.0)};
    const int want[] = {1, 0, 0, 1};

    check_threads("moe.combine", NULL, in, 4, want);
    free_all(in, 4);
}
END_TEST

START_TEST(test_combine_backward_out_of_range)
{
    const int32_t bad_sl[] = {1, 0, 3, -1, -1, -1, 0, 1};
    struct smlp_tensor *in[4] = {rnd_f32(OPHOST_SHAPE(2, 3, 2), 11, 1.0),
                                 ophost_i32(OPHOST_SHAPE(4, 2), comb_ex),
                                 ophost_i32(OPHOST_SHAPE(4, 2), comb_sl),
                                 rnd_f32(OPHOST_SHAPE(4, 2), 12, 1.0)};
    struct smlp_tensor *out[1] = {NULL}, *go[1], *gi[4] = {0};
    const char *msg;
    int rc;

    forward_ok("moe.combine", NULL, in, 4, out, 1);
    go[0] = ophost_tensor_like(out[0]);
    gi[0] = ophost_tensor_like(in[0]);
    memcpy(in[2]->data, bad_sl, sizeof(bad_sl));
    rc = ophost_backward(host, "moe.combine", NULL, in, 4, out, 1, go, gi,
                         &msg);
    ck_assert_int_eq(rc, SMLP_EINVAL);
    ck_assert_msg(strstr(msg, "input 2 (slot)[1,0] = 3 is out of range") !=
                      NULL,
                  "message: %s", msg);
    free_all(go, 1);
    free_all(gi, 4);
    free_all(out, 1);
    free_all(in, 4);
}
END_TEST

/* ---- moe.expert_ffn ----------------------------------------------------- */

/*
 * E = 3, M = 4, d = 5, h = 6, o = 3; slot_item fills rows 0, 2 of expert
 * 0, none of expert 1 and all of expert 2.
 */
#define FE 3
#define FM 4
#define FD 5
#define FH 6
#define FO 3
static const int32_t ffn_si[] = {0, -1, 2, -1, -1, -1, -1, -1, 1, 2, 3, 4};

/*
 * The six inputs (slot_item NULL unless with_si), random in [-1, 1) for
 * gelu.  For relu, buf and W1 lie in [-0.1, 0.1) and b1 in ±[0.4, 0.6]
 * with alternating signs, so every pre-activation a = b1 + W1·x has
 * |a| >= 0.4 - d·0.01 = 0.35, far beyond any FD step's effect on it
 * (at most 1e-2·max(1, |v|)·1 for one element v), and both signs occur:
 * relu is smooth along every FD path.
 */
static void
ffn_inputs(struct smlp_tensor **in, int relu, int with_si, uint64_t seed)
{
    double sx = relu ? 0.1 : 1.0;
    int64_t j;

    in[0] = rnd_f32(OPHOST_SHAPE(FE, FM, FD), seed + 1, sx);
    in[1] = rnd_f32(OPHOST_SHAPE(FE, FH, FD), seed + 2, sx);
    in[2] = rnd_f32(OPHOST_SHAPE(FE, FH), seed + 3, relu ? 0.1 : 1.0);
    in[3] = rnd_f32(OPHOST_SHAPE(FE, FO, FH), seed + 4, 1.0);
    in[4] = rnd_f32(OPHOST_SHAPE(FE, FO), seed + 5, 1.0);
    in[5] = with_si ? ophost_i32(OPHOST_SHAPE(FE, FM), ffn_si) : NULL;
    if (relu) {
        float *b1 = in[2]->data;

        for (j = 0; j < FE * FH; j++)
            b1[j] += j % 2 ? -0.5f : 0.5f;
    }
}

static void
check_ffn_fd(const char *act, int with_si, double tol)
{
    struct ophost_attr attrs[] = {OPHOST_STRING("activation", act),
                                  OPHOST_END};
    struct smlp_tensor *in[6];
    const int check[] = {1, 1, 1, 1, 1, 0};
    struct gc_spec s = {.op = "moe.expert_ffn", .attrs = attrs,
                        .inputs = in, .n_in = 6, .n_out = 1,
                        .check = check, .tol = tol, .seed = 21};

    ffn_inputs(in, strcmp(act, "relu") == 0, with_si, 20);
    grad_ok(&s);
    /* In training the forward keeps Z = X·W1ᵀ + b1 for the backward
     * (saved bytes, ABI 1.2): the same check on that path. */
    ophost_set_training(host, 1);
    grad_ok(&s);
    ophost_set_training(host, 0);
    free_all(in, 6);
}

START_TEST(test_expert_ffn_backward_fd_gelu)
{
    /* GELU is smooth: the FD truncation error is O(h²·|f'''|) and the
     * f32 rounding of the outputs adds ~1e-6/(2h) relative.  Observed
     * worst normwise error 2.4e-5 (W1 and b1); tol 1e-3. */
    check_ffn_fd("gelu", 0, 1e-3);
    check_ffn_fd("gelu", 1, 1e-3);
}
END_TEST

START_TEST(test_expert_ffn_backward_fd_relu)
{
    /* Piecewise linear with every pre-activation >= 0.35 away from the
     * kink (ffn_inputs): FD is exact up to f32 rounding of the outputs,
     * relatively larger here because buf and W1 are small.  Observed
     * worst 6.8e-5 (W1); tol 1e-3. */
    check_ffn_fd("relu", 0, 1e-3);
    check_ffn_fd("relu", 1, 1e-3);
}
END_TEST

START_TEST(test_expert_ffn_backward_empty_rows)
{
    /* Rows marked -1 get a zero d buf even though d out is nonzero there
     * and buf holds data; expert 1 (no filled row) gets zero parameter
     * gradients; an absent gradient of out gives zeros everywhere. */
    struct ophost_attr attrs[] = {OPHOST_STRING("activation", "gelu"),
                                  OPHOST_END};
    struct smlp_tensor *in[6], *out[1] = {NULL}, *gout, *gi[6] = {0};
    const float *db, *dw1, *db1, *dw2, *db2;
    int64_t r, c;
    int i;

    ffn_inputs(in, 0, 1, 30);
    forward_ok("moe.expert_ffn", attrs, in, 6, out, 1);
    gout = ophost_tensor_like(out[0]);
    fill(gout->data, smlp_tensor_numel(gout), 31, 1.0, 0.0);
    for (i = 0; i < 5; i++)
        gi[i] = ophost_tensor_like(in[i]);
    backward_ok("moe.expert_ffn", attrs, in, 6, out, gout, gi);
    db = gi[0]->data;
    for (r = 0; r < FE * FM; r++)
        for (c = 0; c < FD; c++)
            if (ffn_si[r] == -1)
                ck_assert_msg(db[r * FD + c] == 0.0f, "d buf row %lld",
                              (long long)r);
            else
                ck_assert(isfinite(db[r * FD + c]));
    dw1 = (const float *)gi[1]->data + FH * FD;
    db1 = (const float *)gi[2]->data + FH;
    dw2 = (const float *)gi[3]->data + FO * FH;
    db2 = (const float *)gi[4]->data + FO;
    for (c = 0; c < FH * FD; c++)
        ck_assert(dw1[c] == 0.0f);
    for (c = 0; c < FH; c++)
        ck_assert(db1[c] == 0.0f);
    for (c = 0; c < FO * FH; c++)
        ck_assert(dw2[c] == 0.0f);
    for (c = 0; c < FO; c++)
        ck_assert(db2[c] == 0.0f);
    backward_ok("moe.expert_ffn", attrs, in, 6, out, NULL, gi);
    for (i = 0; i < 5; i++)
        assert_zero(gi[i], "gradient without d out");
    ophost_tensor_free(gout);
    free_all(gi, 6);
    free_all(out, 1);
    free_all(in, 6);
}
END_TEST

/* Asking for one gradient at a time gives bit for bit what asking for all
 * of them gives (same products, same order): the inputs in[0..6) of an
 * expert_ffn (freed here); `what` names the case in messages. */
static void
check_subsets(struct smlp_tensor **in, const char *what)
{
    struct ophost_attr attrs[] = {OPHOST_STRING("activation", "gelu"),
                                  OPHOST_END};
    struct smlp_tensor *out[1] = {NULL}, *gout, *all[6] = {0};
    int i;

    forward_ok("moe.expert_ffn", attrs, in, 6, out, 1);
    gout = ophost_tensor_like(out[0]);
    fill(gout->data, smlp_tensor_numel(gout), 41, 1.0, 0.0);
    for (i = 0; i < 5; i++)
        all[i] = ophost_tensor_like(in[i]);
    backward_ok("moe.expert_ffn", attrs, in, 6, out, gout, all);
    for (i = 0; i < 5; i++) {
        struct smlp_tensor *one[6] = {0};

        one[i] = ophost_tensor_like(in[i]);
        backward_ok("moe.expert_ffn", attrs, in, 6, out, gout, one);
        ck_assert_msg(memcmp(one[i]->data, all[i]->data,
                             (size_t)smlp_tensor_numel(in[i]) *
                                 sizeof(float)) == 0,
                      "%s: gradient of input %d alone differs", what, i);
        ophost_tensor_free(one[i]);
    }
    ophost_tensor_free(gout);
    free_all(all, 6);
    free_all(out, 1);
    free_all(in, 6);
}

START_TEST(test_expert_ffn_backward_subsets)
{
    struct smlp_tensor *in[6];

    ffn_inputs(in, 0, 0, 40);
    check_subsets(in, "column mode");
    ffn_inputs(in, 0, 1, 40);
    check_subsets(in, "column mode, slot_item");
}
END_TEST

/* The same in the backward's row mode (M > h; ffn_inputs' shapes are in
 * column mode): b1's gradient asked for alone must still be written. */
START_TEST(test_expert_ffn_backward_subsets_row_mode)
{
    struct smlp_tensor *in[6];

    in[0] = rnd_f32(OPHOST_SHAPE(2, 8, 3), 81, 1.0);
    in[1] = rnd_f32(OPHOST_SHAPE(2, 4, 3), 82, 1.0);
    in[2] = rnd_f32(OPHOST_SHAPE(2, 4), 83, 1.0);
    in[3] = rnd_f32(OPHOST_SHAPE(2, 2, 4), 84, 1.0);
    in[4] = rnd_f32(OPHOST_SHAPE(2, 2), 85, 1.0);
    in[5] = NULL;
    check_subsets(in, "row mode");
}
END_TEST

START_TEST(test_expert_ffn_backward_threads)
{
    struct ophost_attr attrs[] = {OPHOST_STRING("activation", "gelu"),
                                  OPHOST_END};
    struct smlp_tensor *in[6];
    const int want[] = {1, 1, 1, 1, 1, 0};
    int with_si;

    for (with_si = 0; with_si < 4; with_si++) {
        ophost_set_training(host, with_si >= 2); /* saved Z */
        ffn_inputs(in, 0, with_si % 2, 50);
        check_threads("moe.expert_ffn", attrs, in, 6, want);
        free_all(in, 6);
    }
    ophost_set_training(host, 0);
}
END_TEST

/* The backward from the forward's saved Z (training) against the one
 * that recomputes it (inference host, ophost_set_saved(h, 0)): the same
 * gradients within 1e-6 normwise (Z comes from products of other
 * shapes, so its last bits may differ), at the tiny shape (hidden
 * columns mode, M <= h) and at one with M > h (rows mode), gelu and relu,
 * with and without slot_item. */
START_TEST(test_expert_ffn_backward_saved)
{
    static const int64_t big[5] = {2, 40, 8, 16, 8}; /* E, M, d, h, o */
    struct smlp_tensor *in[6], *out[1] = {NULL}, *gout, *ga[6], *gb[6];
    int32_t si[2 * 40];
    int shape, relu, with_si, i;

    for (i = 0; i < 2 * 40; i++)
        si[i] = i % 3 == 1 ? -1 : i / 2;
    for (shape = 0; shape < 2; shape++)
        for (relu = 0; relu < 2; relu++)
            for (with_si = 0; with_si < 2; with_si++) {
                struct ophost_attr attrs[] = {
                    OPHOST_STRING("activation", relu ? "relu" : "gelu"),
                    OPHOST_END};

                if (shape == 0) {
                    ffn_inputs(in, relu, with_si, 70);
                } else {
                    in[0] = rnd_f32(OPHOST_SHAPE(big[0], big[1], big[2]), 71,
                                    1.0);
                    in[1] = rnd_f32(OPHOST_SHAPE(big[0], big[3], big[2]), 72,
                                    1.0);
                    in[2] = rnd_f32(OPHOST_SHAPE(big[0], big[3]), 73, 1.0);
                    in[3] = rnd_f32(OPHOST_SHAPE(big[0], big[4], big[3]), 74,
                                    1.0);
                    in[4] = rnd_f32(OPHOST_SHAPE(big[0], big[4]), 75, 1.0);
                    in[5] = with_si ? ophost_i32(OPHOST_SHAPE(big[0], big[1]),
                                                 si)
                                    : NULL;
                }
                forward_ok("moe.expert_ffn", attrs, in, 6, out, 1);
                gout = ophost_tensor_like(out[0]);
                fill(gout->data, smlp_tensor_numel(gout), 76, 1.0, 0.0);
                for (i = 0; i < 6; i++) {
                    ga[i] = i < 5 ? ophost_tensor_like(in[i]) : NULL;
                    gb[i] = i < 5 ? ophost_tensor_like(in[i]) : NULL;
                }
                ophost_set_training(host, 1);
                backward_ok("moe.expert_ffn", attrs, in, 6, out, gout, ga);
                ophost_set_saved(host, 0);
                backward_ok("moe.expert_ffn", attrs, in, 6, out, gout, gb);
                ophost_set_saved(host, 1);
                ophost_set_training(host, 0);
                for (i = 0; i < 5; i++) {
                    const float *a = ga[i]->data, *b = gb[i]->data;
                    double diff = 0, norm = 0;
                    int64_t j, n = smlp_tensor_numel(ga[i]);

                    for (j = 0; j < n; j++) {
                        diff = fmax(diff, fabs((double)a[j] - b[j]));
                        norm = fmax(norm, fabs((double)b[j]));
                    }
                    ck_assert_msg(diff <= 1e-6 * norm,
                                  "shape %d relu %d slot_item %d: gradient "
                                  "of input %d from saved Z differs by %g "
                                  "(max %g)",
                                  shape, relu, with_si, i, diff, norm);
                }
                ophost_tensor_free(gout);
                free_all(ga, 6);
                free_all(gb, 6);
                free_all(out, 1);
                free_all(in, 6);
            }
}
END_TEST

START_TEST(test_expert_ffn_backward_bad_slot_item)
{
    struct smlp_tensor *in[6], *out[1] = {NULL}, *go[1], *gi[6] = {0};
    const char *msg;
    int rc;

    ffn_inputs(in, 0, 1, 60);
    forward_ok("moe.expert_ffn", NULL, in, 6, out, 1);
    go[0] = ophost_tensor_like(out[0]);
    gi[1] = ophost_tensor_like(in[1]);
    ((int32_t *)in[5]->data)[9] = -3;
    rc = ophost_backward(host, "moe.expert_ffn", NULL, in, 6, out, 1, go, gi,
                         &msg);
    ck_assert_int_eq(rc, SMLP_EINVAL);
    ck_assert_msg(strstr(msg, "input 5 (slot_item)[2,1] = -3 is invalid") !=
                      NULL,
                  "message: %s", msg);
    free_all(go, 1);
    free_all(gi, 6);
    free_all(out, 1);
    free_all(in, 6);
}
END_TEST

static Suite *
grad_moe_suite(void)
{
    Suite *s = suite_create("grad_moe");
    TCase *tc;

#define TC(name)                                                             \
    tc = tcase_create(name);                                                 \
    tcase_add_checked_fixture(tc, setup, teardown);                          \
    suite_add_tcase(s, tc)

    TC("dispatch");
    tcase_add_test(tc, test_dispatch_backward_hand);
    tcase_add_test(tc, test_dispatch_backward_fd);
    tcase_add_test(tc, test_dispatch_backward_threads);
    tcase_add_test(tc, test_dispatch_backward_out_of_range);
    TC("combine");
    tcase_add_test(tc, test_combine_backward_hand);
    tcase_add_test(tc, test_combine_backward_fd);
    tcase_add_test(tc, test_combine_backward_threads);
    tcase_add_test(tc, test_combine_backward_out_of_range);
    TC("expert_ffn");
    tcase_add_test(tc, test_expert_ffn_backward_fd_gelu);
    tcase_add_test(tc, test_expert_ffn_backward_fd_relu);
    tcase_add_test(tc, test_expert_ffn_backward_empty_rows);
    tcase_add_test(tc, test_expert_ffn_backward_subsets);
    tcase_add_test(tc, test_expert_ffn_backward_subsets_row_mode);
    tcase_add_test(tc, test_expert_ffn_backward_threads);
    tcase_add_test(tc, test_expert_ffn_backward_saved);
    tcase_add_test(tc, test_expert_ffn_backward_bad_slot_item);
#undef TC
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(grad_moe_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
