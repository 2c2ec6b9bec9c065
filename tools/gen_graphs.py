#!/usr/bin/env python3
"""Generate the smlp model graphs (graphs/NAME.json) from one description.

usage: python3 tools/gen_graphs.py [--out DIR] [--check] [--stats] [--list]
                                   [NAME ...]

  (no option)  write graphs/NAME.json for every NAME given (default: all)
  --out DIR    write to (or, with --check, compare against) DIR instead of
               the graphs/ directory beside this script's tools/ directory
  --check      regenerate in memory; exit 1 and list the files that differ
               from (or are missing in) the directory, write nothing
  --stats      print per graph: parameters and multiply-accumulates per
               image; write nothing
  --list       print the graph names, one a line
  --verify FBS decode the built graph FBS (flatc -b output) with a reader
               of our own and compare every field with the generator's
               graph of the same name; exit 1 on any difference

Python 3 standard library only.  The JSON follows schemas/graph.fbs in
flatc's JSON conventions (enums by name) and is deterministic: the same
generator always writes byte-identical files, so `--check` can guard the
committed sources.

Conventions:

* Tensor names follow timm's MLP-Mixer state-dict names
  (`stem.proj.weight`, `blocks.3.mlp_tokens.fc1.weight`, `norm.bias`,
  `head.weight`, ...), so a timm/PyTorch checkpoint maps onto a graph
  without renaming.  Parameters use PyTorch layouts (linear [out, in],
  conv [out, in, kh, kw]).
* A node is named after the module it stands for (`blocks.3.norm1`,
  `blocks.3.mlp_tokens.fc1`, `blocks.3.mlp_tokens.act`, `blocks.3.res1`)
  and writes the activation NODE.out; graph inputs and outputs have plain
  names (`image`, `features`, `logits`).
* Activation shapes are left out (the runtime infers them); inputs,
  outputs and parameters carry theirs, with -1 for the batch dimension.
* Initialisers (MODELS.md Part 1): linear weights Xavier/Glorot uniform,
  U(-b, b) with b = sqrt(6 / (fan_in + fan_out)), fan_in = in,
  fan_out = out; the patch-embedding weight likewise with PyTorch's
  convolution fans fan_in = Cin*P*P, fan_out = C*P*P; biases Zeros;
  layer-norm weight Ones, bias Zeros; classifier head weight Zeros
  (zero-initialised head); the input image Normal(0, 1) (the synthetic
  default batch).  Float bounds are written as the shortest decimal that
  reads back as the same float32 (Init.a/b are float32 in the schema).
* Seeds: every initialiser's seed is the 64-bit FNV-1a hash of the UTF-8
  tensor name (offset basis 0xcbf29ce484222325, prime 0x100000001b3),
  written as an unsigned integer (test vectors: "a" -> 0xaf63dc4c8601ec8c,
  "foobar" -> 0x85944171f73967e8, "image" -> 3077667772913174682).  A
  seed therefore depends only on the name: adding, removing or reordering
  tensors never changes another tensor's values.  flatc keeps ulong
  values >= 2**63 exactly (checked with flatc 2.0.8: -b then --json round
  trip), so no masking is applied.

Statistics (--stats) use the formulas of MODELS.md section 0.6 /
reference/param_macs.py, summed over the nodes of the graph for one image:
core.linear costs in*out per output row, core.patch_embed S*Cin*P*P*C,
moco.loss 2*d (at batch 1: it grows with the batch), every elementwise,
normalisation and reduction op 0.

Adding graphs: a graph is a function that fills a GraphBuilder; blocks are
functions of the builder (mixer_block, later sparse_block), and GRAPHS maps
each name to its function.
"""

import argparse
import json
import math
import os
import struct
import sys

GENERATOR = "tools/gen_graphs.py"

FNV64_OFFSET = 0xCBF29CE484222325
FNV64_PRIME = 0x100000001B3


def fnv1a64(text):
    """64-bit FNV-1a hash of the UTF-8 bytes of text (the seed rule)."""
    h = FNV64_OFFSET
    for byte in text.encode("utf-8"):
        h ^= byte
        h = (h * FNV64_PRIME) & 0xFFFFFFFFFFFFFFFF
    return h


def f32(x):
    """x rounded to float32, as the shortest decimal that reads back to the
    same float32 (returned as a Python float whose repr is that decimal)."""
    want = struct.pack("<f", x)
    for digits in range(1, 18):
        y = float("%.*g" % (digits, struct.unpack("<f", want)[0]))
        if struct.pack("<f", y) == want:
            return y
    raise AssertionError(x)


# Initialisers: dicts in schema field order; the seed is filled in by
# GraphBuilder from the tensor name.

def init_zeros():
    return {"kind": "Zeros"}


def init_ones():
    return {"kind": "Ones"}


def init_constant(value):
    """Every element `value` (b written as 0, as smlp-graph dump does)."""
    return {"kind": "Constant", "a": f32(value), "b": 0.0}


def init_uniform(a, b):
    return {"kind": "Uniform", "a": f32(a), "b": f32(b)}


def init_normal(mean, std):
    return {"kind": "Normal", "a": f32(mean), "b": f32(std)}


def init_xavier_uniform(fan_in, fan_out):
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return init_uniform(-bound, bound)


# Attributes, in flatc JSON form.

def attr(name, value):
    """One Attr: the type follows the Python type of value."""
    if isinstance(value, bool) or isinstance(value, int):
        return {"name": name, "type": "Int", "i": int(value)}
    if isinstance(value, float):
        return {"name": name, "type": "Float", "f": value}
    if isinstance(value, str):
        return {"name": name, "type": "String", "s": value}
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, int) for v in value):
            return {"name": name, "type": "Ints", "ints": list(value)}
        return {"name": name, "type": "Floats",
                "floats": [float(v) for v in value]}
    raise TypeError("attribute %s: unsupported value %r" % (name, value))


def prod(xs):
    p = 1
    for x in xs:
        p *= x
    return p


class GraphBuilder:
    """Collects tensors, nodes and metadata of one graph.

    Every tensor has a per-image shape (the batch dimension, when there is
    one, is 1) used for checking and statistics; only inputs, outputs and
    parameters write theirs to the JSON (batch written as -1).
    """

    def __init__(self, name, plugins):
        self.name = name
        self.plugins = list(plugins)
        self.tensors = []       # dicts in schema field order
        self.shapes = []        # per-image shapes, parallel to tensors
        self.batched = []       # whether dim 0 is the batch dimension
        self.index = {}         # name -> tensor index
        self.nodes = []
        self.node_names = set()
        self.metadata = []
        self.macs = 0
        # Encoder copies (MoCo): `scope` prefixes the names of nodes and
        # activations made while it is set; `param_hook`, when set, is
        # called instead of creating a parameter: hook(name, shape, init)
        # returns the tensor to read (a shared parameter, or the momentum
        # encoder's updated copy of it).  Neither changes other graphs.
        self.scope = ""
        self.param_hook = None

    # -- tensors ---------------------------------------------------------
    def add_tensor(self, name, shape, kind="Activation", dtype="F32",
                   init=None, batched=True, emit_shape=None):
        """Adds a tensor; returns its index.  shape is per image (batch
        dimension 1 when batched)."""
        if kind == "Activation":
            name = self.scope + name
        if name in self.index:
            raise ValueError("%s: duplicate tensor %s" % (self.name, name))
        t = {"name": name}
        if dtype != "F32":
            t["dtype"] = dtype
        if kind != "Activation":
            t["kind"] = kind
        if emit_shape is None:
            emit_shape = kind != "Activation"
        if emit_shape:
            t["shape"] = ([-1] + list(shape[1:])) if batched else list(shape)
        if init is not None:
            t["init"] = dict(init, seed=fnv1a64(name))
        self.index[name] = len(self.tensors)
        self.tensors.append(t)
        self.shapes.append(list(shape))
        self.batched.append(batched)
        return self.index[name]

    def add_param(self, name, shape, init):
        if self.param_hook is not None:
            return self.param_hook(name, shape, init)
        return self.add_tensor(name, shape, kind="Parameter", init=init,
                               batched=False)

    def add_state(self, name, shape, init, seed_name=None):
        """A state tensor (not batched); its initialiser's seed is that of
        seed_name when given (a momentum twin starts equal to its
        parameter)."""
        t = self.add_tensor(name, shape, kind="State", init=init,
                            batched=False)
        if seed_name is not None:
            self.tensors[t]["init"]["seed"] = fnv1a64(seed_name)
        return t

    def add_input(self, name, shape, init=None):
        return self.add_tensor(name, shape, kind="Input", init=init)

    def mark_output(self, t):
        """Turns the activation t into a graph output (with its shape)."""
        tensor = self.tensors[t]
        if tensor.get("kind", "Activation") != "Activation":
            raise ValueError("%s is not an activation" % tensor["name"])
        out = {"name": tensor["name"]}
        if "dtype" in tensor:
            out["dtype"] = tensor["dtype"]
        out["kind"] = "Output"
        shape = self.shapes[t]
        batched = self.batched[t] and len(shape) > 0
        out["shape"] = ([-1] + shape[1:]) if batched else shape
        self.tensors[t] = out
        return t

    def shape(self, t):
        return list(self.shapes[t])

    # -- nodes -----------------------------------------------------------
    def add_node(self, name, op, inputs, outputs, attrs=(), macs=0):
        """Adds a node (topological order is the caller's); attrs is a
        sequence of (name, value) pairs, written sorted by name: one
        canonical order, which `smlp-graph edit` keeps when it adds an
        attribute, so that edits reproduce generated graphs exactly."""
        name = self.scope + name
        if name in self.node_names:
            raise ValueError("%s: duplicate node %s" % (self.name, name))
        self.node_names.add(name)
        plugin = op.split(".", 1)[0]
        if plugin not in self.plugins:
            raise ValueError("%s: node %s uses plugin %s not listed"
                             % (self.name, name, plugin))
        n = {"name": name, "op": op, "inputs": list(inputs),
             "outputs": list(outputs)}
        if attrs:
            n["attrs"] = [attr(k, v) for k, v in
                          sorted(attrs, key=lambda kv: kv[0])]
        self.nodes.append(n)
        self.macs += macs

    def op(self, name, op, inputs, out_shape, attrs=(), macs=0,
           out_name=None, batched=True):
        """A node with one new activation output NAME.out; returns it."""
        y = self.add_tensor(out_name or name + ".out", out_shape,
                            batched=batched)
        self.add_node(name, op, inputs, [y], attrs, macs)
        return y

    def meta(self, key, value):
        self.metadata.append({"key": key, "value": str(value)})

    # -- statistics ------------------------------------------------------
    def param_count(self):
        return sum(prod(s) for t, s in zip(self.tensors, self.shapes)
                   if t.get("kind") == "Parameter")

    # -- output ----------------------------------------------------------
    def to_json(self):
        """The graph as JSON text: one tensor, node or metadata entry a
        line, keys in schema order, trailing newline."""
        def inline(obj):
            return json.dumps(obj, separators=(", ", ": "),
                              ensure_ascii=False, allow_nan=False)

        def block(key, items, last=False):
            lines = ['  "%s": [' % key]
            for i, item in enumerate(items):
                sep = "," if i + 1 < len(items) else ""
                lines.append("    " + inline(item) + sep)
            lines.append("  ]" + ("" if last else ","))
            return lines

        lines = ["{",
                 '  "format_version": 1,',
                 '  "name": %s,' % inline(self.name),
                 '  "plugins": %s,' % inline(self.plugins)]
        lines += block("tensors", self.tensors)
        lines += block("nodes", self.nodes)
        lines += block("metadata", self.metadata, last=True)
        lines.append("}")
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# Layers.  Each returns its output tensor index.  prefix is the module name
# (timm's), which names the parameters, the node and its output.

def linear(g, prefix, x, d_in, d_out, axis=-1, init=None, out_name=None,
           bias=True):
    """core.linear along axis (-1 channels, -2 tokens): weight [out, in]
    Xavier uniform (or init), bias [out] Zeros (none when not bias)."""
    shape = g.shape(x)
    if shape[axis] != d_in:
        raise ValueError("%s: input %s has %d, not %d, on axis %d"
                         % (prefix, g.tensors[x]["name"], shape[axis],
                            d_in, axis))
    w = g.add_param(prefix + ".weight", [d_out, d_in],
                    init or init_xavier_uniform(d_in, d_out))
    ins = [x, w]
    if bias:
        ins.append(g.add_param(prefix + ".bias", [d_out], init_zeros()))
    out_shape = list(shape)
    out_shape[axis] = d_out
    rows = prod(shape) // d_in
    attrs = [] if axis == -1 else [("axis", axis)]
    return g.op(prefix, "core.linear", ins, out_shape, attrs,
                macs=rows * d_in * d_out, out_name=out_name)


def gelu(g, prefix, x):
    return g.op(prefix, "core.gelu", [x], g.shape(x),
                [("approximate", "none")])


def add(g, name, a, b):
    if g.shape(a) != g.shape(b):
        raise ValueError("%s: shapes differ" % name)
    return g.op(name, "core.add", [a, b], g.shape(a))


def layer_norm(g, prefix, x, eps=1e-6):
    d = g.shape(x)[-1]
    w = g.add_param(prefix + ".weight", [d], init_ones())
    b = g.add_param(prefix + ".bias", [d], init_zeros())
    return g.op(prefix, "norm.layer_norm", [x, w, b], g.shape(x),
                [("eps", eps)])


def mean(g, name, x, axis, out_name=None):
    shape = g.shape(x)
    del shape[axis]
    return g.op(name, "core.mean", [x], shape, [("axis", axis)],
                out_name=out_name)


def patch_embed(g, prefix, x, patch, dim):
    """core.patch_embed (a PxP stride-P convolution): module `prefix`
    (timm: stem), parameters prefix.proj.weight [C, Cin, P, P] and
    prefix.proj.bias."""
    _, cin, h, w_ = g.shape(x)
    if h % patch or w_ % patch:
        raise ValueError("%s: %dx%d not divisible by %d"
                         % (prefix, h, w_, patch))
    tokens = (h // patch) * (w_ // patch)
    w = g.add_param(prefix + ".proj.weight", [dim, cin, patch, patch],
                    init_xavier_uniform(cin * patch * patch,
                                        dim * patch * patch))
    b = g.add_param(prefix + ".proj.bias", [dim], init_zeros())
    return g.op(prefix, "core.patch_embed", [x, w, b], [1, tokens, dim],
                [("patch", patch)],
                macs=tokens * cin * patch * patch * dim)


def mlp(g, prefix, x, d_hidden, axis=-1):
    """fc1 -> GELU -> fc2 along axis (timm Mlp: prefix.fc1, prefix.act,
    prefix.fc2)."""
    d = g.shape(x)[axis]
    h = linear(g, prefix + ".fc1", x, d, d_hidden, axis)
    h = gelu(g, prefix + ".act", h)
    return linear(g, prefix + ".fc2", h, d_hidden, d, axis)


# ---------------------------------------------------------------------------
# Blocks.

def mixer_block(g, i, x, tokens_mlp_dim, channels_mlp_dim):
    """Dense MLP-Mixer block i on x [B,S,C] (MODELS.md 2.1):
    U = X + TokenMLP(LN1(X)) (token mixing: core.linear axis=-2),
    Y = U + ChannelMLP(LN2(U))."""
    p = "blocks.%d" % i
    h = layer_norm(g, p + ".norm1", x)
    h = mlp(g, p + ".mlp_tokens", h, tokens_mlp_dim, axis=-2)
    u = add(g, p + ".res1", x, h)
    h = layer_norm(g, p + ".norm2", u)
    h = mlp(g, p + ".mlp_channels", h, channels_mlp_dim)
    return add(g, p + ".res2", u, h)


def transpose(g, name, x, perm):
    shape = g.shape(x)
    return g.op(name, "core.transpose", [x], [shape[p] for p in perm],
                [("perm", list(perm))])


def reshape(g, name, x, shape):
    """core.reshape to the per-image shape `shape`; the attribute has -1
    in dim 0, where the batch folds in ([B,C1,S1] -> [B*C1,S1] is
    shape [C1,S1], attribute [-1,S1])."""
    if prod(shape) != prod(g.shape(x)):
        raise ValueError("%s: cannot reshape %s to %s"
                         % (name, g.shape(x), shape))
    return g.op(name, "core.reshape", [x], list(shape),
                [("shape", [-1] + list(shape[1:]))])


# Defaults of every sparse graph (MODELS.md Part 1).
MOE_DEFAULTS = {
    "gate": "moe.gate.importance",
    "capacity_factor": 1.05,
    "eval_capacity_factor": 1.0,
    "noise_std": 1.0,
    "normalize": "none",
    "aux": "vmoe",
    "aux_weight": 0.01,
}


def moe(g, prefix, x, items, experts, k, d_hidden, cfg):
    """A sparse MoE layer on x [items_per_image, d] per image (the rows of
    one image form one routing group): gate -> dispatch -> expert_ffn ->
    combine, four nodes (OPS.md "moe").  Parameters: prefix.gate.weight
    [E, d] (router, normal(0, 0.02), no bias), prefix.experts.fc1.weight
    [E, h, d], .fc1.bias [E, h], .fc2.weight [E, d, h], .fc2.bias [E, d]
    (PyTorch linear layouts stacked over experts; Xavier uniform per
    expert).  The gate's aux and load outputs are graph outputs (kept for
    reports and the training loss).  cfg: MOE_DEFAULTS overrides, plus
    `gate` (the op) and, for moe.gate.hash, `mode`."""
    shape = g.shape(x)
    n, d = shape
    if n != items:
        raise ValueError("%s: %d rows per image, expected %d"
                         % (prefix, n, items))
    gate_op = cfg["gate"]
    gp = prefix + ".gate"
    ins = [x]
    attrs = []
    if gate_op == "moe.gate.hash":
        # No router, k = 1, no dropping (capacity_factor defaults to 0).
        attrs += [("experts", experts), ("items_per_image", items),
                  ("mode", cfg.get("mode", "chunk"))]
        k = 1
    else:
        w = g.add_param(gp + ".weight", [experts, d],
                        init_normal(0.0, 0.02))
        ins.append(w)
        attrs += [("k", k), ("group_size", items)]
        if gate_op == "moe.gate.per_image":
            attrs += [("items_per_image", items)]
        attrs += [("capacity_factor", cfg["capacity_factor"]),
                  ("eval_capacity_factor", cfg["eval_capacity_factor"]),
                  ("noise_std", cfg["noise_std"]),
                  ("normalize", cfg["normalize"]),
                  ("aux", cfg["aux"]), ("aux_weight", cfg["aux_weight"])]
    if gate_op == "moe.gate.hash":
        attrs.append(("group_size", items))
    outs = []
    for o, (oname, oshape, dtype) in enumerate([
            ("expert", [n, k], "I32"), ("slot", [n, k], "I32"),
            ("combine_weight", [n, k], "F32"), ("slot_item", [experts, 0], "I32"),
            ("aux", [], "F32"), ("load", [experts, 2], "I32")]):
        t = g.add_tensor(gp + "." + oname, oshape, dtype=dtype,
                         batched=oname not in ("aux", "load",
                                               "slot_item"))
        if oname in ("aux", "load"):
            g.mark_output(t)
        outs.append(t)
    # Gate MACs: the router GEMM, N*d*E per image.
    g.add_node(gp, gate_op, ins, outs, attrs,
               macs=n * d * experts if gate_op != "moe.gate.hash" else 0)
    expert, slot, weight, slot_item = outs[:4]
    buf = g.op(prefix + ".dispatch", "moe.dispatch", [x, slot_item],
               [experts, 0, d])
    ep = prefix + ".experts"
    bound1 = init_xavier_uniform(d, d_hidden)
    bound2 = init_xavier_uniform(d_hidden, d)
    w1 = g.add_param(ep + ".fc1.weight", [experts, d_hidden, d], bound1)
    b1 = g.add_param(ep + ".fc1.bias", [experts, d_hidden], init_zeros())
    w2 = g.add_param(ep + ".fc2.weight", [experts, d, d_hidden], bound2)
    b2 = g.add_param(ep + ".fc2.bias", [experts, d], init_zeros())
    # Expert MACs as MODELS.md 0.6 counts them: k choices per item, no
    # drops or padding (what the kernel issues is reported at run time).
    out = g.op(ep, "moe.expert_ffn", [buf, w1, b1, w2, b2, slot_item],
               [experts, 0, d], [("activation", "gelu")],
               macs=k * n * 2 * d * d_hidden)
    return g.op(prefix + ".combine", "moe.combine",
                [out, expert, slot, weight], [n, d])


def sparse_block(g, i, x, tokens_mlp_dim, channels_mlp_dim, experts_s,
                 experts_c, k_s, k_c, rr, cfg_s, cfg_c):
    """Sparse block i on x [B,S,C] (OPS.md, last section; MODELS.md
    1.3.2): LN1 -> re-represent in (tokens S->S1 with core.linear
    axis=-2, then channels C->C1) -> transpose [B,C1,S1] -> reshape
    [B*C1,S1] -> MoE_s (items = channels, group = one image's C1 items,
    experts S1->D_S->S1) -> reshape/transpose back [B,S1,C1] ->
    re-represent out (channels C1->C, tokens S1->S) -> U = X + that;
    LN2 -> reshape [B*S,C] -> MoE_c (items = tokens, group = one image's
    S items, experts C->D_C->C) -> reshape [B,S,C] -> Y = U + that.
    rr: (S1, C1), or None for no re-represent layers (MoE_s routes the C
    items of length S)."""
    p = "blocks.%d" % i
    _, tokens, hidden = g.shape(x)
    h = layer_norm(g, p + ".norm1", x)
    if rr is not None:
        s1, c1 = rr
        h = linear(g, p + ".rr_in.tokens", h, tokens, s1, axis=-2)
        h = linear(g, p + ".rr_in.channels", h, hidden, c1)
    else:
        s1, c1 = tokens, hidden
    h = transpose(g, p + ".moe_s.to_items", h, [0, 2, 1])
    h = reshape(g, p + ".moe_s.flatten", h, [c1, s1])
    h = moe(g, p + ".moe_s", h, c1, experts_s, k_s, tokens_mlp_dim, cfg_s)
    h = reshape(g, p + ".moe_s.unflatten", h, [1, c1, s1])
    h = transpose(g, p + ".moe_s.from_items", h, [0, 2, 1])
    if rr is not None:
        h = linear(g, p + ".rr_out.channels", h, c1, hidden)
        h = linear(g, p + ".rr_out.tokens", h, s1, tokens, axis=-2)
    u = add(g, p + ".res1", x, h)
    h = layer_norm(g, p + ".norm2", u)
    h = reshape(g, p + ".moe_c.flatten", h, [tokens, hidden])
    h = moe(g, p + ".moe_c", h, tokens, experts_c, k_c, channels_mlp_dim,
            cfg_c)
    h = reshape(g, p + ".moe_c.unflatten", h, [1, tokens, hidden])
    return add(g, p + ".res2", u, h)


def pooled_features(g, x):
    """LN `norm` -> mean over tokens `pool` -> the activation `features`
    [B, C]: what the classifier head and the MoCo projector read."""
    h = layer_norm(g, "norm", x)
    return mean(g, "pool", h, 1, out_name="features")


def classifier_head(g, x, classes):
    """LN -> mean over tokens -> `features` (output) -> zero-initialised
    linear -> `logits` (output)."""
    f = g.mark_output(pooled_features(g, x))
    y = linear(g, "head", f, g.shape(f)[-1], classes, init=init_zeros(),
               out_name="logits")
    return g.mark_output(y)


# ---------------------------------------------------------------------------
# Graphs.

MIXER = {
    # name: (model, image (Cin, H, W), P, C, D_S, D_C, blocks, classes)
    "mixer_fmnist": ("Mixer-FMNIST/4", (1, 28, 28), 4, 128, 64, 512, 6, 10),
    "mixer_s": ("Mixer-S/16", (3, 224, 224), 16, 512, 256, 2048, 8, 1000),
    "mixer_b": ("Mixer-B/16", (3, 224, 224), 16, 768, 384, 3072, 12, 1000),
    "mixer_l": ("Mixer-L/16", (3, 224, 224), 16, 1024, 512, 4096, 24, 1000),
}


def mixer_graph(name):
    model, image, patch, hidden, ds, dc, blocks, classes = MIXER[name]
    cin, hgt, wid = image
    tokens = (hgt // patch) * (wid // patch)
    g = GraphBuilder(name, ["core", "norm"])
    for key, value in [
            ("family", "mixer"), ("model", model), ("patch", patch),
            ("hidden", hidden), ("tokens", tokens),
            ("tokens_mlp_dim", ds), ("channels_mlp_dim", dc),
            ("blocks", blocks), ("classes", classes),
            ("image", "x".join(str(d) for d in image)),
            ("generator", GENERATOR)]:
        g.meta(key, value)
    x = g.add_input("image", [1, cin, hgt, wid], init_normal(0.0, 1.0))
    x = patch_embed(g, "stem", x, patch, hidden)
    for i in range(blocks):
        x = mixer_block(g, i, x, ds, dc)
    classifier_head(g, x, classes)
    return g


# Sparse-MLP (MODELS.md Part 1): the Mixer widths of `base`, the last
# `sparse` blocks replaced by Sparse blocks.
SPARSE = {
    # name: (model, base, sparse blocks, E_s, E_c, k_s, k_c)
    "sparse_mlp_fmnist": ("Sparse-MLP-FMNIST/4", "mixer_fmnist", 2, 4, 4,
                          1, 2),
    "sparse_mlp_s": ("Sparse-MLP-S/16", "mixer_s", 2, 4, 4, 1, 2),
    "sparse_mlp_b": ("Sparse-MLP-B/16", "mixer_b", 2, 8, 8, 1, 2),
    "sparse_mlp_l": ("Sparse-MLP-L/16", "mixer_l", 4, 16, 16, 1, 2),
}

# Ablations of sparse_mlp_b (MODELS.md Part 1), each one graph edit:
# name: (description, changes).  Changes: gate_s / gate_c (MoE_s / MoE_c
# gate op), moe_s / moe_c (attribute overrides), rr (False: no
# re-represent layers), k_c, sparse (number of sparse blocks).
ABLATIONS = {
    "sparse_mlp_b_topk": ("gate.topk: positional priority",
                          {"gate_s": "moe.gate.topk",
                           "gate_c": "moe.gate.topk"}),
    "sparse_mlp_b_per_image": (
        "gate.per_image on MoE_c (one decision per image; no dropping, "
        "since an image's items all go to its k experts)",
        {"gate_c": "moe.gate.per_image",
         "moe_c": {"capacity_factor": 0.0, "eval_capacity_factor": 0.0}}),
    "sparse_mlp_b_hash": ("gate.hash (chunk): deterministic routing",
                          {"gate_s": "moe.gate.hash",
                           "gate_c": "moe.gate.hash"}),
    "sparse_mlp_b_norr": ("no re-represent layers: MoE_s routes C items "
                          "of length S", {"rr": False}),
    "sparse_mlp_b_k1": ("k_c = 1", {"k_c": 1}),
    "sparse_mlp_b_last4": ("last 4 blocks sparse", {"sparse": 4}),
    "sparse_mlp_b_cf05": ("inference capacity factor 0.5 (both MoE layers)",
                          {"moe_s": {"eval_capacity_factor": 0.5},
                           "moe_c": {"eval_capacity_factor": 0.5}}),
}


def sparse_config(name):
    """The configuration of sparse graph `name` (SPARSE or ABLATIONS) as a
    dict: model, image, patch, hidden, tokens, ds, dc, blocks, classes,
    n_sparse, es, ec, ks, kc, rr, cfg_s, cfg_c."""
    if name in ABLATIONS:
        desc, ch = ABLATIONS[name]
        model, base, n_sparse, es, ec, ks, kc = SPARSE["sparse_mlp_b"]
        model += " (%s)" % desc
    else:
        ch = {}
        model, base, n_sparse, es, ec, ks, kc = SPARSE[name]
    n_sparse = ch.get("sparse", n_sparse)
    kc = ch.get("k_c", kc)
    _, image, patch, hidden, ds, dc, blocks, classes = MIXER[base]
    cin, hgt, wid = image
    tokens = (hgt // patch) * (wid // patch)
    rr = (2 * tokens, hidden // 2) if ch.get("rr", True) else None
    cfg_s = dict(MOE_DEFAULTS, gate=ch.get("gate_s", MOE_DEFAULTS["gate"]))
    cfg_s.update(ch.get("moe_s", {}))
    cfg_c = dict(MOE_DEFAULTS, gate=ch.get("gate_c", MOE_DEFAULTS["gate"]))
    cfg_c.update(ch.get("moe_c", {}))
    return dict(model=model, image=image, patch=patch, hidden=hidden,
                tokens=tokens, ds=ds, dc=dc, blocks=blocks, classes=classes,
                n_sparse=n_sparse, es=es, ec=ec, ks=ks, kc=kc, rr=rr,
                cfg_s=cfg_s, cfg_c=cfg_c)


def sparse_meta(c):
    """The metadata pairs that describe a sparse backbone."""
    rr = c["rr"]
    return [("patch", c["patch"]), ("hidden", c["hidden"]),
            ("tokens", c["tokens"]), ("tokens_mlp_dim", c["ds"]),
            ("channels_mlp_dim", c["dc"]), ("blocks", c["blocks"]),
            ("sparse_blocks", c["n_sparse"]), ("experts_s", c["es"]),
            ("experts_c", c["ec"]), ("k_s", c["ks"]), ("k_c", c["kc"]),
            ("rerepresent", "%dx%d" % rr if rr else "off"),
            ("gate_s", c["cfg_s"]["gate"]), ("gate_c", c["cfg_c"]["gate"])]


def sparse_backbone(g, x, c, noise=True):
    """stem -> mixer blocks -> sparse blocks on image x; returns the last
    block's output [B, S, C].  noise=False: the gates draw no noise
    (noise_std 0; the MoCo momentum encoder is deterministic)."""
    cfg_s, cfg_c = c["cfg_s"], c["cfg_c"]
    if not noise:
        cfg_s = dict(cfg_s, noise_std=0.0)
        cfg_c = dict(cfg_c, noise_std=0.0)
    x = patch_embed(g, "stem", x, c["patch"], c["hidden"])
    for i in range(c["blocks"]):
        if i < c["blocks"] - c["n_sparse"]:
            x = mixer_block(g, i, x, c["ds"], c["dc"])
        else:
            x = sparse_block(g, i, x, c["ds"], c["dc"], c["es"], c["ec"],
                             c["ks"], c["kc"], c["rr"], cfg_s, cfg_c)
    return x


def sum_scalars(g, prefix, terms, out_name):
    """terms[0] + terms[1] + ... in order, by nodes PREFIX.0, PREFIX.1, ...;
    the last writes out_name (made a graph output)."""
    total = terms[0]
    for j, a in enumerate(terms[1:]):
        last = j == len(terms) - 2
        total = g.op("%s.%d" % (prefix, j), "core.add", [total, a], [],
                     out_name=out_name if last else None)
    return g.mark_output(total)


def sparse_graph(name):
    c = sparse_config(name)
    cin, hgt, wid = c["image"]
    g = GraphBuilder(name, ["core", "norm", "moe"])
    for key, value in ([("family", "sparse_mlp"), ("model", c["model"])] +
                       sparse_meta(c) +
                       [("classes", c["classes"]),
                        ("image", "x".join(str(d) for d in c["image"])),
                        ("generator", GENERATOR)]):
        g.meta(key, value)
    x = g.add_input("image", [1, cin, hgt, wid], init_normal(0.0, 1.0))
    x = sparse_backbone(g, x, c)
    classifier_head(g, x, c["classes"])
    # aux_loss: the sum of the gates' aux outputs, in block order (0 in
    # inference; the training loss adds it).
    auxes = [i for i, t in enumerate(g.tensors)
             if t["name"].endswith(".gate.aux")]
    sum_scalars(g, "aux_sum", auxes, "aux_loss")
    return g


# MoCo v3 pre-training graphs (MODELS.md Part 1 and section 4): the
# backbone of a sparse graph with MoCo's heads and momentum encoder.
MOCO = {
    # name: (backbone graph, projector hidden, output dim, predictor
    #        hidden)
    "moco_sparse_mlp_fmnist": ("sparse_mlp_fmnist", 512, 128, 512),
    "moco_sparse_mlp_b": ("sparse_mlp_b", 4096, 256, 4096),
}
MOCO_TAU = 0.2
MOCO_M0 = 0.99


def batch_norm(g, prefix, x, affine=True):
    """norm.batch_norm over the batch of x [B, d] (eps 1e-5, momentum
    0.1): weight Ones and bias Zeros when affine; the running statistics
    are state named after the node (scope included), so each encoder copy
    keeps its own (they are used in inference only, and two nodes must
    not update one state tensor in place)."""
    d = g.shape(x)[-1]
    ins = [x]
    if affine:
        ins.append(g.add_param(prefix + ".weight", [d], init_ones()))
        ins.append(g.add_param(prefix + ".bias", [d], init_zeros()))
    ins.append(g.add_state(g.scope + prefix + ".running_mean", [d],
                           init_zeros()))
    ins.append(g.add_state(g.scope + prefix + ".running_var", [d],
                           init_ones()))
    return g.op(prefix, "norm.batch_norm", ins, g.shape(x),
                [("affine", 1 if affine else 0), ("eps", 1e-5),
                 ("momentum", 0.1)])


def moco_mlp(g, prefix, x, dims, last_bn):
    """MoCo v3's _build_mlp: for each layer l (weights Xavier uniform, no
    bias) PREFIX.fc<l+1>; between layers PREFIX.bn<l+1> (batch norm) and
    PREFIX.act<l+1> (ReLU); after the last one a batch norm without affine
    when last_bn."""
    for layer in range(len(dims) - 1):
        n = layer + 1
        x = linear(g, "%s.fc%d" % (prefix, n), x, dims[layer],
                   dims[layer + 1], bias=False)
        if layer < len(dims) - 2:
            x = batch_norm(g, "%s.bn%d" % (prefix, n), x)
            x = g.op("%s.act%d" % (prefix, n), "core.relu", [x],
                     g.shape(x))
        elif last_bn:
            x = batch_norm(g, "%s.bn%d" % (prefix, n), x, affine=False)
    return x


def moco_graph(name):
    """MoCo v3 (MODELS.md section 4.1) around a sparse backbone.

    Inputs: view1, view2 (the two augmented views of the same images,
    [B, Cin, H, W]) and m (f32 [], the momentum of this step; Constant
    0.99 when not fed).  Encoder copies are scoped: q1./q2. the query
    encoder on view 1/2, k1./k2. the momentum encoder on view 1/2.

    Query encoder: the backbone (parameters named as in the classifier
    graph, so a checkpoint's backbone loads into it) -> `features` ->
    projector (C -> h -> h -> d, last batch norm without affine) ->
    predictor (d -> h -> d, last batch norm without affine too: MoCo v3's
    ViT heads), run on both views with shared parameters.

    Momentum encoder: backbone + projector again, its parameters state
    tensors `momentum.<name>` that start equal to their twins (same
    initialiser and seed).  One moco.momentum_update node per pair,
    `momentum_update.<name>` (theta_k <- m theta_k + (1 - m) theta_q, in
    place), runs before the keys are computed, and the key encoder reads
    its output (the updated values), never the state: MoCo v3's order
    (update the momentum encoder, then compute k1, k2 under no_grad).  The
    op is flagged SMLP_OP_NO_GRAD, so no gradient path runs through it.
    The momentum encoder's gates draw no noise (deterministic keys,
    MODELS.md 1.3.5) and their aux outputs are not in the loss.

    Loss: moco.loss(q1, q2, k1, k2) with tau (= ctr(q1, k2) + ctr(q2, k1))
    -> `moco_loss`; the query gates' aux outputs (both views) summed ->
    `aux_loss`; `loss` = moco_loss + aux_loss.  All three are outputs."""
    backbone, hidden_p, dim, hidden_q = MOCO[name]
    c = sparse_config(backbone)
    cin, hgt, wid = c["image"]
    C = c["hidden"]
    g = GraphBuilder(name, ["core", "norm", "moe", "moco"])
    for key, value in ([("family", "moco_sparse_mlp"),
                        ("model", "MoCo v3 on " + c["model"]),
                        ("backbone", backbone)] + sparse_meta(c) +
                       [("projector", "%d-%d-%d-%d" % (C, hidden_p,
                                                       hidden_p, dim)),
                        ("predictor", "%d-%d-%d" % (dim, hidden_q, dim)),
                        ("tau", MOCO_TAU), ("m0", MOCO_M0),
                        ("momentum_order", "update, then keys"),
                        ("image", "x".join(str(d) for d in c["image"])),
                        ("generator", GENERATOR)]):
        g.meta(key, value)
    views = [g.add_input(v, [1, cin, hgt, wid], init_normal(0.0, 1.0))
             for v in ("view1", "view2")]
    m = g.add_tensor("m", [], kind="Input", batched=False,
                     init=init_constant(MOCO_M0))

    def encoder(scope, x, noise=True):
        g.scope = scope
        f = pooled_features(g, sparse_backbone(g, x, c, noise))
        y = moco_mlp(g, "projector", f, [C, hidden_p, hidden_p, dim], True)
        g.scope = ""
        return y

    def shared(pname, shape, init):
        t = g.index[pname]
        if g.shapes[t] != list(shape):
            raise ValueError("%s: %s reused with another shape"
                             % (name, pname))
        return t

    def predictor(scope, x):
        g.scope = scope
        # MoCo v3's ViT predictor keeps _build_mlp's last batch norm
        # (MoCo_ResNet drops it): MODELS.md 4.1.
        y = moco_mlp(g, "predictor", x, [dim, hidden_q, dim], True)
        g.scope = ""
        return y

    first = len(g.tensors)
    z1 = encoder("q1.", views[0])
    encoded = [t for t in range(first, len(g.tensors))
               if g.tensors[t].get("kind") == "Parameter"]
    q1 = predictor("q1.", z1)
    g.param_hook = shared
    q2 = predictor("q2.", encoder("q2.", views[1]))
    g.param_hook = None
    updated = {}
    for t in encoded:
        pname = g.tensors[t]["name"]
        init = {k: v for k, v in g.tensors[t]["init"].items()
                if k != "seed"}
        k = g.add_state("momentum." + pname, g.shapes[t], init,
                        seed_name=pname)
        updated[pname] = g.op("momentum_update." + pname,
                              "moco.momentum_update", [k, t, m],
                              g.shapes[t], batched=False)

    def momentum(pname, shape, init):
        if pname not in updated:
            raise ValueError("%s: %s has no momentum twin" % (name, pname))
        return updated[pname]

    g.param_hook = momentum
    k1 = encoder("k1.", views[0], noise=False)
    k2 = encoder("k2.", views[1], noise=False)
    g.param_hook = None
    # Its two n x n x dim similarity products cost 2 n dim per image in a
    # batch of n: counted at n = 1, as smlp-graph stats (batch 1) does.
    loss = g.mark_output(g.op("moco_loss", "moco.loss", [q1, q2, k1, k2],
                              [], [("tau", MOCO_TAU)], macs=2 * dim,
                              out_name="moco_loss"))
    auxes = [i for i, t in enumerate(g.tensors)
             if t["name"].endswith(".gate.aux") and
             t["name"].startswith(("q1.", "q2."))]
    aux = sum_scalars(g, "aux_sum", auxes, "aux_loss")
    g.mark_output(g.op("loss", "core.add", [loss, aux], [], out_name="loss"))
    return g


GRAPHS = {name: mixer_graph for name in MIXER}
GRAPHS.update({name: sparse_graph for name in SPARSE})
GRAPHS.update({name: sparse_graph for name in ABLATIONS})
GRAPHS.update({name: moco_graph for name in MOCO})


def build(name):
    return GRAPHS[name](name)


# ---------------------------------------------------------------------------
# A minimal FlatBuffers reader for schemas/graph.fbs, independent of flatc,
# so the test can check that a built graphs/NAME.fbs holds exactly what the
# generator meant (flatc's --json prints floats with 6 and doubles with 12
# significant digits, so a JSON round trip cannot show exact values).
# Fields are listed in declaration order (= field id); scalars carry their
# schema default.

ENUMS = {
    "DType": ["F32", "I32"],
    "TensorKind": ["Activation", "Parameter", "State", "Input", "Output"],
    "InitKind": ["Zeros", "Ones", "Constant", "Uniform", "Normal"],
    "AttrType": ["Int", "Float", "String", "Ints", "Floats"],
}

SCHEMA = {
    "Graph": [("format_version", "uint", 1), ("name", "string", None),
              ("plugins", "[string]", None), ("tensors", "[Tensor]", None),
              ("nodes", "[Node]", None), ("metadata", "[KeyValue]", None)],
    "Tensor": [("name", "string", None), ("dtype", "DType", "F32"),
               ("kind", "TensorKind", "Activation"),
               ("shape", "[long]", None), ("init", "Init", None)],
    "Init": [("kind", "InitKind", "Zeros"), ("a", "double", 0.0),
             ("b", "double", 0.0), ("seed", "ulong", 0)],
    "Attr": [("name", "string", None), ("type", "AttrType", "Int"),
             ("i", "long", 0), ("f", "double", 0.0), ("s", "string", None),
             ("ints", "[long]", None), ("floats", "[double]", None)],
    "Node": [("name", "string", None), ("op", "string", None),
             ("inputs", "[int]", None), ("outputs", "[int]", None),
             ("attrs", "[Attr]", None)],
    "KeyValue": [("key", "string", None), ("value", "string", None)],
}

SCALARS = {"uint": "<I", "int": "<i", "long": "<q", "ulong": "<Q",
           "float": "<f", "double": "<d"}


def _f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def fbs_decode(data, table="Graph", ident=b"SMLG"):
    """Decodes a graph FlatBuffer into flatc-JSON-like dicts with every
    field present (defaults filled in, absent vectors/tables as None)."""
    if len(data) < 8 or data[4:8] != ident:
        raise ValueError("not an smlp graph (file identifier %r)"
                         % data[4:8])

    def u32(pos):
        return struct.unpack_from("<I", data, pos)[0]

    def string(pos):
        n = u32(pos)
        return data[pos + 4:pos + 4 + n].decode("utf-8")

    def read_table(pos, name):
        vt = pos - struct.unpack_from("<i", data, pos)[0]
        vt_size = struct.unpack_from("<H", data, vt)[0]
        out = {}
        for fid, (field, ftype, default) in enumerate(SCHEMA[name]):
            off = 0
            if 4 + 2 * fid < vt_size:
                off = struct.unpack_from("<H", data, vt + 4 + 2 * fid)[0]
            if not off:
                out[field] = default
                continue
            p = pos + off
            if ftype in ENUMS:
                out[field] = ENUMS[ftype][struct.unpack_from("<b", data, p)[0]]
            elif ftype in SCALARS:
                out[field] = struct.unpack_from(SCALARS[ftype], data, p)[0]
            else:
                target = p + u32(p)
                if ftype == "string":
                    out[field] = string(target)
                elif ftype.startswith("["):
                    elem = ftype[1:-1]
                    n = u32(target)
                    base = target + 4
                    if elem in SCALARS:
                        size = struct.calcsize(SCALARS[elem])
                        out[field] = [struct.unpack_from(SCALARS[elem], data,
                                                         base + size * k)[0]
                                      for k in range(n)]
                    elif elem == "string":
                        out[field] = [string(base + 4 * k + u32(base + 4 * k))
                                      for k in range(n)]
                    else:
                        out[field] = [read_table(base + 4 * k
                                                 + u32(base + 4 * k), elem)
                                      for k in range(n)]
                else:
                    out[field] = read_table(target, ftype)
        return out

    return read_table(u32(0), table)


def fbs_complete(obj, table="Graph"):
    """obj (generator/flatc JSON form) with every field present, as
    fbs_decode returns it (floats rounded to float32)."""
    out = {}
    for field, ftype, default in SCHEMA[table]:
        v = obj.get(field, default) if obj is not None else default
        if v is None or ftype in ENUMS or ftype == "string":
            out[field] = v
        elif ftype == "float":
            out[field] = _f32(v)
        elif ftype in SCALARS:
            out[field] = type(default)(v)
        elif ftype.startswith("["):
            elem = ftype[1:-1]
            if elem == "float":
                out[field] = [_f32(x) for x in v]
            elif elem in SCALARS or elem == "string":
                out[field] = [x if elem == "string" else
                              (float(x) if elem == "double" else int(x))
                              for x in v]
            else:
                out[field] = [fbs_complete(x, elem) for x in v]
        else:
            out[field] = fbs_complete(v, ftype)
    return out


def verify_fbs(path):
    """Returns a list of differences between the binary graph at path and
    the generator's graph of the same name (empty when they agree)."""
    with open(path, "rb") as f:
        got = fbs_decode(f.read())
    name = got["name"]
    if name not in GRAPHS:
        return ["%s: graph %r is not made by %s" % (path, name, GENERATOR)]
    want = fbs_complete(json.loads(build(name).to_json()))
    diffs = []

    def walk(a, b, where):
        if len(diffs) >= 10:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for k in a:
                walk(a[k], b.get(k), where + "." + k)
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for k, (x, y) in enumerate(zip(a, b)):
                key = x.get("name") or x.get("key") \
                    if isinstance(x, dict) else None
                walk(x, y, "%s[%s]" % (where, repr(key) if key else k))
        elif a != b or type(a) != type(b):
            diffs.append("%s: %s%s: %r, generator has %r"
                         % (path, name, where, a, b))

    walk(got, want, "")
    return diffs


# ---------------------------------------------------------------------------

def default_out():
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(os.path.dirname(here), "graphs")


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="gen_graphs.py",
        description="Write the smlp model graphs as JSON (schemas/graph.fbs).")
    ap.add_argument("names", nargs="*", metavar="NAME",
                    help="graphs to make (default: all)")
    ap.add_argument("--out", metavar="DIR", default=None,
                    help="output directory (default: graphs/ of the tree)")
    ap.add_argument("--check", action="store_true",
                    help="compare with DIR instead of writing; exit 1 if "
                         "any file differs")
    ap.add_argument("--stats", action="store_true",
                    help="print parameters and MACs per image")
    ap.add_argument("--list", action="store_true",
                    help="print the graph names")
    ap.add_argument("--verify", metavar="FBS", action="append", default=[],
                    help="check that a built graph (flatc -b output) holds "
                         "exactly the generator's graph (repeatable)")
    args = ap.parse_args(argv)

    if args.verify:
        status = 0
        for path in args.verify:
            try:
                diffs = verify_fbs(path)
            except (OSError, ValueError, struct.error, IndexError) as e:
                diffs = ["%s: %s" % (path, e)]
            for d in diffs:
                print(d)
            if diffs:
                status = 1
            else:
                print("ok: %s" % path)
        return status

    names = args.names or sorted(GRAPHS)
    unknown = [n for n in names if n not in GRAPHS]
    if unknown:
        ap.error("unknown graph(s): %s (known: %s)"
                 % (", ".join(unknown), ", ".join(sorted(GRAPHS))))
    if args.list:
        for n in names:
            print(n)
        return 0
    out = args.out or default_out()

    if args.stats:
        print("%-22s %12s %14s %10s %8s"
              % ("graph", "params", "MACs/image", "params(M)", "GMACs"))
        for n in names:
            g = build(n)
            p = g.param_count()
            print("%-22s %12d %14d %10.2f %8.2f"
                  % (n, p, g.macs, p / 1e6, g.macs / 1e9))
        if not args.check:
            return 0

    if args.check:
        differ = []
        for n in names:
            path = os.path.join(out, n + ".json")
            try:
                with open(path, "r", encoding="utf-8", newline="") as f:
                    old = f.read()
            except OSError:
                old = None
            if old != build(n).to_json():
                differ.append(path)
        for path in differ:
            print("differs: %s" % path)
        if differ:
            print("%d of %d graph(s) differ from the generator; run "
                  "python3 %s" % (len(differ), len(names), GENERATOR))
            return 1
        return 0

    os.makedirs(out, exist_ok=True)
    for n in names:
        path = os.path.join(out, n + ".json")
        text = build(n).to_json()
        try:
            with open(path, "r", encoding="utf-8", newline="") as f:
                if f.read() == text:
                    continue        # unchanged: keep the timestamp
        except OSError:
            pass
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
        print("wrote %s" % path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
