/*
 * train_data.c - Fashion-MNIST for smlp-train: the IDX reader (gzip'd or
 * plain, through zlib), the train and test splits, and the pixel
 * normalisation.  See train_data.h.
 *
 * The IDX format (yann.lecun.com/exdb/mnist): a big-endian header of a
 * magic number 0x00 0x00 TYPE RANK (TYPE 0x08 = unsigned byte), RANK
 * 32-bit dimensions, then the data in row-major order.  Fashion-MNIST's
 * images are idx3 (n, 28, 28) and its labels idx1 (n).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "train_data.h"

/* Largest dimension and data we accept (Fashion-MNIST: 60000 x 28 x 28,
 * 47 MB). */
#define IDX_MAX_DIM (UINT32_C(1) << 24)
#define IDX_MAX_BYTES (UINT64_C(1) << 32)
/* Bytes per gzread call (it takes an unsigned int). */
#define IDX_CHUNK (1u << 20)

static int
file_exists(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0;
}

/* gzerror's message without the "PATH: " that zlib puts first. */
static const char *
gz_msg(const char *path, const char *msg)
{
    size_t n = strlen(path);

    return strncmp(msg, path, n) == 0 && strncmp(msg + n, ": ", 2) == 0
               ? msg + n + 2
               : msg;
}

/* Reads exactly n bytes; returns the bytes read (short at end of data),
 * or -1 after a zlib error (message in err). */
static int64_t
read_full(gzFile f, const char *path, uint8_t *buf, uint64_t n, char *err,
          size_t errlen)
{
    uint64_t done = 0;

    while (done < n) {
        unsigned want = n - done > IDX_CHUNK ? IDX_CHUNK
                                             : (unsigned)(n - done);
        int got = gzread(f, buf + done, want);
        int zerr;

        if (got < 0) {
            const char *msg = gzerror(f, &zerr);

            if (zerr == Z_ERRNO)
                snprintf(err, errlen, "%s: cannot read: %s", path,
                         strerror(errno));
            else
                snprintf(err, errlen, "%s: truncated or corrupt gzip: %s",
                         path, gz_msg(path, msg));
            return -1;
        }
        if (got == 0)
            break;
        done += (uint64_t)got;
    }
    return (int64_t)done;
}

/* After the last read: gzread reports a gzip stream that ends early (a
 * cut-off trailer, so no CRC check either) only through gzerror.  1 with
 * a message when so. */
static int
gz_cut_short(gzFile f, const char *path, char *err, size_t errlen)
{
    int zerr;
    const char *msg = gzerror(f, &zerr);

    if (zerr == Z_OK)
        return 0;
    snprintf(err, errlen, "%s: truncated or corrupt gzip: %s", path,
             gz_msg(path, msg));
    return 1;
}

/* zlib ignores bytes after a gzip stream.  A file of one gzip member
 * ends with the CRC-32 and length of all the data read (head, then
 * data): 1 with a message when its last 8 bytes are something else. */
static int
gz_trailing_data(const char *path, const uint8_t *head, size_t head_len,
                 const uint8_t *data, uint64_t len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    uint8_t t[8];
    uLong crc = crc32(0L, Z_NULL, 0);
    uint64_t off;
    int ok;

    ok = f != NULL && fseek(f, -8, SEEK_END) == 0 && fread(t, 1, 8, f) == 8;
    if (f != NULL)
        fclose(f);
    if (!ok)
        return 0; /* zlib read it a moment ago */
    crc = crc32(crc, head, (uInt)head_len);
    for (off = 0; off < len; off += IDX_CHUNK)
        crc = crc32(crc, data + off,
                    (uInt)(len - off < IDX_CHUNK ? len - off : IDX_CHUNK));
    if (((uint32_t)t[0] | (uint32_t)t[1] << 8 | (uint32_t)t[2] << 16 |
         (uint32_t)t[3] << 24) == (uint32_t)crc &&
        ((uint32_t)t[4] | (uint32_t)t[5] << 8 | (uint32_t)t[6] << 16 |
         (uint32_t)t[7] << 24) == (uint32_t)(head_len + len))
        return 0;
    snprintf(err, errlen, "%s: data after the gzip stream (trailing "
                          "garbage, or more than one gzip member)", path);
    return 1;
}

static uint32_t
be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           (uint32_t)p[3];
}

int
train_idx_read(const char *path, int rank, uint32_t *dims, uint8_t **data,
               char *err, size_t errlen)
{
    char name[4200];
    uint8_t head[4 + 4 * 4], extra;
    uint64_t bytes = 1;
    uint8_t *buf = NULL;
    int64_t got;
    gzFile f;
    int i;

    *data = NULL;
    snprintf(name, sizeof(name), "%s", path);
    if (!file_exists(name)) {
        snprintf(name, sizeof(name), "%s.gz", path);
        if (!file_exists(name)) {
            int e = errno;

            snprintf(err, errlen, "%s: %s", name, strerror(e));
            return e == ENOENT || e == ENOTDIR ? TRAIN_DATA_ENOENT : -1;
        }
    }
    errno = 0;
    f = gzopen(name, "rb");
    if (f == NULL) {
        int e = errno;

        snprintf(err, errlen, "%s: cannot open: %s", name,
                 e ? strerror(e) : "out of memory");
        return e == ENOENT || e == ENOTDIR ? TRAIN_DATA_ENOENT : -1;
    }
    got = read_full(f, name, head, 4, err, errlen);
    if (got < 0)
        goto out_close;
    if (got == 4 && (head[0] != 0 || head[1] != 0 || head[2] != 0x08 ||
                     head[3] != (uint8_t)rank)) {
        snprintf(err, errlen,
                 "%s: not an IDX file of bytes with %d dimension%s: magic "
                 "0x%08x, expected 0x%08x",
                 name, rank, rank == 1 ? "" : "s", (unsigned)be32(head),
                 (unsigned)(0x800 | rank));
        goto out_close;
    }
    if (got == 4) {
        int64_t more = read_full(f, name, head + 4, 4 * (uint64_t)rank, err,
                                 errlen);

        if (more < 0)
            goto out_close;
        got += more;
    }
    if (got < 4 + 4 * rank) {
        snprintf(err, errlen,
                 "%s: truncated: the file ends inside the IDX header (%lld "
                 "of %d bytes)",
                 name, (long long)got, 4 + 4 * rank);
        goto out_close;
    }
    for (i = 0; i < rank; i++) {
        dims[i] = be32(head + 4 + 4 * i);
        if (dims[i] == 0 || dims[i] > IDX_MAX_DIM) {
            snprintf(err, errlen,
                     "%s: dimension %d is %lu, expected 1 to %lu", name, i,
                     (unsigned long)dims[i], (unsigned long)IDX_MAX_DIM);
            goto out_close;
        }
        bytes *= dims[i];
        if (bytes > IDX_MAX_BYTES) {
            snprintf(err, errlen, "%s: the header promises more than %llu "
                                  "bytes of data",
                     name, (unsigned long long)IDX_MAX_BYTES);
            goto out_close;
        }
    }
    buf = malloc(bytes);
    if (buf == NULL) {
        snprintf(err, errlen, "%s: out of memory for %llu bytes", name,
                 (unsigned long long)bytes);
        goto out_close;
    }
    got = read_full(f, name, buf, bytes, err, errlen);
    if (got < 0)
        goto out_free;
    if ((uint64_t)got < bytes && gz_cut_short(f, name, err, errlen))
        goto out_free;
    if ((uint64_t)got < bytes) {
        snprintf(err, errlen,
                 "%s: truncated: the header promises %llu bytes of data, "
                 "the file has %lld",
                 name, (unsigned long long)bytes, (long long)got);
        goto out_free;
    }
    /* The end must follow (this also makes zlib check the CRC, when the
     * trailer is there). */
    got = read_full(f, name, &extra, 1, err, errlen);
    if (got < 0)
        goto out_free;
    if (got != 0) {
        snprintf(err, errlen,
                 "%s: %llu bytes of data expected, the file has more",
                 name, (unsigned long long)bytes);
        goto out_free;
    }
    if (gz_cut_short(f, name, err, errlen) ||
        (!gzdirect(f) && gz_trailing_data(name, head, 4 + 4 * (size_t)rank,
                                          buf, bytes, err, errlen)))
        goto out_free;
    gzclose(f);
    *data = buf;
    return 0;
out_free:
    free(buf);
out_close:
    gzclose(f);
    return -1;
}

/* PATH, or PATH.gz when PATH does not exist: the file train_idx_read
 * read. */
static void
name_read(char *path, size_t len)
{
    size_t n = strlen(path);

    if (!file_exists(path) && n + 4 <= len)
        memcpy(path + n, ".gz", 4);
}

int
train_set_load(struct train_set *set, const char *dir, const char *prefix,
               char *err, size_t errlen)
{
    uint32_t idims[3], ldims[1];
    int64_t i;
    int rc;

    memset(set, 0, sizeof(*set));
    snprintf(set->images_path, sizeof(set->images_path),
             "%s/%s-images-idx3-ubyte", dir, prefix);
    snprintf(set->labels_path, sizeof(set->labels_path),
             "%s/%s-labels-idx1-ubyte", dir, prefix);
    rc = train_idx_read(set->images_path, 3, idims, &set->images, err,
                        errlen);
    if (rc != 0)
        return rc;
    rc = train_idx_read(set->labels_path, 1, ldims, &set->labels, err,
                        errlen);
    if (rc != 0)
        goto out_free;
    /* From here on the paths name the files read. */
    name_read(set->images_path, sizeof(set->images_path));
    name_read(set->labels_path, sizeof(set->labels_path));
    if (ldims[0] != idims[0]) {
        snprintf(err, errlen,
                 "%s: %lu labels for the %lu images of %s",
                 set->labels_path, (unsigned long)ldims[0],
                 (unsigned long)idims[0], set->images_path);
        rc = -1;
        goto out_free;
    }
    set->n = idims[0];
    set->rows = (int)idims[1];
    set->cols = (int)idims[2];
    for (i = 0; i < set->n; i++)
        if (set->labels[i] >= set->classes) {
            set->classes = set->labels[i] + 1;
            set->top_label_at = i;
        }
    return 0;
out_free:
    train_set_free(set);
    return rc;
}

void
train_set_free(struct train_set *set)
{
    free(set->images);
    free(set->labels);
    set->images = NULL;
    set->labels = NULL;
    set->n = 0;
}

void
train_set_limit(struct train_set *set, int64_t n)
{
    if (n > 0 && n < set->n)
        set->n = n;
}

void
train_normalize(const uint8_t *px, float *out, size_t n)
{
    float lut[256];
    size_t i;

    for (i = 0; i < 256; i++)
        lut[i] = ((float)i / 255.0f - TRAIN_FMNIST_MEAN) / TRAIN_FMNIST_STD;
    for (i = 0; i < n; i++)
        out[i] = lut[px[i]];
}

void
train_normalize_unit(float *x, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        x[i] = (x[i] - TRAIN_FMNIST_MEAN) / TRAIN_FMNIST_STD;
}
