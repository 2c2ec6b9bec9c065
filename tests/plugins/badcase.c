/*
 * badcase.c - one test plugin for many ways of loading (check_registry):
 * its entry point reads $SMLP_TEST_BADCASE and registers accordingly.
 *
 *   unset, ""     a good plugin: badcase.id (copies), badcase.twoerr (its
 *                 kernel calls errorf twice, then fails) and
 *                 badcase.attrs (its infer probes the attribute getters)
 *   exact         the good plugin, every struct declaring the smallest
 *                 size the host accepts (the ABI 1.0 fields): the fields
 *                 past it hold values the host must not read
 *   neg_inputs    an op with min_inputs -1
 *   many_inputs   an op with max_inputs 65 (the host allows 64)
 *   many_outputs  an op with 65 outputs
 *   nodot         an op named "badcaseXid" (the prefix without the dot)
 *   emptyop       an op named "badcase." (no op name after the dot)
 *   devcount      a kernel on device SMLP_DEVICE_COUNT
 *   norun         a kernel without run()
 *   twice         register_plugin called twice with the good plugin
 *   badsig_twice  first with a wrong build signature, then the good one
 *   noops         a plugin definition without an op table
 *   nothing       init returns SMLP_OK without registering
 *   enomem        init returns SMLP_ENOMEM (no message)
 *   warn          logs a warning and an info line, then the good plugin
 */
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

/* badcase.twoerr: two messages; the host keeps the first. */
static int
twoerr_run(struct smlp_kernel_ctx *ctx)
{
    ctx->host->errorf(ctx->node, "first message %d", 1);
    ctx->host->errorf(ctx->node, "second message %d", 2);
    return SMLP_EKERNEL;
}

/*
 * badcase.attrs: output 0 has shape [code], code the sum of
 *   1  attr_float on the int attribute "n" is SMLP_EINVAL
 *   2  attr_string on the string attribute "s" is SMLP_OK with "v"
 *   4  attr_int on "absent" (not set) is SMLP_DECLINED
 * (7 when the getters behave as smlp_plugin.h says).
 */
static int
attrs_infer(struct smlp_infer_ctx *ctx)
{
    const char *str = NULL;
    int64_t i = 0;
    double d = 0;
    int code = 0;

    if (ctx->host->attr_float(ctx->node, "n", &d) == SMLP_EINVAL)
        code += 1;
    if (ctx->host->attr_string(ctx->node, "s", &str) == SMLP_OK &&
        str != NULL && strcmp(str, "v") == 0)
        code += 2;
    if (ctx->host->attr_int(ctx->node, "absent", &i) == SMLP_DECLINED)
        code += 4;
    ctx->outputs[0]->dtype = SMLP_DTYPE_F32;
    ctx->outputs[0]->rank = 1;
    ctx->outputs[0]->shape[0] = code;
    return SMLP_OK;
}

static int
attrs_run(struct smlp_kernel_ctx *ctx)
{
    (void)ctx;
    return SMLP_OK;
}

static int
backward_never(struct smlp_backward_ctx *ctx)
{
    (void)ctx;
    return SMLP_EKERNEL;
}

/* The kernel and op definitions of the good plugin, with room for the
 * cases: `size` and the odd fields are set by smlp_plugin_init. */
static struct smlp_kernel_def copy_kernel = {
    sizeof(struct smlp_kernel_def), SMLP_ABI_VERSION, SMLP_DEVICE_CPU,
    1u << SMLP_DTYPE_F32, NULL, fixture_copy, 1, NULL};
static const struct smlp_kernel_def *const copy_kernels[] = {&copy_kernel,
                                                             NULL};
static const struct smlp_kernel_def twoerr_kernel = {
    sizeof(struct smlp_kernel_def), SMLP_ABI_VERSION, SMLP_DEVICE_CPU,
    1u << SMLP_DTYPE_F32, NULL, twoerr_run, 1, NULL};
static const struct smlp_kernel_def *const twoerr_kernels[] = {
    &twoerr_kernel, NULL};
static const struct smlp_kernel_def attrs_kernel = {
    sizeof(struct smlp_kernel_def), SMLP_ABI_VERSION, SMLP_DEVICE_CPU,
    1u << SMLP_DTYPE_F32, NULL, attrs_run, 1, NULL};
static const struct smlp_kernel_def *const attrs_kernels[] = {&attrs_kernel,
                                                              NULL};
static const struct smlp_attr_def attrs_attrs[] = {
    {"n", SMLP_ATTR_INT, 0, "an int, read as a float"},
    {"s", SMLP_ATTR_STRING, 0, "a string, \"v\""},
    {NULL, 0, 0, NULL},
};

static struct smlp_op_def id_op = {
    sizeof(struct smlp_op_def), SMLP_ABI_VERSION, "badcase.id", 1, 1, 1, 0,
    NULL, fixture_infer, copy_kernels, NULL, "copies its input"};
static const struct smlp_op_def twoerr_op = {
    sizeof(struct smlp_op_def), SMLP_ABI_VERSION, "badcase.twoerr", 1, 1, 1,
    0, NULL, fixture_infer, twoerr_kernels, NULL, "fails with two messages"};
static const struct smlp_op_def attrs_op = {
    sizeof(struct smlp_op_def), SMLP_ABI_VERSION, "badcase.attrs", 1, 1, 1,
    0, attrs_attrs, attrs_infer, attrs_kernels, NULL,
    "probes the attribute getters"};
static const struct smlp_op_def *ops[] = {&id_op, &twoerr_op, &attrs_op,
                                          NULL};
static struct smlp_plugin_def def = {
    sizeof(def), SMLP_ABI_VERSION, "badcase", "1", SMLP_BUILD_SIGNATURE, ops,
    NULL};

static void
set_threads_never(int threads)
{
    (void)threads;
    abort();
}

SMLP_PLUGIN_EXPORT const uint32_t smlp_plugin_abi = SMLP_ABI_VERSION;

SMLP_PLUGIN_EXPORT int
smlp_plugin_init(const struct smlp_host_api *host, struct smlp_registry *reg,
                 char **errmsg)
{
    const char *c = getenv("SMLP_TEST_BADCASE");
    int rc;

    (void)errmsg;
    if (c == NULL)
        c = "";
    if (strcmp(c, "exact") == 0) {
        def.size = offsetof(struct smlp_plugin_def, set_threads);
        def.set_threads = set_threads_never;
        id_op.size = offsetof(struct smlp_op_def, backward);
        id_op.backward = backward_never;
        id_op.doc = "past the declared size";
        copy_kernel.size = offsetof(struct smlp_kernel_def, score);
    } else if (strcmp(c, "neg_inputs") == 0) {
        id_op.min_inputs = -1;
    } else if (strcmp(c, "many_inputs") == 0) {
        id_op.max_inputs = 65;
    } else if (strcmp(c, "many_outputs") == 0) {
        id_op.n_outputs = 65;
    } else if (strcmp(c, "nodot") == 0) {
        id_op.name = "badcaseXid";
    } else if (strcmp(c, "emptyop") == 0) {
        id_op.name = "badcase.";
    } else if (strcmp(c, "devcount") == 0) {
        copy_kernel.device = SMLP_DEVICE_COUNT;
    } else if (strcmp(c, "norun") == 0) {
        copy_kernel.run = NULL;
    } else if (strcmp(c, "twice") == 0) {
        rc = host->register_plugin(reg, &def);
        if (rc != SMLP_OK)
            return rc;
    } else if (strcmp(c, "badsig_twice") == 0) {
        def.signature = "not-this-build";
        host->register_plugin(reg, &def);
        def.signature = SMLP_BUILD_SIGNATURE;
    } else if (strcmp(c, "noops") == 0) {
        def.ops = NULL;
    } else if (strcmp(c, "nothing") == 0) {
        return SMLP_OK;
    } else if (strcmp(c, "enomem") == 0) {
        return SMLP_ENOMEM;
    } else if (strcmp(c, "warn") == 0) {
        host->log(SMLP_LOG_WARN, "badcase warns %d", 7);
        host->log(SMLP_LOG_INFO, "badcase informs %d", 8);
    }
    return host->register_plugin(reg, &def);
}
