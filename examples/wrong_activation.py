"""A planted fault: the port's second block uses ReLU where the base uses GELU.

The activations hold no tensors, so no structural stage pairs them (their
classes differ). With inputs, they sit alone between the same matched layers in
call order, so the matcher pairs them as a mismatch: ``check`` reports
``class-mismatch`` (GELU vs ReLU) and ``diff`` names ``blocks.1.act``, not the
Linear after it.
"""

import numpy as np
import paddle
import torch

DIM = 16

EXPECTED_PAIRS = {
    "embed": "embed",
    **{f"blocks.{i}.{fc}": f"blocks.{i}.{fc}" for i in (0, 1) for fc in ("fc1", "fc2")},
    "norm": "norm",
}
EXPECTED_FINDINGS = {"class-mismatch"}
EXPECTED_DIVERGENCE = ("blocks.1.act", "blocks.1.act", "forward")


class TorchBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.act, self.fc2 = torch.nn.Linear(DIM, 2 * DIM), torch.nn.GELU(), torch.nn.Linear(2 * DIM, DIM)

    def forward(self, x):
        return x + self.fc2(self.act(self.fc1(x)))


class PaddleBlock(paddle.nn.Layer):
    def __init__(self, act):
        super().__init__()
        self.fc1, self.act, self.fc2 = paddle.nn.Linear(DIM, 2 * DIM), act, paddle.nn.Linear(2 * DIM, DIM)

    def forward(self, x):
        return x + self.fc2(self.act(self.fc1(x)))


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Linear(8, DIM)
        self.blocks = torch.nn.Sequential(TorchBlock(), TorchBlock())
        self.norm = torch.nn.LayerNorm(DIM)

    def forward(self, x):
        return self.norm(self.blocks(self.embed(x)))


class PaddleNet(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.embed = paddle.nn.Linear(8, DIM)
        self.blocks = paddle.nn.Sequential(PaddleBlock(paddle.nn.GELU()), PaddleBlock(paddle.nn.ReLU()))
        self.norm = paddle.nn.LayerNorm(DIM)

    def forward(self, x):
        return self.norm(self.blocks(self.embed(x)))


def inputs():
    return {"x": np.random.default_rng(11).standard_normal((16, 8), dtype=np.float32)}


def base():
    return TorchNet(), inputs()


def raw():
    return PaddleNet(), inputs()
