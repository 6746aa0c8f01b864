"""A head tied to the embedding on one side, holding its own weight on the other.

HF transformers ties ``lm_head.weight`` to the input embedding
(``tie_word_embeddings``): the tying side's ``lm_head`` then owns no tensor
(the export records the tie in ``tree.graph["tied"]``), and the matcher,
which pairs layers by their tensors, leaves it and the other side's
``lm_head`` apart. Here the tied layer pairs with the one free layer of its
family under its parent's partner whose tensors fit the shared tensor as the
tied layer sees it (a ``Linear``'s ``[out, in]`` weight, converted as any
``Linear``). Where the base ties, the raw head's own weight is written from
the shared tensor (an entry on the pair enclosing both). Where the raw ties,
one raw tensor cannot take both the base's embedding and its head: the layers
pair, so the diff compares them, and no tensor goes to the head; pre-flight
reports it (``tied-weights``). Where both sides tie (HF's and paddleformers'
``lm_head`` under ``tie_word_embeddings``), the two heads pair when the raw one
is tied to the very tensor the base's shared one is copied into: the diff
compares them, and the tensor is copied once, through the embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from padiff_graph.core.records import join_path
from padiff_graph.core.transforms import TensorPair
from padiff_graph.core.tree import ModelTree, children, is_within, preorder, relative_path
from padiff_graph.knowledge.conversions import ConversionRegistry, LayerSide, layer_side
from padiff_graph.layermap import LayerMap, LayerPair
from padiff_graph.match.tensors import guessed_layouts, pair_layer_tensors

#: The stage of a pair found through a tie.
TIED_STAGE = "tied"


@dataclass(frozen=True)
class _Tie:
    """Layer ``layer`` holds the tensor ``shared`` (full name) as its own ``local``."""

    layer: str
    local: str
    shared: str


def pair_tied_layers(base: ModelTree, raw: ModelTree, layer_map: LayerMap, registry: ConversionRegistry) -> LayerMap:
    """``layer_map`` with each unmatched tied layer paired with the untied layer it stands for."""
    for tie in _ties(base):
        found = _untied_partner(base, raw, layer_map, tie, registry, tied_is_base=True)
        if found is not None:
            layer_map = _with_base_tie(layer_map, tie, *found)
    for tie in _ties(raw):
        found = _untied_partner(raw, base, layer_map, tie, registry, tied_is_base=False)
        if found is not None:
            layer_map = _with_pair(layer_map, LayerPair(found[0], tie.layer, 0.5, stage=TIED_STAGE))
    for base_tie in _ties(base):
        raw_tie = _tied_partner(base, _ties(raw), layer_map, base_tie)
        if raw_tie is not None:
            layer_map = _with_pair(layer_map, LayerPair(base_tie.layer, raw_tie.layer, 0.5, stage=TIED_STAGE))
    position = {path: rank for rank, path in enumerate(preorder(base))}
    return layer_map.with_pairs(sorted(layer_map.pairs, key=lambda pair: position[pair.base]))


def _ties(tree: ModelTree) -> list[_Tie]:
    ties = []
    for alias, shared in tree.graph.get("tied", {}).items():
        layer, _, local = alias.rpartition(".")
        if layer in tree.nodes:
            ties.append(_Tie(layer, local, shared))
    return ties


def _untied_partner(
    tied: ModelTree,
    other: ModelTree,
    layer_map: LayerMap,
    tie: _Tie,
    registry: ConversionRegistry,
    tied_is_base: bool,
) -> tuple[str, TensorPair, bool] | None:
    """The other side's one free layer standing for ``tie.layer``, how the shared tensor pairs with it, and
    whether only shapes chose that layout."""
    partner_of = layer_map.raw_of if tied_is_base else layer_map.base_of
    other_partner_of = layer_map.base_of if tied_is_base else layer_map.raw_of
    parent = next(iter(tied.predecessors(tie.layer)), None)
    other_parent = None if parent is None or partner_of(tie.layer) is not None else partner_of(parent)
    if other_parent is None:
        return None
    tied_side = _seen_through_tie(tied, tie)
    found = []
    for path in children(other, other_parent):
        other_side = layer_side(other, path)
        if other_partner_of(path) is not None or not other_side.tensors or other_side.family != tied_side.family:
            continue
        base_side, raw_side = (tied_side, other_side) if tied_is_base else (other_side, tied_side)
        match = pair_layer_tensors(base_side, raw_side, registry.find(base_side, raw_side))
        if len(match.pairs) == 1 and not match.leftover_base and not match.leftover_raw:
            found.append((path, match.pairs[0], bool(guessed_layouts(base_side, raw_side, match))))
    return found[0] if len(found) == 1 else None


def _tied_partner(base: ModelTree, raw_ties: list[_Tie], layer_map: LayerMap, tie: _Tie) -> _Tie | None:
    """The one unpaired raw layer, under the partner of ``tie.layer``'s parent, tied to the raw tensor the
    base's shared tensor is copied into: both heads use the embeddings' one tensor, copied once through them."""
    parent = next(iter(base.predecessors(tie.layer)), None)
    if parent is None or layer_map.raw_of(tie.layer) is not None or layer_map.raw_of(parent) is None:
        return None
    shared_in_raw = _copied_into(layer_map, tie.shared)
    found = [
        other
        for other in raw_ties
        if other.shared == shared_in_raw
        and layer_map.base_of(other.layer) is None
        and other.layer.rpartition(".")[0] == layer_map.raw_of(parent)
    ]
    return found[0] if len(found) == 1 else None


def _copied_into(layer_map: LayerMap, base_tensor: str) -> str | None:
    """The raw tensor the map writes base tensor ``base_tensor`` (a full name) into, if one whole tensor."""
    for pair in layer_map.active_pairs():
        for tensor in pair.tensors:
            full = tensor.prefixed(pair.base, pair.raw)
            if full.base == base_tensor and full.raw_constant is None:
                return full.raw
    return None


def _seen_through_tie(tree: ModelTree, tie: _Tie) -> LayerSide:
    """``tie.layer`` as a conversion sees it: holding the shared tensor under its own name."""
    owner, _, name = tie.shared.rpartition(".")
    shared = next(t for t in tree.nodes[owner]["tensors"] if t.name == name)
    return replace(layer_side(tree, tie.layer), tensors={tie.local: replace(shared, name=tie.local)})


def _with_base_tie(layer_map: LayerMap, tie: _Tie, raw_path: str, link: TensorPair, guessed: bool) -> LayerMap:
    """The pair, and the raw layer's own tensor written from the base's shared one, on the pair enclosing both."""
    layer_map = _with_pair(layer_map, LayerPair(tie.layer, raw_path, 0.5, stage=TIED_STAGE))
    raw_tensor = join_path(raw_path, link.raw)
    anchor = next(
        pair
        for pair in sorted(layer_map.pairs, key=lambda p: -p.base.count(".") if p.base else 1)
        if is_within(tie.shared, pair.base) and is_within(raw_tensor, pair.raw)
    )
    entry = TensorPair(relative_path(anchor.base, tie.shared), relative_path(anchor.raw, raw_tensor), link.transform)
    widened = replace(
        anchor,
        tensors=(*anchor.tensors, entry),
        guessed_layouts=(*anchor.guessed_layouts, entry.base) if guessed else anchor.guessed_layouts,
    )
    return layer_map.with_pairs([widened if pair is anchor else pair for pair in layer_map.pairs])


def _with_pair(layer_map: LayerMap, pair: LayerPair) -> LayerMap:
    result = layer_map.with_pairs([*layer_map.pairs, pair])
    return replace(
        result,
        unmatched_base=[p for p in result.unmatched_base if p != pair.base],
        unmatched_raw=[p for p in result.unmatched_raw if p != pair.raw],
    )
