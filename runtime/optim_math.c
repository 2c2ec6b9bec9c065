/*
 * optim_math.c - the update rules of smlp's optimizers over plain float
 * arrays: SGD (momentum, Nesterov, L2 weight decay), AdamW (decoupled
 * weight decay, bias correction) and global-norm gradient clipping.
 *
 * The formulas and their order of operations are PyTorch's (optim.h
 * spells them out), so that a run can be checked against torch.optim on
 * the same numbers (tests/reference/optim_ref.py).  Element arithmetic is
 * float32, as PyTorch's on float32 tensors; scalars are computed in double
 * and rounded to float once.  The build compiles C in ISO mode, where GCC
 * does not contract a * b + c into a fused multiply-add, so the results
 * are the same whatever the target supports.  Everything here is
 * single-threaded, reentrant and free of side effects beyond the arrays
 * it is given.
 */
#include <math.h>

#include "optim.h"

/* See optim.h. */
void
smlp__sgd_update(float *p, const float *g, float *buf, size_t n, double lr,
                 double wd, double momentum, int nesterov, int first)
{
    const float wdf = (float)wd, mf = (float)momentum, neg_lr = (float)-lr;
    size_t i;
    float d, b;

    for (i = 0; i < n; i++) {
        d = g[i];
        if (wd != 0.0)
            d = d + wdf * p[i];
        if (momentum != 0.0) {
            b = first ? d : buf[i] * mf + d;
            buf[i] = b;
            d = nesterov ? d + mf * b : b;
        }
        p[i] = p[i] + neg_lr * d;
    }
}

/* See optim.h. */
void
smlp__adamw_update(float *p, const float *g, float *m, float *v, size_t n,
                   double lr, double wd, double beta1, double beta2,
                   double eps, int64_t step)
{
    const double bc1 = 1.0 - pow(beta1, (double)step);
    const double bc2 = 1.0 - pow(beta2, (double)step);
    const float decay = (float)(1.0 - lr * wd);
    const float b1 = (float)beta1, c1 = (float)(1.0 - beta1);
    const float b2 = (float)beta2, c2 = (float)(1.0 - beta2);
    const float neg_step = (float)-(lr / bc1);
    const float bc2_sqrt = (float)sqrt(bc2);
    const float epsf = (float)eps;
    size_t i;
    float denom;

    for (i = 0; i < n; i++) {
        if (wd != 0.0)
            p[i] = p[i] * decay;
        m[i] = m[i] * b1 + c1 * g[i];
        v[i] = v[i] * b2 + c2 * g[i] * g[i];
        denom = sqrtf(v[i]) / bc2_sqrt + epsf;
        p[i] = p[i] + neg_step * (m[i] / denom);
    }
}

/* See optim.h. */
double
smlp__sumsq(const float *g, size_t n)
{
    double sum = 0.0;
    size_t i;

    for (i = 0; i < n; i++)
        sum += (double)g[i] * (double)g[i];
    return sum;
}

/* See optim.h. */
double
smlp__clip_coef(double norm, double max_norm)
{
    double coef = max_norm / (norm + SMLP__CLIP_EPS);

    return coef < 1.0 ? coef : 1.0;
}

/* Index of the first non-finite element of g (there is one). */
static int64_t
first_nonfinite(const float *g, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (!isfinite(g[i]))
            return (int64_t)i;
    return -1;
}

/* See optim.h. */
int
smlp__optim_apply(const struct smlp_optim_opts *o,
                  struct smlp__optim_param *ps, int32_t n, int64_t step,
                  double lr, double *norm, int32_t *bad, int64_t *bad_elem)
{
    double sum = 0.0, part, coef;
    int32_t j;
    size_t i;

    /*
     * Squares of finite floats and their sums cannot overflow a double
     * (FLT_MAX^2 * 2^63 < DBL_MAX): a non-finite partial sum means a
     * non-finite gradient element.
     */
    for (j = 0; j < n; j++) {
        part = smlp__sumsq(ps[j].g, ps[j].n);
        if (!isfinite(part)) {
            if (norm != NULL)
                *norm = part;
            if (bad != NULL)
                *bad = j;
            if (bad_elem != NULL)
                *bad_elem = first_nonfinite(ps[j].g, ps[j].n);
            return SMLP_EINVAL;
        }
        sum += part;
    }
    if (norm != NULL)
        *norm = sqrt(sum);
    if (o->clip_norm > 0.0) {
        coef = smlp__clip_coef(sqrt(sum), o->clip_norm);
        if (coef < 1.0)
            for (j = 0; j < n; j++)
                for (i = 0; i < ps[j].n; i++)
                    ps[j].g[i] = ps[j].g[i] * (float)coef;
    }
    for (j = 0; j < n; j++) {
        double wd = ps[j].decay ? o->weight_decay : 0.0;

        if (o->kind == SMLP_OPTIM_ADAMW)
            smlp__adamw_update(ps[j].p, ps[j].g, ps[j].slot[0], ps[j].slot[1],
                               ps[j].n, lr, wd, o->beta1, o->beta2, o->eps,
                               step);
        else
            smlp__sgd_update(ps[j].p, ps[j].g, ps[j].slot[0], ps[j].n, lr,
                             wd, o->momentum, o->nesterov, step == 1);
    }
    return SMLP_OK;
}

/* See optim.h. */
int
smlp__optim_n_slots(const struct smlp_optim_opts *o)
{
    if (o->kind == SMLP_OPTIM_ADAMW)
        return 2;
    return o->momentum != 0.0 ? 1 : 0;
}

/* See optim.h. */
const char *
smlp__optim_slot_name(const struct smlp_optim_opts *o, int k)
{
    if (o->kind == SMLP_OPTIM_ADAMW)
        return k == 0 ? "exp_avg" : k == 1 ? "exp_avg_sq" : NULL;
    return k == 0 && o->momentum != 0.0 ? "momentum_buffer" : NULL;
}

/* See optim.h. */
const char *
smlp__optim_kind_name(int kind)
{
    switch (kind) {
    case SMLP_OPTIM_SGD:
        return "sgd";
    case SMLP_OPTIM_ADAMW:
        return "adamw";
    default:
        return NULL;
    }
}
