"""Model inputs: what users pass, checked against ``forward`` before any run.

Users give a dict of numpy arrays (keyword arguments), a list of arrays
(positional), one array, or a pair ``(base_inputs, raw_inputs)`` of either
kind, possibly holding framework tensors already.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
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


def split_inputs(inputs: Any) -> tuple[Any, Any]:
    """``(base_inputs, raw_inputs)``: a pair of mappings is taken as one per model."""
    if isinstance(inputs, tuple) and len(inputs) == 2 and all(isinstance(side, Mapping) for side in inputs):
        return inputs[0], inputs[1]
    return inputs, inputs


def prepare(adapter: FrameworkAdapter, model: Any, inputs: Any) -> CallArguments:
    """Convert numpy inputs for ``model`` and check they fit its ``forward``.

    Raises:
        InputError: the inputs cannot be converted or do not fit ``forward``.
    """
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
