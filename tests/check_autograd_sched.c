/*
 * check_autograd_sched.c - the backward's schedule and memory
 * (runtime/autograd.c, sched.c, plan.c) through the fixture plugin
 * tests/plugins/gradfix.c: bit-identical gradients over thread counts
 * and repeated calls, wide backward trees, saved values freed by the
 * plan, the first failure kept, inter-op concurrency bounds, backward
 * workspaces and the reuse edges of the plan.
 */
#include <math.h>
#include <stdint.h>

#include "gradgraph.h"

/* ---- determinism and memory --------------------------------------------- */

/* Several branches wide enough to run side by side, fan-out, noise. */
static void
wide_graph(struct gb *g, int branches)
{
    char n[64], a[64], b[64], c[64], w[64], prev[64];
    int k;

    gb_init(g);
    gb_tensor(g, "x", "Input", "[4096]", NULL);
    gb_param(g, "shared", "[4096]", 99);
    snprintf(prev, sizeof(prev), "-");
    for (k = 0; k < branches; k++) {
        snprintf(w, sizeof(w), "w%d", k);
        gb_param(g, w, "[4096]", k + 1);
        snprintf(a, sizeof(a), "a%d", k);
        snprintf(b, sizeof(b), "b%d", k);
        snprintf(c, sizeof(c), "c%d", k);
        snprintf(n, sizeof(n), "m%d", k);
        gb_tensor(g, a, "Activation", NULL, NULL);
        gb_tensor(g, b, "Activation", NULL, NULL);
        snprintf(n, sizeof(n), "mask%d", k);
        gb_tensor(g, n, "Activation", NULL, NULL);
        gb_tensor(g, c, "Activation", NULL, NULL);
        snprintf(n, sizeof(n), "mul%d", k);
        {
            char ins[160], outs[160];
            snprintf(ins, sizeof(ins), "x %s", w);
            gb_node(g, n, "gradfix.mul", ins, a, NULL);
            snprintf(n, sizeof(n), "noise%d", k);
            snprintf(outs, sizeof(outs), "%s mask%d", b, k);
            gb_node(g, n, "gradfix.noise", a, outs, NULL);
            snprintf(n, sizeof(n), "sh%d", k);
            snprintf(ins, sizeof(ins), "%s shared", b);
            gb_node(g, n, "gradfix.mul", ins, c, NULL);
        }
        if (k > 0) {
            char acc[64], ins[160];
            snprintf(acc, sizeof(acc), "acc%d", k);
            gb_tensor(g, acc, "Activation", NULL, NULL);
            snprintf(ins, sizeof(ins), "%s %s", k == 1 ? "c0" : prev, c);
            snprintf(n, sizeof(n), "sum%d", k);
            gb_node(g, n, "gradfix.add", ins, acc, NULL);
            snprintf(prev, sizeof(prev), "%s", acc);
        }
    }
    gb_tensor(g, "loss", "Output", NULL, NULL);
    gb_node(g, "ss", "gradfix.square_sum", prev, "loss", NULL);
}

START_TEST(test_autograd_threads_bit_identical)
{
    smlp_registry_t *reg = tu_fixture_registry();
    static const int widths[] = {6, 16};
    struct gb gb;
    char path[512], name[16];
    smlp_graph_t *g;
    smlp_session_t *s1, *s2;
    struct smlp_session_stats st;
    int r, k, wi;

    /* 16 branches: many small backwards ready at once, which the
     * scheduler hands to the pool in batches (sched.c). */
    for (wi = 0; wi < 2; wi++) {
        wide_graph(&gb, widths[wi]);
        g = gb_load(&gb, P_GRADFIX, path, sizeof(path));
        s1 = must_session(g, reg, "loss", NULL, 1);
        s2 = must_session(g, reg, "loss", NULL, 2);
        ck_assert_int_eq(smlp_session_get_stats(s2, &st), SMLP_OK);
        ck_assert_int_eq(st.inter_op, 2);
        for (r = 0; r < 3; r++) {
            run_backward(s1);
            run_backward(s2);
            assert_bits(grad(s2, "shared"), grad(s1, "shared"), 4096,
                        "shared");
            for (k = 0; k < widths[wi]; k++) {
                snprintf(name, sizeof(name), "w%d", k);
                assert_bits(grad(s2, name), grad(s1, name), 4096, name);
            }
        }
        smlp_session_destroy(s1);
        smlp_session_destroy(s2);
        smlp_graph_unload(g);
    }
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * A wide backward: loss = sum (Σ_i x * w_i)^2 with the 32 products summed
 * by a binary tree of adds.  The backward fans out level by level (16
 * adds, then 32 products ready at once), so on 2 threads the scheduler
 * hands its small backwards to the pool in batches (sched.c).  Every
 * dw_i = (2 r) x, r the root: the add backwards pass gradients unchanged.
 */
START_TEST(test_autograd_wide_backward_tree)
{
    enum { LEAVES = 32, N = 512 };
    smlp_registry_t *reg = tu_fixture_registry();
    struct gb gb;
    char path[512], name[16], ins[64], out[16];
    smlp_graph_t *g;
    smlp_session_t *s;
    struct smlp_session_stats st;
    float *level[LEAVES], want[N], *x;
    int i, j, k, width, id = 0, threads;

    gb_init(&gb);
    gb_tensor(&gb, "x", "Input", "[512]", NULL);
    for (i = 0; i < LEAVES; i++) {
        snprintf(name, sizeof(name), "w%d", i);
        gb_param(&gb, name, "[512]", i + 1);
        snprintf(out, sizeof(out), "t%d", id++);
        gb_tensor(&gb, out, "Activation", NULL, NULL);
        snprintf(ins, sizeof(ins), "x %s", name);
        snprintf(name, sizeof(name), "mul%d", i);
        gb_node(&gb, name, "gradfix.mul", ins, out, NULL);
    }
    /* Level l reads t[base .. base + width) pairwise. */
    for (width = LEAVES, k = 0; width > 1; k += width, width /= 2)
        for (i = 0; i < width / 2; i++) {
            snprintf(out, sizeof(out), "t%d", id++);
            gb_tensor(&gb, out, "Activation", NULL, NULL);
            snprintf(ins, sizeof(ins), "t%d t%d", k + 2 * i, k + 2 * i + 1);
            snprintf(name, sizeof(name), "add%d", id);
            gb_node(&gb, name, "gradfix.add", ins, out, NULL);
        }
    gb_tensor(&gb, "loss", "Output", NULL, NULL);
    snprintf(ins, sizeof(ins), "t%d", id - 1);
    gb_node(&gb, "ss", "gradfix.square_sum", ins, "loss", NULL);
    g = gb_load(&gb, P_GRADFIX, path, sizeof(path));
    for (threads = 1; threads <= 2; threads++) {
        s = must_session(g, reg, "loss", NULL, threads);
        ck_assert_int_eq(smlp_session_get_stats(s, &st), SMLP_OK);
        ck_assert_int_eq(st.inter_op, threads);
        run_backward(s);
        x = data(s, "x");
        for (i = 0; i < LEAVES; i++) {
            snprintf(name, sizeof(name), "w%d", i);
            level[i] = malloc(N * sizeof(float));
            ck_assert_ptr_nonnull(level[i]);
            for (j = 0; j < N; j++)
                level[i][j] = x[j] * data(s, name)[j];
        }
        for (width = LEAVES; width > 1; width /= 2)
            for (i = 0; i < width / 2; i++)
                for (j = 0; j < N; j++)
                    level[i][j] = level[2 * i][j] + level[2 * i + 1][j];
        for (j = 0; j < N; j++)
            want[j] = ((2.0f * level[0][j]) * 1.0f) * x[j];
        for (i = 0; i < LEAVES; i++) {
            snprintf(name, sizeof(name), "w%d", i);
            assert_bits(grad(s, name), want, N, name);
            free(level[i]);
        }
        smlp_session_destroy(s);
    }
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * A chain t_i = t_(i-1) * w_i (i = 1..k, t_0 = x), loss = sum t_k^2, each
 * tensor B bytes.  Saved values die at their last backward read, so the
 * peak is the first backward step: x and t_1..t_k, the gradient of t_k,
 * square_sum's workspace, and the loss and its gradient (64 bytes each):
 * (k + 3) B + 128.  Keeping everything until the end of the backward would
 * need every t_i and every gradient at once.
 */
START_TEST(test_autograd_plan_frees_saved_values)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct smlp_session_stats st, fwd;
    struct smlp_session_opts o;
    struct smlp_error err;
    struct gb gb;
    char path[512], name[32], prev[32], ins[80];
    smlp_graph_t *g;
    smlp_session_t *s;
    const uint64_t B = 4032; /* 1000 floats, 64-byte aligned */
    const int k = 6;
    int i;

    gb_init(&gb);
    gb_tensor(&gb, "x", "Input", "[1000]", NULL);
    snprintf(prev, sizeof(prev), "x");
    for (i = 1; i <= k; i++) {
        snprintf(name, sizeof(name), "w%d", i);
        gb_param(&gb, name, "[1000]", i);
        snprintf(name, sizeof(name), "t%d", i);
        gb_tensor(&gb, name, "Activation", NULL, NULL);
        snprintf(ins, sizeof(ins), "%s w%d", prev, i);
        snprintf(name, sizeof(name), "mul%d", i);
        snprintf(prev, sizeof(prev), "t%d", i);
        gb_node(&gb, name, "gradfix.mul", ins, prev, NULL);
    }
    gb_tensor(&gb, "loss", "Output", NULL, NULL);
    gb_node(&gb, "ss", "gradfix.square_sum", prev, "loss", NULL);
    g = gb_load(&gb, P_GRADFIX, path, sizeof(path));
    s = must_session(g, reg, "loss", NULL, 1);
    ck_assert_int_eq(smlp_session_get_stats(s, &st), SMLP_OK);
    ck_assert_uint_eq(st.lower_bound, (k + 3) * B + 128);
    ck_assert_uint_ge(st.arena_bytes, st.lower_bound);
    ck_assert_uint_lt(st.arena_bytes, (2 * k + 1) * B + 128);
    run_backward(s);
    smlp_session_destroy(s);
    /* The parameters' gradients count against max_memory. */
    smlp_session_opts_init(&o);
    o.training = 1;
    o.loss = "loss";
    o.max_memory = st.arena_bytes + st.param_bytes + k * B - 1;
    ck_assert_ptr_null(smlp_session_create(g, reg, &o, &err));
    ck_assert_int_eq(err.status, SMLP_ELIMIT);
    tu_assert_contains(err.msg, " + gradients 24192), over the memory limit");
    o.max_memory++;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    smlp_session_destroy(s);
    /* The forward alone (no loss): x and two t's at most. */
    smlp_session_opts_init(&o);
    o.training = 1;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    ck_assert_int_eq(smlp_session_get_stats(s, &fwd), SMLP_OK);
    ck_assert_uint_eq(fwd.lower_bound, 3 * B);
    ck_assert_uint_lt(fwd.arena_bytes, st.arena_bytes);
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/* ---- the scheduler and the plan, through fixture ops that watch ---------- */

/*
 * A training session of g with `threads` threads that must run `inter`
 * nodes at once.
 */
static smlp_session_t *
session_inter(const smlp_graph_t *g, smlp_registry_t *reg, int threads,
              int inter)
{
    smlp_session_t *s = must_session(g, reg, "loss", NULL, threads);
    struct smlp_session_stats st;

    ck_assert_int_eq(smlp_session_get_stats(s, &st), SMLP_OK);
    ck_assert_int_eq(st.inter_op, inter);
    return s;
}

/* An inference session of g on `threads` threads; it must be created. */
static smlp_session_t *
infer_session(const smlp_graph_t *g, smlp_registry_t *reg, int threads)
{
    struct smlp_session_opts o;
    struct smlp_error err;
    smlp_session_t *s;

    smlp_session_opts_init(&o);
    o.threads = threads;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    return s;
}

/* Asserts s's plan: its arena (and lower bound) and nodes at once. */
static void
expect_plan(smlp_session_t *s, uint64_t arena, int inter)
{
    struct smlp_session_stats st;

    ck_assert_int_eq(smlp_session_get_stats(s, &st), SMLP_OK);
    ck_assert_uint_eq(st.lower_bound, arena);
    ck_assert_uint_eq(st.arena_bytes, arena);
    ck_assert_int_eq(st.inter_op, inter);
}

/* Sets the input x [64] of s to x[i] = a i + b (exact in f32 for the
 * quarters used here), runs s and returns x. */
static const float *
run_ramp(smlp_session_t *s, float a, float b)
{
    float *x = data(s, "x");
    int i;

    for (i = 0; i < 64; i++)
        x[i] = a * (float)i + b;
    ck_assert_msg(smlp_session_run(s) == SMLP_OK, "%s",
                  smlp_session_errmsg(s));
    return x;
}

/*
 * loss = gradfix.sum(op(w0), .., op(w3)) with nodes named na, nb, nc, nd
 * (n = prefix), op gradfix.fail (the kernel fails) or gradfix.bfail (the
 * backward fails).
 */
static smlp_graph_t *
four_failing(const char *op, char prefix, char *path, size_t len)
{
    struct gb gb;
    char name[8], w[8], f[8];
    int i;

    gb_init(&gb);
    for (i = 0; i < 4; i++) {
        snprintf(w, sizeof(w), "w%d", i);
        gb_param(&gb, w, "[4]", i + 1);
        snprintf(f, sizeof(f), "f%d", i);
        gb_tensor(&gb, f, "Activation", NULL, NULL);
        snprintf(name, sizeof(name), "%c%c", prefix, 'a' + i);
        gb_node(&gb, name, op, w, f, NULL);
    }
    gb_tensor(&gb, "loss", "Output", NULL, NULL);
    gb_node(&gb, "sum", "gradfix.sum", "f0 f1 f2 f3", "loss", NULL);
    return gb_load(&gb, P_GRADFIX, path, len);
}

/*
 * Two nodes fail in one run: the session keeps the first failure's
 * message.  Four failing nodes (or backwards) are ready at once on 2
 * runners; the scheduler takes the lowest step first and hands the small
 * ones to the pool in batches of an even share per free runner
 * (sched.c's make_batch): {na, nb} and {nc, nd} in the forward, and in
 * the backward (reverse order) {bd, bc} and {bb, ba}.  A work item runs
 * its whole batch and reports its nodes in order, so whichever item
 * comes back first, the first failure reported is the first node of a
 * batch; the second of each batch, and the other item, fail later.
 * Both items are in flight when the first failure comes back, so a
 * later failure always follows it.
 */
START_TEST(test_autograd_first_failure_kept)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct smlp_optim_opts oo;
    struct smlp_error err;
    smlp_optim_t *opt;
    float w0;
    char path[512];
    smlp_graph_t *g;
    smlp_session_t *s;
    const char *msg;
    int r;

    g = four_failing("gradfix.fail", 'n', path, sizeof(path));
    s = session_inter(g, reg, 2, 2);
    for (r = 0; r < 3; r++) {
        ck_assert_int_eq(smlp_session_run(s), SMLP_EKERNEL);
        msg = smlp_session_errmsg(s);
        tu_assert_contains(msg, "(gradfix.fail) failed: fails on purpose");
        ck_assert_msg(strstr(msg, "'na'") != NULL ||
                          strstr(msg, "'nc'") != NULL,
                      "not the first failure: %s", msg);
    }
    smlp_session_destroy(s);
    smlp_graph_unload(g);

    g = four_failing("gradfix.bfail", 'b', path, sizeof(path));
    s = session_inter(g, reg, 2, 2);
    smlp_optim_opts_init(&oo);
    opt = smlp_optim_create(s, &oo, &err);
    ck_assert_msg(opt != NULL, "%s", err.msg);
    w0 = data(s, "w0")[0];
    for (r = 0; r < 3; r++) {
        ck_assert_msg(smlp_session_run(s) == SMLP_OK, "%s",
                      smlp_session_errmsg(s));
        ck_assert_int_eq(smlp_session_backward(s), SMLP_EKERNEL);
        msg = smlp_session_errmsg(s);
        tu_assert_contains(msg, "(gradfix.bfail): backward failed: fails "
                                "on purpose");
        ck_assert_msg(strstr(msg, "'bd'") != NULL ||
                          strstr(msg, "'bb'") != NULL,
                      "not the first failure: %s", msg);
        /* A failed backward leaves no gradients to apply (smlp.h,
         * smlp_optim_step): nothing is updated. */
        ck_assert_int_eq(smlp_optim_step(opt, 0.5, NULL), SMLP_EINVAL);
        ck_assert_int_eq(smlp_optim_steps(opt), 0);
        ck_assert_float_eq(data(s, "w0")[0], w0);
    }
    smlp_optim_destroy(opt);
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * At most inter_op nodes run at once, forward and backward: six
 * gradfix.count nodes (w_i -> c_i, summed into the loss) are ready
 * together, too big to be batched; each fails when it sees more than
 * `limit` (= the session's inter_op) of them running, and waits 30 ms
 * (while within the limit) so that any started together overlap.  The
 * count is an upper bound that no schedule of a correct host exceeds.
 */
START_TEST(test_autograd_inter_op_bounds_concurrency)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct gb gb;
    char path[512], name[16], node[16], w_i[16], attr[64], ins[64] = "";
    smlp_graph_t *g;
    smlp_session_t *s;
    float *w;
    int i, r, threads;

    for (threads = 2; threads <= 3; threads++) {
        gb_init(&gb);
        snprintf(attr, sizeof(attr),
                 "{\"name\": \"limit\", \"type\": \"Int\", \"i\": %d}",
                 threads);
        ins[0] = '\0';
        for (i = 0; i < 6; i++) {
            snprintf(name, sizeof(name), "w%d", i);
            gb_param(&gb, name, "[4]", i + 1);
            snprintf(name, sizeof(name), "c%d", i);
            gb_tensor(&gb, name, "Activation", NULL, NULL);
            gb_cat(ins, sizeof(ins), i ? " " : "");
            gb_cat(ins, sizeof(ins), name);
            snprintf(node, sizeof(node), "count%d", i);
            snprintf(w_i, sizeof(w_i), "w%d", i);
            gb_node(&gb, node, "gradfix.count", w_i, name, attr);
        }
        gb_tensor(&gb, "loss", "Output", NULL, NULL);
        gb_node(&gb, "sum", "gradfix.sum", ins, "loss", NULL);
        g = gb_load(&gb, P_GRADFIX, path, sizeof(path));
        /* 7 nodes, the longest path 2: parallelism 3.5. */
        s = session_inter(g, reg, threads, threads);
        for (r = 0; r < 2; r++) {
            run_backward(s);
            /* d loss / d w_i = 1 through the copies. */
            for (i = 0; i < 6; i++) {
                snprintf(name, sizeof(name), "w%d", i);
                w = grad(s, name);
                ck_assert_float_eq(w[0], 1.0f);
                ck_assert_float_eq(w[3], 1.0f);
            }
        }
        smlp_session_destroy(s);
        smlp_graph_unload(g);
    }
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * The backward's workspace holds at least the forward's (smlp_plugin.h,
 * backward_workspace): gradfix.fwdws asks for a forward workspace only
 * and its backward fails with less.  L = sum (2 (x w))^2:
 * dL/dw = (2 (2b * 1)) x with b = 2 (x w), in the fixture's order.
 */
START_TEST(test_autograd_bwd_workspace_covers_forward)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct gb gb;
    char path[512];
    smlp_graph_t *g;
    smlp_session_t *s;
    float want[48], *x, *w, b;
    int i, threads;

    gb_init(&gb);
    gb_tensor(&gb, "x", "Input", "[48]", NULL);
    gb_param(&gb, "w", "[48]", 3);
    gb_tensor(&gb, "a", "Activation", NULL, NULL);
    gb_tensor(&gb, "b", "Activation", NULL, NULL);
    gb_tensor(&gb, "loss", "Output", NULL, NULL);
    gb_node(&gb, "mul", "gradfix.mul", "x w", "a", NULL);
    gb_node(&gb, "ws", "gradfix.fwdws", "a", "b", NULL);
    gb_node(&gb, "ss", "gradfix.square_sum", "b", "loss", NULL);
    g = gb_load(&gb, P_GRADFIX, path, sizeof(path));
    for (threads = 1; threads <= 2; threads++) {
        s = must_session(g, reg, "loss", NULL, threads);
        run_backward(s);
        x = data(s, "x");
        w = data(s, "w");
        for (i = 0; i < 48; i++) {
            b = 2.0f * (x[i] * w[i]);
            want[i] = (2.0f * ((2.0f * b) * 1.0f)) * x[i];
        }
        assert_bits(grad(s, "w"), want, 48, "dw");
        smlp_session_destroy(s);
    }
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * The forward's reuse edges (plan.c): a node writing bytes that an
 * earlier buffer held waits for every node that touched that buffer,
 * its last reader included.  Buffers x, z, a, r, b, y of 256 bytes:
 *
 *   side:  z = x * x     step 0     (an output: [0, end])
 *   dbl:   a = x + x          1     a lives [1, 2]
 *   watch: r = a + 1          2     (an output: [2, end])
 *   sq:    b = x * x          3     b fits exactly in a's old bytes
 *   out:   y = b + x          4
 *
 * sq does not read a, so only the plan's edges keep it from running
 * beside watch (the session runs 2 nodes at once: side is independent of
 * the rest).  gradfix.watch fails when its input changes while it runs
 * (it watches for 30 ms); x * x differs from 2x for every x here.
 */
START_TEST(test_autograd_reuse_edge_last_reader)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct gb gb;
    char path[512];
    smlp_graph_t *g;
    smlp_session_t *s;
    const float *x, *r, *y;
    int i, run;

    gb_init(&gb);
    gb_tensor(&gb, "x", "Input", "[64]", NULL);
    gb_tensor(&gb, "z", "Output", NULL, NULL);
    gb_tensor(&gb, "a", "Activation", NULL, NULL);
    gb_tensor(&gb, "r", "Output", NULL, NULL);
    gb_tensor(&gb, "b", "Activation", NULL, NULL);
    gb_tensor(&gb, "y", "Output", NULL, NULL);
    gb_node(&gb, "side", "gradfix.mul", "x x", "z", NULL);
    gb_node(&gb, "dbl", "gradfix.add", "x x", "a", NULL);
    gb_node(&gb, "watch", "gradfix.watch", "a", "r", NULL);
    gb_node(&gb, "sq", "gradfix.mul", "x x", "b", NULL);
    gb_node(&gb, "out", "gradfix.add", "b x", "y", NULL);
    g = gb_load(&gb, P_GRADFIX, path, sizeof(path));
    s = infer_session(g, reg, 2);
    /* 6 buffers of 256 bytes, 5 live at step 4 (x, z, r, b, y): the
     * arena holds no more only if b took a's bytes. */
    expect_plan(s, 5 * 256, 2);
    for (run = 0; run < 3; run++) {
        x = run_ramp(s, 0.25f, 0.75f * (float)run - 5.125f);
        r = data(s, "r");
        y = data(s, "y");
        for (i = 0; i < 64; i++) {
            ck_assert_float_eq(r[i], (x[i] + x[i]) + 1.0f);
            ck_assert_float_eq(y[i], x[i] * x[i] + x[i]);
        }
    }
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * The forward's reuse edges, read through the split they give
 * (session.c, choose_threads): p, the average parallelism, follows data
 * and reuse edges, and on 2 threads with small kernels 1 node x 2
 * threads scores 2 * 0.5 = 1 and 2 nodes x 1 thread min(2, p), so
 * inter_op is 2 exactly when p > 1.  Every node here weighs the same
 * (2^16 + 16 * 64 elements, no MACs).  No timing: the plan's edges, or
 * their absence, decide it.  Buffers of 256 bytes:
 *
 *   dbl:   a = x + x     step 0     a lives [0, 1]
 *   watch: r = a + 1          1     (an output: [1, end])
 *   sq:    b = x * x          2     b lives [2, 3], in a's old bytes
 *   out:   y = b + x          3
 *
 * The data edges make two chains (dbl, watch) and (sq, out), two nodes
 * per level: the session adds the plan's edges (2 threads, width 2).
 * sq reuses a's bytes, so it waits for dbl and for watch, the last reader
 * of a: one chain of 4, p = 1, inter_op 1.  Without the edge from watch
 * (sq after dbl only), p = 4 / 3 (the longest path dbl, sq, out); with
 * no edges, 4 / 2 = 2; either way inter_op 2.  The control: with a an
 * output (it lives to the end), b cannot take its bytes, no edge
 * orders the chains, p = 2, inter_op 2.
 */
static smlp_session_t *
reuse_chain_session(smlp_registry_t *reg, int a_output, int threads,
                    smlp_graph_t **g)
{
    struct gb gb;
    char path[512];

    gb_init(&gb);
    gb_tensor(&gb, "x", "Input", "[64]", NULL);
    gb_tensor(&gb, "a", a_output ? "Output" : "Activation", NULL, NULL);
    gb_tensor(&gb, "r", "Output", NULL, NULL);
    gb_tensor(&gb, "b", "Activation", NULL, NULL);
    gb_tensor(&gb, "y", "Output", NULL, NULL);
    gb_node(&gb, "dbl", "gradfix.add", "x x", "a", NULL);
    gb_node(&gb, "watch", "gradfix.watch", "a", "r", NULL);
    gb_node(&gb, "sq", "gradfix.mul", "x x", "b", NULL);
    gb_node(&gb, "out", "gradfix.add", "b x", "y", NULL);
    *g = gb_load(&gb, P_GRADFIX, path, sizeof(path));
    return infer_session(*g, reg, threads);
}

START_TEST(test_autograd_reuse_edges_chain_split)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct smlp_session_stats st;
    smlp_graph_t *g;
    smlp_session_t *s;
    const float *x, *r, *y;
    int i;

    s = reuse_chain_session(reg, 0, 2, &g);
    /* 5 buffers of 256 bytes; 4 live at step 3 (x, r, b, y): the arena
     * holds no more only if b took a's bytes. */
    expect_plan(s, 4 * 256, 1);
    ck_assert_int_eq(smlp_session_get_stats(s, &st), SMLP_OK);
    ck_assert_int_eq(st.intra_op, 2);
    /* The values, for good measure (one node at a time: no race). */
    x = run_ramp(s, 0.25f, -5.125f);
    r = data(s, "r");
    y = data(s, "y");
    for (i = 0; i < 64; i++) {
        ck_assert_float_eq(r[i], (x[i] + x[i]) + 1.0f);
        ck_assert_float_eq(y[i], x[i] * x[i] + x[i]);
    }
    smlp_session_destroy(s);
    smlp_graph_unload(g);

    /* The control: no reuse, no edge, the two chains side by side. */
    s = reuse_chain_session(reg, 1, 2, &g);
    ck_assert_int_eq(smlp_session_get_stats(s, &st), SMLP_OK);
    ck_assert_uint_eq(st.arena_bytes, 5 * 256);
    ck_assert_int_eq(st.inter_op, 2);
    ck_assert_int_eq(st.intra_op, 1);
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * The same through a workspace, a buffer that only its node touches (it
 * is the first and the last toucher): fw's workspace lives [0, 0], and
 * sq's output takes its bytes.  Buffers of 256 bytes:
 *
 *   fw:  f = 2 x (through a workspace)   step 0 (f an output)
 *   sq:  p = x * x                            1 p lives [1, 2]
 *   out: y = p + x                            2
 *
 * Data levels: fw and sq 0, out 1 (width 2: the session adds the plan's
 * edges).  With the edge fw -> sq, one chain of 3: p = 1, inter_op 1 (as
 * above, 2 threads and small kernels).  Without it, fw beside (sq, out):
 * p = 3 / 2, inter_op 2.
 */
START_TEST(test_autograd_reuse_edge_workspace)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct gb gb;
    char path[512];
    smlp_graph_t *g;
    smlp_session_t *s;
    const float *x, *f, *y;
    int i;

    gb_init(&gb);
    gb_tensor(&gb, "x", "Input", "[64]", NULL);
    gb_tensor(&gb, "f", "Output", NULL, NULL);
    gb_tensor(&gb, "p", "Activation", NULL, NULL);
    gb_tensor(&gb, "y", "Output", NULL, NULL);
    gb_node(&gb, "fw", "gradfix.fwdws", "x", "f", NULL);
    gb_node(&gb, "sq", "gradfix.mul", "x x", "p", NULL);
    gb_node(&gb, "out", "gradfix.add", "p x", "y", NULL);
    g = gb_load(&gb, P_GRADFIX, path, sizeof(path));
    s = infer_session(g, reg, 2);
    /* x, f, y and the workspace or p: 4 x 256 bytes only if p took the
     * workspace's bytes. */
    expect_plan(s, 4 * 256, 1);
    x = run_ramp(s, 0.5f, -7.25f);
    f = data(s, "f");
    y = data(s, "y");
    for (i = 0; i < 64; i++) {
        ck_assert_float_eq(f[i], 2.0f * x[i]);
        ck_assert_float_eq(y[i], x[i] * x[i] + x[i]);
    }
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * The same for the backward's reuse edges (plan.c,
 * smlp__plan_add_backward_edges): a backward writing bytes that an
 * earlier buffer held waits for every backward that touched it, the last
 * one included.  Two branches, A and B, each of 256-byte tensors:
 *
 *   node    forward          backward step
 *   mulA:   a = x * w1       11
 *   mulB:   p = x * w2       10
 *   watchB: q = p + 1         9: writes dp, d loss / d p
 *   watchA: c = a + 1         8: the last to read c and dc
 *   add:    e = c + q         7
 *   ss:     loss = sum e^2    6
 *
 * c dies at step 8 and the plan gives dp its bytes (the first free 256
 * bytes when dp is placed).  watchB's backward needs nothing of watchA's,
 * so only the plan's edge orders it after watchA's, the last reader of c.
 * Each watch backward watches its tensors for 30 ms and fails when one
 * changes.  dL/dw_i = (2e * 1) x: the watches pass gradients through.
 */
START_TEST(test_autograd_backward_reuse_edge_last_reader)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct gb gb;
    char path[512];
    smlp_graph_t *g;
    smlp_session_t *s;
    float want[64], *x, *w1, *w2, e;
    int i, r;

    gb_init(&gb);
    gb_tensor(&gb, "x", "Input", "[64]", NULL);
    gb_param(&gb, "w1", "[64]", 1);
    gb_param(&gb, "w2", "[64]", 2);
    gb_tensor(&gb, "p", "Activation", NULL, NULL);
    gb_tensor(&gb, "q", "Activation", NULL, NULL);
    gb_tensor(&gb, "a", "Activation", NULL, NULL);
    gb_tensor(&gb, "c", "Activation", NULL, NULL);
    gb_tensor(&gb, "e", "Activation", NULL, NULL);
    gb_tensor(&gb, "loss", "Output", NULL, NULL);
    gb_node(&gb, "mulA", "gradfix.mul", "x w1", "a", NULL);
    gb_node(&gb, "mulB", "gradfix.mul", "x w2", "p", NULL);
    gb_node(&gb, "watchB", "gradfix.watch", "p", "q", NULL);
    gb_node(&gb, "watchA", "gradfix.watch", "a", "c", NULL);
    gb_node(&gb, "add", "gradfix.add", "c q", "e", NULL);
    gb_node(&gb, "ss", "gradfix.square_sum", "e", "loss", NULL);
    g = gb_load(&gb, P_GRADFIX, path, sizeof(path));
    s = session_inter(g, reg, 2, 2);
    for (r = 0; r < 3; r++) {
        run_backward(s);
        x = data(s, "x");
        w1 = data(s, "w1");
        w2 = data(s, "w2");
        for (i = 0; i < 64; i++) {
            e = (x[i] * w1[i] + 1.0f) + (x[i] * w2[i] + 1.0f);
            want[i] = ((2.0f * e) * 1.0f) * x[i];
        }
        assert_bits(grad(s, "w1"), want, 64, "dw1");
        assert_bits(grad(s, "w2"), want, 64, "dw2");
    }
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * The backward's reuse edges cover saved bytes (ABI 1.2) too: they live
 * from their node's forward to its backward, and a later backward that
 * gets their bytes waits for that backward.  Two branches, loss = lc +
 * lq:
 *
 *   node    forward                 backward step
 *   mulB:   p = xb * w2   (16)      13: writes dw2
 *   watchB: q = p + 1     (16)      12: writes dp and a workspace
 *   stash:  s = 3 w1      (256)     11: reads its saved copy of w1
 *   watchA: c = s + 1     (256)     10: 30 ms of watching
 *   sumA:   lc = sum c               9
 *   sumB:   lq = sum q               8
 *   add:    loss = lc + lq           7
 *
 * s is an output, so only the saved copy (1 KiB) dies at step 11, and the
 * plan gives its bytes to the 64-byte dp and workspace that watchB's
 * backward writes at step 12 (the arena is then the lower bound, 6464
 * bytes).  watchA's and watchB's backwards are ready together, and
 * stash's waits for watchA's: only the plan's edge from stash's backward
 * keeps watchB's from overwriting the copy before stash's backward
 * compares it with w1 (it fails when they differ).  The gradients pass
 * through unchanged but for stash's 3: dw1 = 3, dw2 = xb.
 */
START_TEST(test_autograd_backward_reuse_edge_saved)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct gb gb;
    char path[512];
    smlp_graph_t *g;
    smlp_session_t *s;
    float want1[256], want2[16], *xb;
    int i, r;

    gb_init(&gb);
    gb_tensor(&gb, "xb", "Input", "[16]", NULL);
    gb_param(&gb, "w1", "[256]", 1);
    gb_param(&gb, "w2", "[16]", 2);
    gb_tensor(&gb, "p", "Activation", NULL, NULL);
    gb_tensor(&gb, "q", "Activation", NULL, NULL);
    gb_tensor(&gb, "s", "Output", NULL, NULL);
    gb_tensor(&gb, "c", "Activation", NULL, NULL);
    gb_tensor(&gb, "lc", "Activation", NULL, NULL);
    gb_tensor(&gb, "lq", "Activation", NULL, NULL);
    gb_tensor(&gb, "loss", "Output", NULL, NULL);
    gb_node(&gb, "mulB", "gradfix.mul", "xb w2", "p", NULL);
    gb_node(&gb, "watchB", "gradfix.watch", "p", "q", NULL);
    gb_node(&gb, "stash", "gradfix.stash", "w1", "s", NULL);
    gb_node(&gb, "watchA", "gradfix.watch", "s", "c", NULL);
    gb_node(&gb, "sumA", "gradfix.sum", "c", "lc", NULL);
    gb_node(&gb, "sumB", "gradfix.sum", "q", "lq", NULL);
    gb_node(&gb, "add", "gradfix.add", "lc lq", "loss", NULL);
    g = gb_load(&gb, P_GRADFIX, path, sizeof(path));
    s = session_inter(g, reg, 2, 2);
    expect_plan(s, 6464, 2);
    for (r = 0; r < 3; r++) {
        xb = data(s, "xb");
        for (i = 0; i < 16; i++)
            xb[i] = 0.25f * (float)i - 1.5f - (float)r;
        run_backward(s);
        for (i = 0; i < 256; i++)
            want1[i] = 3.0f;
        for (i = 0; i < 16; i++)
            want2[i] = xb[i];
        assert_bits(grad(s, "w1"), want1, 256, "dw1");
        assert_bits(grad(s, "w2"), want2, 16, "dw2");
    }
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

static Suite *
autograd_sched_suite(void)
{
    Suite *s = suite_create("autograd_sched");
    TCase *tc;

    tc = tcase_create("sched_plan");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_autograd_threads_bit_identical);
    tcase_add_test(tc, test_autograd_wide_backward_tree);
    tcase_add_test(tc, test_autograd_plan_frees_saved_values);
    tcase_add_test(tc, test_autograd_first_failure_kept);
    tcase_add_test(tc, test_autograd_inter_op_bounds_concurrency);
    tcase_add_test(tc, test_autograd_bwd_workspace_covers_forward);
    tcase_add_test(tc, test_autograd_reuse_edge_last_reader);
    tcase_add_test(tc, test_autograd_reuse_edges_chain_split);
    tcase_add_test(tc, test_autograd_reuse_edge_workspace);
    tcase_add_test(tc, test_autograd_backward_reuse_edge_last_reader);
    tcase_add_test(tc, test_autograd_backward_reuse_edge_saved);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(autograd_sched_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
