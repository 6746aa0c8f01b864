"""A planted fault: the raw port's MLP uses the tanh approximation of GELU.

Weights copy fine and shapes agree; only the numbers drift, from the GELU on.
PaDiff's default "mean" mode misses it; ``diff`` names ``mlp.act``.
"""

import numpy as np
import paddle
import torch

EXPECTED_PAIRS = {"embed": "embed", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2", "norm": "norm"}
EXPECTED_FINDINGS = {"config-mismatch"}
EXPECTED_DIVERGENCE = ("mlp.act", "mlp.act", "forward")


class TorchMlp(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.fc1 = torch.nn.Linear(dim, 4 * dim)
        self.act = torch.nn.GELU()
        self.fc2 = torch.nn.Linear(4 * dim, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class PaddleMlp(paddle.nn.Layer):
    def __init__(self, dim):
        super().__init__()
        self.fc1 = paddle.nn.Linear(dim, 4 * dim)
        self.act = paddle.nn.GELU(approximate=True)
        self.fc2 = paddle.nn.Linear(4 * dim, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class TorchNet(torch.nn.Module):
    def __init__(self, dim=16):
        super().__init__()
        self.embed = torch.nn.Linear(8, dim)
        self.mlp = TorchMlp(dim)
        self.norm = torch.nn.LayerNorm(dim)

    def forward(self, x):
        h = self.embed(x)
        return self.norm(h + self.mlp(h))


class PaddleNet(paddle.nn.Layer):
    def __init__(self, dim=16):
        super().__init__()
        self.embed = paddle.nn.Linear(8, dim)
        self.mlp = PaddleMlp(dim)
        self.norm = paddle.nn.LayerNorm(dim)

    def forward(self, x):
        h = self.embed(x)
        return self.norm(h + self.mlp(h))


def inputs():
    return {"x": np.random.default_rng(9).standard_normal((16, 8), dtype=np.float32) * 4}


def base():
    return TorchNet(), inputs()


def raw():
    return PaddleNet(), inputs()
