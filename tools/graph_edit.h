/*
 * graph_edit.h - the parts of `smlp-graph edit` shared between its files:
 * graph_edit.c (the edits parsed from the command line, applied in order,
 * pruning, verifying and writing), graph_edit_apply.c (the edits of
 * nodes, attributes, tensors and metadata) and graph_edit_block.c
 * (--clone-block and --sum-tensors).  Functions return 0, or -1 after
 * printing the error (sg_error) naming the edit's option and spec.
 */
#ifndef SMLP_GRAPH_EDIT_H
#define SMLP_GRAPH_EDIT_H

#include <stddef.h>
#include <stdint.h>

#include "graph_tool.h"

enum edit_kind {
    EDIT_SET_OP,
    EDIT_SET_ATTR,
    EDIT_DEL_ATTR,
    EDIT_RENAME,
    EDIT_REMOVE_NODE,
    EDIT_DROP_INPUT,
    EDIT_SET_SHAPE,
    EDIT_SET_INIT,
    EDIT_NAME,
    EDIT_SET_META,
    EDIT_DEL_META,
    EDIT_CLONE_BLOCK,
    EDIT_SUM_TENSORS,
    EDIT_KIND_COUNT
};

/* The option of each edit kind ("--set-op", ...), for messages. */
extern const char *const edit_opt[];

/* One edit, parsed from its option's argument (spec). */
struct edit {
    int kind;
    const char *spec;
    char *glob;  /* node or tensor glob (set-op: NULL = every node) */
    char *key;   /* op glob, attribute name(s), old name, meta key,
                    clone-block SRC, sum-tensors node prefix (or NULL) */
    char *value; /* new op, attribute value, new name, meta value,
                    clone-block DST, sum-tensors output */
    int type;    /* attribute type; -1: keep the old one or infer */
    int64_t index;
};

/* ---- graph_edit.c ---- */

/* Memory for the IR (malloc, as graph_ir.h wants; out of memory exits). */
char *ge_strdup(const char *s);
char *ge_strndup(const char *s, size_t n);
void *ge_realloc(void *p, size_t n);
void ge_attr_clear(struct smlp__attr_ir *a);
void ge_node_free(struct smlp__node_ir *n);
/* 64-bit FNV-1a of a name: the seed of a new initializer. */
uint64_t ge_fnv1a64(const char *s);
/* Attribute values: a list "a,b,c" (brackets optional) parsed into *ints
 * (ints != NULL) or *floats, the type a new attribute gets from its
 * value's text, and setting one (-1 after an error naming the edit and
 * the node). */
int ge_parse_list(const char *text, int64_t **ints, double **floats,
                  size_t *n);
int ge_infer_type(const char *v);
int ge_attr_set(struct smlp__attr_ir *a, int type, const char *v,
                const struct edit *e, const char *node);

/* ---- graph_edit_apply.c ---- */

/* "no WHAT matches GLOB" for the edit; returns -1. */
int ge_no_match(const struct edit *e, const char *what, const char *glob);
/* Adds plugin name[0..len) to the graph's list unless it is there. */
void ge_need_plugin(struct smlp__graph_ir *ir, const char *name,
                    size_t len);
/* name with its prefix from[0..from_len) replaced by to[0..to_len)
 * (malloc'ed), or NULL when name does not start with it. */
char *ge_prefix_rename(const char *name, const char *from, size_t from_len,
                       const char *to, size_t to_len);
int ge_apply_set_op(struct smlp__graph_ir *ir, const struct edit *e,
                    smlp_registry_t *reg);
int ge_apply_set_attr(struct smlp__graph_ir *ir, const struct edit *e);
int ge_apply_del_attr(struct smlp__graph_ir *ir, const struct edit *e);
int ge_apply_rename(struct smlp__graph_ir *ir, const struct edit *e);
int ge_apply_remove_node(struct smlp__graph_ir *ir, const struct edit *e);
int ge_apply_drop_input(struct smlp__graph_ir *ir, const struct edit *e);
int ge_apply_set_shape(struct smlp__graph_ir *ir, const struct edit *e);
int ge_apply_set_init(struct smlp__graph_ir *ir, const struct edit *e);
/* --set-meta and --del-meta */
int ge_apply_meta(struct smlp__graph_ir *ir, const struct edit *e);

/* ---- graph_edit_block.c ---- */

int ge_apply_clone_block(struct smlp__graph_ir *ir, const struct edit *e);
int ge_apply_sum_tensors(struct smlp__graph_ir *ir, const struct edit *e);

#endif /* SMLP_GRAPH_EDIT_H */
