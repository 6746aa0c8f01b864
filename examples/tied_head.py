"""An output head tied to the embedding on one side, a matmul with the embedding on the other.

torch (base), as HF transformers ties ``lm_head.weight`` to the input
embedding (``tie_word_embeddings``): ``lm_head`` holds the embedding's own
tensor. paddle (raw) has no head layer and multiplies by the embedding's
weight in ``forward``. The tie is reported (``tied-weights``) instead of the
head silently vanishing; the embedding is copied once and both compute alike.
"""

import numpy as np
import paddle
import torch

VOCAB, DIM = 12, 8

EXPECTED_PAIRS = {"embed": "embed", "norm": "norm"}
EXPECTED_FINDINGS = {"tied-weights"}


class TorchLM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, DIM)
        self.norm = torch.nn.LayerNorm(DIM)
        self.lm_head = torch.nn.Linear(DIM, VOCAB, bias=False)
        self.lm_head.weight = self.embed.weight

    def forward(self, ids):
        return self.lm_head(self.norm(self.embed(ids)))


class PaddleLM(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.embed = paddle.nn.Embedding(VOCAB, DIM)
        self.norm = paddle.nn.LayerNorm(DIM)

    def forward(self, ids):
        return paddle.matmul(self.norm(self.embed(ids)), self.embed.weight, transpose_y=True)


def inputs():
    return {"ids": np.random.default_rng(0).integers(0, VOCAB, (2, 5))}


def base():
    return TorchLM(), inputs()


def raw():
    return PaddleLM(), inputs()
