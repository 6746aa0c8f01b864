"""A DETR-style query embedding: a raw ``nn.Parameter`` in torch, an ``Embedding`` in paddle.

PaDiff skips the paddle Embedding (it lost its parameter to the zip) and
reports a shape error at an unrelated layer further down.
"""

import numpy as np
import paddle
import torch

EXPECTED_PAIRS = {"decoder": "decoder", "decoder.proj": "decoder.proj", "decoder.norm": "decoder.norm"}
EXPECTED_TENSORS = {"decoder.query_embed": "decoder.query_embed.weight"}
EXPECTED_FINDINGS = {"kind-mismatch"}


class TorchDecoder(torch.nn.Module):
    def __init__(self, queries=5, dim=8):
        super().__init__()
        self.query_embed = torch.nn.Parameter(torch.randn(queries, dim))
        self.proj = torch.nn.Linear(dim, dim)
        self.norm = torch.nn.LayerNorm(dim)

    def forward(self, memory):
        attention = torch.softmax(self.query_embed @ memory.transpose(1, 2), dim=-1)
        return self.norm(self.proj(attention @ memory))


class PaddleDecoder(paddle.nn.Layer):
    def __init__(self, queries=5, dim=8):
        super().__init__()
        self.proj = paddle.nn.Linear(dim, dim)
        self.query_embed = paddle.nn.Embedding(queries, dim)
        self.norm = paddle.nn.LayerNorm(dim)

    def forward(self, memory):
        attention = paddle.nn.functional.softmax(self.query_embed.weight @ memory.transpose([0, 2, 1]), axis=-1)
        return self.norm(self.proj(attention @ memory))


class TorchDetr(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.decoder = TorchDecoder()

    def forward(self, memory):
        return self.decoder(memory)


class PaddleDetr(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.decoder = PaddleDecoder()

    def forward(self, memory):
        return self.decoder(memory)


def inputs():
    return {"memory": np.random.default_rng(3).standard_normal((2, 6, 8), dtype=np.float32)}


def base():
    return TorchDetr(), inputs()


def raw():
    return PaddleDetr(), inputs()
