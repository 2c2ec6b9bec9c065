/*
 * utf8.h - the one test of well-formed UTF-8 that the graph decoder
 * (fbgraph.c: FlatBuffers strings are UTF-8) and the safetensors writer
 * (names and metadata are JSON strings) share; a header, because the two
 * are convenience libraries that do not link each other.
 */
#ifndef SMLP_UTF8_H
#define SMLP_UTF8_H

#include <stddef.h>
#include <stdint.h>

/*
 * The offset of the first byte of s[0..n) that does not belong to
 * well-formed UTF-8 (no overlong forms, surrogates or code points beyond
 * U+10FFFF), or n when there is none.
 */
static inline size_t
smlp__utf8_bad_at(const uint8_t *s, size_t n)
{
    size_t i = 0, start, len, k;
    uint32_t cp;

    while (i < n) {
        start = i;
        cp = s[i++];
        if (cp < 0x80)
            continue;
        if (cp >= 0xc2 && cp <= 0xdf) {
            len = 1;
            cp &= 0x1f;
        } else if (cp >= 0xe0 && cp <= 0xef) {
            len = 2;
            cp &= 0x0f;
        } else if (cp >= 0xf0 && cp <= 0xf4) {
            len = 3;
            cp &= 0x07;
        } else {
            return start;
        }
        for (k = 0; k < len; k++, i++) {
            if (i >= n || (s[i] & 0xc0) != 0x80)
                return start;
            cp = (cp << 6) | (s[i] & 0x3f);
        }
        if ((len == 2 && cp < 0x800) || (len == 3 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return start;
    }
    return n;
}

#endif /* SMLP_UTF8_H */
