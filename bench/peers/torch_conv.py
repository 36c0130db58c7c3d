#!/usr/bin/env python3
"""PyTorch twin of bench_conv's U-Net layers on the CPU: conv2d 3x3 pad 1,
f32, NCHW, batch 4 by default, each pass timed on its own (forward with
bias; backward-input and backward-weight through torch.nn.grad's
conv2d_input / conv2d_weight, the bias gradient as a sum of dy), median of
R runs after one warm-up run. Issue #3 names PyTorch's CPU convolution as
the second reference beside oneDNN; bench_conv prints the crfseg and oneDNN
rows for the same layers.

  OMP_NUM_THREADS=2 python3 bench/peers/torch_conv.py [--batch N] [--repeats R]
"""
import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch.nn.grad import conv2d_input, conv2d_weight

# (name as bench_conv prints it, C, H = W, K)
LAYERS = (
    ("unet.enc1.conv1 3->64 256^2 3x3", 3, 256, 64),
    ("unet.enc1.conv2 64->64 256^2 3x3", 64, 256, 64),
    ("unet.enc2.conv2 128->128 128^2 3x3", 128, 128, 128),
    ("unet.enc3.conv1 128->256 64^2 3x3", 128, 64, 256),
    ("unet.enc3.conv2 256->256 64^2 3x3", 256, 64, 256),
    ("unet.enc4.conv2 512->512 32^2 3x3", 512, 32, 512),
    ("unet.enc5.conv1 512->1024 16^2 3x3", 512, 16, 1024),
    ("unet.enc5.conv2 1024->1024 16^2 3x3", 1024, 16, 1024),
)


def median_ms(fn, repeats):
    fn()  # warm-up
    ms = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ms)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--filter", default="")
    a = p.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())))
    torch.manual_seed(0)
    print("# PyTorch %s CPU conv2d f32 NCHW, batch %d, %d threads, median of %d after warm-up"
          % (torch.__version__, a.batch, torch.get_num_threads(), a.repeats))
    print("| layer | forward ms | backward-input ms | backward-weight+bias ms | fwd + bwd ms |")
    print("|---|---|---|---|---|")
    with torch.no_grad():
        for name, C, HW, K in LAYERS:
            if a.filter not in name:
                continue
            x = torch.rand(a.batch, C, HW, HW) - 0.5
            w = torch.rand(K, C, 3, 3) - 0.5
            b = torch.rand(K) - 0.5
            dy = torch.rand(a.batch, K, HW, HW) - 0.5
            fwd = median_ms(lambda: F.conv2d(x, w, b, padding=1), a.repeats)
            bwd_in = median_ms(lambda: conv2d_input(x.shape, w, dy, padding=1), a.repeats)
            bwd_w = median_ms(lambda: (conv2d_weight(x, w.shape, dy, padding=1), dy.sum((0, 2, 3))), a.repeats)
            print("| %s | %.2f | %.2f | %.2f | %.2f |" % (name, fwd, bwd_in, bwd_w, fwd + bwd_in + bwd_w))


if __name__ == "__main__":
    main()
