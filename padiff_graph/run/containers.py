"""Which matched container pairs are not compared: those whose contents do not correspond.

Two containers compute the same thing only if what is inside them
corresponds. A pair is compared only if every tensor-owning layer below
either side (ignored subtrees and their layers' partners excluded) is
matched to a layer below the other side: by its own pair, or by the pair
whose tensor map names its tensors (a conversion mapping a whole attention
block). HuggingFace's ``attention``
(self-attention, output projection, residual add, LayerNorm) paired with
paddle's ``self_attn`` (attention only) is not compared: its outputs would
differ with no bug in either model. Nor is a pair of parameter-less layers
that only definition position paired (``ambiguous-match``: HF's
``output.dropout`` against ``dropout1`` or ``dropout2``). The live diff and
the offline compare both use this rule.
"""

from __future__ import annotations

from dataclasses import dataclass

from padiff_graph.core.records import join_path, quoted_path
from padiff_graph.core.tree import ModelTree, is_within, preorder
from padiff_graph.knowledge.families import significant
from padiff_graph.layermap import LayerMap, LayerPair


@dataclass(frozen=True)
class NotCompared:
    """A matched layer pair whose outputs are not compared, and why."""

    base: str
    raw: str
    why: str


def _partners(pairs: list[LayerPair], side: str) -> dict[str, str]:
    """Each layer of one side (``"base"`` or ``"raw"``) -> the other side's layer its tensors are paired with."""
    other = "raw" if side == "base" else "base"
    partners: dict[str, str] = {}
    for pair in pairs:
        partners[getattr(pair, side)] = getattr(pair, other)
    for pair in pairs:
        for tensor in pair.tensors:
            if not tensor.has_constant:
                owner = join_path(getattr(pair, side), getattr(tensor, side)).rpartition(".")[0]
                partners.setdefault(owner, getattr(pair, other))
    return partners


def _leak(tree: ModelTree, side: str, pair: LayerPair, partners: dict[str, str], ignored: set[str]) -> str | None:
    """Why the tensor layers below ``side``'s layer of ``pair`` do not all lie below the other's, or ``None``."""
    other_side = "raw" if side == "base" else "base"
    path, other = getattr(pair, side), getattr(pair, other_side)
    if path not in tree:
        return None
    for layer in preorder(tree, path):
        if layer == path or layer in ignored or not any(significant(t) for t in tree.nodes[layer]["tensors"]):
            continue
        partner = partners.get(layer)
        if partner is None:
            return f"{side} {quoted_path(layer)} holds tensors and has no partner in {other_side} {quoted_path(other)}"
        if not is_within(partner, other):
            return (
                f"{side} {quoted_path(layer)} is matched to {other_side} {quoted_path(partner)}, "
                f"outside {other_side} {quoted_path(other)}"
            )
    return None


def unlike_containers(layer_map: LayerMap, base_tree: ModelTree, raw_tree: ModelTree) -> list[NotCompared]:
    """The map's active pairs whose contents do not correspond: their outputs are not compared."""
    pairs = layer_map.active_pairs()
    partners = {side: _partners(pairs, side) for side in ("base", "raw")}
    dropped = [pair for pair in layer_map.pairs if layer_map.ignores(pair.base, pair.raw)]
    ignored = {  # an ignored layer, and the partner of one
        "base": {path for path in base_tree.nodes if layer_map.ignores(base=path)} | {p.base for p in dropped},
        "raw": {path for path in raw_tree.nodes if layer_map.ignores(raw=path)} | {p.raw for p in dropped},
    }
    found = []
    for pair in pairs:
        why = _leak(base_tree, "base", pair, partners["base"], ignored["base"]) or _leak(
            raw_tree, "raw", pair, partners["raw"], ignored["raw"]
        )
        if why is None and pair.candidates and not _holds_tensors(base_tree, pair.base, pair.raw, raw_tree):
            why = f"only definition position pairs them; raw {', '.join(map(quoted_path, pair.candidates))} fit too"
        if why is not None:
            found.append(NotCompared(pair.base, pair.raw, why))
    return found


def _holds_tensors(base_tree: ModelTree, base: str, raw: str, raw_tree: ModelTree) -> bool:
    """Whether either layer holds tensors below it (an ambiguous pair of such layers stops the copy instead)."""
    return any(
        tree.nodes[layer]["tensors"]
        for tree, path in ((base_tree, base), (raw_tree, raw))
        for layer in preorder(tree, path)
    )
