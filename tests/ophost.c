/*
 * ophost.c - a minimal plugin host for operator tests (see ophost.h).
 *
 * It follows the runtime's rules where a plugin can tell the difference:
 * structs the plugin hands over are copied into zeroed host structs,
 * reading at most their declared size; the ABI major and the build
 * signature must match; errorf keeps the first message; an attribute read
 * with the wrong type records "attribute 'x' is a float, expected an int"
 * and answers SMLP_EINVAL; infer sees inputs without data.
 *
 * parallel_for: ophost_pfor.c; tensors and running an op: ophost_run.c.
 */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ophost_impl.h"

static atomic_long live_allocs;

/* ---- the host table ------------------------------------------------- */

static void *
host_alloc(size_t size)
{
    void *p = malloc(size ? size : 1);

    if (p != NULL)
        atomic_fetch_add(&live_allocs, 1);
    return p;
}

static void
host_free(void *p)
{
    if (p == NULL)
        return;
    atomic_fetch_sub(&live_allocs, 1);
    free(p);
}

static void
host_log(int level, const char *fmt, ...)
{
    const char *env = getenv("SMLP_LOG");
    int max = env ? atoi(env) : SMLP_LOG_WARN;
    va_list ap;

    if (level > max)
        return;
    fprintf(stderr, "ophost: log %d: ", level);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void
host_errorf(const struct smlp_node *node, const char *fmt, ...)
{
    struct smlp_node *n = (struct smlp_node *)node;
    va_list ap;

    if (n == NULL || n->err[0] != '\0')
        return;
    va_start(ap, fmt);
    vsnprintf(n->err, sizeof(n->err), fmt, ap);
    va_end(ap);
}

static const char *
host_node_name(const struct smlp_node *node)
{
    return node->name;
}

static const struct ophost_attr *
find_attr(const struct smlp_node *node, const char *name, int type, int *rc)
{
    static const char *const tnames[] = {"int", "float", "string", "ints",
                                         "floats"};
    const struct ophost_attr *a;

    *rc = SMLP_DECLINED;
    for (a = node->attrs; a != NULL && a->name != NULL; a++) {
        if (strcmp(a->name, name) != 0)
            continue;
        if (a->type != type) {
            host_errorf(node, "attribute '%s' is a%s %s, expected a%s %s",
                        name, a->type == SMLP_ATTR_INT ? "n" : "",
                        a->type >= 0 && a->type < SMLP_ATTR_TYPE_COUNT
                            ? tnames[a->type]
                            : "?",
                        type == SMLP_ATTR_INT ? "n" : "", tnames[type]);
            *rc = SMLP_EINVAL;
            return NULL;
        }
        *rc = SMLP_OK;
        return a;
    }
    return NULL;
}

static int
host_attr_int(const struct smlp_node *node, const char *name, int64_t *out)
{
    int rc;
    const struct ophost_attr *a = find_attr(node, name, SMLP_ATTR_INT, &rc);

    if (a != NULL)
        *out = a->i;
    return rc;
}

static int
host_attr_float(const struct smlp_node *node, const char *name, double *out)
{
    int rc;
    const struct ophost_attr *a =
        find_attr(node, name, SMLP_ATTR_FLOAT, &rc);

    if (a != NULL)
        *out = a->f;
    return rc;
}

static int
host_attr_string(const struct smlp_node *node, const char *name,
                 const char **out)
{
    int rc;
    const struct ophost_attr *a =
        find_attr(node, name, SMLP_ATTR_STRING, &rc);

    if (a != NULL)
        *out = a->s ? a->s : "";
    return rc;
}

static int
host_attr_ints(const struct smlp_node *node, const char *name,
               const int64_t **out, size_t *n)
{
    int rc;
    const struct ophost_attr *a = find_attr(node, name, SMLP_ATTR_INTS, &rc);

    if (a != NULL) {
        *out = a->ints;
        *n = a->n;
    }
    return rc;
}

static int
host_attr_floats(const struct smlp_node *node, const char *name,
                 const double **out, size_t *n)
{
    int rc;
    const struct ophost_attr *a =
        find_attr(node, name, SMLP_ATTR_FLOATS, &rc);

    if (a != NULL) {
        *out = a->floats;
        *n = a->n;
    }
    return rc;
}

static int reg_fail(struct smlp_registry *reg, int status, const char *fmt,
                    ...) __attribute__((format(printf, 3, 4)));

static int
reg_fail(struct smlp_registry *reg, int status, const char *fmt, ...)
{
    va_list ap;

    if (reg->status != SMLP_OK)
        return reg->status;
    reg->status = status;
    va_start(ap, fmt);
    vsnprintf(reg->err, sizeof(reg->err), fmt, ap);
    va_end(ap);
    return status;
}

static int
check_abi(struct smlp_registry *reg, const char *what, uint32_t size,
          uint32_t abi, size_t min_size)
{
    if (SMLP_ABI_MAJOR_OF(abi) != SMLP_ABI_MAJOR)
        return reg_fail(reg, SMLP_EABI, "%s is for ABI %u.%u, host has %u.%u",
                        what, SMLP_ABI_MAJOR_OF(abi), SMLP_ABI_MINOR_OF(abi),
                        SMLP_ABI_MAJOR, SMLP_ABI_MINOR);
    if (size < min_size)
        return reg_fail(reg, SMLP_EABI, "%s declares size %u, needs %zu",
                        what, size, min_size);
    return SMLP_OK;
}

static int
check_op(struct smlp_registry *reg, const struct smlp_op_def *op)
{
    const char *pname = reg->host->def.name;
    size_t plen = strlen(pname);
    int i, k;

    if (check_abi(reg, "an op definition", op->size, op->abi,
                  offsetof(struct smlp_op_def, backward)) != SMLP_OK)
        return reg->status;
    if (op->name == NULL || strncmp(op->name, pname, plen) != 0 ||
        op->name[plen] != '.' || op->name[plen + 1] == '\0')
        return reg_fail(reg, SMLP_EINVAL, "op '%s' must be named '%s.OP'",
                        op->name ? op->name : "(null)", pname);
    for (i = 0; i < reg->host->n_ops; i++)
        if (strcmp(reg->host->ops[i].name, op->name) == 0)
            return reg_fail(reg, SMLP_EDUPLICATE, "op '%s' registered twice",
                            op->name);
    if (op->infer == NULL || op->kernels == NULL || op->kernels[0] == NULL ||
        op->min_inputs < 0 || op->max_inputs < op->min_inputs ||
        op->n_outputs < 1)
        return reg_fail(reg, SMLP_EINVAL,
                        "op '%s' needs infer(), a kernel and sane arities",
                        op->name);
    for (k = 0; op->kernels[k] != NULL; k++) {
        const struct smlp_kernel_def *kd = op->kernels[k];

        if (check_abi(reg, "a kernel definition", kd->size, kd->abi,
                      offsetof(struct smlp_kernel_def, score)) != SMLP_OK)
            return reg->status;
        if (kd->run == NULL)
            return reg_fail(reg, SMLP_EINVAL, "op '%s': kernel %d has no run",
                            op->name, k);
    }
    return SMLP_OK;
}

static int
host_register_plugin(struct smlp_registry *reg,
                     const struct smlp_plugin_def *def)
{
    struct ophost *h = reg->host;
    int n, i;

    if (def == NULL)
        return reg_fail(reg, SMLP_EINVAL, "register_plugin(NULL)");
    if (h->def.size != 0)
        return reg_fail(reg, SMLP_EDUPLICATE, "register_plugin called twice");
    if (check_abi(reg, "the plugin definition", def->size, def->abi,
                  offsetof(struct smlp_plugin_def, set_threads)) != SMLP_OK)
        return reg->status;
    memcpy(&h->def, def,
           def->size < sizeof(h->def) ? def->size : sizeof(h->def));
    if (h->def.signature == NULL ||
        strcmp(h->def.signature, SMLP_BUILD_SIGNATURE) != 0)
        return reg_fail(reg, SMLP_EABI, "build signature '%s', host '%s'",
                        h->def.signature ? h->def.signature : "(none)",
                        SMLP_BUILD_SIGNATURE);
    if (h->def.name == NULL ||
        (reg->expect_name != NULL && strcmp(h->def.name, reg->expect_name)))
        return reg_fail(reg, SMLP_EINVAL, "plugin calls itself '%s', file "
                        "says '%s'", h->def.name ? h->def.name : "(null)",
                        reg->expect_name);
    if (h->def.ops == NULL)
        return reg_fail(reg, SMLP_EINVAL, "no op table");
    for (n = 0; h->def.ops[n] != NULL; n++)
        ;
    h->ops = calloc((size_t)n + 1, sizeof(*h->ops));
    if (h->ops == NULL)
        return reg_fail(reg, SMLP_ENOMEM, "out of memory");
    for (i = 0; i < n; i++) {
        const struct smlp_op_def *op = h->def.ops[i];

        if (check_op(reg, op) != SMLP_OK)
            return reg->status;
        memcpy(&h->ops[i], op,
               op->size < sizeof(h->ops[i]) ? op->size : sizeof(h->ops[i]));
        h->n_ops = i + 1;
    }
    return SMLP_OK;
}

const struct smlp_host_api ophost__host_api = {
    .size = sizeof(struct smlp_host_api),
    .abi = SMLP_ABI_VERSION,
    .register_plugin = host_register_plugin,
    .alloc = host_alloc,
    .free = host_free,
    .log = host_log,
    .errorf = host_errorf,
    .node_name = host_node_name,
    .attr_int = host_attr_int,
    .attr_float = host_attr_float,
    .attr_string = host_attr_string,
    .attr_ints = host_attr_ints,
    .attr_floats = host_attr_floats,
    .parallel_for = ophost__parallel_for,
};

long
ophost_live_allocs(void)
{
    return atomic_load(&live_allocs);
}

/* ---- loading -------------------------------------------------------- */

struct ophost *
ophost_create(const char *name, char *err, size_t errlen)
{
    struct smlp_registry reg;
    struct ophost *h;
    smlp_plugin_init_cb init;
    const char *dir, *stem;
    char *plugin_err = NULL;
    size_t len;
    int rc;

    h = calloc(1, sizeof(*h));
    if (h == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->threads = 1;
    h->shuffle = 0x5eed;
    if (strchr(name, '/') != NULL) {
        h->path = strdup(name);
    } else {
        dir = getenv("SMLP_TEST_BUILDDIR");
        if (dir == NULL || dir[0] == '\0')
            dir = ".";
        len = strlen(dir) + strlen(name) + sizeof("/plugins/.libs/.so");
        h->path = malloc(len);
        if (h->path != NULL)
            snprintf(h->path, len, "%s/plugins/.libs/%s.so", dir, name);
    }
    if (h->path == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out_free;
    }
    h->handle = dlopen(h->path, RTLD_NOW | RTLD_LOCAL);
    if (h->handle == NULL) {
        snprintf(err, errlen, "cannot load %s: %s", h->path, dlerror());
        goto out_free;
    }
    *(void **)&init = dlsym(h->handle, SMLP_PLUGIN_ENTRY_NAME);
    if (init == NULL) {
        snprintf(err, errlen, "%s has no entry symbol '%s'", h->path,
                 SMLP_PLUGIN_ENTRY_NAME);
        goto out_close;
    }
    /* The expected name is the file's stem. */
    stem = strrchr(h->path, '/');
    stem = stem ? stem + 1 : h->path;
    memset(&reg, 0, sizeof(reg));
    reg.host = h;
    len = strcspn(stem, ".");
    reg.expect_name = strndup(stem, len);
    if (reg.expect_name == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out_close;
    }
    rc = init(&ophost__host_api, &reg, &plugin_err);
    free((char *)reg.expect_name);
    if (rc == SMLP_OK && reg.status == SMLP_OK && h->def.size == 0)
        reg_fail(&reg, SMLP_EINVAL, "init registered nothing");
    if (rc != SMLP_OK || reg.status != SMLP_OK) {
        snprintf(err, errlen, "%s: init failed (%s): %s", h->path,
                 ophost_status_name(rc != SMLP_OK ? rc : reg.status),
                 reg.err[0] ? reg.err : plugin_err ? plugin_err : "");
        host_free(plugin_err);
        goto out_close;
    }
    host_free(plugin_err);
    return h;
out_close:
    dlclose(h->handle);
out_free:
    free(h->ops);
    free(h->path);
    free(h);
    return NULL;
}

void
ophost_destroy(struct ophost *h)
{
    if (h == NULL)
        return;
    if (h->handle != NULL)
        dlclose(h->handle);
    free(h->ops);
    free(h->path);
    free(h);
}

const struct smlp_plugin_def *
ophost_plugin(const struct ophost *h)
{
    return &h->def;
}

int
ophost_op_count(const struct ophost *h)
{
    return h->n_ops;
}

const struct smlp_op_def *
ophost_op_at(const struct ophost *h, int i)
{
    return i >= 0 && i < h->n_ops ? &h->ops[i] : NULL;
}

const struct smlp_op_def *
ophost_op(const struct ophost *h, const char *name)
{
    int i;

    for (i = 0; i < h->n_ops; i++)
        if (strcmp(h->ops[i].name, name) == 0)
            return &h->ops[i];
    return NULL;
}

void
ophost_set_training(struct ophost *h, int training)
{
    h->training = training;
}

void
ophost_set_saved(struct ophost *h, int on)
{
    h->no_saved = !on;
}

void
ophost_set_threads(struct ophost *h, int threads)
{
    h->threads = threads;
    if (h->def.set_threads != NULL)
        h->def.set_threads(threads);
}

void
ophost_set_round_robin(struct ophost *h, int on)
{
    h->round_robin = on;
}

void
ophost_set_seed(struct ophost *h, uint64_t seed, uint64_t step)
{
    h->seed = seed;
    h->step = step;
}

const struct ophost_stats *
ophost_stats(const struct ophost *h)
{
    return &h->stats;
}

const char *
ophost_errmsg(const struct ophost *h)
{
    return h->errmsg;
}
