/*
 * init.c - seeded initializers.
 *
 * Element i of a tensor is a pure function of (seed, i), so initialization
 * does not depend on threads or order, and a reference implementation can
 * reproduce it:
 *
 *   mix(x)   = SplitMix64's finalizer of x + 0x9E3779B97F4A7C15
 *   bits(i)  = mix(seed ^ mix(i))
 *   u(i)     = (bits(i) >> 40) / 2^24                     in [0, 1)
 *   Uniform  = a + (b - a) * u(i)
 *   Normal   = a + b * sqrt(-2 ln u1) * cos(2 pi u2),  Box-Muller with
 *              u1 = ((bits(2i) >> 40) + 0.5) / 2^24,  u2 = u(2i + 1)
 *   Zeros, Ones, Constant (a)
 *
 * computed in double and rounded to f32 (i32 tensors take the value
 * rounded to nearest).  `seed_xor` lets synthetic inputs vary with the
 * session seed.
 */
#include <math.h>

#include "internal.h"

uint64_t
smlp__mix64(uint64_t x)
{
    x += UINT64_C(0x9E3779B97F4A7C15);
    x = (x ^ (x >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94D049BB133111EB);
    return x ^ (x >> 31);
}

static double
unit(uint64_t seed, uint64_t i)
{
    return (double)(smlp__mix64(seed ^ smlp__mix64(i)) >> 40) *
           (1.0 / 16777216.0);
}

static double
value(const struct smlp__init_ir *init, uint64_t seed, uint64_t i)
{
    double u1, u2;

    switch (init->kind) {
    case SMLP__INIT_ONES:
        return 1.0;
    case SMLP__INIT_CONSTANT:
        return init->a;
    case SMLP__INIT_UNIFORM:
        return (double)init->a +
               ((double)init->b - (double)init->a) * unit(seed, i);
    case SMLP__INIT_NORMAL:
        u1 = ((double)(smlp__mix64(seed ^ smlp__mix64(2 * i)) >> 40) + 0.5) *
             (1.0 / 16777216.0);
        u2 = unit(seed, 2 * i + 1);
        return (double)init->a + (double)init->b * sqrt(-2.0 * log(u1)) *
                                     cos(2.0 * M_PI * u2);
    default:
        return 0.0;
    }
}

void
smlp__init_fill(const struct smlp__init_ir *init, uint64_t seed_xor,
                int dtype, void *data, uint64_t n)
{
    uint64_t seed = init->seed ^ seed_xor, i;

    if (dtype == SMLP_DTYPE_F32) {
        float *f = data;
        for (i = 0; i < n; i++)
            f[i] = (float)value(init, seed, i);
    } else if (dtype == SMLP_DTYPE_I32) {
        int32_t *v = data;
        for (i = 0; i < n; i++)
            v[i] = (int32_t)lrint(value(init, seed, i));
    }
}
