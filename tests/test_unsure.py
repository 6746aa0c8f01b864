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
    assert "drift apart" in tie.message  # training with an optimizer: the untied copies part ways
    # the tied embedding also collects the head's gradient: compared with the raw embedding's and head's, summed
    report = diff(base, raw, inputs)
    assert report.ok, report.first_divergence
    (gradient,) = [c for c in report.comparisons if c.kind == "grad" and c.base == "embed"]
    assert "raw 'lm_head.weight' (transpose) and raw 'embed.weight'" in gradient.verdict.note


def test_after_an_optimizer_step_an_untied_copy_of_a_tied_head_is_named_at_the_head_as_the_tie() -> None:
    (base, inputs), raw = tied_head.base(), PaddleOwnHead()
    optimizers = torch.optim.SGD(base.parameters(), lr=0.5), paddle.optimizer.SGD(0.5, parameters=raw.parameters())
    report = diff(base, raw, inputs, optimizers=optimizers)
    assert all(c.ok for c in report.comparisons if c.kind in ("forward", "grad"))
    assert [tuple(d) for d in report.divergences] == [("lm_head", "lm_head", "weights")]
    assert "untied copies drift apart (the tie, not a fault" in report.first_divergence.message


def test_the_summed_gradient_of_a_tied_tensor_still_names_a_copy_that_is_not_trained() -> None:
    (base, inputs), raw = tied_head.base(), PaddleOwnHead()
    raw.embed.weight.stop_gradient = True  # the port freezes its embedding: only the head's gradient is left
    report = diff(base, raw, inputs)
    assert tuple(report.first_divergence) == ("embed", "embed", "grad")
    assert "compared with the sum of the copies'" in report.first_divergence.message


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


class TorchSublayer(torch.nn.Module):
    """HF's nesting: each dropout sits with the dense layer it follows."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.dense = torch.nn.Linear(cin, cout)
        self.norm = torch.nn.LayerNorm(cout)
        self.dropout = torch.nn.Dropout(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.dropout(self.dense(x)))


class TorchTwoSublayers(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first, self.second = TorchSublayer(4, 6), TorchSublayer(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))


class PaddleFlatLayer(paddle.nn.Layer):
    """paddle's ``TransformerEncoderLayer`` habit: the dropouts defined last, after both norms."""

    def __init__(self) -> None:
        super().__init__()
        self.linear1, self.linear2 = paddle.nn.Linear(4, 6), paddle.nn.Linear(6, 3)
        self.norm1, self.norm2 = paddle.nn.LayerNorm(6), paddle.nn.LayerNorm(3)
        self.dropout1, self.dropout2 = paddle.nn.Dropout(0.0), paddle.nn.Dropout(0.0)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.norm2(self.dropout2(self.linear2(self.norm1(self.dropout1(self.linear1(x))))))


def test_parameter_less_layers_only_position_pairs_are_ambiguous_and_block_nothing() -> None:
    base, raw = TorchTwoSublayers(), PaddleFlatLayer()
    layer_map = suggest_map(base, raw)
    dropouts = {pair.base: (pair.raw, *pair.candidates) for pair in layer_map.pairs if "dropout" in pair.base}
    assert dropouts and all(len(partners) == 2 for partners in dropouts.values())  # each with its rival named
    unsure = [f for f in preflight(base, raw) if f.code.value == "ambiguous-match"]
    assert unsure and {f.base for f in unsure} == set(dropouts)
    assert all(f.severity.value == "info" and "nothing is copied" in f.message for f in unsure)
    inputs = (np.random.default_rng(0).standard_normal((2, 4), dtype=np.float32),)
    assign_weights(base, raw)  # the weight copy does not stop at them
    with torch.no_grad():
        expected = base(torch.from_numpy(inputs[0])).numpy()
    assert np.abs(raw(paddle.to_tensor(inputs[0])).numpy() - expected).max() < 1e-5
    report = diff(base, raw, inputs, layer_map)  # a map saved without inputs: those pairs are not compared
    assert {(item.base, item.raw) for item in report.not_compared} >= {(b, p[0]) for b, p in dropouts.items()}
    traced = suggest_map(base, raw, inputs)  # call order pairs them right
    got = {pair.base: (pair.raw, pair.candidates) for pair in traced.pairs if "dropout" in pair.base}
    assert got == {"first.dropout": ("dropout1", ()), "second.dropout": ("dropout2", ())}


def test_parameter_less_containers_of_other_families_do_not_pair_on_position() -> None:
    import bert

    (base, inputs), (raw, _) = bert.base(), bert.raw()
    static = suggest_map(base, raw)
    assert all(static.raw_of(f"encoder.layer.{i}.attention") is None for i in range(bert.DEPTH))
    assert static.pair_for_base("encoder.layer.0.output.dropout").candidates  # type: ignore[union-attr]
    traced = suggest_map(base, raw, inputs)
    assert traced.raw_of("encoder.layer.0.output.dropout") == "encoder.layers.0.dropout2"
    assert traced.raw_of("encoder.layer.0.attention.output.dropout") == "encoder.layers.0.dropout1"


class MegatronLinear(torch.nn.Module):
    """A user's linear layer in Megatron's ``[out, in]`` layout: no conversion knows it."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(size, size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.T


class ResidualLinear(MegatronLinear):
    """The same layer taking its residual as a second input: it cannot run alone on one tensor."""

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return x @ self.weight.T + residual


class PaddleProjection(paddle.nn.Layer):
    """A user's paddle linear layer, ``[in, out]``."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.weight = self.create_parameter([size, size])

    def forward(self, x: paddle.Tensor, residual: paddle.Tensor | None = None) -> paddle.Tensor:
        return x @ self.weight + (0 if residual is None else residual)


def test_a_square_layout_is_settled_on_synthetic_inputs_where_the_layer_runs_alone() -> None:
    base, raw = torch.nn.Sequential(MegatronLinear(8)), paddle.nn.Sequential(PaddleProjection(8))
    (pair,) = [pair for pair in suggest_map(base, raw).pairs if pair.base == "0"]  # no inputs given
    assert pair.guessed_layouts == () and [t.describe() for t in pair.tensors] == ["weight -> weight: transpose"]
    assert not [f for f in preflight(base, raw) if f.code.value == "ambiguous-transform"]
    assign_weights(base, raw)
    x = np.random.default_rng(1).standard_normal((2, 8), dtype=np.float32)
    with torch.no_grad():
        expected = base(torch.from_numpy(x)).numpy()
    assert np.abs(raw(paddle.to_tensor(x)).numpy() - expected).max() < 1e-5

    class TwoInputs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = ResidualLinear(8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.proj(x, x)

    alone = TwoInputs()
    (pair,) = [pair for pair in suggest_map(alone, raw).pairs if pair.base == "proj"]
    assert pair.guessed_layouts == ("weight",)  # its forward needs a second input: still a guess, reported
    assert [f.base for f in preflight(alone, raw) if f.code.value == "ambiguous-transform"] == ["proj"]


class TorchPointwise(torch.nn.Module):
    """Seven square 1x1 convolutions: a ``Linear`` on the other side cannot take their input alone."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = torch.nn.ModuleList(torch.nn.Conv2d(4, 4, 1) for _ in range(CHAIN))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, None, None]
        for conv in self.convs:
            x = conv(x)
        return x.flatten(1)


class PaddleDense(paddle.nn.Layer):
    def __init__(self) -> None:
        super().__init__()
        self.convs = paddle.nn.LayerList(paddle.nn.Linear(4, 4) for _ in range(CHAIN))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        for linear in self.convs:
            x = linear(x)
        return x


def test_a_probe_of_layers_together_cut_by_its_limit_says_so() -> None:
    base, raw = TorchPointwise(), PaddleDense()
    inputs = {"x": np.random.default_rng(0).standard_normal((2, 4), dtype=np.float32)}
    layer_map = suggest_map(base, raw, inputs)
    cut = {pair.base: pair.probe_cut for pair in layer_map.pairs if pair.guessed_layouts}
    assert cut == {f"convs.{index}": 2**CHAIN for index in range(CHAIN)}  # probed together under 'convs': 128
    unsure = [f for f in preflight(base, raw, inputs=inputs) if f.code.value == "ambiguous-transform"]
    assert len(unsure) == CHAIN and all("stopped at its limit" in f.message for f in unsure)


def _training_report(step: int, stage: str, weights_differ: bool = False):
    """A training run's report whose first divergence is at ``step``/``stage``; the weights after step 0
    differ or agree."""
    from padiff_graph.layermap import LayerMap
    from padiff_graph.run.numerics import Verdict
    from padiff_graph.run.results import Comparison, DiffReport, Divergence

    weights = Comparison("gate", "gate", "weights:weight", 0, 0, Verdict(not weights_differ, 0.0, 0.0), 0)
    failing = Comparison("gate", "gate", stage, 0, 0, Verdict(False, 1.0, 1.0), step)
    first = Divergence("gate", "gate", stage, f"{stage} differs at base 'gate'", step)
    return DiffReport(False, first, [weights, failing], [], LayerMap([]), {}, divergences=[first])


def test_a_later_step_parting_after_an_agreeing_first_step_is_not_sure() -> None:
    """A router that a step moved to a tie flips under bf16 in step 1 (GLM-4-MoE trained with AdamW): the first
    step alone agreed and the weights agreed after it, so the same code differs only through rounding."""
    from dataclasses import replace as changed

    from padiff_graph.run.confirm import after_first_step

    agreeing = changed(_training_report(0, "forward"), ok=True, first_divergence=None, divergences=[])
    parted = after_first_step(_training_report(1, "forward"), agreeing, same_inputs=True)
    assert [f.code.value for f in parted.findings] == ["ambiguous-divergence"]
    assert "rounding carried into a choice" in parted.first_divergence.message
    # other inputs in step 1, or weights that differed after step 0 (an optimizer's doing): a verdict
    assert not after_first_step(_training_report(1, "forward"), agreeing, same_inputs=False).findings
    assert not after_first_step(_training_report(1, "forward", True), agreeing, same_inputs=True).findings
    assert not after_first_step(_training_report(1, "weights"), agreeing, same_inputs=True).findings
