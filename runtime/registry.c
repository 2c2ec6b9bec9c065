/*
 * registry.c - the plugin loader and the op registry.
 *
 * A plugin is NAME.so, found by name in the search path (--plugin-path,
 * $SMLP_PLUGIN_PATH, the build tree, the install dir).  It is opened with
 * dlopen(RTLD_NOW | RTLD_LOCAL) and its one entry point, smlp_plugin_init,
 * registers a struct smlp_plugin_def through the host table.  Every struct
 * the plugin hands over is copied into a zeroed host struct, reading at
 * most the size the plugin declares (fields it does not know read as 0);
 * a different ABI major or build signature is refused, naming the plugin,
 * its file and both values.  Plugins are closed only when the registry is
 * destroyed, after every session using their kernels.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#ifndef SMLP_BUILD_PLUGIN_DIR
#define SMLP_BUILD_PLUGIN_DIR ""
#endif
#ifndef SMLP_INSTALL_PLUGIN_DIR
#define SMLP_INSTALL_PLUGIN_DIR "/usr/local/lib/smlp"
#endif

/* Smallest sizes the host accepts: every ABI 1.0 field present. */
#define MIN_PLUGIN_DEF_SIZE offsetof(struct smlp_plugin_def, set_threads)
#define MIN_OP_DEF_SIZE offsetof(struct smlp_op_def, backward)
#define MIN_KERNEL_DEF_SIZE offsetof(struct smlp_kernel_def, score)

static int
add_dirs(smlp_registry_t *reg, const char *list)
{
    const char *p = list, *end;

    while (p != NULL && *p != '\0') {
        char **dirs;
        size_t len;

        end = strchr(p, ':');
        len = end ? (size_t)(end - p) : strlen(p);
        if (len > 0) {
            dirs = smlp__realloc(reg->dirs,
                                 (size_t)(reg->n_dirs + 1) * sizeof(*dirs));
            if (dirs == NULL)
                return SMLP_ENOMEM;
            reg->dirs = dirs;
            reg->dirs[reg->n_dirs] = smlp__malloc(len + 1);
            if (reg->dirs[reg->n_dirs] == NULL)
                return SMLP_ENOMEM;
            memcpy(reg->dirs[reg->n_dirs], p, len);
            reg->dirs[reg->n_dirs][len] = '\0';
            reg->n_dirs++;
        }
        p = end ? end + 1 : NULL;
    }
    return SMLP_OK;
}

SMLP_API smlp_registry_t *
smlp_registry_create(const char *plugin_path, struct smlp_error *err)
{
    smlp_registry_t *reg;
    struct stat st;
    size_t len = 1;
    int i;

    reg = smlp__calloc(1, sizeof(*reg));
    if (reg == NULL)
        goto fail;
    reg->refs = 1; /* the caller's, dropped by smlp_registry_destroy */
    if (add_dirs(reg, plugin_path) != SMLP_OK ||
        add_dirs(reg, getenv("SMLP_PLUGIN_PATH")) != SMLP_OK)
        goto fail;
    if (SMLP_BUILD_PLUGIN_DIR[0] != '\0' &&
        stat(SMLP_BUILD_PLUGIN_DIR, &st) == 0 && S_ISDIR(st.st_mode) &&
        add_dirs(reg, SMLP_BUILD_PLUGIN_DIR) != SMLP_OK)
        goto fail;
    if (add_dirs(reg, SMLP_INSTALL_PLUGIN_DIR) != SMLP_OK)
        goto fail;
    for (i = 0; i < reg->n_dirs; i++)
        len += strlen(reg->dirs[i]) + 1;
    reg->search_path = smlp__malloc(len);
    if (reg->search_path == NULL)
        goto fail;
    reg->search_path[0] = '\0';
    for (i = 0; i < reg->n_dirs; i++) {
        if (i > 0)
            strcat(reg->search_path, ":");
        strcat(reg->search_path, reg->dirs[i]);
    }
    return reg;
fail:
    smlp__seterr(err, SMLP_ENOMEM, "out of memory creating the registry");
    smlp_registry_destroy(reg);
    return NULL;
}

static void
plugin_free(struct smlp__plugin *p)
{
    if (p == NULL)
        return;
    if (p->handle != NULL)
        dlclose(p->handle);
    smlp__free(p->name);
    smlp__free(p->path);
    smlp__free(p);
}

static void
registry_free(smlp_registry_t *reg)
{
    int i;

    for (i = 0; i < reg->n_ops; i++) {
        smlp__free(reg->ops[i]->kernels);
        smlp__free(reg->ops[i]);
    }
    smlp__free(reg->ops);
    for (i = 0; i < reg->n_plugins; i++)
        plugin_free(reg->plugins[i]);
    smlp__free(reg->plugins);
    for (i = 0; i < reg->n_dirs; i++)
        smlp__free(reg->dirs[i]);
    smlp__free(reg->dirs);
    smlp__free(reg->search_path);
    smlp__free(reg);
}

/* See internal.h. */
void
smlp__registry_hold(smlp_registry_t *reg)
{
    __atomic_add_fetch(&reg->refs, 1, __ATOMIC_RELAXED);
}

void
smlp__registry_release(smlp_registry_t *reg)
{
    if (reg != NULL && __atomic_sub_fetch(&reg->refs, 1, __ATOMIC_ACQ_REL) == 0)
        registry_free(reg);
}

/* With sessions alive this only drops the caller's reference: the last
 * smlp_session_destroy unloads the plugins and frees the registry. */
SMLP_API void
smlp_registry_destroy(smlp_registry_t *reg)
{
    smlp__registry_release(reg);
}

static int
cmp_ops(const void *a, const void *b)
{
    const struct smlp__op *const *x = a;
    const struct smlp__op *const *y = b;

    return strcmp((*x)->def.name, (*y)->def.name);
}

const struct smlp__op *
smlp__registry_find(const smlp_registry_t *reg, const char *name)
{
    int lo = 0, hi = reg->n_ops - 1;

    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        int c = strcmp(reg->ops[mid]->def.name, name);
        if (c == 0)
            return reg->ops[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

struct smlp__plugin *
smlp__registry_plugin(const smlp_registry_t *reg, const char *name)
{
    int i;

    for (i = 0; i < reg->n_plugins; i++)
        if (strcmp(reg->plugins[i]->name, name) == 0)
            return reg->plugins[i];
    return NULL;
}

static int
load_fail(smlp_registry_t *reg, int status, const char *fmt, ...)
{
    va_list ap;

    if (reg->load_status != SMLP_OK)
        return reg->load_status; /* keep the first error */
    reg->load_status = status;
    va_start(ap, fmt);
    vsnprintf(reg->load_err, sizeof(reg->load_err), fmt, ap);
    va_end(ap);
    return status;
}

static int
abi_check(smlp_registry_t *reg, const char *what, uint32_t size,
          uint32_t abi, size_t min_size)
{
    struct smlp__plugin *p = reg->loading;

    if (SMLP_ABI_MAJOR_OF(abi) != SMLP_ABI_MAJOR)
        return load_fail(reg, SMLP_EABI,
                         "plugin '%s' (%s): %s is for ABI %u.%u, this host "
                         "has ABI %u.%u",
                         p->name, p->path, what, SMLP_ABI_MAJOR_OF(abi),
                         SMLP_ABI_MINOR_OF(abi), SMLP_ABI_MAJOR,
                         SMLP_ABI_MINOR);
    if (size < min_size)
        return load_fail(reg, SMLP_EABI,
                         "plugin '%s' (%s): %s declares size %u, ABI %u.%u "
                         "needs at least %zu",
                         p->name, p->path, what, size, SMLP_ABI_MAJOR_OF(abi),
                         SMLP_ABI_MINOR_OF(abi), min_size);
    return SMLP_OK;
}

/* Nonzero when def lacks what every op needs; why in buf. */
static int
op_def_bad(const struct smlp_op_def *def, char *buf, size_t len)
{
    if (def->infer == NULL)
        snprintf(buf, len, "no infer()");
    else if (def->kernels == NULL || def->kernels[0] == NULL)
        snprintf(buf, len, "no kernel");
    else if (def->min_inputs < 0 || def->max_inputs < def->min_inputs ||
             def->max_inputs > SMLP__MAX_NODE_IO)
        snprintf(buf, len, "inputs %d to %d, not within 0 to %d",
                 (int)def->min_inputs, (int)def->max_inputs,
                 SMLP__MAX_NODE_IO);
    else if (def->n_outputs < 1 || def->n_outputs > SMLP__MAX_NODE_IO)
        snprintf(buf, len, "%d outputs, not within 1 to %d",
                 (int)def->n_outputs, SMLP__MAX_NODE_IO);
    else
        return 0;
    return 1;
}

static int
register_op(smlp_registry_t *reg, const struct smlp_op_def *src)
{
    struct smlp__plugin *p = reg->loading;
    struct smlp__op *op, **ops;
    size_t plen = strlen(p->name);
    int i, n;
    char what[200];

    if (abi_check(reg, "an op definition", src->size, src->abi,
                  MIN_OP_DEF_SIZE) != SMLP_OK)
        return reg->load_status;
    op = smlp__calloc(1, sizeof(*op));
    if (op == NULL)
        return load_fail(reg, SMLP_ENOMEM, "out of memory");
    memcpy(&op->def, src,
           src->size < sizeof(op->def) ? src->size : sizeof(op->def));
    op->plugin = p;
    if (op->def.name == NULL || strncmp(op->def.name, p->name, plen) != 0 ||
        op->def.name[plen] != '.' || op->def.name[plen + 1] == '\0') {
        smlp__free(op);
        return load_fail(reg, SMLP_EINVAL,
                         "plugin '%s' (%s): op '%s' must be named '%s.OP'",
                         p->name, p->path,
                         src->name ? src->name : "(null)", p->name);
    }
    if (smlp__registry_find(reg, op->def.name) != NULL) {
        const char *name = op->def.name;
        smlp__free(op);
        return load_fail(reg, SMLP_EDUPLICATE,
                         "plugin '%s' (%s): op '%s' is registered twice",
                         p->name, p->path, name);
    }
    if (op_def_bad(&op->def, what, sizeof(what))) {
        const char *name = op->def.name;
        smlp__free(op);
        return load_fail(reg, SMLP_EINVAL, "plugin '%s' (%s): op '%s': %s",
                         p->name, p->path, name, what);
    }
    for (n = 0; op->def.kernels[n] != NULL; n++)
        ;
    op->kernels = smlp__calloc((size_t)n, sizeof(*op->kernels));
    if (op->kernels == NULL) {
        smlp__free(op);
        return load_fail(reg, SMLP_ENOMEM, "out of memory");
    }
    for (i = 0; i < n; i++) {
        const struct smlp_kernel_def *k = op->def.kernels[i];

        snprintf(what, sizeof(what), "kernel %d of op '%s'", i,
                 op->def.name);
        if (abi_check(reg, what, k->size, k->abi, MIN_KERNEL_DEF_SIZE) !=
                SMLP_OK ||
            (k->run == NULL &&
             load_fail(reg, SMLP_EINVAL, "plugin '%s' (%s): %s has no run()",
                       p->name, p->path, what) != SMLP_OK) ||
            ((k->device < 0 || k->device >= SMLP_DEVICE_COUNT) &&
             load_fail(reg, SMLP_EINVAL,
                       "plugin '%s' (%s): %s has device %d, not one of "
                       "enum smlp_device",
                       p->name, p->path, what, (int)k->device) != SMLP_OK)) {
            smlp__free(op->kernels);
            smlp__free(op);
            return reg->load_status;
        }
        memcpy(&op->kernels[i].def, k,
               k->size < sizeof(*k) ? k->size : sizeof(*k));
    }
    op->n_kernels = n;
    op->def.kernels = NULL; /* plugin memory; use op->kernels */
    ops = smlp__realloc(reg->ops, (size_t)(reg->n_ops + 1) * sizeof(*ops));
    if (ops == NULL) {
        smlp__free(op->kernels);
        smlp__free(op);
        return load_fail(reg, SMLP_ENOMEM, "out of memory");
    }
    reg->ops = ops;
    reg->ops[reg->n_ops++] = op;
    qsort(reg->ops, (size_t)reg->n_ops, sizeof(*reg->ops), cmp_ops);
    return SMLP_OK;
}

/* host->register_plugin: legal only while the plugin's init runs. */
static int
host_register_plugin(struct smlp_registry *reg,
                     const struct smlp_plugin_def *def)
{
    struct smlp__plugin *p;
    int i;

    if (reg == NULL || reg->loading == NULL || def == NULL)
        return SMLP_EINVAL;
    p = reg->loading;
    if (p->def.size != 0)
        return load_fail(reg, SMLP_EDUPLICATE,
                         "plugin '%s' (%s): register_plugin called twice",
                         p->name, p->path);
    if (abi_check(reg, "the plugin definition", def->size, def->abi,
                  MIN_PLUGIN_DEF_SIZE) != SMLP_OK)
        return reg->load_status;
    memcpy(&p->def, def,
           def->size < sizeof(p->def) ? def->size : sizeof(p->def));
    if (p->def.signature == NULL ||
        strcmp(p->def.signature, SMLP_BUILD_SIGNATURE) != 0)
        return load_fail(reg, SMLP_EABI,
                         "plugin '%s' (%s): build signature '%s' differs "
                         "from the host's '%s'",
                         p->name, p->path,
                         p->def.signature ? p->def.signature : "(none)",
                         SMLP_BUILD_SIGNATURE);
    if (p->def.name == NULL || strcmp(p->def.name, p->name) != 0)
        return load_fail(reg, SMLP_EINVAL,
                         "plugin file %s calls itself '%s', expected '%s'",
                         p->path, p->def.name ? p->def.name : "(null)",
                         p->name);
    if (p->def.ops == NULL)
        return load_fail(reg, SMLP_EINVAL, "plugin '%s' (%s): no op table",
                         p->name, p->path);
    for (i = 0; p->def.ops[i] != NULL; i++)
        if (register_op(reg, p->def.ops[i]) != SMLP_OK)
            return reg->load_status;
    p->def.ops = NULL; /* plugin memory */
    return SMLP_OK;
}

/* Removes the ops of a plugin whose load failed half way. */
static void
unregister_ops(smlp_registry_t *reg, struct smlp__plugin *p)
{
    int i, j = 0;

    for (i = 0; i < reg->n_ops; i++) {
        if (reg->ops[i]->plugin == p) {
            smlp__free(reg->ops[i]->kernels);
            smlp__free(reg->ops[i]);
        } else {
            reg->ops[j++] = reg->ops[i];
        }
    }
    reg->n_ops = j;
}

/*
 * The message for an entry point that returned SMLP_EABI: the plugin's
 * own ABI when it exports smlp_plugin_abi (SMLP_PLUGIN_DEFINE does), and
 * its message when it wrote one.
 */
static void
abi_refused(const struct smlp__plugin *p, const char *errmsg,
            struct smlp_error *err)
{
    const uint32_t *abi = dlsym(p->handle, SMLP_PLUGIN_ABI_NAME);
    char built[96] = "";

    if (abi != NULL)
        snprintf(built, sizeof(built),
                 ": it was built for ABI %u.%u (rebuild it against this "
                 "smlp's headers)",
                 SMLP_ABI_MAJOR_OF(*abi), SMLP_ABI_MINOR_OF(*abi));
    smlp__seterr(err, SMLP_EABI,
                 "plugin '%s' (%s) refused host ABI %u.%u%s%s%s", p->name,
                 p->path, SMLP_ABI_MAJOR, SMLP_ABI_MINOR, built,
                 errmsg ? ": " : "", errmsg ? errmsg : "");
}

SMLP_API int
smlp_registry_load(smlp_registry_t *reg, const char *name,
                   struct smlp_error *err)
{
    struct smlp__plugin *p, **plugins;
    smlp_plugin_init_cb init;
    char *errmsg = NULL;
    size_t len;
    int i, rc;

    if (reg == NULL || name == NULL)
        return smlp__seterr(err, SMLP_EINVAL,
                            "smlp_registry_load: no %s (NULL)",
                            reg == NULL ? "registry" : "plugin name");
    if (smlp__registry_plugin(reg, name) != NULL)
        return SMLP_OK;
    for (i = 0; name[i]; i++)
        if (name[i] == '/' || name[i] == '.')
            return smlp__seterr(err, SMLP_EINVAL,
                                "plugin name '%s' looks like a path; plugins "
                                "are loaded by name from: %s",
                                name, reg->search_path);
    p = smlp__calloc(1, sizeof(*p));
    if (p == NULL || (p->name = smlp__strdup(name)) == NULL) {
        plugin_free(p);
        return smlp__seterr(err, SMLP_ENOMEM, "out of memory");
    }
    for (i = 0; i < reg->n_dirs; i++) {
        struct stat st;

        len = strlen(reg->dirs[i]) + strlen(name) + 5;
        smlp__free(p->path);
        p->path = smlp__malloc(len);
        if (p->path == NULL) {
            plugin_free(p);
            return smlp__seterr(err, SMLP_ENOMEM, "out of memory");
        }
        snprintf(p->path, len, "%s/%s.so", reg->dirs[i], name);
        if (stat(p->path, &st) == 0 && S_ISREG(st.st_mode))
            break;
    }
    if (i == reg->n_dirs) {
        char note[300] = "";

        /* A search-path entry that is a file (a --plugin-path naming the
         * .so itself, say) is worth saying. */
        for (i = 0; i < reg->n_dirs && note[0] == '\0'; i++) {
            struct stat st;

            if (stat(reg->dirs[i], &st) == 0 && !S_ISDIR(st.st_mode))
                snprintf(note, sizeof(note),
                         " (%s is not a directory: the path lists "
                         "directories)",
                         reg->dirs[i]);
        }
        plugin_free(p);
        return smlp__seterr(err, SMLP_ENOPLUGIN,
                            "plugin '%s' not found: no %s.so in %s%s", name,
                            name, reg->search_path, note);
    }
    p->handle = dlopen(p->path, RTLD_NOW | RTLD_LOCAL);
    if (p->handle == NULL) {
        rc = smlp__seterr(err, SMLP_ENOPLUGIN,
                          "plugin '%s': cannot load %s: %s", name, p->path,
                          dlerror());
        plugin_free(p);
        return rc;
    }
    *(void **)&init = dlsym(p->handle, SMLP_PLUGIN_ENTRY_NAME);
    if (init == NULL) {
        rc = smlp__seterr(err, SMLP_ENOPLUGIN,
                          "plugin '%s' (%s) has no entry symbol '%s'", name,
                          p->path, SMLP_PLUGIN_ENTRY_NAME);
        plugin_free(p);
        return rc;
    }
    reg->loading = p;
    reg->load_status = SMLP_OK;
    reg->load_err[0] = '\0';
    rc = init(&smlp__host_api, reg, &errmsg);
    reg->loading = NULL;
    if (rc == SMLP_OK && reg->load_status == SMLP_OK && p->def.size == 0)
        load_fail(reg, SMLP_EINVAL,
                  "plugin '%s' (%s): init registered nothing", name, p->path);
    if (rc != SMLP_OK || reg->load_status != SMLP_OK) {
        if (reg->load_status != SMLP_OK)
            smlp__seterr(err, reg->load_status, "%s", reg->load_err);
        else if (rc == SMLP_EABI)
            abi_refused(p, errmsg, err);
        else
            smlp__seterr(err, rc < 0 ? rc : SMLP_EINVAL,
                         "plugin '%s' (%s): init failed (status %d, %s)%s%s",
                         name, p->path, rc, smlp_status_name(rc),
                         errmsg ? ": " : "", errmsg ? errmsg : "");
        rc = err ? err->status : SMLP_EINVAL;
        smlp__free(errmsg);
        unregister_ops(reg, p);
        plugin_free(p);
        return rc;
    }
    smlp__free(errmsg);
    plugins = smlp__realloc(reg->plugins,
                            (size_t)(reg->n_plugins + 1) * sizeof(*plugins));
    if (plugins == NULL) {
        unregister_ops(reg, p);
        plugin_free(p);
        return smlp__seterr(err, SMLP_ENOMEM, "out of memory");
    }
    reg->plugins = plugins;
    reg->plugins[reg->n_plugins++] = p;
    return SMLP_OK;
}

SMLP_API const char *
smlp_registry_search_path(const smlp_registry_t *reg)
{
    return reg != NULL ? reg->search_path : NULL;
}

SMLP_API int
smlp_registry_op_count(const smlp_registry_t *reg)
{
    return reg != NULL ? reg->n_ops : 0;
}

SMLP_API const char *
smlp_registry_op_name(const smlp_registry_t *reg, int i)
{
    if (reg == NULL || i < 0 || i >= reg->n_ops)
        return NULL;
    return reg->ops[i]->def.name;
}

SMLP_API const struct smlp_op_def *
smlp_registry_op_def(const smlp_registry_t *reg, const char *name)
{
    const struct smlp__op *op;

    if (reg == NULL || name == NULL)
        return NULL;
    op = smlp__registry_find(reg, name);
    return op != NULL ? &op->def : NULL;
}

/* ---- the host table ---------------------------------------------------- */

static uv_once_t log_once = UV_ONCE_INIT;
static int log_max = SMLP_LOG_WARN;

static void
read_log_env(void)
{
    const char *env = getenv("SMLP_LOG");

    if (env != NULL)
        log_max = atoi(env);
}

int
smlp__log_max(void)
{
    uv_once(&log_once, read_log_env);
    return log_max;
}

static void
host_log(int level, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    int max = smlp__log_max();
    va_list ap;

    if (level > max || level < 0 || level >= SMLP_LOG_LEVEL_COUNT)
        return;
    fprintf(stderr, "smlp: %s: ", names[level]);
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
        return; /* keep the first message */
    va_start(ap, fmt);
    vsnprintf(n->err, sizeof(n->err), fmt, ap);
    va_end(ap);
}

static const char *
host_node_name(const struct smlp_node *node)
{
    return node->ir->name;
}

static const struct smlp__attr_ir *
find_attr(const struct smlp_node *node, const char *name, int type, int *rc)
{
    static const char *const tnames[] = {"int", "float", "string", "ints",
                                         "floats"};
    int32_t i;

    for (i = 0; i < node->ir->n_attrs; i++) {
        const struct smlp__attr_ir *a = &node->ir->attrs[i];
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
    *rc = SMLP_DECLINED;
    return NULL;
}

static int
host_attr_int(const struct smlp_node *node, const char *name, int64_t *out)
{
    int rc;
    const struct smlp__attr_ir *a = find_attr(node, name, SMLP_ATTR_INT, &rc);

    if (a != NULL)
        *out = a->i;
    return rc;
}

static int
host_attr_float(const struct smlp_node *node, const char *name, double *out)
{
    int rc;
    const struct smlp__attr_ir *a =
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
    const struct smlp__attr_ir *a =
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
    const struct smlp__attr_ir *a = find_attr(node, name, SMLP_ATTR_INTS, &rc);

    if (a != NULL) {
        *out = a->ints;
        *n = a->n_values;
    }
    return rc;
}

static int
host_attr_floats(const struct smlp_node *node, const char *name,
                 const double **out, size_t *n)
{
    int rc;
    const struct smlp__attr_ir *a =
        find_attr(node, name, SMLP_ATTR_FLOATS, &rc);

    if (a != NULL) {
        *out = a->floats;
        *n = a->n_values;
    }
    return rc;
}

static void *
host_alloc(size_t n)
{
    return smlp__malloc(n);
}

const struct smlp_host_api smlp__host_api = {
    sizeof(struct smlp_host_api),
    SMLP_ABI_VERSION,
    host_register_plugin,
    host_alloc,
    smlp__free,
    host_log,
    host_errorf,
    host_node_name,
    host_attr_int,
    host_attr_float,
    host_attr_string,
    host_attr_ints,
    host_attr_floats,
    smlp__host_parallel_for, /* team.c */
};
