/*
 * check_safetensors.c - the safetensors reader and writer
 * (runtime/safetensors.c, safetensors_write.c) on good files: write/read
 * round trips, a file made byte by byte here (independent of the writer),
 * the data hash smlp's writers put in the metadata (known answers, every bit
 * flip seen, a damaged file refused), and writer failures that must leave
 * the target and the directory as they were.  Bad files:
 * check_safetensors_bad.c.
 */
#include "stfx.h"

/* ---- Round trips through the writer. ---- */

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
    ck_assert_uint_eq((uintptr_t)((const char *)f->bytes + 8 + hlen) % 64, 0);
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
                  ((const char *)r->data >= (const char *)f->bytes + 8 + hlen &&
                   (const char *)r->data + r->nbytes <=
                       (const char *)f->bytes + f->len));
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

/*
 * The reader holds the bytes the file had when it was opened: another
 * program that truncates the file afterwards (cp over it, a shell's '>')
 * changes nothing the open file hands out.  A reader that mapped the file
 * would die of SIGBUS here, touching pages the truncation took away.
 */
START_TEST(test_safetensors_open_then_truncated)
{
    struct smlp__st_entry e[RT_N];
    struct smlp__st_file *f = NULL;
    uint32_t *data[RT_N];
    char p[256];
    int i;

    rt_entries(e, data);
    tpath(p, sizeof(p), "trunc.safetensors");
    ck_assert_int_eq(smlp__st_write(p, e, RT_N, rt_keys, rt_values, 3,
                                    errbuf, sizeof(errbuf)),
                     SMLP_OK);
    ck_assert_int_eq(smlp__st_open(p, &f, errbuf, sizeof(errbuf)), SMLP_OK);
    ck_assert_int_eq(truncate(p, 0), 0);
    for (i = 0; i < RT_N; i++) {
        const struct smlp__st_entry *r = smlp__st_find(f, e[i].name);

        ck_assert_ptr_nonnull(r);
        ck_assert_uint_eq(r->nbytes, e[i].nbytes);
        ck_assert(memcmp(r->data, data[i], r->nbytes) == 0);
    }
    ck_assert_str_eq(smlp__st_meta(f, "graph"), "mlp");
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
    ck_assert_ptr_eq(idx->data, (const char *)f->bytes + 8 + jl + 24);
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

/* ---- Writer failures. ---- */

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

static Suite *
safetensors_suite(void)
{
    Suite *s = suite_create("safetensors");
    TCase *tc;

    tc = tcase_create("roundtrip");
    tcase_add_unchecked_fixture(tc, setup_dir, teardown_dir);
    tcase_add_test(tc, test_safetensors_write_roundtrip);
    tcase_add_test(tc, test_safetensors_open_then_truncated);
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

    tc = tcase_create("write_failure");
    tcase_add_unchecked_fixture(tc, setup_dir, teardown_dir);
    tcase_add_test(tc, test_safetensors_write_no_directory);
    tcase_add_test(tc, test_safetensors_write_target_is_directory);
    tcase_add_test(tc, test_safetensors_write_invalid_entry);
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
