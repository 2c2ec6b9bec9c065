/*
 * cudaschedfx.h - what the suites of the runtime's GPU path on the fake
 * CUDA runtime share (check_cuda_sched.c, check_cuda_sched_train.c,
 * check_cuda_sched_fail.c): the fixture registry, graphs from JSON,
 * CPU and fake-GPU sessions compared bit for bit, three small graphs of
 * the fixture plugin tests/plugins/fakegpu.c, random DAGs of it, and
 * training sessions.
 */
#ifndef SMLP_CUDASCHEDFX_H
#define SMLP_CUDASCHEDFX_H

#include <math.h>
#include <stdint.h>
#include <time.h>

#include "testutil.h"

/* Runs f(arg) with stderr going to a file; returns what it printed. */
static inline const char *
capture_stderr(smlp_session_t *(*f)(void *), void *arg, smlp_session_t **s)
{
    int saved = tu_stderr_begin();

    *s = f(arg);
    return tu_stderr_end(saved);
}

struct make_args {
    const smlp_graph_t *g;
    smlp_registry_t *reg;
    struct smlp_session_opts o;
    struct smlp_error err;
};

static inline smlp_session_t *
make_session(void *arg)
{
    struct make_args *a = arg;

    return smlp_session_create(a->g, a->reg, &a->o, &a->err);
}

static inline smlp_session_t *
session(const smlp_graph_t *g, smlp_registry_t *reg, int device,
        int64_t batch, int threads)
{
    struct make_args a;
    smlp_session_t *s;

    a.g = g;
    a.reg = reg;
    smlp_session_opts_init(&a.o);
    a.o.device = device;
    a.o.batch = batch;
    a.o.threads = threads;
    s = make_session(&a);
    ck_assert_msg(s != NULL, "%s", a.err.msg);
    return s;
}

static inline float *
data(smlp_session_t *s, const char *name, int64_t *numel)
{
    struct smlp_tensor t;

    ck_assert_int_eq(smlp_session_tensor(s, name, &t), SMLP_OK);
    ck_assert_ptr_nonnull(t.data);
    if (numel != NULL)
        *numel = smlp_tensor_numel(&t);
    return t.data;
}

static inline void
expect_same(smlp_session_t *a, smlp_session_t *b, const char *name)
{
    int64_t n1, n2, i;
    const float *x = data(a, name, &n1), *y = data(b, name, &n2);

    ck_assert_int_eq(n1, n2);
    for (i = 0; i < n1; i++)
        ck_assert_msg(memcmp(&x[i], &y[i], sizeof(float)) == 0,
                      "%s[%lld]: %.9g (cpu) vs %.9g (fake cuda)", name,
                      (long long)i, x[i], y[i]);
}

/* x -> affine (gpu) -> host (cpu fallback) -> affine (gpu) -> reshape
 * (a view) -> out. */
static const char *graph_chain __attribute__((unused)) =
    "{\"name\": \"chain\", \"plugins\": [\"core\", \"fakegpu\"],"
    " \"tensors\": ["
    "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 33]},"
    "{\"name\": \"a1\"}, {\"name\": \"h\"}, {\"name\": \"a2\"},"
    "{\"name\": \"out\", \"kind\": \"Output\"}],"
    "\"nodes\": ["
    "{\"name\": \"n0\", \"op\": \"fakegpu.affine\", \"inputs\": [0],"
    " \"outputs\": [1], \"attrs\": [{\"name\": \"a\", \"type\": \"Float\","
    " \"f\": 2.0}, {\"name\": \"b\", \"type\": \"Float\", \"f\": 1.0}]},"
    "{\"name\": \"n1\", \"op\": \"fakegpu.host\", \"inputs\": [1],"
    " \"outputs\": [2]},"
    "{\"name\": \"n2\", \"op\": \"fakegpu.affine\", \"inputs\": [2],"
    " \"outputs\": [3], \"attrs\": [{\"name\": \"a\", \"type\": \"Float\","
    " \"f\": -0.75}, {\"name\": \"b\", \"type\": \"Float\", \"f\": 0.5}]},"
    "{\"name\": \"n3\", \"op\": \"core.reshape\", \"inputs\": [3],"
    " \"outputs\": [4], \"attrs\": [{\"name\": \"shape\", \"type\":"
    " \"Ints\", \"ints\": [-1]}]}]}";

static const char *graph_param __attribute__((unused)) =
    "{\"name\": \"param\", \"plugins\": [\"fakegpu\"], \"tensors\": ["
    "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 16]},"
    "{\"name\": \"W\", \"kind\": \"Parameter\", \"shape\": [16],"
    " \"init\": {\"kind\": \"Uniform\", \"a\": -1, \"b\": 1, \"seed\": 5}},"
    "{\"name\": \"y\", \"kind\": \"Output\"}],"
    "\"nodes\": [{\"name\": \"m\", \"op\": \"fakegpu.mul\","
    " \"inputs\": [0, 1], \"outputs\": [2]}]}";

static const char *graph_state __attribute__((unused)) =
    "{\"name\": \"state\", \"plugins\": [\"fakegpu\"], \"tensors\": ["
    "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 8]},"
    "{\"name\": \"s\", \"kind\": \"State\", \"shape\": [8],"
    " \"init\": {\"kind\": \"Constant\", \"a\": 1}},"
    "{\"name\": \"y\", \"kind\": \"Output\"}],"
    "\"nodes\": [{\"name\": \"acc\", \"op\": \"fakegpu.accum\","
    " \"inputs\": [0, 1], \"outputs\": [2]}]}";

/*
 * A random DAG over tensors [1, 64]: affine and mul on the "GPU", host on
 * the CPU, reshape views, a parameter, several outputs, wide levels.
 */
enum { DAG_LOSS = 1, DAG_NO_HOST = 2 };

static inline char *
random_dag(unsigned seed, int n_nodes, int flags)
{
    int with_loss = flags & DAG_LOSS;
    size_t cap = 65536, len = 0;
    char *j = malloc(cap);
    int i, n_t = 2;

    ck_assert_ptr_nonnull(j);
#define PUT(...)                                                             \
    len += (size_t)snprintf(j + len, cap - len, __VA_ARGS__)
    PUT("{\"name\": \"dag\", \"plugins\": [\"core\", \"fakegpu\"],"
        " \"tensors\": [{\"name\": \"x\", \"kind\": \"Input\","
        " \"shape\": [-1, 64]}, {\"name\": \"W\", \"kind\": \"Parameter\","
        " \"shape\": [64], \"init\": {\"kind\":"
        " \"Uniform\", \"a\": -1, \"b\": 1, \"seed\": %u}}",
        seed);
    for (i = 0; i < n_nodes; i++)
        PUT(", {\"name\": \"t%d\"%s}", i,
            i >= n_nodes - 3 || i % 7 == 3 ? ", \"kind\": \"Output\"" : "");
    if (with_loss) /* loss = mean of the last tensor */
        PUT(", {\"name\": \"loss\", \"kind\": \"Output\"}");
    PUT("], \"nodes\": [");
    for (i = 0; i < n_nodes; i++) {
        /* Inputs among the last few tensors: wide, with reuse. */
        int back = 1 + (int)(rand_r(&seed) % 5u);
        int in = n_t - back < 0 ? 0 : n_t - back;
        int kind = (int)(rand_r(&seed) % 8u);

        if (in == 1)
            in = 0; /* W is not an activation */
        PUT("%s{\"name\": \"n%d\", ", i ? ", " : "", i);
        if (kind < 3)
            PUT("\"op\": \"fakegpu.affine\", \"inputs\": [%d], \"attrs\": "
                "[{\"name\": \"a\", \"type\": \"Float\", \"f\": %g}, "
                "{\"name\": \"b\", \"type\": \"Float\", \"f\": %g}]",
                in, 0.5 + (rand_r(&seed) % 100) / 100.0,
                (rand_r(&seed) % 100) / 50.0 - 1.0);
        else if (kind < 5 && !(flags & DAG_NO_HOST))
            PUT("\"op\": \"fakegpu.host\", \"inputs\": [%d]", in);
        else if (kind < 5) /* host's x + 1, on the GPU */
            PUT("\"op\": \"fakegpu.affine\", \"inputs\": [%d], \"attrs\": "
                "[{\"name\": \"a\", \"type\": \"Float\", \"f\": 1}, "
                "{\"name\": \"b\", \"type\": \"Float\", \"f\": 1}]",
                in);
        else if (kind < 6)
            PUT("\"op\": \"core.reshape\", \"inputs\": [%d], \"attrs\": "
                "[{\"name\": \"shape\", \"type\": \"Ints\", \"ints\": "
                "[0, 64]}]",
                in);
        else {
            int other = (int)(rand_r(&seed) % 3u);
            int second = n_t - 1 - (int)(rand_r(&seed) % 3u);

            if (second < 2)
                second = 0;
            if (other == 0)
                second = 1; /* the parameter */
            PUT("\"op\": \"fakegpu.mul\", \"inputs\": [%d, %d]", in, second);
        }
        PUT(", \"outputs\": [%d]}", n_t);
        n_t++;
    }
    if (with_loss)
        PUT(", {\"name\": \"mean\", \"op\": \"fakegpu.mean\", \"inputs\":"
            " [%d], \"outputs\": [%d]}", n_t - 1, n_t);
    PUT("]}");
#undef PUT
    ck_assert_uint_lt(len, cap);
    return j;
}

/* make_train's registry. */
static smlp_registry_t *registry_for_train __attribute__((unused));

/* A training session (loss "loss", SGD with momentum) on `device`. */
static inline smlp_session_t *
train_session(const smlp_graph_t *g, smlp_registry_t *reg, int device,
              int threads, smlp_optim_t **opt)
{
    struct smlp_optim_opts oo;
    struct smlp_session_opts o;
    struct smlp_error err;
    smlp_session_t *s;

    smlp_session_opts_init(&o);
    o.device = device;
    o.threads = threads;
    o.training = 1;
    o.loss = "loss";
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    smlp_optim_opts_init(&oo);
    oo.kind = SMLP_OPTIM_SGD;
    oo.weight_decay = 0;
    *opt = smlp_optim_create(s, &oo, &err);
    ck_assert_msg(*opt != NULL, "%s", err.msg);
    return s;
}

#endif
