"""The layer calls a one-step diff's replays will ask for, kept from the run itself.

A replay (:mod:`padiff_graph.run.replay`) runs one raw layer alone on the base layer's inputs of one
call. Capturing those inputs by running both models again costs a whole forward of each: paddle's CPU
forward of a ResNet-50 is a third of its training step. The run already copies every layer input and
output of both sides to compare them; :class:`KeptCalls` holds on, of those, to the calls the checks
will ask for, told as the verdicts come in record order: the inherited-looking forward records that grew
most over the largest error before them (the ranking of :func:`padiff_graph.run.results.suspects`), and
the first forward record that fails outright with the calls around it
(:func:`padiff_graph.run.confirm.confirmed` replays it, then, where it agrees alone, its callers).
Each is the call as the run saw it: a copy taken as the layer ran, not a rerun's. A call it did not keep
(another call of a caller, a run past :data:`KEPT_BYTES`) is captured by a rerun, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import count
from typing import Any

import numpy as np

from padiff_graph.frameworks.base import FrameworkAdapter, iter_tensors, map_tensors
from padiff_graph.run.hooks import RecordKey
from padiff_graph.run.numerics import GROWTH_LIMIT
from padiff_graph.run.results import REPLAY_SUSPECTS, Comparison

#: A captured call: the layer's inputs (``(args, kwargs)``, tensors as arrays), its output at the
#: record's index, and that output's dtype.
Captured = tuple[Any, np.ndarray, str]

#: Bytes of copies held for calls whose verdicts have not come yet and for the calls kept: past it,
#: nothing more is kept and the replays rerun the models (the open layer calls of a large transformer at
#: a long sequence). A ResNet-50 at batch 8 at 224² holds 190 MiB at most: on both sides, the open blocks' inputs
#: and those of the few calls whose verdicts the helper thread is still computing.
KEPT_BYTES = 256 << 20

Call = tuple[str, int]  # (base path, call)
Output = tuple[str, int, int]  # (base path, call, output index)


class _Tensor:
    """Where a tensor sat in a layer call's arguments (:meth:`KeptCalls.started`)."""


_TENSOR = _Tensor()


class KeptCalls:
    """The layer calls a one-step diff's replays will ask for, kept as its run goes.

    The base and raw :class:`~padiff_graph.run.hooks.Recorder` tell it where each call's tensors sit in its
    arguments (:meth:`started`); the raw side's checker hands it each layer input and output it compared
    (:meth:`compared`), each input one side has and the other has none for (:meth:`unpaired_input`), and
    each verdict as it comes, in record order (:meth:`settled`).
    """

    def __init__(self, base_adapter: FrameworkAdapter, raw_adapter: FrameworkAdapter, limit: int = REPLAY_SUSPECTS):
        self.limit = limit
        self._adapters = {"base": base_adapter, "raw": raw_adapter}
        self._forms: dict[str, dict[Call, Any]] = {"base": {}, "raw": {}}  # arguments, tensors as _TENSOR
        self._inputs: dict[Call, tuple[dict[int, np.ndarray], dict[int, np.ndarray]]] = {}  # base, raw by position
        self._outputs: dict[Output, tuple[np.ndarray, str]] = {}  # base outputs whose verdicts are to come
        # the base's call, the raw layer's arguments, and the arrays the two hold
        self._kept: dict[Output, tuple[Captured, Any, tuple[np.ndarray, ...]]] = {}
        self._ranked: list[tuple[float, int, Output]] = []  # the suspects so far: growth, minus arrival, record
        self._arrivals = count()
        self._failing: Output | None = None  # the first forward record failing outright
        self._around: set[Call] = set()  # the calls of the layers above it that were running then
        self._largest = 0.0  # the largest scaled error of the records settled so far
        self._holders: dict[int, int] = {}  # id of each array held -> the places holding it
        self._bytes = 0  # of the arrays held, each counted once (a tensor is often several layers' input)
        self.full = False  # past KEPT_BYTES: nothing kept from here on

    def started(self, side: str) -> Callable[[str, int, tuple[Any, ...], dict[str, Any]], None]:
        """What ``side``'s recorder calls as a layer call starts (its key path, call, arguments)."""
        forms, is_tensor = self._forms[side], self._adapters[side].is_tensor

        def start(path: str, call: int, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if not self.full:
                forms[(path, call)] = map_tensors((args, kwargs), is_tensor, lambda _: _TENSOR)

        return start

    def compared(self, key: RecordKey, base: np.ndarray, raw: np.ndarray, base_dtype: str) -> None:
        """A layer input (``base`` and ``raw``) or output (``base``; the raw one is not needed) of the first
        step, as the run compared them."""
        if self.full:
            return
        call = (key.path, key.call)
        if key.stage == "input":
            base_inputs, raw_inputs = self._inputs.setdefault(call, ({}, {}))
            base_inputs[key.index], raw_inputs[key.index] = base, raw
            self._hold(base, raw)
        elif key.stage == "forward" and call in self._inputs:
            self._outputs[(key.path, key.call, key.index)] = (base, base_dtype)
            self._hold(base)

    def unpaired_input(self, key: RecordKey, side: str, array: np.ndarray) -> None:
        """A layer input of the first step that one side (``"base"`` or ``"raw"``) has and the other has none
        for: the two layers take other numbers of tensors (HF's and paddleformers' decoder layers)."""
        if self.full:
            return
        base_inputs, raw_inputs = self._inputs.setdefault((key.path, key.call), ({}, {}))
        (base_inputs if side == "base" else raw_inputs)[key.index] = array
        self._hold(array)

    def settled(self, comparison: Comparison) -> None:
        """One verdict of the first step, in record order: keep its call if it is a suspect so far, the first
        record failing outright, or a call that was running around that one."""
        if comparison.kind == "input":
            return  # the report ranks suspects without the inputs' records
        verdict = comparison.verdict
        output = (comparison.base, comparison.call, comparison.index)
        held = self._outputs.pop(output, None)
        if comparison.kind == "forward" and held is not None and comparison.base and not verdict.ok:
            scaled, largest = verdict.scaled, self._largest
            inherited = bool(verdict.floor) and np.isfinite(verdict.max_abs) and scaled <= GROWTH_LIMIT * largest
            if inherited and largest:
                self._rank(output, scaled / largest, held)
            elif not inherited and self._failing is None:
                self._failing = output
                self._keep(output, held)
                self._around = {call for call in self._inputs if _above(call[0], output[0])}
        if held is not None and output[:2] in self._around and comparison.kind == "forward":
            self._keep(output, held)  # a caller the replays may walk up to
        if held is not None:
            self._release(held[0])
            if not any(key[:2] == output[:2] for key in self._outputs):
                self._close(output[:2])
        if np.isfinite(verdict.scaled):
            self._largest = max(self._largest, verdict.scaled)

    def captured(self, base_path: str, call: int, index: int) -> tuple[Captured, Any] | None:
        """The base layer's call and the raw layer's arguments at it, as the run saw them, if kept."""
        kept = self._kept.get((base_path, call, index))
        return None if kept is None else kept[:2]

    def _rank(self, output: Output, growth: float, held: tuple[np.ndarray, str]) -> None:
        """Keep ``output``'s call if it grew more than the least-grown suspect kept (the earlier one wins a tie,
        as :func:`~padiff_graph.run.results.suspects` ranks them)."""
        if len(self._ranked) == self.limit:
            least = min(self._ranked)  # of the least-grown, the latest
            if growth <= least[0]:
                return
            self._ranked.remove(least)
            dropped = self._kept.pop(least[2], None)
            if dropped is not None:
                self._release(*dropped[2])
        self._ranked.append((growth, -next(self._arrivals), output))
        self._keep(output, held)

    def _keep(self, output: Output, held: tuple[np.ndarray, str]) -> None:
        if output in self._kept:
            return
        call = output[:2]
        base_inputs, raw_inputs = self._inputs[call]
        base_form, raw_form = self._forms["base"].get(call), self._forms["raw"].get(call)
        base_args = _filled(base_form, base_inputs)
        raw_args = _filled(raw_form, raw_inputs)
        if base_args is None or raw_args is None:
            return  # a tensor of the call went unrecorded: a rerun captures it
        arrays = (*base_inputs.values(), *raw_inputs.values(), held[0])
        self._kept[output] = ((base_args, *held), raw_args, arrays)
        self._hold(*arrays)

    def _close(self, call: Call) -> None:
        """A call whose outputs' verdicts are all in: let go of what no kept call holds."""
        base_inputs, raw_inputs = self._inputs.pop(call, ({}, {}))
        self._release(*base_inputs.values(), *raw_inputs.values())
        for forms in self._forms.values():
            forms.pop(call, None)

    def _hold(self, *arrays: np.ndarray) -> None:
        for array in arrays:
            holders = self._holders.get(id(array), 0)
            self._bytes += 0 if holders else array.nbytes
            self._holders[id(array)] = holders + 1
        if self._bytes > KEPT_BYTES:
            self.full = True
            self._forms = {"base": {}, "raw": {}}
            self._inputs, self._outputs, self._kept, self._ranked, self._holders = {}, {}, {}, [], {}
            self._bytes = 0

    def _release(self, *arrays: np.ndarray) -> None:
        for array in arrays:
            holders = self._holders.pop(id(array), 0) - 1  # none after the budget ran out
            if holders > 0:
                self._holders[id(array)] = holders
            elif holders == 0:
                self._bytes -= array.nbytes


def _above(path: str, inner: str) -> bool:
    """Whether the layer at ``path`` contains the one at ``inner`` (the root contains every layer)."""
    return not path or inner.startswith(path + ".")


def _filled(form: Any, arrays: dict[int, np.ndarray]) -> Any:
    """``form`` (arguments with each tensor's place marked) with the arrays by position, or ``None`` where a
    place has none."""
    if form is None:
        return None
    places = sum(1 for _ in iter_tensors(form, _is_place))
    if sorted(arrays) != list(range(places)):
        return None
    positions = count()
    return map_tensors(form, _is_place, lambda _: arrays[next(positions)])


def _is_place(value: object) -> bool:
    return value is _TENSOR


def _is_array(value: object) -> bool:
    return isinstance(value, np.ndarray)
