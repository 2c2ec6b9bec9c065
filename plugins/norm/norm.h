/*
 * norm.h - declarations shared by the files of the `norm` plugin.
 */
#ifndef SMLP_NORM_H
#define SMLP_NORM_H

#include <stddef.h>
#include <string.h>

#include "smlp_kernel.h"

#define SMLP__NORM_CPU_SCORE 10

extern const struct smlp_op_def smlp__norm_op_layer_norm;
extern const struct smlp_op_def smlp__norm_op_batch_norm;

/*
 * CUDA kernels (cuda.cu, built with configure --with-cuda), listed after
 * the CPU kernel in each op's kernel table through SMLP__NORM_CUDA(k),
 * which is empty in a build without CUDA.
 */
#ifdef SMLP_HAVE_CUDA
#ifdef __cplusplus
extern "C" {
#endif
extern const struct smlp_kernel_def smlp__norm_layer_norm_cuda;
extern const struct smlp_kernel_def smlp__norm_batch_norm_cuda;
#ifdef __cplusplus
}
#endif
#define SMLP__NORM_CUDA(k) &(k),
#else
#define SMLP__NORM_CUDA(k)
#endif

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

/*
 * Asks for `bytes` of backward workspace (struct smlp_infer_ctx field
 * backward_workspace, since ABI 1.1).  A host whose infer context is too
 * short for the field has no backward either, so nothing is written.
 */
static inline void
smlp__norm_set_backward_workspace(struct smlp_infer_ctx *ctx, size_t bytes)
{
    if (ctx->size >= offsetof(struct smlp_infer_ctx, backward_workspace) +
                         sizeof(ctx->backward_workspace))
        ctx->backward_workspace = bytes;
}

/*
 * fn(arg, begin, end, worker) over [0, n) in chunks of `chunk` (the last
 * may be shorter), as tasks of host->parallel_for (smlp_parallel_for): cut
 * by the shapes alone, so results do not depend on the thread count.
 * Returns the first nonzero value fn returned, else 0.
 */
struct smlp__norm_range {
    int64_t n, chunk;
    int (*fn)(void *arg, int64_t begin, int64_t end, int worker);
    void *arg;
};

static inline int
smlp__norm_range_task(void *arg, int64_t task, int worker)
{
    const struct smlp__norm_range *r = (const struct smlp__norm_range *)arg;
    int64_t begin = task * r->chunk;
    int64_t end = r->n - begin < r->chunk ? r->n : begin + r->chunk;

    return r->fn(r->arg, begin, end, worker);
}

static inline int
smlp__norm_parallel_range(const struct smlp_host_api *host,
                          const struct smlp_node *node, int64_t n,
                          int64_t chunk,
                          int (*fn)(void *arg, int64_t begin, int64_t end,
                                    int worker),
                          void *arg)
{
    struct smlp__norm_range r;

    if (n <= 0)
        return 0;
    r.n = n;
    r.chunk = chunk > 0 ? chunk : 1;
    r.fn = fn;
    r.arg = arg;
    return smlp_parallel_for(host, node, (n + r.chunk - 1) / r.chunk,
                             smlp__norm_range_task, &r);
}

/* Zeroes gradient tensor t when it is wanted (not NULL). */
static inline void
smlp__norm_zero_grad(struct smlp_tensor *t)
{
    if (t != NULL)
        memset(t->data, 0, (size_t)smlp_tensor_numel(t) * sizeof(float));
}

#endif /* SMLP_NORM_H */
