"""paddle.vision's resnet50 (base) against a torch ResNet-50 with torchvision's names (raw).

The variant is the same torch network written timm-style: a ``stem`` block,
``stages.N.blocks.M`` instead of ``layerN.M``, ``shortcut`` instead of
``downsample`` and a ``head`` holding ``fc``; each block defines its shortcut
first and its convolutions before their norms, so a definition-order copy
pairs paddle's ``conv1`` with the variant's shortcut convolution.

ResNet-50 holds 23.5M parameters: the tests only map it (no forward run)
unless run with ``--run-slow``.
"""

import sys
from pathlib import Path

import numpy as np
import paddle
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from torch_resnet import resnet50

FORWARD_IN_TESTS = False

_DEPTHS = (3, 4, 6, 3)
_BLOCK_LAYERS = ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3")


def _expected_pairs(variant: bool) -> dict[str, str]:
    """paddle path -> torch path for every layer holding tensors."""

    def stem(name: str) -> str:
        return f"stem.{name[:-1]}" if variant else name  # conv1 -> stem.conv, bn1 -> stem.bn

    def block(stage: int, index: int) -> str:
        return f"stages.{stage - 1}.blocks.{index}" if variant else f"layer{stage}.{index}"

    shortcut = ("shortcut.conv", "shortcut.bn") if variant else ("downsample.0", "downsample.1")
    pairs = {"conv1": stem("conv1"), "bn1": stem("bn1"), "fc": "head.fc" if variant else "fc"}
    for stage, depth in enumerate(_DEPTHS, start=1):
        for index in range(depth):
            for layer in _BLOCK_LAYERS:
                pairs[f"layer{stage}.{index}.{layer}"] = f"{block(stage, index)}.{layer}"
        for paddle_name, torch_name in zip(("downsample.0", "downsample.1"), shortcut, strict=True):
            pairs[f"layer{stage}.0.{paddle_name}"] = f"{block(stage, 0)}.{torch_name}"
    return pairs


EXPECTED_PAIRS = _expected_pairs(variant=False)
EXPECTED_FINDINGS = {"kind-mismatch"}
EXPECTED_VARIANT_PAIRS = _expected_pairs(variant=True)
EXPECTED_VARIANT_FINDINGS = {"kind-mismatch", "order-mismatch", "wrap-layer"}


class Stem(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn = nn.BatchNorm2d(64)
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(3, 2, 1)

    def forward(self, x):
        return self.pool(self.act(self.bn(self.conv(x))))


class Shortcut(nn.Module):
    def __init__(self, inplanes, outplanes, stride):
        super().__init__()
        self.conv = nn.Conv2d(inplanes, outplanes, 1, stride, bias=False)
        self.bn = nn.BatchNorm2d(outplanes)

    def forward(self, x):
        return self.bn(self.conv(x))


class Bottleneck(nn.Module):
    """torchvision's Bottleneck, defined shortcut first and convolutions before norms."""

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        outplanes = planes * 4
        self.shortcut = Shortcut(inplanes, outplanes, stride) if stride != 1 or inplanes != outplanes else None
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.conv3 = nn.Conv2d(planes, outplanes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.bn3 = nn.BatchNorm2d(outplanes)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.act(self.bn1(self.conv1(x)))
        out = self.act(self.bn2(self.conv2(out)))
        return self.act(self.bn3(self.conv3(out)) + identity)


class Stage(nn.Module):
    def __init__(self, inplanes, planes, depth, stride):
        super().__init__()
        blocks = [Bottleneck(inplanes, planes, stride)]
        blocks += [Bottleneck(planes * 4, planes) for _ in range(1, depth)]
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x):
        return self.blocks(x)


class Head(nn.Module):
    def __init__(self, features, num_classes):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(features, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(x), 1))


class TimmStyleResNet50(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self.stem = Stem()
        widths = (64, 128, 256, 512)
        inplanes = [64] + [width * 4 for width in widths[:-1]]
        self.stages = nn.ModuleList(
            Stage(inplanes[i], widths[i], _DEPTHS[i], 1 if i == 0 else 2) for i in range(len(_DEPTHS))
        )
        self.head = Head(2048, num_classes)

    def forward(self, x):
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(x)


def inputs():
    return {"x": np.random.default_rng(10).standard_normal((2, 3, 32, 32), dtype=np.float32)}


def settle_paddle(model):
    """Trained-looking BatchNorms: varied statistics (so a missed copy shows) and residual
    branches scaled down (so activations stay O(1) through 16 blocks, as after training)."""
    rng = np.random.default_rng(12)
    for name, layer in model.named_sublayers():
        if isinstance(layer, paddle.nn.BatchNorm2D):
            size = layer.weight.shape[0]
            gamma = rng.uniform(0.1, 0.3, size) if name.endswith("bn3") else rng.uniform(0.8, 1.2, size)
            layer.weight.set_value(gamma.astype(np.float32))
            layer.bias.set_value(rng.uniform(-0.1, 0.1, size).astype(np.float32))
            layer._mean.set_value(rng.uniform(-0.1, 0.1, size).astype(np.float32))
            layer._variance.set_value(rng.uniform(0.8, 1.25, size).astype(np.float32))
    model.eval()
    return model


def settle_torch(model):
    """As :func:`settle_paddle`, for torch."""
    rng = np.random.default_rng(13)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, nn.BatchNorm2d):
                size = module.num_features
                gamma = rng.uniform(0.1, 0.3, size) if name.endswith("bn3") else rng.uniform(0.8, 1.2, size)
                module.weight.copy_(torch.from_numpy(gamma))
                module.bias.copy_(torch.from_numpy(rng.uniform(-0.1, 0.1, size)))
                module.running_mean.copy_(torch.from_numpy(rng.uniform(-0.1, 0.1, size)))
                module.running_var.copy_(torch.from_numpy(rng.uniform(0.8, 1.25, size)))
    model.eval()
    return model


def base():
    paddle.seed(10)
    return settle_paddle(paddle.vision.models.resnet50(num_classes=10)), inputs()


def raw():
    torch.manual_seed(10)
    return settle_torch(resnet50(num_classes=10)), inputs()


def variant():
    torch.manual_seed(11)
    return settle_torch(TimmStyleResNet50(num_classes=10)), inputs()
