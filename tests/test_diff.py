"""The hooked diff on real models: faults found at the right layer, and robustness."""

import numpy as np
import paddle
import pytest
import torch

from padiff_graph import InputError, ModelRunError, diff

X = [np.random.default_rng(0).standard_normal((4, 8), dtype=np.float32)]  # positional: Sequential.forward(input)


def mlp_torch(act):
    return torch.nn.Sequential(torch.nn.Linear(8, 16), act, torch.nn.Linear(16, 4))


def mlp_paddle(act):
    return paddle.nn.Sequential(paddle.nn.Linear(8, 16), act, paddle.nn.Linear(16, 4))


def test_gelu_approximation_found_in_both_directions() -> None:
    # the tanh approximation is off by ~5e-4 at pre-activations near 2, so feed activations of that scale
    wide = [X[0] * 4]
    report = diff(mlp_torch(torch.nn.GELU()), mlp_paddle(paddle.nn.GELU(approximate=True)), wide)
    assert tuple(report.first_divergence) == ("1", "1", "forward")
    report = diff(mlp_paddle(paddle.nn.GELU(approximate=True)), mlp_torch(torch.nn.GELU()), wide)
    assert tuple(report.first_divergence) == ("1", "1", "forward")


def test_mean_mode_misses_what_strict_mode_finds() -> None:
    class Shift(torch.nn.Module):
        def __init__(self, size):
            super().__init__()
            self.size = size

        def forward(self, x):
            return x + torch.linspace(-self.size, self.size, x.shape[-1])  # zero-mean perturbation

    base = mlp_torch(Shift(0.0))
    raw = mlp_torch(Shift(1e-2))
    strict = diff(base, raw, X, mode="strict", backward=False)
    assert strict.first_divergence.base == "1"
    mean = diff(base, raw, X, mode="mean", backward=False)
    assert mean.first_divergence is None or mean.first_divergence.base != "1"


def test_nan_is_reported_as_divergence_at_its_layer() -> None:
    class Act(torch.nn.Module):
        def __init__(self, broken):
            super().__init__()
            self.broken = broken

        def forward(self, x):
            return torch.log(x) if self.broken else torch.tanh(x)  # log of negatives: NaN

    base = torch.nn.Sequential(torch.nn.Linear(8, 8), Act(False), torch.nn.Linear(8, 2))
    raw = torch.nn.Sequential(torch.nn.Linear(8, 8), Act(True), torch.nn.Linear(8, 2))
    report = diff(base, raw, X, backward=False)
    assert tuple(report.first_divergence) == ("1", "1", "forward")
    assert "NaN in raw only" in report.first_divergence.message


def test_dropout_in_training_mode_is_stopped_before_the_run_then_disabled_on_request() -> None:
    base = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Dropout(0.5))
    raw = paddle.nn.Sequential(paddle.nn.Linear(8, 8), paddle.nn.Dropout(0.5))
    report = diff(base, raw, X)
    assert not report.ok and report.first_divergence.stage == "preflight"
    assert report.first_divergence.base == "1"
    assert diff(base, raw, X, random_ops="disable").ok
    assert base[1].training and raw[1].training  # restored after the run


def test_inplace_relu_and_maxpool_ties_do_not_break_backward() -> None:
    """A regression: maxpool over tied zeros routes gradients differently per framework."""
    images = [-np.abs(np.random.default_rng(1).standard_normal((1, 2, 4, 4), dtype=np.float32))]
    base = torch.nn.Sequential(torch.nn.Conv2d(2, 2, 1), torch.nn.ReLU(inplace=True), torch.nn.MaxPool2d(2))
    raw = paddle.nn.Sequential(paddle.nn.Conv2D(2, 2, 1), paddle.nn.ReLU(), paddle.nn.MaxPool2D(2))
    with torch.no_grad():
        base[0].weight.abs_()
        base[0].bias.fill_(0.0)
    report = diff(base, raw, images)
    assert report.ok, report.first_divergence
    assert {c.stage for c in report.comparisons} >= {"forward", "backward"}


def test_wrong_input_names_are_an_input_error() -> None:
    with pytest.raises(InputError, match="do not fit"):
        diff(mlp_torch(torch.nn.ReLU()), mlp_paddle(paddle.nn.ReLU()), {"y": X[0]})


def test_failing_forward_names_the_layer() -> None:
    with pytest.raises(ModelRunError, match="layer '0'"):
        diff(mlp_torch(torch.nn.ReLU()), mlp_paddle(paddle.nn.ReLU()), [np.ones((2, 3), np.float32)])


def test_parameter_gradients_are_compared_through_the_transpose() -> None:
    report = diff(torch.nn.Linear(8, 3), paddle.nn.Linear(8, 3), X)
    grads = [c for c in report.comparisons if c.stage.startswith("grad")]
    assert {c.stage for c in grads} == {"grad:weight", "grad:bias"} and all(c.ok for c in grads)
