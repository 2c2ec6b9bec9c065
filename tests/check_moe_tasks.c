/*
 * check_moe_tasks.c - the `moe` kernels on shapes that split into many
 * intra-op tasks (host->parallel_for), one TCase per op.
 *
 * Two properties, for every op forward and backward:
 *   - bit-identical outputs and gradients for 1, 2, 3 and 4 threads
 *     (ophost runs parallel_for on that many threads and hands the tasks
 *     out in a shuffled order, so a task that wrote outside its part, read
 *     another's scratch or depended on the schedule would show up);
 *   - agreement with naive loops written here in double precision (or,
 *     for the scatter-adds turned into gathers, bit-identity with the
 *     serial float loop in the order the op documents), so the task
 *     boundaries (row blocks, hidden-column chunks, column blocks of the
 *     weight gradients, group tasks, the offsets into the gate's noise
 *     stream) are checked where the small shapes of check_op_moe and
 *     check_grad_moe never cross one.
 * The shapes are chosen against the task sizes of the kernels (64 routing
 * rows or items per task, row blocks of at most 512 rows and hidden chunks
 * of at most 512 columns in expert_ffn's forward, row blocks of 256 and
 * about 8 column blocks in its backward) and say so where it matters.
 * The plugin is loaded from $SMLP_TEST_BUILDDIR/plugins/.libs/moe.so
 * through tests/ophost.c.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ophost.h"

#define NGATE 6
#define MAX_IN 6

static struct ophost *host;

static void
setup(void)
{
    char err[1024];

    host = ophost_create("moe", err, sizeof(err));
    ck_assert_msg(host != NULL, "%s", err);
}

static void
teardown(void)
{
    ophost_destroy(host);
    host = NULL;
    ck_assert_int_eq(ophost_live_allocs(), 0);
}

/* ---- helpers ---------------------------------------------------------- */

/* n deterministic values in [-scale, scale) (a 64-bit LCG). */
static void
fill(float *v, int64_t n, uint64_t seed, double scale)
{
    int64_t i;

    for (i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        v[i] = (float)(scale * ((double)(seed >> 11) / 9007199254740992.0 *
                                    2.0 -
                                1.0));
    }
}

static struct smlp_tensor *
rnd_f32(int rank, const int64_t *shape, uint64_t seed, double scale)
{
    struct smlp_tensor *t = ophost_f32(rank, shape, NULL);

    ck_assert_ptr_nonnull(t);
    fill(t->data, smlp_tensor_numel(t), seed, scale);
    return t;
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

static int
same_bits(const struct smlp_tensor *a, const struct smlp_tensor *b)
{
    return smlp_tensor_numel(a) == smlp_tensor_numel(b) &&
           memcmp(a->data, b->data,
                  (size_t)smlp_tensor_numel(a) * sizeof(float)) == 0;
}

static void
forward_ok(const char *op, const struct ophost_attr *attrs,
           struct smlp_tensor *const *in, int n_in, struct smlp_tensor **out,
           int n_out)
{
    const char *msg;
    int rc, i;

    for (i = 0; i < n_out; i++)
        out[i] = NULL;
    rc = ophost_run(host, op, attrs, in, n_in, out, n_out, &msg);
    ck_assert_msg(rc == SMLP_OK, "%s failed (%s): %s", op,
                  ophost_status_name(rc), msg);
}

/*
 * The forward at 1 thread into out[], then at 2, 3 and 4 threads, each
 * compared bit for bit with out[].  Leaves 1 thread set.
 */
static void
forward_threads(const char *op, const struct ophost_attr *attrs,
                struct smlp_tensor *const *in, int n_in,
                struct smlp_tensor **out, int n_out)
{
    struct smlp_tensor *again[NGATE];
    int t, i;

    ophost_set_threads(host, 1);
    forward_ok(op, attrs, in, n_in, out, n_out);
    for (t = 2; t <= 4; t++) {
        ophost_set_threads(host, t);
        forward_ok(op, attrs, in, n_in, again, n_out);
        for (i = 0; i < n_out; i++)
            ck_assert_msg(same_bits(out[i], again[i]),
                          "%s: output %d differs between 1 and %d threads",
                          op, i, t);
        free_all(again, n_out);
    }
    ophost_set_threads(host, 1);
}

/*
 * The backward at 1 thread into gi[] (entries NULL where no gradient is
 * wanted, else tensors shaped like the inputs), then at 2, 3 and 4
 * threads, compared bit for bit.  go: one grad_output per output (NULL
 * entries allowed).  Leaves 1 thread set.
 */
static void
backward_threads(const char *op, const struct ophost_attr *attrs,
                 struct smlp_tensor *const *in, int n_in,
                 struct smlp_tensor *const *out, int n_out,
                 struct smlp_tensor *const *go, struct smlp_tensor **gi)
{
    struct smlp_tensor *again[MAX_IN] = {0};
    const char *msg;
    int t, i, rc;

    ophost_set_threads(host, 1);
    rc = ophost_backward(host, op, attrs, in, n_in, out, n_out, go, gi,
                         &msg);
    ck_assert_msg(rc == SMLP_OK, "%s backward failed (%s): %s", op,
                  ophost_status_name(rc), msg);
    for (t = 2; t <= 4; t++) {
        for (i = 0; i < n_in; i++)
            if (gi[i] != NULL) {
                again[i] = ophost_tensor_like(gi[i]);
                fill(again[i]->data, smlp_tensor_numel(again[i]), 77, 1e9);
            }
        ophost_set_threads(host, t);
        rc = ophost_backward(host, op, attrs, in, n_in, out, n_out, go,
                             again, &msg);
        ck_assert_msg(rc == SMLP_OK, "%s backward failed (%s): %s", op,
                      ophost_status_name(rc), msg);
        for (i = 0; i < n_in; i++)
            if (gi[i] != NULL)
                ck_assert_msg(same_bits(gi[i], again[i]),
                              "%s: gradient of input %d differs between 1 "
                              "and %d threads",
                              op, i, t);
        free_all(again, MAX_IN);
    }
    ophost_set_threads(host, 1);
}

/* max |got − want| <= tol · max(max |want|, 1e-3) over n values. */
static void
assert_close(const float *got, const double *want, int64_t n, double tol,
             const char *what)
{
    double scale = 1e-3, worst = 0.0;
    int64_t i, at = 0;

    for (i = 0; i < n; i++)
        if (fabs(want[i]) > scale)
            scale = fabs(want[i]);
    for (i = 0; i < n; i++) {
        double err = fabs((double)got[i] - want[i]);

        ck_assert_msg(err == err, "%s[%lld] is NaN", what, (long long)i);
        if (err > worst) {
            worst = err;
            at = i;
        }
    }
    ck_assert_msg(worst <= tol * scale,
                  "%s[%lld]: got %.9g, want %.9g (error %.3g > %.3g)", what,
                  (long long)at, (double)got[at], want[at], worst,
                  tol * scale);
}

static double *
dalloc(int64_t n)
{
    double *v = calloc((size_t)(n > 0 ? n : 1), sizeof(double));

    ck_assert_ptr_nonnull(v);
    return v;
}

/* ---- moe.expert_ffn ----------------------------------------------------- */

/* Exact GELU and its derivative, in double. */
static double
gelu(double a)
{
    return 0.5 * a * (1.0 + erf(a / sqrt(2.0)));
}

static double
gelu_grad(double a)
{
    return 0.5 * (1.0 + erf(a / sqrt(2.0))) +
           a * exp(-0.5 * a * a) / sqrt(2.0 * M_PI);
}

/*
 * Inputs of an [E,M,d] -> h -> o expert layer; slot_item (with_si) marks
 * about a quarter of the rows empty, and every row of the last expert.
 */
static void
ffn_inputs(struct smlp_tensor **in, int64_t e, int64_t m, int64_t d,
           int64_t h, int64_t o, int with_si, uint64_t seed)
{
    int32_t *si;
    int64_t r;

    in[0] = rnd_f32(OPHOST_SHAPE(e, m, d), seed + 1, 1.0);
    in[1] = rnd_f32(OPHOST_SHAPE(e, h, d), seed + 2, 1.0 / sqrt((double)d));
    in[2] = rnd_f32(OPHOST_SHAPE(e, h), seed + 3, 0.5);
    in[3] = rnd_f32(OPHOST_SHAPE(e, o, h), seed + 4, 1.0 / sqrt((double)h));
    in[4] = rnd_f32(OPHOST_SHAPE(e, o), seed + 5, 0.5);
    in[5] = NULL;
    if (!with_si)
        return;
    in[5] = ophost_i32(OPHOST_SHAPE(e, m), NULL);
    si = in[5]->data;
    for (r = 0; r < e * m; r++) {
        uint64_t z = (uint64_t)r * 0x9e3779b97f4a7c15ull + seed;

        si[r] = r >= (e - 1) * m || (z >> 40) % 4 == 0 ? -1 : (int32_t)r;
    }
}

/* Whether row r (of E·M) takes part: no slot_item, or a filled row. */
static int
row_used(struct smlp_tensor *const *in, int64_t r)
{
    return in[5] == NULL || ((const int32_t *)in[5]->data)[r] != -1;
}

/*
 * The layer in double: out (E·M·o) and, when dy is set, the gradients of
 * buf, W1, b1, W2, b2 (g[0..5)).
 */
static void
ffn_reference(struct smlp_tensor *const *in, int relu, const float *dy,
              double *out, double *const g[5])
{
    const float *buf = in[0]->data, *w1 = in[1]->data, *b1 = in[2]->data;
    const float *w2 = in[3]->data, *b2 = in[4]->data;
    int64_t e = in[0]->shape[0], m = in[0]->shape[1], d = in[0]->shape[2];
    int64_t h = in[1]->shape[1], o = in[3]->shape[1], ex, r, i, j;
    double *a = dalloc(h), *act = dalloc(h), *gh = dalloc(h);

    for (ex = 0; ex < e; ex++)
        for (r = 0; r < m; r++) {
            int64_t row = ex * m + r;
            const float *x = buf + row * d;

            if (!row_used(in, row)) {
                for (j = 0; j < o; j++)
                    out[row * o + j] = 0.0;
                continue;
            }
            for (i = 0; i < h; i++) {
                const float *w = w1 + (ex * h + i) * d;

                a[i] = b1[ex * h + i];
                for (j = 0; j < d; j++)
                    a[i] += (double)w[j] * x[j];
                act[i] = relu ? (a[i] > 0.0 ? a[i] : 0.0) : gelu(a[i]);
            }
            for (j = 0; j < o; j++) {
                const float *w = w2 + (ex * o + j) * h;

                out[row * o + j] = b2[ex * o + j];
                for (i = 0; i < h; i++)
                    out[row * o + j] += (double)w[i] * act[i];
            }
            if (dy == NULL)
                continue;
            for (i = 0; i < h; i++) {
                gh[i] = 0.0;
                for (j = 0; j < o; j++)
                    gh[i] += (double)dy[row * o + j] * w2[(ex * o + j) * h + i];
                gh[i] *= relu ? (a[i] > 0.0 ? 1.0 : 0.0) : gelu_grad(a[i]);
            }
            for (j = 0; j < o; j++) {
                g[4][ex * o + j] += dy[row * o + j];
                for (i = 0; i < h; i++)
                    g[3][(ex * o + j) * h + i] += dy[row * o + j] * act[i];
            }
            for (i = 0; i < h; i++) {
                g[2][ex * h + i] += gh[i];
                for (j = 0; j < d; j++) {
                    g[1][(ex * h + i) * d + j] += gh[i] * x[j];
                    g[0][row * d + j] += gh[i] * w1[(ex * h + i) * d + j];
                }
            }
        }
    free(a);
    free(act);
    free(gh);
}

/*
 * Forward and backward of one layer shape, with and without slot_item,
 * for both activations: bit-identical across threads, and within tol of
 * the double reference (float products over d, h and up to M rows).
 */
static void
check_ffn(int64_t e, int64_t m, int64_t d, int64_t h, int64_t o, double tol)
{
    int relu, with_si, i;

    for (relu = 0; relu < 2; relu++)
        for (with_si = 0; with_si < 2; with_si++) {
            struct ophost_attr attrs[] = {
                OPHOST_STRING("activation", relu ? "relu" : "gelu"),
                OPHOST_END};
            struct smlp_tensor *in[6], *out[1], *go[1], *gi[6] = {0};
            double *want, *g[5];
            const int64_t sz[5] = {e * m * d, e * h * d, e * h, e * o * h,
                                   e * o};
            static const char *const names[5] = {"d buf", "d W1", "d b1",
                                                 "d W2", "d b2"};
            char what[64];

            ffn_inputs(in, e, m, d, h, o, with_si, 100 + 10 * relu + with_si);
            forward_threads("moe.expert_ffn", attrs, in, 6, out, 1);
            go[0] = rnd_f32(OPHOST_SHAPE(e, m, o), 9, 1.0);
            for (i = 0; i < 5; i++) {
                gi[i] = ophost_tensor_like(in[i]);
                g[i] = dalloc(sz[i]);
            }
            backward_threads("moe.expert_ffn", attrs, in, 6, out, 1, go, gi);
            want = dalloc(e * m * o);
            ffn_reference(in, relu, go[0]->data, want, g);
            snprintf(what, sizeof(what), "out (%s, slot_item %d)",
                     relu ? "relu" : "gelu", with_si);
            assert_close(out[0]->data, want, e * m * o, tol, what);
            for (i = 0; i < 5; i++) {
                snprintf(what, sizeof(what), "%s (%s, slot_item %d)",
                         names[i], relu ? "relu" : "gelu", with_si);
                assert_close(gi[i]->data, g[i], sz[i], tol, what);
                free(g[i]);
            }
            free(want);
            free_all(gi, 6);
            free_all(go, 1);
            free_all(out, 1);
            free_all(in, 6);
        }
}

START_TEST(test_moe_tasks_ffn_row_blocks)
{
    /* M = 1100: three forward row blocks (<= 512 rows) per expert; h =
     * 600: two hidden chunks (<= 512); M > h: the backward's row mode
     * (row blocks of <= 256, then ~8 column blocks of dW over h).  The
     * last expert is empty with slot_item.  Float sums of <= 600 terms of
     * O(1): observed error ~1e-6 of the largest value; tol 1e-4. */
    check_ffn(3, 1100, 20, 600, 24, 1e-4);
}
END_TEST

START_TEST(test_moe_tasks_ffn_column_blocks)
{
    /* M = 150 <= h = 700: the backward's column mode (hidden columns in
     * blocks of 96, then dX in column blocks over d = 70 and db2 over
     * o = 40); the forward's two hidden chunks of 352 and 348. */
    check_ffn(2, 150, 70, 700, 40, 1e-4);
}
END_TEST

/* ---- moe.dispatch and moe.combine ------------------------------------- */

/* A routing of n items with k choices over e experts of m rows, as a gate
 * leaves it: distinct rows, some choices dropped, some rows empty. */
static void
make_routing(int64_t n, int64_t k, int64_t e, int64_t m, int32_t *expert,
             int32_t *slot, int32_t *slot_item)
{
    int32_t *next = calloc((size_t)e, sizeof(int32_t));
    int64_t i, j;

    ck_assert_ptr_nonnull(next);
    for (i = 0; i < e * m; i++)
        slot_item[i] = -1;
    for (i = 0; i < n; i++)
        for (j = 0; j < k; j++) {
            int32_t ex = (int32_t)((i * 7 + j * 3 + i / 5) % e);

            expert[i * k + j] = ex;
            if (next[ex] < m && (i + j) % 9 != 0) {
                slot[i * k + j] = next[ex];
                slot_item[ex * m + next[ex]++] = (int32_t)i;
            } else {
                slot[i * k + j] = -1;
            }
        }
    free(next);
}

START_TEST(test_moe_tasks_dispatch)
{
    /* 700 items, E·M = 4·300 rows: 19 row tasks forward, 11 item tasks
     * backward.  Rows 10 and 11 of expert 0 and row 7 of expert 2 also
     * hold item 5, so the backward sums three or more rows for it (their
     * order shows in the float sum); the serial scatter-add in ascending
     * row order is reproduced bit for bit. */
    const int64_t n = 700, k = 2, e = 4, m = 300, d = 33;
    struct smlp_tensor *in[2], *out[1], *go[1], *gi[2] = {0};
    int32_t *expert = malloc((size_t)(n * k) * sizeof(int32_t));
    int32_t *slot = malloc((size_t)(n * k) * sizeof(int32_t));
    float *want;
    const float *x, *db;
    const int32_t *si;
    int64_t r, c;

    in[0] = rnd_f32(OPHOST_SHAPE(n, d), 1, 1.0);
    in[1] = ophost_i32(OPHOST_SHAPE(e, m), NULL);
    make_routing(n, k, e, m, expert, slot, in[1]->data);
    ((int32_t *)in[1]->data)[10] = 5;
    ((int32_t *)in[1]->data)[11] = 5;
    ((int32_t *)in[1]->data)[2 * m + 7] = 5;
    forward_threads("moe.dispatch", NULL, in, 2, out, 1);
    x = in[0]->data;
    si = in[1]->data;
    for (r = 0; r < e * m; r++)
        for (c = 0; c < d; c++)
            ck_assert(((float *)out[0]->data)[r * d + c] ==
                      (si[r] < 0 ? 0.0f : x[si[r] * d + c]));
    go[0] = rnd_f32(OPHOST_SHAPE(e, m, d), 2, 1.0);
    gi[0] = ophost_tensor_like(in[0]);
    backward_threads("moe.dispatch", NULL, in, 2, out, 1, go, gi);
    want = calloc((size_t)(n * d), sizeof(float));
    ck_assert_ptr_nonnull(want);
    db = go[0]->data;
    for (r = 0; r < e * m; r++)
        for (c = 0; si[r] >= 0 && c < d; c++)
            want[si[r] * d + c] += db[r * d + c];
    ck_assert(memcmp(want, gi[0]->data, (size_t)(n * d) * sizeof(float)) ==
              0);
    free(want);
    free(expert);
    free(slot);
    free_all(gi, 2);
    free_all(go, 1);
    free_all(out, 1);
    free_all(in, 2);
}
END_TEST

START_TEST(test_moe_tasks_combine)
{
    /* 900 items, k = 3 over E·M = 5·400 rows: 15 item tasks forward; 32
     * buffer-row tasks plus 15 item tasks backward.  Item 7's three
     * choices point to one row (three terms, so their order shows in the
     * float sum), as serial float loops in (n, j) order give, bit for
     * bit. */
    const int64_t n = 900, k = 3, e = 5, m = 400, o = 21;
    struct smlp_tensor *in[4], *out[1], *go[1], *gi[4] = {0};
    int32_t *slot_item = malloc((size_t)(e * m) * sizeof(int32_t));
    const int32_t *ex, *sl;
    const float *w, *ov, *dy;
    float *want, *wdw;
    int64_t i, j, c;

    in[0] = rnd_f32(OPHOST_SHAPE(e, m, o), 3, 1.0);
    in[1] = ophost_i32(OPHOST_SHAPE(n, k), NULL);
    in[2] = ophost_i32(OPHOST_SHAPE(n, k), NULL);
    in[3] = rnd_f32(OPHOST_SHAPE(n, k), 4, 1.0);
    make_routing(n, k, e, m, in[1]->data, in[2]->data, slot_item);
    for (j = 1; j < k; j++) {
        ((int32_t *)in[1]->data)[7 * k + j] = ((int32_t *)in[1]->data)[7 * k];
        ((int32_t *)in[2]->data)[7 * k + j] = ((int32_t *)in[2]->data)[7 * k];
    }
    ck_assert_int_ge(((int32_t *)in[2]->data)[7 * k], 0);
    forward_threads("moe.combine", NULL, in, 4, out, 1);
    ex = in[1]->data;
    sl = in[2]->data;
    w = in[3]->data;
    ov = in[0]->data;
    want = calloc((size_t)(e * m * o), sizeof(float));
    wdw = calloc((size_t)(n * k), sizeof(float));
    ck_assert(want != NULL && wdw != NULL);
    for (i = 0; i < n; i++) {
        float y[21] = {0};

        for (j = 0; j < k; j++)
            for (c = 0; sl[i * k + j] >= 0 && c < o; c++)
                y[c] += w[i * k + j] *
                        ov[((int64_t)ex[i * k + j] * m + sl[i * k + j]) * o +
                           c];
        ck_assert(memcmp(y, (float *)out[0]->data + i * o,
                         (size_t)o * sizeof(float)) == 0);
    }
    go[0] = rnd_f32(OPHOST_SHAPE(n, o), 5, 1.0);
    gi[0] = ophost_tensor_like(in[0]);
    gi[3] = ophost_tensor_like(in[3]);
    backward_threads("moe.combine", NULL, in, 4, out, 1, go, gi);
    dy = go[0]->data;
    for (i = 0; i < n; i++)
        for (j = 0; j < k; j++) {
            int64_t at = ((int64_t)ex[i * k + j] * m + sl[i * k + j]) * o;
            double acc = 0.0;

            if (sl[i * k + j] < 0)
                continue;
            for (c = 0; c < o; c++) {
                want[at + c] += w[i * k + j] * dy[i * o + c];
                acc += (double)ov[at + c] * dy[i * o + c];
            }
            wdw[i * k + j] = (float)acc;
        }
    ck_assert(memcmp(want, gi[0]->data,
                     (size_t)(e * m * o) * sizeof(float)) == 0);
    ck_assert(memcmp(wdw, gi[3]->data, (size_t)(n * k) * sizeof(float)) ==
              0);
    free(want);
    free(wdw);
    free(slot_item);
    free_all(gi, 4);
    free_all(go, 1);
    free_all(out, 1);
    free_all(in, 4);
}
END_TEST

/* ---- gates ------------------------------------------------------------- */

/* The gate noise stream of moe.h (smlp__moe_noise), in the test. */
static uint64_t
mix64(uint64_t x)
{
    uint64_t z = x + 0x9e3779b97f4a7c15ull;

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double
noise(uint64_t seed, const char *name, uint64_t step, int64_t i)
{
    uint64_t h = 0xcbf29ce484222325ull, key, a, b;
    const char *s;

    for (s = name; *s != '\0'; s++) {
        h ^= (uint64_t)(unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    key = mix64(mix64(mix64(seed) ^ h) ^ step);
    a = mix64(key + 2 * (uint64_t)i * 0x9e3779b97f4a7c15ull);
    b = mix64(key + (2 * (uint64_t)i + 1) * 0x9e3779b97f4a7c15ull);
    return sqrt(-2.0 * log(((double)(a >> 11) + 1.0) / 9007199254740992.0)) *
           cos(2.0 * M_PI * (double)(b >> 11) / 9007199254740992.0);
}

/*
 * Checks a gate's outputs against its contract where the routing does
 * not depend on the schedule: every kept choice is the item's buffer
 * row in its group's share of its expert, slot_item is the inverse of
 * slot, no expert takes more than cap rows of a group, and load counts
 * the kept and dropped choices.
 */
static void
assert_routing(struct smlp_tensor *const *out, int64_t n, int64_t k,
               int64_t e, int64_t g)
{
    const int32_t *ex = out[0]->data, *sl = out[1]->data;
    const int32_t *si = out[3]->data, *load = out[5]->data;
    int64_t m = out[3]->shape[1], cap = m / (n / g), i, j, filled = 0;
    int64_t *want = calloc((size_t)(2 * e), sizeof(int64_t));

    ck_assert_ptr_nonnull(want);
    for (i = 0; i < n; i++)
        for (j = 0; j < k; j++) {
            int32_t x = ex[i * k + j], s = sl[i * k + j];

            ck_assert(x >= 0 && x < e);
            want[2 * x + (s < 0)]++;
            if (s < 0)
                continue;
            ck_assert_msg(s / cap == i / g, "item %lld slot %d outside its "
                          "group's rows", (long long)i, (int)s);
            ck_assert_int_eq(si[x * m + s], i);
            filled++;
        }
    for (i = 0; i < e * m; i++)
        filled -= si[i] >= 0;
    ck_assert_int_eq(filled, 0);
    for (i = 0; i < 2 * e; i++)
        ck_assert_int_eq(load[i], want[i]);
    free(want);
}

START_TEST(test_moe_tasks_gate_noise_rows)
{
    /* 1000 items: 16 row tasks, so the noise of row r must be element
     * r·E + j of the stream whatever task draws it.  No dropping
     * (cf 0) and normalize none: each weight is the noisy softmax of
     * x·Wgᵀ at the chosen expert, recomputed here in double; experts are
     * compared where the top k are at least 1e-4 apart.  The float
     * logits differ from the double ones by ~1e-6: tol 1e-5. */
    const int64_t n = 1000, d = 40, e = 6, k = 2;
    struct ophost_attr attrs[] = {OPHOST_INT("k", k),
                                  OPHOST_FLOAT("capacity_factor", 0.0),
                                  OPHOST_FLOAT("noise_std", 1.5),
                                  OPHOST_INT("group_size", 40), OPHOST_END};
    struct smlp_tensor *in[2] = {rnd_f32(OPHOST_SHAPE(n, d), 11, 1.0),
                                 rnd_f32(OPHOST_SHAPE(e, d), 12, 0.3)};
    struct smlp_tensor *out[NGATE];
    double *want = dalloc(n * k), z[6], p[6];
    const float *x = in[0]->data, *wg = in[1]->data;
    const int32_t *ex;
    int64_t i, j, c, compared = 0;

    ophost_set_training(host, 1);
    ophost_set_seed(host, 5, 9);
    forward_threads("moe.gate.topk", attrs, in, 2, out, NGATE);
    ex = out[0]->data;
    for (i = 0; i < n; i++) {
        double max = -1e300, sum = 0.0, v0, v1;

        for (j = 0; j < e; j++) {
            z[j] = 0.0;
            for (c = 0; c < d; c++)
                z[j] += (double)x[i * d + c] * wg[j * d + c];
            z[j] += 1.5 / (double)e * noise(5, "ophost_node", 9, i * e + j);
            max = z[j] > max ? z[j] : max;
        }
        for (j = 0; j < e; j++)
            sum += exp(z[j] - max);
        for (j = 0; j < e; j++)
            p[j] = exp(z[j] - max) / sum;
        for (j = 0; j < k; j++)
            want[i * k + j] = p[ex[i * k + j]];
        /* The choices: the k largest, in order, where not near a tie. */
        v0 = p[ex[i * k]];
        v1 = p[ex[i * k + 1]];
        ck_assert_double_ge(v0 + 1e-6, v1);
        for (j = 0; j < e; j++)
            if (j != ex[i * k] && j != ex[i * k + 1] && p[j] > v1 - 1e-4)
                break;
        if (j == e && v0 - v1 > 1e-4) {
            compared++;
            for (j = 0; j < e; j++)
                ck_assert(j == ex[i * k] || j == ex[i * k + 1] ||
                          p[j] < v1);
        }
    }
    ck_assert_int_gt(compared, n * 9 / 10);
    assert_close(out[2]->data, want, n * k, 1e-5, "weight");
    assert_routing(out, n, k, e, 40);
    free(want);
    free_all(out, NGATE);
    free_all(in, 2);
    ophost_set_training(host, 0);
}
END_TEST

/*
 * Every learned gate and aux on 2000 items in groups of 50 (gpt 2: 20
 * group tasks; 32 row tasks), with drops (cf 0.7), in training with
 * noise and in inference: the six outputs bit-identical across threads
 * and consistent (assert_routing); then the backward of dx and dWg, with
 * d weight and d aux, bit-identical across threads.
 */
static void
check_gate_threads(const char *op, int per_image)
{
    static const char *const auxes[] = {"vmoe", "switch"};
    const int64_t n = 2000, d = 70, e = 5, k = 2;
    int training, a;

    for (training = 0; training < 2; training++)
        for (a = 0; a < 2; a++) {
            struct ophost_attr attrs[] = {
                OPHOST_INT("k", k),
                OPHOST_INT("group_size", 50),
                OPHOST_FLOAT("capacity_factor", 0.7),
                OPHOST_FLOAT("noise_std", 1.0),
                OPHOST_STRING("aux", auxes[a]),
                OPHOST_STRING("normalize", a ? "topk" : "none"),
                OPHOST_INT("items_per_image", 5),
                OPHOST_END};
            struct smlp_tensor *in[3] = {
                rnd_f32(OPHOST_SHAPE(n, d), 21 + a, 1.0),
                rnd_f32(OPHOST_SHAPE(e, d), 23 + a, 0.4), NULL};
            struct smlp_tensor *out[NGATE], *go[NGATE] = {0};
            struct smlp_tensor *gi[3] = {0};
            int n_in = 2;

            if (!per_image)
                attrs[6] = (struct ophost_attr)OPHOST_END;
            if (per_image) {
                int32_t *lab;
                int64_t i;

                in[2] = ophost_i32(OPHOST_SHAPE(n / 5), NULL);
                lab = in[2]->data;
                for (i = 0; i < n / 5; i++)
                    lab[i] = (int32_t)((i * 3) % e);
                n_in = 3;
            }
            ophost_set_training(host, training);
            ophost_set_seed(host, 3, 17);
            forward_threads(op, attrs, in, n_in, out, NGATE);
            assert_routing(out, n, k, e, 50);
            go[2] = rnd_f32(OPHOST_SHAPE(n, k), 31, 1.0);
            go[4] = ophost_f32(0, NULL, (const float[]){2.5f});
            gi[0] = ophost_tensor_like(in[0]);
            gi[1] = ophost_tensor_like(in[1]);
            backward_threads(op, attrs, in, n_in, out, NGATE, go, gi);
            free_all(gi, 3);
            free_all(go, NGATE);
            free_all(out, NGATE);
            free_all(in, 3);
        }
    ophost_set_training(host, 0);
}

START_TEST(test_moe_tasks_gate_topk)
{
    check_gate_threads("moe.gate.topk", 0);
}
END_TEST

START_TEST(test_moe_tasks_gate_importance)
{
    check_gate_threads("moe.gate.importance", 0);
}
END_TEST

START_TEST(test_moe_tasks_gate_per_image)
{
    check_gate_threads("moe.gate.per_image", 1);
}
END_TEST

START_TEST(test_moe_tasks_gate_importance_priority)
{
    /* 1200 items in groups of 30 (gpt 3: 14 group tasks), k = 1, cf
     * 0.6: in each group an expert keeps its most confident items.  The
     * scores (max p) are recomputed here in double; within a group and
     * expert every kept item outranks every dropped one, and kept rows go
     * in descending score.  Pairs closer than 1e-5 are not compared (the
     * float logits differ from the double ones by ~1e-6). */
    const int64_t n = 1200, d = 16, e = 4, g = 30;
    struct ophost_attr attrs[] = {OPHOST_INT("group_size", g),
                                  OPHOST_FLOAT("capacity_factor", 0.6),
                                  OPHOST_END};
    struct smlp_tensor *in[2] = {rnd_f32(OPHOST_SHAPE(n, d), 41, 1.0),
                                 rnd_f32(OPHOST_SHAPE(e, d), 42, 1.0)};
    struct smlp_tensor *out[NGATE];
    const float *x = in[0]->data, *wg = in[1]->data;
    const int32_t *ex, *sl;
    double *score = dalloc(n);
    int64_t i, i2, j, c, dropped = 0;

    forward_threads("moe.gate.importance", attrs, in, 2, out, NGATE);
    assert_routing(out, n, 1, e, g);
    ex = out[0]->data;
    sl = out[1]->data;
    for (i = 0; i < n; i++) {
        double z[4], max = -1e300, sum = 0.0;

        for (j = 0; j < e; j++) {
            z[j] = 0.0;
            for (c = 0; c < d; c++)
                z[j] += (double)x[i * d + c] * wg[j * d + c];
            max = z[j] > max ? z[j] : max;
        }
        for (j = 0; j < e; j++)
            sum += exp(z[j] - max);
        score[i] = 1.0 / sum; /* the max p */
        dropped += sl[i] < 0;
    }
    ck_assert_int_gt(dropped, n / 10);
    for (i = 0; i < n; i++)
        for (i2 = i + 1; i2 < n && i2 / g == i / g; i2++) {
            if (ex[i] != ex[i2] || fabs(score[i] - score[i2]) < 1e-5 ||
                (sl[i] < 0 && sl[i2] < 0))
                continue;
            if (sl[i] < 0 || sl[i2] < 0) {
                /* The kept one has the higher score. */
                ck_assert_msg((sl[i] >= 0) == (score[i] > score[i2]),
                              "items %lld and %lld", (long long)i,
                              (long long)i2);
                continue;
            }
            ck_assert_msg((sl[i] < sl[i2]) == (score[i] > score[i2]),
                          "items %lld and %lld", (long long)i,
                          (long long)i2);
        }
    free(score);
    free_all(out, NGATE);
    free_all(in, 2);
}
END_TEST

START_TEST(test_moe_tasks_gate_hash)
{
    /* 3000 items in groups of 60 (one group per task), some dropped. */
    struct ophost_attr attrs[] = {OPHOST_INT("experts", 7),
                                  OPHOST_INT("items_per_image", 20),
                                  OPHOST_INT("group_size", 60),
                                  OPHOST_FLOAT("capacity_factor", 0.8),
                                  OPHOST_STRING("mode", "hash"), OPHOST_END};
    struct smlp_tensor *in[1] = {rnd_f32(OPHOST_SHAPE(3000, 3), 51, 1.0)};
    struct smlp_tensor *out[NGATE];

    ophost_set_training(host, 1);
    forward_threads("moe.gate.hash", attrs, in, 1, out, NGATE);
    assert_routing(out, 3000, 1, 7, 60);
    free_all(out, NGATE);
    free_all(in, 1);
    ophost_set_training(host, 0);
}
END_TEST

START_TEST(test_moe_tasks_gate_backward_reference)
{
    /* Inference, topk, normalize none, no dropping: d weight reaches the
     * softmax of each item alone, dz = p ⊙ (dp − <p, dp>) with dp the
     * kept choices' d weight, dx = dz·Wg and dWg = dzᵀ·x, here in double.
     * 700 items (11 row tasks), d = 150 (3 column tasks of dWg). */
    const int64_t n = 700, d = 150, e = 5, k = 2;
    struct ophost_attr attrs[] = {OPHOST_INT("k", k),
                                  OPHOST_FLOAT("capacity_factor", 0.0),
                                  OPHOST_END};
    struct smlp_tensor *in[2] = {rnd_f32(OPHOST_SHAPE(n, d), 61, 1.0),
                                 rnd_f32(OPHOST_SHAPE(e, d), 62, 0.1)};
    struct smlp_tensor *out[NGATE], *go[NGATE] = {0}, *gi[2];
    const float *x = in[0]->data, *wg = in[1]->data, *dw;
    const int32_t *ex;
    double *dx = dalloc(n * d), *dwg = dalloc(e * d), z[5], p[5], dp[5];
    int64_t i, j, c;

    forward_threads("moe.gate.topk", attrs, in, 2, out, NGATE);
    go[2] = rnd_f32(OPHOST_SHAPE(n, k), 63, 1.0);
    gi[0] = ophost_tensor_like(in[0]);
    gi[1] = ophost_tensor_like(in[1]);
    backward_threads("moe.gate.topk", attrs, in, 2, out, NGATE, go, gi);
    ex = out[0]->data;
    dw = go[2]->data;
    for (i = 0; i < n; i++) {
        double max = -1e300, sum = 0.0, dot = 0.0;

        for (j = 0; j < e; j++) {
            z[j] = 0.0;
            for (c = 0; c < d; c++)
                z[j] += (double)x[i * d + c] * wg[j * d + c];
            max = z[j] > max ? z[j] : max;
            dp[j] = 0.0;
        }
        for (j = 0; j < e; j++)
            sum += exp(z[j] - max);
        for (j = 0; j < e; j++)
            p[j] = exp(z[j] - max) / sum;
        for (j = 0; j < k; j++)
            dp[ex[i * k + j]] += dw[i * k + j];
        for (j = 0; j < e; j++)
            dot += p[j] * dp[j];
        for (j = 0; j < e; j++) {
            double dz = p[j] * (dp[j] - dot);

            for (c = 0; c < d; c++) {
                dx[i * d + c] += dz * wg[j * d + c];
                dwg[j * d + c] += dz * x[i * d + c];
            }
        }
    }
    assert_close(gi[0]->data, dx, n * d, 1e-5, "dx");
    assert_close(gi[1]->data, dwg, e * d, 1e-5, "dWg");
    free(dx);
    free(dwg);
    free_all(gi, 2);
    free_all(go, NGATE);
    free_all(out, NGATE);
    free_all(in, 2);
}
END_TEST

static Suite *
moe_tasks_suite(void)
{
    Suite *s = suite_create("moe_tasks");
    TCase *tc;

#define TC(name)                                                             \
    tc = tcase_create(name);                                                 \
    tcase_add_checked_fixture(tc, setup, teardown);                          \
    tcase_set_timeout(tc, 120);                                              \
    suite_add_tcase(s, tc)

    TC("expert_ffn");
    tcase_add_test(tc, test_moe_tasks_ffn_row_blocks);
    tcase_add_test(tc, test_moe_tasks_ffn_column_blocks);
    TC("dispatch");
    tcase_add_test(tc, test_moe_tasks_dispatch);
    TC("combine");
    tcase_add_test(tc, test_moe_tasks_combine);
    TC("gates");
    tcase_add_test(tc, test_moe_tasks_gate_noise_rows);
    tcase_add_test(tc, test_moe_tasks_gate_topk);
    tcase_add_test(tc, test_moe_tasks_gate_importance);
    tcase_add_test(tc, test_moe_tasks_gate_per_image);
    tcase_add_test(tc, test_moe_tasks_gate_importance_priority);
    tcase_add_test(tc, test_moe_tasks_gate_hash);
    tcase_add_test(tc, test_moe_tasks_gate_backward_reference);
#undef TC
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(moe_tasks_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
