"""A small CNN written the same way in torch (base) and paddle (raw)."""

import numpy as np
import paddle
import torch

EXPECTED_PAIRS = {"conv": "conv", "fc1": "fc1", "fc2": "fc2"}
EXPECTED_FINDINGS: set[str] = set()


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.act = torch.nn.ReLU()
        self.pool = torch.nn.AdaptiveAvgPool2d(2)
        self.fc1 = torch.nn.Linear(32, 16)
        self.fc2 = torch.nn.Linear(16, 4)

    def forward(self, x):
        x = self.pool(self.act(self.conv(x)))
        return self.fc2(self.act(self.fc1(x.flatten(1))))


class PaddleNet(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 8, 3, padding=1)
        self.act = paddle.nn.ReLU()
        self.pool = paddle.nn.AdaptiveAvgPool2D(2)
        self.fc1 = paddle.nn.Linear(32, 16)
        self.fc2 = paddle.nn.Linear(16, 4)

    def forward(self, x):
        x = self.pool(self.act(self.conv(x)))
        return self.fc2(self.act(self.fc1(x.flatten(1))))


def inputs():
    return {"x": np.random.default_rng(0).standard_normal((2, 3, 8, 8), dtype=np.float32)}


def base():
    return TorchNet(), inputs()


def raw():
    return PaddleNet(), inputs()
