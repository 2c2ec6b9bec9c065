/*
 * train_data.c - Fashion-MNIST for smlp-train: the IDX reader (gzip'd or
 * plain, inflated with zlib), the train and test splits, and the pixel
 * normalisation.  See train_data.h.
 *
 * The IDX format (yann.lecun.com/exdb/mnist): a big-endian header of a
 * magic number 0x00 0x00 TYPE RANK (TYPE 0x08 = unsigned byte), RANK
 * 32-bit dimensions, then the data in row-major order.  Fashion-MNIST's
 * images are idx3 (n, 28, 28) and its labels idx1 (n).
 *
 * A gzip file (RFC 1952) is one or more members, one after another
 * (`cat a.gz b.gz`); its data are the members' data concatenated.  The
 * reader inflates member after member itself rather than through gzread,
 * which ignores bytes after a member that are not a gzip header and
 * says little about a file cut short: here every member must end with
 * its trailer (inflate checks its CRC-32 and length) and the file must
 * end right after the last one.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "train_data.h"

/* Largest dimension and data we accept (Fashion-MNIST: 60000 x 28 x 28,
 * 47 MB). */
#define IDX_MAX_DIM (UINT32_C(1) << 24)
#define IDX_MAX_BYTES (UINT64_C(1) << 32)
/* Bytes inflated per call (avail_out is an unsigned int). */
#define IDX_CHUNK (1u << 20)
/* Bytes read from the file at a time. */
#define IDX_IN_BYTES (1u << 16)

/* An IDX file being read: its bytes as they are, or inflated when it
 * begins with gzip's magic number (as gzread decides). */
struct idx_in {
    FILE *f;
    const char *path;
    uint8_t *buf;      /* IDX_IN_BYTES; zs.next_in, zs.avail_in: unread */
    z_stream zs;
    uint64_t read;     /* bytes read from f into buf */
    int eof;           /* f has no more */
    int gz;            /* gzip members, zs initialised */
    int in_member;     /* a member begun, its trailer not yet read */
    int members;       /* members begun */
};

static int
file_exists(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0;
}

/* Makes `want` (<= IDX_IN_BYTES) unread bytes available, fewer only at
 * the end of the file.  0, or -1 after a read error (message in err). */
static int
idx_in_fill(struct idx_in *in, unsigned want, char *err, size_t errlen)
{
    while (in->zs.avail_in < want && !in->eof) {
        size_t got;

        memmove(in->buf, in->zs.next_in, in->zs.avail_in);
        in->zs.next_in = in->buf;
        got = fread(in->buf + in->zs.avail_in, 1,
                    IDX_IN_BYTES - in->zs.avail_in, in->f);
        if (ferror(in->f)) {
            snprintf(err, errlen, "%s: cannot read: %s", in->path,
                     strerror(errno));
            return -1;
        }
        in->eof = feof(in->f);
        in->zs.avail_in += (uInt)got;
        in->read += got;
    }
    return 0;
}

static void
idx_in_close(struct idx_in *in)
{
    if (in->gz)
        inflateEnd(&in->zs);
    free(in->buf);
    if (in->f != NULL)
        fclose(in->f);
}

/* Opens path (which exists) for idx_in_read.  0, -1 or
 * TRAIN_DATA_ENOENT with a message; closed on failure. */
static int
idx_in_open(struct idx_in *in, const char *path, char *err, size_t errlen)
{
    struct stat st;
    int e, fd;

    memset(in, 0, sizeof(*in));
    in->path = path;
    /* O_NONBLOCK: a FIFO must not wait for a writer; a regular file
     * ignores it. */
    fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        e = errno;
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(e));
        return e == ENOENT || e == ENOTDIR ? TRAIN_DATA_ENOENT : -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        e = errno;
        snprintf(err, errlen, "%s: %s", path,
                 fstat(fd, &st) != 0   ? strerror(e)
                 : S_ISDIR(st.st_mode) ? "is a directory, not a file"
                                       : "not a regular file (a FIFO or "
                                         "device is not read)");
        close(fd);
        return -1;
    }
    in->f = fdopen(fd, "rb");
    if (in->f == NULL) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    in->buf = malloc(IDX_IN_BYTES);
    if (in->buf == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto out_close;
    }
    in->zs.next_in = in->buf;
    if (idx_in_fill(in, 2, err, errlen) != 0)
        goto out_close;
    if (in->zs.avail_in < 2 || in->buf[0] != 0x1f || in->buf[1] != 0x8b)
        return 0; /* not gzip: the bytes as they are */
    if (inflateInit2(&in->zs, 16 + MAX_WBITS) != Z_OK) {
        snprintf(err, errlen, "%s: out of memory for zlib", path);
        goto out_close;
    }
    in->gz = 1;
    return 0;
out_close:
    idx_in_close(in);
    return -1;
}

/* Inflates into out[0..n) (n <= IDX_CHUNK) from the member begun;
 * returns the bytes made, or -1 with a message when the member is
 * corrupt or the file ends inside it. */
static int64_t
idx_in_inflate(struct idx_in *in, uint8_t *out, unsigned n, char *err,
               size_t errlen)
{
    int ret;

    in->zs.next_out = out;
    in->zs.avail_out = n;
    ret = inflate(&in->zs, Z_NO_FLUSH);
    if (ret == Z_STREAM_END)
        in->in_member = 0; /* its CRC-32 and length are right */
    else if (ret == Z_BUF_ERROR) /* no input left: idx_in_fill's eof */
        snprintf(err, errlen, "%s: truncated or corrupt gzip: the file "
                              "ends inside gzip member %d (its data or "
                              "its trailer)", in->path, in->members);
    else if (ret != Z_OK)
        snprintf(err, errlen, "%s: truncated or corrupt gzip: %s in gzip "
                              "member %d", in->path,
                 ret == Z_MEM_ERROR ? "out of memory"
                 : in->zs.msg != NULL ? in->zs.msg : "corrupt data",
                 in->members);
    return ret == Z_OK || ret == Z_STREAM_END ? (int64_t)(n - in->zs.avail_out)
                                              : -1;
}

/* Reads n bytes of data into out; returns the bytes read (fewer only at
 * the end of the data, after whole gzip members), or -1 with a message
 * on a read error, a corrupt or cut-off member, or bytes after the last
 * member that are not a gzip member. */
static int64_t
idx_in_read(struct idx_in *in, uint8_t *out, uint64_t n, char *err,
            size_t errlen)
{
    uint64_t done = 0;

    while (done < n) {
        unsigned want = n - done > IDX_CHUNK ? IDX_CHUNK
                                             : (unsigned)(n - done);
        int64_t got;

        if (idx_in_fill(in, in->gz && !in->in_member ? 2 : 1, err,
                        errlen) != 0)
            return -1;
        if (!in->gz) {
            got = in->zs.avail_in < want ? in->zs.avail_in : want;
            if (got == 0)
                break;
            memcpy(out + done, in->zs.next_in, (size_t)got);
            in->zs.next_in += got;
            in->zs.avail_in -= (uInt)got;
            done += (uint64_t)got;
            continue;
        }
        if (!in->in_member) {
            const uint8_t *p = in->zs.next_in;

            if (in->zs.avail_in == 0)
                break; /* the end, right after a member's trailer */
            if (in->zs.avail_in < 2 || p[0] != 0x1f || p[1] != 0x8b) {
                snprintf(err, errlen, "%s: data after the gzip stream "
                                      "(trailing garbage at byte %llu, "
                                      "after gzip member %d)", in->path,
                         (unsigned long long)(in->read - in->zs.avail_in),
                         in->members);
                return -1;
            }
            if (inflateReset(&in->zs) != Z_OK) {
                snprintf(err, errlen, "%s: zlib cannot start gzip member "
                                      "%d", in->path, in->members + 1);
                return -1;
            }
            in->in_member = 1;
            in->members++;
        }
        got = idx_in_inflate(in, out + done, want, err, errlen);
        if (got < 0)
            return -1;
        done += (uint64_t)got;
    }
    return (int64_t)done;
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
    struct idx_in in;
    int64_t got;
    int i, rc;

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
    rc = idx_in_open(&in, name, err, errlen);
    if (rc != 0)
        return rc;
    got = idx_in_read(&in, head, 4, err, errlen);
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
        int64_t more = idx_in_read(&in, head + 4, 4 * (uint64_t)rank, err,
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
    got = idx_in_read(&in, buf, bytes, err, errlen);
    if (got < 0)
        goto out_free;
    if ((uint64_t)got < bytes) {
        snprintf(err, errlen,
                 "%s: truncated: the header promises %llu bytes of data, "
                 "the file has %lld",
                 name, (unsigned long long)bytes, (long long)got);
        goto out_free;
    }
    /* The end must follow: this also reads the last member's trailer
     * when the data filled buf first. */
    got = idx_in_read(&in, &extra, 1, err, errlen);
    if (got < 0)
        goto out_free;
    if (got != 0) {
        snprintf(err, errlen,
                 "%s: %llu bytes of data expected, the file has more",
                 name, (unsigned long long)bytes);
        goto out_free;
    }
    idx_in_close(&in);
    *data = buf;
    return 0;
out_free:
    free(buf);
out_close:
    idx_in_close(&in);
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
