/*
 * gradcorefx.h - what the suites of the `core` plugin's backwards share
 * (check_grad_core.c, check_grad_core_contract.c): the op host on the
 * core plugin (a checked fixture that also finds no leaked tensor) and
 * random f32 values and i32 labels to feed it.
 */
#ifndef SMLP_GRADCOREFX_H
#define SMLP_GRADCOREFX_H

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ophost.h"
#include "gradcheck.h"

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

/* ---- random tensors ----------------------------------------------- */

/* Values uniform in [-scale, scale) (gradcheck's generator). */
static inline struct smlp_tensor *
rnd_f32(int rank, const int64_t *shape, uint64_t seed, double scale)
{
    struct smlp_tensor *t = ophost_f32(rank, shape, NULL);
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 7;
    float *v;
    int64_t i, n;

    ck_assert_ptr_nonnull(t);
    v = t->data;
    n = gc_numel(t);
    for (i = 0; i < n; i++)
        v[i] = (float)(scale * gc_uniform(&s));
    return t;
}

/* Labels in [0, k), spread over the classes. */
static inline struct smlp_tensor *
labels_i32(int64_t n, int64_t k, uint64_t seed)
{
    struct smlp_tensor *t = ophost_i32(OPHOST_SHAPE(n), NULL);
    int32_t *v;
    int64_t i;

    ck_assert_ptr_nonnull(t);
    v = t->data;
    for (i = 0; i < n; i++)
        v[i] = (int32_t)((i * 7 + (int64_t)seed) % k);
    return t;
}

static inline void
free_all(struct smlp_tensor **t, int n)
{
    int i;

    for (i = 0; i < n; i++)
        ophost_tensor_free(t[i]);
}

#endif
