"""The hooked diff on real models: faults found at the right layer, and robustness."""

import threading

import numpy as np
import paddle
import pytest
import torch

from padiff_graph import InputError, ModelRunError, diff
from padiff_graph.run.numerics import DEFAULT_TOLERANCES

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


class SpareTorch(torch.nn.Module):
    """A Linear the forward uses, and one it does not (an unused head)."""

    def __init__(self) -> None:
        super().__init__()
        self.used, self.spare = torch.nn.Linear(8, 3), torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.used(x)


class SparePaddle(paddle.nn.Layer):
    def __init__(self) -> None:
        super().__init__()
        self.used, self.spare = paddle.nn.Linear(8, 3), paddle.nn.Linear(8, 3)

    def forward(self, x):
        return self.used(x)


def test_gradients_left_from_before_are_cleared_to_none_not_to_zeros() -> None:
    """Gradients a user's own backward left are not added to; a parameter the step does not reach ends with no
    gradient, as torch's does (paddle's zeroed gradients would be written with zeros, then read and added to)."""
    base, raw = SpareTorch(), SparePaddle()
    x = paddle.to_tensor(X[0])
    (raw.used(x).sum() + raw.spare(x).sum()).backward()  # a user's earlier step, through both layers
    assert raw.spare.weight.grad is not None
    report = diff(base, raw, X)
    assert report.ok, report.first_divergence
    assert raw.spare.weight.grad is None and raw.spare.bias.grad is None
    np.testing.assert_allclose(raw.used.weight.grad.numpy(), base.used.weight.grad.numpy().T, rtol=1e-5, atol=1e-6)


# --- training steps, phases, single-step -------------------------------------------------------

WIDE = [X[0] * 4]  # GELU's tanh approximation is off by ~5e-4 at pre-activations of this scale


def chain_torch(act1, act2):
    return torch.nn.Sequential(torch.nn.Linear(8, 16), act1, torch.nn.Linear(16, 16), act2, torch.nn.Linear(16, 4))


def chain_paddle(act1, act2):
    return paddle.nn.Sequential(paddle.nn.Linear(8, 16), act1, paddle.nn.Linear(16, 16), act2, paddle.nn.Linear(16, 4))


def test_training_steps_compare_loss_gradients_and_weights_each_step() -> None:
    base, raw = mlp_torch(torch.nn.Tanh()), mlp_paddle(paddle.nn.Tanh())
    target = np.random.default_rng(3).standard_normal((4, 4), dtype=np.float32)
    loss_fns = (
        lambda out: torch.nn.functional.mse_loss(out, torch.from_numpy(target)),
        lambda out: paddle.nn.functional.mse_loss(out, paddle.to_tensor(target)),
    )
    base_optimizer = torch.optim.SGD(base.parameters(), lr=0.1)
    raw_optimizer = paddle.optimizer.SGD(learning_rate=0.1, parameters=raw.parameters())
    report = diff(base, raw, X, loss_fns=loss_fns, optimizers=(base_optimizer, raw_optimizer), steps=3)
    assert report.ok, report.first_divergence
    stages = {(c.step, c.kind) for c in report.comparisons}
    assert stages == {(s, k) for s in range(3) for k in ("forward", "loss", "backward", "grad", "weights")}
    # the weights really moved, identically on both sides
    np.testing.assert_allclose(base[0].weight.detach().numpy().T, raw[0].weight.numpy(), atol=1e-5)
    assert not np.allclose(base[0].weight.detach().numpy(), 0)


def test_an_optimizer_fault_is_found_at_the_weights_after_the_step() -> None:
    base, raw = mlp_torch(torch.nn.Tanh()), mlp_paddle(paddle.nn.Tanh())
    base_optimizer = torch.optim.SGD(base.parameters(), lr=0.1)
    raw_optimizer = paddle.optimizer.SGD(learning_rate=0.2, parameters=raw.parameters())

    def raw_step():  # a callable optimizer steps and clears the gradients itself
        raw_optimizer.step()
        raw_optimizer.clear_grad()

    report = diff(base, raw, X, optimizers=(base_optimizer, raw_step), steps=2)
    assert report.first_divergence.stage == "weights" and report.first_divergence.step == 0
    assert "'weight' differs after the optimizer step at base '2'" in report.first_divergence.message


def test_each_step_can_take_its_own_inputs_from_an_iterator() -> None:
    batches = [[X[0]], [X[0] * 2], [X[0] * 3]]
    base, raw = mlp_torch(torch.nn.ReLU()), mlp_paddle(paddle.nn.ReLU())
    report = diff(base, raw, iter(batches), steps=3, diff_phase="forward")
    assert report.ok
    outputs = {c.step: c for c in report.comparisons if c.base == "2"}
    assert sorted(outputs) == [0, 1, 2]
    with pytest.raises(InputError, match="ran out at step 3"):
        diff(base, raw, iter(batches), steps=4)


def test_diff_phase_selects_what_is_compared() -> None:
    base, raw = mlp_torch(torch.nn.ReLU()), mlp_paddle(paddle.nn.ReLU())
    forward = diff(base, raw, X, diff_phase="forward")
    assert {c.kind for c in forward.comparisons} == {"forward"}
    backward = diff(base, raw, X, diff_phase="backward")
    assert {c.kind for c in backward.comparisons} == {"loss", "backward", "grad"}
    with pytest.raises(InputError, match="diff_phase"):
        diff(base, raw, X, diff_phase="sideways")


def test_single_step_finds_every_diverging_layer_and_only_those() -> None:
    base = chain_torch(torch.nn.GELU(), torch.nn.LeakyReLU(0.1))
    raw = chain_paddle(paddle.nn.GELU(approximate=True), paddle.nn.LeakyReLU(0.2))  # two planted faults
    accumulated = diff(base, raw, WIDE, diff_phase="forward")
    assert tuple(accumulated.first_divergence) == ("1", "1", "forward")
    # the error spreads downstream, but only the layers that add their own are divergences
    assert {d.base for d in accumulated.divergences} == {"1", "3"}
    assert "4" in {c.base for c in accumulated.accumulated}
    single = diff(base, raw, WIDE, single_step=True)
    # forward: both faults at their layers; backward: the leaky ReLU's gradient reaches layer 2's output,
    # and the approximate GELU's derivative (off by ~1e-3 of the gradient's magnitude) layer 0's
    expected = [("1", "forward"), ("3", "forward"), ("2", "backward"), ("0", "backward")]
    assert [(d.base, d.stage) for d in single.divergences] == expected
    assert tuple(single.first_divergence) == ("1", "1", "forward")
    # the raw model got the base's activations: the layers after each fault agree
    later = [c for c in single.comparisons if c.kind == "forward" and c.base in ("2", "4")]
    assert later and all(c.ok for c in later)


def test_single_step_backward_feeds_base_gradients() -> None:
    base = chain_torch(torch.nn.Tanh(), torch.nn.LeakyReLU(0.1))
    raw = chain_paddle(paddle.nn.Tanh(), paddle.nn.LeakyReLU(0.2))
    report = diff(base, raw, [-np.abs(X[0])], single_step=True, diff_phase="backward")
    failing = {c.base for c in report.comparisons if c.kind == "backward" and not c.ok}
    # the leaky ReLU's backward scales negative inputs differently: the gradient reaching its input
    # (the output of layer 2) differs, and layer 1 and below get the base's gradient again
    assert failing == {"2"}, failing
    assert tuple(report.first_divergence) == ("2", "2", "backward")


class GlueTorch(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(8, 16), torch.nn.Linear(16, 4)

    def forward(self, x):
        return self.fc2(torch.nn.functional.gelu(self.fc1(x)))


class GluePaddle(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = paddle.nn.Linear(8, 16), paddle.nn.Linear(16, 4)

    def forward(self, x):
        return self.fc2(paddle.nn.functional.gelu(self.fc1(x), approximate=True))


def test_single_step_names_a_fault_between_layers_at_their_caller() -> None:
    # it used to be named at the next layer's input ("fc2", "input"), telling the user to look in its
    # caller's forward; now at the caller, as the default mode's replay names it
    report = diff(GlueTorch(), GluePaddle(), WIDE, single_step=True, diff_phase="forward")
    assert [(d.base, d.stage) for d in report.divergences] == [("", "forward")]
    assert tuple(report.first_divergence) == ("", "", "forward")
    message = report.first_divergence.message
    assert "input of base 'fc2'" in message and "right after base 'fc1'" in message, message
    assert tuple(diff(GlueTorch(), GluePaddle(), WIDE, diff_phase="forward").first_divergence) == ("", "", "forward")


class ResidualBlockTorch(torch.nn.Module):
    """ResNet's BasicBlock in miniature: one ``act`` called twice, the shortcut added between."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.act = torch.nn.Linear(8, 8), torch.nn.Linear(8, 8), torch.nn.ReLU()

    def forward(self, x):
        return self.act(self.fc2(self.act(self.fc1(x))) + x)


class ResidualBlockPaddle(paddle.nn.Layer):
    """The port, its shortcut left out."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.act = paddle.nn.Linear(8, 8), paddle.nn.Linear(8, 8), paddle.nn.ReLU()

    def forward(self, x):
        return self.act(self.fc2(self.act(self.fc1(x))))


def test_single_step_names_a_dropped_shortcut_at_the_innermost_block_as_the_default_mode_does() -> None:
    def models():
        base = torch.nn.Sequential(torch.nn.Linear(8, 8), ResidualBlockTorch(), torch.nn.Linear(8, 4))
        return base, paddle.nn.Sequential(paddle.nn.Linear(8, 8), ResidualBlockPaddle(), paddle.nn.Linear(8, 4))

    single = diff(*models(), X, single_step=True, diff_phase="forward")
    assert [tuple(d) for d in single.divergences] == [("1", "1", "forward")]
    assert "input of base '1.act' / raw '1.act' (call 1, input 0)" in single.first_divergence.message
    assert "right after base '1.fc2' / raw '1.fc2' agreed" in single.first_divergence.message
    assert tuple(diff(*models(), X, diff_phase="forward").first_divergence) == ("1", "1", "forward")


class AttentionTorch(torch.nn.Module):
    def __init__(self, q):
        super().__init__()
        self.q, self.k, self.o = q, torch.nn.Linear(8, 8), torch.nn.Linear(8, 8)

    def forward(self, x):
        return self.o(self.q(x) * self.k(x))


class AttentionPaddle(paddle.nn.Layer):
    def __init__(self, q):
        super().__init__()
        self.q, self.k, self.o = q, paddle.nn.Linear(8, 8), paddle.nn.Linear(8, 8)

    def forward(self, x):
        return self.o(self.q(x) * self.k(x))


def test_single_step_does_not_list_an_input_an_earlier_output_in_the_same_caller_explains() -> None:
    # the bug is in q; o's input differs because q's output did (code between), not another fault
    base = AttentionTorch(torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LeakyReLU(0.1)))
    raw = AttentionPaddle(paddle.nn.Sequential(paddle.nn.Linear(8, 8), paddle.nn.LeakyReLU(0.2)))
    report = diff(base, raw, X, single_step=True, diff_phase="forward")
    assert [c.ok for c in report.comparisons if c.base == "o" and c.kind == "input"] == [False]
    assert [tuple(d) for d in report.divergences] == [("q.1", "q.1", "forward")]


def test_single_step_handles_a_layer_called_several_times() -> None:
    class Shared(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(8, 8)
            self.act = torch.nn.ReLU()

        def forward(self, x):
            return self.act(self.fc(self.act(self.fc(x))))

    class SharedPaddle(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.fc = paddle.nn.Linear(8, 8)
            self.act = paddle.nn.ReLU()

        def forward(self, x):
            return self.act(self.fc(self.act(self.fc(x))))

    report = diff(Shared(), SharedPaddle(), X, single_step=True)
    assert report.ok, report.first_divergence
    calls = {(c.base, c.call) for c in report.comparisons if c.kind == "input"}
    assert {("fc", 0), ("fc", 1), ("act", 0), ("act", 1)} <= calls


# --- precision, AMP and in-place ops ------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_weights_compare_at_that_precision(dtype) -> None:
    # paddle's CPU kernels have no fp16/bf16 matmul: a low-precision torch model against fp32 paddle,
    # and against itself in fp32 (what a GPU bf16 port looks like)
    base = mlp_torch(torch.nn.GELU()).to(getattr(torch, dtype))
    report = diff(base, mlp_paddle(paddle.nn.GELU()), X)  # fp32 numpy inputs are cast to each model's dtype
    assert report.ok, report.first_divergence
    assert (report.settings["atol"], report.settings["rtol"]) == DEFAULT_TOLERANCES[dtype]
    reference = mlp_torch(torch.nn.LeakyReLU(0.1))
    assert diff(reference, mlp_torch(torch.nn.LeakyReLU(0.1)).to(getattr(torch, dtype)), X).ok
    # a fault larger than the precision is still found at its layer
    faulty = diff(reference, mlp_torch(torch.nn.LeakyReLU(0.3)).to(getattr(torch, dtype)), X)
    assert tuple(faulty.first_divergence) == ("1", "1", "forward")


def test_amp_runs_each_model_under_its_framework_autocast() -> None:
    report = diff(mlp_torch(torch.nn.GELU()), mlp_paddle(paddle.nn.GELU()), X, amp="bfloat16")
    assert report.ok and report.settings["amp"] == ["bfloat16", "bfloat16"]
    assert report.settings["atol"] == DEFAULT_TOLERANCES["bfloat16"][0]
    outputs = [c for c in report.comparisons if c.base == "0" and c.kind == "forward"]
    assert outputs and outputs[0].verdict.max_abs > 0  # torch's Linear really ran in bf16
    # paddle 3.3.1 has no bf16 CPU kernels: its autocast does nothing, and the report says so
    assert report.settings["amp_inactive"] == ["raw"]
    [inactive] = [finding for finding in report.findings if finding.code.value == "amp-inactive"]
    assert "raw model" in inactive.message and "did nothing" in inactive.message
    one_sided = diff(mlp_torch(torch.nn.GELU()), mlp_torch(torch.nn.GELU()), X, amp=(None, "bfloat16"))
    assert one_sided.ok and one_sided.settings["amp_inactive"] == []
    assert not [finding for finding in one_sided.findings if finding.code.value == "amp-inactive"]
    with pytest.raises(InputError, match="amp"):
        diff(mlp_torch(torch.nn.GELU()), mlp_paddle(paddle.nn.GELU()), X, amp="float8")


class InplaceTorch(torch.nn.Module):
    def __init__(self, act=None):
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(8, 8), torch.nn.Linear(8, 8)
        self.relu = torch.nn.ReLU(inplace=True)
        self.act = act or torch.nn.Identity()
        self.head = torch.nn.Linear(8, 2)

    def forward(self, x):
        h = self.relu(self.fc1(x))
        y = self.fc2(h)
        y += h  # in-place residual on a recorded output
        return self.head(self.act(y))


class InplacePaddle(paddle.nn.Layer):
    def __init__(self, act=None):
        super().__init__()
        self.fc1, self.fc2 = paddle.nn.Linear(8, 8), paddle.nn.Linear(8, 8)
        self.relu = paddle.nn.ReLU()
        self.act = act or paddle.nn.Identity()
        self.head = paddle.nn.Linear(8, 2)

    def forward(self, x):
        h = paddle.nn.functional.relu_(self.fc1(x))
        y = self.fc2(h)
        y.add_(h)  # in-place residual through paddle's *_ API
        return self.head(self.act(y))


@pytest.mark.parametrize("single_step", [False, True])
def test_inplace_ops_keep_forward_and_backward_comparisons_right(single_step) -> None:
    report = diff(InplaceTorch(), InplacePaddle(), X, single_step=single_step)
    assert report.ok, report.first_divergence
    kinds = {(c.base, c.kind) for c in report.comparisons}
    assert {("fc1", "forward"), ("fc1", "backward"), ("fc2", "backward"), ("head", "forward")} <= kinds
    for layer in ("fc1", "fc2"):  # recorded before the in-place ReLU / add overwrote them
        output = next(c for c in report.comparisons if c.base == layer and c.kind == "forward")
        assert output.verdict.max_abs < 1e-5
    faulty = diff(InplaceTorch(torch.nn.LeakyReLU(0.1)), InplacePaddle(paddle.nn.LeakyReLU(0.3)), [-X[0]])
    assert tuple(faulty.first_divergence) == ("act", "act", "forward")


@pytest.mark.parametrize("raw_framework", ["torch", "paddle"])
def test_raw_records_are_compared_as_they_were_when_recorded(raw_framework) -> None:
    """Comparisons run beside the model: a raw output changed in place later must not leak in."""
    from padiff_graph.run.engine import _comparer

    gate = threading.Event()

    class TorchNet(torch.nn.Module):
        def __init__(self, in_place):
            super().__init__()
            self.in_place = in_place
            self.fc1, self.fc2 = torch.nn.Linear(8, 8), torch.nn.Linear(8, 2)

        def forward(self, x):
            y = self.fc1(x)
            if self.in_place:
                y.add_(y)  # after fc1's output was recorded
                out = self.fc2(y)
                gate.set()  # only now may the queued comparisons start
                return out
            return self.fc2(y * 2)

    class PaddleNet(paddle.nn.Layer):
        def __init__(self, in_place):
            super().__init__()
            self.in_place = in_place
            self.fc1, self.fc2 = paddle.nn.Linear(8, 8), paddle.nn.Linear(8, 2)

        def forward(self, x):
            y = self.fc1(x)
            if self.in_place:
                y.add_(y)
                out = self.fc2(y)
                gate.set()
                return out
            return self.fc2(y * 2)

    base, raw = (PaddleNet(False), TorchNet(True)) if raw_framework == "torch" else (TorchNet(False), PaddleNet(True))
    _comparer().submit(gate.wait, 30)  # holds the comparison thread until the raw forward is over
    report = diff(base, raw, X)
    assert report.ok, report.first_divergence
    assert gate.is_set() and any(c.base == "fc1" and c.kind == "forward" for c in report.comparisons)


def test_single_step_feeds_a_raw_torch_model_with_inplace_relu() -> None:
    """A regression: the substituted input was a view, which ReLU(inplace=True) may not modify."""
    base = paddle.nn.Sequential(paddle.nn.Linear(8, 8), paddle.nn.ReLU(), paddle.nn.Linear(8, 2))
    raw = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(inplace=True), torch.nn.Linear(8, 2))
    report = diff(base, raw, X, single_step=True)
    assert report.ok, report.first_divergence


@pytest.mark.parametrize(
    "option",
    [
        {"memory_budget_mib": -1},
        {"atol": -1e-3},
        {"rtol": "tight"},
        {"mode": "exact"},
        {"steps": 0},
        {"amp": "int8"},
        {"diff_phase": "sideways"},
        {"random_ops": "ignore"},
        {"black_list": [(torch.nn.Linear, "everything")]},
        {"loss_fns": (lambda out: out.mean(),)},
    ],
)
def test_a_bad_option_is_refused_before_the_raw_model_changes(option) -> None:
    base, raw = mlp_torch(torch.nn.GELU()), mlp_paddle(paddle.nn.GELU())
    before = {name: value.numpy().copy() for name, value in raw.state_dict().items()}
    with pytest.raises(InputError):
        diff(base, raw, X, **option)
    after = raw.state_dict()
    assert all(np.array_equal(before[name], after[name].numpy()) for name in before)


@pytest.mark.parametrize("raw_framework", ["torch", "paddle"])
def test_large_raw_records_are_compared_beside_the_model_as_they_were_when_recorded(raw_framework) -> None:
    """Records past ``COMPARED_INLINE`` elements go to the helper thread: a raw output changed in place
    after it was recorded must not leak into its comparison there either (small ones are compared inline)."""
    from padiff_graph.run.engine import COMPARED_INLINE, _comparer

    gate = threading.Event()
    rows = COMPARED_INLINE // 8 + 1  # fc1's output holds more than COMPARED_INLINE elements

    def forward(self, x):
        y = self.fc1(x)
        if not self.in_place:
            return self.fc2(y * 2)
        y.add_(y)  # after fc1's output was recorded
        out = self.fc2(y)
        gate.set()  # only now may the queued comparisons start
        return out

    def build(framework, in_place):
        module = torch.nn if framework == "torch" else paddle.nn
        parent = module.Module if framework == "torch" else module.Layer
        net = type("Net", (parent,), {"forward": forward})()
        net.in_place, net.fc1, net.fc2 = in_place, module.Linear(8, 8), module.Linear(8, 2)
        return net

    base_framework = "paddle" if raw_framework == "torch" else "torch"
    x = [np.random.default_rng(1).standard_normal((rows, 8), dtype=np.float32)]
    _comparer().submit(gate.wait, 30)  # holds the comparison thread until the raw forward is over
    report = diff(build(base_framework, False), build(raw_framework, True), x)
    assert report.ok, report.first_divergence
    assert gate.is_set() and any(c.base == "fc1" and c.kind == "forward" for c in report.comparisons)


def test_an_inline_comparison_that_fails_raises_where_its_verdict_is_collected() -> None:
    """As a failure on the helper thread would: not inside the model's forward, where it would be
    reported as the model's own error."""
    from padiff_graph.run.engine import _now

    def broken():
        raise ValueError("cannot compare")

    verdict = _now(broken)
    with pytest.raises(ValueError, match="cannot compare"):
        verdict.result()
