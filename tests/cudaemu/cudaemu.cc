/*
 * cudaemu.cc - the CPU side of cudaemu.h: launches on fakecuda's streams,
 * blocks of fibers, barriers and warp votes.
 *
 * Linked into the test programs (tests/check_cuda_emu,
 * check_cuda_train_emu, check_cuda_moe_emu), whose symbols the emulated
 * plugins (tests/cudaemu/.libs/NAME.so) resolve when they are loaded.  A grid
 * runs on the worker thread of its stream, block after block.  In a
 * block each thread is a fiber: it starts when every thread before it
 * has finished or waits, on the stack of a finished one if there is one
 * (so a kernel without barriers runs its threads one after the other on
 * one stack), and runs until it finishes or waits at a barrier or a warp
 * vote; then the waiting ones are resumed in turn.  "Before" is a seeded
 * shuffle of the block's threads, another for every block: a thread that
 * reads what another writes without a barrier between them gets the
 * value in some blocks and not in others, as on a GPU, where nothing
 * orders them either.  A pass in which no
 * thread can go on is a deadlock (a barrier some threads never reach, a
 * warp vote waiting for a lane that has exited): the test stops with a
 * message naming the kernel, block and thread, where a GPU would hang.
 * CUDAEMU_PROFILE=1 prints the time and launches of each kernel at exit.
 */
#include "cudaemu.h"

#include <map>
#include <mutex>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <string>
#include <time.h>
#include <ucontext.h>
#include <vector>

extern "C" void fakecuda_set_error(cudaError_t e);

namespace smlp_emu {

thread_local ids *cur;

namespace {

const size_t STACK = 256 * 1024;

/*
 * Switching fibers.  On x86-64 a switch saves the callee-saved registers
 * and the SSE/x87 control words on the old stack and restores the new
 * one's (no system call: glibc's swapcontext also sets the signal mask,
 * a system call per switch); elsewhere ucontext.
 */
#if defined(__x86_64__)
extern "C" void smlp_emu_switch(void **save_sp, void *load_sp);
__asm__(".text\n"
        ".globl smlp_emu_switch\n"
        ".hidden smlp_emu_switch\n"
        ".type smlp_emu_switch, @function\n"
        "smlp_emu_switch:\n"
        "    pushq %rbp\n"
        "    pushq %rbx\n"
        "    pushq %r12\n"
        "    pushq %r13\n"
        "    pushq %r14\n"
        "    pushq %r15\n"
        "    subq $8, %rsp\n"
        "    stmxcsr (%rsp)\n"
        "    fnstcw 4(%rsp)\n"
        "    movq %rsp, (%rdi)\n"
        "    movq %rsi, %rsp\n"
        "    ldmxcsr (%rsp)\n"
        "    fldcw 4(%rsp)\n"
        "    addq $8, %rsp\n"
        "    popq %r15\n"
        "    popq %r14\n"
        "    popq %r13\n"
        "    popq %r12\n"
        "    popq %rbx\n"
        "    popq %rbp\n"
        "    ret\n"
        ".size smlp_emu_switch, .-smlp_emu_switch\n");

struct context {
    void *sp;
};

/* A stack whose first switch "returns" into fn, as if fn had been
 * called (the stack then 8 bytes past a 16-byte boundary). */
void
context_make(context *c, char *stack, size_t size, void (*fn)())
{
    uintptr_t top = ((uintptr_t)stack + size) & ~(uintptr_t)15;
    uint64_t *sp = (uint64_t *)top;

    *--sp = 0;                 /* fn's return address: never used */
    *--sp = (uint64_t)fn;      /* popped by ret */
    for (int i = 0; i < 6; i++)
        *--sp = 0;             /* rbp rbx r12 r13 r14 r15 */
    *--sp = 0x037f00001f80ull; /* MXCSR default, x87 control word */
    c->sp = sp;
}

void
context_switch(context *save, context *load)
{
    smlp_emu_switch(&save->sp, load->sp);
}
#else
struct context {
    ucontext_t uc;
};

void
context_make(context *c, char *stack, size_t size, void (*fn)())
{
    getcontext(&c->uc);
    c->uc.uc_stack.ss_sp = stack;
    c->uc.uc_stack.ss_size = size;
    c->uc.uc_link = NULL;
    makecontext(&c->uc, fn, 0);
}

void
context_switch(context *save, context *load)
{
    swapcontext(&save->uc, &load->uc);
}
#endif

struct fiber {
    context ctx;
    ids id;
    char *stack; /* NULL until the thread starts */
    bool done;
};

/* A warp's votes: lane l's vote number seq[l] put its value in
 * val[seq[l] & 1][l] (two slots: a lane may vote again before the
 * others have read its previous value). */
struct warp {
    long long val[2][32];
    unsigned seq[32];
};

struct grid_job {
    job *j;
    const char *name;
    dim3 grid, block;
    size_t shared;
    uint64_t seed; /* of the threads' order */
};

struct block_run {
    const grid_job *g;
    std::vector<fiber> f;
    std::vector<int> order; /* in which the threads start and resume */
    std::vector<warp> warps;
    int n, live, running;
    int bar_count;
    unsigned bar_gen;
    unsigned long progress;
    context sched;
};

/* The block running on this OS thread (a stream's worker). */
thread_local block_run *blk;
thread_local const grid_job *running_job;
/* Stacks of threads that have finished, for the next ones to start. */
thread_local std::vector<char *> free_stacks;
thread_local std::vector<unsigned char> shared_bytes;

struct prof {
    double s;
    long n;
};
std::mutex profile_lock;
std::map<std::string, prof> *profile;

void
print_profile()
{
    for (auto &p : *profile)
        fprintf(stderr, "cudaemu: %-28s %6ld launches %9.3f s\n",
                p.first.c_str(), p.second.n, p.second.s);
}

double
now_s()
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

[[noreturn]] void
die(const char *what)
{
    const grid_job *g = running_job;
    const ids *c = cur;

    fprintf(stderr,
            "cudaemu: kernel %s, block (%u, %u, %u), thread (%u, %u, %u): "
            "%s\n",
            g != NULL ? g->name : "?", c ? c->block.x : 0,
            c ? c->block.y : 0, c ? c->block.z : 0, c ? c->thread.x : 0,
            c ? c->thread.y : 0, c ? c->thread.z : 0, what);
    abort();
}

void
yield()
{
    fiber *me = &blk->f[(size_t)blk->running];

    context_switch(&me->ctx, &blk->sched);
    cur = &me->id;
}

/* A barrier that all live threads have reached opens. */
void
maybe_open_barrier()
{
    if (blk->bar_count > 0 && blk->bar_count == blk->live) {
        blk->bar_count = 0;
        blk->bar_gen++;
        blk->progress++;
    }
}

void
fiber_main()
{
    fiber *me = &blk->f[(size_t)blk->running];

    cur = &me->id;
    blk->g->j->call();
    me->done = true;
    free_stacks.push_back(me->stack); /* free once we have switched */
    blk->live--;
    blk->progress++;
    maybe_open_barrier();
    context_switch(&me->ctx, &blk->sched);
    abort(); /* a finished fiber is never resumed */
}

void
set_ids(ids *id, const grid_job *g, unsigned bx, unsigned by, unsigned bz,
        int t)
{
    unsigned bxy = g->block.x * g->block.y;

    id->thread.x = (unsigned)t % g->block.x;
    id->thread.y = ((unsigned)t / g->block.x) % g->block.y;
    id->thread.z = (unsigned)t / bxy;
    id->block.x = bx;
    id->block.y = by;
    id->block.z = bz;
    id->block_dim = g->block;
    id->grid_dim = g->grid;
}

void
start(fiber *f)
{
    if (free_stacks.empty()) {
        char *st = (char *)malloc(STACK);
        if (st == NULL)
            die("out of memory for thread stacks");
        free_stacks.push_back(st);
    }
    f->stack = free_stacks.back();
    free_stacks.pop_back();
    context_make(&f->ctx, f->stack, STACK, fiber_main);
}

void
run_block(const grid_job *g, unsigned bx, unsigned by, unsigned bz)
{
    block_run b;
    int n = (int)(g->block.x * g->block.y * g->block.z), t;

    /* Shared memory starts as garbage on a GPU: NaN floats, -1 integers
     * here, so that a kernel reading bytes it never wrote goes wrong. */
    if (g->shared > 0)
        memset(shared_bytes.data(), 0xff, g->shared);
    b.g = g;
    b.f.resize((size_t)n);
    b.warps.assign((size_t)(n + 31) / 32, warp());
    b.n = b.live = n;
    b.running = 0;
    b.bar_count = 0;
    b.bar_gen = 0;
    b.progress = 0;
    b.order.resize((size_t)n);
    for (t = 0; t < n; t++) {
        set_ids(&b.f[(size_t)t].id, g, bx, by, bz, t);
        b.f[(size_t)t].stack = NULL;
        b.f[(size_t)t].done = false;
        b.order[(size_t)t] = t;
    }
    /* Fisher-Yates with splitmix64 of (kernel, block, i). */
    for (t = n - 1; t > 0; t--) {
        uint64_t z = g->seed + 0x9e3779b97f4a7c15ull *
                                   (((uint64_t)bz << 42) ^
                                    ((uint64_t)by << 21) ^ bx ^
                                    ((uint64_t)t << 50));
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        std::swap(b.order[(size_t)t],
                  b.order[(size_t)(z % (uint64_t)(t + 1))]);
    }
    blk = &b;
    while (b.live > 0) {
        unsigned long before = b.progress;
        for (int i = 0; i < n; i++) {
            t = b.order[(size_t)i];
            fiber *f = &b.f[(size_t)t];
            if (f->done)
                continue;
            if (f->stack == NULL) {
                start(f);
                b.progress++;
            }
            b.running = t;
            cur = &f->id;
            context_switch(&b.sched, &f->ctx);
        }
        if (b.live > 0 && b.progress == before) {
            for (t = 0; t < n && b.f[(size_t)t].done; t++)
                ;
            cur = &b.f[(size_t)t].id;
            die("deadlock: threads wait at a barrier or warp vote that "
                "the others never reach");
        }
    }
    blk = NULL;
    cur = NULL;
}

void
run_grid(void *arg)
{
    grid_job *g = (grid_job *)arg;
    double t0 = now_s();
    unsigned bx, by, bz;

    running_job = g;
    if (shared_bytes.size() < g->shared)
        shared_bytes.resize(g->shared);
    for (bz = 0; bz < g->grid.z; bz++)
        for (by = 0; by < g->grid.y; by++)
            for (bx = 0; bx < g->grid.x; bx++)
                run_block(g, bx, by, bz);
    if (getenv("CUDAEMU_PROFILE") != NULL) {
        std::lock_guard<std::mutex> l(profile_lock);
        if (profile == NULL) {
            profile = new std::map<std::string, prof>();
            atexit(print_profile);
        }
        prof &p = (*profile)[g->name];
        p.s += now_s() - t0;
        p.n++;
    }
    running_job = NULL;
    delete g->j;
    delete g;
}

/* Waits until every lane of `mask` has made its vote number s (lane l
 * is thread base + l). */
void
wait_lanes(warp &w, unsigned mask, unsigned s, int base)
{
    for (;;) {
        bool all = true;
        for (int l = 0; l < 32; l++) {
            if (!(mask & (1u << l)) || w.seq[l] >= s)
                continue;
            if (base + l >= blk->n || blk->f[(size_t)(base + l)].done)
                die("a warp vote waits for a lane that has exited or does "
                    "not exist");
            all = false;
        }
        if (all)
            return;
        yield();
    }
}

unsigned
vote(unsigned mask, long long value, bool match)
{
    int t = blk->running, lane = t % 32, base = t - lane;
    warp &w = blk->warps[(size_t)t / 32];

    if (!(mask & (1u << lane)))
        die("a warp vote whose mask leaves out the calling lane");
    blk->progress++;
    unsigned s = ++w.seq[lane];
    w.val[s & 1][lane] = value;
    wait_lanes(w, mask, s, base);
    if (!match)
        return 0;
    unsigned r = 0;
    for (int l = 0; l < 32; l++)
        if ((mask & (1u << l)) && w.val[s & 1][l] == value)
            r |= 1u << l;
    return r;
}

} // namespace

void
syncthreads()
{
    unsigned g = blk->bar_gen;

    blk->progress++;
    blk->bar_count++;
    maybe_open_barrier();
    while (blk->bar_gen == g)
        yield();
}

void
syncwarp(unsigned mask)
{
    vote(mask, 0, false);
}

unsigned
match_any(unsigned mask, long long value)
{
    return vote(mask, value, true);
}

void *
dynamic_shared()
{
    return shared_bytes.data();
}

void
launch(job *j, const char *name, dim3 grid, dim3 block, size_t shared,
       cudaStream_t stream)
{
    unsigned long threads =
        (unsigned long)block.x * block.y * (unsigned long)block.z;
    grid_job *g;

    if (threads < 1 || threads > 1024 || block.z > 64 || grid.x < 1 ||
        grid.x > 0x7fffffffu || grid.y < 1 || grid.y > 65535 ||
        grid.z < 1 || grid.z > 65535) {
        fakecuda_set_error(cudaErrorInvalidConfiguration);
        delete j;
        return;
    }
    if (shared > 48 * 1024) {
        fakecuda_set_error(cudaErrorInvalidValue);
        delete j;
        return;
    }
    /* The order's seed: the kernel's name (FNV-1a), so that a run is
     * the same every time. */
    uint64_t seed = 0xcbf29ce484222325ull;
    for (const char *c = name; *c != '\0'; c++)
        seed = (seed ^ (unsigned char)*c) * 0x100000001b3ull;
    g = new grid_job{j, name, grid, block, shared, seed};
    if (cudaLaunchHostFunc(stream, run_grid, g) != cudaSuccess) {
        fakecuda_set_error(cudaErrorInvalidResourceHandle);
        delete j;
        delete g;
    }
}

void *
dlopen_blas(const char *name, int mode)
{
    if (name != NULL && strncmp(name, "libcublas.so", 12) == 0)
        return (dlopen)(NULL, RTLD_NOW); /* fakecuda.c: the program */
    return (dlopen)(name, mode);
}

} // namespace smlp_emu
