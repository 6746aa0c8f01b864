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
from padiff_graph.core.transforms import IDENTITY, TRANSPOSE, TensorPair, Transform
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
    """The layout change implied by shapes alone: identity, 2-D transpose, or none."""
    if base_shape == raw_shape:
        return IDENTITY
    if len(base_shape) == 2 and base_shape[::-1] == raw_shape:
        return TRANSPOSE
    return None


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
