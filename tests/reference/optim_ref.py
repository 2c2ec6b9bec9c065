#!/usr/bin/python3
"""Reference numbers for tests/check_optim.c: smlp's optimizers
(runtime/optim.c) against PyTorch's own torch.optim.AdamW, torch.optim.SGD
and torch.nn.utils.clip_grad_norm_.

What it computes
  Two parameters, W [3, 4] (rank 2: weight decay applies) and b [3]
  (rank 1: no weight decay, the smlp rule, expressed here as a second
  param group with weight_decay 0), take STEPS updates from gradients
  given by a closed formula, for each case of CASES:

    W0[i]      = 0.5 * sin(0.7 i + 0.3)            (i = 0..11)
    b0[i]      = 0.1 * cos(1.1 i)                  (i = 0..2)
    g[t][j][i] = AMP[t] * sin(1.3 i + 0.9 t + 2.1 j + 0.1)
                 (step t = 0.., parameter j = 0 for W, 1 for b)

  each computed in double and rounded to float32 (the C test computes the
  same values with the same libm).  Each step sets p.grad, clips with
  clip_grad_norm_(max_norm=clip) when clip > 0 (else records the global
  norm, torch.norm of the per-tensor norms), and calls optimizer.step()
  with the learning rate LR[kind][t] set in the param groups.

Output
  A C fragment on stdout: the array `ref_cases` of struct ref_case (see
  tests/check_optim.c), with the hyperparameters and learning rates (as
  Python doubles), the pre-clip global gradient norm of every step, and
  the final values of W, b and the optimizer state (SGD: momentum_buffer;
  AdamW: exp_avg, exp_avg_sq), as float32 printed with 9 significant
  digits.  It was
  pasted into tests/check_optim.c between the markers "BEGIN optim_ref.py"
  and "END optim_ref.py".

How to rerun (by hand; NOT run in CI, torch is never needed by the test):
    /usr/bin/python3 tests/reference/optim_ref.py > /tmp/ref.c
Needs Debian's python3-torch (1.13) and the standard library only.
Deterministic: float32, one thread, no randomness.
"""

import math
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

STEPS = 4
AMP = [1.0, 0.5, 2.0, 0.1]
LR = {
    "adamw": [1e-2, 8e-3, 6e-3, 4e-3],
    "sgd": [1e-1, 8e-2, 6e-2, 4e-2],
}

# name, kind, momentum, nesterov, beta1, beta2, eps, weight_decay, clip
CASES = [
    ("adamw", "adamw", 0.0, 0, 0.9, 0.999, 1e-8, 0.05, 0.0),
    ("adamw_clip", "adamw", 0.0, 0, 0.8, 0.99, 1e-6, 0.1, 0.5),
    ("sgd_momentum", "sgd", 0.9, 0, 0.0, 0.0, 0.0, 1e-2, 0.0),
    ("sgd_nesterov_clip", "sgd", 0.9, 1, 0.0, 0.0, 0.0, 1e-2, 1.0),
    ("sgd_plain", "sgd", 0.0, 0, 0.0, 0.0, 0.0, 5e-2, 0.0),
]


def f32(values):
    return torch.tensor(values, dtype=torch.float32)


def grads(t):
    return [
        f32([AMP[t] * math.sin(1.3 * i + 0.9 * t + 2.1 * j + 0.1)
             for i in range(n)])
        for j, n in enumerate((12, 3))
    ]


def run(kind, momentum, nesterov, beta1, beta2, eps, wd, clip):
    W = torch.nn.Parameter(
        f32([0.5 * math.sin(0.7 * i + 0.3) for i in range(12)]).view(3, 4))
    b = torch.nn.Parameter(f32([0.1 * math.cos(1.1 * i) for i in range(3)]))
    groups = [{"params": [W], "weight_decay": wd},
              {"params": [b], "weight_decay": 0.0}]
    if kind == "adamw":
        opt = torch.optim.AdamW(groups, lr=LR[kind][0], betas=(beta1, beta2),
                                eps=eps)
    else:
        opt = torch.optim.SGD(groups, lr=LR[kind][0], momentum=momentum,
                              nesterov=bool(nesterov))
    norms = []
    for t in range(STEPS):
        g = grads(t)
        W.grad = g[0].view(3, 4).clone()
        b.grad = g[1].clone()
        if clip > 0:
            norm = torch.nn.utils.clip_grad_norm_([W, b], clip,
                                                  error_if_nonfinite=True)
        else:
            norm = torch.norm(torch.stack([torch.norm(W.grad),
                                           torch.norm(b.grad)]))
        norms.append(float(norm))
        for grp in opt.param_groups:
            grp["lr"] = LR[kind][t]
        opt.step()
    slots = []
    for p in (W, b):
        st = opt.state[p]
        if kind == "adamw":
            slots.append([st["exp_avg"], st["exp_avg_sq"]])
        elif momentum != 0:
            slots.append([st["momentum_buffer"]])
        else:
            slots.append([])
    return norms, W.detach(), b.detach(), slots


def c_float(v):
    s = "%.9g" % v
    if "." not in s and "e" not in s:
        s += ".0"
    return s + "f"


def c_floats(values):
    """A C initializer, four values to a line (80 columns)."""
    items = [c_float(v) for v in values]
    lines = [", ".join(items[i:i + 4]) for i in range(0, len(items), 4)]
    return "{" + (",\n      ").join(lines) + "}"


def main():
    print("/* BEGIN optim_ref.py (torch %s): generated, do not edit */"
          % torch.__version__)
    print("static const struct ref_case ref_cases[] = {")
    for name, kind, mom, nest, b1, b2, eps, wd, clip in CASES:
        norms, W, b, slots = run(kind, mom, nest, b1, b2, eps, wd, clip)
        print("    {\"%s\", %s, %r, %d, %r, %r, %r, %r, %r," % (
            name, "SMLP_OPTIM_ADAMW" if kind == "adamw" else "SMLP_OPTIM_SGD",
            mom, nest, b1, b2, eps, wd, clip))
        print("     {%s}," % ", ".join(repr(v) for v in LR[kind]))
        print("     %s," % c_floats(norms))
        print("     %s," % c_floats(W.flatten().tolist()))
        print("     %s," % c_floats(b.tolist()))
        print("     %d," % len(slots[0]))
        for k in range(2):
            sw = slots[0][k].flatten().tolist() if k < len(slots[0]) else [0]
            sb = slots[1][k].tolist() if k < len(slots[1]) else [0]
            print("     %s," % c_floats(sw))
            print("     %s%s" % (c_floats(sb), "}," if k == 1 else ","))
    print("};")
    print("/* END optim_ref.py */")


if __name__ == "__main__":
    main()
