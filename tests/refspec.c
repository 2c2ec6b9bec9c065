/*
 * refspec.c - the reference's parameters and inputs drawn again from
 * their generator settings (refspec.h).
 */
#include "refspec.h"
#include "safetensors.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double
refspec_uniform(uint64_t seed, uint64_t j)
{
    uint64_t z = seed + (j + 1) * UINT64_C(0x9E3779B97F4A7C15);

    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    z ^= z >> 31;
    return (double)(z >> 40) * 0x1p-24;
}

/* Tensor `name` of s as the file's "init.NAME" says. */
static int
fill_one(smlp_session_t *s, const struct smlp__st_file *f, const char *path,
         const char *name, char *err, size_t errlen)
{
    struct smlp_tensor t;
    char key[300], kind;
    unsigned long long seed;
    double center, half, want, x, sum = 0, abs_sum = 0;
    const char *p;
    float *v;
    int64_t i, n;
    int r;

    snprintf(key, sizeof(key), "init.%s", name);
    p = smlp__st_meta(f, key);
    if (p == NULL) {
        snprintf(err, errlen, "%s has no generator settings for '%s'", path,
                 name);
        return -1;
    }
    if (sscanf(p, "%c %llu %lf %lf %lf", &kind, &seed,
               &center, &half, &want) != 5 ||
        (kind != 'u' && kind != 'n')) {
        snprintf(err, errlen, "%s: bad init.%s", path, name);
        return -1;
    }
    if (smlp_session_tensor(s, name, &t) != SMLP_OK || t.data == NULL ||
        t.dtype != SMLP_DTYPE_F32) {
        snprintf(err, errlen, "'%s' is not a float tensor with data", name);
        return -1;
    }
    n = smlp_tensor_numel(&t);
    v = t.data;
    for (i = 0; i < n; i++) {
        if (kind == 'u') {
            x = 2.0 * refspec_uniform(seed, (uint64_t)i) - 1.0;
        } else {
            x = -6.0;
            for (r = 0; r < 12; r++)
                x += refspec_uniform(seed, (uint64_t)(12 * i + r));
        }
        v[i] = (float)(center + x * half);
        sum += v[i];
        abs_sum += fabs(v[i]);
    }
    if (!(fabs(sum - want) <= 1e-9 * abs_sum + 1e-12)) {
        snprintf(err, errlen,
                 "%s: the values drawn for '%s' sum to %.17g, the "
                 "reference's to %.17g (generator or shape changed?)",
                 path, name, sum, want);
        return -1;
    }
    return 0;
}

int
refspec_fill(smlp_session_t *s, const char *path, int inputs, char *err,
             size_t errlen)
{
    struct smlp__st_file *f;
    int k, i, rc = 0;

    if (smlp__st_open(path, &f, err, errlen) != SMLP_OK)
        return -1;
    /* kinds: 1 parameters, 3 inputs (smlp_session_tensor_count) */
    for (k = 1; rc == 0 && k <= (inputs ? 3 : 1); k += 2)
        for (i = 0; rc == 0 && i < smlp_session_tensor_count(s, k); i++)
            rc = fill_one(s, f, path, smlp_session_tensor_name(s, k, i), err,
                          errlen);
    smlp__st_close(f);
    return rc;
}

int
refspec_fill_tensor(smlp_session_t *s, const char *path, const char *name,
                    char *err, size_t errlen)
{
    struct smlp__st_file *f;
    int rc;

    if (smlp__st_open(path, &f, err, errlen) != SMLP_OK)
        return -1;
    rc = fill_one(s, f, path, name, err, errlen);
    smlp__st_close(f);
    return rc;
}

int
refspec_write_weights(const smlp_graph_t *g, smlp_registry_t *reg,
                      const char *path, const char *out, char *err,
                      size_t errlen)
{
    struct smlp_session_opts o;
    struct smlp_error e;
    smlp_session_t *s;
    int rc;

    smlp_session_opts_init(&o);
    o.batch = 1;
    s = smlp_session_create(g, reg, &o, &e);
    if (s == NULL) {
        snprintf(err, errlen, "%s", e.msg);
        return -1;
    }
    rc = refspec_fill(s, path, 0, err, errlen);
    if (rc == 0 && smlp_session_save_weights(s, out) != SMLP_OK) {
        snprintf(err, errlen, "%s", smlp_session_errmsg(s));
        rc = -1;
    }
    smlp_session_destroy(s);
    return rc;
}
