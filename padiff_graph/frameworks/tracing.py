"""Running a model under hooks, and naming the layer that failed.

Shared by export (call order) and diff (activations): a failure inside the
user's forward is re-raised as :class:`ModelRunError` naming the last layer
that started running, which is where to look.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from padiff_graph.errors import ModelRunError, PadiffGraphError
from padiff_graph.frameworks.base import FrameworkAdapter, RemovableHandle
from padiff_graph.frameworks.inputs import CallArguments

#: the first run is where inputs of the wrong shape or dtype show up
FIRST_RUN_HINT = "; check that the inputs' names, shapes and dtypes fit the model's forward"


class CallTracker:
    """Records which layers started running, in order."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self._seen: set[str] = set()
        self.last: str | None = None

    def enter(self, path: str) -> None:
        self.last = path
        if path not in self._seen:
            self._seen.add(path)
            self.order.append(path)


@contextmanager
def hooks(handles: list[RemovableHandle]) -> Iterator[list[RemovableHandle]]:
    """Remove every hook on exit, whatever happens inside."""
    try:
        yield handles
    finally:
        for handle in handles:
            handle.remove()


def track_calls(adapter: FrameworkAdapter, layers: dict[str, Any], tracker: CallTracker) -> list[RemovableHandle]:
    """Pre-hooks that feed ``tracker`` (layers called several times count once)."""
    return [adapter.add_pre_hook(layer, _enter(tracker, path)) for path, layer in layers.items()]


def _enter(tracker: CallTracker, path: str) -> Callable[[], None]:
    return lambda: tracker.enter(path)


def run_forward(
    adapter: FrameworkAdapter, model: Any, arguments: CallArguments, tracker: CallTracker, side: str, hint: str = ""
) -> Any:
    """``model(*args, **kwargs)``, with a failure reported at the last layer entered (and ``hint``)."""
    try:
        return model(*arguments.args, **arguments.kwargs)
    except PadiffGraphError:
        raise  # raised by our own hooks (a random op found, ...): already says what to do
    except Exception as error:  # the user's forward may raise anything
        where = f"in layer {tracker.last!r}" if tracker.last else "before any layer ran"
        raise ModelRunError(
            f"the {side} model's forward failed {where}: {type(error).__name__}: {error}{hint}"
        ) from error


def trace_call_order(
    adapter: FrameworkAdapter, model: Any, arguments: CallArguments, side: str = "traced"
) -> list[str]:
    """Layer paths in the order their forward first runs on ``arguments``.

    The run changes nothing in the model: no gradients, and every layer in
    eval mode (each layer's own mode restored after), so BatchNorm keeps its
    running statistics and dropout draws no random numbers. It runs on the
    first sample of the batch when every input shares one batch dimension (a
    fraction of a full forward), falling back to the whole batch if the model
    rejects the slice.
    """
    layers = adapter.named_layers(model)
    with evaluation_mode(layers):
        sample = first_sample(adapter, arguments)
        if sample is not None:
            try:
                return _trace(adapter, model, layers, sample, side)
            except ModelRunError:
                pass  # e.g. a layer that needs more than one sample: trace the whole batch
        return _trace(adapter, model, layers, arguments, side)


def _trace(
    adapter: FrameworkAdapter, model: Any, layers: dict[str, Any], arguments: CallArguments, side: str
) -> list[str]:
    tracker = CallTracker()
    with hooks(track_calls(adapter, layers, tracker)), adapter.no_grad():
        run_forward(adapter, model, arguments, tracker, side, FIRST_RUN_HINT)
    return tracker.order


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


def first_sample(adapter: FrameworkAdapter, arguments: CallArguments) -> CallArguments | None:
    """The arguments cut to their first sample, if all are tensors with one batch size above 1."""
    values = [*arguments.args, *arguments.kwargs.values()]
    if not values or not all(adapter.is_tensor(value) and len(value.shape) > 0 for value in values):
        return None
    sizes = {int(value.shape[0]) for value in values}
    if len(sizes) != 1 or sizes.pop() < 2:
        return None
    return CallArguments(
        tuple(value[:1] for value in arguments.args), {name: value[:1] for name, value in arguments.kwargs.items()}
    )
