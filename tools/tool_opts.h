/*
 * tool_opts.h - what the command-line tools say about a refused option.
 */
#ifndef SMLP_TOOL_OPTS_H
#define SMLP_TOOL_OPTS_H

#include <stddef.h>

/*
 * After getopt_long (opterr 0) returned '?' or ':' for argv[optind - 1]:
 * writes to buf why ("unknown option '-x'", "option '--batch' needs a
 * value", "option '--training' takes no value") and returns buf.
 * shortopts is the string given to getopt_long.
 */
const char *tool_bad_option(char **argv, const char *shortopts, char *buf,
                            size_t len);

/*
 * Before a long run: 0 when `path` can be an output file of option opt (a
 * non-empty name, not a directory, in a directory that exists and that
 * we may write), else -1 with why in buf, naming opt and path ("OPT
 * PATH: why"; "OPT: empty file name").
 */
int tool_check_output(const char *opt, const char *path, char *buf,
                      size_t len);

/* 0 when `path`, option opt's input file, can be read (and is not a
 * directory), else -1 with why in buf, naming opt and path. */
int tool_check_input(const char *opt, const char *path, char *buf,
                     size_t len);

#endif
