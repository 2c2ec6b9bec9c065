/*
 * optimfx.h - what the checkpoint and optimizer suites share: a small
 * classifier graph (logits = W x + b, softmax cross-entropy, a state
 * tensor), sessions on it, snapshots of its tensors, and readers of a
 * checkpoint's bytes and metadata through the safetensors reader.  Used
 * by check_checkpoint.c and check_optim_train.c.
 */
#ifndef SMLP_OPTIMFX_H
#define SMLP_OPTIMFX_H

#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "optim.h"
#include "safetensors.h"
#include "testutil.h"

/* logits = W x + b, loss = softmax cross-entropy(logits, labels); W is
 * rank 2 (decayed), b rank 1 (not), `count` a state tensor. */
static const char *graph_ce =
    "{\"name\": \"ce\", \"plugins\": [\"core\"], \"tensors\": ["
    "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 4]},"
    "{\"name\": \"labels\", \"dtype\": \"I32\", \"kind\": \"Input\","
    " \"shape\": [-1]},"
    "{\"name\": \"W\", \"kind\": \"Parameter\", \"shape\": [3, 4],"
    " \"init\": {\"kind\": \"Uniform\", \"a\": -0.5, \"b\": 0.5,"
    " \"seed\": 3}},"
    "{\"name\": \"b\", \"kind\": \"Parameter\", \"shape\": [3],"
    " \"init\": {\"kind\": \"Uniform\", \"a\": -0.1, \"b\": 0.1,"
    " \"seed\": 4}},"
    "{\"name\": \"count\", \"kind\": \"State\", \"shape\": [2],"
    " \"init\": {\"kind\": \"Constant\", \"a\": 7}},"
    "{\"name\": \"logits\", \"kind\": \"Output\", \"shape\": [-1, 3]},"
    "{\"name\": \"loss\", \"kind\": \"Output\"}],"
    "\"nodes\": ["
    "{\"name\": \"fc\", \"op\": \"core.linear\", \"inputs\": [0, 2, 3],"
    " \"outputs\": [5]},"
    "{\"name\": \"ce\", \"op\": \"core.softmax_cross_entropy\","
    " \"inputs\": [5, 1], \"outputs\": [6]}]}";

/* One graph file for the whole test program (flatc once). */
static inline const char *
graph_path(void)
{
    static char path[512];

    if (path[0] == '\0')
        tu_graph_from_json(tu_tmpdir(), "ce", graph_ce, path, sizeof(path));
    return path;
}

struct fixture {
    smlp_registry_t *reg;
    smlp_graph_t *g;
    const char *dir;
};

static inline void
fixture_open(struct fixture *fx)
{
    struct smlp_error err;

    fx->reg = smlp_registry_create(NULL, &err);
    ck_assert_msg(fx->reg != NULL, "%s", err.msg);
    fx->g = smlp_graph_load(graph_path(), &err);
    ck_assert_msg(fx->g != NULL, "%s", err.msg);
    fx->dir = tu_tmpdir();
}

static inline void
fixture_close(struct fixture *fx)
{
    smlp_graph_unload(fx->g);
    smlp_registry_destroy(fx->reg);
}

/* A session of batch 2; with `loss`, in training mode with that loss and
 * the frozen globs given.  Inputs are set to fixed values. */
static inline smlp_session_t *
session(struct fixture *fx, const char *loss, const char *const *frozen)
{
    static const float x[8] = {0.5f, -1, 2, 0.25f, -0.75f, 1.5f, 0, 1};
    static const int32_t labels[2] = {2, 0};
    struct smlp_session_opts o;
    struct smlp_error err;
    struct smlp_tensor t;
    smlp_session_t *s;

    smlp_session_opts_init(&o);
    o.batch = 2;
    o.threads = 1;
    o.seed = 11;
    o.training = loss != NULL;
    o.loss = loss;
    o.frozen = frozen;
    s = smlp_session_create(fx->g, fx->reg, &o, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    ck_assert_int_eq(smlp_session_tensor(s, "x", &t), SMLP_OK);
    memcpy(t.data, x, sizeof(x));
    ck_assert_int_eq(smlp_session_tensor(s, "labels", &t), SMLP_OK);
    memcpy(t.data, labels, sizeof(labels));
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

/* Copies of W, b and count, to compare a session against. */
struct snap {
    float W[12], b[3], count[2];
};

static inline void
snap_take(smlp_session_t *s, struct snap *sn)
{
    memcpy(sn->W, data(s, "W"), sizeof(sn->W));
    memcpy(sn->b, data(s, "b"), sizeof(sn->b));
    memcpy(sn->count, data(s, "count"), sizeof(sn->count));
}

static inline void
snap_expect(smlp_session_t *s, const struct snap *sn)
{
    ck_assert_mem_eq(data(s, "W"), sn->W, sizeof(sn->W));
    ck_assert_mem_eq(data(s, "b"), sn->b, sizeof(sn->b));
    ck_assert_mem_eq(data(s, "count"), sn->count, sizeof(sn->count));
}

static inline void
perturb(smlp_session_t *s)
{
    float *W = data(s, "W"), *b = data(s, "b"), *c = data(s, "count");
    int i;

    for (i = 0; i < 12; i++)
        W[i] += 1.0f;
    for (i = 0; i < 3; i++)
        b[i] -= 1.0f;
    c[0] = c[1] = -1.0f;
}

/* Opens a file written by smlp_checkpoint_save and returns its metadata
 * value for key (static storage), or NULL. */
static inline const char *
file_meta(const char *path, const char *key)
{
    static char value[256];
    struct smlp__st_file *f;
    const char *v;
    char err[512];

    ck_assert_msg(smlp__st_open(path, &f, err, sizeof(err)) == SMLP_OK, "%s",
                  err);
    v = smlp__st_meta(f, key);
    if (v != NULL)
        snprintf(value, sizeof(value), "%s", v);
    smlp__st_close(f);
    return v != NULL ? value : NULL;
}

/* Asserts that two files hold the same tensors, bit for bit, and the same
 * metadata. */
static inline void
files_equal(const char *a, const char *b)
{
    struct smlp__st_file *fa, *fb;
    char err[512];
    int32_t i;

    ck_assert_msg(smlp__st_open(a, &fa, err, sizeof(err)) == SMLP_OK, "%s",
                  err);
    ck_assert_msg(smlp__st_open(b, &fb, err, sizeof(err)) == SMLP_OK, "%s",
                  err);
    ck_assert_int_eq(fa->n_entries, fb->n_entries);
    for (i = 0; i < fa->n_entries; i++) {
        const struct smlp__st_entry *x = &fa->entries[i], *y;

        y = smlp__st_find(fb, x->name);
        ck_assert_msg(y != NULL, "%s lacks '%s'", b, x->name);
        ck_assert_int_eq(x->nbytes, y->nbytes);
        ck_assert_msg(memcmp(x->data, y->data, x->nbytes) == 0,
                      "tensor '%s' differs", x->name);
    }
    ck_assert_int_eq(fa->n_meta, fb->n_meta);
    for (i = 0; i < fa->n_meta; i++) {
        int32_t j;

        for (j = 0; j < fb->n_meta; j++)
            if (strcmp(fa->meta_keys[i], fb->meta_keys[j]) == 0)
                break;
        ck_assert_msg(j < fb->n_meta, "%s lacks metadata '%s'", b,
                      fa->meta_keys[i]);
        ck_assert_str_eq(fa->meta_values[i], fb->meta_values[j]);
    }
    smlp__st_close(fa);
    smlp__st_close(fb);
}

/* Number of directory entries whose name starts with prefix. */
static inline int
count_files(const char *dir, const char *prefix)
{
    struct dirent *d;
    DIR *dp = opendir(dir);
    int n = 0;

    ck_assert_ptr_nonnull(dp);
    while ((d = readdir(dp)) != NULL)
        n += strncmp(d->d_name, prefix, strlen(prefix)) == 0;
    closedir(dp);
    return n;
}

#endif
