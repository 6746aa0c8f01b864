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

import numpy as np

from padiff_graph.core.records import join_path
from padiff_graph.match.features import TreeFeatures

#: Fewest blocks an offset must line up (by structure) to be believed.
MIN_OFFSET_RUN = 3
#: Least share of the overlapping blocks an offset must line up.
MIN_OFFSET_AGREEMENT = 0.75
#: (base block, raw block) pairs counted in one numpy pass: bounds the pass's memory on long runs.
_PAIRS_AT_ONCE = 1 << 20


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
    base_index, base_hash = np.fromiter(base, np.int64, len(base)), np.fromiter(base.values(), np.int64, len(base))
    raw_index, raw_hash = np.fromiter(raw, np.int64, len(raw)), np.fromiter(raw.values(), np.int64, len(raw))
    lowest = int(base_index.min() - raw_index.max())
    offsets = int(base_index.max() - raw_index.min()) - lowest + 1
    overlap, aligned = np.zeros(offsets, np.int64), np.zeros(offsets, np.int64)
    rows = max(1, _PAIRS_AT_ONCE // len(raw))
    for start in range(0, len(base), rows):  # every (base block, raw block) pair, counted under its offset
        shifts = np.subtract.outer(base_index[start : start + rows], raw_index) - lowest
        overlap += np.bincount(shifts.ravel(), minlength=offsets)
        same = np.equal.outer(base_hash[start : start + rows], raw_hash)
        aligned += np.bincount(shifts[same], minlength=offsets)
    believed = (aligned >= MIN_OFFSET_RUN) & (aligned >= MIN_OFFSET_AGREEMENT * overlap)
    if not believed.any():
        return None
    most = int(aligned[believed].max())
    best = np.flatnonzero(believed & (aligned == most))
    return None if len(best) > 1 else (int(best[0]) + lowest, most)


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
