/*
 * check_autograd_fd.c - whole graphs against central finite
 * differences: a small mixer-like MLP of core (and norm) ops, then the
 * shipped mixer_fmnist and sparse_mlp_fmnist graphs with a loss head
 * (runtime/autograd.c with the real plugins' backwards).
 */
#include <math.h>
#include <stdint.h>

#include "gradgraph.h"

/* ---- whole graphs against finite differences ---------------------------- */

static int
has_backward(smlp_registry_t *reg, const char *op)
{
    const struct smlp_op_def *d = smlp_registry_op_def(reg, op);

    return d != NULL && d->backward != NULL;
}

/*
 * A small mixer-like MLP: x [B, T, D] -> layer_norm (when norm has a
 * backward) -> token mixing (linear over axis 1, gelu, linear) + residual
 * -> channel mixing (linear, gelu, linear) + residual -> mean over tokens
 * -> head linear -> softmax cross-entropy with labels.
 */
static void
mlp_graph(struct gb *g, int with_norm)
{
    const char *axis1 = "{\"name\": \"axis\", \"type\": \"Int\", \"i\": 1}";

    gb_init(g);
    gb_tensor(g, "x", "Input", "[-1, 3, 4]", NULL);
    gb_tensor(g, "labels", "Input", "[-1]",
              "\"dtype\": \"I32\", \"init\": {\"kind\": \"Uniform\", "
              "\"a\": 0, \"b\": 4.4, \"seed\": 5}");
    if (with_norm) {
        gb_tensor(g, "ln.g", "Parameter", "[4]",
                  "\"init\": {\"kind\": \"Uniform\", \"a\": 0.5, "
                  "\"b\": 1.5, \"seed\": 21}");
        gb_param(g, "ln.b", "[4]", 22);
        gb_tensor(g, "h0", "Activation", NULL, NULL);
    }
    gb_param(g, "tok.w1", "[5, 3]", 11);
    gb_param(g, "tok.b1", "[5]", 12);
    gb_param(g, "tok.w2", "[3, 5]", 13);
    gb_param(g, "tok.b2", "[3]", 14);
    gb_param(g, "ch.w1", "[6, 4]", 15);
    gb_param(g, "ch.b1", "[6]", 16);
    gb_param(g, "ch.w2", "[4, 6]", 17);
    gb_param(g, "ch.b2", "[4]", 18);
    gb_param(g, "head.w", "[5, 4]", 19);
    gb_param(g, "head.b", "[5]", 20);
    gb_tensor(g, "t1", "Activation", NULL, NULL);
    gb_tensor(g, "t2", "Activation", NULL, NULL);
    gb_tensor(g, "t3", "Activation", NULL, NULL);
    gb_tensor(g, "r1", "Activation", NULL, NULL);
    gb_tensor(g, "c1", "Activation", NULL, NULL);
    gb_tensor(g, "c2", "Activation", NULL, NULL);
    gb_tensor(g, "c3", "Activation", NULL, NULL);
    gb_tensor(g, "r2", "Activation", NULL, NULL);
    gb_tensor(g, "pool", "Activation", NULL, NULL);
    gb_tensor(g, "logits", "Output", NULL, NULL);
    gb_tensor(g, "loss", "Output", NULL, NULL);
    if (with_norm)
        gb_node(g, "ln", "norm.layer_norm", "x ln.g ln.b", "h0", NULL);
    gb_node(g, "tok1", "core.linear", with_norm ? "h0 tok.w1 tok.b1"
                                                : "x tok.w1 tok.b1",
            "t1", axis1);
    gb_node(g, "tokg", "core.gelu", "t1", "t2", NULL);
    gb_node(g, "tok2", "core.linear", "t2 tok.w2 tok.b2", "t3", axis1);
    gb_node(g, "res1", "core.add", "x t3", "r1", NULL);
    gb_node(g, "ch1", "core.linear", "r1 ch.w1 ch.b1", "c1", NULL);
    gb_node(g, "chg", "core.gelu", "c1", "c2", NULL);
    gb_node(g, "ch2", "core.linear", "c2 ch.w2 ch.b2", "c3", NULL);
    gb_node(g, "res2", "core.add", "r1 c3", "r2", NULL);
    gb_node(g, "pool", "core.mean", "r2", "pool", axis1);
    gb_node(g, "head", "core.linear", "pool head.w head.b", "logits", NULL);
    gb_node(g, "loss", "core.softmax_cross_entropy", "logits labels", "loss",
            NULL);
}

/*
 * Central differences of the f32 loss, h = 1e-2 (the loss is computed in
 * f32, so smaller steps drown in rounding): per parameter,
 *   max_i |analytic_i - numeric_i| <= 2e-3 * max(max_i |numeric_i|, 1e-2)
 * (measured: 2.4e-4 at worst).
 */
static void
check_fd(int with_norm, int threads)
{
    smlp_registry_t *reg = tu_fixture_registry();
    const char *params[] = {"tok.w1", "tok.b1", "tok.w2", "tok.b2", "ch.w1",
                            "ch.b1",  "ch.w2",  "ch.b2",  "head.w", "head.b",
                            "ln.g",   "ln.b"};
    int n_params = with_norm ? 12 : 10;
    double worst = 0;
    const char *at = "-";
    struct gb gb;
    char path[512];
    smlp_graph_t *g;
    smlp_session_t *s;
    int k;

    mlp_graph(&gb, with_norm);
    g = gb_load(&gb, with_norm ? "\"core\", \"norm\"" : "\"core\"", path,
                sizeof(path));
    s = must_session(g, reg, "loss", NULL, threads);
    run_backward(s);
    for (k = 0; k < n_params; k++) {
        struct smlp_tensor p, gt;
        float *an;
        int64_t i, n;
        double err = 0, gmax = 0;

        ck_assert_int_eq(smlp_session_tensor(s, params[k], &p), SMLP_OK);
        ck_assert_int_eq(smlp_session_grad(s, params[k], &gt), SMLP_OK);
        n = 1;
        for (i = 0; i < p.rank; i++)
            n *= p.shape[i];
        an = malloc((size_t)n * sizeof(float));
        memcpy(an, gt.data, (size_t)n * sizeof(float));
        for (i = 0; i < n; i++) {
            float *v = (float *)p.data + i, keep = *v;
            const float h = 1e-2f;
            double lp, lm, num;

            *v = keep + h;
            ck_assert_int_eq(smlp_session_tensor(s, params[k], &p), SMLP_OK);
            ck_assert_int_eq(smlp_session_run(s), SMLP_OK);
            lp = *data(s, "loss");
            *v = keep - h;
            ck_assert_int_eq(smlp_session_tensor(s, params[k], &p), SMLP_OK);
            ck_assert_int_eq(smlp_session_run(s), SMLP_OK);
            lm = *data(s, "loss");
            *v = keep;
            num = (lp - lm) / (2.0 * (double)h);
            if (fabs(num) > gmax)
                gmax = fabs(num);
            if (fabs(num - an[i]) > err)
                err = fabs(num - an[i]);
        }
        ck_assert_msg(err <= 2e-3 * (gmax > 1e-2 ? gmax : 1e-2),
                      "%s: max |analytic - numeric| = %g, max |numeric| = %g",
                      params[k], err, gmax);
        if (err / (gmax > 1e-2 ? gmax : 1e-2) > worst) {
            worst = err / (gmax > 1e-2 ? gmax : 1e-2);
            at = params[k];
        }
        free(an);
    }
    fprintf(stderr, "check_autograd: finite differences%s: worst relative "
                    "error %.2g (%s)\n",
            with_norm ? " with layer_norm" : "", worst, at);
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}

START_TEST(test_autograd_mlp_finite_differences)
{
    smlp_registry_t *reg = tu_fixture_registry();
    const char *ops[] = {"core.linear", "core.gelu", "core.add", "core.mean",
                         "core.softmax_cross_entropy"};
    struct smlp_error err;
    int k, norm;

    ck_assert_int_eq(smlp_registry_load(reg, "core", &err), SMLP_OK);
    for (k = 0; k < 5; k++)
        if (!has_backward(reg, ops[k])) {
            fprintf(stderr, "check_autograd: %s has no backward yet, "
                            "finite-difference test skipped\n",
                    ops[k]);
            smlp_registry_destroy(reg);
            return;
        }
    norm = smlp_registry_load(reg, "norm", &err) == SMLP_OK &&
           has_backward(reg, "norm.layer_norm");
    if (!norm)
        fprintf(stderr, "check_autograd: norm.layer_norm has no backward "
                        "yet, checked without it\n");
    smlp_registry_destroy(reg);
    check_fd(0, 2);
    if (norm)
        check_fd(1, 1);
}
END_TEST

/* ---- shipped graphs ------------------------------------------------------ */

/*
 * graphs/NAME.json with a loss head (labels input, softmax cross-entropy
 * on "logits") added by $PYTHON3, compiled with flatc.  0 without Python.
 */
static int
shipped_with_loss(const char *name, char *out, size_t len)
{
    static const char *const script =
        "import json, sys\n"
        "g = json.load(open(sys.argv[1]))\n"
        "names = [t['name'] for t in g['tensors']]\n"
        "n = len(names)\n"
        "g['tensors'].append({'name': 'labels', 'kind': 'Input',\n"
        "    'dtype': 'I32', 'shape': [-1], 'init': {'kind': 'Uniform',\n"
        "    'a': 0, 'b': 9.4, 'seed': 7}})\n"
        "g['tensors'].append({'name': 'loss', 'kind': 'Output'})\n"
        "g['nodes'].append({'name': 'loss',\n"
        "    'op': 'core.softmax_cross_entropy',\n"
        "    'inputs': [names.index('logits'), n], 'outputs': [n + 1]})\n"
        "json.dump(g, open(sys.argv[2], 'w'))\n";
    const char *py = getenv("PYTHON3"), *dir;
    char spath[512], jpath[512], cmd[2048];

    if (py == NULL || py[0] == '\0' || strcmp(py, ":") == 0)
        return 0;
    dir = tu_tmpdir();
    snprintf(spath, sizeof(spath), "%s/addloss.py", dir);
    tu_write(spath, script, strlen(script));
    snprintf(jpath, sizeof(jpath), "%s/%s.json", dir, name);
    snprintf(cmd, sizeof(cmd), "'%s' '%s' '%s/graphs/%s.json' '%s'", py,
             spath, tu_srcdir(), name, jpath);
    ck_assert_msg(system(cmd) == 0, "failed: %s", cmd);
    snprintf(cmd, sizeof(cmd), "'%s' -b -o '%s' '%s/schemas/graph.fbs' '%s'",
             tu_env("FLATC", "flatc"), dir, tu_srcdir(), jpath);
    ck_assert_msg(system(cmd) == 0, "flatc failed: %s", cmd);
    snprintf(out, len, "%s/%s.fbs", dir, name);
    return 1;
}

/* The head starts at zero in the shipped graphs: no gradient would get
 * past it.  Small fixed values instead. */
static void
set_head(smlp_session_t *s)
{
    struct smlp_tensor t;
    int64_t i, n;

    ck_assert_int_eq(smlp_session_tensor(s, "head.weight", &t), SMLP_OK);
    n = t.shape[0] * t.shape[1];
    for (i = 0; i < n; i++)
        ((float *)t.data)[i] = 0.05f * (float)((i * 7919) % 17 - 8) / 8.0f;
}

/*
 * Whole shipped graphs (mixer: linear, gelu, layer_norm, patch embedding;
 * sparse: MoE gates with integer routing outputs, dispatch, expert FFNs,
 * combine, reshape views): every parameter gets a gradient, and they are
 * bit-identical for 1 and 2 threads, run after run.
 */
static void
check_shipped(const char *name)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct smlp_session_opts o;
    struct smlp_error err;
    smlp_session_t *s[2];
    smlp_graph_t *g;
    char path[512];
    int r, i, k, n_params;

    if (!shipped_with_loss(name, path, sizeof(path))) {
        fprintf(stderr, "check_autograd: no PYTHON3, %s skipped\n", name);
        smlp_registry_destroy(reg);
        return;
    }
    g = smlp_graph_load(path, &err);
    ck_assert_msg(g != NULL, "%s", err.msg);
    for (i = 0; i < 2; i++) {
        smlp_session_opts_init(&o);
        o.batch = 4;
        o.training = 1;
        o.loss = "loss";
        o.threads = i + 1;
        s[i] = smlp_session_create(g, reg, &o, &err);
        ck_assert_msg(s[i] != NULL, "%s", err.msg);
        set_head(s[i]);
    }
    n_params = smlp_session_tensor_count(s[0], 1);
    ck_assert_int_gt(n_params, 10);
    for (r = 0; r < 2; r++) {
        run_backward(s[0]);
        run_backward(s[1]);
        for (k = 0; k < n_params; k++) {
            const char *p = smlp_session_tensor_name(s[0], 1, k);
            struct smlp_tensor g0, g1;
            int64_t j, n = 1, nonzero = 0;

            ck_assert_int_eq(smlp_session_grad(s[0], p, &g0), SMLP_OK);
            ck_assert_int_eq(smlp_session_grad(s[1], p, &g1), SMLP_OK);
            for (j = 0; j < g0.rank; j++)
                n *= g0.shape[j];
            ck_assert_msg(memcmp(g0.data, g1.data,
                                 (size_t)n * sizeof(float)) == 0,
                          "%s: d %s differs between 1 and 2 threads", name,
                          p);
            for (j = 0; j < n && !nonzero; j++)
                nonzero = ((const float *)g0.data)[j] != 0.0f;
            ck_assert_msg(nonzero, "%s: d %s is all zero", name, p);
        }
    }
    smlp_session_destroy(s[0]);
    smlp_session_destroy(s[1]);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}

START_TEST(test_autograd_shipped_mixer)
{
    check_shipped("mixer_fmnist");
}
END_TEST

START_TEST(test_autograd_shipped_sparse)
{
    check_shipped("sparse_mlp_fmnist");
}
END_TEST

static Suite *
autograd_fd_suite(void)
{
    Suite *s = suite_create("autograd_fd");
    TCase *tc;

    tc = tcase_create("finite_differences");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_autograd_mlp_finite_differences);
    suite_add_tcase(s, tc);
    tc = tcase_create("shipped");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_autograd_shipped_mixer);
    tcase_add_test(tc, test_autograd_shipped_sparse);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(autograd_fd_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
