/*
 * cudaemu.h - runs the CUDA kernels of the plugins on the CPU, for tests.
 *
 * tests/cudaemu/translate turns a plugin's cuda.cu into C++ that g++
 * compiles against this header (through the cuda_runtime.h and
 * cublas_v2.h next to it, which come first in the include path): kernel
 * launches `k<<<grid, block, shared, stream>>>(args)` become
 * SMLP_EMU_LAUNCH(k, grid, block, shared, stream)(args), and a dynamic
 * `extern __shared__ T name[];` a pointer to the launch's shared bytes.
 * Everything else is the kernel source as nvcc sees it.
 *
 * A launch checks its configuration as the GPU would (block of 1 to 1024
 * threads, grid y and z at most 65535, shared memory at most 48 KiB) and
 * enqueues the grid on the stream of tests/fakecuda.c as a host function,
 * so it runs in stream order with the copies, memsets and events around
 * it.  There the blocks run one after the other, each thread of a block
 * as a fiber (cudaemu.cc): __syncthreads, __syncwarp and __match_any_sync
 * switch between them, so every thread of the block reaches a barrier
 * before any passes it, as on the GPU; a kernel without barriers runs
 * its threads one after the other on one stack.  __shared__ arrays
 * are per OS thread statics: one block runs at a time on a stream's
 * thread.  The _rn intrinsics are plain IEEE operations (the build does
 * not contract a * b + c).  What this cannot show: timing, races between
 * threads of a block that do not synchronise (fibers switch only at
 * barriers), memory-model and warp-divergence effects, and the real
 * cuBLAS (an OpenBLAS stand-in, fakecuda.c).
 */
#ifndef SMLP_CUDAEMU_H
#define SMLP_CUDAEMU_H

/* The real headers first, as a host compiler sees them (no __CUDACC__). */
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <tuple>
#include <utility>

#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#undef __forceinline__
#undef __noinline__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __shared__ static thread_local
#ifndef __CUDACC__
#define __CUDACC__ 1
#endif

/* Defined by the test program (cudaemu.cc), used by plugins built with
 * -fvisibility=hidden: the declarations must say it is elsewhere. */
#pragma GCC visibility push(default)
namespace smlp_emu {

struct ids {
    uint3 thread, block;
    dim3 block_dim, grid_dim;
};
/* The running thread's coordinates (per OS thread: the stream's). */
extern thread_local ids *cur;

void syncthreads();
void syncwarp(unsigned mask);
unsigned match_any(unsigned mask, long long value);
void *dynamic_shared();

/* Type-erased kernel call with its arguments copied at the launch. */
struct job {
    virtual ~job() {}
    virtual void call() = 0;
};

template <class... P> struct bound : job {
    void (*k)(P...);
    std::tuple<P...> args;
    template <class... A>
    bound(void (*k_)(P...), A &&...a) : k(k_), args(std::forward<A>(a)...)
    {
    }
    void call() override { std::apply(k, args); }
};

/* Checks the configuration and enqueues the grid (cudaemu.cc). */
void launch(job *j, const char *name, dim3 grid, dim3 block,
            size_t shared, cudaStream_t stream);

template <class... P> struct launcher {
    void (*k)(P...);
    const char *name;
    dim3 grid, block;
    size_t shared;
    cudaStream_t stream;
    template <class... A> void operator()(A &&...a)
    {
        launch(new bound<P...>(k, P(std::forward<A>(a))...), name, grid,
               block, shared, stream);
    }
};

template <class... P>
launcher<P...>
make_launcher(void (*k)(P...), const char *name, dim3 grid, dim3 block,
              size_t shared = 0, cudaStream_t stream = 0)
{
    return launcher<P...>{k, name, grid, block, shared, stream};
}

/* cuBLAS is dlopen'ed by name: the test program defines it (fakecuda.c). */
void *dlopen_blas(const char *name, int mode);

} // namespace smlp_emu
#pragma GCC visibility pop

#define SMLP_EMU_LAUNCH(k, ...) smlp_emu::make_launcher(k, #k, __VA_ARGS__)
#define dlopen(name, mode) smlp_emu::dlopen_blas(name, mode)

#define threadIdx (smlp_emu::cur->thread)
#define blockIdx (smlp_emu::cur->block)
#define blockDim (smlp_emu::cur->block_dim)
#define gridDim (smlp_emu::cur->grid_dim)
#define warpSize 32

static inline void __syncthreads() { smlp_emu::syncthreads(); }
static inline void __syncwarp(unsigned mask = 0xffffffffu)
{
    smlp_emu::syncwarp(mask);
}
static inline unsigned __match_any_sync(unsigned mask, long long v)
{
    return smlp_emu::match_any(mask, v);
}
template <class T> static inline T
smlp_emu_atomic_add(T *p, T v)
{
    T old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(p, &old, old + v, false,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
    return old;
}
static inline int atomicAdd(int *p, int v)
{
    return smlp_emu_atomic_add(p, v);
}
static inline unsigned atomicAdd(unsigned *p, unsigned v)
{
    return smlp_emu_atomic_add(p, v);
}
static inline unsigned long long atomicAdd(unsigned long long *p,
                                           unsigned long long v)
{
    return smlp_emu_atomic_add(p, v);
}
/* Floats by compare-and-swap of their bits. */
template <class F, class U> static inline F
smlp_emu_atomic_add_fp(F *p, F v)
{
    U o = __atomic_load_n((U *)p, __ATOMIC_RELAXED), n;
    F of, nf;

    do {
        memcpy(&of, &o, sizeof(F));
        nf = of + v;
        memcpy(&n, &nf, sizeof(F));
    } while (!__atomic_compare_exchange_n((U *)p, &o, n, false,
                                          __ATOMIC_RELAXED,
                                          __ATOMIC_RELAXED));
    return of;
}
static inline float atomicAdd(float *p, float v)
{
    return smlp_emu_atomic_add_fp<float, uint32_t>(p, v);
}
static inline double atomicAdd(double *p, double v)
{
    return smlp_emu_atomic_add_fp<double, uint64_t>(p, v);
}
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline double __dmul_rn(double a, double b) { return a * b; }

#endif
