"""The matcher: two model trees in, a :class:`~padiff_graph.layermap.LayerMap` out.

A pipeline of named stages over one mapping store (see ``stages.py``):
structural-hash anchors, roots, bottom-up containers, bipartite recovery
inside matched pairs, an exact tree edit distance on small leftovers, and
wrapper pairing; then tensors are paired inside every layer pair. The
matcher holds no class-specific logic: families and conversions come from
``padiff_graph.knowledge`` and can be overridden.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from padiff_graph.core.progress import task
from padiff_graph.core.records import TensorInfo, join_path
from padiff_graph.core.runtime import paused_gc
from padiff_graph.core.tree import ModelTree, is_within, relative_path
from padiff_graph.knowledge.conversions import ConversionRegistry, layer_side
from padiff_graph.knowledge.registry import DEFAULT_REGISTRY
from padiff_graph.layermap import LayerMap, LayerPair
from padiff_graph.match.costs import Scorer
from padiff_graph.match.features import TreeFeatures
from padiff_graph.match.mismatch import pair_mismatched_leaves
from padiff_graph.match.options import MatchOptions
from padiff_graph.match.pinning import pin_pairs
from padiff_graph.match.stages import (
    align_wrapper_chains,
    anchor_identical_subtrees,
    bottom_up_containers,
    drop_covered_descendants,
    drop_inconsistent_containers,
    match_roots,
    order_leftovers,
    recover_children,
    recover_leftovers,
    settle_candidates,
)
from padiff_graph.match.store import MappingStore, Match
from padiff_graph.match.tensors import TensorMatch, guessed_layouts, pair_by_name_and_shape, pair_layer_tensors
from padiff_graph.match.ties import pair_tied_layers

__all__ = ["MatchOptions", "match_trees"]

#: the stages, in the order they run on one mapping store
#: The matcher's stages in order; each reads and extends one mapping store.
STAGES = (
    anchor_identical_subtrees,
    match_roots,
    bottom_up_containers,
    recover_children,
    recover_leftovers,
    drop_inconsistent_containers,
    order_leftovers,
    align_wrapper_chains,
    pair_mismatched_leaves,
)


def match_trees(
    base: ModelTree,
    raw: ModelTree,
    options: MatchOptions | None = None,
    registry: ConversionRegistry = DEFAULT_REGISTRY,
    pinned: Sequence[tuple[str, str]] = (),
) -> LayerMap:
    """Propose the layer map between two exported model trees.

    ``pinned`` ``(base path, raw path)`` pairs are kept whatever the matcher
    would propose; the layers inside them are matched to each other
    (:mod:`padiff_graph.match.pinning`).

    Example::

        >>> layer_map = match_trees(export_tree(torch_model), export_tree(paddle_model))
        >>> [(pair.base, pair.raw) for pair in layer_map.pairs][:2]
        [('', ''), ('conv1', 'conv1')]
    """
    atomic = registry.covering_names()
    with task("matching layers", total=len(STAGES)) as advance, paused_gc():
        scorer = Scorer(TreeFeatures(base, atomic), TreeFeatures(raw, atomic), registry, options or MatchOptions())
        store = MappingStore()
        for stage in STAGES:
            stage(scorer, store)
            advance()
        covered_base, covered_raw = drop_covered_descendants(scorer, store)
        settle_candidates(store)
        layer_map = pair_tied_layers(base, raw, _assemble(scorer, store, covered_base, covered_raw), registry)
    if pinned:
        return pin_pairs(layer_map, base, raw, pinned, lambda b, r: match_trees(b, r, options, registry))
    return layer_map


def _assemble(scorer: Scorer, store: MappingStore, covered_base: set[str], covered_raw: set[str]) -> LayerMap:
    base, raw = scorer.base, scorer.raw
    tensor_matches: dict[str, TensorMatch] = {}
    for base_path, match in store.by_base.items():
        tensor_matches[base_path] = pair_layer_tensors(
            layer_side(base.tree, base_path), layer_side(raw.tree, match.raw), scorer.conversion(base_path, match.raw)
        )
    absorbed_base, absorbed_raw = _pair_leftover_tensors(scorer, store, tensor_matches, covered_base, covered_raw)
    guessed = {
        path: guessed_layouts(layer_side(base.tree, path), layer_side(raw.tree, match.raw), tensor_matches[path])
        for path, match in store.by_base.items()
    }
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
                guessed_layouts=guessed[base_path],
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


def _pair_leftover_tensors(
    scorer: Scorer,
    store: MappingStore,
    tensor_matches: dict[str, TensorMatch],
    covered_base: set[str],
    covered_raw: set[str],
) -> tuple[set[str], set[str]]:
    """Pair tensors nothing paired yet under their closest common matched layers, deepest first.

    Covers a raw ``nn.Parameter`` against an ``Embedding``'s weight
    (``query_embed`` -> ``query_embed.weight``) and a tensor moved to another
    layer (``pos_embed`` -> ``encoder.pos_embedding``). Returns the unmatched
    layers whose tensors all found a partner: they are absorbed, not unmatched.
    """
    base, raw = scorer.base, scorer.raw
    base_left = _leftover_tensors(base, store.by_base, tensor_matches, "base", covered_base)
    raw_left = _leftover_tensors(raw, store.by_raw, tensor_matches, "raw", covered_raw)
    if not base_left or not raw_left:
        return set(), set()
    anchors = {ancestor for owner, _ in base_left.values() for ancestor in _ancestors(base, owner)}
    for base_anchor in sorted((a for a in anchors if store.has_base(a)), key=lambda p: -p.count(".") if p else 1):
        raw_anchor = store.raw_of(base_anchor) or ""
        base_here = {
            relative_path(base_anchor, name): info
            for name, (owner, info) in base_left.items()
            if is_within(owner, base_anchor)
        }
        raw_here = {
            relative_path(raw_anchor, name): info
            for name, (owner, info) in raw_left.items()
            if is_within(owner, raw_anchor)
        }
        if not base_here or not raw_here:
            continue
        for pair in pair_by_name_and_shape(base_here, raw_here):
            tensor_matches[base_anchor].pairs.append(pair)
            del base_left[join_path(base_anchor, pair.base)]
            del raw_left[join_path(raw_anchor, pair.raw)]
    return (
        _absorbed(base, store.has_base, covered_base, base_left),
        _absorbed(raw, store.has_raw, covered_raw, raw_left),
    )


def _leftover_tensors(
    features: TreeFeatures,
    matches: dict[str, Match],
    tensor_matches: dict[str, TensorMatch],
    side: str,
    covered: set[str],
) -> dict[str, tuple[str, TensorInfo]]:
    """Full tensor name -> (owner, record) for tensors no pair copies yet."""
    left: dict[str, tuple[str, TensorInfo]] = {}
    for path in features.order:
        if path in covered:
            continue
        if path in matches:
            match = matches[path]
            tensors = tensor_matches[match.base]
            names = tensors.leftover_base if side == "base" else tensors.leftover_raw
            owned = {t.name: t for t in features.own[path]}
            left.update({join_path(path, name): (path, owned[name]) for name in names if name in owned})
        else:
            left.update({join_path(path, t.name): (path, t) for t in features.own[path]})
    return left


def _ancestors(features: TreeFeatures, path: str) -> list[str]:
    """``path`` and every layer above it."""
    chain = [path]
    while (parent := features.parent[chain[-1]]) is not None:
        chain.append(parent)
    return chain


def _absorbed(
    features: TreeFeatures,
    is_matched: Callable[[str], bool],
    covered: set[str],
    left: dict[str, tuple[str, TensorInfo]],
) -> set[str]:
    still_left = {owner for owner, _ in left.values()}
    return {
        path
        for path in features.order
        if features.own[path] and not is_matched(path) and path not in covered and path not in still_left
    }
