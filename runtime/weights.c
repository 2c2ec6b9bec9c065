/*
 * weights.c - moving session tensors to and from safetensors files:
 * parameters and state (checkpoints), inputs and outputs.  A file tensor
 * with a wrong dtype or shape, or a missing one, is an error naming the
 * file, the tensor and both shapes; with opts.check_finite, so is a NaN
 * or an infinity in a parameter or state tensor.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "safetensors.h"

static int
copy_in(smlp_session_t *s, const struct smlp__st_file *f, const char *path,
        int32_t i, int is_input)
{
    const char *name = s->graph->ir->tensors[i].name;
    struct smlp__tensor_rt *t = &s->tensors[i];
    const struct smlp__st_entry *e = smlp__st_find(f, name);
    char b1[200], b2[200];
    int same, d;

    if (e == NULL)
        return smlp__session_fail(s, SMLP_ENOENT,
                                  "%s: has no tensor '%s' (graph %s needs it)",
                                  path, name, s->graph->source);
    if (e->dtype != t->t.dtype)
        return smlp__session_fail(s, SMLP_EBADFILE,
                                  "%s: tensor '%s' has dtype %s, the graph "
                                  "declares %s",
                                  path, name, e->dtype_name,
                                  smlp__dtype_name(t->t.dtype));
    same = e->rank == t->t.rank;
    for (d = 0; same && d < e->rank; d++)
        same = e->shape[d] == t->t.shape[d];
    if (!same)
        return smlp__session_fail(
            s, SMLP_ESHAPE, "%s: tensor '%s' has shape %s, %s %s%s", path,
            name, smlp__shape_str(e->shape, e->rank, b1, sizeof(b1)),
            is_input ? "the session expects" : "the graph declares",
            smlp__shape_str(t->t.shape, t->t.rank, b2, sizeof(b2)),
            is_input && e->rank > 0 && e->rank == t->t.rank
                ? " (is --batch right?)"
                : "");
    if (s->opts.check_finite && !is_input && t->t.dtype == SMLP_DTYPE_F32) {
        int64_t k, n = (int64_t)(e->nbytes / sizeof(float));
        float v;

        /* memcpy: data in the mapping need not be aligned. */
        for (k = 0; k < n; k++) {
            memcpy(&v, (const char *)e->data + k * sizeof(float), sizeof(v));
            if (!isfinite(v))
                return smlp__session_fail(
                    s, SMLP_EBADFILE,
                    "%s: tensor '%s': element %lld is %s (check_finite "
                    "refuses NaN and infinity in weights)",
                    path, name, (long long)k, isnan(v) ? "NaN" : "infinite");
        }
    }
    memcpy(t->t.data, e->data, e->nbytes);
    t->dirty = 1; /* a device copy, if any, is refreshed at the next run */
    return SMLP_OK;
}

static int
load(smlp_session_t *s, const char *path, int kinds_mask)
{
    struct smlp__st_file *f = NULL;
    char err[SMLP__ERRLEN];
    int32_t i;
    int rc;

    if (s->arena == NULL)
        return smlp__session_fail(s, SMLP_EINVAL,
                                  "the session was planned only");
    rc = smlp__st_open(path, &f, err, sizeof(err));
    if (rc != SMLP_OK)
        return smlp__session_fail(s, rc, "%s", err);
    for (i = 0; i < s->n_tensors && rc == SMLP_OK; i++)
        if (kinds_mask & (1 << s->tensors[i].kind))
            rc = copy_in(s, f, path, i,
                         s->tensors[i].kind == SMLP__TENSOR_INPUT);
    smlp__st_close(f);
    return rc;
}

int
smlp__weights_load(smlp_session_t *s, const char *path, int kinds_mask)
{
    return load(s, path, kinds_mask);
}

int
smlp__weights_save(smlp_session_t *s, const char *path, int kinds_mask)
{
    struct smlp__st_entry *e;
    const char *keys[2] = {"graph", "format"};
    const char *vals[2];
    char err[SMLP__ERRLEN];
    int32_t i, n = 0;
    int rc;

    if (s->arena == NULL)
        return smlp__session_fail(s, SMLP_EINVAL,
                                  "the session was planned only");
    e = smlp__calloc((size_t)s->n_tensors, sizeof(*e));
    if (e == NULL)
        return smlp__session_fail(s, SMLP_ENOMEM, "out of memory");
    for (i = 0; i < s->n_tensors; i++) {
        struct smlp__tensor_rt *t = &s->tensors[i];
        if (!(kinds_mask & (1 << t->kind)))
            continue;
        e[n].name = s->graph->ir->tensors[i].name;
        e[n].dtype = t->t.dtype;
        snprintf(e[n].dtype_name, sizeof(e[n].dtype_name), "%s",
                 t->t.dtype == SMLP_DTYPE_F32 ? "F32" : "I32");
        e[n].rank = t->t.rank;
        memcpy(e[n].shape, t->t.shape, sizeof(e[n].shape));
        e[n].data = t->t.data;
        e[n].nbytes = (size_t)smlp_tensor_numel(&t->t) *
                      smlp__dtype_size(t->t.dtype);
        n++;
    }
    vals[0] = s->graph->ir->name;
    vals[1] = "pt";
    rc = smlp__st_write(path, e, n, keys, vals, 2, err, sizeof(err));
    smlp__free(e);
    if (rc != SMLP_OK)
        return smlp__session_fail(s, rc, "%s", err);
    return SMLP_OK;
}

SMLP_API int
smlp_session_load_weights(smlp_session_t *s, const char *path)
{
    return load(s, path,
                (1 << SMLP__TENSOR_PARAMETER) | (1 << SMLP__TENSOR_STATE));
}

SMLP_API int
smlp_session_read_inputs(smlp_session_t *s, const char *path)
{
    return load(s, path, 1 << SMLP__TENSOR_INPUT);
}

SMLP_API int
smlp_session_save_weights(smlp_session_t *s, const char *path)
{
    return smlp__weights_save(
        s, path, (1 << SMLP__TENSOR_PARAMETER) | (1 << SMLP__TENSOR_STATE));
}

SMLP_API int
smlp_session_write_outputs(smlp_session_t *s, const char *path)
{
    return smlp__weights_save(s, path, 1 << SMLP__TENSOR_OUTPUT);
}
