/*
 * safetensors.h - reading and writing .safetensors files (internal).
 *
 * Format: 8-byte little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
 *  "__metadata__": {"k": "v"}}, then the data block.  Offsets are relative
 * to the data block.  The header is untrusted: it is parsed with jansson
 * and every field is checked (types, shape products that overflow, offsets
 * inside the data block, extent == numel * dtype size, no overlaps,
 * duplicate names) before any data is used.
 */
#ifndef SMLP_SAFETENSORS_H
#define SMLP_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "../ops/smlp_plugin.h"

struct smlp__st_entry {
    char *name;
    int32_t dtype;          /* enum smlp_dtype, or -1 for a dtype smlp does
                               not compute with (see dtype_name) */
    char dtype_name[8];     /* as in the file: "F32", "I32", "F16", ... */
    int32_t rank;
    int64_t shape[SMLP_MAX_RANK];
    const void *data;       /* in the file's bytes (read) or the caller's
                               memory (write) */
    size_t nbytes;
};

struct smlp__st_file {
    int32_t n_entries;
    struct smlp__st_entry *entries; /* sorted by name */
    int32_t n_meta;
    char **meta_keys;
    char **meta_values;
    unsigned char *bytes; /* the whole file, read at open */
    size_t len;
};

/*
 * Reads and validates `path`.  Errors name the file and the tensor or field
 * at fault: "w.safetensors: tensor 'blocks.0.w1': data_offsets [0, 12]
 * hold 12 bytes, shape [2, 3] F32 needs 24".  Returns SMLP_OK, SMLP_EIO
 * (cannot open/read; a directory is reported as such), SMLP_EBADFILE or
 * SMLP_ENOMEM.
 */
int smlp__st_open(const char *path, struct smlp__st_file **out, char *err,
                  size_t errlen);

/* Binary search by name; NULL when absent. */
const struct smlp__st_entry *smlp__st_find(const struct smlp__st_file *f,
                                           const char *name);

/* The value of metadata key `key` (it belongs to f), or NULL. */
const char *smlp__st_meta(const struct smlp__st_file *f, const char *key);

void smlp__st_close(struct smlp__st_file *f);

/*
 * Writes entries (dtype and dtype_name must agree; data/nbytes from the
 * caller) and optional metadata pairs to `path` atomically: a temporary
 * file in the same directory, fsync, rename.  Nothing is left behind on
 * failure.  The data block is 64-byte aligned relative to the file start
 * (the header is padded with spaces, as the format allows).
 */
int smlp__st_write(const char *path, const struct smlp__st_entry *entries,
                   int32_t n_entries, const char *const *meta_keys,
                   const char *const *meta_values, int32_t n_meta,
                   char *err, size_t errlen);

/*
 * The data block's hash (safetensors_hash.c).  smlp's writers put
 * smlp__st_data_hash of their entries (the data block smlp__st_write
 * makes: the entries' bytes in their order) under this metadata key, as
 * 16 lowercase hex digits; smlp__st_open checks a file that has the key
 * (SMLP_EBADFILE naming it when the data differ) and takes one without
 * it as it is.
 */
#define SMLP__ST_HASH_KEY "smlp.data_hash"

struct smlp__st_hash {
    uint64_t h, total;
    unsigned char buf[8];
    int nbuf;
};

void smlp__st_hash_init(struct smlp__st_hash *s);
void smlp__st_hash_update(struct smlp__st_hash *s, const void *data,
                          size_t n);
uint64_t smlp__st_hash_final(const struct smlp__st_hash *s);
uint64_t smlp__st_data_hash(const struct smlp__st_entry *entries,
                            int32_t n);

#endif /* SMLP_SAFETENSORS_H */
