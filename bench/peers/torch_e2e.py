#!/usr/bin/env python3
"""PyTorch twin of build/bench/bench_models for the end-to-end comparison
(bench/e2e_report.py runs both): crfseg's Segmenter (U-Net, ResNet-50 or
VGG-16 encoder + the U-Net decoder of models/unet.h, module for module) or
the encoder's forward alone, the same batch, threads and optimizer. Prints
one JSON line like `bench_models --json`, plus the forward FLOPs of the
convolutions and linear layers (counted by forward hooks; 2 per
multiply-add) and this process's peak resident memory.

  /usr/bin/python3 bench/peers/torch_e2e.py [--encoder unet|resnet50|vgg16] [--base W] [--depth D]
      [--size S] [--batch B] [--classes C] [--repeats R] [--warmup W] [--optimizer adamw|sgd]
      [--encoder-forward] [--flops-only]
Threads: OMP_NUM_THREADS (torch.set_num_threads), as crfseg.
"""
import argparse
import json
import os
import resource
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402
from export_torchvision import UNet, double_conv, resnet_features, vgg_features  # noqa: E402
from torch_segmenter import timed  # noqa: E402  (this folder: the U-Net-only twin)


class Decoder(nn.Module):
    """models/unet.h's UNetDecoder: from the coarsest feature, per stage a 2x2
    transposed conv to the skip's width, concat [skip, up], double conv;
    bilinear up-sampling to the input size when the finest skip is coarser
    (ResNet), then a 1x1 conv to the classes."""

    def __init__(self, channels, classes):
        super().__init__()
        stages = len(channels) - 1
        cin = channels[-1]
        self.ups, self.blocks = nn.ModuleList(), nn.ModuleList()
        for s in range(stages):
            width = skip = channels[stages - 1 - s]
            self.ups.append(nn.ConvTranspose2d(cin, width, 2, stride=2))
            self.blocks.append(double_conv(width + skip, width))
            cin = width
        self.head = nn.Conv2d(cin, classes, 1)

    def forward(self, feats, out_hw):
        y = feats[-1]
        for s, (up, block) in enumerate(zip(self.ups, self.blocks)):
            y = block(torch.cat([feats[len(feats) - 2 - s], up(y)], 1))
        if tuple(y.shape[-2:]) != tuple(out_hw):
            y = F.interpolate(y, size=out_hw, mode="bilinear", align_corners=False)
        return self.head(y)


class Segmenter(nn.Module):
    def __init__(self, encoder, classes):
        super().__init__()
        self.kind = encoder
        # crfseg's encoders end at the last feature tap: no pooling head, no
        # classifier (they would add parameters, memory and optimizer work).
        if encoder == "resnet50":
            self.encoder = torchvision.models.resnet50()
            self.encoder.avgpool = self.encoder.fc = None
            channels = [64, 256, 512, 1024, 2048]
        else:
            # Only the convolutional part: building torchvision.models.vgg16()
            # would first allocate its 120 M-parameter classifier, which would
            # stay in the peak resident memory even once deleted.
            self.encoder = nn.Module()
            self.encoder.features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])
            channels = [64, 128, 256, 512, 512]
        self.decoder = Decoder(channels, classes)

    def features(self, x):
        return resnet_features(self.encoder, x) if self.kind == "resnet50" else vgg_features(self.encoder, x)

    def forward(self, x):
        return self.decoder(self.features(x), x.shape[-2:])


def count_forward_flops(model, run):
    """2 x multiply-adds of every Conv2d, ConvTranspose2d and Linear in one call of run()."""
    total = [0]

    def hook(mod, inputs, output):
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            total[0] += 2 * output.numel() * k
        elif isinstance(mod, nn.ConvTranspose2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.out_channels // mod.groups
            total[0] += 2 * inputs[0].numel() * k
        elif isinstance(mod, nn.Linear):
            total[0] += 2 * output.numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    with torch.no_grad():
        run()
    for h in handles:
        h.remove()
    return total[0]


def main():
    p = argparse.ArgumentParser()
    for name, default in (("base", 16), ("depth", 4), ("size", 128), ("batch", 4), ("classes", 3), ("repeats", 10),
                          ("warmup", 2)):
        p.add_argument("--" + name, type=int, default=default)
    p.add_argument("--encoder", default="unet", choices=["unet", "resnet50", "vgg16"])
    p.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd"])
    p.add_argument("--encoder-forward", action="store_true")
    p.add_argument("--flops-only", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())))
    torch.manual_seed(0)
    net = UNet(3, a.classes, a.base, a.depth) if a.encoder == "unet" else Segmenter(a.encoder, a.classes)
    x = torch.rand(a.batch, 3, a.size, a.size)
    i = torch.arange(a.batch * a.size * a.size)
    y = ((i // 7 + i // (7 * a.size)) % a.classes).reshape(a.batch, a.size, a.size)

    if a.encoder_forward:
        if a.encoder == "unet":
            sys.exit("torch_e2e.py: --encoder-forward needs --encoder resnet50 or vgg16")
        run_forward = lambda: net.features(x)  # noqa: E731
    else:
        run_forward = lambda: net(x)  # noqa: E731
    net.eval()
    flops = count_forward_flops(net, run_forward)
    out = {"impl": "pytorch " + torch.__version__, "encoder": a.encoder, "size": a.size, "batch": a.batch,
           "parameters": sum(t.numel() for t in net.parameters()), "forward_flops": flops,
           "threads": torch.get_num_threads()}
    if not a.flops_only:
        train_ms = (None, None)
        if not a.encoder_forward:
            net.train()
            opt = (torch.optim.SGD(net.parameters(), lr=1e-2, momentum=0.9) if a.optimizer == "sgd"
                   else torch.optim.AdamW(net.parameters(), lr=1e-3))

            def step():
                opt.zero_grad()
                F.cross_entropy(net(x), y).backward()
                opt.step()

            train_ms = timed(step, a.warmup, a.repeats)
            net.eval()

        def infer():
            with torch.no_grad():
                run_forward()

        infer_ms = timed(infer, 1 if not a.encoder_forward else a.warmup, a.repeats)
        out.update({"train_median_ms": train_ms[0], "train_min_ms": train_ms[1], "infer_median_ms": infer_ms[0],
                    "infer_min_ms": infer_ms[1],
                    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
