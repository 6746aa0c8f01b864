"""Running a model under hooks, and naming the layer that failed.

Shared by export (call order, and what a step will cost: :class:`Trace`) and diff (activations): a failure inside the
user's forward is re-raised as :class:`ModelRunError` naming the innermost
layer still running when it was raised, whose own ``forward`` is where to look.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from padiff_graph.core.tensorfile import itemsize
from padiff_graph.errors import ModelRunError, PadiffGraphError, describe
from padiff_graph.frameworks.base import FrameworkAdapter, RemovableHandle, iter_tensors
from padiff_graph.frameworks.inputs import CallArguments

#: the first run is where inputs of the wrong shape or dtype show up
FIRST_RUN_HINT = "; check that the inputs' names, shapes and dtypes fit the model's forward"

#: words of an error message about the values a layer was given (the only ones the hint is for)
_ABOUT_VALUES = re.compile(r"shape|dtype|size|dim|rank|mat1|broadcast|expected .*(tensor|type)", re.IGNORECASE)


class CallTracker:
    """Records which layers started running, in order, and which are running now."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self._seen: set[str] = set()
        self.running: list[str] = []  # a stack: the innermost running layer last

    def enter(self, path: str) -> None:
        self.running.append(path)
        if path not in self._seen:
            self._seen.add(path)
            self.order.append(path)

    def leave(self, path: str) -> None:
        if self.running and self.running[-1] == path:
            self.running.pop()


@contextmanager
def hooks(handles: list[RemovableHandle]) -> Iterator[list[RemovableHandle]]:
    """Remove every hook on exit, whatever happens inside."""
    try:
        yield handles
    finally:
        for handle in handles:
            handle.remove()


def track_calls(adapter: FrameworkAdapter, layers: dict[str, Any], tracker: CallTracker) -> list[RemovableHandle]:
    """Hooks before and after each layer's forward that feed ``tracker``."""
    handles = []
    for path, layer in layers.items():
        handles.append(adapter.add_pre_hook(layer, _enter(tracker, path)))
        handles.append(adapter.add_forward_hook(layer, _leave(tracker, path)))
    return handles


def _enter(tracker: CallTracker, path: str) -> Callable[[], None]:
    return lambda: tracker.enter(path)


def _leave(tracker: CallTracker, path: str) -> Callable[[Any], None]:
    return lambda _output: tracker.leave(path)


def run_forward(
    adapter: FrameworkAdapter, model: Any, arguments: CallArguments, tracker: CallTracker, side: str, hint: str = ""
) -> Any:
    """``model(*args, **kwargs)``; a failure is reported at the innermost layer running.

    ``hint`` is added when the error is about the values a layer was given
    (shapes, dtypes), not when the model's own code is at fault.
    """
    try:
        return model(*arguments.args, **arguments.kwargs)
    except PadiffGraphError:
        raise  # raised by our own hooks (a random op found, ...): already says what to do
    except Exception as error:  # the user's forward may raise anything
        where = "before any layer ran"
        if tracker.running:
            where = f"in layer {tracker.running[-1]!r}" if tracker.running[-1] else "in layer <root>"
        advice = hint if _ABOUT_VALUES.search(str(error)) and not isinstance(error, AttributeError) else ""
        raise ModelRunError(f"the {side} model's forward failed {where}: {describe(error)}{advice}") from error


@dataclass(frozen=True)
class Trace:
    """What a traced forward run showed.

    Attributes:
        order: layer paths in the order their forward first ran.
        activation_bytes: the bytes of every innermost layer's outputs, scaled from the traced slice to the
            whole batch: about the activations a training step of the model holds; ``None`` where the trace
            was not asked to measure them and ran on an empty batch.
    """

    order: list[str]
    activation_bytes: int | None


def trace_forward(
    adapter: FrameworkAdapter, model: Any, arguments: CallArguments, side: str = "traced", measure: bool = False
) -> Trace:
    """A forward run on ``arguments`` under hooks: the call order, and (``measure``) what the run cost.

    The run changes nothing in the model: no gradients, and every layer in
    eval mode (each layer's own mode restored after), so BatchNorm keeps its
    running statistics and dropout draws no random numbers. When every input
    shares one batch dimension it runs on a slice of the batch. For the order
    alone, an empty one: no arithmetic at all, and its order is kept where
    every layer holding tensors ran (a model that skips one for want of
    samples, an expert no token was routed to, or that rejects an empty
    batch, is traced on one sample). To ``measure`` the activations, the
    first sample. A model that rejects the slice is traced on the whole batch.
    """
    layers = adapter.named_layers(model)
    with evaluation_mode(layers):
        for size in (1,) if measure else (0, 1):
            part = batch_slice(adapter, arguments, size)
            if part is None:
                break
            try:
                trace = _trace(adapter, model, layers, part, side, scale=size and _batch_size(arguments))
            except ModelRunError:
                continue  # e.g. a layer that needs more samples: a larger slice, or the whole batch
            if size or _holders(adapter, model) <= set(trace.order):
                return trace
        return _trace(adapter, model, layers, arguments, side, scale=1)


def _holders(adapter: FrameworkAdapter, model: Any) -> set[str]:
    """The paths of the layers that hold tensors of their own."""
    return {name.rpartition(".")[0] for name in adapter.named_tensors(model)}


def _trace(
    adapter: FrameworkAdapter, model: Any, layers: dict[str, Any], arguments: CallArguments, side: str, scale: int
) -> Trace:
    """``scale``: the batch over the traced part's size; 0 (an empty batch): no activations measured."""
    tracker = CallTracker()
    innermost = _innermost(layers) if scale else []
    output_bytes = [0]

    def count(output: Any) -> None:
        output_bytes[0] += sum(_tensor_bytes(adapter, tensor) for tensor in iter_tensors(output, adapter.is_tensor))

    counting = [adapter.add_forward_hook(layer, count) for layer in innermost]
    with hooks(track_calls(adapter, layers, tracker) + counting), adapter.no_grad():
        run_forward(adapter, model, arguments, tracker, side, FIRST_RUN_HINT)
    return Trace(tracker.order, output_bytes[0] * scale if scale else None)


def _innermost(layers: dict[str, Any]) -> list[Any]:
    """The layers that contain no other layer."""
    containers = {ancestor for path in layers for ancestor in _ancestors(path)}
    return [layer for path, layer in layers.items() if path and path not in containers]


def _ancestors(path: str) -> Iterator[str]:
    """The dotted prefixes of ``path`` (``"a.b.c"``: ``"a.b"``, ``"a"``)."""
    while "." in path:
        path = path.rpartition(".")[0]
        yield path


def _tensor_bytes(adapter: FrameworkAdapter, tensor: Any) -> int:
    return math.prod(int(dim) for dim in tensor.shape) * itemsize(adapter.dtype_name(tensor))


@contextmanager
def evaluation_mode(layers: dict[str, Any]) -> Iterator[None]:
    """Every layer in eval mode for the block; each gets its own mode back after."""
    modes = {path: layer.training for path, layer in layers.items()}
    for layer in layers.values():
        layer.training = False
    try:
        yield
    finally:
        for path, layer in layers.items():
            layer.training = modes[path]


def batch_slice(adapter: FrameworkAdapter, arguments: CallArguments, size: int) -> CallArguments | None:
    """The arguments cut to their first ``size`` samples, if all are tensors with one batch size above it."""
    values = [*arguments.args, *arguments.kwargs.values()]
    if not values or not all(adapter.is_tensor(value) and len(value.shape) > 0 for value in values):
        return None
    if _batch_size(arguments) <= size:
        return None
    return CallArguments(
        tuple(value[:size] for value in arguments.args),
        {name: value[:size] for name, value in arguments.kwargs.items()},
    )


def _batch_size(arguments: CallArguments) -> int:
    """The one size of the first axis every input (a tensor of one axis or more) shares, else 0."""
    sizes = {int(value.shape[0]) for value in [*arguments.args, *arguments.kwargs.values()]}
    return sizes.pop() if len(sizes) == 1 else 0
