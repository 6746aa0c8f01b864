"""Tensors as stored bytes, and the safetensors format read and written with numpy alone.

A :class:`Stored` array keeps a tensor exactly as a file holds it: bfloat16
has no numpy dtype, so its bits travel as ``uint16`` with the dtype named
beside them. Moving values (slices, transposes, concatenations) never needs
to know what the bits mean, so a conversion keeps every dtype exactly.

safetensors is an 8-byte little-endian header length, a JSON header
(``{name: {dtype, shape, data_offsets}}``) and the raw bytes. The format is
small enough that reading it through ``numpy.memmap`` (zero copy: pages load
as tensors are used) and writing it one tensor at a time (the header first,
from the shapes alone) are a few lines here; the ``safetensors`` package
reads into memory and writes only whole dictionaries, which defeats
streaming a checkpoint larger than memory.
"""

from __future__ import annotations

import json
import math
import struct
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, Protocol

import numpy as np

from padiff_graph.core import arrays
from padiff_graph.errors import InputError

#: dtype name -> (numpy storage dtype, safetensors code)
DTYPES: dict[str, tuple[str, str]] = {
    "float64": ("<f8", "F64"),
    "float32": ("<f4", "F32"),
    "float16": ("<f2", "F16"),
    "bfloat16": ("<u2", "BF16"),
    "int64": ("<i8", "I64"),
    "int32": ("<i4", "I32"),
    "int16": ("<i2", "I16"),
    "int8": ("|i1", "I8"),
    "uint16": ("<u2", "U16"),
    "uint8": ("|u1", "U8"),
    "bool": ("|b1", "BOOL"),
}
_BY_CODE = {code: name for name, (_, code) in DTYPES.items()}
#: what a damaged zip file (an npz, torch's checkpoint format) makes :mod:`zipfile` and numpy's npy reader raise
ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    EOFError,
    ValueError,
    KeyError,
    IndexError,
    struct.error,
    zlib.error,
    NotImplementedError,
    RuntimeError,
    OverflowError,
)
_HEADER_LIMIT = 100 * 2**20


class Stored(NamedTuple):
    """A tensor's stored bytes as a numpy array, and the dtype they encode."""

    array: np.ndarray
    dtype: str

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    def as_float32(self) -> np.ndarray:
        """The values, widened to float32 (for comparisons, not for copying)."""
        if self.dtype == "bfloat16":
            return (self.array.astype(np.uint32) << 16).view(np.float32)
        return self.array.astype(np.float32)


def stored_dtype(dtype: str) -> np.dtype:
    """The numpy dtype holding ``dtype``'s bits (``bfloat16`` -> ``uint16``)."""
    if dtype not in DTYPES:
        raise InputError(f"tensors of dtype {dtype} cannot be converted (known: {', '.join(DTYPES)})")
    return np.dtype(DTYPES[dtype][0])


def itemsize(dtype: str) -> int:
    """Bytes per element of ``dtype`` (4 for one not in :data:`DTYPES`: an estimate, for sizes only)."""
    return stored_dtype(dtype).itemsize if dtype in DTYPES else 4


def constant(value: float, shape: tuple[int, ...], dtype: str) -> Stored:
    """A tensor filled with ``value`` in ``dtype``'s stored form."""
    if dtype == "bfloat16":
        bits = np.array([value], dtype=np.float32).view(np.uint32)[0] >> 16
        return Stored(np.full(shape, bits, dtype=np.uint16), dtype)
    return Stored(np.full(shape, value, dtype=stored_dtype(dtype)), dtype)


def difference(found: Stored, expected: Stored) -> str | None:
    """Why ``found`` does not hold ``expected``'s bytes (shape, stored dtype, bits), or ``None``."""
    if found.shape != expected.shape or found.array.dtype != expected.array.dtype:
        return f"is {found.array.dtype} {list(found.shape)}, not {expected.array.dtype} {list(expected.shape)}"
    return None if arrays.equal(found.array, expected.array) else "holds other bits than were written"


def differences(found: Iterable[tuple[str, Stored]], expected: Mapping[str, Stored]) -> list[str]:
    """What keeps the tensors ``found`` in a file from being ``expected``, bit for bit (read one at a time)."""
    problems, seen = [], set()
    for name, value in found:
        if name not in expected:
            problems.append(f"unexpected {name}")
            continue
        seen.add(name)
        why = difference(value, expected[name])
        if why is not None:
            problems.append(f"{name} {why}")
    return problems + [f"missing {name}" for name in expected if name not in seen]


class CheckpointReader(Protocol):
    """A saved state dict, read one tensor at a time (formats: this module and the framework adapters)."""

    path: Path

    def names(self) -> list[str]:
        """Every tensor key, in file order."""

    def info(self, name: str) -> tuple[tuple[int, ...], str]:
        """Shape and dtype without reading the values."""

    def read(self, name: str) -> Stored: ...

    def close(self) -> None: ...


def dtype_of(array: Any) -> str:
    """The dtype name of a numpy array, or anything with ``.dtype`` (``uint16`` may hold bfloat16 bits)."""
    for name, (code, _) in DTYPES.items():
        if name != "bfloat16" and np.dtype(code) == array.dtype.newbyteorder("<"):
            return name
    raise InputError(f"arrays of dtype {array.dtype} are not tensors padiff_graph can convert")


@dataclass(frozen=True)
class Entry:
    """One tensor of a safetensors file: where its bytes are."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    stop: int


class SafetensorsReader:
    """Lazy access to a ``.safetensors`` file: each tensor is a memory-mapped view.

    The header is checked against the file before any tensor is read, as the
    ``safetensors`` package does: known dtypes, shapes of non-negative
    integers, byte spans that match their shapes and tile the data exactly
    (no gap, no overlap, nothing past the end of the file).

    Raises:
        InputError: the file is unreadable, truncated or its header is damaged (names the tensor).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with path.open("rb") as stream:
                (length,) = struct.unpack("<Q", stream.read(8))
                if length > _HEADER_LIMIT:
                    raise ValueError(f"header of {length} bytes")
                header = json.loads(stream.read(length).decode("utf-8"))
                size = path.stat().st_size
        except (OSError, ValueError, struct.error) as error:
            raise InputError(f"{path} is not a readable safetensors file: {error}") from None
        if not isinstance(header, dict):
            raise InputError(f"{path} is not a readable safetensors file: its header is not a JSON object")
        self._offset = 8 + length
        metadata = header.pop("__metadata__", None) or {}
        if not isinstance(metadata, dict) or not all(isinstance(value, str) for value in metadata.values()):
            raise InputError(f"{path}: damaged safetensors header: '__metadata__' is not a map of strings")
        self.metadata: dict[str, str] = metadata
        self.entries = {name: _entry(path, name, item) for name, item in header.items()}
        _check_spans(path, self.entries, size - self._offset)
        self._map = np.memmap(path, dtype=np.uint8, mode="r") if self.entries else None

    def names(self) -> list[str]:
        return list(self.entries)

    def info(self, name: str) -> tuple[tuple[int, ...], str]:
        entry = self.entries[name]
        return entry.shape, entry.dtype

    def read(self, name: str) -> Stored:
        entry = self.entries[name]
        assert self._map is not None
        raw = self._map[self._offset + entry.start : self._offset + entry.stop]
        return Stored(raw.view(dtype=stored_dtype(entry.dtype), type=np.ndarray).reshape(entry.shape), entry.dtype)

    def close(self) -> None:
        self._map = None


def _entry(path: Path, name: str, item: Any) -> Entry:
    """One header item, checked: a known dtype, a shape, and a byte span that fits that shape."""

    def damaged(what: str) -> InputError:
        return InputError(f"{path}: damaged safetensors header: tensor {name!r} {what}; get the file again")

    if not isinstance(item, dict) or item.get("dtype") not in _BY_CODE:
        raise damaged(f"has unsupported dtype {item.get('dtype') if isinstance(item, dict) else item!r}")
    shape, offsets = item.get("shape"), item.get("data_offsets")
    if not isinstance(shape, list) or not all(_is_count(dim) for dim in shape):
        raise damaged(f"has no valid shape ({shape!r})")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_is_count, offsets)):
        raise damaged(f"has no valid data_offsets ({offsets!r})")
    entry = Entry(_BY_CODE[item["dtype"]], tuple(shape), *offsets)
    size = math.prod(entry.shape) * stored_dtype(entry.dtype).itemsize
    if entry.stop - entry.start != size:
        raise damaged(f"spans bytes {entry.start}-{entry.stop} of the data, but {entry.dtype} {shape} takes {size}")
    return entry


def _check_spans(path: Path, entries: dict[str, Entry], data_size: int) -> None:
    """The tensors' byte spans must tile the data exactly: no gap, no overlap, nothing past the end."""
    end = 0
    for name, entry in sorted(entries.items(), key=lambda item: (item[1].start, item[1].stop)):
        if entry.start != end:
            what = "overlaps the tensor before it" if entry.start < end else f"leaves bytes {end}-{entry.start} unused"
            raise InputError(
                f"{path}: damaged safetensors header: tensor {name!r} (bytes {entry.start}-{entry.stop} of the data) "
                f"{what}; get the file again"
            )
        end = entry.stop
    if end != data_size:
        cut = "truncated" if end > data_size else "longer than its header says"
        raise InputError(
            f"{path}: {cut}: the header announces {end} bytes of tensor data, the file holds {data_size}; "
            "get the file again"
        )


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def write_safetensors(
    stream: BinaryIO, layout: Iterable[tuple[str, tuple[int, ...], str]], tensors: Iterator[tuple[str, Stored]]
) -> None:
    """Write the header for ``layout`` (name, shape, dtype), then each tensor as ``tensors`` yields it.

    ``tensors`` must yield the layout's names in order; each array is written
    and dropped before the next is asked for.
    """
    header: dict[str, object] = {}
    offset = 0
    order = []
    for name, shape, dtype in layout:
        size = math.prod(shape) * stored_dtype(dtype).itemsize
        header[name] = {"dtype": DTYPES[dtype][1], "shape": list(shape), "data_offsets": [offset, offset + size]}
        order.append((name, tuple(shape), dtype))
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # keeps the tensors 8-byte aligned
    stream.write(struct.pack("<Q", len(text)))
    stream.write(text)
    for (name, shape, dtype), (given, value) in zip(order, tensors, strict=True):
        if given != name or value.shape != shape or value.dtype != dtype:
            raise ValueError(f"tensor {given!r} {list(value.shape)} {value.dtype} breaks the announced layout")
        stream.write(np.ascontiguousarray(value.array).reshape(-1).view(np.uint8).data)
