/*
 * check_optim_train.c - optimizers on a session (runtime/optim.c) and
 * checkpoints with optimizer state: steps against the update rules,
 * frozen parameters, non-finite gradients, creation errors, resume bit
 * for bit.  These need the backward engine (smlp_session_backward,
 * smlp_session_grad) and the backward kernels of core.linear and
 * core.softmax_cross_entropy.
 */
#include "optimfx.h"

/* ---- training: optimizers on a session (needs the backward engine) ----- */

struct trainer {
    smlp_session_t *s;
    smlp_optim_t *opt;
};

static void
trainer_open(struct fixture *fx, struct trainer *tr,
             const struct smlp_optim_opts *o, const char *const *frozen)
{
    struct smlp_error err;

    tr->s = session(fx, "loss", frozen);
    tr->opt = smlp_optim_create(tr->s, o, &err);
    ck_assert_msg(tr->opt != NULL, "%s", err.msg);
}

static void
trainer_close(struct trainer *tr)
{
    smlp_optim_destroy(tr->opt);
    smlp_session_destroy(tr->s);
}

/* One training step with lr from the schedule; returns the grad norm. */
static double
train_step(struct trainer *tr, double lr)
{
    double norm = -1;

    ck_assert_int_eq(smlp_session_run(tr->s), SMLP_OK);
    ck_assert_msg(smlp_session_backward(tr->s) == SMLP_OK, "%s",
                  smlp_session_errmsg(tr->s));
    ck_assert_msg(smlp_optim_step(tr->opt, lr, &norm) == SMLP_OK, "%s",
                  smlp_session_errmsg(tr->s));
    return norm;
}

static float *
grad(smlp_session_t *s, const char *name)
{
    struct smlp_tensor t;

    ck_assert_msg(smlp_session_grad(s, name, &t) == SMLP_OK, "%s",
                  smlp_session_errmsg(s));
    return t.data;
}

/* The session's step applies the update rules to its parameters: W with
 * weight decay, b without, the norm over both. */
START_TEST(test_optim_session_step)
{
    struct smlp_optim_opts o;
    struct fixture fx;
    struct trainer tr;
    float W[12], b[3], gW[12], gb[3], mW[12] = {0}, vW[12] = {0},
          mb[3] = {0}, vb[3] = {0};
    double norm = -1;
    int kind;

    fixture_open(&fx);
    for (kind = 0; kind < 2; kind++) {
        smlp_optim_opts_init(&o);
        o.kind = kind;
        o.weight_decay = 0.1;
        trainer_open(&fx, &tr, &o, NULL);
        memset(mW, 0, sizeof(mW));
        memset(vW, 0, sizeof(vW));
        memset(mb, 0, sizeof(mb));
        memset(vb, 0, sizeof(vb));
        ck_assert_int_eq(smlp_optim_steps(tr.opt), 0);
        ck_assert_int_eq(smlp_session_run(tr.s), SMLP_OK);
        ck_assert_int_eq(smlp_session_backward(tr.s), SMLP_OK);
        memcpy(W, data(tr.s, "W"), sizeof(W));
        memcpy(b, data(tr.s, "b"), sizeof(b));
        memcpy(gW, grad(tr.s, "W"), sizeof(gW));
        memcpy(gb, grad(tr.s, "b"), sizeof(gb));
        ck_assert_int_eq(smlp_optim_step(tr.opt, 0.01, &norm), SMLP_OK);
        ck_assert_int_eq(smlp_optim_steps(tr.opt), 1);
        ck_assert_double_eq(norm, sqrt(smlp__sumsq(gW, 12) +
                                       smlp__sumsq(gb, 3)));
        if (kind == SMLP_OPTIM_ADAMW) {
            smlp__adamw_update(W, gW, mW, vW, 12, 0.01, 0.1, 0.9, 0.999,
                               1e-8, 1);
            smlp__adamw_update(b, gb, mb, vb, 3, 0.01, 0.0, 0.9, 0.999, 1e-8,
                               1);
        } else {
            smlp__sgd_update(W, gW, mW, 12, 0.01, 0.1, 0.9, 0, 1);
            smlp__sgd_update(b, gb, mb, 3, 0.01, 0.0, 0.9, 0, 1);
        }
        ck_assert_mem_eq(data(tr.s, "W"), W, sizeof(W));
        ck_assert_mem_eq(data(tr.s, "b"), b, sizeof(b));
        trainer_close(&tr);
    }
    fixture_close(&fx);
}
END_TEST

START_TEST(test_optim_session_frozen)
{
    static const char *const frozen[] = {"b", NULL};
    struct fixture fx;
    struct trainer tr;
    struct smlp_tensor t;
    float b[3], W[12];

    fixture_open(&fx);
    trainer_open(&fx, &tr, NULL, frozen);
    memcpy(b, data(tr.s, "b"), sizeof(b));
    memcpy(W, data(tr.s, "W"), sizeof(W));
    train_step(&tr, 0.1);
    ck_assert_mem_eq(data(tr.s, "b"), b, sizeof(b));
    ck_assert(memcmp(data(tr.s, "W"), W, sizeof(W)) != 0);
    ck_assert_int_eq(smlp_session_grad(tr.s, "b", &t), SMLP_EINVAL);
    trainer_close(&tr);
    fixture_close(&fx);
}
END_TEST

START_TEST(test_optim_session_nonfinite)
{
    struct fixture fx;
    struct trainer tr;
    struct snap before;
    double norm = 0;

    fixture_open(&fx);
    trainer_open(&fx, &tr, NULL, NULL);
    train_step(&tr, 0.01);
    ck_assert_int_eq(smlp_session_run(tr.s), SMLP_OK);
    ck_assert_int_eq(smlp_session_backward(tr.s), SMLP_OK);
    grad(tr.s, "b")[2] = NAN;
    snap_take(tr.s, &before);
    ck_assert_int_eq(smlp_optim_step(tr.opt, 0.01, &norm), SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(tr.s),
                       "the gradient of parameter 'b' is not finite "
                       "(element 2 is NaN): no parameter was updated");
    ck_assert(!isfinite(norm));
    snap_expect(tr.s, &before);
    ck_assert_int_eq(smlp_optim_steps(tr.opt), 1);
    /* An infinity is named so (the refused step left the gradients). */
    grad(tr.s, "b")[2] = 0.0f;
    grad(tr.s, "W")[7] = -INFINITY;
    ck_assert_int_eq(smlp_optim_step(tr.opt, 0.01, &norm), SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(tr.s),
                       "the gradient of parameter 'W' is not finite "
                       "(element 7 is infinite)");
    snap_expect(tr.s, &before);
    ck_assert_int_eq(smlp_optim_step(tr.opt, NAN, NULL), SMLP_EINVAL);
    ck_assert_int_eq(smlp_optim_step(tr.opt, INFINITY, NULL), SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(tr.s),
                       "learning rate inf is not a finite number >= 0");
    ck_assert_int_eq(smlp_optim_step(tr.opt, -1.0, NULL), SMLP_EINVAL);
    trainer_close(&tr);
    fixture_close(&fx);
}
END_TEST

/* A step needs a backward of its own: before any backward, and a second
 * step on the same gradients, are refused with nothing changed (the
 * parameters, the step count, and the moments: the run that follows
 * matches one that never saw the refused steps, bit for bit). */
START_TEST(test_optim_step_needs_backward)
{
    struct fixture fx;
    struct trainer a, b;
    struct snap before;
    double norm = -1;

    fixture_open(&fx);
    trainer_open(&fx, &a, NULL, NULL);
    trainer_open(&fx, &b, NULL, NULL);
    snap_take(a.s, &before);
    ck_assert_int_eq(smlp_optim_step(a.opt, 0.01, &norm), SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(a.s),
                       "no backward has run yet: each smlp_optim_step "
                       "needs a successful smlp_session_backward of its own "
                       "before it; nothing was updated");
    snap_expect(a.s, &before);
    ck_assert_int_eq(smlp_optim_steps(a.opt), 0);
    /* A run alone is not enough. */
    ck_assert_int_eq(smlp_session_run(a.s), SMLP_OK);
    ck_assert_int_eq(smlp_optim_step(a.opt, 0.01, NULL), SMLP_EINVAL);
    ck_assert_int_eq(smlp_session_backward(a.s), SMLP_OK);
    ck_assert_int_eq(smlp_optim_step(a.opt, 0.01, NULL), SMLP_OK);
    train_step(&b, 0.01);

    snap_take(a.s, &before);
    ck_assert_int_eq(smlp_optim_step(a.opt, 0.01, NULL), SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(a.s),
                       "no backward since the last optimizer step");
    snap_expect(a.s, &before);
    ck_assert_int_eq(smlp_optim_steps(a.opt), 1);
    /* Also after a forward: the gradients are still the old ones. */
    ck_assert_int_eq(smlp_session_run(a.s), SMLP_OK);
    ck_assert_int_eq(smlp_optim_step(a.opt, 0.01, NULL), SMLP_EINVAL);
    snap_expect(a.s, &before);

    /* A forward between the backward and the step is fine. */
    ck_assert_int_eq(smlp_session_backward(a.s), SMLP_OK);
    ck_assert_int_eq(smlp_session_run(a.s), SMLP_OK);
    ck_assert_int_eq(smlp_optim_step(a.opt, 0.01, NULL), SMLP_OK);
    train_step(&b, 0.01);
    ck_assert_int_eq(smlp_optim_steps(a.opt), 2);
    snap_take(b.s, &before);
    snap_expect(a.s, &before);

    /* A checkpoint load after a backward: those gradients belong to the
     * parameters before the load, so the next step needs a new one. */
    {
        char path[600];

        snprintf(path, sizeof(path), "%s/ck.safetensors", tu_tmpdir());
        ck_assert_int_eq(
            smlp_checkpoint_save(a.s, a.opt, path, NULL, NULL, 0), SMLP_OK);
        ck_assert_int_eq(smlp_session_backward(a.s), SMLP_OK);
        ck_assert_int_eq(smlp_checkpoint_load(a.s, a.opt, path), SMLP_OK);
        ck_assert_int_eq(smlp_optim_step(a.opt, 0.01, NULL), SMLP_EINVAL);
        tu_assert_contains(smlp_session_errmsg(a.s),
                           "no backward since the last failed one or "
                           "checkpoint load");
        snap_expect(a.s, &before);
    }
    trainer_close(&a);
    trainer_close(&b);
    fixture_close(&fx);
}
END_TEST

START_TEST(test_optim_create_errors)
{
    struct smlp_optim_opts o;
    struct smlp_error err;
    struct fixture fx;
    smlp_session_t *s;

    fixture_open(&fx);
    s = session(&fx, NULL, NULL);
    ck_assert_ptr_null(smlp_optim_create(s, NULL, &err));
    ck_assert_int_eq(err.status, SMLP_EINVAL);
    tu_assert_contains(err.msg, "needs a session with training = 1 and a "
                                "loss");
    smlp_session_destroy(s);
    s = session(&fx, "loss", NULL);
    smlp_optim_opts_init(&o);
    o.kind = 7;
    ck_assert_ptr_null(smlp_optim_create(s, &o, &err));
    tu_assert_contains(err.msg, "optimizer kind 7 is unknown");
    smlp_optim_opts_init(&o);
    o.beta2 = 1.0;
    ck_assert_ptr_null(smlp_optim_create(s, &o, &err));
    tu_assert_contains(err.msg, "betas (0.9, 1) are outside [0, 1)");
    /* The edges of the open intervals: 1 itself is out (a momentum or
     * beta of 1 never forgets: the update grows without bound). */
    smlp_optim_opts_init(&o);
    o.beta1 = 1.0;
    ck_assert_ptr_null(smlp_optim_create(s, &o, &err));
    tu_assert_contains(err.msg, "betas (1, 0.999) are outside [0, 1)");
    smlp_optim_opts_init(&o);
    o.kind = SMLP_OPTIM_SGD;
    o.momentum = 1.0;
    ck_assert_ptr_null(smlp_optim_create(s, &o, &err));
    tu_assert_contains(err.msg, "momentum 1 is outside [0, 1)");
    smlp_optim_opts_init(&o);
    o.kind = SMLP_OPTIM_SGD;
    o.momentum = 0;
    o.nesterov = 1;
    ck_assert_ptr_null(smlp_optim_create(s, &o, &err));
    tu_assert_contains(err.msg, "Nesterov momentum needs a momentum > 0");
    smlp_optim_opts_init(&o);
    o.weight_decay = -0.1;
    ck_assert_ptr_null(smlp_optim_create(s, &o, &err));
    tu_assert_contains(err.msg, "weight decay -0.1 is not a finite number");
    smlp_optim_opts_init(&o);
    o.clip_norm = -1;
    ck_assert_ptr_null(smlp_optim_create(s, &o, &err));
    tu_assert_contains(err.msg, "clip norm -1");
    /* Infinities are no finite numbers (NaN fails every comparison). */
    smlp_optim_opts_init(&o);
    o.eps = INFINITY;
    ck_assert_ptr_null(smlp_optim_create(s, &o, &err));
    tu_assert_contains(err.msg, "eps inf is not a finite number >= 0");
    smlp_optim_opts_init(&o);
    o.weight_decay = INFINITY;
    ck_assert_ptr_null(smlp_optim_create(s, &o, &err));
    tu_assert_contains(err.msg, "weight decay inf is not a finite number");
    smlp_optim_opts_init(&o);
    o.clip_norm = INFINITY;
    ck_assert_ptr_null(smlp_optim_create(s, &o, &err));
    tu_assert_contains(err.msg, "clip norm inf is not a finite number");
    /* The closed ends are in: beta1 = 0 (no averaging of the gradient),
     * beta2 = 0, eps = 0, and for SGD momentum 0 and decay 0. */
    {
        static const double edges[][3] = {
            {0.0, 0.999, 1e-8}, {0.9, 0.0, 1e-8}, {0.9, 0.999, 0.0}};
        smlp_optim_t *opt;
        int k;

        for (k = 0; k < 3; k++) {
            smlp_optim_opts_init(&o);
            o.beta1 = edges[k][0];
            o.beta2 = edges[k][1];
            o.eps = edges[k][2];
            opt = smlp_optim_create(s, &o, &err);
            ck_assert_msg(opt != NULL, "betas (%g, %g), eps %g: %s",
                          o.beta1, o.beta2, o.eps, err.msg);
            smlp_optim_destroy(opt);
        }
        smlp_optim_opts_init(&o);
        o.kind = SMLP_OPTIM_SGD;
        o.momentum = 0;
        o.weight_decay = 0;
        opt = smlp_optim_create(s, &o, &err);
        ck_assert_msg(opt != NULL, "%s", err.msg);
        smlp_optim_destroy(opt);
    }
    smlp_session_destroy(s);
    fixture_close(&fx);
}
END_TEST

/* A plan_only session has no memory: no optimizer, no checkpoint saved
 * from it or loaded into it (and no file written). */
START_TEST(test_optim_plan_only_refused)
{
    struct smlp_session_opts so;
    struct smlp_error err;
    struct fixture fx;
    smlp_session_t *s;
    char path[600];

    fixture_open(&fx);
    smlp_session_opts_init(&so);
    so.batch = 2;
    so.threads = 1;
    so.training = 1;
    so.loss = "loss";
    so.plan_only = 1;
    s = smlp_session_create(fx.g, fx.reg, &so, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    ck_assert_ptr_null(smlp_optim_create(s, NULL, &err));
    ck_assert_int_eq(err.status, SMLP_EINVAL);
    tu_assert_contains(err.msg, "the session was planned only and cannot "
                                "train");
    snprintf(path, sizeof(path), "%s/plan_only.safetensors", fx.dir);
    ck_assert_int_eq(smlp_checkpoint_save(s, NULL, path, NULL, NULL, 0),
                     SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(s), "was planned only");
    ck_assert_int_eq(access(path, F_OK), -1);
    smlp_session_destroy(s);
    /* A good checkpoint of the same graph is refused too. */
    s = session(&fx, NULL, NULL);
    ck_assert_int_eq(smlp_checkpoint_save(s, NULL, path, NULL, NULL, 0),
                     SMLP_OK);
    smlp_session_destroy(s);
    s = smlp_session_create(fx.g, fx.reg, &so, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    ck_assert_int_eq(smlp_checkpoint_load(s, NULL, path), SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(s), "was planned only");
    smlp_session_destroy(s);
    fixture_close(&fx);
}
END_TEST

/*
 * Train 3 steps, save, train 3 more; a new session and optimizer that load
 * the checkpoint and train the same 3 steps end bit-identical, and the
 * checkpoint survives a load + save unchanged.
 */
START_TEST(test_checkpoint_resume_bit_identical)
{
    static const char *const keys[] = {"epoch"};
    static const char *const vals[] = {"1"};
    struct smlp_optim_opts o;
    struct fixture fx;
    struct trainer a, b;
    struct snap sa;
    char p1[600], p2[600];
    double na, nb;
    int kind, t;

    fixture_open(&fx);
    snprintf(p1, sizeof(p1), "%s/a.safetensors", fx.dir);
    snprintf(p2, sizeof(p2), "%s/b.safetensors", fx.dir);
    for (kind = 0; kind < 2; kind++) {
        smlp_optim_opts_init(&o);
        o.kind = kind;
        o.nesterov = kind == SMLP_OPTIM_SGD;
        o.clip_norm = 0.5;
        trainer_open(&fx, &a, &o, NULL);
        for (t = 0; t < 3; t++)
            train_step(&a, smlp_lr_cosine(0.05, 0.001, t, 2, 6));
        ck_assert_msg(smlp_checkpoint_save(a.s, a.opt, p1, keys, vals, 1) ==
                          SMLP_OK,
                      "%s", smlp_session_errmsg(a.s));
        ck_assert_str_eq(file_meta(p1, "smlp.optim.kind"),
                         kind ? "adamw" : "sgd");
        ck_assert_str_eq(file_meta(p1, "smlp.optim.steps"), "3");
        ck_assert_str_eq(file_meta(p1, "epoch"), "1");

        trainer_open(&fx, &b, &o, NULL);
        ck_assert_msg(smlp_checkpoint_load(b.s, b.opt, p1) == SMLP_OK, "%s",
                      smlp_session_errmsg(b.s));
        ck_assert_int_eq(smlp_optim_steps(b.opt), 3);
        ck_assert_int_eq(smlp_checkpoint_save(b.s, b.opt, p2, keys, vals, 1),
                         SMLP_OK);
        files_equal(p1, p2);
        for (t = 3; t < 6; t++) {
            na = train_step(&a, smlp_lr_cosine(0.05, 0.001, t, 2, 6));
            nb = train_step(&b, smlp_lr_cosine(0.05, 0.001, t, 2, 6));
            ck_assert_double_eq(na, nb);
        }
        snap_take(a.s, &sa);
        snap_expect(b.s, &sa);
        ck_assert_int_eq(smlp_checkpoint_save(a.s, a.opt, p1, keys, vals, 1),
                         SMLP_OK);
        ck_assert_int_eq(smlp_checkpoint_save(b.s, b.opt, p2, keys, vals, 1),
                         SMLP_OK);
        files_equal(p1, p2);
        ck_assert_str_eq(file_meta(p1, "smlp.step"), "6");
        trainer_close(&a);
        trainer_close(&b);
    }
    fixture_close(&fx);
}
END_TEST

/*
 * The step counter matters: with a noisy gate (moe.gate.topk, noise seeded
 * by the session seed, the node and the step) the combine weights are the
 * logits of the loss, so each step's gradient depends on the step's
 * noise.  A run resumed from a checkpoint continues bit-identically; one
 * whose session ran once more after the load (one step of noise ahead)
 * does not.
 */
static const char *graph_noisy =
    "{\"name\": \"noisy\", \"plugins\": [\"core\", \"moe\"], \"tensors\": ["
    "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 4]},"
    "{\"name\": \"labels\", \"dtype\": \"I32\", \"kind\": \"Input\","
    " \"shape\": [-1]},"
    "{\"name\": \"Wg\", \"kind\": \"Parameter\", \"shape\": [3, 4],"
    " \"init\": {\"kind\": \"Uniform\", \"a\": -0.5, \"b\": 0.5,"
    " \"seed\": 5}},"
    "{\"name\": \"expert\", \"dtype\": \"I32\"},"
    "{\"name\": \"slot\", \"dtype\": \"I32\"},"
    "{\"name\": \"weight\"},"
    "{\"name\": \"slot_item\", \"dtype\": \"I32\"},"
    "{\"name\": \"aux\"},"
    "{\"name\": \"load\", \"dtype\": \"I32\"},"
    "{\"name\": \"loss\", \"kind\": \"Output\"}],"
    "\"nodes\": ["
    "{\"name\": \"gate\", \"op\": \"moe.gate.topk\", \"inputs\": [0, 2],"
    " \"outputs\": [3, 4, 5, 6, 7, 8], \"attrs\": ["
    "{\"name\": \"k\", \"type\": \"Int\", \"i\": 2},"
    "{\"name\": \"capacity_factor\", \"type\": \"Float\", \"f\": 0},"
    "{\"name\": \"noise_std\", \"type\": \"Float\", \"f\": 3.0},"
    "{\"name\": \"aux\", \"type\": \"String\", \"s\": \"none\"}]},"
    "{\"name\": \"ce\", \"op\": \"core.softmax_cross_entropy\","
    " \"inputs\": [5, 1], \"outputs\": [9]}]}";

static smlp_session_t *
noisy_session(struct fixture *fx, smlp_graph_t *g)
{
    static const float x[8] = {0.5f, -1, 2, 0.25f, -0.75f, 1.5f, 0, 1};
    static const int32_t labels[2] = {1, 0};
    struct smlp_session_opts o;
    struct smlp_error err;
    smlp_session_t *s;

    smlp_session_opts_init(&o);
    o.batch = 2;
    o.threads = 1;
    o.seed = 5;
    o.training = 1;
    o.loss = "loss";
    s = smlp_session_create(g, fx->reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    memcpy(data(s, "x"), x, sizeof(x));
    memcpy(data(s, "labels"), labels, sizeof(labels));
    return s;
}

START_TEST(test_checkpoint_resume_noise_step)
{
    struct fixture fx;
    struct trainer a, b, c;
    struct smlp_error err;
    smlp_graph_t *g;
    float wa[12];
    char path[600];
    int t;

    fixture_open(&fx);
    tu_graph_from_json(fx.dir, "noisy", graph_noisy, path, sizeof(path));
    g = smlp_graph_load(path, &err);
    ck_assert_msg(g != NULL, "%s", err.msg);
    snprintf(path, sizeof(path), "%s/noisy.safetensors", fx.dir);
    a.s = noisy_session(&fx, g);
    a.opt = smlp_optim_create(a.s, NULL, &err);
    ck_assert_msg(a.opt != NULL, "%s", err.msg);
    for (t = 0; t < 3; t++)
        train_step(&a, 0.05);
    ck_assert_int_eq(smlp_checkpoint_save(a.s, a.opt, path, NULL, NULL, 0),
                     SMLP_OK);
    for (t = 0; t < 4; t++)
        train_step(&a, 0.05);
    memcpy(wa, data(a.s, "Wg"), sizeof(wa));

    b.s = noisy_session(&fx, g);
    b.opt = smlp_optim_create(b.s, NULL, &err);
    ck_assert_int_eq(smlp_checkpoint_load(b.s, b.opt, path), SMLP_OK);
    for (t = 0; t < 4; t++)
        train_step(&b, 0.05);
    ck_assert_mem_eq(data(b.s, "Wg"), wa, sizeof(wa));

    c.s = noisy_session(&fx, g);
    c.opt = smlp_optim_create(c.s, NULL, &err);
    ck_assert_int_eq(smlp_checkpoint_load(c.s, c.opt, path), SMLP_OK);
    ck_assert_int_eq(smlp_session_run(c.s), SMLP_OK);
    for (t = 0; t < 4; t++)
        train_step(&c, 0.05);
    ck_assert_msg(memcmp(data(c.s, "Wg"), wa, sizeof(wa)) != 0,
                  "the noise does not depend on the step: this test "
                  "cannot tell whether the step counter is restored");
    trainer_close(&a);
    trainer_close(&b);
    trainer_close(&c);
    smlp_graph_unload(g);
    fixture_close(&fx);
}
END_TEST

/* dst = src with metadata `key` set to `value` (NULL: left out), the
 * tensors unchanged; written as another program would, without
 * smlp.data_hash. */
static void
copy_with_meta(const char *src, const char *dst, const char *key,
               const char *value)
{
    const char *keys[64], *vals[64];
    struct smlp__st_file *f;
    char err[512];
    int32_t i, n = 0;

    ck_assert_msg(smlp__st_open(src, &f, err, sizeof(err)) == SMLP_OK, "%s",
                  err);
    for (i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) != 0 &&
            strcmp(f->meta_keys[i], SMLP__ST_HASH_KEY) != 0) {
            ck_assert_int_lt(n, 63);
            keys[n] = f->meta_keys[i];
            vals[n++] = f->meta_values[i];
        }
    if (value != NULL) {
        keys[n] = key;
        vals[n++] = value;
    }
    ck_assert_msg(smlp__st_write(dst, f->entries, f->n_entries, keys, vals,
                                 n, err, sizeof(err)) == SMLP_OK,
                  "%s", err);
    smlp__st_close(f);
}

START_TEST(test_checkpoint_load_optimizer_errors)
{
    struct smlp_optim_opts o;
    struct fixture fx;
    struct trainer a, sgd;
    struct snap before;
    char path[600], plain[600];

    fixture_open(&fx);
    snprintf(path, sizeof(path), "%s/adamw.safetensors", fx.dir);
    snprintf(plain, sizeof(plain), "%s/plain.safetensors", fx.dir);
    trainer_open(&fx, &a, NULL, NULL);
    train_step(&a, 0.01);
    ck_assert_int_eq(smlp_checkpoint_save(a.s, a.opt, path, NULL, NULL, 0),
                     SMLP_OK);
    ck_assert_int_eq(smlp_checkpoint_save(a.s, NULL, plain, NULL, NULL, 0),
                     SMLP_OK);
    smlp_optim_opts_init(&o);
    o.kind = SMLP_OPTIM_SGD;
    trainer_open(&fx, &sgd, &o, NULL);
    train_step(&sgd, 0.01);
    snap_take(sgd.s, &before);
    /* Another kind. */
    ck_assert_int_eq(smlp_checkpoint_load(sgd.s, sgd.opt, path),
                     SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(sgd.s), path);
    tu_assert_contains(smlp_session_errmsg(sgd.s),
                       "holds the state of optimizer 'adamw', this "
                       "optimizer is sgd");
    snap_expect(sgd.s, &before);
    ck_assert_int_eq(smlp_optim_steps(sgd.opt), 1);
    /* No optimizer state at all. */
    ck_assert_int_eq(smlp_checkpoint_load(sgd.s, sgd.opt, plain),
                     SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(sgd.s), "holds no optimizer state");
    snap_expect(sgd.s, &before);
    /* The optimizer of another session: refused both ways, the file
     * and the session left as they were. */
    ck_assert_int_eq(smlp_checkpoint_save(sgd.s, a.opt, plain, NULL, NULL,
                                          0),
                     SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(sgd.s),
                       "the optimizer belongs to another session");
    ck_assert_ptr_null(file_meta(plain, "smlp.optim.kind"));
    ck_assert_int_eq(smlp_checkpoint_load(sgd.s, a.opt, path), SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(sgd.s),
                       "the optimizer belongs to another session");
    snap_expect(sgd.s, &before);
    ck_assert_int_eq(smlp_optim_steps(a.opt), 1);
    /* Without the optimizer, the parameters of either file load. */
    ck_assert_int_eq(smlp_checkpoint_load(sgd.s, NULL, path), SMLP_OK);
    ck_assert_int_eq(smlp_optim_steps(sgd.opt), 1);
    /* An optimizer step count that is not one, or none at all. */
    {
        char edited[700];

        snprintf(edited, sizeof(edited), "%s/steps.safetensors", fx.dir);
        copy_with_meta(path, edited, "smlp.optim.steps", "1x");
        snap_take(a.s, &before);
        ck_assert_int_eq(smlp_checkpoint_load(a.s, a.opt, edited),
                         SMLP_EBADFILE);
        tu_assert_contains(smlp_session_errmsg(a.s),
                           "metadata smlp.optim.steps is '1x', not a step "
                           "count");
        copy_with_meta(path, edited, "smlp.optim.steps", NULL);
        ck_assert_int_eq(smlp_checkpoint_load(a.s, a.opt, edited),
                         SMLP_EBADFILE);
        tu_assert_contains(smlp_session_errmsg(a.s),
                           "metadata smlp.optim.steps is missing");
        snap_expect(a.s, &before);
        ck_assert_int_eq(smlp_optim_steps(a.opt), 1);
        /* The edited copy itself is sound: with a count it loads. */
        copy_with_meta(path, edited, "smlp.optim.steps", "7");
        ck_assert_int_eq(smlp_checkpoint_load(a.s, a.opt, edited), SMLP_OK);
        ck_assert_int_eq(smlp_optim_steps(a.opt), 7);
    }
    /* Same kind, other options: SGD without momentum has no buffers, so
     * the file lacks the ones SGD with momentum needs. */
    trainer_close(&sgd);
    o.momentum = 0;
    trainer_open(&fx, &sgd, &o, NULL);
    train_step(&sgd, 0.01);
    ck_assert_int_eq(smlp_checkpoint_save(sgd.s, sgd.opt, plain, NULL, NULL,
                                          0),
                     SMLP_OK);
    trainer_close(&sgd);
    o.momentum = 0.9;
    trainer_open(&fx, &sgd, &o, NULL);
    snap_take(sgd.s, &before);
    ck_assert_int_eq(smlp_checkpoint_load(sgd.s, sgd.opt, plain),
                     SMLP_ENOENT);
    tu_assert_contains(smlp_session_errmsg(sgd.s),
                       "has no tensor 'optim.momentum_buffer.W' (the sgd "
                       "optimizer, for parameter 'W', needs it)");
    snap_expect(sgd.s, &before);
    ck_assert_int_eq(smlp_optim_steps(sgd.opt), 0);
    trainer_close(&sgd);
    trainer_close(&a);
    fixture_close(&fx);
}
END_TEST

/*
 * check_finite covers the checkpoint's tensors: the graph's parameters
 * and the optimizer's state.  A checkpoint whose tensor holds a NaN in
 * its last element (b [3]: element 2; optim.exp_avg.W [3, 4]: element
 * 11) is refused by a check_finite session naming that tensor, and
 * nothing is loaded.  The file is written as another program would,
 * without smlp.data_hash (which would refuse the edited bytes first);
 * a session without check_finite loads it, so the refusal is that check.
 */
static const struct {
    const char *tensor;
    int elem, n;
} nan_cases[] = {{"b", 2, 3}, {"optim.exp_avg.W", 11, 12}};

START_TEST(test_checkpoint_load_nonfinite)
{
    const char *name = nan_cases[_i].tensor;
    const int elem = nan_cases[_i].elem;
    struct smlp__st_file *f;
    struct smlp__st_entry *e;
    struct smlp_session_opts so;
    struct smlp_error err;
    struct fixture fx;
    struct trainer a, c;
    struct snap before;
    const char *keys[64], *values[64];
    float *bad = NULL;
    char path[600], edited[600], msg[768], ebuf[512];
    int32_t i, n_meta = 0;

    fixture_open(&fx);
    snprintf(path, sizeof(path), "%s/state.safetensors", fx.dir);
    snprintf(edited, sizeof(edited), "%s/nan_state.safetensors", fx.dir);
    trainer_open(&fx, &a, NULL, NULL);
    train_step(&a, 0.01);
    ck_assert_int_eq(smlp_checkpoint_save(a.s, a.opt, path, NULL, NULL, 0),
                     SMLP_OK);
    trainer_close(&a);

    ck_assert_msg(smlp__st_open(path, &f, ebuf, sizeof(ebuf)) == SMLP_OK, "%s",
                  ebuf);
    e = malloc((size_t)f->n_entries * sizeof(*e));
    ck_assert_ptr_nonnull(e);
    for (i = 0; i < f->n_entries; i++) {
        e[i] = f->entries[i];
        if (strcmp(e[i].name, name) != 0)
            continue;
        ck_assert_uint_eq(e[i].nbytes, nan_cases[_i].n * sizeof(float));
        bad = malloc(e[i].nbytes);
        ck_assert_ptr_nonnull(bad);
        memcpy(bad, e[i].data, e[i].nbytes);
        bad[elem] = NAN;
        e[i].data = bad;
    }
    ck_assert_ptr_nonnull(bad);
    for (i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], SMLP__ST_HASH_KEY) != 0) {
            ck_assert_int_lt(n_meta, 64);
            keys[n_meta] = f->meta_keys[i];
            values[n_meta++] = f->meta_values[i];
        }
    ck_assert_msg(smlp__st_write(edited, e, f->n_entries, keys, values, n_meta,
                                 ebuf, sizeof(ebuf)) == SMLP_OK,
                  "%s", ebuf);
    smlp__st_close(f);
    free(e);
    free(bad);

    smlp_session_opts_init(&so);
    so.batch = 2;
    so.threads = 1;
    so.training = 1;
    so.loss = "loss";
    so.check_finite = 1;
    c.s = smlp_session_create(fx.g, fx.reg, &so, &err);
    ck_assert_msg(c.s != NULL, "%s", err.msg);
    c.opt = smlp_optim_create(c.s, NULL, &err);
    ck_assert_msg(c.opt != NULL, "%s", err.msg);
    snap_take(c.s, &before);
    ck_assert_int_eq(smlp_checkpoint_load(c.s, c.opt, edited), SMLP_EBADFILE);
    snprintf(msg, sizeof(msg), "%s: tensor '%s': element %d is NaN", edited,
             name, elem);
    tu_assert_contains(smlp_session_errmsg(c.s), msg);
    snap_expect(c.s, &before);
    ck_assert_int_eq(smlp_optim_steps(c.opt), 0);
    trainer_close(&c);

    trainer_open(&fx, &c, NULL, NULL); /* no check_finite: it loads */
    ck_assert_msg(smlp_checkpoint_load(c.s, c.opt, edited) == SMLP_OK, "%s",
                  smlp_session_errmsg(c.s));
    ck_assert_int_eq(smlp_optim_steps(c.opt), 1);
    trainer_close(&c);
    fixture_close(&fx);
}
END_TEST

static Suite *
optim_train_suite(void)
{
    Suite *s = suite_create("optim_train");
    TCase *tc;

    tc = tcase_create("train");
    tcase_add_test(tc, test_optim_session_step);
    tcase_add_test(tc, test_optim_session_frozen);
    tcase_add_test(tc, test_optim_session_nonfinite);
    tcase_add_test(tc, test_optim_step_needs_backward);
    tcase_add_test(tc, test_optim_create_errors);
    tcase_add_test(tc, test_optim_plan_only_refused);
    tcase_add_test(tc, test_checkpoint_resume_bit_identical);
    tcase_add_test(tc, test_checkpoint_resume_noise_step);
    tcase_add_test(tc, test_checkpoint_load_optimizer_errors);
    tcase_add_loop_test(tc, test_checkpoint_load_nonfinite, 0,
                        (int)(sizeof(nan_cases) / sizeof(nan_cases[0])));
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(optim_train_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
