#!/bin/sh
# End-to-end checks of tools/smlp-train-mpi, data-parallel training over
# MPI (tools/train_dist.h, train_sync.c), on the tiny data set of
# shlib.sh, with up to 4 ranks on this machine (--oversubscribe):
# - SGD on mixer_fmnist on 2 and 4 ranks against smlp-train in one
#   process, same global batch: every parameter and momentum buffer
#   within 1e-4 (relative, floor 1e-3: the ranks sum the batch in
#   another order), the loss rows within 1e-5;
# - a 2-rank run repeated: the same bits; stdout from rank 0 only; 2
#   ranks with --accum 2 (4 micro-batches) as one process;
# - sparse_mlp_fmnist on 2 ranks: --moe-stats counts the assignments of
#   the whole batch (kept + dropped per layer as in one process; the
#   gate noise differs, the counts' sums cannot);
# - --resume on 2 ranks continues bit for bit (a stop after epoch 1, and
#   a SIGINT that reaches rank 0 only: every rank stops, exit 130);
#   smlp-train refuses a 2-rank checkpoint (another summation order);
# - the test set shared out among 2 and 3 ranks (--eval-only): the
#   accuracy, loss, per-class and --routing-by-class numbers of one
#   process; a linear probe whose feature cache the ranks fill in parts;
# - errors: a batch that does not divide among the ranks, a MoCo graph,
#   ranks whose parameters part (SMLP_TRAIN_TEST_DIVERGE_STEP), a bad
#   output found by rank 0 alone: each exits non-zero, none hangs;
#   usage errors (found alike by every rank) said once, exit 2 without
#   MPI_Abort;
# - with --lr 1e-12 (the parameters stay put), against one process at
#   half the batch: sparse_mlp_fmnist without gate noise on 2 ranks sums
#   each expert's kept and dropped and averages the aux losses of the
#   ranks' halves; a batch norm keeps rank 0's running statistics;
# - --probe (frozen backbone) on 2 ranks trains as one process; a SIGINT
#   on 2 ranks ends MPI normally (exit 130, no MPI_Abort);
# - tests/check_train_dist_mpi (train_dist_mpi.c's calls one by one) on
#   3 ranks.
# Prints "N passed, M failed"; exit 77 (skip) without smlp-train-mpi
# (configure found no MPI), mpirun or python3.
B=${SMLP_TEST_BUILDDIR:-.}
TRAIN="$B/tools/smlp-train"
TRAIN_MPI="$B/tools/smlp-train-mpi"
MIXER="$B/graphs/mixer_fmnist.fbs"
SPARSE="$B/graphs/sparse_mlp_fmnist.fbs"
MOCO="$B/graphs/moco_sparse_mlp_fmnist.fbs"
PY=${PYTHON3:-python3}
[ "$PY" = no ] && PY=python3
MPIRUN=${MPIRUN:-mpirun}
if [ ! -x "$TRAIN_MPI" ]; then
    echo "skip - no tools/smlp-train-mpi (configure found no MPI)"; exit 77
fi
if [ "$MPIRUN" = no ] || ! command -v "$MPIRUN" >/dev/null 2>&1; then
    echo "skip - no mpirun"; exit 77
fi
if ! command -v "$PY" >/dev/null 2>&1; then
    echo "skip - no python3"; exit 77
fi
T=$(mktemp -d /tmp/smlp-train-mpi-test.XXXXXX)
D="$T/data"
. "${SMLP_TEST_SRCDIR:-.}/tests/shlib.sh"
make_idx_data "$D" 256 64 || exit 99

# CI runs as root; Open MPI's own allocations are never freed, so the
# ranks of a sanitized build check everything but leaks (the same code
# is leak-checked in one process by check_smlp_train.sh).
OMPI_ALLOW_RUN_AS_ROOT=1
OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_ALLOW_RUN_AS_ROOT OMPI_ALLOW_RUN_AS_ROOT_CONFIRM
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
export ASAN_OPTIONS
# mpi NP ARGS...: smlp-train-mpi on NP ranks, ended after 5 minutes.
mpi() {
    np=$1
    shift
    timeout 300 "$MPIRUN" --oversubscribe -np "$np" -x ASAN_OPTIONS \
        -x UBSAN_OPTIONS -x OPENBLAS_NUM_THREADS \
        -x SMLP_TRAIN_TEST_SIGINT_STEP -x SMLP_TRAIN_TEST_DIVERGE_STEP \
        "$TRAIN_MPI" "$@"
}
SMLP_TRAIN_TEST_SIGINT_STEP=-1
SMLP_TRAIN_TEST_DIVERGE_STEP=-1
export SMLP_TRAIN_TEST_SIGINT_STEP SMLP_TRAIN_TEST_DIVERGE_STEP

COMMON="--data $D --limit-test 64 --progress lines"
SGD="$COMMON --batch 16 --optimizer sgd --lr 0.05 --max-steps 6 \
--log-every 2"

# ---- the same training as one process ----------------------------------
"$TRAIN" "$MIXER" $SGD --threads 2 --out "$T/p1.st" --metrics "$T/p1.csv" \
    >"$T/p1.out" 2>&1 || { bad "one process"; show "$T/p1.out"; }
for np in 2 4; do
    if mpi "$np" "$MIXER" $SGD --out "$T/p$np.st" --metrics "$T/p$np.csv" \
        >"$T/p$np.out" 2>&1 &&
        st near "$T/p1.st" "$T/p$np.st" --rel 1e-4 --floor 1e-3 \
        --min-tensors 21 >"$T/err" 2>&1 &&
        rows_near "$T/p1.csv" "$T/p$np.csv" >>"$T/err" 2>&1; then
        ok "$np ranks train as one process (parameters, momentum, losses)"
    else
        bad "$np ranks train as one process"; show "$T/p$np.out"
        show "$T/err"
    fi
done
if [ "$(grep -c '^done: 6 steps' "$T/p2.out")" = 1 ]; then
    ok "only rank 0 prints"
else
    bad "only rank 0 prints"; show "$T/p2.out"
fi
if [ "$(st meta "$T/p2.st" train.ranks)" = 2 ] &&
    [ "$(st meta "$T/p2.st" train.batch)" = 16 ]; then
    ok "the checkpoint records 2 ranks and the whole batch"
else
    bad "checkpoint metadata train.ranks / train.batch"
fi
mpi 2 "$MIXER" $SGD --out "$T/p2b.st" >"$T/out" 2>&1
if st same "$T/p2.st" "$T/p2b.st" >"$T/err" 2>&1; then
    ok "2 ranks again: the same bits"
else
    bad "2 ranks again: the same bits"; show "$T/out"; show "$T/err"
fi

# --accum 2 on 2 ranks: 4 micro-batches of 4, as one process.
if mpi 2 "$MIXER" $SGD --accum 2 --out "$T/pa.st" --metrics "$T/pa.csv" \
    >"$T/pa.out" 2>&1 &&
    grep -q "2 ranks x 2 micro-batches of 4 images" "$T/pa.out" &&
    st near "$T/p1.st" "$T/pa.st" --rel 1e-4 --floor 1e-3 \
        --min-tensors 21 >"$T/err" 2>&1 &&
    rows_near "$T/p1.csv" "$T/pa.csv" >>"$T/err" 2>&1; then
    ok "2 ranks with --accum 2 train as one process"
else
    bad "2 ranks with --accum 2"; show "$T/pa.out"; show "$T/err"
fi

# ---- MoE statistics over the whole batch -------------------------------
MOE="$COMMON --batch 8 --limit-train 64 --max-steps 4 --log-every 2"
"$TRAIN" "$SPARSE" $MOE --threads 2 --out "$T/s1.st" \
    --moe-stats "$T/s1.moe" >"$T/out" 2>&1
mpi 2 "$SPARSE" $MOE --out "$T/s2.st" --moe-stats "$T/s2.moe" \
    >"$T/out2" 2>&1
if moe_totals_same "$T/s1.moe" "$T/s2.moe" >"$T/err" 2>&1; then
    ok "--moe-stats on 2 ranks counts the whole batch's assignments"
else
    bad "--moe-stats on 2 ranks"; show "$T/out"; show "$T/out2"
    show "$T/err"
fi

# ---- resume ------------------------------------------------------------
RES="$COMMON --batch 16 --limit-train 64 --epochs 2"
mpi 2 "$MIXER" $RES --out "$T/r.st" >"$T/out" 2>&1
mpi 2 "$MIXER" $RES --out "$T/rs.st" --stop-after 1 >"$T/out1" 2>&1
mpi 2 "$MIXER" $RES --out "$T/rs.st" --resume "$T/rs.st" >"$T/out2" 2>&1
if st same "$T/r.st" "$T/rs.st" >"$T/err" 2>&1; then
    ok "--stop-after 1 and --resume on 2 ranks: the same bits"
else
    bad "--stop-after and --resume on 2 ranks"; show "$T/out1"
    show "$T/out2"; show "$T/err"
fi
SMLP_TRAIN_TEST_SIGINT_STEP=2 mpi 2 "$MIXER" $RES --out "$T/ri.st" \
    >"$T/out1" 2>&1
st=$?
mpi 2 "$MIXER" $RES --out "$T/ri.st" --resume "$T/ri.st" >"$T/out2" 2>&1
if [ "$st" -eq 130 ] && grep -q "interrupted: checkpoint" "$T/out1" &&
    [ "$(st meta "$T/r.st" train.step)" = 8 ] &&
    st same "$T/r.st" "$T/ri.st" >"$T/err" 2>&1; then
    ok "SIGINT on rank 0 stops every rank (130); resumed: the same bits"
else
    bad "SIGINT on rank 0 (exit $st)"; show "$T/out1"; show "$T/out2"
    show "$T/err"
fi
expect "one process refuses a 2-rank checkpoint" 1 \
    "the number of ranks (mpirun -np)" \
    "$TRAIN" "$MIXER" $RES --threads 2 --out "$T/r1.st" --resume "$T/r.st"

# ---- the test set and the probe's cache shared out ---------------------
# --eval-only with 7 batches of 10 (the last of 4) on 1, 2 and 3 ranks:
# the same accuracy, loss, per-class lines and routing counts.
EV="--data $D --limit-test 64 --eval-batch 10 --eval-only --weights $T/s1.st"
"$TRAIN" "$SPARSE" $EV --threads 2 --routing-by-class "$T/rbc1.csv" \
    >"$T/ev1.out" 2>&1
sed -e 's/, [0-9.]* s)$/)/' -e '/^routing by class written/d' \
    "$T/ev1.out" >"$T/ev1.txt"
for np in 2 3; do
    mpi "$np" "$SPARSE" $EV --routing-by-class "$T/rbc$np.csv" \
        >"$T/ev$np.out" 2>&1
    sed -e 's/, [0-9.]* s)$/)/' -e '/^routing by class written/d' \
        "$T/ev$np.out" >"$T/ev$np.txt"
    if grep -q "test acc .*(64 test images)" "$T/ev1.txt" &&
        cmp -s "$T/ev1.txt" "$T/ev$np.txt" &&
        [ "$(wc -l <"$T/rbc1.csv")" -gt 10 ] &&
        cmp -s "$T/rbc1.csv" "$T/rbc$np.csv"; then
        ok "--eval-only on $np ranks: the numbers of one process"
    else
        bad "--eval-only on $np ranks"; show "$T/ev1.out"
        show "$T/ev$np.out"
    fi
done
# A linear probe on 2 ranks: each rank computes a part of the feature
# cache; the head trains as in one process.
PR="--data $D --limit-train 64 --limit-test 64 --eval-batch 10 --probe \
--init-from $T/s1.st --epochs 2 --batch 16 --lr 0.1 --weight-decay 0 \
--progress lines"
"$TRAIN" "$SPARSE" $PR --threads 2 --out "$T/pr1.st" >"$T/out1" 2>&1
mpi 2 "$SPARSE" $PR --out "$T/pr2.st" >"$T/out2" 2>&1
if grep -q "cached in" "$T/out2" &&
    st near "$T/pr1.st" "$T/pr2.st" --rel 1e-4 --floor 1e-3 \
        --min-tensors 21 >"$T/err" 2>&1; then
    ok "a probe on 2 ranks: the head of one process"
else
    bad "a probe on 2 ranks"; show "$T/out1"; show "$T/out2"; show "$T/err"
fi

# ---- errors ------------------------------------------------------------
expect "a batch that does not divide" 2 \
    "--batch 15 does not divide among 2 ranks" \
    mpi 2 "$MIXER" $COMMON --batch 15 --max-steps 1 --out "$T/e.st"
expect "a MoCo graph" 2 "trains in one process only" \
    mpi 2 "$MOCO" --data "$D" --batch 8 --max-steps 1 --out "$T/e.st"
# Usage errors are every rank's: rank 0 alone says it, no MPI_Abort.
# once NEEDLE GRAPH ARGS...: 3 ranks exit 2, NEEDLE in one line.
once() {
    needle=$1
    shift
    mpi 3 "$@" --out "$T/e.st" >"$T/out" 2>&1
    st=$?
    if [ "$st" -eq 2 ] && [ "$(grep -cF -- "$needle" "$T/out")" -eq 1 ] &&
        ! grep -q "MPI_ABORT" "$T/out"; then
        ok "a usage error on 3 ranks said once: $needle"
    else
        bad "a usage error on 3 ranks said once: $needle (exit $st)"
        show "$T/out"
    fi
}
once "does not divide among 3 ranks" "$MIXER" $COMMON --batch 16
once "unknown option '--bogus'" "$MIXER" $COMMON --bogus
once "trains in one process only" "$MOCO" --data "$D" --batch 6
SMLP_TRAIN_TEST_DIVERGE_STEP=1 expect "ranks whose parameters part" 1 \
    "step 4: the ranks' parameters differ" \
    mpi 2 "$MIXER" $COMMON --batch 16 --limit-train 64 --epochs 1 \
    --out "$T/e.st"
expect "rank 0 alone fails: every rank ends" 2 \
    "rank 0 of 2: --metrics $T/no/such/dir/m.csv" \
    mpi 2 "$MIXER" $SGD --out "$T/e.st" --metrics "$T/no/such/dir/m.csv"

# ---- sums, means and broadcasts against one process --------------------
# With --lr 1e-12 the parameters stay put (within ~1e-13), and rank r's
# part of 2-rank batch s (16 images) holds the images of batch 2s - 1 + r
# of one process at batch 8 (the same shuffle), so what the ranks sum or
# average can be worked out from a one-process run: per MoE expert kept
# and dropped the sum of two one-process steps, the layer's aux loss
# their mean (gate noise off: it is drawn per rank); after one step a
# batch norm's running statistics those of rank 0's half, the same bits
# (rank 0's state tensors are broadcast).
TINY="$COMMON --limit-train 64 --optimizer sgd --lr 1e-12 --log-every 1"
"$PY" - "${SMLP_TEST_SRCDIR:-.}/graphs/sparse_mlp_fmnist.json" \
    "$T/sp0.json" <<'PY'
import sys
s = open(sys.argv[1]).read()
noisy = '"noise_std", "type": "Float", "f": 1.0'
assert s.count(noisy) == 4, s.count(noisy)
open(sys.argv[2], "w").write(s.replace(noisy, noisy[:-3] + "0.0"))
PY
"${FLATC:-flatc}" -b -o "$T" "${SMLP_TEST_SRCDIR:-.}/schemas/graph.fbs" \
    "$T/sp0.json"
cat >"$T/moe2.py" <<'PY'
import csv, sys
def rows(path):
    t = {}
    for r in csv.DictReader(open(path)):
        t.setdefault((int(r["step"]), r["layer"]), []).append(r)
    return t
one, two = rows(sys.argv[1]), rows(sys.argv[2])
assert len(one) == 16 and len(two) == 8, (len(one), len(two))
for (s, layer), r2 in two.items():
    a, b = one[(2 * s - 1, layer)], one[(2 * s, layer)]
    assert len(r2) == len(a) == len(b) == 4, (s, layer)
    for x, y, z in zip(r2, a, b):
        for col in ("kept", "dropped"):
            assert int(x[col]) == int(y[col]) + int(z[col]), (s, layer, col)
    want = (float(a[0]["aux"]) + float(b[0]["aux"])) / 2
    got = float(r2[0]["aux"])
    assert want > 0 and abs(got - want) <= 1e-4 * want, (s, layer, got, want)
PY
"$TRAIN" "$T/sp0.fbs" $TINY --batch 8 --max-steps 4 --threads 2 \
    --out "$T/m1.st" --moe-stats "$T/m1.moe" >"$T/out" 2>&1
mpi 2 "$T/sp0.fbs" $TINY --batch 16 --max-steps 2 --out "$T/m2.st" \
    --moe-stats "$T/m2.moe" >"$T/out2" 2>&1
if "$PY" "$T/moe2.py" "$T/m1.moe" "$T/m2.moe" >"$T/err" 2>&1; then
    ok "--moe-stats on 2 ranks: kept, dropped summed, aux averaged"
else
    bad "--moe-stats on 2 ranks: per expert and aux"; show "$T/out"
    show "$T/out2"; show "$T/err"
fi
make_bn_graph bn 8
cat >"$T/bn.py" <<'PY'
import sys
import st
def stats(path):
    f = st.read(path)
    return [f.raw(k) for k in ("bn.running_mean", "bn.running_var")]
one, two = stats(sys.argv[1]), stats(sys.argv[2])
assert one == two, "the running statistics differ"
assert one[0] != bytes(len(one[0])), "the running mean did not move"
PY
"$TRAIN" "$T/bn.fbs" $TINY --batch 8 --max-steps 1 --threads 2 \
    --out "$T/b1.st" >"$T/out" 2>&1
mpi 2 "$T/bn.fbs" $TINY --batch 16 --max-steps 1 --out "$T/b2.st" \
    >"$T/out2" 2>&1
if stpy "$T/bn.py" "$T/b1.st" "$T/b2.st" >"$T/err" 2>&1; then
    ok "a batch norm on 2 ranks keeps rank 0's running statistics"
else
    bad "a batch norm's running statistics on 2 ranks"; show "$T/out"
    show "$T/out2"; show "$T/err"
fi
# --probe freezes all but head.*: the ranks exchange the gradients of the
# trainable parameters only, and train as one process does.
PROBE="$SGD --limit-train 64 --log-every 1 --probe"
"$TRAIN" "$MIXER" $PROBE --threads 2 --out "$T/q1.st" \
    --metrics "$T/q1.csv" >"$T/out" 2>&1
mpi 2 "$MIXER" $PROBE --out "$T/q2.st" --metrics "$T/q2.csv" >"$T/out2" 2>&1
if st near "$T/q1.st" "$T/q2.st" --rel 1e-4 --floor 1e-3 \
    --min-tensors 21 >"$T/err" 2>&1 &&
    rows_near "$T/q1.csv" "$T/q2.csv" >>"$T/err" 2>&1; then
    ok "--probe on 2 ranks trains the head as one process"
else
    bad "--probe on 2 ranks"; show "$T/out"; show "$T/out2"; show "$T/err"
fi
# A SIGINT is a stop that every rank agrees on: MPI ends normally
# (MPI_Finalize, exit 130 from the ranks), not by MPI_Abort.
SMLP_TRAIN_TEST_SIGINT_STEP=2 mpi 2 "$MIXER" $COMMON --batch 16 \
    --limit-train 64 --epochs 1 --out "$T/si.st" >"$T/out" 2>&1
st=$?
if [ "$st" -eq 130 ] && grep -q "interrupted: checkpoint" "$T/out" &&
    ! grep -q "MPI_ABORT" "$T/out"; then
    ok "SIGINT on 2 ranks: exit 130 without MPI_Abort"
else
    bad "SIGINT on 2 ranks ends MPI normally (exit $st)"; show "$T/out"
fi
# train_dist_mpi.c's calls one by one on 3 ranks (tests/check_train_dist.c).
if timeout 300 "$MPIRUN" --oversubscribe -np 3 -x ASAN_OPTIONS \
    -x UBSAN_OPTIONS "$B/tests/check_train_dist_mpi" >"$T/out" 2>&1 &&
    grep -q '^ok$' "$T/out"; then
    ok "sums, any, same_u64, bcast on 3 ranks (check_train_dist_mpi)"
else
    bad "check_train_dist_mpi on 3 ranks"; show "$T/out"
fi

echo "$pass passed, $fail failed"
rm -rf "$T"
[ "$fail" -eq 0 ]
