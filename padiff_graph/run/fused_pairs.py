"""A fused layer against its parts: which layers form one, and how their records join.

The map records a fused ``qkv_proj`` against ``q_proj``/``k_proj``/``v_proj``
(or ``gate_up_fused_proj`` against ``gate_proj``/``up_proj``, either side
fused) as tensor pairs that cut each fused tensor into consecutive regions
(:mod:`padiff_graph.core.fused`), held by the nearest pair enclosing both
sides. A diff compares the fused layer's output with its parts' outputs
joined along the axis the fused output is longer in (output gradients
likewise), as one comparison naming both sides; the parts side is named
``parent.{q_proj,k_proj,v_proj}``. Their weight gradients are compared
through the same regions the copy wrote, under the same names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np

from padiff_graph.core.records import join_path
from padiff_graph.core.transforms import TensorPair
from padiff_graph.core.tree import relative_path
from padiff_graph.layermap import LayerMap, LayerPair


@dataclass(frozen=True)
class FusedPair:
    """One fused layer and its parts in the other model, the parts in the fused tensor's order."""

    base: tuple[str, ...]
    raw: tuple[str, ...]

    @property
    def base_fused(self) -> bool:
        """True if the base layer is the fused one (the raw side holds the parts)."""
        return len(self.base) == 1

    @property
    def base_name(self) -> str:
        """The base side as reports name it: the fused layer's path, or ``parent.{part,part}``."""
        return group_name(self.base)

    @property
    def raw_name(self) -> str:
        return group_name(self.raw)

    def part_key(self, index: int) -> str:
        """The record key of the raw side's part ``index`` before the parts are joined (never reported)."""
        return f"{self.base_name}#{index}"

    def tensor_label(self, base_tensor: str) -> str:
        """A base tensor's name relative to the layer holding the base side."""
        return relative_path(_parent(self.base), base_tensor)


class TensorPlaces:
    """Where a tensor pair's comparisons are reported: under the fused pair whose layers hold its
    two tensors, else under the layer pair that holds the tensor pair."""

    def __init__(self, fused: Sequence[FusedPair]) -> None:
        self._by_layers = {(base, raw): pair for pair in fused for base in pair.base for raw in pair.raw}

    def place(self, pair: LayerPair, tensor: TensorPair) -> tuple[str, str, str]:
        """``(base name, raw name, tensor label)`` of ``tensor``, a tensor pair of ``pair``."""
        base_tensor = join_path(pair.base, tensor.base)
        owners = (_owner(base_tensor), _owner(join_path(pair.raw, tensor.raw)))
        fused = self._by_layers.get(owners)
        if fused is None:
            return pair.base, pair.raw, tensor.base
        return fused.base_name, fused.raw_name, fused.tensor_label(base_tensor)


def group_name(paths: Sequence[str]) -> str:
    """``a.b.q`` for one path; ``a.b.{q,k,v}`` for siblings; ``{a.q,b.k}`` otherwise."""
    if len(paths) == 1:
        return paths[0]
    parent = _parent(paths)
    names = [relative_path(parent, path) for path in paths]
    return join_path(parent, "{" + ",".join(names) + "}")


def group_members(name: str) -> tuple[str, ...]:
    """The layer paths a :func:`group_name` names (``name`` itself when it names one layer)."""
    if not name.endswith("}") or "{" not in name:
        return (name,)
    parent, _, inner = name[:-1].rpartition("{")
    return tuple(join_path(parent.rstrip("."), part) for part in inner.split(","))


def _parent(paths: Sequence[str]) -> str:
    """The one parent of ``paths`` (the layer itself for one path), or ``""`` when they have several."""
    if len(paths) == 1:
        return paths[0].rpartition(".")[0]
    parents = {path.rpartition(".")[0] for path in paths}
    return parents.pop() if len(parents) == 1 else ""


def _owner(tensor_name: str) -> str:
    return tensor_name.rpartition(".")[0]


def fused_pairs(layer_map: LayerMap) -> list[FusedPair]:
    """The fused layers the map's cut tensor pairs describe, each against its parts.

    A fused layer is one layer of one side whose tensors are cut into the tensors
    of two or more layers of the other side, none of them in a pair of its own.
    Its parts are ordered by where their regions start in one fused tensor that
    reaches every part; where none does, the layers are not taken as fused.
    """
    links = nx.Graph()
    starts: dict[tuple[str, str], dict[str, tuple[int, ...]]] = {}  # (side, fused tensor) -> part layer -> start
    for pair in layer_map.active_pairs():
        for tensor in pair.tensors:
            cut_base, cut_raw = tensor.transform.base_index, tensor.transform.raw_index
            cut = cut_base or cut_raw
            if tensor.has_constant or cut is None or (cut_base and cut_raw):
                continue  # only cuts: one side's region against the other's whole tensor
            base_name, raw_name = join_path(pair.base, tensor.base), join_path(pair.raw, tensor.raw)
            links.add_edge(("base", _owner(base_name)), ("raw", _owner(raw_name)))
            side, fused, part = ("base", base_name, raw_name) if cut_base else ("raw", raw_name, base_name)
            starts.setdefault((side, fused), {}).setdefault(_owner(part), tuple(s.start or 0 for s in cut))
    paired = {("base", pair.base) for pair in layer_map.pairs} | {("raw", pair.raw) for pair in layer_map.pairs}
    found = []
    for component in nx.connected_components(links):
        sides = {side: sorted(path for s, path in component if s == side) for side in ("base", "raw")}
        if component & paired or min(map(len, sides.values())) != 1 or len(component) < 3:
            continue
        fused_side = "base" if len(sides["base"]) == 1 else "raw"
        parts = set(sides["raw" if fused_side == "base" else "base"])
        orders = [
            sorted(by_part, key=by_part.__getitem__)
            for (side, name), by_part in starts.items()
            if side == fused_side and _owner(name) == sides[fused_side][0] and set(by_part) == parts
        ]
        if orders:
            fused_layer, ordered = (sides[fused_side][0],), tuple(orders[0])
            found.append(FusedPair(fused_layer, ordered) if fused_side == "base" else FusedPair(ordered, fused_layer))
    return found


def concat_axis(fused_shape: tuple[int, ...], part_shapes: Sequence[tuple[int, ...]]) -> int | None:
    """The axis along which the parts, joined, take the fused output's shape; ``None`` if none does."""

    def fits(axis: int) -> bool:
        same_elsewhere = all(
            len(shape) == len(fused_shape) and all(shape[i] == fused_shape[i] for i in range(len(shape)) if i != axis)
            for shape in part_shapes
        )
        return same_elsewhere and sum(shape[axis] for shape in part_shapes) == fused_shape[axis]

    return next((axis for axis in range(len(fused_shape)) if fits(axis)), None)


def joined(fused_shape: tuple[int, ...], parts: Sequence[np.ndarray]) -> np.ndarray:
    """The parts' values joined as the fused layer's value of ``fused_shape`` would hold them; parts
    that join along no axis come back flattened end to end (and fail the comparison on their shape)."""
    axis = concat_axis(fused_shape, [part.shape for part in parts])
    if axis is None:
        return np.concatenate([part.ravel() for part in parts])
    return np.concatenate(parts, axis=axis)


def with_fused(descendants: dict[str, set[str]], fused: Sequence[FusedPair]) -> dict[str, set[str]]:
    """``descendants`` (base path -> base paths below it) with each fused pair's base name below its ancestors."""
    extended = {path: set(below) for path, below in descendants.items()}
    for pair in fused:
        if pair.base_fused:
            continue
        path = pair.base[0]
        while path:
            path = path.rpartition(".")[0]
            extended.setdefault(path, set()).add(pair.base_name)
    return extended
