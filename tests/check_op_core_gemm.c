/*
 * check_op_core_gemm.c - the products of the `core` plugin:
 * core.linear on every axis, core.patch_embed and core.matmul, one
 * TCase per op.
 *
 * Expected values are derived by hand (small tensors, worked out in the
 * comments) or by naive loops written here in double precision; never by
 * calling a kernel.  Shape-inference errors are checked by the message
 * substring that OPS.md promises.  The plugin is loaded from
 * $SMLP_TEST_BUILDDIR/plugins/.libs/core.so through tests/ophost.c.
 */
#include "corehost.h"

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

START_TEST(test_linear_blas_limit)
{
    /*
     * Every product is one sgemm (or a batch of them) with int sizes, so
     * infer rejects a row count over INT_MAX: on axis 1 of x [2, 3, 2^30]
     * the products are Y_o [4, 2^30] for o < 2, the rows of the forward
     * product as one matrix (and of dW's sum) 2·2^30 = 2^31; on axis -1
     * of x [2^31, 3], Y [2^31, 4].  Only the shapes matter (infer sees no
     * data), so the big tensors are shape-only copies of small ones, and
     * y is passed in with the shape that infer would give and dummy data
     * so that a wrongly accepted shape fails without a 32 GiB output.
     */
    struct smlp_tensor *t[2] = {ophost_f32(OPHOST_SHAPE(2, 3, 1), NULL),
                                ophost_f32(OPHOST_SHAPE(4, 3), NULL)};
    struct smlp_tensor big = *t[0], y = *t[0], *in[2] = {&big, t[1]};
    struct smlp_tensor *out[1] = {&y};
    struct ophost_attr axis1[] = {OPHOST_INT("axis", 1), OPHOST_END};
    const char *msg;
    int rc;

    big.shape[2] = INT64_C(1) << 30;
    y.shape[1] = 4;
    y.shape[2] = INT64_C(1) << 30;
    rc = ophost_infer(host, "core.linear", axis1, in, 2, out, 1, &msg);
    ck_assert_int_eq(rc, SMLP_ELIMIT);
    ck_assert_str_eq(msg, "core.linear: size 2147483648 exceeds the BLAS "
                          "limit 2147483647");
    big.rank = y.rank = 2;
    big.shape[0] = y.shape[0] = INT64_C(1) << 31;
    big.shape[1] = 3;
    y.shape[1] = 4;
    rc = ophost_infer(host, "core.linear", NULL, in, 2, out, 1, &msg);
    ck_assert_int_eq(rc, SMLP_ELIMIT);
    ck_assert_str_eq(msg, "core.linear: size 2147483648 exceeds the BLAS "
                          "limit 2147483647");
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

START_TEST(test_linear_ragged_tiles)
{
    /*
     * Tiles that do not divide the product: Y [128, 200] = X [128, 512]·Wᵀ
     * is cut into 2 x 2 tiles of 64 rows and 112 columns (a multiple of
     * 16 that leaves the last tile 88 >= 56 wide), so the last column
     * tile must stop at column 200: written wider, its rows run into the
     * next row's first columns (ldc = 200), which belong to tile 0.
     */
    check_linear(OPHOST_SHAPE(128, 512), -1, 200, 1, 0);
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

START_TEST(test_patch_embed_each_dim_checked)
{
    /*
     * Each condition alone: W's Cin 2 against img's 3 (P right), and the
     * width 30 not divisible by 4 while the height 32 is.
     */
    struct smlp_tensor *t[2] = {ophost_f32(OPHOST_SHAPE(1, 3, 8, 8), NULL),
                                ophost_f32(OPHOST_SHAPE(8, 2, 4, 4), NULL)};
    struct smlp_tensor *u[2] = {ophost_f32(OPHOST_SHAPE(1, 3, 32, 30), NULL),
                                ophost_f32(OPHOST_SHAPE(8, 3, 4, 4), NULL)};
    struct ophost_attr attrs[] = {OPHOST_INT("patch", 4), OPHOST_END};

    infer_fails("core.patch_embed", attrs, t, 2,
                "input 1 (W) has shape [8,2,4,4], expected [C,3,4,4]");
    infer_fails("core.patch_embed", attrs, u, 2,
                "input 0 (img) has shape [1,3,32,30]: H=32 and W=30 must be "
                "divisible by patch 4");
    free_all(t, 2);
    free_all(u, 2);
}
END_TEST

START_TEST(test_patch_embed_bad_patch)
{
    /* patch must be in [1, INT_MAX]: 0 (which would divide H by zero),
     * -4 and 2^31 are refused before the shapes are looked at. */
    struct smlp_tensor *t[2] = {ophost_f32(OPHOST_SHAPE(1, 3, 8, 8), NULL),
                                ophost_f32(OPHOST_SHAPE(8, 3, 0, 0), NULL)};
    struct ophost_attr p0[] = {OPHOST_INT("patch", 0), OPHOST_END};
    struct ophost_attr neg[] = {OPHOST_INT("patch", -4), OPHOST_END};
    struct ophost_attr big[] = {OPHOST_INT("patch", INT64_C(1) << 31),
                                OPHOST_END};

    infer_fails("core.patch_embed", p0, t, 2,
                "attribute 'patch' = 0 is invalid: expected a positive size");
    infer_fails("core.patch_embed", neg, t, 2,
                "attribute 'patch' = -4 is invalid");
    infer_fails("core.patch_embed", big, t, 2,
                "attribute 'patch' = 2147483648 is invalid");
    free_all(t, 2);
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

START_TEST(test_matmul_rank_mismatch)
{
    /* Ranks must be equal even when a has no batch dims: a [3,4] with b
     * [2,4,5] is not a batch of two (no broadcasting, OPS.md). */
    struct smlp_tensor *t[2] = {ophost_f32(OPHOST_SHAPE(3, 4), NULL),
                                ophost_f32(OPHOST_SHAPE(2, 4, 5), NULL)};

    infer_fails("core.matmul", NULL, t, 2,
                "input 1 (b) has shape [2,4,5]: its leading dims must equal "
                "those of input 0 (a) [3,4]");
    free_all(t, 2);
}
END_TEST

/* Fills a tensor with NaN (all bits set), so that an unwritten element
 * shows. */
static void
poison(struct smlp_tensor *t)
{
    if (smlp_tensor_numel(t) > 0)
        memset(t->data, 0xff, (size_t)smlp_tensor_numel(t) * sizeof(float));
}

START_TEST(test_matmul_empty_sums)
{
    /*
     * k = 0: every element of y is an empty sum, 0, for each pair of
     * flags: a [2,3,0] (or [2,0,3]) times b [2,0,4] (or [2,4,0]) -> y
     * [2,3,4] of zeros (ophost poisons the output, so all of it must be
     * written).  m = 0: a [2,0,3]·b [2,3,4] -> y [2,0,4]; the backward's
     * db = aᵀ·dy sums over the 0 rows, so it is zero, written over NaN;
     * n = 0: a [2,3,5]·b [2,5,0] -> da = dy·bᵀ sums over 0 columns: zero.
     */
    static const double zeros[30] = {0};
    struct smlp_tensor *t[2], *y, *dy, *g[2];
    float v[30];
    int ta, tb;

    for (ta = 0; ta < 2; ta++)
        for (tb = 0; tb < 2; tb++) {
            struct ophost_attr attrs[] = {OPHOST_INT("transpose_a", ta),
                                          OPHOST_INT("transpose_b", tb),
                                          OPHOST_END};

            t[0] = ta ? ophost_f32(OPHOST_SHAPE(2, 0, 3), NULL)
                      : ophost_f32(OPHOST_SHAPE(2, 3, 0), NULL);
            t[1] = tb ? ophost_f32(OPHOST_SHAPE(2, 4, 0), NULL)
                      : ophost_f32(OPHOST_SHAPE(2, 0, 4), NULL);
            y = run_ok("core.matmul", attrs, t, 2);
            assert_shape(y, 3, (const int64_t[]){2, 3, 4});
            assert_close(y, zeros, 24, 0.0);
            ophost_tensor_free(y);
            free_all(t, 2);
        }
    /* m = 0: db [2,3,4] = 0. */
    fill(v, 30, 3);
    t[0] = ophost_f32(OPHOST_SHAPE(2, 0, 3), NULL);
    t[1] = ophost_f32(OPHOST_SHAPE(2, 3, 4), v);
    y = run_ok("core.matmul", NULL, t, 2);
    assert_shape(y, 3, (const int64_t[]){2, 0, 4});
    dy = ophost_tensor_like(y);
    g[0] = ophost_tensor_like(t[0]);
    g[1] = ophost_tensor_like(t[1]);
    poison(g[1]);
    backward_ok("core.matmul", NULL, t, 2, y, dy, g);
    assert_close(g[1], zeros, 24, 0.0);
    free_all(g, 2);
    ophost_tensor_free(dy);
    ophost_tensor_free(y);
    free_all(t, 2);
    /* n = 0: da [2,3,5] = 0. */
    t[0] = ophost_f32(OPHOST_SHAPE(2, 3, 5), v);
    t[1] = ophost_f32(OPHOST_SHAPE(2, 5, 0), NULL);
    y = run_ok("core.matmul", NULL, t, 2);
    assert_shape(y, 3, (const int64_t[]){2, 3, 0});
    dy = ophost_tensor_like(y);
    g[0] = ophost_tensor_like(t[0]);
    g[1] = ophost_tensor_like(t[1]);
    poison(g[0]);
    backward_ok("core.matmul", NULL, t, 2, y, dy, g);
    assert_close(g[0], zeros, 30, 0.0);
    free_all(g, 2);
    ophost_tensor_free(dy);
    ophost_tensor_free(y);
    free_all(t, 2);
}
END_TEST

static Suite *
core_gemm_suite(void)
{
    Suite *s = suite_create("core_gemm");
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
    tcase_add_test(tc, test_linear_blas_limit);
    tcase_add_test(tc, test_linear_wrong_dtype);
    tcase_add_test(tc, test_linear_threads);
    tcase_add_test(tc, test_linear_bias_on_tiles);
    tcase_add_test(tc, test_linear_ragged_tiles);
    tcase_add_test(tc, test_linear_in_0_is_bias);
    TC("patch_embed");
    tcase_add_test(tc, test_patch_embed_hand);
    tcase_add_test(tc, test_patch_embed_naive_conv);
    tcase_add_test(tc, test_patch_embed_no_bias);
    tcase_add_test(tc, test_patch_embed_channel_tiles);
    tcase_add_test(tc, test_patch_embed_no_input_channels);
    tcase_add_test(tc, test_patch_embed_not_dividing);
    tcase_add_test(tc, test_patch_embed_weight_shape);
    tcase_add_test(tc, test_patch_embed_each_dim_checked);
    tcase_add_test(tc, test_patch_embed_bad_patch);
    TC("matmul");
    tcase_add_test(tc, test_matmul_2d_hand);
    tcase_add_test(tc, test_matmul_batched);
    tcase_add_test(tc, test_matmul_transposes);
    tcase_add_test(tc, test_matmul_shape_errors);
    tcase_add_test(tc, test_matmul_rank_mismatch);
    tcase_add_test(tc, test_matmul_empty_sums);
#undef TC
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(core_gemm_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
