#!/bin/sh
# End-to-end checks of tools/smlp-run on the shipped mixer_fmnist graph:
# the report, the files it writes, and errors for bad input (message and
# exit status).  Prints "N passed, M failed".
B=${SMLP_TEST_BUILDDIR:-.}
RUN="$B/tools/smlp-run"
G="$B/graphs/mixer_fmnist.fbs"
T=$(mktemp -d /tmp/smlp-run-test.XXXXXX)
. "${SMLP_TEST_SRCDIR:-.}/tests/shlib.sh"

expect "report" 0 "graph       mixer_fmnist" \
    "$RUN" "$G" --batch 3 --repeat 2 --threads 2 \
    --output "$T/out.safetensors" --trace "$T/trace.json"
for want in "params      " "MACs        " "output      logits f32 [3,10]" \
    "all zero (the graph's classifier head is zero-initialised" \
    "images/s" "GFLOP/s" "lower bound" "time by op" \
    "core.linear" "norm.layer_norm"; do
    if grep -qF -- "$want" "$T/out"; then ok "report has '$want'";
    else bad "report lacks '$want'"; fi
done
if [ -s "$T/out.safetensors" ] && ! ls "$T" | grep -q '\.tmp\.'; then
    ok "outputs written atomically"
else
    bad "outputs file missing or temporary file left"
fi
if [ -n "$PYTHON3" ] && [ "$PYTHON3" != no ]; then
    if "$PYTHON3" -c "
import json, sys
t = json.load(open(sys.argv[1]))['traceEvents']
x = [e for e in t if e.get('ph') == 'X']
assert len(x) > 20 and all(e['dur'] >= 0 for e in x), len(x)
assert any(e['cat'] == 'core.linear' for e in x)
" "$T/trace.json"; then ok "trace is valid JSON"; else bad "trace JSON"; fi
fi
# The report against the graph (flatc's JSON of it: parameters, nodes,
# ops) and against itself: the JSON's times sorted, min / median / max of
# them, images/s = batch / median, GFLOP/s = 2 MACs / median, the MACs
# the nodes' sum; the printed lines the JSON's numbers; the op table the
# nodes' times and MACs summed per op, by time descending.  tiny.fbs's
# numbers are known: 4 -> 3 -> 2 (linear, gelu, linear) has 23
# parameters and 18 MACs an image; so are gap.fbs's (8 -> 8 -> 16 -> 16
# -> 8 -> 24, linear without bias): 768 parameters, 768 MACs an image,
# and the most bytes live at once, the lower bound, 4 x batch x 40 (x,
# h3, h4, y at fc5), under the arena (384 bytes at batch 2: neither of
# the planner's greedy orders, by size or by lifetime, packs this chain).  mixer_fmnist is a chain: its 2 threads run one node at a
# time, with 2 threads inside it (session.c's split of the budget).
cat >"$T/tiny.json" <<'JSON'
{"name": "tiny", "plugins": ["core"],
 "tensors": [{"name": "x", "kind": "Input", "shape": [-1, 4]},
             {"name": "w1", "kind": "Parameter", "shape": [3, 4],
              "init": {"kind": "Uniform", "a": -1, "b": 1, "seed": 1}},
             {"name": "b1", "kind": "Parameter", "shape": [3]},
             {"name": "h"}, {"name": "g"},
             {"name": "w2", "kind": "Parameter", "shape": [2, 3],
              "init": {"kind": "Uniform", "a": -1, "b": 1, "seed": 2}},
             {"name": "b2", "kind": "Parameter", "shape": [2]},
             {"name": "y", "kind": "Output"}],
 "nodes": [{"name": "fc1", "op": "core.linear", "inputs": [0, 1, 2],
            "outputs": [3]},
           {"name": "act", "op": "core.gelu", "inputs": [3], "outputs": [4]},
           {"name": "fc2", "op": "core.linear", "inputs": [4, 5, 6],
            "outputs": [7]}]}
JSON
cat >"$T/gap.json" <<'JSON'
{"name": "gap", "plugins": ["core"],
 "tensors": [{"name": "x", "kind": "Input", "shape": [-1, 8]},
             {"name": "w1", "kind": "Parameter", "shape": [8, 8]},
             {"name": "h1"},
             {"name": "w2", "kind": "Parameter", "shape": [16, 8]},
             {"name": "h2"},
             {"name": "w3", "kind": "Parameter", "shape": [16, 16]},
             {"name": "h3"},
             {"name": "w4", "kind": "Parameter", "shape": [8, 16]},
             {"name": "h4"},
             {"name": "w5", "kind": "Parameter", "shape": [24, 8]},
             {"name": "y", "kind": "Output"}],
 "nodes": [{"name": "fc1", "op": "core.linear", "inputs": [0, 1],
            "outputs": [2]},
           {"name": "fc2", "op": "core.linear", "inputs": [2, 3],
            "outputs": [4]},
           {"name": "fc3", "op": "core.linear", "inputs": [4, 5],
            "outputs": [6]},
           {"name": "fc4", "op": "core.linear", "inputs": [6, 7],
            "outputs": [8]},
           {"name": "fc5", "op": "core.linear", "inputs": [8, 9],
            "outputs": [10]}]}
JSON
# k.fbs (100 -> 10, linear without bias): 1000 parameters and 1000 MACs
# an image, which the report gives in thousands, as 1.00 K.
cat >"$T/k.json" <<'JSON'
{"name": "k", "plugins": ["core"],
 "tensors": [{"name": "x", "kind": "Input", "shape": [-1, 100]},
             {"name": "w", "kind": "Parameter", "shape": [10, 100]},
             {"name": "y", "kind": "Output"}],
 "nodes": [{"name": "fc", "op": "core.linear", "inputs": [0, 1],
            "outputs": [2]}]}
JSON
for n in tiny gap k; do
    "${FLATC:-flatc}" -b -o "$T" \
        "${SMLP_TEST_SRCDIR:-.}/schemas/graph.fbs" "$T/$n.json"
done
if "$RUN" "$T/k.fbs" --batch 1 --repeat 1 >"$T/rep.out" 2>&1 &&
   grep -q "^params      1.00 K parameters" "$T/rep.out" &&
   grep -q "^MACs        1.00 K per image$" "$T/rep.out"
then ok "report: k.fbs's 1000 parameters and MACs an image, 1.00 K"
else bad "report: k.fbs"; show "$T/rep.out"; fi
cat >"$T/report.py" <<'PY'
import json, math, re, statistics, sys
out, rep, gj = sys.argv[1:4]
want = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
txt, r, g = open(out).read(), json.load(open(rep)), json.load(open(gj))
def near(a, b, dec):  # a printed with dec decimals, b exact
    assert abs(a - b) <= 0.5 * 10 ** -dec + 1e-9 * abs(b), (a, b, dec)
def line(pat):
    m = re.search(pat, txt, re.M)
    assert m, pat
    return m.groups()
def human(v):
    for s, u in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if v >= s:
            return "%.2f %s" % (v / s, u)
    return "%.0f" % v
numel = lambda t: math.prod(t.get("shape", []))
params = sum(numel(t) for t in g["tensors"] if t.get("kind") == "Parameter")
assert r["params"] == params and r["param_bytes"] >= 4 * params, r
assert r["n_nodes"] == len(g["nodes"]) == len(r["nodes"]), r["n_nodes"]
for k, v in want.items():
    got = r["memory"][k] if k == "lower_bound_bytes" else r.get(k)
    assert k == "repeat" or got == v, (k, got, v)
b, macs = r["batch"], r["macs_per_batch"]
assert macs == sum(n["macs"] for n in r["nodes"]), macs
assert r["macs_per_image"] == macs / b, r["macs_per_image"]
t = r["time_ms"]
runs = t["runs"]
assert runs == sorted(runs) and runs[0] > 0 and len(runs) == want.get(
    "repeat", len(runs)), runs
assert (t["min"], t["max"]) == (runs[0], runs[-1]), t
assert abs(t["median"] - statistics.median(runs)) <= 1e-6 * runs[-1], t
rel = lambda a, b: abs(a - b) <= 1e-7 * abs(b)
assert rel(r["images_per_s"], b * 1e3 / t["median"]), r["images_per_s"]
assert rel(r["gflops"], 2 * macs / (t["median"] * 1e6)), r["gflops"]
p = line(r"^params      (.+) parameters \(([0-9.]+) MiB\)$")
assert p[0] == human(params), p
near(float(p[1]), r["param_bytes"] / 2**20, 1)
assert line(r"^MACs        (.+) per image$")[0] == human(macs / b)
m = line(r"^time        ([0-9.]+) ms per batch \(median of ([0-9]+); "
         r"min ([0-9.]+), max ([0-9.]+)\)$")
assert int(m[1]) == len(runs), m
for s, v in zip(m[0:1] + m[2:], (t["median"], t["min"], t["max"])):
    near(float(s), v, 3)
m = line(r"^throughput  ([0-9.]+) images/s, ([0-9.]+) GFLOP/s$")
near(float(m[0]), r["images_per_s"], 2)
near(float(m[1]), r["gflops"], 1)
mem = r["memory"]
a, lb = mem["arena_bytes"], mem["lower_bound_bytes"]
m = line(r"^memory      arena (.+) bytes, lower bound (.+) bytes "
         r"\(([0-9.]+)x\); parameters ([0-9.]+) MiB$")
assert m[:2] == (human(a), human(lb)), (m, a, lb)
near(float(m[2]), a / lb if lb else 1.0, 3)
near(float(m[3]), r["param_bytes"] / 2**20, 1)
# the op table: nodes, ms, share, GFLOP/s of each op; by time descending
ops = {}
for n in r["nodes"]:
    assert n["end_us"] >= n["start_us"], n
    o = ops.setdefault(n["op"], [0, 0.0, 0])
    o[0] += 1
    o[1] += (n["end_us"] - n["start_us"]) / 1e3
    o[2] += n["macs"]
assert {o: sum(n["op"] == o for n in g["nodes"]) for o in ops} == \
    {o: v[0] for o, v in ops.items()}
total = sum(v[1] for v in ops.values())
near(total, r["moe_time_ms"]["all_nodes"], 3)
near(float(line(r"^time by op \(last run; node time, ([0-9.]+) ms in all")
           [0]), total, 1)
rows = re.findall(r"^  (\S+) +([0-9]+) +([0-9.]+) +([0-9.]+)% +([0-9.]+)$",
                  txt, re.M)
assert sorted(x[0] for x in rows) == sorted(ops), rows
for op, nodes, ms, share, gf in rows:
    n, t_ms, mc = ops[op]
    assert int(nodes) == n, (op, nodes, n)
    near(float(ms), t_ms, 3)
    near(float(share), 100 * t_ms / total if total > 0 else 0, 1)
    gf_want = 2 * mc / t_ms / 1e6 if t_ms > 0 else 0
    assert abs(float(gf) - gf_want) <= 0.05 + 1e-3 * gf_want, (op, gf)
assert [float(x[2]) for x in rows] == sorted((float(x[2]) for x in rows),
                                             reverse=True), rows
PY
if [ -n "$PYTHON3" ] && [ "$PYTHON3" != no ]; then
    "${FLATC:-flatc}" --json --strict-json --raw-binary -o "$T" \
        "${SMLP_TEST_SRCDIR:-.}/schemas/graph.fbs" -- "$G"
    if "$RUN" "$G" --batch 3 --repeat 4 --threads 2 --json "$T/rep.json" \
            >"$T/rep.out" 2>&1 &&
       "$PYTHON3" "$T/report.py" "$T/rep.out" "$T/rep.json" \
            "$T/mixer_fmnist.json" \
            '{"batch": 3, "training": false, "moe": [], "repeat": 4,
              "threads": {"inter_op": 1, "intra_op": 2},
              "outputs": [{"name": "features", "dtype": "f32",
                           "shape": [3, 128]},
                          {"name": "logits", "dtype": "f32",
                           "shape": [3, 10]}]}' >>"$T/rep.out" 2>&1
    then ok "report: mixer_fmnist's JSON and lines agree with the graph"
    else bad "report: mixer_fmnist"; show "$T/rep.out"; fi
    "${FLATC:-flatc}" --json --strict-json --raw-binary -o "$T/tj" \
        "${SMLP_TEST_SRCDIR:-.}/schemas/graph.fbs" -- "$T/tiny.fbs"
    if "$RUN" "$T/tiny.fbs" --batch 5 --repeat 3 --json "$T/tiny.rep" \
            >"$T/rep.out" 2>&1 &&
       "$PYTHON3" "$T/report.py" "$T/rep.out" "$T/tiny.rep" \
            "$T/tj/tiny.json" \
            '{"params": 23, "macs_per_image": 18, "macs_per_batch": 90,
              "n_nodes": 3, "batch": 5, "repeat": 3,
              "outputs": [{"name": "y", "dtype": "f32", "shape": [5, 2]}]}' \
            >>"$T/rep.out" 2>&1 &&
       grep -q "^params      23 parameters" "$T/rep.out" &&
       grep -q "^MACs        18 per image" "$T/rep.out"
    then ok "report: tiny.fbs's 23 parameters, 18 MACs an image"
    else bad "report: tiny.fbs"; show "$T/rep.out"; fi
    "${FLATC:-flatc}" --json --strict-json --raw-binary -o "$T/tj" \
        "${SMLP_TEST_SRCDIR:-.}/schemas/graph.fbs" -- "$T/gap.fbs"
    if "$RUN" "$T/gap.fbs" --batch 2 --repeat 1 --json "$T/gap.rep" \
            >"$T/rep.out" 2>&1 &&
       "$PYTHON3" "$T/report.py" "$T/rep.out" "$T/gap.rep" \
            "$T/tj/gap.json" \
            '{"params": 768, "macs_per_image": 768, "batch": 2,
              "lower_bound_bytes": 320}' >>"$T/rep.out" 2>&1 &&
       grep -q "arena 384 bytes, lower bound 320 bytes (1.200x)" \
            "$T/rep.out"
    then ok "report: gap.fbs's arena and lower bound, 384 and 320 bytes"
    else bad "report: gap.fbs"; show "$T/rep.out"; fi
fi
expect "bad device" 2 "--device: 'gpu' is not cpu or cuda" \
    "$RUN" "$G" --device gpu
# This machine has no GPU (CI never has one): a clear error, not a crash.
# (With a GPU the same command runs; tests/check_cuda covers that.)
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1
then echo "skip - device cuda error (a GPU is present)"
else expect "device cuda without GPU" 1 "device cuda" "$RUN" "$G" --device cuda
fi
expect "help" 0 "usage: smlp-run GRAPH" "$RUN" --help
expect "version" 0 "plugin ABI 1.3" "$RUN" --version
expect "no graph" 2 "no graph file given" "$RUN"
expect "unknown option" 2 "unknown option '--bogus'" "$RUN" "$G" --bogus
expect "batch 0" 2 "--batch: '0' is not an integer" "$RUN" "$G" --batch 0
expect "threads junk" 2 "--threads: '2x'" "$RUN" "$G" --threads 2x
expect "missing value" 2 "needs a value" "$RUN" "$G" --batch
expect "missing graph" 1 "$T/nope.fbs: cannot open graph" "$RUN" "$T/nope.fbs"
expect "directory graph" 1 "is a directory" "$RUN" "$T"
printf 'not a flatbuffer at all' >"$T/junk.fbs"
expect "junk graph" 1 "$T/junk.fbs" "$RUN" "$T/junk.fbs"
expect "max memory" 1 "over the memory limit" "$RUN" "$G" --max-memory 64K
expect "max memory in M" 1 "over the memory limit of 2097152 bytes" \
    "$RUN" "$G" --max-memory 2m
expect "max memory in G" 1 "over the memory limit of 1073741 bytes" \
    "$RUN" "$G" --max-memory 0.001G
expect "bad max memory" 2 "--max-memory: 'lots'" "$RUN" "$G" --max-memory lots
expect "missing weights" 1 "--weights $T/none.safetensors: cannot open" \
    "$RUN" "$G" --weights "$T/none.safetensors"
expect "outputs as weights" 1 "has no tensor 'stem.proj.weight'" \
    "$RUN" "$G" --weights "$T/out.safetensors"
# Input files (tools/tool_opts.c): an empty name is a usage error (2), a
# directory a file that cannot be used (1).
expect "empty weights name" 2 "--weights: empty file name" \
    "$RUN" "$G" --weights ""
expect "input is a directory" 1 "--input $T: is a directory, not a file" \
    "$RUN" "$G" --input "$T"
# A file we may not read (root may: checked as another user only).
if [ "$(id -u)" -ne 0 ]; then
    : >"$T/unreadable"
    chmod a-r "$T/unreadable"
    expect "unreadable weights" 1 \
        "--weights $T/unreadable: cannot open: Permission denied" \
        "$RUN" "$G" --weights "$T/unreadable"
fi
cat >"$T/np.json" <<'JSON'
{"name": "np", "plugins": ["nosuch"],
 "tensors": [{"name": "x", "kind": "Input", "shape": [-1, 2]},
             {"name": "y", "kind": "Output"}],
 "nodes": [{"name": "n", "op": "nosuch.op", "inputs": [0], "outputs": [1]}]}
JSON
"${FLATC:-flatc}" -b -o "$T" "${SMLP_TEST_SRCDIR:-.}/schemas/graph.fbs" \
    "$T/np.json"
expect "missing plugin" 1 "plugin 'nosuch' not found: no nosuch.so in /x/y:" \
    "$RUN" "$T/np.fbs" --plugin-path /x/y
# Output paths are checked before the run, so nothing is written when one
# of them cannot be.
expect "unwritable trace" 1 \
    "--trace /nonexistent/dir/t.json: cannot write: the directory" \
    "$RUN" "$G" --repeat 1 --output "$T/early.safetensors" \
    --trace /nonexistent/dir/t.json
if [ -e "$T/early.safetensors" ]; then bad "output written before a bad --trace"
else ok "nothing written when --trace cannot be"; fi
expect "empty output name" 2 "--output: empty file name" "$RUN" "$G" --output ""
# No output may name a file the run reads (it would be replaced after
# the run), nor another output's, also through another path: exit 2,
# nothing written, the inputs intact.
cp "$G" "$T/gcopy.fbs"
"$RUN" "$T/gcopy.fbs" --repeat 1 --output "$T/io.safetensors" >/dev/null
cp "$T/io.safetensors" "$T/io.bak"
expect "--output names --input's file" 2 \
    "--output $T/io.safetensors names the same file as --input $T/io.safetensors: the run would overwrite what it reads" \
    "$RUN" "$T/gcopy.fbs" --input "$T/io.safetensors" \
    --output "$T/io.safetensors"
expect "--json names --weights' file" 2 \
    "--json $T/io.safetensors names the same file as --weights $T/io.safetensors" \
    "$RUN" "$T/gcopy.fbs" --weights "$T/io.safetensors" \
    --json "$T/io.safetensors"
expect "--trace names the graph, by another path" 2 \
    "--trace $T/../$(basename "$T")/gcopy.fbs names the same file as the graph $T/gcopy.fbs" \
    "$RUN" "$T/gcopy.fbs" --trace "$T/../$(basename "$T")/gcopy.fbs"
expect "--json and --trace: one file" 2 \
    "--json $T/jt.json names the same file as --trace $T/./jt.json: each output needs its own" \
    "$RUN" "$T/gcopy.fbs" --json "$T/jt.json" --trace "$T/./jt.json"
if cmp -s "$T/io.safetensors" "$T/io.bak" && cmp -s "$T/gcopy.fbs" "$G" &&
   [ ! -e "$T/jt.json" ]
then ok "outputs naming inputs or each other: nothing written"
else bad "an input changed or an output was written"; fi
expect "json is a directory" 1 "--json $T: is a directory, not a file" \
    "$RUN" "$G" --json "$T"
expect "unknown short option" 2 "unknown option '-x'" "$RUN" "$G" -x
expect "flag with a value" 2 "option '--training' takes no value" \
    "$RUN" "$G" --training=1
expect "max memory under a byte" 2 "--max-memory: '0.5' is not a size" \
    "$RUN" "$G" --max-memory 0.5
# A number is the whole argument: a blank before it is refused as one
# after it is (strtoll alone skips leading blanks).
expect "--seed with a leading blank" 2 \
    "--seed: ' 5' is not an integer from 0 to" "$RUN" "$G" --seed ' 5'
expect "--seed with a trailing blank" 2 \
    "--seed: '5 ' is not an integer from 0 to" "$RUN" "$G" --seed '5 '
# A tensor named logits that is not an output: the report shows the output.
cat >"$T/lg.json" <<'JSON'
{"name": "lg", "plugins": ["core"],
 "tensors": [{"name": "x", "kind": "Input", "shape": [-1, 4]},
             {"name": "logits", "kind": "Activation"},
             {"name": "y", "kind": "Output"}],
 "nodes": [{"name": "a", "op": "core.gelu", "inputs": [0], "outputs": [1]},
           {"name": "b", "op": "core.gelu", "inputs": [1], "outputs": [2]}]}
JSON
"${FLATC:-flatc}" -b -o "$T" "${SMLP_TEST_SRCDIR:-.}/schemas/graph.fbs" \
    "$T/lg.json"
expect "logits not an output" 0 "output      y f32 [2,4]" \
    "$RUN" "$T/lg.fbs" --batch 2 --repeat 1
# Outputs that are not regular files: devices and FIFOs are written in
# place (never replaced by a rename), links are followed.
if [ -c /dev/full ]; then
    expect "--output /dev/full" 1 \
        "/dev/full: cannot write: No space left on device" \
        "$RUN" "$G" --repeat 1 --output /dev/full
fi
if "$RUN" "$G" --repeat 1 --json /dev/null >/dev/null 2>&1 &&
   [ -c /dev/null ] && { [ ! -e /dev/full ] || [ -c /dev/full ]; }
then ok "--json /dev/null; the devices stay devices"
else bad "--json /dev/null, or a device was replaced"; fi
echo '{}' >"$T/real.json"
chmod 640 "$T/real.json"
ln -s real.json "$T/link.json"
if "$RUN" "$G" --repeat 1 --json "$T/link.json" >/dev/null 2>&1 &&
   [ -L "$T/link.json" ] && grep -q '"graph' "$T/real.json" &&
   [ "$(stat -c %a "$T/real.json")" = 640 ]
then ok "--json through a link: the target written, its mode kept"
else bad "--json through a link"; fi
if mkfifo "$T/tr.fifo"; then
    cat "$T/tr.fifo" >"$T/tr.got" &
    timeout 60 "$RUN" "$G" --repeat 1 --trace "$T/tr.fifo" >/dev/null 2>&1
    wait
    if [ -p "$T/tr.fifo" ] && grep -q traceEvents "$T/tr.got"
    then ok "--trace into a FIFO"; else bad "--trace into a FIFO"; fi
fi
# Files in and out of a run, against values computed here.  lin.fbs is
# y = x w^T + b (x [-1,3], w [2,3], b [2]); lin.py writes --weights and
# --input files and checks an --output file: y computed by hand from them
# (small integers and halves: exact in f32), and the smlp.data_hash the
# writer put in its metadata recomputed by a Python version of
# runtime/safetensors_hash.c's definition (xxHash64's round, one lane;
# the tail word xor its length, the total length, then the avalanche).
cat >"$T/lin.json" <<'JSON'
{"name": "lin", "plugins": ["core"],
 "tensors": [{"name": "x", "kind": "Input", "shape": [-1, 3]},
             {"name": "w", "kind": "Parameter", "shape": [2, 3]},
             {"name": "b", "kind": "Parameter", "shape": [2]},
             {"name": "y", "kind": "Output"}],
 "nodes": [{"name": "fc", "op": "core.linear", "inputs": [0, 1, 2],
            "outputs": [3]}]}
JSON
"${FLATC:-flatc}" -b -o "$T" "${SMLP_TEST_SRCDIR:-.}/schemas/graph.fbs" \
    "$T/lin.json"
cat >"$T/lin.py" <<'PY'
import sys
import st
M = 2**64 - 1
P1, P2, P3 = 0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9
def mix(h, w):
    h ^= (w * P2) & M
    h = ((h << 31) | (h >> 33)) & M
    return (h * P1) & M
def data_hash(d):
    h, full = P3, len(d) - len(d) % 8
    for i in range(0, full, 8):
        h = mix(h, int.from_bytes(d[i:i + 8], "little"))
    if len(d) % 8:
        h = mix(h, int.from_bytes(d[full:], "little") ^ (len(d) % 8))
    h ^= len(d)
    h = ((h ^ (h >> 33)) * P2) & M
    h = ((h ^ (h >> 29)) * P3) & M
    return h ^ (h >> 32)
def write(path, tensors):  # tensors: name -> (shape, values)
    st.write(path, {k: ("F32", shape, vals)
                    for k, (shape, vals) in tensors.items()}, align=8)
def read(path):  # every tensor as F32: name -> (shape, values)
    f = st.read(path)
    t = {k: (f.shape(k), tuple(st.unpack("F32", f.raw(k)))) for k in f.names}
    return f.meta, f.data, t
x = [1, 2, 3, -1, 0.5, 4]
w = [0.5, -1, 2, 3, 0, -0.5]
b = [10, -2]
cmd, d = sys.argv[1:3]
if cmd == "write":
    write(d + "/w.st", {"w": ([2, 3], w), "b": ([2], b)})
    write(d + "/nan.st", {"w": ([2, 3], w[:4] + [float("nan")] + w[5:]),
                          "b": ([2], b)})
    write(d + "/x.st", {"x": ([2, 3], x)})
    write(d + "/tie.st", {"w": ([2, 3], [1] * 6), "b": ([2], [0, 0])})
elif cmd == "check":
    meta, data, t = read(d + "/y.st")
    want = [sum(x[3 * r + k] * w[3 * j + k] for k in range(3)) + b[j]
            for r in range(2) for j in range(2)]
    assert t == {"y": ([2, 2], tuple(want))}, (t, want)
    assert meta["smlp.data_hash"] == "%016x" % data_hash(data), meta
elif cmd == "hash":  # every tensor of a file, in the order of its data
    meta, data, t = read(d)
    assert len(t) > 1 and meta["smlp.data_hash"] == "%016x" % data_hash(
        data), (meta, "%016x" % data_hash(data))
PY
if [ -n "$PYTHON3" ] && [ "$PYTHON3" != no ]; then
    stpy "$T/lin.py" write "$T"
    if "$RUN" "$T/lin.fbs" --batch 2 --repeat 1 --weights "$T/w.st" \
            --input "$T/x.st" --output "$T/y.st" >"$T/rep.out" 2>&1 &&
       stpy "$T/lin.py" check "$T" >>"$T/rep.out" 2>&1
    then ok "--weights, --input, --output: y = x w^T + b, the data hash"
    else bad "--weights, --input, --output of lin.fbs"; show "$T/rep.out"; fi
    # mixer_fmnist's outputs (features and logits): the hash runs over
    # every tensor's data, not the first alone.
    if "$RUN" "$G" --batch 2 --repeat 1 --output "$T/mx.st" \
            >"$T/rep.out" 2>&1 &&
       stpy "$T/lin.py" hash "$T/mx.st" >>"$T/rep.out" 2>&1
    then ok "--output of two tensors: the data hash of both"
    else bad "--output of mixer_fmnist: data hash"; show "$T/rep.out"; fi
    # --check-finite refuses the NaN, naming the tensor and element; the
    # same weights load without it.
    expect "--check-finite on a NaN" 1 \
        "$T/nan.st: tensor 'w': element 4 is NaN" \
        "$RUN" "$T/lin.fbs" --repeat 1 --weights "$T/nan.st" --check-finite
    expect "a NaN without --check-finite" 0 "graph       lin" \
        "$RUN" "$T/lin.fbs" --repeat 1 --weights "$T/nan.st"
    # Tied logits (both rows of w the same): the lower class first, as a
    # stable sort by value puts them.
    expect "top-5 of tied logits" 0 "row 0 top-5:  0 (6)  1 (6)" \
        "$RUN" "$T/lin.fbs" --batch 2 --repeat 1 --weights "$T/tie.st" \
        --input "$T/x.st"
    # An --input of the wrong batch: the shapes in the message.
    expect "--input of another batch" 1 \
        "tensor 'x' has shape [2,3], the session expects [4,3]" \
        "$RUN" "$T/lin.fbs" --batch 4 --repeat 1 --input "$T/x.st"
    # --seed picks the synthetic batch: 0 is the default, 1 another one;
    # seeds take all 64 bits (2^63 - 1, 2^63 and 2^64 - 1 three more).
    for s in d 0 1 9223372036854775807 9223372036854775808 \
        18446744073709551615; do
        if [ $s = d ]; then set --; else set -- --seed $s; fi
        "$RUN" "$T/lin.fbs" --batch 2 --repeat 1 --weights "$T/w.st" \
            --output "$T/seed$s.st" "$@" >/dev/null 2>&1 ||
            bad "--seed $s: the run"
    done
    if cmp -s "$T/seedd.st" "$T/seed0.st" &&
       ! cmp -s "$T/seed0.st" "$T/seed1.st"
    then ok "--seed: 0 the default, 1 another synthetic batch"
    else bad "--seed"; fi
    # Five seeds, five different files (a seed cut to 63 bits would make
    # 2^63 the batch of 0, 2^64 - 1 that of 2^63 - 1).
    if [ "$(for f in 0 1 9223372036854775807 9223372036854775808 \
            18446744073709551615; do
            [ -s "$T/seed$f.st" ] && md5sum <"$T/seed$f.st"
            done | sort -u | wc -l)" -eq 5 ]
    then ok "--seed: 64-bit seeds, each its own synthetic batch"
    else bad "--seed: 64-bit seeds"; fi
fi
expect "--seed 2^64" 2 \
    "--seed: '18446744073709551616' is not an integer from 0 to 18446744073709551615" \
    "$RUN" "$T/lin.fbs" --seed 18446744073709551616
expect "--seed -1" 2 \
    "--seed: '-1' is not an integer from 0 to 18446744073709551615" \
    "$RUN" "$T/lin.fbs" --seed -1
expect "two graphs" 2 "more than one graph file given" \
    "$RUN" "$T/lin.fbs" "$T/lin.fbs"
# --batch goes up to 2^31 (which core.linear's BLAS call then refuses, at
# run time: exit 1), one more is a usage error (exit 2).
expect "--batch 2^31" 1 "size 2147483648 exceeds the BLAS limit" \
    "$RUN" "$T/lin.fbs" --batch 2147483648 --repeat 1
expect "--batch 2^31 + 1" 2 \
    "--batch: '2147483649' is not an integer from 1 to 2147483648" \
    "$RUN" "$T/lin.fbs" --batch 2147483649
# K is 1024 bytes, k too.
expect "max memory in k" 1 "over the memory limit of 1024 bytes" \
    "$RUN" "$T/lin.fbs" --batch 100 --max-memory 1k
# The report is the answer: lost to a full disk, the run fails.
if [ -w /dev/full ]; then
    expect "report >/dev/full" 1 "smlp-run: cannot write to standard output" \
        sh -c "'$RUN' '$G' --repeat 1 >/dev/full"
fi
# Outputs the writer could not make are refused before the run: a link
# loop, a link into a missing directory, a name whose temporary file
# (NAME.tmp.XXXXXX) would be too long.
ln -s loop2 "$T/loop1"
ln -s loop1 "$T/loop2"
expect "--json a link loop" 1 \
    "--json $T/loop1: Too many levels of symbolic links" \
    "$RUN" "$G" --repeat 1 --json "$T/loop1"
ln -s "$T/nodir/x.json" "$T/dangling.json"
expect "--trace a link into a missing directory" 1 \
    "--trace $T/dangling.json: cannot create $T/nodir/x.json: the directory" \
    "$RUN" "$G" --repeat 1 --trace "$T/dangling.json"
L=$(printf 'a%.0s' $(seq 250))
expect "--output a name too long for its temporary file" 1 \
    "--output $T/$L: the name is too long: its temporary file" \
    "$RUN" "$G" --repeat 1 --output "$T/$L"
# A dangling link and the file it names are one output.
ln -s new.json "$T/tonew.json"
expect "--json a dangling link to --trace" 2 \
    "--json $T/tonew.json names the same file as --trace $T/new.json" \
    "$RUN" "$G" --repeat 1 --json "$T/tonew.json" --trace "$T/new.json"
rm -rf "$T"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
