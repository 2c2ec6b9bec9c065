/*
 * train_report.h - smlp-train's metrics: rows kept in memory, written as
 * CSV (--metrics) and drawn as SVG or PNG (--plot), both atomically.
 */
#ifndef SMLP_TRAIN_REPORT_H
#define SMLP_TRAIN_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The CSV header: the columns of struct train_row in order. */
#define TRAIN_CSV_HEADER                                                     \
    "step,epoch,lr,loss,train_acc,images_per_s,test_loss,test_acc"

/* One row: the steps since the previous row, and a test evaluation when
 * one ran at this step (NaN otherwise; an empty CSV field). */
struct train_row {
    int64_t step;        /* updates done */
    double epoch;        /* epochs done (fractional) */
    double lr;           /* learning rate of the last update */
    double loss;         /* mean training loss since the previous row */
    double acc;          /* mean training accuracy (0..1), the same;
                            NaN (empty) in MoCo pre-training */
    double images_per_s; /* training throughput, the same */
    double test_loss;
    double test_acc;
};

struct train_log {
    struct train_row *rows;
    size_t n, cap;
};

/* Appends a row; -1 when out of memory. */
int train_log_add(struct train_log *log, const struct train_row *row);
void train_log_free(struct train_log *log);

/*
 * Opens a CSV of smlp-train (--metrics, --moe-stats) to continue it and
 * checks that its first line starts with `header`.  0 with *out NULL when
 * the file does not exist, 0 with *out open after the header, or -1 with
 * a message naming `what`.
 */
int train_csv_open(const char *path, const char *header, const char *what,
                   FILE **out, char *err, size_t errlen);

/*
 * Reads the rows of a CSV written by train_log_write_csv with step <=
 * max_step (a resumed run continues the file).  A missing file gives no
 * rows and 0; a file that is not such a CSV gives -1 and a message.
 */
int train_log_read_csv(struct train_log *log, const char *path,
                       int64_t max_step, char *err, size_t errlen);

/* Writes the rows as CSV, atomically.  0, or -1 with a message. */
int train_log_write_csv(const struct train_log *log, const char *path,
                        char *err, size_t errlen);

/*
 * Draws loss (left) and accuracy (right) against epochs, atomically, as
 * a standalone SVG 1.1 file or a PNG image (960 x 400) by the name's
 * suffix: training curves in blue, test points in orange.  `title` heads
 * the figure.  0, or -1 with a message.
 */
int train_log_write_plot(const struct train_log *log, const char *path,
                         const char *title, char *err, size_t errlen);

/* PLOT_FORMAT_SVG or PLOT_FORMAT_PNG (plot.h) for a path ending in .svg
 * or .png (any case), -1 otherwise. */
int train_plot_format(const char *path);

/*
 * Writes what fill() writes to a temporary file beside path, syncs it
 * and renames it over path: readers see the old file or the new one.
 * fill returns 0 or -1.  0, or -1 with a message (no temporary file left).
 */
int train_write_atomic(const char *path, int (*fill)(FILE *f, void *arg),
                       void *arg, char *err, size_t errlen);

#endif /* SMLP_TRAIN_REPORT_H */
