/*
 * check_robust.c - reliability checks that the bad-input catalogue
 * (tests/check_bad_inputs.sh) cannot make through smlp-run: the
 * check_finite session option (NaN and infinity in loaded weights),
 * initializers whose values would not be finite (refused at load), a
 * FIFO given as a graph (must not block), the --max-memory budget checked
 * at planning time to the byte, and no recursion on graph input (a chain
 * of 20000 nodes loads, plans and runs on a thread with a small stack).
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>

#include "testutil.h"

/* x [-1, 2] -> linear(W [3, 2], b [3]) -> y. */
static const char *graph_tiny =
    "{\"name\": \"tiny\", \"plugins\": [\"core\"], \"tensors\": ["
    "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 2]},"
    "{\"name\": \"W\", \"kind\": \"Parameter\", \"shape\": [3, 2]},"
    "{\"name\": \"b\", \"kind\": \"Parameter\", \"shape\": [3]},"
    "{\"name\": \"y\", \"kind\": \"Output\"}],"
    "\"nodes\": [{\"name\": \"fc\", \"op\": \"core.linear\","
    " \"inputs\": [0, 1, 2], \"outputs\": [3]}]}";

static smlp_graph_t *
load_json(const char *name, const char *json)
{
    struct smlp_error err;
    smlp_graph_t *g;
    char path[512];

    tu_graph_from_json(tu_tmpdir(), name, json, path, sizeof(path));
    g = smlp_graph_load(path, &err);
    ck_assert_msg(g != NULL, "%s", err.msg);
    return g;
}

/*
 * Writes a checkpoint of W [3, 2] and b [3] (F32) by hand.  `pad` spaces
 * after the header put the data at an offset that need not be aligned.
 */
static void
write_wb(const char *path, const float w[6], const float b[3], int pad)
{
    char header[256], buf[512];
    uint64_t hlen;
    size_t len;

    snprintf(header, sizeof(header),
             "{\"W\": {\"dtype\": \"F32\", \"shape\": [3, 2], "
             "\"data_offsets\": [0, 24]}, \"b\": {\"dtype\": \"F32\", "
             "\"shape\": [3], \"data_offsets\": [24, 36]}}%*s",
             pad, "");
    hlen = strlen(header);
    memcpy(buf, &hlen, 8);
    memcpy(buf + 8, header, hlen);
    memcpy(buf + 8 + hlen, w, 24);
    memcpy(buf + 8 + hlen + 24, b, 12);
    len = 8 + hlen + 36;
    tu_write(path, buf, len);
}

static smlp_session_t *
tiny_session(smlp_graph_t *g, smlp_registry_t *reg, int check_finite,
             const char *weights, struct smlp_error *err)
{
    struct smlp_session_opts o;

    smlp_session_opts_init(&o);
    o.threads = 1;
    o.check_finite = check_finite;
    o.weights = weights;
    return smlp_session_create(g, reg, &o, err);
}

START_TEST(test_check_finite_weights)
{
    static const float b[3] = {1, 2, 3};
    float w[6] = {1, 2, 3, 4, 5, 6};
    smlp_registry_t *reg = tu_registry();
    smlp_graph_t *g = load_json("tiny", graph_tiny);
    const char *dir = tu_tmpdir();
    struct smlp_tensor t;
    struct smlp_error err;
    smlp_session_t *s, *plain;
    char good[600], nan[600], inf[600];

    snprintf(good, sizeof(good), "%s/good.safetensors", dir);
    snprintf(nan, sizeof(nan), "%s/nan.safetensors", dir);
    snprintf(inf, sizeof(inf), "%s/inf.safetensors", dir);
    write_wb(good, w, b, 1);
    w[1] = NAN;
    write_wb(nan, w, b, 2); /* data at an odd offset */
    w[1] = 2;
    w[4] = -INFINITY;
    write_wb(inf, w, b, 3);

    s = tiny_session(g, reg, 1, NULL, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    ck_assert_int_eq(smlp_session_load_weights(s, good), SMLP_OK);
    ck_assert_int_eq(smlp_session_load_weights(s, nan), SMLP_EBADFILE);
    tu_assert_contains(smlp_session_errmsg(s), nan);
    tu_assert_contains(smlp_session_errmsg(s), "tensor 'W': element 1 is NaN");
    ck_assert_int_eq(smlp_session_load_weights(s, inf), SMLP_EBADFILE);
    tu_assert_contains(smlp_session_errmsg(s),
                       "tensor 'W': element 4 is infinite");
    /* The refused tensor keeps its old values. */
    ck_assert_int_eq(smlp_session_tensor(s, "W", &t), SMLP_OK);
    ck_assert(((const float *)t.data)[1] == 2 &&
              ((const float *)t.data)[4] == 5);
    ck_assert_int_eq(smlp_session_run(s), SMLP_OK);

    /* Off by default: the NaN loads. */
    plain = tiny_session(g, reg, 0, nan, &err);
    ck_assert_msg(plain != NULL, "%s", err.msg);
    ck_assert_int_eq(smlp_session_tensor(plain, "W", &t), SMLP_OK);
    ck_assert(isnan(((const float *)t.data)[1]));
    smlp_session_destroy(plain);

    /* Through opts.weights at creation. */
    ck_assert_ptr_null(tiny_session(g, reg, 1, nan, &err));
    ck_assert_int_eq(err.status, SMLP_EBADFILE);
    tu_assert_contains(err.msg, "tensor 'W': element 1 is NaN");

    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * Loads graph_tiny with W's init replaced by `init` (JSON) and W's dtype
 * by `dtype`; expects the load to fail with `needle`.
 */
static void
expect_bad_init(const char *dtype, const char *init, const char *needle)
{
    struct smlp_error err;
    char json[1024], path[512];

    snprintf(json, sizeof(json),
             "{\"name\": \"tiny\", \"plugins\": [\"core\"], \"tensors\": ["
             "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 2]},"
             "{\"name\": \"W\", \"kind\": \"Parameter\", \"dtype\": \"%s\","
             " \"shape\": [3, 2], \"init\": %s},"
             "{\"name\": \"y\", \"kind\": \"Output\"}],"
             "\"nodes\": [{\"name\": \"fc\", \"op\": \"core.linear\","
             " \"inputs\": [0, 1], \"outputs\": [2]}]}",
             dtype, init);
    tu_graph_from_json(tu_tmpdir(), "init", json, path, sizeof(path));
    ck_assert_msg(smlp_graph_load(path, &err) == NULL,
                  "loaded with init %s", init);
    ck_assert_int_eq(err.status, SMLP_EBADGRAPH);
    tu_assert_contains(err.msg, path);
    tu_assert_contains(err.msg, needle);
}

/* An initializer that would fill NaN, infinity or a wrapped integer is
 * refused when the graph loads, naming the tensor and the kind. */
START_TEST(test_graph_load_init_not_finite)
{
    expect_bad_init("F32", "{\"kind\": \"Constant\", \"a\": nan}",
                    "tensor 1 'W': constant initializer: a=nan is not a "
                    "finite float32 value");
    expect_bad_init("F32", "{\"kind\": \"Constant\", \"a\": 1e300}",
                    "tensor 1 'W': constant initializer: a=1e+300 is not a "
                    "finite float32 value");
    expect_bad_init("F32", "{\"kind\": \"Constant\", \"a\": -inf}",
                    "constant initializer: a=-inf is not a finite float32");
    expect_bad_init("F32", "{\"kind\": \"Normal\", \"a\": 1e300,"
                    " \"b\": 1}",
                    "tensor 1 'W': normal initializer: a=1e+300 is not a "
                    "finite float32 value");
    expect_bad_init("F32", "{\"kind\": \"Normal\", \"a\": 0,"
                    " \"b\": 1e300}",
                    "tensor 1 'W': normal initializer: b=1e+300 is not a "
                    "finite float32 value");
    expect_bad_init("F32", "{\"kind\": \"Normal\", \"a\": 0,"
                    " \"b\": 1e38}",
                    "tensor 1 'W': normal initializer (a=0, b=1e+38) can "
                    "give 5.9e+38, beyond the range of float32");
    expect_bad_init("F32", "{\"kind\": \"Uniform\", \"a\": 0,"
                    " \"b\": inf}",
                    "uniform initializer: b=inf is not a finite float32");
    expect_bad_init("F32", "{\"kind\": \"Uniform\", \"a\": nan,"
                    " \"b\": 1}",
                    "uniform initializer: a=nan is not a finite float32");
    expect_bad_init("I32", "{\"kind\": \"Constant\", \"a\": 1e10}",
                    "tensor 1 'W': constant initializer (a=1e+10, b=0) can "
                    "give 1e+10, beyond the range of int32");
    /* The checks that were there before stay. */
    expect_bad_init("F32", "{\"kind\": \"Uniform\", \"a\": 1,"
                    " \"b\": -1}",
                    "uniform initializer needs a <= b (a=1, b=-1)");
    expect_bad_init("F32", "{\"kind\": \"Normal\", \"b\": -1}",
                    "normal initializer needs std b >= 0 (b=-1)");
}
END_TEST

START_TEST(test_graph_fifo_does_not_block)
{
    struct smlp_error err;
    char path[600];

    snprintf(path, sizeof(path), "%s/fifo.fbs", tu_tmpdir());
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    /* Before the fix, open() blocked here until a writer came. */
    ck_assert_ptr_null(smlp_graph_load(path, &err));
    ck_assert_int_eq(err.status, SMLP_EBADFILE);
    tu_assert_contains(err.msg, "not a regular file");
}
END_TEST

/* The budget is arena + parameters, checked before anything is
 * allocated: the exact need passes, one byte less fails. */
START_TEST(test_max_memory_exact)
{
    smlp_registry_t *reg = tu_registry();
    struct smlp_session_opts o;
    struct smlp_session_stats st;
    struct smlp_error err;
    smlp_session_t *s;
    smlp_graph_t *g;
    char path[512];
    uint64_t need;

    tu_shipped_graph("sparse_mlp_fmnist", path, sizeof(path));
    g = smlp_graph_load(path, &err);
    ck_assert_msg(g != NULL, "%s", err.msg);
    smlp_session_opts_init(&o);
    o.batch = 3;
    o.plan_only = 1;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    smlp_session_get_stats(s, &st);
    need = st.arena_bytes + st.param_bytes;
    smlp_session_destroy(s);

    o.plan_only = 0;
    o.max_memory = need;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    ck_assert_int_eq(smlp_session_run(s), SMLP_OK);
    smlp_session_destroy(s);
    o.max_memory = need - 1;
    ck_assert_ptr_null(smlp_session_create(g, reg, &o, &err));
    ck_assert_int_eq(err.status, SMLP_ELIMIT);
    tu_assert_contains(err.msg, "over the memory limit");
    tu_assert_contains(err.msg, "--max-memory");
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/* A chain of N_CHAIN relu nodes, and a check that the runtime handles
 * it on a small stack: no recursion whose depth grows with the graph. */
#define N_CHAIN 20000

struct chain_job {
    const char *path;
    int status;
    char msg[1024];
    float out[2];
};

static void *
chain_thread(void *arg)
{
    struct chain_job *job = arg;
    struct smlp_session_opts o;
    struct smlp_tensor t;
    struct smlp_error err;
    smlp_registry_t *reg;
    smlp_session_t *s = NULL;
    smlp_graph_t *g;

    job->status = -1;
    reg = smlp_registry_create(NULL, &err);
    g = reg != NULL ? smlp_graph_load(job->path, &err) : NULL;
    if (g != NULL) {
        smlp_session_opts_init(&o);
        o.threads = 1;
        s = smlp_session_create(g, reg, &o, &err);
    }
    if (s == NULL) {
        snprintf(job->msg, sizeof(job->msg), "%s", err.msg);
    } else if (smlp_session_run(s) != SMLP_OK) {
        snprintf(job->msg, sizeof(job->msg), "%s", smlp_session_errmsg(s));
    } else if (smlp_session_tensor(s, "y", &t) == SMLP_OK) {
        memcpy(job->out, t.data, sizeof(job->out));
        job->status = 0;
    }
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
    return NULL;
}

START_TEST(test_no_recursion_deep_chain)
{
    const char *dir = tu_tmpdir();
    struct chain_job job;
    pthread_attr_t attr;
    pthread_t th;
    size_t cap = 200 + (size_t)N_CHAIN * 160, len = 0;
    char *json = malloc(cap), path[512];
    int i;

    ck_assert_ptr_nonnull(json);
    len += (size_t)snprintf(
        json + len, cap - len,
        "{\"name\": \"chain\", \"plugins\": [\"core\"], \"tensors\": ["
        "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 2],"
        " \"init\": {\"kind\": \"Constant\", \"a\": -3}}");
    for (i = 1; i < N_CHAIN; i++)
        len += (size_t)snprintf(json + len, cap - len, ", {\"name\": \"t%d\"}",
                                i);
    len += (size_t)snprintf(json + len, cap - len,
                            ", {\"name\": \"y\", \"kind\": \"Output\"}],"
                            " \"nodes\": [");
    /* Node i reads tensor i and writes tensor i + 1; the last writes y
     * (tensor N_CHAIN).  Listed backwards, so that the order comes from
     * the sort, not from the file.  Node 0 scales by -1, so y = 3. */
    for (i = N_CHAIN - 1; i >= 0; i--)
        len += (size_t)snprintf(
            json + len, cap - len,
            "%s{\"name\": \"n%d\", \"op\": \"core.%s\", \"inputs\": [%d],"
            " \"outputs\": [%d]%s}",
            i == N_CHAIN - 1 ? "" : ", ", i, i == 0 ? "scale" : "relu", i,
            i + 1,
            i == 0 ? ", \"attrs\": [{\"name\": \"alpha\", \"type\": "
                     "\"Float\", \"f\": -1}]"
                   : "");
    len += (size_t)snprintf(json + len, cap - len, "]}");
    ck_assert_uint_lt(len, cap - 1);
    tu_graph_from_json(dir, "chain", json, path, sizeof(path));
    free(json);

    /* 1 MiB: far less than N_CHAIN frames of any recursion would need
     * (and enough for the sanitizers' larger frames). */
    memset(&job, 0, sizeof(job));
    job.path = path;
    ck_assert_int_eq(pthread_attr_init(&attr), 0);
    ck_assert_int_eq(pthread_attr_setstacksize(&attr, 1u << 20), 0);
    ck_assert_int_eq(pthread_create(&th, &attr, chain_thread, &job), 0);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    pthread_attr_destroy(&attr);
    ck_assert_msg(job.status == 0, "%s", job.msg);
    ck_assert(job.out[0] == 3.0f && job.out[1] == 3.0f);
}
END_TEST

static Suite *
robust_suite(void)
{
    Suite *s = suite_create("robust");
    TCase *tc = tcase_create("weights");

    tcase_add_test(tc, test_check_finite_weights);
    tcase_add_test(tc, test_graph_load_init_not_finite);
    suite_add_tcase(s, tc);
    tc = tcase_create("limits");
    tcase_add_test(tc, test_graph_fifo_does_not_block);
    tcase_add_test(tc, test_max_memory_exact);
    tcase_add_test(tc, test_no_recursion_deep_chain);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(robust_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
