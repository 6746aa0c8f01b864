"""Layouts learned from the models themselves: probing a tensor's transform numerically.

Where shapes allow several transforms and no conversion knows the classes
(a square weight of a user's layer: ``[out, in]`` on one side, ``[in, out]``
or ``[out, in]`` on the other), the base layer's input is captured in one
run of the base model; then, for each candidate transform, the base tensors
are written into the raw layer that way and both layers run on that input.
The one candidate under which the raw layer computes what the base layer
computes is kept; if none or several do, the pair stays ``ambiguous-transform``.
The raw layer's tensors are restored afterwards: probing writes nothing.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import product
from typing import Any

import numpy as np

from padiff_graph.assign.weights import copy_weights
from padiff_graph.core.records import join_path
from padiff_graph.core.transforms import TensorPair, layout_candidates
from padiff_graph.frameworks import adapter_for
from padiff_graph.frameworks.base import FrameworkAdapter, iter_tensors, map_tensors
from padiff_graph.frameworks.inputs import CallArguments, prepare, split_inputs
from padiff_graph.layermap import LayerMap, LayerPair

#: Two layer outputs agree when they differ by no more than fp32 noise, relative to their scale.
PROBE_RTOL = 1e-4
#: Most tensors of one layer pair probed together (candidates grow as 2 ** count).
MAX_PROBED_TENSORS = 4

Captured = tuple[tuple[Any, ...], dict[str, Any]]


def probe_layouts(
    base: tuple[FrameworkAdapter, Any],
    raw: tuple[FrameworkAdapter, Any],
    layer_map: LayerMap,
    arguments: CallArguments,
) -> LayerMap:
    """``layer_map`` with every guessed layout the probe settles replaced by the transform that computes alike.

    Args:
        base, raw: ``(adapter, model)`` of each side.
        arguments: the base model's prepared inputs, run once to capture each probed layer's input.
    """
    probed = [pair for pair in layer_map.active_pairs() if pair.guessed_layouts]
    if not probed:
        return layer_map
    inputs = _capture_inputs(*base, [pair.base for pair in probed], arguments)
    settled = {}
    for pair in probed:
        if pair.base in inputs and len(pair.guessed_layouts) <= MAX_PROBED_TENSORS:
            found = _probe_pair(base, raw, layer_map, pair, inputs[pair.base])
            if found is not None:
                settled[pair.base] = found
    return layer_map.with_pairs([settled.get(pair.base, pair) for pair in layer_map.pairs])


def _capture_inputs(
    adapter: FrameworkAdapter, model: Any, paths: list[str], arguments: CallArguments
) -> dict[str, Captured]:
    """Each layer's first call arguments in one run, tensors as numpy arrays."""
    layers = adapter.named_layers(model)
    captured: dict[str, Captured] = {}

    def hook_for(path: str) -> Any:
        def hook(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if path not in captured:
                captured[path] = map_tensors((args, kwargs), adapter.is_tensor, adapter.to_numpy)
            return None

        return hook

    handles = [adapter.add_input_hook(layers[path], hook_for(path)) for path in paths]
    try:
        with adapter.no_grad():
            model(*arguments.args, **arguments.kwargs)
    finally:
        for handle in handles:
            handle.remove()
    return captured


def _probe_pair(
    base: tuple[FrameworkAdapter, Any],
    raw: tuple[FrameworkAdapter, Any],
    layer_map: LayerMap,
    pair: LayerPair,
    captured: Captured,
) -> LayerPair | None:
    """The pair with the one candidate layout under which both layers compute alike, or ``None``."""
    (base_adapter, base_model), (raw_adapter, raw_model) = base, raw
    expected = _run(base_adapter, base_model, pair.base, captured)
    raw_tensors = raw_adapter.named_tensors(raw_model)
    touched = {tensor.prefixed(pair.base, pair.raw).raw for tensor in pair.tensors} & set(raw_tensors)
    saved = {name: raw_adapter.to_numpy(raw_tensors[name]) for name in touched}
    shapes = {
        tensor.base: (
            _shape(base_adapter, base_model, join_path(pair.base, tensor.base)),
            _shape(raw_adapter, raw_model, join_path(pair.raw, tensor.raw)),
        )
        for tensor in pair.tensors
        if tensor.base in pair.guessed_layouts
    }
    matching = []
    try:
        for candidate in _candidates(pair, shapes):
            copy_weights(base_model, raw_model, layer_map.with_pairs([candidate]), base_adapter, raw_adapter)
            if _agree(expected, _run(raw_adapter, raw_model, pair.raw, captured)):
                matching.append(candidate)
    finally:
        for name, value in saved.items():
            raw_adapter.write(raw_tensors[name], value)
    return replace(matching[0], guessed_layouts=()) if len(matching) == 1 else None


def _candidates(pair: LayerPair, shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]) -> list[LayerPair]:
    """The pair under every combination of the layouts its guessed tensors' shapes allow."""
    guessed = [index for index, tensor in enumerate(pair.tensors) if tensor.base in shapes]
    choices = [layout_candidates(*shapes[pair.tensors[index].base]) for index in guessed]
    result = []
    for choice in product(*choices):
        tensors = list(pair.tensors)
        for index, transform in zip(guessed, choice, strict=True):
            tensors[index] = TensorPair(tensors[index].base, tensors[index].raw, transform)
        result.append(replace(pair, tensors=tuple(tensors)))
    return result


def _shape(adapter: FrameworkAdapter, model: Any, name: str) -> tuple[int, ...]:
    return tuple(adapter.to_numpy(adapter.named_tensors(model)[name]).shape)


def _run(adapter: FrameworkAdapter, model: Any, path: str, captured: Captured) -> list[np.ndarray]:
    """The layer's output tensors, as arrays, on the captured inputs (converted to this framework)."""
    layer = adapter.named_layers(model)[path]
    arrays: dict[str, np.ndarray] = {}

    def collect(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            arrays[str(len(arrays))] = value
        return value

    is_array = lambda value: isinstance(value, np.ndarray)  # noqa: E731
    map_tensors(captured, is_array, collect)
    tensors = iter(adapter.to_inputs(model, arrays).values())
    args, kwargs = map_tensors(captured, is_array, lambda _: next(tensors))
    with adapter.no_grad():
        output = layer(*args, **kwargs)
    return [adapter.to_numpy(tensor) for tensor in iter_tensors(output, adapter.is_tensor)]


def _agree(expected: list[np.ndarray], got: list[np.ndarray]) -> bool:
    """Same outputs up to fp32 noise, relative to the outputs' scale."""
    if len(expected) != len(got) or not expected:
        return False
    for left, right in zip(expected, got, strict=True):
        if left.shape != right.shape:
            return False
        scale = max(float(np.abs(left).max(initial=0.0)), 1e-6)
        if float(np.abs(left.astype(np.float64) - right).max(initial=0.0)) > PROBE_RTOL * scale:
            return False
    return True


def probe_with_inputs(base_model: Any, raw_model: Any, layer_map: LayerMap, inputs: Any) -> LayerMap:
    """:func:`probe_layouts` on inputs as users give them (``None``: the map as it is)."""
    if inputs is None:
        return layer_map
    base_adapter = adapter_for(base_model)
    arguments = prepare(base_adapter, base_model, split_inputs(inputs)[0])
    return probe_layouts((base_adapter, base_model), (adapter_for(raw_model), raw_model), layer_map, arguments)
