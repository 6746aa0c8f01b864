"""When the tool is not sure it says so: probes cut by their limit, ties on either side,
parameter-less layers only position pairs, square layouts settled on synthetic inputs."""

from __future__ import annotations

import numpy as np
import paddle
import torch

from padiff_graph import preflight, suggest_map

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
