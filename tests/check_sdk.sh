#!/bin/sh
# The installed SDK and the out-of-tree plugin example, end to end:
#  1. `make install DESTDIR=$T/inst` from the build tree;
#  2. the tree has the headers (include/smlp/), libsmlp, the plugins, the
#     graphs and smlp.pc; `pkg-config --cflags --libs smlp` and
#     `--variable=plugindir` work (PKG_CONFIG_SYSROOT_DIR maps the DESTDIR);
#  3. a program builds and links against it;
#  4. examples/plugin-expert-choice builds with its three-line Makefile
#     from a copy of its directory, against that tree only;
#  5. the installed smlp-graph edits the installed sparse_mlp_fmnist to
#     route with expertchoice.gate, and the installed smlp-run runs it
#     with --plugin-path; every expert takes exactly its capacity;
#  6. each listing of docs/plugins.md marked `<!-- file: PATH -->` is
#     PATH byte for byte, and the guide quotes examples/plugin-minimal
#     whole (minimal.c, Makefile, leaky.json);
#  7. examples/plugin-minimal builds the same way, and its leaky.json,
#     compiled by flatc, passes the installed smlp-graph check and runs
#     in the installed smlp-run on a hand-written input with the
#     hand-computed output; a misspelt attribute and a bad value are
#     refused with the guide's messages;
#  8. a program against the SDK runs its backward (smlp_session_backward
#     on a small training graph, x a parameter) and gets the hand-derived
#     d x, which central differences of the loss confirm.
# Environment: SMLP_TEST_SRCDIR, SMLP_TEST_BUILDDIR, PYTHON3, FLATC, MAKE
# (see AM_TESTS_ENVIRONMENT).  Exit 77 (skip) without pkg-config or a C
# compiler.  Prints "N passed, M failed".
S=${SMLP_TEST_SRCDIR:-.}
B=${SMLP_TEST_BUILDDIR:-.}
MAKE=${MAKE:-make}
CC=${CC:-cc}
for tool in pkg-config "$CC" "$MAKE"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "SKIP: no $tool"
        exit 77
    fi
done
T=$(mktemp -d /tmp/smlp-sdk-test.XXXXXX) || exit 1
trap 'rm -rf "$T"' EXIT INT TERM
D="$T/inst"
. "${SMLP_TEST_SRCDIR:-.}/tests/shlib.sh"
finish() {
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit $?
}

# 1. Install.  The parent make's jobserver is not ours: drop its flags.
if (cd "$B" && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
        "$MAKE" install DESTDIR="$D") >"$T/install.log" 2>&1; then
    ok "make install DESTDIR="
else
    bad "make install DESTDIR="; tail -n 30 "$T/install.log"
    finish
fi

# 2. What the tree holds.
pc=$(find "$D" -name smlp.pc -path '*/pkgconfig/*' | head -n 1)
if [ -n "$pc" ]; then ok "smlp.pc installed"; else bad "no smlp.pc"; finish; fi
PKG_CONFIG_PATH=$(dirname "$pc")
PKG_CONFIG_SYSROOT_DIR=$D
export PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
cflags=$(pkg-config --cflags smlp) && libs=$(pkg-config --libs smlp) &&
    plugindir=$(pkg-config --variable=plugindir smlp) &&
    graphsdir=$(pkg-config --variable=graphsdir smlp)
incdir=${cflags#-I}
incdir=${incdir%% *}
libdir=$(echo "$libs" | sed -n 's/.*-L\([^ ]*\).*/\1/p')
case $incdir in
"$D"/*/include/smlp) ok "pkg-config --cflags: $cflags" ;;
*) bad "pkg-config --cflags: '$cflags'" ;;
esac
case $libs in
*-lsmlp*) ok "pkg-config --libs: $libs" ;;
*) bad "pkg-config --libs: '$libs'" ;;
esac
for h in smlp.h smlp_plugin.h smlp_kernel.h; do
    if [ -f "$incdir/$h" ]; then ok "header $h"; else bad "no $incdir/$h"; fi
done
if ls "$libdir"/libsmlp.so* >/dev/null 2>&1; then ok "libsmlp installed"
else bad "no libsmlp in '$libdir'"; fi
for p in core norm moe moco; do
    if [ -f "$plugindir/$p.so" ]; then ok "plugin $p.so in the plugindir"
    else bad "no $p.so in plugindir '$plugindir'"; fi
done
if [ -f "$graphsdir/sparse_mlp_fmnist.fbs" ]; then ok "graphs installed"
else bad "no graphs in graphsdir '$graphsdir'"; fi
bindir=$(dirname "$(find "$D" -name smlp-run -type f | head -n 1)")
if [ -x "$bindir/smlp-run" ] && [ -x "$bindir/smlp-graph" ]; then
    ok "smlp-run and smlp-graph installed"
else
    bad "tools missing in '$bindir'"; finish
fi

# 3. A program against the SDK.
cat >"$T/prog.c" <<'EOF'
#include <stdio.h>
#include <smlp.h>
int main(void)
{
    printf("smlp %s, ABI %d\n", smlp_version_string(), SMLP_ABI_MAJOR);
    return smlp_version() == SMLP_VERSION_HEX ? 0 : 1;
}
EOF
# A sanitized build (configure --enable-sanitizers) installs a libsmlp
# that needs the sanitizer runtimes first in the program.
san=
if ldd "$(ls "$libdir"/libsmlp.so* | head -n 1)" 2>/dev/null | grep -q libasan
then
    san="-fsanitize=address,undefined"
fi
# shellcheck disable=SC2086
if "$CC" $san $cflags -o "$T/prog" "$T/prog.c" $libs >"$T/cc.log" 2>&1 &&
   LD_LIBRARY_PATH="$libdir" "$T/prog" >"$T/prog.out" 2>&1; then
    ok "a program builds and runs: $(cat "$T/prog.out")"
    # The package's version (configure.ac) and the header's agree.
    if [ "smlp $(pkg-config --modversion smlp), ABI $(sed -n \
            's/^#define SMLP_ABI_MAJOR \([0-9]*\).*/\1/p' "$incdir/smlp_plugin.h")" \
            = "$(cat "$T/prog.out")" ]
    then ok "smlp.pc and smlp.h give the same version"
    else bad "smlp.pc says $(pkg-config --modversion smlp), the library $(cat "$T/prog.out")"
    fi
else
    bad "a program against the SDK"; show "$T/cc.log"; show "$T/prog.out"
fi

# 4. The example plugin, from a copy of its directory (the source tree
# may be read-only, as in make distcheck).
mkdir -p "$T/ex"
cp "$S"/examples/plugin-expert-choice/Makefile \
   "$S"/examples/plugin-expert-choice/expertchoice.c "$T/ex/"
if env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL "$MAKE" -C "$T/ex" \
        >"$T/ex.log" 2>&1 && [ -f "$T/ex/expertchoice.so" ]; then
    ok "examples/plugin-expert-choice builds against the installed SDK"
else
    bad "the example plugin does not build"; show "$T/ex.log"; finish
fi
if grep -q -- "-I$incdir" "$T/ex.log" || grep -q 'pkg-config' "$T/ex.log"
then ok "it takes its flags from pkg-config"
else bad "the example's compile line"; show "$T/ex.log"; fi

# 5. Edit a graph to use it, and run it, with the installed tools.
run() { LD_LIBRARY_PATH="$libdir" "$@"; }
G="$graphsdir/sparse_mlp_fmnist.fbs"
if run "$bindir/smlp-graph" edit "$G" -o "$T/ec.fbs" \
        --plugin-path "$T/ex:$plugindir" \
        --set-op 'moe.gate.importance=expertchoice.gate' \
        --del-attr '*.gate:k,noise_std,aux,aux_weight' \
        --name sparse_mlp_fmnist_ec >"$T/edit.log" 2>&1; then
    ok "smlp-graph edit: sparse_mlp_fmnist routed by expertchoice.gate"
else
    bad "smlp-graph edit to expertchoice.gate"; show "$T/edit.log"; finish
fi
if run "$bindir/smlp-graph" check "$T/ec.fbs" --batch 2 \
        --plugin-path "$T/ex:$plugindir" >"$T/check.log" 2>&1 &&
   grep -q '^  blocks.5.moe_c.gate.expert  *activation i32 \[98,4\]$' \
        "$T/check.log" &&
   grep -q '^  blocks.5.moe_c.gate.slot_item  *activation i32 \[4,26\]$' \
        "$T/check.log" && ! grep -q warning "$T/check.log"; then
    ok "check: k = E choices per item, cap = ceil(49/4) rows per image"
else
    bad "check of the expert-choice graph"; show "$T/check.log"
fi
if run "$bindir/smlp-run" "$T/ec.fbs" --plugin-path "$T/ex:$plugindir" \
        --batch 2 --repeat 1 --output "$T/out.safetensors" \
        >"$T/run.log" 2>&1 && grep -q 'expertchoice.gate' "$T/run.log"; then
    ok "smlp-run --plugin-path runs the graph"
else
    bad "smlp-run of the expert-choice graph"; show "$T/run.log"
fi
if run "$bindir/smlp-run" "$T/ec.fbs" --plugin-path "$plugindir" \
        >"$T/noplug.log" 2>&1; then
    bad "ran without the plugin"
elif grep -q "plugin 'expertchoice' not found" "$T/noplug.log"; then
    ok "without --plugin-path: plugin 'expertchoice' not found"
else
    bad "error without the plugin"; show "$T/noplug.log"
fi
# Every expert took exactly cap rows per image: load[e] = {cap*B, .}.
if [ -n "$PYTHON3" ] && [ "$PYTHON3" != no ] && [ -s "$T/out.safetensors" ]
then
    if stpy - "$T/out.safetensors" >"$T/py.log" 2>&1 <<'EOF'
import st, sys
f = st.read(sys.argv[1])
want = {"moe_s": 16 * 2, "moe_c": 13 * 2}   # cap = ceil(G/E) per image
seen = 0
for name in f.names:
    if not name.endswith(".gate.load"):
        continue
    v = f.values(name)
    kept = v[0::2]
    layer = name.split(".")[2]
    assert all(k == want[layer] for k in kept), (name, v)
    seen += 1
assert seen == 4, seen
print("ok")
EOF
    then ok "each expert took exactly its capacity (load outputs)"
    else bad "load outputs of the expert-choice gates"; show "$T/py.log"; fi
else
    echo "skip - load check (no python3)"
fi

# 6. The guide's listings are the files they name.  A marker line
# `<!-- file: PATH -->` before a fence: the fenced lines must be PATH.
mkdir -p "$T/doc"
awk -v dir="$T/doc" '
    want == 2 && /^```$/ { want = 0; close(out); print n, path[n]; next }
    want == 2 { print > out; next }
    want == 1 && /^```/ { want = 2; out = dir "/" n; printf "" > out; next }
    /^<!-- file: [^ ]* -->$/ { n++; path[n] = $3; want = 1; next }
    { want = 0 }
' "$S/docs/plugins.md" >"$T/doc/list"
while read -r n path; do
    if cmp -s "$T/doc/$n" "$S/$path"; then
        ok "docs/plugins.md quotes $path as it is"
    else
        bad "docs/plugins.md's listing of $path is not the file"
        diff "$S/$path" "$T/doc/$n" >"$T/doc/diff" 2>&1
        show "$T/doc/diff"
    fi
done <"$T/doc/list"
for f in minimal.c Makefile leaky.json; do
    grep -q " examples/plugin-minimal/$f\$" "$T/doc/list" ||
        bad "docs/plugins.md has no marked listing of examples/plugin-minimal/$f"
done

# 7. The minimal plugin, built like the example, in a graph of its own.
mkdir -p "$T/min"
cp "$S"/examples/plugin-minimal/Makefile \
   "$S"/examples/plugin-minimal/minimal.c \
   "$S"/examples/plugin-minimal/leaky.json "$T/min/"
if env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL "$MAKE" -C "$T/min" \
        >"$T/min.log" 2>&1 && [ -f "$T/min/minimal.so" ]; then
    ok "examples/plugin-minimal builds against the installed SDK"
else
    bad "the minimal plugin does not build"; show "$T/min.log"; finish
fi
if grep -q 'warning' "$T/min.log"; then
    bad "the minimal plugin builds with warnings"; show "$T/min.log"
fi
case ${FLATC:-} in
''|no) FLATC=$(command -v flatc) ;;
esac
if [ -z "$FLATC" ]; then
    echo "skip - the minimal plugin's graph (no flatc)"
    finish
fi
if (cd "$T/min" && "$FLATC" -b "$S/schemas/graph.fbs" leaky.json) \
        >"$T/flatc.log" 2>&1 && [ -f "$T/min/leaky.fbs" ]; then
    ok "flatc -b schemas/graph.fbs leaky.json writes leaky.fbs"
else
    bad "flatc of leaky.json"; show "$T/flatc.log"; finish
fi
expect "smlp-graph check of leaky.fbs" 0 \
    "ok: 1 nodes resolved and shapes inferred for batch 1" \
    run "$bindir/smlp-graph" check "$T/min/leaky.fbs" --plugin-path "$T/min"
if grep -q '^  y  *output  *f32 \[1,4\]$' "$T/out"; then
    ok "check: y is f32 [1,4]"
else
    bad "check does not print y f32 [1,4]"; show "$T/out"
fi
# x = [[-2, -0.5, 1, 3], [0, -10, 0.25, -1]] as a safetensors file: an
# 8-byte little-endian header length, the JSON header padded with spaces
# to 8 bytes, then the f32 values (little-endian, as the build signature
# says).
hdr='{"x":{"dtype":"F32","shape":[2,4],"data_offsets":[0,32]}}'
while [ $((${#hdr} % 8)) -ne 0 ]; do hdr="$hdr "; done
{
    printf "\\$(printf %o ${#hdr})\\000\\000\\000\\000\\000\\000\\000"
    printf '%s' "$hdr"
    printf '\000\000\000\300\000\000\000\277\000\000\200\077\000\000\100\100'
    printf '\000\000\000\000\000\000\040\301\000\000\200\076\000\000\200\277'
} >"$T/min/x.safetensors"
expect "smlp-run leaky.fbs --input x.safetensors" 0 "minimal.leaky_relu" \
    run "$bindir/smlp-run" "$T/min/leaky.fbs" --plugin-path "$T/min" \
    --batch 2 --repeat 1 --input "$T/min/x.safetensors" \
    --output "$T/min/y.safetensors"
# y = x where x > 0, else 0.1 x: read y's 8 floats at its data offset.
y=$(if [ -s "$T/min/y.safetensors" ]; then
    n=$(od -A n -t u4 -N 4 "$T/min/y.safetensors" | tr -d ' ')
    # (the JSON alone: the length's bytes are no text for sed's '.')
    at=$(head -c $((8 + n)) "$T/min/y.safetensors" | tail -c +9 |
         sed -n 's/.*"y":{[^}]*"data_offsets":\[\([0-9]*\),.*/\1/p')
    od -A n -t f4 -j $((8 + n + at)) -N 32 "$T/min/y.safetensors"
fi | tr -s ' \n' '  ')
if echo "$y" | awk '{
        split("-0.2 -0.05 1 3 0 -1 0.25 -0.1", w, " ")
        if (NF != 8) exit 1
        for (i = 1; i <= 8; i++) {
            d = $i - w[i]; if (d < 0) d = -d
            if (d > 1e-6) exit 1
        }
    }'; then
    ok "y = [-0.2 -0.05 1 3; 0 -1 0.25 -0.1], as computed by hand"
else
    bad "y of leaky.fbs is '$y', want -0.2 -0.05 1 3 0 -1 0.25 -0.1"
fi
expect "without --plugin-path: plugin 'minimal' not found" 1 \
    "plugin 'minimal' not found" run "$bindir/smlp-run" "$T/min/leaky.fbs"
# The guide's two refusals: a misspelt attribute, a slope out of range.
sed 's/"slope"/"slop"/' "$T/min/leaky.json" >"$T/min/slop.json"
sed 's/"f": 0.1/"f": 2.5/' "$T/min/leaky.json" >"$T/min/steep.json"
(cd "$T/min" && "$FLATC" -b "$S/schemas/graph.fbs" slop.json steep.json) \
    >"$T/flatc.log" 2>&1 || show "$T/flatc.log"
expect "check refuses an attribute the op does not declare" 1 \
    "node 0 'act' (minimal.leaky_relu): attribute 'slop' is not one that the op declares (it declares slope)" \
    run "$bindir/smlp-graph" check "$T/min/slop.fbs" --plugin-path "$T/min"
expect "smlp-run refuses it too" 1 \
    "attribute 'slop' is not one that the op declares" \
    run "$bindir/smlp-run" "$T/min/slop.fbs" --plugin-path "$T/min"
expect "check prints infer's message for slope 2.5" 1 \
    "node 0 'act' (minimal.leaky_relu): attribute 'slope' is 2.5, expected 0 to 1" \
    run "$bindir/smlp-graph" check "$T/min/steep.fbs" --plugin-path "$T/min"
# 8. The minimal plugin's backward, through the public training API.  x
# is a parameter here (graph inputs get no gradient): loss = mean over
# rows of w . y, y = leaky_relu(x) with leaky.json's node (slope 0.1),
# w = [2, -1, 0.5, 4] frozen, so d loss / d y[n][j] = w[j] / 2 =
# [1, -0.5, 0.25, 2] in every row, and d loss / d x = that where x > 0,
# else 0.1 times it.  At x = 0 the op takes the x <= 0 side (slope * dy,
# PyTorch's convention): x[1][0] = 0 must get 0.1, not 1.  The program
# prints the loss, then per element x, the backward's d x and a central
# difference of the loss (step 1/8, exact in binary, less than every
# nonzero |x|, so it does not straddle the kink).
cat >"$T/min/grad.json" <<'EOF'
{
  "name": "leaky_grad",
  "plugins": ["minimal", "core"],
  "tensors": [
    {"name": "x", "kind": "Parameter", "shape": [2, 4]},
    {"name": "w", "kind": "Parameter", "shape": [1, 4]},
    {"name": "y"},
    {"name": "z"},
    {"name": "r"},
    {"name": "loss", "kind": "Output"}
  ],
  "nodes": [
    {"name": "act", "op": "minimal.leaky_relu", "inputs": [0],
     "outputs": [2], "attrs": [{"name": "slope", "type": "Float", "f": 0.1}]},
    {"name": "dot", "op": "core.linear", "inputs": [2, 1], "outputs": [3]},
    {"name": "row", "op": "core.mean", "inputs": [3], "outputs": [4],
     "attrs": [{"name": "axis", "type": "Int", "i": 1}]},
    {"name": "all", "op": "core.mean", "inputs": [4], "outputs": [5],
     "attrs": [{"name": "axis", "type": "Int", "i": 0}]}
  ]
}
EOF
cat >"$T/min/grad.c" <<'EOF'
/* grad GRAPH PLUGIN_PATH: runs the graph's forward and backward, prints
 * the loss, then "x dx fd" for each element of parameter x. */
#include <stdio.h>
#include <string.h>
#include <smlp.h>

static const float x0[8] = {-2, -0.5f, 1, 3, 0, -10, 0.25f, -1};
static const float w0[4] = {2, -1, 0.5f, 4};

/* Sets x[i] to v, runs the forward and returns the loss in *loss. */
static int
loss_at(smlp_session_t *s, float *x, int i, float v, const float *l,
        double *loss)
{
    int rc;

    x[i] = v;
    rc = smlp_session_run(s);
    x[i] = x0[i];
    *loss = *l;
    return rc;
}

int
main(int argc, char **argv)
{
    static const char *const frozen[] = {"w", NULL};
    struct smlp_session_opts o;
    struct smlp_error err;
    struct smlp_tensor x, w, l, g;
    smlp_registry_t *reg;
    smlp_graph_t *graph = NULL;
    smlp_session_t *s = NULL;
    float dx[8];
    double h = 0.125, lp, lm;
    int i, rc = 1;

    if (argc != 3)
        return 2;
    smlp_session_opts_init(&o);
    o.threads = 1;
    o.training = 1;
    o.loss = "loss";
    o.frozen = frozen;
    if ((reg = smlp_registry_create(argv[2], &err)) == NULL ||
        (graph = smlp_graph_load(argv[1], &err)) == NULL ||
        (s = smlp_session_create(graph, reg, &o, &err)) == NULL) {
        fprintf(stderr, "%s\n", err.msg);
        goto out;
    }
    if (smlp_session_tensor(s, "x", &x) != SMLP_OK ||
        smlp_session_tensor(s, "w", &w) != SMLP_OK ||
        smlp_session_tensor(s, "loss", &l) != SMLP_OK)
        goto out_msg;
    memcpy(x.data, x0, sizeof(x0));
    memcpy(w.data, w0, sizeof(w0));
    if (smlp_session_run(s) != SMLP_OK ||
        smlp_session_backward(s) != SMLP_OK ||
        smlp_session_grad(s, "x", &g) != SMLP_OK)
        goto out_msg;
    memcpy(dx, g.data, sizeof(dx));
    printf("loss %.9g\n", *(float *)l.data);
    for (i = 0; i < 8; i++) {
        if (loss_at(s, x.data, i, (float)(x0[i] + h), l.data, &lp) ||
            loss_at(s, x.data, i, (float)(x0[i] - h), l.data, &lm))
            goto out_msg;
        printf("%g %.9g %.9g\n", x0[i], dx[i], (lp - lm) / (2 * h));
    }
    rc = 0;
    goto out;
out_msg:
    fprintf(stderr, "%s\n", smlp_session_errmsg(s));
out:
    smlp_session_destroy(s);
    smlp_graph_unload(graph);
    smlp_registry_destroy(reg);
    return rc;
}
EOF
# shellcheck disable=SC2086
if (cd "$T/min" && "$FLATC" -b "$S/schemas/graph.fbs" grad.json) \
        >"$T/flatc.log" 2>&1 &&
   "$CC" $san $cflags -o "$T/min/grad" "$T/min/grad.c" $libs \
        >"$T/cc.log" 2>&1; then
    ok "a program builds a training session of grad.json"
else
    bad "flatc of grad.json or the gradient program"
    show "$T/flatc.log"; show "$T/cc.log"; finish
fi
if run "$T/min/grad" "$T/min/grad.fbs" "$T/min:$plugindir" \
        >"$T/min/grad.out" 2>&1; then
    ok "smlp_session_backward runs minimal.leaky_relu's backward"
else
    bad "forward and backward of grad.fbs"; show "$T/min/grad.out"; finish
fi
if awk 'NR == 1 { if ($1 != "loss" || $2 - 6.4375 > 1e-6 ||
                      6.4375 - $2 > 1e-6) exit 1; next }
        { split("0.1 -0.05 0.25 2 0.1 -0.05 0.25 0.2", w, " ")
          d = $2 - w[NR - 1]; if (d < 0) d = -d
          if (NF != 3 || d > 1e-6) exit 1 }
        END { if (NR != 9) exit 1 }' "$T/min/grad.out"; then
    ok "d x = [0.1 -0.05 0.25 2; 0.1 -0.05 0.25 0.2], as computed by hand"
else
    bad "grad.fbs: want loss 6.4375, d x = 0.1 -0.05 0.25 2 0.1 -0.05 0.25 0.2"
    show "$T/min/grad.out"
fi
# The central differences, away from the kink (float loss: within 1e-4).
if awk 'NR > 1 && $1 != 0 { d = $2 - $3; if (d < 0) d = -d
                            if (d > 1e-4) exit 1; n++ }
        END { if (n != 7) exit 1 }' "$T/min/grad.out"; then
    ok "d x = central differences of the loss at the 7 nonzero x"
else
    bad "d x of grad.fbs is not the central differences"
    show "$T/min/grad.out"
fi
finish
