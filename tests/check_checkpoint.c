/*
 * check_checkpoint.c - checkpoints without an optimizer
 * (runtime/checkpoint.c): round trip of parameters, state, the step
 * counter and metadata; atomic replacement; every load error leaves the
 * session as it was; I32 state.  With optimizer state:
 * check_optim_train.c.
 */
#include "optimfx.h"

START_TEST(test_checkpoint_roundtrip)
{
    static const char *const keys[] = {"epoch", "data.position"};
    static const char *const vals[] = {"3", "1234"};
    struct fixture fx;
    smlp_session_t *a, *b;
    struct snap sa;
    char p1[600], p2[600];
    float *W;

    fixture_open(&fx);
    a = session(&fx, NULL, NULL);
    W = data(a, "W");
    W[5] = 42.0f;
    data(a, "count")[1] = 3.0f;
    ck_assert_int_eq(smlp_session_run(a), SMLP_OK);
    ck_assert_int_eq(smlp_session_run(a), SMLP_OK);
    snap_take(a, &sa);
    snprintf(p1, sizeof(p1), "%s/a.safetensors", fx.dir);
    snprintf(p2, sizeof(p2), "%s/b.safetensors", fx.dir);
    ck_assert_msg(smlp_checkpoint_save(a, NULL, p1, keys, vals, 2) ==
                      SMLP_OK,
                  "%s", smlp_session_errmsg(a));
    ck_assert_str_eq(file_meta(p1, "smlp.graph"), "ce");
    ck_assert_str_eq(file_meta(p1, "smlp.step"), "2");
    ck_assert_str_eq(file_meta(p1, "smlp.seed"), "11");
    ck_assert_str_eq(file_meta(p1, "smlp.version"), smlp_version_string());
    ck_assert_ptr_null(file_meta(p1, "smlp.optim.kind"));
    ck_assert_ptr_null(smlp_checkpoint_meta(a, "epoch"));

    /* Perturb, load: bit-identical again. */
    perturb(a);
    ck_assert_msg(smlp_checkpoint_load(a, NULL, p1) == SMLP_OK, "%s",
                  smlp_session_errmsg(a));
    snap_expect(a, &sa);
    ck_assert_str_eq(smlp_checkpoint_meta(a, "epoch"), "3");
    ck_assert_str_eq(smlp_checkpoint_meta(a, "data.position"), "1234");
    ck_assert_str_eq(smlp_checkpoint_meta(a, "smlp.step"), "2");
    ck_assert_ptr_null(smlp_checkpoint_meta(a, "nope"));

    /* Into a fresh session: same tensors, same step counter (its save is
     * the same file, bit for bit), same outputs. */
    b = session(&fx, NULL, NULL);
    ck_assert_msg(smlp_checkpoint_load(b, NULL, p1) == SMLP_OK, "%s",
                  smlp_session_errmsg(b));
    snap_expect(b, &sa);
    ck_assert_int_eq(smlp_checkpoint_save(b, NULL, p2, keys, vals, 2),
                     SMLP_OK);
    files_equal(p1, p2);
    ck_assert_int_eq(smlp_session_run(a), SMLP_OK);
    ck_assert_int_eq(smlp_session_run(b), SMLP_OK);
    ck_assert_mem_eq(data(a, "logits"), data(b, "logits"), 6 * sizeof(float));

    /* A checkpoint is also a weights file. */
    perturb(b);
    ck_assert_int_eq(smlp_session_load_weights(b, p1), SMLP_OK);
    snap_expect(b, &sa);
    smlp_session_destroy(a);
    smlp_session_destroy(b);
    fixture_close(&fx);
}
END_TEST

START_TEST(test_checkpoint_save_bad_meta)
{
    static const char *const reserved[] = {"smlp.step"};
    static const char *const dup[] = {"k", "k"};
    static const char *const nullkey[] = {NULL};
    static const char *const vals[] = {"1", "2"};
    struct fixture fx;
    smlp_session_t *s;
    char path[600];

    fixture_open(&fx);
    s = session(&fx, NULL, NULL);
    snprintf(path, sizeof(path), "%s/c.safetensors", fx.dir);
    ck_assert_int_eq(smlp_checkpoint_save(s, NULL, path, reserved, vals, 1),
                     SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(s),
                       "metadata key 'smlp.step' is reserved");
    ck_assert_int_eq(smlp_checkpoint_save(s, NULL, path, dup, vals, 2),
                     SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(s), "'k'");
    ck_assert_int_eq(smlp_checkpoint_save(s, NULL, path, NULL, NULL, 1),
                     SMLP_EINVAL);
    /* A negative count; a NULL key (not taken for a reserved one). */
    ck_assert_int_eq(smlp_checkpoint_save(s, NULL, path, dup, vals, -1),
                     SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(s),
                       "-1 metadata pairs with a negative count");
    ck_assert_int_eq(smlp_checkpoint_save(s, NULL, path, nullkey, vals, 1),
                     SMLP_EINVAL);
    tu_assert_contains(smlp_session_errmsg(s),
                       "metadata pair 0 has a NULL key or value");
    ck_assert_int_eq(access(path, F_OK), -1);
    ck_assert_int_eq(count_files(fx.dir, "c.safetensors"), 0);
    smlp_session_destroy(s);
    fixture_close(&fx);
}
END_TEST

/*
 * The destination is never partial: a save that fails while writing (a
 * file size limit, which binds root too) or creating (a read-only
 * directory, when not root) leaves the old file and no temporary file;
 * an old temporary file left by a crash is harmless.
 */
START_TEST(test_checkpoint_save_atomic)
{
    struct fixture fx;
    smlp_session_t *s;
    struct snap before;
    struct rlimit rl;
    char path[700], sub[600], stray[800];
    struct stat st;
    off_t size;
    int fd;

    fixture_open(&fx);
    s = session(&fx, NULL, NULL);
    snprintf(sub, sizeof(sub), "%s/run", fx.dir);
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    snprintf(path, sizeof(path), "%s/ckpt.safetensors", sub);
    /* A stray temporary file of a crashed save. */
    snprintf(stray, sizeof(stray), "%s.tmp.AbCdEf", path);
    tu_write(stray, "partial", 7);
    ck_assert_int_eq(smlp_checkpoint_save(s, NULL, path, NULL, NULL, 0),
                     SMLP_OK);
    snap_take(s, &before);
    ck_assert_int_eq(stat(path, &st), 0);
    size = st.st_size;

    /* Writing fails: the file size limit is below the checkpoint size. */
    perturb(s);
    signal(SIGXFSZ, SIG_IGN);
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &rl), 0);
    rl.rlim_cur = 256;
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    ck_assert_int_eq(smlp_checkpoint_save(s, NULL, path, NULL, NULL, 0),
                     SMLP_EIO);
    tu_assert_contains(smlp_session_errmsg(s), path);
    rl.rlim_cur = rl.rlim_max;
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_size, size);
    /* Only the file and the stray one are there. */
    ck_assert_int_eq(count_files(sub, "ckpt.safetensors"), 2);
    ck_assert_int_eq(smlp_checkpoint_load(s, NULL, path), SMLP_OK);
    snap_expect(s, &before);

    /* A read-only directory (permissions do not bind root: then skipped). */
    perturb(s);
    ck_assert_int_eq(chmod(sub, 0555), 0);
    snprintf(stray, sizeof(stray), "%s/probe", sub);
    fd = open(stray, O_CREAT | O_WRONLY, 0644);
    if (fd >= 0) {
        close(fd);
        unlink(stray);
    } else {
        ck_assert_int_eq(smlp_checkpoint_save(s, NULL, path, NULL, NULL, 0),
                         SMLP_EIO);
        tu_assert_contains(smlp_session_errmsg(s), "temporary file");
        ck_assert_int_eq(smlp_checkpoint_load(s, NULL, path), SMLP_OK);
        snap_expect(s, &before);
    }
    ck_assert_int_eq(chmod(sub, 0755), 0);
    ck_assert_int_eq(count_files(sub, "ckpt.safetensors"), 2);
    smlp_session_destroy(s);
    fixture_close(&fx);
}
END_TEST

/* A safetensors file made here: W, b and count as given (name NULL: left
 * out), and the metadata pairs. */
struct fake_tensor {
    const char *name;
    const char *dtype;
    int rank;
    int64_t shape[2];
};

static void
write_fake(const char *path, const struct fake_tensor *ts, int n,
           const char *const *keys, const char *const *vals, int n_meta)
{
    static float zeros[64];
    struct smlp__st_entry e[8];
    char err[512];
    int i;

    memset(e, 0, sizeof(e));
    for (i = 0; i < n; i++) {
        e[i].name = (char *)ts[i].name;
        e[i].dtype = strcmp(ts[i].dtype, "F32") == 0 ? SMLP_DTYPE_F32
                                                     : SMLP_DTYPE_I32;
        snprintf(e[i].dtype_name, sizeof(e[i].dtype_name), "%s",
                 ts[i].dtype);
        e[i].rank = ts[i].rank;
        memcpy(e[i].shape, ts[i].shape, sizeof(ts[i].shape));
        e[i].nbytes = 4 * (size_t)(ts[i].rank == 1
                                       ? ts[i].shape[0]
                                       : ts[i].shape[0] * ts[i].shape[1]);
        e[i].data = zeros;
    }
    ck_assert_msg(smlp__st_write(path, e, n, keys, vals, n_meta, err,
                                 sizeof(err)) == SMLP_OK,
                  "%s", err);
}

static void
expect_load_error(smlp_session_t *s, const char *path, int status,
                  const char *needle, const struct snap *before)
{
    int rc = smlp_checkpoint_load(s, NULL, path);

    ck_assert_msg(rc == status, "load %s: %s (%s), expected %s", path,
                  smlp_status_name(rc), smlp_session_errmsg(s),
                  smlp_status_name(status));
    tu_assert_contains(smlp_session_errmsg(s), path);
    tu_assert_contains(smlp_session_errmsg(s), needle);
    snap_expect(s, before);
    /* The metadata of the last good load stays. */
    ck_assert_str_eq(smlp_checkpoint_meta(s, "tag"), "good");
}

/* dst = src with one bit of its last byte flipped. */
static void
copy_flipped(const char *src, const char *dst)
{
    size_t len;
    unsigned char *b = tu_read_file(src, &len);
    FILE *f = fopen(dst, "wb");

    ck_assert_ptr_nonnull(f);
    ck_assert_uint_gt(len, 0);
    b[len - 1] ^= 0x10;
    ck_assert_uint_eq(fwrite(b, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
    free(b);
}

START_TEST(test_checkpoint_load_errors)
{
    static const char *const keys[] = {"smlp.graph", "smlp.step"};
    static const char *const vals[] = {"ce", "5"};
    static const char *const badstep[] = {"ce", "5x"};
    static const char *const tagk[] = {"tag"};
    static const char *const tagv[] = {"good"};
    const struct fake_tensor W = {"W", "F32", 2, {3, 4}};
    const struct fake_tensor b = {"b", "F32", 1, {3}};
    const struct fake_tensor count = {"count", "F32", 1, {2}};
    struct fake_tensor ts[3];
    struct fixture fx;
    smlp_session_t *s;
    struct snap before;
    char good[600], path[600], cmd[1400];
    struct stat st;
    int k;

    fixture_open(&fx);
    s = session(&fx, NULL, NULL);
    snprintf(good, sizeof(good), "%s/good.safetensors", fx.dir);
    snprintf(path, sizeof(path), "%s/bad.safetensors", fx.dir);
    ck_assert_int_eq(smlp_checkpoint_save(s, NULL, good, tagk, tagv, 1),
                     SMLP_OK);
    ck_assert_int_eq(smlp_checkpoint_load(s, NULL, good), SMLP_OK);
    perturb(s);
    snap_take(s, &before);

    /* The file made by hand loads (the format is what it says). */
    ts[0] = W, ts[1] = b, ts[2] = count;
    write_fake(path, ts, 3, keys, vals, 2);
    ck_assert_int_eq(smlp_checkpoint_load(s, NULL, path), SMLP_OK);
    ck_assert_float_eq(data(s, "W")[0], 0.0f);
    /* The largest step count, 2^63 - 1, loads, and the session saves it
     * as its step (one more is refused below). */
    {
        static const char *const maxstep[] = {"ce", "9223372036854775807"};
        char again[700];

        write_fake(path, ts, 3, keys, maxstep, 2);
        ck_assert_msg(smlp_checkpoint_load(s, NULL, path) == SMLP_OK, "%s",
                      smlp_session_errmsg(s));
        snprintf(again, sizeof(again), "%s/again.safetensors", fx.dir);
        ck_assert_int_eq(smlp_checkpoint_save(s, NULL, again, NULL, NULL, 0),
                         SMLP_OK);
        ck_assert_str_eq(file_meta(again, "smlp.step"),
                         "9223372036854775807");
    }
    ck_assert_int_eq(smlp_checkpoint_load(s, NULL, good), SMLP_OK);
    perturb(s);
    snap_take(s, &before);

    /* Missing tensor (the last one, so that the others were checked). */
    write_fake(path, ts, 2, keys, vals, 2);
    expect_load_error(s, path, SMLP_ENOENT,
                      "has no tensor 'count' (graph ", &before);
    /* Wrong shape. */
    ts[0].shape[0] = 4, ts[0].shape[1] = 3;
    write_fake(path, ts, 3, keys, vals, 2);
    expect_load_error(s, path, SMLP_ESHAPE,
                      "tensor 'W' has shape [4,3], graph ", &before);
    tu_assert_contains(smlp_session_errmsg(s), "needs [3,4]");
    /* Another rank whose dimensions match as far as it goes ([3]). */
    ts[0] = W;
    ts[0].rank = 1;
    write_fake(path, ts, 3, keys, vals, 2);
    expect_load_error(s, path, SMLP_ESHAPE,
                      "tensor 'W' has shape [3], graph ", &before);
    /* Only the last dimension differs ([3,5] against [3,4]). */
    ts[0] = W;
    ts[0].shape[1] = 5;
    write_fake(path, ts, 3, keys, vals, 2);
    expect_load_error(s, path, SMLP_ESHAPE,
                      "tensor 'W' has shape [3,5], graph ", &before);
    /* Wrong dtype. */
    ts[0] = W;
    ts[2].dtype = "I32";
    write_fake(path, ts, 3, keys, vals, 2);
    expect_load_error(s, path, SMLP_EBADFILE,
                      "tensor 'count' has dtype I32", &before);
    /* Not a checkpoint; a bad step counter. */
    ts[2] = count;
    write_fake(path, ts, 3, NULL, NULL, 0);
    expect_load_error(s, path, SMLP_EBADFILE, "is not an smlp checkpoint",
                      &before);
    write_fake(path, ts, 3, keys, badstep, 2);
    expect_load_error(s, path, SMLP_EBADFILE,
                      "metadata smlp.step is '5x', not a step count",
                      &before);
    /* A sign or a space strtoull would take, and 2^63 (over int64). */
    for (k = 0; k < 3; k++) {
        static const char *const steps[] = {"+5", " 5",
                                            "9223372036854775808"};
        const char *v2[2] = {"ce", steps[k]};

        write_fake(path, ts, 3, keys, v2, 2);
        expect_load_error(s, path, SMLP_EBADFILE, "not a step count",
                          &before);
    }
    /* Truncated: the good file less its last 4 bytes. */
    ck_assert_int_eq(stat(good, &st), 0);
    snprintf(cmd, sizeof(cmd), "head -c %lld '%s' > '%s'",
             (long long)st.st_size - 4, good, path);
    ck_assert_int_eq(system(cmd), 0);
    expect_load_error(s, path, SMLP_EBADFILE, "beyond the data block",
                      &before);
    /* Damaged after it was written: one bit of the last data byte
     * flipped (a value that still reads as a float); the same as weights
     * (smlp_session_save_weights writes the hash too). */
    copy_flipped(good, path);
    expect_load_error(s, path, SMLP_EBADFILE,
                      "the tensor data do not match the file's "
                      "smlp.data_hash",
                      &before);
    ck_assert_int_eq(smlp_session_save_weights(s, good), SMLP_OK);
    ck_assert_int_eq(smlp_session_load_weights(s, good), SMLP_OK);
    copy_flipped(good, path);
    ck_assert_int_eq(smlp_session_load_weights(s, path), SMLP_EBADFILE);
    tu_assert_contains(smlp_session_errmsg(s), "smlp.data_hash");
    /* Absent. */
    snprintf(path, sizeof(path), "%s/absent.safetensors", fx.dir);
    expect_load_error(s, path, SMLP_EIO, "cannot open", &before);
    smlp_session_destroy(s);
    fixture_close(&fx);
}
END_TEST

/*
 * The dtype that the header of safetensors file `path` gives tensor
 * `name`, read from the bytes as the format defines them: an 8-byte
 * little-endian length, then the JSON header {"NAME": {"dtype": ...}}.
 */
static void
header_dtype(const char *path, const char *name, char *out, size_t len)
{
    size_t n;
    unsigned char *b = tu_read_file(path, &n);
    uint64_t hlen = 0;
    char key[128], *h, *p, *q;
    int i;

    ck_assert_uint_ge(n, 8);
    for (i = 7; i >= 0; i--)
        hlen = hlen << 8 | b[i];
    ck_assert_uint_le(hlen, n - 8);
    h = strndup((const char *)b + 8, (size_t)hlen);
    ck_assert_ptr_nonnull(h);
    snprintf(key, sizeof(key), "\"%s\"", name);
    p = strstr(h, key);
    ck_assert_msg(p != NULL, "%s: no %s in the header %s", path, key, h);
    p = strstr(p, "\"dtype\"");
    ck_assert_ptr_nonnull(p);
    p = strchr(p + strlen("\"dtype\""), '"');
    ck_assert_ptr_nonnull(p);
    q = strchr(p + 1, '"');
    ck_assert_ptr_nonnull(q);
    snprintf(out, len, "%.*s", (int)(q - p - 1), p + 1);
    free(h);
    free(b);
}

/* An I32 state tensor is saved as I32 (the header says so) and comes
 * back bit for bit. */
START_TEST(test_checkpoint_i32_state)
{
    static const char *graph_i32 =
        "{\"name\": \"i32s\", \"plugins\": [\"core\"], \"tensors\": ["
        "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [-1, 2]},"
        "{\"name\": \"ticks\", \"dtype\": \"I32\", \"kind\": \"State\","
        " \"shape\": [3], \"init\": {\"kind\": \"Zeros\"}},"
        "{\"name\": \"y\", \"kind\": \"Output\"}],"
        "\"nodes\": [{\"name\": \"dbl\", \"op\": \"core.add\","
        " \"inputs\": [0, 0], \"outputs\": [2]}]}";
    static const int32_t ticks[3] = {1, -2, 70000};
    struct smlp_session_opts o;
    struct smlp_error err;
    struct smlp_tensor t;
    smlp_registry_t *reg;
    smlp_session_t *a, *b;
    smlp_graph_t *g;
    char path[600], dtype[16];

    reg = smlp_registry_create(NULL, &err);
    ck_assert_msg(reg != NULL, "%s", err.msg);
    tu_graph_from_json(tu_tmpdir(), "i32s", graph_i32, path, sizeof(path));
    g = smlp_graph_load(path, &err);
    ck_assert_msg(g != NULL, "%s", err.msg);
    smlp_session_opts_init(&o);
    a = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(a != NULL, "%s", err.msg);
    b = smlp_session_create(g, reg, &o, &err);
    ck_assert_msg(b != NULL, "%s", err.msg);
    ck_assert_int_eq(smlp_session_tensor(a, "ticks", &t), SMLP_OK);
    ck_assert_int_eq(t.dtype, SMLP_DTYPE_I32);
    memcpy(t.data, ticks, sizeof(ticks));
    snprintf(path, sizeof(path), "%s/i32.safetensors", tu_tmpdir());
    ck_assert_msg(smlp_checkpoint_save(a, NULL, path, NULL, NULL, 0) ==
                      SMLP_OK,
                  "%s", smlp_session_errmsg(a));
    header_dtype(path, "ticks", dtype, sizeof(dtype));
    ck_assert_str_eq(dtype, "I32");
    ck_assert_msg(smlp_checkpoint_load(b, NULL, path) == SMLP_OK, "%s",
                  smlp_session_errmsg(b));
    ck_assert_int_eq(smlp_session_tensor(b, "ticks", &t), SMLP_OK);
    ck_assert_mem_eq(t.data, ticks, sizeof(ticks));
    smlp_session_destroy(a);
    smlp_session_destroy(b);
    smlp_graph_unload(g);
    smlp_registry_destroy(reg);
}
END_TEST

static Suite *
checkpoint_suite(void)
{
    Suite *s = suite_create("checkpoint");
    TCase *tc;

    tc = tcase_create("checkpoint");
    tcase_add_test(tc, test_checkpoint_roundtrip);
    tcase_add_test(tc, test_checkpoint_save_bad_meta);
    tcase_add_test(tc, test_checkpoint_save_atomic);
    tcase_add_test(tc, test_checkpoint_load_errors);
    tcase_add_test(tc, test_checkpoint_i32_state);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(checkpoint_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
