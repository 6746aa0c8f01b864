"""Pairing layers that sit at the same place but compute different things.

A port that uses ``ReLU`` where the base uses ``GELU`` leaves both activations
unmatched by every structural stage (their families differ), so the diff would
blame the next layer or the parent block. Parameter-less builtin leaves of
different families, each alone between the same two matched neighbours in call
order, are paired here as a *mismatch*: pre-flight reports it (``class-mismatch``)
and the diff compares their outputs, naming the first that differs.
"""

from __future__ import annotations

from collections.abc import Callable

from padiff_graph.knowledge.families import CONTAINER, RANDOM_FAMILIES
from padiff_graph.match.costs import Scorer
from padiff_graph.match.features import TreeFeatures
from padiff_graph.match.store import MappingStore

#: The matcher stage name of a mismatch pair (``LayerPair.stage``).
MISMATCH_STAGE = "class-mismatch"

#: Families that pass their input on unchanged (in eval mode): a layer of one of these
#: beside another layer says nothing about a port computing something else there.
_PASS_THROUGH = RANDOM_FAMILIES | {"identity"}

#: (matched layer called just before, matched layer called just after), as base paths.
Slot = tuple[str | None, str | None]


def pair_mismatched_leaves(scorer: Scorer, store: MappingStore) -> None:
    """Pair free parameter-less leaves of different families that are alone in the same call-order slot.

    Needs the call order (models traced on inputs); without it nothing is paired.
    """
    base, raw = scorer.base, scorer.raw
    if not base.call_rank or not raw.call_rank:
        return
    base_slots = _slots(base, store.has_base, lambda path: path)
    raw_slots = _slots(raw, store.has_raw, store.base_of)
    for slot, base_leaves in base_slots.items():
        raw_leaves = raw_slots.get(slot, [])
        if len(base_leaves) != 1 or len(raw_leaves) != 1:
            continue
        base_leaf, raw_leaf = base_leaves[0], raw_leaves[0]
        if base.family[base_leaf] != raw.family[raw_leaf]:
            store.add(base_leaf, raw_leaf, 0.0, MISMATCH_STAGE)


def _slots(
    features: TreeFeatures, is_matched: Callable[[str], bool], base_path: Callable[[str], str | None]
) -> dict[Slot, list[str]]:
    """Free candidate leaves by their slot: the matched layers called just before and just after them."""
    called = sorted(features.call_rank, key=features.call_rank.__getitem__)
    slots: dict[Slot, list[str]] = {}
    previous: str | None = None
    waiting: list[str] = []
    for path in called:
        if is_matched(path):
            here = base_path(path)
            for leaf in waiting:
                slots.setdefault((previous, here), []).append(leaf)
            previous, waiting = here, []
        elif _candidate(features, path):
            waiting.append(path)
    for leaf in waiting:
        slots.setdefault((previous, None), []).append(leaf)
    return slots


def _candidate(features: TreeFeatures, path: str) -> bool:
    """A builtin parameter-less leaf that computes something (not a dropout or identity)."""
    if features.is_wrapper.get(path, True):
        return False
    family = features.family[path]
    return features.is_leaf(path) and not features.own[path] and family != CONTAINER and family not in _PASS_THROUGH
