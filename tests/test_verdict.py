"""The default verdict: errors relative to magnitude, a layer's own error told from inherited noise,
and outputs that hold the same data in another shape."""

import numpy as np
import paddle
import pytest
import torch

from padiff_graph import diff
from padiff_graph.frameworks import adapter_for
from padiff_graph.run.numerics import NOISE_FLOORS, Mode, Verdict, compare_arrays
from padiff_graph.run.results import Comparison, attribute

RNG = np.random.default_rng(7)
BATCH, LENGTH, DIM = 2, 6, 8
TOKENS = {"x": RNG.standard_normal((BATCH, LENGTH, DIM)).astype(np.float32)}


class TorchPositions(torch.nn.Module):
    """HF style: the position table is built for a batch of 1 and the add broadcasts it."""

    def __init__(self, shift=0):
        super().__init__()
        self.proj = torch.nn.Linear(DIM, DIM)
        self.pos = torch.nn.Embedding(LENGTH + 1, DIM)
        self.shift = shift

    def forward(self, x):
        positions = torch.arange(self.shift, x.shape[1] + self.shift)[None]
        return self.proj(x) + self.pos(positions)


class PaddlePositions(paddle.nn.Layer):
    """The port builds the table for the whole batch."""

    def __init__(self, shift=0):
        super().__init__()
        self.proj = paddle.nn.Linear(DIM, DIM)
        self.pos = paddle.nn.Embedding(LENGTH + 1, DIM)
        self.shift = shift

    def forward(self, x):
        positions = paddle.arange(self.shift, x.shape[1] + self.shift).unsqueeze(0).expand([x.shape[0], x.shape[1]])
        return self.proj(x) + self.pos(positions)


@pytest.mark.parametrize("torch_is_base", [True, False], ids=["torch-base", "paddle-base"])
def test_a_table_built_for_one_sample_is_compared_after_broadcasting(torch_is_base: bool) -> None:
    torch_model, paddle_model = TorchPositions(), PaddlePositions()
    base, raw = (torch_model, paddle_model) if torch_is_base else (paddle_model, torch_model)
    report = diff(base, raw, TOKENS)
    assert report.ok, report.first_divergence
    notes = {c.stage: c.verdict.note for c in report.comparisons if c.base == "pos"}
    assert "broadcasting" in notes["forward"]
    assert "summed" in notes["backward"]  # the batch-of-1 table's gradient is the batch's gradients summed


def test_a_broadcast_table_with_other_data_is_a_divergence() -> None:
    report = diff(TorchPositions(), PaddlePositions(shift=1), TOKENS)  # positions off by one
    # 'pos' is the first output that differs, but the embedding is right on the base's positions:
    # the positions are computed in the root's forward, and that is where they differ
    assert tuple(report.first_divergence) == ("", "", "forward")
    assert "the input of base 'pos'" in report.first_divergence.message


class TorchFlatExpert(torch.nn.Module):
    """HF MoE style: tokens flattened to ``[batch * length, dim]`` before the expert."""

    def __init__(self):
        super().__init__()
        self.expert = torch.nn.Linear(DIM, DIM)
        self.norm = torch.nn.LayerNorm(DIM)

    def forward(self, x):
        return self.norm(self.expert(x.reshape(-1, DIM)).reshape(x.shape))


class PaddleExpert(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.expert = paddle.nn.Linear(DIM, DIM)
        self.norm = paddle.nn.LayerNorm(DIM)

    def forward(self, x):
        return self.norm(self.expert(x))


def test_flattened_tokens_are_the_same_elements_in_another_view() -> None:
    report = diff(TorchFlatExpert(), PaddleExpert(), TOKENS)
    assert report.ok, report.first_divergence
    expert = [c for c in report.comparisons if c.base == "expert" and c.stage in ("forward", "backward")]
    assert expert and all("another view" in c.verdict.note for c in expert)


def test_shapes_that_neither_broadcast_nor_reshape_differ() -> None:
    verdict = compare_arrays(np.ones((2, 3)), np.ones((3, 3)), 1e-4, 1e-3, Mode.STRICT, NOISE_FLOORS["float32"])
    assert not verdict.ok and verdict.note == "shape [2, 3] vs [3, 3]"
    both_ways = compare_arrays(np.ones((1, 3)), np.ones((2, 1)), 1e-4, 1e-3, Mode.STRICT)
    assert not both_ways.ok  # each would have to broadcast: not one tensor in another shape


def test_the_scaled_error_is_relative_to_the_largest_magnitude() -> None:
    base = np.array([100.0, 0.001], dtype=np.float32)
    # 1e-3 off at the small element: 100% of it elementwise, 1e-5 of the tensor's magnitude
    raw = np.array([100.0, 0.002], dtype=np.float32)
    assert compare_arrays(base, raw, 0, 0, Mode.STRICT, floor=3e-5).ok
    assert not compare_arrays(base, raw, 1e-4, 1e-3, Mode.STRICT).ok  # fixed tolerances stay elementwise
    assert not compare_arrays(base, np.array([100.01, 0.001], np.float32), 0, 0, Mode.STRICT, floor=3e-5).ok


def comparison(base: str, stage: str, scaled: float, floor: float = 3e-5) -> Comparison:
    verdict = Verdict(scaled <= floor, scaled, scaled, scaled=scaled, floor=floor, magnitude=1.0)
    return Comparison(base, base, stage, 0, 0, verdict)


def test_an_error_the_layers_before_explain_is_inherited_and_a_jump_is_the_layers_own() -> None:
    found = attribute(
        [
            comparison("a", "forward", 1e-5),
            comparison("b", "forward", 1e-4),  # over the floor and 10x the error before it: its own
            comparison("c", "forward", 6e-5),  # within 8x of the largest before: inherited
            comparison("d", "forward", 2e-1),  # a jump: the bug
            comparison("e", "forward", 3e-1),  # inherited from d
            comparison("", "loss", 2e-1),
        ]
    )
    verdicts = {c.base or "loss": c.verdict for c in found}
    assert [c.base for c in found if not c.ok] == ["b", "d"]
    assert verdicts["c"].inherited and verdicts["e"].inherited and verdicts["loss"].inherited
    assert "its own error is 2.0e-01" in verdicts["d"].note and "2000x the largest error" in verdicts["d"].note


def test_a_gradient_that_is_zero_up_to_rounding_is_scaled_by_its_layers_output_gradient() -> None:
    # the gradient of a key projection's bias is zero up to rounding: its own magnitude says nothing
    zero_sum = Verdict(False, 2e-10, 1.0, scaled=1.4, floor=3e-5, magnitude=1.5e-10)
    found = attribute([comparison("key", "backward", 1e-6), Comparison("key", "key", "grad:bias", 0, 0, zero_sum)])
    assert all(c.ok for c in found)
    assert found[1].verdict.scaled == pytest.approx(2e-10)
    # single-step runs inherit nothing, but their sums are scaled alike (BERT's key bias in single-step)
    single = attribute(
        [comparison("key", "backward", 1e-6), Comparison("key", "key", "grad:bias", 0, 0, zero_sum)], inherit=False
    )
    assert all(c.ok for c in single) and not any(c.verdict.inherited for c in single)
    assert not attribute([comparison("a", "forward", 1e-5), comparison("b", "forward", 6e-5)], inherit=False)[1].ok


def residual_mlp(framework, depth: int, slope_at: int | None = None):
    nn = torch.nn if framework is torch else paddle.nn
    base_class = torch.nn.Module if framework is torch else paddle.nn.Layer

    class Block(base_class):
        def __init__(self, slope):
            super().__init__()
            self.fc = nn.Linear(64, 64)
            self.act = nn.LeakyReLU(slope)

        def forward(self, x):
            return x + self.act(self.fc(x))

    layers = [Block(0.5 if index == slope_at else 0.1) for index in range(depth)]
    return nn.Sequential(*layers)


def test_bfloat16_noise_accumulated_over_depth_is_not_a_divergence_and_a_fault_still_is() -> None:
    torch.manual_seed(0)
    x = [np.random.default_rng(1).standard_normal((16, 64)).astype(np.float32) * 4]
    base = residual_mlp(torch, 12).to(torch.bfloat16)
    report = diff(base, residual_mlp(paddle, 12), x)
    assert report.ok, report.first_divergence
    assert report.settings["noise_floor"] == NOISE_FLOORS["bfloat16"]
    assert report.settings["precision"] == {"base": "bfloat16", "raw": "float32"}
    fixed = diff(base, residual_mlp(paddle, 12), x, atol=1e-2, rtol=1e-2)
    assert not fixed.ok  # elementwise bounds count the rounding of large activations as a divergence
    faulty = diff(base, residual_mlp(paddle, 12, slope_at=7), x)
    assert tuple(faulty.first_divergence) == ("7.act", "7.act", "forward")
    assert "its own error" in faulty.first_divergence.message


class TorchPostBlock(torch.nn.Module):
    """ResNet style: the residual add happens in the block's forward, before a ReLU module."""

    def __init__(self):
        super().__init__()
        self.fc, self.post = torch.nn.Linear(DIM, DIM), torch.nn.ReLU()

    def forward(self, x):
        return self.post(x + self.fc(x))


class PaddlePostBlock(paddle.nn.Layer):
    def __init__(self, skip=True):
        super().__init__()
        self.fc, self.post, self.skip = paddle.nn.Linear(DIM, DIM), paddle.nn.ReLU(), skip

    def forward(self, x):
        return self.post(x + self.fc(x) if self.skip else self.fc(x))


def two_blocks(block, *args):
    framework = torch.nn if block is TorchPostBlock else paddle.nn
    model = framework.Sequential(block(), block(*args))
    model.eval()
    return model


@pytest.mark.parametrize("torch_is_base", [True, False], ids=["torch-base", "paddle-base"])
def test_a_fault_in_the_code_between_layers_is_named_at_its_caller(torch_is_base: bool) -> None:
    torch_model, paddle_model = two_blocks(TorchPostBlock), two_blocks(PaddlePostBlock, False)
    base, raw = (torch_model, paddle_model) if torch_is_base else (paddle_model, torch_model)
    if not torch_is_base:  # the skip is dropped on the raw side: move it there
        base, raw = two_blocks(PaddlePostBlock), two_blocks(TorchPostBlock)
        raw[1].forward = lambda x: raw[1].post(raw[1].fc(x))
    report = diff(base, raw, [TOKENS["x"]])
    # 'post' is the first layer whose output differs, but given the base's input it agrees:
    # the input was computed by block 1's own forward (the residual add left out)
    assert tuple(report.first_divergence) == ("1", "1", "forward")
    assert "the code in the forward of base '1'" in report.first_divergence.message


def _sgd(model):
    if isinstance(model, torch.nn.Module):
        return torch.optim.SGD(model.parameters(), lr=0.1)
    return paddle.optimizer.SGD(0.1, parameters=model.parameters())


def test_a_training_run_decides_its_first_step_alone_first() -> None:
    """Several steps and an optimizer leave nothing to replay; the first step alone, as a one-step diff, can be:
    it names the fault, and the optimizers do not step."""
    base, raw = two_blocks(TorchPostBlock), two_blocks(PaddlePostBlock, False)
    report = diff(base, raw, [TOKENS["x"]], optimizers=(_sgd(base), _sgd(raw)), steps=2)
    assert tuple(report.first_divergence) == ("1", "1", "forward")
    assert "given the base layer's inputs the raw layer agrees" in report.first_divergence.message
    assert "first_step_only" in report.settings


def with_dropout(model):
    """``model`` followed by dropout in training mode: run again, it would give other outputs, so nothing is
    replayed (the diff switches it off for its own run only)."""
    framework = torch.nn if isinstance(model, torch.nn.Module) else paddle.nn
    stacked = framework.Sequential(*model, framework.Dropout(0.5))
    stacked.train()
    return stacked


def test_in_a_training_run_that_cannot_replay_a_fault_between_layers_is_named_at_its_caller() -> None:
    """The first layer whose output differs, a layer of one input that already differed, was named with only a
    note pointing at its caller."""
    base, raw = with_dropout(two_blocks(TorchPostBlock)), with_dropout(two_blocks(PaddlePostBlock, False))
    report = diff(base, raw, [TOKENS["x"]], optimizers=(_sgd(base), _sgd(raw)), steps=2, random_ops="disable")
    assert tuple(report.first_divergence) == ("1", "1", "forward")
    assert "every layer before it agrees (the layer is not run alone" in report.first_divergence.message


class TorchExperts(torch.nn.Module):
    """An expert that got no token is left out: its parameters have no gradient."""

    def __init__(self):
        super().__init__()
        self.used, self.idle = torch.nn.Linear(DIM, DIM), torch.nn.Linear(DIM, DIM)

    def forward(self, x):
        return self.used(x)


class PaddleExperts(paddle.nn.Layer):
    """The same expert run with its output weighed 0 (no token routed to it): a zero gradient."""

    def __init__(self):
        super().__init__()
        self.used, self.idle = paddle.nn.Linear(DIM, DIM), paddle.nn.Linear(DIM, DIM)

    def forward(self, x):
        return self.used(x) + self.idle(x) * 0.0


def test_no_gradient_against_a_zero_one_agrees() -> None:
    for base, raw in ((TorchExperts(), PaddleExperts()), (PaddleExperts(), TorchExperts())):
        report = diff(base, raw, [TOKENS["x"]])
        assert report.ok, report.first_divergence
        idle = [c for c in report.comparisons if c.base == "idle" and c.kind == "grad"]
        assert idle and all("a zero one on the other" in c.verdict.note for c in idle)


def test_a_layer_that_differs_on_the_base_inputs_keeps_the_divergence_with_its_own_error() -> None:
    base = torch.nn.Sequential(torch.nn.Linear(DIM, DIM), torch.nn.GELU()).eval()
    raw = paddle.nn.Sequential(paddle.nn.Linear(DIM, DIM), paddle.nn.GELU(approximate=True))
    raw.eval()
    report = diff(base, raw, {"input": TOKENS["x"] * 4})
    assert tuple(report.first_divergence) == ("1", "1", "forward")
    assert "the raw layer alone differs by" in report.first_divergence.message


@pytest.mark.parametrize("torch_is_base", [True, False], ids=["torch-base", "paddle-base"])
def test_single_step_feeds_a_broadcast_table_in_the_raw_tensors_shape(torch_is_base: bool) -> None:
    torch_model, paddle_model = TorchPositions(), PaddlePositions()
    base, raw = (torch_model, paddle_model) if torch_is_base else (paddle_model, torch_model)
    report = diff(base, raw, TOKENS, single_step=True)
    assert report.ok, report.first_divergence
    fed = [c for c in report.comparisons if c.base == "pos" and c.stage in ("input", "backward")]
    assert fed and all(c.ok for c in fed)


class TorchLargest(torch.nn.Module):
    """Keeps the largest entry of each row: a discrete choice, as a router's top-k is."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (x == x.max(-1, keepdim=True).values).to(x.dtype)


class PaddleLargest(paddle.nn.Layer):
    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return x * (x == x.max(-1, keepdim=True)).astype(x.dtype)


class TorchScale(torch.nn.Module):
    """Multiplies by a learned vector, after a layer that holds a table no run changes (a rotary table)."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.full((4,), 0.5))
        self.register_buffer("table", torch.zeros(4), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.table) * self.weight


class PaddleScale(paddle.nn.Layer):
    def __init__(self, factor: float = 1.0):
        super().__init__()
        self.weight = self.create_parameter([4], default_initializer=paddle.nn.initializer.Constant(0.5))
        self.register_buffer("table", paddle.zeros([4]), persistable=False)
        self.factor = factor

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return (x + self.table) * self.weight * self.factor


def routed(framework, factor: float = 1.0, training: bool = False):
    """A linear layer, a choice of the largest entry (a router's top-1), then a scale: the base in bfloat16."""
    if framework is torch:
        model = torch.nn.Sequential(torch.nn.Linear(4, 4), TorchLargest(), TorchScale())
        with torch.no_grad():
            model[0].weight.copy_(torch.eye(4))
            model[0].bias.zero_()
        return model.to(torch.bfloat16).train(training)
    model = paddle.nn.Sequential(paddle.nn.Linear(4, 4), PaddleLargest(), PaddleScale(factor))
    model.train() if training else model.eval()
    return model


# bfloat16 rounds 1.001 to 1.0: a tie on the base side, a clear winner on the raw side
NEAR_TIE = [np.array([[1.0, 1.001, 0.0, 0.0], [0.0, 2.0, 1.0, 0.0]], dtype=np.float32)]


@pytest.mark.parametrize("training", [False, True], ids=["eval", "training-with-a-derived-buffer"])
def test_a_choice_flipped_by_the_base_dtype_rounding_its_input_is_no_divergence(training: bool) -> None:
    report = diff(routed(torch, training=training), routed(paddle, training=training), NEAR_TIE)
    assert report.ok, report.first_divergence
    flips = [f for f in report.findings if f.code.value == "ambiguous-divergence"]
    assert [(f.base, f.raw) for f in flips] == [("1", "1")]
    assert "its input agrees" in flips[0].message and "single-step" in flips[0].hint
    assert report.settings["single_step"] and "1" in report.settings["rechecked"]


def test_a_bug_after_a_flipped_choice_is_named_at_its_layer() -> None:
    report = diff(routed(torch), routed(paddle, factor=2.0), NEAR_TIE)
    assert tuple(report.first_divergence) == ("2", "2", "forward")
    assert "of its magnitude (max abs diff" in report.first_divergence.message  # the single-step run's evidence
    assert "with every layer fed the base's data; one layer's noise" in report.first_divergence.message
    assert [f.base for f in report.findings if f.code.value == "ambiguous-divergence"] == ["1"]


def test_a_flipped_choice_in_a_training_run_is_found_by_the_first_step_alone_and_said() -> None:
    """With an optimizer nothing can be replayed after the run; the first step, checked alone first, finds the
    flip, and the training run's divergence there says the runs part at that choice."""
    base, raw = routed(torch), routed(paddle)
    optimizers = (
        torch.optim.SGD(base.parameters(), lr=0.0),
        paddle.optimizer.SGD(learning_rate=0.0, parameters=raw.parameters()),
    )
    report = diff(base, raw, NEAR_TIE, optimizers=optimizers)
    assert tuple(report.first_divergence) == ("1", "1", "forward")
    assert "the training runs take other paths from that choice" in report.first_divergence.message
    flip = next(f for f in report.findings if f.code.value == "ambiguous-divergence")
    assert "the first step alone agrees" in flip.hint and "flipped choice" in report.settings["first_step"]


class TorchRouter(torch.nn.Module):
    """Scores, then keeps each row's largest: the choice inside the layer, as GPT-OSS's router makes it."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(2, 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.proj(x)
        return scores * (scores == scores.max(-1, keepdim=True).values).to(scores.dtype)


class PaddleRouter(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.proj = paddle.nn.Linear(2, 2, bias_attr=False)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        scores = self.proj(x)
        return scores * (scores == scores.max(-1, keepdim=True)).astype(scores.dtype)


class TorchHalf(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0.5


class PaddleHalf(paddle.nn.Layer):
    def __init__(self, factor: float = 0.5):
        super().__init__()
        self.factor = factor

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return x * self.factor


def router_pair(factor: float = 0.5):
    """A bfloat16 router whose scores for ``[1, 1]`` are 1.0 and 1.001: a tie once bfloat16 rounds them."""
    base = torch.nn.Sequential(TorchRouter(), TorchHalf())
    with torch.no_grad():
        base[0].proj.weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 0.001]]))
    raw = paddle.nn.Sequential(PaddleRouter(), PaddleHalf(factor))
    raw.eval()
    return base.to(torch.bfloat16).eval(), raw


ROUTED = [np.array([[1.0, 1.0], [2.0, 0.0]], dtype=np.float32)]


def test_a_choice_inside_a_layer_flipped_by_the_base_dtype_is_no_divergence() -> None:
    # given the base's inputs the raw router still differs (its scores are not rounded): only both layers in
    # float32 show that the base's bfloat16 arithmetic made the tie
    report = diff(*router_pair(), ROUTED)
    assert report.ok, report.first_divergence
    flips = [f for f in report.findings if f.code.value == "ambiguous-divergence"]
    assert {(f.base, f.raw) for f in flips} == {("0", "0")}
    assert any("in float32 on" in f.message and "both layers agree" in f.message for f in flips)
    single = diff(*router_pair(), ROUTED, single_step=True)
    assert single.ok, single.first_divergence
    assert [f.base for f in single.findings if f.code.value == "ambiguous-divergence"] == ["0"]
    bug = diff(*router_pair(factor=2.0), ROUTED)
    assert tuple(bug.first_divergence) == ("1", "1", "forward")


class TorchResidualBlock(torch.nn.Module):
    """One activation module called twice, as ResNet's blocks call theirs."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.act = torch.nn.Linear(16, 16), torch.nn.Linear(16, 16), torch.nn.ReLU()

    def forward(self, x):
        return self.act(self.fc2(self.act(self.fc1(x))) + x)


class PaddleResidualBlock(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.act = paddle.nn.Linear(16, 16), paddle.nn.Linear(16, 16), paddle.nn.GELU()

    def forward(self, x):
        return self.act(self.fc2(self.act(self.fc1(x))) + x)


def test_another_activation_under_the_bfloat16_floor_is_named_by_its_float32_replay() -> None:
    # GELU for ReLU on large inputs: given the base's inputs the two differ by less than bfloat16's floor,
    # but in float32 by far more than float32's, and pre-flight found their classes differ
    torch.manual_seed(0)
    x = [np.random.default_rng(0).standard_normal((32, 16)).astype(np.float32) * 5.5]
    report = diff(TorchResidualBlock().to(torch.bfloat16), PaddleResidualBlock(), x)
    assert tuple(report.first_divergence) == ("act", "act", "forward")
    assert "within this dtype's noise, but run in float32" in report.first_divergence.message
    assert not [f for f in report.findings if f.code.value == "ambiguous-divergence"]


class TorchAdd(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(DIM, DIM)

    def forward(self, x, y):
        return self.lin(x) + y


class PaddleAdd(paddle.nn.Layer):
    """The port takes ``y`` by keyword after an argument of its own, as paddleformers' layers take theirs."""

    def __init__(self):
        super().__init__()
        self.lin = paddle.nn.Linear(DIM, DIM)

    def forward(self, x, cache=None, y=None):
        return self.lin(x) + y


class TorchCaller(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.add = TorchAdd()

    def forward(self, x, y):
        return self.add(x, y)


class PaddleCaller(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.add = PaddleAdd()

    def forward(self, x, y):
        return self.add(x * 2.0, y=y)  # the port's bug: in the caller, not in the layer


def test_a_replay_feeds_the_raw_layer_as_its_signature_takes_the_inputs() -> None:
    pair = [TOKENS["x"], TOKENS["x"][::-1].copy()]
    report = diff(TorchCaller(), PaddleCaller(), pair)
    # replayed on the base's inputs fed where the raw layer takes them, the layer agrees: its caller is at fault
    assert tuple(report.first_divergence) == ("", "", "forward")
    assert "given the base layer's inputs the raw layer agrees" in report.first_divergence.message


def residual_mlp_scaling_input(framework, scale: float):
    """:func:`residual_mlp` whose block 7 scales its ``fc``'s input in its forward (code between layers)."""
    model = residual_mlp(framework, 12)
    block = model[7]
    block.forward = lambda x: x + block.act(block.fc(x * scale))
    return model


def test_code_between_layers_under_the_bfloat16_noise_is_rechecked_in_single_step_mode() -> None:
    # a 3% scale in block 7's forward: 7.fc's output passes as inherited bf16 noise, its layer agrees alone,
    # but its input grew past the noise passed on: not sure, so single-step mode decides, naming the block
    torch.manual_seed(0)
    x = [np.random.default_rng(1).standard_normal((16, 64)).astype(np.float32) * 4]
    base = residual_mlp(torch, 12).to(torch.bfloat16)
    report = diff(base, residual_mlp_scaling_input(paddle, 1.03), x)
    assert tuple(report.first_divergence) == ("7", "7", "forward")
    [unsure] = [f for f in report.findings if f.code.value == "ambiguous-divergence"]
    assert unsure.base == "7.fc" and "its input differs by more than the noise" in unsure.message
    assert "rechecked" in report.settings
    assert diff(base, residual_mlp_scaling_input(paddle, 1.0), x).ok  # the same code, correct: no recheck needed


def test_another_activation_wholly_under_the_bfloat16_floor_is_found_in_float32() -> None:
    # on larger inputs no record of the GELU-for-ReLU port crosses bfloat16's floor: the pair pre-flight found of
    # different classes is run in float32 on the base's inputs, where the two differ
    torch.manual_seed(0)
    x = [np.random.default_rng(0).standard_normal((32, 16)).astype(np.float32) * 8]
    report = diff(TorchResidualBlock().to(torch.bfloat16), PaddleResidualBlock(), x)
    assert tuple(report.first_divergence) == ("act", "act", "forward")
    assert "pre-flight found layers of different classes here" in report.first_divergence.message


def residual_mlp_with_norm(framework, epsilon: float):
    """:func:`residual_mlp` then an eval-mode batch norm: the norm is judged after twelve layers of noise."""
    norm = torch.nn.BatchNorm1d(64, epsilon) if framework is torch else paddle.nn.BatchNorm1D(64, epsilon=epsilon)
    model = (torch.nn if framework is torch else paddle.nn).Sequential(*residual_mlp(framework, 12), norm)
    model.eval()
    return model


def test_a_fault_under_the_accumulated_bfloat16_noise_is_found_by_replaying_the_layer() -> None:
    torch.manual_seed(0)
    x = [np.random.default_rng(1).standard_normal((16, 64)).astype(np.float32) * 4]
    base = residual_mlp_with_norm(torch, 1e-5).to(torch.bfloat16)
    assert diff(base, residual_mlp_with_norm(paddle, 1e-5), x).ok
    # eps 0.1 moves the norm's output by 4.7e-2 of its magnitude: over the floor, but under 8x the noise before it
    report = diff(base, residual_mlp_with_norm(paddle, 0.1), x)
    assert tuple(report.first_divergence) == ("12", "12", "forward")
    assert "given the base layer's inputs the raw layer alone differs by" in report.first_divergence.message
    norm = next(c for c in report.comparisons if c.base == "12" and c.kind == "forward")
    assert norm.replayed is not None and not norm.replayed.ok and not norm.verdict.inherited
    assert "already differs" not in report.first_divergence.message  # the replay, not the noisy input, decides


@pytest.mark.parametrize("framework", [torch, paddle], ids=["torch", "paddle"])
def test_full_precision_widens_a_layer_for_a_replay_and_gives_back_its_own_memory(framework) -> None:
    if framework is torch:
        layer = torch.nn.Linear(3, 3).to(torch.bfloat16)
    else:
        layer = paddle.nn.Linear(3, 3)
        layer.to(dtype="bfloat16")
    adapter = adapter_for(layer)
    before = {name: (adapter.dtype_name(t), adapter.to_numpy(t)) for name, t in adapter.named_tensors(layer).items()}
    with adapter.full_precision(layer):
        inside = {name: adapter.dtype_name(t) for name, t in adapter.named_tensors(layer).items()}
    assert set(inside.values()) == {"float32"}
    for name, tensor in adapter.named_tensors(layer).items():
        assert adapter.dtype_name(tensor) == before[name][0] == "bfloat16"
        assert np.array_equal(adapter.to_numpy(tensor), before[name][1])


def test_mean_mode_judges_the_means_and_reports_the_largest_differences_over_every_chunk() -> None:
    """More elements than one pass takes (a 3072 x 768 gradient): the means decide; the largest difference,
    wherever it is, is reported; NaN in the same places on both sides is left out, in one side only fails."""
    base = np.random.default_rng(3).standard_normal((3072, 768), dtype=np.float32)
    raw = base.copy()
    raw[3000, 5] += 0.5  # far into the array; the mean moves by 0.5 / 2.4 M
    verdict = compare_arrays(base, raw, 1e-4, 1e-4, Mode.MEAN)
    assert verdict.ok and verdict.max_abs == pytest.approx(0.5, rel=1e-6)
    assert verdict.magnitude == pytest.approx(float(np.abs(base).max()))
    assert not compare_arrays(base, raw + 1e-3, 1e-4, 1e-4, Mode.MEAN).ok
    base[7, 7] = raw[7, 7] = np.nan
    assert compare_arrays(base, raw, 1e-4, 1e-4, Mode.MEAN).max_abs == pytest.approx(0.5, rel=1e-6)
    raw[7, 8] = np.nan
    assert not compare_arrays(base, raw, 1e-4, 1e-4, Mode.MEAN).ok
    assert compare_arrays(base[:0], raw[:0], 1e-4, 1e-4, Mode.MEAN).ok
