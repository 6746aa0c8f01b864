"""Recording one model's run: the inputs, outputs and output gradients of its selected layers.

A :class:`Recorder` hooks the layers it is given and hands each record to a
sink the moment the framework produces it, as the framework tensor; the sink
decides what to keep (a host copy, a summary, a file) and may return an array
that replaces the value flowing on (single-step mode feeds the base model's
layer inputs and output gradients into the raw model this way). The same
recorder serves the in-process diff (a base and a raw side) and the offline
dump.

Records are keyed by dotted layer path, call number (a layer called three
times has calls 0, 1, 2) and the tensor's position in the flattened inputs
or outputs.
"""

from __future__ import annotations

import weakref
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from padiff_graph.frameworks.base import FrameworkAdapter, RemovableHandle, iter_tensors, map_tensors
from padiff_graph.frameworks.tracing import CallTracker, track_calls


@dataclass(frozen=True, slots=True)
class RecordKey:
    """What a record is: ``stage`` is ``input``, ``forward``, ``backward``, ``loss``, ``grad`` or ``weights``.

    ``path`` is a layer path for the first three, a full tensor name for
    ``grad``/``weights`` and ``""`` for the loss.
    """

    step: int
    stage: str
    path: str
    call: int = 0
    index: int = 0


#: ``sink(key, value, dtype)``: value is a framework tensor or a numpy array; may return a replacement.
Sink = Callable[[RecordKey, Any, str], "np.ndarray | None"]


class OpSink:
    """Receives framework API calls made inside recorded layers (op-level comparison)."""

    def op(self, step: int, path: str, call: int, name: str, output: Any) -> None: ...

    def layer_done(self, step: int, path: str, call: int) -> None: ...


class HostCache:
    """Host arrays of the last few tensors converted, so a tensor recorded under several
    keys (a container's output that is its last child's output, a layer's input that is
    the previous layer's output) is converted once. Tensors are held by weak reference
    (the cache never keeps one alive) and an in-place change (a new version) misses.
    """

    def __init__(
        self,
        adapter: FrameworkAdapter,
        copy: bool,
        size: int = 8,
        convert: Callable[[np.ndarray], Any] | None = None,
    ) -> None:
        self.adapter = adapter
        self.copy = copy
        self.convert = convert
        self._recent: deque[tuple[weakref.ref[Any], int, Any]] = deque(maxlen=size)

    def array(self, value: Any) -> Any:
        """The tensor's host array, or what ``convert`` makes of it (then only that is cached)."""
        if isinstance(value, np.ndarray):
            return value if self.convert is None else self.convert(value)
        version = self.adapter.version(value)
        for reference, seen_version, converted in self._recent:
            if reference() is value and seen_version == version:
                return converted
        array = self.adapter.to_numpy(value, copy=self.copy)
        converted = array if self.convert is None else self.convert(array)
        self._recent.append((weakref.ref(value), version, converted))
        return converted

    def clear(self) -> None:
        """Forget every cached array (and the tensor memory a view holds)."""
        self._recent.clear()


class Recorder:
    """Hooks on one model's selected layers for one step.

    Args:
        layers: this model's layer path -> the path records are keyed by (in
            a diff, the raw side keys its records by the base path it is matched to).
        inputs, outputs, grads: which records to produce.
        ops: where framework API calls inside the layers go (op-level mode).
        started: told each layer call's key path, call number and arguments as it starts
            (:class:`~padiff_graph.run.kept_calls.KeptCalls`).
    """

    def __init__(
        self,
        adapter: FrameworkAdapter,
        model: Any,
        layers: Mapping[str, str],
        sink: Sink,
        *,
        step: int,
        inputs: bool = False,
        outputs: bool = True,
        grads: bool = True,
        ops: OpSink | None = None,
        started: Callable[[str, int, tuple[Any, ...], dict[str, Any]], None] | None = None,
    ) -> None:
        self.adapter = adapter
        self.model = model
        self.layers = layers
        self.sink = sink
        self.step = step
        self.record_inputs = inputs
        self.record_outputs = outputs
        self.record_grads = grads
        self.ops = ops
        self.started = started
        self.tracker = CallTracker()
        self.output_dtypes: set[str] = set()  # of every recorded layer's outputs: did autocast take effect?
        self._calls: dict[str, int] = defaultdict(int)
        self._stack: list[tuple[str, str, int]] = []  # (own path, key path, call) of the layers running

    def install(self) -> list[RemovableHandle]:
        """Add the hooks; remove them with :func:`padiff_graph.frameworks.tracing.hooks`."""
        named = self.adapter.named_layers(self.model)
        handles = track_calls(self.adapter, named, self.tracker)
        for path, key_path in self.layers.items():
            layer = named[path]
            handles.append(self.adapter.add_input_hook(layer, self._before(path, key_path)))
            handles.append(self.adapter.add_forward_hook(layer, self._after(key_path)))
        return handles

    def running(self) -> str | None:
        """This model's path of the innermost recorded layer running now."""
        return self._stack[-1][0] if self._stack else None

    def on_op(self, name: str, output: Any) -> None:
        """Route a framework API call to the op sink, attributed to the innermost layer."""
        if self.ops is not None and self._stack:
            _, path, call = self._stack[-1]
            self.ops.op(self.step, path, call, name, output)

    def _before(self, path: str, key_path: str) -> Callable[[tuple[Any, ...], dict[str, Any]], Any]:
        def enter(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            call = self._calls[key_path]
            self._calls[key_path] += 1
            self._stack.append((path, key_path, call))
            if self.started is not None:
                self.started(key_path, call, args, kwargs)
            if not self.record_inputs:
                return None
            return self._inputs(key_path, call, args, kwargs)

        return enter

    def _inputs(self, key_path: str, call: int, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        is_tensor = self.adapter.is_tensor
        replacements: dict[int, np.ndarray] = {}
        for index, tensor in enumerate(iter_tensors((args, kwargs), is_tensor)):
            key = RecordKey(self.step, "input", key_path, call, index)
            replacement = self.sink(key, tensor, self.adapter.dtype_name(tensor))
            if replacement is not None:
                replacements[index] = replacement
        if not replacements:
            return None
        counter = iter(range(1 << 62))

        def replace(tensor: Any) -> Any:
            index = next(counter)
            value = replacements.get(index)
            return tensor if value is None else self.adapter.substitute(tensor, value)

        new_args, new_kwargs = map_tensors((args, kwargs), is_tensor, replace)
        return new_args, new_kwargs

    def _after(self, key_path: str) -> Callable[[Any], None]:
        def leave(output: Any) -> None:
            _, _, call = self._stack.pop() if self._stack else ("", key_path, 0)
            if self.ops is not None:
                self.ops.layer_done(self.step, key_path, call)
            if not (self.record_outputs or self.record_grads):
                return
            for index, tensor in enumerate(iter_tensors(output, self.adapter.is_tensor)):
                key = RecordKey(self.step, "forward", key_path, call, index)
                dtype = self.adapter.dtype_name(tensor)
                self.output_dtypes.add(dtype)
                if self.record_outputs:
                    self.sink(key, tensor, dtype)
                if self.record_grads and self.adapter.requires_grad(tensor):
                    self.adapter.watch_grad(tensor, self._grad(replace(key, stage="backward"), tensor))

        return leave

    def _grad(self, key: RecordKey, tensor: Any) -> Callable[[Any], np.ndarray | None]:
        """The gradient hook of one output; a gradient the framework leaves ``None`` (an unused expert,
        a routing path) is not produced: no record, nothing replaced."""
        dtype = self.adapter.dtype_name(tensor)
        return lambda grad: None if grad is None else self.sink(key, grad, dtype)
