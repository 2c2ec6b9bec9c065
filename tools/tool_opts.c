/*
 * tool_opts.c - what the command-line tools say about a refused option
 * (tool_opts.h).
 */
#include "tool_opts.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h"

const char *
tool_bad_option(char **argv, const char *shortopts, char *buf, size_t len)
{
    const char *arg = argv[optind - 1];
    const char *p, *eq;

    if (strncmp(arg, "--", 2) != 0) {
        /* A short option: optopt is its letter. */
        p = optopt != 0 ? strchr(shortopts, optopt) : NULL;
        if (p != NULL && *p != ':' && p[1] == ':')
            snprintf(buf, len, "option '-%c' needs a value", optopt);
        else if (optopt != 0)
            snprintf(buf, len, "unknown option '-%c'", optopt);
        else
            snprintf(buf, len, "unknown option '%s'", arg);
        return buf;
    }
    eq = strchr(arg, '=');
    if (optopt == 0)
        snprintf(buf, len, "unknown option '%.*s'",
                 (int)(eq ? (size_t)(eq - arg) : strlen(arg)), arg);
    else if (eq != NULL)
        /* A known option that failed with "=VALUE": it takes none (an
         * option taking one would have accepted it). */
        snprintf(buf, len, "option '%.*s' takes no value", (int)(eq - arg),
                 arg);
    else
        snprintf(buf, len, "option '%s' needs a value", arg);
    return buf;
}

int
tool_check_output(const char *opt, const char *path, char *buf, size_t len)
{
    struct stat st;
    const char *slash = strrchr(path, '/');
    char *dir, why[2 * 4096 + 200];
    int rc = TOOL_FILE_OK;

    if (path[0] == '\0') {
        snprintf(buf, len, "%s: empty file name", opt);
        return TOOL_FILE_EMPTY;
    }
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            snprintf(buf, len, "%s %s: is a directory, not a file", opt,
                     path);
            return TOOL_FILE_BAD;
        }
        if (access(path, W_OK) != 0) {
            snprintf(buf, len, "%s %s: cannot write: %s", opt, path,
                     strerror(errno));
            return TOOL_FILE_BAD;
        }
    }
    if (slash == NULL)
        dir = strdup(".");
    else if (slash == path)
        dir = strdup("/");
    else
        dir = strndup(path, (size_t)(slash - path));
    if (dir == NULL) {
        snprintf(buf, len, "%s: out of memory", opt);
        return TOOL_FILE_BAD;
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(buf, len, "%s %s: cannot write: the directory %s does "
                 "not exist", opt, path, dir);
        rc = TOOL_FILE_BAD;
    } else if (access(dir, W_OK | X_OK) != 0) {
        snprintf(buf, len, "%s %s: cannot write in directory %s: %s", opt,
                 path, dir, strerror(errno));
        rc = TOOL_FILE_BAD;
    }
    free(dir);
    /* What only the writer would find out, after the work: a link loop,
     * a dangling link into no directory, a name too long for the
     * temporary file beside it. */
    if (rc == TOOL_FILE_OK &&
        smlp__atomic_file_check(path, why, sizeof(why)) != SMLP_OK) {
        snprintf(buf, len, "%s %s", opt, why);
        rc = TOOL_FILE_BAD;
    }
    return rc;
}

int
tool_check_input(const char *opt, const char *path, char *buf, size_t len)
{
    struct stat st;

    if (path[0] == '\0') {
        snprintf(buf, len, "%s: empty file name", opt);
        return TOOL_FILE_EMPTY;
    }
    if (stat(path, &st) != 0 || access(path, R_OK) != 0)
        snprintf(buf, len, "%s %s: cannot open: %s", opt, path,
                 strerror(errno));
    else if (S_ISDIR(st.st_mode))
        snprintf(buf, len, "%s %s: is a directory, not a file", opt, path);
    else
        return TOOL_FILE_OK;
    return TOOL_FILE_BAD;
}

/* path with its directory resolved (realpath) and its last component
 * kept, malloc'ed; NULL when the directory does not resolve. */
static char *
resolve_output(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir, *real, *out = NULL;

    if (slash == NULL)
        dir = strdup(".");
    else
        dir = strndup(path, slash == path ? 1 : (size_t)(slash - path));
    real = dir != NULL ? realpath(dir, NULL) : NULL;
    if (real != NULL &&
        (out = malloc(strlen(real) + strlen(path) + 2)) != NULL)
        sprintf(out, "%s/%s", real, slash == NULL ? path : slash + 1);
    free(real);
    free(dir);
    return out;
}

/* See tool_opts.h. */
int
tool_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    char *ra, *rb, *ta, *tb;
    int same;

    if (stat(a, &sa) == 0 && stat(b, &sb) == 0)
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    /* A name that does not exist yet may be a dangling link: compare
     * the files the writer would create (the links' targets). */
    ta = smlp__atomic_file_target(a);
    tb = smlp__atomic_file_target(b);
    ra = resolve_output(ta != NULL ? ta : a);
    rb = resolve_output(tb != NULL ? tb : b);
    free(ta);
    free(tb);
    same = ra != NULL && rb != NULL ? strcmp(ra, rb) == 0 : strcmp(a, b) == 0;
    free(ra);
    free(rb);
    return same;
}

/* See tool_opts.h. */
int
tool_stdout_ok(const char *prog)
{
    errno = 0;
    if (fflush(stdout) == 0 && !ferror(stdout))
        return 1;
    fprintf(stderr, "%s: cannot write to standard output: %s\n", prog,
            errno != 0 ? strerror(errno) : "write error");
    return 0;
}

/* See tool_opts.h. */
int
tool_int_in(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    long long v;

    if (!(s[0] >= '0' && s[0] <= '9') && s[0] != '-' && s[0] != '+')
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* See tool_opts.h.  strtoull alone would take "-1" as 2^64 - 1. */
int
tool_uint64_in(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (!(s[0] >= '0' && s[0] <= '9') &&
        !(s[0] == '+' && s[1] >= '0' && s[1] <= '9'))
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = v;
    return 0;
}
