/*
 * check_op_core.c - the elementwise, layout and loss ops of the `core`
 * plugin, one TCase per op, and its op table.  The products (linear,
 * matmul, patch_embed): check_op_core_gemm.c.
 *
 * Expected values are derived by hand (small tensors, worked out in the
 * comments) or by naive loops written here in double precision; never by
 * calling a kernel.  Shape-inference errors are checked by the message
 * substring that OPS.md promises.  The plugin is loaded from
 * $SMLP_TEST_BUILDDIR/plugins/.libs/core.so through tests/ophost.c.
 */
#include "corehost.h"

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

START_TEST(test_relu_nan)
{
    /* relu keeps a NaN (as torch.relu does), so that a run's finite
     * checks see it; +inf stays, -inf becomes 0. */
    const float x[] = {NAN, INFINITY, -INFINITY, 1};
    struct smlp_tensor *t[2] = {ophost_f32(OPHOST_SHAPE(1, 4), x)};
    const float *y;

    t[1] = run_ok("core.relu", NULL, t, 1);
    y = t[1]->data;
    ck_assert_msg(isnan(y[0]), "relu(NaN) = %g", (double)y[0]);
    ck_assert(isinf(y[1]) && y[1] > 0.0f);
    ck_assert(y[2] == 0.0f && y[3] == 1.0f);
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

/* alpha must be finite (elementwise.c): inf would turn every 0 into NaN. */
START_TEST(test_scale_alpha_not_finite)
{
    struct smlp_tensor *t[1] = {ophost_f32(OPHOST_SHAPE(4), NULL)};
    struct ophost_attr pinf[] = {OPHOST_FLOAT("alpha", INFINITY), OPHOST_END};
    struct ophost_attr ninf[] = {OPHOST_FLOAT("alpha", -INFINITY),
                                 OPHOST_END};
    struct ophost_attr nan_[] = {OPHOST_FLOAT("alpha", NAN), OPHOST_END};

    infer_fails("core.scale", pinf, t, 1, "attribute 'alpha' = inf is not "
                                          "finite");
    infer_fails("core.scale", ninf, t, 1, "attribute 'alpha' = -inf is not "
                                          "finite");
    infer_fails("core.scale", nan_, t, 1, "is not finite");
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

/* Tensors with an empty dim transpose to empty tensors of the permuted
 * shape (nothing to copy, whichever dim is 0), forward and backward. */
START_TEST(test_transpose_empty)
{
    static const int64_t shapes[3][3] = {{2, 0, 3}, {2, 3, 0}, {0, 2, 3}};
    struct ophost_attr attrs[] = {OPHOST_INTS("perm", 2, 0, 1), OPHOST_END};
    struct smlp_tensor *t[1], *y, *dy, *g[1];
    int c;

    for (c = 0; c < 3; c++) {
        const int64_t *sh = shapes[c];

        t[0] = ophost_f32(3, sh, NULL);
        y = run_ok("core.transpose", attrs, t, 1);
        assert_shape(y, 3, (const int64_t[]){sh[2], sh[0], sh[1]});
        dy = ophost_tensor_like(y);
        g[0] = ophost_tensor_like(t[0]);
        backward_ok("core.transpose", attrs, t, 1, y, dy, g);
        ophost_tensor_free(g[0]);
        ophost_tensor_free(dy);
        ophost_tensor_free(y);
        ophost_tensor_free(t[0]);
    }
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

/* perm has exactly rank entries: a longer one is refused too (its extra
 * entries would be ignored, or the output rank would be wrong); negative
 * entries are not axes (perm counts from 0, no wrap-around). */
START_TEST(test_transpose_perm_too_long_or_negative)
{
    struct smlp_tensor *t[1] = {ophost_f32(OPHOST_SHAPE(2, 3, 4), NULL)};
    struct ophost_attr len[] = {OPHOST_INTS("perm", 2, 1, 0, 3), OPHOST_END};
    struct ophost_attr neg[] = {OPHOST_INTS("perm", -1, 0, 1), OPHOST_END};

    infer_fails("core.transpose", len, t, 1,
                "attribute 'perm' = [2,1,0,3] has 4 entries, input 0 (x) of "
                "shape [2,3,4] has rank 3");
    infer_fails("core.transpose", neg, t, 1,
                "attribute 'perm' = [-1,0,1] is not a permutation of 0..2");
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

/* A -1 next to a 0 copied from an empty input dim could be anything:
 * refused, not divided by. */
START_TEST(test_reshape_minus1_with_empty_dim)
{
    struct smlp_tensor *t[1] = {ophost_f32(OPHOST_SHAPE(2, 0, 3), NULL)};
    struct ophost_attr attrs[] = {OPHOST_INTS("shape", -1, 0), OPHOST_END};

    infer_fails("core.reshape", attrs, t, 1,
                "attribute 'shape' = [-1,0] cannot hold the 0 elements of "
                "input 0 (x) of shape [2,0,3]");
    free_all(t, 1);
}
END_TEST

/* Element counts must match both ways (a smaller shape would drop data),
 * and a product past INT64_MAX is refused before it wraps. */
START_TEST(test_reshape_fewer_elements_and_overflow)
{
    struct smlp_tensor *t[1] = {ophost_f32(OPHOST_SHAPE(2, 3, 4), NULL)};
    struct ophost_attr few[] = {OPHOST_INTS("shape", 4, 5), OPHOST_END};
    /* 2^62 · 4 = 2^64: wraps to 0 in int64 arithmetic. */
    struct ophost_attr big[] = {
        OPHOST_INTS("shape", 4611686018427387904LL, 4, 24), OPHOST_END};

    infer_fails("core.reshape", few, t, 1,
                "attribute 'shape' = [4,5] gives 20 elements, input 0 (x) "
                "of shape [2,3,4] has 24");
    infer_fails("core.reshape", big, t, 1, "overflows");
    free_all(t, 1);
}
END_TEST

/* At most SMLP_MAX_RANK dims: one more is refused before anything is
 * written for it. */
START_TEST(test_reshape_rank_too_high)
{
    int64_t ones[SMLP_MAX_RANK + 1];
    struct ophost_attr attrs[] = {
        {.name = "shape", .type = SMLP_ATTR_INTS, .ints = ones,
         .n = SMLP_MAX_RANK + 1},
        OPHOST_END,
    };
    struct smlp_tensor *t[1] = {ophost_f32(OPHOST_SHAPE(1), NULL)};
    char want[64];
    int d;

    for (d = 0; d < SMLP_MAX_RANK + 1; d++)
        ones[d] = 1;
    snprintf(want, sizeof(want), "has more than %d dims", SMLP_MAX_RANK);
    infer_fails("core.reshape", attrs, t, 1, want);
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

/* OPS.md: a mean over nothing is undefined; infer refuses it rather than
 * let the kernel divide 0 by 0 (other axes may be empty). */
START_TEST(test_mean_empty_axis)
{
    struct smlp_tensor *t[2] = {ophost_f32(OPHOST_SHAPE(2, 0, 3), NULL),
                                ophost_f32(OPHOST_SHAPE(0, 3), NULL)};
    struct ophost_attr axis1[] = {OPHOST_INT("axis", 1), OPHOST_END};
    struct smlp_tensor *y;

    infer_fails("core.mean", axis1, t, 1,
                "input 0 (x) has shape [2,0,3]: the mean over empty axis 1 "
                "is undefined");
    /* Empty outer dim, non-empty axis: fine, an empty result. */
    y = run_ok("core.mean", axis1, t + 1, 1);
    assert_shape(y, 1, (const int64_t[]){0});
    ophost_tensor_free(y);
    free_all(t, 2);
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

/* One label per row, exactly: fewer labels than rows is as wrong as more
 * (the kernel would read past the labels). */
START_TEST(test_softmax_cross_entropy_fewer_labels)
{
    struct smlp_tensor *t[2] = {ophost_f32(OPHOST_SHAPE(3, 4), NULL),
                                ophost_i32(OPHOST_SHAPE(2), NULL)};

    infer_fails("core.softmax_cross_entropy", NULL, t, 2,
                "input 1 (labels) has shape [2], expected [3]");
    free_all(t, 2);
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

/* A row with no classes has no argmax and no softmax: both ops refuse
 * K = 0 in infer (reduce.c check_rows), rows N = 0 being fine. */
START_TEST(test_argmax_sce_no_classes)
{
    struct smlp_tensor *t[2] = {ophost_f32(OPHOST_SHAPE(2, 0), NULL),
                                ophost_i32(OPHOST_SHAPE(2), NULL)};

    infer_fails("core.argmax", NULL, t, 1,
                "input 0 (x) has shape [2,0]: needs at least one class");
    infer_fails("core.softmax_cross_entropy", NULL, t, 2,
                "input 0 (logits) has shape [2,0]: needs at least one "
                "class");
    free_all(t, 2);
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

    TC("gelu");
    tcase_add_test(tc, test_gelu_exact_known_points);
    tcase_add_test(tc, test_gelu_default_is_exact);
    tcase_add_test(tc, test_gelu_exact_sweep);
    tcase_add_test(tc, test_gelu_tanh_known_points);
    tcase_add_test(tc, test_gelu_bad_approximate);
    tcase_add_test(tc, test_gelu_approximate_wrong_type);
    TC("relu");
    tcase_add_test(tc, test_relu_values);
    tcase_add_test(tc, test_relu_nan);
    TC("add");
    tcase_add_test(tc, test_add_values);
    tcase_add_test(tc, test_add_shape_mismatch);
    TC("scale");
    tcase_add_test(tc, test_scale_values);
    tcase_add_test(tc, test_scale_missing_alpha);
    tcase_add_test(tc, test_scale_alpha_wrong_type);
    tcase_add_test(tc, test_scale_alpha_not_finite);
    TC("transpose");
    tcase_add_test(tc, test_transpose_3d_perm);
    tcase_add_test(tc, test_transpose_2d);
    tcase_add_test(tc, test_transpose_tiled_edges);
    tcase_add_test(tc, test_transpose_i32_contiguous_rows);
    tcase_add_test(tc, test_transpose_4d_general);
    tcase_add_test(tc, test_transpose_empty);
    tcase_add_test(tc, test_transpose_bad_perm);
    tcase_add_test(tc, test_transpose_missing_perm);
    tcase_add_test(tc, test_transpose_perm_too_long_or_negative);
    TC("reshape");
    tcase_add_test(tc, test_reshape_minus1_and_0);
    tcase_add_test(tc, test_reshape_is_view);
    tcase_add_test(tc, test_reshape_size_mismatch);
    tcase_add_test(tc, test_reshape_shape_wrong_type);
    tcase_add_test(tc, test_reshape_rank_too_high);
    tcase_add_test(tc, test_reshape_fewer_elements_and_overflow);
    tcase_add_test(tc, test_reshape_minus1_with_empty_dim);
    TC("mean");
    tcase_add_test(tc, test_mean_axis1_tokens);
    tcase_add_test(tc, test_mean_last_keepdims);
    tcase_add_test(tc, test_mean_axis0);
    tcase_add_test(tc, test_mean_wide_inner);
    tcase_add_test(tc, test_mean_backward_wide_inner);
    tcase_add_test(tc, test_mean_bad_attrs);
    tcase_add_test(tc, test_mean_empty_axis);
    TC("softmax_cross_entropy");
    tcase_add_test(tc, test_softmax_cross_entropy_hand);
    tcase_add_test(tc, test_softmax_cross_entropy_label_smoothing);
    tcase_add_test(tc, test_softmax_cross_entropy_large_logits);
    tcase_add_test(tc, test_softmax_cross_entropy_label_out_of_range);
    tcase_add_test(tc, test_softmax_cross_entropy_shape_errors);
    tcase_add_test(tc, test_softmax_cross_entropy_fewer_labels);
    TC("argmax");
    tcase_add_test(tc, test_argmax_ties);
    tcase_add_test(tc, test_argmax_rank_error);
    tcase_add_test(tc, test_argmax_sce_no_classes);
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
