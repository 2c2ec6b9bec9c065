/*
 * train_opts.c - smlp-train's command line: --help, parsing and the
 * checks that need no file.  See train_main.h.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool_opts.h"
#include "train_main.h"

void
train_usage(FILE *f)
{
    fprintf(f,
"usage: smlp-train GRAPH --out CKPT [options]\n"
"Trains a classifier graph (a .fbs file from graphs/, e.g. mixer_fmnist or\n"
"sparse_mlp_fmnist) on Fashion-MNIST.  A softmax cross-entropy loss on\n"
"`logits` (plus `aux_loss` when the graph has one) is appended to the\n"
"graph in memory.  Pixels are scaled to [0,1] and normalised with the\n"
"training set's mean and std: (x/255 - 0.2860) / 0.3530.  Each epoch ends\n"
"with the test-set accuracy and a checkpoint, written atomically.\n"
"A MoCo v3 graph (inputs view1 and view2, e.g. moco_sparse_mlp_fmnist) is\n"
"pre-trained instead: two augmented views per image (--augment moco),\n"
"its own loss, the momentum fed to its input m each step, no test\n"
"evaluation.  Then --probe or a fine-tune with --init-from CKPT.\n"
"\n"
"data\n"
"  --data fashion-mnist|DIR  the Debian package's files (default, in\n"
"                      " TRAIN_FMNIST_DIR ";\n"
"                      apt-get install " TRAIN_FMNIST_PACKAGE ") or a DIR\n"
"                      holding {train,t10k}-{images-idx3,labels-idx1}-ubyte\n"
"                      (gzip'd or not)\n"
"  --limit-train N     use the first N training images (default all)\n"
"  --limit-test N      evaluate on the first N test images (default all)\n"
"  --augment none|shift|moco  none (default); shift: each image moved\n"
"                      by up to 2 pixels each way (zero fill) and mirrored\n"
"                      with p 0.5, for supervised training; moco: random\n"
"                      resized crop, brightness/contrast, blur, solarize\n"
"                      and flip after MoCo v3, adapted to 28 x 28 grey\n"
"                      images: the two views of a MoCo graph get MoCo v3's\n"
"                      two recipes (blur p 1 / 0.1, solarize p 0 / 0.2),\n"
"                      a one-view run a recipe of its own (blur p 0.5,\n"
"                      solarize p 0.1; docs/training.md); seeded per\n"
"                      (seed, epoch, image)\n"
"training\n"
"  --epochs N          epochs (default 10)\n"
"  --batch N           images per step (default 128; a last partial batch\n"
"                      of an epoch is left out)\n"
"  --accum N           gradient accumulation: each step runs N micro-\n"
"                      batches of batch/N images (each rank's part, with\n"
"                      MPI) and averages their gradients before the one\n"
"                      update: the step of --batch in 1/N of the memory\n"
"                      (default 1; not for MoCo)\n"
"  --optimizer adamw|sgd  (default adamw)\n"
"  --lr X              peak learning rate (default 1e-3 adamw, 0.05 sgd)\n"
"  --min-lr X          learning rate at the end of the cosine (default 0)\n"
"  --warmup N|Nep      linear warm-up over N steps, or N epochs with the\n"
"                      suffix ep (default: 1 epoch or a tenth of the run,\n"
"                      whichever is shorter)\n"
"  --weight-decay X    (default 0.05 adamw, 0 sgd; never on biases/norms)\n"
"  --momentum X        SGD momentum (default 0.9)\n"
"  --clip-norm X       clip the global gradient norm (default 0: off)\n"
"  --label-smoothing X (default 0; not for MoCo, which has its own loss)\n"
"  --max-steps N       at most N steps in all: the schedule shrinks to fit\n"
"                      (quick runs, tests)\n"
"  --stop-after E      stop after epoch E (with its checkpoint), keeping\n"
"                      the schedule of --epochs; continue with --resume\n"
"  --seed N            shuffling, augmentation and gate noise (default 0)\n"
"  --weights FILE      initial parameters (safetensors; default: the\n"
"                      graph's seeded initializers)\n"
"  --init-from FILE    initial values of the tensors FILE holds (by name;\n"
"                      shapes must match), the graph's initializers for\n"
"                      the others: fine-tune or probe a classifier from a\n"
"                      pre-trained (MoCo) checkpoint, whose backbone has\n"
"                      the classifier's names (the head is not in it)\n"
"  --probe             linear probe: train head.* only, every other\n"
"                      parameter frozen (no gradient, not updated); the\n"
"                      gates route as in inference (no noise, inference\n"
"                      capacity factor, no aux loss); the features the\n"
"                      frozen backbone gives each image are computed once\n"
"                      and the head trains on them (without --augment,\n"
"                      --moe-stats or --routing-by-class)\n"
"  --no-probe-cache    --probe without that cache: the backbone runs at\n"
"                      every step (slower; the same bytes, unless the\n"
"                      backbone has a batch norm: docs/training.md)\n"
"  --eval-only         evaluate the parameters (the graph's initializers,\n"
"                      --weights, --init-from or --resume's checkpoint) on\n"
"                      the test set and exit; no --out needed.  With a\n"
"                      graph edited by smlp-graph (e.g. the gates'\n"
"                      eval_capacity_factor) it measures the edit\n"
"  --moco-m0 X         MoCo: momentum at step 0, rising to 1 on a cosine\n"
"                      over the run (default 0.99)\n"
"  --threads N         thread budget (default: all CPUs)\n"
"  --device cpu|cuda   where the steps run (default cpu); cuda: each op\n"
"                      with a CUDA kernel on the GPU, the others on the\n"
"                      CPU; the backward on the GPU when every node in it\n"
"                      has a CUDA backward (each shipped op has one:\n"
"                      written, not yet run on a GPU), else on the CPU;\n"
"                      the optimizer on the CPU (docs/gpu.md)\n"
"  --recompute         ops recompute in their backward what they would keep\n"
"                      from the forward (moe.expert_ffn's pre-activations):\n"
"                      less memory, a slower step, other last bits\n"
"  --plugin-path DIRS  colon-separated plugin directories searched first\n"
"output\n"
"  --out CKPT          checkpoint (safetensors: parameters, optimizer\n"
"                      state, metadata), written after every epoch, at the\n"
"                      end and on SIGINT/SIGTERM (exit status 130; an\n"
"                      epoch whose steps are all done is evaluated first;\n"
"                      at the run's last step the run just ends)\n"
"  --resume CKPT       continue a run from its checkpoint: the graph and\n"
"                      the options that change the result must match, and\n"
"                      the run goes on exactly as if never stopped (same\n"
"                      batches, noise and optimizer state)\n"
"  --eval-every N      also evaluate every N steps (default: per epoch;\n"
"                      not for MoCo, which has no evaluation)\n"
"  --eval-batch N      images per evaluation run (default 250)\n"
"  --log-every N       a progress line and metrics row every N steps\n"
"                      (default 50)\n"
"  --metrics F.csv     training and test curves, rewritten atomically at\n"
"                      each epoch end:\n"
"      " TRAIN_CSV_HEADER "\n"
"  --moe-stats F.csv   per MoE layer (a gate's outputs NAME.load and\n"
"                      NAME.aux) and expert, with each metrics row:\n"
"      " TRAIN_MOE_CSV_HEADER "\n"
"                      (assignments kept/dropped since the previous row)\n"
"  --routing-by-class F.csv  after each test evaluation (and with\n"
"                      --eval-only): per MoE layer, class and expert, the\n"
"                      test set's assignments and drops:\n"
"      " TRAIN_ROUTING_CSV_HEADER "\n"
"                      (--eval-only also prints the shares)\n"
"  --plot F.svg|F.png  loss and accuracy curves, as SVG or as a PNG\n"
"                      image (960 x 400), by the name's suffix\n"
"  --trace F.json      a Chrome/Perfetto trace of the last training step\n"
"                      (forward and backward, one event per node)\n"
"  --progress auto|bar|lines  a progress bar on a terminal, plain lines\n"
"                      otherwise (default auto)\n"
"  --help, --version\n"
"\n"
"Each output is a file of its own, checked before training starts.\n"
"Exit status: 0 done, 1 error, 2 usage error (options, output files), 130\n"
"interrupted (after the checkpoint).\n");
}

static int
bad_value(const char *opt, const char *s, const char *want)
{
    fprintf(stderr, "smlp-train: %s: '%s' is not %s\n", opt, s, want);
    return -1;
}

static int
parse_int(const char *opt, const char *s, int64_t min, int64_t max,
          int64_t *out)
{
    char want[96];

    if (tool_int_in(s, min, max, out) != 0) {
        snprintf(want, sizeof(want), "an integer from %lld to %lld",
                 (long long)min, (long long)max);
        return bad_value(opt, s, want);
    }
    return 0;
}

static int
parse_double(const char *opt, const char *s, double min, double max,
             double *out)
{
    char want[96];
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= min && v <= max)) {
        snprintf(want, sizeof(want), "a number from %g to %g", min, max);
        return bad_value(opt, s, want);
    }
    *out = v;
    return 0;
}

/* N (steps) or N followed by ep / epoch / epochs; N in decimal digits
 * (an epoch count may have a fraction), not strtod's hex or exponents. */
static int
parse_warmup(const char *s, struct train_opts *o)
{
    size_t digits = strspn(s, "0123456789");
    char *end;
    double v;

    if (s[digits] == '.')
        digits += 1 + strspn(s + digits + 1, "0123456789");
    errno = 0;
    v = strtod(s, &end);
    if (digits > 0 && s[0] != '.' && end == s + digits && errno == 0 &&
        v >= 0 && v <= 1e9) {
        if (strcmp(end, "ep") == 0 || strcmp(end, "epoch") == 0 ||
            strcmp(end, "epochs") == 0) {
            o->warmup = v;
            o->warmup_epochs = 1;
            o->warmup_set = 1;
            return 0;
        }
        if (*end == '\0' && v == floor(v)) {
            o->warmup = v;
            o->warmup_set = 1;
            return 0;
        }
    }
    return bad_value("--warmup", s, "a number of steps (500) or of epochs "
                                    "(2ep)");
}

static int
parse_choice(const char *opt, const char *s, const char *const *names,
             int *out)
{
    char want[128] = "";
    int i;

    for (i = 0; names[i] != NULL; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return 0;
        }
    for (i = 0; names[i] != NULL; i++)
        snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s%s",
                 i ? (names[i + 1] ? ", " : " or ") : "", names[i]);
    return bad_value(opt, s, want);
}

const char *const train_optimizer_names[] = {"sgd", "adamw", NULL};
const char *const train_augment_names[] = {"none", "moco", "shift",
                                            NULL};
const char *const train_mode_names[] = {"classify", "probe", "moco", NULL};
static const char *const progress_names[] = {"auto", "bar", "lines", NULL};
/* Indexed by enum smlp_device. */
const char *const train_device_names[] = {"cpu", "cuda", NULL};

enum {
    OPT_DATA = 256, OPT_EPOCHS, OPT_BATCH, OPT_LR, OPT_OPTIMIZER, OPT_WEIGHTS,
    OPT_OUT, OPT_RESUME, OPT_EVAL_EVERY, OPT_METRICS, OPT_PLOT, OPT_WARMUP,
    OPT_WD, OPT_CLIP, OPT_LS, OPT_SEED, OPT_THREADS, OPT_MIN_LR,
    OPT_MAX_STEPS, OPT_LIMIT_TRAIN, OPT_LIMIT_TEST, OPT_AUGMENT,
    OPT_MOMENTUM, OPT_STOP_AFTER, OPT_EVAL_BATCH, OPT_LOG_EVERY,
    OPT_PLUGIN_PATH, OPT_PROGRESS, OPT_INIT_FROM, OPT_PROBE, OPT_MOCO_M0,
    OPT_TRACE, OPT_EVAL_ONLY, OPT_RECOMPUTE, OPT_MOE_STATS, OPT_ROUTING,
    OPT_DEVICE, OPT_NO_PROBE_CACHE, OPT_ACCUM, OPT_HELP, OPT_VERSION
};

/* Parses one option with a value; -1 after a message. */
static int
parse_one(int c, const char *v, struct train_opts *o)
{
    const int64_t big = INT64_C(1) << 40;

    switch (c) {
    case OPT_DATA: o->data = v; return 0;
    case OPT_WEIGHTS: o->weights = v; return 0;
    case OPT_INIT_FROM: o->init_from = v; return 0;
    case OPT_MOCO_M0:
        o->moco_m0_set = 1;
        return parse_double("--moco-m0", v, 0, 1, &o->moco_m0);
    case OPT_OUT: o->out = v; return 0;
    case OPT_RESUME: o->resume = v; return 0;
    case OPT_METRICS: o->metrics = v; return 0;
    case OPT_MOE_STATS: o->moe_stats = v; return 0;
    case OPT_ROUTING: o->routing = v; return 0;
    case OPT_TRACE: o->trace = v; return 0;
    case OPT_PLUGIN_PATH: o->plugin_path = v; return 0;
    case OPT_PLOT:
        o->plot = v;
        if (train_plot_format(v) >= 0)
            return 0;
        return bad_value("--plot", v, "a .svg or .png file");
    case OPT_EPOCHS: return parse_int("--epochs", v, 1, 1000000, &o->epochs);
    case OPT_BATCH: return parse_int("--batch", v, 1, 1 << 20, &o->batch);
    case OPT_ACCUM: return parse_int("--accum", v, 1, 1 << 20, &o->accum);
    case OPT_EVAL_BATCH:
        return parse_int("--eval-batch", v, 1, 1 << 20, &o->eval_batch);
    case OPT_MAX_STEPS: return parse_int("--max-steps", v, 1, big,
                                         &o->max_steps);
    case OPT_STOP_AFTER: return parse_int("--stop-after", v, 1, 1000000,
                                          &o->stop_after);
    case OPT_LIMIT_TRAIN: return parse_int("--limit-train", v, 1, big,
                                           &o->limit_train);
    case OPT_LIMIT_TEST: return parse_int("--limit-test", v, 1, big,
                                          &o->limit_test);
    case OPT_EVAL_EVERY: return parse_int("--eval-every", v, 0, big,
                                          &o->eval_every);
    case OPT_LOG_EVERY: return parse_int("--log-every", v, 1, big,
                                         &o->log_every);
    case OPT_THREADS: {
        int64_t t;

        if (parse_int("--threads", v, 1, 1024, &t) != 0)
            return -1;
        o->threads = (int)t;
        return 0;
    }
    case OPT_SEED:
        if (tool_uint64_in(v, &o->seed) != 0)
            return bad_value("--seed", v, "an integer from 0 to "
                             "18446744073709551615");
        return 0;
    case OPT_LR: return parse_double("--lr", v, 1e-12, 1e3, &o->lr);
    case OPT_MIN_LR: return parse_double("--min-lr", v, 0, 1e3, &o->min_lr);
    case OPT_WD: return parse_double("--weight-decay", v, 0, 10,
                                     &o->weight_decay);
    case OPT_MOMENTUM: return parse_double("--momentum", v, 0, 0.9999,
                                           &o->momentum);
    case OPT_CLIP: return parse_double("--clip-norm", v, 0, 1e12,
                                       &o->clip_norm);
    case OPT_LS:
        o->label_smoothing_set = 1;
        return parse_double("--label-smoothing", v, 0, 1,
                            &o->label_smoothing);
    case OPT_WARMUP: return parse_warmup(v, o);
    case OPT_OPTIMIZER:
        return parse_choice("--optimizer", v, train_optimizer_names,
                            &o->optimizer);
    case OPT_AUGMENT:
        o->augment_set = 1;
        return parse_choice("--augment", v, train_augment_names,
                            &o->augment);
    case OPT_PROGRESS:
        return parse_choice("--progress", v, progress_names, &o->progress);
    case OPT_DEVICE:
        return parse_choice("--device", v, train_device_names, &o->device);
    }
    return -1;
}

int
train_parse_args(int argc, char **argv, struct train_opts *o)
{
    static const struct option longopts[] = {
        {"data", required_argument, NULL, OPT_DATA},
        {"epochs", required_argument, NULL, OPT_EPOCHS},
        {"batch", required_argument, NULL, OPT_BATCH},
        {"lr", required_argument, NULL, OPT_LR},
        {"optimizer", required_argument, NULL, OPT_OPTIMIZER},
        {"weights", required_argument, NULL, OPT_WEIGHTS},
        {"out", required_argument, NULL, OPT_OUT},
        {"resume", required_argument, NULL, OPT_RESUME},
        {"eval-every", required_argument, NULL, OPT_EVAL_EVERY},
        {"accum", required_argument, NULL, OPT_ACCUM},
        {"eval-batch", required_argument, NULL, OPT_EVAL_BATCH},
        {"log-every", required_argument, NULL, OPT_LOG_EVERY},
        {"metrics", required_argument, NULL, OPT_METRICS},
        {"moe-stats", required_argument, NULL, OPT_MOE_STATS},
        {"routing-by-class", required_argument, NULL, OPT_ROUTING},
        {"plot", required_argument, NULL, OPT_PLOT},
        {"trace", required_argument, NULL, OPT_TRACE},
        {"warmup", required_argument, NULL, OPT_WARMUP},
        {"weight-decay", required_argument, NULL, OPT_WD},
        {"momentum", required_argument, NULL, OPT_MOMENTUM},
        {"clip-norm", required_argument, NULL, OPT_CLIP},
        {"label-smoothing", required_argument, NULL, OPT_LS},
        {"seed", required_argument, NULL, OPT_SEED},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"min-lr", required_argument, NULL, OPT_MIN_LR},
        {"max-steps", required_argument, NULL, OPT_MAX_STEPS},
        {"stop-after", required_argument, NULL, OPT_STOP_AFTER},
        {"limit-train", required_argument, NULL, OPT_LIMIT_TRAIN},
        {"limit-test", required_argument, NULL, OPT_LIMIT_TEST},
        {"augment", required_argument, NULL, OPT_AUGMENT},
        {"plugin-path", required_argument, NULL, OPT_PLUGIN_PATH},
        {"progress", required_argument, NULL, OPT_PROGRESS},
        {"init-from", required_argument, NULL, OPT_INIT_FROM},
        {"probe", no_argument, NULL, OPT_PROBE},
        {"no-probe-cache", no_argument, NULL, OPT_NO_PROBE_CACHE},
        {"eval-only", no_argument, NULL, OPT_EVAL_ONLY},
        {"recompute", no_argument, NULL, OPT_RECOMPUTE},
        {"moco-m0", required_argument, NULL, OPT_MOCO_M0},
        {"device", required_argument, NULL, OPT_DEVICE},
        {"help", no_argument, NULL, OPT_HELP},
        {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0}};
    char msg[160];
    int c;

    memset(o, 0, sizeof(*o));
    o->data = "fashion-mnist";
    o->epochs = 10;
    o->batch = 128;
    o->accum = 1;
    o->eval_batch = 250;
    o->log_every = 50;
    o->optimizer = SMLP_OPTIM_ADAMW;
    o->weight_decay = NAN;
    o->momentum = NAN;
    o->lr = NAN;
    o->moco_m0 = 0.99;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        if (c == OPT_HELP) {
            train_usage(stdout);
            return TRAIN_HELP_DONE;
        }
        if (c == OPT_VERSION) {
            printf("smlp-train %s (plugin ABI %d.%d)\n",
                   smlp_version_string(), SMLP_ABI_MAJOR, SMLP_ABI_MINOR);
            return TRAIN_HELP_DONE;
        }
        if (c == OPT_PROBE) {
            o->probe = 1;
            continue;
        }
        if (c == OPT_NO_PROBE_CACHE) {
            o->no_probe_cache = 1;
            continue;
        }
        if (c == OPT_EVAL_ONLY) {
            o->eval_only = 1;
            continue;
        }
        if (c == OPT_RECOMPUTE) {
            o->recompute = 1;
            continue;
        }
        if (c == '?' || c == ':') {
            fprintf(stderr, "smlp-train: %s\n",
                    tool_bad_option(argv, ":", msg, sizeof(msg)));
            goto usage;
        }
        if (parse_one(c, optarg, o) != 0)
            goto usage;
    }
    if (optind != argc - 1) {
        fprintf(stderr, "smlp-train: %s\n",
                optind >= argc ? "no graph file given"
                               : "more than one graph file given");
        goto usage;
    }
    o->graph = argv[optind];
    if (o->eval_only && (o->out != NULL || o->metrics != NULL ||
                         o->plot != NULL || o->trace != NULL ||
                         o->moe_stats != NULL)) {
        fprintf(stderr, "smlp-train: --eval-only trains nothing: %s has "
                        "nothing to write\n",
                o->out != NULL         ? "--out"
                : o->metrics != NULL   ? "--metrics"
                : o->plot != NULL      ? "--plot"
                : o->moe_stats != NULL ? "--moe-stats"
                                       : "--trace");
        goto usage;
    }
    if (o->out == NULL && !o->eval_only) {
        fprintf(stderr, "smlp-train: --out CKPT is required (where the "
                        "checkpoints go)\n");
        goto usage;
    }
    if (o->resume != NULL && o->weights != NULL) {
        fprintf(stderr, "smlp-train: --weights and --resume exclude each "
                        "other (a checkpoint holds the weights)\n");
        goto usage;
    }
    if (o->init_from != NULL && (o->weights != NULL || o->resume != NULL)) {
        fprintf(stderr, "smlp-train: --init-from excludes --weights and "
                        "--resume\n");
        goto usage;
    }
    if (o->optimizer != SMLP_OPTIM_SGD && !isnan(o->momentum)) {
        fprintf(stderr, "smlp-train: --momentum is for --optimizer sgd\n");
        goto usage;
    }
    if (isnan(o->lr))
        o->lr = o->optimizer == SMLP_OPTIM_SGD ? 0.05 : 1e-3;
    if (o->min_lr > o->lr) {
        fprintf(stderr, "smlp-train: --min-lr %g is above --lr %g\n",
                o->min_lr, o->lr);
        goto usage;
    }
    if (o->stop_after > o->epochs) {
        fprintf(stderr, "smlp-train: --stop-after %lld is past --epochs "
                        "%lld\n", (long long)o->stop_after,
                (long long)o->epochs);
        goto usage;
    }
    return 0;
usage:
    fprintf(stderr, "Try 'smlp-train --help'.\n");
    return TRAIN_USAGE_ERR;
}
