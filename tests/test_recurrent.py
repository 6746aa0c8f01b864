"""Recurrent layers in eval mode: compared forward and backward, and the report says how."""

import numpy as np
import paddle
import pytest
import torch

from padiff_graph import diff

X = {"x": np.random.default_rng(5).standard_normal((2, 7, 6)).astype(np.float32)}


class TorchSeq(torch.nn.Module):
    def __init__(self, kind: str, dropout: float = 0.0):
        super().__init__()
        self.rnn = getattr(torch.nn, kind)(6, 8, num_layers=2, batch_first=True, dropout=dropout)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.rnn(x)[0])


class PaddleSeq(paddle.nn.Layer):
    def __init__(self, kind: str, dropout: float = 0.0):
        super().__init__()
        self.rnn = getattr(paddle.nn, kind)(6, 8, num_layers=2, dropout=dropout)
        self.head = paddle.nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.rnn(x)[0])


def evaluated(model):
    model.eval()
    return model


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("torch_is_base", [True, False], ids=["torch-base", "paddle-base"])
def test_an_eval_mode_rnn_is_compared_forward_and_backward(kind: str, torch_is_base: bool) -> None:
    torch_model, paddle_model = evaluated(TorchSeq(kind)), evaluated(PaddleSeq(kind))
    base, raw = (torch_model, paddle_model) if torch_is_base else (paddle_model, torch_model)
    report = diff(base, raw, X)
    assert report.ok, report.first_divergence
    stages = {c.kind for c in report.comparisons if c.base == "rnn"}
    assert {"forward", "backward", "grad"} <= stages
    # paddle's layer runs in training mode for the run (no dropout: the same numbers), torch's needs nothing
    paddle_side = {"base": [], "raw": ["rnn"]} if torch_is_base else {"base": ["rnn"], "raw": []}
    assert report.settings["trained_for_backward"] == paddle_side
    assert not torch_model.training and not paddle_model.rnn.training  # switched back after the run


def test_an_eval_mode_rnn_with_dropout_is_compared_forward_only() -> None:
    report = diff(evaluated(TorchSeq("LSTM", 0.5)), evaluated(PaddleSeq("LSTM", 0.5)), X)
    assert report.ok, report.first_divergence
    assert {c.kind for c in report.comparisons} == {"forward"}
    assert report.settings["diff_phase"] == "forward"
    assert "rnn" in report.settings["forward_only_because"]
