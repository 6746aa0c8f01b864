"""Noticing damage in a dump: checksums written with it, and the structure of its JSON files checked on reading.

Dumps are copied between machines, written by jobs that get killed and kept
for weeks, so every file is checked before anything in it is trusted:

- each JSON file (``rank_N.json``, ``manifest.json``) carries ``crc32``, the
  CRC-32 of its own content (canonical JSON, without that key);
- a manifest records the size of each npz file of its step folder (checked
  before the file is opened, so a truncated file is named as such) and, per
  record, the CRC-32 of its ``.npy`` member, the one the zip format keeps.

The record checksums cost nothing: zip computes them as it writes, and
reading a member to its end checks its bytes against them, so comparing
the zip's checksum of a member with the manifest's anchors every record to
what was written, in the one read a comparison makes anyway (a checksum of
whole files would read every file a second time: about a quarter more time
for a compare of a 100 MB dump). CRC-32 detects accidental damage, not tampering. Dumps
written before these checksums existed load too; then only the structure
checked here, the npy headers and the zip's own checksums stand between
damage and a comparison.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from padiff_graph.core.records import LayerInfo, TensorInfo, TensorKind
from padiff_graph.errors import DumpError
from padiff_graph.offline.format import FORMAT, FORMAT_VERSION, RECORD_STAGES, TENSORS

#: the JSON key of a checksum: a JSON file's own, and each record's
CHECKSUM = "crc32"
#: the npz files a step folder may hold: plain names, never a path out of the folder
NPZ_NAME = re.compile(r"[A-Za-z0-9_.-]+\.npz")


def damaged(path: Path, what: str) -> DumpError:
    """The error for a dump file that is not as it was written."""
    return DumpError(f"{path}: damaged dump file: {what}; copy it again or dump again")


def file_entry(path: Path) -> dict[str, int]:
    """What a manifest records of an npz file: its size."""
    return {"size": path.stat().st_size}


def verify_file(path: Path, expected: Mapping[str, int]) -> None:
    """Raise :class:`DumpError` unless ``path`` has the size its manifest recorded."""
    try:
        size = path.stat().st_size
    except OSError as error:
        raise DumpError(f"{path}: cannot read: {error.strerror or error}; copy it again or dump again") from None
    if size != expected["size"]:
        cut = "truncated" if size < expected["size"] else "grown"
        raise damaged(path, f"{cut} to {size} bytes, its manifest says {expected['size']}")


def _canonical_crc(data: Mapping[str, Any]) -> int:
    content = {key: value for key, value in data.items() if key != CHECKSUM}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return zlib.crc32(text.encode("utf-8"))


def sealed_json(data: Mapping[str, Any]) -> str:
    """``data`` as the text of a dump's JSON file, with its own checksum."""
    return json.dumps({**data, CHECKSUM: _canonical_crc(data)}, indent=1)


def read_json(path: Path) -> dict[str, Any]:
    """A dump's JSON file, its format, version and checksum checked (version 1 has no checksum).

    Raises:
        DumpError: not a dump file, a newer format, or damaged.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise DumpError(f"{path}: cannot read: {error.strerror or error}; copy it again or dump again") from None
    except ValueError as error:
        raise damaged(path, f"not JSON ({error})") from None
    if not isinstance(data, dict):
        raise DumpError(f"{path}: not a padiff-graph dump file")
    _format(data, path)
    if CHECKSUM in data or data["version"] > 1:  # version 1 dumps were written before checksums
        if CHECKSUM not in data:
            raise damaged(path, f"its checksum ({CHECKSUM!r}) is missing")
        if data[CHECKSUM] != _canonical_crc(data):
            raise damaged(path, "its content changed since it was written (CRC-32 mismatch)")
    return data


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _shape(value: Any) -> bool:
    return isinstance(value, list) and all(_count(dim) for dim in value)


def _flag(value: Any) -> bool:
    return isinstance(value, bool)


Schema = Mapping[str, Callable[[Any], bool]]

_TENSOR: Schema = {
    "name": _text,
    "shape": _shape,
    "dtype": _text,
    "kind": lambda value: value in {kind.value for kind in TensorKind},
    "persistent": _flag,
}
_LAYER: Schema = {
    "path": _text,
    "class_name": _text,
    "framework": _text,
    "index": _count,
    "builtin": _flag,
    "training": _flag,
    "config": lambda value: isinstance(value, dict),
    "tensors": lambda value: isinstance(value, list),
}
_RECORD: Schema = {
    "name": _text,
    "stage": lambda value: value in RECORD_STAGES,
    "path": _text,
    "call": _count,
    "index": _count,
    "dtype": _text,
    "shape": _shape,
}
_FILE: Schema = {"size": _count}
#: a sharded record's placement (:class:`padiff_graph.core.records.Layout`)
_LAYOUT: Schema = {
    "placements": lambda value: isinstance(value, list) and all(map(_text, value)),
    "mesh": _shape,
    "coordinate": _shape,
    "shape": _shape,
}


def _fields(entry: Any, schema: Schema, path: Path, what: str) -> None:
    if not isinstance(entry, dict):
        raise damaged(path, f"{what} is not an object")
    for key, valid in schema.items():
        if key not in entry or not valid(entry[key]):
            raise damaged(path, f"{what} has no valid {key!r}")


def _format(data: dict[str, Any], path: Path) -> None:
    if data.get("format") != FORMAT:
        raise DumpError(f"{path}: not a padiff-graph dump (format {data.get('format')!r})")
    if data.get("version") not in (1, FORMAT_VERSION):
        raise DumpError(
            f"{path}: dump format version {data.get('version')!r}; this padiff_graph reads versions up to "
            f"{FORMAT_VERSION} (upgrade padiff_graph, or dump again)"
        )


def check_header(header: dict[str, Any], path: Path, rank: int) -> list[LayerInfo]:
    """Check a rank's header (``rank_N.json``, N being ``rank``); returns its layers.

    Raises:
        DumpError: damaged.
    """
    _fields(header, {"rank": _count, "framework": _text, "model": _text}, path, "the header")
    if header["rank"] != rank:
        raise damaged(path, f"it says rank {header['rank']}")
    steps = header.get("steps")
    listed = isinstance(steps, list) and all(map(_count, steps)) and len(set(steps)) == len(steps)
    if not _count(steps) and not listed:
        raise damaged(path, "'steps' is neither a count nor a list of distinct step numbers")
    tied = header.get("tied", {})
    if not isinstance(tied, dict) or not all(_text(key) and _text(name) for key, name in tied.items()):
        raise damaged(path, "'tied' is not a map of tensor names")
    if not isinstance(header.get("layers"), list) or not header["layers"]:
        raise damaged(path, "it lists no layers")
    layers = [_layer(entry, path, number) for number, entry in enumerate(header["layers"])]
    seen: set[str] = set()
    for number, layer in enumerate(layers):  # the root first, each parent before its children, no path twice
        if not (layer.path == "" if number == 0 else layer.parent in seen and layer.path not in seen):
            raise damaged(path, f"layer {layer.path!r} is out of place in the layer tree")
        seen.add(layer.path)
    return layers


def _layer(entry: Any, path: Path, number: int) -> LayerInfo:
    _fields(entry, _LAYER, path, f"layer {number}")
    tensors = []
    for position, tensor in enumerate(entry["tensors"]):
        _fields(tensor, _TENSOR, path, f"tensor {position} of layer {entry['path']!r}")
        kind = TensorKind(tensor["kind"])
        tensors.append(TensorInfo(tensor["name"], tuple(tensor["shape"]), tensor["dtype"], kind, tensor["persistent"]))
    fields = {key: entry[key] for key in _LAYER if key != "tensors"}
    return LayerInfo(**fields, tensors=tuple(tensors))


def check_manifest(manifest: dict[str, Any], path: Path) -> None:
    """Check a step folder's ``manifest.json``: its records, their names and files.

    Raises:
        DumpError: damaged.
    """
    if not isinstance(manifest.get("call_order"), list) or not all(map(_text, manifest["call_order"])):
        raise damaged(path, "'call_order' is not a list of layer paths")
    if not isinstance(manifest.get("records"), list):
        raise damaged(path, "'records' is not a list")
    sealed = manifest["version"] > 1  # its records and files carry checksums and sizes
    files = manifest.get("files", {})
    if not isinstance(files, dict) or (sealed and "files" not in manifest):
        raise damaged(path, "'files' is not an object")
    for name, entry in files.items():
        _fields(entry, _FILE, path, f"file {name!r}")
    names: set[str] = set()
    for number, entry in enumerate(manifest["records"]):
        _fields(entry, _RECORD, path, f"record {number}")
        name = entry["name"]
        if name != f"{entry['stage']}:{entry['path']}:{entry['call']}:{entry['index']}" or name in names:
            raise damaged(path, f"record {number} is named {name!r}, which does not fit its fields or repeats")
        if (CHECKSUM in entry or sealed) and not _count(entry.get(CHECKSUM)):
            raise damaged(path, f"record {name!r} has no valid {CHECKSUM!r}")
        if "layout" in entry:
            _fields(entry["layout"], _LAYOUT, path, f"the layout of record {name!r}")
        file = entry.setdefault("file", TENSORS)
        if not isinstance(file, str) or not NPZ_NAME.fullmatch(file) or (sealed and file not in files):
            raise damaged(path, f"record {name!r} names the file {file!r}, not an npz file of its folder")
        names.add(name)
