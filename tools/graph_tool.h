/*
 * graph_tool.h - the parts of smlp-graph shared between its files.
 *
 * smlp-graph (tools/smlp-graph.c) works on the in-memory form of a graph
 * file, the IR of runtime/graph_ir.h, which it links statically from the
 * convenience library runtime/libsmlp_fbgraph.la (the reader and encoder
 * libsmlp itself is built from), and on libsmlp's public API for what
 * needs plugins (shape inference, MACs).  Data flows one way: a file is
 * read and verified (sg_graph_open), dumped, drawn, compared or edited,
 * and an edited IR is encoded, verified again and only then written
 * (sg_write_atomic).
 *
 * Files: graph_json.c (the JSON dump), graph_edit.c, graph_edit_apply.c
 * and graph_edit_block.c (edits; graph_edit.h), graph_dot.c (Graphviz),
 * graph_diff.c (comparison), smlp-graph.c (the command line, check and
 * stats).  Messages go to stderr as "smlp-graph CMD: ...".
 */
#ifndef SMLP_GRAPH_TOOL_H
#define SMLP_GRAPH_TOOL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "graph_ir.h"
#include "smlp.h"

/* Exit statuses of every subcommand (diff: 1 = the graphs differ). */
#define SG_EXIT_OK 0
#define SG_EXIT_FAIL 1
#define SG_EXIT_USAGE 2

/* A graph file as read: its bytes, the decoded IR and, when it passes
 * the runtime's semantic checks, the verified graph. */
struct sg_graph {
    const char *path;
    uint8_t *buf;
    size_t len;
    struct smlp__graph_ir *ir;
    smlp_graph_t *graph; /* NULL when sg_graph_open was not strict and
                            the semantic checks failed */
    char why[1024];      /* why graph is NULL */
};

/* The subcommand running, for messages ("dump", "edit", ...). */
extern const char *sg_cmd;

/* Prints "smlp-graph CMD: message" and a newline to stderr. */
void sg_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same with "warning: " (and "note: ") before the message. */
void sg_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void sg_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Reads path, verifies and decodes the FlatBuffer into g->ir, then runs
 * the runtime's semantic checks (smlp_graph_load_buffer) into g->graph.
 * With `strict` a failing semantic check is an error; without, g->graph
 * stays NULL and g->why says why (dump uses this to show broken graphs).
 * Returns 0, or -1 after printing the error.  Release with
 * sg_graph_close.
 */
int sg_graph_open(struct sg_graph *g, const char *path, int strict);
void sg_graph_close(struct sg_graph *g);

/*
 * Writes len bytes (or, with data NULL, what fill() writes to the FILE)
 * to a temporary file beside path, syncs it and renames it over path:
 * readers see the old file or the new one, never a part.  Returns 0, or
 * -1 after printing the error (the temporary file is removed).
 */
int sg_write_atomic(const char *path, const void *data, size_t len,
                    int (*fill)(FILE *f, void *arg), void *arg);

/* Nonzero when name matches the shell glob pattern (fnmatch, '*' also
 * matches '.'). */
int sg_glob(const char *pattern, const char *name);

/* "f32" / "i32"; "activation", "parameter", ... */
const char *sg_dtype_name(int dtype);
const char *sg_kind_name(int kind);
/* The schema's enum names: "F32", "Parameter", "Uniform", "Float", ... */
const char *sg_dtype_enum(int dtype);
const char *sg_kind_enum(int kind);
const char *sg_init_enum(int kind);
const char *sg_attr_enum(int type);

/* "[2,196,768]" ("[]" for rank 0) into buf; returns buf. */
const char *sg_shape_str(const int64_t *shape, int rank, char *buf,
                         size_t len);

/*
 * A double as Python's repr() writes it (the shortest decimal that reads
 * back to the same double, "1.05", "1e-06", "0.0"), which is also what
 * tools/gen_graphs.py puts in the graphs' JSON.  buf needs 32 bytes.
 */
const char *sg_double_str(double v, char *buf, size_t len);

/*
 * The block a node belongs to, for stats and dot: the first two
 * dot-separated parts when the second is a number followed by more
 * ("blocks.3.norm1" -> "blocks.3"), else the first ("stem", "head",
 * "aux_sum.0" -> "aux_sum").  Writes into buf; returns buf.
 */
const char *sg_block_of(const char *name, char *buf, size_t len);

/* ---- graph_json.c ---- */

/*
 * Writes the IR as JSON that `flatc -b schemas/graph.fbs` turns back into
 * the same IR: fields in schema order, one tensor, node or metadata entry
 * a line, scalars at their schema default left out (the layout of
 * tools/gen_graphs.py, so a generated graph dumps to its source).
 * Returns 0 or -1 when the stream fails.
 */
int sg_json_write(FILE *f, const struct smlp__graph_ir *ir);

/* ---- graph_edit.c ---- */

/* The subcommands of their own files: each takes the argv that starts
 * with its name and returns an exit status or SG_USAGE_ERR. */
int sg_edit_main(int argc, char **argv);

/* ---- graph_dot.c, graph_diff.c ---- */
int sg_dot_main(int argc, char **argv);
int sg_diff_main(int argc, char **argv);

/* ---- smlp-graph.c: options shared by several subcommands ---- */

/*
 * Creates a registry searching plugin_path first, loads the graph's
 * plugins and creates a plan-only session for `batch` (shape inference,
 * MACs, no memory).  Returns the session, or NULL after printing the
 * error (which names the node, the op and the input at fault).
 */
smlp_session_t *sg_plan(const smlp_graph_t *graph, const char *plugin_path,
                        int64_t batch, smlp_registry_t **reg);

/*
 * Checks -o OUT before the work: a file we can write (tool_check_output),
 * and, unless may_be_input, not the graph file `input` itself.  0, or
 * SG_USAGE_ERR after a message.
 */
int sg_check_out(const char *out, const char *input, int may_be_input);

/*
 * Plans the graph in the other settings a run may use: training mode
 * (gate noise, training capacity factors) at `batch`, and, when an input
 * has a batch dimension, inference at another batch.  0, or -1 with why
 * in buf ("in training mode: ..." / "at batch 2: ...").
 */
int sg_plan_modes(const smlp_graph_t *graph, const struct smlp__graph_ir *ir,
                  smlp_registry_t *reg, int64_t batch, char *buf, size_t len);


/* What a subcommand's argument parsing returns besides 0: a usage error
 * (already described; main adds "Try ...") or --help (printed). */
#define SG_USAGE_ERR (-1)
#define SG_HELP_DONE (-3)

/* Describes getopt's complaint about argv[optind - 1] (unknown option, or
 * one missing its value); returns SG_USAGE_ERR. */
int sg_bad_option(char **argv, const char *shortopts);
/* Checks that `want` operands follow the options; else describes the
 * problem with the synopsis and returns SG_USAGE_ERR. */
int sg_operands(int argc, int want, const char *synopsis);

/* Parses a decimal integer in [min, max] for option opt; -1 with a
 * message on failure. */
int sg_parse_int(const char *opt, const char *s, int64_t min, int64_t max,
                 int64_t *out);

#endif /* SMLP_GRAPH_TOOL_H */
