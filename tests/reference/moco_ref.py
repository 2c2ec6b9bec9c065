#!/usr/bin/python3
"""Reference values of moco.loss for tests/check_op_moco.c.

MoCo v3's contrastive loss (facebookresearch/moco-v3, moco/builder.py),
on one device (no AllGather):

    ctr(q, k) = CrossEntropy(normalize(q) @ normalize(k).T / tau,
                             arange(n)) * 2 * tau
    loss      = ctr(q1, k2) + ctr(q2, k1)

computed by torch in float64 from the float32-rounded inputs that the C
test builds from the same literals, with the gradients of q1 and q2 from
autograd (k1 and k2 are detached, as the momentum branch is).  Run it
with /usr/bin/python3 (torch is needed here only, never by the tests) and
paste the printed values into tests/check_op_moco.c.
"""
import torch
import torch.nn.functional as F

# Case A: n = 4, D = 3, tau = 0.2 (the default).
A = {
    "q1": [0.5, -1.0, 2.0, 1.5, 0.25, -0.5, -2.0, 1.0, 0.75, 0.1, 0.2, -0.3],
    "q2": [1.0, 1.0, -1.0, -0.5, 2.0, 0.5, 0.3, -0.7, 1.2, 2.5, -1.5, 0.0],
    "k1": [0.4, -0.8, 1.9, 1.2, 0.5, -0.2, -1.7, 0.8, 1.0, 0.3, 0.1, -0.6],
    "k2": [0.9, 1.2, -0.8, -0.6, 1.8, 0.9, 0.1, -0.5, 1.5, 2.2, -1.2, 0.4],
    "n": 4, "d": 3, "tau": 0.2,
}
# Case B: n = 3, D = 5, tau = 1.0 (moco-v3's code default).
B = {
    "q1": [1.0, 0.0, -1.0, 2.0, 0.5, -0.3, 0.8, 0.8, -1.1, 0.2,
           0.6, -0.9, 0.4, 0.0, 1.3],
    "q2": [0.2, 0.4, -0.6, 0.8, -1.0, 1.5, -0.5, 0.25, 0.75, -1.25,
           -0.1, 0.9, -0.8, 0.7, 0.6],
    "k1": [0.3, 0.5, -0.4, 0.6, -0.9, 1.2, -0.6, 0.1, 0.9, -1.0,
           0.0, 1.1, -0.5, 0.5, 0.8],
    "k2": [0.9, 0.2, -0.8, 1.7, 0.6, -0.2, 0.5, 1.0, -0.9, 0.0,
           0.4, -0.7, 0.6, 0.2, 1.1],
    "n": 3, "d": 5, "tau": 1.0,
}


def ctr(q, k, tau):
    logits = F.normalize(q, dim=1) @ F.normalize(k, dim=1).t() / tau
    labels = torch.arange(q.shape[0])
    return F.cross_entropy(logits, labels) * (2 * tau)


def run(name, c):
    t = {}
    for key in ("q1", "q2", "k1", "k2"):
        v = torch.tensor(c[key], dtype=torch.float32).to(torch.float64)
        t[key] = v.reshape(c["n"], c["d"])
    t["q1"].requires_grad_(True)
    t["q2"].requires_grad_(True)
    loss = (ctr(t["q1"], t["k2"].detach(), c["tau"]) +
            ctr(t["q2"], t["k1"].detach(), c["tau"]))
    loss.backward()
    print("/* case %s: n=%d D=%d tau=%g */" % (name, c["n"], c["d"],
                                              c["tau"]))
    print("#define MOCO_%s_LOSS %.17g" % (name, loss.item()))
    for key in ("q1", "q2"):
        g = t[key].grad.reshape(-1).tolist()
        print("static const double moco_%s_d%s[] = {" % (name.lower(), key))
        for i in range(0, len(g), 3):
            print("    " + " ".join("%.17g," % v for v in g[i:i + 3]))
        print("};")


run("A", A)
run("B", B)
# n = 1: one class, so the cross-entropy and the loss are 0.
one = {"q1": [1.0, 2.0], "q2": [-1.0, 0.5], "k1": [0.3, 0.3],
       "k2": [2.0, -1.0], "n": 1, "d": 2, "tau": 0.2}
run("ONE", one)
