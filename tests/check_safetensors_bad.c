/*
 * check_safetensors_bad.c - files the safetensors reader must refuse
 * with a message naming the file and the fault, never a crash: malformed
 * headers, truncated and corrupted files, the format's limits (header
 * size, rank, UTF-8, special files); and the writer at those limits and
 * when a write fails midway.
 */
#include "stfx.h"

/* ---- Malformed files. ---- */

START_TEST(test_safetensors_open_missing)
{
    struct smlp__st_file *f = NULL;
    char p[256];

    tpath(p, sizeof(p), "does-not-exist.safetensors");
    assert_err(smlp__st_open(p, &f, errbuf, sizeof(errbuf)), SMLP_EIO,
               "No such file or directory");
    ck_assert_ptr_null(f);
    ck_assert(strncmp(errbuf, p, strlen(p)) == 0);
}
END_TEST

START_TEST(test_safetensors_open_directory)
{
    struct smlp__st_file *f = NULL;

    assert_err(smlp__st_open(tmpdir, &f, errbuf, sizeof(errbuf)), SMLP_EIO,
               "is a directory");
    ck_assert_ptr_null(f);
}
END_TEST

START_TEST(test_safetensors_open_empty_file)
{
    struct smlp__st_file *f = NULL;
    char p[256];

    tpath(p, sizeof(p), "zero.safetensors");
    write_bytes(p, "", 0);
    assert_err(smlp__st_open(p, &f, errbuf, sizeof(errbuf)), SMLP_EBADFILE,
               "too short (0 bytes)");
    write_bytes(p, "\x02\0\0\0\0", 5);
    assert_err(smlp__st_open(p, &f, errbuf, sizeof(errbuf)), SMLP_EBADFILE,
               "too short (5 bytes)");
    ck_assert_ptr_null(f);
}
END_TEST

START_TEST(test_safetensors_open_header_too_long)
{
    struct smlp__st_file *f = NULL;
    char p[256];

    tpath(p, sizeof(p), "long.safetensors");
    write_st_raw(p, 100, "{}", 10);
    assert_err(smlp__st_open(p, &f, errbuf, sizeof(errbuf)), SMLP_EBADFILE,
               "header length 100 exceeds the file (12 bytes");
    write_st_raw(p, (uint64_t)1 << 40, "{}", 10);
    assert_err(smlp__st_open(p, &f, errbuf, sizeof(errbuf)), SMLP_EBADFILE,
               "absurd");
    write_st_raw(p, UINT64_MAX, "{}", 10);
    assert_err(smlp__st_open(p, &f, errbuf, sizeof(errbuf)), SMLP_EBADFILE,
               "absurd");
    ck_assert_ptr_null(f);
}
END_TEST

START_TEST(test_safetensors_open_not_json)
{
    open_bad("{\"a\": {\"dtype\": ", 0, SMLP_EBADFILE,
             "header is not valid JSON");
    open_bad("", 0, SMLP_EBADFILE, "header is not valid JSON");
    open_bad("{}\x01", 0, SMLP_EBADFILE, "header is not valid JSON");
    open_bad("{\"a\xff\": 1}", 0, SMLP_EBADFILE, "not valid JSON");
}
END_TEST

START_TEST(test_safetensors_open_not_object)
{
    open_bad("[1, 2]", 0, SMLP_EBADFILE, "header is an array, not a JSON "
                                         "object");
    open_bad("\"x\"", 0, SMLP_EBADFILE, "not a JSON object");
}
END_TEST

START_TEST(test_safetensors_open_entry_not_object)
{
    open_bad("{\"a\": 5}", 0, SMLP_EBADFILE,
             "tensor 'a': entry is a number, not an object");
    open_bad("{\"a\": [\"F32\"]}", 0, SMLP_EBADFILE,
             "tensor 'a': entry is an array");
}
END_TEST

START_TEST(test_safetensors_open_unknown_dtype)
{
    open_bad("{\"x\":{\"dtype\":\"F33\",\"shape\":[1],"
             "\"data_offsets\":[0,4]}}",
             4, SMLP_EBADFILE, "tensor 'x': unknown dtype 'F33'");
    open_bad("{\"x\":{\"dtype\":\"f32\",\"shape\":[1],"
             "\"data_offsets\":[0,4]}}",
             4, SMLP_EBADFILE, "unknown dtype 'f32'");
    open_bad("{\"x\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
             SMLP_EBADFILE, "tensor 'x': dtype is missing or not a string");
    open_bad("{\"x\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
             SMLP_EBADFILE, "dtype is missing");
}
END_TEST

START_TEST(test_safetensors_open_shape_negative)
{
    open_bad("{\"x\":{\"dtype\":\"F32\",\"shape\":[2,-1],"
             "\"data_offsets\":[0,0]}}",
             0, SMLP_EBADFILE, "tensor 'x': shape[1] is negative (-1)");
}
END_TEST

START_TEST(test_safetensors_open_shape_not_array)
{
    open_bad("{\"x\":{\"dtype\":\"F32\",\"shape\":4,"
             "\"data_offsets\":[0,16]}}",
             16, SMLP_EBADFILE, "tensor 'x': shape is missing or not an "
                                "array");
    open_bad("{\"x\":{\"dtype\":\"F32\",\"data_offsets\":[0,16]}}", 16,
             SMLP_EBADFILE, "shape is missing");
    open_bad("{\"x\":{\"dtype\":\"F32\",\"shape\":[2.0,2],"
             "\"data_offsets\":[0,16]}}",
             16, SMLP_EBADFILE, "shape[0] is a number, not an integer");
    open_bad("{\"x\":{\"dtype\":\"F32\",\"shape\":[2,\"2\"],"
             "\"data_offsets\":[0,16]}}",
             16, SMLP_EBADFILE, "shape[1] is a string, not an integer");
}
END_TEST

START_TEST(test_safetensors_open_rank_too_big)
{
    open_bad("{\"x\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
             "\"data_offsets\":[0,4]}}",
             4, SMLP_EBADFILE, "tensor 'x': shape has rank 9, smlp allows "
                               "at most 8");
}
END_TEST

START_TEST(test_safetensors_open_offsets_beyond)
{
    open_bad("{\"x\":{\"dtype\":\"F32\",\"shape\":[4],"
             "\"data_offsets\":[0,16]}}",
             8, SMLP_EBADFILE,
             "tensor 'x': data_offsets [0, 16] reach beyond the data block "
             "(8 bytes)");
    open_bad("{\"x\":{\"dtype\":\"U8\",\"shape\":[1],"
             "\"data_offsets\":[9223372036854775806,"
             "9223372036854775807]}}",
             8, SMLP_EBADFILE, "beyond the data block");
}
END_TEST

START_TEST(test_safetensors_open_offsets_reversed)
{
    open_bad("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],"
             "\"data_offsets\":[8,4]}}",
             8, SMLP_EBADFILE, "tensor 'x': data_offsets [8, 4] are "
                               "reversed");
}
END_TEST

START_TEST(test_safetensors_open_offsets_malformed)
{
    open_bad("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],"
             "\"data_offsets\":[0]}}",
             8, SMLP_EBADFILE, "tensor 'x': data_offsets is missing or not "
                               "an array of two integers");
    open_bad("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],"
             "\"data_offsets\":[0,4,8]}}",
             8, SMLP_EBADFILE, "two integers");
    open_bad("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],"
             "\"data_offsets\":[0,\"4\"]}}",
             8, SMLP_EBADFILE, "two integers");
    open_bad("{\"x\":{\"dtype\":\"F32\",\"shape\":[1]}}", 8, SMLP_EBADFILE,
             "data_offsets is missing");
    open_bad("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],"
             "\"data_offsets\":[-4,0]}}",
             8, SMLP_EBADFILE, "data_offsets [-4, 0] are negative");
    open_bad("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],"
             "\"data_offsets\":[0,99999999999999999999999]}}",
             8, SMLP_EBADFILE, "not valid JSON");
}
END_TEST

START_TEST(test_safetensors_open_extent_mismatch)
{
    open_bad("{\"blocks.0.w1\":{\"dtype\":\"F32\",\"shape\":[2,3],"
             "\"data_offsets\":[0,12]}}",
             24, SMLP_EBADFILE,
             "tensor 'blocks.0.w1': data_offsets [0, 12] hold 12 bytes, "
             "shape [2, 3] F32 needs 24");
    open_bad("{\"x\":{\"dtype\":\"F16\",\"shape\":[3],"
             "\"data_offsets\":[0,12]}}",
             24, SMLP_EBADFILE, "shape [3] F16 needs 6");
}
END_TEST

START_TEST(test_safetensors_open_overlap)
{
    open_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],"
             "\"data_offsets\":[0,16]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[4],"
             "\"data_offsets\":[8,24]}}",
             24, SMLP_EBADFILE,
             "tensor 'b': data_offsets [8, 24] overlap tensor 'a' [0, 16]");
    /* A small tensor inside a big one, listed before it. */
    open_bad("{\"small\":{\"dtype\":\"U8\",\"shape\":[1],"
             "\"data_offsets\":[20,21]},"
             "\"mid\":{\"dtype\":\"U8\",\"shape\":[4],"
             "\"data_offsets\":[4,8]},"
             "\"big\":{\"dtype\":\"U8\",\"shape\":[32],"
             "\"data_offsets\":[0,32]}}",
             32, SMLP_EBADFILE, "overlap tensor 'big' [0, 32]");
    /* The same extent twice. */
    open_bad("{\"a\":{\"dtype\":\"I32\",\"shape\":[2],"
             "\"data_offsets\":[0,8]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[2],"
             "\"data_offsets\":[0,8]}}",
             8, SMLP_EBADFILE, "overlap");
}
END_TEST

START_TEST(test_safetensors_open_duplicate)
{
    open_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
             "\"data_offsets\":[0,4]},"
             "\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
             "\"data_offsets\":[4,8]}}",
             8, SMLP_EBADFILE, "duplicate");
    open_bad("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"I32\",\"shape\":[1],"
             "\"data_offsets\":[0,4]}}",
             8, SMLP_EBADFILE, "twice");
}
END_TEST

START_TEST(test_safetensors_open_metadata_not_string)
{
    open_bad("{\"__metadata__\":{\"format\":\"pt\",\"k\":1}}", 0,
             SMLP_EBADFILE, "__metadata__ 'k': value is a number, not a "
                            "string");
    open_bad("{\"__metadata__\":{\"k\":null}}", 0, SMLP_EBADFILE,
             "'k': value is null");
    open_bad("{\"__metadata__\":[\"k\"]}", 0, SMLP_EBADFILE,
             "__metadata__ is an array, not an object");
}
END_TEST

START_TEST(test_safetensors_open_numel_overflow)
{
    open_bad("{\"x\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
             "\"data_offsets\":[0,0]}}",
             0, SMLP_EBADFILE, "tensor 'x': shape [4294967296, 4294967296] "
                               "F32 overflows");
    /* numel fits in 64 bits, numel * 4 does not. */
    open_bad("{\"x\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],"
             "\"data_offsets\":[0,0]}}",
             0, SMLP_EBADFILE, "overflows");
    open_bad("{\"x\":{\"dtype\":\"F4\",\"shape\":[3],"
             "\"data_offsets\":[0,2]}}",
             2, SMLP_EBADFILE, "not a whole number of bytes");
}
END_TEST

START_TEST(test_safetensors_open_no_errbuf)
{
    struct smlp__st_file *f = NULL;
    char p[256];

    tpath(p, sizeof(p), "noerr.safetensors");
    write_st(p, "{\"a\": 5}", 0);
    ck_assert_int_eq(smlp__st_open(p, &f, NULL, 0), SMLP_EBADFILE);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(smlp__st_open(p, NULL, NULL, 0), SMLP_EINVAL);
}
END_TEST

/* ---- Truncated and corrupted files never crash the reader. ---- */

/* Opens path; a file that opens must describe memory inside its bytes. */
static int
open_and_check(const char *p)
{
    struct smlp__st_file *f = NULL;
    int32_t i;
    int rc;

    errbuf[0] = '\0';
    rc = smlp__st_open(p, &f, errbuf, sizeof(errbuf));
    if (rc != SMLP_OK) {
        ck_assert_ptr_null(f);
        ck_assert_msg(strncmp(errbuf, p, strlen(p)) == 0,
                      "message '%s' does not name the file", errbuf);
        return rc;
    }
    for (i = 0; i < f->n_entries; i++) {
        const struct smlp__st_entry *e = &f->entries[i];
        const char *d = e->data, *m = (const char *)f->bytes;

        ck_assert(d >= m + 8 && d + e->nbytes <= m + f->len);
        ck_assert(e->rank >= 0 && e->rank <= SMLP_MAX_RANK);
        ck_assert_ptr_eq(smlp__st_find(f, e->name), e);
    }
    smlp__st_close(f);
    return rc;
}

START_TEST(test_safetensors_open_truncated)
{
    struct smlp__st_entry e[RT_N];
    uint32_t *data[RT_N];
    unsigned char *bytes;
    char p[256], q[256];
    size_t len, n;
    int i;

    rt_entries(e, data);
    tpath(p, sizeof(p), "full.safetensors");
    tpath(q, sizeof(q), "cut.safetensors");
    ck_assert_int_eq(smlp__st_write(p, e, RT_N, rt_keys, rt_values, 3,
                                    errbuf, sizeof(errbuf)),
                     SMLP_OK);
    bytes = read_bytes(p, &len);
    for (n = 0; n < len; n++) {
        write_bytes(q, bytes, n);
        ck_assert_int_ne(open_and_check(q), SMLP_OK);
    }
    write_bytes(q, bytes, len);
    ck_assert_int_eq(open_and_check(q), SMLP_OK);
    free(bytes);
    for (i = 0; i < RT_N; i++)
        free(data[i]);
}
END_TEST

START_TEST(test_safetensors_open_corrupted)
{
    static const unsigned char subst[] = {'0', '9', '-', '"', '{', '}', ',',
                                          ':', ']', 0x00, 0xff, 'e'};
    struct smlp__st_entry e[RT_N];
    uint32_t *data[RT_N];
    unsigned char *bytes;
    uint64_t hlen = 0;
    char p[256], q[256];
    size_t len, k, s;
    unsigned char save;
    int i, ok = 0;

    rt_entries(e, data);
    tpath(p, sizeof(p), "good.safetensors");
    tpath(q, sizeof(q), "flip.safetensors");
    ck_assert_int_eq(smlp__st_write(p, e, 5, rt_keys, rt_values, 1, errbuf,
                                    sizeof(errbuf)),
                     SMLP_OK);
    bytes = read_bytes(p, &len);
    for (i = 7; i >= 0; i--)
        hlen = (hlen << 8) | bytes[i];
    /* Every byte of the length field and of the header, a few values each. */
    for (k = 0; k < 8 + hlen; k++) {
        save = bytes[k];
        for (s = 0; s < sizeof(subst); s++) {
            bytes[k] = subst[s];
            write_bytes(q, bytes, len);
            if (open_and_check(q) == SMLP_OK)
                ok++;
        }
        bytes[k] = save;
    }
    /* Some substitutions (digits in padding...) are harmless, most not. */
    ck_assert_int_lt(ok, (int)((8 + hlen) * sizeof(subst)));
    free(bytes);
    for (i = 0; i < RT_N; i++)
        free(data[i]);
}
END_TEST

/* ---- Format edges: limits, UTF-8, special files, failed writes ---- */

/* An 8-byte file holds a header length and nothing else: it is long
 * enough (the limit is 8 bytes), so what is wrong with it is its header:
 * length 0 gives "" (not JSON), length 1 asks for 1 byte of the 0 that
 * follow the length. */
START_TEST(test_safetensors_open_length_only)
{
    struct smlp__st_file *f = (struct smlp__st_file *)1;
    char p[256];

    tpath(p, sizeof(p), "eight.safetensors");
    write_st_raw(p, 0, "", 0);
    assert_err(smlp__st_open(p, &f, errbuf, sizeof(errbuf)), SMLP_EBADFILE,
               "header is not valid JSON");
    ck_assert_ptr_null(f);
    write_st_raw(p, 1, "", 0);
    assert_err(smlp__st_open(p, &f, errbuf, sizeof(errbuf)), SMLP_EBADFILE,
               "header length 1 exceeds the file (0 bytes after the "
               "length)");
    ck_assert_ptr_null(f);
}
END_TEST

/* The 100 MB header limit is inclusive: a length of exactly 100000000 is
 * not absurd (the file is merely too short for it: 2 + 10 bytes follow
 * the length), 100000001 is. */
START_TEST(test_safetensors_open_header_limit)
{
    struct smlp__st_file *f = (struct smlp__st_file *)1;
    char p[256];

    tpath(p, sizeof(p), "limit.safetensors");
    write_st_raw(p, 100000000, "{}", 10);
    assert_err(smlp__st_open(p, &f, errbuf, sizeof(errbuf)), SMLP_EBADFILE,
               "header length 100000000 exceeds the file (12 bytes after "
               "the length)");
    ck_assert_ptr_null(f);
    write_st_raw(p, 100000001, "{}", 10);
    assert_err(smlp__st_open(p, &f, errbuf, sizeof(errbuf)), SMLP_EBADFILE,
               "header length 100000001 is absurd");
    ck_assert_ptr_null(f);
}
END_TEST

/* A FIFO is refused as not a regular file (O_NONBLOCK: the open does not
 * wait for a writer), not read as an empty, too short file. */
START_TEST(test_safetensors_open_fifo)
{
    struct smlp__st_file *f = (struct smlp__st_file *)1;
    char p[256];

    tpath(p, sizeof(p), "fifo.safetensors");
    ck_assert_int_eq(mkfifo(p, 0600), 0);
    assert_err(smlp__st_open(p, &f, errbuf, sizeof(errbuf)), SMLP_EIO,
               "is not a regular file");
    ck_assert_ptr_null(f);
    ck_assert(strncmp(errbuf, p, strlen(p)) == 0);
    ck_assert_int_eq(unlink(p), 0);
}
END_TEST

/*
 * A file that comes up shorter than fstat said (it shrank between the
 * two) is refused, naming the file and both lengths, not read past its
 * end or taken as it is.  A sysfs attribute is such a file on every run:
 * a regular file of 4096 bytes by fstat whose read gives a few.  Where
 * /sys is missing or does not behave so, the case says so on stderr and
 * checks nothing.
 */
START_TEST(test_safetensors_open_shrinking_file)
{
    static const char *const p = "/sys/devices/system/cpu/online";
    struct smlp__st_file *f = (struct smlp__st_file *)1;
    unsigned char buf[64];
    char want[96];
    struct stat st;
    ssize_t n = -1;
    int fd = open(p, O_RDONLY);

    if (fd >= 0) {
        n = read(fd, buf, sizeof(buf));
        close(fd);
    }
    if (stat(p, &st) != 0 || !S_ISREG(st.st_mode) || n < 0 ||
        st.st_size <= (off_t)n || st.st_size < 8) {
        fprintf(stderr, "open_shrinking_file: %s is not a regular file "
                        "that reads shorter than its size here; not "
                        "checked\n", p);
        return;
    }
    assert_err(smlp__st_open(p, &f, errbuf, sizeof(errbuf)), SMLP_EBADFILE,
               "it changed while it was read");
    ck_assert_ptr_null(f);
    ck_assert(strncmp(errbuf, p, strlen(p)) == 0);
    snprintf(want, sizeof(want), "ended after %zd of its %lld bytes", n,
             (long long)st.st_size);
    tu_assert_contains(errbuf, want);
}
END_TEST

/*
 * Tensor names that are not UTF-8 are refused by the writer's own check,
 * naming the entry, whatever jansson would make of them: an overlong
 * 2-byte form (C0 AF for '/'), an overlong 3-byte form (E0 80 AF), a
 * UTF-16 surrogate (ED A0 80 = U+D800) and a code point above U+10FFFF
 * (F4 90 80 80 = U+110000).  The nearest valid neighbours (U+0080,
 * U+0800, U+D7FF, U+E000, U+10000, U+10FFFF) are written and read back
 * under the same name.
 */
START_TEST(test_safetensors_write_utf8_bounds)
{
    static const char *const bad[] = {"a\xc0\xaf", "a\xe0\x80\xaf",
                                      "a\xed\xa0\x80", "a\xf4\x90\x80\x80",
                                      "a\xc1\xbf", "a\xf5\x80\x80\x80"};
    static const char *const good[] = {"a\xc2\x80", "a\xe0\xa0\x80",
                                       "a\xed\x9f\xbf", "a\xee\x80\x80",
                                       "a\xf0\x90\x80\x80",
                                       "a\xf4\x8f\xbf\xbf"};
    struct smlp__st_entry e[RT_N];
    struct smlp__st_file *f = NULL;
    uint32_t *data[RT_N];
    unsigned char *old;
    size_t oldlen, k;
    char p[256];
    int i;

    tpath(p, sizeof(p), "utf8.safetensors");
    old = make_target(p, &oldlen);
    rt_entries(e, data);
    for (k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        e[2].name = (char *)bad[k];
        assert_err(smlp__st_write(p, e, RT_N, NULL, NULL, 0, errbuf,
                                  sizeof(errbuf)),
                   SMLP_EINVAL, "the name of entry 2 is not valid UTF-8");
        assert_untouched(p, old, oldlen);
    }
    for (k = 0; k < sizeof(good) / sizeof(good[0]); k++) {
        e[2].name = (char *)good[k];
        ck_assert_msg(smlp__st_write(p, e, RT_N, NULL, NULL, 0, errbuf,
                                     sizeof(errbuf)) == SMLP_OK,
                      "name %zu: %s", k, errbuf);
        ck_assert_int_eq(smlp__st_open(p, &f, errbuf, sizeof(errbuf)),
                         SMLP_OK);
        ck_assert_ptr_nonnull(smlp__st_find(f, good[k]));
        smlp__st_close(f);
        f = NULL;
    }
    for (i = 0; i < RT_N; i++)
        free(data[i]);
    free(old);
}
END_TEST

/*
 * Writer input checks that test_safetensors_write_invalid_entry leaves
 * out, each refused with EINVAL before the target is touched: a metadata
 * value that is not UTF-8 and a NULL value (pair 1: the message counts
 * from 0), a negative metadata count, and a negative rank.
 */
START_TEST(test_safetensors_write_invalid_more)
{
    const char *keys[2] = {"a", "b"}, *vals[2] = {"1", "\xff"};
    struct smlp__st_entry e[RT_N];
    uint32_t *data[RT_N];
    unsigned char *old;
    size_t oldlen;
    char p[256];
    int i;

    tpath(p, sizeof(p), "target2.safetensors");
    old = make_target(p, &oldlen);
    rt_entries(e, data);
    assert_err(smlp__st_write(p, e, RT_N, keys, vals, 2, errbuf,
                              sizeof(errbuf)),
               SMLP_EINVAL, "metadata pair 1 is not valid UTF-8");
    assert_untouched(p, old, oldlen);
    vals[1] = NULL;
    assert_err(smlp__st_write(p, e, RT_N, keys, vals, 2, errbuf,
                              sizeof(errbuf)),
               SMLP_EINVAL, "metadata pair 1 has a NULL key or value");
    assert_untouched(p, old, oldlen);
    assert_err(smlp__st_write(p, e, RT_N, keys, vals, -1, errbuf,
                              sizeof(errbuf)),
               SMLP_EINVAL, "invalid arguments");
    assert_untouched(p, old, oldlen);
    e[4].rank = -1;
    assert_err(smlp__st_write(p, e, RT_N, NULL, NULL, 0, errbuf,
                              sizeof(errbuf)),
               SMLP_EINVAL, "tensor 'blocks.0.w2': rank -1 is outside 0..8");
    assert_untouched(p, old, oldlen);
    for (i = 0; i < RT_N; i++)
        free(data[i]);
    free(old);
}
END_TEST

/* Rank 8, the most smlp allows, is written and read back: shape
 * [1, 2, 1, 1, 1, 1, 3, 1] of F32 is 6 elements, 24 bytes. */
START_TEST(test_safetensors_write_rank_max)
{
    static const uint32_t v[6] = {1, 2, 3, 4, 5, 6};
    struct smlp__st_entry e;
    struct smlp__st_file *f = NULL;
    const struct smlp__st_entry *r;
    static const int64_t shape[8] = {1, 2, 1, 1, 1, 1, 3, 1};
    char p[256];
    int d;

    memset(&e, 0, sizeof(e));
    e.name = (char *)"r8";
    e.dtype = SMLP_DTYPE_F32;
    snprintf(e.dtype_name, sizeof(e.dtype_name), "F32");
    e.rank = 8;
    memcpy(e.shape, shape, sizeof(shape));
    e.data = v;
    e.nbytes = sizeof(v);
    tpath(p, sizeof(p), "r8.safetensors");
    ck_assert_msg(smlp__st_write(p, &e, 1, NULL, NULL, 0, errbuf,
                                 sizeof(errbuf)) == SMLP_OK,
                  "%s", errbuf);
    ck_assert_int_eq(smlp__st_open(p, &f, errbuf, sizeof(errbuf)), SMLP_OK);
    r = smlp__st_find(f, "r8");
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->rank, 8);
    for (d = 0; d < 8; d++)
        ck_assert_int_eq(r->shape[d], shape[d]);
    ck_assert_uint_eq(r->nbytes, 24);
    ck_assert(memcmp(r->data, v, sizeof(v)) == 0);
    smlp__st_close(f);
}
END_TEST

/*
 * Eight U8 tensors of shape [2^60] hold 2^60 bytes each, 2^63 in all:
 * one more than INT64_MAX, so the writer refuses them before it reads
 * any data.  Their data is a page that cannot be read, so a writer that
 * went on would fail on it, not write gigabytes.
 */
START_TEST(test_safetensors_write_total_too_large)
{
    static const char *const names[8] = {"t0", "t1", "t2", "t3",
                                         "t4", "t5", "t6", "t7"};
    struct smlp__st_entry e[8];
    long page = sysconf(_SC_PAGESIZE);
    void *none;
    char p[256];
    int i;

    none = mmap(NULL, (size_t)page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
                -1, 0);
    ck_assert(none != MAP_FAILED);
    memset(e, 0, sizeof(e));
    for (i = 0; i < 8; i++) {
        e[i].name = (char *)names[i];
        e[i].dtype = -1;
        snprintf(e[i].dtype_name, sizeof(e[i].dtype_name), "U8");
        e[i].rank = 1;
        e[i].shape[0] = (int64_t)1 << 60;
        e[i].data = none;
        e[i].nbytes = (size_t)1 << 60;
    }
    tpath(p, sizeof(p), "huge.safetensors");
    /* Seven are 7 * 2^60 bytes, below 2^63: only the eighth is refused,
     * so the check reaches them all. */
    assert_err(smlp__st_write(p, e, 8, NULL, NULL, 0, errbuf,
                              sizeof(errbuf)),
               SMLP_EINVAL, "the tensors hold more than 2^63 bytes");
    ck_assert(strncmp(errbuf, p, strlen(p)) == 0);
    ck_assert_int_eq(access(p, F_OK), -1);
    ck_assert_int_eq(tu_count_tmp_files(tmpdir), 0);
    munmap(none, (size_t)page);
}
END_TEST

/*
 * A write that fails half way (a file size limit of 4096 bytes, with
 * SIGXFSZ ignored, for a data block of 8192) reports the temporary file
 * it could not write, removes it and leaves the target as it was.  (The
 * test runs in its own process: Check forks.)
 */
START_TEST(test_safetensors_write_fails_midway)
{
    static uint32_t big[2048];
    struct smlp__st_entry e;
    struct rlimit rl;
    unsigned char *old;
    size_t oldlen;
    char p[256];
    int rc;

    tpath(p, sizeof(p), "midway.safetensors");
    old = make_target(p, &oldlen);
    ck_assert_uint_lt(oldlen, 4096);
    memset(&e, 0, sizeof(e));
    e.name = (char *)"big";
    e.dtype = SMLP_DTYPE_I32;
    snprintf(e.dtype_name, sizeof(e.dtype_name), "I32");
    e.rank = 1;
    e.shape[0] = 2048;
    e.data = big;
    e.nbytes = sizeof(big);
    signal(SIGXFSZ, SIG_IGN);
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &rl), 0);
    rl.rlim_cur = 4096;
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    rc = smlp__st_write(p, &e, 1, NULL, NULL, 0, errbuf, sizeof(errbuf));
    /* The limit goes before any assertion: Check's report is a file. */
    rl.rlim_cur = rl.rlim_max;
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    assert_err(rc, SMLP_EIO, "cannot write");
    ck_assert(strncmp(errbuf, p, strlen(p)) == 0);
    ck_assert_msg(strstr(errbuf, ".tmp.") != NULL, "%s", errbuf);
    assert_untouched(p, old, oldlen);
    free(old);
}
END_TEST

static Suite *
safetensors_bad_suite(void)
{
    Suite *s = suite_create("safetensors_bad");
    TCase *tc;

    tc = tcase_create("malformed");
    tcase_add_unchecked_fixture(tc, setup_dir, teardown_dir);
    tcase_add_test(tc, test_safetensors_open_missing);
    tcase_add_test(tc, test_safetensors_open_directory);
    tcase_add_test(tc, test_safetensors_open_empty_file);
    tcase_add_test(tc, test_safetensors_open_header_too_long);
    tcase_add_test(tc, test_safetensors_open_not_json);
    tcase_add_test(tc, test_safetensors_open_not_object);
    tcase_add_test(tc, test_safetensors_open_entry_not_object);
    tcase_add_test(tc, test_safetensors_open_unknown_dtype);
    tcase_add_test(tc, test_safetensors_open_shape_negative);
    tcase_add_test(tc, test_safetensors_open_shape_not_array);
    tcase_add_test(tc, test_safetensors_open_rank_too_big);
    tcase_add_test(tc, test_safetensors_open_offsets_beyond);
    tcase_add_test(tc, test_safetensors_open_offsets_reversed);
    tcase_add_test(tc, test_safetensors_open_offsets_malformed);
    tcase_add_test(tc, test_safetensors_open_extent_mismatch);
    tcase_add_test(tc, test_safetensors_open_overlap);
    tcase_add_test(tc, test_safetensors_open_duplicate);
    tcase_add_test(tc, test_safetensors_open_metadata_not_string);
    tcase_add_test(tc, test_safetensors_open_numel_overflow);
    tcase_add_test(tc, test_safetensors_open_no_errbuf);
    suite_add_tcase(s, tc);

    tc = tcase_create("robustness");
    tcase_add_unchecked_fixture(tc, setup_dir, teardown_dir);
    tcase_add_test(tc, test_safetensors_open_truncated);
    tcase_add_test(tc, test_safetensors_open_corrupted);
    suite_add_tcase(s, tc);

    tc = tcase_create("limits");
    tcase_add_unchecked_fixture(tc, setup_dir, teardown_dir);
    tcase_add_test(tc, test_safetensors_open_length_only);
    tcase_add_test(tc, test_safetensors_open_header_limit);
    tcase_add_test(tc, test_safetensors_open_fifo);
    tcase_add_test(tc, test_safetensors_open_shrinking_file);
    tcase_add_test(tc, test_safetensors_write_utf8_bounds);
    tcase_add_test(tc, test_safetensors_write_invalid_more);
    tcase_add_test(tc, test_safetensors_write_rank_max);
    tcase_add_test(tc, test_safetensors_write_total_too_large);
    tcase_add_test(tc, test_safetensors_write_fails_midway);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(safetensors_bad_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
