# tests/shlib.sh - what the shell tests share; sourced after T (the
# test's temporary directory) is set:
#   . "${SMLP_TEST_SRCDIR:-.}/tests/shlib.sh"
# ok NAME / bad NAME count and print a result (pass, fail: the counts,
# printed by the caller as "N passed, M failed"); show FILE prints a file
# indented; expect NAME STATUS NEEDLE CMD... runs CMD and checks its exit
# status and that NEEDLE occurs in its output (stdout and stderr together;
# NEEDLE "" matches anything); make_idx_data DIR NTRAIN NTEST (python3)
# writes a tiny gzip'd IDX data set in Fashion-MNIST's layout.
# st CMD ARGS... reads, compares and edits safetensors files (tests/st.py:
# its head lists the commands); stpy ARGS... runs python3 with tests/ on
# its path, for scripts that `import st`.  Both run ${PY:-$PYTHON3}.
# rows_near A B: two smlp-train --metrics files with the same rows (at
# least 2), losses and training accuracies within 1e-5 (relative, floor
# 1); moe_totals_same A B: two --moe-stats files whose kept + dropped
# assignments per (step, layer) are equal, at least 4 of them, none 0.
# make_bn_graph NAME WIDTH: $T/NAME.json and $T/NAME.fbs (flatc), a
# classifier image -> linear (WIDTH units, bias 3) -> batch norm
# (running statistics from 0 and 1) -> linear head of 10 logits.
pass=0
fail=0

ok() { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "FAIL - $1"; }
show() { sed 's/^/  | /' "$1"; }

ST_DIR="${SMLP_TEST_SRCDIR:-.}/tests"
stpy() {
    PYTHONPATH="$ST_DIR${PYTHONPATH:+:$PYTHONPATH}" \
        "${PY:-${PYTHON3:-python3}}" "$@"
}
st() { stpy "$ST_DIR/st.py" "$@"; }

expect() {
    name=$1 want=$2 needle=$3
    shift 3
    "$@" >"$T/out" 2>&1
    got=$?
    if [ "$got" -ne "$want" ]; then
        bad "$name: exit $got, want $want"; show "$T/out"
    elif [ -n "$needle" ] && ! grep -qF -- "$needle" "$T/out"; then
        bad "$name: no '$needle' in output"; show "$T/out"
    else
        ok "$name"
    fi
}

# 28 x 28 images of 10 easy classes: class c is a bright bar at rows
# 3+2c..4+2c over noise (seeded: the same bytes every time).
make_idx_data() {
    mkdir -p "$1" && "${PY:-python3}" - "$@" <<'PY'
import gzip, random, struct, sys
d, ntrain, ntest = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(0)
for prefix, n in (("train", ntrain), ("t10k", ntest)):
    px, lab = bytearray(), bytearray()
    for i in range(n):
        c = rnd.randrange(10)
        img = [rnd.randrange(40) for _ in range(784)]
        for r in (3 + 2 * c, 4 + 2 * c):
            for x in range(4, 24):
                img[r * 28 + x] = 180 + rnd.randrange(75)
        px += bytes(img)
        lab.append(c)
    with gzip.open(f"{d}/{prefix}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 28, 28) + bytes(px))
    with gzip.open(f"{d}/{prefix}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + bytes(lab))
PY
}

rows_near() {
    stpy - "$1" "$2" <<'PY'
import csv, sys
a = list(csv.DictReader(open(sys.argv[1])))
b = list(csv.DictReader(open(sys.argv[2])))
assert len(a) == len(b) and len(a) >= 2, (len(a), len(b))
for x, y in zip(a, b):
    assert x["step"] == y["step"], (x["step"], y["step"])
    for col in ("loss", "train_acc"):
        u, v = float(x[col]), float(y[col])
        assert abs(u - v) <= 1e-5 * max(1.0, abs(u)), (x["step"], col, u, v)
PY
}

moe_totals_same() {
    stpy - "$1" "$2" <<'PY'
import csv, sys
def totals(path):
    t = {}
    for r in csv.DictReader(open(path)):
        key = (r["step"], r["layer"])
        t[key] = t.get(key, 0) + int(r["kept"]) + int(r["dropped"])
    return t
a, b = totals(sys.argv[1]), totals(sys.argv[2])
assert a == b, (a, b)
assert len(a) >= 4 and all(v > 0 for v in a.values()), a
PY
}

make_bn_graph() {
    cat >"$T/$1.json" <<JSON
{"name": "$1", "plugins": ["core", "norm"],
 "tensors": [{"name": "image", "kind": "Input", "shape": [-1, 1, 28, 28]},
  {"name": "flat"},
  {"name": "fc.weight", "kind": "Parameter", "shape": [$2, 784],
   "init": {"kind": "Uniform", "a": -0.05, "b": 0.05, "seed": 1}},
  {"name": "fc.bias", "kind": "Parameter", "shape": [$2],
   "init": {"kind": "Constant", "a": 3.0}},
  {"name": "h"},
  {"name": "bn.weight", "kind": "Parameter", "shape": [$2],
   "init": {"kind": "Ones"}},
  {"name": "bn.bias", "kind": "Parameter", "shape": [$2],
   "init": {"kind": "Zeros"}},
  {"name": "bn.running_mean", "kind": "State", "shape": [$2],
   "init": {"kind": "Zeros"}},
  {"name": "bn.running_var", "kind": "State", "shape": [$2],
   "init": {"kind": "Ones"}},
  {"name": "hn"},
  {"name": "head.weight", "kind": "Parameter", "shape": [10, $2],
   "init": {"kind": "Uniform", "a": -0.2, "b": 0.2, "seed": 2}},
  {"name": "head.bias", "kind": "Parameter", "shape": [10],
   "init": {"kind": "Zeros"}},
  {"name": "logits", "kind": "Output", "shape": [-1, 10]}],
 "nodes": [{"name": "flatten", "op": "core.reshape", "inputs": [0],
   "outputs": [1],
   "attrs": [{"name": "shape", "type": "Ints", "ints": [-1, 784]}]},
  {"name": "fc", "op": "core.linear", "inputs": [1, 2, 3], "outputs": [4]},
  {"name": "bn", "op": "norm.batch_norm", "inputs": [4, 5, 6, 7, 8],
   "outputs": [9]},
  {"name": "head", "op": "core.linear", "inputs": [9, 10, 11],
   "outputs": [12]}]}
JSON
    "${FLATC:-flatc}" -b -o "$T" "${SMLP_TEST_SRCDIR:-.}/schemas/graph.fbs" \
        "$T/$1.json"
}
