/*
 * run_report.h - the parts of smlp-run's report that need more than the
 * session statistics: the MoE layer table and the JSON report.
 */
#ifndef SMLP_RUN_REPORT_H
#define SMLP_RUN_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "smlp.h"

/* One MoE layer, found by its gate node (op "moe.gate.*"). */
struct moe_layer {
    const char *gate;    /* the gate node's name */
    const char *op;
    int64_t experts;     /* E */
    int64_t k;           /* choices per item */
    int64_t items;       /* N, rows routed in this run */
    int64_t groups;      /* N / group_size */
    int64_t capacity;    /* rows per expert per group (cap) */
    int64_t rows;        /* M = groups * cap: buffer rows per expert */
    const char *slot_item; /* the gate's output 3 */
    int has_aux;         /* aux and load are graph outputs (kept) */
    double aux;
    const int32_t *load; /* [E, 2]: kept, dropped; NULL when not kept */
};

/* Time of the last run split by MoE op role, in ms of node time. */
struct moe_time {
    double gate, dispatch, experts, combine; /* moe.* ops */
    double all;                              /* every node */
};

/* Finds the MoE layers of the session's graph in run order; *out is
 * malloc'ed (free it).  Returns the count, or -1 when out of memory. */
int moe_layers_collect(smlp_session_t *s, const smlp_graph_t *g,
                       struct moe_layer **out);
void moe_time_collect(smlp_session_t *s, int n_nodes, struct moe_time *t);
/*
 * The MACs node i (run order) computed in the last run: its profile's
 * MACs, except for a moe.expert_ffn given its layer's slot_item (OPS.md:
 * rows marked -1 need not be computed, and the kernels skip them) in a
 * layer whose load is readable: those MACs times the filled share of the
 * capacity rows, sum of kept over E x M.  MACs per image stay the
 * model's; this is for achieved GFLOP/s.
 */
uint64_t moe_node_macs(smlp_session_t *s, int i, const struct moe_layer *l,
                       int n);
/* Prints the per-expert load table of each layer and the routing share. */
void moe_layers_print(FILE *f, const struct moe_layer *l, int n,
                      const struct moe_time *t, int training);

/* Everything smlp-run measured, for the JSON report. */
struct run_report {
    const char *graph_file;
    const smlp_graph_t *graph;
    smlp_session_t *session;
    const struct smlp_session_stats *stats;
    const char *device;
    int training;
    const double *times_ms; /* sorted ascending */
    int repeat;
    double median_ms;
    const struct moe_layer *moe;
    int n_moe;
    const struct moe_time *moe_time;
};

/* Writes the report as JSON to path, atomically (temporary file, then
 * rename).  Returns 0, or -1 with a message on stderr. */
int run_report_write_json(const char *path, const struct run_report *r);

#endif /* SMLP_RUN_REPORT_H */
