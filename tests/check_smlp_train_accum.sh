#!/bin/sh
# End-to-end checks of smlp-train --accum N (gradient accumulation,
# docs/training.md) on the tiny data set of shlib.sh:
# - SGD on mixer_fmnist with --accum 2 and 4 against --accum 1, same
#   batch: every parameter and momentum buffer within 1e-4 (relative,
#   floor 1e-3: the micro-batches add the gradients in another order),
#   the metrics rows' losses and accuracies within 1e-5; the checkpoint
#   records train.accum;
# - sparse_mlp_fmnist: --moe-stats counts the whole batch's assignments
#   (kept + dropped per layer and row as with --accum 1);
# - a linear probe (cached features as the micro-batches' rows) near the
#   probe with --accum 1;
# - --stop-after 1 and --resume with --accum 2: the same bits;
# - errors: a batch that does not divide into the micro-batches (exit 2,
#   the batch to use), a MoCo graph (exit 2), a checkpoint resumed with
#   another --accum (exit 1).
# Prints "N passed, M failed"; exit 77 (skip) without python3.
B=${SMLP_TEST_BUILDDIR:-.}
TRAIN="$B/tools/smlp-train"
MIXER="$B/graphs/mixer_fmnist.fbs"
SPARSE="$B/graphs/sparse_mlp_fmnist.fbs"
MOCO="$B/graphs/moco_sparse_mlp_fmnist.fbs"
PY=${PYTHON3:-python3}
[ "$PY" = no ] && PY=python3
if ! command -v "$PY" >/dev/null 2>&1; then
    echo "skip - no python3"; exit 77
fi
T=$(mktemp -d /tmp/smlp-train-accum-test.XXXXXX)
D="$T/data"
. "${SMLP_TEST_SRCDIR:-.}/tests/shlib.sh"
make_idx_data "$D" 256 64 || exit 99

COMMON="--data $D --limit-test 64 --progress lines --threads 2"
SGD="$COMMON --batch 16 --optimizer sgd --lr 0.05 --max-steps 6 \
--log-every 2"

# ---- the step of the whole batch ---------------------------------------
"$TRAIN" "$MIXER" $SGD --out "$T/a1.st" --metrics "$T/a1.csv" \
    >"$T/a1.out" 2>&1 || { bad "--accum 1"; show "$T/a1.out"; }
for a in 2 4; do
    if "$TRAIN" "$MIXER" $SGD --accum "$a" --out "$T/a$a.st" \
        --metrics "$T/a$a.csv" >"$T/a$a.out" 2>&1 &&
        grep -q "1 rank x $a micro-batches of $((16 / a)) images" \
            "$T/a$a.out" &&
        st near "$T/a1.st" "$T/a$a.st" --rel 1e-4 --floor 1e-3 \
        --min-tensors 21 >"$T/err" 2>&1 &&
        rows_near "$T/a1.csv" "$T/a$a.csv" >>"$T/err" 2>&1 &&
        [ "$(st meta "$T/a$a.st" train.accum)" = "$a" ] &&
        [ "$(st meta "$T/a$a.st" train.batch)" = 16 ]; then
        ok "--accum $a trains as --accum 1 (parameters, momentum, rows)"
    else
        bad "--accum $a trains as --accum 1"; show "$T/a$a.out"
        show "$T/err"
    fi
done

# ---- MoE statistics over the whole batch -------------------------------
MOE="$COMMON --batch 8 --limit-train 64 --max-steps 4 --log-every 2"
"$TRAIN" "$SPARSE" $MOE --out "$T/s1.st" --moe-stats "$T/s1.moe" \
    >"$T/out" 2>&1
"$TRAIN" "$SPARSE" $MOE --accum 4 --out "$T/s4.st" \
    --moe-stats "$T/s4.moe" >"$T/out2" 2>&1
if moe_totals_same "$T/s1.moe" "$T/s4.moe" >"$T/err" 2>&1; then
    ok "--moe-stats with --accum 4 counts the whole batch's assignments"
else
    bad "--moe-stats with --accum 4"; show "$T/out"; show "$T/out2"
    show "$T/err"
fi

# ---- a linear probe: the cache's rows in micro-batches -----------------
PR="$COMMON --limit-train 64 --eval-batch 10 --probe --init-from $T/s1.st \
--epochs 2 --batch 16 --lr 0.1 --weight-decay 0"
"$TRAIN" "$SPARSE" $PR --out "$T/p1.st" >"$T/out1" 2>&1
"$TRAIN" "$SPARSE" $PR --accum 2 --out "$T/p2.st" >"$T/out2" 2>&1
if grep -q "cached in" "$T/out2" &&
    st near "$T/p1.st" "$T/p2.st" --rel 1e-4 --floor 1e-3 \
        --min-tensors 21 >"$T/err" 2>&1; then
    ok "a probe with --accum 2: the head of --accum 1"
else
    bad "a probe with --accum 2"; show "$T/out1"; show "$T/out2"
    show "$T/err"
fi

# ---- resume ------------------------------------------------------------
RES="$COMMON --batch 16 --limit-train 64 --epochs 2 --accum 2"
"$TRAIN" "$MIXER" $RES --out "$T/r.st" >"$T/out" 2>&1
"$TRAIN" "$MIXER" $RES --out "$T/rs.st" --stop-after 1 >"$T/out1" 2>&1
"$TRAIN" "$MIXER" $RES --out "$T/rs.st" --resume "$T/rs.st" >"$T/out2" 2>&1
if [ "$(st meta "$T/r.st" train.step)" = 8 ] &&
    st same "$T/r.st" "$T/rs.st" >"$T/err" 2>&1; then
    ok "--stop-after 1 and --resume with --accum 2: the same bits"
else
    bad "--stop-after and --resume with --accum 2"; show "$T/out1"
    show "$T/out2"; show "$T/err"
fi
expect "a checkpoint resumed with another --accum" 1 \
    "made with --accum 2, this run has 4" \
    "$TRAIN" "$MIXER" $RES --accum 4 --out "$T/r4.st" --resume "$T/r.st"

# ---- errors ------------------------------------------------------------
expect "a batch that does not divide into the micro-batches" 2 \
    "--batch 15 does not divide into 2 equal micro-batches (1 rank x \
--accum 2; try --batch 16)" \
    "$TRAIN" "$MIXER" $COMMON --batch 15 --accum 2 --out "$T/e.st"
expect "--accum 0" 2 "--accum: '0' is not an integer from 1 to 1048576" \
    "$TRAIN" "$MIXER" $COMMON --accum 0 --out "$T/e.st"
expect "a MoCo graph" 2 "--accum 2: $MOCO is a MoCo pre-training graph" \
    "$TRAIN" "$MOCO" --data "$D" --batch 8 --accum 2 --max-steps 1 \
    --out "$T/e.st"

echo "$pass passed, $fail failed"
rm -rf "$T"
[ "$fail" -eq 0 ]
