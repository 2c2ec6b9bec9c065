/*
 * optim.c - optimizers over a session's trainable parameters (SGD with
 * momentum, AdamW) and the warm-up + cosine schedule.
 *
 * An optimizer keeps, for each trainable parameter in graph order, the
 * parameter's place in the session and its state slots (optim.h); each
 * smlp_optim_step reads the gradients the last smlp_session_backward left
 * (smlp_session_grad), and hands plain arrays to the update rules of
 * optim_math.c.  It runs on the caller's thread, like everything that
 * changes a session, and is deterministic: the global norm is summed in
 * double in a fixed order and every update is element-wise.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "optim.h"

SMLP_API void
smlp_optim_opts_init(struct smlp_optim_opts *o)
{
    if (o == NULL)
        return;
    memset(o, 0, sizeof(*o));
    o->kind = SMLP_OPTIM_ADAMW;
    o->momentum = 0.9;
    o->nesterov = 0;
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->eps = 1e-8;
    o->weight_decay = 0.05; /* AdamW's usual; SGD callers set theirs */
    o->clip_norm = 0.0;
}

/* Checks the options and copies them into *out, with the fields the kind
 * does not read zeroed.  Returns SMLP_OK or SMLP_EINVAL with a message in
 * err. */
static int
check_opts(const struct smlp_optim_opts *o, struct smlp_optim_opts *out,
           struct smlp_error *err)
{
    *out = *o;
    if (smlp__optim_kind_name(o->kind) == NULL)
        return smlp__seterr(err, SMLP_EINVAL,
                            "optimizer kind %d is unknown (0 = sgd, "
                            "1 = adamw)",
                            o->kind);
    /* Each kind checks the options it reads. */
    if (o->kind == SMLP_OPTIM_SGD && !(o->momentum >= 0.0 && o->momentum < 1.0))
        return smlp__seterr(err, SMLP_EINVAL,
                            "momentum %g is outside [0, 1)", o->momentum);
    if (o->kind == SMLP_OPTIM_SGD && o->nesterov && o->momentum == 0.0)
        return smlp__seterr(err, SMLP_EINVAL,
                            "Nesterov momentum needs a momentum > 0");
    if (o->kind == SMLP_OPTIM_ADAMW &&
        (!(o->beta1 >= 0.0 && o->beta1 < 1.0) ||
         !(o->beta2 >= 0.0 && o->beta2 < 1.0)))
        return smlp__seterr(err, SMLP_EINVAL,
                            "AdamW betas (%g, %g) are outside [0, 1)",
                            o->beta1, o->beta2);
    if (o->kind == SMLP_OPTIM_ADAMW && !(o->eps >= 0.0 && isfinite(o->eps)))
        return smlp__seterr(err, SMLP_EINVAL,
                            "eps %g is not a finite number >= 0", o->eps);
    if (!(o->weight_decay >= 0.0 && isfinite(o->weight_decay)))
        return smlp__seterr(err, SMLP_EINVAL,
                            "weight decay %g is not a finite number >= 0",
                            o->weight_decay);
    if (!(o->clip_norm >= 0.0 && isfinite(o->clip_norm)))
        return smlp__seterr(err, SMLP_EINVAL,
                            "clip norm %g is not a finite number >= 0 (0 = "
                            "no clipping)",
                            o->clip_norm);
    if (o->kind == SMLP_OPTIM_ADAMW) {
        out->momentum = 0.0;
        out->nesterov = 0;
    } else {
        out->beta1 = out->beta2 = out->eps = 0.0;
    }
    return SMLP_OK;
}

/*
 * The trainable parameters of s (f32, not frozen), in graph order, as the
 * backward engine lists them (autograd.c): opt->params[k] is the
 * engine's k-th, whose gradient is smlp__grad_data(s, k).
 */
static int
find_params(smlp_optim_t *opt, struct smlp_error *err)
{
    smlp_session_t *s = opt->s;
    int32_t k, n = smlp__grad_count(s);

    opt->params = smlp__calloc((size_t)n, sizeof(*opt->params));
    if (opt->params == NULL)
        return smlp__seterr(err, SMLP_ENOMEM, "out of memory");
    for (k = 0; k < n; k++) {
        int32_t id = smlp__grad_tensor(s, k);
        const struct smlp_tensor *t = &s->tensors[id].t;

        SMLP_ASSERT(t->dtype == SMLP_DTYPE_F32 &&
                    s->tensors[id].kind == SMLP__TENSOR_PARAMETER);
        opt->params[k].tensor = id;
        opt->params[k].name = s->graph->ir->tensors[id].name;
        opt->params[k].n = (size_t)smlp_tensor_numel(t);
        /* Biases, norm gains and shifts (and scalars) are not decayed. */
        opt->params[k].decay = t->rank >= 2;
    }
    opt->n = n;
    return SMLP_OK;
}

/* Allocates every slot of every parameter in one zeroed block, each slot
 * 64-byte aligned. */
static int
alloc_state(smlp_optim_t *opt, struct smlp_error *err)
{
    size_t total = 0, off = 0, bytes;
    int32_t j;
    int k;

    for (j = 0; j < opt->n; j++) {
        bytes = (opt->params[j].n * sizeof(float) + SMLP__ALIGN - 1) &
                ~(size_t)(SMLP__ALIGN - 1);
        total += bytes * (size_t)opt->n_slots;
    }
    opt->state = aligned_alloc(SMLP__ALIGN, total + SMLP__ALIGN);
    opt->work = smlp__calloc((size_t)opt->n, sizeof(*opt->work));
    if (opt->state == NULL || opt->work == NULL)
        return smlp__seterr(err, SMLP_ENOMEM,
                            "%s: cannot allocate %zu bytes of optimizer "
                            "state",
                            opt->s->graph->source, total);
    memset(opt->state, 0, total);
    for (j = 0; j < opt->n; j++) {
        bytes = (opt->params[j].n * sizeof(float) + SMLP__ALIGN - 1) &
                ~(size_t)(SMLP__ALIGN - 1);
        for (k = 0; k < opt->n_slots; k++) {
            opt->params[j].slot[k] = (float *)((char *)opt->state + off);
            off += bytes;
        }
    }
    return SMLP_OK;
}

SMLP_API smlp_optim_t *
smlp_optim_create(smlp_session_t *s, const struct smlp_optim_opts *o,
                  struct smlp_error *err)
{
    struct smlp_optim_opts defaults;
    smlp_optim_t *opt;

    if (o == NULL) {
        smlp_optim_opts_init(&defaults);
        o = &defaults;
    }
    if (s == NULL) {
        smlp__seterr(err, SMLP_EINVAL, "no session");
        return NULL;
    }
    if (s->arena == NULL) {
        smlp__seterr(err, SMLP_EINVAL,
                     "%s: the session was planned only and cannot train",
                     s->graph->source);
        return NULL;
    }
    if (!s->opts.training || s->opts.loss == NULL) {
        smlp__seterr(err, SMLP_EINVAL,
                     "%s: an optimizer needs a session with training = 1 "
                     "and a loss (smlp_session_opts.loss)",
                     s->graph->source);
        return NULL;
    }
    opt = smlp__calloc(1, sizeof(*opt));
    if (opt == NULL) {
        smlp__seterr(err, SMLP_ENOMEM, "out of memory");
        return NULL;
    }
    opt->s = s;
    smlp__session_hold(s); /* released by smlp_optim_destroy */
    if (check_opts(o, &opt->o, err) != SMLP_OK)
        goto fail;
    opt->n_slots = smlp__optim_n_slots(&opt->o);
    if (find_params(opt, err) != SMLP_OK || alloc_state(opt, err) != SMLP_OK)
        goto fail;
    return opt;
fail:
    smlp_optim_destroy(opt);
    return NULL;
}

SMLP_API void
smlp_optim_destroy(smlp_optim_t *opt)
{
    if (opt == NULL)
        return;
    free(opt->state);
    smlp__free(opt->work);
    smlp__free(opt->params);
    smlp__session_release(opt->s); /* last: may free the session */
    smlp__free(opt);
}

/*
 * Reads the gradients where the backward engine keeps them (the bytes
 * smlp_session_grad returns) and changes nothing unless they come from a
 * backward this optimizer has not stepped on yet and every one is
 * finite: a step on stale gradients would apply them twice (and weight
 * decay, and Adam's moments, with no new information).  Messages go to
 * the session (smlp_session_errmsg).
 */
SMLP_API int
smlp_optim_step(smlp_optim_t *opt, double lr, double *grad_norm)
{
    smlp_session_t *s;
    double norm = 0.0;
    int64_t elem = -1;
    int32_t j, bad = -1;
    int rc;

    if (opt == NULL)
        return SMLP_EINVAL;
    s = opt->s;
    if (!(lr >= 0.0 && isfinite(lr)))
        return smlp__session_fail(s, SMLP_EINVAL,
                                  "%s: learning rate %g is not a finite "
                                  "number >= 0",
                                  s->graph->source, lr);
    if (s->ag->grad_gen == 0 || s->ag->grad_gen == opt->grad_gen)
        return smlp__session_fail(
            s, SMLP_EINVAL,
            "%s: %s: each smlp_optim_step needs a successful "
            "smlp_session_backward of its own before it; nothing was "
            "updated",
            s->graph->source,
            s->ag->n_backward == 0 ? "no backward has run yet"
            : s->ag->grad_gen == 0 ? "no backward since the last failed "
                                     "one or checkpoint load"
                                   : "no backward since the last optimizer "
                                     "step");
    for (j = 0; j < opt->n; j++) {
        const struct smlp__optim_tensor *pt = &opt->params[j];
        struct smlp__optim_param *w = &opt->work[j];

        w->p = s->tensors[pt->tensor].t.data;
        w->g = smlp__grad_data(s, j);
        memcpy(w->slot, pt->slot, sizeof(w->slot));
        w->n = pt->n;
        w->decay = pt->decay;
    }
    rc = smlp__optim_apply(&opt->o, opt->work, opt->n, opt->steps + 1, lr,
                           &norm, &bad, &elem);
    if (grad_norm != NULL)
        *grad_norm = norm;
    if (rc != SMLP_OK)
        return smlp__session_fail(
            s, rc,
            "%s: the gradient of parameter '%s' is not finite (element "
            "%lld is %s): no parameter was updated (optimizer step %lld)",
            s->graph->source, opt->params[bad].name, (long long)elem,
            isnan(opt->work[bad].g[elem]) ? "NaN" : "infinite",
            (long long)opt->steps + 1);
    /* The device copies, if any, are refreshed at the next run. */
    for (j = 0; j < opt->n; j++)
        s->tensors[opt->params[j].tensor].dirty = 1;
    opt->steps++;
    opt->grad_gen = s->ag->grad_gen;
    return SMLP_OK;
}

SMLP_API int64_t
smlp_optim_steps(const smlp_optim_t *opt)
{
    return opt != NULL ? opt->steps : 0;
}

/*
 * The MAE / MoCo v3 schedule (also timm's CosineLRScheduler with
 * warmup_prefix and warmup_lr_init 0, and torch's CosineAnnealingLR after
 * the warm-up):
 *
 *   step < warmup:          base * step / warmup
 *   warmup <= step < total: min_lr + (base - min_lr) / 2 * (1 + cos(pi t)),
 *                           t = (step - warmup) / (total - warmup)
 *   step >= total:          min_lr
 *
 * Negative step or warmup count as 0.
 */
SMLP_API double
smlp_lr_cosine(double base, double min_lr, int64_t step, int64_t warmup,
               int64_t total)
{
    double t;

    if (step < 0)
        step = 0;
    if (warmup < 0)
        warmup = 0;
    if (step < warmup)
        return base * (double)step / (double)warmup;
    if (step >= total)
        return min_lr;
    t = (double)(step - warmup) / (double)(total - warmup);
    return min_lr + 0.5 * (base - min_lr) * (1.0 + cos(M_PI * t));
}
