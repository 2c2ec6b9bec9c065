#!/bin/sh
# Runs the fuzz targets, without libFuzzer, over every input that once
# broke them (fuzz/regress/NAME/, kept as regression tests) and over their
# seeds (fuzz/corpus/NAME/, the graph seeds compiled from JSON here, and
# the small shipped graphs).  A crash or a sanitizer report fails the
# test.  Prints "N passed, M failed".
S=${SMLP_TEST_SRCDIR:-.}
B=${SMLP_TEST_BUILDDIR:-.}
T=$(mktemp -d /tmp/smlp-fuzz-regress.XXXXXX)
trap 'rm -rf "$T"' EXIT INT TERM
pass=0
fail=0

mkdir -p "$T/seeds"
for j in "$S"/fuzz/corpus/graph/*.json; do
    "${FLATC:-flatc}" -b -o "$T/seeds" "$S/schemas/graph.fbs" "$j" || {
        echo "FAIL - flatc $j"; fail=$((fail + 1)); }
done

# run NAME PATH...: the driver over the paths that exist.
run() {
    name=$1
    shift
    set -- $(for p in "$@"; do [ -e "$p" ] && echo "$p"; done)
    if OPENBLAS_NUM_THREADS=1 "$B/fuzz/regress_$name" "$@" >"$T/out" 2>&1
    then
        n=$(grep -c '^ok - ' "$T/out")
        pass=$((pass + n))
        echo "ok - fuzz_$name: $n inputs"
    else
        fail=$((fail + 1))
        echo "FAIL - fuzz_$name"
        sed 's/^/  | /' "$T/out"
    fi
}

run graph "$S/fuzz/regress/graph" "$T/seeds" \
    "$B/graphs/mixer_fmnist.fbs" "$B/graphs/sparse_mlp_fmnist.fbs"
run safetensors "$S/fuzz/regress/safetensors" "$S/fuzz/corpus/safetensors"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
