#!/usr/bin/python3
"""PyTorch eager baseline for smlp graphs: runs a graph JSON (graphs/*.json)
op by op with PyTorch, on the same weights and inputs as smlp, and times it.

usage: torch_graph.py GRAPH.json [--batch N] [--threads N] [--device D]
                      [--weights F] [--input F] [--write F] [--repeat N]
                      [--warmup N] [--outputs F] [--json]
                      [--train [--lr X] [--weight-decay X]]

  --weights F   parameters (and `image`, unless --input) from a
                safetensors file; without it, parameters are drawn at
                random (PyTorch's generator, seed 0: Xavier-like uniform
                for weights, small uniform for biases and norms, N(0, 1)
                router weights scaled by 1/sqrt(d)) and the image ~ N(0, 1)
  --write F     write those parameters and the image to F (safetensors),
                so that `smlp-run GRAPH.fbs --weights F --input F` runs the
                very same numbers
  --outputs F   write the graph outputs (features, logits, ...) to F
  --device D    cpu (default) or cuda
  --threads N   torch.set_num_threads(N) and OPENBLAS_NUM_THREADS/
                OMP_NUM_THREADS (PyTorch's matmuls follow OpenBLAS's
                thread count on Debian's build, not set_num_threads)
  --repeat N    timed runs after --warmup runs (default 5 / 2); prints
                the median, min and max milliseconds per batch
  --compare F   compare the float outputs with those in F (e.g. smlp-run
                --output) and print max|a-b|/max|b| for each
  --json        print one JSON line with the timings instead of text
  --train       time training steps instead of inference (classifier
                graphs with a `logits` output, e.g. sparse_mlp_fmnist): one
                step = zero_grad, the graph's forward in training mode,
                cross-entropy(logits, labels) + `aux_loss` (when the graph
                has one; smlp-train's loss), loss.item(), backward and a
                torch.optim.AdamW step (betas 0.9/0.999, eps 1e-8, weight
                decay on parameters of rank >= 2 only, as smlp's AdamW).
                The batches are random (images ~ N(0, 1), labels uniform,
                drawn before the timing; two batches used alternately): no
                data loading is timed.  --repeat steps are timed after
                --warmup steps; the parameters start as without --train
                (or from --weights)
  --lr X, --weight-decay X   AdamW's (default 1e-3, 0.05: smlp-train's)

Every op is implemented from OPS.md (the operator contract), not from the
C code, and in the way a PyTorch user would write it: torch.matmul/bmm for
products, vectorised routing (per-group sort, one-hot cumulative sums for
the slot positions, all first choices before second choices), gathers for
dispatch and combine, a dense bmm over each expert's capacity buffer.
Inference (default): no gate noise, eval capacity factor, aux = 0.
Training (--train): gate noise N(0, (noise_std/E)^2) on the router logits
(PyTorch's generator, not smlp's stream: the same distribution, not the
same draw), the training capacity factor, and the aux losses of OPS.md
(vmoe: importance and, when noisy, load terms; switch), per group,
averaged over groups, times aux_weight.
Runs with Debian's python3-torch 1.13 and with PyTorch 2.x (CUDA).
"""

import argparse
import json
import math
import os
import struct
import sys
import time


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="torch_graph.py")
    ap.add_argument("graph")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--weights")
    ap.add_argument("--input")
    ap.add_argument("--write")
    ap.add_argument("--outputs")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--compare")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--train", action="store_true")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    a = ap.parse_args(argv)
    if a.train and (a.outputs or a.compare or a.input):
        ap.error("--train times training steps on random batches: "
                 "--outputs, --compare and --input are for inference")
    return a


ARGS = parse_args(sys.argv[1:])
if ARGS.threads > 0:
    # Before torch loads OpenBLAS.
    os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)
    os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# ---- safetensors (format: u64 header length, JSON header, raw data) -----

DTYPES = {"F32": (torch.float32, 4), "I32": (torch.int32, 4),
          "F64": (torch.float64, 8), "I64": (torch.int64, 8)}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        dt, size = DTYPES[h["dtype"]]
        a, b = h["data_offsets"]
        t = torch.frombuffer(bytearray(data[base + a:base + b]), dtype=dt)
        out[name] = t.reshape(h["shape"]).clone()
    return out


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        code = {torch.float32: "F32", torch.int32: "I32"}[t.dtype]
        raw = t.numpy().tobytes()  # needs numpy (python3-numpy)
        header[name] = {"dtype": code, "shape": list(t.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for raw in blobs:
            f.write(raw)
    os.replace(tmp, path)


# ---- the ops (OPS.md) -----------------------------------------------------

def attrs_of(node):
    out = {}
    for a in node.get("attrs", []):
        t = a.get("type", "Int")
        out[a["name"]] = {"Int": a.get("i", 0), "Float": a.get("f", 0.0),
                          "String": a.get("s", ""),
                          "Ints": a.get("ints", []),
                          "Floats": a.get("floats", [])}[t]
    return out


def op_linear(x, w, b=None, axis=-1):
    axis %= x.dim()
    if axis == x.dim() - 1:
        return F.linear(x, w, b)
    if axis == x.dim() - 2:
        # Token mixing: a left multiply per leading index, no transpose.
        y = torch.matmul(w, x)
        return y if b is None else y + b.unsqueeze(-1)
    return F.linear(x.movedim(axis, -1), w, b).movedim(-1, axis)


def op_patch_embed(img, w, b, patch):
    y = F.conv2d(img, w, b, stride=patch)
    return y.flatten(2).transpose(1, 2)


def capacity(k, g, cf, e, multiple):
    if cf <= 0:
        return g
    cap = max(1, math.ceil(k * g * cf / e))
    return (cap + multiple - 1) // multiple * multiple


def route(p, k, g, cap, priority, normalize, per_item=None):
    """Vectorised slot assignment.  p [R, E] routing rows (items, or
    images for per_image); returns expert [R,k], slot [R,k] (-1 dropped),
    weight [R,k] and the routing rows' slot order is expanded by the
    caller for per-image routing."""
    r, e = p.shape
    ng = r // g
    w, ex = p.topk(k, dim=-1)                      # [R, k]
    exg = ex.reshape(ng, g, k)
    if priority == "importance":
        score = w[:, 0].reshape(ng, g)
        # Stable descending order: ties -> lower index.
        order = torch.sort(-score, dim=1, stable=True).indices
    else:
        order = torch.arange(g, device=p.device).expand(ng, g)
    # One-hot choices in priority order, rank by rank: [ng, k*g, E].
    ex_sorted = torch.gather(exg, 1, order.unsqueeze(-1).expand(ng, g, k))
    onehot = F.one_hot(ex_sorted.transpose(1, 2).reshape(ng, k * g),
                       e).to(torch.int32)
    pos = torch.cumsum(onehot, dim=1) - 1          # position in expert
    pos = (pos * onehot).sum(-1).reshape(ng, k, g).transpose(1, 2)
    # Back from priority order to item order.
    inv = torch.argsort(order, dim=1)
    pos = torch.gather(pos, 1, inv.unsqueeze(-1).expand(ng, g, k))
    kept = pos < cap
    group_base = (torch.arange(ng, device=p.device) * cap).reshape(ng, 1, 1)
    slot = torch.where(kept, pos + group_base, torch.full_like(pos, -1))
    slot = slot.reshape(r, k)
    kept = kept.reshape(r, k)
    wk = torch.where(kept, w, torch.zeros_like(w))
    if normalize == "topk":
        s = wk.sum(-1, keepdim=True)
        wk = torch.where(s > 0, wk / torch.where(s > 0, s, torch.ones_like(s)),
                         wk)
    return ex, slot, wk


def cv2(v):
    """Squared coefficient of variation over the last axis (population
    variance), 0 where the mean is 0."""
    mean = v.mean(-1)
    var = ((v - mean.unsqueeze(-1)) ** 2).mean(-1)
    safe = torch.where(mean != 0, mean, torch.ones_like(mean))
    return torch.where(mean != 0, var / (safe * safe),
                       torch.zeros_like(mean))


def gate_aux(a, zc, zn, p, ex, k, e, rows_per_group, sigma):
    """The training aux loss of OPS.md over routing rows [R, E]: per group
    of rows_per_group rows, averaged over the groups, times aux_weight."""
    kind = a.get("aux", "vmoe")
    weight = a.get("aux_weight", 0.01)
    r = zc.shape[0]
    rg = max(1, min(rows_per_group, r))
    ng = r // rg
    if kind == "vmoe":
        pc = torch.softmax(zc, dim=-1) if sigma > 0 else p
        loss = cv2(pc.reshape(ng, rg, e).sum(1))       # importance
        if sigma > 0:
            # Load_e = mean_r P(clean logit_e + noise > t_r), t_r the k-th
            # largest noisy logit (differentiated too, as V-MoE does).
            thr = zn.topk(k, dim=-1).values[:, k - 1:k]
            load = 0.5 * torch.erfc((thr - zc) / (sigma * math.sqrt(2.0)))
            loss = loss + cv2(load.reshape(ng, rg, e).mean(1))
        return weight * 0.5 * loss.mean()
    if kind == "switch":
        f = F.one_hot(ex[:, 0].long(), e).to(p.dtype)  # first choices
        f = f.reshape(ng, rg, e).mean(1)
        pm = p.reshape(ng, rg, e).mean(1)
        return weight * e * (f * pm).sum(-1).mean()
    return torch.zeros((), device=zc.device)


def op_gate(op, x, wg, a, train=False):
    """Returns expert, slot, weight, E, capacity and aux (a scalar: 0 in
    inference and for the hash gate)."""
    n, d = x.shape
    g = a.get("group_size", 0) or n
    zero = torch.zeros((), device=x.device)
    if op == "moe.gate.hash":
        e = a["experts"]
        t = a["items_per_image"]
        cf = a.get("capacity_factor", 0.0) if train else \
            a.get("eval_capacity_factor", a.get("capacity_factor", 0.0))
        cap = capacity(1, g, cf, e, a.get("capacity_multiple", 1))
        pos = torch.arange(n, device=x.device) % t
        if a.get("mode", "chunk") == "chunk":
            ex = (pos * e) // t
        else:
            h = pos.to(torch.int64) & 0xFFFFFFFF
            for shift, mul in ((16, 0x7FEB352D), (15, 0x846CA68B), (16, None)):
                h = h ^ (h >> shift)
                if mul is not None:
                    h = (h * mul) & 0xFFFFFFFF
            ex = h % e
        p = F.one_hot(ex, e).to(x.dtype)
        ex, slot, w = route(p, 1, g, cap, "position", "none")
        return ex, slot, w, e, cap, zero
    e = wg.shape[0]
    k = a.get("k", 1)
    cf = a.get("capacity_factor", 1.0) if train else \
        a.get("eval_capacity_factor", a.get("capacity_factor", 1.0))
    cap = capacity(k, g, cf, e, a.get("capacity_multiple", 1))
    normalize = a.get("normalize", "none")
    sigma = a.get("noise_std", 0.0) / e if train else 0.0
    t = a["items_per_image"] if op == "moe.gate.per_image" else 1
    src = x.reshape(n // t, t, d).mean(1) if t > 1 else x
    zc = F.linear(src, wg)                          # clean router logits
    zn = zc + torch.randn_like(zc) * sigma if sigma > 0 else zc
    p = torch.softmax(zn, dim=-1)
    if op == "moe.gate.per_image":
        # Every item follows its image; slots in item order.
        ex, slot, wk = route(p.repeat_interleave(t, dim=0), k, g, cap,
                             "position", normalize)
    else:
        priority = "importance" if op == "moe.gate.importance" else \
            "position"
        ex, slot, wk = route(p, k, g, cap, priority, normalize)
    aux = zero
    if train:
        aux = gate_aux(a, zc, zn, p, ex[::t], k, e, max(1, g // t), sigma)
    return ex, slot, wk, e, cap, aux


def op_dispatch(x, slot_item):
    e, m = slot_item.shape
    idx = slot_item.reshape(-1).long()
    buf = x.index_select(0, idx.clamp(min=0))
    buf = buf * (idx >= 0).unsqueeze(-1).to(x.dtype)
    return buf.reshape(e, m, x.shape[1])


def gelu(x, approximate="none"):
    y = F.gelu(x, approximate=approximate)
    if y.requires_grad and approximate == "none":
        # Debian's PyTorch 1.13 computes the float32 backward of exact GELU
        # wrongly when the incoming gradient is not contiguous
        # (/work/shared/TOOLCHAIN.md, section 5): relative errors ~1, from
        # run to run.  Hand it a contiguous gradient (a no-op when it
        # already is; a copy otherwise, which --train's times include).
        y.register_hook(lambda grad: grad.contiguous())
    return y


def op_expert_ffn(buf, w1, b1, w2, b2, act):
    h = torch.baddbmm(b1.unsqueeze(1), buf, w1.transpose(1, 2))
    h = gelu(h) if act == "gelu" else F.relu(h)
    return torch.baddbmm(b2.unsqueeze(1), h, w2.transpose(1, 2))


def op_combine(out, ex, slot, w):
    e, m, o = out.shape
    flat = out.reshape(e * m, o)
    idx = (ex.long() * m + slot.long().clamp(min=0))
    y = flat.index_select(0, idx.reshape(-1)).reshape(*ex.shape, o)
    return (y * w.unsqueeze(-1)).sum(1)


# ---- the interpreter ----------------------------------------------------

class Graph:
    def __init__(self, path):
        with open(path, "r", encoding="utf-8") as f:
            self.j = json.load(f)
        self.tensors = self.j["tensors"]
        self.nodes = self.j["nodes"]

    def kind(self, i):
        return self.tensors[i].get("kind", "Activation")

    def names(self, kind):
        return [t["name"] for t in self.tensors
                if t.get("kind", "Activation") == kind]


def init_params(g, batch, device):
    gen = torch.Generator().manual_seed(0)
    vals = {}
    for t in g.tensors:
        kind = t.get("kind", "Activation")
        if kind not in ("Parameter", "Input"):
            continue
        shape = [batch if s == -1 else s for s in t["shape"]]
        name = t["name"]
        if kind == "Input":
            v = torch.randn(shape, generator=gen)
        elif name.endswith(".gate.weight"):
            v = torch.randn(shape, generator=gen) / math.sqrt(shape[-1])
        elif len(shape) >= 2:
            fan_in, fan_out = shape[-1], shape[-2]
            if len(shape) == 4:
                fan_in = shape[1] * shape[2] * shape[3]
                fan_out = shape[0] * shape[2] * shape[3]
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            v = (torch.rand(shape, generator=gen) * 2 - 1) * bound
        elif "norm" in name and name.endswith(".weight"):
            v = 1 + 0.1 * (torch.rand(shape, generator=gen) * 2 - 1)
        else:
            v = 0.1 * (torch.rand(shape, generator=gen) * 2 - 1)
        vals[name] = v.to(torch.float32)
    return vals


def run_graph(g, vals, device, train=False):
    env = {}
    for t in g.tensors:
        if t["name"] in vals:
            env[t["name"]] = vals[t["name"]]
    outs = {}
    for node in g.nodes:
        op = node["op"]
        a = attrs_of(node)
        ins = [env[g.tensors[i]["name"]] if i >= 0 else None
               for i in node["inputs"]]
        names = [g.tensors[i]["name"] for i in node["outputs"]]
        if op == "core.linear":
            y = [op_linear(ins[0], ins[1], ins[2] if len(ins) > 2 else None,
                           a.get("axis", -1))]
        elif op == "core.gelu":
            y = [gelu(ins[0], a.get("approximate", "none"))]
        elif op == "core.relu":
            y = [F.relu(ins[0])]
        elif op == "core.add":
            y = [ins[0] + ins[1]]
        elif op == "core.scale":
            y = [ins[0] * a.get("alpha", 1.0)]
        elif op == "core.transpose":
            y = [ins[0].permute(a["perm"]).contiguous()]
        elif op == "core.reshape":
            shape = [ins[0].shape[i] if s == 0 else s
                     for i, s in enumerate(a["shape"])]
            y = [ins[0].reshape(shape)]
        elif op == "core.mean":
            y = [ins[0].mean(a.get("axis", -1),
                             keepdim=bool(a.get("keepdims", 0)))]
        elif op == "core.patch_embed":
            y = [op_patch_embed(ins[0], ins[1], ins[2], a["patch"])]
        elif op == "norm.layer_norm":
            y = [F.layer_norm(ins[0], ins[0].shape[-1:], ins[1], ins[2],
                              a.get("eps", 1e-6))]
        elif op.startswith("moe.gate."):
            ex, slot, w, e, cap, aux = op_gate(
                op, ins[0], ins[1] if len(ins) > 1 else None, a, train)
            m = (ins[0].shape[0] // (a.get("group_size", 0)
                                     or ins[0].shape[0])) * cap
            slot_item = torch.full((e * m,), -1, dtype=torch.int64,
                                   device=ins[0].device)
            keep = slot.reshape(-1) >= 0
            flat = (ex.reshape(-1).long() * m + slot.reshape(-1).long())
            items = torch.arange(ex.shape[0], device=ins[0].device
                                 ).repeat_interleave(ex.shape[1])
            slot_item[flat[keep]] = items[keep]
            load = torch.stack([
                torch.bincount(ex.reshape(-1)[keep], minlength=e),
                torch.bincount(ex.reshape(-1)[~keep], minlength=e)], 1)
            y = [ex.to(torch.int32), slot.to(torch.int32), w,
                 slot_item.reshape(e, m).to(torch.int32), aux,
                 load.to(torch.int32)]
        elif op == "moe.dispatch":
            y = [op_dispatch(ins[0], ins[1])]
        elif op == "moe.expert_ffn":
            y = [op_expert_ffn(ins[0], ins[1], ins[2], ins[3], ins[4],
                               a.get("activation", "gelu"))]
        elif op == "moe.combine":
            y = [op_combine(ins[0], ins[1], ins[2], ins[3])]
        else:
            raise SystemExit("torch_graph.py: %s: op %s not implemented"
                             % (node.get("name"), op))
        for name, v in zip(names, y):
            env[name] = v
    for name in g.names("Output"):
        outs[name] = env[name]
    return outs


def median(times):
    times = sorted(times)
    if not times:
        return 0.0
    h = len(times) // 2
    return times[h] if len(times) % 2 else 0.5 * (times[h - 1] + times[h])


def train_main(g, vals, dev):
    """Times --repeat training steps after --warmup ones (see --train)."""
    if "logits" not in g.names("Output") or len(g.names("Input")) != 1:
        raise SystemExit("torch_graph.py: --train needs a classifier graph "
                         "(one input and a `logits` output), as smlp-train")
    image = g.names("Input")[0]
    kinds = {t["name"]: t.get("kind", "Activation") for t in g.tensors}
    params = {k: v.to(dev).requires_grad_()
              for k, v in vals.items() if kinds[k] == "Parameter"}
    # smlp's AdamW decays parameters of rank >= 2 only (docs/training.md).
    decay = [v for v in params.values() if v.dim() >= 2]
    other = [v for v in params.values() if v.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay,
                              "weight_decay": ARGS.weight_decay},
                             {"params": other, "weight_decay": 0.0}],
                            lr=ARGS.lr, betas=(0.9, 0.999), eps=1e-8)
    shape = [ARGS.batch if s == -1 else s
             for t in g.tensors if t["name"] == image for s in t["shape"]]
    classes = [t for t in g.tensors if t["name"] == "logits"][0]["shape"][-1]
    gen = torch.Generator().manual_seed(1)
    batches = [(torch.randn(shape, generator=gen).to(dev),
                torch.randint(0, classes, (ARGS.batch,),
                              generator=gen).to(dev)) for _ in range(2)]
    has_aux = "aux_loss" in g.names("Output")
    sync = (torch.cuda.synchronize if dev.type == "cuda" else (lambda: None))
    losses, times = [], []

    def step(i):
        x, labels = batches[i % len(batches)]
        opt.zero_grad(set_to_none=True)
        inputs = dict(params)
        inputs[image] = x
        outs = run_graph(g, inputs, dev, train=True)
        loss = F.cross_entropy(outs["logits"], labels)
        if has_aux:
            loss = loss + outs["aux_loss"]
        losses.append(loss.item())
        loss.backward()
        opt.step()

    torch.set_grad_enabled(True)
    for i in range(ARGS.warmup):
        step(i)
    sync()
    for i in range(ARGS.warmup, ARGS.warmup + ARGS.repeat):
        t0 = time.perf_counter()
        step(i)
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    med = median(times)
    res = {"graph": g.j["name"], "mode": "train", "batch": ARGS.batch,
           "threads": ARGS.threads, "device": ARGS.device,
           "torch": torch.__version__, "median_ms": med,
           "min_ms": min(times) if times else 0.0,
           "max_ms": max(times) if times else 0.0, "repeat": ARGS.repeat,
           "warmup": ARGS.warmup,
           "images_per_s": ARGS.batch * 1e3 / med if med > 0 else 0.0,
           "losses": losses}
    if ARGS.json:
        print(json.dumps(res))
    else:
        print("torch %s %s train batch %d threads %d device %s: %.3f ms per "
              "step (median of %d after %d warm-up; min %.3f, max %.3f), "
              "%.1f img/s; loss %.4f -> %.4f"
              % (res["torch"], res["graph"], ARGS.batch, ARGS.threads,
                 ARGS.device, med, ARGS.repeat, ARGS.warmup, res["min_ms"],
                 res["max_ms"], res["images_per_s"],
                 losses[0] if losses else float("nan"),
                 losses[-1] if losses else float("nan")))


def main():
    if ARGS.threads > 0:
        torch.set_num_threads(ARGS.threads)
    dev = torch.device(ARGS.device)
    g = Graph(ARGS.graph)
    vals = init_params(g, ARGS.batch, dev)
    if ARGS.weights:
        got = read_safetensors(ARGS.weights)
        for k in list(vals):
            if k in got:
                vals[k] = got[k].to(torch.float32)
            elif g.tensors[[t["name"] for t in g.tensors].index(k)].get(
                    "kind") == "Parameter":
                raise SystemExit("torch_graph.py: %s has no tensor %s"
                                 % (ARGS.weights, k))
    if ARGS.input:
        got = read_safetensors(ARGS.input)
        for name in g.names("Input"):
            vals[name] = got[name].to(torch.float32)
    if ARGS.write:
        write_safetensors(ARGS.write, vals)
    if ARGS.train:
        return train_main(g, vals, dev)
    torch.set_grad_enabled(False)
    vals = {k: v.to(dev) for k, v in vals.items()}
    sync = (torch.cuda.synchronize if dev.type == "cuda" else (lambda: None))
    for _ in range(ARGS.warmup):
        outs = run_graph(g, vals, dev)
    sync()
    times = []
    for _ in range(ARGS.repeat):
        t0 = time.perf_counter()
        outs = run_graph(g, vals, dev)
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    if ARGS.repeat == 0:
        outs = run_graph(g, vals, dev)
    times.sort()
    med = median(times)
    if ARGS.outputs:
        write_safetensors(ARGS.outputs, outs)
    errs = {}
    if ARGS.compare:
        other = read_safetensors(ARGS.compare)
        for name, v in outs.items():
            if name in other and v.dtype == torch.float32 and v.dim() > 0:
                ref = v.detach().cpu().double()
                d = (other[name].double() - ref).abs().max().item()
                errs[name] = d / max(ref.abs().max().item(), 1e-30)
    res = {"graph": g.j["name"], "batch": ARGS.batch,
           "threads": ARGS.threads, "device": ARGS.device,
           "torch": torch.__version__, "median_ms": med,
           "min_ms": times[0] if times else 0.0,
           "max_ms": times[-1] if times else 0.0, "repeat": ARGS.repeat,
           "rel_err": errs}
    if ARGS.json:
        print(json.dumps(res))
    else:
        print("torch %s %s batch %d threads %d device %s: %.3f ms per batch "
              "(median of %d; min %.3f, max %.3f)"
              % (res["torch"], res["graph"], ARGS.batch, ARGS.threads,
                 ARGS.device, med, ARGS.repeat, res["min_ms"],
                 res["max_ms"]))
        for name, e in sorted(errs.items()):
            print("  %s vs %s: max|a-b|/max|b| = %.3g" % (name, ARGS.compare,
                                                       e))


if __name__ == "__main__":
    main()
