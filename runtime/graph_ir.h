/*
 * graph_ir.h - the in-memory form of a graph file (internal).
 *
 * runtime/fbgraph.c decodes a verified FlatBuffer (schemas/graph.fbs) into
 * this structure and encodes it back.  Everything is owned by the IR and
 * released with smlp__graph_ir_free().  Indices are as in the file: a node
 * input of -1 means an absent optional input.  The decoder checks the
 * *format* (offsets, lengths, enums, index ranges, rank, UTF-8 strings);
 * graph semantics (the format version, names, cycles, writers, shapes,
 * initializers) are checked by runtime/graph.c.
 */
#ifndef SMLP_GRAPH_IR_H
#define SMLP_GRAPH_IR_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../ops/smlp_plugin.h"

/* Values of the schema's enums (schemas/graph.fbs). */
enum smlp__tensor_kind {
    SMLP__TENSOR_ACTIVATION = 0,
    SMLP__TENSOR_PARAMETER = 1,
    SMLP__TENSOR_STATE = 2,
    SMLP__TENSOR_INPUT = 3,
    SMLP__TENSOR_OUTPUT = 4,
    SMLP__TENSOR_KIND_COUNT
};

enum smlp__init_kind {
    SMLP__INIT_ZEROS = 0,
    SMLP__INIT_ONES = 1,
    SMLP__INIT_CONSTANT = 2,
    SMLP__INIT_UNIFORM = 3,
    SMLP__INIT_NORMAL = 4,
    SMLP__INIT_KIND_COUNT
};

struct smlp__attr_ir {
    char *name;
    int32_t type; /* enum smlp_attr_type */
    int64_t i;
    double f;
    char *s;         /* NULL when absent */
    int64_t *ints;   /* type INTS: n_values entries */
    double *floats;  /* type FLOATS: n_values entries */
    size_t n_values;
};

struct smlp__init_ir {
    int32_t present; /* 0: the tensor has no init table */
    int32_t kind;    /* enum smlp__init_kind */
    double a;
    double b;
    uint64_t seed;
};

struct smlp__tensor_ir {
    char *name;
    int32_t dtype; /* enum smlp_dtype */
    int32_t kind;  /* enum smlp__tensor_kind */
    int32_t has_shape;
    int32_t rank;
    int64_t shape[SMLP_MAX_RANK];
    struct smlp__init_ir init;
};

struct smlp__node_ir {
    char *name;
    char *op;
    int32_t n_inputs;
    int32_t *inputs;
    int32_t n_outputs;
    int32_t *outputs;
    int32_t n_attrs;
    struct smlp__attr_ir *attrs;
};

struct smlp__meta_ir {
    char *key;
    char *value; /* NULL when absent */
};

struct smlp__graph_ir {
    uint32_t format_version;
    char *name;
    int32_t n_plugins;
    char **plugins;
    int32_t n_tensors;
    struct smlp__tensor_ir *tensors;
    int32_t n_nodes;
    struct smlp__node_ir *nodes;
    int32_t n_meta;
    struct smlp__meta_ir *meta;
};

/* The format_version this runtime reads (the schema's default: a file
 * without the field has it).  runtime/graph.c refuses any other. */
#define SMLP__GRAPH_FORMAT_VERSION 1

/* Limits enforced by the decoder (a file over them is rejected). */
#define SMLP__MAX_TENSORS 1000000
#define SMLP__MAX_NODES 1000000
#define SMLP__MAX_NODE_IO 64
#define SMLP__MAX_ATTRS 256
#define SMLP__MAX_STRING 65536
#define SMLP__MAX_PLUGINS 256
#define SMLP__MAX_META 65536

/*
 * Verifies buf[0..len) as a smlp graph FlatBuffer and decodes it into a
 * newly allocated IR stored in *out.  `what` names the input in messages
 * (normally the file path).  On failure returns SMLP_EBADFILE (or
 * SMLP_ENOMEM), leaves *out NULL and writes a message such as
 * "graphs/x.fbs: node 3: inputs vector at offset 1234 runs past the end of
 * the file (size 1200)" into err[0..errlen).  Never reads outside buf.
 */
int smlp__graph_ir_decode(const uint8_t *buf, size_t len, const char *what,
                          struct smlp__graph_ir **out, char *err,
                          size_t errlen);

/*
 * Encodes an IR as a FlatBuffer with file identifier "SMLG" that flatc can
 * read with schemas/graph.fbs.  *out is malloc'ed; the caller frees it.
 */
int smlp__graph_ir_encode(const struct smlp__graph_ir *ir, uint8_t **out,
                          size_t *len, char *err, size_t errlen);

/* Deep copy (for editing); NULL on allocation failure. */
struct smlp__graph_ir *smlp__graph_ir_clone(const struct smlp__graph_ir *ir);

void smlp__graph_ir_free(struct smlp__graph_ir *ir);

/*
 * Node n's attribute `name`, or, when it has none, a new zeroed one (the
 * name copied, type 0: the caller sets the type and value) placed in name
 * order when the node's attributes are sorted, else last.  Other
 * attribute pointers of n are invalid afterwards.  NULL when memory runs
 * out or n already has SMLP__MAX_ATTRS attributes.
 */
struct smlp__attr_ir *smlp__graph_ir_node_attr(struct smlp__node_ir *n,
                                               const char *name);

/* Renumbers node n's tensor indices: each input and output i becomes
 * map[i] (absent inputs, -1, stay). */
static inline void
smlp__graph_ir_node_remap(struct smlp__node_ir *n, const int32_t *map)
{
    int32_t j;

    for (j = 0; j < n->n_inputs; j++)
        if (n->inputs[j] >= 0)
            n->inputs[j] = map[n->inputs[j]];
    for (j = 0; j < n->n_outputs; j++)
        n->outputs[j] = map[n->outputs[j]];
}

/* The index of the tensor / node called `name`, or -1 (a linear scan). */
static inline int32_t
smlp__graph_ir_find_tensor(const struct smlp__graph_ir *ir, const char *name)
{
    int32_t i;

    for (i = 0; i < ir->n_tensors; i++)
        if (strcmp(ir->tensors[i].name, name) == 0)
            return i;
    return -1;
}

static inline int32_t
smlp__graph_ir_find_node(const struct smlp__graph_ir *ir, const char *name)
{
    int32_t i;

    for (i = 0; i < ir->n_nodes; i++)
        if (strcmp(ir->nodes[i].name, name) == 0)
            return i;
    return -1;
}

#endif /* SMLP_GRAPH_IR_H */
