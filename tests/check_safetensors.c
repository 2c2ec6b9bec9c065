/*
 * check_safetensors.c - tests of the safetensors reader and writer
 * (runtime/safetensors.c): write/read round trips, a file made byte by
 * byte here (independent of the writer), malformed headers, writer
 * failures that must leave the target and the directory as they were,
 * truncated or corrupted files that must be refused without a crash, and
 * the data hash smlp's writers put in the metadata (known answers, every
 * bit flip seen, a damaged file refused).
 */
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

static void
setup_dir(void)
{
    tu_scratch_make(tmpdir, sizeof(tmpdir), "st");
}

static void
teardown_dir(void)
{
    tu_scratch_remove(tmpdir);
}

/* Puts tmpdir/name into buf. */
static const char *
tpath(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", tmpdir, name);
    return buf;
}

static void
write_bytes(const char *path, const void *buf, size_t len)
{
    FILE *fp = fopen(path, "wb");

    ck_assert_ptr_nonnull(fp);
    if (len > 0)
        ck_assert_uint_eq(fwrite(buf, 1, len, fp), len);
    ck_assert_int_eq(fclose(fp), 0);
}

/* Reads a whole file into a malloc'd buffer. */
static unsigned char *
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

static void
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
static void
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

static void
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
static void
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

/* ---- Round trips through the writer. ---- */

#define RT_N 9

/* Fills buf with n 32-bit patterns, among them NaN payloads and -0. */
static void
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
static void
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

START_TEST(test_safetensors_write_roundtrip)
{
    struct smlp__st_entry e[RT_N];
    struct smlp__st_file *f = NULL;
    uint32_t *data[RT_N];
    unsigned char *bytes;
    size_t len, total = 0, k;
    uint64_t hlen = 0;
    char p[256];
    int i, j, found;

    rt_entries(e, data);
    tpath(p, sizeof(p), "rt.safetensors");
    ck_assert_int_eq(smlp__st_write(p, e, RT_N, rt_keys, rt_values, 3,
                                    errbuf, sizeof(errbuf)),
                     SMLP_OK);
    ck_assert_int_eq(tu_count_tmp_files(tmpdir), 0);

    /* The data block starts on a multiple of 64, after space padding. */
    bytes = read_bytes(p, &len);
    for (i = 7; i >= 0; i--)
        hlen = (hlen << 8) | bytes[i];
    ck_assert_uint_eq((8 + hlen) % 64, 0);
    for (i = 0; i < RT_N; i++)
        total += e[i].nbytes;
    ck_assert_uint_eq(len, 8 + hlen + total);
    ck_assert_int_eq(bytes[8], '{');
    for (k = 8 + hlen - 1; bytes[k] == ' '; k--)
        ;
    ck_assert_int_eq(bytes[k], '}');
    free(bytes);

    ck_assert_int_eq(smlp__st_open(p, &f, errbuf, sizeof(errbuf)), SMLP_OK);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(f->n_entries, RT_N);
    ck_assert_uint_eq((uintptr_t)((const char *)f->map + 8 + hlen) % 64, 0);
    for (i = 1; i < f->n_entries; i++)
        ck_assert_int_lt(strcmp(f->entries[i - 1].name, f->entries[i].name),
                         0);
    for (i = 0; i < RT_N; i++) {
        const struct smlp__st_entry *r = smlp__st_find(f, e[i].name);

        ck_assert_ptr_nonnull(r);
        ck_assert_str_eq(r->name, e[i].name);
        ck_assert_int_eq(r->dtype, e[i].dtype);
        ck_assert_str_eq(r->dtype_name, e[i].dtype_name);
        ck_assert_int_eq(r->rank, e[i].rank);
        for (j = 0; j < r->rank; j++)
            ck_assert_int_eq(r->shape[j], e[i].shape[j]);
        ck_assert_uint_eq(r->nbytes, e[i].nbytes);
        ck_assert_ptr_nonnull(r->data);
        ck_assert(memcmp(r->data, data[i], r->nbytes) == 0);
        ck_assert(r->nbytes == 0 ||
                  ((const char *)r->data >= (const char *)f->map + 8 + hlen &&
                   (const char *)r->data + r->nbytes <=
                       (const char *)f->map + f->map_len));
    }
    ck_assert_int_eq(f->n_meta, 3);
    for (i = 0; i < 3; i++) {
        found = 0;
        for (j = 0; j < f->n_meta; j++)
            if (strcmp(f->meta_keys[j], rt_keys[i]) == 0) {
                ck_assert_str_eq(f->meta_values[j], rt_values[i]);
                found = 1;
            }
        ck_assert(found);
    }
    smlp__st_close(f);
    for (i = 0; i < RT_N; i++)
        free(data[i]);
}
END_TEST

/* Known answers of the data hash, computed by a separate Python version
 * of the definition in runtime/safetensors_hash.c (the hash must never
 * change: files written with it must keep loading). */
START_TEST(test_safetensors_hash_known)
{
    static const struct {
        size_t n;
        uint64_t want;
    } kat[] = {{0, UINT64_C(0xd8a310150df90781)},
               {1, UINT64_C(0x3d501a075b82c03a)},
               {8, UINT64_C(0x27c57a46dd215844)},
               {37, UINT64_C(0xced3b94720748b86)}};
    unsigned char b[37];
    struct smlp__st_hash h;
    size_t i, k, chunk;
    uint64_t one;

    for (k = 0; k < sizeof(kat) / sizeof(kat[0]); k++) {
        for (i = 0; i < kat[k].n; i++)
            b[i] = kat[k].n == 1 ? 0 : (unsigned char)i;
        smlp__st_hash_init(&h);
        smlp__st_hash_update(&h, b, kat[k].n);
        ck_assert_uint_eq(smlp__st_hash_final(&h), kat[k].want);
    }
    /* In pieces of any size: the same. */
    for (i = 0; i < 37; i++)
        b[i] = (unsigned char)i;
    for (chunk = 1; chunk <= 13; chunk++) {
        smlp__st_hash_init(&h);
        for (i = 0; i < 37; i += chunk)
            smlp__st_hash_update(&h, b + i, i + chunk <= 37 ? chunk : 37 - i);
        ck_assert_uint_eq(smlp__st_hash_final(&h), kat[3].want);
    }
    /* Every single bit flipped changes it. */
    for (i = 0; i < 37 * 8; i++) {
        b[i / 8] ^= (unsigned char)(1u << (i % 8));
        smlp__st_hash_init(&h);
        smlp__st_hash_update(&h, b, 37);
        one = smlp__st_hash_final(&h);
        ck_assert_msg(one != kat[3].want, "bit %zu: the same hash", i);
        b[i / 8] ^= (unsigned char)(1u << (i % 8));
    }
}
END_TEST

/* A file whose metadata has smlp.data_hash opens when its data hash to
 * it, and is refused, naming the key, when a bit of the data flipped or
 * the value is not 16 hex digits. */
START_TEST(test_safetensors_hash_checked)
{
    static const char *const bad_values[] = {"", "0123", "0123456789ABCDEF",
                                             "0123456789abcdefg",
                                             "0123456789abcdeg"};
    struct smlp__st_entry e[RT_N];
    struct smlp__st_file *f = NULL;
    const char *keys[2] = {"format", SMLP__ST_HASH_KEY};
    const char *values[2];
    uint32_t *data[RT_N];
    unsigned char *bytes;
    uint64_t hlen = 0;
    size_t len, at[3];
    char p[256], q[256], hex[24];
    int i;

    rt_entries(e, data);
    snprintf(hex, sizeof(hex), "%016llx",
             (unsigned long long)smlp__st_data_hash(e, RT_N));
    values[0] = "pt";
    values[1] = hex;
    tpath(p, sizeof(p), "hash.safetensors");
    tpath(q, sizeof(q), "flip.safetensors");
    ck_assert_int_eq(smlp__st_write(p, e, RT_N, keys, values, 2, errbuf,
                                    sizeof(errbuf)),
                     SMLP_OK);
    ck_assert_int_eq(smlp__st_open(p, &f, errbuf, sizeof(errbuf)), SMLP_OK);
    ck_assert_str_eq(smlp__st_meta(f, SMLP__ST_HASH_KEY), hex);
    smlp__st_close(f);
    bytes = read_bytes(p, &len);
    for (i = 7; i >= 0; i--)
        hlen = (hlen << 8) | bytes[i];
    at[0] = 8 + hlen;
    at[1] = (8 + hlen + len) / 2;
    at[2] = len - 1;
    for (i = 0; i < 3; i++) {
        bytes[at[i]] ^= 0x10;
        write_bytes(q, bytes, len);
        f = (struct smlp__st_file *)1;
        assert_err(smlp__st_open(q, &f, errbuf, sizeof(errbuf)),
                   SMLP_EBADFILE, "do not match the file's smlp.data_hash");
        ck_assert_ptr_null(f);
        ck_assert_msg(strncmp(errbuf, q, strlen(q)) == 0, "%s", errbuf);
        bytes[at[i]] ^= 0x10;
    }
    free(bytes);
    for (i = 0; i < (int)(sizeof(bad_values) / sizeof(bad_values[0])); i++) {
        values[1] = bad_values[i];
        ck_assert_int_eq(smlp__st_write(p, e, RT_N, keys, values, 2, errbuf,
                                        sizeof(errbuf)),
                         SMLP_OK);
        f = (struct smlp__st_file *)1;
        assert_err(smlp__st_open(p, &f, errbuf, sizeof(errbuf)),
                   SMLP_EBADFILE, "not 16 hex digits");
        ck_assert_ptr_null(f);
    }
    for (i = 0; i < RT_N; i++)
        free(data[i]);
}
END_TEST

START_TEST(test_safetensors_write_overwrite)
{
    struct smlp__st_entry e[RT_N];
    struct smlp__st_file *f = NULL;
    uint32_t *data[RT_N];
    char p[256];
    int i;

    rt_entries(e, data);
    tpath(p, sizeof(p), "over.safetensors");
    ck_assert_int_eq(smlp__st_write(p, e, RT_N, NULL, NULL, 0, errbuf,
                                    sizeof(errbuf)),
                     SMLP_OK);
    ck_assert_int_eq(chmod(p, 0640), 0);
    /* The second write keeps only the first two tensors. */
    ck_assert_int_eq(smlp__st_write(p, e, 2, rt_keys, rt_values, 1, errbuf,
                                    sizeof(errbuf)),
                     SMLP_OK);
    ck_assert_int_eq(tu_count_tmp_files(tmpdir), 0);
    ck_assert_int_eq(smlp__st_open(p, &f, errbuf, sizeof(errbuf)), SMLP_OK);
    ck_assert_int_eq(f->n_entries, 2);
    ck_assert_int_eq(f->n_meta, 1);
    ck_assert_ptr_nonnull(smlp__st_find(f, "z.scalar"));
    ck_assert_ptr_nonnull(smlp__st_find(f, "a.vec"));
    ck_assert_ptr_null(smlp__st_find(f, "m.mat"));
    smlp__st_close(f);
    {
        struct stat st;

        ck_assert_int_eq(stat(p, &st), 0);
        ck_assert_int_eq(st.st_mode & 0777, 0640);
    }
    for (i = 0; i < RT_N; i++)
        free(data[i]);
}
END_TEST

START_TEST(test_safetensors_write_empty)
{
    struct smlp__st_file *f = NULL;
    unsigned char *bytes;
    size_t len;
    char p[256];

    tpath(p, sizeof(p), "empty.safetensors");
    ck_assert_int_eq(smlp__st_write(p, NULL, 0, NULL, NULL, 0, errbuf,
                                    sizeof(errbuf)),
                     SMLP_OK);
    bytes = read_bytes(p, &len);
    ck_assert_uint_eq(len, 64);
    ck_assert_int_eq(bytes[0], 56);
    ck_assert(memcmp(bytes + 8, "{}  ", 4) == 0);
    free(bytes);
    ck_assert_int_eq(smlp__st_open(p, &f, errbuf, sizeof(errbuf)), SMLP_OK);
    ck_assert_int_eq(f->n_entries, 0);
    ck_assert_int_eq(f->n_meta, 0);
    ck_assert_ptr_null(smlp__st_find(f, "x"));
    smlp__st_close(f);
}
END_TEST

START_TEST(test_safetensors_find_absent)
{
    struct smlp__st_entry e[RT_N];
    struct smlp__st_file *f = NULL;
    uint32_t *data[RT_N];
    char p[256];
    int i;

    ck_assert_ptr_null(smlp__st_find(NULL, "x"));
    smlp__st_close(NULL);
    rt_entries(e, data);
    tpath(p, sizeof(p), "find.safetensors");
    ck_assert_int_eq(smlp__st_write(p, e, RT_N, NULL, NULL, 0, errbuf,
                                    sizeof(errbuf)),
                     SMLP_OK);
    ck_assert_int_eq(smlp__st_open(p, &f, errbuf, sizeof(errbuf)), SMLP_OK);
    ck_assert_ptr_null(smlp__st_find(f, ""));
    ck_assert_ptr_null(smlp__st_find(f, "a"));
    ck_assert_ptr_null(smlp__st_find(f, "zz"));
    ck_assert_ptr_null(smlp__st_find(f, "m.ma"));
    ck_assert_ptr_null(smlp__st_find(f, NULL));
    for (i = 0; i < RT_N; i++)
        ck_assert_ptr_eq(smlp__st_find(f, f->entries[i].name),
                         &f->entries[i]);
    smlp__st_close(f);
    for (i = 0; i < RT_N; i++)
        free(data[i]);
}
END_TEST

/* ---- A file made byte by byte, independent of the writer. ---- */

START_TEST(test_safetensors_open_handmade)
{
    static const char json[] =
        "{\"__metadata__\":{\"format\":\"pt\"},"
        "\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
        "\"h\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[16,22]},"
        "\"b\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[22,24]},"
        "\"idx\":{\"dtype\":\"I32\",\"shape\":[2],"
        "\"data_offsets\":[24,32]}}   ";
    static const unsigned char data[32] = {
        /* w: 1.0f, -2.0f, 0.5f, 3.0f */
        0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0,
        0x00, 0x00, 0x00, 0x3f, 0x00, 0x00, 0x40, 0x40,
        /* h: F16 1.0, 2.0, -1.0 */
        0x00, 0x3c, 0x00, 0x40, 0x00, 0xbc,
        /* b: BF16 1.0 */
        0x80, 0x3f,
        /* idx: 7, -1 */
        0x07, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff};
    const struct smlp__st_entry *w, *h, *b, *idx;
    struct smlp__st_file *f = NULL;
    size_t jl = sizeof(json) - 1;
    unsigned char buf[8 + sizeof(json) + sizeof(data)];
    float fv[4];
    int32_t iv[2];
    char p[256];

    /* The length field, byte by byte, little-endian. */
    buf[0] = (unsigned char)(jl & 0xff);
    buf[1] = (unsigned char)(jl >> 8);
    buf[2] = buf[3] = buf[4] = buf[5] = buf[6] = buf[7] = 0;
    memcpy(buf + 8, json, jl);
    memcpy(buf + 8 + jl, data, sizeof(data));
    tpath(p, sizeof(p), "hand.safetensors");
    write_bytes(p, buf, 8 + jl + sizeof(data));

    ck_assert_int_eq(smlp__st_open(p, &f, errbuf, sizeof(errbuf)), SMLP_OK);
    ck_assert_int_eq(f->n_entries, 4);
    ck_assert_str_eq(f->entries[0].name, "b");
    ck_assert_str_eq(f->entries[1].name, "h");
    ck_assert_str_eq(f->entries[2].name, "idx");
    ck_assert_str_eq(f->entries[3].name, "w");
    ck_assert_int_eq(f->n_meta, 1);
    ck_assert_str_eq(f->meta_keys[0], "format");
    ck_assert_str_eq(f->meta_values[0], "pt");
    ck_assert_str_eq(smlp__st_meta(f, "format"), "pt");
    ck_assert_ptr_null(smlp__st_meta(f, "pt"));
    ck_assert_ptr_null(smlp__st_meta(f, "w"));

    w = smlp__st_find(f, "w");
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(w->dtype, SMLP_DTYPE_F32);
    ck_assert_str_eq(w->dtype_name, "F32");
    ck_assert_int_eq(w->rank, 2);
    ck_assert_int_eq(w->shape[0], 2);
    ck_assert_int_eq(w->shape[1], 2);
    ck_assert_uint_eq(w->nbytes, 16);
    memcpy(fv, w->data, sizeof(fv));
    ck_assert(fv[0] == 1.0f && fv[1] == -2.0f && fv[2] == 0.5f &&
              fv[3] == 3.0f);

    h = smlp__st_find(f, "h");
    ck_assert_ptr_nonnull(h);
    ck_assert_int_eq(h->dtype, -1);
    ck_assert_str_eq(h->dtype_name, "F16");
    ck_assert_int_eq(h->rank, 1);
    ck_assert_int_eq(h->shape[0], 3);
    ck_assert_uint_eq(h->nbytes, 6);
    ck_assert(memcmp(h->data, data + 16, 6) == 0);

    b = smlp__st_find(f, "b");
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(b->dtype, -1);
    ck_assert_str_eq(b->dtype_name, "BF16");
    ck_assert_int_eq(b->rank, 0);
    ck_assert_uint_eq(b->nbytes, 2);

    idx = smlp__st_find(f, "idx");
    ck_assert_ptr_nonnull(idx);
    ck_assert_int_eq(idx->dtype, SMLP_DTYPE_I32);
    ck_assert_str_eq(idx->dtype_name, "I32");
    memcpy(iv, idx->data, sizeof(iv));
    ck_assert_int_eq(iv[0], 7);
    ck_assert_int_eq(iv[1], -1);
    ck_assert_ptr_eq(idx->data, (const char *)f->map + 8 + jl + 24);
    smlp__st_close(f);
}
END_TEST

START_TEST(test_safetensors_open_empty_data)
{
    struct smlp__st_file *f = NULL;
    char p[256];

    /* A 0-byte data block with zero-size tensors sharing an offset. */
    tpath(p, sizeof(p), "nodata.safetensors");
    write_st(p,
             "{\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
             "\"g\":{\"dtype\":\"I8\",\"shape\":[4,0],"
             "\"data_offsets\":[0,0]}}",
             0);
    ck_assert_int_eq(smlp__st_open(p, &f, errbuf, sizeof(errbuf)), SMLP_OK);
    ck_assert_int_eq(f->n_entries, 2);
    ck_assert_uint_eq(smlp__st_find(f, "e")->nbytes, 0);
    ck_assert_str_eq(smlp__st_find(f, "g")->dtype_name, "I8");
    smlp__st_close(f);
}
END_TEST

START_TEST(test_safetensors_open_holes)
{
    struct smlp__st_file *f = NULL;
    char p[256];

    /* Gaps between tensors and an empty tensor inside another are fine. */
    tpath(p, sizeof(p), "holes.safetensors");
    write_st(p,
             "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]},"
             "\"b\":{\"dtype\":\"F64\",\"shape\":[1],"
             "\"data_offsets\":[16,24]},"
             "\"c\":{\"dtype\":\"F32\",\"shape\":[0],"
             "\"data_offsets\":[5,5]}}",
             32);
    ck_assert_int_eq(smlp__st_open(p, &f, errbuf, sizeof(errbuf)), SMLP_OK);
    ck_assert_int_eq(f->n_entries, 3);
    ck_assert_int_eq(((const unsigned char *)smlp__st_find(f, "a")->data)[0],
                     4);
    ck_assert_str_eq(smlp__st_find(f, "b")->dtype_name, "F64");
    smlp__st_close(f);
}
END_TEST

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

START_TEST(test_safetensors_open_rank_max)
{
    struct smlp__st_file *f = NULL;
    char p[256];

    tpath(p, sizeof(p), "rank8.safetensors");
    write_st(p,
             "{\"x\":{\"dtype\":\"F32\",\"shape\":[1,2,1,1,1,1,1,3],"
             "\"data_offsets\":[0,24]}}",
             24);
    ck_assert_int_eq(smlp__st_open(p, &f, errbuf, sizeof(errbuf)), SMLP_OK);
    ck_assert_int_eq(f->entries[0].rank, 8);
    ck_assert_int_eq(f->entries[0].shape[7], 3);
    smlp__st_close(f);
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

/* ---- Writer failures. ---- */

/* Writes a valid target, returns its bytes (free them). */
static unsigned char *
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
static void
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

START_TEST(test_safetensors_write_no_directory)
{
    struct smlp__st_entry e[RT_N];
    uint32_t *data[RT_N];
    char p[256];
    int i;

    rt_entries(e, data);
    tpath(p, sizeof(p), "no/such/dir/x.safetensors");
    assert_err(smlp__st_write(p, e, RT_N, NULL, NULL, 0, errbuf,
                              sizeof(errbuf)),
               SMLP_EIO, "cannot create the temporary file");
    ck_assert(strstr(errbuf, "No such file or directory") != NULL);
    ck_assert_int_eq(tu_count_tmp_files(tmpdir), 0);
    for (i = 0; i < RT_N; i++)
        free(data[i]);
}
END_TEST

START_TEST(test_safetensors_write_target_is_directory)
{
    struct smlp__st_entry e[RT_N];
    uint32_t *data[RT_N];
    struct stat st;
    char p[256];
    int i;

    rt_entries(e, data);
    tpath(p, sizeof(p), "adir");
    ck_assert_int_eq(mkdir(p, 0755), 0);
    assert_err(smlp__st_write(p, e, RT_N, NULL, NULL, 0, errbuf,
                              sizeof(errbuf)),
               SMLP_EIO, "cannot rename");
    ck_assert_int_eq(tu_count_tmp_files(tmpdir), 0);
    ck_assert_int_eq(stat(p, &st), 0);
    ck_assert(S_ISDIR(st.st_mode));
    for (i = 0; i < RT_N; i++)
        free(data[i]);
}
END_TEST

START_TEST(test_safetensors_write_invalid_entry)
{
    struct smlp__st_entry e[RT_N], bad[RT_N];
    const char *keys[2] = {"k", "k"}, *vals[2] = {"1", "2"};
    uint32_t *data[RT_N];
    unsigned char *old;
    size_t oldlen;
    char p[256];
    int i;

    tpath(p, sizeof(p), "target.safetensors");
    old = make_target(p, &oldlen);
    rt_entries(e, data);

#define TRY_BAD(n, k, v, nm, sub)                                            \
    do {                                                                     \
        assert_err(smlp__st_write(p, bad, (n), (k), (v), (nm), errbuf,       \
                                  sizeof(errbuf)),                           \
                   SMLP_EINVAL, (sub));                                      \
        assert_untouched(p, old, oldlen);                                    \
        memcpy(bad, e, sizeof(e));                                           \
    } while (0)

    memcpy(bad, e, sizeof(e));
    bad[3].name = (char *)"a.vec";
    TRY_BAD(RT_N, NULL, NULL, 0, "tensor 'a.vec': the name appears twice");
    bad[2].nbytes += 4;
    TRY_BAD(RT_N, NULL, NULL, 0,
            "tensor 'm.mat': nbytes is 52, shape [3, 4] F32 needs 48");
    snprintf(bad[1].dtype_name, sizeof(bad[1].dtype_name), "F32");
    TRY_BAD(RT_N, NULL, NULL, 0, "tensor 'a.vec': dtype 1 does not match "
                                 "dtype_name 'F32'");
    bad[1].dtype = -1;
    TRY_BAD(RT_N, NULL, NULL, 0, "does not match dtype_name 'I32'");
    snprintf(bad[8].dtype_name, sizeof(bad[8].dtype_name), "F17");
    TRY_BAD(RT_N, NULL, NULL, 0, "tensor 'half': unknown dtype 'F17'");
    memset(bad[8].dtype_name, 'A', sizeof(bad[8].dtype_name));
    TRY_BAD(RT_N, NULL, NULL, 0, "not NUL-terminated");
    bad[0].name = (char *)"__metadata__";
    TRY_BAD(RT_N, NULL, NULL, 0, "reserved for metadata");
    bad[0].name = NULL;
    TRY_BAD(RT_N, NULL, NULL, 0, "entry 0 has no name");
    bad[0].name = (char *)"bad\xc3(";
    TRY_BAD(RT_N, NULL, NULL, 0, "not valid UTF-8");
    bad[2].data = NULL;
    TRY_BAD(RT_N, NULL, NULL, 0, "tensor 'm.mat': data is NULL");
    bad[2].rank = 9;
    TRY_BAD(RT_N, NULL, NULL, 0, "rank 9 is outside 0..8");
    bad[2].shape[1] = -4;
    TRY_BAD(RT_N, NULL, NULL, 0, "shape[1] is negative");
    bad[2].shape[0] = (int64_t)1 << 62;
    TRY_BAD(RT_N, NULL, NULL, 0, "overflows");
    TRY_BAD(RT_N, keys, vals, 2, "metadata key 'k': the name appears twice");
    keys[1] = NULL;
    TRY_BAD(RT_N, keys, vals, 2, "NULL key or value");
    TRY_BAD(-1, NULL, NULL, 0, "invalid arguments");
#undef TRY_BAD

    for (i = 0; i < RT_N; i++)
        free(data[i]);
    free(old);
}
END_TEST

/* ---- Truncated and corrupted files never crash the reader. ---- */

/* Opens path; a file that opens must describe memory inside its map. */
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
        const char *d = e->data, *m = f->map;

        ck_assert(d >= m + 8 && d + e->nbytes <= m + f->map_len);
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
safetensors_suite(void)
{
    Suite *s = suite_create("safetensors");
    TCase *tc;

    tc = tcase_create("roundtrip");
    tcase_add_unchecked_fixture(tc, setup_dir, teardown_dir);
    tcase_add_test(tc, test_safetensors_write_roundtrip);
    tcase_add_test(tc, test_safetensors_hash_known);
    tcase_add_test(tc, test_safetensors_hash_checked);
    tcase_add_test(tc, test_safetensors_write_overwrite);
    tcase_add_test(tc, test_safetensors_write_empty);
    tcase_add_test(tc, test_safetensors_find_absent);
    suite_add_tcase(s, tc);

    tc = tcase_create("handmade");
    tcase_add_unchecked_fixture(tc, setup_dir, teardown_dir);
    tcase_add_test(tc, test_safetensors_open_handmade);
    tcase_add_test(tc, test_safetensors_open_empty_data);
    tcase_add_test(tc, test_safetensors_open_holes);
    tcase_add_test(tc, test_safetensors_open_rank_max);
    suite_add_tcase(s, tc);

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

    tc = tcase_create("write_failure");
    tcase_add_unchecked_fixture(tc, setup_dir, teardown_dir);
    tcase_add_test(tc, test_safetensors_write_no_directory);
    tcase_add_test(tc, test_safetensors_write_target_is_directory);
    tcase_add_test(tc, test_safetensors_write_invalid_entry);
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
    SRunner *sr = srunner_create(safetensors_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
