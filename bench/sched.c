/*
 * bench/sched - what the scheduler costs per node: graphs of N no-op
 * nodes (bench/noop.c: a kernel that returns at once) run through
 * libsmlp, timed per run and divided by N.
 *
 *   bench/sched [--nodes N] [--repeat R] [--plugin-path DIR]
 *
 * Shapes: "chain" (node i reads node i-1's output: one ready node at a
 * time, the latency of a hand-off to the pool and back) and "wide" (every
 * node reads the graph input: all ready at once, the throughput of the
 * ready heap and the pool).  For 1 and 2 threads it prints the median
 * microseconds per node over R runs after one warm-up.  The graphs are
 * written as JSON and compiled with flatc (FLATC, default the one found
 * by configure).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "smlp.h"

#ifndef SMLP_FLATC
#define SMLP_FLATC "flatc"
#endif
#ifndef SMLP_SCHEMA
#define SMLP_SCHEMA "schemas/graph.fbs"
#endif

static double
now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

static int
cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* Writes DIR/NAME.json for a chain or wide graph of n nodes and compiles
 * it to DIR/NAME.fbs. */
static int
write_graph(const char *dir, const char *name, int n, int chain)
{
    char path[4096], cmd[8192];
    FILE *f;
    int i;

    snprintf(path, sizeof(path), "%s/%s.json", dir, name);
    if ((f = fopen(path, "w")) == NULL) {
        perror(path);
        return -1;
    }
    fprintf(f, "{\"name\": \"%s\", \"plugins\": [\"noop\"], \"tensors\": [\n"
               "{\"name\": \"x\", \"kind\": \"Input\", \"shape\": [1]}",
            name);
    /* Tensor i + 1 is node i's output; the last one is the graph output. */
    for (i = 0; i < n; i++)
        fprintf(f, ",\n{\"name\": \"t%d\"%s}", i,
                i == n - 1 || !chain ? ", \"kind\": \"Output\", \"shape\": [1]"
                                     : "");
    fprintf(f, "],\n\"nodes\": [");
    for (i = 0; i < n; i++)
        fprintf(f, "%s\n{\"name\": \"n%d\", \"op\": \"noop.id\", "
                   "\"inputs\": [%d], \"outputs\": [%d]}",
                i ? "," : "", i, chain ? i : 0, i + 1);
    fprintf(f, "]}\n");
    if (fclose(f) != 0)
        return -1;
    snprintf(cmd, sizeof(cmd), "%s -b -o %s %s %s",
             getenv("FLATC") ? getenv("FLATC") : SMLP_FLATC, dir,
             SMLP_SCHEMA, path);
    return system(cmd) == 0 ? 0 : -1;
}

static double
measure(const char *fbs, const char *plugin_path, int threads, int repeat,
        int n)
{
    struct smlp_session_opts o;
    struct smlp_error err;
    smlp_registry_t *reg;
    smlp_graph_t *g;
    smlp_session_t *s;
    double *t, med;
    int r;

    if ((g = smlp_graph_load(fbs, &err)) == NULL ||
        (reg = smlp_registry_create(plugin_path, &err)) == NULL) {
        fprintf(stderr, "bench/sched: %s\n", err.msg);
        exit(1);
    }
    smlp_session_opts_init(&o);
    o.threads = threads;
    if ((s = smlp_session_create(g, reg, &o, &err)) == NULL) {
        fprintf(stderr, "bench/sched: %s\n", err.msg);
        exit(1);
    }
    t = calloc((size_t)repeat, sizeof(*t));
    for (r = -1; r < repeat; r++) {
        double t0 = now_us();

        if (smlp_session_run(s) != SMLP_OK) {
            fprintf(stderr, "bench/sched: %s\n", smlp_session_errmsg(s));
            exit(1);
        }
        if (r >= 0)
            t[r] = (now_us() - t0) / n;
    }
    qsort(t, (size_t)repeat, sizeof(*t), cmp);
    med = t[repeat / 2];
    free(t);
    smlp_session_destroy(s);
    smlp_registry_destroy(reg);
    smlp_graph_unload(g);
    return med;
}

int
main(int argc, char **argv)
{
    const char *plugin_path = "bench/.libs";
    char dir[] = "/tmp/smlp-bench-sched-XXXXXX", fbs[4200];
    int n = 10000, repeat = 20, i, th, shape;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--nodes") == 0 && i + 1 < argc)
            n = atoi(argv[++i]);
        else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc)
            repeat = atoi(argv[++i]);
        else if (strcmp(argv[i], "--plugin-path") == 0 && i + 1 < argc)
            plugin_path = argv[++i];
        else {
            fprintf(stderr, "usage: bench/sched [--nodes N] [--repeat R] "
                            "[--plugin-path DIR]\n");
            return 2;
        }
    }
    if (n < 1 || repeat < 1 || mkdtemp(dir) == NULL) {
        fprintf(stderr, "bench/sched: bad --nodes/--repeat or no /tmp\n");
        return 2;
    }
    printf("scheduler overhead: %d no-op nodes, median of %d runs\n", n,
           repeat);
    printf("%-6s %8s %12s\n", "graph", "threads", "us/node");
    for (shape = 0; shape < 2; shape++) {
        const char *name = shape == 0 ? "chain" : "wide";

        if (write_graph(dir, name, n, shape == 0) != 0) {
            fprintf(stderr, "bench/sched: cannot build the %s graph\n",
                    name);
            return 1;
        }
        snprintf(fbs, sizeof(fbs), "%s/%s.fbs", dir, name);
        for (th = 1; th <= 2; th++)
            printf("%-6s %8d %12.2f\n", name, th,
                   measure(fbs, plugin_path, th, repeat, n));
    }
    return 0;
}
