#!/usr/bin/python3
"""Independent PyTorch reference for the smlp Sparse-MLP graphs (issue 3,
"reference checks").

What it computes
  1. sparse_mlp_fmnist (graphs/sparse_mlp_fmnist.json) at batch 4, in
     inference mode: random, non-degenerate values for every Parameter of
     the graph, a random `image` [4,1,28,28], and the float32 forward pass:
     `features`, `logits` and, for every MoE layer, the gate's expert,
     slot, combine_weight and load.
  2. One MoE layer of sparse_mlp_s, the MoE_s layer of block 6
     (blocks.6.moe_s: items = C1 = 256 channels of length S1 = 392 per
     image, E = 4, k = 1, D_S = 256, moe.gate.importance): a random input
     `x` [2*256, 392], the layer's parameters, and the expected combine
     output `y` and gate outputs in inference mode (eval_capacity_factor)
     and in training mode with noise_std = 0 (capacity_factor, plus the
     vmoe aux loss aux_weight * 1/2 * CV^2(importance)).

  The model code is written from the operator contract /work/shared/OPS.md
  (sections core, norm, moe and "What a Sparse block is") and MODELS.md
  Part 1, NOT from the C plugins; the graph JSON is read only for tensor
  names and shapes and for node attributes (eps, k, group_size, capacity
  factors, aux weight).  Every routing decision is checked for robustness:
  the model is also run in float64 and must route identically, and the
  margins of all decisions (top-k gaps, importance-score gaps at capacity
  boundaries and between items sharing an expert) must be large; the seed
  is advanced until they are (the chosen seed is printed and written to
  the files' __metadata__).

Outputs (safetensors, written with struct + json; no safetensors package)
  tests/reference/sparse_mlp_fmnist.safetensors
      `expected.features`, `expected.logits`,
      `expected.blocks.N.moe_X.gate.{expert,slot,combine_weight,load}`.
  tests/reference/sparse_mlp_s_moe.safetensors
      `expected.y`,
      `expected.blocks.6.moe_s.gate.{expert,slot,combine_weight,load,aux}`
      and the same under `expected_train.` (training, noise_std = 0).
  The parameters (under their graph names) and the input (`image`, `x`)
  are not stored: they come from a counter-based generator (below) that
  the C test implements too, and each file's __metadata__ holds its
  settings per tensor, "init.NAME": "KIND SEED CENTER HALF SUM" (the sum
  of the float32 values, which the C test checks).  So the files stay
  small (28 KB and 1.6 MB instead of 7.1 and 5.7 MB).
  tests/check_reference.c compares the C runtime against these files
  (relative error max|a-b|/max|b| <= 1e-4; routing and loads exactly).

How to rerun (by hand; this script is NOT run in CI, its outputs are
committed):
    /usr/bin/python3 tests/reference/sparse_mlp_ref.py [--out DIR]
Needs Debian's python3-torch (1.13) and the Python standard library only.
The run is deterministic (fixed seeds, OPENBLAS_NUM_THREADS=1, one torch
thread).
"""

import argparse
import array
import json
import math
import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# Robustness thresholds for routing decisions (absolute gaps between
# softmax values).  DECISIVE: the k-th vs (k+1)-th p of an item (which
# experts; also the order of an item's choices) and the importance scores
# on either side of a capacity boundary (who is dropped).  ORDER: any two
# items taking the same expert at the same choice rank (their slot order);
# float32 rounding differences between two implementations are ~1e-7.
DECISIVE_MARGIN = 1e-3
ORDER_MARGIN = 1e-5

# Seeds.  The base seed draws every parameter but the routers and the
# input; each router weight is then drawn from its own seed
# BASE * 100000 + 1000 * layer + t for t = 0, 1, ... until its layer's
# routing margins pass (layers in graph order, so a router is chosen with
# everything upstream of it fixed).
FMNIST_SEED = 1
MOE_S_SEED = 2
MAX_TRIES = 1000
# Router weights ~ normal(0, (scale / sqrt(d))^2): logits of std ~ scale
# for unit-variance items.  k = 1 layers route decisively with a large
# scale; for k = 2 the 2nd-vs-3rd gap is widest with a moderate one.
ROUTER_SCALE = {1: 3.0, 2: 1.5}


# ---------------------------------------------------------------------------
# The graph JSON: names, shapes, attributes.

def load_graph(name):
    with open(os.path.join(ROOT, "graphs", name + ".json"), encoding="utf-8") as f:
        return json.load(f)


def graph_params(g):
    """[(name, shape)] of the Parameter tensors, in graph order."""
    return [(t["name"], list(t["shape"])) for t in g["tensors"]
            if t.get("kind") == "Parameter"]


def node_attrs(g, node):
    for n in g["nodes"]:
        if n["name"] == node:
            out = {}
            for a in n.get("attrs", []):
                out[a["name"]] = a.get({"Int": "i", "Float": "f", "String": "s",
                                        "Ints": "ints",
                                        "Floats": "floats"}[a.get("type", "Int")],
                                       0)
            return out
    raise KeyError("graph %s has no node %s" % (g["name"], node))


def has_node(g, node):
    return any(n["name"] == node for n in g["nodes"])


def meta(g, key):
    for kv in g["metadata"]:
        if kv["key"] == key:
            return kv["value"]
    raise KeyError(key)


# ---------------------------------------------------------------------------
# Random, non-degenerate parameters and inputs from a counter-based
# generator that tests/check_reference.c implements too, so that the
# committed files hold only the generator's settings ("init.NAME" in
# __metadata__), not megabytes of weights.
#
#   u_j = (mix64(seed + (j + 1) * 0x9E3779B97F4A7C15) >> 40) * 2^-24
#
# (mix64 = splitmix64's finaliser; j = 0, 1, ... the element; 24-bit
# uniforms in [0, 1), exact in float and double).  Kind "u": element j =
# float32(center + (2 u_j - 1) * half); kind "n" (an Irwin-Hall normal,
# mean center, std half): float32(center + (u_12j + ... + u_12j+11 - 6)
# * half).  The arithmetic is in double on both sides and rounded to
# float32 once; the file also records each tensor's sum, which the C test
# checks against its own values.

GOLDEN = 0x9E3779B97F4A7C15
MASK64 = (1 << 64) - 1


def counter_uniform(seed, n):
    """u_0 .. u_n-1 of the stream `seed` (float64)."""
    u64 = numpy.uint64
    with numpy.errstate(over="ignore"):
        z = u64(seed & MASK64) + numpy.arange(1, n + 1, dtype=u64) * u64(GOLDEN)
        z = (z ^ (z >> u64(30))) * u64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> u64(27))) * u64(0x94D049BB133111EB)
        z = z ^ (z >> u64(31))
    return (z >> u64(40)).astype(numpy.float64) * 2.0 ** -24


def counter_tensor(kind, seed, center, half, shape):
    """(float32 tensor, its init spec string) for kind "u" or "n"."""
    n = math.prod(shape)
    if kind == "u":
        v = center + (2.0 * counter_uniform(seed, n) - 1.0) * half
    elif kind == "n":
        v = center + (counter_uniform(seed, 12 * n).reshape(n, 12).sum(1)
                      - 6.0) * half
    else:
        raise ValueError(kind)
    t = torch.from_numpy(v.astype(numpy.float32)).reshape(shape)
    spec = "%s %d %r %r %r" % (kind, seed, float(center), float(half),
                               t.double().sum().item())
    return t.contiguous(), spec


def param_init(name, shape):
    """(kind, center, half) of a parameter but the routers: linear/conv/
    expert weights Xavier uniform, biases and layer-norm parameters small
    random (not 0/1)."""
    if name.endswith(".bias"):
        return "u", 0.0, 0.1
    if len(shape) == 1:                      # layer-norm weight (gamma)
        return "u", 1.0, 0.2
    if len(shape) == 4:                      # conv [C, Cin, P, P]: PyTorch fans
        fan_in = shape[1] * shape[2] * shape[3]
        fan_out = shape[0] * shape[2] * shape[3]
        return "u", 0.0, math.sqrt(6.0 / (fan_in + fan_out))
    # [out, in] or stacked experts [E, out, in]
    return "u", 0.0, math.sqrt(6.0 / (shape[-1] + shape[-2]))


def make_params(specs, base_seed, init):
    """Values for [(name, shape)] but the routers (*.gate.weight), the
    i-th from seed base_seed * 100000 + 50000 + i; their specs go to
    init[name]."""
    out = {}
    for i, (name, shape) in enumerate(specs):
        if name.endswith(".gate.weight"):
            continue
        kind, center, half = param_init(name, shape)
        out[name], init[name] = counter_tensor(
            kind, base_seed * 100000 + 50000 + i, center, half, shape)
    return out


def make_input(shape, base_seed, name, init):
    """A unit-normal input from seed base_seed * 100000 + 99999."""
    t, init[name] = counter_tensor("n", base_seed * 100000 + 99999, 0.0, 1.0,
                                   shape)
    return t


def router_weight(shape, seed, scale):
    """A router weight [E, d] ~ normal(0, (scale / sqrt(d))^2), float32,
    and its init spec."""
    return counter_tensor("n", seed, 0.0, scale / math.sqrt(shape[-1]), shape)


# ---------------------------------------------------------------------------
# Operators (OPS.md), for float32 or float64 tensors.

def patch_embed(img, w, b, p):
    """core.patch_embed: PxP convolution with stride P; [B, S, C] with
    patches in row-major (row, col) order."""
    y = torch.nn.functional.conv2d(img, w, b, stride=p)  # [B, C, H/P, W/P]
    return y.flatten(2).transpose(1, 2).contiguous()


def layer_norm(x, gamma, beta, eps):
    """norm.layer_norm over the last axis, biased variance, then affine."""
    mu = x.mean(dim=-1, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * gamma + beta


def linear(x, w, b, axis=-1):
    """core.linear: y = W.x along axis (+ b).  axis -1 mixes channels,
    axis -2 mixes tokens (a left multiply per image)."""
    if axis == -1:
        y = torch.matmul(x, w.t())
        return y + b if b is not None else y
    if axis == -2:
        y = torch.matmul(w, x)
        return y + b[:, None] if b is not None else y
    raise ValueError(axis)


def gelu(x):
    """core.gelu, approximate = none: x * Phi(x) with erf."""
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def relu(x):
    return torch.clamp(x, min=0)


class Routing:
    """Outputs of a gate plus diagnostics."""


def capacity(k, group, cf, experts, multiple):
    """cap = ceil(k*G*cf/E) rounded up to `multiple`, at least 1; cf <= 0:
    no dropping (cap = G)."""
    if cf <= 0:
        return group
    cap = math.ceil(k * group * cf / experts)
    if multiple > 1:
        cap = (cap + multiple - 1) // multiple * multiple
    return max(cap, 1)


def gate_importance(x, wg, attrs, training):
    """moe.gate.importance (OPS.md "The gate contract"): returns a Routing
    with expert, slot, weight [N,k], slot_item [E,M], aux [], load [E,2]
    and the decision margins."""
    n_items, _ = x.shape
    n_exp = wg.shape[0]
    k = int(attrs.get("k", 1))
    group = int(attrs.get("group_size", 0)) or n_items
    cf_train = float(attrs.get("capacity_factor", 1.0))
    cf = cf_train if training else float(attrs.get("eval_capacity_factor",
                                                   cf_train))
    multiple = int(attrs.get("capacity_multiple", 1))
    noise_std = float(attrs.get("noise_std", 0.0))
    normalize = attrs.get("normalize", "none")
    aux_kind = attrs.get("aux", "vmoe")
    aux_weight = float(attrs.get("aux_weight", 0.01))
    if training and noise_std > 0:
        raise ValueError("the reference cannot draw the session's gate "
                         "noise: use noise_std = 0 in training")
    if normalize != "none" or aux_kind != "vmoe":
        raise ValueError("reference implements normalize=none, aux=vmoe")
    assert k <= n_exp and n_items % group == 0
    cap = capacity(k, group, cf, n_exp, multiple)
    n_groups = n_items // group
    m_rows = n_groups * cap

    logits = torch.matmul(x, wg.t())            # [N, E], no bias
    p = torch.softmax(logits, dim=-1)
    pl = p.tolist()                             # exact values as floats

    expert = [[0] * k for _ in range(n_items)]
    slot = [[-1] * k for _ in range(n_items)]
    weight = [[0.0] * k for _ in range(n_items)]
    slot_item = [[-1] * m_rows for _ in range(n_exp)]
    load = [[0, 0] for _ in range(n_exp)]
    topk_margin = math.inf
    drop_margin = math.inf
    order_margin = math.inf
    cv2s = []

    for g in range(n_groups):
        items = range(g * group, (g + 1) * group)
        # k largest p per item, ties -> lower expert
        choice = {}
        for n in items:
            ranked = sorted(range(n_exp), key=lambda e: (-pl[n][e], e))
            choice[n] = ranked[:k]
            for j in range(min(k, n_exp - 1)):
                gap = pl[n][ranked[j]] - pl[n][ranked[j + 1]]
                topk_margin = min(topk_margin, gap)
        # priority: descending importance score (largest p), ties -> lower
        # item index
        score = {n: max(pl[n]) for n in items}
        order = sorted(items, key=lambda n: (-score[n], n))
        count = [0] * n_exp
        for j in range(k):
            # items taking each expert at this rank, in priority order
            per_expert = [[] for _ in range(n_exp)]
            for n in order:
                e = choice[n][j]
                expert[n][j] = e
                if count[e] < cap:
                    s = g * cap + count[e]
                    slot[n][j] = s
                    slot_item[e][s] = n
                    weight[n][j] = pl[n][e]   # normalize = none
                    load[e][0] += 1
                    kept = True
                else:
                    load[e][1] += 1
                    kept = False
                count[e] += 1
                per_expert[e].append((score[n], kept))
            for lst in per_expert:
                for a, b in zip(lst, lst[1:]):
                    order_margin = min(order_margin, a[0] - b[0])
                    if a[1] and not b[1]:
                        drop_margin = min(drop_margin, a[0] - b[0])
        # vmoe importance loss of this group: CV^2 of Imp_e = sum_n p_ne
        imp = p[g * group:(g + 1) * group].sum(dim=0)
        cv2s.append(imp.var(unbiased=False) / imp.mean() ** 2)

    r = Routing()
    r.k, r.cap, r.cf, r.n_groups = k, cap, cf, n_groups
    r.expert = torch.tensor(expert, dtype=torch.int32)
    r.slot = torch.tensor(slot, dtype=torch.int32)
    # the kept choices' p, taken from p itself so that the gradient reaches
    # the router (tests/reference/grad_ref.py); the same values as `weight`
    r.weight = torch.where(r.slot >= 0, p.gather(1, r.expert.long()),
                           torch.zeros((), dtype=x.dtype))
    assert r.weight.tolist() == weight
    r.slot_item = torch.tensor(slot_item, dtype=torch.int32)
    r.load = torch.tensor(load, dtype=torch.int32)
    if training:
        # vmoe: aux_weight * 1/2 * (CV^2(importance) + CV^2(load)); the load
        # term only with noise (none here); averaged over the groups.
        r.aux = (aux_weight * 0.5 * torch.stack(cv2s).mean()).to(x.dtype)
    else:
        r.aux = torch.zeros((), dtype=x.dtype)
    r.topk_margin, r.drop_margin, r.order_margin = (topk_margin, drop_margin,
                                                    order_margin)
    return r


def dispatch(x, slot_item):
    """moe.dispatch: buf[e, m] = x[slot_item[e, m]], zero rows where -1."""
    e_n, m_n = slot_item.shape
    buf = torch.zeros((e_n, m_n, x.shape[1]), dtype=x.dtype)
    idx = slot_item.long()
    mask = idx >= 0
    buf[mask] = x[idx[mask]]
    return buf


def expert_ffn(buf, w1, b1, w2, b2, slot_item, activation):
    """moe.expert_ffn: per expert e, act(buf_e W1_e^T + b1_e) W2_e^T + b2_e;
    rows marked -1 in slot_item are zero."""
    act = {"gelu": gelu, "relu": relu}[activation]
    h = act(torch.matmul(buf, w1.transpose(1, 2)) + b1[:, None, :])
    out = torch.matmul(h, w2.transpose(1, 2)) + b2[:, None, :]
    return out * (slot_item >= 0)[:, :, None].to(out.dtype)


def combine(out, expert, slot, weight):
    """moe.combine: y[n] = sum_j weight[n,j] * out[expert[n,j], slot[n,j]]
    over kept choices, summed in j order."""
    n_items, k = expert.shape
    y = torch.zeros((n_items, out.shape[2]), dtype=out.dtype)
    for j in range(k):
        kept = slot[:, j] >= 0
        rows = out[expert[:, j].long().clamp(min=0), slot[:, j].long().clamp(min=0)]
        y = y + torch.where(kept[:, None], weight[:, j:j + 1] * rows,
                            torch.zeros_like(rows))
    return y


def moe_layer(x, P, prefix, attrs, act, training):
    """gate -> dispatch -> expert_ffn -> combine (four nodes); attrs: the
    gate node's attributes, act: the expert_ffn activation."""
    r = gate_importance(x, P[prefix + ".gate.weight"], attrs, training)
    buf = dispatch(x, r.slot_item)
    out = expert_ffn(buf, P[prefix + ".experts.fc1.weight"],
                     P[prefix + ".experts.fc1.bias"],
                     P[prefix + ".experts.fc2.weight"],
                     P[prefix + ".experts.fc2.bias"], r.slot_item, act)
    return combine(out, r.expert, r.slot, r.weight), r


# ---------------------------------------------------------------------------
# The models (OPS.md "What a Sparse block is"; MODELS.md Part 1).

def ln(P, g, name, x):
    eps = float(node_attrs(g, name).get("eps", 1e-6))
    return layer_norm(x, P[name + ".weight"], P[name + ".bias"], eps)


def lin(P, name, x, axis=-1):
    return linear(x, P[name + ".weight"], P[name + ".bias"], axis)


def graph_moe(x, P, prefix, g, training):
    return moe_layer(x, P, prefix, node_attrs(g, prefix + ".gate"),
                     node_attrs(g, prefix + ".experts").get("activation",
                                                             "gelu"),
                     training)


def mixer_block(P, g, i, x):
    pfx = "blocks.%d" % i
    h = ln(P, g, pfx + ".norm1", x)
    h = lin(P, pfx + ".mlp_tokens.fc2",
            gelu(lin(P, pfx + ".mlp_tokens.fc1", h, axis=-2)), axis=-2)
    u = x + h
    h = ln(P, g, pfx + ".norm2", u)
    h = lin(P, pfx + ".mlp_channels.fc2",
            gelu(lin(P, pfx + ".mlp_channels.fc1", h)))
    return u + h


def sparse_block(P, g, i, x, training, routes):
    """X [B,S,C] -> LN -> rr_in (tokens S->S1 axis -2, channels C->C1) ->
    [B,C1,S1] -> [B*C1,S1] -> MoE_s -> [B,S1,C1] -> rr_out (channels C1->C,
    tokens S1->S) -> U = X + .; LN -> [B*S,C] -> MoE_c -> [B,S,C] -> U + ."""
    pfx = "blocks.%d" % i
    b, s, c = x.shape
    h = ln(P, g, pfx + ".norm1", x)
    h = lin(P, pfx + ".rr_in.tokens", h, axis=-2)          # [B, S1, C]
    h = lin(P, pfx + ".rr_in.channels", h)                 # [B, S1, C1]
    s1, c1 = h.shape[1], h.shape[2]
    h = h.transpose(1, 2).reshape(b * c1, s1)
    h, routes[pfx + ".moe_s"] = graph_moe(h, P, pfx + ".moe_s", g, training)
    h = h.reshape(b, c1, s1).transpose(1, 2)
    h = lin(P, pfx + ".rr_out.channels", h)                # [B, S1, C]
    h = lin(P, pfx + ".rr_out.tokens", h, axis=-2)         # [B, S, C]
    u = x + h
    h = ln(P, g, pfx + ".norm2", u).reshape(b * s, c)
    h, routes[pfx + ".moe_c"] = graph_moe(h, P, pfx + ".moe_c", g, training)
    return u + h.reshape(b, s, c)


def forward(P, g, image, training=False):
    """Whole graph; returns features, logits and {moe prefix: Routing}."""
    routes = {}
    x = patch_embed(image, P["stem.proj.weight"], P["stem.proj.bias"],
                    int(node_attrs(g, "stem")["patch"]))
    for i in range(int(meta(g, "blocks"))):
        if has_node(g, "blocks.%d.moe_s.gate" % i):
            x = sparse_block(P, g, i, x, training, routes)
        else:
            x = mixer_block(P, g, i, x)
    h = ln(P, g, "norm", x)
    features = h.mean(dim=1)
    logits = lin(P, "head", features)
    return features, logits, routes


def used_param_names(g):
    """The parameter names the model code above reads (checked against the
    graph so that a renamed or extra parameter is noticed)."""
    names = ["stem.proj.weight", "stem.proj.bias"]
    for i in range(int(meta(g, "blocks"))):
        pfx = "blocks.%d" % i
        if has_node(g, pfx + ".moe_s.gate"):
            mods = ["norm1", "rr_in.tokens", "rr_in.channels",
                    "rr_out.channels", "rr_out.tokens", "norm2"]
            names += ["%s.%s.%s" % (pfx, m, w) for m in mods
                      for w in ("weight", "bias")]
            for moe in ("moe_s", "moe_c"):
                names.append("%s.%s.gate.weight" % (pfx, moe))
                names += ["%s.%s.experts.%s.%s" % (pfx, moe, fc, w)
                          for fc in ("fc1", "fc2") for w in ("weight", "bias")]
        else:
            mods = ["norm1", "mlp_tokens.fc1", "mlp_tokens.fc2", "norm2",
                    "mlp_channels.fc1", "mlp_channels.fc2"]
            names += ["%s.%s.%s" % (pfx, m, w) for m in mods
                      for w in ("weight", "bias")]
    names += ["norm.weight", "norm.bias", "head.weight", "head.bias"]
    return names


# ---------------------------------------------------------------------------
# safetensors writer (8-byte LE header length, JSON header, raw LE data).

def tensor_bytes(t):
    t = t.contiguous().flatten()
    if t.dtype == torch.float32:
        code, dtype = "f", "F32"
    elif t.dtype == torch.int32:
        code, dtype = "i", "I32"
    else:
        raise TypeError(t.dtype)
    arr = array.array(code, t.tolist())
    assert arr.itemsize == 4
    if sys.byteorder != "little":
        arr.byteswap()
    return dtype, arr.tobytes()


def write_safetensors(path, tensors, metadata):
    """tensors: [(name, tensor)] written in this order."""
    header = {"__metadata__": {k: str(v) for k, v in metadata.items()}}
    blobs = []
    off = 0
    for name, t in tensors:
        if name in header:
            raise ValueError("duplicate tensor %s" % name)
        dtype, data = tensor_bytes(t)
        header[name] = {"dtype": dtype, "shape": list(t.shape),
                        "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    text = json.dumps(header, separators=(", ", ": ")).encode("utf-8")
    text += b" " * ((-(8 + len(text))) % 64)   # data starts 64-aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for data in blobs:
            f.write(data)
    os.replace(tmp, path)
    return os.path.getsize(path)


# ---------------------------------------------------------------------------

def to64(P):
    return {k: v.to(torch.float64) for k, v in P.items()}


def rel_err(a, b):
    return (a.double() - b.double()).abs().max().item() / b.double().abs().max().item()


def margins_ok(routes):
    why = []
    for key, r in routes.items():
        if r.topk_margin < DECISIVE_MARGIN:
            why.append("%s top-k margin %.2e" % (key, r.topk_margin))
        if r.drop_margin < DECISIVE_MARGIN:
            why.append("%s drop margin %.2e" % (key, r.drop_margin))
        if r.order_margin < ORDER_MARGIN:
            why.append("%s order margin %.2e" % (key, r.order_margin))
    return why


def report_routes(routes):
    for key, r in routes.items():
        loads = ", ".join("e%d %d/%d" % (e, kd[0], kd[1])
                          for e, kd in enumerate(r.load.tolist()))
        print("  %-16s k=%d cf=%.2f cap=%d groups=%d  top-k margin %.3e  "
              "drop margin %.3e  order margin %.3e" %
              (key, r.k, r.cf, r.cap, r.n_groups, r.topk_margin,
               r.drop_margin, r.order_margin))
        print("  %-16s load (kept/dropped): %s" % ("", loads))


def gate_tensors(prefix, key, r, with_aux=False):
    out = [("%s.%s.gate.expert" % (prefix, key), r.expert),
           ("%s.%s.gate.slot" % (prefix, key), r.slot),
           ("%s.%s.gate.combine_weight" % (prefix, key), r.weight.float()),
           ("%s.%s.gate.load" % (prefix, key), r.load)]
    if with_aux:
        out.append(("%s.%s.gate.aux" % (prefix, key), r.aux.float()))
    return out


def layer_problems(key, r, r64):
    why = margins_ok({key: r})
    if not (torch.equal(r.expert, r64.expert) and torch.equal(r.slot, r64.slot)):
        why.append("%s: float32 and float64 route differently" % key)
    return why


def choose_routers(P, init, specs, seed, layers, k_of, check):
    """Draws the router weight of each MoE layer in `layers` (graph order)
    from seed*100000 + 1000*layer + t, t = 0, 1, ..., keeping the first
    for which check(P, layer) finds no problem (a list of strings)."""
    shapes = dict(specs)
    for li, key in enumerate(layers):
        name = key + ".gate.weight"
        rejected = []
        for t in range(MAX_TRIES):
            P[name], init[name] = router_weight(
                shapes[name], seed * 100000 + 1000 * li + t,
                ROUTER_SCALE[k_of(key)])
            why = check(P, key)
            if not why:
                break
            rejected.append(why)
        else:
            raise SystemExit("%s: no router weight passes in %d tries"
                             % (key, MAX_TRIES))
        print("  %s.gate.weight: seed %d (tries rejected: %d%s)"
              % (key, seed * 100000 + 1000 * li + t, len(rejected),
                 "; first: " + "; ".join(rejected[0]) if rejected else ""))


def init_metadata(init, names):
    """__metadata__ entries "init.NAME": "KIND SEED CENTER HALF SUM"."""
    if sorted(init) != sorted(names):
        raise SystemExit("init specs differ from the tensors: %s"
                         % sorted(set(init) ^ set(names)))
    return {"init." + n: init[n] for n in names}


def make_fmnist(out_dir):
    g = load_graph("sparse_mlp_fmnist")
    specs = graph_params(g)
    names = [n for n, _ in specs]
    if sorted(names) != sorted(used_param_names(g)):
        raise SystemExit("graph parameters differ from the model's: %s" %
                         sorted(set(names) ^ set(used_param_names(g))))
    batch = 4
    cin, hgt, wid = (int(v) for v in meta(g, "image").split("x"))
    init = {}
    P = make_params(specs, FMNIST_SEED, init)
    image = make_input((batch, cin, hgt, wid), FMNIST_SEED, "image", init)
    layers = [n["name"][:-len(".gate")] for n in g["nodes"]
              if n["op"].startswith("moe.gate.")]
    print("sparse_mlp_fmnist: base seed %d, batch %d, inference; routers:"
          % (FMNIST_SEED, batch))

    def k_of(key):
        return int(node_attrs(g, key + ".gate").get("k", 1))

    def check(P, key):
        # (the layers after `key` run with provisional routers)
        return layer_problems(key, forward(P, g, image)[2][key],
                              forward(to64(P), g, image.double())[2][key])

    for li, key in enumerate(layers):       # provisional routers
        P[key + ".gate.weight"], _ = router_weight(
            dict(specs)[key + ".gate.weight"], FMNIST_SEED * 100000 + 1000 * li,
            ROUTER_SCALE[k_of(key)])
    choose_routers(P, init, specs, FMNIST_SEED, layers, k_of, check)

    feats, logits, routes = forward(P, g, image)
    feats64, logits64, routes64 = forward(to64(P), g, image.double())
    why = []
    for key in layers:
        why += layer_problems(key, routes[key], routes64[key])
    if not any(r.load[:, 1].sum().item() > 0 for r in routes.values()):
        why.append("no item dropped in any layer")
    if why:
        raise SystemExit("sparse_mlp_fmnist: " + "; ".join(why))
    report_routes(routes)
    print("  float32 vs float64: features rel err %.2e, logits rel err %.2e"
          % (rel_err(feats, feats64), rel_err(logits, logits64)))
    tensors = [("expected.features", feats), ("expected.logits", logits)]
    for key, r in routes.items():
        tensors += gate_tensors("expected", key, r)
    path = os.path.join(out_dir, "sparse_mlp_fmnist.safetensors")
    size = write_safetensors(path, tensors, dict({
        "graph": "sparse_mlp_fmnist", "batch": batch, "seed": FMNIST_SEED,
        "mode": "inference", "generator": "tests/reference/sparse_mlp_ref.py"},
        **init_metadata(init, names + ["image"])))
    print("wrote %s (%d bytes)" % (path, size))


def make_moe_s(out_dir):
    g = load_graph("sparse_mlp_s")
    layer = "blocks.6.moe_s"
    specs = [(n, s) for n, s in graph_params(g) if n.startswith(layer + ".")]
    names = [n for n, _ in specs]
    attrs = node_attrs(g, layer + ".gate")
    items = int(attrs["group_size"])
    d = dict(specs)[layer + ".gate.weight"][-1]
    batch = 2
    train_attrs = dict(attrs, noise_std=0.0)
    act = node_attrs(g, layer + ".experts").get("activation", "gelu")
    init = {}
    P = make_params(specs, MOE_S_SEED, init)
    x = make_input((batch * items, d), MOE_S_SEED, "x", init)

    def layer_run(P, x, training):
        return moe_layer(x, P, layer, train_attrs if training else attrs, act,
                         training)

    def check(P, key):
        # inference and training routing must both pass
        why = []
        for training, label in ((False, key), (True, key + " (train)")):
            _, r = layer_run(P, x, training)
            _, r64 = layer_run(to64(P), x.double(), training)
            why += layer_problems(label, r, r64)
            if not training and r.load[:, 1].sum().item() == 0:
                why.append("no item dropped in inference")
        return why

    print("sparse_mlp_s %s: base seed %d, x [%d, %d]; router:"
          % (layer, MOE_S_SEED, batch * items, d))
    choose_routers(P, init, specs, MOE_S_SEED, [layer],
                   lambda key: int(attrs.get("k", 1)), check)
    y, r = layer_run(P, x, False)
    yt, rt = layer_run(P, x, True)
    y64, r64 = layer_run(to64(P), x.double(), False)
    yt64, rt64 = layer_run(to64(P), x.double(), True)
    why = (layer_problems(layer, r, r64)
           + layer_problems(layer + " (train)", rt, rt64))
    if r.load[:, 1].sum().item() == 0:
        why.append("no item dropped in inference")
    if why:
        raise SystemExit("sparse_mlp_s: " + "; ".join(why))
    report_routes({layer + " (infer)": r, layer + " (train)": rt})
    print("  float32 vs float64: y rel err %.2e (infer), %.2e (train); "
          "train aux %.9g (float64 %.9g)" % (rel_err(y, y64), rel_err(yt, yt64),
                                            rt.aux.item(), rt64.aux.item()))
    tensors = [("expected.y", y)]
    tensors += gate_tensors("expected", layer, r, with_aux=True)
    tensors.append(("expected_train.y", yt))
    tensors += gate_tensors("expected_train", layer, rt, with_aux=True)
    path = os.path.join(out_dir, "sparse_mlp_s_moe.safetensors")
    size = write_safetensors(path, tensors, dict({
        "graph": "sparse_mlp_s", "layer": layer, "seed": MOE_S_SEED,
        "images": batch, "train_noise_std": 0.0,
        "generator": "tests/reference/sparse_mlp_ref.py"},
        **init_metadata(init, names + ["x"])))
    print("wrote %s (%d bytes)" % (path, size))


def self_check():
    """Checks the operators above against PyTorch's own and the gate
    against a routing worked out by hand (fails loudly)."""
    gen = torch.Generator().manual_seed(7)
    x = torch.randn((2, 5, 6), generator=gen, dtype=torch.float64)
    gm = torch.rand(6, generator=gen, dtype=torch.float64)
    bt = torch.rand(6, generator=gen, dtype=torch.float64)
    F = torch.nn.functional
    assert torch.allclose(layer_norm(x, gm, bt, 1e-6),
                          F.layer_norm(x, (6,), gm, bt, 1e-6), atol=1e-12)
    assert torch.allclose(gelu(x), F.gelu(x), atol=1e-12)
    w = torch.randn((3, 5), generator=gen, dtype=torch.float64)
    b = torch.randn(3, generator=gen, dtype=torch.float64)
    assert torch.allclose(linear(x, w, b, axis=-2),
                          F.linear(x.transpose(1, 2), w, b).transpose(1, 2),
                          atol=1e-12)
    img = torch.randn((2, 3, 8, 12), generator=gen, dtype=torch.float64)
    cw = torch.randn((5, 3, 4, 4), generator=gen, dtype=torch.float64)
    cb = torch.randn(5, generator=gen, dtype=torch.float64)
    pe = patch_embed(img, cw, cb, 4)
    # patch (row r, col c) is token r * (W/P) + c
    for r in range(2):
        for c in range(3):
            want = (img[:, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4].reshape(2, 1, -1)
                    * cw.reshape(1, 5, -1)).sum(-1) + cb
            assert torch.allclose(pe[:, r * 3 + c], want, atol=1e-12)
    assert capacity(2, 49, 1.0, 4, 1) == 25
    assert capacity(1, 256, 1.05, 4, 1) == 68
    assert capacity(1, 10, 1.0, 4, 4) == 4
    assert capacity(1, 10, 0.0, 4, 1) == 10
    # Hand-worked routing: one group of 4 items, E = 2, k = 1, cf = 1 ->
    # cap = 2.  p: item0 (.6,.4) item1 (.9,.1) item2 (.7,.3) item3 (.2,.8).
    # Priority 1 (.9), 3 (.8), 2 (.7), 0 (.6): expert 0 takes item 1 (slot
    # 0), item 2 (slot 1) and drops item 0; expert 1 takes item 3 (slot 0).
    p = torch.tensor([[.6, .4], [.9, .1], [.7, .3], [.2, .8]],
                     dtype=torch.float64)
    r = gate_importance(torch.log(p), torch.eye(2, dtype=torch.float64),
                        {"k": 1, "group_size": 4, "capacity_factor": 1.0},
                        False)
    assert r.expert.flatten().tolist() == [0, 0, 0, 1]
    assert r.slot.flatten().tolist() == [-1, 0, 1, 0]
    assert torch.allclose(r.weight.flatten(),
                          torch.tensor([0, .9, .7, .8], dtype=torch.float64))
    assert r.slot_item.tolist() == [[1, 2], [3, -1]]
    assert r.load.tolist() == [[2, 1], [1, 0]]
    # k = 2: all first choices before any second choice.  E = 2, cap =
    # ceil(2*3*1/2) = 3: expert 0 gets first choices of items 0, 1 and
    # then only one second choice (item 2, the highest priority): item 2's
    # first choice is expert 1.
    p = torch.tensor([[.6, .4], [.55, .45], [.2, .8]], dtype=torch.float64)
    r = gate_importance(torch.log(p), torch.eye(2, dtype=torch.float64),
                        {"k": 2, "group_size": 3, "capacity_factor": 1.0},
                        False)
    # priority: 2 (.8), 0 (.6), 1 (.55)
    assert r.expert.tolist() == [[0, 1], [0, 1], [1, 0]]
    assert r.slot.tolist() == [[0, 1], [1, 2], [0, 2]]
    assert r.load.tolist() == [[3, 0], [3, 0]]
    r = gate_importance(torch.log(p), torch.eye(2, dtype=torch.float64),
                        {"k": 2, "group_size": 3, "capacity_factor": 0.5},
                        True)
    # cap = ceil(2*3*.5/2) = 2: expert 0 first choices 0, 1 fill it, item
    # 2's second choice is dropped; expert 1: item 2 first, then item 0's
    # second choice; item 1's is dropped.
    assert r.slot.tolist() == [[0, 1], [1, -1], [0, -1]]
    assert r.load.tolist() == [[2, 1], [2, 1]]
    imp = p.sum(0)
    want = 0.01 * 0.5 * imp.var(unbiased=False) / imp.mean() ** 2
    assert abs(r.aux.item() - want.item()) < 1e-15
    print("self-check of the operators and of hand-worked routings: ok")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=HERE,
                    help="output directory (default: tests/reference)")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    self_check()
    make_fmnist(args.out)
    make_moe_s(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
