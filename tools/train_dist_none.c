/*
 * train_dist_none.c - train_dist.h for one process (smlp-train): no
 * communication, every sum and broadcast is the identity.
 */
#include "train_dist.h"

int
train_dist_init(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int
train_dist_rank(void)
{
    return 0;
}

int
train_dist_size(void)
{
    return 1;
}

int
train_dist_local_size(void)
{
    return 1;
}

int
train_dist_sum_f32(float *x, size_t n)
{
    (void)x;
    (void)n;
    return 0;
}

int
train_dist_sum_f64(double *x, size_t n)
{
    (void)x;
    (void)n;
    return 0;
}

int
train_dist_sum_i64(int64_t *x, size_t n)
{
    (void)x;
    (void)n;
    return 0;
}

int
train_dist_gather(void *buf, int64_t n, int64_t per, size_t item)
{
    (void)buf;
    (void)n;
    (void)per;
    (void)item;
    return 0;
}

int
train_dist_any(int flag)
{
    return flag != 0;
}

int
train_dist_same_u64(uint64_t h)
{
    (void)h;
    return 1;
}

int
train_dist_bcast(void *buf, size_t bytes)
{
    (void)buf;
    (void)bytes;
    return 0;
}

int
train_dist_end(int status, int agreed)
{
    (void)agreed;
    return status;
}
