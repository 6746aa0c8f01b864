"""Pairing the tensors inside matched layers.

A registered conversion speaks first; what it leaves is paired by name
(exact, then known aliases such as ``running_mean``/``_mean``), then by
shape with ``linear_sum_assignment`` on name similarity. Tensors still
unpaired meet later under their closest common matched layers (see
``match._pair_leftover_tensors``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from padiff_graph.core.records import TensorInfo
from padiff_graph.core.transforms import TensorPair, Transform, layout_candidates
from padiff_graph.knowledge.conversions import Conversion, LayerSide
from padiff_graph.knowledge.families import TENSOR_NAME_ALIASES
from padiff_graph.match.costs import INCOMPATIBLE, name_similarity


@dataclass
class TensorMatch:
    """The tensor pairs of one layer pair and what could not be paired."""

    pairs: list[TensorPair]
    conversion: str | None
    leftover_base: list[str] = field(default_factory=list)
    leftover_raw: list[str] = field(default_factory=list)
    init: str | None = None


def shape_transform(base_shape: tuple[int, ...], raw_shape: tuple[int, ...]) -> Transform | None:
    """The layout change implied by shapes alone (the likeliest of :func:`layout_candidates`), or none."""
    candidates = layout_candidates(base_shape, raw_shape)
    return candidates[0] if candidates else None


def pair_layer_tensors(base: LayerSide, raw: LayerSide, conversion: Conversion | None) -> TensorMatch:
    """Pair two matched layers' tensors (own ones, or the subtree's for covering conversions).

    An opaque init (a PaDiff special init) copies the whole subtree itself:
    no tensor pairs, nothing left over.
    """
    if conversion is not None and conversion.init is not None:
        return TensorMatch(pairs=[], conversion=conversion.name, init=conversion.init_reference)
    pairs = conversion.tensor_pairs(base, raw) if conversion is not None else []
    # what a conversion leaves of a layer's own tensors is paired by name and shape; descendants'
    # tensors it does not pair belong to the descendants' own pairs
    scope_base, scope_raw = base.tensors, raw.tensors
    used_base = {pair.base for pair in pairs}
    used_raw = {pair.raw for pair in pairs}
    free_base = {name: info for name, info in scope_base.items() if name not in used_base}
    free_raw = {name: info for name, info in scope_raw.items() if name not in used_raw}
    pairs.extend(pair_by_name_and_shape(free_base, free_raw))
    used_base = {pair.base for pair in pairs}
    used_raw = {pair.raw for pair in pairs}
    return TensorMatch(
        pairs=pairs,
        conversion=conversion.name if conversion is not None else None,
        leftover_base=[name for name in scope_base if name not in used_base],
        leftover_raw=[name for name in scope_raw if name not in used_raw],
    )


def guessed_layouts(base: LayerSide, raw: LayerSide, found: TensorMatch) -> tuple[str, ...]:
    """Base tensors whose transform only shapes chose, where another fits as well.

    Across frameworks a square 2-D weight of a class no conversion knows may
    be stored ``[out, in]`` on one side and ``[in, out]`` on the other (a
    Megatron-style parallel linear, a LoRA layer holding its base weight):
    identity and transpose both fit, and only running the layers can tell.
    """
    if found.conversion is not None or found.init is not None or base.framework == raw.framework:
        return ()
    guessed = []
    for pair in found.pairs:
        base_tensor = base.tensors.get(pair.base) or base.subtree_tensors.get(pair.base)
        raw_tensor = raw.tensors.get(pair.raw) or raw.subtree_tensors.get(pair.raw)
        if pair.has_constant or base_tensor is None or raw_tensor is None or pair.transform.base_index is not None:
            continue
        if len(layout_candidates(base_tensor.shape, raw_tensor.shape)) > 1:
            guessed.append(pair.base)
    return tuple(guessed)


def pair_by_name_and_shape(base: dict[str, TensorInfo], raw: dict[str, TensorInfo]) -> list[TensorPair]:
    """Pairs by equal or aliased names first, then by shape with name similarity breaking ties."""
    pairs: list[TensorPair] = []
    free_raw = dict(raw)
    free_base: dict[str, TensorInfo] = {}
    for name, info in base.items():
        for candidate in (name, TENSOR_NAME_ALIASES.get(name)):
            if candidate in free_raw:
                transform = shape_transform(info.shape, free_raw[candidate].shape)
                if transform is not None:
                    pairs.append(TensorPair(name, candidate, transform))
                    del free_raw[candidate]
                    break
        else:
            free_base[name] = info
    if not free_base or not free_raw:
        return pairs
    base_names, raw_names = list(free_base), list(free_raw)
    costs = np.full((len(base_names), len(raw_names)), INCOMPATIBLE)
    for i, base_name in enumerate(base_names):
        for j, raw_name in enumerate(raw_names):
            if shape_transform(free_base[base_name].shape, free_raw[raw_name].shape) is not None:
                costs[i, j] = 1.0 - name_similarity(base_name, raw_name)
    for i, j in zip(*linear_sum_assignment(costs), strict=True):
        if costs[i, j] < INCOMPATIBLE:
            transform = shape_transform(free_base[base_names[i]].shape, free_raw[raw_names[j]].shape)
            assert transform is not None
            pairs.append(TensorPair(base_names[i], raw_names[j], transform))
    return pairs
