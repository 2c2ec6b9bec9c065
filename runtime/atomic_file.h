/*
 * atomic_file.h - replacing an output file atomically (internal).
 *
 * Every file the runtime and the tools write (safetensors weights and
 * checkpoints, traces, graphs, pictures, reports, metrics, plots) goes
 * through here, so that they all treat the name they are given alike:
 *
 *   - "" is refused ("empty file name", SMLP_EINVAL);
 *   - a symbolic link is followed to the end of its chain (a dangling
 *     link's target is created), and the link itself is kept;
 *   - a regular file, or a name that does not exist yet, is written to a
 *     temporary file PATH.tmp.XXXXXX beside it (beside the link's target
 *     for a link), synced and renamed over it: a reader sees the old file
 *     or the new one, never a part.  A new file gets mode 0666 & ~umask
 *     (created so: default ACLs apply), an existing one keeps its mode;
 *   - a character or block device, a FIFO or a socket is written in place
 *     (no temporary file, no rename: /dev/null stays a device, a FIFO's
 *     reader gets the bytes), and write and close errors are reported
 *     (ENOSPC from /dev/full);
 *   - a directory is refused (SMLP_EIO, "is a directory").
 *
 * The temporary file is removed on every failure.  Messages are written
 * to the caller's err buffer and start with the path as given ("run.json:
 * cannot write run.json.tmp.q3ZxA1: No space left on device"), so that a
 * caller only prefixes its option name.
 *
 * Use: smlp__atomic_file_open, then write through af.fd,
 * smlp__atomic_file_write or the FILE of smlp__atomic_file_stream, then
 * smlp__atomic_file_commit, or smlp__atomic_file_abort on a failure of
 * the caller's own.  smlp__atomic_file_fill does all of it for a writer
 * that prints to a FILE.
 *
 * This convenience library (runtime/libsmlp_file.la) needs only libc: it
 * is linked into libsmlp_st (so into libsmlp) and into the tools, whose
 * copies of libsmlp's smlp__ symbols are hidden.  Memory comes from
 * malloc.  The functions are reentrant; one struct is used by one thread
 * at a time.
 */
#ifndef SMLP_ATOMIC_FILE_H
#define SMLP_ATOMIC_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../ops/smlp_plugin.h"

struct smlp__atomic_file {
    int fd;       /* write here (-1 once committed or aborted) */
    FILE *f;      /* the stream over fd, NULL until _stream */
    char *path;   /* the name as given, for messages */
    char *target; /* the file written: path, or the end of its links */
    char *tmp;    /* the temporary file; NULL when target is written in
                     place (a device, FIFO or socket) */
};

/*
 * Opens path for replacing (see above) into caller storage af.  Returns
 * SMLP_OK, SMLP_EINVAL (empty name), SMLP_EIO (a directory, a link loop,
 * cannot create the temporary file or open the device) or SMLP_ENOMEM,
 * with the message in err.  On failure nothing is left to release (a
 * later smlp__atomic_file_abort is a no-op).  Opening a FIFO blocks until
 * it has a reader, as a shell redirection does.
 */
int smlp__atomic_file_open(struct smlp__atomic_file *af, const char *path,
                           char *err, size_t errlen);

/*
 * A stdio stream over af->fd ("wb"), made once; commit and abort close
 * it.  NULL with the message in err (SMLP_ENOMEM's "out of memory").
 */
FILE *smlp__atomic_file_stream(struct smlp__atomic_file *af, char *err,
                               size_t errlen);

/*
 * Writes all len bytes of buf to af->fd (retrying short writes and
 * EINTR).  Returns SMLP_OK or SMLP_EIO ("PATH: cannot write TMP: cause";
 * in place "PATH: cannot write: cause").  af stays open either way: the
 * caller aborts on failure.
 */
int smlp__atomic_file_write(struct smlp__atomic_file *af, const void *buf,
                            size_t len, char *err, size_t errlen);

/*
 * Finishes the file: flushes the stream (a write error that stdio held
 * back is reported here), syncs, closes, renames the temporary file over
 * the target and syncs its directory; in place, flushes and closes.
 * Always releases af: on failure the temporary file is removed and the
 * target untouched (except when only the directory sync failed: the new
 * file is in place, and the message says "written, but").  Returns
 * SMLP_OK or SMLP_EIO.
 */
int smlp__atomic_file_commit(struct smlp__atomic_file *af, char *err,
                             size_t errlen);

/* Closes af and removes its temporary file; the target is untouched.
 * A no-op on a released af. */
void smlp__atomic_file_abort(struct smlp__atomic_file *af);

/*
 * All of it for a writer that prints to a stream: open path, fill(f,
 * arg) (0 or nonzero: failed, with errno or a stream error telling why),
 * commit.  Returns SMLP_OK, or the status of the step that failed
 * (SMLP_EIO when fill failed) with the message in err.
 */
int smlp__atomic_file_fill(const char *path,
                           int (*fill)(FILE *f, void *arg), void *arg,
                           char *err, size_t errlen);

/*
 * Without creating anything, whether smlp__atomic_file_open(path) can
 * be expected to succeed: the chain of links ends (no loop), the file at
 * its end is not a directory, and, unless it is a device, FIFO or socket
 * (written in place), its directory exists and its temporary file's name
 * (TARGET.tmp.XXXXXX) fits the file system's limits.  For the checks a
 * tool makes before a long run, so that a name that cannot be written
 * fails then, not after the work.  Returns SMLP_OK, SMLP_EINVAL (empty
 * name), SMLP_EIO or SMLP_ENOMEM with the message in err ("PATH: ...").
 */
int smlp__atomic_file_check(const char *path, char *err, size_t errlen);

/*
 * The name of the file smlp__atomic_file_open(path) writes: path with
 * its chain of symbolic links followed (a dangling link's target),
 * malloc'ed; NULL when out of memory or when a link cannot be read or
 * loops.
 */
char *smlp__atomic_file_target(const char *path);

/*
 * Removes the temporary files that writers of path killed before their
 * commit or abort left beside it: regular files named TARGET.tmp.XXXXXX
 * (TARGET as smlp__atomic_file_target gives it, XXXXXX six characters
 * of [A-Za-z0-9]); nothing else in the directory is touched.  Only for a
 * caller that knows no other writer of path is running (smlp-train holds
 * the checkpoint's lock): a running writer's temporary file has the same
 * name.  Returns the number of files removed (0 when the directory holds
 * none, or does not exist) and their total size in *bytes, or -1 with the
 * message in err when the directory cannot be read or a file not
 * removed.
 */
int smlp__atomic_file_sweep(const char *path, uint64_t *bytes, char *err,
                            size_t errlen);

/*
 * Formats a message into err[0..errlen) (when err is not NULL and errlen
 * is not 0) and returns status, so that a failing path of the file code
 * here and in safetensors*.c reads "return smlp__fail(err, errlen, ...)".
 */
int smlp__fail(char *err, size_t errlen, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif /* SMLP_ATOMIC_FILE_H */
