"""One layer pair run alone on the base layer's inputs of one call: the evidence the verdict checks use.

The layer's inputs and output at that call come from the run itself where it kept them
(:mod:`padiff_graph.run.kept_calls`: the suspects and the first failing record); otherwise both
models run once more without gradients to capture them (:func:`capture_calls`). The raw layer
then runs alone on its own inputs, each fed the base input that corresponds to it as single-step
mode feeds them (:mod:`padiff_graph.run.feeding`; HF's and paddleformers' decoder layers take
their tensors in other orders and forms), and its output is judged against the base's
(:meth:`Replays.replay`). :meth:`Replays.in_float32` runs both layers in float32 on the same
inputs, the base's low-precision parameters widened losslessly for it: what is left is not
precision. :meth:`Replays.inputs_agree` says whether the raw layer's inputs are the base's up to
noise.
:mod:`padiff_graph.run.confirm` decides what the evidence means.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from functools import partial
from itertools import count
from typing import Any

import numpy as np

from padiff_graph.core.runtime import run_sides
from padiff_graph.core.tree import ModelTree
from padiff_graph.frameworks.base import FrameworkAdapter, iter_tensors, map_tensors
from padiff_graph.frameworks.inputs import CallArguments
from padiff_graph.frameworks.tracing import hooks
from padiff_graph.knowledge.families import random_in_training, training_statistics
from padiff_graph.run.activations import BuiltinActivation
from padiff_graph.run.engine import Side
from padiff_graph.run.feeding import corresponding_input, fed_value
from padiff_graph.run.kept_calls import Captured, KeptCalls
from padiff_graph.run.numerics import LOW_PRECISION, Tolerance, Verdict
from padiff_graph.run.results import Comparison


@contextmanager
def statistics_kept(*sides: tuple[FrameworkAdapter, Any, ModelTree]) -> Iterator[None]:
    """Each model's training-mode statistics (persistent buffers: BatchNorm's running mean and variance) as they
    were, put back when the block ends: the replays and checks inside it run the models again, and leave no
    trace of it. In training mode the outputs come from the batch, so a rerun's are the run's."""
    kept = []
    for adapter, model, tree in sides:
        tensors = adapter.named_tensors(model)
        kept.append((adapter, model, {name: adapter.to_numpy(tensors[name]) for name in training_statistics(tree)}))
    try:
        yield
    finally:
        for adapter, model, values in kept:
            tensors = adapter.named_tensors(model)  # looked up again: a run may have put new tensors in their place
            for name, value in values.items():
                adapter.write(tensors[name], value)


class Replays:
    """Single layer pairs replayed after a run: both models, their first step's inputs, the run's tolerance
    and built-in activations. Each failing call is captured once, however many questions are asked of it."""

    def __init__(
        self,
        base: Side,
        raw: Side,
        arguments: tuple[CallArguments, ...],
        tolerance: Tolerance,
        raw_tree: ModelTree,
        activations: Mapping[str, BuiltinActivation],
        beside: str | None = None,
        kept: KeptCalls | None = None,
    ) -> None:
        """``beside``: the side whose captures run on a worker thread beside the other's (``Plan.beside``);
        ``kept``: the calls the run kept (:mod:`padiff_graph.run.kept_calls`), taken before any rerun."""
        self.base, self.raw, self.arguments, self.tolerance = base, raw, arguments, tolerance
        self.raw_tree, self.activations, self.beside, self.kept = raw_tree, activations, beside, kept
        self._calls: dict[tuple[str, str, int, int, int], _Call | None] = {}

    def replayable(self, raw_path: str) -> bool:
        """Whether the raw layer can run alone and give the run's output again: one layer of the tree (a fused
        layer's parts are not), not random (dropout in training mode). Training-mode statistics a replay
        moves are put back after (:func:`statistics_kept`)."""
        return raw_path in self.raw_tree and not random_in_training(self.raw_tree, raw_path)

    def replay(self, failing: Comparison) -> Verdict | None:
        """The raw layer run alone on the base layer's inputs of the failing call, against the base output
        (after the built-in activation on the side whose layer does not apply it inside, as the run compared
        them); ``None`` where the inputs cannot be carried over or the layer fails on them."""
        call = self._call(failing)
        if call is None:
            return None
        alone = _raw_alone(self.raw, failing.raw, call, failing.index)
        return None if alone is None else self._judged(failing, self.tolerance, call.output, alone, call.dtype)

    def in_float32(self, failing: Comparison, strict: bool = False) -> Verdict | None:
        """Both layers run alone in float32 on the base layer's inputs of the failing call, compared under the
        run's noise floor (``strict``: float32's); ``None`` where neither output is below float32, a layer
        cannot run so, or the user fixed ``atol``/``rtol``."""
        if self.tolerance.fixed:  # elementwise bounds the user chose: the lower precision's rounding is theirs
            return None
        call = self._call(failing)
        if call is None:
            return None
        widened = _alone(self.base, failing.base, call.inputs, failing.index, widen=True)
        alone = _raw_alone(self.raw, failing.raw, call, failing.index, widen=True)
        if widened is None or alone is None or not {call.dtype, alone[1]} & LOW_PRECISION:
            return None
        if strict:
            return self._judged(failing, replace(self.tolerance, context=()), widened[0], alone, widened[1])
        return self._judged(failing, self.tolerance, widened[0], alone, call.dtype)

    def inputs_agree(self, failing: Comparison, before: float) -> bool:
        """Whether each input tensor of the raw layer at the failing call holds one of the base layer's (base
        inputs the raw layer does not take, such as HF's ``cache_position``, aside) within the noise floor, or
        within :data:`NOISE_GROWTH` times what the layers before its call reach (``before``): noise passed
        on."""
        call = self._call(failing)
        return call is not None and call.input_error <= max(NOISE_GROWTH * before, failing.verdict.floor)

    def capture(self, failing: Iterable[Comparison]) -> None:
        """Capture the calls of every record in ``failing`` not captured yet, in one run of each model: the
        records a check will replay one after the other, known up front. A call the run kept is taken as it is."""
        wanted = {_key(comparison): comparison for comparison in failing if _key(comparison) not in self._calls}
        for key, comparison in list(wanted.items()):
            kept = None if self.kept is None else self.kept.captured(comparison.base, comparison.call, comparison.index)
            if kept is not None:
                self._calls[key] = _call(*kept, self.tolerance)
                del wanted[key]
        if not wanted:
            return
        base, raw = run_sides(
            partial(capture_calls, self.base, self.arguments[0], [(c.base, c.call, c.index) for c in wanted.values()]),
            partial(capture_calls, self.raw, self.arguments[1], [(c.raw, c.call, c.index) for c in wanted.values()]),
            self.beside,
        )
        for key, comparison in wanted.items():
            base_call = base.get((comparison.base, comparison.call, comparison.index))
            raw_call = raw.get((comparison.raw, comparison.call, comparison.index))
            raw_inputs = None if raw_call is None else raw_call[0]
            self._calls[key] = None if base_call is None else _call(base_call, raw_inputs, self.tolerance)

    def _call(self, failing: Comparison) -> _Call | None:
        self.capture([failing])
        return self._calls[_key(failing)]

    def _judged(
        self, failing: Comparison, tolerance: Tolerance, expected: np.ndarray, alone: tuple[np.ndarray, str], dtype: str
    ) -> Verdict:
        """The base layer's output against the raw layer's (``alone``: its output and the dtype it ran in),
        the built-in activation applied on the side whose layer does not apply it inside."""
        replayed, raw_dtype = alone
        activation = self.activations.get(failing.base)
        if activation is not None and activation.inside == "base":
            replayed = activation.apply(replayed)
        elif activation is not None:
            expected = activation.apply(expected)
        return tolerance.verdict(expected, replayed, dtype, raw_dtype)


@dataclass(frozen=True)
class _Call:
    """The failing call as the base ran it (its inputs, as arrays, and its output) and the raw layer's own
    inputs with each fed the base input that corresponds to it (``input_error``: the largest scaled error
    between a raw input and the base input feeding it; infinite where one is not fed)."""

    inputs: Any
    output: np.ndarray
    dtype: str
    fed: Any
    input_error: float


def _key(failing: Comparison) -> tuple[str, str, int, int, int]:
    return failing.base, failing.raw, failing.step, failing.call, failing.index


def _call(captured: Captured, raw_inputs: Any, tolerance: Tolerance) -> _Call:
    """The failing call of both layers, as kept from the run or captured from a rerun of each model
    (``raw_inputs``: the raw layer's arguments at it, ``None`` where the raw model does not reach that
    call); the raw layer's inputs fed as single-step mode feeds them (:mod:`padiff_graph.run.feeding`:
    HF's and paddleformers' decoder layers take their tensors in other orders and forms), or the base's
    as they are where it has none (a raw input no base input fits keeps its own value, as in single-step
    mode)."""
    inputs, output, dtype = captured
    if raw_inputs is None:
        return _Call(inputs, output, dtype, inputs, float("inf"))
    candidates = {i: (array, str(array.dtype)) for i, array in enumerate(iter_tensors(inputs, _is_array))}
    positions = count()
    errors: list[float] = []

    def feed(array: np.ndarray) -> np.ndarray:
        position = corresponding_input(array, next(positions), str(array.dtype), candidates, tolerance)
        fed = None if position is None else fed_value(candidates[position][0], tuple(array.shape))
        if position is None or fed is None:
            errors.append(float("inf"))
            return array
        value_dtype = candidates.pop(position)[1]
        floating = np.issubdtype(array.dtype, np.floating)
        agree = tolerance.verdict(fed, array, value_dtype, str(array.dtype)).scaled if floating else 0.0
        errors.append(agree if floating or np.array_equal(fed, array) else float("inf"))
        return fed

    fed = map_tensors(raw_inputs, _is_array, feed)
    return _Call(inputs, output, dtype, fed, max(errors, default=0.0))


def _raw_alone(raw: Side, path: str, call: _Call, index: int, widen: bool = False) -> tuple[np.ndarray, str] | None:
    """:func:`_alone` for the raw layer on its fed inputs, or, where it fails on them or gives an output of
    another size (an expert whose own input holds other routed rows), on the base's inputs as they are."""
    for inputs in (call.fed, call.inputs):
        alone = _alone(raw, path, inputs, index, widen)
        if alone is not None and alone[0].size == call.output.size:
            return alone
    return None


def _alone(side: Side, path: str, inputs: Any, index: int, widen: bool = False) -> tuple[np.ndarray, str] | None:
    """Output ``index`` of ``side``'s layer at ``path`` run alone on ``inputs`` (arrays), and its dtype:
    under the side's autocast, or with ``widen`` in float32 (:meth:`full_precision`, no autocast)."""
    adapter = side.adapter
    layer = adapter.named_layers(side.model).get(path)
    if layer is None:  # a fused layer's parts
        return None
    try:
        with adapter.full_precision(layer) if widen else nullcontext():
            holder = layer if widen else side.model  # whose parameters' dtype the inputs take
            args, kwargs = map_tensors(
                inputs, lambda v: isinstance(v, np.ndarray), lambda a: adapter.to_inputs(holder, {"v": a})["v"]
            )
            with adapter.no_grad(), nullcontext() if widen else adapter.autocast(side.model, side.amp):
                outputs = list(iter_tensors(layer(*args, **kwargs), adapter.is_tensor))
            if index >= len(outputs):
                return None
            return adapter.to_numpy(outputs[index]), adapter.dtype_name(outputs[index])
    except Exception:  # the base's inputs may not fit the layer (framework objects in them): no replay
        return None


#: How many times the largest error before a call its input's error may be and still be only that noise
#: passed on: it grows at most 1.8x from one correct layer to the next (measured for
#: :data:`~padiff_graph.run.numerics.GROWTH_LIMIT`); a fault between layers shows at 48x or more.
NOISE_GROWTH = 2.0


def _is_array(value: object) -> bool:
    return isinstance(value, np.ndarray)


def capture_calls(
    side: Side, arguments: CallArguments, wanted: list[tuple[str, int, int]]
) -> dict[tuple[str, int, int], Captured]:
    """Each wanted (layer, call, output index): the layer's inputs (tensors as arrays) and output at that call,
    from one run without gradients; missing where the layer is not one of the model (a fused layer's parts),
    that call does not come, or the run fails. The run stops once every wanted call is captured."""
    adapter = side.adapter
    layers = adapter.named_layers(side.model)
    calls: dict[str, dict[int, set[int]]] = {}  # layer -> call -> output indices
    for path, call, index in wanted:
        if path in layers:
            calls.setdefault(path, {}).setdefault(call, set()).add(index)
    found: dict[tuple[str, int, int], Captured] = {}
    count = sum(len(indices) for by_call in calls.values() for indices in by_call.values())
    handles = []
    for path, indices in calls.items():
        layer, capture = layers[path], _LayerCalls(adapter, path, indices, found, count)
        handles += [adapter.add_input_hook(layer, capture.enter), adapter.add_forward_hook(layer, capture.leave)]
    try:
        with hooks(handles), adapter.no_grad(), adapter.autocast(side.model, side.amp):
            side.model(*arguments.args, **arguments.kwargs)
    except _AllCaptured:
        pass  # the rest of the forward is not needed
    except Exception:  # the model ran this forward before: a failure now only means no replay
        return {}
    return found


class _AllCaptured(Exception):
    """Raised by the hook that captured the last wanted call: the rest of the forward is not needed."""


class _LayerCalls:
    """Hooks on one layer keeping its inputs and the wanted outputs at the wanted calls (:func:`capture_calls`)."""

    def __init__(
        self,
        adapter: FrameworkAdapter,
        path: str,
        indices: Mapping[int, set[int]],
        found: dict[tuple[str, int, int], Captured],
        count: int,
    ) -> None:
        """``count``: the calls wanted from every hooked layer (all captured: :class:`_AllCaptured`)."""
        self.adapter, self.path, self.indices, self.found, self.count = adapter, path, indices, found, count
        self.call = 0
        self.inputs: Any = None

    def enter(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self.call in self.indices:
            self.inputs = map_tensors((args, kwargs), self.adapter.is_tensor, self.adapter.to_numpy)

    def leave(self, output: Any) -> None:
        if self.call in self.indices and self.inputs is not None:
            outputs = list(iter_tensors(output, self.adapter.is_tensor))
            for index in self.indices[self.call]:
                if index < len(outputs):
                    array, dtype = self.adapter.to_numpy(outputs[index]), self.adapter.dtype_name(outputs[index])
                    self.found[(self.path, self.call, index)] = (self.inputs, array, dtype)
        self.inputs = None
        self.call += 1
        if len(self.found) == self.count:
            raise _AllCaptured
