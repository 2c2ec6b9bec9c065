/*
 * checkpoint.c - training checkpoints: one safetensors file with a
 * session's parameters and state, an optimizer's state and the counters
 * a resumed run needs to continue bit for bit.
 *
 * Layout of the file (safetensors.h does the reading and writing):
 *
 *   <name>                   every parameter and state tensor of the
 *                            graph, under its graph name (so the file is
 *                            also a weights file: smlp-run --weights)
 *   optim.<slot>.<param>     the optimizer's state of each trainable
 *                            parameter: slot momentum_buffer (SGD with
 *                            momentum) or exp_avg and exp_avg_sq (AdamW),
 *                            f32, shaped like the parameter
 *   __metadata__             the caller's pairs, and smlp's own:
 *     smlp.graph             the graph's name
 *     smlp.version           the libsmlp version that wrote the file
 *     smlp.step              the session's run counter (the step of
 *                            seeded noise, s->step), decimal
 *     smlp.seed              the session's seed (informative: a resumed
 *                            run must create its session with it)
 *     smlp.optim.kind        "sgd" or "adamw" (only with an optimizer)
 *     smlp.optim.steps       updates done, decimal (only with one)
 *
 * Saving goes through smlp__st_write: a temporary file beside the target,
 * fsync, rename over the target, fsync of the directory.  Loading checks
 * the whole file against the session (and optimizer) before it copies a
 * byte, so a failed load changes nothing.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "optim.h"
#include "safetensors.h"

#define CKPT_RESERVED "smlp."
#define CKPT_MAX_OWN 7 /* metadata pairs smlp writes itself */

/* Name of the tensor holding slot `slot` of parameter `param`, in a new
 * string (smlp__free), or NULL when out of memory. */
static char *
slot_tensor_name(const char *slot, const char *param)
{
    size_t n = strlen("optim.") + strlen(slot) + 1 + strlen(param) + 1;
    char *name = smlp__malloc(n);

    if (name != NULL)
        snprintf(name, n, "optim.%s.%s", slot, param);
    return name;
}

static void
fill_entry(struct smlp__st_entry *e, char *name, const struct smlp_tensor *t,
           const void *data)
{
    e->name = name;
    e->dtype = t->dtype;
    snprintf(e->dtype_name, sizeof(e->dtype_name), "%s",
             t->dtype == SMLP_DTYPE_F32 ? "F32" : "I32");
    e->rank = t->rank;
    memcpy(e->shape, t->shape, sizeof(e->shape));
    e->data = data;
    e->nbytes = (size_t)smlp_tensor_numel(t) * smlp__dtype_size(t->dtype);
}

/*
 * Writes the checkpoint.  The entries point at the session's and the
 * optimizer's own memory (nothing is copied); slot tensor names are
 * allocated here.  Errors go to the session's message.
 */
SMLP_API int
smlp_checkpoint_save(smlp_session_t *s, const smlp_optim_t *opt,
                     const char *path, const char *const *meta_keys,
                     const char *const *meta_values, int n_meta)
{
    const char **keys = NULL, **vals = NULL;
    struct smlp__st_entry *e = NULL;
    char step[24], seed[24], steps[24], hash[24], err[SMLP__ERRLEN];
    int32_t i, j, n = 0, n_slot_names = 0, nm = 0;
    size_t cap;
    int rc = SMLP_OK, k;

    if (s == NULL)
        return SMLP_EINVAL;
    if (path == NULL)
        return smlp__session_fail(s, SMLP_EINVAL,
                                  "smlp_checkpoint_save: no path (NULL)");
    if (n_meta < 0 ||
        (n_meta > 0 && (meta_keys == NULL || meta_values == NULL)))
        return smlp__session_fail(s, SMLP_EINVAL,
                                  "smlp_checkpoint_save: %d metadata pairs "
                                  "with %s",
                                  n_meta,
                                  n_meta < 0 ? "a negative count"
                                             : "NULL keys or values");
    if (s->arena == NULL)
        return smlp__session_fail(s, SMLP_EINVAL,
                                  "%s: the session was planned only",
                                  s->graph->source);
    if (opt != NULL && opt->s != s)
        return smlp__session_fail(s, SMLP_EINVAL,
                                  "%s: the optimizer belongs to another "
                                  "session",
                                  path);
    for (i = 0; i < n_meta; i++)
        if (meta_keys[i] != NULL &&
            strncmp(meta_keys[i], CKPT_RESERVED, strlen(CKPT_RESERVED)) == 0)
            return smlp__session_fail(s, SMLP_EINVAL,
                                      "%s: metadata key '%s' is reserved "
                                      "(smlp writes the smlp.* keys itself)",
                                      path, meta_keys[i]);

    cap = (size_t)s->n_tensors +
          (opt != NULL ? (size_t)opt->n * (size_t)opt->n_slots : 0);
    e = smlp__calloc(cap, sizeof(*e));
    keys = smlp__calloc((size_t)n_meta + CKPT_MAX_OWN, sizeof(*keys));
    vals = smlp__calloc((size_t)n_meta + CKPT_MAX_OWN, sizeof(*vals));
    if (e == NULL || keys == NULL || vals == NULL) {
        rc = smlp__session_fail(s, SMLP_ENOMEM, "%s: out of memory", path);
        goto out_free;
    }
    for (i = 0; i < s->n_tensors; i++) {
        const struct smlp__tensor_rt *t = &s->tensors[i];

        if (t->kind == SMLP__TENSOR_PARAMETER || t->kind == SMLP__TENSOR_STATE)
            fill_entry(&e[n++], s->graph->ir->tensors[i].name, &t->t,
                       t->t.data);
    }
    n_slot_names = n;
    for (j = 0; opt != NULL && j < opt->n; j++) {
        const struct smlp__optim_tensor *pt = &opt->params[j];

        for (k = 0; k < opt->n_slots; k++) {
            char *name = slot_tensor_name(
                smlp__optim_slot_name(&opt->o, k), pt->name);

            if (name == NULL) {
                rc = smlp__session_fail(s, SMLP_ENOMEM, "%s: out of memory",
                                        path);
                goto out_free;
            }
            fill_entry(&e[n++], name, &s->tensors[pt->tensor].t,
                       pt->slot[k]);
        }
    }

    for (i = 0; i < n_meta; i++) {
        keys[nm] = meta_keys[i];
        vals[nm++] = meta_values[i];
    }
    snprintf(step, sizeof(step), "%llu", (unsigned long long)s->step);
    snprintf(seed, sizeof(seed), "%llu", (unsigned long long)s->opts.seed);
    keys[nm] = "smlp.graph";
    vals[nm++] = s->graph->ir->name;
    keys[nm] = "smlp.version";
    vals[nm++] = smlp_version_string();
    keys[nm] = "smlp.step";
    vals[nm++] = step;
    keys[nm] = "smlp.seed";
    vals[nm++] = seed;
    if (opt != NULL) {
        snprintf(steps, sizeof(steps), "%lld", (long long)opt->steps);
        keys[nm] = "smlp.optim.kind";
        vals[nm++] = smlp__optim_kind_name(opt->o.kind);
        keys[nm] = "smlp.optim.steps";
        vals[nm++] = steps;
    }
    snprintf(hash, sizeof(hash), "%016llx",
             (unsigned long long)smlp__st_data_hash(e, n));
    keys[nm] = SMLP__ST_HASH_KEY;
    vals[nm++] = hash;
    rc = smlp__st_write(path, e, n, keys, vals, nm, err, sizeof(err));
    if (rc != SMLP_OK)
        smlp__session_fail(s, rc, "%s", err);

out_free:
    if (e != NULL)
        for (i = n_slot_names; i < n; i++)
            smlp__free(e[i].name);
    smlp__free(e);
    smlp__free(keys);
    smlp__free(vals);
    return rc;
}

/* Parses a decimal count (digits only, at most 2^63 - 1) into *out;
 * returns 0, or -1 when v is not one. */
static int
parse_count(const char *v, int64_t *out)
{
    unsigned long long x;
    char *end;

    if (v == NULL || v[0] < '0' || v[0] > '9')
        return -1;
    errno = 0;
    x = strtoull(v, &end, 10);
    if (errno != 0 || *end != '\0' || x > (unsigned long long)INT64_MAX)
        return -1;
    *out = (int64_t)x;
    return 0;
}

/*
 * Checks that f holds `name` with the dtype and shape of t, and, with
 * finite set, no NaN or infinity.  `who` names what needs the tensor, for
 * the message ("graph g.fbs").  Returns SMLP_OK, or SMLP_ENOENT,
 * SMLP_EBADFILE or SMLP_ESHAPE with the session's message naming the file
 * and the tensor.
 */
static int
check_tensor(smlp_session_t *s, const struct smlp__st_file *f,
             const char *path, const char *name, const struct smlp_tensor *t,
             const char *who, int finite,
             const struct smlp__st_entry **out)
{
    const struct smlp__st_entry *e = smlp__st_find(f, name);
    char b1[200], b2[200];
    int64_t k, n;
    int same, d;
    float v;

    if (e == NULL)
        return smlp__session_fail(s, SMLP_ENOENT,
                                  "%s: has no tensor '%s' (%s needs it)",
                                  path, name, who);
    if (e->dtype != t->dtype)
        return smlp__session_fail(s, SMLP_EBADFILE,
                                  "%s: tensor '%s' has dtype %s, %s needs "
                                  "%s",
                                  path, name, e->dtype_name, who,
                                  smlp__dtype_name(t->dtype));
    same = e->rank == t->rank;
    for (d = 0; same && d < e->rank; d++)
        same = e->shape[d] == t->shape[d];
    if (!same)
        return smlp__session_fail(
            s, SMLP_ESHAPE, "%s: tensor '%s' has shape %s, %s needs %s",
            path, name, smlp__shape_str(e->shape, e->rank, b1, sizeof(b1)),
            who,
            smlp__shape_str(t->shape, t->rank, b2, sizeof(b2)));
    if (finite && e->dtype == SMLP_DTYPE_F32) {
        n = (int64_t)(e->nbytes / sizeof(float));
        /* memcpy: data in the file's bytes need not be aligned. */
        for (k = 0; k < n; k++) {
            memcpy(&v, (const char *)e->data + k * sizeof(float), sizeof(v));
            if (!isfinite(v))
                return smlp__session_fail(
                    s, SMLP_EBADFILE,
                    "%s: tensor '%s': element %lld is %s (check_finite "
                    "refuses NaN and infinity)",
                    path, name, (long long)k, isnan(v) ? "NaN" : "infinite");
        }
    }
    *out = e;
    return SMLP_OK;
}

/* The file's metadata as one block: 2n pointers (key, value, ...) then
 * the strings.  NULL when out of memory. */
static char **
copy_meta(const struct smlp__st_file *f)
{
    size_t bytes = (size_t)f->n_meta * 2 * sizeof(char *) + 1, len;
    char **block, *p;
    int32_t i;

    for (i = 0; i < f->n_meta; i++)
        bytes += strlen(f->meta_keys[i]) + strlen(f->meta_values[i]) + 2;
    block = smlp__malloc(bytes);
    if (block == NULL)
        return NULL;
    p = (char *)(block + 2 * f->n_meta);
    for (i = 0; i < f->n_meta; i++) {
        len = strlen(f->meta_keys[i]) + 1;
        block[2 * i] = memcpy(p, f->meta_keys[i], len);
        p += len;
        len = strlen(f->meta_values[i]) + 1;
        block[2 * i + 1] = memcpy(p, f->meta_values[i], len);
        p += len;
    }
    return block;
}

/*
 * Loads in two passes over the same list: `src` gets, for each tensor to
 * fill, the file entry that will fill it (all checked), then everything
 * is copied.  Errors go to the session's message.
 */
SMLP_API int
smlp_checkpoint_load(smlp_session_t *s, smlp_optim_t *opt, const char *path)
{
    const struct smlp__st_entry **src = NULL;
    struct smlp__st_file *f = NULL;
    int64_t step, steps = 0;
    char what[300], err[SMLP__ERRLEN], **meta = NULL;
    const char *v, *kind;
    int32_t i, j, n = 0;
    size_t cap;
    int rc, k;

    if (s == NULL)
        return SMLP_EINVAL;
    if (path == NULL)
        return smlp__session_fail(s, SMLP_EINVAL,
                                  "smlp_checkpoint_load: no path (NULL)");
    if (s->arena == NULL)
        return smlp__session_fail(s, SMLP_EINVAL,
                                  "%s: the session was planned only",
                                  s->graph->source);
    if (opt != NULL && opt->s != s)
        return smlp__session_fail(s, SMLP_EINVAL,
                                  "%s: the optimizer belongs to another "
                                  "session",
                                  path);
    rc = smlp__st_open(path, &f, err, sizeof(err));
    if (rc != SMLP_OK)
        return smlp__session_fail(s, rc, "%s", err);

    if (smlp__st_meta(f, "smlp.graph") == NULL) {
        rc = smlp__session_fail(s, SMLP_EBADFILE,
                                "%s: is not an smlp checkpoint (no "
                                "smlp.graph in __metadata__; a weights "
                                "file loads with smlp_session_load_weights)",
                                path);
        goto out_close;
    }
    v = smlp__st_meta(f, "smlp.step");
    if (parse_count(v, &step) != 0) {
        rc = smlp__session_fail(s, SMLP_EBADFILE,
                                "%s: metadata smlp.step is %s%s%s, not a "
                                "step count",
                                path, v ? "'" : "", v ? v : "missing",
                                v ? "'" : "");
        goto out_close;
    }
    if (opt != NULL) {
        kind = smlp__st_meta(f, "smlp.optim.kind");
        if (kind == NULL) {
            rc = smlp__session_fail(s, SMLP_EINVAL,
                                    "%s: holds no optimizer state (saved "
                                    "without an optimizer), the optimizer "
                                    "is %s",
                                    path, smlp__optim_kind_name(opt->o.kind));
            goto out_close;
        }
        if (strcmp(kind, smlp__optim_kind_name(opt->o.kind)) != 0) {
            rc = smlp__session_fail(s, SMLP_EINVAL,
                                    "%s: holds the state of optimizer "
                                    "'%.40s', this optimizer is %s",
                                    path, kind,
                                    smlp__optim_kind_name(opt->o.kind));
            goto out_close;
        }
        v = smlp__st_meta(f, "smlp.optim.steps");
        if (parse_count(v, &steps) != 0) {
            rc = smlp__session_fail(s, SMLP_EBADFILE,
                                    "%s: metadata smlp.optim.steps is "
                                    "%s%s%s, not a step count",
                                    path, v ? "'" : "", v ? v : "missing",
                                    v ? "'" : "");
            goto out_close;
        }
    }

    cap = (size_t)s->n_tensors +
          (opt != NULL ? (size_t)opt->n * (size_t)opt->n_slots : 0);
    src = smlp__calloc(cap, sizeof(*src));
    meta = copy_meta(f);
    if (src == NULL || meta == NULL) {
        rc = smlp__session_fail(s, SMLP_ENOMEM, "%s: out of memory", path);
        goto out_close;
    }
    /* Pass 1: check everything. */
    for (i = 0; i < s->n_tensors; i++) {
        const struct smlp__tensor_rt *t = &s->tensors[i];

        if (t->kind != SMLP__TENSOR_PARAMETER && t->kind != SMLP__TENSOR_STATE)
            continue;
        snprintf(what, sizeof(what), "graph %s", s->graph->source);
        rc = check_tensor(s, f, path, s->graph->ir->tensors[i].name, &t->t,
                          what, s->opts.check_finite, &src[n++]);
        if (rc != SMLP_OK)
            goto out_close;
    }
    for (j = 0; opt != NULL && j < opt->n; j++) {
        const struct smlp__optim_tensor *pt = &opt->params[j];

        for (k = 0; k < opt->n_slots; k++) {
            char *name = slot_tensor_name(
                smlp__optim_slot_name(&opt->o, k), pt->name);

            if (name == NULL) {
                rc = smlp__session_fail(s, SMLP_ENOMEM, "%s: out of memory",
                                        path);
                goto out_close;
            }
            snprintf(what, sizeof(what),
                     "the %s optimizer, for parameter '%s',",
                     smlp__optim_kind_name(opt->o.kind), pt->name);
            rc = check_tensor(s, f, path, name, &s->tensors[pt->tensor].t,
                              what, s->opts.check_finite, &src[n++]);
            smlp__free(name);
            if (rc != SMLP_OK)
                goto out_close;
        }
    }

    /* Pass 2: copy (nothing fails from here on). */
    n = 0;
    for (i = 0; i < s->n_tensors; i++) {
        struct smlp__tensor_rt *t = &s->tensors[i];

        if (t->kind != SMLP__TENSOR_PARAMETER && t->kind != SMLP__TENSOR_STATE)
            continue;
        memcpy(t->t.data, src[n]->data, src[n]->nbytes);
        t->dirty = 1; /* a device copy, if any, is refreshed at the next run */
        n++;
    }
    for (j = 0; opt != NULL && j < opt->n; j++)
        for (k = 0; k < opt->n_slots; k++) {
            memcpy(opt->params[j].slot[k], src[n]->data, src[n]->nbytes);
            n++;
        }
    if (opt != NULL)
        opt->steps = steps;
    /* The gradients belong to the parameters before the load: a step
     * needs a backward of the loaded ones first. */
    if (s->ag != NULL)
        s->ag->grad_gen = 0;
    s->step = (uint64_t)step;
    smlp__checkpoint_meta_free(s);
    s->ckpt_meta = meta;
    s->ckpt_n_meta = f->n_meta;
    meta = NULL;
    rc = SMLP_OK;

out_close:
    smlp__free(meta);
    smlp__free(src);
    smlp__st_close(f);
    return rc;
}

SMLP_API const char *
smlp_checkpoint_meta(const smlp_session_t *s, const char *key)
{
    int32_t i;

    if (s == NULL || key == NULL)
        return NULL;
    for (i = 0; i < s->ckpt_n_meta; i++)
        if (strcmp(s->ckpt_meta[2 * i], key) == 0)
            return s->ckpt_meta[2 * i + 1];
    return NULL;
}

/* See internal.h. */
void
smlp__checkpoint_meta_free(smlp_session_t *s)
{
    smlp__free(s->ckpt_meta);
    s->ckpt_meta = NULL;
    s->ckpt_n_meta = 0;
}
