"""User classes holding linear weights: a Megatron-style parallel linear and HF's ``Conv1D``.

torch (base) writes its projections as its own classes: a
``ColumnParallelLinear`` holding ``weight`` ``[out, in]`` (as Megatron-LM
does), and HuggingFace GPT-2's ``Conv1D`` holding ``weight`` ``[in, out]``.
paddle (raw) uses builtin ``Linear`` layers, ``[in, out]``. No conversion
knows the user classes; shapes settle the non-square weights, but a square
one fits as it is and transposed. PaDiff copies both square ones as they
are: the parallel linear silently wrong, ``Conv1D`` right by luck.
padiff_graph probes each pair: with inputs on what the layer receives, without
on a synthetic ``[2, 3, 16]`` input its square weight gives away (each layer
runs alone); either way it finds the transpose for the one and the identity
for the other.
"""

import math

import numpy as np
import paddle
import torch

DIM, HIDDEN = 16, 32

EXPECTED_PAIRS = {"dense": "dense", "c_fc": "c_fc", "c_proj": "c_proj", "head": "head"}
EXPECTED_FINDINGS = {"order-mismatch"}
#: what only a probe can tell: the parallel linear's square weight needs the transpose, ``Conv1D``'s does not
EXPECTED_TENSOR_LINKS = ["dense.weight -> dense.weight: transpose", "head.weight -> head.weight"]


class ColumnParallelLinear(torch.nn.Module):
    """Megatron-LM's layout, on one rank: ``weight`` is ``[out, in]``."""

    def __init__(self, cin, cout):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(cout, cin))
        self.bias = torch.nn.Parameter(torch.zeros(cout))
        torch.nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x):
        return torch.nn.functional.linear(x, self.weight, self.bias)


class Conv1D(torch.nn.Module):
    """HuggingFace GPT-2's ``Conv1D``: a linear layer whose ``weight`` is ``[in, out]``."""

    def __init__(self, cout, cin):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(cin, cout) * 0.2)
        self.bias = torch.nn.Parameter(torch.randn(cout) * 0.1)

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).reshape(*x.shape[:-1], -1)


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = ColumnParallelLinear(DIM, DIM)
        self.c_fc = Conv1D(HIDDEN, DIM)
        self.c_proj = Conv1D(DIM, HIDDEN)
        self.head = Conv1D(DIM, DIM)

    def forward(self, x):
        h = torch.tanh(self.dense(x))
        return self.head(h + self.c_proj(torch.tanh(self.c_fc(h))))


class PaddleNet(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.head = paddle.nn.Linear(DIM, DIM)
        self.dense = paddle.nn.Linear(DIM, DIM)
        self.c_fc = paddle.nn.Linear(DIM, HIDDEN)
        self.c_proj = paddle.nn.Linear(HIDDEN, DIM)

    def forward(self, x):
        h = paddle.tanh(self.dense(x))
        return self.head(h + self.c_proj(paddle.tanh(self.c_fc(h))))


def inputs():
    return {"x": np.random.default_rng(3).standard_normal((4, DIM), dtype=np.float32)}


def base():
    return TorchNet(), inputs()


def raw():
    return PaddleNet(), inputs()
