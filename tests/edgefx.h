/*
 * edgefx.h - the fixture of the op edge suites (check_op_core_edges.c,
 * check_op_norm_edges.c, check_op_moe_edges.c, check_op_moco_edges.c):
 * one plugin loaded through tests/ophost.c per test, runs and backwards
 * asserted to succeed, and comparisons in which a NaN or infinite
 * expected value asks for exactly that.
 *
 * Those suites check the CPU kernels where training runs go wrong; the
 * other op suites check ordinary random inputs.  Expected values are
 * worked out by hand in the comments, or by naive double-precision loops
 * written in the tests, never by calling a kernel; where the docs
 * (OPS.md, docs/ops.md) leave the result open, the comment says which
 * value PyTorch (torch 1.13, float64) gives and that smlp agrees.
 * Plugins are loaded from $SMLP_TEST_BUILDDIR/plugins/.libs.
 */
#ifndef SMLP_EDGEFX_H
#define SMLP_EDGEFX_H

#include <check.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ophost.h"

static struct ophost *host;

static __attribute__((unused)) void
setup_plugin(const char *name)
{
    char err[1024];

    host = ophost_create(name, err, sizeof(err));
    ck_assert_msg(host != NULL, "%s", err);
}

static __attribute__((unused)) void
teardown(void)
{
    ophost_destroy(host);
    host = NULL;
    ck_assert_int_eq(ophost_live_allocs(), 0);
}

/* ---- helpers ---------------------------------------------------------- */

#define MAXT 8 /* tensors of one call */

static __attribute__((unused)) void
free_all(struct smlp_tensor **t, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        ophost_tensor_free(t[i]);
        t[i] = NULL;
    }
}

/* Runs op with n_out fresh outputs in out[], asserting success. */
static __attribute__((unused)) void
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

/*
 * The backward of op at inputs in[] and forward outputs out[], with the
 * gradients gout[] (NULL: none) of the outputs: fills gin[i] with a new
 * NaN-poisoned tensor shaped like in[i] where want[i] is set (NULL
 * elsewhere) and asserts that the backward succeeds.
 */
static __attribute__((unused)) void
backward_ok(const char *op, const struct ophost_attr *attrs,
            struct smlp_tensor *const *in, int n_in,
            struct smlp_tensor *const *out, int n_out,
            struct smlp_tensor *const *gout, const int *want,
            struct smlp_tensor **gin)
{
    const char *msg;
    int rc, i;

    for (i = 0; i < n_in; i++) {
        gin[i] = NULL;
        if (want[i]) {
            gin[i] = ophost_tensor_like(in[i]);
            memset(gin[i]->data, 0xff,
                   (size_t)smlp_tensor_numel(in[i]) * sizeof(float));
        }
    }
    rc = ophost_backward(host, op, attrs, in, n_in, out, n_out, gout, gin,
                         &msg);
    ck_assert_msg(rc == SMLP_OK, "%s backward failed (%s): %s", op,
                  ophost_status_name(rc), msg);
}

/* An f32 tensor of n values, all v. */
static __attribute__((unused)) struct smlp_tensor *
filled(int rank, const int64_t *shape, float v)
{
    struct smlp_tensor *t = ophost_f32(rank, shape, NULL);
    int64_t i, n = smlp_tensor_numel(t);

    for (i = 0; i < n; i++)
        ((float *)t->data)[i] = v;
    return t;
}

/*
 * got[i] against want[i]: a NaN want asks for a NaN, an infinite want
 * for the same infinity, a finite want for a finite value within tol
 * relative (tol·(1 + |want|)).
 */
static __attribute__((unused)) void
expect_f(const float *got, const double *want, int64_t n, double tol,
         const char *what)
{
    int64_t i;

    for (i = 0; i < n; i++) {
        double g = got[i], w = want[i];

        if (isnan(w))
            ck_assert_msg(isnan(g), "%s[%lld]: got %.9g, want NaN", what,
                          (long long)i, g);
        else if (isinf(w))
            ck_assert_msg(g == w, "%s[%lld]: got %.9g, want %g", what,
                          (long long)i, g, w);
        else
            ck_assert_msg(isfinite(g) && fabs(g - w) <= tol * (1.0 + fabs(w)),
                          "%s[%lld]: got %.9g, want %.9g", what,
                          (long long)i, g, w);
    }
}

static __attribute__((unused)) void
expect_t(const struct smlp_tensor *t, const double *want, int64_t n,
         double tol, const char *what)
{
    ck_assert_int_eq(t->dtype, SMLP_DTYPE_F32);
    ck_assert_int_eq(smlp_tensor_numel(t), n);
    expect_f(t->data, want, n, tol, what);
}

static __attribute__((unused)) void
expect_i(const struct smlp_tensor *t, const int32_t *want, int64_t n,
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

static __attribute__((unused)) void
expect_all_finite(const struct smlp_tensor *t, const char *what)
{
    const float *v = t->data;
    int64_t i, n = smlp_tensor_numel(t);

    for (i = 0; i < n; i++)
        ck_assert_msg(isfinite(v[i]), "%s[%lld] = %g is not finite", what,
                      (long long)i, (double)v[i]);
}

static __attribute__((unused)) float
scalar(const struct smlp_tensor *t)
{
    ck_assert_int_eq(t->rank, 0);
    return *(const float *)t->data;
}

#define F1E30 ((double)1e30f) /* 1e30 as the f32 inputs hold it */

/* Runs a suite; the exit status for make check. */
static __attribute__((unused)) int
edges_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif /* SMLP_EDGEFX_H */
