/*
 * check_grad_core_contract.c - the ABI's backward rules on every op of
 * the `core` plugin: grad_inputs are overwritten (filled with NaN before
 * the call), NULL grad_inputs entries are skipped without changing the
 * others, inputs and grad_outputs are left alone, a NULL grad_output
 * gives zero gradients, and threads = 1 and threads = 2 give
 * bit-identical results.  Against finite differences: check_grad_core.c.
 */
#include "gradcorefx.h"

/* ---- the backward contract, on every op ------------------------------- */

/*
 * One node of the contract tests.  Inputs are random f32 of the given
 * shapes, except those with diff 0: i32 labels in [0, K), K = dim 1 of
 * input 0.
 */
struct bw_case {
    const char *op;
    const struct ophost_attr *attrs;
    int n_in;
    int rank[3];
    int64_t shape[3][SMLP_MAX_RANK];
    int diff[3];
};

static const struct ophost_attr at_axis_m1[] = {OPHOST_INT("axis", -1),
                                                OPHOST_END};
static const struct ophost_attr at_axis_m2[] = {OPHOST_INT("axis", -2),
                                                OPHOST_END};
static const struct ophost_attr at_gelu_none[] = {
    OPHOST_STRING("approximate", "none"), OPHOST_END};
static const struct ophost_attr at_gelu_tanh[] = {
    OPHOST_STRING("approximate", "tanh"), OPHOST_END};
static const struct ophost_attr at_scale[] = {OPHOST_FLOAT("alpha", -1.5),
                                              OPHOST_END};
static const struct ophost_attr at_perm[] = {OPHOST_INTS("perm", 2, 0, 1),
                                             OPHOST_END};
static const struct ophost_attr at_reshape[] = {OPHOST_INTS("shape", -1, 4),
                                                OPHOST_END};
static const struct ophost_attr at_mean[] = {OPHOST_INT("axis", 1),
                                             OPHOST_INT("keepdims", 1),
                                             OPHOST_END};
static const struct ophost_attr at_patch2[] = {OPHOST_INT("patch", 2),
                                               OPHOST_END};
static const struct ophost_attr at_patch4[] = {OPHOST_INT("patch", 4),
                                               OPHOST_END};
static const struct ophost_attr at_mm_tt[] = {OPHOST_INT("transpose_a", 1),
                                              OPHOST_INT("transpose_b", 1),
                                              OPHOST_END};
static const struct ophost_attr at_mm_nt[] = {OPHOST_INT("transpose_a", 0),
                                              OPHOST_INT("transpose_b", 1),
                                              OPHOST_END};
static const struct ophost_attr at_sce[] = {
    OPHOST_FLOAT("label_smoothing", 0.1), OPHOST_END};

/*
 * Every op with a backward; the later, larger products are big enough
 * (M·N·K > 262144) for OpenBLAS to split them across two threads.
 */
static const struct bw_case bw_cases[] = {
    {"core.linear", at_axis_m1, 3, {3, 2, 1},
     {{2, 5, 3}, {4, 3}, {4}}, {1, 1, 1}},
    {"core.linear", at_axis_m2, 3, {3, 2, 1},
     {{2, 5, 3}, {6, 5}, {6}}, {1, 1, 1}},
    {"core.gelu", at_gelu_none, 1, {2}, {{3, 37}}, {1}},
    {"core.gelu", at_gelu_tanh, 1, {2}, {{3, 37}}, {1}},
    {"core.relu", NULL, 1, {2}, {{3, 37}}, {1}},
    {"core.add", NULL, 2, {2, 2}, {{3, 7}, {3, 7}}, {1, 1}},
    {"core.scale", at_scale, 1, {2}, {{3, 7}}, {1}},
    {"core.transpose", at_perm, 1, {3}, {{2, 3, 5}}, {1}},
    {"core.reshape", at_reshape, 1, {3}, {{2, 3, 4}}, {1}},
    {"core.mean", at_mean, 1, {3}, {{2, 5, 3}}, {1}},
    {"core.patch_embed", at_patch2, 3, {4, 4, 1},
     {{2, 3, 4, 6}, {5, 3, 2, 2}, {5}}, {1, 1, 1}},
    {"core.matmul", at_mm_tt, 2, {3, 3}, {{2, 4, 3}, {2, 5, 4}}, {1, 1}},
    {"core.softmax_cross_entropy", at_sce, 2, {2, 1}, {{5, 7}, {5}},
     {1, 0}},
    /* Larger products. */
    {"core.linear", at_axis_m1, 3, {3, 2, 1},
     {{4, 64, 96}, {80, 96}, {80}}, {1, 1, 1}},
    {"core.linear", at_axis_m2, 3, {3, 2, 1},
     {{3, 64, 96}, {72, 64}, {72}}, {1, 1, 1}},
    {"core.matmul", at_mm_nt, 2, {3, 3}, {{2, 96, 64}, {2, 80, 64}}, {1, 1}},
    {"core.matmul", at_mm_tt, 2, {3, 3}, {{2, 64, 96}, {2, 80, 64}}, {1, 1}},
    {"core.patch_embed", at_patch4, 3, {4, 4, 1},
     {{4, 3, 32, 32}, {48, 3, 4, 4}, {48}}, {1, 1, 1}},
    {"core.softmax_cross_entropy", at_sce, 2, {2, 1}, {{300, 100}, {300}},
     {1, 0}},
    /* Big enough to be cut into several parallel_for tasks (tiles of
     * gemm.c, chunks of SMLP__CORE_CHUNK elements), which ophost runs on
     * ophost_set_threads() threads in a shuffled order. */
    {"core.linear", at_axis_m1, 3, {3, 2, 1},
     {{4, 128, 256}, {384, 256}, {384}}, {1, 1, 1}},
    {"core.linear", at_axis_m2, 3, {3, 2, 1},
     {{2, 256, 512}, {320, 256}, {320}}, {1, 1, 1}},
    {"core.gelu", at_gelu_none, 1, {2}, {{3, 20000}}, {1}},
    {"core.gelu", at_gelu_tanh, 1, {2}, {{3, 20000}}, {1}},
    {"core.relu", NULL, 1, {2}, {{3, 20000}}, {1}},
    {"core.add", NULL, 2, {2, 2}, {{3, 20000}, {3, 20000}}, {1, 1}},
    {"core.scale", at_scale, 1, {2}, {{3, 20000}}, {1}},
    {"core.transpose", at_perm, 1, {3}, {{70, 300, 4}}, {1}},
    {"core.mean", at_mean, 1, {3}, {{4, 50, 600}}, {1}},
    {"core.patch_embed", at_patch4, 3, {4, 4, 1},
     {{8, 3, 128, 128}, {128, 3, 4, 4}, {128}}, {1, 1, 1}},
    {"core.matmul", at_mm_nt, 2, {3, 3}, {{2, 256, 192}, {2, 320, 192}},
     {1, 1}},
    {"core.matmul", at_mm_tt, 2, {3, 3}, {{2, 192, 256}, {2, 320, 192}},
     {1, 1}},
};

#define N_BW_CASES ((int)(sizeof(bw_cases) / sizeof(bw_cases[0])))

/* The forward values of one case: inputs, output and a random dy. */
struct bw_node {
    struct smlp_tensor *in[3];
    struct smlp_tensor *out[1];
    struct smlp_tensor *dy[1];
};

static void
bw_node_init(struct bw_node *nd, const struct bw_case *c, uint64_t seed)
{
    const char *msg;
    int i, rc;

    memset(nd, 0, sizeof(*nd));
    for (i = 0; i < c->n_in; i++)
        nd->in[i] = c->diff[i] ? rnd_f32(c->rank[i], c->shape[i], seed + i,
                                         1.0)
                               : labels_i32(c->shape[i][0],
                                            c->shape[0][1], seed);
    rc = ophost_run(host, c->op, c->attrs, nd->in, c->n_in, nd->out, 1,
                    &msg);
    ck_assert_msg(rc == SMLP_OK, "%s: %s", c->op, msg);
    nd->dy[0] = rnd_f32(nd->out[0]->rank, nd->out[0]->shape, seed + 9, 1.0);
}

static void
bw_node_free(struct bw_node *nd)
{
    free_all(nd->in, 3);
    free_all(nd->out, 1);
    free_all(nd->dy, 1);
}

/*
 * Runs the backward of case c on node nd with grad_inputs for the inputs
 * in `want` (a bit per input; only differentiable ones) filled with NaN
 * first; dy NULL when `no_dy`.  gr[i] is NULL for the inputs not wanted.
 */
static void
bw_run(const struct bw_case *c, struct bw_node *nd, unsigned want,
       int no_dy, struct smlp_tensor **gr)
{
    struct smlp_tensor *dy[1] = {no_dy ? NULL : nd->dy[0]};
    const char *msg;
    int i, rc;

    for (i = 0; i < 3; i++) {
        gr[i] = NULL;
        if (i < c->n_in && c->diff[i] && (want >> i & 1u)) {
            gr[i] = ophost_tensor_like(nd->in[i]);
            if (gc_numel(gr[i]) > 0)
                memset(gr[i]->data, 0xff, (size_t)gc_numel(gr[i]) * 4);
        }
    }
    rc = ophost_backward(host, c->op, c->attrs, nd->in, c->n_in, nd->out, 1,
                         dy, gr, &msg);
    ck_assert_msg(rc == SMLP_OK, "%s backward: %s", c->op, msg);
}

static int
same_bits(const struct smlp_tensor *a, const struct smlp_tensor *b)
{
    return gc_numel(a) == gc_numel(b) &&
           memcmp(a->data, b->data, (size_t)gc_numel(a) * 4) == 0;
}

static struct smlp_tensor *
clone(const struct smlp_tensor *t)
{
    return t != NULL ? ophost_tensor(t->dtype, t->rank, t->shape, t->data)
                     : NULL;
}

START_TEST(test_grad_contract_overwrite_and_null_inputs)
{
    const struct bw_case *c = &bw_cases[_i];
    struct bw_node nd;
    struct smlp_tensor *ref[3], *gr[3], *keep[4];
    unsigned all = 7u, want;
    int i;

    bw_node_init(&nd, c, 100 + (uint64_t)_i);
    for (i = 0; i < 3; i++)
        keep[i] = clone(nd.in[i]);
    keep[3] = clone(nd.dy[0]);
    /* Every gradient, written over a NaN fill: nothing left unwritten. */
    bw_run(c, &nd, all, 0, ref);
    for (i = 0; i < c->n_in; i++) {
        const float *g;
        int64_t k;

        if (ref[i] == NULL)
            continue;
        for (k = 0, g = ref[i]->data; k < gc_numel(ref[i]); k++)
            ck_assert_msg(isfinite(g[k]), "%s: d input %d [%lld] = %g",
                          c->op, i, (long long)k, (double)g[k]);
    }
    /* Every subset of the wanted gradients gives the same values. */
    for (want = 0; want < all; want++) {
        bw_run(c, &nd, want, 0, gr);
        for (i = 0; i < c->n_in; i++)
            if (gr[i] != NULL)
                ck_assert_msg(same_bits(gr[i], ref[i]),
                              "%s: d input %d differs with want mask %u",
                              c->op, i, want);
        free_all(gr, 3);
    }
    /* Inputs and dy are read only. */
    for (i = 0; i < c->n_in; i++)
        ck_assert_msg(same_bits(nd.in[i], keep[i]), "%s: input %d changed",
                      c->op, i);
    ck_assert_msg(same_bits(nd.dy[0], keep[3]), "%s: dy changed", c->op);
    free_all(ref, 3);
    free_all(keep, 4);
    bw_node_free(&nd);
}
END_TEST

START_TEST(test_grad_contract_null_grad_output)
{
    const struct bw_case *c = &bw_cases[_i];
    struct bw_node nd;
    struct smlp_tensor *gr[3];
    int i;

    bw_node_init(&nd, c, 200 + (uint64_t)_i);
    bw_run(c, &nd, 7u, 1, gr);
    for (i = 0; i < c->n_in; i++) {
        const float *g;
        int64_t k;

        if (gr[i] == NULL)
            continue;
        for (k = 0, g = gr[i]->data; k < gc_numel(gr[i]); k++)
            ck_assert_msg(g[k] == 0.0f, "%s: d input %d [%lld] = %g with "
                          "no dy", c->op, i, (long long)k, (double)g[k]);
    }
    free_all(gr, 3);
    bw_node_free(&nd);
}
END_TEST

START_TEST(test_grad_contract_threads)
{
    const struct bw_case *c = &bw_cases[_i];
    struct bw_node nd;
    struct smlp_tensor *g1[3], *g2[3], *y[1];
    const char *msg;
    int i, th, rc;

    bw_node_init(&nd, c, 300 + (uint64_t)_i);
    /* The forward (run at 1 thread by bw_node_init) at 2 and 3 threads. */
    for (th = 2; th <= 3; th++) {
        ophost_set_threads(host, th);
        y[0] = NULL;
        rc = ophost_run(host, c->op, c->attrs, nd.in, c->n_in, y, 1, &msg);
        ck_assert_msg(rc == SMLP_OK, "%s: %s", c->op, msg);
        ck_assert_msg(same_bits(y[0], nd.out[0]),
                      "%s: the output differs between 1 and %d threads",
                      c->op, th);
        free_all(y, 1);
    }
    ophost_set_threads(host, 1);
    bw_run(c, &nd, 7u, 0, g1);
    ophost_set_threads(host, 2);
    bw_run(c, &nd, 7u, 0, g2);
    for (i = 0; i < c->n_in; i++)
        if (g1[i] != NULL)
            ck_assert_msg(same_bits(g1[i], g2[i]),
                          "%s: d input %d differs between 1 and 2 threads",
                          c->op, i);
    free_all(g2, 3);
    ophost_set_threads(host, 3);
    bw_run(c, &nd, 7u, 0, g2);
    ophost_set_threads(host, 1);
    for (i = 0; i < c->n_in; i++)
        if (g1[i] != NULL)
            ck_assert_msg(same_bits(g1[i], g2[i]),
                          "%s: d input %d differs between 1 and 3 threads",
                          c->op, i);
    free_all(g1, 3);
    free_all(g2, 3);
    bw_node_free(&nd);
}
END_TEST

START_TEST(test_grad_contract_every_op)
{
    int i;

    /* Every op but argmax (integer output) has a backward. */
    for (i = 0; i < ophost_op_count(host); i++) {
        const struct smlp_op_def *op = ophost_op_at(host, i);

        if (strcmp(op->name, "core.argmax") == 0)
            ck_assert_ptr_null(op->backward);
        else
            ck_assert_msg(op->backward != NULL, "%s has no backward",
                          op->name);
    }
}
END_TEST

static Suite *
grad_core_contract_suite(void)
{
    Suite *s = suite_create("grad_core_contract");
    TCase *tc;

#define TC(name)                                                             \
    tc = tcase_create(name);                                                 \
    tcase_add_checked_fixture(tc, setup, teardown);                          \
    suite_add_tcase(s, tc)

    TC("contract");
    tcase_add_loop_test(tc, test_grad_contract_overwrite_and_null_inputs, 0,
                        N_BW_CASES);
    tcase_add_loop_test(tc, test_grad_contract_null_grad_output, 0,
                        N_BW_CASES);
    tcase_add_loop_test(tc, test_grad_contract_threads, 0, N_BW_CASES);
    tcase_add_test(tc, test_grad_contract_every_op);
#undef TC
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(grad_core_contract_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
