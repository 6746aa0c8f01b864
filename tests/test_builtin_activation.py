"""paddle's legacy ``BatchNorm(act="relu")`` (ReLU inside the norm) against torch's ``BatchNorm2d`` then ``ReLU``."""

import numpy as np
import paddle
import pytest
import torch

from padiff_graph import assign_weights, compare_dumps, diff, dump

X = {"x": np.random.default_rng(3).standard_normal((2, 3, 6, 6)).astype(np.float32)}


class TorchStem(torch.nn.Module):
    """torchvision's DenseNet stem: conv, norm, then a separate ReLU."""

    def __init__(self, eps=1e-5):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.norm = torch.nn.BatchNorm2d(8, eps=eps)
        self.relu = torch.nn.ReLU()
        self.head = torch.nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.head(self.relu(self.norm(self.conv(x))))


class PaddleStem(paddle.nn.Layer):
    """paddle.vision's: the ReLU applied inside the legacy ``BatchNorm``."""

    def __init__(self, epsilon=1e-5, act="relu"):
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 8, 3, padding=1)
        self.norm = paddle.nn.BatchNorm(8, act=act, epsilon=epsilon)
        self.head = paddle.nn.Conv2D(8, 4, 1)

    def forward(self, x):
        return self.head(self.norm(self.conv(x)))


def _models(direction, torch_eps=1e-5, paddle_eps=1e-5, act="relu"):
    torch.manual_seed(0)
    paddle.seed(0)
    pair = TorchStem(torch_eps).eval(), PaddleStem(paddle_eps, act)
    pair[1].eval()
    return pair if direction == "torch->paddle" else pair[::-1]


@pytest.mark.parametrize("direction", ["torch->paddle", "paddle->torch"])
def test_builtin_relu_compared_after_the_relu(direction):
    report = diff(*_models(direction), X)
    assert report.ok, report.first_divergence
    norm = [c for c in report.comparisons if c.base == "norm" and c.kind == "forward"]
    assert norm and all(c.verdict.ok and "applies relu inside" in c.verdict.note for c in norm)
    skipped = {n.base: n.why for n in report.not_compared}
    assert "output gradients" in skipped["norm"]


@pytest.mark.parametrize("direction", ["torch->paddle", "paddle->torch"])
def test_planted_eps_named_at_the_norm(direction):
    report = diff(*_models(direction, paddle_eps=1e-1), X, backward=False)
    assert not report.ok
    assert report.first_divergence is not None and report.first_divergence.base == "norm"


def test_unknown_activation_not_compared():
    report = diff(*_models("torch->paddle", act="softsign"), X, backward=False)
    skipped = {n.base: n.why for n in report.not_compared}
    assert "cannot apply" in skipped["norm"]
    assert not [c for c in report.comparisons if c.base == "norm" and c.kind == "forward"]


def test_offline_compare_leaves_the_pair_out(tmp_path):
    base, raw = _models("torch->paddle")
    assign_weights(base, raw, inputs=X)
    dump(base, X, tmp_path / "torch")
    dump(raw, X, tmp_path / "paddle")
    report = compare_dumps(tmp_path / "torch", tmp_path / "paddle")
    assert report.ok, report.first_divergence
    assert "not applied offline" in {n.base: n.why for n in report.not_compared}["norm"]
    assert {c.base for c in report.comparisons if c.kind == "forward"} >= {"conv", "head"}
