/*
 * corehost.h - what the `core` plugin's op suites share: the plugin
 * loaded through tests/ophost.c for each test (setup/teardown, no
 * allocation left behind), deterministic inputs, and assertions on
 * shapes, values, runs, backwards and shape-inference errors.  Used by
 * check_op_core.c and check_op_core_gemm.c.
 */
#ifndef SMLP_COREHOST_H
#define SMLP_COREHOST_H

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ophost.h"

static struct ophost *host;

static inline void
setup(void)
{
    char err[1024];

    host = ophost_create("core", err, sizeof(err));
    ck_assert_msg(host != NULL, "%s", err);
}

static inline void
teardown(void)
{
    ophost_destroy(host);
    host = NULL;
    ck_assert_int_eq(ophost_live_allocs(), 0);
}

/* ---- helpers ---------------------------------------------------------- */

/* Deterministic values in [-1, 1) (a 64-bit LCG). */
static inline void
fill(float *v, int64_t n, uint64_t seed)
{
    int64_t i;

    for (i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        v[i] = (float)((double)(seed >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
}

static inline float *
rnd(int64_t n, uint64_t seed)
{
    float *v = malloc((size_t)n * sizeof(float));

    ck_assert_ptr_nonnull(v);
    fill(v, n, seed);
    return v;
}

static inline void
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

static inline void
assert_shape(const struct smlp_tensor *t, int rank, const int64_t *shape)
{
    int d;

    ck_assert_int_eq(t->rank, rank);
    for (d = 0; d < rank; d++)
        ck_assert_int_eq(t->shape[d], shape[d]);
}

/* Runs op, asserting success; returns output 0 (caller frees). */
static inline struct smlp_tensor *
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
static inline void
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

static inline void
free_all(struct smlp_tensor **t, int n)
{
    int i;

    for (i = 0; i < n; i++)
        ophost_tensor_free(t[i]);
}

/* Runs op's backward with one output y and its gradient dy into gin[]
 * (NULL entries: no gradient wanted), asserting success. */
static inline void
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

#endif
