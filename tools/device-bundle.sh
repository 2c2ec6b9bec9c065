#!/bin/sh
# tools/device-bundle.sh - packs what a GPU machine needs to run smlp's
# CUDA tests and smlp-run, from a build directory configured with CUDA.
#
#   cd BUILD && /path/to/smlp/tools/device-bundle.sh DIR
#
# DIR (normally .devbundle/ at the top of the checkout, which git
# ignores) gets the real ELF binaries (not libtool's wrapper scripts),
# libsmlp, the plugins and fixture plugins, the graphs, the schema and
# flatc (the tests compile graphs from JSON), and the shared libraries
# they need that a bare machine with CUDA may lack (libuv, OpenBLAS with
# libgfortran and libquadmath, jansson, subunit...).  CUDA's own libraries
# (cudart, cuBLAS) and the C/C++ runtime are taken from the GPU machine.
# Files over 1 MiB are stored gzip'ed; DIR/run-gpu.sh unpacks them, finds
# CUDA's libraries there and runs everything, writing logs to $OUT (or
# DIR/out).  The layout mimics a build tree, so that SMLP_TEST_BUILDDIR and
# SMLP_TEST_SRCDIR can both point at DIR.  See docs/gpu.md.
set -eu

if [ $# -ne 1 ]; then
    echo "usage: cd BUILD && $0 DIR" >&2
    exit 2
fi
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(pwd)
dir=$1
if [ ! -f "$build/runtime/.libs/libsmlp.so.1" ] ||
   [ ! -f "$build/tests/check_cuda" ] ||
   [ ! -f "$build/tests/check_cuda_train" ]; then
    echo "$0: run it in a build directory configured with CUDA, after" \
         "'make && make check' built tests/check_cuda{,_train}" >&2
    exit 1
fi

rm -rf "$dir"
mkdir -p "$dir/bin" "$dir/lib" "$dir/plugins" "$dir/graphs" "$dir/schemas" \
         "$dir/tests/plugins/.libs"
dir=$(cd "$dir" && pwd)

is_elf() {
    [ -f "$1" ] && [ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ]
}

# Programs: libtool keeps the real binary in .libs/ next to a script.
for p in tests/check_cuda tests/check_cuda_train tests/check_cuda_moe \
         tests/check_cuda_sched tests/check_cuda_sched_train \
         tests/check_cuda_sched_fail \
         tools/smlp-run tools/smlp-train; do
    real="$build/$(dirname $p)/.libs/$(basename $p)"
    is_elf "$real" || real="$build/$p"
    is_elf "$real" || { echo "$0: no ELF binary for $p" >&2; exit 1; }
    cp "$real" "$dir/bin/"
done
cp "$(command -v flatc)" "$dir/bin/flatc"
cp -L "$build/runtime/.libs/libsmlp.so.1" "$dir/lib/"
cp "$build"/plugins/.libs/*.so "$dir/plugins/"
cp "$build"/tests/plugins/.libs/*.so "$dir/tests/plugins/.libs/"
cp "$build"/graphs/*.fbs "$dir/graphs/"
cp "$src/schemas/graph.fbs" "$dir/schemas/"
mkdir -p "$dir/tests/data"
cp "$src/tests/data/cuda_train_moe.json" "$dir/tests/data/"
# The GPU table (bench/gpu_table.py: PyTorch eager on the same weights)
# and a small synthetic data set in Fashion-MNIST's layout for timing
# smlp-train's steps.
mkdir -p "$dir/bench" "$dir/data"
cp "$src/bench/gpu_table.py" "$src/bench/torch_graph.py" "$dir/bench/"
cp "$src/graphs/sparse_mlp_b.json" "$src/graphs/mixer_b.json" "$dir/graphs/"
T=$dir
. "$src/tests/shlib.sh"
make_idx_data "$dir/data" 4096 512

# Libraries they need, except the C/C++ runtime and CUDA's (the GPU
# machine has its own, matching its driver).
skip='^(linux-vdso|ld-linux|libc\.so|libm\.so|libdl\.so|libpthread|librt\.so|libgcc_s|libstdc\+\+|libcuda|libcublas|libnvidia|libsmlp)'
for f in "$dir"/bin/* "$dir"/lib/* "$dir"/plugins/*.so \
         "$dir"/tests/plugins/.libs/*.so; do
    LD_LIBRARY_PATH="$dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ldd "$f"
done | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }' | sort -u |
while read -r name path; do
    if echo "$name" | grep -Eq "$skip"; then
        continue
    fi
    [ -f "$dir/lib/$name" ] || cp -L "$path" "$dir/lib/$name"
done

# Big files travel compressed (the machine's working tree is limited).
find "$dir/bin" "$dir/lib" -type f -size +1024k -exec gzip -9 {} \;

cat >"$dir/run-gpu.sh" <<'EOF'
#!/bin/sh
# Runs smlp's GPU checks on the GPU machine (made by
# tools/device-bundle.sh).  Logs go to $OUT, else to this dir's out/.
#   run-gpu.sh [all|checks|bench|sanitizer]
# checks: check_cuda (ops, graphs), check_cuda_train (training),
# check_cuda_moe, check_cuda_sched{,_train,_fail}; bench: smlp-run
# timings, smlp-train steps on the GPU and the CPU, bench/gpu_table.py
# (issue 8's table against PyTorch);
# sanitizer: compute-sanitizer memcheck on check_cuda_moe, check_cuda and
# check_cuda_train.
# Each part fits one 10-minute call of the device tool.
b=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-$b/out}
mkdir -p "$out"
for f in "$b"/bin/*.gz "$b"/lib/*.gz; do
    [ -f "$f" ] && gunzip -f "$f"
done
chmod +x "$b"/bin/*
# Where CUDA's libraries live on this machine.
cudalibs=$(for n in libcudart.so.13 libcublas.so.13; do
    find /usr/local /usr/lib /opt -name "$n" 2>/dev/null | head -1
done | xargs -r -n1 dirname | sort -u | tr '\n' ':')
export LD_LIBRARY_PATH="$b/lib:$cudalibs/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export SMLP_PLUGIN_PATH="$b/plugins" SMLP_TEST_BUILDDIR="$b" \
    SMLP_TEST_SRCDIR="$b" FLATC="$b/bin/flatc" OPENBLAS_NUM_THREADS=1 \
    CK_DEFAULT_TIMEOUT=300 PATH="$b/bin:$PATH"
{
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    for f in "$b"/bin/check_cuda "$b"/bin/check_cuda_train "$b"/bin/smlp-run \
             "$b"/lib/* "$b"/plugins/core.so; do
        ldd "$f" | grep -E 'not found|cuda|cublas' | sed "s|^|$(basename $f): |"
    done
} >"$out/probe.txt" 2>&1
cd "$b" || exit 1
# What to run: all (default), or one part (each fits a 10-minute call).
part=${1:-all}
if [ "$part" = all ] || [ "$part" = checks ]; then
    SMLP_CUDA_BENCH=1 timeout 180 bin/check_cuda >"$out/check_cuda.log" 2>&1
    echo "check_cuda exit $?" >>"$out/check_cuda.log"
    timeout 120 bin/check_cuda_train >"$out/check_cuda_train.log" 2>&1
    echo "check_cuda_train exit $?" >>"$out/check_cuda_train.log"
    timeout 120 bin/check_cuda_moe >"$out/check_cuda_moe.log" 2>&1
    echo "check_cuda_moe exit $?" >>"$out/check_cuda_moe.log"
    for t in check_cuda_sched check_cuda_sched_train check_cuda_sched_fail; do
        FAKECUDA_JITTER_US=50 timeout 120 bin/$t >"$out/$t.log" 2>&1
        echo "$t exit $?" >>"$out/$t.log"
    done
fi
if [ "$part" = all ] || [ "$part" = bench ]; then
    {
        for g in mixer_fmnist mixer_b; do
            for d in cuda cpu; do
                [ $g.$d = mixer_b.cpu ] && continue
                echo "== smlp-run --device $d graphs/$g.fbs --batch 8"
                timeout 120 bin/smlp-run --device $d --batch 8 --repeat 5 \
                    graphs/$g.fbs
                echo "exit $?"
            done
        done
    } >"$out/smlp-run.log" 2>&1
    # Training steps (forward on the GPU; the backward too for the Mixer):
    # metrics rows are steps (bench/run's method).
    for g in mixer_fmnist sparse_mlp_fmnist; do
        for d in cuda cpu; do
            timeout 150 bin/smlp-train graphs/$g.fbs --data data --device $d \
                --batch 128 --max-steps 12 --log-every 1 --limit-test 256 \
                --progress lines --out "$b/train_$g.$d.st" \
                --metrics "$out/train_$g.$d.csv" \
                >"$out/train_$g.$d.log" 2>&1
            echo "exit $?" >>"$out/train_$g.$d.log"
        done
    done
    timeout 400 python3 bench/gpu_table.py --smlp-run bin/smlp-run \
        --graphs graphs --out "$out/table" >"$out/gpu_table.log" 2>&1
    echo "gpu_table exit $?" >>"$out/gpu_table.log"
fi
if { [ "$part" = all ] || [ "$part" = sanitizer ]; } &&
   command -v compute-sanitizer >/dev/null; then
    timeout 250 compute-sanitizer --tool memcheck --leak-check no \
        bin/check_cuda_moe >"$out/sanitizer_moe.log" 2>&1
    echo "compute-sanitizer exit $?" >>"$out/sanitizer_moe.log"
    timeout 150 compute-sanitizer --tool memcheck --leak-check no \
        bin/check_cuda >"$out/sanitizer.log" 2>&1
    echo "compute-sanitizer exit $?" >>"$out/sanitizer.log"
    timeout 150 compute-sanitizer --tool memcheck --leak-check no \
        bin/check_cuda_train >"$out/sanitizer_train.log" 2>&1
    echo "compute-sanitizer exit $?" >>"$out/sanitizer_train.log"
fi
tail -n 3 "$out"/*.log
EOF
chmod +x "$dir/run-gpu.sh"

echo "$dir:"
du -sh "$dir"
ls -la "$dir/bin" "$dir/lib" "$dir/plugins"
