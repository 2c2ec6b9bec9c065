/*
 * check_team.c - the runtime's host->parallel_for (runtime/team.c) and the
 * thread split of sessions (choose_threads in runtime/session.c), through
 * the fixture plugin tests/plugins/pfor.c: every task runs exactly once
 * for any task and thread count, worker ids stay in [0, ctx->threads),
 * a failing task's status comes back (and the other tasks still run), a
 * nested parallel_for runs serially on the task's thread, and several
 * nodes calling it at once (inter_op > 1) each get all their tasks run.
 */
#include <math.h>
#include <stdint.h>

#include "testutil.h"

/*
 * A graph of `branches` independent pfor.probe nodes reading x, node b
 * writing runs<b>, worker<b> and nested<b> (graph outputs), with the given
 * attributes (a JSON list body, the same for every node).
 */
static smlp_graph_t *
probe_graph_each(int branches, const char *const *attrs);

static smlp_graph_t *
probe_graph(int branches, const char *attrs)
{
    const char *each[8];
    int b;

    ck_assert_int_le(branches, 8);
    for (b = 0; b < branches; b++)
        each[b] = attrs;
    return probe_graph_each(branches, each);
}

/* probe_graph with attributes attrs[b] for node b. */
static smlp_graph_t *
probe_graph_each(int branches, const char *const *attrs)
{
    static int serial;
    char json[8192], name[64], path[512];
    struct smlp_error err;
    smlp_graph_t *g;
    size_t used;
    int b, t;

    used = (size_t)snprintf(json, sizeof(json),
                            "{\"name\": \"pfor\", \"plugins\": [\"pfor\"], "
                            "\"tensors\": [{\"name\": \"x\", \"kind\": "
                            "\"Input\", \"shape\": [-1]}");
    for (b = 0; b < branches; b++)
        used += (size_t)snprintf(json + used, sizeof(json) - used,
                                 ", {\"name\": \"runs%d\", \"kind\": "
                                 "\"Output\"}, {\"name\": \"worker%d\", "
                                 "\"kind\": \"Output\"}, {\"name\": "
                                 "\"nested%d\", \"kind\": \"Output\"}",
                                 b, b, b);
    used += (size_t)snprintf(json + used, sizeof(json) - used,
                             "], \"nodes\": [");
    for (b = 0; b < branches; b++) {
        t = 1 + 3 * b;
        used += (size_t)snprintf(json + used, sizeof(json) - used,
                                 "%s{\"name\": \"probe%d\", \"op\": "
                                 "\"pfor.probe\", \"inputs\": [0], "
                                 "\"outputs\": [%d, %d, %d], \"attrs\": "
                                 "[%s]}",
                                 b ? ", " : "", b, t, t + 1, t + 2,
                                 attrs[b]);
    }
    snprintf(json + used, sizeof(json) - used, "]}");
    ck_assert_uint_lt(strlen(json), sizeof(json) - 1);
    snprintf(name, sizeof(name), "pfor%d", serial++);
    tu_graph_from_json(tu_tmpdir(), name, json, path, sizeof(path));
    g = smlp_graph_load(path, &err);
    ck_assert_msg(g != NULL, "%s", err.msg);
    return g;
}

static smlp_session_t *
session(const smlp_graph_t *g, smlp_registry_t *reg, int threads)
{
    struct smlp_session_opts o;
    struct smlp_error err;
    smlp_session_t *s;

    smlp_session_opts_init(&o);
    o.batch = 4;
    o.threads = threads;
    s = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    return s;
}

static const float *
out(smlp_session_t *s, const char *what, int b, int64_t n)
{
    struct smlp_tensor t;
    char name[64];

    snprintf(name, sizeof(name), "%s%d", what, b);
    ck_assert_int_eq(smlp_session_tensor(s, name, &t), SMLP_OK);
    ck_assert_int_eq(smlp_tensor_numel(&t), n);
    return t.data;
}

/* Every task of branch b ran once, with a worker id below intra. */
static void
check_branch(smlp_session_t *s, int b, int64_t tasks, int intra,
             int nested)
{
    const float *runs = out(s, "runs", b, tasks);
    const float *worker = out(s, "worker", b, tasks);
    const float *nest = out(s, "nested", b, tasks);
    int64_t k;

    for (k = 0; k < tasks; k++) {
        ck_assert_msg(runs[k] == 1.0f, "branch %d task %lld ran %g times",
                      b, (long long)k, runs[k]);
        ck_assert_msg(worker[k] >= 0 && worker[k] < intra,
                      "branch %d task %lld: worker %g, intra_op %d", b,
                      (long long)k, worker[k], intra);
        ck_assert_msg(nest[k] == (nested ? 1.0f : 0.0f),
                      "branch %d task %lld: nested %g", b, (long long)k,
                      nest[k]);
    }
}

static const int64_t task_counts[] = {0, 1, 2, 3, 7, 64, 1000};
#define N_TASK_COUNTS (int)(sizeof(task_counts) / sizeof(task_counts[0]))

/* One node, tasks x threads 1..4: each task once, ids in range. */
START_TEST(test_tasks_run_once)
{
    smlp_registry_t *reg = tu_fixture_registry();
    int64_t tasks = task_counts[_i];
    char attrs[128];
    smlp_graph_t *g;
    int threads, r;

    snprintf(attrs, sizeof(attrs),
             "{\"name\": \"tasks\", \"type\": \"Int\", \"i\": %lld}",
             (long long)tasks);
    g = probe_graph(1, attrs);
    for (threads = 1; threads <= 4; threads++) {
        smlp_session_t *s = session(g, reg, threads);
        struct smlp_session_stats st;

        smlp_session_get_stats(s, &st);
        ck_assert_int_eq(st.inter_op, 1);
        ck_assert_int_eq(st.intra_op, threads);
        for (r = 0; r < 3; r++) {
            ck_assert_msg(smlp_session_run(s) == SMLP_OK, "%s",
                          smlp_session_errmsg(s));
            check_branch(s, 0, tasks, threads, 0);
        }
        smlp_session_destroy(s);
    }
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/* Slow tasks: helpers join, and some task runs on a helper; again in a
 * later run (a caller is back outside any task once its job is done, so
 * its next parallel_for posts a job again rather than running serially
 * as a nested one). */
START_TEST(test_helpers_take_tasks)
{
    smlp_registry_t *reg = tu_fixture_registry();
    smlp_graph_t *g = probe_graph(1,
                                  "{\"name\": \"tasks\", \"type\": \"Int\", "
                                  "\"i\": 64}, {\"name\": \"spin_us\", "
                                  "\"type\": \"Int\", \"i\": 200}");
    smlp_session_t *s = session(g, reg, 2);
    const float *worker;
    int helped = 0, h, r, k;

    /* On a loaded machine one run may go by without the helper getting a
     * core: try a few times. */
    for (r = 0; r < 40 && helped < 2; r++) {
        ck_assert_int_eq(smlp_session_run(s), SMLP_OK);
        check_branch(s, 0, 64, 2, 0);
        worker = out(s, "worker", 0, 64);
        for (h = 0, k = 0; k < 64; k++)
            h |= worker[k] == 1.0f;
        helped += h;
    }
    ck_assert_msg(helped == 2, "tasks ran on a helper in %d of %d runs",
                  helped, r);
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/* A failing task: the node fails with its status, the others ran. */
START_TEST(test_failing_task)
{
    smlp_registry_t *reg = tu_fixture_registry();
    smlp_graph_t *g = probe_graph(1,
                                  "{\"name\": \"tasks\", \"type\": \"Int\", "
                                  "\"i\": 50}, {\"name\": \"fail_task\", "
                                  "\"type\": \"Int\", \"i\": 17}");
    int threads;

    for (threads = 1; threads <= 3; threads++) {
        smlp_session_t *s = session(g, reg, threads);

        ck_assert_int_eq(smlp_session_run(s), SMLP_EKERNEL);
        tu_assert_contains(smlp_session_errmsg(s), "probe0");
        check_branch(s, 0, 50, threads, 0);
        /* And the session runs again. */
        ck_assert_int_eq(smlp_session_run(s), SMLP_EKERNEL);
        check_branch(s, 0, 50, threads, 0);
        smlp_session_destroy(s);
    }
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * Two failing tasks run in order (one thread: no team): the status that
 * comes back is the first one's, SMLP_EKERNEL of task 17, not the
 * SMLP_ENOMEM of task 30 (the session's message gives the node's status
 * as smlp_strerror words); the tasks after them still ran.
 */
START_TEST(test_failing_tasks_first_status)
{
    smlp_registry_t *reg = tu_fixture_registry();
    smlp_graph_t *g = probe_graph(1,
                                  "{\"name\": \"tasks\", \"type\": \"Int\", "
                                  "\"i\": 50}, {\"name\": \"fail_task\", "
                                  "\"type\": \"Int\", \"i\": 17}, "
                                  "{\"name\": \"fail_task2\", "
                                  "\"type\": \"Int\", \"i\": 30}");
    smlp_session_t *s = session(g, reg, 1);

    ck_assert_int_eq(smlp_session_run(s), SMLP_EKERNEL);
    tu_assert_contains(smlp_session_errmsg(s), "probe0");
    tu_assert_contains(smlp_session_errmsg(s), smlp_strerror(SMLP_EKERNEL));
    ck_assert_ptr_null(strstr(smlp_session_errmsg(s),
                              smlp_strerror(SMLP_ENOMEM)));
    check_branch(s, 0, 50, 1, 0);
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/* parallel_for from inside a task: serial, on the task's thread, as its
 * worker. */
START_TEST(test_nested_runs_serially)
{
    smlp_registry_t *reg = tu_fixture_registry();
    smlp_graph_t *g = probe_graph(1,
                                  "{\"name\": \"tasks\", \"type\": \"Int\", "
                                  "\"i\": 40}, {\"name\": \"nested\", "
                                  "\"type\": \"Int\", \"i\": 1}, "
                                  "{\"name\": \"spin_us\", \"type\": \"Int\","
                                  " \"i\": 20}");
    int threads;

    for (threads = 1; threads <= 3; threads++) {
        smlp_session_t *s = session(g, reg, threads);

        ck_assert_msg(smlp_session_run(s) == SMLP_OK, "%s",
                      smlp_session_errmsg(s));
        check_branch(s, 0, 40, threads, 1);
        smlp_session_destroy(s);
    }
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * Independent big nodes (1e8 MACs each, so a graph of b of them has
 * parallelism b): with T threads the session runs inter_op of them at once
 * x intra_op threads each (session.c's split), so several nodes call
 * parallel_for concurrently and share the team.  Every task of every node
 * runs once with an id below intra_op.
 */
START_TEST(test_concurrent_callers)
{
    static const struct {
        int branches, threads, inter, intra;
    } cases[] = {
        {2, 4, 2, 2}, {2, 8, 2, 4}, {4, 8, 4, 2}, {2, 3, 1, 3}, {4, 4, 4, 1},
    };
    smlp_registry_t *reg = tu_fixture_registry();
    const char *attrs = "{\"name\": \"tasks\", \"type\": \"Int\", "
                        "\"i\": 33}, {\"name\": \"spin_us\", "
                        "\"type\": \"Int\", \"i\": 50}, "
                        "{\"name\": \"macs\", \"type\": \"Int\", "
                        "\"i\": 100000000}";
    int i, b, r;

    for (i = 0; i < (int)(sizeof(cases) / sizeof(cases[0])); i++) {
        smlp_graph_t *g = probe_graph(cases[i].branches, attrs);
        smlp_session_t *s = session(g, reg, cases[i].threads);
        struct smlp_session_stats st;

        smlp_session_get_stats(s, &st);
        ck_assert_msg(st.inter_op == cases[i].inter &&
                          st.intra_op == cases[i].intra,
                      "%d branches, %d threads: %d x %d, expected %d x %d",
                      cases[i].branches, cases[i].threads, st.inter_op,
                      st.intra_op, cases[i].inter, cases[i].intra);
        for (r = 0; r < 5; r++) {
            ck_assert_msg(smlp_session_run(s) == SMLP_OK, "%s",
                          smlp_session_errmsg(s));
            for (b = 0; b < cases[i].branches; b++)
                check_branch(s, b, 33, st.intra_op, 0);
        }
        smlp_session_destroy(s);
        smlp_graph_unload(g);
    }
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * A job never takes more workers than its intra_op, even when helpers of
 * the team are idle: two big probes (2 x 2 threads, so 2 helpers), probe1
 * of 2 quick tasks, probe0 of 64 slow ones; once probe1 is done its
 * helper looks for work, and probe0's job, which has its 2 workers, must
 * not take it (worker ids stay below 2).  The ids are checked in every
 * run; whether a helper comes looking depends on the machine, but on a
 * correct host the check holds whatever it does.
 */
START_TEST(test_job_takes_at_most_intra_workers)
{
    static const char *const attrs[2] = {
        "{\"name\": \"tasks\", \"type\": \"Int\", \"i\": 64}, "
        "{\"name\": \"spin_us\", \"type\": \"Int\", \"i\": 100}, "
        "{\"name\": \"macs\", \"type\": \"Int\", \"i\": 100000000}",
        "{\"name\": \"tasks\", \"type\": \"Int\", \"i\": 2}, "
        "{\"name\": \"macs\", \"type\": \"Int\", \"i\": 100000000}"};
    smlp_registry_t *reg = tu_fixture_registry();
    smlp_graph_t *g = probe_graph_each(2, attrs);
    smlp_session_t *s = session(g, reg, 4);
    struct smlp_session_stats st;
    int r;

    smlp_session_get_stats(s, &st);
    ck_assert_int_eq(st.inter_op, 2);
    ck_assert_int_eq(st.intra_op, 2);
    for (r = 0; r < 10; r++) {
        ck_assert_msg(smlp_session_run(s) == SMLP_OK, "%s",
                      smlp_session_errmsg(s));
        check_branch(s, 0, 64, 2, 0);
        check_branch(s, 1, 2, 2, 0);
    }
    smlp_session_destroy(s);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

/* The split of the thread budget: chains take it all per node; small
 * independent kernels run side by side. */
START_TEST(test_thread_split)
{
    smlp_registry_t *reg = tu_fixture_registry();
    smlp_graph_t *small = probe_graph(2, "{\"name\": \"tasks\", \"type\": "
                                         "\"Int\", \"i\": 4}");
    smlp_graph_t *big = probe_graph(1, "{\"name\": \"macs\", \"type\": "
                                       "\"Int\", \"i\": 100000000}");
    struct smlp_session_stats st;
    smlp_session_t *s;

    s = session(small, reg, 2);
    smlp_session_get_stats(s, &st);
    ck_assert_int_eq(st.inter_op, 2);
    ck_assert_int_eq(st.intra_op, 1);
    smlp_session_destroy(s);
    s = session(big, reg, 3);
    smlp_session_get_stats(s, &st);
    ck_assert_int_eq(st.inter_op, 1);
    ck_assert_int_eq(st.intra_op, 3);
    smlp_session_destroy(s);
    smlp_graph_unload(small);
    smlp_graph_unload(big);
    smlp_registry_destroy(reg);
}
END_TEST

/*
 * The efficiency of splitting a kernel (session.c, choose_threads): each
 * doubling of a kernel's threads costs a factor e, 0.9 when the kernels
 * average 2^20 MACs or more, else 0.5.  Two independent equal probes
 * (parallelism 2) on 3 threads: 1 node x 3 threads scores
 * 3 e^log2(3) (2.54 for e = 0.9, 1.00 for 0.5), 2 nodes x 1 thread
 * scores 2.  So small kernels run side by side and big ones split, with
 * the threshold exactly at an average of 2^20 MACs.
 */
START_TEST(test_thread_split_kernel_size)
{
    static const struct {
        int64_t macs;
        int inter, intra;
    } cases[] = {
        {0, 2, 1}, {1048575, 2, 1}, {1048576, 1, 3}, {100000000, 1, 3},
    };
    smlp_registry_t *reg = tu_fixture_registry();
    struct smlp_session_stats st;
    char attrs[128];
    smlp_graph_t *g;
    smlp_session_t *s;
    int i;

    for (i = 0; i < (int)(sizeof(cases) / sizeof(cases[0])); i++) {
        snprintf(attrs, sizeof(attrs),
                 "{\"name\": \"macs\", \"type\": \"Int\", \"i\": %lld}",
                 (long long)cases[i].macs);
        g = probe_graph(2, attrs);
        s = session(g, reg, 3);
        smlp_session_get_stats(s, &st);
        ck_assert_msg(st.inter_op == cases[i].inter &&
                          st.intra_op == cases[i].intra,
                      "macs %lld: %d x %d, expected %d x %d",
                      (long long)cases[i].macs, st.inter_op, st.intra_op,
                      cases[i].inter, cases[i].intra);
        ck_assert_msg(smlp_session_run(s) == SMLP_OK, "%s",
                      smlp_session_errmsg(s));
        check_branch(s, 0, 8, st.intra_op, 0);
        check_branch(s, 1, 8, st.intra_op, 0);
        smlp_session_destroy(s);
        smlp_graph_unload(g);
    }
    smlp_registry_destroy(reg);
}
END_TEST

/* Sessions come and go (helpers start and stop) many times. */
START_TEST(test_sessions_start_and_stop_helpers)
{
    smlp_registry_t *reg = tu_fixture_registry();
    smlp_graph_t *g = probe_graph(1, "{\"name\": \"tasks\", \"type\": "
                                     "\"Int\", \"i\": 16}");
    int i;

    for (i = 0; i < 50; i++) {
        smlp_session_t *s = session(g, reg, 2 + i % 3);

        if (i % 2 == 0)
            ck_assert_int_eq(smlp_session_run(s), SMLP_OK);
        smlp_session_destroy(s);
    }
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

static Suite *
team_suite(void)
{
    Suite *s = suite_create("team");
    TCase *tc = tcase_create("parallel_for");

    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_tasks_run_once, 0, N_TASK_COUNTS);
    tcase_add_test(tc, test_helpers_take_tasks);
    tcase_add_test(tc, test_failing_task);
    tcase_add_test(tc, test_failing_tasks_first_status);
    tcase_add_test(tc, test_nested_runs_serially);
    tcase_add_test(tc, test_concurrent_callers);
    tcase_add_test(tc, test_job_takes_at_most_intra_workers);
    tcase_add_test(tc, test_thread_split);
    tcase_add_test(tc, test_thread_split_kernel_size);
    tcase_add_test(tc, test_sessions_start_and_stop_helpers);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(team_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
