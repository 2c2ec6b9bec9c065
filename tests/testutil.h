/*
 * testutil.h - helpers for the runtime's Check suites: temporary
 * directories, graphs built from inline JSON with flatc, paths of the
 * build and source trees (from SMLP_TEST_BUILDDIR / SMLP_TEST_SRCDIR).
 */
#ifndef SMLP_TESTUTIL_H
#define SMLP_TESTUTIL_H

#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "smlp.h"

static inline const char *
tu_env(const char *name, const char *fallback)
{
    const char *v = getenv(name);

    return v != NULL && v[0] != '\0' ? v : fallback;
}

static inline const char *
tu_builddir(void)
{
    return tu_env("SMLP_TEST_BUILDDIR", ".");
}

static inline const char *
tu_srcdir(void)
{
    return tu_env("SMLP_TEST_SRCDIR", ".");
}

/* A fresh temporary directory (leaked on purpose: tests are short). */
static inline const char *
tu_tmpdir(void)
{
    static char buf[64];

    snprintf(buf, sizeof(buf), "/tmp/smlp-test-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(buf));
    return buf;
}

/*
 * A Check fixture's scratch directory (unchecked fixtures run before the
 * tests fork): tu_scratch_make makes a fresh /tmp/check_TAG.XXXXXX into
 * dir; tu_scratch_remove deletes it with everything in it (links are
 * removed, never followed).
 */
static inline void
tu_scratch_make(char *dir, size_t len, const char *tag)
{
    snprintf(dir, len, "/tmp/check_%s.XXXXXX", tag);
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        exit(1);
    }
}

static int
tu__remove_entry(const char *path, const struct stat *st, int flag,
                 struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void
tu_scratch_remove(const char *dir)
{
    (void)nftw(dir, tu__remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The files of dir whose name contains ".tmp." (an atomic write's
 * temporary, which must never be left behind). */
static inline int
tu_count_tmp_files(const char *dir)
{
    struct dirent *d;
    DIR *dp = opendir(dir);
    int n = 0;

    ck_assert_ptr_nonnull(dp);
    while ((d = readdir(dp)) != NULL)
        if (strstr(d->d_name, ".tmp.") != NULL)
            n++;
    closedir(dp);
    return n;
}

static inline void
tu_write(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");

    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

/*
 * Writes `json` to DIR/NAME.json, compiles it with flatc and returns the
 * path of DIR/NAME.fbs in out.
 */
static inline void
tu_graph_from_json(const char *dir, const char *name, const char *json,
                   char *out, size_t len)
{
    char jpath[512], cmd[2048];

    snprintf(jpath, sizeof(jpath), "%s/%s.json", dir, name);
    tu_write(jpath, json, strlen(json));
    snprintf(cmd, sizeof(cmd), "'%s' -b -o '%s' '%s/schemas/graph.fbs' '%s'",
             tu_env("FLATC", "flatc"), dir, tu_srcdir(), jpath);
    ck_assert_msg(system(cmd) == 0, "flatc failed: %s", cmd);
    snprintf(out, len, "%s/%s.fbs", dir, name);
}

/* A registry on the default plugin path (the test environment sets
 * SMLP_PLUGIN_PATH to the build tree's plugins). */
static inline smlp_registry_t *
tu_registry(void)
{
    struct smlp_error err;
    smlp_registry_t *reg = smlp_registry_create(NULL, &err);

    ck_assert_msg(reg != NULL, "%s", err.msg);
    return reg;
}

/* Runs s; the test fails with the session's message when it fails. */
static inline void
tu_run_ok(smlp_session_t *s)
{
    ck_assert_msg(smlp_session_run(s) == SMLP_OK, "%s",
                  smlp_session_errmsg(s));
}

/*
 * Tensor `name` of two sessions of one graph (a CPU and a GPU one, say):
 * for i32 the number of mismatches, for f32 the normwise relative error
 * max|a - b| / max|a| (the absolute one when a is all zeros); NaN must
 * stand at the same places (else INFINITY).
 */
static inline double
tu_rel_error(smlp_session_t *cpu, smlp_session_t *gpu, const char *name)
{
    struct smlp_tensor a, b;
    double diff = 0, scale = 0;
    int64_t n, i;

    ck_assert_int_eq(smlp_session_tensor(cpu, name, &a), SMLP_OK);
    ck_assert_int_eq(smlp_session_tensor(gpu, name, &b), SMLP_OK);
    ck_assert_ptr_nonnull(a.data);
    ck_assert_ptr_nonnull(b.data);
    n = smlp_tensor_numel(&a);
    ck_assert_int_eq(n, smlp_tensor_numel(&b));
    ck_assert_int_eq(a.dtype, b.dtype);
    if (a.dtype == SMLP_DTYPE_I32) {
        const int32_t *x = a.data, *y = b.data;

        for (i = 0; i < n; i++)
            diff += x[i] != y[i];
        return diff;
    }
    for (i = 0; i < n; i++) {
        double x = ((const float *)a.data)[i], y = ((const float *)b.data)[i];

        if (isnan(x) || isnan(y)) {
            if (isnan(x) != isnan(y))
                return INFINITY;
            continue;
        }
        if (fabs(x - y) > diff)
            diff = fabs(x - y);
        if (fabs(x) > scale)
            scale = fabs(x);
    }
    return scale > 0 ? diff / scale : diff;
}

/* The bytes of a file, in a buffer of exactly that size (at least 1
 * byte), so that ASan sees any read past the end; free it. */
static inline uint8_t *
tu_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long n;

    ck_assert_msg(f != NULL, "cannot open %s", path);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    ck_assert_int_ge(n, 0);
    rewind(f);
    buf = malloc(n > 0 ? (size_t)n : 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* Path of a graph built into the build tree's graphs/. */
static inline void
tu_shipped_graph(const char *name, char *out, size_t len)
{
    snprintf(out, len, "%s/graphs/%s.fbs", tu_builddir(), name);
}

static inline void
tu_fixture_dir(char *out, size_t len)
{
    snprintf(out, len, "%s/tests/plugins/.libs", tu_builddir());
}

/* A registry on the test fixture plugins (tests/plugins) and, through
 * SMLP_PLUGIN_PATH, the build tree's plugins. */
static inline smlp_registry_t *
tu_fixture_registry(void)
{
    struct smlp_error err;
    char dir[512];
    smlp_registry_t *reg;

    tu_fixture_dir(dir, sizeof(dir));
    reg = smlp_registry_create(dir, &err);
    ck_assert_msg(reg != NULL, "%s", err.msg);
    return reg;
}

/* Compiles `json` with flatc into the test's scratch directory and loads
 * it; the test fails when the graph does not load. */
static inline smlp_graph_t *
tu_graph_json(const char *json)
{
    struct smlp_error err;
    char path[512];
    smlp_graph_t *g;

    tu_graph_from_json(tu_tmpdir(), "g", json, path, sizeof(path));
    g = smlp_graph_load(path, &err);
    ck_assert_msg(g != NULL, "%s", err.msg);
    return g;
}

/*
 * Sends stderr to a file from tu_stderr_begin (which returns the saved
 * descriptor) to tu_stderr_end, which restores it and returns what was
 * written there (a static buffer, up to 8 KiB).  Not nested.
 */
static char tu_stderr_path[600];

static inline int
tu_stderr_begin(void)
{
    int fd, saved;

    snprintf(tu_stderr_path, sizeof(tu_stderr_path), "%s/stderr.txt",
             tu_tmpdir());
    fd = open(tu_stderr_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    fflush(stderr);
    saved = dup(2);
    ck_assert_int_ge(saved, 0);
    dup2(fd, 2);
    close(fd);
    return saved;
}

static inline const char *
tu_stderr_end(int saved)
{
    static char buf[8192];
    ssize_t n;
    int fd;

    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    fd = open(tu_stderr_path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    n = read(fd, buf, sizeof(buf) - 1);
    buf[n > 0 ? n : 0] = '\0';
    close(fd);
    return buf;
}

#define tu_assert_contains(haystack, needle)                                 \
    ck_assert_msg(strstr((haystack), (needle)) != NULL,                       \
                  "expected '%s' in message: %s", (needle), (haystack))

#endif
