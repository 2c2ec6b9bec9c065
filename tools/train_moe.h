/*
 * train_moe.h - routing statistics of a sparse graph during training
 * (smlp-train --moe-stats F.csv, and the share of dropped assignments in
 * the epoch lines).
 *
 * A MoE layer is found by its gate's outputs, as OPS.md's gate contract
 * names them: an i32 graph output PREFIX.load [E, 2] (per expert the
 * assignments kept and dropped by the capacity) and an f32 scalar output
 * PREFIX.aux (the layer's load-balancing loss).  After every training
 * step train_moe_step adds them up; train_moe_row turns the sums since
 * the previous row into CSV rows, one per (layer, expert):
 *
 *   step,epoch,layer,expert,kept,dropped,aux
 *
 * kept and dropped are counts over the row's steps, aux the layer's mean
 * over them.  The file is rewritten atomically with the metrics; a
 * resumed run keeps the rows up to its checkpoint's step.
 */
#ifndef SMLP_TRAIN_MOE_H
#define SMLP_TRAIN_MOE_H

#include <stddef.h>
#include <stdint.h>

#include "smlp.h"

#define TRAIN_MOE_CSV_HEADER "step,epoch,layer,expert,kept,dropped,aux"

struct train_moe_layer {
    const char *prefix;      /* e.g. "blocks.4.moe_c.gate" (session-owned
                                name of load, cut at ".load") */
    size_t prefix_len;
    struct smlp_tensor load, aux;
    int64_t experts;
    int64_t *kept, *dropped; /* [experts], since the last row */
    double aux_sum;
};

struct train_moe {
    int n_layers;
    struct train_moe_layer *layers;
    int64_t row_steps;
    int64_t ep_kept, ep_dropped; /* all layers, since train_moe_epoch */
    double *step_vals;           /* train_moe_step's scratch */
    char **lines;                /* CSV rows so far, without newlines */
    size_t n_lines, cap;
};

/* Finds the MoE layers among the outputs of training session s (none is
 * fine: a dense graph).  0, or -1 with a message (out of memory). */
int train_moe_init(struct train_moe *m, smlp_session_t *s, char *err,
                   size_t errlen);
/* Adds the last run's loads and aux losses. */
void train_moe_step(struct train_moe *m);
/* The same in three parts, for data-parallel training (train_sync.c):
 * how many values a step has, the last run's (per layer: kept and
 * dropped per expert, then aux), and adding values summed over `ranks`
 * ranks (the loads added, the aux losses' mean). */
size_t train_moe_values(const struct train_moe *m);
void train_moe_get(const struct train_moe *m, double *v);
void train_moe_step_values(struct train_moe *m, const double *v, int ranks);
/* CSV rows for the sums since the last row (none when no step ran);
 * resets them.  -1 when out of memory. */
int train_moe_row(struct train_moe *m, int64_t step, double epoch);
/* The share of dropped assignments (0..1) over all layers since the last
 * call, and resets it; NaN when nothing was routed. */
double train_moe_epoch(struct train_moe *m);
/* The sums since the last row (and since train_moe_epoch when
 * with_epoch, else 0) as text for a checkpoint's metadata (--resume
 * continues them); malloc'ed, NULL when out of memory. */
char *train_moe_sums(const struct train_moe *m, int with_epoch);
/* Restores what train_moe_sums wrote (NULL: nothing): 0, or -1 when the
 * text does not fit these layers. */
int train_moe_set_sums(struct train_moe *m, const char *sums);
/* Reads the rows of a file written by train_moe_write with step <=
 * max_step (--resume).  A missing file gives no rows and 0; another file
 * -1 and a message. */
int train_moe_read(struct train_moe *m, const char *path, int64_t max_step,
                   char *err, size_t errlen);
/* Writes the header and rows, atomically.  0, or -1 with a message. */
int train_moe_write(const struct train_moe *m, const char *path, char *err,
                    size_t errlen);
void train_moe_free(struct train_moe *m);

#endif /* SMLP_TRAIN_MOE_H */
