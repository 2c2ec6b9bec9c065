#!/bin/sh
# End-to-end checks of the Sparse-MLP graphs through tools/smlp-run: every
# sparse graph and ablation runs at batch 1 and prints the MoE table; the
# JSON report of sparse_mlp_fmnist holds, per MoE layer, the capacity that
# OPS.md's formula gives (computed here independently), kept + dropped =
# items x k, and aux = 0 in inference / > 0 in training; the MoE table
# and the JSON's per-expert counts are the gates' `load` outputs, the
# top-5 lines the logits'.  Prints "N passed, M failed".  sparse_mlp_l
# (741 M parameters, 3 GB) is left to hand runs.
B=${SMLP_TEST_BUILDDIR:-.}
RUN="$B/tools/smlp-run"
T=$(mktemp -d /tmp/smlp-sparse-test.XXXXXX)
trap 'rm -rf "$T"' EXIT INT TERM
. "${SMLP_TEST_SRCDIR:-.}/tests/shlib.sh"

for n in sparse_mlp_fmnist sparse_mlp_s sparse_mlp_b sparse_mlp_b_topk \
    sparse_mlp_b_per_image sparse_mlp_b_hash sparse_mlp_b_norr \
    sparse_mlp_b_k1 sparse_mlp_b_last4 sparse_mlp_b_cf05; do
    if "$RUN" "$B/graphs/$n.fbs" --batch 1 --repeat 1 --threads 2 \
            --json "$T/$n.json" >"$T/out" 2>&1 &&
       grep -q "^moe layers" "$T/out" && grep -q "^    kept " "$T/out" &&
       grep -q "routing (gate+dispatch+combine)" "$T/out"; then
        ok "$n runs at batch 1 and prints the MoE table"
    else
        bad "$n at batch 1"; show "$T/out"
    fi
done

# With the PyTorch reference's weights (drawn from the generator settings
# in tests/reference/ by tests/ref_weights) the logits are not zero: the
# report shows each row's top-5, and the outputs file holds them.
REF="${SMLP_TEST_SRCDIR:-.}/tests/reference/sparse_mlp_fmnist.safetensors"
if "$B/tests/ref_weights" "$REF" "$B/graphs/sparse_mlp_fmnist.fbs" \
        "$T/ref_weights.safetensors" >"$T/out" 2>&1 &&
   "$RUN" "$B/graphs/sparse_mlp_fmnist.fbs" --batch 4 --repeat 1 \
        --weights "$T/ref_weights.safetensors" \
        --output "$T/ref_out.safetensors" >>"$T/out" 2>&1 &&
   grep -q "^  row 3 top-5:  [0-9]" "$T/out" && [ -s "$T/ref_out.safetensors" ]
then ok "sparse_mlp_fmnist with reference weights: top-5 of 4 rows"
else bad "sparse_mlp_fmnist with reference weights"; show "$T/out"
fi
cp "$T/out" "$T/ref.out"

if [ -z "$PYTHON3" ] || [ "$PYTHON3" = no ]; then
    echo "$pass passed, $fail failed (JSON checks skipped: no python3)"
    [ "$fail" -eq 0 ]
    exit
fi

# The top-5 lines of the run with the reference weights: each row's five
# largest logits (of the outputs file), largest first, their values.
if stpy - "$T/ref.out" "$T/ref_out.safetensors" >"$T/out" 2>&1 <<'PY'
import re, sys
import st
f = st.read(sys.argv[2])
rows, cols = f.shape("logits")
x = f.values("logits")
assert len(x) == rows * cols, (len(x), rows, cols)
got = re.findall(r"^  row ([0-9]+) top-5:(.*)$", open(sys.argv[1]).read(),
                 re.M)
assert [int(g[0]) for g in got] == list(range(min(rows, 4))), got
for r, line in got:
    row = x[int(r) * cols:(int(r) + 1) * cols]
    best = sorted(range(cols), key=lambda j: -row[j])[:5]
    want = "".join("  %d (%.4g)" % (j, row[j]) for j in best)
    assert line == want, (r, line, want)
PY
then ok "sparse_mlp_fmnist with reference weights: the top-5 are the logits'"
else bad "top-5 of the reference run"; show "$T/out"; fi

# check_json FILE MODE ...: MODE is eval or train; each further argument
# is LAYER_SUFFIX:E:k:G:cf, where the capacity per group is
# ceil(k*G*cf/E) (cf <= 0: G), the group count N/G with N = batch * G.
check_json() {
    "$PYTHON3" - "$@" <<'PY'
import json, math, sys
path, mode = sys.argv[1], sys.argv[2]
r = json.load(open(path))
want = [a.split(":") for a in sys.argv[3:]]
layers = r["moe"]
batch = r["batch"]
assert r["training"] == (mode == "train"), r["training"]
assert len(layers) == len(want), (len(layers), len(want))
for l, (suffix, E, k, G, cf) in zip(layers, want):
    E, k, G, cf = int(E), int(k), int(G), float(cf)
    cap = G if cf <= 0 else math.ceil(k * G * cf / E)
    assert l["gate"].endswith(suffix), (l["gate"], suffix)
    assert (l["experts"], l["k"], l["items"]) == (E, k, batch * G), l
    assert l["groups"] == batch and l["capacity"] == cap, (l, cap)
    assert l["rows"] == batch * cap, l
    assert sum(l["kept"]) + sum(l["dropped"]) == batch * G * k, l
    assert all(0 <= x <= batch * cap for x in l["kept"]), l
    if mode == "eval":
        assert l["aux"] == 0, l
    else:
        assert l["aux"] > 0, l
t = r["moe_time_ms"]
assert t["experts"] > 0 and t["all_nodes"] >= t["gate"] + t["experts"]
print("ok", path, [(l["capacity"], sum(l["dropped"])) for l in layers])
PY
}

# sparse_mlp_fmnist: blocks 4 and 5 sparse; MoE_s E=4 k=1 G=C1=64, MoE_c
# E=4 k=2 G=S=49; cf 1.0 in inference, 1.05 in training.
FM="$B/graphs/sparse_mlp_fmnist.fbs"
L_EVAL="4.moe_s.gate:4:1:64:1.0 4.moe_c.gate:4:2:49:1.0
        5.moe_s.gate:4:1:64:1.0 5.moe_c.gate:4:2:49:1.0"
L_TRAIN="4.moe_s.gate:4:1:64:1.05 4.moe_c.gate:4:2:49:1.05
         5.moe_s.gate:4:1:64:1.05 5.moe_c.gate:4:2:49:1.05"
if "$RUN" "$FM" --batch 4 --repeat 2 --json "$T/fm.json" \
        --output "$T/fm.safetensors" >"$T/fm.out" 2>&1 &&
   check_json "$T/fm.json" eval $L_EVAL >"$T/out" 2>&1; then
    ok "sparse_mlp_fmnist inference: capacities, loads, aux = 0"
else
    bad "sparse_mlp_fmnist inference JSON"; show "$T/fm.out"; show "$T/out"
fi
# The MoE table and the JSON's layers against the gates' own outputs
# (the graph's outputs `load` [E, 2] and `aux`, in --output's file, each
# gate's found through flatc's JSON of the graph): per layer the kept and
# dropped counts of each expert, their totals and share, aux; the moe
# time line against the nodes' times summed per op.
"${FLATC:-flatc}" --json --strict-json --raw-binary -o "$T" \
    "${SMLP_TEST_SRCDIR:-.}/schemas/graph.fbs" -- "$FM"
if stpy - "$T/fm.out" "$T/fm.json" "$T/fm.safetensors" \
        "$T/sparse_mlp_fmnist.json" >"$T/out" 2>&1 <<'PY'
import json, re, sys
import st
txt, r = open(sys.argv[1]).read(), json.load(open(sys.argv[2]))
tensor = st.read(sys.argv[3]).values
g = json.load(open(sys.argv[4]))
gates = {nd["name"]: nd for nd in g["nodes"]
         if nd["op"].startswith("moe.gate.")}
assert sorted(l["gate"] for l in r["moe"]) == sorted(gates), r["moe"]
blocks = re.split(r"^  (?=\S)", txt.split("\nmoe layers  ")[1], flags=re.M)
assert txt.count("\nmoe layers  %d (inference" % len(gates)) == 1
blocks = [x for x in blocks[1:] if not x.startswith("moe time")]
assert len(blocks) == len(r["moe"]), blocks
def nums(row, block):
    return [int(v) for l in re.findall(r"^    %s +([0-9 ]+)$" % row, block,
                                       re.M) for v in l.split()]
for l, blk in zip(r["moe"], blocks):
    out = gates[l["gate"]]["outputs"]
    load = tensor(g["tensors"][out[5]]["name"])
    aux, = tensor(g["tensors"][out[4]]["name"])
    E = len(load) // 2
    assert l["experts"] == E and l["aux"] == aux, (l, aux)
    assert l["kept"] == list(load[0::2]), (l["gate"], l["kept"], load)
    assert l["dropped"] == list(load[1::2]), (l["gate"], l["dropped"])
    assert blk.startswith("%s  %s  %d items x k %d, %d group(s), capacity "
                          "%d (%d rows/expert), aux %.6g\n" %
                          (l["gate"], l["op"], l["items"], l["k"],
                           l["groups"], l["capacity"], l["rows"], aux)), blk
    assert nums("expert", blk) == list(range(E)), blk
    assert nums("kept", blk) == l["kept"], blk
    assert nums("dropped", blk) == l["dropped"], blk
    k, d = sum(l["kept"]), sum(l["dropped"])
    assert k + d == l["items"] * l["k"], l
    assert "    total    kept %d, dropped %d (%.2f%% of %d choices)\n" % (
        k, d, 100.0 * d / (k + d), k + d) in blk, blk
t = r["moe_time_ms"]
want = {"gate": 0, "dispatch": 0, "experts": 0, "combine": 0, "all_nodes": 0}
for nd in r["nodes"]:
    ms = (nd["end_us"] - nd["start_us"]) / 1e3
    want["all_nodes"] += ms
    op = nd["op"]
    key = "gate" if op.startswith("moe.gate.") else {
        "moe.dispatch": "dispatch", "moe.expert_ffn": "experts",
        "moe.combine": "combine"}.get(op)
    if key:
        want[key] += ms
assert all(abs(t[x] - want[x]) <= 1e-3 for x in want), (t, want)
m = re.search(r"^moe time    gate ([0-9.]+) ms, dispatch ([0-9.]+), experts "
              r"([0-9.]+), combine ([0-9.]+): routing \(gate\+dispatch\+"
              r"combine\) ([0-9.]+)% of MoE time, ([0-9.]+)% of all node "
              r"time$", txt, re.M)
routing = t["gate"] + t["dispatch"] + t["combine"]
got = [float(v) for v in m.groups()]
exp = [t["gate"], t["dispatch"], t["experts"], t["combine"],
       100 * routing / (routing + t["experts"]), 100 * routing / t["all_nodes"]]
assert all(abs(a - b) <= 0.0051 if i < 4 else abs(a - b) <= 0.051
           for i, (a, b) in enumerate(zip(got, exp))), (got, exp)
PY
then ok "sparse_mlp_fmnist: the MoE table and JSON are the gates' loads"
else bad "sparse_mlp_fmnist: the MoE table and JSON"; show "$T/out"; fi
if "$RUN" "$FM" --batch 4 --repeat 1 --training --json "$T/fmt.json" \
        >"$T/out" 2>&1 &&
   check_json "$T/fmt.json" train $L_TRAIN >>"$T/out" 2>&1; then
    ok "sparse_mlp_fmnist training: capacities, loads, aux > 0"
else
    bad "sparse_mlp_fmnist training JSON"; show "$T/out"
fi

# Ablations at batch 1 (from the runs above): cf05 halves the inference
# capacity; hash and per_image drop nothing (cf 0).
if check_json "$T/sparse_mlp_b_cf05.json" eval \
        10.moe_s.gate:8:1:384:0.5 10.moe_c.gate:8:2:196:0.5 \
        11.moe_s.gate:8:1:384:0.5 11.moe_c.gate:8:2:196:0.5 >"$T/out" 2>&1
then ok "sparse_mlp_b_cf05 capacities (24, 25)"
else bad "sparse_mlp_b_cf05 capacities"; show "$T/out"; fi
if check_json "$T/sparse_mlp_b_hash.json" eval \
        10.moe_s.gate:8:1:384:0 10.moe_c.gate:8:1:196:0 \
        11.moe_s.gate:8:1:384:0 11.moe_c.gate:8:1:196:0 >"$T/out" 2>&1 &&
   "$PYTHON3" -c "
import json, sys
r = json.load(open(sys.argv[1]))
assert all(sum(l['dropped']) == 0 for l in r['moe'])
# chunk mode (batch 1, T = items): item p goes to expert floor(p*E/T)
for l in r['moe']:
    T, E = l['items'], l['experts']
    want = [sum(1 for p in range(T) if p * E // T == e) for e in range(E)]
    assert l['kept'] == want, (l['gate'], l['kept'], want)
" "$T/sparse_mlp_b_hash.json" >>"$T/out" 2>&1
then ok "sparse_mlp_b_hash: chunk routing, no drops"
else bad "sparse_mlp_b_hash"; show "$T/out"; fi
if check_json "$T/sparse_mlp_b_per_image.json" eval \
        10.moe_s.gate:8:1:384:1.0 10.moe_c.gate:8:2:196:0 \
        11.moe_s.gate:8:1:384:1.0 11.moe_c.gate:8:2:196:0 >"$T/out" 2>&1 &&
   "$PYTHON3" -c "
import json, sys
r = json.load(open(sys.argv[1]))
for l in r['moe'][1::2]:
    # one decision per image: all 196 items in the image's 2 experts
    assert sum(l['dropped']) == 0 and sorted(l['kept'])[-2:] == [196, 196] \
        and sum(l['kept']) == 392, l
" "$T/sparse_mlp_b_per_image.json" >>"$T/out" 2>&1
then ok "sparse_mlp_b_per_image: one decision per image"
else bad "sparse_mlp_b_per_image"; show "$T/out"; fi

# Achieved GFLOP/s counts the MACs computed: an expert FFN given its
# layer's slot_item skips the empty capacity rows (OPS.md), so its MACs
# are its capacity MACs times the layer's kept assignments over E x rows;
# every other node's are its own.  sparse_mlp_b_hash (capacity G, one
# expert per item) then computes what gen_graphs.py --stats counts,
# 13.30 G MACs per image (README), against 27.87 G at capacity.
if "$PYTHON3" -c "
import json, sys
r = json.load(open(sys.argv[1]))
layers = {l['gate'][:-len('.gate')]: l for l in r['moe']}
done, n_ffn = 0, 0
for n in r['nodes']:
    want = n['macs']
    if n['op'] == 'moe.expert_ffn':
        l = layers[n['name'][:-len('.experts')]]
        want = n['macs'] * sum(l['kept']) // (l['experts'] * l['rows'])
        n_ffn += 1
    assert abs(n['macs_computed'] - want) <= 1, (n, want)
    done += n['macs_computed']
assert n_ffn == 4 and done == r['macs_computed_per_batch'], (n_ffn, done)
assert abs(done / r['batch'] - 13.30e9) < 0.005e9, done
assert abs(r['macs_per_image'] - 27.87e9) < 0.005e9, r['macs_per_image']
g = 2 * done / (r['time_ms']['median'] * 1e6)
assert abs(r['gflops'] - g) <= 1e-6 * g, (r['gflops'], g)
" "$T/sparse_mlp_b_hash.json" >"$T/out" 2>&1 &&
   "$RUN" "$B/graphs/sparse_mlp_b_hash.fbs" --batch 1 --repeat 1 \
        --threads 2 >"$T/hash.out" 2>&1 &&
   grep -q "GFLOP/s (of 13.30 G MACs per image computed" "$T/hash.out"
then ok "sparse_mlp_b_hash: GFLOP/s of the 13.30 G MACs computed"
else bad "MACs computed"; show "$T/out"; show "$T/hash.out"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
