/* A tiny built-in 5x7 bitmap font for labels on stem's pictures (contact sheets): lower-
 * case letters, digits and | - . : / ( ) _ , and space; upper case is drawn as lower case,
 * anything else as a gap. Each glyph is 5 columns x 7 rows, drawn at an integer scale with
 * one column of spacing between glyphs. */
#ifndef STEM_IO_BITMAP_FONT_H
#define STEM_IO_BITMAP_FONT_H

#include "io/image.h"

#define STEM_FONT_W 5
#define STEM_FONT_H 7

/* Width in pixels of `text` at `scale` (no trailing spacing); 0 for "". */
int stem_font_text_width(const char *text, int scale);

/* Draws `text` with its top-left at (x, y) in colour rgb; pixels outside the image, or
 * right of x_max (exclusive), are clipped. */
void stem_font_draw(stem_image *img, int x, int y, int x_max, const char *text, int scale, const uint8_t rgb[3]);

#endif
