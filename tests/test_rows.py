"""Rows in another order: an expert that receives the base's tokens in another order is not at fault."""

import numpy as np
import paddle
import pytest
import torch

from padiff_graph import diff
from padiff_graph.run.hooks import RecordKey
from padiff_graph.run.numerics import Mode, Tolerance
from padiff_graph.run.rows import INPUT_NOTE, REORDERED_NOTE, RowOrders, other_rows_note, row_order

X = [np.random.default_rng(0).standard_normal((10, 8), dtype=np.float32)]


class RoutedTorch(torch.nn.Module):
    """Tokens whose first feature is positive go through ``experts[0]``, gathered in ascending order."""

    def __init__(self, flip_rows=False):
        super().__init__()
        self.experts, self.head = torch.nn.ModuleList([torch.nn.Linear(8, 8)]), torch.nn.Linear(8, 4)
        self.flip_rows = flip_rows

    def forward(self, x):
        rows = torch.nonzero(x[:, 0] > 0)[:, 0]
        picked = self.experts[0](x[rows])
        if self.flip_rows:  # a bug in the block's own code: rows scattered back to the wrong tokens
            picked = picked.flip(0)
        return self.head(torch.zeros_like(x).index_add(0, rows, picked))


class RoutedPaddle(paddle.nn.Layer):
    """The same routing, gathering the tokens in descending order (and scattering them back to theirs)."""

    def __init__(self):
        super().__init__()
        self.experts, self.head = paddle.nn.LayerList([paddle.nn.Linear(8, 8)]), paddle.nn.Linear(8, 4)

    def forward(self, x):
        rows = paddle.nonzero(x[:, 0] > 0)[:, 0].flip(0)
        return self.head(paddle.index_add(paddle.zeros_like(x), rows, 0, self.experts[0](x[rows])))


@pytest.mark.parametrize("torch_is_base", [True, False])
def test_an_expert_given_the_same_tokens_in_another_order_agrees(torch_is_base) -> None:
    base, raw = (RoutedTorch(), RoutedPaddle()) if torch_is_base else (RoutedPaddle(), RoutedTorch())
    report = diff(base, raw, X)
    assert report.ok, report.first_divergence
    [expert] = [c for c in report.comparisons if c.base == "experts.0" and c.stage == "forward"]
    assert expert.verdict.note.endswith(REORDERED_NOTE)
    [gradient] = [c for c in report.comparisons if c.base == "experts.0" and c.stage == "backward"]
    assert gradient.verdict.ok and REORDERED_NOTE in gradient.verdict.note
    single = diff(base, raw, X, single_step=True)
    assert single.ok, single.first_divergence
    [fed] = [c for c in single.comparisons if c.base == "experts.0" and c.stage == "input"]
    assert INPUT_NOTE in fed.verdict.note


def test_rows_scattered_back_to_the_wrong_tokens_are_still_found() -> None:
    # the head's input holds the right rows at the wrong tokens: matched row by row, the head agrees;
    # the model's output is its own (not reordered as the head's input is) and names the root's forward
    report = diff(RoutedPaddle(), RoutedTorch(flip_rows=True), X)
    assert tuple(report.first_divergence) == ("", "", "forward")


class OtherTokensPaddle(RoutedPaddle):
    """Routes one token fewer to the expert: the one nearest the threshold (a near tie flipped)."""

    def forward(self, x):
        first = x[:, 0]
        rows = paddle.nonzero(first > first[first > 0].min())[:, 0]
        return self.head(paddle.index_add(paddle.zeros_like(x), rows, 0, self.experts[0](x[rows])))


def test_other_tokens_routed_to_an_expert_are_put_on_the_routing_code_not_the_expert() -> None:
    report = diff(RoutedTorch(), OtherTokensPaddle(), X)
    # the routing code is in the root's forward (not in the list holding the expert, which runs no forward)
    assert tuple(report.first_divergence) == ("", "", "forward")
    message = report.first_divergence.message
    assert "the raw layer receives 3 rows where the base's receives 4" in message
    assert "a routing (top-k) choice in its caller picked other tokens" in message


def test_row_order_needs_every_row_matched_within_the_floor() -> None:
    base = np.random.default_rng(1).standard_normal((6, 4)).astype(np.float32)
    order = np.array([3, 0, 5, 1, 2, 4])
    assert (row_order(base, base[order], 3e-5) == order).all()
    assert row_order(base, base, 3e-5) is None  # the same order: nothing to reorder
    changed = base[order].copy()
    changed[2, 1] += 0.5  # one row is not the base's: not a reordering
    assert row_order(base, changed, 3e-5) is None
    assert row_order(base, base[order], 0.0) is None  # judged elementwise (atol/rtol given): no matching
    assert other_rows_note(base, base[[4, 1, 0]], 3e-5) is not None  # a subset of the base's rows
    assert other_rows_note(base, changed[:4], 3e-5) is None  # a row that is not the base's


def test_an_input_computed_inside_a_reordered_call_follows_that_calls_order() -> None:
    tolerance = Tolerance.chosen(None, None, Mode.STRICT, ["bfloat16"])
    orders = RowOrders(tolerance)
    rng = np.random.default_rng(3)
    tokens, inner = rng.standard_normal((6, 8)), rng.standard_normal((6, 16))
    order = np.array([5, 4, 3, 2, 1, 0])
    expert = orders.verdict(RecordKey(0, "input", "experts.0", 0, 0), tokens, tokens[order], "float32", gradient=False)
    assert INPUT_NOTE in expert.note
    # act(gate(x)) * up(x) inside the expert: its noise grown past the floor, so rows matched anew would not pair
    noisy = inner[order] + 0.05 * np.abs(inner).max() * rng.choice([-1.0, 1.0], inner.shape)
    assert row_order(inner, noisy, tolerance.limits("bfloat16")[2]) is None
    key = RecordKey(0, "input", "experts.0.down_proj", 0, 0)
    verdict = orders.verdict(key, inner, noisy, "bfloat16", "float32", gradient=False)
    assert INPUT_NOTE in verdict.note and verdict.scaled < 0.1  # judged in the expert's order, as noise


def test_other_tokens_under_a_lower_precision_base_are_rechecked_in_single_step_mode() -> None:
    # with a bfloat16 base, other tokens may be noise flipping a near tie, and the caller replayed alone differs
    # whether its routing code or a layer inside it is at fault: not sure, so single-step mode decides
    torch.manual_seed(0)
    base = RoutedTorch().to(torch.bfloat16)
    report = diff(base, OtherTokensPaddle(), X)
    unsure = [f for f in report.findings if f.code.value == "ambiguous-divergence"]
    [caller] = [f for f in unsure if f.base == ""]
    assert "its routing code or a layer inside it" in caller.message
    assert report.settings["single_step"] and "rechecked" in report.settings
    fp32 = diff(RoutedTorch(), OtherTokensPaddle(), X)  # no lower precision: the routing code is at fault
    assert not [f for f in fp32.findings if f.code.value == "ambiguous-divergence"]
