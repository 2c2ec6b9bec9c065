/*
 * weights.c - moving session tensors to and from safetensors files:
 * parameters and state (checkpoints), inputs and outputs.  A file tensor
 * with a wrong dtype or shape, or a missing one, is an error naming the
 * file, the tensor and both shapes; with opts.check_finite, so is a NaN
 * or an infinity in a parameter or state tensor.  A load checks every
 * tensor before it copies any (as checkpoint.c does): a failed load
 * leaves the session as it was.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "safetensors.h"

/* Checks the file's tensor for session tensor i; *out gets its entry. */
static int
check_in(smlp_session_t *s, const struct smlp__st_file *f, const char *path,
         int32_t i, int is_input, const struct smlp__st_entry **out)
{
    const char *name = s->graph->ir->tensors[i].name;
    const struct smlp__tensor_rt *t = &s->tensors[i];
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
                ? " (is the session's batch size right? smlp-run --batch)"
                : "");
    if (s->opts.check_finite && !is_input && t->t.dtype == SMLP_DTYPE_F32) {
        int64_t k, n = (int64_t)(e->nbytes / sizeof(float));
        float v;

        /* memcpy: data in the file's bytes need not be aligned. */
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
    *out = e;
    return SMLP_OK;
}

/*
 * Loads the session tensors of the kinds in kinds_mask from `path` in two
 * passes: src[i] gets the file entry for tensor i (all checked), then
 * everything is copied.  `who` names the API call in the message for a
 * NULL path.
 */
static int
load(smlp_session_t *s, const char *path, int kinds_mask, const char *who)
{
    const struct smlp__st_entry **src;
    struct smlp__st_file *f = NULL;
    char err[SMLP__ERRLEN];
    int32_t i;
    int rc = SMLP_OK;

    if (s == NULL)
        return SMLP_EINVAL;
    if (path == NULL)
        return smlp__session_fail(s, SMLP_EINVAL, "%s: no path (NULL)",
                                  who);
    if (s->arena == NULL)
        return smlp__session_fail(s, SMLP_EINVAL,
                                  "the session was planned only");
    src = smlp__calloc((size_t)s->n_tensors + 1, sizeof(*src));
    if (src == NULL)
        return smlp__session_fail(s, SMLP_ENOMEM, "%s: out of memory",
                                  path);
    rc = smlp__st_open(path, &f, err, sizeof(err));
    if (rc != SMLP_OK) {
        rc = smlp__session_fail(s, rc, "%s", err);
        goto out_free_src;
    }
    /* Pass 1: check everything. */
    for (i = 0; i < s->n_tensors && rc == SMLP_OK; i++)
        if (kinds_mask & (1 << s->tensors[i].kind))
            rc = check_in(s, f, path, i,
                          s->tensors[i].kind == SMLP__TENSOR_INPUT, &src[i]);
    /* Pass 2: copy (nothing fails from here on). */
    for (i = 0; i < s->n_tensors && rc == SMLP_OK; i++) {
        if (src[i] == NULL)
            continue;
        memcpy(s->tensors[i].t.data, src[i]->data, src[i]->nbytes);
        /* A device copy, if any, is refreshed at the next run. */
        s->tensors[i].dirty = 1;
    }
    smlp__st_close(f);
out_free_src:
    smlp__free(src);
    return rc;
}

int
smlp__weights_load(smlp_session_t *s, const char *path, int kinds_mask)
{
    return load(s, path, kinds_mask, "opts.weights");
}

int
smlp__weights_save(smlp_session_t *s, const char *path, int kinds_mask)
{
    struct smlp__st_entry *e;
    const char *keys[3] = {"graph", "format", SMLP__ST_HASH_KEY};
    const char *vals[3];
    char hash[24];
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
    snprintf(hash, sizeof(hash), "%016llx",
             (unsigned long long)smlp__st_data_hash(e, n));
    vals[0] = s->graph->ir->name;
    vals[1] = "pt";
    vals[2] = hash;
    rc = smlp__st_write(path, e, n, keys, vals, 3, err, sizeof(err));
    smlp__free(e);
    if (rc != SMLP_OK)
        return smlp__session_fail(s, rc, "%s", err);
    return SMLP_OK;
}

SMLP_API int
smlp_session_load_weights(smlp_session_t *s, const char *path)
{
    return load(s, path,
                (1 << SMLP__TENSOR_PARAMETER) | (1 << SMLP__TENSOR_STATE),
                "smlp_session_load_weights");
}

SMLP_API int
smlp_session_read_inputs(smlp_session_t *s, const char *path)
{
    return load(s, path, 1 << SMLP__TENSOR_INPUT,
                "smlp_session_read_inputs");
}

/* A NULL session or path is refused here, before smlp__weights_save. */
static int
save_args(smlp_session_t *s, const char *path, const char *who)
{
    if (s == NULL)
        return SMLP_EINVAL;
    if (path == NULL)
        return smlp__session_fail(s, SMLP_EINVAL, "%s: no path (NULL)",
                                  who);
    return SMLP_OK;
}

SMLP_API int
smlp_session_save_weights(smlp_session_t *s, const char *path)
{
    int rc = save_args(s, path, "smlp_session_save_weights");

    if (rc != SMLP_OK)
        return rc;
    return smlp__weights_save(
        s, path, (1 << SMLP__TENSOR_PARAMETER) | (1 << SMLP__TENSOR_STATE));
}

SMLP_API int
smlp_session_write_outputs(smlp_session_t *s, const char *path)
{
    int rc = save_args(s, path, "smlp_session_write_outputs");

    if (rc != SMLP_OK)
        return rc;
    if (s->arena != NULL && !s->has_run)
        return smlp__session_fail(s, SMLP_EINVAL,
                                  "%s: no run yet: the outputs hold no "
                                  "values (call smlp_session_run first)",
                                  s->graph->source);
    return smlp__weights_save(s, path, 1 << SMLP__TENSOR_OUTPUT);
}
