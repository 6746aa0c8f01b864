"""Checking a layer map against the two models' trees before anything uses it."""

from __future__ import annotations

from padiff_graph.core.tree import ModelTree, full_tensor_names
from padiff_graph.errors import LayerMapError
from padiff_graph.layermap.layer_map import LayerMap


def check_map_paths(base: ModelTree, raw: ModelTree, layer_map: LayerMap) -> None:
    """Raise :class:`LayerMapError` for map entries naming layers or tensors that do not exist."""
    base_tensors = full_tensor_names(base)
    raw_tensors = full_tensor_names(raw)
    for pair in layer_map.pairs:
        for side, tree, path in (("base", base, pair.base), ("raw", raw, pair.raw)):
            if path not in tree:
                raise LayerMapError(
                    f"the map pairs {side} layer {path!r}, which the {side} model "
                    f"({tree.graph['model']}) does not have; fix the path or run suggest-map again"
                )
        for tensor in pair.tensors:
            full_pair = tensor.prefixed(pair.base, pair.raw)
            for side, index, full, fixed in (
                ("base", base_tensors, full_pair.base, full_pair.base_constant),
                ("raw", raw_tensors, full_pair.raw, full_pair.raw_constant),
            ):
                if fixed is None and full not in index:
                    raise LayerMapError(
                        f"the map's pair {pair.base!r} -> {pair.raw!r} names {side} tensor {full!r}, "
                        f"which does not exist"
                    )
    for side, tree, paths in (("base", base, layer_map.ignore_base), ("raw", raw, layer_map.ignore_raw)):
        for path in paths:
            if path not in tree:
                raise LayerMapError(f"the map ignores {side} layer {path!r}, which the {side} model does not have")
