"""The calls a one-step diff's replays ask for, kept from the run itself (padiff_graph.run.kept_calls)."""

import numpy as np
import paddle
import pytest
import torch
from test_verdict import residual_mlp, residual_mlp_scaling_input, residual_mlp_with_norm

import padiff_graph as pg
import padiff_graph.run.kept_calls as kept_calls
from padiff_graph.frameworks import adapter_named
from padiff_graph.run.hooks import RecordKey
from padiff_graph.run.kept_calls import KeptCalls
from padiff_graph.run.numerics import Verdict
from padiff_graph.run.results import Comparison, attribute, suspects

X = [np.random.default_rng(1).standard_normal((16, 64)).astype(np.float32) * 4]


def counted_runs(model):
    """``model`` with a count of its whole forwards (``model.runs``)."""
    model.runs = 0

    def count(*_):
        model.runs += 1

    model.register_forward_pre_hook(count)
    return model


def norm_pair(epsilon: float):
    """A bfloat16 torch base and a paddle raw whose last layer, a batch norm, is judged under twelve layers of
    noise (eps 0.1 against 1e-5: a fault only a replay tells from that noise)."""
    torch.manual_seed(0)
    base = counted_runs(residual_mlp_with_norm(torch, 1e-5).to(torch.bfloat16))
    return base, counted_runs(residual_mlp_with_norm(paddle, epsilon))


@pytest.mark.parametrize("budget, reruns", [(kept_calls.KEPT_BYTES, 0), (1024, 1)], ids=["kept", "past the budget"])
def test_a_fault_under_the_noise_is_replayed_on_the_call_the_run_kept(monkeypatch, budget: int, reruns: int) -> None:
    """The replays take the suspects' calls from the run: each model runs as often as for the correct port.
    Past the byte budget nothing is kept, and one capture run of each model gets them."""
    monkeypatch.setattr(kept_calls, "KEPT_BYTES", budget)
    correct_base, correct_raw = norm_pair(1e-5)
    assert pg.diff(correct_base, correct_raw, X).ok
    base, raw = norm_pair(0.1)
    report = pg.diff(base, raw, X)
    assert tuple(report.first_divergence) == ("12", "12", "forward")
    assert "given the base layer's inputs the raw layer alone differs by" in report.first_divergence.message
    assert (base.runs, raw.runs) == (correct_base.runs + reruns, correct_raw.runs + reruns)


def test_the_callers_of_a_layer_that_agrees_alone_are_replayed_on_the_calls_the_run_kept() -> None:
    """Block 7 scales its fc's input in its own forward: fc agrees alone, so its caller is replayed too, and
    named; both calls were kept, so no model runs again."""
    torch.manual_seed(0)
    correct_base, correct_raw = counted_runs(residual_mlp(torch, 12)), counted_runs(residual_mlp(paddle, 12))
    assert pg.diff(correct_base, correct_raw, X).ok
    torch.manual_seed(0)
    base, raw = counted_runs(residual_mlp(torch, 12)), counted_runs(residual_mlp_scaling_input(paddle, 1.03))
    report = pg.diff(base, raw, X)
    assert tuple(report.first_divergence) == ("7", "7", "forward")
    assert "given the base layer's inputs the raw layer agrees" in report.first_divergence.message
    assert (base.runs, raw.runs) == (correct_base.runs, correct_raw.runs)


def _record(kept: KeptCalls, path: str, scaled: float) -> Comparison:
    """One layer call of a run as the raw side's checker hands it over; its verdict (floor 1e-3) settled."""
    tensor = torch.zeros(2)
    kept.started("base")(path, 0, (tensor,), {"flag": True})
    kept.started("raw")(path, 0, (tensor,), {})
    arrays = np.full(2, len(path), np.float32), np.zeros(2, np.float32)
    kept.compared(RecordKey(0, "input", path, 0, 0), *arrays, "float32")
    kept.compared(RecordKey(0, "forward", path, 0, 0), np.full(3, scaled, np.float32), arrays[1], "float32")
    verdict = Verdict(scaled <= 1e-3, scaled, scaled, scaled=scaled, floor=1e-3)
    comparison = Comparison(path, path, "forward", 0, 0, verdict)
    kept.settled(comparison)
    return comparison


@pytest.mark.parametrize("seed", range(5))
def test_the_calls_kept_as_the_verdicts_come_are_the_suspects_the_report_ranks_after_the_run(seed: int) -> None:
    rng = np.random.default_rng(seed)
    kept = KeptCalls(adapter_named("torch"), adapter_named("torch"))
    # some under the floor, some failing outright; on a coarse grid, so that growths tie
    scaled = 10.0 ** (np.round(rng.uniform(-5, -1, 40) * 2) / 2)
    comparisons = [_record(kept, f"layer{i}", float(value)) for i, value in enumerate(scaled)]
    ranked = suspects(attribute(comparisons))
    assert ranked
    for comparison, _ in ranked:
        (args, kwargs), output, dtype = kept.captured(comparison.base, 0, 0)[0]
        assert kwargs == {"flag": True} and args[0][0] == len(comparison.base) and dtype == "float32"
        assert output[0] == np.float32(comparison.verdict.scaled)
    first_failing = next(c for c in attribute(comparisons) if not c.ok)
    assert kept.captured(first_failing.base, 0, 0) is not None
    kept_count = sum(kept.captured(c.base, 0, 0) is not None for c in comparisons)
    assert kept_count == len(ranked) + 1  # nothing else is held


def test_the_calls_running_around_the_first_failing_record_are_kept_for_the_callers_replays() -> None:
    kept = KeptCalls(adapter_named("torch"), adapter_named("torch"))
    tensor, value = torch.zeros(2), np.ones(3, np.float32)

    def enter(path: str) -> None:
        kept.started("base")(path, 0, (tensor,), {})
        kept.started("raw")(path, 0, (tensor,), {})
        kept.compared(RecordKey(0, "input", path, 0, 0), np.ones(2, np.float32), np.ones(2, np.float32), "float32")

    def leave(path: str, scaled: float = 0.0) -> None:
        kept.compared(RecordKey(0, "forward", path, 0, 0), value, value, "float32")
        verdict = Verdict(scaled == 0, scaled, scaled, scaled=scaled, floor=1e-3)
        kept.settled(Comparison(path, path, "forward", 0, 0, verdict))

    enter("")
    enter("before")
    leave("before")
    enter("block")
    enter("block.fc")
    leave("block.fc", 0.5)  # fails outright; every other layer agrees
    leave("block")
    enter("after")
    leave("after")
    leave("")
    assert all(kept.captured(path, 0, 0) is not None for path in ("block.fc", "block", ""))
    assert kept.captured("before", 0, 0) is None and kept.captured("after", 0, 0) is None


class TorchInner(torch.nn.Module):
    """Takes a second tensor its port does not (a mask the port builds inside)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(64, 64)

    def forward(self, x, mask):
        return self.fc(x) * mask


class PaddleInner(paddle.nn.Layer):
    def __init__(self) -> None:
        super().__init__()
        self.fc = paddle.nn.Linear(64, 64)

    def forward(self, x):
        return self.fc(x)


class TorchOuter(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = TorchInner()

    def forward(self, x):
        return self.inner(x, torch.ones_like(x))


class PaddleOuter(paddle.nn.Layer):
    def __init__(self, scale: float) -> None:
        super().__init__()
        self.inner, self.scale = PaddleInner(), scale

    def forward(self, x):
        return self.inner(x * self.scale)  # the port's bug, if any: in the caller


def test_a_layer_taking_more_tensors_than_its_port_is_replayed_on_the_call_the_run_kept() -> None:
    """The inner layers agree alone on the base's inputs (the base one's extra tensor has no counterpart): the
    caller is named, from calls the run kept; the models themselves do not run again."""

    def pair(scale: float):
        torch.manual_seed(0)
        base = counted_runs(torch.nn.Sequential(TorchOuter()))
        return base, counted_runs(paddle.nn.Sequential(PaddleOuter(scale)))

    correct_base, correct_raw = pair(1.0)
    assert pg.diff(correct_base, correct_raw, X).ok
    base, raw = pair(1.5)
    report = pg.diff(base, raw, X)
    assert tuple(report.first_divergence) == ("0", "0", "forward")
    assert "given the base layer's inputs the raw layer agrees" in report.first_divergence.message
    assert (base.runs, raw.runs) == (correct_base.runs, correct_raw.runs)
