/*
 * plot.c - the drawing surface of plot.h: SVG elements written as they
 * are drawn, or an RGB raster with anti-aliased strokes (each pixel
 * covered by the distance from its centre to the shape) and the bitmap
 * font of plot_font.c, written as PNG (one IDAT, filter 0, zlib).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "plot.h"

struct plot_s {
    FILE *f;
    enum plot_format format;
    int w, h;
    uint8_t *px;    /* PNG: w * h RGB */
    float *cover;   /* PNG: a polyline's coverage, w * h, kept at 0 */
};

plot_t *
plot_create(FILE *f, enum plot_format format, int w, int h)
{
    plot_t *p = calloc(1, sizeof(*p));

    if (p == NULL)
        return NULL;
    p->f = f;
    p->format = format;
    p->w = w;
    p->h = h;
    if (format == PLOT_FORMAT_SVG) {
        fprintf(f, "<?xml version='1.0' encoding='UTF-8'?>\n"
                   "<svg xmlns='http://www.w3.org/2000/svg' version='1.1' "
                   "width='%d' height='%d' viewBox='0 0 %d %d' "
                   "font-family='sans-serif' font-size='12'>\n"
                   "<rect width='100%%' height='100%%' fill='white'/>\n",
                w, h, w, h);
        return p;
    }
    p->px = malloc((size_t)w * (size_t)h * 3);
    p->cover = calloc((size_t)w * (size_t)h, sizeof(float));
    if (p->px == NULL || p->cover == NULL) {
        free(p->px);
        free(p->cover);
        free(p);
        return NULL;
    }
    memset(p->px, 0xff, (size_t)w * (size_t)h * 3);
    return p;
}

/* ---- raster ------------------------------------------------------------- */

/* Pixel (x, y) mixed with rgb at opacity a. */
static void
blend(plot_t *p, int x, int y, uint32_t rgb, double a)
{
    uint8_t *q;
    int c;

    if (x < 0 || y < 0 || x >= p->w || y >= p->h || !(a > 0))
        return;
    if (a > 1)
        a = 1;
    q = p->px + ((size_t)y * (size_t)p->w + (size_t)x) * 3;
    for (c = 0; c < 3; c++) {
        double v = (double)(rgb >> (16 - 8 * c) & 0xff);

        q[c] = (uint8_t)lrint(q[c] + (v - q[c]) * a);
    }
}

/* Distance from (px, py) to the segment (x1, y1)-(x2, y2). */
static double
seg_dist(double px, double py, double x1, double y1, double x2, double y2)
{
    double dx = x2 - x1, dy = y2 - y1, len2 = dx * dx + dy * dy, t = 0;

    if (len2 > 0) {
        t = ((px - x1) * dx + (py - y1) * dy) / len2;
        t = t < 0 ? 0 : t > 1 ? 1 : t;
    }
    return hypot(px - (x1 + t * dx), py - (y1 + t * dy));
}

static int
clampi(double v, int lo, int hi)
{
    if (!(v > lo))
        return lo;
    return v < hi ? (int)v : hi;
}

/* Raises the coverage of the pixels near one segment of width `width`. */
static void
cover_segment(plot_t *p, double x1, double y1, double x2, double y2,
              double width)
{
    double r = width / 2 + 1;
    int x0 = clampi(fmin(x1, x2) - r, 0, p->w - 1);
    int xe = clampi(fmax(x1, x2) + r, 0, p->w - 1);
    int y0 = clampi(fmin(y1, y2) - r, 0, p->h - 1);
    int ye = clampi(fmax(y1, y2) + r, 0, p->h - 1);
    int x, y;

    for (y = y0; y <= ye; y++)
        for (x = x0; x <= xe; x++) {
            double d = seg_dist(x + 0.5, y + 0.5, x1, y1, x2, y2);
            double a = width / 2 + 0.5 - d;
            float *c = &p->cover[(size_t)y * (size_t)p->w + (size_t)x];

            if (a > *c)
                *c = (float)(a > 1 ? 1 : a);
        }
}

/* Blends the coverage in the box [x0, xe] x [y0, ye] and clears it: a
 * polyline's joints are covered once, not once per segment. */
static void
flush_cover(plot_t *p, double xa, double ya, double xb, double yb,
            uint32_t rgb)
{
    int x0 = clampi(xa, 0, p->w - 1), xe = clampi(xb, 0, p->w - 1);
    int y0 = clampi(ya, 0, p->h - 1), ye = clampi(yb, 0, p->h - 1);
    int x, y;

    for (y = y0; y <= ye; y++)
        for (x = x0; x <= xe; x++) {
            float *c = &p->cover[(size_t)y * (size_t)p->w + (size_t)x];

            if (*c > 0) {
                blend(p, x, y, rgb, *c);
                *c = 0;
            }
        }
}

static void
raster_polyline(plot_t *p, const double *xy, int n, uint32_t rgb,
                double width)
{
    double xa = INFINITY, ya = INFINITY, xb = -INFINITY, yb = -INFINITY;
    double r = width / 2 + 1;
    int i;

    for (i = 0; i < n; i++) {
        if (!isfinite(xy[2 * i]) || !isfinite(xy[2 * i + 1]))
            return;
        xa = fmin(xa, xy[2 * i]);
        xb = fmax(xb, xy[2 * i]);
        ya = fmin(ya, xy[2 * i + 1]);
        yb = fmax(yb, xy[2 * i + 1]);
    }
    if (n == 1) /* a dot */
        cover_segment(p, xy[0], xy[1], xy[0], xy[1], width);
    for (i = 0; i + 1 < n; i++)
        cover_segment(p, xy[2 * i], xy[2 * i + 1], xy[2 * i + 2],
                      xy[2 * i + 3], width);
    if (n > 0)
        flush_cover(p, xa - r, ya - r, xb + r, yb + r, rgb);
}

/* Text in the 5 x 7 font, doubled for sizes from 14 px (titles): 6 px
 * (12 px) per character, the glyph's bottom row on the row above y. */
static void
raster_text(plot_t *p, double x, double y, enum plot_anchor anchor,
            int size, int bold, const char *s)
{
    int scale = size >= 14 ? 2 : 1, adv = 6 * scale;
    int len = (int)strlen(s), cx, top, i, r, c, k, dx, dy;
    uint8_t rows[9];

    cx = (int)lrint(anchor == PLOT_ANCHOR_START ? x
                    : anchor == PLOT_ANCHOR_MIDDLE ? x - len * adv / 2.0
                                                   : x - len * adv);
    top = (int)lrint(y) - 7 * scale;
    for (i = 0; i < len; i++, cx += adv) {
        if (plot_font_glyph((unsigned char)s[i], rows) != 0)
            plot_font_glyph('?', rows);
        for (r = 0; r < 9; r++)
            for (c = 0; c < 5; c++) {
                if (!(rows[r] & (0x10 >> c)))
                    continue;
                for (k = 0; k <= (bold != 0); k++)
                    for (dy = 0; dy < scale; dy++)
                        for (dx = 0; dx < scale; dx++)
                            blend(p, cx + c * scale + dx + k,
                                  top + r * scale + dy, 0x000000, 1.0);
            }
    }
}

/* ---- PNG ---------------------------------------------------------------- */

static void
put_be32(uint8_t *b, uint32_t v)
{
    b[0] = (uint8_t)(v >> 24);
    b[1] = (uint8_t)(v >> 16);
    b[2] = (uint8_t)(v >> 8);
    b[3] = (uint8_t)v;
}

/* A chunk: length, type, data, CRC-32 of type and data. */
static int
png_chunk(FILE *f, const char *type, const uint8_t *data, size_t n)
{
    uint8_t head[8], tail[4];
    uLong crc;

    put_be32(head, (uint32_t)n);
    memcpy(head + 4, type, 4);
    crc = crc32(0L, head + 4, 4);
    if (n > 0)
        crc = crc32(crc, data, (uInt)n);
    put_be32(tail, (uint32_t)crc);
    return fwrite(head, 1, 8, f) == 8 &&
                   (n == 0 || fwrite(data, 1, n, f) == n) &&
                   fwrite(tail, 1, 4, f) == 4
               ? 0
               : -1;
}

static int
png_write(plot_t *p)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a,
                                   '\n'};
    size_t row = (size_t)p->w * 3 + 1, raw_len = row * (size_t)p->h;
    uint8_t ihdr[13], *raw = malloc(raw_len), *z;
    uLongf z_len = compressBound((uLong)raw_len);
    int y, rc = -1;

    z = malloc(z_len);
    if (raw == NULL || z == NULL)
        goto out_free;
    for (y = 0; y < p->h; y++) {
        raw[(size_t)y * row] = 0; /* filter: none */
        memcpy(raw + (size_t)y * row + 1, p->px + (size_t)y * (row - 1),
               row - 1);
    }
    if (compress2(z, &z_len, raw, (uLong)raw_len, 9) != Z_OK)
        goto out_free;
    put_be32(ihdr, (uint32_t)p->w);
    put_be32(ihdr + 4, (uint32_t)p->h);
    ihdr[8] = 8;  /* bits per sample */
    ihdr[9] = 2;  /* RGB */
    ihdr[10] = 0; /* deflate */
    ihdr[11] = 0; /* adaptive filtering */
    ihdr[12] = 0; /* not interlaced */
    if (fwrite(sig, 1, 8, p->f) == 8 &&
        png_chunk(p->f, "IHDR", ihdr, 13) == 0 &&
        png_chunk(p->f, "IDAT", z, z_len) == 0 &&
        png_chunk(p->f, "IEND", NULL, 0) == 0)
        rc = 0;
out_free:
    free(raw);
    free(z);
    return rc;
}

int
plot_finish(plot_t *p)
{
    int rc;

    if (p->format == PLOT_FORMAT_SVG) {
        fprintf(p->f, "</svg>\n");
        rc = 0;
    } else {
        rc = png_write(p);
        free(p->px);
        free(p->cover);
    }
    free(p);
    return rc;
}

/* ---- SVG ---------------------------------------------------------------- */

static void
svg_color(char out[8], uint32_t rgb)
{
    snprintf(out, 8, "#%06x", (unsigned)(rgb & 0xffffff));
}

static void
svg_escaped(FILE *f, const char *s)
{
    for (; *s; s++)
        if (*s == '&')
            fputs("&amp;", f);
        else if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else
            fputc(*s, f);
}

/* ---- the drawing calls -------------------------------------------------- */

void
plot_rect(plot_t *p, double x, double y, double w, double h,
          uint32_t stroke, uint32_t fill, double fill_opacity)
{
    char sc[8], fc[8];
    int i, j;

    if (p->format == PLOT_FORMAT_SVG) {
        svg_color(sc, stroke);
        svg_color(fc, fill);
        if (fill == PLOT_NO_FILL)
            fprintf(p->f, "<rect x='%.1f' y='%.1f' width='%.1f' "
                          "height='%.1f' fill='none' stroke='%s'/>\n",
                    x, y, w, h, sc);
        else
            fprintf(p->f, "<rect x='%.1f' y='%.1f' width='%.1f' "
                          "height='%.1f' fill='%s' fill-opacity='%g' "
                          "stroke='%s'/>\n",
                    x, y, w, h, fc, fill_opacity, sc);
        return;
    }
    if (fill != PLOT_NO_FILL)
        for (j = clampi(y, 0, p->h); j < clampi(y + h, 0, p->h); j++)
            for (i = clampi(x, 0, p->w); i < clampi(x + w, 0, p->w); i++)
                blend(p, i, j, fill, fill_opacity);
    /* the outline on pixel centres: crisp 1-pixel lines */
    x += 0.5;
    y += 0.5;
    plot_line(p, x, y, x + w, y, stroke, 1);
    plot_line(p, x + w, y, x + w, y + h, stroke, 1);
    plot_line(p, x + w, y + h, x, y + h, stroke, 1);
    plot_line(p, x, y + h, x, y, stroke, 1);
}

void
plot_line(plot_t *p, double x1, double y1, double x2, double y2,
          uint32_t rgb, double width)
{
    double xy[4] = {x1, y1, x2, y2};
    char c[8];

    if (p->format == PLOT_FORMAT_SVG) {
        svg_color(c, rgb);
        fprintf(p->f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' "
                      "stroke='%s' stroke-width='%g'/>\n",
                x1, y1, x2, y2, c, width);
        return;
    }
    raster_polyline(p, xy, 2, rgb, width);
}

void
plot_polyline(plot_t *p, const double *xy, int n, uint32_t rgb,
              double width)
{
    char c[8];
    int i;

    if (p->format == PLOT_FORMAT_SVG) {
        svg_color(c, rgb);
        fprintf(p->f, "<polyline fill='none' stroke='%s' stroke-width='%g' "
                      "points='", c, width);
        for (i = 0; i < n; i++)
            fprintf(p->f, "%s%.1f,%.1f", i ? " " : "", xy[2 * i],
                    xy[2 * i + 1]);
        fprintf(p->f, "'/>\n");
        return;
    }
    raster_polyline(p, xy, n, rgb, width);
}

void
plot_disc(plot_t *p, double x, double y, double r, uint32_t rgb)
{
    int i, j;
    char c[8];

    if (p->format == PLOT_FORMAT_SVG) {
        svg_color(c, rgb);
        fprintf(p->f, "<circle cx='%.1f' cy='%.1f' r='%g' fill='%s'/>\n", x,
                y, r, c);
        return;
    }
    for (j = clampi(y - r - 1, 0, p->h - 1); j <= clampi(y + r + 1, 0,
                                                         p->h - 1); j++)
        for (i = clampi(x - r - 1, 0, p->w - 1);
             i <= clampi(x + r + 1, 0, p->w - 1); i++)
            blend(p, i, j, rgb, r + 0.5 - hypot(i + 0.5 - x, j + 0.5 - y));
}

void
plot_text(plot_t *p, double x, double y, enum plot_anchor anchor, int size,
          int bold, const char *s)
{
    static const char *const anchors[] = {"start", "middle", "end"};

    if (p->format == PLOT_FORMAT_SVG) {
        fprintf(p->f, "<text x='%.1f' y='%.1f'", x, y);
        if (anchor != PLOT_ANCHOR_START)
            fprintf(p->f, " text-anchor='%s'", anchors[anchor]);
        if (size != 12)
            fprintf(p->f, " font-size='%d'", size);
        if (bold)
            fprintf(p->f, " font-weight='bold'");
        fputc('>', p->f);
        svg_escaped(p->f, s);
        fprintf(p->f, "</text>\n");
        return;
    }
    raster_text(p, x, y, anchor, size, bold, s);
}
