/*
 * train_args.c - smlp-train's arguments on every rank: the options
 * (train_opts.c), then what data parallelism and --accum ask of them
 * (the batch divides into ranks x accum micro-batches; the default
 * threads divide among the ranks on one machine).
 *
 * Usage errors come from the arguments, which every rank shares: ranks
 * other than 0 find them with stderr muted (train_quiet), then the ranks
 * agree (train_usage_agreed): when all failed alike, rank 0 has said why
 * and every rank exits with the usage status, no MPI_Abort.
 */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "train_dist.h"
#include "train_main.h"

/* Data-parallel runs (train_dist.h) and --accum: the batch divides into
 * ranks x accum equal micro-batches; the default thread budget divides
 * among the ranks on one machine. */
static int
dist_options(struct train_opts *o)
{
    int64_t parts = train_dist_size() * o->accum;
    int64_t fit = (o->batch + parts - 1) / parts * parts;
    long cpus;

    /* --eval-only runs no training step: its ranks share out the test
     * set, not a batch. */
    if (!o->eval_only && o->batch % parts != 0) {
        if (o->accum == 1)
            train_fail("--batch %lld does not divide among %d ranks: each "
                       "rank runs an equal part of every batch (try "
                       "--batch %lld)", (long long)o->batch,
                       train_dist_size(), (long long)fit);
        else
            train_fail("--batch %lld does not divide into %lld equal "
                       "micro-batches (%d rank%s x --accum %lld; try "
                       "--batch %lld)", (long long)o->batch,
                       (long long)parts, train_dist_size(),
                       train_dist_size() > 1 ? "s" : "",
                       (long long)o->accum, (long long)fit);
        return -1;
    }
    if (train_dist_size() == 1)
        return 0;
    cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (o->threads == 0 && cpus > 0)
        o->threads = cpus / train_dist_local_size() > 0
                         ? (int)(cpus / train_dist_local_size())
                         : 1;
    return 0;
}

static int muted = -1;

void
train_quiet(int on)
{
    int fd;

    if (train_dist_rank() == 0)
        return;
    fflush(stderr);
    if (on) {
        muted = dup(STDERR_FILENO);
        fd = open("/dev/null", O_WRONLY);
        if (muted >= 0 && fd >= 0)
            dup2(fd, STDERR_FILENO);
        if (fd >= 0)
            close(fd);
    } else if (muted >= 0) {
        dup2(muted, STDERR_FILENO);
        close(muted);
        muted = -1;
    }
}

int
train_usage_agreed(int failed)
{
    if (!train_dist_any(failed))
        return 0;
    return train_dist_any(!failed) ? -1 : 1;
}

int
train_parse_all(int argc, char **argv, struct train_opts *o)
{
    int rc = train_parse_args(argc, argv, o);

    if (rc == 0 && dist_options(o) != 0)
        rc = TRAIN_EXIT_USAGE;
    return rc;
}
