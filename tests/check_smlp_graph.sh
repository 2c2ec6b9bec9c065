#!/bin/sh
# End-to-end checks of tools/smlp-graph:
#  (a) every subcommand on every shipped graph: dump gives the committed
#      JSON source and survives flatc -b exactly; check, stats, dot and
#      diff (with itself) succeed;
#  (b) the ablation graphs are rebuilt from sparse_mlp_b by `edit` (their
#      dumps equal the shipped ones; docs/graphs.md has the same recipes);
#  (c) diff's exit status; (d) edit's pruning, prefix renames, in-place
#      and dry runs, block clones and sums, atomic writes; (e) errors:
#      message and exit status; (f) edits read back by flatc;
#  (g) dot against the graph as flatc reads it (dotcheck: every node,
#      edge, cluster and label; also in (a)), --shapes, drawing through
#      Graphviz; (h) dump against Python's repr and json.dumps and against
#      flatc's reading; (i) tools/tool_opts.c's messages.
# Environment: SMLP_TEST_SRCDIR, SMLP_TEST_BUILDDIR, FLATC (see
# AM_TESTS_ENVIRONMENT).  Prints "N passed, M failed".
S=${SMLP_TEST_SRCDIR:-.}
B=${SMLP_TEST_BUILDDIR:-.}
FLATC=${FLATC:-flatc}
SG="$B/tools/smlp-graph"
SCHEMA="$S/schemas/graph.fbs"
T=$(mktemp -d /tmp/smlp-graph-test.XXXXXX) || exit 1
trap 'rm -rf "$T"' EXIT INT TERM
. "${SMLP_TEST_SRCDIR:-.}/tests/shlib.sh"

# The model value of metadata key `model` of a shipped ablation graph.
model_of() {
    sed -n 's/.*{"key": "model", "value": "\(.*\)"}.*/\1/p' \
        "$S/graphs/sparse_mlp_b_$1.json"
}

# dotcheck GRAPH.fbs FILE.dot [SHAPES]: prints "ok", or what differs
# between the DOT text and what graph_dot.c's header promises, worked out
# here from flatc's reading of GRAPH (schemas/graph.fbs): an ellipse per
# graph input and output (name, declared shape); a box per node ("name
# less its block or MoE prefix \n op"; fill white, or orange for a gate
# and light orange for the rest of its MoE layer) inside the clusters of
# its block (blocks.N for blocks.N.*, else the part before the first dot)
# and MoE layer ("MoE PREFIX: OP, E=.., k=.."); an edge from the writer
# of each tensor a node reads (or from the graph input) and from a node
# to each graph output it writes, no edge for parameters.  SHAPES, the
# output of `check --batch N`, gives each input edge's label.
dotcheck() {
    rm -rf "$T/dc" && mkdir -p "$T/dc" &&
    "$FLATC" --json --strict-json --raw-binary -o "$T/dc" "$SCHEMA" -- \
        "$1" >/dev/null 2>&1 || { echo "flatc failed on $1"; return 1; }
    "${PYTHON3:-python3}" - "$T/dc/$(basename "$1" .fbs).json" "$2" \
        ${3:+"$3"} <<'PY'
import collections, json, re, sys
g = json.load(open(sys.argv[1]))
dot = open(sys.argv[2]).read().splitlines()
shapes = {}
if len(sys.argv) > 3:
    for line in open(sys.argv[3]):
        f = line.split()
        if len(f) == 4 and f[3].startswith("["):
            shapes[f[0]] = f[3]
tensors, nodes = g.get("tensors", []), g.get("nodes", [])
kind = [t.get("kind", "Activation") for t in tensors]
def shape_str(s): return "[" + ",".join(str(d) for d in s) + "]"
# What graph_dot.c's header promises, computed from flatc's reading.
def block(name):  # blocks.N.* -> blocks.N; a.* -> a; no dot: None
    m = re.match(r"([^.]*\.[0-9]+)\.", name) or re.match(r"([^.]*)\.", name)
    return m.group(1) if m else None
def is_gate(op):
    tail = op.split(".", 1)[1] if "." in op else ""
    return tail == "gate" or tail.startswith("gate.")
prefix = {}
for j, n in enumerate(nodes):
    if is_gate(n["op"]):
        nm = n["name"]
        p = nm[:-4] if len(nm) > 5 and nm.endswith(".gate") else nm
        prefix[j] = p if p.endswith(".") else p + "."
def layer(i):
    return next((j for j in prefix if j == i or
                 nodes[i]["name"].startswith(prefix[j])), None)
def moe_label(j):
    n, e, k = nodes[j], None, 1
    ins = n.get("inputs", [])
    if len(ins) > 1 and ins[1] >= 0 and len(tensors[ins[1]].get("shape",
                                                            [0])) == 2:
        e = tensors[ins[1]]["shape"][0]
    for a in n.get("attrs", []):
        if a.get("type", "Int") == "Int" and a["name"] == "experts":
            e = a.get("i", 0)
        if a.get("type", "Int") == "Int" and a["name"] == "k":
            k = a.get("i", 0)
    return "MoE %s: %s%s, k=%d" % (prefix[j][:-1], n["op"],
                                   ", E=%d" % e if e and e > 0 else "", k)
want_nodes, want_edges, want_ell = {}, collections.Counter(), {}
for i, t in enumerate(tensors):
    if kind[i] in ("Input", "Output"):
        lab = t["name"] + ("\n" + shape_str(t["shape"]) if "shape" in t
                           else "")
        fill = "#cfe2f3" if kind[i] == "Input" else "#d9ead3"
        want_ell["t%d" % i] = (lab, fill)
writer = {o: i for i, n in enumerate(nodes) for o in n.get("outputs", [])}
for i, n in enumerate(nodes):
    lay, blk = layer(i), block(n["name"])
    strip = prefix[lay] if lay is not None else \
        blk + "." if blk is not None else None
    lab = n["name"]
    if strip and lab.startswith(strip) and len(lab) > len(strip):
        lab = lab[len(strip):]
    fill = "#ffffff" if lay is None else \
        "#f5a65b" if lay == i else "#fcd9b6"
    clusters = ([blk] if blk is not None else []) + \
        ([moe_label(lay)] if lay is not None else [])
    want_nodes["n%d" % i] = (lab + "\n" + n["op"], fill, clusters)
    for t in n.get("inputs", []):
        src = "t%d" % t if t >= 0 and kind[t] == "Input" else \
            "n%d" % writer[t] if t >= 0 and t in writer else None
        if src:
            lab = shapes.get(tensors[t]["name"]) if shapes else None
            want_edges[(src, "n%d" % i, lab)] += 1
    for o in n.get("outputs", []):
        if kind[o] == "Output":
            want_edges[("n%d" % i, "t%d" % o, None)] += 1
# Read the DOT text: one statement a line, clusters nested by braces.
S = r'"((?:[^"\\]|\\.)*)"'
def unq(s): return re.sub(r'\\(.)', lambda m: "\n" if m.group(1) == "n"
                          else m.group(1), s)
got_nodes, got_edges, got_ell = {}, collections.Counter(), {}
stack, errs = [], []
for line in dot[4:-1]:
    if re.fullmatch(r"\s*subgraph cluster_\w+ \{", line):
        stack.append(None)
    elif m := re.fullmatch(r"\s*label=" + S + r"; style=.*", line):
        stack[-1] = unq(m.group(1))
    elif re.fullmatch(r"\s*\}", line):
        stack.pop()
    elif m := re.fullmatch(r"\s*(n\d+) \[label=" + S + r", fillcolor=" + S
                           + r"\];", line):
        got_nodes[m.group(1)] = (unq(m.group(2)), m.group(3), list(stack))
    elif m := re.fullmatch(r"\s*(t\d+) \[shape=ellipse, fillcolor=" + S +
                           r", label=" + S + r"\];", line):
        got_ell[m.group(1)] = (unq(m.group(3)), m.group(2))
    elif m := re.fullmatch(r"\s*([nt]\d+) -> ([nt]\d+)(?: \[label=" + S +
                           r"\])?;", line):
        got_edges[m.groups()] += 1
    else:
        errs.append("unparsed line: " + line)
name = g["name"].replace('\\', '\\\\').replace('"', '\\"')
if dot[:1] != ['digraph "%s" {' % name] or dot[-1:] != ["}"] or stack:
    errs.append("header, final brace or cluster nesting")
if 'label="%s (%d nodes)"' % (name, len(nodes)) not in dot[1]:
    errs.append("graph label: " + dot[1])
for what, w, h in (("node", want_nodes, got_nodes),
                   ("ellipse", want_ell, got_ell),
                   ("edge", want_edges, got_edges)):
    for k in sorted(set(w) | set(h), key=str):
        if w.get(k) != h.get(k):
            errs.append("%s %s: want %r, got %r" % (what, k, w.get(k),
                                                     h.get(k)))
print("\n".join(errs[:5]) if errs else "ok")
PY
}

# (a) every subcommand on every shipped graph.
for json in "$S"/graphs/*.json; do
    n=$(basename "$json" .json)
    g="$B/graphs/$n.fbs"
    if [ ! -s "$g" ]; then
        bad "$n: $g not built"
        continue
    fi
    if "$SG" dump "$g" >"$T/$n.json" 2>"$T/err" &&
       cmp -s "$T/$n.json" "$json"; then
        ok "$n: dump gives graphs/$n.json"
    else
        bad "$n: dump differs from graphs/$n.json"; show "$T/err"
        diff "$T/$n.json" "$json" | head -n 5
    fi
    mkdir -p "$T/rt"
    if "$FLATC" -b -o "$T/rt" "$SCHEMA" "$T/$n.json" >"$T/err" 2>&1 &&
       "$SG" dump "$T/rt/$n.fbs" >"$T/$n.rt.json" 2>>"$T/err" &&
       cmp -s "$T/$n.json" "$T/$n.rt.json"; then
        ok "$n: dump -> flatc -b -> dump is exact"
    else
        bad "$n: dump/flatc round trip"; show "$T/err"
    fi
    expect "$n: check" 0 "ok: " "$SG" check "$g"
    expect "$n: stats" 0 "graph $n: " "$SG" stats "$g"
    expect "$n: dot" 0 "" "$SG" dot "$g" -o "$T/$n.dot"
    got=$(dotcheck "$g" "$T/$n.dot")
    if [ "$got" = ok ]; then ok "$n: dotcheck: every node, edge, cluster"
    else bad "$n: dotcheck: $got"; fi
    if grep -q '^digraph' "$T/$n.dot" && grep -q 'cluster_' "$T/$n.dot"; then
        ok "$n: dot has clusters"
    else
        bad "$n: dot output"
    fi
    case $n in
    sparse_*)
        if grep -q 'label="MoE blocks' "$T/$n.dot"; then
            ok "$n: dot highlights MoE layers"
        else
            bad "$n: no MoE cluster in the dot output"
        fi ;;
    esac
    expect "$n: diff with itself" 0 "compute the same thing" \
        "$SG" diff "$g" "$T/rt/$n.fbs"
done

# check prints shapes; stats totals agree with gen_graphs.py --stats.
G="$B/graphs/sparse_mlp_fmnist.fbs"
GB="$B/graphs/sparse_mlp_b.fbs"
expect "check shapes" 0 "blocks.5.moe_c.gate.slot_item" "$SG" check "$G"
if "$SG" check "$G" --batch 3 | grep -q '^  logits  *output  *f32 \[3,10\]$'
then ok "check --batch 3 infers logits [3,10]"
else bad "check --batch 3: logits shape"; fi
expect "stats totals" 0 "total                       151      132030632      15154722816" \
    "$SG" stats "$GB" -q
expect "stats per block" 0 "blocks.10" "$SG" stats "$GB" -q
expect "stats per node" 0 "blocks.11.moe_c.experts" "$SG" stats "$GB"

# dot through Graphviz, when installed (Debian package graphviz).
if command -v dot >/dev/null 2>&1; then
    expect "dot -o .svg" 0 "" "$SG" dot "$G" -o "$T/g.svg" --shapes
    if grep -q '<svg' "$T/g.svg" 2>/dev/null; then ok "svg written"
    else bad "svg missing"; fi
    expect "dot -o .png" 0 "" "$SG" dot "$G" -o "$T/g.png"
    if [ -s "$T/g.png" ]; then ok "png written"; else bad "png missing"; fi
else
    echo "skip - dot -o .svg/.png: Graphviz's 'dot' is not installed"
    expect "dot -o .svg without Graphviz" 1 "apt-get install -y graphviz" \
        "$SG" dot "$G" -o "$T/g.svg"
fi

# (b) the ablations of sparse_mlp_b, rebuilt by edit.
ablation() {
    a=$1
    shift
    expect "edit reproduces sparse_mlp_b_$a" 0 "wrote $T/$a.fbs" \
        "$SG" edit "$GB" -o "$T/$a.fbs" --name "sparse_mlp_b_$a" \
        --set-meta "model=$(model_of "$a")" "$@"
    if "$SG" dump "$T/$a.fbs" 2>"$T/err" |
       cmp -s - "$S/graphs/sparse_mlp_b_$a.json"; then
        ok "sparse_mlp_b_$a: the edit's dump equals the shipped graph's"
    else
        bad "sparse_mlp_b_$a: the edit differs from the shipped graph"
        "$SG" diff "$T/$a.fbs" "$B/graphs/sparse_mlp_b_$a.fbs" | head -n 20
    fi
    expect "sparse_mlp_b_$a: diff with the shipped graph" 0 \
        "compute the same thing" \
        "$SG" diff "$T/$a.fbs" "$B/graphs/sparse_mlp_b_$a.fbs"
}
ablation topk --set-op moe.gate.importance=moe.gate.topk \
    --set-meta gate_s=moe.gate.topk --set-meta gate_c=moe.gate.topk
ablation per_image \
    --set-op '*.moe_c.gate:moe.gate.importance=moe.gate.per_image' \
    --set-attr '*.moe_c.gate:items_per_image=196' \
    --set-attr '*.moe_c.gate:capacity_factor=0' \
    --set-attr '*.moe_c.gate:eval_capacity_factor=0' \
    --set-meta gate_c=moe.gate.per_image
ablation hash --set-op moe.gate.importance=moe.gate.hash \
    --del-attr '*.gate:k,capacity_factor,eval_capacity_factor,noise_std,normalize,aux,aux_weight' \
    --set-attr '*.gate:experts=8' --set-attr '*.gate:mode=chunk' \
    --set-attr '*.moe_s.gate:items_per_image=384' \
    --set-attr '*.moe_c.gate:items_per_image=196' \
    --set-meta gate_s=moe.gate.hash --set-meta gate_c=moe.gate.hash
ablation k1 --set-attr '*.moe_c.gate:k=1' --set-meta k_c=1
ablation cf05 --set-attr '*.gate:eval_capacity_factor=0.5'
ablation norr --remove-node '*.rr_*' \
    --set-shape '*.moe_s.gate.weight=8,196' \
    --set-shape '*.moe_s.experts.fc1.weight=8,384,196' \
    --set-shape '*.moe_s.experts.fc2.weight=8,196,384' \
    --set-shape '*.moe_s.experts.fc2.bias=8,196' \
    --set-init '*.moe_s.experts.fc?.weight=xavier' \
    --set-attr '*.moe_s.flatten:shape=-1,196' \
    --set-attr '*.moe_s.unflatten:shape=-1,768,196' \
    --set-attr '*.moe_s.gate:group_size=768' --set-meta rerepresent=off
ablation last4 --clone-block blocks.10=blocks.8 --clone-block blocks.10=blocks.9 \
    --sum-tensors '*.gate.aux=aux_loss' --set-meta sparse_blocks=4
expect "hash: set-op drops the router weight" 0 \
    "dropped input 1 'blocks.10.moe_s.gate.weight'" \
    "$SG" edit "$GB" -o "$T/h2.fbs" --set-op moe.gate.importance=moe.gate.hash \
    --del-attr '*.gate:k,capacity_factor,eval_capacity_factor,noise_std,normalize,aux,aux_weight' \
    --set-attr '*.gate:experts=8' --set-attr '*.moe_s.gate:items_per_image=384' \
    --set-attr '*.moe_c.gate:items_per_image=196'
if grep -qF "removed 4 tensors no node uses: blocks.10.moe_s.gate.weight" \
    "$T/out"; then ok "hash: the router weights are pruned"
else bad "hash: pruning note"; show "$T/out"; fi

# The number of experts (docs/graphs.md, "More ablations"): new leading
# dimensions for the router and expert tensors; the capacities follow.
expect "experts: sparse_mlp_b with 16" 0 "wrote $T/e16.fbs" \
    "$SG" edit "$GB" -o "$T/e16.fbs" \
    --set-shape '*.moe_s.gate.weight=16,392' \
    --set-shape '*.moe_s.experts.fc1.weight=16,384,392' \
    --set-shape '*.moe_s.experts.fc1.bias=16,384' \
    --set-shape '*.moe_s.experts.fc2.weight=16,392,384' \
    --set-shape '*.moe_s.experts.fc2.bias=16,392' \
    --set-shape '*.moe_c.gate.weight=16,768' \
    --set-shape '*.moe_c.experts.fc1.weight=16,3072,768' \
    --set-shape '*.moe_c.experts.fc1.bias=16,3072' \
    --set-shape '*.moe_c.experts.fc2.weight=16,768,3072' \
    --set-shape '*.moe_c.experts.fc2.bias=16,768' \
    --set-shape '*.gate.load=16,2' \
    --set-meta experts_s=16 --set-meta experts_c=16
expect "experts: a half-done edit is refused" 1 \
    "'blocks.10.moe_c.experts' (moe.expert_ffn): input 1 (W1) has shape [8,3072,768], expected [16,3072,768]" \
    "$SG" edit "$GB" -o "$T/x.fbs" --set-shape '*.moe_c.gate.weight=16,768' \
    --set-shape '*.moe_c.gate.load=16,2'
"$SG" edit "$G" -o "$T/e8.fbs" \
    --set-shape '*.moe_s.gate.weight=8,98' \
    --set-shape '*.moe_s.experts.fc1.weight=8,64,98' \
    --set-shape '*.moe_s.experts.fc1.bias=8,64' \
    --set-shape '*.moe_s.experts.fc2.weight=8,98,64' \
    --set-shape '*.moe_s.experts.fc2.bias=8,98' \
    --set-shape '*.moe_c.gate.weight=8,128' \
    --set-shape '*.moe_c.experts.fc1.weight=8,512,128' \
    --set-shape '*.moe_c.experts.fc1.bias=8,512' \
    --set-shape '*.moe_c.experts.fc2.weight=8,128,512' \
    --set-shape '*.moe_c.experts.fc2.bias=8,128' \
    --set-shape '*.gate.load=8,2' >"$T/out" 2>&1 ||
    bad "experts: sparse_mlp_fmnist with 8"
# MoE_c: k 2 of 49 tokens over 8 experts, capacity ceil(2*49/8) = 13
expect "experts: the edited graph runs with 8 experts" 0 \
    "392 items x k 2, 8 group(s), capacity 13 (104 rows/expert)" \
    "$B/tools/smlp-run" "$T/e8.fbs" --batch 8 --threads 1
if grep -qE "^ +expert +0 +1 +2 +3 +4 +5 +6 +7$" "$T/out"; then
    ok "experts: the MoE table has 8 experts"
else bad "experts: the MoE table has 8 experts"; show "$T/out"; fi

# (c) diff's exit status.
expect "diff: different graphs exit 1" 1 \
    "~ node blocks.10.moe_s.gate: op moe.gate.importance -> moe.gate.topk" \
    "$SG" diff "$GB" "$B/graphs/sparse_mlp_b_topk.fbs"
if grep -qF "note: name: sparse_mlp_b -> sparse_mlp_b_topk" "$T/out" &&
   grep -qF "4 differences" "$T/out"; then ok "diff: notes and count"
else bad "diff: notes and count"; show "$T/out"; fi
expect "diff: removed tensors" 1 "- tensor blocks.10.rr_in.tokens.weight" \
    "$SG" diff "$GB" "$B/graphs/sparse_mlp_b_norr.fbs"
expect "diff: attribute change" 1 "attr eval_capacity_factor: 1.0 (Float) -> 0.5 (Float)" \
    "$SG" diff "$GB" "$B/graphs/sparse_mlp_b_cf05.fbs"
expect "diff -q" 1 "differences between" \
    "$SG" diff -q "$GB" "$B/graphs/sparse_mlp_b_k1.fbs"
expect "edit --name only" 0 "wrote" \
    "$SG" edit "$GB" -o "$T/renamed.fbs" --name other --set-meta x=y
expect "diff: name and metadata only" 0 "(name and metadata aside)" \
    "$SG" diff "$GB" "$T/renamed.fbs"
expect "diff: unreadable graph exits 2" 2 "$T/nope.fbs: cannot open graph" \
    "$SG" diff "$GB" "$T/nope.fbs"

# (d) more of edit.
cp "$G" "$T/inplace.fbs"
expect "edit in place" 0 "wrote $T/inplace.fbs" \
    "$SG" edit "$T/inplace.fbs" -o "$T/inplace.fbs" \
    --set-attr 'blocks.5.moe_c.gate:noise_std=0.5'
expect "edit in place: changed" 1 "attr noise_std: 1.0 (Float) -> 0.5 (Float)" \
    "$SG" diff "$G" "$T/inplace.fbs"
# On a copy: were -n to write, the shipped graph would stay intact.
cp "$G" "$T/dry0.fbs"
expect "edit --dry-run" 0 "checked" \
    "$SG" edit "$T/dry0.fbs" -n --set-attr 'blocks.5.moe_c.gate:k=1'
expect "edit: new attribute, type from the value" 0 "" \
    "$SG" edit "$G" -o "$T/new.fbs" \
    --set-attr 'blocks.5.moe_c.gate:capacity_multiple=4'
if "$SG" dump "$T/new.fbs" | grep -qF '{"name": "capacity_factor", "type": "Float", "f": 1.05}, {"name": "capacity_multiple", "type": "Int", "i": 4}, {"name": "eval_capacity_factor"'
then ok "a new attribute goes in name order"
else bad "a new attribute is not in name order"; fi
# An attribute the op does not declare (a typo) would be ignored: refused.
expect "edit: an undeclared attribute" 1 \
    "node 87 'head' (core.linear): attribute 'note' is not one that the op declares (it declares axis); nothing written" \
    "$SG" edit "$G" -o "$T/note.fbs" --set-attr 'head:note=hello'
expect "edit --no-infer writes it" 0 "" \
    "$SG" edit "$G" -o "$T/note.fbs" --set-attr 'head:note=hello' --no-infer
expect "check refuses an undeclared attribute" 1 \
    "attribute 'note' is not one that the op declares" \
    "$SG" check "$T/note.fbs" -q
expect "edit: explicit type" 0 "" \
    "$SG" edit "$G" -o "$T/typed.fbs" --set-attr 'head:axis:float=1' --no-infer
expect "edit: explicit type seen" 1 "attr axis: (absent) -> 1.0 (Float)" \
    "$SG" diff "$G" "$T/typed.fbs"
expect "edit: prefix rename" 0 "wrote" \
    "$SG" edit "$G" -o "$T/ren.fbs" --rename 'blocks.5.*=blocks.6.*'
expect "edit: prefix rename seen" 1 "+ tensor blocks.6.moe_c.gate.weight" \
    "$SG" diff "$G" "$T/ren.fbs"
expect "edit: rename one tensor" 0 "wrote" \
    "$SG" edit "$G" -o "$T/ren1.fbs" --rename 'logits=scores'
expect "edit: remove a pass-through" 0 "removed 1 tensor no node uses: blocks.0.mlp_tokens.act.out" \
    "$SG" edit "$G" -o "$T/rm.fbs" --remove-node 'blocks.0.mlp_tokens.act'
expect "edit: removed node is gone" 1 "- node blocks.0.mlp_tokens.act (core.gelu)" \
    "$SG" diff "$G" "$T/rm.fbs"
expect "edit: --keep-unused" 0 "wrote" \
    "$SG" edit "$GB" -o "$T/keep.fbs" --keep-unused \
    --set-op moe.gate.importance=moe.gate.hash \
    --del-attr '*.gate:k,capacity_factor,eval_capacity_factor,noise_std,normalize,aux,aux_weight' \
    --set-attr '*.gate:experts=8' --set-attr '*.moe_s.gate:items_per_image=384' \
    --set-attr '*.moe_c.gate:items_per_image=196'
expect "edit: --keep-unused kept the router weight" 1 \
    "node blocks.10.moe_s.gate: inputs" "$SG" diff "$GB" "$T/keep.fbs"
expect "edit: set-init and set-meta/del-meta" 0 "wrote" \
    "$SG" edit "$G" -o "$T/init.fbs" --set-init 'head.weight=normal:0,0.02@7' \
    --del-meta generator --set-meta note=x
expect "edit: set-init seen" 1 "init Zeros a=0.0 b=0.0 seed=" \
    "$SG" diff "$G" "$T/init.fbs"
expect "edit: drop-input" 0 "wrote" \
    "$SG" edit "$G" -o "$T/drop.fbs" --drop-input 'head:2'
expect "edit: drop-input pruned the bias" 1 "- tensor head.bias" \
    "$SG" diff "$G" "$T/drop.fbs"

# Block clones and sums.  A block cloned over its twin (same layout, other
# name) gives back the same graph byte for byte: seeds follow the names.
GF="$B/graphs/sparse_mlp_fmnist.fbs"
MF="$B/graphs/mixer_fmnist.fbs"
expect "clone-block: a Sparse block over its twin" 0 \
    "note: the copy of 'blocks.5' adds 4 graph outputs: 'blocks.4.moe_s.gate.aux'" \
    "$SG" edit "$GF" -o "$T/twin.fbs" --clone-block blocks.5=blocks.4
if "$SG" dump "$T/twin.fbs" | cmp -s - "$S/graphs/sparse_mlp_fmnist.json"
then ok "clone-block: the twin's copy is the same graph"
else bad "clone-block: the twin's copy differs"; fi
expect "clone-block: the block after it" 0 "wrote" \
    "$SG" edit "$GF" -o "$T/twin2.fbs" --clone-block blocks.4=blocks.5
if "$SG" dump "$T/twin2.fbs" | cmp -s - "$S/graphs/sparse_mlp_fmnist.json"
then ok "clone-block: a copy of the block before is the same graph"
else bad "clone-block: a copy of the block before differs"; fi
expect "clone-block: a dense Mixer block" 0 "wrote" \
    "$SG" edit "$MF" -o "$T/mtwin.fbs" --clone-block blocks.0=blocks.3
if "$SG" dump "$T/mtwin.fbs" | cmp -s - "$S/graphs/mixer_fmnist.json"
then ok "clone-block: Mixer block 0 over block 3 is the same graph"
else bad "clone-block: Mixer block copy differs"; fi
expect "clone-block: a Sparse block over a dense one" 0 "wrote" \
    "$SG" edit "$GF" -o "$T/last3.fbs" --clone-block blocks.5=blocks.3 \
    --sum-tensors '*.gate.aux=aux_loss'
expect "clone-block: the new block's gate" 1 \
    "+ node blocks.3.moe_c.gate (moe.gate.importance)" \
    "$SG" diff "$GF" "$T/last3.fbs"
expect "clone-block: its seeds are FNV-1a of the new names" 0 \
    '{"name": "blocks.3.moe_c.gate.weight", "kind": "Parameter", "shape": [4, 128], "init": {"kind": "Normal", "a": 0.0, "b": 0.02, "seed": 5248895712097899494}}' \
    "$SG" dump "$T/last3.fbs"
expect "sum-tensors: aux_loss over six gates" 0 \
    '{"name": "aux_sum.4", "op": "core.add", "inputs": [' \
    "$SG" dump "$T/last3.fbs"
expect "clone-block: a dense block over a Sparse one, sum rebuilt first" 0 \
    "wrote" "$SG" edit "$GF" -o "$T/last1.fbs" \
    --sum-tensors 'blocks.5.*.gate.aux=aux_loss' --clone-block blocks.3=blocks.4
expect "clone-block: the Sparse block is gone" 1 \
    "- node blocks.4.moe_c.gate (moe.gate.importance)" \
    "$SG" diff "$GF" "$T/last1.fbs"
expect "sum-tensors: the same sum is the same graph" 0 "wrote" \
    "$SG" edit "$GB" -o "$T/sum.fbs" --sum-tensors 'aux_sum:*.gate.aux=aux_loss'
if "$SG" dump "$T/sum.fbs" | cmp -s - "$S/graphs/sparse_mlp_b.json"
then ok "sum-tensors: rebuilt aux_sum chain is byte for byte the same"
else bad "sum-tensors: rebuilt aux_sum chain differs"; fi
expect "sum-tensors: a shorter sum" 0 "wrote" \
    "$SG" edit "$GB" -o "$T/sum2.fbs" --sum-tensors '*.moe_c.gate.aux=aux_loss'
expect "sum-tensors: the shorter chain" 1 "- node aux_sum.1 (core.add)" \
    "$SG" diff "$GB" "$T/sum2.fbs"
expect "sum-tensors: a second sum" 0 "wrote" \
    "$SG" edit "$GB" -o "$T/sum3.fbs" --sum-tensors 's_sum:*.moe_s.gate.aux=aux_s'
expect "sum-tensors: the second sum is an output" 0 \
    "  aux_s                                output     f32 []" \
    "$SG" check "$T/sum3.fbs"
if ls "$T" | grep -q '\.tmp\.'; then bad "a temporary file was left"
else ok "no temporary files left (atomic writes)"; fi

# (e) errors: message and exit status.
expect "help" 0 "usage: smlp-graph COMMAND" "$SG" --help
for c in dump check stats dot edit diff; do
    expect "$c --help" 0 "usage: smlp-graph $c" "$SG" "$c" --help
done
expect "help edit" 0 "usage: smlp-graph edit" "$SG" help edit
expect "edit --help: clone-block" 0 "--clone-block SRC=DST" "$SG" edit --help
expect "edit --help: sum-tensors" 0 "--sum-tensors [NODE_PREFIX:]TENSOR_GLOB=OUT" \
    "$SG" edit --help
expect "version" 0 "plugin ABI" "$SG" --version
expect "no command" 2 "no command given" "$SG"
expect "unknown command" 2 "unknown command 'frob'" "$SG" frob
expect "missing operand" 2 "missing operand" "$SG" check
expect "too many operands" 2 "too many operands" "$SG" dump "$G" "$G"
expect "unknown option" 2 "unknown option '--bogus'" "$SG" stats "$G" --bogus
expect "missing value" 2 "option '--batch' needs a value" "$SG" check "$G" --batch
expect "bad batch" 2 "--batch: '0' is not an integer" "$SG" check "$G" --batch 0
expect "batch with a leading blank" 2 "--batch: ' 2' is not an integer" \
    "$SG" check "$G" --batch ' 2'
expect "missing graph" 1 "$T/nope.fbs: cannot open graph" "$SG" check "$T/nope.fbs"
printf 'not a flatbuffer at all' >"$T/junk.fbs"
expect "junk graph" 1 "$T/junk.fbs" "$SG" dump "$T/junk.fbs"
expect "directory" 1 "is a directory" "$SG" stats "$T"
expect "dot: bad extension" 2 "must end in .dot" "$SG" dot "$G" -o "$T/g.jpg"
expect "edit: no -o" 2 "no output file" "$SG" edit "$G" --name x
expect "edit: bad spec" 2 "expected NODE_GLOB:NAME[:TYPE]=VALUE" \
    "$SG" edit "$G" -o "$T/x.fbs" --set-attr nonsense
expect "edit: bad type" 2 "a TYPE of int" \
    "$SG" edit "$G" -o "$T/x.fbs" --set-attr 'head:a:bool=1'
expect "edit: no match" 1 "no node matches 'nosuch*'" \
    "$SG" edit "$G" -o "$T/x.fbs" --set-attr 'nosuch*:k=1'
expect "edit: op glob without match" 1 "no node has an op matching 'moe.gate.topk'" \
    "$SG" edit "$G" -o "$T/x.fbs" --set-op moe.gate.topk=moe.gate.importance
expect "edit: unknown op" 1 "plugin 'moe' has no op 'moe.gate.bogus' (it has: " \
    "$SG" edit "$G" -o "$T/x.fbs" --set-op moe.gate.importance=moe.gate.bogus
expect "edit: unknown plugin" 1 "plugin 'nosuch' not found" \
    "$SG" edit "$G" -o "$T/x.fbs" --set-op moe.gate.importance=nosuch.gate
expect "edit: value of the wrong type" 1 "attribute 'k' is an int, and '1.5' is not an integer" \
    "$SG" edit "$G" -o "$T/x.fbs" --set-attr 'blocks.5.moe_c.gate:k=1.5'
expect "edit: invalid result" 1 "node 79 'blocks.5.moe_c.gate' (moe.gate.importance): attribute 'k' = 9 is invalid" \
    "$SG" edit "$G" -o "$T/x.fbs" --set-attr 'blocks.5.moe_c.gate:k=9'
if grep -qF "nothing written" "$T/out" && [ ! -e "$T/x.fbs" ]; then
    ok "edit: nothing written on failure"
else bad "edit: wrote a failing graph"; fi
expect "clone-block: unknown SRC" 1 \
    "no node is in block 'blocks.12' (SRC: no node is named 'blocks.12' or 'blocks.12.*')" \
    "$SG" edit "$GB" -o "$T/x.fbs" --clone-block blocks.12=blocks.8
expect "clone-block: unknown DST" 1 \
    "no node is in block 'blocks.13' (DST: " \
    "$SG" edit "$GB" -o "$T/x.fbs" --clone-block blocks.10=blocks.13
expect "clone-block: SRC = DST" 2 "SRC and DST are the same block 'blocks.10'" \
    "$SG" edit "$GB" -o "$T/x.fbs" --clone-block blocks.10=blocks.10.
expect "clone-block: overlapping blocks" 2 \
    "the blocks overlap: 'blocks.10.moe_s' is inside 'blocks.10'" \
    "$SG" edit "$GB" -o "$T/x.fbs" --clone-block blocks.10.moe_s=blocks.10
expect "clone-block: no DST" 2 "expected SRC=DST, two block prefixes" \
    "$SG" edit "$GB" -o "$T/x.fbs" --clone-block blocks.10
expect "clone-block: a glob" 2 "names such as blocks.8, not globs" \
    "$SG" edit "$GB" -o "$T/x.fbs" --clone-block 'blocks.1*=blocks.8'
expect "clone-block: different entries" 1 \
    "'aux_sum' reads 4 tensors from outside it ('blocks.10.moe_s.gate.aux'" \
    "$SG" edit "$GB" -o "$T/x.fbs" --clone-block aux_sum=blocks.8
expect "clone-block: SRC writes a name outside it" 1 \
    "block 'pool' writes tensor 'features', whose name is not in the block" \
    "$SG" edit "$GB" -o "$T/x.fbs" --clone-block pool=blocks.8
expect "clone-block: DST's outputs still summed" 1 \
    "node 'aux_sum.0' reads 'blocks.10.moe_s.gate.aux' of block 'blocks.10', and the copy of 'blocks.9' has no tensor of that name" \
    "$SG" edit "$GB" -o "$T/x.fbs" --clone-block blocks.9=blocks.10
expect "clone-block: a result that does not check" 1 \
    "node 81 'blocks.8' (core.patch_embed): input 0 (img) has shape [1,196,768] (rank 3), expected rank 4; nothing written" \
    "$SG" edit "$GB" -o "$T/x.fbs" --clone-block stem=blocks.8
expect "sum-tensors: bad spec" 2 "expected [NODE_PREFIX:]TENSOR_GLOB=OUT" \
    "$SG" edit "$GB" -o "$T/x.fbs" --sum-tensors '*.gate.aux'
expect "sum-tensors: a new OUT needs a prefix" 1 \
    "there is no tensor of that name yet; give the chain's NODE_PREFIX" \
    "$SG" edit "$GB" -o "$T/x.fbs" --sum-tensors '*.gate.aux=total'
expect "sum-tensors: OUT is another tensor" 1 \
    "tensor 'logits' exists already and is not written by the chain 's.N'" \
    "$SG" edit "$GB" -o "$T/x.fbs" --sum-tensors 's:*.gate.aux=logits'
expect "sum-tensors: no match" 1 "no tensor matches '*.gate.nope'" \
    "$SG" edit "$GB" -o "$T/x.fbs" --sum-tensors 's:*.gate.nope=t'
expect "sum-tensors: one tensor" 1 "a sum needs two tensors or more" \
    "$SG" edit "$GB" -o "$T/x.fbs" --sum-tensors 's:blocks.10.moe_s.gate.aux=t'
expect "sum-tensors: would drop an output" 1 \
    "the chain 'aux_sum.N' writes the graph output 'aux_loss', which a new OUT 't' would drop" \
    "$SG" edit "$GB" -o "$T/x.fbs" --sum-tensors 'aux_sum:*.gate.aux=t'
expect "sum-tensors: i32 summands" 1 "has dtype i32, expected f32; nothing written" \
    "$SG" edit "$GB" -o "$T/x.fbs" --sum-tensors 'l:*.gate.load=t'
if [ ! -e "$T/x.fbs" ]; then ok "clone-block, sum-tensors: nothing written on failure"
else bad "clone-block, sum-tensors: wrote a failing graph"; fi
expect "edit: remove a node writing an output" 1 "writes the graph output 'logits'" \
    "$SG" edit "$G" -o "$T/x.fbs" --remove-node head
expect "edit: remove a node whose other outputs are read" 1 "only output 0 can be rewired" \
    "$SG" edit "$G" -o "$T/x.fbs" --remove-node 'blocks.5.moe_c.gate'
expect "edit: rename clash" 1 "a node named 'head' exists already" \
    "$SG" edit "$G" -o "$T/x.fbs" --rename pool=head
expect "edit: a structurally invalid result" 1 "the edited graph is not valid: $T/x.fbs: two tensors are named" \
    "$SG" edit "$G" -o "$T/x.fbs" --rename 'blocks.4.*=blocks.5.*'
expect "edit --no-infer writes a graph check rejects" 0 "--no-infer" \
    "$SG" edit "$G" -o "$T/broken.fbs" --no-infer \
    --set-shape 'blocks.5.moe_c.gate.weight=4,64'
expect "check names node and input" 1 \
    "node 79 'blocks.5.moe_c.gate' (moe.gate.importance): input 1 (Wg) has shape [4,64], expected [4,128]" \
    "$SG" check "$T/broken.fbs"
expect "stats of a failing graph" 1 "input 1 (Wg)" "$SG" stats "$T/broken.fbs"
# A graph with a cycle: dump shows it (with a warning), check refuses it.
"$SG" dump "$G" | sed 's/"inputs": \[0, 1, 2\]/"inputs": [3, 1, 2]/' >"$T/cycle.json"
"$FLATC" -b -o "$T" "$SCHEMA" "$T/cycle.json" >/dev/null 2>&1
expect "dump of a graph with a cycle" 0 "warning: the graph does not pass" \
    "$SG" dump "$T/cycle.fbs"
expect "check of a graph with a cycle" 1 "cycle" "$SG" check "$T/cycle.fbs"
expect "diff against a graph the runtime refuses" 2 "cycle" \
    "$SG" diff "$G" "$T/cycle.fbs"
if grep -q "compute the same thing" "$T/out"; then
    bad "diff calls a refused graph the same"
else ok "diff does not call a refused graph the same"; fi

# Edits that break only training mode or another batch are refused too.
expect "edit: breaks training mode only" 1 \
    "does not check in training mode:" \
    "$SG" edit "$G" -o "$T/x.fbs" \
    --set-attr '*.moe_c.gate:capacity_factor=1e9'
expect "edit: a capacity beyond any index" 1 \
    "capacity factor 1e+30 (attribute 'eval_capacity_factor') gives a capacity beyond 2^62 per expert for groups of 49 items" \
    "$SG" edit "$G" -o "$T/x.fbs" \
    --set-attr '*.moe_c.gate:eval_capacity_factor=1e30'
expect "edit: a capacity beyond i32 indices" 1 \
    "exceed the i32 index range" \
    "$SG" edit "$G" -o "$T/x.fbs" --batch 64 \
    --set-attr '*.moe_c.gate:eval_capacity_factor=1e8'
expect "edit: breaks batches other than 1" 1 \
    "attribute 'shape' = [49,128] gives 6272 elements, input 0 (x) of shape [2,49,128]" \
    "$SG" edit "$G" -o "$T/x.fbs" --set-attr '*.moe_c.flatten:shape=49,128'
if [ ! -e "$T/x.fbs" ]; then ok "refused edits write nothing"
else bad "a refused edit wrote $T/x.fbs"; fi
expect "clone-block: notes the graph outputs it drops" 0 \
    "note: the copy of 'norm' has no tensor named as 1 graph output of 'head', which goes: 'logits'" \
    "$SG" edit "$G" -o "$T/nohead.fbs" --clone-block norm=head
# Long names in the note on removed tensors (a fixed buffer once overran).
L=$(printf 'x%.0s' $(seq 200))
expect "edit: long names in the removal note" 0 "removed 3 tensors" \
    "$SG" edit "$G" -o "$T/long.fbs" --rename "blocks.0.norm1*=$L*" \
    --remove-node "$L"
expect "flag with a value" 2 "option '--quiet' takes no value" \
    "$SG" check "$G" --quiet=1
expect "unknown short option" 2 "unknown option '-z'" "$SG" check "$G" -z
cp "$G" "$T/victim.fbs"
expect "dump -o its own input" 2 "that is the graph file" \
    "$SG" dump "$T/victim.fbs" -o "$T/victim.fbs"
if cmp -s "$G" "$T/victim.fbs"; then ok "dump -o its input leaves it"
else bad "dump -o its input changed it"; fi
expect "edit -o ''" 2 "-o: empty file name" "$SG" edit "$G" -o "" --name x
expect "dot -o a directory" 2 "-o $T/d.svg: is a directory, not a file" \
    sh -c "mkdir -p '$T/d.svg' && '$SG' dot '$G' -o '$T/d.svg'"
expect "set-init on an activation" 1 \
    "tensor 'stem.out' is computed by a node (an activation)" \
    "$SG" edit "$G" -o "$T/x.fbs" --set-init 'stem.out=zeros'
mkfifo "$T/fifo" 2>/dev/null &&
    expect "a FIFO is refused, not waited on" 1 "not a regular file" \
        timeout 20 "$SG" dump "$T/fifo"

# (f) edits checked independently of smlp-graph's reader: flatc turns the
# written graph into JSON (schemas/graph.fbs; fields at their default are
# left out) and python3 prints what a case asks of it.  jq FILE EXPR
# prints EXPR, where g is the graph, t(NAME)/n(NAME) a tensor/node by
# name, tn(I) tensor I's name and at(NODE, ATTR) an attribute.
jq() {
    rm -rf "$T/jq" && mkdir -p "$T/jq" &&
    "$FLATC" --json --strict-json --raw-binary -o "$T/jq" "$SCHEMA" -- \
        "$1" >/dev/null 2>&1 || { echo "flatc failed on $1"; return 1; }
    "${PYTHON3:-python3}" - "$T/jq/$(basename "$1" .fbs).json" "$2" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))
def t(name): return next((x for x in g["tensors"] if x["name"] == name), None)
def n(name): return next((x for x in g["nodes"] if x["name"] == name), None)
def tn(i): return g["tensors"][i]["name"]
def at(node, a): return next((x for x in n(node).get("attrs", [])
                             if x["name"] == a), None)
print(eval(sys.argv[2]))
PY
}
# jqis NAME FILE EXPR WANT: a case passing when jq prints exactly WANT.
jqis() {
    got=$(jq "$2" "$3" 2>&1)
    if [ "$got" = "$4" ]; then ok "$1"
    else bad "$1: got '$got', want '$4'"; fi
}

# Globs are fnmatch(3) patterns and case-sensitive: 'HEAD' is no node.
expect "edit: globs are case-sensitive" 1 "no node matches 'HEAD'" \
    "$SG" edit "$G" -o "$T/x.fbs" --set-attr 'HEAD:axis=1'
# A new attribute's type comes from its value: 1,2 is a list of ints,
# 0.5,1 one of floats (1 alone would be an int, 0.5 a float).
expect "edit: new list attributes" 0 "wrote" \
    "$SG" edit "$G" -o "$T/lists.fbs" --no-infer \
    --set-attr 'head:li=1,2' --set-attr 'head:lf=0.5,1'
jqis "edit: 1,2 is Ints, 0.5,1 is Floats" "$T/lists.fbs" \
    '[(a["type"], a.get("ints"), a.get("floats")) for a in
      (at("head", "lf"), at("head", "li"))]' \
    "[('Floats', None, [0.5, 1.0]), ('Ints', [1, 2], None)]"
# Attributes match by whole name: k_x is new, the gate's k stays 2.
expect "edit: an attribute named like another's prefix" 0 "wrote" \
    "$SG" edit "$G" -o "$T/kx.fbs" --no-infer \
    --set-attr 'blocks.5.moe_c.gate:k_x=3'
jqis "edit: k_x added, k kept" "$T/kx.fbs" \
    '(at("blocks.5.moe_c.gate", "k")["i"],
      at("blocks.5.moe_c.gate", "k_x").get("type", "Int"),
      at("blocks.5.moe_c.gate", "k_x")["i"])' "(2, 'Int', 3)"
# A rename renames the node and the tensor of that name: after head ->
# logits, 'logits' names both, and logits=scores renames both.
expect "edit: rename a node and a tensor of one name" 0 "wrote" \
    "$SG" edit "$G" -o "$T/both.fbs" --rename head=logits \
    --rename logits=scores
jqis "edit: node and tensor renamed" "$T/both.fbs" \
    '(n("scores")["op"], [tn(i) for i in n("scores")["outputs"]],
      t("scores")["kind"], t("logits"), n("logits"), n("head"))' \
    "('core.linear', ['scores'], 'Output', None, None, None)"
# A prefix rename covers every name with the prefix: the graph outputs
# blocks.5.*.gate.aux/load (no blocks.5 name is left), the graph input
# 'image', and the graph's last node (aux_sum.2).
jqis "edit: prefix rename leaves no blocks.5 name" "$T/ren.fbs" \
    '([x["name"] for x in g["tensors"] + g["nodes"]
       if x["name"].startswith("blocks.5.")],
      t("blocks.6.moe_c.gate.aux")["kind"])' "([], 'Output')"
expect "edit: prefix rename of the graph input and the sum" 0 "wrote" \
    "$SG" edit "$G" -o "$T/ren2.fbs" --rename 'image*=pixels*' \
    --rename 'aux_sum.*=aux_total.*'
jqis "edit: the graph input renamed" "$T/ren2.fbs" \
    '(tn(0), t("pixels")["kind"], tn(n("stem")["inputs"][0]), t("image"))' \
    "('pixels', 'Input', 'pixels', None)"
jqis "edit: the whole chain renamed, its last node too" "$T/ren2.fbs" \
    '[x["name"] for x in g["nodes"][-3:]]' \
    "['aux_total.0', 'aux_total.1', 'aux_total.2']"
# Removing a node rewires every reader of its output 0, whichever input
# reads it: blocks.0.res1 reads mlp_tokens.fc2's output as input 1.
expect "edit: remove a node read as input 1" 0 "wrote" \
    "$SG" edit "$G" -o "$T/rm1.fbs" --no-infer \
    --remove-node 'blocks.0.mlp_tokens.fc2'
jqis "edit: its reader reads its input 0" "$T/rm1.fbs" \
    '([tn(i) for i in n("blocks.0.res1")["inputs"]],
      t("blocks.0.mlp_tokens.fc2.weight"), t("blocks.0.mlp_tokens.fc2.out"))' \
    "(['stem.out', 'blocks.0.mlp_tokens.act.out'], None, None)"
# head has inputs 0..2: index 3 is none of them.
expect "edit: drop-input past the end" 1 \
    "node 'head' has 3 inputs, no input 3" \
    "$SG" edit "$G" -o "$T/x.fbs" --drop-input 'head:3'
expect "edit: a dimension below -1" 1 "dimension -2 is invalid" \
    "$SG" edit "$G" -o "$T/x.fbs" --set-shape 'head.bias=-2'
# =none removes the declared shape; a scalar's [] is a declared shape of
# rank 0, so aux_loss without one differs from aux_loss [].
expect "edit: set-shape none" 0 "wrote" \
    "$SG" edit "$G" -o "$T/none.fbs" --no-infer --set-shape 'aux_loss=none'
jqis "edit: the shape is gone" "$T/none.fbs" '"shape" in t("aux_loss")' \
    "False"
expect "diff: a declared [] against none" 1 \
    "~ tensor aux_loss: output f32 [] -> output f32 (shape inferred)" \
    "$SG" diff "$G" "$T/none.fbs"
# An empty list after = declares a scalar: [] again, the graph as it was.
expect "edit: set-shape T= declares a scalar" 0 "wrote" \
    "$SG" edit "$T/none.fbs" -o "$T/scalar.fbs" --no-infer \
    --set-shape 'aux_loss='
jqis "edit: the shape is []" "$T/scalar.fbs" 't("aux_loss").get("shape")' \
    "[]"
expect "diff: T= gives the graph back" 0 "compute the same thing" \
    "$SG" diff "$G" "$T/scalar.fbs"
# A changed initializer keeps its seed, even when the name (whose FNV-1a
# a new one gets) has changed; @SEED sets it.
expect "edit: set-init after a rename" 0 "wrote" \
    "$SG" edit "$G" -o "$T/seed.fbs" --rename head.weight=hw \
    --set-init 'hw=ones'
jqis "edit: the seed stays" "$T/seed.fbs" 't("hw")["init"]' \
    "{'kind': 'Ones', 'seed': 15190259207091184883}"
jqis "edit: @SEED on an initializer that exists" "$T/init.fbs" \
    't("head.weight")["init"]' "{'kind': 'Normal', 'b': 0.02, 'seed': 7}"
# xavier for the stem's convolution [128,1,4,4]: fan_in 1*4*4 = 16,
# fan_out 128*16 = 2048, bound sqrt(6/2064) = 0.053916387 (f32), the
# generator's own: the same graph.
expect "edit: xavier of a convolution" 0 "wrote" \
    "$SG" edit "$G" -o "$T/xav.fbs" --set-init 'stem.proj.weight=xavier'
jqis "edit: xavier bound of the convolution" "$T/xav.fbs" \
    '[t("stem.proj.weight")["init"][k] for k in ("kind", "a", "b")]' \
    "['Uniform', -0.053916387, 0.053916387]"
# Metadata keys match whole: 'gen' is not 'generator'.
expect "edit: set-meta of a key that prefixes another" 0 "wrote" \
    "$SG" edit "$G" -o "$T/meta.fbs" --set-meta gen=x
jqis "edit: generator kept, gen added" "$T/meta.fbs" \
    '[(m["key"], m["value"]) for m in g["metadata"]
      if m["key"].startswith("gen")]' \
    "[('generator', 'tools/gen_graphs.py'), ('gen', 'x')]"
expect "edit: del-meta of a prefix" 1 "no metadata key matches 'gen'" \
    "$SG" edit "$G" -o "$T/x.fbs" --del-meta gen

# diff sees every difference: a float change below f32 precision (1 and
# 1+1e-10 round to one f32, not to one double), an int turned float, a
# longer list, a node's outputs renamed, a seed alone, a dtype, a plugin.
expect "edit: a float that rounds to the same f32" 0 "wrote" \
    "$SG" edit "$G" -o "$T/d1.fbs" \
    --set-attr 'blocks.5.moe_c.gate:noise_std=1.0000000001'
expect "diff: doubles compared exactly" 1 "attr noise_std: 1.0 (Float) ->" \
    "$SG" diff "$G" "$T/d1.fbs"
expect "edit: an int attribute made float" 0 "wrote" \
    "$SG" edit "$G" -o "$T/d2.fbs" --no-infer \
    --set-attr 'blocks.5.moe_c.gate:k:float=2' \
    --set-attr 'blocks.5.moe_c.flatten:shape=-1,128,1'
expect "diff: an int against a float of one value" 1 \
    "attr k: 2 -> 2.0 (Float)" "$SG" diff "$G" "$T/d2.fbs"
expect "diff: a list that grew" 1 \
    "attr shape: [-1,128] (Ints) -> [-1,128,1] (Ints)" \
    "$SG" diff "$G" "$T/d2.fbs"
expect "diff: a node's outputs" 1 "~ node head: outputs [logits] -> [scores]" \
    "$SG" diff "$G" "$T/ren1.fbs"
expect "edit: a seed alone" 0 "wrote" \
    "$SG" edit "$G" -o "$T/d3.fbs" --set-init 'head.weight=zeros@7'
Z="~ tensor head.weight: init Zeros a=0.0 b=0.0 seed=15190259207091184883"
expect "diff: a seed alone" 1 "$Z -> Zeros a=0.0 b=0.0 seed=7" \
    "$SG" diff "$G" "$T/d3.fbs"
"$SG" dump "$G" | sed -e '/"plugins": /s/"moe"\]/"moe", "moco"]/' \
    -e '/{"name": "blocks.5.moe_c.gate.load"/s/"I32"/"F32"/' >"$T/d4.json"
"$FLATC" -b -o "$T" "$SCHEMA" "$T/d4.json" >/dev/null 2>&1
jqis "d4: the plugin and dtype edits took" "$T/d4.fbs" \
    '(g["plugins"], t("blocks.5.moe_c.gate.load").get("dtype", "F32"))' \
    "(['core', 'norm', 'moe', 'moco'], 'F32')"
"$SG" diff "$G" "$T/d4.fbs" >"$T/out" 2>&1
if grep -qF "+ plugin moco" "$T/out" &&
   grep -qF "gate.load: output i32 [4,2] -> output f32 [4,2]" "$T/out"
then ok "diff: a plugin more and a dtype"
else bad "diff: a plugin more and a dtype"; show "$T/out"; fi
"$SG" diff "$T/d4.fbs" "$G" >"$T/out" 2>&1
if grep -qF -- "- plugin moco" "$T/out"; then ok "diff: a plugin fewer"
else bad "diff: a plugin fewer"; show "$T/out"; fi

# A block is PREFIX or PREFIX.*: blocks.1 is not blocks.10 or blocks.11,
# so Mixer block 1 over its twin 0 gives back the same graph.
expect "clone-block: blocks.1 is not blocks.1*" 0 "wrote" \
    "$SG" edit "$GB" -o "$T/b1.fbs" --clone-block blocks.1=blocks.0
if "$SG" dump "$T/b1.fbs" | cmp -s - "$S/graphs/sparse_mlp_b.json"
then ok "clone-block: blocks.1 over blocks.0 is the same graph"
else bad "clone-block: blocks.1 over blocks.0 differs"; fi
# The output is replaced, not overwritten in place: a hard link to the
# old file keeps the old graph.
cp "$G" "$T/old.fbs"
ln "$T/old.fbs" "$T/link.fbs"
expect "edit over a hard-linked file" 0 "wrote" \
    "$SG" edit "$G" -o "$T/old.fbs" --set-attr 'blocks.5.moe_c.gate:k=1'
if cmp -s "$G" "$T/link.fbs" && ! cmp -s "$G" "$T/old.fbs"; then
    ok "edit: the output is a new file (the link keeps the old graph)"
else bad "edit: the output was written in place"; fi
# --dry-run writes nothing, and leaves its input as it was.
cp "$G" "$T/dry.fbs"
expect "edit -n on a copy" 0 "checked" \
    "$SG" edit "$T/dry.fbs" -n --set-attr 'blocks.5.moe_c.gate:k=1'
if cmp -s "$G" "$T/dry.fbs"; then ok "edit -n leaves the graph"
else bad "edit -n changed the graph"; fi

# The runtime orders nodes itself (Kahn's algorithm), so a reader may
# come before the node it reads in the file: removing a node rewires
# readers before it too.  Here fc2 is moved above act, which it reads.
"$SG" dump "$G" | awk '/"name": "blocks.0.mlp_tokens.act"/ { a = $0; next }
    { print } /"name": "blocks.0.mlp_tokens.fc2"/ { print a }' \
    >"$T/order.json"
"$FLATC" -b -o "$T" "$SCHEMA" "$T/order.json" >/dev/null 2>&1
expect "a graph with a reader before its writer checks" 0 "ok: " \
    "$SG" check "$T/order.fbs"
expect "edit: remove a node read by an earlier one" 0 "wrote" \
    "$SG" edit "$T/order.fbs" -o "$T/order2.fbs" \
    --remove-node 'blocks.0.mlp_tokens.act'
jqis "edit: the earlier reader rewired" "$T/order2.fbs" \
    '[tn(i) for i in n("blocks.0.mlp_tokens.fc2")["inputs"]][0]' \
    "blocks.0.mlp_tokens.fc1.out"
# Outputs after 0 are checked from output 1: the gate's slot (output 1)
# is read by the dispatch, and the message names that one first.
expect "edit: remove-node names output 1 first" 1 \
    "output 1 'blocks.5.moe_c.gate.slot' is read by another node" \
    "$SG" edit "$G" -o "$T/x.fbs" --remove-node 'blocks.5.moe_c.gate'
# --set-op lists the new op's plugin, and pruning drops a plugin no op
# belongs to ('normx.*' ops are not the plugin 'norm''s).  --no-infer:
# no plugin normx exists.
expect "edit: set-op to another plugin" 0 "wrote" \
    "$SG" edit "$G" -o "$T/normx.fbs" --no-infer \
    --set-op norm.layer_norm=normx.layer_norm
jqis "edit: normx listed, norm pruned" "$T/normx.fbs" 'g["plugins"]' \
    "['core', 'moe', 'normx']"
# Graph inputs stay when no node reads them any more (the caller feeds
# them): stem's input 0 dropped, 'image' is still the graph's input.
expect "edit: a graph input no node reads" 0 "wrote" \
    "$SG" edit "$G" -o "$T/noimg.fbs" --no-infer --drop-input 'stem:0'
jqis "edit: the unread graph input is kept" "$T/noimg.fbs" \
    '(tn(0), t("image")["kind"], [tn(i) for i in n("stem")["inputs"]])' \
    "('image', 'Input', ['stem.proj.weight', 'stem.proj.bias'])"
# --keep-unused keeps the router weights that the hash gate no longer
# reads (the diff above shows the inputs dropped, not the tensors gone).
jqis "edit: --keep-unused kept the unread tensors" "$T/keep.fbs" \
    '[t("blocks.%d.moe_%s.gate.weight" % (b, m))["kind"]
      for b in (10, 11) for m in "sc"]' \
    "['Parameter', 'Parameter', 'Parameter', 'Parameter']"
# Int 0 and float 0.0 differ in type alone (an op reading an int would
# refuse the float): diff reports it.
"$SG" edit "$G" -o "$T/i0.fbs" --no-infer --set-attr 'head:z:int=0' \
    >/dev/null 2>&1
"$SG" edit "$G" -o "$T/f0.fbs" --no-infer --set-attr 'head:z:float=0' \
    >/dev/null 2>&1
expect "diff: int 0 against float 0.0" 1 "attr z: 0 -> 0.0 (Float)" \
    "$SG" diff "$T/i0.fbs" "$T/f0.fbs"
# A node's output that nothing reads and that is no graph output (the
# gate's load, made an activation) is still the node's: pruning keeps it.
"$SG" dump "$G" |
    sed '/{"name": "blocks.5.moe_c.gate.load"/s/"Output"/"Activation"/' \
    >"$T/deadout.json"
"$FLATC" -b -o "$T" "$SCHEMA" "$T/deadout.json" >/dev/null 2>&1
expect "edit: a graph with an unread output" 0 "wrote" \
    "$SG" edit "$T/deadout.fbs" -o "$T/deadout2.fbs" --name dead
jqis "edit: the unread output is kept" "$T/deadout2.fbs" \
    '(t("blocks.5.moe_c.gate.load").get("kind", "Activation"),
      tn(n("blocks.5.moe_c.gate")["outputs"][5]))' \
    "('Activation', 'blocks.5.moe_c.gate.load')"
# dot labels a MoE layer with E (the router weight's rows: 8 after the
# experts edit above) and k (the gate's attribute: 2 for MoE_c).
expect "dot of the 8-expert graph" 0 "" "$SG" dot "$T/e8.fbs" -o "$T/e8.dot"
if grep -qF 'label="MoE blocks.5.moe_c: moe.gate.importance, E=8, k=2"' \
    "$T/e8.dot"; then ok "dot: E and k of a MoE layer"
else bad "dot: E and k of a MoE layer"; grep -F 'label="MoE' "$T/e8.dot"; fi
# Numbers are finite: inf is no float value, and nan as a new
# attribute's value reads as a string.
expect "edit: inf for a float attribute" 1 \
    "attribute 'noise_std' is a float, and 'inf' is not a finite number" \
    "$SG" edit "$G" -o "$T/x.fbs" \
    --set-attr 'blocks.5.moe_c.gate:noise_std=inf'
# Nor is a value beyond a double's range, too large or too small to be
# anything but inf or 0; a subnormal is exact, and kept.
expect "edit: 1e-400 for a float attribute" 1 \
    "attribute 'noise_std' is a float, and '1e-400' is not a finite number a double holds" \
    "$SG" edit "$G" -o "$T/x.fbs" \
    --set-attr 'blocks.5.moe_c.gate:noise_std=1e-400'
expect "edit: 1e400 for a float attribute" 1 \
    "and '1e400' is not a finite number a double holds" \
    "$SG" edit "$G" -o "$T/x.fbs" \
    --set-attr 'blocks.5.moe_c.gate:noise_std=1e400'
expect "edit: a subnormal float" 0 "wrote" \
    "$SG" edit "$G" -o "$T/sub.fbs" --no-infer \
    --set-attr 'blocks.5.moe_c.gate:noise_std=5e-324'
# (flatc prints it as 0.0; the dump, checked against Python above,
# writes the shortest decimal.)
if "$SG" dump "$T/sub.fbs" | grep -qF '"noise_std", "type": "Float", "f": 5e-324}'
then ok "edit: the subnormal kept"
else bad "edit: the subnormal kept"; "$SG" dump "$T/sub.fbs" | grep noise_std; fi
expect "edit: nan as a new attribute" 0 "wrote" \
    "$SG" edit "$G" -o "$T/nan.fbs" --no-infer --set-attr 'head:note=nan'
jqis "edit: nan is a string" "$T/nan.fbs" 'at("head", "note")' \
    "{'name': 'note', 'type': 'String', 's': 'nan'}"
# Initializer kinds are whole words.
expect "edit: an initializer kind with a tail" 1 \
    "'onesie' is not an initializer" \
    "$SG" edit "$G" -o "$T/x.fbs" --set-init 'head.weight=onesie'
# head computes logits: an initializer on the graph output is refused
# like one on an activation.
expect "set-init on a graph output" 1 \
    "tensor 'logits' is computed by a node (an output)" \
    "$SG" edit "$G" -o "$T/x.fbs" --set-init 'logits=zeros'
# '*' matches a leading '.' too (fnmatch without FNM_PERIOD): a node
# renamed '.head' is matched by '*head'.
expect "edit: '*' matches a leading dot" 0 "wrote" \
    "$SG" edit "$G" -o "$T/dot1.fbs" --rename 'head=.head' \
    --set-attr '*head:axis=1'
jqis "edit: the attribute on '.head'" "$T/dot1.fbs" 'at(".head", "axis")' \
    "{'name': 'axis', 'i': 1}"

# Edits and diffs that mutation testing found unchecked.  Values by hand
# or from flatc's reading (jq); seeds are FNV-1a of the tensor's name.
# Option specs: a negative input index and a '*' on one side of a rename
# are usage errors; the type 'floats' is one of the five.
expect "edit: drop-input -1" 2 "expected NODE_GLOB:INDEX (an input index" \
    "$SG" edit "$G" -o "$T/x.fbs" --drop-input 'head:-1'
expect "edit: rename a prefix to a name" 2 \
    "both names ending in '*' (a prefix rename) or neither" \
    "$SG" edit "$G" -o "$T/x.fbs" --rename 'head*=top'
# A value in brackets is a list, also of one item; '[]' is the empty list
# (a scalar's shape).
expect "edit: lists in brackets, type floats" 0 "wrote" \
    "$SG" edit "$T/none.fbs" -o "$T/br.fbs" --no-infer \
    --set-attr 'head:one=[7]' --set-attr 'head:fl:floats=1' \
    --set-shape 'aux_loss=[]'
jqis "edit: [7] is Ints, floats=1 is Floats [1.0], [] a scalar" "$T/br.fbs" \
    '(at("head", "one"), at("head", "fl"), t("aux_loss")["shape"])' \
    "({'name': 'one', 'type': 'Ints', 'ints': [7]}, {'name': 'fl', 'type': 'Floats', 'floats': [1.0]}, [])"
# --set-op adds the new op's plugin even when another listed plugin's
# name starts with it ('cor' is not 'core').
expect "edit: set-op to plugin cor" 0 "wrote" \
    "$SG" edit "$G" -o "$T/cor.fbs" --no-infer \
    --set-op 'head:core.linear=cor.linear'
jqis "edit: cor listed beside core" "$T/cor.fbs" \
    '(g["plugins"], n("head")["op"])' \
    "(['core', 'norm', 'moe', 'cor'], 'cor.linear')"
# A node holds at most 256 attributes: head has none; 256 fill it, and
# the next is refused by name.
A=$(i=1; while [ $i -le 257 ]; do printf ' --set-attr head:a%d=1' $i
    i=$((i + 1)); done)
# shellcheck disable=SC2086
expect "edit: the 257th attribute" 1 \
    "node 'head' has 256 attributes, the most a node may have" \
    "$SG" edit "$G" -o "$T/x.fbs" --no-infer $A
# What matches nothing is an error, not a silent no-op.
expect "edit: del-attr of an attribute no node has" 1 \
    "no node matching 'blocks.5.moe_c.gate' has an attribute 'nosuch'" \
    "$SG" edit "$G" -o "$T/x.fbs" --del-attr 'blocks.5.moe_c.gate:k,nosuch'
expect "edit: del-attr on no node" 1 "no node matches 'nosuch*'" \
    "$SG" edit "$G" -o "$T/x.fbs" --del-attr 'nosuch*:k'
expect "edit: prefix rename without a match" 1 \
    "no node or tensor matches 'nosuch.*'" \
    "$SG" edit "$G" -o "$T/x.fbs" --rename 'nosuch.*=other.*'
expect "edit: rename onto a tensor's name" 1 \
    "a tensor named 'stem.out' exists already" \
    "$SG" edit "$G" -o "$T/x.fbs" --rename 'logits=stem.out'
# Shapes: -1 (the batch) is a dimension; 8 dimensions are the most.
expect "edit: set-shape with the batch, and of rank 8" 0 "wrote" \
    "$SG" edit "$G" -o "$T/sh.fbs" --no-infer \
    --set-shape 'stem.out=-1,49,128' --set-shape 'features=1,2,3,4,5,6,7,8'
jqis "edit: the shapes set" "$T/sh.fbs" \
    '(t("stem.out")["shape"], t("features")["shape"])' \
    "([-1, 49, 128], [1, 2, 3, 4, 5, 6, 7, 8])"
expect "edit: a shape of rank 9" 1 "is not a shape of at most 8 integers" \
    "$SG" edit "$G" -o "$T/x.fbs" --set-shape 'features=1,1,1,1,1,1,1,1,1'
# Initializers take their number of arguments, a seed is not negative,
# and xavier needs a weight's rank (a bias [10] has no fans).
expect "edit: uniform with one bound" 1 "uniform takes 2 numbers after ':'" \
    "$SG" edit "$G" -o "$T/x.fbs" --set-init 'head.bias=uniform:1'
expect "edit: zeros with a number" 1 "zeros takes 0 numbers after ':'" \
    "$SG" edit "$G" -o "$T/x.fbs" --set-init 'head.bias=zeros:1'
expect "edit: constant without its number" 1 \
    "constant takes 1 number after ':'" \
    "$SG" edit "$G" -o "$T/x.fbs" --set-init 'head.bias=constant'
expect "edit: a negative seed" 1 "'@-1' is not a seed" \
    "$SG" edit "$G" -o "$T/x.fbs" --set-init 'head.bias=zeros@-1'
expect "edit: xavier of a bias" 1 "tensor 'head.bias' has no weight shape" \
    "$SG" edit "$G" -o "$T/x.fbs" --set-init 'head.bias=xavier'
# --del-meta removes that key and keeps the others in their order.
expect "edit: del-meta of the first key" 0 "wrote" \
    "$SG" edit "$G" -o "$T/dm.fbs" --del-meta family
jqis "edit: family gone, the rest in order" "$T/dm.fbs" \
    '([m["key"] for m in g["metadata"]][:2] +
      [m["key"] for m in g["metadata"]][-1:] + [len(g["metadata"])])' \
    "['model', 'patch', 'generator', 18]"
# The plan checks inference at --batch itself: an eval capacity factor of
# 5e7 gives capacity ceil(2 * 49 * 5e7 / 4) = 1225000000 per group, in
# i32 for 1 group (batch 1, and training uses capacity_factor), beyond
# 2^31 - 1 for the 2 groups of batch 2.
expect "edit: an eval capacity checked at --batch 2" 1 \
    "98 items in 2 groups with capacity 1225000000" \
    "$SG" edit "$G" -o "$T/x.fbs" --batch 2 \
    --set-attr '*.moe_c.gate:eval_capacity_factor=5e7'
# --clone-block: blocks.1 and blocks.10 are two blocks, not one inside
# the other.
expect "clone-block: blocks.10 over blocks.1" 0 "wrote" \
    "$SG" edit "$GB" -o "$T/x.fbs" --clone-block blocks.10=blocks.1
# A graph output of DST that the copy computes as an activation stays a
# graph output (blocks.3.res1.out made one here).
R='{"name": "blocks.3.res1.out"'
"$SG" dump "$G" | sed "s/$R}/$R, \"kind\": \"Output\"}/" >"$T/out3.json"
"$FLATC" -b -o "$T" "$SCHEMA" "$T/out3.json" >/dev/null 2>&1
expect "clone-block: over a block with a graph output" 0 "wrote" \
    "$SG" edit "$T/out3.fbs" -o "$T/out3b.fbs" --clone-block blocks.2=blocks.3
jqis "clone-block: the copy's tensor is the graph output" "$T/out3b.fbs" \
    '(t("blocks.3.res1.out")["kind"],
      [tn(i) for i in n("blocks.3.res1")["outputs"]])' \
    "('Output', ['blocks.3.res1.out'])"
# A tensor read by DST, written outside it, but named inside it is one
# of DST's entries (the copy reads it); a graph input named inside SRC
# is one of SRC's (not copied).
expect "clone-block: DST's entry named inside DST" 0 "wrote" \
    "$SG" edit "$G" -o "$T/ent.fbs" \
    --rename 'blocks.3.res2.out=blocks.4.in' --clone-block blocks.5=blocks.4
jqis "clone-block: the copy reads that entry" "$T/ent.fbs" \
    '[tn(i) for i in n("blocks.4.norm1")["inputs"]][0]' "blocks.4.in"
expect "clone-block: SRC reads a graph input named inside it" 0 "wrote" \
    "$SG" edit "$G" -o "$T/ent2.fbs" --no-infer \
    --rename 'image=stem.image' --clone-block stem=blocks.0
jqis "clone-block: the copy reads the graph input's place" "$T/ent2.fbs" \
    '([tn(i) for i in n("blocks.0")["inputs"]], t("stem.image")["kind"],
      t("blocks.0.image"))' \
    "(['stem.out', 'blocks.0.proj.weight', 'blocks.0.proj.bias'], 'Input', None)"
# A copy's tensor may not take the name of a tensor DST does not own.
expect "clone-block: a copy named as DST's entry" 1 \
    "the copy of 'blocks.5.in' would be named 'blocks.4.in', and a tensor outside block 'blocks.4' has that name" \
    "$SG" edit "$G" -o "$T/x.fbs" --rename 'blocks.3.res2.out=blocks.4.in' \
    --rename 'blocks.5.norm1.out=blocks.5.in' --clone-block blocks.5=blocks.4
# The copy goes where DST's first node was, also when that is the last
# node: aux_sum.1 over aux_sum.2 reads aux_sum.2's entries in order
# (aux_sum.1.out, then the gate's aux), and aux_loss goes.
expect "clone-block: over the graph's last node" 0 "wrote" \
    "$SG" edit "$G" -o "$T/last.fbs" --clone-block aux_sum.1=aux_sum.2
jqis "clone-block: the copy is the last node" "$T/last.fbs" \
    '(g["nodes"][-1]["name"], [tn(i) for i in n("aux_sum.2")["inputs"]],
      [tn(i) for i in n("aux_sum.2")["outputs"]], t("aux_loss"))' \
    "('aux_sum.2', ['aux_sum.1.out', 'blocks.5.moe_c.gate.aux'], ['aux_sum.2.out'], None)"
# DST's one tensor read outside it with no namesake in the copy (its
# exit renamed blocks.3.exit) is replaced by the copy's single exit, the
# activation that SRC writes for the rest of the graph; a SRC with two
# (blocks.1.norm1 renamed into blocks.0) has none to take its place.
expect "clone-block: DST's exit by another name" 0 "wrote" \
    "$SG" edit "$G" -o "$T/exit.fbs" \
    --rename 'blocks.3.res2.out=blocks.3.exit' --clone-block blocks.0=blocks.3
jqis "clone-block: DST's readers read the copy's exit" "$T/exit.fbs" \
    '([tn(i) for i in n("blocks.4.norm1")["inputs"]][0], t("blocks.3.exit"))' \
    "('blocks.3.res2.out', None)"
expect "clone-block: a SRC with two exits" 1 \
    "has no tensor of that name nor a single exit to take its place" \
    "$SG" edit "$G" -o "$T/x.fbs" \
    --rename 'blocks.1.norm1*=blocks.0.norm1x*' \
    --rename 'blocks.3.res2.out=blocks.3.exit' --clone-block blocks.0=blocks.3
# --sum-tensors: a node named as the chain but not a core.add, a reader
# of a partial sum, and a tensor of a chain node's name are refused; a
# name with a tail after the number (aux_sum.2b) is not the chain's; a
# glob that also matches the old chain's sums sums only the others.
expect "sum-tensors: a chain node that is no core.add" 1 \
    "node 's.0' (core.linear) has a name of the chain 's.N' but is not a core.add" \
    "$SG" edit "$G" -o "$T/x.fbs" --rename 'head=s.0' \
    --sum-tensors 's:*.gate.aux=t'
expect "sum-tensors: a reader of a partial sum" 1 \
    "node 'x' reads 'aux_sum.1.out', a partial sum of the chain 'aux_sum.N'" \
    "$SG" edit "$G" -o "$T/x.fbs" --rename 'aux_sum.2=x' \
    --sum-tensors 'aux_sum:*.moe_c.gate.aux=aux2'
expect "sum-tensors: a tensor named as a partial sum" 1 \
    "a tensor named 's.0.out' exists already" \
    "$SG" edit "$G" -o "$T/x.fbs" --rename 'head.bias=s.0.out' \
    --sum-tensors 's:*.gate.aux=t'
expect "sum-tensors: aux_sum.2b is no chain node" 0 "wrote" \
    "$SG" edit "$G" -o "$T/x.fbs" --rename 'head=aux_sum.2b' \
    --sum-tensors 'aux_sum:*.gate.aux=aux_loss'
expect "sum-tensors: a glob matching the old sums too" 0 "wrote" \
    "$SG" edit "$G" -o "$T/glob.fbs" --sum-tensors 'aux_sum:*aux*=aux_loss'
if "$SG" dump "$T/glob.fbs" | cmp -s - "$S/graphs/sparse_mlp_fmnist.json"
then ok "sum-tensors: *aux* sums the gates' aux alone: the same graph"
else bad "sum-tensors: *aux* differs"; fi
# A node reading OUT reads the new chain's: sum = p.a + p.b (one node)
# becomes sum.0 = p.a + p.b, sum = sum.0.out + p.c, and q still adds x
# and sum.
cat >"$T/sums.json" <<'JSON'
{"format_version": 1, "name": "sums", "plugins": ["core"],
 "tensors": [
  {"name": "x", "kind": "Input", "shape": [2]},
  {"name": "p.a", "kind": "Parameter", "shape": [2]},
  {"name": "p.b", "kind": "Parameter", "shape": [2]},
  {"name": "p.c", "kind": "Parameter", "shape": [2]},
  {"name": "sum", "kind": "Output", "shape": [2]},
  {"name": "y", "kind": "Output"}],
 "nodes": [
  {"name": "sum.0", "op": "core.add", "inputs": [1, 2], "outputs": [4]},
  {"name": "q", "op": "core.add", "inputs": [0, 4], "outputs": [5]}]}
JSON
"$FLATC" -b -o "$T" "$SCHEMA" "$T/sums.json" >/dev/null 2>&1
expect "sum-tensors: OUT read by a node" 0 "wrote" \
    "$SG" edit "$T/sums.fbs" -o "$T/sums2.fbs" --sum-tensors 'p.*=sum'
jqis "sum-tensors: the reader reads the new OUT" "$T/sums2.fbs" \
    '[(x["name"], [tn(i) for i in x["inputs"]], [tn(i) for i in x["outputs"]])
      for x in g["nodes"]]' \
    "[('q', ['x', 'sum'], ['y']), ('sum.0', ['p.a', 'p.b'], ['sum.0.out']), ('sum.1', ['sum.0.out', 'p.c'], ['sum'])]"
# A node without input 0 (absent: -1) has nothing to pass on: refused.
sed 's/"inputs": \[0, 4\]/"inputs": [-1, 4]/' "$T/sums.json" >"$T/noin0.json"
"$FLATC" -b -o "$T" "$SCHEMA" "$T/noin0.json" >/dev/null 2>&1
expect "edit: remove a node without input 0" 1 \
    "node 'q' has no input 0 and output 0 to connect" \
    "$SG" edit "$T/noin0.fbs" -o "$T/x.fbs" --no-infer --remove-node q
# diff sees each part of an initializer (kind, a, b alone: the seeds are
# kept), a dimension after the first, an attribute gone, a list's later
# item, a string, and notes metadata added and changed.
"$SG" edit "$G" -o "$T/P.fbs" --no-infer --set-init 'head.bias=constant:1' \
    --set-init 'stem.proj.bias=uniform:0,1' \
    --set-attr 'head:lf=0.5,1' >"$T/out" 2>&1 || bad "edit P"
"$SG" edit "$G" -o "$T/Q.fbs" --no-infer --set-init 'head.bias=constant:2' \
    --set-init 'stem.proj.bias=uniform:0,2' --set-attr 'head:lf=0.5,2' \
    --set-init 'head.weight=ones' \
    --set-shape 'blocks.5.moe_c.gate.weight=4,64' \
    --set-attr 'blocks.5.moe_c.flatten:shape=-1,64' \
    --set-attr 'blocks.5.moe_c.gate:aux=switch' \
    --del-attr 'blocks.5.moe_c.gate:noise_std' \
    --set-meta gen=x --set-meta generator=other >"$T/out" 2>&1 || bad "edit Q"
"$SG" diff "$T/P.fbs" "$T/Q.fbs" >"$T/pq" 2>&1
echo "exit $?" >>"$T/pq"
while IFS='|' read -r what want; do
    if grep -qxF -- "$want" "$T/pq"; then ok "diff: $what"
    else bad "diff: $what"; show "$T/pq"; fi
done <<EOF2
init kind alone|~ tensor head.weight: init Zeros a=0.0 b=0.0 seed=15190259207091184883 -> Ones a=0.0 b=0.0 seed=15190259207091184883
init a alone|~ tensor head.bias: init Constant a=1.0 b=0.0 seed=2127331025451459470 -> Constant a=2.0 b=0.0 seed=2127331025451459470
init b alone|~ tensor stem.proj.bias: init Uniform a=0.0 b=1.0 seed=11230270572095684548 -> Uniform a=0.0 b=2.0 seed=11230270572095684548
the last dimension|~ tensor blocks.5.moe_c.gate.weight: parameter f32 [4,128] -> parameter f32 [4,64]
a list's second int|~ node blocks.5.moe_c.flatten: attr shape: [-1,128] (Ints) -> [-1,64] (Ints)
a list's second float|~ node head: attr lf: [0.5,1.0] (Floats) -> [0.5,2.0] (Floats)
a string|~ node blocks.5.moe_c.gate: attr aux: 'vmoe' -> 'switch'
an attribute gone|~ node blocks.5.moe_c.gate: attr noise_std: 1.0 (Float) -> (absent)
metadata changed|  note: metadata generator: 'tools/gen_graphs.py' -> 'other'
metadata added|  note: metadata gen: (absent) -> 'x'
the count|8 differences between $T/P.fbs and $T/Q.fbs
the exit status|exit 1
EOF2
# A tensor's kind alone: the gate's load made an activation.
expect "diff: a tensor's kind" 1 \
    "~ tensor blocks.5.moe_c.gate.load: output i32 [4,2] -> activation i32 [4,2]" \
    "$SG" diff "$G" "$T/deadout.fbs"

# (g) dot, checked by dotcheck (above) on a graph made for its corners:
# a gate named without ".gate" (m.router: its layer is m.router.*, and
# the node named just "m.router." keeps its name as label); a gate op
# PLUGIN.gate (hash.gate, f.gate's moe.gate) with E from the "experts"
# attribute; an absent router input (-1) and one of rank 3 (no E); float
# "experts" and "k" attributes, which are not counted (E from the router,
# k 1); ops "x.gateway" (no gate) and "x.gate.y"; two MoE layers in a
# row; a gate named ".gate" exactly (its prefix is ".gate.", so ".x" is
# no member); a block split by another node; quotes and backslashes in
# names and in an op (one followed by "n", which is no newline); a graph
# input read by two nodes, a graph output read by a node; and a MoE layer
# last in the file.
cat >"$T/corners.json" <<'JSON'
{"format_version": 1, "name": "dot \"corners\"",
 "plugins": ["core", "moe", "hash", "x"],
 "tensors": [
  {"name": "x", "kind": "Input", "shape": [-1, 4]},
  {"name": "w", "kind": "Parameter", "shape": [3, 4]},
  {"name": "w3", "kind": "Parameter", "shape": [2, 3, 4]},
  {"name": "a"}, {"name": "g"}, {"name": "h", "kind": "Output"},
  {"name": "h2"}, {"name": "eg"}, {"name": "ed"}, {"name": "q"},
  {"name": "qx"}, {"name": "s1"}, {"name": "s2"}, {"name": "s3"},
  {"name": "fg"}, {"name": "y", "kind": "Output", "shape": []}],
 "nodes": [
  {"name": "prep", "op": "core.relu", "inputs": [0], "outputs": [3]},
  {"name": "m.router", "op": "moe.gate.topk", "inputs": [3, 1],
   "outputs": [4], "attrs": [{"name": "k", "type": "Int", "i": 2}]},
  {"name": "m.router.post", "op": "core.relu", "inputs": [4],
   "outputs": [5]},
  {"name": "m.router.", "op": "core.relu", "inputs": [5], "outputs": [6]},
  {"name": "e.gate", "op": "hash.gate", "inputs": [6, -1], "outputs": [7],
   "attrs": [{"name": "experts", "type": "Int", "i": 5}]},
  {"name": "e.d", "op": "core.relu", "inputs": [7, 0], "outputs": [8]},
  {"name": ".gate", "op": "x.gate.y", "inputs": [8, 2], "outputs": [9]},
  {"name": ".x", "op": "core.relu", "inputs": [9], "outputs": [10]},
  {"name": "blocks.7.sw", "op": "x.gateway", "inputs": [10],
   "outputs": [11]},
  {"name": "notgate", "op": "core.two\"li\\nes", "inputs": [11],
   "outputs": [12]},
  {"name": "blocks.7.q\"uo\\te", "op": "core.relu", "inputs": [12],
   "outputs": [13]},
  {"name": "f.gate", "op": "moe.gate", "inputs": [13, 1], "outputs": [14],
   "attrs": [{"name": "experts", "type": "Float", "f": 2.5},
             {"name": "k", "type": "Float", "f": 3.0}]},
  {"name": "f.out", "op": "core.relu", "inputs": [14], "outputs": [15]}]}
JSON
"$FLATC" -b -o "$T" "$SCHEMA" "$T/corners.json" >/dev/null 2>&1
expect "dot of the corner cases" 0 "" "$SG" dot "$T/corners.fbs" \
    -o "$T/corners.dot"
got=$(dotcheck "$T/corners.fbs" "$T/corners.dot")
if [ "$got" = ok ]; then ok "dot: the corner cases"
else bad "dot: the corner cases: $got"; fi
# The MoE labels of the corner graph, by hand.
for want in 'MoE m.router: moe.gate.topk, E=3, k=2' \
    'MoE e: hash.gate, E=5, k=1' 'MoE .gate: x.gate.y, k=1' \
    'MoE f: moe.gate, E=3, k=1'; do
    if grep -qF "label=\"$want\"" "$T/corners.dot"; then ok "dot: $want"
    else bad "dot: no cluster labelled '$want'"; fi
done
# Graphviz reads it (quotes escaped, braces balanced).
if command -v dot >/dev/null 2>&1; then
    if dot -Tcanon "$T/corners.dot" >/dev/null 2>"$T/err"; then
        ok "dot: Graphviz reads the corner graph"
    else bad "dot: Graphviz refuses the corner graph"; show "$T/err"; fi
fi
# The hash gate has no router and no k: E from "experts" (8), k 1.
if grep -qF 'label="MoE blocks.10.moe_s: moe.gate.hash, E=8, k=1"' \
    "$T/sparse_mlp_b_hash.dot"; then ok "dot: E and k of the hash gate"
else bad "dot: E and k of the hash gate"; fi
# --shapes: each edge carries the shape of the tensor it stands for, as
# check --batch 3 infers it; by hand, the image is [3,1,28,28], the stem
# gives 7x7 = 49 patches of 128 channels, and the aux losses are
# scalars [] (the edges from the gates into aux_sum).
expect "dot --shapes --batch 3" 0 "" "$SG" dot "$G" --shapes --batch 3 \
    -o "$T/shapes.dot"
"$SG" check "$G" --batch 3 >"$T/shapes.txt" 2>&1
got=$(dotcheck "$G" "$T/shapes.dot" "$T/shapes.txt")
if [ "$got" = ok ]; then ok "dot --shapes: every edge's shape"
else bad "dot --shapes: $got"; fi
if grep -qF 't0 -> n0 [label="[3,1,28,28]"];' "$T/shapes.dot" &&
   grep -qF 'n0 -> n1 [label="[3,49,128]"];' "$T/shapes.dot" &&
   grep -qF 'n46 -> n88 [label="[]"];' "$T/shapes.dot"; then
    ok "dot --shapes: shapes by hand"
else bad "dot --shapes: shapes by hand"; fi
expect "dot --batch 0" 2 "--batch: '0' is not an integer" \
    "$SG" dot "$G" --shapes --batch 0
# -o FILE.gv is DOT text too: the text printed to standard output.
"$SG" dot "$G" >"$T/stdout.dot" 2>&1
expect "dot -o .gv" 0 "" "$SG" dot "$G" -o "$T/g.gv"
if cmp -s "$T/stdout.dot" "$T/g.gv"; then ok "dot: .gv is the DOT text"
else bad "dot: .gv differs from the DOT text"; fi
# A graph file named .dot is not overwritten by its own picture.
cp "$G" "$T/self.dot"
expect "dot -o its own graph" 2 "that is the graph file" \
    "$SG" dot "$T/self.dot" -o "$T/self.dot"
if cmp -s "$G" "$T/self.dot"; then ok "dot -o its input leaves it"
else bad "dot -o its input changed it"; fi
# A write error on standard output is an error, also one that shows only
# as the output is flushed (the corner graph's text fits stdio's buffer),
# and it is said.
if [ -w /dev/full ]; then
    expect "dot >/dev/full" 1 "cannot write to standard output" \
        sh -c "'$SG' dot '$G' >/dev/full"
    expect "small dot >/dev/full" 1 "cannot write to standard output" \
        sh -c "'$SG' dot '$T/corners.fbs' >/dev/full"
fi
# So do the reports of check, stats and diff (diff: exit 2, not its 1).
if [ -w /dev/full ]; then
    for c in check stats; do
        expect "$c >/dev/full" 1 "smlp-graph $c: cannot write to standard output" \
            sh -c "'$SG' $c '$G' >/dev/full"
    done
    expect "diff >/dev/full" 2 "smlp-graph diff: cannot write to standard output" \
        sh -c "'$SG' diff '$G' '$G' >/dev/full"
fi
# Drawing through Graphviz's program: a PDF; a write error of the
# output (a link to /dev/full: the device is written in place) fails;
# without 'dot' on PATH, or with a 'dot' that fails, nothing is written.
# The last 'dot' closes its input unread, then fails: the text of
# moco_sparse_mlp_b (90 kB) overflows the pipe, and the write that finds
# the pipe closed must not kill smlp-graph (SIGPIPE).
if command -v dot >/dev/null 2>&1; then
    expect "dot -o .pdf" 0 "" "$SG" dot "$G" -o "$T/g.pdf"
    if head -c 5 "$T/g.pdf" | grep -q '^%PDF-'; then ok "pdf written"
    else bad "pdf missing"; fi
    if [ -w /dev/full ]; then
        ln -s /dev/full "$T/full.svg"
        expect "dot -o a full device" 1 "No space left on device" \
            "$SG" dot "$G" -o "$T/full.svg"
    fi
fi
mkdir -p "$T/nodot" "$T/baddot" "$T/deafdot"
printf '#!/bin/sh\nexit 3\n' >"$T/baddot/dot"
printf '#!/bin/sh\nexec 0<&-\nsleep 1\nexit 3\n' >"$T/deafdot/dot"
chmod +x "$T/baddot/dot" "$T/deafdot/dot"
expect "dot -o .svg without Graphviz's dot" 1 \
    "drawing svg needs Graphviz's 'dot' program" \
    env PATH="$T/nodot" "$SG" dot "$G" -o "$T/nodot.svg"
expect "dot -o .svg when dot fails" 1 "dot -Tsvg failed (exit status 3)" \
    env PATH="$T/baddot:$PATH" "$SG" dot "$G" -o "$T/bad.svg"
expect "dot -o .svg when dot closes its input" 1 \
    "dot -Tsvg failed (exit status 3)" env PATH="$T/deafdot:$PATH" \
    "$SG" dot "$B/graphs/moco_sparse_mlp_b.fbs" -o "$T/bad.svg"
if [ ! -e "$T/nodot.svg" ] && [ ! -e "$T/bad.svg" ]; then
    ok "dot: nothing written when dot is missing or fails"
else bad "dot: a failed drawing left a file"; fi

# (h) dump, checked against Python and flatc.  A graph of awkward values
# (made by Python, read by flatc -b): doubles for each branch of the
# shortest-repr writer (17 digits, the exponent-form thresholds 1e-05 and
# 1e+16, subnormals, the largest double, -0.0, inf, nan, powers of two
# whose correctly rounded 16-digit decimal misses them while another
# 16-digit one reads back: 2^122 and -2^89), strings with
# every escape, an initializer of a kind that does not use a and b but
# has them, a Constant (b written though 0), a seed of 2^64 - 1, and
# metadata with an empty value and with none.
"${PYTHON3:-python3}" - "$T/num.json" "$T/num.want" <<'PY'
import json, sys
vals = [0.1 + 0.2, 1e-05, 0.0001, 1e15, 1e16, 5e-324, 1.7976931348623157e308,
        123456789012345678.0, 100.0, 0.1, -2.5, 1 / 3, 123.456, -0.0,
        2.0 ** 122, -2.0 ** 89,
        float("inf"), float("-inf"), float("nan")]
text = "s\t\n\r\b\f\x01\x1f sp \"q\" back\\ \u00e9"
floats = "[" + ", ".join(map(repr, vals)) + "]"  # flatc reads inf, nan
g = {"format_version": 1, "name": "num", "plugins": ["core"],
     "tensors": [
         {"name": "x", "kind": "Input", "shape": [2]},
         {"name": "z", "kind": "Parameter", "shape": [2],
          "init": {"kind": "Zeros", "a": 1.5, "b": -2.0,
                   "seed": 2**64 - 1}},
         {"name": "c", "kind": "Parameter", "shape": [2],
          "init": {"kind": "Constant", "a": 0.25}},
         {"name": "y", "kind": "Output"}],
     "nodes": [{"name": "add", "op": "core.add", "inputs": [0, 1],
                "outputs": [3],
                "attrs": [{"name": "fl", "type": "Floats", "floats": "@"},
                          {"name": "s", "type": "String", "s": text}]}],
     "metadata": [{"key": "empty", "value": ""}, {"key": "absent"},
                  {"key": "ctl", "value": "a\tb\x02"}]}
open(sys.argv[1], "w").write(json.dumps(g).replace('"@"', floats))
with open(sys.argv[2], "w") as f:  # what the dump must hold, by Python
    f.write('doubles|"floats": %s}\n' % floats)
    f.write('escapes|"s": %s}\n' % json.dumps(text, ensure_ascii=False))
    f.write('metadata escapes|{"key": "ctl", "value": %s}\n' %
            json.dumps("a\tb\x02", ensure_ascii=False))
    f.write('Constant|{"kind": "Constant", "a": 0.25, "b": 0.0, "seed": 0}\n')
PY
"$FLATC" -b -o "$T" "$SCHEMA" "$T/num.json" >"$T/err" 2>&1 || show "$T/err"
expect "dump of awkward values" 0 "" "$SG" dump "$T/num.fbs" -o "$T/num.d.json"
while IFS='|' read -r what want; do
    if grep -qF -- "$want" "$T/num.d.json"; then ok "dump: $what as Python"
    else bad "dump: $what unlike Python's"; show "$T/num.d.json"; fi
done <"$T/num.want"
# The dump read by Python equals flatc's own JSON of the graph, fields at
# their schema default filled in (flatc prints doubles rounded: they are
# compared to 1e-12 here, exactly above and by the round trip below).
"$FLATC" --json --strict-json --raw-binary -o "$T/fj" "$SCHEMA" -- \
    "$T/num.fbs" >/dev/null 2>&1
got=$("${PYTHON3:-python3}" - "$T/num.d.json" "$T/fj/num.json" <<'PY'
import json, math, re, sys
D = {"tensor": {"dtype": "F32", "kind": "Activation"},
     "init": {"kind": "Zeros", "a": 0.0, "b": 0.0, "seed": 0},
     "attr": {"type": "Int", "i": 0, "f": 0.0}}
def norm(g):
    for t in g.get("tensors", []):
        t.update({k: t.get(k, v) for k, v in D["tensor"].items()})
        if "init" in t:
            t["init"] = {k: t["init"].get(k, v) for k, v in D["init"].items()}
    for n in g.get("nodes", []):
        for a in n.get("attrs", []):
            a.update({k: a.get(k, v) for k, v in D["attr"].items()})
    g.setdefault("format_version", 1)
    return g
def same(a, b):
    if isinstance(a, float) or isinstance(b, float):
        return a == b or math.isnan(a) and math.isnan(b) or \
            math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-300)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(same, a, b))
    return a == b
def load(path):  # bare inf and nan as Python's json reads them
    text = re.sub(r"(?<=[\[ ])(-?)inf\b", r"\1Infinity", open(path).read())
    return norm(json.loads(re.sub(r"(?<=[\[ ])nan\b", "NaN", text)))
a, b = load(sys.argv[1]), load(sys.argv[2])
print("same" if same(a, b) else "dump %s\nflatc %s" % (a, b))
PY
)
if [ "$got" = same ]; then ok "dump: the graph flatc reads"
else bad "dump differs from flatc's reading: $got"; fi
# The round trip is exact: dump -> flatc -b -> dump gives the same text.
mkdir -p "$T/numrt"
if "$FLATC" -b -o "$T/numrt" "$SCHEMA" "$T/num.d.json" >"$T/err" 2>&1 &&
   "$SG" dump "$T/numrt/num.d.fbs" 2>>"$T/err" | cmp -s - "$T/num.d.json"
then ok "dump: awkward values survive flatc -b exactly"
else bad "dump: round trip of awkward values"; show "$T/err"; fi
# What a binary holds that flatc's JSON drops, dumped per graph_json.c's
# header: a file written by `flatc -b --force-defaults` stores scalars at
# their default, so it can hold -0.0 (which flatc's JSON reader would
# store as the default 0.0) and explicit zeros.  An Init's a and b are
# written for Constant, Uniform and Normal even when 0.0, for Zeros and
# Ones only when their bits are nonzero (-0.0 is); seeds >= 2^63, a
# format_version >= 2^31 and 64-bit extremes in full; doubles as Python's
# repr writes them.  The expected lines are made by Python.
"${PYTHON3:-python3}" - "$T/neg.json" "$T/neg.want" <<'PY'
import json, sys
def init(kind, a, b, seed):
    return {"kind": kind, "a": a, "b": b, "seed": seed}
fl = [0.1, 1e-300, 5e-324, -0.0, 2.0**-1074 * 3, 1e22, 0.5]
g = {"format_version": 3000000000, "name": "neg", "plugins": ["core"],
     "tensors": [
         {"name": "u", "kind": "Parameter", "shape": [2],
          "init": init("Uniform", 0.0, 1.0, 2**63)},
         {"name": "n", "kind": "Parameter", "shape": [2],
          "init": init("Normal", 0.0, 0.0, 2**64 - 2)},
         {"name": "z", "kind": "Parameter", "shape": [2],
          "init": init("Zeros", -0.0, 0.0, 0)},
         {"name": "o", "kind": "Parameter", "shape": [2],
          "init": init("Ones", 0.0, -0.0, 1)},
         {"name": "y", "kind": "Output"}],
     "nodes": [{"name": "add", "op": "core.add", "inputs": [0, 1],
                "outputs": [4],
                "attrs": [{"name": "i", "type": "Int", "i": -2**63},
                          {"name": "f", "type": "Float", "f": -0.0},
                          {"name": "big", "type": "Ints",
                           "ints": [2**63 - 1, -2**63, -1]},
                          {"name": "fl", "type": "Floats", "floats": fl}]}]}
json.dump(g, open(sys.argv[1], "w"))
with open(sys.argv[2], "w") as f:
    f.write('version|"format_version": 3000000000,\n')
    f.write('Uniform|{"kind": "Uniform", "a": 0.0, "b": 1.0, '
            '"seed": %d}\n' % 2**63)
    f.write('Normal|{"kind": "Normal", "a": 0.0, "b": 0.0, '
            '"seed": %d}\n' % (2**64 - 2))
    f.write('Zeros|{"kind": "Zeros", "a": -0.0, "seed": 0}\n')
    f.write('Ones|{"kind": "Ones", "b": -0.0, "seed": 1}\n')
    f.write('Int|{"name": "i", "type": "Int", "i": %d}\n' % -2**63)
    f.write('Float|{"name": "f", "type": "Float", "f": -0.0}\n')
    f.write('Ints|"ints": [%d, %d, -1]}\n' % (2**63 - 1, -2**63))
    f.write('Floats|"floats": [%s]}\n' % ", ".join(map(repr, fl)))
PY
mkdir -p "$T/negfd"
"$FLATC" -b --force-defaults -o "$T/negfd" "$SCHEMA" "$T/neg.json" \
    >"$T/err" 2>&1 || show "$T/err"
"$SG" dump "$T/negfd/neg.fbs" -o "$T/neg.d.json" >"$T/err" 2>&1
while IFS='|' read -r what want; do
    if grep -qF -- "$want" "$T/neg.d.json"; then
        ok "dump of stored defaults: $what"
    else bad "dump of stored defaults: $what"; show "$T/neg.d.json"; fi
done <"$T/neg.want"
# Through flatc -b (without --force-defaults) the dump reads back the
# same, except -0.0 where only the sign tells it from the default: the
# Zeros init's a, the Ones init's b and the Float attribute come back as
# the default 0.0, as the header says.
mkdir -p "$T/negrt"
if "$FLATC" -b -o "$T/negrt" "$SCHEMA" "$T/neg.d.json" >"$T/err" 2>&1 &&
   "$SG" dump "$T/negrt/neg.d.fbs" >"$T/neg.rt.json" 2>>"$T/err" &&
   sed -e 's/"a": -0\.0, //' -e 's/"b": -0\.0, //' \
       -e 's/"f": -0\.0}/"f": 0.0}/' "$T/neg.d.json" |
   cmp -s - "$T/neg.rt.json"
then ok "dump: stored defaults through flatc -b as the header says"
else bad "dump: stored defaults through flatc -b"; show "$T/err"
    diff "$T/neg.d.json" "$T/neg.rt.json"; fi
# A write error on standard output is an error (sparse_mlp_b's dump is
# larger than stdio's buffer).
if [ -w /dev/full ]; then
    expect "dump >/dev/full" 1 "cannot write to standard output" \
        sh -c "'$SG' dump '$GB' >/dev/full"
    # And when the error shows only as the output is flushed: the dump of
    # the small graph above fits in stdio's buffer.
    expect "small dump >/dev/full" 1 "cannot write to standard output" \
        sh -c "'$SG' dump '$T/num.fbs' >/dev/full"
fi

# (i) what tools/tool_opts.c says about refused options and file names.
expect "a short option without its value" 2 "option '-o' needs a value" \
    "$SG" dump "$G" -o
# In a cluster the unknown letter is named, not the cluster.
expect "an unknown letter in a cluster" 2 "unknown option '-z'" \
    "$SG" check "$G" -qz
# An unknown long option is named without the =VALUE given to it.
expect "an unknown option with a value" 2 "unknown option '--bogus'" \
    "$SG" stats "$G" --bogus=1
# -o in a directory that does not exist, or under a regular file: the
# directory named is the part before the last '/'.
expect "-o in a missing directory" 2 \
    "-o $T/nodir/x.json: cannot write: the directory $T/nodir does not exist" \
    "$SG" dump "$G" -o "$T/nodir/x.json"
: >"$T/plain"
expect "-o under a regular file" 2 \
    "cannot write: the directory $T/plain does not exist" \
    "$SG" dump "$G" -o "$T/plain/x.json"
# -o /NAME: its directory is /, which exists (whether we may write there
# depends on who runs the test: as root the missing graph is what fails).
"$SG" dump "$T/nope.fbs" -o /smlp-graph-test-none.json >"$T/out" 2>&1
if ! grep -q "does not exist" "$T/out" &&
   grep -qE "cannot open graph|cannot write in directory /:" "$T/out"; then
    ok "-o /NAME: the directory is /"
else bad "-o /NAME"; show "$T/out"; fi
# Permissions, which do not hold root back: checked as another user only.
if [ "$(id -u)" -ne 0 ]; then
    : >"$T/ro.json"
    chmod a-w "$T/ro.json"
    expect "-o a read-only file" 2 \
        "-o $T/ro.json: cannot write: Permission denied" \
        "$SG" dump "$G" -o "$T/ro.json"
    mkdir "$T/rodir"
    chmod a-w "$T/rodir"
    expect "-o in a read-only directory" 2 \
        "cannot write in directory $T/rodir: Permission denied" \
        "$SG" dump "$G" -o "$T/rodir/x.json"
    chmod u+w "$T/rodir"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
