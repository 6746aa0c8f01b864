"""Two same-shaped BatchNorms, defined in another order on the paddle side.

Nothing but the forward tells ``bn_a``/``bn_b`` from ``norm1``/``norm2``:
same class, same shapes, unrelated names. PaDiff zips them in definition
order and swaps their statistics (outputs differ by ~0.2, "success"). Without
inputs padiff_graph reports ``ambiguous-match`` and every copy path stops;
with inputs, call order pairs them.
"""

import numpy as np
import paddle
import torch

EXPECTED_PAIRS = {"conv": "conv", "bn_a": "norm1", "bn_b": "norm2"}
EXPECTED_FINDINGS = {"kind-mismatch", "order-mismatch"}
EXPECTED_STATIC_AMBIGUOUS = ["bn_a", "bn_b"]


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 3)
        self.bn_a = torch.nn.BatchNorm2d(6)
        self.bn_b = torch.nn.BatchNorm2d(6)

    def forward(self, x):
        return self.bn_b(torch.relu(self.bn_a(self.conv(x))))


class PaddleNet(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 6, 3)
        self.norm2 = paddle.nn.BatchNorm2D(6)
        self.norm1 = paddle.nn.BatchNorm2D(6)

    def forward(self, x):
        return self.norm2(paddle.nn.functional.relu(self.norm1(self.conv(x))))


def inputs():
    return {"x": np.random.default_rng(7).standard_normal((2, 3, 6, 6), dtype=np.float32)}


def base():
    model = TorchNet()
    with torch.no_grad():  # distinct statistics and affine weights, so a swap shows
        for norm in (model.bn_a, model.bn_b):
            norm.running_mean.uniform_(-0.5, 0.5)
            norm.running_var.uniform_(0.5, 2.0)
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    model.eval()
    return model, inputs()


def raw():
    model = PaddleNet()
    model.eval()
    return model, inputs()
