#!/bin/sh
# End-to-end checks of tools/smlp-train on a tiny gzip'd IDX data set made
# here (256 training and 64 test images of 10 easy classes): usage errors
# (output files checked and distinct before training, options the mode
# would ignore), missing and corrupt data (gzip streams cut short or with
# trailing bytes, a bad member among several, labels out of range), a
# short run on mixer_fmnist (the loss falls; checkpoint, metrics CSV and
# SVG plot written; the same run on multi-member gzip files), weights with
# a NaN, --init-from another graph, --resume bit-identity (2 epochs =
# --stop-after 1 + --resume, on mixer_fmnist with MoCo augmentations and
# on sparse_mlp_fmnist with its gate noise; a run interrupted by SIGTERM
# inside an epoch and resumed; one interrupted inside a metrics row gives
# the same epoch line and rows; one interrupted as an epoch's last step
# ends still evaluates it, and resumed is the whole run), signals after
# an evaluation and during the last one, resume refusals (each option
# that changes the result, the data hash and the graph digest (a graph
# renamed or with other metadata resumes), positions that
# contradict themselves; older checkpoints accepted), the accuracies a
# checkpoint carries, metrics rows against the schedule and the epoch
# lines, --eval-every, the warm-up, SGD's defaults and --clip-norm,
# --seed's shuffle, test images left unaugmented, a loss that overflows
# after a checkpoint, and checkpoints that a reader never sees
# half-written (a killed run's temporary files removed by the next).
# The test evaluation against values computed here (a
# batch norm classifier's checkpoint in python; the zero initial head), a
# partial last batch and a class without images; --moe-stats rows against
# rows every step; --routing-by-class sums, shares and drops.  Prints "N
# passed, M failed".
# SMLP_TRAIN_TEST_SIGINT_STEP=N makes smlp-train raise SIGINT as step N
# ends, for a signal at an exact step; the other signal tests wait for a
# progress line and kill.
# Needs python3 (makes the data, reads safetensors); exit 77 (skip)
# without it.
B=${SMLP_TEST_BUILDDIR:-.}
TRAIN="$B/tools/smlp-train"
MIXER="$B/graphs/mixer_fmnist.fbs"
SPARSE="$B/graphs/sparse_mlp_fmnist.fbs"
PY=${PYTHON3:-python3}
[ "$PY" = no ] && PY=python3
if ! command -v "$PY" >/dev/null 2>&1; then
    echo "skip - no python3"; exit 77
fi
T=$(mktemp -d /tmp/smlp-train-test.XXXXXX)
D="$T/data"
. "${SMLP_TEST_SRCDIR:-.}/tests/shlib.sh"

# The data: 10 easy classes (shlib.sh).
make_idx_data "$D" 256 64 || exit 99

# Checkpoints are read, compared and edited by st (shlib.sh, tests/st.py).
# A whole checkpoint: more than 10 tensors, and train.step.
CKPT="--min-tensors 11 --has train.step"

# ---- usage and data errors ----
expect "help" 0 "usage: smlp-train GRAPH" "$TRAIN" --help
expect "help names both plot formats" 0 "--plot F.svg|F.png" "$TRAIN" --help
expect "version" 0 "smlp-train " "$TRAIN" --version
expect "no graph" 2 "no graph file given" "$TRAIN" --out "$T/x.st"
expect "no out" 2 "--out CKPT is required" "$TRAIN" "$MIXER"
expect "unknown option" 2 "unknown option '--bogus'" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --bogus
expect "missing value" 2 "option '--lr' needs a value" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --lr
expect "batch 0" 2 "--batch: '0' is not an integer" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --batch 0
expect "bad optimizer" 2 "--optimizer: 'adam' is not sgd or adamw" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --optimizer adam
expect "bad augment" 2 "--augment: 'flip' is not none, moco or shift" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --augment flip
expect "bad device" 2 "--device: 'gpu' is not cpu or cuda" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --device gpu
# No GPU here (CI never has one): the session says why, exit 1.
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1
then echo "skip - device cuda error (a GPU is present)"
else expect "device cuda without GPU" 1 "device cuda: " \
    "$TRAIN" "$MIXER" --data "$D" --out "$T/x.st" --device cuda
fi
expect "bad lr" 2 "--lr: 'fast'" "$TRAIN" "$MIXER" --out "$T/x.st" --lr fast
expect "bad warmup" 2 "--warmup: '2x'" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --warmup 2x
expect "jpg plot" 2 "--plot: 'p.jpg' is not a .svg or .png file" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --plot p.jpg
expect "weights and resume" 2 "--weights and --resume exclude" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --weights a --resume b
expect "stop after past epochs" 2 "--stop-after 3 is past --epochs 2" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --epochs 2 --stop-after 3
expect "missing data" 1 "apt-get install dataset-fashion-mnist" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$T/nodata"
if grep -qF "$T/nodata/train-images-idx3-ubyte.gz" "$T/out"; then
    ok "missing data names the path"
else bad "missing data names the path"; sed 's/^/  | /' "$T/out"; fi
expect "out directory missing" 2 \
    "--out $T/nodir/x.st: cannot write: the directory $T/nodir does not" \
    "$TRAIN" "$MIXER" --out "$T/nodir/x.st" --data "$D"
# Every output is checked before training, and each needs its own file.
mkdir -p "$T/adir"
expect "--out a directory" 2 "--out $T/adir: is a directory" \
    "$TRAIN" "$MIXER" --out "$T/adir" --data "$D"
expect "--out a name with a trailing slash" 2 "--out $T/: is a directory" \
    "$TRAIN" "$MIXER" --out "$T/" --data "$D"
expect "--out empty" 2 "--out: empty file name" \
    "$TRAIN" "$MIXER" --out "" --data "$D"
expect "--metrics a directory" 2 "--metrics $T/adir: is a directory" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --metrics "$T/adir" --data "$D"
expect "--trace in a missing directory" 2 \
    "--trace $T/nodir/t.json: cannot write: the directory $T/nodir" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --trace "$T/nodir/t.json" --data "$D"
expect "--metrics names --out's file" 2 \
    "--out $T/x.st and --metrics $T/x.st name the same file" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --metrics "$T/x.st" --data "$D"
# No output may name what the run reads (it would be replaced: a
# checkpoint lost to a CSV), but --out may name the checkpoint it starts
# from (read whole first, replaced atomically; the resume cases below).
: >"$T/in.st"
expect "--metrics names --resume's file" 2 \
    "--metrics $T/in.st names the same file as --resume $T/in.st: the run" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --resume "$T/in.st" \
    --metrics "$T/in.st" --data "$D"
expect "--moe-stats names --weights' file, by another name" 2 \
    "--moe-stats $T/adir/../in.st names the same file as --weights $T/in.st" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --weights "$T/in.st" \
    --moe-stats "$T/adir/../in.st" --data "$D"
expect "--trace names --init-from's file" 2 \
    "--trace $T/in.st names the same file as --init-from $T/in.st" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --init-from "$T/in.st" \
    --trace "$T/in.st" --data "$D"
expect "--metrics names a --data file, by another path" 2 \
    "--metrics $T/data/../data/train-labels-idx1-ubyte.gz names the same file as the data file $D/train-labels-idx1-ubyte.gz" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$D" \
    --metrics "$T/data/../data/train-labels-idx1-ubyte.gz"
cp "$MIXER" "$T/g.fbs"
expect "--out names the graph" 2 \
    "--out $T/g.fbs names the same file as the graph $T/g.fbs" \
    "$TRAIN" "$T/g.fbs" --out "$T/g.fbs" --data "$D"
expect "--trace names --out's file" 2 \
    "--out $T/x.st and --trace $T/adir/../x.st name the same file" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --trace "$T/adir/../x.st" --data "$D"
: >"$T/exists.csv"
ln -s exists.csv "$T/link.csv"
expect "--moe-stats and --routing-by-class: one file, two names" 2 \
    "--moe-stats $T/link.csv and --routing-by-class $T/exists.csv name" \
    "$TRAIN" "$SPARSE" --out "$T/x.st" --moe-stats "$T/link.csv" \
    --routing-by-class "$T/exists.csv" --data "$D"
# What only the writer would find, after the first epoch: caught before
# training starts (a long run must not end on a name it cannot write).
ln -s loop2 "$T/loop1"
ln -s loop1 "$T/loop2"
expect "--out a symbolic link loop" 2 \
    "--out $T/loop1: Too many levels of symbolic links" \
    "$TRAIN" "$MIXER" --out "$T/loop1" --data "$D"
ln -s "$T/nodir/x.st" "$T/dangling.st"
expect "--out a link into a missing directory" 2 \
    "--out $T/dangling.st: cannot create $T/nodir/x.st: the directory" \
    "$TRAIN" "$MIXER" --out "$T/dangling.st" --data "$D"
L=$(printf 'c%.0s' $(seq 250))
expect "--out a name its temporary file cannot have" 2 \
    "the name is too long: its temporary file $L.tmp.XXXXXX would have" \
    "$TRAIN" "$MIXER" --out "$T/$L" --data "$D"
if ls "$T" | grep -q '\.tmp\.'; then bad "output checks left a file"
else ok "output checks create nothing"; fi
# A dangling link and its target are one output (the writer follows it).
ln -s new.csv "$T/tonew.csv"
expect "--metrics a dangling link to --moe-stats" 2 \
    "--metrics $T/tonew.csv and --moe-stats $T/new.csv name the same file" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --metrics "$T/tonew.csv" \
    --moe-stats "$T/new.csv" --data "$D"
# One run per checkpoint: while another holds OUT.lock (flock(1) stands
# in for it) a run with that --out is refused before it loads anything,
# also when --out reaches the file through a link.
if command -v flock >/dev/null; then
    ln -s lk.st "$T/lk_link.st"
    expect "--out locked by another run" 1 \
        "--out $T/lk.st: another smlp-train run is writing this checkpoint (it holds $T/lk.st.lock)" \
        flock "$T/lk.st.lock" "$TRAIN" "$MIXER" --out "$T/lk.st" --data "$D"
    expect "--out locked, through a link" 1 \
        "another smlp-train run is writing this checkpoint (it holds $T/lk.st.lock)" \
        flock "$T/lk.st.lock" "$TRAIN" "$MIXER" --out "$T/lk_link.st" \
        --data "$D"
    rm -f "$T/lk.st.lock" "$T/lk_link.st"
fi
# Data files that are FIFOs are refused, not waited on.
mkdir "$T/fifodata"
for f in train-images-idx3-ubyte train-labels-idx1-ubyte \
         t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    mkfifo "$T/fifodata/$f" 2>/dev/null
done
[ -p "$T/fifodata/train-images-idx3-ubyte" ] &&
    expect "--data with FIFOs (must not hang)" 1 \
        "$T/fifodata/train-images-idx3-ubyte: not a regular file" \
        timeout 60 "$TRAIN" "$MIXER" --out "$T/x.st" --data "$T/fifodata"
expect "--warmup in hex" 2 "--warmup: '0x10' is not" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --warmup 0x10
# Option ranges: each refusal names the option and its whole range (the
# bounds as train_opts.c documents them in --help and as the message
# says them), and a value at a bound is accepted: an accepted option
# runs on to the missing data (exit 1), a refused one stops at the usage
# error (exit 2).  Every case names the missing data, so that an option
# wrongly accepted fails at once instead of training on the real set.
expect "--epochs 0" 2 "--epochs: '0' is not an integer from 1 to 1000000" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$T/nodata" --epochs 0
expect "--epochs with trailing letters" 2 "--epochs: '3x' is not an integer" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$T/nodata" --epochs 3x
expect "--epochs with a leading blank" 2 "--epochs: ' 3' is not an integer" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$T/nodata" --epochs ' 3'
expect "--batch 2^20 + 1" 2 \
    "--batch: '1048577' is not an integer from 1 to 1048576" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$T/nodata" --batch 1048577
expect "--threads 1025" 2 \
    "--threads: '1025' is not an integer from 1 to 1024" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$T/nodata" --threads 1025
expect "--seed -1" 2 \
    "--seed: '-1' is not an integer from 0 to 18446744073709551615" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$T/nodata" --seed -1
expect "--seed 2^64" 2 \
    "--seed: '18446744073709551616' is not an integer from 0 to 18446744073709551615" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$T/nodata" \
    --seed 18446744073709551616
# NaN compares false with everything: it must fail the range check.
expect "--lr nan" 2 "--lr: 'nan' is not a number from 1e-12 to 1000" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$T/nodata" --lr nan
expect "--weight-decay -1" 2 \
    "--weight-decay: '-1' is not a number from 0 to 10" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$T/nodata" --weight-decay -1
# Momentum 1 would never forget a gradient: 0.9999 is the largest.
expect "--momentum 1" 2 "--momentum: '1' is not a number from 0 to 0.9999" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$T/nodata" \
    --optimizer sgd --momentum 1
expect "--label-smoothing 1.5" 2 \
    "--label-smoothing: '1.5' is not a number from 0 to 1" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$T/nodata" --label-smoothing 1.5
expect "--moco-m0 1.5" 2 "--moco-m0: '1.5' is not a number from 0 to 1" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$T/nodata" --moco-m0 1.5
expect "--eval-every 0 (per epoch) accepted" 1 "apt-get install" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$T/nodata" --eval-every 0
# Steps are whole; only an epoch count may have a fraction, and it
# starts with a digit.
expect "--warmup 2.5 steps" 2 "--warmup: '2.5' is not" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$T/nodata" --warmup 2.5
expect "--warmup 2.5ep accepted" 1 "apt-get install" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$T/nodata" --warmup 2.5ep
expect "--warmup .5ep" 2 "--warmup: '.5ep' is not" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$T/nodata" --warmup .5ep
# Option combinations.
expect "--momentum with adamw" 2 "--momentum is for --optimizer sgd" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$T/nodata" --momentum 0.5
expect "--init-from with --weights" 2 \
    "--init-from excludes --weights and --resume" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$T/nodata" \
    --init-from a --weights b
expect "two graphs" 2 "more than one graph file given" \
    "$TRAIN" "$MIXER" "$MIXER" --out "$T/x.st" --data "$T/nodata"
expect "--eval-only with --metrics" 2 \
    "--eval-only trains nothing: --metrics has" \
    "$TRAIN" "$MIXER" --data "$T/nodata" --eval-only --metrics "$T/m.csv"
expect "--eval-only with --plot" 2 "--eval-only trains nothing: --plot has" \
    "$TRAIN" "$MIXER" --data "$T/nodata" --eval-only --plot "$T/p.svg"
# --min-lr may equal --lr (a constant rate), not exceed it; sgd's
# default --lr is 0.05.
expect "--min-lr equal to --lr accepted" 1 "apt-get install" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$T/nodata" --lr 0.01 \
    --min-lr 0.01
expect "--min-lr above --lr" 2 "--min-lr 0.02 is above --lr 0.01" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$T/nodata" --lr 0.01 \
    --min-lr 0.02
expect "--min-lr above sgd's default --lr" 2 \
    "--min-lr 0.06 is above --lr 0.05" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$T/nodata" \
    --optimizer sgd --min-lr 0.06
expect "--stop-after at --epochs accepted" 1 "apt-get install" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$T/nodata" --epochs 2 \
    --stop-after 2
mkdir -p "$T/magic" "$T/trunc" "$T/other"
cp "$D"/*.gz "$T/magic/"
cp "$D"/*.gz "$T/trunc/"
cp "$D"/*.gz "$T/other/"
"$PY" -c "
import gzip, sys
d = sys.argv[1]
raw = bytearray(gzip.open(d + '/other/train-images-idx3-ubyte.gz').read())
raw[100] ^= 1
open(d + '/other/train-images-idx3-ubyte.gz', 'wb').write(
    gzip.compress(bytes(raw)))
open(d + '/magic/t10k-labels-idx1-ubyte.gz', 'wb').write(
    gzip.compress(b'\x00\x00\x08\x03' + bytes(100)))
raw = gzip.open(d + '/trunc/train-images-idx3-ubyte.gz').read()
open(d + '/trunc/train-images-idx3-ubyte.gz', 'wb').write(
    gzip.compress(raw[:5000]))
" "$T"
expect "bad magic" 1 "$T/magic/t10k-labels-idx1-ubyte.gz: not an IDX file" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$T/magic"
expect "truncated" 1 "$T/trunc/train-images-idx3-ubyte.gz: truncated" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$T/trunc"
# gzip streams that zlib returns whole, without complaint from gzread:
# the trailer (CRC and length) cut off, or 4 bytes of it; bytes after
# the stream.  And a label out of the graph's range.
for sub in notrailer tail4 garbage label; do
    mkdir -p "$T/$sub" && cp "$D"/*.gz "$T/$sub/"
done
"$PY" -c "
import gzip, sys
d = sys.argv[1]
raw = gzip.open(d + '/notrailer/t10k-labels-idx1-ubyte.gz').read()
g = gzip.compress(raw)
open(d + '/notrailer/t10k-labels-idx1-ubyte.gz', 'wb').write(g[:-8])
open(d + '/tail4/t10k-labels-idx1-ubyte.gz', 'wb').write(g[:-4])
open(d + '/garbage/t10k-labels-idx1-ubyte.gz', 'wb').write(g + b'garbage!')
raw = bytearray(gzip.open(d + '/label/train-labels-idx1-ubyte.gz').read())
raw[8 + 7] = 12
open(d + '/label/train-labels-idx1-ubyte.gz', 'wb').write(
    gzip.compress(bytes(raw)))
" "$T"
expect "gzip without its trailer" 1 \
    "$T/notrailer/t10k-labels-idx1-ubyte.gz: truncated or corrupt gzip" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$T/notrailer"
expect "gzip without 4 bytes of its trailer" 1 \
    "$T/tail4/t10k-labels-idx1-ubyte.gz: truncated or corrupt gzip" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$T/tail4"
expect "gzip with trailing garbage" 1 \
    "$T/garbage/t10k-labels-idx1-ubyte.gz: data after the gzip stream" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$T/garbage"
# Multi-member gzip files (gzip -c a >f; gzip -c b >>f): the data are
# the members' data end to end.  multi: every file in three members (the
# second empty; the labels split inside the IDX header), which must train
# as the one-member files do (after the short run below).  A member with
# a wrong CRC-32 or length, a last member cut short, or a stray byte
# after the last member: refused, naming the file and the member.
mkdir -p "$T/multi"
for f in train-images-idx3-ubyte train-labels-idx1-ubyte \
    t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    gzip -dc "$D/$f.gz" >"$T/raw"
    case $f in
    *labels*) cut=6 ;;
    *) cut=$(($(wc -c <"$T/raw") / 2 + 3)) ;;
    esac
    head -c $cut "$T/raw" | gzip -c >"$T/multi/$f.gz"
    gzip -c </dev/null >>"$T/multi/$f.gz"
    tail -c +$((cut + 1)) "$T/raw" | gzip -c >>"$T/multi/$f.gz"
done
for sub in mcrc mlen mcut mjunk; do
    mkdir -p "$T/$sub" && cp "$D"/*.gz "$T/$sub/"
done
"$PY" -c "
import gzip, sys
d = sys.argv[1]
raw = gzip.open(d + '/data/t10k-labels-idx1-ubyte.gz').read()
a, b = gzip.compress(raw[:30]), gzip.compress(raw[30:])
def put(sub, data):
    open(d + '/' + sub + '/t10k-labels-idx1-ubyte.gz', 'wb').write(data)
put('mcrc', a[:-8] + bytes([a[-8] ^ 1]) + a[-7:] + b)
put('mlen', a[:-4] + bytes([a[-4] ^ 1]) + a[-3:] + b)
put('mcut', a + b[:-8])
put('mjunk', a + b + b'\x1f')
" "$T"
Z="t10k-labels-idx1-ubyte.gz: truncated or corrupt gzip"
expect "gzip members: a wrong CRC-32 in the first" 1 \
    "$T/mcrc/$Z: incorrect data check in gzip member 1" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$T/mcrc"
expect "gzip members: a wrong length in the first" 1 \
    "$T/mlen/$Z: incorrect length check in gzip member 1" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$T/mlen"
expect "gzip members: the last without its trailer" 1 \
    "$T/mcut/$Z: the file ends inside gzip member 2" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$T/mcut"
expect "gzip members: a byte after the last" 1 \
    "$T/mjunk/t10k-labels-idx1-ubyte.gz: data after the gzip stream" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$T/mjunk"
expect "label out of range" 1 \
    "$T/label/train-labels-idx1-ubyte.gz: image 7 has label 12, out of range" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$T/label"
expect "batch over data" 1 "--batch 512 is more than the 256" \
    "$TRAIN" "$MIXER" --out "$T/x.st" --data "$D" --batch 512
cat >"$T/notcls.json" <<'JSON'
{"name": "notcls", "plugins": ["core"],
 "tensors": [{"name": "x", "kind": "Input", "shape": [-1, 4]},
             {"name": "y", "kind": "Output"}],
 "nodes": [{"name": "n", "op": "core.gelu", "inputs": [0], "outputs": [1]}]}
JSON
"${FLATC:-flatc}" -b -o "$T" "${SMLP_TEST_SRCDIR:-.}/schemas/graph.fbs" \
    "$T/notcls.json"
expect "not a classifier" 1 "input 'x' must be an f32 tensor shaped" \
    "$TRAIN" "$T/notcls.fbs" --out "$T/x.st" --data "$D"

# ---- a short run: the loss falls, files are written ----
COMMON="--data $D --batch 32 --limit-test 64 --threads 2"
expect "short run" 0 "done: 24 steps" \
    "$TRAIN" "$MIXER" $COMMON --limit-train 256 --epochs 3 --lr 2e-3 \
    --out "$T/run.st" --metrics "$T/run.csv" --plot "$T/run.svg" \
    --trace "$T/run.json"
for want in "256 training images (8 steps of 32 per epoch)" \
    "epoch 1/3: loss" "epoch 3/3: loss" "test acc" "img/s" \
    "MiB resident"; do
    if grep -qF -- "$want" "$T/out"; then ok "run prints '$want'"
    else bad "run lacks '$want'"; fi
done
if "$PY" - "$T/run.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert [int(r["step"]) for r in rows] == [8, 16, 24], rows
loss = [float(r["loss"]) for r in rows]
assert loss[-1] < loss[0] - 0.3, loss
assert all(r["test_acc"] != "" for r in rows), rows
assert float(rows[-1]["test_acc"]) > float(rows[0]["test_acc"]) or \
    float(rows[-1]["test_acc"]) > 0.5, rows
PY
then ok "the loss falls (metrics CSV)"; else bad "the loss falls"; fi
if st check "$T/run.st" $CKPT && [ "$(st meta "$T/run.st" train.epoch)" = 3 ] &&
    [ "$(st meta "$T/run.st" smlp.optim.steps)" = 24 ]; then
    ok "checkpoint written with its position"
else bad "checkpoint"; fi
if "$PY" -c "
import sys, xml.dom.minidom as m
d = m.parse(sys.argv[1])
assert len(d.getElementsByTagName('polyline')) == 4
" "$T/run.svg"; then ok "SVG plot"; else bad "SVG plot"; fi
# The trace of the last step: every node's forward, and a backward after
# it for each node on the path from the parameters to the loss.
if "$PY" - "$T/run.json" <<'PY'
import json, sys
ev = [e for e in json.load(open(sys.argv[1]))["traceEvents"]
      if e.get("ph") == "X"]
fwd = {e["name"]: e for e in ev if not e["name"].endswith(" (backward)")}
bwd = {e["name"][:-11]: e for e in ev if e["name"].endswith(" (backward)")}
assert len(fwd) > 20 and len(bwd) > 10, (len(fwd), len(bwd))
assert set(bwd) <= set(fwd), set(bwd) - set(fwd)
for n, b in bwd.items():
    assert b["ts"] >= fwd[n]["ts"] + fwd[n]["dur"], n
    assert b["dur"] >= 0 and b["cat"] == fwd[n]["cat"], n
assert any(e["cat"] == "core.linear" for e in bwd.values())
PY
then ok "--trace: forward and backward of the last step"
else bad "--trace"; fi
# The same run on the multi-member files: the same checkpoint and rows.
expect "multi-member gzip data" 0 "done: 24 steps" \
    "$TRAIN" "$MIXER" $COMMON --data "$T/multi" --limit-train 256 \
    --epochs 3 --lr 2e-3 --out "$T/multi.st" --metrics "$T/multi.csv"
if st same "$T/run.st" "$T/multi.st" &&
    [ "$(cut -d, -f1-5,7- "$T/run.csv")" = \
      "$(cut -d, -f1-5,7- "$T/multi.csv")" ]; then
    ok "multi-member gzip data: the run of the one-member files"
else bad "multi-member gzip data: another run"; show "$T/multi.csv"; fi
if ls "$T" | grep -q '\.tmp\.'; then bad "temporary files left"
else ok "no temporary files left"; fi
# --eval-only: the checkpoint's test accuracy is the one its run printed
# for its last epoch (the CSV's last row); no --out needed.
want=$("$PY" -c "
import csv, sys
last = list(csv.DictReader(open(sys.argv[1])))[-1]
print('test acc %.2f%%' % (100 * float(last['test_acc'])))
" "$T/run.csv")
expect "--eval-only" 0 "mixer_fmnist: $want" \
    "$TRAIN" "$MIXER" --data "$D" --limit-test 64 --threads 2 --eval-only \
    --weights "$T/run.st"
expect "--eval-only of the initializers" 0 "(64 test images" \
    "$TRAIN" "$MIXER" --data "$D" --limit-test 64 --eval-only
# The initial head is zero: every logit is 0, the loss ln 10, and the
# argmax of a tie the first class, so the accuracy is class 0's share.
if "$PY" - "$T/out" "$D/t10k-labels-idx1-ubyte.gz" <<'PY'
import gzip, re, sys
text = open(sys.argv[1]).read()
labels = gzip.open(sys.argv[2]).read()[8:8 + 64]
want = "test acc %.2f%%, test loss 2.3026 " % (100 * labels.count(0) / 64)
assert want in text, (want, text)
rows = re.findall(r"(\d+) +([0-9.]+)% \((\d+)\)",
                  text.split("per class: accuracy (test images)")[1])
assert {int(c): (float(a), int(n)) for c, a, n in rows} == \
    {c: (100.0 if c == 0 else 0.0, labels.count(c)) for c in set(labels)}, \
    rows
PY
then ok "--eval-only of the initializers: all logits 0, class 0 predicted"
else bad "--eval-only of the initializers: all logits 0"; show "$T/out"; fi
# A classifier with a batch norm: its running statistics, state tensors,
# move in training (from 0: the layer before it has bias 3), and the
# run's evaluation uses them, as --eval-only of its checkpoint does.
make_bn_graph bncls 16
"$TRAIN" "$T/bncls.fbs" $COMMON --limit-train 256 --epochs 1 --lr 3e-3 \
    --out "$T/bn.st" >"$T/bn.out" 2>&1 || bad "a batch norm classifier"
want=$("$PY" -c "
import re, sys
m = re.search(r'^epoch 1/1: .*test acc ([0-9.]+%) \(best [0-9.]+%\), '
              r'(test loss [0-9.]+),', open(sys.argv[1]).read(), re.M)
print('test acc %s, %s' % m.groups() if m else '(no epoch line)')
" "$T/bn.out")
expect "--eval-only of a batch norm classifier" 0 \
    "bncls: $want" \
    "$TRAIN" "$T/bncls.fbs" --data "$D" --limit-test 64 --threads 2 \
    --eval-only --weights "$T/bn.st"
# The accuracy, each class's and the loss of its checkpoint, computed here
# in double: (pixel / 255 - 0.2860) / 0.3530, fc, the batch norm with the
# running statistics (eps 1e-5), head, softmax cross-entropy.
if stpy - "$T/bn.st" "$D" "$T/out" <<'PY'
import gzip, math, re, sys
import st
t = st.read(sys.argv[1]).values
w1, b1, g, beta = t("fc.weight"), t("fc.bias"), t("bn.weight"), t("bn.bias")
mean, var, w2, b2 = (t("bn.running_mean"), t("bn.running_var"),
                     t("head.weight"), t("head.bias"))
assert min(abs(x) for x in mean) > 0.1, mean  # the statistics moved
px = gzip.open(sys.argv[2] + "/t10k-images-idx3-ubyte.gz").read()[16:]
labels = gzip.open(sys.argv[2] + "/t10k-labels-idx1-ubyte.gz").read()[8:]
ce, right, per, preds = 0.0, 0, {}, set()
for i in range(64):
    x = [(p / 255 - 0.2860) / 0.3530 for p in px[784 * i:784 * (i + 1)]]
    y = [sum(a * c for a, c in zip(w1[784 * j:784 * (j + 1)], x)) + b1[j]
         for j in range(16)]
    y = [(y[j] - mean[j]) / math.sqrt(var[j] + 1e-5) * g[j] + beta[j]
         for j in range(16)]
    z = [sum(a * c for a, c in zip(w2[16 * k:16 * (k + 1)], y)) + b2[k]
         for k in range(10)]
    top = sorted(z)
    assert top[-1] - top[-2] > 1e-4, (i, top)  # no near tie
    c, best = labels[i], z.index(top[-1])
    preds.add(best)
    ce += math.log(sum(math.exp(v - top[-1]) for v in z)) + top[-1] - z[c]
    right += best == c
    per.setdefault(c, [0, 0])[0] += 1
    per[c][1] += best == c
# right and wrong ones, class 1 predicted: the test can tell
assert 0 < right < 64 and 1 in preds, (right, preds)
text = open(sys.argv[3]).read()
m = re.search(r"test acc ([0-9.]+)%, test loss ([0-9.]+)", text)
assert abs(float(m.group(1)) - 100 * right / 64) < 0.006, (m.group(0), right)
assert abs(float(m.group(2)) - ce / 64) < 2e-4, (m.group(0), ce / 64)
rows = re.findall(r"(\d+) +([0-9.]+)% \((\d+)\)",
                  text.split("per class: accuracy (test images)")[1])
assert {int(c): (int(k), round(float(a) * int(k) / 100)) for c, a, k in rows} \
    == {c: tuple(v) for c, v in per.items()}, (rows, per)
PY
then ok "--eval-only of a batch norm classifier: accuracy, per class, loss"
else bad "--eval-only of a batch norm classifier"; show "$T/out"; fi
expect "--eval-only with --out" 2 "--eval-only trains nothing: --out has" \
    "$TRAIN" "$MIXER" --data "$D" --eval-only --out "$T/x.st"
expect "--eval-only with --trace" 2 "--eval-only trains nothing: --trace" \
    "$TRAIN" "$MIXER" --data "$D" --eval-only --trace "$T/x.json"
expect "--eval-only with --moe-stats" 2 \
    "--eval-only trains nothing: --moe-stats has nothing to write" \
    "$TRAIN" "$SPARSE" --data "$D" --eval-only --moe-stats "$T/x.csv"
expect "--moe-stats in a missing directory" 2 \
    "--moe-stats $T/no/dir/x.csv: cannot write: the directory $T/no/dir" \
    "$TRAIN" "$SPARSE" --data "$D" --out "$T/x.st" \
    --moe-stats "$T/no/dir/x.csv"
expect "--routing-by-class in a missing directory" 2 \
    "--routing-by-class $T/no/x.csv: cannot write: the directory $T/no" \
    "$TRAIN" "$SPARSE" --data "$D" --eval-only --routing-by-class "$T/no/x.csv"
expect "nothing left to do" 0 \
    "nothing to do: $T/run.st is at step 24, already at this run's end" \
    "$TRAIN" "$MIXER" $COMMON --limit-train 256 --epochs 3 --lr 2e-3 \
    --out "$T/run2.st" --resume "$T/run.st"
expect "nothing left to do: past the end" 0 \
    "$T/run.st is at step 24, already past this run's end (step 16" \
    "$TRAIN" "$MIXER" $COMMON --limit-train 256 --epochs 3 --lr 2e-3 \
    --stop-after 2 --out "$T/run2.st" --resume "$T/run.st"

# ---- options the mode would ignore: usage errors ----
MOCO="$B/graphs/moco_sparse_mlp_fmnist.fbs"
expect "--label-smoothing on MoCo" 2 \
    "--label-smoothing does nothing for $MOCO, a MoCo pre-training graph" \
    "$TRAIN" "$MOCO" --data "$D" --out "$T/x.st" --label-smoothing 0.1
expect "--eval-every on MoCo" 2 "--eval-every does nothing for $MOCO" \
    "$TRAIN" "$MOCO" --data "$D" --out "$T/x.st" --eval-every 1
expect "--moco-m0 on a classifier" 2 \
    "--moco-m0 is for a MoCo pre-training graph" \
    "$TRAIN" "$MIXER" --data "$D" --out "$T/x.st" --moco-m0 0.5

# ---- weights with a NaN: named, whichever option loads them ----
# (as another program would write it: without smlp.data_hash, which
# this edit would break; tests/check_api checks that hash)
st delmeta "$T/run.st" "$T/nan.st" smlp.data_hash
st poke "$T/nan.st" "$T/nan.st" head.bias 3 nan
for how in --weights --init-from --resume; do
    expect "NaN in $how" 1 "$T/nan.st: tensor 'head.bias': element 3 is NaN" \
        "$TRAIN" "$MIXER" $COMMON --limit-train 256 --epochs 3 --lr 2e-3 \
        --out "$T/x.st" $how "$T/nan.st"
done
if grep -q "lower --lr" "$T/out"; then bad "NaN weights blamed on --lr"
else ok "NaN weights not blamed on --lr"; fi
expect "NaN in --eval-only --weights" 1 \
    "tensor 'head.bias': element 3 is NaN" \
    "$TRAIN" "$MIXER" --data "$D" --limit-test 64 --eval-only \
    --weights "$T/nan.st"
# A loss that becomes infinite after a checkpoint: head.weight 1e30
# gives a finite first loss and gradients of 1e30 into the backbone, so
# SGD at --lr 1000 overflows it; one step an epoch, the second step's
# loss is not finite, and the message says the checkpoint is the last
# good epoch's.
st delmeta "$T/run.st" "$T/big.st" smlp.data_hash
st poke "$T/big.st" "$T/big.st" head.weight all 1e30
expect "a loss that overflows after a checkpoint" 1 \
    "try a lower --lr or --clip-norm (the checkpoint keeps the last good" \
    "$TRAIN" "$MIXER" $COMMON --limit-train 32 --epochs 2 --optimizer sgd \
    --lr 1000 --weights "$T/big.st" --out "$T/x.st"

# ---- --init-from another graph's checkpoint: allowed, with a warning ----
expect "--init-from another graph" 0 "warning: --init-from $T/run.st: a \
checkpoint of graph 'mixer_fmnist', and this graph is 'sparse_mlp_fmnist'" \
    "$TRAIN" "$SPARSE" $COMMON --limit-train 64 --max-steps 1 \
    --out "$T/x.st" --init-from "$T/run.st"
expect "--init-from the same graph" 0 "78 of 78 parameters loaded" \
    "$TRAIN" "$MIXER" $COMMON --limit-train 64 --max-steps 1 \
    --out "$T/x.st" --init-from "$T/run.st"
if grep -q "warning" "$T/out"; then bad "--init-from the same graph warns"
else ok "--init-from the same graph: no warning"; fi
# Its checkpoint names the file it started from, and so does the
# checkpoint of a run resumed from it (one step more).
cp "$T/x.st" "$T/if.st"
"$TRAIN" "$MIXER" $COMMON --limit-train 64 --max-steps 2 --out "$T/if.st" \
    --resume "$T/if.st" >"$T/out" 2>&1 || bad "resume an --init-from run"
if [ "$(st meta "$T/x.st" train.init_from)" = "$T/run.st" ] &&
   [ "$(st meta "$T/if.st" train.init_from)" = "$T/run.st" ] &&
   [ "$(st meta "$T/if.st" train.step)" = 2 ]; then
    ok "--init-from is kept in the checkpoints of a resumed run"
else bad "--init-from is not kept on resume"; show "$T/out"; fi
# Files made here (safetensors: an 8-byte little-endian header length,
# a JSON header, the data): one holding no tensor of the graph's names
# is refused; one whose head.bias is I32 [10] (the graph's: F32 [10],
# the same size) is refused by its dtype.
stpy - "$T/noparam.st" "$T/i32.st" <<'PY'
import st, sys
st.write(sys.argv[1], {"zzz": ("F32", [10], bytes(40))})
st.write(sys.argv[2], {"head.bias": ("I32", [10], bytes(40))})
PY
expect "--init-from a file of no parameter" 1 \
    "--init-from $T/noparam.st: holds none of the 78 parameters of $MIXER" \
    "$TRAIN" "$MIXER" $COMMON --limit-train 64 --max-steps 1 \
    --out "$T/x.st" --init-from "$T/noparam.st"
expect "--init-from a tensor of another dtype" 1 \
    "tensor 'head.bias' is I32 [10], the graph's is F32 [10]" \
    "$TRAIN" "$MIXER" $COMMON --limit-train 64 --max-steps 1 \
    --out "$T/x.st" --init-from "$T/i32.st"
"$TRAIN" "$MOCO" $COMMON --limit-train 64 --max-steps 1 --out "$T/moco.st" \
    >"$T/out" 2>&1 || bad "a MoCo step"
expect "--init-from its MoCo pre-training" 0 "done: 1 steps" \
    "$TRAIN" "$SPARSE" $COMMON --limit-train 64 --max-steps 1 \
    --out "$T/x.st" --init-from "$T/moco.st"
if grep -q "warning" "$T/out"; then bad "--init-from MoCo warns"; show "$T/out"
else ok "--init-from its MoCo pre-training: no warning"; fi

# ---- resume: 2 epochs = 1 epoch + --resume 1 epoch, bit for bit ----
M="$MIXER $COMMON --limit-train 256 --epochs 2 --augment moco"
"$TRAIN" $M --out "$T/a.st" --plot "$T/a.svg" >"$T/out" 2>&1 ||
    bad "2 epochs"
"$TRAIN" $M --out "$T/b.st" --stop-after 1 --metrics "$T/b.csv" \
    >"$T/out" 2>&1 || bad "1 epoch"
cp "$T/b.st" "$T/b1.st"
expect "stopped after 1" 0 "resuming at epoch 2, step 8 of 16" \
    "$TRAIN" $M --out "$T/b.st" --resume "$T/b.st" --metrics "$T/b.csv" \
    --plot "$T/b.png"
if st same "$T/a.st" "$T/b.st"; then ok "resume is bit-identical (mixer)"
else bad "resume is bit-identical (mixer)"; fi
if [ "$(grep -c . "$T/b.csv")" = 3 ]; then ok "metrics continue on resume"
else bad "metrics continue on resume"; cat "$T/b.csv"; fi
# The PNG plot of the resumed run (the same curves as a.svg's: the runs
# are the same bits), decoded here with zlib: chunks and CRCs, 960 x 400
# RGB, and every test point of the SVG an orange disc in the PNG: each
# pixel whose centre is within 2.4 of the point (the radius, 3, less half
# a pixel and the SVG's rounding) wholly orange.
if "$PY" - "$T/a.svg" "$T/b.png" <<'PY'
import math, re, struct, sys, zlib
b = open(sys.argv[2], "rb").read()
assert b[:8] == b"\x89PNG\r\n\x1a\n"
pos, chunks = 8, []
while pos < len(b):
    n, = struct.unpack(">I", b[pos:pos + 4])
    typ, data = b[pos + 4:pos + 8], b[pos + 8:pos + 8 + n]
    crc, = struct.unpack(">I", b[pos + 8 + n:pos + 12 + n])
    assert zlib.crc32(typ + data) & 0xffffffff == crc, typ
    chunks.append((typ, data))
    pos += 12 + n
assert [c[0] for c in chunks] == [b"IHDR", b"IDAT", b"IEND"], chunks
w, h, depth, ctype, _, _, lace = struct.unpack(">IIBBBBB", chunks[0][1])
assert (w, h, depth, ctype, lace) == (960, 400, 8, 2, 0)
raw, row = zlib.decompress(chunks[1][1]), 1 + 3 * w
assert len(raw) == h * row and all(raw[y * row] == 0 for y in range(h))
px = lambda x, y: tuple(raw[y * row + 1 + 3 * x:y * row + 4 + 3 * x])
dots = re.findall(r"<circle cx='([0-9.]+)' cy='([0-9.]+)' r='3' "
                  r"fill='#ff7f0e'", open(sys.argv[1]).read())
assert len(dots) == 4, dots
for cx, cy in dots:
    p = px(int(float(cx)), int(float(cy)))
    assert max(abs(u - v) for u, v in zip(p, (255, 127, 14))) <= 8, (cx, p)
    x0, y0 = float(cx), float(cy)
    for y in range(int(y0) - 3, int(y0) + 4):
        for x in range(int(x0) - 3, int(x0) + 4):
            if math.hypot(x + 0.5 - x0, y + 0.5 - y0) <= 2.4:
                assert px(x, y) == (255, 127, 14), (cx, cy, x, y, px(x, y))
blue = sum(px(x, y) == (31, 119, 180) for y in range(h) for x in range(w))
ink = sum(px(x, y) == (0, 0, 0) for y in range(30) for x in range(w))
assert blue > 50 and ink > 200, (blue, ink)
PY
then ok "PNG plot: valid, the SVG's test points"; else bad "PNG plot"; fi
# --resume reads the metrics CSV back: a row of chosen numbers at the
# checkpoint's step (b1.st: epoch 1 of M) is written again as it was, and
# the plot draws it.  plot.py reads the SVG back: each panel's axis from
# its tick labels, the frame spanning epochs [0, max(1, last)], loss [0,
# the largest loss, train or test, at least 1] and accuracy [the
# smallest, train or test, rounded down to 10 (at most 90), 100] %; each
# curve's points the CSV's (loss, test_loss, 100 x train_acc, 100 x
# test_acc by epoch), inside the frame; a grid line across the frame at
# each tick, the accuracy's top one at 100.  Two rows: the first puts the
# accuracy axis at 0 (train 5 %) and the largest loss in the test column;
# the second above 0 (the smallest accuracy, epoch 2's, over 10 %).
cat >"$T/plot.py" <<'PY'
import csv, math, sys, xml.dom.minidom as m
rows = list(csv.DictReader(open(sys.argv[1])))
assert [int(r["step"]) for r in rows] == [8, 16], rows
num = lambda r, k: float(r[k]) if r[k] != "" else math.nan
ep = [num(r, "epoch") for r in rows]
cols = {"loss": [num(r, "loss") for r in rows],
        "test_loss": [num(r, "test_loss") for r in rows],
        "acc": [100 * num(r, "train_acc") for r in rows],
        "test_acc": [100 * num(r, "test_acc") for r in rows]}
d = m.parse(sys.argv[2])
frames = [(float(e.getAttribute("x")), float(e.getAttribute("y")),
           float(e.getAttribute("width")), float(e.getAttribute("height")))
          for e in d.getElementsByTagName("rect")
          if e.getAttribute("fill") == "none"]
assert len(frames) == 2, frames
texts = [(float(e.getAttribute("x")), float(e.getAttribute("y")),
          e.getAttribute("text-anchor"), e.firstChild.data)
         for e in d.getElementsByTagName("text") if e.firstChild]
def axis(pairs):  # (value, pixel) pairs -> pixel to value
    (v0, p0), (v1, p1) = pairs[0], pairs[-1]
    f = lambda p: v0 + (p - p0) * (v1 - v0) / (p1 - p0)
    assert len(pairs) >= 3 and all(abs(f(p) - v) <= 0.002 * abs(v1 - v0)
                                   for v, p in pairs), pairs
    return f
ymax = max([1] + [v for k in ("loss", "test_loss") for v in cols[k]
                  if not math.isnan(v)])
amin = min(v for k in ("acc", "test_acc") for v in cols[k]
           if not math.isnan(v))
ranges = [(0, ymax), (min(90, math.floor(amin / 10) * 10), 100)]
polys = d.getElementsByTagName("polyline")
assert len(polys) == 4, len(polys)
grid = [tuple(float(e.getAttribute(a)) for a in ("x1", "y1", "x2", "y2"))
        for e in d.getElementsByTagName("line")
        if e.getAttribute("stroke") == "#dddddd"]
for i, (x0, y0, w, h) in enumerate(frames):
    fx = axis(sorted((float(s), x) for x, y, a, s in texts
                     if a == "middle" and abs(y - (y0 + h + 16)) < 0.01
                     and x0 - 50 < x < x0 + w + 50))
    fy = axis(sorted((float(s), y - 4) for x, y, a, s in texts
                     if a == "end" and abs(x - (x0 - 6)) < 0.01))
    for x, y, a, s in texts:
        if a == "middle" and abs(y - (y0 + h + 16)) < 0.01 and \
                x0 - 50 < x < x0 + w + 50:
            want = (x, y0, x, y0 + h)
        elif a == "end" and abs(x - (x0 - 6)) < 0.01:
            want = (x0, y - 4, x0 + w, y - 4)
        else:
            continue
        assert any(all(abs(u - v) <= 0.11 for u, v in zip(ln, want))
                   for ln in grid), (i, s, want)
    # the accuracy axis, from a multiple of 10 to 100, has ticks 2, 5, 10
    # or 20 apart: one of them at its top, labelled 100
    assert i == 0 or any(s == "100" and abs(y - 4 - y0) <= 0.11
                         for x, y, a, s in texts
                         if a == "end" and abs(x - (x0 - 6)) < 0.01), texts
    ux, uy = 0.2 * abs(fx(1) - fx(0)), 0.2 * abs(fy(1) - fy(0))
    for (a, b), (lo, hi), u in zip(((fx(x0), fx(x0 + w)),
                                    (fy(y0 + h), fy(y0))),
                                   ((0, max(1, max(ep))), ranges[i]),
                                   (ux, uy)):
        assert abs(a - lo) <= u and abs(b - hi) <= u, (i, a, b, lo, hi)
    for p, key, colour in zip(polys[2 * i:2 * i + 2],
                              (("loss", "test_loss"), ("acc", "test_acc"))[i],
                              ("#1f77b4", "#ff7f0e")):
        assert p.getAttribute("stroke") == colour, (key, colour)
        pts = [tuple(map(float, s.split(",")))
               for s in p.getAttribute("points").split()]
        want = [(e, v) for e, v in zip(ep, cols[key]) if not math.isnan(v)]
        assert len(pts) == len(want), (key, pts, want)
        for (px, py), (e, v) in zip(pts, want):
            assert x0 - 0.5 <= px <= x0 + w + 0.5, (key, px)
            assert y0 - 0.5 <= py <= y0 + h + 0.5, (key, py)
            assert abs(fx(px) - e) <= ux and abs(fy(py) - v) <= uy, \
                (key, fx(px), e, fy(py), v)
PY
for ROW in "8,1.0000,0.00123,0.5,0.05,1234.5,3.7,0.6" \
    "8,1.0000,0.00123,0.5,0.3,1234.5,0.4,0.9"; do
    printf 'step,epoch,lr,loss,train_acc,images_per_s,test_loss,test_acc\n' \
        >"$T/p.csv"
    echo "$ROW" >>"$T/p.csv"
    expect "resume with the metrics row $ROW" 0 "done: 16 steps" \
        "$TRAIN" $M --out "$T/p.st" --resume "$T/b1.st" \
        --metrics "$T/p.csv" --plot "$T/p.svg"
    if [ "$(sed -n 2p "$T/p.csv")" = "$ROW" ] &&
        "$PY" "$T/plot.py" "$T/p.csv" "$T/p.svg" >"$T/out" 2>&1
    then ok "--resume keeps the row $ROW; the SVG plot draws the CSV"
    else bad "metrics row $ROW read back / SVG plot"; show "$T/p.csv"
        show "$T/out"
    fi
done
# A row without images/s (written in every row; only train_acc and the
# test columns may be empty) is refused: the file starts again.
printf 'step,epoch,lr,loss,train_acc,images_per_s,test_loss,test_acc\n' \
    >"$T/p.csv"
echo "8,1.0000,0.00123,0.5,0.3,,0.4,0.9" >>"$T/p.csv"
expect "resume with a metrics row without images/s" 0 \
    "warning: --metrics $T/p.csv:2: not a row of 8 numbers; the file starts" \
    "$TRAIN" $M --out "$T/p.st" --resume "$T/b1.st" --metrics "$T/p.csv"
if [ "$(cut -d, -f1 "$T/p.csv" | tr '\n' ' ')" = "step 16 " ]; then
    ok "the refused metrics row is not kept"
else bad "the refused metrics row is kept"; show "$T/p.csv"; fi
# Blank lines (an editor's, at the end) are no rows: the row is kept,
# with no warning.
printf 'step,epoch,lr,loss,train_acc,images_per_s,test_loss,test_acc\n' \
    >"$T/p.csv"
printf '8,1.0000,0.00123,0.5,0.3,1234.5,0.4,0.9\n\n\r\n' >>"$T/p.csv"
expect "resume with blank lines in the metrics" 0 "done: 16 steps" \
    "$TRAIN" $M --out "$T/p.st" --resume "$T/b1.st" --metrics "$T/p.csv"
if ! grep -q warning "$T/out" &&
    [ "$(cut -d, -f1 "$T/p.csv" | tr '\n' ' ')" = "step 8 16 " ]; then
    ok "blank lines in the metrics: the rows kept"
else bad "blank lines in the metrics"; show "$T/out"; show "$T/p.csv"; fi
# The epoch lines, and --eval-only's accuracies, are the answer: lost to
# a full disk, the run fails.
if [ -w /dev/full ]; then
    expect "--eval-only >/dev/full" 1 "cannot write to standard output" \
        sh -c "'$TRAIN' $MIXER $COMMON --eval-only --weights '$T/b1.st' \
               >/dev/full"
fi
# A row without train accuracy (as MoCo's) leaves that curve one point:
# the SVG draws it, and the PNG (of the same CSV) a blue dot there.
ROW="8,1.0000,0.00123,0.5,,1234.5,0.4,0.9"
for ext in svg png; do
    printf 'step,epoch,lr,loss,train_acc,images_per_s,test_loss,test_acc\n' \
        >"$T/p.csv"
    echo "$ROW" >>"$T/p.csv"
    "$TRAIN" $M --out "$T/p.st" --resume "$T/b1.st" --metrics "$T/p.csv" \
        --plot "$T/p1.$ext" >"$T/out" 2>&1 || bad "--plot p1.$ext"
done
if "$PY" "$T/plot.py" "$T/p.csv" "$T/p1.svg" >"$T/out" 2>&1 &&
    "$PY" - "$T/p1.svg" "$T/p1.png" >>"$T/out" 2>&1 <<'PY'
import struct, sys, zlib, xml.dom.minidom as m
p = m.parse(sys.argv[1]).getElementsByTagName("polyline")[2]
x, y = map(float, p.getAttribute("points").split(","))
b = open(sys.argv[2], "rb").read()
w, h = struct.unpack(">II", b[16:24])
n, = struct.unpack(">I", b[33:37])
raw, row = zlib.decompress(b[41:41 + n]), 1 + 3 * w
px = lambda i, j: raw[j * row + 1 + 3 * i:j * row + 4 + 3 * i]
blue = max(px(i, j)[2] - px(i, j)[0] for i in range(int(x) - 1, int(x) + 2)
           for j in range(int(y) - 1, int(y) + 2))
assert blue >= 40, (x, y, blue)
PY
then ok "a curve of one point: in the SVG, a blue dot in the PNG"
else bad "a curve of one point"; show "$T/out"; fi
S="$SPARSE $COMMON --limit-train 64 --epochs 2 --seed 5 --augment shift"
# (sa: also --routing-by-class, which must not change the run)
"$TRAIN" $S --out "$T/sa.st" --moe-stats "$T/sa.csv" \
    --routing-by-class "$T/sa_rbc.csv" >"$T/sa.out" 2>&1 ||
    bad "sparse 2 epochs"
if [ "$(grep -c . "$T/sa_rbc.csv")" = 161 ]; then
    ok "--routing-by-class written at each evaluation"
else bad "--routing-by-class written at each evaluation"; fi
# rbc.py CSV LABELS N [nodrop]: each (layer, class) of the file has the
# assignments of its images among the first N test images once: items x k
# each (MoE_s: 64 channels, k 1; MoE_c: 49 tokens, k 2); with nodrop, no
# item dropped.  sa_rbc.csv, written after the second evaluation, holds
# that one alone (not the sum of the two).
cat >"$T/rbc.py" <<'PY'
import csv, gzip, sys
rows = list(csv.DictReader(open(sys.argv[1])))
labels = gzip.open(sys.argv[2]).read()[8:8 + int(sys.argv[3])]
per = {}
for r in rows:
    a, d = int(r["assigned"]), int(r["dropped"])
    assert 0 <= d <= a and (d == 0 or sys.argv[4:] != ["nodrop"]), r
    per.setdefault((r["layer"], int(r["class"])), []).append(a)
assert len(per) == 4 * 10 and all(len(a) == 4 for a in per.values()), per
for (layer, c), a in per.items():
    want = labels.count(c) * (64 if "moe_s" in layer else 49 * 2)
    assert sum(a) == want, (layer, c, a, want)
PY
if "$PY" "$T/rbc.py" "$T/sa_rbc.csv" "$D/t10k-labels-idx1-ubyte.gz" 64; then
    ok "--routing-by-class: the last evaluation's assignments alone"
else bad "--routing-by-class after two evaluations"; show "$T/sa_rbc.csv"; fi
"$TRAIN" $S --out "$T/sb.st" --moe-stats "$T/sb.csv" --stop-after 1 \
    >"$T/out" 2>&1 || bad "sparse 1 epoch"
expect "sparse resumed" 0 "loss = cross-entropy + aux_loss" \
    "$TRAIN" $S --out "$T/sb.st" --moe-stats "$T/sb.csv" --resume "$T/sb.st"
if st same "$T/sa.st" "$T/sb.st"; then ok "resume is bit-identical (sparse)"
else bad "resume is bit-identical (sparse)"; fi
# --moe-stats: a row per (metrics row, layer, expert); each layer routes
# k x items per step (MoE_s: 32 images x C1 = 64 channels, k 1; MoE_c: 32
# x 49 tokens, k 2), 2 steps per epoch; the resumed run's file is the same.
if "$PY" - "$T/sa.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert list(rows[0]) == "step,epoch,layer,expert,kept,dropped,aux".split(",")
per = {}
for r in rows:
    key = (int(r["step"]), r["layer"])
    per.setdefault(key, []).append(r)
layers = sorted({k[1] for k in per})
assert layers == ["blocks.%d.moe_%s.gate" % (b, m) for b in (4, 5)
                  for m in ("c", "s")], layers
assert sorted({k[0] for k in per}) == [2, 4], per.keys()
for (step, layer), rs in per.items():
    assert [int(r["expert"]) for r in rs] == [0, 1, 2, 3], rs
    routed = sum(int(r["kept"]) + int(r["dropped"]) for r in rs)
    want = 2 * 32 * (64 if "moe_s" in layer else 49 * 2)
    assert routed == want, (step, layer, routed, want)
    assert len({r["aux"] for r in rs}) == 1 and float(rs[0]["aux"]) > 0
PY
then ok "--moe-stats: every layer's assignments, per expert"
else bad "--moe-stats rows"; fi
if cmp -s "$T/sa.csv" "$T/sb.csv"; then ok "--moe-stats continues on resume"
else bad "--moe-stats continues on resume"; diff "$T/sa.csv" "$T/sb.csv"; fi
# The same run with a row every step: each row of sa.csv (one per epoch,
# 2 steps) has the sum of its steps' counts and the mean of their aux;
# each epoch line's dropped share is that of its rows.
"$TRAIN" $S --log-every 1 --out "$T/s1.st" --moe-stats "$T/s1.csv" \
    >"$T/out" 2>&1 || bad "sparse, rows every step"
if "$PY" - "$T/sa.csv" "$T/s1.csv" "$T/sa.out" <<'PY'
import csv, re, sys
def load(path):
    return {(int(r["step"]), r["layer"], int(r["expert"])):
            (int(r["kept"]), int(r["dropped"]), float(r["aux"]))
            for r in csv.DictReader(open(path))}
rows, steps = load(sys.argv[1]), load(sys.argv[2])
assert len(rows) == 2 * 4 * 4 and len(steps) == 2 * len(rows), len(steps)
for (step, layer, e), (k, d, aux) in rows.items():
    a, b = steps[(step - 1, layer, e)], steps[(step, layer, e)]
    assert (k, d) == (a[0] + b[0], a[1] + b[1]), (step, layer, e)
    assert abs(aux - (a[2] + b[2]) / 2) <= 1e-6 * aux, (step, layer, aux)
shares = re.findall(r"^epoch \d/2: .*, dropped ([0-9.]+)%$",
                    open(sys.argv[3]).read(), re.M)
assert len(shares) == 2, shares
for share, step in zip(shares, (2, 4)):
    k = sum(v[0] for key, v in rows.items() if key[0] == step)
    d = sum(v[1] for key, v in rows.items() if key[0] == step)
    assert d > 0 and abs(float(share) - 100 * d / (k + d)) < 0.006, \
        (share, k, d)
PY
then ok "--moe-stats: rows sum their steps; the epochs' dropped shares"
else bad "--moe-stats rows against rows every step"; show "$T/s1.csv"; fi
if grep -q "epoch 2/2: .*, dropped [0-9.]*%$" "$T/sa.out"; then
    ok "epoch lines give the dropped share"
else bad "epoch lines give the dropped share"; cat "$T/sa.out"; fi
printf 'hello\n' >"$T/junk1.csv"
printf 'step,epoch\n' >"$T/junk2.csv"
expect "resume: not a --moe-stats file" 0 \
    "warning: --moe-stats $T/junk2.csv: not a --moe-stats file of smlp-train" \
    "$TRAIN" $S --out "$T/sb.st" --resume "$T/sb.st" \
    --metrics "$T/junk1.csv" --moe-stats "$T/junk2.csv"
if grep -q "warning: --metrics $T/junk1.csv: not a metrics file" "$T/out"
then ok "resume: not a metrics file"
else bad "resume: not a metrics file"; cat "$T/out"; fi
# --routing-by-class: the test set's assignments per layer, class and
# expert.  Each class's images route items x k each (MoE_s: 64 channels,
# k 1; MoE_c: 49 tokens, k 2), whichever expert takes them.
expect "--routing-by-class" 0 "routing by class, blocks.5.moe_c.gate" \
    "$TRAIN" "$SPARSE" --data "$D" --limit-test 64 --threads 2 --eval-only \
    --weights "$T/sa.st" --routing-by-class "$T/rbc.csv"
# Test images are never augmented: the evaluation of sa's last epoch
# (trained with --augment shift) is --eval-only's of its checkpoint.
accloss() {
    grep "$1" "$2" | grep -o 'test acc [0-9.]*%\|test loss [0-9.]*' |
        tr '\n' ' '
}
e2=$(accloss "^epoch 2/2:" "$T/sa.out")
e1=$(accloss "^sparse_mlp_fmnist: test acc" "$T/out")
if [ -n "$e1" ] && [ "$e1" = "$e2" ]; then
    ok "--augment shift leaves the test images alone ($e1)"
else bad "--augment shift: the evaluation '$e2', --eval-only '$e1'"; fi
# --eval-only also gives each class's accuracy: the counts are the labels'
if "$PY" - "$T/out" "$D/t10k-labels-idx1-ubyte.gz" <<'PY'
import gzip, re, sys
text = open(sys.argv[1]).read()
labels = gzip.open(sys.argv[2]).read()[8:8 + 64]
rows = re.findall(r"(\d+) +([0-9.]+)% \((\d+)\)",
                  text.split("per class: accuracy (test images)")[1])
assert {int(c): int(n) for c, _, n in rows} == \
    {c: labels.count(c) for c in set(labels)}, rows
acc = float(re.search(r"test acc ([0-9.]+)%", text).group(1))
mean = sum(float(a) * int(n) for _, a, n in rows) / 64
assert abs(mean - acc) < 0.01, (mean, acc)
PY
then ok "--eval-only: accuracy per class"
else bad "--eval-only: accuracy per class"; cat "$T/out"; fi
if "$PY" - "$T/rbc.csv" "$D/t10k-labels-idx1-ubyte.gz" <<'PY'
import csv, gzip, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert list(rows[0]) == "layer,class,expert,assigned,dropped".split(",")
labels = gzip.open(sys.argv[2]).read()[8:8 + 64]
per = {}
for r in rows:
    key = (r["layer"], int(r["class"]))
    a, d = int(r["assigned"]), int(r["dropped"])
    assert 0 <= d <= a, r
    per.setdefault(key, []).append((int(r["expert"]), a))
assert len(per) == 4 * 10, sorted(per)
for (layer, c), cells in per.items():
    assert [e for e, _ in cells] == [0, 1, 2, 3], cells
    want = labels.count(c) * (64 if "moe_s" in layer else 49 * 2)
    assert sum(a for _, a in cells) == want, (layer, c, cells, want)
assert sum(int(r["dropped"]) for r in rows) > 0
PY
then ok "--routing-by-class: every test image's assignments, by class"
else bad "--routing-by-class rows"; cat "$T/rbc.csv"; fi
# Nine test images (a class has none) in batches of 6: the last batch has
# 3 rows of padding (label 0) that count nowhere.  The accuracy is the
# per-class rows' correct / 9; accuracy and loss are those of one batch
# of 9 (up to an image and the BLAS's last bits); the routing counts are
# the nine images'; the printed table has each class's shares of its CSV
# counts, and no row for a class without images.
for eb in 6 9; do
    expect "--eval-only, 9 test images in batches of $eb" 0 "(9 test images" \
        "$TRAIN" "$SPARSE" --data "$D" --limit-test 9 --eval-batch $eb \
        --threads 2 --eval-only --weights "$T/sa.st" \
        --routing-by-class "$T/rbc$eb.csv"
    cp "$T/out" "$T/eval$eb.out"
done
if "$PY" "$T/rbc.py" "$T/rbc6.csv" "$D/t10k-labels-idx1-ubyte.gz" 9 &&
    "$PY" - "$T/eval6.out" "$T/eval9.out" "$T/rbc6.csv" \
    "$D/t10k-labels-idx1-ubyte.gz" <<'PY'
import csv, gzip, re, sys
labels = gzip.open(sys.argv[4]).read()[8:8 + 9]
def result(path):
    text = open(path).read()
    m = re.search(r"test acc ([0-9.]+)%, test loss ([0-9.]+)", text)
    return text, float(m.group(1)), float(m.group(2))
text, acc, loss = result(sys.argv[1])
_, acc9, loss9 = result(sys.argv[2])
assert abs(acc - acc9) < 11.2 and abs(loss - loss9) <= 2e-4, \
    (acc, loss, acc9, loss9)
part = text.split("per class: accuracy (test images)")[1].split("routing")[0]
assert "nan" not in part, part
rows = re.findall(r"(\d+) +([0-9.]+)% \((\d+)\)", part)
assert {int(c): int(n) for c, _, n in rows} == \
    {c: labels.count(c) for c in set(labels)}, rows
right = sum(float(a) * int(n) / 100 for _, a, n in rows)
assert abs(100 * right / 9 - acc) < 0.01, (right, acc)
cells = {}
for r in csv.DictReader(open(sys.argv[3])):
    cells.setdefault((r["layer"], int(r["class"])), []).append(
        (int(r["assigned"]), int(r["dropped"])))
tables = re.findall(r"routing by class, (\S+): .*\n  class.*\n"
                    r"((?: +\d.*\n)*)", text)
assert len(tables) == 4, tables
for layer, body in tables:
    got = {int(l.split()[0]): [float(x) for x in l.split()[1:]]
           for l in body.splitlines()}
    assert sorted(got) == sorted(set(labels)), (layer, got)
    for c, shares in got.items():
        a = [x for x, _ in cells[(layer, c)]]
        d = sum(y for _, y in cells[(layer, c)])
        want = [100 * x / sum(a) for x in a] + [100 * d / sum(a)]
        assert all(abs(g - w) <= 0.051 for g, w in zip(shares, want)), \
            (layer, c, shares, want)
PY
then ok "--eval-only: a partial last batch, a class without images"
else bad "--eval-only: a partial last batch, a class without images"
    show "$T/eval6.out"; fi
# With room for every item (eval_capacity_factor 4: capacity
# ceil(k G 4 / 4) = k G, and an expert gets at most G of a group's G
# items), nothing is dropped.
"$B/tools/smlp-graph" edit "$SPARSE" -o "$T/nodrop.fbs" \
    --set-attr '*.gate:eval_capacity_factor=4' >"$T/out" 2>&1 ||
    bad "smlp-graph edit eval_capacity_factor"
expect "--routing-by-class, room for every item" 0 "routing by class" \
    "$TRAIN" "$T/nodrop.fbs" --data "$D" --limit-test 9 --threads 2 \
    --eval-only --routing-by-class "$T/nodrop.csv"
if "$PY" "$T/rbc.py" "$T/nodrop.csv" "$D/t10k-labels-idx1-ubyte.gz" 9 nodrop
then ok "--routing-by-class: nothing dropped where every item fits"
else bad "--routing-by-class: nothing dropped where every item fits"
    show "$T/nodrop.csv"; fi
expect "--routing-by-class on a dense graph" 1 \
    "--routing-by-class: $MIXER has no MoE gate" \
    "$TRAIN" "$MIXER" --data "$D" --eval-only --routing-by-class "$T/x.csv"
expect "--moe-stats on a dense graph" 1 "--moe-stats: $MIXER has no MoE layer" \
    "$TRAIN" "$MIXER" $COMMON --limit-train 64 --out "$T/x.st" \
    --moe-stats "$T/x.csv"
# --recompute (no saved pre-activations in moe.expert_ffn): resumes bit
# for bit too, and is an option that changes the result.
"$TRAIN" $S --recompute --out "$T/ra.st" >"$T/out" 2>&1 ||
    bad "sparse --recompute 2 epochs"
"$TRAIN" $S --recompute --out "$T/rb.st" --stop-after 1 >"$T/out" 2>&1 ||
    bad "sparse --recompute 1 epoch"
expect "sparse --recompute resumed" 0 "done:" \
    "$TRAIN" $S --recompute --out "$T/rb.st" --resume "$T/rb.st"
if st same "$T/ra.st" "$T/rb.st"; then
    ok "resume is bit-identical (sparse, --recompute)"
else bad "resume is bit-identical (sparse, --recompute)"; fi
expect "resume without --recompute" 1 \
    "made with --recompute 1, this run has 0" \
    "$TRAIN" $S --out "$T/x.st" --resume "$T/ra.st"
if [ "$(st meta "$T/ra.st" train.device)" = cpu ]
then ok "the checkpoint records the device (cpu)"
else bad "train.device in the checkpoint"; fi

# Interrupted inside epoch 2 (SIGTERM), then resumed.
"$TRAIN" $M --out "$T/c.st" --log-every 1 --progress lines \
    >"$T/c.out" 2>&1 &
pid=$!
i=0
while ! grep -q "epoch 2/2 step 3/8" "$T/c.out" && [ $i -lt 600 ]; do
    sleep 0.1; i=$((i + 1))
done
kill -TERM $pid
wait $pid
rc=$?
if [ $rc -eq 130 ] &&
    grep -q "interrupted: checkpoint $T/c.st in epoch 2/2 at step [1-8]/8" \
        "$T/c.out"; then
    ok "SIGTERM: exit 130 after a checkpoint (epochs counted from 1)"
else bad "SIGTERM: exit $rc"; sed 's/^/  | /' "$T/c.out"; fi
step=$(st meta "$T/c.st" train.step_in_epoch)
if [ -n "$step" ] && [ "$step" -gt 0 ]; then ok "checkpoint inside an epoch"
else bad "checkpoint inside an epoch (step in epoch '$step')"; fi
expect "resume inside an epoch" 0 "done: 16 steps" \
    "$TRAIN" $M --out "$T/c.st" --resume "$T/c.st"
if st same "$T/a.st" "$T/c.st"; then ok "interrupted + resumed = whole run"
else bad "interrupted + resumed = whole run"; fi

# Interrupted inside a metrics row (rows every 3 steps; epoch 2 is steps
# 9-16) and resumed: the epoch's line, the metrics CSV and --moe-stats
# are the uninterrupted run's (the checkpoint keeps the running sums),
# but for the wall-clock columns (img/s, seconds).
I="$SPARSE $COMMON --limit-train 256 --epochs 2 --log-every 3 --progress lines"
"$TRAIN" $I --out "$T/ia.st" --metrics "$T/ia.csv" --moe-stats "$T/iam.csv" \
    >"$T/ia.out" 2>&1 || bad "sparse, rows every 3 steps"
"$TRAIN" $I --out "$T/ib.st" --metrics "$T/ib.csv" --moe-stats "$T/ibm.csv" \
    >"$T/ib.out" 2>&1 &
pid=$!
i=0
while ! grep -q "epoch 2/2 step 1/8" "$T/ib.out" && [ $i -lt 600 ]; do
    sleep 0.05; i=$((i + 1))
done
kill -INT $pid
wait $pid
rc=$?
"$TRAIN" $I --out "$T/ib.st" --metrics "$T/ib.csv" --moe-stats "$T/ibm.csv" \
    --resume "$T/ib.st" >>"$T/ib.out" 2>&1 || bad "resumed inside a row"
if [ $rc -eq 130 ] && "$PY" - "$T/ia" "$T/ib" <<'PY'
import re, sys
a, b = sys.argv[1], sys.argv[2]
def epoch2(p):
    line = [l for l in open(p + ".out") if l.startswith("epoch 2/2:")]
    assert len(line) == 1, line
    return re.sub(r" [0-9]+ img/s, [0-9.]+ s,", "", line[0])
assert epoch2(a) == epoch2(b), (epoch2(a), epoch2(b))
def rows(p):  # all but images_per_s
    return [l.split(",")[:5] + l.split(",")[6:] for l in open(p + ".csv")]
assert rows(a) == rows(b), (rows(a), rows(b))
assert open(a + "m.csv").read() == open(b + "m.csv").read()
PY
then ok "interrupted inside a row: epoch line, metrics and moe-stats as whole"
else bad "interrupted inside a row (exit $rc)"; show "$T/ib.out"; fi

# SIGINT as the last step of epoch 1 ends (step 8, raised there by the
# test hook): the epoch is evaluated all the same (its line, its row's
# test columns), then the checkpoint, exit 130; resumed, the epoch
# lines, metrics, --moe-stats and checkpoint are the whole run's.
SMLP_TRAIN_TEST_SIGINT_STEP=8 "$TRAIN" $I --out "$T/ic.st" \
    --metrics "$T/ic.csv" --moe-stats "$T/icm.csv" >"$T/ic.out" 2>&1
rc=$?
cat >"$T/same.py" <<'PY'
import re, sys
a, b = sys.argv[1], sys.argv[2]
epochs, nrows = int(sys.argv[3]), int(sys.argv[4])
def lines(p):  # the epoch lines, but for img/s and seconds
    return [re.sub(r" [0-9]+ img/s, [0-9.]+ s,", "", l)
            for l in open(p + ".out") if re.match(r"epoch [0-9]+/[0-9]+:", l)]
assert lines(a)[:epochs] == lines(b), (lines(a), lines(b))
def rows(p):  # all but images_per_s
    return [l.rstrip("\n").split(",")[:5] + l.rstrip("\n").split(",")[6:]
            for l in open(p + ".csv")]
assert len(rows(b)) == nrows and rows(a)[:nrows] == rows(b), (rows(a), rows(b))
assert rows(b)[-1][6] != "", rows(b)[-1]
PY
if [ $rc -eq 130 ] &&
    grep -q "interrupted: checkpoint $T/ic.st after epoch 1/2 (step 8)" \
        "$T/ic.out" && "$PY" "$T/same.py" "$T/ia" "$T/ic" 1 4; then
    ok "SIGINT as an epoch's last step ends: evaluated, then exit 130"
else bad "SIGINT as an epoch's last step ends (exit $rc)"; show "$T/ic.out"
    show "$T/ic.csv"; fi
"$TRAIN" $I --out "$T/ic.st" --metrics "$T/ic.csv" --moe-stats "$T/icm.csv" \
    --resume "$T/ic.st" >>"$T/ic.out" 2>&1 || bad "resumed after epoch 1"
if "$PY" "$T/same.py" "$T/ia" "$T/ic" 2 8 && cmp -s "$T/iam.csv" "$T/icm.csv" &&
    st same "$T/ia.st" "$T/ic.st"; then
    ok "SIGINT at an epoch's end + resume: lines, metrics, checkpoint as whole"
else bad "SIGINT at an epoch's end + resume"; show "$T/ic.out"
    show "$T/ic.csv"; fi
# The same as the run's last step ends: evaluated, done, exit 0.
SMLP_TRAIN_TEST_SIGINT_STEP=2 "$TRAIN" "$SPARSE" $COMMON --limit-train 64 \
    --epochs 1 --progress lines --out "$T/id.st" --metrics "$T/id.csv" \
    >"$T/id.out" 2>&1
rc=$?
if [ $rc -eq 0 ] && grep -q "^epoch 1/1: .*test acc" "$T/id.out" &&
    grep -q "^done: 2 steps" "$T/id.out" && ! grep -q interrupted "$T/id.out" &&
    [ "$(tail -n 1 "$T/id.csv" | cut -d, -f1)" = 2 ] &&
    [ "$(tail -n 1 "$T/id.csv" | cut -d, -f8)" != "" ]; then
    ok "SIGINT as the run's last step ends: evaluated, done, exit 0"
else bad "SIGINT as the run's last step ends (exit $rc)"; show "$T/id.out"; fi
# The same when the run ends inside an epoch (--max-steps): that last
# part is evaluated too (it used to be cut short, with exit 130, and
# --resume then had nothing to do: the evaluation was lost).
SMLP_TRAIN_TEST_SIGINT_STEP=3 "$TRAIN" "$SPARSE" $COMMON --limit-train 256 \
    --epochs 1 --max-steps 3 --progress lines --out "$T/ie.st" \
    --metrics "$T/ie.csv" >"$T/ie.out" 2>&1
rc=$?
if [ $rc -eq 0 ] && grep -q "^epoch 1/1 (part): .*test acc" "$T/ie.out" &&
    grep -q "^done: 3 steps" "$T/ie.out" && ! grep -q interrupted "$T/ie.out" &&
    [ "$(tail -n 1 "$T/ie.csv" | cut -d, -f1)" = 3 ] &&
    [ "$(tail -n 1 "$T/ie.csv" | cut -d, -f8)" != "" ]; then
    ok "SIGINT as a run's last step ends inside an epoch: evaluated, exit 0"
else bad "SIGINT at the last step inside an epoch (exit $rc)"
    show "$T/ie.out"; fi

# SIGINT after an --eval-every evaluation: its row keeps the test results.
"$TRAIN" "$MIXER" $COMMON --limit-train 256 --epochs 1 --eval-every 1 \
    --log-every 1 --progress lines --out "$T/e.st" --metrics "$T/e.csv" \
    >"$T/e.out" 2>&1 &
pid=$!
i=0
while ! grep -q "^step 2: test acc" "$T/e.out" && [ $i -lt 600 ]; do
    sleep 0.05; i=$((i + 1))
done
kill -INT $pid
wait $pid
rc=$?
if [ $rc -eq 130 ] && [ "$(tail -n 1 "$T/e.csv" | cut -d, -f8)" != "" ]; then
    ok "SIGINT after an evaluation: the row keeps it"
else bad "SIGINT after an evaluation (exit $rc)"; show "$T/e.csv"; fi

# SIGINT during the last evaluation, after the last step: the run is done.
mkdir -p "$T/bigtest"
cp "$D"/train-* "$T/bigtest/"
"$PY" -c "
import gzip, struct, sys
d = sys.argv[1]
im = gzip.open(d + '/data/t10k-images-idx3-ubyte.gz').read()[16:]
lb = gzip.open(d + '/data/t10k-labels-idx1-ubyte.gz').read()[8:]
with gzip.open(d + '/bigtest/t10k-images-idx3-ubyte.gz', 'wb', 1) as f:
    f.write(struct.pack('>IIII', 0x803, 64 * 40, 28, 28) + im * 40)
with gzip.open(d + '/bigtest/t10k-labels-idx1-ubyte.gz', 'wb', 1) as f:
    f.write(struct.pack('>II', 0x801, 64 * 40) + lb * 40)
" "$T"
"$TRAIN" "$MIXER" --data "$T/bigtest" --batch 32 --threads 2 --max-steps 1 \
    --log-every 1 --progress lines --out "$T/f.st" >"$T/f.out" 2>&1 &
pid=$!
i=0
while ! grep -q "step 1/8" "$T/f.out" && [ $i -lt 600 ]; do
    sleep 0.05; i=$((i + 1))
done
kill -INT $pid
wait $pid
rc=$?
if [ $rc -eq 0 ] && grep -q "^done: 1 steps" "$T/f.out" &&
    ! grep -q interrupted "$T/f.out"; then
    ok "SIGINT during the last evaluation: done, exit 0"
else bad "SIGINT during the last evaluation (exit $rc)"; show "$T/f.out"; fi

# Refusals.
expect "resume other lr" 1 "made with --lr 0.001, this run has 0.002" \
    "$TRAIN" $M --lr 0.002 --out "$T/x.st" --resume "$T/b.st"
# The same tensors in another graph file (an edit of a layer norm's eps).
"$B/tools/smlp-graph" edit "$MIXER" -o "$T/mixer2.fbs" \
    --set-attr 'norm:eps=1e-5' >/dev/null 2>&1 || bad "smlp-graph edit"
expect "resume other graph" 1 "made from another graph than $T/mixer2.fbs" \
    "$TRAIN" "$T/mixer2.fbs" $COMMON --limit-train 256 --epochs 2 \
    --augment moco --out "$T/x.st" --resume "$T/a.st"
# The digest alone decides: without the file's hash in the checkpoint
# the edited graph is still refused.
st delmeta "$T/b1.st" "$T/nohash.st" train.graph_hash
expect "resume other graph, by its digest" 1 \
    "made from another graph than $T/mixer2.fbs" \
    "$TRAIN" "$T/mixer2.fbs" $COMMON --limit-train 256 --epochs 2 \
    --augment moco --out "$T/x.st" --resume "$T/nohash.st"
# The graph's name and metadata are not what the run computes: the
# graph renamed (in the file's bytes, in place) or annotated with
# smlp-graph edit --set-meta resumes, and ends with the bits of the
# whole run.
"$PY" -c "
import sys
b = open(sys.argv[1], 'rb').read()
assert b.count(b'mixer_fmnist') == 1
open(sys.argv[2], 'wb').write(b.replace(b'mixer_fmnist', b'mixer_fmnisx'))
" "$MIXER" "$T/mixer3.fbs"
"$B/tools/smlp-graph" edit "$MIXER" -o "$T/mixer4.fbs" \
    --set-meta 'note=annotated' >/dev/null 2>&1 || bad "smlp-graph edit"
for g in mixer3 mixer4; do
    cp "$T/b1.st" "$T/r_$g.st"
    if "$TRAIN" "$T/$g.fbs" $COMMON --limit-train 256 --epochs 2 \
           --augment moco --out "$T/r_$g.st" --resume "$T/r_$g.st" \
           >"$T/out" 2>&1 && st same "$T/a.st" "$T/r_$g.st"
    then ok "resume $g (renamed / metadata): the whole run's bits"
    else bad "resume $g"; show "$T/out"; fi
done
# A checkpoint from before 0.4.1 (no digest): the file's hash decides,
# as it did then: the renamed graph is refused, the graph itself resumes.
st delmeta "$T/b1.st" "$T/old.st" train.graph_digest
expect "resume a renamed graph, an old checkpoint" 1 \
    "made from another graph than $T/mixer3.fbs" \
    "$TRAIN" "$T/mixer3.fbs" $COMMON --limit-train 256 --epochs 2 \
    --augment moco --out "$T/x.st" --resume "$T/old.st"
expect "resume an old checkpoint" 0 "resuming at epoch 2, step 8 of 16" \
    "$TRAIN" $M --out "$T/x.st" --resume "$T/old.st"
expect "resume other model" 1 "(a checkpoint of another graph?)" \
    "$TRAIN" $S --out "$T/x.st" --resume "$T/a.st"
# Metadata that contradicts itself: the session's run counter (which
# seeds the gate noise) against the step; running sums cut short.
st setmeta "$T/b.st" "$T/m1.st" smlp.step 3
expect "resume: run counter off the step" 1 "inconsistent position" \
    "$TRAIN" $M --out "$T/x.st" --resume "$T/m1.st"
st setmeta "$T/b.st" "$T/m2.st" train.epoch_sums "1 2"
expect "resume: epoch sums of two fields" 1 \
    "metadata 'train.epoch_sums' is not 'loss acc steps'" \
    "$TRAIN" $M --out "$T/x.st" --resume "$T/m2.st"
expect "resume other data" 1 "made with --data (the training images)" \
    "$TRAIN" $M --data "$T/other" --out "$T/x.st" --resume "$T/b.st"
expect "resume missing" 1 "$T/none.st" \
    "$TRAIN" $M --out "$T/x.st" --resume "$T/none.st"
expect "resume other epochs" 0 "--epochs was 2, now 3" \
    "$TRAIN" $M --epochs 3 --stop-after 2 --out "$T/x.st" --resume "$T/b.st"
# Another test set changes no step, but the accuracies (the best kept in
# the checkpoint among them) are of other images: a warning says so.
expect "resume other test set" 0 \
    "--limit-test was 64 test images, now 32: the accuracies before" \
    "$TRAIN" $M --limit-test 32 --epochs 3 --stop-after 2 --out "$T/x.st" \
    --resume "$T/b.st"

# Every option that changes the result is compared on resume, its value
# as the checkpoint writes it (%.17g: 0.0010001 is not 0.001, which
# three digits would make it); $T/b.st is step 16 of --epochs 2.
while read -r opt val was; do
    expect "resume other $opt" 1 \
        "made with $opt $was, this run has " \
        "$TRAIN" $M "$opt" "$val" --out "$T/x.st" --resume "$T/b.st"
done <<'EOF'
--batch 16 32
--seed 1 0
--seed 18446744073709551615 0
--lr 0.0010001 0.001
--min-lr 1e-5 0
--weight-decay 0.01 0.050000000000000003
--clip-norm 1 0
--label-smoothing 0.1 0
--augment shift moco
--limit-train 128 256
--accum 2 1
EOF
# The defaults given explicitly are the same run (adamw: weight decay
# 0.05, momentum 0.9 recorded though unused).
expect "resume with the defaults given explicitly" 0 \
    "nothing to do: $T/b.st is at step 16" \
    "$TRAIN" $M --weight-decay 0.05 --clip-norm 0 --seed 0 --min-lr 0 \
    --out "$T/x.st" --resume "$T/b.st"
# The training set is hashed whole: a label, or the last pixel of the
# last image, changed.
mkdir -p "$T/olab" "$T/olast"
cp "$D"/*.gz "$T/olab/"
cp "$D"/*.gz "$T/olast/"
"$PY" -c "
import gzip, sys
d = sys.argv[1]
raw = bytearray(gzip.open(d + '/olab/train-labels-idx1-ubyte.gz').read())
raw[-1] = (raw[-1] + 1) % 10
open(d + '/olab/train-labels-idx1-ubyte.gz', 'wb').write(
    gzip.compress(bytes(raw)))
raw = bytearray(gzip.open(d + '/olast/train-images-idx3-ubyte.gz').read())
raw[-1] ^= 1
open(d + '/olast/train-images-idx3-ubyte.gz', 'wb').write(
    gzip.compress(bytes(raw)))
" "$T"
expect "resume with another label" 1 "made with --data (the training images)" \
    "$TRAIN" $M --data "$T/olab" --out "$T/x.st" --resume "$T/b.st"
expect "resume with another last pixel" 1 \
    "made with --data (the training images)" \
    "$TRAIN" $M --data "$T/olast" --out "$T/x.st" --resume "$T/b.st"
# Another --warmup recomputes the schedule, with a warning; the default
# is 1 epoch (8 steps) or a tenth of the 16, whichever is shorter: 1.
expect "resume other warmup" 0 "--warmup was 1, now 3: the schedule" \
    "$TRAIN" $M --warmup 3 --out "$T/x.st" --resume "$T/b.st"
# A resume with the same options is silent.
expect "resume with the same options" 0 "nothing to do" \
    "$TRAIN" $M --out "$T/x.st" --resume "$T/b.st"
if grep -q warning "$T/out"; then bad "resume with the same options warns"
    show "$T/out"
else ok "resume with the same options: no warning"; fi
# Positions that contradict themselves (spe 8, step 16): in_epoch 8 of
# epoch 1; epoch 1 at step 16; 15 optimizer steps; a step with a letter;
# running sums of -1 steps or of more steps than the epoch has made.
st setmeta "$T/b.st" "$T/p1.st" train.epoch 1
st setmeta "$T/p1.st" "$T/p2.st" train.step_in_epoch 8
st setmeta "$T/b.st" "$T/p3.st" smlp.optim.steps 15
st setmeta "$T/b.st" "$T/p4.st" train.step 16x
st setmeta "$T/b.st" "$T/p5.st" train.epoch_sums "0 0 -1"
st setmeta "$T/b.st" "$T/p6.st" train.epoch_sums "1 1 1"
st setmeta "$T/b.st" "$T/p9.st" train.row_sums "0 0 17"
while IFS='|' read -r f what needle; do
    expect "resume refuses $what" 1 "$needle" \
        "$TRAIN" $M --out "$T/x.st" --resume "$T/$f.st"
done <<'EOF'
p1|epoch 1 at step 16|inconsistent position
p2|step 8 of an 8-step epoch|inconsistent position
p3|15 optimizer steps at step 16|inconsistent position
p4|a step with a letter|'train.step' is missing or not a number
p5|sums of -1 steps|'train.epoch_sums' is not 'loss acc steps'
p6|sums of more steps than made|'train.epoch_sums' or 'train.row_sums' counts
p9|row sums of 17 steps at step 16|counts more steps (0, 17) than the run made
EOF
# A checkpoint without train.* metadata (smlp_checkpoint_save's own) is
# named as such; one from before train.mode, train.recompute,
# train.device and train.n_test resumes, without a warning.
st delmeta "$T/b.st" "$T/p7.st" "train.*"
expect "resume: not a checkpoint of smlp-train" 1 \
    "not a checkpoint of smlp-train (no train.* metadata)" \
    "$TRAIN" $M --out "$T/x.st" --resume "$T/p7.st"
st delmeta "$T/b.st" "$T/p8.st" train.mode train.recompute train.device \
    train.n_test
expect "resume an older checkpoint" 0 "nothing to do: $T/p8.st is at step 16" \
    "$TRAIN" $M --out "$T/x.st" --resume "$T/p8.st"
if grep -q warning "$T/out"; then bad "resume an older checkpoint warns"
    show "$T/out"
else ok "resume an older checkpoint: no warning"; fi
# The best and last test accuracy are carried by the checkpoint: set to
# 1.5 and 0.125 (no run can reach them), they survive a resume stopped
# inside epoch 3 (no evaluation); at its end the best is still 1.5 and
# the last is the new evaluation's (the metrics' last row).
st setmeta "$T/b.st" "$T/acc0.st" train.best_acc 1.5
st setmeta "$T/acc0.st" "$T/acc0.st" train.test_acc 0.125
SMLP_TRAIN_TEST_SIGINT_STEP=17 "$TRAIN" $M --epochs 3 --out "$T/acc.st" \
    --metrics "$T/acc.csv" --resume "$T/acc0.st" >"$T/out" 2>&1
rc=$?
if [ $rc -eq 130 ] && [ "$(st meta "$T/acc.st" train.best_acc)" = 1.5 ] &&
    [ "$(st meta "$T/acc.st" train.test_acc)" = 0.125 ]; then
    ok "resume keeps the best and last test accuracy"
else bad "resume keeps the best and last test accuracy (exit $rc)"
    show "$T/out"; fi
expect "resume to the end of epoch 3" 0 "(best 150.00%)" \
    "$TRAIN" $M --epochs 3 --out "$T/acc.st" --metrics "$T/acc.csv" \
    --resume "$T/acc.st"
if [ "$(st meta "$T/acc.st" train.best_acc)" = 1.5 ] && "$PY" -c "
import csv, sys
last = list(csv.DictReader(open(sys.argv[1])))[-1]
assert last['step'] == '24', last
assert abs(float(last['test_acc']) - float(sys.argv[2])) < 1e-6, last
" "$T/acc.csv" "$(st meta "$T/acc.st" train.test_acc)"; then
    ok "an evaluation keeps the better best, replaces the last"
else bad "an evaluation keeps the better best, replaces the last"
    show "$T/acc.csv"; fi

# The metrics rows and epoch lines of the run "ia" (sparse, 8 steps an
# epoch, rows every 3 steps and at each epoch's end): each row's epoch
# is step / 8, its lr the schedule's at its last step (adamw's 1e-3,
# warm-up 1 step, cosine to 0 at step 16: docs/training.md), and each
# epoch line's loss and train accuracy are the means of its steps, so of
# its rows weighted by their steps.
if "$PY" - "$T/ia.csv" "$T/ia.out" <<'PY'
import csv, math, re, sys
rows = list(csv.DictReader(open(sys.argv[1])))
steps = [int(r["step"]) for r in rows]
assert steps == [3, 6, 8, 9, 12, 15, 16], steps
def lr(s):
    if s < 1:
        return 1e-3 * s
    return 0.5 * 1e-3 * (1 + math.cos(math.pi * (s - 1) / 15))
prev, sums = 0, {}
for r, s in zip(rows, steps):
    assert r["epoch"] == "%.4f" % (s / 8), r
    assert abs(float(r["lr"]) - lr(s - 1)) <= 1e-6 * lr(s - 1) + 1e-12, r
    e = sums.setdefault((s - 1) // 8 + 1, [0.0, 0.0, 0])
    e[0] += float(r["loss"]) * (s - prev)
    e[1] += float(r["train_acc"]) * (s - prev)
    e[2] += s - prev
    prev = s
for e, (loss, acc, n) in sums.items():
    line = [l for l in open(sys.argv[2]) if l.startswith("epoch %d/2:" % e)]
    m = re.search(r"loss ([0-9.]+), train acc ([0-9.]+)%", line[0])
    assert n == 8 and abs(float(m.group(1)) - loss / n) < 1e-4, (line, loss)
    assert abs(float(m.group(2)) - 100 * acc / n) < 0.006, (line, acc)
PY
then ok "metrics rows: epoch, lr, and the epoch lines' means"
else bad "metrics rows: epoch, lr, and the epoch lines' means"
    show "$T/ia.csv"; fi
# --eval-every 3 evaluates after steps 3 and 6 (not at the epoch's end,
# which evaluates anyway); a SIGINT at step 4 keeps the evaluation of
# step 3 as the checkpoint's last and best test accuracy.
SMLP_TRAIN_TEST_SIGINT_STEP=4 "$TRAIN" "$MIXER" $COMMON --limit-train 256 \
    --epochs 1 --eval-every 3 --progress lines --out "$T/ev.st" \
    --metrics "$T/ev.csv" >"$T/ev.out" 2>&1
rc=$?
evals=$(grep -c "^step [0-9]*: test acc" "$T/ev.out")
if [ $rc -eq 130 ] && [ "$evals" = 1 ] &&
    "$PY" - "$T/ev.csv" "$T/ev.out" \
    "$(st meta "$T/ev.st" train.test_acc)" \
    "$(st meta "$T/ev.st" train.best_acc)" <<'PY'
import csv, re, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert [r["step"] for r in rows] == ["3", "4"], rows
acc = float(rows[0]["test_acc"])
m = re.search(r"^step 3: test acc ([0-9.]+)%", open(sys.argv[2]).read(), re.M)
assert abs(float(m.group(1)) - 100 * acc) < 0.006, (m.group(0), acc)
assert abs(float(sys.argv[3]) - acc) < 1e-6, sys.argv[3]
assert abs(float(sys.argv[4]) - acc) < 1e-6, sys.argv[4]
PY
then ok "--eval-every 3: step 3's evaluation is the checkpoint's last and best"
else bad "--eval-every 3 (exit $rc)"; show "$T/ev.out"; fi
# The schedule: --warmup 0.45ep of 8 steps is 3.6, rounded to 4; a
# warm-up longer than the run (--max-steps) ends with it; 100 images in
# steps of 32 are 3 whole steps an epoch (the last 4 images left out).
SMLP_TRAIN_TEST_SIGINT_STEP=1 "$TRAIN" "$MIXER" $COMMON --limit-train 256 \
    --epochs 2 --warmup 0.45ep --out "$T/x.st" >"$T/out" 2>&1
if grep -qF "warm-up 4 steps, 16 steps in all" "$T/out"; then
    ok "--warmup 0.45ep of 8 steps: 4 steps"
else bad "--warmup 0.45ep of 8 steps"; show "$T/out"; fi
expect "--warmup past --max-steps" 0 "warm-up 2 steps, 2 steps in all" \
    "$TRAIN" "$MIXER" $COMMON --limit-train 100 --max-steps 2 --warmup 100 \
    --out "$T/x.st"
if grep -qF "100 training images (3 steps of 32 per epoch)" "$T/out"; then
    ok "a last partial batch is left out"
else bad "a last partial batch is left out"; show "$T/out"; fi
# SGD: weight decay 0 and momentum 0.9 by default, both recorded and
# compared; after one step with --clip-norm 0.001 the momentum buffers
# hold the clipped gradient (buf = d at the first update, d = g with no
# weight decay): their norm is at most 0.001.
S1="$MIXER $COMMON --limit-train 64 --max-steps 1 --optimizer sgd"
"$TRAIN" $S1 --clip-norm 0.001 --out "$T/sgd.st" >"$T/out" 2>&1 ||
    bad "one SGD step"
if [ "$(st meta "$T/sgd.st" train.weight_decay)" = 0 ] &&
    [ "$(st meta "$T/sgd.st" train.momentum)" = 0.90000000000000002 ] &&
    stpy - "$T/sgd.st" <<'PY'
import math, sys
import st
f = st.read(sys.argv[1])
bufs = [k for k in f.names if k.startswith("optim.momentum_buffer.")]
assert len(bufs) > 10, f.names
sq = 0.0
for k in bufs:
    sq += sum(x * x for x in f.values(k))
assert 0 < math.sqrt(sq) <= 0.001 * (1 + 1e-5), math.sqrt(sq)
PY
then ok "SGD: defaults recorded, --clip-norm clips"
else bad "SGD: defaults recorded, --clip-norm clips"; fi
expect "resume SGD other momentum" 1 \
    "made with --momentum 0.90000000000000002, this run has 0.5" \
    "$TRAIN" $S1 --clip-norm 0.001 --momentum 0.5 --out "$T/x.st" \
    --resume "$T/sgd.st"
expect "resume SGD without --clip-norm" 1 \
    "made with --clip-norm 0.001, this run has 0" \
    "$TRAIN" $S1 --out "$T/x.st" --resume "$T/sgd.st"
# --seed shuffles: one step from the same weights on another batch.
for s in 0 1; do
    "$TRAIN" "$MIXER" $COMMON --limit-train 64 --max-steps 1 --seed $s \
        --weights "$T/run.st" --out "$T/seed$s.st" >"$T/out" 2>&1 ||
        bad "one step with --seed $s"
done
if st same "$T/seed0.st" "$T/seed1.st" 2>/dev/null; then
    bad "--seed 0 and 1 train on the same batch"
else ok "--seed 0 and 1 train on other batches"; fi
# --seed also seeds the session (the gate noise): on a training set of
# 64 copies of one image, where every order gives the same batches, the
# Mixer's step is the same bytes for --seed 0 and 1 (the shuffle is the
# only thing the seed moves there), while the sparse model's noisy gates
# route otherwise and its step differs.
mkdir -p "$T/same" && cp "$D"/t10k-* "$T/same/" &&
"$PY" - "$D" "$T/same" <<'PY' || bad "making the one-image data set"
import gzip, sys
src, dst = sys.argv[1], sys.argv[2]
img = gzip.open(src + "/train-images-idx3-ubyte.gz").read()
lab = gzip.open(src + "/train-labels-idx1-ubyte.gz").read()
n = 64
with gzip.open(dst + "/train-images-idx3-ubyte.gz", "wb") as f:
    f.write(img[:4] + n.to_bytes(4, "big") + img[8:16] + img[16:800] * n)
with gzip.open(dst + "/train-labels-idx1-ubyte.gz", "wb") as f:
    f.write(lab[:4] + n.to_bytes(4, "big") + lab[8:9] * n)
PY
for g in mixer sparse; do
    [ $g = mixer ] && G=$MIXER || G=$SPARSE
    for s in 0 1; do
        "$TRAIN" "$G" --data "$T/same" --batch 32 --limit-test 32 \
            --threads 2 --max-steps 1 --seed $s --out "$T/one$g$s.st" \
            >"$T/out" 2>&1 || { bad "$g: one step with --seed $s"
                                show "$T/out"; }
    done
done
if st same "$T/onemixer0.st" "$T/onemixer1.st"
then ok "one image: the Mixer's step is the same for --seed 0 and 1"
else bad "one image: the Mixer's step depends on --seed"; fi
if st same "$T/onesparse0.st" "$T/onesparse1.st" 2>/dev/null
then bad "one image: the sparse model's gate noise ignores --seed"
else ok "one image: --seed 0 and 1 give the sparse gates other noise"; fi

# Every run above has ended: none left a lock file behind.
if [ -z "$(find "$T" -name '*.lock' 2>/dev/null)" ]; then
    ok "no lock file left by the runs"
else bad "lock files left"; find "$T" -name '*.lock' | head; fi

# ---- a reader never sees a half-written checkpoint ----
"$TRAIN" "$MIXER" $COMMON --limit-train 64 --limit-test 32 --epochs 100000 \
    --out "$T/z.st" >/dev/null 2>&1 &
pid=$!
i=0
while [ ! -f "$T/z.st" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
good=0
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
    st check "$T/z.st" $CKPT 2>/dev/null && good=$((good + 1))
    sleep 0.1
done
first=$(st meta "$T/z.st" train.step)
kill -KILL $pid
wait $pid 2>/dev/null
if [ $good -eq 20 ] && st check "$T/z.st" $CKPT; then
    ok "checkpoint always whole while rewritten (step $first read)"
else bad "checkpoint read half-written ($good of 20 whole)"; fi
# The killed run left its lock file, but its lock died with it: the next
# run with that --out goes ahead, and removes the file when it ends.
# A run killed while writing leaves its temporary file (planted here,
# 4096 bytes, beside one of another name): the next run, holding the
# lock, removes it and says so, and leaves the other.
head -c 4096 /dev/zero >"$T/z.st.tmp.Kill3d"
echo keep >"$T/z.st.tmp.Kill3"
rm -f "$T/out"
if [ -f "$T/z.st.lock" ] &&
   "$TRAIN" "$MIXER" $COMMON --limit-train 64 --limit-test 32 --epochs 1 \
       --out "$T/z.st" >"$T/out" 2>&1 && [ ! -e "$T/z.st.lock" ]
then ok "a killed run's lock file does not block the next run"
else bad "after a killed run"; ls -l "$T"/z.st*; show "$T/out"; fi
if grep -q "^smlp-train: removed [1-9][0-9]* temporary files\{0,1\} ([0-9.]* MB) that a killed run left beside $T/z.st\$" "$T/out" &&
   [ -z "$(find "$T" -name 'z.st.tmp.??????' 2>/dev/null)" ] &&
   [ "$(cat "$T/z.st.tmp.Kill3")" = keep ]
then ok "a killed run's temporary files are removed by the next run"
else bad "temporary files after a killed run"; ls -l "$T"/z.st*
     show "$T/out"; fi


rm -rf "$T"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
