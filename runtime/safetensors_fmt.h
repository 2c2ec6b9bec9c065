/*
 * safetensors_fmt.h - what the safetensors reader (safetensors.c) and
 * writer (safetensors_write.c) share: the format's constants and dtypes,
 * tensor sizes and shapes in messages.  Private to runtime/.
 */
#ifndef SMLP_SAFETENSORS_FMT_H
#define SMLP_SAFETENSORS_FMT_H

#include <stddef.h>
#include <stdint.h>

/* The writer starts the data block on a multiple of this many bytes. */
#define ST_DATA_ALIGN 64
/* The reserved top-level key of the string->string metadata. */
#define ST_META_KEY "__metadata__"

/* The dtypes of the format, their smlp counterpart and their bit size. */
struct dtype_info {
    const char *name;
    int32_t dtype; /* SMLP_DTYPE_*, or -1 when smlp has none */
    uint32_t bits;
};

/* Returns the table row of a dtype name, or NULL for an unknown one. */
const struct dtype_info *smlp__st_dtype_lookup(const char *name);

/*
 * Computes the byte size of a tensor of `bits`-bit elements.  Returns 0,
 * -1 when the size does not fit in 64 bits (or in size_t), or -2 when
 * sub-byte elements do not fill a whole number of bytes.  Any zero
 * dimension makes the size 0 whatever the others are.
 */
int smlp__st_tensor_nbytes(const int64_t *shape, int32_t rank, uint32_t bits,
                           uint64_t *out);

/* Formats a shape as "[2, 3]" for messages; returns buf. */
const char *smlp__st_shape_str(const int64_t *shape, int32_t rank, char *buf,
                               size_t len);

#endif /* SMLP_SAFETENSORS_FMT_H */
