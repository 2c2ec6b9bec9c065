/*
 * train_setup.c - what smlp-train does before its first step: check the
 * output files (each its own, each writable), load the data, build the
 * training graph (the given graph plus the loss head of train_head.c),
 * create the registry, the training and evaluation sessions and the
 * optimizer (with the probe's feature cache of train_cache_run.c),
 * check the options against the mode, start the loaders and plan the
 * learning-rate schedule; and release it all.  See train_main.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "atomic_file.h"
#include "tool_opts.h"
#include "train_dist.h"
#include "train_main.h"

void
train_fail(const char *fmt, ...)
{
    va_list ap;

    fflush(stdout);
    if (train_dist_size() > 1)
        fprintf(stderr, "smlp-train: rank %d of %d: ", train_dist_rank(),
                train_dist_size());
    else
        fprintf(stderr, "smlp-train: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

double
train_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int
read_file(const char *path, uint8_t **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    long n;

    if (f == NULL) {
        train_fail("%s: cannot open graph: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        train_fail("%s: cannot read graph: is a directory", path);
        fclose(f);
        return -1;
    }
    errno = 0;
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET) != 0 || (*buf = malloc((size_t)n + 1)) == NULL ||
        fread(*buf, 1, (size_t)n, f) != (size_t)n) {
        train_fail("%s: cannot read graph: %s", path,
                   errno ? strerror(errno) : "read error");
        fclose(f);
        return -1;
    }
    fclose(f);
    *len = (size_t)n;
    return 0;
}

/* Whether path is one of the --data files that exist (PREFIX-images-
 * idx3-ubyte and PREFIX-labels-idx1-ubyte, .gz or plain, for train and
 * t10k); its name in buf when it is. */
static int
data_file_named(const struct train_opts *o, const char *path, char *buf,
                size_t len)
{
    static const char *const names[] = {"train-images-idx3-ubyte",
                                        "train-labels-idx1-ubyte",
                                        "t10k-images-idx3-ubyte",
                                        "t10k-labels-idx1-ubyte"};
    const char *dir = strcmp(o->data, "fashion-mnist") == 0
                          ? TRAIN_FMNIST_DIR : o->data;
    struct stat st;
    int i, gz;

    for (i = 0; i < 4; i++)
        for (gz = 0; gz < 2; gz++) {
            snprintf(buf, len, "%s/%s%s", dir, names[i], gz ? ".gz" : "");
            if (stat(buf, &st) == 0 && tool_same_file(path, buf))
                return 1;
        }
    return 0;
}

int
train_check_outputs(const struct train_opts *o)
{
    const char *out[6][2] = {{"--out", o->out},
                             {"--metrics", o->metrics},
                             {"--plot", o->plot},
                             {"--moe-stats", o->moe_stats},
                             {"--routing-by-class", o->routing},
                             {"--trace", o->trace}};
    /* What the run reads (and the --data files).  --out may name its
     * --resume, --weights or --init-from file: that is read whole before
     * training and replaced atomically after; no other output may name
     * an input. */
    const char *in[4][2] = {{"the graph", o->graph},
                            {"--resume", o->resume},
                            {"--weights", o->weights},
                            {"--init-from", o->init_from}};
    char msg[8192];
    int i, j;

    for (i = 0; i < 6; i++)
        for (j = 0; out[i][1] != NULL && j < 4; j++)
            if (in[j][1] != NULL && (i > 0 || j == 0) &&
                tool_same_file(out[i][1], in[j][1])) {
                train_fail("%s %s names the same file as %s %s: the run "
                           "would overwrite what it reads", out[i][0],
                           out[i][1], in[j][0], in[j][1]);
                return TRAIN_EXIT_USAGE;
            }
    for (i = 0; i < 6; i++)
        if (out[i][1] != NULL && data_file_named(o, out[i][1], msg,
                                                 sizeof(msg))) {
            train_fail("%s %s names the same file as the data file %s: the "
                       "run would overwrite what it reads", out[i][0],
                       out[i][1], msg);
            return TRAIN_EXIT_USAGE;
        }
    for (i = 0; i < 6; i++)
        for (j = i + 1; out[i][1] != NULL && j < 6; j++)
            if (out[j][1] != NULL && tool_same_file(out[i][1], out[j][1])) {
                train_fail("%s %s and %s %s name the same file: each output "
                           "needs its own", out[i][0], out[i][1], out[j][0],
                           out[j][1]);
                return TRAIN_EXIT_USAGE;
            }
    for (i = 0; i < 6; i++)
        if (out[i][1] != NULL &&
            tool_check_output(out[i][0], out[i][1], msg, sizeof(msg)) != 0) {
            train_fail("%s", msg);
            return TRAIN_EXIT_USAGE;
        }
    return 0;
}

/* With the lock held, no other run writes --out: its temporary files
 * (OUT.tmp.XXXXXX) are what killed runs left, checkpoints' worth of
 * space each.  They are removed, and said so.  The sweep looks beside
 * the target the lock was taken for (lock_path less ".lock"), not at
 * --out again: were --out a link retargeted meanwhile, another target's
 * files could belong to a live run. */
static int
train_sweep_out(struct train_run *r)
{
    char err[PATH_MAX + 256];
    char *target;
    uint64_t bytes;
    int n;

    target = strndup(r->lock_path, strlen(r->lock_path) - strlen(".lock"));
    if (target == NULL) {
        train_fail("--out %s: out of memory", r->o.out);
        return TRAIN_EXIT_FAIL;
    }
    n = smlp__atomic_file_sweep(target, &bytes, err, sizeof(err));
    free(target);
    if (n < 0) {
        train_fail("--out %s: %s", r->o.out, err);
        return TRAIN_EXIT_FAIL;
    }
    if (n > 0)
        fprintf(stderr, "smlp-train: removed %d temporary file%s (%.1f MB) "
                        "that a killed run left beside %s\n",
                n, n == 1 ? "" : "s", (double)bytes / 1e6, r->o.out);
    return 0;
}

/* See train_main.h.  A run that died leaves the file but not its flock,
 * so nothing blocks the next run.  A run that ends removes the file
 * while it holds it; a run that locked the file just as it was removed
 * holds an inode no longer at the path, sees so (stat against fstat) and
 * tries again on the path's new file. */
int
train_lock_out(struct train_run *r)
{
    struct stat a, b;
    char *target;
    int fd, tries = 0;

    if (r->o.out == NULL)
        return 0;
    target = smlp__atomic_file_target(r->o.out);
    if (target == NULL ||
        (r->lock_path = malloc(strlen(target) + 6)) == NULL) {
        free(target);
        train_fail("--out %s: cannot resolve the name", r->o.out);
        return TRAIN_EXIT_FAIL;
    }
    sprintf(r->lock_path, "%s.lock", target);
    free(target);
again:
    fd = open(r->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        train_fail("--out %s: cannot create its lock file %s: %s", r->o.out,
                   r->lock_path, strerror(errno));
        free(r->lock_path);
        r->lock_path = NULL;
        return TRAIN_EXIT_FAIL;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;

        close(fd);
        if (e == EWOULDBLOCK)
            train_fail("--out %s: another smlp-train run is writing this "
                       "checkpoint (it holds %s); wait for it to end, or "
                       "give this run another --out", r->o.out,
                       r->lock_path);
        else
            train_fail("--out %s: cannot lock %s: %s", r->o.out,
                       r->lock_path, strerror(e));
        free(r->lock_path);
        r->lock_path = NULL;
        return TRAIN_EXIT_FAIL;
    }
    if ((stat(r->lock_path, &a) != 0 || fstat(fd, &b) != 0 ||
         a.st_dev != b.st_dev || a.st_ino != b.st_ino) &&
        ++tries < 100) {
        close(fd);
        goto again;
    }
    r->lock_fd = fd;
    return train_sweep_out(r);
}

int
train_load_data(struct train_run *r)
{
    const char *dir = strcmp(r->o.data, "fashion-mnist") == 0
                          ? TRAIN_FMNIST_DIR : r->o.data;
    char err[8192];
    int rc;

    rc = train_set_load(&r->train, dir, "train", err, sizeof(err));
    if (rc == 0)
        rc = train_set_load(&r->test, dir, "t10k", err, sizeof(err));
    if (rc == TRAIN_DATA_ENOENT) {
        train_fail("Fashion-MNIST not found: %s\n"
                   "  install it with: apt-get install %s (files in %s)\n"
                   "  or point --data at a directory holding "
                   "train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                   "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (.gz "
                   "or not)",
                   err, TRAIN_FMNIST_PACKAGE, TRAIN_FMNIST_DIR);
        return -1;
    }
    if (rc != 0) {
        train_fail("%s", err);
        return -1;
    }
    train_set_limit(&r->train, r->o.limit_train);
    train_set_limit(&r->test, r->o.limit_test);
    if (r->train.rows != r->test.rows || r->train.cols != r->test.cols) {
        train_fail("%s: %dx%d images, but %s has %dx%d", r->test.images_path,
                   r->test.rows, r->test.cols, r->train.images_path,
                   r->train.rows, r->train.cols);
        return -1;
    }
    if (r->train.n < r->o.batch) {
        train_fail("--batch %lld is more than the %lld training images",
                   (long long)r->o.batch, (long long)r->train.n);
        return -1;
    }
    return 0;
}

int
train_tensor(smlp_session_t *s, const char *name, struct smlp_tensor *t)
{
    if (smlp_session_tensor(s, name, t) != SMLP_OK) {
        train_fail("%s", smlp_session_errmsg(s));
        return -1;
    }
    if (t->data == NULL) {
        train_fail("tensor '%s' is an activation: smlp-train reads and "
                   "writes inputs, outputs and parameters only", name);
        return -1;
    }
    return 0;
}

/* --probe: opts.frozen = every parameter of the evaluation session (the
 * graph as given) but head.*.  0 or -1 after train_fail. */
static int
probe_frozen(struct train_run *r)
{
    int n = smlp_session_tensor_count(r->es, 1), i, k = 0, head = 0;

    r->frozen = calloc((size_t)n + 1, sizeof(*r->frozen));
    if (r->frozen == NULL) {
        train_fail("out of memory");
        return -1;
    }
    for (i = 0; i < n; i++) {
        const char *name = smlp_session_tensor_name(r->es, 1, i);

        if (fnmatch("head.*", name, 0) == 0)
            head++;
        else
            r->frozen[k++] = name;
    }
    if (head == 0) {
        train_fail("--probe trains the parameters named head.* on a frozen "
                   "backbone, and %s has none", r->o.graph);
        return -1;
    }
    return 0;
}

/* The tensors a MoCo run feeds and reads. */
static int
moco_tensors(struct train_run *r)
{
    if (train_tensor(r->ts, r->head.image, &r->t_image) != 0 ||
        train_tensor(r->ts, "view2", &r->t_view2) != 0 ||
        train_tensor(r->ts, "loss", &r->t_loss) != 0 ||
        (r->head.has_m && train_tensor(r->ts, "m", &r->t_m) != 0))
        return -1;
    if (!r->head.has_m)
        fprintf(stderr, "smlp-train: warning: %s has no input 'm': the "
                        "momentum stays at the graph's attribute instead of "
                        "following the cosine from --moco-m0\n", r->o.graph);
    return 0;
}

int
train_create_sessions(struct train_run *r)
{
    struct smlp_session_opts so;
    struct smlp_optim_opts oo;
    struct smlp_error err;
    uint8_t *head = NULL;
    size_t head_len;
    char msg[1024];
    const struct train_set *top;
    int64_t k;

    if (read_file(r->o.graph, &r->graph_buf, &r->graph_len) != 0)
        return -1;
    if (r->o.routing != NULL) {
        /* the evaluation graph keeps the gates' expert and slot */
        if (train_routing_graph(&r->routing, r->graph_buf, r->graph_len,
                                r->o.graph, &head, &head_len, msg,
                                sizeof(msg)) != 0) {
            train_fail("%s", msg);
            return -1;
        }
        r->eg = smlp_graph_load_buffer(head, head_len, r->o.graph, &err);
        free(head);
        head = NULL;
        if (r->eg != NULL && r->routing.n_layers == 0) {
            train_fail("--routing-by-class: %s has no MoE gate (moe.gate.*)",
                       r->o.graph);
            return -1;
        }
    } else {
        r->eg = smlp_graph_load_buffer(r->graph_buf, r->graph_len,
                                       r->o.graph, &err);
    }
    if (r->eg == NULL) {
        train_fail("%s", err.msg);
        return -1;
    }
    if (train_head_build(r->graph_buf, r->graph_len, r->o.graph,
                         r->o.label_smoothing, r->o.probe, &head, &head_len,
                         &r->head, msg, sizeof(msg)) != 0) {
        train_fail("%s", msg);
        return -1;
    }
    r->tg = smlp_graph_load_buffer(head, head_len, r->o.graph, &err);
    if (r->tg != NULL && train_cache_plan(r, head, head_len) != 0) {
        free(head);
        return -1;
    }
    if (r->cache.on) { /* cut once the feature session knows its shape */
        r->cache.head = head;
        r->cache.head_len = head_len;
    } else {
        free(head);
    }
    head = NULL;
    if (r->tg == NULL) {
        train_fail("%s (with the loss head)", err.msg);
        return -1;
    }
    if (r->head.chw[0] != 1 || r->head.chw[1] != r->train.rows ||
        r->head.chw[2] != r->train.cols) {
        train_fail("%s: input '%s' takes [-1,%lld,%lld,%lld] images, the data "
                   "are [-1,1,%d,%d]", r->o.graph, r->head.image,
                   (long long)r->head.chw[0], (long long)r->head.chw[1],
                   (long long)r->head.chw[2], r->train.rows, r->train.cols);
        return -1;
    }
    r->mode = r->head.moco ? TRAIN_MODE_MOCO
              : r->o.probe ? TRAIN_MODE_PROBE
                           : TRAIN_MODE_CLASSIFY;
    if (r->head.moco && r->o.routing != NULL) {
        train_fail("--routing-by-class reports the test evaluation of a "
                   "classifier, and %s is a MoCo pre-training graph (no "
                   "evaluation)", r->o.graph);
        return -1;
    }
    if (r->head.moco && r->o.probe) {
        train_fail("--probe trains a classifier's head on a frozen backbone, "
                   "and %s is a MoCo pre-training graph: probe its "
                   "checkpoint with the classifier graph (e.g. "
                   "sparse_mlp_fmnist) and --init-from", r->o.graph);
        return -1;
    }
    if (r->head.moco && r->o.augment != TRAIN_AUGMENT_MOCO) {
        if (r->o.augment_set) {
            train_fail("%s is a MoCo graph: its two views must differ, use "
                       "--augment moco", r->o.graph);
            return -1;
        }
        r->o.augment = TRAIN_AUGMENT_MOCO;
    }
    r->reg = smlp_registry_create(r->o.plugin_path, &err);
    if (r->reg == NULL) {
        train_fail("%s", err.msg);
        return -1;
    }
    if (r->mode != TRAIN_MODE_MOCO) {
        smlp_session_opts_init(&so);
        so.batch = r->test.n < r->o.eval_batch ? r->test.n
                                               : r->o.eval_batch;
        so.threads = r->o.threads;
        so.device = r->o.device;
        so.no_init = 1;
        r->es = smlp_session_create(r->eg, r->reg, &so, &err);
        if (r->es == NULL) {
            train_fail("%s (evaluation session)", err.msg);
            return -1;
        }
        if (r->o.routing != NULL &&
            train_routing_init(&r->routing, r->es, so.batch,
                               r->train.classes > r->test.classes
                                   ? r->train.classes
                                   : r->test.classes,
                               msg, sizeof(msg)) != 0) {
            train_fail("%s", msg);
            return -1;
        }
        if (r->mode == TRAIN_MODE_PROBE && probe_frozen(r) != 0)
            return -1;
        if (r->cache.on && train_cache_cut(r, so.batch) != 0)
            return -1;
        if (r->head.probe_bn[0] != '\0' && r->cache.on)
            printf("note: --probe: node '%s' of %s is a batch norm: the "
                   "cached features use its running statistics, as "
                   "inference does (without the cache it would normalise "
                   "with each batch's)\n", r->head.probe_bn, r->o.graph);
        else if (r->head.probe_bn[0] != '\0')
            fprintf(stderr, "smlp-train: warning: --probe: node '%s' of %s "
                            "is a batch norm: it normalises with the "
                            "batch's statistics and moves its running ones "
                            "during the probe's steps (the checkpoint keeps "
                            "them)\n", r->head.probe_bn, r->o.graph);
    }
    smlp_session_opts_init(&so);
    /* Each rank runs its part of the batch in --accum micro-batches,
     * with gate noise of its own (--eval-only trains nothing: the whole
     * batch, divisible or not). */
    so.batch = r->o.eval_only ? r->o.batch
                              : r->o.batch / train_dist_size() / r->o.accum;
    so.threads = r->o.threads;
    so.device = r->o.device;
    so.seed = r->o.seed ^ (uint64_t)train_dist_rank()
                              * 0x9e3779b97f4a7c15ull;
    so.training = 1;
    so.loss = "loss";
    so.weights = r->o.weights;
    /* A NaN in --weights or --resume's file: named here, not blamed on
     * the learning rate at the first step. */
    so.check_finite = 1;
    so.frozen = r->frozen;
    so.recompute = r->o.recompute;
    r->ts = smlp_session_create(r->tg, r->reg, &so, &err);
    if (r->ts == NULL) {
        /* "FILE: tensor ...": say which option named FILE */
        train_fail("%s%s", r->o.weights != NULL &&
                                   strncmp(err.msg, r->o.weights,
                                           strlen(r->o.weights)) == 0
                               ? "--weights "
                               : "",
                   err.msg);
        return -1;
    }
    if (r->cache.on) {
        /* The feature session fills the cache (train_cache_fill); the
         * evaluation runs the head graph on the cached test rows. */
        so.batch = r->test.n < r->o.eval_batch ? r->test.n
                                               : r->o.eval_batch;
        so.training = 0;
        so.loss = NULL;
        so.weights = NULL;
        so.frozen = NULL;
        so.no_init = 1;
        r->cache.fs = r->es;
        r->es = smlp_session_create(r->tg, r->reg, &so, &err);
        if (r->es == NULL) {
            train_fail("%s (the probe's head, evaluation session)", err.msg);
            return -1;
        }
    }
    if (r->mode == TRAIN_MODE_MOCO) {
        if (moco_tensors(r) != 0)
            return -1;
    } else {
        const char *feed = r->cache.on ? r->cache.tensor : r->head.image;

        if (train_tensor(r->ts, feed, &r->t_image) != 0 ||
            train_tensor(r->ts, "labels", &r->t_labels) != 0 ||
            train_tensor(r->ts, "loss", &r->t_loss) != 0 ||
            train_tensor(r->ts, "logits", &r->t_logits) != 0 ||
            train_tensor(r->es, feed, &r->e_image) != 0 ||
            train_tensor(r->es, "logits", &r->e_logits) != 0)
            return -1;
        k = r->e_logits.shape[1];
        top = r->train.classes >= r->test.classes ? &r->train : &r->test;
        if (r->e_logits.rank != 2 || k < top->classes) {
            train_fail("%s: image %lld has label %d, out of range: %s's "
                       "'logits' has %lld classes (labels 0 to %lld)",
                       top->labels_path, (long long)top->top_label_at,
                       top->classes - 1, r->o.graph, (long long)k,
                       (long long)k - 1);
            return -1;
        }
    }
    smlp_optim_opts_init(&oo);
    oo.kind = r->o.optimizer;
    if (!isnan(r->o.weight_decay))
        oo.weight_decay = r->o.weight_decay;
    else if (r->o.optimizer == SMLP_OPTIM_SGD)
        oo.weight_decay = 0.0;
    if (!isnan(r->o.momentum))
        oo.momentum = r->o.momentum;
    oo.clip_norm = r->o.clip_norm;
    r->o.weight_decay = oo.weight_decay; /* for the metadata */
    r->o.momentum = oo.momentum;
    r->opt = smlp_optim_create(r->ts, &oo, &err);
    if (r->opt == NULL) {
        train_fail("%s", err.msg);
        return -1;
    }
    if (train_moe_init(&r->moe, r->ts, msg, sizeof(msg)) != 0) {
        train_fail("%s", msg);
        return -1;
    }
    if (r->o.moe_stats != NULL && r->moe.n_layers == 0) {
        train_fail("--moe-stats: %s has no MoE layer (no graph output "
                   "NAME.load i32 [E,2] with NAME.aux, as a gate's)",
                   r->o.graph);
        return -1;
    }
    return 0;
}

int
train_check_mode_options(const struct train_run *r)
{
    const char *opt = NULL, *why = "";

    if (r->mode == TRAIN_MODE_MOCO && r->o.label_smoothing_set) {
        opt = "--label-smoothing";
        why = "it has its own loss (no labels)";
    } else if (r->mode == TRAIN_MODE_MOCO && r->o.eval_every > 0) {
        opt = "--eval-every";
        why = "pre-training has no test evaluation";
    } else if (r->mode != TRAIN_MODE_MOCO && r->o.moco_m0_set) {
        train_fail("--moco-m0 is for a MoCo pre-training graph (inputs "
                   "view1 and view2), and %s is a classifier", r->o.graph);
        return -1;
    }
    if (opt != NULL) {
        train_fail("%s does nothing for %s, a MoCo pre-training graph: %s",
                   opt, r->o.graph, why);
        return -1;
    }
    if (r->mode == TRAIN_MODE_MOCO && r->o.accum > 1) {
        train_fail("--accum %lld: %s is a MoCo pre-training graph: its "
                   "loss contrasts the queries with the keys of the same "
                   "micro-batch and its batch norms see one micro-batch, "
                   "so micro-batches are not the batch's step",
                   (long long)r->o.accum, r->o.graph);
        return -1;
    }
    if (r->mode == TRAIN_MODE_MOCO && train_dist_size() > 1) {
        train_fail("%s is a MoCo pre-training graph: it trains in one "
                   "process only (on %d ranks its loss would see each "
                   "rank's keys and its batch norms each rank's images, "
                   "not the batch's)", r->o.graph, train_dist_size());
        return -1;
    }
    return 0;
}

int
train_create_loaders(struct train_run *r)
{
    struct train_loader_opts lo;
    char err[256];

    memset(&lo, 0, sizeof(lo));
    lo.set = &r->train;
    lo.batch = r->o.batch;
    lo.seed = r->o.seed;
    lo.shuffle = 1;
    lo.drop_last = 1;
    lo.augment = r->o.augment;
    lo.views = r->mode == TRAIN_MODE_MOCO ? 2 : 1;
    lo.rows = r->cache.train; /* NULL without the cache */
    lo.row_floats = (size_t)r->cache.row;
    lo.part = r->o.eval_only ? 0 : train_dist_rank();
    lo.parts = r->o.eval_only ? 1 : train_dist_size();
    r->tl = train_loader_create(&lo, err, sizeof(err));
    if (r->tl != NULL && r->mode == TRAIN_MODE_MOCO) {
        /* Pre-training has no test evaluation. */
        r->spe = train_loader_batches(r->tl);
        return 0;
    }
    lo.set = &r->test;
    lo.batch = r->e_image.shape[0];
    lo.shuffle = 0;
    lo.drop_last = 0;
    lo.augment = TRAIN_AUGMENT_NONE;
    lo.rows = r->cache.test;
    lo.part = 0; /* whole batches: the ranks share them out */
    lo.parts = 1;
    r->el = r->tl != NULL ? train_loader_create(&lo, err, sizeof(err)) : NULL;
    if (r->el == NULL) {
        train_fail("%s", err);
        return -1;
    }
    r->spe = train_loader_batches(r->tl);
    return 0;
}

void
train_plan_schedule(struct train_run *r)
{
    r->total = r->o.epochs * r->spe;
    if (r->o.max_steps > 0 && r->o.max_steps < r->total)
        r->total = r->o.max_steps;
    if (!r->o.warmup_set)
        r->warmup = r->spe < r->total / 10 ? r->spe : r->total / 10;
    else if (r->o.warmup_epochs)
        r->warmup = (int64_t)floor(r->o.warmup * (double)r->spe + 0.5);
    else
        r->warmup = (int64_t)r->o.warmup;
    if (r->warmup > r->total)
        r->warmup = r->total;
    r->end_step = r->total;
    if (r->o.stop_after > 0 && r->o.stop_after * r->spe < r->end_step)
        r->end_step = r->o.stop_after * r->spe;
}


void
train_run_free(struct train_run *r)
{
    train_loader_destroy(r->tl);
    train_loader_destroy(r->el);
    smlp_optim_destroy(r->opt);
    smlp_session_destroy(r->es);
    smlp_session_destroy(r->cache.fs);
    smlp_session_destroy(r->ts);
    smlp_registry_destroy(r->reg);
    smlp_graph_unload(r->tg);
    smlp_graph_unload(r->eg);
    free(r->graph_buf);
    train_set_free(&r->train);
    train_set_free(&r->test);
    train_log_free(&r->log);
    train_moe_free(&r->moe);
    train_routing_free(&r->routing);
    train_sync_free(r);
    free(r->tally);
    free(r->frozen);
    free(r->cache.head);
    free(r->cache.train);
    free(r->cache.test);
    if (r->lock_path != NULL) {
        unlink(r->lock_path); /* while still held: see train_lock_out */
        close(r->lock_fd);
        free(r->lock_path);
    }
}

