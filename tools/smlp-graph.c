/*
 * smlp-graph - inspect, check, draw, compare and edit model graphs.
 *
 *   smlp-graph dump  GRAPH [-o FILE.json]
 *   smlp-graph check GRAPH [--batch N] [--plugin-path DIRS] [-q]
 *   smlp-graph stats GRAPH [--batch N] [--plugin-path DIRS] [-q]
 *   smlp-graph dot   GRAPH [-o FILE.dot|FILE.svg|FILE.png] [--shapes]
 *   smlp-graph edit  GRAPH -o OUT [EDITS...]
 *   smlp-graph diff  A B
 *
 * Every subcommand has --help.  Exit status: 0 success, 1 an error in a
 * graph, a plugin or a file (diff: the graphs differ), 2 a usage error.
 * This file holds the command line, the helpers shared by the
 * subcommands (graph_tool.h) and dump, check and stats; edit, dot and
 * diff have a file each.
 */
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h"
#include "graph_tool.h"
#include "tool_opts.h"

const char *sg_cmd = NULL;

/* ---- messages ---------------------------------------------------------- */

static void
vmsg(const char *kind, const char *fmt, va_list ap)
{
    fprintf(stderr, "smlp-graph%s%s: %s", sg_cmd ? " " : "",
            sg_cmd ? sg_cmd : "", kind);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void
sg_error(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vmsg("", fmt, ap);
    va_end(ap);
}

void
sg_warn(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vmsg("warning: ", fmt, ap);
    va_end(ap);
}

void
sg_note(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vmsg("note: ", fmt, ap);
    va_end(ap);
}

/* ---- small helpers ----------------------------------------------------- */

int
sg_glob(const char *pattern, const char *name)
{
    return fnmatch(pattern, name, 0) == 0;
}

const char *
sg_dtype_name(int dtype)
{
    return dtype == SMLP_DTYPE_F32 ? "f32"
           : dtype == SMLP_DTYPE_I32 ? "i32"
                                     : "dtype?";
}

const char *
sg_dtype_enum(int dtype)
{
    return dtype == SMLP_DTYPE_I32 ? "I32" : "F32";
}

const char *
sg_kind_name(int kind)
{
    static const char *const names[] = {"activation", "parameter", "state",
                                        "input", "output"};

    _Static_assert(sizeof(names) / sizeof(names[0]) ==
                       SMLP__TENSOR_KIND_COUNT,
                   "a name per tensor kind");
    return kind >= 0 && kind < SMLP__TENSOR_KIND_COUNT ? names[kind]
                                                       : "kind?";
}

const char *
sg_kind_enum(int kind)
{
    static const char *const names[] = {"Activation", "Parameter", "State",
                                        "Input", "Output"};

    _Static_assert(sizeof(names) / sizeof(names[0]) ==
                       SMLP__TENSOR_KIND_COUNT,
                   "a name per tensor kind");
    return kind >= 0 && kind < SMLP__TENSOR_KIND_COUNT ? names[kind]
                                                       : "Activation";
}

const char *
sg_init_enum(int kind)
{
    static const char *const names[] = {"Zeros", "Ones", "Constant",
                                        "Uniform", "Normal"};

    _Static_assert(sizeof(names) / sizeof(names[0]) ==
                       SMLP__INIT_KIND_COUNT,
                   "a name per init kind");
    return kind >= 0 && kind < SMLP__INIT_KIND_COUNT ? names[kind] : "Zeros";
}

const char *
sg_attr_enum(int type)
{
    static const char *const names[] = {"Int", "Float", "String", "Ints",
                                        "Floats"};

    _Static_assert(sizeof(names) / sizeof(names[0]) == SMLP_ATTR_TYPE_COUNT,
                   "a name per attribute type");
    return type >= 0 && type < SMLP_ATTR_TYPE_COUNT ? names[type] : "Int";
}

const char *
sg_shape_str(const int64_t *shape, int rank, char *buf, size_t len)
{
    size_t used;
    int i;

    if (len == 0)
        return buf;
    snprintf(buf, len, "[");
    used = 1;
    for (i = 0; i < rank && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%" PRId64,
                                 i ? "," : "", shape[i]);
    if (used < len)
        snprintf(buf + used, len - used, "]");
    return buf;
}

const char *
sg_block_of(const char *name, char *buf, size_t len)
{
    const char *dot = strchr(name, '.'), *p, *end;
    size_t n;

    n = dot != NULL ? (size_t)(dot - name) : strlen(name);
    if (dot != NULL && dot[1] >= '0' && dot[1] <= '9') {
        for (p = dot + 1; *p >= '0' && *p <= '9'; p++)
            ;
        if (*p == '.') {
            end = p;
            n = (size_t)(end - name);
        }
    }
    if (n >= len)
        n = len - 1;
    memcpy(buf, name, n);
    buf[n] = '\0';
    return buf;
}

int
sg_parse_int(const char *opt, const char *s, int64_t min, int64_t max,
             int64_t *out)
{
    if (tool_int_in(s, min, max, out) != 0) {
        sg_error("%s: '%s' is not an integer from %" PRId64 " to %" PRId64,
                 opt, s, min, max);
        return -1;
    }
    return 0;
}

int
sg_bad_option(char **argv, const char *shortopts)
{
    char msg[160];

    sg_error("%s", tool_bad_option(argv, shortopts, msg, sizeof(msg)));
    return SG_USAGE_ERR;
}

int
sg_operands(int argc, int want, const char *synopsis)
{
    if (argc - optind == want)
        return 0;
    sg_error("%s; usage: smlp-graph %s",
             argc - optind < want ? "missing operand" : "too many operands",
             synopsis);
    return SG_USAGE_ERR;
}

/* ---- reading and writing files ----------------------------------------- */

static int
read_file(const char *path, uint8_t **buf, size_t *len)
{
    struct stat st;
    size_t got = 0;
    uint8_t *b;
    int fd;

    /* O_NONBLOCK: a FIFO does not block the open (it is refused below). */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        sg_error("%s: cannot open graph: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        st.st_size > (off_t)1 << 30) {
        sg_error("%s: %s", path,
                 S_ISDIR(st.st_mode) ? "is a directory, not a graph file"
                                     : "not a regular file of at most 1 GiB");
        close(fd);
        return -1;
    }
    b = malloc((size_t)st.st_size + 1);
    if (b == NULL) {
        sg_error("%s: out of memory", path);
        close(fd);
        return -1;
    }
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, b + got, (size_t)st.st_size - got);

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            sg_error("%s: read failed: %s", path,
                     r < 0 ? strerror(errno) : "the file shrank");
            free(b);
            close(fd);
            return -1;
        }
        got += (size_t)r;
    }
    close(fd);
    *buf = b;
    *len = got;
    return 0;
}

int
sg_graph_open(struct sg_graph *g, const char *path, int strict)
{
    struct smlp_error err;
    char msg[1024];
    int rc;

    memset(g, 0, sizeof(*g));
    g->path = path;
    if (read_file(path, &g->buf, &g->len) != 0)
        return -1;
    rc = smlp__graph_ir_decode(g->buf, g->len, path, &g->ir, msg,
                               sizeof(msg));
    if (rc != SMLP_OK) {
        sg_error("%s", msg);
        sg_graph_close(g);
        return -1;
    }
    g->graph = smlp_graph_load_buffer(g->buf, g->len, path, &err);
    if (g->graph == NULL) {
        snprintf(g->why, sizeof(g->why), "%s", err.msg);
        if (strict) {
            sg_error("%s", err.msg);
            sg_graph_close(g);
            return -1;
        }
    }
    return 0;
}

void
sg_graph_close(struct sg_graph *g)
{
    smlp_graph_unload(g->graph);
    smlp__graph_ir_free(g->ir);
    free(g->buf);
    memset(g, 0, sizeof(*g));
}

/* Writes through smlp__atomic_file (runtime/atomic_file.h): replaced
 * atomically, a device or FIFO written in place, a link's target
 * replaced. */
int
sg_write_atomic(const char *path, const void *data, size_t len,
                int (*fill)(FILE *f, void *arg), void *arg)
{
    struct smlp__atomic_file af;
    char err[4096 + 256];
    FILE *f;
    int bad;

    if (smlp__atomic_file_open(&af, path, err, sizeof(err)) != SMLP_OK)
        goto out_error;
    f = smlp__atomic_file_stream(&af, err, sizeof(err));
    if (f == NULL) {
        smlp__atomic_file_abort(&af);
        goto out_error;
    }
    errno = 0;
    if (data != NULL)
        bad = len > 0 && fwrite(data, 1, len, f) != len;
    else
        bad = fill != NULL && fill(f, arg) != 0;
    if (bad) {
        if (af.tmp != NULL)
            sg_error("%s: cannot write it (through %s): %s", path, af.tmp,
                     errno ? strerror(errno) : "write error");
        else
            sg_error("%s: cannot write it: %s", path,
                     errno ? strerror(errno) : "write error");
        smlp__atomic_file_abort(&af);
        return -1;
    }
    if (smlp__atomic_file_commit(&af, err, sizeof(err)) != SMLP_OK)
        goto out_error;
    return 0;
out_error:
    sg_error("%s", err);
    return -1;
}

/* ---- plugins: planning and linting ------------------------------------- */

smlp_session_t *
sg_plan(const smlp_graph_t *graph, const char *plugin_path, int64_t batch,
        smlp_registry_t **reg)
{
    struct smlp_session_opts so;
    struct smlp_error err;
    smlp_session_t *s;

    *reg = smlp_registry_create(plugin_path, &err);
    if (*reg == NULL) {
        sg_error("%s", err.msg);
        return NULL;
    }
    smlp_session_opts_init(&so);
    so.batch = batch;
    so.threads = 1;
    so.plan_only = 1;
    s = smlp_session_create(graph, *reg, &so, &err);
    if (s == NULL) {
        sg_error("%s", err.msg);
        smlp_registry_destroy(*reg);
        *reg = NULL;
    }
    return s;
}

int
sg_check_out(const char *out, const char *input, int may_be_input)
{
    struct stat a, b;
    char msg[PATH_MAX + 200];

    if (tool_check_output("-o", out, msg, sizeof(msg)) != 0) {
        sg_error("%s", msg);
        return SG_USAGE_ERR;
    }
    if (!may_be_input && stat(out, &a) == 0 && stat(input, &b) == 0 &&
        a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
        sg_error("-o %s: that is the graph file %s; give another name",
                 out, input);
        return SG_USAGE_ERR;
    }
    return 0;
}

int
sg_plan_modes(const smlp_graph_t *graph, const struct smlp__graph_ir *ir,
              smlp_registry_t *reg, int64_t batch, char *buf, size_t len)
{
    struct smlp_session_opts so;
    struct smlp_error err;
    smlp_session_t *s;
    int32_t i;
    int k, batched = 0;

    for (i = 0; i < ir->n_tensors; i++)
        if (ir->tensors[i].kind == SMLP__TENSOR_INPUT &&
            ir->tensors[i].has_shape && ir->tensors[i].rank > 0 &&
            ir->tensors[i].shape[0] < 0)
            batched = 1;
    for (k = 0; k < 1 + batched; k++) {
        smlp_session_opts_init(&so);
        so.threads = 1;
        so.plan_only = 1;
        so.training = k == 0;
        /* Training mode at 2 rows at least (batch norm needs them). */
        if (k == 0)
            so.batch = batched && batch == 1 ? 2 : batch;
        else
            so.batch = batch > 1 ? batch - 1 : 2;
        s = smlp_session_create(graph, reg, &so, &err);
        if (s == NULL) {
            if (k == 0)
                snprintf(buf, len, "in training mode: %s", err.msg);
            else
                snprintf(buf, len, "at batch %" PRId64 ": %s", so.batch,
                         err.msg);
            return -1;
        }
        smlp_session_destroy(s);
    }
    return 0;
}

/* ---- dump -------------------------------------------------------------- */

static int
fill_json(FILE *f, void *arg)
{
    return sg_json_write(f, arg);
}

static void
dump_usage(FILE *f)
{
    fprintf(f,
"usage: smlp-graph dump GRAPH [-o FILE.json]\n"
"Writes GRAPH as JSON that `flatc -b schemas/graph.fbs FILE.json` turns\n"
"back into the same graph (the round trip is exact).  The layout is that\n"
"of tools/gen_graphs.py: a shipped graphs/NAME.fbs dumps to its source\n"
"graphs/NAME.json.  A graph that fails the runtime's checks (cycles, a\n"
"tensor nobody writes, ...) is still dumped, with a warning, so that it\n"
"can be mended in JSON.\n"
"\n"
"  -o, --output FILE  write FILE (atomically) instead of standard output\n"
"  --help\n");
}

static int
cmd_dump(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *out = NULL;
    struct sg_graph g;
    int c, rc;

    while ((c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'h': dump_usage(stdout); return SG_EXIT_OK;
        default: return sg_bad_option(argv, "o:h");
        }
    }
    if (sg_operands(argc, 1, "dump GRAPH [-o FILE.json]") != 0 ||
        (out != NULL && sg_check_out(out, argv[optind], 0) != 0))
        return SG_USAGE_ERR;
    if (sg_graph_open(&g, argv[optind], 0) != 0)
        return SG_EXIT_FAIL;
    if (g.graph == NULL)
        sg_warn("the graph does not pass the runtime's checks: %s", g.why);
    /* To standard output: a write error is main's (tool_stdout_ok). */
    if (out != NULL)
        rc = sg_write_atomic(out, NULL, 0, fill_json, g.ir);
    else {
        (void)sg_json_write(stdout, g.ir);
        rc = 0;
    }
    sg_graph_close(&g);
    return rc == 0 ? SG_EXIT_OK : SG_EXIT_FAIL;
}

/* ---- check ------------------------------------------------------------- */

static void
check_usage(FILE *f)
{
    fprintf(f,
"usage: smlp-graph check GRAPH [--batch N] [--plugin-path DIRS] [-q]\n"
"Verifies GRAPH (the FlatBuffer, then names, writers and cycles), loads\n"
"its plugins, resolves every node to an op and a CPU kernel, checks its\n"
"attributes against the op's and infers every tensor's shape for batch\n"
"N, in inference and in training mode (batch 2 at least), and at a\n"
"second batch when an input has a batch dimension.  Prints each\n"
"tensor's kind, dtype and shape.  The first error names the node, its\n"
"op and the input or attribute at fault; the exit status is then 1.\n"
"\n"
"  --batch N           batch size for shape inference (default 1)\n"
"  --plugin-path DIRS  colon-separated plugin directories searched first\n"
"                      (then $SMLP_PLUGIN_PATH, the build tree, the\n"
"                      installed plugin directory)\n"
"  -q, --quiet         print only warnings and errors\n"
"  --help\n");
}

/* Options of check and stats. */
struct plan_opts {
    int64_t batch;
    const char *plugin_path;
    int quiet;
};

static int
parse_plan_opts(int argc, char **argv, struct plan_opts *o,
                void (*usage)(FILE *), const char *synopsis)
{
    static const struct option longopts[] = {
        {"batch", required_argument, NULL, 'b'},
        {"plugin-path", required_argument, NULL, 'p'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int c;

    o->batch = 1;
    o->plugin_path = NULL;
    o->quiet = 0;
    while ((c = getopt_long(argc, argv, "qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'b':
            if (sg_parse_int("--batch", optarg, 1, INT64_C(1) << 31,
                             &o->batch) != 0)
                return SG_USAGE_ERR;
            break;
        case 'p': o->plugin_path = optarg; break;
        case 'q': o->quiet = 1; break;
        case 'h': usage(stdout); return SG_HELP_DONE;
        default: return sg_bad_option(argv, "qh");
        }
    }
    return sg_operands(argc, 1, synopsis);
}

static int
cmd_check(int argc, char **argv)
{
    struct plan_opts o;
    struct sg_graph g;
    smlp_registry_t *reg = NULL;
    smlp_session_t *s;
    struct smlp_tensor t;
    size_t width = 4;
    char buf[1200];
    int32_t i;
    int rc;

    if ((rc = parse_plan_opts(argc, argv, &o, check_usage,
                              "check GRAPH [--batch N] "
                              "[--plugin-path DIRS] [-q]")) != 0)
        return rc == SG_HELP_DONE ? SG_EXIT_OK : rc;
    if (sg_graph_open(&g, argv[optind], 1) != 0)
        return SG_EXIT_FAIL;
    s = sg_plan(g.graph, o.plugin_path, o.batch, &reg);
    if (s == NULL) {
        sg_graph_close(&g);
        return SG_EXIT_FAIL;
    }
    if (sg_plan_modes(g.graph, g.ir, reg, o.batch, buf, sizeof(buf)) != 0) {
        sg_error("%s", buf);
        smlp_session_destroy(s);
        smlp_registry_destroy(reg);
        sg_graph_close(&g);
        return SG_EXIT_FAIL;
    }
    if (!o.quiet) {
        printf("graph %s (%s): %d nodes, %d tensors, batch %" PRId64 "\n",
               g.ir->name, g.path, (int)g.ir->n_nodes, (int)g.ir->n_tensors,
               o.batch);
        printf("plugins:");
        for (i = 0; i < g.ir->n_plugins; i++)
            printf(" %s", g.ir->plugins[i]);
        printf(" (from %s)\n", smlp_registry_search_path(reg));
        for (i = 0; i < g.ir->n_tensors; i++)
            if (strlen(g.ir->tensors[i].name) > width)
                width = strlen(g.ir->tensors[i].name);
        for (i = 0; i < g.ir->n_tensors; i++) {
            const struct smlp__tensor_ir *ti = &g.ir->tensors[i];

            if (smlp_session_tensor(s, ti->name, &t) != SMLP_OK ||
                t.rank < 0) {
                printf("  %-*s  %-10s (unused: no node reads or writes "
                       "it)\n",
                       (int)width, ti->name, sg_kind_name(ti->kind));
                continue;
            }
            printf("  %-*s  %-10s %s %s\n", (int)width, ti->name,
                   sg_kind_name(ti->kind), sg_dtype_name(t.dtype),
                   sg_shape_str(t.shape, t.rank, buf, sizeof(buf)));
        }
        printf("ok: %d nodes resolved and shapes inferred for batch %" PRId64
               "\n",
               (int)g.ir->n_nodes, o.batch);
    }
    smlp_session_destroy(s);
    smlp_registry_destroy(reg);
    sg_graph_close(&g);
    return SG_EXIT_OK;
}

/* ---- stats ------------------------------------------------------------- */

static void
stats_usage(FILE *f)
{
    fprintf(f,
"usage: smlp-graph stats GRAPH [--batch N] [--plugin-path DIRS] [-q]\n"
"Prints parameters and multiply-accumulates (MACs) per node, per block\n"
"(blocks.N, stem, head, ...) and in total.  MACs come from the plugins'\n"
"own shape inference for batch N (default 1: MACs per image); a\n"
"parameter read by several nodes counts for the first.\n"
"\n"
"  --batch N           batch size (default 1)\n"
"  --plugin-path DIRS  colon-separated plugin directories searched first\n"
"  -q, --quiet         totals and blocks only, no table of nodes\n"
"  --help\n");
}

struct block_stat {
    char name[64];
    int nodes;
    uint64_t params;
    uint64_t macs;
};

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

static int
cmd_stats(int argc, char **argv)
{
    struct plan_opts o;
    struct sg_graph g;
    struct smlp_session_stats st;
    struct block_stat *blocks = NULL;
    smlp_registry_t *reg = NULL;
    smlp_session_t *s;
    uint64_t *node_params = NULL, total_params = 0, total_macs = 0;
    int32_t i, j, n_blocks = 0;
    char *claimed = NULL, blk[64], b1[32], b2[32];
    int rc, status = SG_EXIT_FAIL;

    if ((rc = parse_plan_opts(argc, argv, &o, stats_usage,
                              "stats GRAPH [--batch N] "
                              "[--plugin-path DIRS] [-q]")) != 0)
        return rc == SG_HELP_DONE ? SG_EXIT_OK : rc;
    if (sg_graph_open(&g, argv[optind], 1) != 0)
        return SG_EXIT_FAIL;
    s = sg_plan(g.graph, o.plugin_path, o.batch, &reg);
    if (s == NULL)
        goto out;
    node_params = calloc((size_t)g.ir->n_nodes + 1, sizeof(*node_params));
    blocks = calloc((size_t)g.ir->n_nodes + 1, sizeof(*blocks));
    claimed = calloc((size_t)g.ir->n_tensors + 1, 1);
    if (node_params == NULL || blocks == NULL || claimed == NULL) {
        sg_error("out of memory");
        goto out;
    }
    /* Parameters, counted for the first node (in file order) reading
     * them; shapes of parameters are fixed (no batch dimension). */
    for (i = 0; i < g.ir->n_nodes; i++) {
        const struct smlp__node_ir *n = &g.ir->nodes[i];

        for (j = 0; j < n->n_inputs; j++) {
            int32_t ti = n->inputs[j];
            const struct smlp__tensor_ir *t;
            uint64_t numel = 1;
            int d;

            if (ti < 0 || claimed[ti])
                continue;
            t = &g.ir->tensors[ti];
            if (t->kind != SMLP__TENSOR_PARAMETER)
                continue;
            claimed[ti] = 1;
            for (d = 0; d < t->rank; d++)
                numel *= (uint64_t)t->shape[d];
            node_params[i] += numel;
        }
    }
    smlp_session_get_stats(s, &st);
    if (!o.quiet)
        printf("%-40s %-22s %12s %15s\n", "node", "op", "params", "MACs");
    for (i = 0; i < st.n_nodes; i++) {
        struct smlp_node_profile p;
        int32_t id;

        smlp_session_node_profile(s, i, &p);
        /* Profiles come in run order; find the node's file index. */
        for (id = 0; id < g.ir->n_nodes &&
                         strcmp(g.ir->nodes[id].name, p.name) != 0;
             id++)
            ;
        if (id == g.ir->n_nodes)
            continue;
        if (!o.quiet)
            printf("%-40s %-22s %12" PRIu64 " %15" PRIu64 "\n", p.name, p.op,
                   node_params[id], p.macs);
        sg_block_of(p.name, blk, sizeof(blk));
        for (j = 0; j < n_blocks && strcmp(blocks[j].name, blk) != 0; j++)
            ;
        if (j == n_blocks)
            snprintf(blocks[n_blocks++].name, sizeof(blocks[0].name), "%s",
                     blk);
        blocks[j].nodes++;
        blocks[j].params += node_params[id];
        blocks[j].macs += p.macs;
        total_params += node_params[id];
        total_macs += p.macs;
    }
    if (!o.quiet)
        printf("\n");
    printf("%-24s %6s %14s %16s %7s\n", "block", "nodes", "params", "MACs",
           "MACs %");
    for (j = 0; j < n_blocks; j++)
        printf("%-24s %6d %14" PRIu64 " %16" PRIu64 " %6.1f%%\n",
               blocks[j].name, blocks[j].nodes, blocks[j].params,
               blocks[j].macs,
               total_macs ? 100.0 * (double)blocks[j].macs /
                                (double)total_macs
                          : 0.0);
    printf("%-24s %6d %14" PRIu64 " %16" PRIu64 " %6.1f%%\n", "total",
           st.n_nodes, total_params, total_macs, 100.0);
    printf("\ngraph %s: %s parameters, %s MACs %s\n", g.ir->name,
           human((double)total_params, b1, sizeof(b1)),
           human((double)total_macs / (double)o.batch, b2, sizeof(b2)),
           "per image");
    if (total_params != st.params)
        sg_warn("%" PRIu64 " parameters are read by no node (the session "
                "holds %" PRIu64 ")",
                st.params - total_params, st.params);
    status = SG_EXIT_OK;
out:
    free(claimed);
    free(blocks);
    free(node_params);
    smlp_session_destroy(s);
    smlp_registry_destroy(reg);
    sg_graph_close(&g);
    return status;
}

/* ---- the command line -------------------------------------------------- */

static void
usage(FILE *f)
{
    fprintf(f,
"usage: smlp-graph COMMAND [options] GRAPH...\n"
"Inspects, checks, draws, compares and edits smlp model graphs (.fbs).\n"
"\n"
"commands:\n"
"  dump GRAPH [-o F.json]     the graph as JSON for flatc (exact round trip)\n"
"  check GRAPH [--batch N]    verify, resolve plugins, infer and print shapes\n"
"  stats GRAPH [--batch N]    parameters and MACs per node, block and total\n"
"  dot GRAPH [-o F.dot|F.svg|F.png]\n"
"                             a Graphviz picture (blocks as clusters, MoE\n"
"                             layers highlighted)\n"
"  edit GRAPH -o OUT EDITS... change ops, attributes, names, nodes, blocks,\n"
"                             shapes, initializers, sums and metadata; the\n"
"                             result is verified, then written atomically\n"
"  diff A B                   what differs; exit 0 when A and B compute the\n"
"                             same thing (name and metadata aside), 1 if not\n"
"\n"
"`smlp-graph COMMAND --help` describes a command.  Exit status: 0 success,\n"
"1 an error in a graph, plugin or file (diff: the graphs differ), 2 usage.\n"
"Recipes: docs/graphs.md.\n");
}

struct command {
    const char *name;
    int (*main)(int argc, char **argv);
};

static const struct command commands[] = {
    {"dump", cmd_dump},   {"check", cmd_check},   {"stats", cmd_stats},
    {"dot", sg_dot_main}, {"edit", sg_edit_main}, {"diff", sg_diff_main},
};

int
main(int argc, char **argv)
{
    const struct command *cmd = NULL;
    size_t i;
    int rc;

    if (argc < 2) {
        fprintf(stderr, "smlp-graph: no command given\n"
                        "Try 'smlp-graph --help'.\n");
        return SG_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        if (argc > 2 && strcmp(argv[1], "help") == 0) {
            char *args[] = {argv[2], "--help", NULL};

            for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                if (strcmp(commands[i].name, argv[2]) == 0) {
                    sg_cmd = commands[i].name;
                    optind = 1;
                    return commands[i].main(2, args);
                }
        }
        usage(stdout);
        return SG_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("smlp-graph %s (plugin ABI %d.%d)\n", smlp_version_string(),
               SMLP_ABI_MAJOR, SMLP_ABI_MINOR);
        return SG_EXIT_OK;
    }
    for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(commands[i].name, argv[1]) == 0)
            cmd = &commands[i];
    if (cmd == NULL) {
        fprintf(stderr, "smlp-graph: unknown command '%s' (one of dump, "
                        "check, stats, dot, edit, diff)\n"
                        "Try 'smlp-graph --help'.\n",
                argv[1]);
        return SG_EXIT_USAGE;
    }
    sg_cmd = cmd->name;
    opterr = 0;
    optind = 1;
    rc = cmd->main(argc - 1, argv + 1);
    if (rc == SG_USAGE_ERR) {
        fprintf(stderr, "Try 'smlp-graph %s --help'.\n", cmd->name);
        return SG_EXIT_USAGE;
    }
    /* A report that did not reach standard output (a full disk) is an
     * error: 1, or 2 for diff, whose 1 means "they differ". */
    if (rc == SG_EXIT_OK ||
        (rc == SG_EXIT_FAIL && strcmp(cmd->name, "diff") == 0)) {
        char prog[64];

        snprintf(prog, sizeof(prog), "smlp-graph %s", cmd->name);
        if (!tool_stdout_ok(prog))
            rc = strcmp(cmd->name, "diff") == 0 ? SG_EXIT_USAGE
                                                : SG_EXIT_FAIL;
    }
    return rc;
}
