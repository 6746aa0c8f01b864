"""Squeeze-and-excitation: 1x1 convolutions on one side, Linear layers on the other.

torchvision's ``SqueezeExcitation`` (base) squeezes and excites with
``Conv2d(c, s, 1)`` / ``Conv2d(s, c, 1)``, weights ``[out, in, 1, 1]``; the
paddle port (raw) pools, flattens and uses ``Linear`` layers, weights
``[in, out]``. The same numbers in another shape: ``reshape(s,c), transpose``.
No conversion is registered for the pair of classes; shapes decide it (and
a probe with inputs confirms). The second block is square (``c == s``), so
only a probe tells ``reshape`` from ``reshape, transpose``; since a ``Linear``
cannot take a convolution's ``[n, c, 1, 1]`` input, its weights are probed
together under the enclosing pair.
"""

import numpy as np
import paddle
import torch

CHANNELS, SQUEEZED = 16, 4

EXPECTED_PAIRS = {
    "conv": "conv",
    "se.fc1": "se.fc1",
    "se.fc2": "se.fc2",
    "mix.fc1": "mix.fc1",
    "mix.fc2": "mix.fc2",
}
#: the SE blocks hold conv layers on one side, linear ones on the other: their contents differ by
#: family, so the matcher pairs the layers inside across them and reports the blocks as wrappers
EXPECTED_FINDINGS = {"wrap-layer"}
EXPECTED_STATIC_REFUSED = True
EXPECTED_TENSOR_LINKS = [
    f"se.fc1.weight -> se.fc1.weight: reshape({SQUEEZED},{CHANNELS}), transpose",
    f"se.fc2.weight -> se.fc2.weight: reshape({CHANNELS},{SQUEEZED}), transpose",
    f"mix.fc1.weight -> mix.fc1.weight: reshape({CHANNELS},{CHANNELS}), transpose",
    f"mix.fc2.weight -> mix.fc2.weight: reshape({CHANNELS},{CHANNELS}), transpose",
]


class TorchSE(torch.nn.Module):
    def __init__(self, channels, squeezed):
        super().__init__()
        self.fc1 = torch.nn.Conv2d(channels, squeezed, 1)
        self.fc2 = torch.nn.Conv2d(squeezed, channels, 1)

    def forward(self, x):
        scale = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(scale))))


class PaddleSE(paddle.nn.Layer):
    def __init__(self, channels, squeezed):
        super().__init__()
        self.fc1 = paddle.nn.Linear(channels, squeezed)
        self.fc2 = paddle.nn.Linear(squeezed, channels)

    def forward(self, x):
        scale = x.mean(axis=[2, 3])
        return x * paddle.nn.functional.sigmoid(self.fc2(paddle.nn.functional.relu(self.fc1(scale))))[:, :, None, None]


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, CHANNELS, 3, padding=1)
        self.se = TorchSE(CHANNELS, SQUEEZED)
        self.mix = TorchSE(CHANNELS, CHANNELS)

    def forward(self, x):
        return self.mix(self.se(self.conv(x))).mean(dim=(2, 3))


class PaddleNet(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, CHANNELS, 3, padding=1)
        self.se = PaddleSE(CHANNELS, SQUEEZED)
        self.mix = PaddleSE(CHANNELS, CHANNELS)

    def forward(self, x):
        return self.mix(self.se(self.conv(x))).mean(axis=[2, 3])


def inputs():
    return {"x": np.random.default_rng(5).standard_normal((2, 3, 6, 6), dtype=np.float32)}


def base():
    return TorchNet(), inputs()


def raw():
    return PaddleNet(), inputs()
