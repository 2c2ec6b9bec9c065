/*
 * gradcheck.h - checks an op's backward against central finite
 * differences, through ophost (tests/ophost.h).  Header-only: a test
 * includes it after ophost.h.
 *
 * The scalar checked is L(x) = sum_j <G_j, out_j(x)>, with G_j fixed
 * random f32 weights (the grad_outputs handed to the backward; NULL for
 * integer outputs and for outputs the spec leaves out).  For every
 * element x_i of every checked input:
 *
 *   numeric_i  = (L(x + h e_i) - L(x - h e_i)) / (2h),
 *   h          = eps * max(1, |x_i|),
 *
 * with L accumulated in double from the f32 outputs.  The analytic
 * gradient is what backward() wrote into grad_inputs.  The check passes
 * when, per input,
 *
 *   max_i |analytic_i - numeric_i| <= tol * max(max_i |numeric_i|, floor)
 *
 * (a normwise relative error; `floor` keeps near-zero gradients from
 * demanding an absolute accuracy f32 cannot give).  The f32 forward
 * limits what FD can see: with eps = 1e-2 and O(1) values, tol = 1e-2 is
 * typical.  Ops that are not smooth everywhere (relu, routing) must be
 * checked at inputs whose margins exceed h.
 */
#ifndef SMLP_TEST_GRADCHECK_H
#define SMLP_TEST_GRADCHECK_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ophost.h"

struct gc_spec {
    const char *op;
    const struct ophost_attr *attrs; /* NULL: none */
    struct smlp_tensor **inputs;     /* NULL entries: absent inputs */
    int n_in;
    int n_out;
    /* Per input: nonzero = check its gradient (must be f32).  Inputs not
     * checked get grad_inputs NULL. */
    const int *check;
    /* Per output (NULL: all f32 outputs): nonzero = it enters L. */
    const int *use_output;
    double eps;   /* default 1e-2 */
    double tol;   /* default 1e-2 */
    double floor; /* default 1e-3 */
    uint64_t seed;
};

/* Worst error seen per input, for reports. */
struct gc_result {
    double err[16];  /* normwise relative error per input (-1: unchecked) */
    double gmax[16]; /* max |numeric| per input */
};

static inline int64_t
gc_numel(const struct smlp_tensor *t)
{
    int64_t n = 1;
    int i;

    for (i = 0; i < t->rank; i++)
        n *= t->shape[i];
    return n;
}

static inline double
gc_uniform(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

/* L(x) for the current input values; NAN when the forward fails. */
static inline double
gc_loss(struct ophost *h, const struct gc_spec *s,
        struct smlp_tensor *const *g, char *msg, size_t msglen)
{
    struct smlp_tensor *out[16] = {0};
    const char *em = NULL;
    double L = 0.0;
    int j;

    if (ophost_run(h, s->op, s->attrs, s->inputs, s->n_in, out, s->n_out,
                   &em) != SMLP_OK) {
        snprintf(msg, msglen, "%s: forward failed: %s", s->op,
                 em ? em : "?");
        L = NAN;
    }
    for (j = 0; j < s->n_out; j++) {
        if (!isnan(L) && g[j] != NULL) {
            const float *o = out[j]->data, *w = g[j]->data;
            int64_t i, n = gc_numel(out[j]);

            for (i = 0; i < n; i++)
                L += (double)w[i] * (double)o[i];
        }
        ophost_tensor_free(out[j]);
    }
    return L;
}

/*
 * Runs the check.  Returns 0 when every checked input passes; else -1
 * with a message naming the op, the input, the worst element and both
 * values.  `res` (may be NULL) receives the errors.
 */
static inline int
gc_check(struct ophost *h, const struct gc_spec *s, struct gc_result *res,
         char *msg, size_t msglen)
{
    struct smlp_tensor *out[16] = {0}, *g[16] = {0}, *gi[16] = {0};
    double eps = s->eps > 0 ? s->eps : 1e-2;
    double tol = s->tol > 0 ? s->tol : 1e-2;
    double fl = s->floor > 0 ? s->floor : 1e-3;
    uint64_t rng = s->seed * 0x2545f4914f6cdd1dull + 1;
    const char *em = NULL;
    int rc = -1, i, j;

    msg[0] = '\0';
    if (s->n_in > 16 || s->n_out > 16) {
        snprintf(msg, msglen, "gc_check: too many inputs/outputs");
        return -1;
    }
    if (res != NULL)
        for (i = 0; i < 16; i++)
            res->err[i] = res->gmax[i] = -1.0;
    if (ophost_run(h, s->op, s->attrs, s->inputs, s->n_in, out, s->n_out,
                   &em) != SMLP_OK) {
        snprintf(msg, msglen, "%s: forward failed: %s", s->op,
                 em ? em : "?");
        goto done;
    }
    for (j = 0; j < s->n_out; j++) {
        int64_t k, n;

        if (out[j]->dtype != SMLP_DTYPE_F32 ||
            (s->use_output != NULL && !s->use_output[j]))
            continue;
        g[j] = ophost_tensor_like(out[j]);
        n = gc_numel(out[j]);
        for (k = 0; k < n; k++)
            ((float *)g[j]->data)[k] = (float)gc_uniform(&rng);
    }
    for (i = 0; i < s->n_in; i++)
        if (s->check[i] && s->inputs[i] != NULL) {
            gi[i] = ophost_tensor_like(s->inputs[i]);
            /* NaN-poisoned: a backward must overwrite, not add. */
            if (gc_numel(gi[i]) > 0)
                memset(gi[i]->data, 0xff,
                       (size_t)gc_numel(gi[i]) * sizeof(float));
        }
    if (ophost_backward(h, s->op, s->attrs, s->inputs, s->n_in, out,
                        s->n_out, g, gi, &em) != SMLP_OK) {
        snprintf(msg, msglen, "%s: backward failed: %s", s->op,
                 em ? em : "?");
        goto done;
    }
    rc = 0;
    for (i = 0; i < s->n_in && rc == 0; i++) {
        float *x;
        const float *a;
        int64_t k, n, worst = -1;
        double gmax = 0.0, emax = 0.0, *num;

        if (gi[i] == NULL)
            continue;
        x = s->inputs[i]->data;
        a = gi[i]->data;
        n = gc_numel(s->inputs[i]);
        num = malloc((size_t)(n > 0 ? n : 1) * sizeof(double));
        if (num == NULL) {
            snprintf(msg, msglen, "gc_check: out of memory");
            rc = -1;
            break;
        }
        for (k = 0; k < n; k++) {
            float x0 = x[k];
            double hh = eps * (fabs(x0) > 1.0 ? fabs(x0) : 1.0);
            double lp, lm;
            float xp = (float)(x0 + hh), xm = (float)(x0 - hh);

            x[k] = xp;
            lp = gc_loss(h, s, g, msg, msglen);
            x[k] = xm;
            lm = gc_loss(h, s, g, msg, msglen);
            x[k] = x0;
            if (isnan(lp) || isnan(lm)) {
                rc = -1;
                break;
            }
            /* The step actually taken in f32. */
            num[k] = (lp - lm) / ((double)xp - (double)xm);
            if (fabs(num[k]) > gmax)
                gmax = fabs(num[k]);
        }
        for (k = 0; rc == 0 && k < n; k++) {
            double e = fabs((double)a[k] - num[k]);

            if (isnan(e))
                e = INFINITY; /* a NaN gradient fails */
            if (e > emax || worst < 0) {
                emax = e;
                worst = k;
            }
        }
        if (rc == 0) {
            double rel = emax / (gmax > fl ? gmax : fl);

            if (res != NULL) {
                res->err[i] = rel;
                res->gmax[i] = gmax;
            }
            if (rel > tol || isnan(rel)) {
                snprintf(msg, msglen,
                         "%s: gradient of input %d: element %lld: backward "
                         "%.7g, finite differences %.7g (normwise error "
                         "%.3g > tol %.3g, max |grad| %.3g)",
                         s->op, i, (long long)worst, (double)a[worst],
                         num[worst], rel, tol, gmax);
                rc = -1;
            }
        }
        free(num);
    }
done:
    for (j = 0; j < 16; j++) {
        ophost_tensor_free(out[j]);
        ophost_tensor_free(g[j]);
        ophost_tensor_free(gi[j]);
    }
    return rc;
}

#endif /* SMLP_TEST_GRADCHECK_H */
