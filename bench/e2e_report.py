#!/usr/bin/env python3
"""End-to-end comparison of crfseg with PyTorch on the CPU (issue #8):
training steps of U-Net (base 64), U-Net + CRF-RNN, ResNet-50-encoder U-Net
and VGG-16-encoder U-Net at 256x256, batch 4, 3 classes, SGD with momentum,
and the ResNet-50 encoder's forward at batch 8, 224x224.

Each configuration runs as separate processes, crfseg
(build/bench/bench_models --json) and PyTorch (bench/peers/torch_e2e.py),
alternated over --rounds rounds (the order crfseg, PyTorch, PyTorch with
the tuned malloc rotates by one each round), same threads (OMP_NUM_THREADS) and same machine. Each process
times --repeats steps after --warmup warm-up steps; a row reports the median
over rounds of the per-process medians, images/s, effective GFLOP/s and %
of the machine's measured FMA peak (bench_models measures it), and each
process's peak resident memory (ru_maxrss: the whole process, including
the Python interpreter and libtorch for PyTorch).

FLOPs: 2 per multiply-add of the convolutions and linear layers of the
forward, counted by PyTorch forward hooks on the twin network (the same
network: bench_models and torch_e2e.py print equal parameter counts, which
this script checks); a training step counts 3x the forward (forward,
backward-input, backward-weight). The CRF's own work is not counted.

PyTorch runs twice per round: as installed, and with glibc's malloc told
to keep freed memory (GLIBC_TUNABLES mmap_threshold and trim_threshold at
4 GiB). PyTorch's CPU allocator has no cache, so as installed every large
tensor is a fresh mmap whose pages fault in on first touch; on a virtual
machine where a page fault is expensive that can more than double its step
time, which says more about the machine than about the framework. The
tuned run is PyTorch at its best here (at the cost of resident memory),
and the ratio against it is the one to quote for kernel speed. crfseg
caches large blocks itself (tensor/cpu_allocator.h).

Writes bench/results/e2e_<host>.md (the table) and .svg (a bar chart of
time relative to PyTorch). Usage:
  python3 bench/e2e_report.py [--quick] [--rounds N] [--repeats R] [--warmup W]
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
BENCH = os.path.join(ROOT, "build", "bench", "bench_models")
PEER = os.path.join(ROOT, "bench", "peers", "torch_e2e.py")
TUNED_MALLOC = "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296"

# name, pass ("train" or "forward"), shared arguments, crfseg-only arguments.
FULL = [
    ("U-Net base 64, train step", "train", ["--encoder", "unet", "--base", "64", "--depth", "4"], []),
    ("U-Net base 64 + CRF-RNN, train step", "train", ["--encoder", "unet", "--base", "64", "--depth", "4"], ["--crf"]),
    # The CRF-RNN on natural-looking images: the lattice of noise (the rows above) is its worst case.
    ("U-Net base 64 + CRF-RNN, train step, shapes input", "train", ["--encoder", "unet", "--base", "64", "--depth", "4"],
     ["--crf", "--input", "shapes"]),
    ("ResNet-50 U-Net, train step", "train", ["--encoder", "resnet50"], []),
    ("VGG-16 U-Net, train step", "train", ["--encoder", "vgg16"], []),
    ("ResNet-50 forward (to layer4)", "forward", ["--encoder", "resnet50", "--encoder-forward"], []),
]


def sizes(quick, kind):
    if kind == "forward":
        return ["--size", "64" if quick else "224", "--batch", "2" if quick else "8"]
    return ["--size", "32" if quick else "256", "--batch", "2" if quick else "4"]


def run_json(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="tiny sizes, to check the pipeline")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--only", default="", help="run only the configurations whose name contains this")
    a = p.parse_args()
    threads = os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count()))
    have_torch = subprocess.run(["/usr/bin/python3", "-c", "import torch, torchvision"],
                                capture_output=True).returncode == 0
    common = ["--classes", "3", "--optimizer", "sgd", "--repeats", str(a.repeats), "--warmup", str(a.warmup)]
    rows, peak = [], None
    for name, kind, shared, crfseg_only in FULL:
        if a.only not in name:
            continue
        args = shared + sizes(a.quick, kind) + common
        if a.quick and "--base" in args:
            args[args.index("--base") + 1] = "8"
            name = name.replace("base 64", "base 8")
        mine, theirs, tuned = [], [], []
        for r in range(a.rounds):
            order = ["crfseg", "torch", "tuned"]
            order = order[r % 3:] + order[:r % 3]
            for who in order:
                if who == "crfseg":
                    mine.append(run_json([BENCH, "--json"] + args + crfseg_only))
                elif have_torch and not crfseg_only:
                    env = dict(os.environ, GLIBC_TUNABLES=TUNED_MALLOC) if who == "tuned" else None
                    (tuned if who == "tuned" else theirs).append(run_json(["/usr/bin/python3", PEER] + args, env))
            print(f"  {name}: round {r + 1}/{a.rounds} done", file=sys.stderr, flush=True)
        flops = None
        if have_torch:
            f = run_json(["/usr/bin/python3", PEER, "--flops-only"] + args)
            if f["parameters"] != mine[0]["parameters"] and not crfseg_only:
                sys.exit(f"e2e_report: {name}: crfseg has {mine[0]['parameters']} parameters, "
                         f"the PyTorch twin {f['parameters']}: not the same network")
            flops = f["forward_flops"] * (3 if kind == "train" else 1)
        key = "train_median_ms" if kind == "train" else "infer_median_ms"
        peak = mine[0]["peak_gflops"]
        batch = int(args[args.index("--batch") + 1])
        row = {"name": name, "kind": kind, "batch": batch, "flops": flops,
               "crfseg_ms": statistics.median(m[key] for m in mine),
               "crfseg_rss": max(m["peak_rss_mib"] for m in mine),
               # --crf: each process also times steps with the layer on and off, paired (bench_models).
               "paired": [(m["paired_with_crf_ms"], m["paired_without_crf_ms"]) for m in mine
                          if m.get("paired_with_crf_ms") is not None]}
        if theirs:
            row["torch_ms"] = statistics.median(t[key] for t in theirs)
            row["torch_rss"] = max(t["peak_rss_mib"] for t in theirs)
            row["torch_version"] = theirs[0]["impl"]
            row["tuned_ms"] = statistics.median(t[key] for t in tuned)
            row["tuned_rss"] = max(t["peak_rss_mib"] for t in tuned)
        rows.append(row)

    host = socket.gethostname()
    machine = mine[0]["machine"]
    lines = [f"# crfseg vs PyTorch, end to end on the CPU ({host})", "",
             f"Command: `OMP_NUM_THREADS={threads} python3 bench/e2e_report.py{' --quick' if a.quick else ''}"
             f" --rounds {a.rounds} --repeats {a.repeats} --warmup {a.warmup}"
             + (f" --only '{a.only}'" if a.only else "") + f"`. Machine: {machine}; measured FMA peak "
             f"{peak:.0f} GFLOP/s. Medians over {a.rounds} alternated rounds of per-process medians of {a.repeats} steps "
             f"after {a.warmup} warm-up. Train steps: cross-entropy, backward, SGD (momentum 0.9), 3 classes. "
             f"FLOPs: 3x the forward's convolution/linear multiply-adds x 2 (train), 1x (forward); CRF work not counted. "
             f"Memory: peak resident set of the whole process. Ratios: crfseg time / PyTorch time (below 1: crfseg "
             f"faster), against PyTorch as installed and against PyTorch with glibc's malloc keeping freed memory "
             f"(`GLIBC_TUNABLES={TUNED_MALLOC}`, PyTorch's best here: see the script's docstring).",
             "",
             "| configuration | batch | crfseg ms | PyTorch ms | ratio | PyTorch, tuned malloc, ms | ratio "
             "| crfseg img/s | PyTorch tuned img/s | crfseg GFLOP/s (% peak) | PyTorch tuned GFLOP/s (% peak) "
             "| peak MiB: crfseg / PyTorch / PyTorch tuned |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def gflops(ms, flops):
        if flops is None:
            return "-"
        g = flops / ms / 1e6
        return f"{g:.0f} ({100 * g / peak:.0f}%)"

    for r in rows:
        t, u = r.get("torch_ms"), r.get("tuned_ms")
        lines.append("| " + " | ".join([
            r["name"], str(r["batch"]), f"{r['crfseg_ms']:.0f}", f"{t:.0f}" if t else "- (no CRF-RNN in PyTorch)",
            f"{r['crfseg_ms'] / t:.2f}" if t else "-", f"{u:.0f}" if u else "-",
            f"{r['crfseg_ms'] / u:.2f}" if u else "-", f"{1e3 * r['batch'] / r['crfseg_ms']:.2f}",
            f"{1e3 * r['batch'] / u:.2f}" if u else "-", gflops(r["crfseg_ms"], r["flops"]),
            gflops(u, r["flops"]) if u else "-",
            f"{r['crfseg_rss']:.0f}" + (f" / {r['torch_rss']:.0f} / {r['tuned_rss']:.0f}" if t else "")]) + " |")
    plain = next((r for r in rows if r["name"].startswith("U-Net base") and "CRF" not in r["name"]), None)
    for crf in (r for r in rows if "CRF" in r["name"]):
        inp = "synthetic shapes" if "shapes" in crf["name"] else "uniform noise, the lattice's worst case"
        if crf["paired"]:
            pct = sorted(100 * (w - wo) / wo for w, wo in crf["paired"])
            lines += ["", f"The CRF-RNN layer's share of the U-Net step, {inp}: **{statistics.median(pct):+.1f}%** "
                      f"(median over {len(pct)} processes, each the medians of {a.repeats} steps with the layer and "
                      f"{a.repeats} without, in alternating pairs in one process; range {pct[0]:+.1f}% to "
                      f"{pct[-1]:+.1f}%; {statistics.median(w for w, _ in crf['paired']):.0f} vs "
                      f"{statistics.median(wo for _, wo in crf['paired']):.0f} ms)."]
        if plain:
            lines += [f"Across processes (this row against the plain U-Net row's processes): "
                      f"{crf['crfseg_ms'] - plain['crfseg_ms']:+.0f} ms "
                      f"({100 * (crf['crfseg_ms'] - plain['crfseg_ms']) / plain['crfseg_ms']:+.1f}%, "
                      f"{plain['crfseg_ms']:.0f} -> {crf['crfseg_ms']:.0f} ms; the plain step runs on noise, and the "
                      f"convolutions' time does not depend on the values; noisier than the paired figure; "
                      f"`build/bench/bench_crf --headline` times the layer alone)."]
    if rows[0].get("torch_version"):
        lines.append(f"PyTorch: {rows[0]['torch_version']} (Debian's python3-torch), same threads.")
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    suffix = ("_quick" if a.quick else "") + ("_only" if a.only else "")
    stem = os.path.join(ROOT, "bench", "results", f"e2e_{host}{suffix}")
    with open(stem + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(stem + ".svg", "w") as f:
        f.write(svg([r for r in rows if r.get("torch_ms")]))
    print("\n".join(lines))
    print(f"wrote {stem}.md and {stem}.svg", file=sys.stderr)


def svg(rows):
    """Horizontal bars: each configuration's crfseg time relative to PyTorch's (PyTorch = 1), against
    PyTorch as installed (upper bar) and with the tuned malloc (lower bar)."""
    w, left, bar, gap = 680, 250, 14, 16
    h = 40 + len(rows) * (2 * bar + gap) + 44
    ratios = [r["crfseg_ms"] / r[k] for r in rows for k in ("torch_ms", "tuned_ms")]
    scale = (w - left - 60) / max([1.2] + ratios)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<text x="{w / 2}" y="18" text-anchor="middle" font-size="14">crfseg time / PyTorch time '
           f'(CPU; below 1: crfseg faster)</text>']
    for i, r in enumerate(rows):
        y = 34 + i * (2 * bar + gap)
        out.append(f'<text x="{left - 8}" y="{y + bar + 4}" text-anchor="end">{r["name"]}</text>')
        for k, (key, color) in enumerate((("torch_ms", "#2a7ab9"), ("tuned_ms", "#9bbb59"))):
            ratio = r["crfseg_ms"] / r[key]
            yy = y + k * bar
            out.append(f'<rect x="{left}" y="{yy}" width="{ratio * scale:.1f}" height="{bar - 1}" fill="{color}"/>')
            out.append(f'<text x="{left + ratio * scale + 5:.1f}" y="{yy + bar - 3}">{ratio:.2f}</text>')
    x1 = left + scale
    out.append(f'<line x1="{x1:.1f}" y1="28" x2="{x1:.1f}" y2="{h - 38}" stroke="black" stroke-dasharray="4,3"/>')
    out.append(f'<text x="{x1:.1f}" y="{h - 24}" text-anchor="middle">PyTorch = 1</text>')
    out.append(f'<rect x="{left}" y="{h - 14}" width="10" height="10" fill="#2a7ab9"/>'
               f'<text x="{left + 14}" y="{h - 5}">vs PyTorch as installed</text>'
               f'<rect x="{left + 180}" y="{h - 14}" width="10" height="10" fill="#9bbb59"/>'
               f'<text x="{left + 194}" y="{h - 5}">vs PyTorch with tuned malloc</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
