/*
 * train_ckpt.c - smlp-train's checkpoints: what goes into their metadata
 * and what --resume checks and restores.  See train_main.h.
 *
 * smlp_checkpoint_save writes the parameters, the optimizer's state and
 * smlp's own counters (smlp.step: the run counter gate noise is drawn
 * with; smlp.optim.steps); this file adds "train.*" pairs: the position
 * (epoch, step in the epoch, step), the shuffle's state (a pure function
 * of the seed and the epoch, so those two are the state), the best and
 * last test accuracy, the running sums behind the epoch line and the
 * open metrics row (and --moe-stats'), and every option that changes the
 * result, compared on --resume.  --init-from (a partial load by name) is
 * here too.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "graph_ir.h"
#include "safetensors.h"
#include "train_dist.h"
#include "train_main.h"

#define MAX_META 48

/* One metadata entry; `opt` names the option for resume checks.  Its
 * `soft` says what a change on resume does: SOFT_NO, refused; SOFT_SCHEDULE
 * (the schedule's length), recomputed with a warning; SOFT_EVAL (the test
 * set), the accuracies change meaning, with a warning. */
enum { SOFT_NO, SOFT_SCHEDULE, SOFT_EVAL };

struct meta_item {
    const char *key;
    const char *opt;
    int soft;
    char value[80];
};

static uint64_t
fnv1a64(const uint8_t *p, size_t n)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);

    while (n--)
        h = (h ^ *p++) * UINT64_C(0x100000001b3);
    return h;
}

static int
meta_add(struct meta_item *m, int n, const char *key, const char *opt,
         int soft, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static int
meta_add(struct meta_item *m, int n, const char *key, const char *opt,
         int soft, const char *fmt, ...)
{
    va_list ap;

    m[n].key = key;
    m[n].opt = opt;
    m[n].soft = soft;
    va_start(ap, fmt);
    vsnprintf(m[n].value, sizeof(m[n].value), fmt, ap);
    va_end(ap);
    return n + 1;
}

/*
 * The graph's digest, compared on resume: the hash of the graph encoded
 * again without its name and metadata, which the run does not compute
 * with (a graph renamed, or annotated with smlp-graph edit --set-meta,
 * resumes).  Everything else counts, in the file's order (the order of
 * the nodes decides the order of the gradient sums, and so the bits).
 * 0 when the graph does not decode or encode (it loaded, so it does).
 */
static uint64_t
graph_digest(const struct train_run *r)
{
    struct smlp__graph_ir *ir = NULL;
    struct smlp__meta_ir *meta;
    uint8_t *buf = NULL;
    uint64_t h = 0;
    size_t len;
    char *name;
    int32_t n_meta;

    if (smlp__graph_ir_decode(r->graph_buf, r->graph_len, r->o.graph, &ir,
                              NULL, 0) != SMLP_OK)
        return 0;
    name = ir->name;
    meta = ir->meta;
    n_meta = ir->n_meta;
    ir->name = (char *)"";
    ir->meta = NULL;
    ir->n_meta = 0;
    if (smlp__graph_ir_encode(ir, &buf, &len, NULL, 0) == SMLP_OK)
        h = fnv1a64(buf, len);
    ir->name = name;
    ir->meta = meta;
    ir->n_meta = n_meta;
    free(buf);
    smlp__graph_ir_free(ir);
    return h;
}

/* The options that decide the result (compared on resume). */
static int
meta_options(struct train_run *r, struct meta_item *m)
{
    const struct train_opts *o = &r->o;
    int n = 0;

    if (r->data_hash == 0)
        r->data_hash = fnv1a64(r->train.images, (size_t)r->train.n *
                                                    (size_t)r->train.rows *
                                                    (size_t)r->train.cols) ^
                       fnv1a64(r->train.labels, (size_t)r->train.n) ^ 1;

    /* The file's bytes (all that checkpoints before 0.4.1 have), and
     * the digest, which decides when the checkpoint has it. */
    n = meta_add(m, n, "train.graph_hash", "GRAPH", 0, "%016" PRIx64,
                 fnv1a64(r->graph_buf, r->graph_len));
    if (r->graph_digest == 0)
        r->graph_digest = graph_digest(r);
    n = meta_add(m, n, "train.graph_digest", "GRAPH", 0, "%016" PRIx64,
                 r->graph_digest);
    n = meta_add(m, n, "train.n_train", "--limit-train", 0, "%lld",
                 (long long)r->train.n);
    n = meta_add(m, n, "train.data_hash", "--data (the training images)", 0,
                 "%016" PRIx64, r->data_hash);
    n = meta_add(m, n, "train.batch", "--batch", 0, "%lld",
                 (long long)o->batch);
    n = meta_add(m, n, "train.seed", "--seed", 0, "%" PRIu64, o->seed);
    n = meta_add(m, n, "train.optimizer", "--optimizer", 0, "%s",
                 train_optimizer_names[o->optimizer]);
    n = meta_add(m, n, "train.lr", "--lr", 0, "%.17g", o->lr);
    n = meta_add(m, n, "train.min_lr", "--min-lr", 0, "%.17g", o->min_lr);
    n = meta_add(m, n, "train.weight_decay", "--weight-decay", 0, "%.17g",
                 o->weight_decay);
    n = meta_add(m, n, "train.momentum", "--momentum", 0, "%.17g",
                 o->momentum);
    n = meta_add(m, n, "train.clip_norm", "--clip-norm", 0, "%.17g",
                 o->clip_norm);
    if (r->mode != TRAIN_MODE_MOCO) /* MoCo has its own loss */
        n = meta_add(m, n, "train.label_smoothing", "--label-smoothing", 0,
                     "%.17g", o->label_smoothing);
    n = meta_add(m, n, "train.augment", "--augment", 0, "%s",
                 train_augment_names[o->augment]);
    n = meta_add(m, n, "train.recompute", "--recompute", 0, "%d",
                 r->o.recompute);
    /* Another number of ranks sums the batch in another order. */
    n = meta_add(m, n, "train.ranks", "the number of ranks (mpirun -np)", 0,
                 "%d", train_dist_size());
    /* Micro-batches sum a step's gradients in another order. */
    n = meta_add(m, n, "train.accum", "--accum", 0, "%lld",
                 (long long)o->accum);
    /* The GPU's kernels round differently from the CPU's. */
    n = meta_add(m, n, "train.device", "--device", 0, "%s",
                 train_device_names[r->o.device]);
    n = meta_add(m, n, "train.mode", "the mode (--probe, or a MoCo graph)",
                 0, "%s", train_mode_names[r->mode]);
    if (r->mode == TRAIN_MODE_MOCO)
        n = meta_add(m, n, "train.moco_m0", "--moco-m0", 0, "%.17g",
                     o->moco_m0);
    n = meta_add(m, n, "train.epochs", "--epochs", SOFT_SCHEDULE, "%lld",
                 (long long)o->epochs);
    n = meta_add(m, n, "train.total_steps",
                 "the number of steps (--epochs, --max-steps)",
                 SOFT_SCHEDULE, "%lld", (long long)r->total);
    n = meta_add(m, n, "train.warmup_steps", "--warmup", SOFT_SCHEDULE,
                 "%lld", (long long)r->warmup);
    if (r->mode != TRAIN_MODE_MOCO) /* MoCo evaluates nothing */
        n = meta_add(m, n, "train.n_test", "--limit-test", SOFT_EVAL, "%lld",
                     (long long)r->test.n);
    return n;
}

int
train_ckpt_save(struct train_run *r)
{
    struct meta_item m[MAX_META];
    const char *keys[MAX_META + 1], *values[MAX_META + 1];
    int n, i, rc = 0, open_ep = r->in_epoch != 0;
    char *moe = NULL;

    if (train_dist_rank() != 0) /* rank 0 writes for all */
        return 0;
    n = meta_options(r, m);

    n = meta_add(m, n, "train.format", NULL, 0, "1");
    n = meta_add(m, n, "train.graph_file", NULL, 0, "%s", r->o.graph);
    n = meta_add(m, n, "train.epoch", NULL, 0, "%lld", (long long)r->epoch);
    n = meta_add(m, n, "train.step_in_epoch", NULL, 0, "%lld",
                 (long long)r->in_epoch);
    n = meta_add(m, n, "train.step", NULL, 0, "%lld", (long long)r->step);
    /* The shuffle is a pure function of (seed, epoch): that is its state. */
    n = meta_add(m, n, "train.shuffle", NULL, 0,
                 "splitmix64 fisher-yates, seed %" PRIu64 ", epoch %lld",
                 r->o.seed, (long long)r->epoch);
    if (r->o.init_from != NULL)
        n = meta_add(m, n, "train.init_from", NULL, 0, "%s", r->o.init_from);
    /* A MoCo graph's classifier: --init-from expects this checkpoint
     * there. */
    if (r->mode == TRAIN_MODE_MOCO &&
        smlp_graph_meta(r->eg, "backbone") != NULL)
        n = meta_add(m, n, "train.backbone", NULL, 0, "%s",
                     smlp_graph_meta(r->eg, "backbone"));
    n = meta_add(m, n, "train.best_acc", NULL, 0, "%.17g", r->best_acc);
    n = meta_add(m, n, "train.test_acc", NULL, 0, "%.17g", r->last_acc);
    /* The running sums of the epoch (once it has begun) and of the open
     * metrics row: a resumed run prints and writes what one not stopped
     * does.  Loss sum, accuracy sum, steps. */
    n = meta_add(m, n, "train.epoch_sums", NULL, 0, "%.17g %.17g %lld",
                 open_ep ? r->ep_loss : 0.0, open_ep ? r->ep_acc : 0.0,
                 open_ep ? (long long)r->ep_steps : 0LL);
    n = meta_add(m, n, "train.row_sums", NULL, 0, "%.17g %.17g %lld",
                 r->row_loss, r->row_acc, (long long)r->row_steps);
    for (i = 0; i < n; i++) {
        keys[i] = m[i].key;
        values[i] = m[i].value;
    }
    if (r->moe.n_layers > 0) {
        moe = train_moe_sums(&r->moe, open_ep);
        if (moe == NULL) {
            train_fail("out of memory");
            return -1;
        }
        keys[n] = "train.moe_sums";
        values[n++] = moe;
    }
    if (smlp_checkpoint_save(r->ts, r->opt, r->o.out, keys, values, n) !=
        SMLP_OK) {
        train_fail("%s", smlp_session_errmsg(r->ts));
        rc = -1;
    }
    free(moe);
    r->saved |= rc == 0;
    return rc;
}

/* "LOSS ACC STEPS" of train.epoch_sums or train.row_sums; absent (older
 * checkpoints): zeros.  0 or -1 after train_fail. */
static int
meta_sums(struct train_run *r, const char *key, double *loss, double *acc,
          int64_t *steps)
{
    const char *v = smlp_checkpoint_meta(r->ts, key);
    char *end;

    int ok;

    *loss = *acc = 0.0;
    *steps = 0;
    if (v == NULL)
        return 0;
    /* Three fields, each followed by what the writer puts there. */
    *loss = strtod(v, &end);
    ok = end != v && *end == ' ';
    if (ok) {
        v = end + 1;
        *acc = strtod(v, &end);
        ok = end != v && *end == ' ';
    }
    if (ok) {
        v = end + 1;
        *steps = strtoll(v, &end, 10);
        ok = end != v && *end == '\0' && *steps >= 0;
    }
    if (!ok) {
        train_fail("--resume %s: metadata '%s' is not 'loss acc steps'",
                   r->o.resume, key);
        return -1;
    }
    return 0;
}

static int
meta_int(struct train_run *r, const char *key, int64_t *out)
{
    const char *v = smlp_checkpoint_meta(r->ts, key);
    char *end;

    if (v == NULL || (*out = strtoll(v, &end, 10), *end != '\0')) {
        train_fail("--resume %s: metadata '%s' is missing or not a number",
                   r->o.resume, key);
        return -1;
    }
    return 0;
}

int
train_ckpt_resume(struct train_run *r)
{
    struct meta_item m[MAX_META];
    const char *v;
    int n, i, rc;

    rc = smlp_checkpoint_load(r->ts, r->opt, r->o.resume);
    if (rc != SMLP_OK) {
        const char *e = smlp_session_errmsg(r->ts);
        size_t len = strlen(r->o.resume);

        /* The message names the file already when it starts with it. */
        if (strncmp(e, r->o.resume, len) == 0 && e[len] == ':')
            train_fail("--resume %s%s", e,
                       rc == SMLP_ENOENT ? " (a checkpoint of another "
                                           "graph?)" : "");
        else
            train_fail("--resume %s: %s%s", r->o.resume, e,
                       rc == SMLP_ENOENT ? " (a checkpoint of another "
                                           "graph?)" : "");
        return -1;
    }
    /* A run started with --init-from keeps saying so (--resume excludes
     * --init-from); the string lives as long as the session. */
    if (r->o.init_from == NULL)
        r->o.init_from = smlp_checkpoint_meta(r->ts, "train.init_from");
    if (smlp_checkpoint_meta(r->ts, "train.format") == NULL) {
        train_fail("--resume %s: not a checkpoint of smlp-train (no train.* "
                   "metadata); --weights starts from its parameters",
                   r->o.resume);
        return -1;
    }
    n = meta_options(r, m);
    for (i = 0; i < n; i++) {
        v = smlp_checkpoint_meta(r->ts, m[i].key);
        if (v != NULL && strcmp(v, m[i].value) == 0)
            continue;
        /* Checkpoints from before the modes trained classifiers, and from
         * before --recompute and --device. */
        if (v == NULL && strcmp(m[i].key, "train.mode") == 0 &&
            r->mode == TRAIN_MODE_CLASSIFY)
            continue;
        if (v == NULL && strcmp(m[i].key, "train.recompute") == 0 &&
            !r->o.recompute)
            continue;
        if (v == NULL && strcmp(m[i].key, "train.device") == 0 &&
            r->o.device == SMLP_DEVICE_CPU)
            continue;
        if (v == NULL && strcmp(m[i].key, "train.ranks") == 0 &&
            train_dist_size() == 1) /* before data parallelism */
            continue;
        if (v == NULL && strcmp(m[i].key, "train.accum") == 0 &&
            r->o.accum == 1) /* before --accum */
            continue;
        if (v == NULL && m[i].soft == SOFT_EVAL) /* before 0.3.1 */
            continue;
        /* The digest decides when the checkpoint has one (a graph
         * renamed or with other metadata resumes); before 0.4.1 the
         * file's hash did. */
        if (strcmp(m[i].key, "train.graph_hash") == 0 &&
            smlp_checkpoint_meta(r->ts, "train.graph_digest") != NULL)
            continue;
        if (v == NULL && strcmp(m[i].key, "train.graph_digest") == 0)
            continue;
        if (strcmp(m[i].opt, "GRAPH") == 0) {
            train_fail("--resume %s: made from another graph than %s "
                       "(graph hash %s, this one %s)",
                       r->o.resume, r->o.graph, v ? v : "missing",
                       m[i].value);
            return -1;
        }
        if (m[i].soft == SOFT_NO) {
            train_fail("--resume %s: made with %s %s, this run has %s "
                       "(options that change the result must match)",
                       r->o.resume, m[i].opt, v ? v : "(unset)",
                       m[i].value);
            return -1;
        }
        if (m[i].soft == SOFT_EVAL)
            fprintf(stderr, "smlp-train: warning: --resume %s: %s was %s "
                            "test images, now %s: the accuracies before and "
                            "after (the best included) are of other test "
                            "sets\n",
                    r->o.resume, m[i].opt, v, m[i].value);
        else
            fprintf(stderr, "smlp-train: warning: --resume %s: %s was %s, "
                            "now %s: the schedule is recomputed, so the run "
                            "differs from one started with these options\n",
                    r->o.resume, m[i].opt, v ? v : "(unset)", m[i].value);
    }
    if (meta_int(r, "train.epoch", &r->epoch) != 0 ||
        meta_int(r, "train.step_in_epoch", &r->in_epoch) != 0 ||
        meta_int(r, "train.step", &r->step) != 0)
        return -1;
    /* smlp.step, the session's run counter that seeds the gate noise,
     * counts the steps too: the training session runs once per step and
     * micro-batch (--accum). */
    v = smlp_checkpoint_meta(r->ts, "smlp.step");
    if (r->in_epoch < 0 || r->in_epoch >= r->spe || r->epoch < 0 ||
        r->step != r->epoch * r->spe + r->in_epoch ||
        smlp_optim_steps(r->opt) != r->step || v == NULL ||
        strtoll(v, NULL, 10) != r->step * r->o.accum) {
        train_fail("--resume %s: inconsistent position (epoch %lld, step "
                   "%lld of the epoch, step %lld, optimizer steps %lld, "
                   "session runs %s)",
                   r->o.resume,
                   (long long)r->epoch, (long long)r->in_epoch,
                   (long long)r->step, (long long)smlp_optim_steps(r->opt),
                   v != NULL ? v : "missing");
        return -1;
    }
    v = smlp_checkpoint_meta(r->ts, "train.best_acc");
    r->best_acc = v ? strtod(v, NULL) : 0.0;
    v = smlp_checkpoint_meta(r->ts, "train.test_acc");
    r->last_acc = v ? strtod(v, NULL) : NAN;
    if (meta_sums(r, "train.epoch_sums", &r->ep_loss, &r->ep_acc,
                  &r->ep_steps) != 0 ||
        meta_sums(r, "train.row_sums", &r->row_loss, &r->row_acc,
                  &r->row_steps) != 0)
        return -1;
    if (r->ep_steps > r->in_epoch || r->row_steps > r->step) {
        train_fail("--resume %s: metadata 'train.epoch_sums' or "
                   "'train.row_sums' counts more steps (%lld, %lld) than "
                   "the run made (%lld in the epoch, %lld in all)",
                   r->o.resume, (long long)r->ep_steps,
                   (long long)r->row_steps, (long long)r->in_epoch,
                   (long long)r->step);
        return -1;
    }
    /* A probe's cached run counts no routing (its session has no gate):
     * the sums of a run without the cache are left. */
    v = smlp_checkpoint_meta(r->ts, "train.moe_sums");
    if (v != NULL && !r->cache.on && train_moe_set_sums(&r->moe, v) != 0) {
        train_fail("--resume %s: metadata 'train.moe_sums' does not fit the "
                   "MoE layers of %s", r->o.resume, r->o.graph);
        return -1;
    }
    return 0;
}


/* "[2, 3]" into buf. */
static const char *
shape_str(const int64_t *shape, int rank, char *buf, size_t len)
{
    size_t n = 0;
    int d;

    n += (size_t)snprintf(buf, len, "[");
    for (d = 0; d < rank && n < len; d++)
        n += (size_t)snprintf(buf + n, len - n, "%s%lld", d ? ", " : "",
                              (long long)shape[d]);
    if (n < len)
        snprintf(buf + n, len - n, "]");
    return buf;
}

/* Copies file entry e into the training session's tensor `name`; 1 when
 * copied, 0 when the file lacks it, -1 after train_fail. */
static int
init_one(struct train_run *r, const char *name,
         const struct smlp__st_entry *e)
{
    struct smlp_tensor t;
    char a[160], b[160];
    int same, d;

    if (e == NULL)
        return 0;
    if (train_tensor(r->ts, name, &t) != 0)
        return -1;
    same = e->dtype == t.dtype && e->rank == t.rank;
    for (d = 0; same && d < e->rank; d++)
        same = e->shape[d] == t.shape[d];
    if (!same) {
        train_fail("--init-from %s: tensor '%s' is %s %s, the graph's is %s "
                   "%s (another backbone?)",
                   r->o.init_from, name, e->dtype_name,
                   shape_str(e->shape, e->rank, a, sizeof(a)),
                   t.dtype == SMLP_DTYPE_F32 ? "F32" : "I32",
                   shape_str(t.shape, t.rank, b, sizeof(b)));
        return -1;
    }
    if (t.dtype == SMLP_DTYPE_F32) {
        int64_t k, n = (int64_t)(e->nbytes / sizeof(float));
        float v;

        /* memcpy: data in the file's bytes need not be aligned. */
        for (k = 0; k < n; k++) {
            memcpy(&v, (const char *)e->data + k * sizeof(float), sizeof(v));
            if (!isfinite(v)) {
                train_fail("--init-from %s: tensor '%s': element %lld is %s",
                           r->o.init_from, name, (long long)k,
                           isnan(v) ? "NaN" : "infinite");
                return -1;
            }
        }
    }
    memcpy(t.data, e->data, e->nbytes);
    (void)smlp_session_tensor(r->ts, name, &t); /* device copy, if any */
    return 1;
}

/* Warns when --init-from's file f was made with another graph than
 * this one or than its MoCo pre-training graph (train.backbone; older
 * files: the name moco_GRAPH): loading by name is meant for those. */
static void
init_check_graph(struct train_run *r, const struct smlp__st_file *f)
{
    const char *file = smlp__st_meta(f, "smlp.graph");
    const char *backbone = smlp__st_meta(f, "train.backbone");
    const char *name = smlp_graph_name(r->eg);

    if (file == NULL || strcmp(file, name) == 0 ||
        (backbone != NULL && strcmp(backbone, name) == 0) ||
        (backbone == NULL && strncmp(file, "moco_", 5) == 0 &&
         strcmp(file + 5, name) == 0))
        return;
    fprintf(stderr, "smlp-train: warning: --init-from %s: a checkpoint of "
                    "graph '%s'%s%s%s, and this graph is '%s': only the "
                    "tensors with the same names and shapes load\n",
            r->o.init_from, file, backbone ? " (backbone '" : "",
            backbone ? backbone : "", backbone ? "')" : "", name);
}

int
train_init_from(struct train_run *r)
{
    struct smlp__st_file *f = NULL;
    char err[1024], kept[256] = "";
    int kind, i, rc = -1, got, n_kept = 0, params = 0, loaded = 0;
    int states = 0, twins = 0;

    if (smlp__st_open(r->o.init_from, &f, err, sizeof(err)) != SMLP_OK) {
        train_fail("--init-from %s", err);
        return -1;
    }
    init_check_graph(r, f);
    for (kind = 1; kind <= 2; kind++)
        for (i = 0; i < smlp_session_tensor_count(r->ts, kind); i++) {
            const char *name = smlp_session_tensor_name(r->ts, kind, i);

            got = init_one(r, name, smlp__st_find(f, name));
            if (got < 0)
                goto out;
            if (kind == 1) {
                params++;
                loaded += got;
            } else {
                states += got;
            }
            if (got || kind != 1)
                continue;
            if (n_kept++ < 4)
                snprintf(kept + strlen(kept), sizeof(kept) - strlen(kept),
                         "%s%s", n_kept > 1 ? ", " : "", name);
            else if (n_kept == 5)
                snprintf(kept + strlen(kept), sizeof(kept) - strlen(kept),
                         ", ...");
        }
    if (loaded == 0) {
        train_fail("--init-from %s: holds none of the %d parameters of %s "
                   "(a checkpoint of another graph?)",
                   r->o.init_from, params, r->o.graph);
        goto out;
    }
    /* MoCo: a momentum twin the file lacks starts equal to its parameter,
     * as the graph's initializers make it. */
    for (i = 0; r->mode == TRAIN_MODE_MOCO &&
                i < smlp_session_tensor_count(r->ts, 2); i++) {
        const char *name = smlp_session_tensor_name(r->ts, 2, i);
        struct smlp_tensor k, q;

        if (strncmp(name, "momentum.", 9) != 0 ||
            smlp__st_find(f, name) != NULL ||
            smlp__st_find(f, name + 9) == NULL)
            continue;
        if (train_tensor(r->ts, name, &k) != 0 ||
            train_tensor(r->ts, name + 9, &q) != 0)
            goto out;
        memcpy(k.data, q.data, (size_t)smlp_tensor_numel(&q) * 4);
        (void)smlp_session_tensor(r->ts, name, &k);
        twins++;
    }
    printf("--init-from %s: %d of %d parameters loaded", r->o.init_from,
           loaded, params);
    if (states > 0)
        printf(", %d state tensors", states);
    if (twins > 0)
        printf(", %d momentum twins set to their parameters", twins);
    if (n_kept > 0)
        printf("; %d keep the graph's initial values (%s)", n_kept, kept);
    printf("\n");
    fflush(stdout);
    rc = 0;
out:
    smlp__st_close(f);
    return rc;
}
