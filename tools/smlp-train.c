/*
 * smlp-train - train a classifier graph on Fashion-MNIST.
 *
 *   smlp-train GRAPH --out CKPT [--data fashion-mnist|DIR] [--epochs N]
 *              [--batch N] [--lr X] [--optimizer adamw|sgd] [--weights F]
 *              [--resume CKPT] [--eval-every N] [--metrics F.csv]
 *              [--moe-stats F.csv]
 *              [--plot F.svg|F.png] ... (--help lists every option)
 *
 * The graph gets a loss head in memory (train_head.c) and two sessions:
 * one in training mode with a backward pass, one in inference mode that
 * evaluates the test set with a copy of the current parameters (inference
 * capacity factors, no gate noise).  A loader thread (train_loader.c)
 * prepares batch i + 1 while batch i runs.  Each step: forward, backward,
 * one optimizer update at the learning rate of smlp_lr_cosine (linear
 * warm-up, cosine decay).  Each epoch: test accuracy, a checkpoint
 * (smlp_checkpoint_save: parameters, optimizer state and this run's
 * position and options as metadata), the metrics CSV and plot.
 *
 * --resume is exact: batches are a pure function of (seed, epoch, index),
 * gate noise of (seed, step), and the checkpoint restores parameters and
 * optimizer state, so --stop-after 1 (or a signal) + --resume gives the
 * same bytes as 2 epochs; the checkpoint also keeps the epoch's and the
 * metrics row's running sums, so the epoch lines and rows match too.
 * Exit status: 0 done, 1 error, 2 usage, 130 interrupted.
 *
 * SIGINT or SIGTERM stops the run at the end of the step running: inside
 * an epoch with a checkpoint and no evaluation; an epoch whose last step
 * it was, or the run's last step (--max-steps inside an epoch), is
 * evaluated first and ends as if no signal had come (its line, its
 * metrics row's test columns, then the checkpoint), so that the metrics
 * of a run stopped there and resumed are the whole run's.  For
 * tests, SMLP_TRAIN_TEST_SIGINT_STEP=N raises SIGINT as step N (counted
 * from 1) ends: a signal that lands in that step, whatever the timing.
 *
 * Two more modes.  --probe trains head.* only (a linear probe: every
 * other parameter is frozen through opts.frozen, so the backward stops at
 * the head), with the gates routing as in inference (train_probe.c).  A
 * MoCo v3 graph (inputs view1 and view2, its own loss;
 * graphs/moco_sparse_mlp_fmnist) is pre-trained: each step feeds the two
 * augmented views of a batch and the momentum m = 1 - (1 - m0)(1 +
 * cos(pi step / total)) / 2 (MoCo v3's schedule, rising from --moco-m0 to
 * 1) to the input m; there is no test evaluation, the checkpoints are as
 * usual.  --init-from starts a fine-tune or a probe from such a
 * checkpoint: the tensors it holds by name (the backbone) are loaded, the
 * others (the head) keep the graph's initial values.
 *
 * Built as smlp-train-mpi (train_dist_mpi.c) it trains data-parallel
 * under mpirun: each rank runs its part of every batch and train_sync.c
 * averages the gradients; decisions that end the loop (a signal) are
 * agreed by all ranks (train_dist_any), and rank 0 alone writes.
 */
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "tool_opts.h"
#include "train_dist.h"
#include "train_main.h"

static volatile sig_atomic_t interrupted;
/* SMLP_TRAIN_TEST_SIGINT_STEP (0: none). */
static int64_t test_sigint_step;

static void
on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* ---- steps (the evaluation: train_eval.c) ------------------------------ */

/* MoCo v3's momentum at step `step` of `total`: from m0 up to 1 on a
 * half cosine (docs/training.md, "The schedule"). */
static double
moco_momentum(double m0, int64_t step, int64_t total)
{
    return 1.0 - smlp_lr_cosine(1.0 - m0, 0.0, step, 0, total);
}

/*
 * One step: --accum micro-batches of this rank's part of batch b (each a
 * forward and a backward), the sums over them and the ranks
 * (train_sync.c), the update.  A micro-batch whose loss is not finite
 * ends the step's micro-batches early: the sums carry it to every rank,
 * which all stop.
 */
static int
train_step(struct train_run *r, const struct train_batch *b, double *loss,
           double *acc)
{
    size_t floats = (size_t)smlp_tensor_numel(&r->t_image);
    int64_t rows = r->t_image.shape[0], a, n, images = 0;
    double gnorm, correct = 0.0, part;
    int rc;

    for (a = 0; a < r->o.accum; a++) {
        n = b->n - a * rows;
        n = n < 0 ? 0 : n < rows ? n : rows;
        memcpy(r->t_image.data, b->images + (size_t)a * floats,
               floats * sizeof(float));
        if (r->mode == TRAIN_MODE_MOCO) {
            /* The loader puts view 2 of the batch after view 1 (--accum
             * is refused for MoCo: one micro-batch). */
            memcpy(r->t_view2.data, b->images + floats,
                   floats * sizeof(float));
            r->m = moco_momentum(r->o.moco_m0, r->step, r->total);
            if (r->t_m.data != NULL)
                *(float *)r->t_m.data = (float)r->m;
        } else {
            memcpy(r->t_labels.data, b->labels + a * rows,
                   (size_t)n * sizeof(int32_t));
        }
        if (smlp_session_run(r->ts) != SMLP_OK) {
            train_fail("step %lld: %s", (long long)r->step,
                       smlp_session_errmsg(r->ts));
            return -1;
        }
        part = *(const float *)r->t_loss.data;
        train_sync_micro(r, a, part,
                         r->mode == TRAIN_MODE_MOCO
                             ? 0.0
                             : (double)train_score(r->t_logits.data,
                                                   r->t_logits.shape[1],
                                                   b->labels + a * rows, n,
                                                   NULL, NULL),
                         n);
        if (!isfinite(part))
            break;
        if (smlp_session_backward(r->ts) != SMLP_OK) {
            train_fail("step %lld: %s", (long long)r->step,
                       smlp_session_errmsg(r->ts));
            return -1;
        }
        train_sync_accum(r, a);
    }
    if (train_sync_forward(r, a < r->o.accum ? a + 1 : a, loss, &correct,
                           &images) != 0)
        return -1;
    if (!isfinite(*loss)) {
        train_fail("step %lld (epoch %lld): the loss is %g; try a lower "
                   "--lr or --clip-norm%s",
                   (long long)r->step, (long long)r->epoch + 1, *loss,
                   r->saved ? " (the checkpoint keeps the last good epoch)"
                            : "");
        return -1;
    }
    *acc = r->mode == TRAIN_MODE_MOCO ? NAN : correct / (double)images;
    if (train_sync_grads(r) != 0)
        return -1;
    rc = smlp_optim_step(r->opt, r->lr, &gnorm);
    if (rc != SMLP_OK) {
        train_fail("step %lld: %s (gradient norm %g)", (long long)r->step,
                   smlp_session_errmsg(r->ts), gnorm);
        return -1;
    }
    return train_sync_states(r);
}

/* ---- progress and metrics ---------------------------------------------- */

static void
fmt_time(double s, char *buf, size_t len)
{
    long t = s > 0 && s < 1e8 ? (long)(s + 0.5) : 0;

    snprintf(buf, len, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
}

static void
progress(struct train_run *r, int force)
{
    double now = train_now(), done = (double)(r->step - r->step_start);
    double train_s = now - r->t_start - r->eval_s, speed, eta;
    double ep_s = now - r->ep_t0;
    char eta_s[32], bar[32];
    int i, fill;

    if (r->ep_steps == 0 || (!r->bar && !force) ||
        (r->bar && !force && now - r->last_draw < 0.1))
        return;
    r->last_draw = now;
    ep_s -= r->eval_s - r->ep_eval0;
    speed = (double)(r->ep_timed * r->o.batch) / (ep_s > 0 ? ep_s : 1e-9);
    eta = done > 0 ? train_s / done * (double)(r->end_step - r->step) : 0;
    fmt_time(eta, eta_s, sizeof(eta_s));
    if (!r->bar && r->mode == TRAIN_MODE_MOCO) {
        printf("epoch %lld/%lld step %lld/%lld loss %.4f m %.5f "
               "%.0f img/s lr %.3g ETA %s\n", (long long)r->epoch + 1,
               (long long)r->o.epochs, (long long)r->in_epoch,
               (long long)r->spe, r->ep_loss / (double)r->ep_steps, r->m,
               speed, r->lr, eta_s);
        fflush(stdout);
        return;
    }
    if (!r->bar) {
        printf("epoch %lld/%lld step %lld/%lld loss %.4f acc %.1f%% "
               "%.0f img/s lr %.3g ETA %s\n", (long long)r->epoch + 1,
               (long long)r->o.epochs, (long long)r->in_epoch,
               (long long)r->spe, r->ep_loss / (double)r->ep_steps,
               100.0 * r->ep_acc / (double)r->ep_steps, speed, r->lr, eta_s);
        fflush(stdout);
        return;
    }
    if (r->mode == TRAIN_MODE_MOCO) {
        printf("\r\033[Kepoch %lld/%lld %lld/%lld loss %.4f m %.5f "
               "%.0f img/s ETA %s", (long long)r->epoch + 1,
               (long long)r->o.epochs, (long long)r->in_epoch,
               (long long)r->spe, r->ep_loss / (double)r->ep_steps, r->m,
               speed, eta_s);
        fflush(stdout);
        return;
    }
    fill = (int)(20 * r->in_epoch / r->spe);
    for (i = 0; i < 20; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[20] = '\0';
    printf("\r\033[Kepoch %lld/%lld [%s] %lld/%lld loss %.4f acc %.1f%% "
           "%.0f img/s ETA %s", (long long)r->epoch + 1,
           (long long)r->o.epochs, bar, (long long)r->in_epoch,
           (long long)r->spe, r->ep_loss / (double)r->ep_steps,
           100.0 * r->ep_acc / (double)r->ep_steps, speed, eta_s);
    fflush(stdout);
}

/* Adds a metrics row for the steps since the last one, with the test
 * results (NaN: none). */
static int
add_row(struct train_run *r, double test_acc, double test_loss)
{
    struct train_row row;
    double dt = train_now() - r->row_t0 - (r->eval_s - r->row_eval0);

    if (r->log.n > 0 && r->log.rows[r->log.n - 1].step == r->step) {
        /* This step's row exists: add an evaluation, never remove one. */
        if (!isnan(test_acc)) {
            r->log.rows[r->log.n - 1].test_acc = test_acc;
            r->log.rows[r->log.n - 1].test_loss = test_loss;
        }
        return 0;
    }
    if (r->row_steps == 0)
        return 0;
    row.step = r->step;
    row.epoch = (double)r->step / (double)r->spe;
    row.lr = r->lr;
    row.loss = r->row_loss / (double)r->row_steps;
    row.acc = r->row_acc / (double)r->row_steps;
    row.images_per_s = (double)(r->row_timed * r->o.batch) /
                       (dt > 0 ? dt : 1e-9);
    row.test_acc = test_acc;
    row.test_loss = test_loss;
    if (train_moe_row(&r->moe, row.step, row.epoch) != 0) {
        train_fail("out of memory");
        return -1;
    }
    r->row_loss = r->row_acc = 0.0;
    r->row_steps = r->row_timed = 0;
    r->row_t0 = train_now();
    r->row_eval0 = r->eval_s;
    if (train_log_add(&r->log, &row) != 0) {
        train_fail("out of memory");
        return -1;
    }
    return 0;
}

static int
write_reports(struct train_run *r)
{
    char err[8192], title[512];

    if (train_dist_rank() != 0)
        return 0;

    if (r->o.metrics != NULL &&
        train_log_write_csv(&r->log, r->o.metrics, err, sizeof(err)) != 0) {
        train_fail("--metrics %s", err);
        return -1;
    }
    if (r->o.moe_stats != NULL &&
        train_moe_write(&r->moe, r->o.moe_stats, err, sizeof(err)) != 0) {
        train_fail("--moe-stats %s", err);
        return -1;
    }
    if (r->mode == TRAIN_MODE_MOCO)
        snprintf(title, sizeof(title), "%s: MoCo v3 pre-training on "
                                       "Fashion-MNIST (no test evaluation)",
                 smlp_graph_name(r->eg));
    else
        snprintf(title, sizeof(title), "%s on Fashion-MNIST%s: best test "
                                       "accuracy %.2f%%",
                 smlp_graph_name(r->eg),
                 r->mode == TRAIN_MODE_PROBE ? " (linear probe)" : "",
                 100.0 * r->best_acc);
    if (r->o.plot != NULL &&
        train_log_write_plot(&r->log, r->o.plot, title, err, sizeof(err)) !=
            0) {
        train_fail("--plot %s", err);
        return -1;
    }
    return 0;
}

/* ", dropped X%" of the MoE layers' assignments since the last call, or
 * "" for a dense graph. */
static const char *
dropped_note(struct train_run *r, char *buf, size_t len)
{
    double share = train_moe_epoch(&r->moe);

    buf[0] = '\0';
    if (!isnan(share))
        snprintf(buf, len, ", dropped %.2f%%", 100.0 * share);
    return buf;
}

/* Evaluates, prints the epoch's (or run's) summary, checkpoints and
 * writes the reports. */
static int
end_of_period(struct train_run *r, int checkpoint)
{
    double acc = NAN, loss = NAN, t0 = train_now();
    double ep_s = t0 - r->ep_t0 - (r->eval_s - r->ep_eval0);
    int stop = train_dist_any(interrupted); /* agreed by the ranks */
    char drop[64];

    if (checkpoint && train_sync_check(r) != 0)
        return -1;
    if (stop && r->in_epoch != 0 && r->step < r->end_step) {
        /* Quick: the checkpoint and reports, no evaluation.  The
         * checkpoint keeps the open row's sums (a resumed run continues
         * them) and the reports get the partial row, which a resumed run
         * drops.  At an epoch's end or the run's, the signal waits for
         * the evaluation: the user waits for one evaluation at most, and
         * the line and row are never lost (a resumed run starts the next
         * epoch, or has nothing to do, and would not make them). */
        r->cut_short = 1;
        if (r->bar)
            printf("\r\033[K");
        if ((checkpoint && train_ckpt_save(r) != 0) ||
            add_row(r, NAN, NAN) != 0)
            return -1;
        return write_reports(r);
    }
    if (r->mode == TRAIN_MODE_MOCO) {
        /* No evaluation: the loss and the momentum. */
        if (add_row(r, NAN, NAN) != 0)
            return -1;
        if (r->bar)
            printf("\r\033[K");
        printf("epoch %lld/%lld%s: loss %.4f, m %.5f, %.0f img/s, %.1f s, "
               "lr %.3g%s\n",
               (long long)(r->in_epoch == 0 ? r->epoch : r->epoch + 1),
               (long long)r->o.epochs, r->in_epoch == 0 ? "" : " (part)",
               r->ep_steps ? r->ep_loss / (double)r->ep_steps : 0.0, r->m,
               (double)(r->ep_timed * r->o.batch) / (ep_s > 0 ? ep_s : 1e-9),
               ep_s, r->lr, dropped_note(r, drop, sizeof(drop)));
        fflush(stdout);
        if (checkpoint && train_ckpt_save(r) != 0)
            return -1;
        return write_reports(r);
    }
    if (train_evaluate(r, &acc, &loss) != 0)
        return -1;
    r->last_acc = acc;
    if (acc > r->best_acc)
        r->best_acc = acc;
    if (add_row(r, acc, loss) != 0)
        return -1;
    if (r->bar)
        printf("\r\033[K");
    printf("epoch %lld/%lld%s: loss %.4f, train acc %.2f%%, test acc %.2f%% "
           "(best %.2f%%), test loss %.4f, %.0f img/s, %.1f s, lr %.3g%s\n",
           (long long)(r->in_epoch == 0 ? r->epoch : r->epoch + 1),
           (long long)r->o.epochs,
           r->in_epoch == 0 ? "" : " (part)",
           r->ep_steps ? r->ep_loss / (double)r->ep_steps : 0.0,
           r->ep_steps ? 100.0 * r->ep_acc / (double)r->ep_steps : 0.0,
           100.0 * acc, 100.0 * r->best_acc, loss,
           (double)(r->ep_timed * r->o.batch) / (ep_s > 0 ? ep_s : 1e-9),
           ep_s, r->lr, dropped_note(r, drop, sizeof(drop)));
    fflush(stdout);
    if (checkpoint && train_ckpt_save(r) != 0)
        return -1;
    return write_reports(r);
}

/* ---- the loop ---------------------------------------------------------- */

static int
train(struct train_run *r)
{
    double loss, acc, tacc, tloss;
    struct rusage ru;

    r->t_start = r->ep_t0 = r->row_t0 = train_now();
    r->step_start = r->step;
    train_loader_request(r->tl, r->epoch, r->in_epoch);
    while (r->step < r->end_step && !train_dist_any(interrupted)) {
        const struct train_batch *b = train_loader_wait(r->tl);

        r->lr = smlp_lr_cosine(r->o.lr, r->o.min_lr, r->step, r->warmup,
                               r->total);
        if (train_step(r, b, &loss, &acc) != 0)
            return TRAIN_EXIT_FAIL;
        r->step++;
        r->in_epoch++;
        if (r->step == test_sigint_step && train_dist_rank() == 0)
            raise(SIGINT);
        /* b's buffer is free again: prepare the next batch. */
        if (r->step < r->end_step)
            train_loader_request(r->tl, r->in_epoch < r->spe ? r->epoch
                                                             : r->epoch + 1,
                                 r->in_epoch < r->spe ? r->in_epoch : 0);
        r->row_loss += loss;
        r->row_acc += acc;
        r->row_steps++;
        r->row_timed++;
        r->ep_loss += loss;
        r->ep_acc += acc;
        r->ep_steps++;
        r->ep_timed++;
        if (r->in_epoch == r->spe) {
            r->epoch++;
            r->in_epoch = 0;
            if (end_of_period(r, 1) != 0)
                return TRAIN_EXIT_FAIL;
            r->ep_loss = r->ep_acc = 0.0;
            r->ep_steps = r->ep_timed = 0;
            r->ep_t0 = train_now();
            r->ep_eval0 = r->eval_s;
            continue;
        }
        if (r->mode != TRAIN_MODE_MOCO && r->o.eval_every > 0 &&
            r->step % r->o.eval_every == 0 &&
            r->step < r->end_step) { /* else end_of_period evaluates */
            if (train_evaluate(r, &tacc, &tloss) != 0 ||
                add_row(r, tacc, tloss) != 0)
                return TRAIN_EXIT_FAIL;
            printf("%sstep %lld: test acc %.2f%%, test loss %.4f\n",
                   r->bar ? "\r\033[K" : "", (long long)r->step,
                   100.0 * tacc, tloss);
            r->last_acc = tacc;
            if (tacc > r->best_acc)
                r->best_acc = tacc;
        } else if (r->step % r->o.log_every == 0) {
            if (add_row(r, NAN, NAN) != 0)
                return TRAIN_EXIT_FAIL;
        }
        progress(r, r->step % r->o.log_every == 0);
    }
    if (r->in_epoch != 0) {
        /* --max-steps or a signal stopped the run inside an epoch. */
        if (end_of_period(r, 1) != 0)
            return TRAIN_EXIT_FAIL;
    }
    /* After the checkpoint: a trace that cannot be written loses no
     * training. */
    if (r->o.trace != NULL && r->step > r->step_start &&
        train_dist_rank() == 0 &&
        smlp_session_write_trace(r->ts, r->o.trace) != SMLP_OK) {
        train_fail("--trace: %s (the checkpoint %s is written)",
                   smlp_session_errmsg(r->ts), r->o.out);
        return TRAIN_EXIT_FAIL;
    }
    /* A signal during the last evaluation, or after it, ended nothing. */
    if (train_dist_any(interrupted) &&
        (r->step < r->end_step || r->cut_short)) {
        if (train_dist_rank() != 0)
            ; /* rank 0 wrote the checkpoint and says so */
        else if (r->in_epoch == 0)
            fprintf(stderr, "smlp-train: interrupted: checkpoint %s after "
                            "epoch %lld/%lld (step %lld); continue with "
                            "--resume %s\n",
                    r->o.out, (long long)r->epoch, (long long)r->o.epochs,
                    (long long)r->step, r->o.out);
        else
            fprintf(stderr, "smlp-train: interrupted: checkpoint %s in "
                            "epoch %lld/%lld at step %lld/%lld (step %lld); "
                            "continue with --resume %s\n",
                    r->o.out, (long long)r->epoch + 1,
                    (long long)r->o.epochs, (long long)r->in_epoch,
                    (long long)r->spe, (long long)r->step, r->o.out);
        return TRAIN_EXIT_INTERRUPTED;
    }
    if (getrusage(RUSAGE_SELF, &ru) == 0) /* ru_maxrss: KiB on Linux */
        printf("peak memory: %.1f MiB resident\n",
               (double)ru.ru_maxrss / 1024.0);
    if (r->o.device != SMLP_DEVICE_CPU) {
        struct smlp_device_stats ds;

        ds.size = sizeof(ds);
        if (smlp_session_get_device_stats(r->ts, &ds) == SMLP_OK)
            printf("device memory (training session): arena %.1f MiB, "
                   "parameters %.1f MiB, gradients %.1f MiB; backward on "
                   "the %s\n",
                   (double)ds.arena_bytes / 1048576.0,
                   (double)ds.param_bytes / 1048576.0,
                   (double)ds.grad_bytes / 1048576.0,
                   ds.backward_on_device ? "GPU" : "CPU");
    }
    if (r->step < r->total) {
        printf("stopped after epoch %lld (--stop-after): checkpoint %s; "
               "continue with --resume %s\n", (long long)r->epoch, r->o.out,
               r->o.out);
        return TRAIN_EXIT_OK;
    }
    if (r->mode == TRAIN_MODE_MOCO)
        printf("done: %lld steps, loss %.4f (last row), m %.5f, checkpoint "
               "%s\n", (long long)r->step,
               r->log.n ? r->log.rows[r->log.n - 1].loss : NAN, r->m,
               r->o.out);
    else
        printf("done: %lld steps, best test accuracy %.2f%%, checkpoint %s\n",
               (long long)r->step, 100.0 * r->best_acc, r->o.out);
    return TRAIN_EXIT_OK;
}

int
main(int argc, char **argv)
{
    struct sigaction sa;
    struct train_run r;
    char err[8192];
    int rc, bad, agreed = 0;

    memset(&r, 0, sizeof(r));
    if (train_dist_init(&argc, &argv) != 0)
        return TRAIN_EXIT_FAIL;
    /* Rank 0 speaks for all (errors name their rank on stderr). */
    if (train_dist_rank() != 0 && freopen("/dev/null", "w", stdout) == NULL)
        return train_dist_end(TRAIN_EXIT_FAIL, 0);
    train_quiet(1);
    rc = train_parse_all(argc, argv, &r.o);
    train_quiet(0);
    if (rc == TRAIN_HELP_DONE)
        return train_dist_end(TRAIN_EXIT_OK, 1);
    switch (train_usage_agreed(rc != 0)) {
    case 1:
        return train_dist_end(TRAIN_EXIT_USAGE, 1);
    case -1:
        if (rc == 0) /* wait for a failed rank's MPI_Abort */
            (void)train_dist_any(0);
        if (train_dist_rank() != 0) { /* say it, unmuted */
            memset(&r.o, 0, sizeof(r.o));
            optind = 0; /* getopt starts over */
            (void)train_parse_all(argc, argv, &r.o);
        }
        return train_dist_end(TRAIN_EXIT_USAGE, 0);
    }
    r.bar = r.o.progress == TRAIN_PROGRESS_BAR ||
            (r.o.progress == TRAIN_PROGRESS_AUTO && isatty(STDOUT_FILENO));
    r.last_acc = NAN;
    if (train_dist_rank() == 0) { /* the one that writes */
        rc = train_check_outputs(&r.o);
        if (rc == 0)
            rc = train_lock_out(&r);
        if (rc != 0)
            goto out;
    }
    rc = TRAIN_EXIT_FAIL;
    if (train_load_data(&r) != 0 || train_create_sessions(&r) != 0 ||
        train_sync_setup(&r) != 0)
        goto out;
    train_quiet(1);
    bad = train_check_mode_options(&r) != 0;
    if (bad)
        fprintf(stderr, "Try 'smlp-train --help'.\n");
    train_quiet(0);
    switch (train_usage_agreed(bad)) {
    case 1:
        agreed = 1;
        /* fall through */
    case -1:
        if (!bad) /* wait for a failed rank's MPI_Abort */
            (void)train_dist_any(0);
        else if (agreed == 0 && train_dist_rank() != 0)
            (void)train_check_mode_options(&r); /* say it, unmuted */
        rc = TRAIN_EXIT_USAGE;
        goto out;
    }
    if (train_create_loaders(&r) != 0)
        goto out;
    train_plan_schedule(&r);
    if (r.o.init_from != NULL && train_init_from(&r) != 0)
        goto out;
    if (r.o.resume != NULL && train_ckpt_resume(&r) != 0)
        goto out;
    if (r.o.eval_only) {
        rc = train_eval_only(&r);
        goto out;
    }
    if (r.o.resume != NULL) {
        /* A row still open at the checkpoint: the file's row at its step
         * is the partial one an interrupt wrote; this run replaces it. */
        int64_t last = r.row_steps > 0 ? r.step - 1 : r.step;

        if (r.o.metrics != NULL &&
            train_log_read_csv(&r.log, r.o.metrics, last, err,
                               sizeof(err)) != 0) {
            fprintf(stderr, "smlp-train: warning: --metrics %s; the file "
                            "starts again\n", err);
            train_log_free(&r.log);
        }
        if (r.o.moe_stats != NULL &&
            train_moe_read(&r.moe, r.o.moe_stats, last, err,
                           sizeof(err)) != 0) {
            fprintf(stderr, "smlp-train: warning: --moe-stats %s; the file "
                            "starts again\n", err);
            train_moe_free(&r.moe);
            if (train_moe_init(&r.moe, r.ts, err, sizeof(err)) != 0) {
                train_fail("%s", err);
                goto out;
            }
            /* the checkpoint's sums, as train_ckpt_resume checked them */
            (void)train_moe_set_sums(&r.moe, smlp_checkpoint_meta(
                                                 r.ts, "train.moe_sums"));
        }
        if (r.step >= r.end_step) {
            printf("nothing to do: %s is at step %lld, %s this run's end "
                   "(step %lld: --epochs, --max-steps, --stop-after)\n",
                   r.o.resume, (long long)r.step,
                   r.step == r.end_step ? "already at" : "already past",
                   (long long)r.end_step);
            rc = TRAIN_EXIT_OK;
            goto out;
        }
        printf("resuming at epoch %lld, step %lld of %lld\n",
               (long long)r.epoch + 1, (long long)r.step,
               (long long)r.total);
    }
    if (r.cache.on && train_cache_fill(&r) != 0)
        goto out;
    if (r.mode == TRAIN_MODE_MOCO)
        printf("%s: MoCo v3 pre-training, %lld training images (%lld steps "
               "of %lld image pairs per epoch), %s lr %g, warm-up %lld "
               "steps, %lld steps in all, momentum %g -> 1 (cosine), loss "
               "from the graph\n",
               smlp_graph_name(r.eg), (long long)r.train.n, (long long)r.spe,
               (long long)r.o.batch, train_optimizer_names[r.o.optimizer],
               r.o.lr, (long long)r.warmup, (long long)r.total,
               r.o.moco_m0);
    else
        printf("%s: %lld training images (%lld steps of %lld per epoch), "
               "%lld test images, %s lr %g, warm-up %lld steps, %lld steps "
               "in all%s%s%s\n",
               smlp_graph_name(r.eg), (long long)r.train.n, (long long)r.spe,
               (long long)r.o.batch, (long long)r.test.n,
               train_optimizer_names[r.o.optimizer], r.o.lr,
               (long long)r.warmup, (long long)r.total,
               r.head.has_aux && r.mode != TRAIN_MODE_PROBE
                   ? ", loss = cross-entropy + aux_loss"
                   : "",
               r.mode == TRAIN_MODE_PROBE ? ", linear probe (head.* "
                                            "trained, the rest frozen"
                                          : "",
               r.mode != TRAIN_MODE_PROBE ? ""
               : r.head.probe_gates > 0   ? "; its gates route as in "
                                            "inference)"
                                          : ")");
    if (r.o.accum > 1 || train_dist_size() > 1)
        printf("each step: %d rank%s x %lld micro-batch%s of %lld images, "
               "gradients averaged\n", train_dist_size(),
               train_dist_size() > 1 ? "s" : "", (long long)r.o.accum,
               r.o.accum > 1 ? "es" : "",
               (long long)(r.o.batch / train_dist_size() / r.o.accum));
    fflush(stdout);
    memset(&sa, 0, sizeof(sa));
    if (getenv("SMLP_TRAIN_TEST_SIGINT_STEP") != NULL)
        test_sigint_step = strtoll(getenv("SMLP_TRAIN_TEST_SIGINT_STEP"),
                                   NULL, 10);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND; /* a second signal ends the process */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    rc = train(&r);
out:
    train_run_free(&r);
    /* The epoch lines (--eval-only: the accuracies) are the answer. */
    if (!tool_stdout_ok("smlp-train") && rc == TRAIN_EXIT_OK)
        rc = TRAIN_EXIT_FAIL;
    /* Every rank stops together when done or interrupted (train()'s
     * decisions are collective); a failure on one rank ends them all. */
    return train_dist_end(rc, agreed || rc == TRAIN_EXIT_INTERRUPTED);
}

