"""paddle.vision's mobilenet_v2 (base) against a torch MobileNetV2 with torchvision's names (raw).

paddle.vision copied torchvision's layout: ``features.N`` is a
``ConvNormActivation`` Sequential (conv, bn, ReLU6), ``InvertedResidual.conv``
a Sequential, ``classifier`` is ``Sequential(Dropout, Linear)``. What differs:
paddle pools with a ``pool2d_avg`` layer where torchvision calls
``adaptive_avg_pool2d`` in ``forward``, and BatchNorm statistics are
parameters in paddle, buffers in torch.

The variant is the torch network written timm-style: ``conv_stem``/``bn1``,
blocks grouped by stage (``blocks.S.B``) with flat ``conv_pw``/``conv_dw``/
``conv_pwl`` attributes, ``conv_head``/``bn2`` and a bare ``classifier``.
"""

import numpy as np
import paddle
import torch
from torch import nn

#: torchvision's inverted residual setting: expansion, channels, repeats, first stride
_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
_LAST_FEATURE = 1 + sum(repeats for _, _, repeats, _ in _SETTING)


#: a block's tensor layers inside ``features.N.conv``, and their timm-style names
_EXPANDING_BLOCK = {"0.0": "conv_pw", "0.1": "bn1", "1.0": "conv_dw", "1.1": "bn2", "2": "conv_pwl", "3": "bn3"}
_FIRST_BLOCK = {"0.0": "conv_dw", "0.1": "bn1", "1": "conv_pw", "2": "bn2"}


def _expected_pairs(variant: bool) -> dict[str, str]:
    """paddle path -> torch path for every layer holding tensors."""
    last = f"features.{_LAST_FEATURE}"
    ends = {"features.0.0": "conv_stem", "features.0.1": "bn1"}
    ends |= {f"{last}.0": "conv_head", f"{last}.1": "bn2", "classifier.1": "classifier"}
    pairs = {path: name if variant else path for path, name in ends.items()}
    feature = 1
    for stage, (expansion, _, repeats, _) in enumerate(_SETTING):
        for index in range(repeats):
            for inner, name in (_EXPANDING_BLOCK if expansion != 1 else _FIRST_BLOCK).items():
                path = f"features.{feature}.conv.{inner}"
                pairs[path] = f"blocks.{stage}.{index}.{name}" if variant else path
            feature += 1
    return pairs


EXPECTED_PAIRS = _expected_pairs(variant=False)
EXPECTED_FINDINGS = {"kind-mismatch"}
EXPECTED_VARIANT_PAIRS = _expected_pairs(variant=True)
#: Layers a map without inputs can only tell apart by definition order, since the
#: flat index (``features.5``) shares no number with the stage's (``blocks.2.1``):
#: the blocks after the first of a stage of three or more, alike in every shape,
#: and in every expanding block the two hidden-width norms (``conv.0.1``/``conv.1.1``
#: against ``bn1``/``bn2``).
EXPECTED_VARIANT_STATIC_AMBIGUOUS = [
    paddle_path
    for paddle_path, torch_path in EXPECTED_VARIANT_PAIRS.items()
    if torch_path.startswith("blocks.")
    and (
        (int(torch_path.split(".")[2]) >= 1 and _SETTING[int(torch_path.split(".")[1])][2] >= 3)
        or (torch_path.endswith((".bn1", ".bn2")) and _SETTING[int(torch_path.split(".")[1])][0] != 1)
    )
]
EXPECTED_VARIANT_FINDINGS = {"kind-mismatch", "wrap-layer"}


def _make_divisible(value, divisor=8):
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


class Conv2dNormActivation(nn.Sequential):
    """torchvision.ops.Conv2dNormActivation with BatchNorm2d and ReLU6."""

    def __init__(self, cin, cout, kernel_size=3, stride=1, groups=1):
        super().__init__(
            nn.Conv2d(cin, cout, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        hidden = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers = [Conv2dNormActivation(inp, hidden, kernel_size=1)] if expand_ratio != 1 else []
        layers += [
            Conv2dNormActivation(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision's MobileNetV2 (width 1.0)."""

    def __init__(self, num_classes=1000):
        super().__init__()
        channels = 32
        features = [Conv2dNormActivation(3, channels, stride=2)]
        for expansion, width, repeats, stride in _SETTING:
            for index in range(repeats):
                out = _make_divisible(width)
                features.append(InvertedResidual(channels, out, stride if index == 0 else 1, expansion))
                channels = out
        features.append(Conv2dNormActivation(channels, 1280, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


class DepthwiseSeparableConv(nn.Module):
    """timm's first MobileNetV2 block (expansion 1)."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv_dw = nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False)
        self.bn1 = nn.BatchNorm2d(cin)
        self.act1 = nn.ReLU6(inplace=True)
        self.conv_pw = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.bn2(self.conv_pw(self.act1(self.bn1(self.conv_dw(x)))))


class TimmInvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expansion):
        super().__init__()
        hidden = cin * expansion
        self.has_skip = stride == 1 and cin == cout
        self.conv_pw = nn.Conv2d(cin, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.act1 = nn.ReLU6(inplace=True)
        self.conv_dw = nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.act2 = nn.ReLU6(inplace=True)
        self.conv_pwl = nn.Conv2d(hidden, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)

    def forward(self, x):
        out = self.act1(self.bn1(self.conv_pw(x)))
        out = self.act2(self.bn2(self.conv_dw(out)))
        out = self.bn3(self.conv_pwl(out))
        return x + out if self.has_skip else out


class TimmStyleMobileNetV2(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self.conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.act1 = nn.ReLU6(inplace=True)
        stages, channels = [], 32
        for expansion, width, repeats, stride in _SETTING:
            blocks = []
            for index in range(repeats):
                if expansion == 1:
                    blocks.append(DepthwiseSeparableConv(channels, width))
                else:
                    blocks.append(TimmInvertedResidual(channels, width, stride if index == 0 else 1, expansion))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.conv_head = nn.Conv2d(channels, 1280, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(1280)
        self.act2 = nn.ReLU6(inplace=True)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(1280, num_classes)

    def forward(self, x):
        x = self.blocks(self.act1(self.bn1(self.conv_stem(x))))
        x = self.global_pool(self.act2(self.bn2(self.conv_head(x))))
        return self.classifier(torch.flatten(x, 1))


def inputs():
    return {"x": np.random.default_rng(20).standard_normal((2, 3, 32, 32), dtype=np.float32)}


def _statistics(rng, size):
    """Trained-looking BatchNorm values (not 0 and 1), so a missed copy shows in the diff."""
    scales = (rng.uniform(0.8, 1.2, size) for _ in range(2))
    shifts = (rng.uniform(-0.1, 0.1, size) for _ in range(2))
    return {"weight": next(scales), "variance": next(scales), "bias": next(shifts), "mean": next(shifts)}


def base():
    paddle.seed(20)
    model = paddle.vision.models.mobilenet_v2(num_classes=10)
    rng = np.random.default_rng(21)
    for layer in model.sublayers():
        if isinstance(layer, paddle.nn.BatchNorm2D):
            values = _statistics(rng, layer.weight.shape[0])
            layer.weight.set_value(values["weight"].astype(np.float32))
            layer.bias.set_value(values["bias"].astype(np.float32))
            layer._mean.set_value(values["mean"].astype(np.float32))
            layer._variance.set_value(values["variance"].astype(np.float32))
    model.eval()
    return model, inputs()


def _settle_torch(model, seed):
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                values = _statistics(rng, module.num_features)
                module.weight.copy_(torch.from_numpy(values["weight"]))
                module.bias.copy_(torch.from_numpy(values["bias"]))
                module.running_mean.copy_(torch.from_numpy(values["mean"]))
                module.running_var.copy_(torch.from_numpy(values["variance"]))
    model.eval()
    return model


def raw():
    torch.manual_seed(20)
    return _settle_torch(MobileNetV2(num_classes=10), 22), inputs()


def variant():
    torch.manual_seed(21)
    return _settle_torch(TimmStyleMobileNetV2(num_classes=10), 23), inputs()
