/*
 * train_dist.h - data-parallel training over MPI (docs/training.md,
 * "Several processes").  smlp-train links train_dist_none.c (one
 * process: every call below is the identity); smlp-train-mpi, built
 * when configure finds Open MPI, links train_dist_mpi.c.  Under `mpirun
 * -np P smlp-train-mpi ...` each rank holds the whole model and trains
 * on its 1/P of every batch; the gradients are averaged over the ranks
 * before each update, so every rank applies the same update and keeps
 * the same parameters (checked at each checkpoint).
 *
 * Every call that communicates is collective: all ranks make the same
 * calls in the same order.  A rank that fails calls train_dist_end with
 * its non-zero status, which ends every rank (MPI_Abort): a failure on
 * one rank never leaves the others waiting.
 */
#ifndef SMLP_TRAIN_DIST_H
#define SMLP_TRAIN_DIST_H

#include <stddef.h>
#include <stdint.h>

/* Starts MPI (argc/argv may change: mpirun's own arguments go).  0, or
 * -1 after a message on stderr. */
int train_dist_init(int *argc, char ***argv);
/* This process's rank (0..size-1) and the number of ranks. */
int train_dist_rank(void);
int train_dist_size(void);
/* Ranks on this machine (1 without MPI): the default thread budget is
 * the CPUs divided among them. */
int train_dist_local_size(void);
/* x[0..n) summed over the ranks, in place, the same bits on every rank.
 * 0, or -1 after a message. */
int train_dist_sum_f32(float *x, size_t n);
int train_dist_sum_f64(double *x, size_t n);
/* Whether flag is non-zero on any rank (collective). */
int train_dist_any(int flag);
/* Whether h is the same on every rank (collective). */
int train_dist_same_u64(uint64_t h);
/* x[0..n) summed over the ranks, in place (exact: integers). */
int train_dist_sum_i64(int64_t *x, size_t n);
/* The bytes of rank 0, on every rank.  0, or -1 after a message. */
int train_dist_bcast(void *buf, size_t bytes);
/*
 * Work shared out in blocks (batches of an evaluation): rank `rank` of
 * `size` takes blocks [*lo, *hi), contiguous, the ranks in order, sizes
 * differing by at most one.
 */
static inline void
train_dist_range(int64_t blocks, int rank, int size, int64_t *lo,
                 int64_t *hi)
{
    *lo = blocks * rank / size;
    *hi = blocks * (rank + 1) / size;
}
/*
 * buf holds n items of `item` bytes in blocks of `per` items (the last
 * block may be short); each rank has filled the items of its blocks
 * (train_dist_range over the ceil(n / per) blocks).  Gives every rank
 * all of them.  0, or -1 after a message.
 */
int train_dist_gather(void *buf, int64_t n, int64_t per, size_t item);
/* Ends MPI: MPI_Finalize when status is 0 or every rank stops with it
 * (agreed = 1), else MPI_Abort(status), which ends every rank.  Returns
 * status. */
int train_dist_end(int status, int agreed);

#endif
