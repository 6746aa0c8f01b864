"""Which container pairs a diff compares: those whose contents correspond, and only those.

Two containers compute the same thing only if what is inside them
corresponds. A pair is compared only if every tensor-owning layer below
either side (ignored subtrees and their layers' partners excluded) is
matched to a layer below the other side: by its own pair, or by a tensor
pair that names its tensors (a conversion mapping a whole attention
block, a fused ``qkv_proj`` cut into ``q_proj``/``k_proj``/``v_proj``, a
LoRA wrapper's ``base_layer`` and adapters held by one layer). A layer
that holds tensors but never ran (absent from its side's traced call
order, as an auxiliary head defined and left unused) computes nothing
inside its container and does not count. HuggingFace's ``attention``
(self-attention, output projection, residual add, LayerNorm) paired with
paddle's ``self_attn`` (attention only) is not compared: its outputs would
differ with no bug in either model. Nor is a pair of parameter-less layers
that only definition position paired (``ambiguous-match``: HF's
``output.dropout`` against ``dropout1`` or ``dropout2``).

Containers the matcher left unpaired because their layouts differ (a
fused-qkv attention against a three-projection one, a squeeze-excitation
block of linears against one of 1x1 convolutions, a LoRA wrapper against
one adapter-holding layer) are paired here when their contents map onto
each other exactly through the map (:func:`corresponding_containers`), so
they are compared too. The live diff and the offline compare both use
these rules.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from padiff_graph.core.records import join_path, quoted_path
from padiff_graph.core.tree import ModelTree, is_within, preorder
from padiff_graph.knowledge.families import significant
from padiff_graph.layermap import LayerMap, LayerPair

#: The matcher stage named by the container pairs :func:`corresponding_containers` adds.
CONTENTS_STAGE = "contents"


@dataclass(frozen=True)
class NotCompared:
    """A matched layer pair whose outputs are not compared, and why."""

    base: str
    raw: str
    why: str


def _partners(pairs: list[LayerPair], side: str) -> dict[str, set[str]]:
    """Each layer of one side (``"base"`` or ``"raw"``) -> the other side's layers it is paired with:
    its pair's layer, and the owners of the tensors its tensors are paired with."""
    other = "raw" if side == "base" else "base"
    partners: dict[str, set[str]] = {}
    for pair in pairs:
        partners.setdefault(getattr(pair, side), set()).add(getattr(pair, other))
        for tensor in pair.tensors:
            if not tensor.has_constant:
                owner = _owner(join_path(getattr(pair, side), getattr(tensor, side)))
                partners.setdefault(owner, set()).add(_owner(join_path(getattr(pair, other), getattr(tensor, other))))
    return partners


def _owner(tensor_name: str) -> str:
    return tensor_name.rpartition(".")[0]


def _called(tree: ModelTree) -> set[str] | None:
    """The layers a traced run entered, or ``None`` when the tree was not traced."""
    order = tree.graph.get("call_order")
    return None if order is None else set(order)


def _holds_tensors(tree: ModelTree, layer: str) -> bool:
    return any(significant(t) for t in tree.nodes[layer]["tensors"])


def _leak(tree: ModelTree, side: str, pair: LayerPair, partners: dict[str, set[str]], ignored: set[str]) -> str | None:
    """Why the tensor layers below ``side``'s layer of ``pair`` do not all lie below the other's, or ``None``."""
    other_side = "raw" if side == "base" else "base"
    path, other = getattr(pair, side), getattr(pair, other_side)
    if path not in tree:
        return None
    called = _called(tree)
    for layer in preorder(tree, path):
        if layer == path or layer in ignored or not _holds_tensors(tree, layer):
            continue
        found = partners.get(layer, set())
        if not found and (called is None or layer in called):
            return f"{side} {quoted_path(layer)} holds tensors and has no partner in {other_side} {quoted_path(other)}"
        outside = sorted(partner for partner in found if not is_within(partner, other))
        if outside:
            return (
                f"{side} {quoted_path(layer)} is matched to {other_side} {quoted_path(outside[0])}, "
                f"outside {other_side} {quoted_path(other)}"
            )
    return None


def _ignored(layer_map: LayerMap, base_tree: ModelTree, raw_tree: ModelTree) -> dict[str, set[str]]:
    """Per side: the ignored layers, and the partners of ignored ones."""
    dropped = [pair for pair in layer_map.pairs if layer_map.ignores(pair.base, pair.raw)]
    return {
        "base": {path for path in base_tree.nodes if layer_map.ignores(base=path)} | {p.base for p in dropped},
        "raw": {path for path in raw_tree.nodes if layer_map.ignores(raw=path)} | {p.raw for p in dropped},
    }


def unlike_containers(layer_map: LayerMap, base_tree: ModelTree, raw_tree: ModelTree) -> list[NotCompared]:
    """The map's active pairs whose contents do not correspond: their outputs are not compared."""
    pairs = layer_map.active_pairs()
    partners = {side: _partners(pairs, side) for side in ("base", "raw")}
    ignored = _ignored(layer_map, base_tree, raw_tree)
    found = []
    for pair in pairs:
        why = _leak(base_tree, "base", pair, partners["base"], ignored["base"]) or _leak(
            raw_tree, "raw", pair, partners["raw"], ignored["raw"]
        )
        if why is None and pair.candidates and not _pair_holds_tensors(base_tree, pair.base, pair.raw, raw_tree):
            why = f"only definition position pairs them; raw {', '.join(map(quoted_path, pair.candidates))} fit too"
        if why is not None:
            found.append(NotCompared(pair.base, pair.raw, why))
    return found


def _pair_holds_tensors(base_tree: ModelTree, base: str, raw: str, raw_tree: ModelTree) -> bool:
    """Whether either layer holds tensors below it (an ambiguous pair of such layers stops the copy instead)."""
    return any(
        tree.nodes[layer]["tensors"]
        for tree, path in ((base_tree, base), (raw_tree, raw))
        for layer in preorder(tree, path)
    )


def _common_ancestor(paths: Iterable[str]) -> str | None:
    """The deepest path every one of ``paths`` lies within (``None`` for no paths)."""
    common: list[str] | None = None
    for path in paths:
        parts = path.split(".") if path else []
        if common is None:
            common = parts
        else:
            length = 0
            while length < min(len(common), len(parts)) and common[length] == parts[length]:
                length += 1
            common = common[:length]
    return None if common is None else ".".join(common)


def _content(tree: ModelTree, path: str, ignored: set[str]) -> frozenset[str]:
    """The tensor layers at and below ``path``."""
    return frozenset(layer for layer in preorder(tree, path) if layer not in ignored and _holds_tensors(tree, layer))


def _alone(tree: ModelTree, path: str, ignored: set[str]) -> bool:
    """True if neither ``path``'s parent nor a child of it holds exactly its tensor layers.

    Nested layers holding the same tensors (torchvision's ``InvertedResidual``
    around its ``conv`` Sequential) differ by what their forward adds (the
    residual); which of them the other model's layer is, contents cannot tell.
    """
    content = _content(tree, path, ignored)
    around = [*tree.predecessors(path), *tree.successors(path)]
    return all(_content(tree, layer, ignored) != content for layer in around)


def _counterpart(tree: ModelTree, path: str, partners: dict[str, set[str]], ignored: set[str]) -> str | None:
    """The deepest layer of the other side holding the partners of every tensor layer below ``path``."""
    found = set()
    for layer in preorder(tree, path):
        if layer not in ignored and _holds_tensors(tree, layer):
            found |= partners.get(layer, set())
    return _common_ancestor(found)


def corresponding_containers(layer_map: LayerMap, base_tree: ModelTree, raw_tree: ModelTree) -> list[LayerPair]:
    """Pairs of layers the map leaves unpaired whose tensor layers map onto each other exactly.

    A base layer ``B`` and a raw layer ``R``, neither in a pair, form one when the
    partners of the tensor layers below ``B`` lie below ``R`` and no deeper layer
    holds them all, and the same holds from ``R`` back to ``B`` (a fused ``qkv_proj``
    against ``q_proj`` is not one: ``q_proj``'s partner ``qkv_proj`` leads back to
    the whole attention), and neither is nested in or around a layer holding the
    same tensors (:func:`_alone`). :func:`unlike_containers` then still checks what else they hold.
    """
    pairs = layer_map.active_pairs()
    partners = {side: _partners(pairs, side) for side in ("base", "raw")}
    ignored = _ignored(layer_map, base_tree, raw_tree)
    paired_base = {pair.base for pair in layer_map.pairs}
    paired_raw = {pair.raw for pair in layer_map.pairs}
    found = []
    for base_path in preorder(base_tree):
        if base_path in paired_base or base_path in ignored["base"]:
            continue
        raw_path = _counterpart(base_tree, base_path, partners["base"], ignored["base"])
        if raw_path is None or raw_path in paired_raw or raw_path not in raw_tree or raw_path in ignored["raw"]:
            continue
        if (
            _counterpart(raw_tree, raw_path, partners["raw"], ignored["raw"]) == base_path
            and _alone(base_tree, base_path, ignored["base"])
            and _alone(raw_tree, raw_path, ignored["raw"])
        ):
            found.append(LayerPair(base_path, raw_path, stage=CONTENTS_STAGE))
            paired_raw.add(raw_path)
    return found


def with_corresponding_containers(layer_map: LayerMap, base_tree: ModelTree, raw_tree: ModelTree) -> LayerMap:
    """``layer_map`` with the pairs of :func:`corresponding_containers` added (and no longer listed unmatched)."""
    found = corresponding_containers(layer_map, base_tree, raw_tree)
    if not found:
        return layer_map
    base, raw = {pair.base for pair in found}, {pair.raw for pair in found}
    return replace(
        layer_map,
        pairs=[*layer_map.pairs, *found],
        unmatched_base=[path for path in layer_map.unmatched_base if path not in base],
        unmatched_raw=[path for path in layer_map.unmatched_raw if path not in raw],
    )
