"""Layouts learned from the models themselves: probing a tensor's transform numerically.

Where shapes allow several transforms and no conversion knows the classes
(a square weight of a user's layer: ``[out, in]`` on one side, ``[in, out]``
or ``[out, in]`` on the other), the base layer's input is captured in one
run of the base model; then, for each candidate transform, the base tensors
are written into the raw layer that way and both layers run on that input.
The one candidate under which the raw layer computes what the base layer
computes is kept; if none or several do, the pair stays ``ambiguous-transform``.
The raw layer's tensors are restored afterwards: probing writes nothing.
Without the model's inputs, single layers are probed on synthetic inputs
their tensor shapes give away (:func:`probe_single_layers`).
A pair with more combinations than :data:`MAX_COMBINATIONS` is not probed;
it keeps its guess and carries ``probe_cut`` so pre-flight says why.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import replace
from itertools import product
from math import prod
from typing import Any

import numpy as np

from padiff_graph.assign.weights import copy_weights
from padiff_graph.checks.rules import unconverted_tensors
from padiff_graph.core.fused import fused_links
from padiff_graph.core.records import join_path
from padiff_graph.core.transforms import TensorPair, layout_candidates
from padiff_graph.core.tree import ModelTree, children
from padiff_graph.frameworks import adapter_for
from padiff_graph.frameworks.base import FrameworkAdapter, iter_tensors, map_tensors
from padiff_graph.frameworks.inputs import CallArguments, prepare, split_inputs
from padiff_graph.frameworks.tracing import evaluation_mode
from padiff_graph.layermap import LayerMap, LayerPair
from padiff_graph.layermap.validation import check_map_paths

#: Two layer outputs agree when they differ by no more than fp32 noise, relative to their scale.
PROBE_RTOL = 1e-4
#: Most combinations of candidate layouts tried at one level (they multiply across the tensors probed together).
MAX_COMBINATIONS = 64

Captured = tuple[tuple[Any, ...], dict[str, Any]]


def probe_layouts(
    base: tuple[FrameworkAdapter, Any],
    raw: tuple[FrameworkAdapter, Any],
    layer_map: LayerMap,
    arguments: CallArguments,
    trees: tuple[ModelTree, ModelTree],
) -> LayerMap:
    """``layer_map`` with what the probe settles: guessed layouts, and fused tensors against split ones.

    A pair with guessed layouts is tried under every layout its tensors'
    shapes allow; a pair holding tensors nothing pairs (a fused ``qkv``
    against ``q``/``k``/``v``) under every way of cutting one side's tensors
    into the other's (:mod:`padiff_graph.core.fused`). Each pair is probed on
    its own layers first; where the raw layer cannot take the base layer's
    input (a ``Linear`` against a 1x1 convolution sees ``[n, c]`` against
    ``[n, c, 1, 1]``), the choices are probed together under the nearest
    enclosing pair.

    Args:
        base, raw: ``(adapter, model)`` of each side.
        arguments: the base model's prepared inputs, run once to capture each probed layer's input.
        trees: both models' trees.

    Raises:
        LayerMapError: ``layer_map`` names layers or tensors the models lack.
    """
    check_map_paths(*trees, layer_map)
    jobs, cut = _jobs(base, raw, layer_map, trees)
    settled = _marked_cut(layer_map, cut)
    if jobs:
        # eval mode, as tracing: BatchNorm keeps its statistics, dropout draws nothing
        with evaluation_mode(base[0].named_layers(base[1])), evaluation_mode(raw[0].named_layers(raw[1])):
            settled |= _settle(base, raw, layer_map, jobs, arguments)
    return layer_map.with_pairs([settled.get(pair.base, pair) for pair in layer_map.pairs])


def _settle(
    base: tuple[FrameworkAdapter, Any],
    raw: tuple[FrameworkAdapter, Any],
    layer_map: LayerMap,
    jobs: dict[str, list[tuple[LayerPair, ...]]],
    arguments: CallArguments,
) -> dict[str, LayerPair]:
    """The pairs the probe settles, by base path: each job on its own layers, else under the enclosing pair."""
    enclosing = {path: _enclosing_pair(layer_map, path) for path in jobs}
    levels = set(jobs) | {e.base for e in enclosing.values() if e is not None}
    inputs = _capture_inputs(*base, sorted(levels), arguments)
    settled: dict[str, LayerPair] = {}
    escalated: dict[str, list[list[tuple[LayerPair, ...]]]] = {}
    for path, choices in jobs.items():
        try:
            settled.update(_probe_level(base, raw, layer_map, path, choices, inputs))
        except _CannotRun:
            outer = enclosing[path]
            if outer is not None:
                escalated.setdefault(outer.base, []).append(choices)
    for outer_path, groups in escalated.items():
        count = prod(len(choices) for choices in groups)
        if count > MAX_COMBINATIONS:
            settled.update(_marked_cut(layer_map, {pair.base: count for choices in groups for pair in choices[0]}))
            continue
        combined = [tuple(pair for choice in combination for pair in choice) for combination in product(*groups)]
        with suppress(_CannotRun):
            settled.update(_probe_level(base, raw, layer_map, outer_path, combined, inputs))
    return settled


def _jobs(
    base: tuple[FrameworkAdapter, Any],
    raw: tuple[FrameworkAdapter, Any],
    layer_map: LayerMap,
    trees: tuple[ModelTree, ModelTree],
) -> tuple[dict[str, list[tuple[LayerPair, ...]]], dict[str, int]]:
    """Per pair to probe (by base path): the versions of it to try; and the pairs with too many, by their count."""
    jobs: dict[str, list[tuple[LayerPair, ...]]] = {}
    cut: dict[str, int] = {}
    for pair in layer_map.active_pairs():
        if pair.guessed_layouts:
            shapes = _guessed_shapes(base, raw, pair)
            count = prod(len(layout_candidates(*shape)) for shape in shapes.values())
            if count > MAX_COMBINATIONS:
                cut[pair.base] = count
            else:
                jobs[pair.base] = [(candidate,) for candidate in _candidates(pair, shapes)]
    for path, (free_base, free_raw) in unconverted_tensors(*trees, layer_map).items():
        owner = layer_map.pair_for_base(path)
        cuts = fused_links({n: t.shape for n, t in free_base.items()}, {n: t.shape for n, t in free_raw.items()})
        if owner is not None and len(cuts) > MAX_COMBINATIONS:
            cut[path] = len(cuts)
        elif owner is not None and cuts:
            jobs[path] = [(replace(owner, tensors=(*owner.tensors, *links), guessed_layouts=()),) for links in cuts]
    return {path: choices for path, choices in jobs.items() if choices}, cut


def _marked_cut(layer_map: LayerMap, cut: dict[str, int]) -> dict[str, LayerPair]:
    """The pairs a probe could not try, each marked with the combinations it would have needed."""
    marked = {}
    for path, count in cut.items():
        pair = layer_map.pair_for_base(path)
        if pair is not None:
            marked[path] = replace(pair, probe_cut=count)
    return marked


class _CannotRun(Exception):
    """A layer could not run on the captured input (another input layout, or no input captured)."""


def _enclosing_pair(layer_map: LayerMap, base_path: str) -> LayerPair | None:
    """The nearest active pair whose base layer encloses ``base_path``."""
    path = base_path
    while path:
        path = path.rpartition(".")[0]
        found = layer_map.pair_for_base(path)
        if found is not None and not layer_map.ignores(base=found.base, raw=found.raw):
            return found
    return None


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


def _probe_level(
    base: tuple[FrameworkAdapter, Any],
    raw: tuple[FrameworkAdapter, Any],
    layer_map: LayerMap,
    level_path: str,
    choices: list[tuple[LayerPair, ...]],
    inputs: dict[str, Captured],
) -> dict[str, LayerPair]:
    """The one choice (versions of some pairs) under which the pair at ``level_path`` computes alike.

    Every pair inside the level is copied with each choice; the raw tensors
    are restored afterwards. Empty if no choice or several agree.

    Raises:
        _CannotRun: the raw layer cannot run on the base layer's input.
    """
    (base_adapter, base_model), (raw_adapter, raw_model) = base, raw
    level = layer_map.pair_for_base(level_path)
    if level is None or level_path not in inputs:
        raise _CannotRun(level_path)
    probed = {pair.base for choice in choices for pair in choice}
    inside = [p for p in layer_map.active_pairs() if _within(p.base, level_path) and p.base not in probed]
    expected = _run(base_adapter, base_model, level_path, inputs[level_path])
    raw_tensors = raw_adapter.named_tensors(raw_model)
    every = [*inside, *(pair for choice in choices for pair in choice)]
    touched = {t.raw for t in layer_map.with_pairs(every).tensor_pairs()} & set(raw_tensors)
    saved = {name: raw_adapter.to_numpy(raw_tensors[name]) for name in touched}
    matching = []
    try:
        for choice in choices:
            copy_weights(base_model, raw_model, layer_map.with_pairs([*inside, *choice]), base_adapter, raw_adapter)
            try:
                got = _run(raw_adapter, raw_model, level.raw, inputs[level_path])
            except Exception as error:  # any framework's error: this layer cannot take that input
                raise _CannotRun(level.raw) from error
            if _agree(expected, got):
                matching.append(choice)
    finally:
        for name, value in saved.items():
            raw_adapter.write(raw_tensors[name], value)
    if len(matching) != 1:
        return {}
    return {pair.base: replace(pair, guessed_layouts=()) for pair in matching[0]}


def _within(path: str, ancestor: str) -> bool:
    return not ancestor or path == ancestor or path.startswith(ancestor + ".")


def _guessed_shapes(
    base: tuple[FrameworkAdapter, Any], raw: tuple[FrameworkAdapter, Any], pair: LayerPair
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    return {
        tensor.base: (
            _shape(*base, join_path(pair.base, tensor.base)),
            _shape(*raw, join_path(pair.raw, tensor.raw)),
        )
        for tensor in pair.tensors
        if tensor.base in pair.guessed_layouts
    }


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


def probe_with_inputs(
    base_model: Any, raw_model: Any, layer_map: LayerMap, inputs: Any, trees: tuple[ModelTree, ModelTree]
) -> LayerMap:
    """:func:`probe_layouts` on inputs as users give them (``None``: :func:`probe_single_layers`)."""
    if inputs is None:
        return probe_single_layers(
            (adapter_for(base_model), base_model), (adapter_for(raw_model), raw_model), layer_map, trees
        )
    base_adapter = adapter_for(base_model)
    arguments = prepare(base_adapter, base_model, split_inputs(inputs)[0])
    base, raw = (base_adapter, base_model), (adapter_for(raw_model), raw_model)
    return probe_layouts(base, raw, layer_map, arguments, trees)


def probe_single_layers(
    base: tuple[FrameworkAdapter, Any],
    raw: tuple[FrameworkAdapter, Any],
    layer_map: LayerMap,
    trees: tuple[ModelTree, ModelTree],
) -> LayerMap:
    """``layer_map`` with the guessed layouts of single layers settled on synthetic inputs.

    Without the model's inputs, a pair of leaf layers whose input shape its
    tensors give away (a 2-D weight: ``[2, 3, n]`` for each of its sizes; a
    convolution's ``[out, in, k...]``: ``[1, in, k + 4...]``) is probed on
    such an input, drawn at random: the first one the base layer runs on.
    A pair whose raw layer cannot run on it, or whose probe does not single
    out one candidate, keeps its guess; so does every pair of models built
    without memory.
    """
    check_map_paths(*trees, layer_map)
    settled: dict[str, LayerPair] = {}
    layers = [pair for pair in layer_map.active_pairs() if pair.guessed_layouts and _leaf_pair(trees, pair)]
    if not layers or not all(adapter.is_materialized(model) for adapter, model in (base, raw)):
        return layer_map
    with evaluation_mode(base[0].named_layers(base[1])), evaluation_mode(raw[0].named_layers(raw[1])):
        for pair in layers:
            shapes = _guessed_shapes(base, raw, pair)
            count = prod(len(layout_candidates(*shape)) for shape in shapes.values())
            if count > MAX_COMBINATIONS:
                settled[pair.base] = replace(pair, probe_cut=count)
                continue
            captured = _first_runnable(base, pair.base, _synthetic_inputs(trees[0], pair.base))
            if captured is not None:
                choices: list[tuple[LayerPair, ...]] = [(candidate,) for candidate in _candidates(pair, shapes)]
                with suppress(_CannotRun):
                    settled.update(_probe_level(base, raw, layer_map, pair.base, choices, {pair.base: captured}))
    return layer_map.with_pairs([settled.get(pair.base, pair) for pair in layer_map.pairs])


def _leaf_pair(trees: tuple[ModelTree, ModelTree], pair: LayerPair) -> bool:
    return not children(trees[0], pair.base) and not children(trees[1], pair.raw)


def _synthetic_inputs(tree: ModelTree, path: str) -> list[Captured]:
    """Inputs the layer's tensors suggest, as captured inputs (one positional array each)."""
    rng = np.random.default_rng(0)
    shapes: list[tuple[int, ...]] = []
    for tensor in tree.nodes[path]["tensors"]:
        if len(tensor.shape) == 2:
            shapes += [(2, 3, size) for size in dict.fromkeys(tensor.shape)]
        elif len(tensor.shape) in (3, 4, 5):
            shapes.append((1, tensor.shape[1], *(size + 4 for size in tensor.shape[2:])))
    return [((rng.standard_normal(shape).astype(np.float32),), {}) for shape in dict.fromkeys(shapes)]


def _first_runnable(base: tuple[FrameworkAdapter, Any], path: str, inputs: list[Captured]) -> Captured | None:
    """The first input the base layer runs on and gives tensors for."""
    for captured in inputs:
        try:
            if _run(*base, path, captured):
                return captured
        except Exception:  # any framework's error: the layer does not take this input
            continue
    return None
