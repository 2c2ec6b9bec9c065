/*
 * safetensors.c - reading .safetensors files (the writer is
 * safetensors_write.c; what both use, safetensors_fmt.h).
 *
 * A file is an 8-byte little-endian header length N, N bytes of UTF-8 JSON
 * and the data block.  The reader reads the whole file into memory (not
 * mmap: a mapped file that another program truncates kills the reader
 * with SIGBUS when it touches the lost pages; a read sees the bytes the
 * file had, or comes up short and says so), parses the
 * header with jansson and checks every field before any tensor is handed
 * out: the header comes from an untrusted file, so nothing in it may crash
 * or abort the process, and every error names the file and the tensor or
 * field at fault.
 *
 * Memory comes from malloc and goes back with free: this convenience
 * library is linked into libsmlp and into its own test, which does not
 * link the rest of the runtime.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "atomic_file.h"
#include "safetensors.h"
#include "safetensors_fmt.h"

/* A larger header is certainly not a real one (the format says 100 MB). */
#define ST_HEADER_MAX 100000000ull

static const struct dtype_info dtype_table[] = {
    {"BOOL", -1, 8},
    {"U8", -1, 8},
    {"I8", -1, 8},
    {"F8_E5M2", -1, 8},
    {"F8_E4M3", -1, 8},
    {"F8_E8M0", -1, 8},
    {"I16", -1, 16},
    {"U16", -1, 16},
    {"F16", -1, 16},
    {"BF16", -1, 16},
    {"I32", SMLP_DTYPE_I32, 32},
    {"U32", -1, 32},
    {"F32", SMLP_DTYPE_F32, 32},
    {"I64", -1, 64},
    {"U64", -1, 64},
    {"F64", -1, 64},
    {"C64", -1, 64},
    {"F4", -1, 4},
    {"F6_E2M3", -1, 6},
    {"F6_E3M2", -1, 6},
};

/* Where a tensor's bytes lie in the data block, for the overlap check. */
struct span {
    uint64_t begin;
    uint64_t end;
    const char *name;
};

/* See safetensors_fmt.h. */
const struct dtype_info *
smlp__st_dtype_lookup(const char *name)
{
    size_t i;

    for (i = 0; i < sizeof(dtype_table) / sizeof(dtype_table[0]); i++)
        if (strcmp(dtype_table[i].name, name) == 0)
            return &dtype_table[i];
    return NULL;
}

/* See safetensors_fmt.h. */
int
smlp__st_tensor_nbytes(const int64_t *shape, int32_t rank, uint32_t bits,
              uint64_t *out)
{
    uint64_t numel = 1;
    int32_t d;

    for (d = 0; d < rank; d++)
        if (shape[d] == 0) {
            *out = 0;
            return 0;
        }
    for (d = 0; d < rank; d++) {
        if (numel > UINT64_MAX / (uint64_t)shape[d])
            return -1;
        numel *= (uint64_t)shape[d];
    }
    if (numel > UINT64_MAX / bits)
        return -1;
    numel *= bits;
    if (numel % 8 != 0)
        return -2;
    if (numel / 8 > SIZE_MAX || numel / 8 > (uint64_t)INT64_MAX)
        return -1;
    *out = numel / 8;
    return 0;
}

/* See safetensors_fmt.h. */
const char *
smlp__st_shape_str(const int64_t *shape, int32_t rank, char *buf, size_t len)
{
    size_t used;
    int32_t d;

    used = (size_t)snprintf(buf, len, "[");
    for (d = 0; d < rank && used < len; d++)
        used += (size_t)snprintf(buf + used, len - used, "%s%lld",
                                 d ? ", " : "", (long long)shape[d]);
    if (used < len)
        snprintf(buf + used, len - used, "]");
    return buf;
}

static const char *
json_type_str(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

static int
cmp_entry_name(const void *a, const void *b)
{
    const struct smlp__st_entry *x = a, *y = b;

    return strcmp(x->name, y->name);
}

static int
cmp_span(const void *a, const void *b)
{
    const struct span *x = a, *y = b;

    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

/*
 * Reads one tensor entry of the header into e and span.  e->name is set
 * first (owned by e, freed by smlp__st_close), so a failure later leaves
 * nothing to free here.  Returns SMLP_OK, SMLP_EBADFILE or SMLP_ENOMEM.
 */
static int
parse_entry(struct smlp__st_entry *e, struct span *span, const char *path,
            const char *name, json_t *v, const unsigned char *data,
            uint64_t data_size, char *err, size_t errlen)
{
    const struct dtype_info *info;
    json_t *dt, *shape, *offs, *x;
    json_int_t begin, end;
    uint64_t nbytes;
    char sbuf[200];
    size_t rank, d;
    int r;

    e->name = strdup(name);
    if (e->name == NULL)
        return smlp__fail(err, errlen, SMLP_ENOMEM, "%s: out of memory", path);
    if (!json_is_object(v))
        return smlp__fail(err, errlen, SMLP_EBADFILE,
                          "%s: tensor '%s': entry is %s, not an object", path,
                          name, json_type_str(v));

    dt = json_object_get(v, "dtype");
    if (!json_is_string(dt))
        return smlp__fail(err, errlen, SMLP_EBADFILE,
                          "%s: tensor '%s': dtype is missing or not a string",
                          path, name);
    info = smlp__st_dtype_lookup(json_string_value(dt));
    if (info == NULL)
        return smlp__fail(err, errlen, SMLP_EBADFILE,
                          "%s: tensor '%s': unknown dtype '%.40s'", path, name,
                          json_string_value(dt));
    e->dtype = info->dtype;
    snprintf(e->dtype_name, sizeof(e->dtype_name), "%s", info->name);

    shape = json_object_get(v, "shape");
    if (!json_is_array(shape))
        return smlp__fail(err, errlen, SMLP_EBADFILE,
                          "%s: tensor '%s': shape is missing or not an array",
                          path, name);
    rank = json_array_size(shape);
    if (rank > SMLP_MAX_RANK)
        return smlp__fail(
            err, errlen, SMLP_EBADFILE,
            "%s: tensor '%s': shape has rank %zu, smlp allows at "
            "most %d",
            path, name, rank, SMLP_MAX_RANK);
    e->rank = (int32_t)rank;
    json_array_foreach(shape, d, x) {
        if (!json_is_integer(x))
            return smlp__fail(
                err, errlen, SMLP_EBADFILE,
                "%s: tensor '%s': shape[%zu] is %s, not an integer", path,
                name, d, json_type_str(x));
        if (json_integer_value(x) < 0)
            return smlp__fail(err, errlen, SMLP_EBADFILE,
                              "%s: tensor '%s': shape[%zu] is negative (%lld)",
                              path, name, d, (long long)json_integer_value(x));
        e->shape[d] = (int64_t)json_integer_value(x);
    }
    smlp__st_shape_str(e->shape, e->rank, sbuf, sizeof(sbuf));
    r = smlp__st_tensor_nbytes(e->shape, e->rank, info->bits, &nbytes);
    if (r == -1)
        return smlp__fail(
            err, errlen, SMLP_EBADFILE,
            "%s: tensor '%s': shape %s %s overflows: its byte size "
            "is not representable",
            path, name, sbuf, info->name);
    if (r == -2)
        return smlp__fail(
            err, errlen, SMLP_EBADFILE,
            "%s: tensor '%s': shape %s %s is not a whole number of "
            "bytes",
            path, name, sbuf, info->name);

    offs = json_object_get(v, "data_offsets");
    if (!json_is_array(offs) || json_array_size(offs) != 2 ||
        !json_is_integer(json_array_get(offs, 0)) ||
        !json_is_integer(json_array_get(offs, 1)))
        return smlp__fail(err, errlen, SMLP_EBADFILE,
                          "%s: tensor '%s': data_offsets is missing or not an "
                          "array of two integers",
                          path, name);
    begin = json_integer_value(json_array_get(offs, 0));
    end = json_integer_value(json_array_get(offs, 1));
    if (begin < 0 || end < 0)
        return smlp__fail(err, errlen, SMLP_EBADFILE,
                          "%s: tensor '%s': data_offsets [%lld, %lld] are "
                          "negative",
                          path, name, (long long)begin, (long long)end);
    if (begin > end)
        return smlp__fail(err, errlen, SMLP_EBADFILE,
                          "%s: tensor '%s': data_offsets [%lld, %lld] are "
                          "reversed",
                          path, name, (long long)begin, (long long)end);
    if ((uint64_t)end > data_size)
        return smlp__fail(err, errlen, SMLP_EBADFILE,
                          "%s: tensor '%s': data_offsets [%lld, %lld] reach "
                          "beyond the data block (%llu bytes)",
                          path, name, (long long)begin, (long long)end,
                          (unsigned long long)data_size);
    if ((uint64_t)(end - begin) != nbytes)
        return smlp__fail(
            err, errlen, SMLP_EBADFILE,
            "%s: tensor '%s': data_offsets [%lld, %lld] hold %lld "
            "bytes, shape %s %s needs %llu",
            path, name, (long long)begin, (long long)end,
            (long long)(end - begin), sbuf, info->name,
            (unsigned long long)nbytes);
    e->data = data + begin;
    e->nbytes = (size_t)nbytes;
    span->begin = (uint64_t)begin;
    span->end = (uint64_t)end;
    span->name = e->name;
    return SMLP_OK;
}

/*
 * Reads the "__metadata__" object into f (keys and values owned by f).
 * Returns SMLP_OK, SMLP_EBADFILE or SMLP_ENOMEM.
 */
static int
parse_meta(struct smlp__st_file *f, const char *path, json_t *meta,
           char *err, size_t errlen)
{
    const char *key;
    json_t *v;
    size_t n;

    if (!json_is_object(meta))
        return smlp__fail(err, errlen, SMLP_EBADFILE,
                          "%s: " ST_META_KEY " is %s, not an object", path,
                          json_type_str(meta));
    n = json_object_size(meta);
    f->meta_keys = calloc(n ? n : 1, sizeof(*f->meta_keys));
    f->meta_values = calloc(n ? n : 1, sizeof(*f->meta_values));
    if (f->meta_keys == NULL || f->meta_values == NULL)
        return smlp__fail(err, errlen, SMLP_ENOMEM, "%s: out of memory", path);
    json_object_foreach(meta, key, v) {
        if (!json_is_string(v))
            return smlp__fail(err, errlen, SMLP_EBADFILE,
                              "%s: " ST_META_KEY " '%s': value is %s, not a "
                              "string",
                              path, key, json_type_str(v));
        f->meta_keys[f->n_meta] = strdup(key);
        f->meta_values[f->n_meta] = strdup(json_string_value(v));
        f->n_meta++;
        if (f->meta_keys[f->n_meta - 1] == NULL ||
            f->meta_values[f->n_meta - 1] == NULL)
            return smlp__fail(err, errlen, SMLP_ENOMEM, "%s: out of memory",
                              path);
    }
    return SMLP_OK;
}

/*
 * Checks that no two tensors share a byte (empty tensors share none).
 * Sorts spans.  Returns SMLP_OK or SMLP_EBADFILE.
 */
static int
check_overlaps(struct span *spans, int32_t n, const char *path, char *err,
               size_t errlen)
{
    const struct span *last = NULL;
    int32_t i;

    qsort(spans, (size_t)n, sizeof(*spans), cmp_span);
    for (i = 0; i < n; i++) {
        const struct span *s = &spans[i];

        if (s->begin == s->end)
            continue;
        if (last != NULL && s->begin < last->end)
            return smlp__fail(err, errlen, SMLP_EBADFILE,
                              "%s: tensor '%s': data_offsets [%llu, %llu] "
                              "overlap tensor '%s' [%llu, %llu]",
                              path, s->name, (unsigned long long)s->begin,
                              (unsigned long long)s->end, last->name,
                              (unsigned long long)last->begin,
                              (unsigned long long)last->end);
        if (last == NULL || s->end > last->end)
            last = s;
    }
    return SMLP_OK;
}

/*
 * Reads every entry of the parsed header root into f.  Returns SMLP_OK,
 * SMLP_EBADFILE or SMLP_ENOMEM; f keeps what was read for smlp__st_close.
 */
static int
parse_header(struct smlp__st_file *f, const char *path, json_t *root,
             const unsigned char *data, uint64_t data_size, char *err,
             size_t errlen)
{
    struct span *spans;
    const char *key;
    json_t *v;
    size_t n;
    int32_t i;
    int rc = SMLP_OK;

    n = json_object_size(root);
    if (json_object_get(root, ST_META_KEY) != NULL)
        n--;
    if (n > INT32_MAX)
        return smlp__fail(err, errlen, SMLP_EBADFILE,
                          "%s: too many tensors (%zu)", path, n);
    f->entries = calloc(n ? n : 1, sizeof(*f->entries));
    spans = calloc(n ? n : 1, sizeof(*spans));
    if (f->entries == NULL || spans == NULL) {
        rc = smlp__fail(err, errlen, SMLP_ENOMEM, "%s: out of memory", path);
        goto out_free_spans;
    }
    json_object_foreach(root, key, v) {
        if (strcmp(key, ST_META_KEY) == 0) {
            rc = parse_meta(f, path, v, err, errlen);
        } else {
            i = f->n_entries++;
            rc = parse_entry(&f->entries[i], &spans[i], path, key, v, data,
                             data_size, err, errlen);
        }
        if (rc != SMLP_OK)
            goto out_free_spans;
    }
    rc = check_overlaps(spans, f->n_entries, path, err, errlen);

out_free_spans:
    free(spans);
    return rc;
}

/* A file with metadata SMLP__ST_HASH_KEY: its data block must hash to
 * it. */
static int
check_hash(const struct smlp__st_file *f, const char *path,
           const unsigned char *data, uint64_t len, char *err, size_t errlen)
{
    const char *v = smlp__st_meta(f, SMLP__ST_HASH_KEY);
    struct smlp__st_hash h;
    unsigned long long want = 0, got;
    size_t i;

    if (v == NULL)
        return SMLP_OK;
    for (i = 0; i < 16 && ((v[i] >= '0' && v[i] <= '9') ||
                           (v[i] >= 'a' && v[i] <= 'f'));
         i++)
        want = want << 4 | (unsigned)(v[i] <= '9' ? v[i] - '0'
                                                  : v[i] - 'a' + 10);
    if (i != 16 || v[16] != '\0')
        return smlp__fail(err, errlen, SMLP_EBADFILE,
                          "%s: metadata %s is '%s', not 16 hex digits", path,
                          SMLP__ST_HASH_KEY, v);
    smlp__st_hash_init(&h);
    smlp__st_hash_update(&h, data, (size_t)len);
    got = smlp__st_hash_final(&h);
    if (got != want)
        return smlp__fail(
            err, errlen, SMLP_EBADFILE,
            "%s: the tensor data do not match the file's %s (%s; "
            "they hash to %016llx): the file was changed or "
            "damaged after it was written",
            path, SMLP__ST_HASH_KEY, v, got);
    return SMLP_OK;
}

/* Reads the size bytes fstat promised into buf; a short read (the file
 * shrank since) or a read error is reported naming the file. */
static int
read_all(int fd, unsigned char *buf, uint64_t size, const char *path,
         char *err, size_t errlen)
{
    uint64_t got = 0;

    while (got < size) {
        size_t want = size - got > ((size_t)1 << 30) ? (size_t)1 << 30
                                                     : (size_t)(size - got);
        ssize_t r = read(fd, buf + got, want);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return smlp__fail(err, errlen, SMLP_EIO, "%s: cannot read: %s",
                              path, strerror(errno));
        if (r == 0)
            return smlp__fail(err, errlen, SMLP_EBADFILE,
                              "%s: the file ended after %llu of its %llu "
                              "bytes: it changed while it was read",
                              path, (unsigned long long)got,
                              (unsigned long long)size);
        got += (uint64_t)r;
    }
    return SMLP_OK;
}

/*
 * See safetensors.h.  The returned file (freed with smlp__st_close) owns
 * its names, metadata and bytes; entry data points into the bytes (whose
 * first is 64-byte aligned) and may be unaligned when the writer of the
 * file did not pad its header.  Reentrant: no global state; an open file
 * may be read from any thread.
 */
int
smlp__st_open(const char *path, struct smlp__st_file **out, char *err,
              size_t errlen)
{
    void *buf = NULL;
    struct smlp__st_file *f = NULL;
    const unsigned char *b;
    json_t *root = NULL;
    json_error_t jerr;
    struct stat st;
    uint64_t size, hlen;
    int32_t i;
    int fd, rc;

    if (out == NULL || path == NULL)
        return smlp__fail(err, errlen, SMLP_EINVAL,
                          "smlp__st_open: NULL argument");
    *out = NULL;
    /* O_NONBLOCK keeps a FIFO from blocking the open; it is refused below. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return smlp__fail(err, errlen, SMLP_EIO, "%s: cannot open: %s", path,
                          strerror(errno));
    if (fstat(fd, &st) != 0) {
        rc = smlp__fail(err, errlen, SMLP_EIO, "%s: cannot stat: %s", path,
                        strerror(errno));
        goto out_close_fd;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = smlp__fail(err, errlen, SMLP_EIO,
                        "%s: is a directory, not a file", path);
        goto out_close_fd;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = smlp__fail(err, errlen, SMLP_EIO, "%s: is not a regular file",
                        path);
        goto out_close_fd;
    }
    size = (uint64_t)st.st_size;
    if (size < 8) {
        rc =
            smlp__fail(err, errlen, SMLP_EBADFILE,
                       "%s: file is too short (%llu bytes), the header length "
                       "alone takes 8",
                       path, (unsigned long long)size);
        goto out_close_fd;
    }
    if (size > SIZE_MAX) {
        rc = smlp__fail(err, errlen, SMLP_EBADFILE,
                        "%s: file is too large to read (%llu bytes)", path,
                        (unsigned long long)size);
        goto out_close_fd;
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL) {
        rc = smlp__fail(err, errlen, SMLP_ENOMEM, "%s: out of memory", path);
        goto out_close_fd;
    }
    if (posix_memalign(&buf, 64, (size_t)size) != 0) {
        rc = smlp__fail(err, errlen, SMLP_ENOMEM,
                        "%s: out of memory (%llu bytes for the file)", path,
                        (unsigned long long)size);
        goto out_free;
    }
    f->bytes = buf;
    f->len = (size_t)size;
    rc = read_all(fd, f->bytes, size, path, err, errlen);
    if (rc != SMLP_OK)
        goto out_free;
    b = f->bytes;

    hlen = 0;
    for (i = 7; i >= 0; i--)
        hlen = (hlen << 8) | b[i];
    if (hlen > ST_HEADER_MAX) {
        rc = smlp__fail(err, errlen, SMLP_EBADFILE,
                        "%s: header length %llu is absurd (more than 100 MB)",
                        path, (unsigned long long)hlen);
        goto out_free;
    }
    if (hlen > size - 8) {
        rc = smlp__fail(err, errlen, SMLP_EBADFILE,
                        "%s: header length %llu exceeds the file (%llu bytes "
                        "after the length)",
                        path, (unsigned long long)hlen,
                        (unsigned long long)(size - 8));
        goto out_free;
    }
    root = json_loadb((const char *)b + 8, (size_t)hlen,
                      JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (root == NULL) {
        if (json_error_code(&jerr) == json_error_duplicate_key)
            rc = smlp__fail(err, errlen, SMLP_EBADFILE,
                            "%s: header names a key twice (duplicate): %s "
                            "(line %d, column %d)",
                            path, jerr.text, jerr.line, jerr.column);
        else
            rc = smlp__fail(
                err, errlen, SMLP_EBADFILE,
                "%s: header is not valid JSON: %s (line %d, column "
                "%d, byte %d)",
                path, jerr.text, jerr.line, jerr.column, jerr.position);
        goto out_free;
    }
    if (!json_is_object(root)) {
        rc = smlp__fail(err, errlen, SMLP_EBADFILE,
                        "%s: header is %s, not a JSON object", path,
                        json_type_str(root));
        goto out_free;
    }
    rc = parse_header(f, path, root, b + 8 + hlen, size - 8 - hlen, err,
                      errlen);
    if (rc == SMLP_OK)
        rc = check_hash(f, path, b + 8 + hlen, size - 8 - hlen, err,
                        errlen);
    if (rc != SMLP_OK)
        goto out_free;
    qsort(f->entries, (size_t)f->n_entries, sizeof(*f->entries),
          cmp_entry_name);
    *out = f;
    f = NULL;

out_free:
    json_decref(root);
    smlp__st_close(f);
out_close_fd:
    close(fd);
    return rc;
}

/* See safetensors.h. */
const char *
smlp__st_meta(const struct smlp__st_file *f, const char *key)
{
    int32_t i;

    if (f == NULL || key == NULL)
        return NULL;
    for (i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0)
            return f->meta_values[i];
    return NULL;
}

/* See safetensors.h.  The entry belongs to f. */
const struct smlp__st_entry *
smlp__st_find(const struct smlp__st_file *f, const char *name)
{
    int32_t lo = 0, hi, mid;
    int c;

    if (f == NULL || name == NULL)
        return NULL;
    hi = f->n_entries;
    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        c = strcmp(name, f->entries[mid].name);
        if (c == 0)
            return &f->entries[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* Frees everything smlp__st_open made; NULL is accepted. */
void
smlp__st_close(struct smlp__st_file *f)
{
    int32_t i;

    if (f == NULL)
        return;
    for (i = 0; i < f->n_entries; i++)
        free(f->entries[i].name);
    free(f->entries);
    for (i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    free(f->bytes);
    free(f);
}
