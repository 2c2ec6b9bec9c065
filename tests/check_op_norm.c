/*
 * check_op_norm.c - the ops of the `norm` plugin, one TCase per op.
 *
 * Expected values are worked out by hand in the comments or by a naive
 * double-precision loop written here, never by calling a kernel.  The
 * plugin is loaded from $SMLP_TEST_BUILDDIR/plugins/.libs/norm.so through
 * tests/ophost.c.
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
assert_close_f(const float *got, const double *want, int64_t n, double tol,
               const char *what)
{
    int64_t i;

    for (i = 0; i < n; i++)
        ck_assert_msg(fabs(got[i] - want[i]) <= tol * (1.0 + fabs(want[i])),
                      "%s element %lld: got %.9g, want %.9g", what,
                      (long long)i, (double)got[i], want[i]);
}

static void
assert_close(const struct smlp_tensor *t, const double *want, int64_t n,
             double tol)
{
    ck_assert_int_eq(t->dtype, SMLP_DTYPE_F32);
    ck_assert_int_eq(smlp_tensor_numel(t), n);
    assert_close_f(t->data, want, n, tol, "output");
}

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

/* ---- norm.layer_norm ---------------------------------------------------- */

START_TEST(test_layer_norm_hand)
{
    /* Row (1,2,3,4): mean 2.5, biased var (2.25+0.25+0.25+2.25)/4 = 1.25,
     * so x̂ = (−1.5, −0.5, 0.5, 1.5)/√(1.25 + eps), eps = 1e-6 by default.
     * Row (2,2,2,2): x̂ = 0 (eps keeps 0/0 away).  gamma (1,2,1,0.5),
     * beta (0,0,1,−1). */
    const float x[] = {1, 2, 3, 4, 2, 2, 2, 2};
    const float g[] = {1, 2, 1, 0.5f}, b[] = {0, 0, 1, -1};
    const double r = 1.0 / sqrt(1.25 + 1e-6);
    const double want[] = {-1.5 * r, -1.0 * r, 0.5 * r + 1, 0.75 * r - 1,
                           0,        0,        1,           -1};
    struct smlp_tensor *t[4] = {ophost_f32(OPHOST_SHAPE(2, 4), x),
                                ophost_f32(OPHOST_SHAPE(4), g),
                                ophost_f32(OPHOST_SHAPE(4), b)};

    t[3] = run_ok("norm.layer_norm", NULL, t, 3);
    ck_assert_int_eq(t[3]->rank, 2);
    ck_assert_int_eq(t[3]->shape[0], 2);
    ck_assert_int_eq(t[3]->shape[1], 4);
    assert_close(t[3], want, 8, 1e-6);
    free_all(t, 4);
}
END_TEST

START_TEST(test_layer_norm_eps)
{
    /* Row (0,2): mean 1, var 1; eps 0.5 gives ±1/√1.5.  Default eps 1e-6
     * gives ±1/√(1+1e-6). */
    const float x[] = {0, 2};
    const float g[] = {1, 1}, b[] = {0, 0};
    const double w1[] = {-1 / sqrt(1.5), 1 / sqrt(1.5)};
    const double w2[] = {-1 / sqrt(1 + 1e-6), 1 / sqrt(1 + 1e-6)};
    struct smlp_tensor *t[4] = {ophost_f32(OPHOST_SHAPE(1, 2), x),
                                ophost_f32(OPHOST_SHAPE(2), g),
                                ophost_f32(OPHOST_SHAPE(2), b)};
    struct ophost_attr attrs[] = {OPHOST_FLOAT("eps", 0.5), OPHOST_END};

    t[3] = run_ok("norm.layer_norm", attrs, t, 3);
    assert_close(t[3], w1, 2, 1e-6);
    ophost_tensor_free(t[3]);
    t[3] = run_ok("norm.layer_norm", NULL, t, 3);
    assert_close(t[3], w2, 2, 1e-7);
    free_all(t, 4);
}
END_TEST

START_TEST(test_layer_norm_double_reference)
{
    /* [2,3,16] rows with a large offset (100), where a float one-pass
     * variance would lose digits. */
    enum { ROWS = 6, D = 16 };
    float x[ROWS * D], g[D], b[D];
    double want[ROWS * D];
    struct smlp_tensor *t[4];
    int r, j;

    fill(x, ROWS * D, 1, 1.0, 100.0);
    fill(g, D, 2, 1.0, 1.0);
    fill(b, D, 3, 0.5, 0.0);
    for (r = 0; r < ROWS; r++) {
        double mean = 0.0, var = 0.0;

        for (j = 0; j < D; j++)
            mean += x[r * D + j];
        mean /= D;
        for (j = 0; j < D; j++)
            var += (x[r * D + j] - mean) * (x[r * D + j] - mean);
        var /= D;
        for (j = 0; j < D; j++)
            want[r * D + j] =
                (x[r * D + j] - mean) / sqrt(var + 1e-6) * g[j] + b[j];
    }
    t[0] = ophost_f32(OPHOST_SHAPE(2, 3, D), x);
    t[1] = ophost_f32(OPHOST_SHAPE(D), g);
    t[2] = ophost_f32(OPHOST_SHAPE(D), b);
    t[3] = run_ok("norm.layer_norm", NULL, t, 3);
    ck_assert_int_eq(t[3]->rank, 3);
    assert_close(t[3], want, ROWS * D, 2e-6);
    free_all(t, 4);
}
END_TEST

START_TEST(test_layer_norm_gamma_size)
{
    struct smlp_tensor *t[3] = {ophost_f32(OPHOST_SHAPE(2, 4), NULL),
                                ophost_f32(OPHOST_SHAPE(3), NULL),
                                ophost_f32(OPHOST_SHAPE(4), NULL)};

    infer_fails("norm.layer_norm", NULL, t, 3,
                "input 1 (gamma) has shape [3], expected [4] (the last dim "
                "of input 0 (x) [2,4])");
    ophost_tensor_free(t[1]);
    t[1] = ophost_f32(OPHOST_SHAPE(4), NULL);
    ophost_tensor_free(t[2]);
    t[2] = ophost_f32(OPHOST_SHAPE(1, 4), NULL);
    infer_fails("norm.layer_norm", NULL, t, 3,
                "input 2 (beta) has shape [1,4] (rank 2), expected rank 1");
    free_all(t, 3);
}
END_TEST

/* beta's length is checked against d like gamma's (a shorter beta would
 * be read past its end), and a last dim of 0 has nothing to normalise. */
START_TEST(test_layer_norm_beta_size_and_empty_row)
{
    struct smlp_tensor *t[3] = {ophost_f32(OPHOST_SHAPE(2, 4), NULL),
                                ophost_f32(OPHOST_SHAPE(4), NULL),
                                ophost_f32(OPHOST_SHAPE(3), NULL)};
    struct smlp_tensor *e[3] = {ophost_f32(OPHOST_SHAPE(2, 0), NULL),
                                ophost_f32(OPHOST_SHAPE(0), NULL),
                                ophost_f32(OPHOST_SHAPE(0), NULL)};

    infer_fails("norm.layer_norm", NULL, t, 3,
                "input 2 (beta) has shape [3], expected [4] (the last dim "
                "of input 0 (x) [2,4])");
    infer_fails("norm.layer_norm", NULL, e, 3,
                "input 0 (x) has shape [2,0]: the last dim is empty");
    free_all(t, 3);
    free_all(e, 3);
}
END_TEST

START_TEST(test_layer_norm_bad_eps)
{
    struct smlp_tensor *t[3] = {ophost_f32(OPHOST_SHAPE(2, 4), NULL),
                                ophost_f32(OPHOST_SHAPE(4), NULL),
                                ophost_f32(OPHOST_SHAPE(4), NULL)};
    struct ophost_attr neg[] = {OPHOST_FLOAT("eps", -1.0), OPHOST_END};
    struct ophost_attr type[] = {OPHOST_INT("eps", 1), OPHOST_END};

    infer_fails("norm.layer_norm", neg, t, 3,
                "attribute 'eps' = -1 is invalid");
    infer_fails("norm.layer_norm", type, t, 3,
                "attribute 'eps' is an int, expected a float");
    free_all(t, 3);
}
END_TEST

/* ---- norm.batch_norm ---------------------------------------------------- */

/*
 * x [4,2]: column 0 (1,2,3,4) has mean 2.5, biased var 1.25, unbiased
 * 5/3; column 1 (2,4,6,8) mean 5, biased var 5, unbiased 20/3.
 */
static const float bn_x[] = {1, 2, 2, 4, 3, 6, 4, 8};

START_TEST(test_batch_norm_training_updates_running)
{
    const float g[] = {2, 1}, b[] = {0.5f, -1};
    const float rm[] = {0, 1}, rv[] = {1, 4};
    struct smlp_tensor *t[6] = {
        ophost_f32(OPHOST_SHAPE(4, 2), bn_x), ophost_f32(OPHOST_SHAPE(2), g),
        ophost_f32(OPHOST_SHAPE(2), b),       ophost_f32(OPHOST_SHAPE(2), rm),
        ophost_f32(OPHOST_SHAPE(2), rv),
    };
    struct ophost_attr attrs[] = {OPHOST_FLOAT("eps", 0.0), OPHOST_END};
    /* Running stats with momentum 0.1:
     *   mean (0.9·0 + 0.1·2.5, 0.9·1 + 0.1·5) = (0.25, 1.4);
     *   var  (0.9·1 + 0.1·5/3, 0.9·4 + 0.1·20/3). */
    const double want_rm[] = {0.25, 1.4};
    const double want_rv[] = {0.9 + 0.5 / 3.0, 3.6 + 2.0 / 3.0};
    double want[8];
    int r;

    for (r = 0; r < 4; r++) {
        want[2 * r] = (bn_x[2 * r] - 2.5) / sqrt(1.25) * 2 + 0.5;
        want[2 * r + 1] = (bn_x[2 * r + 1] - 5.0) / sqrt(5.0) * 1 - 1;
    }
    ophost_set_training(host, 1);
    t[5] = run_ok("norm.batch_norm", attrs, t, 5);
    assert_close(t[5], want, 8, 1e-6);
    assert_close_f(t[3]->data, want_rm, 2, 1e-6, "running_mean");
    assert_close_f(t[4]->data, want_rv, 2, 1e-6, "running_var");
    ck_assert_int_eq(ophost_stats(host)->workspace, 4 * sizeof(double));
    free_all(t, 6);
}
END_TEST

START_TEST(test_batch_norm_training_momentum)
{
    /* momentum 0.3, affine 0, eps 1e-5 (default):
     *   running_mean = 0.7·(1, 1) + 0.3·(2.5, 5)     = (1.45, 2.2)
     *   running_var  = 0.7·(2, 2) + 0.3·(5/3, 20/3)  = (1.9, 3.4). */
    const float rm[] = {1, 1}, rv[] = {2, 2};
    struct smlp_tensor *t[4] = {ophost_f32(OPHOST_SHAPE(4, 2), bn_x),
                                ophost_f32(OPHOST_SHAPE(2), rm),
                                ophost_f32(OPHOST_SHAPE(2), rv)};
    struct ophost_attr attrs[] = {OPHOST_FLOAT("momentum", 0.3),
                                  OPHOST_INT("affine", 0), OPHOST_END};
    const double want_rm[] = {1.45, 2.2}, want_rv[] = {1.9, 3.4};
    double want[8];
    int r;

    for (r = 0; r < 4; r++) {
        want[2 * r] = (bn_x[2 * r] - 2.5) / sqrt(1.25 + 1e-5);
        want[2 * r + 1] = (bn_x[2 * r + 1] - 5.0) / sqrt(5.0 + 1e-5);
    }
    ophost_set_training(host, 1);
    t[3] = run_ok("norm.batch_norm", attrs, t, 3);
    assert_close(t[3], want, 8, 1e-6);
    assert_close_f(t[1]->data, want_rm, 2, 1e-6, "running_mean");
    assert_close_f(t[2]->data, want_rv, 2, 1e-6, "running_var");
    free_all(t, 4);
}
END_TEST

START_TEST(test_batch_norm_inference_uses_running)
{
    /* Running mean (1, 4), var (4, 0.25), eps 0: column 0 maps x to
     * (x-1)/2·g0 + b0, column 1 to (x-4)/0.5·g1 + b1.  The batch's own
     * statistics play no part and the running stats stay as they were. */
    const float g[] = {3, -1}, b[] = {1, 0.25f};
    const float rm[] = {1, 4}, rv[] = {4, 0.25f};
    const double same_rm[] = {1, 4}, same_rv[] = {4, 0.25};
    struct smlp_tensor *t[6] = {
        ophost_f32(OPHOST_SHAPE(4, 2), bn_x), ophost_f32(OPHOST_SHAPE(2), g),
        ophost_f32(OPHOST_SHAPE(2), b),       ophost_f32(OPHOST_SHAPE(2), rm),
        ophost_f32(OPHOST_SHAPE(2), rv),
    };
    struct ophost_attr attrs[] = {OPHOST_FLOAT("eps", 0.0), OPHOST_END};
    double want[8];
    int r;

    for (r = 0; r < 4; r++) {
        want[2 * r] = (bn_x[2 * r] - 1.0) / 2.0 * 3 + 1;
        want[2 * r + 1] = (bn_x[2 * r + 1] - 4.0) / 0.5 * -1 + 0.25;
    }
    ophost_set_training(host, 0);
    t[5] = run_ok("norm.batch_norm", attrs, t, 5);
    assert_close(t[5], want, 8, 1e-6);
    assert_close_f(t[3]->data, same_rm, 2, 0.0, "running_mean");
    assert_close_f(t[4]->data, same_rv, 2, 0.0, "running_var");
    free_all(t, 6);
}
END_TEST

START_TEST(test_batch_norm_input_count)
{
    struct smlp_tensor *t[5] = {ophost_f32(OPHOST_SHAPE(4, 2), NULL),
                                ophost_f32(OPHOST_SHAPE(2), NULL),
                                ophost_f32(OPHOST_SHAPE(2), NULL),
                                ophost_f32(OPHOST_SHAPE(2), NULL),
                                ophost_f32(OPHOST_SHAPE(2), NULL)};
    struct ophost_attr no_affine[] = {OPHOST_INT("affine", 0), OPHOST_END};
    struct ophost_attr bad[] = {OPHOST_INT("affine", 2), OPHOST_END};

    infer_fails("norm.batch_norm", NULL, t, 3,
                "affine=1 takes 5 inputs (x, gamma, beta, running_mean, "
                "running_var), got 3");
    infer_fails("norm.batch_norm", no_affine, t, 5,
                "affine=0 takes 3 inputs (x, running_mean, running_var), "
                "got 5");
    infer_fails("norm.batch_norm", bad, t, 5,
                "attribute 'affine' = 2 is invalid");
    free_all(t, 5);
}
END_TEST

START_TEST(test_batch_norm_shape_errors)
{
    struct smlp_tensor *t[5] = {ophost_f32(OPHOST_SHAPE(4, 2), NULL),
                                ophost_f32(OPHOST_SHAPE(2), NULL),
                                ophost_f32(OPHOST_SHAPE(2), NULL),
                                ophost_f32(OPHOST_SHAPE(2), NULL),
                                ophost_f32(OPHOST_SHAPE(3), NULL)};
    struct smlp_tensor *one[5] = {ophost_f32(OPHOST_SHAPE(1, 2), NULL),
                                  t[1], t[2], t[3], t[3]};
    struct ophost_attr mom[] = {OPHOST_FLOAT("momentum", 1.5), OPHOST_END};

    infer_fails("norm.batch_norm", NULL, t, 5,
                "input 4 (running_var) has shape [3], expected [2] (dim 1 of "
                "input 0 (x) [4,2])");
    infer_fails("norm.batch_norm", mom, t, 5,
                "attribute 'momentum' = 1.5 is invalid");
    ophost_set_training(host, 1);
    infer_fails("norm.batch_norm", NULL, one, 5,
                "input 0 (x) has shape [1,2]: training needs more than one "
                "row per channel");
    ophost_tensor_free(one[0]);
    free_all(t, 5);
}
END_TEST

/*
 * batch_norm with d = 150 channels, more than one task of columns (the
 * kernel cuts them in blocks of 64: 0-63, 64-127, 128-149), against a
 * naive double loop written here: training normalises with the batch mean
 * and biased variance and moves the running stats by momentum toward the
 * batch mean and unbiased variance; inference normalises with the running
 * stats and leaves them alone.  Default eps 1e-5 and momentum 0.1.
 */
START_TEST(test_batch_norm_wide_reference)
{
    enum { N = 5, D = 150 };
    float x[N * D], g[D], b[D], rm[D], rv[D];
    double want[N * D], want_rm[D], want_rv[D];
    struct smlp_tensor *t[6];
    int training, r, j;

    fill(x, N * D, 201, 2.0, 0.5);
    fill(g, D, 202, 0.5, 1.0);
    fill(b, D, 203, 1.0, 0.0);
    fill(rm, D, 204, 0.5, 0.0);
    fill(rv, D, 205, 0.5, 1.0);
    for (training = 0; training <= 1; training++) {
        for (j = 0; j < D; j++) {
            double mean = rm[j], var = rv[j];

            want_rm[j] = rm[j];
            want_rv[j] = rv[j];
            if (training) {
                mean = var = 0.0;
                for (r = 0; r < N; r++)
                    mean += x[r * D + j];
                mean /= N;
                for (r = 0; r < N; r++)
                    var += (x[r * D + j] - mean) * (x[r * D + j] - mean);
                want_rm[j] = 0.9 * rm[j] + 0.1 * mean;
                want_rv[j] = 0.9 * rv[j] + 0.1 * var / (N - 1);
                var /= N;
            }
            for (r = 0; r < N; r++)
                want[r * D + j] = (x[r * D + j] - mean) / sqrt(var + 1e-5) *
                                      g[j] + b[j];
        }
        t[0] = ophost_f32(OPHOST_SHAPE(N, D), x);
        t[1] = ophost_f32(OPHOST_SHAPE(D), g);
        t[2] = ophost_f32(OPHOST_SHAPE(D), b);
        t[3] = ophost_f32(OPHOST_SHAPE(D), rm);
        t[4] = ophost_f32(OPHOST_SHAPE(D), rv);
        ophost_set_training(host, training);
        t[5] = run_ok("norm.batch_norm", NULL, t, 5);
        assert_close(t[5], want, N * D, 1e-5);
        assert_close_f(t[3]->data, want_rm, D, 1e-6, "running_mean");
        assert_close_f(t[4]->data, want_rv, D, 1e-6, "running_var");
        free_all(t, 6);
    }
    ophost_set_training(host, 0);
}
END_TEST

/* ---- threads ------------------------------------------------------------ */

static int
same_bits(const struct smlp_tensor *a, const struct smlp_tensor *b)
{
    return smlp_tensor_numel(a) == smlp_tensor_numel(b) &&
           memcmp(a->data, b->data,
                  (size_t)smlp_tensor_numel(a) * sizeof(float)) == 0;
}

/*
 * Forward and backward of op on in[0..n_in) (input 0 the data, the next
 * two, when differentiable, gamma and beta) at 1, 2 and 3 threads: the
 * same bits.  The shapes are cut into several parallel_for tasks, which
 * ophost runs in a shuffled order on that many threads.  in_state[i]
 * marks inputs that are state (no gradient; the forward may update them
 * in training, so they are restored before each run).
 */
static void
check_threads(const char *op, const struct ophost_attr *attrs,
              struct smlp_tensor **in, int n_in, int n_diff, int training)
{
    struct smlp_tensor *y[4] = {NULL}, *dy[1], *g[4][5], *save[5];
    const char *msg;
    int th, i, rc;

    ophost_set_training(host, training);
    for (i = 0; i < n_in; i++)
        save[i] = ophost_tensor(in[i]->dtype, in[i]->rank, in[i]->shape,
                                in[i]->data);
    for (th = 1; th <= 3; th++) {
        for (i = 0; i < n_in; i++)
            memcpy(in[i]->data, save[i]->data,
                   (size_t)smlp_tensor_numel(in[i]) * sizeof(float));
        ophost_set_threads(host, th);
        y[th] = NULL;
        rc = ophost_run(host, op, attrs, in, n_in, &y[th], 1, &msg);
        ck_assert_msg(rc == SMLP_OK, "%s: %s", op, msg);
        if (th == 1) {
            dy[0] = ophost_tensor_like(y[1]);
            fill(dy[0]->data, smlp_tensor_numel(dy[0]), 77, 1.0, 0.0);
        }
        for (i = 0; i < n_in; i++)
            g[th][i] = i < n_diff ? ophost_tensor_like(in[i]) : NULL;
        rc = ophost_backward(host, op, attrs, in, n_in, &y[th], 1, dy,
                             g[th], &msg);
        ck_assert_msg(rc == SMLP_OK, "%s backward: %s", op, msg);
        if (th == 1)
            continue;
        ck_assert_msg(same_bits(y[1], y[th]),
                      "%s: output differs between 1 and %d threads", op, th);
        for (i = 0; i < n_diff; i++)
            ck_assert_msg(same_bits(g[1][i], g[th][i]),
                          "%s: d input %d differs between 1 and %d threads",
                          op, i, th);
    }
    for (th = 1; th <= 3; th++) {
        ophost_tensor_free(y[th]);
        free_all(g[th], n_diff);
    }
    free_all(save, n_in);
    ophost_tensor_free(dy[0]);
    ophost_set_threads(host, 1);
    ophost_set_training(host, 0);
}

START_TEST(test_layer_norm_threads)
{
    struct smlp_tensor *t[3] = {ophost_f32(OPHOST_SHAPE(3, 40, 1000), NULL),
                                ophost_f32(OPHOST_SHAPE(1000), NULL),
                                ophost_f32(OPHOST_SHAPE(1000), NULL)};

    fill(t[0]->data, 120000, 1, 2.0, 0.5);
    fill(t[1]->data, 1000, 2, 0.5, 1.0);
    fill(t[2]->data, 1000, 3, 0.5, 0.0);
    check_threads("norm.layer_norm", NULL, t, 3, 3, 0);
    free_all(t, 3);
}
END_TEST

START_TEST(test_batch_norm_threads)
{
    struct smlp_tensor *t[5] = {ophost_f32(OPHOST_SHAPE(48, 700), NULL),
                                ophost_f32(OPHOST_SHAPE(700), NULL),
                                ophost_f32(OPHOST_SHAPE(700), NULL),
                                ophost_f32(OPHOST_SHAPE(700), NULL),
                                ophost_f32(OPHOST_SHAPE(700), NULL)};
    int training;

    fill(t[0]->data, 48 * 700, 4, 2.0, 0.5);
    fill(t[1]->data, 700, 5, 0.5, 1.0);
    fill(t[2]->data, 700, 6, 0.5, 0.0);
    fill(t[3]->data, 700, 7, 0.5, 0.0);
    fill(t[4]->data, 700, 8, 0.5, 2.0);
    for (training = 0; training <= 1; training++)
        check_threads("norm.batch_norm", NULL, t, 5, 3, training);
    free_all(t, 5);
}
END_TEST

/* ---- the plugin --------------------------------------------------------- */

START_TEST(test_plugin_registers_ops)
{
    const struct smlp_plugin_def *def = ophost_plugin(host);
    const struct smlp_op_def *ln = ophost_op(host, "norm.layer_norm");
    const struct smlp_op_def *bn = ophost_op(host, "norm.batch_norm");

    ck_assert_str_eq(def->name, "norm");
    ck_assert_str_eq(def->signature, SMLP_BUILD_SIGNATURE);
    ck_assert_ptr_null(def->set_threads);
    ck_assert_int_eq(ophost_op_count(host), 2);
    ck_assert_ptr_nonnull(ln);
    ck_assert_ptr_nonnull(bn);
    ck_assert_ptr_null(strchr(ln->doc, '\n'));
    ck_assert_ptr_nonnull(strstr(bn->doc, "affine=0: x, running_mean, "
                                          "running_var"));
    ck_assert_int_eq(bn->min_inputs, 3);
    ck_assert_int_eq(bn->max_inputs, 5);
}
END_TEST

static Suite *
norm_suite(void)
{
    Suite *s = suite_create("norm");
    TCase *tc;

#define TC(name)                                                             \
    tc = tcase_create(name);                                                 \
    tcase_add_checked_fixture(tc, setup, teardown);                          \
    suite_add_tcase(s, tc)

    TC("layer_norm");
    tcase_add_test(tc, test_layer_norm_hand);
    tcase_add_test(tc, test_layer_norm_eps);
    tcase_add_test(tc, test_layer_norm_double_reference);
    tcase_add_test(tc, test_layer_norm_gamma_size);
    tcase_add_test(tc, test_layer_norm_bad_eps);
    tcase_add_test(tc, test_layer_norm_beta_size_and_empty_row);
    TC("batch_norm");
    tcase_add_test(tc, test_batch_norm_training_updates_running);
    tcase_add_test(tc, test_batch_norm_training_momentum);
    tcase_add_test(tc, test_batch_norm_inference_uses_running);
    tcase_add_test(tc, test_batch_norm_input_count);
    tcase_add_test(tc, test_batch_norm_shape_errors);
    tcase_add_test(tc, test_batch_norm_wide_reference);
    TC("threads");
    tcase_add_test(tc, test_layer_norm_threads);
    tcase_add_test(tc, test_batch_norm_threads);
    TC("plugin");
    tcase_add_test(tc, test_plugin_registers_ops);
#undef TC
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(norm_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
