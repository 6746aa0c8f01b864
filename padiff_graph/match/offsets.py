"""Numbered runs of blocks whose indices are offset between the two models.

A port often numbers the same blocks differently: torchvision's flat
``features.1`` ... ``features.11`` (the stem being ``features.0``) against
timm's ``blocks.0`` ... ``blocks.10`` beside a separate ``conv_stem``. Equal
digits then point at the wrong, same-shaped neighbour (``features.5`` ~
``blocks.5``). Here each numbered container's sequence of block structures is
slid along the other model's: when one offset lines up clearly more blocks
than any other (and than none), the raw indices are renumbered by it before
names are compared, so runs of repeated blocks align by their order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from padiff_graph.core.records import join_path
from padiff_graph.match.features import TreeFeatures

#: Fewest blocks an offset must line up (by structure) to be believed.
MIN_OFFSET_RUN = 3
#: Least share of the overlapping blocks an offset must line up.
MIN_OFFSET_AGREEMENT = 0.75


@dataclass(frozen=True)
class IndexOffset:
    """Raw container ``raw`` numbers its blocks ``offset`` lower than base container ``base``."""

    base: str
    raw: str
    offset: int
    aligned: int


def _numbered_runs(features: TreeFeatures) -> Iterator[tuple[str, dict[int, int]]]:
    """Containers whose children are all numbered: path, and index -> structural hash of each block."""
    for path in features.order:
        kids = features.children[path]
        names = [kid.rpartition(".")[2] for kid in kids]
        if len(kids) < MIN_OFFSET_RUN or not all(name.isdigit() for name in names):
            continue
        hashes = {}
        for name, kid in zip(names, kids, strict=True):
            while features.is_wrapper[kid]:
                kid = features.children[kid][0]
            if features.tensor_layers[kid]:
                hashes[int(name)] = features.subtree_hash[kid]
        yield path, hashes


def _best_offset(base: dict[int, int], raw: dict[int, int]) -> tuple[int, int] | None:
    """``(offset, blocks aligned)`` for the single offset lining up most blocks, ``None`` if not clear."""
    scores = []
    for offset in range(min(base) - max(raw), max(base) - min(raw) + 1):
        overlap = [index for index in base if index - offset in raw]
        aligned = sum(base[index] == raw[index - offset] for index in overlap)
        if aligned >= MIN_OFFSET_RUN and aligned >= MIN_OFFSET_AGREEMENT * len(overlap):
            scores.append((aligned, offset))
    scores.sort(reverse=True)
    if not scores or (len(scores) > 1 and scores[1][0] == scores[0][0]):
        return None
    return scores[0][1], scores[0][0]


def index_offsets(base: TreeFeatures, raw: TreeFeatures) -> list[IndexOffset]:
    """For each raw numbered container, the base one it lines up with best, where the offset is not 0."""
    base_runs = [(path, hashes) for path, hashes in _numbered_runs(base) if hashes]
    found = []
    for raw_path, raw_hashes in _numbered_runs(raw):
        if not raw_hashes:
            continue
        best = [
            (result[1], result[0], base_path)
            for base_path, base_hashes in base_runs
            if (result := _best_offset(base_hashes, raw_hashes)) is not None
        ]
        best.sort(reverse=True)
        if not best or (len(best) > 1 and best[1][0] == best[0][0]):
            continue
        aligned, offset, base_path = best[0]
        if offset:
            found.append(IndexOffset(base_path, raw_path, offset, aligned))
    return found


def renumbering(offsets: list[IndexOffset], raw: TreeFeatures) -> dict[str, str]:
    """Raw block path -> its index as the base numbers it (``blocks.4`` -> ``5``)."""
    return {
        kid: str(int(kid.rpartition(".")[2]) + found.offset) for found in offsets for kid in raw.children[found.raw]
    }


def renumber(path: str, renamed: dict[str, str]) -> str:
    """``path`` with every renumbered block on its way renamed (``blocks.4.conv`` -> ``blocks.5.conv``)."""
    if not renamed or not path:
        return path
    original, result = "", ""
    for part in path.split("."):
        original = join_path(original, part)
        result = join_path(result, renamed.get(original, part))
    return result
