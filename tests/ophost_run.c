/*
 * ophost_run.c - the op test harness's tensors and its runs of an op:
 * inference, the kernel and the backward (see ophost.h).
 *
 * Workspaces and saved bytes are followed by a guard zone of canary bytes
 * that is checked after the kernel returns (check_guard): a write past
 * the end fails the call, however the threads were scheduled.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ophost_impl.h"

/* ---- tensors -------------------------------------------------------- */

static size_t
tensor_bytes(const struct smlp_tensor *t)
{
    int64_t n = smlp_tensor_numel(t);

    return n > 0 ? (size_t)n * 4 : 0;
}

struct smlp_tensor *
ophost_tensor(int dtype, int rank, const int64_t *shape, const void *data)
{
    struct smlp_tensor *t;
    size_t bytes;
    int d;

    if (rank < 0 || rank > SMLP_MAX_RANK)
        return NULL;
    t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->size = sizeof(*t);
    t->abi = SMLP_ABI_VERSION;
    t->dtype = dtype;
    t->rank = rank;
    for (d = 0; d < rank; d++)
        t->shape[d] = shape[d];
    bytes = tensor_bytes(t);
    t->data = calloc(1, bytes ? bytes : 1);
    if (t->data == NULL) {
        free(t);
        return NULL;
    }
    if (data != NULL && bytes > 0)
        memcpy(t->data, data, bytes);
    return t;
}

struct smlp_tensor *
ophost_f32(int rank, const int64_t *shape, const float *data)
{
    return ophost_tensor(SMLP_DTYPE_F32, rank, shape, data);
}

struct smlp_tensor *
ophost_i32(int rank, const int64_t *shape, const int32_t *data)
{
    return ophost_tensor(SMLP_DTYPE_I32, rank, shape, data);
}

struct smlp_tensor *
ophost_tensor_like(const struct smlp_tensor *t)
{
    return ophost_tensor(t->dtype, t->rank, t->shape, NULL);
}

void
ophost_tensor_free(struct smlp_tensor *t)
{
    if (t == NULL)
        return;
    free(t->data);
    free(t);
}

const char *
ophost_status_name(int status)
{
    switch (status) {
#define XX(name, val, text)                                                  \
    case val:                                                                \
        return #name;
        SMLP_STATUS_MAP(XX)
#undef XX
    case SMLP_DECLINED:
        return "DECLINED";
    default:
        return "unknown status";
    }
}

/* ---- running an op -------------------------------------------------- */

/* Everything one call sets up and tears down. */
struct call {
    const struct smlp_op_def *op;
    struct smlp_node node;
    struct smlp_tensor shadow_in[MAX_IO];
    const struct smlp_tensor *infer_in[MAX_IO];
    struct smlp_tensor shadow_out[MAX_IO];
    struct smlp_tensor *infer_out[MAX_IO];
    struct smlp_infer_ctx ictx;
    int inferred;
};

static int fail(struct ophost *h, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
fail(struct ophost *h, int status, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(h->errmsg, sizeof(h->errmsg), fmt, ap);
    va_end(ap);
    return status;
}

static const char *
shape_str(const struct smlp_tensor *t, char *buf, size_t len)
{
    size_t used;
    int d;

    used = (size_t)snprintf(buf, len, "%s [",
                            t->dtype == SMLP_DTYPE_F32   ? "f32"
                            : t->dtype == SMLP_DTYPE_I32 ? "i32"
                                                         : "dtype?");
    for (d = 0; d < t->rank && used < len; d++)
        used += (size_t)snprintf(buf + used, len - used, "%s%lld",
                                 d ? "," : "", (long long)t->shape[d]);
    if (used < len)
        snprintf(buf + used, len - used, "]");
    return buf;
}

static int
same_shape(const struct smlp_tensor *a, const struct smlp_tensor *b)
{
    int d;

    if (a->dtype != b->dtype || a->rank != b->rank)
        return 0;
    for (d = 0; d < a->rank; d++)
        if (a->shape[d] != b->shape[d])
            return 0;
    return 1;
}

static void
call_release_priv(struct call *c)
{
    if (c->ictx.priv != NULL && c->ictx.priv_free != NULL)
        c->ictx.priv_free(c->ictx.priv);
    c->ictx.priv = NULL;
}

/* Runs infer() with data-less copies of the inputs. */
static int
call_infer(struct ophost *h, struct call *c, const char *opname,
           const struct ophost_attr *attrs, struct smlp_tensor *const *inputs,
           int n_in, int n_out)
{
    char buf[200];
    int i, d, rc;

    h->errmsg[0] = '\0';
    memset(c, 0, sizeof(*c));
    c->op = ophost_op(h, opname);
    if (c->op == NULL)
        return fail(h, SMLP_ENOENT, "no op '%s' in plugin '%s'", opname,
                    h->def.name);
    if (n_in < c->op->min_inputs || n_in > c->op->max_inputs ||
        n_in > MAX_IO)
        return fail(h, SMLP_EINVAL, "%s takes %d to %d inputs, got %d",
                    opname, c->op->min_inputs, c->op->max_inputs, n_in);
    if (n_out != c->op->n_outputs || n_out > MAX_IO)
        return fail(h, SMLP_EINVAL, "%s has %d outputs, got %d", opname,
                    c->op->n_outputs, n_out);
    for (i = 0; i < n_in; i++) {
        if (inputs[i] == NULL) {
            if (i < c->op->min_inputs)
                return fail(h, SMLP_EINVAL, "input %d is required", i);
            continue;
        }
        c->shadow_in[i] = *inputs[i];
        c->shadow_in[i].data = NULL;
        c->infer_in[i] = &c->shadow_in[i];
    }
    for (i = 0; i < n_out; i++) {
        c->shadow_out[i].size = sizeof(struct smlp_tensor);
        c->shadow_out[i].abi = SMLP_ABI_VERSION;
        c->shadow_out[i].rank = -1;
        c->shadow_out[i].dtype = -1;
        c->infer_out[i] = &c->shadow_out[i];
    }
    c->node.host = h;
    c->node.name = "ophost_node";
    c->node.op = opname;
    c->node.attrs = attrs;
    c->ictx.size = sizeof(c->ictx);
    c->ictx.abi = SMLP_ABI_VERSION;
    c->ictx.host = &ophost__host_api;
    c->ictx.node = &c->node;
    c->ictx.n_inputs = n_in;
    c->ictx.n_outputs = n_out;
    c->ictx.inputs = c->infer_in;
    c->ictx.outputs = c->infer_out;
    c->ictx.training = h->training;
    rc = c->op->infer(&c->ictx);
    c->inferred = 1;
    if (rc != SMLP_OK) {
        call_release_priv(c);
        if (rc > 0)
            rc = SMLP_EINVAL;
        return fail(h, rc, "%s", c->node.err[0] ? c->node.err
                                                : "shape inference failed "
                                                  "(no message)");
    }
    if (c->node.err[0] != '\0') {
        call_release_priv(c);
        return fail(h, SMLP_EINVAL, "infer returned OK after errorf: %s",
                    c->node.err);
    }
    for (i = 0; i < n_in; i++)
        if (inputs[i] != NULL) {
            c->shadow_in[i].data = inputs[i]->data;
            if (memcmp(&c->shadow_in[i], inputs[i], sizeof(*inputs[i]))) {
                call_release_priv(c);
                return fail(h, SMLP_EINVAL, "infer changed input %d", i);
            }
        }
    for (i = 0; i < n_out; i++) {
        const struct smlp_tensor *t = &c->shadow_out[i];

        if (t->rank < 0 || t->rank > SMLP_MAX_RANK || t->dtype < 0 ||
            t->dtype >= SMLP_DTYPE_COUNT) {
            call_release_priv(c);
            return fail(h, SMLP_EINVAL,
                        "infer left output %d without a valid rank/dtype", i);
        }
        for (d = 0; d < t->rank; d++)
            if (t->shape[d] < 0) {
                call_release_priv(c);
                return fail(h, SMLP_EINVAL, "infer gave output %d shape %s",
                            i, shape_str(t, buf, sizeof(buf)));
            }
    }
    h->stats.workspace = c->ictx.workspace;
    h->stats.macs = c->ictx.macs;
    return SMLP_OK;
}

/*
 * Gives each output a tensor with data: new ones for NULL entries, a
 * shape check for the caller's.  With `strict`, entries must be set.
 */
static int
call_outputs(struct ophost *h, struct call *c, struct smlp_tensor **outputs,
             int n_out, int strict)
{
    char b1[200], b2[200];
    int i;

    for (i = 0; i < n_out; i++) {
        const struct smlp_tensor *inf = &c->shadow_out[i];
        struct smlp_tensor *t = outputs[i];

        if (t == NULL && strict)
            return fail(h, SMLP_EINVAL, "output %d is missing", i);
        if (t == NULL) {
            t = ophost_tensor(inf->dtype, inf->rank, inf->shape, NULL);
            if (t == NULL)
                return fail(h, SMLP_ENOMEM, "out of memory");
            memset(t->data, POISON, tensor_bytes(t));
            outputs[i] = t;
            continue;
        }
        if (!same_shape(t, inf))
            return fail(h, SMLP_ESHAPE,
                        "output %d: infer gave %s, the test expects %s", i,
                        shape_str(inf, b1, sizeof(b1)),
                        shape_str(t, b2, sizeof(b2)));
        if (t->data == NULL) {
            t->data = malloc(tensor_bytes(t) ? tensor_bytes(t) : 1);
            if (t->data == NULL)
                return fail(h, SMLP_ENOMEM, "out of memory");
            memset(t->data, POISON, tensor_bytes(t));
        }
    }
    return SMLP_OK;
}

/* The guard zone after a buffer of `size` bytes: from its end to the end
 * of the 64-byte rounding, plus as many bytes as the rounded size (at
 * least GUARD_MIN, at most GUARD_MAX), so that a kernel that indexes up
 * to twice its workspace lands in the guard, not in other heap blocks. */
static size_t
guard_bytes(size_t size)
{
    size_t rounded = (size + ALIGN - 1) / ALIGN * ALIGN;
    size_t extra = rounded < GUARD_MIN   ? GUARD_MIN
                   : rounded > GUARD_MAX ? GUARD_MAX
                                         : rounded;

    return rounded - size + extra;
}

/* A poisoned, 64-byte aligned workspace (NULL for size 0) followed by a
 * guard zone of CANARY bytes (see check_guard). */
static int
call_workspace(struct ophost *h, size_t size, void **out)
{
    size_t guard = guard_bytes(size);

    *out = NULL;
    if (size == 0)
        return SMLP_OK;
    *out = aligned_alloc(ALIGN, size + guard);
    if (*out == NULL)
        return fail(h, SMLP_ENOMEM, "out of memory (workspace %zu)", size);
    memset(*out, POISON, size);
    memset((char *)*out + size, CANARY, guard);
    return SMLP_OK;
}

/*
 * After a kernel or backward ran on buf (size bytes from call_workspace,
 * NULL for none): rc, or SMLP_EKERNEL when rc is SMLP_OK and a byte of
 * the guard zone changed, i.e. the kernel wrote past the `what` it was
 * given (however its threads were scheduled: the zone is checked after
 * the run, not watched).
 */
static int
check_guard(struct ophost *h, const void *buf, size_t size,
            const char *what, int rc)
{
    const unsigned char *g = (const unsigned char *)buf + size;
    size_t guard = guard_bytes(size), i;

    if (buf == NULL || rc != SMLP_OK)
        return rc;
    for (i = 0; i < guard; i++)
        if (g[i] != CANARY)
            return fail(h, SMLP_EKERNEL, "the kernel wrote past its %s of "
                        "%zu bytes (byte %zu after its end changed)", what,
                        size, i);
    return rc;
}

static const struct smlp_kernel_def *
choose_kernel(const struct call *c)
{
    const struct smlp_kernel_def *best = NULL;
    int dtype = -1, i;

    for (i = 0; i < c->ictx.n_inputs; i++)
        if (c->infer_in[i] != NULL) {
            dtype = c->infer_in[i]->dtype;
            break;
        }
    for (i = 0; c->op->kernels[i] != NULL; i++) {
        const struct smlp_kernel_def *k = c->op->kernels[i];

        if (k->device != SMLP_DEVICE_CPU)
            continue;
        if (dtype >= 0 && k->dtype_mask != 0 &&
            !(k->dtype_mask & (1u << dtype)))
            continue;
        if (k->supports != NULL && !k->supports(&c->ictx))
            continue;
        if (best == NULL || k->score > best->score)
            best = k;
    }
    return best;
}

int
ophost_infer(struct ophost *h, const char *op,
             const struct ophost_attr *attrs,
             struct smlp_tensor *const *inputs, int n_in,
             struct smlp_tensor **outputs, int n_out, const char **errmsg)
{
    struct call c;
    int rc;

    rc = call_infer(h, &c, op, attrs, inputs, n_in, n_out);
    if (rc == SMLP_OK) {
        rc = call_outputs(h, &c, outputs, n_out, 0);
        call_release_priv(&c);
    }
    if (errmsg != NULL)
        *errmsg = h->errmsg;
    return rc;
}

/* Bytes the op's forward keeps for its backward here: what infer asked,
 * in training mode, unless ophost_set_saved(h, 0). */
static size_t
call_saved_bytes(const struct ophost *h, const struct call *c)
{
    return h->training && !h->no_saved ? c->ictx.saved_bytes : 0;
}

/* Runs the forward kernel of the inferred call c into outputs, with a
 * poisoned workspace and, when `saved` is not NULL, the saved bytes. */
static int
call_kernel(struct ophost *h, struct call *c, const char *op,
            struct smlp_tensor *const *inputs, int n_in,
            struct smlp_tensor *const *outputs, int n_out, void *saved)
{
    const struct smlp_kernel_def *kernel = choose_kernel(c);
    struct smlp_kernel_ctx k;
    void *ws = NULL;
    int rc;

    if (kernel == NULL)
        return fail(h, SMLP_ENOKERNEL, "no CPU kernel of %s takes this node",
                    op);
    if ((rc = call_workspace(h, c->ictx.workspace, &ws)) != SMLP_OK)
        return rc;
    memset(&k, 0, sizeof(k));
    k.size = sizeof(k);
    k.abi = SMLP_ABI_VERSION;
    k.host = &ophost__host_api;
    k.node = &c->node;
    k.priv = c->ictx.priv;
    k.n_inputs = n_in;
    k.n_outputs = n_out;
    k.inputs = (const struct smlp_tensor *const *)inputs;
    k.outputs = outputs;
    k.workspace = ws;
    k.workspace_size = c->ictx.workspace;
    k.training = h->training;
    k.threads = h->threads;
    k.seed = h->seed;
    k.step = h->step;
    k.saved = saved;
    k.saved_size = saved != NULL ? c->ictx.saved_bytes : 0;
    rc = kernel->run(&k);
    if (rc != SMLP_OK)
        rc = fail(h, rc > 0 ? SMLP_EKERNEL : rc, "%s",
                  c->node.err[0] ? c->node.err : "kernel failed (no message)");
    rc = check_guard(h, ws, c->ictx.workspace, "workspace", rc);
    rc = check_guard(h, saved, k.saved_size, "saved bytes", rc);
    free(ws);
    return rc;
}

int
ophost_run(struct ophost *h, const char *op, const struct ophost_attr *attrs,
           struct smlp_tensor *const *inputs, int n_in,
           struct smlp_tensor **outputs, int n_out, const char **errmsg)
{
    struct call c;
    void *saved = NULL;
    int rc;

    rc = call_infer(h, &c, op, attrs, inputs, n_in, n_out);
    if (rc != SMLP_OK)
        goto out;
    if ((rc = call_outputs(h, &c, outputs, n_out, 0)) != SMLP_OK)
        goto out_priv;
    if ((rc = call_workspace(h, call_saved_bytes(h, &c), &saved)) !=
        SMLP_OK)
        goto out_priv;
    rc = call_kernel(h, &c, op, inputs, n_in, outputs, n_out, saved);
    free(saved);
out_priv:
    call_release_priv(&c);
out:
    if (errmsg != NULL)
        *errmsg = h->errmsg;
    return rc;
}

/*
 * The saved bytes a backward gets (NULL when the op keeps none): the
 * forward kernel run again on the same inputs, into scratch copies of the
 * outputs, as the forward of the same training step would have left them.
 */
static int
call_saved_forward(struct ophost *h, struct call *c, const char *op,
                   struct smlp_tensor *const *inputs, int n_in,
                   struct smlp_tensor *const *outputs, int n_out,
                   void **saved)
{
    struct smlp_tensor *tmp[8] = {NULL};
    int rc, i;

    *saved = NULL;
    if (call_saved_bytes(h, c) == 0)
        return SMLP_OK;
    if (n_out > 8)
        return fail(h, SMLP_EINVAL, "more than 8 outputs");
    if ((rc = call_workspace(h, call_saved_bytes(h, c), saved)) != SMLP_OK)
        return rc;
    for (i = 0; i < n_out && rc == SMLP_OK; i++) {
        tmp[i] = ophost_tensor(outputs[i]->dtype, outputs[i]->rank,
                               outputs[i]->shape, NULL);
        if (tmp[i] == NULL)
            rc = fail(h, SMLP_ENOMEM, "out of memory");
    }
    if (rc == SMLP_OK)
        rc = call_kernel(h, c, op, inputs, n_in, tmp, n_out, *saved);
    for (i = 0; i < n_out; i++)
        ophost_tensor_free(tmp[i]);
    if (rc != SMLP_OK) {
        free(*saved);
        *saved = NULL;
    }
    return rc;
}

int
ophost_backward(struct ophost *h, const char *op,
                const struct ophost_attr *attrs,
                struct smlp_tensor *const *inputs, int n_in,
                struct smlp_tensor *const *outputs, int n_out,
                struct smlp_tensor *const *grad_outputs,
                struct smlp_tensor *const *grad_inputs, const char **errmsg)
{
    struct smlp_backward_ctx b;
    struct call c;
    void *ws = NULL, *saved = NULL;
    size_t bws;
    char b1[200], b2[200];
    int rc, i;

    rc = call_infer(h, &c, op, attrs, inputs, n_in, n_out);
    if (rc != SMLP_OK)
        goto out;
    if ((rc = call_outputs(h, &c, (struct smlp_tensor **)outputs, n_out,
                           1)) != SMLP_OK)
        goto out_priv;
    if (c.op->backward == NULL) {
        rc = fail(h, SMLP_ENOKERNEL, "%s has no backward", op);
        goto out_priv;
    }
    for (i = 0; i < n_out; i++)
        if (grad_outputs[i] != NULL && (grad_outputs[i]->dtype !=
                                            SMLP_DTYPE_F32 ||
                                        !same_shape(grad_outputs[i],
                                                    outputs[i]))) {
            rc = fail(h, SMLP_ESHAPE, "grad_outputs[%d] must be f32 %s", i,
                      shape_str(outputs[i], b1, sizeof(b1)));
            goto out_priv;
        }
    for (i = 0; i < n_in; i++)
        if (grad_inputs[i] != NULL &&
            (inputs[i] == NULL || inputs[i]->dtype != SMLP_DTYPE_F32 ||
             grad_inputs[i]->dtype != SMLP_DTYPE_F32 ||
             !same_shape(grad_inputs[i], inputs[i]))) {
            rc = fail(h, SMLP_ESHAPE, "grad_inputs[%d] is %s, input is %s",
                      i, shape_str(grad_inputs[i], b1, sizeof(b1)),
                      inputs[i] ? shape_str(inputs[i], b2, sizeof(b2))
                                : "absent");
            goto out_priv;
        }
    bws = c.ictx.backward_workspace > c.ictx.workspace
              ? c.ictx.backward_workspace
              : c.ictx.workspace;
    if ((rc = call_saved_forward(h, &c, op, inputs, n_in, outputs, n_out,
                                 &saved)) != SMLP_OK)
        goto out_priv;
    if ((rc = call_workspace(h, bws, &ws)) != SMLP_OK) {
        free(saved);
        goto out_priv;
    }
    memset(&b, 0, sizeof(b));
    b.size = sizeof(b);
    b.abi = SMLP_ABI_VERSION;
    b.host = &ophost__host_api;
    b.node = &c.node;
    b.priv = c.ictx.priv;
    b.n_inputs = n_in;
    b.n_outputs = n_out;
    b.inputs = (const struct smlp_tensor *const *)inputs;
    b.outputs = (const struct smlp_tensor *const *)outputs;
    b.grad_outputs = (const struct smlp_tensor *const *)grad_outputs;
    b.grad_inputs = grad_inputs;
    b.workspace = ws;
    b.workspace_size = bws;
    b.threads = h->threads;
    b.seed = h->seed;
    b.step = h->step;
    b.saved = saved;
    b.saved_size = saved != NULL ? c.ictx.saved_bytes : 0;
    rc = c.op->backward(&b);
    if (rc != SMLP_OK)
        rc = fail(h, rc > 0 ? SMLP_EKERNEL : rc, "%s",
                  c.node.err[0] ? c.node.err
                                : "backward failed (no message)");
    rc = check_guard(h, ws, bws, "backward workspace", rc);
    rc = check_guard(h, saved, b.saved_size, "saved bytes", rc);
    free(ws);
    free(saved);
out_priv:
    call_release_priv(&c);
out:
    if (errmsg != NULL)
        *errmsg = h->errmsg;
    return rc;
}
