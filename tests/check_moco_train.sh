#!/bin/sh
# End-to-end checks of MoCo v3 pre-training, linear probes and fine-tuning
# with tools/smlp-train (graphs/moco_sparse_mlp_fmnist, then the
# classifier graphs/sparse_mlp_fmnist), on a tiny gzip'd IDX data set made
# here as in check_smlp_train.sh:
#   - the MoCo graph runs a training forward in smlp-run and builds a
#     backward (moco.momentum_update is a no-gradient wall: SMLP_OP_NO_GRAD);
#   - refusals: --probe or --augment none|shift on a MoCo graph,
#     --init-from with --weights, a bad --moco-m0, --init-from files of
#     another graph;
#   - a short pre-training: finite loss that falls, checkpoint, metrics CSV
#     (no accuracy columns) and SVG;
#   - the momentum encoder: after one more step each `momentum.X` equals
#     f32(m·momentum.X + (1 − m)·X) bit for bit, with X and momentum.X of
#     the checkpoint before and m = 1 − (1 − m0)(1 + cos(π step/total))/2
#     rounded to f32 (what the trainer feeds to the input m), and the key
#     parameters differ from the query ones;
#   - resume: 2 epochs = 1 epoch + --resume, bit for bit;
#   - --probe from the pre-trained checkpoint (--init-from): the backbone
#     loads, only head.* trains (backbone bytes unchanged, optimizer state
#     for the head only), and from a random init;
#   - the probe's feature cache: the same bytes as --no-probe-cache, also
#     across a stop and --resume in the other mode and for a head that
#     starts at the final layer norm, and in cache batches that do not
#     divide the sets; a note where it cannot be used (--moe-stats and
#     --routing-by-class then count the backbone's routing); --probe
#     --eval-only evaluates as without --probe (no cache to fill);
#   - fine-tuning with --init-from: every backbone tensor is the
#     pre-trained one after a step at a negligible learning rate, the head
#     keeps its zero initialisation until trained;
#   - --init-from files that do not fit (a tensor of another shape, of
#     the same rank too), an old MoCo file (no train.backbone) of another
#     graph warns, and a MoCo run from a classifier's checkpoint (each
#     momentum twin starts as its parameter) or from a MoCo one (the
#     twins load).
# Prints "N passed, M failed".  Needs python3 (makes the data, reads
# safetensors); exit 77 (skip) without it.
B=${SMLP_TEST_BUILDDIR:-.}
TRAIN="$B/tools/smlp-train"
MOCO="$B/graphs/moco_sparse_mlp_fmnist.fbs"
SPARSE="$B/graphs/sparse_mlp_fmnist.fbs"
PY=${PYTHON3:-python3}
[ "$PY" = no ] && PY=python3
if ! command -v "$PY" >/dev/null 2>&1; then
    echo "skip - no python3"; exit 77
fi
T=$(mktemp -d /tmp/smlp-moco-test.XXXXXX)
D="$T/data"
. "${SMLP_TEST_SRCDIR:-.}/tests/shlib.sh"

# The data: 10 easy classes (shlib.sh).
make_idx_data "$D" 128 64 || exit 99

# Checkpoints are read by st (shlib.sh, tests/st.py); mst CMD ARGS...
# runs MoCo's own checks (moco.py, on top of tests/st.py).
cat >"$T/moco.py" <<'PY'
import math, struct, sys
import st

def backbone(names):
    return sorted(k for k in names
                  if k.split(".")[0] in ("stem", "blocks", "norm"))

cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "close":                      # A B: frozen bytes equal, head close
    # The head trains on the backbone's features, which the cache computes
    # in batches of other rows than the training steps. Where the BLAS's
    # result for a row depends on the rows beside it (OpenBLAS on Zen), the
    # features differ in the last bit, and so does the head, slightly.
    fa, fb = st.read(args[0]), st.read(args[1])
    st.same_names(fa, fb)
    worst = 0.0
    for k in fa.names:
        st.same_kind(fa, fb, k)
        if not k.startswith(("head.", "optim.")):
            assert fa.raw(k) == fb.raw(k), "tensor %s differs" % k
            continue
        a, b = fa.values(k), fb.values(k)
        scale = max(abs(x) for x in a)
        assert scale > 0, "%s is all zero" % k
        for i, (x, y) in enumerate(zip(a, b)):
            d = abs(x - y) / scale
            assert d <= 1e-4, "%s[%d]: %r vs %r (of %r)" % (k, i, x, y, scale)
            worst = max(worst, d)
    print("head and optimizer state within %.3g of their scale" % worst)
elif cmd == "momentum":                 # A B: B is one step after A
    fa, fb = st.read(args[0]), st.read(args[1])
    (a, ma), (b, mb) = (fa.tensors(), fa.meta), (fb.tensors(), fb.meta)
    step, total = int(ma["train.step"]), int(ma["train.total_steps"])
    assert int(mb["train.step"]) == step + 1, (ma, mb)
    m0 = float(ma["train.moco_m0"])
    # smlp_lr_cosine(1 - m0, 0, step, 0, total), as runtime/optim.c
    # computes it, then rounded to f32 by the trainer.
    t = step / total
    m = st.f32(1.0 - (0.0 + 0.5 * ((1.0 - m0) - 0.0) *
                      (1.0 + math.cos(math.pi * t))))
    twins = [k for k in a if k.startswith("momentum.")]
    assert len(twins) > 50, len(twins)
    n = 0
    for k in twins:
        q, ka, kb = a[k[len("momentum."):]], a[k], b[k]
        for i in range(len(ka)):
            want = st.f32(m * ka[i] + (1.0 - m) * q[i])
            assert struct.pack("<f", want) == struct.pack("<f", kb[i]), \
                "%s[%d]: %r, want %r (m %r)" % (k, i, kb[i], want, m)
            n += 1
        assert fb.raw(k) != fb.raw(k[len("momentum."):]), \
            "%s equals its query twin" % k
    print("%d values of %d tensors, m = %.9g" % (n, len(twins), m))
elif cmd == "probe":                    # PRE PROBE: backbone unchanged
    p, q = st.read(args[0]), st.read(args[1])
    names = backbone(q.names)
    assert len(names) > 50, names
    for k in names:
        assert p.raw(k) == q.raw(k), "%s changed" % k
    assert any(x != 0 for x in q.values("head.weight")), "head not trained"
    slots = sorted(k for k in q.names if k.startswith("optim."))
    assert slots == ["optim.exp_avg.head.bias", "optim.exp_avg.head.weight",
                     "optim.exp_avg_sq.head.bias",
                     "optim.exp_avg_sq.head.weight"], slots
elif cmd == "finetune":                 # PRE FT: backbone loaded
    p, q = st.read(args[0]).tensors(), st.read(args[1]).tensors()
    names = backbone(q)
    assert len(names) > 50, names
    for k in names:
        for x, y in zip(p[k], q[k]):
            assert abs(x - y) <= 1e-6 * max(1.0, abs(x)), (k, x, y)
    assert "optim.exp_avg.stem.proj.weight" in q, "backbone not trained"
elif cmd == "write":                    # FILE NAME [D,...]: one F32
    shape = [int(d) for d in args[2].split(",")] if len(args) > 2 else [2]
    st.write(args[0], {args[1]: ("F32", shape,
                                 range(1, math.prod(shape) + 1))})
elif cmd == "twins":                    # FROM AFTER: one MoCo step later
    # each momentum.X is m0 K + (1 - m0) X of FROM (m is m0 at step 0),
    # K FROM's momentum.X, or X where FROM has none
    fq = st.read(args[1])
    p, q, mq = st.read(args[0]).tensors(), fq.tensors(), fq.meta
    m0 = float(mq["train.moco_m0"])
    twins = [k for k in q if k.startswith("momentum.")]
    n = 0
    for k in twins:
        x = p.get(k[len("momentum."):])
        if x is None:
            continue
        kp = p.get(k, x)
        for i, (a, b, c) in enumerate(zip(kp, x, q[k])):
            want = m0 * a + (1 - m0) * b
            assert abs(c - want) <= 1e-6 * max(1.0, abs(want)), \
                "%s[%d]: %r, want %r" % (k, i, c, want)
        n += 1
    assert n > 50, n
    print("%d of %d twins" % (n, len(twins)))
elif cmd == "loss":                     # CSV: finite losses that fall
    import csv
    rows = list(csv.DictReader(open(args[0])))
    loss = [float(r["loss"]) for r in rows]
    assert len(rows) >= 3 and all(math.isfinite(x) for x in loss), loss
    assert loss[-1] < loss[0], loss
    assert all(r["train_acc"] == r["test_acc"] == r["test_loss"] == ""
               for r in rows), rows
else:
    sys.exit("moco.py: unknown command %s" % cmd)
PY
mst() { stpy "$T/moco.py" "$@"; }

# ---- the graph ----
expect "smlp-run: MoCo forward in training mode" 0 "moco.momentum_update" \
    "$B/tools/smlp-run" "$MOCO" --training --batch 4 --repeat 1 --threads 2

# ---- refusals ----
COMMON="--data $D --threads 2 --limit-test 64"
expect "probe a MoCo graph" 1 "is a MoCo pre-training graph" \
    "$TRAIN" "$MOCO" $COMMON --batch 16 --probe --out "$T/x.st"
# The refusal alone: no note on the feature cache (not for MoCo graphs).
if grep -qF "feature cache" "$T/out"; then
    bad "probe a MoCo graph: a feature cache note"; show "$T/out"
else ok "probe a MoCo graph: no feature cache note"; fi
expect "MoCo without augmentation" 1 "use --augment moco" \
    "$TRAIN" "$MOCO" $COMMON --batch 16 --augment none --out "$T/x.st"
expect "MoCo with the supervised shift" 1 "use --augment moco" \
    "$TRAIN" "$MOCO" $COMMON --batch 16 --augment shift --out "$T/x.st"
expect "MoCo --eval-only" 1 "is a MoCo pre-training graph, not a classifier" \
    "$TRAIN" "$MOCO" $COMMON --batch 16 --eval-only
expect "MoCo --routing-by-class" 1 \
    "--routing-by-class reports the test evaluation of a classifier, and $MOCO is a MoCo pre-training graph" \
    "$TRAIN" "$MOCO" $COMMON --batch 16 --out "$T/x.st" \
    --routing-by-class "$T/x.csv"
expect "init-from and weights" 2 "--init-from excludes --weights" \
    "$TRAIN" "$SPARSE" --out "$T/x.st" --init-from a --weights b
expect "moco-m0 out of range" 2 "--moco-m0: '1.5' is not a number" \
    "$TRAIN" "$MOCO" --out "$T/x.st" --moco-m0 1.5
expect "init-from a missing file" 1 "--init-from $T/none.st" \
    "$TRAIN" "$SPARSE" $COMMON --batch 16 --init-from "$T/none.st" \
    --out "$T/x.st"

# ---- pre-training: the loss falls, files are written ----
P="$MOCO $COMMON --batch 16 --limit-train 128 --epochs 3 --lr 2e-3"
expect "pre-training" 0 "done: 24 steps" \
    "$TRAIN" $P --out "$T/pre.st" --metrics "$T/pre.csv" --plot "$T/pre.svg"
for want in "MoCo v3 pre-training, 128 training images" \
    "momentum 0.99 -> 1 (cosine)" "epoch 3/3: loss" ", m 0.99"; do
    if grep -qF -- "$want" "$T/out"; then ok "pre-training prints '$want'"
    else bad "pre-training lacks '$want'"; sed 's/^/  | /' "$T/out"; fi
done
if mst loss "$T/pre.csv"; then ok "finite loss that falls, no accuracy"
else bad "pre-training loss (metrics CSV)"; cat "$T/pre.csv"; fi
if [ "$(st meta "$T/pre.st" train.mode)" = moco ] &&
    [ "$(st meta "$T/pre.st" smlp.optim.steps)" = 24 ] &&
    [ -s "$T/pre.svg" ]; then
    ok "checkpoint (mode moco, 24 steps) and plot written"
else bad "pre-training checkpoint"; fi

# ---- the momentum encoder follows m exactly ----
# One step per epoch (16 images, batch 16): step 1 -> step 2.
O="$MOCO $COMMON --batch 16 --limit-train 16 --epochs 4"
"$TRAIN" $O --out "$T/m1.st" --stop-after 2 >"$T/out" 2>&1 ||
    bad "2 steps"
expect "one more step" 0 "stopped after epoch 3" \
    "$TRAIN" $O --out "$T/m2.st" --resume "$T/m1.st" --stop-after 3
if mst momentum "$T/m1.st" "$T/m2.st" >"$T/out" 2>&1; then
    ok "momentum.X = m momentum.X + (1 - m) X, bit for bit ($(cat "$T/out"))"
else bad "momentum update"; sed 's/^/  | /' "$T/out"; fi

# ---- resume: 2 epochs = 1 epoch + --resume 1 epoch ----
R="$MOCO $COMMON --batch 16 --limit-train 32 --epochs 2 --seed 3"
"$TRAIN" $R --out "$T/ra.st" >"$T/out" 2>&1 || bad "MoCo 2 epochs"
"$TRAIN" $R --out "$T/rb.st" --stop-after 1 >"$T/out" 2>&1 ||
    bad "MoCo 1 epoch"
expect "MoCo resumed" 0 "resuming at epoch 2, step 2 of 4" \
    "$TRAIN" $R --out "$T/rb.st" --resume "$T/rb.st"
if st same "$T/ra.st" "$T/rb.st"; then ok "MoCo resume is bit-identical"
else bad "MoCo resume is bit-identical"; fi
expect "resume with another m0" 1 "made with --moco-m0 0.98999999999999999" \
    "$TRAIN" $R --moco-m0 0.9 --out "$T/x.st" --resume "$T/rb.st"

# ---- linear probe from the pre-trained backbone ----
L="$SPARSE $COMMON --batch 16 --limit-train 128 --epochs 2 --lr 0.01"
L="$L --weight-decay 0"
LOADED="96 of 98 parameters loaded; 2 keep the graph's initial values"
expect "probe: the backbone loads" 0 "$LOADED (head.weight, head.bias)" \
    "$TRAIN" $L --probe --init-from "$T/pre.st" --out "$T/probe.st"
SAYS="linear probe (head.* trained, the rest frozen; its gates route as in"
if grep -qF "$SAYS inference)" "$T/out"; then
    ok "probe says what it trains"
else bad "probe summary"; sed 's/^/  | /' "$T/out"; fi
CACHED="probe: the frozen backbone's 'features' (128 floats per image) of"
if grep -qF "$CACHED 128 + 64 images cached" "$T/out"; then
    ok "probe: features cached"
else bad "probe cache message"; sed 's/^/  | /' "$T/out"; fi
if mst probe "$T/pre.st" "$T/probe.st" >"$T/out" 2>&1; then
    ok "probe: backbone bytes unchanged, only the head trained"
else bad "probe froze the backbone"; sed 's/^/  | /' "$T/out"; fi
if [ "$(st meta "$T/probe.st" train.mode)" = probe ] &&
    [ "$(st meta "$T/probe.st" train.init_from)" = "$T/pre.st" ]; then
    ok "probe checkpoint metadata (mode, init_from)"
else bad "probe checkpoint metadata"; fi
expect "probe from random init" 0 "done: 16 steps" \
    "$TRAIN" $L --probe --out "$T/probe0.st"
expect "resume a probe as a fine-tune" 1 "--resume $T/probe0.st" \
    "$TRAIN" $L --epochs 3 --out "$T/x.st" --resume "$T/probe0.st"

# ---- the probe's feature cache ----
# The cached run trains the same head on the same features as the run that
# recomputes the backbone at every step: the frozen backbone keeps its
# bytes, and the head and its optimizer state agree to 1e-4 of their scale
# (bit for bit where the BLAS computes a row alike in any batch; OpenBLAS's
# Zen kernels do not). A run stopped in either mode resumes in the other.
expect "probe without the cache" 0 "done: 16 steps" \
    "$TRAIN" $L --probe --no-probe-cache --init-from "$T/pre.st" \
    --out "$T/probe_nc.st"
if grep -qF "$CACHED" "$T/out"; then bad "--no-probe-cache cached"
elif mst close "$T/probe.st" "$T/probe_nc.st" >"$T/out" 2>&1; then
    ok "probe: cached = recomputed: $(cat "$T/out")"
else bad "probe: cached != recomputed"; sed 's/^/  | /' "$T/out"; fi
# --eval-only uses no cache (its rows are filled only before training):
# with --probe, the test accuracy and loss of the same weights evaluated
# without --probe, and no cache message.
EV="$SPARSE $COMMON --eval-only --weights $T/probe.st"
ACC="test acc [0-9.]*%, test loss [0-9.]*"
"$TRAIN" $EV >"$T/ev.out" 2>&1 || bad "--eval-only of the probe's weights"
expect "probe --eval-only" 0 "test acc" "$TRAIN" $EV --probe
if grep -qF "$CACHED" "$T/out"; then bad "probe --eval-only cached"
elif [ -n "$(grep -o "$ACC" "$T/ev.out")" ] &&
    [ "$(grep -o "$ACC" "$T/out")" = "$(grep -o "$ACC" "$T/ev.out")" ]; then
    ok "probe --eval-only: $(grep -o "$ACC" "$T/out"), as without --probe"
else bad "probe --eval-only: another evaluation"; show "$T/out"
    show "$T/ev.out"; fi
"$TRAIN" $L --probe --init-from "$T/pre.st" --stop-after 1 \
    --out "$T/pc1.st" >"$T/out" 2>&1 &&
"$TRAIN" $L --probe --no-probe-cache --resume "$T/pc1.st" \
    --out "$T/pc1.st" >>"$T/out" 2>&1 &&
SMLP_TRAIN_TEST_SIGINT_STEP=5 "$TRAIN" $L --probe --no-probe-cache \
    --init-from "$T/pre.st" --out "$T/pc2.st" >>"$T/out" 2>&1
rc=$?
"$TRAIN" $L --probe --resume "$T/pc2.st" --out "$T/pc2.st" >>"$T/out" 2>&1
if [ "$rc" -eq 130 ] && mst close "$T/probe.st" "$T/pc1.st" >>"$T/out" 2>&1 &&
    mst close "$T/probe.st" "$T/pc2.st" >>"$T/out" 2>&1; then
    ok "probe: stopped in one mode, resumed in the other"
else bad "probe: resume across the cache (first rc $rc)"
    sed 's/^/  | /' "$T/out"; fi
# The resumed run still says where its backbone came from.
if [ "$(st meta "$T/pc2.st" train.init_from)" = "$T/pre.st" ]; then
    ok "probe resumed: train.init_from kept"
else bad "probe resumed: train.init_from '$(st meta "$T/pc2.st" \
    train.init_from)'"; fi
# A head from the final layer norm on: the cut is [-1,49,128].
"$B/tools/smlp-graph" edit "$SPARSE" -o "$T/wide.fbs" \
    --rename norm.weight=head.norm.weight \
    --rename norm.bias=head.norm.bias >"$T/out" 2>&1
W="$T/wide.fbs $COMMON --batch 16 --limit-train 64 --epochs 1 --lr 0.01"
expect "probe: a wider head" 0 "'blocks.5.res2.out' (6272 floats per" \
    "$TRAIN" $W --probe --out "$T/wide1.st"
"$TRAIN" $W --probe --no-probe-cache --out "$T/wide2.st" >"$T/out" 2>&1
if mst close "$T/wide1.st" "$T/wide2.st" >>"$T/out" 2>&1; then
    ok "probe: a wider head, cached = recomputed"
else bad "probe: a wider head"; sed 's/^/  | /' "$T/out"; fi
# Where the cache cannot help, the probe says why and runs as before.
NOTE="note: --probe runs the frozen backbone at every step (no feature cache)"
expect "probe with --augment: no cache" 0 "$NOTE: with --augment" \
    "$TRAIN" $L --probe --augment shift --max-steps 2 --out "$T/x.st"
"$B/tools/smlp-graph" edit "$SPARSE" -o "$T/gate.fbs" \
    --rename blocks.5.moe_c.gate.weight=head.gate >"$T/out" 2>&1
expect "probe: a head reading two backbone tensors" 0 \
    "$NOTE: the head reads more than one backbone tensor" \
    "$TRAIN" "$T/gate.fbs" $COMMON --batch 16 --limit-train 32 --epochs 1 \
    --probe --out "$T/x.st"
# Cache batches that do not divide the sets (evaluation batch 48: the
# 128 training rows in 48 + 48 + 32, the 64 test rows in 48 + 16): each
# row in its image's place, the head and the epoch's test accuracy and
# loss those of the run without the cache.
E="$L --epochs 1 --eval-batch 48 --init-from $T/pre.st"
expect "probe: cache batches of 48" 0 "$CACHED 128 + 64 images cached" \
    "$TRAIN" $E --probe --out "$T/e48.st"
cp "$T/out" "$T/e48.out"
"$TRAIN" $E --probe --no-probe-cache --out "$T/e48nc.st" >"$T/e48nc.out" 2>&1
if mst close "$T/e48.st" "$T/e48nc.st" >"$T/out" 2>&1 &&
    "$PY" - "$T/e48.out" "$T/e48nc.out" <<'PY' >>"$T/out" 2>&1
import re, sys
def test(path):
    m = re.search(r"^epoch 1/1: .*test acc ([0-9.]+)% .*test loss ([0-9.]+)",
                  open(path).read(), re.M)
    return float(m.group(1)), float(m.group(2))
(a, l), (b, m) = test(sys.argv[1]), test(sys.argv[2])
assert abs(a - b) < 1.57 and abs(l - m) <= 2e-4, (a, l, b, m)
PY
then ok "probe: cache batches of 48, cached = recomputed"
else bad "probe: cache batches of 48"; show "$T/out"; fi
# --moe-stats and --routing-by-class count the backbone's routing: no
# cache, and every step's (2 x 16 images) and the test set's (64 images)
# assignments counted, items x k each (MoE_s 64 x 1, MoE_c 49 x 2).
expect "probe with --moe-stats: no cache" 0 "$NOTE: --moe-stats counts" \
    "$TRAIN" $L --probe --max-steps 2 --moe-stats "$T/pm.csv" --out "$T/x.st"
expect "probe with --routing-by-class: no cache" 0 \
    "$NOTE: --routing-by-class reports" \
    "$TRAIN" $L --probe --max-steps 2 --routing-by-class "$T/pr.csv" \
    --out "$T/x.st"
if "$PY" - "$T/pm.csv" "$T/pr.csv" <<'PY'
import csv, sys
for path, col, col2, images in ((sys.argv[1], "kept", "dropped", 32),
                                (sys.argv[2], "assigned", None, 64)):
    per = {}
    for r in csv.DictReader(open(path)):
        n = int(r[col]) + (int(r[col2]) if col2 else 0)
        per[r["layer"]] = per.get(r["layer"], 0) + n
    assert len(per) == 4, per
    for layer, n in per.items():
        assert n == images * (64 if "moe_s" in layer else 49 * 2), (path, per)
PY
then ok "probe: --moe-stats and --routing-by-class count the backbone"
else bad "probe: --moe-stats and --routing-by-class"; fi

# ---- fine-tuning from the pre-trained backbone ----
expect "fine-tune: the backbone loads" 0 "96 of 98 parameters loaded" \
    "$TRAIN" "$SPARSE" $COMMON --batch 16 --limit-train 16 --epochs 1 \
    --lr 1e-12 --weight-decay 0 --init-from "$T/pre.st" --out "$T/ft.st"
if mst finetune "$T/pre.st" "$T/ft.st" >"$T/out" 2>&1; then
    ok "fine-tune starts from the pre-trained backbone"
else bad "fine-tune backbone"; sed 's/^/  | /' "$T/out"; fi
# Files of other graphs: no tensor of ours; one of ours, shaped otherwise.
mst write "$T/other.st" x
mst write "$T/shape.st" stem.proj.weight
expect "init-from another graph" 1 "(a checkpoint of another graph?)" \
    "$TRAIN" "$SPARSE" $COMMON --batch 16 --limit-train 16 --epochs 1 \
    --init-from "$T/other.st" --out "$T/x.st"
expect "init-from another backbone" 1 \
    "tensor 'stem.proj.weight' is F32 [2], the graph's is F32 [128, 1, 4, 4]" \
    "$TRAIN" "$SPARSE" $COMMON --batch 16 --limit-train 16 --epochs 1 \
    --init-from "$T/shape.st" --out "$T/x.st"
# The same rank, another shape.
mst write "$T/shape4.st" stem.proj.weight 128,1,4,3
expect "init-from another shape of the same rank" 1 \
    "tensor 'stem.proj.weight' is F32 [128, 1, 4, 3], the graph's is F32" \
    "$TRAIN" "$SPARSE" $COMMON --batch 16 --limit-train 16 --epochs 1 \
    --init-from "$T/shape4.st" --out "$T/x.st"
# A file from before train.backbone: its graph's name moco_GRAPH says
# which classifier it pre-trains; another name warns.
st delmeta "$T/pre.st" "$T/old.st" train.backbone
st setmeta "$T/old.st" "$T/old.st" smlp.graph moco_mixer_fmnist
expect "init-from an old MoCo file of another graph" 0 \
    "a checkpoint of graph 'moco_mixer_fmnist', and this graph is" \
    "$TRAIN" "$SPARSE" $COMMON --batch 16 --limit-train 16 --max-steps 1 \
    --init-from "$T/old.st" --out "$T/x.st"
# A MoCo run from a classifier's checkpoint: each momentum twin starts
# as its parameter; from a MoCo checkpoint: the twins load too.
for from in ft pre; do
    "$TRAIN" "$MOCO" $COMMON --batch 16 --limit-train 16 --max-steps 1 \
        --init-from "$T/$from.st" --out "$T/mfrom.st" >"$T/out" 2>&1 &&
    mst twins "$T/$from.st" "$T/mfrom.st" >"$T/out" 2>&1
    rc=$?
    if [ $rc -eq 0 ]; then
        ok "MoCo --init-from $from.st: the twins ($(cat "$T/out"))"
    else bad "MoCo --init-from $from.st: the twins"; show "$T/out"; fi
done

rm -rf "$T"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
