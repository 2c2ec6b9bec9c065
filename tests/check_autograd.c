/*
 * check_autograd.c - the autograd engine (runtime/autograd.c): gradients
 * of graphs of the fixture plugin tests/plugins/gradfix.c against values
 * derived by hand (bit for bit: the fixture's backwards and these tests
 * compute each element with the same float operations), fan-out sums in
 * their documented order, views, saved bytes, frozen parameters, errors
 * at creation, zeros for parameters the loss does not reach.  The
 * scheduler and memory plan of the backward: check_autograd_sched.c;
 * whole graphs against finite differences: check_autograd_fd.c.
 */
#include <math.h>
#include <stdint.h>
#include <time.h>

#include "gradgraph.h"

/* ---- hand-derived gradients -------------------------------------------- */

/* Writes the trace; checks whether it has the chain's backwards. */
static void
expect_trace(smlp_session_t *s, int backward)
{
    char path[512], buf[8192];
    size_t n;
    FILE *f;

    snprintf(path, sizeof(path), "%s/trace.json", tu_tmpdir());
    ck_assert_int_eq(smlp_session_write_trace(s, path), SMLP_OK);
    f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    tu_assert_contains(buf, "{\"name\": \"mul\", \"cat\": \"gradfix.mul\"");
    if (backward) {
        tu_assert_contains(buf, "{\"name\": \"ss (backward)\", "
                                "\"cat\": \"gradfix.square_sum\"");
        tu_assert_contains(buf, "\"mul (backward)\"");
    } else {
        ck_assert_ptr_null(strstr(buf, "(backward)"));
    }
}

/* L = sum (x * w1 + w2)^2: dL/dw2 = 2b, dL/dw1 = 2b * x. */
static void
chain_graph(struct gb *g)
{
    gb_init(g);
    gb_tensor(g, "x", "Input", "[4]", NULL);
    gb_param(g, "w1", "[4]", 1);
    gb_param(g, "w2", "[4]", 2);
    gb_tensor(g, "a", "Activation", NULL, NULL);
    gb_tensor(g, "b", "Activation", NULL, NULL);
    gb_tensor(g, "loss", "Output", NULL, NULL);
    gb_node(g, "mul", "gradfix.mul", "x w1", "a", NULL);
    gb_node(g, "add", "gradfix.add", "a w2", "b", NULL);
    gb_node(g, "ss", "gradfix.square_sum", "b", "loss", NULL);
}

START_TEST(test_autograd_chain_hand_values)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct gb gb;
    char path[512];
    smlp_graph_t *g;
    smlp_session_t *s;
    float *x, *w1, *w2, want1[4], want2[4], b;
    double loss = 0;
    int i;

    chain_graph(&gb);
    g = gb_load(&gb, P_GRADFIX, path, sizeof(path));
    s = must_session(g, reg, "loss", NULL, 1);
    run_backward(s);
    x = data(s, "x");
    w1 = data(s, "w1");
    w2 = data(s, "w2");
    for (i = 0; i < 4; i++) {
        b = x[i] * w1[i] + w2[i];
        loss += (double)b * b;
        want2[i] = (2.0f * b) * 1.0f;
        want1[i] = want2[i] * x[i];
    }
    ck_assert_float_eq(*data(s, "loss"), (float)loss);
    assert_bits(grad(s, "w1"), want1, 4, "dw1");
    assert_bits(grad(s, "w2"), want2, 4, "dw2");
    /* The trace shows the backwards after the forward's nodes. */
    expect_trace(s, 1);
    ck_assert_int_eq(smlp_session_run(s), SMLP_OK);
    expect_trace(s, 0);
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/* Microseconds on CLOCK_MONOTONIC, the runtime's clock. */
static double
mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/*
 * The trace file of a run and a backward (runtime/trace.c), read back:
 * a node named m"u\l appears escaped for JSON (by hand: m\"u\\l),
 * forward and backward (graph names hold no control characters, the
 * third escape); process_name is the graph's
 * name ("t", not its file); each forward event carries its node's
 * profile (smlp_session_node_profile: thread, start, end - start, MACs;
 * gradfix.count declares 65536); the backward events lie after the run's
 * start, within the time this test saw the run and the backward take.
 * A trace that cannot be written (/dev/full) fails.
 */
START_TEST(test_autograd_trace_file)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct gb gb;
    char path[512], *buf, *line, *next;
    double t0, elapsed, ts, dur;
    unsigned long long macs;
    smlp_graph_t *g;
    smlp_session_t *s;
    uint8_t *raw;
    size_t len;
    int tid, fwd = 0, bwd = 0;

    gb_init(&gb);
    gb_tensor(&gb, "x", "Input", "[4]", NULL);
    gb_param(&gb, "w1", "[4]", 1);
    gb_tensor(&gb, "a", "Activation", NULL, NULL);
    gb_tensor(&gb, "c", "Activation", NULL, NULL);
    gb_tensor(&gb, "loss", "Output", NULL, NULL);
    gb_node(&gb, "m\\\"u\\\\l", "gradfix.mul", "x w1", "a", NULL);
    gb_node(&gb, "cnt", "gradfix.count", "a", "c", NULL);
    gb_node(&gb, "ss", "gradfix.square_sum", "c", "loss", NULL);
    g = gb_load(&gb, P_GRADFIX, path, sizeof(path));
    s = must_session(g, reg, "loss", NULL, 1);
    t0 = mono_us();
    run_backward(s);
    elapsed = mono_us() - t0;
    snprintf(path, sizeof(path), "%s/trace_file.json", tu_tmpdir());
    ck_assert_int_eq(smlp_session_write_trace(s, path), SMLP_OK);
    raw = tu_read_file(path, &len);
    buf = strndup((const char *)raw, len); /* a string: NUL-terminated */
    ck_assert_ptr_nonnull(buf);
    free(raw);
    tu_assert_contains(buf, "\"args\": {\"name\": \"t\"}}");
    tu_assert_contains(buf, "{\"name\": \"m\\\"u\\\\l\", "
                            "\"cat\": \"gradfix.mul\"");
    tu_assert_contains(buf, "{\"name\": \"m\\\"u\\\\l (backward)\", "
                            "\"cat\": \"gradfix.mul\"");
    /* One event a line, after the header and process_name lines. */
    line = strchr(buf, '\n');
    ck_assert_ptr_nonnull(line);
    for (line = strchr(line + 1, '\n'); line != NULL; line = next) {
        const char *f;

        next = strchr(line + 1, '\n');
        f = strstr(line, "\"tid\": ");
        if (f == NULL || (next != NULL && f > next))
            continue;
        if (strstr(line, "(backward)") != NULL &&
            (next == NULL || strstr(line, "(backward)") < next)) {
            ck_assert_int_eq(sscanf(f, "\"tid\": %d, \"ts\": %lf, "
                                       "\"dur\": %lf}",
                                    &tid, &ts, &dur),
                             3);
            ck_assert_msg(ts >= 0 && dur >= 0 && ts + dur <= elapsed + 0.002,
                          "backward event at %.3f + %.3f us, the run and "
                          "backward took %.3f us",
                          ts, dur, elapsed);
            bwd++;
        } else {
            struct smlp_node_profile p;

            ck_assert_int_eq(sscanf(f, "\"tid\": %d, \"ts\": %lf, "
                                       "\"dur\": %lf, \"args\": {\"macs\": "
                                       "%llu}}",
                                    &tid, &ts, &dur, &macs),
                             4);
            ck_assert_int_eq(smlp_session_node_profile(s, fwd, &p), SMLP_OK);
            ck_assert_int_eq(tid, p.thread);
            ck_assert_double_le(fabs(ts - p.start_us), 0.001);
            ck_assert_double_le(fabs(dur - (p.end_us - p.start_us)), 0.001);
            ck_assert_uint_eq(macs, p.macs);
            ck_assert_uint_eq(macs, strcmp(p.op, "gradfix.count") == 0
                                        ? 65536
                                        : 0);
            fwd++;
        }
    }
    ck_assert_int_eq(fwd, 3);
    ck_assert_int_eq(bwd, 3);
    free(buf);
    if (access("/dev/full", W_OK) == 0)
        ck_assert_int_ne(smlp_session_write_trace(s, "/dev/full"), SMLP_OK);
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * Fan-out: w feeds mul(w, w) (both slots) and mul(w, x); a = mul(x, w)
 * feeds add(a, p) and both slots of p = mul(a, a).  Contributions are
 * summed in backward order (the reader latest in the graph first), then
 * by slot.
 */
START_TEST(test_autograd_fanout_sum_order)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct gb gb;
    char path[512];
    smlp_graph_t *g;
    smlp_session_t *s;
    float *x, *w, *v, wantw[4], wantv[4];
    int i;

    gb_init(&gb);
    gb_tensor(&gb, "x", "Input", "[4]", NULL);
    gb_param(&gb, "w", "[4]", 3);
    gb_param(&gb, "v", "[4]", 4);
    gb_tensor(&gb, "ww", "Activation", NULL, NULL);
    gb_tensor(&gb, "wx", "Activation", NULL, NULL);
    gb_tensor(&gb, "s1", "Activation", NULL, NULL);
    gb_tensor(&gb, "a", "Activation", NULL, NULL);
    gb_tensor(&gb, "p", "Activation", NULL, NULL);
    gb_tensor(&gb, "q", "Activation", NULL, NULL);
    gb_tensor(&gb, "l1", "Activation", NULL, NULL);
    gb_tensor(&gb, "l2", "Activation", NULL, NULL);
    gb_tensor(&gb, "loss", "Output", NULL, NULL);
    /* Branch 1 on w. */
    gb_node(&gb, "ww", "gradfix.mul", "w w", "ww", NULL);
    gb_node(&gb, "wx", "gradfix.mul", "w x", "wx", NULL);
    gb_node(&gb, "s1", "gradfix.add", "ww wx", "s1", NULL);
    gb_node(&gb, "l1", "gradfix.square_sum", "s1", "l1", NULL);
    /* Branch 2 on v through an activation read three times. */
    gb_node(&gb, "a", "gradfix.mul", "x v", "a", NULL);
    gb_node(&gb, "p", "gradfix.mul", "a a", "p", NULL);
    gb_node(&gb, "q", "gradfix.add", "a p", "q", NULL);
    gb_node(&gb, "l2", "gradfix.square_sum", "q", "l2", NULL);
    gb_node(&gb, "sum", "gradfix.add", "l1 l2", "loss", NULL);
    g = gb_load(&gb, P_GRADFIX, path, sizeof(path));
    s = must_session(g, reg, "loss", NULL, 2);
    run_backward(s);
    x = data(s, "x");
    w = data(s, "w");
    v = data(s, "v");
    for (i = 0; i < 4; i++) {
        float s1 = w[i] * w[i] + w[i] * x[i];
        float gs1 = (2.0f * s1) * 1.0f;
        float a = x[i] * v[i], p = a * a, q = a + p;
        float gq = (2.0f * q) * 1.0f, ga;

        /* Readers of w in backward order: wx (slot 0), ww (0), ww (1). */
        wantw[i] = gs1 * x[i] + gs1 * w[i];
        wantw[i] += gs1 * w[i];
        /* Readers of a: q (slot 0), p (slot 0), p (slot 1). */
        ga = gq + gq * a;
        ga += gq * a;
        wantv[i] = ga * x[i];
    }
    assert_bits(grad(s, "w"), wantw, 4, "dw");
    assert_bits(grad(s, "v"), wantv, 4, "dv");
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * A contribution waits in its own store until its sum: a = x * w is read
 * by l2 = sum a and by the loss, sum(a, l1, l2) with l1 = sum t^2 and
 * t = x * u before them in the graph.  The backward steps: loss 0
 * (writes the first contribution to a's gradient, 1), l2 1 (writes the
 * second, 1 again, into a store of its own), l1 2 (writes dt through a
 * workspace), mul t 3, mul a 4 (adds the second contribution, then reads
 * da).  The second store must keep its bytes from step 1 to step 4
 * although nothing reads them at steps 2 and 3, where l1's backward
 * writes 512 bytes that only the 256 of that store would otherwise
 * leave room for: dw = (1 + 1) x, du = (2t) x.
 */
START_TEST(test_autograd_contribution_kept_until_sum)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct gb gb;
    char path[512];
    smlp_graph_t *g;
    smlp_session_t *s;
    float *x, *u, wantw[64], wantu[64];
    int i, r;

    gb_init(&gb);
    gb_tensor(&gb, "x", "Input", "[64]", NULL);
    gb_param(&gb, "w", "[64]", 1);
    gb_param(&gb, "u", "[64]", 3);
    gb_tensor(&gb, "a", "Activation", NULL, NULL);
    gb_tensor(&gb, "t", "Activation", NULL, NULL);
    gb_tensor(&gb, "l1", "Activation", NULL, NULL);
    gb_tensor(&gb, "l2", "Activation", NULL, NULL);
    gb_tensor(&gb, "loss", "Output", NULL, NULL);
    gb_node(&gb, "mula", "gradfix.mul", "x w", "a", NULL);
    gb_node(&gb, "mult", "gradfix.mul", "x u", "t", NULL);
    gb_node(&gb, "l1", "gradfix.square_sum", "t", "l1", NULL);
    gb_node(&gb, "l2", "gradfix.sum", "a", "l2", NULL);
    gb_node(&gb, "sum", "gradfix.sum", "a l1 l2", "loss", NULL);
    g = gb_load(&gb, P_GRADFIX, path, sizeof(path));
    s = must_session(g, reg, "loss", NULL, 1);
    for (r = 0; r < 2; r++) {
        run_backward(s);
        x = data(s, "x");
        u = data(s, "u");
        for (i = 0; i < 64; i++) {
            wantw[i] = (1.0f + 1.0f) * x[i];
            wantu[i] = ((2.0f * (x[i] * u[i])) * 1.0f) * x[i];
        }
        assert_bits(grad(s, "w"), wantw, 64, "dw");
        assert_bits(grad(s, "u"), wantu, 64, "du");
    }
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/* Views: an aliased view of an activation, a view of a parameter (run as
 * a copy, its op has no backward: the runtime copies the gradient), a
 * view's gradient summed with another reader's, and a view's output read
 * twice (l1 and lf: the view sums its contributions, then passes them to
 * its input). */
START_TEST(test_autograd_views)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct gb gb;
    char path[512];
    smlp_graph_t *g;
    smlp_session_t *s;
    float *x, *w, *u, wantw[6], wantu[6];
    int i;

    gb_init(&gb);
    gb_tensor(&gb, "x", "Input", "[2, 3]", NULL);
    gb_param(&gb, "w", "[2, 3]", 5);
    gb_param(&gb, "u", "[2, 3]", 6);
    gb_tensor(&gb, "a", "Activation", NULL, NULL);
    gb_tensor(&gb, "fa", "Activation", NULL, NULL);
    gb_tensor(&gb, "fu", "Activation", NULL, NULL);
    gb_tensor(&gb, "l1", "Activation", NULL, NULL);
    gb_tensor(&gb, "l2", "Activation", NULL, NULL);
    gb_tensor(&gb, "l3", "Activation", NULL, NULL);
    gb_tensor(&gb, "lf", "Activation", NULL, NULL);
    gb_tensor(&gb, "l12", "Activation", NULL, NULL);
    gb_tensor(&gb, "loss", "Output", NULL, NULL);
    gb_node(&gb, "a", "gradfix.mul", "x w", "a", NULL);
    gb_node(&gb, "fa", "gradfix.flat", "a", "fa", NULL);
    gb_node(&gb, "l1", "gradfix.square_sum", "fa", "l1", NULL);
    gb_node(&gb, "l2", "gradfix.square_sum", "a", "l2", NULL);
    gb_node(&gb, "fu", "gradfix.flat", "u", "fu", NULL);
    gb_node(&gb, "l3", "gradfix.square_sum", "fu", "l3", NULL);
    gb_node(&gb, "lf", "gradfix.sum", "fa", "lf", NULL);
    gb_node(&gb, "l12", "gradfix.sum", "l1 l2 lf", "l12", NULL);
    gb_node(&gb, "sum", "gradfix.add", "l12 l3", "loss", NULL);
    g = gb_load(&gb, P_GRADFIX, path, sizeof(path));
    s = must_session(g, reg, "loss", NULL, 1);
    run_backward(s);
    x = data(s, "x");
    w = data(s, "w");
    u = data(s, "u");
    for (i = 0; i < 6; i++) {
        float a = x[i] * w[i];
        /* Readers of fa in backward order: lf, then l1; of a: l2, then
         * the view fa. */
        float gfa = 1.0f + (2.0f * a) * 1.0f;
        float ga = (2.0f * a) * 1.0f;
        ga += gfa;
        wantw[i] = ga * x[i];
        wantu[i] = (2.0f * u[i]) * 1.0f;
    }
    assert_bits(grad(s, "w"), wantw, 6, "dw");
    assert_bits(grad(s, "u"), wantu, 6, "du");
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/* An i32 output gets grad_outputs NULL (gradfix.split checks it). */
START_TEST(test_autograd_int_output_null)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct gb gb;
    char path[512];
    smlp_graph_t *g;
    smlp_session_t *s;
    float *w, want[3];
    int i;

    gb_init(&gb);
    gb_param(&gb, "w", "[3]", 7);
    gb_tensor(&gb, "y", "Activation", NULL, NULL);
    gb_tensor(&gb, "idx", "Output", NULL, NULL);
    gb_tensor(&gb, "loss", "Output", NULL, NULL);
    gb_node(&gb, "split", "gradfix.split", "w", "y idx", NULL);
    gb_node(&gb, "ss", "gradfix.square_sum", "y", "loss", NULL);
    g = gb_load(&gb, P_GRADFIX, path, sizeof(path));
    s = must_session(g, reg, "loss", NULL, 1);
    run_backward(s);
    w = data(s, "w");
    for (i = 0; i < 3; i++)
        want[i] = (2.0f * w[i]) * 1.0f;
    assert_bits(grad(s, "w"), want, 3, "dw");
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * Integers carry no gradient: an op that reads only an i32 tensor made
 * from a parameter (gradfix.tofloat, which has no backward) needs no
 * backward, and its f32 output is a constant to autograd.  loss =
 * sum (x·w + idx)², idx = 0, 1, 2 from split: dw = 2(x·w + idx)·x.
 */
START_TEST(test_autograd_int_path_is_constant)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct gb gb;
    char path[512];
    smlp_graph_t *g;
    smlp_session_t *s;
    float *x, *w, want[3];
    int i;

    gb_init(&gb);
    gb_tensor(&gb, "x", "Input", "[3]", NULL);
    gb_param(&gb, "w", "[3]", 7);
    gb_tensor(&gb, "a", "Activation", NULL, NULL);
    gb_tensor(&gb, "y", "Activation", NULL, NULL);
    gb_tensor(&gb, "idx", "Activation", NULL, NULL);
    gb_tensor(&gb, "f", "Activation", NULL, NULL);
    gb_tensor(&gb, "c", "Activation", NULL, NULL);
    gb_tensor(&gb, "loss", "Output", NULL, NULL);
    gb_node(&gb, "mul", "gradfix.mul", "x w", "a", NULL);
    gb_node(&gb, "split", "gradfix.split", "a", "y idx", NULL);
    gb_node(&gb, "tofloat", "gradfix.tofloat", "idx", "f", NULL);
    gb_node(&gb, "add", "gradfix.add", "y f", "c", NULL);
    gb_node(&gb, "ss", "gradfix.square_sum", "c", "loss", NULL);
    g = gb_load(&gb, P_GRADFIX, path, sizeof(path));
    s = must_session(g, reg, "loss", NULL, 1);
    x = data(s, "x");
    for (i = 0; i < 3; i++)
        x[i] = (float)(i + 2);
    run_backward(s);
    w = data(s, "w");
    for (i = 0; i < 3; i++)
        want[i] = (2.0f * (x[i] * w[i] + (float)i)) * x[i];
    assert_bits(grad(s, "w"), want, 3, "dw");
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/* The backward sees the forward's seed and step: seeded noise drawn
 * again matches (gradfix.noise's m changes with the step). */
START_TEST(test_autograd_same_step_as_forward)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct gb gb;
    char path[512];
    smlp_graph_t *g;
    smlp_session_t *s;
    float want[8], m0[8];
    int i, r, differ = 0;

    gb_init(&gb);
    gb_param(&gb, "w", "[8]", 8);
    gb_tensor(&gb, "y", "Activation", NULL, NULL);
    gb_tensor(&gb, "m", "Output", NULL, NULL);
    gb_tensor(&gb, "loss", "Output", NULL, NULL);
    gb_node(&gb, "noise", "gradfix.noise", "w", "y m", NULL);
    gb_node(&gb, "ss", "gradfix.square_sum", "y", "loss", NULL);
    g = gb_load(&gb, P_GRADFIX, path, sizeof(path));
    s = must_session(g, reg, "loss", NULL, 1);
    for (r = 0; r < 3; r++) {
        const float *w, *m;

        run_backward(s);
        w = data(s, "w");
        m = data(s, "m");
        for (i = 0; i < 8; i++) {
            want[i] = ((2.0f * (w[i] * m[i])) * 1.0f) * m[i];
            if (r == 0)
                m0[i] = m[i];
            else
                differ |= m0[i] != m[i];
        }
        assert_bits(grad(s, "w"), want, 8, "dw");
    }
    ck_assert_msg(differ, "the noise should change with the step");
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/* gradfix.c's noise: m_i from (seed, step, i), restated. */
static uint64_t
noise_mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float
noise_m(uint64_t seed, uint64_t step, int64_t i)
{
    uint64_t z = noise_mix(seed ^ noise_mix(step ^ noise_mix((uint64_t)i)));

    return 0.5f + (float)(z >> 40) / 16777216.0f;
}

/*
 * The session's seed reaches the kernels, forward and backward, with
 * the run's step (0, 1, ... per smlp_session_run): with opts.seed = 7
 * gradfix.noise's mask is m_i = noise(7, step, i), and the backward,
 * drawing m again from its own context, gives dw = (2 w m) m only if it
 * sees the same seed and step as the forward.
 */
START_TEST(test_autograd_seed_reaches_kernels)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct smlp_session_opts o;
    struct smlp_error err;
    struct gb gb;
    char path[512];
    smlp_graph_t *g;
    smlp_session_t *s;
    const float *w, *m;
    float want[8];
    int i, r;

    gb_init(&gb);
    gb_param(&gb, "w", "[8]", 8);
    gb_tensor(&gb, "y", "Activation", NULL, NULL);
    gb_tensor(&gb, "m", "Output", NULL, NULL);
    gb_tensor(&gb, "loss", "Output", NULL, NULL);
    gb_node(&gb, "noise", "gradfix.noise", "w", "y m", NULL);
    gb_node(&gb, "ss", "gradfix.square_sum", "y", "loss", NULL);
    g = gb_load(&gb, P_GRADFIX, path, sizeof(path));
    smlp_session_opts_init(&o);
    o.training = 1;
    o.loss = "loss";
    o.threads = 1;
    o.seed = 7;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    for (r = 0; r < 2; r++) {
        run_backward(s);
        w = data(s, "w");
        m = data(s, "m");
        for (i = 0; i < 8; i++) {
            ck_assert_msg(m[i] == noise_m(7, (uint64_t)r, i),
                          "step %d: m[%d] = %.9g, want %.9g", r, i, m[i],
                          noise_m(7, (uint64_t)r, i));
            want[i] = ((2.0f * (w[i] * m[i])) * 1.0f) * m[i];
        }
        assert_bits(grad(s, "w"), want, 8, "dw");
    }
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * Saved bytes (ABI 1.2): the forward of gradfix.stash keeps x, the
 * backward gets the same bytes back after every other node's forward and
 * backward ran in between (gradient buffers and square_sum's backward
 * workspace are planned in the same arena), for several steps and thread
 * counts; an inference session and a stash off the gradient path get
 * NULL (the latter's forward still runs).  A session created with
 * opts.recompute plans no saved bytes (a smaller arena) and gives the
 * kernels NULL: the stash's backward, which cannot recompute, says so.
 */
START_TEST(test_autograd_saved_bytes)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct smlp_session_opts o;
    struct smlp_error err;
    struct gb gb;
    char path[512];
    smlp_graph_t *g;
    smlp_session_t *s;
    struct smlp_session_stats st[2];
    float want[256];
    const float *w, *w2;
    int i, r, threads;

    gb_init(&gb);
    gb_param(&gb, "w", "[256]", 3);
    gb_param(&gb, "w2", "[256]", 4);
    gb_tensor(&gb, "c", "Input", "[256]", NULL);
    gb_tensor(&gb, "s", "Activation", NULL, NULL);
    gb_tensor(&gb, "a", "Activation", NULL, NULL);
    gb_tensor(&gb, "b", "Activation", NULL, NULL);
    gb_tensor(&gb, "cs", "Output", NULL, NULL);
    gb_tensor(&gb, "loss", "Output", NULL, NULL);
    gb_node(&gb, "stash", "gradfix.stash", "w", "s", NULL);
    gb_node(&gb, "mul", "gradfix.mul", "s w2", "a", NULL);
    gb_node(&gb, "add", "gradfix.add", "a w2", "b", NULL);
    gb_node(&gb, "ss", "gradfix.square_sum", "b", "loss", NULL);
    gb_node(&gb, "off", "gradfix.stash", "c", "cs", NULL);
    g = gb_load(&gb, P_GRADFIX, path, sizeof(path));
    for (threads = 1; threads <= 2; threads++) {
        s = must_session(g, reg, "loss", NULL, threads);
        for (r = 0; r < 3; r++) {
            run_backward(s);
            w = data(s, "w");
            w2 = data(s, "w2");
            /* L = sum (3w * w2 + w2)^2: dL/dw = 2b * w2 * 3 */
            for (i = 0; i < 256; i++)
                want[i] = 3.0f * ((2.0f * (3.0f * w[i] * w2[i] + w2[i])) *
                                  1.0f * w2[i]);
            assert_bits(grad(s, "w"), want, 256, "dw");
        }
        smlp_session_destroy(s);
    }
    smlp_session_opts_init(&o);
    o.batch = 2;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    ck_assert_msg(smlp_session_run(s) == SMLP_OK, "%s",
                  smlp_session_errmsg(s));
    smlp_session_destroy(s);
    for (r = 0; r < 2; r++) {
        smlp_session_opts_init(&o);
        o.training = 1;
        o.loss = "loss";
        o.recompute = r;
        o.plan_only = 1;
        s = smlp_session_create(g, reg, &o, &err);
        ck_assert_msg(s != NULL, "%s", err.msg);
        ck_assert_int_eq(smlp_session_get_stats(s, &st[r]), SMLP_OK);
        smlp_session_destroy(s);
    }
    /* the stash's 1 KiB of saved x, at least */
    ck_assert_uint_ge(st[0].arena_bytes, st[1].arena_bytes + 1024);
    o.plan_only = 0;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    ck_assert_msg(smlp_session_run(s) == SMLP_OK, "%s",
                  smlp_session_errmsg(s));
    ck_assert_int_ne(smlp_session_backward(s), SMLP_OK);
    tu_assert_contains(smlp_session_errmsg(s), "stash");
    tu_assert_contains(smlp_session_errmsg(s), "no saved bytes");
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/* ---- what gets a gradient ---------------------------------------------- */

START_TEST(test_autograd_frozen_params)
{
    smlp_registry_t *reg = tu_fixture_registry();
    const char *const frozen[] = {"enc*", NULL};
    struct gb gb;
    char path[512];
    smlp_graph_t *g;
    smlp_session_t *s;
    struct smlp_tensor t;
    float *x, *w0, *w1, *h, want[4], b;
    int i;

    gb_init(&gb);
    gb_tensor(&gb, "x", "Input", "[4]", NULL);
    gb_param(&gb, "enc.0.w", "[4]", 1);
    gb_param(&gb, "enc/1.w", "[4]", 2);
    gb_param(&gb, "head.w", "[4]", 3);
    gb_tensor(&gb, "a", "Activation", NULL, NULL);
    gb_tensor(&gb, "b", "Activation", NULL, NULL);
    gb_tensor(&gb, "c", "Activation", NULL, NULL);
    gb_tensor(&gb, "loss", "Output", NULL, NULL);
    gb_node(&gb, "enc0", "gradfix.mul", "x enc.0.w", "a", NULL);
    /* No backward: fine while everything before the head is frozen. */
    gb_node(&gb, "enc1", "gradfix.nobwd", "a", "b", NULL);
    gb_node(&gb, "head", "gradfix.add", "b head.w", "c", NULL);
    gb_node(&gb, "ss", "gradfix.square_sum", "c", "loss", NULL);
    g = gb_load(&gb, P_GRADFIX, path, sizeof(path));
    s = must_session(g, reg, "loss", frozen, 2);
    run_backward(s);
    x = data(s, "x");
    w0 = data(s, "enc.0.w");
    w1 = data(s, "enc/1.w");
    h = data(s, "head.w");
    (void)w1;
    for (i = 0; i < 4; i++) {
        b = x[i] * w0[i];
        want[i] = (2.0f * (b + h[i])) * 1.0f;
    }
    assert_bits(grad(s, "head.w"), want, 4, "dhead");
    /* '*' matched the dots and the slash (fnmatch without flags): both
     * encoder parameters are frozen. */
    ck_assert_int_eq(smlp_session_grad(s, "enc.0.w", &t), SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(s), "frozen");
    ck_assert_int_eq(smlp_session_grad(s, "enc/1.w", &t), SMLP_EINVAL);
    ck_assert_int_eq(smlp_session_grad(s, "nope", &t), SMLP_ENOENT);
    ck_assert_int_eq(smlp_session_grad(s, "x", &t), SMLP_ENOENT);
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

START_TEST(test_autograd_no_backward_error_at_create)
{
    smlp_registry_t *reg = tu_fixture_registry();
    const char *const frozen_w[] = {"w", NULL};
    struct gb gb;
    char path[512];
    smlp_graph_t *g;
    smlp_session_t *s;
    struct smlp_error err;

    gb_init(&gb);
    gb_tensor(&gb, "x", "Input", "[4]", NULL);
    gb_param(&gb, "w", "[4]", 1);
    gb_param(&gb, "v", "[4]", 2);
    gb_tensor(&gb, "a", "Activation", NULL, NULL);
    gb_tensor(&gb, "b", "Activation", NULL, NULL);
    gb_tensor(&gb, "c", "Activation", NULL, NULL);
    gb_tensor(&gb, "loss", "Output", NULL, NULL);
    gb_node(&gb, "mul", "gradfix.mul", "x w", "a", NULL);
    gb_node(&gb, "copy", "gradfix.nobwd", "a", "b", NULL);
    gb_node(&gb, "add", "gradfix.add", "b v", "c", NULL);
    gb_node(&gb, "ss", "gradfix.square_sum", "c", "loss", NULL);
    g = gb_load(&gb, P_GRADFIX, path, sizeof(path));
    s = train_session(g, reg, "loss", NULL, 1, &err);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(err.status, SMLP_ENOKERNEL);
    tu_assert_contains(err.msg, path);
    tu_assert_contains(err.msg, "node 1 'copy' (gradfix.nobwd)");
    tu_assert_contains(err.msg, "parameter 'w' reaches the loss 'loss'");
    /* Frozen, w needs no gradient and the node no backward. */
    s = must_session(g, reg, "loss", frozen_w, 1);
    run_backward(s);
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/* Parameters the loss does not depend on get zeros, every time. */
START_TEST(test_autograd_unreached_param_zero)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct gb gb;
    char path[512];
    smlp_graph_t *g;
    smlp_session_t *s;
    float *gu, *gi, zeros[4] = {0, 0, 0, 0};
    int r;

    gb_init(&gb);
    gb_tensor(&gb, "x", "Input", "[4]", NULL);
    gb_param(&gb, "w", "[4]", 1);
    gb_param(&gb, "unused", "[4]", 2);
    gb_param(&gb, "side", "[4]", 3);
    gb_tensor(&gb, "a", "Activation", NULL, NULL);
    gb_tensor(&gb, "other", "Output", NULL, NULL);
    gb_tensor(&gb, "loss", "Output", NULL, NULL);
    gb_node(&gb, "mul", "gradfix.mul", "x w", "a", NULL);
    gb_node(&gb, "ss", "gradfix.square_sum", "a", "loss", NULL);
    /* Reads w and side, but does not lead to the loss. */
    gb_node(&gb, "other", "gradfix.mul", "w side", "other", NULL);
    g = gb_load(&gb, P_GRADFIX, path, sizeof(path));
    s = must_session(g, reg, "loss", NULL, 1);
    gu = grad(s, "unused");
    gi = grad(s, "side");
    for (r = 0; r < 2; r++) {
        memset(gu, 0x7f, 4 * sizeof(float)); /* an optimizer's leftovers */
        memset(gi, 0x7f, 4 * sizeof(float));
        run_backward(s);
        assert_bits(gu, zeros, 4, "dunused");
        assert_bits(gi, zeros, 4, "dside");
        /* Stable pointers. */
        ck_assert_ptr_eq(grad(s, "unused"), gu);
    }
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * SMLP_OP_NO_GRAD (moco.momentum_update's flag): an op whose outputs are
 * constants to autograd.  loss = sum (x * w + stopgrad(w) * v)^2: the
 * gradient reaches w through the product only, dw = 2 c x (not
 * 2 c (x + v)), and v (read only beside the constant) gets 2 c stopgrad(w).
 * A parameter whose only path to the loss goes through the op is not
 * reached (zero gradient), and the op needs no backward.
 */
START_TEST(test_autograd_no_grad_op)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct gb gb;
    char path[512];
    smlp_graph_t *g;
    smlp_session_t *s;
    float *x, *w, *v, want[4], zeros[4] = {0, 0, 0, 0};
    int i;

    gb_init(&gb);
    gb_tensor(&gb, "x", "Input", "[4]", NULL);
    gb_param(&gb, "w", "[4]", 1);
    gb_param(&gb, "v", "[4]", 2);
    gb_param(&gb, "only_const", "[4]", 3);
    gb_tensor(&gb, "a", "Activation", NULL, NULL);
    gb_tensor(&gb, "sw", "Activation", NULL, NULL);
    gb_tensor(&gb, "b", "Activation", NULL, NULL);
    gb_tensor(&gb, "c", "Activation", NULL, NULL);
    gb_tensor(&gb, "k", "Activation", NULL, NULL);
    gb_tensor(&gb, "d", "Activation", NULL, NULL);
    gb_tensor(&gb, "loss", "Output", NULL, NULL);
    gb_node(&gb, "mul", "gradfix.mul", "x w", "a", NULL);
    gb_node(&gb, "stop", "gradfix.stopgrad", "w", "sw", NULL);
    gb_node(&gb, "mulv", "gradfix.mul", "sw v", "b", NULL);
    gb_node(&gb, "add", "gradfix.add", "a b", "c", NULL);
    gb_node(&gb, "stop2", "gradfix.stopgrad", "only_const", "k", NULL);
    gb_node(&gb, "add2", "gradfix.add", "c k", "d", NULL);
    gb_node(&gb, "ss", "gradfix.square_sum", "d", "loss", NULL);
    g = gb_load(&gb, P_GRADFIX, path, sizeof(path));
    s = must_session(g, reg, "loss", NULL, 2);
    run_backward(s);
    x = data(s, "x");
    w = data(s, "w");
    v = data(s, "v");
    for (i = 0; i < 4; i++) {
        float c = x[i] * w[i] + w[i] * v[i];
        float d = c + data(s, "only_const")[i];
        ck_assert(x[i] != 0.0f && v[i] != 0.0f);
        want[i] = ((2.0f * d) * 1.0f) * x[i];
    }
    assert_bits(grad(s, "w"), want, 4, "dw");
    for (i = 0; i < 4; i++) {
        float d = x[i] * w[i] + w[i] * v[i] + data(s, "only_const")[i];
        want[i] = ((2.0f * d) * 1.0f) * w[i];
    }
    assert_bits(grad(s, "v"), want, 4, "dv");
    assert_bits(grad(s, "only_const"), zeros, 4, "donly_const");
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/* ---- errors ------------------------------------------------------------ */

START_TEST(test_autograd_bad_loss)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct smlp_session_opts o;
    struct gb gb;
    char path[512];
    smlp_graph_t *g;
    smlp_session_t *s;
    struct smlp_error err;
    struct smlp_tensor t;

    chain_graph(&gb);
    g = gb_load(&gb, P_GRADFIX, path, sizeof(path));
    s = train_session(g, reg, "nope", NULL, 1, &err);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(err.status, SMLP_ENOENT);
    tu_assert_contains(err.msg, path);
    tu_assert_contains(err.msg, "loss 'nope': the graph has no tensor");
    s = train_session(g, reg, "b", NULL, 1, &err);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(err.status, SMLP_EINVAL);
    tu_assert_contains(err.msg, "loss 'b' is f32 [4]; a loss must be an f32 "
                                "scalar (rank 0)");
    s = train_session(g, reg, "w1", NULL, 1, &err);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(err.status, SMLP_EINVAL);
    tu_assert_contains(err.msg, "loss 'w1' is a parameter");
    /* A loss needs training = 1; a device must be there (training on a
     * device: tests/check_cuda_sched.c). */
    smlp_session_opts_init(&o);
    o.loss = "loss";
    ck_assert_ptr_null(smlp_session_create(g, reg, &o, &err));
    ck_assert_int_eq(err.status, SMLP_EINVAL);
    tu_assert_contains(err.msg, "opts.training = 1");
    o.training = 1;
    o.device = SMLP_DEVICE_CUDA;
    ck_assert_ptr_null(smlp_session_create(g, reg, &o, &err));
    ck_assert_int_eq(err.status, SMLP_EDEVICE);
    tu_assert_contains(err.msg, "device cuda: ");
    /* No loss: no backward, no gradients. */
    smlp_session_opts_init(&o);
    o.training = 1;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    ck_assert_int_eq(smlp_session_run(s), SMLP_OK);
    ck_assert_int_eq(smlp_session_backward(s), SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(s), "no loss");
    ck_assert_int_eq(smlp_session_grad(s, "w1", &t), SMLP_EINVAL);
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

START_TEST(test_autograd_backward_needs_forward)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct gb gb;
    char path[512];
    smlp_graph_t *g;
    smlp_session_t *s;

    chain_graph(&gb);
    g = gb_load(&gb, P_GRADFIX, path, sizeof(path));
    s = must_session(g, reg, "loss", NULL, 1);
    ck_assert_int_eq(smlp_session_backward(s), SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(s), "no forward run");
    run_backward(s);
    /* The backward has reused the bytes of the values it read. */
    ck_assert_int_eq(smlp_session_backward(s), SMLP_EINVAL);
    run_backward(s);
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

static Suite *
autograd_suite(void)
{
    Suite *s = suite_create("autograd");
    TCase *tc;

    tc = tcase_create("values");

    tcase_add_test(tc, test_autograd_chain_hand_values);
    tcase_add_test(tc, test_autograd_trace_file);
    tcase_add_test(tc, test_autograd_fanout_sum_order);
    tcase_add_test(tc, test_autograd_contribution_kept_until_sum);
    tcase_add_test(tc, test_autograd_views);
    tcase_add_test(tc, test_autograd_int_output_null);
    tcase_add_test(tc, test_autograd_int_path_is_constant);
    tcase_add_test(tc, test_autograd_same_step_as_forward);
    tcase_add_test(tc, test_autograd_seed_reaches_kernels);
    tcase_add_test(tc, test_autograd_saved_bytes);
    suite_add_tcase(s, tc);
    tc = tcase_create("params");
    tcase_add_test(tc, test_autograd_frozen_params);
    tcase_add_test(tc, test_autograd_no_backward_error_at_create);
    tcase_add_test(tc, test_autograd_unreached_param_zero);
    tcase_add_test(tc, test_autograd_no_grad_op);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_test(tc, test_autograd_bad_loss);
    tcase_add_test(tc, test_autograd_backward_needs_forward);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(autograd_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
