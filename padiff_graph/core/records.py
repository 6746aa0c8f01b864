"""Neutral records that every stage after export works on.

Framework adapters turn a model into these frozen dataclasses; nothing past
``frameworks/`` ever sees a torch or paddle object's structure again. Dotted
layer paths (``""`` for the root) are the stable keys everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class TensorKind(str, Enum):
    """How a layer holds a tensor; a mismatch is what breaks order-based copies."""

    PARAMETER = "parameter"
    FROZEN = "frozen-parameter"
    BUFFER = "buffer"
    EMBEDDING = "embedding"


class Severity(str, Enum):
    """How a finding affects the run: errors make ``check`` exit 1."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class TensorInfo:
    """A tensor a layer owns directly (``name`` is local, without dots)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    kind: TensorKind
    persistent: bool = True

    @property
    def numel(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count


@dataclass(frozen=True)
class LayerInfo:
    """One layer as exported: its place in the tree and what it owns.

    ``builtin`` is true for classes shipped in ``torch.nn`` / ``paddle.nn``;
    ``config`` holds the hyperparameters that change numerics (eps, p, ...).
    """

    path: str
    class_name: str
    framework: str
    index: int
    builtin: bool
    training: bool
    tensors: tuple[TensorInfo, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def parent(self) -> str | None:
        if self.path == "":
            return None
        return self.path.rpartition(".")[0]

    @property
    def local_name(self) -> str:
        return self.path.rpartition(".")[2]


def join_path(prefix: str, name: str) -> str:
    """Join dotted path parts, treating ``""`` as the root."""
    if not prefix:
        return name
    if not name:
        return prefix
    return f"{prefix}.{name}"


@dataclass(frozen=True)
class Layout:
    """How one rank holds its part of a tensor that a distributed engine split over a device mesh.

    ``placements`` has one entry per mesh dimension: ``shard(d)`` (this mesh
    dimension splits tensor axis ``d``), ``partial(sum)`` (each rank holds a
    partial ``sum``/``avg``/``max``/``min``) or ``replicate``; anything else
    the engine uses is kept as ``other(Name)`` and never merged. ``shape`` is
    the global shape; the rank's own shape is the array's.
    """

    placements: tuple[str, ...]
    mesh: tuple[int, ...]
    coordinate: tuple[int, ...]
    shape: tuple[int, ...]

    def as_dict(self) -> dict[str, list[Any]]:
        return {
            "placements": list(self.placements),
            "mesh": list(self.mesh),
            "coordinate": list(self.coordinate),
            "shape": list(self.shape),
        }

    @classmethod
    def from_dict(cls, entry: dict[str, Any]) -> Layout:
        return cls(
            tuple(str(p) for p in entry["placements"]),
            tuple(int(n) for n in entry["mesh"]),
            tuple(int(n) for n in entry["coordinate"]),
            tuple(int(n) for n in entry["shape"]),
        )


def quoted_path(path: str) -> str:
    """A layer path as messages show it: ``'mlp.fc'``, and ``<root>`` for the model itself."""
    return repr(path) if path else "<root>"
