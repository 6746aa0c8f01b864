"""Same forward, siblings defined in another order; two of them same-shaped.

PaDiff zips layers in definition order, so it copies ``proj_b`` into
``proj_a`` (same shape: silently wrong) and ``head`` into ``embed``.
"""

import numpy as np
import paddle
import torch

EXPECTED_PAIRS = {"embed": "embed", "proj_a": "proj_a", "proj_b": "proj_b", "head": "head"}
EXPECTED_FINDINGS = {"order-mismatch"}


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Linear(6, 12)
        self.proj_a = torch.nn.Linear(12, 12)
        self.proj_b = torch.nn.Linear(12, 12)
        self.head = torch.nn.Linear(12, 3)

    def forward(self, x):
        h = torch.tanh(self.embed(x))
        return self.head(torch.tanh(self.proj_b(torch.tanh(self.proj_a(h)))))


class PaddleNet(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.head = paddle.nn.Linear(12, 3)
        self.proj_b = paddle.nn.Linear(12, 12)
        self.proj_a = paddle.nn.Linear(12, 12)
        self.embed = paddle.nn.Linear(6, 12)

    def forward(self, x):
        h = paddle.tanh(self.embed(x))
        return self.head(paddle.tanh(self.proj_b(paddle.tanh(self.proj_a(h)))))


def inputs():
    return {"x": np.random.default_rng(1).standard_normal((4, 6), dtype=np.float32)}


def base():
    return TorchNet(), inputs()


def raw():
    return PaddleNet(), inputs()
