"""Containers whose contents correspond but that return other tensors: torchvision's DenseNet layer returns
its new features (the block concatenates), paddle.vision's concatenates its input inside."""

import numpy as np
import paddle
import pytest
import torch

from padiff_graph import assign_weights, diff

X = {"x": np.random.default_rng(4).standard_normal((2, 4, 5, 5)).astype(np.float32)}


class TorchDense(torch.nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.dense1, self.dense2 = TorchDense(4), TorchDense(8)
        self.head = torch.nn.Conv2d(12, 2, 1)

    def forward(self, x):
        x = torch.cat([x, self.dense1(x)], 1)
        return self.head(torch.cat([x, self.dense2(x)], 1))


class PaddleDense(paddle.nn.Layer):
    def __init__(self, channels):
        super().__init__()
        self.conv = paddle.nn.Conv2D(channels, 4, 3, padding=1)

    def forward(self, x):
        return paddle.concat([x, self.conv(x)], axis=1)


class PaddleNet(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.dense1, self.dense2 = PaddleDense(4), PaddleDense(8)
        self.head = paddle.nn.Conv2D(12, 2, 1)

    def forward(self, x):
        return self.head(self.dense2(self.dense1(x)))


@pytest.mark.parametrize("direction", ["torch->paddle", "paddle->torch"])
def test_containers_returning_other_tensors_not_compared(direction):
    models = (TorchNet(), PaddleNet()) if direction == "torch->paddle" else (PaddleNet(), TorchNet())
    report = diff(*models, X)
    assert report.ok, report.first_divergence
    assert "return other tensors" in {n.base: n.why for n in report.not_compared}["dense1"]
    assert [c for c in report.comparisons if c.base == "dense1.conv" and c.kind == "forward"]


def test_a_wrong_layer_inside_still_named():
    base, raw = TorchNet(), PaddleNet()
    assign_weights(base, raw, inputs=X)
    raw.dense2.conv.bias.set_value(raw.dense2.conv.bias.numpy() + 0.5)  # a planted bug inside the second container
    report = diff(base, raw, X, assign=False, backward=False)
    assert report.first_divergence is not None and report.first_divergence.base == "dense2.conv"
