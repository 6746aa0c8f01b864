"""Model inputs: what users pass, checked against ``forward`` before any run.

Users give a dict of numpy arrays (keyword arguments), a list of arrays
(positional), one array, or inputs per model: an :class:`InputPair`, or a
tuple ``(base_inputs, raw_inputs)`` of two dicts; framework tensors work too.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from padiff_graph.errors import InputError
from padiff_graph.frameworks.base import FrameworkAdapter


@dataclass(frozen=True)
class CallArguments:
    """Framework tensors ready for ``model(*args, **kwargs)``."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def tensors(self, adapter: FrameworkAdapter) -> list[Any]:
        """The framework tensors among the arguments."""
        return [value for value in (*self.args, *self.kwargs.values()) if adapter.is_tensor(value)]


@dataclass(frozen=True)
class InputPair:
    """Inputs given per model, each in any form: ``base`` for the base model, ``raw`` for the raw one.

    Example: ``InputPair({"x": x}, {"features": x})`` for ``forward(x)``
    against ``forward(features)``, or ``InputPair([x], [x * 50])``.
    """

    base: Any
    raw: Any


def split_inputs(inputs: Any) -> tuple[Any, Any]:
    """``(base_inputs, raw_inputs)``: an :class:`InputPair` or a tuple of two mappings is one per model."""
    if isinstance(inputs, InputPair):
        return inputs.base, inputs.raw
    if isinstance(inputs, tuple) and len(inputs) == 2 and all(isinstance(side, Mapping) for side in inputs):
        return inputs[0], inputs[1]
    return inputs, inputs


def prepare(adapter: FrameworkAdapter, model: Any, inputs: Any) -> CallArguments:
    """Convert numpy inputs for ``model`` and check they fit its ``forward``.

    Raises:
        InputError: the inputs cannot be converted or do not fit ``forward``.
    """
    if isinstance(inputs, CallArguments):  # prepared before, for this model
        return inputs
    if isinstance(inputs, np.ndarray) or adapter.is_tensor(inputs):
        inputs = [inputs]
    if isinstance(inputs, Mapping):
        arguments = CallArguments((), _convert(adapter, model, dict(inputs)))
    elif isinstance(inputs, Sequence) and not isinstance(inputs, (str, bytes)):
        converted = _convert(adapter, model, {str(i): value for i, value in enumerate(inputs)})
        arguments = CallArguments(tuple(converted[str(i)] for i in range(len(inputs))), {})
    else:
        raise InputError(f"inputs must be a dict of arrays, a list of arrays or one array, not {type(inputs).__name__}")
    check_signature(adapter, model, arguments)
    return arguments


def _convert(adapter: FrameworkAdapter, model: Any, values: dict[str, Any]) -> dict[str, Any]:
    """Numpy arrays and framework tensors -> tensors on the model's device, floats in its dtype."""
    arrays: dict[str, Any] = {}
    for name, value in values.items():
        if adapter.is_tensor(value):
            arrays[name] = value
            continue
        try:
            arrays[name] = np.asarray(value)
        except (TypeError, ValueError) as error:
            raise InputError(f"input {name!r} is not an array: {error}") from None
        if arrays[name].dtype == object:
            raise InputError(f"input {name!r} is not a numeric array")
    return adapter.to_inputs(model, arrays)


def check_signature(adapter: FrameworkAdapter, model: Any, arguments: CallArguments) -> None:
    """Raise :class:`InputError` if ``forward`` cannot take these arguments."""
    target = adapter.forward_signature_target(model)
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(*arguments.args, **arguments.kwargs)
    except TypeError as error:
        given = ", ".join([*(f"#{i}" for i in range(len(arguments.args))), *arguments.kwargs]) or "none"
        raise InputError(f"inputs ({given}) do not fit {type(model).__name__}.forward{signature}: {error}") from None


class StepInputs:
    """Each training step's inputs, prepared for each model in turn.

    Plain inputs serve every step; an iterator (``iter(batches)``, a
    generator) gives one input set per step. With two models, an input set
    may be a pair ``(base_inputs, raw_inputs)`` (:func:`split_inputs`). The
    first step's inputs are prepared, and checked against ``forward``, at once.
    """

    def __init__(self, models: Sequence[tuple[FrameworkAdapter, Any]], inputs: Any) -> None:
        self._models = models
        self._later = inputs if isinstance(inputs, Iterator) else None
        self.first = self._prepare(self._next(0) if self._later is not None else inputs)

    @property
    def reused(self) -> bool:
        """Whether every step runs the same inputs (not an iterator of batches)."""
        return self._later is None

    def batches(self, steps: int) -> Iterator[tuple[CallArguments, ...]]:
        """The prepared arguments of each model, step after step."""
        yield self.first
        for step in range(1, steps):
            yield self.first if self._later is None else self._prepare(self._next(step))

    def _prepare(self, inputs: Any) -> tuple[CallArguments, ...]:
        parts = split_inputs(inputs) if len(self._models) == 2 else (inputs,)
        return tuple(prepare(adapter, model, part) for (adapter, model), part in zip(self._models, parts, strict=True))

    def _next(self, step: int) -> Any:
        assert self._later is not None
        try:
            return next(self._later)
        except StopIteration:
            raise InputError(f"the inputs iterator ran out at step {step}; give one input set per step") from None
