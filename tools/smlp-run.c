/*
 * smlp-run - run a model graph and report what it cost.
 *
 *   smlp-run GRAPH [--weights F] [--input F] [--output F] [--batch N]
 *            [--threads N] [--repeat N] [--seed N] [--trace F.json]
 *            [--plugin-path DIRS] [--max-memory BYTES] [--json F]
 *            [--training] [--device cpu|cuda] [--check-finite]
 *
 * Without --input the graph's seeded synthetic batch is used.  Prints the
 * graph, parameters, MACs per image, the output's first rows' top-5, wall
 * time per batch (median of --repeat runs after one warm-up), images/s,
 * achieved GFLOP/s, peak arena bytes against the lifetime lower bound,
 * time by op type and, for each MoE layer, items kept and dropped per
 * expert, the capacity and the aux loss; --json writes all of it.
 * Exit status: 0 success, 1 runtime error, 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "run_report.h"
#include "smlp.h"
#include "tool_opts.h"

struct options {
    const char *graph;
    const char *weights;
    const char *input;
    const char *output;
    const char *trace;
    const char *plugin_path;
    const char *json;
    int training;
    int device;
    int check_finite;
    int64_t batch;
    int threads;
    int repeat;
    uint64_t seed;
    uint64_t max_memory;
};

static void
usage(FILE *f)
{
    fprintf(f,
"usage: smlp-run GRAPH [options]\n"
"Runs a model graph (a .fbs file from graphs/) and reports time, memory\n"
"and throughput.\n"
"\n"
"  --weights FILE      parameters from a safetensors file (default: the\n"
"                      graph's seeded initializers)\n"
"  --input FILE        inputs from a safetensors file (default: a seeded\n"
"                      synthetic batch)\n"
"  --output FILE       write the outputs to a safetensors file\n"
"  --batch N           batch size (default 1)\n"
"  --threads N         thread budget (default: all CPUs)\n"
"  --repeat N          timed runs after one warm-up (default 3)\n"
"  --seed N            seed of the synthetic batch (default 0)\n"
"  --trace FILE.json   write a Chrome/Perfetto trace of the last run\n"
"  --plugin-path DIRS  colon-separated plugin directories searched first\n"
"                      (then $SMLP_PLUGIN_PATH, the build tree, the\n"
"                      installed plugin directory)\n"
"  --max-memory BYTES  refuse to run above this memory (suffix K, M, G)\n"
"  --json FILE         also write the whole report as JSON (atomically)\n"
"  --device cpu|cuda   run on the CPU (default) or the GPU; ops without a\n"
"                      CUDA kernel run on the CPU (a notice says which)\n"
"  --check-finite      refuse weights holding NaN or infinity (names the\n"
"                      tensor and element)\n"
"  --training          run the forward pass in training mode: gate noise,\n"
"                      training capacity factors, aux losses (batch-norm\n"
"                      running statistics are updated)\n"
"  --help, --version\n");
}

static int
parse_int(const char *opt, const char *s, int64_t min, int64_t max,
          int64_t *out)
{
    if (tool_int_in(s, min, max, out) != 0) {
        fprintf(stderr,
                "smlp-run: %s: '%s' is not an integer from %lld to %lld\n",
                opt, s, (long long)min, (long long)max);
        return -1;
    }
    return 0;
}

static int
parse_bytes(const char *opt, const char *s, uint64_t *out)
{
    char *end;
    double v;
    double mul = 1;

    errno = 0;
    v = strtod(s, &end);
    if (end != s && (*end == 'K' || *end == 'k'))
        mul = 1024.0, end++;
    else if (end != s && (*end == 'M' || *end == 'm'))
        mul = 1048576.0, end++;
    else if (end != s && (*end == 'G' || *end == 'g'))
        mul = 1073741824.0, end++;
    if (errno != 0 || end == s || *end != '\0' || !(v * mul >= 1) ||
        v * mul > 1e19) {
        fprintf(stderr, "smlp-run: %s: '%s' is not a size in bytes of at "
                        "least 1 (e.g. 512M)\n",
                opt, s);
        return -1;
    }
    *out = (uint64_t)(v * mul);
    return 0;
}

/* Before the graph loads and runs: the files named can be read, the
 * outputs written (so that a long run does not end on a typo), each
 * output a file of its own that the run does not read. */
static int
check_files(const struct options *o)
{
    const char *in[3][2] = {{"the graph", o->graph},
                            {"--weights", o->weights},
                            {"--input", o->input}};
    const char *out[3][2] = {{"--output", o->output},
                             {"--json", o->json},
                             {"--trace", o->trace}};
    char msg[2 * PATH_MAX + 200];
    int i, j, rc = TOOL_FILE_OK;

    for (i = 1; i < 3 && rc == TOOL_FILE_OK; i++)
        if (in[i][1] != NULL)
            rc = tool_check_input(in[i][0], in[i][1], msg, sizeof(msg));
    for (i = 0; i < 3 && rc == TOOL_FILE_OK; i++)
        if (out[i][1] != NULL)
            rc = tool_check_output(out[i][0], out[i][1], msg, sizeof(msg));
    for (i = 0; i < 3 && rc == TOOL_FILE_OK; i++)
        for (j = 0; out[i][1] != NULL && j < 6 && rc == TOOL_FILE_OK; j++) {
            const char *const *other = j < 3 ? in[j] : out[j - 3];

            if (other[1] == NULL || (j >= 3 && j - 3 <= i) ||
                !tool_same_file(out[i][1], other[1]))
                continue;
            snprintf(msg, sizeof(msg), "%s %s names the same file as %s "
                     "%s: %s", out[i][0], out[i][1], other[0], other[1],
                     j < 3 ? "the run would overwrite what it reads"
                           : "each output needs its own");
            rc = TOOL_FILE_EMPTY; /* exit 2, as for an empty name */
        }
    /* The status is the exit status: 2 for an empty name or two roles
     * for one file (usage errors), 1 for a file we cannot use. */
    if (rc != TOOL_FILE_OK)
        fprintf(stderr, "smlp-run: %s\n", msg);
    return rc;
}

static int
parse_args(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        {"weights", required_argument, NULL, 'w'},
        {"input", required_argument, NULL, 'i'},
        {"output", required_argument, NULL, 'o'},
        {"batch", required_argument, NULL, 'b'},
        {"threads", required_argument, NULL, 't'},
        {"repeat", required_argument, NULL, 'r'},
        {"seed", required_argument, NULL, 's'},
        {"trace", required_argument, NULL, 'T'},
        {"plugin-path", required_argument, NULL, 'p'},
        {"max-memory", required_argument, NULL, 'm'},
        {"json", required_argument, NULL, 'j'},
        {"training", no_argument, NULL, 'R'},
        {"device", required_argument, NULL, 'D'},
        {"check-finite", no_argument, NULL, 'F'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0}};
    char msg[160];
    int64_t v;
    int c;

    memset(o, 0, sizeof(*o));
    o->batch = 1;
    o->repeat = 3;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (c) {
        case 'w': o->weights = optarg; break;
        case 'i': o->input = optarg; break;
        case 'o': o->output = optarg; break;
        case 'T': o->trace = optarg; break;
        case 'p': o->plugin_path = optarg; break;
        case 'j': o->json = optarg; break;
        case 'R': o->training = 1; break;
        case 'F': o->check_finite = 1; break;
        case 'D':
            if (strcmp(optarg, "cpu") == 0)
                o->device = SMLP_DEVICE_CPU;
            else if (strcmp(optarg, "cuda") == 0)
                o->device = SMLP_DEVICE_CUDA;
            else {
                fprintf(stderr, "smlp-run: --device: '%s' is not cpu or "
                                "cuda\n", optarg);
                return 2;
            }
            break;
        case 'b':
            if (parse_int("--batch", optarg, 1, INT64_C(1) << 31, &v))
                return 2;
            o->batch = v;
            break;
        case 't':
            if (parse_int("--threads", optarg, 1, 1024, &v))
                return 2;
            o->threads = (int)v;
            break;
        case 'r':
            if (parse_int("--repeat", optarg, 1, 100000, &v))
                return 2;
            o->repeat = (int)v;
            break;
        case 's':
            if (tool_uint64_in(optarg, &o->seed) != 0) {
                fprintf(stderr, "smlp-run: --seed: '%s' is not an integer "
                                "from 0 to 18446744073709551615\n",
                        optarg);
                return 2;
            }
            break;
        case 'm':
            if (parse_bytes("--max-memory", optarg, &o->max_memory))
                return 2;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        case 'V':
            printf("smlp-run %s (plugin ABI %d.%d)\n", smlp_version_string(),
                   SMLP_ABI_MAJOR, SMLP_ABI_MINOR);
            exit(0);
        default:
            fprintf(stderr, "smlp-run: %s\nTry 'smlp-run --help'.\n",
                    tool_bad_option(argv, ":", msg, sizeof(msg)));
            return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "smlp-run: %s\nTry 'smlp-run --help'.\n",
                optind >= argc ? "no graph file given"
                               : "more than one graph file given");
        return 2;
    }
    o->graph = argv[optind];
    return check_files(o);
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static const char *
human(double v, char *buf, size_t len)
{
    if (v >= 1e9)
        snprintf(buf, len, "%.2f G", v / 1e9);
    else if (v >= 1e6)
        snprintf(buf, len, "%.2f M", v / 1e6);
    else if (v >= 1e3)
        snprintf(buf, len, "%.2f K", v / 1e3);
    else
        snprintf(buf, len, "%.0f", v);
    return buf;
}

static void
print_top5(smlp_session_t *s)
{
    struct smlp_tensor t;
    const char *name = "logits";
    int64_t rows, cols, r, i, j;
    char shape[128];
    size_t used = 0;

    /* "logits" when the graph outputs it (an activation of that name has
     * no data after the run), else the first output. */
    if (smlp_session_tensor(s, name, &t) != SMLP_OK || t.data == NULL) {
        name = smlp_session_tensor_name(s, 4, 0);
        if (name == NULL || smlp_session_tensor(s, name, &t) != SMLP_OK ||
            t.data == NULL)
            return;
    }
    used += (size_t)snprintf(shape, sizeof(shape), "[");
    for (i = 0; i < t.rank && used < sizeof(shape) - 24; i++)
        used += (size_t)snprintf(shape + used, sizeof(shape) - used,
                                 "%s%lld", i ? "," : "", (long long)t.shape[i]);
    snprintf(shape + used, sizeof(shape) - used, "]");
    printf("output      %s %s %s\n", name,
           t.dtype == SMLP_DTYPE_F32 ? "f32" : "i32", shape);
    if (t.dtype != SMLP_DTYPE_F32 || t.rank != 2)
        return;
    rows = t.shape[0] < 4 ? t.shape[0] : 4;
    cols = t.shape[1];
    for (i = 0; i < t.shape[0] * cols && ((const float *)t.data)[i] == 0;
         i++)
        ;
    if (i == t.shape[0] * cols && i > 0) {
        printf("  all zero (the graph's classifier head is zero-initialised;"
               " --weights loads trained parameters)\n");
        return;
    }
    for (r = 0; r < rows; r++) {
        const float *row = (const float *)t.data + r * cols;
        int64_t best[5];
        int n = 0;

        for (j = 0; j < cols; j++) {
            int k;
            if (n < 5)
                n++;
            else if (!(row[j] > row[best[4]]))
                continue;
            for (k = n - 1; k > 0 && row[j] > row[best[k - 1]]; k--)
                best[k] = best[k - 1];
            best[k] = j;
        }
        printf("  row %lld top-5:", (long long)r);
        for (j = 0; j < n; j++)
            printf("  %lld (%.4g)", (long long)best[j], row[best[j]]);
        printf("\n");
    }
}

struct op_time {
    const char *op;
    int nodes;
    double ms;
    uint64_t macs;
};

/* Node time and GFLOP/s (of the MACs computed: moe_node_macs) by op. */
static void
print_op_table(smlp_session_t *s, int n_nodes, double total_ms,
               const struct moe_layer *moe, int n_moe)
{
    struct op_time ops[64];
    int n_ops = 0, i, j;
    double sum = 0;

    for (i = 0; i < n_nodes; i++) {
        struct smlp_node_profile p;

        smlp_session_node_profile(s, i, &p);
        for (j = 0; j < n_ops && strcmp(ops[j].op, p.op) != 0; j++)
            ;
        if (j == n_ops) {
            if (n_ops == 64)
                continue;
            ops[n_ops].op = p.op;
            ops[n_ops].nodes = 0;
            ops[n_ops].ms = 0;
            ops[n_ops].macs = 0;
            n_ops++;
        }
        ops[j].nodes++;
        ops[j].ms += (p.end_us - p.start_us) / 1e3;
        ops[j].macs += moe_node_macs(s, i, moe, n_moe);
        sum += (p.end_us - p.start_us) / 1e3;
    }
    /* Sort by time, descending. */
    for (i = 1; i < n_ops; i++)
        for (j = i; j > 0 && ops[j].ms > ops[j - 1].ms; j--) {
            struct op_time tmp = ops[j];
            ops[j] = ops[j - 1];
            ops[j - 1] = tmp;
        }
    printf("time by op (last run; node time, %.1f ms in all, wall %.1f ms)\n",
           sum, total_ms);
    printf("  %-28s %6s %11s %7s %9s\n", "op", "nodes", "ms", "share",
           "GFLOP/s");
    for (i = 0; i < n_ops; i++)
        printf("  %-28s %6d %11.3f %6.1f%% %9.1f\n", ops[i].op, ops[i].nodes,
               ops[i].ms, sum > 0 ? 100.0 * ops[i].ms / sum : 0.0,
               ops[i].ms > 0 ? 2.0 * (double)ops[i].macs / ops[i].ms / 1e6
                             : 0.0);
}

int
main(int argc, char **argv)
{
    struct smlp_session_opts so;
    struct smlp_session_stats st;
    struct smlp_error err;
    struct options o;
    smlp_graph_t *g = NULL;
    smlp_registry_t *reg = NULL;
    smlp_session_t *s = NULL;
    double *times = NULL, med, gflops;
    uint64_t done;
    struct moe_layer *moe = NULL;
    struct moe_time mt;
    int n_moe = 0;
    char b1[32], b2[32];
    int rc, i, status = 1;

    rc = parse_args(argc, argv, &o);
    if (rc != 0)
        return rc;
    g = smlp_graph_load(o.graph, &err);
    if (g == NULL) {
        fprintf(stderr, "smlp-run: %s\n", err.msg);
        return 1;
    }
    reg = smlp_registry_create(o.plugin_path, &err);
    if (reg == NULL) {
        fprintf(stderr, "smlp-run: %s\n", err.msg);
        goto out;
    }
    smlp_session_opts_init(&so);
    so.batch = o.batch;
    so.threads = o.threads;
    so.seed = o.seed;
    so.weights = o.weights;
    so.max_memory = o.max_memory;
    so.training = o.training;
    so.device = o.device;
    so.check_finite = o.check_finite;
    s = smlp_session_create(g, reg, &so, &err);
    if (s == NULL) {
        fprintf(stderr, "smlp-run: %s\n", err.msg);
        goto out;
    }
    if (o.input != NULL && smlp_session_read_inputs(s, o.input) != SMLP_OK) {
        fprintf(stderr, "smlp-run: %s\n", smlp_session_errmsg(s));
        goto out;
    }
    times = calloc((size_t)o.repeat, sizeof(*times));
    if (times == NULL)
        goto out;
    for (i = -1; i < o.repeat; i++) {
        if (smlp_session_run(s) != SMLP_OK) {
            fprintf(stderr, "smlp-run: %s\n", smlp_session_errmsg(s));
            goto out;
        }
        smlp_session_get_stats(s, &st);
        if (i >= 0)
            times[i] = st.last_run_ms;
    }
    smlp_session_get_stats(s, &st);
    printf("graph       %s (%s), %d nodes\n", smlp_graph_name(g), o.graph,
           st.n_nodes);
    printf("params      %s parameters (%.1f MiB)\n",
           human((double)st.params, b1, sizeof(b1)),
           (double)st.param_bytes / 1048576.0);
    printf("MACs        %s per image\n",
           human((double)st.macs / (double)st.batch, b1, sizeof(b1)));
    printf("batch       %lld, threads %d x %d (nodes at once x threads "
           "per node)\n",
           (long long)st.batch, st.inter_op, st.intra_op);
    if (o.device == SMLP_DEVICE_CUDA) {
        struct smlp_device_stats ds;

        ds.size = sizeof(ds);
        smlp_session_get_device_stats(s, &ds);
        printf("device      cuda: %d of %d nodes (ops without a CUDA kernel "
               "run on the CPU); arena %s bytes, parameters %.1f MiB\n",
               ds.device_nodes, st.n_nodes,
               human((double)ds.arena_bytes, b1, sizeof(b1)),
               (double)ds.param_bytes / 1048576.0);
    }
    print_top5(s);
    qsort(times, (size_t)o.repeat, sizeof(*times), cmp_double);
    med = o.repeat % 2 ? times[o.repeat / 2]
                       : 0.5 * (times[o.repeat / 2 - 1] + times[o.repeat / 2]);
    n_moe = moe_layers_collect(s, g, &moe);
    if (n_moe < 0) {
        fprintf(stderr, "smlp-run: out of memory\n");
        goto out;
    }
    for (i = 0, done = 0; i < st.n_nodes; i++)
        done += moe_node_macs(s, i, moe, n_moe);
    gflops = 2.0 * (double)done / (med * 1e6);
    printf("time        %.3f ms per batch (median of %d; min %.3f, max "
           "%.3f)\n",
           med, o.repeat, times[0], times[o.repeat - 1]);
    printf("throughput  %.2f images/s, %.1f GFLOP/s",
           (double)st.batch * 1e3 / med, gflops);
    if (done != st.macs)
        printf(" (of %s MACs per image computed: the expert FFNs skip "
               "empty capacity rows)",
               human((double)done / (double)st.batch, b1, sizeof(b1)));
    printf("\n");
    printf("memory      arena %s bytes, lower bound %s bytes (%.3fx); "
           "parameters %.1f MiB\n",
           human((double)st.arena_bytes, b1, sizeof(b1)),
           human((double)st.lower_bound, b2, sizeof(b2)),
           st.lower_bound ? (double)st.arena_bytes / (double)st.lower_bound
                          : 1.0,
           (double)st.param_bytes / 1048576.0);
    print_op_table(s, st.n_nodes, st.last_run_ms, moe, n_moe);
    moe_time_collect(s, st.n_nodes, &mt);
    moe_layers_print(stdout, moe, n_moe, &mt, o.training);
    if (o.json != NULL) {
        struct run_report r;

        memset(&r, 0, sizeof(r));
        r.graph_file = o.graph;
        r.graph = g;
        r.session = s;
        r.stats = &st;
        r.device = o.device == SMLP_DEVICE_CUDA ? "cuda" : "cpu";
        r.training = o.training;
        r.times_ms = times;
        r.repeat = o.repeat;
        r.median_ms = med;
        r.moe = moe;
        r.n_moe = n_moe;
        r.moe_time = &mt;
        if (run_report_write_json(o.json, &r) != 0)
            goto out;
    }
    if (o.output != NULL &&
        smlp_session_write_outputs(s, o.output) != SMLP_OK) {
        fprintf(stderr, "smlp-run: %s\n", smlp_session_errmsg(s));
        goto out;
    }
    if (o.trace != NULL && smlp_session_write_trace(s, o.trace) != SMLP_OK) {
        fprintf(stderr, "smlp-run: %s\n", smlp_session_errmsg(s));
        goto out;
    }
    /* The report on standard output is this tool's answer. */
    status = tool_stdout_ok("smlp-run") ? 0 : 1;
out:
    free(moe);
    free(times);
    smlp_session_destroy(s);
    smlp_registry_destroy(reg);
    smlp_graph_unload(g);
    return status;
}
