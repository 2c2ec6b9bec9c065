/*
 * fuzz_graph.c - libFuzzer target: a graph file from untrusted bytes.
 *
 * Each input goes the way a downloaded graph goes: smlp_graph_load_buffer
 * (verify the FlatBuffer, decode, check names, writers, readers, cycles),
 * then smlp_session_create with plan_only (batch 2 or 3, inference or
 * training: the input's last byte picks), which loads the graph's
 * plugins, resolves every node, runs shape inference in the plugins,
 * plans memory and checks the memory limit; then everything is freed.
 * Nothing may crash, trip a sanitizer, leak or hang, whatever the bytes.
 *
 * The registry is made once and holds the in-tree plugins (core, norm,
 * moe) for the whole run: plugins are dlopen'ed, and unloading them
 * between inputs would take their coverage counters away from libFuzzer.
 * Under libFuzzer the plugins are the sanitized build's (configure
 * CC=clang --enable-sanitizers); fuzz/driver.c runs the same function
 * over files for the regression tests of `make check`.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "smlp.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static smlp_registry_t *reg;
static int verbose; /* $SMLP_FUZZ_VERBOSE: print why inputs are refused */

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char *const plugins[] = {"core", "norm", "moe"};
    struct smlp_error err;
    size_t i;

    (void)argc;
    (void)argv;
    verbose = getenv("SMLP_FUZZ_VERBOSE") != NULL;
    reg = smlp_registry_create(NULL, &err);
    if (reg == NULL) {
        fprintf(stderr, "fuzz_graph: %s\n", err.msg);
        exit(1);
    }
    for (i = 0; i < sizeof(plugins) / sizeof(plugins[0]); i++)
        if (smlp_registry_load(reg, plugins[i], &err) != SMLP_OK) {
            fprintf(stderr, "fuzz_graph: %s\n", err.msg);
            exit(1);
        }
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct smlp_session_opts opts;
    struct smlp_session_stats st;
    struct smlp_error err;
    smlp_session_t *s;
    smlp_graph_t *g;
    int64_t v;
    double f;
    int i, n;

    g = smlp_graph_load_buffer(data, size, "fuzz.fbs", &err);
    if (g == NULL) {
        if (verbose)
            fprintf(stderr, "refused: %s\n", err.msg);
        return 0;
    }
    /* The accessors a tool uses on a loaded graph. */
    (void)smlp_graph_name(g);
    (void)smlp_graph_meta(g, "description");
    n = smlp_graph_plugin_count(g);
    for (i = 0; i < n; i++)
        (void)smlp_graph_plugin_name(g, i);
    (void)smlp_graph_node_attr_int(g, "gate", "k", &v);
    (void)smlp_graph_node_attr_float(g, "gate", "capacity_factor", &f);
    smlp_session_opts_init(&opts);
    /* The file's last byte (padding, in files from flatc) picks the mode
     * and the batch, so that both are fuzzed too. */
    opts.training = data[size - 1] & 1;
    opts.batch = 2 + ((data[size - 1] >> 1) & 1);
    opts.threads = 1;
    opts.plan_only = 1;
    opts.max_memory = (uint64_t)1 << 40;
    s = smlp_session_create(g, reg, &opts, &err);
    if (s != NULL) {
        smlp_session_get_stats(s, &st);
        n = smlp_session_tensor_count(s, 4);
        for (i = 0; i < n; i++)
            (void)smlp_session_tensor_name(s, 4, i);
        smlp_session_destroy(s);
        if (verbose)
            fprintf(stderr, "planned: %s, arena %llu bytes\n",
                    smlp_graph_name(g), (unsigned long long)st.arena_bytes);
    } else if (verbose) {
        fprintf(stderr, "refused: %s\n", err.msg);
    }
    smlp_graph_unload(g);
    return 0;
}
