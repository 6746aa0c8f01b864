"""Copying and comparing host arrays of any strides at close to memory speed.

A weight copy writes transposed views (a Linear weight between torch and
paddle) into a tensor's own memory and reads it back to verify. numpy walks
a transposed array element by element across rows, one cache miss each
(0.1-0.2 GB/s here); moving it in tiles that read long runs of one array
and write whole cache lines of the other is 4-17x faster and needs no
temporary the size of the array. A transposed gradient is compared piece by
piece, each piece gathered in tiles into a buffer that stays in cache.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any

import numpy as np

#: A tile of the last two axes is LONG elements along the axis the array read from lies along in memory and
#: NARROW across it (16 float32: one cache line of the array written). numpy then reads long runs and writes
#: whole cache lines: a 3072 x 768 transpose copies in 1.1 ms, against 2.1 ms in 256 x 64 tiles and 6.5 ms
#: for numpy alone (4096 x 25088: 48, 90 and 840 ms), as fast as torch's own transpose.
LONG, NARROW = 1024, 16

#: Elements compared at a time by :func:`equal` (bounds the boolean temporary).
CHUNK = 1 << 20

#: Elements from which a tiled copy is shared with a helper thread, half the columns each (numpy lets go of
#: the GIL in its loops): 1.8x faster on two cores for BERT's weights, where one thread leaves memory idle.
SHARED_COPY = 1 << 20

#: Elements :func:`pieces` gathers from a strided array at a time, tile by tile (4 MiB of float32: in cache
#: while its pieces are read, with few enough rows of a wide array that its tiles stay long).
GATHERED = 1 << 20


def strided(*arrays: np.ndarray) -> bool:
    """Whether a whole-array pass would walk one of ``arrays`` against its memory order."""
    return arrays[0].ndim >= 2 and not all(a.flags.c_contiguous for a in arrays)


def tiles(shape: tuple[int, ...], read: np.ndarray) -> Iterator[tuple[Any, ...]]:
    """Tiles of the last two axes of ``shape``, for moving the array ``read`` (see :data:`LONG`)."""
    rows, columns = shape[-2:]
    along_rows = abs(read.strides[-2]) < abs(read.strides[-1])  # read's neighbours lie down its columns
    height, width = (LONG, NARROW) if along_rows else (NARROW, LONG)
    for row in range(0, rows, height):
        for column in range(0, columns, width):
            yield (..., slice(row, row + height), slice(column, column + width))


def contiguous(array: np.ndarray) -> np.ndarray:
    """``array`` itself if C-contiguous, else a C-contiguous copy made tile by tile (:func:`copy_into`)."""
    if array.flags.c_contiguous:
        return array
    out = np.empty(array.shape, array.dtype)
    copy_into(out, array)
    return out


def pieces(array: np.ndarray, size: int) -> Iterator[np.ndarray]:
    """``array``'s elements in C order, ``size`` at a time (the last piece shorter), as 1-D arrays: views where
    that needs no copy, else views of one buffer that gathers :data:`GATHERED` elements at a time, tile by tile
    (each piece holds until the next is asked for). A transposed matrix is read once, with no copy of it whole:
    the same elements in the same pieces as ``contiguous(array).reshape(-1)``, without writing it to memory and
    reading it back."""
    if array.ndim > 2 and strided(array):
        array = contiguous(array)  # rows of rows: gathered whole
    if not strided(array):
        flat = array.reshape(-1)
        yield from (flat[start : start + size] for start in range(0, flat.size, size))
        return
    block = max(GATHERED // size, 1) * size  # whole pieces
    buffer = np.empty(min(block, array.size), array.dtype)
    for start in range(0, array.size, block):
        gathered = buffer[: min(block, array.size - start)]
        _gather(gathered, array, start)
        yield from (gathered[at : at + size] for at in range(0, gathered.size, size))


def _gather(out: np.ndarray, matrix: np.ndarray, start: int) -> None:
    """``out[:]`` = the elements of ``matrix`` from flat C-order position ``start`` on: whole rows tile by
    tile, a part of a row at either end as it is."""
    columns, end, at = matrix.shape[1], start + out.size, 0
    while start < end:
        row, column = divmod(start, columns)
        rows = (end - start) // columns if column == 0 else 0
        count = rows * columns if rows else min(columns - column, end - start)
        if rows:
            _move_tiles(out[at : at + count].reshape(rows, columns), matrix[row : row + rows], check=False)
        else:
            np.copyto(out[at : at + count], matrix[row, column : column + count])
        at, start = at + count, start + count


def copy_into(out: np.ndarray, value: np.ndarray) -> None:
    """``out[...] = value`` (same shape; numpy's casting), tile by tile when either is strided."""
    _move(out, value, check=False)


def copy_checked(out: np.ndarray, value: np.ndarray) -> bool:
    """:func:`copy_into`, each piece of ``out`` read back as soon as it is written and compared bit for bit with
    ``value`` as ``out``'s dtype holds it, while both are still in cache; whether every piece holds it. BERT's
    transposed weights: 15 ms, against 9 ms for the copy and 23 ms more for reading it back afterwards."""
    return _move(out, value, check=True)


def _move(out: np.ndarray, value: np.ndarray, check: bool) -> bool:
    if np.may_share_memory(out, value):
        value = value.copy()
    if not strided(out, value):
        flat_out, flat_value = out.reshape(-1), value.reshape(-1)  # views: both C-ordered, or of one axis
        pieces = range(0, flat_out.size, CHUNK)
        return all([_move_piece(flat_out[at : at + CHUNK], flat_value[at : at + CHUNK], check) for at in pieces])
    if out.size < SHARED_COPY or out.shape[-1] < 2 * NARROW:
        return _move_tiles(out, value, check)
    half = out.shape[-1] // 2 // NARROW * NARROW  # the columns, in whole tiles either way
    left, right = (..., slice(0, half)), (..., slice(half, None))
    elsewhere = _helper().submit(_move_tiles, out[left], value[left], check)
    try:
        here = _move_tiles(out[right], value[right], check)
    finally:
        there = elsewhere.result()
    return here and there


def _move_tiles(out: np.ndarray, value: np.ndarray, check: bool) -> bool:
    return all([_move_piece(out[index], value[index], check) for index in tiles(out.shape, value)])


def _move_piece(out: np.ndarray, value: np.ndarray, check: bool) -> bool:
    np.copyto(out, value, casting="unsafe")
    if not check:
        return True
    held, wanted, same_nan = _comparable(out, value if value.dtype == out.dtype else value.astype(out.dtype))
    return np.array_equal(held, wanted, equal_nan=same_nan)


@cache
def _helper() -> ThreadPoolExecutor:
    """The thread that copies half of a large array beside this one (:func:`copy_into`)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="padiff_graph_copy")


def equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether ``a`` and ``b`` hold the same bits (one dtype), or else equal values (NaN equals NaN).

    No temporary the size of the arrays is made: they are compared in chunks
    (:func:`pieces`: a strided one gathered in tiles).
    """
    if a.shape != b.shape:
        return False
    a, b, same_nan = _comparable(a, b)
    chunks = zip(pieces(a, CHUNK), pieces(b, CHUNK), strict=True)  # one shape: as many
    return all(np.array_equal(x, y, equal_nan=same_nan) for x, y in chunks)


def _comparable(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """``a`` and ``b`` as :func:`equal` compares them, and whether NaN equals NaN there: views of their bits
    within one dtype of 1-8 bytes (exact, and without the NaN bookkeeping of float comparisons), else the
    values themselves."""
    if a.dtype == b.dtype and a.dtype.itemsize in (1, 2, 4, 8):
        bits = np.dtype(f"u{a.dtype.itemsize}")
        return a.view(bits), b.view(bits), False
    return a, b, a.dtype.kind in "fc"
