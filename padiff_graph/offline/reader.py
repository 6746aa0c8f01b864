"""Opening a dump directory: its ranks, steps, manifests and tensors, checked as they are read."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from padiff_graph.core.tree import ModelTree, build_tree
from padiff_graph.errors import DumpError
from padiff_graph.offline.format import FORMAT, RANK_FOLDER, TENSORS, layer_from


@dataclass
class DumpRank:
    """One rank of a dump: its header and the step folders it wrote."""

    rank: int
    header: dict[str, Any]
    steps: dict[int, Path] = field(default_factory=dict)


@dataclass
class Dump:
    """A complete dump directory."""

    root: Path
    ranks: dict[int, DumpRank]

    def tree(self) -> ModelTree:
        first = self.ranks[min(self.ranks)]
        call_order = read_manifest(first.steps[min(first.steps)])["call_order"] if first.steps else None
        return build_tree([layer_from(entry) for entry in first.header["layers"]], call_order)


def load_dump(directory: str | os.PathLike[str]) -> Dump:
    """Open a dump, checking it is complete.

    Raises:
        DumpError: not a dump, or a rank or step that was not finished.
    """
    root = Path(directory)
    if not root.is_dir():
        raise DumpError(f"{root}: no such dump directory")
    ranks: dict[int, DumpRank] = {}
    for marker in sorted(root.glob("rank_*.json")):
        header = read_json(marker)
        if header.get("format") != FORMAT:
            raise DumpError(f"{marker}: not a padiff-graph dump (format {header.get('format')!r})")
        rank = int(header["rank"])
        found = DumpRank(rank, header)
        steps = header["steps"]  # a count (steps 0..n-1, from dump) or the step numbers (from Recording)
        for step in range(int(steps)) if isinstance(steps, int) else [int(step) for step in steps]:
            folder = root / f"step_{step}" / f"rank_{rank}"
            if not (folder / "manifest.json").is_file():
                raise DumpError(f"{folder}: step {step} of rank {rank} is missing; dump again")
            found.steps[step] = folder
        ranks[rank] = found
    written = {int(match.group(1)) for p in root.glob("step_*/*") if (match := RANK_FOLDER.fullmatch(p.name))}
    unfinished = sorted(written - set(ranks))
    if unfinished or not ranks:
        what = f"rank {unfinished[0]} was interrupted" if unfinished else "it holds no finished rank"
        raise DumpError(f"{root}: incomplete dump ({what}: its rank_N.json was never written); dump again")
    return Dump(root, ranks)


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DumpError(f"{path}: cannot read: {error}") from None
    if not isinstance(data, dict):
        raise DumpError(f"{path}: not a padiff-graph dump file")
    return data


def read_manifest(folder: Path) -> dict[str, Any]:
    return read_json(folder / "manifest.json")


class StepArrays:
    """The arrays of one step folder by record name, each npz file opened when first needed."""

    def __init__(self, folder: Path, records: Iterable[dict[str, Any]]) -> None:
        self.folder = folder
        self.file_of = {entry["name"]: entry.get("file", TENSORS) for entry in records}
        self._open: dict[str, Any] = {}

    def __enter__(self) -> StepArrays:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for arrays in self._open.values():
            arrays.close()

    def __getitem__(self, name: str) -> np.ndarray:
        file = self.file_of[name]
        if file not in self._open:
            try:
                self._open[file] = np.load(self.folder / file, allow_pickle=False)
            except OSError as error:
                raise DumpError(f"{self.folder / file}: cannot read: {error}; dump again") from None
        array: np.ndarray = self._open[file][name]
        return array
