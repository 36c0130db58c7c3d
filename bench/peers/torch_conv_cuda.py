#!/usr/bin/env python3
"""PyTorch twin of bench/bench_conv_cuda: cuDNN conv2d 3x3 pad 1 (and 2x2
stride 2, the up-convolutions' kernel) on the same U-Net layer shapes,
forward + backward-input + backward-weight (through torch.nn.grad's
conv2d_input / conv2d_weight), median of R runs timed with
CUDA events after warm-up. --precision fp32 (the default): f32 with TF32
off; tf32: f32 with TF32 allowed; bf16: bfloat16 tensors (what autocast
gives a convolution; half of f32's bytes, where crfseg's bf16 keeps f32
tensors and rounds only the products' inputs).

  python3 bench/peers/torch_conv_cuda.py [--batch N] [--repeats R] [--precision fp32|tf32|bf16]
"""
import argparse
import statistics

import torch
import torch.nn.functional as F
from torch.nn.grad import conv2d_input, conv2d_weight


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--precision", choices=("fp32", "tf32", "bf16"), default="fp32")
    a = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = a.precision == "tf32"
    torch.backends.cudnn.allow_tf32 = a.precision == "tf32"
    dtype = torch.bfloat16 if a.precision == "bf16" else torch.float32
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    print("| C -> K @ HxW | pytorch %s cuDNN %s ms |" % (torch.__version__, a.precision))
    print("|---|---|")
    # (C, HW, K, R): 3x3 pad 1, or R = 2: 2x2 stride 2, the up-convolution's kernel.
    for C, HW, K, R in ((3, 256, 64, 3), (64, 256, 64, 3), (128, 128, 128, 3), (256, 64, 256, 3), (512, 32, 512, 3),
                        (1024, 16, 1024, 3), (64, 256, 128, 2), (512, 32, 1024, 2)):
        pad, stride = (1, 1) if R == 3 else (0, 2)
        out = HW // stride
        x = torch.randn(a.batch, C, HW, HW, device=dev, dtype=dtype)
        w = torch.randn(K, C, R, R, device=dev, dtype=dtype)
        g = torch.randn(a.batch, K, out, out, device=dev, dtype=dtype)

        def run():
            F.conv2d(x, w, padding=pad, stride=stride)
            conv2d_input(x.shape, w, g, padding=pad, stride=stride)
            conv2d_weight(x, w.shape, g, padding=pad, stride=stride)

        for _ in range(3):
            run()
        ms = []
        for _ in range(a.repeats):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            run()
            e.record()
            e.synchronize()
            ms.append(s.elapsed_time(e))
        print("| %d -> %d @ %dx%d%s | %.2f |" % (C, K, HW, HW, " (2x2 s2)" if R == 2 else "", statistics.median(ms)))


if __name__ == "__main__":
    main()
