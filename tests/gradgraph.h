/*
 * gradgraph.h - the autograd suites' graph builder: graphs of the
 * fixture plugin tests/plugins/gradfix.c (and of core and norm ops)
 * written as JSON and compiled with flatc, training sessions on them,
 * and their values and gradients by name.  Used by check_autograd.c,
 * check_autograd_sched.c and check_autograd_fd.c.
 */
#ifndef SMLP_GRADGRAPH_H
#define SMLP_GRADGRAPH_H

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

static inline void
gb_init(struct gb *g)
{
    memset(g, 0, sizeof(*g));
}

static inline void
gb_cat(char *buf, size_t len, const char *text)
{
    ck_assert_uint_lt(strlen(buf) + strlen(text), len);
    strcat(buf, text);
}

/* kind: "Input", "Parameter", "Output", "Activation"; shape "[2, 3]" or
 * NULL; extra: more JSON fields ("\"dtype\": \"I32\"") or NULL. */
static inline void
gb_tensor(struct gb *g, const char *name, const char *kind,
          const char *shape, const char *extra)
{
    char buf[512];

    ck_assert_int_lt(g->nt, 128);
    snprintf(g->names[g->nt], sizeof(g->names[0]), "%s", name);
    snprintf(buf, sizeof(buf), "%s{\"name\": \"%s\", \"kind\": \"%s\"%s%s%s%s}",
             g->nt ? ", " : "", name, kind, shape ? ", \"shape\": " : "",
             shape ? shape : "", extra ? ", " : "", extra ? extra : "");
    gb_cat(g->tensors, sizeof(g->tensors), buf);
    g->nt++;
}

/* A parameter initialized uniformly in [-1, 1) from `seed`. */
static inline void
gb_param(struct gb *g, const char *name, const char *shape, int seed)
{
    char extra[128];

    snprintf(extra, sizeof(extra),
             "\"init\": {\"kind\": \"Uniform\", \"a\": -1.0, \"b\": 1.0, "
             "\"seed\": %d}",
             seed);
    gb_tensor(g, name, "Parameter", shape, extra);
}

static inline int
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

static inline void
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
        gb_cat(out, len, num);
    }
}

static inline void
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
    gb_cat(g->nodes, sizeof(g->nodes), buf);
    g->nn++;
}

/* Compiles the graph (plugins: a comma-separated JSON list). */
static inline smlp_graph_t *
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

/* A training session with `loss`; NULL (and err) on failure. */
static inline smlp_session_t *
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

static inline smlp_session_t *
must_session(const smlp_graph_t *g, smlp_registry_t *reg, const char *loss,
             const char *const *frozen, int threads)
{
    struct smlp_error err;
    smlp_session_t *s = train_session(g, reg, loss, frozen, threads, &err);

    ck_assert_msg(s != NULL, "%s", err.msg);
    return s;
}

static inline float *
data(smlp_session_t *s, const char *name)
{
    struct smlp_tensor t;

    ck_assert_int_eq(smlp_session_tensor(s, name, &t), SMLP_OK);
    ck_assert_ptr_nonnull(t.data);
    return t.data;
}

static inline float *
grad(smlp_session_t *s, const char *name)
{
    struct smlp_tensor t;

    ck_assert_msg(smlp_session_grad(s, name, &t) == SMLP_OK, "%s",
                  smlp_session_errmsg(s));
    ck_assert_int_eq(t.dtype, SMLP_DTYPE_F32);
    ck_assert_ptr_nonnull(t.data);
    return t.data;
}

static inline void
run_backward(smlp_session_t *s)
{
    ck_assert_msg(smlp_session_run(s) == SMLP_OK, "%s",
                  smlp_session_errmsg(s));
    ck_assert_msg(smlp_session_backward(s) == SMLP_OK, "%s",
                  smlp_session_errmsg(s));
}

static inline void
assert_bits(const float *got, const float *want, int n, const char *what)
{
    int i;

    for (i = 0; i < n; i++)
        ck_assert_msg(memcmp(&got[i], &want[i], sizeof(float)) == 0,
                      "%s[%d] = %.9g, want %.9g", what, i, got[i], want[i]);
}

#define P_GRADFIX "\"gradfix\""

#endif
