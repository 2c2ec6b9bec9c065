/*
 * check_train_dist.c - tools/train_dist.h, built twice: with
 * train_dist_none.c as tests/check_train_dist (one process, a test of
 * its own) and, when configure finds MPI, with train_dist_mpi.c as
 * tests/check_train_dist_mpi, which check_smlp_train_mpi.sh runs on 3
 * ranks of this machine.  On P ranks (P = 1 for the first), rank r:
 * - sums x[i] = (r + 1)(i + 1) + 1/4 over the ranks, f32 and f64, for n
 *   = 0 to 9 values, then 1000, then 5 again (fewer values than ranks,
 *   counts that do not divide by P, the scratch buffer grown and
 *   reused): (i + 1) P (P + 1) / 2 + P / 4 on every rank, exact in
 *   floats; the values past n untouched;
 * - any(flag) is 1 on every rank when one rank (the last) has it, 0 when
 *   none has; same_u64 is 1 on every rank for the same value, and 0 on
 *   every rank when only the last rank's value is larger, or only its
 *   value is smaller;
 * - sum_i64 of (r + 1) * 2^52 + i: exact where doubles would round;
 * - train_dist_range splits 0 to 9 blocks contiguously, in rank order,
 *   sizes differing by at most one; gather of 11 items of 3 bytes in
 *   blocks of 4 (the last short), each rank writing its blocks' items
 *   as its rank and the others garbage: every rank gets each item from
 *   the rank that owns it;
 * - bcast gives every rank rank 0's bytes (odd sizes); all ranks run on
 *   this machine, so local_size is P;
 * - end(0, 1) returns 0.
 * Each rank prints what it finds wrong to stderr; rank 0 prints "ok"
 * when no rank found anything; exit 0, else 1.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "train_dist.h"

static int fails;

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "check_train_dist: rank %d: ",                   \
                    train_dist_rank());                                      \
            fprintf(stderr, __VA_ARGS__);                                    \
            fputc('\n', stderr);                                             \
            fails++;                                                         \
        }                                                                    \
    } while (0)

/* The sums of n values (and the guard past them), f32 and f64. */
static void
check_sums(size_t n, int rank, int p)
{
    static float f[1001];
    static double d[1001];
    size_t i;

    for (i = 0; i <= n; i++) {
        f[i] = (float)((rank + 1) * (double)(i + 1) + 0.25);
        d[i] = (rank + 1) * (double)(i + 1) + 0.25;
    }
    f[n] = -7.0f;
    d[n] = -7.0;
    CHECK(train_dist_sum_f32(f, n) == 0, "sum_f32 of %zu failed", n);
    CHECK(train_dist_sum_f64(d, n) == 0, "sum_f64 of %zu failed", n);
    for (i = 0; i < n; i++) {
        double want = (double)(i + 1) * p * (p + 1) / 2 + 0.25 * p;

        CHECK(f[i] == (float)want, "sum_f32 of %zu: [%zu] = %g, want %g", n,
              i, (double)f[i], want);
        CHECK(d[i] == want, "sum_f64 of %zu: [%zu] = %g, want %g", n, i,
              d[i], want);
    }
    CHECK(f[n] == -7.0f && d[n] == -7.0, "sum of %zu wrote past it", n);
}

/* Integer sums, the block ranges and the gather. */
static void
check_shares(int rank, int p)
{
    int64_t x[3], lo, hi, prev, blocks, r;
    unsigned char items[11 * 3];
    int i, owner;

    for (i = 0; i < 3; i++)
        x[i] = (rank + 1) * ((int64_t)1 << 52) + i;
    CHECK(train_dist_sum_i64(x, 3) == 0, "sum_i64 failed");
    for (i = 0; i < 3; i++)
        CHECK(x[i] == (int64_t)p * (p + 1) / 2 * ((int64_t)1 << 52) +
                          (int64_t)i * p,
              "sum_i64: [%d] = %lld", i, (long long)x[i]);
    for (blocks = 0; blocks < 10; blocks++)
        for (r = 0, prev = 0; r < p; r++) {
            train_dist_range(blocks, (int)r, p, &lo, &hi);
            CHECK(lo == prev && hi - lo >= blocks / p &&
                      hi - lo <= (blocks + p - 1) / p,
                  "range of %lld blocks, rank %lld: [%lld, %lld)",
                  (long long)blocks, (long long)r, (long long)lo,
                  (long long)hi);
            prev = hi;
            CHECK(r < p - 1 || hi == blocks, "range: %lld of %lld blocks",
                  (long long)hi, (long long)blocks);
        }
    train_dist_range(3, rank, p, &lo, &hi); /* 11 items: 3 blocks of 4 */
    for (i = 0; i < 11 * 3; i++)
        items[i] = (unsigned char)(i / 3 >= lo * 4 && i / 3 < hi * 4
                                       ? rank
                                       : 200 + rank);
    CHECK(train_dist_gather(items, 11, 4, 3) == 0, "gather failed");
    for (i = 0; i < 11 * 3; i++) {
        for (owner = 0; owner < p; owner++) {
            train_dist_range(3, owner, p, &lo, &hi);
            if (i / 3 >= lo * 4 && i / 3 < hi * 4)
                break;
        }
        CHECK(items[i] == owner, "gather: byte %d = %d, want rank %d's", i,
              items[i], owner);
    }
}

int
main(int argc, char **argv)
{
    unsigned char buf[13];
    int rank, p, last, bad, i;
    size_t n;

    if (train_dist_init(&argc, &argv) != 0)
        return 1;
    rank = train_dist_rank();
    p = train_dist_size();
    last = rank == p - 1;
    CHECK(p >= 1 && rank >= 0 && rank < p, "rank %d of %d", rank, p);
    CHECK(train_dist_local_size() == p, "local_size %d, want %d",
          train_dist_local_size(), p);
    for (n = 0; n < 10; n++)
        check_sums(n, rank, p);
    check_sums(1000, rank, p);
    check_sums(5, rank, p);
    check_shares(rank, p);
    CHECK(train_dist_any(last ? 3 : 0) == 1, "any: one rank's flag missed");
    CHECK(train_dist_any(0) == 0, "any: no flag, yet 1");
    CHECK(train_dist_same_u64(0x123456789abcdef0ull) == 1,
          "same_u64: the same value found different");
    /* With one rank the values agree: the process is the last rank. */
    CHECK(train_dist_same_u64(last ? 9 : 5) == (p == 1),
          "same_u64: the last rank's larger value missed");
    CHECK(train_dist_same_u64(last ? 1 : 5) == (p == 1),
          "same_u64: the last rank's smaller value missed");
    for (i = 0; i < (int)sizeof(buf); i++)
        buf[i] = (unsigned char)(17 * rank + i);
    CHECK(train_dist_bcast(buf, sizeof(buf)) == 0, "bcast failed");
    for (i = 0; i < (int)sizeof(buf); i++)
        CHECK(buf[i] == i, "bcast: [%d] = %d, want rank 0's %d", i, buf[i],
              i);
    /* Its own count too: any() is one of the calls under test. */
    bad = train_dist_any(fails) || fails > 0;
    if (rank == 0 && !bad)
        printf("ok\n");
    return train_dist_end(bad, 1) != bad ? 1 : bad;
}
