/*
 * tool_opts.h - what the command-line tools say about a refused option.
 */
#ifndef SMLP_TOOL_OPTS_H
#define SMLP_TOOL_OPTS_H

#include <stddef.h>
#include <stdint.h>

/*
 * After getopt_long (opterr 0) returned '?' or ':' for argv[optind - 1]:
 * writes to buf why ("unknown option '-x'", "option '--batch' needs a
 * value", "option '--training' takes no value") and returns buf.
 * shortopts is the string given to getopt_long.
 */
const char *tool_bad_option(char **argv, const char *shortopts, char *buf,
                            size_t len);

/* What tool_check_output and tool_check_input return; the values are the
 * tools' exit statuses (an empty name is a usage error, a file that
 * cannot be used a bad file, as when the runtime finds it). */
enum { TOOL_FILE_OK = 0, TOOL_FILE_BAD = 1, TOOL_FILE_EMPTY = 2 };

/*
 * Before a long run: TOOL_FILE_OK when `path` can be an output file of
 * option opt (a non-empty name, not a directory, in a directory that
 * exists and that we may write, links that end, a name whose temporary
 * file fits: smlp__atomic_file_check), else TOOL_FILE_EMPTY or TOOL_FILE_BAD
 * with why in buf, naming opt and path ("OPT PATH: why"; "OPT: empty
 * file name").
 */
int tool_check_output(const char *opt, const char *path, char *buf,
                      size_t len);

/* TOOL_FILE_OK when `path`, option opt's input file, can be read (and is
 * not a directory), else TOOL_FILE_EMPTY or TOOL_FILE_BAD with why in
 * buf, naming opt and path. */
int tool_check_input(const char *opt, const char *path, char *buf,
                     size_t len);

/* Whether a and b name one file: the same inode when both exist, else
 * the same name once their directories are resolved (an output that does
 * not exist yet, named through another path). */
int tool_same_file(const char *a, const char *b);

/* Flushes standard output: 1 when everything printed reached it, else 0
 * after "PROG: cannot write to standard output: why" on standard error
 * (a report redirected to a full disk must not end with exit status 0). */
int tool_stdout_ok(const char *prog);

/* Whether s is a decimal integer in [min, max], in full: an optional
 * sign and digits, nothing before or after them (strtoll alone would
 * take leading blanks); 0 and *out set when it is, else -1. */
int tool_int_in(const char *s, int64_t min, int64_t max, int64_t *out);

/* Whether s is a decimal integer from 0 to 2^64 - 1 (a seed), digits
 * only (an optional '+'); 0 and *out set when it is, else -1. */
int tool_uint64_in(const char *s, uint64_t *out);

#endif
