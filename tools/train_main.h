/*
 * train_main.h - the parts of smlp-train shared between its files:
 * smlp-train.c (steps, progress, the loop), train_eval.c (test
 * evaluation), train_opts.c (the command line), train_setup.c (data,
 * graphs, sessions, loaders, the schedule), train_ckpt.c (checkpoints and
 * --resume), train_data.h (data and loader), train_head.h (the loss head),
 * train_report.h (metrics CSV and plot), train_moe.h (routing statistics
 * during training), train_routing.h (routing of the test set by class).
 * Messages go to stderr as "smlp-train: ..." (train_fail).
 */
#ifndef SMLP_TRAIN_MAIN_H
#define SMLP_TRAIN_MAIN_H

#include <stdint.h>
#include <stdio.h>

#include "smlp.h"
#include "train_data.h"
#include "train_head.h"
#include "train_moe.h"
#include "train_report.h"
#include "train_routing.h"

/* Exit statuses. */
#define TRAIN_EXIT_OK 0
#define TRAIN_EXIT_FAIL 1
#define TRAIN_EXIT_USAGE 2
#define TRAIN_EXIT_INTERRUPTED 130

/* What train_parse_args returns besides 0. */
#define TRAIN_USAGE_ERR (-1)
#define TRAIN_HELP_DONE (-3)

enum train_progress {
    TRAIN_PROGRESS_AUTO = 0,
    TRAIN_PROGRESS_BAR = 1,
    TRAIN_PROGRESS_LINES = 2
};

struct train_opts {
    const char *graph;
    const char *data;        /* "fashion-mnist" or a directory */
    const char *out;
    const char *resume;
    const char *weights;
    const char *init_from;   /* --init-from: a partial initial load */
    const char *metrics;
    const char *moe_stats;   /* --moe-stats F.csv */
    const char *routing;     /* --routing-by-class F.csv */
    const char *plot;
    const char *trace;       /* --trace: the last step's Chrome trace */
    const char *plugin_path;
    int64_t epochs;
    int64_t batch;
    int64_t accum;           /* --accum: micro-batches per step */
    int64_t eval_batch;
    int64_t max_steps;       /* 0: none */
    int64_t stop_after;      /* 0: none */
    int64_t limit_train;     /* 0: all */
    int64_t limit_test;
    int64_t eval_every;      /* 0: at epoch ends only */
    int64_t log_every;
    double lr;
    double min_lr;
    double weight_decay;     /* NaN: the optimizer's default */
    double momentum;         /* NaN: the optimizer's default */
    double clip_norm;
    double label_smoothing;
    int label_smoothing_set; /* --label-smoothing was given */
    double warmup;           /* steps, or epochs with warmup_epochs */
    int warmup_epochs;
    int warmup_set;
    int optimizer;           /* enum smlp_optimizer */
    int augment;             /* enum train_augment */
    int augment_set;         /* --augment was given */
    int probe;               /* --probe: train head.* only */
    int no_probe_cache;      /* --no-probe-cache */
    int eval_only;           /* --eval-only: test accuracy, no training */
    int recompute;           /* --recompute: opts.recompute */
    double moco_m0;          /* --moco-m0: MoCo's momentum at step 0 */
    int moco_m0_set;         /* --moco-m0 was given */
    int progress;            /* enum train_progress */
    int threads;
    int device;              /* enum smlp_device: opts.device */
    uint64_t seed;
};

/* What a run trains: a classifier (all its parameters), a linear probe
 * (--probe: head.* only, the rest frozen) or a MoCo v3 pre-training graph
 * (detected: inputs view1 and view2, its own loss). */
enum train_mode {
    TRAIN_MODE_CLASSIFY = 0,
    TRAIN_MODE_PROBE = 1,
    TRAIN_MODE_MOCO = 2
};

/* Names of the enum values, NULL-terminated, indexed by value. */
extern const char *const train_optimizer_names[];
extern const char *const train_augment_names[];
extern const char *const train_mode_names[];
extern const char *const train_device_names[];

void train_usage(FILE *f);
/* 0, TRAIN_USAGE_ERR (described on stderr) or TRAIN_HELP_DONE. */
int train_parse_args(int argc, char **argv, struct train_opts *o);

/* ---- train_args.c: the arguments on every rank ---- */

/* train_parse_args, then the batch's split into ranks x --accum
 * micro-batches and the default threads: 0, TRAIN_HELP_DONE, or
 * TRAIN_EXIT_USAGE after a message. */
int train_parse_all(int argc, char **argv, struct train_opts *o);
/* Ranks other than 0 mute stderr (on = 1) and unmute it (on = 0). */
void train_quiet(int on);
/* Collective: 0 when no rank failed, 1 when every rank did (rank 0 said
 * why), -1 when only some did (each failed rank must say why and end
 * the others). */
int train_usage_agreed(int failed);

/* What a step's micro-batches (--accum) add up and the ranks of a
 * data-parallel run exchange (train_sync.c; grads, states and buf empty
 * with one process and one micro-batch). */
struct train_sync {
    struct smlp_tensor *grads;  /* the trainable parameters' gradients */
    int n_grads;
    struct smlp_tensor *states; /* the training session's state tensors */
    int n_states;
    size_t floats;              /* in all the gradients */
    float *buf;                 /* [floats]: the micro-batches' sum */
    double *vals;               /* [n_vals]: loss, correct, images, MoE */
    double *micro;              /* [n_vals - 3]: one micro-batch's MoE */
    size_t n_vals;
    int64_t test_diverge_step;  /* SMLP_TRAIN_TEST_DIVERGE_STEP */
};

/* Everything a run holds; zeroed, then filled by the setup functions and
 * released by train_run_free (which takes a partly set up run). */
struct train_run {
    struct train_opts o;
    struct train_set train, test;
    uint8_t *graph_buf;
    size_t graph_len;
    uint64_t data_hash;      /* of the training images used; 0: not yet */
    uint64_t graph_digest;   /* the graph without name and metadata (see
                              * train_ckpt.c); 0: not yet */
    struct train_head_info head;
    smlp_graph_t *tg, *eg;     /* with the loss head; as given */
    smlp_registry_t *reg;
    smlp_session_t *ts, *es;   /* training; evaluation */
    smlp_optim_t *opt;
    struct train_loader *tl, *el;
    struct smlp_tensor t_image, t_labels, t_loss, t_logits, e_image,
        e_logits;
    int mode;                  /* enum train_mode */
    struct smlp_tensor t_view2, t_m; /* MoCo: t_image is view1; t_m.data
                                      NULL when the graph has no m */
    double m;                  /* MoCo: the momentum of the last step */
    const char **frozen;       /* --probe: opts.frozen (names in es) */
    /* --probe's feature cache (train_cache.h): when on, ts and es run the
     * head graph, fed the rows of `tensor` that fs (the classifier as
     * given, inference) computed once per image. */
    struct {
        int on;
        char tensor[256];
        int64_t row;           /* floats per image */
        float *train, *test;   /* n * row floats each */
        smlp_session_t *fs;    /* until the cache is filled */
        uint8_t *head;         /* the training graph, until it is cut */
        size_t head_len;
    } cache;
    int64_t spe, total, warmup, end_step;
    /* Position: the next step is number `step`, batch `in_epoch` of
     * `epoch` (0-based). */
    int64_t epoch, in_epoch, step;
    double lr, best_acc, last_acc;
    int64_t *tally;            /* per class of the last evaluation: test
                                  images, correct (score()) */
    struct train_log log;
    struct train_moe moe;      /* the MoE layers' loads (none: dense) */
    struct train_routing routing; /* --routing-by-class */
    struct train_sync sync;    /* data-parallel runs (train_dist.h) */
    int saved;                 /* this run wrote a checkpoint */
    char *lock_path;           /* OUT.lock, held (lock_fd) while it runs */
    int lock_fd;
    int cut_short;             /* a signal skipped an evaluation */
    /* Since the last metrics row and since the epoch began (the sums
     * are kept in checkpoints); *_timed: the steps since *_t0, for the
     * images per second. */
    double row_loss, row_acc, row_t0, ep_loss, ep_acc, ep_t0;
    double row_eval0, ep_eval0; /* eval_s when the row / epoch began */
    int64_t row_steps, ep_steps, row_timed, ep_timed;
    /* Progress display. */
    int bar;
    double t_start, eval_s, last_draw;
    int64_t step_start;
};

/* Prints "smlp-train: " and the message on stderr (after flushing
 * stdout). */
void train_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Seconds on the monotonic clock. */
double train_now(void);

/* ---- train_setup.c: each returns 0, or -1 after train_fail ---- */

/* Before a long run, not at its first checkpoint: the output options
 * name distinct files, each writable (tool_check_output), none of them
 * the graph or (but --out) a file the run loads.  0, or
 * TRAIN_EXIT_USAGE after train_fail. */
int train_check_outputs(const struct train_opts *o);
/* One run per checkpoint: takes an exclusive flock on TARGET.lock beside
 * --out's file (TARGET: --out with its links followed), released and
 * removed by train_run_free.  Another run holding it is refused, naming
 * the file.  0, or TRAIN_EXIT_FAIL after train_fail. */
int train_lock_out(struct train_run *r);
/* Both splits from --data, with the hint to install the package when
 * the files are missing; --limit-train/--limit-test applied. */
int train_load_data(struct train_run *r);
/* The graph as given (evaluation) and with the loss head (training),
 * the registry, both sessions, the tensors fed and read, the optimizer. */
int train_create_sessions(struct train_run *r);
/* The options that the mode (known once the graph is) would ignore:
 * --label-smoothing and --eval-every with a MoCo graph, --moco-m0 with
 * a classifier.  0, or -1 after train_fail (a usage error). */
int train_check_mode_options(const struct train_run *r);
int train_create_loaders(struct train_run *r);
/* Steps in all, warm-up steps and where this invocation stops. */
void train_plan_schedule(struct train_run *r);
/* smlp_session_tensor with host data, or -1 after train_fail. */
int train_tensor(smlp_session_t *s, const char *name, struct smlp_tensor *t);
void train_run_free(struct train_run *r);

/* ---- train_sync.c: a step's micro-batches and data-parallel ranks;
 * each returns 0, or -1 after train_fail ---- */

/* After train_create_sessions and train_moe_init. */
int train_sync_setup(struct train_run *r);
/* After micro-batch a's forward (a = 0 starts a step): its loss,
 * correct answers, images and MoE values are added up. */
void train_sync_micro(struct train_run *r, int64_t a, double loss,
                      double correct, int64_t images);
/* After micro-batch a's backward: its gradients are added up (nothing
 * with one micro-batch and one process). */
void train_sync_accum(struct train_run *r, int64_t a);
/* After the step's micro-batches (n of them): *loss becomes the mean of
 * the micro-batches' losses over the ranks, *correct and *images the
 * sums; the MoE statistics take the step. */
int train_sync_forward(struct train_run *r, int64_t n, double *loss,
                       double *correct, int64_t *images);
/* Then: every gradient becomes the mean over the micro-batches and the
 * ranks. */
int train_sync_grads(struct train_run *r);
/* After the update: rank 0's state tensors everywhere. */
int train_sync_states(struct train_run *r);
/* The ranks' parameters and state tensors are the same (fails naming
 * the step if not). */
int train_sync_check(struct train_run *r);
void train_sync_free(struct train_run *r);

/* ---- train_eval.c ---- */

/* Correct predictions among the first n rows of logits [*, k]; adds the
 * rows' cross-entropy to *ce and per-label tallies (images, correct) to
 * tally[2c], tally[2c + 1] when not NULL. */
int64_t train_score(const float *logits, int64_t k, const int32_t *labels,
                    int64_t n, double *ce, int64_t *tally);
/* The test set's accuracy and mean loss with the training session's
 * current parameters (copied into the evaluation session); writes
 * --routing-by-class.  0 or -1 after train_fail. */
int train_evaluate(struct train_run *r, double *acc, double *loss);
/* --eval-only: prints accuracy, loss and per-class accuracy (and the
 * routing by class); an exit status. */
int train_eval_only(struct train_run *r);
/* Copies the parameters and state of session `to` from the training
 * session (which has every tensor `to` has).  0 or -1 after train_fail. */
int train_copy_params(struct train_run *r, smlp_session_t *to);

/* ---- train_cache_run.c: --probe's feature cache ---- */

/* Whether the head can train on cached features (cache.on, cache.tensor;
 * a note says why not when the user did not ask for that); r->eg becomes
 * the graph as given with the cut tensor as an output.  head is the
 * training graph.  0, or -1 after train_fail. */
int train_cache_plan(struct train_run *r, const uint8_t *head,
                     size_t head_len);
/* The training graph cut at the cached tensor, whose shape the feature
 * session r->es (batch b) inferred, in r->tg; the cache's memory.
 * cache.on drops to 0 with a note when the tensor is not one row per
 * image or the rows would not fit.  0, or -1 after train_fail. */
int train_cache_cut(struct train_run *r, int64_t b);
/* The parameters of ts copied into cache.fs, which then computes the
 * cached rows of both sets and is released.  0 or -1 after train_fail. */
int train_cache_fill(struct train_run *r);

/* ---- train_ckpt.c ---- */

/* Writes the checkpoint --out (atomically, by smlp_checkpoint_save) with
 * the position and options as metadata.  0 or -1 after train_fail. */
int train_ckpt_save(struct train_run *r);
/* --init-from: copies every parameter and state tensor of the training
 * session that the file holds (by name; dtype and shape must match) and
 * keeps the graph's initial values for the others; in MoCo mode a
 * momentum twin the file lacks starts equal to its loaded parameter.
 * Refuses NaN and infinity; warns when the file is of another graph than
 * this one or its MoCo pre-training graph.  Prints what was loaded.  0
 * or -1 after train_fail. */
int train_init_from(struct train_run *r);
/* Loads --resume into the training session and optimizer, checks that
 * the graph and the options that change the result match (the length of
 * the schedule may change, with a warning) and sets the position and the
 * running sums (r->row_steps > 0: the checkpoint's metrics row was still
 * open).  0 or -1 after train_fail. */
int train_ckpt_resume(struct train_run *r);

#endif /* SMLP_TRAIN_MAIN_H */
