#!/usr/bin/python3
"""Independent PyTorch reference for whole-model gradients: the loss that
smlp-train minimises and its gradient for every parameter of the shipped
classifiers, from PyTorch autograd on the model code of
tests/reference/sparse_mlp_ref.py (written from OPS.md and MODELS.md, not
from the C plugins).

What it computes, for mixer_fmnist and sparse_mlp_fmnist at batch 4 in
training mode:
  loss = core.softmax_cross_entropy(logits, labels)   (mean over images)
         + aux_loss                                    (sparse: the sum of
                                                        the gates' aux)
  the loss smlp-train appends (tools/train_head.h), and d loss / d p for
  every Parameter p, in float64 (the reference) and in float32 (to show
  how far float32 itself is from it; printed, not stored).
  The gates run with noise_std = 0 (the reference cannot draw the
  session's noise) and the training capacity factor; every routing
  decision must have the margins of sparse_mlp_ref.py, in float32 and
  float64 alike, and at least one item must be dropped (so that the
  gradient's path around dropped items is exercised); the router seeds
  are advanced until they are.  Parameters and images come from the
  counter-based generator of sparse_mlp_ref.py (base seed 3 for the
  sparse model, 4 for the Mixer), the head too (Xavier uniform, not the
  graph's zeros: a zero head would stop every gradient but its own).

Outputs: tests/reference/grad_NAME.safetensors
  `labels` (i32 [4]); for each parameter NAME with at most FULL_MAX
  elements `grad.NAME` (the float64 gradient rounded to float32); for a
  larger one, viewed as a matrix [numel / d, d] (d its last dimension):
  `rows.NAME` [numel / d] and `cols.NAME` [d], its row and column sums
  (an error in any one element changes one of each), and `sample.NAME`
  [SAMPLES], its elements at the indices
  idx_j = ((2j + 1) * numel) // (2 * SAMPLES), j = 0 .. SAMPLES-1.
  __metadata__: "init.NAME" generator settings of every parameter and of
  `image` (as sparse_mlp_ref.py); "loss" and "max_grad" (G, the largest
  gradient element of the model; float64, repr); "norm.NAME", the
  gradient's 2-norm, for every parameter.
  tests/check_reference_grad.c compares smlp's gradients with these.

How to rerun (by hand; NOT run in CI, its outputs are committed):
    /usr/bin/python3 tests/reference/grad_ref.py [--out DIR]
Needs Debian's python3-torch (1.13) and the Python standard library only.
Deterministic (fixed seeds, one thread).
"""

import argparse
import copy
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import sparse_mlp_ref as ref  # noqa: E402
import torch  # noqa: E402

FULL_MAX = 4096
SAMPLES = 256
BATCH = 4
LABELS = [3, 7, 0, 9]
SEEDS = {"sparse_mlp_fmnist": 3, "mixer_fmnist": 4}
# A gradient whose float64 elements are all below ZERO * G (G: the
# largest gradient element of the model) is zero in exact arithmetic: the
# bias of a token-mixing layer's last linear (mlp_tokens.fc2, rr_out.tokens)
# is added alike to every channel of a token, and every path from there to
# the loss passes a layer norm over the channels, whose input gradient sums
# to zero over them.  The C test checks those against G instead.
ZERO = 1e-9


def without_noise(g):
    """A copy of the graph JSON with every gate's noise_std set to 0."""
    g = copy.deepcopy(g)
    for n in g["nodes"]:
        for a in n.get("attrs", []):
            if a["name"] == "noise_std":
                a["f"] = 0.0
    return g


def loss_of(P, g, image, labels):
    """(loss, ce, aux, routes) in training mode."""
    _, logits, routes = ref.forward(P, g, image, training=True)
    ce = torch.nn.functional.cross_entropy(logits, labels)
    aux = sum((r.aux for r in routes.values()),
              torch.zeros((), dtype=logits.dtype))
    return ce + aux, ce, aux, routes


def grads(P, g, image, labels, dtype):
    """(loss, {name: gradient}, routes) with the parameters in dtype."""
    leaves = {k: v.to(dtype).detach().requires_grad_(True)
              for k, v in P.items()}
    loss, ce, aux, routes = loss_of(leaves, g, image.to(dtype), labels)
    names = list(leaves)
    gs = torch.autograd.grad(loss, [leaves[k] for k in names])
    return loss.item(), ce.item(), aux.item(), dict(zip(names, gs)), routes


def sample_indices(numel):
    return [((2 * j + 1) * numel) // (2 * SAMPLES) for j in range(SAMPLES)]


def views(gr):
    """[(prefix, tensor)]: what the file holds of gradient gr."""
    if gr.numel() <= FULL_MAX:
        return [("grad", gr)]
    m = gr.reshape(-1, gr.shape[-1])
    idx = torch.tensor(sample_indices(gr.numel()))
    return [("rows", m.sum(1)), ("cols", m.sum(0)),
            ("sample", gr.flatten()[idx])]


def make(name, out_dir):
    g = without_noise(ref.load_graph(name))
    seed = SEEDS[name]
    specs = ref.graph_params(g)
    names = [n for n, _ in specs]
    if sorted(names) != sorted(ref.used_param_names(g)):
        raise SystemExit("%s: graph parameters differ from the model's: %s"
                         % (name, sorted(set(names) ^
                                         set(ref.used_param_names(g)))))
    cin, hgt, wid = (int(v) for v in ref.meta(g, "image").split("x"))
    init = {}
    P = ref.make_params(specs, seed, init)
    image = ref.make_input((BATCH, cin, hgt, wid), seed, "image", init)
    labels = torch.tensor(LABELS, dtype=torch.int64)
    layers = [n["name"][:-len(".gate")] for n in g["nodes"]
              if n["op"].startswith("moe.gate.")]

    def k_of(key):
        return int(ref.node_attrs(g, key + ".gate").get("k", 1))

    def routes_of(P, dtype):
        with torch.no_grad():
            return ref.forward({k: v.to(dtype) for k, v in P.items()}, g,
                               image.to(dtype), training=True)[2]

    def check(P, key):
        return ref.layer_problems(key, routes_of(P, torch.float32)[key],
                                  routes_of(P, torch.float64)[key])

    print("%s: base seed %d, batch %d, training (noise_std 0)%s"
          % (name, seed, BATCH, "; routers:" if layers else ""))
    if layers:
        for li, key in enumerate(layers):       # provisional routers
            P[key + ".gate.weight"], _ = ref.router_weight(
                dict(specs)[key + ".gate.weight"], seed * 100000 + 1000 * li,
                ref.ROUTER_SCALE[k_of(key)])
        ref.choose_routers(P, init, specs, seed, layers, k_of, check)

    loss, ce, aux, g64, routes = grads(P, g, image, labels, torch.float64)
    loss32, _, _, g32, routes32 = grads(P, g, image, labels, torch.float32)
    why = []
    for key in layers:
        why += ref.layer_problems(key, routes32[key], routes[key])
    if layers and not any(r.load[:, 1].sum().item() > 0
                          for r in routes.values()):
        why.append("no item dropped in any layer")
    if why:
        raise SystemExit("%s: %s" % (name, "; ".join(why)))
    if routes:
        ref.report_routes(routes)
    big = max(g64[k].abs().max().item() for k in names)
    worst, noise, zero = 0.0, 0.0, []
    for k in names:
        for (v, a), (_, b) in zip(views(g32[k]), views(g64[k])):
            if b.abs().max().item() < ZERO * big:
                zero.append(v + "." + k)
                noise = max(noise, a.abs().max().item() / big)
            else:
                worst = max(worst, ref.rel_err(a, b))
    print("  loss %.17g (ce %.9g, aux %.9g); float32 loss %.9g"
          % (loss, ce, aux, loss32))
    print("  float32 vs float64 gradients: worst max|a-b|/max|b| %.2e over "
          "the stored views of %d parameters; largest gradient element "
          "G = %.6g" % (worst, len(names), big))
    print("  zero in exact arithmetic (float64 max < %g G): %s; float32 "
          "gives at most %.2e G there" % (ZERO, ", ".join(zero) or "none",
                                          noise))

    tensors = [("labels", torch.tensor(LABELS, dtype=torch.int32))]
    meta = {"graph": name, "batch": BATCH, "seed": seed, "mode": "training",
            "noise_std": 0.0, "loss": repr(loss), "max_grad": repr(big),
            "full_max": FULL_MAX, "samples": SAMPLES,
            "generator": "tests/reference/grad_ref.py"}
    for n in names:
        gr = g64[n]
        tensors += [(v + "." + n, t.float()) for v, t in views(gr)]
        meta["norm." + n] = repr(gr.norm().item())
    path = os.path.join(out_dir, "grad_%s.safetensors" % name)
    size = ref.write_safetensors(path, tensors, dict(
        meta, **ref.init_metadata(init, names + ["image"])))
    print("wrote %s (%d bytes)" % (path, size))


def self_check():
    """The loss and gradient machinery on a case worked out by hand: a
    linear head on two features, CE over two images."""
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]],
                     dtype=torch.float64, requires_grad=True)
    x = torch.tensor([[math.log(2.0), 0.0], [0.0, 0.0]], dtype=torch.float64)
    lab = torch.tensor([0, 2])
    loss = torch.nn.functional.cross_entropy(x @ w.t(), lab)
    # image 0: logits (ln2, 0, ln2/2): p = (2, 1, sqrt2)/(3+sqrt2);
    # image 1: logits 0: p = 1/3 each
    s = 3.0 + math.sqrt(2.0)
    want = 0.5 * (-math.log(2.0 / s) - math.log(1.0 / 3.0))
    assert abs(loss.item() - want) < 1e-12
    (gw,) = torch.autograd.grad(loss, [w])
    # dL/dw[k] = mean over images of (p_k - [k = label]) x
    p0 = [2.0 / s, 1.0 / s, math.sqrt(2.0) / s]
    for k in range(3):
        want = [0.5 * (p0[k] - (k == 0)) * math.log(2.0), 0.0]
        assert all(abs(a - b) < 1e-12 for a, b in zip(gw[k].tolist(), want))
    assert sample_indices(SAMPLES) == list(range(SAMPLES))
    print("self-check of the loss and its gradient: ok")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=ref.HERE,
                    help="output directory (default: tests/reference)")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    ref.self_check()
    self_check()
    for name in ("mixer_fmnist", "sparse_mlp_fmnist"):
        make(name, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
