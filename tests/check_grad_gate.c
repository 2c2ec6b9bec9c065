/*
 * check_grad_gate.c - the backward of the gates of the `moe` plugin.
 *
 * The gradients to x and Wg that flow from output 2 (weight) and from
 * output 4 (aux) are checked separately against central finite
 * differences of the f32 forward (tests/gradcheck.h, gc_spec.use_output),
 * for each learned gate, normalize none / topk, aux vmoe / switch / none,
 * training with and without noise, inference, per_image with and without
 * superclass labels, and one or several groups.
 *
 * Routing (expert, slot, slot_item) is piecewise constant, so finite
 * differences mean something only where it does not change within ±h.
 * Every check first proves that: routing_stable() reruns the forward with
 * each checked element moved by ±h (the very steps gc_check takes) and
 * requires the same expert, slot and slot_item outputs.  The inputs are
 * fixed pseudo-random values whose margins pass that test; if a change
 * to the forward moved them onto a boundary, that check fails with a
 * message naming the element rather than the gradient check failing
 * mysteriously.
 *
 * Step and tolerances: eps = 1e-3 (h = eps·max(1, |v|)), normwise
 * tolerance 1e-2 with floor 1e-3 (gradcheck.h's rule).  With logits and
 * weights O(1), the f32 rounding of the outputs (~3e-8) divided by 2h
 * gives ~2e-5, and the truncation error O(h²) ~1e-6, so the errors seen
 * are 1e-5..1e-3 (set SMLP_GC_VERBOSE=1 to print them); a wrong term
 * (a missed threshold path of the load loss, a missing 1/T, a dropped
 * choice counted) gives errors of O(0.1..1).  aux_weight is 1 in the aux
 * checks so that their gradients are well above the floor, and those
 * checks also require max |gradient| > 1e-3 (not a vacuous 0 = 0); one
 * corner below takes 0.3.
 *
 * Noise: ophost_set_seed fixes (seed, step), and the forward and the
 * backward both draw the node's noise from it, so every finite
 * difference run sees the same noise as the backward.
 *
 * Corners (found unchecked by a mutation test of the backward): both
 * outputs in one loss with the switch aux (one buffer for the clean and
 * the noisy softmax), aux_weight 0.3 for the superclass term, shapes of
 * several row and group tasks with noise and with superclass labels,
 * and normalize topk where an item's kept choices have p = 0 in f32
 * (weight 0; the backward must stay finite).
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ophost.h"
#include "gradcheck.h"

#define NGATE 6 /* outputs of a gate */
#define EPS 1e-3
#define EPS_WIDE 5e-3
#define TOL 1e-2

static struct ophost *host;

static const int use_weight[NGATE] = {0, 0, 1, 0, 0, 0};
static const int use_aux[NGATE] = {0, 0, 0, 0, 1, 0};

static void
setup(void)
{
    char err[1024];

    host = ophost_create("moe", err, sizeof(err));
    ck_assert_msg(host != NULL, "%s", err);
    ophost_set_seed(host, 1234, 5);
}

static void
teardown(void)
{
    ophost_destroy(host);
    host = NULL;
    ck_assert_int_eq(ophost_live_allocs(), 0);
}

/* ---- helpers ---------------------------------------------------------- */

/* offset + scale·U[-1, 1), a 64-bit LCG. */
static void
fill(float *v, int64_t n, uint64_t seed, double scale, double offset)
{
    int64_t i;

    for (i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        v[i] = (float)(offset + scale * ((double)(seed >> 11) /
                                         9007199254740992.0 * 2.0 - 1.0));
    }
}

static void
free_all(struct smlp_tensor **t, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        ophost_tensor_free(t[i]);
        t[i] = NULL;
    }
}

/*
 * The inputs of a learned gate: x [n, d] in [-1, 1), Wg [e, d] in
 * [-2, 2) (logits of order 1..3), and, when labels is not NULL, the
 * superclass input i32 [n_labels] (per_image).  Returns the input count.
 */
static int
gate_inputs(struct smlp_tensor **in, int64_t n, int64_t d, int64_t e,
            uint64_t seed, const int32_t *labels, int64_t n_labels)
{
    float *v = malloc((size_t)((n > e ? n : e) * d + 1) * sizeof(float));

    ck_assert_ptr_nonnull(v);
    fill(v, n * d, seed, 1.0, 0.0);
    in[0] = ophost_f32(OPHOST_SHAPE(n, d), v);
    fill(v, e * d, seed + 1000, 2.0, 0.0);
    in[1] = ophost_f32(OPHOST_SHAPE(e, d), v);
    free(v);
    in[2] = NULL;
    if (labels == NULL)
        return 2;
    in[2] = ophost_i32(OPHOST_SHAPE(n_labels), labels);
    return 3;
}

static void
run_gate(const char *op, const struct ophost_attr *attrs,
         struct smlp_tensor **in, int n_in, struct smlp_tensor **out)
{
    const char *msg;
    int rc, j;

    for (j = 0; j < NGATE; j++)
        out[j] = NULL;
    rc = ophost_run(host, op, attrs, in, n_in, out, NGATE, &msg);
    ck_assert_msg(rc == SMLP_OK, "%s forward: %s", op, msg);
}

static int
same_tensor(const struct smlp_tensor *a, const struct smlp_tensor *b)
{
    return memcmp(a->data, b->data,
                  (size_t)smlp_tensor_numel(a) * sizeof(int32_t)) == 0;
}

/*
 * Fails unless moving any element of x or Wg by ±h (h = eps·max(1, |v|),
 * rounded to f32 as gc_check does) leaves expert, slot and slot_item as
 * they are: the finite differences then see one smooth piece.
 */
static void
routing_stable(const char *op, const struct ophost_attr *attrs,
               struct smlp_tensor **in, int n_in, double eps)
{
    struct smlp_tensor *base[NGATE], *out[NGATE];
    int i, sgn;
    int64_t k;

    run_gate(op, attrs, in, n_in, base);
    for (i = 0; i < 2; i++) {
        float *v = in[i]->data;

        for (k = 0; k < smlp_tensor_numel(in[i]); k++) {
            float v0 = v[k];
            double hh = eps * (fabs(v0) > 1.0 ? fabs(v0) : 1.0);

            for (sgn = -1; sgn <= 1; sgn += 2) {
                v[k] = (float)(v0 + sgn * hh);
                run_gate(op, attrs, in, n_in, out);
                v[k] = v0;
                ck_assert_msg(same_tensor(out[0], base[0]) &&
                                  same_tensor(out[1], base[1]) &&
                                  same_tensor(out[3], base[3]),
                              "%s: routing changes when input %d element "
                              "%lld moves by %+g: pick inputs with wider "
                              "margins",
                              op, i, (long long)k, sgn * hh);
                free_all(out, NGATE);
            }
        }
    }
    free_all(base, NGATE);
}

/* With SMLP_GC_VERBOSE set, prints the normwise errors of a check. */
static void
report(const char *what, const struct gc_result *res)
{
    if (getenv("SMLP_GC_VERBOSE") == NULL)
        return;
    fprintf(stderr, "%-40s x err %.2e (max|g| %.2e)  Wg err %.2e (max|g| "
                    "%.2e)\n",
            what, res->err[0], res->gmax[0], res->err[1], res->gmax[1]);
}

/*
 * The finite-difference check of d x and d Wg through the outputs in
 * `use` (use_weight or use_aux), after routing_stable.  nontrivial: also
 * require a gradient of x above 1e-3 somewhere.
 */
static void
gate_fd(const char *what, const char *op, const struct ophost_attr *attrs,
        struct smlp_tensor **in, int n_in, const int *use, int nontrivial)
{
    /* The switch aux is ~1 while its gradient is ~1e-2: a wider step
     * keeps the f32 rounding of the output (~6e-8 / 2h) well below tol. */
    double eps = use == use_aux && strstr(what, "switch") != NULL ? EPS_WIDE
                                                                  : EPS;
    static const int check[3] = {1, 1, 0};
    struct gc_spec s;
    struct gc_result res;
    char msg[1024];

    routing_stable(op, attrs, in, n_in, eps);
    memset(&s, 0, sizeof(s));
    s.op = op;
    s.attrs = attrs;
    s.inputs = in;
    s.n_in = n_in;
    s.n_out = NGATE;
    s.check = check;
    s.use_output = use;
    s.eps = eps;
    s.tol = TOL;
    s.seed = 3;
    ck_assert_msg(gc_check(host, &s, &res, msg, sizeof(msg)) == 0, "%s: %s",
                  what, msg);
    report(what, &res);
    if (nontrivial)
        ck_assert_msg(res.gmax[0] > 1e-3 && res.gmax[1] > 1e-3,
                      "%s: the gradients are ~0 (max |d x| %g, max |d Wg| "
                      "%g): the check proves nothing",
                      what, res.gmax[0], res.gmax[1]);
}

/*
 * Forward, then backward with the given upstream gradients of weight
 * (dw, N·k values) and aux (da; NULL: none reaches that output).  g[0],
 * g[1] receive d x and d Wg (NaN-poisoned before the call, so unwritten
 * elements show); free them with ophost_tensor_free.
 */
static void
gate_backward(const char *op, const struct ophost_attr *attrs,
              struct smlp_tensor **in, int n_in, const float *dw,
              const float *da, struct smlp_tensor **g)
{
    struct smlp_tensor *out[NGATE], *go[NGATE] = {0}, *gi[3] = {0};
    const char *msg;
    int i, rc;
    int64_t k;

    run_gate(op, attrs, in, n_in, out);
    if (dw != NULL)
        go[2] = ophost_f32(out[2]->rank, out[2]->shape, dw);
    if (da != NULL)
        go[4] = ophost_f32(0, NULL, da);
    for (i = 0; i < 2; i++) {
        gi[i] = ophost_tensor_like(in[i]);
        for (k = 0; k < smlp_tensor_numel(in[i]); k++)
            ((float *)gi[i]->data)[k] = NAN;
    }
    rc = ophost_backward(host, op, attrs, in, n_in, out, NGATE, go, gi, &msg);
    ck_assert_msg(rc == SMLP_OK, "%s backward: %s", op, msg);
    g[0] = gi[0];
    g[1] = gi[1];
    free_all(out, NGATE);
    free_all(go, NGATE);
}

static void
assert_zero(const struct smlp_tensor *t, const char *what)
{
    const float *v = t->data;
    int64_t i;

    for (i = 0; i < smlp_tensor_numel(t); i++)
        ck_assert_msg(v[i] == 0.0f, "%s element %lld = %g, expected 0", what,
                      (long long)i, (double)v[i]);
}

/* Backward with 1 and with 2 threads: the same bits. */
static void
threads_identical(const char *op, const struct ophost_attr *attrs,
                  struct smlp_tensor **in, int n_in, int64_t nk)
{
    struct smlp_tensor *g1[2], *g2[2];
    float *dw = malloc((size_t)nk * sizeof(float)), da = 0.7f;
    int i;

    ck_assert_ptr_nonnull(dw);
    fill(dw, nk, 17, 1.0, 0.0);
    ophost_set_threads(host, 1);
    gate_backward(op, attrs, in, n_in, dw, &da, g1);
    ophost_set_threads(host, 2);
    gate_backward(op, attrs, in, n_in, dw, &da, g2);
    ophost_set_threads(host, 1);
    for (i = 0; i < 2; i++) {
        ck_assert_msg(memcmp(g1[i]->data, g2[i]->data,
                             (size_t)smlp_tensor_numel(in[i]) *
                                 sizeof(float)) == 0,
                      "%s: gradient of input %d differs with 2 threads", op,
                      i);
        ophost_tensor_free(g1[i]);
        ophost_tensor_free(g2[i]);
    }
    free(dw);
}

/* ---- moe.gate.topk ------------------------------------------------------ */

START_TEST(test_grad_gate_topk_inference)
{
    /* 16 items in 2 groups of 8, E = 4, cf = 1 (cap 2k: some drops). */
    struct smlp_tensor *in[3];
    struct ophost_attr k1[] = {OPHOST_INT("group_size", 8), OPHOST_END};
    struct ophost_attr k2[] = {OPHOST_INT("k", 2),
                               OPHOST_INT("group_size", 8),
                               OPHOST_STRING("normalize", "topk"),
                               OPHOST_END};
    struct ophost_attr k2n[] = {OPHOST_INT("k", 2),
                                OPHOST_INT("group_size", 8), OPHOST_END};
    int n = gate_inputs(in, 16, 6, 4, 1, NULL, 0);

    ophost_set_training(host, 0);
    gate_fd("topk k1 none inference weight", "moe.gate.topk", k1, in, n,
            use_weight, 1);
    gate_fd("topk k2 topk inference weight", "moe.gate.topk", k2, in, n,
            use_weight, 1);
    gate_fd("topk k2 none inference weight", "moe.gate.topk", k2n, in, n,
            use_weight, 1);
    /* aux is 0 in inference: its gradient is 0. */
    gate_fd("topk k2 inference aux", "moe.gate.topk", k2, in, n, use_aux, 0);
    free_all(in, 3);
}
END_TEST

START_TEST(test_grad_gate_topk_training_vmoe)
{
    /* Without noise (importance term only) and with noise_std = 2 (σ =
     * 0.5: the load term too), k = 1 and 2. */
    struct smlp_tensor *in[3];
    struct ophost_attr clean[] = {OPHOST_INT("k", 2),
                                  OPHOST_INT("group_size", 8),
                                  OPHOST_FLOAT("aux_weight", 1.0),
                                  OPHOST_END};
    struct ophost_attr noisy[] = {OPHOST_INT("k", 2),
                                  OPHOST_INT("group_size", 8),
                                  OPHOST_FLOAT("noise_std", 2.0),
                                  OPHOST_FLOAT("aux_weight", 1.0),
                                  OPHOST_STRING("normalize", "topk"),
                                  OPHOST_END};
    struct ophost_attr noisy1[] = {OPHOST_FLOAT("noise_std", 2.0),
                                   OPHOST_FLOAT("aux_weight", 1.0),
                                   OPHOST_END};
    int n = gate_inputs(in, 16, 6, 4, 2, NULL, 0);

    ophost_set_training(host, 1);
    gate_fd("topk k2 vmoe clean weight", "moe.gate.topk", clean, in, n,
            use_weight, 1);
    gate_fd("topk k2 vmoe clean aux", "moe.gate.topk", clean, in, n, use_aux,
            1);
    gate_fd("topk k2 vmoe noisy weight", "moe.gate.topk", noisy, in, n,
            use_weight, 1);
    gate_fd("topk k2 vmoe noisy aux", "moe.gate.topk", noisy, in, n, use_aux,
            1);
    gate_fd("topk k1 vmoe noisy weight", "moe.gate.topk", noisy1, in, n,
            use_weight, 1);
    gate_fd("topk k1 vmoe noisy aux", "moe.gate.topk", noisy1, in, n,
            use_aux, 1);
    free_all(in, 3);
}
END_TEST

START_TEST(test_grad_gate_topk_training_switch)
{
    struct smlp_tensor *in[3];
    struct ophost_attr clean[] = {OPHOST_STRING("aux", "switch"),
                                  OPHOST_INT("group_size", 8),
                                  OPHOST_FLOAT("aux_weight", 1.0),
                                  OPHOST_END};
    struct ophost_attr noisy[] = {OPHOST_STRING("aux", "switch"),
                                  OPHOST_INT("k", 2),
                                  OPHOST_FLOAT("noise_std", 2.0),
                                  OPHOST_FLOAT("aux_weight", 1.0),
                                  OPHOST_END};
    int n = gate_inputs(in, 16, 6, 4, 38, NULL, 0);

    ophost_set_training(host, 1);
    gate_fd("topk k1 switch clean weight", "moe.gate.topk", clean, in, n,
            use_weight, 1);
    gate_fd("topk k1 switch clean aux", "moe.gate.topk", clean, in, n,
            use_aux, 1);
    gate_fd("topk k2 switch noisy weight", "moe.gate.topk", noisy, in, n,
            use_weight, 1);
    gate_fd("topk k2 switch noisy aux", "moe.gate.topk", noisy, in, n,
            use_aux, 1);
    free_all(in, 3);
}
END_TEST

START_TEST(test_grad_gate_topk_aux_none)
{
    /* aux none: its output is 0 in training too. */
    struct smlp_tensor *in[3];
    struct ophost_attr attrs[] = {OPHOST_STRING("aux", "none"),
                                  OPHOST_FLOAT("noise_std", 1.0),
                                  OPHOST_END};
    int n = gate_inputs(in, 8, 5, 3, 4, NULL, 0);

    ophost_set_training(host, 1);
    gate_fd("topk aux none weight", "moe.gate.topk", attrs, in, n,
            use_weight, 1);
    gate_fd("topk aux none aux", "moe.gate.topk", attrs, in, n, use_aux, 0);
    free_all(in, 3);
}
END_TEST

/* ---- moe.gate.importance ------------------------------------------------ */

START_TEST(test_grad_gate_importance)
{
    /* cf = 0.5: the least confident items are dropped, by priority. */
    struct smlp_tensor *in[3];
    struct ophost_attr vmoe[] = {OPHOST_INT("k", 2),
                                 OPHOST_FLOAT("capacity_factor", 0.5),
                                 OPHOST_FLOAT("noise_std", 2.0),
                                 OPHOST_FLOAT("aux_weight", 1.0),
                                 OPHOST_END};
    struct ophost_attr sw[] = {OPHOST_STRING("aux", "switch"),
                               OPHOST_INT("group_size", 6),
                               OPHOST_FLOAT("capacity_factor", 0.5),
                               OPHOST_STRING("normalize", "topk"),
                               OPHOST_INT("k", 2),
                               OPHOST_FLOAT("aux_weight", 1.0), OPHOST_END};
    int n = gate_inputs(in, 12, 6, 4, 5, NULL, 0);

    ophost_set_training(host, 1);
    gate_fd("importance k2 vmoe noisy weight", "moe.gate.importance", vmoe,
            in, n, use_weight, 1);
    gate_fd("importance k2 vmoe noisy aux", "moe.gate.importance", vmoe, in,
            n, use_aux, 1);
    gate_fd("importance k2 switch topk weight", "moe.gate.importance", sw,
            in, n, use_weight, 1);
    gate_fd("importance k2 switch aux", "moe.gate.importance", sw, in, n,
            use_aux, 1);
    ophost_set_training(host, 0);
    gate_fd("importance k2 inference weight", "moe.gate.importance", vmoe,
            in, n, use_weight, 1);
    free_all(in, 3);
}
END_TEST

/* ---- moe.gate.per_image ------------------------------------------------- */

START_TEST(test_grad_gate_per_image)
{
    /* 4 images of T = 4 items, 2 images per group, k = 2. */
    struct smlp_tensor *in[3];
    struct ophost_attr vmoe[] = {OPHOST_INT("items_per_image", 4),
                                 OPHOST_INT("group_size", 8),
                                 OPHOST_INT("k", 2),
                                 OPHOST_FLOAT("noise_std", 2.0),
                                 OPHOST_FLOAT("aux_weight", 1.0),
                                 OPHOST_END};
    struct ophost_attr sw[] = {OPHOST_INT("items_per_image", 4),
                               OPHOST_STRING("aux", "switch"),
                               OPHOST_STRING("normalize", "topk"),
                               OPHOST_INT("k", 2),
                               OPHOST_FLOAT("aux_weight", 1.0), OPHOST_END};
    int n = gate_inputs(in, 16, 6, 4, 6, NULL, 0);

    ophost_set_training(host, 1);
    gate_fd("per_image k2 vmoe noisy weight", "moe.gate.per_image", vmoe, in,
            n, use_weight, 1);
    gate_fd("per_image k2 vmoe noisy aux", "moe.gate.per_image", vmoe, in, n,
            use_aux, 1);
    gate_fd("per_image k2 switch topk weight", "moe.gate.per_image", sw, in,
            n, use_weight, 1);
    gate_fd("per_image k2 switch aux", "moe.gate.per_image", sw, in, n,
            use_aux, 1);
    ophost_set_training(host, 0);
    gate_fd("per_image k2 inference weight", "moe.gate.per_image", vmoe, in,
            n, use_weight, 1);
    free_all(in, 3);
}
END_TEST

START_TEST(test_grad_gate_per_image_superclass)
{
    /* The superclass CE term alone (aux none), and added to vmoe. */
    static const int32_t labels[4] = {2, 0, 3, 1};
    struct smlp_tensor *in[3];
    struct ophost_attr ce[] = {OPHOST_INT("items_per_image", 4),
                               OPHOST_STRING("aux", "none"),
                               OPHOST_FLOAT("aux_weight", 1.0), OPHOST_END};
    struct ophost_attr both[] = {OPHOST_INT("items_per_image", 4),
                                 OPHOST_INT("group_size", 8),
                                 OPHOST_FLOAT("noise_std", 2.0),
                                 OPHOST_FLOAT("aux_weight", 1.0),
                                 OPHOST_END};
    int n = gate_inputs(in, 16, 6, 4, 7, labels, 4);

    ophost_set_training(host, 1);
    gate_fd("per_image superclass only aux", "moe.gate.per_image", ce, in, n,
            use_aux, 1);
    gate_fd("per_image superclass+vmoe aux", "moe.gate.per_image", both, in,
            n, use_aux, 1);
    gate_fd("per_image superclass weight", "moe.gate.per_image", both, in, n,
            use_weight, 1);
    /* Inference: labels unused, aux 0. */
    ophost_set_training(host, 0);
    gate_fd("per_image superclass inference aux", "moe.gate.per_image", ce,
            in, n, use_aux, 0);
    free_all(in, 3);
}
END_TEST

START_TEST(test_grad_gate_per_image_superclass_out_of_range)
{
    static const int32_t labels[2] = {0, 4};
    struct smlp_tensor *in[3], *out[NGATE], *go[NGATE] = {0}, *gi[3] = {0};
    struct ophost_attr attrs[] = {OPHOST_INT("items_per_image", 2),
                                  OPHOST_END};
    const float da = 1.0f;
    const char *msg;
    int n = gate_inputs(in, 4, 3, 4, 8, labels, 2), rc;

    /* The forward of an inference session does not read the labels, so
     * run it there and hand its outputs to a training backward. */
    ophost_set_training(host, 0);
    run_gate("moe.gate.per_image", attrs, in, n, out);
    ophost_set_training(host, 1);
    go[4] = ophost_f32(0, NULL, &da);
    gi[0] = ophost_tensor_like(in[0]);
    rc = ophost_backward(host, "moe.gate.per_image", attrs, in, n, out,
                         NGATE, go, gi, &msg);
    ck_assert_int_eq(rc, SMLP_EINVAL);
    ck_assert_msg(strstr(msg, "input 2 (superclass): label 4 of image 1 is "
                              "out of range [0, 4)") != NULL,
                  "message: %s", msg);
    free_all(out, NGATE);
    free_all(go, NGATE);
    free_all(gi, 3);
    free_all(in, 3);
}
END_TEST

/* ---- special cases ------------------------------------------------------ */

START_TEST(test_grad_gate_no_grad_outputs)
{
    /* No gradient reaches weight or aux: zeros (and the aux gradient of
     * an inference session is zero whatever reaches it). */
    struct smlp_tensor *in[3], *g[2];
    struct ophost_attr attrs[] = {OPHOST_INT("k", 2), OPHOST_END};
    const float da = 1.0f;
    int n = gate_inputs(in, 8, 4, 4, 9, NULL, 0);

    ophost_set_training(host, 1);
    gate_backward("moe.gate.topk", attrs, in, n, NULL, NULL, g);
    assert_zero(g[0], "d x");
    assert_zero(g[1], "d Wg");
    free_all(g, 2);
    ophost_set_training(host, 0);
    gate_backward("moe.gate.topk", attrs, in, n, NULL, &da, g);
    assert_zero(g[0], "d x");
    assert_zero(g[1], "d Wg");
    free_all(g, 2);
    free_all(in, 3);
}
END_TEST

START_TEST(test_grad_gate_only_wg)
{
    /* grad_inputs[0] NULL: only d Wg is written, equal to the one
     * computed together with d x. */
    struct smlp_tensor *in[3], *out[NGATE], *go[NGATE] = {0}, *gi[3] = {0};
    struct smlp_tensor *g[2];
    struct ophost_attr attrs[] = {OPHOST_INT("k", 2),
                                  OPHOST_FLOAT("noise_std", 1.0),
                                  OPHOST_END};
    float dw[8 * 2], da = 0.5f;
    const char *msg;
    int n = gate_inputs(in, 8, 4, 4, 10, NULL, 0), rc;

    ophost_set_training(host, 1);
    fill(dw, 16, 11, 1.0, 0.0);
    gate_backward("moe.gate.topk", attrs, in, n, dw, &da, g);
    run_gate("moe.gate.topk", attrs, in, n, out);
    go[2] = ophost_f32(out[2]->rank, out[2]->shape, dw);
    go[4] = ophost_f32(0, NULL, &da);
    gi[1] = ophost_tensor_like(in[1]);
    rc = ophost_backward(host, "moe.gate.topk", attrs, in, n, out, NGATE, go,
                         gi, &msg);
    ck_assert_msg(rc == SMLP_OK, "%s", msg);
    ck_assert(memcmp(gi[1]->data, g[1]->data, 4 * 4 * sizeof(float)) == 0);
    free_all(out, NGATE);
    free_all(go, NGATE);
    free_all(gi, 3);
    free_all(g, 2);
    free_all(in, 3);
}
END_TEST

START_TEST(test_grad_gate_empty_batch)
{
    /* N = 0: d Wg is zero. */
    struct smlp_tensor *in[3], *g[2];
    const float da = 1.0f;
    int n;

    in[0] = ophost_f32(OPHOST_SHAPE(0, 3), NULL);
    in[1] = ophost_f32(OPHOST_SHAPE(2, 3), (const float[]){1, 2, 3, 4, 5, 6});
    in[2] = NULL;
    n = 2;
    ophost_set_training(host, 1);
    gate_backward("moe.gate.topk", NULL, in, n, NULL, &da, g);
    assert_zero(g[1], "d Wg");
    free_all(g, 2);
    free_all(in, 3);
}
END_TEST

START_TEST(test_grad_gate_hash_zeros)
{
    struct smlp_tensor *in[1], *out[NGATE], *go[NGATE] = {0}, *gi[1];
    struct ophost_attr attrs[] = {OPHOST_INT("experts", 2),
                                  OPHOST_INT("items_per_image", 4),
                                  OPHOST_END};
    float x[8 * 3];
    const float da = 1.0f;
    const char *msg;
    int64_t i;
    int rc;

    fill(x, 24, 12, 1.0, 0.0);
    in[0] = ophost_f32(OPHOST_SHAPE(8, 3), x);
    run_gate("moe.gate.hash", attrs, in, 1, out);
    go[2] = ophost_tensor_like(out[2]);
    for (i = 0; i < 8; i++)
        ((float *)go[2]->data)[i] = 1.0f;
    go[4] = ophost_f32(0, NULL, &da);
    gi[0] = ophost_tensor_like(in[0]);
    for (i = 0; i < 24; i++)
        ((float *)gi[0]->data)[i] = NAN;
    rc = ophost_backward(host, "moe.gate.hash", attrs, in, 1, out, NGATE, go,
                         gi, &msg);
    ck_assert_msg(rc == SMLP_OK, "%s", msg);
    assert_zero(gi[0], "d x");
    /* Nothing wanted: nothing to do. */
    ophost_tensor_free(gi[0]);
    gi[0] = NULL;
    rc = ophost_backward(host, "moe.gate.hash", attrs, in, 1, out, NGATE, go,
                         gi, &msg);
    ck_assert_msg(rc == SMLP_OK, "%s", msg);
    free_all(out, NGATE);
    free_all(go, NGATE);
    free_all(in, 1);
}
END_TEST

START_TEST(test_grad_gate_threads)
{
    /* Every learned gate, training with noise, vmoe and switch, larger
     * than the FD cases: 1 and 2 threads give the same bits. */
    static const int32_t labels[16] = {0, 1, 2, 3, 4, 5, 6, 7,
                                       0, 1, 2, 3, 4, 5, 6, 7};
    struct smlp_tensor *in[3];
    struct ophost_attr topk[] = {OPHOST_INT("k", 2),
                                 OPHOST_INT("group_size", 32),
                                 OPHOST_FLOAT("noise_std", 1.0),
                                 OPHOST_STRING("normalize", "topk"),
                                 OPHOST_END};
    struct ophost_attr imp[] = {OPHOST_INT("k", 2),
                                OPHOST_STRING("aux", "switch"),
                                OPHOST_FLOAT("capacity_factor", 0.7),
                                OPHOST_FLOAT("noise_std", 1.0), OPHOST_END};
    struct ophost_attr pim[] = {OPHOST_INT("k", 2),
                                OPHOST_INT("items_per_image", 8),
                                OPHOST_INT("group_size", 32),
                                OPHOST_FLOAT("noise_std", 1.0), OPHOST_END};
    int n = gate_inputs(in, 128, 40, 8, 13, labels, 16);

    ophost_set_training(host, 1);
    threads_identical("moe.gate.topk", topk, in, 2, 128 * 2);
    threads_identical("moe.gate.importance", imp, in, 2, 128 * 2);
    threads_identical("moe.gate.per_image", pim, in, n, 128 * 2);
    free_all(in, 3);
}
END_TEST

/* ---- cases a mutation test of the backward found unchecked ------------- */

/* Both the combine weights and the aux loss in the checked sum. */
static const int use_both[NGATE] = {0, 0, 1, 0, 1, 0};

/* per_image's superclass cross-entropy at aux_weight 0.3 (the other
 * checks use 1, so a backward that ignores the weight passed); topk's
 * switch aux without noise with the weights and the aux in one loss
 * (there the clean and the noisy softmax share a buffer, and the aux
 * term must add to the weights' gradient, not replace it). */
START_TEST(test_grad_gate_aux_weight_and_both_outputs)
{
    static const int32_t labels[4] = {2, 0, 3, 1};
    struct smlp_tensor *in[3];
    struct ophost_attr ce[] = {OPHOST_INT("items_per_image", 4),
                               OPHOST_STRING("aux", "none"),
                               OPHOST_FLOAT("aux_weight", 0.3), OPHOST_END};
    struct ophost_attr sw[] = {OPHOST_STRING("aux", "switch"),
                               OPHOST_INT("group_size", 8),
                               OPHOST_FLOAT("aux_weight", 1.0), OPHOST_END};
    int n;

    ophost_set_training(host, 1);
    n = gate_inputs(in, 16, 6, 4, 7, labels, 4);
    gate_fd("per_image superclass, aux_weight 0.3", "moe.gate.per_image", ce,
            in, n, use_aux, 1);
    free_all(in, 3);
    n = gate_inputs(in, 16, 6, 4, 38, NULL, 0);
    gate_fd("topk switch aux, no noise, weight + aux", "moe.gate.topk", sw,
            in, n, use_both, 1);
    free_all(in, 3);
}
END_TEST

/* Shapes that cross the backward's row tasks (64 rows) and group tasks:
 * the noise redrawn, the clean softmax and the superclass labels of each
 * task must be that task's rows (the other checks have one task of each,
 * and the thread comparisons cannot see an error made the same way at
 * any thread count). */
START_TEST(test_grad_gate_task_boundaries)
{
    struct smlp_tensor *in[3];
    struct ophost_attr noisy[] = {OPHOST_INT("k", 2),
                                  OPHOST_INT("group_size", 8),
                                  OPHOST_FLOAT("noise_std", 2.0),
                                  OPHOST_FLOAT("aux_weight", 1.0),
                                  OPHOST_END};
    struct ophost_attr pim[] = {OPHOST_INT("items_per_image", 2),
                                OPHOST_INT("group_size", 4),
                                OPHOST_STRING("aux", "none"),
                                OPHOST_FLOAT("aux_weight", 1.0), OPHOST_END};
    int32_t labels[40];
    int n, i;

    ophost_set_training(host, 1);
    n = gate_inputs(in, 136, 3, 3, 91, NULL, 0);
    gate_fd("topk noise 2, 136 rows: weight", "moe.gate.topk", noisy, in, n,
            use_weight, 1);
    gate_fd("topk noise 2, 136 rows: aux", "moe.gate.topk", noisy, in, n,
            use_aux, 1);
    free_all(in, 3);
    for (i = 0; i < 40; i++)
        labels[i] = (i * 7) % 3;
    n = gate_inputs(in, 80, 3, 3, 92, labels, 40);
    gate_fd("per_image superclass, 40 images", "moe.gate.per_image", pim, in,
            n, use_aux, 1);
    free_all(in, 3);
}
END_TEST

/* normalize topk: an item whose first choice is dropped and whose kept
 * second choice has p == 0 in f32 (sum of kept p = 0): weight 0, and the
 * backward must give finite (zero) gradients, not NaN. */
START_TEST(test_grad_gate_topk_zero_sum)
{
    struct smlp_tensor *in[3], *g[2];
    struct ophost_attr attrs[] = {OPHOST_INT("k", 2),
                                  OPHOST_INT("group_size", 2),
                                  OPHOST_FLOAT("capacity_factor", 1.0),
                                  OPHOST_STRING("normalize", "topk"),
                                  OPHOST_END};
    const float x[2 * 2] = {1.0f, 0.0f, 0.0f, 1.0f};
    const float wg[4 * 2] = {200.0f, 200.0f, 0.0f, 0.0f,
                             150.0f, -100.0f, -1.0f, -100.0f};
    const float dw[4] = {1.0f, 1.0f, 1.0f, 1.0f};
    int64_t i;

    in[0] = ophost_f32(OPHOST_SHAPE(2, 2), x);
    in[1] = ophost_f32(OPHOST_SHAPE(4, 2), wg);
    in[2] = NULL;
    ophost_set_training(host, 0);
    gate_backward("moe.gate.topk", attrs, in, 2, dw, NULL, g);
    for (i = 0; i < 4; i++)
        ck_assert_msg(isfinite(((float *)g[0]->data)[i]), "d x[%lld] = %g",
                      (long long)i, (double)((float *)g[0]->data)[i]);
    for (i = 0; i < 8; i++)
        ck_assert_msg(isfinite(((float *)g[1]->data)[i]), "d Wg[%lld] = %g",
                      (long long)i, (double)((float *)g[1]->data)[i]);
    free_all(g, 2);
    free_all(in, 3);
}
END_TEST

static Suite *
grad_gate_suite(void)
{
    Suite *s = suite_create("grad_gate");
    TCase *tc;

#define TC(name)                                                             \
    tc = tcase_create(name);                                                 \
    tcase_add_checked_fixture(tc, setup, teardown);                          \
    tcase_set_timeout(tc, 60);                                               \
    suite_add_tcase(s, tc)

    TC("topk");
    tcase_add_test(tc, test_grad_gate_topk_inference);
    tcase_add_test(tc, test_grad_gate_topk_training_vmoe);
    tcase_add_test(tc, test_grad_gate_topk_training_switch);
    tcase_add_test(tc, test_grad_gate_topk_aux_none);
    TC("importance");
    tcase_add_test(tc, test_grad_gate_importance);
    TC("per_image");
    tcase_add_test(tc, test_grad_gate_per_image);
    tcase_add_test(tc, test_grad_gate_per_image_superclass);
    tcase_add_test(tc, test_grad_gate_per_image_superclass_out_of_range);
    TC("special");
    tcase_add_test(tc, test_grad_gate_no_grad_outputs);
    tcase_add_test(tc, test_grad_gate_only_wg);
    tcase_add_test(tc, test_grad_gate_empty_batch);
    tcase_add_test(tc, test_grad_gate_hash_zeros);
    tcase_add_test(tc, test_grad_gate_threads);
    TC("corners");
    tcase_add_test(tc, test_grad_gate_aux_weight_and_both_outputs);
    tcase_add_test(tc, test_grad_gate_task_boundaries);
    tcase_add_test(tc, test_grad_gate_topk_zero_sum);
#undef TC
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(grad_gate_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
