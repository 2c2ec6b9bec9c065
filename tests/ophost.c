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
 * parallel_for runs the tasks on ophost_set_threads(n) threads (the
 * calling thread and n - 1 pthreads started for the call) and, so that a
 * kernel whose results depend on which thread runs which task or in what
 * order shows it, hands them out in a shuffled order that changes from
 * call to call.  It checks that each task ran exactly once.  A nested call
 * (from inside a task) runs serially, also shuffled, as the runtime's
 * does (in order there).  With ophost_set_round_robin the shuffled tasks
 * are dealt to the workers like cards, so which worker id runs which
 * task no longer depends on timing.
 *
 * Workspaces and saved bytes are followed by a guard zone of canary bytes
 * that is checked after the kernel returns (check_guard): a write past
 * the end fails the call, however the threads were scheduled.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ophost.h"

#define ERRLEN 1024
#define ALIGN 64
#define POISON 0xff
#define MAX_IO 32 /* most inputs or outputs of a node */
#define CANARY 0xa5 /* the guard zone after workspaces (check_guard) */
#define GUARD_MIN 4096
#define GUARD_MAX (1 << 20)

/* The node under test, opaque to plugins. */
struct smlp_node {
    struct ophost *host;
    const char *name;
    const char *op;
    const struct ophost_attr *attrs;
    char err[ERRLEN];
};

/* What register_plugin fills. */
struct smlp_registry {
    struct ophost *host;
    const char *expect_name;
    int status;
    char err[ERRLEN];
};

struct ophost {
    void *handle;
    char *path;
    struct smlp_plugin_def def;
    int n_ops;
    struct smlp_op_def *ops;
    int training;
    int no_saved;   /* ophost_set_saved(h, 0) */
    int threads;
    int round_robin; /* ophost_set_round_robin */
    uint64_t seed, step;
    uint64_t shuffle; /* parallel_for's shuffle state */
    struct ophost_stats stats;
    char errmsg[ERRLEN];
};

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

/* ---- parallel_for ---------------------------------------------------- */

struct pjob {
    int (*fn)(void *arg, int64_t task, int worker);
    void *arg;
    int64_t n_tasks;
    int64_t *order;          /* a permutation of [0, n_tasks) */
    atomic_int *runs;        /* per task: times it ran */
    atomic_llong next;       /* the next entry of order to hand out */
    atomic_int rc;
    atomic_int bad_worker;
    int threads;
    int round_robin; /* worker w runs entries w, w + threads, ... of order */
};

struct pworker {
    struct pjob *job;
    int id;
};

/* The calling thread's depth of tasks and its worker id there. */
static _Thread_local int in_task;
static _Thread_local int cur_worker;

static uint64_t
splitmix(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Runs entry k of j's order as worker w. */
static void
pjob_run(struct pjob *j, int w, int64_t k)
{
    int64_t task = j->order[k];
    int r, zero;

    if (w < 0 || w >= j->threads)
        atomic_store(&j->bad_worker, 1);
    atomic_fetch_add(&j->runs[task], 1);
    r = j->fn(j->arg, task, w);
    if (r != 0) {
        zero = 0;
        atomic_compare_exchange_strong(&j->rc, &zero, r);
    }
}

static void
pjob_work(struct pjob *j, int w)
{
    int64_t k;
    int saved = cur_worker;

    in_task++;
    cur_worker = w;
    if (j->round_robin)
        for (k = w; k < j->n_tasks; k += j->threads)
            pjob_run(j, w, k);
    else
        while ((k = atomic_fetch_add(&j->next, 1)) < j->n_tasks)
            pjob_run(j, w, k);
    cur_worker = saved;
    in_task--;
}

static void *
pjob_thread(void *arg)
{
    struct pworker *pw = arg;

    pjob_work(pw->job, pw->id);
    return NULL;
}

static int
host_parallel_for(const struct smlp_node *node, int64_t n_tasks,
                  int (*fn)(void *arg, int64_t task, int worker), void *arg)
{
    struct ophost *h = node != NULL ? node->host : NULL;
    struct pworker pw[64];
    pthread_t tid[64];
    struct pjob j;
    int64_t k, r;
    int threads, started = 0, i, rc;

    if (n_tasks <= 0)
        return 0;
    if (h == NULL || fn == NULL) {
        fprintf(stderr, "ophost: parallel_for without a node under test\n");
        abort();
    }
    memset(&j, 0, sizeof(j));
    j.fn = fn;
    j.arg = arg;
    j.n_tasks = n_tasks;
    j.order = malloc((size_t)n_tasks * sizeof(*j.order));
    j.runs = calloc((size_t)n_tasks, sizeof(*j.runs));
    if (j.order == NULL || j.runs == NULL) {
        fprintf(stderr, "ophost: parallel_for: out of memory\n");
        abort();
    }
    for (k = 0; k < n_tasks; k++)
        j.order[k] = k;
    for (k = n_tasks - 1; k > 0; k--) { /* Fisher-Yates */
        int64_t tmp;

        r = (int64_t)(splitmix(&h->shuffle) % (uint64_t)(k + 1));
        tmp = j.order[k];
        j.order[k] = j.order[r];
        j.order[r] = tmp;
    }
    threads = h->threads < 1 ? 1 : h->threads > 64 ? 64 : h->threads;
    j.threads = threads;
    atomic_init(&j.next, 0);
    atomic_init(&j.rc, 0);
    atomic_init(&j.bad_worker, 0);
    if (in_task > 0) {
        pjob_work(&j, cur_worker); /* nested: serial, as the outer worker */
    } else {
        j.round_robin = h->round_robin;
        for (i = 1; i < threads && i < n_tasks; i++) {
            pw[i].job = &j;
            pw[i].id = i;
            if (pthread_create(&tid[i], NULL, pjob_thread, &pw[i]) != 0)
                break;
            started = i;
        }
        pjob_work(&j, 0);
        for (i = 1; i <= started; i++)
            pthread_join(tid[i], NULL);
        /* Round robin: the shares of threads that did not start. */
        for (i = started + 1; j.round_robin && i < threads && i < n_tasks;
             i++)
            pjob_work(&j, i);
    }
    for (k = 0; k < n_tasks; k++)
        if (atomic_load(&j.runs[k]) != 1) {
            fprintf(stderr, "ophost: parallel_for: task %lld of %lld ran "
                    "%d times\n", (long long)k, (long long)n_tasks,
                    atomic_load(&j.runs[k]));
            abort();
        }
    if (atomic_load(&j.bad_worker)) {
        fprintf(stderr, "ophost: parallel_for: worker id out of range\n");
        abort();
    }
    rc = atomic_load(&j.rc);
    free(j.order);
    free(j.runs);
    return rc;
}

static const struct smlp_host_api host_api = {
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
    .parallel_for = host_parallel_for,
};

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
    rc = init(&host_api, &reg, &plugin_err);
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

long
ophost_live_allocs(void)
{
    return atomic_load(&live_allocs);
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
    c->ictx.host = &host_api;
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
    k.host = &host_api;
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
    b.host = &host_api;
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
