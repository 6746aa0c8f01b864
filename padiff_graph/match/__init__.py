"""The matcher: two model trees in, a :class:`~padiff_graph.layermap.LayerMap` out.

A pipeline of named stages over one mapping store (see ``stages.py``):
structural-hash anchors, roots, bottom-up containers, bipartite recovery
inside matched pairs, an exact tree edit distance on small leftovers, and
wrapper pairing; then tensors are paired inside every layer pair. The
matcher holds no class-specific logic: families and conversions come from
``padiff_graph.knowledge`` and can be overridden.
"""

from __future__ import annotations

from padiff_graph.knowledge.conversions import DEFAULT_REGISTRY, ConversionRegistry
from padiff_graph.layermap import LayerMap, LayerPair
from padiff_graph.match.costs import Scorer, layer_side
from padiff_graph.match.features import TreeFeatures
from padiff_graph.match.options import MatchOptions
from padiff_graph.match.stages import (
    anchor_identical_subtrees,
    bottom_up_containers,
    drop_covered_descendants,
    match_roots,
    order_leftovers,
    pair_wrappers,
    recover_children,
)
from padiff_graph.match.store import MappingStore
from padiff_graph.match.tensors import TensorMatch, absorb_children, pair_layer_tensors
from padiff_graph.records import TensorInfo, join_path
from padiff_graph.transforms import TensorPair
from padiff_graph.tree import ModelTree

__all__ = ["MatchOptions", "match_trees"]


def match_trees(
    base: ModelTree,
    raw: ModelTree,
    options: MatchOptions | None = None,
    registry: ConversionRegistry = DEFAULT_REGISTRY,
) -> LayerMap:
    """Propose the layer map between two exported model trees.

    Example::

        >>> layer_map = match_trees(export_tree(torch_model), export_tree(paddle_model))
        >>> [(pair.base, pair.raw) for pair in layer_map.pairs][:2]
        [('', ''), ('conv1', 'conv1')]
    """
    atomic = registry.covering_names()
    scorer = Scorer(TreeFeatures(base, atomic), TreeFeatures(raw, atomic), registry, options or MatchOptions())
    store = MappingStore()
    anchor_identical_subtrees(scorer, store)
    match_roots(scorer, store)
    bottom_up_containers(scorer, store)
    recover_children(scorer, store)
    order_leftovers(scorer, store)
    pair_wrappers(scorer, store)
    covered_base, covered_raw = drop_covered_descendants(scorer, store)
    return _assemble(scorer, store, covered_base, covered_raw)


def _assemble(scorer: Scorer, store: MappingStore, covered_base: set[str], covered_raw: set[str]) -> LayerMap:
    base, raw = scorer.base, scorer.raw
    tensor_matches: dict[str, TensorMatch] = {}
    for base_path, match in store.by_base.items():
        tensor_matches[base_path] = pair_layer_tensors(
            layer_side(base, base_path), layer_side(raw, match.raw), scorer.conversion(base_path, match.raw)
        )
    absorbed_base, absorbed_raw = _absorb(scorer, store, tensor_matches)
    pairs = []
    for base_path in base.order:
        found = store.by_base.get(base_path)
        if found is None:
            continue
        tensors = tensor_matches[base_path]
        pairs.append(
            LayerPair(
                base=base_path,
                raw=found.raw,
                score=found.score,
                tensors=tuple(tensors.pairs),
                conversion=tensors.conversion,
                init=tensors.init,
                candidates=found.candidates,
                stage=found.stage,
            )
        )
    skip_base = covered_base | absorbed_base
    skip_raw = covered_raw | absorbed_raw
    return LayerMap(
        pairs=pairs,
        unmatched_base=[p for p in base.order if not store.has_base(p) and p not in skip_base],
        unmatched_raw=[p for p in raw.order if not store.has_raw(p) and p not in skip_raw],
        base_framework=base.framework,
        raw_framework=raw.framework,
        base_model=base.tree.graph["model"],
        raw_model=raw.tree.graph["model"],
    )


def _absorb(scorer: Scorer, store: MappingStore, tensor_matches: dict[str, TensorMatch]) -> tuple[set[str], set[str]]:
    """Pair leftover tensors held directly by a layer with unmatched one-tensor children."""
    base, raw = scorer.base, scorer.raw
    absorbed_base: set[str] = set()
    absorbed_raw: set[str] = set()
    for base_path, match in store.by_base.items():
        tensors = tensor_matches[base_path]
        if tensors.leftover_base:
            candidates = _single_tensor_children(raw, match.raw, store.has_raw, absorbed_raw)
            own = {t.name: t for t in base.own[base_path]}
            for name, child, tensor_name, transform in absorb_children(own, tensors.leftover_base, candidates):
                tensors.pairs.append(TensorPair(name, f"{child}.{tensor_name}", transform))
                tensors.leftover_base.remove(name)
                absorbed_raw.add(join_path(match.raw, child))
        if tensors.leftover_raw:
            candidates = _single_tensor_children(base, base_path, store.has_base, absorbed_base)
            own = {t.name: t for t in raw.own[match.raw]}
            for name, child, tensor_name, transform in absorb_children(own, tensors.leftover_raw, candidates):
                tensors.pairs.append(TensorPair(f"{child}.{tensor_name}", name, transform.inverse()))
                tensors.leftover_raw.remove(name)
                absorbed_base.add(join_path(base_path, child))
    return absorbed_base, absorbed_raw


def _single_tensor_children(
    features: TreeFeatures, path: str, is_matched: object, taken: set[str]
) -> dict[str, tuple[str, TensorInfo]]:
    """Unmatched leaf layers under ``path`` holding exactly one tensor, by relative path."""
    result = {}
    prefix = f"{path}." if path else ""
    for child in features.kept_children[path]:
        if is_matched(child) or child in taken or not features.is_leaf(child):  # type: ignore[operator]
            continue
        if len(features.own[child]) == 1:
            result[child[len(prefix) :]] = (features.own[child][0].name, features.own[child][0])
    return result
