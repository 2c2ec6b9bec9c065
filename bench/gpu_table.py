#!/usr/bin/python3
"""The GPU table of issue 8, on a machine with an NVIDIA GPU and PyTorch.

usage: gpu_table.py [--smlp-run BIN] [--graphs DIR] [--torch-graph PY]
                    [--models sparse_mlp_b,mixer_b] [--batches 64,256]
                    [--repeat N] [--out DIR] [--device cuda|cpu]

--graphs DIR (default graphs) holds MODEL.fbs, the graphs smlp-run runs
(a build tree's graphs/), and MODEL.json, the source torch_graph.py
reads; a MODEL.json that DIR lacks (an out-of-tree build's graphs/ holds
only .fbs) is taken from the source tree's graphs/ beside this script.

For each model and batch: PyTorch eager on CUDA (bench/torch_graph.py
--device cuda) draws the parameters and an image batch, times the graph
and writes them (--write); smlp-run --device cuda runs the very same
numbers (--weights/--input the written file) and writes its outputs;
torch_graph.py then compares its outputs with smlp's (max|a-b|/max|b|).
In the same run, cuBLAS's FP32 peak: torch.matmul of 8192 x 8192
matrices with TF32 off (smlp's cuBLAS runs in FP32 math too).  Prints a
markdown table (ms per batch, images/s, achieved TFLOP/s and its share of
the peak, PyTorch ms, smlp / PyTorch, output error) and writes it with
the raw numbers to DIR/gpu_table.{md,json}.  A step that fails puts its
error in the table instead of stopping the run.  --device cpu runs the
same steps on the CPU (no peak): a check of this script without a GPU.
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC_GRAPHS = os.path.join(os.path.dirname(HERE), "graphs")


def args_parse(argv):
    ap = argparse.ArgumentParser(prog="gpu_table.py")
    ap.add_argument("--smlp-run", default="tools/smlp-run")
    ap.add_argument("--graphs", default="graphs",
                    help="directory of MODEL.fbs (and MODEL.json, else "
                    "taken from %s)" % SRC_GRAPHS)
    ap.add_argument("--torch-graph", default=os.path.join(HERE,
                                                          "torch_graph.py"))
    ap.add_argument("--models", default="sparse_mlp_b,mixer_b")
    ap.add_argument("--batches", default="64,256")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--out", default=".")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    return ap.parse_args(argv)


def run(cmd, timeout=600):
    """(exit status, stdout + stderr) of cmd; 124 on a timeout."""
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout)
        return p.returncode, p.stdout.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        return 124, "timed out after %d s" % timeout


def cublas_peak():
    """TFLOP/s of an FP32 8192^3 product on the GPU (TF32 off)."""
    import torch
    torch.backends.cuda.matmul.allow_tf32 = False
    n = 8192
    a = torch.randn(n, n, device="cuda")
    b = torch.randn(n, n, device="cuda")
    for _ in range(3):
        torch.matmul(a, b)
    torch.cuda.synchronize()
    best = None
    for _ in range(10):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        best = dt if best is None or dt < best else best
    return 2.0 * n ** 3 / best / 1e12


def graph_files(a, model):
    """(MODEL.json, MODEL.fbs) for model, or exit 2 naming --graphs."""
    gf = os.path.join(a.graphs, model + ".fbs")
    gj = os.path.join(a.graphs, model + ".json")
    if not os.path.isfile(gj):
        gj = os.path.join(SRC_GRAPHS, model + ".json")
    missing = [f for f in (gf, gj) if not os.path.isfile(f)]
    if missing:
        sys.stderr.write("gpu_table.py: %s: not found; --graphs DIR must "
                         "hold %s.fbs (built: a build tree's graphs/) and "
                         "%s.json (else read from %s)\n"
                         % (", ".join(missing), model, model, SRC_GRAPHS))
        sys.exit(2)
    return gj, gf


def one(a, model, batch, peak):
    """The row of one model and batch."""
    row = {"model": model, "batch": batch}
    w = os.path.join(a.out, "w_%s_%d.safetensors" % (model, batch))
    s_out = os.path.join(a.out, "smlp_%s_%d.safetensors" % (model, batch))
    s_json = os.path.join(a.out, "smlp_%s_%d.json" % (model, batch))
    gj, gf = graph_files(a, model)
    rc, out = run([sys.executable, a.torch_graph, gj, "--device", a.device,
                   "--batch", str(batch), "--repeat", str(a.repeat),
                   "--write", w, "--json"])
    try:
        row["torch_ms"] = json.loads(out.strip().splitlines()[-1])["median_ms"]
    except (ValueError, KeyError, IndexError):
        row["error"] = "torch_graph.py exit %d: %s" % (rc, out[-300:])
        return row
    rc, out = run([a.smlp_run, gf, "--device", a.device, "--batch", str(batch),
                   "--repeat", str(a.repeat), "--weights", w, "--input", w,
                   "--output", s_out, "--json", s_json])
    if rc != 0:
        row["error"] = "smlp-run exit %d: %s" % (rc, out[-300:])
        return row
    with open(s_json) as f:
        rep = json.load(f)
    row["smlp_ms"] = rep["time_ms"]["median"]
    row["images_per_s"] = batch / (row["smlp_ms"] / 1e3)
    row["tflops"] = 2.0 * rep["macs_per_batch"] / (row["smlp_ms"] / 1e3) / 1e12
    row["peak_share"] = row["tflops"] / peak if peak else None
    row["ratio"] = row["smlp_ms"] / row["torch_ms"]
    rc, out = run([sys.executable, a.torch_graph, gj, "--device", a.device,
                   "--batch", str(batch), "--weights", w, "--repeat", "1",
                   "--warmup", "0", "--compare", s_out, "--json"])
    try:
        errs = json.loads(out.strip().splitlines()[-1])["rel_err"]
        row["rel_err"] = errs
        row["max_rel_err"] = max(errs.values()) if errs else None
    except (ValueError, KeyError, IndexError):
        row["max_rel_err"] = None
        row["compare"] = out[-300:]
    return row


def fmt(v, spec):
    return "–" if v is None else format(v, spec)


def main(argv):
    a = args_parse(argv)
    for m in a.models.split(","):
        graph_files(a, m)  # before any timing: exits naming --graphs
    os.makedirs(a.out, exist_ok=True)
    peak = None
    if a.device == "cuda":
        try:
            peak = cublas_peak()
        except Exception as e:  # no torch, no GPU: the table says so
            print("cuBLAS peak: %s" % e)
    rows = [one(a, m, int(b), peak) for m in a.models.split(",")
            for b in a.batches.split(",")]
    lines = ["cuBLAS FP32 peak (8192^3, TF32 off): %s TFLOP/s" %
             fmt(peak, ".1f"), "",
             "| model | batch | smlp ms | images/s | TFLOP/s | of peak | "
             "PyTorch ms | smlp / PyTorch | max rel err |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append("| %s | %d | %s |" % (r["model"], r["batch"],
                                             r["error"].replace("\n", " ")))
            continue
        lines.append("| %s | %d | %.2f | %.0f | %.1f | %s | %.2f | %.2f | "
                     "%s |" % (r["model"], r["batch"], r["smlp_ms"],
                               r["images_per_s"], r["tflops"],
                               fmt(r["peak_share"], ".0%"), r["torch_ms"],
                               r["ratio"], fmt(r["max_rel_err"], ".2g")))
    text = "\n".join(lines) + "\n"
    print(text)
    with open(os.path.join(a.out, "gpu_table.md"), "w") as f:
        f.write(text)
    with open(os.path.join(a.out, "gpu_table.json"), "w") as f:
        json.dump({"cublas_peak_tflops": peak, "rows": rows}, f, indent=1)
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
