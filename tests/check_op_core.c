/*
 * check_op_core.c - the ops of the `core` plugin, one TCase per op.
 *
 * Expected values are derived by hand (small tensors, worked out in the
 * comments) or by naive loops written here in double precision; never by
 * calling a kernel.  Shape-inference errors are checked by the message
 * substring that OPS.md promises.  The plugin is loaded from
 * $SMLP_TEST_BUILDDIR/plugins/.libs/core.so through tests/ophost.c.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ophost.h"

static struct ophost *host;

static void
setup(void)
{
    char err[1024];

    host = ophost_create("core", err, sizeof(err));
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
static void
fill(float *v, int64_t n, uint64_t seed)
{
    int64_t i;

    for (i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        v[i] = (float)((double)(seed >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
}

static float *
rnd(int64_t n, uint64_t seed)
{
    float *v = malloc((size_t)n * sizeof(float));

    ck_assert_ptr_nonnull(v);
    fill(v, n, seed);
    return v;
}

static void
assert_close(const struct smlp_tensor *t, const double *want, int64_t n,
             double tol)
{
    const float *got = t->data;
    int64_t i;

    ck_assert_int_eq(t->dtype, SMLP_DTYPE_F32);
    ck_assert_int_eq(smlp_tensor_numel(t), n);
    for (i = 0; i < n; i++)
        ck_assert_msg(fabs(got[i] - want[i]) <= tol * (1.0 + fabs(want[i])),
                      "element %lld: got %.9g, want %.9g", (long long)i,
                      (double)got[i], want[i]);
}

static void
assert_shape(const struct smlp_tensor *t, int rank, const int64_t *shape)
{
    int d;

    ck_assert_int_eq(t->rank, rank);
    for (d = 0; d < rank; d++)
        ck_assert_int_eq(t->shape[d], shape[d]);
}

/* Runs op, asserting success; returns output 0 (caller frees). */
static struct smlp_tensor *
run_ok(const char *op, const struct ophost_attr *attrs,
       struct smlp_tensor *const *in, int n_in)
{
    struct smlp_tensor *out[1] = {NULL};
    const char *msg;
    int rc = ophost_run(host, op, attrs, in, n_in, out, 1, &msg);

    ck_assert_msg(rc == SMLP_OK, "%s failed (%s): %s", op,
                  ophost_status_name(rc), msg);
    return out[0];
}

/* Runs shape inference, asserting failure with `want` in the message. */
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

static void
free_all(struct smlp_tensor **t, int n)
{
    int i;

    for (i = 0; i < n; i++)
        ophost_tensor_free(t[i]);
}

/* Runs op's backward with one output y and its gradient dy into gin[]
 * (NULL entries: no gradient wanted), asserting success. */
static void
backward_ok(const char *op, const struct ophost_attr *attrs,
            struct smlp_tensor *const *in, int n_in, struct smlp_tensor *y,
            struct smlp_tensor *dy, struct smlp_tensor *const *gin)
{
    const char *msg;
    int rc = ophost_backward(host, op, attrs, in, n_in, &y, 1, &dy, gin,
                             &msg);

    ck_assert_msg(rc == SMLP_OK, "%s backward failed (%s): %s", op,
                  ophost_status_name(rc), msg);
}

/* ---- core.linear -------------------------------------------------------- */

/*
 * y[o, j, k] = Σ_i W[j, i]·x[o, i, k] + b[j] with x viewed as
 * [outer, in, inner] around the axis.
 */
static double *
linear_ref(const struct smlp_tensor *x, int axis, const float *w,
           const float *b, int64_t out)
{
    const float *xd = x->data;
    int64_t outer = 1, inner = 1, in = x->shape[axis], o, j, i, k;
    double *y;
    int d;

    for (d = 0; d < axis; d++)
        outer *= x->shape[d];
    for (d = axis + 1; d < x->rank; d++)
        inner *= x->shape[d];
    y = calloc((size_t)(outer * out * inner), sizeof(double));
    ck_assert_ptr_nonnull(y);
    for (o = 0; o < outer; o++)
        for (j = 0; j < out; j++)
            for (k = 0; k < inner; k++) {
                double s = b ? b[j] : 0.0;

                for (i = 0; i < in; i++)
                    s += (double)w[j * in + i] * xd[(o * in + i) * inner + k];
                y[(o * out + j) * inner + k] = s;
            }
    return y;
}

/* Runs core.linear on x [shape] with W [out, shape[axis]] against the
 * naive loop; axis_attr is what the graph says. */
static void
check_linear(int rank, const int64_t *shape, int64_t axis_attr, int64_t out,
             int with_bias, int pass_null_bias)
{
    int axis = (int)(axis_attr < 0 ? axis_attr + rank : axis_attr);
    int64_t in = shape[axis], yshape[SMLP_MAX_RANK], n = 1;
    struct smlp_tensor *t[4];
    struct ophost_attr attrs[] = {OPHOST_INT("axis", axis_attr), OPHOST_END};
    float *xv, *wv, *bv;
    double *want;
    int d, n_in;

    for (d = 0; d < rank; d++)
        n *= shape[d];
    xv = rnd(n, 11);
    wv = rnd(out * in, 22);
    bv = rnd(out, 33);
    t[0] = ophost_f32(rank, shape, xv);
    t[1] = ophost_f32(OPHOST_SHAPE(out, in), wv);
    t[2] = with_bias ? ophost_f32(OPHOST_SHAPE(out), bv) : NULL;
    n_in = with_bias || pass_null_bias ? 3 : 2;
    t[3] = run_ok("core.linear", attrs, t, n_in);
    for (d = 0; d < rank; d++)
        yshape[d] = d == axis ? out : shape[d];
    assert_shape(t[3], rank, yshape);
    want = linear_ref(t[0], axis, wv, with_bias ? bv : NULL, out);
    assert_close(t[3], want, n / in * out, 1e-5);
    ck_assert_int_eq(ophost_stats(host)->macs, (uint64_t)(n * out));
    free(want);
    free(xv);
    free(wv);
    free(bv);
    free_all(t, 4);
}

START_TEST(test_linear_axis_m1_hand)
{
    /* y = x·Wᵀ + b: row (1,2,3) gives (1-3+0.1, 0.5·6-0.2) = (-1.9, 2.8);
     * row (4,5,6) gives (4-6+0.1, 0.5·15-0.2) = (-1.9, 7.3). */
    const float x[] = {1, 2, 3, 4, 5, 6};
    const float w[] = {1, 0, -1, 0.5f, 0.5f, 0.5f};
    const float b[] = {0.1f, -0.2f};
    const double want[] = {-1.9, 2.8, -1.9, 7.3};
    struct smlp_tensor *t[4] = {
        ophost_f32(OPHOST_SHAPE(2, 3), x),
        ophost_f32(OPHOST_SHAPE(2, 3), w),
        ophost_f32(OPHOST_SHAPE(2), b),
    };

    t[3] = run_ok("core.linear", NULL, t, 3);
    assert_shape(t[3], 2, (const int64_t[]){2, 2});
    assert_close(t[3], want, 4, 1e-6);
    free_all(t, 4);
}
END_TEST

START_TEST(test_linear_axis_m1_bias)
{
    check_linear(OPHOST_SHAPE(2, 3, 5), -1, 4, 1, 0);
}
END_TEST

START_TEST(test_linear_axis_m1_no_bias)
{
    check_linear(OPHOST_SHAPE(2, 3, 5), -1, 4, 0, 0);
    check_linear(OPHOST_SHAPE(6, 7), -1, 3, 0, 1); /* b passed as NULL */
}
END_TEST

START_TEST(test_linear_axis_m2_left_multiply)
{
    /* Token mixing on [B, S, C]: W [S1, S]. */
    check_linear(OPHOST_SHAPE(2, 3, 4), -2, 5, 1, 0);
}
END_TEST

START_TEST(test_linear_axis_m2_no_bias)
{
    check_linear(OPHOST_SHAPE(3, 7, 6), -2, 2, 0, 0);
}
END_TEST

START_TEST(test_linear_axis_0_bias)
{
    check_linear(OPHOST_SHAPE(3, 2, 4), 0, 5, 1, 0);
}
END_TEST

START_TEST(test_linear_axis_0_no_bias)
{
    check_linear(OPHOST_SHAPE(4, 3), 0, 2, 0, 0);
}
END_TEST

START_TEST(test_linear_axis_1_of_4d)
{
    check_linear(OPHOST_SHAPE(2, 5, 3, 2), 1, 4, 1, 0);
}
END_TEST

START_TEST(test_linear_in_dim_mismatch)
{
    struct smlp_tensor *t[2] = {
        ophost_f32(OPHOST_SHAPE(2, 196, 768), NULL),
        ophost_f32(OPHOST_SHAPE(384, 197), NULL),
    };
    struct ophost_attr attrs[] = {OPHOST_INT("axis", -2), OPHOST_END};

    infer_fails("core.linear", attrs, t, 2,
                "input 0 (x) has shape [2,196,768]: dim -2 is 196, "
                "W [384,197] expects 197");
    free_all(t, 2);
}
END_TEST

START_TEST(test_linear_bias_shape)
{
    struct smlp_tensor *t[3] = {
        ophost_f32(OPHOST_SHAPE(2, 3), NULL),
        ophost_f32(OPHOST_SHAPE(4, 3), NULL),
        ophost_f32(OPHOST_SHAPE(3), NULL),
    };

    infer_fails("core.linear", NULL, t, 3,
                "input 2 (b) has shape [3], expected [4]");
    free_all(t, 3);
}
END_TEST

START_TEST(test_linear_axis_out_of_range)
{
    struct smlp_tensor *t[2] = {
        ophost_f32(OPHOST_SHAPE(2, 3), NULL),
        ophost_f32(OPHOST_SHAPE(4, 3), NULL),
    };
    struct ophost_attr attrs[] = {OPHOST_INT("axis", 2), OPHOST_END};

    infer_fails("core.linear", attrs, t, 2,
                "attribute 'axis' = 2 is out of range");
    free_all(t, 2);
}
END_TEST

START_TEST(test_linear_axis_wrong_type)
{
    struct smlp_tensor *t[2] = {
        ophost_f32(OPHOST_SHAPE(2, 3), NULL),
        ophost_f32(OPHOST_SHAPE(4, 3), NULL),
    };
    struct ophost_attr attrs[] = {OPHOST_FLOAT("axis", -1.0), OPHOST_END};

    infer_fails("core.linear", attrs, t, 2,
                "attribute 'axis' is a float, expected an int");
    free_all(t, 2);
}
END_TEST

START_TEST(test_linear_wrong_dtype)
{
    struct smlp_tensor *t[2] = {
        ophost_i32(OPHOST_SHAPE(2, 3), NULL),
        ophost_f32(OPHOST_SHAPE(4, 3), NULL),
    };

    infer_fails("core.linear", NULL, t, 2,
                "input 0 (x) has dtype i32, expected f32");
    free_all(t, 2);
}
END_TEST

START_TEST(test_linear_threads)
{
    /* Two OpenBLAS threads: same products as the naive loop. */
    ophost_set_threads(host, 2);
    check_linear(OPHOST_SHAPE(16, 40, 24), -1, 32, 1, 0);
    check_linear(OPHOST_SHAPE(4, 40, 24), -2, 32, 1, 0);
    ophost_set_threads(host, 1);
}
END_TEST

START_TEST(test_linear_bias_on_tiles)
{
    /*
     * Products big enough that gemm.c cuts them into tiles (each cut
     * keeps at least 64 rows or columns and 2^21 multiply-adds), so that
     * the bias is added tile by tile at an offset into b:
     *   axis -1, Y [128, 256] = X [128, 512]·Wᵀ: 2 x 4 tiles of 64 x 64,
     *     b[n0 + k] on the tiles of columns n0 = 64, 128, 192;
     *   axis -2 on [2, 256, 64], Y_o [256, 64] = W [256, 256]·X_o: row
     *     tiles of 128, b[m0 + r] on the rows m0 = 128 of each image.
     * A bias read from the start of b on every tile shows against the
     * naive loop.
     */
    check_linear(OPHOST_SHAPE(128, 512), -1, 256, 1, 0);
    check_linear(OPHOST_SHAPE(2, 256, 64), -2, 256, 1, 0);
}
END_TEST

START_TEST(test_linear_in_0_is_bias)
{
    /*
     * in = 0: the sum over in is empty, so y = b broadcast along the
     * other dims (0 without b), and the outputs, poisoned by ophost, must
     * all be written.  x [2,0], W [3,0], b = (0.5, -1, 2) -> y [2,3] =
     * two rows of b; axis -2 on x [2,0,2] -> y[o,j,k] = b[j].
     * Backward with dy = 1..6 on y [2,3]: db[j] = dy[0,j] + dy[1,j] =
     * (1+4, 2+5, 3+6) = (5, 7, 9); dx and dW have no elements.
     */
    const float b[] = {0.5f, -1, 2};
    const float dyv[] = {1, 2, 3, 4, 5, 6};
    const double want[] = {0.5, -1, 2, 0.5, -1, 2};
    const double want3[] = {0.5, 0.5, -1, -1, 2, 2, 0.5, 0.5, -1, -1, 2, 2};
    const double zeros[6] = {0};
    const double db[] = {5, 7, 9};
    struct smlp_tensor *t[3] = {ophost_f32(OPHOST_SHAPE(2, 0), NULL),
                                ophost_f32(OPHOST_SHAPE(3, 0), NULL),
                                ophost_f32(OPHOST_SHAPE(3), b)};
    struct smlp_tensor *y, *dy, *g[3];
    struct ophost_attr m2[] = {OPHOST_INT("axis", -2), OPHOST_END};

    y = run_ok("core.linear", NULL, t, 3);
    assert_shape(y, 2, (const int64_t[]){2, 3});
    assert_close(y, want, 6, 0.0);
    dy = ophost_f32(OPHOST_SHAPE(2, 3), dyv);
    g[0] = ophost_tensor_like(t[0]);
    g[1] = ophost_tensor_like(t[1]);
    g[2] = ophost_f32(OPHOST_SHAPE(3), (const float[]){-9, -9, -9});
    backward_ok("core.linear", NULL, t, 3, y, dy, g);
    assert_close(g[2], db, 3, 0.0);
    free_all(g, 3);
    ophost_tensor_free(dy);
    ophost_tensor_free(y);
    y = run_ok("core.linear", NULL, t, 2);
    assert_close(y, zeros, 6, 0.0);
    ophost_tensor_free(y);
    ophost_tensor_free(t[0]);
    t[0] = ophost_f32(OPHOST_SHAPE(2, 0, 2), NULL);
    y = run_ok("core.linear", m2, t, 3);
    assert_shape(y, 3, (const int64_t[]){2, 3, 2});
    assert_close(y, want3, 12, 0.0);
    ophost_tensor_free(y);
    free_all(t, 3);
}
END_TEST

/* ---- core.gelu ---------------------------------------------------------- */

static void
check_gelu(const struct ophost_attr *attrs, const double *want)
{
    const float x[] = {1, -1, 0, 2, -3, 0.5f};
    struct smlp_tensor *t[2] = {ophost_f32(OPHOST_SHAPE(2, 3), x)};

    t[1] = run_ok("core.gelu", attrs, t, 1);
    assert_shape(t[1], 2, (const int64_t[]){2, 3});
    assert_close(t[1], want, 6, 1e-6);
    free_all(t, 2);
}

/* 0.5·x·(1 + erf(x/√2)) at 1, -1, 0, 2, -3, 0.5. */
static const double gelu_exact[] = {
    0.8413447460685429,  -0.15865525393145707, 0.0,
    1.9544997361036416,  -0.00404969409489031, 0.34573123063700656,
};

START_TEST(test_gelu_exact_known_points)
{
    struct ophost_attr attrs[] = {OPHOST_STRING("approximate", "none"),
                                  OPHOST_END};

    check_gelu(attrs, gelu_exact);
}
END_TEST

START_TEST(test_gelu_default_is_exact)
{
    check_gelu(NULL, gelu_exact);
}
END_TEST

START_TEST(test_gelu_tanh_known_points)
{
    /* 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))). */
    const double want[] = {
        0.8411919906082768, -0.15880800939172324,  0.0,
        1.954597694087775,  -0.0036373920817729943, 0.34571400982514394,
    };
    struct ophost_attr attrs[] = {OPHOST_STRING("approximate", "tanh"),
                                  OPHOST_END};

    check_gelu(attrs, want);
}
END_TEST

/* The exact GELU on a dense sweep of [-10, 10] (and odd lengths, so the
 * vector loop's remainder runs) against erf() in double: within
 * 1e-6 + 3e-7·|want|.  The absolute part is where 1 + erf(x/√2) is below
 * float resolution (x < -4: gelu ~ 1e-7 there, and float erf near -1 has
 * 6e-8 steps; the rational approximation adds a few ulps of erf near its
 * clamp): an absolute error below 1e-6 on values that round to 0 anyway. */
START_TEST(test_gelu_exact_sweep)
{
    const int64_t n = 20001;
    float *x = malloc((size_t)n * sizeof(*x));
    double *want = malloc((size_t)n * sizeof(*want));
    struct smlp_tensor *t[2];
    int64_t i;

    ck_assert_ptr_nonnull(x);
    ck_assert_ptr_nonnull(want);
    for (i = 0; i < n; i++) {
        x[i] = (float)(-10.0 + 20.0 * (double)i / (double)(n - 1));
        want[i] = 0.5 * x[i] * (1.0 + erf(x[i] / sqrt(2.0)));
    }
    t[0] = ophost_f32(OPHOST_SHAPE(n), x);
    t[1] = run_ok("core.gelu", NULL, t, 1);
    for (i = 0; i < n; i++) {
        double got = ((const float *)t[1]->data)[i];

        ck_assert_msg(fabs(got - want[i]) <= 1e-6 + 3e-7 * fabs(want[i]),
                      "gelu(%.9g): got %.9g, want %.9g", (double)x[i], got,
                      want[i]);
    }
    free_all(t, 2);
    free(x);
    free(want);
}
END_TEST

START_TEST(test_gelu_bad_approximate)
{
    struct smlp_tensor *t[1] = {ophost_f32(OPHOST_SHAPE(2), NULL)};
    struct ophost_attr attrs[] = {OPHOST_STRING("approximate", "fast"),
                                  OPHOST_END};

    infer_fails("core.gelu", attrs, t, 1,
                "attribute 'approximate' = 'fast' is invalid");
    free_all(t, 1);
}
END_TEST

START_TEST(test_gelu_approximate_wrong_type)
{
    struct smlp_tensor *t[1] = {ophost_f32(OPHOST_SHAPE(2), NULL)};
    struct ophost_attr attrs[] = {OPHOST_INT("approximate", 1), OPHOST_END};

    infer_fails("core.gelu", attrs, t, 1,
                "attribute 'approximate' is an int, expected a string");
    free_all(t, 1);
}
END_TEST

/* ---- core.relu, core.add, core.scale ------------------------------------ */

START_TEST(test_relu_values)
{
    const float x[] = {-2, -0.5f, 0, 0.5f, 3, -1e-30f, 7, -7};
    const double want[] = {0, 0, 0, 0.5, 3, 0, 7, 0};
    struct smlp_tensor *t[2] = {ophost_f32(OPHOST_SHAPE(2, 2, 2), x)};

    t[1] = run_ok("core.relu", NULL, t, 1);
    assert_shape(t[1], 3, (const int64_t[]){2, 2, 2});
    assert_close(t[1], want, 8, 0.0);
    free_all(t, 2);
}
END_TEST

START_TEST(test_add_values)
{
    const float a[] = {1, 2, 3, 4, 5, 6};
    const float b[] = {0.5f, -2, 10, -4, 0, 1.25f};
    const double want[] = {1.5, 0, 13, 0, 5, 7.25};
    struct smlp_tensor *t[3] = {ophost_f32(OPHOST_SHAPE(2, 3), a),
                                ophost_f32(OPHOST_SHAPE(2, 3), b)};

    t[2] = run_ok("core.add", NULL, t, 2);
    assert_shape(t[2], 2, (const int64_t[]){2, 3});
    assert_close(t[2], want, 6, 0.0);
    free_all(t, 3);
}
END_TEST

START_TEST(test_add_shape_mismatch)
{
    struct smlp_tensor *t[2] = {ophost_f32(OPHOST_SHAPE(2, 3), NULL),
                                ophost_f32(OPHOST_SHAPE(3, 2), NULL)};

    infer_fails("core.add", NULL, t, 2,
                "input 1 (b) has shape [3,2], expected [2,3]");
    free_all(t, 2);
}
END_TEST

START_TEST(test_scale_values)
{
    const float x[] = {1, -2, 0.5f, 0};
    const double want[] = {-2.5, 5, -1.25, 0};
    struct smlp_tensor *t[2] = {ophost_f32(OPHOST_SHAPE(4), x)};
    struct ophost_attr attrs[] = {OPHOST_FLOAT("alpha", -2.5), OPHOST_END};

    t[1] = run_ok("core.scale", attrs, t, 1);
    assert_close(t[1], want, 4, 0.0);
    free_all(t, 2);
}
END_TEST

START_TEST(test_scale_missing_alpha)
{
    struct smlp_tensor *t[1] = {ophost_f32(OPHOST_SHAPE(4), NULL)};

    infer_fails("core.scale", NULL, t, 1,
                "missing required attribute 'alpha'");
    free_all(t, 1);
}
END_TEST

START_TEST(test_scale_alpha_wrong_type)
{
    struct smlp_tensor *t[1] = {ophost_f32(OPHOST_SHAPE(4), NULL)};
    struct ophost_attr attrs[] = {OPHOST_INT("alpha", 2), OPHOST_END};

    infer_fails("core.scale", attrs, t, 1,
                "attribute 'alpha' is an int, expected a float");
    free_all(t, 1);
}
END_TEST

/* ---- core.transpose ----------------------------------------------------- */

/* y[i] at output multi-index = x at input index where in[perm[d]] = out[d]. */
static void
check_transpose(int dtype, int rank, const int64_t *shape,
                const int64_t *perm)
{
    struct smlp_tensor *t[2];
    struct ophost_attr attrs[] = {
        {.name = "perm", .type = SMLP_ATTR_INTS, .ints = perm,
         .n = (size_t)rank},
        OPHOST_END,
    };
    int64_t n = 1, i, oshape[SMLP_MAX_RANK], idx[SMLP_MAX_RANK];
    int32_t *xv;
    const int32_t *y;
    int d;

    for (d = 0; d < rank; d++) {
        n *= shape[d];
        oshape[d] = shape[perm[d]];
    }
    xv = malloc((size_t)n * sizeof(*xv));
    ck_assert_ptr_nonnull(xv);
    for (i = 0; i < n; i++)
        xv[i] = (int32_t)(i * 7 + 1);
    t[0] = ophost_tensor(dtype, rank, shape, xv);
    t[1] = run_ok("core.transpose", attrs, t, 1);
    ck_assert_int_eq(t[1]->dtype, dtype);
    assert_shape(t[1], rank, oshape);
    y = t[1]->data;
    for (i = 0; i < n; i++) {
        int64_t rest = i, src = 0;

        for (d = rank - 1; d >= 0; d--) {
            idx[d] = rest % oshape[d];
            rest /= oshape[d];
        }
        for (d = 0; d < rank; d++) {
            int64_t stride = 1;
            int e;

            for (e = (int)perm[d] + 1; e < rank; e++)
                stride *= shape[e];
            src += idx[d] * stride;
        }
        ck_assert_msg(y[i] == xv[src], "element %lld: got %d, want %d",
                      (long long)i, y[i], xv[src]);
    }
    free(xv);
    free_all(t, 2);
}

START_TEST(test_transpose_3d_perm)
{
    /* [2,3,4] with perm (2,0,1) -> [4,2,3], y[i,j,k] = x[j,k,i]. */
    const float x[] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                       12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23};
    const double want[] = {0, 4, 8, 12, 16, 20, 1, 5, 9, 13, 17, 21,
                           2, 6, 10, 14, 18, 22, 3, 7, 11, 15, 19, 23};
    struct smlp_tensor *t[2] = {ophost_f32(OPHOST_SHAPE(2, 3, 4), x)};
    struct ophost_attr attrs[] = {OPHOST_INTS("perm", 2, 0, 1), OPHOST_END};

    t[1] = run_ok("core.transpose", attrs, t, 1);
    assert_shape(t[1], 3, (const int64_t[]){4, 2, 3});
    assert_close(t[1], want, 24, 0.0);
    free_all(t, 2);
}
END_TEST

START_TEST(test_transpose_2d)
{
    check_transpose(SMLP_DTYPE_F32, OPHOST_SHAPE(3, 5),
                    (const int64_t[]){1, 0});
}
END_TEST

START_TEST(test_transpose_tiled_edges)
{
    /* [B,S,C] -> [B,C,S] with sizes that are not tile multiples. */
    check_transpose(SMLP_DTYPE_F32, OPHOST_SHAPE(2, 70, 45),
                    (const int64_t[]){0, 2, 1});
}
END_TEST

START_TEST(test_transpose_i32_contiguous_rows)
{
    check_transpose(SMLP_DTYPE_I32, OPHOST_SHAPE(3, 4, 5),
                    (const int64_t[]){1, 0, 2});
}
END_TEST

START_TEST(test_transpose_4d_general)
{
    check_transpose(SMLP_DTYPE_F32, OPHOST_SHAPE(2, 3, 4, 5),
                    (const int64_t[]){3, 1, 0, 2});
    check_transpose(SMLP_DTYPE_F32, OPHOST_SHAPE(2, 1, 4, 1),
                    (const int64_t[]){3, 2, 1, 0});
    check_transpose(SMLP_DTYPE_F32, OPHOST_SHAPE(2, 3, 4, 5),
                    (const int64_t[]){0, 1, 2, 3});
}
END_TEST

START_TEST(test_transpose_bad_perm)
{
    struct smlp_tensor *t[1] = {ophost_f32(OPHOST_SHAPE(2, 3, 4), NULL)};
    struct ophost_attr dup[] = {OPHOST_INTS("perm", 0, 2, 2), OPHOST_END};
    struct ophost_attr range[] = {OPHOST_INTS("perm", 0, 1, 3), OPHOST_END};
    struct ophost_attr len[] = {OPHOST_INTS("perm", 1, 0), OPHOST_END};

    infer_fails("core.transpose", dup, t, 1,
                "attribute 'perm' = [0,2,2] is not a permutation of 0..2");
    infer_fails("core.transpose", range, t, 1,
                "attribute 'perm' = [0,1,3] is not a permutation of 0..2");
    infer_fails("core.transpose", len, t, 1,
                "attribute 'perm' = [1,0] has 2 entries, input 0 (x) of "
                "shape [2,3,4] has rank 3");
    free_all(t, 1);
}
END_TEST

START_TEST(test_transpose_missing_perm)
{
    struct smlp_tensor *t[1] = {ophost_f32(OPHOST_SHAPE(2, 3), NULL)};

    infer_fails("core.transpose", NULL, t, 1,
                "missing required attribute 'perm'");
    free_all(t, 1);
}
END_TEST

/* ---- core.reshape ------------------------------------------------------- */

static void
check_reshape(const struct ophost_attr *attrs, int rank,
              const int64_t *want)
{
    float x[24];
    double xd[24];
    int i;
    struct smlp_tensor *t[2];

    for (i = 0; i < 24; i++) {
        x[i] = (float)i - 5.5f;
        xd[i] = x[i];
    }
    t[0] = ophost_f32(OPHOST_SHAPE(2, 3, 4), x);
    t[1] = run_ok("core.reshape", attrs, t, 1);
    assert_shape(t[1], rank, want);
    assert_close(t[1], xd, 24, 0.0);
    free_all(t, 2);
}

START_TEST(test_reshape_minus1_and_0)
{
    /* [2,3,4] -> (0 copies 2, -1 = 24/2) [2,12]. */
    struct ophost_attr a1[] = {OPHOST_INTS("shape", 0, -1), OPHOST_END};
    /* [2,3,4] -> [-1, 0 = 3, 2, 2]: -1 = 24/(3·2·2) = 2. */
    struct ophost_attr a2[] = {OPHOST_INTS("shape", -1, 0, 2, 2),
                               OPHOST_END};
    struct ophost_attr a3[] = {OPHOST_INTS("shape", 4, -1), OPHOST_END};
    struct ophost_attr a4[] = {OPHOST_INTS("shape", 24), OPHOST_END};

    check_reshape(a1, 2, (const int64_t[]){2, 12});
    check_reshape(a2, 4, (const int64_t[]){2, 3, 2, 2});
    check_reshape(a3, 2, (const int64_t[]){4, 6});
    check_reshape(a4, 1, (const int64_t[]){24});
}
END_TEST

START_TEST(test_reshape_is_view)
{
    const struct smlp_op_def *op = ophost_op(host, "core.reshape");

    ck_assert_ptr_nonnull(op);
    ck_assert(op->flags & SMLP_OP_VIEW);
    ck_assert(!(ophost_op(host, "core.transpose")->flags & SMLP_OP_VIEW));
}
END_TEST

START_TEST(test_reshape_size_mismatch)
{
    struct smlp_tensor *t[1] = {ophost_f32(OPHOST_SHAPE(2, 3, 4), NULL)};
    struct ophost_attr a1[] = {OPHOST_INTS("shape", 5, 5), OPHOST_END};
    struct ophost_attr a2[] = {OPHOST_INTS("shape", 5, -1), OPHOST_END};
    struct ophost_attr a3[] = {OPHOST_INTS("shape", -1, -1), OPHOST_END};
    struct ophost_attr a4[] = {OPHOST_INTS("shape", 0, 0, 0, 0), OPHOST_END};

    infer_fails("core.reshape", a1, t, 1,
                "attribute 'shape' = [5,5] gives 25 elements, input 0 (x) "
                "of shape [2,3,4] has 24");
    infer_fails("core.reshape", a2, t, 1,
                "attribute 'shape' = [5,-1] cannot hold the 24 elements");
    infer_fails("core.reshape", a3, t, 1, "entry 1 (-1) is invalid");
    infer_fails("core.reshape", a4, t, 1, "entry 3 (0) is invalid");
    free_all(t, 1);
}
END_TEST

START_TEST(test_reshape_shape_wrong_type)
{
    struct smlp_tensor *t[1] = {ophost_f32(OPHOST_SHAPE(2, 3), NULL)};
    struct ophost_attr attrs[] = {OPHOST_INT("shape", 6), OPHOST_END};

    infer_fails("core.reshape", attrs, t, 1,
                "attribute 'shape' is an int, expected a ints");
    free_all(t, 1);
}
END_TEST

/* ---- core.mean ---------------------------------------------------------- */

START_TEST(test_mean_axis1_tokens)
{
    /* x [2,3,2]: image 0 tokens (1,2) (3,4) (5,9) -> (3, 5);
     * image 1 tokens (0,0) (1,-1) (-4,4) -> (-1, 1). */
    const float x[] = {1, 2, 3, 4, 5, 9, 0, 0, 1, -1, -4, 4};
    const double want[] = {3, 5, -1, 1};
    struct smlp_tensor *t[2] = {ophost_f32(OPHOST_SHAPE(2, 3, 2), x)};
    struct ophost_attr attrs[] = {OPHOST_INT("axis", 1), OPHOST_END};

    t[1] = run_ok("core.mean", attrs, t, 1);
    assert_shape(t[1], 2, (const int64_t[]){2, 2});
    assert_close(t[1], want, 4, 1e-7);
    free_all(t, 2);
}
END_TEST

START_TEST(test_mean_last_keepdims)
{
    /* Rows of 3: (1,2,6) -> 3, (0,-3,0) -> -1. */
    const float x[] = {1, 2, 6, 0, -3, 0};
    const double want[] = {3, -1};
    struct smlp_tensor *t[2] = {ophost_f32(OPHOST_SHAPE(2, 3), x)};
    struct ophost_attr attrs[] = {OPHOST_INT("axis", -1),
                                  OPHOST_INT("keepdims", 1), OPHOST_END};

    t[1] = run_ok("core.mean", attrs, t, 1);
    assert_shape(t[1], 2, (const int64_t[]){2, 1});
    assert_close(t[1], want, 2, 1e-7);
    free_all(t, 2);
}
END_TEST

START_TEST(test_mean_axis0)
{
    /* Columns of [2,3]: (1,3) -> 2, (2,6) -> 4, (6,0) -> 3. */
    const float x[] = {1, 2, 6, 3, 6, 0};
    const double want[] = {2, 4, 3};
    struct smlp_tensor *t[2] = {ophost_f32(OPHOST_SHAPE(2, 3), x)};
    struct ophost_attr attrs[] = {OPHOST_INT("axis", 0), OPHOST_END};

    t[1] = run_ok("core.mean", attrs, t, 1);
    assert_shape(t[1], 1, (const int64_t[]){3});
    assert_close(t[1], want, 3, 1e-7);
    ck_assert_int_eq(ophost_stats(host)->workspace, 3 * sizeof(double));
    free_all(t, 2);
}
END_TEST

START_TEST(test_mean_wide_inner)
{
    /*
     * The forward sums columns in tasks of 256 (MEAN_COLS) and the
     * backward goes by rows of 16384 elements (SMLP__CORE_CHUNK): an inner
     * size of 600 gives column chunks 0-255, 256-511 and a partial
     * 512-599.  x [2,3,600] with x[o,k,i] = 1000·o + 10·k + i (exact in
     * f32) has the mean over k of 1000·o + 10 + i, exact too.
     */
    const int64_t inner = 600;
    float *x = malloc((size_t)(2 * 3 * inner) * sizeof(float));
    double *want = malloc((size_t)(2 * inner) * sizeof(double));
    struct smlp_tensor *t[2];
    struct ophost_attr attrs[] = {OPHOST_INT("axis", 1), OPHOST_END};
    int64_t o, k, i;

    ck_assert_ptr_nonnull(x);
    ck_assert_ptr_nonnull(want);
    for (o = 0; o < 2; o++) {
        for (k = 0; k < 3; k++)
            for (i = 0; i < inner; i++)
                x[(o * 3 + k) * inner + i] = (float)(1000 * o + 10 * k + i);
        for (i = 0; i < inner; i++)
            want[o * inner + i] = (double)(1000 * o + 10 + i);
    }
    t[0] = ophost_f32(OPHOST_SHAPE(2, 3, inner), x);
    t[1] = run_ok("core.mean", attrs, t, 1);
    assert_shape(t[1], 2, (const int64_t[]){2, inner});
    assert_close(t[1], want, 2 * inner, 0.0);
    ophost_set_threads(host, 3);
    ophost_tensor_free(t[1]);
    t[1] = run_ok("core.mean", attrs, t, 1);
    assert_close(t[1], want, 2 * inner, 0.0);
    ophost_set_threads(host, 1);
    free(x);
    free(want);
    free_all(t, 2);
}
END_TEST

START_TEST(test_mean_backward_wide_inner)
{
    /*
     * dx[o,k,i] = dy[o,i] / len for every k.  x [2,2,20000] (inner above
     * the 16384 elements of a backward task: one row per task); dy[o,i] =
     * (i mod 7) - 3 + o, so dx = dy / 2, exact in f32.
     */
    const int64_t inner = 20000;
    float *dyv = malloc((size_t)(2 * inner) * sizeof(float));
    double *want = malloc((size_t)(2 * 2 * inner) * sizeof(double));
    struct smlp_tensor *t[1], *y, *dy, *g[1];
    struct ophost_attr attrs[] = {OPHOST_INT("axis", 1), OPHOST_END};
    int64_t o, k, i;

    ck_assert_ptr_nonnull(dyv);
    ck_assert_ptr_nonnull(want);
    for (o = 0; o < 2; o++)
        for (i = 0; i < inner; i++) {
            dyv[o * inner + i] = (float)(i % 7 - 3 + o);
            for (k = 0; k < 2; k++)
                want[(o * 2 + k) * inner + i] = (i % 7 - 3 + o) / 2.0;
        }
    t[0] = ophost_f32(OPHOST_SHAPE(2, 2, inner), NULL);
    y = run_ok("core.mean", attrs, t, 1);
    dy = ophost_f32(OPHOST_SHAPE(2, inner), dyv);
    g[0] = ophost_tensor_like(t[0]);
    backward_ok("core.mean", attrs, t, 1, y, dy, g);
    assert_close(g[0], want, 2 * 2 * inner, 0.0);
    free(dyv);
    free(want);
    free_all(g, 1);
    ophost_tensor_free(dy);
    ophost_tensor_free(y);
    free_all(t, 1);
}
END_TEST

START_TEST(test_mean_bad_attrs)
{
    struct smlp_tensor *t[1] = {ophost_f32(OPHOST_SHAPE(2, 3), NULL)};
    struct ophost_attr keep[] = {OPHOST_INT("axis", 0),
                                 OPHOST_INT("keepdims", 2), OPHOST_END};
    struct ophost_attr axis[] = {OPHOST_INT("axis", -3), OPHOST_END};

    infer_fails("core.mean", NULL, t, 1, "missing required attribute 'axis'");
    infer_fails("core.mean", keep, t, 1,
                "attribute 'keepdims' = 2 is invalid");
    infer_fails("core.mean", axis, t, 1,
                "attribute 'axis' = -3 is out of range");
    free_all(t, 1);
}
END_TEST

/* ---- core.patch_embed --------------------------------------------------- */

START_TEST(test_patch_embed_hand)
{
    /* img [1,1,2,4]: the left 2x2 patch (1,2,5,6) and the right one
     * (3,4,7,8).  Channel 0 sums the patch: 14, 22; channel 1 takes its
     * top-left minus bottom-right (+0.5): 1-6+0.5, 3-8+0.5. */
    const float img[] = {1, 2, 3, 4, 5, 6, 7, 8};
    const float w[] = {1, 1, 1, 1, 1, 0, 0, -1};
    const float b[] = {0, 0.5f};
    const double want[] = {14, -4.5, 22, -4.5};
    struct smlp_tensor *t[4] = {ophost_f32(OPHOST_SHAPE(1, 1, 2, 4), img),
                                ophost_f32(OPHOST_SHAPE(2, 1, 2, 2), w),
                                ophost_f32(OPHOST_SHAPE(2), b)};
    struct ophost_attr attrs[] = {OPHOST_INT("patch", 2), OPHOST_END};

    t[3] = run_ok("core.patch_embed", attrs, t, 3);
    assert_shape(t[3], 3, (const int64_t[]){1, 2, 2});
    assert_close(t[3], want, 4, 1e-6);
    free_all(t, 4);
}
END_TEST

/* Naive stride-P convolution: y[b, pr·gw + pc, c]. */
static void
check_patch_embed(int64_t nb, int64_t cin, int64_t h, int64_t wd, int64_t p,
                  int64_t c, int with_bias)
{
    int64_t gh = h / p, gw = wd / p, i, pr, pc, oc, ci, ky, kx;
    float *x = rnd(nb * cin * h * wd, 5), *w = rnd(c * cin * p * p, 6);
    float *b = rnd(c, 7);
    double *want = calloc((size_t)(nb * gh * gw * c), sizeof(double));
    struct smlp_tensor *t[4];
    struct ophost_attr attrs[] = {OPHOST_INT("patch", p), OPHOST_END};

    ck_assert_ptr_nonnull(want);
    for (i = 0; i < nb; i++)
        for (pr = 0; pr < gh; pr++)
            for (pc = 0; pc < gw; pc++)
                for (oc = 0; oc < c; oc++) {
                    double s = with_bias ? b[oc] : 0.0;

                    for (ci = 0; ci < cin; ci++)
                        for (ky = 0; ky < p; ky++)
                            for (kx = 0; kx < p; kx++)
                                s += (double)w[((oc * cin + ci) * p + ky) * p +
                                               kx] *
                                     x[((i * cin + ci) * h + pr * p + ky) * wd +
                                       pc * p + kx];
                    want[((i * gh + pr) * gw + pc) * c + oc] = s;
                }
    t[0] = ophost_f32(OPHOST_SHAPE(nb, cin, h, wd), x);
    t[1] = ophost_f32(OPHOST_SHAPE(c, cin, p, p), w);
    t[2] = with_bias ? ophost_f32(OPHOST_SHAPE(c), b) : NULL;
    t[3] = run_ok("core.patch_embed", attrs, t, with_bias ? 3 : 2);
    assert_shape(t[3], 3, (const int64_t[]){nb, gh * gw, c});
    assert_close(t[3], want, nb * gh * gw * c, 1e-5);
    ck_assert_int_eq(ophost_stats(host)->workspace,
                     (size_t)(nb * cin * h * wd) * sizeof(float));
    ck_assert_int_eq(ophost_stats(host)->macs,
                     (uint64_t)(nb * gh * gw * c * cin * p * p));
    free(x);
    free(w);
    free(b);
    free(want);
    free_all(t, 4);
}

START_TEST(test_patch_embed_naive_conv)
{
    check_patch_embed(2, 3, 4, 6, 2, 5, 1);
    check_patch_embed(1, 2, 9, 6, 3, 4, 1);
}
END_TEST

START_TEST(test_patch_embed_no_bias)
{
    check_patch_embed(2, 1, 8, 8, 4, 3, 0);
}
END_TEST

START_TEST(test_patch_embed_channel_tiles)
{
    /* C = 256 channels on 128 patch rows of 8·8·8 = 512 values: gemm.c
     * cuts Y [128, 256] into 2 x 4 tiles of 64 x 64, so the bias is added
     * at b[n0] for n0 = 64, 128, 192 (checked against the naive conv). */
    check_patch_embed(2, 8, 64, 64, 8, 256, 1);
}
END_TEST

START_TEST(test_patch_embed_no_input_channels)
{
    /*
     * Cin = 0: every patch is empty, so y[b, l, c] = b[c] (0 without b;
     * the poisoned outputs must all be written).  img [2,0,4,6], patch
     * 2: L = 2·3 = 6 patches, b = (1, -2, 0.25).
     * Backward with dy[i, l, c] = c + 1 on the 12 rows: db[c] = 12·(c+1)
     * = (12, 24, 36); dimg and dW have no elements.
     */
    const float b[] = {1, -2, 0.25f};
    float dyv[36];
    double want[36], zeros[36] = {0};
    const double db[] = {12, 24, 36};
    struct smlp_tensor *t[3] = {ophost_f32(OPHOST_SHAPE(2, 0, 4, 6), NULL),
                                ophost_f32(OPHOST_SHAPE(3, 0, 2, 2), NULL),
                                ophost_f32(OPHOST_SHAPE(3), b)};
    struct smlp_tensor *y, *dy, *g[3];
    struct ophost_attr attrs[] = {OPHOST_INT("patch", 2), OPHOST_END};
    int r;

    for (r = 0; r < 36; r++) {
        want[r] = b[r % 3];
        dyv[r] = (float)(r % 3 + 1);
    }
    y = run_ok("core.patch_embed", attrs, t, 3);
    assert_shape(y, 3, (const int64_t[]){2, 6, 3});
    assert_close(y, want, 36, 0.0);
    dy = ophost_f32(OPHOST_SHAPE(2, 6, 3), dyv);
    g[0] = ophost_tensor_like(t[0]);
    g[1] = ophost_tensor_like(t[1]);
    g[2] = ophost_f32(OPHOST_SHAPE(3), (const float[]){-9, -9, -9});
    backward_ok("core.patch_embed", attrs, t, 3, y, dy, g);
    assert_close(g[2], db, 3, 0.0);
    free_all(g, 3);
    ophost_tensor_free(dy);
    ophost_tensor_free(y);
    y = run_ok("core.patch_embed", attrs, t, 2);
    assert_close(y, zeros, 36, 0.0);
    ophost_tensor_free(y);
    free_all(t, 3);
}
END_TEST

START_TEST(test_patch_embed_not_dividing)
{
    struct smlp_tensor *t[3] = {ophost_f32(OPHOST_SHAPE(1, 3, 30, 32), NULL),
                                ophost_f32(OPHOST_SHAPE(8, 3, 4, 4), NULL),
                                ophost_f32(OPHOST_SHAPE(8), NULL)};
    struct ophost_attr attrs[] = {OPHOST_INT("patch", 4), OPHOST_END};

    infer_fails("core.patch_embed", attrs, t, 3,
                "input 0 (img) has shape [1,3,30,32]: H=30 and W=32 must be "
                "divisible by patch 4");
    free_all(t, 3);
}
END_TEST

START_TEST(test_patch_embed_weight_shape)
{
    struct smlp_tensor *t[3] = {ophost_f32(OPHOST_SHAPE(1, 3, 8, 8), NULL),
                                ophost_f32(OPHOST_SHAPE(8, 3, 2, 2), NULL),
                                ophost_f32(OPHOST_SHAPE(8), NULL)};
    struct ophost_attr attrs[] = {OPHOST_INT("patch", 4), OPHOST_END};

    infer_fails("core.patch_embed", attrs, t, 3,
                "input 1 (W) has shape [8,3,2,2], expected [C,3,4,4]");
    infer_fails("core.patch_embed", NULL, t, 3,
                "missing required attribute 'patch'");
    free_all(t, 3);
}
END_TEST

/* ---- core.matmul -------------------------------------------------------- */

START_TEST(test_matmul_2d_hand)
{
    /* [[1,2,3],[4,5,6]]·[[1,0],[0,1],[1,1]] = [[4,5],[10,11]]. */
    const float a[] = {1, 2, 3, 4, 5, 6};
    const float b[] = {1, 0, 0, 1, 1, 1};
    const double want[] = {4, 5, 10, 11};
    struct smlp_tensor *t[3] = {ophost_f32(OPHOST_SHAPE(2, 3), a),
                                ophost_f32(OPHOST_SHAPE(3, 2), b)};

    t[2] = run_ok("core.matmul", NULL, t, 2);
    assert_shape(t[2], 2, (const int64_t[]){2, 2});
    assert_close(t[2], want, 4, 1e-7);
    free_all(t, 3);
}
END_TEST

/* Batched [batch, m, n] = op(a)·op(b) against the naive loop. */
static void
check_matmul(int64_t batch, int64_t m, int64_t k, int64_t n, int ta, int tb)
{
    float *a = rnd(batch * m * k, 8), *b = rnd(batch * k * n, 9);
    double *want = calloc((size_t)(batch * m * n), sizeof(double));
    struct smlp_tensor *t[3];
    struct ophost_attr attrs[] = {OPHOST_INT("transpose_a", ta),
                                  OPHOST_INT("transpose_b", tb), OPHOST_END};
    int64_t i, r, c, j;

    ck_assert_ptr_nonnull(want);
    for (i = 0; i < batch; i++)
        for (r = 0; r < m; r++)
            for (c = 0; c < n; c++) {
                double s = 0.0;

                for (j = 0; j < k; j++)
                    s += (double)a[i * m * k + (ta ? j * m + r : r * k + j)] *
                         b[i * k * n + (tb ? c * k + j : j * n + c)];
                want[(i * m + r) * n + c] = s;
            }
    t[0] = ta ? ophost_f32(OPHOST_SHAPE(batch, k, m), a)
              : ophost_f32(OPHOST_SHAPE(batch, m, k), a);
    t[1] = tb ? ophost_f32(OPHOST_SHAPE(batch, n, k), b)
              : ophost_f32(OPHOST_SHAPE(batch, k, n), b);
    t[2] = run_ok("core.matmul", attrs, t, 2);
    assert_shape(t[2], 3, (const int64_t[]){batch, m, n});
    assert_close(t[2], want, batch * m * n, 1e-5);
    ck_assert_int_eq(ophost_stats(host)->macs, (uint64_t)(batch * m * n * k));
    free(a);
    free(b);
    free(want);
    free_all(t, 3);
}

START_TEST(test_matmul_batched)
{
    check_matmul(3, 4, 5, 6, 0, 0);
}
END_TEST

START_TEST(test_matmul_transposes)
{
    check_matmul(2, 3, 7, 5, 1, 0);
    check_matmul(2, 3, 7, 5, 0, 1);
    check_matmul(2, 3, 7, 5, 1, 1);
}
END_TEST

START_TEST(test_matmul_shape_errors)
{
    struct smlp_tensor *t[2] = {ophost_f32(OPHOST_SHAPE(2, 3, 4), NULL),
                                ophost_f32(OPHOST_SHAPE(3, 4, 5), NULL)};
    struct smlp_tensor *u[2] = {ophost_f32(OPHOST_SHAPE(3, 4), NULL),
                                ophost_f32(OPHOST_SHAPE(3, 5), NULL)};
    struct ophost_attr tb[] = {OPHOST_INT("transpose_b", 1), OPHOST_END};
    struct ophost_attr bad[] = {OPHOST_INT("transpose_a", 2), OPHOST_END};

    infer_fails("core.matmul", NULL, t, 2,
                "input 1 (b) has shape [3,4,5]: its leading dims must equal "
                "those of input 0 (a) [2,3,4]");
    infer_fails("core.matmul", NULL, u, 2,
                "input 0 (a) [3,4] (transpose_a=0) gives k=4 but input 1 "
                "(b) [3,5] (transpose_b=0) gives k=3");
    infer_fails("core.matmul", tb, u, 2, "gives k=5");
    infer_fails("core.matmul", bad, u, 2,
                "attribute 'transpose_a' = 2 is invalid");
    free_all(t, 2);
    free_all(u, 2);
}
END_TEST

/* ---- core.softmax_cross_entropy ----------------------------------------- */

/* Mean over rows of (1-ε)(−log p_label) + ε·mean_k(−log p_k), with p
 * computed directly as exp(x_k)/Σ exp (fine for small logits). */
static double
sce_ref(const float *x, const int32_t *labels, int n, int k, double eps)
{
    double total = 0.0;
    int r, j;

    for (r = 0; r < n; r++) {
        double z = 0.0, smooth = 0.0;

        for (j = 0; j < k; j++)
            z += exp((double)x[r * k + j]);
        for (j = 0; j < k; j++)
            smooth += -log(exp((double)x[r * k + j]) / z);
        total += (1.0 - eps) * -log(exp((double)x[r * k + labels[r]]) / z) +
                 eps * smooth / k;
    }
    return total / n;
}

static double
run_sce(const float *x, const int32_t *labels, int n, int k, double eps)
{
    struct smlp_tensor *t[3] = {ophost_f32(OPHOST_SHAPE(n, k), x),
                                ophost_i32(OPHOST_SHAPE(n), labels)};
    struct ophost_attr attrs[] = {OPHOST_FLOAT("label_smoothing", eps),
                                  OPHOST_END};
    double v;

    t[2] = run_ok("core.softmax_cross_entropy", attrs, t, 2);
    ck_assert_int_eq(t[2]->rank, 0);
    ck_assert_int_eq(t[2]->dtype, SMLP_DTYPE_F32);
    v = *(const float *)t[2]->data;
    free_all(t, 3);
    return v;
}

START_TEST(test_softmax_cross_entropy_hand)
{
    /* Row (0,0,0), label 0: −log(1/3) = log 3.  Row (1,2,3), label 2:
     * log(e + e² + e³) − 3 = log(e⁻² + e⁻¹ + 1).  Loss = their mean. */
    const float x[] = {0, 0, 0, 1, 2, 3};
    const int32_t labels[] = {0, 2};
    double want = (log(3.0) + log(exp(-2.0) + exp(-1.0) + 1.0)) / 2.0;

    ck_assert_double_eq_tol(run_sce(x, labels, 2, 3, 0.0), want, 1e-6);
    ck_assert_double_eq_tol(run_sce(x, labels, 2, 3, 0.0),
                            sce_ref(x, labels, 2, 3, 0.0), 1e-6);
}
END_TEST

START_TEST(test_softmax_cross_entropy_label_smoothing)
{
    float x[4 * 5];
    const int32_t labels[] = {4, 0, 2, 2};

    fill(x, 20, 42);
    ck_assert_double_eq_tol(run_sce(x, labels, 4, 5, 0.1),
                            sce_ref(x, labels, 4, 5, 0.1), 1e-6);
    ck_assert_double_eq_tol(run_sce(x, labels, 4, 5, 1.0),
                            sce_ref(x, labels, 4, 5, 1.0), 1e-6);
    /* Uniform logits: every −log p_k = log K, whatever ε. */
    memset(x, 0, sizeof(x));
    ck_assert_double_eq_tol(run_sce(x, labels, 4, 5, 0.3), log(5.0), 1e-6);
}
END_TEST

START_TEST(test_softmax_cross_entropy_large_logits)
{
    /* Row (1000,0,-1000): label 0 costs log(1 + e⁻¹⁰⁰⁰ + e⁻²⁰⁰⁰) = 0,
     * label 1 costs 1000.  Row (3000,3000,-inf-ish): label 1 costs log 2.
     * Mean of (0, 1000, log 2) = (1000 + log 2)/3. */
    const float x[] = {1000, 0, -1000, 1000, 0, -1000, 3000, 3000, -3000};
    const int32_t labels[] = {0, 1, 1};
    double got = run_sce(x, labels, 3, 3, 0.0);

    ck_assert(isfinite(got));
    ck_assert_double_eq_tol(got, (1000.0 + log(2.0)) / 3.0, 1e-3);
    /* Smoothing 0.5: the −log p of rows 0 and 1 are (0, 1000, 2000), of
     * row 2 (log2, log2, 6000 + log2).  Row 0 costs 0 + 0.5·1000 = 500,
     * row 1 500 + 500 = 1000, row 2 0.5·log2 + 0.5·(log2 + 2000). */
    got = run_sce(x, labels, 3, 3, 0.5);
    ck_assert_double_eq_tol(got, (2500.0 + log(2.0)) / 3.0, 1e-2);
}
END_TEST

START_TEST(test_softmax_cross_entropy_label_out_of_range)
{
    const float x[] = {0, 1, 2, 3, 4, 5};
    const int32_t bad_hi[] = {1, 3};
    const int32_t bad_lo[] = {-1, 0};
    struct smlp_tensor *t[2] = {ophost_f32(OPHOST_SHAPE(2, 3), x),
                                ophost_i32(OPHOST_SHAPE(2), bad_hi)};
    struct smlp_tensor *out[1] = {NULL};
    const char *msg;
    int rc;

    rc = ophost_run(host, "core.softmax_cross_entropy", NULL, t, 2, out, 1,
                    &msg);
    ck_assert_int_eq(rc, SMLP_EINVAL);
    ck_assert_msg(strstr(msg, "row 1: label 3 is out of range [0, 3)"),
                  "%s", msg);
    memcpy(t[1]->data, bad_lo, sizeof(bad_lo));
    rc = ophost_run(host, "core.softmax_cross_entropy", NULL, t, 2, out, 1,
                    &msg);
    ck_assert_int_eq(rc, SMLP_EINVAL);
    ck_assert_msg(strstr(msg, "row 0: label -1 is out of range"), "%s", msg);
    free_all(t, 2);
    ophost_tensor_free(out[0]);
}
END_TEST

START_TEST(test_softmax_cross_entropy_shape_errors)
{
    struct smlp_tensor *t[2] = {ophost_f32(OPHOST_SHAPE(2, 3), NULL),
                                ophost_i32(OPHOST_SHAPE(3), NULL)};
    struct smlp_tensor *u[2] = {ophost_f32(OPHOST_SHAPE(2, 3), NULL),
                                ophost_f32(OPHOST_SHAPE(2), NULL)};
    struct ophost_attr bad[] = {OPHOST_FLOAT("label_smoothing", 1.5),
                                OPHOST_END};

    infer_fails("core.softmax_cross_entropy", NULL, t, 2,
                "input 1 (labels) has shape [3], expected [2]");
    infer_fails("core.softmax_cross_entropy", NULL, u, 2,
                "input 1 (labels) has dtype f32, expected i32");
    ophost_tensor_free(t[1]);
    t[1] = ophost_i32(OPHOST_SHAPE(2), NULL);
    infer_fails("core.softmax_cross_entropy", bad, t, 2,
                "attribute 'label_smoothing' = 1.5 is invalid");
    free_all(t, 2);
    free_all(u, 2);
}
END_TEST

/* ---- core.argmax -------------------------------------------------------- */

START_TEST(test_argmax_ties)
{
    /* (1,3,3,2) -> 1 (tie, lowest); (7,7,7,7) -> 0; (-1,-2,-0.5,-0.5) -> 2;
     * (0,0,0,9) -> 3. */
    const float x[] = {1,  3,  3,     2,     7, 7, 7, 7,
                       -1, -2, -0.5f, -0.5f, 0, 0, 0, 9};
    const int32_t want[] = {1, 0, 2, 3};
    struct smlp_tensor *t[2] = {ophost_f32(OPHOST_SHAPE(4, 4), x)};
    const int32_t *y;
    int i;

    t[1] = run_ok("core.argmax", NULL, t, 1);
    ck_assert_int_eq(t[1]->dtype, SMLP_DTYPE_I32);
    assert_shape(t[1], 1, (const int64_t[]){4});
    y = t[1]->data;
    for (i = 0; i < 4; i++)
        ck_assert_int_eq(y[i], want[i]);
    free_all(t, 2);
}
END_TEST

START_TEST(test_argmax_rank_error)
{
    struct smlp_tensor *t[1] = {ophost_f32(OPHOST_SHAPE(2, 3, 4), NULL)};

    infer_fails("core.argmax", NULL, t, 1,
                "input 0 (x) has shape [2,3,4] (rank 3), expected rank 2");
    free_all(t, 1);
}
END_TEST

/* ---- the plugin --------------------------------------------------------- */

START_TEST(test_plugin_registers_ops)
{
    static const char *const names[] = {
        "core.linear",      "core.gelu",    "core.relu",
        "core.add",         "core.scale",   "core.transpose",
        "core.reshape",     "core.mean",    "core.patch_embed",
        "core.matmul",      "core.softmax_cross_entropy",
        "core.argmax",
    };
    const struct smlp_plugin_def *def = ophost_plugin(host);
    size_t i;

    ck_assert_str_eq(def->name, "core");
    ck_assert_str_eq(def->signature, SMLP_BUILD_SIGNATURE);
    ck_assert_ptr_nonnull(def->set_threads);
    ck_assert_int_eq(ophost_op_count(host), 12);
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const struct smlp_op_def *op = ophost_op(host, names[i]);

        ck_assert_msg(op != NULL, "%s not registered", names[i]);
        ck_assert_ptr_nonnull(op->doc);
        ck_assert_msg(strchr(op->doc, '\n') == NULL, "%s doc", names[i]);
        ck_assert_ptr_nonnull(op->attrs);
    }
}
END_TEST

START_TEST(test_plugin_unknown_op)
{
    struct smlp_tensor *out[1] = {NULL};
    const char *msg;

    ck_assert_int_eq(ophost_run(host, "core.nope", NULL, NULL, 0, out, 1,
                                &msg),
                     SMLP_ENOENT);
    ck_assert_ptr_nonnull(strstr(msg, "no op 'core.nope'"));
}
END_TEST

static Suite *
core_suite(void)
{
    Suite *s = suite_create("core");
    TCase *tc;

#define TC(name)                                                             \
    tc = tcase_create(name);                                                 \
    tcase_add_checked_fixture(tc, setup, teardown);                          \
    suite_add_tcase(s, tc)

    TC("linear");
    tcase_add_test(tc, test_linear_axis_m1_hand);
    tcase_add_test(tc, test_linear_axis_m1_bias);
    tcase_add_test(tc, test_linear_axis_m1_no_bias);
    tcase_add_test(tc, test_linear_axis_m2_left_multiply);
    tcase_add_test(tc, test_linear_axis_m2_no_bias);
    tcase_add_test(tc, test_linear_axis_0_bias);
    tcase_add_test(tc, test_linear_axis_0_no_bias);
    tcase_add_test(tc, test_linear_axis_1_of_4d);
    tcase_add_test(tc, test_linear_in_dim_mismatch);
    tcase_add_test(tc, test_linear_bias_shape);
    tcase_add_test(tc, test_linear_axis_out_of_range);
    tcase_add_test(tc, test_linear_axis_wrong_type);
    tcase_add_test(tc, test_linear_wrong_dtype);
    tcase_add_test(tc, test_linear_threads);
    tcase_add_test(tc, test_linear_bias_on_tiles);
    tcase_add_test(tc, test_linear_in_0_is_bias);
    TC("gelu");
    tcase_add_test(tc, test_gelu_exact_known_points);
    tcase_add_test(tc, test_gelu_default_is_exact);
    tcase_add_test(tc, test_gelu_exact_sweep);
    tcase_add_test(tc, test_gelu_tanh_known_points);
    tcase_add_test(tc, test_gelu_bad_approximate);
    tcase_add_test(tc, test_gelu_approximate_wrong_type);
    TC("relu");
    tcase_add_test(tc, test_relu_values);
    TC("add");
    tcase_add_test(tc, test_add_values);
    tcase_add_test(tc, test_add_shape_mismatch);
    TC("scale");
    tcase_add_test(tc, test_scale_values);
    tcase_add_test(tc, test_scale_missing_alpha);
    tcase_add_test(tc, test_scale_alpha_wrong_type);
    TC("transpose");
    tcase_add_test(tc, test_transpose_3d_perm);
    tcase_add_test(tc, test_transpose_2d);
    tcase_add_test(tc, test_transpose_tiled_edges);
    tcase_add_test(tc, test_transpose_i32_contiguous_rows);
    tcase_add_test(tc, test_transpose_4d_general);
    tcase_add_test(tc, test_transpose_bad_perm);
    tcase_add_test(tc, test_transpose_missing_perm);
    TC("reshape");
    tcase_add_test(tc, test_reshape_minus1_and_0);
    tcase_add_test(tc, test_reshape_is_view);
    tcase_add_test(tc, test_reshape_size_mismatch);
    tcase_add_test(tc, test_reshape_shape_wrong_type);
    TC("mean");
    tcase_add_test(tc, test_mean_axis1_tokens);
    tcase_add_test(tc, test_mean_last_keepdims);
    tcase_add_test(tc, test_mean_axis0);
    tcase_add_test(tc, test_mean_wide_inner);
    tcase_add_test(tc, test_mean_backward_wide_inner);
    tcase_add_test(tc, test_mean_bad_attrs);
    TC("patch_embed");
    tcase_add_test(tc, test_patch_embed_hand);
    tcase_add_test(tc, test_patch_embed_naive_conv);
    tcase_add_test(tc, test_patch_embed_no_bias);
    tcase_add_test(tc, test_patch_embed_channel_tiles);
    tcase_add_test(tc, test_patch_embed_no_input_channels);
    tcase_add_test(tc, test_patch_embed_not_dividing);
    tcase_add_test(tc, test_patch_embed_weight_shape);
    TC("matmul");
    tcase_add_test(tc, test_matmul_2d_hand);
    tcase_add_test(tc, test_matmul_batched);
    tcase_add_test(tc, test_matmul_transposes);
    tcase_add_test(tc, test_matmul_shape_errors);
    TC("softmax_cross_entropy");
    tcase_add_test(tc, test_softmax_cross_entropy_hand);
    tcase_add_test(tc, test_softmax_cross_entropy_label_smoothing);
    tcase_add_test(tc, test_softmax_cross_entropy_large_logits);
    tcase_add_test(tc, test_softmax_cross_entropy_label_out_of_range);
    tcase_add_test(tc, test_softmax_cross_entropy_shape_errors);
    TC("argmax");
    tcase_add_test(tc, test_argmax_ties);
    tcase_add_test(tc, test_argmax_rank_error);
    TC("plugin");
    tcase_add_test(tc, test_plugin_registers_ops);
    tcase_add_test(tc, test_plugin_unknown_op);
#undef TC
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(core_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
