#!/bin/sh
# Checks of the shipped model graphs (graphs/*.json -> graphs/*.fbs):
#  (a) the committed JSON is exactly what tools/gen_graphs.py makes, and
#      every generated graph is listed in graphs/local.am;
#  (b) each built graphs/NAME.fbs holds exactly the generator's graph (read
#      back with the generator's own FlatBuffer reader, so float bounds and
#      64-bit seeds are compared bit for bit), decodes with flatc --json,
#      and the decoded JSON rebuilds to a binary that decodes the same;
#      seeds (many >= 2^63) survive flatc's JSON output unchanged;
#  (c) `gen_graphs.py --stats` gives the parameter and MAC counts of the
#      independent formulas of MODELS.md section 0.6;
#  (d) what (a)-(c) leave open, read from flatc's decoding of each built
#      base graph (mixer_*, sparse_mlp_{s,b,l,fmnist}, moco_*; the ablations
#      are sparse_mlp_b plus one edit, tests/check_smlp_graph.sh): the
#      numbers and rules of MODELS.md Part 1, OPS.md and docs/graphs.md
#      that leave parameter and MAC counts unchanged (attributes,
#      initialisers, seeds, which blocks are sparse, the MoCo wiring).
# Environment: SMLP_TEST_SRCDIR, SMLP_TEST_BUILDDIR, FLATC, PYTHON3 (see
# AM_TESTS_ENVIRONMENT).  Exit 77 (skip) without Python.  Prints
# "N passed, M failed".
S=${SMLP_TEST_SRCDIR:-.}
B=${SMLP_TEST_BUILDDIR:-.}
FLATC=${FLATC:-flatc}
if [ -z "$PYTHON3" ] || [ "$PYTHON3" = no ]; then
    echo "SKIP: no python3"
    exit 77
fi
GEN="$S/tools/gen_graphs.py"
SCHEMA="$S/schemas/graph.fbs"
T=$(mktemp -d /tmp/smlp-graphs-test.XXXXXX) || exit 1
trap 'rm -rf "$T"' EXIT INT TERM
. "${SMLP_TEST_SRCDIR:-.}/tests/shlib.sh"

# (a) committed sources = generator output.
if "$PYTHON3" "$GEN" --check >"$T/check" 2>&1; then
    ok "graphs/*.json are what gen_graphs.py makes"
else
    bad "graphs/*.json differ from gen_graphs.py output"; show "$T/check"
fi

if ! "$PYTHON3" "$GEN" --list >"$T/names" 2>&1 || [ ! -s "$T/names" ]; then
    bad "gen_graphs.py --list"; show "$T/names"
    echo "$pass passed, $((fail)) failed"
    exit 1
fi

for n in $(cat "$T/names"); do
    if grep -q "graphs/$n\.json" "$S/graphs/local.am"; then
        ok "$n listed in graphs/local.am"
    else
        bad "$n missing from GRAPH_JSON in graphs/local.am"
    fi

    # (b) the built binary.
    fbs="$B/graphs/$n.fbs"
    if [ ! -s "$fbs" ]; then
        bad "$n: $fbs not built"
        continue
    fi
    if "$PYTHON3" "$GEN" --verify "$fbs" >"$T/verify" 2>&1; then
        ok "$n.fbs holds exactly the generator's graph"
    else
        bad "$n.fbs differs from the generator's graph"; show "$T/verify"
    fi
    mkdir -p "$T/d1" "$T/b2" "$T/d2"
    if "$FLATC" --json --strict-json -o "$T/d1" "$SCHEMA" -- "$fbs" \
            >"$T/err" 2>&1 && [ -s "$T/d1/$n.json" ]; then
        ok "$n.fbs decodes with flatc --json"
    else
        bad "$n.fbs does not decode"; show "$T/err"
        continue
    fi
    if "$FLATC" -b -o "$T/b2" "$SCHEMA" "$T/d1/$n.json" >"$T/err" 2>&1 &&
       "$FLATC" --json --strict-json -o "$T/d2" "$SCHEMA" -- "$T/b2/$n.fbs" \
            >>"$T/err" 2>&1 &&
       cmp -s "$T/d1/$n.json" "$T/d2/$n.json"; then
        ok "$n: decoded JSON rebuilds to the same graph"
    else
        bad "$n: decode/rebuild round trip"; show "$T/err"
    fi
    grep -o '"seed": *[0-9]*' "$S/graphs/$n.json" | tr -d ' ' >"$T/s0"
    grep -o '"seed": *[0-9]*' "$T/d1/$n.json" | tr -d ' ' >"$T/s1"
    if [ -s "$T/s0" ] && cmp -s "$T/s0" "$T/s1"; then
        ok "$n: seeds survive flatc (largest $(sed 's/.*://' "$T/s0" |
            sort -n | tail -n 1))"
    else
        bad "$n: seeds changed by flatc"
    fi
done

# (c) parameter and MAC counts.  Expected values: mixer_s/b/l are
# total_p / total_m of mixer() in reference/param_macs.py (the MODELS.md
# section 0.6 formulas; Mixer-B/16 and L/16 agree with mmpretrain's
# 59.88 M / 12.61 G and 208.2 M / 44.57 G); mixer_fmnist is the same
# formulas with one input channel, computed by hand:
#   emb 4*4*1*128+128, block (49*64+64+64*49+49)+(128*512+512+512*128+128)
#   +4*128, head 2*128+128*10+10; MACs 49*16*128 + 6*(128*2*49*64 +
#   49*2*128*512) + 128*10.
# The sparse graphs: mixer() with the last blocks' blk_p/blk_m replaced by
# sparse_block()'s params/macs from reference/param_macs.py (Sparse-B is
# its "illustrative Sparse-B": 132.03 M, 15.15 G; no re-represent 128.13 M,
# 14.46 G; k_c = 1 13.31 G), the embedding with Cin = 1 for fmnist, and
# for the hash graph without the gates' params and MACs (and k_c = 1);
# topk, per_image and cf05 only change attributes.
# The MoCo graphs: the sparse graph's parameters without the head, plus
# projector C*h + 2h + h*h + 2h + h*d and predictor d*h + 2h + h*d (no
# biases; batch-norm gains and shifts); MACs: 4 backbones (query and
# momentum encoders on two views, the sparse graph's MACs less the head's
# C*K), 4 projectors (C*h + h*h + h*d), 2 predictors (2*d*h) and the loss
# at batch 1 (2*d: two 1 x 1 x d similarity products).  fmnist:
# C 128, h 512, d 128, K 10; B: C 768, h 4096, d 256, K 1000.
if "$PYTHON3" "$GEN" --stats >"$T/stats" 2>&1; then
    ok "gen_graphs.py --stats runs"
else
    bad "gen_graphs.py --stats"; show "$T/stats"
fi
while read -r n params macs; do
    got=$(awk -v n="$n" '$1 == n { print $2, $3 }' "$T/stats")
    if [ "$got" = "$params $macs" ]; then
        ok "$n: $params params, $macs MACs/image"
    else
        bad "$n: stats '$got', want '$params $macs'"
    fi
done <<'EOF'
mixer_fmnist 835376 43453696
mixer_s 18528264 3776958464
mixer_b 59880472 12601767936
mixer_l 208196168 44547678208
sparse_mlp_fmnist 1768988 62068992
sparse_mlp_s 33377304 4963520512
sparse_mlp_b 132030632 15154722816
sparse_mlp_l 741670248 53423611904
sparse_mlp_b_topk 132030632 15154722816
sparse_mlp_b_per_image 132030632 15154722816
sparse_mlp_b_cf05 132030632 15154722816
sparse_mlp_b_norr 128125456 14456272896
sparse_mlp_b_k1 132030632 13305034752
sparse_mlp_b_last4 204180792 17707677696
sparse_mlp_b_hash 132012072 13300217856
moco_sparse_mlp_fmnist 2295058 250106112
moco_sparse_mlp_b 154354880 60703900160
EOF

# (d) the graphs against MODELS.md Part 1, OPS.md and docs/graphs.md,
# through flatc's decoding of the built binaries ($T/d1/NAME.json, from
# (b)).  Mutants of gen_graphs.py that keep the counts of (c) -- a gate
# default, an eps, an initialiser, a seed, a wire of the MoCo graphs --
# pass (a)-(c) once the JSON is regenerated; these checks catch them.
if stpy - "$T/d1" >"$T/contract" 2>&1 <<'PY'
# Every built graph, as flatc --json decodes it (an independent reader),
# against what MODELS.md Part 1 fixes (the table; the gate defaults;
# layer-norm eps 1e-6; exact GELU; the zero-initialised head after layer
# norm and the mean over tokens; Xavier uniform linears, zero biases,
# normal(0, 0.02) routers), OPS.md (op attributes, defaults, moco.loss's
# input order) and docs/graphs.md (FNV-1a seeds; the MoCo graphs' layout).
# Each check names the graph, the node or tensor and what it should be.
import json, math, os, sys
from st import f32

D = sys.argv[1]  # flatc --json of every built graph, NAME.json
fails = []


def bad(graph, msg):
    fails.append("%s: %s" % (graph, msg))


def fnv1a64(s):  # FNV-1a, 64 bits (docs/graphs.md: the seed rule)
    h = 0xcbf29ce484222325
    for c in s.encode():
        h = ((h ^ c) * 0x100000001b3) % 2**64
    return h


assert fnv1a64("a") == 0xaf63dc4c8601ec8c      # FNV's own test vectors
assert fnv1a64("foobar") == 0x85944171f73967e8


class G:
    """A decoded graph with flatc's omitted defaults filled in."""
    def __init__(self, name):
        self.name = name
        g = json.load(open(os.path.join(D, name + ".json")))
        self.t = g.get("tensors", [])
        for t in self.t:
            t.setdefault("kind", "Activation")
            if "init" in t:
                i = t["init"]
                for k, v in (("kind", "Zeros"), ("a", 0.0), ("b", 0.0),
                             ("seed", 0)):
                    i.setdefault(k, v)
        self.n = g.get("nodes", [])
        self.ti = {t["name"]: i for i, t in enumerate(self.t)}
        self.ni = {n["name"]: n for n in self.n}
        self.writer = {o: n for n in self.n for o in n.get("outputs", [])}
        self.meta = {m["key"]: m.get("value", "")
                     for m in g.get("metadata", [])}

    def tensor(self, name):
        if name not in self.ti:
            bad(self.name, "no tensor " + name)
            return None
        return self.t[self.ti[name]]

    def node(self, name, op=None):
        n = self.ni.get(name)
        if n is None:
            bad(self.name, "no node " + name)
        elif op is not None and n["op"] != op:
            bad(self.name, "%s: op %s, want %s" % (name, n["op"], op))
        return n

    def attrs(self, n):
        out = {}
        for a in n.get("attrs", []):
            ty = a.get("type", "Int")
            out[a["name"]] = {"Int": a.get("i", 0), "Float": a.get("f", 0.0),
                              "String": a.get("s", ""),
                              "Ints": a.get("ints", []),
                              "Floats": a.get("floats", [])}[ty]
        return out

    def inputs(self, n):
        return [self.t[i]["name"] if i >= 0 else None
                for i in n.get("inputs", [])]

    def param(self, name, shape, kind, a=0.0, b=0.0, state=False,
              seed_of=None):
        """Tensor `name` is a parameter (or state) of `shape`, initialised
        by `kind` with bounds a, b (float32) and seed FNV-1a(seed_of)."""
        t = self.tensor(name)
        if t is None:
            return
        want_kind = "State" if state else "Parameter"
        if t["kind"] != want_kind:
            bad(self.name, "%s is %s, not %s" % (name, t["kind"], want_kind))
        if t.get("shape") != shape:
            bad(self.name, "%s: shape %s, want %s" % (name, t.get("shape"),
                                                     shape))
        i = t.get("init")
        want = (kind, f32(a), f32(b), fnv1a64(seed_of or name))
        got = i and (i["kind"], f32(i["a"]), f32(i["b"]), i["seed"])
        if got != want:
            bad(self.name, "%s: init %s, want %s" % (name, got, want))

    def check_attrs(self, n, want):
        if n is None:
            return
        got = self.attrs(n)
        for k, v in want.items():
            g = got.get(k)
            ok = (isinstance(g, float) and abs(g - v) <= 1e-9 * abs(v)
                  if isinstance(v, float) else g == v)
            if not ok:
                bad(self.name, "%s: %s = %r, want %r" % (n["name"], k, g, v))


def xavier(d_in, d_out):  # Glorot uniform bound, MODELS.md Part 1
    return math.sqrt(6.0 / (d_in + d_out))


def linear(g, prefix, d_in, d_out, axis=-1, bias=True, head=False, pp=""):
    """Node PREFIX (core.linear along axis) with weight [out, in] (Xavier
    uniform, or zero for the head) and bias [out] (zeros)."""
    n = g.node(pp + prefix, "core.linear")
    if n is None:
        return
    if g.attrs(n).get("axis", -1) != axis:    # OPS.md: axis -1 default
        bad(g.name, "%s: axis %r" % (prefix, g.attrs(n).get("axis")))
    bd = xavier(d_in, d_out)
    w = prefix + ".weight"
    if head:
        g.param(w, [d_out, d_in], "Zeros")
    else:
        g.param(w, [d_out, d_in], "Uniform", -bd, bd)
    want = [w] + ([prefix + ".bias"] if bias else [])
    if pp and pp[0] == "k":     # the momentum encoder reads the updates
        want = ["momentum_update." + x + ".out" for x in want]
    if g.inputs(n)[1:] != want:
        bad(g.name, "%s reads %s, want %s" % (pp + prefix,
                                              g.inputs(n)[1:], want))
    if bias:
        g.param(prefix + ".bias", [d_out], "Zeros")


def layer_norm(g, prefix, d, pp=""):
    """eps 1e-6 (MODELS.md Part 1), weight ones, bias zeros."""
    g.check_attrs(g.node(pp + prefix, "norm.layer_norm"), {"eps": 1e-6})
    g.param(prefix + ".weight", [d], "Ones")
    g.param(prefix + ".bias", [d], "Zeros")


def gelu(g, name):
    g.check_attrs(g.node(name, "core.gelu"), {"approximate": "none"})


# MODELS.md Part 1, the table.  MIX: input Cin and H = W, P, C, S, D_S,
# D_C, blocks, classes; SPARSE: the Mixer it is built on, sparse blocks
# (the last ones), E_s, E_c, k_s, k_c, re-represent (S1, C1).
MIX = {"mixer_s": (3, 224, 16, 512, 196, 256, 2048, 8, 1000),
       "mixer_b": (3, 224, 16, 768, 196, 384, 3072, 12, 1000),
       "mixer_l": (3, 224, 16, 1024, 196, 512, 4096, 24, 1000),
       "mixer_fmnist": (1, 28, 4, 128, 49, 64, 512, 6, 10)}
SPARSE = {"sparse_mlp_s": ("mixer_s", 2, 4, 4, 1, 2, (392, 256)),
          "sparse_mlp_b": ("mixer_b", 2, 8, 8, 1, 2, (392, 384)),
          "sparse_mlp_l": ("mixer_l", 4, 16, 16, 1, 2, (392, 512)),
          "sparse_mlp_fmnist": ("mixer_fmnist", 2, 4, 4, 1, 2, (98, 64))}
# Gate defaults of every sparse graph (MODELS.md Part 1).
GATE = {"capacity_factor": 1.05, "eval_capacity_factor": 1.0,
        "noise_std": 1.0, "normalize": "none", "aux": "vmoe",
        "aux_weight": 0.01}


def moe(g, prefix, E, k, d, h, group, noise, pp=""):
    """MoE layer PREFIX: importance gate (router [E, d] normal(0, 0.02),
    the defaults, group = one image's items), experts d -> h -> d
    (Xavier per expert, zero biases, GELU)."""
    gate = g.node(pp + prefix + ".gate", "moe.gate.importance")
    g.check_attrs(gate, dict(GATE, k=k, group_size=group, noise_std=noise))
    g.param(prefix + ".gate.weight", [E, d], "Normal", 0.0, 0.02)
    g.check_attrs(g.node(pp + prefix + ".experts", "moe.expert_ffn"),
                  {"activation": "gelu"})
    b1, b2 = xavier(d, h), xavier(h, d)
    e = prefix + ".experts."
    g.param(e + "fc1.weight", [E, h, d], "Uniform", -b1, b1)
    g.param(e + "fc1.bias", [E, h], "Zeros")
    g.param(e + "fc2.weight", [E, d, h], "Uniform", -b2, b2)
    g.param(e + "fc2.bias", [E, d], "Zeros")


def backbone(g, base, sp, pp="", noise=1.0):
    """The stem and blocks of MIX[base] with SPARSE's last blocks sparse;
    pp: the node prefix of a MoCo encoder copy."""
    cin, hw, P, C, S, DS, DC, L, _ = MIX[base]
    nsp, Es, Ec, ks, kc, (S1, C1) = sp or (0, 0, 0, 0, 0, (0, 0))
    st = g.node(pp + "stem", "core.patch_embed")
    g.check_attrs(st, {"patch": P})
    bd = xavier(cin * P * P, C * P * P)     # PyTorch's conv fans
    g.param("stem.proj.weight", [C, cin, P, P], "Uniform", -bd, bd)
    g.param("stem.proj.bias", [C], "Zeros")
    for i in range(L):
        b = "blocks.%d." % i
        layer_norm(g, b + "norm1", C, pp)
        layer_norm(g, b + "norm2", C, pp)
        sparse = i >= L - nsp               # the LAST nsp blocks
        if (pp + b + "moe_c.gate" in g.ni) != sparse:
            bad(g.name, "block %d %s sparse" % (i, "is not" if sparse
                                                else "is"))
            continue
        if not sparse:
            linear(g, b + "mlp_tokens.fc1", S, DS, axis=-2, pp=pp)
            gelu(g, pp + b + "mlp_tokens.act")
            linear(g, b + "mlp_tokens.fc2", DS, S, axis=-2, pp=pp)
            linear(g, b + "mlp_channels.fc1", C, DC, pp=pp)
            gelu(g, pp + b + "mlp_channels.act")
            linear(g, b + "mlp_channels.fc2", DC, C, pp=pp)
            continue
        linear(g, b + "rr_in.tokens", S, S1, axis=-2, pp=pp)
        linear(g, b + "rr_in.channels", C, C1, pp=pp)
        linear(g, b + "rr_out.channels", C1, C, pp=pp)
        linear(g, b + "rr_out.tokens", S1, S, axis=-2, pp=pp)
        # MoE_s: one item per (re-represented) channel, of length S1;
        # MoE_c: one item per token, of length C.
        moe(g, b + "moe_s", Es, ks, S1, DS, C1, noise, pp)
        moe(g, b + "moe_c", Ec, kc, C, DC, S, noise, pp)
    layer_norm(g, "norm", C, pp)
    # Global average pooling: the mean over the S tokens of [B, S, C].
    pool = g.node(pp + "pool", "core.mean")
    g.check_attrs(pool, {"axis": 1})
    if pool and g.inputs(pool) != [pp + "norm.out"]:
        bad(g.name, "pool reads %s" % g.inputs(pool))


def classifier(name, base, sp):
    g = G(name)
    cin, hw, P, C, S, DS, DC, L, K = MIX[base]
    img = g.tensor("image")
    if img and (img["kind"], img.get("shape")) != ("Input",
                                                   [-1, cin, hw, hw]):
        bad(name, "image: %s %s" % (img["kind"], img.get("shape")))
    backbone(g, base, sp)
    # The head: features [B, C] -> zero-initialised Linear(C, classes).
    f = g.tensor("features")
    if f and (f["kind"], f.get("shape")) != ("Output", [-1, C]):
        bad(name, "features: %s %s" % (f["kind"], f.get("shape")))
    linear(g, "head", C, K, head=True)
    lg = g.tensor("logits")
    if lg and (lg["kind"], lg.get("shape")) != ("Output", [-1, K]):
        bad(name, "logits: %s %s" % (lg["kind"], lg.get("shape")))
    if sp:
        aux_sum(g, [t["name"] for t in g.t
                    if t["name"].endswith(".gate.aux")], "aux_loss")
    meta(g, base, sp, {"classes": K})
    return g


def aux_sum(g, want, out):
    """`out` is a graph output, the sum (core.add nodes) of exactly the
    tensors `want`, each once (MODELS.md 0.5: summed over the MoE
    layers)."""
    t = g.tensor(out)
    if t is None:
        return
    if t["kind"] != "Output":
        bad(g.name, "%s is not an output" % out)
    leaves, stack = [], [g.ti[out]]
    while stack:
        i = stack.pop()
        n = g.writer.get(i)
        if n is not None and n["op"] == "core.add" and \
                not g.t[i]["name"].endswith(".gate.aux"):
            stack += n["inputs"]
        else:
            leaves.append(g.t[i]["name"])
    if sorted(leaves) != sorted(want) or not want:
        bad(g.name, "%s sums %s, want %s" % (out, sorted(leaves),
                                             sorted(want)))


def meta(g, base, sp, extra):
    """The metadata keys that describe the model (for people, reports and
    smlp-graph diff; smlp-train reads a MoCo graph's `backbone`) say
    what the table says."""
    cin, hw, P, C, S, DS, DC, L, K = MIX[base]
    want = {"patch": P, "hidden": C, "tokens": S, "tokens_mlp_dim": DS,
            "channels_mlp_dim": DC, "blocks": L,
            "image": "%dx%dx%d" % (cin, hw, hw)}
    if sp:
        nsp, Es, Ec, ks, kc, (S1, C1) = sp
        want.update(sparse_blocks=nsp, experts_s=Es, experts_c=Ec, k_s=ks,
                    k_c=kc, rerepresent="%dx%d" % (S1, C1),
                    gate_s="moe.gate.importance",
                    gate_c="moe.gate.importance")
    want.update(extra)
    for k, v in want.items():
        if g.meta.get(k) != str(v):
            bad(g.name, "metadata %s = %r, want %r" % (k, g.meta.get(k),
                                                       str(v)))


for name, (base, *sp) in SPARSE.items():
    classifier(name, base, sp)
for name in MIX:
    classifier(name, name, None)


# MoCo v3 graphs (MODELS.md Part 1 and 4.1; docs/graphs.md section 2):
# backbone, projector hidden and output, predictor hidden.
MOCO = {"moco_sparse_mlp_fmnist": ("sparse_mlp_fmnist", 512, 128, 512),
        "moco_sparse_mlp_b": ("sparse_mlp_b", 4096, 256, 4096)}


def batch_norm(g, prefix, d, affine, pp):
    """MoCo's BatchNorm1d: PyTorch's defaults (OPS.md: eps 1e-5, momentum
    0.1), gain ones and shift zeros when affine, running statistics (mean
    zeros, variance ones, as PyTorch starts them) kept per encoder copy."""
    n = g.node(pp + prefix, "norm.batch_norm")
    g.check_attrs(n, {"affine": int(affine), "eps": 1e-5, "momentum": 0.1})
    run = [pp + prefix + ".running_mean", pp + prefix + ".running_var"]
    g.param(run[0], [d], "Zeros", state=True)
    g.param(run[1], [d], "Ones", state=True)
    want = run
    if affine:
        g.param(prefix + ".weight", [d], "Ones")
        g.param(prefix + ".bias", [d], "Zeros")
        w = [prefix + ".weight", prefix + ".bias"]
        if pp[0] == "k":
            w = ["momentum_update." + x + ".out" for x in w]
        want = w + run
    if n and g.inputs(n)[1:] != want:
        bad(g.name, "%s reads %s, want %s" % (n["name"], g.inputs(n)[1:],
                                               want))


def head_mlp(g, prefix, dims, pp, x):
    """_build_mlp: Linear (no bias) -> BN -> ReLU per hidden layer, last
    Linear (no bias) -> BN(affine=False), MODELS.md 4.1; a chain that
    starts at activation x.  Returns the name of its output."""
    for l in range(len(dims) - 1):
        last = l == len(dims) - 2
        fc, bn = "%s.fc%d" % (prefix, l + 1), "%s.bn%d" % (prefix, l + 1)
        linear(g, fc, dims[l], dims[l + 1], bias=False, pp=pp)
        batch_norm(g, bn, dims[l + 1], not last, pp)
        chain = [pp + fc, pp + bn]
        if not last:
            chain.append("%s%s.act%d" % (pp, prefix, l + 1))
            g.node(chain[-1], "core.relu")
        for name in chain:
            n = g.ni.get(name)
            if n and g.inputs(n)[0] != x:
                bad(g.name, "%s reads %s, want %s" % (name, g.inputs(n)[0],
                                                       x))
            x = name + ".out"
    return x


def moco(name, base, hp, dim, hq):
    g = G(name)
    cin, hw, P, C, S, DS, DC, L, K = MIX[SPARSE[base][0]]
    sp = SPARSE[base][1:]
    for v in ("view1", "view2"):
        t = g.tensor(v)
        if t and (t["kind"], t.get("shape")) != ("Input", [-1, cin, hw, hw]):
            bad(name, "%s: %s %s" % (v, t["kind"], t.get("shape")))
    # m: a scalar input that defaults to m0 = 0.99.
    m = g.tensor("m")
    i = m and m.get("init")
    if not m or (m["kind"], m.get("shape"), i and i["kind"], i and i["a"],
                 i and i["seed"]) != ("Input", [], "Constant", 0.99,
                                      fnv1a64("m")):
        bad(name, "m: %s" % m)
    out = {}
    for pp, view in (("q1.", "view1"), ("q2.", "view2"),
                     ("k1.", "view1"), ("k2.", "view2")):
        # Query encoder noisy like the classifier; momentum encoder
        # deterministic (MODELS.md 1.3.5, docs/graphs.md).
        backbone(g, SPARSE[base][0], sp, pp,
                 noise=1.0 if pp[0] == "q" else 0.0)
        st = g.ni.get(pp + "stem")
        if st and g.inputs(st)[0] != view:
            bad(name, "%sstem reads %s, want %s" % (pp, g.inputs(st)[0],
                                                     view))
        x = head_mlp(g, "projector", [C, hp, hp, dim], pp, pp + "features")
        if pp[0] == "q":
            x = head_mlp(g, "predictor", [dim, hq, dim], pp, x)
        out[pp] = x
    # A node of a k copy is its q twin with each parameter X replaced by
    # the updated momentum copy momentum_update.X.out; q2 is q1 on view2.
    q1 = [n for n in g.n if n["name"].startswith("q1.")]
    for n in q1:
        suffix = n["name"][3:]
        for pp in ("q2.", "k1.", "k2."):
            m = g.ni.get(pp + suffix)
            if m is None:
                if not (pp[0] == "k" and suffix.startswith("predictor.")):
                    bad(name, "no node " + pp + suffix)
                continue
            want = []
            for x in g.inputs(n):
                t = g.tensor(x)
                if x in ("view1", "view2"):
                    want.append("view2" if pp[1] == "2" else "view1")
                elif t["kind"] == "Parameter":
                    want.append(x if pp[0] == "q" else
                                "momentum_update." + x + ".out")
                else:
                    want.append(pp + x[3:])
            if g.inputs(m) != want or m["op"] != n["op"]:
                bad(name, "%s: %s %s, want %s %s" % (m["name"], m["op"],
                                                    g.inputs(m), n["op"],
                                                    want))
    # The momentum twins: one State per parameter of the query backbone and
    # projector (not the predictor), equal to it at the start (same init,
    # same seed), moved by one moco.momentum_update [twin, X, m] whose
    # output only the k copies read.
    enc = sorted({x for n in q1 if not n["name"].startswith("q1.predictor")
                  for x in g.inputs(n) if g.tensor(x)["kind"] == "Parameter"})
    twins = sorted(t["name"][9:] for t in g.t
                   if t["name"].startswith("momentum."))
    if twins != enc:
        bad(name, "twins of %s, want of %s" % (set(twins) - set(enc),
                                                set(enc) - set(twins)))
    readers = {}
    for n in g.n:
        for x in g.inputs(n):
            readers.setdefault(x, []).append(n["name"])
    for x in enc:
        p, tw = g.tensor(x), g.tensor("momentum." + x)
        if tw is None:
            continue
        g.param("momentum." + x, p["shape"], p["init"]["kind"],
                p["init"]["a"], p["init"]["b"], state=True, seed_of=x)
        u = g.node("momentum_update." + x, "moco.momentum_update")
        if u and g.inputs(u) != ["momentum." + x, x, "m"]:
            bad(name, "%s reads %s" % (u["name"], g.inputs(u)))
        if readers.get("momentum." + x) != ["momentum_update." + x]:
            bad(name, "momentum.%s read by %s" % (x, readers.get(
                "momentum." + x)))
        r = readers.get("momentum_update." + x + ".out", [])
        if not r or any(not n.startswith(("k1.", "k2.")) for n in r):
            bad(name, "momentum_update.%s.out read by %s" % (x, r))
    # The symmetric loss: ctr(q1, k2) + ctr(q2, k1) is moco.loss(q1, q2,
    # k1, k2) (OPS.md), tau 0.2 (MODELS.md 4.2, ViT).
    lo = g.node("moco_loss", "moco.loss")
    g.check_attrs(lo, {"tau": 0.2})
    want = [out["q1."], out["q2."], out["k1."], out["k2."]]
    if lo and g.inputs(lo) != want:
        bad(name, "moco_loss reads %s, want %s" % (g.inputs(lo), want))
    # The aux losses of the query encoder's gates, both views, not the
    # momentum encoder's (MODELS.md section 9), added to the loss.
    aux_sum(g, [t["name"] for t in g.t if t["name"].endswith(".gate.aux")
                and t["name"].startswith(("q1.", "q2."))], "aux_loss")
    tot = g.node("loss", "core.add")
    if tot and sorted(g.inputs(tot)) != ["aux_loss", "moco_loss"]:
        bad(name, "loss reads %s" % g.inputs(tot))
    meta(g, SPARSE[base][0], sp, {
        "backbone": base, "tau": 0.2, "m0": 0.99,
        "projector": "%d-%d-%d-%d" % (C, hp, hp, dim),
        "predictor": "%d-%d-%d" % (dim, hq, dim)})
    for o in ("moco_loss", "aux_loss", "loss"):
        t = g.tensor(o)
        if t and (t["kind"], t.get("shape")) != ("Output", []):
            bad(name, "%s: %s %s" % (o, t["kind"], t.get("shape")))


for name, spec in MOCO.items():
    moco(name, *spec)
print("\n".join(fails[:20]) if fails else "ok")
sys.exit(1 if fails else 0)
PY
then
    ok "graphs hold what MODELS.md, OPS.md and docs/graphs.md fix"
else
    bad "graphs differ from MODELS.md / OPS.md / docs/graphs.md"
    show "$T/contract"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
