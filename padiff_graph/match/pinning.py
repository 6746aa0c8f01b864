"""Pairs the user fixes: a pinned base layer is that raw layer, whatever the matcher proposed.

PaDiff users state such pairs with ``set_layer_map``. The matcher runs as
usual; each pinned pair it did not propose is then matched on its own (the
two subtrees as models of their own, so the layers inside meet their
counterparts inside), and that result replaces every proposal touching
either subtree. Layers the replaced proposals paired outside the pinned
subtrees become unmatched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from padiff_graph.core.records import join_path
from padiff_graph.core.transforms import TensorPair
from padiff_graph.core.tree import ModelTree, is_within, preorder, subtree
from padiff_graph.errors import LayerMapError
from padiff_graph.layermap import LayerMap, LayerPair

#: matches two trees (the matcher with the caller's options and registry)
Matcher = Callable[[ModelTree, ModelTree], LayerMap]


def pin_pairs(
    layer_map: LayerMap, base: ModelTree, raw: ModelTree, pinned: Sequence[tuple[str, str]], match: Matcher
) -> LayerMap:
    """``layer_map`` with each ``(base path, raw path)`` of ``pinned`` as a pair, outermost first.

    Raises:
        LayerMapError: a pinned path the models lack, or a layer pinned twice.
    """
    _check(pinned, base, raw)
    result = layer_map
    for base_path, raw_path in sorted(pinned, key=lambda pin: pin[0].count(".") if pin[0] else -1):
        if result.raw_of(base_path) != raw_path:
            result = _splice(result, base_path, raw_path, match(subtree(base, base_path), subtree(raw, raw_path)))
        result = result.with_pairs([_as_pinned(p) if p.base == base_path else p for p in result.pairs])
    order = {path: rank for rank, path in enumerate(preorder(base))}
    return result.with_pairs(sorted(result.pairs, key=lambda pair: order[pair.base]))


def _check(pinned: Sequence[tuple[str, str]], base: ModelTree, raw: ModelTree) -> None:
    seen: dict[str, set[str]] = {"base": set(), "raw": set()}
    for base_path, raw_path in pinned:
        for side, path, tree in (("base", base_path, base), ("raw", raw_path, raw)):
            if path not in tree:
                raise LayerMapError(f"pinned {side} layer {path!r} is not in the {side} model ({tree.graph['model']})")
            if path in seen[side]:
                raise LayerMapError(f"{side} layer {path!r} is pinned twice; pin each layer to one partner")
            seen[side].add(path)


def _as_pinned(pair: LayerPair) -> LayerPair:
    return replace(pair, score=1.0, candidates=(), stage="user")


def _splice(layer_map: LayerMap, base_path: str, raw_path: str, inner: LayerMap) -> LayerMap:
    """Replace every pair touching the two subtrees by ``inner`` (their own match, relative paths)."""

    def touches(pair: LayerPair) -> bool:
        return is_within(pair.base, base_path) or is_within(pair.raw, raw_path)

    dropped = [pair for pair in layer_map.pairs if touches(pair)]
    kept = [_without_tensors_into(pair, base_path, raw_path) for pair in layer_map.pairs if not touches(pair)]
    spliced = [
        replace(pair, base=join_path(base_path, pair.base), raw=join_path(raw_path, pair.raw)) for pair in inner.pairs
    ]
    unmatched_base = [path for path in layer_map.unmatched_base if not is_within(path, base_path)]
    unmatched_base += [pair.base for pair in dropped if not is_within(pair.base, base_path)]
    unmatched_base += [join_path(base_path, path) for path in inner.unmatched_base]
    unmatched_raw = [path for path in layer_map.unmatched_raw if not is_within(path, raw_path)]
    unmatched_raw += [pair.raw for pair in dropped if not is_within(pair.raw, raw_path)]
    unmatched_raw += [join_path(raw_path, path) for path in inner.unmatched_raw]
    result = layer_map.with_pairs(kept + spliced)
    result.unmatched_base, result.unmatched_raw = unmatched_base, unmatched_raw
    return result


def _without_tensors_into(pair: LayerPair, base_path: str, raw_path: str) -> LayerPair:
    """``pair`` without the tensor pairs that reach into the pinned subtrees (now theirs to copy)."""

    def reaches(tensor: TensorPair) -> bool:
        full = tensor.prefixed(pair.base, pair.raw)
        return (full.base_constant is None and is_within(full.base, base_path)) or (
            full.raw_constant is None and is_within(full.raw, raw_path)
        )

    tensors = tuple(tensor for tensor in pair.tensors if not reaches(tensor))
    return pair if len(tensors) == len(pair.tensors) else replace(pair, tensors=tensors)
