"""When the tool is not sure it says so: probes cut by their limit, ties on either side,
parameter-less layers only position pairs, square layouts settled on synthetic inputs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import paddle
import torch

from padiff_graph import assign_weights, diff, preflight, suggest_map

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
import tied_head

#: square weights in one layer: 2**7 combinations of layouts, over the probe's limit of 64
CHAIN = 7


class TorchChain(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        for index in range(CHAIN):
            setattr(self, f"w{index}", torch.nn.Parameter(torch.randn(4, 4)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index in range(CHAIN):
            x = x @ getattr(self, f"w{index}")
        return x


class PaddleChain(paddle.nn.Layer):
    def __init__(self) -> None:
        super().__init__()
        for index in range(CHAIN):
            setattr(self, f"w{index}", self.create_parameter([4, 4]))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        for index in range(CHAIN):
            x = x @ getattr(self, f"w{index}")
        return x


def test_a_probe_cut_by_its_limit_says_so_and_picks_nothing() -> None:
    base, raw = torch.nn.Sequential(TorchChain()), paddle.nn.Sequential(PaddleChain())
    inputs = (np.random.default_rng(0).standard_normal((2, 4), dtype=np.float32),)
    (pair,) = [pair for pair in suggest_map(base, raw, inputs).pairs if pair.base == "0"]
    assert len(pair.guessed_layouts) == CHAIN and pair.probe_cut == 2**CHAIN
    unsure = [f for f in preflight(base, raw, inputs=inputs) if f.code.value == "ambiguous-transform"]
    assert len(unsure) == CHAIN
    assert all("stopped at its limit" in f.message and "128 combinations" in f.message for f in unsure)
    assert all("pass inputs" not in f.hint for f in unsure)  # inputs were given: they are not the way out


class PaddleOwnHead(paddle.nn.Layer):
    """``examples/tied_head.py``'s model with a head of its own instead of a matmul with the embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = paddle.nn.Embedding(tied_head.VOCAB, tied_head.DIM)
        self.norm = paddle.nn.LayerNorm(tied_head.DIM)
        self.lm_head = paddle.nn.Linear(tied_head.DIM, tied_head.VOCAB, bias_attr=False)

    def forward(self, ids: paddle.Tensor) -> paddle.Tensor:
        return self.lm_head(self.norm(self.embed(ids)))


def test_a_tied_base_head_writes_the_raw_model_s_own_head() -> None:
    (base, inputs), raw = tied_head.base(), PaddleOwnHead()
    layer_map = suggest_map(base, raw)  # no inputs: the tie, not call order, pairs the heads
    assert layer_map.raw_of("lm_head") == "lm_head" and "lm_head" not in layer_map.unmatched_raw
    assert "embed.weight -> lm_head.weight: transpose" in [t.describe() for t in layer_map.tensor_pairs()]
    (tie,) = [f for f in preflight(base, raw) if f.code.value == "tied-weights"]
    assert (tie.base, tie.raw, tie.severity.value) == ("lm_head", "lm_head", "warning")
    assert "written from base 'embed.weight'" in tie.message
    report = assign_weights(base, raw, inputs=inputs)
    assert report.outputs is not None and report.outputs.agree
    # forward alike; in training the tied embedding also collects the head's gradient, the raw one does not
    divergence = diff(base, raw, inputs).first_divergence
    assert divergence is not None and tuple(divergence) == ("embed", "embed", "grad")


def test_a_tied_raw_head_cannot_take_the_base_s_own_head_and_says_so() -> None:
    (raw, inputs), base = tied_head.base(), PaddleOwnHead()
    layer_map = suggest_map(base, raw, inputs)
    assert layer_map.raw_of("lm_head") == "lm_head"
    assert not [t for t in layer_map.tensor_pairs() if t.base == "lm_head.weight"]  # never written over the tie
    (tie,) = [f for f in preflight(base, raw, inputs=inputs) if f.code.value == "tied-weights"]
    assert (tie.base, tie.raw, tie.severity.value) == ("lm_head", "lm_head", "error")
    assert "base 'lm_head.weight' is not copied" in tie.message
    report = diff(base, raw, inputs)
    assert not report.ok and report.first_divergence is not None
    assert report.first_divergence.base == "lm_head"
