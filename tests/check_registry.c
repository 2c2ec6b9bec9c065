/*
 * check_registry.c - the plugin loader: search order, ABI checks both
 * ways, broken plugins (tests/plugins/), unknown ops and failing kernels.
 */
#include "testutil.h"

/* Loads fixture `name`, expects `status` and a message with `needle`. */
static void
expect_load(const char *name, int status, const char *needle)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct smlp_error err;
    int rc;

    memset(&err, 0, sizeof(err));
    rc = smlp_registry_load(reg, name, &err);
    ck_assert_msg(rc == status, "load %s: got %s (%s), want %s", name,
                  smlp_status_name(rc), err.msg, smlp_status_name(status));
    if (needle != NULL) {
        tu_assert_contains(err.msg, needle);
        tu_assert_contains(err.msg, name); /* names the plugin */
    }
    smlp_registry_destroy(reg);
}

START_TEST(test_registry_load_good)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct smlp_error err;
    int i, found = 0;

    ck_assert_int_eq(smlp_registry_load(reg, "good", &err), SMLP_OK);
    ck_assert_int_eq(smlp_registry_load(reg, "good", &err), SMLP_OK);
    for (i = 0; i < smlp_registry_op_count(reg); i++)
        found += strcmp(smlp_registry_op_name(reg, i), "good.identity") == 0;
    ck_assert_int_eq(found, 1);
    /* Past the last op there is no name. */
    ck_assert_ptr_null(
        smlp_registry_op_name(reg, smlp_registry_op_count(reg)));
    /* A plugin whose name shares a prefix with a loaded one's is another
     * plugin: badop still fails to load after badcase loaded. */
    unsetenv("SMLP_TEST_BADCASE");
    ck_assert_int_eq(smlp_registry_load(reg, "badcase", &err), SMLP_OK);
    ck_assert_int_eq(smlp_registry_load(reg, "badop", &err), SMLP_EINVAL);
    tu_assert_contains(err.msg, "op 'badop.none'");
    /* Nor is a longer name that starts with a loaded one's. */
    ck_assert_int_eq(smlp_registry_load(reg, "goodx", &err),
                     SMLP_ENOPLUGIN);
    tu_assert_contains(err.msg, "plugin 'goodx' not found");
    smlp_registry_destroy(reg);
}
END_TEST

START_TEST(test_registry_load_missing)
{
    char dir[512];

    tu_fixture_dir(dir, sizeof(dir));
    expect_load("nosuch", SMLP_ENOPLUGIN, "not found");
    expect_load("nosuch", SMLP_ENOPLUGIN, dir); /* names the search path */
}
END_TEST

START_TEST(test_registry_load_path_refused)
{
    expect_load("../good", SMLP_EINVAL, "looks like a path");
    expect_load("good.so", SMLP_EINVAL, "looks like a path");
}
END_TEST

/* The host's ABI as the messages print it. */
#define HOST_ABI "ABI " SMLP_STR(SMLP_ABI_MAJOR) "." SMLP_STR(SMLP_ABI_MINOR)

START_TEST(test_registry_load_abi_old)
{
    expect_load("abi_old", SMLP_EABI, "ABI 0.9, this host has " HOST_ABI);
}
END_TEST

START_TEST(test_registry_load_abi_new)
{
    expect_load("abi_new", SMLP_EABI, "refused host " HOST_ABI);
}
END_TEST

/* A plugin that exports smlp_plugin_abi (SMLP_PLUGIN_DEFINE's do) gets
 * its own ABI named too. */
START_TEST(test_registry_load_abi_future_named)
{
    expect_load("abi_future", SMLP_EABI,
                "refused host " HOST_ABI ": it was built for ABI 2.1 "
                "(rebuild it against this smlp's headers)");
}
END_TEST

START_TEST(test_registry_load_minor_newer_ok)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct smlp_error err;

    ck_assert_msg(smlp_registry_load(reg, "minor_new", &err) == SMLP_OK, "%s",
                  err.msg);
    ck_assert_str_eq(smlp_registry_op_name(reg, 0), "minor_new.identity");
    smlp_registry_destroy(reg);
}
END_TEST

START_TEST(test_registry_load_short_size)
{
    expect_load("short_size", SMLP_EABI, "declares size 8");
}
END_TEST

START_TEST(test_registry_load_no_entry)
{
    expect_load("noentry", SMLP_ENOPLUGIN,
                "has no entry symbol 'smlp_plugin_init'");
}
END_TEST

START_TEST(test_registry_load_init_fails)
{
    expect_load("failinit", SMLP_EINVAL, "fixture refuses to load");
}
END_TEST

START_TEST(test_registry_load_duplicate_op)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct smlp_error err;
    int n;

    ck_assert_int_eq(smlp_registry_load(reg, "dup", &err), SMLP_EDUPLICATE);
    tu_assert_contains(err.msg, "op 'dup.identity' is registered twice");
    /* A failed load leaves nothing behind. */
    ck_assert_int_eq(smlp_registry_op_count(reg), 0);
    smlp_registry_destroy(reg);
    /* And takes nothing away: the ops of a plugin loaded before stay. */
    reg = tu_fixture_registry();
    ck_assert_int_eq(smlp_registry_load(reg, "good", &err), SMLP_OK);
    n = smlp_registry_op_count(reg);
    ck_assert_int_gt(n, 1);
    ck_assert_int_eq(smlp_registry_load(reg, "dup", &err), SMLP_EDUPLICATE);
    ck_assert_int_eq(smlp_registry_op_count(reg), n);
    ck_assert_ptr_nonnull(smlp_registry_op_def(reg, "good.identity"));
    ck_assert_ptr_nonnull(smlp_registry_op_def(reg, "good.fail"));
    smlp_registry_destroy(reg);
}
END_TEST

START_TEST(test_registry_load_bad_signature)
{
    expect_load("badsig", SMLP_EABI, "build signature");
}
END_TEST

START_TEST(test_registry_load_wrong_name)
{
    expect_load("wrongname", SMLP_EINVAL, "calls itself 'other'");
    expect_load("badop", SMLP_EINVAL,
                "op 'badop.none': 0 outputs, not within 1 to");
    expect_load("baddev", SMLP_EINVAL,
                "kernel 0 of op 'baddev.copy' has device 7, not one of "
                "enum smlp_device");
}
END_TEST

START_TEST(test_registry_search_order)
{
    struct smlp_error err;
    smlp_registry_t *reg;
    const char *path;
    char dir[512];

    tu_fixture_dir(dir, sizeof(dir));
    setenv("SMLP_PLUGIN_PATH", "/nonexistent/env-dir", 1);
    reg = smlp_registry_create("/nonexistent/first:" "/nonexistent/second",
                               &err);
    ck_assert_ptr_nonnull(reg);
    path = smlp_registry_search_path(reg);
    {
        const char *want = "/nonexistent/first:/nonexistent/second:"
                           "/nonexistent/env-dir:";
        ck_assert_msg(strncmp(path, want, strlen(want)) == 0,
                      "search path %s", path);
    }
    /* The build tree comes before the install dir. */
    tu_assert_contains(path, "/plugins/.libs");
    ck_assert_int_eq(smlp_registry_load(reg, "good", &err), SMLP_ENOPLUGIN);
    tu_assert_contains(err.msg, "/nonexistent/env-dir");
    smlp_registry_destroy(reg);
    /* The environment variable finds the fixtures. */
    setenv("SMLP_PLUGIN_PATH", dir, 1);
    reg = smlp_registry_create(NULL, &err);
    ck_assert_int_eq(smlp_registry_load(reg, "good", &err), SMLP_OK);
    /* The build tree provides the shipped plugins with no path at all. */
    ck_assert_msg(smlp_registry_load(reg, "core", &err) == SMLP_OK, "%s",
                  err.msg);
    smlp_registry_destroy(reg);
    unsetenv("SMLP_PLUGIN_PATH");
}
END_TEST

/*
 * tests/plugins/badcase.c registers as $SMLP_TEST_BADCASE says: each case
 * with the status and a piece of the message a load gets (a failed load
 * leaves no op behind).
 */
static const struct {
    const char *name;
    int status;
    const char *needle;
} badcases[] = {
    {"neg_inputs", SMLP_EINVAL,
     "op 'badcase.id': inputs -1 to 1, not within 0 to 64"},
    {"many_inputs", SMLP_EINVAL,
     "op 'badcase.id': inputs 1 to 65, not within 0 to 64"},
    {"many_outputs", SMLP_EINVAL,
     "op 'badcase.id': 65 outputs, not within 1 to 64"},
    {"nodot", SMLP_EINVAL, "op 'badcaseXid' must be named 'badcase.OP'"},
    {"emptyop", SMLP_EINVAL, "op 'badcase.' must be named 'badcase.OP'"},
    {"devcount", SMLP_EINVAL, "not one of enum smlp_device"},
    {"norun", SMLP_EINVAL, "kernel 0 of op 'badcase.id' has no run()"},
    {"twice", SMLP_EDUPLICATE, "register_plugin called twice"},
    /* The first error is kept (not the "called twice" that follows). */
    {"badsig_twice", SMLP_EABI,
     "build signature 'not-this-build' differs from the host's"},
    {"noops", SMLP_EINVAL, "no op table"},
    {"nothing", SMLP_EINVAL, "init registered nothing"},
    /* A negative status from init comes back as it is. */
    {"enomem", SMLP_ENOMEM, "init failed (status"},
};

START_TEST(test_registry_load_badcase)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct smlp_error err;
    int rc;

    setenv("SMLP_TEST_BADCASE", badcases[_i].name, 1);
    memset(&err, 0, sizeof(err));
    rc = smlp_registry_load(reg, "badcase", &err);
    ck_assert_msg(rc == badcases[_i].status, "%s: got %s (%s), want %s",
                  badcases[_i].name, smlp_status_name(rc), err.msg,
                  smlp_status_name(badcases[_i].status));
    ck_assert_int_eq(err.status, rc);
    tu_assert_contains(err.msg, badcases[_i].needle);
    tu_assert_contains(err.msg, "badcase");
    ck_assert_int_eq(smlp_registry_op_count(reg), 0);
    unsetenv("SMLP_TEST_BADCASE");
    smlp_registry_destroy(reg);
}
END_TEST

static smlp_session_t *session_for(const char *json, smlp_graph_t **g,
                                   smlp_registry_t *reg,
                                   struct smlp_error *err, char *path,
                                   size_t len);

static const char *graph_badcase =
    "{\"name\": \"t\", \"plugins\": [\"badcase\"],"
    " \"tensors\": [{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 4]},"
    "  {\"name\": \"y\", \"kind\": \"Output\"}],"
    " \"nodes\": [{\"name\": \"n0\", \"op\": \"badcase.id\","
    "  \"inputs\": [0], \"outputs\": [1]}]}";

/*
 * Definitions of the smallest sizes the host accepts (every ABI 1.0
 * field, no more) load; what lies past a declared size is not read: the
 * op's backward and doc read as NULL, and the plugin's set_threads
 * (which would abort) is never called by a run.
 */
START_TEST(test_registry_load_smallest_sizes)
{
    static const float x[4] = {1, -2, 3.5f, 0};
    smlp_registry_t *reg = tu_fixture_registry();
    const struct smlp_op_def *def;
    struct smlp_error err;
    struct smlp_tensor t;
    smlp_session_t *s;
    smlp_graph_t *g;
    char path[512];

    setenv("SMLP_TEST_BADCASE", "exact", 1);
    ck_assert_msg(smlp_registry_load(reg, "badcase", &err) == SMLP_OK, "%s",
                  err.msg);
    def = smlp_registry_op_def(reg, "badcase.id");
    ck_assert_ptr_nonnull(def);
    ck_assert_ptr_null(def->backward);
    ck_assert_ptr_null(def->doc);
    s = session_for(graph_badcase, &g, reg, &err, path, sizeof(path));
    ck_assert_msg(s != NULL, "%s", err.msg);
    ck_assert_int_eq(smlp_session_tensor(s, "x", &t), SMLP_OK);
    memcpy(t.data, x, sizeof(x));
    ck_assert_msg(smlp_session_run(s) == SMLP_OK, "%s",
                  smlp_session_errmsg(s));
    ck_assert_int_eq(smlp_session_tensor(s, "y", &t), SMLP_OK);
    ck_assert_mem_eq(t.data, x, sizeof(x));
    unsetenv("SMLP_TEST_BADCASE");
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * The host table as a plugin sees it (smlp_plugin.h): the attribute
 * getters return SMLP_EINVAL for another type, SMLP_OK and the value
 * for a string, SMLP_DECLINED when absent (badcase.attrs
 * encodes what it saw as its output's length, 7 when all three hold);
 * errorf keeps a node's first message.
 */
START_TEST(test_registry_host_table)
{
    static const char *json =
        "{\"name\": \"t\", \"plugins\": [\"badcase\"],"
        " \"tensors\": [{\"name\": \"x\", \"kind\": \"Input\","
        " \"shape\": [-1, 4]}, {\"name\": \"code\", \"kind\": \"Output\"},"
        "  {\"name\": \"y\", \"kind\": \"Output\"}],"
        " \"nodes\": [{\"name\": \"probe\", \"op\": \"badcase.attrs\","
        "  \"inputs\": [0], \"outputs\": [1], \"attrs\": ["
        "  {\"name\": \"n\", \"type\": \"Int\", \"i\": 3},"
        "  {\"name\": \"s\", \"type\": \"String\", \"s\": \"v\"}]},"
        "  {\"name\": \"two\", \"op\": \"badcase.twoerr\","
        "  \"inputs\": [0], \"outputs\": [2]}]}";
    smlp_registry_t *reg = tu_fixture_registry();
    struct smlp_error err;
    struct smlp_tensor t;
    smlp_session_t *s;
    smlp_graph_t *g;
    char path[512];

    unsetenv("SMLP_TEST_BADCASE");
    s = session_for(json, &g, reg, &err, path, sizeof(path));
    ck_assert_msg(s != NULL, "%s", err.msg);
    ck_assert_int_eq(smlp_session_tensor(s, "code", &t), SMLP_OK);
    ck_assert_int_eq(smlp_tensor_numel(&t), 7);
    ck_assert_int_eq(smlp_session_run(s), SMLP_EKERNEL);
    tu_assert_contains(smlp_session_errmsg(s), "'two' (badcase.twoerr) "
                                               "failed: first message 1");
    ck_assert_ptr_null(strstr(smlp_session_errmsg(s), "second message"));
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/* host->log prints a warning at the default level (SMLP_LOG unset) and
 * not an info line. */
START_TEST(test_registry_log_default_level)
{
    smlp_registry_t *reg;
    struct smlp_error err;
    const char *text;
    int saved, rc;

    reg = tu_fixture_registry();
    setenv("SMLP_TEST_BADCASE", "warn", 1);
    saved = tu_stderr_begin();
    rc = smlp_registry_load(reg, "badcase", &err);
    text = tu_stderr_end(saved);
    ck_assert_int_eq(rc, SMLP_OK);
    if (getenv("SMLP_LOG") == NULL) { /* else another level was asked for */
        tu_assert_contains(text, "smlp: warning: badcase warns 7\n");
        ck_assert_ptr_null(strstr(text, "badcase informs"));
    }
    unsetenv("SMLP_TEST_BADCASE");
    smlp_registry_destroy(reg);
}
END_TEST

/* Empty entries of a search path (a leading, doubled or trailing ':')
 * name no directory: they are left out of the path. */
START_TEST(test_registry_path_empty_entries)
{
    static const char *const want = "/nonexistent/a:/nonexistent/b:";
    smlp_registry_t *reg;
    struct smlp_error err;
    const char *path;

    unsetenv("SMLP_PLUGIN_PATH");
    reg = smlp_registry_create(":/nonexistent/a::/nonexistent/b:", &err);
    ck_assert_msg(reg != NULL, "%s", err.msg);
    path = smlp_registry_search_path(reg);
    ck_assert_msg(strncmp(path, want, strlen(want)) == 0, "search path %s",
                  path);
    ck_assert_ptr_null(strstr(path, "::"));
    smlp_registry_destroy(reg);
}
END_TEST

/* A directory named NAME.so is no plugin: the search goes on to the next
 * directory of the path. */
START_TEST(test_registry_skips_directory_named_so)
{
    char dir[512], fixtures[512], sub[600], list[1200];
    smlp_registry_t *reg;
    struct smlp_error err;

    tu_fixture_dir(fixtures, sizeof(fixtures));
    snprintf(dir, sizeof(dir), "%s/dirplug", tu_tmpdir());
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    snprintf(sub, sizeof(sub), "%s/good.so", dir);
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    snprintf(list, sizeof(list), "%s:%s", dir, fixtures);
    reg = smlp_registry_create(list, &err);
    ck_assert_msg(reg != NULL, "%s", err.msg);
    ck_assert_msg(smlp_registry_load(reg, "good", &err) == SMLP_OK, "%s",
                  err.msg);
    smlp_registry_destroy(reg);
}
END_TEST

static const char *graph_unknown_op =
    "{\"name\": \"t\", \"plugins\": [\"good\"],"
    " \"tensors\": [{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 4]},"
    "  {\"name\": \"y\", \"kind\": \"Output\"}],"
    " \"nodes\": [{\"name\": \"n0\", \"op\": \"good.nosuch\","
    "  \"inputs\": [0], \"outputs\": [1]}]}";

static const char *graph_fail =
    "{\"name\": \"t\", \"plugins\": [\"good\"],"
    " \"tensors\": [{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 4]},"
    "  {\"name\": \"a\"}, {\"name\": \"y\", \"kind\": \"Output\"}],"
    " \"nodes\": [{\"name\": \"copy\", \"op\": \"good.identity\","
    "  \"inputs\": [0], \"outputs\": [1]},"
    "  {\"name\": \"boom\", \"op\": \"good.fail\","
    "  \"inputs\": [1], \"outputs\": [2]}]}";

/* graph_fail with node 'boom' of op OP. */
#define GRAPH_ONE_BAD(op)                                                    \
    "{\"name\": \"t\", \"plugins\": [\"good\"],"                             \
    " \"tensors\": [{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 4]},"\
    "  {\"name\": \"a\"}, {\"name\": \"y\", \"kind\": \"Output\"}],"          \
    " \"nodes\": [{\"name\": \"copy\", \"op\": \"good.identity\","             \
    "  \"inputs\": [0], \"outputs\": [1]},"                                 \
    "  {\"name\": \"boom\", \"op\": \"" op "\","                               \
    "  \"inputs\": [1], \"outputs\": [2]}]}"

static const char *graph_missing_plugin =
    "{\"name\": \"t\", \"plugins\": [\"nosuch\"],"
    " \"tensors\": [{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 4]},"
    "  {\"name\": \"y\", \"kind\": \"Output\"}],"
    " \"nodes\": [{\"name\": \"n0\", \"op\": \"nosuch.op\","
    "  \"inputs\": [0], \"outputs\": [1]}]}";

static smlp_session_t *
session_for(const char *json, smlp_graph_t **g, smlp_registry_t *reg,
            struct smlp_error *err, char *path, size_t len)
{
    tu_graph_from_json(tu_tmpdir(), "g", json, path, len);
    *g = smlp_graph_load(path, err);
    ck_assert_msg(*g != NULL, "%s", err->msg);
    return smlp_session_create(*g, reg, NULL, err);
}

START_TEST(test_registry_unknown_op)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct smlp_error err;
    smlp_graph_t *g;
    char path[512];

    ck_assert_ptr_null(
        session_for(graph_unknown_op, &g, reg, &err, path, sizeof(path)));
    ck_assert_int_eq(err.status, SMLP_ENOKERNEL);
    tu_assert_contains(err.msg, "node 0 'n0': unknown op 'good.nosuch'");
    tu_assert_contains(err.msg, "good.identity");
    tu_assert_contains(err.msg, path);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

START_TEST(test_registry_missing_plugin_of_graph)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct smlp_error err;
    smlp_graph_t *g;
    char path[512];

    ck_assert_ptr_null(session_for(graph_missing_plugin, &g, reg, &err, path,
                                   sizeof(path)));
    ck_assert_int_eq(err.status, SMLP_ENOPLUGIN);
    tu_assert_contains(err.msg, path);
    tu_assert_contains(err.msg, "plugin 'nosuch' not found");
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/* A failing node among many small ready nodes on 2 threads: the scheduler
 * batches small nodes (sched.c); the failure is still reported with its
 * node, the other nodes finish, nothing hangs, and the session stays
 * usable. */
START_TEST(test_registry_kernel_failure_in_wide_graph)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct smlp_session_opts o;
    struct smlp_session_stats st;
    struct smlp_error err;
    smlp_session_t *s;
    smlp_graph_t *g;
    char path[512], json[16384];
    size_t len = 0;
    int i, rep;

    len += (size_t)snprintf(json + len, sizeof(json) - len,
                            "{\"name\": \"t\", \"plugins\": [\"good\"], "
                            "\"tensors\": [{\"name\": \"x\", \"kind\": "
                            "\"Input\", \"shape\": [-1, 4]}");
    for (i = 0; i < 40; i++)
        len += (size_t)snprintf(json + len, sizeof(json) - len,
                                ", {\"name\": \"y%d\", \"kind\": \"Output\"}",
                                i);
    len += (size_t)snprintf(json + len, sizeof(json) - len, "], \"nodes\": [");
    for (i = 0; i < 40; i++)
        len += (size_t)snprintf(json + len, sizeof(json) - len,
                                "%s{\"name\": \"%s%d\", \"op\": \"%s\", "
                                "\"inputs\": [0], \"outputs\": [%d]}",
                                i ? ", " : "", i == 21 ? "boom" : "copy", i,
                                i == 21 ? "good.fail" : "good.identity",
                                i + 1);
    snprintf(json + len, sizeof(json) - len, "]}");
    tu_graph_from_json(tu_tmpdir(), "g", json, path, sizeof(path));
    g = smlp_graph_load(path, &err);
    ck_assert_msg(g != NULL, "%s", err.msg);
    smlp_session_opts_init(&o);
    o.threads = 2;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    smlp_session_get_stats(s, &st);
    ck_assert_int_eq(st.inter_op, 2);
    for (rep = 0; rep < 3; rep++) {
        ck_assert_int_eq(smlp_session_run(s), SMLP_EKERNEL);
        tu_assert_contains(smlp_session_errmsg(s),
                           "node 21 'boom21' (good.fail) failed: fixture "
                           "kernel failure on purpose");
    }
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

START_TEST(test_registry_kernel_failure_reported)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct smlp_error err;
    smlp_session_t *s;
    smlp_graph_t *g;
    char path[512];

    s = session_for(graph_fail, &g, reg, &err, path, sizeof(path));
    ck_assert_msg(s != NULL, "%s", err.msg);
    ck_assert_int_eq(smlp_session_run(s), SMLP_EKERNEL);
    tu_assert_contains(smlp_session_errmsg(s),
                       "node 1 'boom' (good.fail) failed: fixture kernel "
                       "failure on purpose");
    /* The session stays usable: a second run fails the same way. */
    ck_assert_int_eq(smlp_session_run(s), SMLP_EKERNEL);
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/* A run returning SMLP_DECLINED (positive) fails the node: it used to
 * pass for done, leaving the output unwritten. */
START_TEST(test_registry_kernel_positive_status_fails)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct smlp_error err;
    smlp_session_t *s;
    smlp_graph_t *g;
    char path[512];

    s = session_for(GRAPH_ONE_BAD("good.decline"), &g, reg, &err, path,
                    sizeof(path));
    ck_assert_msg(s != NULL, "%s", err.msg);
    ck_assert_int_eq(smlp_session_run(s), SMLP_EKERNEL);
    tu_assert_contains(smlp_session_errmsg(s),
                       "node 1 'boom' (good.decline) failed: returned 1 "
                       "(DECLINED), not 0 or a negative status");
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/* A run that reports an error, then returns a positive status: the node
 * fails (SMLP_EKERNEL) with the kernel's message, not the runtime's
 * generic one (util.c's smlp__node_status writes only an empty one). */
START_TEST(test_registry_kernel_positive_status_keeps_message)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct smlp_error err;
    smlp_session_t *s;
    smlp_graph_t *g;
    char path[512];

    s = session_for(GRAPH_ONE_BAD("good.declinesaid"), &g, reg, &err, path,
                    sizeof(path));
    ck_assert_msg(s != NULL, "%s", err.msg);
    ck_assert_int_eq(smlp_session_run(s), SMLP_EKERNEL);
    tu_assert_contains(smlp_session_errmsg(s),
                       "node 1 'boom' (good.declinesaid) failed: the "
                       "kernel's own words");
    ck_assert_ptr_null(strstr(smlp_session_errmsg(s), "returned 1"));
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/* A workspace near SIZE_MAX is refused at inference, naming the node (its
 * rounding wrapped the arena's size, and the runtime wrote outside it). */
START_TEST(test_registry_huge_workspace_refused)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct smlp_error err;
    smlp_graph_t *g;
    char path[512];

    ck_assert_ptr_null(session_for(GRAPH_ONE_BAD("good.hugews"), &g, reg,
                                   &err, path, sizeof(path)));
    ck_assert_int_eq(err.status, SMLP_ELIMIT);
    tu_assert_contains(err.msg, "node 1 'boom' (good.hugews): shape "
                                "inference asks for 18446744073709551488 "
                                "bytes of workspace, over the limit of 2^48");
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/* A search-path entry that is a file is named when a plugin is not found
 * (a --plugin-path naming the .so itself). */
START_TEST(test_registry_path_entry_not_a_directory)
{
    struct smlp_error err;
    smlp_registry_t *reg = smlp_registry_create("/dev/null", &err);

    ck_assert_ptr_nonnull(reg);
    ck_assert_int_eq(smlp_registry_load(reg, "nosuch", &err),
                     SMLP_ENOPLUGIN);
    tu_assert_contains(err.msg, "plugin 'nosuch' not found");
    tu_assert_contains(err.msg, "(/dev/null is not a directory");
    smlp_registry_destroy(reg);
}
END_TEST

/* A run leaves the host's environment as it was (libuv's pool size is
 * set only while the pool starts). */
START_TEST(test_registry_run_keeps_environment)
{
    smlp_registry_t *reg = tu_fixture_registry();
    struct smlp_error err;
    smlp_session_t *s;
    smlp_graph_t *g;
    char path[512];

    unsetenv("UV_THREADPOOL_SIZE");
    s = session_for(GRAPH_ONE_BAD("good.identity"), &g, reg, &err, path,
                    sizeof(path));
    ck_assert_msg(s != NULL, "%s", err.msg);
    ck_assert_int_eq(smlp_session_run(s), SMLP_OK);
    ck_assert_ptr_null(getenv("UV_THREADPOOL_SIZE"));
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

static Suite *
registry_suite(void)
{
    Suite *s = suite_create("registry");
    TCase *tc = tcase_create("load");

    tcase_add_test(tc, test_registry_load_good);
    tcase_add_test(tc, test_registry_load_missing);
    tcase_add_test(tc, test_registry_load_path_refused);
    tcase_add_test(tc, test_registry_load_abi_old);
    tcase_add_test(tc, test_registry_load_abi_new);
    tcase_add_test(tc, test_registry_load_abi_future_named);
    tcase_add_test(tc, test_registry_load_minor_newer_ok);
    tcase_add_test(tc, test_registry_load_short_size);
    tcase_add_test(tc, test_registry_load_no_entry);
    tcase_add_test(tc, test_registry_load_init_fails);
    tcase_add_test(tc, test_registry_load_duplicate_op);
    tcase_add_test(tc, test_registry_load_bad_signature);
    tcase_add_test(tc, test_registry_load_wrong_name);
    tcase_add_test(tc, test_registry_search_order);
    tcase_add_loop_test(tc, test_registry_load_badcase, 0,
                        (int)(sizeof(badcases) / sizeof(badcases[0])));
    tcase_add_test(tc, test_registry_load_smallest_sizes);
    tcase_add_test(tc, test_registry_host_table);
    tcase_add_test(tc, test_registry_log_default_level);
    tcase_add_test(tc, test_registry_skips_directory_named_so);
    tcase_add_test(tc, test_registry_path_empty_entries);
    suite_add_tcase(s, tc);
    tc = tcase_create("resolve");
    tcase_add_test(tc, test_registry_unknown_op);
    tcase_add_test(tc, test_registry_missing_plugin_of_graph);
    tcase_add_test(tc, test_registry_kernel_failure_reported);
    tcase_add_test(tc, test_registry_kernel_positive_status_fails);
    tcase_add_test(tc, test_registry_kernel_positive_status_keeps_message);
    tcase_add_test(tc, test_registry_huge_workspace_refused);
    tcase_add_test(tc, test_registry_run_keeps_environment);
    tcase_add_test(tc, test_registry_path_entry_not_a_directory);
    tcase_add_test(tc, test_registry_kernel_failure_in_wide_graph);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(registry_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
