"""config-mismatch: hyperparameters compared through the knowledge tables, before anything runs."""

from __future__ import annotations

import paddle
import pytest
import torch
from test_conversions import CASES

from padiff_graph import Code, Severity, preflight


class NeverRun(torch.nn.Module):
    """Preflight must not need a forward: this one raises if called."""

    def __init__(self, layer: torch.nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("preflight ran the model")


class NeverRunPaddle(paddle.nn.Layer):
    def __init__(self, layer: paddle.nn.Layer) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        raise AssertionError("preflight ran the model")


def mismatches(torch_layer: torch.nn.Module, paddle_layer: paddle.nn.Layer, torch_is_base: bool = True) -> dict:
    base, raw = NeverRun(torch_layer), NeverRunPaddle(paddle_layer)
    if not torch_is_base:
        base, raw = raw, base
    found = [f for f in preflight(base, raw) if f.code is Code.CONFIG_MISMATCH]
    return {f.message.split(" differs")[0].split(" ", 1)[1]: f for f in found}


@pytest.mark.parametrize("torch_is_base", [True, False])
def test_wrong_epsilon_names_both_values(torch_is_base: bool) -> None:
    found = mismatches(torch.nn.LayerNorm(4, eps=1e-5), paddle.nn.LayerNorm(4, epsilon=1e-6), torch_is_base)
    finding = found["eps"]
    assert finding.severity is Severity.ERROR and (finding.base, finding.raw) == ("layer", "layer")
    assert "1e-05" in finding.message and "1e-06" in finding.message


def test_approximate_gelu_is_found() -> None:
    found = mismatches(torch.nn.GELU(), paddle.nn.GELU(approximate=True))
    assert "base 'none', raw 'tanh'" in found["approximate"].message


def test_batchnorm_momentum_is_compared_in_one_convention() -> None:
    assert mismatches(torch.nn.BatchNorm2d(3, momentum=0.1), paddle.nn.BatchNorm2D(3, momentum=0.9)) == {}
    found = mismatches(torch.nn.BatchNorm2d(3, momentum=0.1), paddle.nn.BatchNorm2D(3, momentum=0.1))
    assert "base 0.1, raw 0.9" in found["momentum"].message
    assert set(mismatches(torch.nn.BatchNorm2d(3, eps=1e-3), paddle.nn.BatchNorm2D(3))) == {"eps"}


@pytest.mark.parametrize(
    "torch_layer, paddle_layer, setting, values",
    [
        (
            torch.nn.Upsample(scale_factor=2, mode="bilinear"),
            paddle.nn.UpsamplingBilinear2D(scale_factor=2),
            "align_corners",
            "base False, raw True",
        ),
        (
            torch.nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            paddle.nn.Upsample(scale_factor=2, mode="bilinear"),
            "align_corners",
            "base True, raw False",
        ),
        (
            torch.nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"),
            paddle.nn.Conv2D(2, 2, 3, padding=1),
            "padding_mode",
            "base 'reflect', raw 'zeros'",
        ),
        (torch.nn.Conv2d(2, 2, 3, dilation=2), paddle.nn.Conv2D(2, 2, 3), "dilation", "base [2, 2], raw [1, 1]"),
        (torch.nn.ReflectionPad2d(1), paddle.nn.Pad2D(1, mode="replicate"), "mode", "base 'reflect', raw 'replicate'"),
        (torch.nn.Dropout(0.1), paddle.nn.Dropout(0.2), "p", "base 0.1, raw 0.2"),
        (
            torch.nn.Dropout(0.1),
            paddle.nn.Dropout(0.1, mode="downscale_in_infer"),
            "mode",
            "base 'upscale_in_train', raw 'downscale_in_infer'",
        ),
        (
            torch.nn.MultiheadAttention(8, 2, dropout=0.1, batch_first=True),
            paddle.nn.MultiHeadAttention(8, 2),
            "dropout",
            "base 0.1, raw 0.0",
        ),
        (
            torch.nn.MultiheadAttention(8, 4, batch_first=True),
            paddle.nn.MultiHeadAttention(8, 2),
            "num_heads",
            "base 4, raw 2",
        ),
        (
            torch.nn.TransformerEncoderLayer(8, 2, 16, activation="gelu", batch_first=True),
            paddle.nn.TransformerEncoderLayer(8, 2, 16),
            "activation",
            "base 'gelu', raw 'relu'",
        ),
        (
            torch.nn.TransformerEncoderLayer(8, 2, 16, norm_first=True, batch_first=True),
            paddle.nn.TransformerEncoderLayer(8, 2, 16),
            "norm_first",
            "base True, raw False",
        ),
        (torch.nn.RNN(3, 4, nonlinearity="relu"), paddle.nn.SimpleRNN(3, 4), "activation", "base 'relu', raw 'tanh'"),
        (
            torch.nn.AvgPool2d(2, padding=1),
            paddle.nn.AvgPool2D(2, padding=1),
            "count_include_pad",
            "base True, raw False",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) and " " not in value else None,
)
def test_mismatched_setting_is_an_error_with_both_values(torch_layer, paddle_layer, setting, values) -> None:
    found = mismatches(torch_layer, paddle_layer)
    assert setting in found, found
    assert values in found[setting].message
    assert found[setting].severity is Severity.ERROR


@pytest.mark.parametrize(
    "torch_layer, paddle_layer",
    [
        (torch.nn.LSTM(3, 4), paddle.nn.LSTM(3, 4)),
        (torch.nn.GRU(3, 4, batch_first=True), paddle.nn.GRU(3, 4, time_major=True)),
        (torch.nn.MultiheadAttention(8, 2), paddle.nn.MultiHeadAttention(8, 2)),
    ],
    ids=["lstm", "gru", "attention"],
)
def test_batch_first_against_time_major_is_a_layout_warning(torch_layer, paddle_layer) -> None:
    finding = mismatches(torch_layer, paddle_layer)["batch_first"]
    assert finding.severity is Severity.WARNING
    assert "laid out differently" in finding.hint


def test_count_include_pad_of_a_pool_without_padding_changes_nothing() -> None:
    """torchvision's and paddle.vision's DenseNet transitions (AvgPool 2, no padding): a correct port that
    pre-flight called a config-mismatch error."""
    assert mismatches(torch.nn.AvgPool2d(2, 2), paddle.nn.AvgPool2D(2, 2)) == {}
    assert "count_include_pad" in mismatches(
        torch.nn.AvgPool2d(2, 2, ceil_mode=True), paddle.nn.AvgPool2D(2, 2, ceil_mode=True)
    )


def test_padding_idx_is_a_warning_that_says_what_differs() -> None:
    """HF's BERT has padding_idx=0, paddleformers' none: a correct port, whose diff exited 1 on this error."""
    finding = mismatches(torch.nn.Embedding(5, 3, padding_idx=0), paddle.nn.Embedding(5, 3))["padding_idx"]
    assert "base 0, raw 'none'" in finding.message
    assert finding.severity is Severity.WARNING
    assert "gradient" in finding.hint and "returns zeros" in finding.hint


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_equivalent_layers_raise_no_config_mismatch(case) -> None:
    assert mismatches(case.torch_layer(), case.paddle_layer()) == {}
