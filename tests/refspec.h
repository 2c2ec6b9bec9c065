/*
 * refspec.h - the parameters and inputs of the PyTorch reference
 * (tests/reference/sparse_mlp_ref.py) drawn again from the generator
 * settings its files hold: "init.NAME": "KIND SEED CENTER HALF SUM" in
 * the safetensors __metadata__, for every parameter and input.
 *
 *   u_j = (mix64(seed + (j + 1) * 0x9E3779B97F4A7C15) >> 40) * 2^-24
 *
 * (mix64 = splitmix64's finaliser: exact 24-bit uniforms in [0, 1));
 * kind u: element j = float(center + (2 u_j - 1) * half); kind n (an
 * Irwin-Hall normal): float(center + (u_12j + ... + u_12j+11 - 6) * half).
 * The sum of the values drawn must match SUM (relative 1e-9).
 *
 * Used by check_reference, check_reference_grad, check_cuda_moe and the
 * ref_weights helper; no Check calls, errors go to err.
 */
#ifndef SMLP_TEST_REFSPEC_H
#define SMLP_TEST_REFSPEC_H

#include <stddef.h>
#include <stdint.h>

#include "smlp.h"

/* Fills every parameter and, with `inputs`, every input of session s from
 * the reference file at `path`.  0, or -1 with a message in err. */
int refspec_fill(smlp_session_t *s, const char *path, int inputs, char *err,
                 size_t errlen);

/* Fills the one tensor `name` of s (a parameter or an f32 input). */
int refspec_fill_tensor(smlp_session_t *s, const char *path,
                        const char *name, char *err, size_t errlen);

/* u_j of the generator's stream `seed`: a 24-bit uniform in [0, 1). */
double refspec_uniform(uint64_t seed, uint64_t j);

/* Writes the reference's parameters for graph g (a CPU inference session
 * at batch 1) to the safetensors file `out`.  0, or -1 with err. */
int refspec_write_weights(const smlp_graph_t *g, smlp_registry_t *reg,
                          const char *path, const char *out, char *err,
                          size_t errlen);

#endif /* SMLP_TEST_REFSPEC_H */
