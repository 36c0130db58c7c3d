#!/usr/bin/python3
"""Export torchvision weights to safetensors for crfseg, and write the
reference outputs the parity tests compare against.

Needs Debian's python3-torch and python3-torchvision (never needed to build
or run crfseg). There is no network: torchvision's models are randomly
initialised here; users with ImageNet-pretrained weights on disk can pass
--weights to load them first.

  export_torchvision.py weights --model resnet50 --out resnet50.safetensors [--weights file.pth]
      The encoder's state dict (ResNet-50 without fc, VGG-16 `features`),
      with torchvision's names, which crfseg's encoders use too.

  export_torchvision.py parity --out DIR
      Writes DIR/{resnet50,vgg16}.safetensors (weights, an input and the
      encoder's feature maps in eval mode) and DIR/unet_step.safetensors (a
      small U-Net built like crfseg's Segmenter: weights, input, target, the
      loss and every parameter's gradient after one training-mode step).

The safetensors writer is the format itself (8-byte little-endian header
length, JSON header, raw little-endian data), so no extra package is needed.
"""
import argparse
import json
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8"}


def save_safetensors(path, tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        data = t.numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)  # align the data to 8 bytes, as the reference writer does
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def encoder_state(model_name, model):
    state = model.state_dict()
    if model_name == "resnet50":
        return {k: v for k, v in state.items() if not k.startswith("fc.")}
    return {k: v for k, v in state.items() if k.startswith("features.")}


def build(model_name):
    return {"resnet50": torchvision.models.resnet50, "vgg16": torchvision.models.vgg16,
            "vgg16_bn": torchvision.models.vgg16_bn}[model_name]()


def resnet_features(m, x):
    f = [m.relu(m.bn1(m.conv1(x)))]
    f.append(m.layer1(m.maxpool(f[-1])))
    for layer in (m.layer2, m.layer3, m.layer4):
        f.append(layer(f[-1]))
    return f


def vgg_features(m, x):
    taps, y = [], x
    for i, layer in enumerate(m.features):
        y = layer(y)
        if i + 1 < len(m.features) and isinstance(m.features[i + 1], nn.MaxPool2d):
            taps.append(y)
    return taps


def randomise_bn_stats(model, gen):
    # Fresh BatchNorms have mean 0 / var 1, which would not exercise eval-mode
    # normalisation; give them non-trivial statistics and affine parameters.
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            with torch.no_grad():
                mod.running_mean.uniform_(-0.5, 0.5, generator=gen)
                mod.running_var.uniform_(0.5, 2.0, generator=gen)
                mod.weight.uniform_(0.5, 1.5, generator=gen)
                mod.bias.uniform_(-0.5, 0.5, generator=gen)


class BNReLU(nn.BatchNorm2d):
    """BatchNorm2d followed by ReLU under one name, like crfseg's fused BN."""

    def forward(self, x):
        return F.relu(super().forward(x))


def double_conv(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), BNReLU(cout),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), BNReLU(cout))


class UNet(nn.Module):
    """crfseg's Segmenter with the U-Net encoder and transposed-conv decoder,
    module for module, so both have the same parameter names."""

    def __init__(self, cin, classes, base, depth):
        super().__init__()
        self.encoder = nn.Module()
        chans = [base << i for i in range(depth + 1)]
        for i, c in enumerate(chans):
            setattr(self.encoder, "enc%d" % i, double_conv(cin if i == 0 else chans[i - 1], c))
        self.decoder = nn.Module()
        cin_dec = chans[-1]
        for s in range(depth):
            width = chans[depth - 1 - s]
            setattr(self.decoder, "up%d" % s, nn.ConvTranspose2d(cin_dec, width, 2, stride=2))
            setattr(self.decoder, "block%d" % s, double_conv(width + width, width))
            cin_dec = width
        self.decoder.head = nn.Conv2d(cin_dec, classes, 1)
        self.depth = depth

    def forward(self, x):
        feats, y = [], x
        for i in range(self.depth + 1):
            if i > 0:
                y = F.max_pool2d(y, 2)
            y = getattr(self.encoder, "enc%d" % i)(y)
            feats.append(y)
        y = feats[-1]
        for s in range(self.depth):
            y = getattr(self.decoder, "up%d" % s)(y)
            y = getattr(self.decoder, "block%d" % s)(torch.cat([feats[self.depth - 1 - s], y], 1))
        return self.decoder.head(y)


def parity(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    for name, shape, features in (("resnet50", (2, 3, 64, 96), resnet_features),
                                  ("vgg16", (2, 3, 48, 32), vgg_features)):
        model = build(name)
        randomise_bn_stats(model, gen)
        model.eval()
        x = torch.rand(shape, generator=gen) * 2 - 1
        with torch.no_grad():
            feats = features(model, x)
        tensors = dict(encoder_state(name, model))
        tensors["input"] = x
        for i, f in enumerate(feats):
            tensors["feature.%d" % i] = f
        save_safetensors(os.path.join(out_dir, name + ".safetensors"), tensors,
                         {"torch": torch.__version__, "torchvision": torchvision.__version__})

    net = UNet(cin=3, classes=3, base=8, depth=2)
    net.train()
    x = torch.rand((2, 3, 16, 20), generator=gen) * 2 - 1
    target = torch.randint(0, 3, (2, 16, 20), generator=gen)
    weights = {k: v.clone() for k, v in net.state_dict().items()}  # before the step updates BN statistics
    loss = F.cross_entropy(net(x), target)
    loss.backward()
    tensors = {"weight." + k: v for k, v in weights.items()}
    tensors["input"] = x
    tensors["target"] = target
    tensors["loss"] = loss.detach().reshape(())
    for k, p in net.named_parameters():
        tensors["grad." + k] = p.grad
    for k, v in net.state_dict().items():
        if k.endswith("running_mean") or k.endswith("running_var"):
            tensors["after." + k] = v
    save_safetensors(os.path.join(out_dir, "unet_step.safetensors"), tensors, {"torch": torch.__version__})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("weights")
    w.add_argument("--model", choices=["resnet50", "vgg16", "vgg16_bn"], required=True)
    w.add_argument("--out", required=True)
    w.add_argument("--weights", help="a torchvision state_dict (.pth) to load first")
    p = sub.add_parser("parity")
    p.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.cmd == "weights":
        model = build(args.model)
        if args.weights:
            model.load_state_dict(torch.load(args.weights, map_location="cpu"))
        save_safetensors(args.out, encoder_state(args.model, model), {"source": args.weights or "random init"})
        print("wrote", args.out, file=sys.stderr)
    else:
        parity(args.out)


if __name__ == "__main__":
    main()
