#!/usr/bin/env python3
"""Paired comparison of two configurations of scripts/crf_vs_plain.sh.

    scripts/crf_paired.py RESULTS BASELINE OTHER

RESULTS holds crf_vs_plain.sh's lines (name, seed, test mIoU, test mIoU
within 3 px of a boundary; lines starting with # are skipped). For each
metric, over the seeds both configurations ran: the two means, the mean
paired difference OTHER - BASELINE, its sample standard deviation, the
paired t statistic (mean / (sd / sqrt(n)), n - 1 degrees of freedom) and
the seeds OTHER wins and loses. Python's standard library only.
"""
import math
import sys


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    path, base, other = sys.argv[1:]
    runs = {}
    with open(path) as f:
        for line in f:
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            if len(fields) < 4:
                sys.exit(f"{path}: expected 'name seed mIoU band-mIoU', got {line.strip()!r}")
            key = (fields[0], int(fields[1]))
            if key in runs:
                sys.exit(f"{path}: {key[0]} seed {key[1]} appears twice")
            runs[key] = (float(fields[2]), float(fields[3]))
    seeds = sorted(s for (name, s) in runs if name == base and (other, s) in runs)
    if len(seeds) < 2:
        sys.exit(f"{path}: fewer than 2 seeds ran both {base} and {other}")
    n = len(seeds)
    print(f"{other} - {base}, {n} seeds ({seeds[0]}..{seeds[-1]})")
    for k, metric in enumerate(("test mIoU", "test mIoU within 3 px of a boundary")):
        a = [runs[(base, s)][k] for s in seeds]
        b = [runs[(other, s)][k] for s in seeds]
        d = [y - x for x, y in zip(a, b)]
        mean = sum(d) / n
        sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
        t = mean / (sd / math.sqrt(n)) if sd > 0 else float("nan")
        wins, losses = sum(x > 0 for x in d), sum(x < 0 for x in d)
        print(f"  {metric}: {sum(a) / n:.4f} -> {sum(b) / n:.4f}, difference {mean:+.4f}, sd {sd:.4f}, "
              f"t = {t:.2f} ({n - 1} df), wins {wins} / losses {losses}")


if __name__ == "__main__":
    main()
