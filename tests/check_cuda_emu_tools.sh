#!/bin/sh
# smlp-run and smlp-train with --device cuda, on any machine: the CUDA
# runtime and cuBLAS of tests/fakecuda.c and the emulated plugins
# (tests/cudaemu.am) are preloaded into the tools, so their GPU paths run
# with the plugins' own CUDA kernels on the CPU.  Against the same
# commands on the CPU:
#   - smlp-run on mixer_fmnist and sparse_mlp_fmnist (batch 4): every
#     output within a relative error max|gpu - cpu| / max|cpu| of 1e-4
#     (integer outputs equal), the report's "device" line (every node but
#     the reshapes, which are views, on the GPU; no fallback notice);
#   - smlp-train, three SGD steps of mixer_fmnist and of sparse_mlp_fmnist
#     on a tiny data set: each step's loss within 1e-4, the checkpoints'
#     tensors within 1e-4 of their largest entry, and the device
#     memory line: the backward on the GPU, parameters the checkpoint's
#     float bytes in MiB.
# Prints "N passed, M failed".  Exit 77 (skip) without python3.
B=${SMLP_TEST_BUILDDIR:-.}
RUN="$B/tools/smlp-run"
TRAIN="$B/tools/smlp-train"
EMU="$B/tests/cudaemu/.libs"
PY=${PYTHON3:-python3}
[ "$PY" = no ] && PY=python3
if ! command -v "$PY" >/dev/null 2>&1; then
    echo "skip - no python3"; exit 77
fi
T=$(mktemp -d /tmp/smlp-cudaemu-test.XXXXXX)
. "${SMLP_TEST_SRCDIR:-.}/tests/shlib.sh"

# gpu CMD...: CMD with the emulated CUDA (no pauses in the fake streams).
gpu() {
    SMLP_PLUGIN_PATH="$EMU" FAKECUDA_JITTER_US=0 \
        LD_PRELOAD="$EMU/libcudaemu.so" "$@"
}

cat >"$T/losses.py" <<'PY'
import csv, sys
a = [float(r["loss"]) for r in csv.DictReader(open(sys.argv[1]))]
b = [float(r["loss"]) for r in csv.DictReader(open(sys.argv[2]))]
assert len(a) == len(b) == int(sys.argv[3]), (a, b)
for x, y in zip(a, b):
    assert abs(x - y) <= 1e-4 * abs(y), (a, b)
PY
# MiB of the checkpoint's parameters: F32 tensors without optimizer state
# (AdamW's m. and v., SGD's momentum.) and not the state of norms.
cat >"$T/mib.py" <<'PY'
import st, sys
f = st.read(sys.argv[1])
n = sum(len(f.raw(k)) for k in f.names
        if not k.startswith(("optim.", "m.", "v.", "momentum."))
        and not k.endswith(("running_mean", "running_var")))
print("%.1f" % (n / 1048576.0))
PY
# near: every output or tensor within 1e-4 of the CPU's largest entry
# (1e-10: a tensor whose gradients cancel (a bias after three steps at
# 1e-12) has only rounding left to compare); integers equal.
NEAR="--scale tensor --rel 1e-4 --abs 1e-10"

for m in mixer_fmnist sparse_mlp_fmnist; do
    G="$B/graphs/$m.fbs"
    "$RUN" "$G" --batch 4 --repeat 1 --threads 2 --output "$T/$m.cpu.st" \
        >"$T/cpu.out" 2>&1 || { bad "$m: smlp-run on the CPU"; show "$T/cpu.out"; }
    gpu "$RUN" "$G" --batch 4 --repeat 1 --threads 2 --device cuda \
        --output "$T/$m.gpu.st" >"$T/gpu.out" 2>&1 ||
        { bad "$m: smlp-run --device cuda"; show "$T/gpu.out"; }
    # Every node but the reshapes (views: no kernel runs) on the GPU.
    n=$(sed -n 's/^graph .*, \([0-9]*\) nodes$/\1/p' "$T/cpu.out")
    v=$(sed -n 's/^  core\.reshape *\([0-9]*\) .*/\1/p' "$T/cpu.out")
    k=$((n - ${v:-0}))
    if grep -q "^device      cuda: $k of $n nodes" "$T/gpu.out" &&
       ! grep -q "no cuda kernel" "$T/gpu.out"
    then ok "$m: smlp-run puts $k of $n nodes on the GPU"
    else bad "$m: device line, want $k of $n"; show "$T/gpu.out"; fi
    if st near "$T/$m.cpu.st" "$T/$m.gpu.st" $NEAR >"$T/err" 2>&1
    then ok "$m: smlp-run --device cuda outputs within 1e-4 of the CPU's"
    else bad "$m: smlp-run outputs"; show "$T/err"; fi
done

D="$T/data"
make_idx_data "$D" 96 32 || exit 99
for m in mixer_fmnist sparse_mlp_fmnist; do
    G="$B/graphs/$m.fbs"
    A="--data $D --batch 32 --limit-test 32 --max-steps 3 --optimizer sgd
       --lr 0.05 --threads 2 --log-every 1"
    "$TRAIN" "$G" $A --metrics "$T/$m.cpu.csv" --out "$T/$m.cpu.ck" \
        >"$T/cpu.out" 2>&1 || { bad "$m: smlp-train on the CPU"; show "$T/cpu.out"; }
    gpu "$TRAIN" "$G" $A --device cuda --metrics "$T/$m.gpu.csv" \
        --out "$T/$m.gpu.ck" >"$T/gpu.out" 2>&1 ||
        { bad "$m: smlp-train --device cuda"; show "$T/gpu.out"; }
    if "$PY" "$T/losses.py" "$T/$m.cpu.csv" "$T/$m.gpu.csv" 3 >"$T/err" 2>&1
    then ok "$m: smlp-train --device cuda, 3 losses within 1e-4"
    else bad "$m: smlp-train losses"; show "$T/err"; fi
    if st near "$T/$m.cpu.ck" "$T/$m.gpu.ck" $NEAR >"$T/err" 2>&1
    then ok "$m: smlp-train --device cuda, weights within 1e-4"
    else bad "$m: smlp-train weights"; show "$T/err"; fi
    mib=$(stpy "$T/mib.py" "$T/$m.cpu.ck")
    if grep -q "^device memory (training session): arena [0-9.]* MiB, parameters $mib MiB, gradients [0-9.]* MiB; backward on the GPU" "$T/gpu.out"
    then ok "$m: device memory line ($mib MiB of parameters)"
    else bad "$m: device memory line, want $mib MiB"; show "$T/gpu.out"; fi
done

rm -rf "$T"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
