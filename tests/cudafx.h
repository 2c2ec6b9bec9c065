/*
 * cudafx.h - what check_cuda.c (the forward on the GPU) and
 * check_cuda_train.c (the backward on the GPU) share: the fixture
 * registry, graphs from JSON, runs, the normwise relative error of a
 * tensor between a CPU and a GPU session, the JSON pieces the graphs are
 * written with, and the main both call, cudafx_main: the probe for a GPU,
 * the checks without one and the skip (exit 77), or the tests.
 */
#ifndef SMLP_CUDAFX_H
#define SMLP_CUDAFX_H

#include <fcntl.h>
#include <math.h>
#include <stdint.h>

#include "testutil.h"

#define TOL 1e-4

typedef void (*prep_cb)(smlp_session_t *s);

/* JSON pieces. */
#define IN(name, shape)                                                      \
    "{\"name\": \"" name "\", \"kind\": \"Input\", \"shape\": " shape "}"
#define IN_INIT(name, dtype, shape, kind, a, b)                              \
    "{\"name\": \"" name "\", \"kind\": \"Input\", \"dtype\": \"" dtype      \
    "\", \"shape\": " shape ", \"init\": {\"kind\": \"" kind "\", \"a\": " a \
    ", \"b\": " b ", \"seed\": 11}}"
#define PARAM(name, shape, seed)                                             \
    "{\"name\": \"" name "\", \"kind\": \"Parameter\", \"shape\": " shape    \
    ", \"init\": {\"kind\": \"Uniform\", \"a\": -1, \"b\": 1, \"seed\": "   \
    seed "}}"
#define STATE(name, shape, a, b, seed)                                       \
    "{\"name\": \"" name "\", \"kind\": \"State\", \"shape\": " shape        \
    ", \"init\": {\"kind\": \"Uniform\", \"a\": " a ", \"b\": " b           \
    ", \"seed\": " seed "}}"
#define ACT(name) "{\"name\": \"" name "\"}"
#define OUT(name) "{\"name\": \"" name "\", \"kind\": \"Output\"}"
#define NODE(name, op, ins, outs, attrs)                                     \
    "{\"name\": \"" name "\", \"op\": \"" op "\", \"inputs\": " ins          \
    ", \"outputs\": " outs ", \"attrs\": [" attrs "]}"
#define AINT(name, v)                                                        \
    "{\"name\": \"" name "\", \"type\": \"Int\", \"i\": " v "}"
#define AFLOAT(name, v)                                                      \
    "{\"name\": \"" name "\", \"type\": \"Float\", \"f\": " v "}"
#define ASTR(name, v)                                                        \
    "{\"name\": \"" name "\", \"type\": \"String\", \"s\": \"" v "\"}"
#define AINTS(name, v)                                                       \
    "{\"name\": \"" name "\", \"type\": \"Ints\", \"ints\": " v "}"
#define GRAPH(plugins, tensors, nodes)                                       \
    "{\"name\": \"op\", \"plugins\": " plugins ", \"tensors\": [" tensors    \
    "], \"nodes\": [" nodes "]}"
#define CORE "[\"core\"]"

/*
 * Outside Check's tests (no ck_assert here: Check refuses it there): a
 * one-node graph (relu) from JSON through flatc, or NULL.
 */
static inline smlp_graph_t *
probe_graph(struct smlp_error *err)
{
    static const char json[] = GRAPH(CORE, IN("x", "[-1, 3]") "," OUT("y"),
        NODE("r", "core.relu", "[0]", "[1]", ""));
    char dir[64] = "/tmp/smlp-cuda-XXXXXX", path[256], cmd[1024];
    FILE *f;

    if (mkdtemp(dir) == NULL)
        return NULL;
    snprintf(path, sizeof(path), "%s/probe.json", dir);
    if ((f = fopen(path, "w")) == NULL)
        return NULL;
    fputs(json, f);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "'%s' -b -o '%s' '%s/schemas/graph.fbs' '%s'",
             tu_env("FLATC", "flatc"), dir, tu_srcdir(), path);
    if (system(cmd) != 0)
        return NULL;
    snprintf(path, sizeof(path), "%s/probe.fbs", dir);
    return smlp_graph_load(path, err);
}

/*
 * Without a GPU: asking for it failed (msg, status); it must fail cleanly,
 * say why, do so again, and leave the CPU working.  Returns 1 when so.
 */
static inline int
no_device_checks(smlp_registry_t *reg, smlp_graph_t *g, const char *msg,
                 int status)
{
    struct smlp_session_opts o;
    struct smlp_error err;
    smlp_session_t *s;
    int ok = 1;

    if (status != SMLP_EDEVICE ||
        (strstr(msg, "device cuda: no CUDA device: ") == NULL &&
         strstr(msg, "device cuda: this libsmlp was built without") ==
             NULL)) {
        fprintf(stderr, "FAIL: unexpected error %d: %s\n", status, msg);
        ok = 0;
    }
    smlp_session_opts_init(&o);
    o.device = SMLP_DEVICE_CUDA;
    if ((s = smlp_session_create(g, reg, &o, &err)) != NULL ||
        err.status != SMLP_EDEVICE || strcmp(err.msg, msg) != 0) {
        fprintf(stderr, "FAIL: the second try differs: %s\n", err.msg);
        smlp_session_destroy(s);
        ok = 0;
    }
    o.device = SMLP_DEVICE_CPU;
    o.batch = 2;
    s = smlp_session_create(g, reg, &o, &err);
    if (s == NULL || smlp_session_run(s) != SMLP_OK) {
        fprintf(stderr, "FAIL: the CPU after the device error: %s\n",
                s ? smlp_session_errmsg(s) : err.msg);
        ok = 0;
    }
    smlp_session_destroy(s);
    return ok;
}

/*
 * The main of check_cuda and check_cuda_train: probes for a GPU with a
 * session of a one-node graph on device cuda.  Without a usable GPU it
 * checks the error path (no_device_checks), prints
 * "SKIP: no CUDA device (<reason>)" and returns 77 (automake's SKIP);
 * with one it runs the suite make_suite() builds in one process
 * (CK_NOFORK: a CUDA context does not survive fork()).  Returns the exit
 * status.
 */
static inline int
cudafx_main(Suite *(*make_suite)(void))
{
    smlp_registry_t *reg;
    smlp_graph_t *g;
    smlp_session_t *s;
    struct smlp_session_opts o;
    struct smlp_error err;
    char dir[512];
    SRunner *sr;
    int failed;

#ifdef SMLP_CUDA_EMU
    /* The emulated plugins come before the build tree's (registry.c's
     * search order: the fixture directory, then this). */
    setenv("SMLP_PLUGIN_PATH", SMLP_EMU_PLUGINS, 1);
#endif
    /* Probe: a session on the GPU. */
    tu_fixture_dir(dir, sizeof(dir));
    if ((reg = smlp_registry_create(dir, &err)) == NULL ||
        (g = probe_graph(&err)) == NULL) {
        fprintf(stderr, "FAIL: cannot set up the probe: %s\n", err.msg);
        return EXIT_FAILURE;
    }
    smlp_session_opts_init(&o);
    o.device = SMLP_DEVICE_CUDA;
    s = smlp_session_create(g, reg, &o, &err);
    if (s == NULL) {
        const char *why = strstr(err.msg, "device cuda: ");
        int ok = no_device_checks(reg, g, err.msg, err.status);

        smlp_graph_unload(g);
        smlp_registry_destroy(reg);
        if (!ok)
            return EXIT_FAILURE;
        printf("SKIP: no CUDA device (%s)\n", why ? why : err.msg);
        return 77;
    }
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
    sr = srunner_create(make_suite());
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif
