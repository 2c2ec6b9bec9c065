/*
 * train_dist_mpi.c - train_dist.h over MPI (smlp-train-mpi).
 *
 * The sums do not use MPI_Allreduce, whose result MPI leaves free to
 * differ between ranks in its last bits (an implementation may add in
 * another order on each): each value is summed on one rank and its bits
 * sent to all (sum() below), so the ranks' parameters can stay
 * identical.  With a fixed number of ranks the order of each sum is
 * fixed, so runs repeat bit for bit.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "train_dist.h"

static int rank, size = 1, local_size = 1;
static char *scratch; /* sum()'s, cap bytes */
static size_t cap;

static int
fail(const char *what, int rc)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;

    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS)
        len = snprintf(msg, sizeof(msg), "error %d", rc);
    fprintf(stderr, "smlp-train: rank %d of %d: %s: %.*s\n", rank, size,
            what, len, msg);
    return -1;
}

int
train_dist_init(int *argc, char ***argv)
{
    MPI_Comm local;
    int rc;

    rc = MPI_Init(argc, argv);
    if (rc != MPI_SUCCESS)
        return fail("MPI_Init", rc);
    /* Errors come back as codes, so that every message names its rank. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    rc = MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank,
                             MPI_INFO_NULL, &local);
    if (rc != MPI_SUCCESS)
        return fail("MPI_Comm_split_type", rc);
    MPI_Comm_size(local, &local_size);
    MPI_Comm_free(&local);
    return 0;
}

int
train_dist_rank(void)
{
    return rank;
}

int
train_dist_size(void)
{
    return size;
}

int
train_dist_local_size(void)
{
    return local_size;
}

/*
 * x[0..n) of type t (elem bytes) summed over the ranks, in place: the
 * values padded with zeros to `size` equal chunks, each chunk summed on
 * one rank (MPI_Reduce_scatter_block) and the chunks gathered by all
 * (MPI_Allgather).  Each sum is computed once, so every rank gets its
 * bits, and each rank sends and receives about 2 n values whatever the
 * number of ranks, as a ring allreduce does.
 */
static int
sum(void *x, size_t n, MPI_Datatype t, size_t elem)
{
    size_t chunk = (n + (size_t)size - 1) / (size_t)size;
    size_t need = (chunk * (size_t)size + chunk) * elem;
    char *all, *mine;
    int rc;

    if (size == 1 || n == 0)
        return 0;
    if (chunk > INT_MAX) {
        fprintf(stderr, "smlp-train: rank %d of %d: %zu values to sum are "
                        "too many for MPI's int counts\n", rank, size, n);
        return -1;
    }
    if (need > cap) {
        char *p = realloc(scratch, need);

        if (p == NULL) {
            fprintf(stderr, "smlp-train: rank %d of %d: out of memory "
                            "(%zu bytes to sum gradients)\n", rank, size,
                    need);
            return -1;
        }
        scratch = p;
        cap = need;
    }
    all = scratch;
    mine = scratch + chunk * (size_t)size * elem;
    memcpy(all, x, n * elem);
    memset(all + n * elem, 0, (chunk * (size_t)size - n) * elem);
    rc = MPI_Reduce_scatter_block(all, mine, (int)chunk, t, MPI_SUM,
                                  MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS)
        return fail("MPI_Reduce_scatter_block", rc);
    rc = MPI_Allgather(mine, (int)chunk, t, all, (int)chunk, t,
                       MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS)
        return fail("MPI_Allgather", rc);
    memcpy(x, all, n * elem);
    return 0;
}

int
train_dist_sum_f32(float *x, size_t n)
{
    return sum(x, n, MPI_FLOAT, sizeof(float));
}

int
train_dist_sum_f64(double *x, size_t n)
{
    return sum(x, n, MPI_DOUBLE, sizeof(double));
}

int
train_dist_sum_i64(int64_t *x, size_t n)
{
    return sum(x, n, MPI_INT64_T, sizeof(int64_t));
}

int
train_dist_gather(void *buf, int64_t n, int64_t per, size_t item)
{
    int64_t blocks = per > 0 ? (n + per - 1) / per : 0, lo, hi;
    int *count = NULL, *at = NULL, r, rc = -1;
    MPI_Datatype t;

    if (size == 1 || n == 0)
        return 0;
    if (item > INT_MAX || n > INT_MAX) {
        fprintf(stderr, "smlp-train: rank %d of %d: %lld items of %zu bytes "
                        "are too many for MPI's int counts\n", rank, size,
                (long long)n, item);
        return -1;
    }
    count = malloc((size_t)size * sizeof(int));
    at = malloc((size_t)size * sizeof(int));
    if (count == NULL || at == NULL) {
        fprintf(stderr, "smlp-train: rank %d of %d: out of memory\n", rank,
                size);
        goto out;
    }
    for (r = 0; r < size; r++) {
        train_dist_range(blocks, r, size, &lo, &hi);
        lo *= per;
        hi = hi * per < n ? hi * per : n;
        at[r] = (int)lo;
        count[r] = (int)(hi - lo);
    }
    rc = MPI_Type_contiguous((int)item, MPI_BYTE, &t);
    if (rc == MPI_SUCCESS)
        rc = MPI_Type_commit(&t);
    if (rc != MPI_SUCCESS) {
        rc = fail("MPI_Type_contiguous", rc);
        goto out;
    }
    rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, count, at,
                        t, MPI_COMM_WORLD);
    MPI_Type_free(&t);
    rc = rc == MPI_SUCCESS ? 0 : fail("MPI_Allgatherv", rc);
out:
    free(count);
    free(at);
    return rc;
}

int
train_dist_any(int flag)
{
    int in = flag != 0, out = in, rc;

    if (size == 1)
        return in;
    rc = MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) {
        fail("MPI_Allreduce", rc);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    return out;
}

int
train_dist_same_u64(uint64_t h)
{
    uint64_t v[2] = {h, ~h}, out[2];
    int rc;

    if (size == 1)
        return 1;
    /* max(h) and max(~h) = ~min(h): equal iff every rank has h. */
    rc = MPI_Allreduce(v, out, 2, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) {
        fail("MPI_Allreduce", rc);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    return out[0] == h && ~out[1] == h;
}

int
train_dist_bcast(void *buf, size_t bytes)
{
    char *p = buf;
    int rc;

    if (size == 1)
        return 0;
    while (bytes > 0) {
        int count = bytes > INT_MAX ? INT_MAX : (int)bytes;

        rc = MPI_Bcast(p, count, MPI_BYTE, 0, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS)
            return fail("MPI_Bcast", rc);
        p += count;
        bytes -= (size_t)count;
    }
    return 0;
}

int
train_dist_end(int status, int agreed)
{
    free(scratch);
    scratch = NULL;
    cap = 0;
    if (status == 0 || agreed) {
        MPI_Finalize();
        return status;
    }
    fflush(stdout);
    MPI_Abort(MPI_COMM_WORLD, status);
    return status;
}
