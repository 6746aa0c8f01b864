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


def quoted_path(path: str) -> str:
    """A layer path as messages show it: ``'mlp.fc'``, and ``<root>`` for the model itself."""
    return repr(path) if path else "<root>"
