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
expect "bad max memory" 2 "--max-memory: 'lots'" "$RUN" "$G" --max-memory lots
expect "missing weights" 1 "--weights $T/none.safetensors: cannot open" \
    "$RUN" "$G" --weights "$T/none.safetensors"
expect "outputs as weights" 1 "has no tensor 'stem.proj.weight'" \
    "$RUN" "$G" --weights "$T/out.safetensors"
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
expect "json is a directory" 1 "--json $T: is a directory, not a file" \
    "$RUN" "$G" --json "$T"
expect "unknown short option" 2 "unknown option '-x'" "$RUN" "$G" -x
expect "flag with a value" 2 "option '--training' takes no value" \
    "$RUN" "$G" --training=1
expect "max memory under a byte" 2 "--max-memory: '0.5' is not a size" \
    "$RUN" "$G" --max-memory 0.5
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
rm -rf "$T"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
