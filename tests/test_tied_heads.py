"""Heads tied to the embedding on both sides (HF's and paddleformers' ``lm_head`` under
``tie_word_embeddings``) pair, so a fault in the head is named there and not at the root.
Found on ``Qwen2ForCausalLM`` against paddleformers': the two heads were left unpaired."""

import sys
from pathlib import Path

import numpy as np
import paddle
import torch

import padiff_graph as pg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from tied_head import DIM, VOCAB, TorchLM  # the torch side: examples/tied_head.py's model

IDS = {"ids": np.random.default_rng(0).integers(1, VOCAB, (2, 5))}


class PaddleHead(paddle.nn.Layer):
    """paddleformers' ``LMHead``: a ``[vocab, dim]`` weight multiplied transposed; ``scale`` is a port's fault."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.weight = self.create_parameter([VOCAB, DIM])
        self.scale = scale

    def forward(self, hidden):
        return paddle.matmul(hidden, self.weight, transpose_y=True) * self.scale


class PaddleLM(paddle.nn.Layer):
    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.embed = paddle.nn.Embedding(VOCAB, DIM)
        self.norm = paddle.nn.LayerNorm(DIM)
        self.lm_head = PaddleHead(scale)
        self.lm_head.weight = self.embed.weight

    def forward(self, ids):
        return self.lm_head(self.norm(self.embed(ids)))


def test_two_tied_heads_pair_and_the_shared_tensor_is_copied_once() -> None:
    layer_map = pg.suggest_map(TorchLM(), PaddleLM(), IDS)
    assert layer_map.raw_of("lm_head") == "lm_head"
    assert [t.base for p in layer_map.active_pairs() for t in p.tensors if p.base == "lm_head"] == []
    for base, raw in ((TorchLM(), PaddleLM()), (PaddleLM(), TorchLM())):
        assert pg.diff(base, raw, IDS).ok


def test_a_fault_in_a_tied_head_is_named_at_the_head() -> None:
    for base, raw in ((TorchLM(), PaddleLM(scale=1.5)), (PaddleLM(scale=1.5), TorchLM())):
        first = pg.diff(base, raw, IDS).first_divergence
        assert first is not None and (first.base, first.raw) == ("lm_head", "lm_head"), first


class TorchLMWithLoss(TorchLM):
    """HF's way: the loss computed by a function in the model's own forward."""

    def forward(self, ids, labels):
        logits = super().forward(ids)
        return logits, torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), labels.reshape(-1))


class PaddleLMWithLoss(PaddleLM):
    """paddleformers' way: the loss in a layer of its own, called after the head."""

    def __init__(self) -> None:
        super().__init__()
        self.criterion = paddle.nn.CrossEntropyLoss()

    def forward(self, ids, labels):
        logits = super().forward(ids)
        return logits, self.criterion(logits.reshape([-1, VOCAB]), labels.reshape([-1]))


def test_a_tied_head_is_not_paired_with_a_loss_layer_called_after_it() -> None:
    """A tied head looks parameter-less: it was paired with paddleformers' loss layer as a class mismatch,
    and the loss's difference blamed on the head."""
    inputs = {**IDS, "labels": np.random.default_rng(1).integers(0, VOCAB, (2, 5))}
    layer_map = pg.suggest_map(TorchLMWithLoss(), PaddleLMWithLoss(), inputs)
    assert layer_map.raw_of("lm_head") == "lm_head"
    assert layer_map.base_of("criterion") is None
    report = pg.diff(TorchLMWithLoss(), PaddleLMWithLoss(), inputs)
    assert report.ok, report.first_divergence


def test_dumps_keep_the_ties_so_the_offline_compare_pairs_the_heads(tmp_path) -> None:
    """A dump's header had no ties: offline, the two tied heads stayed unpaired and a fault in one was named
    at the root."""
    base, raw = TorchLM(), PaddleLM(scale=1.5)
    pg.assign_weights(base, raw)
    pg.dump(base, IDS, tmp_path / "base")
    pg.dump(raw, IDS, tmp_path / "raw")
    report = pg.compare_dumps(tmp_path / "base", tmp_path / "raw")
    assert report.layer_map.raw_of("lm_head") == "lm_head"
    first = report.first_divergence
    assert first is not None and (first.base, first.raw) == ("lm_head", "lm_head"), first
