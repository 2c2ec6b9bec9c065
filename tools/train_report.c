/*
 * train_report.c - smlp-train's metrics log: CSV out and back in (for
 * --resume) and the loss and accuracy curves as SVG or PNG (plot.h).  See
 * train_report.h.  Written, like every file smlp-train makes, to a
 * temporary file that is synced and renamed over the target.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h"
#include "plot.h"
#include "train_report.h"

int
train_log_add(struct train_log *log, const struct train_row *row)
{
    if (log->n == log->cap) {
        size_t cap = log->cap ? 2 * log->cap : 64;
        struct train_row *r = realloc(log->rows, cap * sizeof(*r));

        if (r == NULL)
            return -1;
        log->rows = r;
        log->cap = cap;
    }
    log->rows[log->n++] = *row;
    return 0;
}

void
train_log_free(struct train_log *log)
{
    free(log->rows);
    memset(log, 0, sizeof(*log));
}

/* Through smlp__atomic_file (runtime/atomic_file.h): replaced
 * atomically, a device or FIFO written in place, a link's target
 * replaced. */
int
train_write_atomic(const char *path, int (*fill)(FILE *f, void *arg),
                   void *arg, char *err, size_t errlen)
{
    return smlp__atomic_file_fill(path, fill, arg, err, errlen) == SMLP_OK
               ? 0
               : -1;
}

/* ---- CSV ---------------------------------------------------------------- */

static void
csv_num(FILE *f, double v, const char *fmt)
{
    if (!isnan(v))
        fprintf(f, fmt, v);
}

static int
fill_csv(FILE *f, void *arg)
{
    const struct train_log *log = arg;
    size_t i;

    fprintf(f, "%s\n", TRAIN_CSV_HEADER);
    for (i = 0; i < log->n; i++) {
        const struct train_row *r = &log->rows[i];

        fprintf(f, "%lld,%.4f,%.6g,%.6g,", (long long)r->step, r->epoch,
                r->lr, r->loss);
        csv_num(f, r->acc, "%.6g");
        fprintf(f, ",%.1f,", r->images_per_s);
        csv_num(f, r->test_loss, "%.6g");
        fputc(',', f);
        csv_num(f, r->test_acc, "%.6g");
        fputc('\n', f);
    }
    return 0;
}

int
train_log_write_csv(const struct train_log *log, const char *path,
                    char *err, size_t errlen)
{
    return train_write_atomic(path, fill_csv, (void *)log, err, errlen);
}

/* Parses one field (empty: NaN); advances *p past the comma. */
static int
csv_field(char **p, double *out)
{
    char *end;

    if (**p == ',' || **p == '\n' || **p == '\0') {
        *out = NAN;
    } else {
        *out = strtod(*p, &end);
        if (end == *p)
            return -1;
        *p = end;
    }
    if (**p == ',')
        (*p)++;
    return 0;
}

int
train_csv_open(const char *path, const char *header, const char *what,
               FILE **out, char *err, size_t errlen)
{
    char line[1024];
    FILE *f = fopen(path, "r");

    *out = NULL;
    if (f == NULL) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (fgets(line, sizeof(line), f) == NULL ||
        strncmp(line, header, strlen(header)) != 0) {
        snprintf(err, errlen, "%s: not a %s file of smlp-train (the first "
                              "line is not '%s')",
                 path, what, header);
        fclose(f);
        return -1;
    }
    *out = f;
    return 0;
}

int
train_log_read_csv(struct train_log *log, const char *path,
                   int64_t max_step, char *err, size_t errlen)
{
    char line[1024];
    FILE *f;
    int lineno = 1;

    if (train_csv_open(path, TRAIN_CSV_HEADER, "metrics", &f, err,
                       errlen) != 0)
        return -1;
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        struct train_row r;
        double v[8];
        char *p = line;
        int i;

        lineno++;
        if (line[strspn(line, " \t\r\n")] == '\0')
            continue; /* a blank line (an editor's): no row */
        for (i = 0; i < 8; i++)
            if (csv_field(&p, &v[i]) != 0 ||
                (i < 6 && i != 4 && isnan(v[i]))) /* train_acc: not in
                                                       MoCo runs */
                break;
        if (i < 8) {
            snprintf(err, errlen, "%s:%d: not a row of %d numbers", path,
                     lineno, 8);
            fclose(f);
            return -1;
        }
        r.step = (int64_t)v[0];
        if (r.step > max_step)
            break;
        r.epoch = v[1];
        r.lr = v[2];
        r.loss = v[3];
        r.acc = v[4];
        r.images_per_s = v[5];
        r.test_loss = v[6];
        r.test_acc = v[7];
        if (train_log_add(log, &r) != 0) {
            snprintf(err, errlen, "%s: out of memory", path);
            fclose(f);
            return -1;
        }
    }
    fclose(f);
    return 0;
}

/* ---- the plot (SVG or PNG) ---------------------------------------------- */

#define PLOT_W 960
#define PLOT_H 400
#define PANEL_W 390
#define PANEL_H 280
#define PANEL_TOP 60
#define BLUE 0x1f77b4
#define ORANGE 0xff7f0e
#define FRAME 0x444444
#define GRID 0xdddddd

/* One panel: its position and data ranges. */
struct panel {
    double x0, y0;       /* top-left corner in pixels */
    double xmin, xmax;   /* epochs */
    double ymin, ymax;
};

static double
px_x(const struct panel *p, double x)
{
    return p->x0 + (x - p->xmin) / (p->xmax - p->xmin) * PANEL_W;
}

static double
px_y(const struct panel *p, double y)
{
    return p->y0 + PANEL_H - (y - p->ymin) / (p->ymax - p->ymin) * PANEL_H;
}

/* A round tick spacing giving about five ticks over range. */
static double
nice_step(double range)
{
    double raw = range / 5.0, mag = pow(10.0, floor(log10(raw)));
    double m = raw / mag;

    return (m < 1.5 ? 1.0 : m < 3.5 ? 2.0 : m < 7.5 ? 5.0 : 10.0) * mag;
}

static void
draw_axes(plot_t *g, const struct panel *p, const char *ylabel)
{
    char num[32];
    double step, v;

    plot_rect(g, p->x0, p->y0, PANEL_W, PANEL_H, FRAME, PLOT_NO_FILL, 0);
    step = nice_step(p->xmax - p->xmin);
    for (v = ceil(p->xmin / step) * step; v <= p->xmax + 1e-9; v += step) {
        plot_line(g, px_x(p, v), p->y0, px_x(p, v), p->y0 + PANEL_H, GRID,
                  1);
        snprintf(num, sizeof(num), "%g", v);
        plot_text(g, px_x(p, v), p->y0 + PANEL_H + 16, PLOT_ANCHOR_MIDDLE,
                  12, 0, num);
    }
    step = nice_step(p->ymax - p->ymin);
    for (v = ceil(p->ymin / step) * step; v <= p->ymax + 1e-9; v += step) {
        plot_line(g, p->x0, px_y(p, v), p->x0 + PANEL_W, px_y(p, v), GRID,
                  1);
        snprintf(num, sizeof(num), "%g", v);
        plot_text(g, p->x0 - 6, px_y(p, v) + 4, PLOT_ANCHOR_END, 12, 0, num);
    }
    plot_text(g, p->x0 + PANEL_W / 2.0, p->y0 + PANEL_H + 36,
              PLOT_ANCHOR_MIDDLE, 12, 0, "epoch");
    plot_text(g, p->x0 + PANEL_W / 2.0, p->y0 - 10, PLOT_ANCHOR_MIDDLE, 12,
              1, ylabel);
}

/* The curve of column `col` (a train_row member offset) in colour c;
 * dots at each point when `dots`.  -1 when out of memory. */
static int
draw_curve(plot_t *g, const struct panel *p, const struct train_log *log,
           size_t col, double scale, uint32_t c, int dots)
{
    double *xy = calloc((log->n + 1) * 2, sizeof(double));
    size_t i;
    int n = 0;

    if (xy == NULL)
        return -1;
    for (i = 0; i < log->n; i++) {
        double v = *(const double *)((const char *)&log->rows[i] + col);

        if (!isfinite(v)) /* empty, or a diverged step: no place on it */
            continue;
        xy[2 * n] = px_x(p, log->rows[i].epoch);
        xy[2 * n + 1] = px_y(p, v * scale);
        n++;
    }
    plot_polyline(g, xy, n, c, 1.5);
    for (i = 0; dots && i < (size_t)n; i++)
        plot_disc(g, xy[2 * i], xy[2 * i + 1], 3, c);
    free(xy);
    return 0;
}

/* The legend in the top-right corner (bottom-right with `bottom`). */
static void
draw_legend(plot_t *g, const struct panel *p, const char *a, const char *b,
            int bottom)
{
    double x = p->x0 + PANEL_W - 120;
    double y = bottom ? p->y0 + PANEL_H - 34 : p->y0 + 14;

    plot_rect(g, x - 4, y - 10, 112, 40, 0xcccccc, 0xffffff, 0.8);
    plot_line(g, x, y, x + 20, y, BLUE, 2);
    plot_text(g, x + 26, y + 4, PLOT_ANCHOR_START, 12, 0, a);
    plot_line(g, x, y + 18, x + 20, y + 18, ORANGE, 2);
    plot_text(g, x + 26, y + 22, PLOT_ANCHOR_START, 12, 0, b);
}

struct plot_job {
    const struct train_log *log;
    const char *title;
    enum plot_format format;
};

static int
fill_plot(FILE *f, void *arg)
{
    const struct plot_job *job = arg;
    const struct train_log *log = job->log;
    struct panel loss = {70, PANEL_TOP, 0, 1, 0, 1};
    struct panel acc = {70 + PANEL_W + 100, PANEL_TOP, 0, 1, 0, 100};
    double amin = 100;
    plot_t *g;
    size_t i;
    int bad;

    for (i = 0; i < log->n; i++) {
        const struct train_row *r = &log->rows[i];

        if (r->epoch > loss.xmax)
            loss.xmax = r->epoch;
        if (isfinite(r->loss) && r->loss > loss.ymax)
            loss.ymax = r->loss;
        if (isfinite(r->test_loss) && r->test_loss > loss.ymax)
            loss.ymax = r->test_loss;
        if (r->acc * 100 < amin)
            amin = r->acc * 100;
        if (!isnan(r->test_acc) && r->test_acc * 100 < amin)
            amin = r->test_acc * 100;
    }
    acc.xmax = loss.xmax;
    acc.ymin = floor(amin / 10.0) * 10.0;
    if (acc.ymin > 90)
        acc.ymin = 90;
    g = plot_create(f, job->format, PLOT_W, PLOT_H);
    if (g == NULL)
        return -1;
    plot_text(g, PLOT_W / 2.0, 22, PLOT_ANCHOR_MIDDLE, 15, 0, job->title);
    draw_axes(g, &loss, "loss");
    bad = draw_curve(g, &loss, log, offsetof(struct train_row, loss), 1.0,
                     BLUE, 0);
    bad |= draw_curve(g, &loss, log, offsetof(struct train_row, test_loss),
                      1.0, ORANGE, 1);
    draw_legend(g, &loss, "train", "test", 0);
    draw_axes(g, &acc, "accuracy (%)");
    bad |= draw_curve(g, &acc, log, offsetof(struct train_row, acc), 100.0,
                      BLUE, 0);
    bad |= draw_curve(g, &acc, log, offsetof(struct train_row, test_acc),
                      100.0, ORANGE, 1);
    draw_legend(g, &acc, "train", "test", 1);
    bad |= plot_finish(g);
    return bad ? -1 : 0;
}

int
train_plot_format(const char *path)
{
    size_t n = strlen(path);

    if (n > 4 && strcasecmp(path + n - 4, ".svg") == 0)
        return PLOT_FORMAT_SVG;
    if (n > 4 && strcasecmp(path + n - 4, ".png") == 0)
        return PLOT_FORMAT_PNG;
    return -1;
}

int
train_log_write_plot(const struct train_log *log, const char *path,
                     const char *title, char *err, size_t errlen)
{
    struct plot_job job;
    int format = train_plot_format(path);

    if (format < 0) {
        snprintf(err, errlen, "%s: the name must end in .svg or .png", path);
        return -1;
    }
    job.log = log;
    job.title = title;
    job.format = (enum plot_format)format;
    return train_write_atomic(path, fill_plot, &job, err, errlen);
}
