/*
 * train_head.h - the loss head smlp-train appends to a classifier graph.
 *
 * The shipped classifiers (graphs/mixer_fmnist, graphs/sparse_mlp_fmnist)
 * end in `logits` [-1,K] and, when sparse, `aux_loss` [] (the summed
 * load-balancing losses): no loss.  train_head_build appends, in memory,
 *
 *   input  labels  i32 [-1]          (seeded Uniform over the K classes,
 *                                     so the graph also runs in smlp-run)
 *   node   train.ce    core.softmax_cross_entropy(logits, labels) -> ce
 *                      (attribute label_smoothing when not 0)
 *   node   train.loss  core.add(ce, aux_loss) -> loss  (only with aux_loss,
 *                      and not for a probe: its loss is ce)
 *
 * with `ce` named `loss` when there is no aux_loss; loss (and ce) are graph
 * outputs, so their values are readable after a run.  A graph that
 * already has an input `labels` and a tensor `loss` is used as it is.
 *
 * A MoCo v3 pre-training graph (graphs/moco_sparse_mlp_*: f32 inputs
 * `view1` and `view2` [-1,C,H,W], an f32 scalar `loss`, optionally an
 * f32 scalar input `m`, the momentum) gets no head: it is used as it is,
 * with info->moco set.  With `probe`, a classifier's gates route as in
 * inference (train_probe_gates).
 */
#ifndef SMLP_TRAIN_HEAD_H
#define SMLP_TRAIN_HEAD_H

#include <stddef.h>
#include <stdint.h>

struct train_head_info {
    char image[256];  /* the input images go to */
    int64_t chw[3];   /* its shape after the batch dimension */
    int64_t classes;  /* K of logits [-1,K]; 0 when the graph leaves the
                         shape to inference */
    int has_aux;      /* the loss includes aux_loss */
    int existing;     /* the graph had its own labels and loss */
    int moco;         /* a MoCo graph: image is view1, the second view
                         goes to view2 */
    int has_m;        /* MoCo: the graph has the input m */
    int probe_gates;  /* probe: gate nodes set to inference routing */
    char probe_bn[256]; /* probe: the first norm.batch_norm node (its
                           running statistics move in training mode), or
                           "" */
};

/*
 * Decodes the graph file buf[0..len) (`what` names it in messages),
 * checks that it is a classifier (an f32 input 'image', or the only f32
 * input, shaped [-1,C,H,W]; an f32 tensor 'logits' [-1,K]), appends the
 * head and encodes the result into *out (malloc'ed; free it); or that it
 * is a MoCo graph (above), encoded unchanged.  Returns 0, or -1 with a
 * message naming `what` in err.
 */
int train_head_build(const uint8_t *buf, size_t len, const char *what,
                     double label_smoothing, int probe, uint8_t **out,
                     size_t *out_len, struct train_head_info *info, char *err,
                     size_t errlen);

/*
 * --probe (train_probe.c; train_head_build calls it when probe is set):
 * every moe.gate.* node of a classifier routes as in inference — its
 * capacity_factor set to its eval_capacity_factor, and for the learned
 * gates noise_std 0, aux "none" and aux_weight 0 — so the frozen backbone
 * gives the features of inference (the linear-probe protocol).  Counts
 * the gates and names the first batch norm in info.  0, or -1 when out of memory.
 */
struct smlp__graph_ir;
int train_probe_gates(struct smlp__graph_ir *ir,
                      struct train_head_info *info);

/* Appends the metadata pair key = value to ir; 0, or -1 when out of
 * memory. */
int train_head_add_meta(struct smlp__graph_ir *ir, const char *key,
                        const char *value);

#endif /* SMLP_TRAIN_HEAD_H */
