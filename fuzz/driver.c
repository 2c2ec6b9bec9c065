/*
 * driver.c - runs a fuzz target's LLVMFuzzerTestOneInput over files,
 * without libFuzzer, for the regression tests of `make check` (any
 * compiler, any build).
 *
 *   regress_NAME PATH...
 *
 * Each PATH is a file or a directory whose regular files (not starting
 * with '.', and not *.json or *.md: sources and notes) are inputs, in
 * name order.  Prints "ok - FILE" per input and "N passed, 0 failed"; an
 * input that breaks the target crashes the program (or trips a sanitizer
 * in a sanitized build), which the test reports.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int n_run;

static int
run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0, got;

    if (f == NULL) {
        perror(path);
        return -1;
    }
    for (;;) {
        if (len == cap) {
            uint8_t *p;

            cap = cap ? 2 * cap : 65536;
            p = realloc(buf, cap);
            if (p == NULL) {
                fprintf(stderr, "%s: out of memory\n", path);
                free(buf);
                fclose(f);
                return -1;
            }
            buf = p;
        }
        got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    fclose(f);
    /* A copy of exactly len bytes, so that a read past the end is caught. */
    {
        uint8_t *exact = malloc(len ? len : 1);

        if (exact == NULL) {
            free(buf);
            return -1;
        }
        memcpy(exact, buf, len);
        free(buf);
        LLVMFuzzerTestOneInput(exact, len);
        free(exact);
    }
    printf("ok - %s (%zu bytes)\n", path, len);
    fflush(stdout);
    n_run++;
    return 0;
}

static int
skip_name(const char *name)
{
    size_t n = strlen(name);

    return name[0] == '.' || (n > 5 && strcmp(name + n - 5, ".json") == 0) ||
           (n > 3 && strcmp(name + n - 3, ".md") == 0);
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
run_path(const char *path)
{
    struct stat st;
    struct dirent *de;
    char **names = NULL, full[4096];
    size_t n = 0, i;
    int rc = 0;
    DIR *d;

    if (stat(path, &st) != 0) {
        perror(path);
        return -1;
    }
    if (!S_ISDIR(st.st_mode))
        return run_file(path);
    d = opendir(path);
    if (d == NULL) {
        perror(path);
        return -1;
    }
    while ((de = readdir(d)) != NULL) {
        char **p;

        if (skip_name(de->d_name))
            continue;
        p = realloc(names, (n + 1) * sizeof(*names));
        if (p == NULL || (p[n] = strdup(de->d_name)) == NULL) {
            free(p ? p : names);
            closedir(d);
            return -1;
        }
        names = p;
        n++;
    }
    closedir(d);
    if (n > 0)
        qsort(names, n, sizeof(*names), cmp_str);
    for (i = 0; i < n; i++) {
        snprintf(full, sizeof(full), "%s/%s", path, names[i]);
        if (stat(full, &st) == 0 && S_ISREG(st.st_mode) && run_file(full) != 0)
            rc = -1;
        free(names[i]);
    }
    free(names);
    return rc;
}

int
main(int argc, char **argv)
{
    int i, rc = 0;

    LLVMFuzzerInitialize(&argc, &argv);
    for (i = 1; i < argc; i++)
        if (run_path(argv[i]) != 0)
            rc = 1;
    printf("%d passed, %d failed\n", n_run, rc);
    return rc;
}
