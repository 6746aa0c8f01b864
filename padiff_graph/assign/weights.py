"""Copying weights base -> raw through the layer map, then verifying the copy.

Every tensor pair's transform is applied to the base value (a region of it,
for fused layouts) and written into the raw tensor (a region of it, for
split layouts); each raw tensor is read back and compared bit for bit with
what should be there. A whole-tensor pair moves each byte once: the base
tensor is read in place, the transform is a view of it, the view is written
into the tensor's own memory tile by tile, and each tile is read back and
compared as soon as it is written, while both are still in cache
(``core.arrays``); the tensor read through its framework must then show that
memory, and raw tensors that share memory are read back again once all are
written. A tensor numpy cannot hold in place (on a GPU, in bfloat16) is
written by its framework and read back as a copy.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from padiff_graph.assign.inits import run_init
from padiff_graph.assign.verify import OutputCheck
from padiff_graph.core import arrays
from padiff_graph.core.findings import Code, Finding
from padiff_graph.core.records import Severity
from padiff_graph.core.transforms import TensorPair, Transform, constant_value
from padiff_graph.errors import AssignError
from padiff_graph.frameworks.base import FrameworkAdapter
from padiff_graph.knowledge.conversions import ConversionRegistry
from padiff_graph.knowledge.registry import DEFAULT_REGISTRY
from padiff_graph.layermap import LayerMap


@dataclass
class AssignReport:
    """What the copy did: counts, raw tensors that nothing wrote, and (given inputs) whether outputs agree."""

    tensors: int = 0
    layer_pairs: int = 0
    custom_inits: list[str] = field(default_factory=list)
    untouched_raw: list[str] = field(default_factory=list)
    outputs: OutputCheck | None = None


GUESS_CODES = (Code.AMBIGUOUS_MATCH, Code.AMBIGUOUS_TRANSFORM)
"""Findings about a pair or a layout only definition order or luck decided: a copy stops at them."""


def blocking_findings(findings: list[Finding], accept_guesses: bool = False) -> list[Finding]:
    """Findings that make a correct copy impossible, or (unless ``accept_guesses``) a guess."""
    return [
        f
        for f in findings
        if (f.code in (Code.SHAPE_MISMATCH, Code.NEEDS_SPECIAL_INIT) and f.severity is Severity.ERROR)
        or (f.code in GUESS_CODES and f.severity is not Severity.INFO and not accept_guesses)
    ]


def raise_for_blocking(findings: list[Finding], accept_guesses: bool = False) -> None:
    """Raise :class:`AssignError` naming the first pair the copy cannot convert, or would only guess.

    Args:
        accept_guesses: copy through ``ambiguous-match`` / ``ambiguous-transform``
            findings as the map has them (the user takes the guess).
    """
    blocking = blocking_findings(findings, accept_guesses)
    if not blocking:
        return
    first = blocking[0]
    more = f" (and {len(blocking) - 1} more)" if len(blocking) > 1 else ""
    if first.code in GUESS_CODES:
        raise AssignError(
            f"will not copy base {first.base!r} into raw {first.raw!r}{more}: {first.message}; "
            f"the copy would be a guess ({first.code}). Settle it: {first.hint}; "
            "or accept the guess explicitly (accept_guesses=True, --accept-guesses)"
        )
    hint = first.hint.splitlines()[0]
    if hint.endswith(":"):  # the hint goes on with a code stub, which a one-line error cannot hold
        hint = hint[: hint.rfind(". ") + 1] + " `padiff-graph check BASE RAW` prints a stub to start from"
    raise AssignError(
        f"cannot copy base {first.base!r} into raw {first.raw!r}{more}: {first.message}. Missing conversion: {hint}"
    )


def copy_weights(
    base_model: Any,
    raw_model: Any,
    layer_map: LayerMap,
    base_adapter: FrameworkAdapter,
    raw_adapter: FrameworkAdapter,
    registry: ConversionRegistry = DEFAULT_REGISTRY,
) -> AssignReport:
    """Copy every tensor pair of ``layer_map`` and verify the result.

    ``const(...)`` sides fill a raw tensor with a neutral value, or require
    the base tensor to hold it; opaque ``init`` functions copy their pair
    themselves (run backwards when registered the other way round).
    """
    base_tensors = base_adapter.named_tensors(base_model)
    raw_tensors = raw_adapter.named_tensors(raw_model)
    report = AssignReport(layer_pairs=len(layer_map.active_pairs()))
    for pair in layer_map.active_pairs():
        if pair.init:
            base_layers = base_adapter.named_layers(base_model)
            raw_layers = raw_adapter.named_layers(raw_model)
            run_init(pair.init, base_layers[pair.base], raw_layers[pair.raw], base_adapter, raw_adapter, registry)
            report.custom_inits.append(pair.base)
            continue
        for tensor in pair.tensors:
            full = tensor.prefixed(pair.base, pair.raw)
            if full.raw_constant is not None:
                _check_constant(base_adapter, base_tensors[full.base], full, pair.raw)
                report.tensors += 1
    writes = planned_writes(layer_map)
    memories = {name: raw_adapter.host_memory(raw_tensors[name]) for name in writes}
    shared = _sharing_memory(memories)
    written_over: list[tuple[str, Any, np.ndarray]] = []  # what a later write into the same memory may change
    for raw_name, parts in writes.items():
        target = raw_tensors[raw_name]
        expected = _read(raw_adapter, target, raw_name, "raw", copy=True) if _partial(parts) else None
        for base_name, transform in parts:
            value = _source(base_adapter, base_tensors, base_name, transform, tuple(target.shape))
            expected = _place(expected, value, transform, base_name, raw_name, tuple(target.shape))
        assert expected is not None
        _write_verified(raw_adapter, target, raw_name, expected, memories[raw_name])
        if raw_name in shared:
            written_over.append((raw_name, target, expected))
        report.tensors += len(parts)
    for raw_name, target, expected in written_over:  # each must still hold its own values once all are written
        _read_back(raw_adapter, target, raw_name, expected)
    report.untouched_raw = [name for name in raw_tensors if name not in writes]
    return report


def planned_writes(layer_map: LayerMap) -> dict[str, list[tuple[str, Transform]]]:
    """Raw tensor name -> the base tensors (or constants) written into it, each with its transform
    (pairs copied by an opaque ``init`` function, and raw tensors the base implies a constant for, aside)."""
    writes: dict[str, list[tuple[str, Transform]]] = defaultdict(list)
    for pair in layer_map.active_pairs():
        if pair.init:
            continue
        for tensor in pair.tensors:
            full = tensor.prefixed(pair.base, pair.raw)
            if full.raw_constant is None:
                writes[full.raw].append((full.base, tensor.transform))
    return writes


def _source(
    adapter: FrameworkAdapter, tensors: dict[str, Any], name: str, transform: Transform, raw_shape: tuple[int, ...]
) -> np.ndarray:
    """The value a pair writes: the transformed base tensor, or a constant filling the raw region."""
    value = constant_value(name)
    if value is not None:
        return np.full(transform.region_shape(raw_shape), value, dtype=np.float32)
    return transform.view(_read(adapter, tensors[name], name, "base"))


def _check_constant(adapter: FrameworkAdapter, tensor: Any, pair: TensorPair, raw_layer: str) -> None:
    """A base tensor the raw layer lacks must hold the neutral value the raw layer implies."""
    value = _read(adapter, tensor, pair.base, "base")
    region = value[pair.transform.base_index] if pair.transform.base_index is not None else value
    if not np.all(region == pair.raw_constant):
        raise AssignError(
            f"base tensor {pair.base!r} holds values other than {pair.raw_constant:g}, and raw layer "
            f"{raw_layer!r} has no tensor to hold them; construct the raw layer with that tensor "
            "(bias=True, affine=True, ...)"
        )


def _partial(parts: list[tuple[str, Transform]]) -> bool:
    return any(transform.raw_index is not None for _, transform in parts)


def _read(adapter: FrameworkAdapter, tensor: Any, name: str, side: str, copy: bool = False) -> np.ndarray:
    try:
        return adapter.to_numpy(tensor, copy=copy)
    except ValueError as error:
        raise AssignError(
            f"{side} tensor {name!r} cannot be read: {error}; build the model with real weights to copy them"
        ) from None


def _place(
    current: np.ndarray | None,
    value: np.ndarray,
    transform: Transform,
    base_name: str,
    raw_name: str,
    raw_shape: tuple[int, ...],
) -> np.ndarray:
    """Put ``value`` where the transform says inside the raw tensor."""
    region_shape = transform.region_shape(raw_shape)
    if value.shape != region_shape:
        raise AssignError(
            f"cannot copy base {base_name!r} into raw {raw_name!r}: "
            f"{transform.describe(base_name, raw_name)} gives shape {list(value.shape)}, "
            f"the raw side holds {list(region_shape)}; fix the transform in the map or register a conversion"
        )
    if transform.raw_index is None:
        return value
    assert current is not None
    arrays.copy_into(current[transform.raw_index], value)
    return current


def _write_verified(
    adapter: FrameworkAdapter, target: Any, name: str, expected: np.ndarray, memory: np.ndarray | None
) -> None:
    """Write ``expected`` into raw tensor ``target`` and read it back, bit for bit. Into the tensor's own host
    ``memory``, each piece is read back as it is written (:func:`~padiff_graph.core.arrays.copy_checked`), and
    the tensor, read through its framework, must show that memory; else the framework writes and is read back."""
    if memory is not None and memory.shape == expected.shape:
        held = arrays.copy_checked(memory, expected)
        if held and _same_memory(adapter.to_numpy(target, copy=False), memory):
            return
    else:
        adapter.write(target, expected)
    _read_back(adapter, target, name, expected)


def _read_back(adapter: FrameworkAdapter, target: Any, name: str, expected: np.ndarray) -> None:
    """Raw tensor ``target``, read through its framework, holds ``expected`` bit for bit (:func:`_verify`)."""
    _verify(name, adapter.to_numpy(target, copy=False), adapter.dtype_name(target), expected)


def _sharing_memory(memories: dict[str, np.ndarray | None]) -> set[str]:
    """Names of the tensors whose host memory overlaps another's (two parameters viewing one storage): each is
    read back again once every tensor is written, since a copy verified as it is written says nothing about a
    later write into the same bytes."""
    spans = []
    for name, memory in memories.items():
        if memory is not None and memory.nbytes:
            start = memory.__array_interface__["data"][0]
            spans.append((start, start + memory.nbytes, name))
    shared: set[str] = set()
    reach, furthest = -1, ""  # the end of the spans seen so far that reaches furthest, and whose it is
    for start, end, name in sorted(spans):
        if start < reach:
            shared.update((name, furthest))
        if end > reach:
            reach, furthest = end, name
    return shared


def _same_memory(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether ``a`` and ``b`` are views of the same bytes, laid out alike."""
    layout = (a.__array_interface__["data"][0], a.shape, a.strides, a.dtype)
    return layout == (b.__array_interface__["data"][0], b.shape, b.strides, b.dtype)


def _verify(name: str, written: np.ndarray, dtype: str, expected: np.ndarray) -> None:
    """Raw tensor ``name``, read back as ``written`` and stored in ``dtype``, holds ``expected`` bit for bit."""
    wanted = expected if expected.dtype.name == dtype else _as_stored(expected, dtype)
    if not arrays.equal(written, wanted):
        raise AssignError(f"raw tensor {name!r} does not hold the copied values after the copy (verification failed)")


def _as_stored(value: np.ndarray, dtype: str) -> np.ndarray:
    """``value`` as the raw tensor stores it, read back the way ``to_numpy`` does."""
    if dtype == "bfloat16":
        bits = np.ascontiguousarray(value, dtype=np.float32).view(np.uint32)
        rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
        return rounded.view(np.float32)
    return value.astype(np.dtype(dtype))
