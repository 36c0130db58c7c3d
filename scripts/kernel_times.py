#!/usr/bin/env python3
"""Sums Nsight Compute's per-launch kernel durations by kernel: the table of
where a GPU step's time goes (bench/NOTES.md change 27 made the first one by
hand). Input: `ncu --csv --metrics gpu__time_duration.sum ...` output, one row
per kernel launch. Only lines that start with a quote are read, so ncu's
own messages and the profiled program's output may be mixed in.

    python3 scripts/kernel_times.py ncu.csv [--top 25]

Prints a markdown table: milliseconds, share of the total, launches, kernel.
When the CSV also holds throughput metrics (ncu --metrics
gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,
sm__throughput.avg.pct_of_peak_sustained_elapsed), each gets a column: its
mean over the kernel's launches, weighted by their durations, so a kernel's
figure is what its time was spent at.
"""
import argparse
import collections
import csv
import re
import sys

# ncu writes durations in a unit per row unless told otherwise.
UNITS = {"nsecond": 1e-6, "ns": 1e-6, "usecond": 1e-3, "us": 1e-3, "msecond": 1.0, "ms": 1.0,
         "second": 1e3, "s": 1e3}


def short_name(name, limit=90):
    """The kernel's name without its parameter list, template arguments cut
    to `limit` characters (cuBLAS's and ours are long). A for_each kernel is
    named by the function whose lambda it runs, which its template argument
    spells as `...::max_pool2d_backward_gather<float>(...)::{lambda(long)#1}`."""
    lam = re.search(r"([A-Za-z_]\w*(?:<[^<>()]*>)?)\([^()]*\)(?: const)?::\{lambda", name)
    if lam:
        return "for_each: " + lam.group(1)
    depth, cut = 0, len(name)
    for i, ch in enumerate(name):  # the first '(' outside template brackets
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif ch == "(" and depth == 0:
            cut = i
            break
    name = re.sub(r"\s+", " ", name[:cut]).strip()
    return name if len(name) <= limit else name[: limit - 3] + "..."


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv_file")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    with open(args.csv_file, newline="") as f:
        lines = [line for line in f if line.startswith('"')]
    rows = list(csv.DictReader(lines))
    if not rows or "Kernel Name" not in rows[0] or "Metric Value" not in rows[0]:
        sys.exit(f"kernel_times: no ncu CSV rows with 'Kernel Name' and 'Metric Value' in {args.csv_file}")
    ms = collections.Counter()
    launches = collections.Counter()
    duration = {}  # launch id -> (kernel, ms)
    extra = collections.defaultdict(dict)  # launch id -> {metric: value}
    for i, row in enumerate(rows):
        metric = row.get("Metric Name", "gpu__time_duration.sum")
        launch = row.get("ID", str(i))
        value = float(row["Metric Value"].replace(",", ""))
        if metric != "gpu__time_duration.sum":
            extra[launch][metric] = value
            continue
        unit = row.get("Metric Unit", "nsecond").strip()
        if unit not in UNITS:
            sys.exit(f"kernel_times: unknown duration unit {unit!r}")
        name = short_name(row["Kernel Name"])
        ms[name] += value * UNITS[unit]
        launches[name] += 1
        duration[launch] = (name, value * UNITS[unit])
    # Duration-weighted means of the other metrics, by kernel.
    metrics = sorted({m for values in extra.values() for m in values})
    weighted = collections.defaultdict(lambda: collections.defaultdict(float))
    weight = collections.defaultdict(lambda: collections.defaultdict(float))
    for launch, values in extra.items():
        if launch not in duration:
            continue
        name, t = duration[launch]
        for m, v in values.items():
            weighted[name][m] += v * t
            weight[name][m] += t
    headers = [m.split("__")[0] + " " + ("%" if "pct" in m else m.split(".")[-1]) for m in metrics]

    def extra_cells(name):
        return "".join(f" {weighted[name][m] / weight[name][m]:.0f} |" if weight[name][m] > 0 else " |"
                       for m in metrics)

    total = sum(ms.values())
    print(f"total kernel time {total:.1f} ms over {sum(launches.values())} launches\n")
    print("| ms | share | launches |" + "".join(f" {h} |" for h in headers) + " kernel |")
    print("|---|---|---|" + "---|" * len(metrics) + "---|")
    for name, t in ms.most_common(args.top):
        print(f"| {t:.1f} | {100 * t / total:.1f}% | {launches[name]} |{extra_cells(name)} `{name}` |")
    rest = ms.most_common()[args.top:]
    if rest:
        t = sum(v for _, v in rest)
        print(f"| {t:.1f} | {100 * t / total:.1f}% | {sum(launches[n] for n, _ in rest)} |" + " |" * len(metrics)
              + f" ({len(rest)} more) |")


if __name__ == "__main__":
    main()
