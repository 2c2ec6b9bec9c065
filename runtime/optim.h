/*
 * optim.h - the optimizers' update rules over plain float arrays
 * (optim_math.c) and the optimizer object shared by optim.c and
 * checkpoint.c (internal, not installed).
 *
 * optim_math.c depends on nothing but libm, so tests/check_optim.c
 * compiles it in and checks the arithmetic against PyTorch's numbers
 * without a session; libsmlp compiles the same file.  The formulas are
 * PyTorch's (torch 1.13, torch/optim/adamw.py and sgd.py, single-tensor
 * path; torch/nn/utils/clip_grad.py), with float32 state and float32
 * element arithmetic; scalars (bias corrections, step sizes, the clip
 * coefficient) are computed in double and rounded to float once.
 */
#ifndef SMLP_OPTIM_H
#define SMLP_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "smlp.h"

/* The eps PyTorch's clip_grad_norm_ adds to the norm: coef = max / (norm
 * + SMLP__CLIP_EPS). */
#define SMLP__CLIP_EPS 1e-6

/* Optimizer state tensors ("slots") per parameter: SGD with momentum has
 * one (momentum_buffer), AdamW two (exp_avg, exp_avg_sq); the names are
 * PyTorch's state keys and appear in checkpoints as optim.<slot>.<param>. */
#define SMLP__OPTIM_MAX_SLOTS 2

/* One parameter as the update rules see it. */
struct smlp__optim_param {
    float *p;            /* the parameter, updated in place */
    float *g;            /* its gradient, scaled in place when clipping */
    float *slot[SMLP__OPTIM_MAX_SLOTS]; /* state (see above) */
    size_t n;            /* elements */
    int decay;           /* 1: weight decay applies (rank >= 2) */
};

/*
 * SGD (torch.optim.SGD, dampening 0) on n elements, for `first` = 1 on
 * the first update (the momentum buffer then starts as d, as PyTorch's
 * clone):
 *
 *   d = g + wd * p                       (L2; wd = 0 when not decayed)
 *   buf = first ? d : momentum * buf + d (when momentum != 0)
 *   d = nesterov ? d + momentum * buf : buf
 *   p = p - lr * d
 *
 * buf may be NULL when momentum is 0.
 */
void smlp__sgd_update(float *p, const float *g, float *buf, size_t n,
                      double lr, double wd, double momentum, int nesterov,
                      int first);

/*
 * AdamW (torch.optim.AdamW, amsgrad off) on n elements, for update number
 * `step` (1 on the first update):
 *
 *   p = p * (1 - lr * wd)                (decoupled; skipped when wd = 0)
 *   m = beta1 * m + (1 - beta1) * g
 *   v = beta2 * v + (1 - beta2) * g * g
 *   p = p - lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step)
 *                                        + eps)
 */
void smlp__adamw_update(float *p, const float *g, float *m, float *v,
                        size_t n, double lr, double wd, double beta1,
                        double beta2, double eps, int64_t step);

/* Sum of g[i]^2 in double, in index order (deterministic). */
double smlp__sumsq(const float *g, size_t n);

/* The clip coefficient of clip_grad_norm_, max_norm / (norm + 1e-6),
 * capped at 1 (1 means: leave the gradients as they are). */
double smlp__clip_coef(double norm, double max_norm);

/*
 * One optimizer update of n parameters: the global gradient norm (square
 * root of the sum, in parameter order, of each gradient's smlp__sumsq),
 * then, when it is finite, clipping (o->clip_norm > 0: every gradient
 * times smlp__clip_coef when that is below 1, in place) and the update
 * rule of o->kind with learning rate lr for update number `step` (1 on
 * the first).  o->weight_decay applies to parameters with `decay` set.
 * *norm (may be NULL) gets the norm before clipping.  Returns SMLP_OK, or
 * SMLP_EINVAL when a gradient holds a NaN or an infinity: then nothing
 * was changed, and *bad / *bad_elem (may be NULL) name the first such
 * parameter and element.
 */
int smlp__optim_apply(const struct smlp_optim_opts *o,
                      struct smlp__optim_param *ps, int32_t n, int64_t step,
                      double lr, double *norm, int32_t *bad,
                      int64_t *bad_elem);

/* Slots of an optimizer kind with these options (0, 1 or 2) and the name
 * of slot k. */
int smlp__optim_n_slots(const struct smlp_optim_opts *o);
const char *smlp__optim_slot_name(const struct smlp_optim_opts *o, int k);
/* "sgd", "adamw" (as in checkpoints' smlp.optim.kind), or NULL. */
const char *smlp__optim_kind_name(int kind);

/* ---- the optimizer object (optim.c; read by checkpoint.c) ---- */

struct smlp__optim_tensor {
    int32_t tensor;      /* index in the session's tensors */
    const char *name;    /* the graph's name (owned by the graph) */
    size_t n;
    int decay;
    float *slot[SMLP__OPTIM_MAX_SLOTS];
};

struct smlp_optim_s {
    smlp_session_t *s;
    struct smlp_optim_opts o; /* as checked; unread fields 0 */
    int n_slots;
    int64_t steps;            /* updates done */
    uint64_t grad_gen;        /* the gradients' generation of the last
                                 update (smlp__autograd.grad_gen): one
                                 update per backward */
    int32_t n;                /* trainable parameters, in graph order */
    struct smlp__optim_tensor *params;
    struct smlp__optim_param *work; /* n entries, filled at each step */
    void *state;              /* every slot, one allocation */
};

#endif /* SMLP_OPTIM_H */
