/*
 * train_routing.h - where the test set's classes go: for every MoE layer
 * of a sparse classifier, how many of each class's assignments (item x
 * choice) each expert received and how many of those the capacity
 * dropped (smlp-train --routing-by-class F.csv), over one test
 * evaluation.  The analysis of V-MoE's and Sparse-MLP's "routing by
 * class" figures, for a trained checkpoint (with --eval-only) or after
 * each evaluation of a run.
 *
 * The evaluation graph is edited in memory so that every gate's expert
 * and slot outputs (OPS.md's gate contract: outputs 0 and 1, [N,k] i32)
 * are graph outputs, which an inference session keeps; nothing else
 * changes.  Items are attributed to images as the shipped graphs lay them
 * out: N = B * (items per image), image-major (a gate's group_size is the
 * items of one image).
 */
#ifndef SMLP_TRAIN_ROUTING_H
#define SMLP_TRAIN_ROUTING_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "smlp.h"

#define TRAIN_ROUTING_CSV_HEADER "layer,class,expert,assigned,dropped"

struct train_routing_layer {
    char *name;                    /* the gate node */
    char *t_expert, *t_slot, *t_load; /* its outputs 0, 1 and 5 */
    struct smlp_tensor expert, slot;
    int64_t experts;               /* E, from the gate's load [E,2] */
    int64_t *assigned, *dropped;   /* [classes][experts] */
};

struct train_routing {
    int n_layers;
    struct train_routing_layer *layers;
    int64_t classes;
};

/*
 * buf[0..len) (the graph file `what`) with the expert and slot outputs of
 * every moe.gate.* node made graph outputs, encoded into *out (free it);
 * the gates become rt's layers (rt zeroed first; none: a dense graph).
 * 0, or -1 with a message.
 */
int train_routing_graph(struct train_routing *rt, const uint8_t *buf,
                        size_t len, const char *what, uint8_t **out,
                        size_t *out_len, char *err, size_t errlen);
/* Binds the layers to inference session s (made from that graph, batch
 * `batch`), for labels in [0, classes).  0, or -1 with a message. */
int train_routing_init(struct train_routing *rt, smlp_session_t *s,
                       int64_t batch, int64_t classes, char *err,
                       size_t errlen);
/* Zeroes the counts (before an evaluation). */
void train_routing_reset(struct train_routing *rt);
/* Adds the last run's routing of its first n images (of the session's
 * batch `batch`) with their labels. */
void train_routing_add(struct train_routing *rt, const int32_t *labels,
                       int64_t n, int64_t batch);
/* Writes the counts as CSV rows (layer, class, expert), atomically. */
int train_routing_write(const struct train_routing *rt, const char *path,
                        char *err, size_t errlen);
/* Per layer, each class's share of assignments by expert, as a table. */
void train_routing_print(const struct train_routing *rt, FILE *f);
void train_routing_free(struct train_routing *rt);

#endif /* SMLP_TRAIN_ROUTING_H */
