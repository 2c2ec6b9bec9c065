/*
 * train_cache.h - the feature cache of a linear probe (smlp-train
 * --probe), graph side.
 *
 * A probe trains head.* on a frozen backbone that routes as in inference
 * and sees no augmentation, so what the backbone gives each image is the
 * same at every step.  smlp-train then computes it once per image and
 * trains a head-only graph on the stored rows:
 *
 *   train_cache_find    finds the one backbone tensor the head reads
 *                       (the "cut": `features` in the shipped graphs);
 *   train_cache_expose  the classifier with that tensor made a graph
 *                       output, for the inference session that fills the
 *                       cache;
 *   train_cache_head    the training graph cut there: the cut becomes an
 *                       f32 input [-1, ...], only the nodes downstream of
 *                       a head.* parameter stay, and every parameter and
 *                       state tensor of the graph stays too (read by no
 *                       node), so that the session's checkpoints hold the
 *                       whole model, as without the cache.
 *
 * The head is the set of nodes that read, directly or through other head
 * nodes, a parameter named head.*; the cut is every tensor such a node
 * reads that no head node writes and that is not a parameter, a state or
 * a graph input other than the images.  The cache needs exactly one cut
 * tensor, f32, with the batch as its first dimension.  Functions return
 * 0, or -1 with a message naming `what` (the graph file) in err.
 */
#ifndef SMLP_TRAIN_CACHE_H
#define SMLP_TRAIN_CACHE_H

#include <stddef.h>
#include <stdint.h>

/*
 * On the probe's training graph buf[0..len) (the loss head appended):
 * *ok = 1 and the cut's name in tensor[0..tlen), or *ok = 0 and why not
 * in why[0..whylen) (the head reads the images `image`, several backbone
 * tensors, a scalar, ...).
 */
int train_cache_find(const uint8_t *buf, size_t len, const char *what,
                     const char *image, int *ok, char *tensor, size_t tlen,
                     char *why, size_t whylen, char *err, size_t errlen);

/* buf with `tensor` made a graph output, encoded into *out (free it). */
int train_cache_expose(const uint8_t *buf, size_t len, const char *what,
                       const char *tensor, uint8_t **out, size_t *out_len,
                       char *err, size_t errlen);

/*
 * The head graph of the training graph buf cut at `tensor`, which
 * becomes an f32 input shaped [-1, dims[0..n_dims)], encoded into *out
 * (free it).  Its metadata gain "train.probe_cache" = tensor.
 */
int train_cache_head(const uint8_t *buf, size_t len, const char *what,
                     const char *tensor, const int64_t *dims, int n_dims,
                     uint8_t **out, size_t *out_len, char *err,
                     size_t errlen);

#endif /* SMLP_TRAIN_CACHE_H */
