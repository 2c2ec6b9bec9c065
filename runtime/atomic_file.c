/*
 * atomic_file.c - replacing an output file atomically: a temporary file
 * beside the target, synced and renamed over it; symbolic links followed,
 * devices and FIFOs written in place.  See atomic_file.h for the rules
 * and the messages.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "atomic_file.h"

/* The suffix of temporary files; the X's become random characters. */
#define AF_SUFFIX ".tmp.XXXXXX"
/* Links followed before giving up (Linux's own limit). */
#define AF_MAX_LINKS 40
/* Names tried before giving up on making a temporary file. */
#define AF_MAX_TRIES 100

/* Formats into err (when there is one); returns status. */
int
smlp__fail(char *err, size_t errlen, int status, const char *fmt, ...)
{
    va_list ap;

    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return status;
}

/* The directory part of path ("." for none, "/" for the root), malloc'ed;
 * NULL when out of memory. */
static char *
dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

/* The contents of symbolic link path, malloc'ed; NULL with errno set. */
static char *
read_link(const char *path)
{
    size_t cap = 256;
    char *buf = NULL, *bigger;
    ssize_t n;

    for (;;) {
        bigger = realloc(buf, cap);
        if (bigger == NULL) {
            free(buf);
            errno = ENOMEM;
            return NULL;
        }
        buf = bigger;
        n = readlink(path, buf, cap);
        if (n < 0) {
            free(buf);
            return NULL;
        }
        if ((size_t)n < cap) {
            buf[n] = '\0';
            return buf;
        }
        cap *= 2;
    }
}

/*
 * Follows path's chain of symbolic links to its end: *out (malloc'ed) is
 * the name of the file to write, *st its lstat when *exists.  A name that
 * cannot be lstat'ed counts as absent: creating the file then reports why.
 * Returns SMLP_OK, SMLP_EIO (a link that cannot be read, a loop) or
 * SMLP_ENOMEM.
 */
static int
resolve(const char *path, char **out, struct stat *st, int *exists,
        char *err, size_t errlen)
{
    char *cur, *link, *next;
    const char *slash;
    int hops;

    cur = strdup(path);
    if (cur == NULL)
        return smlp__fail(err, errlen, SMLP_ENOMEM, "%s: out of memory", path);
    for (hops = 0;; hops++) {
        if (lstat(cur, st) != 0) {
            *exists = 0;
            break;
        }
        if (!S_ISLNK(st->st_mode)) {
            *exists = 1;
            break;
        }
        if (hops == AF_MAX_LINKS) {
            free(cur);
            return smlp__fail(err, errlen, SMLP_EIO, "%s: %s", path,
                              strerror(ELOOP));
        }
        link = read_link(cur);
        if (link == NULL) {
            int e = errno;

            free(cur);
            if (e == ENOMEM)
                return smlp__fail(err, errlen, SMLP_ENOMEM,
                                  "%s: out of memory", path);
            return smlp__fail(err, errlen, SMLP_EIO,
                              "%s: cannot read the symbolic link: %s", path,
                              strerror(e));
        }
        /* A relative link is relative to the directory holding it. */
        slash = strrchr(cur, '/');
        if (link[0] == '/' || slash == NULL) {
            next = link;
        } else {
            size_t dlen = (size_t)(slash - cur) + 1;

            next = malloc(dlen + strlen(link) + 1);
            if (next != NULL) {
                memcpy(next, cur, dlen);
                strcpy(next + dlen, link);
            }
            free(link);
        }
        free(cur);
        if (next == NULL)
            return smlp__fail(err, errlen, SMLP_ENOMEM, "%s: out of memory",
                              path);
        cur = next;
    }
    *out = cur;
    return SMLP_OK;
}

/* A 64-bit mix (splitmix64's finaliser). */
static uint64_t
mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

/*
 * Creates tmp (a name ending in AF_SUFFIX) with random characters from
 * tmp[xpos] on, exclusively, with mode 0666: the umask and default ACLs
 * apply, as to any new file (mkstemp's 0600 would need umask(), which
 * is not thread-safe).  Returns the descriptor, or -1 with errno set.
 */
static int
create_tmp(char *tmp, size_t xpos)
{
    static const char chars[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    static uint64_t counter;
    struct timespec ts;
    uint64_t r;
    int tries, i, fd;

    clock_gettime(CLOCK_REALTIME, &ts);
    for (tries = 0; tries < AF_MAX_TRIES; tries++) {
        r = mix64((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec
                  + ((uint64_t)getpid() << 40) +
                  __atomic_add_fetch(&counter, 0x9e3779b97f4a7c15ull,
                                     __ATOMIC_RELAXED));
        for (i = 0; i < 6; i++) {
            tmp[xpos + i] = chars[r % (sizeof(chars) - 1)];
            r /= sizeof(chars) - 1;
        }
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    return -1; /* errno is EEXIST */
}

int
smlp__atomic_file_open(struct smlp__atomic_file *af, const char *path,
                       char *err, size_t errlen)
{
    struct stat st;
    size_t len;
    int exists = 0, rc;

    memset(af, 0, sizeof(*af));
    af->fd = -1;
    if (path == NULL || path[0] == '\0')
        return smlp__fail(err, errlen, SMLP_EINVAL, "empty file name");
    af->path = strdup(path);
    if (af->path == NULL)
        return smlp__fail(err, errlen, SMLP_ENOMEM, "%s: out of memory", path);
    rc = resolve(path, &af->target, &st, &exists, err, errlen);
    if (rc != SMLP_OK)
        goto out_free_path;
    if (exists && S_ISDIR(st.st_mode)) {
        rc = smlp__fail(err, errlen, SMLP_EIO,
                        "%s: is a directory (cannot rename a file over it)",
                        path);
        goto out_free_target;
    }
    if (exists && !S_ISREG(st.st_mode)) {
        /* A device, FIFO or socket: written in place. */
        af->fd = open(af->target, O_WRONLY | O_NOCTTY | O_CLOEXEC);
        if (af->fd < 0) {
            rc = smlp__fail(err, errlen, SMLP_EIO, "%s: cannot open: %s", path,
                            strerror(errno));
            goto out_free_target;
        }
        if (fstat(af->fd, &st) != 0 || S_ISREG(st.st_mode) ||
            S_ISDIR(st.st_mode)) {
            rc = smlp__fail(err, errlen, SMLP_EIO,
                            "%s: replaced by another file while being opened",
                            path);
            goto out_close_fd;
        }
        return SMLP_OK;
    }
    len = strlen(af->target);
    af->tmp = malloc(len + sizeof(AF_SUFFIX));
    if (af->tmp == NULL) {
        rc = smlp__fail(err, errlen, SMLP_ENOMEM, "%s: out of memory", path);
        goto out_free_target;
    }
    memcpy(af->tmp, af->target, len);
    memcpy(af->tmp + len, AF_SUFFIX, sizeof(AF_SUFFIX));
    af->fd = create_tmp(af->tmp, len + sizeof(AF_SUFFIX) - 7);
    if (af->fd < 0) {
        rc = smlp__fail(err, errlen, SMLP_EIO,
                        "%s: cannot create the temporary file %s%s: %s", path,
                        af->target, AF_SUFFIX, strerror(errno));
        goto out_free_tmp;
    }
    /* An existing file keeps its permission bits. */
    if (exists && fchmod(af->fd, st.st_mode & 07777) != 0) {
        rc = smlp__fail(err, errlen, SMLP_EIO,
                        "%s: cannot set the mode of %s: %s", path, af->tmp,
                        strerror(errno));
        goto out_unlink;
    }
    return SMLP_OK;

out_unlink:
    unlink(af->tmp);
out_close_fd:
    close(af->fd);
    af->fd = -1;
out_free_tmp:
    free(af->tmp);
    af->tmp = NULL;
out_free_target:
    free(af->target);
    af->target = NULL;
out_free_path:
    free(af->path);
    af->path = NULL;
    return rc;
}

FILE *
smlp__atomic_file_stream(struct smlp__atomic_file *af, char *err,
                         size_t errlen)
{
    if (af->f == NULL && af->fd >= 0) {
        af->f = fdopen(af->fd, "wb");
        if (af->f == NULL)
            smlp__fail(err, errlen, SMLP_ENOMEM, "%s: %s", af->path,
                       strerror(errno));
    }
    return af->f;
}

/* "PATH: cannot VERB TMP: cause" for a temporary file, "PATH: cannot
 * VERB: cause" in place; e == 0 reads "write error". */
static int
io_fail(const struct smlp__atomic_file *af, const char *verb, int e,
        char *err, size_t errlen)
{
    const char *cause = e != 0 ? strerror(e) : "write error";

    if (af->tmp != NULL)
        return smlp__fail(err, errlen, SMLP_EIO, "%s: cannot %s %s: %s",
                          af->path, verb, af->tmp, cause);
    return smlp__fail(err, errlen, SMLP_EIO, "%s: cannot %s: %s", af->path,
                      verb, cause);
}

int
smlp__atomic_file_write(struct smlp__atomic_file *af, const void *buf,
                        size_t len, char *err, size_t errlen)
{
    const unsigned char *p = buf;
    ssize_t w;

    while (len > 0) {
        w = write(af->fd, p, len > (1u << 30) ? (1u << 30) : len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return io_fail(af, "write", errno, err, errlen);
        if (w == 0)
            return io_fail(af, "write", ENOSPC, err, errlen);
        p += w;
        len -= (size_t)w;
    }
    return SMLP_OK;
}

/* Frees af's names and marks it released. */
static void
release(struct smlp__atomic_file *af)
{
    free(af->path);
    free(af->target);
    free(af->tmp);
    memset(af, 0, sizeof(*af));
    af->fd = -1;
}

void
smlp__atomic_file_abort(struct smlp__atomic_file *af)
{
    if (af->f != NULL)
        fclose(af->f);
    else if (af->fd >= 0)
        close(af->fd);
    if (af->tmp != NULL && af->fd >= 0)
        unlink(af->tmp);
    release(af);
}

/* Makes the rename in the directory of af->target durable.  File systems
 * that cannot sync a directory (EINVAL) are fine. */
static int
sync_dir(const struct smlp__atomic_file *af, char *err, size_t errlen)
{
    char *dir = dir_of(af->target);
    int fd, rc = SMLP_OK;

    if (dir == NULL)
        return smlp__fail(err, errlen, SMLP_ENOMEM, "%s: out of memory",
                          af->path);
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        rc = smlp__fail(
            err, errlen, SMLP_EIO,
            "%s: written, but cannot open its directory to sync it: "
            "%s",
            af->path, strerror(errno));
        goto out_free_dir;
    }
    if (fsync(fd) != 0 && errno != EINVAL)
        rc = smlp__fail(err, errlen, SMLP_EIO,
                        "%s: written, but cannot sync its directory: %s",
                        af->path, strerror(errno));
    close(fd);
out_free_dir:
    free(dir);
    return rc;
}

int
smlp__atomic_file_commit(struct smlp__atomic_file *af, char *err,
                         size_t errlen)
{
    int rc, closed;

    if (af->fd < 0)
        return smlp__fail(err, errlen, SMLP_EIO, "%s: not open",
                          af->path != NULL ? af->path : "(released)");
    if (af->f != NULL) {
        errno = 0;
        if (fflush(af->f) != 0 || ferror(af->f)) {
            rc = io_fail(af, "write", errno, err, errlen);
            goto out_abort;
        }
    }
    /* Devices and FIFOs cannot sync (EINVAL, EROFS): nothing to do. */
    if (fsync(af->fd) != 0 &&
        (af->tmp != NULL || (errno != EINVAL && errno != EROFS))) {
        rc = io_fail(af, "sync", errno, err, errlen);
        goto out_abort;
    }
    closed = af->f != NULL ? fclose(af->f) : close(af->fd);
    af->f = NULL;
    if (closed != 0) {
        rc = io_fail(af, "close", errno, err, errlen);
        goto out_unlink;
    }
    if (af->tmp != NULL && rename(af->tmp, af->target) != 0) {
        if (strcmp(af->target, af->path) == 0)
            rc = smlp__fail(err, errlen, SMLP_EIO,
                            "%s: cannot rename %s over it: %s", af->path,
                            af->tmp, strerror(errno));
        else
            rc = smlp__fail(err, errlen, SMLP_EIO,
                            "%s: cannot rename %s over %s: "
                            "%s",
                            af->path, af->tmp, af->target, strerror(errno));
        goto out_unlink;
    }
    rc = af->tmp != NULL ? sync_dir(af, err, errlen) : SMLP_OK;
    release(af);
    return rc;

out_abort:
    smlp__atomic_file_abort(af);
    return rc;
out_unlink:
    if (af->tmp != NULL)
        unlink(af->tmp);
    release(af);
    return rc;
}

char *
smlp__atomic_file_target(const char *path)
{
    struct stat st;
    char *target = NULL;
    int exists;

    if (path == NULL || path[0] == '\0' ||
        resolve(path, &target, &st, &exists, NULL, 0) != SMLP_OK)
        return NULL;
    return target;
}

int
smlp__atomic_file_check(const char *path, char *err, size_t errlen)
{
    struct stat st;
    char *target = NULL, *dir = NULL;
    const char *base;
    long name_max, path_max;
    size_t blen;
    int exists = 0, rc;

    if (path == NULL || path[0] == '\0')
        return smlp__fail(err, errlen, SMLP_EINVAL, "empty file name");
    rc = resolve(path, &target, &st, &exists, err, errlen);
    if (rc != SMLP_OK)
        return rc;
    if (exists && S_ISDIR(st.st_mode)) {
        rc = smlp__fail(err, errlen, SMLP_EIO,
                        "%s: is a directory (cannot rename a file over it)",
                        path);
        goto out;
    }
    if (exists && !S_ISREG(st.st_mode))
        goto out; /* written in place */
    dir = dir_of(target);
    if (dir == NULL) {
        rc = smlp__fail(err, errlen, SMLP_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        rc = smlp__fail(err, errlen, SMLP_EIO,
                        "%s: cannot create %s: the directory %s does not "
                        "exist", path, target, dir);
        goto out;
    }
    base = strrchr(target, '/');
    base = base != NULL ? base + 1 : target;
    blen = strlen(base) + sizeof(AF_SUFFIX) - 1;
    errno = 0;
    name_max = pathconf(dir, _PC_NAME_MAX);
    path_max = pathconf(dir, _PC_PATH_MAX);
    if (name_max > 0 && blen > (size_t)name_max)
        rc = smlp__fail(err, errlen, SMLP_EIO,
                        "%s: the name is too long: its temporary file "
                        "%s%s would have a name of %zu bytes, over the "
                        "limit of %ld", path, base, AF_SUFFIX, blen,
                        name_max);
    else if (path_max > 0 &&
             strlen(target) + sizeof(AF_SUFFIX) > (size_t)path_max)
        rc = smlp__fail(err, errlen, SMLP_EIO,
                        "%s: the path is too long: its temporary file "
                        "would have a path of %zu bytes, over the limit of "
                        "%ld", path, strlen(target) + sizeof(AF_SUFFIX) - 1,
                        path_max - 1);
out:
    free(dir);
    free(target);
    return rc;
}

int
smlp__atomic_file_fill(const char *path, int (*fill)(FILE *f, void *arg),
                       void *arg, char *err, size_t errlen)
{
    struct smlp__atomic_file af;
    FILE *f;
    int rc;

    rc = smlp__atomic_file_open(&af, path, err, errlen);
    if (rc != SMLP_OK)
        return rc;
    f = smlp__atomic_file_stream(&af, err, errlen);
    if (f == NULL) {
        rc = SMLP_ENOMEM;
        goto out_abort;
    }
    errno = 0;
    if (fill(f, arg) != 0) {
        rc = io_fail(&af, "write", errno, err, errlen);
        goto out_abort;
    }
    return smlp__atomic_file_commit(&af, err, errlen);

out_abort:
    smlp__atomic_file_abort(&af);
    return rc;
}

/* Whether name is base + AF_SUFFIX with its X's made by create_tmp. */
static int
is_tmp_name(const char *name, const char *base, size_t blen)
{
    size_t i, xlen = sizeof(AF_SUFFIX) - 1 - 6; /* ".tmp." */

    if (strlen(name) != blen + sizeof(AF_SUFFIX) - 1 ||
        memcmp(name, base, blen) != 0 ||
        memcmp(name + blen, AF_SUFFIX, xlen) != 0)
        return 0;
    for (i = blen + xlen; name[i] != '\0'; i++)
        if (!((name[i] >= 'A' && name[i] <= 'Z') ||
              (name[i] >= 'a' && name[i] <= 'z') ||
              (name[i] >= '0' && name[i] <= '9')))
            return 0;
    return 1;
}

int
smlp__atomic_file_sweep(const char *path, uint64_t *bytes, char *err,
                        size_t errlen)
{
    struct dirent *de;
    struct stat st;
    char *target, *dir;
    const char *base;
    DIR *d;
    int n = 0, e;

    *bytes = 0;
    target = smlp__atomic_file_target(path);
    if (target == NULL)
        return smlp__fail(err, errlen, -1, "%s: cannot resolve the name",
                          path != NULL ? path : "(null)");
    dir = dir_of(target);
    base = strrchr(target, '/') != NULL ? strrchr(target, '/') + 1 : target;
    if (dir == NULL) {
        free(target);
        return smlp__fail(err, errlen, -1, "%s: out of memory", path);
    }
    d = opendir(dir);
    if (d == NULL) {
        e = errno;
        n = e == ENOENT ? 0
                        : smlp__fail(err, errlen, -1, "%s: cannot read: %s",
                                     dir, strerror(e));
        goto out;
    }
    while ((errno = 0, de = readdir(d)) != NULL) {
        if (!is_tmp_name(de->d_name, base, strlen(base)) ||
            fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISREG(st.st_mode))
            continue;
        if (unlinkat(dirfd(d), de->d_name, 0) != 0) {
            if (errno == ENOENT) /* gone meanwhile */
                continue;
            e = errno;
            n = smlp__fail(err, errlen, -1, "%s/%s: cannot remove: %s", dir,
                           de->d_name, strerror(e));
            break;
        }
        n++;
        *bytes += (uint64_t)st.st_size;
    }
    if (de == NULL && errno != 0)
        n = smlp__fail(err, errlen, -1, "%s: cannot read: %s", dir,
                       strerror(errno));
    closedir(d);
out:
    free(dir);
    free(target);
    return n;
}
