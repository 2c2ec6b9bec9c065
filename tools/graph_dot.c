/*
 * graph_dot.c - `smlp-graph dot`: a graph as a Graphviz picture.
 *
 * Nodes are boxes ("name / op"), graph inputs and outputs ellipses, and
 * an edge runs from the node writing a tensor to each node reading it
 * (parameters are left out: they would double the picture).  Nodes of a
 * block (blocks.N.*, see sg_block_of) sit in a cluster; an MoE layer (a
 * gate node, op PLUGIN.gate or PLUGIN.gate.*, and the nodes that share its
 * prefix: dispatch, experts, combine) in a highlighted cluster inside it,
 * labelled with the gate op, E and k.  With --shapes the edges carry the
 * shapes inferred for --batch (this needs the plugins).
 *
 * The text goes to standard output or -o FILE.dot; FILE.svg, FILE.png and
 * FILE.pdf are drawn by Graphviz's `dot` program (Debian package
 * graphviz), which reads the text from a pipe and prints the picture to
 * another, copied into FILE as every output file is written
 * (runtime/atomic_file.h: a temporary file renamed over it).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "atomic_file.h"
#include "graph_tool.h"

struct dot_ctx {
    const struct smlp__graph_ir *ir;
    smlp_session_t *session; /* NULL: no shapes */
    int32_t *producer;       /* per tensor: writing node or -1 */
    int32_t *layer;          /* per node: its MoE layer's gate node or -1 */
    char **prefix;           /* per gate node: the layer prefix "x.moe_c." */
};

/* Writes s as the inside of a DOT string ("...": quotes and backslashes
 * escaped, newlines as \n). */
static void
dot_str(FILE *f, const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

/* Nonzero when op names a gate: its part after the plugin is "gate" or
 * starts with "gate." (moe.gate.topk, expertchoice.gate). */
static int
is_gate_op(const char *op)
{
    const char *dot = strchr(op, '.');

    return dot != NULL && strncmp(dot + 1, "gate", 4) == 0 &&
           (dot[5] == '\0' || dot[5] == '.');
}

static void
find_layers(struct dot_ctx *c)
{
    const struct smlp__graph_ir *ir = c->ir;
    int32_t i, j;

    for (i = 0; i < ir->n_nodes; i++) {
        const char *name = ir->nodes[i].name;
        size_t len = strlen(name);

        c->layer[i] = -1;
        c->prefix[i] = NULL;
        if (!is_gate_op(ir->nodes[i].op))
            continue;
        if (len > 5 && strcmp(name + len - 5, ".gate") == 0)
            len -= 4; /* keep the dot: "blocks.10.moe_c." */
        else
            len = strlen(name);
        c->prefix[i] = malloc(len + 2);
        if (c->prefix[i] == NULL)
            continue;
        memcpy(c->prefix[i], name, len);
        c->prefix[i][len] = '\0';
        if (c->prefix[i][len - 1] != '.')
            strcat(c->prefix[i], ".");
    }
    for (i = 0; i < ir->n_nodes; i++)
        for (j = 0; j < ir->n_nodes; j++)
            if (c->prefix[j] != NULL &&
                (i == j || strncmp(ir->nodes[i].name, c->prefix[j],
                                   strlen(c->prefix[j])) == 0)) {
                c->layer[i] = j;
                break;
            }
}

/* E and k of a gate node: E from its router weight (input 1, [E, d]) or
 * attribute "experts"; k from attribute "k" (default 1). */
static void
gate_sizes(const struct smlp__graph_ir *ir, const struct smlp__node_ir *g,
           int64_t *e, int64_t *k)
{
    int32_t i;

    *e = -1;
    *k = 1;
    if (g->n_inputs > 1 && g->inputs[1] >= 0 &&
        ir->tensors[g->inputs[1]].has_shape &&
        ir->tensors[g->inputs[1]].rank == 2)
        *e = ir->tensors[g->inputs[1]].shape[0];
    for (i = 0; i < g->n_attrs; i++) {
        if (strcmp(g->attrs[i].name, "experts") == 0 &&
            g->attrs[i].type == SMLP_ATTR_INT)
            *e = g->attrs[i].i;
        if (strcmp(g->attrs[i].name, "k") == 0 &&
            g->attrs[i].type == SMLP_ATTR_INT)
            *k = g->attrs[i].i;
    }
}

static void
put_node(FILE *f, const struct dot_ctx *c, int32_t i, const char *strip,
         const char *indent)
{
    const struct smlp__node_ir *n = &c->ir->nodes[i];
    const char *label = n->name;
    const char *fill = "#ffffff";

    if (strip != NULL && strncmp(label, strip, strlen(strip)) == 0 &&
        label[strlen(strip)] != '\0')
        label += strlen(strip);
    if (c->layer[i] >= 0)
        fill = c->layer[i] == i ? "#f5a65b" : "#fcd9b6";
    fprintf(f, "%sn%d [label=\"", indent, (int)i);
    dot_str(f, label);
    fputs("\\n", f);
    dot_str(f, n->op);
    fprintf(f, "\", fillcolor=\"%s\"];\n", fill);
}

static int
fill_dot(FILE *f, void *arg)
{
    const struct dot_ctx *c = arg;
    const struct smlp__graph_ir *ir = c->ir;
    char blk[128], cur[128] = "", shape[200];
    int32_t i, j, open_layer = -1;
    int in_block = 0;

    fputs("digraph \"", f);
    dot_str(f, ir->name);
    fputs("\" {\n  graph [rankdir=TB, fontname=\"Helvetica\", fontsize=12, "
          "labelloc=t, label=\"",
          f);
    dot_str(f, ir->name);
    fprintf(f, " (%d nodes)\"];\n", (int)ir->n_nodes);
    fputs("  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica"
          "\", fontsize=10];\n"
          "  edge [fontname=\"Helvetica\", fontsize=8, color=\"#555555\"];\n",
          f);
    /* Graph inputs and outputs. */
    for (i = 0; i < ir->n_tensors; i++) {
        const struct smlp__tensor_ir *t = &ir->tensors[i];

        if (t->kind != SMLP__TENSOR_INPUT && t->kind != SMLP__TENSOR_OUTPUT)
            continue;
        fprintf(f, "  t%d [shape=ellipse, fillcolor=\"%s\", label=\"",
                (int)i,
                t->kind == SMLP__TENSOR_INPUT ? "#cfe2f3" : "#d9ead3");
        dot_str(f, t->name);
        if (t->has_shape)
            fprintf(f, "\\n%s",
                    sg_shape_str(t->shape, t->rank, shape, sizeof(shape)));
        fputs("\"];\n", f);
    }
    /* Nodes in file order; a cluster opens when the block changes.  A
     * block whose nodes are not contiguous gets several clusters, which
     * Graphviz draws apart (our generator keeps them contiguous). */
    for (i = 0; i < ir->n_nodes; i++) {
        const char *name = ir->nodes[i].name;
        int32_t lay = c->layer[i];

        sg_block_of(name, blk, sizeof(blk));
        if (open_layer >= 0 && lay != open_layer) {
            fputs("    }\n", f);
            open_layer = -1;
        }
        if (!in_block || strcmp(blk, cur) != 0) {
            if (in_block)
                fputs("  }\n", f);
            in_block = strcmp(blk, name) != 0;
            snprintf(cur, sizeof(cur), "%s", blk);
            if (in_block) {
                fprintf(f, "  subgraph cluster_%d {\n    label=\"", (int)i);
                dot_str(f, blk);
                fputs("\"; style=\"rounded\"; color=\"#999999\";\n", f);
            }
        }
        if (lay >= 0 && open_layer < 0) {
            int64_t e, k;

            gate_sizes(ir, &ir->nodes[lay], &e, &k);
            fprintf(f, "    subgraph cluster_moe_%d {\n      label=\"MoE ",
                    (int)i);
            snprintf(shape, sizeof(shape), "%.*s",
                     (int)strlen(c->prefix[lay]) - 1, c->prefix[lay]);
            dot_str(f, shape);
            fputs(": ", f);
            dot_str(f, ir->nodes[lay].op);
            if (e > 0)
                fprintf(f, ", E=%" PRId64, e);
            fprintf(f, ", k=%" PRId64 "\"; style=\"rounded,filled\"; "
                       "fillcolor=\"#fff2e5\"; color=\"#e07b1a\";\n",
                    k);
            open_layer = lay;
        }
        if (lay >= 0)
            snprintf(shape, sizeof(shape), "%s", c->prefix[lay]);
        else
            snprintf(shape, sizeof(shape), "%s.", blk);
        put_node(f, c, i, lay >= 0 || in_block ? shape : NULL,
                 open_layer >= 0 ? "      " : in_block ? "    " : "  ");
    }
    if (open_layer >= 0)
        fputs("    }\n", f);
    if (in_block)
        fputs("  }\n", f);
    /* Edges: writer -> reader of each activation, input -> reader,
     * writer -> output. */
    for (i = 0; i < ir->n_nodes; i++) {
        const struct smlp__node_ir *n = &ir->nodes[i];

        for (j = 0; j < n->n_inputs; j++) {
            int32_t t = n->inputs[j];
            const struct smlp__tensor_ir *ti;
            struct smlp_tensor st;

            if (t < 0)
                continue;
            ti = &ir->tensors[t];
            if (ti->kind == SMLP__TENSOR_INPUT)
                fprintf(f, "  t%d -> n%d", (int)t, (int)i);
            else if (c->producer[t] >= 0)
                fprintf(f, "  n%d -> n%d", (int)c->producer[t], (int)i);
            else
                continue;
            if (c->session != NULL &&
                smlp_session_tensor(c->session, ti->name, &st) == SMLP_OK &&
                st.rank >= 0)
                fprintf(f, " [label=\"%s\"]",
                        sg_shape_str(st.shape, st.rank, shape,
                                     sizeof(shape)));
            fputs(";\n", f);
        }
        for (j = 0; j < n->n_outputs; j++)
            if (ir->tensors[n->outputs[j]].kind == SMLP__TENSOR_OUTPUT)
                fprintf(f, "  n%d -> t%d;\n", (int)i, (int)n->outputs[j]);
    }
    fputs("}\n", f);
    return ferror(f) ? -1 : 0;
}

/*
 * Feeds text to the child's stdin (in, made non-blocking) while copying
 * its stdout (out) into af, until the child closes its stdout; both fds
 * are closed.  poll() keeps either pipe from filling up while we wait on
 * the other.  Returns 0, or -1 after a message: a write error of af (its
 * message; the rest of the output is drained so that dot ends) or a pipe
 * error.  An early end of the child's stdin (dot missing) is no error
 * here: its exit status tells.
 */
static int
pump(int in, int out, const char *text, size_t len,
     struct smlp__atomic_file *af)
{
    char buf[65536], err[4096 + 256];
    struct pollfd pfd[2];
    size_t sent = 0;
    ssize_t n;
    int rc = 0;

    if (len == 0) {
        close(in);
        in = -1;
    }
    for (;;) {
        pfd[0].fd = in;
        pfd[0].events = POLLOUT;
        pfd[1].fd = out;
        pfd[1].events = POLLIN;
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            sg_error("%s: poll: %s", af->path, strerror(errno));
            rc = -1;
            break;
        }
        if (in >= 0 && pfd[0].revents != 0) {
            n = write(in, text + sent, len - sent);
            if (n > 0)
                sent += (size_t)n;
            if ((n < 0 && errno != EINTR && errno != EAGAIN) ||
                sent == len) {
                close(in);
                in = -1;
            }
        }
        if (pfd[1].revents == 0)
            continue;
        n = read(out, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            sg_error("%s: cannot read dot's output: %s", af->path,
                     strerror(errno));
            rc = -1;
            break;
        }
        if (n == 0)
            break;
        if (rc == 0 && smlp__atomic_file_write(af, buf, (size_t)n, err,
                                               sizeof(err)) != SMLP_OK) {
            sg_error("%s", err);
            rc = -1;
        }
    }
    if (in >= 0)
        close(in);
    close(out);
    return rc;
}

/*
 * Pipes the DOT text into `dot -TFORMAT` and writes what it prints to
 * path through smlp__atomic_file (runtime/atomic_file.h): replaced
 * atomically, a device or FIFO written in place, a link's target
 * replaced; write errors are ours to see, since dot ignores them.
 * Returns 0, or -1 after a message (dot missing or failing).
 */
static int
render(const char *path, const char *format, struct dot_ctx *c)
{
    struct smlp__atomic_file af;
    char err[4096 + 256], fmt[32];
    char *text = NULL;
    size_t len = 0;
    int in[2], out[2], status = 0, pumped, rc = -1;
    void (*old)(int);
    pid_t pid;
    FILE *f;

    f = open_memstream(&text, &len);
    if (f == NULL || fill_dot(f, c) != 0 || fclose(f) != 0) {
        sg_error("out of memory");
        free(text);
        return -1;
    }
    if (smlp__atomic_file_open(&af, path, err, sizeof(err)) != SMLP_OK) {
        sg_error("%s", err);
        goto out_free_text;
    }
    snprintf(fmt, sizeof(fmt), "-T%s", format);
    if (pipe2(in, O_CLOEXEC) != 0) {
        sg_error("cannot create a pipe: %s", strerror(errno));
        goto out_abort;
    }
    if (pipe2(out, O_CLOEXEC) != 0) {
        sg_error("cannot create a pipe: %s", strerror(errno));
        goto out_close_in;
    }
    pid = fork();
    if (pid < 0) {
        sg_error("cannot start dot: %s", strerror(errno));
        goto out_close_out;
    }
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        execlp("dot", "dot", fmt, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    (void)fcntl(in[1], F_SETFL, O_NONBLOCK);
    /* dot may exit early (missing); do not die of SIGPIPE. */
    old = signal(SIGPIPE, SIG_IGN);
    pumped = pump(in[1], out[0], text, len, &af);
    signal(SIGPIPE, old);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
        sg_error("%s: drawing %s needs Graphviz's 'dot' program, which is "
                 "not installed (apt-get install -y graphviz); -o FILE.dot "
                 "writes the text it reads",
                 path, format);
        goto out_abort;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        sg_error("%s: dot -T%s failed (exit status %d)", path, format,
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        goto out_abort;
    }
    if (pumped != 0)
        goto out_abort;
    if (smlp__atomic_file_commit(&af, err, sizeof(err)) != SMLP_OK) {
        sg_error("%s", err);
        goto out_free_text;
    }
    rc = 0;
    goto out_free_text;

out_close_out:
    close(out[0]);
    close(out[1]);
out_close_in:
    close(in[0]);
    close(in[1]);
out_abort:
    smlp__atomic_file_abort(&af);
out_free_text:
    free(text);
    return rc;
}

static void
dot_usage(FILE *f)
{
    fprintf(f,
"usage: smlp-graph dot GRAPH [-o FILE.dot|FILE.svg|FILE.png|FILE.pdf]\n"
"                  [--shapes [--batch N] [--plugin-path DIRS]]\n"
"Draws GRAPH with Graphviz: nodes as boxes (name and op), graph inputs and\n"
"outputs as ellipses, each block (blocks.N) as a cluster and each MoE layer\n"
"(gate, dispatch, experts, combine) as a highlighted cluster labelled with\n"
"its gate op, E and k.  Writes the DOT text to standard output or\n"
"FILE.dot; .svg, .png and .pdf are drawn by the 'dot' program (Debian\n"
"package graphviz).\n"
"\n"
"  -o, --output FILE   where to write (atomically)\n"
"  --shapes            label edges with the shapes inferred for --batch\n"
"                      (loads the graph's plugins)\n"
"  --batch N           batch size for --shapes (default 1)\n"
"  --plugin-path DIRS  colon-separated plugin directories searched first\n"
"  --help\n");
}

int
sg_dot_main(int argc, char **argv)
{
    enum { OPT_SHAPES = 256, OPT_BATCH, OPT_PLUGIN_PATH };
    static const struct option longopts[] = {
        {"output", required_argument, NULL, 'o'},
        {"shapes", no_argument, NULL, OPT_SHAPES},
        {"batch", required_argument, NULL, OPT_BATCH},
        {"plugin-path", required_argument, NULL, OPT_PLUGIN_PATH},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *out = NULL, *plugin_path = NULL, *ext = NULL;
    struct dot_ctx c;
    struct sg_graph g;
    smlp_registry_t *reg = NULL;
    int64_t batch = 1;
    int32_t i, j;
    int ch, shapes = 0, rc, status = SG_EXIT_FAIL;

    while ((ch = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'o': out = optarg; break;
        case OPT_SHAPES: shapes = 1; break;
        case OPT_PLUGIN_PATH: plugin_path = optarg; break;
        case OPT_BATCH:
            if (sg_parse_int("--batch", optarg, 1, INT64_C(1) << 31,
                             &batch) != 0)
                return SG_USAGE_ERR;
            break;
        case 'h': dot_usage(stdout); return SG_EXIT_OK;
        default: return sg_bad_option(argv, "o:h");
        }
    }
    if (sg_operands(argc, 1, "dot GRAPH [-o FILE]") != 0 ||
        (out != NULL && sg_check_out(out, argv[optind], 0) != 0))
        return SG_USAGE_ERR;
    if (out != NULL) {
        ext = strrchr(out, '.');
        if (ext == NULL ||
            (strcmp(ext, ".dot") != 0 && strcmp(ext, ".gv") != 0 &&
             strcmp(ext, ".svg") != 0 && strcmp(ext, ".png") != 0 &&
             strcmp(ext, ".pdf") != 0)) {
            sg_error("-o '%s': the name must end in .dot, .gv, .svg, .png "
                     "or .pdf",
                     out);
            return SG_USAGE_ERR;
        }
    }
    if (sg_graph_open(&g, argv[optind], 1) != 0)
        return SG_EXIT_FAIL;
    memset(&c, 0, sizeof(c));
    c.ir = g.ir;
    c.producer = calloc((size_t)g.ir->n_tensors + 1, sizeof(*c.producer));
    c.layer = calloc((size_t)g.ir->n_nodes + 1, sizeof(*c.layer));
    c.prefix = calloc((size_t)g.ir->n_nodes + 1, sizeof(*c.prefix));
    if (c.producer == NULL || c.layer == NULL || c.prefix == NULL) {
        sg_error("out of memory");
        goto out;
    }
    for (i = 0; i < g.ir->n_tensors; i++)
        c.producer[i] = -1;
    for (i = 0; i < g.ir->n_nodes; i++)
        for (j = 0; j < g.ir->nodes[i].n_outputs; j++)
            c.producer[g.ir->nodes[i].outputs[j]] = i;
    find_layers(&c);
    if (shapes && (c.session = sg_plan(g.graph, plugin_path, batch,
                                       &reg)) == NULL)
        goto out;
    if (out == NULL) {
        /* A write error is main's to report (tool_stdout_ok). */
        (void)fill_dot(stdout, &c);
        rc = 0;
    } else if (strcmp(ext, ".dot") == 0 || strcmp(ext, ".gv") == 0)
        rc = sg_write_atomic(out, NULL, 0, fill_dot, &c);
    else
        rc = render(out, ext + 1, &c);
    if (rc == 0)
        status = SG_EXIT_OK;
out:
    smlp_session_destroy(c.session);
    smlp_registry_destroy(reg);
    for (i = 0; c.prefix != NULL && i < g.ir->n_nodes; i++)
        free(c.prefix[i]);
    free(c.prefix);
    free(c.layer);
    free(c.producer);
    sg_graph_close(&g);
    return status;
}
