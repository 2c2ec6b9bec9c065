/*
 * check_atomic_file.c - tests of the atomic writer every output file goes
 * through (runtime/atomic_file.c): new and kept modes, symbolic links
 * (chains, relative links, dangling links, loops), a FIFO, /dev/null and
 * /dev/full written in place, and the failures (empty name, directory,
 * missing directory, socket, a failing writer, a file size limit), each
 * leaving the target as it was and no temporary file behind; and the
 * sweep of the temporary files that killed writers left.
 */
#include <check.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "atomic_file.h"
#include "testutil.h"

/* One scratch directory per TCase, made before its tests fork. */
static char tmpdir[64];
/* The error text of the last call. */
static char errbuf[1024];

static void
setup_dir(void)
{
    tu_scratch_make(tmpdir, sizeof(tmpdir), "af");
}

static void
teardown_dir(void)
{
    tu_scratch_remove(tmpdir);
}

/* tmpdir/name into buf. */
static const char *
tpath(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", tmpdir, name);
    return buf;
}

static void
write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");

    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fputs(text, f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
}

/* The whole of path as a string (static buffer). */
static const char *
read_text(const char *path)
{
    static char buf[4096];
    size_t n;
    FILE *f = fopen(path, "rb");

    ck_assert_msg(f != NULL, "cannot open %s", path);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static mode_t
mode_of(const char *path)
{
    struct stat st;

    ck_assert_int_eq(stat(path, &st), 0);
    return st.st_mode & 07777;
}

static int
is_link(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0 && S_ISLNK(st.st_mode);
}

/* A writer for smlp__atomic_file_fill: prints the string arg. */
static int
fill_text(FILE *f, void *arg)
{
    return fputs(arg, f) < 0 ? -1 : 0;
}

/* A writer that prints a little, then fails with EDOM. */
static int
fill_fail(FILE *f, void *arg)
{
    (void)arg;
    fputs("partial", f);
    errno = EDOM;
    return -1;
}

#define assert_err(rc, want, sub)                                            \
    do {                                                                     \
        ck_assert_int_eq((rc), (want));                                      \
        ck_assert_msg(strstr(errbuf, (sub)) != NULL,                         \
                      "message '%s' lacks '%s'", errbuf, (sub));             \
    } while (0)

/* ---- Regular files. ---- */

START_TEST(test_atomic_file_fill_new_mode)
{
    char p[256];

    umask(027);
    tpath(p, sizeof(p), "new.txt");
    ck_assert_int_eq(smlp__atomic_file_fill(p, fill_text, "hello\n", errbuf,
                                            sizeof(errbuf)),
                     SMLP_OK);
    ck_assert_str_eq(read_text(p), "hello\n");
    ck_assert_int_eq(mode_of(p), 0640);
    umask(0);
    tpath(p, sizeof(p), "new0.txt");
    ck_assert_int_eq(smlp__atomic_file_fill(p, fill_text, "x", errbuf,
                                            sizeof(errbuf)),
                     SMLP_OK);
    ck_assert_int_eq(mode_of(p), 0666);
    umask(022);
    ck_assert_int_eq(tu_count_tmp_files(tmpdir), 0);
}
END_TEST

START_TEST(test_atomic_file_fill_kept_mode)
{
    char p[256];

    tpath(p, sizeof(p), "kept.txt");
    write_text(p, "old");
    ck_assert_int_eq(chmod(p, 0604), 0);
    ck_assert_int_eq(smlp__atomic_file_fill(p, fill_text, "new", errbuf,
                                            sizeof(errbuf)),
                     SMLP_OK);
    ck_assert_str_eq(read_text(p), "new");
    ck_assert_int_eq(mode_of(p), 0604);
    ck_assert_int_eq(tu_count_tmp_files(tmpdir), 0);
}
END_TEST

START_TEST(test_atomic_file_write_raw)
{
    struct smlp__atomic_file af;
    char p[256];

    tpath(p, sizeof(p), "raw.bin");
    write_text(p, "previous contents");
    ck_assert_int_eq(smlp__atomic_file_open(&af, p, errbuf, sizeof(errbuf)),
                     SMLP_OK);
    ck_assert_ptr_nonnull(af.tmp);
    ck_assert_int_eq(smlp__atomic_file_write(&af, "ab", 2, errbuf,
                                             sizeof(errbuf)),
                     SMLP_OK);
    ck_assert_int_eq(smlp__atomic_file_write(&af, "cd", 2, errbuf,
                                             sizeof(errbuf)),
                     SMLP_OK);
    /* Not replaced before the commit. */
    ck_assert_str_eq(read_text(p), "previous contents");
    ck_assert_int_eq(tu_count_tmp_files(tmpdir), 1);
    ck_assert_int_eq(smlp__atomic_file_commit(&af, errbuf, sizeof(errbuf)),
                     SMLP_OK);
    ck_assert_str_eq(read_text(p), "abcd");
    ck_assert_int_eq(af.fd, -1);
    smlp__atomic_file_abort(&af); /* a no-op once released */
    ck_assert_str_eq(read_text(p), "abcd");
    ck_assert_int_eq(tu_count_tmp_files(tmpdir), 0);
}
END_TEST

START_TEST(test_atomic_file_abort_keeps_target)
{
    struct smlp__atomic_file af;
    FILE *f;
    char p[256];

    tpath(p, sizeof(p), "aborted.txt");
    write_text(p, "old");
    ck_assert_int_eq(smlp__atomic_file_open(&af, p, errbuf, sizeof(errbuf)),
                     SMLP_OK);
    f = smlp__atomic_file_stream(&af, errbuf, sizeof(errbuf));
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_eq(smlp__atomic_file_stream(&af, errbuf, sizeof(errbuf)),
                     f);
    fputs("new", f);
    smlp__atomic_file_abort(&af);
    smlp__atomic_file_abort(&af);
    ck_assert_str_eq(read_text(p), "old");
    ck_assert_int_eq(tu_count_tmp_files(tmpdir), 0);
}
END_TEST

/* ---- Symbolic links. ---- */

START_TEST(test_atomic_file_fill_symlink_chain)
{
    char t[256], l1[256], l2[256], buf[256];
    ssize_t n;

    tpath(t, sizeof(t), "target.txt");
    tpath(l1, sizeof(l1), "link1.txt");
    tpath(l2, sizeof(l2), "link2.txt");
    write_text(t, "old");
    ck_assert_int_eq(chmod(t, 0600), 0);
    ck_assert_int_eq(symlink("target.txt", l1), 0); /* relative */
    ck_assert_int_eq(symlink(l1, l2), 0);           /* absolute */
    ck_assert_int_eq(smlp__atomic_file_fill(l2, fill_text, "new", errbuf,
                                            sizeof(errbuf)),
                     SMLP_OK);
    ck_assert(is_link(l1));
    ck_assert(is_link(l2));
    n = readlink(l1, buf, sizeof(buf) - 1);
    ck_assert_int_eq(n, (ssize_t)strlen("target.txt"));
    ck_assert_str_eq(read_text(t), "new");
    ck_assert_int_eq(mode_of(t), 0600);
    ck_assert_int_eq(tu_count_tmp_files(tmpdir), 0);
}
END_TEST

/* A relative link to another directory: the temporary file is made in
 * the target's directory (a rename cannot cross file systems). */
START_TEST(test_atomic_file_fill_symlink_other_dir)
{
    char d1[256], d2[256], link[256], t[256];

    tpath(d1, sizeof(d1), "d1");
    tpath(d2, sizeof(d2), "d2");
    ck_assert_int_eq(mkdir(d1, 0755), 0);
    ck_assert_int_eq(mkdir(d2, 0755), 0);
    tpath(link, sizeof(link), "d1/out.json");
    tpath(t, sizeof(t), "d2/real.json");
    write_text(t, "{}");
    ck_assert_int_eq(symlink("../d2/real.json", link), 0);
    ck_assert_int_eq(smlp__atomic_file_fill(link, fill_text, "[1]", errbuf,
                                            sizeof(errbuf)),
                     SMLP_OK);
    ck_assert(is_link(link));
    ck_assert_str_eq(read_text(t), "[1]");
    ck_assert_int_eq(tu_count_tmp_files(d1), 0);
    ck_assert_int_eq(tu_count_tmp_files(d2), 0);
}
END_TEST

START_TEST(test_atomic_file_fill_symlink_dangling)
{
    char link[256], t[256];

    umask(022);
    tpath(link, sizeof(link), "dangling.csv");
    tpath(t, sizeof(t), "created.csv");
    ck_assert_int_eq(symlink("created.csv", link), 0);
    ck_assert_int_eq(smlp__atomic_file_fill(link, fill_text, "a,b\n", errbuf,
                                            sizeof(errbuf)),
                     SMLP_OK);
    ck_assert(is_link(link));
    ck_assert(!is_link(t));
    ck_assert_str_eq(read_text(t), "a,b\n");
    ck_assert_int_eq(mode_of(t), 0644);
    ck_assert_int_eq(tu_count_tmp_files(tmpdir), 0);
}
END_TEST

START_TEST(test_atomic_file_open_symlink_loop)
{
    struct smlp__atomic_file af;
    char a[256], b[256];

    tpath(a, sizeof(a), "loop_a");
    tpath(b, sizeof(b), "loop_b");
    ck_assert_int_eq(symlink("loop_b", a), 0);
    ck_assert_int_eq(symlink("loop_a", b), 0);
    assert_err(smlp__atomic_file_open(&af, a, errbuf, sizeof(errbuf)),
               SMLP_EIO, strerror(ELOOP));
    ck_assert(strncmp(errbuf, a, strlen(a)) == 0);
    smlp__atomic_file_abort(&af);
    ck_assert(is_link(a));
    ck_assert(is_link(b));
    ck_assert_int_eq(tu_count_tmp_files(tmpdir), 0);
}
END_TEST

START_TEST(test_atomic_file_open_symlink_to_directory)
{
    struct smlp__atomic_file af;
    char d[256], link[256];

    tpath(d, sizeof(d), "a_dir");
    tpath(link, sizeof(link), "dir_link");
    ck_assert_int_eq(mkdir(d, 0755), 0);
    ck_assert_int_eq(symlink("a_dir", link), 0);
    assert_err(smlp__atomic_file_open(&af, link, errbuf, sizeof(errbuf)),
               SMLP_EIO, "is a directory");
    ck_assert(is_link(link));
    ck_assert_int_eq(tu_count_tmp_files(tmpdir), 0);
    ck_assert_int_eq(tu_count_tmp_files(d), 0);
}
END_TEST

/* ---- Devices, FIFOs and sockets: written in place. ---- */

struct fifo_reader {
    const char *path;
    char buf[256];
    size_t len;
};

static void *
read_fifo(void *arg)
{
    struct fifo_reader *r = arg;
    ssize_t n;
    int fd = open(r->path, O_RDONLY);

    if (fd < 0)
        return NULL;
    while (r->len < sizeof(r->buf) - 1 &&
           (n = read(fd, r->buf + r->len, sizeof(r->buf) - 1 - r->len)) > 0)
        r->len += (size_t)n;
    r->buf[r->len] = '\0';
    close(fd);
    return NULL;
}

START_TEST(test_atomic_file_fill_fifo)
{
    struct fifo_reader r;
    struct stat st;
    pthread_t th;
    char p[256];

    tpath(p, sizeof(p), "trace.fifo");
    ck_assert_int_eq(mkfifo(p, 0600), 0);
    memset(&r, 0, sizeof(r));
    r.path = p;
    ck_assert_int_eq(pthread_create(&th, NULL, read_fifo, &r), 0);
    ck_assert_int_eq(smlp__atomic_file_fill(p, fill_text, "through a fifo",
                                            errbuf, sizeof(errbuf)),
                     SMLP_OK);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_str_eq(r.buf, "through a fifo");
    ck_assert_int_eq(lstat(p, &st), 0);
    ck_assert(S_ISFIFO(st.st_mode));
    ck_assert_int_eq(tu_count_tmp_files(tmpdir), 0);
}
END_TEST

/*
 * Opens a device in place, asserting that it is not to be replaced: the
 * tests below use the system's own devices, so a writer that would rename
 * over them stops here instead.
 */
static void
open_in_place(struct smlp__atomic_file *af, const char *path)
{
    ck_assert_int_eq(smlp__atomic_file_open(af, path, errbuf,
                                            sizeof(errbuf)),
                     SMLP_OK);
    if (af->tmp != NULL) {
        smlp__atomic_file_abort(af);
        ck_abort_msg("%s would be replaced by a regular file", path);
    }
}

/* A character device with the numbers of `like`, still one. */
static void
assert_same_device(const char *path, const struct stat *like)
{
    struct stat st;

    ck_assert_int_eq(lstat(path, &st), 0);
    ck_assert(S_ISCHR(st.st_mode));
    ck_assert(st.st_rdev == like->st_rdev);
    ck_assert(st.st_ino == like->st_ino);
}

START_TEST(test_atomic_file_write_dev_full)
{
    struct smlp__atomic_file af;
    struct stat before;

    if (stat("/dev/full", &before) != 0 || !S_ISCHR(before.st_mode)) {
        fprintf(stderr, "# /dev/full is absent: skipped\n");
        return;
    }
    /* Raw writes fail at once. */
    open_in_place(&af, "/dev/full");
    assert_err(smlp__atomic_file_write(&af, "x", 1, errbuf, sizeof(errbuf)),
               SMLP_EIO, "/dev/full: cannot write: ");
    ck_assert(strstr(errbuf, strerror(ENOSPC)) != NULL);
    smlp__atomic_file_abort(&af);
    /* Buffered writes fail at the commit. */
    open_in_place(&af, "/dev/full");
    ck_assert_ptr_nonnull(smlp__atomic_file_stream(&af, errbuf,
                                                   sizeof(errbuf)));
    fputs("x", af.f);
    assert_err(smlp__atomic_file_commit(&af, errbuf, sizeof(errbuf)),
               SMLP_EIO, "/dev/full: cannot write: ");
    ck_assert(strstr(errbuf, strerror(ENOSPC)) != NULL);
    /* And so through the one-call form. */
    assert_err(smlp__atomic_file_fill("/dev/full", fill_text, "x", errbuf,
                                      sizeof(errbuf)),
               SMLP_EIO, strerror(ENOSPC));
    assert_same_device("/dev/full", &before);
}
END_TEST

START_TEST(test_atomic_file_write_dev_null)
{
    struct smlp__atomic_file af;
    struct stat before;
    char link[256];

    ck_assert_int_eq(stat("/dev/null", &before), 0);
    ck_assert(S_ISCHR(before.st_mode));
    open_in_place(&af, "/dev/null");
    ck_assert_int_eq(smlp__atomic_file_write(&af, "x", 1, errbuf,
                                             sizeof(errbuf)),
                     SMLP_OK);
    ck_assert_int_eq(smlp__atomic_file_commit(&af, errbuf, sizeof(errbuf)),
                     SMLP_OK);
    ck_assert_int_eq(smlp__atomic_file_fill("/dev/null", fill_text, "x",
                                            errbuf, sizeof(errbuf)),
                     SMLP_OK);
    assert_same_device("/dev/null", &before);
    /* Through a link: the device is written, the link kept. */
    tpath(link, sizeof(link), "null_link");
    ck_assert_int_eq(symlink("/dev/null", link), 0);
    open_in_place(&af, link);
    smlp__atomic_file_abort(&af);
    ck_assert_int_eq(smlp__atomic_file_fill(link, fill_text, "x", errbuf,
                                            sizeof(errbuf)),
                     SMLP_OK);
    ck_assert(is_link(link));
    assert_same_device("/dev/null", &before);
    ck_assert_int_eq(tu_count_tmp_files(tmpdir), 0);
}
END_TEST

START_TEST(test_atomic_file_open_socket)
{
    struct smlp__atomic_file af;
    struct sockaddr_un sa;
    struct stat st;
    int s;

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    ck_assert_int_lt(snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/sock",
                              tmpdir),
                     (int)sizeof(sa.sun_path));
    s = socket(AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_ge(s, 0);
    ck_assert_int_eq(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_err(smlp__atomic_file_open(&af, sa.sun_path, errbuf,
                                      sizeof(errbuf)),
               SMLP_EIO, "cannot open");
    ck_assert_int_eq(lstat(sa.sun_path, &st), 0);
    ck_assert(S_ISSOCK(st.st_mode));
    ck_assert_int_eq(tu_count_tmp_files(tmpdir), 0);
    close(s);
}
END_TEST

/* ---- Failures. ---- */

START_TEST(test_atomic_file_open_empty_name)
{
    struct smlp__atomic_file af;

    assert_err(smlp__atomic_file_open(&af, "", errbuf, sizeof(errbuf)),
               SMLP_EINVAL, "empty file name");
    ck_assert_int_eq(af.fd, -1);
    smlp__atomic_file_abort(&af);
    assert_err(smlp__atomic_file_fill("", fill_text, "x", errbuf,
                                      sizeof(errbuf)),
               SMLP_EINVAL, "empty file name");
}
END_TEST

START_TEST(test_atomic_file_open_directory)
{
    struct smlp__atomic_file af;
    struct stat st;
    char d[256];

    tpath(d, sizeof(d), "outdir");
    ck_assert_int_eq(mkdir(d, 0755), 0);
    assert_err(smlp__atomic_file_open(&af, d, errbuf, sizeof(errbuf)),
               SMLP_EIO, "is a directory");
    ck_assert(strncmp(errbuf, d, strlen(d)) == 0);
    assert_err(smlp__atomic_file_fill(d, fill_text, "x", errbuf,
                                      sizeof(errbuf)),
               SMLP_EIO, "is a directory");
    ck_assert_int_eq(stat(d, &st), 0);
    ck_assert(S_ISDIR(st.st_mode));
    ck_assert_int_eq(tu_count_tmp_files(tmpdir), 0);
    ck_assert_int_eq(tu_count_tmp_files(d), 0);
}
END_TEST

START_TEST(test_atomic_file_open_no_directory)
{
    char p[256];

    tpath(p, sizeof(p), "no/such/dir/x.json");
    assert_err(smlp__atomic_file_fill(p, fill_text, "x", errbuf,
                                      sizeof(errbuf)),
               SMLP_EIO, "cannot create the temporary file");
    ck_assert(strstr(errbuf, strerror(ENOENT)) != NULL);
    ck_assert(strncmp(errbuf, p, strlen(p)) == 0);
    ck_assert_int_eq(tu_count_tmp_files(tmpdir), 0);
}
END_TEST

START_TEST(test_atomic_file_fill_writer_fails)
{
    char p[256];

    tpath(p, sizeof(p), "kept_on_failure.txt");
    write_text(p, "old");
    assert_err(smlp__atomic_file_fill(p, fill_fail, NULL, errbuf,
                                      sizeof(errbuf)),
               SMLP_EIO, strerror(EDOM));
    ck_assert(strncmp(errbuf, p, strlen(p)) == 0);
    ck_assert_str_eq(read_text(p), "old");
    ck_assert_int_eq(tu_count_tmp_files(tmpdir), 0);
}
END_TEST

/* A file size limit (binding root too) fails the write, raw or through
 * the stream at the commit. */
START_TEST(test_atomic_file_write_too_large)
{
    struct smlp__atomic_file af;
    struct rlimit rl;
    char p[256], big[4096];

    tpath(p, sizeof(p), "limited.bin");
    write_text(p, "old");
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    signal(SIGXFSZ, SIG_IGN);
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &rl), 0);
    rl.rlim_cur = 16;
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    ck_assert_int_eq(smlp__atomic_file_open(&af, p, errbuf, sizeof(errbuf)),
                     SMLP_OK);
    assert_err(smlp__atomic_file_write(&af, big, sizeof(big), errbuf,
                                       sizeof(errbuf)),
               SMLP_EIO, "cannot write");
    ck_assert(strstr(errbuf, af.tmp) != NULL);
    smlp__atomic_file_abort(&af);
    assert_err(smlp__atomic_file_fill(p, fill_text, big, errbuf,
                                      sizeof(errbuf)),
               SMLP_EIO, "cannot write");
    rl.rlim_cur = rl.rlim_max;
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    ck_assert_str_eq(read_text(p), "old");
    ck_assert_int_eq(tu_count_tmp_files(tmpdir), 0);
}
END_TEST

/* ---- The temporary name, failed commits and what messages name ---- */

/* The temporary file is the target's name + ".tmp." + 6 random letters
 * or digits, in the target's directory (tu_count_tmp_files and any
 * cleanup of stale files look for ".tmp."). */
START_TEST(test_atomic_file_tmp_name)
{
    struct smlp__atomic_file af;
    struct stat st;
    char p[256];
    size_t len, i;

    tpath(p, sizeof(p), "named.txt");
    len = strlen(p);
    ck_assert_int_eq(smlp__atomic_file_open(&af, p, errbuf, sizeof(errbuf)),
                     SMLP_OK);
    ck_assert_ptr_nonnull(af.tmp);
    ck_assert_uint_eq(strlen(af.tmp), len + 11);
    ck_assert(strncmp(af.tmp, p, len) == 0);
    ck_assert_msg(strncmp(af.tmp + len, ".tmp.", 5) == 0, "%s", af.tmp);
    for (i = len + 5; i < len + 11; i++)
        ck_assert_msg(isalnum((unsigned char)af.tmp[i]), "%s", af.tmp);
    ck_assert_int_eq(stat(af.tmp, &st), 0);
    ck_assert(S_ISREG(st.st_mode));
    smlp__atomic_file_abort(&af);
    ck_assert_int_eq(tu_count_tmp_files(tmpdir), 0);
}
END_TEST

/*
 * A rename that fails at the commit (the target became a directory after
 * the open: rename(2) gives EISDIR) is an error naming the target and the
 * temporary file, which is removed.  The message says "over it" when the
 * target is the name given, "over TARGET" when a link led there.
 */
START_TEST(test_atomic_file_commit_rename_fails)
{
    struct smlp__atomic_file af;
    char p[256], t[256], l[256], want[600];

    tpath(p, sizeof(p), "became_dir");
    write_text(p, "old");
    ck_assert_int_eq(smlp__atomic_file_open(&af, p, errbuf, sizeof(errbuf)),
                     SMLP_OK);
    ck_assert_int_eq(smlp__atomic_file_write(&af, "new", 3, errbuf,
                                             sizeof(errbuf)),
                     SMLP_OK);
    ck_assert_int_eq(unlink(p), 0);
    ck_assert_int_eq(mkdir(p, 0755), 0);
    snprintf(want, sizeof(want), "%s: cannot rename %s over it: %s", p,
             af.tmp, strerror(EISDIR));
    assert_err(smlp__atomic_file_commit(&af, errbuf, sizeof(errbuf)),
               SMLP_EIO, want);
    ck_assert_int_eq(tu_count_tmp_files(tmpdir), 0);
    ck_assert_int_eq(af.fd, -1);

    /* Through a link: the message names the link and its target. */
    tpath(t, sizeof(t), "link_target");
    tpath(l, sizeof(l), "link");
    write_text(t, "old");
    ck_assert_int_eq(symlink("link_target", l), 0);
    ck_assert_int_eq(smlp__atomic_file_open(&af, l, errbuf, sizeof(errbuf)),
                     SMLP_OK);
    ck_assert_int_eq(unlink(t), 0);
    ck_assert_int_eq(mkdir(t, 0755), 0);
    snprintf(want, sizeof(want), "%s: cannot rename %s over %s: %s", l,
             af.tmp, t, strerror(EISDIR));
    assert_err(smlp__atomic_file_commit(&af, errbuf, sizeof(errbuf)),
               SMLP_EIO, want);
    ck_assert_int_eq(tu_count_tmp_files(tmpdir), 0);
    ck_assert(is_link(l));
}
END_TEST

/* A write error names the target first, then the temporary file it could
 * not write ("PATH: cannot write TMP: cause"): a file size limit of 16
 * bytes for 64 (SIGXFSZ ignored, so write(2) fails with EFBIG). */
START_TEST(test_atomic_file_write_error_message)
{
    struct smlp__atomic_file af;
    struct rlimit rl;
    char p[256], want[600], big[64];
    int rc;

    tpath(p, sizeof(p), "msg.bin");
    memset(big, 'y', sizeof(big));
    signal(SIGXFSZ, SIG_IGN);
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &rl), 0);
    rl.rlim_cur = 16;
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    ck_assert_int_eq(smlp__atomic_file_open(&af, p, errbuf, sizeof(errbuf)),
                     SMLP_OK);
    snprintf(want, sizeof(want), "%s: cannot write %s: %s", p, af.tmp,
             strerror(EFBIG));
    rc = smlp__atomic_file_write(&af, big, sizeof(big), errbuf,
                                 sizeof(errbuf));
    smlp__atomic_file_abort(&af);
    /* The limit goes before any assertion: Check's report is a file. */
    rl.rlim_cur = rl.rlim_max;
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    assert_err(rc, SMLP_EIO, want);
    ck_assert_int_eq(tu_count_tmp_files(tmpdir), 0);
    ck_assert_int_eq(access(p, F_OK), -1);
}
END_TEST

/* ---- Sweeping what killed writers left ---- */

static int
exists(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0;
}

/*
 * smlp__atomic_file_sweep removes exactly the regular files a writer of
 * the path would have made (TARGET.tmp. + 6 of [A-Za-z0-9], as
 * test_atomic_file_tmp_name pins): their number and total size are the
 * files planted here.  Names one character short or long, with a
 * character create_tmp never makes, of another target whose name has
 * this one as a prefix, a directory and a link of the right name, and
 * the target itself stay.
 */
START_TEST(test_atomic_file_sweep_removes_only_tmp_files)
{
    static const char *const stale[] = {"ck.st.tmp.Ab12Cd", "ck.st.tmp.zzzzzz",
                                        "ck.st.tmp.000000"};
    static const char *const kept[] = {
        "ck.st", "ck.st.tmp.Ab12C", "ck.st.tmp.Ab12Cd7", "ck.st.tmp.Ab-2Cd",
        "ck.st.tmp.Ab.2Cd", "ck.st2.tmp.Ab12Cd", "ck.st.tmpxAb12Cd",
        "xck.st.tmp.Ab12Cd", "ck.st.lock"};
    char p[256], q[256];
    uint64_t bytes = 7;
    size_t i;

    for (i = 0; i < 3; i++) {
        FILE *f = fopen(tpath(q, sizeof(q), stale[i]), "wb");

        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(fseek(f, (long)(1000 * (i + 1)) - 1, SEEK_SET), 0);
        ck_assert_int_eq(fputc('x', f), 'x');
        ck_assert_int_eq(fclose(f), 0);
    }
    for (i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
        write_text(tpath(q, sizeof(q), kept[i]), "keep");
    ck_assert_int_eq(mkdir(tpath(q, sizeof(q), "ck.st.tmp.DIRxyz"), 0755),
                     0);
    ck_assert_int_eq(symlink("ck.st", tpath(q, sizeof(q),
                                            "ck.st.tmp.LNKxyz")),
                     0);
    tpath(p, sizeof(p), "ck.st");
    ck_assert_int_eq(smlp__atomic_file_sweep(p, &bytes, errbuf,
                                             sizeof(errbuf)),
                     3);
    ck_assert_uint_eq(bytes, 1000 + 2000 + 3000);
    for (i = 0; i < 3; i++)
        ck_assert_msg(!exists(tpath(q, sizeof(q), stale[i])), "%s", q);
    for (i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
        ck_assert_msg(exists(tpath(q, sizeof(q), kept[i])), "%s", q);
    ck_assert(exists(tpath(q, sizeof(q), "ck.st.tmp.DIRxyz")));
    ck_assert(is_link(tpath(q, sizeof(q), "ck.st.tmp.LNKxyz")));

    /* Nothing left: 0 and no bytes; so too for a target whose directory
     * does not exist (nothing can have been left there). */
    ck_assert_int_eq(smlp__atomic_file_sweep(p, &bytes, errbuf,
                                             sizeof(errbuf)),
                     0);
    ck_assert_uint_eq(bytes, 0);
    tpath(q, sizeof(q), "no_such_dir/ck.st");
    ck_assert_int_eq(smlp__atomic_file_sweep(q, &bytes, errbuf,
                                             sizeof(errbuf)),
                     0);
}
END_TEST

/* Through a link the sweep looks beside the link's target, where the
 * writer makes its temporary files (test_atomic_file_fill_symlink_
 * other_dir), and not beside the link. */
START_TEST(test_atomic_file_sweep_follows_link)
{
    char sub[256], l[256], q[256];
    uint64_t bytes;

    tpath(sub, sizeof(sub), "sub");
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    write_text(tpath(q, sizeof(q), "sub/real.st.tmp.abcdef"), "stale");
    write_text(tpath(q, sizeof(q), "ln.st.tmp.abcdef"), "not ours");
    tpath(l, sizeof(l), "ln.st");
    ck_assert_int_eq(symlink("sub/real.st", l), 0); /* dangling: fine */
    ck_assert_int_eq(smlp__atomic_file_sweep(l, &bytes, errbuf,
                                             sizeof(errbuf)),
                     1);
    ck_assert_uint_eq(bytes, 5);
    ck_assert(!exists(tpath(q, sizeof(q), "sub/real.st.tmp.abcdef")));
    ck_assert(exists(tpath(q, sizeof(q), "ln.st.tmp.abcdef")));
}
END_TEST

/* A directory that cannot be read (a file where the directory should
 * be) is an error naming it; a link loop, one naming the path. */
START_TEST(test_atomic_file_sweep_errors)
{
    char f[256], p[300], want[600];
    uint64_t bytes;

    tpath(f, sizeof(f), "plainfile");
    write_text(f, "x");
    snprintf(p, sizeof(p), "%s/ck.st", f);
    snprintf(want, sizeof(want), "%s: cannot read: %s", f, strerror(ENOTDIR));
    ck_assert_int_eq(smlp__atomic_file_sweep(p, &bytes, errbuf,
                                             sizeof(errbuf)),
                     -1);
    ck_assert_str_eq(errbuf, want);
    tpath(p, sizeof(p), "loop_a");
    ck_assert_int_eq(symlink("loop_b", p), 0);
    ck_assert_int_eq(symlink("loop_a", tpath(f, sizeof(f), "loop_b")), 0);
    snprintf(want, sizeof(want), "%s: cannot resolve the name", p);
    ck_assert_int_eq(smlp__atomic_file_sweep(p, &bytes, errbuf,
                                             sizeof(errbuf)),
                     -1);
    ck_assert_str_eq(errbuf, want);
}
END_TEST

static Suite *
atomic_file_suite(void)
{
    Suite *s = suite_create("atomic_file");
    TCase *tc;

    tc = tcase_create("regular");
    tcase_add_unchecked_fixture(tc, setup_dir, teardown_dir);
    tcase_add_test(tc, test_atomic_file_fill_new_mode);
    tcase_add_test(tc, test_atomic_file_fill_kept_mode);
    tcase_add_test(tc, test_atomic_file_write_raw);
    tcase_add_test(tc, test_atomic_file_abort_keeps_target);
    suite_add_tcase(s, tc);

    tc = tcase_create("links");
    tcase_add_unchecked_fixture(tc, setup_dir, teardown_dir);
    tcase_add_test(tc, test_atomic_file_fill_symlink_chain);
    tcase_add_test(tc, test_atomic_file_fill_symlink_other_dir);
    tcase_add_test(tc, test_atomic_file_fill_symlink_dangling);
    tcase_add_test(tc, test_atomic_file_open_symlink_loop);
    tcase_add_test(tc, test_atomic_file_open_symlink_to_directory);
    suite_add_tcase(s, tc);

    tc = tcase_create("in_place");
    tcase_add_unchecked_fixture(tc, setup_dir, teardown_dir);
    tcase_add_test(tc, test_atomic_file_fill_fifo);
    tcase_add_test(tc, test_atomic_file_write_dev_full);
    tcase_add_test(tc, test_atomic_file_write_dev_null);
    tcase_add_test(tc, test_atomic_file_open_socket);
    suite_add_tcase(s, tc);

    tc = tcase_create("failures");
    tcase_add_unchecked_fixture(tc, setup_dir, teardown_dir);
    tcase_add_test(tc, test_atomic_file_open_empty_name);
    tcase_add_test(tc, test_atomic_file_open_directory);
    tcase_add_test(tc, test_atomic_file_open_no_directory);
    tcase_add_test(tc, test_atomic_file_fill_writer_fails);
    tcase_add_test(tc, test_atomic_file_write_too_large);
    tcase_add_test(tc, test_atomic_file_tmp_name);
    tcase_add_test(tc, test_atomic_file_commit_rename_fails);
    tcase_add_test(tc, test_atomic_file_write_error_message);
    suite_add_tcase(s, tc);

    tc = tcase_create("sweep");
    tcase_add_unchecked_fixture(tc, setup_dir, teardown_dir);
    tcase_add_test(tc, test_atomic_file_sweep_removes_only_tmp_files);
    tcase_add_test(tc, test_atomic_file_sweep_follows_link);
    tcase_add_test(tc, test_atomic_file_sweep_errors);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(atomic_file_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
