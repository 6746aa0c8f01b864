"""Base records beyond a memory budget, kept in a file until the raw model produces their partners.

Strict comparison must hold the base model's layer outputs and gradients
until the raw model produces the same ones: about one more copy of the
activations. Up to ``budget`` bytes they are copied into memory. Past it they
are appended to one anonymous spool file in ``TMPDIR`` (deleted the moment
it is created, so nothing is left behind even by a killed process), by a
helper thread while the model runs on. The raw model asks for records in
about the order the base produced them, so the same thread reads ahead in
file order while the raw model runs. The file bypasses the page cache where
the system allows (``O_DIRECT``): spilled records then take no memory at all,
not even the kernel's. Writes go through a few reusable buffers and reads
ahead are bounded, so the extra memory stays below ``budget`` plus
:data:`SLOTS` x :data:`SLOT` plus :data:`READ_AHEAD`.

A tensor recorded under several keys (a container's output that is its last
layer's output) is held once.
"""

from __future__ import annotations

import errno
import mmap
import os
import tempfile
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from functools import cache
from queue import SimpleQueue
from threading import RLock
from types import TracebackType
from typing import TypeVar

import numpy as np

from padiff_graph.errors import PadiffGraphError
from padiff_graph.run import DEFAULT_BUDGET_MIB as DEFAULT_BUDGET_MIB

#: Bytes of records read ahead at any one time.
READ_AHEAD = 64 << 20

#: Records are written through this many reusable buffers of :data:`SLOT` bytes each,
#: allocated once per process (fresh memory is slow to touch on some virtual machines).
SLOTS, SLOT = 8, 8 << 20

#: File offsets, lengths and buffer addresses are multiples of this (``O_DIRECT`` needs it).
BLOCK = 4096

T = TypeVar("T")


class SpillError(PadiffGraphError):
    """Records could not be written to or read from the spool file."""


@dataclass(eq=False)
class Held:
    """One array kept for ``readers`` keys: in memory (``array``), or in the spool file at ``offset``."""

    shape: tuple[int, ...]
    dtype: np.dtype
    nbytes: int
    array: np.ndarray | None = None
    offset: int | None = None
    readers: int = 1
    read: Future[np.ndarray] | None = field(default=None, repr=False)


class Spill:
    """Keeps arrays in memory up to ``budget`` bytes, in a spool file past it. Use it as a context manager."""

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.held = 0
        self._fd: int | None = None
        self._end = 0
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="padiff_graph_spill")
        self._direct = False  # the spool file bypasses the page cache
        self._failed: OSError | None = None  # the first write that failed
        self._on_disk: deque[Held] = deque()  # not yet taken, in file order: what to read ahead
        self._recent: deque[tuple[weakref.ref[np.ndarray], Held]] = deque(maxlen=8)
        self._lock = RLock()  # the base side may hold while the raw side takes (padiff_graph.run.engine.run_sides)

    def __enter__(self) -> Spill:
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.close()

    def hold(self, array: np.ndarray) -> Held:
        """Keep ``array``'s values now: it may share a live tensor's memory, so it is copied.

        An array that owns its memory (a fresh host copy) is kept as it is in memory.
        Passing the same array object again (the same tensor under another key) adds a
        reader, nothing more.
        """
        with self._lock:
            return self._hold(array)

    def _hold(self, array: np.ndarray) -> Held:
        for reference, seen in self._recent:
            if reference() is array and seen.readers > 0:  # not yet taken by all its readers (they may overlap)
                seen.readers += 1
                return seen
        held = Held(array.shape, array.dtype, array.nbytes)
        if array.nbytes == 0 or self.held + array.nbytes <= self.budget:
            held.array = array if array.flags.owndata else array.copy()
            self.held += array.nbytes
        else:
            self._spool(held, array)
        self._recent.append((weakref.ref(array), held))
        return held

    def take(self, held: Held) -> np.ndarray:
        """The array back (read once, whatever the number of readers); after the last reader, let go."""
        with self._lock:
            return self._take(held)

    def _take(self, held: Held) -> np.ndarray:
        if held.array is None:
            if held.read is None:
                held.read = self._io.submit(self._read, held)
            held.array = _result(held.read)
            held.read = None
            self._on_disk.remove(held)
        array = held.array
        held.readers -= 1
        if held.readers == 0:
            held.array = None
            if held.offset is None:
                self.held -= array.nbytes
        self.read_ahead()
        return array

    def close(self) -> None:
        """Drop the spool file with whatever nobody took; the helper thread finishes that on its own.

        Freeing a large file's blocks can take a while (a tenth of a second per GB where
        the filesystem discards them), so nobody waits for it.
        """
        for held in self._on_disk:
            if held.read is not None:
                held.read.cancel()
        if self._end:  # something was spooled: the helper thread has (or will have) a file to drop
            self._io.submit(self._drop_file)
        self._io.shutdown(wait=False)
        self.held = 0
        self._on_disk.clear()
        self._recent.clear()

    # --- the spool file --------------------------------------------------------------------------

    def _spool(self, held: Held, array: np.ndarray) -> None:
        data = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
        held.offset = self._end
        self._end += _whole_blocks(data.size)
        for start in range(0, data.size, SLOT):
            part = data[start : start + SLOT]
            slot = _free_slots().get()  # waits while every slot is being written
            slot[: part.size] = part
            self._io.submit(self._write, slot, _whole_blocks(part.size), held.offset + start)
        self._on_disk.append(held)

    def read_ahead(self) -> None:
        """Have the helper thread read the next records in file order, up to :data:`READ_AHEAD` bytes."""
        with self._lock:
            ahead = 0
            for held in self._on_disk:
                if ahead + held.nbytes > READ_AHEAD:
                    return
                if held.read is None:
                    held.read = self._io.submit(self._read, held)
                ahead += held.nbytes

    def _drop_file(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open(self) -> int:
        fd, path = tempfile.mkstemp(prefix="padiff_graph_records_")
        os.unlink(path)
        with suppress(OSError):  # a filesystem without direct I/O (tmpfs): the page cache it is
            self._direct = _set_direct(fd, True)
        return fd

    def _write(self, slot: np.ndarray, length: int, offset: int) -> None:
        """Write ``slot[:length]`` at ``offset``, then hand the slot back (also when the write fails)."""
        try:
            if self._failed is None:
                if self._fd is None:
                    self._fd = self._open()
                self._transfer(os.pwrite, slot.data[:length], offset)
        except OSError as error:
            self._failed = error  # every later record would be lost too: fail them all
        finally:
            _free_slots().put(slot)

    def _read(self, held: Held) -> np.ndarray:
        if self._failed is not None:
            raise self._failed
        assert held.offset is not None
        buffer = _aligned(held.nbytes)
        self._transfer(lambda fd, data, offset: os.preadv(fd, [data], offset), buffer.data, held.offset)
        return buffer[: held.nbytes].view(held.dtype).reshape(held.shape)

    def _transfer(self, move: Callable[[int, memoryview, int], int], data: memoryview, offset: int) -> None:
        """All of ``data`` written or read at ``offset``; where direct I/O refuses, through the page cache."""
        assert self._fd is not None
        done = 0
        while done < len(data):
            try:
                moved = move(self._fd, data[done:], offset + done)
            except OSError as error:
                if error.errno != errno.EINVAL or not self._direct:
                    raise
                self._direct = _set_direct(self._fd, False)
                continue
            if moved == 0:
                raise OSError(errno.EIO, "the spool file ended early")
            done += moved


def _whole_blocks(nbytes: int) -> int:
    return -(-nbytes // BLOCK) * BLOCK


@cache
def _free_slots() -> SimpleQueue[np.ndarray]:
    """The write buffers not in use, shared by every :class:`Spill` of the process."""
    free: SimpleQueue[np.ndarray] = SimpleQueue()
    for _ in range(SLOTS):  # mapped apart from the heap, which they would otherwise pin
        free.put(np.frombuffer(mmap.mmap(-1, SLOT), np.uint8))
    return free


def _aligned(nbytes: int) -> np.ndarray:
    """A byte buffer of ``nbytes`` rounded up to whole blocks, starting on a block boundary."""
    size = _whole_blocks(nbytes)
    memory = np.empty(size + BLOCK, np.uint8)
    start = -memory.ctypes.data % BLOCK
    return memory[start : start + size]


def _set_direct(fd: int, on: bool) -> bool:
    """Turn direct I/O (no page cache) on or off for ``fd`` where the system has it (Linux); is it on?"""
    if not hasattr(os, "O_DIRECT"):
        return False
    import fcntl

    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_DIRECT if on else flags & ~os.O_DIRECT)
    return on


def _result(future: Future[T] | None) -> T:
    """The helper thread's result; its I/O errors become one actionable line."""
    assert future is not None
    try:
        return future.result()
    except OSError as error:
        folder = tempfile.gettempdir()
        raise SpillError(
            f"cannot spill base records to {folder}: {error.strerror or error}; free space there, "
            "point TMPDIR elsewhere, or raise --memory-budget"
        ) from error
