#!/usr/bin/env python3
"""PyTorch twin of bench/bench_models for the U-Net encoder: the same network
(tools/export_torchvision.py's UNet, module for module), the same batch shape,
forward + cross-entropy + backward + AdamW, median/min over repeats after 2
warm-up steps; then eval-mode inference under no_grad. Prints markdown rows
that line up with bench_models' table. Threads: OMP_NUM_THREADS (as crfseg).

  /usr/bin/python3 bench/peers/torch_segmenter.py [--base W] [--depth D] [--size S] [--batch B] [--classes C] [--repeats R]
                                                  [--device cpu|cuda] [--profile STEPS]

With --device cuda the network and batch live on the GPU, each timed run
ends with torch.cuda.synchronize(), and TF32 is off for matmuls and cuDNN
convolutions (PyTorch enables it for cuDNN by default): true FP32, the
precision crfseg's CUDA path computes in.

--profile STEPS runs that many more training steps under torch.profiler and
prints its operator table (self time on the device for CUDA, on the CPU
otherwise), to set beside bench_models --profile's.
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


def timed(fn, warmup, repeats, sync=lambda: None):
    for _ in range(warmup):
        fn()
    sync()
    ms = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        ms.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ms), min(ms)


def main():
    p = argparse.ArgumentParser()
    for name, default in (("base", 16), ("depth", 4), ("size", 128), ("batch", 4), ("classes", 3), ("repeats", 10)):
        p.add_argument("--" + name, type=int, default=default)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", choices=("none", "bf16"), default="none",
                   help="bf16: torch.autocast(bfloat16) around forward and loss (CUDA)")
    p.add_argument("--profile", type=int, default=0, metavar="STEPS",
                   help="after timing, profile STEPS training steps with torch.profiler")
    a = p.parse_args()
    dev = torch.device(a.device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    if a.quick:
        a.repeats, a.base, a.depth, a.size, a.batch = 2, 4, 2, 32, 2
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())))
    torch.manual_seed(0)
    net = UNet(3, a.classes, a.base, a.depth).to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.randn(a.batch, 3, a.size, a.size).to(dev)
    idx = torch.arange(a.batch * a.size * a.size)
    y = ((idx // 7 + idx // (7 * a.size)) % a.classes).reshape(a.batch, a.size, a.size).to(dev)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=a.amp == "bf16"):
            loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()

    net.train()
    train = timed(step, 2, a.repeats, sync)
    net.eval()

    def infer():
        with torch.no_grad():
            net(x)

    inf = timed(infer, 1, a.repeats, sync)
    tag = ("" if dev.type == "cpu" else " " + a.device) + ("" if a.amp == "none" else " amp " + a.amp)
    print("| pytorch %s%s | train step | %.1f | %.1f | %.1f |" % (torch.__version__, tag, train[0], train[1],
                                                              1000.0 * a.batch / train[0]))
    print("| pytorch %s%s | inference | %.1f | %.1f | %.1f |" % (torch.__version__, tag, inf[0], inf[1],
                                                             1000.0 * a.batch / inf[0]))
    if a.profile > 0:
        net.train()
        activities = [torch.profiler.ProfilerActivity.CPU]
        if dev.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as prof:
            for _ in range(a.profile):
                step()
            sync()
        key = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
        print("\n## torch.profiler, %d training steps, sorted by %s" % (a.profile, key))
        print(prof.key_averages().table(sort_by=key, row_limit=30))


if __name__ == "__main__":
    main()
