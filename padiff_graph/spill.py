"""Base records beyond a memory budget, kept in files until the raw model produces their partners.

Strict comparison must hold the base model's layer outputs and gradients
until the raw model produces the same ones: about one more copy of the
activations. Past ``budget`` bytes in memory, records go to a private
temporary folder instead (``TMPDIR`` decides where). The kernel's page cache
holds them, which is not the process's memory and is reclaimed under
pressure; each is written once, read back once when compared, and deleted.
A record stored under several keys (a container's output that is its last
layer's output) is written once and read back as one array.
"""

from __future__ import annotations

import tempfile
import weakref
from collections import deque
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import numpy as np

#: In-memory budget for base records, by default none: spilling trades time for memory
#: (on this project's test machine, 1.3 GB of ResNet-50 records cost 5 s to write back), so it is
#: the user's call, for models whose activations do not fit twice.
DEFAULT_BUDGET_MIB = float("inf")


@dataclass
class OnDisk:
    """A record written to a file; ``readers`` keys still have to read it."""

    path: Path
    shape: tuple[int, ...]
    dtype: np.dtype
    readers: int = 1
    loaded: np.ndarray | None = None


class Spill:
    """Keeps arrays in memory up to ``budget`` bytes, in files past it."""

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.held = 0
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self._names = count()
        self._recent: deque[tuple[weakref.ref[np.ndarray], OnDisk]] = deque(maxlen=8)

    def hold(self, array: np.ndarray) -> np.ndarray | OnDisk:
        """``array`` itself while the budget allows, else the file it was written to."""
        if self.held + array.nbytes <= self.budget:
            self.held += array.nbytes
            return array
        for reference, written in self._recent:
            if reference() is array:
                written.readers += 1
                return written
        if self._folder is None:
            self._folder = tempfile.TemporaryDirectory(prefix="padiff_graph_records_")
        path = Path(self._folder.name) / f"{next(self._names)}.bin"
        np.ascontiguousarray(array).tofile(path)
        written = OnDisk(path, array.shape, array.dtype)
        self._recent.append((weakref.ref(array), written))
        return written

    def take(self, stored: np.ndarray | OnDisk) -> np.ndarray:
        """The array back (read from its file once, whatever the number of keys); frees what it held."""
        if isinstance(stored, np.ndarray):
            self.held -= stored.nbytes
            return stored
        if stored.loaded is None:
            stored.loaded = np.fromfile(stored.path, dtype=stored.dtype).reshape(stored.shape)
        array = stored.loaded
        stored.readers -= 1
        if stored.readers == 0:
            stored.loaded = None
            stored.path.unlink(missing_ok=True)
        return array

    def close(self) -> None:
        """Delete whatever files are left (records the raw model never produced)."""
        self.held = 0
        self._recent.clear()
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None
