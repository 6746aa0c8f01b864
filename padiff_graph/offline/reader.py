"""Opening a dump directory: its ranks, steps, manifests and tensors, checked as they are read.

Nothing read from a dump is trusted before it is checked (:mod:`.integrity`):
every failure, whatever the damage, is a :class:`DumpError` naming the file
(and the record, where known), never a wrong comparison.
"""

from __future__ import annotations

import math
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from padiff_graph.core.records import LayerInfo
from padiff_graph.core.tensorfile import ZIP_ERRORS
from padiff_graph.core.tree import ModelTree, build_tree
from padiff_graph.errors import DumpError
from padiff_graph.offline.format import RANK_FOLDER
from padiff_graph.offline.integrity import CHECKSUM, check_header, check_manifest, damaged, read_json, verify_file

_CHUNK = 64 * 2**20
_HEADER = re.compile(r"rank_(\d+)\.json")


@dataclass
class DumpRank:
    """One rank of a dump: its header, its layers and the step folders it wrote."""

    rank: int
    header: dict[str, Any]
    layers: list[LayerInfo]
    steps: dict[int, Path] = field(default_factory=dict)


@dataclass
class Dump:
    """A complete dump directory."""

    root: Path
    ranks: dict[int, DumpRank]

    def tree(self) -> ModelTree:
        first = self.ranks[min(self.ranks)]
        call_order = None
        if first.steps:
            folder = first.steps[min(first.steps)]
            call_order = read_manifest(folder)["call_order"]
            known = {layer.path for layer in first.layers}
            stray = next((path for path in call_order if path not in known), None)
            if stray is not None:
                raise damaged(folder / "manifest.json", f"'call_order' names {stray!r}, a layer the header lacks")
        tree = build_tree(first.layers, call_order)
        tree.graph["tied"] = dict(first.header.get("tied", {}))  # dumps written before it kept none
        return tree


def load_dump(directory: str | os.PathLike[str]) -> Dump:
    """Open a dump, checking it is complete and its headers are intact.

    Raises:
        DumpError: not a dump, a rank or step that was not finished, or a damaged header.
    """
    root = Path(directory)
    if not root.is_dir():
        raise DumpError(f"{root}: no such dump directory")
    ranks: dict[int, DumpRank] = {}
    for marker in sorted(root.glob("rank_*.json")):
        number = _HEADER.fullmatch(marker.name)
        if number is None:
            continue  # not a header (rank_0.old.json, say)
        header = read_json(marker)
        found = DumpRank(int(number.group(1)), header, check_header(header, marker, int(number.group(1))))
        steps = header["steps"]  # a count (steps 0..n-1, from dump) or the step numbers (from Recording)
        for step in range(steps) if isinstance(steps, int) else steps:
            folder = root / f"step_{step}" / f"rank_{found.rank}"
            if not (folder / "manifest.json").is_file():
                raise DumpError(f"{folder}: step {step} of rank {found.rank} is missing; copy it again or dump again")
            found.steps[step] = folder
        ranks[found.rank] = found
    written = {int(match.group(1)) for p in root.glob("step_*/*") if (match := RANK_FOLDER.fullmatch(p.name))}
    unfinished = sorted(written - set(ranks))
    if unfinished or not ranks:
        what = f"rank {unfinished[0]} was interrupted" if unfinished else "it holds no finished rank"
        raise DumpError(f"{root}: incomplete dump ({what}: its rank_N.json was never written); dump again")
    return Dump(root, ranks)


def read_manifest(folder: Path) -> dict[str, Any]:
    """A step folder's manifest, checked (every record has a ``file``)."""
    path = folder / "manifest.json"
    manifest = read_json(path)
    check_manifest(manifest, path)
    return manifest


class StepArrays:
    """The arrays of one step folder by record name, each npz file checked and opened when first needed."""

    def __init__(self, folder: Path, manifest: dict[str, Any]) -> None:
        self.folder = folder
        self.records = {entry["name"]: entry for entry in manifest["records"]}
        self.files: dict[str, dict[str, int]] = manifest.get("files", {})
        self._open: dict[str, zipfile.ZipFile] = {}

    def __enter__(self) -> StepArrays:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for archive in self._open.values():
            archive.close()

    def __getitem__(self, name: str) -> np.ndarray:
        entry = self.records[name]
        path = self.folder / entry["file"]
        if entry["file"] not in self._open:
            if entry["file"] in self.files:
                verify_file(path, self.files[entry["file"]])
            try:
                self._open[entry["file"]] = zipfile.ZipFile(path)
            except FileNotFoundError:
                manifest = self.folder / "manifest.json"
                raise DumpError(f"{path}: missing (listed in {manifest}); copy it again or dump again") from None
            except ZIP_ERRORS as error:
                raise damaged(path, f"not a readable npz file ({error})") from None
        archive = self._open[entry["file"]]
        try:
            info = archive.getinfo(name + ".npy")
        except KeyError:
            raise damaged(
                path, f"record {name!r} is missing from it (listed in {self.folder / 'manifest.json'})"
            ) from None
        try:
            return _read_member(archive, info, entry)
        except ZIP_ERRORS as error:
            raise damaged(path, f"record {name!r} (from byte {info.header_offset}) cannot be read ({error})") from None


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, entry: dict[str, Any]) -> np.ndarray:
    """One record's array, its npy header checked against the manifest before any data is read."""
    path, name = Path(archive.filename or ""), entry["name"]
    with archive.open(info) as stream:
        version = np.lib.format.read_magic(stream)
        header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = header(stream)
        if entry.get(CHECKSUM, info.CRC) != info.CRC:
            raise damaged(path, f"record {name!r} is not the one its manifest lists (another CRC-32)")
        if list(shape) != entry["shape"] or dtype.hasobject or not _fits(dtype, entry["dtype"]):
            raise damaged(
                path,
                f"record {name!r} holds {dtype} {list(shape)}, its manifest ({path.with_name('manifest.json')}) says "
                f"{entry['dtype']} {entry['shape']}",
            )
        data = np.empty(math.prod(shape) * dtype.itemsize, np.uint8)
        filled = 0  # read in chunks into the array: memory holds the record once
        while filled < data.size and (chunk := stream.read(min(_CHUNK, data.size - filled))):
            data[filled : filled + len(chunk)] = np.frombuffer(chunk, np.uint8)
            filled += len(chunk)
        if filled != data.size or stream.read(1):  # reading to the member's end also checks its zip CRC-32
            raise damaged(path, f"record {name!r} holds other than the {data.size} bytes of data its header says")
    return data.view(dtype).reshape(shape, order="F" if fortran_order else "C")


def _fits(stored: np.dtype, dtype: str) -> bool:
    """Whether an array of ``stored`` can hold a tensor of the framework dtype ``dtype`` (bfloat16: widened)."""
    if "float" in dtype:
        return stored.kind == "f"
    if "int" in dtype:
        return stored.kind in "iu"
    return stored.kind == "b" if dtype == "bool" else stored.kind not in "OVUSMm"
