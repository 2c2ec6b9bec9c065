/*
 * fuzz_safetensors.c - libFuzzer target: a safetensors file from untrusted
 * bytes.
 *
 * The reader maps a file by path, so each input is written to a memfd and
 * opened as /proc/self/fd/N.  Two ways in:
 *   1. smlp__st_open itself: every entry it hands out is looked up by name
 *      and every data byte is read (a sanitizer sees any byte outside the
 *      mapping), then it is closed.
 *   2. smlp_session_load_weights on a small graph (a linear layer, a bias
 *      and an i32 state tensor), with and without check_finite: names,
 *      dtypes and shapes are matched against the graph and the data are
 *      copied into the session.
 * Nothing may crash, trip a sanitizer, leak or hang, whatever the bytes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "graph_ir.h"
#include "safetensors.h"
#include "smlp.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fd = -1;
static char path[64];
static smlp_graph_t *graph;
static smlp_registry_t *reg;
static smlp_session_t *sessions[2];

/* x [-1, 2] -> linear(W [3, 2], b [3]) -> y; state "steps" i32 [2]. */
static smlp_graph_t *
small_graph(void)
{
    static char n_g[] = "fuzz_st", n_core[] = "core", n_x[] = "x",
                n_w[] = "W", n_b[] = "b", n_steps[] = "steps", n_y[] = "y",
                n_fc[] = "fc", n_op[] = "core.linear";
    static char *plugins[] = {n_core};
    static int32_t ins[] = {0, 1, 2}, outs[] = {4};
    struct smlp__tensor_ir t[5];
    struct smlp__node_ir node;
    struct smlp__graph_ir ir;
    struct smlp_error err;
    smlp_graph_t *g;
    uint8_t *buf;
    size_t len;
    char msg[256];

    memset(t, 0, sizeof(t));
    t[0].name = n_x;
    t[0].kind = SMLP__TENSOR_INPUT;
    t[0].has_shape = 1;
    t[0].rank = 2;
    t[0].shape[0] = -1;
    t[0].shape[1] = 2;
    t[1].name = n_w;
    t[1].kind = SMLP__TENSOR_PARAMETER;
    t[1].has_shape = 1;
    t[1].rank = 2;
    t[1].shape[0] = 3;
    t[1].shape[1] = 2;
    t[2].name = n_b;
    t[2].kind = SMLP__TENSOR_PARAMETER;
    t[2].has_shape = 1;
    t[2].rank = 1;
    t[2].shape[0] = 3;
    t[3].name = n_steps;
    t[3].dtype = SMLP_DTYPE_I32;
    t[3].kind = SMLP__TENSOR_STATE;
    t[3].has_shape = 1;
    t[3].rank = 1;
    t[3].shape[0] = 2;
    t[4].name = n_y;
    t[4].kind = SMLP__TENSOR_OUTPUT;
    memset(&node, 0, sizeof(node));
    node.name = n_fc;
    node.op = n_op;
    node.n_inputs = 3;
    node.inputs = ins;
    node.n_outputs = 1;
    node.outputs = outs;
    memset(&ir, 0, sizeof(ir));
    ir.format_version = 1;
    ir.name = n_g;
    ir.n_plugins = 1;
    ir.plugins = plugins;
    ir.n_tensors = 5;
    ir.tensors = t;
    ir.n_nodes = 1;
    ir.nodes = &node;
    if (smlp__graph_ir_encode(&ir, &buf, &len, msg, sizeof(msg)) != SMLP_OK) {
        fprintf(stderr, "fuzz_safetensors: %s\n", msg);
        exit(1);
    }
    g = smlp_graph_load_buffer(buf, len, "fuzz_st.fbs", &err);
    free(buf);
    if (g == NULL) {
        fprintf(stderr, "fuzz_safetensors: %s\n", err.msg);
        exit(1);
    }
    return g;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct smlp_session_opts opts;
    struct smlp_error err;
    int i;

    (void)argc;
    (void)argv;
    fd = memfd_create("fuzz.safetensors", MFD_CLOEXEC);
    if (fd < 0) {
        perror("fuzz_safetensors: memfd_create");
        exit(1);
    }
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    graph = small_graph();
    reg = smlp_registry_create(NULL, &err);
    if (reg == NULL) {
        fprintf(stderr, "fuzz_safetensors: %s\n", err.msg);
        exit(1);
    }
    for (i = 0; i < 2; i++) {
        smlp_session_opts_init(&opts);
        opts.threads = 1;
        opts.check_finite = i;
        sessions[i] = smlp_session_create(graph, reg, &opts, &err);
        if (sessions[i] == NULL) {
            fprintf(stderr, "fuzz_safetensors: %s\n", err.msg);
            exit(1);
        }
    }
    return 0;
}

static void
read_entries(void)
{
    struct smlp__st_file *f;
    char err[512];
    unsigned sum = 0;
    int32_t i;
    size_t j;

    if (smlp__st_open(path, &f, err, sizeof(err)) != SMLP_OK)
        return;
    for (i = 0; i < f->n_entries; i++) {
        const struct smlp__st_entry *e = &f->entries[i];

        if (smlp__st_find(f, e->name) != e)
            abort(); /* names are unique and sorted */
        for (j = 0; j < e->nbytes; j++)
            sum += ((const unsigned char *)e->data)[j];
    }
    for (i = 0; i < f->n_meta; i++)
        sum += (unsigned)strlen(f->meta_keys[i]) +
               (unsigned)strlen(f->meta_values[i]);
    (void)smlp__st_find(f, "no such tensor");
    smlp__st_close(f);
    /* Keeps the reads. */
    __asm__ volatile("" : : "r"(sum));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t done = 0;
    ssize_t w;
    int i;

    if (ftruncate(fd, 0) != 0)
        abort();
    while (done < size) {
        w = pwrite(fd, data + done, size - done, (off_t)done);
        if (w <= 0)
            abort();
        done += (size_t)w;
    }
    read_entries();
    for (i = 0; i < 2; i++)
        (void)smlp_session_load_weights(sessions[i], path);
    return 0;
}
