"""Pairing layers that sit at the same place but compute different things.

A port that uses ``ReLU`` where the base uses ``GELU`` leaves both activations
unmatched by every structural stage (their families differ), so the diff would
blame the next layer or the parent block. Parameter-less builtin leaves of
different families, each alone in the same matched parent and called in the
traced run, are paired here as a *mismatch*: pre-flight reports it (``class-mismatch``)
and the diff compares their outputs, naming the first that differs. Lone leaves
of one family pair the same way, where the structural stages miss them because
the port calls them in another order among their siblings. Where the two sides
group layers differently (torchvision's flat ``Sequential`` branch against paddle's
conv-norm-activation groups), a leaf's parent has no partner; there the place is
the pair of matched tensor-holding layers called just before and just after it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import TypeVar

from padiff_graph.knowledge.families import CONTAINER, RANDOM_FAMILIES
from padiff_graph.match.costs import Scorer
from padiff_graph.match.features import TreeFeatures
from padiff_graph.match.store import MappingStore

#: The matcher stage name of a mismatch pair (``LayerPair.stage``).
MISMATCH_STAGE = "class-mismatch"

#: A place a free leaf can be alone in: its matched parent, or its matched neighbours in call order.
Slot = TypeVar("Slot", bound=Hashable)

#: Families that pass their input on unchanged (in eval mode): a layer of one of these
#: beside another layer says nothing about a port computing something else there.
_PASS_THROUGH = RANDOM_FAMILIES | {"identity"}


def pair_mismatched_leaves(scorer: Scorer, store: MappingStore) -> None:
    """Pair the free parameter-less leaves that are alone in their matched parent on both sides, then
    those alone between the same two matched tensor-holding layers in call order.

    Leaves of one family are a plain pair (a port that calls its activation after another
    sibling than the base does, an expert the traced sample did not reach); of different
    families, a mismatch (stage ``class-mismatch``), and only if both were called in the
    traced run. Needs the call order (models traced on inputs); without it nothing is paired.
    """
    base, raw = scorer.base, scorer.raw
    if not base.call_rank or not raw.call_rank:
        return
    _pair_lone(
        scorer, store, _slots(base, store.has_base, lambda path: path), _slots(raw, store.has_raw, store.base_of)
    )
    _pair_lone(
        scorer,
        store,
        _neighbour_slots(base, store.has_base, lambda path: path),
        _neighbour_slots(raw, store.has_raw, store.base_of),
    )


def _pair_lone(
    scorer: Scorer,
    store: MappingStore,
    base_slots: Mapping[Slot, list[str]],
    raw_slots: Mapping[Slot, list[str]],
) -> None:
    """Pair the leaves alone in the same slot on both sides (a mismatch if their families differ)."""
    base, raw = scorer.base, scorer.raw
    for slot, base_leaves in base_slots.items():
        raw_leaves = [leaf for leaf in raw_slots.get(slot, []) if not store.has_raw(leaf)]
        base_leaves = [leaf for leaf in base_leaves if not store.has_base(leaf)]
        if len(base_leaves) != 1 or len(raw_leaves) != 1:
            continue
        base_leaf, raw_leaf = base_leaves[0], raw_leaves[0]
        if base.family[base_leaf] == raw.family[raw_leaf]:
            store.add(base_leaf, raw_leaf, 1.0, "lone-leaf")
        elif base_leaf in base.call_rank and raw_leaf in raw.call_rank:
            store.add(base_leaf, raw_leaf, 0.0, MISMATCH_STAGE)


def _slots(
    features: TreeFeatures, is_matched: Callable[[str], bool], base_path: Callable[[str], str | None]
) -> dict[str, list[str]]:
    """Free candidate leaves by their matched parent (as a base path)."""
    slots: dict[str, list[str]] = {}
    for path in features.kept:
        parent = features.kept_parent.get(path)
        if parent is None or is_matched(path) or not is_matched(parent) or not _candidate(features, path):
            continue
        key = base_path(parent)
        if key is not None:
            slots.setdefault(key, []).append(path)
    return slots


def _neighbour_slots(
    features: TreeFeatures, is_matched: Callable[[str], bool], base_path: Callable[[str], str | None]
) -> dict[tuple[str | None, str | None], list[str]]:
    """Free called candidate leaves by the matched tensor-holding layers called just before and after them
    (as base paths; ``None`` at either end of the run)."""
    slots: dict[tuple[str | None, str | None], list[str]] = {}
    before: str | None = None
    pending: list[str] = []
    for path in sorted(features.call_rank, key=features.call_rank.__getitem__):
        if features.own.get(path) and is_matched(path):
            after = base_path(path)
            for leaf in pending:
                slots.setdefault((before, after), []).append(leaf)
            before, pending = after, []
        elif not is_matched(path) and _candidate(features, path):
            pending.append(path)
    for leaf in pending:
        slots.setdefault((before, None), []).append(leaf)
    return slots


def _candidate(features: TreeFeatures, path: str) -> bool:
    """A builtin parameter-less leaf that computes something (not a dropout or identity, nor a tied head)."""
    if features.is_wrapper.get(path, True):
        return False
    family = features.family[path]
    if not features.is_leaf(path) or features.own[path] or family == CONTAINER or family in _PASS_THROUGH:
        return False
    return path not in features.tied  # a head computing with the embedding's tensor (match.ties pairs it)
