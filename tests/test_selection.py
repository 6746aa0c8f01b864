"""Black and white lists and wrapper skipping decide which layer pairs a diff compares."""

import numpy as np
import paddle
import pytest
import torch

from padiff_graph import InputError, diff

X = [np.random.default_rng(0).standard_normal((4, 8), dtype=np.float32)]


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 8)
        self.act = torch.nn.Tanh()

    def forward(self, x):
        return self.act(self.fc(x))


class PaddleBlock(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.fc = paddle.nn.Linear(8, 8)
        self.act = paddle.nn.Tanh()

    def forward(self, x):
        return self.act(self.fc(x))


def models():
    base = torch.nn.Sequential(Block(), Block(), torch.nn.Linear(8, 2))
    raw = paddle.nn.Sequential(PaddleBlock(), PaddleBlock(), paddle.nn.Linear(8, 2))
    return base, raw


def compared(report):
    return {c.base for c in report.comparisons if c.kind == "forward"}


def test_everything_is_compared_by_default() -> None:
    assert compared(diff(*models(), X)) == {"", "0", "0.fc", "0.act", "1", "1.fc", "1.act", "2"}


@pytest.mark.parametrize(
    ("scope", "left_out"),
    [("self", {"0"}), ("sublayers", {"0.fc", "0.act"}), ("all", {"0", "0.fc", "0.act"})],
)
def test_black_list_instance_scopes(scope, left_out) -> None:
    base, raw = models()
    report = diff(base, raw, X, black_list=[(base[0], scope)])
    everything = {"", "0", "0.fc", "0.act", "1", "1.fc", "1.act", "2"}
    assert compared(report) == everything - left_out


def test_black_list_by_class_and_on_the_raw_side() -> None:
    base, raw = models()
    assert compared(diff(base, raw, X, black_list=[(torch.nn.Tanh, "self")])) == {"", "0", "0.fc", "1", "1.fc", "2"}
    assert compared(diff(base, raw, X, black_list=[raw[1]])) == {"", "0", "0.fc", "0.act", "2"}  # scope "all"


def test_white_list_wins_over_black_list() -> None:
    base, raw = models()
    only_first = diff(base, raw, X, white_list=[(base[0], "all")], black_list=[base[0]])
    assert compared(only_first) == {"0", "0.fc", "0.act"}
    inside = diff(base, raw, X, white_list=[(Block, "sublayers")])
    assert compared(inside) == {"0.fc", "0.act", "1.fc", "1.act"}
    assert compared(diff(base, raw, X, white_list=[base[2]])) == {"2"}  # bare entries: scope "self"


def test_a_listed_fault_is_no_longer_reported() -> None:
    base, raw = models()
    raw[1].act = paddle.nn.Sigmoid()
    assert not diff(base, raw, X, diff_phase="forward").ok
    assert diff(base, raw, X, diff_phase="forward", white_list=[(base[0], "all")]).ok


@pytest.mark.parametrize("variable", ["PADIFF_SIKP_WRAP_LAYER", "PADIFF_SKIP_WRAP_LAYER"])
def test_wrapper_layers_are_skipped_by_setting_or_padiff_variable(variable, monkeypatch) -> None:
    base, raw = models()
    wrappers = {"0", "1"}  # no tensors of their own, sublayers below; the root is always kept
    assert wrappers <= compared(diff(base, raw, X))
    assert not wrappers & compared(diff(base, raw, X, skip_wrap_layers=True))
    monkeypatch.setenv(variable, "TRUE")
    skipped = compared(diff(base, raw, X))
    assert not wrappers & skipped and {"", "0.fc", "0.act"} <= skipped
    assert wrappers <= compared(diff(base, raw, X, skip_wrap_layers=False))  # the argument wins


def test_a_bad_scope_is_an_input_error() -> None:
    base, raw = models()
    with pytest.raises(InputError, match="scope must be one of self, sublayers, all"):
        diff(base, raw, X, black_list=[(base[0], "children")])
