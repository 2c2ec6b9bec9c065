/*
 * check_grad_norm.c - the backward of the `norm` plugin's ops.
 *
 * Each gradient is checked two ways:
 *   - against central finite differences of the f32 forward
 *     (tests/gradcheck.h) with eps = 1e-2 (h = eps·max(1, |x|)) and a
 *     normwise tolerance of 1e-2 (floor 1e-3): layer and batch norm are
 *     smooth, and with O(1) values the truncation error O(h²) and the
 *     f32 rounding of the forward (~1e-7 relative, divided by 2h) both stay
 *     near 1e-4, so 1e-2 leaves a wide margin without hiding a wrong
 *     formula (those give O(1) errors);
 *   - against a naive double-precision backward written here, per
 *     element within 1e-5·(1 + |want|) (the kernel stores f32).
 * Also: results bit-identical with 1 and 2 threads, zeros when no
 * gradient reaches y, zeros for the running statistics (state).  The
 * plugin is loaded from $SMLP_TEST_BUILDDIR/plugins/.libs/norm.so through
 * tests/ophost.c.
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

    host = ophost_create("norm", err, sizeof(err));
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

/* offset + scale·U[-1, 1), a 64-bit LCG. */
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

static void
free_all(struct smlp_tensor **t, int n)
{
    int i;

    for (i = 0; i < n; i++)
        ophost_tensor_free(t[i]);
}

/* With SMLP_GC_VERBOSE set, prints the normwise errors of a check. */
static void
report(const char *what, const struct gc_result *res, int n_in)
{
    int i;

    if (getenv("SMLP_GC_VERBOSE") == NULL)
        return;
    fprintf(stderr, "%s:", what);
    for (i = 0; i < n_in; i++)
        if (res->err[i] >= 0.0)
            fprintf(stderr, " in%d err %.2e (max|g| %.2e)", i, res->err[i],
                    res->gmax[i]);
    fprintf(stderr, "\n");
}

/* gc_check with the defaults above (eps 1e-2, tol 1e-2, floor 1e-3). */
static void
grad_ok(const char *op, const struct ophost_attr *attrs,
        struct smlp_tensor **in, int n_in, const int *check)
{
    struct gc_spec s;
    struct gc_result res;
    char msg[1024];

    memset(&s, 0, sizeof(s));
    s.op = op;
    s.attrs = attrs;
    s.inputs = in;
    s.n_in = n_in;
    s.n_out = 1;
    s.check = check;
    s.seed = 7;
    ck_assert_msg(gc_check(host, &s, &res, msg, sizeof(msg)) == 0, "%s",
                  msg);
    report(op, &res, n_in);
}

/*
 * Forward, then backward with the upstream gradient dy (NULL: none
 * reaches y); grads[i] receives a new tensor for each want[i] (free with
 * ophost_tensor_free), poisoned with NaN before the call so that an
 * element left unwritten shows.
 */
static void
backward_ok(const char *op, const struct ophost_attr *attrs,
            struct smlp_tensor **in, int n_in, const float *dy,
            const int *want, struct smlp_tensor **grads)
{
    struct smlp_tensor *out[1] = {NULL}, *g[1] = {NULL};
    const char *msg;
    int i, rc;
    int64_t k;

    rc = ophost_run(host, op, attrs, in, n_in, out, 1, &msg);
    ck_assert_msg(rc == SMLP_OK, "%s forward: %s", op, msg);
    if (dy != NULL)
        g[0] = ophost_f32(out[0]->rank, out[0]->shape, dy);
    for (i = 0; i < n_in; i++) {
        grads[i] = NULL;
        if (!want[i])
            continue;
        grads[i] = ophost_tensor_like(in[i]);
        for (k = 0; k < smlp_tensor_numel(in[i]); k++)
            ((float *)grads[i]->data)[k] = NAN;
    }
    rc = ophost_backward(host, op, attrs, in, n_in, out, 1, g, grads, &msg);
    ck_assert_msg(rc == SMLP_OK, "%s backward: %s", op, msg);
    ophost_tensor_free(out[0]);
    ophost_tensor_free(g[0]);
}

static void
assert_close_f(const struct smlp_tensor *t, const double *want, double tol,
               const char *what)
{
    const float *got = t->data;
    int64_t i, n = smlp_tensor_numel(t);

    for (i = 0; i < n; i++)
        ck_assert_msg(fabs(got[i] - want[i]) <= tol * (1.0 + fabs(want[i])),
                      "%s element %lld: got %.9g, want %.9g", what,
                      (long long)i, (double)got[i], want[i]);
}

static void
assert_zero(const struct smlp_tensor *t, const char *what)
{
    const float *v = t->data;
    int64_t i;

    for (i = 0; i < smlp_tensor_numel(t); i++)
        ck_assert_msg(v[i] == 0.0f, "%s element %lld = %g, expected 0", what,
                      (long long)i, (double)v[i]);
}

/* Backward with 1 and with 2 threads gives the same bits. */
static void
threads_identical(const char *op, const struct ophost_attr *attrs,
                  struct smlp_tensor **in, int n_in, const int *want,
                  int64_t n_dy)
{
    struct smlp_tensor *g1[8], *g2[8];
    float *dy = malloc((size_t)n_dy * sizeof(float));
    int i;

    ck_assert_ptr_nonnull(dy);
    fill(dy, n_dy, 99, 1.0, 0.0);
    ophost_set_threads(host, 1);
    backward_ok(op, attrs, in, n_in, dy, want, g1);
    ophost_set_threads(host, 2);
    backward_ok(op, attrs, in, n_in, dy, want, g2);
    ophost_set_threads(host, 1);
    for (i = 0; i < n_in; i++) {
        if (!want[i])
            continue;
        ck_assert_msg(memcmp(g1[i]->data, g2[i]->data,
                             (size_t)smlp_tensor_numel(in[i]) *
                                 sizeof(float)) == 0,
                      "%s: gradient of input %d differs with 2 threads", op,
                      i);
        ophost_tensor_free(g1[i]);
        ophost_tensor_free(g2[i]);
    }
    free(dy);
}

/* ---- norm.layer_norm ---------------------------------------------------- */

/* The double-precision reference of the layer_norm backward. */
static void
ref_layer_norm(const float *x, const float *gamma, const float *dy,
               int64_t rows, int64_t d, double eps, double *dx, double *dg,
               double *db)
{
    int64_t r, j;

    for (j = 0; j < d; j++)
        dg[j] = db[j] = 0.0;
    for (r = 0; r < rows; r++) {
        const float *xr = x + r * d, *gr = dy + r * d;
        double mean = 0.0, var = 0.0, rstd, s1 = 0.0, s2 = 0.0;

        for (j = 0; j < d; j++)
            mean += xr[j];
        mean /= (double)d;
        for (j = 0; j < d; j++)
            var += (xr[j] - mean) * (xr[j] - mean);
        var /= (double)d;
        rstd = 1.0 / sqrt(var + eps);
        for (j = 0; j < d; j++) {
            double xh = (xr[j] - mean) * rstd;

            s1 += (double)gr[j] * gamma[j];
            s2 += (double)gr[j] * gamma[j] * xh;
            dg[j] += (double)gr[j] * xh;
            db[j] += gr[j];
        }
        for (j = 0; j < d; j++) {
            double xh = (xr[j] - mean) * rstd;

            dx[r * d + j] = rstd * ((double)gr[j] * gamma[j] -
                                    s1 / (double)d - xh * s2 / (double)d);
        }
    }
}

START_TEST(test_grad_norm_layer_norm_fd)
{
    /* d = 13: one full block of 8 lanes and a tail of 5. */
    enum { D = 13 };
    float x[4 * D], g[D], b[D];
    struct smlp_tensor *t[3];
    const int all[3] = {1, 1, 1};

    fill(x, 4 * D, 1, 2.0, 0.5);
    fill(g, D, 2, 1.0, 1.0);
    fill(b, D, 3, 0.5, 0.0);
    t[0] = ophost_f32(OPHOST_SHAPE(4, D), x);
    t[1] = ophost_f32(OPHOST_SHAPE(D), g);
    t[2] = ophost_f32(OPHOST_SHAPE(D), b);
    grad_ok("norm.layer_norm", NULL, t, 3, all);
    free_all(t, 3);
}
END_TEST

START_TEST(test_grad_norm_layer_norm_fd_rank3_eps)
{
    /* [2,3,5] (d below one lane block) with eps = 0.1, and a gradient
     * wanted for x only (gamma, beta get grad_inputs NULL). */
    enum { D = 5 };
    float x[6 * D], g[D], b[D];
    struct smlp_tensor *t[3];
    const int only_x[3] = {1, 0, 0}, all[3] = {1, 1, 1};
    struct ophost_attr attrs[] = {OPHOST_FLOAT("eps", 0.1), OPHOST_END};

    fill(x, 6 * D, 4, 1.0, 0.0);
    fill(g, D, 5, 1.0, 0.0);
    fill(b, D, 6, 1.0, 0.0);
    t[0] = ophost_f32(OPHOST_SHAPE(2, 3, D), x);
    t[1] = ophost_f32(OPHOST_SHAPE(D), g);
    t[2] = ophost_f32(OPHOST_SHAPE(D), b);
    grad_ok("norm.layer_norm", attrs, t, 3, only_x);
    grad_ok("norm.layer_norm", attrs, t, 3, all);
    free_all(t, 3);
}
END_TEST

START_TEST(test_grad_norm_layer_norm_reference)
{
    /* 7 rows of d = 37 (4 blocks + a tail of 5), offset 10. */
    enum { ROWS = 7, D = 37 };
    float x[ROWS * D], g[D], b[D], dy[ROWS * D];
    double dx[ROWS * D], dg[D], db[D];
    struct smlp_tensor *t[3], *gr[3];
    const int all[3] = {1, 1, 1};

    fill(x, ROWS * D, 11, 3.0, 10.0);
    fill(g, D, 12, 1.0, 0.5);
    fill(b, D, 13, 1.0, 0.0);
    fill(dy, ROWS * D, 14, 1.0, 0.0);
    t[0] = ophost_f32(OPHOST_SHAPE(ROWS, D), x);
    t[1] = ophost_f32(OPHOST_SHAPE(D), g);
    t[2] = ophost_f32(OPHOST_SHAPE(D), b);
    backward_ok("norm.layer_norm", NULL, t, 3, dy, all, gr);
    ref_layer_norm(x, g, dy, ROWS, D, 1e-6, dx, dg, db);
    assert_close_f(gr[0], dx, 1e-5, "dx");
    assert_close_f(gr[1], dg, 1e-5, "dgamma");
    assert_close_f(gr[2], db, 1e-5, "dbeta");
    free_all(gr, 3);
    free_all(t, 3);
}
END_TEST

START_TEST(test_grad_norm_layer_norm_no_grad_output)
{
    /* No gradient reaches y: every wanted gradient is zero. */
    float x[2 * 4];
    struct smlp_tensor *t[3], *gr[3];
    const int all[3] = {1, 1, 1};

    fill(x, 8, 21, 1.0, 0.0);
    t[0] = ophost_f32(OPHOST_SHAPE(2, 4), x);
    t[1] = ophost_f32(OPHOST_SHAPE(4), x);
    t[2] = ophost_f32(OPHOST_SHAPE(4), x + 4);
    backward_ok("norm.layer_norm", NULL, t, 3, NULL, all, gr);
    assert_zero(gr[0], "dx");
    assert_zero(gr[1], "dgamma");
    assert_zero(gr[2], "dbeta");
    free_all(gr, 3);
    free_all(t, 3);
}
END_TEST

START_TEST(test_grad_norm_layer_norm_threads)
{
    enum { ROWS = 33, D = 70 };
    float *x = malloc(ROWS * D * sizeof(float)), g[D], b[D];
    struct smlp_tensor *t[3];
    const int all[3] = {1, 1, 1};

    ck_assert_ptr_nonnull(x);
    fill(x, ROWS * D, 31, 1.0, 0.0);
    fill(g, D, 32, 1.0, 1.0);
    fill(b, D, 33, 1.0, 0.0);
    t[0] = ophost_f32(OPHOST_SHAPE(ROWS, D), x);
    t[1] = ophost_f32(OPHOST_SHAPE(D), g);
    t[2] = ophost_f32(OPHOST_SHAPE(D), b);
    threads_identical("norm.layer_norm", NULL, t, 3, all, ROWS * D);
    free_all(t, 3);
    free(x);
}
END_TEST

/* ---- norm.batch_norm ---------------------------------------------------- */

/* The double-precision reference of the batch_norm backward (gamma NULL:
 * affine = 0; rm/rv NULL: training, batch statistics). */
static void
ref_batch_norm(const float *x, const float *gamma, const float *rm,
               const float *rv, const float *dy, int64_t n, int64_t d,
               double eps, double *dx, double *dg, double *db)
{
    int64_t r, j;

    for (j = 0; j < d; j++) {
        double mean = 0.0, var = 0.0, rstd, sg = 0.0, sgx = 0.0;
        double gm = gamma != NULL ? gamma[j] : 1.0;

        if (rm == NULL) {
            for (r = 0; r < n; r++)
                mean += x[r * d + j];
            mean /= (double)n;
            for (r = 0; r < n; r++)
                var += (x[r * d + j] - mean) * (x[r * d + j] - mean);
            var /= (double)n;
        } else {
            mean = rm[j];
            var = rv[j];
        }
        rstd = 1.0 / sqrt(var + eps);
        for (r = 0; r < n; r++) {
            sg += dy[r * d + j];
            sgx += (double)dy[r * d + j] * (x[r * d + j] - mean) * rstd;
        }
        dg[j] = sgx;
        db[j] = sg;
        for (r = 0; r < n; r++) {
            double xh = (x[r * d + j] - mean) * rstd;

            dx[r * d + j] = rm == NULL ? gm * rstd *
                                             (dy[r * d + j] - sg / (double)n -
                                              xh * sgx / (double)n)
                                       : gm * rstd * dy[r * d + j];
        }
    }
}

/* x [N, D] random around 1, gamma, beta, running mean and var > 0. */
static void
bn_inputs(struct smlp_tensor **t, int affine, int64_t n, int64_t d,
          uint64_t seed)
{
    float *v = malloc((size_t)(n * d) * sizeof(float));
    int i = 1;

    ck_assert_ptr_nonnull(v);
    fill(v, n * d, seed, 2.0, 1.0);
    t[0] = ophost_f32(OPHOST_SHAPE(n, d), v);
    if (affine) {
        fill(v, d, seed + 1, 1.0, 1.0);
        t[i++] = ophost_f32(OPHOST_SHAPE(d), v);
        fill(v, d, seed + 2, 1.0, 0.0);
        t[i++] = ophost_f32(OPHOST_SHAPE(d), v);
    }
    fill(v, d, seed + 3, 0.5, 0.2);
    t[i++] = ophost_f32(OPHOST_SHAPE(d), v);
    fill(v, d, seed + 4, 0.4, 1.0);
    t[i++] = ophost_f32(OPHOST_SHAPE(d), v);
    free(v);
}

START_TEST(test_grad_norm_batch_norm_training_fd)
{
    struct smlp_tensor *t[5];
    const int check[5] = {1, 1, 1, 0, 0};

    ophost_set_training(host, 1);
    bn_inputs(t, 1, 6, 5, 41);
    grad_ok("norm.batch_norm", NULL, t, 5, check);
    free_all(t, 5);
}
END_TEST

START_TEST(test_grad_norm_batch_norm_training_no_affine_fd)
{
    struct smlp_tensor *t[3];
    const int check[3] = {1, 0, 0};
    struct ophost_attr attrs[] = {OPHOST_INT("affine", 0),
                                  OPHOST_FLOAT("eps", 0.01), OPHOST_END};

    ophost_set_training(host, 1);
    bn_inputs(t, 0, 4, 7, 51);
    grad_ok("norm.batch_norm", attrs, t, 3, check);
    free_all(t, 3);
}
END_TEST

START_TEST(test_grad_norm_batch_norm_inference_fd)
{
    /* Running statistics are constants: dx = gamma·rstd·dy. */
    struct smlp_tensor *t[5], *u[3];
    const int check[5] = {1, 1, 1, 0, 0}, only_x[3] = {1, 0, 0};
    struct ophost_attr attrs[] = {OPHOST_INT("affine", 0), OPHOST_END};

    ophost_set_training(host, 0);
    bn_inputs(t, 1, 5, 6, 61);
    grad_ok("norm.batch_norm", NULL, t, 5, check);
    bn_inputs(u, 0, 1, 6, 62); /* one row is fine in inference */
    grad_ok("norm.batch_norm", attrs, u, 3, only_x);
    free_all(t, 5);
    free_all(u, 3);
}
END_TEST

START_TEST(test_grad_norm_batch_norm_reference)
{
    enum { N = 9, D = 11 };
    struct smlp_tensor *t[5], *gr[5];
    const int want[5] = {1, 1, 1, 1, 1};
    float dy[N * D];
    double dx[N * D], dg[D], db[D];
    int training;

    fill(dy, N * D, 71, 1.0, 0.0);
    for (training = 0; training < 2; training++) {
        ophost_set_training(host, training);
        bn_inputs(t, 1, N, D, 72);
        /* Reference first: a training forward updates the running
         * statistics in place. */
        ref_batch_norm(t[0]->data, t[1]->data,
                       training ? NULL : t[3]->data,
                       training ? NULL : t[4]->data, dy, N, D, 1e-5, dx, dg,
                       db);
        backward_ok("norm.batch_norm", NULL, t, 5, dy, want, gr);
        assert_close_f(gr[0], dx, 1e-5, "dx");
        assert_close_f(gr[1], dg, 1e-5, "dgamma");
        assert_close_f(gr[2], db, 1e-5, "dbeta");
        /* Running statistics are state: zero gradient. */
        assert_zero(gr[3], "d running_mean");
        assert_zero(gr[4], "d running_var");
        free_all(gr, 5);
        free_all(t, 5);
    }
}
END_TEST

/*
 * test_grad_norm_batch_norm_reference's check on x [n, d] (seeds `seed`
 * for dy, seed + 1 for the inputs), in inference then in training: dx,
 * dgamma and dbeta against ref_batch_norm, zeros for the running
 * statistics.
 */
static void
bn_reference(int64_t n, int64_t d, uint64_t seed)
{
    struct smlp_tensor *t[5], *gr[5];
    const int want[5] = {1, 1, 1, 1, 1};
    float *dy = malloc((size_t)(n * d) * sizeof(float));
    double *dx = malloc((size_t)(n * d) * sizeof(double));
    double *dg = malloc((size_t)d * sizeof(double));
    double *db = malloc((size_t)d * sizeof(double));
    int training;

    ck_assert(dy != NULL && dx != NULL && dg != NULL && db != NULL);
    fill(dy, n * d, seed, 1.0, 0.0);
    for (training = 0; training < 2; training++) {
        ophost_set_training(host, training);
        bn_inputs(t, 1, n, d, seed + 1);
        ref_batch_norm(t[0]->data, t[1]->data,
                       training ? NULL : t[3]->data,
                       training ? NULL : t[4]->data, dy, n, d, 1e-5, dx, dg,
                       db);
        backward_ok("norm.batch_norm", NULL, t, 5, dy, want, gr);
        assert_close_f(gr[0], dx, 1e-5, "dx");
        assert_close_f(gr[1], dg, 1e-5, "dgamma");
        assert_close_f(gr[2], db, 1e-5, "dbeta");
        assert_zero(gr[3], "d running_mean");
        assert_zero(gr[4], "d running_var");
        free_all(gr, 5);
        free_all(t, 5);
    }
    ophost_set_training(host, 0);
    free(dy);
    free(dx);
    free(dg);
    free(db);
}

/* d = 150 channels: more than one column task (the kernel cuts 64
 * columns per task), so a channel index taken relative to its task, or a
 * row stride of the task's width, shows. */
START_TEST(test_grad_norm_batch_norm_wide_reference)
{
    bn_reference(6, 150, 171);
}
END_TEST

START_TEST(test_grad_norm_batch_norm_no_grad_output)
{
    struct smlp_tensor *t[5], *gr[5];
    const int want[5] = {1, 1, 1, 0, 0};

    ophost_set_training(host, 1);
    bn_inputs(t, 1, 3, 4, 81);
    backward_ok("norm.batch_norm", NULL, t, 5, NULL, want, gr);
    assert_zero(gr[0], "dx");
    assert_zero(gr[1], "dgamma");
    assert_zero(gr[2], "dbeta");
    free_all(gr, 5);
    free_all(t, 5);
}
END_TEST

START_TEST(test_grad_norm_batch_norm_threads)
{
    struct smlp_tensor *t[5];
    const int want[5] = {1, 1, 1, 0, 0};
    int training;

    for (training = 0; training < 2; training++) {
        ophost_set_training(host, training);
        bn_inputs(t, 1, 40, 19, 91);
        threads_identical("norm.batch_norm", NULL, t, 5, want, 40 * 19);
        free_all(t, 5);
    }
}
END_TEST

static Suite *
grad_norm_suite(void)
{
    Suite *s = suite_create("grad_norm");
    TCase *tc;

#define TC(name)                                                             \
    tc = tcase_create(name);                                                 \
    tcase_add_checked_fixture(tc, setup, teardown);                          \
    suite_add_tcase(s, tc)

    TC("layer_norm");
    tcase_add_test(tc, test_grad_norm_layer_norm_fd);
    tcase_add_test(tc, test_grad_norm_layer_norm_fd_rank3_eps);
    tcase_add_test(tc, test_grad_norm_layer_norm_reference);
    tcase_add_test(tc, test_grad_norm_layer_norm_no_grad_output);
    tcase_add_test(tc, test_grad_norm_layer_norm_threads);
    TC("batch_norm");
    tcase_add_test(tc, test_grad_norm_batch_norm_training_fd);
    tcase_add_test(tc, test_grad_norm_batch_norm_training_no_affine_fd);
    tcase_add_test(tc, test_grad_norm_batch_norm_inference_fd);
    tcase_add_test(tc, test_grad_norm_batch_norm_reference);
    tcase_add_test(tc, test_grad_norm_batch_norm_wide_reference);
    tcase_add_test(tc, test_grad_norm_batch_norm_no_grad_output);
    tcase_add_test(tc, test_grad_norm_batch_norm_threads);
#undef TC
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(grad_norm_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
