/*
 * ophost_impl.h - the insides of the op test harness, shared by its
 * files (ophost.c: the host table and loading; ophost_pfor.c:
 * parallel_for; ophost_run.c: tensors and running an op).  Tests include
 * ophost.h only.
 */
#ifndef SMLP_TEST_OPHOST_IMPL_H
#define SMLP_TEST_OPHOST_IMPL_H

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

/* The host table handed to plugins (ophost.c). */
extern const struct smlp_host_api ophost__host_api;

/* host->parallel_for (ophost_pfor.c). */
int ophost__parallel_for(const struct smlp_node *node, int64_t n_tasks,
                         int (*fn)(void *arg, int64_t task, int worker),
                         void *arg);

#endif
