/*
 * plot.h - a small drawing surface for smlp-train's curves, written as
 * SVG 1.1 text or rasterised to a PNG image (RGB, 8 bits, zlib) with the
 * same coordinates: lines and polylines of a width, rectangles, discs and
 * text in a built-in 5 x 7 pixel font (PNG) or sans-serif (SVG).
 * Coordinates are pixels from the top-left corner; text is placed by its
 * baseline.  Colours are 0xRRGGBB.
 */
#ifndef SMLP_PLOT_H
#define SMLP_PLOT_H

#include <stdint.h>
#include <stdio.h>

enum plot_format { PLOT_FORMAT_SVG, PLOT_FORMAT_PNG };
enum plot_anchor { PLOT_ANCHOR_START, PLOT_ANCHOR_MIDDLE, PLOT_ANCHOR_END };

#define PLOT_NO_FILL 0xFFFFFFFFu

struct plot_s;
typedef struct plot_s plot_t;

/* A white w x h surface whose drawing goes to f (SVG: as it is drawn;
 * PNG: at plot_finish).  NULL when out of memory. */
plot_t *plot_create(FILE *f, enum plot_format format, int w, int h);

/* Writes what is still to write (the SVG's end, the PNG file) and frees
 * the surface.  0, or -1 when out of memory or a write failed. */
int plot_finish(plot_t *p);

/* A rectangle: its outline in `stroke` (1 px) and, unless fill is
 * PLOT_NO_FILL, its inside in `fill` at opacity fill_opacity. */
void plot_rect(plot_t *p, double x, double y, double w, double h,
               uint32_t stroke, uint32_t fill, double fill_opacity);
void plot_line(plot_t *p, double x1, double y1, double x2, double y2,
               uint32_t rgb, double width);
/* The n points xy[2i], xy[2i+1] joined by lines. */
void plot_polyline(plot_t *p, const double *xy, int n, uint32_t rgb,
                   double width);
void plot_disc(plot_t *p, double x, double y, double r, uint32_t rgb);
/* Text in black, size 12 or (title) 15 px, bold or not; PNG draws
 * printable ASCII and '?' for other bytes. */
void plot_text(plot_t *p, double x, double y, enum plot_anchor anchor,
               int size, int bold, const char *s);

/* The 5 x 9 glyph of printable ASCII c in rows[0..8], top to bottom
 * (bit 4 the leftmost column; rows 7 and 8 below the baseline).  0, or
 * -1 for other bytes. */
int plot_font_glyph(int c, uint8_t rows[9]);

#endif /* SMLP_PLOT_H */
