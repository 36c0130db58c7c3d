#!/usr/bin/env python3
"""PyTorch twin of bench/bench_models for the U-Net encoder: the same network
(tools/export_torchvision.py's UNet, module for module), the same batch shape,
forward + cross-entropy + backward + AdamW, median/min over repeats after 2
warm-up steps; then eval-mode inference under no_grad. Prints markdown rows
that line up with bench_models' table. Threads: OMP_NUM_THREADS (as crfseg).

  /usr/bin/python3 bench/peers/torch_segmenter.py [--base W] [--depth D] [--size S] [--batch B] [--classes C] [--repeats R]
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from export_torchvision import UNet  # noqa: E402


def timed(fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    ms = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ms), min(ms)


def main():
    p = argparse.ArgumentParser()
    for name, default in (("base", 16), ("depth", 4), ("size", 128), ("batch", 4), ("classes", 3), ("repeats", 10)):
        p.add_argument("--" + name, type=int, default=default)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    if a.quick:
        a.repeats, a.base, a.depth, a.size, a.batch = 2, 4, 2, 32, 2
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())))
    torch.manual_seed(0)
    net = UNet(3, a.classes, a.base, a.depth)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.randn(a.batch, 3, a.size, a.size)
    idx = torch.arange(a.batch * a.size * a.size)
    y = ((idx // 7 + idx // (7 * a.size)) % a.classes).reshape(a.batch, a.size, a.size)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()

    net.train()
    train = timed(step, 2, a.repeats)
    net.eval()

    def infer():
        with torch.no_grad():
            net(x)

    inf = timed(infer, 1, a.repeats)
    print("| pytorch %s | train step | %.1f | %.1f | %.1f |" % (torch.__version__, train[0], train[1],
                                                              1000.0 * a.batch / train[0]))
    print("| pytorch %s | inference | %.1f | %.1f | %.1f |" % (torch.__version__, inf[0], inf[1],
                                                             1000.0 * a.batch / inf[0]))


if __name__ == "__main__":
    main()
