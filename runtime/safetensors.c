/*
 * safetensors.c - reading and writing (atomic replace) of .safetensors
 * files.
 *
 * A file is an 8-byte little-endian header length N, N bytes of UTF-8 JSON
 * and the data block.  The reader reads the whole file into memory (not
 * mmap: a mapped file that another program truncates kills the reader
 * with SIGBUS when it touches the lost pages; a read sees the bytes the
 * file had, or comes up short and says so), parses the
 * header with jansson and checks every field before any tensor is handed
 * out: the header comes from an untrusted file, so nothing in it may crash
 * or abort the process, and every error names the file and the tensor or
 * field at fault.  The writer checks its input, builds the header with
 * jansson, pads it with spaces so that the data block starts on a 64-byte
 * boundary, and replaces the target through a temporary file in the same
 * directory, so that a reader sees either the old file or the new one.
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

/* A larger header is certainly not a real one (the format says 100 MB). */
#define ST_HEADER_MAX 100000000ull
/* The writer starts the data block on a multiple of this many bytes. */
#define ST_DATA_ALIGN 64
/* The reserved top-level key of the string->string metadata. */
#define ST_META_KEY "__metadata__"

/* The dtypes of the format, their smlp counterpart and their bit size. */
struct dtype_info {
    const char *name;
    int32_t dtype;
    uint32_t bits;
};

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

/* Returns the table row of a dtype name, or NULL for an unknown one. */
static const struct dtype_info *
dtype_lookup(const char *name)
{
    size_t i;

    for (i = 0; i < sizeof(dtype_table) / sizeof(dtype_table[0]); i++)
        if (strcmp(dtype_table[i].name, name) == 0)
            return &dtype_table[i];
    return NULL;
}

/*
 * Computes the byte size of a tensor of `bits`-bit elements.  Returns 0,
 * -1 when the size does not fit in 64 bits (or in size_t), or -2 when
 * sub-byte elements do not fill a whole number of bytes.  Any zero
 * dimension makes the size 0 whatever the others are.
 */
static int
tensor_nbytes(const int64_t *shape, int32_t rank, uint32_t bits,
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

/* Formats a shape as "[2, 3]" for messages. */
static const char *
shape_str(const int64_t *shape, int32_t rank, char *buf, size_t len)
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

/* Checks that a NUL-terminated string is well-formed UTF-8. */
static int
utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    uint32_t c, cp;
    int n, i;

    while (*p != 0) {
        c = *p++;
        if (c < 0x80)
            continue;
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        for (i = 0; i < n; i++) {
            /* The terminating NUL fails this test too. */
            if ((*p & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (*p++ & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
    }
    return 1;
}

static int
cmp_entry_name(const void *a, const void *b)
{
    const struct smlp__st_entry *x = a, *y = b;

    return strcmp(x->name, y->name);
}

static int
cmp_str_ptr(const void *a, const void *b)
{
    const char *const *x = a, *const *y = b;

    return strcmp(*x, *y);
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
    info = dtype_lookup(json_string_value(dt));
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
    shape_str(e->shape, e->rank, sbuf, sizeof(sbuf));
    r = tensor_nbytes(e->shape, e->rank, info->bits, &nbytes);
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
    info = dtype_lookup(e->dtype_name);
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
    shape_str(e->shape, e->rank, sbuf, sizeof(sbuf));
    if (tensor_nbytes(e->shape, e->rank, info->bits, &nbytes) != 0)
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
