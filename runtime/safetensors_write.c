/*
 * safetensors_write.c - writing .safetensors files (atomic replace).
 *
 * The writer checks its input (names, dtypes, shapes against sizes,
 * metadata as UTF-8, no name twice), builds the header with jansson,
 * pads it with spaces so that the data block starts on a 64-byte
 * boundary, and replaces the target through a temporary file in the same
 * directory, so that a reader sees either the old file or the new one.
 * Memory comes from malloc and goes back with free, as in safetensors.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "atomic_file.h"
#include "safetensors.h"
#include "safetensors_fmt.h"
#include "utf8.h"

/* Checks that a NUL-terminated string is well-formed UTF-8. */
static int
utf8_valid(const char *s)
{
    size_t n = strlen(s);

    return smlp__utf8_bad_at((const uint8_t *)s, n) == n;
}

static int
cmp_str_ptr(const void *a, const void *b)
{
    const char *const *x = a, *const *y = b;

    return strcmp(*x, *y);
}

/*
 * Checks one caller entry: name, dtype against dtype_name, shape, nbytes
 * and data.  Returns SMLP_OK or SMLP_EINVAL.
 */
static int
check_entry(const struct smlp__st_entry *e, int32_t idx, const char *path,
            char *err, size_t errlen)
{
    const struct dtype_info *info;
    uint64_t nbytes;
    char sbuf[200];
    int32_t d;

    if (e->name == NULL)
        return smlp__fail(err, errlen, SMLP_EINVAL, "%s: entry %d has no name",
                          path, (int)idx);
    if (!utf8_valid(e->name))
        return smlp__fail(err, errlen, SMLP_EINVAL,
                          "%s: the name of entry %d is not valid UTF-8", path,
                          (int)idx);
    if (strcmp(e->name, ST_META_KEY) == 0)
        return smlp__fail(err, errlen, SMLP_EINVAL,
                          "%s: tensor '%s': the name is reserved for metadata",
                          path, e->name);
    if (memchr(e->dtype_name, 0, sizeof(e->dtype_name)) == NULL)
        return smlp__fail(err, errlen, SMLP_EINVAL,
                          "%s: tensor '%s': dtype_name is not NUL-terminated",
                          path, e->name);
    info = smlp__st_dtype_lookup(e->dtype_name);
    if (info == NULL)
        return smlp__fail(err, errlen, SMLP_EINVAL,
                          "%s: tensor '%s': unknown dtype '%s'", path, e->name,
                          e->dtype_name);
    if (info->dtype != e->dtype)
        return smlp__fail(
            err, errlen, SMLP_EINVAL,
            "%s: tensor '%s': dtype %d does not match dtype_name "
            "'%s' (expected %d)",
            path, e->name, (int)e->dtype, e->dtype_name, (int)info->dtype);
    if (e->rank < 0 || e->rank > SMLP_MAX_RANK)
        return smlp__fail(err, errlen, SMLP_EINVAL,
                          "%s: tensor '%s': rank %d is outside 0..%d", path,
                          e->name, (int)e->rank, SMLP_MAX_RANK);
    for (d = 0; d < e->rank; d++)
        if (e->shape[d] < 0)
            return smlp__fail(err, errlen, SMLP_EINVAL,
                              "%s: tensor '%s': shape[%d] is negative (%lld)",
                              path, e->name, (int)d, (long long)e->shape[d]);
    smlp__st_shape_str(e->shape, e->rank, sbuf, sizeof(sbuf));
    if (smlp__st_tensor_nbytes(e->shape, e->rank, info->bits, &nbytes) != 0)
        return smlp__fail(err, errlen, SMLP_EINVAL,
                          "%s: tensor '%s': shape %s %s overflows or is not a "
                          "whole number of bytes",
                          path, e->name, sbuf, info->name);
    if (nbytes != e->nbytes)
        return smlp__fail(
            err, errlen, SMLP_EINVAL,
            "%s: tensor '%s': nbytes is %zu, shape %s %s needs %llu", path,
            e->name, e->nbytes, sbuf, info->name, (unsigned long long)nbytes);
    if (e->data == NULL && e->nbytes > 0)
        return smlp__fail(err, errlen, SMLP_EINVAL,
                          "%s: tensor '%s': data is NULL", path, e->name);
    return SMLP_OK;
}

/*
 * Finds a string that appears twice in names (sorting a copy).  Returns
 * SMLP_OK, SMLP_EINVAL naming the duplicate as "WHAT 'NAME'", or
 * SMLP_ENOMEM.
 */
static int
check_unique(const char *const *names, int32_t n, const char *path,
             const char *what, char *err, size_t errlen)
{
    const char **sorted;
    int32_t i;
    int rc = SMLP_OK;

    if (n < 2)
        return SMLP_OK;
    sorted = malloc((size_t)n * sizeof(*sorted));
    if (sorted == NULL)
        return smlp__fail(err, errlen, SMLP_ENOMEM, "%s: out of memory", path);
    memcpy(sorted, names, (size_t)n * sizeof(*sorted));
    qsort(sorted, (size_t)n, sizeof(*sorted), cmp_str_ptr);
    for (i = 1; i < n; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0) {
            rc = smlp__fail(err, errlen, SMLP_EINVAL,
                            "%s: %s '%s': the name appears twice", path, what,
                            sorted[i]);
            break;
        }
    free(sorted);
    return rc;
}

/*
 * Checks everything the writer is given before it creates any file.
 * Returns SMLP_OK, SMLP_EINVAL or SMLP_ENOMEM.
 */
static int
check_input(const char *path, const struct smlp__st_entry *entries,
            int32_t n, const char *const *keys, const char *const *values,
            int32_t n_meta, char *err, size_t errlen)
{
    const char **names;
    uint64_t total = 0;
    int32_t i;
    int rc = SMLP_OK;

    if (path == NULL || n < 0 || n_meta < 0 || (n > 0 && entries == NULL) ||
        (n_meta > 0 && (keys == NULL || values == NULL)))
        return smlp__fail(err, errlen, SMLP_EINVAL,
                          "smlp__st_write: invalid arguments");
    for (i = 0; i < n; i++) {
        rc = check_entry(&entries[i], i, path, err, errlen);
        if (rc != SMLP_OK)
            return rc;
        total += entries[i].nbytes;
        if (total > (uint64_t)INT64_MAX)
            return smlp__fail(err, errlen, SMLP_EINVAL,
                              "%s: the tensors hold more than 2^63 bytes",
                              path);
    }
    for (i = 0; i < n_meta; i++) {
        if (keys[i] == NULL || values[i] == NULL)
            return smlp__fail(err, errlen, SMLP_EINVAL,
                              "%s: metadata pair %d has a NULL key or value",
                              path, (int)i);
        if (!utf8_valid(keys[i]) || !utf8_valid(values[i]))
            return smlp__fail(err, errlen, SMLP_EINVAL,
                              "%s: metadata pair %d is not valid UTF-8", path,
                              (int)i);
    }
    rc = check_unique(keys, n_meta, path, "metadata key", err, errlen);
    if (rc != SMLP_OK)
        return rc;

    names = malloc((n ? (size_t)n : 1) * sizeof(*names));
    if (names == NULL)
        return smlp__fail(err, errlen, SMLP_ENOMEM, "%s: out of memory", path);
    for (i = 0; i < n; i++)
        names[i] = entries[i].name;
    rc = check_unique(names, n, path, "tensor", err, errlen);
    free(names);
    return rc;
}

/*
 * Builds the header: the 8-byte length, the JSON text and the spaces that
 * put the data block on a multiple of ST_DATA_ALIGN.  Tensors lie in the
 * data block in the order of entries.  On success *out (freed by the
 * caller with free) holds *outlen bytes.  Returns SMLP_OK or SMLP_ENOMEM;
 * the input was checked by check_input.
 */
static int
build_header(const struct smlp__st_entry *entries, int32_t n,
             const char *const *keys, const char *const *values,
             int32_t n_meta, const char *path, unsigned char **out,
             size_t *outlen, char *err, size_t errlen)
{
    json_t *root, *meta, *obj, *shape;
    unsigned char *buf;
    uint64_t off = 0, hlen;
    size_t len, total;
    char *text = NULL;
    int32_t i, d;
    int ok;

    root = json_object();
    if (root == NULL)
        goto out_nomem;
    for (i = 0; i < n; i++) {
        const struct smlp__st_entry *e = &entries[i];

        obj = json_object();
        shape = json_array();
        ok = obj != NULL && shape != NULL;
        for (d = 0; ok && d < e->rank; d++)
            ok = json_array_append_new(shape, json_integer(e->shape[d])) ==
                 0;
        ok = ok &&
             json_object_set_new(obj, "dtype",
                                 json_string(e->dtype_name)) == 0 &&
             json_object_set(obj, "shape", shape) == 0 &&
             json_object_set_new(obj, "data_offsets",
                                 json_pack("[II]", (json_int_t)off,
                                           (json_int_t)(off + e->nbytes))) ==
                 0;
        json_decref(shape);
        if (json_object_set_new(root, e->name, obj) != 0 || !ok)
            goto out_nomem;
        off += e->nbytes;
    }
    if (n_meta > 0) {
        meta = json_object();
        if (json_object_set_new(root, ST_META_KEY, meta) != 0)
            goto out_nomem;
        for (i = 0; i < n_meta; i++)
            if (json_object_set_new(meta, keys[i], json_string(values[i])) !=
                0)
                goto out_nomem;
    }
    text = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    if (text == NULL)
        goto out_nomem;
    len = strlen(text);
    total = (8 + len + ST_DATA_ALIGN - 1) / ST_DATA_ALIGN * ST_DATA_ALIGN;
    buf = malloc(total);
    if (buf == NULL)
        goto out_nomem;
    hlen = total - 8;
    for (i = 0; i < 8; i++)
        buf[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(buf + 8, text, len);
    memset(buf + 8 + len, ' ', total - 8 - len);
    free(text);
    json_decref(root);
    *out = buf;
    *outlen = total;
    return SMLP_OK;

out_nomem:
    free(text);
    json_decref(root);
    return smlp__fail(err, errlen, SMLP_ENOMEM, "%s: out of memory", path);
}

/*
 * Writes header and data to path through smlp__atomic_file (a temporary
 * file beside it, synced and renamed over it; a device or FIFO written in
 * place; a symbolic link's target replaced).  The new file gets the
 * permission bits of the file it replaces, or 0666 & ~umask.  On failure
 * the temporary file is removed and path is untouched.  Returns SMLP_OK,
 * SMLP_EINVAL (an empty name), SMLP_EIO or SMLP_ENOMEM.
 */
static int
write_file(const char *path, const unsigned char *header, size_t hlen,
           const struct smlp__st_entry *entries, int32_t n, char *err,
           size_t errlen)
{
    struct smlp__atomic_file af;
    int32_t i;
    int rc;

    rc = smlp__atomic_file_open(&af, path, err, errlen);
    if (rc != SMLP_OK)
        return rc;
    rc = smlp__atomic_file_write(&af, header, hlen, err, errlen);
    for (i = 0; i < n && rc == SMLP_OK; i++)
        if (entries[i].nbytes > 0)
            rc = smlp__atomic_file_write(&af, entries[i].data,
                                         entries[i].nbytes, err, errlen);
    if (rc != SMLP_OK) {
        smlp__atomic_file_abort(&af);
        return rc;
    }
    return smlp__atomic_file_commit(&af, err, errlen);
}

/*
 * See safetensors.h.  The input is checked first (SMLP_EINVAL names the
 * entry at fault), then the file is written (SMLP_EIO, SMLP_ENOMEM).  The
 * caller keeps ownership of entries, data and metadata.  Reentrant.
 */
int
smlp__st_write(const char *path, const struct smlp__st_entry *entries,
               int32_t n_entries, const char *const *meta_keys,
               const char *const *meta_values, int32_t n_meta, char *err,
               size_t errlen)
{
    unsigned char *header = NULL;
    size_t hlen = 0;
    int rc;

    rc = check_input(path, entries, n_entries, meta_keys, meta_values,
                     n_meta, err, errlen);
    if (rc != SMLP_OK)
        return rc;
    rc = build_header(entries, n_entries, meta_keys, meta_values, n_meta,
                      path, &header, &hlen, err, errlen);
    if (rc != SMLP_OK)
        return rc;
    rc = write_file(path, header, hlen, entries, n_entries, err, errlen);
    free(header);
    return rc;
}
