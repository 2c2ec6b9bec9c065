/*
 * check_plot.c - smlp-train's drawing surface (tools/plot.h).  PNG: the
 * file read back here with zlib (signature, the three chunks and their
 * CRC-32s, IHDR's fields, the filter byte of each row, the pixels), then
 * pixels at places worked out by hand from plot.h's rules: white
 * background, strokes covered by the distance from a pixel's centre to
 * the shape (coverage width / 2 + 0.5 - d, at most 1), colours blended
 * to the nearest byte, the 5 x 7 font placed by its baseline.  SVG: the
 * elements and attributes written, text escaped.  Write errors.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "plot.h"
#include "train_report.h"

/* ---- reading a PNG back ------------------------------------------------ */

static uint32_t
be32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 |
           b[3];
}

/* Everything f holds, from its start; *n its length. */
static uint8_t *
slurp(FILE *f, size_t *n)
{
    long len;
    uint8_t *b;

    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    len = ftell(f);
    ck_assert_int_ge(len, 0);
    rewind(f);
    b = malloc((size_t)len + 1);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(fread(b, 1, (size_t)len, f), (size_t)len);
    b[len] = 0;
    *n = (size_t)len;
    return b;
}

/*
 * Finishes p (a w x h PNG surface writing to f) and decodes the file:
 * the PNG signature, then exactly IHDR (13 bytes: w, h, depth 8, colour
 * type 2 = RGB, deflate, filter method 0, no interlace), one IDAT and an
 * empty IEND, each chunk's CRC-32 over its type and data; the IDAT
 * inflates to h rows of a filter byte 0 ("none") and 3 w bytes.  Returns
 * the w * h * 3 pixel bytes (free them).
 */
static uint8_t *
png_pixels(plot_t *p, FILE *f, int w, int h)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a,
                                   '\n'};
    static const char *const types[3] = {"IHDR", "IDAT", "IEND"};
    size_t n, pos = 8, row = (size_t)w * 3 + 1;
    uint8_t *b, *raw, *px;
    const uint8_t *data[3];
    uint32_t len[3];
    uLongf raw_len = (uLongf)(row * (size_t)h);
    int i, y;

    ck_assert_int_eq(plot_finish(p), 0);
    b = slurp(f, &n);
    ck_assert_uint_ge(n, 8);
    ck_assert_mem_eq(b, sig, 8);
    for (i = 0; i < 3; i++) {
        ck_assert_uint_le(pos + 12, n);
        len[i] = be32(b + pos);
        ck_assert_uint_le(pos + 12 + len[i], n);
        ck_assert_mem_eq(b + pos + 4, types[i], 4);
        data[i] = b + pos + 8;
        ck_assert_uint_eq(crc32(0L, b + pos + 4, len[i] + 4),
                          be32(b + pos + 8 + len[i]));
        pos += 12 + len[i];
    }
    ck_assert_uint_eq(pos, n); /* nothing after IEND */
    ck_assert_uint_eq(len[0], 13);
    ck_assert_uint_eq(be32(data[0]), (uint32_t)w);
    ck_assert_uint_eq(be32(data[0] + 4), (uint32_t)h);
    ck_assert_int_eq(data[0][8], 8);
    ck_assert_int_eq(data[0][9], 2);
    ck_assert_int_eq(data[0][10], 0);
    ck_assert_int_eq(data[0][11], 0);
    ck_assert_int_eq(data[0][12], 0);
    ck_assert_uint_eq(len[2], 0);
    raw = malloc(raw_len + 1);
    ck_assert_ptr_nonnull(raw);
    ck_assert_int_eq(uncompress(raw, &raw_len, data[1], len[1]), Z_OK);
    ck_assert_uint_eq(raw_len, row * (size_t)h);
    px = malloc((size_t)w * (size_t)h * 3);
    ck_assert_ptr_nonnull(px);
    for (y = 0; y < h; y++) {
        ck_assert_int_eq(raw[(size_t)y * row], 0);
        memcpy(px + (size_t)y * (row - 1), raw + (size_t)y * row + 1,
               row - 1);
    }
    free(raw);
    free(b);
    fclose(f);
    return px;
}

/* A PNG surface on a temporary file. */
static plot_t *
png_surface(FILE **f, int w, int h)
{
    plot_t *p;

    *f = tmpfile();
    ck_assert_ptr_nonnull(*f);
    p = plot_create(*f, PLOT_FORMAT_PNG, w, h);
    ck_assert_ptr_nonnull(p);
    return p;
}

/* Pixel (x, y) of a w-wide image as 0xRRGGBB. */
static uint32_t
at(const uint8_t *px, int w, int x, int y)
{
    const uint8_t *q = px + ((size_t)y * (size_t)w + (size_t)x) * 3;

    return (uint32_t)q[0] << 16 | (uint32_t)q[1] << 8 | q[2];
}

#define WHITE 0xffffffu
#define BLACK 0x000000u

/* The channel c (0 red .. 2 blue) of 0xRRGGBB. */
static int
chan(uint32_t rgb, int c)
{
    return (int)(rgb >> (16 - 8 * c) & 0xff);
}

/*
 * Pixel (x, y) is white blended with rgb at coverage a (clamped to
 * [0, 1]): each channel within 1/2 of 255 + (v - 255) a, i.e. the
 * nearest byte (either one on an exact half).
 */
static void
assert_blend(const uint8_t *px, int w, int x, int y, uint32_t rgb, double a)
{
    uint32_t got = at(px, w, x, y);
    int c;

    a = a < 0 ? 0 : a > 1 ? 1 : a;
    for (c = 0; c < 3; c++) {
        double want = 255 + (chan(rgb, c) - 255) * a;

        ck_assert_msg(fabs(chan(got, c) - want) <= 0.5,
                      "pixel (%d, %d) is %06x: channel %d should be %.2f",
                      x, y, (unsigned)got, c, want);
    }
}

/* ---- PNG: the file and the background ---------------------------------- */

/* A blank 7 x 5 surface (not square: width and height cannot be
 * swapped): a valid PNG of white pixels only. */
START_TEST(test_plot_png_blank)
{
    FILE *f;
    plot_t *p = png_surface(&f, 7, 5);
    uint8_t *px = png_pixels(p, f, 7, 5);
    int i;

    for (i = 0; i < 7 * 5 * 3; i++)
        ck_assert_int_eq(px[i], 255);
    free(px);
}
END_TEST

/*
 * A disc of radius 3 in colour 0x1f77b4 at (10, 8) on 24 x 16: each
 * pixel covered by r + 0.5 - (the distance from its centre to the
 * disc's), so the 6 pixels around the centre are wholly the colour
 * (red 31, green 119, blue 180 in that order), pixels 4 away white; the
 * rows are in order (the disc is in the top half).
 */
START_TEST(test_plot_png_disc)
{
    FILE *f;
    plot_t *p = png_surface(&f, 24, 16);
    uint8_t *px;
    int x, y;

    plot_disc(p, 10, 8, 3, 0x1f77b4);
    px = png_pixels(p, f, 24, 16);
    ck_assert_uint_eq(at(px, 24, 9, 7), 0x1f77b4);
    ck_assert_uint_eq(at(px, 24, 10, 8), 0x1f77b4);
    for (y = 0; y < 16; y++)
        for (x = 0; x < 24; x++)
            assert_blend(px, 24, x, y, 0x1f77b4,
                         3.5 - hypot(x + 0.5 - 10, y + 0.5 - 8));
    ck_assert_uint_eq(at(px, 24, 10, 12), WHITE);
    ck_assert_uint_eq(at(px, 24, 14, 8), WHITE);
    free(px);
}
END_TEST

/* ---- PNG: lines ------------------------------------------------------- */

/*
 * Horizontal lines on 40 x 30, black.  (10.5, 5.5)-(20.5, 5.5), width 1:
 * pixels 10..20 of row 5 have their centre on it (coverage 1), their
 * neighbours a pixel away above, below, left of the start and right of
 * the end coverage 1 + 0.5 - 1 = 0 (white: the line ends at its end
 * points).  Width 3 at y 15.5: rows 14..16 whole, 13 and 17 white.  Width
 * 1 at y 25.25: row 25's centre 0.25 away (coverage 0.75), row 24's 0.75
 * (0.25), row 26's 1.25 (white).
 */
START_TEST(test_plot_png_lines)
{
    FILE *f;
    plot_t *p = png_surface(&f, 40, 30);
    uint8_t *px;
    int x;

    plot_line(p, 10.5, 5.5, 20.5, 5.5, BLACK, 1);
    plot_line(p, 10.5, 15.5, 20.5, 15.5, BLACK, 3);
    plot_line(p, 10.5, 25.25, 20.5, 25.25, BLACK, 1);
    px = png_pixels(p, f, 40, 30);
    for (x = 10; x <= 20; x++) {
        ck_assert_uint_eq(at(px, 40, x, 5), BLACK);
        ck_assert_uint_eq(at(px, 40, x, 4), WHITE);
        ck_assert_uint_eq(at(px, 40, x, 6), WHITE);
        ck_assert_uint_eq(at(px, 40, x, 14), BLACK);
        ck_assert_uint_eq(at(px, 40, x, 16), BLACK);
        ck_assert_uint_eq(at(px, 40, x, 13), WHITE);
        ck_assert_uint_eq(at(px, 40, x, 17), WHITE);
        assert_blend(px, 40, x, 25, BLACK, 0.75);
        assert_blend(px, 40, x, 24, BLACK, 0.25);
        ck_assert_uint_eq(at(px, 40, x, 26), WHITE);
    }
    ck_assert_uint_eq(at(px, 40, 9, 5), WHITE);
    ck_assert_uint_eq(at(px, 40, 21, 5), WHITE);
    free(px);
}
END_TEST

/*
 * Lines along the last row and the last column of a 12 x 10 surface are
 * drawn there (the covered box is clipped to the surface, not dropped);
 * a line past the right edge draws nothing in the next row's first
 * pixels.
 */
START_TEST(test_plot_png_edges)
{
    FILE *f;
    plot_t *p = png_surface(&f, 12, 10);
    uint8_t *px;

    plot_line(p, 2.5, 9.5, 6.5, 9.5, BLACK, 1);
    plot_line(p, 11.5, 2.5, 11.5, 5.5, BLACK, 1);
    plot_line(p, 8.5, 1.5, 30.5, 1.5, BLACK, 3);
    px = png_pixels(p, f, 12, 10);
    ck_assert_uint_eq(at(px, 12, 4, 9), BLACK);
    ck_assert_uint_eq(at(px, 12, 11, 4), BLACK);
    ck_assert_uint_eq(at(px, 12, 11, 1), BLACK);
    ck_assert_uint_eq(at(px, 12, 0, 2), WHITE);
    ck_assert_uint_eq(at(px, 12, 0, 3), WHITE);
    free(px);
}
END_TEST

/*
 * A polyline's joint: (10.5, 10.5)-(30.5, 10.5)-(30.5, 30.5), width 3,
 * red.  Pixel (28, 9) is 1 from the first segment (coverage 1) and 2
 * from the second (0): red, whatever order the segments come in.  With
 * width 4, pixel (28, 12) is 2 from both segments: coverage 0.5, blended
 * once (a joint is covered once, not once per segment).
 */
START_TEST(test_plot_png_polyline_joint)
{
    static const double xy[6] = {10.5, 10.5, 30.5, 10.5, 30.5, 30.5};
    static const double xy2[6] = {10.5, 40.5, 30.5, 40.5, 30.5, 60.5};
    FILE *f;
    plot_t *p = png_surface(&f, 40, 70);
    uint8_t *px;

    plot_polyline(p, xy, 3, 0xff0000, 3);
    plot_polyline(p, xy2, 3, BLACK, 4);
    px = png_pixels(p, f, 40, 70);
    ck_assert_uint_eq(at(px, 40, 28, 9), 0xff0000);
    ck_assert_uint_eq(at(px, 40, 31, 20), 0xff0000);
    assert_blend(px, 40, 28, 42, BLACK, 0.5);
    free(px);
}
END_TEST

/*
 * A polyline of one point is a dot: width 3 at (20.5, 20.5) covers its
 * pixel and the 4 next to it wholly.  A polyline uses its n points only:
 * xy holds a third point far off that n = 2 leaves out.  A polyline with
 * a point that is not a number draws nothing, not even its segments
 * between numbers (15.5, 30.5)-(20.5, 30.5).
 */
START_TEST(test_plot_png_polyline_points)
{
    static const double dot[2] = {20.5, 20.5};
    static const double two[6] = {5.5, 5.5, 10.5, 5.5, 35.5, 35.5};
    double bad[8] = {5.5, 30.5, 10.5, 30.5, 15.5, 30.5, 20.5, 30.5};
    FILE *f;
    plot_t *p = png_surface(&f, 40, 40);
    uint8_t *px;

    bad[3] = NAN;
    plot_polyline(p, dot, 1, 0x0000ff, 3);
    plot_polyline(p, two, 2, BLACK, 1);
    plot_polyline(p, bad, 4, BLACK, 1);
    px = png_pixels(p, f, 40, 40);
    ck_assert_uint_eq(at(px, 40, 20, 20), 0x0000ff);
    ck_assert_uint_eq(at(px, 40, 19, 20), 0x0000ff);
    ck_assert_uint_eq(at(px, 40, 20, 21), 0x0000ff);
    ck_assert_uint_eq(at(px, 40, 23, 20), WHITE);
    ck_assert_uint_eq(at(px, 40, 8, 5), BLACK);
    ck_assert_uint_eq(at(px, 40, 11, 5), WHITE);
    ck_assert_uint_eq(at(px, 40, 20, 17), WHITE); /* on the way to 3rd */
    ck_assert_uint_eq(at(px, 40, 35, 35), WHITE);
    ck_assert_uint_eq(at(px, 40, 7, 30), WHITE);  /* the NaN polyline */
    ck_assert_uint_eq(at(px, 40, 13, 30), WHITE);
    ck_assert_uint_eq(at(px, 40, 18, 30), WHITE);
    free(px);
}
END_TEST

/*
 * Two lines, the second's box over the first: a red line along row 10,
 * then a blue diagonal from (5, 5) to (35, 35).  Pixel (30, 10) is on
 * the red line, far from the blue one but inside its box: still red
 * (drawing one line leaves nothing behind for the next).
 */
START_TEST(test_plot_png_two_lines)
{
    FILE *f;
    plot_t *p = png_surface(&f, 40, 40);
    uint8_t *px;

    plot_line(p, 0.5, 10.5, 39.5, 10.5, 0xff0000, 1);
    plot_line(p, 5, 5, 35, 35, 0x0000ff, 1);
    px = png_pixels(p, f, 40, 40);
    ck_assert_uint_eq(at(px, 40, 30, 10), 0xff0000);
    ck_assert_uint_eq(at(px, 40, 20, 20), 0x0000ff);
    free(px);
}
END_TEST

/*
 * A rectangle (5, 5) 10 x 6, black outline, fill 0x020202 at opacity
 * 1/4: the outline on pixel centres, 1 px: rows 5 and 11, columns 5 and
 * 15, black; inside, white blended 1/4 toward the fill: each channel the
 * nearest byte to 255 + (2 - 255) / 4 = 191.75, 192 (0xc0, not 191: no
 * truncation); outside white.
 */
START_TEST(test_plot_png_rect)
{
    FILE *f;
    plot_t *p = png_surface(&f, 24, 16);
    uint8_t *px;
    int x, y;

    plot_rect(p, 5, 5, 10, 6, BLACK, 0x020202, 0.25);
    px = png_pixels(p, f, 24, 16);
    for (x = 5; x <= 15; x++) {
        ck_assert_uint_eq(at(px, 24, x, 5), BLACK);
        ck_assert_uint_eq(at(px, 24, x, 11), BLACK);
        ck_assert_uint_eq(at(px, 24, x, 4), WHITE);
        ck_assert_uint_eq(at(px, 24, x, 12), WHITE);
    }
    for (y = 5; y <= 11; y++) {
        ck_assert_uint_eq(at(px, 24, 5, y), BLACK);
        ck_assert_uint_eq(at(px, 24, 15, y), BLACK);
        ck_assert_uint_eq(at(px, 24, 4, y), WHITE);
        ck_assert_uint_eq(at(px, 24, 16, y), WHITE);
    }
    for (y = 6; y <= 10; y++)
        for (x = 6; x <= 14; x++)
            ck_assert_uint_eq(at(px, 24, x, y), 0xc0c0c0);
    free(px);
}
END_TEST

/* ---- PNG: text -------------------------------------------------------- */

/* The black pixels of row y, columns x0..x1, as a string of '#' and '.'. */
static void
ink_row(const uint8_t *px, int w, int y, int x0, int x1, char *out)
{
    int x;

    for (x = x0; x <= x1; x++) {
        uint32_t c = at(px, w, x, y);

        ck_assert(c == BLACK || c == WHITE);
        *out++ = c == BLACK ? '#' : '.';
    }
    *out = 0;
}

/*
 * '|' is column 2 of the 5 x 7 glyph, rows 0..6 (plot_font.c); text sits
 * on its baseline y with the glyph's bottom row on the row above, 6 px a
 * character.  At (20, 30), size 12: column 22, rows 23..29.  Anchored in
 * the middle the 6 px of one character are centred on x (column 19), at
 * the end they end at x (column 16).  Bold doubles each column to the
 * right (22, 23).  Titles (size >= 14, here 15) are twice as big: 12 px
 * a character, column 2 is 24..25, rows 16..29.
 */
START_TEST(test_plot_png_text_place)
{
    FILE *f;
    plot_t *p = png_surface(&f, 40, 40);
    uint8_t *px;
    char row[64];
    int y;

    plot_text(p, 20, 30, PLOT_ANCHOR_START, 12, 0, "|");
    px = png_pixels(p, f, 40, 40);
    for (y = 20; y <= 31; y++) {
        ink_row(px, 40, y, 14, 30, row);
        ck_assert_str_eq(row, y >= 23 && y <= 29 ? "........#........"
                                                 : ".................");
    }
    free(px);

    p = png_surface(&f, 40, 40);
    plot_text(p, 20, 30, PLOT_ANCHOR_MIDDLE, 12, 0, "|");
    plot_text(p, 20, 10, PLOT_ANCHOR_END, 12, 1, "|");
    px = png_pixels(p, f, 40, 40);
    for (y = 20; y <= 31; y++) {
        ink_row(px, 40, y, 14, 30, row);
        ck_assert_str_eq(row, y >= 23 && y <= 29 ? ".....#..........."
                                                 : ".................");
    }
    for (y = 0; y <= 11; y++) {
        ink_row(px, 40, y, 14, 30, row);
        ck_assert_str_eq(row, y >= 3 && y <= 9 ? "..##............."
                                               : ".................");
    }
    free(px);

    p = png_surface(&f, 40, 40);
    plot_text(p, 20, 30, PLOT_ANCHOR_START, 15, 0, "|");
    px = png_pixels(p, f, 40, 40);
    for (y = 14; y <= 31; y++) {
        ink_row(px, 40, y, 20, 31, row);
        ck_assert_str_eq(row, y >= 16 && y <= 29 ? "....##......"
                                                 : "............");
    }
    free(px);
}
END_TEST

/*
 * Glyph shapes as drawn: "Lp" at (2, 10).  'L' is "#....|" x 6 then
 * "#####" (left column, then the bottom row, not mirrored); 'p' (6 px
 * on) has rows 7 and 8 below the baseline, "#....": rows 10 and 11.
 * A space draws nothing; a byte that is not printable ASCII draws '?'.
 */
START_TEST(test_plot_png_text_glyphs)
{
    FILE *f;
    plot_t *p = png_surface(&f, 40, 40);
    uint8_t *px, *q;
    char row[64];
    int y, x;

    plot_text(p, 2, 10, PLOT_ANCHOR_START, 12, 0, "Lp");
    plot_text(p, 2, 25, PLOT_ANCHOR_START, 12, 0, " \x80");
    px = png_pixels(p, f, 40, 40);
    ink_row(px, 40, 3, 2, 6, row);
    ck_assert_str_eq(row, "#....");
    ink_row(px, 40, 9, 2, 6, row);
    ck_assert_str_eq(row, "#####");
    ink_row(px, 40, 10, 8, 12, row);
    ck_assert_str_eq(row, "#....");
    ink_row(px, 40, 11, 8, 12, row);
    ck_assert_str_eq(row, "#....");
    ink_row(px, 40, 12, 0, 39, row);
    ck_assert_str_eq(row, "........................................");
    for (y = 14; y < 30; y++)
        for (x = 0; x < 8; x++)
            ck_assert_uint_eq(at(px, 40, x, y), WHITE);

    p = png_surface(&f, 40, 40);
    plot_text(p, 2, 10, PLOT_ANCHOR_START, 12, 0, "Lp");
    plot_text(p, 2, 25, PLOT_ANCHOR_START, 12, 0, " ?");
    q = png_pixels(p, f, 40, 40);
    ck_assert_mem_eq(px, q, 40 * 40 * 3);
    ink_row(q, 40, 18, 8, 12, row); /* '?' has ink on its top row */
    ck_assert_str_ne(row, ".....");
    free(q);
    free(px);
}
END_TEST

/* Text past the right edge is cut there: it does not wrap into the next
 * row's first pixels; text below the bottom edge is dropped. */
START_TEST(test_plot_png_text_clipped)
{
    FILE *f;
    plot_t *p = png_surface(&f, 20, 12);
    uint8_t *px;
    int y;

    plot_text(p, 17, 8, PLOT_ANCHOR_START, 12, 1, "MMM");
    plot_text(p, 2, 14, PLOT_ANCHOR_START, 12, 1, "pq");
    px = png_pixels(p, f, 20, 12);
    ck_assert_uint_eq(at(px, 20, 17, 1), BLACK); /* 'M' column 0 */
    for (y = 0; y < 12; y++)
        ck_assert_uint_eq(at(px, 20, 0, y), WHITE);
    ck_assert_uint_eq(at(px, 20, 2, 11), BLACK); /* 'p' row 4: "#...#" */
    free(px);
}
END_TEST

/* ---- the font --------------------------------------------------------- */

/*
 * Glyphs by hand from the table: '~' (the last) is rows ".....",
 * ".....", ".#...", "#.#.#", "...#." = 0, 0, 0x08, 0x15, 0x02; ' ' is
 * blank; bytes 31 and 127 have none.  The rows are written whole: a
 * short glyph ('-', 4 rows) after a tall one ('p', 9) leaves rows 4..8
 * at 0.
 */
START_TEST(test_plot_font_glyphs)
{
    static const uint8_t tilde[9] = {0, 0, 0x08, 0x15, 0x02, 0, 0, 0, 0};
    static const uint8_t minus[9] = {0, 0, 0, 0x1f, 0, 0, 0, 0, 0};
    static const uint8_t blank[9] = {0};
    uint8_t rows[9];

    ck_assert_int_eq(plot_font_glyph(31, rows), -1);
    ck_assert_int_eq(plot_font_glyph(127, rows), -1);
    ck_assert_int_eq(plot_font_glyph(-3, rows), -1);
    ck_assert_int_eq(plot_font_glyph('~', rows), 0);
    ck_assert_mem_eq(rows, tilde, 9);
    ck_assert_int_eq(plot_font_glyph('p', rows), 0);
    ck_assert_int_eq(rows[8], 0x10);
    ck_assert_int_eq(plot_font_glyph('-', rows), 0);
    ck_assert_mem_eq(rows, minus, 9);
    ck_assert_int_eq(plot_font_glyph(' ', rows), 0);
    ck_assert_mem_eq(rows, blank, 9);
}
END_TEST

/* ---- SVG -------------------------------------------------------------- */

/* The SVG text of one drawing of 40 x 30 (free it). */
static char *
svg_of(void (*draw)(plot_t *))
{
    FILE *f = tmpfile();
    plot_t *p;
    size_t n;
    char *s;

    ck_assert_ptr_nonnull(f);
    p = plot_create(f, PLOT_FORMAT_SVG, 40, 30);
    ck_assert_ptr_nonnull(p);
    draw(p);
    ck_assert_int_eq(plot_finish(p), 0);
    s = (char *)slurp(f, &n);
    fclose(f);
    return s;
}

static void
draw_shapes(plot_t *p)
{
    static const double xy[4] = {1, 2, 3.25, 4};

    plot_rect(p, 1, 2, 3, 4, 0x0000ff, PLOT_NO_FILL, 1.0);
    plot_rect(p, 5, 6, 7, 8, BLACK, 0x00ff00, 0.25);
    plot_line(p, 1, 2, 3, 4, 0x0a0b0c, 2.5);
    plot_polyline(p, xy, 2, 0xff7f0e, 1.5);
    plot_disc(p, 7, 8, 3, 0x1f77b4);
}

/* Each shape as its element, colours as 6 hex digits (leading zeros
 * kept), in a document 40 wide and 30 high that is closed at the end. */
START_TEST(test_plot_svg_shapes)
{
    char *s = svg_of(draw_shapes);

    ck_assert_ptr_nonnull(strstr(s, "width='40' height='30' "
                                    "viewBox='0 0 40 30'"));
    ck_assert_ptr_nonnull(strstr(s, "<rect x='1.0' y='2.0' width='3.0' "
                                    "height='4.0' fill='none' "
                                    "stroke='#0000ff'/>"));
    ck_assert_ptr_nonnull(strstr(s, "<rect x='5.0' y='6.0' width='7.0' "
                                    "height='8.0' fill='#00ff00' "
                                    "fill-opacity='0.25' "
                                    "stroke='#000000'/>"));
    ck_assert_ptr_nonnull(strstr(s, "<line x1='1.0' y1='2.0' x2='3.0' "
                                    "y2='4.0' stroke='#0a0b0c' "
                                    "stroke-width='2.5'/>"));
    ck_assert_ptr_nonnull(strstr(s, "stroke='#ff7f0e' stroke-width='1.5' "
                                    "points='1.0,2.0 3.2,4.0'/>"));
    ck_assert_ptr_nonnull(strstr(s, "<circle cx='7.0' cy='8.0' r='3' "
                                    "fill='#1f77b4'/>"));
    ck_assert_str_eq(s + strlen(s) - 7, "</svg>\n");
    free(s);
}
END_TEST

static void
draw_texts(plot_t *p)
{
    plot_text(p, 1, 2, PLOT_ANCHOR_START, 12, 0, "a<b & c>d");
    plot_text(p, 3, 4, PLOT_ANCHOR_MIDDLE, 15, 1, "T");
    plot_text(p, 5, 6, PLOT_ANCHOR_END, 12, 0, "E");
}

/* Text: &, < and > escaped; the anchor, a size other than 12 and bold
 * written as attributes, only when they differ from the defaults. */
START_TEST(test_plot_svg_text)
{
    char *s = svg_of(draw_texts);

    ck_assert_ptr_nonnull(strstr(s, "<text x='1.0' y='2.0'>"
                                    "a&lt;b &amp; c&gt;d</text>"));
    ck_assert_ptr_nonnull(strstr(s, "<text x='3.0' y='4.0' "
                                    "text-anchor='middle' font-size='15' "
                                    "font-weight='bold'>T</text>"));
    ck_assert_ptr_nonnull(strstr(s, "<text x='5.0' y='6.0' "
                                    "text-anchor='end'>E</text>"));
    free(s);
}
END_TEST

/* ---- errors ----------------------------------------------------------- */

/* A PNG that cannot be written (a stream open for reading only) makes
 * plot_finish fail. */
START_TEST(test_plot_png_write_error)
{
    FILE *r;
    plot_t *p;
    char path[64];

    /* tmpfile has no name: make a file of our own, open it read-only */
    snprintf(path, sizeof(path), "/tmp/check_plot.%ld", (long)getpid());
    r = fopen(path, "w");
    ck_assert_ptr_nonnull(r);
    fclose(r);
    r = fopen(path, "r");
    ck_assert_ptr_nonnull(r);
    remove(path);
    p = plot_create(r, PLOT_FORMAT_PNG, 8, 8);
    ck_assert_ptr_nonnull(p);
    plot_line(p, 1, 1, 6, 6, BLACK, 1);
    ck_assert_int_eq(plot_finish(p), -1);
    fclose(r);
}
END_TEST

/* A PNG whose signature fits but whose chunks do not (an unbuffered
 * stream on 20 bytes of memory) makes plot_finish fail too. */
START_TEST(test_plot_png_chunk_write_error)
{
    char buf[20];
    FILE *f = fmemopen(buf, sizeof(buf), "w");
    plot_t *p;

    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(setvbuf(f, NULL, _IONBF, 0), 0);
    p = plot_create(f, PLOT_FORMAT_PNG, 8, 8);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(plot_finish(p), -1);
    fclose(f);
}
END_TEST

/* smlp-train's plot of a log (train_report.c) whose training loss went
 * to +inf at one row and to NaN at another: each curve leaves out the
 * rows it cannot place, so the SVG holds no "inf" or "nan" coordinate and
 * the training-loss polyline joins the two finite rows.  (A polyline with
 * a non-finite point would be drawn as nothing in the PNG, above.) */
START_TEST(test_plot_report_nonfinite_points)
{
    static const double loss[4] = {2.0, INFINITY, NAN, 0.5};
    struct train_log log = {0};
    char path[] = "/tmp/smlp-plot-XXXXXX.svg", err[256], *s, *line;
    const char *blue = "<polyline fill='none' stroke='#1f77b4'";
    int fd, k, points = 0;
    FILE *f;
    size_t n;

    for (k = 0; k < 4; k++) {
        struct train_row r = {k + 1, 0.25 * (k + 1), 1e-3, loss[k], 0.5,
                              100, k == 3 ? 0.7 : NAN, k == 3 ? 0.8 : NAN};
        ck_assert_int_eq(train_log_add(&log, &r), 0);
    }
    fd = mkstemps(path, 4);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_msg(train_log_write_plot(&log, path, "t", err, sizeof(err)) ==
                      0,
                  "%s", err);
    f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    s = (char *)slurp(f, &n);
    fclose(f);
    unlink(path);
    ck_assert_ptr_null(strstr(s, "inf"));
    ck_assert_ptr_null(strstr(s, "nan"));
    line = strstr(s, blue);
    ck_assert_msg(line != NULL, "no training-loss polyline in %s", s);
    line = strstr(line, "points='");
    ck_assert_ptr_nonnull(line);
    for (line += 8; *line != '\'' && *line != '\0'; line++)
        points += *line == ',';
    ck_assert_int_eq(points, 2);
    free(s);
    train_log_free(&log);
}
END_TEST

static Suite *
plot_suite(void)
{
    Suite *s = suite_create("plot");
    TCase *tc = tcase_create("png");

    tcase_add_test(tc, test_plot_png_blank);
    tcase_add_test(tc, test_plot_png_disc);
    tcase_add_test(tc, test_plot_png_lines);
    tcase_add_test(tc, test_plot_png_edges);
    tcase_add_test(tc, test_plot_png_polyline_joint);
    tcase_add_test(tc, test_plot_png_polyline_points);
    tcase_add_test(tc, test_plot_png_two_lines);
    tcase_add_test(tc, test_plot_png_rect);
    tcase_add_test(tc, test_plot_png_text_place);
    tcase_add_test(tc, test_plot_png_text_glyphs);
    tcase_add_test(tc, test_plot_png_text_clipped);
    tcase_add_test(tc, test_plot_png_write_error);
    tcase_add_test(tc, test_plot_png_chunk_write_error);
    suite_add_tcase(s, tc);
    tc = tcase_create("font_svg");
    tcase_add_test(tc, test_plot_font_glyphs);
    tcase_add_test(tc, test_plot_svg_shapes);
    tcase_add_test(tc, test_plot_svg_text);
    tcase_add_test(tc, test_plot_report_nonfinite_points);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(plot_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
