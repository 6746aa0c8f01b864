"""The base model has an auxiliary head the raw port lacks (torch -> paddle).

PaDiff fails with "different number of sublayers"; here the extra head is
reported unmatched, never force-matched to a layer of the same shape.
"""

import numpy as np
import paddle
import torch

EXPECTED_PAIRS = {"encoder": "encoder", "head": "head"}
EXPECTED_UNMATCHED_BASE = ["aux_head"]
EXPECTED_FINDINGS = {"unmatched"}


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Linear(8, 16)
        self.aux_head = torch.nn.Linear(16, 4)
        self.head = torch.nn.Linear(16, 4)

    def forward(self, x):
        return self.head(torch.relu(self.encoder(x)))


class PaddleNet(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.encoder = paddle.nn.Linear(8, 16)
        self.head = paddle.nn.Linear(16, 4)

    def forward(self, x):
        return self.head(paddle.nn.functional.relu(self.encoder(x)))


def inputs():
    return {"x": np.random.default_rng(6).standard_normal((3, 8), dtype=np.float32)}


def base():
    return TorchNet(), inputs()


def raw():
    return PaddleNet(), inputs()
