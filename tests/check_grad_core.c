/*
 * check_grad_core.c - the backwards of the `core` plugin's ops against
 * finite differences.
 *
 * Every differentiable input of every op with a backward is checked
 * against central finite differences (tests/gradcheck.h) on several
 * shapes and attributes.  Tolerances (gc_check's normwise relative error,
 * eps = 1e-2, floor 1e-3):
 *   - TOL_LINEAR = 1e-3 for ops that are linear in the checked input
 *     (linear, matmul, patch_embed, add, scale, transpose, reshape, mean):
 *     central differences are exact there, so only the rounding of the
 *     f32 forward (about 1e-5 here) is left;
 *   - TOL_SMOOTH = 2e-3 for gelu, relu (checked at least 0.1 away from
 *     its kink, more than the step) and softmax_cross_entropy, where the
 *     step's O(eps²) truncation error adds to the rounding (seen: up to
 *     1.3e-4; the gradcheck default of 1e-2 would hide small slips).
 * gelu's derivative is also compared with a double-precision formula at
 * many points (tolerance 2e-6 relative), which FD through an f32 forward
 * cannot resolve.
 *
 * The backward contract: check_grad_core_contract.c.
 */
#include "gradcorefx.h"

#define TOL_LINEAR 1e-3
#define TOL_SMOOTH 2e-3

/* ---- helpers ---------------------------------------------------------- */

/* Like rnd_f32 with every |value| in [0.1, 1.1): away from relu's kink. */
static struct smlp_tensor *
rnd_away_from_zero(int rank, const int64_t *shape, uint64_t seed)
{
    struct smlp_tensor *t = rnd_f32(rank, shape, seed, 1.0);
    float *v = t->data;
    int64_t i, n = gc_numel(t);

    for (i = 0; i < n; i++)
        v[i] = v[i] < 0 ? v[i] - 0.1f : v[i] + 0.1f;
    return t;
}

/*
 * gc_check of every input whose `check` entry is set; one output.  Frees
 * the inputs.
 */
static void
grad_check(const char *op, const struct ophost_attr *attrs,
           struct smlp_tensor **in, int n_in, const int *check, double tol,
           uint64_t seed)
{
    struct gc_spec s;
    struct gc_result res;
    char msg[1024];
    int rc;

    memset(&s, 0, sizeof(s));
    s.op = op;
    s.attrs = attrs;
    s.inputs = in;
    s.n_in = n_in;
    s.n_out = 1;
    s.check = check;
    s.tol = tol;
    s.seed = seed;
    rc = gc_check(host, &s, &res, msg, sizeof(msg));
    free_all(in, n_in);
    ck_assert_msg(rc == 0, "%s", msg);
}

static const int CHECK_1[] = {1};
static const int CHECK_2[] = {1, 1};
static const int CHECK_3[] = {1, 1, 1};

/* ---- core.linear ------------------------------------------------------ */

/* x of `rank` dims `xs`, W [out, xs[axis]], b [out] when `bias`. */
static void
grad_linear(int rank, const int64_t *xs, int64_t axis, int64_t out,
            int bias, uint64_t seed)
{
    struct ophost_attr attrs[] = {OPHOST_INT("axis", axis), OPHOST_END};
    int64_t in = xs[axis < 0 ? axis + rank : axis];
    struct smlp_tensor *t[3] = {
        rnd_f32(rank, xs, seed, 1.0),
        rnd_f32(OPHOST_SHAPE(out, in), seed + 1, 1.0),
        bias ? rnd_f32(OPHOST_SHAPE(out), seed + 2, 1.0) : NULL,
    };

    grad_check("core.linear", attrs, t, bias ? 3 : 2, CHECK_3, TOL_LINEAR,
               seed);
}

START_TEST(test_grad_linear_axis_m1)
{
    /* Channel mixing: one sgemm over all rows (inner == 1). */
    grad_linear(OPHOST_SHAPE(3, 5), -1, 4, 1, 1);
    grad_linear(OPHOST_SHAPE(2, 5, 3), -1, 7, 1, 2);
    grad_linear(OPHOST_SHAPE(2, 3, 5), -1, 1, 1, 3);
}
END_TEST

START_TEST(test_grad_linear_axis_m2)
{
    /* Token mixing of [B,S,C]: a left multiply per image. */
    grad_linear(OPHOST_SHAPE(2, 5, 3), -2, 7, 1, 4);
    grad_linear(OPHOST_SHAPE(3, 4, 5), -2, 3, 1, 5);
    grad_linear(OPHOST_SHAPE(1, 3, 1), -2, 2, 1, 6);
}
END_TEST

START_TEST(test_grad_linear_other_axes)
{
    grad_linear(OPHOST_SHAPE(5, 3), 0, 4, 1, 7);
    grad_linear(OPHOST_SHAPE(3, 4, 2, 5), 1, 3, 1, 8);
    grad_linear(OPHOST_SHAPE(3, 2, 5), 0, 2, 1, 9);
}
END_TEST

START_TEST(test_grad_linear_no_bias)
{
    grad_linear(OPHOST_SHAPE(3, 5), -1, 4, 0, 10);
    grad_linear(OPHOST_SHAPE(2, 5, 3), -2, 6, 0, 11);
    grad_linear(OPHOST_SHAPE(3, 4, 2, 5), 1, 3, 0, 12);
}
END_TEST

/*
 * Token mixing, x [B, S, C] on axis -2 with W [O, S] and b [O]: dW, db and
 * dX against sums in double here, and the same bits on 1 and 2 threads.
 * dW (O x S) is summed over the B images by gemm.c, split into parts
 * when it has too few tiles for the threads (see the tests below).
 */
static void
check_split_sum(int B, int S, int C, int O, uint64_t seed)
{
    struct ophost_attr attrs[] = {OPHOST_INT("axis", -2), OPHOST_END};
    struct smlp_tensor *in[3], *out[1] = {NULL}, *g[1], *gr[2][3];
    const float *x, *w, *dy;
    const char *msg;
    int th, n, j, i, o, k;

    in[0] = rnd_f32(OPHOST_SHAPE(B, S, C), seed, 1.0);
    in[1] = rnd_f32(OPHOST_SHAPE(O, S), seed + 1, 1.0);
    in[2] = rnd_f32(OPHOST_SHAPE(O), seed + 2, 1.0);
    ck_assert_int_eq(ophost_run(host, "core.linear", attrs, in, 3, out, 1,
                                &msg),
                     SMLP_OK);
    g[0] = rnd_f32(OPHOST_SHAPE(B, O, C), seed + 3, 1.0);
    for (th = 0; th < 2; th++) {
        ophost_set_threads(host, th + 1);
        for (n = 0; n < 3; n++)
            gr[th][n] = ophost_tensor_like(in[n]);
        ck_assert_msg(ophost_backward(host, "core.linear", attrs, in, 3, out,
                                      1, g, gr[th], &msg) == SMLP_OK,
                      "B %d S %d C %d O %d: %s", B, S, C, O, msg);
    }
    ophost_set_threads(host, 1);
    for (n = 0; n < 3; n++)
        ck_assert_mem_eq(gr[0][n]->data, gr[1][n]->data,
                         (size_t)gc_numel(in[n]) * sizeof(float));
    x = in[0]->data;
    w = in[1]->data;
    dy = g[0]->data;
    for (j = 0; j < O; j++) {
        double db = 0.0, dba = 0.0;

        for (i = 0; i < S; i++) {
            double dw = 0.0, abs = 0.0;

            for (o = 0; o < B; o++)
                for (k = 0; k < C; k++) {
                    double t = (double)dy[(o * O + j) * C + k] *
                               x[(o * S + i) * C + k];

                    dw += t;
                    abs += fabs(t);
                }
            ck_assert_msg(fabs(((float *)gr[0][1]->data)[j * S + i] - dw) <=
                              1e-5 * abs + 1e-6,
                          "dW[%d,%d] = %g, want %g", j, i,
                          ((float *)gr[0][1]->data)[j * S + i], dw);
        }
        for (o = 0; o < B; o++)
            for (k = 0; k < C; k++) {
                db += dy[(o * O + j) * C + k];
                dba += fabs(dy[(o * O + j) * C + k]);
            }
        ck_assert(fabs(((float *)gr[0][2]->data)[j] - db) <=
                  1e-5 * dba + 1e-6);
    }
    for (o = 0; o < B; o += 7)
        for (i = 0; i < S; i++)
            for (k = 0; k < C; k++) {
                double dx = 0.0, abs = 0.0;

                for (j = 0; j < O; j++) {
                    dx += (double)w[j * S + i] * dy[(o * O + j) * C + k];
                    abs += fabs((double)w[j * S + i] *
                                dy[(o * O + j) * C + k]);
                }
                ck_assert(fabs(((float *)gr[0][0]->data)[(o * S + i) * C +
                                                         k] -
                               dx) <= 1e-5 * abs + 1e-6);
            }
    for (n = 0; n < 3; n++) {
        ophost_tensor_free(in[n]);
        ophost_tensor_free(gr[0][n]);
        ophost_tensor_free(gr[1][n]);
    }
    ophost_tensor_free(out[0]);
    ophost_tensor_free(g[0]);
}

/*
 * At sparse_mlp_fmnist's shape, x [64, 49, 128], W [64, 49]: dW is one
 * tile, too few for the threads, so gemm.c splits its sum over the 64
 * images into 8 parts (each 3.2 M multiply-adds) and adds them in order.
 */
START_TEST(test_grad_linear_split_sum)
{
    check_split_sum(64, 49, 128, 64, 31);
}
END_TEST

/*
 * Splits of other sizes (smlp__core_gemm_sum_parts: ceil(8 / tiles)
 * parts, at most B, fewer while a part would have under 2^21
 * multiply-adds per tile; part p takes images [p·B/P, (p+1)·B/P)):
 *   - x [2, 64, 512], W [64, 64]: 2 parts of one image (2.1 M each), the
 *     smallest split, so part 1 must still be added to dW;
 *   - x [26, 32, 256], W [32, 32]: 3 parts of 8, 9 and 9 images (26 is
 *     not a multiple of 3), so the images at the end of each part and
 *     the part boundaries 8 and 17 are where a rounding slip shows;
 *   - x [9, 130, 192], W [48, 130]: dW [48, 130] gives 3 parts, while
 *     the transposed [130, 48] would give 2: the backward workspace must
 *     hold the partial sums of exactly the split that gemm.c makes (the
 *     host's guard zone catches one part too many).
 */
START_TEST(test_grad_linear_split_sum_sizes)
{
    check_split_sum(2, 64, 512, 64, 41);
    check_split_sum(26, 32, 256, 32, 51);
    check_split_sum(9, 130, 192, 48, 61);
}
END_TEST

/* Runs the forward, then the backward with dy = 1 and a grad_input for
 * every input (filled with NaN first); gr[i] receives them (caller
 * frees). */
static void
backward_ones(const char *op, const struct ophost_attr *attrs,
              struct smlp_tensor **in, int n_in, struct smlp_tensor **gr)
{
    struct smlp_tensor *out[1] = {NULL}, *g[1];
    const char *msg;
    float *gd;
    int64_t i;
    int rc;

    rc = ophost_run(host, op, attrs, in, n_in, out, 1, &msg);
    ck_assert_msg(rc == SMLP_OK, "%s: %s", op, msg);
    g[0] = ophost_tensor_like(out[0]);
    gd = g[0]->data;
    for (i = 0; i < gc_numel(out[0]); i++)
        gd[i] = 1.0f;
    for (i = 0; i < n_in; i++) {
        gr[i] = ophost_tensor_like(in[i]);
        if (gc_numel(in[i]) > 0)
            memset(gr[i]->data, 0xff, (size_t)gc_numel(in[i]) * 4);
    }
    rc = ophost_backward(host, op, attrs, in, n_in, out, 1, g, gr, &msg);
    ck_assert_msg(rc == SMLP_OK, "%s backward: %s", op, msg);
    ophost_tensor_free(out[0]);
    ophost_tensor_free(g[0]);
}

START_TEST(test_grad_linear_empty)
{
    struct ophost_attr attrs[] = {OPHOST_INT("axis", -1), OPHOST_END};
    struct smlp_tensor *in[3], *gr[3];
    const float *d;
    int64_t i;

    /* No rows: dW and db are zero (not left as the NaN fill). */
    in[0] = ophost_f32(OPHOST_SHAPE(0, 5), NULL);
    in[1] = rnd_f32(OPHOST_SHAPE(4, 5), 1, 1.0);
    in[2] = rnd_f32(OPHOST_SHAPE(4), 2, 1.0);
    backward_ones("core.linear", attrs, in, 3, gr);
    for (i = 0, d = gr[1]->data; i < 20; i++)
        ck_assert_msg(d[i] == 0.0f, "dW[%lld] = %g", (long long)i, d[i]);
    for (i = 0, d = gr[2]->data; i < 4; i++)
        ck_assert_msg(d[i] == 0.0f, "db[%lld] = %g", (long long)i, d[i]);
    free_all(in, 3);
    free_all(gr, 3);
    /* in == 0: y = b, so db = Σ rows dy = 3. */
    in[0] = ophost_f32(OPHOST_SHAPE(3, 0), NULL);
    in[1] = ophost_f32(OPHOST_SHAPE(4, 0), NULL);
    in[2] = rnd_f32(OPHOST_SHAPE(4), 3, 1.0);
    backward_ones("core.linear", attrs, in, 3, gr);
    for (i = 0, d = gr[2]->data; i < 4; i++)
        ck_assert_msg(d[i] == 3.0f, "db[%lld] = %g", (long long)i, d[i]);
    free_all(in, 3);
    free_all(gr, 3);
}
END_TEST

/* ---- core.gelu -------------------------------------------------------- */

static void
grad_gelu(const char *approx, int rank, const int64_t *shape, double scale,
          uint64_t seed)
{
    struct ophost_attr attrs[] = {OPHOST_STRING("approximate", approx),
                                  OPHOST_END};
    struct smlp_tensor *t[1] = {rnd_f32(rank, shape, seed, scale)};

    grad_check("core.gelu", attrs, t, 1, CHECK_1, TOL_SMOOTH, seed);
}

START_TEST(test_grad_gelu_exact)
{
    grad_gelu("none", OPHOST_SHAPE(7), 1.0, 1);
    grad_gelu("none", OPHOST_SHAPE(3, 5, 2), 3.0, 2);
    grad_gelu("none", OPHOST_SHAPE(4, 9), 6.0, 3);
}
END_TEST

START_TEST(test_grad_gelu_tanh)
{
    grad_gelu("tanh", OPHOST_SHAPE(7), 1.0, 4);
    grad_gelu("tanh", OPHOST_SHAPE(3, 5, 2), 3.0, 5);
    grad_gelu("tanh", OPHOST_SHAPE(4, 9), 6.0, 6);
}
END_TEST

/* d/dx gelu in double: exact and tanh forms. */
static double
gelu_grad_ref(double x, int tanh_form)
{
    if (tanh_form) {
        const double k = sqrt(2.0 / M_PI), c = 0.044715;
        double t = tanh(k * (x + c * x * x * x));

        return 0.5 * (1.0 + t) +
               0.5 * x * (1.0 - t * t) * k * (1.0 + 3.0 * c * x * x);
    }
    return 0.5 * (1.0 + erf(x / sqrt(2.0))) +
           x * exp(-0.5 * x * x) / sqrt(2.0 * M_PI);
}

/* The vectorised derivative against the double formula, dy = 1, on a
 * sweep of [-30, 30] (odd count: the loop's remainder runs too). */
static void
gelu_sweep(const char *approx, int tanh_form)
{
    struct ophost_attr attrs[] = {OPHOST_STRING("approximate", approx),
                                  OPHOST_END};
    enum { N = 6001 };
    struct smlp_tensor *in[1], *gr[1];
    const float *g;
    float *x;
    int64_t i;

    in[0] = ophost_f32(OPHOST_SHAPE(N), NULL);
    x = in[0]->data;
    for (i = 0; i < N; i++)
        x[i] = (float)(-30.0 + 60.0 * (double)i / (N - 1));
    backward_ones("core.gelu", attrs, in, 1, gr);
    g = gr[0]->data;
    for (i = 0; i < N; i++) {
        double want = gelu_grad_ref(x[i], tanh_form);

        ck_assert_msg(fabs(g[i] - want) <= 2e-6 * (1.0 + fabs(want)),
                      "gelu %s'(%.9g) = %.9g, want %.9g", approx,
                      (double)x[i], (double)g[i], want);
    }
    free_all(in, 1);
    free_all(gr, 1);
}

START_TEST(test_grad_gelu_sweep)
{
    gelu_sweep("none", 0);
    gelu_sweep("tanh", 1);
}
END_TEST

/*
 * Past one chunk of SMLP__CORE_CHUNK = 16384 elements (core.h) with a dy
 * that varies, so that every chunk must pair x[i] with dy[i]: N = 40000
 * gives chunks of 16384, 16384 and 7232.  Against gelu_grad_ref(x)·dy in
 * double; dy is at most 1.5, hence twice the sweep's tolerance.
 */
static void
gelu_chunked(const char *approx, int tanh_form)
{
    struct ophost_attr attrs[] = {OPHOST_STRING("approximate", approx),
                                  OPHOST_END};
    enum { N = 40000 };
    struct smlp_tensor *in[1], *out[1] = {NULL}, *dy[1], *gr[1];
    const char *msg;
    const float *g;
    float *x, *d;
    int64_t i;
    int rc;

    in[0] = ophost_f32(OPHOST_SHAPE(N), NULL);
    x = in[0]->data;
    for (i = 0; i < N; i++)
        x[i] = (float)(-8.0 + 16.0 * (double)i / (N - 1));
    rc = ophost_run(host, "core.gelu", attrs, in, 1, out, 1, &msg);
    ck_assert_msg(rc == SMLP_OK, "core.gelu: %s", msg);
    dy[0] = ophost_tensor_like(out[0]);
    d = dy[0]->data;
    for (i = 0; i < N; i++)
        d[i] = (float)(i % 13 - 6) * 0.25f;
    gr[0] = ophost_tensor_like(in[0]);
    rc = ophost_backward(host, "core.gelu", attrs, in, 1, out, 1, dy, gr,
                         &msg);
    ck_assert_msg(rc == SMLP_OK, "core.gelu backward: %s", msg);
    g = gr[0]->data;
    for (i = 0; i < N; i++) {
        double want = gelu_grad_ref(x[i], tanh_form) * d[i];

        ck_assert_msg(fabs(g[i] - want) <= 4e-6 * (1.0 + fabs(want)),
                      "gelu %s: dx[%lld] at x = %.9g, dy = %g: %.9g, want "
                      "%.9g",
                      approx, (long long)i, (double)x[i], (double)d[i],
                      (double)g[i], want);
    }
    free_all(in, 1);
    free_all(out, 1);
    free_all(dy, 1);
    free_all(gr, 1);
}

START_TEST(test_grad_gelu_chunked_dy)
{
    gelu_chunked("none", 0);
    gelu_chunked("tanh", 1);
}
END_TEST

START_TEST(test_grad_gelu_nonfinite)
{
    struct ophost_attr attrs[2][2] = {
        {OPHOST_STRING("approximate", "none"), OPHOST_END},
        {OPHOST_STRING("approximate", "tanh"), OPHOST_END},
    };
    const float x[] = {NAN, INFINITY, -INFINITY, 1e30f, -1e30f};
    struct smlp_tensor *in[1], *gr[1];
    const float *g;
    int a;

    for (a = 0; a < 2; a++) {
        in[0] = ophost_f32(OPHOST_SHAPE(5), x);
        backward_ones("core.gelu", attrs[a], in, 1, gr);
        g = gr[0]->data;
        /* NaN stays NaN; the tails are 1 and 0 to float precision. */
        ck_assert_msg(isnan(g[0]), "NaN in, %g out", (double)g[0]);
        ck_assert_float_eq_tol(g[1], 1.0f, 1e-6f);
        ck_assert_float_eq_tol(g[2], 0.0f, 1e-6f);
        ck_assert_float_eq_tol(g[3], 1.0f, 1e-6f);
        ck_assert_float_eq_tol(g[4], 0.0f, 1e-6f);
        free_all(in, 1);
        free_all(gr, 1);
    }
}
END_TEST

/* ---- core.relu, core.add, core.scale ------------------------------------ */

START_TEST(test_grad_relu)
{
    struct smlp_tensor *t[1];

    t[0] = rnd_away_from_zero(OPHOST_SHAPE(4, 7), 1);
    grad_check("core.relu", NULL, t, 1, CHECK_1, TOL_SMOOTH, 1);
    t[0] = rnd_away_from_zero(OPHOST_SHAPE(13), 2);
    grad_check("core.relu", NULL, t, 1, CHECK_1, TOL_SMOOTH, 2);
    t[0] = rnd_away_from_zero(OPHOST_SHAPE(2, 3, 5), 3);
    grad_check("core.relu", NULL, t, 1, CHECK_1, TOL_SMOOTH, 3);
}
END_TEST

START_TEST(test_grad_relu_at_zero)
{
    /* The subgradient at 0 is 0, as in PyTorch. */
    const float x[] = {0.0f, -0.0f, 2.0f, -2.0f};
    struct smlp_tensor *in[1] = {ophost_f32(OPHOST_SHAPE(4), x)}, *gr[1];
    const float *g;

    backward_ones("core.relu", NULL, in, 1, gr);
    g = gr[0]->data;
    ck_assert_float_eq(g[0], 0.0f);
    ck_assert_float_eq(g[1], 0.0f);
    ck_assert_float_eq(g[2], 1.0f);
    ck_assert_float_eq(g[3], 0.0f);
    free_all(in, 1);
    free_all(gr, 1);
}
END_TEST

START_TEST(test_grad_add)
{
    struct smlp_tensor *t[2];

    t[0] = rnd_f32(OPHOST_SHAPE(3, 5), 1, 1.0);
    t[1] = rnd_f32(OPHOST_SHAPE(3, 5), 2, 1.0);
    grad_check("core.add", NULL, t, 2, CHECK_2, TOL_LINEAR, 1);
    t[0] = rnd_f32(OPHOST_SHAPE(2, 3, 7), 3, 2.0);
    t[1] = rnd_f32(OPHOST_SHAPE(2, 3, 7), 4, 2.0);
    grad_check("core.add", NULL, t, 2, CHECK_2, TOL_LINEAR, 2);
}
END_TEST

START_TEST(test_grad_scale)
{
    struct ophost_attr a1[] = {OPHOST_FLOAT("alpha", 2.5), OPHOST_END};
    struct ophost_attr a2[] = {OPHOST_FLOAT("alpha", -0.7), OPHOST_END};
    struct smlp_tensor *t[1];

    t[0] = rnd_f32(OPHOST_SHAPE(3, 5), 1, 1.0);
    grad_check("core.scale", a1, t, 1, CHECK_1, TOL_LINEAR, 1);
    t[0] = rnd_f32(OPHOST_SHAPE(11), 2, 1.0);
    grad_check("core.scale", a2, t, 1, CHECK_1, TOL_LINEAR, 2);
}
END_TEST

/* ---- core.transpose, core.reshape ------------------------------------- */

static void
grad_transpose(int rank, const int64_t *shape, const int64_t *perm,
               uint64_t seed)
{
    struct ophost_attr attrs[] = {
        {.name = "perm", .type = SMLP_ATTR_INTS, .ints = perm,
         .n = (size_t)rank},
        OPHOST_END};
    struct smlp_tensor *t[1] = {rnd_f32(rank, shape, seed, 1.0)};

    grad_check("core.transpose", attrs, t, 1, CHECK_1, TOL_LINEAR, seed);
}

START_TEST(test_grad_transpose)
{
    grad_transpose(OPHOST_SHAPE(3, 5), (const int64_t[]){1, 0}, 1);
    grad_transpose(OPHOST_SHAPE(2, 3, 4), (const int64_t[]){2, 0, 1}, 2);
    grad_transpose(OPHOST_SHAPE(2, 3, 4), (const int64_t[]){0, 2, 1}, 3);
    grad_transpose(OPHOST_SHAPE(2, 3, 2, 5), (const int64_t[]){3, 1, 0, 2},
                   4);
    grad_transpose(OPHOST_SHAPE(2, 1, 3, 5), (const int64_t[]){0, 2, 1, 3},
                   5);
    grad_transpose(OPHOST_SHAPE(2, 3, 4), (const int64_t[]){0, 1, 2}, 6);
    grad_transpose(OPHOST_SHAPE(7), (const int64_t[]){0}, 7);
    /* Larger than one 32x32 tile, odd sizes. */
    grad_transpose(OPHOST_SHAPE(35, 33), (const int64_t[]){1, 0}, 8);
}
END_TEST

START_TEST(test_grad_reshape)
{
    struct ophost_attr a1[] = {OPHOST_INTS("shape", 6, -1), OPHOST_END};
    struct ophost_attr a2[] = {OPHOST_INTS("shape", 15), OPHOST_END};
    struct ophost_attr a3[] = {OPHOST_INTS("shape", 0, 3, 1, 5), OPHOST_END};
    struct smlp_tensor *t[1];

    t[0] = rnd_f32(OPHOST_SHAPE(2, 3, 4), 1, 1.0);
    grad_check("core.reshape", a1, t, 1, CHECK_1, TOL_LINEAR, 1);
    t[0] = rnd_f32(OPHOST_SHAPE(3, 5), 2, 1.0);
    grad_check("core.reshape", a2, t, 1, CHECK_1, TOL_LINEAR, 2);
    t[0] = rnd_f32(OPHOST_SHAPE(2, 15), 3, 1.0);
    grad_check("core.reshape", a3, t, 1, CHECK_1, TOL_LINEAR, 3);
}
END_TEST

/* ---- core.mean -------------------------------------------------------- */

static void
grad_mean(int rank, const int64_t *shape, int64_t axis, int64_t keepdims,
          uint64_t seed)
{
    struct ophost_attr attrs[] = {OPHOST_INT("axis", axis),
                                  OPHOST_INT("keepdims", keepdims),
                                  OPHOST_END};
    struct smlp_tensor *t[1] = {rnd_f32(rank, shape, seed, 1.0)};

    grad_check("core.mean", attrs, t, 1, CHECK_1, TOL_LINEAR, seed);
}

START_TEST(test_grad_mean)
{
    grad_mean(OPHOST_SHAPE(2, 5, 3), 1, 0, 1);
    grad_mean(OPHOST_SHAPE(2, 5, 3), -1, 1, 2);
    grad_mean(OPHOST_SHAPE(2, 5, 3), 0, 0, 3);
    grad_mean(OPHOST_SHAPE(4, 7), -1, 0, 4);
    grad_mean(OPHOST_SHAPE(9), 0, 0, 5);
    grad_mean(OPHOST_SHAPE(3, 1, 4), 1, 1, 6);
}
END_TEST

/* ---- core.patch_embed ------------------------------------------------- */

/* img [b, cin, h, w], W [c, cin, p, p], b [c] when `bias`. */
static void
grad_patch(int64_t b, int64_t cin, int64_t h, int64_t w, int64_t c,
           int64_t p, int bias, uint64_t seed)
{
    struct ophost_attr attrs[] = {OPHOST_INT("patch", p), OPHOST_END};
    struct smlp_tensor *t[3] = {
        rnd_f32(OPHOST_SHAPE(b, cin, h, w), seed, 1.0),
        rnd_f32(OPHOST_SHAPE(c, cin, p, p), seed + 1, 1.0),
        bias ? rnd_f32(OPHOST_SHAPE(c), seed + 2, 1.0) : NULL,
    };

    grad_check("core.patch_embed", attrs, t, bias ? 3 : 2, CHECK_3,
               TOL_LINEAR, seed);
}

START_TEST(test_grad_patch_embed)
{
    grad_patch(2, 3, 4, 6, 5, 2, 1, 1);
    grad_patch(1, 2, 3, 3, 4, 3, 0, 2);
    grad_patch(2, 2, 3, 2, 3, 1, 1, 3);
    grad_patch(1, 1, 6, 9, 2, 3, 1, 4);
}
END_TEST

START_TEST(test_grad_patch_embed_empty)
{
    struct ophost_attr attrs[] = {OPHOST_INT("patch", 2), OPHOST_END};
    struct smlp_tensor *in[3], *gr[3];
    const float *d;
    int64_t i;

    /* No images: dW and db are sums over no patches, zero (not left as
     * the NaN fill). */
    in[0] = ophost_f32(OPHOST_SHAPE(0, 2, 4, 4), NULL);
    in[1] = rnd_f32(OPHOST_SHAPE(3, 2, 2, 2), 1, 1.0);
    in[2] = rnd_f32(OPHOST_SHAPE(3), 2, 1.0);
    backward_ones("core.patch_embed", attrs, in, 3, gr);
    for (i = 0, d = gr[1]->data; i < 24; i++)
        ck_assert_msg(d[i] == 0.0f, "dW[%lld] = %g", (long long)i, d[i]);
    for (i = 0, d = gr[2]->data; i < 3; i++)
        ck_assert_msg(d[i] == 0.0f, "db[%lld] = %g", (long long)i, d[i]);
    free_all(in, 3);
    free_all(gr, 3);
    /* No output channels: y [1, 4, 0] depends on no pixel, dimg = 0. */
    in[0] = rnd_f32(OPHOST_SHAPE(1, 2, 4, 4), 3, 1.0);
    in[1] = ophost_f32(OPHOST_SHAPE(0, 2, 2, 2), NULL);
    in[2] = ophost_f32(OPHOST_SHAPE(0), NULL);
    backward_ones("core.patch_embed", attrs, in, 3, gr);
    for (i = 0, d = gr[0]->data; i < 32; i++)
        ck_assert_msg(d[i] == 0.0f, "dimg[%lld] = %g", (long long)i, d[i]);
    free_all(in, 3);
    free_all(gr, 3);
}
END_TEST

/* ---- core.matmul ------------------------------------------------------ */

/* a, b for batch dims `bd` (nb of them), m, k, n and the two flags. */
static void
grad_matmul(int nb, const int64_t *bd, int64_t m, int64_t k, int64_t n,
            int ta, int tb, uint64_t seed)
{
    struct ophost_attr attrs[] = {OPHOST_INT("transpose_a", ta),
                                  OPHOST_INT("transpose_b", tb), OPHOST_END};
    int64_t sa[SMLP_MAX_RANK], sb[SMLP_MAX_RANK];
    struct smlp_tensor *t[2];
    int d;

    for (d = 0; d < nb; d++)
        sa[d] = sb[d] = bd[d];
    sa[nb] = ta ? k : m;
    sa[nb + 1] = ta ? m : k;
    sb[nb] = tb ? n : k;
    sb[nb + 1] = tb ? k : n;
    t[0] = rnd_f32(nb + 2, sa, seed, 1.0);
    t[1] = rnd_f32(nb + 2, sb, seed + 1, 1.0);
    grad_check("core.matmul", attrs, t, 2, CHECK_2, TOL_LINEAR, seed);
}

START_TEST(test_grad_matmul_2d)
{
    grad_matmul(0, NULL, 3, 4, 5, 0, 0, 1);
    grad_matmul(0, NULL, 1, 7, 1, 0, 0, 2);
}
END_TEST

START_TEST(test_grad_matmul_batched_transposes)
{
    const int64_t b1[] = {3}, b2[] = {2, 2};
    int ta, tb;

    for (ta = 0; ta < 2; ta++)
        for (tb = 0; tb < 2; tb++) {
            grad_matmul(1, b1, 3, 4, 5, ta, tb, (uint64_t)(10 + 2 * ta + tb));
            grad_matmul(2, b2, 5, 3, 2, ta, tb, (uint64_t)(20 + 2 * ta + tb));
        }
}
END_TEST

/* ---- core.softmax_cross_entropy --------------------------------------- */

static void
grad_sce(int64_t n, int64_t k, double smoothing, double scale,
         uint64_t seed)
{
    struct ophost_attr attrs[] = {
        OPHOST_FLOAT("label_smoothing", smoothing), OPHOST_END};
    static const int check[] = {1, 0}; /* labels are i32 */
    struct smlp_tensor *t[2] = {rnd_f32(OPHOST_SHAPE(n, k), seed, scale),
                                labels_i32(n, k, seed)};

    grad_check("core.softmax_cross_entropy", attrs, t, 2, check, TOL_SMOOTH,
               seed);
}

START_TEST(test_grad_softmax_cross_entropy)
{
    grad_sce(5, 7, 0.0, 2.0, 1);
    grad_sce(3, 10, 0.0, 4.0, 2);
    grad_sce(1, 3, 0.0, 1.0, 3);
    grad_sce(4, 1, 0.0, 1.0, 4); /* one class: loss 0, gradient 0 */
}
END_TEST

START_TEST(test_grad_softmax_cross_entropy_smoothing)
{
    grad_sce(5, 7, 0.1, 2.0, 5);
    grad_sce(3, 10, 0.1, 4.0, 6);
    grad_sce(6, 4, 1.0, 1.0, 7);
}
END_TEST

START_TEST(test_grad_softmax_cross_entropy_bad_label)
{
    const int32_t lab[] = {0, 3};
    struct smlp_tensor *in[2] = {rnd_f32(OPHOST_SHAPE(2, 3), 1, 1.0),
                                 ophost_i32(OPHOST_SHAPE(2), lab)};
    struct smlp_tensor *out[1] = {ophost_f32(0, NULL, NULL)};
    struct smlp_tensor *g[1] = {ophost_f32(0, NULL, NULL)};
    struct smlp_tensor *gi[2] = {ophost_tensor_like(in[0]), NULL};
    const char *msg;
    int rc;

    rc = ophost_backward(host, "core.softmax_cross_entropy", NULL, in, 2,
                         out, 1, g, gi, &msg);
    ck_assert_int_eq(rc, SMLP_EINVAL);
    ck_assert_msg(strstr(msg, "label 3 is out of range") != NULL, "%s", msg);
    free_all(in, 2);
    free_all(out, 1);
    free_all(g, 1);
    free_all(gi, 1);
}
END_TEST

static Suite *
grad_core_suite(void)
{
    Suite *s = suite_create("grad_core");
    TCase *tc;

#define TC(name)                                                             \
    tc = tcase_create(name);                                                 \
    tcase_add_checked_fixture(tc, setup, teardown);                          \
    suite_add_tcase(s, tc)

    TC("linear");
    tcase_add_test(tc, test_grad_linear_axis_m1);
    tcase_add_test(tc, test_grad_linear_axis_m2);
    tcase_add_test(tc, test_grad_linear_other_axes);
    tcase_add_test(tc, test_grad_linear_no_bias);
    tcase_add_test(tc, test_grad_linear_split_sum);
    tcase_add_test(tc, test_grad_linear_split_sum_sizes);
    tcase_add_test(tc, test_grad_linear_empty);
    TC("gelu");
    tcase_add_test(tc, test_grad_gelu_exact);
    tcase_add_test(tc, test_grad_gelu_tanh);
    tcase_add_test(tc, test_grad_gelu_sweep);
    tcase_add_test(tc, test_grad_gelu_chunked_dy);
    tcase_add_test(tc, test_grad_gelu_nonfinite);
    TC("elementwise");
    tcase_add_test(tc, test_grad_relu);
    tcase_add_test(tc, test_grad_relu_at_zero);
    tcase_add_test(tc, test_grad_add);
    tcase_add_test(tc, test_grad_scale);
    TC("shape");
    tcase_add_test(tc, test_grad_transpose);
    tcase_add_test(tc, test_grad_reshape);
    TC("mean");
    tcase_add_test(tc, test_grad_mean);
    TC("patch_embed");
    tcase_add_test(tc, test_grad_patch_embed);
    tcase_add_test(tc, test_grad_patch_embed_empty);
    TC("matmul");
    tcase_add_test(tc, test_grad_matmul_2d);
    tcase_add_test(tc, test_grad_matmul_batched_transposes);
    TC("softmax_cross_entropy");
    tcase_add_test(tc, test_grad_softmax_cross_entropy);
    tcase_add_test(tc, test_grad_softmax_cross_entropy_smoothing);
    tcase_add_test(tc, test_grad_softmax_cross_entropy_bad_label);
#undef TC
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(grad_core_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
