/*
 * norm.h - declarations shared by the files of the `norm` plugin.
 */
#ifndef SMLP_NORM_H
#define SMLP_NORM_H

#include "smlp_kernel.h"

#define SMLP__NORM_CPU_SCORE 10

extern const struct smlp_op_def smlp__norm_op_layer_norm;
extern const struct smlp_op_def smlp__norm_op_batch_norm;

/* Reads float attribute `name` (default def) and checks it lies in
 * [lo, hi]. */
static inline int
smlp__norm_attr_range(struct smlp_infer_ctx *ctx, const char *name,
                      double def, double lo, double hi, double *out)
{
    int rc = smlp_infer_attr_float(ctx, name, 0, def, out);

    if (rc != SMLP_OK)
        return rc;
    if (!(*out >= lo && *out <= hi))
        return smlp_infer_fail(ctx, SMLP_EINVAL,
                               "attribute '%s' = %g is invalid: expected a "
                               "value in [%g, %g]",
                               name, *out, lo, hi);
    return SMLP_OK;
}

#endif /* SMLP_NORM_H */
