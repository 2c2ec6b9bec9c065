/*
 * moehost.h - what the `moe` plugin's op suites share: the plugin loaded
 * through tests/ophost.c for each test (setup/teardown, no allocation
 * left behind), deterministic inputs, shape and value assertions, and
 * gate_eye: a gate run on logits x through an identity router, its
 * outputs checked against hand-derived values.  Used by check_op_moe.c,
 * check_op_moe_gate.c and check_op_moe_aux.c.
 */
#ifndef SMLP_MOEHOST_H
#define SMLP_MOEHOST_H

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

static inline void
setup(void)
{
    char err[1024];

    host = ophost_create("moe", err, sizeof(err));
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
static inline float *
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
static inline struct smlp_tensor *
eye(int64_t e)
{
    struct smlp_tensor *t = ophost_f32(OPHOST_SHAPE(e, e), NULL);
    float *w = t->data;
    int64_t i;

    for (i = 0; i < e; i++)
        w[i * e + i] = 1.0f;
    return t;
}

static inline void
free_all(struct smlp_tensor **t, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        ophost_tensor_free(t[i]);
        t[i] = NULL;
    }
}

static inline void
assert_shape(const struct smlp_tensor *t, int rank, const int64_t *shape)
{
    int d;

    ck_assert_int_eq(t->rank, rank);
    for (d = 0; d < rank; d++)
        ck_assert_int_eq(t->shape[d], shape[d]);
}

static inline void
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

static inline void
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
static inline void
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
static inline void
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
static inline void
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
static inline double
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

/* Whether a and b hold the same number of the same bytes (f32/i32). */
static inline int
same_data(const struct smlp_tensor *a, const struct smlp_tensor *b)
{
    return smlp_tensor_numel(a) == smlp_tensor_numel(b) &&
           memcmp(a->data, b->data, (size_t)smlp_tensor_numel(a) * 4) == 0;
}

#endif
