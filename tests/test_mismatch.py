"""Layers at the same place that compute different things: paired as a mismatch, reported, named by the diff."""

import numpy as np
import paddle
import pytest
import torch

from padiff_graph import diff, preflight, suggest_map

X = {"x": np.random.default_rng(3).standard_normal((4, 8)).astype(np.float32) * 3}


class TorchBlock(torch.nn.Module):
    def __init__(self, act):
        super().__init__()
        self.fc1, self.act, self.fc2 = torch.nn.Linear(8, 16), act, torch.nn.Linear(16, 8)

    def forward(self, x):
        return x + self.fc2(self.act(self.fc1(x)))


class PaddleBlock(paddle.nn.Layer):
    def __init__(self, act):
        super().__init__()
        self.fc1, self.act, self.fc2 = paddle.nn.Linear(8, 16), act, paddle.nn.Linear(16, 8)

    def forward(self, x):
        return x + self.fc2(self.act(self.fc1(x)))


class TorchNet(torch.nn.Module):
    def __init__(self, act):
        super().__init__()
        self.first, self.second = TorchBlock(torch.nn.Tanh()), TorchBlock(act)

    def forward(self, x):
        return self.second(self.first(x))


class PaddleNet(paddle.nn.Layer):
    def __init__(self, act):
        super().__init__()
        self.first, self.second = PaddleBlock(paddle.nn.Tanh()), PaddleBlock(act)

    def forward(self, x):
        return self.second(self.first(x))


ACTIVATIONS = [
    (torch.nn.GELU, paddle.nn.ReLU, "GELU", "ReLU"),
    (torch.nn.ReLU, lambda: paddle.nn.LeakyReLU(0.1), "ReLU", "LeakyReLU"),
    (torch.nn.SiLU, paddle.nn.Sigmoid, "SiLU", "Sigmoid"),
]


@pytest.mark.parametrize(("torch_act", "paddle_act", "torch_name", "paddle_name"), ACTIVATIONS)
@pytest.mark.parametrize("torch_is_base", [True, False], ids=["torch-base", "paddle-base"])
def test_a_wrong_activation_is_a_class_mismatch_named_at_its_layer(
    torch_act, paddle_act, torch_name: str, paddle_name: str, torch_is_base: bool
) -> None:
    torch_model, paddle_model = TorchNet(torch_act()), PaddleNet(paddle_act())
    base, raw = (torch_model, paddle_model) if torch_is_base else (paddle_model, torch_model)
    layer_map = suggest_map(base, raw, X)
    assert layer_map.raw_of("second.act") == "second.act"
    mismatches = [f for f in preflight(base, raw, layer_map) if f.code.value == "class-mismatch"]
    assert [(f.base, f.raw) for f in mismatches] == [("second.act", "second.act")]
    assert torch_name in mismatches[0].message and paddle_name in mismatches[0].message
    report = diff(base, raw, X)
    assert tuple(report.first_divergence) == ("second.act", "second.act", "forward")


def test_same_activations_pair_as_before_and_without_inputs_nothing_is_guessed() -> None:
    assert diff(TorchNet(torch.nn.GELU()), PaddleNet(paddle.nn.GELU()), X).ok
    layer_map = suggest_map(TorchNet(torch.nn.GELU()), PaddleNet(paddle.nn.ReLU()))
    assert layer_map.raw_of("second.act") is None  # no call order: the place is unknown


def test_a_wrong_activation_is_named_with_a_bfloat16_base() -> None:
    # GELU against ReLU differs by ~4e-2 of the activation's magnitude: within what bf16 noise accumulates
    # over the layers before it, but a class-mismatch layer inherits nothing
    report = diff(TorchNet(torch.nn.GELU()).to(torch.bfloat16), PaddleNet(paddle.nn.ReLU()), X)
    assert tuple(report.first_divergence) == ("second.act", "second.act", "forward")
    assert diff(TorchNet(torch.nn.GELU()).to(torch.bfloat16), PaddleNet(paddle.nn.GELU()), X).ok


class TorchGated(torch.nn.Module):
    def __init__(self, act):
        super().__init__()
        self.gate, self.up, self.down, self.act = (
            torch.nn.Linear(8, 16),
            torch.nn.Linear(8, 16),
            torch.nn.Linear(16, 8),
            act,
        )

    def forward(self, x):
        return self.down(self.act(self.gate(x)) * self.up(x))


class PaddleGated(paddle.nn.Layer):
    """The port calls ``up`` before the activation: the activation sits after another sibling."""

    def __init__(self, act):
        super().__init__()
        self.gate, self.up, self.down, self.act = (
            paddle.nn.Linear(8, 16),
            paddle.nn.Linear(8, 16),
            paddle.nn.Linear(16, 8),
            act,
        )

    def forward(self, x):
        up = self.up(x)
        return self.down(self.act(self.gate(x)) * up)


def test_a_lone_activation_called_after_another_sibling_still_pairs() -> None:
    assert suggest_map(TorchGated(torch.nn.SiLU()), PaddleGated(paddle.nn.Silu()), X).raw_of("act") == "act"
    report = diff(TorchGated(torch.nn.SiLU()), PaddleGated(paddle.nn.ReLU()), X)
    assert tuple(report.first_divergence) == ("act", "act", "forward")


class TorchFlatBranch(torch.nn.Module):
    """torchvision's way: one flat ``Sequential`` (conv, norm, activation, conv, norm)."""

    def __init__(self, act):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 1)
        self.branch = torch.nn.Sequential(
            torch.nn.Conv2d(8, 8, 1),
            torch.nn.BatchNorm2d(8),
            act,
            torch.nn.Conv2d(8, 8, 3, padding=1),
            torch.nn.BatchNorm2d(8),
        )

    def forward(self, x):
        return self.branch(self.stem(x))


class PaddleGroupedBranch(paddle.nn.Layer):
    """paddle.vision's way: the same layers in conv-norm(-activation) groups."""

    def __init__(self, act):
        super().__init__()
        self.stem = paddle.nn.Conv2D(3, 8, 1)
        self.pointwise = paddle.nn.Sequential(paddle.nn.Conv2D(8, 8, 1), paddle.nn.BatchNorm2D(8), act)
        self.depthwise = paddle.nn.Sequential(paddle.nn.Conv2D(8, 8, 3, padding=1), paddle.nn.BatchNorm2D(8))

    def forward(self, x):
        return self.depthwise(self.pointwise(self.stem(x)))


@pytest.mark.parametrize("torch_is_base", [True, False], ids=["torch-base", "paddle-base"])
def test_a_wrong_activation_is_named_where_the_sides_group_layers_differently(torch_is_base: bool) -> None:
    images = {"x": np.random.default_rng(4).standard_normal((2, 3, 6, 6)).astype(np.float32)}
    torch_model, paddle_model = TorchFlatBranch(torch.nn.GELU()).eval(), PaddleGroupedBranch(paddle.nn.ReLU())
    paddle_model.eval()
    base, raw = (torch_model, paddle_model) if torch_is_base else (paddle_model, torch_model)
    pair = ("branch.2", "pointwise.2") if torch_is_base else ("pointwise.2", "branch.2")
    assert suggest_map(base, raw, images).raw_of(pair[0]) == pair[1]
    report = diff(base, raw, images)
    assert tuple(report.first_divergence) == (*pair, "forward")
