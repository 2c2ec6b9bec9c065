/*
 * stfx.h - what the safetensors suites share: one scratch directory per
 * TCase, files written byte by byte (independent of the writer),
 * assertions on a refused open (status, message, the path first), the
 * round-trip entries (bit patterns with NaN payloads and -0, every dtype)
 * and a target that a failed write must leave untouched.  Used by
 * check_safetensors.c and check_safetensors_bad.c.
 */
#ifndef SMLP_STFX_H
#define SMLP_STFX_H

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"
#include "testutil.h"

/* One scratch directory per TCase, made before its tests fork. */
static char tmpdir[64];
/* The error text of the last call. */
static char errbuf[512];

static inline void
setup_dir(void)
{
    tu_scratch_make(tmpdir, sizeof(tmpdir), "st");
}

static inline void
teardown_dir(void)
{
    tu_scratch_remove(tmpdir);
}

/* Puts tmpdir/name into buf. */
static inline const char *
tpath(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", tmpdir, name);
    return buf;
}

static inline void
write_bytes(const char *path, const void *buf, size_t len)
{
    FILE *fp = fopen(path, "wb");

    ck_assert_ptr_nonnull(fp);
    if (len > 0)
        ck_assert_uint_eq(fwrite(buf, 1, len, fp), len);
    ck_assert_int_eq(fclose(fp), 0);
}

/* Reads a whole file into a malloc'd buffer. */
static inline unsigned char *
read_bytes(const char *path, size_t *len)
{
    unsigned char *buf;
    struct stat st;
    FILE *fp;

    ck_assert_int_eq(stat(path, &st), 0);
    *len = (size_t)st.st_size;
    buf = malloc(*len ? *len : 1);
    ck_assert_ptr_nonnull(buf);
    fp = fopen(path, "rb");
    ck_assert_ptr_nonnull(fp);
    ck_assert_uint_eq(fread(buf, 1, *len, fp), *len);
    fclose(fp);
    return buf;
}

static inline void
put_le64(unsigned char *p, uint64_t v)
{
    int i;

    for (i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/*
 * Writes a file with the given header length field, header text and
 * data_len bytes of data (a counting pattern).
 */
static inline void
write_st_raw(const char *path, uint64_t hlen, const char *json,
             size_t data_len)
{
    size_t jl = strlen(json), i;
    unsigned char *buf = malloc(8 + jl + data_len);

    ck_assert_ptr_nonnull(buf);
    put_le64(buf, hlen);
    memcpy(buf + 8, json, jl);
    for (i = 0; i < data_len; i++)
        buf[8 + jl + i] = (unsigned char)i;
    write_bytes(path, buf, 8 + jl + data_len);
    free(buf);
}

static inline void
write_st(const char *path, const char *json, size_t data_len)
{
    write_st_raw(path, strlen(json), json, data_len);
}

#define assert_err(rc, want, sub)                                            \
    do {                                                                     \
        ck_assert_int_eq((rc), (want));                                      \
        ck_assert_msg(strstr(errbuf, (sub)) != NULL,                         \
                      "message '%s' lacks '%s'", errbuf, (sub));             \
    } while (0)

/*
 * Writes a file with header json and data_len data bytes, opens it and
 * checks the status, that the message names the file and contains sub.
 */
static inline void
open_bad(const char *json, size_t data_len, int want, const char *sub)
{
    struct smlp__st_file *f = (struct smlp__st_file *)1;
    char p[256];
    int rc;

    tpath(p, sizeof(p), "bad.safetensors");
    write_st(p, json, data_len);
    errbuf[0] = '\0';
    rc = smlp__st_open(p, &f, errbuf, sizeof(errbuf));
    assert_err(rc, want, sub);
    ck_assert_ptr_null(f);
    ck_assert_msg(strncmp(errbuf, p, strlen(p)) == 0,
                  "message '%s' does not start with the path", errbuf);
}

#define RT_N 9

/* Fills buf with n 32-bit patterns, among them NaN payloads and -0. */
static inline void
fill_bits(uint32_t *buf, size_t n, uint32_t seed)
{
    static const uint32_t special[] = {0x7fc12345u, 0x80000000u, 0x00000001u,
                                       0xff800000u, 0x7f7fffffu};
    size_t i;

    for (i = 0; i < n; i++)
        buf[i] = i < 5 ? special[i] ^ seed : seed * 2654435761u + (uint32_t)i;
}

struct rt_case {
    const char *name;
    int32_t dtype;
    const char *dtype_name;
    int32_t rank;
    int64_t shape[4];
    size_t numel;
    size_t elem;
};

static const struct rt_case rt_cases[RT_N] = {
    {"z.scalar", SMLP_DTYPE_F32, "F32", 0, {0}, 1, 4},
    {"a.vec", SMLP_DTYPE_I32, "I32", 1, {5}, 5, 4},
    {"m.mat", SMLP_DTYPE_F32, "F32", 2, {3, 4}, 12, 4},
    {"blocks.0.w1", SMLP_DTYPE_I32, "I32", 3, {2, 3, 4}, 24, 4},
    {"blocks.0.w2", SMLP_DTYPE_F32, "F32", 4, {2, 1, 3, 2}, 12, 4},
    {"empty.f32", SMLP_DTYPE_F32, "F32", 2, {0, 3}, 0, 4},
    {"empty.i32", SMLP_DTYPE_I32, "I32", 1, {0}, 0, 4},
    {"h\xc3\xa9llo", SMLP_DTYPE_F32, "F32", 1, {7}, 7, 4},
    {"half", -1, "F16", 2, {3, 3}, 9, 2},
};

/* Builds the round-trip entries; data[i] is malloc'd (free each). */
static inline void
rt_entries(struct smlp__st_entry *e, uint32_t **data)
{
    int i;

    memset(e, 0, RT_N * sizeof(*e));
    for (i = 0; i < RT_N; i++) {
        const struct rt_case *c = &rt_cases[i];
        size_t words = (c->numel * c->elem + 3) / 4;

        data[i] = calloc(words ? words : 1, 4);
        ck_assert_ptr_nonnull(data[i]);
        fill_bits(data[i], words, (uint32_t)i + 1);
        e[i].name = (char *)c->name;
        e[i].dtype = c->dtype;
        snprintf(e[i].dtype_name, sizeof(e[i].dtype_name), "%s",
                 c->dtype_name);
        e[i].rank = c->rank;
        memcpy(e[i].shape, c->shape, sizeof(c->shape));
        e[i].data = c->numel ? data[i] : NULL;
        e[i].nbytes = c->numel * c->elem;
    }
}

static const char *const rt_keys[] = {"format", "graph", "note"};
static const char *const rt_values[] = {"pt", "mlp", "caf\xc3\xa9 \"q\"\n"};

/* Writes a valid target, returns its bytes (free them). */
static inline unsigned char *
make_target(const char *p, size_t *len)
{
    struct smlp__st_entry e[RT_N];
    uint32_t *data[RT_N];
    int i;

    rt_entries(e, data);
    ck_assert_int_eq(smlp__st_write(p, e, 3, rt_keys, rt_values, 2, errbuf,
                                    sizeof(errbuf)),
                     SMLP_OK);
    for (i = 0; i < RT_N; i++)
        free(data[i]);
    return read_bytes(p, len);
}

/* Checks that the target still holds exactly old and no temp file is left. */
static inline void
assert_untouched(const char *p, const unsigned char *old, size_t oldlen)
{
    unsigned char *now;
    size_t len;

    now = read_bytes(p, &len);
    ck_assert_uint_eq(len, oldlen);
    ck_assert(memcmp(now, old, len) == 0);
    free(now);
    ck_assert_int_eq(tu_count_tmp_files(tmpdir), 0);
}

#endif
