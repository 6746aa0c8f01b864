"""A torch model's step runs on a worker thread beside a paddle model's (core.runtime.run_sides): the
verdicts are those of one step after the other, whichever side gets ahead, and errors are the same;
the weight copy's verification of trainable tensors runs there too, after the base step. Replays capture
every suspect's call in one run of each model."""

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import paddle
import pytest
import torch
from conftest import load_example

import padiff_graph as pg
from padiff_graph.core.runtime import BACKGROUND_NICENESS, run_sides
from padiff_graph.core.tree import tensor_bytes
from padiff_graph.errors import AssignError, ModelRunError
from padiff_graph.frameworks import adapter_for, paddle_adapter, side_beside, worker_side
from padiff_graph.frameworks.export import export_model
from padiff_graph.frameworks.inputs import prepare
from padiff_graph.frameworks.paddle_adapter import PaddleAdapter
from padiff_graph.frameworks.tracing import trace_forward
from padiff_graph.run import engine
from padiff_graph.run.engine import Side
from padiff_graph.run.numerics import Mode, Tolerance, Verdict
from padiff_graph.run.randomness import RandomCall, RandomWatch
from padiff_graph.run.replay import Replays, capture_calls
from padiff_graph.run.results import Comparison
from padiff_graph.run.spill import Spill


class TorchNet(torch.nn.Module):
    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        super().__init__()
        self.first = torch.nn.Linear(8, 16)
        self.second = torch.nn.Linear(16, 4)
        self.delay, self.fail = delay, fail
        self.threads: set[str] = set()

    def forward(self, x):
        self.threads.add(threading.current_thread().name)
        hidden = torch.relu(self.first(x))
        time.sleep(self.delay)  # the raw side runs ahead: its records wait for the base's
        if self.fail and torch.is_grad_enabled():  # the run's step, not the trace
            raise RuntimeError("a bug in the base forward")
        return self.second(hidden)


class PaddleNet(paddle.nn.Layer):
    def __init__(self, planted: bool = False) -> None:
        super().__init__()
        self.first = paddle.nn.Linear(8, 16)
        self.second = paddle.nn.Linear(16, 4)
        self.planted = planted
        self.threads: set[str] = set()

    def forward(self, x):
        self.threads.add(threading.current_thread().name)
        hidden = paddle.nn.functional.relu(self.first(x))
        return self.second(hidden * 1.01 if self.planted else hidden)


INPUTS = {"x": np.random.default_rng(0).standard_normal((4, 8), dtype=np.float32)}


@pytest.mark.parametrize("planted", [False, True])
def test_a_base_step_behind_the_raw_one_gives_the_same_verdict(planted: bool) -> None:
    """The raw side's records come first; each waits for its base record instead of going uncompared."""
    base, raw = TorchNet(delay=0.05), PaddleNet(planted)
    report = pg.diff(base, raw, INPUTS)
    # the trace and the replays run both models here; the diff's step runs the base beside
    assert "padiff_graph_side_0" in base.threads and raw.threads == {threading.current_thread().name}
    compared = {(c.base, c.stage) for c in report.comparisons}
    assert {("first", "forward"), ("second", "forward"), ("first", "backward")} <= compared
    assert not report.unproduced
    if planted:
        # the scaling sits in the root's own forward, between the layers: the root is named
        assert (report.first_divergence.base, report.first_divergence.stage) == ("", "forward")
    else:
        assert report.ok


def test_two_torch_models_run_one_after_the_other() -> None:
    base, raw = TorchNet(), TorchNet()
    assert pg.diff(base, raw, INPUTS).ok
    assert base.threads == raw.threads == {threading.current_thread().name}


def test_a_base_forward_that_fails_beside_the_raw_run_is_named_as_before() -> None:
    base, raw = TorchNet(fail=True), PaddleNet()
    with pytest.raises(ModelRunError, match=r"the base model's forward failed in layer <root>: .*a bug in the base"):
        pg.diff(base, raw, INPUTS)


def test_a_paddle_base_and_a_torch_raw_run_beside_too() -> None:
    example = load_example("gelu_fault")
    torch_model, inputs = example.base()
    paddle_model, _ = example.raw()
    report = pg.diff(paddle_model, torch_model, inputs)
    assert (report.first_divergence.base, report.first_divergence.stage) == ("mlp.act", "forward")


def test_an_array_held_again_after_its_reader_took_it_is_kept_again() -> None:
    """The raw side may take a record before the base side holds the same tensor under its next key."""
    with Spill(budget=float("inf")) as spill:
        array = np.arange(6.0)
        first = spill.hold(array)
        assert spill.take(first) is array
        second = spill.hold(array)  # the same object, after its only reader let go
        assert second is not first and spill.take(second) is array


def test_random_calls_are_listed_base_first_whichever_side_ran_into_one_first() -> None:
    watch = RandomWatch(disable=True)
    watch.found += [RandomCall("raw", "drop", "paddle.nn.functional.dropout", True)]
    watch.found += [RandomCall("base", "drop", "torch.nn.functional.dropout", True)]
    assert [(f.base, f.raw) for f in watch.findings()] == [("drop", None), (None, "drop")]


def test_a_copy_into_memory_that_is_not_the_tensors_stops_the_diff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Our paddle adapter made to hand out a copy of one tensor's memory: the copy lands there and reads back
    right, but the tensor does not show it. What the verification through the framework is there to catch."""
    base, raw = TorchNet(), PaddleNet()
    host_memory = PaddleAdapter.host_memory

    def elsewhere(adapter: PaddleAdapter, tensor: paddle.Tensor) -> np.ndarray | None:
        memory = host_memory(adapter, tensor)
        return memory.copy() if memory is not None and memory.shape == (16, 4) else memory

    monkeypatch.setattr(PaddleAdapter, "host_memory", elsewhere)
    with pytest.raises(AssignError, match=r"raw tensor 'second.weight' does not hold the copied values"):
        pg.diff(base, raw, INPUTS)


def traced(model, activation_bytes: int):
    """The model's tree as a trace that measured ``activation_bytes`` would leave it."""
    tree = export_model(model, INPUTS)
    tree.graph["trace"] = replace(tree.graph["trace"], activation_bytes=activation_bytes)
    return adapter_for(model), model, tree


@contextmanager
def paddle_threads(count: int) -> Iterator[None]:
    """Paddle's CPU kernels on ``count`` threads for the block (paddle has no getter: our adapter reads it)."""
    before = PaddleAdapter().cpu_threads()
    paddle.base.core.set_num_threads(count)
    try:
        yield
    finally:
        paddle.base.core.set_num_threads(before)


def test_paddles_cpu_threads_are_read_from_its_openmp_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    with paddle_threads(1):
        assert PaddleAdapter().cpu_threads() == 1
    with paddle_threads(2):
        assert PaddleAdapter().cpu_threads() == 2
    monkeypatch.setattr(paddle_adapter, "_openmp_runtime", lambda: None)  # a wheel without it: every core
    assert PaddleAdapter().cpu_threads() == os.cpu_count()


def test_a_torch_model_goes_beside_a_paddle_one_on_one_core_when_its_activations_are_small() -> None:
    """Paddle's CPU kernels on one thread leave a core idle for the torch step; activations past 4/3 of the
    model's weights would make both steps' at once cost more than a quarter more memory (4 W + 2 A against
    4 W + A, the weights and gradients of both models and the activations of one step or two)."""
    torch_model, paddle_model = TorchNet(), PaddleNet()
    weights = tensor_bytes(export_model(torch_model))
    with paddle_threads(1):
        assert side_beside(*traced(torch_model, 100), *traced(paddle_model, 100)) == "base"
        assert side_beside(*traced(paddle_model, 100), *traced(torch_model, 100)) == "raw"
        assert side_beside(*traced(torch_model, weights * 4 // 3), *traced(paddle_model, 100)) == "base"
        assert side_beside(*traced(torch_model, weights * 4 // 3 + 1), *traced(paddle_model, 100)) is None
        assert side_beside(*traced(torch_model, 100), *traced(TorchNet(), 100)) is None
        untraced = adapter_for(torch_model), torch_model, export_model(torch_model)
        assert side_beside(*untraced, *traced(paddle_model, 100)) is None
    with paddle_threads(2):  # paddle's step would take the core the torch step was to have
        assert side_beside(*traced(torch_model, 100), *traced(paddle_model, 100)) is None
        assert worker_side(adapter_for(torch_model), torch_model, adapter_for(paddle_model), paddle_model) is None


def test_the_trace_measures_the_activations_of_the_whole_batch() -> None:
    """Every innermost layer's output bytes from the one-sample slice, scaled to the batch of 4."""
    model = TorchNet()
    trace = trace_forward(adapter_for(model), model, prepare(adapter_for(model), model, INPUTS), measure=True)
    assert trace.order == ["", "first", "second"]
    assert trace.activation_bytes == 4 * (16 + 4) * 4  # float32 outputs of first (16) and second (4), batch 4
    assert export_model(model, INPUTS).graph["trace"].activation_bytes is None  # the order alone: not measured


def test_the_torch_trace_runs_beside_the_paddle_one_and_alone_measures_its_activations() -> None:
    """The trace (no gradients) is the first forward of each model: torch's on the worker thread, on one
    sample (its activations decide whether its step runs beside), paddle's here on an empty batch."""
    base, raw = TorchNet(), PaddleNet()
    runs: list[tuple[bool, str, int]] = []
    base.first.register_forward_pre_hook(
        lambda _, args: runs.append((torch.is_grad_enabled(), current_thread_name(), args[0].shape[0]))
    )
    raw_batches: list[int] = []
    raw.first.register_forward_pre_hook(lambda _, args: raw_batches.append(args[0].shape[0]))
    pg.diff(base, raw, INPUTS)
    assert runs[0] == (False, "padiff_graph_side_0", 1)
    assert raw_batches[0] == 0


def current_thread_name() -> str:
    return threading.current_thread().name


def test_the_torch_step_beside_keeps_torchs_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """Torch's thread count is left alone on the worker thread. With paddle's OpenMP runtime loaded beside
    torch's, changing it there (one thread fewer, then back) made torch's CPU BatchNorm backward on the main
    thread wrong afterwards: the real-model suite's correct MobileNetV2 port (paddle base, torch raw, single
    step) diverged at features.3 after the torch -> paddle rows."""
    base, raw, counts = TorchNet(), PaddleNet(), []
    base.register_forward_pre_hook(lambda _, __: counts.append((current_thread_name(), torch.get_num_threads())))
    set_threads = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: pytest.fail(f"torch.set_num_threads({n}) called"))
    assert pg.diff(base, raw, INPUTS).ok
    monkeypatch.setattr(torch, "set_num_threads", set_threads)
    beside = [threads for thread, threads in counts if thread == "padiff_graph_side_0"]
    assert beside and set(beside) == {torch.get_num_threads()}


class Counting(torch.nn.Module):
    """A model whose forward runs are counted."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.runs = model, 0

    def forward(self, x):
        self.runs += 1
        return self.model(x)


def test_replays_of_several_layers_capture_them_in_one_run_of_each_model() -> None:
    """A check that replays several suspects captures all their calls in one run per model, not one each."""
    base, raw = Counting(TorchNet()), PaddleNet()
    raw_calls = []
    raw.register_forward_pre_hook(lambda layer, args: raw_calls.append(1))
    pg.assign_weights(base, raw)
    sides = [Side(adapter_for(model), model, name) for model, name in ((base, "base"), (raw, "raw"))]
    arguments = tuple(prepare(side.adapter, side.model, INPUTS) for side in sides)
    tolerance = Tolerance.chosen(None, None, Mode.STRICT, ["float32"])
    replays = Replays(*sides, arguments, tolerance, export_model(raw), {})
    failing = [
        Comparison(f"model.{path}", path, "forward", 0, 0, Verdict(False, 1.0, 1.0)) for path in ("first", "second")
    ]
    replays.capture(failing)
    assert base.runs == 1 and len(raw_calls) == 1
    assert all(replays.replay(comparison).ok for comparison in failing)  # the weights agree: each layer alone too
    assert base.runs == 1 and len(raw_calls) == 1  # nothing captured again


@pytest.mark.parametrize("framework", ["torch", "paddle"])
def test_a_capture_stops_the_forward_once_every_wanted_call_is_in(framework: str) -> None:
    model = TorchNet() if framework == "torch" else PaddleNet()
    ran = []
    hook = model.second.register_forward_pre_hook(lambda layer, args: ran.append("second"))
    side = Side(adapter_for(model), model, "base")
    found = capture_calls(side, prepare(side.adapter, model, INPUTS), [("first", 0, 0)])
    hook.remove()
    (args, _), output, dtype = found[("first", 0, 0)]
    assert args[0].shape == (4, 8) and output.shape == (4, 16) and dtype == "float32" and ran == []


class SharedTorch(torch.nn.Module):
    """One linear layer applied twice: its weight's gradient sums two uses."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(8, 8)

    def forward(self, x):
        return self.layer(torch.tanh(self.layer(x)))


class SharedPaddle(paddle.nn.Layer):
    def __init__(self) -> None:
        super().__init__()
        self.layer = paddle.nn.Linear(8, 8)

    def forward(self, x):
        return self.layer(paddle.tanh(self.layer(x)))


@pytest.mark.parametrize("model", [SharedTorch, SharedPaddle])
def test_a_parameters_accumulated_gradient_hook_fires_once_with_both_uses_summed(model) -> None:
    layer = model()
    adapter = adapter_for(layer)
    weight = adapter.named_tensors(layer)["layer.weight"]
    seen = []
    handle = adapter.watch_accumulated_grad(weight, lambda grad: seen.append(adapter.to_numpy(grad)))
    x = np.random.default_rng(0).standard_normal((4, 8), dtype=np.float32)
    adapter.backward(adapter.mean_loss(layer(adapter.to_inputs(layer, {"x": x})["x"])))
    handle.remove()
    [grad] = seen  # one call, after both uses
    assert np.array_equal(grad, adapter.grad(weight))
    adapter.backward(adapter.mean_loss(layer(adapter.to_inputs(layer, {"x": x})["x"])))
    assert len(seen) == 1  # removed


def test_parameter_gradients_are_compared_while_the_raw_backward_goes_on(monkeypatch) -> None:
    """Each raw parameter's gradient is handed over as soon as its backward accumulated it (both uses of the
    shared layer summed), not looked up after the backward; the verdicts are those of the final gradients."""
    handed, verdict = [], engine.RawChecker._gradient_verdict

    def recorded(checker, tensor, base_name, *args):
        handed.append(base_name)
        return verdict(checker, tensor, base_name, *args)

    monkeypatch.setattr(engine.RawChecker, "_gradient_verdict", recorded)
    torch.manual_seed(0)
    report = pg.diff(SharedTorch(), SharedPaddle(), {"x": INPUTS["x"]})
    assert report.ok
    grads = [c for c in report.comparisons if c.kind == "grad"]
    assert {c.stage for c in grads} == {"grad:weight", "grad:bias"} and all(c.ok for c in grads)
    assert sorted(handed) == ["layer.bias", "layer.weight"]


def test_a_gradient_is_compared_once_the_base_backward_has_it_not_once_the_base_step_is_over(monkeypatch) -> None:
    """The base side's step is over only once the raw side compared a gradient: had the comparison waited
    for it, it would not come."""
    compared, verdict = threading.Event(), engine.RawChecker._gradient_verdict
    came_first, done = [], engine.BaseStore.base_done

    def compared_now(checker, *args):
        result = verdict(checker, *args)
        compared.set()
        return result

    def late(store) -> None:
        came_first.append(compared.wait(timeout=5))
        done(store)

    monkeypatch.setattr(engine.RawChecker, "_gradient_verdict", compared_now)
    monkeypatch.setattr(engine.BaseStore, "base_done", late)
    with paddle_threads(1):
        report = pg.diff(TorchNet(), PaddleNet(), INPUTS)
    assert report.ok and came_first == [True]


def test_gradients_the_helper_thread_has_not_started_are_compared_here_after_the_raw_step(monkeypatch) -> None:
    """The helper thread is kept busy through the raw backward: the gradients queued behind it are taken back
    and compared on this thread once the raw step is over, the helper let go after."""
    gate, threads = threading.Event(), []
    backward, take = PaddleAdapter.backward, engine.RawChecker._take_queued_gradients
    verdict = engine.RawChecker._gradient_verdict

    def busy_backward(adapter, loss) -> None:
        engine._comparer().submit(gate.wait, 10)
        backward(adapter, loss)

    def take_then_let_go(checker) -> None:
        take(checker)
        gate.set()

    def recorded(checker, *args):
        threads.append(current_thread_name())
        return verdict(checker, *args)

    monkeypatch.setattr(PaddleAdapter, "backward", busy_backward)
    monkeypatch.setattr(engine.RawChecker, "_take_queued_gradients", take_then_let_go)
    monkeypatch.setattr(engine.RawChecker, "_gradient_verdict", recorded)
    report = pg.diff(TorchNet(), PaddleNet(), INPUTS)
    assert report.ok and len([c for c in report.comparisons if c.kind == "grad"]) == 4
    assert threads == [current_thread_name()] * 4


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own nice level is Linux's")
def test_the_side_beside_and_the_comparisons_run_behind_the_main_threads_model() -> None:
    """Where cores are short, the model on the main thread keeps its core; the helpers take what is left."""

    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    main = niceness()
    beside = run_sides(lambda: niceness(), lambda: niceness(), "base")
    compared = engine._comparer().submit(niceness).result()
    assert beside == (min(19, main + BACKGROUND_NICENESS), main)
    assert compared == min(19, main + BACKGROUND_NICENESS)


def test_the_base_side_holds_the_gradients_it_reads_as_views_and_leaves_the_rest_to_the_steps_end() -> None:
    """A bfloat16 tensor's gradient would be a widened copy held to the step's end (so would a GPU model's):
    not held early; its verdict waits for the base step, as before."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4).to(torch.bfloat16))
    adapter = adapter_for(model)
    with Spill(budget=float("inf")) as spill:
        store = engine.BaseStore(adapter, Mode.STRICT, engine.Plan(), keep_grads=False, spill=spill)
        handles = store.watch_gradients(model)
        x = torch.randn(2, 4)
        model[1](model[0](x).to(torch.bfloat16)).float().mean().backward()
        for handle in handles:
            handle.remove()
        assert np.array_equal(store.accumulated_gradient("0.weight"), model[0].weight.grad.numpy())
        store.base_done()
        assert store.accumulated_gradient("1.weight") is None  # the step is over: read from the tensor then
