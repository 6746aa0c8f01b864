"""Repeated blocks numbered from 1 on one side, from 0 on the other.

paddle.vision-style (base): the stem is ``features.0``, the blocks
``features.1`` ... ``features.11``. timm-style (raw): ``conv_stem``/``bn1``
and ``blocks.0`` ... ``blocks.10``. Runs of same-shaped blocks (8 -> 8 twice,
16 -> 16 twice, 32 -> 32 three times) make equal digits point at the wrong
neighbour (``features.5`` ~ ``blocks.5``, which is ``features.6``); the
blocks of unique shape show the offset, and the matcher aligns the runs by it
without inputs. A definition-order zip is right here: no ``order-mismatch``.
"""

import numpy as np
import paddle
import torch

#: (in, out) channels of each block; equal neighbours are the runs that only order tells apart
WIDTHS = [(8, 8), (8, 8), (8, 16), (16, 16), (16, 16), (16, 32), (32, 32), (32, 32), (32, 32), (32, 64), (64, 64)]

EXPECTED_PAIRS = {
    "features.0.0": "conv_stem",
    "features.0.1": "bn1",
    **{f"features.{i + 1}.conv": f"blocks.{i}.conv" for i in range(len(WIDTHS))},
    **{f"features.{i + 1}.bn": f"blocks.{i}.norm" for i in range(len(WIDTHS))},
    "head": "head",
}
EXPECTED_FINDINGS = {"kind-mismatch", "wrap-layer", "index-offset"}


class PaddleBlock(paddle.nn.Layer):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = paddle.nn.Conv2D(cin, cout, 3, padding=1, bias_attr=False)
        self.bn = paddle.nn.BatchNorm2D(cout)
        self.residual = cin == cout

    def forward(self, x):
        y = paddle.nn.functional.relu(self.bn(self.conv(x)))
        return x + y if self.residual else y


class TorchBlock(torch.nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = torch.nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.norm = torch.nn.BatchNorm2d(cout)
        self.residual = cin == cout

    def forward(self, x):
        y = torch.relu(self.norm(self.conv(x)))
        return x + y if self.residual else y


class PaddleNet(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        stem = paddle.nn.Sequential(paddle.nn.Conv2D(3, 8, 3, padding=1, bias_attr=False), paddle.nn.BatchNorm2D(8))
        self.features = paddle.nn.Sequential(stem, *[PaddleBlock(a, b) for a, b in WIDTHS])
        self.head = paddle.nn.Linear(64, 10)

    def forward(self, x):
        return self.head(self.features(x).mean(axis=[2, 3]))


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_stem = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.blocks = torch.nn.Sequential(*[TorchBlock(a, b) for a, b in WIDTHS])
        self.head = torch.nn.Linear(64, 10)

    def forward(self, x):
        return self.head(self.blocks(self.bn1(self.conv_stem(x))).mean(dim=(2, 3)))


def inputs():
    return {"x": np.random.default_rng(0).standard_normal((2, 3, 8, 8), dtype=np.float32)}


def base():
    model = PaddleNet()
    for name, value in model.state_dict().items():  # distinct statistics, so a swap between blocks shows
        if name.endswith(("_mean", "_variance")):
            low = 0.5 if name.endswith("_variance") else -0.5
            value.set_value(np.random.default_rng(len(name)).uniform(low, low + 1.0, value.shape).astype("float32"))
    model.eval()
    return model, inputs()


def raw():
    model = TorchNet()
    model.eval()
    return model, inputs()
