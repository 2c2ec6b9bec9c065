/*
 * check_autograd.c - the autograd engine (runtime/autograd.c): gradients
 * of graphs of the fixture plugin tests/plugins/gradfix.c against values
 * derived by hand (bit for bit: the fixture's backwards and these tests
 * compute each element with the same float operations), fan-out sums in
 * their documented order, frozen parameters, errors at creation, zeros for
 * parameters the loss does not reach, determinism over thread counts and
 * repeated calls, the memory plan of the backward; then whole graphs of
 * core (and norm) ops against central finite differences.
 */
#include <math.h>
#include <stdint.h>
#include <time.h>

#include "testutil.h"

/* ---- graphs from a tiny builder --------------------------------------- */

/*
 * Tensors are declared by name; nodes name their inputs and outputs
 * (space-separated names, "-" for an absent optional input).
 */
struct gb {
    char tensors[16384];
    char nodes[16384];
    int nt;
    char names[128][48];
    int nn;
};

static void
gb_init(struct gb *g)
{
    memset(g, 0, sizeof(*g));
}

static void
cat(char *buf, size_t len, const char *text)
{
    ck_assert_uint_lt(strlen(buf) + strlen(text), len);
    strcat(buf, text);
}

/* kind: "Input", "Parameter", "Output", "Activation"; shape "[2, 3]" or
 * NULL; extra: more JSON fields ("\"dtype\": \"I32\"") or NULL. */
static void
gb_tensor(struct gb *g, const char *name, const char *kind,
          const char *shape, const char *extra)
{
    char buf[512];

    ck_assert_int_lt(g->nt, 128);
    snprintf(g->names[g->nt], sizeof(g->names[0]), "%s", name);
    snprintf(buf, sizeof(buf), "%s{\"name\": \"%s\", \"kind\": \"%s\"%s%s%s%s}",
             g->nt ? ", " : "", name, kind, shape ? ", \"shape\": " : "",
             shape ? shape : "", extra ? ", " : "", extra ? extra : "");
    cat(g->tensors, sizeof(g->tensors), buf);
    g->nt++;
}

/* A parameter initialized uniformly in [-1, 1) from `seed`. */
static void
gb_param(struct gb *g, const char *name, const char *shape, int seed)
{
    char extra[128];

    snprintf(extra, sizeof(extra),
             "\"init\": {\"kind\": \"Uniform\", \"a\": -1.0, \"b\": 1.0, "
             "\"seed\": %d}",
             seed);
    gb_tensor(g, name, "Parameter", shape, extra);
}

static int
gb_index(const struct gb *g, const char *name)
{
    int i;

    if (strcmp(name, "-") == 0)
        return -1;
    for (i = 0; i < g->nt; i++)
        if (strcmp(g->names[i], name) == 0)
            return i;
    ck_abort_msg("graph builder: no tensor '%s'", name);
    return -1;
}

static void
gb_list(const struct gb *g, const char *names, char *out, size_t len)
{
    char tmp[512], *tok, *save = NULL;
    char num[16];

    snprintf(tmp, sizeof(tmp), "%s", names);
    out[0] = '\0';
    for (tok = strtok_r(tmp, " ", &save); tok != NULL;
         tok = strtok_r(NULL, " ", &save)) {
        snprintf(num, sizeof(num), "%s%d", out[0] ? ", " : "",
                 gb_index(g, tok));
        cat(out, len, num);
    }
}

static void
gb_node(struct gb *g, const char *name, const char *op, const char *ins,
        const char *outs, const char *attrs)
{
    char in[256], out[256], buf[1024];

    gb_list(g, ins, in, sizeof(in));
    gb_list(g, outs, out, sizeof(out));
    snprintf(buf, sizeof(buf),
             "%s{\"name\": \"%s\", \"op\": \"%s\", \"inputs\": [%s], "
             "\"outputs\": [%s]%s%s%s}",
             g->nn ? ", " : "", name, op, in, out,
             attrs ? ", \"attrs\": [" : "", attrs ? attrs : "",
             attrs ? "]" : "");
    cat(g->nodes, sizeof(g->nodes), buf);
    g->nn++;
}

/* Compiles the graph (plugins: a comma-separated JSON list). */
static smlp_graph_t *
gb_load(const struct gb *g, const char *plugins, char *path, size_t len)
{
    static char json[40000];
    struct smlp_error err;
    smlp_graph_t *graph;

    snprintf(json, sizeof(json),
             "{\"name\": \"t\", \"plugins\": [%s], \"tensors\": [%s], "
             "\"nodes\": [%s]}",
             plugins, g->tensors, g->nodes);
    tu_graph_from_json(tu_tmpdir(), "g", json, path, len);
    graph = smlp_graph_load(path, &err);
    ck_assert_msg(graph != NULL, "%s", err.msg);
    return graph;
}

static smlp_registry_t *
registry(void)
{
    struct smlp_error err;
    char dir[512];
    smlp_registry_t *reg;

    tu_fixture_dir(dir, sizeof(dir));
    reg = smlp_registry_create(dir, &err);
    ck_assert_msg(reg != NULL, "%s", err.msg);
    return reg;
}

/* A training session with `loss`; NULL (and err) on failure. */
static smlp_session_t *
train_session(const smlp_graph_t *g, smlp_registry_t *reg, const char *loss,
              const char *const *frozen, int threads, struct smlp_error *err)
{
    struct smlp_session_opts o;

    smlp_session_opts_init(&o);
    o.training = 1;
    o.loss = loss;
    o.frozen = frozen;
    o.threads = threads;
    o.batch = 2;
    return smlp_session_create(g, reg, &o, err);
}

static smlp_session_t *
must_session(const smlp_graph_t *g, smlp_registry_t *reg, const char *loss,
             const char *const *frozen, int threads)
{
    struct smlp_error err;
    smlp_session_t *s = train_session(g, reg, loss, frozen, threads, &err);

    ck_assert_msg(s != NULL, "%s", err.msg);
    return s;
}

static float *
data(smlp_session_t *s, const char *name)
{
    struct smlp_tensor t;

    ck_assert_int_eq(smlp_session_tensor(s, name, &t), SMLP_OK);
    ck_assert_ptr_nonnull(t.data);
    return t.data;
}

static float *
grad(smlp_session_t *s, const char *name)
{
    struct smlp_tensor t;

    ck_assert_msg(smlp_session_grad(s, name, &t) == SMLP_OK, "%s",
                  smlp_session_errmsg(s));
    ck_assert_int_eq(t.dtype, SMLP_DTYPE_F32);
    ck_assert_ptr_nonnull(t.data);
    return t.data;
}

static void
run_backward(smlp_session_t *s)
{
    ck_assert_msg(smlp_session_run(s) == SMLP_OK, "%s",
                  smlp_session_errmsg(s));
    ck_assert_msg(smlp_session_backward(s) == SMLP_OK, "%s",
                  smlp_session_errmsg(s));
}

static void
assert_bits(const float *got, const float *want, int n, const char *what)
{
    int i;

    for (i = 0; i < n; i++)
        ck_assert_msg(memcmp(&got[i], &want[i], sizeof(float)) == 0,
                      "%s[%d] = %.9g, want %.9g", what, i, got[i], want[i]);
}

#define P_GRADFIX "\"gradfix\""

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
    smlp_registry_t *reg = registry();
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
    smlp_registry_t *reg = registry();
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
    smlp_registry_t *reg = registry();
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

/* Views: an aliased view of an activation, a view of a parameter (run as
 * a copy, its op has no backward: the runtime copies the gradient), and
 * a view's gradient summed with another reader's. */
START_TEST(test_autograd_views)
{
    smlp_registry_t *reg = registry();
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
    gb_tensor(&gb, "l12", "Activation", NULL, NULL);
    gb_tensor(&gb, "loss", "Output", NULL, NULL);
    gb_node(&gb, "a", "gradfix.mul", "x w", "a", NULL);
    gb_node(&gb, "fa", "gradfix.flat", "a", "fa", NULL);
    gb_node(&gb, "l1", "gradfix.square_sum", "fa", "l1", NULL);
    gb_node(&gb, "l2", "gradfix.square_sum", "a", "l2", NULL);
    gb_node(&gb, "fu", "gradfix.flat", "u", "fu", NULL);
    gb_node(&gb, "l3", "gradfix.square_sum", "fu", "l3", NULL);
    gb_node(&gb, "l12", "gradfix.add", "l1 l2", "l12", NULL);
    gb_node(&gb, "sum", "gradfix.add", "l12 l3", "loss", NULL);
    g = gb_load(&gb, P_GRADFIX, path, sizeof(path));
    s = must_session(g, reg, "loss", NULL, 1);
    run_backward(s);
    x = data(s, "x");
    w = data(s, "w");
    u = data(s, "u");
    for (i = 0; i < 6; i++) {
        float a = x[i] * w[i];
        /* Readers of a in backward order: l2, then the view fa. */
        float ga = (2.0f * a) * 1.0f;
        ga += (2.0f * a) * 1.0f;
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
    smlp_registry_t *reg = registry();
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

/* The backward sees the forward's seed and step: seeded noise drawn
 * again matches (gradfix.noise's m changes with the step). */
START_TEST(test_autograd_same_step_as_forward)
{
    smlp_registry_t *reg = registry();
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
    smlp_registry_t *reg = registry();
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
    smlp_registry_t *reg = registry();
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
    gb_param(&gb, "enc.1.w", "[4]", 2);
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
    w1 = data(s, "enc.1.w");
    h = data(s, "head.w");
    (void)w1;
    for (i = 0; i < 4; i++) {
        b = x[i] * w0[i];
        want[i] = (2.0f * (b + h[i])) * 1.0f;
    }
    assert_bits(grad(s, "head.w"), want, 4, "dhead");
    /* '*' matched the dots: both encoder parameters are frozen. */
    ck_assert_int_eq(smlp_session_grad(s, "enc.0.w", &t), SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(s), "frozen");
    ck_assert_int_eq(smlp_session_grad(s, "enc.1.w", &t), SMLP_EINVAL);
    ck_assert_int_eq(smlp_session_grad(s, "nope", &t), SMLP_ENOENT);
    ck_assert_int_eq(smlp_session_grad(s, "x", &t), SMLP_ENOENT);
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

START_TEST(test_autograd_no_backward_error_at_create)
{
    smlp_registry_t *reg = registry();
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
    smlp_registry_t *reg = registry();
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
    smlp_registry_t *reg = registry();
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
    smlp_registry_t *reg = registry();
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
    smlp_registry_t *reg = registry();
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
    smlp_registry_t *reg = registry();
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
    smlp_registry_t *reg = registry();
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
    smlp_registry_t *reg = registry();
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
    smlp_registry_t *reg = registry();
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
    }
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
    smlp_registry_t *reg = registry();
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
            cat(ins, sizeof(ins), i ? " " : "");
            cat(ins, sizeof(ins), name);
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
    smlp_registry_t *reg = registry();
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
    smlp_registry_t *reg = registry();
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
    smlp_registry_t *reg = registry();
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
    smlp_registry_t *reg = registry();
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
    smlp_registry_t *reg = registry();
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
    smlp_registry_t *reg = registry();
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
    smlp_registry_t *reg = registry();
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
    smlp_registry_t *reg = registry();
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
autograd_suite(void)
{
    Suite *s = suite_create("autograd");
    TCase *tc = tcase_create("values");

    tcase_add_test(tc, test_autograd_chain_hand_values);
    tcase_add_test(tc, test_autograd_trace_file);
    tcase_add_test(tc, test_autograd_fanout_sum_order);
    tcase_add_test(tc, test_autograd_views);
    tcase_add_test(tc, test_autograd_int_output_null);
    tcase_add_test(tc, test_autograd_same_step_as_forward);
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
    suite_add_tcase(s, tc);
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
    SRunner *sr = srunner_create(autograd_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
