/*
 * bench/sgemm - the sgemm floor: OpenBLAS cblas_sgemm GFLOP/s at given
 * shapes and thread counts, for the ratio "achieved / sgemm" reported by
 * the model benchmarks.
 *
 *   bench/sgemm [--threads N] [--seconds S] [MxNxK ...]
 *
 * Default shapes: mixer_b's GEMMs at batch 8 (channel MLP 1568x3072x768
 * and 1568x768x3072, token MLP per image 384x768x196 and 196x768x384).
 * Prints one table row per shape: median GFLOP/s of 5 timed batches of
 * calls after a warm-up.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double
now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int
cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double
measure(int m, int n, int k, double seconds)
{
    float *a = malloc((size_t)m * k * sizeof(float));
    float *b = malloc((size_t)k * n * sizeof(float));
    float *c = malloc((size_t)m * n * sizeof(float));
    double rates[5], t0, t;
    int i, r, calls;

    if (a == NULL || b == NULL || c == NULL) {
        fprintf(stderr, "sgemm: out of memory\n");
        exit(1);
    }
    for (i = 0; i < m * k; i++)
        a[i] = (float)((i % 17) - 8) * 0.01f;
    for (i = 0; i < k * n; i++)
        b[i] = (float)((i % 13) - 6) * 0.01f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a,
                k, b, n, 0.0f, c, n);
    t0 = now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a,
                k, b, n, 0.0f, c, n);
    t = now() - t0;
    calls = (int)(seconds / 5 / (t > 1e-6 ? t : 1e-6)) + 1;
    for (r = 0; r < 5; r++) {
        t0 = now();
        for (i = 0; i < calls; i++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k,
                        1.0f, a, k, b, n, 0.0f, c, n);
        rates[r] = 2.0 * m * n * (double)k * calls / (now() - t0) / 1e9;
    }
    qsort(rates, 5, sizeof(rates[0]), cmp);
    free(a);
    free(b);
    free(c);
    return rates[2];
}

int
main(int argc, char **argv)
{
    static const char *defaults[] = {"1568x3072x768", "1568x768x3072",
                                     "384x768x196", "196x768x384"};
    const char **shapes = defaults;
    int n_shapes = 4, threads = 1, i;
    double seconds = 1.0;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--help") == 0) {
            printf("usage: bench/sgemm [--threads N] [--seconds S] "
                   "[MxNxK ...]\n");
            return 0;
        } else
            break;
    }
    if (i < argc) {
        shapes = (const char **)(argv + i);
        n_shapes = argc - i;
    }
    if (threads < 1 || seconds <= 0) {
        fprintf(stderr, "sgemm: --threads and --seconds must be positive\n");
        return 2;
    }
    openblas_set_num_threads(threads);
    printf("%-18s %8s %10s\n", "MxNxK", "threads", "GFLOP/s");
    for (i = 0; i < n_shapes; i++) {
        int m, n, k;

        if (sscanf(shapes[i], "%dx%dx%d", &m, &n, &k) != 3 || m < 1 ||
            n < 1 || k < 1) {
            fprintf(stderr, "sgemm: '%s' is not MxNxK\n", shapes[i]);
            return 2;
        }
        printf("%-18s %8d %10.1f\n", shapes[i], threads,
               measure(m, n, k, seconds));
    }
    return 0;
}
