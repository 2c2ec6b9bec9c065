/*
 * sessionfx.h - what the session suites share: graphs loaded from inline
 * JSON, the two-branch graph of core.linear and core.add whose results
 * are worked out by hand, a session tensor's data by name, and the JSON
 * of a one-input graph (T_IN, T_RELU_Y).  Used by check_session_graph.c,
 * check_session_infer.c, check_session_sched.c, check_session_plan.c and
 * check_weights.c.
 */
#ifndef SMLP_SESSIONFX_H
#define SMLP_SESSIONFX_H

#include <math.h>
#include <stdint.h>

#include "testutil.h"

/* Loads a graph from JSON; returns NULL and fills err when it is bad. */
static inline smlp_graph_t *
graph_json(const char *json, struct smlp_error *err, char *path, size_t len)
{
    tu_graph_from_json(tu_tmpdir(), "g", json, path, len);
    return smlp_graph_load(path, err);
}

/* y = W1 x + b1 and z = W2 x, out = y + z: two independent branches. */
static const char *graph_branches __attribute__((unused)) =
    "{\"name\": \"branches\", \"plugins\": [\"core\"], \"tensors\": ["
    "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 2]},"
    "{\"name\": \"W1\", \"kind\": \"Parameter\", \"shape\": [3, 2]},"
    "{\"name\": \"b1\", \"kind\": \"Parameter\", \"shape\": [3]},"
    "{\"name\": \"W2\", \"kind\": \"Parameter\", \"shape\": [3, 2],"
    " \"init\": {\"kind\": \"Uniform\", \"a\": -1, \"b\": 1, \"seed\": 7}},"
    "{\"name\": \"y\"}, {\"name\": \"z\"},"
    "{\"name\": \"out\", \"kind\": \"Output\", \"shape\": [-1, 3]}],"
    "\"nodes\": ["
    "{\"name\": \"fc1\", \"op\": \"core.linear\", \"inputs\": [0, 1, 2],"
    " \"outputs\": [4]},"
    "{\"name\": \"fc2\", \"op\": \"core.linear\", \"inputs\": [0, 3, -1],"
    " \"outputs\": [5]},"
    "{\"name\": \"sum\", \"op\": \"core.add\", \"inputs\": [4, 5],"
    " \"outputs\": [6]}]}";

static inline float *
tensor_data(smlp_session_t *s, const char *name, int64_t *numel)
{
    struct smlp_tensor t;

    ck_assert_int_eq(smlp_session_tensor(s, name, &t), SMLP_OK);
    ck_assert_ptr_nonnull(t.data);
    if (numel != NULL)
        *numel = smlp_tensor_numel(&t);
    return t.data;
}

/* A graph's input tensor x [-1, 2], the first of its tensors. */
#define T_IN "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 2]}"

/* The rest of a graph whose tensor 0 is x: y = relu(x), the output. */
#define T_RELU_Y                                                             \
    "{\"name\": \"y\", \"kind\": \"Output\"}], \"nodes\": [{\"name\":"       \
    " \"r\", \"op\": \"core.relu\", \"inputs\": [0], \"outputs\": [1]}]}"

#endif
