"""Merging the ranks of a sharded run into the tensors one process would hold.

A distributed engine (torch ``DTensor``, paddle's semi-auto parallel) says
how it placed each tensor over its device mesh; the writer stores that
:class:`~padiff_graph.core.records.Layout` beside each rank's local part.
Merging undoes it one mesh dimension at a time, innermost first (the order in
which the engines split): shards are concatenated in mesh order, partial
values summed (or averaged, maxed, mined), replicas checked to agree.

A tensor without a placement (a layer the parallel plan leaves alone, the
loss) is merged only when the evidence leaves one reading: every rank holds
the same values (a replica), or exactly one axis explains the sizes against
the other run's shape (concatenated in rank order). Anything else raises
:class:`~padiff_graph.errors.NotComparableError`, which ``compare`` reports
instead of merging by guess.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from padiff_graph.core.records import Layout
from padiff_graph.errors import NotComparableError
from padiff_graph.offline.reader import Dump, StepArrays, read_manifest

Shape = tuple[int, ...]
_PLACEMENT = re.compile(r"^(?:shard\((?P<axis>\d+)\)|partial\((?P<reduce>sum|avg|max|min)\)|replicate)$")
_REDUCE: dict[str, Callable[..., Any]] = {"sum": np.sum, "avg": np.mean, "max": np.max, "min": np.min}
#: how the ranks' own losses may make one run's loss (data parallel: each rank's batch)
_LOSSES: dict[str, Callable[..., Any]] = {"sum": np.sum, "mean": np.mean}


@dataclass(frozen=True)
class Part:
    """One rank's part of a tensor, and where the engine placed it (``None``: it did not say)."""

    rank: int
    array: np.ndarray
    layout: Layout | None


def merge(parts: Sequence[Part], reference: Shape | None = None) -> np.ndarray:
    """The tensor one process would hold, from every rank's part.

    ``reference`` is the other run's shape for this tensor: the only evidence
    for a tensor no placement describes.

    Raises:
        NotComparableError: the parts cannot be merged without guessing.
    """
    placed = [(part, part.layout) for part in parts if part.layout is not None]
    if not placed:
        return _inferred(parts, reference)
    if len(placed) != len(parts):
        unplaced = [part.rank for part in parts if part.layout is None]
        raise NotComparableError(
            f"ranks {[part.rank for part, _ in placed]} recorded a placement, ranks {unplaced} none"
        )
    return _by_placement(placed)


def _by_placement(parts: Sequence[tuple[Part, Layout]]) -> np.ndarray:
    first, layout = parts[0]
    for part, own in parts:
        if replace(own, coordinate=layout.coordinate) != layout:
            raise NotComparableError(
                f"ranks {first.rank} and {part.rank} place it differently ({_spell(layout)} against {_spell(own)})"
            )
    unknown = [placement for placement in layout.placements if not _PLACEMENT.match(placement)]
    if unknown:
        raise NotComparableError(f"placement {unknown[0]} has no merge rule")
    blocks: dict[tuple[int, ...], np.ndarray] = {}
    for part, own in parts:
        if own.coordinate in blocks:  # another parallel dimension outside this tensor's mesh: only replicas merge
            _check_replicas([blocks[own.coordinate], part.array], f"ranks at mesh coordinate {list(own.coordinate)}")
        blocks.setdefault(own.coordinate, part.array)
    missing = sorted(set(itertools.product(*(range(size) for size in layout.mesh))) - set(blocks))
    if missing:
        raise NotComparableError(f"no rank recorded mesh coordinate {list(missing[0])} of mesh {list(layout.mesh)}")
    for placement in reversed(layout.placements):  # innermost mesh dimension first
        groups: dict[tuple[int, ...], list[np.ndarray]] = {}
        for coordinate in sorted(blocks):
            groups.setdefault(coordinate[:-1], []).append(blocks[coordinate])
        blocks = {outer: _combine(arrays, placement) for outer, arrays in groups.items()}
    merged = blocks[()]
    if merged.shape != layout.shape and not (layout.shape == () and merged.shape == (1,)):  # 0-d is stored as [1]
        raise NotComparableError(f"its parts make shape {list(merged.shape)}, not its global {list(layout.shape)}")
    return merged


def _combine(arrays: list[np.ndarray], placement: str) -> np.ndarray:
    match = _PLACEMENT.match(placement)
    if match is not None and match["axis"] is not None:
        return np.concatenate(arrays, axis=int(match["axis"]))
    if match is not None and match["reduce"] is not None:
        return np.asarray(_REDUCE[match["reduce"]](np.stack(arrays), axis=0), dtype=arrays[0].dtype)
    _check_replicas(arrays, "its replicas")
    return arrays[0]


def _check_replicas(arrays: Sequence[np.ndarray], what: str) -> None:
    for array in arrays[1:]:
        if array.shape != arrays[0].shape or not np.array_equal(array, arrays[0], equal_nan=True):
            difference = (
                f"max abs diff {float(np.max(np.abs(array - arrays[0]))):.3g}"
                if array.shape == arrays[0].shape
                else f"shapes {list(arrays[0].shape)} and {list(array.shape)}"
            )
            raise NotComparableError(f"{what} disagree ({difference})")


def _inferred(parts: Sequence[Part], reference: Shape | None) -> np.ndarray:
    """A tensor no placement describes, merged only where one reading fits."""
    if len(parts) == 1:
        return parts[0].array
    shapes = sorted({part.array.shape for part in parts})
    if shapes == [reference] or (reference is None and len(shapes) == 1):
        if all(np.array_equal(part.array, parts[0].array, equal_nan=True) for part in parts[1:]):
            return parts[0].array
        raise NotComparableError(
            "ranks hold different values of one shape and no placement says how they combine "
            "(a partial sum, or each rank's own batch)"
        )
    axis = None if reference is None else split_axis([part.array.shape for part in parts], reference)
    if axis is None:
        against = "" if reference is None else f" into {list(reference)}"
        raise NotComparableError(
            f"ranks hold shapes {[list(shape) for shape in shapes]} and no placement says how they combine{against}"
        )
    return np.concatenate([part.array for part in sorted(parts, key=lambda part: part.rank)], axis=axis)


def merge_losses(parts: Sequence[Part], other: np.ndarray, close: Callable[[np.ndarray, np.ndarray], bool]) -> str:
    """How the ranks' own losses (data parallel: each rank's batch) make ``other``, the other run's loss.

    Returns ``"sum"`` or ``"mean"``, whichever alone matches.

    Raises:
        NotComparableError: neither matches, or both do.
    """
    values = np.stack([part.array for part in sorted(parts, key=lambda part: part.rank)])
    fits = [how for how, reduce in _LOSSES.items() if close(np.asarray(reduce(values, axis=0), values.dtype), other)]
    if len(fits) != 1:
        what = "both" if fits else "neither"
        raise NotComparableError(
            f"each rank computed its own loss ({', '.join(f'{float(v.reshape(-1)[0]):.6g}' for v in values)}) and "
            f"{what} their sum and their mean match the other run's {float(other.reshape(-1)[0]):.6g}"
        )
    return fits[0]


def split_axis(shapes: Sequence[Shape], reference: Shape) -> int | None:
    """The one axis along which ``shapes``, concatenated, make ``reference``; ``None`` if not exactly one."""
    if any(len(shape) != len(reference) for shape in shapes):
        return None
    axes = {axis for shape in shapes for axis, size in enumerate(shape) if size != reference[axis]}
    if len(axes) != 1:
        return None
    (axis,) = axes
    return axis if sum(shape[axis] for shape in shapes) == reference[axis] else None


def _spell(layout: Layout) -> str:
    return f"[{', '.join(layout.placements)}] over mesh {list(layout.mesh)}"


def has_layouts(dump: Dump) -> bool:
    """Whether any record of ``dump`` carries a placement (it was recorded inside a distributed engine)."""
    return any(
        "layout" in entry
        for found in dump.ranks.values()
        for folder in found.steps.values()
        for entry in read_manifest(folder)["records"]
    )


class RunStep:
    """One step of a run, over every rank that recorded it: records by name, arrays merged on demand.

    The first rank's manifest gives the records and their order; a run of
    one rank reads as that rank's folder.
    """

    def __init__(self, folders: Mapping[int, Path]) -> None:
        self.ranks = sorted(folders)
        manifests = {rank: read_manifest(folders[rank]) for rank in self.ranks}
        self.manifest = manifests[self.ranks[0]]
        self.entries = {
            rank: {entry["name"]: entry for entry in manifest["records"]} for rank, manifest in manifests.items()
        }
        self._arrays = {rank: StepArrays(folders[rank], manifests[rank]) for rank in self.ranks}
        #: whether a loss of this step merged: the ranks' output gradients are of their own losses until then
        self.loss_known = False
        #: where the merged loss is the mean of the ranks' own, their output gradients are ``1/ranks`` of its
        self.backward_scale = 1.0

    def __enter__(self) -> RunStep:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for arrays in self._arrays.values():
            arrays.__exit__(*exc_info)

    @property
    def records(self) -> list[dict[str, Any]]:
        """The first rank's records, in the order the model produced them."""
        return list(self.manifest["records"])

    def shape(self, name: str) -> Shape | None:
        """The merged shape, where a placement or a lone rank says it without reading values."""
        entry = self.entries[self.ranks[0]][name]
        if "layout" in entry:
            return tuple(entry["layout"]["shape"])
        return tuple(entry["shape"]) if len(self.ranks) == 1 else None

    def array(self, name: str, reference: Shape | None = None) -> np.ndarray:
        """Record ``name`` merged over the ranks (``reference``: the other run's shape, for inference).

        Output gradients merged from unplaced parts wait for :meth:`loss`: until a loss of the step
        merged, each rank's are of its own loss, and nothing says how those combine.

        Raises:
            NotComparableError: a rank lacks it, or its parts cannot be merged without guessing.
        """
        parts = self._parts(name)
        merged = merge(parts, reference)
        if self.entries[self.ranks[0]][name]["stage"] != "backward" or len(parts) == 1:
            return merged
        if not self.loss_known and any(part.layout is None for part in parts):
            raise NotComparableError(
                "each rank's output gradient is of its own loss and no recorded loss says how those combine "
                "(record it: Recording.backward(loss))"
            )
        return merged if self.backward_scale == 1.0 else np.asarray(merged * self.backward_scale, dtype=merged.dtype)

    def loss(
        self,
        name: str,
        other: np.ndarray | None = None,
        close: Callable[[np.ndarray, np.ndarray], bool] | None = None,
    ) -> np.ndarray:
        """Loss record ``name`` merged: a replica (or a lone rank's), or, where each rank computed its own,
        their sum or mean, whichever alone matches ``other`` (the other run's loss, by ``close``); a mean
        scales this step's output gradients.

        Raises:
            NotComparableError: no single reading fits (or, without ``other``, the ranks' losses differ).
        """
        parts = self._parts(name)
        try:
            merged = merge(parts, None if other is None else other.shape)
        except NotComparableError:
            if other is None or close is None:
                raise
            how = merge_losses(parts, other, close)
            values = np.stack([part.array for part in parts])
            merged = np.asarray(_LOSSES[how](values, axis=0), dtype=values.dtype)
            self.backward_scale = 1.0 / len(parts) if how == "mean" else 1.0
        self.loss_known = True
        return merged

    def _parts(self, name: str) -> list[Part]:
        lacking = [rank for rank in self.ranks if name not in self.entries[rank]]
        if lacking:
            raise NotComparableError(f"ranks {lacking} did not record it")
        parts = []
        for rank in self.ranks:
            layout = self.entries[rank][name].get("layout")
            parts.append(Part(rank, self._arrays[rank][name], None if layout is None else Layout.from_dict(layout)))
        return parts
